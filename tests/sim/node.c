/* sim: the driver of one simulated node (the Ready/Advance loop) and the clients that use it. */
#include <assert.h>
#include <string.h>

#include "sim.h"

/* Rounds of the update loop before a node that never quiesces is reported. */
#define SIM_PROCESS_ROUNDS_MAX 10000
/* A persist batch is synced at once with this chance, otherwise 1..SIM_SYNC_DELAY_MAX_MS later. */
#define SIM_SYNC_NOW_PERMILLE 500
#define SIM_SYNC_DELAY_MAX_MS 30

void sim_node_start(sim *s, sim_node *n)
{
    uint64_t voters[SIM_NODES_MAX];
    for (size_t k = 0; k < s->n; k++)
        voters[k] = k + 1;
    raft_config config = s->config;
    config.id = n->id;
    config.voters = voters;
    config.voters_count = s->n;
    config.seed = s->seed * 1000003 + n->incarnation; /* a new draw of timeouts per life */
    raft_storage storage = sim_disk_storage(&n->disk);
    char err[256];
    /* The state machine is in memory: it is rebuilt by applying the log from index 1. */
    memset(n->kv, 0, sizeof(n->kv));
    n->applied = 0;
    n->reads_count = 0;
    n->sync_pending = false;
    const raft_hard_state *hs = &n->disk.current_hs;
    const sim_log *log = &n->disk.current;
    sim_trace(s,
              "start node %llu: hard state term %llu vote %llu commit %llu, log %zu entries "
              "(last term %llu)",
              (unsigned long long)n->id, (unsigned long long)hs->term, (unsigned long long)hs->vote,
              (unsigned long long)hs->commit, log->count,
              (unsigned long long)(log->count ? log->entries[log->count - 1].e.term : 0));
    int rc = raft_new(&n->r, &config, &storage, hs, 0, err, sizeof(err));
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
    if (e->type != RAFT_ENTRY_NORMAL) return;
    sim_command cmd;
    assert(e->len == sizeof(cmd));
    memcpy(&cmd, e->data, sizeof(cmd));
    assert(cmd.key < SIM_KEYS);
    n->kv[cmd.key] = cmd.value;
    sim_client *c = client_waiting(s, n, SIM_PUT, cmd.op_id);
    if (c) client_done(s, c);
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
    sim_disk_write(&n->disk, u);
    for (size_t k = 0; k < u->entries_count; k++)
        sim_check_written(s, &n->disk.current.entries[u->entries[k].index - 1]);
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
        raft_advance(n->r, &u);
        serve_reads(s, n);
        if (sync_now) {
            sim_disk_sync(&n->disk, s->break_disk_lies);
            raft_persisted(n->r, u.persist_seq);
        }
        sim_check_node(s, n);
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
    uint64_t id = c->leader_guess;
    if (id == 0 || sim_chance(&s->rng, 200)) id = 1 + sim_below(&s->rng, s->n);
    sim_node *n = &s->nodes[id - 1];
    if (!n->up || n->paused) {
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
