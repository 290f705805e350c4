/* ternctl bucket policy tests: ops_main in-process against a canned-response HTTP server. */
#include "ternctl_canned.h"

#define POLICY_JSON                                                                                \
    "{\"bucket\":\"eu-docs\",\"min_regions\":2,\"allowed_regions\":[\"eu-west\",\"eu-central\"],"  \
    "\"pinned_regions\":[\"eu-west\"],\"rpo_seconds\":30,\"rto_seconds\":600}"

#define DEFAULT_POLICY_JSON                                                                        \
    "{\"bucket\":\"logs\",\"min_regions\":1,\"allowed_regions\":[],\"pinned_regions\":[],"         \
    "\"rpo_seconds\":0,\"rto_seconds\":0}"

/* The request line is "METHOD PATH", and the request is signed as the node will check it. */
static void assert_signed_request(const test_server *s, const char *method, const char *path,
                                  const char *body)
{
    char line[256];
    snprintf(line, sizeof line, "%s %s HTTP/1.1\r\n", method, path);
    assert_true(strncmp(s->head, line, strlen(line)) == 0);
    assert_string_equal(s->body, body);
    assert_non_null(strstr(s->head, AUTH_PREFIX));
    assert_sigv4(s->head, method, path, body, SECRET);
}

/* ---------------- set ---------------- */

static const char policy_table[] = "Bucket       eu-docs\n"
                                   "Min regions  2\n"
                                   "Allowed      eu-west, eu-central\n"
                                   "Pinned       eu-west\n"
                                   "RPO          30s\n"
                                   "RTO          10m\n";

static void test_set_sends_policy(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", POLICY_JSON);
    char *url = endpoint_of(s->port);
    const char *const words[] = {"bucket",        "policy",  "set",       "eu-docs",
                                 "--min-regions", "2",       "--allowed", "eu-west,eu-central",
                                 "--pinned",      "eu-west", "--rpo",     "30s",
                                 "--rto",         "10m",     NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out, policy_table);
    pthread_mutex_lock(&s->lock);
    assert_int_equal(s->request_count, 1);
    assert_signed_request(s, "PUT", "/_tern/buckets/eu-docs/policy",
                          "{\"min_regions\":2,\"allowed_regions\":[\"eu-west\",\"eu-central\"],"
                          "\"pinned_regions\":[\"eu-west\"],\"rpo_seconds\":30,"
                          "\"rto_seconds\":600}");
    char value[128];
    assert_true(header_value(s->head, "Content-Type", value, sizeof value));
    assert_string_equal(value, "application/json");
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    free(url);
    server_stop(s);
}

/* Only the options given go in the body (the node keeps the rest), in any order and form. */
static void test_set_sends_only_given_fields(void **state)
{
    (void)state;
    static const struct {
        const char *words[10];
        const char *body;
    } cases[] = {
        {{"--rto", "1d"}, "{\"rto_seconds\":86400}"},
        {{"--rpo", "45"}, "{\"rpo_seconds\":45}"},
        {{"--rpo", "0s", "--rto", "2h"}, "{\"rpo_seconds\":0,\"rto_seconds\":7200}"},
        {{"--min-regions=3"}, "{\"min_regions\":3}"},
        {{"--allowed", ""}, "{\"allowed_regions\":[]}"},
        {{"--pinned="}, "{\"pinned_regions\":[]}"},
        {{"--pinned", "eu-west,us-east"}, "{\"pinned_regions\":[\"eu-west\",\"us-east\"]}"},
        {{"--rpo", "365d"}, "{\"rpo_seconds\":31536000}"},
    };
    test_server *s = server_start(200, "OK", "application/json", POLICY_JSON);
    char *url = endpoint_of(s->port);
    for (int i = 0; i < ARGC(cases); i++) {
        const char *words[16] = {"bucket", "policy", "set", "eu-docs"};
        int n = 4;
        for (int w = 0; cases[i].words[w] != NULL; w++)
            words[n++] = cases[i].words[w];
        run_result r = run(url, words);
        assert_int_equal(r.rc, 0);
        pthread_mutex_lock(&s->lock);
        assert_int_equal(s->request_count, i + 1);
        assert_signed_request(s, "PUT", "/_tern/buckets/eu-docs/policy", cases[i].body);
        pthread_mutex_unlock(&s->lock);
        result_free(&r);
    }
    free(url);
    server_stop(s);
}

/* Node options and set options mix, before and after the command words. */
static void test_set_options_anywhere_json(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", POLICY_JSON);
    char *url = endpoint_of(s->port);
    const char *const words[] = {"--rpo", "30s",     "bucket",        "policy", "-o", "json",
                                 "set",   "eu-docs", "--min-regions", "2",      NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    json_t *printed = json_loads(r.out, 0, NULL), *sent = json_loads(POLICY_JSON, 0, NULL);
    assert_non_null(printed);
    assert_true(json_equal(printed, sent)); /* the node's document as it came */
    json_decref(printed);
    json_decref(sent);
    pthread_mutex_lock(&s->lock);
    assert_signed_request(s, "PUT", "/_tern/buckets/eu-docs/policy",
                          "{\"min_regions\":2,\"rpo_seconds\":30}");
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    free(url);
    server_stop(s);
}

/* ---------------- get and reset ---------------- */

static void test_get_table(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", POLICY_JSON);
    char *url = endpoint_of(s->port);
    const char *const words[] = {"bucket", "policy", "get", "eu-docs", NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out, policy_table);
    pthread_mutex_lock(&s->lock);
    assert_signed_request(s, "GET", "/_tern/buckets/eu-docs/policy", "");
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    free(url);
    server_stop(s);
}

/* A bucket never given a policy: [] reads "all" and "none"; durations in mixed units. */
static void test_get_defaults_and_units(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", DEFAULT_POLICY_JSON);
    char *url = endpoint_of(s->port);
    const char *const words[] = {"bucket", "policy", "get", "logs", NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "Bucket       logs\n"
                               "Min regions  1\n"
                               "Allowed      all\n"
                               "Pinned       none\n"
                               "RPO          0s\n"
                               "RTO          0s\n");
    result_free(&r);
    server_stop(s);
    s = server_start(200, "OK", "application/json",
                     "{\"bucket\":\"logs\",\"min_regions\":1,\"allowed_regions\":[],"
                     "\"pinned_regions\":[],\"rpo_seconds\":5400,\"rto_seconds\":93784}");
    free(url);
    url = endpoint_of(s->port);
    r = run(url, words);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "RPO          1h 30m\n"));
    assert_non_null(strstr(r.out, "RTO          1d 2h 3m 4s\n"));
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_get_json(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", DEFAULT_POLICY_JSON);
    char *url = endpoint_of(s->port);
    const char *const words[] = {"bucket", "policy", "get", "logs", "-o", "json", NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 0);
    json_t *printed = json_loads(r.out, 0, NULL), *sent = json_loads(DEFAULT_POLICY_JSON, 0, NULL);
    assert_non_null(printed);
    assert_true(json_equal(printed, sent));
    json_decref(printed);
    json_decref(sent);
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_reset(void **state)
{
    (void)state;
    test_server *s = server_start(204, "No Content", NULL, NULL);
    char *url = endpoint_of(s->port);
    const char *const words[] = {"bucket", "policy", "reset", "eu-docs", NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out, "bucket eu-docs: policy reset to the defaults\n");
    pthread_mutex_lock(&s->lock);
    assert_signed_request(s, "DELETE", "/_tern/buckets/eu-docs/policy", "");
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    /* There is no document to print, and JSON output does not invent one. */
    const char *const json_words[] = {"-o", "json", "bucket", "policy", "reset", "eu-docs", NULL};
    r = run(url, json_words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "");
    result_free(&r);
    free(url);
    server_stop(s);
}

/* ---------------- errors ---------------- */

static void test_usage_errors(void **state)
{
    (void)state;
    static const struct {
        const char *words[10];
        const char *message;
    } cases[] = {
        {{"bucket"}, "ternctl: bucket: missing subcommand (policy)\n"},
        {{"bucket", "acl"}, "ternctl: unknown bucket command 'acl'\n"},
        {{"bucket", "policy"}, "ternctl: bucket policy: missing subcommand (get, set or reset)\n"},
        {{"bucket", "policy", "delete", "b"}, "ternctl: unknown bucket policy command 'delete'\n"},
        {{"bucket", "policy", "get"}, "ternctl: bucket policy get: missing BUCKET\n"},
        {{"bucket", "policy", "set", "--rpo", "30s"},
         "ternctl: bucket policy set: missing BUCKET\n"},
        {{"bucket", "policy", "reset"}, "ternctl: bucket policy reset: missing BUCKET\n"},
        {{"bucket", "policy", "get", "a/b"},
         "ternctl: bucket policy get: invalid bucket name 'a/b'"},
        {{"bucket", "policy", "get", "Docs"},
         "ternctl: bucket policy get: invalid bucket name 'Docs'"},
        {{"bucket", "policy", "get", "b", "c"}, "ternctl: unexpected argument 'c'"},
        {{"bucket", "policy", "set", "b"},
         "ternctl: bucket policy set: nothing to change: give at least one of --min-regions, "
         "--allowed, --pinned, --rpo, --rto\n"},
        {{"bucket", "policy", "set", "b", "--bogus", "1"}, "ternctl: unknown option '--bogus'\n"},
        {{"bucket", "policy", "set", "b", "--rpo"},
         "ternctl: option '--rpo' requires an argument\n"},
        {{"bucket", "policy", "set", "b", "--rpo", "10x"}, "ternctl: invalid --rpo '10x': "},
        {{"bucket", "policy", "set", "b", "--rpo", "-5s"}, "ternctl: invalid --rpo '-5s': "},
        {{"bucket", "policy", "set", "b", "--rto", "s"}, "ternctl: invalid --rto 's': "},
        {{"bucket", "policy", "set", "b", "--rto", ""}, "ternctl: invalid --rto '': "},
        {{"bucket", "policy", "set", "b", "--rto", "10 m"}, "ternctl: invalid --rto '10 m': "},
        {{"bucket", "policy", "set", "b", "--rto", "1.5h"}, "ternctl: invalid --rto '1.5h': "},
        {{"bucket", "policy", "set", "b", "--rto", "366d"}, "ternctl: invalid --rto '366d': "},
        {{"bucket", "policy", "set", "b", "--rpo", "99999999999999999999s"},
         "ternctl: invalid --rpo '99999999999999999999s': "},
        {{"bucket", "policy", "set", "b", "--min-regions", "0"},
         "ternctl: invalid --min-regions '0': expected an integer >= 1\n"},
        {{"bucket", "policy", "set", "b", "--min-regions", "two"},
         "ternctl: invalid --min-regions 'two'"},
        {{"bucket", "policy", "set", "b", "--min-regions", "-1"},
         "ternctl: invalid --min-regions '-1'"},
        {{"bucket", "policy", "set", "b", "--allowed", "eu-west,"},
         "ternctl: invalid --allowed 'eu-west,'"},
        {{"bucket", "policy", "set", "b", "--pinned", "a,,b"}, "ternctl: invalid --pinned 'a,,b'"},
        {{"bucket", "policy", "set", "b", "--pinned", "eu west"},
         "ternctl: invalid --pinned 'eu west'"},
        {{"bucket", "policy", "set", "b", "--rpo", "1s", "--rpo", "2s"},
         "ternctl: bucket policy set: option '--rpo' given twice\n"},
        {{"bucket", "policy", "get", "b", "--rpo", "1s"},
         "ternctl: bucket policy get: option '--rpo' applies only to 'bucket policy set'\n"},
        {{"bucket", "policy", "reset", "b", "--allowed", ""},
         "ternctl: bucket policy reset: option '--allowed' applies only to 'bucket policy set'\n"},
        {{"status", "--min-regions", "2"},
         "ternctl: option '--min-regions' applies only to 'bucket policy set'\n"},
    };
    for (int i = 0; i < ARGC(cases); i++) {
        /* No endpoint and no credentials: usage errors come before either is needed. */
        run_result r = run(NULL, cases[i].words);
        if (r.rc != 2 || strncmp(r.err, cases[i].message, strlen(cases[i].message)) != 0)
            fail_msg("case %d: rc %d, err: %s", i, r.rc, r.err);
        assert_non_null(strstr(r.err, "\n\nUsage: ternctl"));
        assert_string_equal(r.out, "");
        result_free(&r);
    }
}

static void expect_node_error(int status, const char *reason, const char *content_type,
                              const char *body, const char *const *words, const char *expected)
{
    test_server *s = server_start(status, reason, content_type, body);
    char *url = endpoint_of(s->port);
    run_result r = run(url, words);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, expected);
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_node_errors(void **state)
{
    (void)state;
    const char *const get[] = {"bucket", "policy", "get", "nope", NULL};
    expect_node_error(404, "Not Found", "application/xml",
                      S3_ERROR_XML("NoSuchBucket", "The specified bucket does not exist."), get,
                      "ternctl: bucket policy get nope: 404 NoSuchBucket: The specified bucket "
                      "does not exist.\n");
    const char *const set[] = {"bucket",     "policy",   "set",     "eu-docs", "--allowed",
                               "eu-central", "--pinned", "eu-west", NULL};
    expect_node_error(400, "Bad Request", "application/xml",
                      S3_ERROR_XML("InvalidPolicy", "pinned_regions: eu-west is not in "
                                                    "allowed_regions"),
                      set,
                      "ternctl: bucket policy set eu-docs: 400 InvalidPolicy: pinned_regions: "
                      "eu-west is not in allowed_regions\n");
    const char *const set_rpo[] = {"bucket", "policy", "set", "eu-docs", "--rpo", "1s", NULL};
    expect_node_error(400, "Bad Request", "application/xml",
                      S3_ERROR_XML("MalformedJSON", "not &quot;JSON&quot;"), set_rpo,
                      "ternctl: bucket policy set eu-docs: 400 MalformedJSON: not \"JSON\"\n");
    const char *const reset[] = {"bucket", "policy", "reset", "nope", NULL};
    expect_node_error(404, "Not Found", "application/xml",
                      S3_ERROR_XML("NoSuchBucket", "The specified bucket does not exist."), reset,
                      "ternctl: bucket policy reset nope: 404 NoSuchBucket: The specified bucket "
                      "does not exist.\n");
    expect_node_error(403, "Forbidden", "application/xml",
                      S3_ERROR_XML("SignatureDoesNotMatch", "Bad signature."), get,
                      "ternctl: the node refused the credentials (SignatureDoesNotMatch): Bad "
                      "signature.\n");
}

/* A 200 whose body is not a policy document, and an error that is not S3 XML. */
static void test_odd_answers(void **state)
{
    (void)state;
    const char *const get[] = {"bucket", "policy", "get", "b", NULL};
    test_server *s = server_start(200, "OK", "application/json", "[1,2]");
    char *url = endpoint_of(s->port);
    run_result r = run(url, get);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "/_tern/buckets/b/policy returned JSON that is not an object"));
    result_free(&r);
    free(url);
    server_stop(s);
    s = server_start(502, "Bad Gateway", "text/plain", "upstream down\n");
    url = endpoint_of(s->port);
    r = run(url, get);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "/_tern/buckets/b/policy: HTTP 502: upstream down\n"));
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_unreachable(void **state)
{
    (void)state;
    int port;
    int fd = bind_loopback(false, &port); /* bound, not listening: connections are refused */
    char *url = endpoint_of(port);
    const char *const words[] = {"bucket", "policy", "set", "b", "--rpo", "30s", NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 1);
    char *expected;
    assert_true(asprintf(&expected, "ternctl: cannot reach the node at %s: ", url) > 0);
    assert_true(strncmp(r.err, expected, strlen(expected)) == 0);
    assert_string_equal(r.out, "");
    free(expected);
    result_free(&r);
    free(url);
    close(fd);
}

static void test_help_lists_bucket_policy(void **state)
{
    (void)state;
    const char *const words[] = {"help", NULL};
    run_result r = run(NULL, words);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "  bucket policy get BUCKET\n"));
    assert_non_null(strstr(r.out, "  bucket policy set BUCKET [--min-regions N]"));
    assert_non_null(strstr(r.out, "  bucket policy reset BUCKET\n"));
    result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_set_sends_policy, clean_env),
        cmocka_unit_test_setup(test_set_sends_only_given_fields, clean_env),
        cmocka_unit_test_setup(test_set_options_anywhere_json, clean_env),
        cmocka_unit_test_setup(test_get_table, clean_env),
        cmocka_unit_test_setup(test_get_defaults_and_units, clean_env),
        cmocka_unit_test_setup(test_get_json, clean_env),
        cmocka_unit_test_setup(test_reset, clean_env),
        cmocka_unit_test_setup(test_usage_errors, clean_env),
        cmocka_unit_test_setup(test_node_errors, clean_env),
        cmocka_unit_test_setup(test_odd_answers, clean_env),
        cmocka_unit_test_setup(test_unreachable, clean_env),
        cmocka_unit_test_setup(test_help_lists_bucket_policy, clean_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
