/* ternctl placement explain|stats tests: ops_main in-process against a canned-response server. */
#include "ternctl_canned.h"

/* The request line is "GET TARGET" (path and query exactly as given), the body is empty, and
 * the request is signed as the node will check it. */
static void assert_signed_get(const test_server *s, const char *target)
{
    char line[4096];
    snprintf(line, sizeof line, "GET %s HTTP/1.1\r\n", target);
    assert_true(strncmp(s->head, line, strlen(line)) == 0);
    assert_string_equal(s->body, "");
    assert_non_null(strstr(s->head, AUTH_PREFIX));
    assert_sigv4(s->head, "GET", target, "", SECRET);
}

/* ---------------- fixtures ---------------- */

/* One region per reason, tiny dollars (millionths) and a unicode key with '/', ' ' and '+'. */
#define EXPLAIN_JSON                                                                               \
    "{\"bucket\":\"photos\",\"key\":\"2024/a b+c \xC3\xA9.jpg\",\"bytes\":1234567,"                \
    "\"holders\":[\"us-east\",\"eu-west\",\"eu-central\",\"us-west\"],"                            \
    "\"from_prefix_prior\":false,\"life_days\":6.9,\"regions\":["                                  \
    "{\"name\":\"us-east\",\"held\":true,\"reason\":\"origin\",\"reads_per_day\":12.5,"            \
    "\"reads_per_day_stddev\":3.1,\"saving_usd\":0.0001,\"storage_usd\":0.00002,"                  \
    "\"transfer_usd\":0.0},"                                                                       \
    "{\"name\":\"eu-west\",\"held\":true,\"reason\":\"demand\",\"reads_per_day\":140,"             \
    "\"reads_per_day_stddev\":21.25,\"saving_usd\":0.0004186,\"storage_usd\":0.00002,"             \
    "\"transfer_usd\":0.00009},"                                                                   \
    "{\"name\":\"eu-central\",\"held\":true,\"reason\":\"pinned\",\"reads_per_day\":0,"            \
    "\"reads_per_day_stddev\":0,\"saving_usd\":0,\"storage_usd\":0.00002,"                         \
    "\"transfer_usd\":0.00009},"                                                                   \
    "{\"name\":\"us-west\",\"held\":true,\"reason\":\"min_regions\",\"reads_per_day\":0.5,"        \
    "\"reads_per_day_stddev\":0.25,\"saving_usd\":0.000001,\"storage_usd\":0.00002,"               \
    "\"transfer_usd\":0.00002},"                                                                   \
    "{\"name\":\"ap-south\",\"held\":false,\"reason\":\"none\",\"reads_per_day\":0.0417,"          \
    "\"reads_per_day_stddev\":0.01,\"saving_usd\":2e-7,\"storage_usd\":0.000021,"                  \
    "\"transfer_usd\":0.00011},"                                                                   \
    "{\"name\":\"cn-north\",\"held\":false,\"reason\":\"not_allowed\",\"reads_per_day\":3,"        \
    "\"reads_per_day_stddev\":1,\"saving_usd\":0.00003,\"storage_usd\":0.00002,"                   \
    "\"transfer_usd\":0.00012}]}"

/* The same key sent percent-encoded in the query: '/' %2F, ' ' %20, '+' %2B, 'é' %C3%A9. */
#define EXPLAIN_TARGET "/_tern/placement/explain?bucket=photos&key=2024%2Fa%20b%2Bc%20%C3%A9.jpg"

static const char explain_table[] =
    "photos/2024/a b+c \xC3\xA9.jpg: 1.2 MiB (1234567 bytes), held in us-east, eu-west, "
    "eu-central, us-west; expected version life 6.9 days\n"
    "\n"
    "REGION      HELD  REASON                           READS/DAY   SAVING $  STORAGE $   COPY $\n"
    "us-east     yes   the last write arrived here     12.5 \xC2\xB1 3.1     0.0001    0.00002"
    "        0\n"
    "eu-west     yes   its reads pay for it            140 \xC2\xB1 21.2  0.0004186    0.00002"
    "  0.00009\n"
    "eu-central  yes   pinned by the bucket policy          0 \xC2\xB1 0          0    0.00002"
    "  0.00009\n"
    "us-west     yes   kept to meet min_regions        0.5 \xC2\xB1 0.25   0.000001    0.00002"
    "  0.00002\n"
    "ap-south    no    -                            0.0417 \xC2\xB1 0.01  0.0000002   0.000021"
    "  0.00011\n"
    "cn-north    no    residency forbids it                 3 \xC2\xB1 1    0.00003    0.00002"
    "  0.00012\n";

#define STATS_JSON                                                                                 \
    "{\"region\":\"us-east\",\"algo\":\"thompson\",\"objects_tracked\":10,\"pairs_tracked\":12,"   \
    "\"memory_bytes\":123456,\"bytes_per_pair\":48.1,\"events\":100,\"replicas_added\":3,"         \
    "\"replicas_dropped\":1}"

static const char stats_table[] = "Region            us-east\n"
                                  "Algorithm         thompson\n"
                                  "Objects tracked   10\n"
                                  "Pairs tracked     12\n"
                                  "Memory            120.6 KiB (123456 bytes)\n"
                                  "Bytes per pair    48.1\n"
                                  "Events            100\n"
                                  "Replicas added    3\n"
                                  "Replicas dropped  1\n";

/* The server's document and ternctl's output are the same JSON. */
static void assert_same_json(const char *printed_text, const char *sent_text)
{
    json_t *printed = json_loads(printed_text, 0, NULL), *sent = json_loads(sent_text, 0, NULL);
    assert_non_null(printed);
    assert_non_null(sent);
    assert_true(json_equal(printed, sent));
    json_decref(printed);
    json_decref(sent);
}

/* ---------------- explain ---------------- */

static void test_explain_request_encoded_and_signed(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", EXPLAIN_JSON);
    char *url = endpoint_of(s->port);
    /* Split at the first '/' only: the key keeps its own. */
    const char *const words[] = {"placement", "explain", "photos/2024/a b+c \xC3\xA9.jpg", NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    pthread_mutex_lock(&s->lock);
    assert_int_equal(s->request_count, 1);
    assert_signed_get(s, EXPLAIN_TARGET);
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_explain_table(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", EXPLAIN_JSON);
    char *url = endpoint_of(s->port);
    const char *const words[] = {"placement", "explain", "photos/2024/a b+c \xC3\xA9.jpg", NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out, explain_table);
    /* What the table is for, spelled out: the reasons in words, and millionths of a dollar
     * that do not read as 0. */
    assert_non_null(strstr(r.out, "  yes   the last write arrived here  "));
    assert_non_null(strstr(r.out, "  no    residency forbids it  "));
    assert_non_null(strstr(r.out, " 0.00002 "));
    assert_non_null(strstr(r.out, " 0.0000002 "));
    assert_null(strstr(r.out, "cold"));
    result_free(&r);
    free(url);
    server_stop(s);
}

/* A cold object was judged by its prefix's summary, and the header says so. */
static void test_explain_cold_object(void **state)
{
    (void)state;
    test_server *s =
        server_start(200, "OK", "application/json",
                     "{\"bucket\":\"logs\",\"key\":\"2019/old.gz\",\"bytes\":512,\"holders\":"
                     "[\"eu-west\"],\"from_prefix_prior\":true,\"life_days\":0.05,\"regions\":["
                     "{\"name\":\"eu-west\",\"held\":true,\"reason\":\"origin\","
                     "\"reads_per_day\":0.001,\"reads_per_day_stddev\":0.002,\"saving_usd\":0,"
                     "\"storage_usd\":1.2e-9,\"transfer_usd\":0}]}");
    char *url = endpoint_of(s->port);
    const char *const words[] = {"placement", "explain", "logs/2019/old.gz", NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out, "logs/2019/old.gz: 512 B, held in eu-west; expected version life "
                               "0.050 days (figures from the prefix's summary: the object is "
                               "cold)\n"
                               "\n"
                               "REGION   HELD  REASON                           READS/DAY  "
                               "SAVING $     STORAGE $  COPY $\n"
                               "eu-west  yes   the last write arrived here  0.001 \xC2\xB1 0.002"
                               "         0  0.0000000012       0\n");
    pthread_mutex_lock(&s->lock);
    assert_signed_get(s, "/_tern/placement/explain?bucket=logs&key=2019%2Fold.gz");
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_explain_json(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", EXPLAIN_JSON);
    char *url = endpoint_of(s->port);
    const char *const words[] = {
        "-o", "json", "placement", "explain", "photos/2024/a b+c \xC3\xA9.jpg", NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_same_json(r.out, EXPLAIN_JSON);
    result_free(&r);
    free(url);
    server_stop(s);
}

/* ---------------- stats ---------------- */

static void test_stats_table(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", STATS_JSON);
    char *url = endpoint_of(s->port);
    const char *const words[] = {"placement", "stats", NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(r.out, stats_table);
    pthread_mutex_lock(&s->lock);
    assert_signed_get(s, "/_tern/placement/stats");
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    free(url);
    server_stop(s);
}

/* -o json is the node's document; a field this ternctl does not know still shows in the
 * table, by its JSON name. */
static void test_stats_json_and_new_fields(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", STATS_JSON);
    char *url = endpoint_of(s->port);
    const char *const words[] = {"placement", "stats", "-o", "json", NULL};
    run_result r = run(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_same_json(r.out, STATS_JSON);
    result_free(&r);
    free(url);
    server_stop(s);
    s = server_start(200, "OK", "application/json",
                     "{\"region\":\"eu-west\",\"algo\":\"thompson\",\"prefixes_tracked\":7}");
    url = endpoint_of(s->port);
    const char *const table[] = {"placement", "stats", NULL};
    r = run(url, table);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "Region            eu-west\n"));
    assert_non_null(strstr(r.out, "Events            -\n"));
    assert_non_null(strstr(r.out, "Replicas dropped  -\nprefixes_tracked  7\n"));
    result_free(&r);
    free(url);
    server_stop(s);
}

/* ---------------- errors ---------------- */

static void test_usage_errors(void **state)
{
    (void)state;
    char long_bucket[80], long_key[1100];
    memset(long_bucket, 'b', 64);
    snprintf(long_bucket + 64, sizeof long_bucket - 64, "/k");
    /* "b/" and a key of 1025 bytes, one more than S3 allows. */
    memset(long_key, 'k', 2 + 1025);
    long_key[0] = 'b';
    long_key[1] = '/';
    long_key[2 + 1025] = '\0';
    const struct {
        const char *words[6];
        const char *message;
    } cases[] = {
        {{"placement"}, "ternctl: placement: missing subcommand (explain or stats)\n"},
        {{"placement", "why", "b/k"}, "ternctl: unknown placement command 'why'\n"},
        {{"placement", "explain"}, "ternctl: placement explain: missing BUCKET/KEY\n"},
        {{"placement", "explain", "photos"},
         "ternctl: placement explain: expected BUCKET/KEY, got 'photos'"},
        {{"placement", "explain", "/k"},
         "ternctl: placement explain: expected BUCKET/KEY, got '/k'"},
        {{"placement", "explain", "b/"},
         "ternctl: placement explain: expected BUCKET/KEY, got 'b/'"},
        {{"placement", "explain", "b/k", "extra"},
         "ternctl: unexpected argument 'extra' after the command\n"},
        {{"placement", "stats", "b/k"}, "ternctl: unexpected argument 'b/k' after the command\n"},
        {{"placement", "explain", long_bucket},
         "ternctl: placement explain: bucket name longer than 63 bytes\n"},
        {{"placement", "explain", long_key},
         "ternctl: placement explain: key longer than 1024 bytes\n"},
        {{"placement", "stats", "--rpo", "1s"},
         "ternctl: option '--rpo' applies only to 'bucket policy set'\n"},
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

static void expect_node_error(int status, const char *reason, const char *body,
                              const char *const *words, const char *expected)
{
    test_server *s = server_start(status, reason, "application/xml", body);
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
    const char *const explain[] = {"placement", "explain", "photos/a b.jpg", NULL};
    const char *const stats[] = {"placement", "stats", NULL};
    const char *const stats_json[] = {"-o", "json", "placement", "stats", NULL};
    expect_node_error(404, "Not Found",
                      S3_ERROR_XML("NoSuchKey", "The placement engine has no record of the "
                                                "object."),
                      explain,
                      "ternctl: placement explain photos/a b.jpg: 404 NoSuchKey: The placement "
                      "engine has no record of the object.\n");
    expect_node_error(404, "Not Found",
                      S3_ERROR_XML("NoTopology", "This node has no topology configured."), explain,
                      "ternctl: placement explain photos/a b.jpg: 404 NoTopology: This node has "
                      "no topology configured.\n");
    expect_node_error(404, "Not Found",
                      S3_ERROR_XML("NoTopology", "This node has no topology configured."), stats,
                      "ternctl: placement stats: 404 NoTopology: This node has no topology "
                      "configured.\n");
    /* Errors are text on stderr with -o json too: there is no document to print. */
    expect_node_error(404, "Not Found",
                      S3_ERROR_XML("NoTopology", "This node has no topology configured."),
                      stats_json,
                      "ternctl: placement stats: 404 NoTopology: This node has no topology "
                      "configured.\n");
    expect_node_error(400, "Bad Request",
                      S3_ERROR_XML("InvalidArgument", "key is missing &amp; required"), explain,
                      "ternctl: placement explain photos/a b.jpg: 400 InvalidArgument: key is "
                      "missing & required\n");
    expect_node_error(400, "Bad Request", S3_ERROR_XML("InvalidRequest", "Unknown admin endpoint."),
                      stats,
                      "ternctl: placement stats: 400 InvalidRequest: Unknown admin endpoint. (is "
                      "the node older than this ternctl?)\n");
    expect_node_error(403, "Forbidden", S3_ERROR_XML("SignatureDoesNotMatch", "Bad signature."),
                      explain,
                      "ternctl: the node refused the credentials (SignatureDoesNotMatch): Bad "
                      "signature.\n");
}

/* A 200 whose body is not the document, and an error that is not S3 XML. */
static void test_odd_answers(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *reason, *body, *words[4], *message;
    } cases[] = {
        {200,
         "OK",
         "{\"bucket\":\"b\"}",
         {"placement", "explain", "b/k"},
         "/_tern/placement/explain?bucket=b&key=k returned JSON without a \"regions\" array\n"},
        {200,
         "OK",
         "[1,2]",
         {"placement", "stats"},
         "/_tern/placement/stats returned JSON that is not an object\n"},
        {200,
         "OK",
         "not json",
         {"placement", "stats"},
         "/_tern/placement/stats returned invalid JSON\n"},
        {502,
         "Bad Gateway",
         "upstream down\n",
         {"placement", "stats"},
         "/_tern/placement/stats: HTTP 502: upstream down\n"},
    };
    for (int i = 0; i < ARGC(cases); i++) {
        test_server *s =
            server_start(cases[i].status, cases[i].reason, "text/plain", cases[i].body);
        char *url = endpoint_of(s->port);
        run_result r = run(url, cases[i].words);
        if (r.rc != 1 || strstr(r.err, cases[i].message) == NULL)
            fail_msg("case %d: rc %d, err: %s", i, r.rc, r.err);
        assert_string_equal(r.out, "");
        result_free(&r);
        free(url);
        server_stop(s);
    }
}

static void test_unreachable(void **state)
{
    (void)state;
    int port;
    int fd = bind_loopback(false, &port); /* bound, not listening: connections are refused */
    char *url = endpoint_of(port);
    char *expected;
    assert_true(asprintf(&expected, "ternctl: cannot reach the node at %s: ", url) > 0);
    const char *const explain[] = {"placement", "explain", "b/k", NULL};
    const char *const stats[] = {"placement", "stats", NULL};
    const char *const *commands[] = {explain, stats};
    for (int i = 0; i < ARGC(commands); i++) {
        run_result r = run(url, commands[i]);
        assert_int_equal(r.rc, 1);
        assert_true(strncmp(r.err, expected, strlen(expected)) == 0);
        assert_string_equal(r.out, "");
        result_free(&r);
    }
    free(expected);
    free(url);
    close(fd);
}

static void test_help_lists_placement(void **state)
{
    (void)state;
    const char *const words[] = {"help", NULL};
    run_result r = run(NULL, words);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "  placement explain BUCKET/KEY\n"));
    assert_non_null(strstr(r.out, "  placement stats\n"));
    result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_explain_request_encoded_and_signed, clean_env),
        cmocka_unit_test_setup(test_explain_table, clean_env),
        cmocka_unit_test_setup(test_explain_cold_object, clean_env),
        cmocka_unit_test_setup(test_explain_json, clean_env),
        cmocka_unit_test_setup(test_stats_table, clean_env),
        cmocka_unit_test_setup(test_stats_json_and_new_fields, clean_env),
        cmocka_unit_test_setup(test_usage_errors, clean_env),
        cmocka_unit_test_setup(test_node_errors, clean_env),
        cmocka_unit_test_setup(test_odd_answers, clean_env),
        cmocka_unit_test_setup(test_unreachable, clean_env),
        cmocka_unit_test_setup(test_help_lists_placement, clean_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
