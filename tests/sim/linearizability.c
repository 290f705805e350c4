/* sim: a linearizability checker for one key's register history (Wing-Gong with Lowe's cache). */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/*
 * The search (Wing and Gong 1993, with the memoization of Lowe 2017, as in
 * Porcupine): the history is a list of call and return events in time order.
 * Take the first event. A call may be linearized now if the register allows
 * it (a get must read the current value): remove it and its return from the
 * list, push it, go on. A return means the operation it closes must already
 * have been linearized: undo the last choice and try the next call instead.
 * The list becoming empty proves the history linearizable; backtracking past
 * the first choice disproves it. A cache of (set of linearized operations,
 * register value) prunes the states already explored, which is what keeps the
 * search polynomial on histories with few concurrent operations.
 *
 * An operation with an unknown outcome (a timed-out put) returns "never": it
 * may be linearized anywhere after its call, including after everything else
 * (which is the same as never taking effect). A timed-out put whose value no
 * get returned cannot be told from one that never ran, so it is left out
 * before the search: that removal is exact, not an approximation.
 */

typedef struct lin_event {
    size_t op; /* index into the per-key operation array */
    bool is_call;
    uint64_t time;
    struct lin_event *match; /* call -> its return */
    struct lin_event *prev, *next;
} lin_event;

typedef struct lin_cache {
    uint64_t *bits; /* slots * words */
    uint64_t *value;
    bool *used;
    size_t slots;
    size_t count;
    size_t words;
} lin_cache;

static int event_cmp(const void *pa, const void *pb)
{
    const lin_event *a = pa, *b = pb;
    if (a->time != b->time) return a->time < b->time ? -1 : 1;
    if (a->is_call != b->is_call) return a->is_call ? -1 : 1;
    return a->op < b->op ? -1 : a->op > b->op ? 1 : 0;
}

static uint64_t cache_hash(const uint64_t *bits, size_t words, uint64_t value)
{
    uint64_t h = value * 0x9E3779B97F4A7C15ull;
    for (size_t k = 0; k < words; k++)
        h = (h ^ bits[k]) * 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 29);
}

static void cache_init(lin_cache *c, size_t words)
{
    memset(c, 0, sizeof(*c));
    c->words = words;
    c->slots = 1024;
    c->bits = calloc(c->slots * words, sizeof(uint64_t));
    c->value = calloc(c->slots, sizeof(uint64_t));
    c->used = calloc(c->slots, sizeof(bool));
    assert(c->bits && c->value && c->used);
}

static void cache_free(lin_cache *c)
{
    free(c->bits);
    free(c->value);
    free(c->used);
}

/* Inserts (bits, value); returns false if it was already there. */
static bool cache_insert(lin_cache *c, const uint64_t *bits, uint64_t value);

static void cache_grow(lin_cache *c)
{
    lin_cache bigger = *c;
    bigger.slots = c->slots * 2;
    bigger.count = 0;
    bigger.bits = calloc(bigger.slots * c->words, sizeof(uint64_t));
    bigger.value = calloc(bigger.slots, sizeof(uint64_t));
    bigger.used = calloc(bigger.slots, sizeof(bool));
    assert(bigger.bits && bigger.value && bigger.used);
    for (size_t s = 0; s < c->slots; s++)
        if (c->used[s]) cache_insert(&bigger, &c->bits[s * c->words], c->value[s]);
    cache_free(c);
    *c = bigger;
}

static bool cache_insert(lin_cache *c, const uint64_t *bits, uint64_t value)
{
    if (2 * (c->count + 1) > c->slots) cache_grow(c);
    size_t s = (size_t)(cache_hash(bits, c->words, value) % c->slots);
    while (c->used[s]) {
        if (c->value[s] == value && !memcmp(&c->bits[s * c->words], bits, c->words * 8))
            return false;
        s = (s + 1) % c->slots;
    }
    c->used[s] = true;
    c->value[s] = value;
    memcpy(&c->bits[s * c->words], bits, c->words * 8);
    c->count++;
    return true;
}

static void lift(lin_event *call)
{
    call->prev->next = call->next;
    if (call->next) call->next->prev = call->prev;
    lin_event *ret = call->match;
    ret->prev->next = ret->next;
    if (ret->next) ret->next->prev = ret->prev;
}

static void unlift(lin_event *call)
{
    lin_event *ret = call->match;
    ret->prev->next = ret;
    if (ret->next) ret->next->prev = ret;
    call->prev->next = call;
    if (call->next) call->next->prev = call;
}

/* Collects the key's operations, leaving out timed-out puts whose value nobody read. */
static size_t collect(const sim_history *h, uint32_t key, sim_hist_op *ops)
{
    size_t n = 0;
    for (size_t k = 0; k < h->count; k++) {
        const sim_hist_op *o = &h->ops[k];
        if (o->key != key) continue;
        if (o->type == SIM_PUT && o->ret == SIM_NEVER) {
            bool read = false;
            for (size_t j = 0; j < h->count && !read; j++)
                read = h->ops[j].key == key && h->ops[j].type == SIM_GET &&
                       h->ops[j].value == o->value;
            if (!read) continue;
        }
        ops[n++] = *o;
    }
    return n;
}

/* Builds the time-ordered event list behind a sentinel head. */
static lin_event *build_events(const sim_hist_op *ops, size_t n, lin_event *head)
{
    lin_event *ev = calloc(2 * n + 1, sizeof(*ev));
    assert(ev);
    for (size_t k = 0; k < n; k++) {
        ev[2 * k] = (lin_event){.op = k, .is_call = true, .time = ops[k].call};
        ev[2 * k + 1] = (lin_event){.op = k, .is_call = false, .time = ops[k].ret};
    }
    qsort(ev, 2 * n, sizeof(*ev), event_cmp);
    /* Link returns to calls: a second pass finds each op's two events. */
    size_t *ret_at = calloc(n + 1, sizeof(size_t));
    assert(ret_at);
    for (size_t k = 0; k < 2 * n; k++)
        if (!ev[k].is_call) ret_at[ev[k].op] = k;
    *head = (lin_event){0};
    lin_event *prev = head;
    for (size_t k = 0; k < 2 * n; k++) {
        if (ev[k].is_call) ev[k].match = &ev[ret_at[ev[k].op]];
        ev[k].prev = prev;
        prev->next = &ev[k];
        prev = &ev[k];
    }
    prev->next = NULL;
    free(ret_at);
    return ev;
}

typedef struct lin_frame {
    lin_event *call;
    uint64_t value; /* the register before the call was linearized */
} lin_frame;

static sim_lin_result search(const sim_hist_op *ops, size_t n, lin_event *head, size_t steps_max,
                             size_t *stuck_op)
{
    size_t words = (n + 63) / 64 + 1;
    uint64_t *bits = calloc(words, sizeof(uint64_t));
    lin_frame *stack = calloc(n + 1, sizeof(*stack));
    assert(bits && stack);
    lin_cache cache;
    cache_init(&cache, words);
    size_t depth = 0, steps = 0;
    uint64_t value = 0;
    sim_lin_result result = SIM_LIN_OK;
    lin_event *e = head->next;
    while (head->next) {
        if (++steps > steps_max) {
            result = SIM_LIN_GAVE_UP;
            break;
        }
        assert(e);
        if (e->is_call) {
            const sim_hist_op *o = &ops[e->op];
            bool ok = o->type == SIM_PUT || o->value == value;
            uint64_t next_value = o->type == SIM_PUT ? o->value : value;
            bits[e->op / 64] |= 1ull << (e->op % 64);
            if (ok && cache_insert(&cache, bits, next_value)) {
                stack[depth++] = (lin_frame){e, value};
                value = next_value;
                lift(e);
                e = head->next;
            } else {
                bits[e->op / 64] &= ~(1ull << (e->op % 64));
                e = e->next;
            }
        } else {
            if (depth == 0) {
                *stuck_op = e->op;
                result = SIM_LIN_VIOLATION;
                break;
            }
            lin_frame f = stack[--depth];
            value = f.value;
            bits[f.call->op / 64] &= ~(1ull << (f.call->op % 64));
            unlift(f.call);
            e = f.call->next;
        }
    }
    cache_free(&cache);
    free(bits);
    free(stack);
    return result;
}

sim_lin_result sim_lin_check_key(const sim_history *h, uint32_t key, size_t steps_max, char *why,
                                 size_t why_len)
{
    sim_hist_op *ops = calloc(h->count + 1, sizeof(*ops));
    assert(ops);
    size_t n = collect(h, key, ops);
    lin_event head;
    lin_event *ev = build_events(ops, n, &head);
    size_t stuck = 0;
    sim_lin_result r = n ? search(ops, n, &head, steps_max, &stuck) : SIM_LIN_OK;
    if (r == SIM_LIN_VIOLATION) {
        const sim_hist_op *o = &ops[stuck];
        snprintf(why, why_len,
                 "key %u: no linearization; stuck at %s value %llu by client %u [%llu, %llu]", key,
                 o->type == SIM_PUT ? "put" : "get", (unsigned long long)o->value, o->client,
                 (unsigned long long)o->call, (unsigned long long)o->ret);
    }
    free(ev);
    free(ops);
    return r;
}

/* ---------------- self test: the checker must accept and reject known histories -------- */

typedef struct lin_case {
    const char *name;
    bool linearizable;
    size_t count;
    sim_hist_op ops[6];
} lin_case;

#define PUT(v, c, r)                                                                               \
    {                                                                                              \
        SIM_PUT, 0, v, c, r, 0                                                                     \
    }
#define GET(v, c, r)                                                                               \
    {                                                                                              \
        SIM_GET, 0, v, c, r, 0                                                                     \
    }
static const lin_case lin_cases[] = {
    {"sequential put then get", true, 2, {PUT(1, 1, 2), GET(1, 3, 4)}},
    {"stale read after a completed put", false, 2, {PUT(1, 1, 2), GET(0, 3, 4)}},
    {"read of a value never written", false, 1, {GET(7, 1, 2)}},
    {"concurrent put may be seen or not", true, 3, {PUT(1, 1, 4), GET(0, 2, 3), GET(1, 5, 6)}},
    {"reads disagree on order",
     false,
     4,
     {PUT(1, 1, 10), PUT(2, 2, 11), GET(2, 12, 13), GET(1, 14, 15)}},
    {"timed-out put seen later", true, 2, {PUT(5, 1, SIM_NEVER), GET(5, 9, 10)}},
    {"timed-out put seen then unseen",
     false,
     3,
     {PUT(5, 1, SIM_NEVER), GET(5, 9, 10), GET(0, 11, 12)}},
};
#undef PUT
#undef GET

int sim_lin_self_test(char *why, size_t why_len)
{
    for (size_t k = 0; k < TERN_ARRAY_LEN(lin_cases); k++) {
        const lin_case *c = &lin_cases[k];
        sim_history h = {.ops = (sim_hist_op *)c->ops, .count = c->count};
        char detail[128];
        sim_lin_result r = sim_lin_check_key(&h, 0, 100000, detail, sizeof(detail));
        if ((r == SIM_LIN_OK) != c->linearizable || r == SIM_LIN_GAVE_UP) {
            snprintf(why, why_len, "linearizability self test \"%s\": expected %s", c->name,
                     c->linearizable ? "linearizable" : "a violation");
            return -1;
        }
    }
    return 0;
}
