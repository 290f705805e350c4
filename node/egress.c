/* Egress accounting: cross-region bytes and dollars by pair and cause, against full replication. */
#include <assert.h>
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "placement.h"

/*
 * Design note. Every figure is a byte or event count in a relaxed atomic
 * (the replicator, the read path and the repair path record from their own
 * threads, and a record must never wait behind a /metrics scrape); prices
 * are constant after node_egress_new, so dollars are derived from the counts
 * when a snapshot is taken and a counter in USD can never drift from its
 * bytes. Counts are monotonic, hence so is every USD figure: both fit
 * Prometheus counters.
 *
 * The counterfactual is full replication of the same client writes: each
 * write shipped from its origin to every other region, priced as the
 * cheapest tree of copies (each region copied from one that already has the
 * bytes), not as the sum of direct prices from the origin. The tree is the
 * least that full replication can pay, so the saving shown is never
 * flattered by a naive baseline; and it is c({o}, all regions) of
 * docs/placement.md, the price `ternctl sim` charges its `full` policy, so
 * live figures and simulated ones compare. Under full replication every
 * read is local (no egress); repairs count in the actual figure but not in
 * the counterfactual (full replication would need them too), which can only
 * make the saving look smaller. So the counterfactual is writes only.
 */

_Static_assert(NODE_EGRESS_REGIONS_MAX == PLC_REGIONS_MAX, "node_egress_totals sized by region");
_Static_assert(NODE_EGRESS_REGION_NAME_MAX == PLC_REGION_NAME_MAX, "region names copied whole");

struct node_egress {
    plc_topology topology;
    uint32_t local_region;
    double full_replication_usd_per_gb[PLC_REGIONS_MAX]; /* per origin, see below */
    _Atomic uint64_t pair_bytes[PLC_REGIONS_MAX][PLC_REGIONS_MAX][NODE_EGRESS_CAUSE_COUNT];
    _Atomic uint64_t writes[PLC_REGIONS_MAX];
    _Atomic uint64_t written_bytes[PLC_REGIONS_MAX];
    _Atomic uint64_t reads[PLC_REGIONS_MAX];
    _Atomic uint64_t read_bytes[PLC_REGIONS_MAX];
};

static const char *const cause_names[NODE_EGRESS_CAUSE_COUNT] = {
    [NODE_EGRESS_REPLICATION] = "replication",
    [NODE_EGRESS_REMOTE_READ] = "remote_read",
    [NODE_EGRESS_REPAIR] = "repair",
};

const char *node_egress_cause_name(node_egress_cause cause)
{
    assert((unsigned)cause < NODE_EGRESS_CAUSE_COUNT);
    return cause_names[cause];
}

static int check_topology(const plc_topology *t, uint32_t local_region, char *errmsg,
                          size_t errmsg_len)
{
    if (t->region_count == 0 || t->region_count > PLC_REGIONS_MAX) {
        tern_errmsg(errmsg, errmsg_len, "egress: %zu regions (expected 1 to %d)", t->region_count,
                    PLC_REGIONS_MAX);
        return TERN_EINVAL;
    }
    if (local_region >= t->region_count) {
        tern_errmsg(errmsg, errmsg_len, "egress: local region %u is not one of the %zu regions",
                    local_region, t->region_count);
        return TERN_EINVAL;
    }
    for (size_t from = 0; from < t->region_count; from++)
        for (size_t to = 0; to < t->region_count; to++) {
            double price = t->egress_usd_per_gb[from][to];
            if (from != to && (!isfinite(price) || price < 0)) {
                tern_errmsg(errmsg, errmsg_len,
                            "egress: the price from %s to %s is not a non-negative number",
                            t->names[from], t->names[to]);
                return TERN_EINVAL;
            }
        }
    return 0;
}

/*
 * The cheapest way to copy one GB from origin to every region, each copy made from a region
 * that already holds it: the minimum arborescence rooted at origin, found exactly by a DP
 * over the sets of regions reached so far (2^k sets, k <= 8), in the order a copy schedule
 * can build them. This is c({origin}, all) of docs/placement.md as placement/sim_ledger.c
 * computes it (plc_relay_usd_per_byte; relays do not matter when every region is a target),
 * kept here in USD per GB so that its dollars come out of the same bytes x price / 1e9 as
 * every other figure (test_egress checks the two agree).
 */
static double full_replication_usd_per_gb(const plc_topology *t, uint32_t origin)
{
    size_t k = t->region_count, sets = (size_t)1 << k;
    double cost[1u << PLC_REGIONS_MAX];
    for (size_t s = 0; s < sets; s++)
        cost[s] = INFINITY;
    cost[(size_t)1 << origin] = 0;
    for (size_t s = 1; s < sets; s++) {
        if (isinf(cost[s])) continue;
        for (size_t to = 0; to < k; to++) {
            if (s & ((size_t)1 << to)) continue;
            double cheapest = INFINITY;
            for (size_t from = 0; from < k; from++)
                if ((s & ((size_t)1 << from)) && t->egress_usd_per_gb[from][to] < cheapest)
                    cheapest = t->egress_usd_per_gb[from][to];
            size_t grown = s | ((size_t)1 << to);
            if (cost[s] + cheapest < cost[grown]) cost[grown] = cost[s] + cheapest;
        }
    }
    /* Every price is finite (check_topology), so every set is reachable. */
    assert(isfinite(cost[sets - 1]) && cost[sets - 1] >= 0);
    return cost[sets - 1];
}

int node_egress_new(const struct plc_topology *topology, uint32_t local_region, node_egress **out,
                    char *errmsg, size_t errmsg_len)
{
    int rc = check_topology(topology, local_region, errmsg, errmsg_len);
    if (rc != 0) return rc;
    node_egress *e = calloc(1, sizeof *e);
    if (e == NULL) return TERN_ENOMEM;
    e->topology = *topology;
    /* A transfer within a region is not egress, whatever the matrix says on its diagonal. */
    for (size_t r = 0; r < e->topology.region_count; r++)
        e->topology.egress_usd_per_gb[r][r] = 0;
    e->local_region = local_region;
    for (uint32_t origin = 0; origin < e->topology.region_count; origin++)
        e->full_replication_usd_per_gb[origin] = full_replication_usd_per_gb(&e->topology, origin);
    *out = e;
    return 0;
}

void node_egress_free(node_egress *e)
{
    free(e);
}

void node_egress_record(node_egress *e, uint32_t from, uint32_t to, node_egress_cause cause,
                        uint64_t bytes)
{
    assert(from < e->topology.region_count && to < e->topology.region_count);
    assert((unsigned)cause < NODE_EGRESS_CAUSE_COUNT);
    if (from == to) return;
    atomic_fetch_add_explicit(&e->pair_bytes[from][to][cause], bytes, memory_order_relaxed);
}

void node_egress_record_write(node_egress *e, uint32_t origin, uint64_t bytes)
{
    assert(origin < e->topology.region_count);
    atomic_fetch_add_explicit(&e->writes[origin], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->written_bytes[origin], bytes, memory_order_relaxed);
}

void node_egress_record_read(node_egress *e, uint32_t region, uint64_t bytes)
{
    assert(region < e->topology.region_count);
    atomic_fetch_add_explicit(&e->reads[region], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&e->read_bytes[region], bytes, memory_order_relaxed);
}

static uint64_t load(_Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

static double usd_of(uint64_t bytes, double usd_per_gb)
{
    return (double)bytes * usd_per_gb / PLC_BYTES_PER_GB;
}

void node_egress_snapshot(node_egress *e, node_egress_totals *out)
{
    memset(out, 0, sizeof *out);
    const plc_topology *t = &e->topology;
    size_t k = t->region_count;
    out->region_count = k;
    out->local_region = e->local_region;
    memcpy(out->region_names, t->names, sizeof out->region_names);
    memcpy(out->egress_usd_per_gb, t->egress_usd_per_gb, sizeof out->egress_usd_per_gb);
    uint64_t remote_read_bytes = 0;
    for (size_t from = 0; from < k; from++)
        for (size_t to = 0; to < k; to++)
            for (size_t c = 0; c < NODE_EGRESS_CAUSE_COUNT; c++) {
                uint64_t bytes = load(&e->pair_bytes[from][to][c]);
                double usd = usd_of(bytes, t->egress_usd_per_gb[from][to]);
                out->pairs[from][to][c] = (node_egress_flow){bytes, usd};
                out->by_cause[c].bytes += bytes;
                out->by_cause[c].usd += usd;
                out->total.bytes += bytes;
                out->total.usd += usd;
                if (c == NODE_EGRESS_REMOTE_READ) remote_read_bytes += bytes;
            }
    for (size_t r = 0; r < k; r++) {
        out->writes[r] = load(&e->writes[r]);
        out->written_bytes[r] = load(&e->written_bytes[r]);
        out->reads[r] = load(&e->reads[r]);
        out->read_bytes[r] = load(&e->read_bytes[r]);
        out->write_count += out->writes[r];
        out->written_bytes_total += out->written_bytes[r];
        out->read_count += out->reads[r];
        out->read_bytes_total += out->read_bytes[r];
        out->full_replication_usd_per_gb[r] = e->full_replication_usd_per_gb[r];
        out->full_replication_usd +=
            usd_of(out->written_bytes[r], e->full_replication_usd_per_gb[r]);
    }
    out->full_replication_ratio =
        out->full_replication_usd > 0 ? out->total.usd / out->full_replication_usd : 0;
    out->full_replication_saving_usd = out->full_replication_usd - out->total.usd;
    /* A read recorded after its remote transfer can make the transfer outrun the reads for a
     * moment; the ratio stays within [0, 1] regardless. */
    out->local_read_bytes_ratio =
        out->read_bytes_total == 0 ? 1.0
        : remote_read_bytes >= out->read_bytes_total
            ? 0.0
            : 1.0 - (double)remote_read_bytes / (double)out->read_bytes_total;
}

/* ---------------------------------------------------------------- Prometheus text */

/* Shortest of %.15g/%.17g that reads back exactly (as node/metrics.c renders values). */
static void format_double(double value, char *buf, size_t buf_len)
{
    assert(isfinite(value));
    snprintf(buf, buf_len, "%.15g", value);
    if (strtod(buf, NULL) != value) snprintf(buf, buf_len, "%.17g", value);
}

/* A label value with \\, \" and \n escaped, as the exposition format requires. */
static void write_label_value(FILE *out, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
}

static void write_family_head(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void write_pair_family(FILE *out, const node_egress_totals *t, const char *name,
                              const char *help, bool usd)
{
    char number[64];
    write_family_head(out, name, "counter", help);
    for (size_t from = 0; from < t->region_count; from++)
        for (size_t to = 0; to < t->region_count; to++) {
            if (from == to) continue;
            for (size_t c = 0; c < NODE_EGRESS_CAUSE_COUNT; c++) {
                const node_egress_flow *f = &t->pairs[from][to][c];
                fprintf(out, "%s{from=\"", name);
                write_label_value(out, t->region_names[from]);
                fputs("\",to=\"", out);
                write_label_value(out, t->region_names[to]);
                fprintf(out, "\",cause=\"%s\"} ", cause_names[c]);
                if (usd) {
                    format_double(f->usd, number, sizeof number);
                    fprintf(out, "%s\n", number);
                } else {
                    fprintf(out, "%llu\n", (unsigned long long)f->bytes);
                }
            }
        }
}

static void write_region_family(FILE *out, const node_egress_totals *t, const char *name,
                                const char *help, const uint64_t *values)
{
    write_family_head(out, name, "counter", help);
    for (size_t r = 0; r < t->region_count; r++) {
        fprintf(out, "%s{region=\"", name);
        write_label_value(out, t->region_names[r]);
        fprintf(out, "\"} %llu\n", (unsigned long long)values[r]);
    }
}

static void write_metrics(FILE *out, const node_egress_totals *t)
{
    char number[64];
    write_pair_family(out, t, "tern_egress_bytes_total",
                      "Bytes sent from one region to another, by cause.", false);
    write_pair_family(out, t, "tern_egress_usd_total",
                      "Egress dollars from one region to another, by cause (bytes x the "
                      "topology's price per GB).",
                      true);
    write_region_family(out, t, "tern_egress_written_bytes_total",
                        "Bytes of client writes by the region they arrived in.", t->written_bytes);
    write_region_family(out, t, "tern_egress_read_bytes_total",
                        "Bytes of client reads by the region they were served to.", t->read_bytes);
    write_family_head(out, "tern_egress_full_replication_usd_total", "counter",
                      "Egress dollars full replication would have paid for the same writes "
                      "(cheapest copy tree from each write's origin to every other region).");
    format_double(t->full_replication_usd, number, sizeof number);
    fprintf(out, "tern_egress_full_replication_usd_total %s\n", number);
    write_family_head(out, "tern_egress_full_replication_ratio", "gauge",
                      "Egress dollars paid over what full replication would have paid (0 "
                      "before any write).");
    format_double(t->full_replication_ratio, number, sizeof number);
    fprintf(out, "tern_egress_full_replication_ratio %s\n", number);
}

int node_egress_metrics_append(const node_egress_totals *t, char **text, size_t *len)
{
    assert(t->region_count >= 1 && t->region_count <= NODE_EGRESS_REGIONS_MAX);
    char *extra = NULL;
    size_t extra_len = 0;
    FILE *stream = open_memstream(&extra, &extra_len);
    if (stream == NULL) return TERN_ENOMEM;
    write_metrics(stream, t);
    bool failed = ferror(stream) != 0;
    if (fclose(stream) != 0) failed = true;
    if (failed) {
        free(extra);
        return TERN_ENOMEM;
    }
    size_t old_len = *text != NULL ? *len : 0;
    char *grown = realloc(*text, old_len + extra_len + 1);
    if (grown == NULL) {
        free(extra);
        return TERN_ENOMEM;
    }
    memcpy(grown + old_len, extra, extra_len + 1);
    free(extra);
    *text = grown;
    *len = old_len + extra_len;
    return 0;
}

/* ---------------------------------------------------------------- JSON */

static json_t *flow_json(const node_egress_flow *f)
{
    return json_pack("{s:I, s:f}", "bytes", (json_int_t)f->bytes, "usd", f->usd);
}

static json_t *regions_json(const node_egress_totals *t)
{
    json_t *regions = json_array();
    for (size_t r = 0; regions != NULL && r < t->region_count; r++) {
        json_t *region =
            json_pack("{s:s, s:I, s:I, s:I, s:I, s:f}", "name", t->region_names[r], "writes",
                      (json_int_t)t->writes[r], "written_bytes", (json_int_t)t->written_bytes[r],
                      "reads", (json_int_t)t->reads[r], "read_bytes", (json_int_t)t->read_bytes[r],
                      "full_replication_usd_per_gb", t->full_replication_usd_per_gb[r]);
        if (json_array_append_new(regions, region) != 0) {
            json_decref(regions);
            return NULL;
        }
    }
    return regions;
}

/* Only the (pair, cause) entries that carried bytes: the matrix is mostly zeros. */
static json_t *flows_json(const node_egress_totals *t)
{
    json_t *flows = json_array();
    for (size_t from = 0; flows != NULL && from < t->region_count; from++)
        for (size_t to = 0; to < t->region_count; to++)
            for (size_t c = 0; c < NODE_EGRESS_CAUSE_COUNT; c++) {
                const node_egress_flow *f = &t->pairs[from][to][c];
                if (f->bytes == 0) continue;
                json_t *flow = json_pack("{s:s, s:s, s:s, s:I, s:f, s:f}", "from",
                                         t->region_names[from], "to", t->region_names[to], "cause",
                                         cause_names[c], "bytes", (json_int_t)f->bytes, "usd",
                                         f->usd, "usd_per_gb", t->egress_usd_per_gb[from][to]);
                if (json_array_append_new(flows, flow) != 0) {
                    json_decref(flows);
                    return NULL;
                }
            }
    return flows;
}

/* The members of the document totals_json builds. */
#define JSON_MEMBERS 7

static json_t *totals_json(const node_egress_totals *t)
{
    json_t *by_cause = json_object();
    for (size_t c = 0; by_cause != NULL && c < NODE_EGRESS_CAUSE_COUNT; c++) {
        if (json_object_set_new(by_cause, cause_names[c], flow_json(&t->by_cause[c])) != 0) {
            json_decref(by_cause);
            return NULL;
        }
    }
    json_t *full =
        json_pack("{s:f, s:f, s:f, s:I, s:I, s:f}", "usd", t->full_replication_usd, "ratio",
                  t->full_replication_ratio, "saving_usd", t->full_replication_saving_usd, "writes",
                  (json_int_t)t->write_count, "written_bytes", (json_int_t)t->written_bytes_total,
                  "local_read_bytes_ratio", 1.0);
    return json_pack("{s:s, s:o*, s:o*, s:o*, s:o*, s:{s:I, s:I, s:f}, s:o*}", "local_region",
                     t->region_names[t->local_region], "regions", regions_json(t), "flows",
                     flows_json(t), "by_cause", by_cause, "total", flow_json(&t->total), "reads",
                     "count", (json_int_t)t->read_count, "bytes", (json_int_t)t->read_bytes_total,
                     "local_bytes_ratio", t->local_read_bytes_ratio, "full_replication", full);
}

int node_egress_json(const node_egress_totals *t, char **out, size_t *len)
{
    assert(t->region_count >= 1 && t->region_count <= NODE_EGRESS_REGIONS_MAX);
    assert(t->local_region < t->region_count);
    json_t *root = totals_json(t);
    /* A member that failed to build leaves its key out ("o*"): a partial document is no use. */
    bool complete = root != NULL && json_object_size(root) == JSON_MEMBERS;
    /* 15 significant digits: 0.06 stays "0.06" (17 would print 0.059999999999999998), and no
     * dollar figure means anything near the 15th digit. */
    size_t flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15);
    char *text = complete ? json_dumps(root, flags) : NULL;
    json_decref(root);
    if (text == NULL) return TERN_ENOMEM;
    *out = text;
    if (len != NULL) *len = strlen(text);
    return 0;
}
