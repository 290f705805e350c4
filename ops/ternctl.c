/* ternctl: the operator's CLI; signed (SigV4) requests to a node's /_tern admin API via libcurl. */
#include <assert.h>
#include <ctype.h>
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ops.h"
#include "ternctl_internal.h"
#include "ternctl_sim.h"

#define DEFAULT_ENDPOINT     "http://127.0.0.1:9000"
#define DEFAULT_TIMEOUT_SECS 10.0
#define RESPONSE_BYTES_MAX   (8u << 20) /* a status document is tiny; refuse anything huge */
#define TABLE_ROWS_MAX       64
/* SigV4 signs a hash of the payload; most admin requests are bodiless (GET, or POST with
 * their arguments in the query). */
#define EMPTY_BODY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* Command options are getopt values from here up, one per ops__bucket_option_names entry. */
#define OPT_COMMAND_BASE         512
#define COMMAND_OPTION_NAMES_MAX 16

static void print_usage(FILE *f)
{
    fprintf(f,
            "Usage: ternctl [OPTIONS] COMMAND\n"
            "\n"
            "Operate a tern node through its admin API (requests are signed with AWS SigV4).\n"
            "\n"
            "Commands:\n"
            "  status        show the node's identity, uptime and storage statistics\n"
            "                (GET /_tern/status)\n"
            "%s"
            "%s"
            "%s"
            "%s"
            "%s"
            "  help          show this help\n"
            "\n"
            "Options:\n"
            "  --endpoint URL        node to talk to (env TERN_ENDPOINT; default %s)\n"
            "  --access-key KEY      access key id (env TERN_ACCESS_KEY, then AWS_ACCESS_KEY_ID)\n"
            "  --secret-key SECRET   secret key (env TERN_SECRET_KEY, then AWS_SECRET_ACCESS_KEY)\n"
            "  -o, --output FORMAT   table or json (default table)\n"
            "  --timeout SECONDS     give up on a request after this long (default 10)\n"
            "  -h, --help            show this help\n"
            "\n"
            "Exit status: 0 success, 1 the command failed, 2 usage error.\n",
            ops__cluster_usage, ops__bucket_usage, ops__placement_usage, ops__egress_usage,
            ops__sim_usage, DEFAULT_ENDPOINT);
}

int ops__usage_error(const ops__options *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ternctl: ", o->err);
    vfprintf(o->err, fmt, ap);
    va_end(ap);
    fputs("\n\n", o->err);
    print_usage(o->err);
    return EXIT_USAGE;
}

static const char *first_env(const char *a, const char *b)
{
    const char *v = getenv(a);
    if (v != NULL && v[0] != '\0') return v;
    v = b != NULL ? getenv(b) : NULL;
    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* Seconds (fractions allowed) to milliseconds; -1 if not a positive number up to a day. */
static long parse_timeout_ms(const char *text)
{
    char *end = NULL;
    double seconds = strtod(text, &end);
    if (end == text || *end != '\0' || !(seconds > 0) || seconds > 86400) return -1;
    long ms = (long)(seconds * 1000.0 + 0.5);
    return ms > 0 ? ms : 1;
}

static int set_endpoint(ops__options *o, const char *url)
{
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return ops__usage_error(o, "invalid endpoint '%s': expected http://HOST:PORT", url);
    free(o->endpoint_owned);
    o->endpoint_owned = strdup(url);
    if (o->endpoint_owned == NULL) {
        fprintf(o->err, "ternctl: out of memory\n");
        return EXIT_FAILED;
    }
    /* The path is appended to it, so a trailing '/' would double up. */
    size_t len = strlen(o->endpoint_owned);
    while (len > 0 && o->endpoint_owned[len - 1] == '/')
        o->endpoint_owned[--len] = '\0';
    o->endpoint = o->endpoint_owned;
    return EXIT_OK;
}

/* Keeps an option of one command ("bucket policy set --rpo 30s") for that command's parser. */
static int add_command_option(ops__options *o, int index, const char *value)
{
    if (o->command_option_count == OPS__COMMAND_OPTIONS_MAX)
        return ops__usage_error(o, "too many options (at most %d)", OPS__COMMAND_OPTIONS_MAX);
    o->command_options[o->command_option_count].name = ops__bucket_option_names[index];
    o->command_options[o->command_option_count].index = index;
    o->command_options[o->command_option_count].value = value;
    o->command_option_count++;
    return EXIT_OK;
}

/*
 * Options may come before or after the command. The options of commands are parsed here too,
 * in one getopt pass, so that node options and command options mix in any order
 * ("bucket policy set b --rpo 30s -o json"); the command checks its own.
 * Returns EXIT_OK, EXIT_HELP or an exit code.
 */
static int parse_options(ops__options *o, int argc, char **argv)
{
    enum { OPT_ENDPOINT = 256, OPT_ACCESS, OPT_SECRET, OPT_TIMEOUT };
    static const struct option node_options[] = {
        {"endpoint", required_argument, NULL, OPT_ENDPOINT},
        {"access-key", required_argument, NULL, OPT_ACCESS},
        {"secret-key", required_argument, NULL, OPT_SECRET},
        {"output", required_argument, NULL, 'o'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
    };
    struct option longopts[TERN_ARRAY_LEN(node_options) + COMMAND_OPTION_NAMES_MAX + 1];
    size_t count = 0;
    for (; count < TERN_ARRAY_LEN(node_options); count++)
        longopts[count] = node_options[count];
    for (int i = 0; ops__bucket_option_names[i] != NULL; i++) {
        assert(count + 1 < TERN_ARRAY_LEN(longopts));
        longopts[count++] = (struct option){ops__bucket_option_names[i], required_argument, NULL,
                                            OPT_COMMAND_BASE + i};
    }
    longopts[count] = (struct option){NULL, 0, NULL, 0};
    const char *endpoint = first_env("TERN_ENDPOINT", NULL);
    o->access_key = first_env("TERN_ACCESS_KEY", "AWS_ACCESS_KEY_ID");
    o->secret_key = first_env("TERN_SECRET_KEY", "AWS_SECRET_ACCESS_KEY");
    o->timeout_ms = (long)(DEFAULT_TIMEOUT_SECS * 1000);
    optind = 0; /* glibc: re-initialize, so ops_main can run more than once in a process */
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":ho:", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_ENDPOINT:
            endpoint = optarg;
            break;
        case OPT_ACCESS:
            o->access_key = optarg;
            break;
        case OPT_SECRET:
            o->secret_key = optarg;
            break;
        case 'h':
            print_usage(o->out);
            return EXIT_HELP;
        case 'o':
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "table") != 0)
                return ops__usage_error(o, "invalid output format '%s': expected table or json",
                                        optarg);
            o->json_output = strcmp(optarg, "json") == 0;
            break;
        case OPT_TIMEOUT:
            o->timeout_ms = parse_timeout_ms(optarg);
            if (o->timeout_ms < 0)
                return ops__usage_error(o, "invalid timeout '%s': expected a number of seconds",
                                        optarg);
            break;
        case ':':
            return ops__usage_error(o, "option '%s' requires an argument", argv[optind - 1]);
        default:
            if (opt >= OPT_COMMAND_BASE) {
                int rc = add_command_option(o, opt - OPT_COMMAND_BASE, optarg);
                if (rc != EXIT_OK) return rc;
                break;
            }
            /* glibc reports "--flag=value" on a no-argument flag with optopt = its value. */
            if (optopt == 'h' || optopt >= OPT_ENDPOINT)
                return ops__usage_error(o, "option '%s' takes no argument", argv[optind - 1]);
            if (optopt != 0) {
                char name[3] = {'-', (char)optopt, '\0'};
                return ops__usage_error(o, "unknown option '%s'", name);
            }
            return ops__usage_error(o, "unknown option '%s'", argv[optind - 1]);
        }
    }
    return set_endpoint(o, endpoint != NULL ? endpoint : DEFAULT_ENDPOINT);
}

static size_t collect_body(char *data, size_t size, size_t count, void *ctx)
{
    ops__response *body = ctx;
    size_t n = size * count;
    if (body->len + n > RESPONSE_BYTES_MAX) {
        body->too_big = true;
        return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
    }
    char *grown = realloc(body->data, body->len + n + 1);
    if (grown == NULL) return 0;
    memcpy(grown + body->len, data, n);
    body->data = grown;
    body->len += n;
    body->data[body->len] = '\0';
    return n;
}

static void report_curl_error(const ops__options *o, const char *method, const char *url,
                              CURLcode code, const char *errbuf, const ops__response *body)
{
    const char *detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(code);
    switch (code) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
        fprintf(o->err, "ternctl: cannot reach the node at %s: %s\n", o->endpoint, detail);
        break;
    default:
        if (body->too_big)
            fprintf(o->err, "ternctl: %s %s: response larger than %u bytes\n", method, url,
                    RESPONSE_BYTES_MAX);
        else
            fprintf(o->err, "ternctl: %s %s failed: %s\n", method, url, detail);
    }
}

/* The x-amz-content-sha256 header for a payload: SigV4 signs its hash, and the node checks the
 * body against it. */
static void payload_hash_header(const char *payload, char *out, size_t out_len)
{
    uint8_t digest[SHA256_DIGEST_LENGTH];
    char hex[2 * SHA256_DIGEST_LENGTH + 1];
    SHA256((const uint8_t *)payload, strlen(payload), digest);
    tern_hex(digest, sizeof digest, hex);
    snprintf(out, out_len, "x-amz-content-sha256: %s", hex);
}

int ops__http_request(const ops__options *o, const char *method, const char *target, long *status,
                      ops__response *body)
{
    return ops__http_send(o, method, target, NULL, status, body);
}

int ops__http_send(const ops__options *o, const char *method, const char *target,
                   const char *json_body, long *status, ops__response *body)
{
    static const char *const json_headers[] = {
        "Accept: application/json",
        /* No "Expect:" to turn off 100-continue: libcurl 7.88 would sign the suppressed header
         * and the node would not find it. libcurl asks for 100-continue only above 1 MiB,
         * and admin bodies are at most a few KiB. */
        "Content-Type: application/json",
    };
    char errbuf[CURL_ERROR_SIZE] = "";
    char hash_header[128];
    char *url = NULL, *userpwd = NULL;
    struct curl_slist *headers = NULL, *more = NULL;
    int rc = EXIT_FAILED;
    CURLcode code;
    CURL *curl = curl_easy_init();
    if (curl == NULL) goto nomem;
    if (asprintf(&url, "%s%s", o->endpoint, target) < 0) {
        url = NULL; /* asprintf leaves it undefined on failure */
        goto nomem;
    }
    if (asprintf(&userpwd, "%s:%s", o->access_key, o->secret_key) < 0) {
        userpwd = NULL;
        goto nomem;
    }
    if (json_body != NULL)
        payload_hash_header(json_body, hash_header, sizeof hash_header);
    else
        snprintf(hash_header, sizeof hash_header, "x-amz-content-sha256: " EMPTY_BODY_SHA256);
    headers = curl_slist_append(NULL, hash_header);
    if (headers == NULL) goto nomem;
    /* Without a body only the Accept header applies. */
    for (size_t i = 0; i < (json_body != NULL ? TERN_ARRAY_LEN(json_headers) : 1); i++) {
        more = curl_slist_append(headers, json_headers[i]);
        if (more == NULL) goto nomem;
        headers = more;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    } else {
        /* POSTFIELDS makes any method carry the body; the custom request names the verb (and
         * libcurl's signer signs that verb). */
        if (json_body != NULL || strcmp(method, "POST") == 0) {
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json_body != NULL ? json_body : "");
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                             (long)(json_body != NULL ? strlen(json_body) : 0));
        }
        if (strcmp(method, "POST") != 0) curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
    curl_easy_setopt(curl, CURLOPT_USERPWD, userpwd);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "ternctl/" TERN_VERSION);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, o->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM games inside a library */
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
    code = curl_easy_perform(curl);
    if (code != CURLE_OK) {
        report_curl_error(o, method, url, code, errbuf, body);
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    rc = EXIT_OK;
    goto out;
nomem:
    fprintf(o->err, "ternctl: out of memory\n");
out:
    curl_slist_free_all(headers);
    free(userpwd);
    free(url);
    if (curl != NULL) curl_easy_cleanup(curl);
    return rc;
}

/* The text of the first <tag>...</tag> in an S3 XML error, entities decoded; false if absent. */
static bool xml_tag(const char *xml, const char *tag, char *out, size_t out_len)
{
    char open[32], close[32];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *start = xml ? strstr(xml, open) : NULL;
    if (start == NULL) return false;
    start += strlen(open);
    const char *end = strstr(start, close);
    if (end == NULL) return false;
    static const struct {
        const char *entity;
        char c;
    } entities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t n = 0;
    for (const char *p = start; p < end && n + 1 < out_len;) {
        size_t i;
        for (i = 0; i < TERN_ARRAY_LEN(entities); i++) {
            size_t len = strlen(entities[i].entity);
            if ((size_t)(end - p) >= len && strncmp(p, entities[i].entity, len) == 0) {
                out[n++] = entities[i].c;
                p += len;
                break;
            }
        }
        if (i == TERN_ARRAY_LEN(entities)) out[n++] = *p++;
    }
    out[n] = '\0';
    return true;
}

/* The first line of a non-XML body, trimmed and bounded, for error messages. */
static void body_excerpt(const ops__response *body, char *out, size_t out_len)
{
    size_t n = 0;
    const char *p = body->data ? body->data : "";
    while (*p && isspace((unsigned char)*p))
        p++;
    for (; *p && *p != '\n' && *p != '\r' && n + 1 < out_len; p++)
        out[n++] = isprint((unsigned char)*p) ? *p : '?';
    out[n] = '\0';
}

bool ops__s3_error(const ops__response *body, char *code, size_t code_len, char *message,
                   size_t message_len)
{
    message[0] = '\0';
    if (!xml_tag(body->data, "Code", code, code_len)) return false;
    if (!xml_tag(body->data, "Message", message, message_len)) message[0] = '\0';
    return true;
}

void ops__report_http_error(const ops__options *o, const char *method, const char *target,
                            long status, const ops__response *body)
{
    char code[128], message[512];
    bool has_code = ops__s3_error(body, code, sizeof code, message, sizeof message);
    if (status == 401 || status == 403) {
        if (has_code)
            fprintf(o->err, "ternctl: the node refused the credentials (%s): %s\n", code,
                    message[0] ? message : "no message");
        else
            fprintf(o->err, "ternctl: the node refused the credentials (HTTP %ld)\n", status);
        return;
    }
    if (has_code) {
        fprintf(o->err, "ternctl: %s %s%s: HTTP %ld (%s): %s\n", method, o->endpoint, target,
                status, code, message[0] ? message : "no message");
        return;
    }
    body_excerpt(body, message, 200);
    fprintf(o->err, "ternctl: %s %s%s: HTTP %ld%s%s\n", method, o->endpoint, target, status,
            message[0] ? ": " : "", message);
}

/* GET path and parse the JSON object it returns; NULL (after printing why) on any failure. */
static json_t *get_json(const ops__options *o, const char *path)
{
    ops__response body = {0};
    long status = 0;
    json_t *root = NULL;
    if (ops__http_request(o, "GET", path, &status, &body) != EXIT_OK) goto out;
    if (status != 200) {
        ops__report_http_error(o, "GET", path, status, &body);
        goto out;
    }
    json_error_t error;
    root = json_loadb(body.data ? body.data : "", body.len, 0, &error);
    if (root == NULL) {
        fprintf(o->err, "ternctl: GET %s%s returned invalid JSON: %s (line %d, column %d)\n",
                o->endpoint, path, error.text, error.line, error.column);
    } else if (!json_is_object(root)) {
        fprintf(o->err, "ternctl: GET %s%s returned JSON that is not an object\n", o->endpoint,
                path);
        json_decref(root);
        root = NULL;
    }
out:
    free(body.data);
    return root;
}

void ops__format_bytes(uint64_t bytes, char *out, size_t out_len)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(out, out_len, "%llu B", (unsigned long long)bytes);
        return;
    }
    double value = (double)bytes / 1024.0;
    size_t unit = 0;
    while (value >= 1024.0 && unit + 1 < TERN_ARRAY_LEN(units)) {
        value /= 1024.0;
        unit++;
    }
    snprintf(out, out_len, "%.1f %s (%llu bytes)", value, units[unit], (unsigned long long)bytes);
}

static void format_duration(uint64_t seconds, char *out, size_t out_len)
{
    uint64_t d = seconds / 86400, h = seconds / 3600 % 24, m = seconds / 60 % 60, s = seconds % 60;
    if (d > 0)
        snprintf(out, out_len, "%llud %lluh %llum %llus", (unsigned long long)d,
                 (unsigned long long)h, (unsigned long long)m, (unsigned long long)s);
    else if (h > 0)
        snprintf(out, out_len, "%lluh %llum %llus", (unsigned long long)h, (unsigned long long)m,
                 (unsigned long long)s);
    else if (m > 0)
        snprintf(out, out_len, "%llum %llus", (unsigned long long)m, (unsigned long long)s);
    else
        snprintf(out, out_len, "%llus", (unsigned long long)s);
}

enum value_format { FMT_PLAIN, FMT_BYTES, FMT_DURATION, FMT_RATIO };

typedef struct {
    const char *label;
    const char *key; /* in the object, or in "storage" when storage is true */
    bool storage;
    enum value_format format;
} status_field;

static const status_field status_fields[] = {
    {"Node ID", "node_id", false, FMT_PLAIN},
    {"Region", "region", false, FMT_PLAIN},
    {"Version", "version", false, FMT_PLAIN},
    {"Uptime", "uptime_seconds", false, FMT_DURATION},
    {"S3 listen", "s3_listen", false, FMT_PLAIN},
    {"Data dir", "data_dir", false, FMT_PLAIN},
    {"Buckets", "buckets", true, FMT_PLAIN},
    {"Objects", "objects", true, FMT_PLAIN},
    {"Logical bytes", "logical_bytes", true, FMT_BYTES},
    {"Blocks", "blocks", true, FMT_PLAIN},
    {"Block bytes", "block_bytes", true, FMT_BYTES},
    {"Referenced bytes", "referenced_block_bytes", true, FMT_BYTES},
    {"Dedup ratio", "dedup_ratio", true, FMT_RATIO},
    {"Disk bytes", "disk_bytes", true, FMT_BYTES},
    {"Corruptions", "corruptions", true, FMT_PLAIN},
};

/* Any JSON scalar as table text; "-" for null, absent or a nested value. */
static void format_value(const json_t *v, enum value_format format, char *out, size_t out_len)
{
    if (json_is_string(v)) {
        snprintf(out, out_len, "%s", json_string_value(v));
    } else if (json_is_integer(v) && json_integer_value(v) >= 0 && format == FMT_BYTES) {
        ops__format_bytes((uint64_t)json_integer_value(v), out, out_len);
    } else if (json_is_integer(v) && json_integer_value(v) >= 0 && format == FMT_DURATION) {
        format_duration((uint64_t)json_integer_value(v), out, out_len);
    } else if (json_is_integer(v)) {
        snprintf(out, out_len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(out, out_len, format == FMT_RATIO ? "%.2f" : "%g", json_real_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(out, out_len, "%s", json_is_true(v) ? "yes" : "no");
    } else {
        snprintf(out, out_len, "-");
    }
}

static bool is_known_field(const char *key, bool storage)
{
    for (size_t i = 0; i < TERN_ARRAY_LEN(status_fields); i++)
        if (status_fields[i].storage == storage && strcmp(status_fields[i].key, key) == 0)
            return true;
    return storage ? false : strcmp(key, "storage") == 0;
}

typedef struct {
    char label[64];
    char value[256];
} table_row;

/* Fields this ternctl does not know yet still show up, after the known ones. */
static size_t add_unknown_rows(const json_t *obj, bool storage, table_row *rows, size_t n)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        if (n == TABLE_ROWS_MAX || is_known_field(key, storage)) continue;
        snprintf(rows[n].label, sizeof rows[n].label, "%s%s", storage ? "storage." : "", key);
        format_value(v, FMT_PLAIN, rows[n].value, sizeof rows[n].value);
        n++;
    }
    return n;
}

static void print_status_table(FILE *out, const json_t *root)
{
    table_row rows[TABLE_ROWS_MAX];
    size_t n = 0;
    const json_t *storage = json_object_get(root, "storage");
    for (size_t i = 0; i < TERN_ARRAY_LEN(status_fields); i++) {
        const status_field *f = &status_fields[i];
        const json_t *v = json_object_get(f->storage ? storage : root, f->key);
        snprintf(rows[n].label, sizeof rows[n].label, "%s", f->label);
        format_value(v, f->format, rows[n].value, sizeof rows[n].value);
        n++;
    }
    n = add_unknown_rows(root, false, rows, n);
    if (json_is_object(storage)) n = add_unknown_rows(storage, true, rows, n);
    int width = 0;
    for (size_t i = 0; i < n; i++)
        width = TERN_MAX(width, (int)strlen(rows[i].label));
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%-*s  %s\n", width, rows[i].label, rows[i].value);
}

static int cmd_status(const ops__options *o)
{
    json_t *root = get_json(o, "/_tern/status");
    if (root == NULL) return EXIT_FAILED;
    if (o->json_output) {
        ops__print_json(o, root);
    } else {
        print_status_table(o->out, root);
    }
    json_decref(root);
    return EXIT_OK;
}

void ops__print_json(const ops__options *o, const json_t *root)
{
    json_dumpf(root, o->out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', o->out);
}

bool ops__query_encode(const char *text, char *out, size_t out_len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(out);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        bool plain = isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~';
        if (n + (plain ? 1 : 3) >= out_len) return false;
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return true;
}

static int run_command(ops__options *o, int argc, char **argv)
{
    if (optind >= argc) return ops__usage_error(o, "no command given");
    const char *command = argv[optind];
    if (strcmp(command, "help") == 0) {
        print_usage(o->out);
        return EXIT_OK;
    }
    bool cluster = strcmp(command, "cluster") == 0;
    bool egress = strcmp(command, "egress") == 0;
    bool bucket = strcmp(command, "bucket") == 0;
    bool placement = strcmp(command, "placement") == 0;
    ops__cluster_cmd cluster_cmd;
    ops__bucket_cmd bucket_cmd;
    ops__placement_cmd placement_cmd;
    if (!bucket && o->command_option_count > 0)
        return ops__usage_error(o, "option '--%s' applies only to 'bucket policy set'",
                                o->command_options[0].name);
    /* Argument mistakes are reported before credentials are looked at. */
    if (cluster) {
        int rc = ops__cluster_parse(o, argc - optind - 1, argv + optind + 1, &cluster_cmd);
        if (rc != EXIT_OK) return rc;
    } else if (bucket) {
        int rc = ops__bucket_parse(o, argc - optind - 1, argv + optind + 1, &bucket_cmd);
        if (rc != EXIT_OK) return rc;
    } else if (placement) {
        int rc = ops__placement_parse(o, argc - optind - 1, argv + optind + 1, &placement_cmd);
        if (rc != EXIT_OK) return rc;
    } else if (!egress && strcmp(command, "status") != 0) {
        return ops__usage_error(o, "unknown command '%s'", command);
    } else if (optind + 1 < argc) {
        return ops__usage_error(o, "unexpected argument '%s' after the command", argv[optind + 1]);
    }
    if (o->access_key == NULL || o->secret_key == NULL) {
        fprintf(o->err, "ternctl: no credentials: set --access-key/--secret-key or "
                        "TERN_ACCESS_KEY/TERN_SECRET_KEY\n");
        return EXIT_FAILED;
    }
    /* CURLOPT_USERPWD splits "access:secret" at the first ':'. */
    if (strchr(o->access_key, ':') != NULL)
        return ops__usage_error(o, "invalid access key '%s': it cannot contain ':'", o->access_key);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(o->err, "ternctl: cannot initialize libcurl\n");
        return EXIT_FAILED;
    }
    int rc;
    if (cluster)
        rc = ops__cluster_run(o, &cluster_cmd);
    else if (bucket)
        rc = ops__bucket_run(o, &bucket_cmd);
    else if (placement)
        rc = ops__placement_run(o, &placement_cmd);
    else if (egress)
        rc = ops__egress_run(o);
    else
        rc = cmd_status(o);
    curl_global_cleanup();
    return rc;
}

/*
 * "sim" runs locally (no node, no credentials) and has options of its own, so it is found
 * before the node options are parsed: it may follow only -o/--output, which it inherits.
 * Returns its index in argv, or 0.
 */
static int find_sim_command(int argc, char **argv)
{
    int i = 1;
    while (i < argc) {
        if (strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0)
            i += 2;
        else if (strncmp(argv[i], "--output=", 9) == 0 ||
                 (strncmp(argv[i], "-o", 2) == 0 && argv[i][2]))
            i++;
        else
            break;
    }
    return i < argc && strcmp(argv[i], "sim") == 0 ? i : 0;
}

/* "ternctl [-o F] sim ARGS" as "sim [-o F] ARGS" for the sim parser. */
static int run_sim(ops__options *o, int argc, char **argv, int at)
{
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (args == NULL) {
        fprintf(o->err, "ternctl: out of memory\n");
        return EXIT_FAILED;
    }
    int n = 0;
    args[n++] = "ternctl sim";
    bool sub = at + 1 < argc &&
               (strcmp(argv[at + 1], "gen") == 0 || strcmp(argv[at + 1], "convert-wc98") == 0);
    if (sub && at > 1) {
        free(args);
        return ops__usage_error(o, "sim %s writes a CSV trace: -o/--output does not apply",
                                argv[at + 1]);
    }
    if (sub) args[n++] = argv[at + 1];
    for (int i = 1; i < at; i++)
        args[n++] = argv[i];
    for (int i = at + 1 + sub; i < argc; i++)
        args[n++] = argv[i];
    int rc = ops__sim_main(o, n, args);
    free(args);
    return rc;
}

int ops_main(int argc, char **argv, FILE *out, FILE *err)
{
    ops__options o = {.out = out, .err = err};
    int sim_at = find_sim_command(argc, argv);
    if (sim_at > 0) {
        int rc = run_sim(&o, argc, argv, sim_at);
        fflush(out);
        fflush(err);
        return rc == EXIT_HELP ? EXIT_OK : rc;
    }
    int rc = parse_options(&o, argc, argv);
    if (rc == EXIT_OK) rc = run_command(&o, argc, argv);
    if (rc == EXIT_HELP) rc = EXIT_OK;
    free(o.endpoint_owned);
    fflush(out);
    fflush(err);
    return rc;
}
