/* raft: the pure Raft core (no sockets, files, clocks or threads); events in, updates out. */
#ifndef TERN_RAFT_H
#define TERN_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * How a driver uses the core (the etcd Ready/Advance loop):
 *
 *   raft_new(config, storage, hard_state, applied_index)
 *   loop:
 *     feed events: raft_tick (elapsed ms), raft_receive (a message),
 *                  raft_propose, raft_read_index, raft_transfer_leadership,
 *                  raft_propose_conf_change, raft_compact,
 *                  raft_persisted (a persist batch is durable)
 *     if raft_has_update(r):
 *       raft_get_update(r, &u)
 *       1. write u.snapshot_chunk if set (SNAPSHOTS; a done chunk installs
 *          the snapshot, and its batch carries no entries), then persist
 *          u.entries (first truncate the log at u.entries[0].index, then
 *          append) and then, or atomically with them, u.hard_state (if
 *          u.hard_state_changed: its commit may name an entry of this batch
 *          or the snapshot it installs), then call raft_persisted(r,
 *          u.persist_seq) -- now or, for an asynchronous disk, later (the
 *          core hands out no further persist batch until then);
 *       2. send u.messages; apply u.committed; answer u.reads;
 *       3. raft_advance(r, &u).
 *
 * Persist-before-send: every message the core generates is tagged with the
 * persist sequence number current when it was generated (the count of
 * term/vote/entry changes so far). A message is handed out in an update only
 * once the driver has acknowledged a persist batch with at least that
 * sequence number by raft_persisted(), so a vote grant, an append response or
 * an AppendEntries can never leave before the state it depends on is
 * durable. Committed entries are handed out only up to the persisted index.
 *
 * All pointers in an update stay valid until raft_advance(); no other raft_
 * call may be made between raft_get_update() and raft_advance().
 *
 * Memory: the core keeps in memory the entries not yet both durable and
 * applied; the rest it reads through raft_storage. The leader's uncommitted
 * entries are bounded by uncommitted_bytes_max; committed entries wait for
 * the driver to apply them (at most apply_entries_max per update).
 *
 * Errors: functions return 0 or a negative TERN_E* code (common/common.h).
 * Running out of memory while building or receiving a message behaves as
 * message loss, which Raft tolerates; only raft_new and raft_propose report
 * TERN_ENOMEM.
 */

/* The largest cluster the core supports (voters). */
#define RAFT_VOTERS_MAX 9

typedef enum raft_role {
    RAFT_FOLLOWER = 0,
    RAFT_PRECANDIDATE, /* collecting pre-votes; the term has not been raised */
    RAFT_CANDIDATE,
    RAFT_LEADER,
} raft_role;

typedef enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0, /* a client command */
    RAFT_ENTRY_NOOP,       /* appended by a new leader at the start of its term */
    RAFT_ENTRY_CONFIG,     /* a membership configuration (raft_conf_encode); see MEMBERSHIP */
} raft_entry_type;

typedef struct raft_entry {
    uint64_t index;
    uint64_t term;
    raft_entry_type type;
    const void *data;
    size_t len;
} raft_entry;

/* What must be durable before the node may answer anyone (Figure 3.1 "Persistent state"). */
typedef struct raft_hard_state {
    uint64_t term;
    uint64_t vote; /* node id voted for in term, 0 for none */
    uint64_t commit;
} raft_hard_state;

typedef enum raft_message_type {
    RAFT_MSG_APPEND = 1,      /* AppendEntries (Figure 3.1) */
    RAFT_MSG_APPEND_RESPONSE, /* reject + hints, or the matched index */
    RAFT_MSG_HEARTBEAT,       /* commit = min(match, commit); context = ReadIndex round */
    RAFT_MSG_HEARTBEAT_RESPONSE,
    RAFT_MSG_VOTE, /* RequestVote (Figure 3.1) */
    RAFT_MSG_VOTE_RESPONSE,
    RAFT_MSG_PREVOTE,           /* thesis 9.6: term is the term the sender would campaign in */
    RAFT_MSG_PREVOTE_RESPONSE,  /* term is the request's term when granted */
    RAFT_MSG_TIMEOUT_NOW,       /* thesis 3.10: the target starts an election at once */
    RAFT_MSG_SNAPSHOT,          /* one InstallSnapshot chunk (thesis 5.1, Figure 5.3) */
    RAFT_MSG_SNAPSHOT_RESPONSE, /* chunk accepted up to offset, or reject = restart at 0 */
} raft_message_type;

/* One flat message; each type uses the fields listed beside it. */
typedef struct raft_message {
    raft_message_type type;
    uint64_t from;
    uint64_t to;
    uint64_t term;
    /* APPEND: prev_index, prev_term, commit, entries. */
    uint64_t prev_index;
    uint64_t prev_term;
    uint64_t commit;
    const raft_entry *entries;
    size_t entries_count;
    /* APPEND_RESPONSE: reject; index = last matched index on success, the
     * rejected prev_index on reject; hint_index/hint_term = fast-backtracking
     * hints (thesis 5.3): hint_term is the follower's term at prev_index (0 if
     * its log is shorter) and hint_index the first index of that term (or its
     * last index + 1). */
    bool reject;
    uint64_t index;
    uint64_t hint_index;
    uint64_t hint_term;
    /* VOTE, PREVOTE: last_index, last_term, transfer (sent after TimeoutNow:
     * receivers skip leader stickiness). *_RESPONSE: granted. */
    uint64_t last_index;
    uint64_t last_term;
    bool transfer;
    bool granted;
    /* HEARTBEAT, HEARTBEAT_RESPONSE: ReadIndex round number. */
    uint64_t context;
    /* SNAPSHOT: last_index/last_term = the snapshot's index and term, conf (encoded
     * raft_conf) = its configuration, offset = where data starts in the snapshot's byte
     * stream, data/data_len = the chunk, done = last chunk. SNAPSHOT_RESPONSE:
     * last_index = the snapshot's index, offset = bytes received so far (the next
     * expected offset), reject = the receiver wants the stream from offset 0 again,
     * done = installed, or not needed (index = last_index is then the follower's match). */
    uint64_t offset;
    const void *data;
    size_t data_len;
    const void *conf;
    size_t conf_len;
    bool done;
} raft_message;

/* A ReadIndex answer: serve request_id after applying up to index; status 0 or TERN_E*. */
typedef struct raft_read_ready {
    uint64_t request_id;
    uint64_t index;
    int status; /* TERN_EPRECOND: leadership lost before the read was confirmed */
} raft_read_ready;

/*
 * MEMBERSHIP
 *
 * A configuration lists members: voters (count in elections and commit
 * quorums) and learners (receive the log, never vote or count). It changes
 * one server at a time (thesis 4.1): the leader appends a RAFT_ENTRY_CONFIG
 * entry holding the whole new configuration, and every node uses the latest
 * configuration in its log at once, committed or not (a truncated entry
 * reverts it). A change is refused while an earlier one is uncommitted, and
 * until the leader has committed an entry of its own term (the no-op; the
 * fix to the single-server algorithm posted by Ongaro in 2015). A learner is
 * promoted only once it has caught up (its match index within
 * learner_catchup_entries of the leader's last index). A leader removed from
 * the configuration keeps leading until the change commits, then steps down
 * (thesis 4.2.2). A node that is not in its own latest configuration never
 * campaigns. Each member carries an address the core stores but never reads
 * (the driver's "host:port"), so every node learns where new members live.
 *
 * Refinements (as implemented):
 *   - Messages are processed without consulting the configuration (thesis
 *     4.1): a sender outside it is accepted (a leader we do not know yet, a
 *     removed node); responses and votes from non-voters never count, and
 *     responses from non-members are ignored.
 *   - The leader stops replicating to a removed member as soon as it appends
 *     the change, so a removed node may never learn of its removal; pre-vote
 *     and check-quorum keep it from disrupting the others. A driver learns
 *     that a configuration is committed when it applies its CONFIG entry
 *     (update.committed); a node removed by a committed configuration should
 *     be shut down, and never rejoin with its old log under its old id.
 *   - A leader that removed itself does not count itself in any majority;
 *     once the change commits it steps down and sends TimeoutNow to its most
 *     caught-up voter, so the next election starts at once.
 *   - A node started with voters_count 0 and nothing in storage has an empty
 *     configuration until a log or snapshot from a leader gives it one; it
 *     then finds that configuration in its storage at every restart.
 *   - update.conf_changed is not set for the configuration found at raft_new
 *     (read it with raft_get_conf).
 */
#define RAFT_MEMBERS_MAX 16 /* voters + learners */
#define RAFT_ADDRESS_MAX 96 /* including the terminating NUL */

typedef enum raft_member_role {
    RAFT_MEMBER_VOTER = 0,
    RAFT_MEMBER_LEARNER = 1,
} raft_member_role;

typedef struct raft_member {
    uint64_t id; /* never 0 */
    raft_member_role role;
    char address[RAFT_ADDRESS_MAX]; /* NUL-terminated; may be empty */
} raft_member;

typedef struct raft_conf {
    size_t count; /* voters (1..RAFT_VOTERS_MAX) + learners <= RAFT_MEMBERS_MAX */
    raft_member members[RAFT_MEMBERS_MAX];
} raft_conf;

typedef enum raft_conf_change_type {
    RAFT_CONF_ADD_LEARNER = 1, /* a new id joins as a learner */
    RAFT_CONF_PROMOTE,         /* a caught-up learner becomes a voter */
    RAFT_CONF_REMOVE,          /* a voter or learner leaves */
} raft_conf_change_type;

/* The payload of a RAFT_ENTRY_CONFIG entry (and of SNAPSHOT messages): a versioned,
 * length-checked encoding. raft_conf_encode returns the bytes written (at most
 * RAFT_CONF_ENCODED_MAX); raft_conf_decode returns 0 or TERN_EPARSE (bad version, length,
 * id 0, duplicate id, no voter, too many members, address not NUL-terminated). */
#define RAFT_CONF_ENCODED_MAX (8 + RAFT_MEMBERS_MAX * (16 + RAFT_ADDRESS_MAX))
size_t raft_conf_encode(const raft_conf *c, uint8_t *buf);
int raft_conf_decode(const void *data, size_t len, raft_conf *out);
/* The member with id, or NULL. */
const raft_member *raft_conf_find(const raft_conf *c, uint64_t id);

/*
 * SNAPSHOTS AND LOG COMPACTION
 *
 * The driver's state machine takes a snapshot at an applied index it chooses;
 * once the snapshot is durable it calls raft_compact(r, &meta) with the
 * snapshot's index, that entry's term and the configuration as of that index
 * (the latest CONFIG entry the driver applied at or below it, or the
 * snapshot's own configuration). From then on the core never reads entries at
 * or below meta.index from storage, and the driver may delete them (keeping
 * some entries after a snapshot lets slow followers catch up without one).
 *
 * Sending: a follower whose next index is at or below the snapshot's index
 * gets the snapshot (progress state SNAPSHOT). The leader reads the snapshot's
 * byte stream through raft_storage.snapshot_read and sends it in chunks of at
 * most snapshot_chunk_bytes, stop-and-wait per follower: the next chunk goes
 * when the previous one is acknowledged, or again after a heartbeat interval
 * without an answer. If the leader compacts to a newer snapshot meanwhile,
 * the stream restarts at offset 0 of the new one.
 *
 * Receiving: a chunk whose offset is the next expected one is handed to the
 * driver in update.snapshot_chunk (at most one per update) and belongs to
 * that update's persist batch: the driver writes it (a chunk at offset 0
 * starts a new stream and discards any partial one) and, for the chunk with
 * done set, installs the whole snapshot -- replaces its state machine with
 * the snapshot's and discards its log -- before calling raft_persisted. The
 * core then sets its log to start after the snapshot index, commit and
 * applied to that index and the configuration to the snapshot's, and
 * acknowledges. A chunk for a snapshot at or below the commit index is
 * acknowledged as installed without being handed out.
 *
 * Refinements (as implemented):
 *   - raft_compact reads the term of meta.index to check it: delete entries
 *     only after it returns. The driver's snapshot must stay readable through
 *     snapshot_read until a newer one replaces it (TERN_ENOTFOUND meanwhile
 *     only delays the follower: the leader retries every heartbeat interval).
 *   - The follower discards its whole log on install (Figure 5.3 step 7). A
 *     snapshot whose last entry (index and term) the follower already holds
 *     is not installed (step 6): the follower commits up to it and answers
 *     done once that entry is durable.
 *   - Once the done chunk is accepted, the core's log already starts after
 *     the snapshot (raft_get_snapshot names it), but until its persist batch
 *     is durable it hands out no committed entries, ignores AppendEntries and
 *     further chunks, and does not campaign. The batch with the done chunk
 *     holds no entries, and its hard state commits the snapshot index. After
 *     raft_persisted, committed entries resume at snapshot index + 1: the
 *     applied index only ever moves forward (by applying, or by an install).
 *   - A stream is that of one sender and one snapshot (index, term): a chunk
 *     at offset 0 starts a new one; a chunk beyond the next expected offset,
 *     or of a stream not being received (after a restart, say), is answered
 *     with reject and the sender starts over; one below it is a duplicate,
 *     answered with the expected offset.
 *   - Compacted entries are gone for the checks too: raft_check_invariants
 *     requires snapshot index <= log offset, commit and (except while an
 *     install is pending) applied.
 */
typedef struct raft_snapshot_meta {
    uint64_t index; /* last log index the snapshot includes (0: no snapshot) */
    uint64_t term;  /* term of that entry */
    raft_conf conf; /* the configuration as of index */
} raft_snapshot_meta;

/* A received chunk to write (see SNAPSHOTS). data is valid until raft_advance. */
typedef struct raft_snapshot_chunk {
    const raft_snapshot_meta *meta;
    uint64_t offset;
    const void *data;
    size_t len;
    bool done; /* the last chunk: install the snapshot before raft_persisted */
} raft_snapshot_chunk;

/*
 * The driver's stable log, read-only from the core. The core keeps recent
 * entries in memory and reads older ones here (after a restart, or for a
 * follower that lags). Both callbacks must succeed for 1 <= index <=
 * last_index: a read error must stop the node (the core asserts), the
 * SQLite-pager rule that a broken disk is not limped on.
 */
typedef struct raft_storage {
    void *ctx;
    uint64_t last_index; /* at raft_new */
    /* Term of the entry at index. */
    uint64_t (*term)(void *ctx, uint64_t index);
    /* Fills *out with the entry at index; out->data stays valid until the next call. */
    void (*entry)(void *ctx, uint64_t index, raft_entry *out);
    /*
     * The latest durable snapshot at raft_new (index 0: none). The log then
     * starts at snapshot.index + 1 (storage holds last_index - snapshot.index
     * entries), and the configuration is the latest CONFIG entry in the log,
     * else the snapshot's, else raft_config.voters (bootstrap). With a
     * snapshot, snapshot_read must be set and raft_new's applied_index must be
     * at least snapshot.index (the state machine starts from the snapshot).
     */
    raft_snapshot_meta snapshot;
    /*
     * Reads up to len bytes at offset of the byte stream of the snapshot with
     * index snapshot_index (the latest one given by raft_compact, installed,
     * or the one above). Returns the bytes read, which is len unless the
     * stream ends first (a short count marks the last chunk; 0 at the end),
     * or a negative TERN_E* code (the core retries after a heartbeat interval;
     * TERN_ENOTFOUND: that snapshot is gone). May be NULL when the driver
     * never compacts.
     */
    long (*snapshot_read)(void *ctx, uint64_t snapshot_index, uint64_t offset, void *buf,
                          size_t len);
} raft_storage;

typedef struct raft_config {
    uint64_t id;
    /* The bootstrap configuration (used only when storage holds no configuration): all voter
     * ids, including id; none is 0. voters_count 0 starts a node that joins an existing
     * group: it waits, never campaigning, until a leader sends it a log or a snapshot. */
    const uint64_t *voters;
    size_t voters_count;          /* 0..RAFT_VOTERS_MAX */
    uint32_t election_timeout_ms; /* randomized in [t, 2t) per election */
    uint32_t heartbeat_interval_ms;
    bool pre_vote;
    bool check_quorum;
    uint64_t seed;                    /* the core's RNG; a seed replays a run */
    size_t append_bytes_max;          /* payload bytes per AppendEntries */
    size_t inflight_msgs_max;         /* unacknowledged AppendEntries per follower */
    size_t inflight_bytes_max;        /* unacknowledged payload bytes per follower */
    size_t uncommitted_bytes_max;     /* leader refuses proposals beyond this (TERN_EAGAIN) */
    size_t entry_bytes_max;           /* one proposal's payload (TERN_ETOOBIG) */
    size_t messages_max;              /* outbox; further messages are dropped (as lost) */
    size_t reads_max;                 /* pending ReadIndex requests (TERN_EAGAIN beyond) */
    size_t apply_entries_max;         /* committed entries per update */
    size_t snapshot_chunk_bytes;      /* InstallSnapshot chunk size (> 0) */
    uint64_t learner_catchup_entries; /* promote only when match >= last index - this */
} raft_config;

/* Fills c with defaults (1000/100 ms, pre-vote and check-quorum on, bounds set; 1 MiB snapshot
 * chunks, learners promoted within 256 entries of the leader). */
void raft_config_default(raft_config *c);

typedef struct raft raft;

typedef struct raft_update {
    bool hard_state_changed;
    raft_hard_state hard_state;
    const raft_entry *entries; /* to persist; entries[0].index may overwrite a tail */
    size_t entries_count;
    uint64_t persist_seq; /* acknowledge with raft_persisted() once durable (0: nothing) */
    const raft_message *messages;
    size_t messages_count;
    const raft_entry *committed; /* apply in order */
    size_t committed_count;
    const raft_read_ready *reads;
    size_t reads_count;
    const raft_snapshot_chunk *snapshot_chunk; /* NULL or one chunk to persist (SNAPSHOTS) */
    bool conf_changed;     /* the configuration changed since the last update: see conf */
    const raft_conf *conf; /* always set: the current configuration */
    bool role_changed;     /* role, term or known leader changed since the last update */
    raft_role role;
    uint64_t term;
    uint64_t leader_id;
} raft_update;

/* The module's version of its persistent formats; bumped when they change. */
uint32_t raft_format_version(void);

/*
 * Creates a node from its durable state (hard_state, storage) and the index
 * the state machine has applied. Returns 0, TERN_EINVAL (bad config or
 * storage -- a snapshot without snapshot_read, applied_index below the
 * snapshot, a CONFIG entry that does not decode -- with the reason in errmsg)
 * or TERN_ENOMEM. The commit index starts at least at the snapshot's index.
 */
int raft_new(raft **out, const raft_config *config, const raft_storage *storage,
             const raft_hard_state *hard_state, uint64_t applied_index, char *errmsg,
             size_t errmsg_len);
void raft_free(raft *r);

/* Time passes (elapsed_ms since the last tick): election and heartbeat timers. */
void raft_tick(raft *r, uint32_t elapsed_ms);
/* A message arrived. Returns 0 or TERN_EINVAL (not addressed to this node, from id 0 or from
 * itself, malformed: entries not contiguous after prev_index, terms out of order, a CONFIG
 * entry or a SNAPSHOT configuration that does not decode); a refused message changes nothing.
 * A sender outside the configuration is not refused (MEMBERSHIP). */
int raft_receive(raft *r, const raft_message *m);
/*
 * Appends a client command (leader only). Returns 0 with *index set,
 * TERN_EPRECOND (not leader), TERN_EAGAIN (uncommitted bytes over
 * uncommitted_bytes_max, or a leadership transfer is in progress),
 * TERN_ETOOBIG (len > entry_bytes_max) or TERN_ENOMEM. A refusal changes nothing.
 */
int raft_propose(raft *r, const void *data, size_t len, uint64_t *index);
/*
 * Asks for a linearizable read (thesis 6.4 ReadIndex). The answer arrives in
 * a later update's reads. Returns 0, TERN_EPRECOND (not leader) or
 * TERN_EAGAIN (reads_max pending).
 */
int raft_read_index(raft *r, uint64_t request_id);
/* Starts moving leadership to target (thesis 3.10). TERN_EPRECOND if not leader, TERN_EINVAL
 * for a target that is not a voter (unknown, a learner, or itself), TERN_EAGAIN if a transfer
 * is in progress. */
int raft_transfer_leadership(raft *r, uint64_t target);
/* The persist batch persist_seq (and all before it) is durable. */
void raft_persisted(raft *r, uint64_t persist_seq);
/*
 * Proposes a membership change (MEMBERSHIP); address is stored with an added member (may be
 * NULL or ""). Returns 0 with *index the CONFIG entry's index, TERN_EPRECOND (not leader),
 * TERN_EAGAIN (a change is uncommitted, this term's no-op is uncommitted, a transfer is in
 * progress, or the learner to promote has not caught up), TERN_EINVAL (adding a known id,
 * promoting a non-learner, removing an unknown id or the last voter, too many members) or
 * TERN_ENOMEM. A refusal changes nothing.
 */
int raft_propose_conf_change(raft *r, raft_conf_change_type type, uint64_t node_id,
                             const char *address, uint64_t *index);
/*
 * The driver's snapshot described by meta is durable (SNAPSHOTS); meta.index must be at most
 * the applied index and above the previous snapshot's, meta.term the term of that entry and
 * meta.conf a valid configuration, and storage.snapshot_read must be set. Returns 0 or
 * TERN_EINVAL (nothing changed).
 */
int raft_compact(raft *r, const raft_snapshot_meta *meta);

bool raft_has_update(const raft *r);
void raft_get_update(raft *r, raft_update *u);
void raft_advance(raft *r, const raft_update *u);

raft_role raft_get_role(const raft *r);
uint64_t raft_get_term(const raft *r);
uint64_t raft_get_leader(const raft *r);
uint64_t raft_get_commit(const raft *r);
uint64_t raft_get_last_index(const raft *r);
uint64_t raft_get_id(const raft *r);
const raft_conf *raft_get_conf(const raft *r);
/* The latest snapshot the core knows (index 0: none). */
const raft_snapshot_meta *raft_get_snapshot(const raft *r);

/* The leader's view of one member, for status pages (leader only; others get count 0). Members
 * in configuration order, learners included; a leader that removed itself is not listed. */
typedef struct raft_member_progress {
    uint64_t id;
    raft_member_role role;
    uint64_t match; /* highest index known replicated on it */
    uint64_t next;
    bool active;   /* heard from within the last election timeout */
    bool snapshot; /* being sent a snapshot */
} raft_member_progress;
/* Fills up to max entries; returns the number filled. */
size_t raft_get_progress(const raft *r, raft_member_progress *out, size_t max);
const char *raft_role_name(raft_role role);

/*
 * Checks the core's invariants (commit <= last index, applied <= commit, the
 * term never decreases, a leader voted for itself in its term, progress
 * bounds, progress exactly for the members, only voters campaign, a leader
 * holds at most one CONFIG entry of its term above commit and no other one,
 * a removed leader steps down once that commits, snapshot index <= log
 * offset, commit and applied, ...). Returns 0, or TERN_ECORRUPT with the
 * first violation in errmsg.
 */
int raft_check_invariants(const raft *r, char *errmsg, size_t len);

#endif
