/* sim: a fake disk per node: volatile until a sync, torn by a crash; snapshots and compaction. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/*
 * The disk keeps two states: current (what the node reads back) and durable
 * (what a crash leaves). Writes change current at once and are queued as ops;
 * a sync replays the queued ops onto durable, in order. A crash rebuilds
 * current from durable plus a random prefix of the ops: a real log appends
 * records in order and a torn last record is detected by its checksum and cut
 * at restart, so what survives is always a prefix. Hard state is written after
 * the entries of its batch, so a surviving commit never names a lost entry.
 *
 * Snapshots. The driver's own snapshot (sim_disk_snapshot) is written durably
 * at once, as a real driver writes and fsyncs it before raft_compact; after
 * raft_compact the log up to its index is deleted from both states
 * (sim_disk_drop_log): a storage read at or below the snapshot index fails
 * the run. A received snapshot arrives in chunks
 * kept in a volatile buffer (the core restarts a stream after a crash); the
 * done chunk queues an INSTALL op with the whole stream, which replaces the
 * snapshot and discards the log, in order with the other writes.
 */

static void *grow(void *array, size_t *capacity, size_t need, size_t item)
{
    if (need <= *capacity) return array;
    size_t next = *capacity ? *capacity * 2 : 64;
    while (next < need)
        next *= 2;
    void *grown = realloc(array, next * item);
    assert(grown);
    *capacity = next;
    return grown;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 31);
}

uint64_t sim_log_last(const sim_log *log)
{
    return log->first - 1 + log->count;
}

const sim_entry *sim_log_at(const sim_log *log, uint64_t index)
{
    if (index < log->first || index > sim_log_last(log)) return NULL;
    return &log->entries[index - log->first];
}

static uint64_t chain_of(const sim_log *log, const sim_entry *s)
{
    uint64_t h = log->count > 0 ? log->entries[log->count - 1].chain : log->base_chain;
    h = mix(h, s->e.index);
    h = mix(h, s->e.term);
    h = mix(h, (uint64_t)s->e.type);
    for (size_t k = 0; k < s->e.len; k++)
        h = mix(h, s->bytes[k]);
    return h;
}

static void log_truncate(sim_log *log, uint64_t index)
{
    if (index < log->first)
        log->count = 0; /* only a lying disk gets here (its acknowledged writes vanished) */
    else if (index <= sim_log_last(log))
        log->count = (size_t)(index - log->first);
}

static void log_append(sim_log *log, const sim_entry *s)
{
    if (s->e.index < log->first) return; /* compacted meanwhile (only with a lying disk) */
    assert(s->e.index == sim_log_last(log) + 1);
    log->entries = grow(log->entries, &log->capacity, log->count + 1, sizeof(sim_entry));
    sim_entry *slot = &log->entries[log->count];
    *slot = *s;
    slot->e.data = NULL; /* readers take bytes: the array moves as it grows */
    slot->chain = chain_of(log, slot);
    log->count++;
}

/* Deletes the entries at or below index; the log then starts after it. */
static void log_drop_to(sim_log *log, uint64_t index, uint64_t chain)
{
    if (index < log->first) return;
    size_t drop = (size_t)TERN_MIN(index - log->first + 1, (uint64_t)log->count);
    memmove(log->entries, log->entries + drop, (log->count - drop) * sizeof(sim_entry));
    log->count -= drop;
    if (log->count == 0 || log->entries[0].e.index != index + 1) log->count = 0;
    log->first = index + 1;
    log->base_chain = chain;
}

static void snapshot_copy(sim_snapshot *to, const sim_snapshot *from)
{
    free(to->bytes);
    *to = *from;
    to->bytes = NULL;
    if (from->len) {
        to->bytes = malloc(from->len);
        assert(to->bytes);
        memcpy(to->bytes, from->bytes, from->len);
    }
}

static uint64_t snapshot_chain(const sim_snapshot *snap)
{
    sim_snap_header h;
    assert(snap->len >= sizeof(h));
    memcpy(&h, snap->bytes, sizeof(h));
    return h.chain;
}

static void op_apply(sim_log *log, raft_hard_state *hs, sim_snapshot *snap, const sim_disk_op *op)
{
    switch (op->kind) {
    case SIM_OP_TRUNCATE:
        log_truncate(log, op->index);
        break;
    case SIM_OP_APPEND:
        log_append(log, &op->entry);
        break;
    case SIM_OP_HARD_STATE:
        *hs = op->hs;
        break;
    case SIM_OP_INSTALL:
        snapshot_copy(snap, &op->snap);
        log->count = 0; /* Figure 5.3 step 7: the whole log goes */
        log->first = op->snap.meta.index + 1;
        log->base_chain = snapshot_chain(&op->snap);
        break;
    }
}

static void op_free(sim_disk_op *op)
{
    if (op->kind == SIM_OP_INSTALL) free(op->snap.bytes);
    op->snap.bytes = NULL;
}

static void op_push(sim_disk *d, const sim_disk_op *op)
{
    d->ops = grow(d->ops, &d->ops_capacity, d->ops_count + 1, sizeof(sim_disk_op));
    d->ops[d->ops_count++] = *op;
    op_apply(&d->current, &d->current_hs, &d->current_snap, op);
}

void sim_disk_init(sim_disk *d, const struct sim *owner, uint64_t node_id)
{
    memset(d, 0, sizeof(*d));
    d->owner = owner;
    d->node_id = node_id;
    d->current.first = d->durable.first = 1;
}

void sim_disk_free(sim_disk *d)
{
    free(d->current.entries);
    free(d->durable.entries);
    for (size_t k = 0; k < d->ops_count; k++)
        op_free(&d->ops[k]);
    free(d->ops);
    free(d->current_snap.bytes);
    free(d->durable_snap.bytes);
    free(d->recv);
    memset(d, 0, sizeof(*d));
}

/* ---------------- snapshot streams ---------------- */

#define SIM_SNAP_MAGIC 0x534e4150534e4150ull

static uint8_t filler_byte(const sim_snap_header *h, size_t k)
{
    return (uint8_t)(mix(h->chain ^ h->index, k) >> 17);
}

void sim_snapshot_build(sim_snapshot *out, const raft_snapshot_meta *meta, const sim_snap_header *h)
{
    memset(out, 0, sizeof(*out));
    out->meta = *meta;
    out->len = sizeof(*h) + h->filler_len;
    out->bytes = malloc(out->len);
    assert(out->bytes);
    memcpy(out->bytes, h, sizeof(*h));
    for (size_t k = 0; k < h->filler_len; k++)
        out->bytes[sizeof(*h) + k] = filler_byte(h, k);
}

int sim_snapshot_parse(const sim_snapshot *snap, sim_snap_header *h, char *why, size_t why_len)
{
    if (snap->len < sizeof(*h)) return tern_errmsg(why, why_len, "stream too short"), -1;
    memcpy(h, snap->bytes, sizeof(*h));
    if (h->magic != SIM_SNAP_MAGIC || snap->len != sizeof(*h) + h->filler_len)
        return tern_errmsg(why, why_len, "bad header or length %zu", snap->len), -1;
    if (h->index != snap->meta.index || h->term != snap->meta.term)
        return tern_errmsg(why, why_len, "stream of index %llu term %llu, meta %llu term %llu",
                           (unsigned long long)h->index, (unsigned long long)h->term,
                           (unsigned long long)snap->meta.index,
                           (unsigned long long)snap->meta.term),
               -1;
    for (size_t k = 0; k < h->filler_len; k++)
        if (snap->bytes[sizeof(*h) + k] != filler_byte(h, k))
            return tern_errmsg(why, why_len, "stream corrupt at byte %zu", sizeof(*h) + k), -1;
    return 0;
}

void sim_disk_snapshot(sim_disk *d, const raft_snapshot_meta *meta, const sim_snap_header *h,
                       bool stale)
{
    sim_snap_header header = *h;
    header.magic = SIM_SNAP_MAGIC;
    if (stale && d->current_snap.meta.index > 0) {
        /* --break snapshot-index: the new snapshot claims its index but holds the state of
         * the previous one. */
        sim_snap_header old;
        memcpy(&old, d->current_snap.bytes, sizeof(old));
        memcpy(header.kv, old.kv, sizeof(header.kv));
    }
    sim_snapshot snap;
    sim_snapshot_build(&snap, meta, &header);
    snapshot_copy(&d->durable_snap, &snap);
    free(d->current_snap.bytes);
    d->current_snap = snap;
}

void sim_disk_drop_log(sim_disk *d)
{
    uint64_t index = d->current_snap.meta.index;
    uint64_t chain = snapshot_chain(&d->current_snap);
    log_drop_to(&d->current, index, chain);
    log_drop_to(&d->durable, index, chain);
}

/* Writes a received chunk; the done one queues the install. Returns true if it installed. */
static bool write_chunk(sim_disk *d, const raft_snapshot_chunk *c)
{
    if (c->offset == 0) d->recv_len = 0;
    if (c->offset != d->recv_len)
        sim_fail(d->owner, "snapshot stream", "node %llu: chunk at %llu, %zu bytes received",
                 (unsigned long long)d->node_id, (unsigned long long)c->offset, d->recv_len);
    d->recv = realloc(d->recv, d->recv_len + c->len + 1);
    assert(d->recv);
    if (c->len) memcpy(d->recv + d->recv_len, c->data, c->len);
    d->recv_len += c->len;
    if (!c->done) return false;
    sim_disk_op op = {.kind = SIM_OP_INSTALL};
    op.snap.meta = *c->meta;
    op.snap.bytes = d->recv;
    op.snap.len = d->recv_len;
    d->recv = NULL;
    d->recv_len = 0;
    char why[160];
    sim_snap_header h;
    if (sim_snapshot_parse(&op.snap, &h, why, sizeof(why)) != 0)
        sim_fail(d->owner, "snapshot stream", "node %llu installs snapshot %llu: %s",
                 (unsigned long long)d->node_id, (unsigned long long)c->meta->index, why);
    op_push(d, &op);
    return true;
}

bool sim_disk_write(sim_disk *d, const raft_update *u)
{
    bool installed = u->snapshot_chunk && write_chunk(d, u->snapshot_chunk);
    if (u->entries_count > 0) {
        sim_disk_op op = {.kind = SIM_OP_TRUNCATE, .index = u->entries[0].index};
        op_push(d, &op);
    }
    for (size_t k = 0; k < u->entries_count; k++) {
        sim_disk_op op = {.kind = SIM_OP_APPEND};
        assert(u->entries[k].len <= SIM_ENTRY_BYTES_MAX);
        op.entry.e = u->entries[k];
        if (op.entry.e.len) memcpy(op.entry.bytes, u->entries[k].data, op.entry.e.len);
        op_push(d, &op);
    }
    if (u->hard_state_changed) {
        sim_disk_op op = {.kind = SIM_OP_HARD_STATE, .hs = u->hard_state};
        op_push(d, &op);
    }
    if (d->ops_count > 0) d->ops[d->ops_count - 1].update_end = true;
    return installed;
}

static void ops_to_durable(sim_disk *d, size_t upto)
{
    for (size_t k = 0; k < upto; k++) {
        op_apply(&d->durable, &d->durable_hs, &d->durable_snap, &d->ops[k]);
        op_free(&d->ops[k]);
    }
}

void sim_disk_sync(sim_disk *d, bool lie)
{
    /* A lying disk (a test of the checkers) keeps the latest batch volatile though it
     * acknowledges it: a crash before the next sync loses acknowledged writes. */
    size_t upto = lie ? d->lied_count : d->ops_count;
    ops_to_durable(d, upto);
    memmove(d->ops, d->ops + upto, (d->ops_count - upto) * sizeof(sim_disk_op));
    d->ops_count -= upto;
    d->lied_count = lie ? d->ops_count : 0;
}

/* How many unsynced writes survive: any prefix, or one that ends at an update's end. */
static size_t surviving_prefix(const sim_disk *d, sim_rng *g, bool split_updates)
{
    size_t keep = (size_t)sim_below(g, d->ops_count + 1);
    if (split_updates) return keep;
    while (keep > 0 && !d->ops[keep - 1].update_end)
        keep--;
    return keep;
}

void sim_disk_crash(sim_disk *d, sim_rng *g, bool split_updates)
{
    size_t keep = surviving_prefix(d, g, split_updates);
    if (d->lied_count > 0) keep = 0; /* the lie is exposed */
    ops_to_durable(d, keep);
    for (size_t k = keep; k < d->ops_count; k++)
        op_free(&d->ops[k]);
    d->ops_count = 0;
    d->lied_count = 0;
    d->current.entries =
        grow(d->current.entries, &d->current.capacity, d->durable.count, sizeof(sim_entry));
    if (d->durable.count)
        memcpy(d->current.entries, d->durable.entries, d->durable.count * sizeof(sim_entry));
    d->current.count = d->durable.count;
    d->current.first = d->durable.first;
    d->current.base_chain = d->durable.base_chain;
    d->current_hs = d->durable_hs;
    snapshot_copy(&d->current_snap, &d->durable_snap);
    free(d->recv);
    d->recv = NULL;
    d->recv_len = 0;
}

/* ---------------- the raft_storage over the current state ---------------- */

static const sim_entry *stored(sim_disk *d, uint64_t index)
{
    const sim_entry *s = sim_log_at(&d->current, index);
    if (!s)
        sim_fail(d->owner, "storage",
                 "node %llu: the core read index %llu (log %llu..%llu, "
                 "snapshot %llu)",
                 (unsigned long long)d->node_id, (unsigned long long)index,
                 (unsigned long long)d->current.first,
                 (unsigned long long)sim_log_last(&d->current),
                 (unsigned long long)d->current_snap.meta.index);
    return s;
}

static uint64_t storage_term(void *ctx, uint64_t index)
{
    return stored(ctx, index)->e.term;
}

static void storage_entry(void *ctx, uint64_t index, raft_entry *out)
{
    const sim_entry *s = stored(ctx, index);
    *out = s->e;
    out->data = s->e.len ? s->bytes : NULL; /* the array may have moved since the write */
}

static long storage_snapshot_read(void *ctx, uint64_t index, uint64_t offset, void *buf, size_t len)
{
    sim_disk *d = ctx;
    const sim_snapshot *snap = &d->current_snap;
    if (index != snap->meta.index || index == 0) return TERN_ENOTFOUND;
    /* Now and then the read fails: the leader must retry it later. */
    if (++d->snapshot_reads % 11 == 0) return TERN_EIO;
    if (offset > snap->len)
        sim_fail(d->owner, "snapshot stream", "node %llu: read at %llu of a %zu-byte snapshot",
                 (unsigned long long)d->node_id, (unsigned long long)offset, snap->len);
    size_t n = TERN_MIN(len, snap->len - (size_t)offset);
    memcpy(buf, snap->bytes + offset, n);
    return (long)n;
}

raft_storage sim_disk_storage(sim_disk *d)
{
    return (raft_storage){.ctx = d,
                          .last_index = sim_log_last(&d->current),
                          .term = storage_term,
                          .entry = storage_entry,
                          .snapshot = d->current_snap.meta,
                          .snapshot_read = storage_snapshot_read};
}
