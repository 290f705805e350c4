/* placement: the engine's internal structures and cross-file helpers (not a public API). */
#ifndef TERN_PLACEMENT_INTERNAL_H
#define TERN_PLACEMENT_INTERNAL_H

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "placement.h"

/*
 * DESIGN NOTES (docs/placement.md has the long form)
 *
 * Demand model. For each object o and region r the read rate lambda(o,r)
 * (reads per day) has a Gamma(alpha_r, beta) posterior. All regions of an
 * object share one exposure beta (days), because every region is observed
 * for the same time; forgetting multiplies alpha_r and beta by
 * d = exp(-ln2 dt / half_life) and adds the discounted exposure
 * (1 - d) half_life / ln2 to beta, so in steady state beta tends to
 * H_eff = half_life / ln2 and alpha_r / beta tends to the recent rate.
 * A region with no read of its own ("untracked") has
 * alpha_r = m(prefix, r) x prior_w, where m is the prefix's current
 * per-object rate and prior_w is the (decayed) part of beta that the prefix
 * prior lent at birth. A region's first read turns that into a stored shape
 * (+1), so the object keeps a float per region that has read it: 4 bytes per
 * tracked pair plus the object's record, name and index slot.
 *
 * Memory. Records (plc__obj, 48 bytes) live in fixed chunks and are found
 * through an open-addressing table of uint32 record indexes. Each record
 * owns one span of 4-byte cells in a chunked arena: the key's suffix (after
 * the prefix), padded to a cell, then one float shape per tracked region in
 * region order. A span that grows is re-appended and the old one becomes
 * garbage; the arena is compacted when garbage passes half the live cells.
 * When pairs_tracked passes tracked_pairs_max a CLOCK hand (one reference
 * bit per record, an approximation of LRU) evicts the shapes of objects not
 * touched since its last pass: they are reborn from their prefix prior.
 *
 * Time. Engine seconds are uint32 since the first event's second (epoch_s).
 * Decay needs no finer grain; RPO windows are computed from the floor of the
 * PUT's second, so a window can only end early (the constraint is enforced
 * sooner, never later).
 */

#define PLC__NO_PUT          UINT32_MAX /* put_s of an object never PUT while the engine ran */
#define PLC__NONE            UINT32_MAX
#define PLC__NAME_LEN_MAX    4095u /* key bytes after the prefix (S3 keys are <= 1024 bytes) */
#define PLC__NAME_MASK       0x0fffu
#define PLC__FLAG_REF        0x1000u /* CLOCK reference bit: touched since the hand passed */
#define PLC__ORIGIN_SHIFT    13      /* 3 bits: region of the last PUT (valid if put_s != NO_PUT) */
#define PLC__REC_CHUNK_SHIFT 12
#define PLC__REC_CHUNK       (1u << PLC__REC_CHUNK_SHIFT)
#define PLC__CELL_CHUNK      (1u << 16) /* arena cells (4 bytes) per chunk */
#define PLC__LOAD_NUM        3          /* index tables grow past 3/4 full */
#define PLC__LOAD_DEN        4

typedef struct plc__obj {
    uint32_t hash; /* of (prefix, suffix) */
    uint32_t bytes_lo;
    uint32_t bytes_hi;
    float beta;         /* shared exposure (days) of the per-region posteriors */
    float prior_w;      /* the part of beta lent by the prefix prior, decayed with it */
    uint32_t updated_s; /* engine second the shapes, beta and prior_w were decayed to */
    uint32_t put_s;     /* engine second of the last PUT, PLC__NO_PUT if none */
    uint32_t prefix;    /* index into e->prefixes; PLC__NONE for a free record */
    uint32_t span;      /* arena cell of the name; next free record when free */
    uint16_t name;      /* suffix length | PLC__FLAG_REF | origin << PLC__ORIGIN_SHIFT */
    uint8_t holders;
    uint8_t tracked; /* regions with a stored shape (after the name in the span) */
    uint8_t seen;    /* regions that read the current version */
    float ends;      /* discounted count of the versions that ended (overwrites) */
} plc__obj;
/* The memory budget (64 bytes per tracked pair on average) is planned around this size. */
_Static_assert(sizeof(plc__obj) == 48, "plc__obj grew: recheck the memory budget");

/* A bucket (dir empty) or a key prefix of a bucket: pooled demand of its objects. */
typedef struct plc__prefix {
    char *name;          /* bucket NUL dir NUL (dir ends with '/' or is empty) */
    uint32_t bucket_len; /* dir starts at name + bucket_len + 1 */
    uint32_t dir_len;
    uint64_t hash;
    uint32_t parent;               /* the bucket's own prefix (itself when dir is empty) */
    uint32_t policy;               /* index into e->policies, resolved on creation and set_policy */
    uint32_t objects;              /* live records under it (the bucket counts its prefixes' too) */
    uint32_t updated_s;            /* second reads and exposure were decayed to */
    double exposure;               /* discounted days observed */
    double reads[PLC_REGIONS_MAX]; /* discounted reads per region */
    double ends;                   /* discounted overwrites and deletes of its objects */
    double versions;               /* discounted PUTs of its objects */
    double firsts[PLC_REGIONS_MAX]; /* discounted versions read at least once from a region */
} plc__prefix;

typedef struct plc__policy {
    char *bucket;        /* "*" is the default */
    plc_bucket_policy p; /* allowed normalized: never 0 */
} plc__policy;

/* Source selection: what a region pair's transfers took beyond the topology's RTT. */
typedef struct plc__link {
    double n;         /* observations, capped so old ones are forgotten */
    double ms_per_mb; /* mean transfer time beyond RTT per 10^6 bytes */
    double var;       /* its running variance */
} plc__link;

typedef struct plc__rng {
    uint64_t s[4];
} plc__rng;

struct plc_engine {
    plc_topology t;
    plc_config c;
    plc_mask all; /* every region */
    double half_life_days;
    double heff_days; /* half_life / ln2: the steady-state exposure */
    double horizon_days;
    plc__rng rng;
    bool started;
    int64_t epoch_s; /* second of the first event */
    int64_t last_ms; /* latest time seen (events are clamped to it) */
    plc__link links[PLC_REGIONS_MAX][PLC_REGIONS_MAX];
    uint8_t storage_order[PLC_REGIONS_MAX]; /* regions by storage price, cheapest first */

    /* policies */
    plc__policy *policies;
    size_t policy_count, policy_cap; /* policies[0] is "*", the default */

    /* prefixes: array with a free list, and an index table */
    plc__prefix *prefixes;
    size_t prefix_count, prefix_cap, prefix_live;
    uint32_t prefix_free;
    uint32_t *prefix_slots;
    size_t prefix_slot_count;

    /* object records in chunks, a free list and an index table */
    plc__obj **rec_chunks;
    size_t rec_chunk_count, rec_chunk_cap;
    uint32_t rec_top; /* records ever used (high water) */
    uint32_t rec_free;
    size_t objects;
    uint32_t *obj_slots;
    size_t obj_slot_count;

    /* arena of 4-byte cells */
    uint32_t **cell_chunks;
    size_t cell_chunk_count, cell_chunk_cap;
    uint64_t cell_top; /* next free cell */
    uint64_t cells_live;
    uint64_t cells_garbage;

    uint32_t clock_hand; /* eviction */
    uint32_t tick_cursor;
    size_t pairs;
    size_t memory_bytes;

    char *scratch; /* bucket NUL key NUL for tick callbacks */
    size_t scratch_len;

    uint64_t events, replicas_added, replicas_dropped;
};

/* ---- allocation with accounting (every byte the engine holds is in memory_bytes) */

static inline void *plc__alloc(plc_engine *e, size_t n)
{
    void *p = calloc(1, n);
    if (p) e->memory_bytes += n;
    return p;
}

static inline void *plc__realloc(plc_engine *e, void *p, size_t old_n, size_t new_n)
{
    void *q = realloc(p, new_n);
    if (q) e->memory_bytes = e->memory_bytes - old_n + new_n;
    return q;
}

static inline void plc__free(plc_engine *e, void *p, size_t n)
{
    if (!p) return;
    assert(e->memory_bytes >= n);
    e->memory_bytes -= n;
    free(p);
}

static inline plc__obj *plc__rec(const plc_engine *e, uint32_t i)
{
    assert(i < e->rec_top);
    return &e->rec_chunks[i >> PLC__REC_CHUNK_SHIFT][i & (PLC__REC_CHUNK - 1)];
}

static inline uint32_t *plc__cell(const plc_engine *e, uint64_t i)
{
    return &e->cell_chunks[i / PLC__CELL_CHUNK][i % PLC__CELL_CHUNK];
}

static inline uint32_t plc__name_len(const plc__obj *o)
{
    return o->name & PLC__NAME_MASK;
}

static inline uint32_t plc__name_cells(uint32_t len)
{
    return (len + 3) / 4;
}

/* The stored shapes of o: one float per bit of o->tracked, in region order. */
static inline float *plc__shapes(const plc_engine *e, const plc__obj *o)
{
    return (float *)plc__cell(e, (uint64_t)o->span + plc__name_cells(plc__name_len(o)));
}

static inline uint64_t plc__obj_bytes(const plc__obj *o)
{
    return (uint64_t)o->bytes_hi << 32 | o->bytes_lo;
}

static inline int plc__popcount(uint32_t m)
{
    return __builtin_popcount(m);
}

/* ---- posterior.c: randomness and the Gamma-Poisson arithmetic */

void plc__rng_seed(plc__rng *r, uint64_t seed);
uint64_t plc__rng_next(plc__rng *r);
double plc__rng_uniform(plc__rng *r); /* in (0, 1) */
double plc__rng_normal(plc__rng *r);
double plc__rng_gamma(plc__rng *r, double shape); /* Gamma(shape, 1); 0 for shape <= 0 */

/* exp(-ln2 dt / half_life) */
double plc__decay(double dt_days, double half_life_days);
/* Forgets for dt days then adds the exposure of those days: beta d + H_eff (1 - d). */
double plc__exposure_after(double beta, double d, double heff_days);
/* The prefix's current per-object read rate (reads/day) for every region, and their sum;
 * *ends_per_day (if not NULL): its per-object rate of overwrites and deletes. */
double plc__prefix_rates(const plc_engine *e, const plc__prefix *p, uint32_t now_s,
                         double rates[PLC_REGIONS_MAX], double *ends_per_day);
/* Decays a prefix to now_s and counts one read from region. */
void plc__prefix_read(plc_engine *e, plc__prefix *p, uint32_t now_s, uint32_t region);
/* Decays a prefix to now_s and counts the end of one of its objects' versions. */
void plc__prefix_end(plc_engine *e, plc__prefix *p, uint32_t now_s);
/* Decays a prefix to now_s and counts a new version (PUT) of one of its objects. */
void plc__prefix_version(plc_engine *e, plc__prefix *p, uint32_t now_s);
/* Counts a version's first read from region (decayed like the rest). */
void plc__prefix_first(plc_engine *e, plc__prefix *p, uint32_t now_s, uint32_t region);
/* The share of the prefix's versions read at least once from each region (0 when it has seen
 * fewer than a few versions). */
void plc__prefix_first_shares(const plc_engine *e, const plc__prefix *p,
                              double shares[PLC_REGIONS_MAX]);
/* The prefix whose summary an object of p borrows from (p, or its bucket when p knows little). */
const plc__prefix *plc__prior_source(const plc_engine *e, const plc__prefix *p);

/*
 * The posterior of every region of o at now_s without changing o: alpha[r]
 * and the shared beta. Untracked regions get the prefix prior's share.
 */
double plc__posterior(const plc_engine *e, const plc__obj *o, uint32_t now_s,
                      double alpha[PLC_REGIONS_MAX], double *ends_alpha, double *prior_w);
/* Decays o's stored state to now_s. */
void plc__obj_decay(plc_engine *e, plc__obj *o, uint32_t now_s);
/* A new object's (or an evicted one's) prior: beta = prior_w from its prefix. */
void plc__obj_prior(plc_engine *e, plc__obj *o, uint32_t now_s);

/* ---- engine_store.c: records, names, prefixes, policies */

int plc__store_init(plc_engine *e);
void plc__store_free(plc_engine *e);
uint64_t plc__hash(const void *data, size_t len, uint64_t seed);
/* Finds (create: or creates, observed from now_s) the prefix of (bucket, dir); *out is
 * PLC__NONE when absent. TERN_ENOMEM changes nothing. */
int plc__prefix_get(plc_engine *e, const char *bucket, size_t bucket_len, const char *dir,
                    size_t dir_len, bool create, uint32_t now_s, uint32_t *out);
/* Frees a prefix with no objects left (and its bucket's if that is now empty too). */
void plc__prefix_release(plc_engine *e, uint32_t pi);
/* Finds the record of (prefix, suffix); PLC__NONE when absent. */
uint32_t plc__obj_find(const plc_engine *e, uint32_t prefix, const char *suffix, size_t len,
                       uint32_t hash);
uint32_t plc__obj_hash(const plc_engine *e, uint32_t prefix, const char *suffix, size_t len);
/* A new record with its name and no shapes. TERN_ENOMEM changes nothing. */
int plc__obj_create(plc_engine *e, uint32_t prefix, const char *suffix, size_t len, uint32_t hash,
                    uint32_t *out);
void plc__obj_destroy(plc_engine *e, uint32_t oi);
/* Gives o a stored shape for region (initial value alpha). TERN_ENOMEM changes nothing. */
int plc__obj_track(plc_engine *e, uint32_t oi, uint32_t region, float alpha);
/* Drops every stored shape of o (its demand falls back to the prefix prior). */
void plc__obj_untrack(plc_engine *e, uint32_t oi);
/* Evicts cold objects' shapes until pairs <= tracked_pairs_max (they are reborn from their
 * prefix prior at now_s); never touches record keep. */
void plc__evict(plc_engine *e, uint32_t keep, uint32_t now_s);
/* The policy index for bucket (its own, or the default). */
uint32_t plc__policy_for(const plc_engine *e, const char *bucket, size_t bucket_len);
const plc_bucket_policy *plc__policy_of(const plc_engine *e, const plc__prefix *p);
/* Writes "bucket\0key\0" of a record into e->scratch; returns the key. */
const char *plc__obj_name(plc_engine *e, const plc__obj *o);
/* Checks the store's invariants (tests; O(objects)). */
void plc__store_check(const plc_engine *e);

#endif
