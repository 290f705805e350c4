/* placement: the engine's lifecycle, event handling, placement decisions, ticks and explanations. */
#include <math.h>

#include "placement_internal.h"

/*
 * The decision rule (docs/placement-engine.md). For a region r and the
 * object's other holders S, with src = the cheapest holder of S to copy or
 * read from into r, e = egress[src][r], B = bytes / 10^9, T = horizon days:
 *     saving(r) = rate(r) x T x B x e
 *     cost(r)   = storage[r] x B x T / 30  +  B x e   (one copy per horizon)
 * A holder stays while saving(r) with the posterior MEAN rate is at least
 * cost / (1 + h); a region is added when saving(r) with an EXPLORING rate
 * (a Thompson sample, the UCB, or epsilon-greedy's mean-or-coin) exceeds
 * (1 + h) x cost. Keeping on the mean is what stops a steady borderline rate
 * from flapping: a lucky sample may add a replica once, but only a real fall
 * of the mean removes it. Constraints come last and win: pinned regions, the
 * origin of a PUT (and during its RPO window), never a region outside
 * allowed, at least one holder always and min_regions once the window has
 * passed (current holders first, then the cheapest to store).
 */

/* ---------------------------------------------------------------- time */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static uint32_t engine_seconds(const plc_engine *e, int64_t ms)
{
    int64_t s = floor_div(ms, 1000) - e->epoch_s;
    if (s < 0) return 0;
    if (s >= (int64_t)UINT32_MAX - 1) return UINT32_MAX - 1;
    return (uint32_t)s;
}

static bool rpo_open(const plc_engine *e, const plc__obj *o, const plc_bucket_policy *p,
                     int64_t now_ms)
{
    if (o->put_s == PLC__NO_PUT) return false;
    int64_t put_ms = (e->epoch_s + (int64_t)o->put_s) * 1000;
    return now_ms < put_ms + (int64_t)p->rpo_seconds * 1000;
}

static uint32_t origin_of(const plc__obj *o)
{
    return (uint32_t)(o->name >> PLC__ORIGIN_SHIFT) & 7u;
}

/* ---------------------------------------------------------------- lifecycle */

static int check_topology(const plc_topology *t, char *errmsg, size_t errmsg_len)
{
    if (t->region_count < 1 || t->region_count > PLC_REGIONS_MAX) {
        tern_errmsg(errmsg, errmsg_len, "region_count %zu is not in 1..%d", t->region_count,
                    PLC_REGIONS_MAX);
        return TERN_EINVAL;
    }
    if (!(t->bandwidth_mb_per_s >= 0) || !isfinite(t->bandwidth_mb_per_s)) {
        tern_errmsg(errmsg, errmsg_len, "bandwidth_mb_per_s must be finite and >= 0");
        return TERN_EINVAL;
    }
    for (size_t r = 0; r < t->region_count; r++) {
        if (!memchr(t->names[r], 0, PLC_REGION_NAME_MAX) || !t->names[r][0]) {
            tern_errmsg(errmsg, errmsg_len, "region %zu has no name (or one too long)", r);
            return TERN_EINVAL;
        }
        double s = t->storage_usd_per_gb_month[r];
        if (!(s >= 0) || !isfinite(s)) {
            tern_errmsg(errmsg, errmsg_len, "region %s: storage price must be finite and >= 0",
                        t->names[r]);
            return TERN_EINVAL;
        }
        for (size_t q = 0; q < t->region_count; q++) {
            double eg = t->egress_usd_per_gb[r][q], rtt = t->rtt_ms[r][q];
            if (!(eg >= 0) || !isfinite(eg) || !(rtt >= 0) || !isfinite(rtt)) {
                tern_errmsg(errmsg, errmsg_len,
                            "%s -> %s: egress and rtt must be finite and >= 0", t->names[r],
                            t->names[q]);
                return TERN_EINVAL;
            }
        }
        for (size_t q = 0; q < r; q++) {
            if (strcmp(t->names[q], t->names[r]) == 0) {
                tern_errmsg(errmsg, errmsg_len, "region name %s appears twice", t->names[r]);
                return TERN_EINVAL;
            }
        }
    }
    return 0;
}

static int config_default(double *v, double dflt, const char *name, bool zero_ok, char *errmsg,
                          size_t errmsg_len)
{
    if (*v == 0 && !zero_ok) *v = dflt;
    if (!(*v >= 0) || !isfinite(*v)) {
        tern_errmsg(errmsg, errmsg_len, "config %s must be finite and >= 0", name);
        return TERN_EINVAL;
    }
    return 0;
}

static int check_config(plc_config *c, char *errmsg, size_t errmsg_len)
{
    if (c->algo != PLC_ALGO_THOMPSON && c->algo != PLC_ALGO_UCB && c->algo != PLC_ALGO_EPSILON) {
        tern_errmsg(errmsg, errmsg_len, "unknown algo %d", (int)c->algo);
        return TERN_EINVAL;
    }
    if (config_default(&c->half_life_hours, 24, "half_life_hours", false, errmsg, errmsg_len) ||
        config_default(&c->horizon_hours, 24 * 7, "horizon_hours", false, errmsg, errmsg_len) ||
        config_default(&c->hysteresis, 0.25, "hysteresis", false, errmsg, errmsg_len) ||
        config_default(&c->epsilon, 0.1, "epsilon", false, errmsg, errmsg_len) ||
        config_default(&c->ucb_c, 1, "ucb_c", false, errmsg, errmsg_len) ||
        config_default(&c->prior_strength, 2, "prior_strength", false, errmsg, errmsg_len))
        return TERN_EINVAL;
    if (c->epsilon > 1) {
        tern_errmsg(errmsg, errmsg_len, "config epsilon must be in [0, 1]");
        return TERN_EINVAL;
    }
    if (!c->tracked_pairs_max) c->tracked_pairs_max = 1000000;
    return 0;
}

static int policy_add(plc_engine *e, const char *bucket, const plc_bucket_policy *p)
{
    if (e->policy_count == e->policy_cap) {
        size_t cap = e->policy_cap ? e->policy_cap * 2 : 8;
        plc__policy *n = plc__realloc(e, e->policies, e->policy_cap * sizeof *n, cap * sizeof *n);
        if (!n) return TERN_ENOMEM;
        e->policies = n;
        e->policy_cap = cap;
    }
    size_t len = strlen(bucket);
    char *name = plc__alloc(e, len + 1);
    if (!name) return TERN_ENOMEM;
    memcpy(name, bucket, len);
    e->policies[e->policy_count].bucket = name;
    e->policies[e->policy_count].p = *p;
    e->policy_count++;
    return 0;
}

int plc_engine_new(const plc_topology *t, const plc_config *c, plc_engine **out, char *errmsg,
                   size_t errmsg_len)
{
    assert(t && c && out);
    *out = NULL;
    plc_config cfg = *c;
    int rc = check_topology(t, errmsg, errmsg_len);
    if (rc) return rc;
    rc = check_config(&cfg, errmsg, errmsg_len);
    if (rc) return rc;
    plc_engine *e = calloc(1, sizeof *e);
    if (!e) return TERN_ENOMEM;
    e->memory_bytes = sizeof *e;
    e->t = *t;
    if (e->t.bandwidth_mb_per_s == 0) e->t.bandwidth_mb_per_s = 100;
    e->c = cfg;
    e->all = (plc_mask)((1u << t->region_count) - 1);
    e->half_life_days = cfg.half_life_hours / 24;
    e->heff_days = e->half_life_days / M_LN2;
    e->horizon_days = cfg.horizon_hours / 24;
    plc__rng_seed(&e->rng, cfg.seed);
    plc__store_init(e);
    /* Regions by storage price (then index): min_regions keeps or adds the cheapest. */
    for (uint32_t r = 0; r < t->region_count; r++) {
        uint32_t i = r;
        while (i > 0 && t->storage_usd_per_gb_month[e->storage_order[i - 1]] >
                            t->storage_usd_per_gb_month[r]) {
            e->storage_order[i] = e->storage_order[i - 1];
            i--;
        }
        e->storage_order[i] = (uint8_t)r;
    }
    plc_bucket_policy dflt = {.min_regions = 1, .allowed = e->all};
    if (policy_add(e, "*", &dflt)) {
        plc_engine_free(e);
        tern_errmsg(errmsg, errmsg_len, "out of memory");
        return TERN_ENOMEM;
    }
    *out = e;
    return 0;
}

void plc_engine_free(plc_engine *e)
{
    if (!e) return;
    plc__store_free(e);
    for (size_t i = 0; i < e->policy_count; i++)
        plc__free(e, e->policies[i].bucket, strlen(e->policies[i].bucket) + 1);
    plc__free(e, e->policies, e->policy_cap * sizeof *e->policies);
    assert(e->memory_bytes == sizeof *e); /* the accounting balances */
    free(e);
}

int plc_engine_set_policy(plc_engine *e, const char *bucket, const plc_bucket_policy *p)
{
    assert(e);
    if (!bucket || !bucket[0] || !p) return TERN_EINVAL;
    char errmsg[128];
    if (plc_policy_check(&e->t, p, errmsg, sizeof errmsg)) return TERN_EINVAL;
    plc_bucket_policy n = *p;
    if (!n.allowed) n.allowed = e->all;
    uint32_t i = strcmp(bucket, "*") == 0 ? 0 : plc__policy_for(e, bucket, strlen(bucket));
    if (i == 0 && strcmp(bucket, "*") != 0) {
        int rc = policy_add(e, bucket, &n);
        if (rc) return rc;
        i = (uint32_t)e->policy_count - 1;
    } else {
        e->policies[i].p = n;
    }
    /* Prefixes cache their bucket's policy index. */
    for (size_t k = 0; k < e->prefix_count; k++) {
        plc__prefix *x = &e->prefixes[k];
        if (x->name) x->policy = plc__policy_for(e, x->name, x->bucket_len);
    }
    return 0;
}

/* ---------------------------------------------------------------- decisions */

typedef struct region_value {
    double saving_usd, storage_usd, transfer_usd;
} region_value;

/* What a replica in r is worth at read rate `rate`, copied from the cheapest of `others`. */
static region_value value_of(const plc_engine *e, uint32_t r, plc_mask others, double rate,
                             double gb)
{
    region_value v = {0, 0, 0};
    double T = e->horizon_days;
    v.storage_usd = e->t.storage_usd_per_gb_month[r] * gb * T / 30;
    if (!others) return v;
    uint32_t src = plc_cheapest_source(&e->t, others, r);
    double eg = e->t.egress_usd_per_gb[src][r];
    v.saving_usd = rate * T * gb * eg;
    v.transfer_usd = gb * eg;
    return v;
}

/* The rate an add decision uses: a posterior sample, an upper bound, or mean-or-coin. */
static double exploring_rate(plc_engine *e, double alpha, double beta, bool event)
{
    switch (e->c.algo) {
    case PLC_ALGO_THOMPSON:
        return plc__rng_gamma(&e->rng, alpha) / beta;
    case PLC_ALGO_UCB:
        return (alpha + e->c.ucb_c * sqrt(alpha)) / beta;
    case PLC_ALGO_EPSILON:
        /* Random actions only on events: a sweep over every object would otherwise buy a
         * random replica for a tenth of them each time round. */
        if (event && plc__rng_uniform(&e->rng) < e->c.epsilon)
            return plc__rng_uniform(&e->rng) < 0.5 ? INFINITY : 0;
        return alpha / beta;
    }
    assert(!"unknown algo");
    return 0;
}

/* Adds holders until `need`: current holders first (no copy), then the cheapest to store. */
static plc_mask fill(const plc_engine *e, plc_mask set, plc_mask cur, plc_mask allowed,
                     uint32_t need)
{
    for (int pass = 0; pass < 2; pass++) {
        plc_mask pool = pass == 0 ? cur & allowed : allowed;
        for (size_t i = 0; i < e->t.region_count && (uint32_t)plc__popcount(set) < need; i++) {
            plc_mask bit = 1u << e->storage_order[i];
            if ((pool & bit) && !(set & bit)) set |= bit;
        }
    }
    return set;
}

/*
 * The target set of record oi at now (the engine's current time): regions in `candidates`
 * are re-evaluated, others keep their state. put_origin is the region of a PUT being
 * handled (PLC__NONE otherwise).
 */
static plc_mask decide(plc_engine *e, uint32_t oi, uint32_t now_s, uint32_t put_origin,
                       plc_mask candidates, bool event)
{
    plc__obj *o = plc__rec(e, oi);
    const plc_bucket_policy *pol = plc__policy_of(e, &e->prefixes[o->prefix]);
    plc_mask allowed = pol->allowed & e->all;
    bool in_rpo = rpo_open(e, o, pol, e->last_ms);
    plc_mask cur = o->holders;
    plc_mask forced = pol->pinned & allowed;
    if (put_origin != PLC__NONE)
        forced |= (1u << put_origin) & allowed;
    else if (in_rpo)
        forced |= (1u << origin_of(o)) & allowed;
    plc_mask set = (cur & allowed) | forced;

    double alpha[PLC_REGIONS_MAX];
    double beta = plc__posterior(e, o, now_s, alpha);
    double gb = (double)plc__obj_bytes(o) / PLC_BYTES_PER_GB;
    double h = e->c.hysteresis;

    plc_mask keep = cur & allowed & ~forced & candidates;
    for (uint32_t r = 0; r < e->t.region_count; r++) {
        if (!(keep & (1u << r))) continue;
        plc_mask others = set & ~(1u << r);
        if (!others) continue; /* the only copy stays */
        region_value v = value_of(e, r, others, alpha[r] / beta, gb);
        if (v.saving_usd < (v.storage_usd + v.transfer_usd) / (1 + h)) set = others;
    }
    if (!set) set = fill(e, set, cur, allowed, 1);
    plc_mask add = allowed & ~set & candidates;
    for (uint32_t r = 0; r < e->t.region_count; r++) {
        if (!(add & (1u << r))) continue;
        double rate = exploring_rate(e, alpha[r], beta, event);
        region_value v = value_of(e, r, set, rate, gb);
        if (v.saving_usd > (1 + h) * (v.storage_usd + v.transfer_usd)) set |= 1u << r;
    }
    set = fill(e, set, cur, allowed, in_rpo ? 1 : TERN_MAX(pol->min_regions, 1u));
    assert((set & ~allowed) == 0 && (set & forced) == forced && set != 0);
    return set;
}

static void count_change(plc_engine *e, plc_mask before, plc_mask after)
{
    e->replicas_added += (uint64_t)plc__popcount(after & ~before);
    e->replicas_dropped += (uint64_t)plc__popcount(before & ~after);
}

/* ---------------------------------------------------------------- events */

/* Counts a GET from region in o's posterior and its prefixes'. TERN_ENOMEM changes nothing. */
static int count_read(plc_engine *e, uint32_t oi, uint32_t now_s, uint32_t region)
{
    plc__obj *o = plc__rec(e, oi);
    plc__obj_decay(e, o, now_s);
    if (o->tracked & (1u << region)) {
        float *shape = plc__shapes(e, o);
        shape[plc__popcount(o->tracked & ((1u << region) - 1))] += 1;
    } else {
        /* The region's first own read: its share of the prior becomes a stored shape. */
        double m[PLC_REGIONS_MAX];
        plc__prefix_rates(e, plc__prior_source(e, &e->prefixes[o->prefix]), now_s, m);
        int rc = plc__obj_track(e, oi, region, (float)(m[region] * o->prior_w + 1));
        if (rc) return rc;
        o = plc__rec(e, oi);
    }
    plc__prefix *p = &e->prefixes[o->prefix];
    plc__prefix_read(e, p, now_s, region);
    if (p->parent != o->prefix) plc__prefix_read(e, &e->prefixes[p->parent], now_s, region);
    return 0;
}

static int check_event(const plc_engine *e, const plc_event *ev)
{
    if (!ev || !ev->bucket || !ev->bucket[0] || !ev->key) return TERN_EINVAL;
    if (ev->region >= e->t.region_count) return TERN_EINVAL;
    if (ev->op != PLC_GET && ev->op != PLC_PUT && ev->op != PLC_DELETE) return TERN_EINVAL;
    return 0;
}

int plc_engine_observe(plc_engine *e, const plc_event *ev, plc_decision *out)
{
    assert(e && out);
    memset(out, 0, sizeof *out);
    int rc = check_event(e, ev);
    if (rc) return rc;
    const char *slash = strrchr(ev->key, '/');
    size_t dir_len = slash ? (size_t)(slash - ev->key) + 1 : 0;
    const char *suffix = ev->key + dir_len;
    size_t suffix_len = strlen(suffix);
    if (suffix_len > PLC__NAME_LEN_MAX) return TERN_EINVAL;

    if (!e->started) {
        e->started = true;
        e->epoch_s = floor_div(ev->ts_ms, 1000);
        e->last_ms = ev->ts_ms;
    }
    /* Out-of-order events (a live node's clock stepping back) count at the latest time. */
    e->last_ms = TERN_MAX(e->last_ms, ev->ts_ms);
    uint32_t now_s = engine_seconds(e, e->last_ms);
    bool create = ev->op != PLC_DELETE;
    uint32_t pi;
    rc = plc__prefix_get(e, ev->bucket, strlen(ev->bucket), ev->key, dir_len, create, now_s, &pi);
    if (rc) return rc;
    uint32_t oi = PLC__NONE, hash = 0;
    if (pi != PLC__NONE) {
        hash = plc__obj_hash(e, pi, suffix, suffix_len);
        oi = plc__obj_find(e, pi, suffix, suffix_len, hash);
    }
    e->events++;
    out->source = ev->region;
    if (ev->op == PLC_DELETE) {
        if (oi == PLC__NONE) return 0;
        out->before = plc__rec(e, oi)->holders;
        plc__obj_destroy(e, oi);
        return 0;
    }
    bool born = oi == PLC__NONE;
    if (born) {
        rc = plc__obj_create(e, pi, suffix, suffix_len, hash, &oi);
        if (rc) {
            plc__prefix_release(e, pi);
            e->events--;
            return rc;
        }
        plc__obj *o = plc__rec(e, oi);
        plc__obj_prior(e, o, now_s);
        o->bytes_lo = (uint32_t)ev->bytes;
        o->bytes_hi = (uint32_t)(ev->bytes >> 32);
    }
    plc__obj *o = plc__rec(e, oi);
    o->name |= PLC__FLAG_REF;
    plc_mask before = o->holders, after;
    if (ev->op == PLC_GET) {
        rc = count_read(e, oi, now_s, ev->region);
        if (rc) {
            if (born) plc__obj_destroy(e, oi);
            e->events--;
            return rc;
        }
        after = decide(e, oi, now_s, PLC__NONE, before | (1u << ev->region), true);
        out->remote = !(before & (1u << ev->region));
        if (out->remote) out->source = plc_engine_choose_source(e, ev->region, before ? before : after);
    } else {
        o = plc__rec(e, oi);
        plc__obj_decay(e, o, now_s);
        o->bytes_lo = (uint32_t)ev->bytes;
        o->bytes_hi = (uint32_t)(ev->bytes >> 32);
        o->put_s = now_s;
        o->name = (uint16_t)((o->name & ~(7u << PLC__ORIGIN_SHIFT)) |
                             (ev->region << PLC__ORIGIN_SHIFT));
        after = decide(e, oi, now_s, ev->region, e->all, true);
    }
    o = plc__rec(e, oi);
    o->holders = (uint8_t)after;
    count_change(e, before, after);
    out->before = before;
    out->after = after;
    plc__evict(e, oi, now_s);
    return 0;
}

/* ---------------------------------------------------------------- ticks */

size_t plc_engine_tick(plc_engine *e, int64_t now_ms, size_t max_objects,
                       void (*changed)(void *ctx, const char *bucket, const char *key,
                                       plc_mask before, plc_mask after),
                       void *ctx)
{
    assert(e);
    if (!e->started || !e->rec_top) return 0;
    e->last_ms = TERN_MAX(e->last_ms, now_ms);
    uint32_t now_s = engine_seconds(e, e->last_ms);
    size_t visited = 0;
    for (uint32_t step = 0; step < e->rec_top && visited < max_objects; step++) {
        uint32_t i = e->tick_cursor;
        e->tick_cursor = i + 1 < e->rec_top ? i + 1 : 0;
        plc__obj *o = plc__rec(e, i);
        if (o->prefix == PLC__NONE) continue;
        visited++;
        plc_mask before = o->holders;
        plc_mask after = decide(e, i, now_s, PLC__NONE, e->all, false);
        if (after == before) continue;
        o->holders = (uint8_t)after;
        count_change(e, before, after);
        if (changed) {
            const char *key = plc__obj_name(e, o);
            changed(ctx, e->scratch, key, before, after);
        }
    }
    return visited;
}

/* ---------------------------------------------------------------- explanations */

int plc_engine_explain(const plc_engine *e, const char *bucket, const char *key, int64_t now_ms,
                       plc_explanation *out)
{
    assert(e && out);
    memset(out, 0, sizeof *out);
    if (!bucket || !key) return TERN_EINVAL;
    const char *slash = strrchr(key, '/');
    size_t dir_len = slash ? (size_t)(slash - key) + 1 : 0;
    const char *suffix = key + dir_len;
    size_t suffix_len = strlen(suffix);
    uint32_t pi;
    /* create=false never allocates, so the cast away from const changes nothing. */
    plc__prefix_get((plc_engine *)e, bucket, strlen(bucket), key, dir_len, false, 0, &pi);
    if (pi == PLC__NONE || suffix_len > PLC__NAME_LEN_MAX) return TERN_ENOTFOUND;
    uint32_t oi = plc__obj_find(e, pi, suffix, suffix_len, plc__obj_hash(e, pi, suffix, suffix_len));
    if (oi == PLC__NONE) return TERN_ENOTFOUND;
    const plc__obj *o = plc__rec(e, oi);
    const plc_bucket_policy *pol = plc__policy_of(e, &e->prefixes[pi]);
    now_ms = TERN_MAX(now_ms, e->last_ms);
    uint32_t now_s = engine_seconds(e, now_ms);
    bool in_rpo = rpo_open(e, o, pol, now_ms);
    double alpha[PLC_REGIONS_MAX];
    double beta = plc__posterior(e, o, now_s, alpha);
    double gb = (double)plc__obj_bytes(o) / PLC_BYTES_PER_GB;
    out->holders = o->holders;
    out->bytes = plc__obj_bytes(o);
    out->from_prefix_prior = o->tracked == 0;
    for (uint32_t r = 0; r < e->t.region_count; r++) {
        plc_region_explanation *x = &out->regions[r];
        plc_mask bit = 1u << r;
        plc_mask others = o->holders & ~bit;
        if (!others) others = e->all & ~bit; /* what a copy elsewhere would save */
        region_value v = value_of(e, r, others, alpha[r] / beta, gb);
        x->held = o->holders & bit;
        x->reads_per_day = alpha[r] / beta;
        x->reads_per_day_stddev = sqrt(alpha[r]) / beta;
        x->saving_usd = v.saving_usd;
        x->storage_usd = v.storage_usd;
        x->transfer_usd = v.transfer_usd;
        if (!(pol->allowed & bit))
            x->reason = PLC_REASON_NOT_ALLOWED;
        else if (!x->held)
            x->reason = PLC_REASON_NONE;
        else if (pol->pinned & bit)
            x->reason = PLC_REASON_PINNED;
        else if (in_rpo && origin_of(o) == r)
            x->reason = PLC_REASON_ORIGIN;
        else if (o->holders != bit &&
                 v.saving_usd >= (v.storage_usd + v.transfer_usd) / (1 + e->c.hysteresis))
            x->reason = PLC_REASON_DEMAND;
        else
            x->reason = PLC_REASON_MIN_REGIONS;
    }
    return 0;
}

void plc_engine_stats_get(const plc_engine *e, plc_engine_stats *out)
{
    assert(e && out);
    out->objects_tracked = e->objects;
    out->pairs_tracked = e->pairs;
    out->memory_bytes = e->memory_bytes;
    out->events = e->events;
    out->replicas_added = e->replicas_added;
    out->replicas_dropped = e->replicas_dropped;
}
