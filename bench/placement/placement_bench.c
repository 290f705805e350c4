/* Placement engine benchmark: plc_engine_observe events/s on one core, bytes per tracked pair. */
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "placement.h"

/*
 * What it measures (bench/placement/README.md has the method):
 *   1. Generates, in memory and from --seed, a workload of the kind `ternctl
 *      sim gen` writes: Zipf(1) popularity over --objects objects, each with a
 *      home region (skewed toward the first regions), an affinity (0.6-0.95
 *      of its reads from home) and a size from the generator's mix; 5% of the
 *      events are overwrites and 1% deletes at home, the rest GETs. An object
 *      that does not exist (never written, or deleted) is written at home on
 *      its next event, because a live node never shows the engine a GET that
 *      missed. Timestamps are spread evenly over two days of trace time.
 *      Bucket and key strings are built before timing, so the timed loop
 *      measures the engine, not snprintf.
 *   2. Times plc_engine_observe over every event on this thread, with
 *      plc_engine_tick called the way placement/sim_run.c calls it (every
 *      --tick-ms of trace time, reviewing as many objects as events arrived
 *      since the previous tick, at least TICK_OBJECTS_MIN): a live node
 *      reviews its objects at the rate they are touched.
 *   3. Times, on the same events, the work any engine must do per event: hash
 *      bucket and key (FNV-1a), find the object in an open-addressing table
 *      (comparing the key), and bump a per-(object, region) counter. The
 *      engine's time is reported as a multiple of that floor, so a slower or
 *      faster machine moves both figures together.
 *   4. Reports plc_engine_stats_get's memory_bytes per pairs_tracked against
 *      the 64-byte ceiling, and events/s against its 2,000,000 floor.
 */

#define SPAN_MS                   (2 * 24 * 3600 * 1000LL)
#define TICK_OBJECTS_MIN          64 /* the simulator's floor on a tick's review (placement/sim_run.c) */
#define OBJECTS_PER_DIR           256 /* keys share a prefix in groups, as real buckets' keys do */
#define KEY_BYTES_MAX             48
#define TARGET_EVENTS_PER_S       2000000.0
#define TARGET_BYTES_PER_PAIR_MAX 64.0
#define OVERWRITE_SHARE           0.05
#define DELETE_SHARE              0.01
#define REPEAT_MAX                15

typedef struct {
    size_t objects;
    size_t events;
    uint64_t seed;
    uint32_t regions;
    int64_t tick_ms;
    plc_algo algo;
    uint32_t repeat; /* engine and floor runs; the median is reported */
    bool json;
} bench_args;

typedef struct {
    uint32_t home;
    float affinity;
    uint64_t bytes;
} bench_object;

/* ---------------------------------------------------------------- topology */

/*
 * The six regions and list prices of bench/placement/topology.json, plus two
 * more so --regions can go to PLC_REGIONS_MAX. Egress is priced by continent
 * (README.md says where the figures come from): $0.02/GB within one, $0.05
 * between the US and Europe, $0.08 into Asia-Pacific and $0.09 out of it.
 */
typedef enum { CONTINENT_US, CONTINENT_EU, CONTINENT_AP } continent;

static const struct {
    const char *name;
    continent where;
    double storage_usd_per_gb_month;
} region_table[PLC_REGIONS_MAX] = {
    {"us-east", CONTINENT_US, 0.018},      {"us-west", CONTINENT_US, 0.020},
    {"eu-west", CONTINENT_EU, 0.020},      {"eu-central", CONTINENT_EU, 0.023},
    {"ap-northeast", CONTINENT_AP, 0.023}, {"ap-southeast", CONTINENT_AP, 0.020},
    {"us-central", CONTINENT_US, 0.020},   {"eu-north", CONTINENT_EU, 0.020},
};

static double egress_usd_per_gb(continent from, continent to)
{
    if (from == to) return 0.02;
    if (from == CONTINENT_AP) return 0.09;
    if (to == CONTINENT_AP) return 0.08;
    return 0.05;
}

static void build_topology(plc_topology *t, uint32_t regions)
{
    memset(t, 0, sizeof *t);
    t->region_count = regions;
    t->bandwidth_mb_per_s = 100;
    for (uint32_t a = 0; a < regions; a++) {
        snprintf(t->names[a], sizeof t->names[a], "%s", region_table[a].name);
        t->storage_usd_per_gb_month[a] = region_table[a].storage_usd_per_gb_month;
        for (uint32_t b = 0; b < regions; b++) {
            if (a == b) continue;
            continent ca = region_table[a].where, cb = region_table[b].where;
            t->egress_usd_per_gb[a][b] = egress_usd_per_gb(ca, cb);
            /* RTT only feeds source selection here; a coarse continent model is enough. */
            t->rtt_ms[a][b] = ca == cb ? 30 : (ca == CONTINENT_AP || cb == CONTINENT_AP) ? 170 : 80;
        }
    }
}

/* ---------------------------------------------------------------- workload */

typedef struct {
    uint64_t state;
} bench_rng;

/* splitmix64, as ternctl sim gen uses: the same seed gives the same workload everywhere. */
static uint64_t rng_next(bench_rng *r)
{
    return tern_splitmix64(&r->state);
}

static double rng_unit(bench_rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static uint64_t rng_below(bench_rng *r, uint64_t n)
{
    return n ? (uint64_t)(rng_unit(r) * (double)n) : 0;
}

/* 70% small (1-256 KiB), 25% medium (1-16 MiB), 5% large (64-256 MiB), log-uniform in each. */
static uint64_t draw_size(bench_rng *r)
{
    double u = rng_unit(r), lo, hi;
    if (u < 0.70)
        lo = 1024, hi = 256 * 1024;
    else if (u < 0.95)
        lo = 1 << 20, hi = 16 << 20;
    else
        lo = 64 << 20, hi = 256 << 20;
    return (uint64_t)exp(log(lo) + rng_unit(r) * (log(hi) - log(lo)));
}

static size_t draw_rank(bench_rng *r, const double *cdf, size_t n)
{
    double u = rng_unit(r);
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static uint32_t draw_reader(bench_rng *r, const bench_object *o, uint32_t regions)
{
    if (regions == 1 || rng_unit(r) < o->affinity) return o->home;
    uint32_t other = (uint32_t)rng_below(r, regions - 1);
    return other >= o->home ? other + 1 : other;
}

typedef struct {
    char *names; /* objects x KEY_BYTES_MAX: "dNNNN/objNNNNNNN" */
    bench_object *objects;
    plc_event *events;
} workload;

static void workload_free(workload *w)
{
    free(w->names);
    free(w->objects);
    free(w->events);
}

static int workload_build(workload *w, const bench_args *a)
{
    static const char bucket[] = "bench";
    bench_rng rng = {a->seed};
    w->names = malloc(a->objects * KEY_BYTES_MAX);
    w->objects = malloc(a->objects * sizeof *w->objects);
    w->events = malloc(a->events * sizeof *w->events);
    double *cdf = malloc(a->objects * sizeof *cdf);
    uint32_t *object_of_rank = calloc(a->objects, sizeof *object_of_rank);
    uint8_t *live = calloc(a->objects, 1);
    int rc = TERN_ENOMEM;
    if (!w->names || !w->objects || !w->events || !cdf || !object_of_rank || !live) goto out;
    double sum = 0;
    for (size_t i = 0; i < a->objects; i++) {
        cdf[i] = (sum += 1.0 / (double)(i + 1));
        snprintf(w->names + i * KEY_BYTES_MAX, KEY_BYTES_MAX, "d%04zu/obj%07zu",
                 i / OBJECTS_PER_DIR, i);
        uint32_t home = (uint32_t)(a->regions * pow(rng_unit(&rng), 1.5));
        w->objects[i] = (bench_object){.home = TERN_MIN(home, a->regions - 1),
                                       .affinity = (float)(0.6 + 0.35 * rng_unit(&rng)),
                                       .bytes = draw_size(&rng)};
        object_of_rank[i] = (uint32_t)i;
    }
    /* Popularity is shuffled over objects so hot keys are spread over prefixes, not all in d0000.
     */
    for (size_t i = a->objects - 1; i > 0; i--) {
        size_t j = rng_below(&rng, i + 1);
        uint32_t tmp = object_of_rank[i];
        object_of_rank[i] = object_of_rank[j];
        object_of_rank[j] = tmp;
    }
    for (size_t i = 0; i < a->objects; i++)
        cdf[i] /= sum;
    for (size_t i = 0; i < a->events; i++) {
        uint32_t obj = object_of_rank[draw_rank(&rng, cdf, a->objects)];
        const bench_object *o = &w->objects[obj];
        double u = rng_unit(&rng);
        plc_event *ev = &w->events[i];
        *ev = (plc_event){.ts_ms = (int64_t)((double)SPAN_MS * (double)i / (double)a->events),
                          .region = o->home,
                          .op = PLC_PUT,
                          .bucket = bucket,
                          .key = w->names + (size_t)obj * KEY_BYTES_MAX,
                          .bytes = o->bytes};
        if (!live[obj] || u < OVERWRITE_SHARE) {
            live[obj] = 1;
        } else if (u < OVERWRITE_SHARE + DELETE_SHARE) {
            ev->op = PLC_DELETE;
            ev->bytes = 0;
            live[obj] = 0;
        } else {
            ev->op = PLC_GET;
            ev->region = draw_reader(&rng, o, a->regions);
        }
    }
    rc = 0;
out:
    free(cdf);
    free(object_of_rank);
    free(live);
    return rc;
}

/* ---------------------------------------------------------------- the engine run */

typedef struct {
    double seconds;
    double seconds_second_half; /* steady state: the engine already tracks the hot set */
    double tick_seconds;
    uint64_t ticks;
    uint64_t tick_objects_visited;
    uint64_t tick_changes;
    uint64_t remote_gets;
    plc_engine_stats stats;
} engine_result;

static void count_change(void *ctx, const char *bucket, const char *key, plc_mask before,
                         plc_mask after)
{
    (void)bucket, (void)key, (void)before, (void)after;
    (*(uint64_t *)ctx)++;
}

static int run_engine(const bench_args *a, const workload *w, engine_result *r)
{
    plc_topology t;
    build_topology(&t, a->regions);
    plc_config config = {.algo = a->algo, .seed = a->seed};
    plc_engine *e = NULL;
    char errmsg[256] = "";
    int rc = plc_engine_new(&t, &config, &e, errmsg, sizeof errmsg);
    if (rc != 0) {
        fprintf(stderr, "placement_bench: plc_engine_new: %s: %s\n", tern_strerror(rc), errmsg);
        return rc;
    }
    plc_bucket_policy policy = {.min_regions = TERN_MIN(2u, a->regions)};
    if ((rc = plc_engine_set_policy(e, "*", &policy)) != 0) goto out;
    memset(r, 0, sizeof *r);
    int64_t next_tick = w->events[0].ts_ms + a->tick_ms;
    size_t since_tick = 0, half = a->events / 2;
    uint64_t start_ns = tern_mono_ns(), half_ns = start_ns;
    for (size_t i = 0; i < a->events; i++) {
        const plc_event *ev = &w->events[i];
        if (i == half) half_ns = tern_mono_ns();
        if (ev->ts_ms >= next_tick) {
            uint64_t tick_ns = tern_mono_ns();
            r->tick_objects_visited +=
                plc_engine_tick(e, ev->ts_ms, TERN_MAX(since_tick, (size_t)TICK_OBJECTS_MIN),
                                count_change, &r->tick_changes);
            r->tick_seconds += (double)(tern_mono_ns() - tick_ns) / 1e9;
            r->ticks++;
            next_tick = ev->ts_ms + a->tick_ms;
            since_tick = 0;
        }
        plc_decision d;
        if ((rc = plc_engine_observe(e, ev, &d)) != 0) {
            fprintf(stderr, "placement_bench: event %zu: %s\n", i, tern_strerror(rc));
            goto out;
        }
        since_tick++;
        r->remote_gets += d.remote;
    }
    uint64_t end_ns = tern_mono_ns();
    r->seconds = (double)(end_ns - start_ns) / 1e9;
    r->seconds_second_half = (double)(end_ns - half_ns) / 1e9;
    plc_engine_stats_get(e, &r->stats);
out:
    plc_engine_free(e);
    return rc;
}

/* ---------------------------------------------------------------- the reference floor */

static uint64_t fnv1a(const char *bucket, const char *key)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = bucket;; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
        if (*p == '\0') break;
    }
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

/*
 * Hash, find and touch: what a per-object estimator cannot avoid. The table
 * is built before timing (an engine also inserts, but that is per object, not
 * per event), holds the key pointer and hash like any chained or open table,
 * and the per-pair counter stands for the engine's per-pair state.
 */
static int run_reference(const bench_args *a, const workload *w, double *seconds, uint64_t *sink)
{
    size_t cap = 16;
    while (cap < 2 * a->objects)
        cap *= 2;
    struct slot {
        uint64_t hash;
        const char *key; /* NULL: empty */
        uint32_t object;
    } *slots = calloc(cap, sizeof *slots);
    uint32_t *counts = calloc(a->objects * a->regions, sizeof *counts);
    if (slots == NULL || counts == NULL) {
        free(slots);
        free(counts);
        return TERN_ENOMEM;
    }
    for (size_t i = 0; i < a->objects; i++) {
        const char *key = w->names + i * KEY_BYTES_MAX;
        uint64_t h = fnv1a("bench", key);
        size_t s = h & (cap - 1);
        while (slots[s].key != NULL)
            s = (s + 1) & (cap - 1);
        slots[s] = (struct slot){h, key, (uint32_t)i};
    }
    uint64_t start_ns = tern_mono_ns(), found = 0;
    for (size_t i = 0; i < a->events; i++) {
        const plc_event *ev = &w->events[i];
        uint64_t h = fnv1a(ev->bucket, ev->key);
        size_t s = h & (cap - 1);
        while (slots[s].key != NULL && (slots[s].hash != h || strcmp(slots[s].key, ev->key) != 0))
            s = (s + 1) & (cap - 1);
        if (slots[s].key == NULL) continue;
        found += ++counts[(size_t)slots[s].object * a->regions + ev->region];
    }
    *seconds = (double)(tern_mono_ns() - start_ns) / 1e9;
    *sink = found; /* printed, so the compiler cannot drop the loop */
    free(slots);
    free(counts);
    return 0;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: placement_bench [--objects N] [--events N] [--seed N] [--regions 1-%d]\n"
            "                       [--tick-ms MS] [--algo thompson|ucb|epsilon] [--repeat 1-%d]\n"
            "                       [--json]\n"
            "defaults: 200000 objects, 4000000 events, seed 1, 6 regions, ticks every 60000 ms\n"
            "of trace time (as ternctl sim), Thompson sampling, median of 3 runs\n",
            PLC_REGIONS_MAX, REPEAT_MAX);
}

static bool parse_count(const char *text, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    if (text[0] == '\0' || text[0] == '-') return false;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_algo(const char *text, plc_algo *out)
{
    static const struct {
        const char *name;
        plc_algo algo;
    } algos[] = {
        {"thompson", PLC_ALGO_THOMPSON}, {"ucb", PLC_ALGO_UCB}, {"epsilon", PLC_ALGO_EPSILON}};
    for (size_t i = 0; i < TERN_ARRAY_LEN(algos); i++)
        if (strcmp(text, algos[i].name) == 0) {
            *out = algos[i].algo;
            return true;
        }
    return false;
}

/* 0: run; 1: --help was printed; 2: a usage error was printed. */
static int parse_args(int argc, char **argv, bench_args *a)
{
    enum {
        OPT_OBJECTS = 256,
        OPT_EVENTS,
        OPT_SEED,
        OPT_REGIONS,
        OPT_TICK,
        OPT_ALGO,
        OPT_REPEAT,
        OPT_JSON
    };
    static const struct option longopts[] = {
        {"objects", required_argument, NULL, OPT_OBJECTS},
        {"events", required_argument, NULL, OPT_EVENTS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"regions", required_argument, NULL, OPT_REGIONS},
        {"tick-ms", required_argument, NULL, OPT_TICK},
        {"algo", required_argument, NULL, OPT_ALGO},
        {"repeat", required_argument, NULL, OPT_REPEAT},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *a = (bench_args){.objects = 200000,
                      .events = 4000000,
                      .seed = 1,
                      .regions = 6,
                      .tick_ms = 60000,
                      .algo = PLC_ALGO_THOMPSON,
                      .repeat = 3};
    int opt, index = 0;
    while ((opt = getopt_long(argc, argv, "h", longopts, &index)) != -1) {
        uint64_t v = 0;
        bool ok = true;
        switch (opt) {
        case OPT_OBJECTS: /* keys are "obj%07zu" and the reference table indexes by uint32 */
            if ((ok = parse_count(optarg, 1, 9999999, &v))) a->objects = v;
            break;
        case OPT_EVENTS:
            if ((ok = parse_count(optarg, 1, 1000000000, &v))) a->events = v;
            break;
        case OPT_SEED:
            if ((ok = parse_count(optarg, 0, UINT64_MAX, &v))) a->seed = v;
            break;
        case OPT_REGIONS:
            if ((ok = parse_count(optarg, 1, PLC_REGIONS_MAX, &v))) a->regions = (uint32_t)v;
            break;
        case OPT_TICK:
            if ((ok = parse_count(optarg, 1, SPAN_MS, &v))) a->tick_ms = (int64_t)v;
            break;
        case OPT_REPEAT:
            if ((ok = parse_count(optarg, 1, REPEAT_MAX, &v))) a->repeat = (uint32_t)v;
            break;
        case OPT_ALGO:
            ok = parse_algo(optarg, &a->algo);
            break;
        case OPT_JSON:
            a->json = true;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "placement_bench: invalid value '%s' for --%s\n", optarg,
                    longopts[index].name);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "placement_bench: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

static const char *algo_name(plc_algo algo)
{
    return algo == PLC_ALGO_UCB ? "ucb" : algo == PLC_ALGO_EPSILON ? "epsilon" : "thompson";
}

/* The median of the repeats, and the spread around it: one run on a shared VM can be 10% off. */
typedef struct {
    engine_result engine; /* the run with the median time */
    double events_per_s, events_per_s_min, events_per_s_max;
    double reference_seconds; /* median */
    uint64_t sink;
} bench_summary;

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static void report_json(const bench_args *a, const bench_summary *m)
{
    const engine_result *r = &m->engine;
    double pairs = (double)r->stats.pairs_tracked;
    printf("{\"objects\":%zu,\"events\":%zu,\"seed\":%llu,\"regions\":%u,\"tick_ms\":%lld,"
           "\"algo\":\"%s\",\"repeat\":%u,\"engine_seconds\":%.6f,\"events_per_s\":%.1f,"
           "\"events_per_s_min\":%.1f,\"events_per_s_max\":%.1f,"
           "\"events_per_s_second_half\":%.1f,\"ns_per_event\":%.2f,\"tick_seconds\":%.6f,"
           "\"ticks\":%llu,\"tick_objects_visited\":%llu,\"tick_changes\":%llu,"
           "\"reference_seconds\":%.6f,\"reference_events_per_s\":%.1f,"
           "\"engine_over_reference\":%.3f,\"events_per_s_over_target\":%.4f,"
           "\"target_events_per_s\":%.0f,\"memory_bytes\":%zu,\"objects_tracked\":%zu,"
           "\"pairs_tracked\":%zu,\"bytes_per_pair\":%.2f,\"bytes_per_object\":%.2f,"
           "\"target_bytes_per_pair_max\":%.0f,\"replicas_added\":%llu,\"replicas_dropped\":%llu,"
           "\"remote_gets\":%llu,\"reference_sink\":%llu}\n",
           a->objects, a->events, (unsigned long long)a->seed, a->regions, (long long)a->tick_ms,
           algo_name(a->algo), a->repeat, r->seconds, m->events_per_s, m->events_per_s_min,
           m->events_per_s_max, (double)(a->events - a->events / 2) / r->seconds_second_half,
           r->seconds * 1e9 / (double)a->events, r->tick_seconds, (unsigned long long)r->ticks,
           (unsigned long long)r->tick_objects_visited, (unsigned long long)r->tick_changes,
           m->reference_seconds, (double)a->events / m->reference_seconds,
           r->seconds / m->reference_seconds, m->events_per_s / TARGET_EVENTS_PER_S,
           TARGET_EVENTS_PER_S, r->stats.memory_bytes, r->stats.objects_tracked,
           r->stats.pairs_tracked, pairs > 0 ? (double)r->stats.memory_bytes / pairs : 0,
           r->stats.objects_tracked
               ? (double)r->stats.memory_bytes / (double)r->stats.objects_tracked
               : 0,
           TARGET_BYTES_PER_PAIR_MAX, (unsigned long long)r->stats.replicas_added,
           (unsigned long long)r->stats.replicas_dropped, (unsigned long long)r->remote_gets,
           (unsigned long long)m->sink);
}

static void report_text(const bench_args *a, const bench_summary *m)
{
    const engine_result *r = &m->engine;
    double pairs = (double)r->stats.pairs_tracked;
    double bytes_per_pair = pairs > 0 ? (double)r->stats.memory_bytes / pairs : 0;
    printf("workload           %zu objects, %zu events, %u regions, seed %llu, %s, ticks every "
           "%lld ms of trace time\n",
           a->objects, a->events, a->regions, (unsigned long long)a->seed, algo_name(a->algo),
           (long long)a->tick_ms);
    printf("engine             %.0f events/s, median of %u (%.0f to %.0f); %.1f ns/event, "
           "second half %.0f events/s\n",
           m->events_per_s, a->repeat, m->events_per_s_min, m->events_per_s_max,
           r->seconds * 1e9 / (double)a->events,
           (double)(a->events - a->events / 2) / r->seconds_second_half);
    printf("  of which ticks   %.3f s of %.3f s in %llu ticks, %llu objects reviewed, %llu "
           "changes\n",
           r->tick_seconds, r->seconds, (unsigned long long)r->ticks,
           (unsigned long long)r->tick_objects_visited, (unsigned long long)r->tick_changes);
    printf("reference floor    %.0f events/s, median of %u (hash + lookup + counter)\n",
           (double)a->events / m->reference_seconds, a->repeat);
    printf("engine / floor     %.2fx the time\n", r->seconds / m->reference_seconds);
    printf("vs target          %.3fx of %.0f events/s: %s\n", m->events_per_s / TARGET_EVENTS_PER_S,
           TARGET_EVENTS_PER_S, m->events_per_s >= TARGET_EVENTS_PER_S ? "PASS" : "MISS");
    printf("memory             %zu bytes, %zu objects, %zu (object, region) pairs tracked\n",
           r->stats.memory_bytes, r->stats.objects_tracked, r->stats.pairs_tracked);
    printf("bytes per pair     %.2f (%.2f per object), ceiling %.0f: %s\n", bytes_per_pair,
           r->stats.objects_tracked
               ? (double)r->stats.memory_bytes / (double)r->stats.objects_tracked
               : 0,
           TARGET_BYTES_PER_PAIR_MAX,
           pairs > 0 && bytes_per_pair <= TARGET_BYTES_PER_PAIR_MAX ? "PASS" : "MISS");
    printf("decisions          %llu replicas added, %llu dropped, %llu remote GETs\n",
           (unsigned long long)r->stats.replicas_added,
           (unsigned long long)r->stats.replicas_dropped, (unsigned long long)r->remote_gets);
}

/* Engine and floor alternate, so a machine that slows down mid-run slows both alike. */
static int run_all(const bench_args *a, const workload *w, bench_summary *m)
{
    engine_result runs[REPEAT_MAX];
    double engine_seconds[REPEAT_MAX], reference_seconds[REPEAT_MAX];
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < a->repeat; i++) {
        rc = run_engine(a, w, &runs[i]);
        if (rc == 0) rc = run_reference(a, w, &reference_seconds[i], &m->sink);
        engine_seconds[i] = runs[i].seconds;
    }
    if (rc != 0) return rc;
    double sorted[REPEAT_MAX];
    memcpy(sorted, engine_seconds, a->repeat * sizeof *sorted);
    qsort(sorted, a->repeat, sizeof *sorted, cmp_double);
    double median = sorted[a->repeat / 2];
    for (uint32_t i = 0; i < a->repeat; i++)
        if (engine_seconds[i] == median) m->engine = runs[i];
    m->events_per_s = (double)a->events / median;
    m->events_per_s_min = (double)a->events / sorted[a->repeat - 1];
    m->events_per_s_max = (double)a->events / sorted[0];
    qsort(reference_seconds, a->repeat, sizeof *reference_seconds, cmp_double);
    m->reference_seconds = reference_seconds[a->repeat / 2];
    return 0;
}

int main(int argc, char **argv)
{
    bench_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc != 0) return rc == 1 ? 0 : rc;
    workload w = {0};
    if (workload_build(&w, &a) != 0) {
        fprintf(stderr, "placement_bench: out of memory for %zu objects and %zu events\n",
                a.objects, a.events);
        workload_free(&w);
        return 1;
    }
    bench_summary m = {0};
    rc = run_all(&a, &w, &m);
    if (rc == TERN_ENOMEM) fprintf(stderr, "placement_bench: out of memory\n");
    if (rc == 0 && a.json) report_json(&a, &m);
    if (rc == 0 && !a.json) report_text(&a, &m);
    workload_free(&w);
    return rc == 0 ? 0 : 1;
}
