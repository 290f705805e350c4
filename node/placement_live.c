/* The placement engine inside ternd: fed with the accesses this node serves, explained on demand.
 */
#include <assert.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

/*
 * One plc_engine per node, behind a mutex (accesses come from the loop
 * thread and from workers; an observe costs about half a microsecond, so
 * the lock is never held long). Each bucket's policy comes from its bucket
 * record, read from the store's cache when the bucket is first seen and
 * again at most every POLICY_REFRESH_MS, so a policy changed on any node of
 * the region reaches the engine within that time without a hook on every
 * path that changes it. The engine's sets are applied by others: the
 * shipper sends a put's blocks to its target set (node_placement_put_target),
 * a remote read keeps a copy when the set after it includes this region, and
 * the leader's drop thread takes what the set lost (ticks) or what a copy's
 * demand no longer pays for (node_placement_drops_take). This engine sees
 * only this node's accesses (and remote reads served from it).
 */

#define POLICY_REFRESH_MS 10000
#define BUCKETS_MAX       4096  /* policy cache entries; beyond it, lookups just refresh */
#define DROPS_MAX         256   /* pending drops; beyond it the next ticks find them again */
#define COPIES_MAX        65536 /* copies on read under review; beyond it, kept until rewritten */
#define JOURNAL_MAX       16384 /* accesses kept for the leader; older ones are overwritten */

typedef struct {
    char name[NODE_BUCKET_NAME_MAX + 1];
    int64_t refreshed_ms;
    plc_bucket_policy applied;
    bool used;
} bucket_entry;

struct node_placement {
    pthread_mutex_t mu;
    plc_engine *engine;
    node_store *store;
    plc_topology topology;
    /* The engine's clock runs time_scale times faster than the wall clock from base_ms (1 in
     * production; a benchmark replaying a days-long trace in minutes makes it match). */
    int64_t base_ms;
    uint32_t time_scale;
    int64_t half_life_ms; /* of demand, in engine time */
    uint32_t local_region;
    bucket_entry *buckets; /* open addressing by name hash */
    /* Objects whose target set lost this region since the replicator last asked. */
    node_placement_drop drops[DROPS_MAX];
    size_t drop_count;
    /* Replicas made here by copy on read ("bucket\0key"), reviewed for dropping: this engine
     * does not see the origin's copy, so its set keeps a copy it no longer wants for want of
     * another holder; what it says of the demand here is what counts. */
    char **copies;
    size_t copy_count, copy_cursor;
    /* The journal: this node's accesses, encoded, for the region leader to pull
     * (node_placement_journal_read); seq of journal[0] is journal_first. */
    uint8_t **journal;
    size_t *journal_len;
    size_t journal_count, journal_head;
    uint64_t journal_first, journal_next;
    uint64_t epoch; /* random per process: a restarted node's sequence starts again */
};

static int64_t engine_ms(const node_placement *p, int64_t now_ms)
{
    return p->base_ms + (now_ms - p->base_ms) * (int64_t)p->time_scale;
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int node_placement_new(const plc_topology *t, uint32_t local_region, node_store *store,
                       uint64_t seed, double half_life_hours, uint32_t time_scale,
                       node_placement **out, char *errmsg, size_t errmsg_len)
{
    *out = NULL;
    if (local_region >= t->region_count) {
        tern_errmsg(errmsg, errmsg_len, "placement: local region %u out of range", local_region);
        return TERN_EINVAL;
    }
    node_placement *p = calloc(1, sizeof *p);
    if (p == NULL) return TERN_ENOMEM;
    p->buckets = calloc(BUCKETS_MAX, sizeof *p->buckets);
    p->copies = calloc(COPIES_MAX, sizeof *p->copies);
    p->journal = calloc(JOURNAL_MAX, sizeof *p->journal);
    p->journal_len = calloc(JOURNAL_MAX, sizeof *p->journal_len);
    if (p->copies == NULL || p->journal == NULL || p->journal_len == NULL) {
        free(p->buckets);
        free(p->copies);
        free(p->journal);
        free(p->journal_len);
        free(p);
        return TERN_ENOMEM;
    }
    p->epoch = seed ^ 0x9e3779b97f4a7c15ull;
    p->journal_first = p->journal_next = 1;
    plc_config c = {.algo = PLC_ALGO_THOMPSON, .seed = seed, .half_life_hours = half_life_hours};
    int rc = p->buckets ? plc_engine_new(t, &c, &p->engine, errmsg, errmsg_len) : TERN_ENOMEM;
    if (rc != 0) {
        free(p->buckets);
        free(p->copies);
        free(p->journal);
        free(p->journal_len);
        free(p);
        return rc;
    }
    pthread_mutex_init(&p->mu, NULL);
    p->store = store;
    p->topology = *t;
    p->base_ms = tern_now_ms();
    p->time_scale = time_scale ? time_scale : 1;
    p->half_life_ms = (int64_t)((half_life_hours > 0 ? half_life_hours : 24.0) * 3600e3);
    p->local_region = local_region;
    *out = p;
    return 0;
}

void node_placement_free(node_placement *p)
{
    if (p == NULL) return;
    plc_engine_free(p->engine);
    pthread_mutex_destroy(&p->mu);
    for (size_t i = 0; i < p->copy_count; i++)
        free(p->copies[i]);
    free(p->copies);
    for (size_t i = 0; i < JOURNAL_MAX; i++)
        free(p->journal[i]);
    free(p->journal);
    free(p->journal_len);
    free(p->buckets);
    free(p);
}

/* A stored policy as the engine's (region names to a mask; names the topology lacks, which
 * a policy set before the topology changed may hold, are left out). */
static plc_bucket_policy engine_policy(const node_placement *p, const node_bucket_policy *bp)
{
    plc_bucket_policy e = {.min_regions = bp->min_regions, .rpo_seconds = bp->rpo_seconds};
    for (int pass = 0; pass < 2; pass++) {
        uint32_t count = pass ? bp->pinned_count : bp->allowed_count;
        for (uint32_t i = 0; i < count; i++) {
            const char *name = pass ? bp->pinned[i] : bp->allowed[i];
            for (uint32_t r = 0; r < p->topology.region_count; r++)
                if (strcmp(p->topology.names[r], name) == 0) {
                    if (pass)
                        e.pinned |= 1u << r;
                    else
                        e.allowed |= 1u << r;
                }
        }
    }
    uint32_t allowed =
        (uint32_t)__builtin_popcount(e.allowed ? e.allowed : (1u << p->topology.region_count) - 1);
    if (e.min_regions > allowed) e.min_regions = allowed;
    if (e.min_regions < 1) e.min_regions = 1;
    if (e.allowed) e.pinned &= e.allowed;
    return e;
}

/* Brings the engine's policy for bucket up to date with its record (caller holds mu). */
static void refresh_policy(node_placement *p, const char *bucket, int64_t now_ms)
{
    size_t slot = name_hash(bucket) % BUCKETS_MAX;
    bucket_entry *e = NULL;
    for (size_t probe = 0; probe < 8; probe++) {
        bucket_entry *x = &p->buckets[(slot + probe) % BUCKETS_MAX];
        if (!x->used || strcmp(x->name, bucket) == 0) {
            e = x;
            break;
        }
    }
    if (e != NULL && e->used && now_ms - e->refreshed_ms < POLICY_REFRESH_MS) return;
    node_bucket b;
    if (node_store_bucket_get_cached(p->store, bucket, &b) != 0) return;
    plc_bucket_policy ep = engine_policy(p, &b.policy);
    if (e == NULL || !e->used || memcmp(&ep, &e->applied, sizeof ep) != 0)
        plc_engine_set_policy(p->engine, bucket, &ep);
    if (e != NULL) {
        snprintf(e->name, sizeof e->name, "%s", bucket);
        e->used = true;
        e->applied = ep;
        e->refreshed_ms = now_ms;
    }
}

/*
 * Journal records (node-internal; pulled by the region leader over HTTP, so both ends run the
 * same build): u8 kind (0 access, 1 copy made here) | u8 op | u8 region | i8 origin (-1) |
 * i64 engine time | u64 bytes | u64 object bytes | u16 bucket length | bucket | u16 key
 * length | key.
 */
enum { JOURNAL_ACCESS = 0, JOURNAL_COPY = 1 };
#define JOURNAL_HEAD 28

/* Appends one record to the journal (caller holds mu); a failed allocation drops it. */
static void journal_locked(node_placement *p, int kind, plc_op op, uint32_t region, int origin,
                           int64_t ts, uint64_t bytes, uint64_t object_bytes, const char *bucket,
                           const char *key)
{
    size_t bl = strlen(bucket), kl = strlen(key);
    if (bl > UINT16_MAX || kl > UINT16_MAX) return;
    size_t len = JOURNAL_HEAD + 2 + bl + 2 + kl;
    uint8_t *rec = malloc(len);
    if (rec == NULL) return;
    rec[0] = (uint8_t)kind;
    rec[1] = (uint8_t)op;
    rec[2] = (uint8_t)region;
    rec[3] = (uint8_t)(int8_t)origin;
    tern_le_put_u64(rec + 4, (uint64_t)ts);
    tern_le_put_u64(rec + 12, bytes);
    tern_le_put_u64(rec + 20, object_bytes);
    rec[28] = (uint8_t)bl;
    rec[29] = (uint8_t)(bl >> 8);
    memcpy(rec + 30, bucket, bl);
    rec[30 + bl] = (uint8_t)kl;
    rec[31 + bl] = (uint8_t)(kl >> 8);
    memcpy(rec + 32 + bl, key, kl);
    size_t slot;
    if (p->journal_count < JOURNAL_MAX) {
        slot = (p->journal_head + p->journal_count++) % JOURNAL_MAX;
    } else {
        slot = p->journal_head; /* full: the oldest goes */
        p->journal_head = (p->journal_head + 1) % JOURNAL_MAX;
        p->journal_first++;
    }
    free(p->journal[slot]);
    p->journal[slot] = rec;
    p->journal_len[slot] = len;
    p->journal_next++;
}

/* Feeds one access to the engine (caller holds mu): a GET of a version written in region
 * origin that this engine has not seen starts as a PUT there. Returns the set after it. */
static plc_mask feed_locked(node_placement *p, plc_op op, uint32_t region, int origin, int64_t ts,
                            uint64_t bytes, uint64_t object_bytes, const char *bucket,
                            const char *key)
{
    plc_decision d = {0};
    refresh_policy(p, bucket, ts);
    plc_explanation x;
    if (op == PLC_GET && origin >= 0 && (uint32_t)origin != region &&
        (uint32_t)origin < p->topology.region_count &&
        plc_engine_explain(p->engine, bucket, key, ts, &x) == TERN_ENOTFOUND) {
        /* Not as an object nobody holds, which min_regions would copy to the reader. */
        plc_event put = {ts, (uint32_t)origin, PLC_PUT, bucket, key, object_bytes};
        (void)plc_engine_observe(p->engine, &put, &d);
    }
    plc_event ev = {ts, region, op, bucket, key, bytes};
    /* Refusals (a key beyond the engine's name limit) and ENOMEM only cost the engine one
     * observation: the request itself has already been served. */
    if (plc_engine_observe(p->engine, &ev, &d) != 0) d.after = 0;
    return d.after;
}

void node_placement_observe(node_placement *p, const char *bucket, const char *key, plc_op op,
                            uint64_t bytes, int64_t now_ms)
{
    if (p == NULL) return;
    now_ms = engine_ms(p, now_ms);
    pthread_mutex_lock(&p->mu);
    feed_locked(p, op, p->local_region, -1, now_ms, bytes, bytes, bucket, key);
    journal_locked(p, JOURNAL_ACCESS, op, p->local_region, -1, now_ms, bytes, bytes, bucket, key);
    pthread_mutex_unlock(&p->mu);
}

plc_mask node_placement_observe_read(node_placement *p, const char *bucket, const char *key,
                                     int origin, uint64_t object_bytes, uint64_t bytes,
                                     int64_t now_ms)
{
    if (p == NULL) return 0;
    now_ms = engine_ms(p, now_ms);
    pthread_mutex_lock(&p->mu);
    plc_mask after =
        feed_locked(p, PLC_GET, p->local_region, origin, now_ms, bytes, object_bytes, bucket, key);
    journal_locked(p, JOURNAL_ACCESS, PLC_GET, p->local_region, origin, now_ms, bytes, object_bytes,
                   bucket, key);
    pthread_mutex_unlock(&p->mu);
    return after;
}

void node_placement_observe_remote(node_placement *p, uint32_t region, const char *bucket,
                                   const char *key, uint64_t bytes, int64_t now_ms)
{
    if (p == NULL || region >= p->topology.region_count) return;
    now_ms = engine_ms(p, now_ms);
    pthread_mutex_lock(&p->mu);
    feed_locked(p, PLC_GET, region, -1, now_ms, bytes, bytes, bucket, key);
    journal_locked(p, JOURNAL_ACCESS, PLC_GET, region, -1, now_ms, bytes, bytes, bucket, key);
    pthread_mutex_unlock(&p->mu);
}

int node_placement_journal_read(node_placement *p, uint64_t after, size_t max_bytes, uint8_t **out,
                                size_t *len)
{
    *out = NULL;
    *len = 0;
    pthread_mutex_lock(&p->mu);
    uint64_t from = after + 1 < p->journal_first ? p->journal_first : after + 1;
    /* u64 epoch | u64 first seq sent | u64 next seq | records, each u32 length + record */
    size_t cap = 24, used = 24;
    uint64_t seq = from;
    for (; seq < p->journal_next; seq++) {
        size_t slot = (p->journal_head + (size_t)(seq - p->journal_first)) % JOURNAL_MAX;
        if (cap + 4 + p->journal_len[slot] > max_bytes && seq > from) break;
        cap += 4 + p->journal_len[slot];
    }
    uint8_t *buf = malloc(cap);
    if (buf == NULL) {
        pthread_mutex_unlock(&p->mu);
        return TERN_ENOMEM;
    }
    tern_le_put_u64(buf, p->epoch);
    tern_le_put_u64(buf + 8, from);
    tern_le_put_u64(buf + 16, seq);
    for (uint64_t q = from; q < seq; q++) {
        size_t slot = (p->journal_head + (size_t)(q - p->journal_first)) % JOURNAL_MAX;
        tern_le_put_u32(buf + used, (uint32_t)p->journal_len[slot]);
        memcpy(buf + used + 4, p->journal[slot], p->journal_len[slot]);
        used += 4 + p->journal_len[slot];
    }
    pthread_mutex_unlock(&p->mu);
    *out = buf;
    *len = used;
    return 0;
}

int node_placement_journal_apply(node_placement *p, const uint8_t *buf, size_t len, uint64_t *epoch,
                                 uint64_t *next)
{
    if (len < 24) return TERN_EPARSE;
    *epoch = tern_le_get_u64(buf);
    *next = tern_le_get_u64(buf + 16);
    size_t at = 24;
    char bucket[NODE_BUCKET_NAME_MAX + 1], key[NODE_KEY_BYTES_MAX + 1];
    while (at + 4 <= len) {
        uint32_t n = tern_le_get_u32(buf + at);
        const uint8_t *rec = buf + at + 4;
        if (n < JOURNAL_HEAD + 4 || n > len - at - 4) return TERN_EPARSE;
        size_t bl = (size_t)rec[28] | (size_t)rec[29] << 8;
        if (bl > NODE_BUCKET_NAME_MAX || JOURNAL_HEAD + 4 + bl > n) return TERN_EPARSE;
        size_t kl = (size_t)rec[30 + bl] | (size_t)rec[31 + bl] << 8;
        if (kl > NODE_KEY_BYTES_MAX || JOURNAL_HEAD + 4 + bl + kl != n) return TERN_EPARSE;
        memcpy(bucket, rec + 30, bl);
        bucket[bl] = '\0';
        memcpy(key, rec + 32 + bl, kl);
        key[kl] = '\0';
        plc_op op = (plc_op)rec[1];
        uint32_t region = rec[2];
        int origin = (int8_t)rec[3];
        if (region >= p->topology.region_count || op < PLC_GET || op > PLC_DELETE)
            return TERN_EPARSE;
        if (rec[0] == JOURNAL_COPY) {
            node_placement_note_copy(p, bucket, key);
        } else {
            pthread_mutex_lock(&p->mu);
            feed_locked(p, op, region, origin, (int64_t)tern_le_get_u64(rec + 4),
                        tern_le_get_u64(rec + 12), tern_le_get_u64(rec + 20), bucket, key);
            pthread_mutex_unlock(&p->mu);
        }
        at += 4 + n;
    }
    return at == len ? 0 : TERN_EPARSE;
}

plc_mask node_placement_put_target(node_placement *p, const char *bucket, const char *key,
                                   uint64_t bytes, int64_t now_ms)
{
    now_ms = engine_ms(p, now_ms);
    plc_mask local = 1u << p->local_region, all = (1u << p->topology.region_count) - 1;
    plc_mask target = 0;
    pthread_mutex_lock(&p->mu);
    refresh_policy(p, bucket, now_ms);
    plc_explanation x;
    if (plc_engine_explain(p->engine, bucket, key, now_ms, &x) == 0 && (x.holders & local)) {
        target = x.holders;
    } else {
        /* The write came through another node of this region: the engine learns it here. */
        plc_event ev = {now_ms, p->local_region, PLC_PUT, bucket, key, bytes};
        plc_decision d;
        if (plc_engine_observe(p->engine, &ev, &d) == 0) target = d.after;
    }
    /* The policy's floor holds whatever the engine said (within an RPO window it may not):
     * min_regions from the allowed regions, cheapest to ship to first, and every pinned one. */
    node_bucket b;
    plc_bucket_policy pol = {.min_regions = 1};
    if (node_store_bucket_get_cached(p->store, bucket, &b) == 0) pol = engine_policy(p, &b.policy);
    pthread_mutex_unlock(&p->mu);
    plc_mask allowed = pol.allowed ? pol.allowed : all;
    target = (target | local | pol.pinned) & all;
    while ((uint32_t)__builtin_popcount(target & allowed) < pol.min_regions) {
        int best = -1;
        for (uint32_t r = 0; r < p->topology.region_count; r++)
            if ((allowed & ~target & (1u << r)) &&
                (best < 0 || p->topology.egress_usd_per_gb[p->local_region][r] <
                                 p->topology.egress_usd_per_gb[p->local_region][best]))
                best = (int)r;
        if (best < 0) break;
        target |= 1u << best;
    }
    return target;
}

uint32_t node_placement_choose_source(node_placement *p, plc_mask holders)
{
    pthread_mutex_lock(&p->mu);
    uint32_t r = plc_engine_choose_source(p->engine, p->local_region, holders);
    pthread_mutex_unlock(&p->mu);
    return r;
}

void node_placement_observe_transfer(node_placement *p, uint32_t from, uint64_t bytes,
                                     double latency_ms)
{
    pthread_mutex_lock(&p->mu);
    plc_engine_observe_transfer(p->engine, from, p->local_region, bytes, latency_ms);
    pthread_mutex_unlock(&p->mu);
}

typedef struct {
    node_placement *p;
    size_t added;
} tick_ctx;

/* Objects whose set lost this region go on the drop list for the replicator. */
static void tick_changed(void *arg, const char *bucket, const char *key, plc_mask before,
                         plc_mask after)
{
    tick_ctx *t = arg;
    node_placement *p = t->p;
    plc_mask local = 1u << p->local_region;
    if (!(before & local) || (after & local) || p->drop_count >= DROPS_MAX) return;
    node_placement_drop *d = &p->drops[p->drop_count++];
    snprintf(d->bucket, sizeof d->bucket, "%s", bucket);
    snprintf(d->key, sizeof d->key, "%s", key);
    t->added++;
}

size_t node_placement_tick(node_placement *p, int64_t now_ms, size_t max_objects)
{
    now_ms = engine_ms(p, now_ms);
    pthread_mutex_lock(&p->mu);
    tick_ctx t = {p, 0};
    size_t n = plc_engine_tick(p->engine, now_ms, max_objects, tick_changed, &t);
    pthread_mutex_unlock(&p->mu);
    return n;
}

void node_placement_copy_made(node_placement *p, const char *bucket, const char *key)
{
    if (p == NULL) return;
    node_placement_note_copy(p, bucket, key);
    pthread_mutex_lock(&p->mu);
    journal_locked(p, JOURNAL_COPY, PLC_GET, p->local_region, -1, 0, 0, 0, bucket, key);
    pthread_mutex_unlock(&p->mu);
}

void node_placement_note_copy(node_placement *p, const char *bucket, const char *key)
{
    if (p == NULL) return;
    size_t bl = strlen(bucket), kl = strlen(key);
    /* i64 engine time noted | bucket NUL | key NUL */
    char *entry = malloc(8 + bl + 1 + kl + 1);
    if (entry == NULL) return;
    tern_le_put_u64((uint8_t *)entry, (uint64_t)engine_ms(p, tern_now_ms()));
    memcpy(entry + 8, bucket, bl + 1);
    memcpy(entry + 8 + bl + 1, key, kl + 1);
    pthread_mutex_lock(&p->mu);
    if (p->copy_count < COPIES_MAX) {
        p->copies[p->copy_count++] = entry;
        entry = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    free(entry);
}

size_t node_placement_drops_take(node_placement *p, node_placement_drop *out, size_t max,
                                 int64_t now_ms)
{
    now_ms = engine_ms(p, now_ms);
    pthread_mutex_lock(&p->mu);
    size_t n = TERN_MIN(max, p->drop_count);
    memcpy(out, p->drops + (p->drop_count - n), n * sizeof *out);
    p->drop_count -= n;
    /* Then a slice of the copies on read: those whose demand here no longer pays for them. */
    for (size_t seen = 0; n < max && seen < max && p->copy_count > 0; seen++) {
        if (p->copy_cursor >= p->copy_count) p->copy_cursor = 0;
        char *entry = p->copies[p->copy_cursor];
        int64_t noted = (int64_t)tern_le_get_u64((const uint8_t *)entry);
        const char *bucket = entry + 8, *key = bucket + strlen(bucket) + 1;
        plc_explanation x;
        int rc = plc_engine_explain(p->engine, bucket, key, now_ms, &x);
        plc_reason why = rc == 0 ? x.regions[p->local_region].reason : PLC_REASON_NONE;
        /* A replica the origin sent ahead of any read here gets a half-life to be read. */
        bool young = rc == TERN_ENOTFOUND && now_ms - noted < p->half_life_ms;
        if (why == PLC_REASON_DEMAND || why == PLC_REASON_PINNED || young) {
            p->copy_cursor++;
            continue;
        }
        snprintf(out[n].bucket, sizeof out[n].bucket, "%s", bucket);
        snprintf(out[n].key, sizeof out[n].key, "%s", key);
        n++;
        free(entry);
        p->copies[p->copy_cursor] = p->copies[--p->copy_count];
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

static const char *reason_name(plc_reason r)
{
    switch (r) {
    case PLC_REASON_NONE:
        return "none";
    case PLC_REASON_DEMAND:
        return "demand";
    case PLC_REASON_PINNED:
        return "pinned";
    case PLC_REASON_MIN_REGIONS:
        return "min_regions";
    case PLC_REASON_ORIGIN:
        return "origin";
    case PLC_REASON_NOT_ALLOWED:
        return "not_allowed";
    }
    return "none";
}

static int dump(json_t *doc, char **out, size_t *len)
{
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (text == NULL) return TERN_ENOMEM;
    *out = text;
    *len = strlen(text);
    return 0;
}

int node_placement_explain_json(node_placement *p, const char *bucket, const char *key,
                                int64_t now_ms, char **out, size_t *len)
{
    now_ms = engine_ms(p, now_ms);
    plc_explanation x;
    pthread_mutex_lock(&p->mu);
    int rc = plc_engine_explain(p->engine, bucket, key, now_ms, &x);
    pthread_mutex_unlock(&p->mu);
    if (rc != 0) return rc;
    json_t *holders = json_array(), *regions = json_array();
    for (uint32_t r = 0; r < p->topology.region_count; r++) {
        const plc_region_explanation *e = &x.regions[r];
        if (x.holders & (1u << r))
            json_array_append_new(holders, json_string(p->topology.names[r]));
        json_array_append_new(regions,
                              json_pack("{s:s, s:b, s:s, s:f, s:f, s:f, s:f, s:f}", "name",
                                        p->topology.names[r], "held", e->held, "reason",
                                        reason_name(e->reason), "reads_per_day", e->reads_per_day,
                                        "reads_per_day_stddev", e->reads_per_day_stddev,
                                        "saving_usd", e->saving_usd, "storage_usd", e->storage_usd,
                                        "transfer_usd", e->transfer_usd));
    }
    json_t *doc = json_pack("{s:s, s:s, s:I, s:o, s:b, s:f, s:o}", "bucket", bucket, "key", key,
                            "bytes", (json_int_t)x.bytes, "holders", holders, "from_prefix_prior",
                            x.from_prefix_prior, "life_days", x.life_days, "regions", regions);
    return dump(doc, out, len);
}

int node_placement_stats_json(node_placement *p, char **out, size_t *len)
{
    plc_engine_stats st;
    pthread_mutex_lock(&p->mu);
    plc_engine_stats_get(p->engine, &st);
    pthread_mutex_unlock(&p->mu);
    double per_pair = st.pairs_tracked ? (double)st.memory_bytes / (double)st.pairs_tracked : 0;
    json_t *doc =
        json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:I, s:I, s:I}", "region",
                  p->topology.names[p->local_region], "algo", "thompson", "objects_tracked",
                  (json_int_t)st.objects_tracked, "pairs_tracked", (json_int_t)st.pairs_tracked,
                  "memory_bytes", (json_int_t)st.memory_bytes, "bytes_per_pair", per_pair, "events",
                  (json_int_t)st.events, "replicas_added", (json_int_t)st.replicas_added,
                  "replicas_dropped", (json_int_t)st.replicas_dropped);
    return dump(doc, out, len);
}
