/* node internal header (used by node/ and api/): the Raft driver that runs a region group. */
#ifndef TERN_NODE_GROUP_H
#define TERN_NODE_GROUP_H

/*
 * DESIGN NOTES (docs/ARCHITECTURE.md, "The region group driver", has the long form)
 *
 * Threads:
 *   loop thread   the raft core, the peer transport, timers, every user callback;
 *   persist       appends entries, fdatasyncs, saves the hard state, writes received
 *                 snapshot chunks; reports back with uv_async (raft_persisted);
 *   apply         reads committed entries from the raft log and applies them to the state
 *                 machine in log order; takes and installs snapshots; reports applied indexes
 *                 and results with uv_async.
 *
 * Group commit: the core hands out one persist batch at a time and accumulates everything
 * that arrives while the persist thread syncs, so one fdatasync covers all of it.
 *
 * Proposals: each carries an envelope (client_id, seq). client_id = this incarnation's random
 * base + a lane number; each lane has at most NODE_GROUP_DEDUP_WINDOW proposals outstanding,
 * so a retry always falls inside the state machine's 64-wide dedup window. A proposal on a
 * follower is forwarded to the leader; the result comes from this node's own apply of the
 * entry (every node applies every entry), so the proposer's done runs once its node has
 * applied the write (read-your-writes on the proposing node). After a leader change, or when
 * the leader's connection comes back, every outstanding proposal is sent again with the same
 * client_id/seq; the state machine applies it once.
 *
 * Membership: node_group_add_node adds a learner; the leader promotes a learner to voter on
 * its own once the core says it has caught up (raft_propose_conf_change(PROMOTE) stops
 * answering TERN_EAGAIN); node_group_promote_node does it explicitly. Member addresses in the
 * configuration are "peerhost:port"; S3 addresses travel in a node-info frame each node sends
 * when its connection to a peer comes up.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "node.h"

/* The state machine dedups a client's retries over the last 64 sequence numbers. */
#define NODE_GROUP_DEDUP_WINDOW 64
/* The largest command node_group_submit accepts: a 4 MiB block plus its metadata. */
#define NODE_GROUP_COMMAND_BYTES_MAX ((4u << 20) + (64u << 10))
#define NODE_GROUP_PEERS_MAX         16
#define NODE_GROUP_ADDRESS_MAX       96

typedef struct node_group node_group;
typedef void (*node_group_done_fn)(void *arg, int status);

typedef struct node_group_sm {
    void *ctx;
    /* Apply thread, log order, once per committed RAFT_ENTRY_NORMAL entry: the command bytes
     * given to node_group_submit, with the proposal's client_id/seq (the state machine
     * deduplicates retries by them). Returns the result (0 or TERN_E*) delivered to the
     * proposer's done callback -- on whichever node proposed it. Must be deterministic.
     * TERN_EFAILED = local storage failure: the group stops applying, the node reports unready
     * (/readyz) and refuses new work with TERN_EFAILED. */
    int (*apply)(void *ctx, uint64_t index, uint64_t client_id, uint64_t seq, const void *cmd,
                 size_t len);
    /* NOOP and CONFIG entries: record index as applied (apply thread). */
    int (*apply_other)(void *ctx, uint64_t index);
    /* The applied index at start-up (the group replays committed entries after it). */
    uint64_t (*applied_index)(void *ctx);
    /* Writes a consistent checkpoint of the state machine (RocksDB checkpoint: a directory of
     * files) into dir (which must not exist), durable, at the current applied index, returned
     * in *index_out. Apply thread, between applies. */
    int (*snapshot_create)(void *ctx, const char *dir, uint64_t *index_out);
    /* Replaces the state machine's contents with the checkpoint in dir; the applied index
     * becomes the checkpoint's. Apply thread. */
    int (*snapshot_install)(void *ctx, const char *dir);
} node_group_sm;

/* One member of --peers: "ID=HOST:PORT". */
typedef struct node_group_peer {
    uint64_t id;
    char address[NODE_GROUP_ADDRESS_MAX]; /* "host:port", numeric host */
} node_group_peer;

/* Parses "1=HOST:PORT,2=HOST:PORT" (ids >= 1, distinct; numeric hosts; [v6]:port allowed).
 * Returns 0 or TERN_EINVAL with the reason in errmsg. */
int node_group_parse_peers(const char *text, node_group_peer *out, size_t max, size_t *count,
                           char *errmsg, size_t errmsg_len);

typedef struct node_group_config {
    uint64_t node_id;
    const char *region;
    const char *data_dir;  /* the log lives in data_dir/raft */
    const char *s3_listen; /* advertised to peers (status pages, redirects) */
    /* Peers: count 0 = a 1-node group (no transport, no TLS). Otherwise they must include
     * node_id unless join is set. */
    const node_group_peer *peers;
    size_t peer_count;
    bool join;               /* start with an empty configuration and wait to be added */
    const char *peer_listen; /* HOST:PORT; port 0 picks one (tests) */
    const char *peer_ca, *peer_cert, *peer_key;
    uint32_t election_timeout_ms; /* 0: 500 */
    uint32_t heartbeat_ms;        /* 0: 50 */
    uint32_t tick_ms;             /* 0: 10 */
    /* A proposal or barrier that has had no leader for this long fails with TERN_EUNAVAIL. */
    uint32_t leader_wait_ms; /* 0: 5000 */
    /* A proposal not applied this long after submission fails with TERN_ETIMEDOUT. */
    uint32_t commit_timeout_ms;          /* 0: 30000 */
    uint64_t snapshot_threshold_bytes;   /* log bytes since the last snapshot; 0: 256 MiB */
    uint64_t snapshot_threshold_entries; /* 0: 100000 */
    uint64_t snapshot_keep_entries;      /* entries kept behind a snapshot; 0: 1000 */
    size_t pending_max;                  /* outstanding proposals; 0: 1024 */
    size_t barriers_max;                 /* waiting read barriers; 0: 4096 */
    size_t forwarded_max;                /* forwarded reads served for followers; 0: 4096 */
    bool sync;                           /* false only in tests: fdatasync skipped */
    node_metrics *metrics;               /* may be NULL */
} node_group_config;

typedef enum node_group_member_role {
    NODE_GROUP_VOTER = 0,
    NODE_GROUP_LEARNER = 1,
} node_group_member_role;

typedef struct node_group_member {
    uint64_t id;
    node_group_member_role role;
    char address[NODE_GROUP_ADDRESS_MAX];    /* peer address, may be empty */
    char s3_address[NODE_GROUP_ADDRESS_MAX]; /* as gossiped, may be empty */
    uint64_t match;                          /* leader only */
    uint64_t lag;                            /* leader only: last index - match */
    bool active;                             /* leader only */
} node_group_member;

typedef struct node_group_status {
    uint64_t node_id;
    char region[NODE_REGION_MAX + 1];
    const char *role; /* "leader", "follower", "candidate", "precandidate" */
    uint64_t term;
    uint64_t leader_id; /* 0: unknown */
    char leader_s3_address[NODE_GROUP_ADDRESS_MAX];
    uint64_t commit_index;
    uint64_t applied_index;
    uint64_t last_index;
    uint64_t snapshot_index;
    bool failed;
    size_t member_count;
    node_group_member members[NODE_GROUP_PEERS_MAX];
} node_group_status;

/*
 * Opens data_dir/raft, starts the persist and apply threads, the transport (when peers are
 * given) and the tick timer on loop. Returns 0, TERN_EINVAL (bad config or TLS material),
 * TERN_EIO or TERN_ECORRUPT (the log), with the reason in errmsg. Loop thread.
 */
int node_group_create(uv_loop_t *loop, const node_group_config *cfg, const node_group_sm *sm,
                      node_group **out, char *errmsg, size_t errmsg_len);
/* Drains: pending submits and barriers get TERN_ECLOSED; stops the threads, closes the
 * transport and handles; on_closed(ctx) runs on the loop once g is freed. Loop thread. */
void node_group_close(node_group *g, void (*on_closed)(void *ctx), void *ctx);

/* Any thread. Proposes cmd (copied): on a follower forwarded to the leader over the peer
 * transport, retried with the same client_id/seq after a leader change; done(arg, result) runs
 * exactly once ON THE LOOP THREAD with the apply result, or TERN_EUNAVAIL (no leader within
 * leader_wait_ms), TERN_ETIMEDOUT, TERN_ETOOBIG, TERN_ECLOSED (shutting down), TERN_EFAILED.
 * Returns 0 (done will run), or TERN_EAGAIN (pending_max outstanding), TERN_ETOOBIG,
 * TERN_ECLOSED, TERN_EFAILED, TERN_ENOMEM without calling done. */
int node_group_submit(node_group *g, const void *cmd, size_t len, node_group_done_fn done,
                      void *arg);
/* Worker threads only (asserts not the loop thread): submit and wait; returns the result. */
int node_group_call(node_group *g, const void *cmd, size_t len);

/*
 * Linearizable read barrier (ReadIndex, via the leader when a follower): done(arg, 0) on the
 * loop thread once this node has applied every entry committed before the call; errors as
 * submit. Loop thread. Batches: all barriers that arrive while a ReadIndex round is pending
 * share the next round. When this node is a 1-voter leader whose term is committed and whose
 * applied index equals the commit index, done is called SYNCHRONOUSLY before this returns 0.
 * Returns 0 (done runs, maybe already ran), TERN_EAGAIN (barriers_max waiting), TERN_ECLOSED,
 * TERN_EFAILED without calling done.
 */
int node_group_read_barrier(node_group *g, node_group_done_fn done, void *arg);
/* Worker-thread form. */
int node_group_read_barrier_wait(node_group *g);

/* Loop thread. */
void node_group_status_get(node_group *g, node_group_status *out);
/* Has a known leader and is not failed (for /readyz). Any thread. */
bool node_group_ready(node_group *g);

/*
 * Membership (loop thread; forwarded to the leader when called on a follower). done runs on
 * the loop thread once the CONFIG entry is applied on this node, or with TERN_EUNAVAIL,
 * TERN_EAGAIN (another change is in progress or the learner has not caught up), TERN_EINVAL
 * (unknown or duplicate id, last voter), TERN_ENOTSUP (the core lacks it), TERN_ETIMEDOUT.
 * add_node adds a learner with peer address "host:port"; the leader promotes it to voter by
 * itself once it has caught up (or call promote_node).
 */
int node_group_add_node(node_group *g, uint64_t id, const char *peer_address,
                        node_group_done_fn done, void *arg);
int node_group_promote_node(node_group *g, uint64_t id, node_group_done_fn done, void *arg);
int node_group_remove_node(node_group *g, uint64_t id, node_group_done_fn done, void *arg);
/* done runs once this node sees id as leader, or with an error after an election timeout. */
int node_group_transfer_leader(node_group *g, uint64_t id, node_group_done_fn done, void *arg);

/* The bound peer port (tests use port 0). */
int node_group_peer_port(node_group *g);
/* This incarnation's client id base (tests). */
uint64_t node_group_client_id(node_group *g);

#endif
