/* sim: a deterministic simulator that runs the Raft core under faults and checks its safety. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"
/* White-box, for --break conf only: a change the core refused is appended anyway. */
#include "raft_internal.h"

/*
 * DESIGN NOTES
 *
 * One run = one seed. Everything random in a run (faults, delays, client
 * choices, the cores' own RNG seeds) is drawn from one splitmix64 stream
 * seeded from the seed, and time is simulated, so `sim --seed S` replays a
 * run exactly. Nothing reads the wall clock.
 *
 * A step is SIM_TICK_MS of simulated time:
 *   1. maybe a fault: repartition the network (heal, isolate, split, bridge,
 *      one-way, deaf/mute node), change loss/duplication/delay, crash or
 *      restart a node, pause or resume one, ask the leader to transfer
 *      leadership, or to change the membership (add a fresh node as a
 *      learner, promote a learner, remove a voter or a learner, the leader
 *      included); a node whose removal is committed is decommissioned (its
 *      disk wiped, its slot free for a fresh node with a new id);
 *   2. idle clients maybe start a put or a ReadIndex get;
 *   3. every running node: finish a due disk sync, tick, process its update;
 *   4. deliver every message due (paused nodes keep theirs until resumed);
 *   5. client timeouts.
 * Every call into a core is followed by the checks of check.c, so a
 * violation is caught at the step that causes it.
 *
 * The driver (node.c) follows raft.h: it writes an update's entries and hard
 * state to a fake disk (disk.c) that keeps them volatile until a sync, which
 * happens at once or a few milliseconds later; raft_persisted is called only
 * after the sync. A crash keeps the durable state and a random prefix of the
 * unsynced writes (a torn last record is cut at restart). A restarted node
 * rebuilds its key-value state from its durable snapshot and the log after
 * it. Drivers snapshot and compact every compact_every applied entries (the
 * disk deletes the log up to the snapshot); a lagging follower then gets the
 * snapshot in chunks.
 *
 * Nodes live in slots: the initial voters in slots 1..n, and SIM_SPARE_SLOTS
 * more for nodes added later (which start with voters_count 0). A node's id
 * is its slot plus SIM_NODES_MAX times the slot's generation, so a node added
 * after a removal is a fresh node with a new id, never an old disk rejoining.
 *
 * At the end of a run the network heals, every node runs again, and the
 * cluster must elect a leader that commits and every node must apply it all
 * (liveness under no faults). Then the history of client operations is
 * checked for linearizability, key by key (linearizability.c).
 *
 * Not simulated: lease reads, clock drift, a removed node rejoining with its
 * old disk under its old id.
 */

#define SIM_STEPS_DEFAULT 2000
#define SIM_SEEDS_DEFAULT 1
#define SIM_HEAL_MS_MAX   60000   /* a healed cluster must settle within this */
#define SIM_LIN_STEPS_MAX 5000000 /* search steps per key before the checker gives up */

/* Fault probabilities per step, in permille. */
#define SIM_P_REPARTITION 15
#define SIM_P_NET_RATES   5
#define SIM_P_CRASH       4
#define SIM_P_RESTART     20
#define SIM_P_PAUSE       3
#define SIM_P_RESUME      20
#define SIM_P_TRANSFER    5
#define SIM_P_MEMBERSHIP  10
#define SIM_P_CLIENT_OP   500

static const sim *current_sim; /* for the abort handler: which seed was running */

void sim_fail(const sim *s, const char *property, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    fprintf(
        stderr,
        "FAIL seed %llu nodes %zu step %zu (t=%llu ms): %s: %s\n"
        "replay: sim --seed %llu --nodes %zu --steps %zu%s%s%s%s%s%s%s --verbose\n",
        (unsigned long long)s->seed, s->n, s->step, (unsigned long long)s->now_ms, property, detail,
        (unsigned long long)s->seed, s->n, s->steps,
        s->tight_inflight_bytes ? " --tight-inflight-bytes" : "",
        s->split_updates ? " --split-updates" : "", s->break_disk_lies ? " --break disk-lies" : "",
        s->break_history ? " --break history" : "",
        s->break_local_reads ? " --break local-reads" : "", s->break_conf ? " --break conf" : "",
        s->break_snapshot ? " --break snapshot-state" : "");
    exit(1);
}

void sim_trace(const sim *s, const char *fmt, ...)
{
    if (!s->verbose) return;
    va_list ap;
    va_start(ap, fmt);
    printf("[%6llu ms step %5zu] ", (unsigned long long)s->now_ms, s->step);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* A core assertion aborts: say which seed and step did it before dying. */
static void on_abort(int sig)
{
    char line[160];
    if (current_sim) {
        int len = snprintf(
            line, sizeof(line), "ABORT seed %llu nodes %zu step %zu: a core assertion failed\n",
            (unsigned long long)current_sim->seed, current_sim->n, current_sim->step);
        if (len > 0) (void)!write(2, line, (size_t)len);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void configure(sim *s)
{
    raft_config *c = &s->config;
    raft_config_default(c);
    c->election_timeout_ms = 250;
    c->heartbeat_interval_ms = 50;
    /* Some seeds run without pre-vote or check-quorum: safety must not depend on them. */
    c->pre_vote = s->seed % 4 != 3;
    c->check_quorum = s->seed % 8 != 5;
    /* Small bounds so flow control, batching and the outbox limits are exercised. */
    c->append_bytes_max = 24 * (1 + s->seed % 4);
    c->inflight_msgs_max = 1 + s->seed % 8;
    /*
     * Known core bug (see README): a pipeline paused by inflight_bytes_max
     * while its AppendEntries were lost never resumes, since a heartbeat
     * response frees a slot only when the message count is at its bound. The
     * byte bound is therefore set so it binds only together with the count
     * bound, unless --tight-inflight-bytes asks to reproduce the bug.
     */
    c->inflight_bytes_max =
        s->tight_inflight_bytes ? 512 : c->inflight_msgs_max * c->append_bytes_max;
    c->uncommitted_bytes_max = 2048;
    c->entry_bytes_max = 64;
    c->messages_max = 512;
    c->reads_max = 16;
    c->apply_entries_max = 1 + s->seed % 16;
    /* Snapshots of 80..680 bytes in chunks of 32..256: usually several chunks. Every seventh
     * seed never compacts, so long logs and restarts from the whole log still run. */
    c->snapshot_chunk_bytes = (size_t)32 << (s->seed % 4);
    s->snapshot_filler = 150 * (s->seed % 5);
    s->compact_every = s->seed % 7 == 0 ? 0 : 10 + (size_t)(s->seed % 41);
    s->compact_keep = 5 * (size_t)(s->seed % 3);
    c->learner_catchup_entries = 4 + s->seed % 20;
    /* Every fifth seed keeps its initial membership (and no joining nodes). */
    s->membership_on = s->seed % 5 != 4 || s->break_conf;
}

/* A fresh node in a vacant slot: a new id, an empty disk, voters_count 0. */
static sim_node *node_create(sim *s, size_t slot, bool bootstrap)
{
    sim_node *n = &s->nodes[slot];
    memset(n, 0, sizeof(*n));
    n->id = slot + 1 + SIM_NODES_MAX * s->generation[slot]++;
    n->bootstrap = n->was_member = bootstrap;
    sim_disk_init(&n->disk, s, n->id);
    return n;
}

static void sim_init(sim *s, uint64_t seed, size_t nodes, size_t steps, const sim *flags)
{
    memset(s, 0, sizeof(*s));
    s->verbose = flags->verbose;
    s->break_disk_lies = flags->break_disk_lies;
    s->break_history = flags->break_history;
    s->break_local_reads = flags->break_local_reads;
    s->break_conf = flags->break_conf;
    s->break_snapshot = flags->break_snapshot;
    s->tight_inflight_bytes = flags->tight_inflight_bytes;
    s->split_updates = flags->split_updates;
    s->seed = seed;
    s->n = nodes;
    s->steps = steps;
    s->rng.state = seed * 0x2545F4914F6CDD1Dull + 1;
    configure(s);
    sim_net_init(&s->net);
    s->slots = nodes + SIM_SPARE_SLOTS;
    assert(s->slots <= SIM_NODES_MAX);
    s->bootstrap_conf.count = nodes;
    for (size_t k = 0; k < nodes; k++) {
        s->bootstrap_conf.members[k] = (raft_member){.id = k + 1, .role = RAFT_MEMBER_VOTER};
        node_create(s, k, true);
    }
    for (size_t k = 0; k < nodes; k++)
        sim_node_start(s, &s->nodes[k]);
}

static void sim_free(sim *s)
{
    for (size_t k = 0; k < s->slots; k++) {
        if (s->nodes[k].r) raft_free(s->nodes[k].r);
        sim_disk_free(&s->nodes[k].disk);
    }
    sim_net_free(&s->net);
    sim_history_free(&s->history);
    sim_check_free(s);
}

/* A random slot's node, or NULL if the slot is vacant. */
static sim_node *random_node(sim *s)
{
    sim_node *n = &s->nodes[sim_below(&s->rng, s->slots)];
    return n->id ? n : NULL;
}

static sim_node *leader(sim *s)
{
    sim_node *best = NULL;
    for (size_t k = 0; k < s->slots; k++) {
        sim_node *n = &s->nodes[k];
        if (n->id && n->up && !n->paused && raft_get_role(n->r) == RAFT_LEADER &&
            (!best || raft_get_term(n->r) > raft_get_term(best->r)))
            best = n;
    }
    return best;
}

static void change_rates(sim *s)
{
    static const unsigned drop[] = {0, 0, 10, 50, 200};
    static const unsigned dup[] = {0, 0, 10, 100};
    static const unsigned delay_max[] = {5, 20, 50, 150};
    s->net.drop_permille = drop[sim_below(&s->rng, TERN_ARRAY_LEN(drop))];
    s->net.dup_permille = dup[sim_below(&s->rng, TERN_ARRAY_LEN(dup))];
    s->net.delay_max_ms = delay_max[sim_below(&s->rng, TERN_ARRAY_LEN(delay_max))];
    sim_trace(s, "network: drop %u dup %u delay 1..%u ms", s->net.drop_permille,
              s->net.dup_permille, s->net.delay_max_ms);
}

/* A random member of c with the given role other than self, or 0. */
static uint64_t random_member(sim *s, const raft_conf *c, raft_member_role role, uint64_t self)
{
    uint64_t ids[RAFT_MEMBERS_MAX];
    size_t count = 0;
    for (size_t k = 0; k < c->count; k++)
        if (c->members[k].role == role && c->members[k].id != self) ids[count++] = c->members[k].id;
    return count ? ids[sim_below(&s->rng, count)] : 0;
}

static void transfer(sim *s)
{
    sim_node *l = leader(s);
    if (!l) return;
    uint64_t target = random_member(s, raft_get_conf(l->r), RAFT_MEMBER_VOTER, l->id);
    if (!target) return;
    int rc = raft_transfer_leadership(l->r, target);
    if (rc != 0 && rc != TERN_EAGAIN)
        sim_fail(s, "transfer", "raft_transfer_leadership: %s", tern_strerror(rc));
    if (rc == 0) s->transfers++;
    sim_trace(s, "transfer %llu -> %llu: %s", (unsigned long long)l->id, (unsigned long long)target,
              rc ? "busy" : "started");
    sim_check_node(s, l);
    sim_node_process(s, l);
}

static size_t count_role(const raft_conf *c, raft_member_role role)
{
    size_t n = 0;
    for (size_t k = 0; k < c->count; k++)
        n += c->members[k].role == role;
    return n;
}

/* Test flag --break conf: the change the core refused goes into the log anyway (white-box). */
static void force_change(sim *s, sim_node *l, raft_conf_change_type type, uint64_t id)
{
    raft *r = l->r;
    raft_conf next = *raft_get_conf(r);
    if (type == RAFT_CONF_ADD_LEARNER) {
        raft_member *m = &next.members[next.count++];
        memset(m, 0, sizeof(*m));
        m->id = id;
        m->role = RAFT_MEMBER_LEARNER;
    } else {
        for (size_t k = 0; k < next.count; k++)
            if (next.members[k].id == id) next.members[k] = next.members[--next.count];
    }
    uint8_t buf[RAFT_CONF_ENCODED_MAX];
    raft_entry e = {.index = raft_get_last_index(r) + 1,
                    .term = raft_get_term(r),
                    .type = RAFT_ENTRY_CONFIG,
                    .data = buf,
                    .len = raft_conf_encode(&next, buf)};
    if (raft__log_append(r, &e) == 0) raft__broadcast_append(r);
}

/*
 * One membership change at the leader: add a learner (the joining node of a slot that is not a
 * member yet, or a fresh node in a vacant slot), promote a learner, or remove a learner or a
 * voter (the leader included, while more than three voters remain).
 */
static void membership(sim *s)
{
    sim_node *l = leader(s);
    if (!l) return;
    const raft_conf *conf = raft_get_conf(l->r);
    raft_conf_change_type type;
    uint64_t id = 0;
    switch (sim_below(&s->rng, 3)) {
    case 0: {
        type = RAFT_CONF_ADD_LEARNER;
        size_t eligible[SIM_NODES_MAX], count = 0;
        for (size_t k = 0; k < s->slots; k++) {
            sim_node *n = &s->nodes[k];
            if (!n->id || (!n->was_member && !raft_conf_find(conf, n->id))) eligible[count++] = k;
        }
        if (count == 0) return;
        size_t slot = eligible[sim_below(&s->rng, count)];
        sim_node *n = &s->nodes[slot];
        if (!n->id) {
            n = node_create(s, slot, false);
            sim_trace(s, "new node %llu in slot %zu", (unsigned long long)n->id, slot + 1);
            sim_node_start(s, n);
        }
        id = n->id;
        break;
    }
    case 1:
        type = RAFT_CONF_PROMOTE;
        id = random_member(s, conf, RAFT_MEMBER_LEARNER, 0);
        break;
    default:
        type = RAFT_CONF_REMOVE;
        id = random_member(s, conf, sim_below(&s->rng, 2) ? RAFT_MEMBER_VOTER : RAFT_MEMBER_LEARNER,
                           0);
        if (raft_conf_find(conf, id) && raft_conf_find(conf, id)->role == RAFT_MEMBER_VOTER &&
            count_role(conf, RAFT_MEMBER_VOTER) <= 3)
            id = 0;
        break;
    }
    if (!id) return;
    char address[SIM_ADDRESS_MAX];
    snprintf(address, sizeof(address), "s%llu", (unsigned long long)(id % 100000));
    uint64_t index = 0;
    int rc = raft_propose_conf_change(l->r, type, id, address, &index);
    static const char *names[] = {"?", "add learner", "promote", "remove"};
    sim_trace(s, "leader %llu: %s %llu: %s", (unsigned long long)l->id, names[type],
              (unsigned long long)id, rc ? tern_strerror(rc) : "proposed");
    if (rc == 0) {
        s->conf_changes++;
    } else if (rc == TERN_EAGAIN && s->break_conf && type != RAFT_CONF_PROMOTE &&
               raft_get_role(l->r) == RAFT_LEADER) {
        force_change(s, l, type, id);
    } else if (rc != TERN_EAGAIN) {
        sim_fail(s, "membership", "leader %llu refused %s %llu: %s", (unsigned long long)l->id,
                 names[type], (unsigned long long)id, tern_strerror(rc));
    }
    sim_check_node(s, l);
    sim_node_process(s, l);
}

/* A node named by a committed configuration once and not by the latest committed one is
 * removed for good: it is shut down and its disk wiped, and the slot is free again. */
static void decommission(sim *s)
{
    const raft_conf *latest = sim_conf_as_of(s, UINT64_MAX);
    for (size_t k = 0; k < s->slots; k++) {
        sim_node *n = &s->nodes[k];
        if (!n->id) continue;
        if (raft_conf_find(latest, n->id)) {
            n->was_member = true;
            continue;
        }
        if (!n->was_member) continue;
        sim_trace(s, "decommission node %llu (slot %zu)", (unsigned long long)n->id, k + 1);
        if (n->r) raft_free(n->r);
        n->r = NULL;
        sim_disk_free(&n->disk);
        n->id = 0;
        n->up = n->paused = false;
        s->removals_done++;
    }
}

static void crash_or_pause(sim *s)
{
    sim_node *n = random_node(s);
    sim_rng *g = &s->rng;
    if (!n) return;
    if (n->up && sim_chance(g, SIM_P_CRASH)) {
        sim_trace(s, "crash node %llu", (unsigned long long)n->id);
        sim_node_crash(s, n);
        s->crashes++;
    } else if (!n->up && sim_chance(g, SIM_P_RESTART)) {
        sim_trace(s, "restart node %llu", (unsigned long long)n->id);
        sim_node_start(s, n);
    } else if (n->up && !n->paused && sim_chance(g, SIM_P_PAUSE)) {
        sim_trace(s, "pause node %llu", (unsigned long long)n->id);
        n->paused = true;
        s->pauses++;
    } else if (n->paused && sim_chance(g, SIM_P_RESUME)) {
        sim_trace(s, "resume node %llu", (unsigned long long)n->id);
        n->paused = false;
    }
}

static void faults(sim *s)
{
    sim_rng *g = &s->rng;
    if (sim_chance(g, SIM_P_REPARTITION)) {
        char what[128];
        sim_net_repartition(&s->net, g, s->n, what, sizeof(what));
        sim_trace(s, "network: %s", what);
        s->repartitions++;
    }
    if (sim_chance(g, SIM_P_NET_RATES)) change_rates(s);
    crash_or_pause(s);
    if (sim_chance(g, SIM_P_TRANSFER)) transfer(s);
    if (s->membership_on && sim_chance(g, SIM_P_MEMBERSHIP)) membership(s);
}

static bool deliverable(void *ctx, uint64_t to)
{
    sim *s = ctx;
    sim_node *n = sim_node_by_id(s, to);
    return !n || !n->paused; /* a crashed (or gone) node takes its messages and loses them */
}

static void advance_time(sim *s)
{
    s->now_ms += SIM_TICK_MS;
    decommission(s);
    for (size_t k = 0; k < s->slots; k++) {
        sim_node *n = &s->nodes[k];
        if (!n->id || !n->up || n->paused) continue;
        if (n->sync_pending && n->sync_at_ms <= s->now_ms) sim_node_sync(s, n);
        raft_tick(n->r, SIM_TICK_MS);
        sim_check_node(s, n);
        sim_node_process(s, n);
    }
    raft_message m;
    while (sim_net_next(&s->net, s->now_ms, deliverable, s, &m)) {
        sim_node *to = sim_node_by_id(s, m.to);
        if (to && to->up) {
            int rc = raft_receive(to->r, &m);
            if (rc != 0)
                sim_fail(s, "receive", "node %llu refused a message of type %d: %s",
                         (unsigned long long)to->id, (int)m.type, tern_strerror(rc));
            sim_check_node(s, to);
            sim_node_process(s, to);
        }
        sim_net_free_msg(&m);
    }
    sim_client_timeouts(s);
    /* Every node is checked after every call into it; once more here so that no step ends
     * without a check of every running node, paused ones included. */
    for (size_t k = 0; k < s->slots; k++)
        if (s->nodes[k].id && s->nodes[k].up) sim_check_node(s, &s->nodes[k]);
}

/* Healing runs without faults and without new client operations, so the log can settle. */
static void step(sim *s, bool with_faults)
{
    if (with_faults) faults(s);
    for (size_t k = 0; with_faults && k < SIM_CLIENTS; k++)
        if (!s->clients[k].busy && sim_chance(&s->rng, SIM_P_CLIENT_OP))
            sim_client_step(s, &s->clients[k], k);
    advance_time(s);
}

/* Every member of the leader's configuration up and applied to the leader's commit, which
 * covers the leader's whole log. (Nodes outside it, joining or removed, are not waited for.) */
static bool settled(sim *s)
{
    sim_node *l = leader(s);
    if (!l) return false;
    uint64_t commit = raft_get_commit(l->r);
    if (commit != raft_get_last_index(l->r)) return false;
    const raft_conf *conf = raft_get_conf(l->r);
    for (size_t k = 0; k < conf->count; k++) {
        sim_node *n = sim_node_by_id(s, conf->members[k].id);
        if (!n || !n->up || n->applied != commit) return false;
    }
    return true;
}

/* One line per node for a liveness failure: role, term, commit, last index, applied. */
static void describe(sim *s, char *out, size_t len)
{
    size_t at = 0;
    out[0] = 0;
    for (size_t k = 0; k < s->slots && at < len; k++) {
        sim_node *n = &s->nodes[k];
        if (!n->id || !n->r) continue;
        at += (size_t)snprintf(
            out + at, len - at, "[%llu %s t%llu c%llu l%llu a%llu] ", (unsigned long long)n->id,
            raft_role_name(raft_get_role(n->r)), (unsigned long long)raft_get_term(n->r),
            (unsigned long long)raft_get_commit(n->r),
            (unsigned long long)raft_get_last_index(n->r), (unsigned long long)n->applied);
    }
}

static void heal(sim *s)
{
    sim_net_heal(&s->net);
    s->net.drop_permille = s->net.dup_permille = 0;
    s->net.delay_max_ms = 20;
    for (size_t k = 0; k < s->slots; k++) {
        sim_node *n = &s->nodes[k];
        if (!n->id) continue;
        if (!n->up) sim_node_start(s, n);
        n->paused = false;
    }
    sim_trace(s, "heal everything");
    uint64_t until = s->now_ms + SIM_HEAL_MS_MAX;
    while (!settled(s)) {
        if (s->now_ms >= until) {
            char state[512];
            describe(s, state, sizeof(state));
            sim_fail(s, "liveness",
                     "no leader with everything committed and applied %d ms after healing: %s",
                     SIM_HEAL_MS_MAX, state);
        }
        s->step++;
        step(s, false);
    }
}

static void check_history(sim *s)
{
    /* Operations still under way have an unknown outcome: puts may have happened. */
    for (size_t k = 0; k < SIM_CLIENTS; k++) {
        sim_client *c = &s->clients[k];
        if (c->busy && c->op.type == SIM_PUT) {
            c->op.ret = SIM_NEVER;
            sim_history_add(&s->history, &c->op);
        }
        c->busy = false;
    }
    if (s->break_history) {
        /* Test flag: make one read return a value nobody wrote. */
        for (size_t k = 0; k < s->history.count; k++)
            if (s->history.ops[k].type == SIM_GET) {
                s->history.ops[k].value = UINT64_MAX - 1;
                break;
            }
    }
    for (uint32_t key = 0; key < SIM_KEYS; key++) {
        char why[256] = "";
        sim_lin_result r = sim_lin_check_key(&s->history, key, SIM_LIN_STEPS_MAX, why, sizeof(why));
        if (r == SIM_LIN_VIOLATION) sim_fail(s, "linearizability", "%s", why);
        if (r == SIM_LIN_GAVE_UP)
            sim_fail(s, "linearizability", "key %u: search over %d steps, gave up", key,
                     SIM_LIN_STEPS_MAX);
    }
}

typedef struct sim_totals {
    size_t runs, puts_ok, gets_ok, puts_unknown, crashes, pauses, transfers, repartitions;
    size_t conf_changes, removals_done, compactions, installs;
    uint64_t terms, delivered, dropped;
} sim_totals;

static void run_seed(uint64_t seed, size_t nodes, size_t steps, const sim *flags, sim_totals *t)
{
    static sim s; /* large: kept off the stack */
    sim_init(&s, seed, nodes, steps, flags);
    current_sim = &s;
    for (s.step = 1; s.step <= steps; s.step++)
        step(&s, true);
    heal(&s);
    check_history(&s);
    t->runs++;
    t->puts_ok += s.puts_ok;
    t->gets_ok += s.gets_ok;
    t->puts_unknown += s.puts_unknown;
    t->crashes += s.crashes;
    t->pauses += s.pauses;
    t->transfers += s.transfers;
    t->repartitions += s.repartitions;
    t->conf_changes += s.conf_changes;
    t->removals_done += s.removals_done;
    t->compactions += s.compactions;
    t->installs += s.installs;
    t->terms += s.max_term;
    t->delivered += s.net.delivered;
    t->dropped += s.net.dropped;
    current_sim = NULL;
    sim_free(&s);
}

static void usage(void)
{
    fprintf(stderr, "usage: sim [--seeds N] [--steps M] [--nodes 3|5|7] [--seed S] [--verbose]\n"
                    "           [--self-test] [--tight-inflight-bytes] [--split-updates]\n"
                    "           [--break disk-lies|history|local-reads|conf|snapshot-state]\n"
                    "  TERN_SIM_SOAK=N multiplies the number of seeds (a longer soak).\n");
    exit(2);
}

int main(int argc, char **argv)
{
    uint64_t first = 1, seeds = SIM_SEEDS_DEFAULT;
    size_t steps = SIM_STEPS_DEFAULT, nodes = 0;
    bool seed_given = false, seeds_given = false;
    sim flags;
    memset(&flags, 0, sizeof(flags));
    for (int k = 1; k < argc; k++) {
        const char *a = argv[k], *v = k + 1 < argc ? argv[k + 1] : NULL;
        if (!strcmp(a, "--verbose")) {
            flags.verbose = true;
        } else if (!strcmp(a, "--self-test")) {
            char why[256];
            if (sim_lin_self_test(why, sizeof(why)) != 0) return fprintf(stderr, "%s\n", why), 1;
            printf("linearizability self test passed\n");
            return 0;
        } else if (!strcmp(a, "--split-updates")) {
            flags.split_updates = true;
        } else if (!strcmp(a, "--tight-inflight-bytes")) {
            flags.tight_inflight_bytes = true;
        } else if (v && !strcmp(a, "--seeds")) {
            seeds = strtoull(v, NULL, 10), seeds_given = true, k++;
        } else if (v && !strcmp(a, "--steps")) {
            steps = (size_t)strtoull(v, NULL, 10), k++;
        } else if (v && !strcmp(a, "--nodes")) {
            nodes = (size_t)strtoull(v, NULL, 10), k++;
        } else if (v && !strcmp(a, "--seed")) {
            first = strtoull(v, NULL, 10), seed_given = true, k++;
        } else if (v && !strcmp(a, "--break")) {
            if (!strcmp(v, "disk-lies"))
                flags.break_disk_lies = true;
            else if (!strcmp(v, "history"))
                flags.break_history = true;
            else if (!strcmp(v, "local-reads"))
                flags.break_local_reads = true;
            else if (!strcmp(v, "conf"))
                flags.break_conf = true;
            else if (!strcmp(v, "snapshot-state"))
                flags.break_snapshot = true;
            else
                usage();
            k++;
        } else {
            usage();
        }
    }
    if (nodes != 0 && nodes != 3 && nodes != 5 && nodes != 7) usage();
    if (seed_given && !seeds_given) seeds = 1;
    const char *soak = getenv("TERN_SIM_SOAK");
    if (soak && strtoull(soak, NULL, 10) > 1) seeds *= strtoull(soak, NULL, 10);
    char why[256];
    if (sim_lin_self_test(why, sizeof(why)) != 0) return fprintf(stderr, "%s\n", why), 1;
    signal(SIGABRT, on_abort);
    sim_totals t = {0};
    for (uint64_t seed = first; seed < first + seeds; seed++) {
        static const size_t sizes[] = {3, 5, 7};
        size_t n = nodes ? nodes : sizes[seed % 3];
        run_seed(seed, n, steps, &flags, &t);
    }
    printf("sim: %zu seeds x %zu steps passed: %zu puts, %zu gets, %zu puts unknown, %llu terms, "
           "%zu crashes, %zu pauses, %zu transfers, %zu repartitions, %zu membership changes, "
           "%zu nodes removed, %zu compactions, %zu snapshots installed, %llu msgs delivered, "
           "%llu dropped\n",
           t.runs, steps, t.puts_ok, t.gets_ok, t.puts_unknown, (unsigned long long)t.terms,
           t.crashes, t.pauses, t.transfers, t.repartitions, t.conf_changes, t.removals_done,
           t.compactions, t.installs, (unsigned long long)t.delivered,
           (unsigned long long)t.dropped);
    return 0;
}
