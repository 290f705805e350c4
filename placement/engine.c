/* placement: the engine's lifecycle, event handling, placement decisions, ticks and explanations.
 */
#include <math.h>

#include "placement_internal.h"

/*
 * The decision rule (docs/ARCHITECTURE.md, "Placement"). Every term is per GB
 * of the object, over the version's expected remaining life L (to its next
 * overwrite or delete, capped by the horizon). A copy into a region costs
 * what one remote read of it costs, so an allowed region that reads a version
 * copies it on its first read and pulls it once, with probability
 * P(r) = rate x L / (1 + rate x L); a region outside allowed reads remotely
 * every time.
 *   PUT from o: grow the set from the forced regions (pinned, the origin if
 *     allowed) by the region that lowers ship + storage - saved pulls most,
 *     until min_regions hold and no region pays for itself; also ship to a
 *     region with P(r) >= prefetch_probability, so its first read is local.
 *   GET from r, not a holder: copy when r's future reads plus the cheaper
 *     pulls its copy gives others beat (1 + h) x its storage for L.
 *   tick: drop a holder whose worth falls below storage / (1 + h).
 * Adds use EXPLORING rates (a Thompson sample, the UCB, or epsilon-greedy's
 * mean-or-coin), drops the posterior MEAN: a lucky sample may add a replica
 * once, but only a real fall of the mean removes it. Constraints come last
 * and win: pinned regions, the origin of a PUT (and during its RPO window),
 * never a region outside allowed, min_regions in every set (current holders
 * first, then the cheapest to store).
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
                tern_errmsg(errmsg, errmsg_len, "%s -> %s: egress and rtt must be finite and >= 0",
                            t->names[r], t->names[q]);
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
        config_default(&c->prior_strength, 2, "prior_strength", false, errmsg, errmsg_len) ||
        config_default(&c->prefetch_probability, 0.8, "prefetch_probability", false, errmsg,
                       errmsg_len))
        return TERN_EINVAL;
    if (c->prefetch_probability > 1) {
        tern_errmsg(errmsg, errmsg_len, "config prefetch_probability must be in (0, 1]");
        return TERN_EINVAL;
    }
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

/*
 * The economics of one object version, per GB (every term scales with the
 * object's size, so decisions do not depend on it): its expected remaining
 * life, each region's read rate (a posterior sample, an upper bound or the
 * mean) and the weight of its future reads in the cost of a holder set.
 */
typedef struct outlook {
    double life_days;                 /* expected time to the version's end (memoryless) */
    double rate[PLC_REGIONS_MAX];     /* reads per day */
    double sd[PLC_REGIONS_MAX];       /* the posterior's standard deviation of the rate */
    double weight[PLC_REGIONS_MAX];   /* copies (allowed) or reads (not allowed) a non-holder
                                         is expected to pull from the nearest holder */
    double stor_day[PLC_REGIONS_MAX]; /* $/GB-day of storage */
    plc_mask allowed;
} outlook;

/* The rate a decision to add uses: a posterior sample, an upper bound, or mean-or-coin. */
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
            return plc__rng_uniform(&e->rng) < 0.5 ? 1e9 : 0;
        return alpha / beta;
    }
    assert(!"unknown algo");
    return 0;
}

static void outlook_of(plc_engine *e, const plc__obj *o, uint32_t now_s, plc_mask allowed,
                       bool explore, bool event, outlook *out)
{
    double alpha[PLC_REGIONS_MAX], ends, prior_w, share[PLC_REGIONS_MAX];
    double beta = plc__posterior(e, o, now_s, alpha, &ends, &prior_w);
    plc__prefix_first_shares(e, plc__prior_source(e, &e->prefixes[o->prefix]), share);
    /* A version ends at the next overwrite or delete, or (the horizon) when the model should
     * look again; both memoryless, so the remaining life is the same at every age. */
    out->life_days = 1 / (ends / beta + 1 / e->horizon_days);
    out->allowed = allowed;
    for (uint32_t r = 0; r < e->t.region_count; r++) {
        plc_mask bit = 1u << r;
        /* Only a region with reads of its own, or outside allowed, uses its rate in a
         * decision: the others are priced by the prefix's shares, so sampling them would only
         * cost time. */
        bool sampled = explore && ((o->tracked & bit) || !(allowed & bit));
        double rate = sampled ? exploring_rate(e, alpha[r], beta, event) : alpha[r] / beta;
        double reads = rate * out->life_days;
        out->rate[r] = rate;
        out->sd[r] = sqrt(alpha[r]) / beta;
        out->stor_day[r] = e->t.storage_usd_per_gb_month[r] / 30;
        if (!(allowed & bit)) {
            out->weight[r] = reads; /* outside allowed: every read is remote */
        } else if (o->tracked & bit) {
            /* An allowed region copies on its first read (a copy costs what the remote read
             * would have), so it pulls the bytes once, with the probability of a read before
             * the version ends: rate x life / (1 + rate x life) for an exponential life. */
            out->weight[r] = reads / (1 + reads);
        } else {
            /* A region that never read the object: the share of the prefix's versions it
             * reads, fading as the object's own history (with no read from here) outweighs
             * the prior. A pooled rate would not do: popularity is heavy-tailed, and the mean
             * rate of a prefix is its few hot objects' rate. */
            out->weight[r] = share[r] * TERN_MIN(prior_w / beta, 1.0);
        }
    }
}

/* The cheapest egress into r from a member of set (INFINITY for an empty set). */
static double egress_in(const plc_engine *e, plc_mask set, uint32_t r)
{
    double best = INFINITY;
    for (uint32_t h = 0; h < e->t.region_count; h++)
        if ((set & (1u << h)) && e->t.egress_usd_per_gb[h][r] < best)
            best = e->t.egress_usd_per_gb[h][r];
    return (set & (1u << r)) ? 0 : best;
}

/* $/GB the non-holders of set are expected to pull from it over the version's life. */
static double pull_cost(const plc_engine *e, const outlook *ol, plc_mask set)
{
    double c = 0;
    for (uint32_t r = 0; r < e->t.region_count; r++)
        if (!(set & (1u << r)) && ol->weight[r] > 0) c += ol->weight[r] * egress_in(e, set, r);
    return c;
}

/*
 * What holding r (in set) is worth over the version's life, per GB: its own future reads
 * served locally, and the cheaper pulls its copy gives the other non-holders.
 */
static double keep_value(const plc_engine *e, const outlook *ol, plc_mask set, uint32_t r)
{
    plc_mask without = set & ~(1u << r);
    double own = ol->rate[r] * ol->life_days * egress_in(e, without, r);
    double others = pull_cost(e, ol, without) - ol->weight[r] * egress_in(e, without, r) -
                    pull_cost(e, ol, set);
    return own + others;
}

/*
 * A new version from origin: the holder set with the least expected cost (shipping now,
 * storage, and the pulls of the regions that will read it), grown greedily from what the
 * policy forces until min_regions are met and no further region pays for itself. The
 * nearest-copy prices are kept incrementally, so each step costs O(regions^2): shipping to
 * a new member is priced from the nearest region that has the bytes by then (Prim's order).
 */
static plc_mask choose_put_set(const plc_engine *e, const outlook *ol, uint32_t origin,
                               plc_mask forced, uint32_t need)
{
    uint32_t k = (uint32_t)e->t.region_count;
    plc_mask set = 0, have = 1u << origin;
    double near_set[PLC_REGIONS_MAX], near_have[PLC_REGIONS_MAX];
    for (uint32_t r = 0; r < k; r++) {
        near_set[r] = INFINITY;
        near_have[r] = e->t.egress_usd_per_gb[origin][r];
    }
    /* Regions join in the order given: the forced ones first, cheapest to reach first. */
    plc_mask unplaced = forced;
    for (;;) {
        uint32_t pick = PLC__NONE;
        if (unplaced) {
            double best = INFINITY;
            for (uint32_t r = 0; r < k; r++)
                if ((unplaced & (1u << r)) && (pick == PLC__NONE || near_have[r] < best))
                    best = near_have[r], pick = r;
            unplaced &= ~(1u << pick);
        } else {
            /* The change in expected cost if r joined: ship + store - the pulls it saves. */
            double best = INFINITY;
            for (uint32_t r = 0; r < k; r++) {
                plc_mask bit = 1u << r;
                if (!(ol->allowed & bit) || (set & bit)) continue;
                double delta = near_have[r] + ol->stor_day[r] * ol->life_days;
                /* With no holder yet there is nothing to pull from: the first is the cheapest
                 * to ship to and keep. */
                for (uint32_t x = 0; set && x < k; x++) {
                    if ((set & (1u << x)) || ol->weight[x] <= 0) continue;
                    double via = x == r ? 0 : e->t.egress_usd_per_gb[r][x];
                    if (via < near_set[x]) delta -= ol->weight[x] * (near_set[x] - via);
                }
                /* Ties go to the cheaper store, so a cold object's min_regions are the
                 * cheapest. */
                if (delta < best ||
                    (delta == best && pick != PLC__NONE && ol->stor_day[r] < ol->stor_day[pick]))
                    best = delta, pick = r;
            }
            if (pick == PLC__NONE) break;
            if ((uint32_t)plc__popcount(set) >= need && !(best < 0)) break;
        }
        plc_mask bit = 1u << pick;
        set |= bit;
        have |= bit;
        for (uint32_t x = 0; x < k; x++) {
            near_set[x] = TERN_MIN(near_set[x], e->t.egress_usd_per_gb[pick][x]);
            near_have[x] = TERN_MIN(near_have[x], e->t.egress_usd_per_gb[pick][x]);
        }
    }
    /* A copy shipped now costs about what the first read would pay to pull it later, so a
     * region almost sure to read the version gets it now: its first read is local too. */
    for (uint32_t r = 0; r < k; r++)
        if ((ol->allowed & (1u << r)) && ol->weight[r] >= e->c.prefetch_probability) set |= 1u << r;
    return set;
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

typedef enum decision_kind {
    DECIDE_PUT,  /* a new version arrived in `region` */
    DECIDE_READ, /* `region` reads the object */
    DECIDE_TICK, /* periodic review: drops and constraints */
} decision_kind;

/*
 * The target set of record oi at now_s. Adds are decided on exploring rates
 * (Thompson samples by default), drops on posterior means with hysteresis, so
 * a lucky sample may add a replica once but only a real fall of demand removes
 * it. Constraints come last and win: pinned regions, the origin of a PUT (and
 * during its RPO window), never a region outside allowed, at least one holder,
 * and min_regions.
 */
static plc_mask decide(plc_engine *e, uint32_t oi, uint32_t now_s, decision_kind kind,
                       uint32_t region)
{
    plc__obj *o = plc__rec(e, oi);
    const plc_bucket_policy *pol = plc__policy_of(e, &e->prefixes[o->prefix]);
    plc_mask allowed = pol->allowed & e->all;
    bool in_rpo = rpo_open(e, o, pol, e->last_ms);
    plc_mask cur = o->holders;
    plc_mask forced = pol->pinned & allowed;
    if (kind == DECIDE_PUT)
        forced |= (1u << region) & allowed;
    else if (in_rpo)
        forced |= (1u << origin_of(o)) & allowed;
    uint32_t need = TERN_MAX(pol->min_regions, 1u);
    double h = e->c.hysteresis;
    outlook ol;
    plc_mask set;
    if (kind == DECIDE_PUT) {
        outlook_of(e, o, now_s, allowed, true, true, &ol);
        set = choose_put_set(e, &ol, region, forced, need);
    } else if (kind == DECIDE_READ) {
        set = (cur & allowed) | forced;
        plc_mask bit = 1u << region;
        if ((allowed & bit) && !(set & bit) && set) {
            outlook_of(e, o, now_s, allowed, true, true, &ol);
            double storage = ol.stor_day[region] * ol.life_days;
            if (keep_value(e, &ol, set | bit, region) > (1 + h) * storage) set |= bit;
        }
    } else {
        set = (cur & allowed) | forced;
        /* Only holders beyond min_regions that nothing forces can go: most objects have none,
         * and skipping them keeps a tick's review from computing their posteriors. */
        bool droppable = (uint32_t)plc__popcount(set) > need && (set & ~forced);
        if (droppable) outlook_of(e, o, now_s, allowed, false, false, &ol);
        for (uint32_t r = 0; droppable && r < e->t.region_count; r++) {
            plc_mask bit = 1u << r;
            if (!(set & bit) || (forced & bit) || (uint32_t)plc__popcount(set) <= need) continue;
            double storage = ol.stor_day[r] * ol.life_days;
            if (keep_value(e, &ol, set, r) < storage / (1 + h)) set &= ~bit;
        }
    }
    set = fill(e, set, cur, allowed, TERN_MAX(need, 1u));
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
        plc__prefix_rates(e, plc__prior_source(e, &e->prefixes[o->prefix]), now_s, m, NULL);
        int rc = plc__obj_track(e, oi, region, (float)(m[region] * o->prior_w + 1));
        if (rc) return rc;
        o = plc__rec(e, oi);
    }
    plc__prefix *p = &e->prefixes[o->prefix];
    plc__prefix_read(e, p, now_s, region);
    if (p->parent != o->prefix) plc__prefix_read(e, &e->prefixes[p->parent], now_s, region);
    if (!(o->seen & (1u << region)) && o->put_s != PLC__NO_PUT) {
        o->seen |= (uint8_t)(1u << region);
        plc__prefix_first(e, p, now_s, region);
        if (p->parent != o->prefix) plc__prefix_first(e, &e->prefixes[p->parent], now_s, region);
    }
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
        plc__prefix *p = &e->prefixes[pi];
        plc__prefix_end(e, p, now_s);
        if (p->parent != pi) plc__prefix_end(e, &e->prefixes[p->parent], now_s);
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
        after = decide(e, oi, now_s, DECIDE_READ, ev->region);
        out->remote = !(before & (1u << ev->region));
        if (out->remote)
            out->source = plc_engine_choose_source(e, ev->region, before ? before : after);
    } else {
        o = plc__rec(e, oi);
        plc__obj_decay(e, o, now_s);
        if (!born) {
            /* An overwrite ends a version: how often that happens bounds what a copy is worth. */
            o->ends += 1;
            plc__prefix *p = &e->prefixes[o->prefix];
            plc__prefix_end(e, p, now_s);
            if (p->parent != o->prefix) plc__prefix_end(e, &e->prefixes[p->parent], now_s);
        }
        o->bytes_lo = (uint32_t)ev->bytes;
        o->bytes_hi = (uint32_t)(ev->bytes >> 32);
        o->put_s = now_s;
        o->seen = 0;
        o->name =
            (uint16_t)((o->name & ~(7u << PLC__ORIGIN_SHIFT)) | (ev->region << PLC__ORIGIN_SHIFT));
        after = decide(e, oi, now_s, DECIDE_PUT, ev->region);
        /* Counted after the decision: the prior it used describes versions that had time to
         * be read, which this one has not. */
        o = plc__rec(e, oi);
        plc__prefix *p = &e->prefixes[o->prefix];
        plc__prefix_version(e, p, now_s);
        if (p->parent != o->prefix) plc__prefix_version(e, &e->prefixes[p->parent], now_s);
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
        plc_mask after = decide(e, i, now_s, DECIDE_TICK, 0);
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
    uint32_t oi =
        plc__obj_find(e, pi, suffix, suffix_len, plc__obj_hash(e, pi, suffix, suffix_len));
    if (oi == PLC__NONE) return TERN_ENOTFOUND;
    const plc__obj *o = plc__rec(e, oi);
    const plc_bucket_policy *pol = plc__policy_of(e, &e->prefixes[pi]);
    now_ms = TERN_MAX(now_ms, e->last_ms);
    uint32_t now_s = engine_seconds(e, now_ms);
    bool in_rpo = rpo_open(e, o, pol, now_ms);
    plc_mask allowed = pol->allowed & e->all;
    outlook ol;
    /* Means only (explore = false): the generator is not touched, so the cast changes nothing. */
    outlook_of((plc_engine *)e, o, now_s, allowed, false, false, &ol);
    double gb = (double)plc__obj_bytes(o) / PLC_BYTES_PER_GB;
    double h = e->c.hysteresis;
    out->holders = o->holders;
    out->bytes = plc__obj_bytes(o);
    out->from_prefix_prior = o->tracked == 0;
    out->life_days = ol.life_days;
    for (uint32_t r = 0; r < e->t.region_count; r++) {
        plc_region_explanation *x = &out->regions[r];
        plc_mask bit = 1u << r;
        plc_mask with = o->holders | bit;
        plc_mask others = o->holders & ~bit;
        x->held = o->holders & bit;
        x->reads_per_day = ol.rate[r];
        x->reads_per_day_stddev = ol.sd[r];
        x->saving_usd = others ? keep_value(e, &ol, with, r) * gb : 0;
        x->storage_usd = ol.stor_day[r] * ol.life_days * gb;
        x->transfer_usd = others ? egress_in(e, others, r) * gb : 0;
        if (!(allowed & bit))
            x->reason = PLC_REASON_NOT_ALLOWED;
        else if (!x->held)
            x->reason = PLC_REASON_NONE;
        else if (pol->pinned & bit)
            x->reason = PLC_REASON_PINNED;
        else if (in_rpo && origin_of(o) == r)
            x->reason = PLC_REASON_ORIGIN;
        else if (others && x->saving_usd >= x->storage_usd / (1 + h))
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
