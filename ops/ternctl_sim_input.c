/* ternctl sim: reads the topology (with node/topology.c) and the trace CSV for the simulator. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ternctl_sim.h"

/*
 * Every error names the file and where in it: "trace.csv:17: field bytes: not a non-negative
 * integer" (and the topology's, "T.json: egress_usd_per_gb.a.b: missing"). The first error
 * stops the read: a simulator run on a half-understood input would print confident wrong
 * numbers.
 */

#define TRACE_LINE_MAX 4096

/* ---------------------------------------------------------------- errors, topology */

static int region_index(const ops__sim_input *in, const char *name)
{
    return node_topology_region(&in->document, name);
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

/* The document is ternd's topology too (node/topology.c); the simulator ignores its endpoints
 * and RTOs, and works on a copy of its prices and views of its policies. */
int ops__sim_read_topology(ops__sim_input *in, const char *path, char *why, size_t why_len)
{
    int rc = node_topology_load(path, &in->document, why, why_len);
    if (rc != 0) return rc;
    in->topology = in->document.prices;
    in->policies = in->document.policies;
    in->policy_buckets = in->document.policy_buckets;
    in->policy_count = in->document.policy_count;
    return 0;
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
    return (uint32_t)node_topology_bucket_policy(&in->document, bucket);
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
    free(in->buckets);
    free(in->bucket_policy);
    free(in->objects);
    free(in->events);
    node_topology_free(&in->document);
    memset(in, 0, sizeof *in);
}
