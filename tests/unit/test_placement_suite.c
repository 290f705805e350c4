/* The bandit against the baselines and the oracle on the synthetic scenarios (ratios with margins).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "ops.h"
#include "placement.h"
#include "ternctl_sim.h"

/*
 * Small versions of bench/placement's traces (300 objects, 30,000 events,
 * six regions at list prices, min_regions 2), so the suite runs in a second.
 * The margins are wide enough for any seed of the engine and narrow enough
 * that a bandit no better than caching or counting fails: on these traces
 * (measured when this test was written, engine seeds 1-3) the bandit costs
 * 0.43-0.66x the cheapest of full, home and counting, and 1.01-1.28x the
 * oracle; geometric means 1.19x the oracle and 0.43x full.
 */
#define MAX_X_BEST_BASELINE 0.85 /* bandit / min(full, home, counting) on every scenario */
#define MAX_X_ORACLE        1.40 /* bandit / oracle on every scenario */
#define MAX_X_ORACLE_GEO    1.25 /* ... as a geometric mean */
#define MAX_X_FULL_GEO      0.60 /* bandit / full as a geometric mean */

static const char topology_json[] =
    "{\"regions\": [{\"name\": \"us-east\", \"storage_usd_per_gb_month\": 0.018},"
    " {\"name\": \"us-west\", \"storage_usd_per_gb_month\": 0.020},"
    " {\"name\": \"eu-west\", \"storage_usd_per_gb_month\": 0.020},"
    " {\"name\": \"eu-central\", \"storage_usd_per_gb_month\": 0.023},"
    " {\"name\": \"ap-northeast\", \"storage_usd_per_gb_month\": 0.023},"
    " {\"name\": \"ap-southeast\", \"storage_usd_per_gb_month\": 0.020}],"
    " \"egress_usd_per_gb\": {"
    "  \"us-east\": {\"us-west\": 0.02, \"eu-west\": 0.05, \"eu-central\": 0.05,"
    "   \"ap-northeast\": 0.08, \"ap-southeast\": 0.08},"
    "  \"us-west\": {\"us-east\": 0.02, \"eu-west\": 0.05, \"eu-central\": 0.05,"
    "   \"ap-northeast\": 0.08, \"ap-southeast\": 0.08},"
    "  \"eu-west\": {\"us-east\": 0.05, \"us-west\": 0.05, \"eu-central\": 0.02,"
    "   \"ap-northeast\": 0.08, \"ap-southeast\": 0.08},"
    "  \"eu-central\": {\"us-east\": 0.05, \"us-west\": 0.05, \"eu-west\": 0.02,"
    "   \"ap-northeast\": 0.08, \"ap-southeast\": 0.08},"
    "  \"ap-northeast\": {\"us-east\": 0.09, \"us-west\": 0.09, \"eu-west\": 0.09,"
    "   \"eu-central\": 0.09, \"ap-southeast\": 0.02},"
    "  \"ap-southeast\": {\"us-east\": 0.09, \"us-west\": 0.09, \"eu-west\": 0.09,"
    "   \"eu-central\": 0.09, \"ap-northeast\": 0.02}},"
    " \"rtt_ms\": {"
    "  \"us-east\": {\"us-west\": 65, \"eu-west\": 70, \"eu-central\": 90, \"ap-northeast\": 150,"
    "   \"ap-southeast\": 215},"
    "  \"us-west\": {\"us-east\": 65, \"eu-west\": 130, \"eu-central\": 145, \"ap-northeast\": 100,"
    "   \"ap-southeast\": 165},"
    "  \"eu-west\": {\"us-east\": 70, \"us-west\": 130, \"eu-central\": 25, \"ap-northeast\": 210,"
    "   \"ap-southeast\": 170},"
    "  \"eu-central\": {\"us-east\": 90, \"us-west\": 145, \"eu-west\": 25, \"ap-northeast\": 225,"
    "   \"ap-southeast\": 160},"
    "  \"ap-northeast\": {\"us-east\": 150, \"us-west\": 100, \"eu-west\": 210, \"eu-central\": "
    "225,"
    "   \"ap-southeast\": 70},"
    "  \"ap-southeast\": {\"us-east\": 215, \"us-west\": 165, \"eu-west\": 170, \"eu-central\": "
    "160,"
    "   \"ap-northeast\": 70}},"
    " \"buckets\": {\"*\": {\"min_regions\": 2}}}";

static const char *const scenarios[] = {"stable-skew", "follow-the-sun", "flash-crowd", "drift",
                                        "write-heavy"};

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/tern-plc-suite-XXXXXX");
    if (mkdtemp(dir) == NULL) return -1;
    char path[128];
    snprintf(path, sizeof path, "%s/topology.json", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) return -1;
    fputs(topology_json, f);
    return fclose(f);
}

static int teardown(void **state)
{
    (void)state;
    char path[160];
    snprintf(path, sizeof path, "%s/topology.json", dir);
    unlink(path);
    for (size_t i = 0; i < TERN_ARRAY_LEN(scenarios); i++) {
        snprintf(path, sizeof path, "%s/%s.csv", dir, scenarios[i]);
        unlink(path);
    }
    return rmdir(dir);
}

/* Writes the scenario's trace with `ternctl sim gen` and reads it with the topology. */
static void load(const char *scenario, ops__sim_input *in)
{
    char trace[128], topo[128];
    snprintf(trace, sizeof trace, "%s/%s.csv", dir, scenario);
    snprintf(topo, sizeof topo, "%s/topology.json", dir);
    char *argv[] = {"ternctl",
                    "sim",
                    "gen",
                    "--seed",
                    "7",
                    "--scenario",
                    (char *)scenario,
                    "--regions",
                    "us-east,us-west,eu-west,eu-central,ap-northeast,ap-southeast",
                    "--objects",
                    "300",
                    "--events",
                    "30000",
                    "--out",
                    trace};
    FILE *null = fopen("/dev/null", "w");
    assert_non_null(null);
    assert_int_equal(ops_main((int)TERN_ARRAY_LEN(argv), argv, null, stderr), 0);
    fclose(null);
    memset(in, 0, sizeof *in);
    char why[256];
    assert_int_equal(ops__sim_read_topology(in, topo, why, sizeof why), 0);
    assert_int_equal(ops__sim_read_trace(in, trace, why, sizeof why), 0);
}

static double run(const ops__sim_input *in, plc_sim_policy policy, uint64_t seed)
{
    plc_sim_options o = {.policy = policy, .seed = seed};
    plc_sim_result r;
    char why[256];
    assert_int_equal(plc_sim_run(&in->topology, &in->trace, &o, &r, why, sizeof why), 0);
    assert_int_equal(r.costs.constraint_violations, 0);
    assert_true(r.total_usd > 0);
    return r.total_usd;
}

static void test_bandit_beats_baselines(void **state)
{
    (void)state;
    double log_x_oracle = 0, log_x_full = 0;
    for (size_t s = 0; s < TERN_ARRAY_LEN(scenarios); s++) {
        ops__sim_input in;
        load(scenarios[s], &in);
        double full = run(&in, PLC_SIM_FULL, 1);
        double home = run(&in, PLC_SIM_HOME, 1);
        double counting = run(&in, PLC_SIM_COUNTING, 1);
        double oracle = run(&in, PLC_SIM_ORACLE, 1);
        double best = TERN_MIN(full, TERN_MIN(home, counting));
        for (uint64_t seed = 1; seed <= 3; seed++) {
            double bandit = run(&in, PLC_SIM_BANDIT, seed);
            fprintf(stderr,
                    "%-15s seed %llu: bandit %.6g = %.4fx oracle, %.4fx full, %.4fx the best of "
                    "full/home/counting\n",
                    scenarios[s], (unsigned long long)seed, bandit, bandit / oracle, bandit / full,
                    bandit / best);
            /* Nothing can beat the hindsight optimum under the same model. */
            assert_true(bandit >= oracle * (1 - 1e-9));
            assert_true(bandit <= MAX_X_BEST_BASELINE * best);
            assert_true(bandit <= MAX_X_ORACLE * oracle);
            if (seed == 1) {
                log_x_oracle += log(bandit / oracle);
                log_x_full += log(bandit / full);
            }
        }
        ops__sim_input_free(&in);
    }
    double n = (double)TERN_ARRAY_LEN(scenarios);
    fprintf(stderr, "geometric means: %.4fx oracle, %.4fx full\n", exp(log_x_oracle / n),
            exp(log_x_full / n));
    assert_true(exp(log_x_oracle / n) <= MAX_X_ORACLE_GEO);
    assert_true(exp(log_x_full / n) <= MAX_X_FULL_GEO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bandit_beats_baselines),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
