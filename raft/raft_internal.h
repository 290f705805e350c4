/* raft: internal state and the raft__ functions shared by the core's files. */
#ifndef TERN_RAFT_INTERNAL_H
#define TERN_RAFT_INTERNAL_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "raft.h"

/* Assertions of the pure core stay on in every build (CMake strips NDEBUG too). */
#define RAFT_ASSERT(cond) assert(cond)

/* Entries per AppendEntries message (also bounded by append_bytes_max). */
#define RAFT__APPEND_ENTRIES_MAX 64

typedef enum raft__progress_state {
    RAFT__PROBE = 0, /* one AppendEntries at a time until the match point is known */
    RAFT__REPLICATE, /* pipelined, bounded by inflight_msgs_max and inflight_bytes_max */
    RAFT__SNAPSHOT,  /* next <= snapshot index: the snapshot goes, one chunk at a time */
} raft__progress_state;

/* One in-flight AppendEntries: freed when the follower acknowledges last_index. */
typedef struct raft__inflight {
    uint64_t last_index;
    size_t bytes;
} raft__inflight;

/* The leader's view of one member (Figure 3.1 nextIndex/matchIndex, plus flow control);
 * followers and candidates keep the same array, in configuration order, for vote counting. */
typedef struct raft__progress {
    uint64_t id;
    raft_member_role role;
    uint64_t match;
    uint64_t next;
    raft__progress_state state;
    bool probe_sent;          /* PROBE: an AppendEntries is outstanding */
    uint64_t commit_sent;     /* highest commit index sent to it by raft__commit_advanced */
    bool recent_active;       /* heard from since the last check-quorum */
    uint64_t read_ack;        /* highest ReadIndex round this voter acknowledged */
    raft__inflight *inflight; /* ring of inflight_msgs_max */
    size_t inflight_start;
    size_t inflight_count;
    size_t inflight_bytes;
    /* Candidate: vote result (0 unknown, 1 granted, 2 rejected). */
    int vote_result;
    /* SNAPSHOT (snapshot.c): the stream being sent, stop-and-wait. */
    uint64_t snap_index;   /* the snapshot being sent */
    uint64_t snap_offset;  /* bytes the follower acknowledged: the next chunk starts here */
    bool snap_sent;        /* a chunk is outstanding (or a read failed: retry on the timer) */
    uint32_t snap_elapsed; /* ms since the outstanding chunk went */
} raft__progress;

/* A stored log entry; data is owned (malloc) by the log. */
typedef struct raft__log {
    raft_entry *entries; /* entries[k].index == offset + 1 + k */
    size_t count;
    size_t capacity;
    uint64_t offset; /* entries at or below offset live only in storage */
    raft_storage storage;
} raft__log;

typedef struct raft__outmsg {
    raft_message msg;
    uint64_t persist_seq; /* sendable once persisted_seq >= this */
    void *owned;          /* entries array and their data, freed at advance */
} raft__outmsg;

typedef struct raft__read {
    uint64_t request_id;
    uint64_t index; /* commit index when the round started */
    uint64_t round; /* heartbeat round confirming it, 0 until started */
} raft__read;

struct raft {
    raft_config config;
    uint64_t id;
    raft_role role;
    uint64_t term;
    uint64_t vote;
    uint64_t leader;
    uint64_t commit;
    uint64_t applied;
    raft__log log;
    uint64_t rng;

    /* One per member of conf, in the same order (membership.c keeps them in step). */
    raft__progress progress[RAFT_MEMBERS_MAX];
    size_t progress_count;
    size_t voters_count; /* voters in conf */

    /* Timers (ms). */
    uint32_t election_elapsed;
    uint32_t heartbeat_elapsed;
    uint32_t election_timeout_randomized;

    /* Persistence (see the design note in raft.c). */
    uint64_t dirty_seq;     /* bumped on every term, vote or entry change */
    uint64_t persisted_seq; /* acknowledged by the driver */
    uint64_t handed_seq;    /* the batch handed out, or persisted_seq if none in flight */
    uint64_t persist_from;  /* first index not yet handed out for persistence */
    uint64_t stable;        /* last index known durable */
    uint64_t handed_last;   /* last index of the in-flight batch */
    raft_hard_state handed_hs;
    uint64_t term_floor; /* the durable term at raft_new: the term never goes below */

    /* Leader state. */
    size_t uncommitted_bytes;
    uint64_t term_start_index; /* index of this term's no-op */
    uint64_t transfer_target;
    uint32_t transfer_elapsed;

    /* ReadIndex (read.c). */
    raft__read *reads;
    size_t reads_count;
    uint64_t read_round;
    raft_read_ready *reads_ready;
    size_t reads_ready_count;

    /* Outbox. */
    raft__outmsg *outbox;
    size_t outbox_count;

    /* The update being handed out. */
    bool update_out;
    raft_message *update_msgs;
    size_t update_msgs_count;
    raft_entry *apply_buf; /* apply_entries_max; data copied into apply_data */
    void **apply_data;
    size_t apply_count;
    raft_role reported_role;
    uint64_t reported_term;
    uint64_t reported_leader;

    /* Membership (membership.c): conf is the latest configuration in the log. */
    raft_conf conf;
    uint64_t conf_index; /* where conf took effect: its CONFIG entry, the snapshot, or 0 */
    raft_conf bootstrap; /* raft_config.voters (empty for a joining node) */
    bool conf_changed;   /* not yet reported in an update */

    /* Snapshots (snapshot.c). */
    raft_snapshot_meta snapshot; /* entries at or below snapshot.index are gone */
    /* Receiving: the stream being written by the driver (from one sender). */
    raft_snapshot_meta recv_meta;
    uint64_t recv_from;
    uint64_t recv_offset; /* bytes accepted so far: the next expected offset */
    bool recv_active;
    /* The accepted chunk: NONE, ACCEPTED (waiting for a persist batch), HANDED (in one). */
    enum { RAFT__CHUNK_NONE = 0, RAFT__CHUNK_ACCEPTED, RAFT__CHUNK_HANDED } chunk_state;
    raft_snapshot_chunk chunk;
    void *chunk_data;
    uint64_t chunk_seq; /* the persist batch that holds the chunk */
    /* A done chunk was accepted: the log already starts after recv_meta.index, but the
     * driver installs the snapshot only with the chunk's batch; nothing is applied, no
     * entry appended and no campaign started until then. */
    bool install_pending;
};

/* raft.c */
uint64_t raft__random(raft *r);
raft__progress *raft__progress_of(raft *r, uint64_t id);
/* The progress of id if it is a voter in the current configuration, else NULL. */
raft__progress *raft__voter_of(raft *r, uint64_t id);
/* A majority of the voters of the current configuration. */
size_t raft__quorum(const raft *r);
void raft__mark_dirty(raft *r);
/* Queues m (copying entries, data and conf into an owned buffer); a full outbox or no memory
 * drops it. */
void raft__send(raft *r, const raft_message *m);

/* log.c */
uint64_t raft__log_last_index(const raft *r);
/* Term at index: 0 for index 0, the snapshot's term at its index, asserts the entry exists
 * (snapshot.index < index <= last index). */
uint64_t raft__log_term(const raft *r, uint64_t index);
uint64_t raft__log_last_term(const raft *r);
/* Copies the entry at index (memory or storage) into *out; data points to storage or log.
 * Asserts snapshot.index < index <= last index. */
void raft__log_get(const raft *r, uint64_t index, raft_entry *out);
/* Appends a copy of e (its data copied); a CONFIG entry takes effect at once. Returns 0 or
 * TERN_ENOMEM. */
int raft__log_append(raft *r, const raft_entry *e);
/* Removes all entries from index on (Figure 3.1 AppendEntries receiver step 3); a removed
 * CONFIG entry reverts the configuration to the previous one. */
void raft__log_truncate(raft *r, uint64_t index);
/* Drops from memory the entries at or below index (they are durable in storage). */
void raft__log_trim(raft *r, uint64_t index);
void raft__log_free(raft *r);

/* election.c */
/* Figure 3.1 "All Servers": a higher term (or a current leader) makes a follower. */
void raft__become_follower(raft *r, uint64_t term, uint64_t leader);
void raft__tick_election(raft *r, uint32_t elapsed_ms);
/* Figure 3.1 "Followers": start an election (thesis 9.6: first a pre-vote round). */
void raft__campaign(raft *r, bool pre_vote, bool transfer);
/* Figure 3.1 "RequestVote RPC, receiver implementation" (and pre-votes, thesis 9.6). */
void raft__recv_vote(raft *r, const raft_message *m);
void raft__recv_vote_response(raft *r, const raft_message *m);
void raft__recv_timeout_now(raft *r, const raft_message *m);
void raft__reset_election_timer(raft *r);
/* Thesis 4.2.3: a live leader is known, so (pre)votes are ignored. */
bool raft__in_lease(const raft *r);

/* replication.c */
/* Thesis 3.4/6.4: become leader and append this term's no-op. */
void raft__become_leader(raft *r);
void raft__tick_leader(raft *r, uint32_t elapsed_ms);
void raft__send_append(raft *r, raft__progress *p, bool allow_empty);
void raft__broadcast_append(raft *r);
void raft__broadcast_heartbeat(raft *r, uint64_t context);
/* Figure 3.1 "AppendEntries RPC, receiver implementation", thesis 5.3 conflict hints. */
void raft__recv_append(raft *r, const raft_message *m);
void raft__recv_append_response(raft *r, const raft_message *m);
void raft__recv_heartbeat(raft *r, const raft_message *m);
void raft__recv_heartbeat_response(raft *r, const raft_message *m);
/* Figure 3.1 "Leaders" and Figure 3.7: commit only by counting current-term replicas. */
bool raft__maybe_commit(raft *r);
/* After the commit index moved: appends to followers that lack entries, and the new commit
 * index to those that have them all (else they would learn it only from the next heartbeat,
 * and a follower serving a write or a read waits for its own apply). */
void raft__commit_advanced(raft *r);
void raft__leader_persisted(raft *r);

/* membership.c */
bool raft__conf_valid(const raft_conf *c);
/* Makes conf (taking effect at index) current: progress array, voter count, reporting. */
void raft__conf_set(raft *r, const raft_conf *conf, uint64_t index);
/* Recomputes the configuration from the log, the snapshot and the bootstrap (thesis 4.1: the
 * latest one in the log, committed or not), scanning down from below before_index. */
void raft__conf_recompute(raft *r, uint64_t before_index);
/* True if id is a voter in the current configuration. */
bool raft__is_voter(const raft *r, uint64_t id);
/* A removed leader steps down once the configuration without it commits (thesis 4.2.2). */
bool raft__maybe_step_down_removed(raft *r);

/* snapshot.c */
/* Sends the snapshot to p (enters the SNAPSHOT state, or sends its next chunk). */
void raft__send_snapshot(raft *r, raft__progress *p);
void raft__tick_snapshots(raft *r, uint32_t elapsed_ms);
void raft__recv_snapshot(raft *r, const raft_message *m);
void raft__recv_snapshot_response(raft *r, const raft_message *m);
/* A persist batch is durable: an accepted chunk is written, a done one installed. */
void raft__snapshot_persisted(raft *r);
/* Frees the receiving side's buffers. */
void raft__snapshot_free(raft *r);

/* read.c */
void raft__reads_on_commit(raft *r);
void raft__reads_on_ack(raft *r);
void raft__reads_fail_all(raft *r);

#endif
