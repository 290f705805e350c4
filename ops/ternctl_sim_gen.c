/* ternctl sim gen and convert-wc98: synthetic geo workloads and the 1998 World Cup logs as traces.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "ternctl_sim.h"

/*
 * The generator (docs/placement.md, "Synthetic workloads"). Every object has a
 * Zipf(1) popularity rank, a home region (where it is written, and most of its
 * reads come from), an affinity (the share of reads from home, 0.6-0.95, the
 * rest spread over the other regions) and a size drawn from a mix: 70% small
 * (1-256 KiB), 25% medium (1-16 MiB), 5% large (64-256 MiB), log-uniform in
 * each class. Event times are uniform over a two-day span; each object is
 * PUT at its home at a uniform time in the first 2% of the span, so the reads
 * that precede it are misses only for the few objects written late. The
 * scenarios change one thing each:
 *   stable-skew     the above, 5% of events are overwrites;
 *   follow-the-sun  a region's read rate follows its local daytime (regions
 *                   are spread evenly around the clock), so readers shift;
 *   flash-crowd     20% of the events are bursts: a random object read from
 *                   one random region 200 times within ten minutes;
 *   drift           popularity ranks rotate over the span and each object's
 *                   home moves to another region halfway through;
 *   write-heavy     30% of the draws are overwrite bursts (one object rewritten
 *                   5-20 times, so about 85% of the lines are PUTs),
 *                   1% deletes (the next event of a deleted object is a PUT).
 * The RNG is splitmix64 seeded by --seed: the same arguments give the same
 * bytes on every platform.
 */

#define GEN_REGIONS_DEFAULT "us-east,us-west,eu-west,ap-northeast"
#define GEN_SPAN_MS         (2 * 24 * 3600 * 1000LL)
#define DAY_MS              (24 * 3600 * 1000LL)
#define FLASH_READS         200
#define FLASH_SPAN_MS       (10 * 60 * 1000LL)

typedef enum {
    SC_STABLE_SKEW,
    SC_FOLLOW_THE_SUN,
    SC_FLASH_CROWD,
    SC_DRIFT,
    SC_WRITE_HEAVY,
    SC_COUNT
} scenario;

static const char *const scenario_names[SC_COUNT] = {"stable-skew", "follow-the-sun", "flash-crowd",
                                                     "drift", "write-heavy"};

typedef struct {
    uint64_t state;
} gen_rng;

static uint64_t rng_next(gen_rng *r)
{
    return tern_splitmix64(&r->state);
}

/* Uniform in [0, 1). */
static double rng_unit(gen_rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static uint64_t rng_below(gen_rng *r, uint64_t n)
{
    return n ? (uint64_t)(rng_unit(r) * (double)n) : 0;
}

typedef struct {
    int64_t ts_ms;
    uint32_t object;
    uint32_t region;
    plc_op op;
    uint64_t seq; /* keeps generation order among equal times: the sort is then total */
} gen_event;

typedef struct {
    uint32_t home, late_home; /* late_home: drift's home after the halfway point */
    double affinity;
    uint64_t bytes;
    int64_t put_ms;
} gen_object;

typedef struct {
    uint64_t seed;
    const char *regions;
    size_t objects;
    size_t events;
    scenario sc;
    const char *out;
} gen_args;

static int compare_event(const void *a, const void *b)
{
    const gen_event *x = a, *y = b;
    if (x->ts_ms != y->ts_ms) return x->ts_ms < y->ts_ms ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static uint64_t draw_size(gen_rng *r)
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

/* The reading region of an object at time ts under the scenario. */
static uint32_t draw_reader(gen_rng *r, const gen_object *obj, scenario sc, int64_t ts, uint32_t k)
{
    uint32_t home = sc == SC_DRIFT && ts >= GEN_SPAN_MS / 2 ? obj->late_home : obj->home;
    double w[PLC_REGIONS_MAX], sum = 0;
    for (uint32_t i = 0; i < k; i++) {
        w[i] = i == home ? obj->affinity : (1 - obj->affinity) / (k > 1 ? k - 1 : 1);
        if (sc == SC_FOLLOW_THE_SUN) {
            /* Region i's day peaks at i/k of the way around the clock. */
            double phase = 2 * M_PI * ((double)(ts % DAY_MS) / DAY_MS - (double)i / k);
            w[i] *= 1.0 + 0.95 * cos(phase);
        }
        sum += w[i];
    }
    double u = rng_unit(r) * sum;
    for (uint32_t i = 0; i < k; i++) {
        if (u < w[i]) return i;
        u -= w[i];
    }
    return k - 1;
}

/* Zipf(1) over n ranks by inverse CDF on a precomputed table. */
static size_t draw_rank(gen_rng *r, const double *cdf, size_t n)
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

static int gen_parse(ops__options *o, int argc, char **argv, gen_args *a)
{
    enum { OPT_SEED = 256, OPT_REGIONS, OPT_OBJECTS, OPT_EVENTS, OPT_SCENARIO, OPT_OUT };
    static const struct option longopts[] = {
        {"seed", required_argument, NULL, OPT_SEED},
        {"regions", required_argument, NULL, OPT_REGIONS},
        {"objects", required_argument, NULL, OPT_OBJECTS},
        {"events", required_argument, NULL, OPT_EVENTS},
        {"scenario", required_argument, NULL, OPT_SCENARIO},
        {"out", required_argument, NULL, OPT_OUT},
        {NULL, 0, NULL, 0},
    };
    *a = (gen_args){.seed = 1, .regions = GEN_REGIONS_DEFAULT, .objects = 1000, .events = 100000};
    optind = 0;
    opterr = 0;
    int opt;
    char *end;
    int longindex = 0;
    while ((opt = getopt_long(argc, argv, ":", longopts, &longindex)) != -1) {
        unsigned long long v = 0;
        if (opt == OPT_SEED || opt == OPT_OBJECTS || opt == OPT_EVENTS) {
            v = strtoull(optarg, &end, 10);
            /* Named from the table: argv[optind - 1] is the value when it came separately. */
            if (optarg[0] == '\0' || optarg[0] == '-' || *end != '\0' ||
                (opt != OPT_SEED && (v == 0 || v > 100000000ull)))
                return ops__usage_error(o, "sim gen: invalid value '%s' for --%s", optarg,
                                        longopts[longindex].name);
        }
        switch (opt) {
        case OPT_SEED:
            a->seed = v;
            break;
        case OPT_OBJECTS:
            a->objects = v;
            break;
        case OPT_EVENTS:
            a->events = v;
            break;
        case OPT_REGIONS:
            a->regions = optarg;
            break;
        case OPT_OUT:
            a->out = optarg;
            break;
        case OPT_SCENARIO: {
            int i = 0;
            while (i < SC_COUNT && strcmp(scenario_names[i], optarg) != 0)
                i++;
            if (i == SC_COUNT) return ops__usage_error(o, "sim gen: unknown scenario '%s'", optarg);
            a->sc = (scenario)i;
            break;
        }
        case ':':
            return ops__usage_error(o, "option '%s' requires an argument", argv[optind - 1]);
        default:
            return ops__usage_error(o, "sim gen: unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return ops__usage_error(o, "sim gen: unexpected argument '%s'", argv[optind]);
    return EXIT_OK;
}

/* Splits "a,b,c" into at most PLC_REGIONS_MAX names; returns the count or 0 if malformed. */
static uint32_t split_regions(const char *list, char names[PLC_REGIONS_MAX][PLC_REGION_NAME_MAX])
{
    uint32_t k = 0;
    for (const char *p = list;;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= PLC_REGION_NAME_MAX || k == PLC_REGIONS_MAX) return 0;
        memcpy(names[k], p, len);
        names[k++][len] = '\0';
        if (p[len] == '\0') break;
        p += len + 1;
    }
    return k;
}

static int write_events(FILE *f, const gen_event *ev, size_t n, const gen_object *objs,
                        char names[PLC_REGIONS_MAX][PLC_REGION_NAME_MAX])
{
    static const char *const ops[] = {
        [PLC_GET] = "GET", [PLC_PUT] = "PUT", [PLC_DELETE] = "DELETE"};
    fputs("ts_ms,region,op,bucket,key,bytes\n", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%lld,%s,%s,gen,obj%06u,%llu\n", (long long)ev[i].ts_ms, names[ev[i].region],
                ops[ev[i].op], ev[i].object,
                (unsigned long long)(ev[i].op == PLC_DELETE ? 0 : objs[ev[i].object].bytes));
    return ferror(f) ? TERN_EIO : 0;
}

/* Fills ev with the scenario's raw events (not yet sorted); returns how many. */
static size_t generate(gen_rng *rng, const gen_args *a, uint32_t k, gen_object *objs,
                       const double *cdf, gen_event *ev, size_t cap)
{
    size_t n = 0;
    uint64_t seq = 0;
    for (size_t i = 0; i < a->objects && n < cap; i++)
        ev[n++] = (gen_event){objs[i].put_ms, (uint32_t)i, objs[i].home, PLC_PUT, seq++};
    double writes = a->sc == SC_WRITE_HEAVY ? 0.30 : 0.05;
    while (n < cap) {
        int64_t ts = (int64_t)rng_below(rng, GEN_SPAN_MS);
        size_t rank = draw_rank(rng, cdf, a->objects);
        if (a->sc == SC_DRIFT) /* ranks rotate through the whole set over the span */
            rank = (rank + (size_t)((double)a->objects * (double)ts / GEN_SPAN_MS)) % a->objects;
        uint32_t obj = (uint32_t)rank; /* objects are created in random rank order below */
        double u = rng_unit(rng);
        if (a->sc == SC_FLASH_CROWD && u < 0.25 / FLASH_READS) {
            uint32_t region = (uint32_t)rng_below(rng, k);
            obj = (uint32_t)rng_below(rng, a->objects);
            for (int j = 0; j < FLASH_READS && n < cap; j++)
                ev[n++] = (gen_event){ts + (int64_t)rng_below(rng, FLASH_SPAN_MS), obj, region,
                                      PLC_GET, seq++};
            continue;
        }
        if (u < writes) {
            uint32_t home =
                a->sc == SC_DRIFT && ts >= GEN_SPAN_MS / 2 ? objs[obj].late_home : objs[obj].home;
            int burst = a->sc == SC_WRITE_HEAVY ? 5 + (int)rng_below(rng, 16) : 1;
            for (int j = 0; j < burst && n < cap; j++)
                ev[n++] = (gen_event){ts + j * 1000, obj, home, PLC_PUT, seq++};
            if (a->sc == SC_WRITE_HEAVY && rng_unit(rng) < 0.03 && n < cap)
                ev[n++] = (gen_event){ts + burst * 1000, obj, home, PLC_DELETE, seq++};
            continue;
        }
        ev[n++] = (gen_event){ts, obj, draw_reader(rng, &objs[obj], a->sc, ts, k), PLC_GET, seq++};
    }
    return n;
}

/* After sorting: a deleted object's next event becomes a PUT at its home, so traces never
 * read an object they deleted for long. */
static void fix_deletes(gen_event *ev, size_t n, const gen_object *objs, size_t objects)
{
    uint8_t *deleted = calloc(objects, 1);
    if (deleted == NULL) return; /* best effort: the trace stays valid, with misses */
    for (size_t i = 0; i < n; i++) {
        uint32_t obj = ev[i].object;
        if (ev[i].op == PLC_DELETE) {
            deleted[obj] = 1;
        } else if (deleted[obj]) {
            ev[i].op = PLC_PUT;
            ev[i].region = objs[obj].home;
            deleted[obj] = 0;
        } else if (ev[i].op == PLC_PUT) {
            deleted[obj] = 0;
        }
    }
    free(deleted);
}

int ops__sim_gen(ops__options *o, int argc, char **argv)
{
    gen_args a;
    int rc = gen_parse(o, argc, argv, &a);
    if (rc != EXIT_OK) return rc;
    char names[PLC_REGIONS_MAX][PLC_REGION_NAME_MAX];
    uint32_t k = split_regions(a.regions, names);
    if (k == 0)
        return ops__usage_error(o,
                                "sim gen: invalid --regions '%s': 1 to %d comma-separated "
                                "names of at most %d characters",
                                a.regions, PLC_REGIONS_MAX, PLC_REGION_NAME_MAX - 1);
    gen_rng rng = {a.seed};
    gen_object *objs = calloc(a.objects, sizeof *objs);
    double *cdf = malloc(a.objects * sizeof *cdf);
    size_t cap = a.events + a.objects;
    gen_event *ev = malloc(cap * sizeof *ev);
    FILE *f = NULL;
    rc = EXIT_FAILED;
    if (objs == NULL || cdf == NULL || ev == NULL) {
        fprintf(o->err, "ternctl: sim gen: out of memory\n");
        goto out;
    }
    double sum = 0;
    for (size_t i = 0; i < a.objects; i++)
        cdf[i] = (sum += 1.0 / (double)(i + 1));
    for (size_t i = 0; i < a.objects; i++) {
        cdf[i] /= sum;
        /* Homes skewed toward the first regions, as deployments have a main region. */
        uint32_t home = (uint32_t)(k * pow(rng_unit(&rng), 1.5));
        objs[i] = (gen_object){.home = home < k ? home : k - 1,
                               .affinity = 0.6 + 0.35 * rng_unit(&rng),
                               .bytes = draw_size(&rng),
                               .put_ms = (int64_t)rng_below(&rng, GEN_SPAN_MS / 50)};
        objs[i].late_home = k > 1 ? (objs[i].home + 1 + (uint32_t)rng_below(&rng, k - 1)) % k : 0;
    }
    size_t n = generate(&rng, &a, k, objs, cdf, ev, cap);
    qsort(ev, n, sizeof *ev, compare_event);
    fix_deletes(ev, n, objs, a.objects);
    f = a.out ? fopen(a.out, "w") : o->out;
    if (f == NULL) {
        fprintf(o->err, "ternctl: sim gen: cannot write %s: %s\n", a.out, strerror(errno));
        goto out;
    }
    if (write_events(f, ev, n, objs, names) != 0 || (a.out && fclose(f) != 0)) {
        fprintf(o->err, "ternctl: sim gen: write error\n");
        f = NULL;
        goto out;
    }
    f = NULL;
    rc = EXIT_OK;
out:
    if (f != NULL && a.out) fclose(f);
    free(objs);
    free(cdf);
    free(ev);
    return rc;
}

/* ---------------------------------------------------------------- WC98 */

/*
 * The 1998 World Cup logs (ita.ee.lbl.gov/html/contrib/WorldCup.html) are
 * 20-byte big-endian records {timestamp, clientID, objectID, size (u32 each),
 * method, status, type, server (u8 each)}; server >> 5 is the site: 0 Santa
 * Clara, 1 Plano, 2 Herndon, 3 Paris. Every GET (method 0) with a non-zero
 * size becomes a trace GET of bucket "wc98", key the object id, from the
 * site's region; an object's first request is preceded by a PUT of it in the
 * same region at the same time, since the logs record no uploads and the
 * simulator needs each object written once before it is read.
 */

#define WC98_RECORD_BYTES 20
#define WC98_SLACK_MS     (60 * 1000ull)
static const char *const wc98_regions[] = {"santa-clara", "plano", "herndon", "paris"};

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int ops__sim_convert_wc98(ops__options *o, int argc, char **argv)
{
    static const struct option longopts[] = {{"out", required_argument, NULL, 'O'},
                                             {NULL, 0, NULL, 0}};
    const char *out_path = NULL;
    optind = 0;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        if (opt == 'O')
            out_path = optarg;
        else if (opt == ':')
            return ops__usage_error(o, "option '%s' requires an argument", argv[optind - 1]);
        else
            return ops__usage_error(o, "sim convert-wc98: unknown option '%s'", argv[optind - 1]);
    }
    if (optind >= argc) return ops__usage_error(o, "sim convert-wc98: no input FILE given");
    FILE *out = out_path ? fopen(out_path, "w") : o->out;
    if (out == NULL) {
        fprintf(o->err, "ternctl: sim convert-wc98: cannot write %s: %s\n", out_path,
                strerror(errno));
        return EXIT_FAILED;
    }
    /* Object ids are dense in the logs (under 100,000), so a bitmap of the ids seen, grown
     * to the largest id, is small. */
    size_t seen_bits = 1u << 20;
    uint8_t *seen = calloc(seen_bits / 8, 1);
    int rc = seen ? EXIT_OK : EXIT_FAILED;
    unsigned long long last_ts = 0;
    bool any = false;
    fputs("ts_ms,region,op,bucket,key,bytes\n", out);
    for (int i = optind; rc == EXIT_OK && i < argc; i++) {
        FILE *in = fopen(argv[i], "rb");
        if (in == NULL) {
            fprintf(o->err, "ternctl: %s: %s\n", argv[i], strerror(errno));
            rc = EXIT_FAILED;
            break;
        }
        unsigned char rec[WC98_RECORD_BYTES];
        size_t got, index = 0;
        bool first_of_file = true;
        while ((got = fread(rec, 1, sizeof rec, in)) == sizeof rec) {
            index++;
            uint32_t ts = be32(rec), object = be32(rec + 8), size = be32(rec + 12);
            unsigned method = rec[16], site = rec[19] >> 5;
            if (site >= TERN_ARRAY_LEN(wc98_regions)) {
                fprintf(o->err, "ternctl: %s: record %zu: field server: site %u is not 0-3\n",
                        argv[i], index, site);
                rc = EXIT_FAILED;
                break;
            }
            unsigned long long ts_ms = (unsigned long long)ts * 1000;
            /* Files must come in time order (a shell glob puts wc_day10_1 before wc_day1_1):
             * a file that starts more than a minute before the last record is refused, not
             * clamped into a burst at one instant. */
            if (first_of_file && any && ts_ms + WC98_SLACK_MS < last_ts) {
                fprintf(o->err,
                        "ternctl: %s: record 1: field timestamp: %u is before the previous "
                        "file's last record (%llu): give the files in time order (sort -V)\n",
                        argv[i], ts, last_ts / 1000);
                rc = EXIT_FAILED;
                break;
            }
            first_of_file = false;
            if (method != 0 || size == 0) continue;
            /* Records are in time order within a file; clamp a stray earlier second so the
             * trace stays sorted. */
            if (ts_ms < last_ts) ts_ms = last_ts;
            last_ts = ts_ms;
            any = true;
            if (object >= seen_bits) {
                size_t bits = seen_bits;
                while (bits <= object)
                    bits *= 2;
                uint8_t *grown = realloc(seen, bits / 8);
                if (grown == NULL) {
                    fprintf(o->err, "ternctl: sim convert-wc98: out of memory\n");
                    rc = EXIT_FAILED;
                    break;
                }
                memset(grown + seen_bits / 8, 0, (bits - seen_bits) / 8);
                seen = grown;
                seen_bits = bits;
            }
            if (!(seen[object / 8] & (1u << (object % 8)))) {
                seen[object / 8] |= (uint8_t)(1u << (object % 8));
                fprintf(out, "%llu,%s,PUT,wc98,%u,%u\n", ts_ms, wc98_regions[site], object, size);
            }
            fprintf(out, "%llu,%s,GET,wc98,%u,%u\n", ts_ms, wc98_regions[site], object, size);
        }
        if (rc == EXIT_OK && got != 0) {
            fprintf(o->err, "ternctl: %s: a truncated record at the end (%zu of %d bytes)\n",
                    argv[i], got, WC98_RECORD_BYTES);
            rc = EXIT_FAILED;
        }
        fclose(in);
    }
    if (seen == NULL) fprintf(o->err, "ternctl: sim convert-wc98: out of memory\n");
    free(seen);
    if (out_path != NULL && fclose(out) != 0 && rc == EXIT_OK) {
        fprintf(o->err, "ternctl: sim convert-wc98: cannot write %s\n", out_path);
        rc = EXIT_FAILED;
    }
    /* A half-converted trace looks like a whole one: do not leave it behind. */
    if (rc != EXIT_OK && out_path != NULL) unlink(out_path);
    return rc;
}
