/* api internals shared across api/ files: buffers, URIs, SigV4, aws-chunked, XML, S3 rules. */
#ifndef TERN_API_INTERNAL_H
#define TERN_API_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* ---------------- growable byte buffer ---------------- */

typedef struct {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
} api__buf;

int api__buf_append(api__buf *b, const void *data, size_t len);
int api__buf_append_str(api__buf *b, const char *s);
int api__buf_printf(api__buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void api__buf_reset(api__buf *b); /* len = 0, keeps memory */
void api__buf_free(api__buf *b);

/* ---------------- URIs and queries ---------------- */

/* Percent-decodes (no '+' to space: S3 paths keep '+'); TERN_EPARSE on bad escapes. Malloc'd. */
int api__uri_decode(const char *in, size_t len, char **out, size_t *out_len);
/* Query-string decoding: like api__uri_decode but '+' becomes a space. */
int api__query_decode(const char *in, size_t len, char **out, size_t *out_len);
/* SigV4 encoding: keep A-Z a-z 0-9 - . _ ~, '/' kept unless encode_slash, others %XX uppercase. */
int api__uri_encode(api__buf *out, const char *s, size_t len, bool encode_slash);

typedef struct {
    char *name;  /* decoded */
    char *value; /* decoded; "" when the parameter had no '=' */
} api__param;

/* Splits "a=1&b&c=x%20y" into decoded parameters (in order). */
int api__query_parse(const char *query, size_t len, api__param **out, size_t *count);
void api__query_free(api__param *params, size_t count);
/* The value of the first parameter with that exact name, or NULL. */
const char *api__query_get(const api__param *params, size_t count, const char *name);

/* ---------------- SigV4 ---------------- */

typedef struct {
    const char *name; /* as received (any case) */
    const char *value;
} api__header;

typedef struct {
    const char *method;
    const char *raw_path;  /* as received, still percent-encoded, without the query */
    const char *raw_query; /* as received without '?', "" when none */
    size_t header_count;
    const api__header *headers;
} api__sigv4_request;

/* Parsed "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=...,
 * Signature=..." */
typedef struct {
    char access_key[129];
    char date8[9]; /* yyyymmdd from the credential scope */
    char region[64];
    char service[32];
    char signed_headers[2048]; /* "host;x-amz-date", lowercase, ';'-separated */
    char signature[65];
} api__sigv4_auth;

int api__sigv4_parse_authorization(const char *value, api__sigv4_auth *out);

/*
 * Canonical request per the SigV4 spec: method, canonical URI (each path
 * segment URI-encoded once more for non-S3 services; for S3 the path is
 * normalized by decoding then encoding once with '/' kept), canonical query
 * (sorted by encoded name then value, each encoded), canonical headers for
 * signed_headers (lowercased names, trimmed values with inner space runs
 * collapsed, multiple values joined with ','), the signed header list and the
 * payload hash. `exclude_param` (e.g. "X-Amz-Signature") is left out of the
 * query, or NULL. s3_mode selects the S3 path rule (no double encoding, no
 * dot-segment normalization).
 */
int api__sigv4_canonical_request(const api__sigv4_request *req, const char *signed_headers,
                                 const char *payload_hash, const char *exclude_param, bool s3_mode,
                                 api__buf *out);
/* "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256(canonical)>" */
int api__sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical,
                              api__buf *out);
void api__sigv4_signing_key(const char *secret, const char *date8, const char *region,
                            const char *service, uint8_t out[32]);
/* Lowercase hex HMAC-SHA256(key, msg). */
void api__hmac_sha256_hex(const uint8_t *key, size_t key_len, const char *msg, size_t msg_len,
                          char out_hex[65]);
void api__sha256_hex(const void *data, size_t len, char out_hex[65]);

/* The credential store the verifier consults. Returns the secret or NULL. */
typedef const char *(*api__secret_lookup_fn)(void *ctx, const char *access_key);

enum {
    API_PAYLOAD_SIGNED = 0,                 /* x-amz-content-sha256 is the hex hash of the body */
    API_PAYLOAD_UNSIGNED,                   /* UNSIGNED-PAYLOAD (and presigned URLs) */
    API_PAYLOAD_STREAMING_SIGNED,           /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD (aws-chunked) */
    API_PAYLOAD_STREAMING_SIGNED_TRAILER,   /* STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER */
    API_PAYLOAD_STREAMING_UNSIGNED_TRAILER, /* STREAMING-UNSIGNED-PAYLOAD-TRAILER */
};

typedef struct {
    /* On failure: the S3 error code and HTTP status to answer with, and a message. */
    const char *s3_code; /* "AccessDenied", "SignatureDoesNotMatch", "RequestTimeTooSkewed",
                            "InvalidAccessKeyId", "AuthorizationHeaderMalformed",
                            "AuthorizationQueryParametersError", "MissingSecurityHeader",
                            "InvalidArgument", "XAmzContentSHA256Mismatch" */
    int http_status;
    char message[256];
    /* On success: */
    char access_key[129];
    int payload_mode;        /* API_PAYLOAD_* */
    char payload_sha256[65]; /* for API_PAYLOAD_SIGNED: the declared hex hash */
    /* For streaming payloads: what chunk signatures chain from. */
    uint8_t signing_key[32];
    char seed_signature[65];
    char amz_date[17];
    char scope[160];
} api__auth_result;

/*
 * Verifies a request signed with SigV4 in the Authorization header or in the
 * query string (presigned: X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date,
 * X-Amz-Expires <= 604800, X-Amz-SignedHeaders, X-Amz-Signature). Returns 0
 * when the signature is valid, otherwise TERN_EAUTH with out->s3_code,
 * http_status and message set. Refuses: no credentials (AccessDenied 403),
 * unknown key (InvalidAccessKeyId 403), malformed header or query
 * (AuthorizationHeaderMalformed / AuthorizationQueryParametersError 400),
 * header auth more than 15 minutes from now_ms (RequestTimeTooSkewed 403),
 * expired presigned URL (AccessDenied 403, "Request has expired"), wrong
 * signature (SignatureDoesNotMatch 403), host not signed (AccessDenied).
 */
int api__sigv4_verify(const api__sigv4_request *req, int64_t now_ms, api__secret_lookup_fn lookup,
                      void *lookup_ctx, api__auth_result *out);

/* ---------------- aws-chunked payload decoding ---------------- */

/*
 * Incremental decoder of an aws-chunked body:
 *   <hex-size>[;chunk-signature=<64 hex>]\r\n<data>\r\n ... 0[;chunk-signature=..]\r\n
 *   [trailer-name:value\r\n ...]\r\n
 * With verify (the signed modes), each chunk signature is checked against
 *   HMAC(signing_key, "AWS4-HMAC-SHA256-PAYLOAD\n" date "\n" scope "\n" prev
 *                     "\n" sha256("") "\n" sha256(chunk))
 * chaining from the seed signature. Data is handed to the callback as it
 * arrives, before its chunk's signature is known to be good: the caller must
 * not commit anything until api__chunked_finish() returns 0.
 */
typedef int (*api__chunk_data_fn)(void *ctx, const char *data, size_t len);

typedef struct api__chunked api__chunked;

/* auth may be NULL for the unsigned mode. chunk_bytes_max bounds a chunk's declared size. */
api__chunked *api__chunked_new(const api__auth_result *auth, size_t chunk_bytes_max);
void api__chunked_free(api__chunked *d);
/*
 * Feeds wire bytes; calls fn for decoded data. Returns 0, the callback's
 * negative result, or TERN_EPARSE (framing) / TERN_EAUTH (chunk signature)
 * with api__chunked_error() describing it.
 */
int api__chunked_feed(api__chunked *d, const char *in, size_t len, api__chunk_data_fn fn,
                      void *ctx);
/* 0 when the final chunk (and trailers) were fully received and verified, else TERN_EPARSE. */
int api__chunked_finish(api__chunked *d);
const char *api__chunked_error(const api__chunked *d);
uint64_t api__chunked_decoded_bytes(const api__chunked *d);
/*
 * The value of a trailer received after the final chunk (e.g. "x-amz-checksum-crc32"; name
 * matched case-insensitively), or NULL. Valid once api__chunked_finish() has returned 0, until
 * api__chunked_free(); in the signed trailer mode the trailers are covered by the verified
 * x-amz-trailer-signature. The caller checks checksums against the decoded data.
 */
const char *api__chunked_trailer(const api__chunked *d, const char *name);

/* ---------------- XML ---------------- */

/* Appends s with & < > " ' escaped. */
int api__xml_escape(api__buf *out, const char *s, size_t len);
/* Appends <tag>escaped(value)</tag>. */
int api__xml_element(api__buf *out, const char *tag, const char *value);

typedef struct {
    uint32_t part_number;
    char etag[80]; /* unquoted */
} api__completed_part;

/*
 * Parsers of the request bodies S3 accepts. They reject anything that is not
 * well-formed XML, any DOCTYPE or entity declaration, nesting over 16 levels,
 * and missing required elements, with TERN_EPARSE and a message in errmsg
 * (the server answers MalformedXML).
 */
int api__xml_parse_complete_multipart(const char *body, size_t len, api__completed_part **parts,
                                      size_t *count, char *errmsg, size_t errmsg_len);
/* <Delete><Quiet>true</Quiet><Object><Key>k</Key></Object>...</Delete>; at most 1000 keys. */
int api__xml_parse_delete(const char *body, size_t len, char ***keys, size_t *count, bool *quiet,
                          char *errmsg, size_t errmsg_len);
/* <CreateBucketConfiguration><LocationConstraint>r</LocationConstraint></...>; *region may be NULL.
 */
int api__xml_parse_create_bucket(const char *body, size_t len, char **region, char *errmsg,
                                 size_t errmsg_len);
void api__strv_free(char **v, size_t count);

/* ---------------- S3 rules ---------------- */

/* S3 bucket naming rules (3-63 chars, a-z 0-9 . -, ...). */
bool api__bucket_name_valid(const char *name);
/* 0, TERN_ETOOBIG (over 1024 bytes: KeyTooLongError) or TERN_EINVAL (empty, invalid UTF-8, NUL). */
int api__object_key_check(const char *key, size_t len);

/*
 * Parses a Range header against an object size. Returns 0 with the inclusive
 * [*first, *last] range; 1 when the header should be ignored (not a single
 * bytes range: the whole object is served); TERN_ERANGE when unsatisfiable
 * (416 InvalidRange).
 */
int api__range_parse(const char *header, uint64_t size, uint64_t *first, uint64_t *last);

/* IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT" (30 bytes with NUL). */
void api__http_date_format(int64_t ms, char out[32]);
/* Accepts IMF-fixdate, RFC 850 and asctime forms; TERN_EPARSE otherwise. */
int api__http_date_parse(const char *s, int64_t *ms);
/* "2009-10-12T17:50:30.000Z" */
void api__iso8601_format(int64_t ms, char out[32]);
/* "20130524T000000Z" -> ms; TERN_EPARSE otherwise. */
int api__amz_date_parse(const char *s, int64_t *ms);

/* The HTTP status of an S3 error code ("NoSuchKey" -> 404), 500 when unknown. */
int api__s3_error_status(const char *s3_code);
/* An S3 XML error document. */
int api__s3_error_xml(api__buf *out, const char *s3_code, const char *message, const char *resource,
                      const char *request_id);

#endif
