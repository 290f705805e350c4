/* Node configuration: defaults < JSON file < TERN_* environment < command-line flags. */
#include <ctype.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "group.h"
#include "node.h"

/*
 * Design: one table (option_table) describes every setting once: its flag,
 * environment variable, JSON field, kind, bounds, default and help text. Every
 * layer turns its input into text and calls set_value(), so a value means the
 * same thing and is validated the same way whether it came from the file, the
 * environment or argv, and an error message names where it came from.
 */

enum opt_kind {
    KIND_CONFIG,    /* --config: handled before the other layers */
    KIND_STRING,    /* non-empty string */
    KIND_LISTEN,    /* HOST:PORT */
    KIND_REGION,    /* region name */
    KIND_LOG_LEVEL, /* error|warn|info|debug */
    KIND_ACCESS,    /* an access key id */
    KIND_SECRET,    /* a secret key, at least SECRET_MIN_CHARS */
    KIND_U64,       /* decimal integer in [min, max] */
    KIND_BYTES,     /* byte count with an optional K/M/G/T suffix, in [min, max] */
    KIND_BOOL,      /* 0/1/true/false */
    KIND_KEY,       /* ACCESS:SECRET appended to the extra key list */
    KIND_PEERS,     /* ID=HOST:PORT,... (node_group_parse_peers) */
};

/* Layers in rising precedence; a list (the extra keys) is replaced by a higher layer. */
enum { LAYER_DEFAULT, LAYER_FILE, LAYER_ENV, LAYER_FLAG };

#define SECRET_MIN_CHARS 8
#define KEY_MAX_CHARS    128

typedef struct {
    const char *flag;       /* long option name without "--" */
    const char *metavar;    /* NULL: the flag takes no argument and sets flag_value */
    const char *flag_value; /* the value a no-argument flag sets */
    const char *env;        /* NULL: no environment variable */
    const char *json;       /* NULL: no JSON field */
    enum opt_kind kind;
    size_t offset; /* of the field in node_config */
    size_t width;  /* bytes of an integer field: 4 or 8 */
    uint64_t min, max;
    const char *default_text;
    const char *help;
} opt_desc;

#define FIELD(name) offsetof(node_config, name), sizeof(((node_config *)0)->name)

static const opt_desc option_table[] = {
    {"config", "FILE", NULL, "TERN_CONFIG", NULL, KIND_CONFIG, FIELD(config_path), 0, 0, "none",
     "JSON configuration file (fields are the snake_case option names)"},
    {"data-dir", "DIR", NULL, "TERN_DATA_DIR", "data_dir", KIND_STRING, FIELD(data_dir), 0, 0,
     "./data", "directory holding the node's data; created if missing"},
    {"s3-listen", "HOST:PORT", NULL, "TERN_S3_LISTEN", "s3_listen", KIND_LISTEN, FIELD(s3_listen),
     0, 0, "127.0.0.1:9000", "address of the S3 API (and the /_tern admin endpoints)"},
    {"region", "NAME", NULL, "TERN_REGION", "region", KIND_REGION, FIELD(region), 0, 0, "local",
     "region this node belongs to"},
    {"topology", "FILE", NULL, "TERN_TOPOLOGY", "topology", KIND_STRING, FIELD(topology), 0, 0,
     "none",
     "the deployment's regions, endpoints, prices and bucket policies (JSON,\n"
     "      docs/placement.md); --region must be one of its regions"},
    {"node-id", "N", NULL, "TERN_NODE_ID", "node_id", KIND_U64, FIELD(node_id), 1, UINT64_MAX, "1",
     "this node's id, unique in the cluster (>= 1)"},
    {"block-size", "BYTES", NULL, "TERN_BLOCK_SIZE", "block_size", KIND_BYTES,
     FIELD(block_size_bytes), NODE_BLOCK_SIZE_MIN, NODE_BLOCK_SIZE_MAX, "1M",
     "size objects are split into for dedup (4K..4M)"},
    {"scrub-rate", "BYTES", NULL, "TERN_SCRUB_RATE", "scrub_rate", KIND_BYTES,
     FIELD(scrub_bytes_per_second), 0, UINT64_MAX, "8M",
     "bytes per second the scrubber verifies; 0 disables scrubbing"},
    {"geo-ship-rate", "BYTES", NULL, "TERN_GEO_SHIP_RATE", "geo_ship_rate", KIND_BYTES,
     FIELD(geo_ship_bytes_per_second), 0, UINT64_MAX, "0",
     "bytes per second the region leader sends to each other region; 0 = no bound"},
    {"block-cache", "BYTES", NULL, "TERN_BLOCK_CACHE", "block_cache", KIND_BYTES,
     FIELD(block_cache_bytes), 0, UINT64_MAX, "64M", "RocksDB block cache size"},
    {"disk-reserve", "BYTES", NULL, "TERN_DISK_RESERVE", "disk_reserve", KIND_BYTES,
     FIELD(disk_reserve_bytes), 0, UINT64_MAX, "256M",
     "free space kept on the data disk: uploads that would eat into it get 507\n"
     "      InsufficientStorage, so deletes, flushes and restarts always have room"},
    {"io-threads", "N", NULL, "TERN_IO_THREADS", "io_threads", KIND_U64, FIELD(io_threads), 1, 256,
     "8", "threads for disk I/O (UV_THREADPOOL_SIZE, 1..256)"},
    {"max-header-bytes", "BYTES", NULL, "TERN_MAX_HEADER_BYTES", "max_header_bytes", KIND_BYTES,
     FIELD(max_header_bytes), 1024, 1u << 20, "16K",
     "largest accepted request header block (1K..1M)"},
    {"max-connections", "N", NULL, "TERN_MAX_CONNECTIONS", "max_connections", KIND_U64,
     FIELD(max_connections), 1, 1000000, "1024", "concurrent client connections (1..1000000)"},
    {"shutdown-grace-ms", "MS", NULL, "TERN_SHUTDOWN_GRACE_MS", "shutdown_grace_ms", KIND_U64,
     FIELD(shutdown_grace_ms), 0, UINT32_MAX, "10000",
     "how long requests in flight may finish at shutdown"},
    {"sync", NULL, "1", "TERN_SYNC", "sync_writes", KIND_BOOL, FIELD(sync_writes), 0, 0, "on",
     "fsync every metadata commit (TERN_SYNC=0|1, sync_writes: true|false)"},
    {"no-sync", NULL, "0", NULL, NULL, KIND_BOOL, FIELD(sync_writes), 0, 0, "off",
     "do not fsync commits: tests and benchmarks only, loses data on power failure"},
    {"root-access-key", "KEY", NULL, "TERN_ROOT_ACCESS_KEY", "root_access_key", KIND_ACCESS,
     FIELD(root_access_key), 0, 0, "none", "root access key id (set with --root-secret-key)"},
    {"root-secret-key", "SECRET", NULL, "TERN_ROOT_SECRET_KEY", "root_secret_key", KIND_SECRET,
     FIELD(root_secret_key), 0, 0, "none", "root secret key (at least 8 characters)"},
    {"geo-access-key", "KEY", NULL, "TERN_GEO_ACCESS_KEY", "geo_access_key", KIND_ACCESS,
     FIELD(geo_access_key), 0, 0, "none",
     "deployment key the regions sign cross-region requests with (only /_tern/geo/* accepts "
     "it); default: the root key"},
    {"geo-secret-key", "SECRET", NULL, "TERN_GEO_SECRET_KEY", "geo_secret_key", KIND_SECRET,
     FIELD(geo_secret_key), 0, 0, "none", "the deployment key's secret (at least 8 characters)"},
    {"key", "ACCESS:SECRET", NULL, "TERN_KEYS", "keys", KIND_KEY, FIELD(keys), 0, 0, "none",
     "an extra credential; repeatable. TERN_KEYS takes a comma-separated list, the file\n"
     "      \"keys\": [{\"access_key\": ..., \"secret_key\": ...}]; a higher layer replaces\n"
     "      the whole list"},
    {"log-level", "LEVEL", NULL, "TERN_LOG_LEVEL", "log_level", KIND_LOG_LEVEL, FIELD(log_level), 0,
     0, "info", "error, warn, info or debug"},
    {"peers", "ID=HOST:PORT,...", NULL, "TERN_PEERS", "peers", KIND_PEERS, FIELD(peers), 0, 0,
     "none",
     "the region group's voters, this node included (numeric IPs); without it the node\n"
     "      is a 1-node group with no peer transport"},
    {"peer-listen", "HOST:PORT", NULL, "TERN_PEER_LISTEN", "peer_listen", KIND_LISTEN,
     FIELD(peer_listen), 0, 0, "this node's --peers address, else 127.0.0.1:7000",
     "address of the peer transport (Raft, forwarding), mutual TLS"},
    {"peer-ca", "FILE", NULL, "TERN_PEER_CA", "peer_ca", KIND_STRING, FIELD(peer_ca), 0, 0, "none",
     "PEM cluster CA: peers must present a certificate it signed (required with --peers)"},
    {"peer-cert", "FILE", NULL, "TERN_PEER_CERT", "peer_cert", KIND_STRING, FIELD(peer_cert), 0, 0,
     "none", "PEM certificate of this node; its subject CN must be the node id"},
    {"peer-key", "FILE", NULL, "TERN_PEER_KEY", "peer_key", KIND_STRING, FIELD(peer_key), 0, 0,
     "none", "PEM private key of --peer-cert"},
    {"election-timeout-ms", "MS", NULL, "TERN_ELECTION_TIMEOUT_MS", "election_timeout_ms", KIND_U64,
     FIELD(election_timeout_ms), 10, 600000, "500",
     "Raft election timeout, randomized in [t, 2t) per election"},
    {"heartbeat-ms", "MS", NULL, "TERN_HEARTBEAT_MS", "heartbeat_ms", KIND_U64, FIELD(heartbeat_ms),
     1, 60000, "50", "leader heartbeat interval (below the election timeout)"},
    {"leader-wait-ms", "MS", NULL, "TERN_LEADER_WAIT_MS", "leader_wait_ms", KIND_U64,
     FIELD(leader_wait_ms), 1, 3600000, "5000",
     "a write or consistent read waiting this long without a leader fails with 503"},
    {"placement-half-life-s", "SECONDS", NULL, "TERN_PLACEMENT_HALF_LIFE_S",
     "placement_half_life_s", KIND_U64, FIELD(placement_half_life_s), 1, 365ull * 86400, "86400",
     "how fast the placement engine forgets demand (its half-life); tests use seconds"},
    {"placement-time-scale", "N", NULL, "TERN_PLACEMENT_TIME_SCALE", "placement_time_scale",
     KIND_U64, FIELD(placement_time_scale), 1, 1000000, "1",
     "the placement engine's clock runs N times faster (benchmarks replaying a long trace)"},
    {"gc-grace-ms", "MS", NULL, "TERN_GC_GRACE_MS", "gc_grace_ms", KIND_U64, FIELD(gc_grace_ms), 0,
     UINT64_MAX, "3600000",
     "an unreferenced block is collected only after staying so this long (longer than any upload)"},
    {"snapshot-threshold", "BYTES", NULL, "TERN_SNAPSHOT_THRESHOLD", "snapshot_threshold",
     KIND_BYTES, FIELD(snapshot_threshold_bytes), 1, UINT64_MAX, "256M",
     "Raft log bytes since the last snapshot that trigger a new one"},
    {"snapshot-entries", "N", NULL, "TERN_SNAPSHOT_ENTRIES", "snapshot_entries", KIND_U64,
     FIELD(snapshot_threshold_entries), 1, UINT64_MAX, "100000",
     "Raft log entries since the last snapshot that trigger a new one"},
    {"join", NULL, "1", "TERN_JOIN", "join", KIND_BOOL, FIELD(join), 0, 0, "off",
     "start with an empty configuration and wait to be added by the group's leader\n"
     "      (--peers then names the existing members)"},
};

#define OPTION_COUNT TERN_ARRAY_LEN(option_table)
#define OPT_HELP     'h'
#define OPT_VERSION  'V'
#define OPT_BASE     256 /* getopt values of table options: OPT_BASE + index */

typedef struct {
    node_config *cfg;
    int keys_layer; /* the layer the current key list came from */
    char *errmsg;
    size_t errmsg_len;
} load_ctx;

/* One flag seen on the command line, applied after the file and the environment. */
typedef struct {
    const opt_desc *desc;
    const char *arg;
} flag_use;

static void *field_ptr(node_config *cfg, const opt_desc *d)
{
    return (char *)cfg + d->offset;
}

int node_parse_bytes(const char *text, uint64_t *out)
{
    static const struct {
        const char *suffix;
        unsigned shift;
    } units[] = {
        {"", 0},    {"b", 0},    {"k", 10},  {"kb", 10},  {"ki", 10}, {"kib", 10},
        {"m", 20},  {"mb", 20},  {"mi", 20}, {"mib", 20}, {"g", 30},  {"gb", 30},
        {"gi", 30}, {"gib", 30}, {"t", 40},  {"tb", 40},  {"ti", 40}, {"tib", 40},
    };
    if (text == NULL || !isdigit((unsigned char)text[0])) return TERN_EINVAL;
    uint64_t n = 0;
    const char *p = text;
    for (; isdigit((unsigned char)*p); p++) {
        uint64_t digit = (uint64_t)(*p - '0');
        if (n > (UINT64_MAX - digit) / 10) return TERN_ERANGE;
        n = n * 10 + digit;
    }
    for (size_t i = 0; i < TERN_ARRAY_LEN(units); i++) {
        if (strcasecmp(p, units[i].suffix) != 0) continue;
        if (units[i].shift > 0 && n > (UINT64_MAX >> units[i].shift)) return TERN_ERANGE;
        *out = n << units[i].shift;
        return 0;
    }
    return TERN_EINVAL;
}

static int parse_u64(const char *text, uint64_t *out)
{
    if (!isdigit((unsigned char)text[0])) return TERN_EINVAL;
    uint64_t n = 0;
    for (const char *p = text; *p; p++) {
        if (!isdigit((unsigned char)*p)) return TERN_EINVAL;
        uint64_t digit = (uint64_t)(*p - '0');
        if (n > (UINT64_MAX - digit) / 10) return TERN_ERANGE;
        n = n * 10 + digit;
    }
    *out = n;
    return 0;
}

/* HOST:PORT or [V6]:PORT with a non-empty host and a port in 1..65535. */
static bool listen_valid(const char *text)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text) return false;
    if (text[0] == '[' && (colon - text < 3 || colon[-1] != ']')) return false;
    uint64_t port;
    if (parse_u64(colon + 1, &port) != 0) return false;
    return port >= 1 && port <= 65535;
}

static bool region_valid(const char *text)
{
    size_t len = strlen(text);
    if (len == 0 || len > NODE_REGION_MAX) return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)text[i]) && strchr("-_.", text[i]) == NULL) return false;
    return true;
}

/* Access keys appear inside SigV4 "Credential=ACCESS/date/..." and in ACCESS:SECRET pairs. */
static bool access_key_valid(const char *text)
{
    size_t len = strlen(text);
    if (len == 0 || len > KEY_MAX_CHARS) return false;
    for (size_t i = 0; i < len; i++)
        if (!isgraph((unsigned char)text[i]) || strchr("/:,", text[i]) != NULL) return false;
    return true;
}

static bool secret_key_valid(const char *text)
{
    size_t len = strlen(text);
    if (len < SECRET_MIN_CHARS || len > KEY_MAX_CHARS) return false;
    for (size_t i = 0; i < len; i++)
        if (!isgraph((unsigned char)text[i])) return false;
    return true;
}

static void keys_clear(node_config *cfg)
{
    for (size_t i = 0; i < cfg->key_count; i++) {
        free(cfg->keys[i].access_key);
        free(cfg->keys[i].secret_key);
    }
    free(cfg->keys);
    cfg->keys = NULL;
    cfg->key_count = 0;
}

/* Appends one credential; `where` names its source for error messages. */
static int key_append(load_ctx *ctx, int layer, const char *access, const char *secret,
                      const char *where)
{
    node_config *cfg = ctx->cfg;
    if (!access_key_valid(access)) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len,
                    "%s: invalid access key '%s': expected 1..%d printable characters without "
                    "'/', ':' or ','",
                    where, access, KEY_MAX_CHARS);
        return TERN_EINVAL;
    }
    if (!secret_key_valid(secret)) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len,
                    "%s: the secret key of '%s' must be %d..%d printable characters", where, access,
                    SECRET_MIN_CHARS, KEY_MAX_CHARS);
        return TERN_EINVAL;
    }
    if (ctx->keys_layer != layer) {
        keys_clear(cfg);
        ctx->keys_layer = layer;
    }
    node_credential *grown = realloc(cfg->keys, (cfg->key_count + 1) * sizeof *grown);
    if (grown == NULL) goto nomem;
    cfg->keys = grown;
    node_credential *k = &cfg->keys[cfg->key_count];
    k->access_key = strdup(access);
    k->secret_key = strdup(secret);
    if (k->access_key == NULL || k->secret_key == NULL) {
        free(k->access_key);
        free(k->secret_key);
        goto nomem;
    }
    cfg->key_count++;
    return 0;
nomem:
    tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: out of memory", where);
    return TERN_ENOMEM;
}

/* "ACCESS:SECRET"; the secret may itself contain ':'. */
static int key_append_pair(load_ctx *ctx, int layer, const char *text, const char *where)
{
    const char *colon = strchr(text, ':');
    if (colon == NULL) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: invalid key '%s': expected ACCESS:SECRET",
                    where, text);
        return TERN_EINVAL;
    }
    char *access = strndup(text, (size_t)(colon - text));
    if (access == NULL) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: out of memory", where);
        return TERN_ENOMEM;
    }
    int rc = key_append(ctx, layer, access, colon + 1, where);
    free(access);
    return rc;
}

static int set_string(load_ctx *ctx, const opt_desc *d, const char *text, const char *where)
{
    char **slot = field_ptr(ctx->cfg, d);
    char *copy = strdup(text);
    if (copy == NULL) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: out of memory", where);
        return TERN_ENOMEM;
    }
    free(*slot);
    *slot = copy;
    return 0;
}

/* Byte bounds read best as 4K..4M, and as exact byte counts when they are not round. */
static void format_bound(uint64_t value, bool bytes, char *out, size_t out_len)
{
    if (bytes && value >= (1u << 20) && value % (1u << 20) == 0)
        snprintf(out, out_len, "%lluM", (unsigned long long)(value >> 20));
    else if (bytes && value >= 1024 && value % 1024 == 0)
        snprintf(out, out_len, "%lluK", (unsigned long long)(value >> 10));
    else
        snprintf(out, out_len, "%llu", (unsigned long long)value);
}

static int set_integer(load_ctx *ctx, const opt_desc *d, const char *text, const char *where)
{
    uint64_t value;
    int rc = d->kind == KIND_BYTES ? node_parse_bytes(text, &value) : parse_u64(text, &value);
    if (rc != 0) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: invalid value '%s': expected %s", where,
                    text,
                    d->kind == KIND_BYTES ? "a byte count such as 65536, 64K or 1M"
                                          : "a non-negative integer");
        return TERN_EINVAL;
    }
    if (value < d->min || value > d->max) {
        char min[32], max[32];
        format_bound(d->min, d->kind == KIND_BYTES, min, sizeof min);
        format_bound(d->max, d->kind == KIND_BYTES, max, sizeof max);
        tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: value '%s' is out of range (%s..%s)", where,
                    text, min, max);
        return TERN_EINVAL;
    }
    if (d->width == sizeof(uint32_t)) {
        uint32_t *slot = field_ptr(ctx->cfg, d);
        *slot = (uint32_t)value;
    } else {
        uint64_t *slot = field_ptr(ctx->cfg, d);
        *slot = value;
    }
    return 0;
}

static int set_bool(load_ctx *ctx, const opt_desc *d, const char *text, const char *where)
{
    bool *slot = field_ptr(ctx->cfg, d);
    if (strcmp(text, "1") == 0 || strcasecmp(text, "true") == 0) {
        *slot = true;
    } else if (strcmp(text, "0") == 0 || strcasecmp(text, "false") == 0) {
        *slot = false;
    } else {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: invalid value '%s': expected 0 or 1", where,
                    text);
        return TERN_EINVAL;
    }
    return 0;
}

/* Validates text for d and stores it; `where` names the source ("--io-threads", "TERN_REGION"). */
static int set_value(load_ctx *ctx, int layer, const opt_desc *d, const char *text,
                     const char *where)
{
    const char *expected = NULL;
    switch (d->kind) {
    case KIND_U64:
    case KIND_BYTES:
        return set_integer(ctx, d, text, where);
    case KIND_BOOL:
        return set_bool(ctx, d, text, where);
    case KIND_KEY:
        return key_append_pair(ctx, layer, text, where);
    case KIND_CONFIG:
    case KIND_STRING:
        if (text[0] == '\0') expected = "a non-empty value";
        break;
    case KIND_LISTEN:
        if (!listen_valid(text)) expected = "HOST:PORT with a port in 1..65535";
        break;
    case KIND_REGION:
        if (!region_valid(text)) expected = "1..64 letters, digits, '-', '_' or '.'";
        break;
    case KIND_LOG_LEVEL:
        if (node_log_level_parse(text) < 0) expected = "error, warn, info or debug";
        break;
    case KIND_PEERS: {
        node_group_peer peers[NODE_GROUP_PEERS_MAX];
        size_t count;
        char why[256];
        if (node_group_parse_peers(text, peers, NODE_GROUP_PEERS_MAX, &count, why, sizeof why)) {
            tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: %s", where, why);
            return TERN_EINVAL;
        }
        break;
    }
    case KIND_ACCESS:
        if (!access_key_valid(text))
            expected = "1..128 printable characters without '/', ':' or ','";
        break;
    case KIND_SECRET:
        /* The secret itself is never echoed into logs. */
        if (!secret_key_valid(text)) {
            tern_errmsg(ctx->errmsg, ctx->errmsg_len,
                        "%s: the secret key must be %d..%d printable characters", where,
                        SECRET_MIN_CHARS, KEY_MAX_CHARS);
            return TERN_EINVAL;
        }
        break;
    }
    if (expected != NULL) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: invalid value '%s': expected %s", where,
                    text, expected);
        return TERN_EINVAL;
    }
    return set_string(ctx, d, text, where);
}

static int set_defaults(load_ctx *ctx)
{
    node_config *cfg = ctx->cfg;
    memset(cfg, 0, sizeof *cfg);
    cfg->node_id = 1;
    cfg->block_size_bytes = NODE_BLOCK_SIZE_DEFAULT;
    cfg->scrub_bytes_per_second = 8u << 20;
    cfg->block_cache_bytes = 64u << 20;
    cfg->disk_reserve_bytes = 256u << 20;
    cfg->io_threads = 8;
    cfg->max_header_bytes = 16u << 10;
    cfg->max_connections = 1024;
    cfg->shutdown_grace_ms = 10000;
    cfg->sync_writes = true;
    cfg->election_timeout_ms = 500;
    cfg->heartbeat_ms = 50;
    cfg->leader_wait_ms = 5000;
    cfg->gc_grace_ms = 3600000;
    cfg->placement_half_life_s = 86400;
    cfg->placement_time_scale = 1;
    cfg->snapshot_threshold_bytes = 256ull << 20;
    cfg->snapshot_threshold_entries = 100000;
    cfg->data_dir = strdup("./data");
    cfg->s3_listen = strdup("127.0.0.1:9000");
    cfg->region = strdup("local");
    cfg->log_level = strdup("info");
    if (!cfg->data_dir || !cfg->s3_listen || !cfg->region || !cfg->log_level) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len, "out of memory");
        return TERN_ENOMEM;
    }
    return 0;
}

static const opt_desc *find_json_field(const char *name)
{
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (option_table[i].json != NULL && strcmp(option_table[i].json, name) == 0)
            return &option_table[i];
    return NULL;
}

/* "keys": [{"access_key": "...", "secret_key": "..."}, ...] */
static int load_json_keys(load_ctx *ctx, const char *path, json_t *array)
{
    char where[512];
    if (!json_is_array(array)) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len,
                    "%s: field 'keys': expected an array of {\"access_key\", \"secret_key\"}",
                    path);
        return TERN_EINVAL;
    }
    /* An empty list in the file still replaces the (empty) default list. */
    keys_clear(ctx->cfg);
    ctx->keys_layer = LAYER_FILE;
    size_t i;
    json_t *entry;
    json_array_foreach(array, i, entry)
    {
        snprintf(where, sizeof where, "%s: field 'keys[%zu]'", path, i);
        const char *name;
        json_t *value;
        const char *access = NULL, *secret = NULL;
        if (!json_is_object(entry)) goto bad_entry;
        json_object_foreach(entry, name, value)
        {
            if (strcmp(name, "access_key") == 0 && json_is_string(value)) {
                access = json_string_value(value);
            } else if (strcmp(name, "secret_key") == 0 && json_is_string(value)) {
                secret = json_string_value(value);
            } else {
                tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: unknown or non-string field '%s'",
                            where, name);
                return TERN_EINVAL;
            }
        }
        if (access == NULL || secret == NULL) goto bad_entry;
        int rc = key_append(ctx, LAYER_FILE, access, secret, where);
        if (rc != 0) return rc;
    }
    return 0;
bad_entry:
    tern_errmsg(ctx->errmsg, ctx->errmsg_len,
                "%s: expected {\"access_key\": STRING, \"secret_key\": STRING}", where);
    return TERN_EINVAL;
}

/* Turns a JSON value into the text set_value() parses, per the field's kind. */
static int json_field_text(load_ctx *ctx, const opt_desc *d, json_t *value, const char *where,
                           char *buf, size_t buf_len, const char **text)
{
    switch (d->kind) {
    case KIND_BOOL:
        if (!json_is_boolean(value)) break;
        *text = json_is_true(value) ? "1" : "0";
        return 0;
    case KIND_U64:
    case KIND_BYTES:
        if (json_is_integer(value)) {
            snprintf(buf, buf_len, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
            *text = buf;
            return 0;
        }
        if (d->kind == KIND_BYTES && json_is_string(value)) {
            *text = json_string_value(value);
            return 0;
        }
        break;
    default:
        if (!json_is_string(value)) break;
        *text = json_string_value(value);
        return 0;
    }
    const char *expected = d->kind == KIND_BOOL    ? "true or false"
                           : d->kind == KIND_U64   ? "an integer"
                           : d->kind == KIND_BYTES ? "an integer or a string such as \"1M\""
                                                   : "a string";
    char *dump = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
    tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: invalid value %s: expected %s", where,
                dump ? dump : "?", expected);
    free(dump);
    return TERN_EINVAL;
}

static int load_file(load_ctx *ctx, const char *path)
{
    json_error_t error;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &error);
    if (root == NULL) {
        if (error.line > 0)
            tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s:%d:%d: %s", path, error.line,
                        error.column, error.text);
        else
            tern_errmsg(ctx->errmsg, ctx->errmsg_len, "config file: %s", error.text);
        return TERN_EINVAL;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: expected a JSON object at the top level",
                    path);
        rc = TERN_EINVAL;
        goto out;
    }
    const char *name;
    json_t *value;
    json_object_foreach(root, name, value)
    {
        if (strcmp(name, "keys") == 0) {
            rc = load_json_keys(ctx, path, value);
            if (rc != 0) goto out;
            continue;
        }
        const opt_desc *d = find_json_field(name);
        if (d == NULL) {
            tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: unknown field '%s'", path, name);
            rc = TERN_EINVAL;
            goto out;
        }
        char where[512], number[32];
        const char *text;
        snprintf(where, sizeof where, "%s: field '%s'", path, name);
        rc = json_field_text(ctx, d, value, where, number, sizeof number, &text);
        if (rc == 0) rc = set_value(ctx, LAYER_FILE, d, text, where);
        if (rc != 0) goto out;
    }
out:
    json_decref(root);
    return rc;
}

/* TERN_KEYS: "ACCESS:SECRET,ACCESS:SECRET". */
static int load_env_keys(load_ctx *ctx, const opt_desc *d, const char *text)
{
    char *copy = strdup(text), *save = NULL;
    if (copy == NULL) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len, "%s: out of memory", d->env);
        return TERN_ENOMEM;
    }
    int rc = 0;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        rc = set_value(ctx, LAYER_ENV, d, item, d->env);
        if (rc != 0) break;
    }
    free(copy);
    return rc;
}

static int load_env(load_ctx *ctx)
{
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const opt_desc *d = &option_table[i];
        if (d->env == NULL || d->kind == KIND_CONFIG) continue;
        const char *text = getenv(d->env);
        /* An empty variable counts as unset, as shells make unsetting awkward. */
        if (text == NULL || text[0] == '\0') continue;
        int rc = d->kind == KIND_KEY ? load_env_keys(ctx, d, text)
                                     : set_value(ctx, LAYER_ENV, d, text, d->env);
        if (rc != 0) return rc;
    }
    return 0;
}

static void build_long_options(struct option *longopts)
{
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        longopts[i] = (struct option){option_table[i].flag,
                                      option_table[i].metavar ? required_argument : no_argument,
                                      NULL, OPT_BASE + (int)i};
    }
    longopts[OPTION_COUNT] = (struct option){"help", no_argument, NULL, OPT_HELP};
    longopts[OPTION_COUNT + 1] = (struct option){"version", no_argument, NULL, OPT_VERSION};
    longopts[OPTION_COUNT + 2] = (struct option){NULL, 0, NULL, 0};
}

/*
 * Collects the flags without applying them: the file and the environment come
 * first and flags override them. *action is OPT_HELP or OPT_VERSION if asked.
 */
static int parse_flags(load_ctx *ctx, int argc, char **argv, flag_use *uses, size_t *use_count,
                       int *action)
{
    struct option longopts[OPTION_COUNT + 3];
    build_long_options(longopts);
    /* optind = 0 makes glibc re-initialize getopt, so repeated calls (tests) start clean. */
    optind = 0;
    opterr = 0;
    int opt;
    *use_count = 0;
    *action = 0;
    /* '+': stop at the first non-option rather than permuting the caller's argv. */
    while ((opt = getopt_long(argc, argv, "+:hV", longopts, NULL)) != -1) {
        if (opt == OPT_HELP || opt == OPT_VERSION) {
            *action = opt;
        } else if (opt >= OPT_BASE && opt < OPT_BASE + (int)OPTION_COUNT) {
            const opt_desc *d = &option_table[opt - OPT_BASE];
            uses[(*use_count)++] = (flag_use){d, d->metavar ? optarg : d->flag_value};
        } else if (opt == ':') {
            tern_errmsg(ctx->errmsg, ctx->errmsg_len, "option '%s' requires an argument",
                        argv[optind - 1]);
            return TERN_EINVAL;
        } else if (optopt >= OPT_BASE || optopt == OPT_HELP || optopt == OPT_VERSION) {
            /* glibc reports "--flag=value" on a no-argument flag with optopt = its value. */
            tern_errmsg(ctx->errmsg, ctx->errmsg_len, "option '%s' takes no argument",
                        argv[optind - 1]);
            return TERN_EINVAL;
        } else if (optopt != 0) {
            tern_errmsg(ctx->errmsg, ctx->errmsg_len, "unknown option '-%c' (see --help)", optopt);
            return TERN_EINVAL;
        } else {
            tern_errmsg(ctx->errmsg, ctx->errmsg_len, "unknown option '%s' (see --help)",
                        argv[optind - 1]);
            return TERN_EINVAL;
        }
    }
    if (*action == 0 && optind < argc) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len, "unexpected argument '%s' (see --help)",
                    argv[optind]);
        return TERN_EINVAL;
    }
    return 0;
}

static int apply_flags(load_ctx *ctx, const flag_use *uses, size_t use_count)
{
    char where[64];
    for (size_t i = 0; i < use_count; i++) {
        if (uses[i].desc->kind == KIND_CONFIG) continue; /* already read */
        snprintf(where, sizeof where, "--%s", uses[i].desc->flag);
        int rc = set_value(ctx, LAYER_FLAG, uses[i].desc, uses[i].arg, where);
        if (rc != 0) return rc;
    }
    return 0;
}

/* The file path: the last --config, else TERN_CONFIG; NULL for none. */
static int resolve_config_path(load_ctx *ctx, const flag_use *uses, size_t use_count)
{
    const char *path = NULL, *where = "TERN_CONFIG";
    for (size_t i = 0; i < use_count; i++) {
        if (uses[i].desc->kind == KIND_CONFIG) {
            path = uses[i].arg;
            where = "--config";
        }
    }
    if (path == NULL) {
        path = getenv("TERN_CONFIG");
        if (path != NULL && path[0] == '\0') path = NULL;
    }
    if (path == NULL) return 0;
    return set_value(ctx, LAYER_FLAG, &option_table[0], path, where);
}

/* The region group's settings, together. */
static int check_group_config(load_ctx *ctx)
{
    const node_config *cfg = ctx->cfg;
    if (cfg->heartbeat_ms >= cfg->election_timeout_ms) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len,
                    "--heartbeat-ms (%u) must be below --election-timeout-ms (%u)",
                    cfg->heartbeat_ms, cfg->election_timeout_ms);
        return TERN_EINVAL;
    }
    if (cfg->peers == NULL) {
        if (cfg->join) {
            tern_errmsg(ctx->errmsg, ctx->errmsg_len,
                        "--join needs --peers naming the group's existing members");
            return TERN_EINVAL;
        }
        return 0;
    }
    if (!cfg->peer_ca || !cfg->peer_cert || !cfg->peer_key) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len,
                    "--peers needs --peer-ca, --peer-cert and --peer-key (mutual TLS); "
                    "scripts/gen-test-ca.sh makes a throwaway CA");
        return TERN_EINVAL;
    }
    node_group_peer peers[NODE_GROUP_PEERS_MAX];
    size_t count;
    char why[256];
    if (node_group_parse_peers(cfg->peers, peers, NODE_GROUP_PEERS_MAX, &count, why, sizeof why))
        return tern_errmsg(ctx->errmsg, ctx->errmsg_len, "--peers: %s", why), TERN_EINVAL;
    bool self = false;
    for (size_t i = 0; i < count; i++)
        self = self || peers[i].id == cfg->node_id;
    if (!self && !cfg->join) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len,
                    "--peers must include this node (--node-id %llu), or start it with --join",
                    (unsigned long long)cfg->node_id);
        return TERN_EINVAL;
    }
    return 0;
}

/* Constraints across fields, checked once every layer is in. */
static int check_config(load_ctx *ctx)
{
    const node_config *cfg = ctx->cfg;
    if ((cfg->geo_access_key == NULL) != (cfg->geo_secret_key == NULL)) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len,
                    "geo credentials: %s is set but %s is not (both or neither)",
                    cfg->geo_access_key ? "geo access key" : "geo secret key",
                    cfg->geo_access_key ? "the geo secret key" : "the geo access key");
        return TERN_EINVAL;
    }
    if ((cfg->root_access_key == NULL) != (cfg->root_secret_key == NULL)) {
        tern_errmsg(ctx->errmsg, ctx->errmsg_len,
                    "root credentials: %s is set but %s is not (both or neither)",
                    cfg->root_access_key ? "root access key" : "root secret key",
                    cfg->root_access_key ? "the root secret key" : "the root access key");
        return TERN_EINVAL;
    }
    return check_group_config(ctx);
}

int node_config_load(node_config *cfg, int argc, char **argv, FILE *out, char *errmsg,
                     size_t errmsg_len)
{
    load_ctx ctx = {cfg, LAYER_DEFAULT, errmsg, errmsg_len};
    tern_errmsg(errmsg, errmsg_len, "%s", "");
    flag_use *uses = calloc((size_t)(argc > 0 ? argc : 1), sizeof *uses);
    int rc = set_defaults(&ctx);
    if (rc != 0 || uses == NULL) {
        rc = TERN_ENOMEM;
        tern_errmsg(errmsg, errmsg_len, "out of memory");
        goto fail;
    }
    size_t use_count;
    int action;
    rc = parse_flags(&ctx, argc, argv, uses, &use_count, &action);
    if (rc != 0) goto fail;
    if (action != 0) {
        if (out == NULL) out = stdout;
        if (action == OPT_HELP)
            node_config_print_help(out);
        else
            fprintf(out, "ternd %s\n", TERN_VERSION);
        node_config_free(cfg);
        free(uses);
        return 1;
    }
    rc = resolve_config_path(&ctx, uses, use_count);
    if (rc == 0 && cfg->config_path != NULL) rc = load_file(&ctx, cfg->config_path);
    if (rc == 0) rc = load_env(&ctx);
    if (rc == 0) rc = apply_flags(&ctx, uses, use_count);
    if (rc == 0) rc = check_config(&ctx);
    if (rc != 0) goto fail;
    free(uses);
    return 0;
fail:
    /* The caller gets a zeroed config it may free again, and nothing to leak. */
    node_config_free(cfg);
    free(uses);
    return rc == TERN_ENOMEM ? rc : TERN_EINVAL;
}

void node_config_free(node_config *cfg)
{
    if (cfg == NULL) return;
    free(cfg->config_path);
    free(cfg->data_dir);
    free(cfg->s3_listen);
    free(cfg->region);
    free(cfg->root_access_key);
    free(cfg->root_secret_key);
    free(cfg->geo_access_key);
    free(cfg->geo_secret_key);
    free(cfg->log_level);
    free(cfg->peers);
    free(cfg->peer_listen);
    free(cfg->peer_ca);
    free(cfg->peer_cert);
    free(cfg->peer_key);
    free(cfg->topology);
    keys_clear(cfg);
    memset(cfg, 0, sizeof *cfg);
}

void node_config_print_help(FILE *out)
{
    fprintf(out, "Usage: ternd [OPTIONS]\n"
                 "\n"
                 "tern storage node: an S3-compatible blob store.\n"
                 "\n"
                 "Settings come from, in rising precedence: defaults, the JSON config file\n"
                 "(--config or TERN_CONFIG), TERN_* environment variables, then flags.\n"
                 "Byte counts take K, M, G or T suffixes (powers of 1024): 64K, 1M, 4MiB.\n"
                 "\n"
                 "Options:\n");
    char flag[64];
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const opt_desc *d = &option_table[i];
        snprintf(flag, sizeof flag, "--%s%s%s", d->flag, d->metavar ? " " : "",
                 d->metavar ? d->metavar : "");
        fprintf(out, "  %-30s %s\n", flag, d->help);
        fprintf(out, "      env %s, config %s, default %s\n", d->env ? d->env : "-",
                d->json ? d->json : "-", d->default_text);
    }
    fprintf(out, "  %-30s %s\n", "-h, --help", "print this help and exit");
    fprintf(out, "  %-30s %s\n", "-V, --version", "print the version and exit");
}
