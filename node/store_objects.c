/* Buckets and objects: bucket records, manifest commits with refcounts, and key listings. */
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* ---------------------------------------------------------------- buckets */

static int bucket_exists(node_store *s, const char *name, bool *exists)
{
    return node__exists(s, NODE__CF_BUCKETS, name, strlen(name), exists);
}

int node_store_bucket_create(node_store *s, const char *name, const char *region,
                             int64_t created_ms)
{
    if (region == NULL) region = "";
    if (!node__valid_bucket(name) || strlen(region) > NODE_REGION_MAX) {
        node__errmsg_set("bucket create: invalid name or region");
        return TERN_EINVAL;
    }
    node_bucket bk = {.created_ms = created_ms};
    strcpy(bk.name, name);
    strcpy(bk.region, region);
    node_bucket_policy_default(&bk.policy);
    node__buf rec = {0};
    int rc = node__bucket_encode(&bk, &rec);
    if (rc != 0) return rc;
    node__commit c;
    rc = node__commit_begin(s, &c);
    bool exists = false;
    if (rc == 0) rc = bucket_exists(s, name, &exists);
    if (rc == 0 && exists) {
        node__errmsg_set("bucket %s already exists", name);
        rc = TERN_EEXIST;
    }
    if (rc == 0) {
        rocksdb_writebatch_put_cf(c.batch, s->cf[NODE__CF_BUCKETS], name, strlen(name),
                                  (const char *)rec.data, rec.len);
        c.counters.bucket_count++;
        rc = node__commit_finish(&c, "bucket create");
    }
    node__commit_end(&c);
    node__buf_free(&rec);
    return rc;
}

int node_store_bucket_policy_set(node_store *s, const char *name, const node_bucket_policy *p)
{
    char why[160];
    if (node_bucket_policy_check(p, 0, why, sizeof why) != 0) {
        node__errmsg_set("bucket policy: %s", why);
        return TERN_EINVAL;
    }
    if (!node__valid_bucket(name)) return TERN_ENOTFOUND;
    node__commit c;
    int rc = node__commit_begin(s, &c);
    node_bucket bk;
    node__buf rec = {0};
    /* Read inside the commit: commits are serialized, so no other change slips between the
     * read and the write of the record. */
    if (rc == 0) rc = node_store_bucket_get(s, name, &bk);
    if (rc == 0) {
        bk.policy = *p;
        rc = node__bucket_encode(&bk, &rec);
    }
    if (rc == 0) {
        rocksdb_writebatch_put_cf(c.batch, s->cf[NODE__CF_BUCKETS], name, strlen(name),
                                  (const char *)rec.data, rec.len);
        rc = node__commit_finish(&c, "bucket policy");
    }
    node__commit_end(&c);
    node__buf_free(&rec);
    return rc;
}

int node_store_bucket_get(node_store *s, const char *name, node_bucket *out)
{
    if (!node__valid_bucket(name)) return TERN_ENOTFOUND;
    char *v;
    size_t n;
    int rc = node__get(s, NODE__CF_BUCKETS, name, strlen(name), &v, &n);
    if (rc != 0) return rc;
    rc = node__bucket_decode(name, v, n, out);
    rocksdb_free(v);
    return rc;
}

int node_store_bucket_get_cached(node_store *s, const char *name, node_bucket *out)
{
    if (!node__valid_bucket(name)) return TERN_ENOTFOUND;
    char *v;
    size_t n;
    int rc = node__get_ro(s, s->read_cached, NODE__CF_BUCKETS, name, strlen(name), &v, &n);
    if (rc != 0) return rc;
    rc = node__bucket_decode(name, v, n, out);
    rocksdb_free(v);
    return rc;
}

int node_store_bucket_delete(node_store *s, const char *name)
{
    if (!node__valid_bucket(name)) return TERN_ENOTFOUND;
    char prefix[NODE_BUCKET_NAME_MAX + 2];
    size_t n = strlen(name);
    node__commit c;
    int rc = node__commit_begin(s, &c);
    bool exists = false, objects = false, uploads = false;
    if (rc == 0) rc = bucket_exists(s, name, &exists);
    if (rc == 0 && !exists) rc = TERN_ENOTFOUND;
    if (rc == 0) { /* "<bucket>/" starts the bucket's object keys */
        memcpy(prefix, name, n);
        prefix[n] = '/';
        rc = node__prefix_nonempty(s, NODE__CF_OBJECTS, prefix, n + 1, &objects);
    }
    if (rc == 0) { /* "u<bucket>/" starts its upload records */
        prefix[0] = 'u';
        memcpy(prefix + 1, name, n);
        prefix[n + 1] = '/';
        rc = node__prefix_nonempty(s, NODE__CF_UPLOADS, prefix, n + 2, &uploads);
    }
    if (rc == 0 && (objects || uploads)) {
        node__errmsg_set("bucket %s holds %s", name, objects ? "objects" : "uploads");
        rc = TERN_ENOTEMPTY;
    }
    if (rc == 0) {
        rocksdb_writebatch_delete_cf(c.batch, s->cf[NODE__CF_BUCKETS], name, n);
        node__counter_sub(&c.counters.bucket_count, 1, "bucket_count");
        rc = node__commit_finish(&c, "bucket delete");
    }
    node__commit_end(&c);
    return rc;
}

int node_store_bucket_list(node_store *s, node_bucket **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    size_t cap = 0, n = 0;
    node_bucket *list = NULL;
    int rc = 0;
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(s->db, s->read_options, s->cf[NODE__CF_BUCKETS]);
    for (rocksdb_iter_seek_to_first(it); rc == 0 && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t key_len, value_len;
        const char *key = rocksdb_iter_key(it, &key_len);
        const char *value = rocksdb_iter_value(it, &value_len);
        char name[NODE_BUCKET_NAME_MAX + 1];
        if (key_len > NODE_BUCKET_NAME_MAX) {
            rc = TERN_ECORRUPT;
            break;
        }
        memcpy(name, key, key_len);
        name[key_len] = '\0';
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            node_bucket *grown = realloc(list, cap * sizeof *list);
            if (grown == NULL) {
                rc = TERN_ENOMEM;
                break;
            }
            list = grown;
        }
        rc = node__bucket_decode(name, value, value_len, &list[n]);
        if (rc == 0) n++;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    if (err != NULL && rc == 0)
        rc = node__read_error(s, err, "bucket list");
    else if (err != NULL)
        rocksdb_free(err);
    if (rc != 0) {
        free(list);
        return rc;
    }
    *out = list;
    *count = n;
    return 0;
}

/* ---------------------------------------------------------------- objects */

static int load_manifest_ro(node_store *s, const rocksdb_readoptions_t *ro, const char *okey,
                            size_t okey_len, node_manifest **out)
{
    char *v;
    size_t n;
    int rc = node__get_ro(s, ro, NODE__CF_OBJECTS, okey, okey_len, &v, &n);
    if (rc != 0) return rc;
    rc = node__manifest_decode(v, n, out);
    rocksdb_free(v);
    if (rc == TERN_ECORRUPT) node__errmsg_set("manifest of %.*s is corrupt", (int)okey_len, okey);
    return rc;
}

static int load_manifest(node_store *s, const char *okey, size_t okey_len, node_manifest **out)
{
    return load_manifest_ro(s, s->read_options, okey, okey_len, out);
}

/*
 * Adds to commit c the removal of the object stored at okey, if any: its block
 * references are dropped and the counters adjusted. *existed says whether
 * there was one. A corrupt old manifest leaks its references (logged) rather
 * than blocking every later write of the key.
 */
static int drop_old_object(node__commit *c, const char *okey, size_t okey_len, bool *existed)
{
    node_manifest *old = NULL;
    int rc = load_manifest(c->s, okey, okey_len, &old);
    *existed = rc == 0 || rc == TERN_ECORRUPT;
    if (rc == TERN_ENOTFOUND) return 0;
    if (rc == TERN_ECORRUPT) {
        atomic_fetch_add(&c->s->corruption_count, 1);
        node_log(NODE_LOG_ERROR, "store", "%s; replacing it leaks its block references",
                 node_store_errmsg(c->s));
        node__counter_sub(&c->counters.object_count, 1, "object_count");
        return 0;
    }
    if (rc != 0) return rc;
    node__commit_refs(c, old->blocks, old->block_count, -1);
    node__counter_sub(&c->counters.object_count, 1, "object_count");
    node__counter_sub(&c->counters.logical_bytes, old->size_bytes, "logical_bytes");
    node_manifest_free(old);
    return 0;
}

/* Adds to commit c the store of manifest record rec as okey (references and counters). */
static void put_new_object(node__commit *c, const char *okey, size_t okey_len,
                           const node_manifest *m, const node__buf *rec)
{
    node__commit_refs(c, m->blocks, m->block_count, +1);
    c->counters.object_count++;
    c->counters.logical_bytes += m->size_bytes;
    rocksdb_writebatch_put_cf(c->batch, c->s->cf[NODE__CF_OBJECTS], okey, okey_len,
                              (const char *)rec->data, rec->len);
}

/* The body shared by object put and multipart complete (caller holds commit c). */
int node__object_replace(node__commit *c, const char *bucket, const char *key,
                         const node_manifest *m, const node__buf *rec)
{
    char okey[NODE__KEY_BYTES_MAX];
    size_t okey_len = node__object_key(okey, bucket, key);
    bool existed;
    int rc = drop_old_object(c, okey, okey_len, &existed);
    if (rc == 0) put_new_object(c, okey, okey_len, m, rec);
    return rc;
}

int node_store_object_put(node_store *s, const char *bucket, const char *key,
                          const node_manifest *m)
{
    return node_store_object_put_placed(s, bucket, key, m, false);
}

int node_store_object_put_placed(node_store *s, const char *bucket, const char *key,
                                 const node_manifest *m, bool blocks_elsewhere)
{
    if (!node__valid_bucket(bucket) || !node__valid_key(key) ||
        node__manifest_validate(m, true) != 0) {
        node__errmsg_set("object put: invalid bucket, key or manifest");
        return TERN_EINVAL;
    }
    node__buf rec = {0};
    int rc = node__manifest_encode(m, true, &rec);
    if (rc != 0) return rc;
    node__commit c;
    rc = node__commit_begin(s, &c);
    bool exists = false;
    if (rc == 0) rc = bucket_exists(s, bucket, &exists);
    if (rc == 0 && !exists) {
        node__errmsg_set("bucket %s does not exist", bucket);
        rc = TERN_ENOTFOUND;
    }
    c.blocks_elsewhere = blocks_elsewhere;
    if (rc == 0) rc = node__object_replace(&c, bucket, key, m, &rec);
    if (rc == 0) rc = node__commit_finish(&c, "object put");
    node__commit_end(&c);
    node__buf_free(&rec);
    return rc;
}

int node_store_object_get(node_store *s, const char *bucket, const char *key, node_manifest **out)
{
    *out = NULL;
    if (!node__valid_bucket(bucket) || !node__valid_key(key)) return TERN_ENOTFOUND;
    char okey[NODE__KEY_BYTES_MAX];
    size_t okey_len = node__object_key(okey, bucket, key);
    return load_manifest(s, okey, okey_len, out);
}

int node__object_get_ro(node_store *s, const rocksdb_readoptions_t *ro, const char *bucket,
                        const char *key, node_manifest **out)
{
    *out = NULL;
    if (!node__valid_bucket(bucket) || !node__valid_key(key)) return TERN_ENOTFOUND;
    char okey[NODE__KEY_BYTES_MAX];
    size_t okey_len = node__object_key(okey, bucket, key);
    return load_manifest_ro(s, ro, okey, okey_len, out);
}

int node_store_object_get_cached(node_store *s, const char *bucket, const char *key,
                                 node_manifest **out)
{
    *out = NULL;
    if (!node__valid_bucket(bucket) || !node__valid_key(key)) return TERN_ENOTFOUND;
    char okey[NODE__KEY_BYTES_MAX];
    size_t okey_len = node__object_key(okey, bucket, key);
    return load_manifest_ro(s, s->read_cached, okey, okey_len, out);
}

int node_store_object_delete(node_store *s, const char *bucket, const char *key)
{
    if (!node__valid_bucket(bucket) || !node__valid_key(key)) return TERN_ENOTFOUND;
    char okey[NODE__KEY_BYTES_MAX];
    size_t okey_len = node__object_key(okey, bucket, key);
    node__commit c;
    int rc = node__commit_begin(s, &c);
    bool existed = false;
    if (rc == 0) rc = drop_old_object(&c, okey, okey_len, &existed);
    if (rc == 0 && !existed) rc = TERN_ENOTFOUND;
    if (rc == 0) {
        rocksdb_writebatch_delete_cf(c.batch, s->cf[NODE__CF_OBJECTS], okey, okey_len);
        rc = node__commit_finish(&c, "object delete");
    }
    node__commit_end(&c);
    return rc;
}

/* ---------------------------------------------------------------- listing */

struct node_object_iter {
    node_store *s;
    const rocksdb_snapshot_t *snapshot;
    rocksdb_readoptions_t *read_options;
    rocksdb_iterator_t *it;
    char prefix[NODE_BUCKET_NAME_MAX + 2]; /* "<bucket>/": also the lower bound */
    size_t prefix_len;
    char upper[NODE_BUCKET_NAME_MAX + 2]; /* "<bucket>0": '0' is '/' + 1 */
    char key[NODE_KEY_BYTES_MAX + 1];     /* the entry handed out by the last next */
};

int node_store_object_iter_open(node_store *s, const char *bucket, const char *seek_key,
                                node_object_iter **out)
{
    *out = NULL;
    if (!node__valid_bucket(bucket)) return TERN_ENOTFOUND;
    bool exists;
    int rc = bucket_exists(s, bucket, &exists);
    if (rc != 0) return rc;
    if (!exists) {
        node__errmsg_set("bucket %s does not exist", bucket);
        return TERN_ENOTFOUND;
    }
    node_object_iter *it = calloc(1, sizeof *it);
    if (it == NULL) return TERN_ENOMEM;
    it->s = s;
    it->prefix_len = strlen(bucket) + 1;
    memcpy(it->prefix, bucket, it->prefix_len - 1);
    it->prefix[it->prefix_len - 1] = '/';
    memcpy(it->upper, it->prefix, it->prefix_len);
    it->upper[it->prefix_len - 1] = '0';
    /* One snapshot: the whole listing sees a single consistent state. */
    it->snapshot = rocksdb_create_snapshot(s->db);
    it->read_options = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(it->read_options, 1);
    rocksdb_readoptions_set_snapshot(it->read_options, it->snapshot);
    rocksdb_readoptions_set_iterate_lower_bound(it->read_options, it->prefix, it->prefix_len);
    rocksdb_readoptions_set_iterate_upper_bound(it->read_options, it->upper, it->prefix_len);
    it->it = rocksdb_create_iterator_cf(s->db, it->read_options, s->cf[NODE__CF_OBJECTS]);
    node_store_object_iter_seek(it, seek_key);
    *out = it;
    return 0;
}

void node_store_object_iter_seek(node_object_iter *it, const char *key)
{
    char target[NODE__KEY_BYTES_MAX];
    size_t key_len = key ? strnlen(key, NODE_KEY_BYTES_MAX) : 0;
    memcpy(target, it->prefix, it->prefix_len);
    if (key_len > 0) memcpy(target + it->prefix_len, key, key_len);
    rocksdb_iter_seek(it->it, target, it->prefix_len + key_len);
}

int node_store_object_iter_next(node_object_iter *it, node_object_entry *out)
{
    memset(out, 0, sizeof *out);
    if (!rocksdb_iter_valid(it->it)) {
        char *err = NULL;
        rocksdb_iter_get_error(it->it, &err);
        return err != NULL ? node__read_error(it->s, err, "object listing") : 0;
    }
    size_t key_len, value_len;
    const char *key = rocksdb_iter_key(it->it, &key_len);
    const char *value = rocksdb_iter_value(it->it, &value_len);
    /* The bounds keep us inside "<bucket>/"; check anyway rather than trust them. */
    if (key_len <= it->prefix_len || key_len - it->prefix_len > NODE_KEY_BYTES_MAX ||
        memcmp(key, it->prefix, it->prefix_len) != 0)
        return 0;
    int rc = node__manifest_decode_head(value, value_len, &out->size_bytes, out->etag,
                                        &out->last_modified_ms);
    if (rc != 0) {
        node__errmsg_set("manifest of %.*s is corrupt", (int)key_len, key);
        return rc;
    }
    memcpy(it->key, key + it->prefix_len, key_len - it->prefix_len);
    it->key[key_len - it->prefix_len] = '\0';
    out->key = it->key;
    rocksdb_iter_next(it->it);
    return 1;
}

void node_store_object_iter_close(node_object_iter *it)
{
    if (it == NULL) return;
    rocksdb_iter_destroy(it->it);
    rocksdb_readoptions_destroy(it->read_options);
    rocksdb_release_snapshot(it->s->db, it->snapshot);
    free(it);
}
