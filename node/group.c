/* The region group driver: raft core on the loop thread, storage, transport, updates, status. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "group_internal.h"

/*
 * DESIGN NOTES
 *
 * Everything that touches the raft core runs on the loop thread, in one place:
 * group__kick() drains raft_get_update/raft_advance until the core has nothing more. An update
 * is turned into work for others and never waited on:
 *   entries, hard state, snapshot chunk -> one persist job (copied; the core hands out the
 *                                          next batch only after raft_persisted, so the
 *                                          persist thread's next job carries everything that
 *                                          arrived during the fdatasync: group commit);
 *   messages                           -> encoded and queued on the transport;
 *   committed entries                  -> the apply thread's target index (it reads the
 *                                          entries back from the log, so the apply queue is
 *                                          one number and never grows);
 *   ReadIndex answers, role changes    -> handled after raft_advance, because they run user
 *                                          callbacks that may propose again.
 * kick is re-entrancy safe: a call made while it runs (from a callback) just asks it to loop.
 */

#define COMPONENT           "group"
#define SWEEP_MS            100
#define PROMOTE_MS          500
#define PEER_LISTEN_DEFAULT "127.0.0.1:7000"

int64_t group__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool group__on_loop(const node_group *g)
{
    return pthread_equal(pthread_self(), g->loop_thread);
}

/* ---------------- raft storage callbacks (loop thread) ---------------- */

static void storage_failed(node_group *g, const char *what, uint64_t index, int rc)
{
    /* The core cannot go on without its log (raft.h: a read error must stop the node). */
    node_log(NODE_LOG_ERROR, COMPONENT, "raft log %s of entry %" PRIu64 " failed: %s (%s)", what,
             index, tern_strerror(rc), node_raftlog_errmsg(g->log));
    abort();
}

static uint64_t storage_term(void *ctx, uint64_t index)
{
    node_group *g = ctx;
    const raft_snapshot_meta *snap = g->r ? raft_get_snapshot(g->r) : NULL;
    uint64_t snap_index = snap ? snap->index : g->snapshot_index;
    if (index == snap_index && index > 0) {
        uint64_t term = 0;
        if (snap) return snap->term;
        if (node_raftlog_term(g->log, index, &term) == 0) return term;
    }
    if (index == 0) return 0;
    uint64_t term;
    int rc = node_raftlog_term(g->log, index, &term);
    if (rc != 0) storage_failed(g, "term", index, rc);
    return term;
}

static void storage_entry(void *ctx, uint64_t index, raft_entry *out)
{
    node_group *g = ctx;
    node_raftlog_entries_free(g->entry_read);
    g->entry_read = NULL;
    size_t count;
    int rc = node_raftlog_read(g->log, index, index, SIZE_MAX, &g->entry_read, &count);
    if (rc != 0) storage_failed(g, "read", index, rc);
    const node_raftlog_entry *e = &g->entry_read[0];
    *out = (raft_entry){.index = e->index,
                        .term = e->term,
                        .type = (raft_entry_type)e->type,
                        .data = e->len ? e->data : NULL,
                        .len = e->len};
}

static long storage_snapshot_read(void *ctx, uint64_t index, uint64_t offset, void *buf, size_t len)
{
    return group__stream_read(ctx, index, offset, buf, len);
}

/* ---------------- failure ---------------- */

void group__fail(node_group *g, const char *why)
{
    if (g->failed) return;
    __atomic_store_n(&g->failed, true, __ATOMIC_RELEASE);
    node_log(NODE_LOG_ERROR, COMPONENT,
             "region group %s node %" PRIu64 " stopped: %s; refusing new work until restart",
             g->region, g->cfg.node_id, why);
    group__propose_close(g, TERN_EFAILED);
}

/* ---------------- the update loop ---------------- */

static void send_messages(node_group *g, const raft_update *u)
{
    for (size_t i = 0; i < u->messages_count; i++) {
        const raft_message *m = &u->messages[i];
        if (g->transport == NULL) continue;
        uint8_t *buf;
        size_t len;
        int rc = node_raftwire_encode(m, 0, &buf, &len);
        if (rc != 0) {
            node_log(NODE_LOG_WARN, COMPONENT, "cannot encode a raft message to %" PRIu64 ": %s",
                     m->to, tern_strerror(rc));
            continue;
        }
        /* A full outbox or an unknown peer is message loss, which Raft tolerates. */
        rc = node_transport_send(g->transport, m->to, NODE_FRAME_RAFT, buf, len);
        if (rc == 0 && m->type == RAFT_MSG_SNAPSHOT && g->m_snap_sent)
            node_counter_add(g->m_snap_sent, 1);
        free(buf);
    }
}

static group_persist_job *persist_job_from(node_group *g, const raft_update *u)
{
    size_t bytes = 0;
    for (size_t i = 0; i < u->entries_count; i++)
        bytes += u->entries[i].len;
    group_persist_job *job = calloc(1, sizeof *job);
    if (job == NULL) return NULL;
    job->persist_seq = u->persist_seq;
    if (u->entries_count > 0) {
        job->entries = calloc(u->entries_count, sizeof *job->entries);
        job->data = malloc(bytes ? bytes : 1);
        if (job->entries == NULL || job->data == NULL) goto nomem;
        uint8_t *p = job->data;
        for (size_t i = 0; i < u->entries_count; i++) {
            job->entries[i] = u->entries[i];
            if (u->entries[i].len) memcpy(p, u->entries[i].data, u->entries[i].len);
            job->entries[i].data = u->entries[i].len ? p : NULL;
            p += u->entries[i].len;
            g->log_bytes_since_snapshot += u->entries[i].len;
        }
        g->log_entries_since_snapshot += u->entries_count;
        job->entries_count = u->entries_count;
    }
    job->save_hard_state = u->hard_state_changed;
    job->hard_state = u->hard_state;
    if (u->snapshot_chunk) {
        const raft_snapshot_chunk *c = u->snapshot_chunk;
        job->has_chunk = true;
        job->chunk_meta = *c->meta;
        job->chunk_offset = c->offset;
        job->chunk_len = c->len;
        job->chunk_done = c->done;
        job->chunk_data = malloc(c->len ? c->len : 1);
        if (job->chunk_data == NULL) goto nomem;
        if (c->len) memcpy(job->chunk_data, c->data, c->len);
    }
    return job;
nomem:
    group__persist_job_free(job);
    return NULL;
}

static void on_conf(node_group *g, const raft_conf *conf)
{
    if (g->transport == NULL) return;
    for (size_t i = 0; i < conf->count; i++) {
        const raft_member *m = &conf->members[i];
        if (m->id == g->cfg.node_id || m->address[0] == '\0') continue;
        char host[NODE_GROUP_ADDRESS_MAX];
        int port;
        if (group__split_host_port(m->address, host, sizeof host, &port) != 0) continue;
        /* TERN_EEXIST for a known peer: addresses of known peers do not move. */
        int rc = node_transport_add_peer(g->transport, m->id, host, port);
        if (rc == 0)
            node_log(NODE_LOG_INFO, COMPONENT, "peer %" PRIu64 " at %s joined the configuration",
                     m->id, m->address);
    }
}

static void on_role(node_group *g, raft_role role, uint64_t term, uint64_t leader)
{
    bool leader_changed = leader != g->leader_id;
    if (role != g->role && (role == RAFT_CANDIDATE) && g->m_elections)
        node_counter_add(g->m_elections, 1);
    if (role != g->role || leader_changed) {
        node_log(NODE_LOG_INFO, COMPONENT,
                 "region %s node %" PRIu64 ": %s in term %" PRIu64 ", leader %" PRIu64, g->region,
                 g->cfg.node_id, raft_role_name(role), term, leader);
    }
    g->role = role;
    g->term = term;
    __atomic_store_n(&g->leader_id, leader, __ATOMIC_RELEASE); /* read by node_group_ready */
    if (leader == 0 && g->leader_lost_ms == 0) g->leader_lost_ms = group__now_ms();
    if (leader != 0) g->leader_lost_ms = 0;
    if (leader_changed) {
        /* Everything in flight to the old leader may be lost: send it again to the new one
         * (same client_id/seq: the state machine applies it once). */
        if (g->round_id != 0 && g->round_leader != leader) group__barrier_abandon_round(g);
        if (leader != 0) group__propose_dispatch_all(g);
    }
}

static void process_one(node_group *g, raft_read_ready **reads, size_t *reads_count,
                        bool *role_changed, raft_role *role, uint64_t *term, uint64_t *leader)
{
    raft_update u;
    raft_get_update(g->r, &u);
    if (u.persist_seq != 0 || u.entries_count > 0 || u.snapshot_chunk != NULL) {
        assert(g->persist_inflight == NULL); /* the core hands out one batch at a time */
        group_persist_job *job = persist_job_from(g, &u);
        if (job == NULL) {
            raft_advance(g->r, &u);
            group__fail(g, "out of memory copying a persist batch");
            return;
        }
        g->persist_inflight = job;
        group__persist_submit(g, job);
    }
    send_messages(g, &u);
    if (u.committed_count > 0) group__apply_set_target(g, u.committed[u.committed_count - 1].index);
    if (u.reads_count > 0) {
        raft_read_ready *grown = realloc(*reads, (*reads_count + u.reads_count) * sizeof **reads);
        if (grown != NULL) {
            memcpy(grown + *reads_count, u.reads, u.reads_count * sizeof *grown);
            *reads = grown;
            *reads_count += u.reads_count;
        }
    }
    if (u.conf_changed && u.conf) on_conf(g, u.conf);
    if (u.role_changed) {
        *role_changed = true;
        *role = u.role;
        *term = u.term;
        *leader = u.leader_id;
    }
    raft_advance(g->r, &u);
}

void group__kick(node_group *g)
{
    if (g->processing) {
        g->process_again = true;
        return;
    }
    g->processing = true;
    do {
        g->process_again = false;
        while (!g->failed && !g->closing && raft_has_update(g->r)) {
            raft_read_ready *reads = NULL;
            size_t reads_count = 0;
            bool role_changed = false;
            raft_role role = g->role;
            uint64_t term = g->term, leader = g->leader_id;
            process_one(g, &reads, &reads_count, &role_changed, &role, &term, &leader);
            /* After raft_advance: these run callbacks that may call into the core again. */
            if (role_changed) on_role(g, role, term, leader);
            if (reads_count > 0) group__barrier_on_reads(g, reads, reads_count);
            free(reads);
        }
        if (!g->failed && !g->closing) {
            group__barrier_start_round(g);
            group__admin_on_progress(g);
        }
    } while ((g->process_again || raft_has_update(g->r)) && !g->closing && !g->failed);
    g->processing = false;
    if (!g->closing) group__metrics_update(g);
}

/* ---------------- snapshots: when to take one, and taking it into the core ---------------- */

static void maybe_snapshot(node_group *g)
{
    if (!g->snapshots_supported || g->snapshot_running || g->failed || g->closing) return;
    if (g->log_bytes_since_snapshot < g->cfg.snapshot_threshold_bytes &&
        g->log_entries_since_snapshot < g->cfg.snapshot_threshold_entries)
        return;
    if (atomic_load(&g->applied) <= g->snapshot_index) return;
    g->snapshot_running = true;
    group__apply_request_snapshot(g);
}

static void on_snapshot_taken(node_group *g, int rc, const raft_snapshot_meta *meta)
{
    g->snapshot_running = false;
    if (rc != 0) {
        node_log(NODE_LOG_WARN, COMPONENT, "snapshot failed: %s", tern_strerror(rc));
        return;
    }
    rc = raft_compact(g->r, meta);
    if (rc != 0) {
        /* TERN_ENOTSUP while the core lacks compaction: keep the whole log. */
        node_log(NODE_LOG_WARN, COMPONENT, "raft_compact(%" PRIu64 ") refused: %s; snapshots off",
                 meta->index, tern_strerror(rc));
        g->snapshots_supported = false;
        group_persist_job *job = calloc(1, sizeof *job);
        if (job) {
            job->compact = true;
            job->compact_meta = *meta;
            job->compact_meta.index = 0; /* only prune the unused directory */
            job->compact_prefix_index = meta->index;
            group__persist_submit(g, job);
        }
        return;
    }
    if (g->m_snap_taken) node_counter_add(g->m_snap_taken, 1);
    node_log(NODE_LOG_INFO, COMPONENT, "snapshot at index %" PRIu64 " term %" PRIu64, meta->index,
             meta->term);
    g->snapshot_index = meta->index;
    g->log_bytes_since_snapshot = 0;
    g->log_entries_since_snapshot = 0;
    group_persist_job *job = calloc(1, sizeof *job);
    if (job == NULL) return; /* the log is only compacted later */
    job->compact = true;
    job->compact_meta = *meta;
    uint64_t keep = g->cfg.snapshot_keep_entries;
    job->compact_prefix_index = meta->index > keep ? meta->index - keep : 0;
    group__persist_submit(g, job);
}

/* ---------------- uv callbacks ---------------- */

static void on_persist_async(uv_async_t *h)
{
    node_group *g = h->data;
    pthread_mutex_lock(&g->persist_mu);
    group_persist_job *done = g->persist_done_head;
    g->persist_done_head = NULL;
    pthread_mutex_unlock(&g->persist_mu);
    /* The list is newest first; raft_persisted wants order only by seq, which is monotonic. */
    for (group_persist_job *job = done, *next; job; job = next) {
        next = job->next;
        if (g->m_sync && job->persist_seq) node_histogram_observe(g->m_sync, job->sync_seconds);
        if (job->rc != 0) {
            char why[128];
            snprintf(why, sizeof why, "raft log write failed: %s", tern_strerror(job->rc));
            group__fail(g, why);
        } else if (job == g->persist_inflight && !g->closing && !g->failed) {
            if (job->has_chunk && job->chunk_done) {
                g->snapshot_index = job->chunk_meta.index;
                g->log_bytes_since_snapshot = g->log_entries_since_snapshot = 0;
                if (g->m_snap_installed) node_counter_add(g->m_snap_installed, 1);
            }
            raft_persisted(g->r, job->persist_seq);
        }
        if (job == g->persist_inflight) g->persist_inflight = NULL;
        group__persist_job_free(job);
    }
    if (!g->closing) group__kick(g);
}

static void on_apply_async(uv_async_t *h)
{
    node_group *g = h->data;
    pthread_mutex_lock(&g->apply_mu);
    group_apply_result *results = g->results;
    size_t count = g->results_count;
    g->results = NULL;
    g->results_count = g->results_cap = 0;
    bool failed = g->apply_failed;
    bool snap = g->snapshot_result_ready;
    int snap_rc = g->snapshot_result_rc;
    raft_snapshot_meta meta = g->snapshot_result;
    g->snapshot_result_ready = false;
    pthread_mutex_unlock(&g->apply_mu);
    if (g->closing) {
        free(results);
        return;
    }
    if (failed) group__fail(g, "the state machine failed to apply an entry (TERN_EFAILED)");
    group__propose_complete_results(g, results, count);
    free(results);
    if (snap) on_snapshot_taken(g, snap_rc, &meta);
    group__barrier_on_applied(g);
    maybe_snapshot(g);
    group__kick(g);
}

static void on_inbox_async(uv_async_t *h)
{
    node_group *g = h->data;
    group__inbox_drain(g);
    if (!g->closing) group__kick(g);
}

static void on_tick(uv_timer_t *t)
{
    node_group *g = t->data;
    if (g->closing) return;
    uint64_t now = uv_now(g->loop);
    uint32_t elapsed = (uint32_t)(now - g->last_tick_ms);
    g->last_tick_ms = now;
    if (!g->failed) raft_tick(g->r, elapsed);
    g->sweep_elapsed_ms += elapsed;
    if (g->sweep_elapsed_ms >= SWEEP_MS) {
        g->sweep_elapsed_ms = 0;
        group__propose_sweep(g, group__now_ms());
        maybe_snapshot(g);
    }
    g->promote_elapsed_ms += elapsed;
    if (g->promote_elapsed_ms >= PROMOTE_MS) {
        g->promote_elapsed_ms = 0;
        if (g->role == RAFT_LEADER && !g->failed) group__auto_promote(g);
    }
    group__kick(g);
}

static void on_message(void *ctx, uint64_t peer, uint16_t type, const uint8_t *bytes, size_t len)
{
    node_group *g = ctx;
    if (g->closing) return;
    if (type == NODE_FRAME_RAFT) {
        node_raftwire_msg *m;
        int rc = node_raftwire_decode(bytes, len, &m);
        if (rc != 0) {
            node_log(NODE_LOG_WARN, COMPONENT, "malformed raft message from %" PRIu64, peer);
            return;
        }
        /* The transport proved who sent it; a message claiming another sender is dropped. */
        if (m->msg.from == peer && !g->failed) {
            rc = raft_receive(g->r, &m->msg);
            if (rc != 0)
                node_log(NODE_LOG_DEBUG, COMPONENT, "raft refused a message from %" PRIu64 ": %s",
                         peer, tern_strerror(rc));
        }
        node_raftwire_free(m);
        group__kick(g);
        return;
    }
    group__on_frame(g, peer, type, bytes, len);
    if (!g->closing) group__kick(g);
}

static void on_peer_state(void *ctx, uint64_t peer, int up)
{
    node_group *g = ctx;
    if (g->closing || !up) return;
    group__send_node_info(g, peer);
    bool reconnect = false;
    size_t slot = NODE_GROUP_PEERS_MAX;
    for (size_t i = 0; i < NODE_GROUP_PEERS_MAX; i++) {
        if (g->seen_up[i] == peer) reconnect = true;
        if (g->seen_up[i] == 0 && slot == NODE_GROUP_PEERS_MAX) slot = i;
    }
    if (!reconnect && slot < NODE_GROUP_PEERS_MAX) g->seen_up[slot] = peer;
    /* Frames handed to TLS on the connection that dropped may be lost (queued ones are sent
     * on the new connection): the leader gets our outstanding proposals again. */
    if (reconnect && peer == g->leader_id) group__propose_dispatch_all(g);
    group__kick(g);
}

/* ---------------- create ---------------- */

static void apply_defaults(node_group_config *c)
{
    if (!c->election_timeout_ms) c->election_timeout_ms = 500;
    if (!c->heartbeat_ms) c->heartbeat_ms = 50;
    if (!c->tick_ms) c->tick_ms = 10;
    if (!c->leader_wait_ms) c->leader_wait_ms = 5000;
    if (!c->commit_timeout_ms) c->commit_timeout_ms = 30000;
    if (!c->snapshot_threshold_bytes) c->snapshot_threshold_bytes = 256ull << 20;
    if (!c->snapshot_threshold_entries) c->snapshot_threshold_entries = 100000;
    if (!c->snapshot_keep_entries) c->snapshot_keep_entries = 1000;
    if (!c->pending_max) c->pending_max = 1024;
    if (!c->barriers_max) c->barriers_max = 4096;
    if (!c->forwarded_max) c->forwarded_max = 4096;
}

static int validate_config(node_group *g, char *errmsg, size_t errmsg_len)
{
    const node_group_config *c = &g->cfg;
    if (c->node_id == 0 || c->data_dir == NULL || c->region == NULL) {
        tern_errmsg(errmsg, errmsg_len, "group: node id, region and data dir are required");
        return TERN_EINVAL;
    }
    if (c->heartbeat_ms >= c->election_timeout_ms) {
        tern_errmsg(errmsg, errmsg_len,
                    "heartbeat (%u ms) must be below the election timeout "
                    "(%u ms)",
                    c->heartbeat_ms, c->election_timeout_ms);
        return TERN_EINVAL;
    }
    if (c->peer_count > NODE_GROUP_PEERS_MAX) {
        tern_errmsg(errmsg, errmsg_len, "at most %d peers", NODE_GROUP_PEERS_MAX);
        return TERN_EINVAL;
    }
    bool self = false;
    for (size_t i = 0; i < c->peer_count; i++)
        if (c->peers[i].id == c->node_id) self = true;
    if (c->peer_count > 0 && !self && !c->join) {
        tern_errmsg(errmsg, errmsg_len,
                    "--peers must include this node's id %" PRIu64 " (or start it with --join)",
                    c->node_id);
        return TERN_EINVAL;
    }
    if (c->peer_count > 0 && (!c->peer_ca || !c->peer_cert || !c->peer_key)) {
        tern_errmsg(errmsg, errmsg_len, "--peers needs --peer-ca, --peer-cert and --peer-key");
        return TERN_EINVAL;
    }
    if (c->join && c->peer_count == 0) {
        tern_errmsg(errmsg, errmsg_len, "--join needs --peers naming the group's members");
        return TERN_EINVAL;
    }
    return 0;
}

static int copy_strings(node_group *g, const node_group_config *cfg)
{
    g->region = strdup(cfg->region);
    g->data_dir = strdup(cfg->data_dir);
    g->s3_listen = strdup(cfg->s3_listen ? cfg->s3_listen : "");
    const char *listen = cfg->peer_listen;
    if (listen == NULL) {
        for (size_t i = 0; i < cfg->peer_count; i++)
            if (cfg->peers[i].id == cfg->node_id) listen = cfg->peers[i].address;
    }
    g->peer_listen = strdup(listen ? listen : PEER_LISTEN_DEFAULT);
    size_t len = strlen(cfg->data_dir) + 8;
    g->raft_dir = malloc(len);
    if (!g->region || !g->data_dir || !g->s3_listen || !g->peer_listen || !g->raft_dir)
        return TERN_ENOMEM;
    snprintf(g->raft_dir, len, "%s/raft", cfg->data_dir);
    g->cfg.region = g->region;
    g->cfg.data_dir = g->data_dir;
    g->cfg.s3_listen = g->s3_listen;
    g->cfg.peer_listen = g->peer_listen;
    g->cfg.peer_ca = g->cfg.peer_cert = g->cfg.peer_key = NULL; /* only used in create */
    if (cfg->peer_count > 0) memcpy(g->peers, cfg->peers, cfg->peer_count * sizeof *g->peers);
    g->peer_count = cfg->peer_count;
    g->cfg.peers = g->peers;
    return 0;
}

static int mkdir_p(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return TERN_EIO;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return TERN_EIO;
    return 0;
}

/* The log must continue the snapshot: entries at or below it are never read, entries after it
 * must follow it. A log that does not (a crash between saving a received snapshot's meta and
 * emptying the log) is emptied. */
static int reconcile_log(node_group *g, const raft_snapshot_meta *snap)
{
    if (snap->index == 0) return 0;
    uint64_t first = node_raftlog_first_index(g->log), last = node_raftlog_last_index(g->log);
    if (last == 0) return 0;
    bool keep;
    if (first > snap->index + 1) {
        keep = false; /* a gap */
    } else if (last <= snap->index) {
        keep = true; /* all covered by the snapshot; harmless, compacted later */
    } else {
        uint64_t term = 0;
        keep = node_raftlog_term(g->log, snap->index, &term) == 0 && term == snap->term;
        if (first == snap->index + 1) keep = true;
    }
    if (keep) return 0;
    node_log(NODE_LOG_WARN, COMPONENT,
             "raft log %" PRIu64 "..%" PRIu64 " does not continue snapshot %" PRIu64
             "; emptying it",
             first, last, snap->index);
    return node_raftlog_truncate_suffix(g->log, first);
}

/* The configuration as of the applied index: the latest CONFIG entry at or below it, else the
 * snapshot's, else the bootstrap voters (with --peers addresses). */
static int initial_conf(node_group *g, const raft_snapshot_meta *snap, uint64_t applied,
                        const uint64_t *voters, size_t voters_count)
{
    raft_conf *c = &g->apply_conf;
    memset(c, 0, sizeof *c);
    if (snap->index > 0) {
        *c = snap->conf;
    } else {
        for (size_t i = 0; i < voters_count; i++) {
            c->members[i].id = voters[i];
            c->members[i].role = RAFT_MEMBER_VOTER;
        }
        c->count = voters_count;
    }
    uint64_t first = node_raftlog_first_index(g->log);
    uint64_t from = TERN_MAX(first, snap->index + 1);
    for (uint64_t i = applied; first > 0 && i >= from && i > 0; i--) {
        uint32_t type;
        if (node_raftlog_type(g->log, i, &type) != 0) break;
        if (type != RAFT_ENTRY_CONFIG) continue;
        node_raftlog_entry *e;
        size_t n;
        int rc = node_raftlog_read(g->log, i, i, SIZE_MAX, &e, &n);
        if (rc != 0) return rc;
        rc = raft_conf_decode(e->data, e->len, c);
        node_raftlog_entries_free(e);
        if (rc != 0) return rc;
        break;
    }
    return 0;
}

static int start_transport(node_group *g, const node_group_config *cfg, char *errmsg,
                           size_t errmsg_len)
{
    char host[NODE_GROUP_ADDRESS_MAX];
    int port;
    if (group__split_host_port(g->peer_listen, host, sizeof host, &port) != 0) {
        tern_errmsg(errmsg, errmsg_len, "bad --peer-listen '%s'", g->peer_listen);
        return TERN_EINVAL;
    }
    node_transport_config tc = {
        .listen_host = host,
        .listen_port = port,
        .node_id = cfg->node_id,
        .ca_path = cfg->peer_ca,
        .cert_path = cfg->peer_cert,
        .key_path = cfg->peer_key,
        .frame_bytes_max = GROUP_FRAME_BYTES_MAX,
        .outbox_bytes_max = 64u << 20,
        .redial_ms_min = 20,
        .redial_ms_max = 1000,
        .hello_timeout_ms = 5000,
    };
    node_transport_callbacks cb = {
        .ctx = g, .on_message = on_message, .on_peer_state = on_peer_state};
    int rc = node_transport_create(g->loop, &tc, &cb, &g->transport, errmsg, errmsg_len);
    if (rc != 0) return rc;
    g->handles_open++;
    for (size_t i = 0; i < g->peer_count; i++) {
        if (g->peers[i].id == cfg->node_id) continue;
        if (group__split_host_port(g->peers[i].address, host, sizeof host, &port) != 0 ||
            node_transport_add_peer(g->transport, g->peers[i].id, host, port) != 0) {
            tern_errmsg(errmsg, errmsg_len, "bad peer address '%s' (numeric IP:PORT expected)",
                        g->peers[i].address);
            return TERN_EINVAL;
        }
    }
    return 0;
}

static uint64_t random_u64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != sizeof v)
        v = (uint64_t)group__now_ms() * 0x9E3779B97F4A7C15ull;
    return v;
}

static int open_storage(node_group *g, raft_snapshot_meta *snap, uint64_t *applied, char *errmsg,
                        size_t errmsg_len)
{
    char path[1024];
    int rc = mkdir_p(g->raft_dir);
    if (rc != 0) {
        tern_errmsg(errmsg, errmsg_len, "cannot create %s: %s", g->raft_dir, strerror(errno));
        return rc;
    }
    snprintf(path, sizeof path, "%s/log", g->raft_dir);
    rc = node_raftlog_open(path, NULL, &g->log, errmsg, errmsg_len);
    if (rc != 0) return rc;
    rc = group__meta_load(g->raft_dir, snap, errmsg, errmsg_len);
    if (rc != 0) return rc;
    rc = reconcile_log(g, snap);
    if (rc != 0) {
        tern_errmsg(errmsg, errmsg_len, "%s", node_raftlog_errmsg(g->log));
        return rc;
    }
    *applied = g->sm.applied_index(g->sm.ctx);
    if (*applied < snap->index) {
        /* The state machine is behind the snapshot that replaced its log prefix (a crash while
         * installing a received one): install it again from the local copy. */
        rc = group__install_local_snapshot(g, snap, errmsg, errmsg_len);
        if (rc != 0) return rc;
        *applied = g->sm.applied_index(g->sm.ctx);
    }
    uint64_t last = TERN_MAX(node_raftlog_last_index(g->log), snap->index);
    if (*applied > last) {
        tern_errmsg(errmsg, errmsg_len,
                    "the state machine applied index %" PRIu64 " but the raft log in %s ends at "
                    "%" PRIu64 ": wrong data directory?",
                    *applied, g->raft_dir, last);
        return TERN_ECORRUPT;
    }
    g->snapshot_index = snap->index;
    node_raftlog_hard_state_get(g->log, &g->saved_hs);
    return 0;
}

static int start_raft(node_group *g, const raft_snapshot_meta *snap, uint64_t applied, char *errmsg,
                      size_t errmsg_len)
{
    uint64_t voters[NODE_GROUP_PEERS_MAX];
    size_t voters_count = 0;
    if (g->peer_count == 0)
        voters[voters_count++] = g->cfg.node_id;
    else if (!g->cfg.join)
        for (size_t i = 0; i < g->peer_count; i++)
            voters[voters_count++] = g->peers[i].id;
    int rc = initial_conf(g, snap, applied, voters, voters_count);
    if (rc != 0) {
        tern_errmsg(errmsg, errmsg_len, "cannot read the configuration from the raft log: %s",
                    tern_strerror(rc));
        return rc;
    }
    /* Addresses of bootstrap members come from --peers. */
    for (size_t i = 0; i < g->apply_conf.count; i++)
        for (size_t j = 0; j < g->peer_count; j++)
            if (g->apply_conf.members[i].id == g->peers[j].id &&
                g->apply_conf.members[i].address[0] == '\0')
                snprintf(g->apply_conf.members[i].address, RAFT_ADDRESS_MAX, "%s",
                         g->peers[j].address);
    raft_config_default(&g->rcfg);
    g->rcfg.id = g->cfg.node_id;
    g->rcfg.voters = voters;
    g->rcfg.voters_count = voters_count;
    g->rcfg.election_timeout_ms = g->cfg.election_timeout_ms;
    g->rcfg.heartbeat_interval_ms = g->cfg.heartbeat_ms;
    g->rcfg.seed = random_u64();
    g->rcfg.entry_bytes_max = GROUP_ENTRY_BYTES_MAX;
    g->rcfg.uncommitted_bytes_max = 256u << 20;
    g->rcfg.reads_max = g->cfg.barriers_max + g->cfg.forwarded_max + 16;
    g->rcfg.snapshot_chunk_bytes = GROUP_CHUNK_BYTES;
    if (g->rcfg.learner_catchup_entries == 0) g->rcfg.learner_catchup_entries = 1000;
    node_raftlog_hard_state hs;
    node_raftlog_hard_state_get(g->log, &hs);
    raft_hard_state rhs = {.term = hs.term, .vote = hs.vote, .commit = hs.commit};
    uint64_t last = TERN_MAX(node_raftlog_last_index(g->log), snap->index);
    if (rhs.commit > last) rhs.commit = last;
    raft_storage storage = {.ctx = g,
                            .last_index = last,
                            .term = storage_term,
                            .entry = storage_entry,
                            .snapshot = *snap,
                            .snapshot_read = storage_snapshot_read};
    rc = raft_new(&g->r, &g->rcfg, &storage, &rhs, applied, errmsg, errmsg_len);
    g->rcfg.voters = NULL;
    return rc;
}

static int init_handles(node_group *g)
{
    uv_timer_init(g->loop, &g->tick_timer);
    uv_async_init(g->loop, &g->persist_async, on_persist_async);
    uv_async_init(g->loop, &g->apply_async, on_apply_async);
    uv_async_init(g->loop, &g->inbox_async, on_inbox_async);
    g->tick_timer.data = g->persist_async.data = g->apply_async.data = g->inbox_async.data = g;
    g->handles_open += 4;
    g->last_tick_ms = uv_now(g->loop);
    uv_timer_start(&g->tick_timer, on_tick, g->cfg.tick_ms, g->cfg.tick_ms);
    return 0;
}

static void group_free(node_group *g);

int node_group_create(uv_loop_t *loop, const node_group_config *cfg, const node_group_sm *sm,
                      node_group **out, char *errmsg, size_t errmsg_len)
{
    *out = NULL;
    node_group *g = calloc(1, sizeof *g);
    if (g == NULL) return TERN_ENOMEM;
    g->loop = loop;
    g->loop_thread = pthread_self();
    g->cfg = *cfg;
    g->sm = *sm;
    apply_defaults(&g->cfg);
    g->pending.next = g->pending.prev = &g->pending;
    pthread_mutex_init(&g->inbox_mu, NULL);
    pthread_mutex_init(&g->persist_mu, NULL);
    pthread_cond_init(&g->persist_cond, NULL);
    pthread_mutex_init(&g->apply_mu, NULL);
    pthread_cond_init(&g->apply_cond, NULL);
    pthread_mutex_init(&g->meta_mu, NULL);
    g->send.fd = -1;
    g->recv.fd = -1;
    g->snapshots_supported = sm->snapshot_create != NULL && sm->snapshot_install != NULL;
    int rc = validate_config(g, errmsg, errmsg_len);
    if (rc == 0) rc = copy_strings(g, cfg);
    if (rc != 0) goto err;
    g->lane_count = (uint32_t)TERN_MIN((g->cfg.pending_max + NODE_GROUP_DEDUP_WINDOW - 1) /
                                           NODE_GROUP_DEDUP_WINDOW,
                                       GROUP_LANES_MAX);
    g->lanes = calloc(g->lane_count, sizeof *g->lanes);
    g->fwd_reads = calloc(g->cfg.forwarded_max, sizeof *g->fwd_reads);
    if (g->lanes == NULL || g->fwd_reads == NULL) {
        rc = TERN_ENOMEM;
        goto err;
    }
    for (uint32_t i = 0; i < g->lane_count; i++)
        g->lanes[i].next_seq = 1;
    g->pending_bytes_max = 512u << 20;
    /* client id: 16 bits of node id, 40 random bits for this incarnation, 8 bits of lane. */
    g->client_base = ((g->cfg.node_id & 0xFFFF) << 48) | ((random_u64() & 0xFFFFFFFFFFull) << 8);
    if (g->client_base == 0) g->client_base = 1u << 8;
    raft_snapshot_meta snap;
    uint64_t applied;
    rc = open_storage(g, &snap, &applied, errmsg, errmsg_len);
    if (rc == 0) rc = start_raft(g, &snap, applied, errmsg, errmsg_len);
    if (rc != 0) goto err;
    atomic_store(&g->applied, applied);
    g->apply_target = applied;
    uint64_t applied_term = 0;
    if (applied > 0 && applied == snap.index)
        applied_term = snap.term;
    else if (applied > 0)
        node_raftlog_term(g->log, applied, &applied_term);
    atomic_store(&g->applied_term, applied_term);
    g->log_entries_since_snapshot = node_raftlog_last_index(g->log) > snap.index
                                        ? node_raftlog_last_index(g->log) - snap.index
                                        : 0;
    group__metrics_init(g);
    if (g->peer_count > 0) {
        rc = start_transport(g, cfg, errmsg, errmsg_len);
        if (rc != 0) goto err;
    }
    init_handles(g);
    rc = group__threads_start(g, errmsg, errmsg_len);
    if (rc != 0) {
        /* Handles are live: close asynchronously like a normal close. */
        node_group_close(g, NULL, NULL);
        return rc;
    }
    g->role = RAFT_FOLLOWER;
    g->leader_lost_ms = group__now_ms();
    node_log(NODE_LOG_INFO, COMPONENT,
             "region %s node %" PRIu64 ": %zu peer(s), log %" PRIu64 "..%" PRIu64
             ", applied %" PRIu64 ", snapshot %" PRIu64 "%s",
             g->region, g->cfg.node_id, g->peer_count, node_raftlog_first_index(g->log),
             node_raftlog_last_index(g->log), applied, snap.index, g->cfg.join ? ", joining" : "");
    *out = g;
    group__kick(g);
    return 0;
err:
    if (g->transport) {
        node_transport_close(g->transport, NULL, NULL);
        g->transport = NULL;
    }
    group_free(g);
    return rc;
}

/* ---------------- close ---------------- */

static void group_free(node_group *g)
{
    group__stream_close(&g->send);
    raft_free(g->r);
    node_raftlog_entries_free(g->entry_read);
    if (g->log) node_raftlog_close(g->log);
    pthread_mutex_destroy(&g->inbox_mu);
    pthread_mutex_destroy(&g->persist_mu);
    pthread_cond_destroy(&g->persist_cond);
    pthread_mutex_destroy(&g->apply_mu);
    pthread_cond_destroy(&g->apply_cond);
    pthread_mutex_destroy(&g->meta_mu);
    free(g->results);
    free(g->lanes);
    free(g->fwd_reads);
    free(g->region);
    free(g->data_dir);
    free(g->raft_dir);
    free(g->s3_listen);
    free(g->peer_listen);
    free(g);
}

static void handle_closed(node_group *g)
{
    if (--g->handles_open > 0) return;
    void (*cb)(void *) = g->on_closed;
    void *ctx = g->on_closed_ctx;
    group_free(g);
    if (cb) cb(ctx);
}

static void on_handle_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void on_transport_closed(void *ctx)
{
    handle_closed(ctx);
}

void node_group_close(node_group *g, void (*on_closed)(void *ctx), void *ctx)
{
    assert(group__on_loop(g));
    assert(!g->closing);
    g->on_closed = on_closed;
    g->on_closed_ctx = ctx;
    /* Atomic: node_group_submit reads it on other threads. */
    __atomic_store_n(&g->closing, true, __ATOMIC_RELEASE);
    group__propose_close(g, TERN_ECLOSED);
    group__threads_stop(g);
    if (g->persist_inflight) g->persist_inflight = NULL; /* freed by threads_stop */
    group__propose_close(g, TERN_ECLOSED); /* anything the threads' last results named */
    uv_timer_stop(&g->tick_timer);
    if (g->transport) {
        node_transport *t = g->transport;
        g->transport = NULL;
        node_transport_close(t, on_transport_closed, g);
    }
    uv_close((uv_handle_t *)&g->tick_timer, on_handle_closed);
    uv_close((uv_handle_t *)&g->persist_async, on_handle_closed);
    uv_close((uv_handle_t *)&g->apply_async, on_handle_closed);
    uv_close((uv_handle_t *)&g->inbox_async, on_handle_closed);
    node_log(NODE_LOG_INFO, COMPONENT, "region group closed (node %" PRIu64 ")", g->cfg.node_id);
}

int node_group_peer_port(node_group *g)
{
    return g->transport ? node_transport_listen_port(g->transport) : 0;
}

uint64_t node_group_client_id(node_group *g)
{
    return g->client_base;
}
