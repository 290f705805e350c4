/* SigV4 building blocks: hashing, Authorization parsing, canonical request, string to sign, key. */
#include "api_internal.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>

/* Longest secret the signing-key derivation accepts (the verifier refuses longer ones). */
#define API_SECRET_BYTES_MAX 1024
/* A canonical request never lists more signed headers than this. */
#define API_SIGNED_HEADERS_MAX 64

void api__sha256_hex(const void *data, size_t len, char out_hex[65])
{
    uint8_t md[32];
    unsigned int md_len = 0;
    int ok = EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL);
    /* EVP_Digest only fails on allocation failure inside OpenSSL; nothing sane to do then. */
    assert(ok == 1 && md_len == 32);
    (void)ok;
    tern_hex(md, 32, out_hex);
}

static void hmac_sha256(const uint8_t *key, size_t key_len, const void *msg, size_t msg_len,
                        uint8_t out[32])
{
    unsigned int out_len = 0;
    uint8_t *r = HMAC(EVP_sha256(), key, (int)key_len, msg, msg_len, out, &out_len);
    assert(r != NULL && out_len == 32);
    (void)r;
}

void api__hmac_sha256_hex(const uint8_t *key, size_t key_len, const char *msg, size_t msg_len,
                          char out_hex[65])
{
    uint8_t mac[32];
    hmac_sha256(key, key_len, msg, msg_len, mac);
    tern_hex(mac, 32, out_hex);
}

/*
 * Signing keys change once a day per (secret, region, service), but deriving
 * one costs four HMACs: a small per-thread memo saves them on every request.
 * It is per thread (the verifier runs on the event loop thread) so it needs no
 * lock; it holds nothing the credential table does not already hold.
 */
#define SIGNING_KEY_MEMO_SLOTS 8
typedef struct {
    bool used;
    char secret[API_SECRET_BYTES_MAX + 1];
    char date8[9];
    char region[64];
    char service[32];
    uint8_t key[32];
} signing_key_memo;

static _Thread_local signing_key_memo key_memo[SIGNING_KEY_MEMO_SLOTS];
static _Thread_local unsigned key_memo_next;

static signing_key_memo *memo_find(const char *secret, const char *date8, const char *region,
                                   const char *service)
{
    for (unsigned i = 0; i < SIGNING_KEY_MEMO_SLOTS; i++) {
        signing_key_memo *m = &key_memo[i];
        if (m->used && strcmp(m->date8, date8) == 0 && strcmp(m->region, region) == 0 &&
            strcmp(m->service, service) == 0 && strcmp(m->secret, secret) == 0)
            return m;
    }
    return NULL;
}

static void derive_signing_key(const char *secret, const char *date8, const char *region,
                               const char *service, uint8_t out[32]);

void api__sigv4_signing_key(const char *secret, const char *date8, const char *region,
                            const char *service, uint8_t out[32])
{
    signing_key_memo *m = memo_find(secret, date8, region, service);
    if (m != NULL) {
        memcpy(out, m->key, 32);
        return;
    }
    derive_signing_key(secret, date8, region, service, out);
    if (strlen(secret) > API_SECRET_BYTES_MAX || strlen(date8) >= sizeof m->date8 ||
        strlen(region) >= sizeof m->region || strlen(service) >= sizeof m->service)
        return;
    m = &key_memo[key_memo_next++ % SIGNING_KEY_MEMO_SLOTS];
    m->used = true;
    strcpy(m->secret, secret);
    strcpy(m->date8, date8);
    strcpy(m->region, region);
    strcpy(m->service, service);
    memcpy(m->key, out, 32);
}

static void derive_signing_key(const char *secret, const char *date8, const char *region,
                               const char *service, uint8_t out[32])
{
    /* kSecret = "AWS4" + secret; each step keys the next (SigV4 "derive a signing key"). */
    uint8_t ksecret[4 + API_SECRET_BYTES_MAX];
    size_t secret_len = strlen(secret);
    assert(secret_len <= API_SECRET_BYTES_MAX);
    memcpy(ksecret, "AWS4", 4);
    memcpy(ksecret + 4, secret, secret_len);
    uint8_t k[32];
    hmac_sha256(ksecret, 4 + secret_len, date8, strlen(date8), k);
    hmac_sha256(k, 32, region, strlen(region), k);
    hmac_sha256(k, 32, service, strlen(service), k);
    hmac_sha256(k, 32, "aws4_request", 12, out);
    OPENSSL_cleanse(ksecret, sizeof(ksecret));
    OPENSSL_cleanse(k, sizeof(k));
}

int api__sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical,
                              api__buf *out)
{
    char hash[65];
    api__sha256_hex(canonical, strlen(canonical), hash);
    return api__buf_printf(out, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, hash);
}

/* ---------------- Authorization header ---------------- */

static bool is_digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
    }
    return true;
}

/* Copies s[0..len) into dst (dst_size bytes with the NUL); false when it does not fit or is empty.
 */
static bool copy_field(char *dst, size_t dst_size, const char *s, size_t len)
{
    if (len == 0 || len >= dst_size) return false;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

/* "AK/yyyymmdd/region/service/aws4_request" into out's access_key, date8, region, service. */
static int parse_credential(const char *s, size_t len, api__sigv4_auth *out)
{
    const char *parts[5];
    size_t lens[5];
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '/') continue;
        if (n == 5) return TERN_EPARSE;
        parts[n] = s + start;
        lens[n] = i - start;
        n++;
        start = i + 1;
    }
    if (n != 5) return TERN_EPARSE;
    if (!copy_field(out->access_key, sizeof(out->access_key), parts[0], lens[0]))
        return TERN_EPARSE;
    if (lens[1] != 8 || !is_digits(parts[1], 8)) return TERN_EPARSE;
    memcpy(out->date8, parts[1], 8);
    out->date8[8] = '\0';
    if (!copy_field(out->region, sizeof(out->region), parts[2], lens[2])) return TERN_EPARSE;
    if (!copy_field(out->service, sizeof(out->service), parts[3], lens[3])) return TERN_EPARSE;
    if (lens[4] != 12 || memcmp(parts[4], "aws4_request", 12) != 0) return TERN_EPARSE;
    return 0;
}

/* Signed header names: lowercase HTTP tokens separated by single ';'. */
static int parse_signed_headers(const char *s, size_t len, api__sigv4_auth *out)
{
    if (!copy_field(out->signed_headers, sizeof(out->signed_headers), s, len)) return TERN_EPARSE;
    size_t count = 1;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == ';') {
            if (i == 0 || i + 1 == len || s[i + 1] == ';') return TERN_EPARSE;
            count++;
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                     c == '.')) {
            return TERN_EPARSE;
        }
    }
    return count <= API_SIGNED_HEADERS_MAX ? 0 : TERN_EPARSE;
}

static int parse_signature(const char *s, size_t len, api__sigv4_auth *out)
{
    if (len != 64) return TERN_EPARSE;
    for (size_t i = 0; i < 64; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'F') c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return TERN_EPARSE;
        out->signature[i] = c;
    }
    out->signature[64] = '\0';
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

int api__sigv4_parse_authorization(const char *value, api__sigv4_auth *out)
{
    static const char algo[] = "AWS4-HMAC-SHA256";
    memset(out, 0, sizeof(*out));
    const char *p = value;
    while (is_space(*p))
        p++;
    if (strncmp(p, algo, sizeof(algo) - 1) != 0 || !is_space(p[sizeof(algo) - 1]))
        return TERN_EPARSE;
    p += sizeof(algo) - 1;
    bool seen[3] = {false, false, false};
    static const char *const names[3] = {"Credential=", "SignedHeaders=", "Signature="};
    for (;;) {
        while (is_space(*p))
            p++;
        if (*p == '\0') break;
        const char *end = strchr(p, ',');
        if (end == NULL) end = p + strlen(p);
        const char *vend = end;
        while (vend > p && is_space(vend[-1]))
            vend--;
        int which = -1;
        for (int i = 0; i < 3; i++) {
            if (strncmp(p, names[i], strlen(names[i])) == 0) which = i;
        }
        if (which < 0 || seen[which]) return TERN_EPARSE;
        seen[which] = true;
        const char *v = p + strlen(names[which]);
        size_t vlen = (size_t)(vend - v);
        int rc = which == 0   ? parse_credential(v, vlen, out)
                 : which == 1 ? parse_signed_headers(v, vlen, out)
                              : parse_signature(v, vlen, out);
        if (rc != 0) return rc;
        if (*end == '\0') break;
        p = end + 1;
    }
    return seen[0] && seen[1] && seen[2] ? 0 : TERN_EPARSE;
}

/* ---------------- canonical request ---------------- */

/*
 * Non-S3 canonical URI: RFC 3986 dot-segment removal and empty-segment
 * collapsing on the raw path, then every segment encoded once more. This is
 * what the aws-sig-v4-test-suite normalize-path cases expect.
 */
static int canonical_uri_generic(const char *path, api__buf *out)
{
    size_t len = strlen(path);
    size_t *starts = malloc((len / 2 + 2) * sizeof(size_t));
    size_t *lens = malloc((len / 2 + 2) * sizeof(size_t));
    int rc = starts != NULL && lens != NULL ? 0 : TERN_ENOMEM;
    size_t n = 0, start = 0;
    bool trailing_slash = false;
    for (size_t i = 0; rc == 0 && i <= len; i++) {
        if (i < len && path[i] != '/') continue;
        size_t seg = i - start;
        bool dot = seg == 1 && path[start] == '.';
        bool dotdot = seg == 2 && path[start] == '.' && path[start + 1] == '.';
        if (dotdot && n > 0) n--;
        if (seg > 0 && !dot && !dotdot) {
            starts[n] = start;
            lens[n] = seg;
            n++;
        }
        /* "/a/" and "/a/." and "/a/b/.." all name a directory: keep the slash. */
        trailing_slash = i == len ? (seg == 0 || dot || dotdot) : trailing_slash;
        start = i + 1;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = api__buf_append(out, "/", 1);
        if (rc == 0) rc = api__uri_encode(out, path + starts[i], lens[i], true);
    }
    if (rc == 0 && (n == 0 || trailing_slash)) rc = api__buf_append(out, "/", 1);
    free(starts);
    free(lens);
    return rc;
}

/* S3 canonical URI: the path decoded then encoded once, '/' kept, nothing normalized. */
static int canonical_uri_s3(const char *path, api__buf *out)
{
    if (path[0] == '\0') return api__buf_append(out, "/", 1);
    char *decoded = NULL;
    size_t decoded_len = 0;
    int rc = api__uri_decode(path, strlen(path), &decoded, &decoded_len);
    if (rc != 0) return rc;
    rc = api__uri_encode(out, decoded, decoded_len, false);
    free(decoded);
    return rc;
}

typedef struct {
    char *name;  /* encoded */
    char *value; /* encoded */
} encoded_param;

static int compare_params(const void *a, const void *b)
{
    const encoded_param *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : strcmp(x->value, y->value);
}

static char *encode_dup(const char *s)
{
    api__buf b = {0};
    if (api__uri_encode(&b, s, strlen(s), true) != 0) {
        api__buf_free(&b);
        return NULL;
    }
    return b.data;
}

static int canonical_query(const char *query, const char *exclude_param, api__buf *out)
{
    api__param *params = NULL;
    size_t count = 0;
    int rc = api__query_parse(query, strlen(query), &params, &count);
    if (rc != 0) return rc;
    encoded_param *enc = calloc(count + 1, sizeof(*enc));
    size_t n = 0;
    rc = enc != NULL ? 0 : TERN_ENOMEM;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        if (exclude_param != NULL && strcmp(params[i].name, exclude_param) == 0) continue;
        enc[n].name = encode_dup(params[i].name);
        enc[n].value = encode_dup(params[i].value);
        n++;
        if (enc[n - 1].name == NULL || enc[n - 1].value == NULL) rc = TERN_ENOMEM;
    }
    if (rc == 0) qsort(enc, n, sizeof(*enc), compare_params);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = api__buf_printf(out, "%s%s=%s", i > 0 ? "&" : "", enc[i].name, enc[i].value);
    }
    for (size_t i = 0; enc != NULL && i < n; i++) {
        free(enc[i].name);
        free(enc[i].value);
    }
    free(enc);
    api__query_free(params, count);
    return rc;
}

/* Appends a header value trimmed, with every run of spaces or tabs collapsed to one space. */
static int append_trimmed(api__buf *out, const char *v)
{
    while (is_space(*v))
        v++;
    size_t len = strlen(v);
    while (len > 0 && is_space(v[len - 1]))
        len--;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < len; i++) {
        if (is_space(v[i])) {
            while (i + 1 < len && is_space(v[i + 1]))
                i++;
            rc = api__buf_append(out, " ", 1);
        } else {
            rc = api__buf_append(out, &v[i], 1);
        }
    }
    return rc;
}

/* "name:v1,v2\n" for one signed header; all occurrences joined in arrival order. */
static int canonical_header(const api__sigv4_request *req, const char *name, size_t name_len,
                            api__buf *out)
{
    int rc = api__buf_append(out, name, name_len);
    if (rc == 0) rc = api__buf_append(out, ":", 1);
    bool first = true;
    for (size_t i = 0; rc == 0 && i < req->header_count; i++) {
        const api__header *h = &req->headers[i];
        if (strlen(h->name) != name_len || strncasecmp(h->name, name, name_len) != 0) continue;
        if (!first) rc = api__buf_append(out, ",", 1);
        if (rc == 0) rc = append_trimmed(out, h->value);
        first = false;
    }
    return rc == 0 ? api__buf_append(out, "\n", 1) : rc;
}

int api__sigv4_canonical_request(const api__sigv4_request *req, const char *signed_headers,
                                 const char *payload_hash, const char *exclude_param, bool s3_mode,
                                 api__buf *out)
{
    int rc = api__buf_printf(out, "%s\n", req->method);
    if (rc == 0) {
        rc = s3_mode ? canonical_uri_s3(req->raw_path, out)
                     : canonical_uri_generic(req->raw_path, out);
    }
    if (rc == 0) rc = api__buf_append(out, "\n", 1);
    if (rc == 0) rc = canonical_query(req->raw_query, exclude_param, out);
    if (rc == 0) rc = api__buf_append(out, "\n", 1);
    const char *p = signed_headers;
    while (rc == 0 && *p != '\0') {
        const char *end = strchr(p, ';');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len > 0) rc = canonical_header(req, p, len, out);
        p += len + (end != NULL);
    }
    if (rc == 0) rc = api__buf_printf(out, "\n%s\n%s", signed_headers, payload_hash);
    return rc;
}

/* ---------------- verification ---------------- */

/*
 * Design note. The verifier accepts any region and service in the credential
 * scope as long as the signature computed with them matches: tern is a single
 * S3 endpoint, so a client configured for "us-east-1", "auto" or a custom
 * region name is equally welcome, and the scope is part of what is signed so
 * it cannot be altered by a third party. The scope date must still equal the
 * request date's day and the scope must end with aws4_request. Every x-amz-*
 * header the request carries must be signed (as AWS requires), except
 * x-amz-date and x-amz-content-sha256 whose values enter the string to sign
 * and the canonical request directly; otherwise a captured request could be
 * replayed with, say, extra x-amz-meta-* or x-amz-copy-source headers.
 */

#define API_SKEW_MS_MAX           (15 * 60 * 1000)
#define API_PRESIGN_EXPIRES_S_MAX 604800
#define API_EMPTY_SHA256          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static int auth_fail(api__auth_result *out, const char *code, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int auth_fail(api__auth_result *out, const char *code, int status, const char *fmt, ...)
{
    out->s3_code = code;
    out->http_status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->message, sizeof(out->message), fmt, ap);
    va_end(ap);
    return TERN_EAUTH;
}

static const char *header_get(const api__sigv4_request *req, const char *name)
{
    for (size_t i = 0; i < req->header_count; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
    }
    return NULL;
}

static bool list_has(const char *list, const char *name, size_t name_len)
{
    const char *p = list;
    while (*p != '\0') {
        const char *end = strchr(p, ';');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len == name_len && strncasecmp(p, name, len) == 0) return true;
        p += len + (end != NULL);
    }
    return false;
}

static int check_signed_headers(const api__sigv4_request *req, const char *signed_headers,
                                api__auth_result *out)
{
    if (!list_has(signed_headers, "host", 4))
        return auth_fail(out, "AccessDenied", 403, "The host header must be signed");
    for (size_t i = 0; i < req->header_count; i++) {
        const char *name = req->headers[i].name;
        if (strncasecmp(name, "x-amz-", 6) != 0) continue;
        if (strcasecmp(name, "x-amz-date") == 0 || strcasecmp(name, "x-amz-content-sha256") == 0)
            continue;
        if (!list_has(signed_headers, name, strlen(name))) {
            return auth_fail(
                out, "AccessDenied", 403,
                "There were headers present in the request which were not signed: %.64s", name);
        }
    }
    return 0;
}

static bool is_hex64(const char *s)
{
    if (strlen(s) != 64) return false;
    for (size_t i = 0; i < 64; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

/* Classifies the payload hash that goes into the canonical request. */
static int set_payload_mode(const char *hash, api__auth_result *out)
{
    static const struct {
        const char *value;
        int mode;
    } modes[] = {
        {"UNSIGNED-PAYLOAD", API_PAYLOAD_UNSIGNED},
        {"STREAMING-AWS4-HMAC-SHA256-PAYLOAD", API_PAYLOAD_STREAMING_SIGNED},
        {"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", API_PAYLOAD_STREAMING_SIGNED_TRAILER},
        {"STREAMING-UNSIGNED-PAYLOAD-TRAILER", API_PAYLOAD_STREAMING_UNSIGNED_TRAILER},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(modes); i++) {
        if (strcmp(hash, modes[i].value) == 0) {
            out->payload_mode = modes[i].mode;
            out->payload_sha256[0] = '\0';
            return 0;
        }
    }
    if (!is_hex64(hash)) {
        return auth_fail(out, "InvalidArgument", 400,
                         "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING-* value, or "
                         "a valid sha256 value");
    }
    out->payload_mode = API_PAYLOAD_SIGNED;
    for (size_t i = 0; i < 64; i++) {
        char c = hash[i];
        out->payload_sha256[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
    }
    out->payload_sha256[64] = '\0';
    return 0;
}

/* yyyymmddThhmmssZ from milliseconds since the epoch. */
static void amz_date_format(int64_t ms, char out[17])
{
    char iso[32];
    api__iso8601_format(ms, iso); /* "2009-10-12T17:50:30.000Z" */
    memcpy(out, iso, 4);
    memcpy(out + 4, iso + 5, 2);
    memcpy(out + 6, iso + 8, 2);
    out[8] = 'T';
    memcpy(out + 9, iso + 11, 2);
    memcpy(out + 11, iso + 14, 2);
    memcpy(out + 13, iso + 17, 2);
    out[15] = 'Z';
    out[16] = '\0';
}

/* Computes the expected signature and compares it in constant time; fills out on success. */
static int check_signature(const api__sigv4_request *req, const api__sigv4_auth *auth,
                           const char *secret, const char *amz_date, const char *payload_hash,
                           const char *exclude_param, api__auth_result *out)
{
    api__buf creq = {0}, sts = {0};
    char scope[sizeof(out->scope)];
    snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", auth->date8, auth->region,
             auth->service);
    int rc = api__sigv4_canonical_request(req, auth->signed_headers, payload_hash, exclude_param,
                                          true, &creq);
    if (rc == 0) rc = api__sigv4_string_to_sign(amz_date, scope, creq.data, &sts);
    if (rc != 0) {
        api__buf_free(&creq);
        api__buf_free(&sts);
        if (rc == TERN_EPARSE) {
            return auth_fail(out, "SignatureDoesNotMatch", 403,
                             "The request path or query string has an invalid percent-encoding");
        }
        if (rc == TERN_ETOOBIG)
            return auth_fail(out, "InvalidArgument", 400, "Too many query parameters");
        return auth_fail(out, "InternalError", 500, "Out of memory while checking the signature");
    }
    uint8_t key[32];
    char expected[65];
    api__sigv4_signing_key(secret, auth->date8, auth->region, auth->service, key);
    api__hmac_sha256_hex(key, sizeof(key), sts.data, sts.len, expected);
    api__buf_free(&creq);
    api__buf_free(&sts);
    if (CRYPTO_memcmp(expected, auth->signature, 64) != 0) {
        OPENSSL_cleanse(key, sizeof(key));
        return auth_fail(out, "SignatureDoesNotMatch", 403,
                         "The request signature we calculated does not match the signature you "
                         "provided. Check your key and signing method.");
    }
    memcpy(out->signing_key, key, sizeof(key));
    OPENSSL_cleanse(key, sizeof(key));
    memcpy(out->seed_signature, auth->signature, sizeof(out->seed_signature));
    memcpy(out->amz_date, amz_date, 17);
    memcpy(out->scope, scope, sizeof(out->scope));
    memcpy(out->access_key, auth->access_key, sizeof(out->access_key));
    return 0;
}

static const char *lookup_secret(const api__sigv4_auth *auth, api__secret_lookup_fn lookup,
                                 void *ctx, api__auth_result *out)
{
    const char *secret = lookup(ctx, auth->access_key);
    if (secret == NULL) {
        auth_fail(out, "InvalidAccessKeyId", 403,
                  "The AWS Access Key Id you provided does not exist in our records.");
        return NULL;
    }
    if (strlen(secret) > API_SECRET_BYTES_MAX) {
        auth_fail(out, "InternalError", 500, "The secret configured for this key is too long");
        return NULL;
    }
    return secret;
}

/* The request time of header auth: x-amz-date, else Date. */
static int header_auth_date(const api__sigv4_request *req, char amz_date[17], int64_t *ms,
                            api__auth_result *out)
{
    const char *xdate = header_get(req, "x-amz-date");
    if (xdate != NULL) {
        if (api__amz_date_parse(xdate, ms) != 0) goto bad;
        memcpy(amz_date, xdate, 17);
        return 0;
    }
    const char *date = header_get(req, "date");
    if (date != NULL && api__http_date_parse(date, ms) == 0) {
        amz_date_format(*ms, amz_date);
        return 0;
    }
bad:
    return auth_fail(out, "AccessDenied", 403,
                     "AWS authentication requires a valid Date or x-amz-date header");
}

static int verify_header_auth(const api__sigv4_request *req, const char *authz, int64_t now_ms,
                              api__secret_lookup_fn lookup, void *ctx, api__auth_result *out)
{
    while (is_space(*authz))
        authz++;
    if (strncmp(authz, "AWS4-HMAC-SHA256", 16) != 0) {
        return auth_fail(out, "InvalidArgument", 400,
                         "Unsupported Authorization Type: only AWS4-HMAC-SHA256 is accepted");
    }
    api__sigv4_auth auth;
    if (api__sigv4_parse_authorization(authz, &auth) != 0) {
        return auth_fail(out, "AuthorizationHeaderMalformed", 400,
                         "The authorization header is malformed; it must be \"AWS4-HMAC-SHA256 "
                         "Credential=<key>/<yyyymmdd>/<region>/<service>/aws4_request, "
                         "SignedHeaders=<h1;h2>, Signature=<64 hex>\"");
    }
    char amz_date[17];
    int64_t date_ms = 0;
    int rc = header_auth_date(req, amz_date, &date_ms, out);
    if (rc != 0) return rc;
    if (memcmp(amz_date, auth.date8, 8) != 0) {
        return auth_fail(out, "AuthorizationHeaderMalformed", 400,
                         "The authorization header is malformed; Invalid credential date \"%s\". "
                         "This date is not the same as the request date.",
                         auth.date8);
    }
    rc = check_signed_headers(req, auth.signed_headers, out);
    if (rc != 0) return rc;
    const char *secret = lookup_secret(&auth, lookup, ctx, out);
    if (secret == NULL) return TERN_EAUTH;
    int64_t skew = now_ms > date_ms ? now_ms - date_ms : date_ms - now_ms;
    if (skew > API_SKEW_MS_MAX) {
        return auth_fail(out, "RequestTimeTooSkewed", 403,
                         "The difference between the request time and the current time is too "
                         "large.");
    }
    const char *hash = header_get(req, "x-amz-content-sha256");
    /* Without the header the body must be empty: the server refuses bodies on such requests. */
    if (hash == NULL) hash = API_EMPTY_SHA256;
    rc = set_payload_mode(hash, out);
    if (rc != 0) return rc;
    return check_signature(req, &auth, secret, amz_date, hash, NULL, out);
}

/* Parses the presigned query parameters into auth, amz_date and expires_s. */
static int presigned_params(const api__param *params, size_t count, api__sigv4_auth *auth,
                            char amz_date[17], int64_t *date_ms, int64_t *expires_s,
                            api__auth_result *out)
{
    const char *algo = api__query_get(params, count, "X-Amz-Algorithm");
    const char *cred = api__query_get(params, count, "X-Amz-Credential");
    const char *date = api__query_get(params, count, "X-Amz-Date");
    const char *expires = api__query_get(params, count, "X-Amz-Expires");
    const char *signed_headers = api__query_get(params, count, "X-Amz-SignedHeaders");
    const char *signature = api__query_get(params, count, "X-Amz-Signature");
    const char *code = "AuthorizationQueryParametersError";
    if (!algo || !cred || !date || !expires || !signed_headers || !signature) {
        return auth_fail(out, code, 400,
                         "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                         "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
                         "and X-Amz-Expires parameters.");
    }
    if (strcmp(algo, "AWS4-HMAC-SHA256") != 0)
        return auth_fail(out, code, 400, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"");
    memset(auth, 0, sizeof(*auth));
    if (parse_credential(cred, strlen(cred), auth) != 0) {
        return auth_fail(out, code, 400,
                         "X-Amz-Credential must be <key>/<yyyymmdd>/<region>/<service>/"
                         "aws4_request");
    }
    if (parse_signed_headers(signed_headers, strlen(signed_headers), auth) != 0)
        return auth_fail(out, code, 400, "X-Amz-SignedHeaders is malformed");
    if (parse_signature(signature, strlen(signature), auth) != 0)
        return auth_fail(out, code, 400, "X-Amz-Signature must be 64 hexadecimal digits");
    if (api__amz_date_parse(date, date_ms) != 0) {
        return auth_fail(out, code, 400,
                         "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"");
    }
    memcpy(amz_date, date, 17);
    size_t elen = strlen(expires);
    *expires_s = 0;
    for (size_t i = 0; i < elen && i < 8; i++) {
        if (expires[i] < '0' || expires[i] > '9') {
            *expires_s = -1;
            break;
        }
        *expires_s = *expires_s * 10 + (expires[i] - '0');
    }
    if (elen == 0 || elen > 7 || *expires_s < 1 || *expires_s > API_PRESIGN_EXPIRES_S_MAX) {
        return auth_fail(out, code, 400,
                         "X-Amz-Expires must be a number of seconds from 1 to 604800 (a week)");
    }
    if (memcmp(amz_date, auth->date8, 8) != 0) {
        return auth_fail(out, code, 400,
                         "Invalid credential date \"%s\". This date is not the same as "
                         "X-Amz-Date.",
                         auth->date8);
    }
    return 0;
}

static int verify_presigned(const api__sigv4_request *req, const api__param *params, size_t count,
                            int64_t now_ms, api__secret_lookup_fn lookup, void *ctx,
                            api__auth_result *out)
{
    api__sigv4_auth auth;
    char amz_date[17];
    int64_t date_ms = 0, expires_s = 0;
    int rc = presigned_params(params, count, &auth, amz_date, &date_ms, &expires_s, out);
    if (rc != 0) return rc;
    rc = check_signed_headers(req, auth.signed_headers, out);
    if (rc != 0) return rc;
    const char *secret = lookup_secret(&auth, lookup, ctx, out);
    if (secret == NULL) return TERN_EAUTH;
    if (now_ms > date_ms + expires_s * 1000)
        return auth_fail(out, "AccessDenied", 403, "Request has expired");
    if (date_ms - now_ms > API_SKEW_MS_MAX)
        return auth_fail(out, "AccessDenied", 403, "Request is not valid yet");
    const char *hash = header_get(req, "x-amz-content-sha256");
    if (hash == NULL) hash = "UNSIGNED-PAYLOAD";
    rc = set_payload_mode(hash, out);
    if (rc != 0) return rc;
    return check_signature(req, &auth, secret, amz_date, hash, "X-Amz-Signature", out);
}

int api__sigv4_verify(const api__sigv4_request *req, int64_t now_ms, api__secret_lookup_fn lookup,
                      void *lookup_ctx, api__auth_result *out)
{
    assert(req != NULL && lookup != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    api__param *params = NULL;
    size_t count = 0;
    const char *query = req->raw_query != NULL ? req->raw_query : "";
    const char *authz = header_get(req, "authorization");
    /* With header auth a bad query surfaces as a canonicalization failure, with its reason. */
    bool bad_query = api__query_parse(query, strlen(query), &params, &count) != 0;
    if (bad_query && authz == NULL) {
        return auth_fail(out, "AuthorizationQueryParametersError", 400,
                         "The query string is malformed (bad percent-encoding or too many "
                         "parameters)");
    }
    bool presigned = api__query_get(params, count, "X-Amz-Algorithm") != NULL ||
                     api__query_get(params, count, "X-Amz-Credential") != NULL ||
                     api__query_get(params, count, "X-Amz-Signature") != NULL;
    int rc;
    if (authz != NULL && presigned) {
        rc = auth_fail(out, "InvalidArgument", 400,
                       "Only one auth mechanism allowed; only the "
                       "X-Amz-Algorithm query parameter or the "
                       "Authorization header may be specified");
    } else if (authz != NULL) {
        rc = verify_header_auth(req, authz, now_ms, lookup, lookup_ctx, out);
    } else if (presigned) {
        rc = verify_presigned(req, params, count, now_ms, lookup, lookup_ctx, out);
    } else {
        rc = auth_fail(out, "AccessDenied", 403,
                       "Anonymous access is not allowed: the request carries no credentials");
    }
    api__query_free(params, count);
    return rc;
}
