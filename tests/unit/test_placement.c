/* Unit tests of the placement engine: posteriors, prefix priors, decisions, constraints, memory. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "placement.h"
#include "placement_internal.h"

#define HOUR_MS (3600 * 1000LL)
#define DAY_MS  (24 * HOUR_MS)
#define GB      1000000000ull

/* ---------------------------------------------------------------- fixtures */

/* n regions in continents of two: $0.02/GB within a continent, $0.09 across. */
static plc_topology topology(size_t n)
{
    plc_topology t;
    memset(&t, 0, sizeof t);
    t.region_count = n;
    for (size_t r = 0; r < n; r++) {
        snprintf(t.names[r], sizeof t.names[r], "r%zu", r);
        t.storage_usd_per_gb_month[r] = 0.018 + 0.001 * (double)(r % 6);
        for (size_t q = 0; q < n; q++) {
            bool same = r / 2 == q / 2;
            t.egress_usd_per_gb[r][q] = r == q ? 0 : same ? 0.02 : 0.09;
            t.rtt_ms[r][q] = r == q ? 0 : same ? 20 + (double)(r + q) : 120 + 5 * (double)(r + q);
        }
    }
    return t;
}

static plc_engine *engine(const plc_topology *t, plc_config c)
{
    plc_engine *e = NULL;
    char err[128];
    assert_int_equal(plc_engine_new(t, &c, &e, err, sizeof err), 0);
    assert_non_null(e);
    return e;
}

static plc_decision event(plc_engine *e, int64_t ts, uint32_t region, plc_op op, const char *bucket,
                          const char *key, uint64_t bytes)
{
    plc_event ev = {ts, region, op, bucket, key, bytes};
    plc_decision d;
    assert_int_equal(plc_engine_observe(e, &ev, &d), 0);
    return d;
}

static plc_explanation explain(const plc_engine *e, const char *bucket, const char *key,
                               int64_t now)
{
    plc_explanation x;
    assert_int_equal(plc_engine_explain(e, bucket, key, now, &x), 0);
    return x;
}

/* xorshift for the tests' own random streams (separate from the engine's generator). */
static uint64_t test_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---------------------------------------------------------------- posterior math */

static void test_decay_math(void **state)
{
    (void)state;
    assert_true(fabs(plc__decay(1, 1) - 0.5) < 1e-12);
    assert_true(fabs(plc__decay(2, 1) - 0.25) < 1e-12);
    assert_true(plc__decay(0, 1) == 1);
    assert_true(plc__decay(-1, 1) == 1);
    /* Exposure tends to H_eff whatever it started at. */
    double heff = 1 / M_LN2;
    assert_true(fabs(plc__exposure_after(0, plc__decay(1000, 1), heff) - heff) < 1e-9);
    assert_true(fabs(plc__exposure_after(5 * heff, plc__decay(1000, 1), heff) - heff) < 1e-9);
    assert_true(fabs(plc__exposure_after(heff, 0.5, heff) - heff) < 1e-12);
    assert_true(fabs(plc__exposure_after(0, 0.5, heff) - heff / 2) < 1e-12);
}

static void test_gamma_sampler(void **state)
{
    (void)state;
    plc__rng r;
    plc__rng_seed(&r, 42);
    double shapes[] = {0.3, 1, 4.5, 50};
    for (size_t i = 0; i < TERN_ARRAY_LEN(shapes); i++) {
        double sum = 0, sq = 0;
        int n = 40000;
        for (int k = 0; k < n; k++) {
            double g = plc__rng_gamma(&r, shapes[i]);
            assert_true(g >= 0);
            sum += g;
            sq += g * g;
        }
        double mean = sum / n, var = sq / n - mean * mean;
        assert_true(fabs(mean - shapes[i]) < 0.05 * shapes[i] + 0.02);
        assert_true(fabs(var - shapes[i]) < 0.1 * shapes[i] + 0.03);
    }
    assert_true(plc__rng_gamma(&r, 0) == 0);
    /* The same seed gives the same stream. */
    plc__rng a, b;
    plc__rng_seed(&a, 7);
    plc__rng_seed(&b, 7);
    for (int k = 0; k < 100; k++)
        assert_true(plc__rng_gamma(&a, 2.5) == plc__rng_gamma(&b, 2.5));
}

static void test_posterior_updates(void **state)
{
    (void)state;
    plc_topology t = topology(3);
    plc_config c = {.half_life_hours = 24, .seed = 1};
    plc_engine *e = engine(&t, c);
    double heff = 1 / M_LN2; /* days, for a one-day half-life */
    int64_t t0 = 1000 * DAY_MS;
    event(e, t0, 0, PLC_PUT, "b", "k", GB);
    /* A fresh bucket lends no demand: the prior is an exposure of H_eff with zero reads. */
    plc_explanation x = explain(e, "b", "k", t0);
    assert_true(x.from_prefix_prior);
    for (int r = 0; r < 3; r++)
        assert_true(x.regions[r].reads_per_day == 0);
    /* k reads at one instant: alpha = k, beta = H_eff. */
    int k = 10;
    for (int i = 0; i < k; i++)
        event(e, t0, 1, PLC_GET, "b", "k", GB);
    x = explain(e, "b", "k", t0);
    assert_false(x.from_prefix_prior);
    assert_true(fabs(x.regions[1].reads_per_day - k / heff) < 1e-4);
    assert_true(fabs(x.regions[1].reads_per_day_stddev - sqrt(k) / heff) < 1e-4);
    /* One half-life later, with no read, the weight of those reads has halved (beta stays at
     * H_eff, so the mean halves too). */
    x = explain(e, "b", "k", t0 + DAY_MS);
    assert_true(fabs(x.regions[1].reads_per_day - k / heff / 2) < 1e-4);
    x = explain(e, "b", "k", t0 + 2 * DAY_MS);
    assert_true(fabs(x.regions[1].reads_per_day - k / heff / 4) < 1e-4);
    /* A steady rate is recovered: 48 reads a day for 10 days. */
    for (int i = 1; i <= 480; i++)
        event(e, t0 + 2 * DAY_MS + i * 30 * 60 * 1000LL, 2, PLC_GET, "b", "k", GB);
    x = explain(e, "b", "k", t0 + 12 * DAY_MS);
    assert_true(fabs(x.regions[2].reads_per_day - 48) < 2);
    plc_engine_free(e);
}

/* ---------------------------------------------------------------- prefix prior */

static void test_prefix_prior(void **state)
{
    (void)state;
    plc_topology t = topology(4);
    plc_config c = {.seed = 3};
    plc_engine *e = engine(&t, c);
    int64_t now = 50 * DAY_MS;
    char key[64];
    /* photos/2024/ is read mostly from region 3 ("Tokyo"), a little from region 1. */
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "2024/img%d.jpg", i);
        event(e, now, 0, PLC_PUT, "photos", key, 4000000);
    }
    for (int round = 0; round < 200; round++) {
        now += 10 * 60 * 1000;
        snprintf(key, sizeof key, "2024/img%d.jpg", round % 20);
        event(e, now, 3, PLC_GET, "photos", key, 4000000);
        if (round % 10 == 0) event(e, now, 1, PLC_GET, "photos", key, 4000000);
    }
    /* A new object of the prefix is born with Tokyo demand, and a replica there. */
    plc_decision d = event(e, now, 0, PLC_PUT, "photos", "2024/new.jpg", 4000000);
    plc_explanation x = explain(e, "photos", "2024/new.jpg", now);
    assert_true(x.from_prefix_prior);
    assert_true(x.regions[3].reads_per_day > 5 * x.regions[1].reads_per_day);
    assert_true(x.regions[1].reads_per_day > x.regions[0].reads_per_day);
    assert_true(x.regions[3].reads_per_day > 1);
    assert_true(d.after & (1u << 3));
    assert_int_equal(x.regions[3].reason, PLC_REASON_DEMAND);
    /* A new directory of the bucket borrows the bucket's demand. */
    d = event(e, now, 0, PLC_PUT, "photos", "2025/first.jpg", 4000000);
    x = explain(e, "photos", "2025/first.jpg", now);
    assert_true(x.regions[3].reads_per_day > 1);
    assert_true(d.after & (1u << 3));
    /* Another bucket learns nothing from it. */
    d = event(e, now, 0, PLC_PUT, "other", "2024/img0.jpg", 4000000);
    x = explain(e, "other", "2024/img0.jpg", now);
    assert_true(x.regions[3].reads_per_day == 0);
    assert_int_equal(d.after, 1u);
    plc_engine_free(e);
}

/* ---------------------------------------------------------------- decisions */

static void test_decision_follows_demand(void **state)
{
    (void)state;
    plc_topology t = topology(3);
    plc_config c = {.seed = 9, .half_life_hours = 12};
    plc_engine *e = engine(&t, c);
    int64_t now = 10 * DAY_MS;
    plc_decision d = event(e, now, 0, PLC_PUT, "b", "obj", 2 * GB);
    assert_int_equal(d.before, 0);
    assert_int_equal(d.after, 1u);
    /* Region 2 reads it every 20 minutes: it gets a replica. */
    bool added = false;
    for (int i = 0; i < 100 && !added; i++) {
        now += 20 * 60 * 1000;
        d = event(e, now, 2, PLC_GET, "b", "obj", 2 * GB);
        if (d.after & 4u) added = true;
        if (!(d.before & 4u)) {
            assert_true(d.remote);
            assert_int_equal(d.source, 0);
        }
    }
    assert_true(added);
    plc_explanation x = explain(e, "b", "obj", now);
    assert_int_equal(x.regions[2].reason, PLC_REASON_DEMAND);
    assert_true(x.regions[2].saving_usd > x.regions[2].storage_usd + x.regions[2].transfer_usd);
    /* A local read is not remote. */
    d = event(e, now, 2, PLC_GET, "b", "obj", 2 * GB);
    assert_false(d.remote);
    assert_int_equal(d.source, 2);
    /* Region 2's reads stop while region 0 keeps reading: after region 2's demand decays, the
     * replica there is dropped (region 0's stays). */
    plc_engine_stats s0;
    plc_engine_stats_get(e, &s0);
    bool dropped = false;
    for (int day = 1; day <= 30 && !dropped; day++) {
        for (int i = 0; i < 12; i++) {
            now += 2 * HOUR_MS;
            event(e, now, 0, PLC_GET, "b", "obj", 2 * GB);
        }
        plc_engine_tick(e, now, 100, NULL, NULL);
        x = explain(e, "b", "obj", now);
        assert_true(x.holders & 1u);
        if (!(x.holders & 4u)) {
            dropped = true;
            assert_true(day > 1); /* not at once: the estimate decays first */
        }
    }
    assert_true(dropped);
    plc_engine_stats s1;
    plc_engine_stats_get(e, &s1);
    assert_true(s1.replicas_dropped > s0.replicas_dropped);
    plc_engine_free(e);
}

struct tick_log {
    int calls;
    char bucket[64], key[64];
    plc_mask before, after;
};

static void on_change(void *ctx, const char *bucket, const char *key, plc_mask before,
                      plc_mask after)
{
    struct tick_log *l = ctx;
    l->calls++;
    snprintf(l->bucket, sizeof l->bucket, "%s", bucket);
    snprintf(l->key, sizeof l->key, "%s", key);
    l->before = before;
    l->after = after;
}

static void test_tick_reports_names(void **state)
{
    (void)state;
    plc_topology t = topology(2);
    plc_config c = {.seed = 5};
    plc_engine *e = engine(&t, c);
    plc_bucket_policy p = {.min_regions = 1, .rpo_seconds = 60};
    assert_int_equal(plc_engine_set_policy(e, "docs", &p), 0);
    int64_t now = 0;
    plc_decision d = event(e, now, 0, PLC_PUT, "docs", "a/b/c.txt", GB);
    assert_int_equal(d.after, 1u);
    /* Region 1 reads it often: it copies it. */
    for (int i = 0; i < 50; i++) {
        now += 10 * 60 * 1000;
        d = event(e, now, 1, PLC_GET, "docs", "a/b/c.txt", GB);
    }
    assert_int_equal(d.after, 3u);
    /* Once the RPO window is over the origin is held only for what it is worth, and nobody
     * reads it there: a tick drops that copy (region 1's is enough for min_regions = 1) and
     * names the object. */
    struct tick_log log = {0};
    plc_engine_tick(e, now, 10, on_change, &log);
    assert_int_equal(log.calls, 1);
    assert_string_equal(log.bucket, "docs");
    assert_string_equal(log.key, "a/b/c.txt");
    assert_int_equal(log.before, 3u);
    assert_int_equal(log.after, 2u);
    plc_explanation x = explain(e, "docs", "a/b/c.txt", now);
    assert_int_equal(x.holders, 2u);
    assert_int_equal(x.regions[0].reason, PLC_REASON_NONE);
    assert_int_equal(x.regions[1].reason, PLC_REASON_MIN_REGIONS);
    /* Nothing more to change: the next tick is silent. */
    plc_engine_tick(e, now + 1000, 10, on_change, &log);
    assert_int_equal(log.calls, 1);
    plc_engine_free(e);
}

/* A steady rate between the drop and add thresholds must not make the set flap. */
static void test_no_flapping_on_borderline(void **state)
{
    (void)state;
    plc_topology t = topology(2);
    /* Prices chosen so that with a one-day horizon the add threshold is about 25 reads/day and
     * the drop threshold about 16: a steady 20 a day sits between them. */
    t.storage_usd_per_gb_month[0] = t.storage_usd_per_gb_month[1] = 0.023;
    t.egress_usd_per_gb[0][1] = t.egress_usd_per_gb[1][0] = 0.00004;
    plc_algo algos[] = {PLC_ALGO_THOMPSON, PLC_ALGO_UCB};
    for (size_t a = 0; a < TERN_ARRAY_LEN(algos); a++) {
        plc_config c = {.algo = algos[a], .seed = 11, .horizon_hours = 24, .ucb_c = 2};
        plc_engine *e = engine(&t, c);
        int64_t now = 0;
        event(e, now, 0, PLC_PUT, "b", "k", GB);
        int changes = 0, drops = 0;
        plc_mask last = 1;
        for (int i = 0; i < 20 * 60; i++) { /* 60 days of one read every 72 minutes */
            now += 72 * 60 * 1000;
            plc_decision d = event(e, now, 1, PLC_GET, "b", "k", GB);
            if (i % 20 == 0) plc_engine_tick(e, now, 10, NULL, NULL);
            plc_explanation x = explain(e, "b", "k", now);
            if (i > 20 * 5 && x.holders != last) {
                changes++;
                if (!(x.holders & 2u)) drops++;
            }
            last = x.holders;
            (void)d;
        }
        assert_true(changes <= 1);
        assert_int_equal(drops, 0);
        plc_engine_free(e);
    }
}

/* ---------------------------------------------------------------- constraints (property) */

#define PROP_OBJECTS 60
#define PROP_BUCKETS 4

typedef struct prop_object {
    int64_t put_ms; /* -1: never PUT */
    bool exists;
    plc_mask holders;
} prop_object;

typedef struct prop_world {
    plc_topology t;
    plc_bucket_policy pol[PROP_BUCKETS];
    prop_object obj[PROP_BUCKETS][PROP_OBJECTS];
    int64_t now;
    uint64_t seed;
} prop_world;

static const char *bucket_names[PROP_BUCKETS] = {"b0", "b1", "b2", "b3"};

static void prop_key(int i, char *buf, size_t len)
{
    /* Several prefixes per bucket, and keys with no directory. */
    if (i % 3 == 0)
        snprintf(buf, len, "k%d", i);
    else
        snprintf(buf, len, "d%d/sub/k%d", i % 5, i);
}

static void prop_check(const prop_world *w, int b, int i, plc_mask after)
{
    const plc_bucket_policy *p = &w->pol[b];
    plc_mask all = (plc_mask)((1u << w->t.region_count) - 1);
    plc_mask allowed = p->allowed ? p->allowed : all;
    const prop_object *o = &w->obj[b][i];
    if (!o->exists) {
        assert_int_equal(after, 0);
        return;
    }
    if (after & ~allowed || (after & p->pinned) != p->pinned || after == 0) {
        fail_msg("seed %llu: %s object %d holders %#x allowed %#x pinned %#x",
                 (unsigned long long)w->seed, bucket_names[b], i, after, allowed, p->pinned);
    }
    bool window_passed = o->put_ms < 0 || w->now >= o->put_ms + (int64_t)p->rpo_seconds * 1000;
    if (window_passed && (uint32_t)__builtin_popcount(after) < p->min_regions)
        fail_msg("seed %llu: %s object %d has %d holders < min_regions %u at %lld",
                 (unsigned long long)w->seed, bucket_names[b], i, __builtin_popcount(after),
                 p->min_regions, (long long)w->now);
}

static void prop_tick_changed(void *ctx, const char *bucket, const char *key, plc_mask before,
                              plc_mask after)
{
    prop_world *w = ctx;
    int b = bucket[1] - '0';
    const char *k = strrchr(key, 'k');
    int i = atoi(k + 1);
    assert_int_equal(w->obj[b][i].holders, before);
    w->obj[b][i].holders = after;
    prop_check(w, b, i, after);
}

static void random_policy(const plc_topology *t, uint64_t *s, plc_bucket_policy *p)
{
    plc_mask all = (plc_mask)((1u << t->region_count) - 1);
    memset(p, 0, sizeof *p);
    plc_mask allowed = 0;
    while (!allowed)
        allowed = (plc_mask)test_rand(s) & all;
    if (test_rand(s) % 3 == 0) allowed = 0; /* all */
    plc_mask eff = allowed ? allowed : all;
    p->allowed = allowed;
    p->pinned = test_rand(s) % 2 ? (plc_mask)test_rand(s) & eff & (plc_mask)test_rand(s) : 0;
    p->min_regions = 1 + (uint32_t)(test_rand(s) % (uint64_t)__builtin_popcount(eff));
    p->rpo_seconds = (uint32_t)(test_rand(s) % 3 == 0 ? 0 : test_rand(s) % 120);
}

/* Runs one seeded random stream; fills *digest with a hash of every decision. */
static void prop_run(uint64_t seed, int events, size_t pairs_max, uint64_t *digest)
{
    prop_world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    w->seed = seed;
    w->t = topology(3 + test_rand(&s) % 6);
    plc_config c = {.algo = (plc_algo)(seed % 3),
                    .seed = seed,
                    .half_life_hours = 0.5 + (double)(test_rand(&s) % 48),
                    .horizon_hours = 1 + (double)(test_rand(&s) % 200),
                    .tracked_pairs_max = pairs_max};
    plc_engine *e = engine(&w->t, c);
    for (int b = 0; b < PROP_BUCKETS; b++) {
        random_policy(&w->t, &s, &w->pol[b]);
        assert_int_equal(plc_engine_set_policy(e, bucket_names[b], &w->pol[b]), 0);
        for (int i = 0; i < PROP_OBJECTS; i++)
            w->obj[b][i].put_ms = -1;
    }
    uint64_t h = 1469598103934665603ull;
    w->now = (int64_t)(test_rand(&s) % 1000000);
    for (int n = 0; n < events; n++) {
        w->now += (int64_t)(test_rand(&s) % 40000);
        int b = (int)(test_rand(&s) % PROP_BUCKETS);
        /* Skewed popularity: low indexes are read far more. */
        int i = (int)(test_rand(&s) % PROP_OBJECTS);
        if (test_rand(&s) % 2) i = i % 8;
        uint32_t region = (uint32_t)(test_rand(&s) % w->t.region_count);
        if (test_rand(&s) % 3) region = (uint32_t)(b % w->t.region_count); /* regional affinity */
        uint64_t roll = test_rand(&s) % 100;
        plc_op op = roll < 80 ? PLC_GET : roll < 95 ? PLC_PUT : PLC_DELETE;
        char key[48];
        prop_key(i, key, sizeof key);
        prop_object *o = &w->obj[b][i];
        plc_decision d =
            event(e, w->now, region, op, bucket_names[b], key, 1 + test_rand(&s) % (8 * GB));
        if (op == PLC_DELETE) {
            assert_int_equal(d.before, o->exists ? o->holders : 0);
            o->exists = false;
            o->holders = 0;
            o->put_ms = -1;
        } else {
            assert_int_equal(d.before, o->exists ? o->holders : 0);
            o->exists = true;
            o->holders = d.after;
            if (op == PLC_PUT) {
                o->put_ms = w->now;
                plc_mask allowed = w->pol[b].allowed ? w->pol[b].allowed
                                                     : (plc_mask)((1u << w->t.region_count) - 1);
                if (allowed & (1u << region)) assert_true(d.after & (1u << region));
            }
            if (op == PLC_GET) {
                assert_true(d.remote == !(d.before & (1u << region)));
                plc_mask from = d.before ? d.before : d.after;
                assert_true(from & (1u << d.source));
            }
        }
        prop_check(w, b, i, d.after);
        h = (h ^ ((uint64_t)d.before | (uint64_t)d.after << 8 | (uint64_t)d.source << 16 |
                  (uint64_t)d.remote << 24)) *
            1099511628211ull;
        if (n % 37 == 0) {
            w->now += (int64_t)(test_rand(&s) % 100000);
            plc_engine_tick(e, w->now, 1 + test_rand(&s) % 64, prop_tick_changed, w);
            /* Every object still satisfies the constraints, as the engine explains it. */
            for (int bb = 0; bb < PROP_BUCKETS; bb++) {
                for (int k = 0; k < PROP_OBJECTS; k++) {
                    char kk[48];
                    prop_key(k, kk, sizeof kk);
                    plc_explanation x;
                    int rc = plc_engine_explain(e, bucket_names[bb], kk, w->now, &x);
                    if (!w->obj[bb][k].exists) {
                        assert_int_equal(rc, TERN_ENOTFOUND);
                        continue;
                    }
                    assert_int_equal(rc, 0);
                    assert_int_equal(x.holders, w->obj[bb][k].holders);
                    h = (h ^ x.holders) * 1099511628211ull;
                    for (uint32_t r = 0; r < w->t.region_count; r++) {
                        bool held = x.holders & (1u << r);
                        assert_true(held == x.regions[r].held);
                        assert_true(held == (x.regions[r].reason != PLC_REASON_NONE &&
                                             x.regions[r].reason != PLC_REASON_NOT_ALLOWED));
                    }
                }
            }
            plc__store_check(e);
        }
        plc_engine_stats st;
        plc_engine_stats_get(e, &st);
        assert_true(st.pairs_tracked <= pairs_max);
    }
    plc__store_check(e);
    plc_engine_free(e);
    free(w);
    *digest = h;
}

static void test_constraints_random_streams(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 12; seed++) {
        uint64_t digest;
        prop_run(seed, 4000, 1000000, &digest);
        /* A tight pair budget: eviction and arena compaction run all the time. */
        prop_run(seed + 100, 3000, 40, &digest);
    }
}

static void test_determinism(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        uint64_t a, b, c;
        prop_run(seed, 3000, 1000000, &a);
        prop_run(seed, 3000, 1000000, &b);
        assert_true(a == b);
        prop_run(seed, 3000, 50, &a);
        prop_run(seed, 3000, 50, &c);
        assert_true(a == c);
    }
}

/* ---------------------------------------------------------------- memory */

static void test_memory_bound(void **state)
{
    (void)state;
    plc_topology t = topology(5);
    plc_config c = {.seed = 77};
    plc_engine *e = engine(&t, c);
    uint64_t s = 12345;
    int64_t now = 0;
    char key[64];
    /* 100,000 objects, each read from 2 or 3 regions (its home and one or two others). */
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof key, "user%d/photo-%08d.jpg", i % 97, i);
        uint32_t home = (uint32_t)(i % 5);
        event(e, now, home, PLC_GET, "media", key, 1000000);
        event(e, now, (home + 1 + (uint32_t)(test_rand(&s) % 4)) % 5, PLC_GET, "media", key,
              1000000);
        if (i % 2) event(e, now, (home + 2) % 5, PLC_GET, "media", key, 1000000);
        now += 100;
    }
    plc_engine_stats st;
    plc_engine_stats_get(e, &st);
    double per_pair = (double)st.memory_bytes / (double)st.pairs_tracked;
    print_message("memory: %zu objects, %zu pairs, %zu bytes, %.1f bytes/pair\n",
                  st.objects_tracked, st.pairs_tracked, st.memory_bytes, per_pair);
    assert_int_equal(st.objects_tracked, 100000);
    assert_true(st.pairs_tracked >= 200000);
    assert_true(per_pair <= 64);
    plc__store_check(e);
    /* Deleting everything gives the memory back (up to the tables' high-water sizes). */
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof key, "user%d/photo-%08d.jpg", i % 97, i);
        plc_decision d = event(e, now, 0, PLC_DELETE, "media", key, 0);
        assert_int_equal(d.after, 0);
        assert_int_not_equal(d.before, 0);
    }
    plc_engine_stats_get(e, &st);
    assert_int_equal(st.objects_tracked, 0);
    assert_int_equal(st.pairs_tracked, 0);
    plc__store_check(e);
    plc_engine_free(e);
}

static void test_eviction_falls_back_to_prefix(void **state)
{
    (void)state;
    plc_topology t = topology(4);
    plc_config c = {.seed = 5, .tracked_pairs_max = 100};
    plc_engine *e = engine(&t, c);
    char key[64];
    int64_t now = 0;
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "p/obj%d", i);
        event(e, now, 0, PLC_PUT, "bk", key, 1000);
        event(e, now, 3, PLC_GET, "bk", key, 1000);
        event(e, now, 3, PLC_GET, "bk", key, 1000);
        now += 1000;
        plc_engine_stats st;
        plc_engine_stats_get(e, &st);
        assert_true(st.pairs_tracked <= 100);
    }
    plc_explanation x = explain(e, "bk", "p/obj0", now);
    assert_true(x.from_prefix_prior);
    /* The cold object's figures are the prefix's: region 3 reads, the others do not. */
    assert_true(x.regions[3].reads_per_day > 0);
    assert_true(x.regions[1].reads_per_day == 0);
    x = explain(e, "bk", "p/obj499", now);
    assert_false(x.from_prefix_prior);
    plc__store_check(e);
    plc_engine_free(e);
}

/* ---------------------------------------------------------------- explanations */

static void test_explain_reasons(void **state)
{
    (void)state;
    plc_topology t = topology(4);
    plc_config c = {.seed = 2};
    plc_engine *e = engine(&t, c);
    plc_bucket_policy p = {.min_regions = 3, .allowed = 0x7, .pinned = 0x4, .rpo_seconds = 30};
    assert_int_equal(plc_engine_set_policy(e, "eu", &p), 0);
    plc_decision d = event(e, 0, 0, PLC_PUT, "eu", "doc", 1000);
    /* min_regions hold in the PUT's target set at once (the RPO window is the time the
     * replicator may take to ship it); during the window the origin is held as the origin. */
    assert_int_equal(d.after, 0x7u);
    plc_explanation x = explain(e, "eu", "doc", 1000);
    assert_int_equal(x.bytes, 1000);
    assert_int_equal(x.holders, 0x7u);
    assert_int_equal(x.regions[0].reason, PLC_REASON_ORIGIN);
    assert_int_equal(x.regions[1].reason, PLC_REASON_MIN_REGIONS);
    assert_int_equal(x.regions[2].reason, PLC_REASON_PINNED);
    assert_int_equal(x.regions[3].reason, PLC_REASON_NOT_ALLOWED);
    assert_false(x.regions[3].held);
    assert_true(x.regions[1].storage_usd > 0);
    /* After the window: three holders, the filler explained as MIN_REGIONS. */
    plc_engine_tick(e, 31 * 1000, 10, NULL, NULL);
    x = explain(e, "eu", "doc", 31 * 1000);
    assert_int_equal(x.holders, 0x7u);
    assert_int_equal(x.regions[0].reason, PLC_REASON_MIN_REGIONS);
    assert_int_equal(x.regions[1].reason, PLC_REASON_MIN_REGIONS);
    assert_int_equal(x.regions[2].reason, PLC_REASON_PINNED);
    /* A write from a region outside allowed never lands there. */
    d = event(e, 40 * 1000, 3, PLC_PUT, "eu", "doc2", 1000);
    assert_int_equal(d.after & 0x8u, 0);
    assert_true(d.after & 0x4u);
    assert_int_equal(plc_engine_explain(e, "eu", "missing", 0, &x), TERN_ENOTFOUND);
    assert_int_equal(plc_engine_explain(e, "nobucket", "doc", 0, &x), TERN_ENOTFOUND);
    plc_engine_free(e);
}

/* ---------------------------------------------------------------- source selection */

static void test_source_selection(void **state)
{
    (void)state;
    plc_topology t = topology(4);
    /* Regions 0 and 1 both charge $0.09/GB into 2... */
    t.egress_usd_per_gb[0][3] = t.egress_usd_per_gb[1][3] = 0.09;
    t.rtt_ms[0][3] = t.rtt_ms[1][3] = 100;
    plc_config c = {.seed = 4};
    plc_engine *e = engine(&t, c);
    /* ...but region 1's transfers are slow: the bandit learns to read from 0. */
    for (int i = 0; i < 50; i++) {
        plc_engine_observe_transfer(e, 0, 3, 1000000, 110 + i % 3);
        plc_engine_observe_transfer(e, 1, 3, 1000000, 400 + i % 7);
    }
    int from0 = 0;
    for (int i = 0; i < 200; i++)
        from0 += plc_engine_choose_source(e, 3, 0x3) == 0;
    assert_true(from0 >= 195);
    /* Price beats latency across continents: 2 is in 3's continent ($0.02) though slower. */
    for (int i = 0; i < 50; i++)
        plc_engine_observe_transfer(e, 2, 3, 1000000, 300);
    assert_int_equal(plc_engine_choose_source(e, 3, 0x7), 2);
    /* Tiny transfers teach nothing: fixed costs on a 20-byte read, scaled to a megabyte,
     * would make region 2 look slow enough to lose its price advantage (seen live). */
    for (int i = 0; i < 50; i++)
        plc_engine_observe_transfer(e, 2, 3, 20, 300 + 2);
    for (int i = 0; i < 20; i++)
        assert_int_equal(plc_engine_choose_source(e, 3, 0x7), 2);
    /* A holder in the reader's region serves locally; a single holder serves. */
    assert_int_equal(plc_engine_choose_source(e, 3, 0x9), 3);
    assert_int_equal(plc_engine_choose_source(e, 3, 0x2), 1);
    plc_engine_free(e);
    /* Deterministic: two engines with one seed choose alike while learning nothing. */
    plc_engine *a = engine(&t, c), *b = engine(&t, c);
    for (int i = 0; i < 100; i++)
        assert_int_equal(plc_engine_choose_source(a, 3, 0x3), plc_engine_choose_source(b, 3, 0x3));
    plc_engine_free(a);
    plc_engine_free(b);
}

/* ---------------------------------------------------------------- cost helpers and errors */

static void test_cheapest_source(void **state)
{
    (void)state;
    plc_topology t = topology(4);
    assert_int_equal(plc_cheapest_source(&t, 0x1, 3), 0);
    assert_int_equal(plc_cheapest_source(&t, 0x5, 3), 2); /* same continent: $0.02 */
    assert_int_equal(plc_cheapest_source(&t, 0x8, 3), 3); /* held locally */
    t.egress_usd_per_gb[0][3] = 0.02;
    t.rtt_ms[0][3] = 10; /* equal price: the lower RTT wins */
    assert_int_equal(plc_cheapest_source(&t, 0x5, 3), 0);
}

static void test_policy_check(void **state)
{
    (void)state;
    plc_topology t = topology(3);
    char err[128];
    plc_bucket_policy ok = {.min_regions = 2, .allowed = 0x3, .pinned = 0x1};
    assert_int_equal(plc_policy_check(&t, &ok, err, sizeof err), 0);
    plc_bucket_policy all = {.min_regions = 3};
    assert_int_equal(plc_policy_check(&t, &all, err, sizeof err), 0);
    plc_bucket_policy bad = ok;
    bad.pinned = 0x4;
    assert_int_equal(plc_policy_check(&t, &bad, err, sizeof err), TERN_EINVAL);
    assert_non_null(strstr(err, "pinned"));
    bad = ok;
    bad.min_regions = 3;
    assert_int_equal(plc_policy_check(&t, &bad, err, sizeof err), TERN_EINVAL);
    assert_non_null(strstr(err, "min_regions"));
    bad = ok;
    bad.min_regions = 0;
    assert_int_equal(plc_policy_check(&t, &bad, err, sizeof err), TERN_EINVAL);
    bad = ok;
    bad.allowed = 0x9;
    assert_int_equal(plc_policy_check(&t, &bad, err, sizeof err), TERN_EINVAL);
    assert_non_null(strstr(err, "allowed"));
    bad = ok;
    bad.allowed = 0;
    bad.pinned = 0x10;
    assert_int_equal(plc_policy_check(&t, &bad, err, sizeof err), TERN_EINVAL);
}

static void test_errors(void **state)
{
    (void)state;
    plc_topology t = topology(3);
    plc_config c = {0};
    plc_engine *e = NULL;
    char err[128];
    plc_topology bad = t;
    bad.region_count = 0;
    assert_int_equal(plc_engine_new(&bad, &c, &e, err, sizeof err), TERN_EINVAL);
    assert_null(e);
    bad = t;
    bad.region_count = PLC_REGIONS_MAX + 1;
    assert_int_equal(plc_engine_new(&bad, &c, &e, err, sizeof err), TERN_EINVAL);
    bad = t;
    bad.storage_usd_per_gb_month[1] = -1;
    assert_int_equal(plc_engine_new(&bad, &c, &e, err, sizeof err), TERN_EINVAL);
    assert_non_null(strstr(err, "r1"));
    bad = t;
    bad.egress_usd_per_gb[0][2] = NAN;
    assert_int_equal(plc_engine_new(&bad, &c, &e, err, sizeof err), TERN_EINVAL);
    bad = t;
    strcpy(bad.names[2], "r0");
    assert_int_equal(plc_engine_new(&bad, &c, &e, err, sizeof err), TERN_EINVAL);
    plc_config badc = {.hysteresis = -1};
    assert_int_equal(plc_engine_new(&t, &badc, &e, err, sizeof err), TERN_EINVAL);
    assert_non_null(strstr(err, "hysteresis"));
    badc = (plc_config){.algo = (plc_algo)7};
    assert_int_equal(plc_engine_new(&t, &badc, &e, err, sizeof err), TERN_EINVAL);
    badc = (plc_config){.epsilon = 2};
    assert_int_equal(plc_engine_new(&t, &badc, &e, err, sizeof err), TERN_EINVAL);

    e = engine(&t, c);
    plc_bucket_policy p = {.min_regions = 4};
    assert_int_equal(plc_engine_set_policy(e, "b", &p), TERN_EINVAL);
    p = (plc_bucket_policy){.min_regions = 1, .allowed = 0x1, .pinned = 0x2};
    assert_int_equal(plc_engine_set_policy(e, "b", &p), TERN_EINVAL);
    p = (plc_bucket_policy){.min_regions = 1};
    assert_int_equal(plc_engine_set_policy(e, "", &p), TERN_EINVAL);
    assert_int_equal(plc_engine_set_policy(e, NULL, &p), TERN_EINVAL);
    assert_int_equal(plc_engine_set_policy(e, "*", &p), 0);

    plc_decision d;
    plc_event ev = {0, 3, PLC_GET, "b", "k", 10};
    assert_int_equal(plc_engine_observe(e, &ev, &d), TERN_EINVAL);
    ev = (plc_event){0, 0, (plc_op)9, "b", "k", 10};
    assert_int_equal(plc_engine_observe(e, &ev, &d), TERN_EINVAL);
    ev = (plc_event){0, 0, PLC_GET, NULL, "k", 10};
    assert_int_equal(plc_engine_observe(e, &ev, &d), TERN_EINVAL);
    ev = (plc_event){0, 0, PLC_GET, "b", NULL, 10};
    assert_int_equal(plc_engine_observe(e, &ev, &d), TERN_EINVAL);
    char *longkey = malloc(5000);
    memset(longkey, 'x', 4999);
    longkey[4999] = 0;
    ev = (plc_event){0, 0, PLC_GET, "b", longkey, 10};
    assert_int_equal(plc_engine_observe(e, &ev, &d), TERN_EINVAL);
    free(longkey);
    /* Nothing changed. */
    plc_engine_stats st;
    plc_engine_stats_get(e, &st);
    assert_int_equal(st.events, 0);
    assert_int_equal(st.objects_tracked, 0);
    /* A DELETE of an unknown object is a no-op; a key ending in '/' is fine. */
    d = event(e, 0, 0, PLC_DELETE, "b", "nothing", 0);
    assert_int_equal(d.before | d.after, 0);
    d = event(e, 0, 0, PLC_PUT, "b", "dir/", 10);
    assert_int_equal(d.after, 1u);
    d = event(e, 0, 1, PLC_GET, "b", "dir/", 10);
    assert_int_equal(d.before, 1u);
    /* Time going backwards counts at the latest time instead of failing. */
    d = event(e, -5000, 1, PLC_GET, "b", "dir/", 10);
    plc_engine_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decay_math),
        cmocka_unit_test(test_gamma_sampler),
        cmocka_unit_test(test_posterior_updates),
        cmocka_unit_test(test_prefix_prior),
        cmocka_unit_test(test_decision_follows_demand),
        cmocka_unit_test(test_tick_reports_names),
        cmocka_unit_test(test_no_flapping_on_borderline),
        cmocka_unit_test(test_constraints_random_streams),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_memory_bound),
        cmocka_unit_test(test_eviction_falls_back_to_prefix),
        cmocka_unit_test(test_explain_reasons),
        cmocka_unit_test(test_source_selection),
        cmocka_unit_test(test_cheapest_source),
        cmocka_unit_test(test_policy_check),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
