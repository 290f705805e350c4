/* raft: the in-memory log view over the driver's stable storage. */
#include <stdlib.h>
#include <string.h>

#include "raft_internal.h"

/*
 * The log is three ranges:
 *
 *   1 .. snapshot.index        compacted: gone, only the snapshot's term at its index is known
 *   .. log.offset              read from the driver's storage
 *   .. offset + count          held in memory (data owned here) until both durable and
 *                              applied, when raft__log_trim drops them
 *
 * so snapshot.index <= log.offset always (raft_compact and a snapshot install move the
 * offset up to the snapshot when memory still held entries at or below it).
 */

uint64_t raft__log_last_index(const raft *r)
{
    return r->log.offset + r->log.count;
}

uint64_t raft__log_term(const raft *r, uint64_t index)
{
    if (index == 0) return 0;
    if (index == r->snapshot.index) return r->snapshot.term;
    RAFT_ASSERT(index > r->snapshot.index && index <= raft__log_last_index(r));
    if (index > r->log.offset) return r->log.entries[index - r->log.offset - 1].term;
    uint64_t term = r->log.storage.term(r->log.storage.ctx, index);
    RAFT_ASSERT(term != 0);
    return term;
}

uint64_t raft__log_last_term(const raft *r)
{
    return raft__log_term(r, raft__log_last_index(r));
}

void raft__log_get(const raft *r, uint64_t index, raft_entry *out)
{
    RAFT_ASSERT(index > r->snapshot.index && index <= raft__log_last_index(r));
    if (index > r->log.offset) {
        *out = r->log.entries[index - r->log.offset - 1];
        return;
    }
    r->log.storage.entry(r->log.storage.ctx, index, out);
    RAFT_ASSERT(out->index == index && out->term != 0);
}

int raft__log_append(raft *r, const raft_entry *e)
{
    raft__log *log = &r->log;
    RAFT_ASSERT(e->index == raft__log_last_index(r) + 1);
    RAFT_ASSERT(e->term >= raft__log_last_term(r));
    if (log->count == log->capacity) {
        size_t capacity = log->capacity ? log->capacity * 2 : 64;
        raft_entry *grown = realloc(log->entries, capacity * sizeof(*grown));
        if (!grown) return TERN_ENOMEM;
        log->entries = grown;
        log->capacity = capacity;
    }
    void *data = NULL;
    if (e->len > 0) {
        data = malloc(e->len);
        if (!data) return TERN_ENOMEM;
        memcpy(data, e->data, e->len);
    }
    raft_entry *slot = &log->entries[log->count++];
    *slot = *e;
    slot->data = data;
    if (r->persist_from > e->index) r->persist_from = e->index;
    raft__mark_dirty(r);
    if (e->type == RAFT_ENTRY_CONFIG) {
        /* Thesis 4.1: a configuration takes effect as soon as it is in the log. Leaders
         * encode it themselves and raft_receive refuses an undecodable one. */
        raft_conf conf;
        int rc = raft_conf_decode(e->data, e->len, &conf);
        RAFT_ASSERT(rc == 0);
        raft__conf_set(r, &conf, e->index);
    }
    return 0;
}

void raft__log_truncate(raft *r, uint64_t index)
{
    raft__log *log = &r->log;
    RAFT_ASSERT(index > r->commit); /* committed entries are never removed */
    RAFT_ASSERT(index <= raft__log_last_index(r));
    if (index <= log->offset) {
        /* The stale tail is in storage: forget all of memory and overwrite from index. */
        for (size_t k = 0; k < log->count; k++)
            free((void *)log->entries[k].data);
        log->count = 0;
        log->offset = index - 1;
    } else {
        size_t keep = (size_t)(index - log->offset - 1);
        for (size_t k = keep; k < log->count; k++)
            free((void *)log->entries[k].data);
        log->count = keep;
    }
    if (r->persist_from > index) r->persist_from = index;
    if (r->stable >= index) r->stable = index - 1;
    if (r->handed_last >= index) r->handed_last = index - 1;
    raft__mark_dirty(r);
    /* The configuration of a removed CONFIG entry never was: use the one before it. */
    if (r->conf_index >= index) raft__conf_recompute(r, index);
}

void raft__log_trim(raft *r, uint64_t index)
{
    raft__log *log = &r->log;
    if (index <= log->offset) return;
    size_t drop = (size_t)TERN_MIN(index - log->offset, (uint64_t)log->count);
    for (size_t k = 0; k < drop; k++)
        free((void *)log->entries[k].data);
    memmove(log->entries, log->entries + drop, (log->count - drop) * sizeof(raft_entry));
    log->count -= drop;
    log->offset += drop;
}

void raft__log_free(raft *r)
{
    for (size_t k = 0; k < r->log.count; k++)
        free((void *)r->log.entries[k].data);
    free(r->log.entries);
    r->log.entries = NULL;
    r->log.count = r->log.capacity = 0;
}
