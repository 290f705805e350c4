/* sim: a fake disk per node: writes are volatile until a sync, a crash may tear the last one. */
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

static uint64_t chain_of(const sim_log *log, const sim_entry *s)
{
    uint64_t h = s->e.index > 1 ? log->entries[s->e.index - 2].chain : 0;
    h = mix(h, s->e.index);
    h = mix(h, s->e.term);
    h = mix(h, (uint64_t)s->e.type);
    for (size_t k = 0; k < s->e.len; k++)
        h = mix(h, s->bytes[k]);
    return h;
}

static void log_truncate(sim_log *log, uint64_t index)
{
    if (index >= 1 && index <= log->count) log->count = (size_t)(index - 1);
}

static void log_append(sim_log *log, const sim_entry *s)
{
    assert(s->e.index == log->count + 1);
    log->entries = grow(log->entries, &log->capacity, log->count + 1, sizeof(sim_entry));
    sim_entry *slot = &log->entries[log->count++];
    *slot = *s;
    slot->e.data = NULL; /* readers take bytes: the array moves as it grows */
    slot->chain = chain_of(log, slot);
}

static void op_apply(sim_log *log, raft_hard_state *hs, const sim_disk_op *op)
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
    }
}

static void op_push(sim_disk *d, const sim_disk_op *op)
{
    d->ops = grow(d->ops, &d->ops_capacity, d->ops_count + 1, sizeof(sim_disk_op));
    d->ops[d->ops_count++] = *op;
    op_apply(&d->current, &d->current_hs, op);
}

void sim_disk_init(sim_disk *d)
{
    memset(d, 0, sizeof(*d));
}

void sim_disk_free(sim_disk *d)
{
    free(d->current.entries);
    free(d->durable.entries);
    free(d->ops);
    memset(d, 0, sizeof(*d));
}

void sim_disk_write(sim_disk *d, const raft_update *u)
{
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
}

void sim_disk_sync(sim_disk *d, bool lie)
{
    /* A lying disk (a test of the checkers) keeps the latest batch volatile though it
     * acknowledges it: a crash before the next sync loses acknowledged writes. */
    size_t upto = lie ? d->lied_count : d->ops_count;
    for (size_t k = 0; k < upto; k++)
        op_apply(&d->durable, &d->durable_hs, &d->ops[k]);
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
    for (size_t k = 0; k < keep; k++)
        op_apply(&d->durable, &d->durable_hs, &d->ops[k]);
    d->ops_count = 0;
    d->lied_count = 0;
    d->current.entries =
        grow(d->current.entries, &d->current.capacity, d->durable.count, sizeof(sim_entry));
    if (d->durable.count)
        memcpy(d->current.entries, d->durable.entries, d->durable.count * sizeof(sim_entry));
    d->current.count = d->durable.count;
    d->current_hs = d->durable_hs;
}

static uint64_t storage_term(void *ctx, uint64_t index)
{
    sim_disk *d = ctx;
    assert(index >= 1 && index <= d->current.count);
    return d->current.entries[index - 1].e.term;
}

static void storage_entry(void *ctx, uint64_t index, raft_entry *out)
{
    sim_disk *d = ctx;
    assert(index >= 1 && index <= d->current.count);
    const sim_entry *s = &d->current.entries[index - 1];
    *out = s->e;
    out->data = s->e.len ? s->bytes : NULL; /* the array may have moved since the write */
}

raft_storage sim_disk_storage(sim_disk *d)
{
    return (raft_storage){
        .ctx = d, .last_index = d->current.count, .term = storage_term, .entry = storage_entry};
}
