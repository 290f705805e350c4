/* placement simulator: the baseline policies (full, home, static-k, LRU cache, access counting). */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "placement.h"
#include "sim_internal.h"

/*
 * Every baseline starts an object's version from a base set chosen at its PUT
 * (plc_sim_base_set: the pinned regions, the origin if allowed, then the
 * allowed regions cheapest to store in until the set has enough members) and
 * differs in what it adds afterwards:
 *   full       every allowed region at the PUT, nothing later;
 *   home       the base with k = 1 (the origin plus what min_regions forces);
 *   static-k   the base with k = max(min_regions, 2) unless given;
 *   lru-cache  home, plus a replica in the reading region on a remote read,
 *              kept in a per-region LRU of bounded bytes; base holders are
 *              never cached entries, so they are never evicted;
 *   counting   home, plus a replica in every allowed region whose reads in a
 *              sliding window reach counting_add, dropped when they fall below
 *              counting_drop (Akkio's rule, per object instead of per shard).
 *              The window is four sub-windows of a quarter each: the count is
 *              the reads of the current and the three previous quarters.
 */

#define NONE      UINT32_MAX
#define SUB_SLOTS 4

struct plc__baseline {
    const plc_topology *t;
    const plc_sim_trace *trace;
    plc_sim_options o;
    uint32_t k; /* regions */
    plc_mask *base;
    plc_mask *extra; /* cached (lru) or counted (counting) replicas beyond the base */
    uint64_t *bytes;
    /* lru-cache: one list per region, linked through [object * k + region] */
    uint32_t *prev, *next;
    uint32_t head[PLC_REGIONS_MAX], tail[PLC_REGIONS_MAX]; /* head = most recent */
    uint64_t used[PLC_REGIONS_MAX];
    uint64_t capacity;
    /* counting: reads per [object][region][slot], and each object's latest slot */
    uint32_t *counts;
    int64_t *slot;
    int64_t slot_ms;
};

plc_mask plc_sim_base_set(const plc_topology *t, const plc_bucket_policy *p, uint32_t origin,
                          uint32_t k)
{
    plc_mask allowed = plc__allowed(t, p);
    plc_mask set = p->pinned & allowed;
    if (origin < t->region_count && (allowed & (1u << origin))) set |= 1u << origin;
    uint32_t want = TERN_MAX(k, p->min_regions);
    while (plc__popcount(set) < want) {
        uint32_t best = NONE;
        for (uint32_t r = 0; r < t->region_count; r++) {
            if (!(allowed & (1u << r)) || (set & (1u << r))) continue;
            /* Cheapest to store, then cheapest to ship to from the origin. */
            if (best == NONE ||
                t->storage_usd_per_gb_month[r] < t->storage_usd_per_gb_month[best] ||
                (t->storage_usd_per_gb_month[r] == t->storage_usd_per_gb_month[best] &&
                 origin < t->region_count &&
                 t->egress_usd_per_gb[origin][r] < t->egress_usd_per_gb[origin][best]))
                best = r;
        }
        if (best == NONE) break;
        set |= 1u << best;
    }
    return set;
}

int plc__baseline_new(const plc_topology *t, const plc_sim_trace *trace, const plc_sim_options *o,
                      plc__baseline **out)
{
    size_t n = trace->object_count ? trace->object_count : 1;
    plc__baseline *b = calloc(1, sizeof *b);
    if (b == NULL) return TERN_ENOMEM;
    b->t = t;
    b->trace = trace;
    b->o = *o;
    b->k = (uint32_t)t->region_count;
    b->base = calloc(n, sizeof *b->base);
    b->extra = calloc(n, sizeof *b->extra);
    b->bytes = calloc(n, sizeof *b->bytes);
    if (b->base == NULL || b->extra == NULL || b->bytes == NULL) goto nomem;
    if (o->policy == PLC_SIM_LRU_CACHE) {
        b->prev = malloc(n * b->k * sizeof *b->prev);
        b->next = malloc(n * b->k * sizeof *b->next);
        if (b->prev == NULL || b->next == NULL) goto nomem;
        for (uint32_t r = 0; r < b->k; r++)
            b->head[r] = b->tail[r] = NONE;
        b->capacity = o->lru_capacity_bytes;
        if (b->capacity == 0) {
            /* A quarter of the distinct bytes: each region caches a fair share, not all. */
            uint64_t *largest = calloc(n, sizeof *largest);
            if (largest == NULL) goto nomem;
            for (size_t i = 0; i < trace->event_count; i++)
                if (trace->events[i].bytes > largest[trace->events[i].object])
                    largest[trace->events[i].object] = trace->events[i].bytes;
            for (size_t i = 0; i < trace->object_count; i++)
                b->capacity += largest[i];
            free(largest);
            b->capacity = b->capacity / 4 ? b->capacity / 4 : 1;
        }
    }
    if (o->policy == PLC_SIM_COUNTING) {
        b->counts = calloc(n * b->k * SUB_SLOTS, sizeof *b->counts);
        b->slot = calloc(n, sizeof *b->slot);
        if (b->counts == NULL || b->slot == NULL) goto nomem;
        int64_t window = o->counting_window_ms > 0 ? o->counting_window_ms : 3600 * 1000;
        b->slot_ms = window / SUB_SLOTS > 0 ? window / SUB_SLOTS : 1;
        if (b->o.counting_add == 0) b->o.counting_add = 2;
        if (b->o.counting_drop == 0) b->o.counting_drop = 1;
    }
    *out = b;
    return 0;
nomem:
    plc__baseline_free(b);
    return TERN_ENOMEM;
}

void plc__baseline_free(plc__baseline *b)
{
    if (b == NULL) return;
    free(b->base);
    free(b->extra);
    free(b->bytes);
    free(b->prev);
    free(b->next);
    free(b->counts);
    free(b->slot);
    free(b);
}

/* ---------------------------------------------------------------- lru-cache */

static void lru_unlink(plc__baseline *b, uint32_t object, uint32_t r)
{
    size_t i = (size_t)object * b->k + r;
    if (b->prev[i] != NONE)
        b->next[(size_t)b->prev[i] * b->k + r] = b->next[i];
    else
        b->head[r] = b->next[i];
    if (b->next[i] != NONE)
        b->prev[(size_t)b->next[i] * b->k + r] = b->prev[i];
    else
        b->tail[r] = b->prev[i];
    b->used[r] -= b->bytes[object];
}

static void lru_push_front(plc__baseline *b, uint32_t object, uint32_t r)
{
    size_t i = (size_t)object * b->k + r;
    b->prev[i] = NONE;
    b->next[i] = b->head[r];
    if (b->head[r] != NONE) b->prev[(size_t)b->head[r] * b->k + r] = object;
    b->head[r] = object;
    if (b->tail[r] == NONE) b->tail[r] = object;
    b->used[r] += b->bytes[object];
}

static void lru_forget(plc__baseline *b, uint32_t object)
{
    for (uint32_t r = 0; r < b->k; r++)
        if (b->extra[object] & (1u << r)) lru_unlink(b, object, r);
    b->extra[object] = 0;
}

static plc_mask lru_get(plc__baseline *b, const plc_sim_event *ev, plc_mask before,
                        plc__changed_fn changed, void *ctx)
{
    uint32_t r = ev->region, object = ev->object;
    plc_mask bit = 1u << r;
    if (before & bit) {
        if (b->extra[object] & bit) {
            lru_unlink(b, object, r);
            lru_push_front(b, object, r);
        }
        return before;
    }
    const plc_bucket_policy *p = &b->trace->policies[b->trace->objects[object].policy];
    if (!(plc__allowed(b->t, p) & bit) || b->bytes[object] > b->capacity) return before;
    while (b->used[r] + b->bytes[object] > b->capacity) {
        uint32_t victim = b->tail[r];
        assert(victim != NONE && victim != object);
        lru_unlink(b, victim, r);
        b->extra[victim] &= ~bit;
        changed(ctx, victim, b->base[victim] | b->extra[victim]);
    }
    lru_push_front(b, object, r);
    b->extra[object] |= bit;
    return before | bit;
}

/* ---------------------------------------------------------------- counting */

static uint32_t *counts_of(plc__baseline *b, uint32_t object, uint32_t r)
{
    return &b->counts[((size_t)object * b->k + r) * SUB_SLOTS];
}

/* Moves the object's window to the slot of ts_ms, clearing the quarters that fell out. */
static void counting_advance(plc__baseline *b, uint32_t object, int64_t ts_ms)
{
    int64_t now = ts_ms / b->slot_ms;
    int64_t last = b->slot[object];
    if (now <= last) return;
    for (uint32_t r = 0; r < b->k; r++) {
        uint32_t *c = counts_of(b, object, r);
        for (int64_t s = last + 1; s <= now && s <= last + SUB_SLOTS; s++)
            c[s % SUB_SLOTS] = 0;
    }
    b->slot[object] = now;
}

static uint32_t counting_total(plc__baseline *b, uint32_t object, uint32_t r)
{
    uint32_t *c = counts_of(b, object, r), sum = 0;
    for (int i = 0; i < SUB_SLOTS; i++)
        sum += c[i];
    return sum;
}

static plc_mask counting_decide(plc__baseline *b, uint32_t object)
{
    const plc_bucket_policy *p = &b->trace->policies[b->trace->objects[object].policy];
    plc_mask allowed = plc__allowed(b->t, p);
    for (uint32_t r = 0; r < b->k; r++) {
        plc_mask bit = 1u << r;
        if (!(allowed & bit) || (b->base[object] & bit)) continue;
        uint32_t count = counting_total(b, object, r);
        if (count >= b->o.counting_add) b->extra[object] |= bit;
        if (count < b->o.counting_drop) b->extra[object] &= ~bit;
    }
    return b->base[object] | b->extra[object];
}

/* ---------------------------------------------------------------- dispatch */

static uint32_t base_k(const plc__baseline *b, const plc_bucket_policy *p)
{
    switch (b->o.policy) {
    case PLC_SIM_FULL:
        return PLC_REGIONS_MAX;
    case PLC_SIM_STATIC_K:
        return b->o.static_k ? b->o.static_k : TERN_MAX(p->min_regions, 2);
    default:
        return 1;
    }
}

plc_mask plc__baseline_observe(plc__baseline *b, const plc_sim_event *ev, plc_mask before,
                               plc__changed_fn changed, void *ctx)
{
    uint32_t object = ev->object;
    const plc_bucket_policy *p = &b->trace->policies[b->trace->objects[object].policy];
    bool lru = b->o.policy == PLC_SIM_LRU_CACHE, counting = b->o.policy == PLC_SIM_COUNTING;
    if (counting) {
        counting_advance(b, object, ev->ts_ms);
        if (ev->op == PLC_GET) counts_of(b, object, ev->region)[b->slot[object] % SUB_SLOTS]++;
    }
    switch (ev->op) {
    case PLC_PUT:
        if (lru) lru_forget(b, object);
        b->bytes[object] = ev->bytes;
        b->base[object] = plc_sim_base_set(b->t, p, ev->region, base_k(b, p));
        if (!counting) b->extra[object] = 0;
        return counting ? counting_decide(b, object) : b->base[object];
    case PLC_DELETE:
        if (lru) lru_forget(b, object);
        b->base[object] = b->extra[object] = 0;
        return 0;
    case PLC_GET:
        if (before == 0) return 0; /* a miss: nothing to place */
        if (lru) return lru_get(b, ev, before, changed, ctx);
        if (counting) return counting_decide(b, object);
        return before;
    }
    return before;
}
