/* ternctl sim: reads the topology JSON and the trace CSV into the placement simulator's structures.
 */
#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ternctl_sim.h"

/*
 * Every error names the file and where in it: "T.json: egress_usd_per_gb.a.b: missing",
 * "trace.csv:17: field bytes: not a non-negative integer". The first error stops the read:
 * a simulator run on a half-understood input would print confident wrong numbers.
 */

#define TRACE_LINE_MAX 4096
#define BUCKETS_MAX    4096

/* ---------------------------------------------------------------- topology */

static int region_index(const ops__sim_input *in, const char *name)
{
    for (size_t r = 0; r < in->topology.region_count; r++)
        if (strcmp(in->topology.names[r], name) == 0) return (int)r;
    return -1;
}

static int bad(char *why, size_t why_len, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int bad(char *why, size_t why_len, const char *file, const char *fmt, ...)
{
    char detail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    tern_errmsg(why, why_len, "%s: %s", file, detail);
    return TERN_EPARSE;
}

static int bad_line(char *why, size_t why_len, const char *file, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int bad_line(char *why, size_t why_len, const char *file, size_t line, const char *fmt, ...)
{
    char detail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    tern_errmsg(why, why_len, "%s:%zu: %s", file, line, detail);
    return TERN_EPARSE;
}

static bool get_number(const json_t *v, double *out)
{
    if (!json_is_number(v)) return false;
    *out = json_number_value(v);
    return isfinite(*out) && *out >= 0;
}

/*
 * Refuses a key the format does not define: a misspelt "min_region" would otherwise leave the
 * default in force and the run would answer a question nobody asked. The live topology's own
 * fields (a region's peer and S3 endpoints, a bucket's rto_seconds) are known here too, so one
 * document serves ternd and the simulator.
 */
static int check_keys(const json_t *obj, const char *const *known, const char *path,
                      const char *file, char *why, size_t why_len)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; known[i] != NULL && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok)
            return bad(why, why_len, file, "%s%s%s: unknown field", path, path[0] ? "." : "", key);
    }
    return 0;
}

static int parse_regions(ops__sim_input *in, const json_t *root, const char *file, char *why,
                         size_t why_len)
{
    const json_t *regions = json_object_get(root, "regions");
    if (regions == NULL) return bad(why, why_len, file, "regions: missing");
    if (!json_is_array(regions) || json_array_size(regions) == 0 ||
        json_array_size(regions) > PLC_REGIONS_MAX)
        return bad(why, why_len, file, "regions: not an array of 1 to %d regions", PLC_REGIONS_MAX);
    plc_topology *t = &in->topology;
    for (size_t i = 0; i < json_array_size(regions); i++) {
        const json_t *r = json_array_get(regions, i);
        static const char *const region_keys[] = {"name", "storage_usd_per_gb_month",
                                                  "peer_endpoints", "s3_endpoints", NULL};
        char path[40];
        snprintf(path, sizeof path, "regions[%zu]", i);
        if (!json_is_object(r)) return bad(why, why_len, file, "%s: not an object", path);
        int rc = check_keys(r, region_keys, path, file, why, why_len);
        if (rc != 0) return rc;
        const json_t *name = json_object_get(r, "name");
        if (!json_is_string(name) || json_string_length(name) == 0 ||
            json_string_length(name) >= PLC_REGION_NAME_MAX ||
            strpbrk(json_string_value(name), ",\"\r\n") != NULL)
            return bad(why, why_len, file,
                       "regions[%zu].name: missing, or not a name of 1 to %d characters without "
                       "commas or quotes",
                       i, PLC_REGION_NAME_MAX - 1);
        if (region_index(in, json_string_value(name)) >= 0)
            return bad(why, why_len, file, "regions[%zu].name: '%s' appears twice", i,
                       json_string_value(name));
        double price;
        const json_t *storage = json_object_get(r, "storage_usd_per_gb_month");
        if (storage == NULL)
            return bad(why, why_len, file, "regions[%zu].storage_usd_per_gb_month: missing", i);
        if (!get_number(storage, &price))
            return bad(why, why_len, file,
                       "regions[%zu].storage_usd_per_gb_month: not a non-negative number", i);
        snprintf(t->names[i], sizeof t->names[i], "%s", json_string_value(name));
        t->storage_usd_per_gb_month[i] = price;
        t->region_count = i + 1;
    }
    return 0;
}

/* A {from: {to: value}} matrix with every ordered pair of distinct regions present. */
static int parse_matrix(ops__sim_input *in, const json_t *root, const char *field,
                        double m[PLC_REGIONS_MAX][PLC_REGIONS_MAX], const char *file, char *why,
                        size_t why_len)
{
    const json_t *outer = json_object_get(root, field);
    if (outer == NULL) return bad(why, why_len, file, "%s: missing", field);
    if (!json_is_object(outer)) return bad(why, why_len, file, "%s: not an object", field);
    const char *from;
    const json_t *row;
    json_object_foreach((json_t *)outer, from, row)
    {
        if (region_index(in, from) < 0)
            return bad(why, why_len, file, "%s.%s: unknown region", field, from);
        if (!json_is_object(row))
            return bad(why, why_len, file, "%s.%s: not an object", field, from);
        const char *to;
        const json_t *v;
        json_object_foreach((json_t *)row, to, v)
        {
            if (region_index(in, to) < 0)
                return bad(why, why_len, file, "%s.%s.%s: unknown region", field, from, to);
            if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0)
                return bad(why, why_len, file, "%s.%s.%s: not a non-negative number", field, from,
                           to);
        }
    }
    size_t k = in->topology.region_count;
    for (size_t a = 0; a < k; a++)
        for (size_t b = 0; b < k; b++) {
            const json_t *v = json_object_get(json_object_get(outer, in->topology.names[a]),
                                              in->topology.names[b]);
            if (v == NULL && a != b)
                return bad(why, why_len, file, "%s.%s.%s: missing", field, in->topology.names[a],
                           in->topology.names[b]);
            m[a][b] = v != NULL ? json_number_value(v) : 0;
        }
    return 0;
}

static int parse_region_list(ops__sim_input *in, const json_t *list, const char *path,
                             plc_mask *out, const char *file, char *why, size_t why_len)
{
    *out = 0;
    if (list == NULL) return 0;
    if (!json_is_array(list)) return bad(why, why_len, file, "%s: not an array of regions", path);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *v = json_array_get(list, i);
        int r = json_is_string(v) ? region_index(in, json_string_value(v)) : -1;
        if (r < 0) return bad(why, why_len, file, "%s[%zu]: not a region of the topology", path, i);
        *out |= 1u << r;
    }
    return 0;
}

static int parse_policy(ops__sim_input *in, const char *name, const json_t *v, plc_bucket_policy *p,
                        const char *file, char *why, size_t why_len)
{
    char path[300];
    *p = (plc_bucket_policy){.min_regions = 1};
    if (!json_is_object(v)) return bad(why, why_len, file, "buckets.%s: not an object", name);
    static const char *const policy_keys[] = {"min_regions", "allowed_regions", "pinned_regions",
                                              "rpo_seconds", "rto_seconds",     NULL};
    snprintf(path, sizeof path, "buckets.%s", name);
    int krc = check_keys(v, policy_keys, path, file, why, why_len);
    if (krc != 0) return krc;
    const json_t *min = json_object_get(v, "min_regions");
    if (min != NULL) {
        if (!json_is_integer(min) || json_integer_value(min) < 1 ||
            json_integer_value(min) > (json_int_t)in->topology.region_count)
            return bad(why, why_len, file,
                       "buckets.%s.min_regions: not an integer from 1 to the region count (%zu)",
                       name, in->topology.region_count);
        p->min_regions = (uint32_t)json_integer_value(min);
    }
    const json_t *rpo = json_object_get(v, "rpo_seconds");
    if (rpo != NULL) {
        if (!json_is_integer(rpo) || json_integer_value(rpo) < 0 ||
            json_integer_value(rpo) > 365 * 86400)
            return bad(why, why_len, file,
                       "buckets.%s.rpo_seconds: not an integer from 0 to a year", name);
        p->rpo_seconds = (uint32_t)json_integer_value(rpo);
    }
    snprintf(path, sizeof path, "buckets.%s.allowed_regions", name);
    int rc = parse_region_list(in, json_object_get(v, "allowed_regions"), path, &p->allowed, file,
                               why, why_len);
    if (rc != 0) return rc;
    snprintf(path, sizeof path, "buckets.%s.pinned_regions", name);
    rc = parse_region_list(in, json_object_get(v, "pinned_regions"), path, &p->pinned, file, why,
                           why_len);
    if (rc != 0) return rc;
    plc_mask allowed = p->allowed ? p->allowed : (plc_mask)((1u << in->topology.region_count) - 1);
    if (p->pinned & ~allowed)
        return bad(why, why_len, file,
                   "buckets.%s.pinned_regions: a region outside allowed_regions", name);
    if ((uint32_t)__builtin_popcount(allowed) < p->min_regions)
        return bad(why, why_len, file,
                   "buckets.%s.min_regions: %u is more than the %d allowed regions", name,
                   p->min_regions, __builtin_popcount(allowed));
    return 0;
}

static int parse_buckets(ops__sim_input *in, const json_t *root, const char *file, char *why,
                         size_t why_len)
{
    const json_t *buckets = json_object_get(root, "buckets");
    size_t count = json_is_object(buckets) ? json_object_size(buckets) : 0;
    if (buckets != NULL && !json_is_object(buckets))
        return bad(why, why_len, file, "buckets: not an object");
    if (count > BUCKETS_MAX) return bad(why, why_len, file, "buckets: more than %d", BUCKETS_MAX);
    in->policies = calloc(count + 1, sizeof *in->policies);
    in->policy_buckets = calloc(count + 1, sizeof *in->policy_buckets);
    if (in->policies == NULL || in->policy_buckets == NULL) return TERN_ENOMEM;
    /* Index 0 is the default ("*", or one region with everything allowed). */
    in->policies[0] = (plc_bucket_policy){.min_regions = 1};
    in->policy_count = 1;
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)buckets, name, v)
    {
        bool star = strcmp(name, "*") == 0;
        size_t i = star ? 0 : in->policy_count++;
        int rc = parse_policy(in, name, v, &in->policies[i], file, why, why_len);
        if (rc != 0) return rc;
        in->policy_buckets[i] = strdup(name);
        if (in->policy_buckets[i] == NULL) return TERN_ENOMEM;
    }
    return 0;
}

int ops__sim_read_topology(ops__sim_input *in, const char *path, char *why, size_t why_len)
{
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    if (root == NULL) {
        if (error.line < 0 || strstr(error.text, "unable to open") != NULL)
            return bad(why, why_len, path, "%s", error.text);
        return bad(why, why_len, path, "line %d, column %d: %s", error.line, error.column,
                   error.text);
    }
    int rc = json_is_object(root) ? 0 : bad(why, why_len, path, "not a JSON object");
    static const char *const top_keys[] = {
        "regions", "egress_usd_per_gb", "rtt_ms", "bandwidth_mb_per_s", "buckets", NULL};
    if (rc == 0) rc = check_keys(root, top_keys, "", path, why, why_len);
    if (rc == 0) rc = parse_regions(in, root, path, why, why_len);
    if (rc == 0)
        rc = parse_matrix(in, root, "egress_usd_per_gb", in->topology.egress_usd_per_gb, path, why,
                          why_len);
    if (rc == 0) rc = parse_matrix(in, root, "rtt_ms", in->topology.rtt_ms, path, why, why_len);
    const json_t *bw = json_object_get(root, "bandwidth_mb_per_s");
    if (rc == 0 && bw != NULL && !get_number(bw, &in->topology.bandwidth_mb_per_s))
        rc = bad(why, why_len, path, "bandwidth_mb_per_s: not a non-negative number");
    if (rc == 0) rc = parse_buckets(in, root, path, why, why_len);
    if (rc == TERN_ENOMEM) tern_errmsg(why, why_len, "%s: out of memory", path);
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------- trace */

/* Interned strings: one copy of each bucket and key name, found by hash. */
typedef struct {
    uint64_t hash;
    uint32_t object; /* + 1; 0 = empty slot */
} intern_slot;

typedef struct {
    intern_slot *slots;
    size_t mask, used;
} intern_table;

static uint64_t hash_name(const char *bucket, const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a over "bucket\0key" */
    for (const char *p = bucket;; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
        if (*p == '\0') break;
    }
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static int intern_grow(intern_table *t)
{
    size_t cap = t->slots ? 2 * (t->mask + 1) : 1024;
    intern_slot *slots = calloc(cap, sizeof *slots);
    if (slots == NULL) return TERN_ENOMEM;
    for (size_t i = 0; t->slots != NULL && i <= t->mask; i++) {
        if (t->slots[i].object == 0) continue;
        size_t s = t->slots[i].hash & (cap - 1);
        while (slots[s].object != 0)
            s = (s + 1) & (cap - 1);
        slots[s] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->mask = cap - 1;
    return 0;
}

static uint32_t policy_for(const ops__sim_input *in, const char *bucket)
{
    for (size_t i = 1; i < in->policy_count; i++)
        if (strcmp(in->policy_buckets[i], bucket) == 0) return (uint32_t)i;
    return 0;
}

/* The interned copy of a bucket name (buckets are few; the last one found is tried first). */
static int intern_bucket(ops__sim_input *in, const char *bucket, size_t *last, size_t *out)
{
    if (*last < in->bucket_count && strcmp(in->buckets[*last], bucket) == 0) {
        *out = *last;
        return 0;
    }
    for (size_t i = 0; i < in->bucket_count; i++)
        if (strcmp(in->buckets[i], bucket) == 0) {
            *out = *last = i;
            return 0;
        }
    if (in->bucket_count == in->bucket_cap) {
        size_t cap = in->bucket_cap ? 2 * in->bucket_cap : 16;
        char **names = realloc(in->buckets, cap * sizeof *names);
        if (names == NULL) return TERN_ENOMEM;
        in->buckets = names;
        uint32_t *policies = realloc(in->bucket_policy, cap * sizeof *policies);
        if (policies == NULL) return TERN_ENOMEM;
        in->bucket_policy = policies;
        in->bucket_cap = cap;
    }
    in->buckets[in->bucket_count] = strdup(bucket);
    if (in->buckets[in->bucket_count] == NULL) return TERN_ENOMEM;
    in->bucket_policy[in->bucket_count] = policy_for(in, bucket);
    *out = *last = in->bucket_count++;
    return 0;
}

/* The object index of bucket/key, adding it on first sight. */
static int intern_object(ops__sim_input *in, intern_table *t, size_t bucket, const char *key,
                         uint32_t *out)
{
    if (t->slots == NULL || 2 * (t->used + 1) > t->mask + 1) {
        int rc = intern_grow(t);
        if (rc != 0) return rc;
    }
    const char *name = in->buckets[bucket];
    uint64_t h = hash_name(name, key);
    size_t s = h & t->mask;
    for (; t->slots[s].object != 0; s = (s + 1) & t->mask) {
        const plc_sim_object *o = &in->objects[t->slots[s].object - 1];
        if (t->slots[s].hash == h && o->bucket == name && strcmp(o->key, key) == 0) {
            *out = t->slots[s].object - 1;
            return 0;
        }
    }
    if (in->object_count == in->object_cap) {
        size_t cap = in->object_cap ? 2 * in->object_cap : 1024;
        plc_sim_object *grown = realloc(in->objects, cap * sizeof *grown);
        if (grown == NULL) return TERN_ENOMEM;
        in->objects = grown;
        in->object_cap = cap;
    }
    char *key_copy = strdup(key);
    if (key_copy == NULL) return TERN_ENOMEM;
    in->objects[in->object_count] = (plc_sim_object){name, key_copy, in->bucket_policy[bucket]};
    *out = (uint32_t)in->object_count++;
    t->slots[s] = (intern_slot){h, *out + 1};
    t->used++;
    return 0;
}

/* Splits line at commas into exactly n fields; false if the count differs. */
static bool split_fields(char *line, char **fields, size_t n)
{
    size_t i = 0;
    fields[i++] = line;
    for (char *p = line; *p; p++)
        if (*p == ',') {
            if (i == n) return false;
            *p = '\0';
            fields[i++] = p + 1;
        }
    return i == n;
}

static bool parse_u64(const char *text, uint64_t *out)
{
    if (text[0] == '\0' || strspn(text, "0123456789") != strlen(text)) return false;
    errno = 0;
    unsigned long long v = strtoull(text, NULL, 10);
    if (errno != 0) return false;
    *out = v;
    return true;
}

enum { F_TS, F_REGION, F_OP, F_BUCKET, F_KEY, F_BYTES, F_COUNT };
static const char *const field_names[F_COUNT] = {"ts_ms", "region", "op", "bucket", "key", "bytes"};
#define TRACE_HEADER "ts_ms,region,op,bucket,key,bytes"

static int parse_line(ops__sim_input *in, intern_table *names, char *line, size_t lineno,
                      const char *path, size_t *last_bucket, char *why, size_t why_len)
{
    char *f[F_COUNT];
    if (!split_fields(line, f, F_COUNT))
        return bad_line(why, why_len, path, lineno, "expected 6 comma-separated fields (%s)",
                        TRACE_HEADER);
    uint64_t ts, bytes;
    if (!parse_u64(f[F_TS], &ts) || ts > (uint64_t)INT64_MAX / 2)
        return bad_line(why, why_len, path, lineno, "field ts_ms: not a non-negative integer");
    int region = region_index(in, f[F_REGION]);
    if (region < 0)
        return bad_line(why, why_len, path, lineno,
                        "field region: '%s' is not a region of the topology", f[F_REGION]);
    plc_op op = strcmp(f[F_OP], "GET") == 0      ? PLC_GET
                : strcmp(f[F_OP], "PUT") == 0    ? PLC_PUT
                : strcmp(f[F_OP], "DELETE") == 0 ? PLC_DELETE
                                                 : 0;
    if (op == 0)
        return bad_line(why, why_len, path, lineno, "field op: '%s' is not GET, PUT or DELETE",
                        f[F_OP]);
    for (int i = F_BUCKET; i <= F_KEY; i++)
        if (f[i][0] == '\0' || strchr(f[i], '"') != NULL)
            return bad_line(why, why_len, path, lineno, "field %s: empty or quoted",
                            field_names[i]);
    if (!parse_u64(f[F_BYTES], &bytes))
        return bad_line(why, why_len, path, lineno, "field bytes: not a non-negative integer");
    if (in->event_count > 0 && (int64_t)ts < in->events[in->event_count - 1].ts_ms)
        return bad_line(why, why_len, path, lineno,
                        "field ts_ms: %llu is before the previous line's %lld (the trace must be "
                        "sorted by time)",
                        (unsigned long long)ts, (long long)in->events[in->event_count - 1].ts_ms);
    size_t bucket;
    uint32_t object;
    int rc = intern_bucket(in, f[F_BUCKET], last_bucket, &bucket);
    if (rc == 0) rc = intern_object(in, names, bucket, f[F_KEY], &object);
    if (rc != 0) return rc;
    if (in->event_count == in->event_cap) {
        size_t cap = in->event_cap ? 2 * in->event_cap : 4096;
        plc_sim_event *grown = realloc(in->events, cap * sizeof *grown);
        if (grown == NULL) return TERN_ENOMEM;
        in->events = grown;
        in->event_cap = cap;
    }
    in->events[in->event_count++] =
        (plc_sim_event){(int64_t)ts, object, (uint32_t)region, op, bytes};
    return 0;
}

int ops__sim_read_trace(ops__sim_input *in, const char *path, char *why, size_t why_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) return bad(why, why_len, path, "%s", strerror(errno));
    intern_table names = {0};
    char line[TRACE_LINE_MAX];
    size_t lineno = 0, last_bucket = SIZE_MAX;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = bad_line(why, why_len, path, lineno, "longer than %d bytes", TRACE_LINE_MAX - 2);
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (lineno == 1) {
            if (strcmp(line, TRACE_HEADER) != 0)
                rc = bad_line(why, why_len, path, 1, "header: expected '%s'", TRACE_HEADER);
            continue;
        }
        if (len == 0) continue;
        rc = parse_line(in, &names, line, lineno, path, &last_bucket, why, why_len);
    }
    if (rc == 0 && ferror(f)) rc = bad(why, why_len, path, "read error");
    if (rc == 0 && lineno == 0) rc = bad_line(why, why_len, path, 1, "header: the file is empty");
    if (rc == TERN_ENOMEM) tern_errmsg(why, why_len, "%s: out of memory", path);
    fclose(f);
    free(names.slots);
    in->trace = (plc_sim_trace){
        .events = in->events,
        .event_count = in->event_count,
        .objects = in->objects,
        .object_count = in->object_count,
        .policies = in->policies,
        .policy_count = in->policy_count,
        .end_ms = in->event_count ? in->events[in->event_count - 1].ts_ms : 0,
    };
    return rc;
}

void ops__sim_input_free(ops__sim_input *in)
{
    for (size_t i = 0; i < in->object_count; i++)
        free((char *)in->objects[i].key);
    for (size_t i = 0; i < in->bucket_count; i++)
        free(in->buckets[i]);
    for (size_t i = 0; in->policy_buckets != NULL && i < in->policy_count; i++)
        free(in->policy_buckets[i]);
    free(in->buckets);
    free(in->bucket_policy);
    free(in->objects);
    free(in->events);
    free(in->policies);
    free(in->policy_buckets);
    memset(in, 0, sizeof *in);
}
