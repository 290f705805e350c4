/* placement: the pure placement engine and cost model (no I/O, no clock, no global state). */
#ifndef TERN_PLACEMENT_H
#define TERN_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Everything here is pure: time is an argument (ms), randomness comes from a
 * seeded generator inside each object, no function does I/O, and the same
 * inputs and seed give the same outputs. Errors are negative TERN_E* codes
 * (common/common.h). Regions are indexes 0..region_count-1 into the
 * topology; a set of regions is a bitmask (bit r = region r).
 *
 * Two users: node/ (issue 5) feeds live accesses into an engine and applies
 * its decisions; ternctl sim replays a trace through an engine (or a
 * baseline, or the oracle) and prices the outcome with the cost model.
 */

/* The module's version of its persistent formats; bumped when they change. */
uint32_t plc_format_version(void);

#define PLC_REGIONS_MAX     8
#define PLC_REGION_NAME_MAX 32

typedef uint32_t plc_mask; /* bit r set = region r */

/* ====================================================================== topology, policies */

typedef struct plc_topology {
    size_t region_count; /* 1..PLC_REGIONS_MAX */
    char names[PLC_REGIONS_MAX][PLC_REGION_NAME_MAX];
    double storage_usd_per_gb_month[PLC_REGIONS_MAX];
    double egress_usd_per_gb[PLC_REGIONS_MAX][PLC_REGIONS_MAX]; /* [from][to]; 0 on the diagonal */
    double rtt_ms[PLC_REGIONS_MAX][PLC_REGIONS_MAX];
    double bandwidth_mb_per_s; /* per remote transfer, for read latency; 0: 100 MB/s */
} plc_topology;

/* A bucket's durability and residency policy. */
typedef struct plc_bucket_policy {
    uint32_t min_regions; /* holders once the RPO window after a write has passed (>= 1) */
    plc_mask allowed;     /* regions that may hold a replica (0 = all) */
    plc_mask pinned;      /* regions that always hold one (subset of allowed) */
    uint32_t rpo_seconds; /* the window after a PUT in which fewer holders are allowed */
} plc_bucket_policy;

/* Checks a policy against a topology: TERN_EINVAL with the reason in errmsg (pinned outside
 * allowed, min_regions above the allowed count, regions out of range). */
int plc_policy_check(const plc_topology *t, const plc_bucket_policy *p, char *errmsg,
                     size_t errmsg_len);

/* ====================================================================== events */

typedef enum plc_op {
    PLC_GET = 1,
    PLC_PUT,
    PLC_DELETE,
} plc_op;

typedef struct plc_event {
    int64_t ts_ms;
    uint32_t region; /* where the request arrived */
    plc_op op;
    const char *bucket;
    const char *key;
    uint64_t bytes; /* object size (PUT: the new size; GET: bytes read) */
} plc_event;

/* ====================================================================== the engine */

typedef enum plc_algo {
    PLC_ALGO_THOMPSON = 0, /* Thompson sampling over Gamma-Poisson demand posteriors */
    PLC_ALGO_UCB,          /* upper confidence bound on the same posteriors */
    PLC_ALGO_EPSILON,      /* epsilon-greedy on the posterior means */
} plc_algo;

typedef struct plc_config {
    plc_algo algo;
    uint64_t seed;
    double half_life_hours;      /* exponential forgetting of demand; 0: 24 */
    double horizon_hours;        /* savings and costs are compared over this; 0: 24*7 */
    double hysteresis;           /* a replica is added when saving > (1+h) x cost and dropped
                                    when saving < cost / (1+h); 0: 0.25 */
    double epsilon;              /* PLC_ALGO_EPSILON; 0: 0.1 */
    double ucb_c;                /* PLC_ALGO_UCB exploration weight; 0: 1 */
    double prior_strength;       /* pseudo-observations borrowed from the prefix prior; 0: 2 */
    size_t tracked_pairs_max;    /* (object, region) pairs tracked before cold objects fall
                                    back to their prefix's summary; 0: 1,000,000 */
    double prefetch_probability; /* a PUT also ships to a region that reads the new version
                                    with at least this probability; 0: 0.8 */
} plc_config;

typedef struct plc_engine plc_engine;

/* Copies topology and config. TERN_EINVAL (errmsg says why) or TERN_ENOMEM. */
int plc_engine_new(const plc_topology *t, const plc_config *c, plc_engine **out, char *errmsg,
                   size_t errmsg_len);
void plc_engine_free(plc_engine *e);

/* Sets the policy of bucket ("*" = the default for buckets without one). TERN_EINVAL. */
int plc_engine_set_policy(plc_engine *e, const char *bucket, const plc_bucket_policy *p);

/* What an event did to its object's target replica set. */
typedef struct plc_decision {
    plc_mask before; /* holders before the event (0 for a new object) */
    plc_mask after;  /* the target set after it (0 after a DELETE) */
    uint32_t source; /* GET from a remote region: the holder chosen to serve it */
    bool remote;     /* GET: the reading region held no replica */
} plc_decision;

/*
 * Feeds one event (events must come in non-decreasing ts_ms). Updates the
 * object's and its prefix's demand estimates, then decides the target set:
 * a PUT's set starts from the origin (if allowed) plus whatever the model
 * wants, a GET may add the reading region, and any event may drop replicas
 * whose value fell below their cost. Hard constraints always hold in `after`
 * once the object's RPO window after its last PUT has passed: at least
 * min_regions holders, only allowed regions, every pinned region.
 * TERN_EINVAL for a bad event (unknown region or op), TERN_ENOMEM.
 */
int plc_engine_observe(plc_engine *e, const plc_event *ev, plc_decision *out);

/*
 * Re-evaluates tracked objects at now_ms (drops replicas whose demand decayed,
 * applies RPO windows that have passed), at most max_objects per call, from a
 * cursor that wraps around. Calls changed(ctx, bucket, key, before, after)
 * for each object whose set changed. Returns the number of objects visited.
 */
size_t plc_engine_tick(plc_engine *e, int64_t now_ms, size_t max_objects,
                       void (*changed)(void *ctx, const char *bucket, const char *key,
                                       plc_mask before, plc_mask after),
                       void *ctx);

/* Why an object is where it is. */
typedef enum plc_reason {
    PLC_REASON_NONE = 0,    /* not held */
    PLC_REASON_DEMAND,      /* held because expected saving beats its cost */
    PLC_REASON_PINNED,      /* bucket policy pins this region */
    PLC_REASON_MIN_REGIONS, /* kept (cheapest) to satisfy min_regions */
    PLC_REASON_ORIGIN,      /* the last write arrived here (within the RPO window) */
    PLC_REASON_NOT_ALLOWED, /* residency forbids this region */
} plc_reason;

typedef struct plc_region_explanation {
    bool held;
    plc_reason reason;
    double reads_per_day;        /* posterior mean demand */
    double reads_per_day_stddev; /* its uncertainty */
    /* Over the version's expected remaining life (plc_explanation.life_days): */
    double saving_usd;   /* egress a replica here saves (its reads and cheaper copies for others) */
    double storage_usd;  /* what holding it costs */
    double transfer_usd; /* what copying it here costs once */
} plc_region_explanation;

typedef struct plc_explanation {
    plc_mask holders;
    uint64_t bytes;
    bool from_prefix_prior; /* the object is cold: figures come from its prefix's summary */
    double life_days;       /* expected time to the next overwrite or delete (capped by the
                               horizon) */
    plc_region_explanation regions[PLC_REGIONS_MAX];
} plc_explanation;

/* TERN_ENOTFOUND for an object the engine does not know. */
int plc_engine_explain(const plc_engine *e, const char *bucket, const char *key, int64_t now_ms,
                       plc_explanation *out);

/*
 * Source selection (a second bandit): which holder serves a remote read from
 * region `reader`, learning observed latency and throughput per region pair
 * (plc_engine_observe_transfer) against price. Deterministic for a seed.
 */
uint32_t plc_engine_choose_source(plc_engine *e, uint32_t reader, plc_mask holders);
void plc_engine_observe_transfer(plc_engine *e, uint32_t from, uint32_t to, uint64_t bytes,
                                 double latency_ms);

typedef struct plc_engine_stats {
    size_t objects_tracked;
    size_t pairs_tracked; /* (object, region) pairs with their own estimate */
    size_t memory_bytes;  /* everything the engine allocated */
    uint64_t events;
    uint64_t replicas_added;
    uint64_t replicas_dropped;
} plc_engine_stats;
void plc_engine_stats_get(const plc_engine *e, plc_engine_stats *out);

/* ====================================================================== cost model */

/*
 * The cost model (docs/placement.md has it with worked examples):
 *   - a GET served in a region holding a replica is free; a remote GET costs
 *     bytes x egress[source][reader] and takes rtt[source][reader] + bytes /
 *     bandwidth;
 *   - a replica costs storage[r] x bytes x time held (GB = 10^9 bytes, month
 *     = 30 days) until the object is deleted or overwritten or the trace ends;
 *   - creating a replica in r costs bytes x egress[source][r] from the holder
 *     it is copied from (or through a cheaper relay, plc_relay_usd_per_byte);
 *   - a PUT arriving in region o ships from o to every other member of the
 *     new replica set (the same relay pricing from {o}); the origin itself
 *     holds a replica only if it is in the set.
 */
#define PLC_BYTES_PER_GB 1e9
#define PLC_MS_PER_MONTH (30.0 * 24 * 3600 * 1000)

typedef struct plc_costs {
    double egress_usd; /* remote reads */
    double storage_usd;
    double transfer_usd;     /* replica creation and PUT shipping */
    uint64_t egress_bytes;   /* remote-read bytes */
    uint64_t transfer_bytes; /* replication bytes */
    uint64_t reads;
    uint64_t local_reads;
    uint64_t constraint_violations;
} plc_costs;

/* The cheapest holder in `holders` to copy or read from into region `to` (price, then RTT). */
uint32_t plc_cheapest_source(const plc_topology *t, plc_mask holders, uint32_t to);

/* ====================================================================== simulator (ledger,
 * baselines, oracle) */

/*
 * The simulator replays a trace through a policy and prices the outcome with
 * the cost model above (docs/placement.md, "The simulator"). Everything is
 * pure like the engine: ternctl (ops/) parses files, interns objects and
 * prints; these functions only compute. Objects are interned to indexes so a
 * trace of 10^6 events does not hash strings per event.
 *
 * Pricing rules the ledger applies at each step of an object (an event, or a
 * change between events such as an eviction, a tick or an RPO deadline):
 *   - storage of the set held since the object's previous step accrues
 *     (storage[r] x bytes x time, GB = 10^9 bytes, month = 30 days);
 *   - GET in region r with holders B before the step, new set A, transient
 *     set T (A | B unless the caller says otherwise): the new regions of T are
 *     copied from B, priced by plc_relay_usd_per_byte (bytes x egress from the
 *     cheapest holder, possibly relaying through another allowed region when
 *     that is cheaper, as a replicator may); the read is local and free if r is
 *     in B, "filled" (already paid as the copy into r) if r is in T, and else a
 *     remote read of bytes x egress from the cheapest holder in T;
 *   - PUT at o: the old version's storage ends; the bytes are shipped from o
 *     to the other members of the new set (the same relay pricing from {o});
 *   - DELETE: the storage ends; a GET of an object that does not exist (never
 *     written, or deleted) is a miss and costs nothing;
 *   - the trace end stops every replica's storage.
 * Constraint violations are counted, once per violated rule, after every step
 * of an object and at every RPO deadline: a holder outside allowed or a copy
 * made into a region outside allowed (always), and, once the RPO window
 * after the object's last PUT has passed (ts >= put_ts + rpo_seconds x
 * 1000), fewer than min_regions holders or a pinned region missing.
 */

/* An object of a trace: its bucket's policy is policies[policy]. */
typedef struct plc_sim_object {
    const char *bucket;
    const char *key;
    uint32_t policy;
} plc_sim_object;

typedef struct plc_sim_event {
    int64_t ts_ms;
    uint32_t object; /* index into the trace's objects */
    uint32_t region;
    plc_op op;
    uint64_t bytes; /* PUT: the new size; GET: bytes read */
} plc_sim_event;

typedef struct plc_sim_trace {
    const plc_sim_event *events; /* non-decreasing ts_ms */
    size_t event_count;
    const plc_sim_object *objects;
    size_t object_count;
    const plc_bucket_policy *policies; /* each checked with plc_policy_check by the caller */
    size_t policy_count;
    int64_t end_ms; /* storage accrues until here (>= the last event's ts_ms) */
} plc_sim_trace;

/* What a replay cost and how reads fared. */
typedef struct plc_sim_result {
    plc_costs costs;
    double total_usd;           /* egress + storage + transfer */
    double local_read_ratio;    /* reads served by a holder in the reading region */
    double read_latency_ms_p50; /* local reads count as 0 ms */
    double read_latency_ms_p99;
    uint64_t events;
    uint64_t missed_reads; /* GETs of objects that did not exist (not in reads) */
} plc_sim_result;

/*
 * Cost per byte of turning holder set `from` into a superset `to` at one
 * instant: each new region is copied from a holder present at that moment,
 * and regions of `allowed` may serve as relays (held for no time). It can be
 * below the sum of the direct cheapest-holder prices even when prices obey
 * the triangle inequality (one cheap relay near several new regions: a
 * Steiner tree, not a sum of shortest paths). INFINITY if `to` is not within
 * from | allowed.
 */
typedef struct plc_relay_table plc_relay_table;
int plc_relay_table_new(const plc_topology *t, plc_mask allowed, plc_relay_table **out);
void plc_relay_table_free(plc_relay_table *rt);
double plc_relay_usd_per_byte(const plc_relay_table *rt, plc_mask from, plc_mask to);

/* ---------------------------------------------------------------- the ledger */

typedef struct plc_ledger plc_ledger;

/* The ledger keeps a pointer to trace (it must outlive the ledger). TERN_EINVAL, TERN_ENOMEM. */
int plc_ledger_new(const plc_topology *t, const plc_sim_trace *trace, plc_ledger **out);
void plc_ledger_free(plc_ledger *l);

/*
 * One step of an object at ts_ms (non-decreasing over calls): the event ev
 * (NULL for a change between events), the transient set `through` (0: after
 * | before) and the set `after` it leaves. A DELETE's after must be 0.
 * TERN_EINVAL for time going backwards or a bad object or region.
 */
int plc_ledger_step(plc_ledger *l, int64_t ts_ms, uint32_t object, const plc_sim_event *ev,
                    plc_mask through, plc_mask after);
/* The object's holders now (0 if it does not exist). */
plc_mask plc_ledger_holders(const plc_ledger *l, uint32_t object);
/* Everything incurred up to ts_ms, including storage accrued but not yet booked. */
double plc_ledger_total_usd_at(const plc_ledger *l, int64_t ts_ms);
/* Ends every replica at the trace's end_ms, checks the last RPO deadlines, fills out. */
void plc_ledger_finish(plc_ledger *l, plc_sim_result *out);

/* ---------------------------------------------------------------- baselines */

typedef enum plc_sim_policy {
    PLC_SIM_BANDIT = 0, /* the engine with PLC_ALGO_THOMPSON */
    PLC_SIM_FULL,       /* every allowed region */
    PLC_SIM_HOME,       /* the origin, plus what the constraints force */
    PLC_SIM_STATIC_K,   /* the origin plus the k-1 allowed regions cheapest to store in */
    PLC_SIM_LRU_CACHE,  /* home, plus a per-region LRU cache filled on remote reads */
    PLC_SIM_COUNTING,   /* home, plus regions whose windowed access count passes a threshold */
    PLC_SIM_EPSILON,    /* the engine with PLC_ALGO_EPSILON */
    PLC_SIM_ORACLE,     /* the hindsight optimum (dynamic programming per object) */
    PLC_SIM_POLICY_COUNT
} plc_sim_policy;

/* "bandit", "full", ...; NULL out of range. */
const char *plc_sim_policy_name(plc_sim_policy p);
/* TERN_EINVAL for an unknown name. */
int plc_sim_policy_parse(const char *name, plc_sim_policy *out);

typedef struct plc_sim_options {
    plc_sim_policy policy;
    uint64_t seed;
    uint32_t static_k;           /* 0: max(min_regions, 2) per bucket */
    uint64_t lru_capacity_bytes; /* per region; 0: a quarter of the trace's distinct bytes */
    int64_t counting_window_ms;  /* 0: one hour */
    uint32_t counting_add;       /* add at this many reads in the window; 0: 2 */
    uint32_t counting_drop;      /* drop below this many; 0: 1 */
    int64_t tick_interval_ms;    /* engine policies: plc_engine_tick cadence; 0: 60,000 */
    /* Optional: called every sample_interval_ms of trace time with the cost so far. */
    void (*sample)(void *ctx, int64_t ts_ms, double total_usd);
    int64_t sample_interval_ms;
    /* Optional: called every 65536 events with the count done. */
    void (*progress)(void *ctx, size_t done, size_t total);
    void *ctx;
} plc_sim_options;

/* The set a baseline gives an object right after a PUT in region origin (or the constraint
 * holders alone when origin is not allowed): exposed for tests and the docs' examples. */
plc_mask plc_sim_base_set(const plc_topology *t, const plc_bucket_policy *p, uint32_t origin,
                          uint32_t k);

/* ---------------------------------------------------------------- oracle */

/*
 * The hindsight optimum, exact per object (docs/placement.md, "The oracle"):
 * through[i] and after[i] for every event i, and the changes it makes at RPO
 * deadlines between events (ts order). Costs 3^a + a 2^a per step of an
 * object, a = the bucket's allowed region count, and 2 x 2^k bytes per step
 * of the object being solved (k = the topology's regions), reused from one
 * object to the next.
 */
typedef struct plc_oracle_change {
    int64_t ts_ms;
    uint32_t object;
    plc_mask through;
    plc_mask after;
} plc_oracle_change;

typedef struct plc_oracle_plan {
    plc_mask *through; /* event_count entries */
    plc_mask *after;
    plc_oracle_change *changes;
    size_t change_count;
    double total_usd; /* the optimum's cost as the DP computed it */
} plc_oracle_plan;

int plc_oracle_solve(const plc_topology *t, const plc_sim_trace *trace, plc_oracle_plan *out,
                     char *errmsg, size_t errmsg_len);
void plc_oracle_plan_free(plc_oracle_plan *plan);

/* ---------------------------------------------------------------- the replay */

/*
 * Replays trace through policy o->policy and prices it with a ledger.
 * TERN_EINVAL (errmsg says why), TERN_ENOMEM, TERN_ENOTSUP for a policy this
 * build lacks.
 */
int plc_sim_run(const plc_topology *t, const plc_sim_trace *trace, const plc_sim_options *o,
                plc_sim_result *out, char *errmsg, size_t errmsg_len);

#endif
