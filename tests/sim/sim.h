/* sim: internal header of the deterministic Raft simulator (tests/sim). */
#ifndef TERN_SIM_H
#define TERN_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "raft.h"

#define SIM_NODES_MAX         7
#define SIM_KEYS              4 /* keys the clients touch: few, so operations conflict */
#define SIM_CLIENTS           6
#define SIM_ENTRY_BYTES_MAX   32    /* our commands are 24 bytes; no-ops are empty */
#define SIM_NET_MSGS_MAX      65536 /* messages in flight; beyond this the network drops */
#define SIM_NODE_READS_MAX    64    /* reads a node holds until it has applied their index */
#define SIM_TICK_MS           10    /* simulated time per step */
#define SIM_CLIENT_TIMEOUT_MS 3000

/* splitmix64: every random choice of a run comes from one seeded stream. */
typedef struct sim_rng {
    uint64_t state;
} sim_rng;

static inline uint64_t sim_random(sim_rng *g)
{
    uint64_t z = (g->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static inline uint64_t sim_below(sim_rng *g, uint64_t n)
{
    return n ? sim_random(g) % n : 0;
}

/* True with probability permille / 1000. */
static inline bool sim_chance(sim_rng *g, unsigned permille)
{
    return sim_below(g, 1000) < permille;
}

/* ---------------- disk.c: a fake disk that is durable only when synced ---------------- */

typedef struct sim_entry {
    raft_entry e; /* e.data points into bytes */
    uint8_t bytes[SIM_ENTRY_BYTES_MAX];
    uint64_t chain; /* hash of this entry and every entry before it */
} sim_entry;

typedef struct sim_log {
    sim_entry *entries; /* entries[k].e.index == k + 1 */
    size_t count;
    size_t capacity;
} sim_log;

typedef enum sim_op_kind { SIM_OP_TRUNCATE, SIM_OP_APPEND, SIM_OP_HARD_STATE } sim_op_kind;

/* One write not yet synced: replayed in order onto the durable state at a sync. */
typedef struct sim_disk_op {
    sim_op_kind kind;
    uint64_t index;     /* TRUNCATE: first index removed */
    sim_entry entry;    /* APPEND */
    raft_hard_state hs; /* HARD_STATE */
    bool update_end;    /* the last write of one update's batch */
} sim_disk_op;

typedef struct sim_disk {
    sim_log current; /* what reads see: durable plus unsynced writes */
    raft_hard_state current_hs;
    sim_log durable; /* what survives a crash */
    raft_hard_state durable_hs;
    sim_disk_op *ops; /* unsynced writes, oldest first */
    size_t ops_count;
    size_t ops_capacity;
    size_t lied_count; /* --break disk-lies: ops acknowledged but still volatile */
} sim_disk;

void sim_disk_init(sim_disk *d);
void sim_disk_free(sim_disk *d);
/* Writes (volatile) an update's entries and hard state, in that order. */
void sim_disk_write(sim_disk *d, const raft_update *u);
/* Makes every write so far durable (or, when lying, all but the latest batch). */
void sim_disk_sync(sim_disk *d, bool lie);
/* A crash: the current state becomes the durable one plus a random prefix of the unsynced
 * writes (a torn last write is detected and dropped at restart, so a prefix is what remains).
 * The prefix ends between two updates' writes, or, with split_updates, anywhere, even between
 * an update's entries and its hard state (which raft.h allows: "and then, or atomically"). */
void sim_disk_crash(sim_disk *d, sim_rng *g, bool split_updates);
/* The raft_storage over the current state. */
raft_storage sim_disk_storage(sim_disk *d);

/* ---------------- net.c: a fake network ---------------- */

typedef struct sim_msg {
    raft_message m; /* entries owned (deep copy) */
    uint64_t deliver_at_ms;
    uint64_t seq; /* send order, to break ties deterministically */
} sim_msg;

typedef struct sim_net {
    sim_msg *msgs;
    size_t count;
    uint64_t next_seq;
    bool cut[SIM_NODES_MAX + 1][SIM_NODES_MAX + 1]; /* cut[from][to]: the link drops */
    unsigned drop_permille;
    unsigned dup_permille;
    unsigned delay_min_ms;
    unsigned delay_max_ms;
    size_t dropped;
    size_t delivered;
} sim_net;

void sim_net_init(sim_net *n);
void sim_net_free(sim_net *n);
/* Queues a copy of m with a random delay (maybe twice, maybe not at all). */
void sim_net_send(sim_net *n, sim_rng *g, uint64_t now_ms, const raft_message *m);
/* Removes and returns (in *out, caller frees with sim_net_free_msg) the earliest message due at
 * or before now_ms whose destination accept() allows; false if none. */
bool sim_net_next(sim_net *n, uint64_t now_ms, bool (*accept)(void *ctx, uint64_t to), void *ctx,
                  raft_message *out);
void sim_net_free_msg(raft_message *m);
/* Changes the partition: heal, isolate, split, one-way cuts, asymmetric cuts, bridges. */
void sim_net_repartition(sim_net *n, sim_rng *g, size_t nodes, char *what, size_t what_len);
void sim_net_heal(sim_net *n);

/* ---------------- history.c: client operations as the checker sees them ---------------- */

typedef enum sim_op_type { SIM_PUT = 1, SIM_GET } sim_op_type;

#define SIM_NEVER UINT64_MAX /* the return time of an operation with an unknown outcome */

/* One client operation as the checker sees it; times are event sequence numbers. */
typedef struct sim_hist_op {
    sim_op_type type;
    uint32_t key;
    uint64_t value; /* PUT: written; GET: read (0 is the initial value) */
    uint64_t call;
    uint64_t ret; /* SIM_NEVER: timed out, may or may not have taken effect */
    uint32_t client;
} sim_hist_op;

typedef struct sim_history {
    sim_hist_op *ops;
    size_t count;
    size_t capacity;
    uint64_t clock; /* event sequence */
} sim_history;

/* The command a PUT proposes. */
typedef struct sim_command {
    uint64_t op_id;
    uint64_t value;
    uint32_t client;
    uint32_t key;
} sim_command;

size_t sim_history_add(sim_history *h, const sim_hist_op *op);
void sim_history_free(sim_history *h);

/* ---------------- linearizability.c ---------------- */

typedef enum sim_lin_result { SIM_LIN_OK = 0, SIM_LIN_VIOLATION, SIM_LIN_GAVE_UP } sim_lin_result;

/* Checks the history of one key against a register (Wing-Gong search with Lowe's memoization).
 * On a violation, writes a short explanation into why. */
sim_lin_result sim_lin_check_key(const sim_history *h, uint32_t key, size_t steps_max, char *why,
                                 size_t why_len);
/* Runs the checker on small known histories; returns 0 or -1 (with the case in why). */
int sim_lin_self_test(char *why, size_t why_len);

/* ---------------- the cluster (sim.c drives it, node.c runs nodes, check.c checks) ------ */

typedef struct sim_read {
    uint64_t request_id;
    uint64_t index; /* serve once applied reaches it */
} sim_read;

typedef struct sim_node {
    uint64_t id;
    raft *r;
    bool up;
    bool paused;
    uint32_t incarnation; /* bumped at each restart: a client's reply dies with its node */
    sim_disk disk;
    uint64_t kv[SIM_KEYS];
    uint64_t applied;
    uint64_t commit_seen; /* monotonic commit, per incarnation */
    uint64_t term_seen;
    sim_read reads[SIM_NODE_READS_MAX];
    size_t reads_count;
    bool sync_pending; /* a persist batch written but not yet synced */
    uint64_t sync_seq;
    uint64_t sync_at_ms;
} sim_node;

typedef struct sim_client {
    bool busy;
    sim_hist_op op; /* the operation under way; call set, ret not yet */
    uint64_t op_id;
    uint64_t node;
    uint32_t incarnation;
    uint64_t deadline_ms;
    uint64_t leader_guess;
} sim_client;

/* What the checkers know of one committed index. */
typedef struct sim_committed {
    uint64_t term;
    uint64_t chain;       /* 0 until some node applied it */
    uint64_t commit_term; /* term of the leader seen committing it, 0 if not seen */
} sim_committed;

typedef struct sim_entry_key {
    uint64_t index;
    uint64_t term;
    uint64_t chain;
} sim_entry_key;

typedef struct sim {
    uint64_t seed;
    size_t n;
    size_t steps;
    size_t step;
    uint64_t now_ms;
    sim_rng rng;
    bool verbose;
    bool break_disk_lies;      /* test flag: the disk acknowledges one batch it has not synced */
    bool break_history;        /* test flag: one read in the history is corrupted */
    bool break_local_reads;    /* test flag: gets skip ReadIndex and read local state */
    bool tight_inflight_bytes; /* reproduces a known core liveness bug (README) */
    bool split_updates;        /* a crash may split an update's writes (a known core bug) */
    raft_config config;
    sim_node nodes[SIM_NODES_MAX];
    sim_net net;
    sim_client clients[SIM_CLIENTS];
    sim_history history;
    uint64_t next_op_id;
    uint64_t next_value;
    /* Checker state. */
    uint64_t *leader_of_term; /* term -> leader id (election safety) */
    size_t terms_capacity;
    sim_committed *committed; /* index -> what was committed there */
    size_t committed_capacity;
    uint64_t committed_max;
    sim_entry_key *entry_table; /* (index, term) -> chain hash (log matching), open addressing */
    size_t entry_slots;
    size_t entry_count;
    /* Statistics. */
    size_t puts_ok, gets_ok, puts_unknown, crashes, pauses, transfers, repartitions;
    uint64_t max_term;
} sim;

/* sim.c: prints the failing seed, step and property, then exits 1. */
void sim_fail(const sim *s, const char *property, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
void sim_trace(const sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* node.c */
void sim_node_start(sim *s, sim_node *n);
void sim_node_crash(sim *s, sim_node *n);
/* Drives a node's update loop to quiescence: persist, sync (maybe later), send, apply, read. */
void sim_node_process(sim *s, sim_node *n);
/* The disk finishes a pending sync. */
void sim_node_sync(sim *s, sim_node *n);
void sim_client_step(sim *s, sim_client *c, size_t client_index);
void sim_client_timeouts(sim *s);

/* check.c: after every call into a core. */
void sim_check_node(sim *s, sim_node *n);
/* check.c: an entry was written to a disk (log matching), or applied (state machine safety). */
void sim_check_written(sim *s, const sim_entry *e);
void sim_check_applied(sim *s, sim_node *n, const raft_entry *e);
void sim_check_free(sim *s);

#endif
