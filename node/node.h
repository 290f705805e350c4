/* node: the daemon's public interface: block/object store on RocksDB, configuration, metrics. */
#ifndef TERN_NODE_H
#define TERN_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "placement.h"

/* ======================================================================
 * Store: RocksDB column families
 *   blocks    block id (32-byte SHA-256) -> block bytes (BlobDB blob files)
 *   blockrefs block id -> reference count (u64)
 *   objects   "<bucket>/<key>" -> manifest
 *   buckets   "<bucket>" -> bucket record
 *   uploads   multipart uploads and their parts
 *   meta      format version, counters, credentials, scrub cursor
 *
 * Thread safety: every function may be called from any thread concurrently.
 * Metadata commits (object put/delete, refcount changes, GC) are serialized
 * inside the store; block data writes are not.
 *
 * Durability: block puts are written without fsync; every metadata commit
 * (bucket create/delete, object put/delete, part put, upload complete/abort)
 * is written with sync=true, which also makes every earlier block write in the
 * same WAL durable. A function returning 0 from a commit means "durable".
 *
 * Disk errors: after a failed write (ENOSPC, EIO) the store enters a sticky
 * failed state and refuses further writes with TERN_EFAILED, except that a
 * write failing with "no space" reports TERN_ENOSPC and the store stays usable
 * for reads and deletes (freeing space is how an operator recovers).
 * ====================================================================== */

#define NODE_BLOCK_ID_BYTES     32
#define NODE_BLOCK_SIZE_DEFAULT (1u << 20)
#define NODE_BLOCK_SIZE_MAX     (4u << 20)
#define NODE_BLOCK_SIZE_MIN     (4u << 10)
#define NODE_UPLOAD_ID_MAX      64
#define NODE_ETAG_MAX           64 /* hex md5 (32) or "hex-N", unquoted */
#define NODE_BUCKET_NAME_MAX    63
#define NODE_KEY_BYTES_MAX      1024
#define NODE_REGION_MAX         64

typedef struct node_store node_store;

typedef struct {
    uint8_t bytes[NODE_BLOCK_ID_BYTES];
} node_block_id;

typedef struct {
    node_block_id id;
    uint32_t size_bytes;
} node_block_ref;

typedef struct {
    char *name;
    char *value;
} node_kv;

/*
 * An object's manifest. `headers` holds the stored response headers other than
 * Content-Type: x-amz-meta-* user metadata (names lowercased) and the standard
 * ones S3 keeps (cache-control, content-disposition, content-encoding,
 * content-language, expires), in the order given.
 */
typedef struct {
    uint64_t size_bytes;
    char etag[NODE_ETAG_MAX + 1]; /* unquoted: 32 hex chars, or "<hex>-<parts>" */
    char *content_type;           /* may be NULL: served as binary/octet-stream */
    int64_t last_modified_ms;
    size_t header_count;
    node_kv *headers;
    size_t block_count;
    node_block_ref *blocks; /* in object order; sizes sum to size_bytes */
} node_manifest;

#define NODE_POLICY_REGIONS_MAX 8 /* PLC_REGIONS_MAX: a deployment has at most 8 regions */

/*
 * A bucket's durability and residency policy (issue 5). Regions are names, so
 * a node without a topology can hold and enforce a policy; with a topology
 * they are checked against it when set. allowed_count 0 = every region.
 */
typedef struct {
    uint32_t min_regions; /* >= 1 */
    uint32_t rpo_seconds; /* a write may have fewer holders than min_regions this long */
    uint32_t rto_seconds; /* restore-time target for snapshots and drills */
    uint32_t allowed_count, pinned_count;
    char allowed[NODE_POLICY_REGIONS_MAX][NODE_REGION_MAX + 1];
    char pinned[NODE_POLICY_REGIONS_MAX][NODE_REGION_MAX + 1];
} node_bucket_policy;

typedef struct {
    char name[NODE_BUCKET_NAME_MAX + 1];
    char region[NODE_REGION_MAX + 1];
    int64_t created_ms;
    node_bucket_policy policy; /* the defaults for a bucket never given one */
} node_bucket;

/* The policy of a bucket never given one: min_regions 1, every region allowed. */
void node_bucket_policy_default(node_bucket_policy *p);
/* Checks a policy's own consistency (names, pinned within allowed, min_regions against the
 * allowed count and, if region_count > 0, the deployment's region count): TERN_EINVAL with
 * "field: why" in errmsg. */
int node_bucket_policy_check(const node_bucket_policy *p, size_t region_count, char *errmsg,
                             size_t errmsg_len);
/* Whether region may store the bucket's data (residency). */
bool node_bucket_policy_allows(const node_bucket_policy *p, const char *region);

/* One entry of an object listing (no block list: listings stay cheap). */
typedef struct {
    char *key; /* owned by the iterator; valid until the next call */
    uint64_t size_bytes;
    char etag[NODE_ETAG_MAX + 1];
    int64_t last_modified_ms;
} node_object_entry;

typedef struct {
    uint32_t part_number; /* 1..10000 */
    uint64_t size_bytes;
    char etag[NODE_ETAG_MAX + 1]; /* hex md5 of the part, unquoted */
    int64_t last_modified_ms;
    size_t block_count;
    node_block_ref *blocks;
} node_part;

typedef struct {
    char *key;
    char upload_id[NODE_UPLOAD_ID_MAX + 1];
    int64_t initiated_ms;
} node_upload_entry;

typedef struct {
    const char *data_dir;      /* created if missing */
    size_t block_cache_bytes;  /* 0: a default of 64 MiB */
    size_t write_buffer_bytes; /* 0: a default of 64 MiB for the blocks CF */
    bool sync_writes;          /* true in production; commits fsync the WAL */
    /*
     * Free bytes block puts never eat into: a put that would leave less gets
     * TERN_ENOSPC before RocksDB sees a full disk, so metadata commits
     * (deletes), memtable flushes and WAL replay at restart keep room.
     */
    uint64_t disk_reserve_bytes;
    /*
     * The store is the state machine of a region group (node/sm.c): every
     * change comes from the replicated log, so the scrubber never deletes
     * unreferenced blocks on its own (that would make replicas diverge); it
     * reports them and the leader proposes their collection instead.
     */
    bool replicated;
} node_store_options;

typedef struct {
    uint64_t object_count;
    uint64_t bucket_count;
    uint64_t logical_bytes;          /* sum of object sizes (what users stored) */
    uint64_t block_count;            /* distinct stored blocks */
    uint64_t block_bytes;            /* sum of distinct block sizes (after dedup) */
    uint64_t referenced_block_bytes; /* sum over references of block sizes (before dedup) */
    uint64_t disk_bytes;             /* SST + blob files + WAL as RocksDB reports them */
    uint64_t corruption_count;       /* corruptions detected since open (reads and scrubs) */
    uint64_t gc_blocks_deleted;      /* since open */
} node_store_stats;

typedef struct {
    uint64_t blocks_checked;
    uint64_t bytes_checked;
    uint64_t corrupt_found;   /* new corruptions found by this step */
    uint64_t orphans_deleted; /* unreferenced, unpinned blocks collected by this step */
    bool pass_complete;       /* the walk wrapped around to the first block */
    /* Replicated stores only: unreferenced blocks found (malloc'd; the caller frees). */
    node_block_id *orphans;
    size_t orphan_count;
} node_scrub_result;

int node_store_open(const node_store_options *opts, node_store **out, char *errmsg,
                    size_t errmsg_len);
/* Flushes and closes RocksDB cleanly. Safe with NULL. */
void node_store_close(node_store *s);

/* --- blocks --- */

/* SHA-256 of data, with OpenSSL EVP. */
void node_block_hash(const void *data, size_t len, node_block_id *out);

/*
 * Stores a block under id (which the caller computed with node_block_hash) if
 * not already stored, and pins it: a pinned block is never garbage-collected
 * until node_store_block_unpin(), so an upload in progress keeps its blocks
 * until its manifest commits. Each put takes one pin; unpin once per put.
 */
int node_store_block_put(node_store *s, const node_block_id *id, const void *data, size_t len);
void node_store_block_unpin(node_store *s, const node_block_id *id);

/*
 * Reads a block (malloc'd, caller frees). RocksDB checksums are verified on
 * the read. TERN_ENOTFOUND if absent; TERN_ECORRUPT if RocksDB reports
 * corruption or the block was quarantined by the scrubber (corruption is
 * counted and never served). With verify_hash, the SHA-256 is checked too.
 */
int node_store_block_get(node_store *s, const node_block_id *id, bool verify_hash, void **data_out,
                         size_t *len_out);

/*
 * Zero-copy read: *data points into memory RocksDB keeps pinned (its cache or
 * its read buffer) until node_block_view_release. With cache_only the read
 * never touches the disk (RocksDB read_tier = block cache) and returns
 * TERN_EAGAIN when the block is not in memory: safe on the event loop thread.
 * Errors otherwise as node_store_block_get.
 */
typedef struct node_block_view node_block_view;
int node_store_block_view(node_store *s, const node_block_id *id, bool cache_only,
                          node_block_view **out, const char **data, size_t *len);
void node_block_view_release(node_block_view *v);

/*
 * A consistent point-in-time view (a RocksDB snapshot) for reads that take
 * several steps, such as a GET reading a manifest and then its blocks: an
 * overwrite or delete that commits meanwhile, and the garbage collection of
 * the blocks it dropped, stay invisible to reads through the view until it is
 * closed. Any thread; close once.
 */
typedef struct node_read_view node_read_view;
int node_store_view_open(node_store *s, node_read_view **out);
void node_store_view_close(node_read_view *v);
/* node_store_object_get / node_store_block_view through a view (cache_only as above). */
int node_store_object_get_in(node_read_view *v, bool cache_only, const char *bucket,
                             const char *key, node_manifest **out);
int node_store_block_view_in(node_read_view *v, const node_block_id *id, bool cache_only,
                             node_block_view **out, const char **data, size_t *len);

/* Reads len bytes at offset of a block into buf (for ranged GETs). Same errors as above. */
int node_store_block_read(node_store *s, const node_block_id *id, size_t offset, void *buf,
                          size_t len);

/* --- buckets --- */
int node_store_bucket_create(node_store *s, const char *name, const char *region,
                             int64_t created_ms);                             /* TERN_EEXIST */
int node_store_bucket_get(node_store *s, const char *name, node_bucket *out); /* TERN_ENOTFOUND */
/* Like node_store_bucket_get but never does disk I/O: TERN_EAGAIN when not in memory. */
int node_store_bucket_get_cached(node_store *s, const char *name, node_bucket *out);
/* TERN_ENOTFOUND; TERN_ENOTEMPTY if it holds objects or multipart uploads in progress. */
int node_store_bucket_delete(node_store *s, const char *name);
/* Replaces the bucket's policy (checked with node_bucket_policy_check(p, 0)): TERN_ENOTFOUND,
 * TERN_EINVAL. */
int node_store_bucket_policy_set(node_store *s, const char *name, const node_bucket_policy *p);
/* All buckets sorted by name; *out is malloc'd (free with free()). */
int node_store_bucket_list(node_store *s, node_bucket **out, size_t *count);

/* --- objects --- */

/*
 * Commits a manifest for bucket/key atomically and durably, replacing any
 * previous version: references of the new blocks are added, those of the old
 * version dropped (blocks reaching zero references are deleted in the same
 * commit unless pinned). TERN_ENOTFOUND if the bucket does not exist;
 * TERN_ECONFLICT if a referenced block is not stored (it was never put, or
 * was collected), in which case nothing changes.
 */
int node_store_object_put(node_store *s, const char *bucket, const char *key,
                          const node_manifest *m);
/* Geo-replication: with blocks_elsewhere the manifest commits even when its blocks are not
 * stored here (placement put them in other regions): they are referenced (so a copy made
 * later is kept) and reads fetch them from a region that holds them. */
int node_store_object_put_placed(node_store *s, const char *bucket, const char *key,
                                 const node_manifest *m, bool blocks_elsewhere);
/* The origin region id and the holders (topology region mask the origin shipped the blocks
 * to; 0 = unknown: every region) of the object's current version; TERN_ENOTFOUND when it has
 * none recorded (a region without peers) or it was deleted. */
int node_object_placement_get(node_store *s, const char *bucket, const char *key,
                              uint32_t *origin_region_id, uint32_t *holders);
/* TERN_ENOTFOUND if the bucket or the key is absent. *out: free with node_manifest_free. */
int node_store_object_get(node_store *s, const char *bucket, const char *key, node_manifest **out);
/* Like node_store_object_get but never does disk I/O: TERN_EAGAIN when not in memory. */
int node_store_object_get_cached(node_store *s, const char *bucket, const char *key,
                                 node_manifest **out);
/* Idempotent: returns TERN_ENOTFOUND (and changes nothing) when the key is absent. */
int node_store_object_delete(node_store *s, const char *bucket, const char *key);

void node_manifest_free(node_manifest *m);
/* Deep copy; NULL on allocation failure. */
node_manifest *node_manifest_dup(const node_manifest *m);

typedef struct node_object_iter node_object_iter;
/* Iterates the keys of a bucket in byte order from the first key >= seek_key ("" = start). */
int node_store_object_iter_open(node_store *s, const char *bucket, const char *seek_key,
                                node_object_iter **out);
/* Returns 1 and fills *out, 0 at the end, or a negative error. */
int node_store_object_iter_next(node_object_iter *it, node_object_entry *out);
/* Repositions to the first key >= key. */
void node_store_object_iter_seek(node_object_iter *it, const char *key);
void node_store_object_iter_close(node_object_iter *it);

/* --- multipart uploads --- */

/* Creates an upload; `tmpl` carries content type and headers (no blocks). */
int node_store_upload_create(node_store *s, const char *bucket, const char *key,
                             const node_manifest *tmpl, int64_t initiated_ms,
                             char upload_id_out[NODE_UPLOAD_ID_MAX + 1]);
/* The template given at creation; TERN_ENOTFOUND for an unknown (bucket, key, id). */
int node_store_upload_get(node_store *s, const char *bucket, const char *key, const char *upload_id,
                          node_manifest **tmpl_out);
/* Stores a part (replacing one with the same number), durably; adjusts references. */
int node_store_upload_part_put(node_store *s, const char *bucket, const char *key,
                               const char *upload_id, const node_part *part);
/* Parts sorted by number; free with node_parts_free. */
int node_store_upload_parts_list(node_store *s, const char *bucket, const char *key,
                                 const char *upload_id, node_part **parts, size_t *count);
void node_parts_free(node_part *parts, size_t count);
/*
 * Atomically commits `final` as bucket/key and removes the upload with all its
 * parts (their references are dropped; blocks still used by `final` stay).
 * TERN_ENOTFOUND for an unknown upload.
 */
int node_store_upload_complete(node_store *s, const char *bucket, const char *key,
                               const char *upload_id, const node_manifest *final);
int node_store_upload_abort(node_store *s, const char *bucket, const char *key,
                            const char *upload_id); /* TERN_ENOTFOUND */
/*
 * Uploads in progress in a bucket, sorted by (key, upload id), with keys
 * starting with prefix, strictly after (key_marker, upload_id_marker) (either
 * may be NULL/""), at most max_count entries. Free with node_uploads_free.
 */
int node_store_upload_list(node_store *s, const char *bucket, const char *prefix,
                           const char *key_marker, const char *upload_id_marker, size_t max_count,
                           node_upload_entry **out, size_t *count);
void node_uploads_free(node_upload_entry *entries, size_t count);

/* --- meta, stats, scrubbing --- */

/* Small durable values in the meta CF (e.g. generated root credentials). */
int node_store_meta_put(node_store *s, const char *name, const void *value, size_t len);
int node_store_meta_get(node_store *s, const char *name, char **value_out, size_t *len_out);

int node_store_stats_get(node_store *s, node_store_stats *out);

/* TERN_ENOSPC when writing len more bytes would eat into the disk reserve, else 0. A
 * replicated store's proposer checks this before proposing block bytes. */
int node_store_reserve_check(node_store *s, uint64_t len);
/* Free bytes on the data directory's filesystem for unprivileged writers (statvfs). */
int node_store_disk_free(node_store *s, uint64_t *free_bytes);

/*
 * One step of the background scrubber: from a persistent cursor, reads blocks
 * until bytes_budget is spent, verifies each one's SHA-256 against its id,
 * quarantines mismatches (counted as corruption, never served again) and
 * collects blocks with no reference and no pin (garbage from aborted or
 * crashed uploads). Wraps around at the end.
 */
int node_store_scrub_step(node_store *s, uint64_t bytes_budget, node_scrub_result *out);

/* --- replicated state (store_apply.c; used by node/sm.c) --- */

/* The Raft index this store has applied (0 for a new store). */
int node_store_applied_get(node_store *s, uint64_t *index);
/* Records index as applied and, when session is not NULL, client_id's session record, in one
 * unsynced batch written after the change it follows (the Raft log is the durable record). */
int node_store_applied_put(node_store *s, uint64_t index, uint64_t client_id, const void *session,
                           size_t session_len);
/*
 * Between begin and end, the first successful metadata commit on the calling thread also
 * writes what node_store_applied_put would, in the same batch (one write per command instead
 * of two, and the applied index atomic with the change). end says whether a commit took it;
 * if not, the caller records it with node_store_applied_put. session must stay valid until end.
 */
void node_store_apply_stamp_begin(node_store *s, uint64_t index, uint64_t client_id,
                                  const void *session, size_t session_len);
bool node_store_apply_stamp_end(node_store *s);
/*
 * The geo log (issue 5): the region's own changes in log order, kept in the
 * replicated meta ("raft/geolog/<index>") so every replica of the region has
 * it and a new leader ships from where the old one stopped. While a stamp is
 * open, this makes the commit that takes the stamp also write record under
 * the stamp's index and the region's HLC ("raft/geo/hlc"), atomically with
 * the change. record must stay valid until node_store_apply_stamp_end.
 */
void node_store_apply_stamp_geo(node_store *s, const void *record, size_t len, uint64_t hlc);
/* Calls fn for each geo log entry with index > after, in order, at most max of them; stops
 * early when fn returns non-zero. Returns the number visited or a negative error. */
int node_store_geolog_read(node_store *s, uint64_t after, size_t max,
                           int (*fn)(void *ctx, uint64_t index, const void *rec, size_t len),
                           void *ctx);
/* Deletes the geo log records with index <= upto (every peer has applied them). */
int node_store_geolog_trim(node_store *s, uint64_t upto);
/* The region HLC the last geo record was stamped with (0 if none). */
int node_store_geo_hlc_get(node_store *s, uint64_t *out);
/* Adds a replicated meta record ("raft/..." key, value of at most 16 bytes) to the open stamp:
 * written with the change's commit, or, when always, also by node_store_applied_put if no
 * commit took the stamp. */
void node_store_apply_stamp_meta(node_store *s, const char *key, const void *value, size_t len,
                                 bool always);
/* Reads a replicated meta record into out (cap bytes): TERN_ENOTFOUND, TERN_ECORRUPT (longer). */
int node_store_raft_meta_get(node_store *s, const char *key, void *out, size_t cap, size_t *len);
/* Calls fn for each replicated meta record whose key starts with prefix, in key order, from
 * the first key after `after` (NULL or "": from the start), at most max of them; stops early
 * when fn returns non-zero. Returns the number visited or a negative error. */
int node_store_raft_meta_scan(node_store *s, const char *prefix, const char *after, size_t max,
                              int (*fn)(void *ctx, const char *key, size_t key_len,
                                        const void *value, size_t value_len),
                              void *ctx);
/* Deletes a replicated meta record (apply of a command that collects it). */
int node_store_raft_meta_delete(node_store *s, const char *key);
/* A session record (malloc'd, caller frees) or TERN_ENOTFOUND. */
int node_store_session_get(node_store *s, uint64_t client_id, char **rec, size_t *len);
/* Flushes memtables and writes a self-contained RocksDB checkpoint into dir (must not exist). */
int node_store_checkpoint(node_store *s, const char *dir);
/* Makes every replicated key equal to the checkpoint's in dir (local meta is kept). */
int node_store_checkpoint_install(node_store *s, const char *dir);
/* Like node_store_upload_create with the upload id chosen by the caller (32 hex digits):
 * a replicated command carries it so that every replica creates the same upload. */
int node_store_upload_create_id(node_store *s, const char *bucket, const char *key,
                                const node_manifest *tmpl, int64_t initiated_ms,
                                const char *upload_id);
/* Deletes each listed block that has no reference (pins are ignored: a replicated store has
 * none). Returns 0 and the number deleted in *deleted. */
int node_store_blocks_collect(node_store *s, const node_block_id *ids, size_t count,
                              uint64_t *deleted);

/* Deletes the bytes (not the references) of each listed block that is stored and referenced
 * by exactly one object: placement dropped this region's replica, and reads fetch it from
 * another region. Returns 0 and the number dropped in *dropped. */
int node_store_blocks_drop(node_store *s, const node_block_id *ids, size_t count,
                           uint64_t *dropped);

/* The last error text of the store (for logs), thread-local. */
const char *node_store_errmsg(node_store *s);

/* ======================================================================
 * Replicated writes (node/cmd.c): the S3 API changes state only through the
 * region group. Each call mirrors the node_store_ function of the same name,
 * commits one command through the group (forwarded to the leader from a
 * follower) and returns its result as applied by the group, or
 * TERN_EUNAVAIL (no leader), TERN_ETIMEDOUT, TERN_EAGAIN (too many
 * proposals outstanding), TERN_ECLOSED, TERN_EFAILED. Worker threads only.
 * ====================================================================== */

typedef struct node_group node_group;

int node_cmd_bucket_create(node_group *g, const char *name, const char *region, int64_t created_ms);
int node_cmd_bucket_delete(node_group *g, const char *name);
int node_cmd_bucket_policy_set(node_group *g, const char *name, const node_bucket_policy *p);
/* The caller computed id with node_block_hash. */
int node_cmd_block_put(node_group *g, const node_block_id *id, const void *data, size_t len);
/* The same, submitted without waiting for the result (a failure is logged). Any thread. */
int node_cmd_block_put_async(node_group *g, const node_block_id *id, const void *data, size_t len);
int node_cmd_object_put(node_group *g, const char *bucket, const char *key, const node_manifest *m);
int node_cmd_object_delete(node_group *g, const char *bucket, const char *key);
/* Chooses the upload id (random) and puts it in the command. */
int node_cmd_upload_create(node_group *g, const char *bucket, const char *key,
                           const node_manifest *tmpl, int64_t initiated_ms,
                           char upload_id_out[NODE_UPLOAD_ID_MAX + 1]);
int node_cmd_upload_part_put(node_group *g, const char *bucket, const char *key,
                             const char *upload_id, const node_part *part);
int node_cmd_upload_complete(node_group *g, const char *bucket, const char *key,
                             const char *upload_id, const node_manifest *final);
int node_cmd_upload_abort(node_group *g, const char *bucket, const char *key,
                          const char *upload_id);
/* Deletes the listed blocks that are still unreferenced when the command applies. */
int node_cmd_blocks_collect(node_group *g, const node_block_id *ids, size_t count);
/* node_store_blocks_drop through the group: this region's replica of them goes. */
int node_cmd_blocks_drop(node_group *g, const node_block_id *ids, size_t count);

/*
 * Linearizable reads: done(arg, 0) on the loop thread once this node has
 * applied everything committed before the call (ReadIndex); it may run before
 * this returns 0. Errors as node_cmd_*; a non-zero return means done will not
 * run. The _wait form blocks a worker thread.
 */
int node_group_read_barrier(node_group *g, void (*done)(void *arg, int status), void *arg);
int node_group_read_barrier_wait(node_group *g);
/* Has a known leader and is not failed (for /readyz). Any thread. */
bool node_group_ready(node_group *g);

/* ======================================================================
 * Configuration: defaults < config file (JSON) < environment < flags.
 * ====================================================================== */

typedef struct {
    char *access_key;
    char *secret_key;
} node_credential;

typedef struct {
    char *config_path;         /* --config FILE */
    char *data_dir;            /* --data-dir DIR, TERN_DATA_DIR; default ./data */
    char *s3_listen;           /* --s3-listen HOST:PORT, TERN_S3_LISTEN; default 127.0.0.1:9000 */
    char *region;              /* --region NAME, TERN_REGION; default "local" */
    uint64_t node_id;          /* --node-id N, TERN_NODE_ID; default 1 */
    uint32_t block_size_bytes; /* --block-size BYTES (suffixes K/M), default 1 MiB */
    uint64_t scrub_bytes_per_second;    /* --scrub-rate BYTES/s, default 8 MiB/s; 0 disables */
    uint64_t geo_ship_bytes_per_second; /* --geo-ship-rate BYTES/s per peer region; 0: none */
    uint64_t placement_half_life_s;     /* --placement-half-life-s: demand forgetting; 1 day */
    uint64_t placement_time_scale;      /* --placement-time-scale: engine clock speed-up; 1 */
    uint64_t block_cache_bytes;         /* --block-cache BYTES, default 64 MiB */
    uint64_t disk_reserve_bytes;        /* --disk-reserve BYTES, default 256 MiB */
    uint32_t io_threads;                /* --io-threads N (UV_THREADPOOL_SIZE), default 8 */
    uint32_t max_header_bytes;          /* --max-header-bytes N, default 16 KiB */
    uint32_t max_connections;           /* --max-connections N, default 1024 */
    uint32_t shutdown_grace_ms;         /* --shutdown-grace-ms N, default 10000 */
    bool sync_writes;                   /* --no-sync disables (tests and benchmarks only) */
    char *root_access_key; /* root_access_key in file, TERN_ROOT_ACCESS_KEY, --root-access-key */
    char *root_secret_key; /* root_secret_key, TERN_ROOT_SECRET_KEY, --root-secret-key */
    size_t key_count;      /* extra keys: "keys": [{"access_key":..,"secret_key":..}] */
    node_credential *keys; /* or --key ACCESS:SECRET, repeatable */
    char *log_level;       /* --log-level error|warn|info|debug, TERN_LOG_LEVEL; default info */
    /* The region group (node/group.h). Without --peers a node is a 1-node group. */
    char *peers;       /* --peers "1=HOST:PORT,2=HOST:PORT", TERN_PEERS; default none */
    char *peer_listen; /* --peer-listen HOST:PORT; default: this node's --peers address */
    char *peer_ca;     /* --peer-ca FILE: the cluster CA (required with --peers) */
    char *peer_cert;   /* --peer-cert FILE: this node's certificate, CN = node id */
    char *peer_key;    /* --peer-key FILE */
    uint32_t election_timeout_ms;        /* --election-timeout-ms, default 500 */
    uint32_t heartbeat_ms;               /* --heartbeat-ms, default 50 */
    uint32_t leader_wait_ms;             /* --leader-wait-ms, default 5000 */
    uint64_t snapshot_threshold_bytes;   /* --snapshot-threshold BYTES, default 256M */
    uint64_t snapshot_threshold_entries; /* --snapshot-entries N, default 100000 */
    uint64_t gc_grace_ms; /* --gc-grace-ms: orphan blocks are collected after this; 1 h */
    bool join;            /* --join: start with an empty configuration and wait to be added */
    char *topology;       /* --topology FILE, TERN_TOPOLOGY: the topology document; default none */
    char *geo_access_key; /* --geo-access-key: the deployment key for cross-region requests */
    char *geo_secret_key;
} node_config;

/*
 * Fills cfg from defaults, the file named by --config or TERN_CONFIG, the
 * TERN_* environment and argv. Returns 0, 1 when --help or --version was
 * handled (printed to out; the caller exits 0), or TERN_EINVAL with a message
 * naming the bad option or field in errmsg.
 */
int node_config_load(node_config *cfg, int argc, char **argv, FILE *out, char *errmsg,
                     size_t errmsg_len);
void node_config_free(node_config *cfg);
void node_config_print_help(FILE *out);
/* Parses "1M", "64K", "4MiB", "1048576" into bytes. */
int node_parse_bytes(const char *text, uint64_t *out);

/* ======================================================================
 * Topology (node/topology.c): the one JSON document that describes a
 * deployment, read by ternd (--topology) and by `ternctl sim`: regions with
 * their storage prices and their nodes' peer and S3 endpoints, the egress
 * price and RTT matrices, and bucket policies. The format and every error
 * are in docs/placement.md ("Topology and bucket policies").
 * ====================================================================== */

/* Addresses per region and kind: as many as a region group has members. */
#define NODE_TOPOLOGY_ENDPOINTS_MAX 16

typedef struct node_topology {
    plc_topology prices; /* region names (index = position), storage, egress, rtt, bandwidth */
    /* Per region index: "HOST:PORT" peer addresses and "http(s)://HOST:PORT" S3 API bases of the
     * region's nodes; count 0 (and NULL) when the document gives none, as for the simulator. */
    char **peer_endpoints[PLC_REGIONS_MAX];
    size_t peer_endpoint_count[PLC_REGIONS_MAX];
    char **s3_endpoints[PLC_REGIONS_MAX];
    size_t s3_endpoint_count[PLC_REGIONS_MAX];
    /* Bucket policies; [0] is the default: "*" when the document has it, else min_regions 1. */
    size_t policy_count;   /* >= 1 */
    char **policy_buckets; /* the bucket of each policy; [0] is "*" or NULL */
    plc_bucket_policy *policies;
    uint32_t *rto_seconds; /* per policy: 0..a year, 0 when not given */
} node_topology;

/*
 * Reads and checks the document at path into *out (overwritten). Returns 0,
 * or TERN_EPARSE (malformed or invalid: the first error, "FILE: json.path:
 * what"), TERN_EIO (cannot open: "FILE: unable to open FILE: ...") or
 * TERN_ENOMEM, with the text in errmsg; on error *out is empty. Free with
 * node_topology_free (safe on an empty or freed topology).
 */
int node_topology_load(const char *path, node_topology *out, char *errmsg, size_t errmsg_len);
void node_topology_free(node_topology *t);
/* The index of the region called name, or -1. */
int node_topology_region(const node_topology *t, const char *name);
/* The index of bucket's policy: its own, else 0 (the default). */
size_t node_topology_bucket_policy(const node_topology *t, const char *bucket);
/* 0 if region is one of t's regions, else TERN_EINVAL with "region 'x' is not in topology PATH
 * (regions: a, b, c)" in errmsg: a node must not serve a region the topology does not price. */
int node_topology_check_region(const node_topology *t, const char *region, const char *path,
                               char *errmsg, size_t errmsg_len);

/* ======================================================================
 * Metrics: a registry rendered in the Prometheus text exposition format.
 * Counters, gauges and histograms are safe to update from any thread.
 * Families are identified by name; each series by its label string, given
 * already formatted, e.g. "op=\"PutObject\"" (or NULL for none).
 * ====================================================================== */

typedef struct node_metrics node_metrics;
typedef struct node_counter node_counter;
typedef struct node_gauge node_gauge;
typedef struct node_histogram node_histogram;

node_metrics *node_metrics_new(void);
void node_metrics_free(node_metrics *m);

/* Return the series, creating family and series on first use (same pointer afterwards). */
node_counter *node_metrics_counter(node_metrics *m, const char *name, const char *help,
                                   const char *labels);
node_gauge *node_metrics_gauge(node_metrics *m, const char *name, const char *help,
                               const char *labels);
/* bounds: ascending upper bounds (the +Inf bucket is implicit). */
node_histogram *node_metrics_histogram(node_metrics *m, const char *name, const char *help,
                                       const char *labels, const double *bounds,
                                       size_t bound_count);

void node_counter_add(node_counter *c, uint64_t delta);
void node_gauge_set(node_gauge *g, double value);
void node_histogram_observe(node_histogram *h, double value);

/* Renders every family (# HELP, # TYPE, series) into a malloc'd string. */
int node_metrics_render(node_metrics *m, char **out, size_t *len);

/* ======================================================================
 * Egress accounting (node/egress.c): bytes and dollars that crossed from one
 * region to another, per ordered pair and cause, priced by the topology's
 * egress matrix (GB = 1e9 bytes), beside what full replication would have
 * paid for the same writes. Counters are atomics: record from any thread,
 * without a lock. Dollars are computed from the byte counts at snapshot time,
 * so no floating-point sum drifts. A snapshot reads each counter once while
 * records may still be landing: its figures are each exact, not one instant.
 * ====================================================================== */

#define NODE_EGRESS_REGIONS_MAX     8  /* = PLC_REGIONS_MAX (checked in egress.c) */
#define NODE_EGRESS_REGION_NAME_MAX 32 /* = PLC_REGION_NAME_MAX, with the NUL */

typedef enum node_egress_cause {
    NODE_EGRESS_REPLICATION = 0, /* shipping a write to the other members of its replica set */
    NODE_EGRESS_REMOTE_READ,     /* serving a read from a region that holds no replica */
    NODE_EGRESS_REPAIR,          /* re-copying a replica that was lost or found corrupt */
    NODE_EGRESS_CAUSE_COUNT
} node_egress_cause;

/* "replication", "remote_read", "repair" (the metrics label and JSON spelling). */
const char *node_egress_cause_name(node_egress_cause cause);

typedef struct node_egress node_egress;
struct plc_topology;

typedef struct node_egress_flow {
    uint64_t bytes;
    double usd;
} node_egress_flow;

typedef struct node_egress_totals {
    size_t region_count;
    uint32_t local_region;
    char region_names[NODE_EGRESS_REGIONS_MAX][NODE_EGRESS_REGION_NAME_MAX];
    double egress_usd_per_gb[NODE_EGRESS_REGIONS_MAX][NODE_EGRESS_REGIONS_MAX]; /* [from][to] */
    /* [from][to][cause]; the diagonal stays zero (a transfer within a region is not egress). */
    node_egress_flow pairs[NODE_EGRESS_REGIONS_MAX][NODE_EGRESS_REGIONS_MAX]
                          [NODE_EGRESS_CAUSE_COUNT];
    node_egress_flow by_cause[NODE_EGRESS_CAUSE_COUNT];
    node_egress_flow total;
    /* The counterfactual's inputs, per region: writes by origin, reads by reading region. */
    uint64_t writes[NODE_EGRESS_REGIONS_MAX];
    uint64_t written_bytes[NODE_EGRESS_REGIONS_MAX];
    uint64_t reads[NODE_EGRESS_REGIONS_MAX];
    uint64_t read_bytes[NODE_EGRESS_REGIONS_MAX];
    uint64_t write_count, written_bytes_total, read_count, read_bytes_total;
    /* Full replication's price of a byte written in each origin: the cheapest tree of copies
     * from the origin that reaches every other region (see node_egress_new). */
    double full_replication_usd_per_gb[NODE_EGRESS_REGIONS_MAX];
    double full_replication_usd;   /* sum over origins of written bytes x that price */
    double full_replication_ratio; /* total.usd / full_replication_usd; 0 when the latter is 0 */
    double full_replication_saving_usd; /* full_replication_usd - total.usd (< 0: costlier) */
    /* Share of read bytes that did not cross regions: 1 - remote-read bytes / read bytes
     * (1 when nothing was read). Full replication's is 1: every read is local. */
    double local_read_bytes_ratio;
} node_egress_totals;

/*
 * Copies the topology (its names and egress matrix) and prices, for every
 * origin, what full replication pays to ship one GB written there: the
 * minimum-cost arborescence from the origin over the egress matrix (each
 * region copied from one that already has the bytes), the copy price
 * c({origin}, all) that ternctl sim charges its `full` baseline
 * (docs/placement.md, plc_relay_usd_per_byte). TERN_EINVAL (errmsg says why) for
 * a region count outside 1..NODE_EGRESS_REGIONS_MAX, local_region out of
 * range, or a price that is negative or not finite; TERN_ENOMEM.
 */
int node_egress_new(const struct plc_topology *topology, uint32_t local_region, node_egress **out,
                    char *errmsg, size_t errmsg_len);
void node_egress_free(node_egress *e); /* safe with NULL */

/*
 * Counts bytes that went from region `from` to region `to` for `cause`. Any
 * thread. Regions must be below the topology's count and cause valid
 * (asserted: a bad index is a caller's bug). from == to is not egress and is
 * ignored.
 */
void node_egress_record(node_egress *e, uint32_t from, uint32_t to, node_egress_cause cause,
                        uint64_t bytes);
/* A client write of `bytes` that arrived in region origin (once per write, whatever it was then
 * shipped to): the counterfactual ships it from origin to every other region. Any thread. */
void node_egress_record_write(node_egress *e, uint32_t origin, uint64_t bytes);
/* A client read of `bytes` served to region `region`, local or remote (once per read): free
 * under full replication, counted for the local-read comparison. Any thread. */
void node_egress_record_read(node_egress *e, uint32_t region, uint64_t bytes);

/* Fills *out from the counters; dollars = bytes x USD per GB / 1e9. Any thread. */
void node_egress_snapshot(node_egress *e, node_egress_totals *out);

/*
 * Appends the Prometheus text families of a snapshot to *text (malloc'd, *len bytes, or NULL
 * and 0; reallocated): tern_egress_bytes_total and tern_egress_usd_total {from,to,cause} for
 * every ordered pair of distinct regions and every cause (zeros included, so rate() sees
 * each series from its start), tern_egress_written_bytes_total and
 * tern_egress_read_bytes_total {region}, tern_egress_full_replication_usd_total and the
 * gauge tern_egress_full_replication_ratio. TERN_ENOMEM leaves *text as it was.
 */
int node_egress_metrics_append(const node_egress_totals *t, char **text, size_t *len);
/* The snapshot as the JSON document of GET /_tern/egress (malloc'd, NUL-terminated). */
int node_egress_json(const node_egress_totals *t, char **out, size_t *len);

/* ======================================================================
 * Placement (node/placement_live.c): the engine fed with the accesses this
 * node serves. Thread-safe. The shipper sends a put's blocks to the engine's
 * target set; reads decide copies here, and the leader drops what the engine no longer wants.
 * ====================================================================== */

typedef struct node_placement node_placement;

/* Bucket policies are read from store (cached bucket records). TERN_EINVAL, TERN_ENOMEM. */
int node_placement_new(const plc_topology *t, uint32_t local_region, node_store *store,
                       uint64_t seed, double half_life_hours, uint32_t time_scale,
                       node_placement **out, char *errmsg, size_t errmsg_len);
void node_placement_free(node_placement *p); /* safe with NULL */
/* One access served here (PUT of the new size, GET of the bytes read, DELETE). NULL p: no-op. */
void node_placement_observe(node_placement *p, const char *bucket, const char *key, plc_op op,
                            uint64_t bytes, int64_t now_ms);
/* Reviews up to max_objects (drops, RPO windows); returns the number visited. Objects whose
 * target set lost this region are kept for node_placement_drops_take. */
size_t node_placement_tick(node_placement *p, int64_t now_ms, size_t max_objects);
typedef struct {
    char bucket[NODE_BUCKET_NAME_MAX + 1];
    char key[NODE_KEY_BYTES_MAX + 1];
} node_placement_drop;
/* Takes up to max of the objects the engine no longer wants here: those whose target set lost
 * this region, and copies on read (node_placement_note_copy) whose demand here no longer pays
 * for them. The caller drops them if it is safe, else notes them again. */
size_t node_placement_drops_take(node_placement *p, node_placement_drop *out, size_t max,
                                 int64_t now_ms);
/* A replica of bucket/key (written in another region) was made here by a read: reviewed for
 * dropping by this node (when it leads) and, through the journal, by the region's leader. */
void node_placement_copy_made(node_placement *p, const char *bucket, const char *key);
/* Puts bucket/key (back) on the list of replicas reviewed for dropping: made here by a read,
 * or shipped here by the origin's placement (kept at least a demand half-life unread). */
void node_placement_note_copy(node_placement *p, const char *bucket, const char *key);
/*
 * The journal: every access fed here and every copy made here, kept (the last 16,384) so that
 * the region's leader can pull them (GET /_tern/placement/journal) and its engine sees the
 * whole region's demand. read: the records after sequence number `after`, at most about
 * max_bytes, encoded into *out (malloc'd). apply (on the leader): feeds them into this engine;
 * *epoch identifies the sender's process (a new one restarts its sequence) and *next is the
 * sequence to ask after next time. TERN_EPARSE for a malformed batch.
 */
int node_placement_journal_read(node_placement *p, uint64_t after, size_t max_bytes, uint8_t **out,
                                size_t *len);
int node_placement_journal_apply(node_placement *p, const uint8_t *buf, size_t len, uint64_t *epoch,
                                 uint64_t *next);
/* A GET served here of an object whose version was written in region origin (topology index;
 * -1 when unknown or here): an object the engine has not seen starts as a PUT there. Returns
 * the target set after the read (bit local_region set: keep a replica here). NULL p: 0. */
plc_mask node_placement_observe_read(node_placement *p, const char *bucket, const char *key,
                                     int origin, uint64_t object_bytes, uint64_t bytes,
                                     int64_t now_ms);
/* A read from another region that this one served (a block fetched from here). */
void node_placement_observe_remote(node_placement *p, uint32_t region, const char *bucket,
                                   const char *key, uint64_t bytes, int64_t now_ms);
/* Where a version written here goes: the engine's target set (never without this region),
 * raised to the bucket's floor (min_regions within allowed_regions, the pinned regions). */
plc_mask node_placement_put_target(node_placement *p, const char *bucket, const char *key,
                                   uint64_t bytes, int64_t now_ms);
/* Source selection: the holder a remote read here should come from. */
uint32_t node_placement_choose_source(node_placement *p, plc_mask holders);
/* A remote read's transfer from region `from` (for source selection). */
void node_placement_observe_transfer(node_placement *p, uint32_t from, uint64_t bytes,
                                     double latency_ms);
/* JSON documents for /_tern/placement/...; explain: TERN_ENOTFOUND for an object the engine
 * has not seen. *out is malloc'd. */
int node_placement_explain_json(node_placement *p, const char *bucket, const char *key,
                                int64_t now_ms, char **out, size_t *len);
int node_placement_stats_json(node_placement *p, char **out, size_t *len);

/* ======================================================================
 * Geo shipping (node/geo_ship.c): while this node leads its region, a thread
 * per peer region sends the geo log to the peer's /_tern/geo endpoints, and
 * the blocks of each put to the peers in its target set (placement). Requests
 * are signed with the root credentials, which every region of a deployment
 * shares.
 * ====================================================================== */

typedef struct node_geo_ship node_geo_ship;

typedef struct {
    node_store *store;
    node_group *group;             /* trims the geo log once every peer applied it (NULL: never) */
    const node_topology *topology; /* peer regions are reached at their first s3_endpoint */
    uint32_t local_region;         /* index in the topology */
    const char *access_key, *secret_key;
    node_egress *egress;       /* may be NULL */
    node_placement *placement; /* target sets of puts; NULL: every block to every peer */
    uint64_t rate_bytes_per_s; /* bandwidth bound per peer region; 0 = none */
    /* With placement and fetch, the leader also drops the replicas the engine no longer
     * wants here, once other regions hold enough copies (geo_ship.c, "drops"). */
    struct node_geo_fetch *fetch;
    /* This node's own S3 endpoint as the topology lists it ("http://HOST:PORT"): the leader pulls
     * the other nodes' placement journals (own region's s3_endpoints but this one). */
    const char *self_endpoint;
} node_geo_ship_config;

/* Ships to every other region with s3_endpoints (regions without are skipped with a warning).
 * TERN_ENOMEM. */
int node_geo_ship_start(const node_geo_ship_config *c, node_geo_ship **out, char *errmsg,
                        size_t errmsg_len);
/* Any thread: shipping runs only while leader is true. */
void node_geo_ship_set_leader(node_geo_ship *s, bool leader);
/* Stops and joins the threads (at most one request timeout); never waits on the group, so the
 * loop thread may call it. Safe with NULL, and twice. */
void node_geo_ship_stop(node_geo_ship *s);
/* Frees it (stopping it first): after the group closed, since a pending log trim's answer
 * still reaches it until then. Safe with NULL. */
void node_geo_ship_free(node_geo_ship *s);

/* ======================================================================
 * Remote reads (node/geo_fetch.c): blocks this region does not hold, fetched
 * from a region that does, over the same signed HTTP as the shipper.
 * ====================================================================== */

typedef struct node_geo_fetch node_geo_fetch;
/* egress and placement may be NULL. TERN_ENOMEM. */
int node_geo_fetch_new(const node_topology *t, uint32_t local_region, const char *access_key,
                       const char *secret_key, node_egress *egress, node_placement *placement,
                       node_geo_fetch **out);
void node_geo_fetch_free(node_geo_fetch *f); /* safe with NULL */
/*
 * Fetches block id (size_bytes long) of bucket/key from another region: the holders (topology
 * region mask; 0 = unknown) first, source selection's pick leading, then every other region,
 * each region's endpoints in turn; the bytes must hash to id. Returns 0 with *data (malloc'd,
 * *len bytes) and the region it came from, TERN_ENOTFOUND when every region that answered
 * lacks it, TERN_EUNAVAIL when none answered. Blocks: worker threads only. Any thread.
 */
int node_geo_fetch_block(node_geo_fetch *f, const char *bucket, const char *key, uint32_t holders,
                         const node_block_id *id, uint32_t size_bytes, void **data, size_t *len,
                         uint32_t *from);

/* Whether region stores every one of the blocks (*all), asked of its endpoints in turn:
 * 0, TERN_EUNAVAIL when none answered, TERN_EINVAL, TERN_ENOMEM. Worker threads only. */
int node_geo_fetch_have(node_geo_fetch *f, uint32_t region, const node_block_id *ids, size_t count,
                        bool *all);

/* Pulls a node's placement journal after `after` (GET /_tern/placement/journal): 0 with *body
 * (malloc'd), TERN_EUNAVAIL (no answer), TERN_EIO (an error status). Worker threads only. */
int node_geo_fetch_journal(node_geo_fetch *f, const char *endpoint, uint64_t after, void **body,
                           size_t *len);
/* Another region had nothing to send before hlc (GEO_MARK). */
int node_cmd_geo_mark(node_group *g, uint32_t origin_region, uint64_t hlc, uint64_t upto);
/* A change another region originated, committed through the group (GEO_APPLY). */
int node_cmd_geo_apply(node_group *g, uint32_t origin_region, uint64_t origin_index, uint64_t hlc,
                       uint32_t holders, bool local_holder, bool reseed, const uint8_t *change,
                       size_t change_len);

/* ======================================================================
 * Logging: one line per event to stderr, "ts level component: message".
 * ====================================================================== */

enum { NODE_LOG_ERROR = 0, NODE_LOG_WARN, NODE_LOG_INFO, NODE_LOG_DEBUG };
void node_log_set_level(int level);
int node_log_level_parse(const char *name); /* -1 if unknown */
void node_log(int level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
