/* Object reads: streaming GET and HEAD from a snapshot, ranges, conditional requests. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server_internal.h"

/*
 * Reads are served from memory on the loop thread when RocksDB can answer
 * without disk I/O (cache-only reads); otherwise the same read runs on the
 * pool. Block bytes go to the socket straight from RocksDB's pinned memory
 * (a block view), released when the write completes. At most two views are
 * held: one being written, one ready. The first chunk is fetched before the
 * headers go out, so a corrupt first block is a clean 500, not a cut body.
 *
 * In a geo deployment a block placement put in other regions is not stored
 * here: the pool reads it from a holder (node_geo_fetch_block: source
 * selection, failover to the next holder, hash checked) into memory, one
 * block at a time, and the response streams it like a local one. The read is
 * fed to the placement engine when its first block is found (local or not,
 * with the object's origin when not), and when the engine then wants a
 * replica here the fetched blocks are committed through the group as they
 * pass (copy on read), so the next read is local.
 */
struct api__get {
    node_read_view *view; /* one snapshot from the manifest to the last block */
    node_manifest *m;
    bool head;
    bool headers_sent;
    api__buf headers;     /* formatted, sent with the first chunk */
    uint64_t first, last; /* inclusive */
    uint64_t remaining;   /* bytes not yet read */
    uint64_t next_offset; /* next object offset to read */
    size_t block_index;   /* block containing next_offset */
    uint64_t block_start; /* object offset of blocks[block_index] */
    bool read_inflight;
    void *ready; /* a node_block_view, or a fetched block's memory */
    void (*ready_release)(void *);
    const char *ready_data;
    size_t ready_len;
    bool observed; /* the read was fed to the placement engine */
    /* Where the object's blocks are, looked up once when its first remote block is read. */
    bool placement_known;
    uint32_t holders;
    int origin;
    bool keep_local; /* the engine wants a replica here: fetched blocks are stored */
    bool write_inflight;
    bool failed;
};

void api__get_free(api__get *g)
{
    if (g == NULL) return;
    node_manifest_free(g->m);
    if (g->ready) g->ready_release(g->ready);
    node_store_view_close(g->view);
    api__buf_free(&g->headers);
    free(g);
}

/* An entity tag list ("a", "b" or *) matches the object's etag. */
static bool etag_list_matches(const char *list, const char *etag)
{
    const char *s = list;
    while (*s) {
        while (*s == ' ' || *s == ',')
            s++;
        if (*s == '*') return true;
        if (strncmp(s, "W/", 2) == 0) s += 2;
        bool quoted = *s == '"';
        if (quoted) s++;
        const char *end = s;
        while (*end && *end != (quoted ? '"' : ','))
            end++;
        size_t n = (size_t)(end - s);
        if (n == strlen(etag) && strncmp(s, etag, n) == 0) return true;
        s = end;
        if (*s == '"') s++;
        while (*s && *s != ',')
            s++;
    }
    return false;
}

/* RFC 7232 order: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since. */
int api__conditional_status(api__req *r, const char *etag, int64_t mtime_ms, const char *prefix)
{
    char name[64];
    int64_t mtime_s = mtime_ms / 1000, t;
    snprintf(name, sizeof name, "%sIf-Match", prefix);
    const char *im = api__req_header(r, name);
    snprintf(name, sizeof name, "%sIf-Unmodified-Since", prefix);
    const char *ius = api__req_header(r, name);
    snprintf(name, sizeof name, "%sIf-None-Match", prefix);
    const char *inm = api__req_header(r, name);
    snprintf(name, sizeof name, "%sIf-Modified-Since", prefix);
    const char *ims = api__req_header(r, name);
    if (im && !etag_list_matches(im, etag)) return 412;
    if (!im && ius && api__http_date_parse(ius, &t) == 0 && mtime_s > t / 1000) return 412;
    bool safe = r->method == HTTP_GET || r->method == HTTP_HEAD;
    if (inm && etag_list_matches(inm, etag)) return safe && prefix[0] == '\0' ? 304 : 412;
    if (!inm && ims && api__http_date_parse(ims, &t) == 0 && mtime_s <= t / 1000)
        return prefix[0] == '\0' ? 304 : 412;
    return 0;
}

typedef struct {
    node_store *store;
    node_read_view *view;
    const char *bucket, *key;
    node_manifest *m;
    int rc;
    bool bucket_missing;
} manifest_job;

static void manifest_work(void *arg)
{
    manifest_job *j = arg;
    j->rc = node_store_object_get_in(j->view, false, j->bucket, j->key, &j->m);
    if (j->rc == TERN_ENOTFOUND) {
        node_bucket b;
        j->bucket_missing = node_store_bucket_get(j->store, j->bucket, &b) == TERN_ENOTFOUND;
    }
}

static void get_pump(api__req *r);

typedef struct {
    api_server *server;
    const char *bucket, *key;
    node_read_view *snapshot;
    node_block_id id;
    uint32_t size_bytes;
    uint64_t object_bytes, read_bytes;
    bool observe;         /* the first block of the read: decide what the engine learns */
    bool keep_local;      /* in: already decided to keep fetched blocks; out: decided now */
    bool placement_known; /* in/out: holders and origin below are looked up */
    uint32_t holders;
    int origin;
    node_block_view *view;
    void *heap; /* a block fetched from another region */
    const char *data;
    size_t len;
    int rc;
    bool remote;
} read_job;

static void view_release(void *view)
{
    node_block_view_release(view);
}

/* Reads the block from a region that holds it (worker thread). */
static void read_remote(read_job *j)
{
    api_server *s = j->server;
    if (!j->placement_known) {
        uint32_t origin_id = 0;
        j->holders = 0;
        j->origin = -1;
        if (node_object_placement_get(s->store, j->bucket, j->key, &origin_id, &j->holders) == 0)
            j->origin = api__region_of_id(s, origin_id);
        j->placement_known = true;
    }
    uint32_t holders = j->holders;
    int origin = j->origin;
    if (j->observe) {
        plc_mask after = node_placement_observe_read(s->placement, j->bucket, j->key, origin,
                                                     j->object_bytes, j->read_bytes, tern_now_ms());
        j->keep_local = (after >> s->local_region) & 1u;
        node_egress_record_read(s->egress, (uint32_t)s->local_region, j->read_bytes);
    }
    uint32_t from;
    size_t len;
    j->rc = node_geo_fetch_block(s->fetch, j->bucket, j->key, holders, &j->id, j->size_bytes,
                                 &j->heap, &len, &from);
    if (j->rc != 0) return;
    j->data = j->heap;
    j->len = len;
    j->remote = true;
    if (!j->keep_local) return;
    if (j->observe) node_placement_copy_made(s->placement, j->bucket, j->key);
    /* Copy on read: submitted, not awaited; a failure only means the next read is remote. */
    int rc = node_cmd_block_put_async(s->group, &j->id, j->data, j->len);
    if (rc != 0)
        node_log(NODE_LOG_DEBUG, "geo", "not keeping a fetched block here: %s", tern_strerror(rc));
}

static void read_work(void *arg)
{
    read_job *j = arg;
    j->rc = node_store_block_view_in(j->snapshot, &j->id, false, &j->view, &j->data, &j->len);
    if (j->rc == TERN_ENOTFOUND && j->server->fetch != NULL) read_remote(j);
}

static void get_written(api__req *r)
{
    r->get->write_inflight = false;
    get_pump(r);
}

/* A block read failed: before the headers a clean error, after them a cut connection. */
static void get_fail(api__req *r, int rc)
{
    api__get *g = r->get;
    g->failed = true;
    if (!g->headers_sent) {
        api__respond_store_error(r, rc, "NoSuchKey");
        return;
    }
    char why[128];
    snprintf(why, sizeof why, "block read failed: %s", tern_strerror(rc));
    api__respond_abort(r, why);
}

/* Takes the slice of a block (a view, or fetched memory) that the response needs next. */
static int get_take_view(api__get *g, void *view, void (*release)(void *), const char *data,
                         size_t len)
{
    const node_block_ref *b = &g->m->blocks[g->block_index];
    size_t offset = (size_t)(g->next_offset - g->block_start);
    uint64_t want = TERN_MIN((uint64_t)b->size_bytes - offset, g->remaining);
    if (len != b->size_bytes || offset + want > len) {
        release(view);
        return TERN_ECORRUPT; /* the stored block does not have the manifest's size */
    }
    g->ready = view;
    g->ready_release = release;
    g->ready_data = data + offset;
    g->ready_len = (size_t)want;
    g->next_offset += want;
    g->remaining -= want;
    return 0;
}

static void read_done(api__req *r, void *arg)
{
    read_job *j = arg;
    int rc = j->rc;
    void *view = j->remote ? j->heap : (void *)j->view;
    void (*release)(void *) = j->remote ? free : view_release;
    const char *data = j->data;
    size_t len = j->len;
    bool observe = j->observe, remote = j->remote, keep_local = j->keep_local;
    bool placement_known = j->placement_known;
    uint32_t holders = j->holders;
    int origin = j->origin;
    free(j);
    if (r->aborted) {
        if (rc == 0) release(view);
        return;
    }
    api__get *g = r->get;
    g->read_inflight = false;
    if (placement_known && !g->placement_known) {
        g->placement_known = true;
        g->holders = holders;
        g->origin = origin;
    }
    if (observe) {
        g->observed = true;
        if (remote)
            g->keep_local = keep_local;
        else if (rc == 0)
            api__access(r, PLC_GET, g->remaining); /* a local read */
    }
    if (rc == 0) rc = get_take_view(g, view, release, data, len);
    if (rc != 0) {
        get_fail(r, rc);
        return;
    }
    get_pump(r);
}

/* Starts reading the next slice: from memory at once, or on the pool. */
static int get_read_next(api__req *r, api__get *g)
{
    while (g->next_offset >= g->block_start + g->m->blocks[g->block_index].size_bytes) {
        g->block_start += g->m->blocks[g->block_index].size_bytes;
        g->block_index++;
        assert(g->block_index < g->m->block_count);
    }
    const node_block_ref *b = &g->m->blocks[g->block_index];
    node_block_view *view;
    const char *data;
    size_t len;
    int rc = node_store_block_view_in(g->view, &b->id, true, &view, &data, &len);
    if (rc == 0) {
        if (!g->observed) {
            g->observed = true;
            api__access(r, PLC_GET, g->remaining);
        }
        return get_take_view(g, view, view_release, data, len);
    }
    /* Not in memory, or not here at all (another region holds it): the pool finds out. */
    if (rc != TERN_EAGAIN && !(rc == TERN_ENOTFOUND && r->server->fetch != NULL)) return rc;
    read_job *j = calloc(1, sizeof *j);
    assert(j != NULL);
    j->server = r->server;
    j->bucket = r->bucket;
    j->key = r->key;
    j->object_bytes = g->m->size_bytes;
    j->read_bytes = g->remaining;
    j->observe = !g->observed;
    j->keep_local = g->keep_local;
    j->placement_known = g->placement_known;
    j->holders = g->holders;
    j->origin = g->origin;
    j->size_bytes = b->size_bytes;
    j->snapshot = g->view;
    j->id = b->id;
    g->read_inflight = true;
    api__job_submit(r, read_work, read_done, j);
    return 0;
}

static void get_pump(api__req *r)
{
    api__get *g = r->get;
    for (;;) {
        if (g->failed || r->conn == NULL) return;
        if (g->ready && !g->write_inflight) {
            char *head = NULL;
            size_t head_len = 0;
            if (!g->headers_sent) {
                head = g->headers.data;
                head_len = g->headers.len;
                memset(&g->headers, 0, sizeof g->headers);
                g->headers_sent = true;
            }
            g->write_inflight = true;
            void *view = g->ready;
            g->ready = NULL;
            api__respond_write_view(r, head, head_len, g->ready_data, g->ready_len,
                                    g->ready_release, view, get_written);
            if (r->conn == NULL || r->get == NULL) return;
            continue;
        }
        if (g->remaining > 0 && !g->read_inflight && g->ready == NULL) {
            int rc = get_read_next(r, g);
            if (rc != 0) {
                get_fail(r, rc);
                return;
            }
            if (g->ready) continue;
            return;
        }
        if (g->remaining == 0 && !g->read_inflight && g->ready == NULL && !g->write_inflight)
            api__respond_end(r);
        return;
    }
}

static void add_object_headers(api__req *r, api__buf *h, const node_manifest *m)
{
    char date[32];
    api__http_date_format(m->last_modified_ms, date);
    api__format_etag_header(h, m->etag);
    api__buf_printf(h, "Last-Modified: %s\r\nAccept-Ranges: bytes\r\n", date);
    static const char *const overrides[][2] = {
        {"response-cache-control", "Cache-Control"},
        {"response-content-disposition", "Content-Disposition"},
        {"response-content-encoding", "Content-Encoding"},
        {"response-content-language", "Content-Language"},
        {"response-expires", "Expires"}};
    for (size_t i = 0; i < m->header_count; i++) {
        bool overridden = false;
        for (size_t k = 0; k < TERN_ARRAY_LEN(overrides); k++)
            if (strcasecmp(m->headers[i].name, overrides[k][1]) == 0 &&
                api__req_param(r, overrides[k][0]))
                overridden = true;
        if (!overridden) api__buf_printf(h, "%s: %s\r\n", m->headers[i].name, m->headers[i].value);
    }
    for (size_t k = 0; k < TERN_ARRAY_LEN(overrides); k++) {
        const char *v = api__req_param(r, overrides[k][0]);
        if (v && strpbrk(v, "\r\n") == NULL) api__buf_printf(h, "%s: %s\r\n", overrides[k][1], v);
    }
}

/* Answers 412/304 when a condition says so; returns true if it answered. */
static bool get_conditional(api__req *r, const node_manifest *m)
{
    int cond = api__conditional_status(r, m->etag, m->last_modified_ms, "");
    if (cond == 412) {
        api__respond_error(r, "PreconditionFailed",
                           "At least one of the pre-conditions you specified did not hold.");
        return true;
    }
    if (cond != 304) return false;
    api__buf h = {0};
    char date[32];
    api__http_date_format(m->last_modified_ms, date);
    api__format_etag_header(&h, m->etag);
    api__buf_printf(&h, "Last-Modified: %s\r\n", date);
    api__respond(r, 304, h.data, NULL, NULL, 0);
    api__buf_free(&h);
    return true;
}

static void get_respond(api__req *r, api__get *g)
{
    node_manifest *m = g->m;
    if (get_conditional(r, m)) return;
    const char *range = api__req_header(r, "Range");
    uint64_t length = m->size_bytes;
    g->first = 0;
    int status = 200;
    if (range) {
        uint64_t first, last;
        int rc = api__range_parse(range, m->size_bytes, &first, &last);
        if (rc == TERN_ERANGE) {
            api__respond_error(r, "InvalidRange", "The requested range is not satisfiable");
            return;
        }
        if (rc == 0) {
            g->first = first;
            g->last = last;
            length = last - first + 1;
            status = 206;
        }
    }
    api__buf h = {0};
    add_object_headers(r, &h, m);
    if (status == 206)
        api__buf_printf(&h, "Content-Range: bytes %llu-%llu/%llu\r\n", (unsigned long long)g->first,
                        (unsigned long long)g->last, (unsigned long long)m->size_bytes);
    const char *ct = api__req_param(r, "response-content-type");
    if (ct == NULL || strpbrk(ct, "\r\n"))
        ct = m->content_type ? m->content_type : "binary/octet-stream";
    /* A read the engine learns from: the bytes this GET moves (HEADs move none). One that
     * moves bytes is fed when its first block is found (get_read_next, read_done): where it
     * came from decides how. */
    if (!g->head && length == 0) api__access(r, PLC_GET, length);
    if (g->head || length == 0) {
        api__respond_head(r, status, h.data, length, ct);
        api__buf_free(&h);
        api__respond_end(r);
        return;
    }
    api__format_head(r, &g->headers, status, h.data, length, ct);
    api__buf_free(&h);
    g->remaining = length;
    g->next_offset = g->first;
    get_pump(r);
}

static void manifest_done(api__req *r, void *arg)
{
    manifest_job *j = arg;
    if (r->aborted) {
        node_manifest_free(j->m);
        free(j);
        return;
    }
    api__get *g = r->get;
    if (j->rc != 0) {
        api__respond_store_error(r, j->rc, j->bucket_missing ? "NoSuchBucket" : "NoSuchKey");
        free(j);
        return;
    }
    g->m = j->m;
    free(j);
    get_respond(r, g);
}

/* The read starts once the barrier has passed: its view sees every committed change. */
static void get_after_barrier(api__req *r, int status)
{
    api__get *g = r->get;
    if (status != 0) {
        api__respond_store_error(r, status, "NoSuchKey");
        return;
    }
    if (node_store_view_open(r->server->store, &g->view) != 0) {
        api__respond_error(r, "InternalError", "Out of memory.");
        return;
    }
    /* The manifest is usually in memory: answer without a trip through the pool. */
    if (node_store_object_get_in(g->view, true, r->bucket, r->key, &g->m) == 0) {
        get_respond(r, g);
        return;
    }
    manifest_job *j = calloc(1, sizeof *j);
    assert(j != NULL);
    j->store = r->server->store;
    j->view = g->view;
    j->bucket = r->bucket;
    j->key = r->key;
    api__job_submit(r, manifest_work, manifest_done, j);
}

void api__get_start(api__req *r, bool head)
{
    api__get *g = calloc(1, sizeof *g);
    assert(g != NULL);
    g->head = head;
    r->get = g;
    api__read_barrier(r, get_after_barrier);
}
