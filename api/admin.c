/* Probes (/healthz, /readyz), Prometheus /metrics and the authenticated admin JSON under /_tern/.
 */
#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "server_internal.h"

typedef struct {
    api_server *server;
    node_store_stats stats;
    int rc;
    char *body;
    size_t body_len;
} admin_job;

static double dedup_ratio(const node_store_stats *st)
{
    return st->block_bytes ? (double)st->referenced_block_bytes / (double)st->block_bytes : 1.0;
}

/* Storage figures are read on a worker (RocksDB properties may take locks) then published. */
static void publish_store_gauges(api_server *s, const node_store_stats *st)
{
    node_metrics *m = s->metrics;
    struct {
        const char *name, *help;
        double value;
    } gauges[] = {
        {"tern_store_objects", "Objects stored.", (double)st->object_count},
        {"tern_store_buckets", "Buckets.", (double)st->bucket_count},
        {"tern_store_logical_bytes", "Sum of object sizes.", (double)st->logical_bytes},
        {"tern_store_blocks", "Distinct blocks stored.", (double)st->block_count},
        {"tern_store_block_bytes", "Bytes of distinct blocks (after dedup).",
         (double)st->block_bytes},
        {"tern_store_referenced_block_bytes", "Bytes of block references (before dedup).",
         (double)st->referenced_block_bytes},
        {"tern_store_disk_bytes", "Bytes on disk as RocksDB reports them.", (double)st->disk_bytes},
        {"tern_store_dedup_ratio", "Referenced block bytes over stored block bytes.",
         dedup_ratio(st)},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(gauges); i++) {
        node_gauge *g = node_metrics_gauge(m, gauges[i].name, gauges[i].help, NULL);
        if (g) node_gauge_set(g, gauges[i].value);
    }
    /* Counters only grow: publish the delta since the last scrape (loop thread only). */
    node_counter *c = node_metrics_counter(m, "tern_store_corruptions_total",
                                           "Block corruptions detected (reads and scrubs).", NULL);
    if (c && st->corruption_count > s->corruptions_published) {
        node_counter_add(c, st->corruption_count - s->corruptions_published);
        s->corruptions_published = st->corruption_count;
    }
    c = node_metrics_counter(m, "tern_store_gc_blocks_deleted_total",
                             "Unreferenced blocks deleted by garbage collection.", NULL);
    if (c && st->gc_blocks_deleted > s->gc_deleted_published) {
        node_counter_add(c, st->gc_blocks_deleted - s->gc_deleted_published);
        s->gc_deleted_published = st->gc_blocks_deleted;
    }
}

static void stats_work(void *arg)
{
    admin_job *j = arg;
    j->rc = node_store_stats_get(j->server->store, &j->stats);
}

/* Egress families are rendered from a snapshot at each scrape rather than kept in the registry:
 * their dollars are derived from bytes, and a registry counter could only hold the bytes. */
static int append_egress_metrics(api_server *s, char **text, size_t *len)
{
    node_egress_totals totals;
    node_egress_snapshot(s->egress, &totals);
    return node_egress_metrics_append(&totals, text, len);
}

static void metrics_done(api__req *r, void *arg)
{
    admin_job *j = arg;
    if (!r->aborted) {
        if (j->rc == 0) publish_store_gauges(r->server, &j->stats);
        char *text = NULL;
        size_t len = 0;
        int rc = node_metrics_render(r->server->metrics, &text, &len);
        if (rc == 0 && r->server->egress != NULL)
            rc = append_egress_metrics(r->server, &text, &len);
        if (rc == 0) {
            api__respond(r, 200, NULL, "text/plain; version=0.0.4; charset=utf-8", text, len);
        } else {
            api__respond_error(r, "InternalError", "Could not render metrics.");
        }
        free(text);
    }
    free(j);
}

static char *status_json(api__req *r, const node_store_stats *st)
{
    const node_config *cfg = r->server->config;
    int64_t uptime_s = (tern_now_ms() - r->server->started_ms) / 1000;
    json_t *storage = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:I}", "buckets", (json_int_t)st->bucket_count,
        "objects", (json_int_t)st->object_count, "logical_bytes", (json_int_t)st->logical_bytes,
        "blocks", (json_int_t)st->block_count, "block_bytes", (json_int_t)st->block_bytes,
        "referenced_block_bytes", (json_int_t)st->referenced_block_bytes, "dedup_ratio",
        dedup_ratio(st), "disk_bytes", (json_int_t)st->disk_bytes, "corruptions",
        (json_int_t)st->corruption_count);
    json_t *root = json_pack("{s:I, s:s, s:s, s:I, s:s, s:s, s:o}", "node_id",
                             (json_int_t)cfg->node_id, "region", cfg->region, "version",
                             TERN_VERSION, "uptime_seconds", (json_int_t)uptime_s, "s3_listen",
                             cfg->s3_listen, "data_dir", cfg->data_dir, "storage", storage);
    char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    return text;
}

static void status_done(api__req *r, void *arg)
{
    admin_job *j = arg;
    if (!r->aborted) {
        char *text = j->rc == 0 ? status_json(r, &j->stats) : NULL;
        if (text)
            api__respond(r, 200, NULL, "application/json", text, strlen(text));
        else
            api__respond_store_error(r, j->rc ? j->rc : TERN_ENOMEM, "NoSuchKey");
        free(text);
    }
    free(j);
}

/* ---- /_tern/egress: egress accounting (node/egress.c) ---- */

/* The snapshot reads atomics only, so it is answered on the loop thread. */
static void egress_status(api__req *r)
{
    if (r->server->egress == NULL) {
        api__respond_error(r, "NoTopology",
                           "This node has no topology configured (regions and their egress "
                           "prices), so it does not account egress.");
        return;
    }
    node_egress_totals totals;
    node_egress_snapshot(r->server->egress, &totals);
    char *text = NULL;
    size_t len = 0;
    if (node_egress_json(&totals, &text, &len) != 0) {
        api__respond_error(r, "InternalError", "Out of memory.");
        return;
    }
    api__respond(r, 200, NULL, "application/json", text, len);
    free(text);
}

/* ---- /_tern/placement/explain and /stats: the engine's view, from memory on the loop ---- */

static void placement_status(api__req *r)
{
    node_placement *pl = r->server->placement;
    if (pl == NULL) {
        api__respond_error(r, "NoTopology",
                           "This node has no topology configured (ternd --topology FILE), so it "
                           "runs no placement engine.");
        return;
    }
    char *text = NULL;
    size_t len = 0;
    int rc;
    if (r->op == API_OP_ADMIN_PLACEMENT_STATS) {
        rc = node_placement_stats_json(pl, &text, &len);
    } else {
        const char *bucket = api__req_param(r, "bucket"), *key = api__req_param(r, "key");
        if (bucket == NULL || key == NULL || bucket[0] == '\0' || key[0] == '\0') {
            api__respond_error(r, "InvalidArgument",
                               "placement/explain needs the query parameters bucket and key.");
            return;
        }
        rc = node_placement_explain_json(pl, bucket, key, tern_now_ms(), &text, &len);
        if (rc == TERN_ENOTFOUND) {
            char msg[400];
            snprintf(msg, sizeof msg,
                     "The placement engine of this node has no record of %.63s/%.200s: it learns "
                     "objects as this node serves their writes and reads.",
                     bucket, key);
            api__respond_error(r, "NoSuchKey", msg);
            return;
        }
    }
    if (rc != 0) {
        api__respond_error(r, "InternalError", tern_strerror(rc));
        return;
    }
    api__respond(r, 200, NULL, "application/json", text, len);
    free(text);
}

/* ---- /_tern/cluster: the region group's status and membership changes ---- */

static void respond_json(api__req *r, int status, json_t *root)
{
    char *text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
    json_decref(root);
    if (text == NULL) {
        api__respond_error(r, "InternalError", "Out of memory.");
        return;
    }
    api__respond(r, status, NULL, "application/json", text, strlen(text));
    free(text);
}

static void cluster_status(api__req *r)
{
    node_group_status st;
    node_group_status_get(r->server->group, &st);
    json_t *members = json_array();
    for (size_t i = 0; i < st.member_count; i++) {
        const node_group_member *m = &st.members[i];
        json_array_append_new(
            members, json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:b}", "id", (json_int_t)m->id,
                               "role", m->role == NODE_GROUP_VOTER ? "voter" : "learner", "peer",
                               m->address, "s3", m->s3_address, "match", (json_int_t)m->match,
                               "lag", (json_int_t)m->lag, "active", m->active));
    }
    json_t *root = json_pack(
        "{s:I, s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:b, s:o}", "node_id",
        (json_int_t)st.node_id, "region", st.region, "role", st.role, "term", (json_int_t)st.term,
        "leader_id", (json_int_t)st.leader_id, "leader_s3", st.leader_s3_address, "commit_index",
        (json_int_t)st.commit_index, "applied_index", (json_int_t)st.applied_index, "last_index",
        (json_int_t)st.last_index, "snapshot_index", (json_int_t)st.snapshot_index, "failed",
        st.failed, "members", members);
    respond_json(r, 200, root);
}

/* "EAGAIN" rather than "TERN_EAGAIN": the codes are the API's, not the C names. */
static const char *short_errname(int status)
{
    const char *name = tern_errname(status);
    return strncmp(name, "TERN_", 5) == 0 ? name + 5 : name;
}

static void cluster_change_done(api__req *r, int status)
{
    if (status == 0) {
        respond_json(r, 200, json_pack("{s:b}", "ok", 1));
        return;
    }
    int http = status == TERN_EINVAL      ? 400
               : status == TERN_EAGAIN    ? 409
               : status == TERN_ENOTSUP   ? 501
               : status == TERN_ETIMEDOUT ? 504
                                          : 503;
    respond_json(r, http,
                 json_pack("{s:s, s:s}", "code", short_errname(status), "error",
                           status == TERN_EAGAIN
                               ? "another membership change or transfer is in progress, or the "
                                 "learner has not caught up; retry"
                               : tern_strerror(status)));
}

static void cluster_change(api__req *r)
{
    const char *action = r->key + strlen("cluster/");
    const char *id_text = api__req_param(r, "id");
    const char *peer = api__req_param(r, "peer");
    char *end = NULL;
    unsigned long long id = id_text ? strtoull(id_text, &end, 10) : 0;
    if (id_text == NULL || *end != '\0' || id == 0) {
        respond_json(r, 400,
                     json_pack("{s:s, s:s}", "code", "EINVAL", "error",
                               "id must be a node id (a positive integer)"));
        return;
    }
    node_group *g = r->server->group;
    void *held = api__hold(r, cluster_change_done);
    int rc;
    if (strcmp(action, "add-node") == 0) {
        if (peer == NULL || peer[0] == '\0') {
            api__held_done(held, TERN_EINVAL);
            return;
        }
        rc = node_group_add_node(g, id, peer, api__held_done, held);
    } else if (strcmp(action, "promote-node") == 0) {
        rc = node_group_promote_node(g, id, api__held_done, held);
    } else if (strcmp(action, "remove-node") == 0) {
        rc = node_group_remove_node(g, id, api__held_done, held);
    } else if (strcmp(action, "transfer-leader") == 0) {
        rc = node_group_transfer_leader(g, id, api__held_done, held);
    } else {
        rc = TERN_ENOTSUP;
    }
    if (rc != 0) api__held_done(held, rc);
}

void api__admin_handle(api__req *r)
{
    switch (r->op) {
    case API_OP_HEALTH:
        api__respond(r, 200, NULL, "text/plain", "ok\n", 3);
        return;
    case API_OP_READY:
        if (r->server->draining)
            api__respond(r, 503, NULL, "text/plain", "shutting down\n", 14);
        else if (!node_group_ready(r->server->group))
            api__respond(r, 503, NULL, "text/plain", "no leader\n", 10);
        else
            api__respond(r, 200, NULL, "text/plain", "ok\n", 3);
        return;
    case API_OP_METRICS:
    case API_OP_ADMIN_STATUS: {
        admin_job *j = calloc(1, sizeof *j);
        assert(j != NULL);
        j->server = r->server;
        api__job_submit(r, stats_work, r->op == API_OP_METRICS ? metrics_done : status_done, j);
        return;
    }
    case API_OP_ADMIN_CLUSTER:
        cluster_status(r);
        return;
    case API_OP_ADMIN_CLUSTER_CHANGE:
        cluster_change(r);
        return;
    case API_OP_ADMIN_EGRESS:
        egress_status(r);
        return;
    case API_OP_ADMIN_PLACEMENT_EXPLAIN:
    case API_OP_ADMIN_PLACEMENT_STATS:
        placement_status(r);
        return;
    default:
        api__respond_error(r, "InvalidRequest", "Unknown admin endpoint.");
    }
}
