/* sim: the driver of one simulated node (the Ready/Advance loop) and the clients that use it. */
#include <assert.h>
#include <string.h>

#include "sim.h"

/* Rounds of the update loop before a node that never quiesces is reported. */
#define SIM_PROCESS_ROUNDS_MAX 10000
/* A persist batch is synced at once with this chance, otherwise 1..SIM_SYNC_DELAY_MAX_MS later. */
#define SIM_SYNC_NOW_PERMILLE 500
#define SIM_SYNC_DELAY_MAX_MS 30

sim_node *sim_node_by_id(sim *s, uint64_t id)
{
    if (id == 0 || sim_slot_of(id) >= s->slots) return NULL;
    sim_node *n = &s->nodes[sim_slot_of(id)];
    return n->id == id ? n : NULL;
}

static void history_push(sim_node *n, uint64_t index, uint64_t term, uint64_t chain)
{
    sim_kv_state *h = &n->history[n->history_count++ % SIM_KV_HISTORY];
    *h = (sim_kv_state){.index = index, .term = term, .chain = chain};
    memcpy(h->kv, n->kv, sizeof(h->kv));
}

static void confs_reset(sim_node *n, const raft_conf *conf, uint64_t index)
{
    n->confs[0] = *conf;
    n->conf_index[0] = index;
    n->confs_count = 1;
}

static void confs_push(sim_node *n, const raft_conf *conf, uint64_t index)
{
    if (n->confs_count == TERN_ARRAY_LEN(n->confs)) {
        memmove(n->confs, n->confs + 1, (n->confs_count - 1) * sizeof(n->confs[0]));
        memmove(n->conf_index, n->conf_index + 1, (n->confs_count - 1) * sizeof(uint64_t));
        n->confs_count--;
    }
    n->confs[n->confs_count] = *conf;
    n->conf_index[n->confs_count++] = index;
}

/* The state machine becomes the snapshot's (a restart, or an install). */
static void load_snapshot(sim *s, sim_node *n, const char *what)
{
    const sim_snapshot *snap = &n->disk.current_snap;
    sim_snap_header h;
    char why[160];
    if (sim_snapshot_parse(snap, &h, why, sizeof(why)) != 0)
        sim_fail(s, "snapshot stream", "node %llu: %s", (unsigned long long)n->id, why);
    memcpy(n->kv, h.kv, sizeof(n->kv));
    n->applied = h.index;
    n->history_count = 0;
    history_push(n, h.index, h.term, h.chain);
    confs_reset(n, &snap->meta.conf, h.index);
    sim_check_state(s, n, h.index, h.chain, h.kv, what);
}

void sim_node_start(sim *s, sim_node *n)
{
    uint64_t voters[SIM_NODES_MAX];
    for (size_t k = 0; k < s->n; k++)
        voters[k] = k + 1;
    raft_config config = s->config;
    config.id = n->id;
    config.voters = voters;
    config.voters_count = n->bootstrap ? s->n : 0;    /* a node added later joins empty */
    config.seed = s->seed * 1000003 + n->incarnation; /* a new draw of timeouts per life */
    raft_storage storage = sim_disk_storage(&n->disk);
    char err[256];
    /* The state machine is in memory: rebuilt from the durable snapshot and the log after it. */
    memset(n->kv, 0, sizeof(n->kv));
    n->applied = 0;
    n->history_count = 0;
    n->reads_count = 0;
    n->sync_pending = false;
    if (n->disk.current_snap.meta.index > 0) {
        load_snapshot(s, n, "restarts from its snapshot");
    } else {
        raft_conf none = {0};
        confs_reset(n, n->bootstrap ? &s->bootstrap_conf : &none, 0);
        history_push(n, 0, 0, 0);
    }
    const raft_hard_state *hs = &n->disk.current_hs;
    const sim_log *log = &n->disk.current;
    sim_trace(s,
              "start node %llu: hard state term %llu vote %llu commit %llu, log %zu entries "
              "(last term %llu)",
              (unsigned long long)n->id, (unsigned long long)hs->term, (unsigned long long)hs->vote,
              (unsigned long long)hs->commit, log->count,
              (unsigned long long)(log->count ? log->entries[log->count - 1].e.term : 0));
    int rc = raft_new(&n->r, &config, &storage, hs, n->applied, err, sizeof(err));
    if (rc) sim_fail(s, "restart", "node %llu: raft_new: %s", (unsigned long long)n->id, err);
    n->up = true;
    n->paused = false;
    n->commit_seen = raft_get_commit(n->r);
    n->term_seen = raft_get_term(n->r);
    sim_check_node(s, n);
    sim_node_process(s, n);
}

void sim_node_crash(sim *s, sim_node *n)
{
    raft_free(n->r);
    n->r = NULL;
    n->up = false;
    n->paused = false;
    n->sync_pending = false;
    n->incarnation++;
    sim_disk_crash(&n->disk, &s->rng, s->split_updates);
}

static sim_client *client_waiting(sim *s, sim_node *n, sim_op_type type, uint64_t op_id)
{
    for (size_t k = 0; k < SIM_CLIENTS; k++) {
        sim_client *c = &s->clients[k];
        if (c->busy && c->op.type == type && c->op_id == op_id && c->node == n->id &&
            c->incarnation == n->incarnation)
            return c;
    }
    return NULL;
}

static void client_done(sim *s, sim_client *c)
{
    c->op.ret = ++s->history.clock;
    sim_history_add(&s->history, &c->op);
    c->busy = false;
    if (c->op.type == SIM_PUT)
        s->puts_ok++;
    else
        s->gets_ok++;
}

/* Serves the reads whose index this node has applied (thesis 6.4 step 4). */
static void serve_reads(sim *s, sim_node *n)
{
    size_t kept = 0;
    for (size_t k = 0; k < n->reads_count; k++) {
        sim_read *rd = &n->reads[k];
        if (rd->index > n->applied) {
            n->reads[kept++] = *rd;
            continue;
        }
        sim_client *c = client_waiting(s, n, SIM_GET, rd->request_id);
        if (!c) continue; /* the client gave up */
        c->op.value = n->kv[c->op.key];
        client_done(s, c);
    }
    n->reads_count = kept;
}

static void apply(sim *s, sim_node *n, const raft_entry *e)
{
    sim_check_applied(s, n, e);
    n->applied = e->index;
    if (e->type == RAFT_ENTRY_NORMAL) {
        sim_command cmd;
        assert(e->len == sizeof(cmd));
        memcpy(&cmd, e->data, sizeof(cmd));
        assert(cmd.key < SIM_KEYS);
        n->kv[cmd.key] = cmd.value;
        sim_client *c = client_waiting(s, n, SIM_PUT, cmd.op_id);
        if (c) client_done(s, c);
    } else if (e->type == RAFT_ENTRY_CONFIG) {
        raft_conf conf;
        int rc = raft_conf_decode(e->data, e->len, &conf);
        assert(rc == 0);
        confs_push(n, &conf, e->index);
    }
    uint64_t chain = sim_log_at(&n->disk.current, e->index)->chain;
    sim_check_state(s, n, e->index, chain, n->kv, "applies");
    history_push(n, e->index, e->term, chain);
}

/* The driver snapshots a past applied state (compact_keep entries back, so slow followers
 * can still catch up from the log) every compact_every applied entries. */
static void maybe_compact(sim *s, sim_node *n)
{
    if (s->compact_every == 0) return;
    uint64_t snap = n->disk.current_snap.meta.index;
    if (n->applied < snap + s->compact_every + s->compact_keep) return;
    uint64_t index = n->applied - s->compact_keep;
    const sim_kv_state *state = NULL;
    for (size_t k = 0; k < TERN_MIN(n->history_count, (size_t)SIM_KV_HISTORY); k++)
        if (n->history[k].index == index) state = &n->history[k];
    const raft_conf *conf = NULL;
    for (size_t k = 0; k < n->confs_count; k++)
        if (n->conf_index[k] <= index) conf = &n->confs[k];
    /* A joining node may not know the configuration of its first entries: no snapshot yet. */
    if (!state || !conf || conf->count == 0) return;
    raft_snapshot_meta meta = {.index = index, .term = state->term, .conf = *conf};
    sim_snap_header h = {.index = index,
                         .term = state->term,
                         .chain = state->chain,
                         .filler_len = s->snapshot_filler};
    memcpy(h.kv, state->kv, sizeof(h.kv));
    sim_disk_snapshot(&n->disk, &meta, &h, s->break_snapshot);
    sim_snap_header stored;
    char why[160];
    if (sim_snapshot_parse(&n->disk.current_snap, &stored, why, sizeof(why)) != 0)
        sim_fail(s, "snapshot stream", "node %llu: %s", (unsigned long long)n->id, why);
    sim_check_state(s, n, index, stored.chain, stored.kv, "takes a snapshot");
    const raft_conf *want = sim_conf_as_of(s, index);
    if (want->count != conf->count)
        sim_fail(s, "configuration",
                 "node %llu snapshots index %llu with %zu members, %zu "
                 "committed",
                 (unsigned long long)n->id, (unsigned long long)index, conf->count, want->count);
    int rc = raft_compact(n->r, &meta);
    if (rc != 0)
        sim_fail(s, "compact", "node %llu: raft_compact(%llu): %s", (unsigned long long)n->id,
                 (unsigned long long)index, tern_strerror(rc));
    sim_disk_drop_log(&n->disk); /* the core reads none of it any more */
    s->compactions++;
    sim_trace(s, "node %llu compacts to %llu (term %llu)", (unsigned long long)n->id,
              (unsigned long long)index, (unsigned long long)state->term);
}

static void take_reads(sim_node *n, const raft_update *u)
{
    for (size_t k = 0; k < u->reads_count; k++) {
        const raft_read_ready *rr = &u->reads[k];
        if (rr->status != 0) continue; /* the client learns of it by its timeout */
        if (n->reads_count == SIM_NODE_READS_MAX) continue; /* as if the reply were lost */
        n->reads[n->reads_count++] = (sim_read){rr->request_id, rr->index};
    }
}

static void write_to_disk(sim *s, sim_node *n, const raft_update *u)
{
    if (sim_disk_write(&n->disk, u)) {
        /* Installed: the state machine is the snapshot's, the log starts after it. */
        if (u->snapshot_chunk->meta->index <= n->applied)
            sim_fail(s, "apply order", "node %llu installs snapshot %llu after applying %llu",
                     (unsigned long long)n->id, (unsigned long long)u->snapshot_chunk->meta->index,
                     (unsigned long long)n->applied);
        load_snapshot(s, n, "installs a snapshot");
        s->installs++;
        sim_trace(s, "node %llu installs snapshot %llu", (unsigned long long)n->id,
                  (unsigned long long)n->applied);
    }
    for (size_t k = 0; k < u->entries_count; k++)
        sim_check_written(s, sim_log_at(&n->disk.current, u->entries[k].index));
}

void sim_node_process(sim *s, sim_node *n)
{
    for (int round = 0; raft_has_update(n->r); round++) {
        if (round == SIM_PROCESS_ROUNDS_MAX)
            sim_fail(s, "quiescence", "node %llu never runs out of updates",
                     (unsigned long long)n->id);
        raft_update u;
        raft_get_update(n->r, &u);
        write_to_disk(s, n, &u);
        bool sync_now = false;
        if (u.persist_seq) {
            assert(!n->sync_pending); /* the core hands out one batch at a time */
            sync_now = sim_chance(&s->rng, SIM_SYNC_NOW_PERMILLE);
            if (!sync_now) {
                n->sync_pending = true;
                n->sync_seq = u.persist_seq;
                n->sync_at_ms = s->now_ms + 1 + sim_below(&s->rng, SIM_SYNC_DELAY_MAX_MS);
            }
        }
        for (size_t k = 0; k < u.messages_count; k++)
            sim_net_send(&s->net, &s->rng, s->now_ms, &u.messages[k]);
        for (size_t k = 0; k < u.committed_count; k++)
            apply(s, n, &u.committed[k]);
        take_reads(n, &u);
        if (u.role_changed)
            sim_trace(s, "node %llu: %s term %llu leader %llu", (unsigned long long)n->id,
                      raft_role_name(u.role), (unsigned long long)u.term,
                      (unsigned long long)u.leader_id);
        if (u.conf_changed)
            sim_trace(s, "node %llu: configuration of %zu members", (unsigned long long)n->id,
                      u.conf->count);
        raft_advance(n->r, &u);
        serve_reads(s, n);
        if (sync_now) {
            sim_disk_sync(&n->disk, s->break_disk_lies);
            raft_persisted(n->r, u.persist_seq);
        }
        sim_check_node(s, n);
        maybe_compact(s, n);
    }
}

void sim_node_sync(sim *s, sim_node *n)
{
    if (!n->sync_pending) return;
    n->sync_pending = false;
    sim_disk_sync(&n->disk, s->break_disk_lies);
    raft_persisted(n->r, n->sync_seq);
    sim_check_node(s, n);
    sim_node_process(s, n);
}

/* Sends one new operation to the node the client believes leads (or, at times, any node). */
void sim_client_step(sim *s, sim_client *c, size_t client_index)
{
    sim_node *n = sim_node_by_id(s, c->leader_guess);
    if (!n || sim_chance(&s->rng, 200)) n = &s->nodes[sim_below(&s->rng, s->slots)];
    uint64_t id = n->id;
    if (id == 0 || !n->up || n->paused) {
        c->leader_guess = 0; /* connection refused or no answer: try elsewhere next time */
        return;
    }
    c->op = (sim_hist_op){.type = sim_below(&s->rng, 2) ? SIM_PUT : SIM_GET,
                          .key = (uint32_t)sim_below(&s->rng, SIM_KEYS),
                          .client = (uint32_t)client_index};
    c->op_id = ++s->next_op_id;
    if (c->op.type == SIM_GET && s->break_local_reads) {
        /* Test flag: a read served from local state, without ReadIndex, may be stale. */
        c->op.call = ++s->history.clock;
        c->op.value = n->kv[c->op.key];
        client_done(s, c);
        return;
    }
    int rc;
    if (c->op.type == SIM_PUT) {
        c->op.value = ++s->next_value;
        sim_command cmd = {c->op_id, c->op.value, (uint32_t)client_index, c->op.key};
        uint64_t index;
        rc = raft_propose(n->r, &cmd, sizeof(cmd), &index);
    } else {
        rc = raft_read_index(n->r, c->op_id);
    }
    if (rc == 0) {
        c->busy = true;
        c->op.call = ++s->history.clock;
        c->node = n->id;
        c->incarnation = n->incarnation;
        c->deadline_ms = s->now_ms + SIM_CLIENT_TIMEOUT_MS;
        c->leader_guess = id;
    } else if (rc == TERN_EPRECOND) {
        c->leader_guess = raft_get_leader(n->r);
    } else if (rc != TERN_EAGAIN) {
        sim_fail(s, "client", "node %llu refused an operation: %s", (unsigned long long)id,
                 tern_strerror(rc));
    }
    sim_check_node(s, n);
    sim_node_process(s, n);
}

/* A put that timed out may or may not take effect: its return is "never". A read that timed
 * out had no effect and is left out. */
void sim_client_timeouts(sim *s)
{
    for (size_t k = 0; k < SIM_CLIENTS; k++) {
        sim_client *c = &s->clients[k];
        if (!c->busy || s->now_ms < c->deadline_ms) continue;
        if (c->op.type == SIM_PUT) {
            c->op.ret = SIM_NEVER;
            sim_history_add(&s->history, &c->op);
            s->puts_unknown++;
        }
        c->busy = false;
        c->leader_guess = 0;
    }
}
