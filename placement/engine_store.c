/* placement: the engine's compact object store (records, index tables, name arena, prefixes). */
#include "placement_internal.h"

/* ---------------------------------------------------------------- hashing */

uint64_t plc__hash(const void *data, size_t len, uint64_t seed)
{
    /* Eight bytes per multiply, then the murmur3 finalizer. Table positions are the only thing
     * it decides: no decision depends on a hash value, so byte order does not matter. */
    const uint8_t *p = data;
    uint64_t h = seed ^ (len * 0x9e3779b97f4a7c15ull);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, len);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* ---------------------------------------------------------------- index tables */

/*
 * Open addressing with linear probing over uint32 slots holding index + 1 (0 is empty).
 * Deletion shifts the following run back (no tombstones), so a lookup stops at the first
 * empty slot.
 */
typedef uint32_t (*home_fn)(const plc_engine *e, uint32_t index);

static uint32_t obj_home(const plc_engine *e, uint32_t index)
{
    return plc__rec(e, index)->hash;
}

static uint32_t prefix_home(const plc_engine *e, uint32_t index)
{
    return (uint32_t)e->prefixes[index].hash;
}

static int table_grow(plc_engine *e, uint32_t **slots, size_t *slot_count, size_t used,
                      home_fn home)
{
    if (*slot_count && (used + 1) * PLC__LOAD_DEN <= *slot_count * PLC__LOAD_NUM) return 0;
    size_t n = *slot_count ? *slot_count * 2 : 64;
    uint32_t *s = plc__alloc(e, n * sizeof *s);
    if (!s) return TERN_ENOMEM;
    for (size_t i = 0; i < *slot_count; i++) {
        uint32_t v = (*slots)[i];
        if (!v) continue;
        size_t j = home(e, v - 1) & (n - 1);
        while (s[j])
            j = (j + 1) & (n - 1);
        s[j] = v;
    }
    plc__free(e, *slots, *slot_count * sizeof **slots);
    *slots = s;
    *slot_count = n;
    return 0;
}

static void table_insert(uint32_t *slots, size_t slot_count, uint32_t hash, uint32_t index)
{
    size_t j = hash & (slot_count - 1);
    while (slots[j])
        j = (j + 1) & (slot_count - 1);
    slots[j] = index + 1;
}

static void table_remove(const plc_engine *e, uint32_t *slots, size_t slot_count, uint32_t hash,
                         uint32_t index, home_fn home)
{
    size_t mask = slot_count - 1;
    size_t i = hash & mask;
    while (slots[i] != index + 1) {
        assert(slots[i] != 0); /* the entry must be present */
        i = (i + 1) & mask;
    }
    for (size_t j = (i + 1) & mask; slots[j]; j = (j + 1) & mask) {
        size_t k = home(e, slots[j] - 1) & mask;
        /* Move slots[j] into the hole at i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            slots[i] = slots[j];
            i = j;
        }
    }
    slots[i] = 0;
}

/* ---------------------------------------------------------------- the arena */

static int arena_alloc(plc_engine *e, uint32_t cells, uint32_t *out)
{
    assert(cells > 0 && cells <= PLC__CELL_CHUNK);
    uint64_t top = e->cell_top;
    uint64_t room = PLC__CELL_CHUNK - top % PLC__CELL_CHUNK;
    uint64_t skipped = 0;
    if (room < cells) { /* a span never straddles two chunks */
        skipped = room;
        top += room;
    }
    size_t chunk = top / PLC__CELL_CHUNK;
    if (top + cells > UINT32_MAX) return TERN_ENOMEM; /* spans are uint32 cell indexes */
    if (chunk >= e->cell_chunk_count) {
        if (e->cell_chunk_count == e->cell_chunk_cap) {
            size_t cap = e->cell_chunk_cap ? e->cell_chunk_cap * 2 : 8;
            uint32_t **c =
                plc__realloc(e, e->cell_chunks, e->cell_chunk_cap * sizeof *c, cap * sizeof *c);
            if (!c) return TERN_ENOMEM;
            e->cell_chunks = c;
            e->cell_chunk_cap = cap;
        }
        uint32_t *chunk_mem = plc__alloc(e, PLC__CELL_CHUNK * sizeof(uint32_t));
        if (!chunk_mem) return TERN_ENOMEM;
        e->cell_chunks[e->cell_chunk_count++] = chunk_mem;
    }
    e->cells_garbage += skipped;
    e->cell_top = top + cells;
    e->cells_live += cells;
    *out = (uint32_t)top;
    return 0;
}

static void arena_release(plc_engine *e, uint32_t cells)
{
    assert(e->cells_live >= cells);
    e->cells_live -= cells;
    e->cells_garbage += cells;
}

static uint32_t span_cells(const plc__obj *o)
{
    return plc__name_cells(plc__name_len(o)) + (uint32_t)plc__popcount(o->tracked);
}

/* Copies every live span into fresh chunks once garbage passes half the live cells. A failed
 * allocation leaves the old arena in place: compaction is only an optimization. */
static void arena_maybe_compact(plc_engine *e)
{
    if (e->cells_garbage <= e->cells_live / 2 + PLC__CELL_CHUNK) return;
    size_t count = (e->cells_live + PLC__CELL_CHUNK - 1) / PLC__CELL_CHUNK + 1;
    /* Chunks may end with a few unused cells, so allow one more chunk per 64. */
    count += count / 64 + 1;
    uint32_t **chunks = plc__alloc(e, count * sizeof *chunks);
    if (!chunks) return;
    size_t used = 0;
    uint64_t top = 0;
    for (uint32_t i = 0; i < e->rec_top; i++) {
        plc__obj *o = plc__rec(e, i);
        if (o->prefix == PLC__NONE) continue;
        uint32_t cells = span_cells(o);
        if (!cells) continue;
        if (top % PLC__CELL_CHUNK + cells > PLC__CELL_CHUNK)
            top += PLC__CELL_CHUNK - top % PLC__CELL_CHUNK;
        size_t chunk = top / PLC__CELL_CHUNK;
        if (chunk >= used) {
            assert(chunk == used && used < count);
            chunks[used] = plc__alloc(e, PLC__CELL_CHUNK * sizeof(uint32_t));
            if (!chunks[used]) goto err;
            used++;
        }
        memcpy(&chunks[chunk][top % PLC__CELL_CHUNK], plc__cell(e, o->span),
               cells * sizeof(uint32_t));
        top += cells;
    }
    /* Every copy succeeded: switch the spans over, in the same order as the copies. */
    top = 0;
    for (uint32_t i = 0; i < e->rec_top; i++) {
        plc__obj *o = plc__rec(e, i);
        if (o->prefix == PLC__NONE) continue;
        uint32_t cells = span_cells(o);
        if (!cells) continue;
        if (top % PLC__CELL_CHUNK + cells > PLC__CELL_CHUNK)
            top += PLC__CELL_CHUNK - top % PLC__CELL_CHUNK;
        o->span = (uint32_t)top;
        top += cells;
    }
    for (size_t i = 0; i < e->cell_chunk_count; i++)
        plc__free(e, e->cell_chunks[i], PLC__CELL_CHUNK * sizeof(uint32_t));
    plc__free(e, e->cell_chunks, e->cell_chunk_cap * sizeof *e->cell_chunks);
    e->cell_chunks = chunks;
    e->cell_chunk_count = used;
    e->cell_chunk_cap = count;
    e->cells_garbage = top - e->cells_live; /* the chunk tails skipped above */
    e->cell_top = top;
    return;
err:
    for (size_t i = 0; i < used; i++)
        plc__free(e, chunks[i], PLC__CELL_CHUNK * sizeof(uint32_t));
    plc__free(e, chunks, count * sizeof *chunks);
}

/* ---------------------------------------------------------------- policies */

uint32_t plc__policy_for(const plc_engine *e, const char *bucket, size_t bucket_len)
{
    for (size_t i = 1; i < e->policy_count; i++) {
        const char *b = e->policies[i].bucket;
        if (strlen(b) == bucket_len && memcmp(b, bucket, bucket_len) == 0) return (uint32_t)i;
    }
    return 0;
}

const plc_bucket_policy *plc__policy_of(const plc_engine *e, const plc__prefix *p)
{
    assert(p->policy < e->policy_count);
    return &e->policies[p->policy].p;
}

/* ---------------------------------------------------------------- prefixes */

static uint64_t prefix_hash(const char *bucket, size_t bucket_len, const char *dir, size_t dir_len)
{
    return plc__hash(dir, dir_len, plc__hash(bucket, bucket_len, 0x7465726e));
}

static uint32_t prefix_find(const plc_engine *e, const char *bucket, size_t bucket_len,
                            const char *dir, size_t dir_len, uint64_t hash)
{
    if (!e->prefix_slot_count) return PLC__NONE;
    size_t mask = e->prefix_slot_count - 1;
    for (size_t j = hash & mask; e->prefix_slots[j]; j = (j + 1) & mask) {
        const plc__prefix *p = &e->prefixes[e->prefix_slots[j] - 1];
        if (p->hash == hash && p->bucket_len == bucket_len && p->dir_len == dir_len &&
            memcmp(p->name, bucket, bucket_len) == 0 &&
            memcmp(p->name + bucket_len + 1, dir, dir_len) == 0)
            return e->prefix_slots[j] - 1;
    }
    return PLC__NONE;
}

static int scratch_reserve(plc_engine *e, size_t len)
{
    if (len <= e->scratch_len) return 0;
    char *s = plc__realloc(e, e->scratch, e->scratch_len, len);
    if (!s) return TERN_ENOMEM;
    e->scratch = s;
    e->scratch_len = len;
    return 0;
}

static int prefix_create(plc_engine *e, const char *bucket, size_t bucket_len, const char *dir,
                         size_t dir_len, uint64_t hash, uint32_t parent, uint32_t now_s,
                         uint32_t *out)
{
    if (bucket_len > UINT32_MAX / 4 || dir_len > UINT32_MAX / 4) return TERN_EINVAL;
    /* The tick callback's names are built in scratch: reserve it now, while an error can still
     * be returned, for the longest name of this prefix. */
    if (scratch_reserve(e, bucket_len + dir_len + PLC__NAME_LEN_MAX + 2)) return TERN_ENOMEM;
    if (table_grow(e, &e->prefix_slots, &e->prefix_slot_count, e->prefix_live, prefix_home))
        return TERN_ENOMEM;
    if (e->prefix_free == PLC__NONE && e->prefix_count == e->prefix_cap) {
        size_t cap = e->prefix_cap ? e->prefix_cap * 2 : 16;
        plc__prefix *p = plc__realloc(e, e->prefixes, e->prefix_cap * sizeof *p, cap * sizeof *p);
        if (!p) return TERN_ENOMEM;
        e->prefixes = p;
        e->prefix_cap = cap;
    }
    char *name = plc__alloc(e, bucket_len + dir_len + 2);
    if (!name) return TERN_ENOMEM;
    memcpy(name, bucket, bucket_len);
    memcpy(name + bucket_len + 1, dir, dir_len);
    uint32_t pi;
    if (e->prefix_free != PLC__NONE) {
        pi = e->prefix_free;
        e->prefix_free = e->prefixes[pi].parent;
    } else {
        pi = (uint32_t)e->prefix_count++;
    }
    plc__prefix *p = &e->prefixes[pi];
    memset(p, 0, sizeof *p);
    p->name = name;
    p->bucket_len = (uint32_t)bucket_len;
    p->dir_len = (uint32_t)dir_len;
    p->hash = hash;
    p->parent = parent == PLC__NONE ? pi : parent;
    p->policy = plc__policy_for(e, bucket, bucket_len);
    p->updated_s = now_s; /* its exposure starts now */
    table_insert(e->prefix_slots, e->prefix_slot_count, (uint32_t)hash, pi);
    e->prefix_live++;
    *out = pi;
    return 0;
}

int plc__prefix_get(plc_engine *e, const char *bucket, size_t bucket_len, const char *dir,
                    size_t dir_len, bool create, uint32_t now_s, uint32_t *out)
{
    uint64_t hash = prefix_hash(bucket, bucket_len, dir, dir_len);
    *out = prefix_find(e, bucket, bucket_len, dir, dir_len, hash);
    if (*out != PLC__NONE || !create) return 0;
    uint32_t parent = PLC__NONE;
    if (dir_len) {
        uint64_t bucket_hash = prefix_hash(bucket, bucket_len, "", 0);
        parent = prefix_find(e, bucket, bucket_len, "", 0, bucket_hash);
        if (parent == PLC__NONE) {
            int rc =
                prefix_create(e, bucket, bucket_len, "", 0, bucket_hash, PLC__NONE, now_s, &parent);
            if (rc) return rc;
        }
    }
    int rc = prefix_create(e, bucket, bucket_len, dir, dir_len, hash, parent, now_s, out);
    if (rc && parent != PLC__NONE) plc__prefix_release(e, parent);
    return rc;
}

void plc__prefix_release(plc_engine *e, uint32_t pi)
{
    plc__prefix *p = &e->prefixes[pi];
    assert(p->name != NULL);
    if (p->objects) return;
    uint32_t parent = p->parent;
    table_remove(e, e->prefix_slots, e->prefix_slot_count, (uint32_t)p->hash, pi, prefix_home);
    plc__free(e, p->name, p->bucket_len + p->dir_len + 2);
    p->name = NULL;
    p->parent = e->prefix_free; /* the free list runs through parent */
    e->prefix_free = pi;
    e->prefix_live--;
    if (parent != pi) plc__prefix_release(e, parent);
}

/* ---------------------------------------------------------------- records */

uint32_t plc__obj_hash(const plc_engine *e, uint32_t prefix, const char *suffix, size_t len)
{
    return (uint32_t)plc__hash(suffix, len, e->prefixes[prefix].hash);
}

uint32_t plc__obj_find(const plc_engine *e, uint32_t prefix, const char *suffix, size_t len,
                       uint32_t hash)
{
    if (!e->obj_slot_count) return PLC__NONE;
    size_t mask = e->obj_slot_count - 1;
    for (size_t j = hash & mask; e->obj_slots[j]; j = (j + 1) & mask) {
        const plc__obj *o = plc__rec(e, e->obj_slots[j] - 1);
        if (o->hash == hash && o->prefix == prefix && plc__name_len(o) == len &&
            (len == 0 || memcmp(plc__cell(e, o->span), suffix, len) == 0))
            return e->obj_slots[j] - 1;
    }
    return PLC__NONE;
}

static int rec_reserve(plc_engine *e)
{
    if (e->rec_free != PLC__NONE) return 0;
    if (e->rec_top % PLC__REC_CHUNK) return 0;
    if (e->rec_top == UINT32_MAX - PLC__REC_CHUNK) return TERN_ENOMEM;
    size_t chunk = e->rec_top >> PLC__REC_CHUNK_SHIFT;
    if (chunk == e->rec_chunk_cap) {
        size_t cap = e->rec_chunk_cap ? e->rec_chunk_cap * 2 : 8;
        plc__obj **c =
            plc__realloc(e, e->rec_chunks, e->rec_chunk_cap * sizeof *c, cap * sizeof *c);
        if (!c) return TERN_ENOMEM;
        e->rec_chunks = c;
        e->rec_chunk_cap = cap;
    }
    if (chunk == e->rec_chunk_count) {
        plc__obj *mem = plc__alloc(e, PLC__REC_CHUNK * sizeof *mem);
        if (!mem) return TERN_ENOMEM;
        e->rec_chunks[e->rec_chunk_count++] = mem;
    }
    return 0;
}

int plc__obj_create(plc_engine *e, uint32_t prefix, const char *suffix, size_t len, uint32_t hash,
                    uint32_t *out)
{
    assert(len <= PLC__NAME_LEN_MAX);
    if (table_grow(e, &e->obj_slots, &e->obj_slot_count, e->objects, obj_home)) return TERN_ENOMEM;
    if (rec_reserve(e)) return TERN_ENOMEM;
    uint32_t span = 0;
    if (len && arena_alloc(e, plc__name_cells((uint32_t)len), &span)) return TERN_ENOMEM;
    uint32_t oi;
    if (e->rec_free != PLC__NONE) {
        oi = e->rec_free;
        e->rec_free = plc__rec(e, oi)->span;
    } else {
        oi = e->rec_top++;
    }
    plc__obj *o = plc__rec(e, oi);
    memset(o, 0, sizeof *o);
    o->hash = hash;
    o->prefix = prefix;
    o->span = span;
    o->name = (uint16_t)len;
    o->put_s = PLC__NO_PUT;
    if (len) {
        uint32_t cells = plc__name_cells((uint32_t)len);
        plc__cell(e, span)[cells - 1] = 0; /* deterministic padding */
        memcpy(plc__cell(e, span), suffix, len);
    }
    table_insert(e->obj_slots, e->obj_slot_count, hash, oi);
    e->objects++;
    plc__prefix *p = &e->prefixes[prefix];
    p->objects++;
    if (p->parent != prefix) e->prefixes[p->parent].objects++;
    *out = oi;
    return 0;
}

void plc__obj_destroy(plc_engine *e, uint32_t oi)
{
    plc__obj *o = plc__rec(e, oi);
    assert(o->prefix != PLC__NONE);
    table_remove(e, e->obj_slots, e->obj_slot_count, o->hash, oi, obj_home);
    uint32_t cells = span_cells(o);
    if (cells) arena_release(e, cells);
    e->pairs -= (size_t)plc__popcount(o->tracked);
    uint32_t pi = o->prefix;
    plc__prefix *p = &e->prefixes[pi];
    assert(p->objects > 0);
    p->objects--;
    if (p->parent != pi) {
        assert(e->prefixes[p->parent].objects > 0);
        e->prefixes[p->parent].objects--;
    }
    o->prefix = PLC__NONE;
    o->tracked = 0;
    o->span = e->rec_free;
    e->rec_free = oi;
    e->objects--;
    plc__prefix_release(e, pi);
    arena_maybe_compact(e);
}

int plc__obj_track(plc_engine *e, uint32_t oi, uint32_t region, float alpha)
{
    plc__obj *o = plc__rec(e, oi);
    assert(region < PLC_REGIONS_MAX && !(o->tracked & (1u << region)));
    uint32_t name_cells = plc__name_cells(plc__name_len(o));
    uint32_t old_cells = span_cells(o);
    uint32_t span;
    int rc = arena_alloc(e, old_cells + 1, &span);
    if (rc) return rc;
    uint32_t *dst = plc__cell(e, span);
    const uint32_t *src = plc__cell(e, o->span);
    memcpy(dst, src, name_cells * sizeof(uint32_t));
    const float *from = (const float *)(src + name_cells);
    float *to = (float *)(dst + name_cells);
    /* Shapes stay in region order: the new one goes where its bit ranks. */
    for (uint32_t r = 0; r < PLC_REGIONS_MAX; r++) {
        if (r == region)
            *to++ = alpha;
        else if (o->tracked & (1u << r))
            *to++ = *from++;
    }
    if (old_cells) arena_release(e, old_cells);
    o->span = span;
    o->tracked |= (uint8_t)(1u << region);
    e->pairs++;
    arena_maybe_compact(e);
    return 0;
}

void plc__obj_untrack(plc_engine *e, uint32_t oi)
{
    plc__obj *o = plc__rec(e, oi);
    uint32_t k = (uint32_t)plc__popcount(o->tracked);
    if (!k) return;
    /* The name stays at the start of the span; the shapes after it become garbage. */
    arena_release(e, k);
    o->tracked = 0;
    e->pairs -= k;
}

void plc__evict(plc_engine *e, uint32_t keep, uint32_t now_s)
{
    if (e->pairs <= e->c.tracked_pairs_max || !e->rec_top) return;
    /* Two full turns of the hand clear every reference bit, so this ends. */
    uint64_t limit = 2 * (uint64_t)e->rec_top + 2;
    for (uint64_t step = 0; e->pairs > e->c.tracked_pairs_max && step < limit; step++) {
        uint32_t i = e->clock_hand;
        e->clock_hand = i + 1 < e->rec_top ? i + 1 : 0;
        plc__obj *o = plc__rec(e, i);
        if (o->prefix == PLC__NONE || !o->tracked || i == keep) continue;
        if (o->name & PLC__FLAG_REF) {
            o->name &= (uint16_t)~PLC__FLAG_REF;
            continue;
        }
        plc__obj_untrack(e, i);
        plc__obj_prior(e, o, now_s);
    }
    arena_maybe_compact(e);
}

const char *plc__obj_name(plc_engine *e, const plc__obj *o)
{
    const plc__prefix *p = &e->prefixes[o->prefix];
    size_t len = plc__name_len(o);
    assert(e->scratch_len >= p->bucket_len + p->dir_len + len + 2);
    char *s = e->scratch;
    memcpy(s, p->name, p->bucket_len);
    s[p->bucket_len] = 0;
    char *key = s + p->bucket_len + 1;
    memcpy(key, p->name + p->bucket_len + 1, p->dir_len);
    if (len) memcpy(key + p->dir_len, plc__cell(e, o->span), len);
    key[p->dir_len + len] = 0;
    return key;
}

/* ---------------------------------------------------------------- lifetime and checks */

int plc__store_init(plc_engine *e)
{
    e->prefix_free = PLC__NONE;
    e->rec_free = PLC__NONE;
    return 0;
}

void plc__store_free(plc_engine *e)
{
    for (size_t i = 0; i < e->rec_chunk_count; i++)
        plc__free(e, e->rec_chunks[i], PLC__REC_CHUNK * sizeof(plc__obj));
    plc__free(e, e->rec_chunks, e->rec_chunk_cap * sizeof *e->rec_chunks);
    for (size_t i = 0; i < e->cell_chunk_count; i++)
        plc__free(e, e->cell_chunks[i], PLC__CELL_CHUNK * sizeof(uint32_t));
    plc__free(e, e->cell_chunks, e->cell_chunk_cap * sizeof *e->cell_chunks);
    plc__free(e, e->obj_slots, e->obj_slot_count * sizeof *e->obj_slots);
    for (size_t i = 0; i < e->prefix_count; i++)
        if (e->prefixes[i].name)
            plc__free(e, e->prefixes[i].name,
                      e->prefixes[i].bucket_len + e->prefixes[i].dir_len + 2);
    plc__free(e, e->prefixes, e->prefix_cap * sizeof *e->prefixes);
    plc__free(e, e->prefix_slots, e->prefix_slot_count * sizeof *e->prefix_slots);
    plc__free(e, e->scratch, e->scratch_len);
}

void plc__store_check(const plc_engine *e)
{
    size_t live = 0, pairs = 0;
    uint64_t cells = 0;
    for (uint32_t i = 0; i < e->rec_top; i++) {
        const plc__obj *o = plc__rec(e, i);
        if (o->prefix == PLC__NONE) continue;
        live++;
        pairs += (size_t)plc__popcount(o->tracked);
        cells += span_cells(o);
        assert(o->prefix < e->prefix_count && e->prefixes[o->prefix].name);
        assert((o->tracked & ~e->all) == 0 && (o->holders & ~e->all) == 0);
        assert(o->beta > 0 && o->prior_w >= 0 && o->prior_w <= o->beta * 1.0001f);
        const char *name = plc__name_len(o) ? (const char *)plc__cell(e, o->span) : "";
        uint32_t found = plc__obj_find(e, o->prefix, name, plc__name_len(o), o->hash);
        assert(found == i);
        (void)found;
    }
    assert(live == e->objects);
    assert(pairs == e->pairs);
    assert(cells == e->cells_live);
    size_t prefixes = 0;
    for (size_t i = 0; i < e->prefix_count; i++)
        if (e->prefixes[i].name) prefixes++;
    assert(prefixes == e->prefix_live);
    (void)live, (void)pairs, (void)cells, (void)prefixes;
}
