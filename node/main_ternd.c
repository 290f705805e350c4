/* ternd: the tern node daemon: config, store, region group, S3 server, scrubber, signals. */
#include <assert.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api.h"
#include "group.h"
#include "node.h"
#include "orphans.h"
#include "sm.h"

/* Unreferenced blocks the leader tracks through their grace period. */
#define ORPHANS_TRACKED_MAX 100000
/* Block ids per BLOCKS_COLLECT command (32 bytes each). */
#define COLLECT_IDS_MAX 4096

typedef struct {
    uv_loop_t *loop;
    node_config cfg;
    /* The --topology document (regions, endpoints, prices, policies), checked before anything
     * starts; empty (no regions) without --topology. */
    node_topology topology;
    /* Egress accounting priced from the topology; NULL without one. Nothing records into it
     * until the geo-replicator does (issue 5): until then it reports zeros. */
    node_egress *egress;
    /* The placement engine, fed with this node's accesses; NULL without a topology. */
    node_placement *placement;
    uv_timer_t placement_timer;
    /* Ships this region's changes to the others while this node leads; NULL without peers. */
    node_geo_ship *geo;
    node_geo_fetch *fetch; /* remote reads; NULL without peer regions */
    uv_timer_t geo_timer;
    node_store *store;
    node_sm *sm;
    node_group *group;
    node_orphans *orphans;
    node_group_peer peers[NODE_GROUP_PEERS_MAX];
    size_t peer_count;
    node_metrics *metrics;
    api_server *server;
    uv_signal_t sigint, sigterm;
    uv_timer_t scrub_timer;
    uv_work_t scrub_work;
    bool scrub_running;
    node_scrub_result scrub_result;
    int scrub_rc;
    bool stopping;
    bool secret_generated; /* the root secret was generated or read from the store */
    node_counter *scrub_bytes, *scrub_corrupt, *scrub_orphans;
} ternd;

/* Root credentials: from config/env, else generated once and kept in the store. */
static int ensure_root_credentials(ternd *d)
{
    if (d->cfg.root_access_key && d->cfg.root_secret_key) return 0;
    char *ak = NULL, *sk = NULL;
    size_t len;
    if (node_store_meta_get(d->store, "root_access_key", &ak, &len) == 0 &&
        node_store_meta_get(d->store, "root_secret_key", &sk, &len) == 0) {
        d->cfg.root_access_key = ak;
        d->cfg.root_secret_key = sk;
        d->secret_generated = true;
        return 0;
    }
    free(ak);
    free(sk);
    uint8_t raw[30];
    if (RAND_bytes(raw, sizeof raw) != 1) return TERN_EIO;
    char hex[61];
    tern_hex(raw, sizeof raw, hex);
    char access[21], secret[41];
    snprintf(access, sizeof access, "AK%.18s", hex);
    for (char *c = access; *c; c++)
        if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    snprintf(secret, sizeof secret, "%.40s", hex + 20);
    int rc = node_store_meta_put(d->store, "root_access_key", access, strlen(access) + 1);
    if (rc == 0) rc = node_store_meta_put(d->store, "root_secret_key", secret, strlen(secret) + 1);
    if (rc != 0) return rc;
    d->cfg.root_access_key = strdup(access);
    d->cfg.root_secret_key = strdup(secret);
    d->secret_generated = true;
    return 0;
}

/* ---- scrubber: one budgeted step per second on the thread pool ---- */

static void scrub_work_cb(uv_work_t *w)
{
    ternd *d = w->data;
    /* Fault injection for tests (tests/integration/test_shutdown.py): a step that is still
     * running when shutdown begins. Read per step so a test can set it without a flag. */
    const char *delay = getenv("TERN_TEST_SCRUB_DELAY_MS");
    if (delay != NULL && atoi(delay) > 0) {
        node_log(NODE_LOG_INFO, "scrub", "step delayed %d ms (TERN_TEST_SCRUB_DELAY_MS)",
                 atoi(delay));
        uv_sleep((unsigned)atoi(delay));
    }
    d->scrub_rc = node_store_scrub_step(d->store, d->cfg.scrub_bytes_per_second, &d->scrub_result);
}

static void collect_done(void *arg, int status)
{
    free(arg);
    if (status != 0)
        node_log(NODE_LOG_WARN, "scrub", "collecting unreferenced blocks failed: %s",
                 tern_strerror(status));
}

/*
 * A replicated store reports unreferenced blocks instead of deleting them; the
 * leader proposes their collection once their grace period has passed, so
 * every replica deletes the same blocks (node/orphans.h).
 */
static void collect_orphans(ternd *d, node_scrub_result *res)
{
    node_block_id *ready = NULL;
    size_t ready_count = 0;
    if (d->group == NULL) {
        /* A step that was running when shutdown began finishes after the group closed: there
         * is no group to propose to (and the next pass will find these blocks again). */
        free(res->orphans);
        res->orphans = NULL;
        return;
    }
    node_group_status st;
    node_group_status_get(d->group, &st);
    bool leader = strcmp(st.role, "leader") == 0;
    if (leader && node_orphans_note(d->orphans, res->orphans, res->orphan_count, res->pass_complete,
                                    tern_now_ms(), &ready, &ready_count) != 0)
        node_log(NODE_LOG_WARN, "scrub", "out of memory tracking unreferenced blocks");
    free(res->orphans);
    res->orphans = NULL;
    for (size_t i = 0; i < ready_count; i += COLLECT_IDS_MAX) {
        size_t n = TERN_MIN(COLLECT_IDS_MAX, ready_count - i);
        uint8_t *cmd = NULL;
        size_t len = 0;
        if (node_sm_encode_blocks_collect(ready + i, n, &cmd, &len) != 0) break;
        if (node_group_submit(d->group, cmd, len, collect_done, cmd) != 0) free(cmd);
        node_counter_add(d->scrub_orphans, n);
    }
    free(ready);
}

static void scrub_after_cb(uv_work_t *w, int status)
{
    ternd *d = w->data;
    d->scrub_running = false;
    if (status == 0) collect_orphans(d, &d->scrub_result); /* the step ran: its result is new */
    if (status != 0 || d->scrub_rc != 0) {
        if (d->scrub_rc != 0)
            node_log(NODE_LOG_WARN, "scrub", "scrub step failed: %s", tern_strerror(d->scrub_rc));
        return;
    }
    node_counter_add(d->scrub_bytes, d->scrub_result.bytes_checked);
    node_counter_add(d->scrub_corrupt, d->scrub_result.corrupt_found);
    if (d->scrub_result.corrupt_found)
        node_log(NODE_LOG_ERROR, "scrub", "found %llu corrupt block(s); quarantined",
                 (unsigned long long)d->scrub_result.corrupt_found);
}

static void scrub_tick(uv_timer_t *t)
{
    ternd *d = t->data;
    if (d->scrub_running || d->stopping) return;
    d->scrub_running = true;
    d->scrub_work.data = d;
    uv_queue_work(d->loop, &d->scrub_work, scrub_work_cb, scrub_after_cb);
}

/* ---- placement: a review of the engine's sets every few seconds (drops, RPO windows) ---- */

#define PLACEMENT_TICK_MS      5000
#define PLACEMENT_TICK_OBJECTS 4096

static void placement_tick(uv_timer_t *t)
{
    ternd *d = t->data;
    node_placement_tick(d->placement, tern_now_ms(), PLACEMENT_TICK_OBJECTS);
}

/* ---- geo: the shipper runs while this node leads (the group's status is loop-only) ---- */

#define GEO_LEADER_CHECK_MS 200

static void geo_tick(uv_timer_t *t)
{
    ternd *d = t->data;
    if (d->group == NULL) return;
    node_group_status st;
    node_group_status_get(d->group, &st);
    node_geo_ship_set_leader(d->geo, strcmp(st.role, "leader") == 0);
}

/* ---- shutdown ---- */

static void on_group_closed(void *ctx)
{
    ternd *d = ctx;
    d->group = NULL;
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_timer_stop(&d->scrub_timer);
    uv_close((uv_handle_t *)&d->scrub_timer, NULL);
    uv_timer_stop(&d->placement_timer);
    uv_close((uv_handle_t *)&d->placement_timer, NULL);
    uv_timer_stop(&d->geo_timer);
    uv_close((uv_handle_t *)&d->geo_timer, NULL);
}

/* Order: the S3 server drains (no new proposals), then the group closes (pending ones get
 * TERN_ECLOSED, its threads stop), then the loop ends and the store closes. */
static void on_server_drained(void *ctx)
{
    ternd *d = ctx;
    node_log(NODE_LOG_INFO, "ternd", "all requests finished; closing the region group");
    /* The shipper reads the store and talks to other regions only: it stops first. */
    node_geo_ship_stop(d->geo); /* freed after the group closed */
    if (d->group)
        node_group_close(d->group, on_group_closed, d);
    else
        on_group_closed(d);
}

/* What this node signs cross-region requests with: the deployment key, else the root key. */
static const char *geo_key(const ternd *d)
{
    return d->cfg.geo_access_key ? d->cfg.geo_access_key : d->cfg.root_access_key;
}

static const char *geo_secret(const ternd *d)
{
    return d->cfg.geo_secret_key ? d->cfg.geo_secret_key : d->cfg.root_secret_key;
}

/* Regions of the topology, other than this one, that this node can ship to (they have an S3
 * endpoint). Without any, the region neither logs nor ships its changes. */
static size_t geo_peer_count(const ternd *d)
{
    size_t n = 0;
    int local = node_topology_region(&d->topology, d->cfg.region);
    for (size_t r = 0; r < d->topology.prices.region_count; r++)
        if ((int)r != local && d->topology.s3_endpoint_count[r] > 0) n++;
    return n;
}

static int start_group(ternd *d, char *errmsg, size_t errmsg_len)
{
    if (d->cfg.peers && node_group_parse_peers(d->cfg.peers, d->peers, NODE_GROUP_PEERS_MAX,
                                               &d->peer_count, errmsg, errmsg_len) != 0)
        return TERN_EINVAL;
    int rc = node_sm_create(d->store, &d->sm);
    if (rc != 0) {
        tern_errmsg(errmsg, errmsg_len, "cannot create the state machine: %s", tern_strerror(rc));
        return rc;
    }
    /* A region that replicates logs its changes for its peers (the geo log; issue 5). */
    node_sm_set_region(d->sm, d->cfg.region, geo_peer_count(d) > 0);
    node_group_sm callbacks;
    node_sm_callbacks(d->sm, &callbacks);
    node_group_config gc = {.node_id = d->cfg.node_id,
                            .region = d->cfg.region,
                            .data_dir = d->cfg.data_dir,
                            .s3_listen = d->cfg.s3_listen,
                            .peers = d->peers,
                            .peer_count = d->peer_count,
                            .join = d->cfg.join,
                            .peer_listen = d->cfg.peer_listen,
                            .peer_ca = d->cfg.peer_ca,
                            .peer_cert = d->cfg.peer_cert,
                            .peer_key = d->cfg.peer_key,
                            .election_timeout_ms = d->cfg.election_timeout_ms,
                            .heartbeat_ms = d->cfg.heartbeat_ms,
                            .leader_wait_ms = d->cfg.leader_wait_ms,
                            .snapshot_threshold_bytes = d->cfg.snapshot_threshold_bytes,
                            .snapshot_threshold_entries = d->cfg.snapshot_threshold_entries,
                            .sync = d->cfg.sync_writes,
                            .metrics = d->metrics};
    return node_group_create(d->loop, &gc, &callbacks, &d->group, errmsg, errmsg_len);
}

static void on_signal(uv_signal_t *h, int signum)
{
    ternd *d = h->data;
    if (d->stopping) {
        node_log(NODE_LOG_WARN, "ternd", "second signal: closing connections now");
        return;
    }
    d->stopping = true;
    node_log(NODE_LOG_INFO, "ternd", "%s: draining %zu request(s), grace %u ms",
             signum == SIGINT ? "SIGINT" : "SIGTERM", api_server_inflight(d->server),
             d->cfg.shutdown_grace_ms);
    api_server_shutdown(d->server, d->cfg.shutdown_grace_ms, on_server_drained, d);
}

static void set_threadpool_size(uint32_t threads)
{
    /* libuv reads this once, when the pool first starts. */
    char value[16];
    snprintf(value, sizeof value, "%u", threads);
    setenv("UV_THREADPOOL_SIZE", value, 1);
}

static int start(ternd *d)
{
    char errmsg[512] = "";
    node_store_options so = {.data_dir = d->cfg.data_dir,
                             .block_cache_bytes = d->cfg.block_cache_bytes,
                             /* The Raft log is the durable record (node/sm.h). */
                             .sync_writes = false,
                             .disk_reserve_bytes = d->cfg.disk_reserve_bytes,
                             .replicated = true};
    if (node_store_open(&so, &d->store, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "ternd: cannot open the store in %s: %s\n", d->cfg.data_dir, errmsg);
        return 1;
    }
    if (ensure_root_credentials(d) != 0) {
        fprintf(stderr, "ternd: cannot create root credentials: %s\n", node_store_errmsg(d->store));
        return 1;
    }
    d->metrics = node_metrics_new();
    d->scrub_bytes = node_metrics_counter(d->metrics, "tern_scrub_bytes_total",
                                          "Block bytes verified by the scrubber.", NULL);
    d->scrub_corrupt = node_metrics_counter(d->metrics, "tern_scrub_corrupt_blocks_total",
                                            "Corrupt blocks found by the scrubber.", NULL);
    d->scrub_orphans = node_metrics_counter(
        d->metrics, "tern_scrub_orphans_deleted_total",
        "Unreferenced blocks the leader proposed to collect after their grace period.", NULL);
    d->orphans = node_orphans_new(d->cfg.gc_grace_ms, ORPHANS_TRACKED_MAX);
    if (d->orphans == NULL) {
        fprintf(stderr, "ternd: out of memory\n");
        return 1;
    }
    if (start_group(d, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "ternd: cannot start the region group: %s\n", errmsg);
        return 1;
    }
    if (d->topology.prices.region_count > 0) {
        int region = node_topology_region(&d->topology, d->cfg.region);
        uint64_t seed;
        RAND_bytes((unsigned char *)&seed, sizeof seed);
        if (node_placement_new(&d->topology.prices, (uint32_t)region, d->store, seed,
                               (double)d->cfg.placement_half_life_s / 3600.0,
                               (uint32_t)d->cfg.placement_time_scale, &d->placement, errmsg,
                               sizeof errmsg) != 0) {
            fprintf(stderr, "ternd: %s\n", errmsg);
            return 1;
        }
    }
    if (d->placement && geo_peer_count(d) > 0 &&
        node_geo_fetch_new(&d->topology,
                           (uint32_t)node_topology_region(&d->topology, d->cfg.region),
                           d->cfg.root_access_key, d->cfg.root_secret_key, d->egress, d->placement,
                           &d->fetch) != 0) {
        fprintf(stderr, "ternd: out of memory\n");
        return 1;
    }
    api_server_options ao = {.loop = d->loop,
                             .store = d->store,
                             .group = d->group,
                             .metrics = d->metrics,
                             .config = &d->cfg,
                             .started_ms = tern_now_ms(),
                             .egress = d->egress,
                             .topology = d->topology.prices.region_count ? &d->topology : NULL,
                             .placement = d->placement,
                             .fetch = d->fetch};
    if (api_server_start(&ao, &d->server, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "ternd: %s\n", errmsg);
        return 1;
    }
    /* A generated secret must be shown once so it can be used; a configured one never is. */
    if (d->secret_generated)
        printf("root access key: %s\nroot secret key: %s\n", d->cfg.root_access_key,
               d->cfg.root_secret_key);
    else
        printf("root access key: %s\nroot secret key: (as configured)\n", d->cfg.root_access_key);
    fflush(stdout);
    node_log(NODE_LOG_INFO, "ternd",
             "tern %s node %llu region %s: S3 API listening on http://%s (data in %s), %s",
             TERN_VERSION, (unsigned long long)d->cfg.node_id, d->cfg.region, d->cfg.s3_listen,
             d->cfg.data_dir, d->peer_count ? "region group with peers" : "1-node region group");
    uv_signal_init(d->loop, &d->sigint);
    uv_signal_init(d->loop, &d->sigterm);
    d->sigint.data = d->sigterm.data = d;
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_timer_init(d->loop, &d->scrub_timer);
    d->scrub_timer.data = d;
    if (d->cfg.scrub_bytes_per_second > 0) uv_timer_start(&d->scrub_timer, scrub_tick, 1000, 1000);
    uv_timer_init(d->loop, &d->geo_timer);
    d->geo_timer.data = d;
    if (geo_peer_count(d) > 0) {
        /* This node among its region's endpoints: the one naming its S3 listen address. */
        char self_endpoint[300] = "";
        int me = node_topology_region(&d->topology, d->cfg.region);
        for (size_t e = 0; me >= 0 && e < d->topology.s3_endpoint_count[me]; e++) {
            const char *ep = d->topology.s3_endpoints[me][e];
            const char *host = strstr(ep, "://");
            if (host && strcmp(host + 3, d->cfg.s3_listen) == 0)
                snprintf(self_endpoint, sizeof self_endpoint, "%s", ep);
        }
        node_geo_ship_config gc = {.store = d->store,
                                   .group = d->group,
                                   .topology = &d->topology,
                                   .local_region =
                                       (uint32_t)node_topology_region(&d->topology, d->cfg.region),
                                   .access_key = geo_key(d),
                                   .secret_key = geo_secret(d),
                                   .egress = d->egress,
                                   .placement = d->placement,
                                   .rate_bytes_per_s = d->cfg.geo_ship_bytes_per_second,
                                   .fetch = d->fetch,
                                   .self_endpoint = self_endpoint};
        char why[256];
        if (node_geo_ship_start(&gc, &d->geo, why, sizeof why) != 0) {
            fprintf(stderr, "ternd: %s\n", why);
            return 1;
        }
        uv_timer_start(&d->geo_timer, geo_tick, GEO_LEADER_CHECK_MS, GEO_LEADER_CHECK_MS);
    }
    uv_timer_init(d->loop, &d->placement_timer);
    d->placement_timer.data = d;
    if (d->placement)
        uv_timer_start(&d->placement_timer, placement_tick, PLACEMENT_TICK_MS, PLACEMENT_TICK_MS);
    return 0;
}

/* Loads --topology, if given, and checks that this node's region is one of its regions: a node
 * must not start in a region the rest of the deployment does not know. */
static int load_topology(ternd *d, char *errmsg, size_t errmsg_len)
{
    const char *path = d->cfg.topology;
    if (path == NULL) return 0;
    int rc = node_topology_load(path, &d->topology, errmsg, errmsg_len);
    if (rc == 0)
        rc = node_topology_check_region(&d->topology, d->cfg.region, path, errmsg, errmsg_len);
    if (rc != 0) return rc;
    int region = node_topology_region(&d->topology, d->cfg.region);
    assert(region >= 0); /* node_topology_check_region passed */
    rc = node_egress_new(&d->topology.prices, (uint32_t)region, &d->egress, errmsg, errmsg_len);
    if (rc != 0) return rc;
    node_log(NODE_LOG_INFO, "ternd", "topology %s: %zu region(s), %zu bucket(s) with a policy",
             path, d->topology.prices.region_count, d->topology.policy_count - 1);
    return 0;
}

int main(int argc, char **argv)
{
    ternd d = {0};
    char errmsg[512] = "";
    int rc = node_config_load(&d.cfg, argc, argv, stdout, errmsg, sizeof errmsg);
    if (rc == 1) {
        node_config_free(&d.cfg);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "ternd: %s\n", errmsg);
        node_config_free(&d.cfg);
        return 2;
    }
    int level = node_log_level_parse(d.cfg.log_level ? d.cfg.log_level : "info");
    node_log_set_level(level < 0 ? NODE_LOG_INFO : level);
    if (load_topology(&d, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "ternd: %s\n", errmsg);
        node_egress_free(d.egress);
        node_topology_free(&d.topology);
        node_config_free(&d.cfg);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    set_threadpool_size(d.cfg.io_threads);
    d.loop = uv_default_loop();
    int exit_code = start(&d);
    if (exit_code == 0) {
        uv_run(d.loop, UV_RUN_DEFAULT);
        node_log(NODE_LOG_INFO, "ternd", "event loop finished; closing the store");
    }
    api_server_free(d.server);
    if (d.group) {
        /* start() failed after the group was created: close it before the store. */
        node_group_close(d.group, NULL, NULL);
        d.group = NULL;
        uv_run(d.loop, UV_RUN_DEFAULT);
    }
    uv_run(d.loop, UV_RUN_NOWAIT); /* let closed handles finish */
    node_sm_free(d.sm);
    node_orphans_free(d.orphans);
    node_store_close(d.store);
    node_metrics_free(d.metrics);
    node_geo_ship_free(d.geo);
    node_geo_fetch_free(d.fetch);
    node_placement_free(d.placement);
    node_egress_free(d.egress);
    node_topology_free(&d.topology);
    node_config_free(&d.cfg);
    uv_loop_close(d.loop);
    if (exit_code == 0) node_log(NODE_LOG_INFO, "ternd", "stopped cleanly");
    return exit_code;
}
