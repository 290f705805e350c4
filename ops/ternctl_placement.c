/* ternctl placement: why an object is where it is, and the engine's summary (/_tern/placement). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ternctl_internal.h"

/*
 * The node's placement engine decides and explains; this file only lays its answer out. The
 * dollar figures of one object are tiny (a few KB stored for a week costs millionths of a
 * dollar), so they go through ops__format_usd, which keeps significant digits rather than
 * cents: a column of "0.00" would hide the comparison the operator is trying to read.
 */

#define KEY_BYTES_MAX 1024 /* S3's longest key */
/* The path and both values, every byte possibly percent-encoded to three. */
#define TARGET_BYTES_MAX (64 + 3 * (OPS__BUCKET_BYTES_MAX + KEY_BYTES_MAX))
#define CELL_BYTES_MAX   128
#define RATE_BYTES_MAX   48 /* one figure of READS/DAY; two and " ± " fit a cell */
#define LINE_BYTES_MAX   4096
#define REGIONS_MAX      256 /* rows of the explain table; a topology has a handful */

enum placement_kind { PLACEMENT_EXPLAIN, PLACEMENT_STATS };

const char ops__placement_usage[] =
    "  placement explain BUCKET/KEY\n"
    "                why the object is held where it is: per region, whether it is held, the\n"
    "                reason, its reads per day and the dollars that decided it\n"
    "                (GET /_tern/placement/explain)\n"
    "  placement stats\n"
    "                the placement engine's summary: objects and pairs tracked, memory,\n"
    "                events, replicas added and dropped (GET /_tern/placement/stats)\n";

/* ---------------- arguments ---------------- */

/* BUCKET/KEY split at the first '/', so keys keep theirs ("photos/2024/a.jpg"). */
static int parse_object(const ops__options *o, const char *arg, ops__placement_cmd *cmd)
{
    const char *slash = strchr(arg, '/');
    if (slash == NULL || slash == arg || slash[1] == '\0')
        return ops__usage_error(o,
                                "placement explain: expected BUCKET/KEY, got '%s' (a bucket, "
                                "a '/', and a key that is not empty)",
                                arg);
    size_t bucket_len = (size_t)(slash - arg);
    if (bucket_len > OPS__BUCKET_BYTES_MAX)
        return ops__usage_error(o, "placement explain: bucket name longer than %d bytes",
                                OPS__BUCKET_BYTES_MAX);
    if (strlen(slash + 1) > KEY_BYTES_MAX)
        return ops__usage_error(o, "placement explain: key longer than %d bytes", KEY_BYTES_MAX);
    memcpy(cmd->bucket, arg, bucket_len);
    cmd->bucket[bucket_len] = '\0';
    cmd->key = slash + 1;
    cmd->object = arg;
    return EXIT_OK;
}

int ops__placement_parse(const ops__options *o, int argc, char **argv, ops__placement_cmd *cmd)
{
    *cmd = (ops__placement_cmd){0};
    if (argc == 0) return ops__usage_error(o, "placement: missing subcommand (explain or stats)");
    if (strcmp(argv[0], "stats") == 0) {
        cmd->kind = PLACEMENT_STATS;
        if (argc > 1)
            return ops__usage_error(o, "unexpected argument '%s' after the command", argv[1]);
        return EXIT_OK;
    }
    if (strcmp(argv[0], "explain") != 0)
        return ops__usage_error(o, "unknown placement command '%s'", argv[0]);
    cmd->kind = PLACEMENT_EXPLAIN;
    if (argc == 1) return ops__usage_error(o, "placement explain: missing BUCKET/KEY");
    if (argc > 2) return ops__usage_error(o, "unexpected argument '%s' after the command", argv[2]);
    return parse_object(o, argv[1], cmd);
}

/* ---------------- cells ---------------- */

/* Three significant digits below 100 ("12.5", "0.0417"), whole numbers above; "-" if absent. */
static void format_rate(double value, char *out, size_t out_len)
{
    if (!isfinite(value))
        snprintf(out, out_len, "-");
    else if (fabs(value) >= 100)
        snprintf(out, out_len, "%.0f", value);
    else
        snprintf(out, out_len, "%.3g", value);
}

/* The engine's reason codes in words; an unknown code (a newer node) shows as it came. */
static const char *reason_text(const char *reason)
{
    static const struct {
        const char *code, *text;
    } reasons[] = {
        {"origin", "the last write arrived here"},   {"pinned", "pinned by the bucket policy"},
        {"min_regions", "kept to meet min_regions"}, {"demand", "its reads pay for it"},
        {"not_allowed", "residency forbids it"},     {"none", "-"},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(reasons); i++)
        if (strcmp(reason, reasons[i].code) == 0) return reasons[i].text;
    return reason;
}

/* Display columns of UTF-8 text (each character one column): "±" is two bytes, one column. */
static int display_width(const char *text)
{
    int width = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        width += (*p & 0xC0) != 0x80;
    return width;
}

/* text right-aligned in width columns. */
static void print_right(FILE *out, const char *text, int width)
{
    for (int pad = width - display_width(text); pad > 0; pad--)
        fputc(' ', out);
    fputs(text, out);
}

/* ---------------- explain ---------------- */

typedef struct {
    const char *name, *held, *reason;
    char reads[CELL_BYTES_MAX], saving[CELL_BYTES_MAX], storage[CELL_BYTES_MAX],
        copy[CELL_BYTES_MAX];
} region_row;

static void fill_row(const json_t *region, region_row *row)
{
    row->name = ops__json_string(region, "name");
    const json_t *held = json_object_get(region, "held");
    row->held = json_is_boolean(held) ? (json_is_true(held) ? "yes" : "no") : "-";
    row->reason = reason_text(ops__json_string(region, "reason"));
    char mean[RATE_BYTES_MAX], stddev[RATE_BYTES_MAX];
    format_rate(ops__json_number(region, "reads_per_day"), mean, sizeof mean);
    format_rate(ops__json_number(region, "reads_per_day_stddev"), stddev, sizeof stddev);
    if (strcmp(stddev, "-") == 0)
        snprintf(row->reads, sizeof row->reads, "%s", mean);
    else
        snprintf(row->reads, sizeof row->reads, "%s ± %s", mean, stddev);
    ops__format_usd(ops__json_number(region, "saving_usd"), row->saving, sizeof row->saving);
    ops__format_usd(ops__json_number(region, "storage_usd"), row->storage, sizeof row->storage);
    ops__format_usd(ops__json_number(region, "transfer_usd"), row->copy, sizeof row->copy);
}

/* "us-east, eu-west"; "no region" for an empty list. */
static void holders_text(const json_t *holders, char *out, size_t out_len)
{
    size_t i, n = 0;
    const json_t *holder;
    snprintf(out, out_len, "%s", json_array_size(holders) > 0 ? "" : "no region");
    json_array_foreach(holders, i, holder)
    {
        const char *name = json_string_value(holder);
        if (n < out_len)
            n += (size_t)snprintf(out + n, out_len - n, "%s%s", i ? ", " : "",
                                  name != NULL ? name : "?");
    }
}

/* "photos/a b.jpg: 1.2 KiB (1234 bytes), held in us-east; expected version life 6.9 days". */
static void print_header(FILE *out, const ops__placement_cmd *cmd, const json_t *doc)
{
    char size[CELL_BYTES_MAX], holders[LINE_BYTES_MAX], life[CELL_BYTES_MAX];
    const json_t *bytes = json_object_get(doc, "bytes");
    if (json_is_integer(bytes) && json_integer_value(bytes) >= 0)
        ops__format_bytes((uint64_t)json_integer_value(bytes), size, sizeof size);
    else
        snprintf(size, sizeof size, "size unknown");
    holders_text(json_object_get(doc, "holders"), holders, sizeof holders);
    double life_days = ops__json_number(doc, "life_days");
    if (!isfinite(life_days))
        snprintf(life, sizeof life, "unknown");
    else
        snprintf(life, sizeof life, "%.*f days", life_days < 0.1 ? 3 : 1, life_days);
    const char *bucket = json_string_value(json_object_get(doc, "bucket"));
    const char *key = json_string_value(json_object_get(doc, "key"));
    fprintf(out, "%s/%s: %s, held in %s; expected version life %s", bucket ? bucket : cmd->bucket,
            key ? key : cmd->key, size, holders, life);
    /* A cold object has no counters of its own: the engine judged it by its prefix's. */
    if (json_is_true(json_object_get(doc, "from_prefix_prior")))
        fputs(" (figures from the prefix's summary: the object is cold)", out);
    fputc('\n', out);
}

/* EXIT_OK, or EXIT_FAILED when out of memory. */
static int print_explain_table(const ops__options *o, const ops__placement_cmd *cmd,
                               const json_t *doc)
{
    FILE *out = o->out;
    static const char *const headings[] = {"REGION",   "HELD",      "REASON", "READS/DAY",
                                           "SAVING $", "STORAGE $", "COPY $"};
    const json_t *regions = json_object_get(doc, "regions");
    size_t count = TERN_MIN(json_array_size(regions), (size_t)REGIONS_MAX);
    region_row *rows = calloc(count > 0 ? count : 1, sizeof *rows);
    if (rows == NULL) {
        fputs("ternctl: out of memory\n", o->err);
        return EXIT_FAILED;
    }
    int width[TERN_ARRAY_LEN(headings)];
    for (size_t c = 0; c < TERN_ARRAY_LEN(headings); c++)
        width[c] = display_width(headings[c]);
    for (size_t i = 0; i < count; i++) {
        region_row *r = &rows[i];
        fill_row(json_array_get(regions, i), r);
        const char *cells[] = {r->name,   r->held,    r->reason, r->reads,
                               r->saving, r->storage, r->copy};
        for (size_t c = 0; c < TERN_ARRAY_LEN(cells); c++)
            width[c] = TERN_MAX(width[c], display_width(cells[c]));
    }
    print_header(out, cmd, doc);
    fputc('\n', out);
    /* Names and words left-aligned, figures right-aligned so their digits line up. */
    fprintf(out, "%-*s  %-*s  %-*s", width[0], headings[0], width[1], headings[1], width[2],
            headings[2]);
    for (size_t c = 3; c < TERN_ARRAY_LEN(headings); c++) {
        fputs("  ", out);
        print_right(out, headings[c], width[c]);
    }
    fputc('\n', out);
    for (size_t i = 0; i < count; i++) {
        const region_row *r = &rows[i];
        const char *figures[] = {r->reads, r->saving, r->storage, r->copy};
        fprintf(out, "%-*s  %-*s  %-*s", width[0], r->name, width[1], r->held, width[2], r->reason);
        for (size_t c = 0; c < TERN_ARRAY_LEN(figures); c++) {
            fputs("  ", out);
            print_right(out, figures[c], width[3 + c]);
        }
        fputc('\n', out);
    }
    if (json_array_size(regions) > count)
        fprintf(out, "(%zu more regions not shown)\n", json_array_size(regions) - count);
    free(rows);
    return EXIT_OK;
}

/* ---------------- stats ---------------- */

enum stat_format { STAT_TEXT, STAT_COUNT, STAT_BYTES, STAT_REAL };

static const struct {
    const char *label, *key;
    enum stat_format format;
} stat_fields[] = {
    {"Region", "region", STAT_TEXT},
    {"Algorithm", "algo", STAT_TEXT},
    {"Objects tracked", "objects_tracked", STAT_COUNT},
    {"Pairs tracked", "pairs_tracked", STAT_COUNT},
    {"Memory", "memory_bytes", STAT_BYTES},
    {"Bytes per pair", "bytes_per_pair", STAT_REAL},
    {"Events", "events", STAT_COUNT},
    {"Replicas added", "replicas_added", STAT_COUNT},
    {"Replicas dropped", "replicas_dropped", STAT_COUNT},
};

static bool is_known_stat(const char *key)
{
    for (size_t i = 0; i < TERN_ARRAY_LEN(stat_fields); i++)
        if (strcmp(stat_fields[i].key, key) == 0) return true;
    return false;
}

/* Any scalar, in the field's format; "-" when absent or of another type. */
static void stat_cell(const json_t *v, enum stat_format format, char *out, size_t out_len)
{
    if (json_is_string(v))
        snprintf(out, out_len, "%s", json_string_value(v));
    else if (json_is_integer(v) && format == STAT_BYTES && json_integer_value(v) >= 0)
        ops__format_bytes((uint64_t)json_integer_value(v), out, out_len);
    else if (json_is_integer(v))
        snprintf(out, out_len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, out_len, "%.1f", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(out, out_len, "%s", json_is_true(v) ? "yes" : "no");
    else
        snprintf(out, out_len, "-");
}

static void print_stats_table(FILE *out, const json_t *doc)
{
    /* Fields this ternctl does not know yet still show, by their JSON names, after the known. */
    int width = 0;
    const char *key;
    json_t *v;
    for (size_t i = 0; i < TERN_ARRAY_LEN(stat_fields); i++)
        width = TERN_MAX(width, (int)strlen(stat_fields[i].label));
    json_object_foreach((json_t *)doc, key, v)
    {
        if (!is_known_stat(key)) width = TERN_MAX(width, (int)strlen(key));
    }
    char cell[LINE_BYTES_MAX];
    for (size_t i = 0; i < TERN_ARRAY_LEN(stat_fields); i++) {
        stat_cell(json_object_get(doc, stat_fields[i].key), stat_fields[i].format, cell,
                  sizeof cell);
        fprintf(out, "%-*s  %s\n", width, stat_fields[i].label, cell);
    }
    json_object_foreach((json_t *)doc, key, v)
    {
        if (is_known_stat(key)) continue;
        stat_cell(v, STAT_TEXT, cell, sizeof cell);
        fprintf(out, "%-*s  %s\n", width, key, cell);
    }
}

/* ---------------- the request ---------------- */

/* "ternctl: placement explain b/k: 404 NoSuchKey: why"; refused credentials and bodies that
 * are not S3 errors go to the generic reporter. */
static void report_error(const ops__options *o, const ops__placement_cmd *cmd, const char *target,
                         long status, const ops__response *body)
{
    char code[128], message[512];
    if (status == 401 || status == 403 ||
        !ops__s3_error(body, code, sizeof code, message, sizeof message)) {
        ops__report_http_error(o, "GET", target, status, body);
        return;
    }
    fprintf(o->err, "ternctl: placement %s%s%s: %ld %s: %s%s\n",
            cmd->kind == PLACEMENT_EXPLAIN ? "explain" : "stats",
            cmd->kind == PLACEMENT_EXPLAIN ? " " : "",
            cmd->kind == PLACEMENT_EXPLAIN ? cmd->object : "", status, code,
            message[0] ? message : "no message",
            strstr(message, "Unknown admin endpoint") != NULL
                ? " (is the node older than this ternctl?)"
                : "");
}

/* The query in SigV4 canonical form (see ops__http_request): parameters sorted by name. */
static bool explain_target(const ops__placement_cmd *cmd, char *target, size_t target_len)
{
    snprintf(target, target_len, "/_tern/placement/explain?bucket=");
    if (!ops__query_encode(cmd->bucket, target, target_len)) return false;
    size_t len = strlen(target);
    if (len + strlen("&key=") >= target_len) return false;
    strcpy(target + len, "&key=");
    return ops__query_encode(cmd->key, target, target_len);
}

/* The document of a 200 answer, checked to be one this file can lay out. */
static json_t *load_document(const ops__options *o, const ops__placement_cmd *cmd,
                             const char *target, const ops__response *body)
{
    json_error_t error;
    json_t *doc = json_loadb(body->data ? body->data : "", body->len, 0, &error);
    const char *problem = NULL;
    if (doc == NULL)
        problem = "invalid JSON";
    else if (!json_is_object(doc))
        problem = "JSON that is not an object";
    else if (cmd->kind == PLACEMENT_EXPLAIN && !json_is_array(json_object_get(doc, "regions")))
        problem = "JSON without a \"regions\" array";
    if (problem == NULL) return doc;
    fprintf(o->err, "ternctl: GET %s%s returned %s\n", o->endpoint, target, problem);
    json_decref(doc);
    return NULL;
}

int ops__placement_run(const ops__options *o, const ops__placement_cmd *cmd)
{
    char target[TARGET_BYTES_MAX];
    if (cmd->kind == PLACEMENT_STATS) {
        snprintf(target, sizeof target, "/_tern/placement/stats");
    } else if (!explain_target(cmd, target, sizeof target)) {
        /* ops__placement_parse bounded both parts so that this cannot happen. */
        fprintf(o->err, "ternctl: placement explain: request too long\n");
        return EXIT_FAILED;
    }
    ops__response body = {0};
    long status = 0;
    int rc = ops__http_request(o, "GET", target, &status, &body);
    if (rc != EXIT_OK) goto out;
    if (status != 200) {
        report_error(o, cmd, target, status, &body);
        rc = EXIT_FAILED;
        goto out;
    }
    json_t *doc = load_document(o, cmd, target, &body);
    if (doc == NULL) {
        rc = EXIT_FAILED;
        goto out;
    }
    if (o->json_output)
        ops__print_json(o, doc);
    else if (cmd->kind == PLACEMENT_STATS)
        print_stats_table(o->out, doc);
    else
        rc = print_explain_table(o, cmd, doc);
    json_decref(doc);
out:
    free(body.data);
    return rc;
}
