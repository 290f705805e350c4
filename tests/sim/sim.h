/* sim: internal header of the deterministic Raft simulator (tests/sim). */
#ifndef TERN_SIM_H
#define TERN_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "raft.h"

#define SIM_NODES_MAX         9 /* slots: the initial voters (3, 5, 7) and two spares */
#define SIM_SPARE_SLOTS       2
#define SIM_KEYS              4 /* keys the clients touch: few, so operations conflict */
#define SIM_CLIENTS           6
#define SIM_ENTRY_BYTES_MAX   256   /* commands are 24 bytes, CONFIG entries up to 206 */
#define SIM_ADDRESS_MAX       8     /* "sim-<id>": keeps CONFIG entries within the above */
#define SIM_KV_HISTORY        64    /* applied states a driver keeps to snapshot a past index */
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
    sim_entry *entries; /* entries[k].e.index == first + k */
    size_t count;
    size_t capacity;
    uint64_t first;      /* entries below were compacted away (deleted) */
    uint64_t base_chain; /* chain hash of index first - 1 (the snapshot's) */
} sim_log;

/*
 * A snapshot: its metadata and its byte stream, which is the key-value state
 * machine (sim_snap_header) and a filler that makes it several chunks long.
 */
typedef struct sim_snap_header {
    uint64_t magic;
    uint64_t index;
    uint64_t term;
    uint64_t chain; /* chain hash of the entry at index */
    uint64_t kv[SIM_KEYS];
    uint64_t filler_len;
} sim_snap_header;

typedef struct sim_snapshot {
    raft_snapshot_meta meta; /* index 0: none */
    uint8_t *bytes;          /* owned */
    size_t len;
} sim_snapshot;

typedef enum sim_op_kind {
    SIM_OP_TRUNCATE,
    SIM_OP_APPEND,
    SIM_OP_HARD_STATE,
    SIM_OP_INSTALL /* a received snapshot replaces the snapshot and the whole log */
} sim_op_kind;

/* One write not yet synced: replayed in order onto the durable state at a sync. */
typedef struct sim_disk_op {
    sim_op_kind kind;
    uint64_t index;     /* TRUNCATE: first index removed */
    sim_entry entry;    /* APPEND */
    raft_hard_state hs; /* HARD_STATE */
    sim_snapshot snap;  /* INSTALL (bytes owned by the op) */
    bool update_end;    /* the last write of one update's batch */
} sim_disk_op;

struct sim;

typedef struct sim_disk {
    const struct sim *owner; /* for failures found by the storage callbacks */
    uint64_t node_id;
    sim_log current; /* what reads see: durable plus unsynced writes */
    raft_hard_state current_hs;
    sim_snapshot current_snap;
    sim_log durable; /* what survives a crash */
    raft_hard_state durable_hs;
    sim_snapshot durable_snap;
    sim_disk_op *ops; /* unsynced writes, oldest first */
    size_t ops_count;
    size_t ops_capacity;
    size_t lied_count;       /* --break disk-lies: ops acknowledged but still volatile */
    uint64_t snapshot_reads; /* every 11th snapshot_read fails (TERN_EIO) */
    /* A snapshot stream being received (volatile: the core restarts a stream after a crash). */
    uint8_t *recv;
    size_t recv_len;
} sim_disk;

void sim_disk_init(sim_disk *d, const struct sim *owner, uint64_t node_id);
void sim_disk_free(sim_disk *d);
/* Writes (volatile) an update's snapshot chunk (installing a done one), entries and hard state,
 * in that order. Returns true if a snapshot was installed. */
bool sim_disk_write(sim_disk *d, const raft_update *u);
/* The driver's own snapshot (durable at once); stale: it holds the previous snapshot's state
 * (--break snapshot-state). After raft_compact, the log up to it is deleted. */
void sim_disk_snapshot(sim_disk *d, const raft_snapshot_meta *meta, const sim_snap_header *h,
                       bool stale);
void sim_disk_drop_log(sim_disk *d);
/* Builds a snapshot stream; parses and validates one (0, or -1 with the reason in why). */
void sim_snapshot_build(sim_snapshot *out, const raft_snapshot_meta *meta,
                        const sim_snap_header *h);
int sim_snapshot_parse(const sim_snapshot *snap, sim_snap_header *h, char *why, size_t why_len);
/* The entry at index in log, or NULL if it is not held. */
const sim_entry *sim_log_at(const sim_log *log, uint64_t index);
uint64_t sim_log_last(const sim_log *log);
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

/* Node ids are slot + 1 + SIM_NODES_MAX * generation: a fresh node in a slot gets a new id. */
static inline size_t sim_slot_of(uint64_t id)
{
    return (size_t)((id - 1) % SIM_NODES_MAX);
}

typedef struct sim_net {
    sim_msg *msgs;
    size_t count;
    uint64_t next_seq;
    bool cut[SIM_NODES_MAX][SIM_NODES_MAX]; /* cut[slot from][slot to]: the link drops */
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

/* A past applied state the driver can snapshot (the state machine keeps a short history). */
typedef struct sim_kv_state {
    uint64_t index;
    uint64_t term;
    uint64_t chain;
    uint64_t kv[SIM_KEYS];
} sim_kv_state;

typedef struct sim_node {
    uint64_t id;     /* 0: the slot is vacant */
    bool bootstrap;  /* one of the initial voters (else it joined with voters_count 0) */
    bool was_member; /* named by a committed configuration once */
    raft *r;
    bool up;
    bool paused;
    uint32_t incarnation; /* bumped at each restart: a client's reply dies with its node */
    sim_disk disk;
    uint64_t kv[SIM_KEYS];
    uint64_t applied;
    sim_kv_state history[SIM_KV_HISTORY]; /* ring of the latest applied states */
    size_t history_count;
    /* The configurations the state machine applied: [0] as of the snapshot or bootstrap. */
    raft_conf confs[4];
    uint64_t conf_index[4];
    size_t confs_count;
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
    uint64_t kv_hash;     /* the state machine after it, 0 until some node applied it */
} sim_committed;

/* A committed CONFIG entry, in index order (the first node to apply one applied all before). */
typedef struct sim_conf_record {
    uint64_t index;
    uint64_t hash;
    raft_conf conf;
} sim_conf_record;

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
    bool break_disk_lies;   /* test flag: the disk acknowledges one batch it has not synced */
    bool break_history;     /* test flag: one read in the history is corrupted */
    bool break_local_reads; /* test flag: gets skip ReadIndex and read local state */
    bool break_conf;        /* test flag: a second change goes in while one is uncommitted */
    bool break_snapshot;    /* test flag: snapshots carry the previous snapshot's state */
    bool membership_on;     /* membership changes run in this seed */
    size_t slots;           /* n + SIM_SPARE_SLOTS */
    uint64_t generation[SIM_NODES_MAX]; /* per slot: fresh nodes get new ids */
    size_t compact_every;               /* a driver compacts every this many applied entries */
    size_t compact_keep;                /* ... at this many entries below its applied index */
    size_t snapshot_filler;    /* bytes after a snapshot's header (so it takes several chunks) */
    uint64_t applied_max;      /* the highest index some node applied (or snapshotted) */
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
    sim_conf_record *confs; /* committed CONFIG entries */
    size_t confs_count;
    size_t confs_capacity;
    raft_conf bootstrap_conf;
    /* Statistics. */
    size_t puts_ok, gets_ok, puts_unknown, crashes, pauses, transfers, repartitions;
    size_t conf_changes, removals_done, compactions, installs;
    uint64_t max_term;
} sim;

/* sim.c: prints the failing seed, step and property, then exits 1. */
void sim_fail(const sim *s, const char *property, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
void sim_trace(const sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* node.c */
/* The running (or crashed) node with id, or NULL. */
sim_node *sim_node_by_id(sim *s, uint64_t id);
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
/* check.c: the state machine after applying index (or installing/taking a snapshot at it). */
void sim_check_state(sim *s, sim_node *n, uint64_t index, uint64_t chain, const uint64_t *kv,
                     const char *what);
/* check.c: the configuration as of index by the committed CONFIG entries (NULL if unknown). */
const raft_conf *sim_conf_as_of(const sim *s, uint64_t index);
void sim_check_free(sim *s);

#endif
