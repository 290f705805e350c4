/* ternctl unit tests: ops_main in-process against a throwaway canned-response HTTP server. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "ops.h"
#include "sigv4_check.h"

#define STATUS_JSON                                                                                \
    "{\"node_id\":1,\"region\":\"local\",\"version\":\"0.1.0\",\"uptime_seconds\":3725,"           \
    "\"s3_listen\":\"127.0.0.1:9000\",\"data_dir\":\"./data\",\"storage\":{\"buckets\":1,"         \
    "\"objects\":3,\"logical_bytes\":123,\"blocks\":2,\"block_bytes\":100,"                        \
    "\"referenced_block_bytes\":123,\"dedup_ratio\":1.23,\"disk_bytes\":4567,"                     \
    "\"corruptions\":0}}"

#define SIGNATURE_XML                                                                              \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>"        \
    "<Message>The request signature we calculated does not match the signature you "               \
    "provided.</Message><RequestId>1</RequestId></Error>"

#define INTERNAL_XML                                                                               \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>"                \
    "<Message>disk &amp; soul</Message></Error>"

#define AUTH_PREFIX "Authorization: AWS4-HMAC-SHA256 Credential="

/* One listening socket and a thread answering every connection with the same response. */
typedef struct {
    int listen_fd;
    int port;
    pthread_t thread;
    atomic_bool stop;
    char *response; /* NULL: accept, read, and never answer (for timeouts) */
    pthread_mutex_t lock;
    char request[16384]; /* the last request's head */
    int request_count;
} test_server;

static void read_request_head(test_server *s, int fd)
{
    char buf[sizeof s->request];
    size_t len = 0;
    while (len + 1 < sizeof buf) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 2000) <= 0) break;
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL) break;
    }
    buf[len] = '\0';
    pthread_mutex_lock(&s->lock);
    memcpy(s->request, buf, len + 1);
    s->request_count++;
    pthread_mutex_unlock(&s->lock);
}

static void *server_main(void *arg)
{
    test_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {s->listen_fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) continue;
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0) continue;
        read_request_head(s, fd);
        if (s->response != NULL) {
            size_t off = 0, len = strlen(s->response);
            while (off < len) {
                ssize_t n = write(fd, s->response + off, len - off);
                if (n <= 0) break;
                off += (size_t)n;
            }
        } else {
            while (!atomic_load(&s->stop))
                usleep(10000);
        }
        close(fd);
    }
    return NULL;
}

/* Binds 127.0.0.1 on an ephemeral port; listen=false leaves it bound but refusing connections. */
static int bind_loopback(bool listening, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t addr_len = sizeof addr;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &addr_len), 0);
    if (listening) assert_int_equal(listen(fd, 16), 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

static test_server *server_start(int status, const char *reason, const char *content_type,
                                 const char *body)
{
    test_server *s = calloc(1, sizeof *s);
    assert_non_null(s);
    if (body != NULL) {
        assert_true(asprintf(&s->response,
                             "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                             "Connection: close\r\n\r\n%s",
                             status, reason, content_type, strlen(body), body) > 0);
    }
    pthread_mutex_init(&s->lock, NULL);
    s->listen_fd = bind_loopback(true, &s->port);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
    return s;
}

static void server_stop(test_server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
    pthread_mutex_destroy(&s->lock);
    free(s->response);
    free(s);
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

static char *endpoint_of(int port)
{
    char *url;
    assert_true(asprintf(&url, "http://127.0.0.1:%d", port) > 0);
    return url;
}

static int clean_env(void **state)
{
    (void)state;
    static const char *const vars[] = {
        "TERN_ENDPOINT",         "TERN_ACCESS_KEY", "TERN_SECRET_KEY", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "http_proxy",      "HTTP_PROXY",      "https_proxy",
        "HTTPS_PROXY",           "all_proxy",       "ALL_PROXY",
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

static void assert_sigv4_valid(const char *request, const char *path, const char *secret)
{
    assert_sigv4(request, "GET", path, "", secret);
}

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void test_status_table(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", STATUS_JSON);
    char *url = endpoint_of(s->port);
    char *argv[] = {"ternctl",  "--endpoint",   url,          "--access-key",
                    "AKIDTEST", "--secret-key", "secret-123", "status"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_non_null(strstr(r.out, "Node ID           1\n"));
    assert_non_null(strstr(r.out, "Region            local\n"));
    assert_non_null(strstr(r.out, "Uptime            1h 2m 5s\n"));
    assert_non_null(strstr(r.out, "Logical bytes     123 B\n"));
    assert_non_null(strstr(r.out, "Dedup ratio       1.23\n"));
    assert_non_null(strstr(r.out, "Disk bytes        4.5 KiB (4567 bytes)\n"));
    assert_non_null(strstr(r.out, "Corruptions       0\n"));
    pthread_mutex_lock(&s->lock);
    assert_int_equal(s->request_count, 1);
    assert_true(strncmp(s->request, "GET /_tern/status HTTP/1.1\r\n", 28) == 0);
    assert_non_null(strstr(s->request, AUTH_PREFIX "AKIDTEST/"));
    assert_non_null(strstr(s->request, "/us-east-1/s3/aws4_request"));
    assert_non_null(strstr(s->request, "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae"
                                       "41e4649b934ca495991b7852b855\r\n"));
    assert_sigv4_valid(s->request, "/_tern/status", "secret-123");
    /* The secret itself never goes over the wire. */
    assert_null(strstr(s->request, "secret-123"));
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    free(url);
    server_stop(s);
}

/* Fields a newer node adds still show; fields it dropped show as "-". */
static void test_status_table_other_fields(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json",
                                  "{\"node_id\":2,\"raft_term\":5,\"storage\":{\"objects\":1,"
                                  "\"pinned\":true,\"disk_bytes\":3221225472}}");
    char *url = endpoint_of(s->port);
    char *argv[] = {"ternctl", "--endpoint",   url,          "--access-key",
                    "AK",      "--secret-key", "secret-123", "status"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "Node ID           2\n"));
    assert_non_null(strstr(r.out, "Region            -\n"));
    assert_non_null(strstr(r.out, "Disk bytes        3.0 GiB (3221225472 bytes)\n"));
    assert_non_null(strstr(r.out, "raft_term         5\n"));
    assert_non_null(strstr(r.out, "storage.pinned    yes\n"));
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_status_json(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", STATUS_JSON);
    char *url = endpoint_of(s->port);
    char *argv[] = {"ternctl", "status",       "-o",       "json",         "--endpoint",
                    url,       "--access-key", "AKIDTEST", "--secret-key", "secret-123"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    json_error_t error;
    json_t *root = json_loads(r.out, 0, &error);
    assert_non_null(root);
    assert_int_equal(json_integer_value(json_object_get(root, "node_id")), 1);
    json_t *storage = json_object_get(root, "storage");
    assert_int_equal(json_integer_value(json_object_get(storage, "objects")), 3);
    assert_true(json_real_value(json_object_get(storage, "dedup_ratio")) == 1.23);
    json_decref(root);
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_forbidden(void **state)
{
    (void)state;
    test_server *s = server_start(403, "Forbidden", "application/xml", SIGNATURE_XML);
    char *url = endpoint_of(s->port);
    char *argv[] = {"ternctl",      "--endpoint",   url,     "--access-key", "AKIDTEST",
                    "--secret-key", "wrong-secret", "status"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "ternctl: the node refused the credentials "
                               "(SignatureDoesNotMatch): The request signature we calculated "
                               "does not match the signature you provided.\n");
    pthread_mutex_lock(&s->lock);
    assert_non_null(strstr(s->request, AUTH_PREFIX "AKIDTEST/"));
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_server_error(void **state)
{
    (void)state;
    test_server *s = server_start(500, "Internal Server Error", "application/xml", INTERNAL_XML);
    char *url = endpoint_of(s->port);
    char *argv[] = {"ternctl", "--endpoint",   url,          "--access-key",
                    "AK",      "--secret-key", "secret-123", "status"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "HTTP 500 (InternalError): disk & soul"));
    assert_true(strncmp(r.err, "ternctl: ", 9) == 0);
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_invalid_json(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", "{\"node_id\": 1,");
    char *url = endpoint_of(s->port);
    char *argv[] = {"ternctl", "--endpoint",   url,          "--access-key",
                    "AK",      "--secret-key", "secret-123", "status"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 1);
    assert_true(strncmp(r.err, "ternctl: ", 9) == 0);
    assert_non_null(strstr(r.err, "invalid JSON"));
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
    char *argv[] = {"ternctl", "--endpoint",   url,          "--access-key",
                    "AK",      "--secret-key", "secret-123", "status"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 1);
    char *expected;
    assert_true(asprintf(&expected, "ternctl: cannot reach the node at %s: ", url) > 0);
    assert_true(strncmp(r.err, expected, strlen(expected)) == 0);
    assert_ptr_equal(strchr(r.err, '\n'), r.err + strlen(r.err) - 1); /* one line */
    free(expected);
    result_free(&r);
    free(url);
    close(fd);
}

static void test_timeout(void **state)
{
    (void)state;
    test_server *s = server_start(0, NULL, NULL, NULL); /* never answers */
    char *url = endpoint_of(s->port);
    char *argv[] = {"ternctl",      "--endpoint", url,         "--access-key", "AK",
                    "--secret-key", "secret-123", "--timeout", "0.3",          "status"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 1);
    assert_true(strncmp(r.err, "ternctl: cannot reach the node at ", 34) == 0);
    assert_non_null(strstr(r.err, "timed out"));
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_missing_credentials(void **state)
{
    (void)state;
    char *argv[] = {"ternctl", "--endpoint", "http://127.0.0.1:1", "status"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "ternctl: no credentials: set --access-key/--secret-key or "
                               "TERN_ACCESS_KEY/TERN_SECRET_KEY\n");
    result_free(&r);
    /* Half a pair is still no credentials. */
    char *argv2[] = {"ternctl", "--endpoint", "http://127.0.0.1:1", "--access-key", "AK", "status"};
    r = run(ARGC(argv2), argv2);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "no credentials"));
    result_free(&r);
}

static void test_env_credentials(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", STATUS_JSON);
    char *url = endpoint_of(s->port);
    setenv("TERN_ENDPOINT", url, 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIDAWS", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "aws-secret", 1);
    char *argv[] = {"ternctl", "status"};
    run_result r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    pthread_mutex_lock(&s->lock);
    assert_non_null(strstr(s->request, AUTH_PREFIX "AKIDAWS/"));
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    /* TERN_* wins over AWS_*, and a flag wins over both. */
    setenv("TERN_ACCESS_KEY", "AKIDTERN", 1);
    setenv("TERN_SECRET_KEY", "tern-secret", 1);
    r = run(ARGC(argv), argv);
    assert_int_equal(r.rc, 0);
    pthread_mutex_lock(&s->lock);
    assert_non_null(strstr(s->request, AUTH_PREFIX "AKIDTERN/"));
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    char *argv2[] = {"ternctl", "--access-key", "AKIDFLAG", "status"};
    r = run(ARGC(argv2), argv2);
    assert_int_equal(r.rc, 0);
    pthread_mutex_lock(&s->lock);
    assert_non_null(strstr(s->request, AUTH_PREFIX "AKIDFLAG/"));
    assert_int_equal(s->request_count, 3);
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    clean_env(NULL);
    free(url);
    server_stop(s);
}

static void expect_usage_error(int argc, char **argv, const char *message)
{
    run_result r = run(argc, argv);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.out, "");
    assert_true(strncmp(r.err, "ternctl: ", 9) == 0);
    assert_non_null(strstr(r.err, message));
    assert_non_null(strstr(r.err, "Usage: ternctl"));
    result_free(&r);
}

static void test_usage_errors(void **state)
{
    (void)state;
    char *no_command[] = {"ternctl", "--access-key", "AK", "--secret-key", "secret-123"};
    expect_usage_error(ARGC(no_command), no_command, "no command given");
    char *unknown_command[] = {"ternctl", "frobnicate"};
    expect_usage_error(ARGC(unknown_command), unknown_command, "unknown command 'frobnicate'");
    char *unknown_option[] = {"ternctl", "--bogus", "status"};
    expect_usage_error(ARGC(unknown_option), unknown_option, "unknown option '--bogus'");
    char *unknown_short[] = {"ternctl", "-x", "status"};
    expect_usage_error(ARGC(unknown_short), unknown_short, "unknown option '-x'");
    char *bad_output[] = {"ternctl", "-o", "yaml", "status"};
    expect_usage_error(ARGC(bad_output), bad_output, "invalid output format 'yaml'");
    char *bad_timeout[] = {"ternctl", "--timeout", "soon", "status"};
    expect_usage_error(ARGC(bad_timeout), bad_timeout, "invalid timeout 'soon'");
    char *zero_timeout[] = {"ternctl", "--timeout", "0", "status"};
    expect_usage_error(ARGC(zero_timeout), zero_timeout, "invalid timeout '0'");
    char *missing_arg[] = {"ternctl", "status", "--endpoint"};
    expect_usage_error(ARGC(missing_arg), missing_arg, "requires an argument");
    char *bad_endpoint[] = {"ternctl", "--endpoint", "ftp://x", "status"};
    expect_usage_error(ARGC(bad_endpoint), bad_endpoint, "invalid endpoint 'ftp://x'");
    char *help_arg[] = {"ternctl", "--help=yes"};
    expect_usage_error(ARGC(help_arg), help_arg, "option '--help=yes' takes no argument");
    char *extra_arg[] = {"ternctl", "status", "now"};
    expect_usage_error(ARGC(extra_arg), extra_arg, "unexpected argument 'now'");
}

static void test_help(void **state)
{
    (void)state;
    char *flag[] = {"ternctl", "--help"};
    run_result r = run(ARGC(flag), flag);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "Usage: ternctl"));
    assert_non_null(strstr(r.out, "status"));
    assert_non_null(strstr(r.out, "TERN_ENDPOINT"));
    assert_non_null(strstr(r.out, "AWS_SECRET_ACCESS_KEY"));
    assert_string_equal(r.err, "");
    result_free(&r);
    char *command[] = {"ternctl", "help"};
    r = run(ARGC(command), command);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "Commands:"));
    result_free(&r);
}

/* ---- ternctl cluster ---- */

#define LEADER_JSON                                                                                \
    "{\"node_id\":1,\"region\":\"eu-west\",\"role\":\"leader\",\"term\":3,\"leader_id\":1,"        \
    "\"leader_s3\":\"127.0.0.1:9001\",\"commit_index\":10,\"applied_index\":10,"                   \
    "\"last_index\":10,\"snapshot_index\":0,\"failed\":false,\"members\":["                        \
    "{\"id\":1,\"role\":\"voter\",\"peer\":\"127.0.0.1:7001\",\"s3\":\"127.0.0.1:9001\","          \
    "\"match\":10,\"lag\":0,\"active\":true},"                                                     \
    "{\"id\":2,\"role\":\"voter\",\"peer\":\"127.0.0.1:7002\",\"s3\":\"127.0.0.1:9002\","          \
    "\"match\":10,\"lag\":0,\"active\":true},"                                                     \
    "{\"id\":3,\"role\":\"learner\",\"peer\":\"127.0.0.1:7003\",\"s3\":\"\","                      \
    "\"match\":4,\"lag\":6,\"active\":false}]}"

#define LEADER_MEMBERS_TABLE                                                                       \
    "ID  ROLE     PEER            S3              MATCH  LAG  ACTIVE\n"                            \
    "1   voter    127.0.0.1:7001  127.0.0.1:9001  10     0    yes\n"                               \
    "2   voter    127.0.0.1:7002  127.0.0.1:9002  10     0    yes\n"                               \
    "3   learner  127.0.0.1:7003  -               4      6    no\n"

/* Node 2's view: a follower knows the members but not their replication progress. */
#define FOLLOWER_JSON_FMT                                                                          \
    "{\"node_id\":2,\"region\":\"eu-west\",\"role\":\"%s\",\"term\":3,\"leader_id\":%d,"           \
    "\"leader_s3\":\"%s\",\"commit_index\":9,\"applied_index\":8,\"last_index\":10,"               \
    "\"snapshot_index\":0,\"failed\":false,\"members\":["                                          \
    "{\"id\":1,\"role\":\"voter\",\"peer\":\"127.0.0.1:7001\",\"s3\":\"127.0.0.1:9001\","          \
    "\"match\":0,\"lag\":0,\"active\":false},"                                                     \
    "{\"id\":2,\"role\":\"voter\",\"peer\":\"127.0.0.1:7002\",\"s3\":\"127.0.0.1:9002\","          \
    "\"match\":0,\"lag\":0,\"active\":false}]}"

#define FOLLOWER_MEMBERS_TABLE                                                                     \
    "ID  ROLE   PEER            S3              MATCH  LAG  ACTIVE\n"                              \
    "1   voter  127.0.0.1:7001  127.0.0.1:9001  -      -    -\n"                                   \
    "2   voter  127.0.0.1:7002  127.0.0.1:9002  -      -    -\n"

#define EAGAIN_JSON                                                                                \
    "{\"code\":\"EAGAIN\",\"error\":\"another membership change or transfer is in progress, or "   \
    "the learner has not caught up; retry\"}"
#define EUNAVAIL_JSON                                                                              \
    "{\"code\":\"TERN_EUNAVAIL\",\"error\":\"no leader: the region group is unavailable\"}"
#define EINVAL_JSON "{\"code\":\"EINVAL\",\"error\":\"unknown node id\"}"

static char *follower_json(const char *role, int leader_id, const char *leader_s3)
{
    char *doc;
    assert_true(asprintf(&doc, FOLLOWER_JSON_FMT, role, leader_id, leader_s3) > 0);
    return doc;
}

/* ternctl with credentials and --endpoint url, then words (NULL-terminated). */
static run_result run_cluster(const char *url, const char *const *words)
{
    char *argv[32] = {"ternctl", "--endpoint",   (char *)url, "--access-key",
                      "AK",      "--secret-key", "secret-123"};
    int argc = 7;
    for (; *words != NULL; words++) {
        assert_true(argc < ARGC(argv));
        argv[argc++] = (char *)*words;
    }
    return run(argc, argv);
}

static void assert_one_request(test_server *s, const char *method, const char *path,
                               const char *query)
{
    char target[512], line[600];
    snprintf(target, sizeof target, "%s%s%s", path, query[0] ? "?" : "", query);
    snprintf(line, sizeof line, "%s %s HTTP/1.1\r\n", method, target);
    pthread_mutex_lock(&s->lock);
    assert_int_equal(s->request_count, 1);
    assert_true(strncmp(s->request, line, strlen(line)) == 0);
    assert_sigv4(s->request, method, target, "", "secret-123");
    pthread_mutex_unlock(&s->lock);
}

static void test_cluster_status_leader_table(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", LEADER_JSON);
    char *url = endpoint_of(s->port);
    const char *words[] = {"cluster", "status", NULL};
    run_result r = run_cluster(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    char *expected;
    assert_true(asprintf(&expected,
                         "Node            1 (answered at %s)\n"
                         "Region          eu-west\n"
                         "Role            leader\n"
                         "Term            3\n"
                         "Leader          node 1 (S3 127.0.0.1:9001)\n"
                         "Commit index    10\n"
                         "Applied index   10\n"
                         "Last index      10\n"
                         "Snapshot index  0\n"
                         "Failed          no\n"
                         "\n"
                         "Members, as node 1 (the leader) reports them:\n" LEADER_MEMBERS_TABLE,
                         url) > 0);
    assert_string_equal(r.out, expected);
    /* The leader answered: nobody else is asked. */
    assert_one_request(s, "GET", "/_tern/cluster", "");
    free(expected);
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_cluster_status_leader_json(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", LEADER_JSON);
    char *url = endpoint_of(s->port);
    const char *words[] = {"cluster", "status", "-o", "json", NULL};
    run_result r = run_cluster(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    json_t *got = json_loads(r.out, 0, NULL), *want = json_loads(LEADER_JSON, 0, NULL);
    assert_non_null(got);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    assert_one_request(s, "GET", "/_tern/cluster", "");
    result_free(&r);
    free(url);
    server_stop(s);
}

/* A follower names the leader; its member table (with the lag) comes from the leader. */
static void test_cluster_status_follower_asks_leader(void **state)
{
    (void)state;
    test_server *leader = server_start(200, "OK", "application/json", LEADER_JSON);
    char *leader_url = endpoint_of(leader->port);
    char *doc = follower_json("follower", 1, leader_url + strlen("http://"));
    test_server *follower = server_start(200, "OK", "application/json", doc);
    char *url = endpoint_of(follower->port);
    const char *words[] = {"cluster", "status", NULL};
    run_result r = run_cluster(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    char *expected;
    assert_true(
        asprintf(&expected,
                 "Node            2 (answered at %s)\n"
                 "Region          eu-west\n"
                 "Role            follower\n"
                 "Term            3\n"
                 "Leader          node 1 (S3 %s)\n"
                 "Commit index    9\n"
                 "Applied index   8\n"
                 "Last index      10\n"
                 "Snapshot index  0\n"
                 "Failed          no\n"
                 "\n"
                 "Members, as the leader (node 1 at %s) reports them:\n" LEADER_MEMBERS_TABLE,
                 url, leader_url + strlen("http://"), leader_url) > 0);
    assert_string_equal(r.out, expected);
    assert_one_request(follower, "GET", "/_tern/cluster", "");
    assert_one_request(leader, "GET", "/_tern/cluster", "");
    free(expected);
    result_free(&r);

    /* JSON: the follower's document as it came, with the leader's under "leader". */
    const char *json_words[] = {"cluster", "status", "-o", "json", NULL};
    r = run_cluster(url, json_words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    json_t *got = json_loads(r.out, 0, NULL);
    assert_non_null(got);
    json_t *want_leader = json_loads(LEADER_JSON, 0, NULL);
    assert_true(json_equal(json_object_get(got, "leader"), want_leader));
    json_object_del(got, "leader");
    json_t *want = json_loads(doc, 0, NULL);
    assert_true(json_equal(got, want));
    json_decref(want);
    json_decref(want_leader);
    json_decref(got);
    result_free(&r);
    free(url);
    server_stop(follower);
    free(doc);
    free(leader_url);
    server_stop(leader);
}

/* The leader cannot be asked: the follower's view, "-" for what only the leader knows. */
static void test_cluster_status_follower_fallback(void **state)
{
    (void)state;
    int port;
    int fd = bind_loopback(false, &port); /* the "leader" refuses connections */
    char *leader_url = endpoint_of(port);
    char *doc = follower_json("follower", 1, leader_url + strlen("http://"));
    test_server *s = server_start(200, "OK", "application/json", doc);
    char *url = endpoint_of(s->port);
    const char *words[] = {"cluster", "status", NULL};
    run_result r = run_cluster(url, words);
    assert_int_equal(r.rc, 0);
    char *tail;
    assert_true(
        asprintf(&tail,
                 "\nMembers, as node 2 (not the leader) reports them:\n" FOLLOWER_MEMBERS_TABLE
                 "Note: match, lag and active are known by the leader (node 1) only; ask "
                 "it with --endpoint %s\n",
                 leader_url) > 0);
    assert_non_null(strstr(r.out, "Role            follower\n"));
    assert_non_null(strstr(r.out, tail));
    assert_string_equal(r.out + strlen(r.out) - strlen(tail), tail);
    char *note;
    assert_true(asprintf(&note,
                         "ternctl: note: cannot get the member table from the leader (node 1 at "
                         "%s): cannot reach the node at %s: ",
                         leader_url, leader_url) > 0);
    assert_true(strncmp(r.err, note, strlen(note)) == 0);
    assert_non_null(strstr(r.err, "; showing node 2's view\n"));
    assert_ptr_equal(strchr(r.err, '\n'), r.err + strlen(r.err) - 1); /* one line */
    free(note);
    free(tail);
    result_free(&r);
    /* JSON: the follower's document alone. */
    const char *json_words[] = {"cluster", "status", "-o", "json", NULL};
    r = run_cluster(url, json_words);
    assert_int_equal(r.rc, 0);
    json_t *got = json_loads(r.out, 0, NULL), *want = json_loads(doc, 0, NULL);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    result_free(&r);
    free(url);
    server_stop(s);
    free(doc);
    free(leader_url);
    close(fd);
}

/* The node named as leader answers as a follower (leadership moved): not followed further. */
static void test_cluster_status_stale_leader(void **state)
{
    (void)state;
    char *other = follower_json("follower", 3, "127.0.0.1:9003");
    test_server *stale = server_start(200, "OK", "application/json", other);
    char *stale_url = endpoint_of(stale->port);
    char *doc = follower_json("candidate", 1, stale_url + strlen("http://"));
    test_server *s = server_start(200, "OK", "application/json", doc);
    char *url = endpoint_of(s->port);
    const char *words[] = {"cluster", "status", NULL};
    run_result r = run_cluster(url, words);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "Role            candidate\n"));
    assert_non_null(strstr(r.out, FOLLOWER_MEMBERS_TABLE));
    assert_non_null(strstr(r.err, "it is no longer the leader (it answered as follower); "
                                  "showing node 2's view\n"));
    pthread_mutex_lock(&stale->lock);
    assert_int_equal(stale->request_count, 1);
    pthread_mutex_unlock(&stale->lock);
    result_free(&r);
    free(url);
    server_stop(s);
    free(doc);
    free(stale_url);
    server_stop(stale);
    free(other);
}

/* No leader, or one with an address that names no host: nothing to ask. */
static void test_cluster_status_no_leader(void **state)
{
    (void)state;
    char *doc = follower_json("candidate", 0, "");
    test_server *s = server_start(200, "OK", "application/json", doc);
    char *url = endpoint_of(s->port);
    const char *words[] = {"cluster", "status", NULL};
    run_result r = run_cluster(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_non_null(strstr(r.out, "Leader          none known\n"));
    assert_non_null(strstr(r.out, FOLLOWER_MEMBERS_TABLE "Note: match, lag and active are known by "
                                                         "the leader only, and no leader is known "
                                                         "now.\n"));
    result_free(&r);
    free(url);
    server_stop(s);
    free(doc);

    doc = follower_json("follower", 1, "0.0.0.0:9001");
    s = server_start(200, "OK", "application/json", doc);
    url = endpoint_of(s->port);
    r = run_cluster(url, words);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "ternctl: note: cannot get the member table from the leader (node "
                               "1): it advertises a wildcard S3 address; showing node 2's view\n");
    assert_non_null(strstr(r.out, "Note: match, lag and active are known by the leader (node 1, "
                                  "S3 0.0.0.0:9001) only.\n"));
    assert_one_request(s, "GET", "/_tern/cluster", "");
    result_free(&r);
    free(url);
    server_stop(s);
    free(doc);
}

static void test_cluster_status_errors(void **state)
{
    (void)state;
    test_server *s = server_start(503, "Service Unavailable", "application/json", EUNAVAIL_JSON);
    char *url = endpoint_of(s->port);
    const char *words[] = {"cluster", "status", NULL};
    run_result r = run_cluster(url, words);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "ternctl: cluster status: 503 EUNAVAIL: no leader: the region "
                               "group is unavailable\n");
    result_free(&r);
    free(url);
    server_stop(s);
    /* Refused credentials come as S3 XML, as for status. */
    s = server_start(403, "Forbidden", "application/xml", SIGNATURE_XML);
    url = endpoint_of(s->port);
    r = run_cluster(url, words);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "ternctl: the node refused the credentials "
                                  "(SignatureDoesNotMatch): "));
    result_free(&r);
    free(url);
    server_stop(s);
}

typedef struct {
    const char *command;
    const char *id;
    const char *peer;  /* add-node only */
    const char *query; /* as sent: canonical, sorted, encoded */
    const char *done;  /* the success line */
} change_case;

static const change_case change_cases[] = {
    {"add-node", "4", "127.0.0.1:7004", "id=4&peer=127.0.0.1%3A7004",
     "node 4 added as a learner; the leader promotes it to a voter once it has caught up\n"},
    {"add-node", "5", "[::1]:7005", "id=5&peer=%5B%3A%3A1%5D%3A7005",
     "node 5 added as a learner; the leader promotes it to a voter once it has caught up\n"},
    {"remove-node", "3", NULL, "id=3", "node 3 removed from the group\n"},
    {"promote-node", "4", NULL, "id=4", "node 4 promoted to a voter\n"},
    {"transfer-leader", "2", NULL, "id=2", "leadership transferred: node 2 is the leader\n"},
};

static run_result run_change(const char *url, const change_case *c, bool json)
{
    const char *words[] = {"cluster", c->command, c->id, NULL, NULL, NULL, NULL};
    size_t n = 3;
    if (c->peer != NULL) words[n++] = c->peer;
    if (json) {
        words[n++] = "-o";
        words[n++] = "json";
    }
    return run_cluster(url, words);
}

static void test_cluster_changes(void **state)
{
    (void)state;
    for (int i = 0; i < ARGC(change_cases); i++) {
        const change_case *c = &change_cases[i];
        char path[64];
        snprintf(path, sizeof path, "/_tern/cluster/%s", c->command);
        for (int json = 0; json <= 1; json++) {
            test_server *s = server_start(200, "OK", "application/json", "{\"ok\":true}");
            char *url = endpoint_of(s->port);
            run_result r = run_change(url, c, json);
            assert_int_equal(r.rc, 0);
            assert_string_equal(r.err, "");
            assert_string_equal(r.out, json ? "{\n  \"ok\": true\n}\n" : c->done);
            assert_one_request(s, "POST", path, c->query);
            pthread_mutex_lock(&s->lock);
            /* An empty body, said so (the signature, checked above, covers no body). */
            char value[64];
            assert_true(header_value(s->request, "Content-Length", value, sizeof value));
            assert_string_equal(value, "0");
            pthread_mutex_unlock(&s->lock);
            result_free(&r);
            free(url);
            server_stop(s);
        }
    }
}

static void test_cluster_change_errors(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *reason, *body, *message;
    } errors[] = {
        {409, "Conflict", EAGAIN_JSON,
         "409 EAGAIN: another membership change or transfer is in progress, or the learner has "
         "not caught up; retry"},
        {503, "Service Unavailable", EUNAVAIL_JSON,
         "503 EUNAVAIL: no leader: the region group is unavailable"},
        {400, "Bad Request", EINVAL_JSON, "400 EINVAL: unknown node id"},
    };
    for (int e = 0; e < ARGC(errors); e++) {
        test_server *s =
            server_start(errors[e].status, errors[e].reason, "application/json", errors[e].body);
        char *url = endpoint_of(s->port);
        for (int i = 0; i < ARGC(change_cases); i++) {
            for (int json = 0; json <= 1; json++) {
                run_result r = run_change(url, &change_cases[i], json);
                assert_int_equal(r.rc, 1);
                assert_string_equal(r.out, "");
                char expected[512];
                snprintf(expected, sizeof expected, "ternctl: cluster %s: %s\n",
                         change_cases[i].command, errors[e].message);
                assert_string_equal(r.err, expected);
                result_free(&r);
            }
        }
        free(url);
        server_stop(s);
    }
    /* A 200 that is not {"ok": true} is not a success. */
    test_server *s = server_start(200, "OK", "application/json", "{\"ok\":false}");
    char *url = endpoint_of(s->port);
    run_result r = run_change(url, &change_cases[2], false);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.err, "ternctl: cluster remove-node: the node answered HTTP 200 without "
                               "{\"ok\": true}\n");
    result_free(&r);
    free(url);
    server_stop(s);
    /* A node without the cluster API answers with an S3 XML error. */
    s = server_start(400, "Bad Request", "application/xml",
                     "<Error><Code>InvalidRequest</Code><Message>Unknown admin "
                     "endpoint.</Message></Error>");
    url = endpoint_of(s->port);
    r = run_change(url, &change_cases[3], false);
    assert_int_equal(r.rc, 1);
    char *expected;
    assert_true(asprintf(&expected,
                         "ternctl: POST %s/_tern/cluster/promote-node?id=4: HTTP 400 "
                         "(InvalidRequest): Unknown admin endpoint.\n",
                         url) > 0);
    assert_string_equal(r.err, expected);
    free(expected);
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_cluster_usage_errors(void **state)
{
    (void)state;
    /* No credentials are set: argument mistakes are found before they are needed. */
    static const struct {
        const char *words[6];
        const char *message;
    } cases[] = {
        {{"cluster"}, "cluster: missing subcommand"},
        {{"cluster", "frobnicate"}, "unknown cluster command 'frobnicate'"},
        {{"cluster", "status", "now"}, "unexpected argument 'now'"},
        {{"cluster", "add-node"}, "cluster add-node: missing node ID"},
        {{"cluster", "remove-node"}, "cluster remove-node: missing node ID"},
        {{"cluster", "promote-node"}, "cluster promote-node: missing node ID"},
        {{"cluster", "transfer-leader"}, "cluster transfer-leader: missing node ID"},
        {{"cluster", "remove-node", "0"}, "cluster remove-node: invalid node ID '0'"},
        {{"cluster", "promote-node", "x1"}, "cluster promote-node: invalid node ID 'x1'"},
        {{"cluster", "transfer-leader", "+2"}, "invalid node ID '+2'"},
        {{"cluster", "remove-node", "9223372036854775808"},
         "invalid node ID '9223372036854775808'"},
        {{"cluster", "remove-node", "-1"}, "unknown option '-1'"},
        {{"cluster", "remove-node", "3", "4"}, "unexpected argument '4'"},
        {{"cluster", "add-node", "0", "127.0.0.1:7004"}, "cluster add-node: invalid node ID '0'"},
        {{"cluster", "add-node", "4"}, "missing the new node's peer address"},
        {{"cluster", "add-node", "4", "127.0.0.1"}, "invalid peer address '127.0.0.1'"},
        {{"cluster", "add-node", "4", "127.0.0.1:"}, "invalid peer address '127.0.0.1:'"},
        {{"cluster", "add-node", "4", ":7004"}, "invalid peer address ':7004'"},
        {{"cluster", "add-node", "4", "host:0"}, "invalid peer address 'host:0'"},
        {{"cluster", "add-node", "4", "host:65536"}, "invalid peer address 'host:65536'"},
        {{"cluster", "add-node", "4", "::1:7004"}, "invalid peer address '::1:7004'"},
        {{"cluster", "add-node", "4", "[::1]"}, "invalid peer address '[::1]'"},
        {{"cluster", "add-node", "4", "a b:7004"}, "invalid peer address 'a b:7004'"},
        {{"cluster", "add-node", "4", "h/x:7004"}, "invalid peer address 'h/x:7004'"},
        {{"cluster", "add-node", "4", "127.0.0.1:7004", "extra"}, "unexpected argument 'extra'"},
    };
    for (int i = 0; i < ARGC(cases); i++) {
        char *argv[8] = {"ternctl", "--endpoint", "http://127.0.0.1:1"};
        int argc = 3;
        for (size_t w = 0; cases[i].words[w] != NULL; w++)
            argv[argc++] = (char *)cases[i].words[w];
        expect_usage_error(argc, argv, cases[i].message);
    }
}

/* ---- ternctl egress ---- */

/* What node_egress_json answers for three regions (us-east, eu-west, ap-south) after 3 GB of
 * replication us-east -> eu-west at 0.02, 0.25 GB of repair ap-south -> us-east at 0.09, 1.5 MB
 * of remote read ap-south -> eu-west at 0.08, and writes of 3 GB in us-east (full replication
 * 0.07/GB) and 2 GB in ap-south (0.10/GB): 0.08262 USD against 0.41. */
#define EGRESS_JSON                                                                                \
    "{\"local_region\":\"us-east\",\"regions\":[{\"name\":\"us-east\",\"writes\":1,"               \
    "\"written_bytes\":3000000000,\"reads\":1,\"read_bytes\":2000000,"                             \
    "\"full_replication_usd_per_gb\":0.07},{\"name\":\"eu-west\",\"writes\":0,"                    \
    "\"written_bytes\":0,\"reads\":1,\"read_bytes\":6000000,\"full_replication_usd_per_gb\":0.07}" \
    ","                                                                                            \
    "{\"name\":\"ap-south\",\"writes\":1,\"written_bytes\":2000000000,\"reads\":0,"                \
    "\"read_bytes\":0,\"full_replication_usd_per_gb\":0.1}],\"flows\":[{\"from\":\"us-east\","     \
    "\"to\":\"eu-west\",\"cause\":\"replication\",\"bytes\":3000000000,\"usd\":0.06,"              \
    "\"usd_per_gb\":0.02},{\"from\":\"ap-south\",\"to\":\"us-east\",\"cause\":\"repair\","         \
    "\"bytes\":250000000,\"usd\":0.0225,\"usd_per_gb\":0.09},{\"from\":\"ap-south\","              \
    "\"to\":\"eu-west\",\"cause\":\"remote_read\",\"bytes\":1500000,\"usd\":0.00012,"              \
    "\"usd_per_gb\":0.08}],\"by_cause\":{\"replication\":{\"bytes\":3000000000,\"usd\":0.06},"     \
    "\"remote_read\":{\"bytes\":1500000,\"usd\":0.00012},\"repair\":{\"bytes\":250000000,"         \
    "\"usd\":0.0225}},\"total\":{\"bytes\":3251500000,\"usd\":0.08262},\"reads\":{\"count\":2,"    \
    "\"bytes\":8000000,\"local_bytes_ratio\":0.8125},\"full_replication\":{\"usd\":0.41,"          \
    "\"ratio\":0.201512195121951,\"saving_usd\":0.32738,\"writes\":2,"                             \
    "\"written_bytes\":5000000000,\"local_read_bytes_ratio\":1.0}}"

#define NO_TOPOLOGY_XML                                                                            \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoTopology</Code><Message>This "     \
    "node has no topology configured (regions and their egress prices), so it does not account "   \
    "egress.</Message><Resource>/_tern/egress</Resource><RequestId>1</RequestId></Error>"

static run_result run_egress(const char *url, bool json)
{
    char *argv[] = {"ternctl",      "--endpoint", (char *)url, "--access-key", "AKIDTEST",
                    "--secret-key", "secret-123", "egress",    "-o",           "json"};
    return run(json ? ARGC(argv) : ARGC(argv) - 2, argv);
}

static void test_egress_table(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", EGRESS_JSON);
    char *url = endpoint_of(s->port);
    run_result r = run_egress(url, false);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_string_equal(
        r.out,
        "Local region: us-east\n"
        "\n"
        "FROM      TO       CAUSE                       BYTES             USD  USD/GB\n"
        "us-east   eu-west  replication            3000000000            0.06  0.02\n"
        "ap-south  us-east  repair                  250000000          0.0225  0.09\n"
        "ap-south  eu-west  remote_read               1500000         0.00012  0.08\n"
        "\n"
        "CAUSE                       BYTES             USD\n"
        "replication            3000000000            0.06\n"
        "remote_read               1500000         0.00012\n"
        "repair                  250000000          0.0225\n"
        "total                  3251500000         0.08262\n"
        "\n"
        "Writes              2 (5000000000 bytes)\n"
        "Reads               2 (8000000 bytes)\n"
        "Local read bytes    0.8125 (full replication: 1)\n"
        "Full replication    0.41 USD (the same writes copied to every other region over the "
        "cheapest tree)\n"
        "Actual / full       0.2015\n"
        "Saving              0.3274 USD (79.8% of full replication)\n");
    pthread_mutex_lock(&s->lock);
    assert_true(strncmp(s->request, "GET /_tern/egress HTTP/1.1\r\n", 28) == 0);
    assert_sigv4_valid(s->request, "/_tern/egress", "secret-123");
    pthread_mutex_unlock(&s->lock);
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_egress_json(void **state)
{
    (void)state;
    test_server *s = server_start(200, "OK", "application/json", EGRESS_JSON);
    char *url = endpoint_of(s->port);
    run_result r = run_egress(url, true);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    json_error_t error;
    json_t *printed = json_loads(r.out, 0, &error);
    json_t *sent = json_loads(EGRESS_JSON, 0, &error);
    assert_non_null(printed);
    assert_non_null(sent);
    assert_true(json_equal(printed, sent)); /* the node's document, as it sent it */
    json_decref(printed);
    json_decref(sent);
    result_free(&r);
    free(url);
    server_stop(s);
}

/* A node that has accounted nothing yet: no flows, no write to compare with. */
static void test_egress_nothing_yet(void **state)
{
    (void)state;
    test_server *s = server_start(
        200, "OK", "application/json",
        "{\"local_region\":\"solo\",\"regions\":[{\"name\":\"solo\",\"writes\":0}],\"flows\":[],"
        "\"by_cause\":{},\"total\":{\"bytes\":0,\"usd\":0.0},\"reads\":{\"count\":0,\"bytes\":0,"
        "\"local_bytes_ratio\":1.0},\"full_replication\":{\"usd\":0.0,\"ratio\":0.0,"
        "\"saving_usd\":0.0,\"writes\":0,\"written_bytes\":0}}");
    char *url = endpoint_of(s->port);
    run_result r = run_egress(url, false);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "No bytes have crossed regions yet.\n"));
    assert_non_null(strstr(r.out, "total                           0               0\n"));
    assert_non_null(strstr(r.out, "Full replication    0 USD"));
    assert_non_null(strstr(r.out, "Actual / full       - (no write has been priced yet)\n"));
    assert_null(strstr(r.out, "Saving"));
    result_free(&r);
    free(url);
    server_stop(s);
}

static void test_egress_errors(void **state)
{
    (void)state;
    /* No topology: the node's 404 NoTopology is said plainly. */
    test_server *s = server_start(404, "Not Found", "application/xml", NO_TOPOLOGY_XML);
    char *url = endpoint_of(s->port);
    run_result r = run_egress(url, false);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.out, "");
    char *expected;
    assert_true(asprintf(&expected,
                         "ternctl: egress: the node at %s has no topology configured (regions "
                         "and their egress prices), so it does not account egress (HTTP 404 "
                         "NoTopology)\n",
                         url) > 0);
    assert_string_equal(r.err, expected);
    free(expected);
    result_free(&r);
    free(url);
    server_stop(s);
    /* A node from before /_tern/egress. */
    s = server_start(400, "Bad Request", "application/xml",
                     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidRequest"
                     "</Code><Message>Unknown admin endpoint.</Message></Error>");
    url = endpoint_of(s->port);
    r = run_egress(url, false);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "does not serve /_tern/egress (is it older than this "
                                  "ternctl?)\n"));
    result_free(&r);
    free(url);
    server_stop(s);
    /* Anything else goes through the common reporter. */
    s = server_start(500, "Internal Server Error", "application/xml", INTERNAL_XML);
    url = endpoint_of(s->port);
    r = run_egress(url, false);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "GET "));
    assert_non_null(strstr(r.err, "/_tern/egress: HTTP 500 (InternalError): disk & soul\n"));
    result_free(&r);
    free(url);
    server_stop(s);
    /* A 200 that is not the egress document. */
    s = server_start(200, "OK", "application/json", "{\"node_id\":1}");
    url = endpoint_of(s->port);
    r = run_egress(url, false);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "returned JSON without a \"flows\" array\n"));
    result_free(&r);
    free(url);
    server_stop(s);
    /* Unreachable. */
    int port;
    int fd = bind_loopback(false, &port);
    url = endpoint_of(port);
    r = run_egress(url, false);
    assert_int_equal(r.rc, 1);
    assert_true(asprintf(&expected, "ternctl: cannot reach the node at %s: ", url) > 0);
    assert_true(strncmp(r.err, expected, strlen(expected)) == 0);
    free(expected);
    result_free(&r);
    free(url);
    close(fd);
    /* Usage. */
    char *extra[] = {"ternctl", "--endpoint", "http://127.0.0.1:1", "egress", "now"};
    expect_usage_error(ARGC(extra), extra, "unexpected argument 'now'");
    char *help[] = {"ternctl", "--help"};
    r = run(ARGC(help), help);
    assert_non_null(strstr(r.out, "  egress        egress bytes and dollars"));
    result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_status_table, clean_env),
        cmocka_unit_test_setup(test_status_table_other_fields, clean_env),
        cmocka_unit_test_setup(test_status_json, clean_env),
        cmocka_unit_test_setup(test_forbidden, clean_env),
        cmocka_unit_test_setup(test_server_error, clean_env),
        cmocka_unit_test_setup(test_invalid_json, clean_env),
        cmocka_unit_test_setup(test_unreachable, clean_env),
        cmocka_unit_test_setup(test_timeout, clean_env),
        cmocka_unit_test_setup(test_missing_credentials, clean_env),
        cmocka_unit_test_setup(test_env_credentials, clean_env),
        cmocka_unit_test_setup(test_usage_errors, clean_env),
        cmocka_unit_test_setup(test_help, clean_env),
        cmocka_unit_test_setup(test_cluster_status_leader_table, clean_env),
        cmocka_unit_test_setup(test_cluster_status_leader_json, clean_env),
        cmocka_unit_test_setup(test_cluster_status_follower_asks_leader, clean_env),
        cmocka_unit_test_setup(test_cluster_status_follower_fallback, clean_env),
        cmocka_unit_test_setup(test_cluster_status_stale_leader, clean_env),
        cmocka_unit_test_setup(test_cluster_status_no_leader, clean_env),
        cmocka_unit_test_setup(test_cluster_status_errors, clean_env),
        cmocka_unit_test_setup(test_cluster_changes, clean_env),
        cmocka_unit_test_setup(test_cluster_change_errors, clean_env),
        cmocka_unit_test_setup(test_cluster_usage_errors, clean_env),
        cmocka_unit_test_setup(test_egress_table, clean_env),
        cmocka_unit_test_setup(test_egress_json, clean_env),
        cmocka_unit_test_setup(test_egress_nothing_yet, clean_env),
        cmocka_unit_test_setup(test_egress_errors, clean_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
