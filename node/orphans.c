/* Grace-period tracking of a replicated store's unreferenced blocks (see orphans.h). */
#include <stdlib.h>
#include <string.h>

#include "orphans.h"

typedef struct {
    node_block_id id;
    int64_t first_ms;
    uint64_t pass; /* the pass in which it was last reported */
} tracked;

struct node_orphans {
    uint64_t grace_ms;
    size_t max;
    uint64_t pass;
    tracked *items; /* sorted by id */
    size_t count;
};

node_orphans *node_orphans_new(uint64_t grace_ms, size_t orphans_max)
{
    node_orphans *o = calloc(1, sizeof *o);
    if (o == NULL) return NULL;
    o->grace_ms = grace_ms;
    o->max = orphans_max;
    o->items = calloc(orphans_max ? orphans_max : 1, sizeof *o->items);
    if (o->items == NULL) {
        free(o);
        return NULL;
    }
    return o;
}

void node_orphans_free(node_orphans *o)
{
    if (o == NULL) return;
    free(o->items);
    free(o);
}

size_t node_orphans_count(const node_orphans *o)
{
    return o->count;
}

/* Index of id, or of where it would be inserted (*found says which). */
static size_t find(const node_orphans *o, const node_block_id *id, bool *found)
{
    size_t lo = 0, hi = o->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(o->items[mid].id.bytes, id->bytes, NODE_BLOCK_ID_BYTES);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

int node_orphans_note(node_orphans *o, const node_block_id *ids, size_t count, bool pass_complete,
                      int64_t now_ms, node_block_id **ready, size_t *ready_count)
{
    *ready = NULL;
    *ready_count = 0;
    node_block_id *out = count ? malloc(count * sizeof *out) : NULL;
    if (count && out == NULL) return TERN_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        bool found;
        size_t at = find(o, &ids[i], &found);
        if (found) {
            tracked *t = &o->items[at];
            if (now_ms - t->first_ms >= (int64_t)o->grace_ms) {
                out[n++] = t->id;
                memmove(&o->items[at], &o->items[at + 1], (o->count - at - 1) * sizeof *t);
                o->count--;
            } else {
                t->pass = o->pass;
            }
            continue;
        }
        if (o->count == o->max) continue; /* full: reported again in a later pass */
        memmove(&o->items[at + 1], &o->items[at], (o->count - at) * sizeof *o->items);
        o->items[at] = (tracked){.id = ids[i], .first_ms = now_ms, .pass = o->pass};
        o->count++;
    }
    if (pass_complete) {
        size_t kept = 0;
        for (size_t k = 0; k < o->count; k++)
            if (o->items[k].pass == o->pass) o->items[kept++] = o->items[k];
        o->count = kept;
        o->pass++;
    }
    if (n == 0) {
        free(out);
        out = NULL;
    }
    *ready = out;
    *ready_count = n;
    return 0;
}
