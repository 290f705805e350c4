/* ternctl sim unit tests: input errors, table/JSON/compare/plot output, sim gen and
 * convert-wc98, all through ops_main with temporary files. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "ops.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---------------------------------------------------------------- fixtures */

static char test_dir[64];

static int make_dir(void **state)
{
    (void)state;
    snprintf(test_dir, sizeof test_dir, "/tmp/ternctl_sim_XXXXXX");
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

/* The path of name in the test directory (caller frees). */
static char *path_of(const char *name)
{
    char *p;
    assert_true(asprintf(&p, "%s/%s", test_dir, name) > 0);
    return p;
}

static char *write_bytes(const char *name, const void *data, size_t len)
{
    char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return p;
}

static char *write_file(const char *name, const char *text)
{
    return write_bytes(name, text, strlen(text));
}

static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    assert_true(len >= 0);
    rewind(f);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    if (len_out) *len_out = (size_t)len;
    return buf;
}

/* ops_main with out/err captured in memory. */
typedef struct {
    int rc;
    char *out;
    char *err;
} run_result;

static run_result run(int argc, char **argv)
{
    run_result r = {0};
    size_t out_len, err_len;
    FILE *out = open_memstream(&r.out, &out_len);
    FILE *err = open_memstream(&r.err, &err_len);
    assert_non_null(out);
    assert_non_null(err);
    r.rc = ops_main(argc, argv, out, err);
    fclose(out);
    fclose(err);
    return r;
}

static void result_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

static void expect_substring(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL) fail_msg("'%s' not found in:\n%s", needle, haystack);
}

/*
 * Three regions a, b, c with the prices of test_placement_sim's hand-priced trace:
 * storage 0.023, 0.0125, 0.020 $/GB-month; egress a-b 0.02, a-c 0.05, b-c 0.09 (both ways);
 * bandwidth 50 MB/s. `buckets` is spliced in as the "buckets" member (or "" for none).
 */
static char *topology_json(const char *buckets)
{
    char *text;
    assert_true(
        asprintf(&text,
                 "{\n"
                 "  \"regions\": [\n"
                 "    {\"name\": \"a\", \"storage_usd_per_gb_month\": 0.023},\n"
                 "    {\"name\": \"b\", \"storage_usd_per_gb_month\": 0.0125},\n"
                 "    {\"name\": \"c\", \"storage_usd_per_gb_month\": 0.020}\n"
                 "  ],\n"
                 "  \"egress_usd_per_gb\": {\"a\": {\"b\": 0.02, \"c\": 0.05},\n"
                 "                        \"b\": {\"a\": 0.02, \"c\": 0.09},\n"
                 "                        \"c\": {\"a\": 0.05, \"b\": 0.09}},\n"
                 "  \"rtt_ms\": {\"a\": {\"b\": 60, \"c\": 80}, \"b\": {\"a\": 60, \"c\": 140},\n"
                 "             \"c\": {\"a\": 80, \"b\": 140}},\n"
                 "  \"bandwidth_mb_per_s\": 50%s%s\n"
                 "}\n",
                 buckets[0] ? ",\n  \"buckets\": " : "", buckets) > 0);
    return text;
}

static char *write_topology(const char *name, const char *buckets)
{
    char *text = topology_json(buckets);
    char *p = write_file(name, text);
    free(text);
    return p;
}

/* A topology over the given region names, every pair at 0.02 $/GB and 50 ms. */
static char *write_topology_of(const char *name, const char *const *regions, int k)
{
    json_t *root = json_object(), *list = json_array(), *egress = json_object(),
           *rtt = json_object();
    for (int i = 0; i < k; i++) {
        json_array_append_new(
            list, json_pack("{s:s, s:f}", "name", regions[i], "storage_usd_per_gb_month", 0.023));
        json_t *e = json_object(), *t = json_object();
        for (int j = 0; j < k; j++) {
            if (i == j) continue;
            json_object_set_new(e, regions[j], json_real(0.02));
            json_object_set_new(t, regions[j], json_integer(50));
        }
        json_object_set_new(egress, regions[i], e);
        json_object_set_new(rtt, regions[i], t);
    }
    json_object_set_new(root, "regions", list);
    json_object_set_new(root, "egress_usd_per_gb", egress);
    json_object_set_new(root, "rtt_ms", rtt);
    char *text = json_dumps(root, JSON_INDENT(2));
    assert_non_null(text);
    json_decref(root);
    char *p = write_file(name, text);
    free(text);
    return p;
}

/*
 * The hand-priced trace of test_placement_sim (its end is the last event, 20 h, here):
 * x is held 2 GB x 10 h then 4 GB x 10 h, y 1 GB x 9 h: 69 GB-hours per holder. Under
 * "home" every read is remote: 2 GB a->b, 0.5 GB a->c, 4 GB a->c.
 */
static const char trace_csv[] = "ts_ms,region,op,bucket,key,bytes\n"
                                "0,a,PUT,bk,x,2000000000\n"
                                "3600000,b,GET,bk,x,2000000000\n"
                                "7200000,c,GET,bk,y,1000000000\n"
                                "10800000,a,PUT,bk,y,1000000000\n"
                                "18000000,c,GET,bk,y,500000000\n"
                                "36000000,a,PUT,bk,x,4000000000\n"
                                "43200000,b,DELETE,bk,y,0\n"
                                "46800000,a,GET,bk,y,1000000000\n"
                                "72000000,c,GET,bk,x,4000000000\n";
#define HOME_EGRESS_USD  (2 * 0.02 + 0.5 * 0.05 + 4 * 0.05)
#define HOME_STORAGE_USD (0.023 * 69 / 720.0)
#define FULL_TRANSFER    ((2 + 1 + 4) * (0.02 + 0.05))
#define FULL_STORAGE_USD ((0.023 + 0.0125 + 0.020) * 69 / 720.0)

static bool close_enough(double actual, double expected)
{
    return fabs(actual - expected) <= 1e-9 * fmax(fabs(actual), fabs(expected)) + 1e-15;
}

/* ---------------------------------------------------------------- input errors */

typedef struct {
    const char *trace;
    const char *messages[3]; /* substrings of stderr */
} bad_trace;

static void test_malformed_traces(void **state)
{
    (void)state;
    char *topology = write_topology("topology.json", "");
    static const bad_trace cases[] = {
        {"ts,region,op,bucket,key,bytes\n0,a,PUT,bk,x,1\n",
         {"trace.csv:1: header: expected 'ts_ms,region,op,bucket,key,bytes'"}},
        {"", {"trace.csv:1: header: the file is empty"}},
        {"ts_ms,region,op,bucket,key,bytes\n0,a,PUT,bk,x,1\nabc,a,GET,bk,x,1\n",
         {"trace.csv:3: field ts_ms: not a non-negative integer"}},
        {"ts_ms,region,op,bucket,key,bytes\n-5,a,PUT,bk,x,1\n",
         {"trace.csv:2: field ts_ms: not a non-negative integer"}},
        {"ts_ms,region,op,bucket,key,bytes\n0,a,PUT,bk,x,1\n1,zz,GET,bk,x,1\n",
         {"trace.csv:3: field region: 'zz' is not a region of the topology"}},
        {"ts_ms,region,op,bucket,key,bytes\n0,a,POST,bk,x,1\n",
         {"trace.csv:2: field op: 'POST' is not GET, PUT or DELETE"}},
        {"ts_ms,region,op,bucket,key,bytes\n0,a,get,bk,x,1\n",
         {"trace.csv:2: field op: 'get' is not GET, PUT or DELETE"}},
        {"ts_ms,region,op,bucket,key,bytes\n0,a,PUT,bk,x,12kb\n",
         {"trace.csv:2: field bytes: not a non-negative integer"}},
        {"ts_ms,region,op,bucket,key,bytes\n0,a,PUT,bk,x,\n",
         {"trace.csv:2: field bytes: not a non-negative integer"}},
        {"ts_ms,region,op,bucket,key,bytes\n0,a,PUT,bk,x,1\n10,a,GET,bk,x,1\n5,a,GET,bk,x,1\n",
         {"trace.csv:4: field ts_ms: 5 is before the previous line's 10", "sorted by time"}},
        /* A truncated last line (no newline), a missing column, an extra one. */
        {"ts_ms,region,op,bucket,key,bytes\n0,a,PUT,bk,x,1\n7,a,GE",
         {"trace.csv:3: expected 6 comma-separated fields (ts_ms,region,op,bucket,key,bytes)"}},
        {"ts_ms,region,op,bucket,key,bytes\n0,a,PUT,bk,1\n",
         {"trace.csv:2: expected 6 comma-separated fields"}},
        {"ts_ms,region,op,bucket,key,bytes\n0,a,PUT,bk,x,1,extra\n",
         {"trace.csv:2: expected 6 comma-separated fields"}},
        {"ts_ms,region,op,bucket,key,bytes\n0,a,PUT,,x,1\n",
         {"trace.csv:2: field bucket: empty or quoted"}},
        {"ts_ms,region,op,bucket,key,bytes\n0,a,PUT,bk,\"x\",1\n",
         {"trace.csv:2: field key: empty or quoted"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *trace = write_file("trace.csv", cases[i].trace);
        char *argv[] = {"ternctl", "sim", "--topology", topology, "--trace", trace};
        run_result r = run(ARGC(argv), argv);
        if (r.rc != 1) fail_msg("case %zu: exit %d, stderr: %s", i, r.rc, r.err);
        expect_substring(r.err, "ternctl: ");
        for (int m = 0; m < 3 && cases[i].messages[m]; m++)
            expect_substring(r.err, cases[i].messages[m]);
        assert_string_equal(r.out, ""); /* no half-computed result */
        result_free(&r);
        free(trace);
    }
    /* A line longer than the reader's buffer, and a trace file that does not exist. */
    char *long_line = malloc(6000);
    assert_non_null(long_line);
    int n = snprintf(long_line, 6000, "ts_ms,region,op,bucket,key,bytes\n0,a,PUT,bk,");
    memset(long_line + n, 'k', 5000);
    strcpy(long_line + n + 5000, ",1\n");
    char *trace = write_file("trace.csv", long_line);
    free(long_line);
    char *argv[] = {"ternctl", "sim", "--topology", topology, "--trace", trace};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 1);
    expect_substring(r.err, "trace.csv:2: longer than 4094 bytes");
    result_free(&r);
    free(trace);
    char *missing = path_of("missing.csv");
    char *argv2[] = {"ternctl", "sim", "--topology", topology, "--trace", missing};
    r = run(ARGC(argv2), argv2);
    assert_int_equal(r.rc, 1);
    expect_substring(r.err, "missing.csv: No such file or directory");
    result_free(&r);
    free(missing);
    free(topology);
}

typedef struct {
    const char *json; /* NULL: topology_json(buckets) */
    const char *buckets;
    const char *message;
} bad_topology;

static void test_malformed_topologies(void **state)
{
    (void)state;
    char *trace = write_file("trace.csv", trace_csv);
    static const char good_matrix[] =
        "\"egress_usd_per_gb\": {\"a\": {\"b\": 0.02}, \"b\": {\"a\": 0.02}},"
        "\"rtt_ms\": {\"a\": {\"b\": 10}, \"b\": {\"a\": 10}}";
    char regions_ab[] = "\"regions\": [{\"name\": \"a\", \"storage_usd_per_gb_month\": 0.02},"
                        "{\"name\": \"b\", \"storage_usd_per_gb_month\": 0.02}]";
    char *texts[16];
    int t = 0;
    assert_true(asprintf(&texts[t++], "{%s, %s}", regions_ab, good_matrix) > 0); /* valid */
    bad_topology cases[] = {
        {"regions: [a, b]\n", NULL, "topology.json: line 1, column"},
        {"[1, 2]", NULL, "topology.json: not a JSON object"},
        {"{\"egress_usd_per_gb\": {}, \"rtt_ms\": {}}", NULL, "topology.json: regions: missing"},
        {"{\"regions\": []}", NULL, "regions: not an array of 1 to 8 regions"},
        {"{\"regions\": [{\"name\": \"a\", \"storage_usd_per_gb_month\": -0.5}]}", NULL,
         "topology.json: regions[0].storage_usd_per_gb_month: not a non-negative number"},
        {"{\"regions\": [{\"name\": \"a\"}]}", NULL,
         "topology.json: regions[0].storage_usd_per_gb_month: missing"},
        {"{\"regions\": [{\"name\": \"a\", \"storage_usd_per_gb_month\": 1},"
         "{\"name\": \"a\", \"storage_usd_per_gb_month\": 1}]}",
         NULL, "regions[1].name: 'a' appears twice"},
        {"{\"regions\": [{\"name\": \"a,b\", \"storage_usd_per_gb_month\": 1}]}", NULL,
         "regions[0].name: missing, or not a name"},
        {NULL, NULL, NULL}, /* placeholders filled below */
        {NULL, NULL, NULL},
        {NULL, NULL, NULL},
        {NULL, NULL, NULL},
        {NULL, NULL, NULL},
        {NULL, NULL, NULL},
        {NULL, "{\"eu\": {\"allowed_regions\": [\"a\", \"c\"], \"pinned_regions\": [\"b\"]}}",
         "buckets.eu.pinned_regions: a region outside allowed_regions"},
        {NULL, "{\"eu\": {\"allowed_regions\": [\"a\", \"c\"], \"min_regions\": 3}}",
         "buckets.eu.min_regions: 3 is more than the 2 allowed regions"},
        {NULL, "{\"eu\": {\"min_regions\": 4}}",
         "buckets.eu.min_regions: not an integer from 1 to the region count (3)"},
        {NULL, "{\"eu\": {\"min_regions\": 0}}", "buckets.eu.min_regions: not an integer"},
        {NULL, "{\"eu\": {\"allowed_regions\": [\"a\", \"mars\"]}}",
         "buckets.eu.allowed_regions[1]: not a region of the topology"},
        {NULL, "{\"eu\": {\"pinned_regions\": \"a\"}}",
         "buckets.eu.pinned_regions: not an array of regions"},
        {NULL, "{\"eu\": {\"rpo_seconds\": -1}}",
         "buckets.eu.rpo_seconds: not an integer from 0 to a year"},
        {NULL, "{\"eu\": 5}", "buckets.eu: not an object"},
        {NULL, "{\"eu\": {\"min_region\": 2}}", "buckets.eu.min_region: unknown field"},
        {"{\"regions\": [{\"name\": \"a\", \"storage_usd_per_gb_month\": 1, \"storage\": 2}]}",
         NULL, "topology.json: regions[0].storage: unknown field"},
        {"{\"region\": []}", NULL, "topology.json: region: unknown field"},
        {NULL, "[]", "buckets: not an object"},
    };
    /* Matrices: a negative price, unknown regions in egress and rtt, a missing pair. */
    const char *matrix_cases[][2] = {
        {"\"egress_usd_per_gb\": {\"a\": {\"b\": -0.02}, \"b\": {\"a\": 0.02}},"
         "\"rtt_ms\": {\"a\": {\"b\": 10}, \"b\": {\"a\": 10}}",
         "topology.json: egress_usd_per_gb.a.b: not a non-negative number"},
        {"\"egress_usd_per_gb\": {\"a\": {\"b\": 0.02, \"zz\": 0.01}, \"b\": {\"a\": 0.02}},"
         "\"rtt_ms\": {\"a\": {\"b\": 10}, \"b\": {\"a\": 10}}",
         "topology.json: egress_usd_per_gb.a.zz: unknown region"},
        {"\"egress_usd_per_gb\": {\"a\": {\"b\": 0.02}, \"b\": {\"a\": 0.02}, \"zz\": {}},"
         "\"rtt_ms\": {\"a\": {\"b\": 10}, \"b\": {\"a\": 10}}",
         "topology.json: egress_usd_per_gb.zz: unknown region"},
        {"\"egress_usd_per_gb\": {\"a\": {\"b\": 0.02}, \"b\": {\"a\": 0.02}},"
         "\"rtt_ms\": {\"a\": {\"b\": 10}, \"b\": {\"q\": 10}}",
         "topology.json: rtt_ms.b.q: unknown region"},
        {"\"egress_usd_per_gb\": {\"a\": {\"b\": 0.02}},"
         "\"rtt_ms\": {\"a\": {\"b\": 10}, \"b\": {\"a\": 10}}",
         "topology.json: egress_usd_per_gb.b.a: missing"},
        {"\"egress_usd_per_gb\": {\"a\": {\"b\": 0.02}, \"b\": {\"a\": 0.02}}",
         "topology.json: rtt_ms: missing"},
    };
    for (size_t m = 0; m < sizeof matrix_cases / sizeof matrix_cases[0]; m++) {
        assert_true(asprintf(&texts[t], "{%s, %s}", regions_ab, matrix_cases[m][0]) > 0);
        cases[8 + m] = (bad_topology){texts[t++], NULL, matrix_cases[m][1]};
    }
    /* The valid two-region topology passes the reader: the trace's region c is the error. */
    char *topology = write_file("topology.json", texts[0]);
    char *argv0[] = {"ternctl", "sim", "--topology", topology, "--trace", trace};
    run_result r = run(ARGC(argv0), argv0);
    assert_int_equal(r.rc, 1);
    expect_substring(r.err, "trace.csv:4: field region: 'c' is not a region of the topology");
    result_free(&r);
    free(topology);

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = cases[i].json ? strdup(cases[i].json) : topology_json(cases[i].buckets);
        topology = write_file("topology.json", text);
        free(text);
        char *argv[] = {"ternctl", "sim", "--topology", topology, "--trace", trace};
        r = run(ARGC(argv), argv);
        if (r.rc != 1) fail_msg("case %zu: exit %d, stderr: %s", i, r.rc, r.err);
        expect_substring(r.err, "ternctl: ");
        expect_substring(r.err, cases[i].message);
        assert_string_equal(r.out, "");
        result_free(&r);
        free(topology);
    }
    char *missing = path_of("nope.json");
    char *argv2[] = {"ternctl", "sim", "--topology", missing, "--trace", trace};
    r = run(ARGC(argv2), argv2);
    assert_int_equal(r.rc, 1);
    expect_substring(r.err, "nope.json");
    result_free(&r);
    free(missing);
    for (int i = 0; i < t; i++)
        free(texts[i]);
    free(trace);
}

static void expect_usage(int argc, char **argv, const char *message)
{
    run_result r = run(argc, argv);
    bool ok = r.rc == 2 && strstr(r.err, message) != NULL &&
              strstr(r.err, "Exit status: 0 success, 1 the command failed, 2 usage error.");
    if (!ok) {
        print_error("stderr:\n%s", r.err);
        int rc = r.rc;
        result_free(&r); /* before failing, so a failure reports no leak of its own */
        fail_msg("expected exit 2 and '%s', got exit %d", message, rc);
    }
    result_free(&r);
}

static void test_usage_errors(void **state)
{
    (void)state;
    char *topology = write_topology("topology.json", "");
    char *trace = write_file("trace.csv", trace_csv);
    struct {
        const char *words[8];
        const char *message;
    } cases[] = {
        {{"--trace", "T"}, "sim: --topology is required"},
        {{"--topology", "T"}, "sim: --trace is required"},
        {{"--topology", "T", "--trace", "X", "--policy", "nope"}, "sim: unknown policy 'nope'"},
        {{"--topology", "T", "--trace", "X", "--seed", "-1"}, "sim: invalid seed '-1'"},
        {{"--topology", "T", "--trace", "X", "--seed", "12x"}, "sim: invalid seed '12x'"},
        {{"--topology", "T", "--trace", "X", "--static-k", "9"}, "sim: invalid --static-k '9'"},
        {{"--topology", "T", "--trace", "X", "--plot", "p.svg"}, "sim: --plot goes with --compare"},
        {{"--topology", "T", "--trace", "X", "-o", "yaml"}, "invalid output format 'yaml'"},
        {{"--topology", "T", "--trace", "X", "extra"}, "sim: unexpected argument 'extra'"},
        {{"--topology", "T", "--trace", "X", "--frobnicate"}, "sim: unknown option '--frobnicate'"},
        {{"--topology"}, "option '--topology' requires an argument"},
        {{"gen", "--events=0"}, "sim gen: invalid value '0' for --events"},
        {{"gen", "--scenario", "rainy"}, "sim gen: unknown scenario 'rainy'"},
        {{"gen", "--regions", "a,,b"}, "sim gen: invalid --regions 'a,,b'"},
        {{"gen", "-o", "json"}, "sim gen: unknown option '-o'"},
        {{"gen", "surprise"}, "sim gen: unexpected argument 'surprise'"},
        {{"convert-wc98"}, "sim convert-wc98: no input FILE given"},
        {{"convert-wc98", "--bogus", "f"}, "sim convert-wc98: unknown option '--bogus'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[12] = {"ternctl", "sim"};
        int argc = 2;
        for (size_t w = 0; w < 8 && cases[i].words[w] != NULL; w++) {
            const char *word = cases[i].words[w];
            argv[argc++] = strcmp(word, "T") == 0   ? topology
                           : strcmp(word, "X") == 0 ? trace
                                                    : (char *)word;
        }
        expect_usage(argc, argv, cases[i].message);
    }
    /* --help is not an error. */
    char *argv[] = {"ternctl", "sim", "--help"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    expect_substring(r.out, "sim --topology T.json --trace TRACE.csv");
    result_free(&r);
    free(topology);
    free(trace);
}

/*
 * A bad value given as a separate argument ("--events 0", the usual spelling) must be reported
 * with the option's name, as "--events=0" is.
 */
static void test_gen_usage_names_option(void **state)
{
    (void)state;
    struct {
        const char *words[3];
        const char *message;
    } cases[] = {
        {{"--events", "0"}, "sim gen: invalid value '0' for --events"},
        {{"--objects", "many"}, "sim gen: invalid value 'many' for --objects"},
        {{"--seed", "-3"}, "sim gen: invalid value '-3' for --seed"},
        {{"--objects=many"}, "sim gen: invalid value 'many' for --objects"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[6] = {"ternctl", "sim", "gen"};
        int argc = 3;
        for (size_t w = 0; w < 3 && cases[i].words[w] != NULL; w++)
            argv[argc++] = (char *)cases[i].words[w];
        expect_usage(argc, argv, cases[i].message);
    }
}

/* ---------------------------------------------------------------- a valid run */

static const char *const result_fields[] = {
    "policy",
    "total_usd",
    "egress_usd",
    "storage_usd",
    "transfer_usd",
    "egress_bytes",
    "transfer_bytes",
    "reads",
    "missed_reads",
    "local_read_ratio",
    "read_latency_ms_p50",
    "read_latency_ms_p99",
    "constraint_violations",
    "events",
    "events_per_second",
};

/* The value after "NAME   " on its own line of the table, or NULL. */
static const char *table_value(const char *table, const char *name)
{
    size_t len = strlen(name);
    for (const char *line = table; line != NULL && *line; line = strchr(line, '\n')) {
        if (*line == '\n') line++;
        if (strncmp(line, name, len) == 0 && line[len] == ' ') {
            const char *v = line + len;
            while (*v == ' ')
                v++;
            return v;
        }
    }
    return NULL;
}

static void test_run_table(void **state)
{
    (void)state;
    char *topology = write_topology("topology.json", "");
    char *trace = write_file("trace.csv", trace_csv);
    char *argv[] = {"ternctl", "sim", "--topology", topology, "--trace", trace, "--policy", "home"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    for (size_t i = 0; i < sizeof result_fields / sizeof result_fields[0]; i++)
        if (table_value(r.out, result_fields[i]) == NULL)
            fail_msg("no '%s' line in:\n%s", result_fields[i], r.out);
    assert_int_equal(strncmp(table_value(r.out, "policy"), "home\n", 5), 0);
    assert_int_equal(strtoull(table_value(r.out, "events"), NULL, 10), 9);
    assert_int_equal(strtoull(table_value(r.out, "egress_bytes"), NULL, 10), 6500000000ull);
    assert_int_equal(strtoull(table_value(r.out, "constraint_violations"), NULL, 10), 0);
    /* Costs are printed with 9 significant digits. */
    double total = strtod(table_value(r.out, "total_usd"), NULL);
    assert_true(fabs(total - (HOME_EGRESS_USD + HOME_STORAGE_USD)) <= 1e-8 * total);
    assert_true(fabs(strtod(table_value(r.out, "read_latency_ms_p50"), NULL) - 40060) < 1e-3);
    assert_true(fabs(strtod(table_value(r.out, "read_latency_ms_p99"), NULL) - 80080) < 1e-3);
    result_free(&r);
    free(topology);
    free(trace);
}

static json_t *parse_json(const char *text)
{
    json_error_t error;
    json_t *j = json_loads(text, 0, &error);
    if (j == NULL) fail_msg("not JSON (%s) :\n%s", error.text, text);
    return j;
}

static double number(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) fail_msg("%s is not a number", key);
    return json_number_value(v);
}

static void check_result_fields(const json_t *o)
{
    assert_true(json_is_object(o));
    for (size_t i = 0; i < sizeof result_fields / sizeof result_fields[0]; i++)
        if (json_object_get(o, result_fields[i]) == NULL) fail_msg("no field %s", result_fields[i]);
    assert_true(json_is_string(json_object_get(o, "policy")));
    assert_true(json_is_integer(json_object_get(o, "egress_bytes")));
    assert_true(json_is_integer(json_object_get(o, "constraint_violations")));
    assert_true(json_is_integer(json_object_get(o, "events")));
    assert_true(number(o, "events_per_second") >= 0);
    assert_true(number(o, "local_read_ratio") >= 0 && number(o, "local_read_ratio") <= 1);
    assert_true(close_enough(number(o, "total_usd"), number(o, "egress_usd") +
                                                         number(o, "storage_usd") +
                                                         number(o, "transfer_usd")));
}

static void test_run_json(void **state)
{
    (void)state;
    char *topology = write_topology("topology.json", "");
    char *trace = write_file("trace.csv", trace_csv);
    /* -o may come before "sim" or among its options. */
    for (int before = 0; before < 2; before++) {
        char *argv_before[] = {"ternctl", "-o",      "json", "sim",      "--topology",
                               topology,  "--trace", trace,  "--policy", "home"};
        char *argv_after[] = {"ternctl", "sim",      "--topology", topology,   "--trace",
                              trace,     "--policy", "home",       "--output", "json"};
        run_result r =
            before ? run(ARGC(argv_before), argv_before) : run(ARGC(argv_after), argv_after);
        assert_int_equal(r.rc, 0);
        json_t *j = parse_json(r.out);
        check_result_fields(j);
        assert_int_equal(json_object_size(j), sizeof result_fields / sizeof result_fields[0]);
        assert_string_equal(json_string_value(json_object_get(j, "policy")), "home");
        assert_true(close_enough(number(j, "egress_usd"), HOME_EGRESS_USD));
        assert_true(close_enough(number(j, "storage_usd"), HOME_STORAGE_USD));
        assert_true(close_enough(number(j, "transfer_usd"), 0));
        assert_true(close_enough(number(j, "total_usd"), HOME_EGRESS_USD + HOME_STORAGE_USD));
        assert_int_equal(json_integer_value(json_object_get(j, "egress_bytes")), 6500000000ll);
        assert_true(close_enough(number(j, "local_read_ratio"), 0));
        assert_true(close_enough(number(j, "read_latency_ms_p50"), 40060));
        assert_true(close_enough(number(j, "read_latency_ms_p99"), 80080));
        assert_int_equal(json_integer_value(json_object_get(j, "constraint_violations")), 0);
        assert_int_equal(json_integer_value(json_object_get(j, "events")), 9);
        json_decref(j);
        result_free(&r);
    }
    /* full, with a bucket policy for bk that excludes c: "full" is then a and b only. */
    free(topology);
    topology = write_topology("topology.json", "{\"bk\": {\"allowed_regions\": [\"a\", \"b\"]}}");
    char *argv[] = {"ternctl", "-o",      "json", "sim",      "--topology",
                    topology,  "--trace", trace,  "--policy", "full"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    json_t *j = parse_json(r.out);
    check_result_fields(j);
    assert_true(close_enough(number(j, "transfer_usd"), (2 + 1 + 4) * 0.02));
    assert_true(close_enough(number(j, "egress_usd"), 0.5 * 0.05 + 4 * 0.05));
    assert_true(close_enough(number(j, "storage_usd"), (0.023 + 0.0125) * 69 / 720.0));
    assert_true(close_enough(number(j, "local_read_ratio"), 1.0 / 3));
    json_decref(j);
    result_free(&r);
    free(topology);
    free(trace);
}

/* ---------------------------------------------------------------- --compare and --plot */

static const char *const policies[] = {"bandit",    "full",     "home",    "static-k",
                                       "lru-cache", "counting", "epsilon", "oracle"};
#define POLICY_COUNT 8

static void test_compare_table(void **state)
{
    (void)state;
    char *topology = write_topology("topology.json", "");
    char *trace = write_file("trace.csv", trace_csv);
    char *argv[] = {"ternctl", "sim", "--topology", topology, "--trace", trace, "--compare"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    const char *line = r.out;
    char head[10][16];
    assert_int_equal(sscanf(line, "%15s %15s %15s %15s %15s %15s %15s %15s %15s", head[0], head[1],
                            head[2], head[3], head[4], head[5], head[6], head[7], head[8]),
                     9);
    assert_string_equal(head[0], "POLICY");
    assert_string_equal(head[1], "TOTAL_USD");
    assert_string_equal(head[5], "X_ORACLE");
    assert_string_equal(head[6], "X_FULL");
    assert_string_equal(head[8], "VIOLATIONS");
    double totals[POLICY_COUNT], x_oracle[POLICY_COUNT], x_full[POLICY_COUNT];
    for (int p = 0; p < POLICY_COUNT; p++) {
        line = strchr(line, '\n');
        assert_non_null(line);
        line++;
        char name[16];
        double egress, storage, transfer, local;
        unsigned long long violations;
        assert_int_equal(sscanf(line, "%15s %lf %lf %lf %lf %lf %lf %lf %llu", name, &totals[p],
                                &egress, &storage, &transfer, &x_oracle[p], &x_full[p], &local,
                                &violations),
                         9);
        assert_string_equal(name, policies[p]);
        assert_int_equal(violations, 0);
    }
    assert_string_equal(strchr(line, '\n'), "\n"); /* eight rows, nothing after */
    /* The oracle's row is 1 against itself, full's 1 against full; nobody beats the oracle. */
    assert_true(fabs(x_oracle[7] - 1) < 1e-9);
    assert_true(fabs(x_full[1] - 1) < 1e-9);
    for (int p = 0; p < POLICY_COUNT; p++) {
        assert_true(x_oracle[p] >= 1 - 1e-4);
        assert_true(fabs(x_oracle[p] - totals[p] / totals[7]) < 1e-4);
    }
    assert_true(fabs(totals[2] - (HOME_EGRESS_USD + HOME_STORAGE_USD)) <= 1e-8 * totals[2]);
    assert_true(fabs(totals[1] - (FULL_TRANSFER + FULL_STORAGE_USD)) <= 1e-8 * totals[1]);
    result_free(&r);
    free(topology);
    free(trace);
}

static void test_compare_json(void **state)
{
    (void)state;
    char *topology = write_topology("topology.json", "");
    char *trace = write_file("trace.csv", trace_csv);
    char *argv[] = {"ternctl", "sim",       "--topology", topology, "--trace",
                    trace,     "--compare", "-o",         "json"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    json_t *all = parse_json(r.out);
    assert_true(json_is_array(all));
    assert_int_equal(json_array_size(all), POLICY_COUNT);
    double oracle = number(json_array_get(all, 7), "total_usd");
    double full = number(json_array_get(all, 1), "total_usd");
    for (size_t p = 0; p < POLICY_COUNT; p++) {
        json_t *o = json_array_get(all, p);
        check_result_fields(o);
        assert_string_equal(json_string_value(json_object_get(o, "policy")), policies[p]);
        assert_int_equal(json_integer_value(json_object_get(o, "constraint_violations")), 0);
        assert_int_equal(json_integer_value(json_object_get(o, "events")), 9);
        double total = number(o, "total_usd");
        assert_true(close_enough(number(o, "ratio_to_oracle"), total / oracle));
        assert_true(close_enough(number(o, "ratio_to_full"), total / full));
        assert_true(number(o, "ratio_to_oracle") >= 1 - 1e-9);
    }
    assert_true(number(json_array_get(all, 7), "ratio_to_oracle") == 1.0);
    assert_true(number(json_array_get(all, 1), "ratio_to_full") == 1.0);
    assert_true(close_enough(number(json_array_get(all, 2), "total_usd"),
                             HOME_EGRESS_USD + HOME_STORAGE_USD));
    assert_true(close_enough(full, FULL_TRANSFER + FULL_STORAGE_USD));
    json_decref(all);
    result_free(&r);
    free(topology);
    free(trace);
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_compare_plot(void **state)
{
    (void)state;
    char *topology = write_topology("topology.json", "");
    char *trace = write_file("trace.csv", trace_csv);
    char *svg = path_of("cost.svg");
    char *argv[] = {"ternctl", "sim",       "--topology", topology, "--trace",
                    trace,     "--compare", "--plot",     svg};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    expect_substring(r.out, "POLICY"); /* the table is still printed */
    result_free(&r);
    char *text = read_file(svg, NULL);
    assert_int_equal(strncmp(text, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39), 0);
    assert_non_null(strstr(text, "</svg>\n"));
    /* One line per policy, each with its legend, and more than one point in each. */
    assert_int_equal(count_of(text, "<polyline") + count_of(text, "<path"), POLICY_COUNT);
    for (const char *p = strstr(text, "points=\""); p != NULL; p = strstr(p + 1, "points=\"")) {
        const char *end = strchr(p + 8, '"');
        assert_non_null(end);
        size_t commas = 0;
        for (const char *c = p + 8; c < end; c++)
            commas += *c == ',';
        assert_true(commas >= 2);
    }
    for (int p = 0; p < POLICY_COUNT; p++) {
        char legend[64];
        snprintf(legend, sizeof legend, ">%s</text>", policies[p]);
        expect_substring(text, legend);
    }
    free(text);
    /* A plot that cannot be written is a failure that names the file. */
    char *bad = path_of("no/such/dir/cost.svg");
    argv[8] = bad;
    r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 1);
    expect_substring(r.err, "cannot write");
    expect_substring(r.err, "no/such/dir/cost.svg");
    result_free(&r);
    free(bad);
    free(svg);
    free(topology);
    free(trace);
}

/* ---------------------------------------------------------------- sim gen */

static char *gen(const char *name, const char *seed, const char *scenario, const char *regions)
{
    char *out = path_of(name);
    char *argv[] = {"ternctl",        "sim",       "gen",           "--seed", (char *)seed,
                    "--objects",      "25",        "--events",      "400",    "--scenario",
                    (char *)scenario, "--regions", (char *)regions, "--out",  out};
    run_result r = run(ARGC(argv), argv);
    if (r.rc != 0) fail_msg("sim gen: exit %d: %s", r.rc, r.err);
    assert_string_equal(r.out, "");
    result_free(&r);
    return out;
}

static void test_gen_deterministic(void **state)
{
    (void)state;
    static const char *const scenarios[] = {"stable-skew", "follow-the-sun", "flash-crowd", "drift",
                                            "write-heavy"};
    static const char *const regions[] = {"us-east", "us-west", "eu-west", "ap-northeast"};
    char *topology = write_topology_of("gen-topology.json", regions, 4);
    for (size_t s = 0; s < sizeof scenarios / sizeof scenarios[0]; s++) {
        const char *region_list = "us-east,us-west,eu-west,ap-northeast";
        char *p1 = gen("gen1.csv", "7", scenarios[s], region_list);
        char *p2 = gen("gen2.csv", "7", scenarios[s], region_list);
        char *p3 = gen("gen3.csv", "8", scenarios[s], region_list);
        size_t n1, n2, n3;
        char *t1 = read_file(p1, &n1), *t2 = read_file(p2, &n2), *t3 = read_file(p3, &n3);
        assert_int_equal(n1, n2);
        assert_memory_equal(t1, t2, n1);
        assert_true(n1 != n3 || memcmp(t1, t3, n1) != 0);
        /* The header, then objects + events lines. */
        assert_int_equal(strncmp(t1, "ts_ms,region,op,bucket,key,bytes\n", 33), 0);
        assert_int_equal(count_of(t1, "\n"), 1 + 25 + 400);
        /* The simulator accepts it. */
        char *argv[] = {"ternctl", "-o",      "json", "sim",      "--topology",
                        topology,  "--trace", p1,     "--policy", "full"};
        run_result r = run(ARGC(argv), argv);
        if (r.rc != 0) fail_msg("%s: sim exit %d: %s", scenarios[s], r.rc, r.err);
        json_t *j = parse_json(r.out);
        check_result_fields(j);
        assert_int_equal(json_integer_value(json_object_get(j, "events")), 25 + 400);
        assert_int_equal(json_integer_value(json_object_get(j, "constraint_violations")), 0);
        json_decref(j);
        result_free(&r);
        free(t1);
        free(t2);
        free(t3);
        free(p1);
        free(p2);
        free(p3);
    }
    /* Without --out the trace goes to stdout, the same bytes. */
    char *p1 = gen("gen1.csv", "11", "drift", "x,y");
    char *t1 = read_file(p1, NULL);
    char *argv[] = {"ternctl",  "sim", "gen",        "--seed", "11",        "--objects", "25",
                    "--events", "400", "--scenario", "drift",  "--regions", "x,y"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, t1);
    /* Only the two named regions appear. */
    for (const char *line = strchr(t1, '\n') + 1; *line; line = strchr(line, '\n') + 1) {
        const char *region = strchr(line, ',') + 1;
        assert_true(strncmp(region, "x,", 2) == 0 || strncmp(region, "y,", 2) == 0);
    }
    result_free(&r);
    free(t1);
    free(p1);
    free(topology);
}

/* ---------------------------------------------------------------- convert-wc98 */

typedef struct {
    uint32_t ts, client, object, size;
    uint8_t method, status, type, server;
} wc98_record;

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes the records as 20-byte big-endian records, plus `tail` stray bytes. */
static char *write_wc98(const char *name, const wc98_record *recs, size_t n, size_t tail)
{
    unsigned char *buf = calloc(n * 20 + tail + 1, 1);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++) {
        unsigned char *p = buf + 20 * i;
        put_be32(p, recs[i].ts);
        put_be32(p + 4, recs[i].client);
        put_be32(p + 8, recs[i].object);
        put_be32(p + 12, recs[i].size);
        p[16] = recs[i].method;
        p[17] = recs[i].status;
        p[18] = recs[i].type;
        p[19] = recs[i].server;
    }
    memset(buf + n * 20, 0x7f, tail);
    char *path = write_bytes(name, buf, n * 20 + tail);
    free(buf);
    return path;
}

#define SITE(s, server) ((uint8_t)((s) << 5 | (server)))

static void test_convert_wc98(void **state)
{
    (void)state;
    static const wc98_record day1[] = {
        /* object 5 first seen at Santa Clara (site 0): a PUT, then the GET */
        {894000000, 1, 5, 1000, 0, 0, 1, SITE(0, 3)},
        /* the same object from Paris (site 3, server 31): only a GET */
        {894000000, 2, 5, 1000, 0, 12, 1, SITE(3, 31)},
        /* not a GET (method 1): skipped */
        {894000001, 3, 6, 500, 1, 0, 1, SITE(1, 0)},
        /* size 0 (e.g. not modified): skipped, and object 9 is not "seen" */
        {894000001, 4, 9, 0, 0, 0, 1, SITE(2, 0)},
        /* an earlier second than the previous kept record: raised to it; Plano (site 1);
         * status is not examined */
        {893999999, 5, 7, 20, 0, 200, 2, SITE(1, 4)},
        /* Herndon (site 2) */
        {894000005, 6, 7, 20, 0, 0, 2, SITE(2, 9)},
    };
    static const wc98_record day2[] = {
        {894000004, 7, 9, 300, 0, 0, 1, SITE(3, 0)}, /* earlier than day1's last: raised */
        {894000100, 8, 5, 999, 0, 0, 1, SITE(2, 0)}, /* object 5 again: a GET of its own size */
    };
    char *f1 = write_wc98("wc_day1_1", day1, sizeof day1 / sizeof day1[0], 0);
    char *f2 = write_wc98("wc_day2_1", day2, sizeof day2 / sizeof day2[0], 0);
    char *csv = path_of("wc98.csv");
    char *argv[] = {"ternctl", "sim", "convert-wc98", "--out", csv, f1, f2};
    run_result r = run(ARGC(argv), argv);
    if (r.rc != 0) fail_msg("convert-wc98: exit %d: %s", r.rc, r.err);
    assert_string_equal(r.err, "");
    result_free(&r);
    static const char expected[] = "ts_ms,region,op,bucket,key,bytes\n"
                                   "894000000000,santa-clara,PUT,wc98,5,1000\n"
                                   "894000000000,santa-clara,GET,wc98,5,1000\n"
                                   "894000000000,paris,GET,wc98,5,1000\n"
                                   "894000000000,plano,PUT,wc98,7,20\n"
                                   "894000000000,plano,GET,wc98,7,20\n"
                                   "894000005000,herndon,GET,wc98,7,20\n"
                                   "894000005000,paris,PUT,wc98,9,300\n"
                                   "894000005000,paris,GET,wc98,9,300\n"
                                   "894000100000,herndon,GET,wc98,5,999\n";
    char *text = read_file(csv, NULL);
    assert_string_equal(text, expected);
    free(text);

    /* Without --out it goes to stdout; and the trace is one the simulator accepts. */
    char *argv_stdout[] = {"ternctl", "sim", "convert-wc98", f1, f2};
    r = run(ARGC(argv_stdout), argv_stdout);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, expected);
    result_free(&r);
    static const char *const sites[] = {"santa-clara", "plano", "herndon", "paris"};
    char *topology = write_topology_of("wc98-topology.json", sites, 4);
    char *argv_sim[] = {"ternctl", "-o",      "json", "sim",      "--topology",
                        topology,  "--trace", csv,    "--policy", "home"};
    r = run(ARGC(argv_sim), argv_sim);
    if (r.rc != 0) fail_msg("sim on the converted trace: exit %d: %s", r.rc, r.err);
    json_t *j = parse_json(r.out);
    assert_int_equal(json_integer_value(json_object_get(j, "events")), 9);
    assert_int_equal(json_integer_value(json_object_get(j, "constraint_violations")), 0);
    /* home: the reads at Paris (1000 bytes from Santa Clara) and Herndon (20 from Plano, 999
     * from Santa Clara) are remote, at 0.02 $/GB in this topology. */
    assert_int_equal(json_integer_value(json_object_get(j, "egress_bytes")), 1000 + 20 + 999);
    assert_true(close_enough(number(j, "egress_usd"), (1000 + 20 + 999) * 0.02 / 1e9));
    json_decref(j);
    result_free(&r);
    free(topology);
    free(f1);
    free(f2);
    free(csv);
}

/* Object ids beyond the first bitmap's reach still get their PUT before their first GET. */
static void test_convert_wc98_large_ids(void **state)
{
    (void)state;
    static const wc98_record recs[] = {{894000000, 1, 40000000, 1000, 0, 0, 1, SITE(0, 0)},
                                       {894000001, 1, 40000000, 1000, 0, 0, 1, SITE(1, 0)}};
    char *f = write_wc98("wc_large", recs, 2, 0);
    char *argv[] = {"ternctl", "sim", "convert-wc98", f};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "ts_ms,region,op,bucket,key,bytes\n"
                               "894000000000,santa-clara,PUT,wc98,40000000,1000\n"
                               "894000000000,santa-clara,GET,wc98,40000000,1000\n"
                               "894000001000,plano,GET,wc98,40000000,1000\n");
    result_free(&r);
    free(f);
}

/* -o/--output is the report format of a replay; the CSV writers refuse it by name. */
static void test_output_option_with_subcommands(void **state)
{
    (void)state;
    char *argv[] = {"ternctl", "-o", "json", "sim", "gen", "--events", "10"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 2);
    expect_substring(r.err, "sim gen writes a CSV trace: -o/--output does not apply");
    result_free(&r);
}

static void test_convert_wc98_errors(void **state)
{
    (void)state;
    static const wc98_record good[] = {{894000000, 1, 5, 1000, 0, 0, 1, SITE(0, 0)},
                                       {894000001, 1, 6, 10, 0, 0, 1, SITE(1, 0)}};
    /* A site beyond 3 in record 3. */
    wc98_record bad_site[] = {good[0], good[1], {894000002, 1, 7, 10, 0, 0, 1, SITE(4, 2)}};
    char *f = write_wc98("wc_bad_site", bad_site, 3, 0);
    char *csv = path_of("out.csv");
    char *argv[] = {"ternctl", "sim", "convert-wc98", "--out", csv, f};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 1);
    expect_substring(r.err, "wc_bad_site: record 3: field server: site 4 is not 0-3");
    result_free(&r);
    /* A half-converted trace is not left behind to be mistaken for a whole one. */
    assert_int_equal(access(csv, F_OK), -1);
    free(f);

    /* Files out of time order (a glob's wc_day10 before wc_day2) are refused, not clamped. */
    static const wc98_record later[] = {{894100000, 1, 5, 1000, 0, 0, 1, SITE(0, 0)}};
    char *f_later = write_wc98("wc_later", later, 1, 0);
    char *f_earlier = write_wc98("wc_earlier", good, 2, 0);
    char *argv_order[] = {"ternctl", "sim", "convert-wc98", "--out", csv, f_later, f_earlier};
    r = run(ARGC(argv_order), argv_order);
    assert_int_equal(r.rc, 1);
    expect_substring(r.err, "wc_earlier: record 1: field timestamp: 894000000 is before the "
                            "previous file's last record (894100000)");
    assert_int_equal(access(csv, F_OK), -1);
    result_free(&r);
    free(f_later);
    free(f_earlier);

    /* A truncated last record: 7 of 20 bytes. */
    f = write_wc98("wc_truncated", good, 2, 7);
    argv[5] = f;
    r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 1);
    expect_substring(r.err, "wc_truncated: a truncated record at the end (7 of 20 bytes)");
    result_free(&r);
    free(f);

    /* A file shorter than one record. */
    f = write_wc98("wc_short", good, 0, 19);
    argv[5] = f;
    r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 1);
    expect_substring(r.err, "wc_short: a truncated record at the end (19 of 20 bytes)");
    result_free(&r);
    free(f);

    /* A missing input, and an output that cannot be written. */
    f = path_of("wc_missing");
    argv[5] = f;
    r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 1);
    expect_substring(r.err, "wc_missing: No such file or directory");
    result_free(&r);
    free(f);
    f = write_wc98("wc_good", good, 2, 0);
    char *bad_out = path_of("no/dir/out.csv");
    char *argv2[] = {"ternctl", "sim", "convert-wc98", "--out", bad_out, f};
    r = run(ARGC(argv2), argv2);
    assert_int_equal(r.rc, 1);
    expect_substring(r.err, "cannot write");
    result_free(&r);
    /* An empty file converts to the header alone. */
    char *empty = write_bytes("wc_empty", "", 0);
    char *argv3[] = {"ternctl", "sim", "convert-wc98", empty};
    r = run(ARGC(argv3), argv3);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "ts_ms,region,op,bucket,key,bytes\n");
    result_free(&r);
    free(empty);
    free(bad_out);
    free(f);
    free(csv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_traces),
        cmocka_unit_test(test_malformed_topologies),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_gen_usage_names_option),
        cmocka_unit_test(test_run_table),
        cmocka_unit_test(test_run_json),
        cmocka_unit_test(test_compare_table),
        cmocka_unit_test(test_compare_json),
        cmocka_unit_test(test_compare_plot),
        cmocka_unit_test(test_gen_deterministic),
        cmocka_unit_test(test_convert_wc98),
        cmocka_unit_test(test_convert_wc98_errors),
        cmocka_unit_test(test_convert_wc98_large_ids),
        cmocka_unit_test(test_output_option_with_subcommands),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
