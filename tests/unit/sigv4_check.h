/* Unit-test helper: recomputes an AWS SigV4 signature from a request head, as the node will,
 * to check what a client (ternctl, through libcurl) signed. Static functions: included by one
 * test file each (directly, or through ternctl_canned.h). */
#ifndef TERN_TESTS_SIGV4_CHECK_H
#define TERN_TESTS_SIGV4_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

/* The value of header `name` (case-insensitive) in a request head, copied into out. */
static inline bool header_value(const char *head, const char *name, char *out, size_t out_len)
{
    size_t name_len = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n")) {
        const char *p = line + 2;
        if (strncasecmp(p, name, name_len) != 0 || p[name_len] != ':') continue;
        p += name_len + 1;
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, "\r");
        if (len >= out_len) return false;
        memcpy(out, p, len);
        out[len] = '\0';
        return true;
    }
    return false;
}

static inline void hmac_sha256(const void *key, size_t key_len, const char *data, uint8_t out[32])
{
    unsigned int out_len = 32;
    assert_non_null(
        HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)data, strlen(data), out, &out_len));
}

static inline void sha256_hex(const char *data, char out[65])
{
    uint8_t digest[32];
    SHA256((const uint8_t *)data, strlen(data), digest);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", digest[i]);
}

/*
 * Checks the request in `head` (with body `body`) to `target` (path and query exactly as sent;
 * the query must be canonical already, since libcurl 7.x signs it verbatim): its payload hash
 * header is the body's SHA-256, and the signature recomputed with `secret` is the one sent.
 */
static inline void assert_sigv4(const char *head, const char *method, const char *target,
                                const char *body, const char *secret)
{
    char path[4096], payload_hash[65], header[128];
    snprintf(path, sizeof path, "%s", target);
    char *question = strchr(path, '?');
    const char *query = "";
    if (question != NULL) {
        *question = '\0';
        query = question + 1;
    }
    sha256_hex(body, payload_hash);
    assert_true(header_value(head, "x-amz-content-sha256", header, sizeof header));
    assert_string_equal(header, payload_hash);
    assert_null(strstr(head, secret)); /* the secret itself never goes over the wire */

    char auth[1024], date[64], scope_date[16], signed_headers[512], signature[65];
    assert_true(header_value(head, "Authorization", auth, sizeof auth));
    assert_true(header_value(head, "X-Amz-Date", date, sizeof date));
    assert_int_equal(sscanf(auth,
                            "AWS4-HMAC-SHA256 Credential=%*[^/]/%8[0-9]/us-east-1/s3/aws4_request,"
                            " SignedHeaders=%511[^,], Signature=%64[0-9a-f]",
                            scope_date, signed_headers, signature),
                     3);
    char canonical[8192], value[1024], names[512];
    int n = snprintf(canonical, sizeof canonical, "%s\n%s\n%s\n", method, path, query);
    snprintf(names, sizeof names, "%s", signed_headers);
    char *save = NULL;
    for (char *name = strtok_r(names, ";", &save); name; name = strtok_r(NULL, ";", &save)) {
        assert_true(header_value(head, name, value, sizeof value));
        n += snprintf(canonical + n, sizeof canonical - (size_t)n, "%s:%s\n", name, value);
    }
    snprintf(canonical + n, sizeof canonical - (size_t)n, "\n%s\n%s", signed_headers, payload_hash);
    char canonical_hash[65], to_sign[512], key[128], expected[65];
    sha256_hex(canonical, canonical_hash);
    snprintf(to_sign, sizeof to_sign, "AWS4-HMAC-SHA256\n%s\n%s/us-east-1/s3/aws4_request\n%s",
             date, scope_date, canonical_hash);
    uint8_t k[32];
    snprintf(key, sizeof key, "AWS4%s", secret);
    hmac_sha256(key, strlen(key), scope_date, k);
    hmac_sha256(k, 32, "us-east-1", k);
    hmac_sha256(k, 32, "s3", k);
    hmac_sha256(k, 32, "aws4_request", k);
    hmac_sha256(k, 32, to_sign, k);
    for (int i = 0; i < 32; i++)
        sprintf(expected + 2 * i, "%02x", k[i]);
    assert_string_equal(signature, expected);
}

#endif
