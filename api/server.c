/* HTTP/1.1 server on libuv + llhttp: connections, request lifecycle, backpressure, responses. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server_internal.h"

/* Data of a queued write: freed when libuv reports it written (or cancelled). */
typedef struct {
    uv_write_t req;
    api__conn *conn;
    char *data;              /* owned: freed with free() */
    void (*release)(void *); /* releases borrowed memory (a pinned block view) */
    void *release_arg;
    void (*on_written)(api__req *r);
} api__write;

typedef struct {
    uv_work_t work;
    api__req *r;
    api__work_fn fn;
    api__done_fn done;
    void *arg;
} api__job;

static void conn_close(api__conn *c);
static void conn_feed(api__conn *c, const char *data, size_t len);
static void req_done(api__req *r);
static void req_free(api__req *r);
static void maybe_finish(api__conn *c);

/* While draining: once the last connection and request are gone, report shutdown done. */
static void shutdown_maybe_done(api_server *s)
{
    if (!s->draining || s->conn_count != 0 || s->inflight != 0 || s->shutdown_done == NULL) return;
    void (*done)(void *) = s->shutdown_done;
    s->shutdown_done = NULL;
    uv_timer_stop(&s->grace_timer);
    done(s->shutdown_ctx);
}
static void conn_start_reading(api__conn *c);

const char *api__op_name(int op)
{
    static const char *const names[] = {
#define API_OP_NAME(name, text) text,
        API_OP_MAP(API_OP_NAME)
#undef API_OP_NAME
    };
    if (op < 0 || op >= API_OP_COUNT) return "Unknown";
    return names[op];
}

/* ---------------- requests ---------------- */

static api__req *req_new(api__conn *c)
{
    api__req *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    r->conn = c;
    r->server = c->server;
    r->start_ns = tern_mono_ns();
    r->status = 0;
    snprintf(r->request_id, sizeof r->request_id, "%016llX%08llX",
             (unsigned long long)c->server->started_ms,
             (unsigned long long)++c->server->request_seq);
    c->server->inflight++;
    return r;
}

static void req_free(api__req *r)
{
    assert(r->refs == 0);
    if (r->put) api__put_free(r->put);
    if (r->get) api__get_free(r->get);
    api__buf_free(&r->url);
    api__buf_free(&r->body);
    free(r->raw_path);
    free(r->raw_query);
    for (size_t i = 0; i < r->header_count; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    api__query_free(r->params, r->param_count);
    free(r->bucket);
    free(r->key);
    api_server *s = r->server;
    assert(s->inflight > 0);
    s->inflight--;
    free(r);
    shutdown_maybe_done(s);
}

/* Hands a finished request to the reaper once no job holds it. */
static void req_release(api__req *r)
{
    assert(r->aborted && r->conn == NULL);
    if (r->refs > 0) return; /* the last job_after releases it */
    r->next_dead = r->server->dead;
    r->server->dead = r;
}

static void reap_all(api_server *s)
{
    while (s->dead) {
        api__req *r = s->dead;
        s->dead = r->next_dead;
        req_free(r);
    }
}

static void on_reap(uv_check_t *h)
{
    reap_all(h->data);
}

/* The connection went away: the request can no longer answer. */
static void req_abort(api__req *r)
{
    r->aborted = true;
    r->conn = NULL;
    req_release(r);
}

const char *api__req_header(const api__req *r, const char *name)
{
    for (size_t i = 0; i < r->header_count; i++)
        if (strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
    return NULL;
}

const char *api__req_param(const api__req *r, const char *name)
{
    return api__query_get(r->params, r->param_count, name);
}

bool api__req_has_param(const api__req *r, const char *name)
{
    return api__req_param(r, name) != NULL;
}

static void job_work(uv_work_t *w)
{
    api__job *job = w->data;
    job->fn(job->arg);
}

static void job_after(uv_work_t *w, int status)
{
    (void)status;
    api__job *job = w->data;
    api__req *r = job->r;
    assert(r->refs > 0);
    /* The job still holds the request while done runs, so nothing done calls can free it. */
    job->done(r, job->arg);
    free(job);
    r->refs--;
    if (r->aborted && r->refs == 0) req_release(r);
}

void api__job_submit(api__req *r, api__work_fn work, api__done_fn done, void *arg)
{
    assert(!r->aborted); /* an abandoned request starts no more work */
    api__job *job = malloc(sizeof *job);
    assert(job != NULL); /* a failed 40-byte allocation leaves nothing sane to do */
    job->r = r;
    job->fn = work;
    job->done = done;
    job->arg = arg;
    job->work.data = job;
    r->refs++;
    int rc = uv_queue_work(r->server->loop, &job->work, job_work, job_after);
    assert(rc == 0);
    (void)rc;
}

/* ---------------- read barriers ---------------- */

typedef struct {
    api__req *r;
    api__barrier_fn fn;
} barrier_ctx;

/* Like job_after: the barrier holds the request while fn runs. */
void api__held_done(void *arg, int status)
{
    barrier_ctx *b = arg;
    api__req *r = b->r;
    api__barrier_fn fn = b->fn;
    free(b);
    if (!r->aborted) fn(r, status);
    assert(r->refs > 0);
    r->refs--;
    if (r->aborted && r->refs == 0) req_release(r);
}

void *api__hold(api__req *r, api__barrier_fn fn)
{
    assert(!r->aborted);
    barrier_ctx *b = malloc(sizeof *b);
    assert(b != NULL); /* as api__job_submit: a 16-byte allocation failing leaves nothing sane */
    b->r = r;
    b->fn = fn;
    r->refs++;
    return b;
}

void api__read_barrier(api__req *r, api__barrier_fn fn)
{
    void *held = api__hold(r, fn);
    int rc = node_group_read_barrier(r->server->group, api__held_done, held);
    if (rc != 0) api__held_done(held, rc);
}

/* ---------------- pausing ---------------- */

/*
 * Runs the parser over the bytes kept while it was paused. It runs even with
 * none: a pause inside on_headers_complete leaves llhttp one step short of
 * on_message_complete for a request without a body.
 */
static void feed_unparsed(api__conn *c)
{
    api__buf pending = c->unparsed;
    size_t off = c->unparsed_off;
    memset(&c->unparsed, 0, sizeof c->unparsed);
    c->unparsed_off = 0;
    static const char empty[1] = "";
    if (pending.len > off)
        conn_feed(c, pending.data + off, pending.len - off);
    else
        conn_feed(c, empty, 0);
    api__buf_free(&pending);
}

void api__req_pause(api__req *r)
{
    api__conn *c = r->conn;
    if (c == NULL) return;
    if (c->server->in_execute) c->server->want_pause = true;
    c->paused = true;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/*
 * Every request that asked for "100-continue" and will be answered after its body gets the
 * interim response, an empty body or one already received included: the RFC lets a server
 * skip it then, but botocore, handed a final response while waiting for the 100, keeps that
 * response's status for the connection's next expect-request, and answers it with the stale
 * status if the server dies before replying (a PUT "acknowledged" that never arrived: seen in
 * test_crash).
 */
static void send_continue(api__req *r)
{
    static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!r->expect_continue || r->response_started) return;
    r->expect_continue = false;
    char *data = malloc(sizeof msg - 1);
    if (data == NULL) return;
    memcpy(data, msg, sizeof msg - 1);
    api__respond_write_view(r, data, sizeof msg - 1, NULL, 0, NULL, NULL, NULL);
    r->response_started = false; /* an interim response is not the response */
}

void api__req_resume(api__req *r)
{
    api__conn *c = r->conn;
    if (c == NULL || c->closing) return;
    if (c->server->in_execute) {
        c->server->want_pause = false;
        c->paused = false;
        return;
    }
    c->paused = false;
    llhttp_resume(&c->parser);
    if (c->req == r && r->body_mode != API_BODY_NONE) send_continue(r);
    feed_unparsed(c);
    if (!c->paused && !c->closing && !c->reading) conn_start_reading(c);
}

/* ---------------- responses ---------------- */

static void write_done(uv_write_t *w, int status)
{
    api__write *wr = w->data;
    api__conn *c = wr->conn;
    free(wr->data);
    if (wr->release) wr->release(wr->release_arg);
    assert(c->writes_pending > 0);
    c->writes_pending--;
    api__req *r = c->req;
    void (*cb)(api__req *) = wr->on_written;
    free(wr);
    if (status < 0) {
        if (!c->closing) conn_close(c);
        return;
    }
    if (r == NULL || c->closing) return;
    if (cb) cb(r);
    maybe_finish(c);
}

void api__respond_write_view(api__req *r, char *owned, size_t owned_len, const char *data,
                             size_t len, void (*release)(void *), void *release_arg,
                             void (*on_written)(api__req *r))
{
    api__conn *c = r->conn;
    if (c == NULL || c->closing) {
        free(owned);
        if (release) release(release_arg);
        return;
    }
    api__write *wr = malloc(sizeof *wr);
    assert(wr != NULL);
    wr->conn = c;
    wr->data = owned;
    wr->release = release;
    wr->release_arg = release_arg;
    wr->on_written = on_written;
    wr->req.data = wr;
    r->bytes_out += len;
    r->response_started = true;
    uv_buf_t bufs[2];
    unsigned n = 0;
    if (owned_len > 0) bufs[n++] = uv_buf_init(owned, (unsigned)owned_len);
    if (len > 0) bufs[n++] = uv_buf_init((char *)data, (unsigned)len);
    c->writes_pending++;
    int rc = uv_write(&wr->req, (uv_stream_t *)&c->tcp, bufs, n, write_done);
    if (rc != 0) {
        c->writes_pending--;
        free(owned);
        if (release) release(release_arg);
        free(wr);
        conn_close(c);
    }
}

void api__respond_write(api__req *r, char *data, size_t len, void (*on_written)(api__req *r))
{
    /* The bytes are body bytes: count them as such. */
    api__respond_write_view(r, NULL, 0, data, len, free, data, on_written);
}

void api__common_headers(api__req *r, api__buf *b)
{
    char date[32];
    api__http_date_format(tern_now_ms(), date);
    api__buf_printf(b, "x-amz-request-id: %s\r\nx-amz-id-2: %s\r\nDate: %s\r\nServer: tern\r\n",
                    r->request_id, r->request_id, date);
}

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 416:
        return "Requested Range Not Satisfiable";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 507:
        return "Insufficient Storage";
    default:
        return "Status";
    }
}

/* A response sent before the body was read ends the connection: unread bytes are garbage. */
static void decide_close(api__req *r)
{
    if (!r->message_complete && !r->bodyless) r->close_after = true;
    if (r->server->draining) r->close_after = true;
}

void api__format_head(api__req *r, api__buf *out, int status, const char *extra_headers,
                      uint64_t content_length, const char *content_type)
{
    decide_close(r);
    r->status = status;
    api__buf b = {0};
    api__buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, status_text(status));
    api__common_headers(r, &b);
    if (content_type) api__buf_printf(&b, "Content-Type: %s\r\n", content_type);
    if (status != 304 && status != 204)
        api__buf_printf(&b, "Content-Length: %llu\r\n", (unsigned long long)content_length);
    if (extra_headers) api__buf_append_str(&b, extra_headers);
    if (r->close_after) api__buf_append_str(&b, "Connection: close\r\n");
    api__buf_append_str(&b, "\r\n");
    *out = b;
}

void api__respond_head(api__req *r, int status, const char *extra_headers, uint64_t content_length,
                       const char *content_type)
{
    api__buf b = {0};
    api__format_head(r, &b, status, extra_headers, content_length, content_type);
    /* Head bytes go as "owned" bytes: not counted as body bytes sent. */
    api__respond_write_view(r, b.data, b.len, NULL, 0, NULL, NULL, NULL);
}

void api__respond_end(api__req *r)
{
    api__conn *c = r->conn;
    if (c == NULL) return;
    r->response_ended = true;
    maybe_finish(c);
}

static void maybe_finish(api__conn *c)
{
    api__req *r = c->req;
    if (r == NULL || !r->response_ended || c->writes_pending > 0) return;
    req_done(r);
}

void api__respond(api__req *r, int status, const char *extra_headers, const char *content_type,
                  const char *body, size_t body_len)
{
    if (r->conn == NULL) return;
    api__respond_head(r, status, extra_headers, body_len, content_type);
    if (body_len > 0 && r->method != HTTP_HEAD) {
        char *copy = malloc(body_len);
        assert(copy != NULL);
        memcpy(copy, body, body_len);
        api__respond_write(r, copy, body_len, NULL);
    }
    api__respond_end(r);
}

void api__respond_error(api__req *r, const char *s3_code, const char *message)
{
    if (r->conn == NULL || r->response_started) return;
    api__buf body = {0};
    char resource[1200];
    snprintf(resource, sizeof resource, "%s", r->raw_path ? r->raw_path : "/");
    api__s3_error_xml(&body, s3_code, message, resource, r->request_id);
    int status = api__s3_error_status(s3_code);
    node_log(status >= 500 ? NODE_LOG_WARN : NODE_LOG_DEBUG, "s3", "%s %s -> %d %s: %s",
             llhttp_method_name((llhttp_method_t)r->method), resource, status, s3_code, message);
    api__respond(r, status, NULL, "application/xml", body.data ? body.data : "", body.len);
    api__buf_free(&body);
}

static const char *not_found_message(const char *code)
{
    if (strcmp(code, "NoSuchKey") == 0) return "The specified key does not exist.";
    if (strcmp(code, "NoSuchBucket") == 0) return "The specified bucket does not exist.";
    if (strcmp(code, "NoSuchUpload") == 0)
        return "The specified multipart upload does not exist. The upload ID may be invalid, or "
               "the upload may have been aborted or completed.";
    return "The specified resource does not exist.";
}

void api__respond_store_error(api__req *r, int rc, const char *not_found_code)
{
    char msg[300];
    switch (rc) {
    case TERN_ENOTFOUND:
        api__respond_error(r, not_found_code, not_found_message(not_found_code));
        break;
    case TERN_ENOSPC:
        api__respond_error(r, "InsufficientStorage",
                           "The node's disk is full; the request was not stored.");
        break;
    case TERN_EFAILED:
        api__respond_error(r, "ServiceUnavailable",
                           "The node's store failed after a disk error and refuses writes.");
        break;
    case TERN_ECORRUPT:
        api__respond_error(r, "InternalError",
                           "Stored data failed its integrity check and was not served.");
        break;
    case TERN_ECONFLICT:
        api__respond_error(r, "SlowDown", "A concurrent change interfered; retry the request.");
        break;
    case TERN_EAGAIN:
        api__respond_error(r, "SlowDown", "Too many changes are waiting for the region group.");
        break;
    case TERN_EUNAVAIL:
        api__respond_error(r, "ServiceUnavailable",
                           "The region group has no leader at the moment; retry the request.");
        break;
    case TERN_ETIMEDOUT:
    case TERN_EPRECOND:
        /* The change may or may not have been committed: S3 clients retry. */
        api__respond_error(r, "ServiceUnavailable",
                           "The change was not confirmed by the region group in time; retry "
                           "the request.");
        break;
    case TERN_ECLOSED:
        api__respond_error(r, "ServiceUnavailable", "The node is shutting down.");
        break;
    default:
        snprintf(msg, sizeof msg, "Store error: %s (%s)", tern_strerror(rc),
                 node_store_errmsg(r->server->store));
        api__respond_error(r, "InternalError", msg);
    }
}

void api__respond_abort(api__req *r, const char *why)
{
    node_log(NODE_LOG_ERROR, "s3", "aborting response %s mid-body: %s", r->request_id, why);
    r->close_after = true;
    r->response_ended = true;
    if (r->conn) conn_close(r->conn);
}

/* ---------------- request completion ---------------- */

static void record_metrics(api__req *r)
{
    api_server *s = r->server;
    int status = r->status;
    /* Series are cached per (op, status): the registry lookup takes a lock and compares strings. */
    node_counter *c = NULL;
    for (size_t i = 0; i < API_STATUS_SLOTS && c == NULL; i++) {
        if (s->req_status[r->op][i] == status)
            c = s->req_counter[r->op][i];
        else if (s->req_status[r->op][i] == 0) {
            char labels[96];
            snprintf(labels, sizeof labels, "op=\"%s\",code=\"%d\"", api__op_name(r->op), status);
            c = node_metrics_counter(s->metrics, "tern_s3_requests_total",
                                     "S3 API requests by operation and HTTP status.", labels);
            s->req_status[r->op][i] = status;
            s->req_counter[r->op][i] = c;
        }
    }
    if (c == NULL) {
        char labels[96];
        snprintf(labels, sizeof labels, "op=\"%s\",code=\"%d\"", api__op_name(r->op), status);
        c = node_metrics_counter(s->metrics, "tern_s3_requests_total",
                                 "S3 API requests by operation and HTTP status.", labels);
    }
    if (c) node_counter_add(c, 1);
    double seconds = (double)(tern_mono_ns() - r->start_ns) / 1e9;
    if (s->latency[r->op]) node_histogram_observe(s->latency[r->op], seconds);
    if (s->bytes_in) node_counter_add(s->bytes_in, r->bytes_in);
    if (s->bytes_out) node_counter_add(s->bytes_out, r->bytes_out);
}

static void req_done(api__req *r)
{
    api__conn *c = r->conn;
    assert(c != NULL && c->req == r);
    record_metrics(r);
    bool close_after = r->close_after;
    c->req = NULL;
    /* Jobs may still reference the request (e.g. a response sent on error). */
    r->conn = NULL;
    r->aborted = true;
    req_release(r);
    if (close_after || c->server->draining) {
        conn_close(c);
        return;
    }
    uv_timer_again(&c->timer);
    if (c->paused) {
        /* Parsing stopped at message complete: go on with any pipelined bytes. */
        c->paused = false;
        llhttp_resume(&c->parser);
        feed_unparsed(c);
    }
    if (!c->paused && !c->closing && !c->reading) conn_start_reading(c);
}

/* ---------------- llhttp callbacks ---------------- */

static api__conn *parser_conn(llhttp_t *p)
{
    return p->data;
}

static int pause_or_ok(api__conn *c)
{
    if (c->server->want_pause) {
        c->server->want_pause = false;
        return HPE_PAUSED;
    }
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    api__conn *c = parser_conn(p);
    assert(c->req == NULL);
    c->req = req_new(c);
    if (c->req == NULL) return -1;
    api__buf_reset(&c->field);
    api__buf_reset(&c->value);
    c->last_was_value = false;
    c->header_bytes = 0;
    return 0;
}

static bool header_budget(api__conn *c, size_t len)
{
    c->header_bytes += len;
    return c->header_bytes <= c->server->config->max_header_bytes;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    api__conn *c = parser_conn(p);
    if (!header_budget(c, len)) return -1;
    return api__buf_append(&c->req->url, at, len) == 0 ? 0 : -1;
}

static int commit_header(api__conn *c)
{
    api__req *r = c->req;
    if (r->header_count == r->header_cap) {
        size_t cap = r->header_cap ? r->header_cap * 2 : 16;
        api__owned_header *h = realloc(r->headers, cap * sizeof *h);
        if (h == NULL) return -1;
        r->headers = h;
        r->header_cap = cap;
    }
    api__owned_header *h = &r->headers[r->header_count++];
    h->name = strdup(c->field.data ? c->field.data : "");
    h->value = strdup(c->value.data ? c->value.data : "");
    api__buf_reset(&c->field);
    api__buf_reset(&c->value);
    c->last_was_value = false;
    return (h->name && h->value) ? 0 : -1;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    api__conn *c = parser_conn(p);
    if (!header_budget(c, len)) return -1;
    if (c->last_was_value && commit_header(c) != 0) return -1;
    return api__buf_append(&c->field, at, len) == 0 ? 0 : -1;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    api__conn *c = parser_conn(p);
    if (!header_budget(c, len)) return -1;
    c->last_was_value = true;
    return api__buf_append(&c->value, at, len) == 0 ? 0 : -1;
}

static int on_headers_complete(llhttp_t *p)
{
    api__conn *c = parser_conn(p);
    api__req *r = c->req;
    if (c->last_was_value && commit_header(c) != 0) return -1;
    if (c->field.len > 0) return -1; /* a header name without a value line */
    r->method = p->method;
    if (p->flags & F_CONTENT_LENGTH) {
        r->has_content_length = true;
        r->content_length = p->content_length;
    }
    r->bodyless = (p->flags & F_CHUNKED) == 0 && (!r->has_content_length || r->content_length == 0);
    /* "Connection: close" (or HTTP/1.0 without keep-alive): answer, then close. */
    if (!llhttp_should_keep_alive(p)) r->close_after = true;
    const char *expect = api__req_header(r, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0) r->expect_continue = true;
    api__s3_headers_done(r);
    if (c->req == r && !c->paused && r->body_mode != API_BODY_NONE) send_continue(r);
    if (c->paused) return HPE_PAUSED;
    return pause_or_ok(c);
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    api__conn *c = parser_conn(p);
    api__req *r = c->req;
    r->bytes_in += len;
    switch (r->body_mode) {
    case API_BODY_BUFFER:
        /* A shipped block or batch of changes is larger than an XML body may be. */
        size_t max =
            r->op == API_OP_GEO_BLOCK ? NODE_BLOCK_SIZE_MAX
            : r->op == API_OP_GEO_APPLY || r->op == API_OP_GEO_HAVE || r->op == API_OP_GEO_BLOCKS
                ? API_GEO_BATCH_BYTES_MAX
                : API_XML_BODY_BYTES_MAX;
        if (r->body.len + len > max) {
            api__respond_error(r, "MaxMessageLengthExceeded",
                               "The request body is larger than this operation accepts.");
            api__req_pause(r);
            return HPE_PAUSED;
        }
        if (api__buf_append(&r->body, at, len) != 0) return -1;
        break;
    case API_BODY_STREAM:
        if (api__s3_body(r, at, len) != 0) {
            /* The handler has answered with an error; stop reading this connection. */
            api__req_pause(r);
            return HPE_PAUSED;
        }
        break;
    default:
        break;
    }
    if (c->paused) return HPE_PAUSED;
    return pause_or_ok(c);
}

static int on_message_complete(llhttp_t *p)
{
    api__conn *c = parser_conn(p);
    api__req *r = c->req;
    r->message_complete = true;
    /* Pause so that a pipelined request waits until this response is written. */
    c->paused = true;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    if (!r->response_started && r->status == 0) api__s3_handle(r);
    return HPE_PAUSED;
}

/* ---------------- connections ---------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    api__conn *c = h->data;
    *buf = uv_buf_init(c->read_buf, API_READ_BUFFER_BYTES);
}

static const char *parse_error_code(api__conn *c, llhttp_errno_t err)
{
    if (c->header_bytes > c->server->config->max_header_bytes)
        return "RequestHeaderSectionTooLarge";
    if (err == HPE_INVALID_CONTENT_LENGTH || err == HPE_UNEXPECTED_CONTENT_LENGTH)
        return "InvalidRequest";
    return "BadRequest";
}

static void respond_parse_error(api__conn *c, llhttp_errno_t err)
{
    api__req *r = c->req;
    if (r == NULL) {
        /* Garbage between requests: make a request to answer it. */
        r = c->req = req_new(c);
        if (r == NULL) {
            conn_close(c);
            return;
        }
    }
    r->close_after = true;
    if (r->response_started) {
        conn_close(c);
        return;
    }
    char msg[256];
    const char *code = parse_error_code(c, err);
    if (strcmp(code, "RequestHeaderSectionTooLarge") == 0)
        snprintf(msg, sizeof msg, "The request headers exceed %u bytes.",
                 c->server->config->max_header_bytes);
    else
        snprintf(msg, sizeof msg, "Malformed HTTP request: %s (%s).", llhttp_errno_name(err),
                 llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser) : "");
    c->parse_error = true;
    if (r->status == 0) api__respond_error(r, code, msg);
}

static void conn_feed(api__conn *c, const char *data, size_t len)
{
    if (c->closing || c->parse_error) return;
    if (c->paused) {
        api__buf_append(&c->unparsed, data, len);
        return;
    }
    api_server *s = c->server;
    assert(!s->in_execute); /* llhttp_execute is never re-entered */
    s->in_execute = true;
    s->want_pause = false;
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    s->in_execute = false;
    s->want_pause = false;
    if (err == HPE_OK) return;
    if (err == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&c->parser);
        size_t used = pos ? (size_t)(pos - data) : len;
        if (used < len) api__buf_append(&c->unparsed, data + used, len - used);
        c->paused = true;
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
        }
        return;
    }
    respond_parse_error(c, err);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    api__conn *c = stream->data;
    if (nread == 0) return;
    if (nread < 0) {
        api__req *r = c->req;
        if (r && !r->message_complete && !r->response_started && r->status == 0 &&
            nread == UV_EOF && r->url.len > 0) {
            /* The client half-closed mid-request: say so, then close. */
            r->close_after = true;
            c->parse_error = true;
            api__respond_error(r, "IncompleteBody",
                               "The request body ended before the declared length.");
            if (c->reading) {
                uv_read_stop(stream);
                c->reading = false;
            }
            return;
        }
        conn_close(c);
        return;
    }
    uv_timer_again(&c->timer);
    conn_feed(c, c->read_buf, (size_t)nread);
}

static void conn_start_reading(api__conn *c)
{
    if (c->reading || c->closing) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
}

static void conn_free(api__conn *c)
{
    api_server *s = c->server;
    api__buf_free(&c->unparsed);
    api__buf_free(&c->field);
    api__buf_free(&c->value);
    free(c->read_buf);
    free(c);
    shutdown_maybe_done(s);
}

static void on_handle_closed(uv_handle_t *h)
{
    api__conn *c = h->data;
    /* Two handles (tcp, timer) close; free on the second. */
    if (h == (uv_handle_t *)&c->timer) {
        c->timer.data = NULL;
    } else {
        c->tcp.data = NULL;
    }
    if (c->timer.data == NULL && c->tcp.data == NULL) conn_free(c);
}

static void conn_close(api__conn *c)
{
    if (c->closing) return;
    c->closing = true;
    api_server *s = c->server;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    s->conn_count--;
    if (c->req) {
        api__req *r = c->req;
        c->req = NULL;
        req_abort(r);
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_conn_timer(uv_timer_t *t)
{
    api__conn *c = t->data;
    api__req *r = c->req;
    if (r == NULL) {
        conn_close(c); /* idle keep-alive connection */
        return;
    }
    if (r->handling || r->response_started || r->refs > 0) {
        uv_timer_again(t); /* the server is working: not the client's delay */
        return;
    }
    r->close_after = true;
    c->parse_error = true;
    api__respond_error(r, "RequestTimeout",
                       "Your socket connection to the server was not read from or written to "
                       "within the timeout period.");
}

static void on_connection(uv_stream_t *listener, int status)
{
    api_server *s = listener->data;
    if (status < 0) {
        node_log(NODE_LOG_WARN, "http", "accept failed: %s", uv_strerror(status));
        return;
    }
    api__conn *c = calloc(1, sizeof *c);
    char *read_buf = malloc(API_READ_BUFFER_BYTES);
    if (c == NULL || read_buf == NULL) {
        free(c);
        free(read_buf);
        return;
    }
    c->server = s;
    c->read_buf = read_buf;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        return;
    }
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->conn_count++;
    if (s->conn_count > s->config->max_connections || s->draining) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_settings_init(&c->settings);
    c->settings.on_message_begin = on_message_begin;
    c->settings.on_url = on_url;
    c->settings.on_header_field = on_header_field;
    c->settings.on_header_value = on_header_value;
    c->settings.on_headers_complete = on_headers_complete;
    c->settings.on_body = on_body;
    c->settings.on_message_complete = on_message_complete;
    llhttp_init(&c->parser, HTTP_REQUEST, &c->settings);
    c->parser.data = c;
    uv_timer_start(&c->timer, on_conn_timer, API_IDLE_TIMEOUT_MS, API_BODY_TIMEOUT_MS);
    conn_start_reading(c);
}

/* ---------------- server ---------------- */

static int split_host_port(const char *listen, char *host, size_t host_len, int *port)
{
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= host_len) return TERN_EINVAL;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (host[0] == '[') { /* [::1]:9000 */
        size_t n = strlen(host);
        if (n < 2 || host[n - 1] != ']') return TERN_EINVAL;
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535) return TERN_EINVAL;
    *port = (int)p;
    return 0;
}

static int load_credentials(api_server *s, const node_config *cfg)
{
    size_t n = 2 + cfg->key_count;
    s->creds = calloc(n, sizeof *s->creds);
    if (s->creds == NULL) return TERN_ENOMEM;
    if (cfg->root_access_key && cfg->root_secret_key) {
        s->creds[s->cred_count].access_key = strdup(cfg->root_access_key);
        s->creds[s->cred_count].secret_key = strdup(cfg->root_secret_key);
        s->cred_count++;
    }
    for (size_t i = 0; i < cfg->key_count; i++) {
        s->creds[s->cred_count].access_key = strdup(cfg->keys[i].access_key);
        s->creds[s->cred_count].secret_key = strdup(cfg->keys[i].secret_key);
        s->cred_count++;
    }
    /* The deployment key other regions sign with: it opens the geo endpoints, nothing else. */
    if (cfg->geo_access_key && cfg->geo_secret_key) {
        s->creds[s->cred_count].access_key = strdup(cfg->geo_access_key);
        s->creds[s->cred_count].secret_key = strdup(cfg->geo_secret_key);
        s->creds[s->cred_count].geo_only = true;
        s->cred_count++;
    }
    return 0;
}

static void register_metrics(api_server *s)
{
    static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,    0.25,  0.5,    1,     2.5,  5,     10};
    for (int op = 0; op < API_OP_COUNT; op++) {
        char labels[64];
        snprintf(labels, sizeof labels, "op=\"%s\"", api__op_name(op));
        s->latency[op] = node_metrics_histogram(
            s->metrics, "tern_s3_request_duration_seconds",
            "Time from request start to the end of its response, by operation.", labels, bounds,
            TERN_ARRAY_LEN(bounds));
    }
    s->bytes_in = node_metrics_counter(s->metrics, "tern_s3_bytes_received_total",
                                       "Request body bytes received by the S3 API.", NULL);
    s->bytes_out = node_metrics_counter(s->metrics, "tern_s3_bytes_sent_total",
                                        "Response body bytes sent by the S3 API.", NULL);
}

int api_server_start(const api_server_options *opts, api_server **out, char *errmsg,
                     size_t errmsg_len)
{
    api_server *s = calloc(1, sizeof *s);
    if (s == NULL) return TERN_ENOMEM;
    s->loop = opts->loop;
    s->store = opts->store;
    s->group = opts->group;
    s->metrics = opts->metrics;
    s->config = opts->config;
    s->egress = opts->egress;
    s->topology = opts->topology;
    /* Found once: every client access is accounted against it (api__access). */
    s->local_region =
        opts->topology ? node_topology_region(opts->topology, opts->config->region) : -1;
    s->placement = opts->placement;
    s->fetch = opts->fetch;
    s->started_ms = opts->started_ms;
    if (load_credentials(s, opts->config) != 0) goto err;
    register_metrics(s);
    char host[256];
    int port;
    if (split_host_port(opts->config->s3_listen, host, sizeof host, &port) != 0) {
        tern_errmsg(errmsg, errmsg_len, "bad listen address '%s'", opts->config->s3_listen);
        goto err;
    }
    struct sockaddr_storage addr;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
        tern_errmsg(errmsg, errmsg_len, "bad listen host '%s'", host);
        goto err;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    uv_timer_init(s->loop, &s->grace_timer);
    uv_check_init(s->loop, &s->reaper);
    s->reaper.data = s;
    uv_check_start(&s->reaper, on_reap);
    uv_unref((uv_handle_t *)&s->reaper); /* it must not keep the loop alive by itself */
    s->grace_timer.data = s;
    int rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (rc != 0) {
        tern_errmsg(errmsg, errmsg_len, "cannot listen on %s: %s", opts->config->s3_listen,
                    uv_strerror(rc));
        s->listening = true; /* so that api_server_free closes it */
        goto err;
    }
    s->listening = true;
    *out = s;
    return 0;
err:
    api_server_free(s);
    return TERN_EINVAL;
}

static void on_grace_expired(uv_timer_t *t)
{
    api_server *s = t->data;
    node_log(NODE_LOG_WARN, "http", "shutdown grace expired: closing %zu connections",
             s->conn_count);
    while (s->conns)
        conn_close(s->conns);
}

void api_server_shutdown(api_server *s, uint32_t grace_ms, void (*done)(void *ctx), void *ctx)
{
    if (s->draining) return;
    s->draining = true;
    s->shutdown_done = done;
    s->shutdown_ctx = ctx;
    if (s->listening) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        s->listening = false;
    }
    /* Idle connections go now; busy ones close after their response. */
    api__conn *c = s->conns;
    while (c) {
        api__conn *next = c->next;
        if (c->req == NULL) conn_close(c);
        c = next;
    }
    if (s->conn_count == 0 && s->inflight == 0) {
        s->shutdown_done = NULL;
        done(ctx);
        return;
    }
    uv_timer_start(&s->grace_timer, on_grace_expired, grace_ms, 0);
}

void api_server_free(api_server *s)
{
    if (s == NULL) return;
    /* Called once the loop has stopped: close our handles and let libuv retire them. */
    bool ran = false;
    reap_all(s);
    if (s->reaper.loop && !uv_is_closing((uv_handle_t *)&s->reaper)) {
        uv_close((uv_handle_t *)&s->reaper, NULL);
        ran = true;
    }
    if (s->grace_timer.loop && !uv_is_closing((uv_handle_t *)&s->grace_timer)) {
        uv_close((uv_handle_t *)&s->grace_timer, NULL);
        ran = true;
    }
    if (s->listening) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        s->listening = false;
        ran = true;
    }
    if (ran) uv_run(s->loop, UV_RUN_NOWAIT);
    for (size_t i = 0; i < s->cred_count; i++) {
        free(s->creds[i].access_key);
        free(s->creds[i].secret_key);
    }
    free(s->creds);
    free(s);
}

size_t api_server_inflight(const api_server *s)
{
    return s->inflight;
}
