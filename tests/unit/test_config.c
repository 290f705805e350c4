/* Configuration unit tests: defaults, JSON file, environment and flags, precedence, errors. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "node.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const char *const env_vars[] = {
    "TERN_CONFIG",
    "TERN_DATA_DIR",
    "TERN_S3_LISTEN",
    "TERN_REGION",
    "TERN_NODE_ID",
    "TERN_BLOCK_SIZE",
    "TERN_SCRUB_RATE",
    "TERN_BLOCK_CACHE",
    "TERN_IO_THREADS",
    "TERN_MAX_HEADER_BYTES",
    "TERN_MAX_CONNECTIONS",
    "TERN_SHUTDOWN_GRACE_MS",
    "TERN_SYNC",
    "TERN_ROOT_ACCESS_KEY",
    "TERN_ROOT_SECRET_KEY",
    "TERN_KEYS",
    "TERN_LOG_LEVEL",
    "TERN_PEERS",
    "TERN_PEER_LISTEN",
    "TERN_PEER_CA",
    "TERN_PEER_CERT",
    "TERN_PEER_KEY",
    "TERN_ELECTION_TIMEOUT_MS",
    "TERN_HEARTBEAT_MS",
    "TERN_LEADER_WAIT_MS",
    "TERN_SNAPSHOT_THRESHOLD",
    "TERN_SNAPSHOT_ENTRIES",
    "TERN_JOIN",
    "TERN_TOPOLOGY",
};

static int clean_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < TERN_ARRAY_LEN(env_vars); i++)
        unsetenv(env_vars[i]);
    return 0;
}

/* Writes text to a fresh temporary file; returns its malloc'd path. */
static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/tern_test_config_XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

static void remove_temp(char *path)
{
    unlink(path);
    free(path);
}

static int load(node_config *cfg, int argc, char **argv, char *errmsg, size_t errmsg_len)
{
    return node_config_load(cfg, argc, argv, stdout, errmsg, errmsg_len);
}

static void test_defaults(void **state)
{
    (void)state;
    node_config cfg;
    char errmsg[256];
    char *argv[] = {"ternd"};
    assert_int_equal(load(&cfg, ARGC(argv), argv, errmsg, sizeof errmsg), 0);
    assert_null(cfg.config_path);
    assert_string_equal(cfg.data_dir, "./data");
    assert_string_equal(cfg.s3_listen, "127.0.0.1:9000");
    assert_string_equal(cfg.region, "local");
    assert_int_equal(cfg.node_id, 1);
    assert_int_equal(cfg.block_size_bytes, 1u << 20);
    assert_int_equal(cfg.scrub_bytes_per_second, 8u << 20);
    assert_int_equal(cfg.block_cache_bytes, 64u << 20);
    assert_int_equal(cfg.io_threads, 8);
    assert_int_equal(cfg.max_header_bytes, 16u << 10);
    assert_int_equal(cfg.max_connections, 1024);
    assert_int_equal(cfg.shutdown_grace_ms, 10000);
    assert_true(cfg.sync_writes);
    assert_null(cfg.root_access_key);
    assert_null(cfg.root_secret_key);
    assert_int_equal(cfg.key_count, 0);
    assert_null(cfg.keys);
    assert_string_equal(cfg.log_level, "info");
    node_config_free(&cfg);
    node_config_free(&cfg); /* freeing twice is harmless: free zeroes */
}

static void test_all_flags(void **state)
{
    (void)state;
    node_config cfg;
    char errmsg[256];
    char *argv[] = {"ternd",
                    "--data-dir",
                    "/var/lib/tern",
                    "--s3-listen",
                    "[::1]:9100",
                    "--region",
                    "eu-west-1",
                    "--node-id",
                    "42",
                    "--block-size",
                    "256K",
                    "--scrub-rate",
                    "0",
                    "--block-cache",
                    "1G",
                    "--io-threads",
                    "256",
                    "--max-header-bytes",
                    "32768",
                    "--max-connections",
                    "10",
                    "--shutdown-grace-ms",
                    "0",
                    "--no-sync",
                    "--root-access-key",
                    "ROOTKEY",
                    "--root-secret-key",
                    "rootsecret",
                    "--key",
                    "AK1:secret-one",
                    "--key",
                    "AK2:secret:with:colons",
                    "--log-level",
                    "debug"};
    assert_int_equal(load(&cfg, ARGC(argv), argv, errmsg, sizeof errmsg), 0);
    assert_string_equal(cfg.data_dir, "/var/lib/tern");
    assert_string_equal(cfg.s3_listen, "[::1]:9100");
    assert_string_equal(cfg.region, "eu-west-1");
    assert_int_equal(cfg.node_id, 42);
    assert_int_equal(cfg.block_size_bytes, 256u << 10);
    assert_int_equal(cfg.scrub_bytes_per_second, 0);
    assert_int_equal(cfg.block_cache_bytes, 1ull << 30);
    assert_int_equal(cfg.io_threads, 256);
    assert_int_equal(cfg.max_header_bytes, 32768);
    assert_int_equal(cfg.max_connections, 10);
    assert_int_equal(cfg.shutdown_grace_ms, 0);
    assert_false(cfg.sync_writes);
    assert_string_equal(cfg.root_access_key, "ROOTKEY");
    assert_string_equal(cfg.root_secret_key, "rootsecret");
    assert_int_equal(cfg.key_count, 2);
    assert_string_equal(cfg.keys[0].access_key, "AK1");
    assert_string_equal(cfg.keys[0].secret_key, "secret-one");
    assert_string_equal(cfg.keys[1].access_key, "AK2");
    assert_string_equal(cfg.keys[1].secret_key, "secret:with:colons");
    assert_string_equal(cfg.log_level, "debug");
    node_config_free(&cfg);
}

static const char full_file[] =
    "{\n"
    "  \"data_dir\": \"/srv/tern\",\n"
    "  \"s3_listen\": \"0.0.0.0:9200\",\n"
    "  \"region\": \"us-east-2\",\n"
    "  \"node_id\": 7,\n"
    "  \"block_size\": \"512K\",\n"
    "  \"scrub_rate\": 1048576,\n"
    "  \"block_cache\": \"128M\",\n"
    "  \"io_threads\": 4,\n"
    "  \"max_header_bytes\": 8192,\n"
    "  \"max_connections\": 99,\n"
    "  \"shutdown_grace_ms\": 2500,\n"
    "  \"sync_writes\": false,\n"
    "  \"root_access_key\": \"FILEROOT\",\n"
    "  \"root_secret_key\": \"file-root-secret\",\n"
    "  \"keys\": [{\"access_key\": \"FK1\", \"secret_key\": \"file-sec-1\"},\n"
    "           {\"secret_key\": \"file-sec-2\", \"access_key\": \"FK2\"}],\n"
    "  \"log_level\": \"warn\"\n"
    "}\n";

static void test_file(void **state)
{
    (void)state;
    char *path = write_temp(full_file);
    node_config cfg;
    char errmsg[256];
    char *argv[] = {"ternd", "--config", path};
    assert_int_equal(load(&cfg, ARGC(argv), argv, errmsg, sizeof errmsg), 0);
    assert_string_equal(cfg.config_path, path);
    assert_string_equal(cfg.data_dir, "/srv/tern");
    assert_string_equal(cfg.s3_listen, "0.0.0.0:9200");
    assert_string_equal(cfg.region, "us-east-2");
    assert_int_equal(cfg.node_id, 7);
    assert_int_equal(cfg.block_size_bytes, 512u << 10);
    assert_int_equal(cfg.scrub_bytes_per_second, 1048576);
    assert_int_equal(cfg.block_cache_bytes, 128u << 20);
    assert_int_equal(cfg.io_threads, 4);
    assert_int_equal(cfg.max_header_bytes, 8192);
    assert_int_equal(cfg.max_connections, 99);
    assert_int_equal(cfg.shutdown_grace_ms, 2500);
    assert_false(cfg.sync_writes);
    assert_string_equal(cfg.root_access_key, "FILEROOT");
    assert_string_equal(cfg.root_secret_key, "file-root-secret");
    assert_int_equal(cfg.key_count, 2);
    assert_string_equal(cfg.keys[0].access_key, "FK1");
    assert_string_equal(cfg.keys[1].access_key, "FK2");
    assert_string_equal(cfg.keys[1].secret_key, "file-sec-2");
    assert_string_equal(cfg.log_level, "warn");
    node_config_free(&cfg);
    /* TERN_CONFIG names the file when --config does not. */
    setenv("TERN_CONFIG", path, 1);
    char *argv2[] = {"ternd"};
    assert_int_equal(load(&cfg, ARGC(argv2), argv2, errmsg, sizeof errmsg), 0);
    assert_string_equal(cfg.config_path, path);
    assert_int_equal(cfg.node_id, 7);
    node_config_free(&cfg);
    remove_temp(path);
}

static void test_environment(void **state)
{
    (void)state;
    static const char *const values[][2] = {
        {"TERN_DATA_DIR", "/env/data"},
        {"TERN_S3_LISTEN", "localhost:9300"},
        {"TERN_REGION", "ap-south-1"},
        {"TERN_NODE_ID", "3"},
        {"TERN_BLOCK_SIZE", "4M"},
        {"TERN_SCRUB_RATE", "2MiB"},
        {"TERN_BLOCK_CACHE", "4096"},
        {"TERN_IO_THREADS", "1"},
        {"TERN_MAX_HEADER_BYTES", "1K"},
        {"TERN_MAX_CONNECTIONS", "5"},
        {"TERN_SHUTDOWN_GRACE_MS", "7"},
        {"TERN_SYNC", "0"},
        {"TERN_ROOT_ACCESS_KEY", "ER"},
        {"TERN_ROOT_SECRET_KEY", "env-root-secret"},
        {"TERN_KEYS", "E1:env-sec-1,E2:env-sec-2"},
        {"TERN_LOG_LEVEL", "error"},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(values); i++)
        setenv(values[i][0], values[i][1], 1);
    node_config cfg;
    char errmsg[256];
    char *argv[] = {"ternd"};
    assert_int_equal(load(&cfg, ARGC(argv), argv, errmsg, sizeof errmsg), 0);
    assert_string_equal(cfg.data_dir, "/env/data");
    assert_string_equal(cfg.s3_listen, "localhost:9300");
    assert_string_equal(cfg.region, "ap-south-1");
    assert_int_equal(cfg.node_id, 3);
    assert_int_equal(cfg.block_size_bytes, 4u << 20);
    assert_int_equal(cfg.scrub_bytes_per_second, 2u << 20);
    assert_int_equal(cfg.block_cache_bytes, 4096);
    assert_int_equal(cfg.io_threads, 1);
    assert_int_equal(cfg.max_header_bytes, 1024);
    assert_int_equal(cfg.max_connections, 5);
    assert_int_equal(cfg.shutdown_grace_ms, 7);
    assert_false(cfg.sync_writes);
    assert_string_equal(cfg.root_access_key, "ER");
    assert_string_equal(cfg.root_secret_key, "env-root-secret");
    assert_int_equal(cfg.key_count, 2);
    assert_string_equal(cfg.keys[1].access_key, "E2");
    assert_string_equal(cfg.keys[1].secret_key, "env-sec-2");
    assert_string_equal(cfg.log_level, "error");
    node_config_free(&cfg);
    /* --sync turns TERN_SYNC=0 back on; TERN_SYNC=1 works too. */
    char *argv2[] = {"ternd", "--sync"};
    assert_int_equal(load(&cfg, ARGC(argv2), argv2, errmsg, sizeof errmsg), 0);
    assert_true(cfg.sync_writes);
    node_config_free(&cfg);
    setenv("TERN_SYNC", "1", 1);
    assert_int_equal(load(&cfg, ARGC(argv), argv, errmsg, sizeof errmsg), 0);
    assert_true(cfg.sync_writes);
    node_config_free(&cfg);
}

static void test_precedence(void **state)
{
    (void)state;
    char *path =
        write_temp("{\"region\": \"file\", \"node_id\": 10, \"io_threads\": 2,"
                   " \"keys\": [{\"access_key\": \"FK\", \"secret_key\": \"file-secret\"}],"
                   " \"sync_writes\": false}");
    node_config cfg;
    char errmsg[256];
    setenv("TERN_REGION", "env", 1);
    setenv("TERN_NODE_ID", "20", 1);
    char *argv[] = {"ternd", "--config", path, "--region", "flag", "--key", "K1:flag-secret"};
    assert_int_equal(load(&cfg, ARGC(argv), argv, errmsg, sizeof errmsg), 0);
    assert_string_equal(cfg.region, "flag"); /* flag > env > file */
    assert_int_equal(cfg.node_id, 20);       /* env > file */
    assert_int_equal(cfg.io_threads, 2);     /* file > default */
    assert_false(cfg.sync_writes);
    /* A list from a higher layer replaces the lower one's. */
    assert_int_equal(cfg.key_count, 1);
    assert_string_equal(cfg.keys[0].access_key, "K1");
    node_config_free(&cfg);
    /* Without flags the env wins, and the file's keys stay. */
    char *argv2[] = {"ternd", "--config", path};
    assert_int_equal(load(&cfg, ARGC(argv2), argv2, errmsg, sizeof errmsg), 0);
    assert_string_equal(cfg.region, "env");
    assert_int_equal(cfg.key_count, 1);
    assert_string_equal(cfg.keys[0].access_key, "FK");
    node_config_free(&cfg);
    /* The last occurrence of a flag wins. */
    char *argv3[] = {"ternd", "--node-id", "5", "--node-id", "6"};
    assert_int_equal(load(&cfg, ARGC(argv3), argv3, errmsg, sizeof errmsg), 0);
    assert_int_equal(cfg.node_id, 6);
    node_config_free(&cfg);
    remove_temp(path);
}

/* Loads argv, expects TERN_EINVAL, a zeroed config and every `needles` substring in errmsg. */
static void expect_error(int argc, char **argv, const char *needle1, const char *needle2)
{
    node_config cfg;
    char errmsg[512];
    int rc = load(&cfg, argc, argv, errmsg, sizeof errmsg);
    if (rc != TERN_EINVAL || strstr(errmsg, needle1) == NULL ||
        (needle2 != NULL && strstr(errmsg, needle2) == NULL))
        print_error("argv[1]=%s rc=%d errmsg=\"%s\"\n", argc > 1 ? argv[1] : "", rc, errmsg);
    assert_int_equal(rc, TERN_EINVAL);
    assert_non_null(strstr(errmsg, needle1));
    if (needle2 != NULL) assert_non_null(strstr(errmsg, needle2));
    assert_null(cfg.data_dir);
    assert_null(cfg.keys);
    node_config_free(&cfg);
}

#define EXPECT_ERROR(n1, n2, ...)                                                                  \
    do {                                                                                           \
        char *args[] = {"ternd", __VA_ARGS__};                                                     \
        expect_error(ARGC(args), args, n1, n2);                                                    \
    } while (0)

static void test_flag_errors(void **state)
{
    (void)state;
    EXPECT_ERROR("--block-size", "'3K'", "--block-size", "3K");
    EXPECT_ERROR("--block-size", "'8M'", "--block-size", "8M");
    EXPECT_ERROR("--block-size", "'1.5M'", "--block-size", "1.5M");
    EXPECT_ERROR("--s3-listen", "'localhost'", "--s3-listen", "localhost");
    EXPECT_ERROR("--s3-listen", "'127.0.0.1:0'", "--s3-listen", "127.0.0.1:0");
    EXPECT_ERROR("--s3-listen", "'127.0.0.1:65536'", "--s3-listen", "127.0.0.1:65536");
    EXPECT_ERROR("--s3-listen", "':9000'", "--s3-listen", ":9000");
    EXPECT_ERROR("--s3-listen", "'h:http'", "--s3-listen", "h:http");
    EXPECT_ERROR("--node-id", "'0'", "--node-id", "0");
    EXPECT_ERROR("--node-id", "'-1'", "--node-id", "-1");
    EXPECT_ERROR("--node-id", "'99999999999999999999'", "--node-id", "99999999999999999999");
    EXPECT_ERROR("--io-threads", "'0'", "--io-threads", "0");
    EXPECT_ERROR("--io-threads", "'257'", "--io-threads", "257");
    EXPECT_ERROR("--max-connections", "'0'", "--max-connections", "0");
    EXPECT_ERROR("--key", "secret key", "--key", "AK:short");
    EXPECT_ERROR("--key", "'nocolon'", "--key", "nocolon");
    EXPECT_ERROR("--key", "access key", "--key", ":secret-123");
    EXPECT_ERROR("--root-secret-key", "8", "--root-access-key", "R", "--root-secret-key", "short");
    EXPECT_ERROR("root", "secret", "--root-access-key", "ROOT");
    EXPECT_ERROR("--log-level", "'loud'", "--log-level", "loud");
    EXPECT_ERROR("--region", "'a b'", "--region", "a b");
    EXPECT_ERROR("--data-dir", "non-empty", "--data-dir", "");
    EXPECT_ERROR("unknown option '--bogus'", NULL, "--bogus");
    EXPECT_ERROR("unknown option '-x'", NULL, "-x");
    EXPECT_ERROR("'--data-dir' requires an argument", NULL, "--data-dir");
    EXPECT_ERROR("unexpected argument 'serve'", NULL, "serve");
    EXPECT_ERROR("option '--no-sync=1' takes no argument", NULL, "--no-sync=1");
    EXPECT_ERROR("option '--version=2' takes no argument", NULL, "--version=2");
}

static void test_env_errors(void **state)
{
    (void)state;
    setenv("TERN_IO_THREADS", "many", 1);
    EXPECT_ERROR("TERN_IO_THREADS", "'many'", "--node-id", "2");
    unsetenv("TERN_IO_THREADS");
    setenv("TERN_SYNC", "maybe", 1);
    EXPECT_ERROR("TERN_SYNC", "'maybe'", "--node-id", "2");
    unsetenv("TERN_SYNC");
    setenv("TERN_KEYS", "A:long-enough,B:short", 1);
    EXPECT_ERROR("TERN_KEYS", "'B'", "--node-id", "2");
    unsetenv("TERN_KEYS");
    setenv("TERN_CONFIG", "/nonexistent/tern.json", 1);
    EXPECT_ERROR("/nonexistent/tern.json", NULL, "--node-id", "2");
    unsetenv("TERN_CONFIG");
    /* A flag does not excuse a bad lower layer: every source is validated. */
    setenv("TERN_BLOCK_SIZE", "1K", 1);
    EXPECT_ERROR("TERN_BLOCK_SIZE", "'1K'", "--block-size", "1M");
    unsetenv("TERN_BLOCK_SIZE");
}

static void expect_file_error(const char *text, const char *needle1, const char *needle2)
{
    char *path = write_temp(text);
    char *argv[] = {"ternd", "--config", path};
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s:", path);
    expect_error(ARGC(argv), argv, prefix, needle1);
    if (needle2 != NULL) expect_error(ARGC(argv), argv, prefix, needle2);
    remove_temp(path);
}

static void test_file_errors(void **state)
{
    (void)state;
    char *path = write_temp("{\n  \"region\": \"x\",\n  \"node_id\": 2,,\n}\n");
    char expected[512];
    node_config cfg;
    char errmsg[512];
    char *argv[] = {"ternd", "--config", path};
    assert_int_equal(load(&cfg, ARGC(argv), argv, errmsg, sizeof errmsg), TERN_EINVAL);
    /* path:line:column of the second comma. */
    snprintf(expected, sizeof expected, "%s:3:16: ", path);
    assert_true(strncmp(errmsg, expected, strlen(expected)) == 0);
    remove_temp(path);

    expect_file_error("{\"colour\": \"blue\"}", "unknown field 'colour'", NULL);
    expect_file_error("[1, 2]", "JSON object", NULL);
    expect_file_error("{\"io_threads\": \"8\"}", "field 'io_threads'", "an integer");
    expect_file_error("{\"io_threads\": 0}", "field 'io_threads'", "'0'");
    expect_file_error("{\"node_id\": -4}", "field 'node_id'", "'-4'");
    expect_file_error("{\"block_size\": \"2K\"}", "field 'block_size'", "'2K'");
    expect_file_error("{\"block_size\": 1.5}", "field 'block_size'", "1.5");
    expect_file_error("{\"sync_writes\": 1}", "field 'sync_writes'", "true or false");
    expect_file_error("{\"region\": 5}", "field 'region'", "a string");
    expect_file_error("{\"s3_listen\": \"nope\"}", "field 's3_listen'", "'nope'");
    expect_file_error("{\"log_level\": \"trace\"}", "field 'log_level'", "'trace'");
    expect_file_error("{\"keys\": {}}", "field 'keys'", NULL);
    expect_file_error("{\"keys\": [{\"access_key\": \"A\", \"secret_key\": \"tiny\"}]}",
                      "field 'keys[0]'", "secret key");
    expect_file_error("{\"keys\": [{\"access_key\": \"A\", \"secret_key\": \"long-enough\"}, 3]}",
                      "field 'keys[1]'", NULL);
    expect_file_error("{\"keys\": [{\"access_key\": \"A\", \"secret_key\": \"long-enough\","
                      " \"note\": \"x\"}]}",
                      "keys[0]", "'note'");
    expect_file_error("{\"region\": \"a\", \"region\": \"b\"}", "duplicate", NULL);
    expect_error(3, (char *[]){"ternd", "--config", "/nonexistent/x.json"}, "/nonexistent/x.json",
                 NULL);
}

static char *capture(int argc, char **argv, int *rc)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    node_config cfg;
    char errmsg[256];
    *rc = node_config_load(&cfg, argc, argv, out, errmsg, sizeof errmsg);
    assert_null(cfg.data_dir); /* nothing to free after --help/--version */
    fclose(out);
    return text;
}

static void test_help_and_version(void **state)
{
    (void)state;
    int rc;
    char *argv[] = {"ternd", "--help"};
    char *text = capture(ARGC(argv), argv, &rc);
    assert_int_equal(rc, 1);
    static const char *const needles[] = {
        "--config FILE",
        "--data-dir DIR",
        "--s3-listen HOST:PORT",
        "--region NAME",
        "--node-id N",
        "--block-size BYTES",
        "--scrub-rate BYTES",
        "--block-cache BYTES",
        "--io-threads N",
        "--max-header-bytes BYTES",
        "--max-connections N",
        "--shutdown-grace-ms MS",
        "--no-sync",
        "--sync",
        "--root-access-key KEY",
        "--root-secret-key SECRET",
        "--key ACCESS:SECRET",
        "--log-level LEVEL",
        "--topology FILE",
        "--version",
        "default ./data",
        "default 127.0.0.1:9000",
        "default 1M",
        "default 8M",
        "default 64M",
        "default 16K",
        "default 1024",
        "default 10000",
        "default info",
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(needles); i++) {
        if (strstr(text, needles[i]) == NULL) print_error("missing from --help: %s\n", needles[i]);
        assert_non_null(strstr(text, needles[i]));
    }
    for (size_t i = 0; i < TERN_ARRAY_LEN(env_vars); i++)
        assert_non_null(strstr(text, env_vars[i]));
    free(text);

    /* --help wins over the other flags, even bad ones, and never reads the file. */
    char *argv2[] = {"ternd", "--config", "/nonexistent", "--io-threads", "0", "-h"};
    text = capture(ARGC(argv2), argv2, &rc);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(text, "Usage: ternd"));
    free(text);

    char *argv3[] = {"ternd", "--version"};
    text = capture(ARGC(argv3), argv3, &rc);
    assert_int_equal(rc, 1);
    assert_string_equal(text, "ternd " TERN_VERSION "\n");
    free(text);
    assert_string_equal(TERN_VERSION, "0.1.0");
}

/* getopt keeps global state; each load must start from a clean slate. */
static void test_repeated_loads(void **state)
{
    (void)state;
    node_config cfg;
    char errmsg[256];
    for (int i = 0; i < 3; i++) {
        char *bad[] = {"ternd", "--node-id", "3", "--bogus"};
        assert_int_equal(load(&cfg, ARGC(bad), bad, errmsg, sizeof errmsg), TERN_EINVAL);
        char *good[] = {"ternd", "--io-threads", "3", "--region", "r"};
        assert_int_equal(load(&cfg, ARGC(good), good, errmsg, sizeof errmsg), 0);
        assert_int_equal(cfg.io_threads, 3);
        assert_string_equal(cfg.region, "r");
        node_config_free(&cfg);
        char *none[] = {"ternd"};
        assert_int_equal(load(&cfg, ARGC(none), none, errmsg, sizeof errmsg), 0);
        assert_int_equal(cfg.io_threads, 8);
        node_config_free(&cfg);
    }
}

static void test_parse_bytes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        uint64_t value;
    } cases[] = {
        {"0", 0, 0},
        {"1048576", 0, 1048576},
        {"1M", 0, 1u << 20},
        {"64K", 0, 64u << 10},
        {"4MiB", 0, 4u << 20},
        {"4mib", 0, 4u << 20},
        {"2G", 0, 2ull << 30},
        {"1T", 0, 1ull << 40},
        {"512KB", 0, 512u << 10},
        {"7B", 0, 7},
        {"18446744073709551615", 0, UINT64_MAX},
        {"18446744073709551616", TERN_ERANGE, 0},
        {"16777216T", TERN_ERANGE, 0},
        {"", TERN_EINVAL, 0},
        {"M", TERN_EINVAL, 0},
        {"-1", TERN_EINVAL, 0},
        {" 1M", TERN_EINVAL, 0},
        {"1M ", TERN_EINVAL, 0},
        {"1.5M", TERN_EINVAL, 0},
        {"1X", TERN_EINVAL, 0},
        {"1MiBB", TERN_EINVAL, 0},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
        uint64_t value = 12345;
        int rc = node_parse_bytes(cases[i].text, &value);
        if (rc != cases[i].rc) print_error("node_parse_bytes(\"%s\") = %d\n", cases[i].text, rc);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0) assert_int_equal(value, cases[i].value);
    }
}

static void test_group_settings(void **state)
{
    (void)state;
    node_config cfg;
    char errmsg[512];
    char *plain[] = {"ternd"};
    assert_int_equal(load(&cfg, ARGC(plain), plain, errmsg, sizeof errmsg), 0);
    assert_null(cfg.peers); /* a 1-node group: no transport, no TLS files */
    assert_int_equal(cfg.election_timeout_ms, 500);
    assert_int_equal(cfg.heartbeat_ms, 50);
    assert_int_equal(cfg.leader_wait_ms, 5000);
    assert_int_equal(cfg.snapshot_threshold_bytes, 256u << 20);
    assert_int_equal(cfg.snapshot_threshold_entries, 100000);
    assert_false(cfg.join);
    node_config_free(&cfg);

    char *argv[] = {"ternd",
                    "--node-id",
                    "2",
                    "--peers",
                    "1=10.0.0.1:7000,2=10.0.0.2:7000,3=10.0.0.3:7000",
                    "--peer-listen",
                    "0.0.0.0:7000",
                    "--peer-ca",
                    "ca.crt",
                    "--peer-cert",
                    "n2.crt",
                    "--peer-key",
                    "n2.key",
                    "--election-timeout-ms",
                    "800",
                    "--heartbeat-ms",
                    "80",
                    "--snapshot-threshold",
                    "64M",
                    "--snapshot-entries",
                    "5000",
                    "--leader-wait-ms",
                    "2000"};
    assert_int_equal(load(&cfg, ARGC(argv), argv, errmsg, sizeof errmsg), 0);
    assert_string_equal(cfg.peers, "1=10.0.0.1:7000,2=10.0.0.2:7000,3=10.0.0.3:7000");
    assert_string_equal(cfg.peer_listen, "0.0.0.0:7000");
    assert_string_equal(cfg.peer_ca, "ca.crt");
    assert_string_equal(cfg.peer_cert, "n2.crt");
    assert_string_equal(cfg.peer_key, "n2.key");
    assert_int_equal(cfg.election_timeout_ms, 800);
    assert_int_equal(cfg.heartbeat_ms, 80);
    assert_int_equal(cfg.snapshot_threshold_bytes, 64u << 20);
    assert_int_equal(cfg.snapshot_threshold_entries, 5000);
    assert_int_equal(cfg.leader_wait_ms, 2000);
    node_config_free(&cfg);

    /* The same from the file and the environment. */
    char *path = write_temp("{\"peers\": \"1=127.0.0.1:7001\", \"peer_ca\": \"a\", "
                            "\"peer_cert\": \"b\", \"peer_key\": \"c\", \"join\": false, "
                            "\"heartbeat_ms\": 40}");
    setenv("TERN_ELECTION_TIMEOUT_MS", "400", 1);
    char *file_argv[] = {"ternd", "--config", path};
    assert_int_equal(load(&cfg, ARGC(file_argv), file_argv, errmsg, sizeof errmsg), 0);
    assert_string_equal(cfg.peers, "1=127.0.0.1:7001");
    assert_int_equal(cfg.heartbeat_ms, 40);
    assert_int_equal(cfg.election_timeout_ms, 400);
    node_config_free(&cfg);
    unsetenv("TERN_ELECTION_TIMEOUT_MS");
    remove_temp(path);

    /* --join: the listed members need not include this node. */
    char *join[] = {"ternd",           "--node-id", "4", "--join",      "--peers",
                    "1=10.0.0.1:7000", "--peer-ca", "a", "--peer-cert", "b",
                    "--peer-key",      "c"};
    assert_int_equal(load(&cfg, ARGC(join), join, errmsg, sizeof errmsg), 0);
    assert_true(cfg.join);
    node_config_free(&cfg);
}

static void test_group_errors(void **state)
{
    (void)state;
    node_config cfg;
    char errmsg[512];
    struct {
        char *argv[8];
        int argc;
        const char *needle;
    } cases[] = {
        {{"ternd", "--peers", "1=10.0.0.1:7000"}, 3, "--peer-ca"},
        {{"ternd", "--peers", "2=10.0.0.2:7000", "--peer-ca", "a", "--peer-cert", "b"},
         7,
         "--peer-ca"},
        {{"ternd", "--peers", "1=host.example:7000"}, 3, "numeric IP"},
        {{"ternd", "--peers", "1=10.0.0.1:7000,1=10.0.0.2:7000"}, 3, "twice"},
        {{"ternd", "--peers", "1=10.0.0.1"}, 3, "HOST:PORT"},
        {{"ternd", "--join"}, 2, "--join needs --peers"},
        {{"ternd", "--heartbeat-ms", "600"}, 3, "below --election-timeout-ms"},
        {{"ternd", "--election-timeout-ms", "5"}, 3, "out of range"},
        {{"ternd", "--peer-listen", "nope"}, 3, "HOST:PORT"},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
        assert_int_equal(load(&cfg, cases[i].argc, cases[i].argv, errmsg, sizeof errmsg),
                         TERN_EINVAL);
        if (strstr(errmsg, cases[i].needle) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, errmsg, cases[i].needle);
    }
    char *not_self[] = {"ternd",     "--node-id", "5",           "--peers", "1=10.0.0.1:7000",
                        "--peer-ca", "a",         "--peer-cert", "b",       "--peer-key",
                        "c"};
    assert_int_equal(load(&cfg, ARGC(not_self), not_self, errmsg, sizeof errmsg), TERN_EINVAL);
    assert_non_null(strstr(errmsg, "must include this node"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clean_env),
        cmocka_unit_test_setup(test_all_flags, clean_env),
        cmocka_unit_test_setup(test_file, clean_env),
        cmocka_unit_test_setup(test_environment, clean_env),
        cmocka_unit_test_setup(test_precedence, clean_env),
        cmocka_unit_test_setup(test_flag_errors, clean_env),
        cmocka_unit_test_setup(test_env_errors, clean_env),
        cmocka_unit_test_setup(test_file_errors, clean_env),
        cmocka_unit_test_setup(test_help_and_version, clean_env),
        cmocka_unit_test_setup(test_repeated_loads, clean_env),
        cmocka_unit_test_setup(test_parse_bytes, clean_env),
        cmocka_unit_test_setup(test_group_settings, clean_env),
        cmocka_unit_test_setup(test_group_errors, clean_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
