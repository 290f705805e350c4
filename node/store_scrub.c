/* Background scrubber: walks blocks, checks SHA-256, quarantines damage, collects orphans. */
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/*
 * One step walks the blocks CF in id order from the cursor (the last id
 * visited, kept in memory and in meta "scrub/cursor" so a restart resumes)
 * until bytes_budget is spent or the walk reaches the end (pass_complete; the
 * next step starts over). Hashing is our check of last resort: RocksDB
 * checksums catch media errors, SHA-256 also catches a block stored under the
 * wrong id. Orphans (no references, no pins) are left by aborted or crashed
 * uploads; they are re-checked and deleted under commit_mu.
 */

#define CURSOR_KEY     "scrub/cursor"
#define CURSOR_KEY_LEN 12

typedef struct {
    node_block_id *ids;
    size_t count;
    size_t cap;
} id_list;

static void id_list_add(id_list *l, const node_block_id *id)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        node_block_id *grown = realloc(l->ids, cap * sizeof *grown);
        if (grown == NULL) return; /* the orphan is simply found again next pass */
        l->ids = grown;
        l->cap = cap;
    }
    l->ids[l->count++] = *id;
}

int node__scrub_cursor_load(node_store *s)
{
    char *v;
    size_t n;
    int rc = node__get(s, NODE__CF_META, CURSOR_KEY, CURSOR_KEY_LEN, &v, &n);
    if (rc == TERN_ENOTFOUND) return 0;
    if (rc != 0) return rc;
    if (n == NODE_BLOCK_ID_BYTES) {
        memcpy(s->scrub_cursor.bytes, v, n);
        s->scrub_cursor_valid = true;
    }
    rocksdb_free(v);
    return 0;
}

/* Not synced: a cursor lost in a crash only repeats some scrubbing. */
static void cursor_save(node_store *s)
{
    if (node__check_writable(s) != 0) return;
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    if (s->scrub_cursor_valid)
        rocksdb_writebatch_put_cf(b, s->cf[NODE__CF_META], CURSOR_KEY, CURSOR_KEY_LEN,
                                  (const char *)s->scrub_cursor.bytes, NODE_BLOCK_ID_BYTES);
    else
        rocksdb_writebatch_delete_cf(b, s->cf[NODE__CF_META], CURSOR_KEY, CURSOR_KEY_LEN);
    node__write(s, b, false, "save scrub cursor");
    rocksdb_writebatch_destroy(b);
}

/* An iterator positioned at the first block after the cursor. */
static rocksdb_iterator_t *iter_after_cursor(node_store *s, const rocksdb_readoptions_t *ro)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[NODE__CF_BLOCKS]);
    if (!s->scrub_cursor_valid) {
        rocksdb_iter_seek_to_first(it);
        return it;
    }
    const char *cursor = (const char *)s->scrub_cursor.bytes;
    rocksdb_iter_seek(it, cursor, NODE_BLOCK_ID_BYTES);
    if (rocksdb_iter_valid(it)) {
        size_t n;
        const char *key = rocksdb_iter_key(it, &n);
        if (n == NODE_BLOCK_ID_BYTES && memcmp(key, cursor, n) == 0) rocksdb_iter_next(it);
    }
    return it;
}

/* Reads the block's refcount; 0 when absent. */
static int refcount_get(node_store *s, const node_block_id *id, uint64_t *count)
{
    char *v;
    size_t n;
    *count = 0;
    int rc = node__get(s, NODE__CF_BLOCKREFS, id->bytes, NODE_BLOCK_ID_BYTES, &v, &n);
    if (rc == TERN_ENOTFOUND) return 0;
    if (rc != 0) return rc;
    for (size_t i = 0; i < n && i < 8; i++)
        *count |= (uint64_t)(uint8_t)v[i] << (8 * i);
    rocksdb_free(v);
    return 0;
}

/* A cheap first look without locks; collect_orphans re-checks under commit_mu. */
static void note_if_orphan(node_store *s, const node_block_id *id, id_list *orphans)
{
    uint64_t count;
    if (refcount_get(s, id, &count) != 0 || count > 0) return;
    pthread_mutex_lock(&s->pin_mu);
    bool pinned = node__pinned_locked(s, id);
    pthread_mutex_unlock(&s->pin_mu);
    if (!pinned) id_list_add(orphans, id);
}

static void check_block(node_store *s, const char *key, size_t key_len, const char *value,
                        size_t value_len, node_scrub_result *out, id_list *orphans)
{
    out->blocks_checked++;
    out->bytes_checked += value_len;
    if (key_len != NODE_BLOCK_ID_BYTES) {
        node_log(NODE_LOG_WARN, "store", "scrub: skipping a %zu-byte key in blocks", key_len);
        return;
    }
    node_block_id id, actual;
    memcpy(id.bytes, key, NODE_BLOCK_ID_BYTES);
    if (!node__quarantined(s, &id)) {
        node_block_hash(value, value_len, &actual);
        if (memcmp(actual.bytes, id.bytes, NODE_BLOCK_ID_BYTES) != 0 &&
            node__report_corruption(s, &id, "scrub: SHA-256 mismatch"))
            out->corrupt_found++;
    }
    note_if_orphan(s, &id, orphans);
}

/*
 * The verified iterator stopped on an error. For a Corruption (typically a
 * damaged blob record) we find the key it could not read with an unverified
 * iterator, used only to learn the key, confirm the damage with a verified
 * point read, quarantine the block and move the cursor past it.
 */
static int skip_unreadable(node_store *s, char *err, node_scrub_result *out, id_list *orphans)
{
    bool corrupt = strncmp(err, "Corruption", 10) == 0;
    int rc = node__read_error(s, err, "scrub");
    if (!corrupt) return rc; /* an I/O error: retry from the same cursor next step */
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(ro, 0);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = iter_after_cursor(s, ro);
    bool found = false;
    node_block_id id;
    if (rocksdb_iter_valid(it)) {
        size_t n;
        const char *key = rocksdb_iter_key(it, &n);
        found = n == NODE_BLOCK_ID_BYTES;
        if (found) memcpy(id.bytes, key, n);
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (!found) {
        node_log(NODE_LOG_ERROR, "store", "scrub: unreadable blocks index (%s); restarting pass",
                 node_store_errmsg(s));
        atomic_fetch_add(&s->corruption_count, 1);
        s->scrub_cursor_valid = false;
        out->pass_complete = true;
        return TERN_ECORRUPT;
    }
    void *data;
    size_t len;
    bool known = node__quarantined(s, &id);
    rc = node_store_block_get(s, &id, false, &data, &len); /* quarantines a corrupt block */
    if (rc == 0) { /* readable after all: hash it like any other block */
        check_block(s, (const char *)id.bytes, NODE_BLOCK_ID_BYTES, data, len, out, orphans);
        free(data);
    } else {
        out->blocks_checked++;
        if (rc == TERN_ECORRUPT && !known) out->corrupt_found++;
        note_if_orphan(s, &id, orphans);
    }
    s->scrub_cursor = id;
    s->scrub_cursor_valid = true;
    return 0;
}

/* Deletes the orphans still unreferenced (and unpinned, unless ignore_pins); returns how many. */
static uint64_t collect_ids(node_store *s, const node_block_id *ids, size_t count, bool ignore_pins)
{
    if (count == 0 || node__check_writable(s) != 0) return 0;
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    bool *doomed = calloc(count, sizeof *doomed);
    uint64_t deleted = 0;
    pthread_mutex_lock(&s->commit_mu);
    pthread_mutex_lock(&s->pin_mu);
    for (size_t i = 0; doomed != NULL && i < count; i++) {
        const node_block_id *id = &ids[i];
        uint64_t refs;
        if (refcount_get(s, id, &refs) != 0 || refs > 0 ||
            (!ignore_pins && node__pinned_locked(s, id)))
            continue;
        char qkey[11 + 2 * NODE_BLOCK_ID_BYTES + 1];
        node__quarantine_key(id, qkey);
        const char *key = (const char *)id->bytes;
        rocksdb_writebatch_delete_cf(b, s->cf[NODE__CF_BLOCKS], key, NODE_BLOCK_ID_BYTES);
        rocksdb_writebatch_delete_cf(b, s->cf[NODE__CF_BLOCKREFS], key, NODE_BLOCK_ID_BYTES);
        rocksdb_writebatch_delete_cf(b, s->cf[NODE__CF_META], qkey, sizeof qkey - 1);
        doomed[i] = true;
        deleted++;
    }
    /* Not synced: an orphan resurrected by a crash is collected again. */
    if (deleted > 0 && node__write(s, b, false, "scrub collect") != 0) deleted = 0;
    pthread_mutex_unlock(&s->pin_mu);
    pthread_mutex_unlock(&s->commit_mu);
    for (size_t i = 0; deleted > 0 && i < count; i++)
        if (doomed[i]) node__quarantine_forget(s, &ids[i]);
    free(doomed);
    rocksdb_writebatch_destroy(b);
    atomic_fetch_add(&s->gc_blocks_deleted, deleted);
    return deleted;
}

/* Walks blocks from the cursor until the budget is spent or the end is reached. */
static int walk(node_store *s, uint64_t bytes_budget, node_scrub_result *out, id_list *orphans)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(ro, 1);
    rocksdb_readoptions_set_fill_cache(ro, 0); /* a scan must not evict the hot set */
    rocksdb_iterator_t *it = iter_after_cursor(s, ro);
    int rc = 0;
    while (out->blocks_checked == 0 || out->bytes_checked < bytes_budget) {
        if (!rocksdb_iter_valid(it)) {
            char *err = NULL;
            rocksdb_iter_get_error(it, &err);
            if (err == NULL) {
                out->pass_complete = true;
                s->scrub_cursor_valid = false;
                break;
            }
            rc = skip_unreadable(s, err, out, orphans);
            if (rc != 0) break;
            rocksdb_iter_destroy(it);
            it = iter_after_cursor(s, ro);
            continue;
        }
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key(it, &key_len);
        const char *value = rocksdb_iter_value(it, &value_len);
        check_block(s, key, key_len, value, value_len, out, orphans);
        if (key_len == NODE_BLOCK_ID_BYTES) {
            memcpy(s->scrub_cursor.bytes, key, NODE_BLOCK_ID_BYTES);
            s->scrub_cursor_valid = true;
        }
        rocksdb_iter_next(it);
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

int node_store_scrub_step(node_store *s, uint64_t bytes_budget, node_scrub_result *out)
{
    memset(out, 0, sizeof *out);
    id_list orphans = {0};
    pthread_mutex_lock(&s->scrub_mu);
    int rc = walk(s, bytes_budget, out, &orphans);
    if (s->replicated) { /* reported, collected through the log (node_store_blocks_collect) */
        out->orphans = orphans.ids;
        out->orphan_count = orphans.count;
        orphans.ids = NULL;
    } else {
        out->orphans_deleted = collect_ids(s, orphans.ids, orphans.count, false);
    }
    cursor_save(s);
    pthread_mutex_unlock(&s->scrub_mu);
    free(orphans.ids);
    if (out->corrupt_found > 0 || out->orphans_deleted > 0)
        node_log(NODE_LOG_INFO, "store", "scrub: %llu blocks checked, %llu corrupt, %llu orphans",
                 (unsigned long long)out->blocks_checked, (unsigned long long)out->corrupt_found,
                 (unsigned long long)out->orphans_deleted);
    return rc;
}

int node_store_blocks_collect(node_store *s, const node_block_id *ids, size_t count,
                              uint64_t *deleted)
{
    int rc = node__check_writable(s);
    *deleted = 0;
    if (rc != 0) return rc;
    *deleted = collect_ids(s, ids, count, true);
    return 0;
}

int node_store_blocks_drop(node_store *s, const node_block_id *ids, size_t count, uint64_t *dropped)
{
    *dropped = 0;
    int rc = node__check_writable(s);
    if (rc != 0 || count == 0) return rc;
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    pthread_mutex_lock(&s->commit_mu);
    pthread_mutex_lock(&s->pin_mu);
    for (size_t i = 0; i < count; i++) {
        uint64_t refs;
        /* Only a block no other object shares: the others may still want it here. */
        if (refcount_get(s, &ids[i], &refs) != 0 || refs != 1) continue;
        bool exists = false;
        if (node__exists(s, NODE__CF_BLOCKS, ids[i].bytes, NODE_BLOCK_ID_BYTES, &exists) != 0 ||
            !exists)
            continue;
        char qkey[11 + 2 * NODE_BLOCK_ID_BYTES + 1];
        node__quarantine_key(&ids[i], qkey);
        rocksdb_writebatch_delete_cf(b, s->cf[NODE__CF_BLOCKS], (const char *)ids[i].bytes,
                                     NODE_BLOCK_ID_BYTES);
        rocksdb_writebatch_delete_cf(b, s->cf[NODE__CF_META], qkey, sizeof qkey - 1);
        (*dropped)++;
    }
    /* Not synced: the Raft log is the durable record of the drop. */
    if (*dropped > 0) rc = node__write(s, b, false, "blocks drop");
    pthread_mutex_unlock(&s->pin_mu);
    pthread_mutex_unlock(&s->commit_mu);
    rocksdb_writebatch_destroy(b);
    if (rc != 0) *dropped = 0;
    for (size_t i = 0; rc == 0 && i < count; i++)
        node__quarantine_forget(s, &ids[i]);
    return rc;
}
