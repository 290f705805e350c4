/* The topology document: regions, endpoints, prices, RTTs, bucket policies (ternd, ternctl sim). */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "node.h"

/*
 * One parser for the one document that describes a deployment: ternd reads it with --topology
 * and `ternctl sim` prices placement policies on it, so the simulator and the live system can
 * never disagree on what a field means.
 *
 * Every error names the file and the JSON path: "T.json: egress_usd_per_gb.a.b: missing". The
 * first error stops the read: a node or a simulator run on a half-understood document would act
 * on (or print) confident wrong numbers. The texts of the simulator's errors are relied on by
 * tests and by docs/placement.md: change them only together.
 */

#define BUCKETS_MAX  4096
#define YEAR_SECONDS (365 * 86400)
/* Longest endpoint text: a 253-character DNS name, brackets, a port and a scheme. */
#define ENDPOINT_CHARS_MAX 300

/* A region group has at most NODE_GROUP_PEERS_MAX members, each with one address of a kind. */
_Static_assert(NODE_TOPOLOGY_ENDPOINTS_MAX >= NODE_GROUP_PEERS_MAX,
               "a region's endpoint lists must hold every member of its group");

typedef struct {
    node_topology *t;
    const char *file;
    char *why;
    size_t why_len;
} parse_ctx;

static int bad(parse_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(parse_ctx *c, const char *fmt, ...)
{
    char detail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    tern_errmsg(c->why, c->why_len, "%s: %s", c->file, detail);
    return TERN_EPARSE;
}

static bool get_number(const json_t *v, double *out)
{
    if (!json_is_number(v)) return false;
    *out = json_number_value(v);
    return isfinite(*out) && *out >= 0;
}

int node_topology_region(const node_topology *t, const char *name)
{
    for (size_t r = 0; r < t->prices.region_count; r++)
        if (strcmp(t->prices.names[r], name) == 0) return (int)r;
    return -1;
}

size_t node_topology_bucket_policy(const node_topology *t, const char *bucket)
{
    for (size_t i = 1; i < t->policy_count; i++)
        if (strcmp(t->policy_buckets[i], bucket) == 0) return i;
    return 0;
}

/*
 * Refuses a key the format does not define: a misspelt "min_region" would otherwise leave the
 * default in force and the run would answer a question nobody asked.
 */
static int check_keys(parse_ctx *c, const json_t *obj, const char *const *known, const char *path)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; known[i] != NULL && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok) return bad(c, "%s%s%s: unknown field", path, path[0] ? "." : "", key);
    }
    return 0;
}

/* ---------------------------------------------------------------- endpoints */

/* A port of 1 to 5 digits in 1..65535. */
static bool port_valid(const char *text)
{
    size_t len = strlen(text);
    if (len == 0 || len > 5 || strspn(text, "0123456789") != len) return false;
    long port = strtol(text, NULL, 10);
    return port >= 1 && port <= 65535;
}

/*
 * HOST:PORT with HOST a DNS name or IPv4 address (letters, digits, '-', '.', '_') or a bracketed
 * IPv6 address. Anything else (spaces, a scheme, a path, a bare IPv6 address whose last group
 * would read as the port) is refused here rather than failing later at connect time.
 */
static bool host_port_valid(const char *text)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text || !port_valid(colon + 1)) return false;
    size_t host_len = (size_t)(colon - text);
    if (text[0] == '[') {
        if (host_len < 4 || colon[-1] != ']') return false; /* "[::]" at least */
        for (size_t i = 1; i < host_len - 1; i++)
            if (!isxdigit((unsigned char)text[i]) && text[i] != ':' && text[i] != '.') return false;
        return true;
    }
    for (size_t i = 0; i < host_len; i++)
        if (!isalnum((unsigned char)text[i]) && strchr("-._", text[i]) == NULL) return false;
    return true;
}

/* http://HOST:PORT or https://HOST:PORT: the base of a region's S3 API, without a path. */
static bool url_valid(const char *text)
{
    if (strncmp(text, "http://", 7) == 0) return host_port_valid(text + 7);
    if (strncmp(text, "https://", 8) == 0) return host_port_valid(text + 8);
    return false;
}

/* Whether text is already listed under field by any region up to and including `region`. */
static bool endpoint_seen(const node_topology *t, bool url, size_t region, const char *text)
{
    for (size_t r = 0; r <= region; r++) {
        char **list = url ? t->s3_endpoints[r] : t->peer_endpoints[r];
        size_t count = url ? t->s3_endpoint_count[r] : t->peer_endpoint_count[r];
        for (size_t i = 0; i < count; i++)
            if (strcmp(list[i], text) == 0) return true;
    }
    return false;
}

/* regions[region].peer_endpoints or .s3_endpoints (url): optional, as the simulator needs
 * neither; an address may appear once in the whole document, as a node is in one region. */
static int parse_endpoints(parse_ctx *c, size_t region, const json_t *r, bool url)
{
    const char *field = url ? "s3_endpoints" : "peer_endpoints";
    const char *form = url ? "http://HOST:PORT or https://HOST:PORT" : "HOST:PORT";
    const json_t *list = json_object_get(r, field);
    if (list == NULL) return 0;
    if (!json_is_array(list))
        return bad(c, "regions[%zu].%s: not an array of %s strings", region, field, form);
    if (json_array_size(list) > NODE_TOPOLOGY_ENDPOINTS_MAX)
        return bad(c, "regions[%zu].%s: more than %d", region, field, NODE_TOPOLOGY_ENDPOINTS_MAX);
    char ***slot = url ? &c->t->s3_endpoints[region] : &c->t->peer_endpoints[region];
    size_t *count = url ? &c->t->s3_endpoint_count[region] : &c->t->peer_endpoint_count[region];
    *slot = calloc(json_array_size(list) + 1, sizeof **slot);
    if (*slot == NULL) return TERN_ENOMEM;
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *v = json_array_get(list, i);
        if (!json_is_string(v))
            return bad(c, "regions[%zu].%s[%zu]: not a string", region, field, i);
        const char *text = json_string_value(v);
        bool ok =
            strlen(text) <= ENDPOINT_CHARS_MAX && (url ? url_valid(text) : host_port_valid(text));
        if (!ok)
            return bad(c, "regions[%zu].%s[%zu]: '%s' is not %s with a port from 1 to 65535",
                       region, field, i, text, form);
        if (endpoint_seen(c->t, url, region, text))
            return bad(c, "regions[%zu].%s[%zu]: '%s' appears twice", region, field, i, text);
        (*slot)[i] = strdup(text);
        if ((*slot)[i] == NULL) return TERN_ENOMEM;
        (*count)++;
    }
    return 0;
}

/* ---------------------------------------------------------------- regions and prices */

static int parse_region(parse_ctx *c, size_t i, const json_t *r)
{
    static const char *const region_keys[] = {"name", "storage_usd_per_gb_month", "peer_endpoints",
                                              "s3_endpoints", NULL};
    plc_topology *t = &c->t->prices;
    char path[40];
    snprintf(path, sizeof path, "regions[%zu]", i);
    if (!json_is_object(r)) return bad(c, "%s: not an object", path);
    int rc = check_keys(c, r, region_keys, path);
    if (rc != 0) return rc;
    const json_t *name = json_object_get(r, "name");
    if (!json_is_string(name) || json_string_length(name) == 0 ||
        json_string_length(name) >= PLC_REGION_NAME_MAX ||
        strpbrk(json_string_value(name), ",\"\r\n") != NULL)
        return bad(c,
                   "regions[%zu].name: missing, or not a name of 1 to %d characters without "
                   "commas or quotes",
                   i, PLC_REGION_NAME_MAX - 1);
    if (node_topology_region(c->t, json_string_value(name)) >= 0)
        return bad(c, "regions[%zu].name: '%s' appears twice", i, json_string_value(name));
    double price;
    const json_t *storage = json_object_get(r, "storage_usd_per_gb_month");
    if (storage == NULL) return bad(c, "regions[%zu].storage_usd_per_gb_month: missing", i);
    if (!get_number(storage, &price))
        return bad(c, "regions[%zu].storage_usd_per_gb_month: not a non-negative number", i);
    rc = parse_endpoints(c, i, r, false);
    if (rc == 0) rc = parse_endpoints(c, i, r, true);
    if (rc != 0) return rc;
    snprintf(t->names[i], sizeof t->names[i], "%s", json_string_value(name));
    t->storage_usd_per_gb_month[i] = price;
    t->region_count = i + 1;
    return 0;
}

static int parse_regions(parse_ctx *c, const json_t *root)
{
    const json_t *regions = json_object_get(root, "regions");
    if (regions == NULL) return bad(c, "regions: missing");
    if (!json_is_array(regions) || json_array_size(regions) == 0 ||
        json_array_size(regions) > PLC_REGIONS_MAX)
        return bad(c, "regions: not an array of 1 to %d regions", PLC_REGIONS_MAX);
    for (size_t i = 0; i < json_array_size(regions); i++) {
        int rc = parse_region(c, i, json_array_get(regions, i));
        if (rc != 0) return rc;
    }
    return 0;
}

/* A {from: {to: value}} matrix with every ordered pair of distinct regions present. */
static int parse_matrix(parse_ctx *c, const json_t *root, const char *field,
                        double m[PLC_REGIONS_MAX][PLC_REGIONS_MAX])
{
    const json_t *outer = json_object_get(root, field);
    if (outer == NULL) return bad(c, "%s: missing", field);
    if (!json_is_object(outer)) return bad(c, "%s: not an object", field);
    const char *from;
    const json_t *row;
    json_object_foreach((json_t *)outer, from, row)
    {
        if (node_topology_region(c->t, from) < 0)
            return bad(c, "%s.%s: unknown region", field, from);
        if (!json_is_object(row)) return bad(c, "%s.%s: not an object", field, from);
        const char *to;
        const json_t *v;
        json_object_foreach((json_t *)row, to, v)
        {
            if (node_topology_region(c->t, to) < 0)
                return bad(c, "%s.%s.%s: unknown region", field, from, to);
            if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < 0)
                return bad(c, "%s.%s.%s: not a non-negative number", field, from, to);
        }
    }
    const plc_topology *t = &c->t->prices;
    for (size_t a = 0; a < t->region_count; a++)
        for (size_t b = 0; b < t->region_count; b++) {
            const json_t *v = json_object_get(json_object_get(outer, t->names[a]), t->names[b]);
            if (v == NULL && a != b)
                return bad(c, "%s.%s.%s: missing", field, t->names[a], t->names[b]);
            m[a][b] = v != NULL ? json_number_value(v) : 0;
        }
    return 0;
}

/* ---------------------------------------------------------------- bucket policies */

static int parse_region_list(parse_ctx *c, const json_t *list, const char *path, plc_mask *out)
{
    *out = 0;
    if (list == NULL) return 0;
    if (!json_is_array(list)) return bad(c, "%s: not an array of regions", path);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *v = json_array_get(list, i);
        int r = json_is_string(v) ? node_topology_region(c->t, json_string_value(v)) : -1;
        if (r < 0) return bad(c, "%s[%zu]: not a region of the topology", path, i);
        *out |= 1u << r;
    }
    return 0;
}

/* An integer field from 0 to a year, left unchanged when absent. */
static int parse_seconds(parse_ctx *c, const json_t *policy, const char *name, const char *field,
                         uint32_t *out)
{
    const json_t *v = json_object_get(policy, field);
    if (v == NULL) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > YEAR_SECONDS)
        return bad(c, "buckets.%s.%s: not an integer from 0 to a year", name, field);
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

static int parse_policy(parse_ctx *c, const char *name, const json_t *v, size_t index)
{
    static const char *const policy_keys[] = {"min_regions", "allowed_regions", "pinned_regions",
                                              "rpo_seconds", "rto_seconds",     NULL};
    size_t region_count = c->t->prices.region_count;
    plc_bucket_policy *p = &c->t->policies[index];
    char path[300];
    *p = (plc_bucket_policy){.min_regions = 1};
    c->t->rto_seconds[index] = 0;
    if (!json_is_object(v)) return bad(c, "buckets.%s: not an object", name);
    snprintf(path, sizeof path, "buckets.%s", name);
    int rc = check_keys(c, v, policy_keys, path);
    if (rc != 0) return rc;
    const json_t *min = json_object_get(v, "min_regions");
    if (min != NULL) {
        if (!json_is_integer(min) || json_integer_value(min) < 1 ||
            json_integer_value(min) > (json_int_t)region_count)
            return bad(c, "buckets.%s.min_regions: not an integer from 1 to the region count (%zu)",
                       name, region_count);
        p->min_regions = (uint32_t)json_integer_value(min);
    }
    rc = parse_seconds(c, v, name, "rpo_seconds", &p->rpo_seconds);
    if (rc == 0) rc = parse_seconds(c, v, name, "rto_seconds", &c->t->rto_seconds[index]);
    snprintf(path, sizeof path, "buckets.%s.allowed_regions", name);
    if (rc == 0)
        rc = parse_region_list(c, json_object_get(v, "allowed_regions"), path, &p->allowed);
    snprintf(path, sizeof path, "buckets.%s.pinned_regions", name);
    if (rc == 0) rc = parse_region_list(c, json_object_get(v, "pinned_regions"), path, &p->pinned);
    if (rc != 0) return rc;
    plc_mask allowed = p->allowed ? p->allowed : (plc_mask)((1u << region_count) - 1);
    if (p->pinned & ~allowed)
        return bad(c, "buckets.%s.pinned_regions: a region outside allowed_regions", name);
    if ((uint32_t)__builtin_popcount(allowed) < p->min_regions)
        return bad(c, "buckets.%s.min_regions: %u is more than the %d allowed regions", name,
                   p->min_regions, __builtin_popcount(allowed));
    return 0;
}

static int parse_buckets(parse_ctx *c, const json_t *root)
{
    node_topology *t = c->t;
    const json_t *buckets = json_object_get(root, "buckets");
    size_t count = json_is_object(buckets) ? json_object_size(buckets) : 0;
    if (buckets != NULL && !json_is_object(buckets)) return bad(c, "buckets: not an object");
    if (count > BUCKETS_MAX) return bad(c, "buckets: more than %d", BUCKETS_MAX);
    t->policies = calloc(count + 1, sizeof *t->policies);
    t->policy_buckets = calloc(count + 1, sizeof *t->policy_buckets);
    t->rto_seconds = calloc(count + 1, sizeof *t->rto_seconds);
    if (t->policies == NULL || t->policy_buckets == NULL || t->rto_seconds == NULL)
        return TERN_ENOMEM;
    /* Index 0 is the default ("*", or one region with everything allowed). */
    t->policies[0] = (plc_bucket_policy){.min_regions = 1};
    t->policy_count = 1;
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)buckets, name, v)
    {
        size_t i = strcmp(name, "*") == 0 ? 0 : t->policy_count++;
        int rc = parse_policy(c, name, v, i);
        if (rc != 0) return rc;
        t->policy_buckets[i] = strdup(name);
        if (t->policy_buckets[i] == NULL) return TERN_ENOMEM;
    }
    return 0;
}

/* ---------------------------------------------------------------- the document */

static int parse_document(parse_ctx *c, const json_t *root)
{
    static const char *const top_keys[] = {
        "regions", "egress_usd_per_gb", "rtt_ms", "bandwidth_mb_per_s", "buckets", NULL};
    if (!json_is_object(root)) return bad(c, "not a JSON object");
    int rc = check_keys(c, root, top_keys, "");
    if (rc == 0) rc = parse_regions(c, root);
    if (rc == 0) rc = parse_matrix(c, root, "egress_usd_per_gb", c->t->prices.egress_usd_per_gb);
    if (rc == 0) rc = parse_matrix(c, root, "rtt_ms", c->t->prices.rtt_ms);
    const json_t *bw = json_object_get(root, "bandwidth_mb_per_s");
    if (rc == 0 && bw != NULL && !get_number(bw, &c->t->prices.bandwidth_mb_per_s))
        rc = bad(c, "bandwidth_mb_per_s: not a non-negative number");
    if (rc == 0) rc = parse_buckets(c, root);
    return rc;
}

int node_topology_load(const char *path, node_topology *out, char *errmsg, size_t errmsg_len)
{
    parse_ctx c = {out, path, errmsg, errmsg_len};
    memset(out, 0, sizeof *out);
    json_error_t error;
    /* A key given twice would silently keep only its last value: refuse it like a typo. */
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &error);
    if (root == NULL) {
        if (error.line < 0 || strstr(error.text, "unable to open") != NULL) {
            bad(&c, "%s", error.text);
            return json_error_code(&error) == json_error_cannot_open_file ? TERN_EIO : TERN_EPARSE;
        }
        return bad(&c, "line %d, column %d: %s", error.line, error.column, error.text);
    }
    int rc = parse_document(&c, root);
    json_decref(root);
    if (rc == TERN_ENOMEM) tern_errmsg(errmsg, errmsg_len, "%s: out of memory", path);
    if (rc != 0) node_topology_free(out);
    return rc;
}

void node_topology_free(node_topology *t)
{
    for (size_t i = 0; t->policy_buckets != NULL && i < t->policy_count; i++)
        free(t->policy_buckets[i]);
    for (size_t r = 0; r < PLC_REGIONS_MAX; r++) {
        for (size_t i = 0; i < t->peer_endpoint_count[r]; i++)
            free(t->peer_endpoints[r][i]);
        for (size_t i = 0; i < t->s3_endpoint_count[r]; i++)
            free(t->s3_endpoints[r][i]);
        free(t->peer_endpoints[r]);
        free(t->s3_endpoints[r]);
    }
    free(t->policy_buckets);
    free(t->policies);
    free(t->rto_seconds);
    memset(t, 0, sizeof *t);
}

int node_topology_check_region(const node_topology *t, const char *region, const char *path,
                               char *errmsg, size_t errmsg_len)
{
    if (node_topology_region(t, region) >= 0) return 0;
    /* 8 names of at most 31 characters and their separators fit. */
    char names[PLC_REGIONS_MAX * (PLC_REGION_NAME_MAX + 2)] = "";
    size_t used = 0;
    for (size_t r = 0; r < t->prices.region_count; r++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", r ? ", " : "",
                                 t->prices.names[r]);
    tern_errmsg(errmsg, errmsg_len, "region '%s' is not in topology %s (regions: %s)", region, path,
                names);
    return TERN_EINVAL;
}
