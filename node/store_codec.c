/* Versioned binary encodings of the store's records: manifests, parts, buckets, uploads. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/*
 * Every record starts with a format version byte so a later release can read
 * old records. Integers are little-endian; strings are length-prefixed (u8
 * for bounded ones like etags, u32 otherwise). Records:
 *   manifest: ver u8 | size u64 | mtime i64 | etag str8 | has_ct u8 [ct str32]
 *             | header_count u32 (name str32, value str32)* | block_count u32
 *             (id[32], size u32)*
 *   part:     ver u8 | number u32 | size u64 | mtime i64 | etag str8 | block_count u32 blocks
 *   bucket:   ver u8 (2) | created i64 | region str8 | min_regions u32 | rpo u32 | rto u32
 *             | allowed u8 count (str8)* | pinned u8 count (str8)*  (version 1 ends at region)
 *   upload:   ver u8 | initiated i64 | manifest (the template, no blocks)
 *   counters: ver u8 | object_count | bucket_count | logical_bytes | block_count
 *             | block_bytes | referenced_block_bytes (u64 each)
 * Size, mtime and etag come first in a manifest so listings decode only the head.
 */

#define BLOCK_REF_BYTES (NODE_BLOCK_ID_BYTES + 4)

void node__buf_free(node__buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static bool buf_reserve(node__buf *b, size_t extra)
{
    if (b->failed) return false;
    if (b->len + extra <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void node__buf_bytes(node__buf *b, const void *p, size_t n)
{
    if (n == 0 || !buf_reserve(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void node__buf_u8(node__buf *b, uint8_t v)
{
    node__buf_bytes(b, &v, 1);
}

void node__buf_u32(node__buf *b, uint32_t v)
{
    uint8_t le[4];
    for (int i = 0; i < 4; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    node__buf_bytes(b, le, sizeof le);
}

void node__buf_u64(node__buf *b, uint64_t v)
{
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    node__buf_bytes(b, le, sizeof le);
}

static void buf_str8(node__buf *b, const char *s)
{
    size_t n = strlen(s);
    assert(n <= 255);
    node__buf_u8(b, (uint8_t)n);
    node__buf_bytes(b, s, n);
}

static void buf_str32(node__buf *b, const char *s)
{
    size_t n = strlen(s);
    node__buf_u32(b, (uint32_t)n);
    node__buf_bytes(b, s, n);
}

static void buf_blocks(node__buf *b, const node_block_ref *blocks, size_t count)
{
    node__buf_u32(b, (uint32_t)count);
    for (size_t i = 0; i < count; i++) {
        node__buf_bytes(b, blocks[i].id.bytes, NODE_BLOCK_ID_BYTES);
        node__buf_u32(b, blocks[i].size_bytes);
    }
}

/* A bounds-checked cursor over an encoded record; any overrun sets bad. */
typedef struct {
    const uint8_t *p;
    size_t left;
    bool bad;
} reader;

static const uint8_t *rd_bytes(reader *r, size_t n)
{
    if (r->bad || n > r->left) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static uint64_t rd_le(reader *r, int bytes)
{
    const uint8_t *p = rd_bytes(r, (size_t)bytes);
    uint64_t v = 0;
    if (p == NULL) return 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint8_t rd_u8(reader *r)
{
    return (uint8_t)rd_le(r, 1);
}

static uint32_t rd_u32(reader *r)
{
    return (uint32_t)rd_le(r, 4);
}

static uint64_t rd_u64(reader *r)
{
    return rd_le(r, 8);
}

/* Reads a str8 into a fixed buffer of cap bytes (including the NUL). */
static void rd_str8_into(reader *r, char *out, size_t cap)
{
    size_t n = rd_u8(r);
    const uint8_t *p = rd_bytes(r, n);
    if (p == NULL || n >= cap) {
        r->bad = true;
        out[0] = '\0';
        return;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

/* Reads a str32 into a malloc'd string; NULL when bad or out of memory (sets bad). */
static char *rd_str32(reader *r)
{
    size_t n = rd_u32(r);
    const uint8_t *p = rd_bytes(r, n);
    if (p == NULL) return NULL;
    char *s = malloc(n + 1);
    if (s == NULL) {
        r->bad = true;
        return NULL;
    }
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Reads a block list; the count is checked against the bytes left before allocating. */
static node_block_ref *rd_blocks(reader *r, size_t *count)
{
    size_t n = rd_u32(r);
    *count = 0;
    if (r->bad || n > r->left / BLOCK_REF_BYTES) {
        r->bad = true;
        return NULL;
    }
    if (n == 0) return NULL;
    node_block_ref *blocks = calloc(n, sizeof *blocks);
    if (blocks == NULL) {
        r->bad = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *id = rd_bytes(r, NODE_BLOCK_ID_BYTES);
        if (id != NULL) memcpy(blocks[i].id.bytes, id, NODE_BLOCK_ID_BYTES);
        blocks[i].size_bytes = rd_u32(r);
    }
    *count = n;
    return blocks;
}

int node__manifest_validate(const node_manifest *m, bool with_blocks)
{
    if (m == NULL) return TERN_EINVAL;
    if (strnlen(m->etag, sizeof m->etag) > NODE_ETAG_MAX) return TERN_EINVAL;
    if (m->header_count > 0 && m->headers == NULL) return TERN_EINVAL;
    for (size_t i = 0; i < m->header_count; i++)
        if (m->headers[i].name == NULL || m->headers[i].value == NULL) return TERN_EINVAL;
    if (!with_blocks) return 0;
    if (m->block_count > 0 && m->blocks == NULL) return TERN_EINVAL;
    if (m->block_count > UINT32_MAX) return TERN_ETOOBIG;
    uint64_t total = 0;
    for (size_t i = 0; i < m->block_count; i++) {
        if (m->blocks[i].size_bytes > NODE_BLOCK_SIZE_MAX) return TERN_EINVAL;
        total += m->blocks[i].size_bytes;
    }
    /* The manifest contract: block sizes sum to the object size. */
    return total == m->size_bytes ? 0 : TERN_EINVAL;
}

int node__manifest_encode(const node_manifest *m, bool with_blocks, node__buf *out)
{
    node__buf_u8(out, NODE__RECORD_VERSION);
    node__buf_u64(out, m->size_bytes);
    node__buf_u64(out, (uint64_t)m->last_modified_ms);
    buf_str8(out, m->etag);
    node__buf_u8(out, m->content_type != NULL);
    if (m->content_type != NULL) buf_str32(out, m->content_type);
    node__buf_u32(out, (uint32_t)m->header_count);
    for (size_t i = 0; i < m->header_count; i++) {
        buf_str32(out, m->headers[i].name);
        buf_str32(out, m->headers[i].value);
    }
    if (with_blocks)
        buf_blocks(out, m->blocks, m->block_count);
    else
        buf_blocks(out, NULL, 0);
    return out->failed ? TERN_ENOMEM : 0;
}

static void manifest_read_head(reader *r, uint64_t *size, char *etag, int64_t *mtime)
{
    if (rd_u8(r) != NODE__RECORD_VERSION) r->bad = true;
    *size = rd_u64(r);
    *mtime = (int64_t)rd_u64(r);
    rd_str8_into(r, etag, NODE_ETAG_MAX + 1);
}

int node__manifest_decode_head(const char *data, size_t len, uint64_t *size_bytes,
                               char etag[NODE_ETAG_MAX + 1], int64_t *last_modified_ms)
{
    reader r = {(const uint8_t *)data, len, false};
    manifest_read_head(&r, size_bytes, etag, last_modified_ms);
    return r.bad ? TERN_ECORRUPT : 0;
}

static void manifest_read_rest(reader *r, node_manifest *m)
{
    if (rd_u8(r)) m->content_type = rd_str32(r);
    size_t n = rd_u32(r);
    /* Each header takes at least 8 bytes: never allocate more than the record could hold. */
    if (r->bad || n > r->left / 8) {
        r->bad = true;
        return;
    }
    if (n > 0) {
        m->headers = calloc(n, sizeof *m->headers);
        if (m->headers == NULL) {
            r->bad = true;
            return;
        }
        m->header_count = n;
    }
    for (size_t i = 0; i < n && !r->bad; i++) {
        m->headers[i].name = rd_str32(r);
        m->headers[i].value = rd_str32(r);
    }
    m->blocks = rd_blocks(r, &m->block_count);
}

static int manifest_decode_reader(reader *r, node_manifest **out)
{
    node_manifest *m = calloc(1, sizeof *m);
    if (m == NULL) return TERN_ENOMEM;
    manifest_read_head(r, &m->size_bytes, m->etag, &m->last_modified_ms);
    if (!r->bad) manifest_read_rest(r, m);
    if (r->bad || r->left != 0) {
        node_manifest_free(m);
        return TERN_ECORRUPT;
    }
    *out = m;
    return 0;
}

int node__manifest_decode(const char *data, size_t len, node_manifest **out)
{
    reader r = {(const uint8_t *)data, len, false};
    return manifest_decode_reader(&r, out);
}

void node_manifest_free(node_manifest *m)
{
    if (m == NULL) return;
    free(m->content_type);
    for (size_t i = 0; m->headers != NULL && i < m->header_count; i++) {
        free(m->headers[i].name);
        free(m->headers[i].value);
    }
    free(m->headers);
    free(m->blocks);
    free(m);
}

static char *dup_or_null(const char *s, bool *failed)
{
    if (s == NULL) return NULL;
    char *d = strdup(s);
    if (d == NULL) *failed = true;
    return d;
}

node_manifest *node_manifest_dup(const node_manifest *m)
{
    if (m == NULL) return NULL;
    node_manifest *d = calloc(1, sizeof *d);
    if (d == NULL) return NULL;
    bool failed = false;
    d->size_bytes = m->size_bytes;
    memcpy(d->etag, m->etag, sizeof d->etag);
    d->etag[NODE_ETAG_MAX] = '\0';
    d->last_modified_ms = m->last_modified_ms;
    d->content_type = dup_or_null(m->content_type, &failed);
    if (m->header_count > 0) {
        d->headers = calloc(m->header_count, sizeof *d->headers);
        if (d->headers == NULL) goto fail;
        d->header_count = m->header_count;
        for (size_t i = 0; i < m->header_count; i++) {
            d->headers[i].name = dup_or_null(m->headers[i].name, &failed);
            d->headers[i].value = dup_or_null(m->headers[i].value, &failed);
        }
    }
    if (m->block_count > 0) {
        d->blocks = malloc(m->block_count * sizeof *d->blocks);
        if (d->blocks == NULL) goto fail;
        memcpy(d->blocks, m->blocks, m->block_count * sizeof *d->blocks);
        d->block_count = m->block_count;
    }
    if (!failed) return d;
fail:
    node_manifest_free(d);
    return NULL;
}

int node__part_encode(const node_part *p, node__buf *out)
{
    node__buf_u8(out, NODE__RECORD_VERSION);
    node__buf_u32(out, p->part_number);
    node__buf_u64(out, p->size_bytes);
    node__buf_u64(out, (uint64_t)p->last_modified_ms);
    buf_str8(out, p->etag);
    buf_blocks(out, p->blocks, p->block_count);
    return out->failed ? TERN_ENOMEM : 0;
}

int node__part_decode(const char *data, size_t len, node_part *out)
{
    reader r = {(const uint8_t *)data, len, false};
    memset(out, 0, sizeof *out);
    if (rd_u8(&r) != NODE__RECORD_VERSION) r.bad = true;
    out->part_number = rd_u32(&r);
    out->size_bytes = rd_u64(&r);
    out->last_modified_ms = (int64_t)rd_u64(&r);
    rd_str8_into(&r, out->etag, sizeof out->etag);
    if (!r.bad) out->blocks = rd_blocks(&r, &out->block_count);
    if (r.bad || r.left != 0) {
        free(out->blocks);
        memset(out, 0, sizeof *out);
        return TERN_ECORRUPT;
    }
    return 0;
}

/* Version 2 adds the policy; a version 1 record (before policies) reads as the defaults. */
#define BUCKET_RECORD_VERSION 2u

static void buf_region_list(node__buf *b, const char (*list)[NODE_REGION_MAX + 1], uint32_t count)
{
    node__buf_u8(b, (uint8_t)count);
    for (uint32_t i = 0; i < count; i++)
        buf_str8(b, list[i]);
}

static void rd_region_list(reader *r, char (*list)[NODE_REGION_MAX + 1], uint32_t *count)
{
    *count = rd_u8(r);
    if (*count > NODE_POLICY_REGIONS_MAX) {
        r->bad = true;
        *count = 0;
        return;
    }
    for (uint32_t i = 0; i < *count; i++)
        rd_str8_into(r, list[i], NODE_REGION_MAX + 1);
}

void node__bucket_policy_encode(const node_bucket_policy *p, node__buf *out)
{
    node__buf_u32(out, p->min_regions);
    node__buf_u32(out, p->rpo_seconds);
    node__buf_u32(out, p->rto_seconds);
    buf_region_list(out, p->allowed, p->allowed_count);
    buf_region_list(out, p->pinned, p->pinned_count);
}

static void bucket_policy_read(reader *r, node_bucket_policy *p)
{
    p->min_regions = rd_u32(r);
    p->rpo_seconds = rd_u32(r);
    p->rto_seconds = rd_u32(r);
    rd_region_list(r, p->allowed, &p->allowed_count);
    rd_region_list(r, p->pinned, &p->pinned_count);
}

int node__bucket_policy_decode(const uint8_t *data, size_t len, node_bucket_policy *out)
{
    reader r = {data, len, false};
    memset(out, 0, sizeof *out);
    bucket_policy_read(&r, out);
    return r.bad || r.left != 0 ? TERN_EPARSE : 0;
}

int node__bucket_encode(const node_bucket *bk, node__buf *out)
{
    node__buf_u8(out, BUCKET_RECORD_VERSION);
    node__buf_u64(out, (uint64_t)bk->created_ms);
    buf_str8(out, bk->region);
    node__bucket_policy_encode(&bk->policy, out);
    return out->failed ? TERN_ENOMEM : 0;
}

int node__bucket_decode(const char *name, const char *data, size_t len, node_bucket *out)
{
    reader r = {(const uint8_t *)data, len, false};
    memset(out, 0, sizeof *out);
    if (strlen(name) > NODE_BUCKET_NAME_MAX) return TERN_ECORRUPT;
    strcpy(out->name, name);
    uint8_t version = rd_u8(&r);
    if (version != 1 && version != BUCKET_RECORD_VERSION) r.bad = true;
    out->created_ms = (int64_t)rd_u64(&r);
    rd_str8_into(&r, out->region, sizeof out->region);
    if (version == 1)
        node_bucket_policy_default(&out->policy);
    else
        bucket_policy_read(&r, &out->policy);
    return r.bad || r.left != 0 ? TERN_ECORRUPT : 0;
}

int node__upload_encode(int64_t initiated_ms, const node_manifest *tmpl, node__buf *out)
{
    node__buf_u8(out, NODE__RECORD_VERSION);
    node__buf_u64(out, (uint64_t)initiated_ms);
    return node__manifest_encode(tmpl, false, out);
}

int node__upload_decode(const char *data, size_t len, int64_t *initiated_ms,
                        node_manifest **tmpl_out)
{
    reader r = {(const uint8_t *)data, len, false};
    if (rd_u8(&r) != NODE__RECORD_VERSION) return TERN_ECORRUPT;
    *initiated_ms = (int64_t)rd_u64(&r);
    if (r.bad) return TERN_ECORRUPT;
    if (tmpl_out == NULL) return 0;
    return manifest_decode_reader(&r, tmpl_out);
}

void node__counters_encode(const node__counters *c, uint8_t out[1 + 6 * 8])
{
    uint64_t v[6] = {c->object_count, c->bucket_count, c->logical_bytes,
                     c->block_count,  c->block_bytes,  c->referenced_block_bytes};
    out[0] = NODE__RECORD_VERSION;
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 8; j++)
            out[1 + 8 * i + j] = (uint8_t)(v[i] >> (8 * j));
}

int node__counters_decode(const char *data, size_t len, node__counters *out)
{
    reader r = {(const uint8_t *)data, len, false};
    if (rd_u8(&r) != NODE__RECORD_VERSION) return TERN_ECORRUPT;
    out->object_count = rd_u64(&r);
    out->bucket_count = rd_u64(&r);
    out->logical_bytes = rd_u64(&r);
    out->block_count = rd_u64(&r);
    out->block_bytes = rd_u64(&r);
    out->referenced_block_bytes = rd_u64(&r);
    return r.bad || r.left != 0 ? TERN_ECORRUPT : 0;
}
