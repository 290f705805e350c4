/* Internals of the RocksDB-backed store shared by node/store*.c (not part of the public API). */
#ifndef TERN_NODE_STORE_INTERNAL_H
#define TERN_NODE_STORE_INTERNAL_H

/*
 * DESIGN NOTES
 *
 * On-disk layout (all integers little-endian unless noted):
 *   blocks    key: 32-byte id            value: block bytes (BlobDB blob files)
 *   blockrefs key: 32-byte id            value: u64 reference count (> 0; absent means 0)
 *   objects   key: "<bucket>/<key>"      value: manifest record (node__manifest_encode)
 *   buckets   key: "<bucket>"            value: bucket record
 *   uploads   key: "u<bucket>/<key>\0<upload id>"   value: upload record (template)
 *             key: "p<upload id><u32 big-endian part number>"   value: part record
 *   meta      "format"               u32 store format version (NODE__FORMAT_VERSION)
 *             "counters"             counters record (node__counters)
 *             "scrub/cursor"         32-byte id of the last block the scrubber visited
 *             "quarantine/<hex id>"  i64 ms when the block was found corrupt
 *             "user/<name>"          node_store_meta_put values
 *             "raft/applied"         u64 Raft index applied (store_apply.c)
 *             "raft/session/<hex>"   a client session record of node/sm.c
 * Keys are NUL-free C strings, so "\0" sorts an upload's key before any longer
 * key sharing its prefix: the uploads of a bucket iterate in (key, upload id)
 * order, and the big-endian part number sorts parts numerically.
 *
 * Invariants (guarded by commit_mu):
 *   - a block id has a blockrefs record iff a committed object or part refers
 *     to it; the count is the number of such references;
 *   - a block's data is deleted only under commit_mu, and only when it has no
 *     references and no pins (checked with pin_mu held until the delete is
 *     written, so a concurrent block_put either sees the delete or protects
 *     the block with its pin);
 *   - counters in memory equal the "counters" record in meta (both change
 *     only in the batch of a successful commit).
 * Lock order: commit_mu, then pin_mu, then quarantine_mu. scrub_mu is taken
 * before commit_mu.
 */

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "node.h"

#define NODE__FORMAT_VERSION 1u
/* Version byte at the start of each encoded record. */
#define NODE__RECORD_VERSION 1u
/* Large enough for any key the store builds: "u" + bucket + "/" + key + "\0" + upload id. */
#define NODE__KEY_BYTES_MAX   (NODE_BUCKET_NAME_MAX + NODE_KEY_BYTES_MAX + NODE_UPLOAD_ID_MAX + 8)
#define NODE__UPLOAD_ID_HEX   32
#define NODE__PART_NUMBER_MAX 10000u

enum {
    NODE__CF_DEFAULT = 0,
    NODE__CF_BLOCKS,
    NODE__CF_BLOCKREFS,
    NODE__CF_OBJECTS,
    NODE__CF_BUCKETS,
    NODE__CF_UPLOADS,
    NODE__CF_META,
    NODE__CF_COUNT
};

/* The persistent counters (meta "counters"); see node_store_stats for meanings. */
typedef struct {
    uint64_t object_count;
    uint64_t bucket_count;
    uint64_t logical_bytes;
    uint64_t block_count;
    uint64_t block_bytes;
    uint64_t referenced_block_bytes;
} node__counters;

/* A small chained hash map from block id to a count, used for pins and quarantine. */
typedef struct node__idmap_entry {
    node_block_id id;
    uint64_t count;
    bool stored; /* pins only: a block_put holding a pin has seen the data stored */
    struct node__idmap_entry *next;
} node__idmap_entry;

typedef struct {
    node__idmap_entry **slots;
    size_t slot_count; /* a power of two */
    size_t entry_count;
} node__idmap;

struct node_store {
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[NODE__CF_COUNT];
    rocksdb_options_t *db_options;
    rocksdb_options_t *cf_options[NODE__CF_COUNT];
    rocksdb_cache_t *block_cache;
    rocksdb_readoptions_t *read_options;  /* verify_checksums on */
    rocksdb_readoptions_t *read_cached;   /* same, and read_tier = block cache: never disk I/O */
    rocksdb_writeoptions_t *write_commit; /* sync = sync_writes */
    rocksdb_writeoptions_t *write_block;  /* sync = false, WAL on */
    char *data_dir;
    uint64_t disk_reserve_bytes;
    bool replicated; /* node_store_options.replicated */

    pthread_mutex_t commit_mu;
    node__counters counters; /* guarded by commit_mu */

    pthread_mutex_t pin_mu;
    node__idmap pins; /* guarded by pin_mu: id -> pin count */

    pthread_mutex_t quarantine_mu;
    node__idmap quarantine; /* guarded by quarantine_mu: ids never served again */

    pthread_mutex_t scrub_mu;
    node_block_id scrub_cursor; /* guarded by scrub_mu */
    bool scrub_cursor_valid;

    atomic_uint_fast64_t corruption_count;
    atomic_uint_fast64_t gc_blocks_deleted;
    atomic_int failed; /* sticky: set after an I/O error on a write */
};

/* --- errors and RocksDB helpers (store.c) --- */
extern const char *const node__cf_names[NODE__CF_COUNT];
void node__errmsg_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Translates a RocksDB error of a read (frees err): Corruption -> ECORRUPT, else EIO. */
int node__read_error(node_store *s, char *err, const char *what);
/* Translates a RocksDB error of a write (frees err): no space -> ENOSPC, I/O -> sticky EIO. */
int node__write_error(node_store *s, char *err, const char *what);
/* TERN_EFAILED (with errmsg) when the store is in the sticky failed state. */
int node__check_writable(node_store *s);
/* Returns 0 with a malloc'd copy (rocksdb_free), TERN_ENOTFOUND, or an error. */
/* node_store_object_get with explicit read options (a view's snapshot). */
int node__object_get_ro(node_store *s, const rocksdb_readoptions_t *ro, const char *bucket,
                        const char *key, node_manifest **out);
/* node__get with explicit read options (e.g. the cache-only ones). */
int node__get_ro(node_store *s, const rocksdb_readoptions_t *ro, int cf, const void *key,
                 size_t key_len, char **value, size_t *value_len);
int node__get(node_store *s, int cf, const void *key, size_t key_len, char **value,
              size_t *value_len);
/* Sets *exists without copying the value; 0 or an error. */
int node__exists(node_store *s, int cf, const void *key, size_t key_len, bool *exists);
/* True if any key of cf starts with prefix. Returns 0 or an error. */
int node__prefix_nonempty(node_store *s, int cf, const void *prefix, size_t prefix_len,
                          bool *nonempty);
/* Writes b with the commit or block write options and translates errors. */
int node__write(node_store *s, rocksdb_writebatch_t *b, bool commit, const char *what);
bool node__valid_bucket(const char *name);
bool node__valid_key(const char *key);
/* "<bucket>/<key>" into buf (NODE__KEY_BYTES_MAX); returns its length. */
size_t node__object_key(char *buf, const char *bucket, const char *key);
void node__put_counters(node_store *s, rocksdb_writebatch_t *b, const node__counters *c);

/* --- record encodings (store_codec.c) --- */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool failed; /* an allocation failed; the contents are incomplete */
} node__buf;

void node__buf_free(node__buf *b);
void node__buf_u8(node__buf *b, uint8_t v);
void node__buf_u32(node__buf *b, uint32_t v);
void node__buf_u64(node__buf *b, uint64_t v);
void node__buf_bytes(node__buf *b, const void *p, size_t n);

int node__manifest_encode(const node_manifest *m, bool with_blocks, node__buf *out);
int node__manifest_decode(const char *data, size_t len, node_manifest **out);
/* Decodes only what listings need (size, etag, mtime) from a manifest record. */
int node__manifest_decode_head(const char *data, size_t len, uint64_t *size_bytes,
                               char etag[NODE_ETAG_MAX + 1], int64_t *last_modified_ms);
int node__manifest_validate(const node_manifest *m, bool with_blocks);
int node__part_encode(const node_part *p, node__buf *out);
/* Fills *out (blocks malloc'd); free with node_parts_free(out, 1)'s logic. */
int node__part_decode(const char *data, size_t len, node_part *out);
int node__bucket_encode(const node_bucket *bk, node__buf *out);
int node__bucket_decode(const char *name, const char *data, size_t len, node_bucket *out);
/* A policy alone (the tail of a bucket record; also the BUCKET_POLICY command's payload). */
void node__bucket_policy_encode(const node_bucket_policy *p, node__buf *out);
int node__bucket_policy_decode(const uint8_t *data, size_t len, node_bucket_policy *out);
int node__upload_encode(int64_t initiated_ms, const node_manifest *tmpl, node__buf *out);
/* Decodes the initiated time and, when tmpl_out is not NULL, the template. */
int node__upload_decode(const char *data, size_t len, int64_t *initiated_ms,
                        node_manifest **tmpl_out);
int node__counters_decode(const char *data, size_t len, node__counters *out);
void node__counters_encode(const node__counters *c, uint8_t out[1 + 6 * 8]);

/* --- id maps, pins and quarantine (store_blocks.c) --- */
int node__idmap_init(node__idmap *m);
void node__idmap_free(node__idmap *m);
node__idmap_entry *node__idmap_find(node__idmap *m, const node_block_id *id);
bool node__pinned_locked(node_store *s, const node_block_id *id); /* pin_mu held */
bool node__pinned_stored(node_store *s, const node_block_id *id);
bool node__quarantined(node_store *s, const node_block_id *id);
void node__quarantine_forget(node_store *s, const node_block_id *id);
int node__quarantine_load(node_store *s);
void node__quarantine_key(const node_block_id *id, char out[11 + 2 * NODE_BLOCK_ID_BYTES + 1]);
/* Logs, quarantines (persistently when possible) and counts a newly found corrupt block. */
bool node__report_corruption(node_store *s, const node_block_id *id, const char *how);
int node__scrub_cursor_load(node_store *s);

/* --- metadata commits (store_commit.c) --- */

/* One reference-count change gathered by a commit. */
typedef struct {
    node_block_id id;
    uint32_t size_bytes;
    int64_t delta;      /* references added (> 0) or dropped (< 0) by the commit */
    uint64_t old_count; /* the stored count before the commit */
    bool collected;     /* the commit deletes the block's data */
} node__ref_delta;

/*
 * A metadata commit: begin takes commit_mu, callers add their puts/deletes to
 * batch and their reference changes with node__commit_refs, finish resolves
 * refcounts (ECONFLICT for missing blocks), GC and counters into the batch and
 * writes it; end releases everything.
 */
typedef struct {
    node_store *s;
    rocksdb_writebatch_t *batch;
    node__ref_delta *refs;
    size_t ref_count;
    size_t ref_cap;
    node__counters counters; /* working copy, installed on success */
    bool failed_alloc;
    bool blocks_elsewhere; /* new references may name blocks another region holds */
} node__commit;

#define NODE__STAMP_EXTRAS_MAX 4
#define NODE__STAMP_KEY_MAX    (16 + NODE_BUCKET_NAME_MAX + 1 + NODE_KEY_BYTES_MAX)
#define NODE__STAMP_VALUE_MAX  16

/* The apply stamp of the calling thread (store_apply.c): the next successful commit on this
 * thread adds the applied index and session record to its batch. */
typedef struct {
    node_store *s;
    uint64_t index;
    uint64_t client_id;
    const void *session;
    size_t session_len;
    const void *geo; /* a geo log record to write with the change, or NULL */
    size_t geo_len;
    uint64_t geo_hlc;
    /* Replicated meta records that ride with the change (with_change) or in every case (a
     * remote change's bookkeeping, written even when it changes nothing). */
    struct {
        char key[NODE__STAMP_KEY_MAX];
        size_t key_len;
        uint8_t value[NODE__STAMP_VALUE_MAX];
        size_t value_len;
        bool always;
    } extras[NODE__STAMP_EXTRAS_MAX];
    size_t extra_count;
    bool consumed;
} node__apply_stamp;
extern _Thread_local node__apply_stamp *node__stamp;
/* Adds the stamp's records to b if a stamp for s is pending on this thread; returns it. */
node__apply_stamp *node__stamp_add(node_store *s, rocksdb_writebatch_t *b);

int node__commit_begin(node_store *s, node__commit *c);
void node__commit_refs(node__commit *c, const node_block_ref *blocks, size_t count, int sign);
int node__commit_finish(node__commit *c, const char *what);
void node__commit_end(node__commit *c);
/* Adds to c the replacement of bucket/key by manifest m (encoded as rec): refs and counters. */
int node__object_replace(node__commit *c, const char *bucket, const char *key,
                         const node_manifest *m, const node__buf *rec);
/* Saturating subtraction that reports (rather than wraps) an inconsistent counter. */
void node__counter_sub(uint64_t *counter, uint64_t amount, const char *name);

#endif
