/* Incremental aws-chunked body decoder with SigV4 chunk and trailer signature verification. */
#include "api_internal.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

/*
 * Design note. The decoder is a byte-driven state machine, so a body may be
 * fed in pieces split anywhere:
 *
 *   SIZE_LINE --CRLF--> DATA --(size bytes)--> DATA_CR -> DATA_LF -> SIZE_LINE
 *       |  (size 0)
 *       v
 *   TRAILER_LINE --(empty line)--> DONE            any error --> FAILED (sticky)
 *
 * Header and trailer lines are collected in a bounded buffer
 * (API_CHUNK_LINE_BYTES_MAX) before being parsed; data bytes go straight to
 * the callback and, in the signed modes, into a running SHA-256. A chunk's
 * signature is checked once its last data byte has arrived, chaining from
 * the previous signature (the seed signature of the request for the first
 * chunk). The final zero-size chunk is signed like any other. In the signed
 * trailer mode the trailer lines are followed by x-amz-trailer-signature,
 * computed over "name:value\n" for each trailer, chained from the final
 * chunk's signature.
 */

#define API_CHUNK_LINE_BYTES_MAX    4096
#define API_CHUNK_TRAILERS_MAX      8
#define API_CHUNK_BYTES_MAX_DEFAULT (16u << 20)
#define API_EMPTY_SHA256            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

enum {
    ST_SIZE_LINE,
    ST_DATA,
    ST_DATA_CR,
    ST_DATA_LF,
    ST_TRAILER_LINE,
    ST_DONE,
    ST_FAILED,
};

typedef struct {
    char name[64];
    char value[256];
} chunk_trailer;

struct api__chunked {
    int state;
    int failed_rc;
    bool verify;          /* chunk signatures are checked */
    bool trailers_signed; /* x-amz-trailer-signature is required */
    bool trailers_allowed;
    size_t chunk_bytes_max;
    uint8_t signing_key[32];
    char prev_signature[65];
    char amz_date[17];
    char scope[160];
    char chunk_signature[65]; /* declared signature of the chunk being received */
    uint64_t remaining;       /* data bytes left in the current chunk */
    bool final_chunk;
    EVP_MD_CTX *sha;
    char line[API_CHUNK_LINE_BYTES_MAX];
    size_t line_len;
    chunk_trailer trailers[API_CHUNK_TRAILERS_MAX];
    size_t trailer_count;
    api__buf trailer_canonical; /* "name:value\n"... for the trailer signature */
    bool trailer_signature_seen;
    uint64_t decoded_bytes;
    char error[160];
};

static int chunk_fail(api__chunked *d, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int chunk_fail(api__chunked *d, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->error, sizeof(d->error), fmt, ap);
    va_end(ap);
    d->state = ST_FAILED;
    d->failed_rc = rc;
    return rc;
}

api__chunked *api__chunked_new(const api__auth_result *auth, size_t chunk_bytes_max)
{
    api__chunked *d = calloc(1, sizeof(*d));
    if (d == NULL) return NULL;
    int mode = auth != NULL ? auth->payload_mode : API_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    d->verify =
        mode == API_PAYLOAD_STREAMING_SIGNED || mode == API_PAYLOAD_STREAMING_SIGNED_TRAILER;
    d->trailers_signed = mode == API_PAYLOAD_STREAMING_SIGNED_TRAILER;
    d->trailers_allowed = mode != API_PAYLOAD_STREAMING_SIGNED;
    d->chunk_bytes_max = chunk_bytes_max > 0 ? chunk_bytes_max : API_CHUNK_BYTES_MAX_DEFAULT;
    if (d->verify) {
        memcpy(d->signing_key, auth->signing_key, sizeof(d->signing_key));
        memcpy(d->prev_signature, auth->seed_signature, sizeof(d->prev_signature));
        memcpy(d->amz_date, auth->amz_date, sizeof(d->amz_date));
        memcpy(d->scope, auth->scope, sizeof(d->scope));
        d->sha = EVP_MD_CTX_new();
        if (d->sha == NULL) {
            free(d);
            return NULL;
        }
    }
    d->state = ST_SIZE_LINE;
    return d;
}

void api__chunked_free(api__chunked *d)
{
    if (d == NULL) return;
    EVP_MD_CTX_free(d->sha);
    api__buf_free(&d->trailer_canonical);
    OPENSSL_cleanse(d->signing_key, sizeof(d->signing_key));
    free(d);
}

const char *api__chunked_error(const api__chunked *d)
{
    return d->error;
}

uint64_t api__chunked_decoded_bytes(const api__chunked *d)
{
    return d->decoded_bytes;
}

const char *api__chunked_trailer(const api__chunked *d, const char *name)
{
    for (size_t i = 0; i < d->trailer_count; i++) {
        if (strcasecmp(d->trailers[i].name, name) == 0) return d->trailers[i].value;
    }
    return NULL;
}

static bool parse_hex64(const char *s, size_t len, char out[65])
{
    if (len != 64) return false;
    for (size_t i = 0; i < 64; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'F') c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
        out[i] = c;
    }
    out[64] = '\0';
    return true;
}

/* Checks `declared` against HMAC(key, kind "\n" date "\n" scope "\n" prev "\n" tail) and chains. */
static int check_chain(api__chunked *d, const char *kind, const char *tail, const char *declared,
                       const char *what)
{
    char sts[512];
    int n = snprintf(sts, sizeof(sts), "%s\n%s\n%s\n%s\n%s", kind, d->amz_date, d->scope,
                     d->prev_signature, tail);
    assert(n > 0 && (size_t)n < sizeof(sts));
    char expected[65];
    api__hmac_sha256_hex(d->signing_key, sizeof(d->signing_key), sts, (size_t)n, expected);
    if (CRYPTO_memcmp(expected, declared, 64) != 0)
        return chunk_fail(d, TERN_EAUTH, "the %s signature does not match", what);
    memcpy(d->prev_signature, expected, sizeof(d->prev_signature));
    return 0;
}

static int verify_chunk(api__chunked *d)
{
    uint8_t md[32];
    unsigned int md_len = 0;
    if (EVP_DigestFinal_ex(d->sha, md, &md_len) != 1)
        return chunk_fail(d, TERN_ENOMEM, "SHA-256 failed");
    char tail[65 * 2 + 1];
    memcpy(tail, API_EMPTY_SHA256 "\n", 65);
    tern_hex(md, 32, tail + 65);
    return check_chain(d, "AWS4-HMAC-SHA256-PAYLOAD", tail, d->chunk_signature, "chunk");
}

/* "<hex>[;chunk-signature=<64 hex>]" */
static int parse_size_line(api__chunked *d)
{
    const char *s = d->line;
    size_t len = d->line_len, i = 0;
    uint64_t size = 0;
    for (; i < len && i < 17; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (v < 0) break;
        size = size << 4 | (uint64_t)v;
    }
    if (i == 0) return chunk_fail(d, TERN_EPARSE, "malformed chunk size");
    if (i > 16 || size > d->chunk_bytes_max)
        return chunk_fail(d, TERN_EPARSE, "chunk larger than %zu bytes", d->chunk_bytes_max);
    static const char ext[] = ";chunk-signature=";
    bool has_sig = len - i >= sizeof(ext) - 1 && memcmp(s + i, ext, sizeof(ext) - 1) == 0;
    if (has_sig) {
        const char *sig = s + i + sizeof(ext) - 1;
        if (!parse_hex64(sig, len - (size_t)(sig - s), d->chunk_signature))
            return chunk_fail(d, TERN_EPARSE, "malformed chunk-signature");
    } else if (i != len) {
        return chunk_fail(d, TERN_EPARSE, "malformed chunk header");
    }
    if (d->verify && !has_sig) return chunk_fail(d, TERN_EAUTH, "missing chunk-signature");
    if (!d->verify && has_sig)
        return chunk_fail(d, TERN_EPARSE, "chunk-signature in an unsigned payload");
    d->remaining = size;
    d->final_chunk = size == 0;
    if (d->verify && EVP_DigestInit_ex(d->sha, EVP_sha256(), NULL) != 1)
        return chunk_fail(d, TERN_ENOMEM, "SHA-256 failed");
    if (d->final_chunk) {
        int rc = d->verify ? verify_chunk(d) : 0;
        if (rc == 0) d->state = ST_TRAILER_LINE;
        return rc;
    }
    d->state = ST_DATA;
    return 0;
}

static int end_of_trailers(api__chunked *d)
{
    if (d->trailers_signed && !d->trailer_signature_seen)
        return chunk_fail(d, TERN_EAUTH, "missing x-amz-trailer-signature");
    d->state = ST_DONE;
    return 0;
}

/* "name:value" (or the empty line that ends the body). */
static int parse_trailer_line(api__chunked *d)
{
    if (d->line_len == 0) return end_of_trailers(d);
    if (!d->trailers_allowed) return chunk_fail(d, TERN_EPARSE, "data after the final chunk");
    if (d->trailer_signature_seen)
        return chunk_fail(d, TERN_EPARSE, "trailer after x-amz-trailer-signature");
    const char *colon = memchr(d->line, ':', d->line_len);
    if (colon == NULL || colon == d->line) return chunk_fail(d, TERN_EPARSE, "malformed trailer");
    size_t name_len = (size_t)(colon - d->line);
    const char *v = colon + 1;
    size_t vlen = d->line_len - name_len - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    if (name_len == 23 && strncasecmp(d->line, "x-amz-trailer-signature", 23) == 0) {
        if (!d->trailers_signed)
            return chunk_fail(d, TERN_EPARSE, "x-amz-trailer-signature in an unsigned payload");
        char declared[65], hash[65];
        if (!parse_hex64(v, vlen, declared))
            return chunk_fail(d, TERN_EPARSE, "malformed x-amz-trailer-signature");
        d->trailer_signature_seen = true;
        const char *canon = d->trailer_canonical.data != NULL ? d->trailer_canonical.data : "";
        api__sha256_hex(canon, d->trailer_canonical.len, hash);
        return check_chain(d, "AWS4-HMAC-SHA256-TRAILER", hash, declared, "trailer");
    }
    if (d->trailer_count == API_CHUNK_TRAILERS_MAX)
        return chunk_fail(d, TERN_EPARSE, "too many trailers");
    chunk_trailer *t = &d->trailers[d->trailer_count];
    if (name_len >= sizeof(t->name) || vlen >= sizeof(t->value))
        return chunk_fail(d, TERN_EPARSE, "trailer too long");
    for (size_t i = 0; i < name_len; i++) {
        char c = d->line[i];
        t->name[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    t->name[name_len] = '\0';
    memcpy(t->value, v, vlen);
    t->value[vlen] = '\0';
    d->trailer_count++;
    if (api__buf_printf(&d->trailer_canonical, "%s:%s\n", t->name, t->value) != 0)
        return chunk_fail(d, TERN_ENOMEM, "out of memory");
    return 0;
}

/* Collects one CRLF-terminated line; *done when complete. Returns bytes consumed. */
static size_t take_line(api__chunked *d, const char *in, size_t len, bool *done, int *rc)
{
    *done = false;
    *rc = 0;
    size_t i = 0;
    for (; i < len; i++) {
        char c = in[i];
        bool pending_cr = d->line_len > 0 && d->line[d->line_len - 1] == '\r';
        if (c == '\n') {
            if (!pending_cr) {
                *rc = chunk_fail(d, TERN_EPARSE, "line not terminated by CRLF");
                return i;
            }
            d->line_len--; /* drop the CR */
            *done = true;
            return i + 1;
        }
        if (pending_cr) {
            *rc = chunk_fail(d, TERN_EPARSE, "bare CR in a chunk header");
            return i;
        }
        if (d->line_len == sizeof(d->line)) {
            *rc = chunk_fail(d, TERN_EPARSE, "chunk header line too long");
            return i;
        }
        d->line[d->line_len++] = c;
    }
    return i;
}

static int feed_data(api__chunked *d, const char *in, size_t len, api__chunk_data_fn fn, void *ctx)
{
    if (d->verify && EVP_DigestUpdate(d->sha, in, len) != 1)
        return chunk_fail(d, TERN_ENOMEM, "SHA-256 failed");
    d->remaining -= len;
    d->decoded_bytes += len;
    int rc = fn != NULL ? fn(ctx, in, len) : 0;
    if (rc < 0) return chunk_fail(d, rc, "the data callback failed: %s", tern_strerror(rc));
    if (d->remaining == 0) {
        rc = d->verify ? verify_chunk(d) : 0;
        if (rc == 0) d->state = ST_DATA_CR;
    }
    return rc;
}

int api__chunked_feed(api__chunked *d, const char *in, size_t len, api__chunk_data_fn fn, void *ctx)
{
    size_t pos = 0;
    int rc = 0;
    while (rc == 0 && pos < len) {
        switch (d->state) {
        case ST_SIZE_LINE:
        case ST_TRAILER_LINE: {
            bool done;
            pos += take_line(d, in + pos, len - pos, &done, &rc);
            if (rc == 0 && done) {
                rc = d->state == ST_SIZE_LINE ? parse_size_line(d) : parse_trailer_line(d);
                d->line_len = 0;
            }
            break;
        }
        case ST_DATA: {
            size_t n = (size_t)TERN_MIN((uint64_t)(len - pos), d->remaining);
            rc = feed_data(d, in + pos, n, fn, ctx);
            pos += n;
            break;
        }
        case ST_DATA_CR:
        case ST_DATA_LF:
            if (in[pos] != (d->state == ST_DATA_CR ? '\r' : '\n'))
                return chunk_fail(d, TERN_EPARSE, "chunk data not followed by CRLF");
            d->state = d->state == ST_DATA_CR ? ST_DATA_LF : ST_SIZE_LINE;
            pos++;
            break;
        case ST_DONE:
            return chunk_fail(d, TERN_EPARSE, "data after the end of the aws-chunked body");
        default:
            return d->failed_rc;
        }
    }
    return d->state == ST_FAILED ? d->failed_rc : rc;
}

int api__chunked_finish(api__chunked *d)
{
    if (d->state == ST_DONE) return 0;
    if (d->state == ST_FAILED) return TERN_EPARSE;
    chunk_fail(d, TERN_EPARSE, "the aws-chunked body ended before its final chunk");
    return TERN_EPARSE;
}
