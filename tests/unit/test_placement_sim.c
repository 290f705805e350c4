/* Unit tests of the placement simulator: the ledger against hand-priced traces, the oracle
 * against brute force, constraints and determinism of every policy, policy names. */
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

#define GB          1e9
#define HOUR_MS     (3600 * 1000LL)
#define MONTH_HOURS (30.0 * 24) /* the cost model's month */

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return rng_next(s) % n;
}

static bool close_enough(double actual, double expected, double rel)
{
    double scale = fmax(fabs(actual), fabs(expected));
    return fabs(actual - expected) <= rel * scale || fabs(actual - expected) < 1e-15;
}

#define assert_close(actual, expected)                                                             \
    do {                                                                                           \
        double a_ = (actual), e_ = (expected);                                                     \
        if (!close_enough(a_, e_, 1e-12))                                                          \
            fail_msg("%s = %.17g, expected %s = %.17g", #actual, a_, #expected, e_);               \
    } while (0)

/* A latency as the ledger keeps it (a float per read). */
static double as_float(double ms)
{
    return (double)(float)ms;
}

/*
 * Three regions a, b, c. From a every other region is cheapest to reach directly, so a PUT
 * at a ships to each member at egress[a][m] (the relay pricing of the ledger gives the same
 * figure there); bandwidth 50 MB/s for read latency.
 */
enum { A = 0, B = 1, C = 2 };
static const double storage3[3] = {0.023, 0.0125, 0.020};
static const double egress3[3][3] = {{0, 0.02, 0.05}, {0.02, 0, 0.09}, {0.05, 0.09, 0}};
static const double rtt3[3][3] = {{0, 60, 80}, {60, 0, 140}, {80, 140, 0}};

static plc_topology topology3(void)
{
    plc_topology t;
    memset(&t, 0, sizeof t);
    t.region_count = 3;
    for (int r = 0; r < 3; r++) {
        snprintf(t.names[r], sizeof t.names[r], "%c", 'a' + r);
        t.storage_usd_per_gb_month[r] = storage3[r];
        for (int q = 0; q < 3; q++) {
            t.egress_usd_per_gb[r][q] = egress3[r][q];
            t.rtt_ms[r][q] = rtt3[r][q];
        }
    }
    t.bandwidth_mb_per_s = 50;
    return t;
}

/* A remote read's latency in topology3: RTT plus the bytes at 50 MB/s. */
static double latency3(int from, int to, double bytes)
{
    return rtt3[from][to] + bytes / 50e6 * 1000;
}

static plc_sim_result run_policy(const plc_topology *t, const plc_sim_trace *trace,
                                 plc_sim_policy policy, uint64_t seed)
{
    plc_sim_options o = {.policy = policy, .seed = seed};
    plc_sim_result r;
    char err[256] = "";
    int rc = plc_sim_run(t, trace, &o, &r, err, sizeof err);
    if (rc != 0) fail_msg("plc_sim_run %s: %d %s", plc_sim_policy_name(policy), rc, err);
    return r;
}

/* ---------------------------------------------------------------- 1. the ledger by hand */

/*
 * Two objects in topology3, default policy (min 1, all allowed, no RPO):
 *   0h  PUT x at a, 2 GB          5h  GET y at c, 0.5 GB read   13h GET y at a (deleted: miss)
 *   1h  GET x at b, 2 GB          10h PUT x at a, 4 GB (over)   20h GET x at c, 4 GB
 *   2h  GET y at c (never written: a miss)                      end 24h
 *   3h  PUT y at a, 1 GB          12h DELETE y at b
 * x is held 2 GB x 10 h then 4 GB x 14 h; y 1 GB x 9 h: 85 GB-hours per holder.
 */
static const plc_sim_object objects_xy[] = {{"bk", "x", 0}, {"bk", "y", 0}};
static const plc_bucket_policy default_policy = {.min_regions = 1};
static const plc_sim_event trace_xy_events[] = {
    {0 * HOUR_MS, 0, A, PLC_PUT, 2000000000},  {1 * HOUR_MS, 0, B, PLC_GET, 2000000000},
    {2 * HOUR_MS, 1, C, PLC_GET, 1000000000},  {3 * HOUR_MS, 1, A, PLC_PUT, 1000000000},
    {5 * HOUR_MS, 1, C, PLC_GET, 500000000},   {10 * HOUR_MS, 0, A, PLC_PUT, 4000000000},
    {12 * HOUR_MS, 1, B, PLC_DELETE, 0},       {13 * HOUR_MS, 1, A, PLC_GET, 1000000000},
    {20 * HOUR_MS, 0, C, PLC_GET, 4000000000},
};

static plc_sim_trace trace_xy(void)
{
    return (plc_sim_trace){
        trace_xy_events, TERN_ARRAY_LEN(trace_xy_events), objects_xy, 2, &default_policy, 1,
        24 * HOUR_MS};
}

static void test_ledger_prices_home(void **state)
{
    (void)state;
    plc_topology t = topology3();
    plc_sim_trace trace = trace_xy();
    plc_sim_result r = run_policy(&t, &trace, PLC_SIM_HOME, 0);
    /* home keeps every version at its origin a: every read is remote, nothing is copied. */
    double gb_hours = 2.0 * 10 + 4.0 * 14 + 1.0 * 9;
    double egress = 2 * egress3[A][B] + 0.5 * egress3[A][C] + 4 * egress3[A][C];
    double storage = storage3[A] * gb_hours / MONTH_HOURS;
    assert_close(r.costs.egress_usd, egress);
    assert_close(r.costs.storage_usd, storage);
    assert_close(r.costs.transfer_usd, 0);
    assert_close(r.total_usd, egress + storage);
    assert_int_equal(r.costs.egress_bytes, 2000000000ull + 500000000ull + 4000000000ull);
    assert_int_equal(r.costs.transfer_bytes, 0);
    assert_int_equal(r.costs.reads, 3);
    assert_int_equal(r.costs.local_reads, 0);
    assert_int_equal(r.missed_reads, 2);
    assert_int_equal(r.events, TERN_ARRAY_LEN(trace_xy_events));
    assert_int_equal(r.costs.constraint_violations, 0);
    assert_close(r.local_read_ratio, 0);
    /* Latencies 40060, 10080 and 80080 ms: nearest rank 2 of 3 and 3 of 3. */
    assert_close(r.read_latency_ms_p50, as_float(latency3(A, B, 2e9)));
    assert_close(r.read_latency_ms_p99, as_float(latency3(A, C, 4e9)));
    assert_close(r.read_latency_ms_p50, 40060);
}

static void test_ledger_prices_full(void **state)
{
    (void)state;
    plc_topology t = topology3();
    plc_sim_trace trace = trace_xy();
    plc_sim_result r = run_policy(&t, &trace, PLC_SIM_FULL, 0);
    /* full: every PUT ships to b and c; every read is local. */
    double gb_hours = 2.0 * 10 + 4.0 * 14 + 1.0 * 9;
    double transfer = (2 + 1 + 4) * (egress3[A][B] + egress3[A][C]);
    double storage = (storage3[A] + storage3[B] + storage3[C]) * gb_hours / MONTH_HOURS;
    assert_close(r.costs.egress_usd, 0);
    assert_close(r.costs.transfer_usd, transfer);
    assert_close(r.costs.storage_usd, storage);
    assert_close(r.total_usd, transfer + storage);
    assert_int_equal(r.costs.egress_bytes, 0);
    assert_int_equal(r.costs.transfer_bytes, 2 * (2000000000ull + 1000000000ull + 4000000000ull));
    assert_int_equal(r.costs.reads, 3);
    assert_int_equal(r.costs.local_reads, 3);
    assert_int_equal(r.missed_reads, 2);
    assert_int_equal(r.costs.constraint_violations, 0);
    assert_close(r.local_read_ratio, 1);
    assert_close(r.read_latency_ms_p50, 0);
    assert_close(r.read_latency_ms_p99, 0);

    /* static-k (k = 2): a plus b, the cheapest to store in. */
    r = run_policy(&t, &trace, PLC_SIM_STATIC_K, 0);
    assert_close(r.costs.transfer_usd, (2 + 1 + 4) * egress3[A][B]);
    assert_close(r.costs.egress_usd, 0.5 * egress3[A][C] + 4 * egress3[A][C]);
    assert_close(r.costs.storage_usd, (storage3[A] + storage3[B]) * gb_hours / MONTH_HOURS);
    assert_int_equal(r.costs.local_reads, 1);
}

/*
 * Direct ledger steps on one object, with a change between events and a transient set:
 *   0h  PUT at a, 2 GB, holders {a}
 *   1h  change: copy to c                      (2 GB x egress a->c)
 *   2h  GET at b through {a,b,c}, leaving {c}  (copy to b from a; the read is filled by it)
 *   3h  GET at a of 1 GB, holders {c}          (remote: 1 GB x egress c->a)
 *   4h  GET at c                               (local)
 *   5h  DELETE; 6h GET at b (a miss); end 10h
 */
static void test_ledger_steps_by_hand(void **state)
{
    (void)state;
    plc_topology t = topology3();
    static const plc_sim_object obj = {"bk", "x", 0};
    static const plc_sim_event ev[] = {
        {0 * HOUR_MS, 0, A, PLC_PUT, 2000000000}, {2 * HOUR_MS, 0, B, PLC_GET, 2000000000},
        {3 * HOUR_MS, 0, A, PLC_GET, 1000000000}, {4 * HOUR_MS, 0, C, PLC_GET, 2000000000},
        {5 * HOUR_MS, 0, B, PLC_DELETE, 0},       {6 * HOUR_MS, 0, B, PLC_GET, 1000000000},
    };
    plc_sim_trace trace = {ev, TERN_ARRAY_LEN(ev), &obj, 1, &default_policy, 1, 10 * HOUR_MS};
    plc_ledger *l = NULL;
    assert_int_equal(plc_ledger_new(&t, &trace, &l), 0);
    const plc_mask a = 1u << A, b = 1u << B, c = 1u << C;

    assert_int_equal(plc_ledger_holders(l, 0), 0);
    assert_int_equal(plc_ledger_step(l, 0, 0, &ev[0], 0, a), 0);
    assert_int_equal(plc_ledger_holders(l, 0), a);
    assert_close(plc_ledger_total_usd_at(l, 0), 0);
    /* Storage accrues without a step: 2 GB at a for half an hour. */
    assert_close(plc_ledger_total_usd_at(l, HOUR_MS / 2), storage3[A] * 2 * 0.5 / MONTH_HOURS);

    assert_int_equal(plc_ledger_step(l, 1 * HOUR_MS, 0, NULL, 0, a | c), 0);
    assert_int_equal(plc_ledger_holders(l, 0), a | c);
    double copy_c = 2 * egress3[A][C];
    assert_close(plc_ledger_total_usd_at(l, HOUR_MS), copy_c + storage3[A] * 2 * 1 / MONTH_HOURS);

    assert_int_equal(plc_ledger_step(l, 2 * HOUR_MS, 0, &ev[1], a | b | c, c), 0);
    assert_int_equal(plc_ledger_holders(l, 0), c);
    double copy_b = 2 * egress3[A][B]; /* a is the cheaper holder to copy to b from */
    assert_int_equal(plc_ledger_step(l, 3 * HOUR_MS, 0, &ev[2], 0, c), 0);
    assert_int_equal(plc_ledger_step(l, 4 * HOUR_MS, 0, &ev[3], 0, c), 0);
    assert_int_equal(plc_ledger_step(l, 5 * HOUR_MS, 0, &ev[4], 0, 0), 0);
    assert_int_equal(plc_ledger_holders(l, 0), 0);
    assert_int_equal(plc_ledger_step(l, 6 * HOUR_MS, 0, &ev[5], 0, 0), 0);
    assert_int_equal(plc_ledger_holders(l, 0), 0);

    double storage =
        (storage3[A] * 2 * 1 + (storage3[A] + storage3[C]) * 2 * 1 + storage3[C] * 2 * 3) /
        MONTH_HOURS;
    double egress = 1 * egress3[C][A];
    /* Nothing accrues after the DELETE. */
    assert_close(plc_ledger_total_usd_at(l, 9 * HOUR_MS), copy_c + copy_b + egress + storage);

    plc_sim_result r;
    plc_ledger_finish(l, &r);
    assert_close(r.costs.transfer_usd, copy_c + copy_b);
    assert_close(r.costs.egress_usd, egress);
    assert_close(r.costs.storage_usd, storage);
    assert_close(r.total_usd, copy_c + copy_b + egress + storage);
    assert_int_equal(r.costs.transfer_bytes, 2 * 2000000000ull);
    assert_int_equal(r.costs.egress_bytes, 1000000000ull);
    assert_int_equal(r.costs.reads, 3);
    assert_int_equal(r.costs.local_reads, 1);
    assert_int_equal(r.missed_reads, 1);
    assert_int_equal(r.events, TERN_ARRAY_LEN(ev));
    assert_int_equal(r.costs.constraint_violations, 0);
    assert_close(r.local_read_ratio, 1.0 / 3);
    /* The filled read waited for a -> b; the remote one for c -> a; the local one 0 ms. */
    assert_close(r.read_latency_ms_p50, as_float(latency3(C, A, 1e9)));
    assert_close(r.read_latency_ms_p99, as_float(latency3(A, B, 2e9)));
    plc_ledger_free(l);
}

static void test_ledger_rejects_bad_steps(void **state)
{
    (void)state;
    plc_topology t = topology3();
    static const plc_sim_object obj[] = {{"bk", "x", 0}, {"bk", "y", 0}};
    static const plc_sim_event ev[] = {
        {1000, 0, A, PLC_PUT, 10},
        {2000, 0, A, PLC_DELETE, 0},
        {2000, 0, 7, PLC_GET, 10},
    };
    plc_sim_trace trace = {ev, 3, obj, 2, &default_policy, 1, 5000};
    plc_ledger *l = NULL;
    assert_int_equal(plc_ledger_new(&t, &trace, &l), 0);
    assert_int_equal(plc_ledger_step(l, 1000, 0, &ev[0], 0, 1), 0);
    assert_int_equal(plc_ledger_step(l, 999, 0, NULL, 0, 1), TERN_EINVAL);    /* backwards */
    assert_int_equal(plc_ledger_step(l, 1500, 2, NULL, 0, 1), TERN_EINVAL);   /* no object 2 */
    assert_int_equal(plc_ledger_step(l, 1500, 0, NULL, 0, 0x8), TERN_EINVAL); /* no region 3 */
    assert_int_equal(plc_ledger_step(l, 1500, 0, NULL, 0x10, 1), TERN_EINVAL);
    assert_int_equal(plc_ledger_step(l, 1500, 1, &ev[0], 0, 1), TERN_EINVAL); /* ev of x */
    assert_int_equal(plc_ledger_step(l, 1500, 1, NULL, 0, 1), TERN_EINVAL);   /* y missing */
    assert_int_equal(plc_ledger_step(l, 2000, 0, &ev[2], 0, 1), TERN_EINVAL); /* region 7 */
    assert_int_equal(plc_ledger_step(l, 2000, 0, &ev[1], 0, 1), TERN_EINVAL); /* DELETE keeps */
    assert_int_equal(plc_ledger_holders(l, 0), 1);
    assert_int_equal(plc_ledger_step(l, 2000, 0, &ev[1], 0, 0), 0);
    assert_int_equal(plc_ledger_holders(l, 0), 0);
    plc_sim_result r;
    plc_ledger_finish(l, &r);
    assert_int_equal(r.costs.constraint_violations, 0);
    plc_ledger_free(l);
    plc_topology none = t;
    none.region_count = 0;
    assert_int_equal(plc_ledger_new(&none, &trace, &l), TERN_EINVAL);
}

/*
 * Violations, counted once per violated rule: bucket allowed {a,b}, pinned {b}, min 2, RPO 60 s.
 *   0 s    PUT at a, holders {a}            in the window: none
 *   30 s   GET at a                         in the window: none
 *   120 s  GET at a, still {a}              deadline 60 s: 2; this step: 2 more
 *   130 s  change to {a,b}                  none
 *   140 s  change to {a,b,c}                c is not allowed: 1
 *   150 s  change to {}                     the object is lost: 1
 *   200 s  PUT at a {a}; 260 s {a,b}        fixed exactly at the deadline: none
 *   400 s  PUT at a {a}; 460.001 s {a,b}    a millisecond late: 2
 */
static void test_ledger_counts_violations(void **state)
{
    (void)state;
    plc_topology t = topology3();
    static const plc_bucket_policy p = {
        .min_regions = 2, .allowed = 0x3, .pinned = 0x2, .rpo_seconds = 60};
    static const plc_sim_object obj = {"bk", "x", 0};
    static const plc_sim_event ev[] = {
        {0, 0, A, PLC_PUT, 1000},      {30000, 0, A, PLC_GET, 1000},  {120000, 0, A, PLC_GET, 1000},
        {200000, 0, A, PLC_PUT, 1000}, {300000, 0, A, PLC_GET, 1000}, {400000, 0, A, PLC_PUT, 1000},
    };
    plc_sim_trace trace = {ev, TERN_ARRAY_LEN(ev), &obj, 1, &p, 1, 500000};
    const plc_mask a = 1u << A, b = 1u << B, c = 1u << C;
    uint64_t expected[] = {0, 0, 4, 4, 5, 6, 6, 6, 6, 6, 8};
    struct {
        int64_t ts;
        int ev; /* -1: a change */
        plc_mask after;
    } steps[] = {
        {0, 0, a},           {30000, 1, a},           {120000, 2, a},
        {130000, -1, a | b}, {140000, -1, a | b | c}, {150000, -1, 0},
        {200000, 3, a},      {260000, -1, a | b},     {300000, 4, a | b},
        {400000, 5, a},      {460001, -1, a | b},
    };
    for (size_t n = 1; n <= TERN_ARRAY_LEN(steps); n++) {
        /* Replays the first n steps into a fresh ledger and counts at the last one's time. */
        plc_sim_trace upto = trace;
        upto.end_ms = steps[n - 1].ts;
        plc_ledger *l = NULL;
        assert_int_equal(plc_ledger_new(&t, &upto, &l), 0);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(plc_ledger_step(l, steps[i].ts, 0,
                                             steps[i].ev < 0 ? NULL : &ev[steps[i].ev], 0,
                                             steps[i].after),
                             0);
        plc_sim_result r;
        plc_ledger_finish(l, &r);
        if (r.costs.constraint_violations != expected[n - 1])
            fail_msg("after step %zu (at %lld ms): %llu violations, expected %llu", n,
                     (long long)steps[n - 1].ts, (unsigned long long)r.costs.constraint_violations,
                     (unsigned long long)expected[n - 1]);
        plc_ledger_free(l);
    }
}

/*
 * Relay pricing: from a, c is reached cheaper through b (0.01 + 0.01) than directly (0.09).
 * The bucket may use b as a relay only if b is allowed; a transient copy through a region
 * outside allowed is a residency violation, however briefly it is held.
 */
static void test_ledger_relays_within_allowed(void **state)
{
    (void)state;
    plc_topology t = topology3();
    for (int r = 0; r < 3; r++)
        for (int q = 0; q < 3; q++)
            t.egress_usd_per_gb[r][q] = r == q ? 0 : 0.09;
    t.egress_usd_per_gb[A][B] = t.egress_usd_per_gb[B][C] = 0.01;
    const plc_mask a = 1u << A, b = 1u << B, c = 1u << C;
    plc_relay_table *all = NULL, *ac = NULL;
    assert_int_equal(plc_relay_table_new(&t, a | b | c, &all), 0);
    assert_int_equal(plc_relay_table_new(&t, a | c, &ac), 0);
    assert_close(plc_relay_usd_per_byte(all, a, a | c) * GB, 0.02);
    assert_close(plc_relay_usd_per_byte(ac, a, a | c) * GB, 0.09);
    assert_close(plc_relay_usd_per_byte(all, a, a | b | c) * GB, 0.02);
    assert_close(plc_relay_usd_per_byte(all, a, a), 0);
    assert_true(isinf(plc_relay_usd_per_byte(ac, a, a | b)));  /* b is not allowed */
    assert_true(isinf(plc_relay_usd_per_byte(all, a | b, a))); /* not a superset */
    plc_relay_table_free(all);
    plc_relay_table_free(ac);

    static const plc_sim_object obj[] = {{"open", "x", 0}, {"eu", "x", 1}};
    static const plc_bucket_policy pols[] = {{.min_regions = 1},
                                             {.min_regions = 1, .allowed = 0x5}};
    static const plc_sim_event ev[] = {{0, 0, A, PLC_PUT, 2000000000},
                                       {0, 1, A, PLC_PUT, 2000000000}};
    plc_sim_trace trace = {ev, 2, obj, 2, pols, 2, 0};
    for (int through_b = 0; through_b < 2; through_b++) {
        plc_ledger *l = NULL;
        assert_int_equal(plc_ledger_new(&t, &trace, &l), 0);
        assert_int_equal(plc_ledger_step(l, 0, 0, &ev[0], 0, a | c), 0);
        assert_int_equal(plc_ledger_step(l, 0, 1, &ev[1], through_b ? a | b | c : 0, a | c), 0);
        plc_sim_result r;
        plc_ledger_finish(l, &r);
        /* "open" relays through b; "eu" pays the direct price, or breaks residency. */
        assert_close(r.costs.transfer_usd, 2 * 0.02 + 2 * (through_b ? 0.02 : 0.09));
        assert_int_equal(r.costs.constraint_violations, through_b ? 1 : 0);
        plc_ledger_free(l);
    }
}

/* ---------------------------------------------------------------- 2. the oracle vs brute force */

#define TINY_EVENTS_MAX 6
#define TINY_POINTS_MAX 16
#define TINY_TRACES     600

typedef struct {
    uint64_t seed;
    plc_topology t;
    plc_bucket_policy policies[2];
    plc_sim_object objects[2];
    plc_sim_event events[TINY_EVENTS_MAX];
    plc_sim_trace trace;
    /* The brute force's decision instants: every event, and changes of one object between. */
    struct {
        int64_t ts_ms;
        uint32_t object;
        int event; /* -1: a change between events */
    } points[TINY_POINTS_MAX];
    size_t point_count;
    /* the search */
    plc_mask through[TINY_POINTS_MAX], after[TINY_POINTS_MAX];
    plc_mask best_through[TINY_POINTS_MAX], best_after[TINY_POINTS_MAX];
    double best;
    bool found;
    uint64_t leaves, nodes; /* complete plans priced; prefixes priced */
} tiny;

static void tiny_policy(tiny *w, uint64_t *s, plc_bucket_policy *p)
{
    plc_mask all = (plc_mask)((1u << w->t.region_count) - 1);
    memset(p, 0, sizeof *p);
    plc_mask allowed = 0;
    while (allowed == 0)
        allowed = (plc_mask)rng_next(s) & all;
    p->allowed = rng_below(s, 3) == 0 ? 0 : allowed;
    plc_mask eff = p->allowed ? p->allowed : all;
    p->pinned = rng_below(s, 2) ? (plc_mask)rng_next(s) & eff : 0;
    p->min_regions = 1 + (uint32_t)rng_below(s, (uint64_t)__builtin_popcount(eff));
    static const uint32_t rpo[] = {0, 0, 1800, 3600, 7200};
    p->rpo_seconds = rpo[rng_below(s, TERN_ARRAY_LEN(rpo))];
    char err[128];
    assert_int_equal(plc_policy_check(&w->t, p, err, sizeof err), 0);
}

static void tiny_add_point(tiny *w, int64_t ts, uint32_t object, int event)
{
    for (size_t j = 0; event < 0 && j < w->point_count; j++)
        if (w->points[j].ts_ms == ts && w->points[j].object == object) return; /* one per instant */
    assert_true(w->point_count < TINY_POINTS_MAX);
    size_t i = w->point_count++;
    /* Insertion sort by time; a change goes before the events of its instant. */
    while (i > 0 && (w->points[i - 1].ts_ms > ts ||
                     (w->points[i - 1].ts_ms == ts && event < 0 && w->points[i - 1].event >= 0))) {
        w->points[i] = w->points[i - 1];
        i--;
    }
    w->points[i].ts_ms = ts;
    w->points[i].object = object;
    w->points[i].event = event;
}

static bool object_has_event_at(const tiny *w, uint32_t object, int64_t ts)
{
    for (size_t i = 0; i < w->trace.event_count; i++)
        if (w->events[i].object == object && w->events[i].ts_ms == ts) return true;
    return false;
}

/*
 * A random tiny world. Times are in hours, storage prices are high enough per hour that
 * holding, copying and reading remotely trade against each other, and egress prices need not
 * obey the triangle inequality.
 */
static void tiny_make(tiny *w, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->seed = seed;
    uint64_t s = seed * 0x2545f4914f6cdd1dull + 7;
    w->t.region_count = 2 + rng_below(&s, 2);
    size_t k = w->t.region_count;
    for (size_t r = 0; r < k; r++) {
        snprintf(w->t.names[r], sizeof w->t.names[r], "r%zu", r);
        w->t.storage_usd_per_gb_month[r] = 0.5 * (double)(1 + rng_below(&s, 8));
        for (size_t q = 0; q < k; q++) {
            w->t.egress_usd_per_gb[r][q] = r == q ? 0 : 0.01 * (double)rng_below(&s, 13);
            w->t.rtt_ms[r][q] = r == q ? 0 : 10 * (double)(1 + rng_below(&s, 20));
        }
    }
    size_t objects = 1 + rng_below(&s, 2);
    size_t policies = objects == 2 && rng_below(&s, 2) ? 2 : 1;
    for (size_t p = 0; p < policies; p++)
        tiny_policy(w, &s, &w->policies[p]);
    static const char *const keys[] = {"x", "y"};
    for (size_t o = 0; o < objects; o++)
        w->objects[o] = (plc_sim_object){"bk", keys[o], (uint32_t)(o % policies)};
    size_t events = 3 + rng_below(&s, 4);
    static const uint64_t sizes[] = {500000000, 1000000000, 2000000000};
    int64_t ts = (int64_t)rng_below(&s, 3) * HOUR_MS;
    bool written[2] = {false, false};
    for (size_t i = 0; i < events; i++) {
        ts += (int64_t)rng_below(&s, 5) * HOUR_MS / 2;
        uint32_t o = (uint32_t)rng_below(&s, objects);
        /* Mostly a PUT first, but also reads of objects never written or deleted. */
        uint64_t roll = !written[o] && rng_below(&s, 10) < 6 ? 60 : rng_below(&s, 100);
        plc_op op = roll < 50 ? PLC_GET : roll < 85 ? PLC_PUT : PLC_DELETE;
        written[o] = op == PLC_PUT || (written[o] && op != PLC_DELETE);
        w->events[i] = (plc_sim_event){ts, o, (uint32_t)rng_below(&s, k), op,
                                       op == PLC_DELETE ? 0 : sizes[rng_below(&s, 3)]};
    }
    w->trace = (plc_sim_trace){w->events,
                               events,
                               w->objects,
                               objects,
                               w->policies,
                               policies,
                               ts + (int64_t)rng_below(&s, 4) * HOUR_MS};
    for (size_t i = 0; i < events; i++)
        tiny_add_point(w, w->events[i].ts_ms, w->events[i].object, (int)i);
    /* Every RPO deadline of every version, binding or stale, where no event of the object is. */
    for (size_t i = 0; i < events; i++) {
        const plc_sim_event *ev = &w->events[i];
        uint32_t rpo = w->policies[w->objects[ev->object].policy].rpo_seconds;
        int64_t deadline = ev->ts_ms + (int64_t)rpo * 1000;
        if (ev->op == PLC_PUT && rpo > 0 && deadline < w->trace.end_ms &&
            !object_has_event_at(w, ev->object, deadline))
            tiny_add_point(w, deadline, ev->object, -1);
    }
    /* Sometimes a change at an arbitrary instant too: the oracle claims changes at its points
     * are enough, so this extra freedom must never beat it. */
    if (rng_below(&s, 3) == 0 && w->point_count < TINY_POINTS_MAX && w->trace.end_ms > 0) {
        int64_t at = 1 + (int64_t)rng_below(&s, (uint64_t)w->trace.end_ms);
        uint32_t o = (uint32_t)rng_below(&s, objects);
        if (!object_has_event_at(w, o, at)) tiny_add_point(w, at, o, -1);
    }
}

static void tiny_dump(const tiny *w)
{
    static const char *const ops[] = {"?", "GET", "PUT", "DELETE"};
    print_message("tiny seed %llu: %zu regions, end %lld ms\n", (unsigned long long)w->seed,
                  w->t.region_count, (long long)w->trace.end_ms);
    for (size_t r = 0; r < w->t.region_count; r++) {
        print_message("  r%zu storage %.3f egress", r, w->t.storage_usd_per_gb_month[r]);
        for (size_t q = 0; q < w->t.region_count; q++)
            print_message(" %.2f", w->t.egress_usd_per_gb[r][q]);
        print_message("\n");
    }
    for (size_t p = 0; p < w->trace.policy_count; p++)
        print_message("  policy %zu: min %u allowed %#x pinned %#x rpo %u s\n", p,
                      w->policies[p].min_regions, w->policies[p].allowed, w->policies[p].pinned,
                      w->policies[p].rpo_seconds);
    for (size_t j = 0; j < w->point_count; j++) {
        int e = w->points[j].event;
        print_message("  %8lld ms obj %u %-6s", (long long)w->points[j].ts_ms, w->points[j].object,
                      e < 0 ? "change" : ops[w->events[e].op]);
        if (e >= 0)
            print_message(" r%u %llu bytes", w->events[e].region,
                          (unsigned long long)w->events[e].bytes);
        if (w->found)
            print_message("   best through %#x after %#x", w->best_through[j], w->best_after[j]);
        print_message("\n");
    }
}

/* Prices points 0..last of the current plan (those of `object`, or all for UINT32_MAX) with a
 * fresh ledger, counting until `end_ms`. */
static void tiny_price(const tiny *w, uint32_t object, size_t last, int64_t end_ms,
                       plc_sim_result *out)
{
    plc_sim_trace trace = w->trace;
    trace.end_ms = end_ms;
    plc_ledger *l = NULL;
    assert_int_equal(plc_ledger_new(&w->t, &trace, &l), 0);
    for (size_t j = 0; j <= last; j++) {
        if (object != UINT32_MAX && w->points[j].object != object) continue;
        int e = w->points[j].event;
        int rc = plc_ledger_step(l, w->points[j].ts_ms, w->points[j].object,
                                 e < 0 ? NULL : &w->events[e], w->through[j], w->after[j]);
        if (rc != 0) {
            tiny_dump(w);
            fail_msg("ledger step %zu refused: %d", j, rc);
        }
    }
    plc_ledger_finish(l, out);
    plc_ledger_free(l);
}

/*
 * Branch and bound over every plan of one object: at a PUT any set of regions (the ledger
 * counts those breaking the policy), at a GET or a change of an existing object any transient
 * superset T of its holders and any subset of T to keep. A prefix that already broke a rule, or
 * already costs as much as the best plan found, is cut: costs and violations only grow with
 * time. The candidates of a point are tried cheapest prefix first, so a good plan is found
 * early. Objects share nothing in the cost model, so the optimum of the trace is the sum of the
 * objects' optima (checked below by pricing the combined plan in one ledger).
 */
typedef struct {
    plc_mask through, after;
    double usd;
} tiny_candidate;

static int compare_candidate(const void *x, const void *y)
{
    const tiny_candidate *a = x, *b = y;
    return (a->usd > b->usd) - (a->usd < b->usd);
}

static void tiny_search(tiny *w, uint32_t o, size_t j, plc_mask s)
{
    while (j < w->point_count && w->points[j].object != o)
        j++;
    if (j == w->point_count) {
        plc_sim_result r;
        tiny_price(w, o, j - 1, w->trace.end_ms, &r);
        w->leaves++;
        if (r.costs.constraint_violations == 0 && r.total_usd < w->best) {
            w->best = r.total_usd;
            w->found = true;
            for (size_t i = 0; i < w->point_count; i++)
                if (w->points[i].object == o) {
                    w->best_through[i] = w->through[i];
                    w->best_after[i] = w->after[i];
                }
        }
        return;
    }
    plc_mask all = (plc_mask)((1u << w->t.region_count) - 1);
    int e = w->points[j].event;
    plc_op op = e < 0 ? 0 : w->events[e].op;
    /*
     * Candidate (T, A) pairs. A PUT: T = 0 (the ledger ships to A from the origin), any A.
     * A DELETE, or a GET or change of an object that does not exist: (0, 0) only. Otherwise
     * any T containing the holders S (regions outside allowed included: the ledger must count
     * them) and any A within T (the empty set included: a lost object).
     */
    tiny_candidate c[64];
    size_t n = 0;
    bool fixed = op == PLC_DELETE || (op != PLC_PUT && s == 0);
    for (plc_mask tt = 0; tt <= all; tt++) {
        if ((op == PLC_PUT || fixed) ? tt != 0 : (tt & s) != s) continue;
        plc_mask range = op == PLC_PUT ? all : tt;
        for (plc_mask a = 0; a <= range; a++) {
            if ((a & range) != a) continue;
            w->through[j] = tt;
            w->after[j] = a;
            plc_sim_result r;
            tiny_price(w, o, j, w->points[j].ts_ms, &r);
            w->nodes++;
            if (r.costs.constraint_violations > 0) continue;
            assert_true(n < TERN_ARRAY_LEN(c));
            c[n++] = (tiny_candidate){tt, a, r.total_usd};
        }
    }
    qsort(c, n, sizeof c[0], compare_candidate);
    for (size_t i = 0; i < n && c[i].usd < w->best * (1 - 1e-11); i++) {
        w->through[j] = c[i].through;
        w->after[j] = c[i].after;
        tiny_search(w, o, j + 1, c[i].after);
    }
}

static void oracle_check_one(uint64_t seed, uint64_t *leaves, uint64_t *nodes)
{
    tiny *w = calloc(1, sizeof *w);
    assert_non_null(w);
    tiny_make(w, seed);

    plc_oracle_plan plan;
    char err[256] = "";
    int rc = plc_oracle_solve(&w->t, &w->trace, &plan, err, sizeof err);
    if (rc != 0) {
        tiny_dump(w);
        fail_msg("seed %llu: oracle failed: %d %s", (unsigned long long)seed, rc, err);
    }
    plc_sim_result replay = run_policy(&w->t, &w->trace, PLC_SIM_ORACLE, 0);

    /* The search knows nothing of the oracle's answer. */
    double optimum = 0;
    bool found = true;
    for (uint32_t o = 0; o < w->trace.object_count; o++) {
        w->best = INFINITY;
        w->found = false;
        tiny_search(w, o, 0, 0);
        optimum += w->best;
        found = found && w->found;
    }
    w->found = found;
    w->best = optimum;
    *leaves += w->leaves;
    *nodes += w->nodes;
    if (found) { /* the objects' best plans together, in one ledger */
        memcpy(w->through, w->best_through, sizeof w->through);
        memcpy(w->after, w->best_after, sizeof w->after);
        plc_sim_result r;
        tiny_price(w, UINT32_MAX, w->point_count - 1, w->trace.end_ms, &r);
        assert_int_equal(r.costs.constraint_violations, 0);
        assert_true(close_enough(r.total_usd, optimum, 1e-12));
    }
    bool ok = w->found && replay.costs.constraint_violations == 0 &&
              close_enough(replay.total_usd, w->best, 1e-9) &&
              close_enough(plan.total_usd, w->best, 1e-9);
    if (!ok) {
        tiny_dump(w);
        for (size_t i = 0; i < w->trace.event_count; i++)
            print_message("  oracle event %zu: through %#x after %#x\n", i, plan.through[i],
                          plan.after[i]);
        for (size_t c = 0; c < plan.change_count; c++)
            print_message("  oracle change at %lld ms obj %u: through %#x after %#x\n",
                          (long long)plan.changes[c].ts_ms, plan.changes[c].object,
                          plan.changes[c].through, plan.changes[c].after);
        fail_msg("seed %llu: brute force %.12g (found %d), oracle plan %.12g, replayed %.12g "
                 "with %llu violations",
                 (unsigned long long)seed, w->best, w->found, plan.total_usd, replay.total_usd,
                 (unsigned long long)replay.costs.constraint_violations);
    }
    plc_oracle_plan_free(&plan);
    free(w);
}

static void test_oracle_matches_brute_force(void **state)
{
    (void)state;
    uint64_t leaves = 0, nodes = 0;
    for (uint64_t seed = 1; seed <= TINY_TRACES; seed++)
        oracle_check_one(seed, &leaves, &nodes);
    print_message("oracle vs brute force: %d traces, %llu plans and %llu prefixes priced\n",
                  TINY_TRACES, (unsigned long long)leaves, (unsigned long long)nodes);
}

/*
 * Reads between a PUT and its RPO deadline: the set they leave must be fixed at the deadline,
 * not at the next event (the oracle once planned {a} until the GET at 120 s and broke min 2).
 */
static void test_oracle_deadline_after_reads(void **state)
{
    (void)state;
    plc_topology t = topology3();
    static const plc_bucket_policy p = {.min_regions = 2, .rpo_seconds = 60};
    static const plc_sim_object obj = {"bk", "x", 0};
    static const plc_sim_event ev[] = {{0, 0, A, PLC_PUT, 1000000000},
                                       {10000, 0, A, PLC_GET, 1000000000},
                                       {120000, 0, A, PLC_GET, 1000000000}};
    plc_sim_trace trace = {ev, 3, &obj, 1, &p, 1, 120000};
    plc_oracle_plan plan;
    char err[128];
    assert_int_equal(plc_oracle_solve(&t, &trace, &plan, err, sizeof err), 0);
    assert_int_equal(plan.change_count, 1);
    assert_int_equal(plan.changes[0].ts_ms, 60000);
    assert_int_equal(__builtin_popcount(plan.changes[0].after), 2);
    /* a and b from 60 s: the copy a -> b plus storage; the reads at a are local. */
    double expected =
        1 * egress3[A][B] + (storage3[A] * 120 + storage3[B] * 60) / 3600 / MONTH_HOURS;
    assert_close(plan.total_usd, expected);
    plc_sim_result r = run_policy(&t, &trace, PLC_SIM_ORACLE, 0);
    assert_int_equal(r.costs.constraint_violations, 0);
    assert_close(r.total_usd, expected);
    plc_oracle_plan_free(&plan);
}

/* ---------------------------------------------------------------- 3. constraints of every policy
 */

#define WORLD_OBJECTS 40
#define WORLD_EVENTS  700

typedef struct {
    plc_topology t;
    plc_bucket_policy policies[3];
    char keys[WORLD_OBJECTS][16];
    plc_sim_object objects[WORLD_OBJECTS];
    plc_sim_event events[WORLD_EVENTS];
    plc_sim_trace trace;
} world;

static const char *const world_buckets[] = {"b0", "b1", "b2"};

/* k regions, three buckets with random policies, a skewed mix of GET/PUT/DELETE over ~3 days,
 * including reads of objects never written or deleted and PUTs from regions not allowed. */
static world *world_make(uint64_t seed, size_t k)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 3;
    w->t.region_count = k;
    for (size_t r = 0; r < k; r++) {
        snprintf(w->t.names[r], sizeof w->t.names[r], "region%zu", r);
        w->t.storage_usd_per_gb_month[r] = 0.01 + 0.01 * (double)rng_below(&s, 100);
        for (size_t q = 0; q < k; q++) {
            w->t.egress_usd_per_gb[r][q] = r == q ? 0 : 0.01 * (double)(1 + rng_below(&s, 12));
            w->t.rtt_ms[r][q] = r == q ? 0 : 5 + (double)rng_below(&s, 250);
        }
    }
    plc_mask all = (plc_mask)((1u << k) - 1);
    for (int b = 0; b < 3; b++) {
        plc_bucket_policy *p = &w->policies[b];
        plc_mask allowed = 0;
        while (__builtin_popcount(allowed) < 1)
            allowed = (plc_mask)rng_next(&s) & all;
        p->allowed = b == 0 ? 0 : allowed;
        plc_mask eff = p->allowed ? p->allowed : all;
        p->pinned = rng_below(&s, 2) ? (plc_mask)rng_next(&s) & eff : 0;
        p->min_regions = 1 + (uint32_t)rng_below(&s, (uint64_t)__builtin_popcount(eff));
        static const uint32_t rpo[] = {0, 60, 600, 3600, 6 * 3600};
        p->rpo_seconds = rpo[rng_below(&s, TERN_ARRAY_LEN(rpo))];
        char err[128];
        assert_int_equal(plc_policy_check(&w->t, p, err, sizeof err), 0);
    }
    /* Objects sorted by bucket, as ternctl interns them bucket by bucket. */
    for (int i = 0; i < WORLD_OBJECTS; i++) {
        int b = i * 3 / WORLD_OBJECTS;
        snprintf(w->keys[i], sizeof w->keys[i], "k%d", i);
        w->objects[i] = (plc_sim_object){world_buckets[b], w->keys[i], (uint32_t)b};
    }
    int64_t ts = 0;
    for (int i = 0; i < WORLD_EVENTS; i++) {
        ts += (int64_t)rng_below(&s, 12 * 60 * 1000);
        uint32_t o = (uint32_t)rng_below(&s, WORLD_OBJECTS);
        if (rng_below(&s, 2)) o %= 6; /* a few hot objects */
        uint64_t roll = rng_below(&s, 100);
        plc_op op = roll < 70 ? PLC_GET : roll < 93 ? PLC_PUT : PLC_DELETE;
        uint32_t region = (uint32_t)rng_below(&s, k);
        if (rng_below(&s, 2)) region = o % (uint32_t)k; /* regional affinity */
        uint64_t bytes = op == PLC_DELETE ? 0 : 1 + rng_below(&s, 3000000000ull);
        w->events[i] = (plc_sim_event){ts, o, region, op, bytes};
    }
    w->trace = (plc_sim_trace){w->events, WORLD_EVENTS,    w->objects, WORLD_OBJECTS, w->policies,
                               3,         ts + 7 * HOUR_MS};
    return w;
}

static void check_constraints(plc_sim_policy first, plc_sim_policy last)
{
    for (uint64_t seed = 1; seed <= 12; seed++) {
        world *w = world_make(seed, 3 + seed % 3);
        double oracle = run_policy(&w->t, &w->trace, PLC_SIM_ORACLE, seed).total_usd;
        uint64_t gets = 0;
        for (size_t i = 0; i < w->trace.event_count; i++)
            gets += w->events[i].op == PLC_GET;
        for (int p = (int)first; p <= (int)last; p++) {
            plc_sim_options o = {.policy = (plc_sim_policy)p, .seed = seed};
            if (seed % 2 && p == PLC_SIM_LRU_CACHE) o.lru_capacity_bytes = 4000000000ull;
            if (seed % 2 && p == PLC_SIM_COUNTING) o.counting_window_ms = 10 * 60 * 1000;
            plc_sim_result r;
            char err[256] = "";
            int rc = plc_sim_run(&w->t, &w->trace, &o, &r, err, sizeof err);
            if (rc != 0)
                fail_msg("seed %llu %s: %d %s", (unsigned long long)seed,
                         plc_sim_policy_name((plc_sim_policy)p), rc, err);
            if (r.costs.constraint_violations != 0)
                fail_msg("seed %llu (%zu regions) %s: %llu constraint violations",
                         (unsigned long long)seed, w->t.region_count,
                         plc_sim_policy_name((plc_sim_policy)p),
                         (unsigned long long)r.costs.constraint_violations);
            assert_int_equal(r.events, WORLD_EVENTS);
            assert_int_equal(r.costs.reads + r.missed_reads, gets);
            assert_true(r.costs.local_reads <= r.costs.reads);
            /* The hindsight optimum is a lower bound of every feasible replay. */
            if (r.total_usd < oracle * (1 - 1e-9))
                fail_msg("seed %llu %s: %.12g is below the oracle's %.12g",
                         (unsigned long long)seed, plc_sim_policy_name((plc_sim_policy)p),
                         r.total_usd, oracle);
        }
        free(w);
    }
}

static void test_constraints_baselines_and_oracle(void **state)
{
    (void)state;
    check_constraints(PLC_SIM_FULL, PLC_SIM_COUNTING);
    check_constraints(PLC_SIM_ORACLE, PLC_SIM_ORACLE);
}

static void test_constraints_engine_policies(void **state)
{
    (void)state;
    check_constraints(PLC_SIM_BANDIT, PLC_SIM_BANDIT);
    check_constraints(PLC_SIM_EPSILON, PLC_SIM_EPSILON);
}

/* ---------------------------------------------------------------- 4. determinism */

typedef struct {
    int64_t ts[512];
    double usd[512];
    size_t count;
} samples;

static void on_sample(void *ctx, int64_t ts_ms, double total_usd)
{
    samples *s = ctx;
    if (s->count < TERN_ARRAY_LEN(s->ts)) {
        s->ts[s->count] = ts_ms;
        s->usd[s->count++] = total_usd;
    }
}

static void test_determinism(void **state)
{
    (void)state;
    world *w = world_make(77, 4);
    samples *s1 = calloc(1, sizeof *s1), *s2 = calloc(1, sizeof *s2);
    assert_non_null(s1);
    assert_non_null(s2);
    for (int p = 0; p < PLC_SIM_POLICY_COUNT; p++) {
        plc_sim_result r1, r2;
        memset(&r1, 0xa5, sizeof r1);
        memset(&r2, 0x5a, sizeof r2);
        memset(s1, 0, sizeof *s1);
        memset(s2, 0, sizeof *s2);
        char err[256];
        plc_sim_options o = {.policy = (plc_sim_policy)p,
                             .seed = 42,
                             .sample = on_sample,
                             .sample_interval_ms = HOUR_MS,
                             .ctx = s1};
        assert_int_equal(plc_sim_run(&w->t, &w->trace, &o, &r1, err, sizeof err), 0);
        o.ctx = s2;
        assert_int_equal(plc_sim_run(&w->t, &w->trace, &o, &r2, err, sizeof err), 0);
        if (memcmp(&r1, &r2, sizeof r1) != 0)
            fail_msg("%s: two runs with seed 42 differ (%.17g vs %.17g)",
                     plc_sim_policy_name((plc_sim_policy)p), r1.total_usd, r2.total_usd);
        /* The cumulative-cost samples too, and they end at the reported total. */
        assert_true(s1->count > 1);
        assert_int_equal(s1->count, s2->count);
        assert_memory_equal(s1->ts, s2->ts, s1->count * sizeof s1->ts[0]);
        assert_memory_equal(s1->usd, s2->usd, s1->count * sizeof s1->usd[0]);
        assert_int_equal(s1->ts[s1->count - 1], w->trace.end_ms);
        assert_true(s1->usd[s1->count - 1] == r1.total_usd);
        for (size_t i = 1; i < s1->count; i++) {
            assert_true(s1->ts[i] >= s1->ts[i - 1]);
            assert_true(s1->usd[i] >= s1->usd[i - 1] * (1 - 1e-12));
        }
    }
    free(s1);
    free(s2);
    free(w);
}

/* ---------------------------------------------------------------- 5. policy names */

static void test_policy_names(void **state)
{
    (void)state;
    static const char *const names[PLC_SIM_POLICY_COUNT] = {
        "bandit", "full", "home", "static-k", "lru-cache", "counting", "epsilon", "oracle"};
    for (int p = 0; p < PLC_SIM_POLICY_COUNT; p++) {
        const char *name = plc_sim_policy_name((plc_sim_policy)p);
        assert_non_null(name);
        assert_string_equal(name, names[p]);
        plc_sim_policy parsed = PLC_SIM_POLICY_COUNT;
        assert_int_equal(plc_sim_policy_parse(name, &parsed), 0);
        assert_int_equal(parsed, p);
    }
    assert_null(plc_sim_policy_name(PLC_SIM_POLICY_COUNT));
    assert_null(plc_sim_policy_name((plc_sim_policy)-1));
    static const char *const unknown[] = {"", "Full", "oracle ", "static_k", "lru", "random"};
    for (size_t i = 0; i < TERN_ARRAY_LEN(unknown); i++) {
        plc_sim_policy parsed = PLC_SIM_HOME;
        assert_int_equal(plc_sim_policy_parse(unknown[i], &parsed), TERN_EINVAL);
        assert_int_equal(parsed, PLC_SIM_HOME); /* untouched */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ledger_prices_home),
        cmocka_unit_test(test_ledger_prices_full),
        cmocka_unit_test(test_ledger_steps_by_hand),
        cmocka_unit_test(test_ledger_rejects_bad_steps),
        cmocka_unit_test(test_ledger_counts_violations),
        cmocka_unit_test(test_ledger_relays_within_allowed),
        cmocka_unit_test(test_oracle_deadline_after_reads),
        cmocka_unit_test(test_oracle_matches_brute_force),
        cmocka_unit_test(test_constraints_baselines_and_oracle),
        cmocka_unit_test(test_constraints_engine_policies),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_policy_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
