/* raft: the core's life cycle, message dispatch, the update/advance cycle and the invariants. */
#include <stdlib.h>
#include <string.h>

#include "raft_internal.h"

/*
 * DESIGN NOTES
 *
 * The core is a deterministic state machine: the same config (with its seed),
 * storage and sequence of calls produce the same updates. It owns no clock,
 * socket, file or thread; it allocates memory, and an allocation failure
 * while building or accepting a message is handled as message loss.
 *
 * Roles (thesis 3.3, 9.6 pre-vote):
 *
 *            election timeout              pre-vote quorum
 *   FOLLOWER ----------------> PRECANDIDATE ------------> CANDIDATE
 *      ^  ^                        |                        |  |
 *      |  +---- higher term, ------+                        |  | vote quorum
 *      |        leader heard,                               |  v
 *      |        pre-vote lost                               | LEADER
 *      +----------------------------------------------------+    |
 *      +---- higher term; check-quorum failed (no majority heard ---+
 *            within an election timeout)
 *
 * Without pre_vote a timeout goes straight to CANDIDATE. TimeoutNow
 * (leadership transfer) also goes straight to CANDIDATE.
 *
 * Invariants (raft_check_invariants):
 *   - applied <= commit <= last index; commit <= stable index is NOT required
 *     (a follower may learn commit before it persists), but entries are
 *     applied only up to min(commit, stable);
 *   - stable <= last index; the term never goes below the durable term;
 *   - a leader (and a candidate) voted for itself in the current term; a
 *     leader knows itself as leader;
 *   - for every follower progress: match < next <= last index + 1, and the
 *     in-flight accounting stays within its bounds;
 *   - the leader's term-start no-op exists and has the current term.
 *
 * Persistence: every change of term, vote or log bumps dirty_seq. Messages
 * are tagged with dirty_seq when queued. raft_get_update hands out at most
 * one persist batch at a time (all dirty state, tagged handed_seq = dirty_seq);
 * raft_persisted(seq) moves persisted_seq forward, marks entries stable and
 * releases the messages tagged <= persisted_seq. So nothing leaves before
 * what it depends on is durable (Figure 3.1: "Updated on stable storage
 * before responding to RPCs"). The leader counts itself in commit decisions
 * only for its stable entries, so it may be the last of a quorum to persist.
 */

static const raft_config default_config = {
    .election_timeout_ms = 1000,
    .heartbeat_interval_ms = 100,
    .pre_vote = true,
    .check_quorum = true,
    .seed = 1,
    .append_bytes_max = 1 << 20,
    .inflight_msgs_max = 64,
    .inflight_bytes_max = 16 << 20,
    .uncommitted_bytes_max = 64 << 20,
    .entry_bytes_max = 8 << 20,
    .messages_max = 4096,
    .reads_max = 4096,
    .apply_entries_max = 1024,
    .snapshot_chunk_bytes = 1 << 20,
    .learner_catchup_entries = 256,
};

uint32_t raft_format_version(void)
{
    return 1;
}

void raft_config_default(raft_config *c)
{
    *c = default_config;
}

const char *raft_role_name(raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_PRECANDIDATE:
        return "precandidate";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    }
    return "?";
}

/* splitmix64: small, fast, and fully determined by the caller's seed. */
uint64_t raft__random(raft *r)
{
    uint64_t z = (r->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

raft__progress *raft__progress_of(raft *r, uint64_t id)
{
    for (size_t k = 0; k < r->progress_count; k++)
        if (r->progress[k].id == id) return &r->progress[k];
    return NULL;
}

raft__progress *raft__voter_of(raft *r, uint64_t id)
{
    raft__progress *p = raft__progress_of(r, id);
    return p && p->role == RAFT_MEMBER_VOTER ? p : NULL;
}

size_t raft__quorum(const raft *r)
{
    return r->voters_count / 2 + 1;
}

void raft__mark_dirty(raft *r)
{
    r->dirty_seq++;
}

static int validate_config(const raft_config *c, char *errmsg, size_t len)
{
    if (c->id == 0) return tern_errmsg(errmsg, len, "id must not be 0"), TERN_EINVAL;
    if (c->voters_count > RAFT_VOTERS_MAX || (c->voters_count > 0 && !c->voters))
        return tern_errmsg(errmsg, len, "voters_count must be 0..%d", RAFT_VOTERS_MAX), TERN_EINVAL;
    bool self = c->voters_count == 0; /* a joining node */
    for (size_t k = 0; k < c->voters_count; k++) {
        if (c->voters[k] == 0) return tern_errmsg(errmsg, len, "voter id 0"), TERN_EINVAL;
        if (c->voters[k] == c->id) self = true;
        for (size_t j = 0; j < k; j++)
            if (c->voters[j] == c->voters[k])
                return tern_errmsg(errmsg, len, "duplicate voter %llu",
                                   (unsigned long long)c->voters[k]),
                       TERN_EINVAL;
    }
    if (!self) return tern_errmsg(errmsg, len, "id is not among the voters"), TERN_EINVAL;
    if (c->election_timeout_ms == 0 || c->heartbeat_interval_ms == 0 ||
        c->heartbeat_interval_ms >= c->election_timeout_ms)
        return tern_errmsg(errmsg, len, "need 0 < heartbeat_interval_ms < election_timeout_ms"),
               TERN_EINVAL;
    if (c->append_bytes_max == 0 || c->inflight_msgs_max == 0 || c->inflight_bytes_max == 0 ||
        c->uncommitted_bytes_max == 0 || c->entry_bytes_max == 0 || c->messages_max == 0 ||
        c->reads_max == 0 || c->apply_entries_max == 0 || c->snapshot_chunk_bytes == 0)
        return tern_errmsg(errmsg, len, "every bound must be > 0"), TERN_EINVAL;
    return 0;
}

static int validate_storage(const raft_storage *storage, const raft_hard_state *hs,
                            uint64_t applied_index, char *errmsg, size_t len)
{
    if (!storage || !storage->term || !storage->entry || !hs || hs->commit > storage->last_index ||
        applied_index > storage->last_index)
        return tern_errmsg(errmsg, len, "inconsistent storage, hard state or applied index"),
               TERN_EINVAL;
    const raft_snapshot_meta *snap = &storage->snapshot;
    if (snap->index == 0) return 0;
    if (snap->term == 0 || snap->index > storage->last_index || !raft__conf_valid(&snap->conf) ||
        !storage->snapshot_read)
        return tern_errmsg(errmsg, len, "inconsistent snapshot (index, term, conf, reader)"),
               TERN_EINVAL;
    /* The state machine starts from the snapshot: an applied index below it is a driver bug. */
    if (applied_index < snap->index)
        return tern_errmsg(errmsg, len, "applied index %llu below the snapshot's %llu",
                           (unsigned long long)applied_index, (unsigned long long)snap->index),
               TERN_EINVAL;
    return 0;
}

/* The latest CONFIG entry in storage must decode (it is the configuration in force). */
static int validate_stored_conf(const raft_storage *storage, char *errmsg, size_t len)
{
    for (uint64_t i = storage->last_index; i > storage->snapshot.index; i--) {
        raft_entry e;
        storage->entry(storage->ctx, i, &e);
        if (e.type != RAFT_ENTRY_CONFIG) continue;
        raft_conf conf;
        if (raft_conf_decode(e.data, e.len, &conf) == 0) return 0;
        return tern_errmsg(errmsg, len, "CONFIG entry %llu does not decode", (unsigned long long)i),
               TERN_EINVAL;
    }
    return 0;
}

int raft_new(raft **out, const raft_config *config, const raft_storage *storage,
             const raft_hard_state *hs, uint64_t applied_index, char *errmsg, size_t errmsg_len)
{
    int rc = validate_config(config, errmsg, errmsg_len);
    if (rc) return rc;
    rc = validate_storage(storage, hs, applied_index, errmsg, errmsg_len);
    if (rc) return rc;
    rc = validate_stored_conf(storage, errmsg, errmsg_len);
    if (rc) return rc;
    raft *r = calloc(1, sizeof(*r));
    if (!r) return TERN_ENOMEM;
    r->config = *config;
    r->id = config->id;
    r->rng = config->seed ^ (config->id * 0xD6E8FEB86659FD93ull);
    r->term = r->term_floor = hs->term;
    r->vote = hs->vote;
    /*
     * The driver may make a batch's entries durable before its hard state, so a
     * crash between the two leaves entries of a newer term than the saved one.
     * currentTerm must be at least every term in the log (Figure 3.1): raise it.
     * No vote in that term can have been sent (a vote goes out only once the
     * hard state naming it is durable), so the vote is none.
     */
    if (storage->last_index > 0) {
        uint64_t last_term = storage->last_index == storage->snapshot.index
                                 ? storage->snapshot.term
                                 : storage->term(storage->ctx, storage->last_index);
        if (last_term > r->term) {
            r->term = r->term_floor = last_term;
            r->vote = 0;
        }
    }
    /* An applied entry was committed even if the commit index was not yet persisted, and so
     * was everything in a snapshot (a crash may keep an install but not its hard state). */
    r->commit = TERN_MAX(TERN_MAX(hs->commit, applied_index), storage->snapshot.index);
    r->applied = applied_index;
    r->handed_hs = *hs;
    r->log.storage = *storage;
    r->log.offset = storage->last_index;
    r->stable = r->handed_last = storage->last_index;
    r->persist_from = storage->last_index + 1;
    r->snapshot = storage->snapshot;
    r->outbox = calloc(config->messages_max, sizeof(*r->outbox));
    r->update_msgs = calloc(config->messages_max, sizeof(*r->update_msgs));
    r->reads = calloc(config->reads_max, sizeof(*r->reads));
    r->reads_ready = calloc(config->reads_max, sizeof(*r->reads_ready));
    r->apply_buf = calloc(config->apply_entries_max, sizeof(*r->apply_buf));
    r->apply_data = calloc(config->apply_entries_max, sizeof(*r->apply_data));
    if (!r->outbox || !r->update_msgs || !r->reads || !r->reads_ready || !r->apply_buf ||
        !r->apply_data)
        goto err_after_alloc;
    /* Every slot gets its ring now, so membership changes never allocate. */
    for (size_t k = 0; k < RAFT_MEMBERS_MAX; k++) {
        r->progress[k].inflight = calloc(config->inflight_msgs_max, sizeof(raft__inflight));
        if (!r->progress[k].inflight) goto err_after_alloc;
    }
    r->bootstrap.count = config->voters_count;
    for (size_t k = 0; k < config->voters_count; k++)
        r->bootstrap.members[k] = (raft_member){.id = config->voters[k], .role = RAFT_MEMBER_VOTER};
    r->config.voters = NULL; /* the caller's array is not kept */
    r->role = r->reported_role = RAFT_FOLLOWER;
    /* The latest CONFIG entry in the log, else the snapshot's, else the bootstrap one. */
    raft__conf_recompute(r, storage->last_index + 1);
    r->conf_changed = false; /* the driver reads the first one with raft_get_conf */
    r->reported_term = r->term;
    raft__reset_election_timer(r);
    *out = r;
    return 0;
err_after_alloc:
    raft_free(r);
    return TERN_ENOMEM;
}

static void outbox_clear(raft *r)
{
    for (size_t k = 0; k < r->outbox_count; k++)
        free(r->outbox[k].owned);
    r->outbox_count = 0;
}

void raft_free(raft *r)
{
    if (!r) return;
    outbox_clear(r);
    for (size_t k = 0; k < RAFT_MEMBERS_MAX; k++)
        free(r->progress[k].inflight);
    raft__snapshot_free(r);
    for (size_t k = 0; k < r->apply_count; k++)
        free(r->apply_data[k]);
    raft__log_free(r);
    free(r->outbox);
    free(r->update_msgs);
    free(r->reads);
    free(r->reads_ready);
    free(r->apply_buf);
    free(r->apply_data);
    free(r);
}

void raft__send(raft *r, const raft_message *m)
{
    RAFT_ASSERT(m->to != r->id && m->to != 0);
    if (r->outbox_count == r->config.messages_max) return; /* dropped: as if lost */
    raft__outmsg *o = &r->outbox[r->outbox_count];
    o->msg = *m;
    o->msg.from = r->id;
    o->persist_seq = r->dirty_seq;
    o->owned = NULL;
    o->msg.entries = NULL;
    /* One buffer owns the entries (array first, for alignment), their data, a snapshot chunk
     * and its configuration. */
    size_t bytes = m->entries_count * sizeof(raft_entry) + m->data_len + m->conf_len;
    for (size_t k = 0; k < m->entries_count; k++)
        bytes += m->entries[k].len;
    if (bytes > 0) {
        char *buf = malloc(bytes);
        if (!buf) return;
        raft_entry *copy = (raft_entry *)buf;
        char *data = buf + m->entries_count * sizeof(raft_entry);
        for (size_t k = 0; k < m->entries_count; k++) {
            copy[k] = m->entries[k];
            if (copy[k].len) memcpy(data, m->entries[k].data, copy[k].len);
            copy[k].data = copy[k].len ? data : NULL;
            data += copy[k].len;
        }
        if (m->entries_count > 0) o->msg.entries = copy;
        o->msg.data = m->data_len ? data : NULL;
        if (m->data_len) memcpy(data, m->data, m->data_len);
        data += m->data_len;
        o->msg.conf = m->conf_len ? data : NULL;
        if (m->conf_len) memcpy(data, m->conf, m->conf_len);
        o->owned = buf;
    }
    r->outbox_count++;
}

/* A SNAPSHOT chunk: a real snapshot of at most the sender's term, a configuration that decodes. */
static bool snapshot_valid(const raft_message *m)
{
    raft_conf conf;
    return m->entries_count == 0 && m->last_index > 0 && m->last_term > 0 &&
           m->last_term <= m->term && (m->data_len == 0 || m->data) &&
           m->conf_len <= RAFT_CONF_ENCODED_MAX && (m->conf || m->conf_len == 0) &&
           raft_conf_decode(m->conf, m->conf_len, &conf) == 0;
}

/*
 * A message from the network is checked before it can reach an assertion. The sender need not
 * be in our configuration (thesis 4.1: servers process requests without consulting their
 * configuration, which may lag the sender's); responses from non-members are ignored later.
 */
static bool message_valid(const raft *r, const raft_message *m)
{
    if (m->to != r->id || m->from == r->id || m->from == 0) return false;
    if (m->type == RAFT_MSG_SNAPSHOT) return snapshot_valid(m);
    if (m->type != RAFT_MSG_APPEND) return m->entries_count == 0;
    if (m->entries_count > 0 && !m->entries) return false;
    if (m->prev_term > m->term || (m->prev_index == 0 && m->prev_term != 0)) return false;
    uint64_t term = m->prev_term;
    for (size_t k = 0; k < m->entries_count; k++) {
        const raft_entry *e = &m->entries[k];
        if (e->index != m->prev_index + 1 + k || e->term < term || e->term > m->term ||
            (e->len > 0 && !e->data))
            return false;
        raft_conf conf;
        if (e->type == RAFT_ENTRY_CONFIG && raft_conf_decode(e->data, e->len, &conf) != 0)
            return false;
        term = e->term;
    }
    return true;
}

/* Figure 3.1 "Rules for Servers: All Servers": a higher term converts to follower. */
int raft_receive(raft *r, const raft_message *m)
{
    RAFT_ASSERT(!r->update_out);
    if (!message_valid(r, m)) return TERN_EINVAL;
    if (m->term > r->term) {
        bool vote_request = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
        /* Leader stickiness (thesis 4.2.3): ignore (pre)votes while a live leader is known. */
        if (vote_request && !m->transfer && raft__in_lease(r)) return 0;
        if (m->type == RAFT_MSG_PREVOTE) {
            /* A pre-vote never changes our term. */
        } else if (m->type == RAFT_MSG_PREVOTE_RESPONSE && m->granted) {
            /* Carries the term the precandidate would campaign in. */
        } else {
            bool from_leader = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                               m->type == RAFT_MSG_SNAPSHOT || m->type == RAFT_MSG_TIMEOUT_NOW;
            raft__become_follower(r, m->term, from_leader ? m->from : 0);
        }
    } else if (m->term < r->term) {
        if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
            m->type == RAFT_MSG_SNAPSHOT) {
            /* Tell a deposed leader (perhaps cut off by pre-vote/check-quorum, which keep
             * our term from reaching it through votes) that its term is over. */
            raft_message resp = {
                .type = RAFT_MSG_APPEND_RESPONSE, .to = m->from, .term = r->term, .reject = true};
            raft__send(r, &resp);
        } else if (m->type == RAFT_MSG_PREVOTE) {
            raft_message resp = {.type = RAFT_MSG_PREVOTE_RESPONSE,
                                 .to = m->from,
                                 .term = r->term,
                                 .granted = false};
            raft__send(r, &resp);
        }
        return 0;
    }
    switch (m->type) {
    case RAFT_MSG_APPEND:
        raft__recv_append(r, m);
        break;
    case RAFT_MSG_APPEND_RESPONSE:
        raft__recv_append_response(r, m);
        break;
    case RAFT_MSG_HEARTBEAT:
        raft__recv_heartbeat(r, m);
        break;
    case RAFT_MSG_HEARTBEAT_RESPONSE:
        raft__recv_heartbeat_response(r, m);
        break;
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PREVOTE:
        raft__recv_vote(r, m);
        break;
    case RAFT_MSG_VOTE_RESPONSE:
    case RAFT_MSG_PREVOTE_RESPONSE:
        raft__recv_vote_response(r, m);
        break;
    case RAFT_MSG_TIMEOUT_NOW:
        raft__recv_timeout_now(r, m);
        break;
    case RAFT_MSG_SNAPSHOT:
        raft__recv_snapshot(r, m);
        break;
    case RAFT_MSG_SNAPSHOT_RESPONSE:
        raft__recv_snapshot_response(r, m);
        break;
    default:
        return TERN_EINVAL;
    }
    return 0;
}

void raft_tick(raft *r, uint32_t elapsed_ms)
{
    RAFT_ASSERT(!r->update_out);
    if (r->role == RAFT_LEADER)
        raft__tick_leader(r, elapsed_ms);
    else
        raft__tick_election(r, elapsed_ms);
}

void raft_persisted(raft *r, uint64_t persist_seq)
{
    RAFT_ASSERT(!r->update_out);
    RAFT_ASSERT(persist_seq <= r->handed_seq);
    if (persist_seq <= r->persisted_seq) return;
    r->persisted_seq = persist_seq;
    r->stable = r->handed_last;
    r->handed_seq = persist_seq;
    raft__snapshot_persisted(r);
    if (r->role == RAFT_LEADER) raft__leader_persisted(r);
}

static bool role_changed(const raft *r)
{
    return r->role != r->reported_role || r->term != r->reported_term ||
           r->leader != r->reported_leader;
}

static bool hard_state_changed(const raft *r)
{
    return r->term != r->handed_hs.term || r->vote != r->handed_hs.vote ||
           r->commit != r->handed_hs.commit;
}

static bool batch_in_flight(const raft *r)
{
    return r->handed_seq > r->persisted_seq;
}

/* Committed entries to hand out: none while a received snapshot is being installed (the log
 * below it is gone and the state machine is about to be replaced). */
static uint64_t apply_limit(const raft *r)
{
    return r->install_pending ? r->applied : TERN_MIN(r->commit, r->stable);
}

bool raft_has_update(const raft *r)
{
    if (!batch_in_flight(r) && (hard_state_changed(r) || r->dirty_seq > r->persisted_seq))
        return true;
    for (size_t k = 0; k < r->outbox_count; k++)
        if (r->outbox[k].persist_seq <= r->persisted_seq) return true;
    if (r->applied < apply_limit(r)) return true;
    return r->reads_ready_count > 0 || role_changed(r) || r->conf_changed;
}

void raft_get_update(raft *r, raft_update *u)
{
    RAFT_ASSERT(!r->update_out);
    memset(u, 0, sizeof(*u));
    r->update_out = true;
    if (!batch_in_flight(r) && (hard_state_changed(r) || r->dirty_seq > r->persisted_seq)) {
        u->hard_state_changed = hard_state_changed(r);
        u->hard_state = (raft_hard_state){r->term, r->vote, r->commit};
        r->handed_hs = u->hard_state;
        uint64_t last = raft__log_last_index(r);
        if (r->persist_from <= last) {
            RAFT_ASSERT(r->persist_from > r->log.offset);
            u->entries = &r->log.entries[r->persist_from - r->log.offset - 1];
            u->entries_count = (size_t)(last - r->persist_from + 1);
        }
        r->persist_from = last + 1;
        r->handed_last = last;
        if (r->dirty_seq > r->persisted_seq) {
            r->handed_seq = r->dirty_seq;
            u->persist_seq = r->dirty_seq;
        }
        if (r->chunk_state == RAFT__CHUNK_ACCEPTED) {
            /* Accepting it bumped dirty_seq, so this batch has a persist_seq. */
            RAFT_ASSERT(u->persist_seq != 0);
            /* Installing discards the log: a batch with the done chunk carries no entries
             * (none can exist above the snapshot while the install is pending). */
            RAFT_ASSERT(!r->chunk.done || u->entries_count == 0);
            u->snapshot_chunk = &r->chunk;
            r->chunk_state = RAFT__CHUNK_HANDED;
            r->chunk_seq = u->persist_seq;
        }
    }
    size_t n = 0;
    for (size_t k = 0; k < r->outbox_count; k++)
        if (r->outbox[k].persist_seq <= r->persisted_seq) r->update_msgs[n++] = r->outbox[k].msg;
    u->messages = r->update_msgs;
    u->messages_count = n;
    uint64_t apply_to = apply_limit(r);
    r->apply_count = 0;
    for (uint64_t i = r->applied + 1; i <= apply_to && r->apply_count < r->config.apply_entries_max;
         i++) {
        raft_entry e;
        raft__log_get(r, i, &e);
        void *copy = NULL;
        if (e.len) {
            copy = malloc(e.len);
            if (!copy) break; /* retried in the next update */
            memcpy(copy, e.data, e.len);
        }
        e.data = copy;
        r->apply_data[r->apply_count] = copy;
        r->apply_buf[r->apply_count++] = e;
    }
    u->committed = r->apply_buf;
    u->committed_count = r->apply_count;
    u->reads = r->reads_ready;
    u->reads_count = r->reads_ready_count;
    u->role_changed = role_changed(r);
    u->conf_changed = r->conf_changed;
    r->conf_changed = false;
    u->conf = &r->conf;
    u->role = r->role;
    u->term = r->term;
    u->leader_id = r->leader;
}

void raft_advance(raft *r, const raft_update *u)
{
    RAFT_ASSERT(r->update_out);
    r->update_out = false;
    /* Drop the handed-out messages, keep the ones still waiting for persistence. */
    size_t kept = 0;
    for (size_t k = 0; k < r->outbox_count; k++) {
        if (r->outbox[k].persist_seq <= r->persisted_seq)
            free(r->outbox[k].owned);
        else
            r->outbox[kept++] = r->outbox[k];
    }
    r->outbox_count = kept;
    for (size_t k = 0; k < r->apply_count; k++) {
        RAFT_ASSERT(r->apply_buf[k].index == r->applied + 1);
        r->applied = r->apply_buf[k].index;
        free(r->apply_data[k]);
    }
    r->apply_count = 0;
    r->reads_ready_count = 0;
    r->reported_role = u->role;
    r->reported_term = u->term;
    r->reported_leader = u->leader_id;
    /* Entries both durable and applied are served from storage from now on. */
    raft__log_trim(r, TERN_MIN(r->applied, TERN_MIN(r->stable, r->persist_from - 1)));
}

raft_role raft_get_role(const raft *r)
{
    return r->role;
}
uint64_t raft_get_term(const raft *r)
{
    return r->term;
}
uint64_t raft_get_leader(const raft *r)
{
    return r->leader;
}
uint64_t raft_get_commit(const raft *r)
{
    return r->commit;
}
uint64_t raft_get_last_index(const raft *r)
{
    return raft__log_last_index(r);
}
uint64_t raft_get_id(const raft *r)
{
    return r->id;
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            tern_errmsg(errmsg, len, __VA_ARGS__);                                                 \
            return TERN_ECORRUPT;                                                                  \
        }                                                                                          \
    } while (0)

static int check_progress(const raft *r, char *errmsg, size_t len)
{
    uint64_t last = raft__log_last_index(r);
    for (size_t k = 0; k < r->progress_count; k++) {
        const raft__progress *p = &r->progress[k];
        if (p->id == r->id) continue;
        CHECK(p->match < p->next, "node %llu: progress %llu match %llu >= next %llu",
              (unsigned long long)r->id, (unsigned long long)p->id, (unsigned long long)p->match,
              (unsigned long long)p->next);
        CHECK(p->next <= last + 1, "node %llu: progress %llu next %llu > last %llu + 1",
              (unsigned long long)r->id, (unsigned long long)p->id, (unsigned long long)p->next,
              (unsigned long long)last);
        CHECK(p->inflight_count <= r->config.inflight_msgs_max, "inflight count over bound");
        CHECK(p->state == RAFT__REPLICATE || p->inflight_count == 0,
              "probe state with messages in flight");
        CHECK(p->state != RAFT__SNAPSHOT ||
                  (p->snap_index > 0 && p->snap_index <= r->snapshot.index && p->snap_sent),
              "node %llu: progress %llu streams snapshot %llu (ours: %llu) with nothing sent",
              (unsigned long long)r->id, (unsigned long long)p->id,
              (unsigned long long)p->snap_index, (unsigned long long)r->snapshot.index);
    }
    /* (Once compacted, the no-op's term is no longer known, unless it is the snapshot's.) */
    CHECK(r->term_start_index > 0 && r->term_start_index <= last &&
              (r->term_start_index < r->snapshot.index ||
               raft__log_term(r, r->term_start_index) == r->term),
          "node %llu: leader without its term's no-op", (unsigned long long)r->id);
    CHECK(r->uncommitted_bytes <=
              r->config.uncommitted_bytes_max + r->config.entry_bytes_max + RAFT_CONF_ENCODED_MAX,
          "uncommitted bytes over bound");
    /* A leader removed from the configuration steps down once the change commits. */
    CHECK(raft__is_voter(r, r->id) || r->conf_index > r->commit,
          "node %llu: leads though removed by committed entry %llu", (unsigned long long)r->id,
          (unsigned long long)r->conf_index);
    /* One change at a time: a CONFIG entry of this term above commit is the only one there. */
    size_t configs = 0;
    bool own = false;
    for (uint64_t i = TERN_MAX(r->commit, r->snapshot.index) + 1; i <= last; i++) {
        raft_entry e;
        raft__log_get(r, i, &e);
        if (e.type != RAFT_ENTRY_CONFIG) continue;
        configs++;
        own = own || e.term == r->term;
    }
    CHECK(!own || configs == 1, "node %llu: %zu uncommitted CONFIG entries, one of this term",
          (unsigned long long)r->id, configs);
    return 0;
}

/* conf mirrors progress, member by member, and is the latest configuration in the log. */
static int check_conf(const raft *r, char *errmsg, size_t len)
{
    unsigned long long id = (unsigned long long)r->id;
    uint64_t last = raft__log_last_index(r);
    CHECK(r->progress_count == r->conf.count && r->conf.count <= RAFT_MEMBERS_MAX,
          "node %llu: %zu progress entries for %zu members", id, r->progress_count, r->conf.count);
    size_t voters = 0;
    for (size_t k = 0; k < r->conf.count; k++) {
        CHECK(r->progress[k].id == r->conf.members[k].id &&
                  r->progress[k].role == r->conf.members[k].role,
              "node %llu: progress %zu is not member %llu", id, k,
              (unsigned long long)r->conf.members[k].id);
        if (r->conf.members[k].role == RAFT_MEMBER_VOTER) voters++;
    }
    CHECK(voters == r->voters_count && voters <= RAFT_VOTERS_MAX, "node %llu: voter count", id);
    CHECK(r->conf.count == 0 || raft__conf_valid(&r->conf), "node %llu: invalid configuration", id);
    CHECK(r->conf_index <= last, "node %llu: configuration from %llu beyond last index", id,
          (unsigned long long)r->conf_index);
    /* Only the CONFIG entries held in memory are checked (storage reads cost too much here). */
    if (r->conf_index > r->snapshot.index && r->conf_index > r->log.offset)
        CHECK(r->log.entries[r->conf_index - r->log.offset - 1].type == RAFT_ENTRY_CONFIG,
              "node %llu: configuration index %llu is not a CONFIG entry", id,
              (unsigned long long)r->conf_index);
    for (uint64_t i = TERN_MAX(r->conf_index, r->log.offset) + 1; i <= last; i++)
        CHECK(r->log.entries[i - r->log.offset - 1].type != RAFT_ENTRY_CONFIG,
              "node %llu: CONFIG entry %llu above the configuration in force (%llu)", id,
              (unsigned long long)i, (unsigned long long)r->conf_index);
    /* Learners and non-members never campaign. */
    if (r->role == RAFT_PRECANDIDATE || r->role == RAFT_CANDIDATE)
        CHECK(raft__is_voter(r, r->id), "node %llu: %s without being a voter", id,
              raft_role_name(r->role));
    return 0;
}

/* The snapshot, the log window over it, and a received snapshot being installed. */
static int check_snapshot(const raft *r, char *errmsg, size_t len)
{
    unsigned long long id = (unsigned long long)r->id;
    CHECK(r->snapshot.index <= r->log.offset, "node %llu: log offset %llu below snapshot %llu", id,
          (unsigned long long)r->log.offset, (unsigned long long)r->snapshot.index);
    CHECK(r->snapshot.index <= r->commit, "node %llu: snapshot %llu above commit %llu", id,
          (unsigned long long)r->snapshot.index, (unsigned long long)r->commit);
    CHECK(r->snapshot.index == 0 || r->snapshot.term > 0, "node %llu: snapshot without term", id);
    CHECK(r->install_pending || r->snapshot.index <= r->applied,
          "node %llu: applied %llu below snapshot %llu", id, (unsigned long long)r->applied,
          (unsigned long long)r->snapshot.index);
    if (r->install_pending) {
        CHECK(r->chunk_state != RAFT__CHUNK_NONE && r->chunk.done && r->role != RAFT_LEADER &&
                  r->applied < r->snapshot.index && r->log.count == 0,
              "node %llu: inconsistent snapshot install", id);
    }
    return 0;
}

int raft_check_invariants(const raft *r, char *errmsg, size_t len)
{
    uint64_t last = raft__log_last_index(r);
    unsigned long long id = (unsigned long long)r->id;
    CHECK(r->applied <= r->commit, "node %llu: applied %llu > commit %llu", id,
          (unsigned long long)r->applied, (unsigned long long)r->commit);
    CHECK(r->commit <= last, "node %llu: commit %llu > last index %llu", id,
          (unsigned long long)r->commit, (unsigned long long)last);
    CHECK(r->stable <= last, "node %llu: stable %llu > last index %llu", id,
          (unsigned long long)r->stable, (unsigned long long)last);
    CHECK(r->term >= r->term_floor && r->term >= r->handed_hs.term,
          "node %llu: term %llu went below a durable term", id, (unsigned long long)r->term);
    CHECK(raft__log_last_term(r) <= r->term, "node %llu: last log term above current term", id);
    CHECK(r->persisted_seq <= r->handed_seq && r->handed_seq <= r->dirty_seq,
          "node %llu: persist sequence out of order", id);
    CHECK(r->outbox_count <= r->config.messages_max, "outbox over bound");
    CHECK(r->reads_count <= r->config.reads_max, "reads over bound");
    CHECK(r->log.offset <= r->log.storage.last_index || r->log.offset <= r->stable ||
              r->log.offset == r->snapshot.index,
          "node %llu: memory window starts above the stable log", id);
    int rc = check_snapshot(r, errmsg, len);
    if (rc) return rc;
    rc = check_conf(r, errmsg, len);
    if (rc) return rc;
    if (r->role == RAFT_LEADER || r->role == RAFT_CANDIDATE)
        CHECK(r->vote == r->id, "node %llu: %s in term %llu without voting for itself", id,
              raft_role_name(r->role), (unsigned long long)r->term);
    if (r->role == RAFT_LEADER) {
        CHECK(r->leader == r->id, "node %llu: leader does not know itself as leader", id);
        rc = check_progress(r, errmsg, len);
        if (rc) return rc;
    } else {
        CHECK(r->leader != r->id, "node %llu: non-leader names itself leader", id);
        CHECK(r->reads_count == 0, "node %llu: non-leader holds pending reads", id);
    }
    for (uint64_t i = r->log.offset + 2; i <= last; i++)
        CHECK(r->log.entries[i - r->log.offset - 1].term >=
                  r->log.entries[i - r->log.offset - 2].term,
              "node %llu: log terms decrease at %llu", id, (unsigned long long)i);
    return 0;
}
