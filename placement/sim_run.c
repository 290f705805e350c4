/* placement simulator: replays a trace through a policy (engine, baseline or oracle) into a ledger.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "placement.h"
#include "sim_internal.h"

#define PROGRESS_EVERY 65536
/* Engine policies: a tick reviews as many objects as events arrived since the previous one (at
 * least this many), so the review costs O(1) per event whatever the tick cadence. */
#define TICK_OBJECTS_MIN 64

static const char *const policy_names[PLC_SIM_POLICY_COUNT] = {
    [PLC_SIM_BANDIT] = "bandit",       [PLC_SIM_FULL] = "full",
    [PLC_SIM_HOME] = "home",           [PLC_SIM_STATIC_K] = "static-k",
    [PLC_SIM_LRU_CACHE] = "lru-cache", [PLC_SIM_COUNTING] = "counting",
    [PLC_SIM_EPSILON] = "epsilon",     [PLC_SIM_ORACLE] = "oracle",
};

const char *plc_sim_policy_name(plc_sim_policy p)
{
    return (unsigned)p < PLC_SIM_POLICY_COUNT ? policy_names[p] : NULL;
}

int plc_sim_policy_parse(const char *name, plc_sim_policy *out)
{
    for (int i = 0; i < PLC_SIM_POLICY_COUNT; i++)
        if (strcmp(name, policy_names[i]) == 0) {
            *out = (plc_sim_policy)i;
            return 0;
        }
    return TERN_EINVAL;
}

typedef struct {
    plc_ledger *ledger;
    const plc_sim_options *o;
    const plc_sim_trace *trace;
    int64_t now_ms;
    int64_t next_sample_ms;
    size_t done;
    int rc; /* the first error of a callback */
} replay;

static void before_step(replay *r, int64_t ts_ms)
{
    r->now_ms = ts_ms;
    if (r->o->sample == NULL) return;
    int64_t every = r->o->sample_interval_ms > 0 ? r->o->sample_interval_ms : 3600 * 1000;
    if (r->next_sample_ms == INT64_MIN) r->next_sample_ms = ts_ms;
    while (r->next_sample_ms <= ts_ms) {
        r->o->sample(r->o->ctx, r->next_sample_ms,
                     plc_ledger_total_usd_at(r->ledger, r->next_sample_ms));
        r->next_sample_ms += every;
    }
}

static void after_event(replay *r)
{
    if (++r->done % PROGRESS_EVERY == 0 && r->o->progress != NULL)
        r->o->progress(r->o->ctx, r->done, r->trace->event_count);
}

static void baseline_changed(void *ctx, uint32_t object, plc_mask after)
{
    replay *r = ctx;
    int rc = plc_ledger_step(r->ledger, r->now_ms, object, NULL, 0, after);
    if (rc != 0 && r->rc == 0) r->rc = rc;
}

static int run_baseline(replay *r, const plc_topology *t)
{
    plc__baseline *b = NULL;
    int rc = plc__baseline_new(t, r->trace, r->o, &b);
    for (size_t i = 0; rc == 0 && i < r->trace->event_count; i++) {
        const plc_sim_event *ev = &r->trace->events[i];
        before_step(r, ev->ts_ms);
        plc_mask before = plc_ledger_holders(r->ledger, ev->object);
        plc_mask after = plc__baseline_observe(b, ev, before, baseline_changed, r);
        rc = r->rc ? r->rc : plc_ledger_step(r->ledger, ev->ts_ms, ev->object, ev, 0, after);
        after_event(r);
    }
    plc__baseline_free(b);
    return rc;
}

static int run_oracle(replay *r, const plc_topology *t, char *errmsg, size_t errmsg_len)
{
    plc_oracle_plan plan;
    int rc = plc_oracle_solve(t, r->trace, &plan, errmsg, errmsg_len);
    if (rc != 0) return rc;
    size_t c = 0;
    for (size_t i = 0; rc == 0 && i < r->trace->event_count; i++) {
        const plc_sim_event *ev = &r->trace->events[i];
        for (; rc == 0 && c < plan.change_count && plan.changes[c].ts_ms <= ev->ts_ms; c++) {
            const plc_oracle_change *ch = &plan.changes[c];
            before_step(r, ch->ts_ms);
            rc = plc_ledger_step(r->ledger, ch->ts_ms, ch->object, NULL, ch->through, ch->after);
        }
        if (rc != 0) break;
        before_step(r, ev->ts_ms);
        rc = plc_ledger_step(r->ledger, ev->ts_ms, ev->object, ev, plan.through[i], plan.after[i]);
        after_event(r);
    }
    for (; rc == 0 && c < plan.change_count; c++) {
        const plc_oracle_change *ch = &plan.changes[c];
        before_step(r, ch->ts_ms);
        rc = plc_ledger_step(r->ledger, ch->ts_ms, ch->object, NULL, ch->through, ch->after);
    }
    plc_oracle_plan_free(&plan);
    return rc;
}

/* ---------------------------------------------------------------- engine policies */

/* (bucket, key) -> object index, for the changes an engine tick reports by name. */
typedef struct {
    uint32_t *slots; /* object + 1; 0 = empty */
    size_t mask;
    const plc_sim_trace *trace;
} name_index;

static uint64_t name_hash(const char *bucket, const char *key)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = bucket; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull; /* a separator no name contains */
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static int name_index_init(name_index *ix, const plc_sim_trace *trace)
{
    size_t cap = 16;
    while (cap < 2 * trace->object_count)
        cap *= 2;
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (ix->slots == NULL) return TERN_ENOMEM;
    ix->mask = cap - 1;
    ix->trace = trace;
    for (uint32_t i = 0; i < trace->object_count; i++) {
        size_t s = name_hash(trace->objects[i].bucket, trace->objects[i].key) & ix->mask;
        while (ix->slots[s] != 0)
            s = (s + 1) & ix->mask;
        ix->slots[s] = i + 1;
    }
    return 0;
}

static uint32_t name_index_find(const name_index *ix, const char *bucket, const char *key)
{
    for (size_t s = name_hash(bucket, key) & ix->mask; ix->slots[s] != 0; s = (s + 1) & ix->mask) {
        const plc_sim_object *o = &ix->trace->objects[ix->slots[s] - 1];
        if (strcmp(o->bucket, bucket) == 0 && strcmp(o->key, key) == 0) return ix->slots[s] - 1;
    }
    return UINT32_MAX;
}

typedef struct {
    replay *r;
    name_index *names;
} engine_ctx;

static void engine_changed(void *ctx, const char *bucket, const char *key, plc_mask before,
                           plc_mask after)
{
    engine_ctx *c = ctx;
    uint32_t object = name_index_find(c->names, bucket, key);
    if (object == UINT32_MAX) {
        if (c->r->rc == 0) c->r->rc = TERN_EINVAL;
        return;
    }
    (void)before; /* the ledger's own view of the holders is the one priced */
    int rc = plc_ledger_step(c->r->ledger, c->r->now_ms, object, NULL, 0, after);
    if (rc != 0 && c->r->rc == 0) c->r->rc = rc;
}

static int run_engine(replay *r, const plc_topology *t, plc_algo algo, char *errmsg,
                      size_t errmsg_len)
{
    plc_config config = {.algo = algo, .seed = r->o->seed};
    plc_engine *e = NULL;
    name_index names = {0};
    int rc = plc_engine_new(t, &config, &e, errmsg, errmsg_len);
    if (rc == 0) rc = name_index_init(&names, r->trace);
    const char *last_bucket = NULL;
    for (size_t i = 0; rc == 0 && i < r->trace->object_count; i++) {
        const plc_sim_object *obj = &r->trace->objects[i];
        if (last_bucket != NULL && strcmp(last_bucket, obj->bucket) == 0) continue;
        rc = plc_engine_set_policy(e, obj->bucket, &r->trace->policies[obj->policy]);
        last_bucket = obj->bucket;
    }
    engine_ctx ctx = {r, &names};
    int64_t tick_ms = r->o->tick_interval_ms > 0 ? r->o->tick_interval_ms : 60 * 1000;
    int64_t next_tick = INT64_MIN;
    size_t since_tick = 0;
    for (size_t i = 0; rc == 0 && i < r->trace->event_count; i++) {
        const plc_sim_event *ev = &r->trace->events[i];
        before_step(r, ev->ts_ms);
        if (next_tick == INT64_MIN) next_tick = ev->ts_ms + tick_ms;
        if (ev->ts_ms >= next_tick) {
            plc_engine_tick(e, ev->ts_ms, TERN_MAX(since_tick, (size_t)TICK_OBJECTS_MIN),
                            engine_changed, &ctx);
            next_tick = ev->ts_ms + tick_ms;
            since_tick = 0;
            if ((rc = r->rc) != 0) break;
        }
        const plc_sim_object *obj = &r->trace->objects[ev->object];
        if (ev->op == PLC_GET && plc_ledger_holders(r->ledger, ev->object) == 0) {
            /* A GET of an object that does not exist is a 404: a live node never shows it
             * to the engine, so neither does the replay (the ledger counts the miss). */
            rc = plc_ledger_step(r->ledger, ev->ts_ms, ev->object, ev, 0, 0);
            after_event(r);
            continue;
        }
        plc_event pe = {ev->ts_ms, ev->region, ev->op, obj->bucket, obj->key, ev->bytes};
        plc_decision d;
        since_tick++;
        rc = plc_engine_observe(e, &pe, &d);
        if (rc == 0)
            rc = plc_ledger_step(r->ledger, ev->ts_ms, ev->object, ev, 0,
                                 ev->op == PLC_DELETE ? 0 : d.after);
        after_event(r);
    }
    if (rc == TERN_EINVAL && errmsg[0] == '\0')
        tern_errmsg(errmsg, errmsg_len,
                    "the engine refused an event or reported an unknown object");
    free(names.slots);
    plc_engine_free(e);
    return rc;
}

int plc_sim_run(const plc_topology *t, const plc_sim_trace *trace, const plc_sim_options *o,
                plc_sim_result *out, char *errmsg, size_t errmsg_len)
{
    if (errmsg_len > 0) errmsg[0] = '\0';
    replay r = {.o = o, .trace = trace, .next_sample_ms = INT64_MIN};
    int rc = plc_ledger_new(t, trace, &r.ledger);
    if (rc != 0) {
        if (rc == TERN_ENOTSUP)
            tern_errmsg(errmsg, errmsg_len,
                        "ledger: the trace's buckets have more than %d distinct allowed_regions "
                        "sets",
                        PLC__RELAY_TABLES_MAX - 1);
        else
            tern_errmsg(errmsg, errmsg_len, "ledger: %s", tern_strerror(rc));
        return rc;
    }
    switch (o->policy) {
    case PLC_SIM_BANDIT:
        rc = run_engine(&r, t, PLC_ALGO_THOMPSON, errmsg, errmsg_len);
        break;
    case PLC_SIM_EPSILON:
        rc = run_engine(&r, t, PLC_ALGO_EPSILON, errmsg, errmsg_len);
        break;
    case PLC_SIM_ORACLE:
        rc = run_oracle(&r, t, errmsg, errmsg_len);
        break;
    case PLC_SIM_FULL:
    case PLC_SIM_HOME:
    case PLC_SIM_STATIC_K:
    case PLC_SIM_LRU_CACHE:
    case PLC_SIM_COUNTING:
        rc = run_baseline(&r, t);
        break;
    default:
        rc = TERN_EINVAL;
    }
    if (rc == 0) {
        if (o->sample != NULL) before_step(&r, trace->end_ms);
        plc_ledger_finish(r.ledger, out);
        if (o->sample != NULL) o->sample(o->ctx, trace->end_ms, out->total_usd);
    } else if (errmsg_len > 0 && errmsg[0] == '\0') {
        tern_errmsg(errmsg, errmsg_len, "%s: %s", plc_sim_policy_name(o->policy),
                    tern_strerror(rc));
    }
    plc_ledger_free(r.ledger);
    return rc;
}
