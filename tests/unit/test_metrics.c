/* Metrics unit tests: exact exposition text, histograms, misuse, concurrency and promtool. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "node.h"

static char *render(node_metrics *m)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(node_metrics_render(m, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void test_exact_text(void **state)
{
    (void)state;
    node_metrics *m = node_metrics_new();
    assert_non_null(m);
    static const double bounds[] = {0.25, 0.5, 1};
    node_counter *get =
        node_metrics_counter(m, "tern_requests_total", "Requests served.", "op=\"GetObject\"");
    node_gauge *inflight = node_metrics_gauge(m, "tern_inflight_requests", "In flight.", NULL);
    node_counter *put = node_metrics_counter(m, "tern_requests_total", "ignored: first help wins",
                                             "op=\"PutObject\"");
    node_histogram *latency = node_metrics_histogram(
        m, "tern_latency_seconds", "Latency.\nSecond line, with a \\ backslash.", NULL, bounds, 3);
    node_counter *unlabeled = node_metrics_counter(m, "tern_errors_total", "Errors.", "");
    assert_non_null(get);
    assert_non_null(put);
    assert_non_null(inflight);
    assert_non_null(latency);
    assert_non_null(unlabeled);
    node_counter_add(get, 3);
    node_counter_add(put, 1);
    node_gauge_set(inflight, 2.5);
    node_histogram_observe(latency, 0.125);
    node_histogram_observe(latency, 0.25); /* on a bound: le is "less than or equal" */
    node_histogram_observe(latency, 0.375);
    node_histogram_observe(latency, 2);
    char *text = render(m);
    assert_string_equal(text, "# HELP tern_requests_total Requests served.\n"
                              "# TYPE tern_requests_total counter\n"
                              "tern_requests_total{op=\"GetObject\"} 3\n"
                              "tern_requests_total{op=\"PutObject\"} 1\n"
                              "# HELP tern_inflight_requests In flight.\n"
                              "# TYPE tern_inflight_requests gauge\n"
                              "tern_inflight_requests 2.5\n"
                              "# HELP tern_latency_seconds Latency.\\nSecond line, with a \\\\ "
                              "backslash.\n"
                              "# TYPE tern_latency_seconds histogram\n"
                              "tern_latency_seconds_bucket{le=\"0.25\"} 2\n"
                              "tern_latency_seconds_bucket{le=\"0.5\"} 3\n"
                              "tern_latency_seconds_bucket{le=\"1\"} 3\n"
                              "tern_latency_seconds_bucket{le=\"+Inf\"} 4\n"
                              "tern_latency_seconds_sum 2.75\n"
                              "tern_latency_seconds_count 4\n"
                              "# HELP tern_errors_total Errors.\n"
                              "# TYPE tern_errors_total counter\n"
                              "tern_errors_total 0\n");
    free(text);
    node_metrics_free(m);
}

static void test_histogram_labels_and_buckets(void **state)
{
    (void)state;
    node_metrics *m = node_metrics_new();
    static const double bounds[] = {1024, 65536, 1048576};
    node_histogram *h = node_metrics_histogram(m, "tern_object_size_bytes", "Object sizes.",
                                               "op=\"PutObject\",region=\"eu\"", bounds, 3);
    assert_non_null(h);
    static const double values[] = {0, 1, 1024, 1025, 65536, 70000, 1048576, 1e9, 5e9};
    for (size_t i = 0; i < TERN_ARRAY_LEN(values); i++)
        node_histogram_observe(h, values[i]);
    char *text = render(m);
    const char *expected_rows[] = {
        "tern_object_size_bytes_bucket{op=\"PutObject\",region=\"eu\",le=\"1024\"} 3\n",
        "tern_object_size_bytes_bucket{op=\"PutObject\",region=\"eu\",le=\"65536\"} 5\n",
        "tern_object_size_bytes_bucket{op=\"PutObject\",region=\"eu\",le=\"1048576\"} 7\n",
        "tern_object_size_bytes_bucket{op=\"PutObject\",region=\"eu\",le=\"+Inf\"} 9\n",
        "tern_object_size_bytes_sum{op=\"PutObject\",region=\"eu\"} 6001186162\n",
        "tern_object_size_bytes_count{op=\"PutObject\",region=\"eu\"} 9\n",
    };
    const char *at = text;
    for (size_t i = 0; i < TERN_ARRAY_LEN(expected_rows); i++) {
        const char *row = strstr(at, expected_rows[i]);
        if (row == NULL) print_error("missing in order: %s in\n%s", expected_rows[i], text);
        assert_non_null(row);
        at = row + strlen(expected_rows[i]);
    }
    free(text);

    /* A histogram without bounds has only the +Inf bucket. */
    node_histogram *only_inf =
        node_metrics_histogram(m, "tern_wait_seconds", "Waits.", NULL, NULL, 0);
    assert_non_null(only_inf);
    node_histogram_observe(only_inf, 0.5);
    text = render(m);
    assert_non_null(strstr(text, "tern_wait_seconds_bucket{le=\"+Inf\"} 1\n"
                                 "tern_wait_seconds_sum 0.5\n"
                                 "tern_wait_seconds_count 1\n"));
    free(text);
    node_metrics_free(m);
}

static void test_values(void **state)
{
    (void)state;
    node_metrics *m = node_metrics_new();
    static const struct {
        const char *labels;
        double value;
        const char *text;
    } cases[] = {
        {"v=\"a\"", 0.1, "0.1"},
        {"v=\"b\"", -3, "-3"},
        {"v=\"c\"", 1e-9, "1e-09"},
        {"v=\"d\"", NAN, "NaN"},
        {"v=\"e\"", INFINITY, "+Inf"},
        {"v=\"f\"", -INFINITY, "-Inf"},
        {"v=\"g\"", 1.0 / 3.0, "0.33333333333333331"},
        {"v=\"h\"", 1e21, "1e+21"},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++)
        node_gauge_set(node_metrics_gauge(m, "tern_value", "Values.", cases[i].labels),
                       cases[i].value);
    node_counter_add(node_metrics_counter(m, "tern_big_total", "Big.", NULL), UINT64_MAX);
    char *text = render(m);
    char row[128];
    for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
        snprintf(row, sizeof row, "tern_value{%s} %s\n", cases[i].labels, cases[i].text);
        if (strstr(text, row) == NULL) print_error("missing %s in\n%s", row, text);
        assert_non_null(strstr(text, row));
    }
    assert_non_null(strstr(text, "tern_big_total 18446744073709551615\n"));
    free(text);
    node_metrics_free(m);
}

static void test_lookup_and_misuse(void **state)
{
    (void)state;
    node_metrics *m = node_metrics_new();
    static const double bounds[] = {1, 2};
    static const double other_bounds[] = {1, 3};
    static const double descending[] = {2, 1};
    node_counter *c = node_metrics_counter(m, "tern_x_total", "X.", "a=\"1\"");
    assert_non_null(c);
    assert_ptr_equal(node_metrics_counter(m, "tern_x_total", "X.", "a=\"1\""), c);
    assert_ptr_not_equal(node_metrics_counter(m, "tern_x_total", "X.", "a=\"2\""), c);
    /* NULL and "" are both "no labels": one series. */
    assert_ptr_equal(node_metrics_counter(m, "tern_y_total", "Y.", NULL),
                     node_metrics_counter(m, "tern_y_total", "Y.", ""));
    /* One name, one type. */
    assert_null(node_metrics_gauge(m, "tern_x_total", "X.", "a=\"1\""));
    assert_null(node_metrics_histogram(m, "tern_x_total", "X.", NULL, bounds, 2));
    node_histogram *h = node_metrics_histogram(m, "tern_h_seconds", "H.", NULL, bounds, 2);
    assert_non_null(h);
    assert_ptr_equal(node_metrics_histogram(m, "tern_h_seconds", "H.", NULL, bounds, 2), h);
    assert_non_null(node_metrics_histogram(m, "tern_h_seconds", "H.", "b=\"1\"", bounds, 2));
    assert_null(node_metrics_histogram(m, "tern_h_seconds", "H.", "b=\"2\"", other_bounds, 2));
    assert_null(node_metrics_histogram(m, "tern_h_seconds", "H.", "b=\"2\"", bounds, 1));
    assert_null(node_metrics_counter(m, "tern_h_seconds", "H.", NULL));
    /* Malformed names, labels and bounds. */
    assert_null(node_metrics_counter(m, "", "E.", NULL));
    assert_null(node_metrics_counter(m, "9lives_total", "E.", NULL));
    assert_null(node_metrics_counter(m, "tern-dash_total", "E.", NULL));
    assert_null(node_metrics_counter(m, "tern_l_total", "E.", "a=1"));
    assert_null(node_metrics_counter(m, "tern_l_total", "E.", "a=\"1\","));
    assert_null(node_metrics_counter(m, "tern_l_total", "E.", "a=\"1\" b=\"2\""));
    assert_null(node_metrics_counter(m, "tern_l_total", "E.", "a=\"new\nline\""));
    assert_null(node_metrics_counter(m, "tern_l_total", "E.", "a=\"bad\\escape\""));
    assert_null(node_metrics_counter(m, "tern_l_total", "E.", "=\"x\""));
    assert_non_null(node_metrics_counter(m, "tern_l_total", "E.", "a=\"q\\\"uote\\\\\",b_2=\"\""));
    assert_null(node_metrics_histogram(m, "tern_le_seconds", "E.", "le=\"1\"", bounds, 2));
    assert_null(node_metrics_histogram(m, "tern_d_seconds", "E.", NULL, descending, 2));
    /* A family without help text gets no HELP line. */
    node_metrics *bare = node_metrics_new();
    node_gauge_set(node_metrics_gauge(bare, "tern_bare", NULL, NULL), 1);
    char *text = render(bare);
    assert_string_equal(text, "# TYPE tern_bare gauge\ntern_bare 1\n");
    free(text);
    node_metrics_free(bare);
    node_metrics_free(m);
    node_metrics_free(NULL);
}

enum { THREADS = 4, INCREMENTS = 100000 };

typedef struct {
    node_metrics *m;
    node_counter *counter;
    node_histogram *histogram;
} worker_args;

static void *worker(void *arg)
{
    worker_args *w = arg;
    /* Lookups race with each other and with rendering; updates race with each other. */
    node_counter *c = node_metrics_counter(w->m, "tern_ops_total", "Ops.", NULL);
    assert_ptr_equal(c, w->counter);
    for (int i = 0; i < INCREMENTS; i++) {
        node_counter_add(c, 1);
        node_histogram_observe(w->histogram, (i % 4) * 0.5);
        if (i % 20000 == 0) {
            char *text;
            assert_int_equal(node_metrics_render(w->m, &text, NULL), 0);
            free(text);
            node_metrics_gauge(w->m, "tern_threads", "Threads.", NULL);
        }
    }
    return NULL;
}

static void test_concurrency(void **state)
{
    (void)state;
    node_metrics *m = node_metrics_new();
    static const double bounds[] = {0.5, 1};
    worker_args w = {m, node_metrics_counter(m, "tern_ops_total", "Ops.", NULL),
                     node_metrics_histogram(m, "tern_op_seconds", "Op time.", NULL, bounds, 2)};
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, worker, &w), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    char *text = render(m);
    /* Each thread observes 0, 0.5, 1, 1.5 in turn: the sum is exact in binary. */
    assert_non_null(strstr(text, "tern_ops_total 400000\n"));
    assert_non_null(strstr(text, "tern_op_seconds_bucket{le=\"0.5\"} 200000\n"));
    assert_non_null(strstr(text, "tern_op_seconds_bucket{le=\"1\"} 300000\n"));
    assert_non_null(strstr(text, "tern_op_seconds_bucket{le=\"+Inf\"} 400000\n"));
    assert_non_null(strstr(text, "tern_op_seconds_sum 300000\n"));
    assert_non_null(strstr(text, "tern_op_seconds_count 400000\n"));
    free(text);
    node_metrics_free(m);
}

/* A registry like the node's: every type, with and without labels, odd help text and values. */
static node_metrics *realistic_registry(void)
{
    node_metrics *m = node_metrics_new();
    static const double latency[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};
    static const double sizes[] = {4096, 65536, 1048576, 16777216};
    static const char *const ops[] = {"GetObject", "PutObject", "DeleteObject"};
    for (size_t i = 0; i < TERN_ARRAY_LEN(ops); i++) {
        char labels[128];
        snprintf(labels, sizeof labels, "op=\"%s\",status=\"200\"", ops[i]);
        node_counter_add(node_metrics_counter(m, "tern_s3_requests_total",
                                              "S3 requests by operation and status.", labels),
                         i * 7 + 1);
        snprintf(labels, sizeof labels, "op=\"%s\"", ops[i]);
        node_histogram *h =
            node_metrics_histogram(m, "tern_s3_request_duration_seconds", "S3 request latency.",
                                   labels, latency, TERN_ARRAY_LEN(latency));
        for (int k = 0; k < 50; k++)
            node_histogram_observe(h, k * 0.013);
    }
    node_counter_add(node_metrics_counter(m, "tern_corruptions_total",
                                          "Corrupt blocks found.\nBy reads and scrubs (\\o/).",
                                          NULL),
                     2);
    node_gauge_set(node_metrics_gauge(m, "tern_store_logical_bytes", "Bytes users stored.", NULL),
                   123456789);
    node_gauge_set(
        node_metrics_gauge(m, "tern_store_dedup_ratio", "Dedup ratio.", "region=\"local\""),
        1.0 / 3.0);
    node_gauge_set(node_metrics_gauge(m, "tern_last_scrub_error", "NaN when none.", NULL), NAN);
    node_gauge_set(node_metrics_gauge(m, "tern_label_escapes", "Escaped label values.",
                                      "path=\"a\\\"b\\\\c\\n\""),
                   -1);
    node_histogram *sizes_h =
        node_metrics_histogram(m, "tern_s3_object_size_bytes", "Sizes of stored objects.", NULL,
                               sizes, TERN_ARRAY_LEN(sizes));
    node_histogram_observe(sizes_h, 100);
    node_histogram_observe(sizes_h, 1e9);
    node_metrics_histogram(m, "tern_unused_seconds", "Never observed.", NULL, latency, 2);
    return m;
}

static void test_promtool(void **state)
{
    (void)state;
    const char *promtool = "/usr/bin/promtool";
    if (access(promtool, X_OK) != 0) {
        print_message("promtool not found at %s: skipping the exposition format check\n", promtool);
        skip();
    }
    node_metrics *m = realistic_registry();
    char *text = render(m);
    char path[] = "/tmp/tern_test_metrics_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char command[256];
    snprintf(command, sizeof command, "%s check metrics < %s", promtool, path);
    int status = system(command);
    if (status != 0) print_error("promtool rejected:\n%s", text);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    unlink(path);
    free(text);
    node_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_text),  cmocka_unit_test(test_histogram_labels_and_buckets),
        cmocka_unit_test(test_values),      cmocka_unit_test(test_lookup_and_misuse),
        cmocka_unit_test(test_concurrency), cmocka_unit_test(test_promtool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
