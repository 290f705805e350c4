/* Unit tests of the aws-chunked decoder: AWS published streaming vectors, splits, framing errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api_internal.h"

#define E3     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define SCOPE  "20130524/us-east-1/s3/aws4_request"
#define DATE   "20130524T000000Z"
#define CRED   "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/" SCOPE

/* The sigv4-streaming.html example (STREAMING-AWS4-HMAC-SHA256-PAYLOAD). */
#define SEED "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define SIG1 "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
#define SIG2 "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
#define SIG3 "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
/* The sigv4-streaming-trailers.html example (...-PAYLOAD-TRAILER, CRC32C trailer). */
#define TSEED        "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
#define TSIG1        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"
#define TSIG2        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
#define TSIG3        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"
#define TTRAILER_SIG "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"

static const char *lookup(void *ctx, const char *access_key)
{
    (void)ctx;
    return strcmp(access_key, "AKIAIOSFODNN7EXAMPLE") == 0 ? SECRET : NULL;
}

/* ---------------- collecting decoder output ---------------- */

typedef struct {
    api__buf data;
    int fail_after_bytes; /* < 0: never fail */
} sink;

static int sink_fn(void *ctx, const char *data, size_t len)
{
    sink *s = ctx;
    assert_true(len > 0);
    if (s->fail_after_bytes >= 0 && s->data.len + len > (size_t)s->fail_after_bytes)
        return TERN_ENOSPC;
    return api__buf_append(&s->data, data, len);
}

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    /* xorshift64*: deterministic, seeded per test so a failure can be replayed. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/*
 * Feeds body in pieces: split 0 means random piece sizes from rng, otherwise
 * pieces of `split` bytes. Returns the first non-zero feed result, or finish().
 */
static int decode(const api__auth_result *auth, size_t chunk_max, const char *body, size_t len,
                  size_t split, sink *out, char *err, size_t err_len)
{
    api__chunked *d = api__chunked_new(auth, chunk_max);
    assert_non_null(d);
    int rc = 0;
    for (size_t pos = 0; rc == 0 && pos < len;) {
        size_t n = split > 0 ? split : 1 + (size_t)(rng_next() % 9000);
        if (n > len - pos) n = len - pos;
        rc = api__chunked_feed(d, body + pos, n, sink_fn, out);
        pos += n;
    }
    if (rc == 0) rc = api__chunked_finish(d);
    if (rc != 0) {
        /* Errors are sticky: feeding more and finishing keep failing. */
        assert_int_equal(api__chunked_feed(d, "0\r\n\r\n", 5, sink_fn, out), rc);
        assert_int_not_equal(api__chunked_finish(d), 0);
        assert_true(strlen(api__chunked_error(d)) > 0);
    }
    if (err != NULL) snprintf(err, err_len, "%s", api__chunked_error(d));
    api__chunked_free(d);
    return rc;
}

/* ---------------- AWS streaming example ---------------- */

static void build_streaming_body(api__buf *b, const char *sig1, const char *sig2, const char *sig3,
                                 const char *trailer)
{
    char *a = malloc(65536);
    assert_non_null(a);
    memset(a, 'a', 65536);
    assert_int_equal(api__buf_printf(b, "10000;chunk-signature=%s\r\n", sig1), 0);
    assert_int_equal(api__buf_append(b, a, 65536), 0);
    assert_int_equal(api__buf_printf(b, "\r\n400;chunk-signature=%s\r\n", sig2), 0);
    assert_int_equal(api__buf_append(b, a, 1024), 0);
    assert_int_equal(api__buf_printf(b, "\r\n0;chunk-signature=%s\r\n%s\r\n", sig3, trailer), 0);
    free(a);
}

/* The auth result of the example request, obtained through the real verifier. */
static void streaming_auth(api__auth_result *auth)
{
    api__header h[] = {
        {"Host", "s3.amazonaws.com"},
        {"x-amz-date", DATE},
        {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
        {"Authorization", CRED ",SignedHeaders=content-encoding;content-length;host;x-amz-content-"
                               "sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-"
                               "class,Signature=" SEED},
        {"x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"},
        {"Content-Encoding", "aws-chunked"},
        {"x-amz-decoded-content-length", "66560"},
        {"Content-Length", "66824"},
    };
    api__sigv4_request req = {"PUT", "/examplebucket/chunkObject.txt", "", 8, h};
    int64_t now = 0;
    assert_int_equal(api__amz_date_parse(DATE, &now), 0);
    assert_int_equal(api__sigv4_verify(&req, now, lookup, NULL, auth), 0);
    assert_int_equal(auth->payload_mode, API_PAYLOAD_STREAMING_SIGNED);
    assert_string_equal(auth->seed_signature, SEED);
}

static void check_all_a(const sink *s, size_t n)
{
    assert_int_equal(s->data.len, n);
    for (size_t i = 0; i < n; i++) {
        if (s->data.data[i] != 'a') fail_msg("byte %zu is %d", i, s->data.data[i]);
    }
}

static void test_aws_streaming_example(void **state)
{
    (void)state;
    api__auth_result auth;
    streaming_auth(&auth);
    api__buf body = {0};
    build_streaming_body(&body, SIG1, SIG2, SIG3, "");
    assert_int_equal(body.len, 66824); /* the example's Content-Length */
    static const size_t splits[] = {SIZE_MAX, 1, 2, 3, 7, 64, 85, 86, 87, 4096, 65536, 65623};
    for (size_t i = 0; i < TERN_ARRAY_LEN(splits); i++) {
        sink s = {{0}, -1};
        size_t split = splits[i] == SIZE_MAX ? body.len : splits[i];
        assert_int_equal(decode(&auth, 1 << 20, body.data, body.len, split, &s, NULL, 0), 0);
        check_all_a(&s, 66560);
        api__buf_free(&s.data);
    }
    rng_state = 0x5eed0001;
    for (int round = 0; round < 20; round++) {
        print_message("  random splits, rng state %llu\n", (unsigned long long)rng_state);
        sink s = {{0}, -1};
        assert_int_equal(decode(&auth, 1 << 20, body.data, body.len, 0, &s, NULL, 0), 0);
        check_all_a(&s, 66560);
        api__buf_free(&s.data);
    }
    api__chunked *d = api__chunked_new(&auth, 1 << 20);
    assert_int_equal(api__chunked_feed(d, body.data, body.len, NULL, NULL), 0);
    assert_int_equal(api__chunked_decoded_bytes(d), 66560);
    assert_int_equal(api__chunked_finish(d), 0);
    api__chunked_free(d);
    api__buf_free(&body);
}

static void test_aws_streaming_tampering(void **state)
{
    (void)state;
    api__auth_result auth;
    streaming_auth(&auth);
    char err[200];
    /* Any changed data byte breaks its chunk's signature. */
    static const size_t offsets[] = {88, 88 + 65535, 65626 + 86, 65626 + 86 + 1023};
    for (size_t i = 0; i < TERN_ARRAY_LEN(offsets); i++) {
        api__buf body = {0};
        build_streaming_body(&body, SIG1, SIG2, SIG3, "");
        body.data[offsets[i]] = 'b';
        sink s = {{0}, -1};
        assert_int_equal(decode(&auth, 1 << 20, body.data, body.len, 1000, &s, err, sizeof(err)),
                         TERN_EAUTH);
        assert_non_null(strstr(err, "signature"));
        api__buf_free(&s.data);
        api__buf_free(&body);
    }
    /* Swapped, wrong or reused chunk signatures. */
    const char *sets[][3] = {
        {SIG2, SIG1, SIG3}, {SIG1, SIG2, SIG2}, {SIG1, SIG1, SIG3}, {TSIG1, TSIG2, TSIG3}};
    for (size_t i = 0; i < TERN_ARRAY_LEN(sets); i++) {
        api__buf body = {0};
        build_streaming_body(&body, sets[i][0], sets[i][1], sets[i][2], "");
        sink s = {{0}, -1};
        assert_int_equal(decode(&auth, 1 << 20, body.data, body.len, 333, &s, NULL, 0), TERN_EAUTH);
        api__buf_free(&s.data);
        api__buf_free(&body);
    }
    /* A wrong seed (another request's signature) fails the first chunk. */
    api__auth_result other = auth;
    memcpy(other.seed_signature, TSEED, 65);
    api__buf body = {0};
    build_streaming_body(&body, SIG1, SIG2, SIG3, "");
    sink s = {{0}, -1};
    assert_int_equal(decode(&other, 1 << 20, body.data, body.len, body.len, &s, NULL, 0),
                     TERN_EAUTH);
    /* The first chunk's data was handed over before the check failed, and no more. */
    assert_int_equal(s.data.len, 65536);
    api__buf_free(&s.data);
    /* A truncated body never finishes. */
    sink s2 = {{0}, -1};
    assert_int_equal(decode(&auth, 1 << 20, body.data, body.len - 2, 4096, &s2, err, sizeof(err)),
                     TERN_EPARSE);
    assert_non_null(strstr(err, "final chunk"));
    api__buf_free(&s2.data);
    /* In a signed mode every chunk needs a signature. */
    sink s3 = {{0}, -1};
    static const char unsigned_body[] = "5\r\nhello\r\n0\r\n\r\n";
    assert_int_equal(
        decode(&auth, 1 << 20, unsigned_body, sizeof(unsigned_body) - 1, 1, &s3, err, sizeof(err)),
        TERN_EAUTH);
    assert_non_null(strstr(err, "missing chunk-signature"));
    api__buf_free(&s3.data);
    /* Trailers are not part of STREAMING-AWS4-HMAC-SHA256-PAYLOAD. */
    api__buf_reset(&body);
    build_streaming_body(&body, SIG1, SIG2, SIG3, "x-amz-checksum-crc32:AAAAAA==\r\n");
    sink s4 = {{0}, -1};
    assert_int_equal(decode(&auth, 1 << 20, body.data, body.len, 777, &s4, NULL, 0), TERN_EPARSE);
    api__buf_free(&s4.data);
    api__buf_free(&body);
}

/* ---------------- AWS trailer example ---------------- */

static void trailer_auth(api__auth_result *auth)
{
    memset(auth, 0, sizeof(*auth));
    auth->payload_mode = API_PAYLOAD_STREAMING_SIGNED_TRAILER;
    api__sigv4_signing_key(SECRET, "20130524", "us-east-1", "s3", auth->signing_key);
    memcpy(auth->seed_signature, TSEED, 65);
    memcpy(auth->amz_date, DATE, 17);
    snprintf(auth->scope, sizeof(auth->scope), "%s", SCOPE);
}

static void test_aws_trailer_example(void **state)
{
    (void)state;
    api__auth_result auth;
    trailer_auth(&auth);
    api__buf body = {0};
    build_streaming_body(&body, TSIG1, TSIG2, TSIG3,
                         "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" TTRAILER_SIG
                         "\r\n");
    assert_int_equal(body.len, 66946);
    static const size_t splits[] = {1, 5, 66946, 66900, 66860};
    for (size_t i = 0; i < TERN_ARRAY_LEN(splits); i++) {
        api__chunked *d = api__chunked_new(&auth, 1 << 20);
        sink s = {{0}, -1};
        int rc = 0;
        for (size_t pos = 0; rc == 0 && pos < body.len; pos += splits[i]) {
            size_t n = TERN_MIN(splits[i], body.len - pos);
            rc = api__chunked_feed(d, body.data + pos, n, sink_fn, &s);
        }
        assert_int_equal(rc, 0);
        assert_int_equal(api__chunked_finish(d), 0);
        check_all_a(&s, 66560);
        assert_string_equal(api__chunked_trailer(d, "x-amz-checksum-crc32c"), "sOO8/Q==");
        assert_string_equal(api__chunked_trailer(d, "X-Amz-Checksum-CRC32C"), "sOO8/Q==");
        assert_null(api__chunked_trailer(d, "x-amz-checksum-crc32"));
        assert_null(api__chunked_trailer(d, "x-amz-trailer-signature"));
        api__chunked_free(d);
        api__buf_free(&s.data);
    }
    /* A changed trailer value, a wrong or missing trailer signature are refused. */
    static const char *const bad_trailers[] = {
        "x-amz-checksum-crc32c:sOO8/Q=A\r\nx-amz-trailer-signature:" TTRAILER_SIG "\r\n",
        "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" TSIG3 "\r\n",
        "x-amz-checksum-crc32c:sOO8/Q==\r\n",
        "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:abc\r\n",
        "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" TTRAILER_SIG
        "\r\nx-amz-checksum-crc32:AAAAAA==\r\n",
    };
    static const int want[] = {TERN_EAUTH, TERN_EAUTH, TERN_EAUTH, TERN_EPARSE, TERN_EPARSE};
    for (size_t i = 0; i < TERN_ARRAY_LEN(bad_trailers); i++) {
        api__buf_reset(&body);
        build_streaming_body(&body, TSIG1, TSIG2, TSIG3, bad_trailers[i]);
        sink s = {{0}, -1};
        assert_int_equal(decode(&auth, 1 << 20, body.data, body.len, 3, &s, NULL, 0), want[i]);
        api__buf_free(&s.data);
    }
    api__buf_free(&body);
}

/* The seed of the trailer example, from its request headers (as minio-go signs them). */
static void test_aws_trailer_seed(void **state)
{
    (void)state;
    api__header h[] = {
        {"Host", "s3.amazonaws.com"},
        {"x-amz-date", DATE},
        {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
        {"x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"},
        {"Content-Encoding", "aws-chunked"},
        {"x-amz-decoded-content-length", "66560"},
        {"x-amz-trailer", "x-amz-checksum-crc32c"},
        {"Authorization", CRED ",SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-"
                               "date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-"
                               "trailer,Signature=" TSEED},
    };
    api__sigv4_request req = {"PUT", "/examplebucket/chunkObject.txt", "", 8, h};
    int64_t now = 0;
    assert_int_equal(api__amz_date_parse(DATE, &now), 0);
    api__auth_result auth;
    int rc = api__sigv4_verify(&req, now, lookup, NULL, &auth);
    if (rc != 0) print_message("%s: %s\n", auth.s3_code, auth.message);
    assert_int_equal(rc, 0);
    assert_int_equal(auth.payload_mode, API_PAYLOAD_STREAMING_SIGNED_TRAILER);
    api__buf body = {0};
    build_streaming_body(&body, TSIG1, TSIG2, TSIG3,
                         "x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:" TTRAILER_SIG
                         "\r\n");
    sink s = {{0}, -1};
    assert_int_equal(decode(&auth, 1 << 20, body.data, body.len, 999, &s, NULL, 0), 0);
    check_all_a(&s, 66560);
    api__buf_free(&s.data);
    api__buf_free(&body);
}

/* ---------------- a test signer for arbitrary bodies ---------------- */

/* Signs chunks exactly as SDKs do, independently of the decoder's code. */
static void sign_chunk(const api__auth_result *auth, char prev[65], const char *data, size_t len)
{
    char hash[65], sts[512];
    api__sha256_hex(data, len, hash);
    int n = snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256-PAYLOAD\n%s\n%s\n%s\n%s\n%s",
                     auth->amz_date, auth->scope, prev, E3, hash);
    api__hmac_sha256_hex(auth->signing_key, 32, sts, (size_t)n, prev);
}

static void build_signed(const api__auth_result *auth, const char *data, size_t len,
                         const size_t *sizes, size_t count, api__buf *out)
{
    char prev[65];
    memcpy(prev, auth->seed_signature, 65);
    size_t pos = 0;
    for (size_t i = 0; i < count; i++) {
        sign_chunk(auth, prev, data + pos, sizes[i]);
        assert_int_equal(api__buf_printf(out, "%zx;chunk-signature=%s\r\n", sizes[i], prev), 0);
        assert_int_equal(api__buf_append(out, data + pos, sizes[i]), 0);
        assert_int_equal(api__buf_append_str(out, "\r\n"), 0);
        pos += sizes[i];
    }
    assert_int_equal(pos, len);
    sign_chunk(auth, prev, "", 0);
    assert_int_equal(api__buf_printf(out, "0;chunk-signature=%s\r\n\r\n", prev), 0);
}

static void test_random_signed_bodies(void **state)
{
    (void)state;
    api__auth_result auth;
    streaming_auth(&auth);
    rng_state = 0xC0FFEE;
    for (int round = 0; round < 40; round++) {
        print_message("  round %d, rng state %llu\n", round, (unsigned long long)rng_state);
        size_t count = 1 + (size_t)(rng_next() % 6), sizes[6], total = 0;
        for (size_t i = 0; i < count; i++)
            total += sizes[i] = 1 + (size_t)(rng_next() % 20000);
        char *data = malloc(total);
        for (size_t i = 0; i < total; i++)
            data[i] = (char)rng_next();
        api__buf body = {0};
        build_signed(&auth, data, total, sizes, count, &body);
        sink s = {{0}, -1};
        size_t split = round % 4 == 0 ? 1 : 0;
        assert_int_equal(decode(&auth, 20000, body.data, body.len, split, &s, NULL, 0), 0);
        assert_int_equal(s.data.len, total);
        assert_memory_equal(s.data.data, data, total);
        api__buf_free(&s.data);
        /* Flip one random byte anywhere: the body must be refused, never accepted. */
        size_t at = (size_t)(rng_next() % body.len);
        body.data[at] ^= (char)(1 + rng_next() % 255);
        sink s2 = {{0}, -1};
        int rc = decode(&auth, 20000, body.data, body.len, 0, &s2, NULL, 0);
        assert_true(rc == TERN_EAUTH || rc == TERN_EPARSE);
        api__buf_free(&s2.data);
        api__buf_free(&body);
        free(data);
    }
}

/* ---------------- unsigned bodies and framing errors ---------------- */

static void test_unsigned_trailer_mode(void **state)
{
    (void)state;
    static const char body[] = "5\r\nhello\r\nA\r\n, world!!!\r\n0\r\n"
                               "x-amz-checksum-crc32:  NSRBwg==  \r\nX-Amz-Meta-Extra:1\r\n\r\n";
    for (size_t split = 1; split <= sizeof(body); split++) {
        api__chunked *d = api__chunked_new(NULL, 64);
        sink s = {{0}, -1};
        int rc = 0;
        for (size_t pos = 0; rc == 0 && pos < sizeof(body) - 1; pos += split) {
            size_t n = TERN_MIN(split, sizeof(body) - 1 - pos);
            rc = api__chunked_feed(d, body + pos, n, sink_fn, &s);
        }
        assert_int_equal(rc, 0);
        assert_int_equal(api__chunked_finish(d), 0);
        assert_int_equal(s.data.len, 15);
        assert_memory_equal(s.data.data, "hello, world!!!", 15);
        assert_string_equal(api__chunked_trailer(d, "x-amz-checksum-crc32"), "NSRBwg==");
        assert_string_equal(api__chunked_trailer(d, "x-amz-meta-extra"), "1");
        assert_int_equal(api__chunked_decoded_bytes(d), 15);
        api__chunked_free(d);
        api__buf_free(&s.data);
    }
    /* An empty body and a body without trailers. */
    sink s = {{0}, -1};
    assert_int_equal(decode(NULL, 64, "0\r\n\r\n", 5, 1, &s, NULL, 0), 0);
    assert_int_equal(s.data.len, 0);
    assert_int_equal(decode(NULL, 64, "3\r\nabc\r\n0\r\n\r\n", 13, 2, &s, NULL, 0), 0);
    assert_int_equal(s.data.len, 3);
    api__buf_free(&s.data);
    /* The same mode chosen through an auth result. */
    api__auth_result auth;
    memset(&auth, 0, sizeof(auth));
    auth.payload_mode = API_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
    static const char with_trailer[] = "3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";
    sink s2 = {{0}, -1};
    assert_int_equal(decode(&auth, 64, with_trailer, sizeof(with_trailer) - 1, 1, &s2, NULL, 0), 0);
    assert_memory_equal(s2.data.data, "abc", 3);
    api__buf_free(&s2.data);
}

static void test_framing_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *error; /* substring of api__chunked_error() */
    } cases[] = {
        {"zz\r\nhello\r\n0\r\n\r\n", "malformed chunk size"},
        {"\r\n", "malformed chunk size"},
        {" 5\r\nhello\r\n0\r\n\r\n", "malformed chunk size"},
        {"5 \r\nhello\r\n0\r\n\r\n", "malformed chunk header"},
        {"5;foo=bar\r\nhello\r\n0\r\n\r\n", "malformed chunk header"},
        {"-5\r\nhello\r\n0\r\n\r\n", "malformed chunk size"},
        {"0x5\r\nhello\r\n0\r\n\r\n", "malformed chunk header"},
        {"5\nhello\r\n0\r\n\r\n", "CRLF"},
        {"5\r\rhello\r\n0\r\n\r\n", "bare CR"},
        {"5\r\nhelloX\r\n0\r\n\r\n", "not followed by CRLF"},
        {"5\r\nhello\n0\r\n\r\n", "not followed by CRLF"},
        {"5\r\nhello\r\r0\r\n\r\n", "not followed by CRLF"},
        {"5\r\nhello\r\n0\r\n\r\nextra", "after the end"},
        {"5\r\nhello\r\n0\r\n\r\n0\r\n\r\n", "after the end"},
        {"41\r\n", "larger than 64"},
        {"00000000000000001\r\n", "larger than"},
        {"ffffffffffffffffff\r\n", "larger than"},
        {"5;chunk-signature=" E3 "\r\nhello\r\n0\r\n\r\n", "unsigned payload"},
        {"5\r\nhello\r\n0\r\nno-colon-here\r\n\r\n", "malformed trailer"},
        {"5\r\nhello\r\n0\r\n:value\r\n\r\n", "malformed trailer"},
        {"5\r\nhello\r\n0\r\nx-amz-trailer-signature:" E3 "\r\n\r\n", "unsigned payload"},
        {"5\r\nhello\r\n0\r\na:1\r\nb:2\r\nc:3\r\nd:4\r\ne:5\r\nf:6\r\ng:7\r\nh:8\r\ni:9\r\n\r\n",
         "too many trailers"},
        {"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\n\r\n", "CRLF"},
        {"5\r\nhel", "final chunk"},
        {"5\r\nhello\r\n", "final chunk"},
        {"5\r\nhello\r\n0\r\n", "final chunk"},
        {"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n", "final chunk"},
        {"", "final chunk"},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
        for (size_t split = 1; split <= 3; split += 2) {
            print_message("  %zu/%zu\n", i, split);
            sink s = {{0}, -1};
            char err[200];
            int rc =
                decode(NULL, 64, cases[i].body, strlen(cases[i].body), split, &s, err, sizeof(err));
            assert_int_equal(rc, TERN_EPARSE);
            if (strstr(err, cases[i].error) == NULL)
                fail_msg("case %zu: error \"%s\", expected \"%s\"", i, err, cases[i].error);
            api__buf_free(&s.data);
        }
    }
}

static void test_line_and_trailer_bounds(void **state)
{
    (void)state;
    /* A chunk header line of 5000 bytes is refused before it is complete. */
    api__chunked *d = api__chunked_new(NULL, 64);
    char line[5000];
    memset(line, '0', sizeof(line));
    int rc = 0;
    size_t fed = 0;
    while (rc == 0 && fed < sizeof(line)) {
        rc = api__chunked_feed(d, line + fed, 100, NULL, NULL);
        fed += 100;
    }
    assert_int_equal(rc, TERN_EPARSE);
    assert_true(fed <= 4200);
    assert_non_null(strstr(api__chunked_error(d), "too long"));
    api__chunked_free(d);
    /* A trailer value longer than the trailer bound. */
    api__buf body = {0};
    assert_int_equal(api__buf_append_str(&body, "0\r\nx-amz-meta-big:"), 0);
    for (int i = 0; i < 300; i++)
        assert_int_equal(api__buf_append(&body, "v", 1), 0);
    assert_int_equal(api__buf_append_str(&body, "\r\n\r\n"), 0);
    sink s = {{0}, -1};
    char err[200];
    assert_int_equal(decode(NULL, 64, body.data, body.len, 7, &s, err, sizeof(err)), TERN_EPARSE);
    assert_non_null(strstr(err, "trailer too long"));
    api__buf_free(&body);
    /* The default chunk bound applies when none is given. */
    assert_int_equal(decode(NULL, 0, "1000001\r\n", 9, 9, &s, err, sizeof(err)), TERN_EPARSE);
    assert_int_equal(decode(NULL, 0, "3\r\nabc\r\n0\r\n\r\n", 13, 13, &s, NULL, 0), 0);
    api__buf_free(&s.data);
}

static void test_callback_error(void **state)
{
    (void)state;
    static const char body[] = "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
    sink s = {{0}, 7};
    char err[200];
    assert_int_equal(decode(NULL, 64, body, sizeof(body) - 1, 4, &s, err, sizeof(err)),
                     TERN_ENOSPC);
    assert_non_null(strstr(err, "callback"));
    assert_true(s.data.len <= 7);
    api__buf_free(&s.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aws_streaming_example),
        cmocka_unit_test(test_aws_streaming_tampering),
        cmocka_unit_test(test_aws_trailer_example),
        cmocka_unit_test(test_aws_trailer_seed),
        cmocka_unit_test(test_random_signed_bodies),
        cmocka_unit_test(test_unsigned_trailer_mode),
        cmocka_unit_test(test_framing_errors),
        cmocka_unit_test(test_line_and_trailer_bounds),
        cmocka_unit_test(test_callback_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
