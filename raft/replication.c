/* raft: log replication: proposals, AppendEntries, flow control, commit, check-quorum. */
#include <stdlib.h>
#include <string.h>

#include "raft_internal.h"

static void progress_reset(raft *r, raft__progress *p)
{
    p->match = 0;
    p->next = raft__log_last_index(r) + 1;
    p->state = RAFT__PROBE;
    p->probe_sent = false;
    p->recent_active = true;
    p->read_ack = 0;
    p->inflight_start = p->inflight_count = p->inflight_bytes = 0;
    p->snap_index = p->snap_offset = 0;
    p->snap_sent = false;
    p->snap_elapsed = 0;
}

/*
 * Thesis 3.4 / 6.4: a new leader appends a no-op entry of its term at once,
 * because it may only count replicas of current-term entries to commit
 * (Figure 3.7) and ReadIndex needs a committed entry of its term.
 */
void raft__become_leader(raft *r)
{
    RAFT_ASSERT(r->role == RAFT_CANDIDATE && r->vote == r->id);
    r->role = RAFT_LEADER;
    r->leader = r->id;
    r->heartbeat_elapsed = 0;
    r->election_elapsed = 0;
    r->transfer_target = 0;
    r->uncommitted_bytes = 0;
    r->read_round = 0;
    for (size_t k = 0; k < r->progress_count; k++)
        progress_reset(r, &r->progress[k]);
    raft_entry noop = {
        .index = raft__log_last_index(r) + 1, .term = r->term, .type = RAFT_ENTRY_NOOP};
    /* Without memory for the no-op we cannot lead: stand down, someone else will try. */
    if (raft__log_append(r, &noop) != 0) {
        raft__become_follower(r, r->term, 0);
        return;
    }
    r->term_start_index = noop.index;
    raft__progress *self = raft__voter_of(r, r->id); /* only voters campaign */
    RAFT_ASSERT(self);
    self->match = r->stable;
    self->next = raft__log_last_index(r) + 1;
    raft__broadcast_append(r);
}

int raft_propose(raft *r, const void *data, size_t len, uint64_t *index)
{
    RAFT_ASSERT(!r->update_out);
    if (r->role != RAFT_LEADER) return TERN_EPRECOND;
    if (r->transfer_target != 0) return TERN_EAGAIN;
    if (len > r->config.entry_bytes_max) return TERN_ETOOBIG;
    if (len > 0 && !data) return TERN_EINVAL;
    /* A bound on uncommitted growth; one entry is always admitted into an empty budget. */
    if (r->uncommitted_bytes > 0 && r->uncommitted_bytes + len > r->config.uncommitted_bytes_max)
        return TERN_EAGAIN;
    raft_entry e = {.index = raft__log_last_index(r) + 1,
                    .term = r->term,
                    .type = RAFT_ENTRY_NORMAL,
                    .data = data,
                    .len = len};
    int rc = raft__log_append(r, &e);
    if (rc) return rc;
    r->uncommitted_bytes += len;
    if (index) *index = e.index;
    raft__progress *self = raft__progress_of(r, r->id); /* NULL once it removed itself */
    if (self) self->next = e.index + 1;
    raft__broadcast_append(r);
    return 0;
}

static bool progress_paused(const raft *r, const raft__progress *p)
{
    if (p->state == RAFT__SNAPSHOT) return true; /* stop-and-wait chunks (snapshot.c) */
    if (p->state == RAFT__PROBE) return p->probe_sent;
    return p->inflight_count >= r->config.inflight_msgs_max ||
           p->inflight_bytes >= r->config.inflight_bytes_max;
}

static void inflight_add(raft *r, raft__progress *p, uint64_t last_index, size_t bytes)
{
    RAFT_ASSERT(p->inflight_count < r->config.inflight_msgs_max);
    size_t slot = (p->inflight_start + p->inflight_count) % r->config.inflight_msgs_max;
    p->inflight[slot] = (raft__inflight){last_index, bytes};
    p->inflight_count++;
    p->inflight_bytes += bytes;
}

static void inflight_free_first(raft *r, raft__progress *p)
{
    RAFT_ASSERT(p->inflight_count > 0);
    p->inflight_bytes -= p->inflight[p->inflight_start].bytes;
    p->inflight_start = (p->inflight_start + 1) % r->config.inflight_msgs_max;
    p->inflight_count--;
}

static void inflight_free_to(raft *r, raft__progress *p, uint64_t index)
{
    while (p->inflight_count > 0 && p->inflight[p->inflight_start].last_index <= index) {
        p->inflight_bytes -= p->inflight[p->inflight_start].bytes;
        p->inflight_start = (p->inflight_start + 1) % r->config.inflight_msgs_max;
        p->inflight_count--;
    }
}

/*
 * Sends one AppendEntries (Figure 3.1) to p from p->next, batching entries up
 * to append_bytes_max. In PROBE one message is outstanding at a time; in
 * REPLICATE next advances optimistically (pipelining) within the in-flight
 * bounds. allow_empty sends a probe even with nothing new (to learn the match).
 */
void raft__send_append(raft *r, raft__progress *p, bool allow_empty)
{
    if (p->id == r->id || progress_paused(r, p)) return;
    if (p->next <= r->snapshot.index) {
        /* The entries it needs are compacted away: it gets the snapshot (thesis 5.1). */
        raft__send_snapshot(r, p);
        return;
    }
    uint64_t last = raft__log_last_index(r);
    if (p->next > last && !allow_empty) return;
    raft_entry batch[RAFT__APPEND_ENTRIES_MAX];
    size_t count = 0, bytes = 0;
    /* Entries read from storage are valid only until the next storage call: their data is
     * gathered into scratch (offsets first, pointers fixed once scratch stops moving). */
    char *scratch = NULL;
    size_t scratch_used = 0, scratch_offset[RAFT__APPEND_ENTRIES_MAX];
    bool from_storage[RAFT__APPEND_ENTRIES_MAX];
    for (uint64_t i = p->next; i <= last && count < TERN_ARRAY_LEN(batch); i++) {
        raft_entry e;
        raft__log_get(r, i, &e);
        if (count > 0 && bytes + e.len > r->config.append_bytes_max) break;
        from_storage[count] = i <= r->log.offset;
        if (from_storage[count] && e.len > 0) {
            char *grown = realloc(scratch, scratch_used + e.len);
            if (!grown) break;
            scratch = grown;
            memcpy(scratch + scratch_used, e.data, e.len);
            scratch_offset[count] = scratch_used;
            scratch_used += e.len;
        }
        batch[count++] = e;
        bytes += e.len;
    }
    for (size_t k = 0; k < count; k++)
        if (from_storage[k]) batch[k].data = batch[k].len ? scratch + scratch_offset[k] : NULL;
    raft_message m = {
        .type = RAFT_MSG_APPEND,
        .to = p->id,
        .term = r->term,
        .prev_index = p->next - 1,
        .prev_term = raft__log_term(r, p->next - 1),
        .commit = r->commit,
        .entries = batch,
        .entries_count = count,
    };
    raft__send(r, &m);
    free(scratch);
    if (p->state == RAFT__PROBE) {
        p->probe_sent = true;
    } else if (count > 0) {
        p->next = batch[count - 1].index + 1;
        inflight_add(r, p, batch[count - 1].index, bytes);
    }
}

void raft__broadcast_append(raft *r)
{
    for (size_t k = 0; k < r->progress_count; k++) {
        raft__progress *p = &r->progress[k];
        if (p->id == r->id) continue;
        /* Send while the pipeline has room and there is something to send. */
        do {
            uint64_t next = p->next;
            raft__send_append(r, p, false);
            if (p->state != RAFT__REPLICATE || p->next == next) break;
        } while (p->next <= raft__log_last_index(r));
    }
}

void raft__broadcast_heartbeat(raft *r, uint64_t context)
{
    for (size_t k = 0; k < r->progress_count; k++) {
        raft__progress *p = &r->progress[k];
        if (p->id == r->id) continue;
        raft_message m = {.type = RAFT_MSG_HEARTBEAT,
                          .to = p->id,
                          .term = r->term,
                          .commit = TERN_MIN(p->match, r->commit),
                          .context = context};
        raft__send(r, &m);
    }
}

void raft__commit_advanced(raft *r)
{
    raft__broadcast_append(r);
    uint64_t last = raft__log_last_index(r);
    for (size_t k = 0; k < r->progress_count; k++) {
        raft__progress *p = &r->progress[k];
        uint64_t commit = TERN_MIN(p->match, r->commit);
        if (p->id == r->id || p->next <= last || commit <= p->commit_sent) continue;
        p->commit_sent = commit;
        raft_message m = {
            .type = RAFT_MSG_HEARTBEAT, .to = p->id, .term = r->term, .commit = commit};
        raft__send(r, &m);
    }
}

/* Thesis 6.2 check-quorum: a leader that has not heard from a majority of voters steps down. */
static void check_quorum(raft *r)
{
    size_t active = 0;
    for (size_t k = 0; k < r->progress_count; k++) {
        raft__progress *p = &r->progress[k];
        if (p->role == RAFT_MEMBER_VOTER && (p->id == r->id || p->recent_active)) active++;
        if (p->id != r->id) p->recent_active = false;
    }
    if (active < raft__quorum(r)) raft__become_follower(r, r->term, 0);
}

void raft__tick_leader(raft *r, uint32_t elapsed_ms)
{
    r->heartbeat_elapsed += elapsed_ms;
    r->election_elapsed += elapsed_ms;
    if (r->transfer_target != 0) {
        r->transfer_elapsed += elapsed_ms;
        if (r->transfer_elapsed >= r->config.election_timeout_ms) r->transfer_target = 0;
    }
    if (r->election_elapsed >= r->config.election_timeout_ms) {
        r->election_elapsed = 0;
        if (r->config.check_quorum) {
            check_quorum(r);
            if (r->role != RAFT_LEADER) return;
        }
    }
    if (r->heartbeat_elapsed >= r->config.heartbeat_interval_ms) {
        r->heartbeat_elapsed = 0;
        raft__broadcast_heartbeat(r, 0);
    }
    raft__tick_snapshots(r, elapsed_ms);
}

/* Counts the leader's own replica only once its entries are durable. */
void raft__leader_persisted(raft *r)
{
    raft__progress *self = raft__progress_of(r, r->id);
    if (self) self->match = TERN_MAX(self->match, r->stable);
    if (raft__maybe_commit(r)) raft__commit_advanced(r);
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0; /* descending */
}

/*
 * Figure 3.1 "Rules for Servers: Leaders" and section 3.6.2 (Figure 3.7):
 * commit N if a majority has matchIndex >= N and log[N].term == currentTerm.
 * Entries of earlier terms commit only indirectly, by a current-term entry.
 * Only voters of the configuration in force count (thesis 4.1), the leader
 * itself only while it is one of them (thesis 4.2.2).
 */
bool raft__maybe_commit(raft *r)
{
    uint64_t matches[RAFT_VOTERS_MAX];
    size_t voters = 0;
    for (size_t k = 0; k < r->progress_count; k++)
        if (r->progress[k].role == RAFT_MEMBER_VOTER) matches[voters++] = r->progress[k].match;
    RAFT_ASSERT(voters == r->voters_count && voters > 0);
    qsort(matches, voters, sizeof(matches[0]), compare_u64);
    uint64_t n = matches[raft__quorum(r) - 1];
    if (n <= r->commit || raft__log_term(r, n) != r->term) return false;
    for (uint64_t i = r->commit + 1; i <= n; i++) {
        if (i < r->term_start_index) continue;
        raft_entry e;
        raft__log_get(r, i, &e);
        r->uncommitted_bytes -= TERN_MIN(r->uncommitted_bytes, e.len);
    }
    r->commit = n;
    if (raft__maybe_step_down_removed(r)) return false;
    raft__reads_on_commit(r);
    return true;
}

/* The first index of the term of the entry at index (thesis 5.3 fast backtracking hint). */
static uint64_t first_index_of_term(const raft *r, uint64_t index)
{
    uint64_t term = raft__log_term(r, index);
    while (index > r->commit + 1 && index - 1 > r->snapshot.index &&
           raft__log_term(r, index - 1) == term)
        index--;
    return index;
}

/*
 * Figure 3.1 "AppendEntries RPC, receiver implementation": reject if the log
 * has no entry at prev_index with prev_term (with the conflict hints of
 * thesis 5.3); delete a conflicting suffix; append what is new; advance
 * commit to min(leaderCommit, index of last new entry).
 */
void raft__recv_append(raft *r, const raft_message *m)
{
    RAFT_ASSERT(m->term == r->term);
    raft__become_follower(r, r->term, m->from);
    /* Nothing is built on a log the driver is replacing by a snapshot: as if lost. */
    if (r->install_pending) return;
    raft_message resp = {.type = RAFT_MSG_APPEND_RESPONSE, .to = m->from, .term = r->term};
    uint64_t last = raft__log_last_index(r);
    if (m->prev_index < r->commit) {
        /* Already committed here: tell the leader where we are. */
        resp.index = r->commit;
        raft__send(r, &resp);
        return;
    }
    if (m->prev_index > last || raft__log_term(r, m->prev_index) != m->prev_term) {
        resp.reject = true;
        resp.index = m->prev_index;
        if (m->prev_index > last) {
            resp.hint_index = last + 1;
            resp.hint_term = 0;
        } else {
            resp.hint_term = raft__log_term(r, m->prev_index);
            resp.hint_index = first_index_of_term(r, m->prev_index);
        }
        raft__send(r, &resp);
        return;
    }
    for (size_t k = 0; k < m->entries_count; k++) {
        const raft_entry *e = &m->entries[k];
        RAFT_ASSERT(e->index == m->prev_index + 1 + k);
        if (e->index <= raft__log_last_index(r)) {
            if (raft__log_term(r, e->index) == e->term) continue;
            raft__log_truncate(r, e->index);
        }
        if (raft__log_append(r, e) != 0) return; /* out of memory: as if the message was lost */
    }
    uint64_t last_new = m->prev_index + m->entries_count;
    if (m->commit > r->commit) r->commit = TERN_MIN(m->commit, last_new);
    resp.index = last_new;
    raft__send(r, &resp);
}

/* Where to probe next after a rejection, from the follower's hints (thesis 5.3). */
static uint64_t backtrack(const raft *r, const raft_message *m)
{
    if (m->hint_term == 0) return m->hint_index;
    /* If we have entries of the conflicting term, the follower may match up to our last one. */
    uint64_t i = TERN_MIN(m->index, raft__log_last_index(r));
    /* A rejection of a probe sent before we compacted: the snapshot will be needed. */
    if (i < r->snapshot.index) return m->hint_index;
    while (i > r->snapshot.index && raft__log_term(r, i) > m->hint_term)
        i--;
    if (i > 0 && raft__log_term(r, i) == m->hint_term) return i + 1;
    return m->hint_index;
}

/* The leader's side of AppendEntries: Figure 3.1 "if successful update nextIndex and
 * matchIndex; if it fails because of log inconsistency, decrement nextIndex and retry". */
void raft__recv_append_response(raft *r, const raft_message *m)
{
    if (r->role != RAFT_LEADER) return;
    raft__progress *p = raft__progress_of(r, m->from);
    if (!p || p->id == r->id) return; /* not a member (any more) */
    p->recent_active = true;
    if (p->state == RAFT__SNAPSHOT) {
        /* Acknowledgements from before the snapshot started are real: keep the match, and
         * stop streaming once it covers the snapshot. Rejections are stale. */
        if (m->reject || m->index <= p->match) return;
        p->match = m->index;
        if (p->next <= p->match) p->next = p->match + 1;
        if (raft__maybe_commit(r)) raft__commit_advanced(r);
        if (r->role != RAFT_LEADER || p->next <= r->snapshot.index) return;
        p->state = RAFT__PROBE;
        p->probe_sent = false;
        raft__send_append(r, p, true);
        return;
    }
    if (m->reject) {
        /* Stale: the rejected point is already matched, or not the probe outstanding. */
        if (m->index <= p->match) return;
        if (p->state == RAFT__PROBE && m->index != p->next - 1) return;
        uint64_t next = TERN_MAX(p->match + 1, TERN_MIN(backtrack(r, m), m->index));
        p->next = next;
        p->state = RAFT__PROBE;
        p->probe_sent = false;
        p->inflight_start = p->inflight_count = p->inflight_bytes = 0;
        raft__send_append(r, p, true);
        return;
    }
    if (m->index > p->match) {
        p->match = m->index;
        if (p->next <= m->index) p->next = m->index + 1;
        if (p->state == RAFT__PROBE) {
            p->state = RAFT__REPLICATE;
            p->probe_sent = false;
        }
        inflight_free_to(r, p, m->index);
        if (raft__maybe_commit(r)) raft__commit_advanced(r);
        if (r->role != RAFT_LEADER) return; /* removed, and the change just committed */
        if (r->transfer_target == p->id && p->match == raft__log_last_index(r)) {
            raft_message t = {.type = RAFT_MSG_TIMEOUT_NOW, .to = p->id, .term = r->term};
            raft__send(r, &t);
        }
    } else if (p->state == RAFT__PROBE) {
        p->probe_sent = false;
    }
    /* Keep the pipeline full. */
    do {
        uint64_t next = p->next;
        raft__send_append(r, p, false);
        if (p->next == next) break;
    } while (p->state == RAFT__REPLICATE && p->next <= raft__log_last_index(r));
}

/* Heartbeats carry commit = min(match, commit), which is safe for a follower to adopt. */
void raft__recv_heartbeat(raft *r, const raft_message *m)
{
    raft__become_follower(r, r->term, m->from);
    if (m->commit > r->commit) r->commit = TERN_MIN(m->commit, raft__log_last_index(r));
    raft_message resp = {
        .type = RAFT_MSG_HEARTBEAT_RESPONSE, .to = m->from, .term = r->term, .context = m->context};
    raft__send(r, &resp);
}

void raft__recv_heartbeat_response(raft *r, const raft_message *m)
{
    if (r->role != RAFT_LEADER) return;
    raft__progress *p = raft__progress_of(r, m->from);
    if (!p || p->id == r->id) return;
    p->recent_active = true;
    if (m->context > p->read_ack) {
        p->read_ack = m->context;
        raft__reads_on_ack(r);
    }
    /*
     * A follower that answers but lags may have lost AppendEntries: let a probe
     * go again, make room in a full pipeline, and send from next even if empty,
     * so a gap is answered by a rejection that starts the repair (as etcd does).
     */
    if (p->match < raft__log_last_index(r)) {
        if (p->state == RAFT__PROBE) p->probe_sent = false;
        /* Paused by count or by bytes: either way lost appends would pin it forever. */
        if (p->inflight_count > 0 && progress_paused(r, p)) inflight_free_first(r, p);
        raft__send_append(r, p, true);
    }
}
