/* sim: a deterministic simulator that runs the Raft core under faults and checks its safety. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"

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
 *      leadership;
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
 * rebuilds its key-value state by applying its log from index 1.
 *
 * At the end of a run the network heals, every node runs again, and the
 * cluster must elect a leader that commits and every node must apply it all
 * (liveness under no faults). Then the history of client operations is
 * checked for linearizability, key by key (linearizability.c).
 *
 * Not simulated: membership changes and snapshots (the core has neither yet).
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
#define SIM_P_CLIENT_OP   500

static const sim *current_sim; /* for the abort handler: which seed was running */

void sim_fail(const sim *s, const char *property, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    fprintf(stderr,
            "FAIL seed %llu nodes %zu step %zu (t=%llu ms): %s: %s\n"
            "replay: sim --seed %llu --nodes %zu --steps %zu%s%s%s%s%s --verbose\n",
            (unsigned long long)s->seed, s->n, s->step, (unsigned long long)s->now_ms, property,
            detail, (unsigned long long)s->seed, s->n, s->steps,
            s->tight_inflight_bytes ? " --tight-inflight-bytes" : "",
            s->split_updates ? " --split-updates" : "",
            s->break_disk_lies ? " --break disk-lies" : "",
            s->break_history ? " --break history" : "",
            s->break_local_reads ? " --break local-reads" : "");
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
}

static void sim_init(sim *s, uint64_t seed, size_t nodes, size_t steps, const sim *flags)
{
    memset(s, 0, sizeof(*s));
    s->verbose = flags->verbose;
    s->break_disk_lies = flags->break_disk_lies;
    s->break_history = flags->break_history;
    s->break_local_reads = flags->break_local_reads;
    s->tight_inflight_bytes = flags->tight_inflight_bytes;
    s->split_updates = flags->split_updates;
    s->seed = seed;
    s->n = nodes;
    s->steps = steps;
    s->rng.state = seed * 0x2545F4914F6CDD1Dull + 1;
    configure(s);
    sim_net_init(&s->net);
    for (size_t k = 0; k < nodes; k++) {
        s->nodes[k].id = k + 1;
        sim_disk_init(&s->nodes[k].disk);
    }
    for (size_t k = 0; k < nodes; k++)
        sim_node_start(s, &s->nodes[k]);
}

static void sim_free(sim *s)
{
    for (size_t k = 0; k < s->n; k++) {
        if (s->nodes[k].r) raft_free(s->nodes[k].r);
        sim_disk_free(&s->nodes[k].disk);
    }
    sim_net_free(&s->net);
    sim_history_free(&s->history);
    sim_check_free(s);
}

static sim_node *random_node(sim *s)
{
    return &s->nodes[sim_below(&s->rng, s->n)];
}

static sim_node *leader(sim *s)
{
    sim_node *best = NULL;
    for (size_t k = 0; k < s->n; k++) {
        sim_node *n = &s->nodes[k];
        if (n->up && !n->paused && raft_get_role(n->r) == RAFT_LEADER &&
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

static void transfer(sim *s)
{
    sim_node *l = leader(s), *target = random_node(s);
    if (!l || target == l) return;
    int rc = raft_transfer_leadership(l->r, target->id);
    if (rc != 0 && rc != TERN_EAGAIN)
        sim_fail(s, "transfer", "raft_transfer_leadership: %s", tern_strerror(rc));
    if (rc == 0) s->transfers++;
    sim_trace(s, "transfer %llu -> %llu: %s", (unsigned long long)l->id,
              (unsigned long long)target->id, rc ? "busy" : "started");
    sim_check_node(s, l);
    sim_node_process(s, l);
}

static void crash_or_pause(sim *s)
{
    sim_node *n = random_node(s);
    sim_rng *g = &s->rng;
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
}

static bool deliverable(void *ctx, uint64_t to)
{
    const sim *s = ctx;
    return !s->nodes[to - 1].paused; /* a crashed node takes its messages and loses them */
}

static void advance_time(sim *s)
{
    s->now_ms += SIM_TICK_MS;
    for (size_t k = 0; k < s->n; k++) {
        sim_node *n = &s->nodes[k];
        if (!n->up || n->paused) continue;
        if (n->sync_pending && n->sync_at_ms <= s->now_ms) sim_node_sync(s, n);
        raft_tick(n->r, SIM_TICK_MS);
        sim_check_node(s, n);
        sim_node_process(s, n);
    }
    raft_message m;
    while (sim_net_next(&s->net, s->now_ms, deliverable, s, &m)) {
        sim_node *to = &s->nodes[m.to - 1];
        if (to->up) {
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
    for (size_t k = 0; k < s->n; k++)
        if (s->nodes[k].up) sim_check_node(s, &s->nodes[k]);
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

/* Every node up, applied to the leader's commit, which covers the leader's whole log. */
static bool settled(sim *s)
{
    sim_node *l = leader(s);
    if (!l) return false;
    uint64_t commit = raft_get_commit(l->r);
    if (commit != raft_get_last_index(l->r)) return false;
    for (size_t k = 0; k < s->n; k++)
        if (s->nodes[k].applied != commit) return false;
    return true;
}

/* One line per node for a liveness failure: role, term, commit, last index, applied. */
static void describe(sim *s, char *out, size_t len)
{
    size_t at = 0;
    out[0] = 0;
    for (size_t k = 0; k < s->n && at < len; k++) {
        sim_node *n = &s->nodes[k];
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
    for (size_t k = 0; k < s->n; k++) {
        sim_node *n = &s->nodes[k];
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
    t->terms += s.max_term;
    t->delivered += s.net.delivered;
    t->dropped += s.net.dropped;
    current_sim = NULL;
    sim_free(&s);
}

static void usage(void)
{
    fprintf(stderr, "usage: sim [--seeds N] [--steps M] [--nodes 3|5|7] [--seed S] [--verbose]\n"
                    "           [--self-test] [--break disk-lies|history|local-reads] "
                    "[--tight-inflight-bytes] [--split-updates]\n"
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
           "%zu crashes, %zu pauses, %zu transfers, %zu repartitions, %llu msgs delivered, "
           "%llu dropped\n",
           t.runs, steps, t.puts_ok, t.gets_ok, t.puts_unknown, (unsigned long long)t.terms,
           t.crashes, t.pauses, t.transfers, t.repartitions, (unsigned long long)t.delivered,
           (unsigned long long)t.dropped);
    return 0;
}
