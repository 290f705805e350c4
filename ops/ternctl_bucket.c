/* ternctl bucket policy: a bucket's residency and durability policy (/_tern/buckets/B/policy). */
#include <assert.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ternctl_internal.h"

/*
 * ternctl checks only what it can know alone: the syntax of each option, that a bucket name
 * is safe to put in the request's path, and the documented bound of a duration (a year, as in
 * docs/placement.md). Whether the regions exist, whether pinned regions are allowed, and
 * whether min_regions fits, depend on the deployment, so the node judges those and its
 * InvalidPolicy message is shown as it came.
 */

#define BUCKET_NAME_BYTES_MAX 63         /* NODE_BUCKET_NAME_MAX */
#define DURATION_SECONDS_MAX  31536000LL /* a year: the policy format's bound */
#define TARGET_BYTES_MAX      128
#define CELL_BYTES_MAX        1024

enum policy_kind { POLICY_GET, POLICY_SET, POLICY_RESET };
static const char *const kind_names[] = {"get", "set", "reset"};

/* The order of this table is the order of enum set_option. */
const char *const ops__bucket_option_names[] = {"min-regions", "allowed", "pinned",
                                                "rpo",         "rto",     NULL};
enum set_option { OPT_MIN_REGIONS, OPT_ALLOWED, OPT_PINNED, OPT_RPO, OPT_RTO, SET_OPTIONS };

const char ops__bucket_usage[] =
    "  bucket policy get BUCKET\n"
    "                the bucket's policy: minimum regions, allowed and pinned regions, RPO and\n"
    "                RTO (GET /_tern/buckets/BUCKET/policy)\n"
    "  bucket policy set BUCKET [--min-regions N] [--allowed R1,R2] [--pinned R1]\n"
    "                [--rpo DURATION] [--rto DURATION]\n"
    "                change the fields given (at least one); the others keep their values.\n"
    "                --allowed \"\" allows every region, --pinned \"\" pins none; a DURATION is\n"
    "                seconds, or a number with s, m, h or d (30s, 10m, 2h, 1d), up to 365d\n"
    "  bucket policy reset BUCKET\n"
    "                back to the defaults: 1 region, all allowed, none pinned, RPO and RTO 0\n";

/* ---------------- arguments ---------------- */

/* Lowercase letters, digits, '.' and '-': S3's alphabet, and nothing that means something in
 * a URL path. The node applies S3's other rules. */
static bool bucket_name_usable(const char *name)
{
    size_t len = strlen(name);
    return len > 0 && len <= BUCKET_NAME_BYTES_MAX &&
           strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789.-") == len;
}

/* Digits only (no sign, no blanks) up to max; false otherwise. */
static bool parse_count(const char *text, size_t len, long long max, long long *value)
{
    if (len == 0 || len > 18 || strspn(text, "0123456789") < len) return false;
    long long v = 0;
    for (size_t i = 0; i < len; i++)
        v = v * 10 + (text[i] - '0');
    if (v > max) return false;
    *value = v;
    return true;
}

/* "45" or "45s", "10m", "2h", "1d" to seconds, at most DURATION_SECONDS_MAX. */
static bool parse_duration(const char *text, long long *seconds)
{
    static const struct {
        char unit;
        long long seconds;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    size_t digits = strspn(text, "0123456789");
    long long scale = 0;
    if (text[digits] == '\0') scale = 1;
    for (size_t i = 0; i < TERN_ARRAY_LEN(units) && text[digits] != '\0'; i++)
        if (text[digits] == units[i].unit && text[digits + 1] == '\0') scale = units[i].seconds;
    long long count;
    if (scale == 0 || !parse_count(text, digits, DURATION_SECONDS_MAX, &count)) return false;
    if (count > DURATION_SECONDS_MAX / scale) return false;
    *seconds = count * scale;
    return true;
}

/* A comma-separated region list: "" (none), or names without empty items. Names are printable
 * ASCII (which also keeps the JSON valid UTF-8); the node checks its own alphabet. */
static bool region_list_usable(const char *text)
{
    if (text[0] == '\0') return true;
    if (text[0] == ',' || text[strlen(text) - 1] == ',' || strstr(text, ",,") != NULL) return false;
    for (const char *p = text; *p; p++)
        if (!isgraph((unsigned char)*p)) return false;
    return true;
}

static int parse_set_option(const ops__options *o, const ops__command_option *opt,
                            ops__bucket_cmd *cmd)
{
    const char *v = opt->value;
    switch (opt->index) {
    case OPT_MIN_REGIONS:
        if (!parse_count(v, strlen(v), INT32_MAX, &cmd->min_regions) || cmd->min_regions < 1)
            return ops__usage_error(o, "invalid --min-regions '%s': expected an integer >= 1", v);
        return EXIT_OK;
    case OPT_ALLOWED:
    case OPT_PINNED:
        if (!region_list_usable(v))
            return ops__usage_error(o,
                                    "invalid --%s '%s': expected region names separated by "
                                    "commas (an empty region name is not one)",
                                    opt->name, v);
        *(opt->index == OPT_ALLOWED ? &cmd->allowed_regions : &cmd->pinned_regions) = v;
        return EXIT_OK;
    default:
        assert(opt->index == OPT_RPO || opt->index == OPT_RTO);
        if (!parse_duration(v, opt->index == OPT_RPO ? &cmd->rpo_seconds : &cmd->rto_seconds))
            return ops__usage_error(o,
                                    "invalid --%s '%s': expected a duration such as 30s, 10m, "
                                    "2h, 1d or plain seconds, up to 365d",
                                    opt->name, v);
        return EXIT_OK;
    }
}

/* The options, which belong to "set" only, each at most once, at least one for "set". */
static int parse_set_options(const ops__options *o, ops__bucket_cmd *cmd)
{
    const char *name = kind_names[cmd->kind];
    bool seen[SET_OPTIONS] = {false};
    for (size_t i = 0; i < o->command_option_count; i++) {
        const ops__command_option *opt = &o->command_options[i];
        assert(opt->index >= 0 && opt->index < SET_OPTIONS);
        if (cmd->kind != POLICY_SET)
            return ops__usage_error(o,
                                    "bucket policy %s: option '--%s' applies only to "
                                    "'bucket policy set'",
                                    name, opt->name);
        if (seen[opt->index])
            return ops__usage_error(o, "bucket policy set: option '--%s' given twice", opt->name);
        seen[opt->index] = true;
        int rc = parse_set_option(o, opt, cmd);
        if (rc != EXIT_OK) return rc;
    }
    if (cmd->kind == POLICY_SET && o->command_option_count == 0)
        return ops__usage_error(o, "bucket policy set: nothing to change: give at least one of "
                                   "--min-regions, --allowed, --pinned, --rpo, --rto");
    return EXIT_OK;
}

int ops__bucket_parse(const ops__options *o, int argc, char **argv, ops__bucket_cmd *cmd)
{
    *cmd = (ops__bucket_cmd){.rpo_seconds = -1, .rto_seconds = -1};
    if (argc == 0) return ops__usage_error(o, "bucket: missing subcommand (policy)");
    if (strcmp(argv[0], "policy") != 0)
        return ops__usage_error(o, "unknown bucket command '%s'", argv[0]);
    if (argc == 1)
        return ops__usage_error(o, "bucket policy: missing subcommand (get, set or reset)");
    size_t kind = 0;
    while (kind < TERN_ARRAY_LEN(kind_names) && strcmp(argv[1], kind_names[kind]) != 0)
        kind++;
    if (kind == TERN_ARRAY_LEN(kind_names))
        return ops__usage_error(o, "unknown bucket policy command '%s'", argv[1]);
    cmd->kind = (int)kind;
    if (argc == 2) return ops__usage_error(o, "bucket policy %s: missing BUCKET", argv[1]);
    if (!bucket_name_usable(argv[2]))
        return ops__usage_error(o,
                                "bucket policy %s: invalid bucket name '%s': expected up to %d "
                                "lowercase letters, digits, '.' and '-'",
                                argv[1], argv[2], BUCKET_NAME_BYTES_MAX);
    cmd->bucket = argv[2];
    if (argc > 3) return ops__usage_error(o, "unexpected argument '%s' after the command", argv[3]);
    return parse_set_options(o, cmd);
}

/* ---------------- the request ---------------- */

/* "a,b" as ["a","b"], "" as []; NULL when out of memory. */
static json_t *region_array(const char *list)
{
    json_t *array = json_array();
    for (const char *p = list; array != NULL && *p != '\0';) {
        size_t len = strcspn(p, ",");
        if (json_array_append_new(array, json_stringn(p, len)) != 0) {
            json_decref(array);
            return NULL;
        }
        p += len + (p[len] == ',');
    }
    return array;
}

/* The PUT body: only the fields given, so the node keeps the others (it merges). */
static char *set_body(const ops__bucket_cmd *cmd)
{
    json_t *doc = json_object();
    if (doc == NULL) return NULL;
    bool ok = true;
    if (cmd->min_regions > 0)
        ok &= json_object_set_new(doc, "min_regions", json_integer(cmd->min_regions)) == 0;
    if (cmd->allowed_regions != NULL)
        ok &= json_object_set_new(doc, "allowed_regions", region_array(cmd->allowed_regions)) == 0;
    if (cmd->pinned_regions != NULL)
        ok &= json_object_set_new(doc, "pinned_regions", region_array(cmd->pinned_regions)) == 0;
    if (cmd->rpo_seconds >= 0)
        ok &= json_object_set_new(doc, "rpo_seconds", json_integer(cmd->rpo_seconds)) == 0;
    if (cmd->rto_seconds >= 0)
        ok &= json_object_set_new(doc, "rto_seconds", json_integer(cmd->rto_seconds)) == 0;
    char *text = ok ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(doc);
    return text;
}

/* "ternctl: bucket policy set B: 400 InvalidPolicy: why"; refused credentials and bodies that
 * are not S3 errors go to the generic reporter. */
static void report_error(const ops__options *o, const ops__bucket_cmd *cmd, const char *method,
                         const char *target, long status, const ops__response *body)
{
    char code[128], message[512];
    if (status == 401 || status == 403 ||
        !ops__s3_error(body, code, sizeof code, message, sizeof message)) {
        ops__report_http_error(o, method, target, status, body);
        return;
    }
    fprintf(o->err, "ternctl: bucket policy %s %s: %ld %s: %s\n", kind_names[cmd->kind],
            cmd->bucket, status, code, message[0] ? message : "no message");
}

/* ---------------- the policy document ---------------- */

/* "0s", "45s", "10m", "1h 30m", "1d 2h 3m 4s": exact, with the zero parts left out. */
static void format_duration(long long seconds, char *out, size_t out_len)
{
    static const struct {
        const char *unit;
        long long seconds;
    } parts[] = {{"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}};
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < TERN_ARRAY_LEN(parts) && n < out_len; i++) {
        long long count = seconds / parts[i].seconds;
        seconds %= parts[i].seconds;
        if (count > 0)
            n += (size_t)snprintf(out + n, out_len - n, "%s%lld%s", n ? " " : "", count,
                                  parts[i].unit);
    }
    if (out[0] == '\0') snprintf(out, out_len, "0s");
}

static void duration_cell(const json_t *v, char *out, size_t out_len)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        format_duration((long long)json_integer_value(v), out, out_len);
    else
        snprintf(out, out_len, "-");
}

/* "eu-west, eu-central"; empty_text for []; "-" when not an array of strings. */
static void regions_cell(const json_t *v, const char *empty_text, char *out, size_t out_len)
{
    size_t i, n = 0;
    const json_t *region;
    snprintf(out, out_len, "%s", json_is_array(v) ? empty_text : "-");
    json_array_foreach(v, i, region)
    {
        if (!json_is_string(region)) {
            snprintf(out, out_len, "-");
            return;
        }
        if (n < out_len)
            n += (size_t)snprintf(out + n, out_len - n, "%s%s", i ? ", " : "",
                                  json_string_value(region));
    }
}

static void print_policy_table(const ops__options *o, const ops__bucket_cmd *cmd, const json_t *doc)
{
    char cell[CELL_BYTES_MAX];
    const char *bucket = json_string_value(json_object_get(doc, "bucket"));
    fprintf(o->out, "%-13s%s\n", "Bucket", bucket != NULL ? bucket : cmd->bucket);
    const json_t *min = json_object_get(doc, "min_regions");
    if (json_is_integer(min))
        snprintf(cell, sizeof cell, "%" JSON_INTEGER_FORMAT, json_integer_value(min));
    else
        snprintf(cell, sizeof cell, "-");
    fprintf(o->out, "%-13s%s\n", "Min regions", cell);
    regions_cell(json_object_get(doc, "allowed_regions"), "all", cell, sizeof cell);
    fprintf(o->out, "%-13s%s\n", "Allowed", cell);
    regions_cell(json_object_get(doc, "pinned_regions"), "none", cell, sizeof cell);
    fprintf(o->out, "%-13s%s\n", "Pinned", cell);
    duration_cell(json_object_get(doc, "rpo_seconds"), cell, sizeof cell);
    fprintf(o->out, "%-13s%s\n", "RPO", cell);
    duration_cell(json_object_get(doc, "rto_seconds"), cell, sizeof cell);
    fprintf(o->out, "%-13s%s\n", "RTO", cell);
}

/* The policy document of a 200 answer, as a table or as it came. */
static int show_policy(const ops__options *o, const ops__bucket_cmd *cmd, const char *method,
                       const char *target, const ops__response *body)
{
    json_error_t error;
    json_t *doc = json_loadb(body->data ? body->data : "", body->len, 0, &error);
    if (!json_is_object(doc)) {
        fprintf(o->err, "ternctl: %s %s%s returned %s\n", method, o->endpoint, target,
                doc == NULL ? "invalid JSON" : "JSON that is not an object");
        json_decref(doc);
        return EXIT_FAILED;
    }
    if (o->json_output)
        ops__print_json(o, doc);
    else
        print_policy_table(o, cmd, doc);
    json_decref(doc);
    return EXIT_OK;
}

int ops__bucket_run(const ops__options *o, const ops__bucket_cmd *cmd)
{
    static const char *const methods[] = {"GET", "PUT", "DELETE"};
    const char *method = methods[cmd->kind];
    char target[TARGET_BYTES_MAX];
    /* The name was checked to need no encoding, and is at most 63 bytes, so it fits. */
    snprintf(target, sizeof target, "/_tern/buckets/%s/policy", cmd->bucket);
    char *request_body = NULL;
    if (cmd->kind == POLICY_SET && (request_body = set_body(cmd)) == NULL) {
        fprintf(o->err, "ternctl: out of memory\n");
        return EXIT_FAILED;
    }
    ops__response body = {0};
    long status = 0;
    int rc = ops__http_send(o, method, target, request_body, &status, &body);
    if (rc != EXIT_OK) goto out;
    if (cmd->kind == POLICY_RESET && (status == 204 || status == 200)) {
        /* There is no document to show; -o json prints nothing rather than invent one. */
        if (!o->json_output)
            fprintf(o->out, "bucket %s: policy reset to the defaults\n", cmd->bucket);
    } else if (cmd->kind != POLICY_RESET && status == 200) {
        rc = show_policy(o, cmd, method, target, &body);
    } else {
        report_error(o, cmd, method, target, status, &body);
        rc = EXIT_FAILED;
    }
out:
    free(body.data);
    free(request_body);
    return rc;
}
