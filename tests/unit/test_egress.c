/* Egress accounting tests: exact counts under threads, dollars, the counterfactual, text, JSON. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "node.h"
#include "placement.h"

#define GB 1000000000ull

/* Relative tolerance for dollar sums: a handful of roundings of values near 1. */
#define USD_EPSILON 1e-12

static void assert_usd(double actual, double expected)
{
    if (fabs(actual - expected) > USD_EPSILON * fmax(1.0, fabs(expected)))
        fail_msg("%.17g != %.17g", actual, expected);
}

/*
 * Three regions, egress in USD/GB [from][to]:
 *           a     b     c
 *     a     -   0.02  0.09
 *     b   0.02    -   0.05
 *     c   0.09  0.08    -
 * Full replication per GB, by hand: from a, a->b then b->c = 0.07 (direct: 0.11); from b,
 * b->a and b->c = 0.07; from c, c->b then b->a = 0.10 (direct: 0.17; c->a then a->b: 0.11).
 */
static plc_topology three_regions(void)
{
    plc_topology t = {.region_count = 3};
    strcpy(t.names[0], "a");
    strcpy(t.names[1], "b");
    strcpy(t.names[2], "c");
    static const double prices[3][3] = {{0, 0.02, 0.09}, {0.02, 0, 0.05}, {0.09, 0.08, 0}};
    for (int from = 0; from < 3; from++)
        for (int to = 0; to < 3; to++)
            t.egress_usd_per_gb[from][to] = prices[from][to];
    return t;
}

static node_egress *make(const plc_topology *t, uint32_t local)
{
    node_egress *e = NULL;
    char errmsg[256] = "";
    assert_int_equal(node_egress_new(t, local, &e, errmsg, sizeof errmsg), 0);
    assert_non_null(e);
    return e;
}

static void test_dollars_by_pair_and_cause(void **state)
{
    (void)state;
    plc_topology t = three_regions();
    node_egress *e = make(&t, 0);
    node_egress_record(e, 0, 1, NODE_EGRESS_REPLICATION, 2 * GB);    /* 2 x 0.02 = 0.04 */
    node_egress_record(e, 0, 1, NODE_EGRESS_REPLICATION, GB / 2);    /* 0.5 x 0.02 = 0.01 */
    node_egress_record(e, 1, 2, NODE_EGRESS_REMOTE_READ, GB);        /* 0.05 */
    node_egress_record(e, 2, 0, NODE_EGRESS_REPAIR, 500000000);      /* 0.5 x 0.09 = 0.045 */
    node_egress_record(e, 2, 1, NODE_EGRESS_REMOTE_READ, 250000000); /* 0.25 x 0.08 = 0.02 */
    node_egress_record(e, 1, 1, NODE_EGRESS_REPAIR, 7 * GB);         /* within b: not egress */
    node_egress_totals s;
    node_egress_snapshot(e, &s);
    assert_int_equal(s.region_count, 3);
    assert_string_equal(s.region_names[2], "c");
    assert_int_equal(s.pairs[0][1][NODE_EGRESS_REPLICATION].bytes, 2500000000ull);
    assert_usd(s.pairs[0][1][NODE_EGRESS_REPLICATION].usd, 0.05);
    assert_usd(s.pairs[1][2][NODE_EGRESS_REMOTE_READ].usd, 0.05);
    assert_usd(s.pairs[2][0][NODE_EGRESS_REPAIR].usd, 0.045);
    assert_usd(s.pairs[2][1][NODE_EGRESS_REMOTE_READ].usd, 0.02);
    assert_int_equal(s.pairs[1][1][NODE_EGRESS_REPAIR].bytes, 0);
    assert_int_equal(s.pairs[1][0][NODE_EGRESS_REPLICATION].bytes, 0);
    assert_int_equal(s.by_cause[NODE_EGRESS_REPLICATION].bytes, 2500000000ull);
    assert_usd(s.by_cause[NODE_EGRESS_REPLICATION].usd, 0.05);
    assert_int_equal(s.by_cause[NODE_EGRESS_REMOTE_READ].bytes, 1250000000ull);
    assert_usd(s.by_cause[NODE_EGRESS_REMOTE_READ].usd, 0.07);
    assert_int_equal(s.by_cause[NODE_EGRESS_REPAIR].bytes, 500000000ull);
    assert_usd(s.by_cause[NODE_EGRESS_REPAIR].usd, 0.045);
    assert_int_equal(s.total.bytes, 4250000000ull);
    assert_usd(s.total.usd, 0.165);
    /* Nothing written: no counterfactual, and the ratio is 0 rather than a division by 0. */
    assert_true(s.full_replication_usd == 0);
    assert_true(s.full_replication_ratio == 0);
    node_egress_free(e);
}

static void test_counterfactual_three_regions(void **state)
{
    (void)state;
    plc_topology t = three_regions();
    node_egress *e = make(&t, 0);
    node_egress_totals s;
    node_egress_snapshot(e, &s);
    assert_usd(s.full_replication_usd_per_gb[0], 0.07);
    assert_usd(s.full_replication_usd_per_gb[1], 0.07);
    assert_usd(s.full_replication_usd_per_gb[2], 0.10);
    /* The same price as the simulator's copy price c({o}, all) (placement's relay table). */
    plc_relay_table *relays = NULL;
    assert_int_equal(plc_relay_table_new(&t, 7, &relays), 0);
    for (uint32_t o = 0; o < 3; o++)
        assert_usd(s.full_replication_usd_per_gb[o],
                   plc_relay_usd_per_byte(relays, 1u << o, 7) * PLC_BYTES_PER_GB);
    plc_relay_table_free(relays);

    node_egress_record_write(e, 0, GB);     /* 0.07 */
    node_egress_record_write(e, 2, 2 * GB); /* 0.20 */
    node_egress_record_write(e, 2, 0);      /* an empty object: counted, free */
    /* What a placement did instead: a's write went to b only, c's to nobody; b read 1 GB of
     * c's object remotely. */
    node_egress_record(e, 0, 1, NODE_EGRESS_REPLICATION, GB); /* 0.02 */
    node_egress_record(e, 2, 1, NODE_EGRESS_REMOTE_READ, GB); /* 0.08 */
    node_egress_record_read(e, 1, GB);
    node_egress_record_read(e, 1, 2 * GB);
    node_egress_record_read(e, 0, GB);
    node_egress_snapshot(e, &s);
    assert_int_equal(s.writes[2], 2);
    assert_int_equal(s.written_bytes[2], 2 * GB);
    assert_int_equal(s.write_count, 3);
    assert_int_equal(s.written_bytes_total, 3 * GB);
    assert_int_equal(s.read_count, 3);
    assert_int_equal(s.reads[1], 2);
    assert_int_equal(s.read_bytes_total, 4 * GB);
    assert_usd(s.full_replication_usd, 0.27);
    assert_usd(s.total.usd, 0.10);
    assert_usd(s.full_replication_ratio, 0.10 / 0.27);
    assert_usd(s.full_replication_saving_usd, 0.17);
    assert_usd(s.local_read_bytes_ratio, 0.75); /* 1 GB of 4 crossed regions */
    node_egress_free(e);
}

/* With one region there is nothing to replicate to: every counterfactual is 0. */
static void test_single_region_and_bad_topologies(void **state)
{
    (void)state;
    plc_topology t = {.region_count = 1};
    strcpy(t.names[0], "solo");
    node_egress *e = make(&t, 0);
    node_egress_record_write(e, 0, 5 * GB);
    node_egress_totals s;
    node_egress_snapshot(e, &s);
    assert_true(s.full_replication_usd == 0);
    assert_true(s.full_replication_ratio == 0);
    assert_true(s.local_read_bytes_ratio == 1);
    node_egress_free(e);

    char errmsg[256];
    plc_topology bad = three_regions();
    assert_int_equal(node_egress_new(&bad, 3, &e, errmsg, sizeof errmsg), TERN_EINVAL);
    assert_non_null(strstr(errmsg, "local region 3"));
    bad.egress_usd_per_gb[2][1] = -0.01;
    assert_int_equal(node_egress_new(&bad, 0, &e, errmsg, sizeof errmsg), TERN_EINVAL);
    assert_string_equal(errmsg, "egress: the price from c to b is not a non-negative number");
    bad.egress_usd_per_gb[2][1] = INFINITY;
    assert_int_equal(node_egress_new(&bad, 0, &e, errmsg, sizeof errmsg), TERN_EINVAL);
    bad = three_regions();
    bad.region_count = 0;
    assert_int_equal(node_egress_new(&bad, 0, &e, errmsg, sizeof errmsg), TERN_EINVAL);
    bad.region_count = PLC_REGIONS_MAX + 1;
    assert_int_equal(node_egress_new(&bad, 0, &e, errmsg, sizeof errmsg), TERN_EINVAL);
}

#define THREADS            8
#define RECORDS_PER_THREAD 200000

/* Every thread records the same deterministic sequence, so the totals are THREADS times the
 * sequence's sums: exact, and only right if no increment was lost. */
static void *worker(void *p)
{
    node_egress *e = p;
    for (uint32_t i = 0; i < RECORDS_PER_THREAD; i++) {
        uint32_t from = i % 3, to = (i / 3) % 3;
        node_egress_record(e, from, to, (node_egress_cause)(i % NODE_EGRESS_CAUSE_COUNT),
                           i % 1000 + 1);
        if (i % 7 == 0) node_egress_record_write(e, from, i % 100);
        if (i % 5 == 0) node_egress_record_read(e, to, 3);
    }
    return NULL;
}

static void test_threads_exact_totals(void **state)
{
    (void)state;
    plc_topology t = three_regions();
    node_egress *e = make(&t, 1);
    uint64_t expect_pairs[3][3][NODE_EGRESS_CAUSE_COUNT] = {{{0}}};
    uint64_t expect_written[3] = {0}, expect_writes = 0, expect_reads = 0;
    for (uint32_t i = 0; i < RECORDS_PER_THREAD; i++) {
        uint32_t from = i % 3, to = (i / 3) % 3;
        if (from != to) expect_pairs[from][to][i % NODE_EGRESS_CAUSE_COUNT] += i % 1000 + 1;
        if (i % 7 == 0) {
            expect_written[from] += i % 100;
            expect_writes++;
        }
        if (i % 5 == 0) expect_reads++;
    }
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, worker, e), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    node_egress_totals s;
    node_egress_snapshot(e, &s);
    uint64_t total = 0;
    for (int f = 0; f < 3; f++)
        for (int to = 0; to < 3; to++)
            for (int c = 0; c < NODE_EGRESS_CAUSE_COUNT; c++) {
                assert_int_equal(s.pairs[f][to][c].bytes, THREADS * expect_pairs[f][to][c]);
                total += THREADS * expect_pairs[f][to][c];
            }
    assert_int_equal(s.total.bytes, total);
    for (int r = 0; r < 3; r++)
        assert_int_equal(s.written_bytes[r], THREADS * expect_written[r]);
    assert_int_equal(s.write_count, THREADS * expect_writes);
    assert_int_equal(s.read_count, THREADS * expect_reads);
    assert_int_equal(s.read_bytes_total, THREADS * expect_reads * 3);
    node_egress_free(e);
}

/* Prices that are binary fractions and whole GBs keep every dollar exact, so the text is. */
static plc_topology two_regions(void)
{
    plc_topology t = {.region_count = 2};
    strcpy(t.names[0], "us-east");
    strcpy(t.names[1], "eu \"west\"");
    t.egress_usd_per_gb[0][1] = 0.25;
    t.egress_usd_per_gb[1][0] = 0.5;
    return t;
}

#define PROMTOOL "/usr/bin/promtool"

/* `promtool check metrics` (lint included) on the text, when Debian's prometheus is installed
 * (scripts/deps.sh installs it); its findings are printed on failure. */
static void assert_promtool_accepts(const char *text)
{
    if (access(PROMTOOL, X_OK) != 0) return;
    FILE *p = popen(PROMTOOL " check metrics 2>&1", "w");
    assert_non_null(p);
    fputs(text, p);
    int status = pclose(p);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_prometheus_text(void **state)
{
    (void)state;
    plc_topology t = two_regions();
    node_egress *e = make(&t, 0);
    node_egress_record(e, 0, 1, NODE_EGRESS_REPLICATION, 2 * GB);
    node_egress_record(e, 1, 0, NODE_EGRESS_REMOTE_READ, 1000);
    node_egress_record_write(e, 0, 4 * GB);
    node_egress_record_read(e, 0, 1000);
    node_egress_totals s;
    node_egress_snapshot(e, &s);
    char *text = strdup("# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n");
    size_t len = strlen(text);
    assert_int_equal(node_egress_metrics_append(&s, &text, &len), 0);
    assert_int_equal(len, strlen(text));
    static const char expected[] =
        "# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n"
        "# HELP tern_egress_bytes_total Bytes sent from one region to another, by cause.\n"
        "# TYPE tern_egress_bytes_total counter\n"
        "tern_egress_bytes_total{from=\"us-east\",to=\"eu \\\"west\\\"\",cause=\"replication\"} "
        "2000000000\n"
        "tern_egress_bytes_total{from=\"us-east\",to=\"eu \\\"west\\\"\",cause=\"remote_read\"} 0\n"
        "tern_egress_bytes_total{from=\"us-east\",to=\"eu \\\"west\\\"\",cause=\"repair\"} 0\n"
        "tern_egress_bytes_total{from=\"eu \\\"west\\\"\",to=\"us-east\",cause=\"replication\"} 0\n"
        "tern_egress_bytes_total{from=\"eu \\\"west\\\"\",to=\"us-east\",cause=\"remote_read\"} "
        "1000\n"
        "tern_egress_bytes_total{from=\"eu \\\"west\\\"\",to=\"us-east\",cause=\"repair\"} 0\n"
        "# HELP tern_egress_usd_total Egress dollars from one region to another, by cause (bytes "
        "x the topology's price per GB).\n"
        "# TYPE tern_egress_usd_total counter\n"
        "tern_egress_usd_total{from=\"us-east\",to=\"eu \\\"west\\\"\",cause=\"replication\"} 0.5\n"
        "tern_egress_usd_total{from=\"us-east\",to=\"eu \\\"west\\\"\",cause=\"remote_read\"} 0\n"
        "tern_egress_usd_total{from=\"us-east\",to=\"eu \\\"west\\\"\",cause=\"repair\"} 0\n"
        "tern_egress_usd_total{from=\"eu \\\"west\\\"\",to=\"us-east\",cause=\"replication\"} 0\n"
        "tern_egress_usd_total{from=\"eu \\\"west\\\"\",to=\"us-east\",cause=\"remote_read\"} "
        "5e-07\n"
        "tern_egress_usd_total{from=\"eu \\\"west\\\"\",to=\"us-east\",cause=\"repair\"} 0\n"
        "# HELP tern_egress_written_bytes_total Bytes of client writes by the region they "
        "arrived in.\n"
        "# TYPE tern_egress_written_bytes_total counter\n"
        "tern_egress_written_bytes_total{region=\"us-east\"} 4000000000\n"
        "tern_egress_written_bytes_total{region=\"eu \\\"west\\\"\"} 0\n"
        "# HELP tern_egress_read_bytes_total Bytes of client reads by the region they were "
        "served to.\n"
        "# TYPE tern_egress_read_bytes_total counter\n"
        "tern_egress_read_bytes_total{region=\"us-east\"} 1000\n"
        "tern_egress_read_bytes_total{region=\"eu \\\"west\\\"\"} 0\n"
        "# HELP tern_egress_full_replication_usd_total Egress dollars full replication would "
        "have paid for the same writes (cheapest copy tree from each write's origin to every "
        "other region).\n"
        "# TYPE tern_egress_full_replication_usd_total counter\n"
        "tern_egress_full_replication_usd_total 1\n"
        "# HELP tern_egress_full_replication_ratio Egress dollars paid over what full "
        "replication would have paid (0 before any write).\n"
        "# TYPE tern_egress_full_replication_ratio gauge\n"
        "tern_egress_full_replication_ratio 0.5000005\n";
    assert_string_equal(text, expected);
    assert_promtool_accepts(text);
    free(text);

    /* Appending to nothing works too. */
    text = NULL;
    len = 0;
    assert_int_equal(node_egress_metrics_append(&s, &text, &len), 0);
    assert_string_equal(text, expected + strlen("# HELP x_total X.\n# TYPE x_total counter\n"
                                                "x_total 1\n"));
    free(text);
    node_egress_free(e);
}

static void test_json(void **state)
{
    (void)state;
    plc_topology t = three_regions();
    node_egress *e = make(&t, 2);
    node_egress_record(e, 0, 1, NODE_EGRESS_REPLICATION, GB);
    node_egress_record(e, 2, 1, NODE_EGRESS_REMOTE_READ, GB);
    node_egress_record(e, 2, 0, NODE_EGRESS_REPAIR, GB / 2);
    node_egress_record_write(e, 0, GB);
    node_egress_record_write(e, 2, 2 * GB);
    node_egress_record_read(e, 1, 4 * GB);
    node_egress_totals s;
    node_egress_snapshot(e, &s);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(node_egress_json(&s, &text, &len), 0);
    assert_int_equal(len, strlen(text));
    json_error_t error;
    json_t *root = json_loads(text, 0, &error);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "local_region")), "c");

    json_t *regions = json_object_get(root, "regions");
    assert_int_equal(json_array_size(regions), 3);
    json_t *c = json_array_get(regions, 2);
    assert_string_equal(json_string_value(json_object_get(c, "name")), "c");
    assert_int_equal(json_integer_value(json_object_get(c, "writes")), 1);
    assert_int_equal(json_integer_value(json_object_get(c, "written_bytes")), 2 * GB);
    assert_usd(json_real_value(json_object_get(c, "full_replication_usd_per_gb")), 0.10);
    json_t *b = json_array_get(regions, 1);
    assert_int_equal(json_integer_value(json_object_get(b, "reads")), 1);
    assert_int_equal(json_integer_value(json_object_get(b, "read_bytes")), 4 * GB);

    /* Only the flows that carried bytes, in (from, to, cause) order. */
    json_t *flows = json_object_get(root, "flows");
    assert_int_equal(json_array_size(flows), 3);
    static const struct {
        const char *from, *to, *cause;
        uint64_t bytes;
        double usd, usd_per_gb;
    } expected[] = {
        {"a", "b", "replication", GB, 0.02, 0.02},
        {"c", "a", "repair", GB / 2, 0.045, 0.09},
        {"c", "b", "remote_read", GB, 0.08, 0.08},
    };
    for (size_t i = 0; i < 3; i++) {
        json_t *f = json_array_get(flows, i);
        assert_string_equal(json_string_value(json_object_get(f, "from")), expected[i].from);
        assert_string_equal(json_string_value(json_object_get(f, "to")), expected[i].to);
        assert_string_equal(json_string_value(json_object_get(f, "cause")), expected[i].cause);
        assert_int_equal(json_integer_value(json_object_get(f, "bytes")), expected[i].bytes);
        assert_usd(json_real_value(json_object_get(f, "usd")), expected[i].usd);
        assert_usd(json_real_value(json_object_get(f, "usd_per_gb")), expected[i].usd_per_gb);
    }

    json_t *by_cause = json_object_get(root, "by_cause");
    assert_int_equal(json_object_size(by_cause), 3);
    assert_usd(json_real_value(json_object_get(json_object_get(by_cause, "repair"), "usd")), 0.045);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(by_cause, "remote_read"), "bytes")), GB);
    json_t *total = json_object_get(root, "total");
    assert_int_equal(json_integer_value(json_object_get(total, "bytes")), 2500000000ull);
    assert_usd(json_real_value(json_object_get(total, "usd")), 0.145);

    json_t *reads = json_object_get(root, "reads");
    assert_int_equal(json_integer_value(json_object_get(reads, "count")), 1);
    assert_usd(json_real_value(json_object_get(reads, "local_bytes_ratio")), 0.75);

    json_t *full = json_object_get(root, "full_replication");
    assert_usd(json_real_value(json_object_get(full, "usd")), 0.27); /* 0.07 + 2 x 0.10 */
    assert_usd(json_real_value(json_object_get(full, "ratio")), 0.145 / 0.27);
    assert_usd(json_real_value(json_object_get(full, "saving_usd")), 0.125);
    assert_int_equal(json_integer_value(json_object_get(full, "writes")), 2);
    assert_int_equal(json_integer_value(json_object_get(full, "written_bytes")), 3 * GB);
    assert_true(json_real_value(json_object_get(full, "local_read_bytes_ratio")) == 1.0);
    json_decref(root);
    free(text);

    /* A node that has seen nothing still answers a complete document. */
    node_egress_free(e);
    e = make(&t, 0);
    node_egress_snapshot(e, &s);
    assert_int_equal(node_egress_json(&s, &text, &len), 0);
    root = json_loads(text, 0, &error);
    assert_non_null(root);
    assert_int_equal(json_array_size(json_object_get(root, "flows")), 0);
    assert_true(
        json_real_value(json_object_get(json_object_get(root, "full_replication"), "ratio")) == 0);
    json_decref(root);
    free(text);
    node_egress_free(e);
}

static void test_cause_names(void **state)
{
    (void)state;
    assert_string_equal(node_egress_cause_name(NODE_EGRESS_REPLICATION), "replication");
    assert_string_equal(node_egress_cause_name(NODE_EGRESS_REMOTE_READ), "remote_read");
    assert_string_equal(node_egress_cause_name(NODE_EGRESS_REPAIR), "repair");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dollars_by_pair_and_cause),
        cmocka_unit_test(test_counterfactual_three_regions),
        cmocka_unit_test(test_single_region_and_bad_topologies),
        cmocka_unit_test(test_threads_exact_totals),
        cmocka_unit_test(test_prometheus_text),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_cause_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
