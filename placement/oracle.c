/* placement simulator: the hindsight-optimal oracle, exact per object by dynamic programming. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "placement.h"
#include "sim_internal.h"

/*
 * THE ORACLE'S DYNAMIC PROGRAM
 *
 * Objects do not interact in the cost model (no capacity limits), so the
 * optimum is the sum of per-object optima. For one object, the "points" are
 * its events plus, after each PUT, its RPO deadline d = put + rpo when no
 * event of the object falls on it, no later PUT or DELETE comes before it, and
 * it comes before the trace end (reads within the window do not remove it: the
 * set they leave must be fixed by d, not by the next event). The state is the
 * holder set S between consecutive points (0 while the object does not exist).
 * At a point:
 *   GET in r, or a deadline: from S copy to any T containing S (price
 *     plc_relay_usd_per_byte(S, T) x bytes: each new region from a holder
 *     present at that moment, relays allowed); a GET then costs 0 if r is in T
 *     and else bytes x the cheapest egress from T to r; then drop any subset
 *     of T for free, leaving A;
 *   PUT in o: the old version ends; ship from o to any A (relay price from
 *     {o}), whatever S was;
 *   DELETE: A = 0. A GET of a missing object is a free miss.
 * Between points the set A must be feasible: a non-empty subset of allowed,
 * and, once the RPO window has passed (point time >= put + rpo), with at least
 * min_regions members and every pinned region. So within the window the set
 * may be short of min_regions and pinned regions (never empty: the bytes live
 * somewhere), and from the deadline on it must satisfy them; a window that
 * ends at or after the trace end never binds. Storage accrues between points.
 *
 * WHY CHANGES AT POINTS ONLY IS EXACT. Take any schedule that changes the set
 * at arbitrary times. Between two consecutive points p < p' nothing is read,
 * written or required differently, so its changes at times p < t1 <= ... <=
 * tm < p' give a cost that is linear in (t1..tm) over the polytope p <= t1 <=
 * ... <= tm <= p' (storage is price x duration of each intermediate set; the
 * copy prices depend only on the order of the changes, not their times). A
 * linear function attains its minimum at a vertex, where every ti is p or p':
 * some prefix of the changes happens at p, the rest at p'. Every intermediate
 * set of the original schedule satisfied the interval's constraints, and the
 * vertex holds only those sets, so it is feasible too. Several changes
 * collapsed onto one instant are copies (each from a current holder, possibly
 * through a relay dropped right after) and drops, which is exactly the T step
 * above: plc_relay_usd_per_byte is the cheapest such sequence of copies
 * (a shortest path over the subset lattice), and dropping last never costs
 * more than dropping first. Reading in the middle of an instant's changes is
 * covered by reading from T, the largest set of the instant. Hence the DP over
 * points is the optimum over all schedules of the cost model, not only over
 * schedules that change at events.
 *
 * Cost: per point, X[T] = min over B subset of T of V[B] + copy(B, T) visits
 * 3^a (B, T) pairs, and the minimum over supersets a 2^a, a = |allowed| <= 8:
 * at most 6561 + 2048 steps, so 10^6 events take seconds. Back-pointers (the
 * best B for each T and the best T for each A) are 2 x 2^k bytes per point of
 * the object being solved, in buffers reused from object to object.
 */

#define NONE 0xffu

typedef struct {
    int64_t ts_ms;
    size_t event; /* SIZE_MAX: an RPO deadline */
} oracle_point;

typedef struct {
    const plc_topology *t;
    const plc_sim_trace *trace;
    plc__relay_cache relays;
    size_t n;      /* 2^region_count */
    double *rate;  /* storage USD per byte-ms of each set */
    double *read;  /* [set * k + r]: egress USD per byte from set's cheapest holder to r */
    double *v, *x; /* values per set */
    uint8_t *arg_b, *arg_t;
    size_t arg_points;
    oracle_point *points;
    size_t point_cap;
    plc_oracle_change *changes;
    size_t change_cap;
} oracle;

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * size);
    if (q == NULL) return TERN_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static bool feasible(const plc_bucket_policy *p, plc_mask allowed, plc_mask a, bool required)
{
    if (a == 0 || (a & ~allowed)) return false;
    return !required || (plc__popcount(a) >= p->min_regions && (a & p->pinned) == p->pinned);
}

/*
 * The object's points: its events and the RPO deadlines that fall strictly between two of them
 * (or between the last one and the trace end). A deadline binds from the first event at or after
 * it, which need not be the event right after its PUT: reads may come within the window, and the
 * set they leave must be fixed at the deadline, not at the next event. A later PUT or a DELETE
 * before the deadline makes it stale.
 */
static int collect_points(oracle *o, const size_t *events, size_t count, const plc_bucket_policy *p,
                          size_t *point_count)
{
    size_t n = 0;
    int64_t rpo_ms = (int64_t)p->rpo_seconds * 1000;
    bool pending = false;
    int64_t deadline = 0;
    for (size_t i = 0; i < count; i++) {
        if (grow((void **)&o->points, &o->point_cap, n + 3, sizeof *o->points)) return TERN_ENOMEM;
        const plc_sim_event *ev = &o->trace->events[events[i]];
        if (pending && deadline < ev->ts_ms) o->points[n++] = (oracle_point){deadline, SIZE_MAX};
        if (deadline <= ev->ts_ms || ev->op == PLC_PUT || ev->op == PLC_DELETE) pending = false;
        o->points[n++] = (oracle_point){ev->ts_ms, events[i]};
        if (ev->op == PLC_PUT && rpo_ms > 0) {
            pending = true;
            deadline = ev->ts_ms + rpo_ms;
        }
    }
    if (pending && deadline < o->trace->end_ms) o->points[n++] = (oracle_point){deadline, SIZE_MAX};
    *point_count = n;
    return 0;
}

static void add_storage(oracle *o, plc_mask allowed, uint64_t bytes, int64_t dt_ms)
{
    if (dt_ms <= 0) return;
    for (plc_mask s = allowed;; s = (s - 1) & allowed) {
        if (!isinf(o->v[s])) o->v[s] += (double)bytes * o->rate[s] * (double)dt_ms;
        if (s == 0) break;
    }
}

/* The copy-read-drop step of a GET (reader < k) or a deadline (reader = UINT32_MAX). */
static void step_copy(oracle *o, const plc_relay_table *rt, plc_mask allowed, uint64_t bytes,
                      uint64_t read_bytes, uint32_t reader, uint8_t *arg_b, uint8_t *arg_t)
{
    size_t k = o->t->region_count;
    for (plc_mask tt = allowed;; tt = (tt - 1) & allowed) {
        double best = INFINITY;
        uint8_t best_b = NONE;
        for (plc_mask b = tt;; b = (b - 1) & tt) {
            if (!isinf(o->v[b])) {
                double c = o->v[b] + (double)bytes * plc_relay_usd_per_byte(rt, b, tt);
                if (c < best) best = c, best_b = (uint8_t)b;
            }
            if (b == 0) break;
        }
        if (reader != UINT32_MAX && !isinf(best) && !(tt & (1u << reader)))
            best += (double)read_bytes * o->read[tt * k + reader];
        o->x[tt] = best;
        arg_b[tt] = best_b;
        arg_t[tt] = (uint8_t)tt;
        if (tt == 0) break;
    }
    /* Minimum over supersets within allowed: drop what the read or the copies no longer need. */
    for (size_t r = 0; r < k; r++) {
        plc_mask bit = 1u << r;
        if (!(allowed & bit)) continue;
        for (plc_mask s = allowed;; s = (s - 1) & allowed) {
            if (!(s & bit) && o->x[s | bit] < o->x[s]) {
                o->x[s] = o->x[s | bit];
                arg_t[s] = arg_t[s | bit];
            }
            if (s == 0) break;
        }
    }
}

static double min_value(const oracle *o, plc_mask allowed, plc_mask *arg)
{
    double best = INFINITY;
    *arg = 0;
    for (plc_mask s = allowed;; s = (s - 1) & allowed) {
        if (o->v[s] < best) best = o->v[s], *arg = s;
        if (s == 0) break;
    }
    return best;
}

/* Solves one object; writes its plan into out and returns its optimal cost in *cost. */
static int solve_object(oracle *o, const size_t *events, size_t count, plc_oracle_plan *out,
                        double *cost)
{
    const plc_sim_trace *tr = o->trace;
    uint32_t object = tr->events[events[0]].object;
    uint32_t policy_index = tr->objects[object].policy;
    const plc_bucket_policy *p = &tr->policies[policy_index];
    const plc_relay_table *rt = o->relays.by_policy[policy_index];
    plc_mask allowed = plc__allowed(o->t, p);
    size_t points, n = o->n;
    int rc = collect_points(o, events, count, p, &points);
    if (rc != 0) return rc;
    if (grow((void **)&o->arg_b, &o->arg_points, points * n, 1)) return TERN_ENOMEM;
    size_t cap_t = o->arg_points;
    void *grown = realloc(o->arg_t, cap_t);
    if (grown == NULL) return TERN_ENOMEM;
    o->arg_t = grown;
    for (size_t s = 0; s < n; s++)
        o->v[s] = INFINITY;
    o->v[0] = 0;
    bool exists = false;
    uint64_t bytes = 0;
    int64_t put_ms = 0, last_ms = o->points[0].ts_ms;
    for (size_t j = 0; j < points; j++) {
        const oracle_point *pt = &o->points[j];
        uint8_t *arg_b = &o->arg_b[j * n], *arg_t = &o->arg_t[j * n];
        const plc_sim_event *ev = pt->event == SIZE_MAX ? NULL : &tr->events[pt->event];
        if (exists) add_storage(o, allowed, bytes, pt->ts_ms - last_ms);
        last_ms = pt->ts_ms;
        if (ev != NULL && (ev->op == PLC_PUT || ev->op == PLC_DELETE)) {
            plc_mask prev;
            double base = min_value(o, allowed, &prev);
            arg_b[0] = (uint8_t)prev; /* every A of a PUT or DELETE comes from the best state */
            for (size_t s = 0; s < n; s++)
                o->v[s] = INFINITY;
            if (ev->op == PLC_DELETE) {
                exists = false;
                o->v[0] = base;
                continue;
            }
            exists = true;
            bytes = ev->bytes;
            put_ms = ev->ts_ms;
            bool required = pt->ts_ms >= put_ms + (int64_t)p->rpo_seconds * 1000;
            plc_mask origin = 1u << ev->region;
            for (plc_mask a = allowed;; a = (a - 1) & allowed) {
                if (feasible(p, allowed, a, required))
                    o->v[a] = base + (double)bytes * plc_relay_usd_per_byte(rt, origin, a | origin);
                if (a == 0) break;
            }
            continue;
        }
        if (!exists) continue; /* a GET of a missing object, or a stale deadline */
        uint32_t reader = ev != NULL ? ev->region : UINT32_MAX;
        step_copy(o, rt, allowed, bytes, ev != NULL ? ev->bytes : 0, reader, arg_b, arg_t);
        bool required = pt->ts_ms >= put_ms + (int64_t)p->rpo_seconds * 1000;
        for (plc_mask a = allowed;; a = (a - 1) & allowed) {
            o->v[a] = feasible(p, allowed, a, required) ? o->x[a] : INFINITY;
            if (a == 0) break;
        }
        o->v[0] = INFINITY;
    }
    if (exists) add_storage(o, allowed, bytes, tr->end_ms - last_ms);
    plc_mask state;
    *cost = min_value(o, allowed, &state);
    if (isinf(*cost)) return TERN_EINVAL;
    /* Walk back: state is the set left after point j. */
    size_t change_count = out->change_count;
    for (size_t j = points; j-- > 0;) {
        const oracle_point *pt = &o->points[j];
        uint8_t *arg_b = &o->arg_b[j * n], *arg_t = &o->arg_t[j * n];
        const plc_sim_event *ev = pt->event == SIZE_MAX ? NULL : &tr->events[pt->event];
        plc_mask through = state, after = state;
        if (ev != NULL && (ev->op == PLC_PUT || ev->op == PLC_DELETE)) {
            state = arg_b[0];
        } else if (state != 0) {
            through = arg_t[state];
            state = arg_b[through];
        }
        if (ev != NULL) {
            out->through[pt->event] = through;
            out->after[pt->event] = after;
        } else if (after != 0) {
            if (grow((void **)&o->changes, &o->change_cap, change_count + 1, sizeof *o->changes))
                return TERN_ENOMEM;
            o->changes[change_count++] = (plc_oracle_change){pt->ts_ms, object, through, after};
        }
    }
    out->change_count = change_count;
    return 0;
}

static int compare_change(const void *a, const void *b)
{
    const plc_oracle_change *x = a, *y = b;
    if (x->ts_ms != y->ts_ms) return x->ts_ms < y->ts_ms ? -1 : 1;
    return (x->object > y->object) - (x->object < y->object);
}

static int oracle_init(oracle *o, const plc_topology *t, const plc_sim_trace *trace)
{
    memset(o, 0, sizeof *o);
    o->t = t;
    o->trace = trace;
    size_t k = t->region_count;
    o->n = (size_t)1 << k;
    o->rate = malloc(o->n * sizeof *o->rate);
    o->read = malloc(o->n * k * sizeof *o->read);
    o->v = malloc(o->n * sizeof *o->v);
    o->x = malloc(o->n * sizeof *o->x);
    if (!o->rate || !o->read || !o->v || !o->x) return TERN_ENOMEM;
    for (size_t s = 0; s < o->n; s++) {
        o->rate[s] = plc__storage_rate(t, (plc_mask)s);
        for (uint32_t r = 0; r < k; r++) {
            uint32_t src = plc__cheapest_holder(t, (plc_mask)s, r);
            o->read[s * k + r] =
                src == UINT32_MAX ? INFINITY : t->egress_usd_per_gb[src][r] / PLC_BYTES_PER_GB;
        }
    }
    return plc__relay_cache_init(&o->relays, t, trace);
}

static void oracle_free(oracle *o)
{
    plc__relay_cache_free(&o->relays);
    free(o->rate);
    free(o->read);
    free(o->v);
    free(o->x);
    free(o->arg_b);
    free(o->arg_t);
    free(o->points);
}

/* Event indexes grouped by object, in trace order within each (a counting sort). */
static int group_events(const plc_sim_trace *tr, size_t **offsets_out, size_t **order_out)
{
    size_t *offsets = calloc(tr->object_count + 1, sizeof *offsets);
    size_t *order = malloc((tr->event_count ? tr->event_count : 1) * sizeof *order);
    if (offsets == NULL || order == NULL) {
        free(offsets);
        free(order);
        return TERN_ENOMEM;
    }
    for (size_t i = 0; i < tr->event_count; i++)
        offsets[tr->events[i].object + 1]++;
    for (size_t i = 0; i < tr->object_count; i++)
        offsets[i + 1] += offsets[i];
    size_t *fill = calloc(tr->object_count + 1, sizeof *fill);
    if (fill == NULL) {
        free(offsets);
        free(order);
        return TERN_ENOMEM;
    }
    for (size_t i = 0; i < tr->event_count; i++) {
        uint32_t obj = tr->events[i].object;
        order[offsets[obj] + fill[obj]++] = i;
    }
    free(fill);
    *offsets_out = offsets;
    *order_out = order;
    return 0;
}

int plc_oracle_solve(const plc_topology *t, const plc_sim_trace *trace, plc_oracle_plan *out,
                     char *errmsg, size_t errmsg_len)
{
    memset(out, 0, sizeof *out);
    if (t->region_count == 0 || t->region_count > PLC_REGIONS_MAX) {
        tern_errmsg(errmsg, errmsg_len, "oracle: %zu regions (1..%d)", t->region_count,
                    PLC_REGIONS_MAX);
        return TERN_EINVAL;
    }
    oracle o;
    size_t *offsets = NULL, *order = NULL;
    int rc = oracle_init(&o, t, trace);
    if (rc == 0) rc = group_events(trace, &offsets, &order);
    size_t events = trace->event_count ? trace->event_count : 1;
    out->through = calloc(events, sizeof *out->through);
    out->after = calloc(events, sizeof *out->after);
    if (rc == 0 && (out->through == NULL || out->after == NULL)) rc = TERN_ENOMEM;
    for (size_t obj = 0; rc == 0 && obj < trace->object_count; obj++) {
        size_t count = offsets[obj + 1] - offsets[obj];
        if (count == 0) continue;
        double cost = 0;
        rc = solve_object(&o, &order[offsets[obj]], count, out, &cost);
        if (rc == TERN_EINVAL)
            tern_errmsg(errmsg, errmsg_len, "oracle: no feasible placement for %s/%s",
                        trace->objects[obj].bucket, trace->objects[obj].key);
        out->total_usd += cost;
    }
    out->changes = o.changes;
    o.changes = NULL;
    if (rc == 0 && out->change_count > 1)
        qsort(out->changes, out->change_count, sizeof *out->changes, compare_change);
    if (rc == TERN_ENOMEM) tern_errmsg(errmsg, errmsg_len, "oracle: out of memory");
    free(offsets);
    free(order);
    oracle_free(&o);
    if (rc != 0) plc_oracle_plan_free(out);
    return rc;
}

void plc_oracle_plan_free(plc_oracle_plan *plan)
{
    free(plan->through);
    free(plan->after);
    free(plan->changes);
    memset(plan, 0, sizeof *plan);
}
