/* The geo shipper: the region leader sends its geo log, and the blocks it names, to every other
 * region. */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "group.h"
#include "node.h"
#include "sm.h"
#include "store_internal.h"

/*
 * One thread per peer region, active only while this node leads its region
 * (the loop thread sets the flag from the group's status). Each round:
 *   1. ask the peer how far it has applied this region's log
 *      (GET /_tern/geo/received?origin=ID): the cursor lives in the peer's
 *      replicated state, so nothing is skipped or sent twice in effect after
 *      a leader change on either side;
 *   2. read up to BATCH records after it from the local geo log;
 *   3. for the object puts whose target set (placement) includes the peer,
 *      ask in one request which of their blocks the peer lacks
 *      (POST /_tern/geo/have) and send those, up to 8 MiB per request
 *      (POST /_tern/geo/blocks, the receiver checks each SHA-256);
 *   4. send the records in order with each put's target set
 *      (POST /_tern/geo/apply?format=2); the peer commits them through its own
 *      group with last-writer-wins, storing the manifest of a put it is not a
 *      target of without its blocks (its reads fetch them from a holder).
 * A put's target set is computed once (node_placement_put_target: the
 * engine's set raised to the bucket's floor) and remembered by log index, so
 * every peer is told the same holders; a peer so far behind that its records
 * left that memory is sent the blocks (over-replication is safe, a holder
 * left out is not). Requests are signed with the deployment's root
 * credentials (SigV4, by libcurl), go to the peer's S3 endpoints in turn (the
 * next one when a node does not answer), are rate-bound per peer when a
 * bandwidth is configured, and time out, so a dead or cut-off peer costs a
 * retry with backoff, never a stuck thread. A failed round resumes at the
 * peer's own high-water mark and re-asks which blocks it has, so an
 * interrupted transfer sends only what is missing. Egress is recorded per
 * byte sent, as replication.
 */

#define BATCH              64
#define IDLE_WAIT_MS       100
#define BACKOFF_MS_MIN     200
#define BACKOFF_MS_MAX     5000
#define REQUEST_TIMEOUT_MS 10000
/* The log is trimmed once every peer has applied this many more records (or, when idle, all
 * that every peer has): one Raft command per batch of trims, not per record. */
#define TRIM_STEP 256
/* Target sets remembered per log index (a power of two). */
#define TARGETS 4096

typedef struct ship_peer ship_peer;

struct node_geo_ship {
    node_store *store;
    node_group *group;
    uint64_t trimmed; /* the log is trimmed through here (under mu) */
    bool trimming;
    node_egress *egress;
    node_placement *placement; /* NULL: every block to every peer */
    node_geo_fetch *fetch;     /* asks other regions what they hold before a drop; may be NULL */
    const node_topology *topology;
    char self_endpoint[256];
    /* Per endpoint of this region: where its node's placement journal was read up to. */
    uint64_t journal_after[NODE_TOPOLOGY_ENDPOINTS_MAX];
    uint64_t journal_epoch[NODE_TOPOLOGY_ENDPOINTS_MAX];
    pthread_t drop_thread;
    bool drop_started;
    uint64_t rate_bytes_per_s; /* per peer; 0 = unbounded */
    /* Target sets by log index (under mu): slot index % TARGETS holds (index, mask). */
    uint64_t target_index[TARGETS];
    uint32_t target_mask[TARGETS];
    uint32_t local_index; /* in the topology */
    uint32_t local_id;    /* node_sm_region_id of its name */
    char *userpwd;
    atomic_bool leader;
    atomic_bool stopping;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    size_t peer_count;
    ship_peer *peers;
};

struct ship_peer {
    node_geo_ship *ship;
    uint32_t index; /* the peer region in the topology */
    char name[PLC_REGION_NAME_MAX];
    char endpoint[256];
    size_t endpoint_next; /* the region's endpoint used next (rotates when one fails) */
    pthread_t thread;
    bool started;
    CURL *curl;
    uint64_t acked;  /* the highest index this peer is known to have applied (under ship->mu) */
    uint64_t marked; /* the last idle mark the peer committed */
};

typedef struct {
    char *data;
    size_t len;
} body;

static size_t collect(char *p, size_t size, size_t n, void *ctx)
{
    body *b = ctx;
    size_t add = size * n;
    if (b->len + add > (1u << 20)) return 0; /* answers are small: refuse a flood */
    char *grown = realloc(b->data, b->len + add + 1);
    if (grown == NULL) return 0;
    memcpy(grown + b->len, p, add);
    b->data = grown;
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

/* Sleeps up to ms, waking early when stopping. */
static void nap(node_geo_ship *s, int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    if (!atomic_load(&s->stopping)) pthread_cond_timedwait(&s->cond, &s->mu, &until);
    pthread_mutex_unlock(&s->mu);
}

/* One signed request to the peer; returns the HTTP status, or 0 when no answer came. */
static long request(ship_peer *p, const char *method, const char *path, const void *data,
                    size_t len, const char *content_type, body *out)
{
    CURL *c = p->curl;
    curl_easy_reset(c);
    char url[512];
    snprintf(url, sizeof url, "%s%s", p->endpoint, path);
    char hash_header[100];
    node_block_id digest;
    node_block_hash(data ? data : "", data ? len : 0, &digest);
    char hex[65];
    tern_hex(digest.bytes, 32, hex);
    snprintf(hash_header, sizeof hash_header, "x-amz-content-sha256: %s", hex);
    char type_header[100];
    snprintf(type_header, sizeof type_header, "Content-Type: %s",
             content_type ? content_type : "application/octet-stream");
    struct curl_slist *headers = curl_slist_append(NULL, hash_header);
    headers = curl_slist_append(headers, type_header);
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, data ? (const char *)data : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(data ? len : 0));
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
    curl_easy_setopt(c, CURLOPT_USERPWD, p->ship->userpwd);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ternd-geo/" TERN_VERSION);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)REQUEST_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (p->ship->rate_bytes_per_s)
        curl_easy_setopt(c, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)p->ship->rate_bytes_per_s);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    if (status == 0 || status == 503) {
        /* That node is down or has no leader to forward to: the next round tries the
         * region's next endpoint. */
        const node_topology *t = p->ship->topology;
        size_t n = t->s3_endpoint_count[p->index];
        p->endpoint_next = (p->endpoint_next + 1) % n;
        snprintf(p->endpoint, sizeof p->endpoint, "%s",
                 t->s3_endpoints[p->index][p->endpoint_next]);
    }
    return status;
}

/* How far the peer has applied this region's log; false when it could not be asked. */
static bool peer_received(ship_peer *p, uint64_t *out)
{
    char path[96];
    snprintf(path, sizeof path, "/_tern/geo/received?origin=%08x", p->ship->local_id);
    body b = {0};
    long status = request(p, "GET", path, NULL, 0, NULL, &b);
    bool ok = false;
    if (status == 200 && b.data) {
        json_t *doc = json_loads(b.data, 0, NULL);
        json_t *v = json_object_get(doc, "index");
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
            *out = (uint64_t)json_integer_value(v);
            ok = true;
        }
        json_decref(doc);
    }
    free(b.data);
    return ok;
}

typedef struct {
    uint64_t index[BATCH];
    node__buf records; /* u32 len | u64 index | u32 holders | record, per record */
    size_t count;
} batch;

static int add_record(void *ctx, uint64_t index, const void *rec, size_t len)
{
    batch *b = ctx;
    node__buf_u32(&b->records, (uint32_t)(12 + len));
    node__buf_u64(&b->records, index);
    node__buf_u32(&b->records, 0); /* holders: filled in once the blocks went */
    node__buf_bytes(&b->records, rec, len);
    b->index[b->count++] = index;
    return b->records.failed ? 1 : 0;
}

/* The target set of the put at log index (bucket/key, bytes): remembered, or computed now. */
static uint32_t put_target(ship_peer *p, uint64_t index, const char *bucket, const char *key,
                           uint64_t bytes)
{
    node_geo_ship *s = p->ship;
    if (s->placement == NULL) return 0;
    if (index == 0) /* a re-seed: not in the log, decided afresh */
        return node_placement_put_target(s->placement, bucket, key, bytes, tern_now_ms());
    size_t slot = index % TARGETS;
    pthread_mutex_lock(&s->mu);
    uint32_t mask = s->target_index[slot] == index ? s->target_mask[slot] : 0;
    bool forgotten = mask == 0 && s->target_index[slot] > index;
    pthread_mutex_unlock(&s->mu);
    if (mask != 0) return mask;
    if (forgotten) return 0; /* a later record took the slot: every region holds this one */
    mask = node_placement_put_target(s->placement, bucket, key, bytes, tern_now_ms());
    pthread_mutex_lock(&s->mu);
    if (s->target_index[slot] == index) {
        mask = s->target_mask[slot]; /* another peer's thread decided first */
    } else if (s->target_index[slot] < index) {
        s->target_index[slot] = index;
        s->target_mask[slot] = mask;
    }
    pthread_mutex_unlock(&s->mu);
    return mask;
}

/* Of the ids, marks in need[] those the peer lacks (one request); false when it cannot say. */
static bool peer_lacks(ship_peer *p, const node_block_id *ids, size_t count, bool *need)
{
    if (count == 0) return true;
    body b = {0};
    long status = request(p, "POST", "/_tern/geo/have", ids, count * sizeof *ids, NULL, &b);
    bool ok = status == 200 && b.len == count;
    for (size_t i = 0; ok && i < count; i++)
        need[i] = b.data[i] != '1';
    free(b.data);
    return ok;
}

/* The target set of an object put record (0 for other changes, or every region) and, when
 * the peer is in it, its manifest (*m, caller frees). false for a malformed record. */
static bool plan_blocks(ship_peer *p, uint64_t index, const void *rec, size_t rec_len,
                        uint32_t *holders, node_manifest **m)
{
    *holders = 0;
    *m = NULL;
    uint64_t hlc;
    uint32_t region;
    const uint8_t *cmd;
    size_t cmd_len;
    if (node_sm_geo_decode(rec, rec_len, &hlc, &region, &cmd, &cmd_len) != 0) return false;
    if (cmd[1] != 4 /* OBJECT_PUT: the only change that names blocks */) return true;
    /* The two names (u32 length + bytes each), then the manifest record. */
    char names[2][NODE_KEY_BYTES_MAX + 1];
    const uint8_t *q = cmd + 2, *end = cmd + cmd_len;
    for (int i = 0; i < 2; i++) {
        if (end - q < 4) return false;
        uint32_t n = tern_le_get_u32(q);
        if ((size_t)(end - q - 4) < n || n > NODE_KEY_BYTES_MAX) return false;
        memcpy(names[i], q + 4, n);
        names[i][n] = '\0';
        q += 4 + n;
    }
    if (node__manifest_decode((const char *)q, (size_t)(end - q), m) != 0) return false;
    *holders = put_target(p, index, names[0], names[1], (*m)->size_bytes);
    if (*holders != 0 && !(*holders & (1u << p->index))) {
        node_manifest_free(*m); /* placement keeps this version out of the peer's region */
        *m = NULL;
    }
    return true;
}

/* Sends what pending holds (POST /_tern/geo/blocks), counted as egress of cause; false on a
 * failure. Empties it either way. */
static bool flush_blocks(ship_peer *p, node__buf *pending, node_egress_cause cause)
{
    if (pending->len == 0) return true;
    bool ok = !pending->failed;
    if (ok) {
        body b = {0};
        long status =
            request(p, "POST", "/_tern/geo/blocks", pending->data, pending->len, NULL, &b);
        free(b.data);
        ok = status == 200;
        if (ok && p->ship->egress)
            node_egress_record(p->ship->egress, p->ship->local_index, p->index, cause,
                               pending->len);
    }
    node__buf_free(pending);
    memset(pending, 0, sizeof *pending);
    return ok;
}

/* Sends the blocks among ids that the peer lacks, each once, several per request (a round
 * trip per block bounded shipping at a few puts per second per peer across an ocean);
 * false on any failure. */
#define BLOCKS_REQUEST_BYTES (8u << 20)
static bool ship_blocks(ship_peer *p, const node_block_id *ids, size_t count,
                        node_egress_cause cause)
{
    bool *need = calloc(count ? count : 1, sizeof *need);
    bool ok = need != NULL && peer_lacks(p, ids, count, need);
    node__buf pending = {0};
    for (size_t i = 0; ok && i < count; i++) {
        if (!need[i]) continue;
        for (size_t j = i + 1; j < count; j++) /* the same block twice in one batch */
            if (memcmp(ids[j].bytes, ids[i].bytes, sizeof ids[i].bytes) == 0) need[j] = false;
        void *data = NULL;
        size_t len = 0;
        if (node_store_block_get(p->ship->store, &ids[i], true, &data, &len) != 0) {
            ok = false;
            break;
        }
        if (pending.len > 0 && pending.len + 36 + len > BLOCKS_REQUEST_BYTES)
            ok = flush_blocks(p, &pending, cause);
        node__buf_bytes(&pending, ids[i].bytes, NODE_BLOCK_ID_BYTES);
        node__buf_u32(&pending, (uint32_t)len);
        node__buf_bytes(&pending, data, len);
        free(data);
    }
    if (ok) ok = flush_blocks(p, &pending, cause);
    node__buf_free(&pending);
    free(need);
    return ok;
}

typedef struct {
    node_geo_ship *ship;
    uint64_t upto;
} trim_request;

static void trim_done_locked(node_geo_ship *s, uint64_t upto, int status)
{
    pthread_mutex_lock(&s->mu);
    if (status == 0 && upto > s->trimmed) s->trimmed = upto;
    s->trimming = false;
    pthread_mutex_unlock(&s->mu);
    if (status == 0)
        node_log(NODE_LOG_INFO, "geo", "log trimmed through %llu (applied by every peer)",
                 (unsigned long long)upto);
    else if (status != TERN_ECLOSED)
        node_log(NODE_LOG_WARN, "geo", "trimming the log through %llu failed: %s",
                 (unsigned long long)upto, tern_strerror(status));
}

/* The loop thread, once the trim committed (or failed; the next round tries again). The ship
 * outlives every pending trim: node_geo_ship_free runs after the group has closed. */
static void trim_done(void *arg, int status)
{
    trim_request *t = arg;
    trim_done_locked(t->ship, t->upto, status);
    free(t);
}

/* Records that the peer has applied through index, and trims the log through what every peer
 * has applied once that moved far enough (idle: at all). */
static void note_acked(ship_peer *p, uint64_t index, bool idle)
{
    node_geo_ship *s = p->ship;
    pthread_mutex_lock(&s->mu);
    if (index > p->acked) p->acked = index;
    uint64_t all = UINT64_MAX;
    for (size_t i = 0; i < s->peer_count; i++)
        if (s->peers[i].acked < all) all = s->peers[i].acked;
    bool trim = s->group != NULL && !s->trimming && all != UINT64_MAX && all > s->trimmed &&
                (idle || all - s->trimmed >= TRIM_STEP);
    if (trim) s->trimming = true;
    pthread_mutex_unlock(&s->mu);
    if (!trim) return;
    /* Submitted, not called: a thread waiting on the group would deadlock with a loop that
     * joins this thread at shutdown. The answer comes on the loop (trim_done). */
    trim_request *t = malloc(sizeof *t);
    uint8_t *cmd = NULL;
    size_t len = 0;
    int rc = t ? node_sm_encode_geo_trim(all, &cmd, &len) : TERN_ENOMEM;
    if (rc == 0) {
        *t = (trim_request){s, all};
        rc = node_group_submit(s->group, cmd, len, trim_done, t);
    }
    free(cmd);
    if (rc != 0) {
        free(t);
        trim_done_locked(s, all, rc);
    }
}

/* Tells a caught-up peer that every later change of this region is newer than hlc. */
static void send_mark(ship_peer *p, uint64_t hlc)
{
    char path[128];
    snprintf(path, sizeof path, "/_tern/geo/mark?hlc=%llu&origin=%08x", (unsigned long long)hlc,
             p->ship->local_id);
    body b = {0};
    if (request(p, "POST", path, NULL, 0, NULL, &b) == 200) p->marked = hlc;
    free(b.data);
}

/* Ships a batch's blocks to the peer where placement wants them, then its records (a
 * re-seed's without moving the peer's high-water index). 0, or -1 on a failure. */
static int send_batch(ship_peer *p, batch *b, bool reseed)
{
    /* Blocks first, so the manifests that name them can apply: every block of the batch's
     * puts that the peer is a target of, asked about in one request. */
    node_block_id *ids = NULL;
    size_t id_count = 0, id_cap = 0;
    bool ok = true;
    uint8_t *q = b->records.data;
    for (size_t i = 0; ok && i < b->count; i++) {
        uint32_t len = tern_le_get_u32(q);
        uint32_t holders;
        node_manifest *m = NULL;
        ok = plan_blocks(p, reseed ? 0 : b->index[i], q + 4 + 12, len - 12, &holders, &m);
        tern_le_put_u32(q + 4 + 8, holders);
        q += 4 + len;
        if (!ok || m == NULL) continue;
        if (id_count + m->block_count > id_cap) {
            size_t cap = TERN_MAX(id_cap * 2, id_count + m->block_count + 16);
            node_block_id *grown = realloc(ids, cap * sizeof *grown);
            if (grown == NULL)
                ok = false;
            else
                ids = grown, id_cap = cap;
        }
        for (size_t k = 0; ok && k < m->block_count; k++)
            ids[id_count++] = m->blocks[k].id;
        node_manifest_free(m);
    }
    /* A re-seed re-copies what the peer lost: repair, not replication of new writes. */
    if (ok)
        ok = ship_blocks(p, ids, id_count, reseed ? NODE_EGRESS_REPAIR : NODE_EGRESS_REPLICATION);
    free(ids);
    if (!ok) return -1;
    body out = {0};
    long status = request(
        p, "POST", reseed ? "/_tern/geo/apply?format=2&reseed=1" : "/_tern/geo/apply?format=2",
        b->records.data, b->records.len, "application/octet-stream", &out);
    if (status == 200 && p->ship->egress)
        node_egress_record(p->ship->egress, p->ship->local_index, p->index,
                           reseed ? NODE_EGRESS_REPAIR : NODE_EGRESS_REPLICATION, b->records.len);
    if (status != 200)
        node_log(NODE_LOG_WARN, "geo", "region %s refused %zu change(s) (HTTP %ld): %.200s",
                 p->name, b->count, status, out.data ? out.data : "no answer");
    free(out.data);
    return status == 200 ? 0 : -1;
}

/*
 * Re-seeding: a peer whose high-water mark is behind the point this region's log was trimmed
 * through (it lost its state and came back empty, or was restored from an old backup) would
 * never get the trimmed changes. It is sent this region's current state instead: every
 * bucket, the policies and objects whose latest version this region wrote, and its
 * tombstones, each at its version, applied by last writer wins (so a newer change already
 * there stands), with their blocks where placement puts them; then a GEO_MARK raises its
 * high-water index to the trim point, and shipping goes on from the log. Changes made while
 * the re-seed runs are in the log after the trim point (which cannot move: this peer has not
 * acknowledged it), so they follow.
 */
typedef struct {
    ship_peer *p;
    batch b;
    bool failed;
    size_t sent;
} reseed_ctx;

static void reseed_flush(reseed_ctx *c)
{
    if (c->b.count > 0 && !c->failed) {
        if (c->b.records.failed || send_batch(c->p, &c->b, true) != 0) c->failed = true;
        c->sent += c->b.count;
    }
    node__buf_free(&c->b.records);
    memset(&c->b, 0, sizeof c->b);
}

/* Adds the change cmd at version hlc (as this region's) to the re-seed. */
static void reseed_add(reseed_ctx *c, uint64_t hlc, uint8_t *cmd, size_t len)
{
    uint8_t *rec = NULL;
    size_t rec_len = 0;
    if (cmd == NULL || node_sm_geo_record(hlc, c->p->ship->local_id, cmd, len, &rec, &rec_len)) {
        c->failed = true;
    } else {
        add_record(&c->b, 1, rec, rec_len);
        if (c->b.count == BATCH) reseed_flush(c);
    }
    free(rec);
    free(cmd);
}

static int reseed_tombstone(void *ctx, const char *key, size_t key_len, const void *value,
                            size_t value_len)
{
    reseed_ctx *c = ctx;
    const uint8_t *v = value;
    if (value_len < 13 || !v[12] || tern_le_get_u32(v + 8) != c->p->ship->local_id) return 0;
    const char *name = key + strlen("raft/ver/"), *end = key + key_len;
    const char *slash = memchr(name, '/', (size_t)(end - name));
    if (slash == NULL || slash - name > NODE_BUCKET_NAME_MAX ||
        end - slash - 1 > NODE_KEY_BYTES_MAX)
        return 0;
    char bucket[NODE_BUCKET_NAME_MAX + 1], k[NODE_KEY_BYTES_MAX + 1];
    memcpy(bucket, name, (size_t)(slash - name));
    bucket[slash - name] = '\0';
    memcpy(k, slash + 1, (size_t)(end - slash - 1));
    k[end - slash - 1] = '\0';
    uint8_t *cmd = NULL;
    size_t len = 0;
    node_sm_encode_object_delete(bucket, k, &cmd, &len);
    reseed_add(c, tern_le_get_u64(v), cmd, len);
    return c->failed;
}

static int reseed(ship_peer *p, uint64_t cursor, uint64_t upto)
{
    node_geo_ship *s = p->ship;
    node_log(NODE_LOG_WARN, "geo",
             "region %s has applied this region's log through %llu, which was trimmed through "
             "%llu: re-seeding it with this region's current state",
             p->name, (unsigned long long)cursor, (unsigned long long)upto);
    reseed_ctx c = {.p = p};
    node_bucket *buckets = NULL;
    size_t count = 0;
    if (node_store_bucket_list(s->store, &buckets, &count) != 0) return -1;
    for (size_t i = 0; i < count && !c.failed && !atomic_load(&s->stopping); i++) {
        const node_bucket *bk = &buckets[i];
        uint8_t *cmd = NULL;
        size_t len = 0;
        node_sm_encode_bucket_create(bk->name, bk->region, bk->created_ms, &cmd, &len);
        reseed_add(&c, (uint64_t)bk->created_ms << TERN_HLC_LOGICAL_BITS, cmd, len);
        uint64_t hlc;
        uint32_t origin;
        if (node_geo_policy_version_get(s->store, bk->name, &hlc, &origin) == 0 &&
            origin == s->local_id) {
            cmd = NULL;
            node_sm_encode_bucket_policy(bk->name, &bk->policy, &cmd, &len);
            reseed_add(&c, hlc, cmd, len);
        }
        node_object_iter *it = NULL;
        if (node_store_object_iter_open(s->store, bk->name, "", &it) != 0) {
            c.failed = true;
            break;
        }
        node_object_entry e;
        while (!c.failed && node_store_object_iter_next(it, &e) == 1) {
            bool deleted;
            uint32_t holders;
            node_manifest *m = NULL;
            if (node_geo_version_get(s->store, bk->name, e.key, &hlc, &origin, &deleted,
                                     &holders) != 0 ||
                origin != s->local_id || deleted ||
                node_store_object_get(s->store, bk->name, e.key, &m) != 0)
                continue;
            cmd = NULL;
            node_sm_encode_object_put(bk->name, e.key, m, &cmd, &len);
            node_manifest_free(m);
            reseed_add(&c, hlc, cmd, len);
        }
        node_store_object_iter_close(it);
    }
    free(buckets);
    if (!c.failed &&
        node_store_raft_meta_scan(s->store, "raft/ver/", NULL, SIZE_MAX, reseed_tombstone, &c) < 0)
        c.failed = true;
    reseed_flush(&c);
    if (c.failed || atomic_load(&s->stopping)) return -1;
    char path[160];
    snprintf(path, sizeof path, "/_tern/geo/mark?hlc=0&origin=%08x&upto=%llu", s->local_id,
             (unsigned long long)upto);
    body out = {0};
    long status = request(p, "POST", path, NULL, 0, NULL, &out);
    free(out.data);
    if (status != 200) return -1;
    node_log(NODE_LOG_INFO, "geo", "re-seeded region %s with %zu change(s)", p->name, c.sent);
    return (int)c.sent;
}

/* One round; returns how many records the peer applied, or -1 on a failure. */
static int ship_round(ship_peer *p)
{
    uint64_t cursor;
    if (!peer_received(p, &cursor)) return -1;
    uint64_t trimmed = node_geo_trimmed_get(p->ship->store);
    if (cursor < trimmed) return reseed(p, cursor, trimmed);
    /* The clock before the log: a change the read below misses is newer than this. */
    uint64_t clock = 0;
    node_store_geo_hlc_get(p->ship->store, &clock);
    batch b = {0};
    int n = node_store_geolog_read(p->ship->store, cursor, BATCH, add_record, &b);
    if (n <= 0 || b.records.failed) {
        node__buf_free(&b.records);
        if (n == 0) {
            note_acked(p, cursor, true); /* caught up: what it has can go */
            if (clock > p->marked) send_mark(p, clock);
        }
        return n < 0 || b.records.failed ? -1 : 0;
    }
    int rc = send_batch(p, &b, false);
    node__buf_free(&b.records);
    if (rc == 0) note_acked(p, b.index[b.count - 1], false);
    return rc == 0 ? (int)b.count : -1;
}

static void *peer_main(void *arg)
{
    ship_peer *p = arg;
    node_geo_ship *s = p->ship;
    int backoff = BACKOFF_MS_MIN;
    while (!atomic_load(&s->stopping)) {
        if (!atomic_load(&s->leader)) {
            nap(s, IDLE_WAIT_MS);
            continue;
        }
        int n = ship_round(p);
        if (n < 0) {
            nap(s, backoff);
            backoff = backoff * 2 > BACKOFF_MS_MAX ? BACKOFF_MS_MAX : backoff * 2;
        } else {
            backoff = BACKOFF_MS_MIN;
            if (n == 0) nap(s, IDLE_WAIT_MS);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ drops */

/*
 * The engine (node_placement_tick) lists the objects whose target set lost
 * this region; the leader drops their blocks here once that is safe:
 *   - a region never drops what it originated (the version's origin keeps
 *     its copy: an anchor every other region can count on), nor a pinned
 *     region its pinned buckets;
 *   - the other regions that hold every block (asked now, POST
 *     /_tern/geo/have; a block is there once its region's group committed
 *     it) must number at least min_regions, counting only the origin and
 *     regions later in the topology than this one. Two regions dropping at
 *     once can then never both count on each other: the last in topology
 *     order among those that drop counted only regions that do not drop.
 * A block another object shares stays (BLOCKS_DROP skips shared blocks).
 * The drop is submitted through the group (never awaited: see note_acked).
 */

#define DROP_BATCH   64
#define DROP_WAIT_MS 1000

static void drop_done(void *arg, int status)
{
    (void)arg;
    if (status != 0 && status != TERN_ECLOSED)
        node_log(NODE_LOG_WARN, "geo", "dropping a replica failed: %s", tern_strerror(status));
}

static void try_drop(node_geo_ship *s, const char *bucket, const char *key)
{
    const node_topology *t = s->topology;
    uint32_t origin_id = 0, holders = 0;
    if (node_object_placement_get(s->store, bucket, key, &origin_id, &holders) != 0 ||
        origin_id == s->local_id)
        return;
    node_bucket b;
    if (node_store_bucket_get(s->store, bucket, &b) != 0) return;
    for (uint32_t i = 0; i < b.policy.pinned_count; i++)
        if (strcmp(b.policy.pinned[i], t->prices.names[s->local_index]) == 0) return;
    node_manifest *m = NULL;
    if (node_store_object_get(s->store, bucket, key, &m) != 0) return;
    node_block_id *ids = malloc((m->block_count ? m->block_count : 1) * sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; ids && i < m->block_count; i++) {
        void *data = NULL;
        size_t len;
        if (node_store_block_get(s->store, &m->blocks[i].id, false, &data, &len) == 0)
            ids[n++] = m->blocks[i].id;
        free(data);
    }
    size_t block_count = m->block_count;
    node_manifest_free(m);
    if (n == 0) {
        free(ids);
        return; /* nothing of it is here */
    }
    uint32_t counted = 0;
    char names[256] = "";
    for (uint32_t r = 0; r < t->prices.region_count && counted < b.policy.min_regions; r++) {
        bool origin = node_sm_region_id(t->prices.names[r]) == origin_id;
        if (r == s->local_index || (!origin && r < s->local_index)) continue;
        bool all = false;
        /* Every block of the object, not just those here: a holder must be whole. */
        if (node_geo_fetch_have(s->fetch, r, ids, n, &all) == 0 && all && n == block_count) {
            counted++;
            size_t used = strlen(names);
            snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "",
                     t->prices.names[r]);
        }
    }
    int rc = TERN_EAGAIN;
    if (counted >= b.policy.min_regions && counted > 0) {
        uint8_t *cmd = NULL;
        size_t len = 0;
        rc = node_sm_encode_blocks_drop(ids, n, &cmd, &len);
        if (rc == 0) rc = node_group_submit(s->group, cmd, len, drop_done, NULL);
        free(cmd);
        if (rc == 0)
            node_log(NODE_LOG_INFO, "geo",
                     "dropping this region's replica of %s/%s (%zu blocks): "
                     "held by %s",
                     bucket, key, n, names);
    }
    /* Not safe yet (too few other holders answered): reviewed again later. */
    if (rc != 0) node_placement_note_copy(s->placement, bucket, key);
    free(ids);
}

/*
 * Tombstones: a deleted key's version stays so that an older write of it arriving from some
 * region loses. Once every peer region's bound (the newest change applied from it, or the
 * clock it reported when it had nothing more to send) has passed a tombstone, no older write
 * can come: the leader proposes its collection (GEO_GC, which keeps it if the key changed).
 */
#define GC_EVERY_MS  5000
#define GC_SCAN_MAX  4096
#define GC_BATCH_MAX 256

static void gc_done(void *arg, int status)
{
    (void)arg;
    if (status != 0 && status != TERN_ECLOSED)
        node_log(NODE_LOG_WARN, "geo", "collecting tombstones failed: %s", tern_strerror(status));
}

static void collect_tombstones(node_geo_ship *s, char *cursor, size_t cursor_cap)
{
    uint64_t bound = UINT64_MAX;
    for (size_t i = 0; i < s->peer_count; i++) {
        uint64_t index, peer_bound;
        uint32_t id = node_sm_region_id(s->peers[i].name);
        if (node_geo_received_get(s->store, id, &index, &peer_bound) != 0) return;
        if (peer_bound < bound) bound = peer_bound;
    }
    if (bound == 0 || bound == UINT64_MAX) return;
    uint8_t *cmd = NULL;
    size_t len = 0, found = 0;
    int rc = node_sm_geo_gc_scan(s->store, bound, cursor, cursor_cap, GC_SCAN_MAX, GC_BATCH_MAX,
                                 &cmd, &len, &found);
    if (rc == 0 && found > 0) {
        rc = node_group_submit(s->group, cmd, len, gc_done, NULL);
        if (rc == 0)
            node_log(NODE_LOG_INFO, "geo", "collecting %zu tombstone(s) every region has passed",
                     found);
    }
    free(cmd);
}

/*
 * The region leader's engine sees the whole region's demand: every second it pulls the
 * placement journal of each other node of the region (their accesses and the copies they
 * made) and feeds it in. A node that restarted starts a new sequence (a new epoch); one that
 * does not answer is asked again next time; a journal that overflowed meanwhile loses its
 * oldest accesses, which only makes the engine's estimate coarser.
 */
static void pull_journals(node_geo_ship *s)
{
    const node_topology *t = s->topology;
    uint32_t r = s->local_index;
    for (size_t e = 0; e < t->s3_endpoint_count[r] && e < NODE_TOPOLOGY_ENDPOINTS_MAX; e++) {
        const char *endpoint = t->s3_endpoints[r][e];
        if (strcmp(endpoint, s->self_endpoint) == 0) continue;
        void *got = NULL;
        size_t len = 0;
        if (node_geo_fetch_journal(s->fetch, endpoint, s->journal_after[e], &got, &len) != 0)
            continue;
        uint64_t epoch = 0, next = 0;
        if (len >= 8 && tern_le_get_u64(got) != s->journal_epoch[e] && s->journal_after[e]) {
            /* A new process there: its sequence starts again, from the beginning. */
            s->journal_after[e] = 0;
            s->journal_epoch[e] = tern_le_get_u64(got);
            free(got);
            continue;
        }
        if (node_placement_journal_apply(s->placement, got, len, &epoch, &next) == 0) {
            s->journal_epoch[e] = epoch;
            if (next > 0) s->journal_after[e] = next - 1;
        } else {
            node_log(NODE_LOG_WARN, "geo", "malformed placement journal from %s", endpoint);
        }
        free(got);
    }
}

static void *drop_main(void *arg)
{
    node_geo_ship *s = arg;
    node_placement_drop *wanted_gone = calloc(DROP_BATCH, sizeof *wanted_gone);
    char gc_cursor[NODE_BUCKET_NAME_MAX + NODE_KEY_BYTES_MAX + 32] = "";
    int64_t gc_last_ms = 0;
    while (wanted_gone && !atomic_load(&s->stopping)) {
        nap(s, DROP_WAIT_MS);
        /* A follower drops nothing (only the leader proposes for the region): its list waits. */
        if (!atomic_load(&s->leader)) continue;
        if (tern_now_ms() - gc_last_ms >= GC_EVERY_MS) {
            gc_last_ms = tern_now_ms();
            collect_tombstones(s, gc_cursor, sizeof gc_cursor);
        }
        if (s->placement == NULL || s->fetch == NULL) continue;
        pull_journals(s);
        size_t n = node_placement_drops_take(s->placement, wanted_gone, DROP_BATCH, tern_now_ms());
        for (size_t i = 0; i < n; i++)
            if (atomic_load(&s->stopping))
                node_placement_note_copy(s->placement, wanted_gone[i].bucket, wanted_gone[i].key);
            else
                try_drop(s, wanted_gone[i].bucket, wanted_gone[i].key);
    }
    free(wanted_gone);
    return NULL;
}

int node_geo_ship_start(const node_geo_ship_config *c, node_geo_ship **out, char *errmsg,
                        size_t errmsg_len)
{
    *out = NULL;
    const node_topology *t = c->topology;
    node_geo_ship *s = calloc(1, sizeof *s);
    if (s == NULL) return TERN_ENOMEM;
    s->store = c->store;
    s->group = c->group;
    s->egress = c->egress;
    s->placement = c->placement;
    s->fetch = c->fetch;
    s->topology = c->topology;
    snprintf(s->self_endpoint, sizeof s->self_endpoint, "%s",
             c->self_endpoint ? c->self_endpoint : "");
    s->rate_bytes_per_s = c->rate_bytes_per_s;
    s->local_index = c->local_region;
    s->local_id = node_sm_region_id(t->prices.names[c->local_region]);
    if (asprintf(&s->userpwd, "%s:%s", c->access_key, c->secret_key) < 0) {
        free(s);
        return TERN_ENOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->peers = calloc(t->prices.region_count, sizeof *s->peers);
    if (s->peers == NULL) {
        node_geo_ship_free(s);
        return TERN_ENOMEM;
    }
    for (uint32_t r = 0; r < t->prices.region_count; r++) {
        if (r == c->local_region) continue;
        if (t->s3_endpoint_count[r] == 0) {
            /* A region the topology gives no endpoint is priced and simulated, not shipped
             * to (its own nodes ship to us if they know our endpoints). */
            node_log(NODE_LOG_WARN, "geo",
                     "region %s has no s3_endpoints in the topology: not replicating to it",
                     t->prices.names[r]);
            continue;
        }
        ship_peer *p = &s->peers[s->peer_count++];
        p->ship = s;
        p->index = r;
        snprintf(p->name, sizeof p->name, "%s", t->prices.names[r]);
        snprintf(p->endpoint, sizeof p->endpoint, "%s", t->s3_endpoints[r][0]);
        p->curl = curl_easy_init();
        if (p->curl == NULL || pthread_create(&p->thread, NULL, peer_main, p) != 0) {
            node_geo_ship_free(s);
            return TERN_ENOMEM;
        }
        p->started = true;
    }
    if (s->group && s->peer_count > 0) {
        if (pthread_create(&s->drop_thread, NULL, drop_main, s) != 0) {
            node_geo_ship_free(s);
            return TERN_ENOMEM;
        }
        s->drop_started = true;
    }
    *out = s;
    return 0;
}

void node_geo_ship_set_leader(node_geo_ship *s, bool leader)
{
    if (s != NULL) atomic_store(&s->leader, leader);
}

void node_geo_ship_stop(node_geo_ship *s)
{
    if (s == NULL) return;
    pthread_mutex_lock(&s->mu);
    bool was_stopping = atomic_exchange(&s->stopping, true);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    if (was_stopping) return;
    for (size_t i = 0; i < s->peer_count; i++)
        if (s->peers[i].started) pthread_join(s->peers[i].thread, NULL);
    if (s->drop_started) pthread_join(s->drop_thread, NULL);
}

void node_geo_ship_free(node_geo_ship *s)
{
    if (s == NULL) return;
    node_geo_ship_stop(s);
    for (size_t i = 0; i < s->peer_count; i++)
        if (s->peers[i].curl) curl_easy_cleanup(s->peers[i].curl);
    free(s->peers);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    free(s->userpwd);
    free(s);
}
