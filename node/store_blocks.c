/* Block data: SHA-256 ids, put/get/read, in-memory pins and the persistent quarantine set. */
#include <assert.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

#define IDMAP_SLOTS_INITIAL   64
#define QUARANTINE_PREFIX     "quarantine/"
#define QUARANTINE_PREFIX_LEN 11

/* ---------------------------------------------------------------- id maps */

int node__idmap_init(node__idmap *m)
{
    m->slots = calloc(IDMAP_SLOTS_INITIAL, sizeof *m->slots);
    m->slot_count = IDMAP_SLOTS_INITIAL;
    m->entry_count = 0;
    return m->slots == NULL ? TERN_ENOMEM : 0;
}

void node__idmap_free(node__idmap *m)
{
    for (size_t i = 0; m->slots != NULL && i < m->slot_count; i++) {
        node__idmap_entry *e = m->slots[i];
        while (e != NULL) {
            node__idmap_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* Ids are SHA-256 digests, so any 8 of their bytes are already a uniform hash. */
static size_t idmap_slot(size_t slot_count, const node_block_id *id)
{
    uint64_t h;
    memcpy(&h, id->bytes, sizeof h);
    return (size_t)(h & (slot_count - 1));
}

node__idmap_entry *node__idmap_find(node__idmap *m, const node_block_id *id)
{
    node__idmap_entry *e = m->slots[idmap_slot(m->slot_count, id)];
    while (e != NULL && memcmp(e->id.bytes, id->bytes, NODE_BLOCK_ID_BYTES) != 0)
        e = e->next;
    return e;
}

/* Doubles the slot array; on allocation failure the map just stays denser. */
static void idmap_grow(node__idmap *m)
{
    size_t count = m->slot_count * 2;
    node__idmap_entry **slots = calloc(count, sizeof *slots);
    if (slots == NULL) return;
    for (size_t i = 0; i < m->slot_count; i++) {
        node__idmap_entry *e = m->slots[i];
        while (e != NULL) {
            node__idmap_entry *next = e->next;
            size_t j = idmap_slot(count, &e->id);
            e->next = slots[j];
            slots[j] = e;
            e = next;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->slot_count = count;
}

/* Finds or inserts (count 0) an entry; NULL when out of memory. */
static node__idmap_entry *idmap_upsert(node__idmap *m, const node_block_id *id, bool *inserted)
{
    node__idmap_entry *e = node__idmap_find(m, id);
    *inserted = false;
    if (e != NULL) return e;
    if (m->entry_count >= 2 * m->slot_count) idmap_grow(m);
    e = calloc(1, sizeof *e);
    if (e == NULL) return NULL;
    e->id = *id;
    size_t i = idmap_slot(m->slot_count, id);
    e->next = m->slots[i];
    m->slots[i] = e;
    m->entry_count++;
    *inserted = true;
    return e;
}

static void idmap_remove(node__idmap *m, const node_block_id *id)
{
    node__idmap_entry **p = &m->slots[idmap_slot(m->slot_count, id)];
    while (*p != NULL && memcmp((*p)->id.bytes, id->bytes, NODE_BLOCK_ID_BYTES) != 0)
        p = &(*p)->next;
    if (*p == NULL) return;
    node__idmap_entry *e = *p;
    *p = e->next;
    free(e);
    m->entry_count--;
}

/* ---------------------------------------------------------------- pins */

/* Takes one pin; *stored says an earlier put, still pinned, has already stored the data. */
static int pin_take(node_store *s, const node_block_id *id, bool *stored)
{
    bool inserted;
    pthread_mutex_lock(&s->pin_mu);
    node__idmap_entry *e = idmap_upsert(&s->pins, id, &inserted);
    if (e != NULL) {
        e->count++;
        *stored = e->stored;
    }
    pthread_mutex_unlock(&s->pin_mu);
    if (e == NULL) node__errmsg_set("block put: out of memory for the pin table");
    return e == NULL ? TERN_ENOMEM : 0;
}

static void pin_mark_stored(node_store *s, const node_block_id *id)
{
    pthread_mutex_lock(&s->pin_mu);
    node__idmap_entry *e = node__idmap_find(&s->pins, id);
    assert(e != NULL && e->count > 0); /* the caller holds a pin */
    e->stored = true;
    pthread_mutex_unlock(&s->pin_mu);
}

void node_store_block_unpin(node_store *s, const node_block_id *id)
{
    pthread_mutex_lock(&s->pin_mu);
    node__idmap_entry *e = node__idmap_find(&s->pins, id);
    /* An unpin without its put could let GC take a block another upload still needs. */
    assert(e != NULL && e->count > 0);
    if (--e->count == 0) idmap_remove(&s->pins, id);
    pthread_mutex_unlock(&s->pin_mu);
}

bool node__pinned_locked(node_store *s, const node_block_id *id)
{
    node__idmap_entry *e = node__idmap_find(&s->pins, id);
    return e != NULL && e->count > 0;
}

bool node__pinned_stored(node_store *s, const node_block_id *id)
{
    pthread_mutex_lock(&s->pin_mu);
    node__idmap_entry *e = node__idmap_find(&s->pins, id);
    bool stored = e != NULL && e->count > 0 && e->stored;
    pthread_mutex_unlock(&s->pin_mu);
    return stored;
}

/* ---------------------------------------------------------------- quarantine */

void node__quarantine_key(const node_block_id *id, char out[11 + 2 * NODE_BLOCK_ID_BYTES + 1])
{
    memcpy(out, QUARANTINE_PREFIX, QUARANTINE_PREFIX_LEN);
    tern_hex(id->bytes, NODE_BLOCK_ID_BYTES, out + QUARANTINE_PREFIX_LEN);
}

bool node__quarantined(node_store *s, const node_block_id *id)
{
    pthread_mutex_lock(&s->quarantine_mu);
    bool found = node__idmap_find(&s->quarantine, id) != NULL;
    pthread_mutex_unlock(&s->quarantine_mu);
    return found;
}

static bool quarantine_add(node_store *s, const node_block_id *id)
{
    bool inserted = false;
    pthread_mutex_lock(&s->quarantine_mu);
    node__idmap_entry *e = idmap_upsert(&s->quarantine, id, &inserted);
    pthread_mutex_unlock(&s->quarantine_mu);
    if (e == NULL) node_log(NODE_LOG_ERROR, "store", "quarantine: out of memory");
    return inserted;
}

void node__quarantine_forget(node_store *s, const node_block_id *id)
{
    pthread_mutex_lock(&s->quarantine_mu);
    idmap_remove(&s->quarantine, id);
    pthread_mutex_unlock(&s->quarantine_mu);
}

int node__quarantine_load(node_store *s)
{
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(s->db, s->read_options, s->cf[NODE__CF_META]);
    for (rocksdb_iter_seek(it, QUARANTINE_PREFIX, QUARANTINE_PREFIX_LEN); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t n;
        const char *key = rocksdb_iter_key(it, &n);
        if (n < QUARANTINE_PREFIX_LEN || memcmp(key, QUARANTINE_PREFIX, QUARANTINE_PREFIX_LEN))
            break;
        node_block_id id;
        if (n != QUARANTINE_PREFIX_LEN + 2 * NODE_BLOCK_ID_BYTES ||
            tern_unhex(key + QUARANTINE_PREFIX_LEN, 2 * NODE_BLOCK_ID_BYTES, id.bytes) != 0) {
            node_log(NODE_LOG_WARN, "store", "ignoring malformed quarantine record");
            continue;
        }
        quarantine_add(s, &id);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    return err != NULL ? node__read_error(s, err, "load quarantine") : 0;
}

/*
 * Records a corrupt block: it is never served again, in this process (memory)
 * and after a restart (the meta record, written when the store is writable).
 * Returns true if the block was not already quarantined (a new corruption).
 */
bool node__report_corruption(node_store *s, const node_block_id *id, const char *how)
{
    char hex[2 * NODE_BLOCK_ID_BYTES + 1];
    tern_hex(id->bytes, NODE_BLOCK_ID_BYTES, hex);
    if (!quarantine_add(s, id)) return false;
    atomic_fetch_add(&s->corruption_count, 1);
    node_log(NODE_LOG_ERROR, "store", "block %s is corrupt (%s); quarantined", hex, how);
    if (node__check_writable(s) != 0) return true;
    char key[QUARANTINE_PREFIX_LEN + 2 * NODE_BLOCK_ID_BYTES + 1];
    node__quarantine_key(id, key);
    uint8_t when[8];
    uint64_t now_ms = (uint64_t)tern_now_ms();
    for (int i = 0; i < 8; i++)
        when[i] = (uint8_t)(now_ms >> (8 * i));
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    rocksdb_writebatch_put_cf(b, s->cf[NODE__CF_META], key, sizeof key - 1, (const char *)when,
                              sizeof when);
    if (node__write(s, b, true, "persist quarantine") != 0)
        node_log(NODE_LOG_WARN, "store", "block %s quarantined in memory only", hex);
    rocksdb_writebatch_destroy(b);
    return true;
}

/* ---------------------------------------------------------------- blocks */

void node_block_hash(const void *data, size_t len, node_block_id *out)
{
    unsigned int digest_len = 0;
    int ok = EVP_Digest(len ? data : "", len, out->bytes, &digest_len, EVP_sha256(), NULL);
    assert(ok == 1 && digest_len == NODE_BLOCK_ID_BYTES);
    (void)ok;
}

/* True if the block already has a stored copy worth keeping. (A reference does not say so:
 * in a geo deployment a manifest may name blocks only other regions hold.) */
static int block_present(node_store *s, const node_block_id *id, bool *present)
{
    int rc = node__exists(s, NODE__CF_BLOCKS, id->bytes, NODE_BLOCK_ID_BYTES, present);
    if (rc == TERN_ECORRUPT) {
        /* An unreadable unreferenced copy: overwriting it with good data repairs it. */
        *present = false;
        return 0;
    }
    return rc;
}

/*
 * Writes the block unless a copy is already stored. A quarantined block is
 * rewritten (after checking the data really hashes to the id) and released
 * from quarantine: a client re-uploading the content repairs it.
 */
static int block_store_if_missing(node_store *s, const node_block_id *id, const void *data,
                                  size_t len)
{
    bool heal = node__quarantined(s, id);
    if (!heal) {
        bool present;
        int rc = block_present(s, id, &present);
        if (rc != 0 || present) return rc;
    } else {
        node_block_id actual;
        node_block_hash(data, len, &actual);
        if (memcmp(actual.bytes, id->bytes, NODE_BLOCK_ID_BYTES) != 0) {
            node__errmsg_set("block put: data does not hash to the block id");
            return TERN_EINVAL;
        }
    }
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    rocksdb_writebatch_put_cf(b, s->cf[NODE__CF_BLOCKS], (const char *)id->bytes,
                              NODE_BLOCK_ID_BYTES, len ? data : "", len);
    char qkey[QUARANTINE_PREFIX_LEN + 2 * NODE_BLOCK_ID_BYTES + 1];
    if (heal) {
        node__quarantine_key(id, qkey);
        rocksdb_writebatch_delete_cf(b, s->cf[NODE__CF_META], qkey, sizeof qkey - 1);
    }
    /* Block data is not synced: the manifest commit that references it syncs the WAL. */
    int rc = node__write(s, b, heal, "block put");
    rocksdb_writebatch_destroy(b);
    if (rc == 0 && heal) {
        node__quarantine_forget(s, id);
        node_log(NODE_LOG_INFO, "store", "quarantined block %s repaired by a new upload",
                 qkey + QUARANTINE_PREFIX_LEN);
    }
    return rc;
}

int node_store_reserve_check(node_store *s, uint64_t len)
{
    uint64_t free_bytes;
    if (s->disk_reserve_bytes == 0 || node_store_disk_free(s, &free_bytes) != 0 ||
        free_bytes >= s->disk_reserve_bytes + len)
        return 0;
    node__errmsg_set("%llu bytes free, below the %llu-byte disk reserve",
                     (unsigned long long)free_bytes, (unsigned long long)s->disk_reserve_bytes);
    return TERN_ENOSPC;
}

int node_store_block_put(node_store *s, const node_block_id *id, const void *data, size_t len)
{
    if (s == NULL || id == NULL || (data == NULL && len > 0)) return TERN_EINVAL;
    if (len > NODE_BLOCK_SIZE_MAX) {
        node__errmsg_set("block put: %zu bytes exceeds the %u-byte block limit", len,
                         NODE_BLOCK_SIZE_MAX);
        return TERN_ETOOBIG;
    }
    int rc = node__check_writable(s);
    if (rc != 0) return rc;
    uint64_t free_bytes;
    /* A replicated store's apply must not depend on this replica's free space (replicas
     * would diverge): the proposer checks the reserve (node_store_reserve_check). */
    if (!s->replicated && s->disk_reserve_bytes > 0 && node_store_disk_free(s, &free_bytes) == 0 &&
        free_bytes < s->disk_reserve_bytes + len) {
        node__errmsg_set("block put: %llu bytes free, below the %llu-byte disk reserve",
                         (unsigned long long)free_bytes, (unsigned long long)s->disk_reserve_bytes);
        return TERN_ENOSPC;
    }
    /* Pin first: from here on GC leaves the block alone, so what we find stays stored. */
    bool stored;
    rc = pin_take(s, id, &stored);
    if (rc != 0 || stored) return rc;
    rc = block_store_if_missing(s, id, data, len);
    if (rc != 0) {
        node_store_block_unpin(s, id);
        return rc;
    }
    pin_mark_stored(s, id);
    return 0;
}

/* Looks a block up for reading: quarantine first, then RocksDB (checksums verified). */
static int block_fetch_ro(node_store *s, const rocksdb_readoptions_t *ro, const node_block_id *id,
                          rocksdb_pinnableslice_t **out)
{
    char hex[2 * NODE_BLOCK_ID_BYTES + 1];
    tern_hex(id->bytes, NODE_BLOCK_ID_BYTES, hex);
    *out = NULL;
    if (node__quarantined(s, id)) {
        node__errmsg_set("block %s is quarantined as corrupt", hex);
        return TERN_ECORRUPT;
    }
    char *err = NULL;
    *out = rocksdb_get_pinned_cf(s->db, ro, s->cf[NODE__CF_BLOCKS], (const char *)id->bytes,
                                 NODE_BLOCK_ID_BYTES, &err);
    if (err != NULL) {
        int rc = node__read_error(s, err, "block read");
        if (rc == TERN_ECORRUPT) {
            char why[256];
            snprintf(why, sizeof why, "%s", node_store_errmsg(s));
            node__report_corruption(s, id, why);
            node__errmsg_set("block %s: %s", hex, why);
        }
        return rc;
    }
    if (*out == NULL) {
        node__errmsg_set("block %s not found", hex);
        return TERN_ENOTFOUND;
    }
    return 0;
}

static int block_fetch(node_store *s, const node_block_id *id, rocksdb_pinnableslice_t **out)
{
    return block_fetch_ro(s, s->read_options, id, out);
}

int node_store_block_view(node_store *s, const node_block_id *id, bool cache_only,
                          node_block_view **out, const char **data, size_t *len)
{
    rocksdb_pinnableslice_t *v = NULL;
    *out = NULL;
    int rc = block_fetch_ro(s, cache_only ? s->read_cached : s->read_options, id, &v);
    if (rc != 0) return rc;
    *data = rocksdb_pinnableslice_value(v, len);
    *out = (node_block_view *)v;
    return 0;
}

struct node_read_view {
    node_store *s;
    const rocksdb_snapshot_t *snapshot;
    rocksdb_readoptions_t *read_options; /* verify_checksums, at the snapshot */
    rocksdb_readoptions_t *read_cached;  /* the same, block-cache tier only */
};

int node_store_view_open(node_store *s, node_read_view **out)
{
    node_read_view *v = calloc(1, sizeof *v);
    if (v == NULL) return TERN_ENOMEM;
    v->s = s;
    v->snapshot = rocksdb_create_snapshot(s->db);
    v->read_options = rocksdb_readoptions_create();
    v->read_cached = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(v->read_options, 1);
    rocksdb_readoptions_set_verify_checksums(v->read_cached, 1);
    rocksdb_readoptions_set_read_tier(v->read_cached, 1 /* kBlockCacheTier */);
    rocksdb_readoptions_set_snapshot(v->read_options, v->snapshot);
    rocksdb_readoptions_set_snapshot(v->read_cached, v->snapshot);
    *out = v;
    return 0;
}

void node_store_view_close(node_read_view *v)
{
    if (v == NULL) return;
    rocksdb_readoptions_destroy(v->read_options);
    rocksdb_readoptions_destroy(v->read_cached);
    rocksdb_release_snapshot(v->s->db, v->snapshot);
    free(v);
}

int node_store_block_view_in(node_read_view *v, const node_block_id *id, bool cache_only,
                             node_block_view **out, const char **data, size_t *len)
{
    rocksdb_pinnableslice_t *slice = NULL;
    *out = NULL;
    int rc = block_fetch_ro(v->s, cache_only ? v->read_cached : v->read_options, id, &slice);
    if (rc != 0) return rc;
    *data = rocksdb_pinnableslice_value(slice, len);
    *out = (node_block_view *)slice;
    return 0;
}

int node_store_object_get_in(node_read_view *v, bool cache_only, const char *bucket,
                             const char *key, node_manifest **out)
{
    return node__object_get_ro(v->s, cache_only ? v->read_cached : v->read_options, bucket, key,
                               out);
}

void node_block_view_release(node_block_view *v)
{
    if (v) rocksdb_pinnableslice_destroy((rocksdb_pinnableslice_t *)v);
}

int node_store_block_get(node_store *s, const node_block_id *id, bool verify_hash, void **data_out,
                         size_t *len_out)
{
    *data_out = NULL;
    *len_out = 0;
    rocksdb_pinnableslice_t *v;
    int rc = block_fetch(s, id, &v);
    if (rc != 0) return rc;
    size_t n;
    const char *p = rocksdb_pinnableslice_value(v, &n);
    if (verify_hash) {
        node_block_id actual;
        node_block_hash(p, n, &actual);
        if (memcmp(actual.bytes, id->bytes, NODE_BLOCK_ID_BYTES) != 0) {
            rocksdb_pinnableslice_destroy(v);
            node__report_corruption(s, id, "SHA-256 mismatch on read");
            node__errmsg_set("block read: SHA-256 of the data does not match its id");
            return TERN_ECORRUPT;
        }
    }
    void *copy = malloc(n ? n : 1);
    if (copy == NULL) {
        rocksdb_pinnableslice_destroy(v);
        return TERN_ENOMEM;
    }
    memcpy(copy, p, n);
    rocksdb_pinnableslice_destroy(v);
    *data_out = copy;
    *len_out = n;
    return 0;
}

int node_store_block_read(node_store *s, const node_block_id *id, size_t offset, void *buf,
                          size_t len)
{
    rocksdb_pinnableslice_t *v;
    int rc = block_fetch(s, id, &v);
    if (rc != 0) return rc;
    size_t n;
    const char *p = rocksdb_pinnableslice_value(v, &n);
    if (offset > n || len > n - offset) {
        node__errmsg_set("block read: range %zu+%zu outside a %zu-byte block", offset, len, n);
        rc = TERN_ERANGE;
    } else if (len > 0) {
        memcpy(buf, p + offset, len);
    }
    rocksdb_pinnableslice_destroy(v);
    return rc;
}
