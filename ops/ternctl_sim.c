/* ternctl sim: replays a trace through a placement policy (or all of them) and reports its cost. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "ternctl_sim.h"

#define WHY_BYTES_MAX 600
#define SAMPLES_MAX   4096

const char ops__sim_usage[] =
    "  sim --topology T.json --trace TRACE.csv [--policy NAME] [--seed N]\n"
    "                replay a trace through a placement policy and report its cost (policies:\n"
    "                bandit (default), full, home, static-k, lru-cache, counting, epsilon,\n"
    "                oracle); see docs/placement.md for the formats and the cost model;\n"
    "                --static-k K and --lru-capacity-bytes N tune those baselines\n"
    "  sim --topology T.json --trace TRACE.csv --compare [--plot FILE.svg]\n"
    "                run every policy on the trace: cost, ratio to the oracle and to full\n"
    "  sim gen [--seed N] [--regions A,B,..] [--objects N] [--events N] [--scenario S]\n"
    "          [--out FILE]\n"
    "                write a synthetic trace (scenarios: stable-skew, follow-the-sun,\n"
    "                flash-crowd, drift, write-heavy)\n"
    "  sim convert-wc98 [--out FILE] FILE...\n"
    "                convert 1998 World Cup binary logs into a trace\n";

typedef struct {
    const char *topology;
    const char *trace;
    const char *plot;
    plc_sim_options options;
    bool compare;
} sim_args;

typedef struct {
    int64_t ts_ms[SAMPLES_MAX];
    double usd[SAMPLES_MAX];
    size_t count;
    FILE *progress; /* a terminal, or NULL */
} sim_samples;

static void on_sample(void *ctx, int64_t ts_ms, double total_usd)
{
    sim_samples *s = ctx;
    if (s->count < SAMPLES_MAX) {
        s->ts_ms[s->count] = ts_ms;
        s->usd[s->count++] = total_usd;
    }
}

static void on_progress(void *ctx, size_t done, size_t total)
{
    sim_samples *s = ctx;
    if (s->progress == NULL || total == 0) return;
    int width = 40, filled = (int)((double)done / (double)total * width);
    fprintf(s->progress, "\r[%.*s%*s] %3d%%", filled, "########################################",
            width - filled, "", (int)(100.0 * (double)done / (double)total));
    fflush(s->progress);
}

static int parse_args(ops__options *o, int argc, char **argv, sim_args *a)
{
    enum {
        OPT_TOPOLOGY = 256,
        OPT_TRACE,
        OPT_POLICY,
        OPT_SEED,
        OPT_COMPARE,
        OPT_PLOT,
        OPT_K,
        OPT_CAPACITY
    };
    static const struct option longopts[] = {
        {"topology", required_argument, NULL, OPT_TOPOLOGY},
        {"trace", required_argument, NULL, OPT_TRACE},
        {"policy", required_argument, NULL, OPT_POLICY},
        {"seed", required_argument, NULL, OPT_SEED},
        {"compare", no_argument, NULL, OPT_COMPARE},
        {"plot", required_argument, NULL, OPT_PLOT},
        {"static-k", required_argument, NULL, OPT_K},
        {"lru-capacity-bytes", required_argument, NULL, OPT_CAPACITY},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    a->options.policy = PLC_SIM_BANDIT;
    optind = 0;
    opterr = 0;
    int opt;
    char *end;
    while ((opt = getopt_long(argc, argv, ":ho:", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_TOPOLOGY:
            a->topology = optarg;
            break;
        case OPT_TRACE:
            a->trace = optarg;
            break;
        case OPT_POLICY:
            if (plc_sim_policy_parse(optarg, &a->options.policy) != 0)
                return ops__usage_error(o, "sim: unknown policy '%s'", optarg);
            break;
        case OPT_SEED:
            a->options.seed = strtoull(optarg, &end, 10);
            if (optarg[0] == '\0' || *end != '\0' || optarg[0] == '-')
                return ops__usage_error(o, "sim: invalid seed '%s'", optarg);
            break;
        case OPT_K:
            a->options.static_k = (uint32_t)strtoul(optarg, &end, 10);
            if (*end != '\0' || a->options.static_k < 1 || a->options.static_k > PLC_REGIONS_MAX)
                return ops__usage_error(o, "sim: invalid --static-k '%s'", optarg);
            break;
        case OPT_CAPACITY:
            a->options.lru_capacity_bytes = strtoull(optarg, &end, 10);
            if (optarg[0] == '\0' || *end != '\0' || optarg[0] == '-')
                return ops__usage_error(o, "sim: invalid --lru-capacity-bytes '%s'", optarg);
            break;
        case OPT_COMPARE:
            a->compare = true;
            break;
        case OPT_PLOT:
            a->plot = optarg;
            break;
        case 'o':
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "table") != 0)
                return ops__usage_error(o, "invalid output format '%s': expected table or json",
                                        optarg);
            o->json_output = strcmp(optarg, "json") == 0;
            break;
        case 'h':
            fputs(ops__sim_usage, o->out);
            return EXIT_HELP;
        case ':':
            return ops__usage_error(o, "option '%s' requires an argument", argv[optind - 1]);
        default:
            return ops__usage_error(o, "sim: unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return ops__usage_error(o, "sim: unexpected argument '%s'", argv[optind]);
    if (a->topology == NULL) return ops__usage_error(o, "sim: --topology is required");
    if (a->trace == NULL) return ops__usage_error(o, "sim: --trace is required");
    if (a->plot != NULL && !a->compare)
        return ops__usage_error(o, "sim: --plot goes with --compare");
    return EXIT_OK;
}

static json_t *result_json(plc_sim_policy policy, const plc_sim_result *r, double seconds)
{
    json_t *j = json_object();
    json_object_set_new(j, "policy", json_string(plc_sim_policy_name(policy)));
    json_object_set_new(j, "total_usd", json_real(r->total_usd));
    json_object_set_new(j, "egress_usd", json_real(r->costs.egress_usd));
    json_object_set_new(j, "storage_usd", json_real(r->costs.storage_usd));
    json_object_set_new(j, "transfer_usd", json_real(r->costs.transfer_usd));
    json_object_set_new(j, "egress_bytes", json_integer((json_int_t)r->costs.egress_bytes));
    json_object_set_new(j, "transfer_bytes", json_integer((json_int_t)r->costs.transfer_bytes));
    json_object_set_new(j, "reads", json_integer((json_int_t)r->costs.reads));
    json_object_set_new(j, "missed_reads", json_integer((json_int_t)r->missed_reads));
    json_object_set_new(j, "local_read_ratio", json_real(r->local_read_ratio));
    json_object_set_new(j, "read_latency_ms_p50", json_real(r->read_latency_ms_p50));
    json_object_set_new(j, "read_latency_ms_p99", json_real(r->read_latency_ms_p99));
    json_object_set_new(j, "constraint_violations",
                        json_integer((json_int_t)r->costs.constraint_violations));
    json_object_set_new(j, "events", json_integer((json_int_t)r->events));
    json_object_set_new(j, "events_per_second",
                        json_real(seconds > 0 ? (double)r->events / seconds : 0));
    return j;
}

/* One "label  value" line per field, costs with 9 significant digits so tiny traces show. */
static void print_result_table(FILE *out, const json_t *j)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)j, key, v)
    {
        if (json_is_string(v))
            fprintf(out, "%-22s %s\n", key, json_string_value(v));
        else if (json_is_integer(v))
            fprintf(out, "%-22s %" JSON_INTEGER_FORMAT "\n", key, json_integer_value(v));
        else
            fprintf(out, "%-22s %.9g\n", key, json_real_value(v));
    }
}

static int run_one(ops__options *o, const ops__sim_input *in, plc_sim_options *options,
                   plc_sim_result *r, double *seconds)
{
    char why[WHY_BYTES_MAX];
    uint64_t start = tern_mono_ns();
    int rc = plc_sim_run(&in->topology, &in->trace, options, r, why, sizeof why);
    *seconds = (double)(tern_mono_ns() - start) / 1e9;
    if (options->progress != NULL && ((sim_samples *)options->ctx)->progress != NULL)
        fputs("\r\033[K", ((sim_samples *)options->ctx)->progress);
    if (rc != 0) {
        fprintf(o->err, "ternctl: sim %s: %s\n", plc_sim_policy_name(options->policy), why);
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

/* A line chart of cumulative cost per policy, written directly (no plotting tool needed). */
static int write_plot(ops__options *o, const char *path, sim_samples *samples, const bool *ran)
{
    static const char *const colors[] = {"#d62728", "#7f7f7f", "#1f77b4", "#2ca02c",
                                         "#9467bd", "#8c564b", "#e377c2", "#000000"};
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(o->err, "ternctl: sim: cannot write %s: %s\n", path, strerror(errno));
        return EXIT_FAILED;
    }
    int64_t t0 = INT64_MAX, t1 = INT64_MIN;
    double top = 0;
    for (int p = 0; p < PLC_SIM_POLICY_COUNT; p++)
        for (size_t i = 0; ran[p] && i < samples[p].count; i++) {
            t0 = TERN_MIN(t0, samples[p].ts_ms[i]);
            t1 = TERN_MAX(t1, samples[p].ts_ms[i]);
            top = TERN_MAX(top, samples[p].usd[i]);
        }
    double w = 800, h = 480, left = 80, bottom = 40;
    double span = t1 > t0 ? (double)(t1 - t0) : 1, scale = top > 0 ? top : 1;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n"
            "<text x=\"%.0f\" y=\"16\">cumulative cost (USD, top = %.6g) over trace time "
            "(%.3g hours)</text>\n",
            w + 160, h + bottom, left, top, span / 3.6e6);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", left,
            h, left + w, h);
    fprintf(f, "<line x1=\"%.0f\" y1=\"20\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", left,
            left, h);
    int row = 0;
    for (int p = 0; p < PLC_SIM_POLICY_COUNT; p++) {
        if (!ran[p]) continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" points=\"", colors[p]);
        for (size_t i = 0; i < samples[p].count; i++)
            fprintf(f, "%.1f,%.1f ", left + w * (double)(samples[p].ts_ms[i] - t0) / span,
                    h - (h - 30) * samples[p].usd[i] / scale);
        fprintf(f, "\"/>\n<text x=\"%.0f\" y=\"%d\" fill=\"%s\">%s</text>\n", left + w + 10,
                40 + 16 * row++, colors[p], plc_sim_policy_name((plc_sim_policy)p));
    }
    fputs("</svg>\n", f);
    if (fclose(f) != 0) {
        fprintf(o->err, "ternctl: sim: cannot write %s: %s\n", path, strerror(errno));
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

static int run_compare(ops__options *o, const ops__sim_input *in, sim_args *a)
{
    static sim_samples samples[PLC_SIM_POLICY_COUNT];
    plc_sim_result results[PLC_SIM_POLICY_COUNT];
    double seconds[PLC_SIM_POLICY_COUNT];
    bool ran[PLC_SIM_POLICY_COUNT] = {false};
    /* Samples every 1/200 of the trace's span give a smooth curve in a bounded array. */
    int64_t span = in->trace.event_count ? in->trace.end_ms - in->events[0].ts_ms : 0;
    for (int p = 0; p < PLC_SIM_POLICY_COUNT; p++) {
        plc_sim_options options = a->options;
        options.policy = (plc_sim_policy)p;
        samples[p].count = 0;
        samples[p].progress = isatty(fileno(o->err)) ? o->err : NULL;
        options.ctx = &samples[p];
        options.progress = on_progress;
        if (a->plot != NULL) {
            options.sample = on_sample;
            options.sample_interval_ms = span / 200 > 0 ? span / 200 : 1;
        }
        if (run_one(o, in, &options, &results[p], &seconds[p]) != EXIT_OK) return EXIT_FAILED;
        ran[p] = true;
    }
    double oracle = results[PLC_SIM_ORACLE].total_usd, full = results[PLC_SIM_FULL].total_usd;
    json_t *all = json_array();
    for (int p = 0; p < PLC_SIM_POLICY_COUNT; p++) {
        json_t *j = result_json((plc_sim_policy)p, &results[p], seconds[p]);
        json_object_set_new(j, "ratio_to_oracle",
                            json_real(oracle > 0 ? results[p].total_usd / oracle : 0));
        json_object_set_new(j, "ratio_to_full",
                            json_real(full > 0 ? results[p].total_usd / full : 0));
        json_array_append_new(all, j);
    }
    if (o->json_output) {
        ops__print_json(o, all);
    } else {
        fprintf(o->out, "%-10s %14s %14s %14s %14s %9s %9s %6s %10s\n", "POLICY", "TOTAL_USD",
                "EGRESS_USD", "STORAGE_USD", "TRANSFER_USD", "X_ORACLE", "X_FULL", "LOCAL",
                "VIOLATIONS");
        for (int p = 0; p < PLC_SIM_POLICY_COUNT; p++) {
            const plc_sim_result *r = &results[p];
            fprintf(o->out, "%-10s %14.9g %14.9g %14.9g %14.9g %9.4f %9.4f %6.3f %10llu\n",
                    plc_sim_policy_name((plc_sim_policy)p), r->total_usd, r->costs.egress_usd,
                    r->costs.storage_usd, r->costs.transfer_usd,
                    oracle > 0 ? r->total_usd / oracle : 0, full > 0 ? r->total_usd / full : 0,
                    r->local_read_ratio, (unsigned long long)r->costs.constraint_violations);
        }
    }
    json_decref(all);
    return a->plot != NULL ? write_plot(o, a->plot, samples, ran) : EXIT_OK;
}

int ops__sim_main(ops__options *o, int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "gen") == 0) return ops__sim_gen(o, argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "convert-wc98") == 0)
        return ops__sim_convert_wc98(o, argc - 1, argv + 1);
    sim_args a;
    int rc = parse_args(o, argc, argv, &a);
    if (rc != EXIT_OK) return rc;
    ops__sim_input in = {0};
    char why[WHY_BYTES_MAX];
    if (ops__sim_read_topology(&in, a.topology, why, sizeof why) != 0 ||
        ops__sim_read_trace(&in, a.trace, why, sizeof why) != 0) {
        fprintf(o->err, "ternctl: %s\n", why);
        ops__sim_input_free(&in);
        return EXIT_FAILED;
    }
    if (a.compare) {
        rc = run_compare(o, &in, &a);
    } else {
        plc_sim_result r;
        double seconds;
        sim_samples progress = {.progress = isatty(fileno(o->err)) ? o->err : NULL};
        a.options.ctx = &progress;
        a.options.progress = on_progress;
        rc = run_one(o, &in, &a.options, &r, &seconds);
        if (rc == EXIT_OK) {
            json_t *j = result_json(a.options.policy, &r, seconds);
            if (o->json_output)
                ops__print_json(o, j);
            else
                print_result_table(o->out, j);
            json_decref(j);
        }
    }
    ops__sim_input_free(&in);
    return rc;
}
