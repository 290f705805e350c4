/* placement simulator: the replay ledger that prices replica-set changes and reads (pure). */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "placement.h"
#include "sim_internal.h"

/*
 * Design note. The ledger is the single place where the cost model of
 * placement.h is applied, so every policy (baselines, the engine, the oracle's
 * plan) is priced by the same code. Storage is booked per object at each of
 * its steps (exact, no per-tick sweep); a global storage rate is kept beside
 * it only to report the running total for the cumulative-cost plot. RPO
 * deadlines sit in a binary heap keyed by time so a policy that fixes a
 * replica set late is caught even when the object has no event for hours.
 */

#define RESERVE_MIN 1024

typedef struct {
    uint64_t bytes;
    int64_t since_ms; /* storage booked up to here */
    int64_t put_ms;   /* the last PUT of the current version */
    plc_mask holders;
    bool exists;
} ledger_object;

typedef struct {
    int64_t deadline_ms;
    int64_t put_ms; /* stale once the object was written again */
    uint32_t object;
} ledger_deadline;

struct plc_ledger {
    plc_topology topology;
    const plc_sim_trace *trace;
    plc__relay_cache relays;
    ledger_object *objects;
    ledger_deadline *heap;
    size_t heap_len, heap_cap;
    float *latencies; /* of remote and filled reads; local reads are 0 ms */
    size_t latency_len, latency_cap;
    plc_costs costs;
    uint64_t missed_reads;
    int64_t now_ms;
    /* sum over live objects of bytes x storage rate, and of that times since_ms */
    double rate, rate_since;
};

/* ---------------------------------------------------------------- helpers */

uint32_t plc__cheapest_holder(const plc_topology *t, plc_mask holders, uint32_t to)
{
    uint32_t best = UINT32_MAX;
    for (uint32_t s = 0; s < t->region_count; s++) {
        if (!(holders & (1u << s))) continue;
        if (best == UINT32_MAX || t->egress_usd_per_gb[s][to] < t->egress_usd_per_gb[best][to] ||
            (t->egress_usd_per_gb[s][to] == t->egress_usd_per_gb[best][to] &&
             t->rtt_ms[s][to] < t->rtt_ms[best][to]))
            best = s;
    }
    return best;
}

plc_mask plc__all_regions(const plc_topology *t)
{
    return (plc_mask)((1u << t->region_count) - 1);
}

plc_mask plc__allowed(const plc_topology *t, const plc_bucket_policy *p)
{
    return p->allowed != 0 ? p->allowed & plc__all_regions(t) : plc__all_regions(t);
}

double plc__storage_rate(const plc_topology *t, plc_mask set)
{
    double usd_per_gb_month = 0;
    for (uint32_t r = 0; r < t->region_count; r++)
        if (set & (1u << r)) usd_per_gb_month += t->storage_usd_per_gb_month[r];
    return usd_per_gb_month / PLC_BYTES_PER_GB / PLC_MS_PER_MONTH;
}

double plc__read_latency_ms(const plc_topology *t, uint32_t from, uint32_t to, uint64_t bytes)
{
    double mb_per_s = t->bandwidth_mb_per_s > 0 ? t->bandwidth_mb_per_s : 100.0;
    return t->rtt_ms[from][to] + (double)bytes / (mb_per_s * 1e6) * 1000.0;
}

/* ---------------------------------------------------------------- relay tables */

/*
 * cost[from][to] for every pair from subset-of to: the cheapest way to reach
 * `to` from `from` by single copies, each from a region already holding the
 * bytes (g below, a shortest path over the subset lattice, which only grows),
 * then dropping what is not wanted (the minimum over supersets). Built once
 * per allowed mask: 3^k x k steps, 2^2k doubles (512 KiB at k = 8).
 */
struct plc_relay_table {
    uint32_t k;
    double *cost;
};

int plc_relay_table_new(const plc_topology *t, plc_mask allowed, plc_relay_table **out)
{
    uint32_t k = (uint32_t)t->region_count;
    if (k == 0 || k > PLC_REGIONS_MAX) return TERN_EINVAL;
    size_t n = (size_t)1 << k;
    plc_relay_table *rt = calloc(1, sizeof *rt);
    double *min_from = malloc(n * k * sizeof *min_from);
    if (rt == NULL || min_from == NULL) goto nomem;
    rt->k = k;
    rt->cost = malloc(n * n * sizeof *rt->cost);
    if (rt->cost == NULL) goto nomem;
    allowed &= (plc_mask)(n - 1);
    for (size_t s = 0; s < n; s++)
        for (uint32_t r = 0; r < k; r++) {
            double best = INFINITY;
            for (uint32_t h = 0; h < k; h++)
                if ((s & (1u << h)) && t->egress_usd_per_gb[h][r] < best)
                    best = t->egress_usd_per_gb[h][r];
            min_from[s * k + r] = best / PLC_BYTES_PER_GB;
        }
    for (size_t from = 0; from < n; from++) {
        double *g = &rt->cost[from * n];
        plc_mask universe = (plc_mask)from | allowed;
        for (size_t s = 0; s < n; s++)
            g[s] = INFINITY;
        g[from] = 0;
        for (size_t s = from; s < n; s++) {
            if ((s & from) != from || (s & ~(size_t)universe) || isinf(g[s])) continue;
            for (uint32_t r = 0; r < k; r++) {
                size_t bit = (size_t)1 << r;
                if ((s & bit) || !(allowed & bit)) continue;
                double c = g[s] + min_from[s * k + r];
                if (c < g[s | bit]) g[s | bit] = c;
            }
        }
        /* Relays are dropped for free right after the copies they served. */
        for (uint32_t r = 0; r < k; r++) {
            size_t bit = (size_t)1 << r;
            if (!(allowed & bit) || (from & bit)) continue;
            for (size_t s = 0; s < n; s++)
                if (!(s & bit) && g[s | bit] < g[s]) g[s] = g[s | bit];
        }
    }
    free(min_from);
    *out = rt;
    return 0;
nomem:
    free(min_from);
    plc_relay_table_free(rt);
    return TERN_ENOMEM;
}

void plc_relay_table_free(plc_relay_table *rt)
{
    if (rt == NULL) return;
    free(rt->cost);
    free(rt);
}

double plc_relay_usd_per_byte(const plc_relay_table *rt, plc_mask from, plc_mask to)
{
    size_t n = (size_t)1 << rt->k;
    if ((from & to) != from || from >= n || to >= n) return INFINITY;
    return rt->cost[from * n + to];
}

int plc__relay_cache_init(plc__relay_cache *c, const plc_topology *t, const plc_sim_trace *trace)
{
    memset(c, 0, sizeof *c);
    c->by_policy = calloc(trace->policy_count ? trace->policy_count : 1, sizeof *c->by_policy);
    if (c->by_policy == NULL) return TERN_ENOMEM;
    for (size_t i = 0; i <= trace->policy_count; i++) {
        plc_mask m =
            i < trace->policy_count ? plc__allowed(t, &trace->policies[i]) : plc__all_regions(t);
        size_t j = 0;
        while (j < c->count && c->masks[j] != m)
            j++;
        if (j == c->count) {
            if (c->count == TERN_ARRAY_LEN(c->masks)) return TERN_ENOTSUP;
            int rc = plc_relay_table_new(t, m, &c->tables[j]);
            if (rc != 0) return rc;
            c->masks[j] = m;
            c->count++;
        }
        if (i < trace->policy_count)
            c->by_policy[i] = c->tables[j];
        else
            c->all = c->tables[j];
    }
    return 0;
}

void plc__relay_cache_free(plc__relay_cache *c)
{
    for (size_t i = 0; i < c->count; i++)
        plc_relay_table_free(c->tables[i]);
    free(c->by_policy);
    memset(c, 0, sizeof *c);
}

/* ---------------------------------------------------------------- the ledger */

int plc_ledger_new(const plc_topology *t, const plc_sim_trace *trace, plc_ledger **out)
{
    if (t->region_count == 0 || t->region_count > PLC_REGIONS_MAX) return TERN_EINVAL;
    plc_ledger *l = calloc(1, sizeof *l);
    if (l == NULL) return TERN_ENOMEM;
    l->topology = *t;
    l->trace = trace;
    l->now_ms = INT64_MIN;
    l->objects = calloc(trace->object_count ? trace->object_count : 1, sizeof *l->objects);
    int rc = l->objects == NULL ? TERN_ENOMEM : plc__relay_cache_init(&l->relays, t, trace);
    if (rc != 0) {
        plc_ledger_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void plc_ledger_free(plc_ledger *l)
{
    if (l == NULL) return;
    plc__relay_cache_free(&l->relays);
    free(l->objects);
    free(l->heap);
    free(l->latencies);
    free(l);
}

plc_mask plc_ledger_holders(const plc_ledger *l, uint32_t object)
{
    assert(object < l->trace->object_count);
    return l->objects[object].exists ? l->objects[object].holders : 0;
}

static const plc_bucket_policy *policy_of(const plc_ledger *l, uint32_t object)
{
    return &l->trace->policies[l->trace->objects[object].policy];
}

static bool rpo_passed(const plc_bucket_policy *p, const ledger_object *o, int64_t ts_ms)
{
    return ts_ms >= o->put_ms + (int64_t)p->rpo_seconds * 1000;
}

/* The rules that wait for the RPO window: min_regions and pinned. */
static uint64_t durability_violations(const plc_bucket_policy *p, plc_mask holders)
{
    return (plc__popcount(holders) < p->min_regions) + ((holders & p->pinned) != p->pinned);
}

/* `copied`: the regions the step copied into, kept or not. A copy held for no time still puts
 * the bytes in its region, so one into a region outside allowed breaks residency like a holder
 * there (relays are priced within allowed only; see book_copies). */
static void check_step(plc_ledger *l, uint32_t object, int64_t ts_ms, plc_mask copied)
{
    const ledger_object *o = &l->objects[object];
    if (!o->exists) return;
    const plc_bucket_policy *p = policy_of(l, object);
    l->costs.constraint_violations += ((o->holders | copied) & ~plc__allowed(&l->topology, p)) != 0;
    if (rpo_passed(p, o, ts_ms))
        l->costs.constraint_violations += durability_violations(p, o->holders);
}

static void heap_swap(ledger_deadline *h, size_t a, size_t b)
{
    ledger_deadline x = h[a];
    h[a] = h[b];
    h[b] = x;
}

static int heap_push(plc_ledger *l, ledger_deadline d)
{
    if (l->heap_len == l->heap_cap) {
        size_t cap = l->heap_cap ? 2 * l->heap_cap : RESERVE_MIN;
        ledger_deadline *grown = realloc(l->heap, cap * sizeof *grown);
        if (grown == NULL) return TERN_ENOMEM;
        l->heap = grown;
        l->heap_cap = cap;
    }
    size_t i = l->heap_len++;
    l->heap[i] = d;
    while (i > 0 && l->heap[(i - 1) / 2].deadline_ms > l->heap[i].deadline_ms) {
        heap_swap(l->heap, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    return 0;
}

static ledger_deadline heap_pop(plc_ledger *l)
{
    ledger_deadline top = l->heap[0];
    l->heap[0] = l->heap[--l->heap_len];
    for (size_t i = 0;;) {
        size_t c = 2 * i + 1;
        if (c >= l->heap_len) break;
        if (c + 1 < l->heap_len && l->heap[c + 1].deadline_ms < l->heap[c].deadline_ms) c++;
        if (l->heap[i].deadline_ms <= l->heap[c].deadline_ms) break;
        heap_swap(l->heap, i, c);
        i = c;
    }
    return top;
}

/* Checks every RPO deadline strictly before ts_ms: a set fixed exactly at the deadline is in
 * time, one fixed a millisecond later is not. */
static void pass_deadlines(plc_ledger *l, int64_t ts_ms)
{
    while (l->heap_len > 0 && l->heap[0].deadline_ms < ts_ms) {
        ledger_deadline d = heap_pop(l);
        const ledger_object *o = &l->objects[d.object];
        if (!o->exists || o->put_ms != d.put_ms) continue; /* deleted or overwritten since */
        l->costs.constraint_violations += durability_violations(policy_of(l, d.object), o->holders);
    }
}

static void book_storage(plc_ledger *l, ledger_object *o, int64_t ts_ms)
{
    if (o->exists && ts_ms > o->since_ms) {
        double r = (double)o->bytes * plc__storage_rate(&l->topology, o->holders);
        l->costs.storage_usd += r * (double)(ts_ms - o->since_ms);
        l->rate_since += r * (double)(ts_ms - o->since_ms);
    }
    o->since_ms = ts_ms;
}

/* Replaces the object's holders, keeping the global storage rate in step. */
static void set_holders(plc_ledger *l, ledger_object *o, bool exists, plc_mask holders)
{
    if (o->exists) {
        double r = (double)o->bytes * plc__storage_rate(&l->topology, o->holders);
        l->rate -= r;
        l->rate_since -= r * (double)o->since_ms;
    }
    o->exists = exists;
    o->holders = exists ? holders : 0;
    if (o->exists) {
        double r = (double)o->bytes * plc__storage_rate(&l->topology, o->holders);
        l->rate += r;
        l->rate_since += r * (double)o->since_ms;
    }
}

/* Copies into the regions of `to` missing from `from`, at the relay price of the object's
 * allowed set (or of all regions when the policy strays outside it: counted by check_step);
 * returns the regions copied into. */
static plc_mask book_copies(plc_ledger *l, uint32_t object, plc_mask from, plc_mask to,
                            uint64_t bytes)
{
    if ((to & ~from) == 0) return 0;
    double per_byte =
        plc_relay_usd_per_byte(l->relays.by_policy[l->trace->objects[object].policy], from, to);
    if (isinf(per_byte)) per_byte = plc_relay_usd_per_byte(l->relays.all, from, to);
    assert(!isinf(per_byte));
    l->costs.transfer_usd += per_byte * (double)bytes;
    l->costs.transfer_bytes += bytes * plc__popcount(to & ~from);
    return to & ~from;
}

static int record_latency(plc_ledger *l, double latency_ms)
{
    if (l->latency_len == l->latency_cap) {
        size_t cap = l->latency_cap ? 2 * l->latency_cap : RESERVE_MIN;
        float *grown = realloc(l->latencies, cap * sizeof *grown);
        if (grown == NULL) return TERN_ENOMEM;
        l->latencies = grown;
        l->latency_cap = cap;
    }
    l->latencies[l->latency_len++] = (float)latency_ms;
    return 0;
}

static int step_get(plc_ledger *l, uint32_t object, const plc_sim_event *ev, plc_mask through,
                    plc_mask after, plc_mask *copied)
{
    ledger_object *o = &l->objects[object];
    if (!o->exists) {
        l->missed_reads++;
        return 0;
    }
    plc_mask before = o->holders, transient = through | after | before;
    plc_mask reader = 1u << ev->region;
    l->costs.reads++;
    *copied = book_copies(l, object, before, transient, o->bytes);
    if (before & reader) {
        l->costs.local_reads++;
        set_holders(l, o, true, after);
        return 0;
    }
    uint32_t source = plc__cheapest_holder(&l->topology, transient, ev->region);
    if (!(transient & reader)) {
        l->costs.egress_usd += (double)ev->bytes *
                               l->topology.egress_usd_per_gb[source][ev->region] / PLC_BYTES_PER_GB;
        l->costs.egress_bytes += ev->bytes;
    } else {
        /* Filled by the copy just booked; the client still waited for remote bytes. */
        source = plc__cheapest_holder(&l->topology, before, ev->region);
    }
    set_holders(l, o, true, after);
    return record_latency(l, plc__read_latency_ms(&l->topology, source, ev->region, ev->bytes));
}

int plc_ledger_step(plc_ledger *l, int64_t ts_ms, uint32_t object, const plc_sim_event *ev,
                    plc_mask through, plc_mask after)
{
    plc_mask all = plc__all_regions(&l->topology);
    if (ts_ms < l->now_ms || object >= l->trace->object_count || ((through | after) & ~all))
        return TERN_EINVAL;
    if (ev != NULL && (ev->region >= l->topology.region_count || ev->object != object))
        return TERN_EINVAL;
    pass_deadlines(l, ts_ms);
    l->now_ms = ts_ms;
    ledger_object *o = &l->objects[object];
    book_storage(l, o, ts_ms);
    int rc = 0;
    plc_mask copied = 0;
    if (ev == NULL) {
        if (!o->exists) return after == 0 ? 0 : TERN_EINVAL;
        copied = book_copies(l, object, o->holders, through | after | o->holders, o->bytes);
        set_holders(l, o, true, after);
    } else if (ev->op == PLC_GET) {
        rc = step_get(l, object, ev, through, after, &copied);
    } else if (ev->op == PLC_PUT) {
        set_holders(l, o, false, 0); /* the old version's storage ends here */
        o->bytes = ev->bytes;
        o->put_ms = ts_ms;
        plc_mask origin = 1u << ev->region;
        copied = book_copies(l, object, origin, through | after | origin, ev->bytes);
        set_holders(l, o, true, after);
        const plc_bucket_policy *p = policy_of(l, object);
        if (p->rpo_seconds > 0)
            rc = heap_push(
                l, (ledger_deadline){ts_ms + (int64_t)p->rpo_seconds * 1000, ts_ms, object});
    } else if (ev->op == PLC_DELETE) {
        if (after != 0) return TERN_EINVAL;
        set_holders(l, o, false, 0);
    } else {
        return TERN_EINVAL;
    }
    /* An object that exists but has no holder is lost, whatever its RPO window says. */
    if (o->exists && o->holders == 0) {
        l->costs.constraint_violations++;
        set_holders(l, o, false, 0);
    }
    check_step(l, object, ts_ms, copied);
    return rc;
}

double plc_ledger_total_usd_at(const plc_ledger *l, int64_t ts_ms)
{
    double pending = l->rate * (double)ts_ms - l->rate_since;
    return l->costs.egress_usd + l->costs.transfer_usd + l->costs.storage_usd +
           (pending > 0 ? pending : 0);
}

static int compare_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Nearest rank over all reads, local ones counting as 0 ms (they sort first). */
static double percentile(const plc_ledger *l, double q)
{
    uint64_t n = l->costs.reads;
    if (n == 0) return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)n);
    if (rank < 1) rank = 1;
    uint64_t local = n - l->latency_len;
    return rank <= local ? 0 : l->latencies[rank - local - 1];
}

void plc_ledger_finish(plc_ledger *l, plc_sim_result *out)
{
    int64_t end = l->trace->end_ms > l->now_ms ? l->trace->end_ms : l->now_ms;
    pass_deadlines(l, end);
    for (size_t i = 0; i < l->trace->object_count; i++) {
        book_storage(l, &l->objects[i], end);
        set_holders(l, &l->objects[i], false, 0);
    }
    l->now_ms = end;
    if (l->latency_len > 1) /* qsort may not be handed NULL, even for no elements */
        qsort(l->latencies, l->latency_len, sizeof *l->latencies, compare_float);
    memset(out, 0, sizeof *out);
    out->costs = l->costs;
    out->total_usd = l->costs.egress_usd + l->costs.storage_usd + l->costs.transfer_usd;
    out->local_read_ratio =
        l->costs.reads ? (double)l->costs.local_reads / (double)l->costs.reads : 0;
    out->read_latency_ms_p50 = percentile(l, 0.50);
    out->read_latency_ms_p99 = percentile(l, 0.99);
    out->events = l->trace->event_count;
    out->missed_reads = l->missed_reads;
}
