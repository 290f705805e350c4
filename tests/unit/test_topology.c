/* Topology document unit tests: a full document, every error of the live fields, lookups, the
 * region check, --topology in the configuration, and the simulator reading the same file. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "node.h"
#include "ternctl_sim.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---------------------------------------------------------------- fixtures */

static char test_dir[64];

static int make_dir(void **state)
{
    (void)state;
    snprintf(test_dir, sizeof test_dir, "/tmp/tern_topology_XXXXXX");
    unsetenv("TERN_TOPOLOGY");
    unsetenv("TERN_CONFIG");
    unsetenv("TERN_REGION");
    return mkdtemp(test_dir) == NULL ? -1 : 0;
}

static int remove_dir(void **state)
{
    (void)state;
    DIR *d = opendir(test_dir);
    if (d == NULL) return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", test_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    return rmdir(test_dir);
}

/* Writes text to name in the test directory; returns the malloc'd path. */
static char *write_file(const char *name, const char *text)
{
    char *path;
    assert_true(asprintf(&path, "%s/%s", test_dir, name) > 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    fclose(f);
    return path;
}

/*
 * Three regions a, b, c. `a_extra` is spliced into region a's object and `buckets` is the
 * "buckets" member ("" for none), so each error case changes one field of a valid document.
 */
static char *document(const char *a_extra, const char *buckets)
{
    char *text;
    assert_true(
        asprintf(&text,
                 "{\n"
                 "  \"regions\": [\n"
                 "    {\"name\": \"a\", \"storage_usd_per_gb_month\": 0.023%s},\n"
                 "    {\"name\": \"b\", \"storage_usd_per_gb_month\": 0.0125,\n"
                 "     \"peer_endpoints\": [\"10.0.1.1:7000\", \"[fd00::2]:7000\"],\n"
                 "     \"s3_endpoints\": [\"https://s3.b.example.com:443\"]},\n"
                 "    {\"name\": \"c\", \"storage_usd_per_gb_month\": 0.020}\n"
                 "  ],\n"
                 "  \"egress_usd_per_gb\": {\"a\": {\"b\": 0.02, \"c\": 0.05},\n"
                 "                        \"b\": {\"a\": 0.02, \"c\": 0.09},\n"
                 "                        \"c\": {\"a\": 0.05, \"b\": 0.09}},\n"
                 "  \"rtt_ms\": {\"a\": {\"b\": 60, \"c\": 80}, \"b\": {\"a\": 60, \"c\": 140},\n"
                 "             \"c\": {\"a\": 80, \"b\": 140}},\n"
                 "  \"bandwidth_mb_per_s\": 50%s%s\n"
                 "}\n",
                 a_extra, buckets[0] ? ",\n  \"buckets\": " : "", buckets) > 0);
    return text;
}

static char *write_document(const char *a_extra, const char *buckets)
{
    char *text = document(a_extra, buckets);
    char *path = write_file("topology.json", text);
    free(text);
    return path;
}

/* A region a with peer and S3 endpoints, and three policies with RTOs. */
static const char full_a[] =
    ",\n     \"peer_endpoints\": [\"10.0.0.1:7000\", \"node-2.a.example.com:7001\"],\n"
    "     \"s3_endpoints\": [\"http://10.0.0.1:9000\", \"https://s3.a.example.com:8443\"]";
static const char full_buckets[] =
    "{\"docs\": {\"min_regions\": 2, \"rpo_seconds\": 30, \"rto_seconds\": 300},"
    " \"*\": {\"min_regions\": 1, \"rto_seconds\": 3600},"
    " \"eu\": {\"allowed_regions\": [\"a\", \"c\"], \"pinned_regions\": [\"c\"],"
    " \"rto_seconds\": 31536000}}";

/* ---------------------------------------------------------------- tests */

static void test_valid_document(void **state)
{
    (void)state;
    char *path = write_document(full_a, full_buckets);
    node_topology t;
    char errmsg[512] = "";
    int rc = node_topology_load(path, &t, errmsg, sizeof errmsg);
    if (rc != 0) fail_msg("load: %s", errmsg);

    assert_int_equal(t.prices.region_count, 3);
    assert_string_equal(t.prices.names[0], "a");
    assert_string_equal(t.prices.names[2], "c");
    assert_true(t.prices.storage_usd_per_gb_month[1] == 0.0125);
    assert_true(t.prices.egress_usd_per_gb[1][2] == 0.09);
    assert_true(t.prices.egress_usd_per_gb[2][2] == 0);
    assert_true(t.prices.rtt_ms[0][2] == 80);
    assert_true(t.prices.bandwidth_mb_per_s == 50);

    assert_int_equal(t.peer_endpoint_count[0], 2);
    assert_string_equal(t.peer_endpoints[0][0], "10.0.0.1:7000");
    assert_string_equal(t.peer_endpoints[0][1], "node-2.a.example.com:7001");
    assert_int_equal(t.s3_endpoint_count[0], 2);
    assert_string_equal(t.s3_endpoints[0][0], "http://10.0.0.1:9000");
    assert_string_equal(t.s3_endpoints[0][1], "https://s3.a.example.com:8443");
    assert_int_equal(t.peer_endpoint_count[1], 2);
    assert_string_equal(t.peer_endpoints[1][1], "[fd00::2]:7000");
    assert_int_equal(t.s3_endpoint_count[1], 1);
    assert_string_equal(t.s3_endpoints[1][0], "https://s3.b.example.com:443");
    /* Both lists are optional: the simulator's documents have neither. */
    assert_int_equal(t.peer_endpoint_count[2], 0);
    assert_null(t.peer_endpoints[2]);
    assert_int_equal(t.s3_endpoint_count[2], 0);

    /* "*" is policy 0 wherever it appears in the object; the others follow in order. */
    assert_int_equal(t.policy_count, 3);
    assert_string_equal(t.policy_buckets[0], "*");
    assert_int_equal(t.rto_seconds[0], 3600);
    size_t docs = node_topology_bucket_policy(&t, "docs");
    size_t eu = node_topology_bucket_policy(&t, "eu");
    assert_int_equal(docs, 1);
    assert_int_equal(eu, 2);
    assert_string_equal(t.policy_buckets[docs], "docs");
    assert_int_equal(t.policies[docs].min_regions, 2);
    assert_int_equal(t.policies[docs].rpo_seconds, 30);
    assert_int_equal(t.rto_seconds[docs], 300);
    assert_int_equal(t.policies[eu].allowed, 0x5);
    assert_int_equal(t.policies[eu].pinned, 0x4);
    assert_int_equal(t.rto_seconds[eu], 31536000);
    assert_int_equal(node_topology_bucket_policy(&t, "other"), 0);

    node_topology_free(&t);
    node_topology_free(&t); /* freeing twice is harmless: free zeroes */
    free(path);
}

/* Without "buckets" there is one policy, the default, with no bucket name and no RTO. */
static void test_default_policy(void **state)
{
    (void)state;
    char *path = write_document("", "");
    node_topology t;
    char errmsg[512];
    assert_int_equal(node_topology_load(path, &t, errmsg, sizeof errmsg), 0);
    assert_int_equal(t.policy_count, 1);
    assert_null(t.policy_buckets[0]);
    assert_int_equal(t.policies[0].min_regions, 1);
    assert_int_equal(t.policies[0].allowed, 0);
    assert_int_equal(t.rto_seconds[0], 0);
    assert_int_equal(node_topology_bucket_policy(&t, "any"), 0);
    node_topology_free(&t);
    free(path);
}

typedef struct {
    const char *a_extra; /* spliced into region a */
    const char *buckets; /* the "buckets" member, or "" */
    const char *message; /* the whole error after "FILE: " */
} bad_case;

static void expect_error(const bad_case *c, size_t index)
{
    char *path = write_document(c->a_extra, c->buckets);
    node_topology t;
    char errmsg[512] = "", expected[1024];
    int rc = node_topology_load(path, &t, errmsg, sizeof errmsg);
    snprintf(expected, sizeof expected, "%s: %s", path, c->message);
    if (rc != TERN_EPARSE || strcmp(errmsg, expected) != 0)
        fail_msg("case %zu: rc %d, '%s', expected '%s'", index, rc, errmsg, expected);
    /* A failed load leaves an empty topology that may be freed. */
    assert_int_equal(t.prices.region_count, 0);
    assert_null(t.policies);
    node_topology_free(&t);
    free(path);
}

static void test_endpoint_errors(void **state)
{
    (void)state;
    static const char peer_form[] = "is not HOST:PORT with a port from 1 to 65535";
    static const char url_form[] =
        "is not http://HOST:PORT or https://HOST:PORT with a port from 1 to 65535";
    char many[1024] = ", \"peer_endpoints\": [";
    for (int i = 0; i <= NODE_TOPOLOGY_ENDPOINTS_MAX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s\"10.0.0.%d:7000\"",
                 i ? ", " : "", i + 1);
    strcat(many, "]");
    char messages[32][200];
    struct {
        const char *a_extra;
        const char *value; /* the bad value, for the message; NULL: message given whole */
        const char *message;
    } cases[] = {
        {", \"peer_endpoints\": [\"localhost\"]", "localhost", peer_form},
        {", \"peer_endpoints\": [\"h:0\"]", "h:0", peer_form},
        {", \"peer_endpoints\": [\"h:70000\"]", "h:70000", peer_form},
        {", \"peer_endpoints\": [\"h:\"]", "h:", peer_form},
        {", \"peer_endpoints\": [\"h:7x\"]", "h:7x", peer_form},
        {", \"peer_endpoints\": [\":7000\"]", ":7000", peer_form},
        {", \"peer_endpoints\": [\"a b:7000\"]", "a b:7000", peer_form},
        {", \"peer_endpoints\": [\"fd00::1:7000\"]", "fd00::1:7000", peer_form},
        {", \"peer_endpoints\": [\"[]:7000\"]", "[]:7000", peer_form},
        {", \"peer_endpoints\": [\"http://h:7000\"]", "http://h:7000", peer_form},
        {", \"peer_endpoints\": [\"\"]", "", peer_form},
        {", \"peer_endpoints\": [\"10.0.0.1:7000\", 7000]", NULL,
         "regions[0].peer_endpoints[1]: not a string"},
        {", \"peer_endpoints\": \"10.0.0.1:7000\"", NULL,
         "regions[0].peer_endpoints: not an array of HOST:PORT strings"},
        {", \"peer_endpoints\": [\"10.0.0.1:7000\", \"10.0.0.1:7000\"]", NULL,
         "regions[0].peer_endpoints[1]: '10.0.0.1:7000' appears twice"},
        {many, NULL, "regions[0].peer_endpoints: more than 16"},
        {", \"s3_endpoints\": [\"ftp://h:21\"]", "ftp://h:21", url_form},
        {", \"s3_endpoints\": [\"h:9000\"]", "h:9000", url_form},
        {", \"s3_endpoints\": [\"http://h\"]", "http://h", url_form},
        {", \"s3_endpoints\": [\"http://h:9000/path\"]", "http://h:9000/path", url_form},
        {", \"s3_endpoints\": [\"https://h:0\"]", "https://h:0", url_form},
        {", \"s3_endpoints\": [\"HTTP://h:9000\"]", "HTTP://h:9000", url_form},
        {", \"s3_endpoints\": [null]", NULL, "regions[0].s3_endpoints[0]: not a string"},
        {", \"s3_endpoints\": {}", NULL,
         "regions[0].s3_endpoints: not an array of http://HOST:PORT or https://HOST:PORT "
         "strings"},
        {", \"s3_endpoints\": [\"https://s3.b.example.com:443\"]", NULL,
         "regions[1].s3_endpoints[0]: 'https://s3.b.example.com:443' appears twice"},
        {", \"peers\": []", NULL, "regions[0].peers: unknown field"},
        {", \"peer_endpoint\": [\"10.0.0.1:7000\"]", NULL,
         "regions[0].peer_endpoint: unknown field"},
    };
    assert_true(TERN_ARRAY_LEN(cases) <= TERN_ARRAY_LEN(messages));
    for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
        const char *field =
            strstr(cases[i].a_extra, "s3_endpoints") ? "s3_endpoints" : "peer_endpoints";
        if (cases[i].value != NULL)
            snprintf(messages[i], sizeof messages[i], "regions[0].%s[0]: '%s' %s", field,
                     cases[i].value, cases[i].message);
        else
            snprintf(messages[i], sizeof messages[i], "%s", cases[i].message);
        bad_case c = {cases[i].a_extra, "", messages[i]};
        expect_error(&c, i);
    }
}

/* The forms an operator writes are accepted: DNS names, IPv4, bracketed IPv6, ports 1..65535. */
static void test_endpoint_forms(void **state)
{
    (void)state;
    static const char *const extras[] = {
        ", \"peer_endpoints\": [\"[::1]:1\", \"h_1.example-x.com:65535\", \"127.0.0.1:7000\"]",
        ", \"s3_endpoints\": [\"http://[::1]:9000\", \"https://h:65535\"]",
        ", \"peer_endpoints\": [], \"s3_endpoints\": []",
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(extras); i++) {
        char *path = write_document(extras[i], "");
        node_topology t;
        char errmsg[512];
        if (node_topology_load(path, &t, errmsg, sizeof errmsg) != 0)
            fail_msg("case %zu: %s", i, errmsg);
        node_topology_free(&t);
        free(path);
    }
}

static void test_rto_errors(void **state)
{
    (void)state;
    static const char msg[] = "buckets.x.rto_seconds: not an integer from 0 to a year";
    const bad_case cases[] = {
        {"", "{\"x\": {\"rto_seconds\": -1}}", msg},
        {"", "{\"x\": {\"rto_seconds\": 31536001}}", msg},
        {"", "{\"x\": {\"rto_seconds\": 1.5}}", msg},
        {"", "{\"x\": {\"rto_seconds\": \"60\"}}", msg},
        {"", "{\"x\": {\"rto_second\": 60}}", "buckets.x.rto_second: unknown field"},
        {"", "{\"*\": {\"rto_seconds\": -5}}",
         "buckets.*.rto_seconds: not an integer from 0 to a year"},
        /* The simulator's rules hold for ternd's documents too. */
        {"", "{\"x\": {\"allowed_regions\": [\"a\"], \"min_regions\": 2}}",
         "buckets.x.min_regions: 2 is more than the 1 allowed regions"},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++)
        expect_error(&cases[i], i);
}

static void test_load_errors(void **state)
{
    (void)state;
    node_topology t;
    char errmsg[512], expected[600];
    char *missing;
    assert_true(asprintf(&missing, "%s/nope.json", test_dir) > 0);
    assert_int_equal(node_topology_load(missing, &t, errmsg, sizeof errmsg), TERN_EIO);
    snprintf(expected, sizeof expected, "%s: unable to open %s:", missing, missing);
    assert_memory_equal(errmsg, expected, strlen(expected));
    free(missing);

    char *path = write_file("bad.json", "{\"regions\": [\n");
    assert_int_equal(node_topology_load(path, &t, errmsg, sizeof errmsg), TERN_EPARSE);
    snprintf(expected, sizeof expected, "%s: line ", path);
    assert_memory_equal(errmsg, expected, strlen(expected));
    free(path);

    /* A key given twice would keep only its last value: refused like a typo. */
    char *text = document("", "{\"x\": {\"min_regions\": 1}, \"x\": {\"min_regions\": 2}}");
    path = write_file("dup.json", text);
    free(text);
    assert_int_equal(node_topology_load(path, &t, errmsg, sizeof errmsg), TERN_EPARSE);
    assert_non_null(strstr(errmsg, "duplicate object key"));
    node_topology_free(&t);
    free(path);
}

static void test_lookups(void **state)
{
    (void)state;
    char *path = write_document("", "");
    node_topology t;
    char errmsg[512];
    assert_int_equal(node_topology_load(path, &t, errmsg, sizeof errmsg), 0);
    assert_int_equal(node_topology_region(&t, "a"), 0);
    assert_int_equal(node_topology_region(&t, "b"), 1);
    assert_int_equal(node_topology_region(&t, "c"), 2);
    assert_int_equal(node_topology_region(&t, "d"), -1);
    assert_int_equal(node_topology_region(&t, ""), -1);
    assert_int_equal(node_topology_region(&t, "A"), -1); /* names are exact */

    assert_int_equal(node_topology_check_region(&t, "b", path, errmsg, sizeof errmsg), 0);
    assert_int_equal(node_topology_check_region(&t, "x", path, errmsg, sizeof errmsg), TERN_EINVAL);
    char expected[600];
    snprintf(expected, sizeof expected, "region 'x' is not in topology %s (regions: a, b, c)",
             path);
    assert_string_equal(errmsg, expected);
    node_topology_free(&t);
    /* An empty topology knows no region. */
    assert_int_equal(node_topology_region(&t, "a"), -1);
    free(path);
}

/* --topology, TERN_TOPOLOGY and "topology" set the path; the region is checked against it. */
static void test_config_topology(void **state)
{
    (void)state;
    char *path = write_document(full_a, full_buckets);
    node_config cfg;
    char errmsg[512];
    char *defaults[] = {"ternd"};
    assert_int_equal(node_config_load(&cfg, ARGC(defaults), defaults, NULL, errmsg, sizeof errmsg),
                     0);
    assert_null(cfg.topology);
    node_config_free(&cfg);

    char *argv[] = {"ternd", "--topology", path, "--region", "c"};
    assert_int_equal(node_config_load(&cfg, ARGC(argv), argv, NULL, errmsg, sizeof errmsg), 0);
    assert_string_equal(cfg.topology, path);
    node_topology t;
    assert_int_equal(node_topology_load(cfg.topology, &t, errmsg, sizeof errmsg), 0);
    assert_int_equal(
        node_topology_check_region(&t, cfg.region, cfg.topology, errmsg, sizeof errmsg), 0);
    node_topology_free(&t);
    node_config_free(&cfg);

    /* The default region "local" is not in the document: ternd refuses to start. */
    setenv("TERN_TOPOLOGY", path, 1);
    char *env_argv[] = {"ternd"};
    assert_int_equal(node_config_load(&cfg, ARGC(env_argv), env_argv, NULL, errmsg, sizeof errmsg),
                     0);
    assert_string_equal(cfg.topology, path);
    assert_int_equal(node_topology_load(cfg.topology, &t, errmsg, sizeof errmsg), 0);
    assert_int_equal(
        node_topology_check_region(&t, cfg.region, cfg.topology, errmsg, sizeof errmsg),
        TERN_EINVAL);
    char expected[600];
    snprintf(expected, sizeof expected, "region 'local' is not in topology %s (regions: a, b, c)",
             path);
    assert_string_equal(errmsg, expected);
    node_topology_free(&t);
    node_config_free(&cfg);
    unsetenv("TERN_TOPOLOGY");

    char *json;
    assert_true(asprintf(&json, "{\"topology\": \"%s\", \"region\": \"a\"}", path) > 0);
    char *config = write_file("tern.json", json);
    free(json);
    char *file_argv[] = {"ternd", "--config", config};
    assert_int_equal(
        node_config_load(&cfg, ARGC(file_argv), file_argv, NULL, errmsg, sizeof errmsg), 0);
    assert_string_equal(cfg.topology, path);
    node_config_free(&cfg);

    char *empty[] = {"ternd", "--topology", ""};
    assert_int_equal(node_config_load(&cfg, ARGC(empty), empty, NULL, errmsg, sizeof errmsg),
                     TERN_EINVAL);
    assert_string_equal(errmsg, "--topology: invalid value '': expected a non-empty value");
    free(config);
    free(path);
}

/* One parser: `ternctl sim` reads ternd's document, endpoints and RTOs included. */
static void test_simulator_reads_it(void **state)
{
    (void)state;
    char *path = write_document(full_a, full_buckets);
    ops__sim_input in = {0};
    char why[512];
    int rc = ops__sim_read_topology(&in, path, why, sizeof why);
    if (rc != 0) fail_msg("%s", why);
    assert_int_equal(in.topology.region_count, 3);
    assert_memory_equal(&in.topology, &in.document.prices, sizeof in.topology);
    assert_int_equal(in.policy_count, 3);
    assert_ptr_equal(in.policies, in.document.policies);
    assert_string_equal(in.policy_buckets[0], "*");
    assert_int_equal(in.document.peer_endpoint_count[0], 2);
    ops__sim_input_free(&in);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_document),
        cmocka_unit_test(test_default_policy),
        cmocka_unit_test(test_endpoint_errors),
        cmocka_unit_test(test_endpoint_forms),
        cmocka_unit_test(test_rto_errors),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_config_topology),
        cmocka_unit_test(test_simulator_reads_it),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
