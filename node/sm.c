/* The region group's state machine: replicated commands applied into the store, exactly once. */
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "sm.h"
#include "store_internal.h"

enum {
    CMD_VERSION = 1,
    CMD_BUCKET_CREATE = 1,
    CMD_BUCKET_DELETE,
    CMD_BLOCK_PUT,
    CMD_OBJECT_PUT,
    CMD_OBJECT_DELETE,
    CMD_UPLOAD_CREATE,
    CMD_PART_PUT,
    CMD_UPLOAD_COMPLETE,
    CMD_UPLOAD_ABORT,
    CMD_BLOCKS_COLLECT,
    CMD_OBJECT_PUT_WITH_BLOCK,
    CMD_PART_PUT_WITH_BLOCK,
    CMD_BUCKET_POLICY,
    CMD_GEO_APPLY,
    CMD_GEO_TRIM,
    CMD_GEO_APPLY_PLACED,
    CMD_BLOCKS_DROP,
    CMD_OBJECT_DELETE_AT,
    CMD_GEO_MARK,
    CMD_GEO_GC,
};

/* Session record: u8 version | u64 max_seq | u64 window | i8 results[64]. */
#define SESSION_RECORD_BYTES (1 + 8 + 8 + NODE_SM_SESSION_WINDOW)

typedef struct {
    uint64_t client_id;
    uint64_t max_seq;
    uint64_t window;                        /* bit i: seq max_seq - i was applied */
    int8_t results[NODE_SM_SESSION_WINDOW]; /* results[seq % 64] */
} session;

struct node_sm {
    node_store *store;
    /* Geo log: the origin region id stamped on this region's changes, and the region's HLC
     * (replicated state: loaded from the store, advanced only by apply). */
    uint32_t region_id;
    bool geo; /* the region has peers: its changes are logged for them */
    uint64_t hlc;
    bool hlc_loaded;
    bool blocks_elsewhere; /* during a GEO_APPLY put whose blocks this region does not hold */
    /* Apply thread only. Few clients (one per node incarnation): a small array. */
    session *sessions;
    size_t session_count;
    size_t session_cap;
};

/* ------------------------------------------------------------------ encoding */

static void put_str(node__buf *b, const char *s)
{
    size_t n = strlen(s);
    node__buf_u32(b, (uint32_t)n);
    node__buf_bytes(b, s, n);
}

static int finish(node__buf *b, uint8_t **out, size_t *len)
{
    if (b->failed) {
        node__buf_free(b);
        return TERN_ENOMEM;
    }
    *out = b->data;
    *len = b->len;
    return 0;
}

static void begin(node__buf *b, int type)
{
    memset(b, 0, sizeof *b);
    node__buf_u8(b, CMD_VERSION);
    node__buf_u8(b, (uint8_t)type);
}

int node_sm_encode_bucket_create(const char *name, const char *region, int64_t created_ms,
                                 uint8_t **out, size_t *len)
{
    node__buf b;
    begin(&b, CMD_BUCKET_CREATE);
    put_str(&b, name);
    put_str(&b, region);
    node__buf_u64(&b, (uint64_t)created_ms);
    return finish(&b, out, len);
}

int node_sm_encode_bucket_delete(const char *name, uint8_t **out, size_t *len)
{
    node__buf b;
    begin(&b, CMD_BUCKET_DELETE);
    put_str(&b, name);
    return finish(&b, out, len);
}

int node_sm_encode_bucket_policy(const char *name, const node_bucket_policy *p, uint8_t **out,
                                 size_t *len)
{
    node__buf b;
    begin(&b, CMD_BUCKET_POLICY);
    put_str(&b, name);
    node__bucket_policy_encode(p, &b);
    return finish(&b, out, len);
}

int node_sm_encode_block_put(const node_block_id *id, const void *data, size_t data_len,
                             uint8_t **out, size_t *len)
{
    node__buf b;
    begin(&b, CMD_BLOCK_PUT);
    node__buf_bytes(&b, id->bytes, NODE_BLOCK_ID_BYTES);
    node__buf_bytes(&b, data, data_len);
    return finish(&b, out, len);
}

static void put_object(node__buf *b, const char *bucket, const char *key)
{
    put_str(b, bucket);
    put_str(b, key);
}

int node_sm_encode_object_put(const char *bucket, const char *key, const node_manifest *m,
                              uint8_t **out, size_t *len)
{
    node__buf b;
    begin(&b, CMD_OBJECT_PUT);
    put_object(&b, bucket, key);
    int rc = node__manifest_encode(m, true, &b);
    if (rc != 0) {
        node__buf_free(&b);
        return rc;
    }
    return finish(&b, out, len);
}

static void put_block(node__buf *b, const node_block_id *id, const void *data, size_t len)
{
    node__buf_bytes(b, id->bytes, NODE_BLOCK_ID_BYTES);
    node__buf_u32(b, (uint32_t)len);
    node__buf_bytes(b, data, len);
}

int node_sm_encode_object_put_with_block(const char *bucket, const char *key,
                                         const node_manifest *m, const node_block_id *id,
                                         const void *data, size_t data_len, uint8_t **out,
                                         size_t *len)
{
    node__buf b;
    begin(&b, CMD_OBJECT_PUT_WITH_BLOCK);
    put_object(&b, bucket, key);
    put_block(&b, id, data, data_len);
    int rc = node__manifest_encode(m, true, &b);
    if (rc != 0) {
        node__buf_free(&b);
        return rc;
    }
    return finish(&b, out, len);
}

int node_sm_encode_part_put_with_block(const char *bucket, const char *key, const char *upload_id,
                                       const node_part *part, const node_block_id *id,
                                       const void *data, size_t data_len, uint8_t **out,
                                       size_t *len)
{
    node__buf b;
    begin(&b, CMD_PART_PUT_WITH_BLOCK);
    put_object(&b, bucket, key);
    put_str(&b, upload_id);
    put_block(&b, id, data, data_len);
    int rc = node__part_encode(part, &b);
    if (rc != 0) {
        node__buf_free(&b);
        return rc;
    }
    return finish(&b, out, len);
}

int node_sm_encode_object_delete(const char *bucket, const char *key, uint8_t **out, size_t *len)
{
    node__buf b;
    begin(&b, CMD_OBJECT_DELETE);
    put_object(&b, bucket, key);
    return finish(&b, out, len);
}

int node_sm_encode_object_delete_at(const char *bucket, const char *key, int64_t time_ms,
                                    uint8_t **out, size_t *len)
{
    node__buf b;
    begin(&b, CMD_OBJECT_DELETE_AT);
    put_object(&b, bucket, key);
    node__buf_u64(&b, (uint64_t)time_ms);
    return finish(&b, out, len);
}

int node_sm_encode_upload_create(const char *bucket, const char *key, const char *upload_id,
                                 int64_t initiated_ms, const node_manifest *tmpl, uint8_t **out,
                                 size_t *len)
{
    node_manifest empty = {0};
    node__buf b;
    begin(&b, CMD_UPLOAD_CREATE);
    put_object(&b, bucket, key);
    put_str(&b, upload_id);
    node__buf_u64(&b, (uint64_t)initiated_ms);
    int rc = node__manifest_encode(tmpl ? tmpl : &empty, false, &b);
    if (rc != 0) {
        node__buf_free(&b);
        return rc;
    }
    return finish(&b, out, len);
}

int node_sm_encode_part_put(const char *bucket, const char *key, const char *upload_id,
                            const node_part *part, uint8_t **out, size_t *len)
{
    node__buf b;
    begin(&b, CMD_PART_PUT);
    put_object(&b, bucket, key);
    put_str(&b, upload_id);
    int rc = node__part_encode(part, &b);
    if (rc != 0) {
        node__buf_free(&b);
        return rc;
    }
    return finish(&b, out, len);
}

int node_sm_encode_upload_complete(const char *bucket, const char *key, const char *upload_id,
                                   const node_manifest *final, uint8_t **out, size_t *len)
{
    node__buf b;
    begin(&b, CMD_UPLOAD_COMPLETE);
    put_object(&b, bucket, key);
    put_str(&b, upload_id);
    int rc = node__manifest_encode(final, true, &b);
    if (rc != 0) {
        node__buf_free(&b);
        return rc;
    }
    return finish(&b, out, len);
}

int node_sm_encode_upload_abort(const char *bucket, const char *key, const char *upload_id,
                                uint8_t **out, size_t *len)
{
    node__buf b;
    begin(&b, CMD_UPLOAD_ABORT);
    put_object(&b, bucket, key);
    put_str(&b, upload_id);
    return finish(&b, out, len);
}

int node_sm_encode_blocks_collect(const node_block_id *ids, size_t count, uint8_t **out,
                                  size_t *len)
{
    node__buf b;
    begin(&b, CMD_BLOCKS_COLLECT);
    node__buf_u32(&b, (uint32_t)count);
    for (size_t i = 0; i < count; i++)
        node__buf_bytes(&b, ids[i].bytes, NODE_BLOCK_ID_BYTES);
    return finish(&b, out, len);
}

int node_sm_encode_blocks_drop(const node_block_id *ids, size_t count, uint8_t **out, size_t *len)
{
    node__buf b;
    begin(&b, CMD_BLOCKS_DROP);
    node__buf_u32(&b, (uint32_t)count);
    for (size_t i = 0; i < count; i++)
        node__buf_bytes(&b, ids[i].bytes, NODE_BLOCK_ID_BYTES);
    return finish(&b, out, len);
}

/* ------------------------------------------------------------------ decoding */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    bool bad;
} reader;

static uint8_t get_u8(reader *r)
{
    if (r->bad || r->end - r->p < 1) {
        r->bad = true;
        return 0;
    }
    return *r->p++;
}

static uint32_t get_u32(reader *r)
{
    if (r->bad || r->end - r->p < 4) {
        r->bad = true;
        return 0;
    }
    uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
                 (uint32_t)r->p[3] << 24;
    r->p += 4;
    return v;
}

static uint64_t get_u64(reader *r)
{
    uint64_t lo = get_u32(r), hi = get_u32(r);
    return lo | hi << 32;
}

/* A NUL-terminated copy of a string field into buf (cap bytes); sets bad if it does not fit. */
static const char *get_str(reader *r, char *buf, size_t cap)
{
    uint32_t n = get_u32(r);
    if (r->bad || n >= cap || (size_t)(r->end - r->p) < n || memchr(r->p, 0, n) != NULL) {
        r->bad = true;
        buf[0] = '\0';
        return buf;
    }
    memcpy(buf, r->p, n);
    buf[n] = '\0';
    r->p += n;
    return buf;
}

typedef struct {
    char bucket[NODE_BUCKET_NAME_MAX + 2];
    char key[NODE_KEY_BYTES_MAX + 2];
    char upload_id[NODE_UPLOAD_ID_MAX + 2];
} names;

/* True for results every replica computes alike from the replicated state. */
static bool deterministic(int rc)
{
    return rc == 0 || rc == TERN_ENOTFOUND || rc == TERN_EEXIST || rc == TERN_ENOTEMPTY ||
           rc == TERN_ECONFLICT || rc == TERN_EINVAL || rc == TERN_EPARSE;
}

/* Stores a block (the pin is dropped at once: a replicated store keeps unreferenced blocks
 * until a BLOCKS_COLLECT command removes them). */
static int store_block(node_sm *sm, const node_block_id *id, const void *data, size_t len)
{
    if (len == 0 || len > NODE_BLOCK_SIZE_MAX) return TERN_EPARSE;
    int rc = node_store_block_put(sm->store, id, data, len);
    if (rc == 0) node_store_block_unpin(sm->store, id);
    return rc;
}

/* The inline block of a _WITH_BLOCK command. */
static int apply_inline_block(node_sm *sm, reader *r)
{
    if (r->bad || r->end - r->p < NODE_BLOCK_ID_BYTES) return TERN_EPARSE;
    node_block_id id;
    memcpy(id.bytes, r->p, NODE_BLOCK_ID_BYTES);
    r->p += NODE_BLOCK_ID_BYTES;
    uint32_t len = get_u32(r);
    if (r->bad || (size_t)(r->end - r->p) < len) return TERN_EPARSE;
    int rc = store_block(sm, &id, r->p, len);
    r->p += len;
    return rc;
}

static int apply_manifest_cmd(node_sm *sm, int type, reader *r, names *n)
{
    get_str(r, n->bucket, sizeof n->bucket);
    get_str(r, n->key, sizeof n->key);
    if (type == CMD_UPLOAD_CREATE || type == CMD_PART_PUT || type == CMD_UPLOAD_COMPLETE ||
        type == CMD_UPLOAD_ABORT || type == CMD_PART_PUT_WITH_BLOCK)
        get_str(r, n->upload_id, sizeof n->upload_id);
    int64_t initiated_ms = type == CMD_UPLOAD_CREATE ? (int64_t)get_u64(r) : 0;
    if (r->bad) return TERN_EPARSE;
    if (type == CMD_OBJECT_PUT_WITH_BLOCK || type == CMD_PART_PUT_WITH_BLOCK) {
        /* The block first: the record after it refers to it. A failed record leaves an
         * unreferenced block, collected later like any other. */
        int rc = apply_inline_block(sm, r);
        if (rc != 0) return rc;
        type = type == CMD_OBJECT_PUT_WITH_BLOCK ? CMD_OBJECT_PUT : CMD_PART_PUT;
    }
    const char *rest = (const char *)r->p;
    size_t rest_len = (size_t)(r->end - r->p);
    if (type == CMD_OBJECT_DELETE || type == CMD_OBJECT_DELETE_AT) {
        if (rest_len != (type == CMD_OBJECT_DELETE_AT ? 8u : 0u)) return TERN_EPARSE;
        return node_store_object_delete(sm->store, n->bucket, n->key);
    }
    if (type == CMD_UPLOAD_ABORT) {
        if (rest_len != 0) return TERN_EPARSE;
        return node_store_upload_abort(sm->store, n->bucket, n->key, n->upload_id);
    }
    if (type == CMD_PART_PUT) {
        node_part part;
        int rc = node__part_decode(rest, rest_len, &part);
        if (rc != 0) return TERN_EPARSE;
        rc = node_store_upload_part_put(sm->store, n->bucket, n->key, n->upload_id, &part);
        free(part.blocks);
        return rc;
    }
    node_manifest *m = NULL;
    if (node__manifest_decode(rest, rest_len, &m) != 0) return TERN_EPARSE;
    int rc;
    if (type == CMD_OBJECT_PUT)
        rc = node_store_object_put_placed(sm->store, n->bucket, n->key, m, sm->blocks_elsewhere);
    else if (type == CMD_UPLOAD_CREATE)
        rc = node_store_upload_create_id(sm->store, n->bucket, n->key, m, initiated_ms,
                                         n->upload_id);
    else
        rc = node_store_upload_complete(sm->store, n->bucket, n->key, n->upload_id, m);
    node_manifest_free(m);
    return rc;
}

/* BLOCKS_COLLECT and BLOCKS_DROP: u32 count, ids[32], handed to op. */
static int apply_block_list(node_sm *sm, reader *r,
                            int (*op)(node_store *, const node_block_id *, size_t, uint64_t *))
{
    uint32_t count = get_u32(r);
    if (r->bad || (size_t)(r->end - r->p) != (size_t)count * NODE_BLOCK_ID_BYTES)
        return TERN_EPARSE;
    node_block_id *ids = malloc(count ? count * sizeof *ids : 1);
    if (ids == NULL) return TERN_ENOMEM;
    for (uint32_t i = 0; i < count; i++)
        memcpy(ids[i].bytes, r->p + (size_t)i * NODE_BLOCK_ID_BYTES, NODE_BLOCK_ID_BYTES);
    uint64_t done = 0;
    int rc = op(sm->store, ids, count, &done);
    free(ids);
    return rc;
}

/* Applies one command to the store; returns its result. */
static int apply_geo(node_sm *sm, reader *r, bool placed);
static int apply_geo_mark(node_sm *sm, reader *r);
static int apply_geo_gc(node_sm *sm, reader *r);

static int apply_cmd(node_sm *sm, const uint8_t *cmd, size_t len)
{
    if (len < 2 || cmd[0] != CMD_VERSION) return TERN_EPARSE;
    reader r = {cmd + 2, cmd + len, false};
    int type = cmd[1];
    names n;
    switch (type) {
    case CMD_BUCKET_CREATE: {
        char region[NODE_REGION_MAX + 2];
        get_str(&r, n.bucket, sizeof n.bucket);
        get_str(&r, region, sizeof region);
        int64_t created_ms = (int64_t)get_u64(&r);
        if (r.bad || r.p != r.end) return TERN_EPARSE;
        return node_store_bucket_create(sm->store, n.bucket, region, created_ms);
    }
    case CMD_BUCKET_DELETE:
        get_str(&r, n.bucket, sizeof n.bucket);
        if (r.bad || r.p != r.end) return TERN_EPARSE;
        return node_store_bucket_delete(sm->store, n.bucket);
    case CMD_GEO_APPLY:
        return apply_geo(sm, &r, false);
    case CMD_GEO_APPLY_PLACED:
        return apply_geo(sm, &r, true);
    case CMD_GEO_MARK:
        return apply_geo_mark(sm, &r);
    case CMD_GEO_GC:
        return apply_geo_gc(sm, &r);
    case CMD_BLOCKS_DROP:
        return apply_block_list(sm, &r, node_store_blocks_drop);
    case CMD_GEO_TRIM: {
        uint64_t upto = get_u64(&r);
        if (r.bad || r.p != r.end) return TERN_EPARSE;
        /* Kept: a peer asking from before it must be re-seeded, not shipped the rest. */
        uint8_t le[8];
        uint64_t before = node_geo_trimmed_get(sm->store);
        tern_le_put_u64(le, upto > before ? upto : before);
        node_store_apply_stamp_meta(sm->store, "raft/geo/trimmed", le, sizeof le, false);
        return node_store_geolog_trim(sm->store, upto);
    }
    case CMD_BUCKET_POLICY: {
        get_str(&r, n.bucket, sizeof n.bucket);
        if (r.bad) return TERN_EPARSE;
        node_bucket_policy p;
        if (node__bucket_policy_decode(r.p, (size_t)(r.end - r.p), &p) != 0) return TERN_EPARSE;
        return node_store_bucket_policy_set(sm->store, n.bucket, &p);
    }
    case CMD_BLOCK_PUT: {
        if (len < 2 + NODE_BLOCK_ID_BYTES) return TERN_EPARSE;
        node_block_id id;
        memcpy(id.bytes, cmd + 2, NODE_BLOCK_ID_BYTES);
        return store_block(sm, &id, cmd + 2 + NODE_BLOCK_ID_BYTES, len - 2 - NODE_BLOCK_ID_BYTES);
    }
    case CMD_OBJECT_PUT_WITH_BLOCK:
    case CMD_PART_PUT_WITH_BLOCK:
    case CMD_OBJECT_PUT:
    case CMD_OBJECT_DELETE:
    case CMD_OBJECT_DELETE_AT:
    case CMD_UPLOAD_CREATE:
    case CMD_PART_PUT:
    case CMD_UPLOAD_COMPLETE:
    case CMD_UPLOAD_ABORT:
        return apply_manifest_cmd(sm, type, &r, &n);
    case CMD_BLOCKS_COLLECT:
        return apply_block_list(sm, &r, node_store_blocks_collect);
    default:
        return TERN_EPARSE;
    }
}

/* ------------------------------------------------------------------ the geo log */

/*
 * A change this region originated, as the geo log keeps it (node.h,
 * node_store_apply_stamp_geo): u8 version (1) | u64 hlc | u32 origin region
 * id | the change as a plain command (an _WITH_BLOCK form without its block,
 * whose bytes ship separately to the regions placement picks; an
 * UPLOAD_COMPLETE as the OBJECT_PUT of its final manifest). The version is
 * the region's HLC, advanced deterministically in apply: past the previous
 * one, and up to the change's own time (the proposer's clock) when it has one.
 */
#define GEO_RECORD_VERSION 1

uint32_t node_sm_region_id(const char *region)
{
    uint32_t h = 2166136261u; /* FNV-1a: stable across releases and platforms */
    for (const char *p = region; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

void node_sm_set_region(node_sm *sm, const char *region, bool log_changes)
{
    sm->region_id = node_sm_region_id(region);
    sm->geo = log_changes;
}

/* "raft/ver/<bucket>/<key>": the version of the key's latest change (a delete's too: the
 * tombstone that makes an older remote write lose). u64 hlc | u32 region | u8 deleted | u8
 * holders (the topology regions the origin sent the blocks to; 0 = unknown, every region).
 * Records written before holders existed have 13 bytes and read as holders 0. */
#define VERSION_RECORD_BYTES 14

static void version_key(char *buf, size_t cap, const char *bucket, const char *key)
{
    snprintf(buf, cap, "raft/ver/%s/%s", bucket, key);
}

static void version_stamp(node_sm *sm, const char *bucket, const char *key, uint64_t hlc,
                          uint32_t region, bool deleted, uint32_t holders, bool always)
{
    char k[NODE__STAMP_KEY_MAX + 1];
    version_key(k, sizeof k, bucket, key);
    uint8_t v[VERSION_RECORD_BYTES];
    tern_le_put_u64(v, hlc);
    tern_le_put_u32(v + 8, region);
    v[12] = deleted;
    v[13] = (uint8_t)holders;
    node_store_apply_stamp_meta(sm->store, k, v, sizeof v, always);
}

static int version_read(node_store *s, const char *bucket, const char *key, uint64_t *hlc,
                        uint32_t *region, bool *deleted, uint32_t *holders)
{
    char k[NODE__STAMP_KEY_MAX + 1];
    version_key(k, sizeof k, bucket, key);
    uint8_t v[VERSION_RECORD_BYTES];
    size_t n = 0;
    *hlc = 0;
    *region = 0;
    *deleted = false;
    *holders = 0;
    int rc = node_store_raft_meta_get(s, k, v, sizeof v, &n);
    if (rc != 0) return rc;
    if (n != sizeof v && n != sizeof v - 1) return TERN_ECORRUPT;
    *hlc = tern_le_get_u64(v);
    *region = tern_le_get_u32(v + 8);
    *deleted = v[12] != 0;
    if (n == sizeof v) *holders = v[13];
    return 0;
}

/* A bucket policy's version ("raft/bpol/<bucket>": u64 hlc | u32 region), so that policies set
 * concurrently in two regions end the same in both (last writer wins, like objects). */
static void policy_version_key(char *buf, size_t cap, const char *bucket)
{
    snprintf(buf, cap, "raft/bpol/%s", bucket);
}

/* Stamps the version of the BUCKET_POLICY command cmd (its bucket name is its first field). */
static void policy_version_stamp(node_sm *sm, const uint8_t *cmd, size_t len, uint64_t hlc,
                                 uint32_t region, bool always)
{
    reader r = {cmd + 2, cmd + len, false};
    char bucket[NODE_BUCKET_NAME_MAX + 2];
    get_str(&r, bucket, sizeof bucket);
    if (r.bad) return;
    char k[NODE__STAMP_KEY_MAX + 1];
    policy_version_key(k, sizeof k, bucket);
    uint8_t v[12];
    tern_le_put_u64(v, hlc);
    tern_le_put_u32(v + 8, region);
    node_store_apply_stamp_meta(sm->store, k, v, sizeof v, always);
}

/* Whether a policy change (hlc, region) of bucket is newer than the one applied. */
static int policy_newer(node_sm *sm, const char *bucket, uint64_t hlc, uint32_t region, bool *newer)
{
    char k[NODE__STAMP_KEY_MAX + 1];
    policy_version_key(k, sizeof k, bucket);
    uint8_t v[12];
    size_t n = 0;
    int rc = node_store_raft_meta_get(sm->store, k, v, sizeof v, &n);
    if (rc == TERN_ENOTFOUND) {
        *newer = true;
        return 0;
    }
    if (rc != 0) return rc;
    if (n != sizeof v) return TERN_ECORRUPT;
    *newer = tern_version_cmp(hlc, region, tern_le_get_u64(v), tern_le_get_u32(v + 8)) > 0;
    return 0;
}

int node_geo_version_get(node_store *s, const char *bucket, const char *key, uint64_t *hlc,
                         uint32_t *region, bool *deleted, uint32_t *holders)
{
    return version_read(s, bucket, key, hlc, region, deleted, holders);
}

int node_geo_policy_version_get(node_store *s, const char *bucket, uint64_t *hlc, uint32_t *region)
{
    char k[NODE__STAMP_KEY_MAX + 1];
    policy_version_key(k, sizeof k, bucket);
    uint8_t v[12];
    size_t n = 0;
    int rc = node_store_raft_meta_get(s, k, v, sizeof v, &n);
    if (rc != 0) return rc;
    if (n != sizeof v) return TERN_ECORRUPT;
    *hlc = tern_le_get_u64(v);
    *region = tern_le_get_u32(v + 8);
    return 0;
}

int node_sm_version_get(node_sm *sm, const char *bucket, const char *key, uint64_t *hlc,
                        uint32_t *region, bool *deleted)
{
    uint32_t holders;
    return version_read(sm->store, bucket, key, hlc, region, deleted, &holders);
}

int node_object_placement_get(node_store *s, const char *bucket, const char *key,
                              uint32_t *origin_region_id, uint32_t *holders)
{
    uint64_t hlc;
    bool deleted;
    int rc = version_read(s, bucket, key, &hlc, origin_region_id, &deleted, holders);
    if (rc == 0 && deleted) rc = TERN_ENOTFOUND;
    return rc;
}

/* Skips a string field. */
static void skip_str(reader *r)
{
    uint32_t n = get_u32(r);
    if (r->bad || (size_t)(r->end - r->p) < n)
        r->bad = true;
    else
        r->p += n;
}

/* Builds the geo record of cmd into b, or leaves b empty for commands that are not changes to
 * ship (blocks, parts, upload bookkeeping, collection). Malformed commands are left to apply to
 * refuse. */
static void geo_record(node_sm *sm, const uint8_t *cmd, size_t len, node__buf *b)
{
    memset(b, 0, sizeof *b);
    if (!sm->geo || len < 2 || cmd[0] != CMD_VERSION) return;
    int type = cmd[1];
    reader r = {cmd + 2, cmd + len, false};
    const uint8_t *manifest = NULL; /* the manifest record of a put: its mtime dates it */
    const uint8_t *names_end = NULL;
    int64_t time_ms = 0;
    int plain = type;
    switch (type) {
    case CMD_BUCKET_CREATE:
        skip_str(&r);
        skip_str(&r);
        time_ms = (int64_t)get_u64(&r);
        break;
    case CMD_BUCKET_DELETE:
    case CMD_OBJECT_DELETE:
    case CMD_BUCKET_POLICY:
        break;
    case CMD_OBJECT_DELETE_AT:
        /* Shipped as a plain delete: its time is in the record's version. */
        skip_str(&r);
        skip_str(&r);
        names_end = r.p;
        time_ms = (int64_t)get_u64(&r);
        manifest = cmd + len;
        plain = CMD_OBJECT_DELETE;
        break;
    case CMD_OBJECT_PUT:
    case CMD_OBJECT_PUT_WITH_BLOCK:
    case CMD_UPLOAD_COMPLETE:
        skip_str(&r);
        skip_str(&r);
        names_end = r.p;
        if (type == CMD_UPLOAD_COMPLETE) skip_str(&r);
        if (type == CMD_OBJECT_PUT_WITH_BLOCK) {
            if (r.end - r.p < NODE_BLOCK_ID_BYTES) return;
            r.p += NODE_BLOCK_ID_BYTES;
            uint32_t n = get_u32(&r);
            if (r.bad || (size_t)(r.end - r.p) < n) return;
            r.p += n;
        }
        manifest = r.p;
        plain = CMD_OBJECT_PUT;
        if (r.bad) return;
        {
            uint64_t size;
            char etag[NODE_ETAG_MAX + 1];
            if (node__manifest_decode_head((const char *)manifest, (size_t)(r.end - manifest),
                                           &size, etag, &time_ms) != 0)
                return;
        }
        break;
    default:
        return;
    }
    if (r.bad) return;
    reader nr = {cmd + 2, cmd + len, false}; /* the names again, for the version record */
    names n;
    bool object =
        type != CMD_BUCKET_CREATE && type != CMD_BUCKET_DELETE && type != CMD_BUCKET_POLICY;
    if (object) {
        get_str(&nr, n.bucket, sizeof n.bucket);
        get_str(&nr, n.key, sizeof n.key);
        if (nr.bad) return;
    }
    uint64_t hlc = sm->hlc + 1;
    if (time_ms > 0 && ((uint64_t)time_ms << TERN_HLC_LOGICAL_BITS) > hlc)
        hlc = (uint64_t)time_ms << TERN_HLC_LOGICAL_BITS;
    node__buf_u8(b, GEO_RECORD_VERSION);
    node__buf_u64(b, hlc);
    node__buf_u32(b, sm->region_id);
    if (plain == type) {
        node__buf_bytes(b, cmd, len);
    } else {
        node__buf_u8(b, CMD_VERSION);
        node__buf_u8(b, (uint8_t)plain);
        node__buf_bytes(b, cmd + 2, (size_t)(names_end - (cmd + 2)));
        node__buf_bytes(b, manifest, (size_t)(cmd + len - manifest));
    }
    if (b->failed) {
        node__buf_free(b);
        return;
    }
    /* The key's version rides with the change, so a remote change older than it loses. */
    if (object)
        version_stamp(sm, n.bucket, n.key, hlc, sm->region_id, plain == CMD_OBJECT_DELETE, 0,
                      false);
    else if (type == CMD_BUCKET_POLICY)
        policy_version_stamp(sm, cmd, len, hlc, sm->region_id, false);
}

int node_sm_encode_geo_trim(uint64_t upto, uint8_t **out, size_t *len)
{
    node__buf b;
    begin(&b, CMD_GEO_TRIM);
    node__buf_u64(&b, upto);
    return finish(&b, out, len);
}

int node_sm_encode_geo_apply(uint32_t origin_region, uint64_t origin_index, uint64_t hlc,
                             uint32_t holders, bool local_holder, bool reseed,
                             const uint8_t *change, size_t change_len, uint8_t **out, size_t *len)
{
    node__buf b;
    begin(&b, CMD_GEO_APPLY_PLACED);
    node__buf_u32(&b, origin_region);
    node__buf_u64(&b, origin_index);
    node__buf_u64(&b, hlc);
    node__buf_u8(&b, (uint8_t)holders);
    node__buf_u8(&b, (uint8_t)((local_holder ? 1 : 0) | (reseed ? 2 : 0)));
    node__buf_bytes(&b, change, change_len);
    return finish(&b, out, len);
}

/*
 * A change another region originated (GEO_APPLY: u32 origin region | u64 its
 * index there | u64 hlc | the change as a plain command). Applied at most once
 * per origin index ("raft/geo/in/<region>" keeps the highest, so a batch sent
 * again after a leader change on either side changes nothing), after merging
 * its timestamp into the region's clock (so later local writes are newer).
 * An object change wins only if its version (hlc, origin) is newer than the
 * key's (last writer wins; a delete leaves its version as a tombstone), so
 * regions that receive the same changes in any order end equal. Bucket
 * changes are applied as they come; their refusals (exists, not empty) are
 * no errors here. A newer put whose blocks are not here yet is refused
 * (ECONFLICT) and records nothing: the sender ships the blocks and retries.
 */
static int apply_geo(node_sm *sm, reader *r, bool placed)
{
    uint32_t origin = get_u32(r);
    uint64_t origin_index = get_u64(r);
    uint64_t hlc = get_u64(r);
    uint32_t holders = placed ? get_u8(r) : 0;
    uint8_t flags = placed ? get_u8(r) : 1;
    bool local_holder = (flags & 1) != 0;
    /* A re-seed sends the origin's current state outside its log order: last writer wins
     * decides, and the high-water index is left to the GEO_MARK that ends the re-seed. */
    bool reseed = (flags & 2) != 0;
    if (r->bad || r->end - r->p < 2 || r->p[0] != CMD_VERSION) return TERN_EPARSE;
    if (origin == sm->region_id) return TERN_EINVAL; /* our own change echoed back */
    const uint8_t *change = r->p;
    size_t change_len = (size_t)(r->end - r->p);
    int type = change[1];
    char hw_key[32];
    snprintf(hw_key, sizeof hw_key, "raft/geo/in/%08x", origin);
    /* u64 highest index applied | u64 bound: every later change of origin is newer. */
    uint8_t le[16];
    size_t n = 0;
    int rc = node_store_raft_meta_get(sm->store, hw_key, le, sizeof le, &n);
    if (rc != 0 && rc != TERN_ENOTFOUND) return rc;
    if (rc == 0 && n >= 8 && origin_index <= tern_le_get_u64(le) && !reseed) return 0; /* seen */
    uint64_t bound = rc == 0 && n == 16 ? tern_le_get_u64(le + 8) : 0;
    uint64_t seen = rc == 0 && n >= 8 ? tern_le_get_u64(le) : 0;
    tern_le_put_u64(le, reseed ? seen : origin_index);
    tern_le_put_u64(le + 8, hlc > bound ? hlc : bound);
    uint64_t clock = hlc > sm->hlc ? hlc : sm->hlc;
    uint8_t clock_le[8];
    tern_le_put_u64(clock_le, clock);
    node_store_apply_stamp_meta(sm->store, "raft/geo/hlc", clock_le, 8, true);
    if (type == CMD_OBJECT_PUT || type == CMD_OBJECT_DELETE) {
        reader nr = {change + 2, change + change_len, false};
        names nm;
        get_str(&nr, nm.bucket, sizeof nm.bucket);
        get_str(&nr, nm.key, sizeof nm.key);
        if (nr.bad) return TERN_EPARSE;
        uint64_t cur_hlc;
        uint32_t cur_region;
        bool cur_deleted;
        rc = node_sm_version_get(sm, nm.bucket, nm.key, &cur_hlc, &cur_region, &cur_deleted);
        if (rc == TERN_ENOTFOUND) cur_hlc = 0, cur_region = 0, rc = 0;
        if (rc != 0) return rc;
        bool newer = tern_version_cmp(hlc, origin, cur_hlc, cur_region) > 0;
        bool put = type == CMD_OBJECT_PUT;
        /* A put records its index and version only with its commit; the rest in any case. */
        node_store_apply_stamp_meta(sm->store, hw_key, le, 16, !(newer && put));
        if (!newer) {
            sm->hlc = clock;
            return 0;
        }
        version_stamp(sm, nm.bucket, nm.key, hlc, origin, !put, put ? holders : 0, !put);
        /* A put whose blocks placement sent elsewhere commits its manifest with references
         * to blocks this region does not store: reads fetch them from a holder. */
        sm->blocks_elsewhere = put && !local_holder;
        rc = apply_cmd(sm, change, change_len);
        sm->blocks_elsewhere = false;
        if (!put && rc == TERN_ENOTFOUND) rc = 0;
    } else if (type == CMD_BUCKET_POLICY) {
        reader br = {change + 2, change + change_len, false};
        char bucket[NODE_BUCKET_NAME_MAX + 2];
        get_str(&br, bucket, sizeof bucket);
        if (br.bad) return TERN_EPARSE;
        bool newer;
        if ((rc = policy_newer(sm, bucket, hlc, origin, &newer)) != 0) return rc;
        node_store_apply_stamp_meta(sm->store, hw_key, le, 16, true);
        if (!newer) {
            sm->hlc = clock;
            return 0; /* a policy set later elsewhere (or here) stands */
        }
        policy_version_stamp(sm, change, change_len, hlc, origin, true);
        rc = apply_cmd(sm, change, change_len);
        if (rc == TERN_ENOTFOUND) rc = 0;
    } else if (type == CMD_BUCKET_CREATE || type == CMD_BUCKET_DELETE) {
        node_store_apply_stamp_meta(sm->store, hw_key, le, 16, true);
        rc = apply_cmd(sm, change, change_len);
        if (rc == TERN_EEXIST || rc == TERN_ENOTFOUND || rc == TERN_ENOTEMPTY) rc = 0;
    } else {
        return TERN_EPARSE;
    }
    if (rc == 0) sm->hlc = clock;
    return rc;
}

uint64_t node_sm_geo_received(node_sm *sm, uint32_t origin_region)
{
    uint64_t index = 0, bound = 0;
    node_geo_received_get(sm->store, origin_region, &index, &bound);
    return index;
}

int node_geo_received_get(node_store *s, uint32_t origin_region, uint64_t *index, uint64_t *bound)
{
    char key[32];
    snprintf(key, sizeof key, "raft/geo/in/%08x", origin_region);
    uint8_t le[16];
    size_t n = 0;
    *index = *bound = 0;
    int rc = node_store_raft_meta_get(s, key, le, sizeof le, &n);
    if (rc == TERN_ENOTFOUND) return 0;
    if (rc != 0) return rc;
    if (n != 8 && n != 16) return TERN_ECORRUPT;
    *index = tern_le_get_u64(le);
    if (n == 16) *bound = tern_le_get_u64(le + 8);
    return 0;
}

/* GEO_MARK: origin promises every later change of its is newer than hlc (it was idle). */
static int apply_geo_mark(node_sm *sm, reader *r)
{
    uint32_t origin = get_u32(r);
    uint64_t hlc = get_u64(r);
    /* Optionally the index a re-seed brought this region up to. */
    uint64_t upto = r->p != r->end ? get_u64(r) : 0;
    if (r->bad || r->p != r->end) return TERN_EPARSE;
    if (origin == sm->region_id) return TERN_EINVAL;
    uint64_t index, bound;
    int rc = node_geo_received_get(sm->store, origin, &index, &bound);
    if (rc != 0) return rc;
    if (hlc <= bound && upto <= index) return 0;
    if (upto > index) index = upto;
    if (hlc < bound) hlc = bound;
    char key[32];
    snprintf(key, sizeof key, "raft/geo/in/%08x", origin);
    uint8_t le[16];
    tern_le_put_u64(le, index);
    tern_le_put_u64(le + 8, hlc);
    node_store_apply_stamp_meta(sm->store, key, le, sizeof le, true);
    return 0;
}

/* GEO_GC: u32 count, then per tombstone bucket, key, u64 hlc, u32 origin. Each goes only if
 * the key's version is still that tombstone (a later put or delete replaced it otherwise). */
static int apply_geo_gc(node_sm *sm, reader *r)
{
    uint32_t count = get_u32(r);
    for (uint32_t i = 0; i < count && !r->bad; i++) {
        names n;
        get_str(r, n.bucket, sizeof n.bucket);
        get_str(r, n.key, sizeof n.key);
        uint64_t hlc = get_u64(r);
        uint32_t origin = get_u32(r);
        if (r->bad) break;
        uint64_t cur_hlc;
        uint32_t cur_origin, holders;
        bool deleted;
        int rc =
            version_read(sm->store, n.bucket, n.key, &cur_hlc, &cur_origin, &deleted, &holders);
        if (rc == TERN_ENOTFOUND) continue;
        if (rc != 0) return rc;
        if (!deleted || cur_hlc != hlc || cur_origin != origin) continue;
        char k[NODE__STAMP_KEY_MAX + 1];
        version_key(k, sizeof k, n.bucket, n.key);
        if ((rc = node_store_raft_meta_delete(sm->store, k)) != 0) return rc;
    }
    if (r->bad || r->p != r->end) return TERN_EPARSE;
    return 0;
}

int node_sm_encode_geo_mark(uint32_t origin_region, uint64_t hlc, uint64_t upto, uint8_t **out,
                            size_t *len)
{
    node__buf b;
    begin(&b, CMD_GEO_MARK);
    node__buf_u32(&b, origin_region);
    node__buf_u64(&b, hlc);
    if (upto) node__buf_u64(&b, upto);
    return finish(&b, out, len);
}

uint64_t node_geo_trimmed_get(node_store *s)
{
    uint8_t le[8];
    size_t n = 0;
    if (node_store_raft_meta_get(s, "raft/geo/trimmed", le, sizeof le, &n) != 0 || n != 8) return 0;
    return tern_le_get_u64(le);
}

int node_sm_geo_record(uint64_t hlc, uint32_t region_id, const uint8_t *cmd, size_t len,
                       uint8_t **out, size_t *out_len)
{
    node__buf b = {0};
    node__buf_u8(&b, GEO_RECORD_VERSION);
    node__buf_u64(&b, hlc);
    node__buf_u32(&b, region_id);
    node__buf_bytes(&b, cmd, len);
    if (b.failed) {
        node__buf_free(&b);
        return TERN_ENOMEM;
    }
    *out = b.data;
    *out_len = b.len;
    return 0;
}

typedef struct {
    uint64_t bound;
    node__buf *cmd;
    uint32_t count;
    size_t max;
    size_t prefix_len;
    char last[NODE__STAMP_KEY_MAX + 1];
} gc_scan;

static int gc_visit(void *ctx, const char *key, size_t key_len, const void *value, size_t value_len)
{
    gc_scan *g = ctx;
    const uint8_t *v = value;
    if (key_len < sizeof g->last) {
        memcpy(g->last, key, key_len);
        g->last[key_len] = '\0';
    }
    if ((value_len != VERSION_RECORD_BYTES && value_len != VERSION_RECORD_BYTES - 1) || !v[12])
        return 0;
    uint64_t hlc = tern_le_get_u64(v);
    if (hlc > g->bound) return 0;
    /* "raft/ver/<bucket>/<key>": the bucket name has no '/'. */
    const char *name = key + g->prefix_len, *end = key + key_len;
    const char *slash = memchr(name, '/', (size_t)(end - name));
    if (slash == NULL) return 0;
    node__buf_u32(g->cmd, (uint32_t)(slash - name));
    node__buf_bytes(g->cmd, name, (size_t)(slash - name));
    node__buf_u32(g->cmd, (uint32_t)(end - slash - 1));
    node__buf_bytes(g->cmd, slash + 1, (size_t)(end - slash - 1));
    node__buf_u64(g->cmd, hlc);
    node__buf_u32(g->cmd, tern_le_get_u32(v + 8));
    return ++g->count >= g->max;
}

int node_sm_geo_gc_scan(node_store *s, uint64_t bound, char *cursor, size_t cursor_cap,
                        size_t scan_max, size_t max, uint8_t **out, size_t *len, size_t *found)
{
    node__buf b;
    begin(&b, CMD_GEO_GC);
    size_t count_at = b.len;
    node__buf_u32(&b, 0);
    gc_scan g = {.bound = bound, .cmd = &b, .max = max, .prefix_len = strlen("raft/ver/")};
    int n = node_store_raft_meta_scan(s, "raft/ver/", cursor, scan_max, gc_visit, &g);
    if (n < 0) {
        node__buf_free(&b);
        return n;
    }
    /* Where the next scan starts: after the last key seen, or over again at the end. */
    snprintf(cursor, cursor_cap, "%s", (size_t)n < scan_max && g.count < max ? "" : g.last);
    *found = g.count;
    if (b.failed) {
        node__buf_free(&b);
        return TERN_ENOMEM;
    }
    tern_le_put_u32(b.data + count_at, g.count);
    return finish(&b, out, len);
}

int node_sm_geo_decode(const void *record, size_t len, uint64_t *hlc, uint32_t *region_id,
                       const uint8_t **cmd, size_t *cmd_len)
{
    const uint8_t *p = record;
    if (len < 1 + 8 + 4 + 2 || p[0] != GEO_RECORD_VERSION) return TERN_EPARSE;
    *hlc = tern_le_get_u64(p + 1);
    *region_id = tern_le_get_u32(p + 9);
    *cmd = p + 13;
    *cmd_len = len - 13;
    return 0;
}

/* ------------------------------------------------------------------ sessions */

static void session_encode(const session *ss, uint8_t out[SESSION_RECORD_BYTES])
{
    out[0] = 1;
    for (int k = 0; k < 8; k++) {
        out[1 + k] = (uint8_t)(ss->max_seq >> (8 * k));
        out[9 + k] = (uint8_t)(ss->window >> (8 * k));
    }
    memcpy(out + 17, ss->results, NODE_SM_SESSION_WINDOW);
}

static int session_decode(const char *rec, size_t len, session *ss)
{
    const uint8_t *p = (const uint8_t *)rec;
    if (len != SESSION_RECORD_BYTES || p[0] != 1) return TERN_ECORRUPT;
    ss->max_seq = ss->window = 0;
    for (int k = 0; k < 8; k++) {
        ss->max_seq |= (uint64_t)p[1 + k] << (8 * k);
        ss->window |= (uint64_t)p[9 + k] << (8 * k);
    }
    memcpy(ss->results, p + 17, NODE_SM_SESSION_WINDOW);
    return 0;
}

/* The session of client_id (loaded from the store on first use); NULL with *rc on error. */
static session *session_of(node_sm *sm, uint64_t client_id, int *rc)
{
    for (size_t k = 0; k < sm->session_count; k++)
        if (sm->sessions[k].client_id == client_id) return &sm->sessions[k];
    if (sm->session_count == sm->session_cap) {
        size_t cap = sm->session_cap ? 2 * sm->session_cap : 8;
        session *grown = realloc(sm->sessions, cap * sizeof *grown);
        if (grown == NULL) {
            *rc = TERN_ENOMEM;
            return NULL;
        }
        sm->sessions = grown;
        sm->session_cap = cap;
    }
    session *ss = &sm->sessions[sm->session_count];
    memset(ss, 0, sizeof *ss);
    ss->client_id = client_id;
    char *rec = NULL;
    size_t len = 0;
    *rc = node_store_session_get(sm->store, client_id, &rec, &len);
    if (*rc == 0) {
        *rc = session_decode(rec, len, ss);
        free(rec);
    } else if (*rc == TERN_ENOTFOUND) {
        *rc = 0;
    }
    if (*rc != 0) return NULL;
    sm->session_count++;
    return ss;
}

/* Records seq's result, sliding the window forward when seq is the newest. */
static void session_record(session *ss, uint64_t seq, int result)
{
    if (seq > ss->max_seq) {
        uint64_t shift = seq - ss->max_seq;
        ss->window = shift >= 64 ? 0 : ss->window << shift;
        ss->max_seq = seq;
    }
    ss->window |= 1ull << (ss->max_seq - seq);
    ss->results[seq % NODE_SM_SESSION_WINDOW] = (int8_t)result;
}

int node_sm_apply(node_sm *sm, uint64_t index, uint64_t client_id, uint64_t seq, const void *cmd,
                  size_t len)
{
    int rc = 0;
    session *ss = NULL;
    if (seq != 0) {
        ss = session_of(sm, client_id, &rc);
        if (ss == NULL) return TERN_EFAILED;
        if (seq + NODE_SM_SESSION_WINDOW <= ss->max_seq) {
            /* Older than the window: it may or may not have applied; never guess. */
            rc = node_store_applied_put(sm->store, index, 0, NULL, 0);
            return rc == 0 ? TERN_EPRECOND : TERN_EFAILED;
        }
        if (seq <= ss->max_seq && (ss->window >> (ss->max_seq - seq) & 1)) {
            int result = ss->results[seq % NODE_SM_SESSION_WINDOW];
            rc = node_store_applied_put(sm->store, index, 0, NULL, 0);
            return rc == 0 ? result : TERN_EFAILED;
        }
    }
    /* Most commands that succeed commit one batch: the applied index and the session record
     * (with result 0) ride in it. A command that fails, or writes without a commit, records
     * them in a batch of their own below. */
    uint8_t rec[SESSION_RECORD_BYTES];
    session after;
    if (ss != NULL) {
        after = *ss;
        session_record(&after, seq, 0);
        session_encode(&after, rec);
    }
    node_store_apply_stamp_begin(sm->store, index, client_id, ss ? rec : NULL, ss ? sizeof rec : 0);
    if (!sm->hlc_loaded) {
        if (node_store_geo_hlc_get(sm->store, &sm->hlc) != 0) return TERN_EFAILED;
        sm->hlc_loaded = true;
    }
    node__buf geo;
    geo_record(sm, cmd, len, &geo);
    uint64_t geo_hlc = geo.len ? tern_le_get_u64(geo.data + 1) : 0;
    if (geo.len) node_store_apply_stamp_geo(sm->store, geo.data, geo.len, geo_hlc);
    int result = apply_cmd(sm, cmd, len);
    bool stamped = node_store_apply_stamp_end(sm->store);
    node__buf_free(&geo);
    /* The change committed with its record: the region's clock has moved. */
    if (stamped && geo_hlc > sm->hlc) sm->hlc = geo_hlc;
    if (!deterministic(result)) {
        node_log(NODE_LOG_ERROR, "sm", "apply of index %llu failed locally: %s (%s)",
                 (unsigned long long)index, tern_strerror(result), node_store_errmsg(sm->store));
        return TERN_EFAILED;
    }
    if (ss != NULL) session_record(ss, seq, result);
    if (stamped && result == 0) return 0;
    /* Not stamped, or (defensively) stamped with a result that was not the one recorded. */
    if (ss != NULL) session_encode(ss, rec);
    rc = node_store_applied_put(sm->store, index, client_id, ss ? rec : NULL, ss ? sizeof rec : 0);
    return rc == 0 ? result : TERN_EFAILED;
}

/* ------------------------------------------------------------------ group callbacks */

static int cb_apply(void *ctx, uint64_t index, uint64_t client_id, uint64_t seq, const void *cmd,
                    size_t len)
{
    return node_sm_apply(ctx, index, client_id, seq, cmd, len);
}

static int cb_apply_other(void *ctx, uint64_t index)
{
    node_sm *sm = ctx;
    return node_store_applied_put(sm->store, index, 0, NULL, 0) == 0 ? 0 : TERN_EFAILED;
}

static uint64_t cb_applied_index(void *ctx)
{
    node_sm *sm = ctx;
    uint64_t index = 0;
    /* node_sm_create read it once already: a failure here cannot be new. */
    if (node_store_applied_get(sm->store, &index) != 0) index = 0;
    return index;
}

static int cb_snapshot_create(void *ctx, const char *dir, uint64_t *index_out)
{
    node_sm *sm = ctx;
    int rc = node_store_applied_get(sm->store, index_out);
    if (rc == 0) rc = node_store_checkpoint(sm->store, dir);
    return rc;
}

static int cb_snapshot_install(void *ctx, const char *dir)
{
    node_sm *sm = ctx;
    int rc = node_store_checkpoint_install(sm->store, dir);
    sm->session_count = 0;  /* reloaded from the installed records on next use */
    sm->hlc_loaded = false; /* likewise the region's HLC */
    return rc;
}

int node_sm_create(node_store *store, node_sm **out)
{
    uint64_t applied;
    int rc = node_store_applied_get(store, &applied);
    if (rc != 0) return rc;
    node_sm *sm = calloc(1, sizeof *sm);
    if (sm == NULL) return TERN_ENOMEM;
    sm->store = store;
    *out = sm;
    return 0;
}

void node_sm_free(node_sm *sm)
{
    if (sm == NULL) return;
    free(sm->sessions);
    free(sm);
}

void node_sm_callbacks(node_sm *sm, node_group_sm *out)
{
    memset(out, 0, sizeof *out);
    out->ctx = sm;
    out->apply = cb_apply;
    out->apply_other = cb_apply_other;
    out->applied_index = cb_applied_index;
    out->snapshot_create = cb_snapshot_create;
    out->snapshot_install = cb_snapshot_install;
}

static int count_visit(void *ctx, const char *key, size_t key_len, const void *value,
                       size_t value_len)
{
    (void)key;
    (void)key_len;
    size_t *n = ctx;
    const uint8_t *v = value;
    if ((value_len == VERSION_RECORD_BYTES || value_len == VERSION_RECORD_BYTES - 1) && v[12])
        (*n)++;
    return 0;
}

int node_geo_tombstone_count(node_store *s, size_t *count)
{
    *count = 0;
    int rc = node_store_raft_meta_scan(s, "raft/ver/", NULL, SIZE_MAX, count_visit, count);
    return rc < 0 ? rc : 0;
}
