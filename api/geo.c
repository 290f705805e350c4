/* /_tern/geo/...: the receiving side of geo-replication (blocks, changes, how far we got). */
#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"
#include "sm.h"

/*
 * Another region's shipper (node/geo_ship.c) calls these, signed with the
 * deployment's root credentials like every admin request:
 *   POST /_tern/geo/block?id=HEX   the block's bytes: checked against its
 *                                  SHA-256 id, then committed through the
 *                                  group (a block already here is not);
 *   POST /_tern/geo/apply          records u32 len | u64 origin index |
 *                                  geo record, in the origin's order: each
 *                                  committed as a GEO_APPLY, stopping at the
 *                                  first refusal; answers {"applied": n};
 *   GET  /_tern/geo/received?origin=ID8  {"index": highest applied}.
 *   POST /_tern/geo/apply?format=2 the same with u32 holders (the topology
 *                                  regions the blocks of a put went to)
 *                                  after each index;
 *   POST /_tern/geo/blocks         several blocks (id | u32 length | bytes,
 *                                  repeated), each checked, then committed;
 *   POST /_tern/geo/have           ids (32 bytes each): answers one byte
 *                                  per id, '1' stored here, '0' not (the
 *                                  shipper sends only the missing ones);
 *   POST /_tern/geo/mark?origin=ID8&hlc=N  the origin had nothing more to send
 *                                  before hlc (GEO_MARK: tombstones older than
 *                                  every region's mark can be collected);
 *   GET  /_tern/geo/status         {"tombstones": n kept here};
 *   GET  /_tern/placement/journal?after=N  this node's accesses after
 *                                  sequence N (the region leader pulls them
 *                                  into its engine; node_placement_journal_*);
 *   GET|HEAD /_tern/geo/block?id=HEX&bucket=&key=&reader=REGION
 *                                  a block for another region's read
 *                                  (404 NoSuchBlock when not stored here);
 *                                  the read is fed to this region's
 *                                  placement engine as the reader's.
 * Every change goes through this region's group, so any node may receive.
 */

typedef struct {
    api__req *r;
    int rc;
    const char *s3_code;
    char message[200];
    size_t applied;
    uint64_t index;
    void *data; /* a block read for GEO_BLOCK_GET, or the have answer */
    size_t len;
} geo_job;

static void block_work(void *arg)
{
    geo_job *j = arg;
    api__req *r = j->r;
    const char *hex = api__req_param(r, "id");
    node_block_id id;
    if (hex == NULL || strlen(hex) != 64 || tern_unhex(hex, 64, id.bytes) != 0) {
        j->s3_code = "InvalidArgument";
        snprintf(j->message, sizeof j->message, "id must be 64 hex digits (a SHA-256).");
        return;
    }
    node_block_id got;
    node_block_hash(r->body.data ? r->body.data : "", r->body.len, &got);
    if (r->body.len == 0 || memcmp(got.bytes, id.bytes, sizeof id.bytes) != 0) {
        j->s3_code = "BadDigest";
        snprintf(j->message, sizeof j->message,
                 "The block's bytes do not hash to its id: it was damaged on the way.");
        return;
    }
    void *data = NULL;
    size_t len = 0;
    if (node_store_block_get(r->server->store, &id, false, &data, &len) == 0) {
        free(data); /* already here: nothing to commit */
        return;
    }
    j->rc = node_cmd_block_put(r->server->group, &id, r->body.data, r->body.len);
}

/* Several blocks in one request: id[32] | u32 length | bytes, repeated. Each is checked
 * against its id before any is committed (a damaged batch stores nothing); those already
 * here are skipped. */
static void blocks_work(void *arg)
{
    geo_job *j = arg;
    api__req *r = j->r;
    const uint8_t *p = (const uint8_t *)r->body.data, *end = p + r->body.len;
    for (const uint8_t *q = p; q < end;) {
        uint32_t len = end - q >= 36 ? tern_le_get_u32(q + 32) : 0;
        node_block_id got;
        if (len == 0 || len > NODE_BLOCK_SIZE_MAX || (size_t)(end - q - 36) < len) {
            j->s3_code = "InvalidRequest";
            snprintf(j->message, sizeof j->message, "Malformed batch of blocks.");
            return;
        }
        node_block_hash(q + 36, len, &got);
        if (memcmp(got.bytes, q, sizeof got.bytes) != 0) {
            j->s3_code = "BadDigest";
            snprintf(j->message, sizeof j->message,
                     "A block's bytes do not hash to its id: it was damaged on the way.");
            return;
        }
        q += 36 + len;
    }
    while (p < end && j->rc == 0) {
        node_block_id id;
        memcpy(id.bytes, p, sizeof id.bytes);
        uint32_t len = tern_le_get_u32(p + 32);
        void *data = NULL;
        size_t have = 0;
        if (node_store_block_get(r->server->store, &id, false, &data, &have) == 0)
            free(data); /* already here: nothing to commit */
        else
            j->rc = node_cmd_block_put(r->server->group, &id, p + 36, len);
        p += 36 + len;
        j->applied++;
    }
}

/* The names of an OBJECT_PUT change (u32 length + bytes each, after version and type). */
static void note_replica(node_placement *pl, const uint8_t *change, size_t len)
{
    char names[2][NODE_KEY_BYTES_MAX + 1];
    const uint8_t *q = change + 2, *end = change + len;
    for (int i = 0; i < 2; i++) {
        if (end - q < 4) return;
        uint32_t n = tern_le_get_u32(q);
        if ((size_t)(end - q - 4) < n || n > NODE_KEY_BYTES_MAX) return;
        memcpy(names[i], q + 4, n);
        names[i][n] = '\0';
        q += 4 + n;
    }
    node_placement_copy_made(pl, names[0], names[1]);
}

static void apply_work(void *arg)
{
    geo_job *j = arg;
    api__req *r = j->r;
    const char *format = api__req_param(r, "format");
    const char *reseed = api__req_param(r, "reseed");
    size_t head = format && strcmp(format, "2") == 0 ? 12 : 8; /* index, [holders] */
    int local = r->server->local_region;
    const uint8_t *p = (const uint8_t *)r->body.data, *end = p + r->body.len;
    while (p < end) {
        if (end - p < 4) break;
        uint32_t len = tern_le_get_u32(p);
        if (len < head || (size_t)(end - p - 4) < len) break;
        uint64_t index = tern_le_get_u64(p + 4);
        uint32_t holders = head == 12 ? tern_le_get_u32(p + 12) : 0;
        /* Without a topology position every region holds everything, as before placement. */
        bool local_holder = holders == 0 || local < 0 || (holders & (1u << local)) != 0;
        uint64_t hlc;
        uint32_t origin;
        const uint8_t *change;
        size_t change_len;
        if (node_sm_geo_decode(p + 4 + head, len - head, &hlc, &origin, &change, &change_len) != 0)
            break;
        j->rc = node_cmd_geo_apply(r->server->group, origin, index, hlc, holders, local_holder,
                                   reseed && strcmp(reseed, "1") == 0, change, change_len);
        /* A replica placement sent here: reviewed for dropping like a copy made by a read. */
        if (j->rc == 0 && holders != 0 && local_holder && change_len > 2 && change[1] == 4)
            note_replica(r->server->placement, change, change_len);
        if (j->rc != 0) {
            snprintf(j->message, sizeof j->message, "change %llu of region %08x: %s",
                     (unsigned long long)index, origin,
                     j->rc == TERN_ECONFLICT ? "its blocks are not here" : tern_strerror(j->rc));
            return;
        }
        j->applied++;
        p += 4 + len;
    }
    if (p != end) {
        j->s3_code = "InvalidRequest";
        snprintf(j->message, sizeof j->message,
                 "Malformed batch of changes after %zu applied record(s).", j->applied);
    }
}

static bool parse_origin(geo_job *j, uint32_t *out)
{
    const char *origin = api__req_param(j->r, "origin");
    if (origin == NULL || strlen(origin) != 8 || strspn(origin, "0123456789abcdef") != 8) {
        j->s3_code = "InvalidArgument";
        snprintf(j->message, sizeof j->message, "origin must be 8 hex digits (a region id).");
        return false;
    }
    *out = (uint32_t)strtoul(origin, NULL, 16);
    return true;
}

static void received_work(void *arg)
{
    geo_job *j = arg;
    api__req *r = j->r;
    uint32_t origin;
    if (!parse_origin(j, &origin)) return;
    if ((j->rc = node_group_read_barrier_wait(r->server->group)) != 0) return;
    uint64_t bound;
    j->rc = node_geo_received_get(r->server->store, origin, &j->index, &bound);
}

/* The origin was idle up to hlc: committed as a GEO_MARK (tombstones may then be collected). */
static void mark_work(void *arg)
{
    geo_job *j = arg;
    api__req *r = j->r;
    uint32_t origin;
    if (!parse_origin(j, &origin)) return;
    const char *hlc = api__req_param(r, "hlc");
    char *end = NULL;
    unsigned long long v = hlc ? strtoull(hlc, &end, 10) : 0;
    if (hlc == NULL || *hlc == '\0' || *end != '\0') {
        j->s3_code = "InvalidArgument";
        snprintf(j->message, sizeof j->message, "hlc must be a decimal timestamp.");
        return;
    }
    const char *upto = api__req_param(r, "upto");
    unsigned long long u = upto ? strtoull(upto, &end, 10) : 0;
    if (upto && (*upto == '\0' || *end != '\0')) {
        j->s3_code = "InvalidArgument";
        snprintf(j->message, sizeof j->message, "upto must be a decimal log index.");
        return;
    }
    j->rc = node_cmd_geo_mark(r->server->group, origin, (uint64_t)v, (uint64_t)u);
}

/* This node's placement journal after ?after=N, for the region leader's engine. */
static void journal_work(void *arg)
{
    geo_job *j = arg;
    api__req *r = j->r;
    const char *after = api__req_param(r, "after");
    char *end = NULL;
    unsigned long long v = after ? strtoull(after, &end, 10) : 0;
    if (after == NULL || *after == '\0' || *end != '\0') {
        j->s3_code = "InvalidArgument";
        snprintf(j->message, sizeof j->message, "after must be a decimal sequence number.");
        return;
    }
    if (r->server->placement == NULL) {
        j->s3_code = "NoTopology";
        snprintf(j->message, sizeof j->message, "This node has no topology configured.");
        return;
    }
    uint8_t *data = NULL;
    j->rc =
        node_placement_journal_read(r->server->placement, (uint64_t)v, 1u << 20, &data, &j->len);
    j->data = data;
}

/* {"tombstones": N}: versions of deleted keys this region still keeps (for tests and ops). */
static void status_work(void *arg)
{
    geo_job *j = arg;
    size_t n = 0;
    j->rc = node_geo_tombstone_count(j->r->server->store, &n);
    j->index = n;
}

static bool parse_block_id(geo_job *j, node_block_id *id)
{
    const char *hex = api__req_param(j->r, "id");
    if (hex == NULL || strlen(hex) != 64 || tern_unhex(hex, 64, id->bytes) != 0) {
        j->s3_code = "InvalidArgument";
        snprintf(j->message, sizeof j->message, "id must be 64 hex digits (a SHA-256).");
        return false;
    }
    return true;
}

static void block_get_work(void *arg)
{
    geo_job *j = arg;
    api__req *r = j->r;
    node_block_id id;
    if (!parse_block_id(j, &id)) return;
    int rc = node_store_block_get(r->server->store, &id, false, &j->data, &j->len);
    if (rc == TERN_ENOTFOUND) {
        j->s3_code = "NoSuchBlock";
        snprintf(j->message, sizeof j->message, "This region does not hold the block.");
        return;
    }
    j->rc = rc;
    /* The reader's demand, for this region's engine: where its copies are worth keeping. */
    const char *bucket = api__req_param(r, "bucket"), *key = api__req_param(r, "key");
    const char *reader = api__req_param(r, "reader");
    if (rc == 0 && bucket && key && reader && r->server->topology && r->method == HTTP_GET) {
        int region = node_topology_region(r->server->topology, reader);
        if (region >= 0)
            node_placement_observe_remote(r->server->placement, (uint32_t)region, bucket, key,
                                          j->len, tern_now_ms());
    }
}

static void have_work(void *arg)
{
    geo_job *j = arg;
    api__req *r = j->r;
    if (r->body.len % NODE_BLOCK_ID_BYTES != 0) {
        j->s3_code = "InvalidRequest";
        snprintf(j->message, sizeof j->message, "The body must be 32-byte block ids.");
        return;
    }
    size_t n = r->body.len / NODE_BLOCK_ID_BYTES;
    char *answer = malloc(n + 1);
    if (answer == NULL) {
        j->rc = TERN_ENOMEM;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        node_block_id id;
        memcpy(id.bytes, r->body.data + i * NODE_BLOCK_ID_BYTES, NODE_BLOCK_ID_BYTES);
        node_block_view *v = NULL;
        const char *d;
        size_t len;
        answer[i] =
            node_store_block_view(r->server->store, &id, false, &v, &d, &len) == 0 ? '1' : '0';
        node_block_view_release(v);
    }
    j->data = answer;
    j->len = n;
}

static void geo_done(api__req *r, void *arg)
{
    geo_job *j = arg;
    if (!r->aborted && j->rc == 0 && j->s3_code == NULL &&
        (r->op == API_OP_GEO_BLOCK_GET || r->op == API_OP_GEO_HAVE ||
         r->op == API_OP_GEO_JOURNAL)) {
        if (r->method == HTTP_HEAD)
            api__respond_head(r, 200, NULL, j->len, "application/octet-stream");
        else
            api__respond(r, 200, NULL, "application/octet-stream", j->data, j->len);
        if (r->method == HTTP_HEAD) api__respond_end(r);
        free(j->data);
        free(j);
        return;
    }
    free(j->data);
    if (!r->aborted) {
        if (j->s3_code) {
            api__respond_error(r, j->s3_code, j->message);
        } else if (j->rc == TERN_ECONFLICT) {
            api__respond_error(r, "SlowDown", j->message);
        } else if (j->rc != 0) {
            api__respond_store_error(r, j->rc, "NoSuchBucket");
        } else {
            char text[96];
            if (r->op == API_OP_GEO_APPLY)
                snprintf(text, sizeof text, "{\"applied\": %zu}\n", j->applied);
            else if (r->op == API_OP_GEO_MARK)
                snprintf(text, sizeof text, "{}\n");
            else if (r->op == API_OP_GEO_STATUS)
                snprintf(text, sizeof text, "{\"tombstones\": %llu}\n",
                         (unsigned long long)j->index);
            else
                snprintf(text, sizeof text, "{\"index\": %llu}\n", (unsigned long long)j->index);
            api__respond(r, 200, NULL, "application/json", text, strlen(text));
        }
    }
    free(j);
}

void api__geo_handle(api__req *r)
{
    geo_job *j = calloc(1, sizeof *j);
    assert(j != NULL);
    j->r = r;
    api__work_fn work = r->op == API_OP_GEO_BLOCK       ? block_work
                        : r->op == API_OP_GEO_BLOCKS    ? blocks_work
                        : r->op == API_OP_GEO_APPLY     ? apply_work
                        : r->op == API_OP_GEO_BLOCK_GET ? block_get_work
                        : r->op == API_OP_GEO_HAVE      ? have_work
                        : r->op == API_OP_GEO_MARK      ? mark_work
                        : r->op == API_OP_GEO_STATUS    ? status_work
                        : r->op == API_OP_GEO_JOURNAL   ? journal_work
                                                        : received_work;
    api__job_submit(r, work, geo_done, j);
}

void api__access(api__req *r, plc_op op, uint64_t bytes)
{
    api_server *s = r->server;
    node_placement_observe(s->placement, r->bucket, r->key, op, bytes, tern_now_ms());
    if (s->egress == NULL || s->local_region < 0) return;
    uint32_t region = (uint32_t)s->local_region;
    /* The counterfactual's inputs: what full replication would have shipped for this write,
     * and the reads it would have served locally. */
    if (op == PLC_PUT)
        node_egress_record_write(s->egress, region, bytes);
    else if (op == PLC_GET)
        node_egress_record_read(s->egress, region, bytes);
}

int api__region_of_id(const api_server *s, uint32_t region_id)
{
    if (s->topology == NULL) return -1;
    for (uint32_t r = 0; r < s->topology->prices.region_count; r++)
        if (node_sm_region_id(s->topology->prices.names[r]) == region_id) return (int)r;
    return -1;
}
