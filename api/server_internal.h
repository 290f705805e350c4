/* Server internals shared by the HTTP connection code and the S3/admin handlers. */
#ifndef TERN_API_SERVER_INTERNAL_H
#define TERN_API_SERVER_INTERNAL_H

#include <llhttp.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <uv.h>

#include "api.h"
#include "api_internal.h"

/*
 * DESIGN NOTES
 *
 * One libuv loop thread owns every socket; every store call runs on the
 * libuv thread pool (api__job_submit) because RocksDB reads may hit disk and
 * commits fsync. A request is a small state machine driven by llhttp
 * callbacks and job completions:
 *
 *   HEADERS --auth,route--> [PRECHECK job] --> BODY (discard | buffer | stream)
 *       --> message complete --> HANDLE (jobs) --> RESPONSE (writes) --> DONE
 *
 * Backpressure: the parser is paused (llhttp HPE_PAUSED, socket reads stopped)
 * whenever a request cannot take more bytes: while a precheck runs, while its
 * streaming body already has two blocks in flight, and from message complete
 * until its response is written (so pipelined requests wait their turn).
 * Memory per request is therefore bounded by two blocks plus one read buffer.
 *
 * Lifetime: a request holds one reference per job in flight. If the peer
 * closes, the request is marked aborted and freed when its last job returns;
 * job completions check `aborted` first. A streaming upload's blocks stay
 * pinned until its manifest commits or the request is freed, so garbage
 * collection never races an upload in progress.
 */

#define API_READ_BUFFER_BYTES    (64 * 1024)
#define API_XML_BODY_BYTES_MAX   (2 * 1024 * 1024)
#define API_GEO_BATCH_BYTES_MAX  (16 * 1024 * 1024)
#define API_SINGLE_PUT_BYTES_MAX (5ull * 1024 * 1024 * 1024)
#define API_PART_BYTES_MIN       (5ull * 1024 * 1024)
#define API_PARTS_MAX            10000
#define API_METADATA_BYTES_MAX   2048
#define API_LIST_KEYS_MAX        1000
#define API_IDLE_TIMEOUT_MS      60000
#define API_BODY_TIMEOUT_MS      30000

/* Operations, for routing and metrics. */
#define API_OP_MAP(X)                                                                              \
    X(UNKNOWN, "Unknown")                                                                          \
    X(HEALTH, "Health")                                                                            \
    X(READY, "Ready")                                                                              \
    X(METRICS, "Metrics")                                                                          \
    X(ADMIN_STATUS, "AdminStatus")                                                                 \
    X(ADMIN_CLUSTER, "AdminCluster")                                                               \
    X(ADMIN_CLUSTER_CHANGE, "AdminClusterChange")                                                  \
    X(ADMIN_EGRESS, "AdminEgress")                                                                 \
    X(ADMIN_POLICY_GET, "AdminBucketPolicyGet")                                                    \
    X(ADMIN_PLACEMENT_EXPLAIN, "AdminPlacementExplain")                                            \
    X(GEO_BLOCK, "GeoBlock")                                                                       \
    X(GEO_APPLY, "GeoApply")                                                                       \
    X(GEO_RECEIVED, "GeoReceived")                                                                 \
    X(GEO_BLOCK_GET, "GeoBlockGet")                                                                \
    X(GEO_HAVE, "GeoHave")                                                                         \
    X(GEO_BLOCKS, "GeoBlocks")                                                                     \
    X(GEO_MARK, "GeoMark")                                                                         \
    X(GEO_STATUS, "GeoStatus")                                                                     \
    X(GEO_JOURNAL, "PlacementJournal")                                                             \
    X(ADMIN_PLACEMENT_STATS, "AdminPlacementStats")                                                \
    X(ADMIN_POLICY_PUT, "AdminBucketPolicyPut")                                                    \
    X(ADMIN_POLICY_DELETE, "AdminBucketPolicyDelete")                                              \
    X(LIST_BUCKETS, "ListBuckets")                                                                 \
    X(CREATE_BUCKET, "CreateBucket")                                                               \
    X(HEAD_BUCKET, "HeadBucket")                                                                   \
    X(DELETE_BUCKET, "DeleteBucket")                                                               \
    X(GET_BUCKET_LOCATION, "GetBucketLocation")                                                    \
    X(LIST_OBJECTS, "ListObjects")                                                                 \
    X(LIST_OBJECTS_V2, "ListObjectsV2")                                                            \
    X(LIST_UPLOADS, "ListMultipartUploads")                                                        \
    X(DELETE_OBJECTS, "DeleteObjects")                                                             \
    X(PUT_OBJECT, "PutObject")                                                                     \
    X(COPY_OBJECT, "CopyObject")                                                                   \
    X(GET_OBJECT, "GetObject")                                                                     \
    X(HEAD_OBJECT, "HeadObject")                                                                   \
    X(DELETE_OBJECT, "DeleteObject")                                                               \
    X(CREATE_UPLOAD, "CreateMultipartUpload")                                                      \
    X(UPLOAD_PART, "UploadPart")                                                                   \
    X(COMPLETE_UPLOAD, "CompleteMultipartUpload")                                                  \
    X(ABORT_UPLOAD, "AbortMultipartUpload")                                                        \
    X(LIST_PARTS, "ListParts")                                                                     \
    X(NOT_IMPLEMENTED, "NotImplemented")

enum {
#define API_OP_ENUM(name, text) API_OP_##name,
    API_OP_MAP(API_OP_ENUM)
#undef API_OP_ENUM
        API_OP_COUNT
};

const char *api__op_name(int op);

enum { API_BODY_NONE = 0, API_BODY_DISCARD, API_BODY_BUFFER, API_BODY_STREAM };

typedef struct api__conn api__conn;
typedef struct api__req api__req;
typedef struct api__put api__put;
typedef struct api__get api__get;

typedef struct {
    char *access_key;
    char *secret_key;
    bool geo_only; /* the deployment key: cross-region endpoints only */
} api__cred;

struct api_server {
    uv_loop_t *loop;
    node_store *store;
    node_group *group;
    node_metrics *metrics;
    const node_config *config;
    node_egress *egress;           /* may be NULL: no topology */
    const node_topology *topology; /* may be NULL */
    int local_region;              /* this node's region in topology; -1 without one */
    node_placement *placement;     /* may be NULL */
    node_geo_fetch *fetch;         /* remote reads; NULL without peer regions */
    int64_t started_ms;
    uv_tcp_t listener;
    bool listening;
    bool draining;
    bool in_execute; /* llhttp_execute is running on the loop thread */
    bool want_pause; /* a callback asked the running parser to pause */
    uv_timer_t grace_timer;
    /*
     * Requests that are over (answered or abandoned) are freed here, in a check
     * handle after the loop's callbacks return, never in the middle of a chain
     * of calls that may still hold them (a failed write closing the connection
     * inside a handler, a job completion that aborts its own request).
     */
    uv_check_t reaper;
    api__req *dead;
    void (*shutdown_done)(void *ctx);
    void *shutdown_ctx;
    api__cred *creds;
    size_t cred_count;
    api__conn *conns; /* doubly linked list of open connections */
    size_t conn_count;
    size_t inflight;      /* requests between headers and response end */
    uint64_t request_seq; /* for request ids */
    node_histogram *latency[API_OP_COUNT];
#define API_STATUS_SLOTS 8
    int req_status[API_OP_COUNT][API_STATUS_SLOTS]; /* cached series of requests_total */
    node_counter *req_counter[API_OP_COUNT][API_STATUS_SLOTS];
    node_counter *bytes_in;
    node_counter *bytes_out;
    /* Store counters already added to their Prometheus counters (loop thread only). */
    uint64_t corruptions_published;
    uint64_t gc_deleted_published;
};

struct api__conn {
    api_server *server;
    uv_tcp_t tcp;
    uv_timer_t timer; /* idle / slow-client timeout */
    llhttp_t parser;
    llhttp_settings_t settings;
    api__conn *prev, *next;
    char *read_buf;    /* API_READ_BUFFER_BYTES */
    api__buf unparsed; /* wire bytes received while the parser was paused */
    size_t unparsed_off;
    bool reading;
    bool paused;
    bool closing;
    bool parse_error; /* the parser failed: answer and close */
    size_t writes_pending;
    api__req *req; /* the request being parsed/served, or NULL */
    /* header accumulation */
    api__buf field, value;
    bool last_was_value;
    size_t header_bytes;
};

typedef struct {
    char *name;
    char *value;
} api__owned_header;

struct api__req {
    api__conn *conn;     /* NULL once the connection is gone (aborted) */
    api__req *next_dead; /* on api_server.dead */
    api_server *server;
    bool aborted;
    int refs;   /* jobs in flight */
    int method; /* llhttp_method_t */
    api__buf url;
    char *raw_path, *raw_query;
    api__owned_header *headers;
    size_t header_count, header_cap;
    api__param *params;
    size_t param_count;
    char *bucket; /* decoded, NULL for "/" */
    char *key;    /* decoded, NULL when none */
    size_t key_len;
    int op;
    api__auth_result auth;
    bool has_content_length;
    uint64_t content_length;
    bool expect_continue;
    bool bodyless; /* no Content-Length body and not chunked: the message ends with its head */
    uint64_t start_ns;
    uint64_t bytes_in, bytes_out;
    int status;
    char request_id[40];
    int body_mode;
    api__buf body; /* API_BODY_BUFFER */
    bool message_complete;
    bool handling; /* the handler has been started */
    bool response_started;
    bool response_ended; /* every byte of the response is queued */
    bool close_after;
    api__put *put;
    api__get *get;
};

/* ---- connection / request plumbing (server.c) ---- */

const char *api__req_header(const api__req *r, const char *name); /* case-insensitive */
const char *api__req_param(const api__req *r, const char *name);
bool api__req_has_param(const api__req *r, const char *name);

/* Pauses parsing of the request's connection (until api__req_resume). */
void api__req_pause(api__req *r);
/* Resumes parsing: feeds unparsed bytes and restarts socket reads. */
void api__req_resume(api__req *r);

/* Runs work(arg) on the thread pool, then done(r, arg) on the loop thread. */
typedef void (*api__work_fn)(void *arg);
typedef void (*api__done_fn)(api__req *r, void *arg);
void api__job_submit(api__req *r, api__work_fn work, api__done_fn done, void *arg);

/*
 * Response writing. api__respond sends a whole response (status, extra
 * headers already formatted as "Name: value\r\n" lines, body) and finishes
 * the request. api__respond_error sends an S3 XML error.
 */
void api__respond(api__req *r, int status, const char *extra_headers, const char *content_type,
                  const char *body, size_t body_len);
void api__respond_error(api__req *r, const char *s3_code, const char *message);
/* Maps a store error to an S3 error response (NoSuchKey, InsufficientStorage, ...). */
void api__respond_store_error(api__req *r, int rc, const char *not_found_code);

/*
 * Linearizable reads: fn(r, status) runs on the loop thread once this node
 * has applied every change the region group committed before the call
 * (status 0), or with the group's error; possibly before this returns. fn is
 * not called for a request abandoned meanwhile.
 */
typedef void (*api__barrier_fn)(api__req *r, int status);
void api__read_barrier(api__req *r, api__barrier_fn fn);
/* For other group calls: api__hold takes a reference on r and returns the arg for a
 * node_group_done_fn, api__held_done, which calls fn(r, status) (unless r was abandoned) and
 * drops the reference. Call api__held_done yourself when the group call failed at once. */
void *api__hold(api__req *r, api__barrier_fn fn);
void api__held_done(void *arg, int status);

/* Streaming responses: headers first, then body pieces, then end. */
void api__respond_head(api__req *r, int status, const char *extra_headers, uint64_t content_length,
                       const char *content_type);
/* Formats a response head into out (not sent); marks the status like api__respond_head. */
void api__format_head(api__req *r, api__buf *out, int status, const char *extra_headers,
                      uint64_t content_length, const char *content_type);
/*
 * Writes `owned` (freed with free(), e.g. a head; may be NULL) followed by
 * `data` (borrowed: release(release_arg) is called once written or dropped)
 * in one write. Only `data` counts as body bytes.
 */
void api__respond_write_view(api__req *r, char *owned, size_t owned_len, const char *data,
                             size_t len, void (*release)(void *), void *release_arg,
                             void (*on_written)(api__req *r));
/* Writes len bytes (ownership of data passes to the writer, freed with free()). */
void api__respond_write(api__req *r, char *data, size_t len, void (*on_written)(api__req *r));
void api__respond_end(api__req *r);
/* Aborts a response whose headers were sent (the client sees a truncated body). */
void api__respond_abort(api__req *r, const char *why);

/* Appends the common response headers (request id, date, server). */
void api__common_headers(api__req *r, api__buf *b);

/* ---- handlers ---- */

/* Called after headers are parsed and authenticated; sets body mode / precheck. */
void api__s3_headers_done(api__req *r);
/* Called once the whole request body was received. */
void api__s3_handle(api__req *r);
/* Streaming body bytes (API_BODY_STREAM), already de-chunked by llhttp. */
int api__s3_body(api__req *r, const char *data, size_t len);

/* Admin and probes (admin.c). */
void api__admin_handle(api__req *r);
/* /_tern/buckets/NAME/policy: GET, PUT (JSON body), DELETE (api/policy.c). */
void api__policy_handle(api__req *r);
/* /_tern/geo/block, /apply, /received: what other regions ship here (api/geo.c). */
void api__geo_handle(api__req *r);
/* The topology index of the region with this id (node_sm_region_id of its name), or -1. */
int api__region_of_id(const api_server *s, uint32_t region_id);
/* A client access served here: fed to the placement engine and to egress accounting's
 * full-replication counterfactual (no-ops without a topology). */
void api__access(api__req *r, plc_op op, uint64_t bytes);
/* Residency: whether this node's region may store bucket b's data; if not, msg says why and
 * where to go instead (answered as 403 ResidencyViolation). */
bool api__residency_allows(const api_server *s, const node_bucket *b, char *msg, size_t msg_len);
#define API_RESIDENCY_MESSAGE_MAX 800

/* Object data paths (objects.c). */
int api__put_begin(api__req *r, bool is_part);
int api__put_body(api__req *r, const char *data, size_t len);
void api__put_finish(api__req *r);
void api__put_free(api__put *p);
void api__get_start(api__req *r, bool head);
void api__get_free(api__get *g);
void api__copy_object(api__req *r);
/*
 * RFC 7232 evaluation of If-Match, If-Unmodified-Since, If-None-Match and
 * If-Modified-Since (each name prefixed with `prefix`, e.g. "x-amz-copy-source-"):
 * 0 to go on, 304 or 412.
 */
int api__conditional_status(api__req *r, const char *etag, int64_t mtime_ms, const char *prefix);
/* Stored headers of a request (x-amz-meta-*, cache-control, ...) into a manifest. */
int api__collect_headers(api__req *r, node_manifest *m, const char **s3_code);
void api__delete_object(api__req *r);

/* Buckets and listings (buckets.c). */
void api__bucket_handle(api__req *r);

/* Multipart (multipart.c). */
void api__multipart_handle(api__req *r);
/* UploadPart completes here after its body is stored. */
void api__multipart_part_commit(api__req *r);

/* Helpers for handlers. */
void api__format_etag_header(api__buf *b, const char *etag);
void api__base64(const uint8_t *data, size_t len, char *out, size_t out_len);
int api__base64_decode(const char *in, uint8_t *out, size_t out_max, size_t *out_len);

#endif
