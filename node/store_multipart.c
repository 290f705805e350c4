/* Multipart uploads: upload records, parts with refcounts, completion, abort and listing. */
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/*
 * Keys in the uploads CF:
 *   upload: 'u' <bucket> '/' <key> '\0' <upload id>    -> upload record
 *   part:   'p' <upload id (32 hex)> <u32 BE number>    -> part record
 * Parts are keyed by the random upload id alone; every operation first looks
 * up the upload record, which also checks the id belongs to bucket/key.
 */
#define PART_KEY_BYTES (1 + NODE__UPLOAD_ID_HEX + 4)

static bool valid_upload_id(const char *id)
{
    if (id == NULL || strnlen(id, NODE__UPLOAD_ID_HEX + 1) != NODE__UPLOAD_ID_HEX) return false;
    for (int i = 0; i < NODE__UPLOAD_ID_HEX; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f'))) return false;
    return true;
}

/* "u<bucket>/": the start of a bucket's upload records. */
static size_t upload_base(char *buf, const char *bucket)
{
    size_t n = strlen(bucket);
    buf[0] = 'u';
    memcpy(buf + 1, bucket, n);
    buf[n + 1] = '/';
    return n + 2;
}

static size_t upload_key(char *buf, const char *bucket, const char *key, const char *upload_id)
{
    size_t n = upload_base(buf, bucket), key_len = strlen(key);
    memcpy(buf + n, key, key_len);
    n += key_len;
    buf[n++] = '\0';
    memcpy(buf + n, upload_id, NODE__UPLOAD_ID_HEX);
    return n + NODE__UPLOAD_ID_HEX;
}

static void part_key(char buf[PART_KEY_BYTES], const char *upload_id, uint32_t number)
{
    buf[0] = 'p';
    memcpy(buf + 1, upload_id, NODE__UPLOAD_ID_HEX);
    for (int i = 0; i < 4; i++)
        buf[1 + NODE__UPLOAD_ID_HEX + i] = (char)(number >> (24 - 8 * i));
}

/* Builds the upload key after validating the names; TERN_ENOTFOUND for impossible ones. */
static int upload_key_checked(const char *bucket, const char *key, const char *upload_id, char *buf,
                              size_t *len)
{
    if (!node__valid_bucket(bucket) || !node__valid_key(key) || !valid_upload_id(upload_id)) {
        node__errmsg_set("no such upload");
        return TERN_ENOTFOUND;
    }
    *len = upload_key(buf, bucket, key, upload_id);
    return 0;
}

static int upload_exists(node_store *s, const char *ukey, size_t ukey_len)
{
    bool exists;
    int rc = node__exists(s, NODE__CF_UPLOADS, ukey, ukey_len, &exists);
    if (rc == 0 && !exists) {
        node__errmsg_set("no such upload");
        rc = TERN_ENOTFOUND;
    }
    return rc;
}

int node_store_upload_create(node_store *s, const char *bucket, const char *key,
                             const node_manifest *tmpl, int64_t initiated_ms,
                             char upload_id_out[NODE_UPLOAD_ID_MAX + 1])
{
    node_manifest empty = {0};
    if (tmpl == NULL) tmpl = &empty;
    upload_id_out[0] = '\0';
    if (!node__valid_bucket(bucket) || !node__valid_key(key) ||
        node__manifest_validate(tmpl, false) != 0) {
        node__errmsg_set("upload create: invalid bucket, key or template");
        return TERN_EINVAL;
    }
    uint8_t random[NODE__UPLOAD_ID_HEX / 2];
    char upload_id[NODE__UPLOAD_ID_HEX + 1];
    if (RAND_bytes(random, sizeof random) != 1) {
        node__errmsg_set("upload create: no randomness for an upload id");
        return TERN_EIO;
    }
    tern_hex(random, sizeof random, upload_id);
    int rc = node_store_upload_create_id(s, bucket, key, tmpl, initiated_ms, upload_id);
    if (rc == 0) memcpy(upload_id_out, upload_id, sizeof upload_id);
    return rc;
}

int node_store_upload_create_id(node_store *s, const char *bucket, const char *key,
                                const node_manifest *tmpl, int64_t initiated_ms,
                                const char *upload_id)
{
    node_manifest empty = {0};
    if (tmpl == NULL) tmpl = &empty;
    if (!node__valid_bucket(bucket) || !node__valid_key(key) || !valid_upload_id(upload_id) ||
        node__manifest_validate(tmpl, false) != 0) {
        node__errmsg_set("upload create: invalid bucket, key, upload id or template");
        return TERN_EINVAL;
    }
    node__buf rec = {0};
    int rc = node__upload_encode(initiated_ms, tmpl, &rec);
    if (rc != 0) return rc;
    char ukey[NODE__KEY_BYTES_MAX];
    size_t ukey_len = upload_key(ukey, bucket, key, upload_id);
    node__commit c;
    rc = node__commit_begin(s, &c);
    bool exists = false;
    if (rc == 0) rc = node__exists(s, NODE__CF_BUCKETS, bucket, strlen(bucket), &exists);
    if (rc == 0 && !exists) {
        node__errmsg_set("bucket %s does not exist", bucket);
        rc = TERN_ENOTFOUND;
    }
    if (rc == 0) {
        rocksdb_writebatch_put_cf(c.batch, s->cf[NODE__CF_UPLOADS], ukey, ukey_len,
                                  (const char *)rec.data, rec.len);
        rc = node__commit_finish(&c, "upload create");
    }
    node__commit_end(&c);
    node__buf_free(&rec);
    return rc;
}

int node_store_upload_get(node_store *s, const char *bucket, const char *key, const char *upload_id,
                          node_manifest **tmpl_out)
{
    *tmpl_out = NULL;
    char ukey[NODE__KEY_BYTES_MAX];
    size_t ukey_len;
    int rc = upload_key_checked(bucket, key, upload_id, ukey, &ukey_len);
    if (rc != 0) return rc;
    char *v;
    size_t n;
    rc = node__get(s, NODE__CF_UPLOADS, ukey, ukey_len, &v, &n);
    if (rc != 0) return rc;
    int64_t initiated_ms;
    rc = node__upload_decode(v, n, &initiated_ms, tmpl_out);
    rocksdb_free(v);
    return rc;
}

static int part_validate(const node_part *p)
{
    if (p == NULL || p->part_number < 1 || p->part_number > NODE__PART_NUMBER_MAX) return 0;
    if (strnlen(p->etag, sizeof p->etag) > NODE_ETAG_MAX) return 0;
    if (p->block_count > 0 && p->blocks == NULL) return 0;
    uint64_t total = 0;
    for (size_t i = 0; i < p->block_count; i++) {
        if (p->blocks[i].size_bytes > NODE_BLOCK_SIZE_MAX) return 0;
        total += p->blocks[i].size_bytes;
    }
    return total == p->size_bytes;
}

/* Adds to c the drop of the references of the part stored at pkey, if any. */
static int drop_old_part(node__commit *c, const char *pkey)
{
    char *v;
    size_t n;
    int rc = node__get(c->s, NODE__CF_UPLOADS, pkey, PART_KEY_BYTES, &v, &n);
    if (rc == TERN_ENOTFOUND) return 0;
    if (rc != 0) return rc;
    node_part old;
    rc = node__part_decode(v, n, &old);
    rocksdb_free(v);
    if (rc != 0) {
        /* Leaking its references beats refusing every later upload of the part. */
        atomic_fetch_add(&c->s->corruption_count, 1);
        node_log(NODE_LOG_ERROR, "store", "corrupt part record replaced; references leaked");
        return 0;
    }
    node__commit_refs(c, old.blocks, old.block_count, -1);
    free(old.blocks);
    return 0;
}

int node_store_upload_part_put(node_store *s, const char *bucket, const char *key,
                               const char *upload_id, const node_part *part)
{
    char ukey[NODE__KEY_BYTES_MAX], pkey[PART_KEY_BYTES];
    size_t ukey_len;
    int rc = upload_key_checked(bucket, key, upload_id, ukey, &ukey_len);
    if (rc != 0) return rc;
    if (!part_validate(part)) {
        node__errmsg_set("part put: invalid part");
        return TERN_EINVAL;
    }
    part_key(pkey, upload_id, part->part_number);
    node__buf rec = {0};
    rc = node__part_encode(part, &rec);
    if (rc != 0) return rc;
    node__commit c;
    rc = node__commit_begin(s, &c);
    if (rc == 0) rc = upload_exists(s, ukey, ukey_len);
    if (rc == 0) rc = drop_old_part(&c, pkey);
    if (rc == 0) {
        node__commit_refs(&c, part->blocks, part->block_count, +1);
        rocksdb_writebatch_put_cf(c.batch, s->cf[NODE__CF_UPLOADS], pkey, PART_KEY_BYTES,
                                  (const char *)rec.data, rec.len);
        rc = node__commit_finish(&c, "part put");
    }
    node__commit_end(&c);
    node__buf_free(&rec);
    return rc;
}

/* Calls fn for each part of an upload in number order; fn owns part->blocks. */
typedef int (*part_fn)(void *ctx, const char *pkey, node_part *part);

static int parts_each(node_store *s, const char *upload_id, part_fn fn, void *ctx)
{
    char prefix[1 + NODE__UPLOAD_ID_HEX];
    prefix[0] = 'p';
    memcpy(prefix + 1, upload_id, NODE__UPLOAD_ID_HEX);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(s->db, s->read_options, s->cf[NODE__CF_UPLOADS]);
    int rc = 0;
    for (rocksdb_iter_seek(it, prefix, sizeof prefix); rc == 0 && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key(it, &key_len);
        if (key_len < sizeof prefix || memcmp(key, prefix, sizeof prefix) != 0) break;
        const char *value = rocksdb_iter_value(it, &value_len);
        node_part part;
        rc = key_len == PART_KEY_BYTES ? node__part_decode(value, value_len, &part) : TERN_ECORRUPT;
        if (rc == 0)
            rc = fn(ctx, key, &part);
        else
            node__errmsg_set("corrupt part record in upload %s", upload_id);
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL && rc == 0) return node__read_error(s, err, "parts scan");
    if (err != NULL) rocksdb_free(err);
    return rc;
}

typedef struct {
    node_part *parts;
    size_t count;
    size_t cap;
} part_list;

static int collect_part(void *ctx, const char *pkey, node_part *part)
{
    part_list *l = ctx;
    (void)pkey;
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        node_part *grown = realloc(l->parts, cap * sizeof *grown);
        if (grown == NULL) {
            free(part->blocks);
            return TERN_ENOMEM;
        }
        l->parts = grown;
        l->cap = cap;
    }
    l->parts[l->count++] = *part;
    return 0;
}

int node_store_upload_parts_list(node_store *s, const char *bucket, const char *key,
                                 const char *upload_id, node_part **parts, size_t *count)
{
    *parts = NULL;
    *count = 0;
    char ukey[NODE__KEY_BYTES_MAX];
    size_t ukey_len;
    int rc = upload_key_checked(bucket, key, upload_id, ukey, &ukey_len);
    if (rc == 0) rc = upload_exists(s, ukey, ukey_len);
    if (rc != 0) return rc;
    part_list l = {0};
    rc = parts_each(s, upload_id, collect_part, &l);
    if (rc != 0) {
        node_parts_free(l.parts, l.count);
        return rc;
    }
    *parts = l.parts;
    *count = l.count;
    return 0;
}

void node_parts_free(node_part *parts, size_t count)
{
    for (size_t i = 0; parts != NULL && i < count; i++)
        free(parts[i].blocks);
    free(parts);
}

static int drop_part(void *ctx, const char *pkey, node_part *part)
{
    node__commit *c = ctx;
    node__commit_refs(c, part->blocks, part->block_count, -1);
    free(part->blocks);
    rocksdb_writebatch_delete_cf(c->batch, c->s->cf[NODE__CF_UPLOADS], pkey, PART_KEY_BYTES);
    return 0;
}

/* Adds to c the removal of an upload record and all its parts with their references. */
static int drop_upload(node__commit *c, const char *ukey, size_t ukey_len, const char *upload_id)
{
    int rc = parts_each(c->s, upload_id, drop_part, c);
    if (rc == 0) rocksdb_writebatch_delete_cf(c->batch, c->s->cf[NODE__CF_UPLOADS], ukey, ukey_len);
    return rc;
}

int node_store_upload_complete(node_store *s, const char *bucket, const char *key,
                               const char *upload_id, const node_manifest *final)
{
    char ukey[NODE__KEY_BYTES_MAX];
    size_t ukey_len;
    int rc = upload_key_checked(bucket, key, upload_id, ukey, &ukey_len);
    if (rc != 0) return rc;
    if (node__manifest_validate(final, true) != 0) {
        node__errmsg_set("upload complete: invalid manifest");
        return TERN_EINVAL;
    }
    node__buf rec = {0};
    rc = node__manifest_encode(final, true, &rec);
    if (rc != 0) return rc;
    node__commit c;
    rc = node__commit_begin(s, &c);
    if (rc == 0) rc = upload_exists(s, ukey, ukey_len);
    /* The parts' references drop and the final ones are added in one commit, so
     * blocks the final manifest keeps never touch zero. */
    if (rc == 0) rc = drop_upload(&c, ukey, ukey_len, upload_id);
    if (rc == 0) rc = node__object_replace(&c, bucket, key, final, &rec);
    if (rc == 0) rc = node__commit_finish(&c, "upload complete");
    node__commit_end(&c);
    node__buf_free(&rec);
    return rc;
}

int node_store_upload_abort(node_store *s, const char *bucket, const char *key,
                            const char *upload_id)
{
    char ukey[NODE__KEY_BYTES_MAX];
    size_t ukey_len;
    int rc = upload_key_checked(bucket, key, upload_id, ukey, &ukey_len);
    if (rc != 0) return rc;
    node__commit c;
    rc = node__commit_begin(s, &c);
    if (rc == 0) rc = upload_exists(s, ukey, ukey_len);
    if (rc == 0) rc = drop_upload(&c, ukey, ukey_len, upload_id);
    if (rc == 0) rc = node__commit_finish(&c, "upload abort");
    node__commit_end(&c);
    return rc;
}

/* ---------------------------------------------------------------- listing */

/* Bytewise order, as RocksDB's default comparator sorts keys. */
static int key_cmp(const char *a, size_t a_len, const char *b, size_t b_len)
{
    int c = memcmp(a, b, TERN_MIN(a_len, b_len));
    if (c != 0) return c;
    return a_len < b_len ? -1 : a_len > b_len;
}

/* The part of the uploads CF a listing walks. */
typedef struct {
    char start[NODE__KEY_BYTES_MAX]; /* "u<bucket>/<prefix>": every result starts with it */
    size_t start_len;
    size_t base_len;                  /* of "u<bucket>/" */
    char marker[NODE__KEY_BYTES_MAX]; /* results sort strictly after it (marker_len 0: none) */
    size_t marker_len;
    char upper[NODE_BUCKET_NAME_MAX + 3]; /* "u<bucket>0" */
} list_range;

static void list_range_init(list_range *r, const char *bucket, const char *prefix,
                            const char *key_marker, const char *upload_id_marker)
{
    size_t prefix_len = prefix ? strlen(prefix) : 0;
    r->base_len = upload_base(r->start, bucket);
    memcpy(r->upper, r->start, r->base_len);
    r->upper[r->base_len - 1] = '0'; /* '0' is '/' + 1: just past the bucket */
    memcpy(r->start + r->base_len, prefix, prefix_len);
    r->start_len = r->base_len + prefix_len;
    r->marker_len = 0;
    if (key_marker == NULL || key_marker[0] == '\0') return;
    size_t n = strlen(key_marker);
    memcpy(r->marker, r->start, r->base_len);
    memcpy(r->marker + r->base_len, key_marker, n);
    n += r->base_len;
    if (upload_id_marker != NULL && upload_id_marker[0] != '\0') {
        /* Same key, later upload ids: the exact marker itself is skipped while listing. */
        r->marker[n++] = '\0';
        size_t id_len = strlen(upload_id_marker);
        memcpy(r->marker + n, upload_id_marker, id_len);
        n += id_len;
    } else {
        /* Every upload of key_marker sorts below "<key_marker>\1"; longer keys above. */
        r->marker[n++] = '\1';
    }
    r->marker_len = n;
}

/* Decodes one upload record into e; 1 if it is a listing result, 0 to skip it, or an error. */
static int list_entry(const list_range *r, const char *key, size_t key_len, const char *value,
                      size_t value_len, node_upload_entry *e)
{
    if (r->marker_len > 0 && key_cmp(key, key_len, r->marker, r->marker_len) <= 0) return 0;
    const char *sep = memchr(key + r->base_len, '\0', key_len - r->base_len);
    size_t id_len = sep ? key_len - (size_t)(sep + 1 - key) : 0;
    if (sep == NULL || id_len == 0 || id_len > NODE_UPLOAD_ID_MAX) {
        node__errmsg_set("malformed upload key");
        return TERN_ECORRUPT;
    }
    int rc = node__upload_decode(value, value_len, &e->initiated_ms, NULL);
    if (rc != 0) return rc;
    size_t object_key_len = (size_t)(sep - key) - r->base_len;
    e->key = malloc(object_key_len + 1);
    if (e->key == NULL) return TERN_ENOMEM;
    memcpy(e->key, key + r->base_len, object_key_len);
    e->key[object_key_len] = '\0';
    memcpy(e->upload_id, sep + 1, id_len);
    e->upload_id[id_len] = '\0';
    return 1;
}

/* Makes room for one more entry (capacity doubles, never beyond max_count). */
static int list_grow(node_upload_entry **entries, size_t count, size_t *cap, size_t max_count)
{
    if (count < *cap) return 0;
    size_t want = *cap ? TERN_MIN(2 * *cap, max_count) : TERN_MIN(max_count, (size_t)64);
    node_upload_entry *grown = realloc(*entries, want * sizeof *grown);
    if (grown == NULL) return TERN_ENOMEM;
    memset(grown + count, 0, (want - count) * sizeof *grown);
    *entries = grown;
    *cap = want;
    return 0;
}

static int list_walk(node_store *s, const list_range *r, size_t max_count,
                     node_upload_entry **entries, size_t *count)
{
    size_t cap = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(ro, 1);
    rocksdb_readoptions_set_iterate_upper_bound(ro, r->upper, r->base_len);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, ro, s->cf[NODE__CF_UPLOADS]);
    bool from_marker =
        r->marker_len > 0 && key_cmp(r->marker, r->marker_len, r->start, r->start_len) > 0;
    if (from_marker)
        rocksdb_iter_seek(it, r->marker, r->marker_len);
    else
        rocksdb_iter_seek(it, r->start, r->start_len);
    int rc = 0;
    for (; *count < max_count && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key(it, &key_len);
        if (key_len < r->start_len || memcmp(key, r->start, r->start_len) != 0) break;
        const char *value = rocksdb_iter_value(it, &value_len);
        rc = list_grow(entries, *count, &cap, max_count);
        if (rc != 0) break;
        rc = list_entry(r, key, key_len, value, value_len, &(*entries)[*count]);
        if (rc < 0) break;
        if (rc == 1) (*count)++;
        rc = 0;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (err != NULL && rc == 0) return node__read_error(s, err, "upload listing");
    if (err != NULL) rocksdb_free(err);
    return rc;
}

int node_store_upload_list(node_store *s, const char *bucket, const char *prefix,
                           const char *key_marker, const char *upload_id_marker, size_t max_count,
                           node_upload_entry **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    if (!node__valid_bucket(bucket)) return TERN_ENOTFOUND;
    if ((key_marker && strlen(key_marker) > NODE_KEY_BYTES_MAX) ||
        (upload_id_marker && strlen(upload_id_marker) > NODE_UPLOAD_ID_MAX)) {
        node__errmsg_set("upload list: marker too long");
        return TERN_EINVAL;
    }
    bool exists;
    int rc = node__exists(s, NODE__CF_BUCKETS, bucket, strlen(bucket), &exists);
    if (rc != 0) return rc;
    if (!exists) {
        node__errmsg_set("bucket %s does not exist", bucket);
        return TERN_ENOTFOUND;
    }
    /* No key is longer than the limit, so a longer prefix matches nothing. */
    if (max_count == 0 || (prefix && strlen(prefix) > NODE_KEY_BYTES_MAX)) return 0;
    list_range *r = malloc(sizeof *r);
    if (r == NULL) return TERN_ENOMEM;
    node_upload_entry *entries = NULL;
    list_range_init(r, bucket, prefix, key_marker, upload_id_marker);
    rc = list_walk(s, r, max_count, &entries, count);
    free(r);
    if (rc != 0) {
        node_uploads_free(entries, *count);
        *count = 0;
        return rc;
    }
    *out = entries;
    return 0;
}

void node_uploads_free(node_upload_entry *entries, size_t count)
{
    for (size_t i = 0; entries != NULL && i < count; i++)
        free(entries[i].key);
    free(entries);
}
