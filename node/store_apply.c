/* Replicated-state support in the store: applied index, client sessions, checkpoints. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store_internal.h"

/*
 * The Raft log is the durable record of every replicated change; the store
 * applies it without fsync and records, in the same WAL stream, which index
 * it has applied ("raft/applied") and each client session ("raft/session/
 * <hex id>", an opaque record of node_sm's). RocksDB recovers a prefix of
 * its WAL after a crash, so the applied index it recovers never runs ahead
 * of the state it describes; the group replays the log after it, and every
 * command is idempotent on the state (see node/sm.c).
 *
 * Replicated meta keys are "counters" and "raft/..."; the others
 * ("format", "scrub/cursor", "quarantine/...", "user/...") describe this
 * node's copy only and are never copied by a checkpoint install.
 */

#define APPLIED_KEY    "raft/applied"
#define SESSION_PREFIX "raft/session/"
/* Geo log keys sort by index: the prefix, then 16 hex digits of the big-endian index. */
#define GEOLOG_PREFIX "raft/geolog/"
#define GEO_HLC_KEY   "raft/geo/hlc"
/* Bytes of puts gathered before an install writes a batch. */
#define INSTALL_BATCH_BYTES (8u << 20)

static size_t session_key(char *buf, uint64_t client_id)
{
    size_t n = strlen(SESSION_PREFIX);
    memcpy(buf, SESSION_PREFIX, n);
    uint8_t be[8];
    for (int k = 0; k < 8; k++)
        be[k] = (uint8_t)(client_id >> (56 - 8 * k));
    tern_hex(be, 8, buf + n);
    return n + 16;
}

_Thread_local node__apply_stamp *node__stamp;
/* The stamp just ended, for node_store_applied_put's "always" records (apply thread only). */
static _Thread_local node__apply_stamp *last_stamp;

static void stamp_put(node_store *s, rocksdb_writebatch_t *b, uint64_t index, uint64_t client_id,
                      const void *session, size_t session_len)
{
    uint8_t le[8];
    tern_le_put_u64(le, index);
    rocksdb_writebatch_put_cf(b, s->cf[NODE__CF_META], APPLIED_KEY, strlen(APPLIED_KEY),
                              (const char *)le, 8);
    if (session != NULL) {
        char key[64];
        size_t key_len = session_key(key, client_id);
        rocksdb_writebatch_put_cf(b, s->cf[NODE__CF_META], key, key_len, session, session_len);
    }
}

static size_t geolog_key(char *buf, uint64_t index)
{
    size_t n = strlen(GEOLOG_PREFIX);
    memcpy(buf, GEOLOG_PREFIX, n);
    uint8_t be[8];
    for (int k = 0; k < 8; k++)
        be[k] = (uint8_t)(index >> (56 - 8 * k));
    tern_hex(be, 8, buf + n);
    return n + 16;
}

node__apply_stamp *node__stamp_add(node_store *s, rocksdb_writebatch_t *b)
{
    node__apply_stamp *st = node__stamp;
    if (st == NULL || st->s != s || st->consumed) return NULL;
    stamp_put(s, b, st->index, st->client_id, st->session, st->session_len);
    for (size_t i = 0; i < st->extra_count; i++)
        rocksdb_writebatch_put_cf(b, s->cf[NODE__CF_META], st->extras[i].key, st->extras[i].key_len,
                                  (const char *)st->extras[i].value, st->extras[i].value_len);
    if (st->geo != NULL) {
        char key[64];
        size_t key_len = geolog_key(key, st->index);
        rocksdb_writebatch_put_cf(b, s->cf[NODE__CF_META], key, key_len, st->geo, st->geo_len);
        uint8_t le[8];
        tern_le_put_u64(le, st->geo_hlc);
        rocksdb_writebatch_put_cf(b, s->cf[NODE__CF_META], GEO_HLC_KEY, strlen(GEO_HLC_KEY),
                                  (const char *)le, 8);
    }
    return st;
}

void node_store_apply_stamp_meta(node_store *s, const char *key, const void *value, size_t len,
                                 bool always)
{
    node__apply_stamp *st = node__stamp;
    assert(st != NULL && st->s == s && !st->consumed);
    assert(strncmp(key, "raft/", 5) == 0); /* replicated keys only */
    assert(st->extra_count < NODE__STAMP_EXTRAS_MAX && len <= NODE__STAMP_VALUE_MAX);
    size_t key_len = strlen(key);
    assert(key_len <= NODE__STAMP_KEY_MAX);
    memcpy(st->extras[st->extra_count].key, key, key_len);
    st->extras[st->extra_count].key_len = key_len;
    memcpy(st->extras[st->extra_count].value, value, len);
    st->extras[st->extra_count].value_len = len;
    st->extras[st->extra_count].always = always;
    st->extra_count++;
}

int node_store_raft_meta_get(node_store *s, const char *key, void *out, size_t cap, size_t *len)
{
    char *v = NULL;
    size_t n = 0;
    int rc = node__get(s, NODE__CF_META, key, strlen(key), &v, &n);
    if (rc != 0) return rc;
    if (n > cap) {
        rocksdb_free(v);
        return TERN_ECORRUPT;
    }
    memcpy(out, v, n);
    *len = n;
    rocksdb_free(v);
    return 0;
}

int node_store_raft_meta_scan(node_store *s, const char *prefix, const char *after, size_t max,
                              int (*fn)(void *ctx, const char *key, size_t key_len,
                                        const void *value, size_t value_len),
                              void *ctx)
{
    size_t prefix_len = strlen(prefix);
    const char *start = after && *after ? after : prefix;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[NODE__CF_META]);
    int count = 0;
    rocksdb_iter_seek(it, start, strlen(start));
    if (after && *after && rocksdb_iter_valid(it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen == strlen(after) && memcmp(k, after, klen) == 0) rocksdb_iter_next(it);
    }
    for (; rocksdb_iter_valid(it) && (size_t)count < max; rocksdb_iter_next(it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen < prefix_len || memcmp(k, prefix, prefix_len) != 0) break;
        const char *v = rocksdb_iter_value(it, &vlen);
        count++;
        if (fn(ctx, k, klen, v, vlen) != 0) break;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (err != NULL) {
        free(err);
        return TERN_EIO;
    }
    return count;
}

int node_store_raft_meta_delete(node_store *s, const char *key)
{
    int rc = node__check_writable(s);
    if (rc != 0) return rc;
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    rocksdb_writebatch_delete_cf(b, s->cf[NODE__CF_META], key, strlen(key));
    /* Not synced: the Raft log is the durable record of the command that deletes it. */
    rc = node__write(s, b, false, "replicated meta delete");
    rocksdb_writebatch_destroy(b);
    return rc;
}

void node_store_apply_stamp_geo(node_store *s, const void *record, size_t len, uint64_t hlc)
{
    node__apply_stamp *st = node__stamp;
    assert(st != NULL && st->s == s && !st->consumed);
    st->geo = record;
    st->geo_len = len;
    st->geo_hlc = hlc;
}

int node_store_geo_hlc_get(node_store *s, uint64_t *out)
{
    char *v = NULL;
    size_t n = 0;
    *out = 0;
    int rc = node__get(s, NODE__CF_META, GEO_HLC_KEY, strlen(GEO_HLC_KEY), &v, &n);
    if (rc == TERN_ENOTFOUND) return 0;
    if (rc != 0) return rc;
    if (n == 8) *out = tern_le_get_u64((const uint8_t *)v);
    rocksdb_free(v);
    return n == 8 ? 0 : TERN_ECORRUPT;
}

int node_store_geolog_trim(node_store *s, uint64_t upto)
{
    if (upto == 0) return 0;
    char from[64], to[64];
    size_t from_len = geolog_key(from, 0);
    size_t to_len = geolog_key(to, upto == UINT64_MAX ? upto : upto + 1);
    node__commit c;
    int rc = node__commit_begin(s, &c);
    if (rc == 0) {
        /* One range tombstone, whatever the number of records. */
        rocksdb_writebatch_delete_range_cf(c.batch, s->cf[NODE__CF_META], from, from_len, to,
                                           to_len);
        rc = node__commit_finish(&c, "geo log trim");
    }
    node__commit_end(&c);
    return rc;
}

typedef struct {
    int (*fn)(void *ctx, uint64_t index, const void *rec, size_t len);
    void *ctx;
} geolog_visit;

static int geolog_entry(void *ctx, const char *key, size_t key_len, const void *value,
                        size_t value_len)
{
    geolog_visit *g = ctx;
    size_t prefix_len = strlen(GEOLOG_PREFIX);
    uint8_t be[8];
    if (key_len != prefix_len + 16 || tern_unhex(key + prefix_len, 16, be) != 0) return 1;
    uint64_t index = 0;
    for (int i = 0; i < 8; i++)
        index = index << 8 | be[i];
    return g->fn(g->ctx, index, value, value_len);
}

int node_store_geolog_read(node_store *s, uint64_t after, size_t max,
                           int (*fn)(void *ctx, uint64_t index, const void *rec, size_t len),
                           void *ctx)
{
    char start[64];
    geolog_key(start, after);
    geolog_visit g = {fn, ctx};
    return node_store_raft_meta_scan(s, GEOLOG_PREFIX, start, max, geolog_entry, &g);
}

void node_store_apply_stamp_begin(node_store *s, uint64_t index, uint64_t client_id,
                                  const void *session, size_t session_len)
{
    static _Thread_local node__apply_stamp stamp;
    stamp = (node__apply_stamp){.s = s,
                                .index = index,
                                .client_id = client_id,
                                .session = session,
                                .session_len = session_len};
    node__stamp = &stamp;
}

bool node_store_apply_stamp_end(node_store *s)
{
    node__apply_stamp *st = node__stamp;
    node__stamp = NULL;
    last_stamp = st;
    return st != NULL && st->s == s && st->consumed;
}

int node_store_applied_get(node_store *s, uint64_t *index)
{
    char *v = NULL;
    size_t n = 0;
    int rc = node__get(s, NODE__CF_META, APPLIED_KEY, strlen(APPLIED_KEY), &v, &n);
    if (rc == TERN_ENOTFOUND) {
        *index = 0;
        return 0;
    }
    if (rc != 0) return rc;
    if (n != 8) {
        rocksdb_free(v);
        node__errmsg_set("raft/applied record is corrupt (%zu bytes)", n);
        return TERN_ECORRUPT;
    }
    *index = tern_le_get_u64((const uint8_t *)v);
    rocksdb_free(v);
    return 0;
}

int node_store_applied_put(node_store *s, uint64_t index, uint64_t client_id, const void *session,
                           size_t session_len)
{
    int rc = node__check_writable(s);
    if (rc != 0) return rc;
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    stamp_put(s, b, index, client_id, session, session_len);
    /* The bookkeeping of a stamp no commit took, meant to be written whatever happened. */
    node__apply_stamp *last = last_stamp;
    last_stamp = NULL;
    for (size_t i = 0; last != NULL && last->s == s && !last->consumed && last->index == index &&
                       i < last->extra_count;
         i++)
        if (last->extras[i].always)
            rocksdb_writebatch_put_cf(b, s->cf[NODE__CF_META], last->extras[i].key,
                                      last->extras[i].key_len, (const char *)last->extras[i].value,
                                      last->extras[i].value_len);
    rc = node__write(s, b, false, "record applied index");
    rocksdb_writebatch_destroy(b);
    return rc;
}

int node_store_session_get(node_store *s, uint64_t client_id, char **rec, size_t *len)
{
    char key[64];
    size_t key_len = session_key(key, client_id);
    char *v = NULL;
    size_t n = 0;
    int rc = node__get(s, NODE__CF_META, key, key_len, &v, &n);
    if (rc != 0) return rc;
    *rec = malloc(n ? n : 1);
    if (*rec == NULL) {
        rocksdb_free(v);
        return TERN_ENOMEM;
    }
    memcpy(*rec, v, n);
    *len = n;
    rocksdb_free(v);
    return 0;
}

int node_store_checkpoint(node_store *s, const char *dir)
{
    char *err = NULL;
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(s->db, &err);
    if (err != NULL) return node__write_error(s, err, "checkpoint");
    /* log_size_for_flush 0: memtables are flushed first, so the checkpoint is
     * self-contained SST and blob files (hard links) and durable. */
    rocksdb_checkpoint_create(cp, dir, 0, &err);
    rocksdb_checkpoint_object_destroy(cp);
    if (err != NULL) {
        node__errmsg_set("checkpoint into %s: %s", dir, err);
        rocksdb_free(err);
        return TERN_EIO;
    }
    return 0;
}

/* True for meta keys that describe this node's copy only (never replicated). */
static bool meta_key_local(const char *key, size_t len)
{
    return !(len == 8 && memcmp(key, "counters", 8) == 0) &&
           !(len >= 5 && memcmp(key, "raft/", 5) == 0);
}

typedef struct {
    node_store *s;
    rocksdb_writebatch_t *b;
    size_t bytes;
    int rc;
} install_batch;

static void install_flush(install_batch *ib)
{
    if (ib->rc == 0 && ib->bytes > 0) ib->rc = node__write(ib->s, ib->b, false, "install");
    rocksdb_writebatch_clear(ib->b);
    ib->bytes = 0;
}

static int key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c != 0 ? c : (alen > blen) - (alen < blen);
}

/* Makes live column family cf equal to the checkpoint's (meta: replicated keys only). */
static void install_cf(install_batch *ib, rocksdb_t *src, rocksdb_column_family_handle_t *src_cf,
                       int cf)
{
    node_store *s = ib->s;
    rocksdb_iterator_t *live = rocksdb_create_iterator_cf(s->db, s->read_options, s->cf[cf]);
    rocksdb_iterator_t *snap = rocksdb_create_iterator_cf(src, s->read_options, src_cf);
    rocksdb_iter_seek_to_first(live);
    rocksdb_iter_seek_to_first(snap);
    for (;;) {
        bool lv = rocksdb_iter_valid(live), sv = rocksdb_iter_valid(snap);
        if (!lv && !sv) break;
        size_t lk_len = 0, sk_len = 0;
        const char *lk = lv ? rocksdb_iter_key(live, &lk_len) : NULL;
        const char *sk = sv ? rocksdb_iter_key(snap, &sk_len) : NULL;
        if (lv && cf == NODE__CF_META && meta_key_local(lk, lk_len)) {
            rocksdb_iter_next(live);
            continue;
        }
        if (sv && cf == NODE__CF_META && meta_key_local(sk, sk_len)) {
            rocksdb_iter_next(snap);
            continue;
        }
        int c = !lv ? 1 : !sv ? -1 : key_cmp(lk, lk_len, sk, sk_len);
        if (c < 0) { /* only live has it */
            rocksdb_writebatch_delete_cf(ib->b, s->cf[cf], lk, lk_len);
            ib->bytes += lk_len;
            rocksdb_iter_next(live);
        } else {
            size_t sv_len = 0, lv_len = 0;
            const char *sval = rocksdb_iter_value(snap, &sv_len);
            const char *lval = c == 0 ? rocksdb_iter_value(live, &lv_len) : NULL;
            if (c != 0 || lv_len != sv_len || memcmp(lval, sval, sv_len) != 0) {
                rocksdb_writebatch_put_cf(ib->b, s->cf[cf], sk, sk_len, sval, sv_len);
                ib->bytes += sk_len + sv_len;
            }
            if (c == 0) rocksdb_iter_next(live);
            rocksdb_iter_next(snap);
        }
        if (ib->bytes >= INSTALL_BATCH_BYTES) install_flush(ib);
        if (ib->rc != 0) break;
    }
    char *err = NULL;
    rocksdb_iter_get_error(live, &err);
    if (err == NULL) rocksdb_iter_get_error(snap, &err);
    if (err != NULL && ib->rc == 0)
        ib->rc = node__read_error(s, err, "install: iterate");
    else if (err != NULL)
        rocksdb_free(err);
    rocksdb_iter_destroy(live);
    rocksdb_iter_destroy(snap);
}

int node_store_checkpoint_install(node_store *s, const char *dir)
{
    int rc = node__check_writable(s);
    if (rc != 0) return rc;
    rocksdb_column_family_handle_t *src_cf[NODE__CF_COUNT] = {0};
    char *err = NULL;
    rocksdb_t *src = rocksdb_open_for_read_only_column_families(
        s->db_options, dir, NODE__CF_COUNT, node__cf_names,
        (const rocksdb_options_t *const *)s->cf_options, src_cf, 0, &err);
    if (err != NULL) {
        node__errmsg_set("install: open checkpoint %s: %s", dir, err);
        rocksdb_free(err);
        return TERN_ECORRUPT;
    }
    pthread_mutex_lock(&s->commit_mu);
    install_batch ib = {.s = s, .b = rocksdb_writebatch_create()};
    for (int cf = NODE__CF_BLOCKS; cf < NODE__CF_COUNT && ib.rc == 0; cf++)
        install_cf(&ib, src, src_cf[cf], cf);
    install_flush(&ib);
    rocksdb_writebatch_destroy(ib.b);
    rc = ib.rc;
    if (rc == 0) {
        char *v = NULL;
        size_t n = 0;
        rc = node__get(s, NODE__CF_META, "counters", 8, &v, &n);
        if (rc == 0) {
            rc = node__counters_decode(v, n, &s->counters);
            rocksdb_free(v);
        }
        if (rc != 0) node__errmsg_set("install: the checkpoint's counters are unreadable");
    }
    pthread_mutex_unlock(&s->commit_mu);
    for (int cf = 0; cf < NODE__CF_COUNT; cf++)
        if (src_cf[cf] != NULL) rocksdb_column_family_handle_destroy(src_cf[cf]);
    rocksdb_close(src);
    return rc;
}
