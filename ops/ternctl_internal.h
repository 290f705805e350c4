/* ternctl internals shared by ternctl.c (options, signed HTTP, status) and its commands' files. */
#ifndef TERN_OPS_TERNCTL_INTERNAL_H
#define TERN_OPS_TERNCTL_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EXIT_OK     0
#define EXIT_FAILED 1
#define EXIT_USAGE  2
#define EXIT_HELP   (-1) /* internal: help was printed, exit 0 */

#define OPS__COMMAND_OPTIONS_MAX 16 /* command options on one command line */
#define OPS__BUCKET_BYTES_MAX    63 /* S3's (and the node's) longest bucket name */

/* An option only some command takes (e.g. "--rpo 30s" of "bucket policy set"). */
typedef struct ops__command_option {
    int index;        /* in ops__bucket_option_names */
    const char *name; /* without the leading "--" */
    const char *value;
} ops__command_option;

typedef struct ops__options {
    const char *endpoint; /* "http[s]://HOST:PORT", without a trailing '/' */
    char *endpoint_owned;
    const char *access_key;
    const char *secret_key;
    bool json_output;
    long timeout_ms;
    FILE *out;
    FILE *err;
    /* In command-line order; the command they belong to checks them. */
    ops__command_option command_options[OPS__COMMAND_OPTIONS_MAX];
    size_t command_option_count;
} ops__options;

typedef struct ops__response {
    char *data; /* NUL-terminated when non-NULL; the caller frees it */
    size_t len;
    bool too_big;
} ops__response;

/* One "ternctl: ..." line, then the usage text, all on o->err; returns EXIT_USAGE. */
int ops__usage_error(const ops__options *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Signed (SigV4) request with an empty body: method "GET" or "POST", target the path with an
 * optional query that must already be in SigV4 canonical form (parameters sorted by name,
 * values encoded by ops__query_encode), because libcurl before 8.x signs the query verbatim.
 * Returns EXIT_OK with the HTTP status and body, or EXIT_FAILED after printing why.
 */
int ops__http_request(const ops__options *o, const char *method, const char *target, long *status,
                      ops__response *body);

/* The same with any method ("PUT", "DELETE", ...) and, unless json_body is NULL, a JSON body
 * (Content-Type application/json) whose SHA-256 is signed as the payload hash. */
int ops__http_send(const ops__options *o, const char *method, const char *target,
                   const char *json_body, long *status, ops__response *body);

/* The Code and Message of an S3 XML error body, entities decoded (message "" when it has
 * none); false if the body is not one. */
bool ops__s3_error(const ops__response *body, char *code, size_t code_len, char *message,
                   size_t message_len);

/* Prints why a request got a non-2xx answer: refused credentials, an S3 XML error, or an
 * excerpt of the body. */
void ops__report_http_error(const ops__options *o, const char *method, const char *target,
                            long status, const ops__response *body);

/* Appends text to out (of out_len bytes) percent-encoded as SigV4 wants query values: all but
 * A-Z a-z 0-9 - _ . ~ as %XX. Returns false if it does not fit. */
bool ops__query_encode(const char *text, char *out, size_t out_len);

/* The document, indented, and a newline, on o->out. */
void ops__print_json(const ops__options *o, const json_t *root);

/* Field key of obj: a number (reals and integers alike) or NAN when absent; a string or "-". */
double ops__json_number(const json_t *obj, const char *key);
const char *ops__json_string(const json_t *obj, const char *key);

/* "123 B", or "4.5 KiB (4567 bytes)": exact and readable at once. */
void ops__format_bytes(uint64_t bytes, char *out, size_t out_len);

/* Dollars with four significant digits, so that tiny amounts do not read as 0: "0", "12.50",
 * "0.000186", "1.860e-15"; "-" when not finite (absent). */
void ops__format_usd(double usd, char *out, size_t out_len);

/*
 * "ternctl cluster ...": args are the words after "cluster". ops__cluster_parse checks them
 * (usage errors are EXIT_USAGE, before any credentials are needed) into an opaque command
 * that ops__cluster_run then executes; returns EXIT_OK on success.
 */
typedef struct ops__cluster_cmd {
    int kind;
    unsigned long long node_id;
    const char *peer;
} ops__cluster_cmd;

int ops__cluster_parse(const ops__options *o, int argc, char **argv, ops__cluster_cmd *cmd);
int ops__cluster_run(const ops__options *o, const ops__cluster_cmd *cmd);
/* The "Commands:" lines of the usage text for the cluster commands. */
extern const char ops__cluster_usage[];

/* "ternctl egress" (ternctl_egress.c): GET /_tern/egress as a table or, with -o json, the
 * document; EXIT_OK, or EXIT_FAILED after saying why (unreachable, no topology, ...). */
int ops__egress_run(const ops__options *o);
extern const char ops__egress_usage[];

/*
 * "ternctl bucket policy get|set|reset BUCKET" (ternctl_bucket.c): args are the words after
 * "bucket"; the options of "set" come in o->command_options. ops__bucket_parse reports usage
 * errors (EXIT_USAGE) before credentials are needed; ops__bucket_run sends the request.
 */
typedef struct ops__bucket_cmd {
    int kind;
    const char *bucket;
    long long min_regions;              /* 0: not given */
    const char *allowed_regions;        /* comma-separated, "" for none; NULL: not given */
    const char *pinned_regions;         /* the same */
    long long rpo_seconds, rto_seconds; /* -1: not given */
} ops__bucket_cmd;

int ops__bucket_parse(const ops__options *o, int argc, char **argv, ops__bucket_cmd *cmd);
int ops__bucket_run(const ops__options *o, const ops__bucket_cmd *cmd);
extern const char ops__bucket_usage[];
/* The long options of "bucket policy set", NULL-terminated, parsed with the node options. */
extern const char *const ops__bucket_option_names[];

/*
 * "ternctl placement explain BUCKET/KEY | stats" (ternctl_placement.c): args are the words after
 * "placement". ops__placement_parse reports usage errors (EXIT_USAGE) before credentials are
 * needed; ops__placement_run makes the GET and prints a table or, with -o json, the document.
 */
typedef struct ops__placement_cmd {
    int kind;
    const char *object; /* "BUCKET/KEY" as given, for messages */
    char bucket[OPS__BUCKET_BYTES_MAX + 1];
    const char *key; /* everything after the first '/' */
} ops__placement_cmd;

int ops__placement_parse(const ops__options *o, int argc, char **argv, ops__placement_cmd *cmd);
int ops__placement_run(const ops__options *o, const ops__placement_cmd *cmd);
extern const char ops__placement_usage[];

#endif
