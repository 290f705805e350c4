/* Bucket operations and listings: ListBuckets, Create/Head/Delete, location, ListObjects v1/v2,
 * DeleteObjects. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

#define XML_HEADER "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
#define S3_XMLNS   "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""

/* A generic store job: the work function fills status, s3 code and an XML body. */
typedef struct bucket_job bucket_job;
struct bucket_job {
    api__req *r;
    node_store *store;
    void (*work)(bucket_job *j);
    int rc;
    const char *not_found_code;
    const char *s3_code;
    const char *message;
    int status;
    api__buf body;
    /* request-specific inputs */
    char *region;
    char **keys;
    size_t key_count;
    bool quiet;
};

static void job_work(void *arg)
{
    bucket_job *j = arg;
    j->work(j);
}

static void job_free(bucket_job *j)
{
    api__buf_free(&j->body);
    free(j->region);
    api__strv_free(j->keys, j->key_count);
    free(j);
}

static void job_done(api__req *r, void *arg)
{
    bucket_job *j = arg;
    if (!r->aborted) {
        if (j->s3_code) {
            api__respond_error(r, j->s3_code, j->message);
        } else if (j->rc != 0) {
            api__respond_store_error(r, j->rc,
                                     j->not_found_code ? j->not_found_code : "NoSuchBucket");
        } else {
            api__respond(r, j->status ? j->status : 200, NULL,
                         j->body.len ? "application/xml" : NULL, j->body.data, j->body.len);
        }
    }
    job_free(j);
}

static bucket_job *job_new(api__req *r, void (*work)(bucket_job *j))
{
    bucket_job *j = calloc(1, sizeof *j);
    assert(j != NULL);
    j->r = r;
    j->store = r->server->store;
    j->work = work;
    return j;
}

/* ---- ListBuckets ---- */

static void list_buckets_work(bucket_job *j)
{
    if ((j->rc = node_group_read_barrier_wait(j->r->server->group)) != 0) return;
    node_bucket *buckets = NULL;
    size_t count = 0;
    j->rc = node_store_bucket_list(j->store, &buckets, &count);
    if (j->rc != 0) return;
    api__buf *b = &j->body;
    api__buf_printf(b, XML_HEADER "<ListAllMyBucketsResult " S3_XMLNS "><Owner><ID>tern</ID>"
                                  "<DisplayName>tern</DisplayName></Owner><Buckets>");
    for (size_t i = 0; i < count; i++) {
        char date[32];
        api__iso8601_format(buckets[i].created_ms, date);
        api__buf_printf(b, "<Bucket><Name>%s</Name><CreationDate>%s</CreationDate></Bucket>",
                        buckets[i].name, date);
    }
    api__buf_append_str(b, "</Buckets></ListAllMyBucketsResult>");
    free(buckets);
}

/* ---- Create / Head / Delete / Location ---- */

/* The topology's policy for a new bucket (its own entry, else "*"), as a bucket policy; false
 * when it is the built-in default (nothing to set). */
static bool topology_policy(const node_topology *t, const char *bucket, node_bucket_policy *out)
{
    size_t i = node_topology_bucket_policy(t, bucket);
    const plc_bucket_policy *p = &t->policies[i];
    uint32_t rto = t->rto_seconds ? t->rto_seconds[i] : 0;
    if (p->min_regions <= 1 && p->allowed == 0 && p->pinned == 0 && p->rpo_seconds == 0 && rto == 0)
        return false;
    node_bucket_policy_default(out);
    out->min_regions = p->min_regions ? p->min_regions : 1;
    out->rpo_seconds = p->rpo_seconds;
    out->rto_seconds = rto;
    for (uint32_t r = 0; r < t->prices.region_count && r < NODE_POLICY_REGIONS_MAX; r++) {
        if (p->allowed & (1u << r))
            snprintf(out->allowed[out->allowed_count++], sizeof out->allowed[0], "%s",
                     t->prices.names[r]);
        if (p->pinned & (1u << r))
            snprintf(out->pinned[out->pinned_count++], sizeof out->pinned[0], "%s",
                     t->prices.names[r]);
    }
    return true;
}

static void create_bucket_work(bucket_job *j)
{
    api__req *r = j->r;
    j->rc = node_cmd_bucket_create(r->server->group, r->bucket, r->server->config->region,
                                   tern_now_ms());
    /* A new bucket starts with the deployment's default policy from the topology, set as its
     * own so every region enforces the same one (and a later topology edit does not move it). */
    node_bucket_policy p;
    if (j->rc == 0 && r->server->topology && topology_policy(r->server->topology, r->bucket, &p)) {
        int rc = node_cmd_bucket_policy_set(r->server->group, r->bucket, &p);
        if (rc != 0)
            node_log(NODE_LOG_WARN, "s3", "bucket %s: setting the topology's policy failed: %s",
                     r->bucket, tern_strerror(rc));
    }
    if (j->rc == TERN_EEXIST) {
        j->s3_code = "BucketAlreadyOwnedByYou";
        j->message = "Your previous request to create the named bucket succeeded and you "
                     "already own it.";
    }
}

static void head_bucket_work(bucket_job *j)
{
    if ((j->rc = node_group_read_barrier_wait(j->r->server->group)) != 0) return;
    node_bucket b;
    j->rc = node_store_bucket_get(j->store, j->r->bucket, &b);
}

static void delete_bucket_work(bucket_job *j)
{
    j->rc = node_cmd_bucket_delete(j->r->server->group, j->r->bucket);
    if (j->rc == TERN_ENOTEMPTY) {
        j->s3_code = "BucketNotEmpty";
        j->message = "The bucket you tried to delete is not empty.";
    }
    j->status = 204;
}

static void location_work(bucket_job *j)
{
    if ((j->rc = node_group_read_barrier_wait(j->r->server->group)) != 0) return;
    node_bucket b;
    j->rc = node_store_bucket_get(j->store, j->r->bucket, &b);
    if (j->rc != 0) return;
    api__buf_printf(&j->body, XML_HEADER "<LocationConstraint " S3_XMLNS ">");
    api__xml_escape(&j->body, b.region, strlen(b.region));
    api__buf_append_str(&j->body, "</LocationConstraint>");
}

/* ---- listings ---- */

/* The smallest string greater than every string starting with prefix ("" if none). */
static char *prefix_successor(const char *prefix)
{
    size_t n = strlen(prefix);
    char *s = strdup(prefix);
    if (s == NULL) return NULL;
    while (n > 0) {
        unsigned char c = (unsigned char)s[n - 1];
        if (c < 0xff) {
            s[n - 1] = (char)(c + 1);
            s[n] = '\0';
            return s;
        }
        n--;
    }
    s[0] = '\0';
    return s; /* all 0xff: nothing sorts after; callers treat "" as the end */
}

typedef struct {
    bool v2;
    const char *prefix, *delimiter;
    bool url_encode;
    size_t max_keys;
    char *start; /* first key to consider (inclusive), from marker/token/start-after */
    bool start_exclusive;
    bool skip_prefix_of_start; /* the token was a common prefix: skip everything under it */
} list_args;

static void xml_key(api__buf *b, const char *tag, const char *key, bool url_encode)
{
    api__buf_printf(b, "<%s>", tag);
    if (url_encode) {
        api__buf enc = {0};
        api__uri_encode(&enc, key, strlen(key), false);
        api__xml_escape(b, enc.data ? enc.data : "", enc.len);
        api__buf_free(&enc);
    } else {
        api__xml_escape(b, key, strlen(key));
    }
    api__buf_printf(b, "</%s>", tag);
}

/* Continuation tokens are base64 of 'K'+key (a key) or 'P'+prefix (a common prefix). */
static void token_encode(char kind, const char *value, char *out, size_t out_len)
{
    size_t n = strlen(value);
    char *raw = malloc(n + 1);
    assert(raw != NULL);
    raw[0] = kind;
    memcpy(raw + 1, value, n);
    api__base64((const uint8_t *)raw, n + 1, out, out_len);
    free(raw);
}

static int token_decode(const char *token, char *kind, char **value)
{
    uint8_t raw[2048];
    size_t len = 0;
    if (api__base64_decode(token, raw, sizeof raw - 1, &len) != 0 || len < 1) return TERN_EPARSE;
    if (raw[0] != 'K' && raw[0] != 'P') return TERN_EPARSE;
    *kind = (char)raw[0];
    *value = strndup((const char *)raw + 1, len - 1);
    return *value ? 0 : TERN_ENOMEM;
}

static void list_write_header(api__buf *b, const api__req *r, const list_args *a)
{
    api__buf_printf(b, XML_HEADER "<ListBucketResult " S3_XMLNS "><Name>%s</Name>", r->bucket);
    xml_key(b, "Prefix", a->prefix, a->url_encode);
    if (a->delimiter[0]) xml_key(b, "Delimiter", a->delimiter, a->url_encode);
    api__buf_printf(b, "<MaxKeys>%zu</MaxKeys>", a->max_keys);
    if (a->url_encode) api__buf_append_str(b, "<EncodingType>url</EncodingType>");
    if (a->v2) {
        const char *token = api__req_param(r, "continuation-token");
        const char *sa = api__req_param(r, "start-after");
        if (token) xml_key(b, "ContinuationToken", token, false);
        if (sa) xml_key(b, "StartAfter", sa, a->url_encode);
    } else {
        const char *marker = api__req_param(r, "marker");
        xml_key(b, "Marker", marker ? marker : "", a->url_encode);
    }
}

static void list_objects_iterate(bucket_job *j, const list_args *a)
{
    api__req *r = j->r;
    api__buf contents = {0}, prefixes = {0};
    size_t count = 0;
    bool truncated = false;
    char *last = NULL;
    char last_kind = 'K';
    const char *seek = a->start && strcmp(a->start, a->prefix) > 0 ? a->start : a->prefix;
    char *skip_to = a->skip_prefix_of_start ? prefix_successor(a->start) : NULL;
    if (skip_to) seek = skip_to;
    node_object_iter *it = NULL;
    j->rc = node_store_object_iter_open(j->store, r->bucket, seek, &it);
    if (j->rc != 0) goto out;
    size_t plen = strlen(a->prefix), dlen = strlen(a->delimiter);
    node_object_entry e;
    int rc;
    while ((rc = node_store_object_iter_next(it, &e)) == 1) {
        if (strncmp(e.key, a->prefix, plen) != 0) break;
        if (a->start_exclusive && a->start && strcmp(e.key, a->start) <= 0) continue;
        const char *d = dlen ? strstr(e.key + plen, a->delimiter) : NULL;
        if (count == a->max_keys) {
            truncated = true;
            break;
        }
        if (d) {
            char *cp = strndup(e.key, (size_t)(d - e.key) + dlen);
            api__buf_append_str(&prefixes, "<CommonPrefixes>");
            xml_key(&prefixes, "Prefix", cp, a->url_encode);
            api__buf_append_str(&prefixes, "</CommonPrefixes>");
            free(last);
            last = cp;
            last_kind = 'P';
            count++;
            char *next = prefix_successor(cp);
            if (next == NULL || next[0] == '\0') {
                free(next);
                break;
            }
            node_store_object_iter_seek(it, next);
            free(next);
            continue;
        }
        char date[32];
        api__iso8601_format(e.last_modified_ms, date);
        api__buf_append_str(&contents, "<Contents>");
        xml_key(&contents, "Key", e.key, a->url_encode);
        api__buf_printf(&contents,
                        "<LastModified>%s</LastModified><ETag>&quot;%s&quot;</ETag><Size>%llu"
                        "</Size><Owner><ID>tern</ID><DisplayName>tern</DisplayName></Owner>"
                        "<StorageClass>STANDARD</StorageClass></Contents>",
                        date, e.etag, (unsigned long long)e.size_bytes);
        free(last);
        last = strdup(e.key);
        last_kind = 'K';
        count++;
    }
    if (rc < 0) j->rc = rc;
    node_store_object_iter_close(it);
    if (j->rc != 0) goto out;
    list_write_header(&j->body, r, a);
    if (a->v2) api__buf_printf(&j->body, "<KeyCount>%zu</KeyCount>", count);
    api__buf_printf(&j->body, "<IsTruncated>%s</IsTruncated>", truncated ? "true" : "false");
    if (truncated && last) {
        if (a->v2) {
            char token[2900];
            token_encode(last_kind, last, token, sizeof token);
            xml_key(&j->body, "NextContinuationToken", token, false);
        } else if (a->delimiter[0]) {
            xml_key(&j->body, "NextMarker", last, a->url_encode);
        }
    }
    if (contents.len) api__buf_append(&j->body, contents.data, contents.len);
    if (prefixes.len) api__buf_append(&j->body, prefixes.data, prefixes.len);
    api__buf_append_str(&j->body, "</ListBucketResult>");
out:
    free(skip_to);
    free(last);
    api__buf_free(&contents);
    api__buf_free(&prefixes);
}

static void list_work(bucket_job *j)
{
    if ((j->rc = node_group_read_barrier_wait(j->r->server->group)) != 0) return;
    api__req *r = j->r;
    node_bucket b;
    j->rc = node_store_bucket_get(j->store, r->bucket, &b);
    if (j->rc != 0) return;
    list_args a = {.v2 = r->op == API_OP_LIST_OBJECTS_V2, .max_keys = API_LIST_KEYS_MAX};
    a.prefix = api__req_param(r, "prefix");
    a.delimiter = api__req_param(r, "delimiter");
    if (a.prefix == NULL) a.prefix = "";
    if (a.delimiter == NULL) a.delimiter = "";
    const char *enc = api__req_param(r, "encoding-type");
    a.url_encode = enc && strcmp(enc, "url") == 0;
    const char *mk = api__req_param(r, "max-keys");
    if (mk) {
        char *end;
        long n = strtol(mk, &end, 10);
        if (*end != '\0' || n < 0 || mk[0] == '\0') {
            j->s3_code = "InvalidArgument";
            j->message = "Provided max-keys not an integer or within integer range";
            return;
        }
        if ((size_t)n < a.max_keys) a.max_keys = (size_t)n;
    }
    char kind = 'K';
    if (a.v2 && api__req_param(r, "continuation-token")) {
        if (token_decode(api__req_param(r, "continuation-token"), &kind, &a.start) != 0) {
            j->s3_code = "InvalidArgument";
            j->message = "The continuation token provided is incorrect";
            return;
        }
        a.skip_prefix_of_start = kind == 'P';
    } else {
        const char *after = api__req_param(r, a.v2 ? "start-after" : "marker");
        if (after && after[0]) a.start = strdup(after);
        /* A v1 marker that is a common prefix also skips what it rolled up. */
        if (!a.v2 && a.start && a.delimiter[0] && strlen(a.start) >= strlen(a.delimiter) &&
            strcmp(a.start + strlen(a.start) - strlen(a.delimiter), a.delimiter) == 0 &&
            strncmp(a.start, a.prefix, strlen(a.prefix)) == 0 && strlen(a.start) > strlen(a.prefix))
            a.skip_prefix_of_start = true;
    }
    a.start_exclusive = true;
    list_objects_iterate(j, &a);
    free(a.start);
}

/* ---- DeleteObjects ---- */

static void delete_objects_work(bucket_job *j)
{
    api__req *r = j->r;
    node_bucket b;
    j->rc = node_store_bucket_get(j->store, r->bucket, &b);
    if (j->rc != 0) return;
    api__buf *out = &j->body;
    api__buf_printf(out, XML_HEADER "<DeleteResult " S3_XMLNS ">");
    for (size_t i = 0; i < j->key_count; i++) {
        const char *key = j->keys[i];
        int rc = api__object_key_check(key, strlen(key));
        if (rc == 0) {
            rc = node_cmd_object_delete(r->server->group, r->bucket, key);
            if (rc == TERN_ENOTFOUND) rc = 0;
        }
        if (rc == 0) {
            if (!j->quiet) {
                api__buf_append_str(out, "<Deleted>");
                xml_key(out, "Key", key, false);
                api__buf_append_str(out, "</Deleted>");
            }
            continue;
        }
        api__buf_append_str(out, "<Error>");
        xml_key(out, "Key", key, false);
        const char *code = rc == TERN_ETOOBIG  ? "KeyTooLongError"
                           : rc == TERN_EINVAL ? "InvalidArgument"
                                               : "InternalError";
        api__buf_printf(out, "<Code>%s</Code><Message>", code);
        const char *msg = tern_strerror(rc);
        api__xml_escape(out, msg, strlen(msg));
        api__buf_append_str(out, "</Message></Error>");
    }
    api__buf_append_str(out, "</DeleteResult>");
}

void api__bucket_handle(api__req *r)
{
    bucket_job *j = NULL;
    char errmsg[256] = "";
    switch (r->op) {
    case API_OP_LIST_BUCKETS:
        j = job_new(r, list_buckets_work);
        break;
    case API_OP_CREATE_BUCKET:
        j = job_new(r, create_bucket_work);
        if (r->body.len > 0 && api__xml_parse_create_bucket(r->body.data, r->body.len, &j->region,
                                                            errmsg, sizeof errmsg) != 0) {
            job_free(j);
            api__respond_error(r, "MalformedXML", errmsg);
            return;
        }
        break;
    case API_OP_HEAD_BUCKET:
        j = job_new(r, head_bucket_work);
        break;
    case API_OP_DELETE_BUCKET:
        j = job_new(r, delete_bucket_work);
        break;
    case API_OP_GET_BUCKET_LOCATION:
        j = job_new(r, location_work);
        break;
    case API_OP_LIST_OBJECTS:
    case API_OP_LIST_OBJECTS_V2:
        j = job_new(r, list_work);
        break;
    case API_OP_DELETE_OBJECTS:
        j = job_new(r, delete_objects_work);
        if (api__xml_parse_delete(r->body.data ? r->body.data : "", r->body.len, &j->keys,
                                  &j->key_count, &j->quiet, errmsg, sizeof errmsg) != 0) {
            job_free(j);
            api__respond_error(r, "MalformedXML",
                               errmsg[0] ? errmsg : "The XML you provided was not well-formed.");
            return;
        }
        break;
    default:
        /* The router sends only the operations above here. */
        assert(!"bucket handler reached with an operation it does not serve");
        return;
    }
    api__job_submit(r, job_work, job_done, j);
}
