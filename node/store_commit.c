/* Metadata commits: one synced WriteBatch per change, with refcounts, block GC and counters. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/*
 * A commit runs under commit_mu from begin to end, so its read-modify-write
 * of refcounts and counters cannot interleave with another commit or with
 * the scrubber's collection. Reference changes are gathered first and
 * resolved in finish: duplicate ids are merged (an object may repeat a block),
 * blocks gaining their first reference must exist (else ECONFLICT and the
 * batch is dropped), and blocks losing their last reference are deleted in the
 * same batch unless pinned.
 */

int node__commit_begin(node_store *s, node__commit *c)
{
    memset(c, 0, sizeof *c);
    c->s = s;
    pthread_mutex_lock(&s->commit_mu);
    c->batch = rocksdb_writebatch_create();
    c->counters = s->counters;
    return node__check_writable(s);
}

void node__commit_end(node__commit *c)
{
    rocksdb_writebatch_destroy(c->batch);
    free(c->refs);
    pthread_mutex_unlock(&c->s->commit_mu);
    memset(c, 0, sizeof *c);
}

void node__commit_refs(node__commit *c, const node_block_ref *blocks, size_t count, int sign)
{
    assert(sign == 1 || sign == -1);
    if (count == 0 || c->failed_alloc) return;
    if (c->ref_count + count > c->ref_cap) {
        size_t cap = c->ref_cap ? c->ref_cap : 16;
        while (cap < c->ref_count + count)
            cap *= 2;
        node__ref_delta *refs = realloc(c->refs, cap * sizeof *refs);
        if (refs == NULL) {
            c->failed_alloc = true;
            return;
        }
        c->refs = refs;
        c->ref_cap = cap;
    }
    for (size_t i = 0; i < count; i++) {
        node__ref_delta *r = &c->refs[c->ref_count++];
        memset(r, 0, sizeof *r);
        r->id = blocks[i].id;
        r->size_bytes = blocks[i].size_bytes;
        r->delta = sign;
    }
}

static int ref_cmp(const void *a, const void *b)
{
    const node__ref_delta *x = a, *y = b;
    return memcmp(x->id.bytes, y->id.bytes, NODE_BLOCK_ID_BYTES);
}

/* Sorts by id and merges duplicates, dropping ids whose changes cancel out. */
static void refs_merge(node__commit *c)
{
    if (c->ref_count == 0) return;
    qsort(c->refs, c->ref_count, sizeof *c->refs, ref_cmp);
    size_t out = 0;
    for (size_t i = 0; i < c->ref_count;) {
        node__ref_delta merged = c->refs[i];
        size_t j = i + 1;
        for (; j < c->ref_count && ref_cmp(&c->refs[j], &merged) == 0; j++)
            merged.delta += c->refs[j].delta;
        if (merged.delta != 0) c->refs[out++] = merged;
        i = j;
    }
    c->ref_count = out;
}

static int refs_load(node__commit *c)
{
    node_store *s = c->s;
    for (size_t i = 0; i < c->ref_count; i++) {
        node__ref_delta *r = &c->refs[i];
        char *v;
        size_t n;
        int rc = node__get(s, NODE__CF_BLOCKREFS, r->id.bytes, NODE_BLOCK_ID_BYTES, &v, &n);
        if (rc == TERN_ENOTFOUND) continue;
        if (rc != 0) return rc;
        if (n != 8) {
            rocksdb_free(v);
            node__errmsg_set("refcount record of %zu bytes (expected 8)", n);
            return TERN_ECORRUPT;
        }
        for (int b = 0; b < 8; b++)
            r->old_count |= (uint64_t)(uint8_t)v[b] << (8 * b);
        rocksdb_free(v);
    }
    return 0;
}

/*
 * Every block gaining its first reference must be stored. Holding commit_mu
 * keeps GC away, so what we see here is still true when the batch lands.
 */
static int refs_check_present(node__commit *c)
{
    node_store *s = c->s;
    if (c->blocks_elsewhere) return 0;
    for (size_t i = 0; i < c->ref_count; i++) {
        node__ref_delta *r = &c->refs[i];
        if (r->delta <= 0 || r->old_count > 0) continue;
        if (node__pinned_stored(s, &r->id)) continue; /* the common case: a fresh upload */
        bool exists;
        int rc = node__exists(s, NODE__CF_BLOCKS, r->id.bytes, NODE_BLOCK_ID_BYTES, &exists);
        if (rc == TERN_ECORRUPT)
            exists = true; /* stored, though damaged: reads will say so */
        else if (rc != 0)
            return rc;
        if (!exists) {
            char hex[2 * NODE_BLOCK_ID_BYTES + 1];
            tern_hex(r->id.bytes, NODE_BLOCK_ID_BYTES, hex);
            node__errmsg_set("block %s is not stored", hex);
            return TERN_ECONFLICT;
        }
    }
    return 0;
}

static void refcount_underflow(node__commit *c, const node__ref_delta *r)
{
    char hex[2 * NODE_BLOCK_ID_BYTES + 1];
    tern_hex(r->id.bytes, NODE_BLOCK_ID_BYTES, hex);
    atomic_fetch_add(&c->s->corruption_count, 1);
    node_log(NODE_LOG_ERROR, "store",
             "refcount of block %s would go below zero (%llu%+lld): metadata is inconsistent", hex,
             (unsigned long long)r->old_count, (long long)r->delta);
}

/* Applies one block's reference change to the batch and the working counters. */
static void ref_apply(node__commit *c, node__ref_delta *r)
{
    node_store *s = c->s;
    node__counters *k = &c->counters;
    const char *id = (const char *)r->id.bytes;
    uint64_t magnitude = (uint64_t)(r->delta < 0 ? -r->delta : r->delta);
    uint64_t new_count;
    if (r->delta > 0) {
        new_count = r->old_count + magnitude;
        k->referenced_block_bytes += magnitude * r->size_bytes;
    } else {
        if (magnitude > r->old_count) refcount_underflow(c, r);
        uint64_t dropped = TERN_MIN(magnitude, r->old_count);
        new_count = r->old_count - dropped;
        node__counter_sub(&k->referenced_block_bytes, dropped * r->size_bytes,
                          "referenced_block_bytes");
    }
    if (new_count > 0) {
        uint8_t le[8];
        for (int b = 0; b < 8; b++)
            le[b] = (uint8_t)(new_count >> (8 * b));
        rocksdb_writebatch_put_cf(c->batch, s->cf[NODE__CF_BLOCKREFS], id, NODE_BLOCK_ID_BYTES,
                                  (const char *)le, sizeof le);
        if (r->old_count == 0) {
            k->block_count++;
            k->block_bytes += r->size_bytes;
        }
        return;
    }
    if (r->old_count == 0) return; /* the underflow case: nothing was stored */
    rocksdb_writebatch_delete_cf(c->batch, s->cf[NODE__CF_BLOCKREFS], id, NODE_BLOCK_ID_BYTES);
    node__counter_sub(&k->block_count, 1, "block_count");
    node__counter_sub(&k->block_bytes, r->size_bytes, "block_bytes");
    if (node__pinned_locked(s, &r->id)) return; /* an upload in progress still needs it */
    /* A replicated store keeps it until BLOCKS_COLLECT, after a grace period: an upload
     * on any replica may have committed it for a manifest not yet committed. */
    if (s->replicated) return;
    char qkey[11 + 2 * NODE_BLOCK_ID_BYTES + 1];
    node__quarantine_key(&r->id, qkey);
    rocksdb_writebatch_delete_cf(c->batch, s->cf[NODE__CF_BLOCKS], id, NODE_BLOCK_ID_BYTES);
    rocksdb_writebatch_delete_cf(c->batch, s->cf[NODE__CF_META], qkey, sizeof qkey - 1);
    r->collected = true;
}

int node__commit_finish(node__commit *c, const char *what)
{
    node_store *s = c->s;
    if (c->failed_alloc) {
        node__errmsg_set("%s: out of memory", what);
        return TERN_ENOMEM;
    }
    refs_merge(c);
    int rc = refs_load(c);
    if (rc == 0) rc = refs_check_present(c);
    if (rc != 0) return rc;
    bool may_collect = false;
    for (size_t i = 0; i < c->ref_count; i++)
        if (c->refs[i].delta < 0 && c->refs[i].old_count > 0) may_collect = true;
    /* Held until the batch is written: a block_put pinning meanwhile must wait to
     * see either the delete or (if it pinned first) a block we did not delete. */
    if (may_collect) pthread_mutex_lock(&s->pin_mu);
    for (size_t i = 0; i < c->ref_count; i++)
        ref_apply(c, &c->refs[i]);
    node__put_counters(s, c->batch, &c->counters);
    node__apply_stamp *stamp = node__stamp_add(s, c->batch);
    rc = node__write(s, c->batch, true, what);
    if (may_collect) pthread_mutex_unlock(&s->pin_mu);
    if (rc != 0) return rc;
    if (stamp) stamp->consumed = true;
    s->counters = c->counters;
    for (size_t i = 0; i < c->ref_count; i++) {
        if (!c->refs[i].collected) continue;
        atomic_fetch_add(&s->gc_blocks_deleted, 1);
        node__quarantine_forget(s, &c->refs[i].id);
    }
    return 0;
}
