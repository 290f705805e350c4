/* Object data paths: streaming PUT/UploadPart into blocks, copy, delete (GET is in get.c). */
#include <assert.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "group.h"
#include "server_internal.h"
#include "sm.h"

/*
 * A streaming upload owns at most two block buffers: `fill` receives body
 * bytes; when it is full it is handed to a worker (hash + store) and the
 * other buffer becomes `fill`. If the worker is still busy with the previous
 * block when `fill` is full again, the remaining bytes of the current read go
 * to `pending` (at most one read buffer) and the parser is paused until the
 * worker returns. Hash contexts (MD5 for the ETag, SHA-256 of the payload) are
 * only touched by the one job in flight, so updates happen in body order.
 */
struct api__put {
    api__req *r;
    bool is_part;
    uint32_t part_number;
    char *upload_id;
    size_t block_size;
    uint64_t size_limit;
    char *fill;
    size_t fill_len, fill_cap;
    char *spare;
    size_t spare_cap;
    bool write_inflight;
    api__buf pending;
    size_t pending_off;
    bool paused_for_room;
    EVP_MD_CTX *md5;
    EVP_MD_CTX *sha;
    api__chunked *chunked;
    node_block_ref *blocks;
    size_t block_count, block_cap;
    uint64_t size;
    int error;
    bool finishing;
    bool committing;
    bool responded;
    /* Jobs waiting for the region group (freed here if the request is abandoned). */
    struct block_job *block_job;
    struct commit_job *commit_job;
};

typedef struct block_job {
    api__put *p;
    char *data;
    size_t len;
    size_t cap;
    node_block_id id;
    uint8_t *cmd; /* the encoded BLOCK_PUT, submitted from the loop */
    size_t cmd_len;
    int rc;
} block_job;

static void commit_job_free(struct commit_job *j);

static void put_pump(api__put *p);

void api__put_free(api__put *p)
{
    if (p == NULL) return;
    if (p->block_job) {
        free(p->block_job->cmd);
        free(p->block_job->data);
        free(p->block_job);
    }
    if (p->commit_job) commit_job_free(p->commit_job);
    free(p->blocks);
    free(p->fill);
    free(p->spare);
    free(p->upload_id);
    api__buf_free(&p->pending);
    if (p->md5) EVP_MD_CTX_free(p->md5);
    if (p->sha) EVP_MD_CTX_free(p->sha);
    if (p->chunked) api__chunked_free(p->chunked);
    free(p);
}

/* ---- precheck: the bucket (and upload) must exist before any body byte is stored ---- */

typedef struct {
    node_store *store;
    node_group *group;
    char *bucket, *key, *upload_id;
    uint64_t expected_bytes; /* UINT64_MAX when unknown (chunked) */
    uint64_t reserve_bytes;
    int rc;
    bool bucket_missing;
    const api_server *server;
    bool residency_refused;
    char residency_message[API_RESIDENCY_MESSAGE_MAX];
} precheck_job;

static void precheck_work(void *arg)
{
    precheck_job *j = arg;
    node_bucket b;
    j->rc = node_store_bucket_get(j->store, j->bucket, &b);
    /* Absent here may only mean this replica has not applied the creation yet: wait until
     * it has applied everything committed, then look again (rare, so no barrier up front). */
    if (j->rc == TERN_ENOTFOUND && (j->rc = node_group_read_barrier_wait(j->group)) == 0)
        j->rc = node_store_bucket_get(j->store, j->bucket, &b);
    if (j->rc == TERN_ENOTFOUND) {
        j->bucket_missing = true;
        return;
    }
    if (j->rc == 0 &&
        !api__residency_allows(j->server, &b, j->residency_message, sizeof j->residency_message)) {
        j->residency_refused = true;
        return;
    }
    uint64_t free_bytes;
    if (j->rc == 0 && j->expected_bytes != UINT64_MAX && j->reserve_bytes > 0 &&
        node_store_disk_free(j->store, &free_bytes) == 0 &&
        free_bytes < j->reserve_bytes + j->expected_bytes) {
        j->rc = TERN_ENOSPC; /* refuse before reading a body that cannot be kept */
        return;
    }
    if (j->rc == 0 && j->upload_id) {
        node_manifest *tmpl = NULL;
        j->rc = node_store_upload_get(j->store, j->bucket, j->key, j->upload_id, &tmpl);
        if (j->rc == TERN_ENOTFOUND && (j->rc = node_group_read_barrier_wait(j->group)) == 0)
            j->rc = node_store_upload_get(j->store, j->bucket, j->key, j->upload_id, &tmpl);
        node_manifest_free(tmpl);
    }
}

static void precheck_done(api__req *r, void *arg)
{
    precheck_job *j = arg;
    int rc = j->rc;
    bool bucket_missing = j->bucket_missing;
    if (j->residency_refused && !r->aborted) {
        r->close_after = true;
        api__respond_error(r, "ResidencyViolation", j->residency_message);
        free(j);
        return;
    }
    free(j);
    if (r->aborted) return;
    if (rc != 0) {
        r->close_after = true;
        api__respond_store_error(r, rc, bucket_missing ? "NoSuchBucket" : "NoSuchUpload");
        return;
    }
    api__req_resume(r);
}

static int parse_part_params(api__req *r, api__put *p)
{
    const char *num = api__req_param(r, "partNumber");
    const char *id = api__req_param(r, "uploadId");
    char *end = NULL;
    long n = num ? strtol(num, &end, 10) : 0;
    if (num == NULL || *end != '\0' || n < 1 || n > API_PARTS_MAX) {
        api__respond_error(r, "InvalidArgument",
                           "Part number must be an integer between 1 and 10000, inclusive.");
        return TERN_EINVAL;
    }
    if (id == NULL || id[0] == '\0' || strlen(id) > NODE_UPLOAD_ID_MAX) {
        api__respond_error(r, "NoSuchUpload", "The specified upload does not exist.");
        return TERN_EINVAL;
    }
    p->part_number = (uint32_t)n;
    p->upload_id = strdup(id);
    return p->upload_id ? 0 : TERN_ENOMEM;
}

/* Validates lengths and payload mode before the first body byte. */
static int put_check_headers(api__req *r, api__put *p, uint64_t *expected)
{
    const char *decoded = api__req_header(r, "x-amz-decoded-content-length");
    bool streaming = r->auth.payload_mode >= API_PAYLOAD_STREAMING_SIGNED;
    const char *te = api__req_header(r, "Transfer-Encoding");
    if (!r->has_content_length && te == NULL) {
        api__respond_error(r, "MissingContentLength",
                           "You must provide the Content-Length HTTP header.");
        return TERN_EINVAL;
    }
    *expected = UINT64_MAX;
    if (streaming) {
        char *end = NULL;
        if (decoded) *expected = strtoull(decoded, &end, 10);
        if (decoded == NULL || *end != '\0') {
            api__respond_error(r, "MissingContentLength",
                               "aws-chunked uploads must send x-amz-decoded-content-length.");
            return TERN_EINVAL;
        }
    } else if (r->has_content_length) {
        *expected = r->content_length;
    }
    if (*expected != UINT64_MAX && *expected > p->size_limit) {
        api__respond_error(r, "EntityTooLarge",
                           "Your proposed upload exceeds the maximum allowed object size.");
        return TERN_ETOOBIG;
    }
    return 0;
}

int api__put_begin(api__req *r, bool is_part)
{
    api__put *p = calloc(1, sizeof *p);
    if (p == NULL) return TERN_ENOMEM;
    r->put = p;
    p->r = r;
    p->is_part = is_part;
    p->block_size = r->server->config->block_size_bytes;
    p->size_limit = API_SINGLE_PUT_BYTES_MAX;
    if (is_part && parse_part_params(r, p) != 0) return TERN_EINVAL;
    uint64_t expected;
    if (put_check_headers(r, p, &expected) != 0) return TERN_EINVAL;
    /* Small objects get a small buffer: no 1 MiB allocation for a 4 KiB PUT. */
    p->fill_cap = expected < p->block_size ? (size_t)TERN_MAX(expected, 1) : p->block_size;
    p->fill = malloc(p->fill_cap);
    p->md5 = EVP_MD_CTX_new();
    if (p->fill == NULL || p->md5 == NULL || !EVP_DigestInit_ex(p->md5, EVP_md5(), NULL))
        return TERN_ENOMEM;
    if (r->auth.payload_mode == API_PAYLOAD_SIGNED) {
        p->sha = EVP_MD_CTX_new();
        if (p->sha == NULL || !EVP_DigestInit_ex(p->sha, EVP_sha256(), NULL)) return TERN_ENOMEM;
    }
    if (r->auth.payload_mode >= API_PAYLOAD_STREAMING_SIGNED) {
        bool signed_chunks = r->auth.payload_mode != API_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
        p->chunked = api__chunked_new(signed_chunks ? &r->auth : NULL, 16u << 20);
        if (p->chunked == NULL) return TERN_ENOMEM;
    }
    precheck_job *j = calloc(1, sizeof *j);
    if (j == NULL) return TERN_ENOMEM;
    j->store = r->server->store;
    j->group = r->server->group;
    j->bucket = r->bucket;
    j->key = r->key;
    j->upload_id = p->upload_id;
    j->expected_bytes = expected;
    j->reserve_bytes = r->server->config->disk_reserve_bytes;
    j->server = r->server;
    /* The common case (a known bucket, in memory; not a part) passes right here: statvfs is
     * a cheap syscall, and the pool round trip per PUT cost two context switches. */
    node_bucket b;
    uint64_t free_bytes;
    if (p->upload_id == NULL && node_store_bucket_get_cached(j->store, j->bucket, &b) == 0 &&
        node_bucket_policy_allows(&b.policy, r->server->config->region) &&
        (expected == UINT64_MAX || j->reserve_bytes == 0 ||
         (node_store_disk_free(j->store, &free_bytes) == 0 &&
          free_bytes >= j->reserve_bytes + expected))) {
        free(j);
        return 0;
    }
    api__req_pause(r);
    api__job_submit(r, precheck_work, precheck_done, j);
    return 0;
}

/* ---- block writes ---- */

static void block_work(void *arg)
{
    block_job *j = arg;
    api__put *p = j->p;
    EVP_DigestUpdate(p->md5, j->data, j->len);
    if (p->sha) EVP_DigestUpdate(p->sha, j->data, j->len);
    node_block_hash(j->data, j->len, &j->id);
    /* Every replica writes these bytes; this node's reserve is the one checked here. */
    j->rc = node_store_reserve_check(p->r->server->store, j->len);
    if (j->rc == 0) j->rc = node_sm_encode_block_put(&j->id, j->data, j->len, &j->cmd, &j->cmd_len);
}

static int blocks_append(api__put *p, const node_block_id *id, size_t len)
{
    if (p->block_count == p->block_cap) {
        size_t cap = p->block_cap ? p->block_cap * 2 : 8;
        node_block_ref *b = realloc(p->blocks, cap * sizeof *b);
        if (b == NULL) return TERN_ENOMEM;
        p->blocks = b;
        p->block_cap = cap;
    }
    p->blocks[p->block_count].id = *id;
    p->blocks[p->block_count].size_bytes = (uint32_t)len;
    p->block_count++;
    return 0;
}

/* The group committed (or refused) the block: the loop thread, the request held. */
static void block_committed(api__req *r, int status)
{
    api__put *p = r->put;
    block_job *j = p->block_job;
    p->block_job = NULL;
    free(j->cmd);
    j->cmd = NULL;
    j->rc = status;
    /* A committed block nothing refers to is collected later (BLOCKS_COLLECT). */
    if (j->rc == 0 && blocks_append(p, &j->id, j->len) != 0) j->rc = TERN_ENOMEM;
    if (j->rc != 0 && p->error == 0) p->error = j->rc;
    /* Recycle the buffer as the spare. */
    assert(p->spare == NULL);
    p->spare = j->data;
    p->spare_cap = j->cap;
    p->write_inflight = false;
    free(j);
    put_pump(p);
}

/*
 * Hashed and encoded on a worker; proposed from the loop without holding a
 * worker while the group commits (a thread per waiting upload would cap
 * concurrency at --io-threads).
 */
static void block_done(api__req *r, void *arg)
{
    block_job *j = arg;
    api__put *p = j->p;
    if (r->aborted) {
        free(j->cmd);
        free(j->data);
        free(j);
        return;
    }
    p->block_job = j;
    void *held = api__hold(r, block_committed);
    int rc = j->rc;
    if (rc == 0) rc = node_group_submit(r->server->group, j->cmd, j->cmd_len, api__held_done, held);
    if (rc != 0) api__held_done(held, rc);
}

static void submit_fill(api__put *p)
{
    assert(!p->write_inflight);
    block_job *j = calloc(1, sizeof *j);
    assert(j != NULL);
    j->p = p;
    j->data = p->fill;
    j->len = p->fill_len;
    j->cap = p->fill_cap;
    p->write_inflight = true;
    /* The spare (if any) becomes the new fill buffer; else allocate the second one. */
    if (p->spare) {
        p->fill = p->spare;
        p->fill_cap = p->spare_cap;
        p->spare = NULL;
    } else {
        p->fill_cap = p->block_size;
        p->fill = malloc(p->fill_cap);
        assert(p->fill != NULL);
    }
    p->fill_len = 0;
    api__job_submit(p->r, block_work, block_done, j);
}

/* Copies as much as fits; returns the bytes taken. Submits full blocks when a worker is free. */
static size_t put_take(api__put *p, const char *data, size_t len)
{
    size_t taken = 0;
    while (taken < len) {
        if (p->fill_len == p->fill_cap) {
            if (p->fill_cap < p->block_size) {
                /* The declared length was wrong (chunked bodies): grow to a full block. */
                char *bigger = realloc(p->fill, p->block_size);
                assert(bigger != NULL);
                p->fill = bigger;
                p->fill_cap = p->block_size;
                continue;
            }
            if (p->write_inflight) break;
            submit_fill(p);
        }
        size_t n = TERN_MIN(len - taken, p->fill_cap - p->fill_len);
        memcpy(p->fill + p->fill_len, data + taken, n);
        p->fill_len += n;
        taken += n;
    }
    return taken;
}

static void put_respond_error(api__put *p, int rc);

static int put_consume(void *ctx, const char *data, size_t len)
{
    api__put *p = ctx;
    p->size += len;
    if (p->size > p->size_limit) {
        p->responded = true;
        api__respond_error(p->r, "EntityTooLarge",
                           "Your proposed upload exceeds the maximum allowed object size.");
        return TERN_ETOOBIG;
    }
    size_t taken = p->pending.len > p->pending_off ? 0 : put_take(p, data, len);
    if (taken < len) {
        if (api__buf_append(&p->pending, data + taken, len - taken) != 0) return TERN_ENOMEM;
        if (!p->paused_for_room) {
            p->paused_for_room = true;
            api__req_pause(p->r);
        }
    }
    return 0;
}

int api__put_body(api__req *r, const char *data, size_t len)
{
    api__put *p = r->put;
    if (p == NULL || p->responded) return TERN_EINVAL;
    if (p->error) {
        put_respond_error(p, p->error);
        return p->error;
    }
    if (p->chunked == NULL) return put_consume(p, data, len);
    int rc = api__chunked_feed(p->chunked, data, len, put_consume, p);
    if (rc == 0 || p->responded) return rc;
    p->responded = true;
    if (rc == TERN_EAUTH)
        api__respond_error(r, "SignatureDoesNotMatch", api__chunked_error(p->chunked));
    else
        api__respond_error(r, "InvalidRequest", api__chunked_error(p->chunked));
    return rc;
}

static void put_commit(api__put *p);

static void put_pump(api__put *p)
{
    if (p->responded || p->committing) return;
    if (p->error) {
        put_respond_error(p, p->error);
        return;
    }
    if (p->pending.len > p->pending_off) {
        size_t n = put_take(p, p->pending.data + p->pending_off, p->pending.len - p->pending_off);
        p->pending_off += n;
        if (p->pending_off < p->pending.len) return; /* still waiting for the worker */
        api__buf_reset(&p->pending);
        p->pending_off = 0;
    }
    if (p->paused_for_room) {
        p->paused_for_room = false;
        if (!p->finishing) api__req_resume(p->r);
        return;
    }
    if (!p->finishing || p->write_inflight) return;
    /* The last block goes with the manifest unless the two would not fit one command. */
    size_t manifest_bytes_max = (p->block_count + 1) * 40 + 16384;
    if (p->fill_len > 0 && p->fill_len + manifest_bytes_max > NODE_GROUP_COMMAND_BYTES_MAX) {
        submit_fill(p);
        return;
    }
    put_commit(p);
}

void api__put_finish(api__req *r)
{
    api__put *p = r->put;
    assert(p != NULL);
    if (p->responded) return;
    p->finishing = true;
    if (p->chunked && api__chunked_finish(p->chunked) != 0) {
        p->responded = true;
        api__respond_error(r, "IncompleteBody", api__chunked_error(p->chunked));
        return;
    }
    put_pump(p);
}

static void put_respond_error(api__put *p, int rc)
{
    if (p->responded) return;
    p->responded = true;
    api__respond_store_error(p->r, rc, p->is_part ? "NoSuchUpload" : "NoSuchBucket");
}

/* ---- commit ---- */

/* Bodies up to this size are committed without a worker (see put_commit). */
#define INLINE_COMMIT_BYTES_MAX (64u << 10)

typedef struct commit_job {
    api__put *p;
    node_manifest m;
    char content_md5[64]; /* base64 from the request, or "" */
    /* The object's last block travels with the manifest (one log entry) when it fits. */
    char *inline_data;
    size_t inline_len;
    uint8_t *cmd; /* the encoded command, proposed from the loop */
    size_t cmd_len;
    int rc;
    const char *s3_code;
    bool bucket_missing;
} commit_job;

static const char *const kept_headers[] = {"cache-control", "content-disposition",
                                           "content-language", "expires"};

/* Builds the stored headers (x-amz-meta-*, and the standard ones S3 keeps). */
int api__collect_headers(api__req *r, node_manifest *m, const char **s3_code)
{
    size_t meta_bytes = 0;
    m->headers = calloc(r->header_count + 1, sizeof *m->headers);
    if (m->headers == NULL) return TERN_ENOMEM;
    for (size_t i = 0; i < r->header_count; i++) {
        const char *name = r->headers[i].name, *value = r->headers[i].value;
        bool keep = strncasecmp(name, "x-amz-meta-", 11) == 0;
        for (size_t k = 0; !keep && k < TERN_ARRAY_LEN(kept_headers); k++)
            keep = strcasecmp(name, kept_headers[k]) == 0;
        char *enc = NULL;
        if (!keep && strcasecmp(name, "content-encoding") == 0) {
            /* aws-chunked is a transfer detail, not the object's encoding. */
            enc = strdup(value);
            char *ac = enc ? strstr(enc, "aws-chunked") : NULL;
            if (ac) {
                memmove(ac, ac + 11, strlen(ac + 11) + 1);
                while (enc[0] == ',' || enc[0] == ' ')
                    memmove(enc, enc + 1, strlen(enc));
            }
            if (enc == NULL || enc[0] == '\0') {
                free(enc);
                continue;
            }
            keep = true;
        }
        if (!keep) continue;
        node_kv *kv = &m->headers[m->header_count++];
        kv->name = strdup(name);
        for (char *c = kv->name; c && *c; c++)
            if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
        kv->value = enc ? enc : strdup(value);
        if (kv->name == NULL || kv->value == NULL) return TERN_ENOMEM;
        if (strncmp(kv->name, "x-amz-meta-", 11) == 0)
            meta_bytes += strlen(kv->name) - 11 + strlen(kv->value);
    }
    if (meta_bytes > API_METADATA_BYTES_MAX) {
        *s3_code = "MetadataTooLarge";
        return TERN_ETOOBIG;
    }
    const char *ct = api__req_header(r, "Content-Type");
    m->content_type = strdup(ct ? ct : "binary/octet-stream");
    return m->content_type ? 0 : TERN_ENOMEM;
}

static void commit_work(void *arg)
{
    commit_job *j = arg;
    api__put *p = j->p;
    api__req *r = p->r;
    node_block_id inline_id;
    if (j->inline_data) {
        EVP_DigestUpdate(p->md5, j->inline_data, j->inline_len);
        if (p->sha) EVP_DigestUpdate(p->sha, j->inline_data, j->inline_len);
        node_block_hash(j->inline_data, j->inline_len, &inline_id);
        j->rc = node_store_reserve_check(r->server->store, j->inline_len);
        if (j->rc == 0) j->rc = blocks_append(p, &inline_id, j->inline_len);
        if (j->rc != 0) return;
    }
    uint8_t md5[16];
    unsigned int md5_len = 0;
    EVP_DigestFinal_ex(p->md5, md5, &md5_len);
    tern_hex(md5, 16, j->m.etag);
    if (p->sha) {
        uint8_t sha[32];
        char hex[65];
        unsigned int sha_len = 0;
        EVP_DigestFinal_ex(p->sha, sha, &sha_len);
        tern_hex(sha, 32, hex);
        if (strcmp(hex, r->auth.payload_sha256) != 0) {
            j->s3_code = "XAmzContentSHA256Mismatch";
            return;
        }
    }
    if (j->content_md5[0]) {
        uint8_t want[16];
        size_t want_len = 0;
        if (api__base64_decode(j->content_md5, want, sizeof want, &want_len) != 0 ||
            want_len != 16) {
            j->s3_code = "InvalidDigest";
            return;
        }
        if (memcmp(want, md5, 16) != 0) {
            j->s3_code = "BadDigest";
            return;
        }
    }
    j->m.size_bytes = p->size;
    j->m.block_count = p->block_count;
    j->m.blocks = p->blocks;
    j->m.last_modified_ms = tern_now_ms();
    if (p->is_part) {
        node_part part = {.part_number = p->part_number,
                          .size_bytes = p->size,
                          .last_modified_ms = j->m.last_modified_ms,
                          .block_count = p->block_count,
                          .blocks = p->blocks};
        memcpy(part.etag, j->m.etag, sizeof part.etag);
        j->rc = j->inline_data
                    ? node_sm_encode_part_put_with_block(r->bucket, r->key, p->upload_id, &part,
                                                         &inline_id, j->inline_data, j->inline_len,
                                                         &j->cmd, &j->cmd_len)
                    : node_sm_encode_part_put(r->bucket, r->key, p->upload_id, &part, &j->cmd,
                                              &j->cmd_len);
    } else {
        j->rc = j->inline_data
                    ? node_sm_encode_object_put_with_block(r->bucket, r->key, &j->m, &inline_id,
                                                           j->inline_data, j->inline_len, &j->cmd,
                                                           &j->cmd_len)
                    : node_sm_encode_object_put(r->bucket, r->key, &j->m, &j->cmd, &j->cmd_len);
    }
}

static void commit_job_free(commit_job *j)
{
    free(j->inline_data);
    free(j->cmd);
    j->m.blocks = NULL; /* owned by the put */
    j->m.block_count = 0;
    for (size_t i = 0; i < j->m.header_count; i++) {
        free(j->m.headers[i].name);
        free(j->m.headers[i].value);
    }
    free(j->m.headers);
    free(j->m.content_type);
    free(j);
}

static const char *digest_message(const char *code)
{
    if (strcmp(code, "BadDigest") == 0)
        return "The Content-MD5 you specified did not match what we received.";
    if (strcmp(code, "InvalidDigest") == 0) return "The Content-MD5 you specified is not valid.";
    return "The provided 'x-amz-content-sha256' header does not match what was computed.";
}

/* The group applied (or refused) the manifest: the loop thread, the request held. */
static void commit_committed(api__req *r, int status)
{
    api__put *p = r->put;
    commit_job *j = p->commit_job;
    p->commit_job = NULL;
    j->rc = status;
    p->responded = true;
    if (j->rc != 0) {
        api__respond_store_error(r, j->rc, p->is_part ? "NoSuchUpload" : "NoSuchBucket");
    } else {
        if (!p->is_part) api__access(r, PLC_PUT, j->m.size_bytes);
        api__buf h = {0};
        api__format_etag_header(&h, j->m.etag);
        api__respond(r, 200, h.data, NULL, NULL, 0);
        api__buf_free(&h);
    }
    commit_job_free(j);
}

static void commit_done(api__req *r, void *arg)
{
    commit_job *j = arg;
    api__put *p = j->p;
    if (r->aborted) {
        commit_job_free(j);
        return;
    }
    if (j->s3_code == NULL && j->rc == 0) {
        p->commit_job = j;
        void *held = api__hold(r, commit_committed);
        int rc = node_group_submit(r->server->group, j->cmd, j->cmd_len, api__held_done, held);
        if (rc != 0) api__held_done(held, rc);
        return;
    }
    p->responded = true;
    if (j->s3_code)
        api__respond_error(r, j->s3_code, digest_message(j->s3_code));
    else
        api__respond_store_error(r, j->rc, p->is_part ? "NoSuchUpload" : "NoSuchBucket");
    commit_job_free(j);
}

static void put_commit(api__put *p)
{
    api__req *r = p->r;
    p->committing = true;
    commit_job *j = calloc(1, sizeof *j);
    assert(j != NULL);
    j->p = p;
    const char *md5 = api__req_header(r, "Content-MD5");
    snprintf(j->content_md5, sizeof j->content_md5, "%s", md5 ? md5 : "");
    if (p->fill_len > 0) {
        j->inline_data = p->fill;
        j->inline_len = p->fill_len;
        p->fill = NULL;
        p->fill_len = p->fill_cap = 0;
    }
    const char *code = NULL;
    if (!p->is_part) {
        int rc = api__collect_headers(r, &j->m, &code);
        if (rc != 0) {
            p->responded = true;
            if (code)
                api__respond_error(r, code, "Your metadata headers exceed 2 KB.");
            else
                api__respond_store_error(r, rc, "NoSuchBucket");
            commit_job_free(j);
            return;
        }
    }
    /* A small single-block object is hashed and encoded right here: a trip through the
     * thread pool (two context switches) costs more than hashing a few KiB. */
    if (p->block_count == 0 && j->inline_len <= INLINE_COMMIT_BYTES_MAX) {
        commit_work(j);
        commit_done(r, j);
        return;
    }
    api__job_submit(r, commit_work, commit_done, j);
}

/* ======================= DELETE ======================= */

typedef struct {
    node_store *store;
    node_group *group;
    const char *bucket, *key;
    int rc;
} delete_job;

static void delete_work(void *arg)
{
    delete_job *j = arg;
    node_bucket b;
    j->rc = node_store_bucket_get(j->store, j->bucket, &b);
    if (j->rc == TERN_ENOTFOUND && (j->rc = node_group_read_barrier_wait(j->group)) == 0)
        j->rc = node_store_bucket_get(j->store, j->bucket, &b);
    if (j->rc != 0) return;
    j->rc = node_cmd_object_delete(j->group, j->bucket, j->key);
    if (j->rc == TERN_ENOTFOUND) j->rc = 0; /* S3 deletes are idempotent */
}

static void delete_done(api__req *r, void *arg)
{
    delete_job *j = arg;
    int rc = j->rc;
    free(j);
    if (r->aborted) return;
    if (rc != 0) {
        api__respond_store_error(r, rc, "NoSuchBucket");
    } else {
        api__access(r, PLC_DELETE, 0);
        api__respond(r, 204, NULL, NULL, NULL, 0);
    }
}

void api__delete_object(api__req *r)
{
    delete_job *j = calloc(1, sizeof *j);
    assert(j != NULL);
    j->store = r->server->store;
    j->group = r->server->group;
    j->bucket = r->bucket;
    j->key = r->key;
    api__job_submit(r, delete_work, delete_done, j);
}

/* ======================= COPY ======================= */

typedef struct {
    api__req *r;
    char *src_bucket, *src_key;
    bool replace_metadata;
    node_manifest *src;
    node_manifest dst;
    int rc;
    const char *s3_code;
    const char *message;
    char residency_message[API_RESIDENCY_MESSAGE_MAX];
} copy_job;

static void copy_work(void *arg)
{
    copy_job *j = arg;
    api__req *r = j->r;
    node_store *store = r->server->store;
    if ((j->rc = node_group_read_barrier_wait(r->server->group)) != 0) return;
    node_bucket dst_bucket;
    if (node_store_bucket_get(store, r->bucket, &dst_bucket) == 0 &&
        !api__residency_allows(r->server, &dst_bucket, j->residency_message,
                               sizeof j->residency_message)) {
        j->s3_code = "ResidencyViolation";
        j->message = j->residency_message;
        return;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        node_manifest_free(j->src);
        j->src = NULL;
        j->rc = node_store_object_get(store, j->src_bucket, j->src_key, &j->src);
        node_bucket b;
        if (j->rc == TERN_ENOTFOUND && node_store_bucket_get(store, j->src_bucket, &b) != 0) {
            j->s3_code = "NoSuchBucket";
            j->message = "The source bucket does not exist.";
        }
        if (j->rc != 0) return;
        int cond = api__conditional_status(r, j->src->etag, j->src->last_modified_ms,
                                           "x-amz-copy-source-");
        if (cond != 0) {
            j->s3_code = "PreconditionFailed";
            j->message = "At least one of the pre-conditions you specified did not hold.";
            return;
        }
        node_manifest m = j->dst;
        m.size_bytes = j->src->size_bytes;
        memcpy(m.etag, j->src->etag, sizeof m.etag);
        m.block_count = j->src->block_count;
        m.blocks = j->src->blocks;
        m.last_modified_ms = tern_now_ms();
        if (!j->replace_metadata) {
            m.content_type = j->src->content_type;
            m.header_count = j->src->header_count;
            m.headers = j->src->headers;
        }
        j->dst.last_modified_ms = m.last_modified_ms;
        memcpy(j->dst.etag, m.etag, sizeof m.etag);
        j->rc = node_cmd_object_put(r->server->group, r->bucket, r->key, &m);
        if (j->rc == TERN_ENOTFOUND) {
            j->s3_code = "NoSuchBucket";
            j->message = "The specified bucket does not exist.";
        }
        /* ECONFLICT: the source was replaced and its blocks collected meanwhile: retry. */
        if (j->rc != TERN_ECONFLICT) return;
    }
}

static void copy_job_free(copy_job *j)
{
    node_manifest_free(j->src);
    for (size_t i = 0; i < j->dst.header_count; i++) {
        free(j->dst.headers[i].name);
        free(j->dst.headers[i].value);
    }
    free(j->dst.headers);
    free(j->dst.content_type);
    free(j->src_bucket);
    free(j->src_key);
    free(j);
}

static void copy_done(api__req *r, void *arg)
{
    copy_job *j = arg;
    if (r->aborted) {
        copy_job_free(j);
        return;
    }
    if (j->s3_code) {
        api__respond_error(r, j->s3_code, j->message);
    } else if (j->rc != 0) {
        api__respond_store_error(r, j->rc, "NoSuchKey");
    } else {
        api__access(r, PLC_PUT, j->src->size_bytes);
        api__buf body = {0};
        char date[32];
        api__iso8601_format(j->dst.last_modified_ms, date);
        api__buf_printf(&body,
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CopyObjectResult "
                        "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LastModified>%s"
                        "</LastModified><ETag>&quot;%s&quot;</ETag></CopyObjectResult>",
                        date, j->dst.etag);
        api__respond(r, 200, NULL, "application/xml", body.data, body.len);
        api__buf_free(&body);
    }
    copy_job_free(j);
}

/* x-amz-copy-source: "[/]bucket/key[?versionId=...]", URL-encoded. */
static int parse_copy_source(const char *value, char **bucket, char **key)
{
    const char *s = value[0] == '/' ? value + 1 : value;
    const char *q = strchr(s, '?');
    size_t len = q ? (size_t)(q - s) : strlen(s);
    char *decoded;
    size_t dlen;
    if (api__uri_decode(s, len, &decoded, &dlen) != 0) return TERN_EPARSE;
    char *slash = strchr(decoded, '/');
    if (slash == NULL || slash[1] == '\0' || memchr(decoded, '\0', dlen)) {
        free(decoded);
        return TERN_EPARSE;
    }
    *slash = '\0';
    *bucket = strdup(decoded);
    *key = strdup(slash + 1);
    free(decoded);
    return (*bucket && *key) ? 0 : TERN_ENOMEM;
}

void api__copy_object(api__req *r)
{
    copy_job *j = calloc(1, sizeof *j);
    assert(j != NULL);
    j->r = r;
    const char *src = api__req_header(r, "x-amz-copy-source");
    if (parse_copy_source(src, &j->src_bucket, &j->src_key) != 0 ||
        !api__bucket_name_valid(j->src_bucket)) {
        copy_job_free(j);
        api__respond_error(r, "InvalidArgument",
                           "Copy Source must mention the source bucket and key: bucket/key.");
        return;
    }
    const char *directive = api__req_header(r, "x-amz-metadata-directive");
    j->replace_metadata = directive && strcasecmp(directive, "REPLACE") == 0;
    if (directive && !j->replace_metadata && strcasecmp(directive, "COPY") != 0) {
        copy_job_free(j);
        api__respond_error(r, "InvalidArgument", "Unknown metadata directive.");
        return;
    }
    if (!j->replace_metadata && strcmp(j->src_bucket, r->bucket) == 0 &&
        strcmp(j->src_key, r->key) == 0) {
        copy_job_free(j);
        api__respond_error(r, "InvalidRequest",
                           "This copy request is illegal because it is trying to copy an object "
                           "to itself without changing the object's metadata.");
        return;
    }
    if (j->replace_metadata) {
        const char *code = NULL;
        if (api__collect_headers(r, &j->dst, &code) != 0) {
            copy_job_free(j);
            api__respond_error(r, code ? code : "InternalError",
                               code ? "Your metadata headers exceed 2 KB." : "Out of memory.");
            return;
        }
    }
    api__job_submit(r, copy_work, copy_done, j);
}
