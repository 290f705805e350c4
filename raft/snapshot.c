/* raft: log compaction and InstallSnapshot (thesis 5.1, Figure 5.3): sending and receiving. */
#include <stdlib.h>
#include <string.h>

#include "raft_internal.h"

/*
 * DESIGN NOTE
 *
 * Compaction. raft_compact records the driver's durable snapshot; entries at
 * or below its index are never read again (raft__log_term answers the
 * snapshot's index with its term), and memory entries at or below it are
 * dropped, so snapshot.index <= log.offset.
 *
 * Sending (leader). A follower whose next index is at or below the
 * snapshot's index enters progress state SNAPSHOT and is sent the snapshot's
 * byte stream, read through raft_storage.snapshot_read, one chunk at a time:
 *
 *   PROBE/REPLICATE --next <= snapshot.index--> SNAPSHOT --done--> PROBE
 *                                                 |  ^
 *        ack(offset): send the chunk at offset    +--+  reject: offset 0;
 *        no answer within a heartbeat interval: send it again;
 *        the leader compacted again: offset 0 of the new snapshot
 *
 * Receiving (follower). A chunk is accepted only at the next expected offset
 * of the stream (index, term, sender) being received, or at offset 0, which
 * starts a new stream; a gap is rejected (the sender restarts at 0), a
 * duplicate is answered with the offset expected. One accepted chunk at a
 * time goes to the driver in update.snapshot_chunk, as part of a persist
 * batch; its acknowledgement is tagged with that batch, so it leaves only
 * once the chunk is durable. Further chunks are ignored (the leader
 * retransmits) until then.
 *
 * Installing. When the done chunk is accepted the core switches at once to the
 * snapshot (Figure 5.3 step 7: the whole log is discarded; the log starts
 * after the snapshot index, commit = that index, the configuration is the
 * snapshot's), with install_pending set: until the chunk's batch is durable
 * (and so the driver installed the snapshot), nothing is applied, AppendEntries
 * and other chunks are ignored and no campaign starts, so that batch carries
 * no entries and nothing is built on a log the driver has not yet replaced.
 * Then applied = the snapshot index and the done answer goes out.
 *
 * Figure 5.3 step 6: a snapshot whose last entry the follower already holds
 * (same index and term), or at or below its commit index, is not installed:
 * the follower commits up to it and answers done. This also makes the
 * discard of step 7 safe against a late AppendEntries acknowledgement of the
 * same term: any entry the follower acknowledged in this term matches the
 * leader's log, so if one lay above the snapshot index the follower would
 * hold the snapshot's last entry and keep its log.
 */

int raft_compact(raft *r, const raft_snapshot_meta *meta)
{
    RAFT_ASSERT(!r->update_out);
    if (!meta || meta->index <= r->snapshot.index || meta->index > r->applied ||
        !r->log.storage.snapshot_read || !raft__conf_valid(&meta->conf))
        return TERN_EINVAL;
    if (raft__log_term(r, meta->index) != meta->term) return TERN_EINVAL;
    r->snapshot = *meta;
    /* Applied entries are durable (applied <= stable): nothing here is lost. */
    if (meta->index > r->log.offset) raft__log_trim(r, meta->index);
    RAFT_ASSERT(r->log.offset >= r->snapshot.index);
    return 0;
}

/* ---------------- sending ---------------- */

void raft__send_snapshot(raft *r, raft__progress *p)
{
    RAFT_ASSERT(r->role == RAFT_LEADER && p->id != r->id && r->snapshot.index > 0);
    if (p->state != RAFT__SNAPSHOT || p->snap_index != r->snapshot.index) {
        /* A new stream, or the leader compacted again: offset 0 of the latest snapshot. */
        p->state = RAFT__SNAPSHOT;
        p->snap_index = r->snapshot.index;
        p->snap_offset = 0;
        p->probe_sent = false;
        p->inflight_start = p->inflight_count = p->inflight_bytes = 0;
    }
    /* Outstanding from now on: an error below is retried by the retransmission timer. */
    p->snap_sent = true;
    p->snap_elapsed = 0;
    size_t len = r->config.snapshot_chunk_bytes;
    void *buf = malloc(len);
    if (!buf) return;
    long n =
        r->log.storage.snapshot_read(r->log.storage.ctx, p->snap_index, p->snap_offset, buf, len);
    if (n < 0) {
        free(buf);
        return;
    }
    RAFT_ASSERT((size_t)n <= len);
    uint8_t conf[RAFT_CONF_ENCODED_MAX];
    raft_message m = {
        .type = RAFT_MSG_SNAPSHOT,
        .to = p->id,
        .term = r->term,
        .last_index = r->snapshot.index,
        .last_term = r->snapshot.term,
        .offset = p->snap_offset,
        .data = buf,
        .data_len = (size_t)n,
        .conf = conf,
        .conf_len = raft_conf_encode(&r->snapshot.conf, conf),
        .done = (size_t)n < len, /* a short read ends the stream (raft_storage) */
    };
    raft__send(r, &m);
    free(buf);
}

void raft__tick_snapshots(raft *r, uint32_t elapsed_ms)
{
    for (size_t k = 0; k < r->progress_count; k++) {
        raft__progress *p = &r->progress[k];
        if (p->state != RAFT__SNAPSHOT || p->id == r->id) continue;
        p->snap_elapsed += elapsed_ms;
        if (p->snap_elapsed >= r->config.heartbeat_interval_ms) raft__send_snapshot(r, p);
    }
}

void raft__recv_snapshot_response(raft *r, const raft_message *m)
{
    if (r->role != RAFT_LEADER) return;
    raft__progress *p = raft__progress_of(r, m->from);
    if (!p || p->id == r->id) return;
    p->recent_active = true;
    if (m->done) {
        /* Its log now starts after last_index (or already held it): match it there. Only this
         * term's leader (us) sent it, so last_index is in our log. */
        uint64_t match = TERN_MIN(m->last_index, raft__log_last_index(r));
        if (match > p->match) p->match = match;
        if (p->state == RAFT__SNAPSHOT) {
            p->state = RAFT__PROBE;
            p->probe_sent = false;
            p->next = p->match + 1;
        }
        if (p->next <= p->match) p->next = p->match + 1;
        if (raft__maybe_commit(r)) raft__commit_advanced(r);
        if (r->role != RAFT_LEADER) return;
        if (r->transfer_target == p->id && p->match == raft__log_last_index(r)) {
            raft_message t = {.type = RAFT_MSG_TIMEOUT_NOW, .to = p->id, .term = r->term};
            raft__send(r, &t);
        }
        raft__send_append(r, p, true);
        return;
    }
    if (p->state != RAFT__SNAPSHOT || m->last_index != p->snap_index) return; /* stale */
    if (m->reject)
        p->snap_offset = 0;
    else if (m->offset > p->snap_offset)
        p->snap_offset = m->offset;
    else
        return; /* a duplicate or an old answer: the outstanding chunk still stands */
    raft__send_snapshot(r, p);
}

/* ---------------- receiving ---------------- */

static void respond(raft *r, const raft_message *m, uint64_t offset, bool reject, bool done)
{
    raft_message resp = {.type = RAFT_MSG_SNAPSHOT_RESPONSE,
                         .to = m->from,
                         .term = r->term,
                         .last_index = m->last_index,
                         .index = done ? m->last_index : 0,
                         .offset = offset,
                         .reject = reject,
                         .done = done};
    raft__send(r, &resp);
}

/* Figure 5.3 step 7: discard the whole log; the snapshot is the new start. The driver installs
 * it with the chunk's persist batch (raft__snapshot_persisted). */
static void install_begin(raft *r)
{
    const raft_snapshot_meta *meta = &r->recv_meta;
    RAFT_ASSERT(meta->index > r->commit && r->role == RAFT_FOLLOWER);
    for (size_t k = 0; k < r->log.count; k++)
        free((void *)r->log.entries[k].data);
    r->log.count = 0;
    r->log.offset = meta->index;
    r->snapshot = *meta;
    r->commit = meta->index;
    r->persist_from = meta->index + 1;
    r->stable = TERN_MIN(r->stable, meta->index);
    r->handed_last = meta->index;
    r->install_pending = true;
    raft__conf_set(r, &meta->conf, meta->index);
}

void raft__recv_snapshot(raft *r, const raft_message *m)
{
    RAFT_ASSERT(m->term == r->term);
    raft__become_follower(r, r->term, m->from);
    /* One chunk at a time: until it is durable, the sender's retransmission covers the rest. */
    if (r->chunk_state != RAFT__CHUNK_NONE || r->install_pending) return;
    uint64_t last = raft__log_last_index(r);
    if (m->last_index <= r->commit ||
        (m->last_index <= last && raft__log_term(r, m->last_index) == m->last_term)) {
        /* Figure 5.3 step 6: nothing to install. The answer is tagged with the current persist
         * sequence, so it waits until the entries up to last_index are durable. */
        if (m->last_index > r->commit) r->commit = m->last_index;
        respond(r, m, 0, false, true);
        return;
    }
    bool same = r->recv_active && r->recv_from == m->from && r->recv_meta.index == m->last_index &&
                r->recv_meta.term == m->last_term;
    if (m->offset == 0) {
        raft_snapshot_meta meta = {.index = m->last_index, .term = m->last_term};
        if (raft_conf_decode(m->conf, m->conf_len, &meta.conf) != 0) return; /* checked */
        r->recv_meta = meta;
        r->recv_from = m->from;
        r->recv_offset = 0;
        r->recv_active = true;
    } else if (!same || m->offset > r->recv_offset) {
        r->recv_active = false; /* a gap, or a stream we do not have: start again */
        respond(r, m, 0, true, false);
        return;
    } else if (m->offset < r->recv_offset) {
        respond(r, m, r->recv_offset, false, false); /* a duplicate */
        return;
    }
    void *data = NULL;
    if (m->data_len > 0) {
        data = malloc(m->data_len);
        if (!data) return; /* as if lost */
        memcpy(data, m->data, m->data_len);
    }
    r->chunk_data = data;
    r->chunk = (raft_snapshot_chunk){.meta = &r->recv_meta,
                                     .offset = m->offset,
                                     .data = data,
                                     .len = m->data_len,
                                     .done = m->done};
    r->chunk_state = RAFT__CHUNK_ACCEPTED;
    r->recv_offset += m->data_len;
    raft__mark_dirty(r); /* the chunk belongs to the next persist batch */
    if (m->done)
        install_begin(r); /* answered once installed */
    else
        respond(r, m, r->recv_offset, false, false);
}

void raft__snapshot_persisted(raft *r)
{
    if (r->chunk_state != RAFT__CHUNK_HANDED || r->persisted_seq < r->chunk_seq) return;
    free(r->chunk_data);
    r->chunk_data = NULL;
    r->chunk_state = RAFT__CHUNK_NONE;
    if (!r->chunk.done) return;
    /* The driver installed the snapshot: its state machine is at the snapshot index now. */
    RAFT_ASSERT(r->install_pending && r->applied < r->snapshot.index);
    r->install_pending = false;
    r->recv_active = false;
    r->applied = r->snapshot.index;
    r->stable = TERN_MAX(r->stable, r->snapshot.index);
    raft_message m = {.from = r->recv_from, .last_index = r->snapshot.index};
    respond(r, &m, r->recv_offset, false, true);
}

void raft__snapshot_free(raft *r)
{
    free(r->chunk_data);
    r->chunk_data = NULL;
    r->chunk_state = RAFT__CHUNK_NONE;
}
