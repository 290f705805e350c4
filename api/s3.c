/* S3 request routing: URL splitting, authentication, operation selection and body mode. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server_internal.h"

/* Bucket names that collide with the node's own unauthenticated endpoints. */
static const char *const reserved_buckets[] = {"healthz", "readyz", "metrics"};

/* Subresources tern does not implement: answered with NotImplemented, never misrouted. */
static const char *const unsupported_subresources[] = {"acl",
                                                       "policy",
                                                       "cors",
                                                       "lifecycle",
                                                       "tagging",
                                                       "website",
                                                       "logging",
                                                       "notification",
                                                       "replication",
                                                       "encryption",
                                                       "object-lock",
                                                       "accelerate",
                                                       "requestPayment",
                                                       "ownershipControls",
                                                       "publicAccessBlock",
                                                       "intelligent-tiering",
                                                       "inventory",
                                                       "analytics",
                                                       "retention",
                                                       "legal-hold",
                                                       "torrent",
                                                       "restore",
                                                       "select",
                                                       "attributes",
                                                       "versions",
                                                       "policyStatus",
                                                       "metrics"};

static const char *lookup_secret(void *ctx, const char *access_key)
{
    api_server *s = ctx;
    for (size_t i = 0; i < s->cred_count; i++)
        if (strcmp(s->creds[i].access_key, access_key) == 0) return s->creds[i].secret_key;
    return NULL;
}

static bool geo_only_key(const api_server *s, const char *access_key)
{
    for (size_t i = 0; i < s->cred_count; i++)
        if (strcmp(s->creds[i].access_key, access_key) == 0) return s->creds[i].geo_only;
    return false;
}

/* What another region's nodes call: shipping, remote reads, journals. */
static bool geo_op(int op)
{
    return op == API_OP_GEO_BLOCK || op == API_OP_GEO_APPLY || op == API_OP_GEO_RECEIVED ||
           op == API_OP_GEO_BLOCK_GET || op == API_OP_GEO_HAVE || op == API_OP_GEO_MARK ||
           op == API_OP_GEO_BLOCKS || op == API_OP_GEO_STATUS || op == API_OP_GEO_JOURNAL;
}

/* Splits the request target into raw path and raw query; accepts absolute-form targets. */
static int split_url(api__req *r)
{
    const char *url = r->url.data ? r->url.data : "";
    if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0) {
        const char *p = strchr(strstr(url, "//") + 2, '/');
        url = p ? p : "/";
    }
    if (url[0] != '/') return TERN_EPARSE;
    const char *q = strchr(url, '?');
    size_t path_len = q ? (size_t)(q - url) : strlen(url);
    r->raw_path = strndup(url, path_len);
    r->raw_query = strdup(q ? q + 1 : "");
    if (r->raw_path == NULL || r->raw_query == NULL) return TERN_ENOMEM;
    return api__query_parse(r->raw_query, strlen(r->raw_query), &r->params, &r->param_count);
}

/* "/bucket/some/key" -> bucket, key (decoded). */
static int split_bucket_key(api__req *r)
{
    char *decoded;
    size_t len;
    int rc = api__uri_decode(r->raw_path + 1, strlen(r->raw_path + 1), &decoded, &len);
    if (rc != 0) return rc;
    if (memchr(decoded, '\0', len) != NULL) {
        free(decoded);
        return TERN_EPARSE;
    }
    char *slash = strchr(decoded, '/');
    if (slash) {
        *slash = '\0';
        size_t key_len = len - (size_t)(slash - decoded) - 1;
        if (key_len > 0) {
            r->key = strndup(slash + 1, key_len);
            r->key_len = key_len;
        }
    }
    if (decoded[0] != '\0') r->bucket = strdup(decoded);
    free(decoded);
    return 0;
}

static int probe_op(const api__req *r)
{
    if (r->method != HTTP_GET && r->method != HTTP_HEAD) return API_OP_UNKNOWN;
    if (strcmp(r->raw_path, "/healthz") == 0) return API_OP_HEALTH;
    if (strcmp(r->raw_path, "/readyz") == 0) return API_OP_READY;
    if (strcmp(r->raw_path, "/metrics") == 0) return API_OP_METRICS;
    return API_OP_UNKNOWN;
}

static bool has_unsupported_subresource(const api__req *r)
{
    for (size_t i = 0; i < TERN_ARRAY_LEN(unsupported_subresources); i++)
        if (api__req_has_param(r, unsupported_subresources[i])) return true;
    return false;
}

static int route_bucket(const api__req *r)
{
    switch (r->method) {
    case HTTP_PUT:
        return API_OP_CREATE_BUCKET;
    case HTTP_HEAD:
        return API_OP_HEAD_BUCKET;
    case HTTP_DELETE:
        return API_OP_DELETE_BUCKET;
    case HTTP_POST:
        return api__req_has_param(r, "delete") ? API_OP_DELETE_OBJECTS : API_OP_NOT_IMPLEMENTED;
    case HTTP_GET:
        if (api__req_has_param(r, "location")) return API_OP_GET_BUCKET_LOCATION;
        if (api__req_has_param(r, "uploads")) return API_OP_LIST_UPLOADS;
        if (api__req_has_param(r, "versioning")) return API_OP_NOT_IMPLEMENTED;
        {
            const char *lt = api__req_param(r, "list-type");
            if (lt && strcmp(lt, "2") == 0) return API_OP_LIST_OBJECTS_V2;
        }
        return API_OP_LIST_OBJECTS;
    default:
        return API_OP_NOT_IMPLEMENTED;
    }
}

static int route_object(const api__req *r)
{
    bool upload_id = api__req_has_param(r, "uploadId");
    switch (r->method) {
    case HTTP_PUT:
        if (upload_id || api__req_has_param(r, "partNumber")) {
            if (api__req_header(r, "x-amz-copy-source")) return API_OP_NOT_IMPLEMENTED;
            return API_OP_UPLOAD_PART;
        }
        if (api__req_header(r, "x-amz-copy-source")) return API_OP_COPY_OBJECT;
        return API_OP_PUT_OBJECT;
    case HTTP_GET:
        return upload_id ? API_OP_LIST_PARTS : API_OP_GET_OBJECT;
    case HTTP_HEAD:
        return API_OP_HEAD_OBJECT;
    case HTTP_DELETE:
        return upload_id ? API_OP_ABORT_UPLOAD : API_OP_DELETE_OBJECT;
    case HTTP_POST:
        if (api__req_has_param(r, "uploads")) return API_OP_CREATE_UPLOAD;
        if (upload_id) return API_OP_COMPLETE_UPLOAD;
        return API_OP_NOT_IMPLEMENTED;
    default:
        return API_OP_NOT_IMPLEMENTED;
    }
}

/* "buckets/NAME/policy" -> NAME's end (a pointer to "/policy"), else NULL. */
static const char *policy_path(const char *key)
{
    const char *name = key + strlen("buckets/");
    const char *slash = strchr(name, '/');
    if (slash == NULL || slash == name || strcmp(slash, "/policy") != 0) return NULL;
    return slash;
}

static int route(const api__req *r)
{
    if (r->bucket == NULL)
        return r->method == HTTP_GET ? API_OP_LIST_BUCKETS : API_OP_NOT_IMPLEMENTED;
    if (strcmp(r->bucket, "_tern") == 0) {
        if (r->method == HTTP_GET && r->key && strcmp(r->key, "status") == 0)
            return API_OP_ADMIN_STATUS;
        if (r->method == HTTP_GET && r->key && strcmp(r->key, "cluster") == 0)
            return API_OP_ADMIN_CLUSTER;
        if (r->method == HTTP_GET && r->key && strcmp(r->key, "egress") == 0)
            return API_OP_ADMIN_EGRESS;
        if (r->method == HTTP_GET && r->key && strcmp(r->key, "placement/explain") == 0)
            return API_OP_ADMIN_PLACEMENT_EXPLAIN;
        if (r->method == HTTP_GET && r->key && strcmp(r->key, "placement/stats") == 0)
            return API_OP_ADMIN_PLACEMENT_STATS;
        if (r->method == HTTP_POST && r->key && strcmp(r->key, "geo/block") == 0)
            return API_OP_GEO_BLOCK;
        if (r->method == HTTP_POST && r->key && strcmp(r->key, "geo/apply") == 0)
            return API_OP_GEO_APPLY;
        if (r->method == HTTP_GET && r->key && strcmp(r->key, "geo/received") == 0)
            return API_OP_GEO_RECEIVED;
        if ((r->method == HTTP_GET || r->method == HTTP_HEAD) && r->key &&
            strcmp(r->key, "geo/block") == 0)
            return API_OP_GEO_BLOCK_GET;
        if (r->method == HTTP_POST && r->key && strcmp(r->key, "geo/have") == 0)
            return API_OP_GEO_HAVE;
        if (r->method == HTTP_POST && r->key && strcmp(r->key, "geo/blocks") == 0)
            return API_OP_GEO_BLOCKS;
        if (r->method == HTTP_POST && r->key && strcmp(r->key, "geo/mark") == 0)
            return API_OP_GEO_MARK;
        if (r->method == HTTP_GET && r->key && strcmp(r->key, "geo/status") == 0)
            return API_OP_GEO_STATUS;
        if (r->method == HTTP_GET && r->key && strcmp(r->key, "placement/journal") == 0)
            return API_OP_GEO_JOURNAL;
        if (r->method == HTTP_POST && r->key && strncmp(r->key, "cluster/", 8) == 0)
            return API_OP_ADMIN_CLUSTER_CHANGE;
        if (r->key && strncmp(r->key, "buckets/", 8) == 0 && policy_path(r->key) != NULL) {
            if (r->method == HTTP_GET) return API_OP_ADMIN_POLICY_GET;
            if (r->method == HTTP_PUT) return API_OP_ADMIN_POLICY_PUT;
            if (r->method == HTTP_DELETE) return API_OP_ADMIN_POLICY_DELETE;
        }
        return API_OP_UNKNOWN;
    }
    if (has_unsupported_subresource(r)) return API_OP_NOT_IMPLEMENTED;
    return r->key ? route_object(r) : route_bucket(r);
}

/* SigV2 (query AWSAccessKeyId/Signature or "Authorization: AWS key:sig") is refused by name. */
static bool refuse_sigv2(api__req *r)
{
    const char *auth = api__req_header(r, "Authorization");
    bool v2 = (api__req_has_param(r, "AWSAccessKeyId") && api__req_has_param(r, "Signature")) ||
              (auth && strncmp(auth, "AWS ", 4) == 0);
    if (!v2) return false;
    api__respond_error(r, "InvalidRequest",
                       "The authorization mechanism you have provided is not supported (AWS "
                       "Signature Version 2). Please use AWS4-HMAC-SHA256; with boto3, "
                       "Config(signature_version='s3v4').");
    return true;
}

static bool authenticate(api__req *r)
{
    if (refuse_sigv2(r)) return false;
    api__header stack_headers[64];
    api__header *headers = stack_headers;
    if (r->header_count > TERN_ARRAY_LEN(stack_headers)) {
        headers = calloc(r->header_count, sizeof *headers);
        if (headers == NULL) {
            api__respond_error(r, "InternalError", "Out of memory.");
            return false;
        }
    }
    for (size_t i = 0; i < r->header_count; i++) {
        headers[i].name = r->headers[i].name;
        headers[i].value = r->headers[i].value;
    }
    api__sigv4_request sr = {
        .method = llhttp_method_name((llhttp_method_t)r->method),
        .raw_path = r->raw_path,
        .raw_query = r->raw_query,
        .header_count = r->header_count,
        .headers = headers,
    };
    int rc = api__sigv4_verify(&sr, tern_now_ms(), lookup_secret, r->server, &r->auth);
    if (headers != stack_headers) free(headers);
    if (rc != 0) {
        api__respond_error(r, r->auth.s3_code ? r->auth.s3_code : "AccessDenied",
                           r->auth.message[0] ? r->auth.message : "Access Denied");
        return false;
    }
    return true;
}

static bool validate_names(api__req *r)
{
    if (r->bucket == NULL || strcmp(r->bucket, "_tern") == 0) return true;
    if (!api__bucket_name_valid(r->bucket)) {
        api__respond_error(r, "InvalidBucketName", "The specified bucket is not valid.");
        return false;
    }
    if (r->op == API_OP_CREATE_BUCKET) {
        for (size_t i = 0; i < TERN_ARRAY_LEN(reserved_buckets); i++)
            if (strcmp(r->bucket, reserved_buckets[i]) == 0) {
                api__respond_error(r, "InvalidBucketName",
                                   "This bucket name is reserved for tern's own endpoints.");
                return false;
            }
    }
    if (r->key) {
        int rc = api__object_key_check(r->key, r->key_len);
        if (rc == TERN_ETOOBIG) {
            api__respond_error(r, "KeyTooLongError", "Your key is too long (over 1024 bytes).");
            return false;
        }
        if (rc != 0) {
            api__respond_error(r, "InvalidArgument", "The object key is not valid UTF-8.");
            return false;
        }
    }
    return true;
}

/*
 * After an early answer: a request with a body stops being parsed and its
 * connection closes (the unread body is garbage); a bodyless one completes
 * normally so the connection stays usable.
 */
static void refuse(api__req *r)
{
    if (r->bodyless) {
        r->body_mode = API_BODY_DISCARD;
        return;
    }
    r->close_after = !r->message_complete;
    api__req_pause(r);
}

void api__s3_headers_done(api__req *r)
{
    if (split_url(r) != 0) {
        api__respond_error(r, "InvalidURI", "Couldn't parse the specified URI.");
        refuse(r);
        return;
    }
    r->op = probe_op(r);
    if (r->op != API_OP_UNKNOWN) {
        r->body_mode = API_BODY_DISCARD;
        return;
    }
    if (split_bucket_key(r) != 0) {
        api__respond_error(r, "InvalidURI", "Couldn't parse the specified URI.");
        refuse(r);
        return;
    }
    if (!authenticate(r)) {
        refuse(r);
        return;
    }
    r->op = route(r);
    if (geo_only_key(r->server, r->auth.access_key) && !geo_op(r->op)) {
        api__respond_error(r, "AccessDenied",
                           "The deployment key may only call the cross-region /_tern/geo "
                           "endpoints.");
        refuse(r);
        return;
    }
    if (r->op == API_OP_UNKNOWN) {
        api__respond_error(r, "InvalidRequest", "Unknown admin endpoint.");
        refuse(r);
        return;
    }
    if (r->op == API_OP_NOT_IMPLEMENTED) {
        api__respond_error(r, "NotImplemented",
                           "A header or query you provided implies functionality that is not "
                           "implemented.");
        refuse(r);
        return;
    }
    if (!validate_names(r)) {
        refuse(r);
        return;
    }
    switch (r->op) {
    case API_OP_PUT_OBJECT:
    case API_OP_UPLOAD_PART:
        r->body_mode = API_BODY_STREAM;
        if (api__put_begin(r, r->op == API_OP_UPLOAD_PART) != 0) refuse(r);
        break;
    case API_OP_CREATE_BUCKET:
    case API_OP_COMPLETE_UPLOAD:
    case API_OP_DELETE_OBJECTS:
    case API_OP_ADMIN_POLICY_PUT:
    case API_OP_GEO_BLOCK:
    case API_OP_GEO_APPLY:
    case API_OP_GEO_HAVE:
    case API_OP_GEO_BLOCKS:
        r->body_mode = API_BODY_BUFFER;
        break;
    default:
        r->body_mode = API_BODY_DISCARD;
    }
}

int api__s3_body(api__req *r, const char *data, size_t len)
{
    return api__put_body(r, data, len);
}

/* For buffered bodies: checks a signed payload hash before anything is acted on. */
static bool buffered_payload_ok(api__req *r)
{
    if (r->auth.payload_mode != API_PAYLOAD_SIGNED) return true;
    char hex[65];
    api__sha256_hex(r->body.data ? r->body.data : "", r->body.len, hex);
    if (strcmp(hex, r->auth.payload_sha256) != 0) {
        api__respond_error(r, "XAmzContentSHA256Mismatch",
                           "The provided 'x-amz-content-sha256' header does not match what was "
                           "computed.");
        return false;
    }
    return true;
}

void api__s3_handle(api__req *r)
{
    r->handling = true;
    switch (r->op) {
    case API_OP_HEALTH:
    case API_OP_READY:
    case API_OP_METRICS:
    case API_OP_ADMIN_STATUS:
    case API_OP_ADMIN_CLUSTER:
    case API_OP_ADMIN_CLUSTER_CHANGE:
    case API_OP_ADMIN_EGRESS:
    case API_OP_ADMIN_PLACEMENT_EXPLAIN:
    case API_OP_ADMIN_PLACEMENT_STATS:
        api__admin_handle(r);
        return;
    case API_OP_ADMIN_POLICY_GET:
    case API_OP_ADMIN_POLICY_PUT:
    case API_OP_ADMIN_POLICY_DELETE:
        if (!buffered_payload_ok(r)) return;
        api__policy_handle(r);
        return;
    case API_OP_GEO_BLOCK:
    case API_OP_GEO_APPLY:
    case API_OP_GEO_RECEIVED:
    case API_OP_GEO_BLOCK_GET:
    case API_OP_GEO_HAVE:
    case API_OP_GEO_BLOCKS:
    case API_OP_GEO_MARK:
    case API_OP_GEO_STATUS:
    case API_OP_GEO_JOURNAL:
        if (!buffered_payload_ok(r)) return;
        api__geo_handle(r);
        return;
    case API_OP_PUT_OBJECT:
    case API_OP_UPLOAD_PART:
        api__put_finish(r);
        return;
    case API_OP_GET_OBJECT:
        api__get_start(r, false);
        return;
    case API_OP_HEAD_OBJECT:
        api__get_start(r, true);
        return;
    case API_OP_COPY_OBJECT:
        api__copy_object(r);
        return;
    case API_OP_DELETE_OBJECT:
        api__delete_object(r);
        return;
    case API_OP_CREATE_UPLOAD:
    case API_OP_COMPLETE_UPLOAD:
    case API_OP_ABORT_UPLOAD:
    case API_OP_LIST_PARTS:
    case API_OP_LIST_UPLOADS:
        if (!buffered_payload_ok(r)) return;
        api__multipart_handle(r);
        return;
    default:
        if (!buffered_payload_ok(r)) return;
        api__bucket_handle(r);
        return;
    }
}

void api__format_etag_header(api__buf *b, const char *etag)
{
    api__buf_printf(b, "ETag: \"%s\"\r\n", etag);
}

void api__base64(const uint8_t *data, size_t len, char *out, size_t out_len)
{
    assert(out_len >= 4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
}

int api__base64_decode(const char *in, uint8_t *out, size_t out_max, size_t *out_len)
{
    size_t in_len = strlen(in);
    if (in_len % 4 != 0 || in_len / 4 * 3 > out_max + 2) return TERN_EPARSE;
    uint8_t tmp[4096];
    if (in_len / 4 * 3 > sizeof tmp) return TERN_EPARSE;
    int n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)in_len);
    if (n < 0) return TERN_EPARSE;
    size_t pad = 0;
    if (in_len >= 1 && in[in_len - 1] == '=') pad++;
    if (in_len >= 2 && in[in_len - 2] == '=') pad++;
    size_t real = (size_t)n - pad;
    if (real > out_max) return TERN_EPARSE;
    memcpy(out, tmp, real);
    *out_len = real;
    return 0;
}
