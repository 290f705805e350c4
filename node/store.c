/* The store's lifecycle on RocksDB: options, open/close, error translation, meta values, stats. */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/stat.h>

#include "store_internal.h"

#define MIB                       ((size_t)1 << 20)
#define BLOCK_CACHE_BYTES_DEFAULT (64 * MIB)
/*
 * Memtables hold block bytes until they flush to blob files, so their size is
 * most of the node's memory under write load: up to 3 x 16 MiB for blocks,
 * small ones for metadata, and a 64 MiB cap over all of them. With two block
 * buffers per upload that bounds 32 concurrent 1 GiB uploads well under the
 * 200 MiB RSS target (bench/RESULTS.md).
 */
#define BLOCKS_WRITE_BUFFER_BYTES_DEFAULT (16 * MIB)
#define BLOCKS_WRITE_BUFFERS_MAX          3
#define DB_WRITE_BUFFER_BYTES_MAX         (64 * MIB)
#define META_WRITE_BUFFER_BYTES           (4 * MIB)
/* Blocks below this size stay inline in the LSM; block sizes are >= 4 KiB so all go to blobs. */
#define BLOB_MIN_BYTES      4096
#define BLOB_FILE_BYTES     (256 * MIB)
#define META_NAME_BYTES_MAX 255

const char *const node__cf_names[NODE__CF_COUNT] = {
    "default", "blocks", "blockrefs", "objects", "buckets", "uploads", "meta",
};

static _Thread_local char tls_errmsg[512];

/* ---------------------------------------------------------------- errors */

void node__errmsg_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_errmsg, sizeof tls_errmsg, fmt, ap);
    va_end(ap);
}

const char *node_store_errmsg(node_store *s)
{
    (void)s;
    return tls_errmsg;
}

int node__read_error(node_store *s, char *err, const char *what)
{
    (void)s;
    int rc = strncmp(err, "Corruption", 10) == 0 ? TERN_ECORRUPT : TERN_EIO;
    /* A cache-only read (read_tier = block cache) that would need the disk. */
    if (strncmp(err, "Operation aborted", 17) == 0 || strncmp(err, "Result incomplete", 17) == 0 ||
        strstr(err, "no disk I/O") != NULL || strstr(err, "no IO allowed") != NULL)
        rc = TERN_EAGAIN;
    node__errmsg_set("%s: %s", what, err);
    rocksdb_free(err);
    return rc;
}

static bool is_no_space(const char *err)
{
    return strstr(err, "No space left") != NULL || strstr(err, "NoSpace") != NULL ||
           strstr(err, "ENOSPC") != NULL;
}

int node__write_error(node_store *s, char *err, const char *what)
{
    int rc = TERN_EIO;
    if (is_no_space(err)) {
        /* Not sticky: the operator frees space (deleting objects) to recover. */
        node_log(NODE_LOG_WARN, "store", "%s: %s", what, err);
        rc = TERN_ENOSPC;
    } else if (strncmp(err, "IO error", 8) == 0 || strncmp(err, "Corruption", 10) == 0) {
        /* After an I/O error we cannot know what reached the disk: refuse writes
         * until a restart recovers from the WAL (the SQLite pager rule). */
        if (!atomic_exchange(&s->failed, 1))
            node_log(NODE_LOG_ERROR, "store", "%s: %s; refusing further writes", what, err);
    } else {
        node_log(NODE_LOG_ERROR, "store", "%s: %s", what, err);
    }
    node__errmsg_set("%s: %s", what, err);
    rocksdb_free(err);
    return rc;
}

int node__check_writable(node_store *s)
{
    if (!atomic_load(&s->failed)) return 0;
    node__errmsg_set("store is in a failed state after a disk error; restart the node");
    return TERN_EFAILED;
}

/* ---------------------------------------------------------------- helpers */

int node__get(node_store *s, int cf, const void *key, size_t key_len, char **value,
              size_t *value_len)
{
    return node__get_ro(s, s->read_options, cf, key, key_len, value, value_len);
}

int node__get_ro(node_store *s, const rocksdb_readoptions_t *ro, int cf, const void *key,
                 size_t key_len, char **value, size_t *value_len)
{
    char *err = NULL;
    *value = rocksdb_get_cf(s->db, ro, s->cf[cf], key, key_len, value_len, &err);
    if (err != NULL) return node__read_error(s, err, "read");
    return *value == NULL ? TERN_ENOTFOUND : 0;
}

int node__exists(node_store *s, int cf, const void *key, size_t key_len, bool *exists)
{
    char *err = NULL;
    rocksdb_pinnableslice_t *v =
        rocksdb_get_pinned_cf(s->db, s->read_options, s->cf[cf], key, key_len, &err);
    if (err != NULL) return node__read_error(s, err, "read");
    *exists = v != NULL;
    rocksdb_pinnableslice_destroy(v);
    return 0;
}

int node__prefix_nonempty(node_store *s, int cf, const void *prefix, size_t prefix_len,
                          bool *nonempty)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(s->db, s->read_options, s->cf[cf]);
    rocksdb_iter_seek(it, prefix, prefix_len);
    *nonempty = false;
    if (rocksdb_iter_valid(it)) {
        size_t key_len;
        const char *key = rocksdb_iter_key(it, &key_len);
        *nonempty = key_len >= prefix_len && memcmp(key, prefix, prefix_len) == 0;
    }
    char *err = NULL;
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    return err != NULL ? node__read_error(s, err, "scan") : 0;
}

int node__write(node_store *s, rocksdb_writebatch_t *b, bool commit, const char *what)
{
    char *err = NULL;
    rocksdb_write(s->db, commit ? s->write_commit : s->write_block, b, &err);
    return err != NULL ? node__write_error(s, err, what) : 0;
}

bool node__valid_bucket(const char *name)
{
    if (name == NULL) return false;
    size_t n = strnlen(name, NODE_BUCKET_NAME_MAX + 1);
    /* '/' separates bucket and key in the objects CF, so it can never be in a name. */
    return n > 0 && n <= NODE_BUCKET_NAME_MAX && strchr(name, '/') == NULL;
}

bool node__valid_key(const char *key)
{
    if (key == NULL) return false;
    size_t n = strnlen(key, NODE_KEY_BYTES_MAX + 1);
    return n > 0 && n <= NODE_KEY_BYTES_MAX;
}

size_t node__object_key(char *buf, const char *bucket, const char *key)
{
    size_t bucket_len = strlen(bucket), key_len = strlen(key);
    assert(bucket_len + 1 + key_len < NODE__KEY_BYTES_MAX);
    memcpy(buf, bucket, bucket_len);
    buf[bucket_len] = '/';
    memcpy(buf + bucket_len + 1, key, key_len);
    return bucket_len + 1 + key_len;
}

void node__put_counters(node_store *s, rocksdb_writebatch_t *b, const node__counters *c)
{
    uint8_t record[1 + 6 * 8];
    node__counters_encode(c, record);
    rocksdb_writebatch_put_cf(b, s->cf[NODE__CF_META], "counters", 8, (const char *)record,
                              sizeof record);
}

void node__counter_sub(uint64_t *counter, uint64_t amount, const char *name)
{
    if (*counter >= amount) {
        *counter -= amount;
        return;
    }
    node_log(NODE_LOG_ERROR, "store", "counter %s would go below zero (%llu - %llu); clamped", name,
             (unsigned long long)*counter, (unsigned long long)amount);
    *counter = 0;
}

/* ---------------------------------------------------------------- open / close */

static int mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return TERN_EINVAL;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return TERN_EIO;
        buf[i] = saved;
    }
    return 0;
}

static rocksdb_options_t *cf_options_create(node_store *s, int cf, const node_store_options *o)
{
    rocksdb_options_t *opt = rocksdb_options_create();
    rocksdb_block_based_table_options_t *table = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(table, s->block_cache);
    if (cf == NODE__CF_BLOCKS || cf == NODE__CF_BLOCKREFS) {
        /* Most lookups of absent block ids (new uploads) then never touch the disk. */
        rocksdb_block_based_options_set_filter_policy(table,
                                                      rocksdb_filterpolicy_create_bloom_full(10));
    }
    rocksdb_options_set_block_based_table_factory(opt, table); /* copies the table options */
    rocksdb_block_based_options_destroy(table);
    if (cf == NODE__CF_BLOCKS) {
        size_t wb =
            o->write_buffer_bytes ? o->write_buffer_bytes : BLOCKS_WRITE_BUFFER_BYTES_DEFAULT;
        rocksdb_options_set_write_buffer_size(opt, wb);
        /* A third buffer absorbs bursts while one flushes, instead of stalling writers. */
        rocksdb_options_set_max_write_buffer_number(opt, BLOCKS_WRITE_BUFFERS_MAX);
        rocksdb_options_set_enable_blob_files(opt, 1);
        rocksdb_options_set_min_blob_size(opt, BLOB_MIN_BYTES);
        rocksdb_options_set_blob_file_size(opt, BLOB_FILE_BYTES);
        /*
         * No blob GC during compaction: with it on, every compaction of the
         * blocks CF rewrote the oldest quarter of the blob files, so a pure
         * write load measured 3.8x write amplification and spent 65% of its
         * time in write stalls (L0 piling up behind slow compactions). Blob
         * files whose blocks are all deleted are still removed (RocksDB counts
         * their garbage as compactions drop the keys); space in partly dead
         * files is the cost, noted in docs/ARCHITECTURE.md.
         */
        rocksdb_options_set_enable_blob_gc(opt, 0);
        /*
         * Blobs read once are kept (checksum-verified) in the shared LRU cache:
         * hot blocks are then served from memory, with no blob-file read and no
         * re-verification, and cache-only reads can serve them on the loop thread.
         */
        rocksdb_options_set_blob_cache(opt, s->block_cache);
    } else {
        rocksdb_options_set_write_buffer_size(opt, META_WRITE_BUFFER_BYTES);
    }
    return opt;
}

static void build_options(node_store *s, const node_store_options *o)
{
    size_t cache = o->block_cache_bytes ? o->block_cache_bytes : BLOCK_CACHE_BYTES_DEFAULT;
    s->block_cache = rocksdb_cache_create_lru(cache);
    s->db_options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->db_options, 1);
    rocksdb_options_set_create_missing_column_families(s->db_options, 1);
    rocksdb_options_set_paranoid_checks(s->db_options, 1);
    rocksdb_options_set_db_write_buffer_size(s->db_options, DB_WRITE_BUFFER_BYTES_MAX);
    rocksdb_options_increase_parallelism(s->db_options, 2);
    rocksdb_options_set_keep_log_file_num(s->db_options, 4);
    rocksdb_options_set_max_log_file_size(s->db_options, 16 * MIB);
    for (int i = 0; i < NODE__CF_COUNT; i++)
        s->cf_options[i] = cf_options_create(s, i, o);
    s->read_options = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(s->read_options, 1);
    s->read_cached = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(s->read_cached, 1);
    rocksdb_readoptions_set_read_tier(s->read_cached, 1 /* kBlockCacheTier */);
    s->write_commit = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->write_commit, o->sync_writes);
    s->write_block = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->write_block, 0);
}

/* Frees everything store_open built, whatever stage it reached. */
static void store_destroy(node_store *s)
{
    for (int i = 0; i < NODE__CF_COUNT; i++)
        if (s->cf[i] != NULL) rocksdb_column_family_handle_destroy(s->cf[i]);
    if (s->db != NULL) rocksdb_close(s->db);
    for (int i = 0; i < NODE__CF_COUNT; i++)
        if (s->cf_options[i] != NULL) rocksdb_options_destroy(s->cf_options[i]);
    if (s->db_options != NULL) rocksdb_options_destroy(s->db_options);
    if (s->block_cache != NULL) rocksdb_cache_destroy(s->block_cache);
    if (s->read_options != NULL) rocksdb_readoptions_destroy(s->read_options);
    if (s->read_cached != NULL) rocksdb_readoptions_destroy(s->read_cached);
    if (s->write_commit != NULL) rocksdb_writeoptions_destroy(s->write_commit);
    if (s->write_block != NULL) rocksdb_writeoptions_destroy(s->write_block);
    node__idmap_free(&s->pins);
    node__idmap_free(&s->quarantine);
    pthread_mutex_destroy(&s->commit_mu);
    pthread_mutex_destroy(&s->pin_mu);
    pthread_mutex_destroy(&s->quarantine_mu);
    pthread_mutex_destroy(&s->scrub_mu);
    free(s->data_dir);
    free(s);
}

/* Checks the format version (writing it into a new store) and loads the counters. */
static int load_meta(node_store *s)
{
    char *v = NULL;
    size_t n = 0;
    int rc = node__get(s, NODE__CF_META, "format", 6, &v, &n);
    if (rc == TERN_ENOTFOUND) {
        uint8_t le[4] = {NODE__FORMAT_VERSION, 0, 0, 0};
        rocksdb_writebatch_t *b = rocksdb_writebatch_create();
        rocksdb_writebatch_put_cf(b, s->cf[NODE__CF_META], "format", 6, (const char *)le, 4);
        node__put_counters(s, b, &s->counters);
        rc = node__write(s, b, true, "initialize store");
        rocksdb_writebatch_destroy(b);
        return rc;
    }
    if (rc != 0) return rc;
    uint32_t version = n == 4 ? (uint32_t)(uint8_t)v[0] | (uint32_t)(uint8_t)v[1] << 8 |
                                    (uint32_t)(uint8_t)v[2] << 16 | (uint32_t)(uint8_t)v[3] << 24
                              : 0;
    rocksdb_free(v);
    if (version != NODE__FORMAT_VERSION) {
        node__errmsg_set("unsupported store format version %u (this build reads %u)", version,
                         NODE__FORMAT_VERSION);
        return TERN_ECORRUPT;
    }
    rc = node__get(s, NODE__CF_META, "counters", 8, &v, &n);
    if (rc != 0) return rc == TERN_ENOTFOUND ? TERN_ECORRUPT : rc;
    rc = node__counters_decode(v, n, &s->counters);
    rocksdb_free(v);
    if (rc != 0) node__errmsg_set("counters record is corrupt");
    return rc;
}

static int store_init(node_store *s, const node_store_options *opts)
{
    pthread_mutex_init(&s->commit_mu, NULL);
    pthread_mutex_init(&s->pin_mu, NULL);
    pthread_mutex_init(&s->quarantine_mu, NULL);
    pthread_mutex_init(&s->scrub_mu, NULL);
    atomic_init(&s->corruption_count, 0);
    atomic_init(&s->gc_blocks_deleted, 0);
    atomic_init(&s->failed, 0);
    s->data_dir = strdup(opts->data_dir);
    s->disk_reserve_bytes = opts->disk_reserve_bytes;
    s->replicated = opts->replicated;
    if (s->data_dir == NULL || node__idmap_init(&s->pins) != 0 ||
        node__idmap_init(&s->quarantine) != 0) {
        node__errmsg_set("out of memory");
        return TERN_ENOMEM;
    }
    if (mkdir_p(opts->data_dir) != 0) {
        node__errmsg_set("cannot create data dir %s: %s", opts->data_dir, strerror(errno));
        return TERN_EIO;
    }
    build_options(s, opts);
    char *err = NULL;
    s->db =
        rocksdb_open_column_families(s->db_options, opts->data_dir, NODE__CF_COUNT, node__cf_names,
                                     (const rocksdb_options_t *const *)s->cf_options, s->cf, &err);
    if (err != NULL) {
        int rc = strncmp(err, "Corruption", 10) == 0 ? TERN_ECORRUPT : TERN_EIO;
        node__errmsg_set("open %s: %s", opts->data_dir, err);
        rocksdb_free(err);
        s->db = NULL;
        memset(s->cf, 0, sizeof s->cf);
        return rc;
    }
    int rc = load_meta(s);
    if (rc == 0) rc = node__quarantine_load(s);
    if (rc == 0) rc = node__scrub_cursor_load(s);
    return rc;
}

int node_store_open(const node_store_options *opts, node_store **out, char *errmsg,
                    size_t errmsg_len)
{
    *out = NULL;
    if (opts == NULL || opts->data_dir == NULL || opts->data_dir[0] == '\0') {
        tern_errmsg(errmsg, errmsg_len, "store: data_dir is required");
        return TERN_EINVAL;
    }
    node_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        tern_errmsg(errmsg, errmsg_len, "store: out of memory");
        return TERN_ENOMEM;
    }
    int rc = store_init(s, opts);
    if (rc != 0) {
        tern_errmsg(errmsg, errmsg_len, "store: %s", tls_errmsg);
        store_destroy(s);
        return rc;
    }
    node_log(
        NODE_LOG_INFO, "store", "opened %s: %llu objects, %llu blocks, %llu quarantined blocks",
        opts->data_dir, (unsigned long long)s->counters.object_count,
        (unsigned long long)s->counters.block_count, (unsigned long long)s->quarantine.entry_count);
    *out = s;
    return 0;
}

void node_store_close(node_store *s)
{
    if (s == NULL) return;
    /* Flushing memtables makes the next open skip WAL replay. */
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    for (int i = 0; i < NODE__CF_COUNT && !atomic_load(&s->failed); i++) {
        char *err = NULL;
        rocksdb_flush_cf(s->db, fo, s->cf[i], &err);
        if (err != NULL) {
            node_log(NODE_LOG_WARN, "store", "flush %s on close: %s", node__cf_names[i], err);
            rocksdb_free(err);
        }
    }
    rocksdb_flushoptions_destroy(fo);
    store_destroy(s);
}

/* ---------------------------------------------------------------- meta and stats */

static int meta_user_key(const char *name, char *buf, size_t *len)
{
    if (name == NULL) return TERN_EINVAL;
    size_t n = strnlen(name, META_NAME_BYTES_MAX + 1);
    if (n == 0 || n > META_NAME_BYTES_MAX) return TERN_EINVAL;
    memcpy(buf, "user/", 5);
    memcpy(buf + 5, name, n);
    *len = 5 + n;
    return 0;
}

int node_store_meta_put(node_store *s, const char *name, const void *value, size_t len)
{
    char key[5 + META_NAME_BYTES_MAX];
    size_t key_len;
    if (meta_user_key(name, key, &key_len) != 0 || (value == NULL && len > 0)) {
        node__errmsg_set("meta put: invalid name or value");
        return TERN_EINVAL;
    }
    int rc = node__check_writable(s);
    if (rc != 0) return rc;
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    rocksdb_writebatch_put_cf(b, s->cf[NODE__CF_META], key, key_len, value ? value : "", len);
    rc = node__write(s, b, true, "meta put");
    rocksdb_writebatch_destroy(b);
    return rc;
}

int node_store_meta_get(node_store *s, const char *name, char **value_out, size_t *len_out)
{
    char key[5 + META_NAME_BYTES_MAX];
    size_t key_len;
    *value_out = NULL;
    *len_out = 0;
    if (meta_user_key(name, key, &key_len) != 0) return TERN_EINVAL;
    char *v;
    size_t n;
    int rc = node__get(s, NODE__CF_META, key, key_len, &v, &n);
    if (rc != 0) return rc;
    /* A copy from our allocator, NUL-terminated for callers storing text. */
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        rocksdb_free(v);
        return TERN_ENOMEM;
    }
    memcpy(copy, v, n);
    copy[n] = '\0';
    rocksdb_free(v);
    *value_out = copy;
    *len_out = n;
    return 0;
}

/* Sum of the live WAL files (*.log in the data dir): a directory scan, cheap next to a flush. */
static uint64_t wal_bytes(const node_store *s)
{
    uint64_t total = 0;
    DIR *d = opendir(s->data_dir);
    if (d == NULL) return 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".log") != 0) continue;
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", s->data_dir, e->d_name);
        if (stat(path, &st) == 0) total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

/*
 * disk_bytes = every column family's "rocksdb.total-sst-files-size" (all SST
 * versions still on disk) + the blocks CF's "rocksdb.total-blob-file-size" (all
 * blob files, including garbage not yet collected) + the *.log WAL files.
 * It leaves out the info LOG, MANIFEST and OPTIONS files (a few MiB at most).
 */
int node_store_disk_free(node_store *s, uint64_t *free_bytes)
{
    struct statvfs st;
    if (statvfs(s->data_dir, &st) != 0) {
        node__errmsg_set("statvfs %s: %s", s->data_dir, strerror(errno));
        return TERN_EIO;
    }
    *free_bytes = (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
    return 0;
}

int node_store_stats_get(node_store *s, node_store_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->commit_mu);
    node__counters c = s->counters;
    pthread_mutex_unlock(&s->commit_mu);
    out->object_count = c.object_count;
    out->bucket_count = c.bucket_count;
    out->logical_bytes = c.logical_bytes;
    out->block_count = c.block_count;
    out->block_bytes = c.block_bytes;
    out->referenced_block_bytes = c.referenced_block_bytes;
    out->corruption_count = atomic_load(&s->corruption_count);
    out->gc_blocks_deleted = atomic_load(&s->gc_blocks_deleted);
    uint64_t v;
    for (int i = 0; i < NODE__CF_COUNT; i++)
        if (rocksdb_property_int_cf(s->db, s->cf[i], "rocksdb.total-sst-files-size", &v) == 0)
            out->disk_bytes += v;
    if (rocksdb_property_int_cf(s->db, s->cf[NODE__CF_BLOCKS], "rocksdb.total-blob-file-size",
                                &v) == 0)
        out->disk_bytes += v;
    out->disk_bytes += wal_bytes(s);
    return 0;
}
