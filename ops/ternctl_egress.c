/* ternctl egress: a node's egress bytes and dollars against full replication (/_tern/egress). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ternctl_internal.h"

/*
 * The node sends every figure (node/egress.c computes the dollars from its byte counts); this
 * file only lays them out. Dollar amounts are shown with at least four significant digits,
 * because egress of a few MB costs fractions of a cent and "0.00" would hide exactly the
 * figures an operator checks first on a new deployment.
 */

#define CELL_BYTES_MAX         64
#define USD_SIGNIFICANT_DIGITS 4
#define USD_DECIMALS_MAX       12

const char ops__egress_usage[] =
    "  egress        egress bytes and dollars per region pair and cause, and what full\n"
    "                replication would have cost for the same writes (GET /_tern/egress)\n";

static const char *const causes[] = {"replication", "remote_read", "repair"};

/* "0", "12.50", "0.000186", or "1.860e-15" below what USD_DECIMALS_MAX decimals can show. */
void ops__format_usd(double usd, char *out, size_t out_len)
{
    if (usd == 0 || !isfinite(usd)) {
        snprintf(out, out_len, isfinite(usd) ? "0" : "-");
        return;
    }
    int magnitude = (int)floor(log10(fabs(usd)));
    int decimals = USD_SIGNIFICANT_DIGITS - 1 - magnitude;
    if (decimals > USD_DECIMALS_MAX) {
        snprintf(out, out_len, "%.*e", USD_SIGNIFICANT_DIGITS - 1, usd);
        return;
    }
    snprintf(out, out_len, "%.*f", decimals < 2 ? 2 : decimals, usd);
    /* Trailing zeros past the cents say nothing: 0.04000 reads better as 0.04. */
    char *dot = strchr(out, '.');
    if (dot == NULL) return;
    size_t len = strlen(out);
    while (len > (size_t)(dot - out) + 3 && out[len - 1] == '0')
        out[--len] = '\0';
}

static uint64_t get_u64(const json_t *obj, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(obj, key));
    return v > 0 ? (uint64_t)v : 0;
}

/* Reals and integers alike (jansson reads "1" as an integer); NAN when absent. */
double ops__json_number(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

const char *ops__json_string(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL ? s : "-";
}

static void print_flows(FILE *out, const json_t *flows)
{
    int from_width = (int)strlen("FROM"), to_width = (int)strlen("TO");
    size_t i;
    const json_t *flow;
    json_array_foreach(flows, i, flow)
    {
        from_width = TERN_MAX(from_width, (int)strlen(ops__json_string(flow, "from")));
        to_width = TERN_MAX(to_width, (int)strlen(ops__json_string(flow, "to")));
    }
    if (json_array_size(flows) == 0) {
        fprintf(out, "No bytes have crossed regions yet.\n");
        return;
    }
    fprintf(out, "%-*s  %-*s  %-11s  %20s  %14s  %s\n", from_width, "FROM", to_width, "TO", "CAUSE",
            "BYTES", "USD", "USD/GB");
    json_array_foreach(flows, i, flow)
    {
        char usd[CELL_BYTES_MAX], price[CELL_BYTES_MAX];
        ops__format_usd(ops__json_number(flow, "usd"), usd, sizeof usd);
        ops__format_usd(ops__json_number(flow, "usd_per_gb"), price, sizeof price);
        fprintf(out, "%-*s  %-*s  %-11s  %20llu  %14s  %s\n", from_width,
                ops__json_string(flow, "from"), to_width, ops__json_string(flow, "to"),
                ops__json_string(flow, "cause"), (unsigned long long)get_u64(flow, "bytes"), usd,
                price);
    }
}

static void print_totals(FILE *out, const json_t *root)
{
    const json_t *by_cause = json_object_get(root, "by_cause");
    char usd[CELL_BYTES_MAX];
    fprintf(out, "%-11s  %20s  %14s\n", "CAUSE", "BYTES", "USD");
    for (size_t c = 0; c < TERN_ARRAY_LEN(causes); c++) {
        const json_t *flow = json_object_get(by_cause, causes[c]);
        ops__format_usd(ops__json_number(flow, "usd"), usd, sizeof usd);
        fprintf(out, "%-11s  %20llu  %14s\n", causes[c], (unsigned long long)get_u64(flow, "bytes"),
                usd);
    }
    const json_t *total = json_object_get(root, "total");
    ops__format_usd(ops__json_number(total, "usd"), usd, sizeof usd);
    fprintf(out, "%-11s  %20llu  %14s\n", "total", (unsigned long long)get_u64(total, "bytes"),
            usd);
}

static void print_comparison(FILE *out, const json_t *root)
{
    const json_t *full = json_object_get(root, "full_replication");
    const json_t *reads = json_object_get(root, "reads");
    double full_usd = ops__json_number(full, "usd");
    double ratio = ops__json_number(full, "ratio");
    char usd[CELL_BYTES_MAX];
    fprintf(out, "%-18s  %llu (%llu bytes)\n", "Writes",
            (unsigned long long)get_u64(full, "writes"),
            (unsigned long long)get_u64(full, "written_bytes"));
    fprintf(out, "%-18s  %llu (%llu bytes)\n", "Reads", (unsigned long long)get_u64(reads, "count"),
            (unsigned long long)get_u64(reads, "bytes"));
    double local = ops__json_number(reads, "local_bytes_ratio");
    if (isfinite(local))
        fprintf(out, "%-18s  %.4f (full replication: 1)\n", "Local read bytes", local);
    ops__format_usd(full_usd, usd, sizeof usd);
    fprintf(out,
            "%-18s  %s USD (the same writes copied to every other region over the "
            "cheapest tree)\n",
            "Full replication", usd);
    /* The node sends ratio 0 until a write has been priced: there is nothing to compare. */
    if (!(full_usd > 0) || !isfinite(ratio)) {
        fprintf(out, "%-18s  - (no write has been priced yet)\n", "Actual / full");
        return;
    }
    fprintf(out, "%-18s  %.4f\n", "Actual / full", ratio);
    ops__format_usd(ops__json_number(full, "saving_usd"), usd, sizeof usd);
    if (ratio <= 1)
        fprintf(out, "%-18s  %s USD (%.1f%% of full replication)\n", "Saving", usd,
                100.0 * (1.0 - ratio));
    else
        fprintf(out, "%-18s  %s USD (%.1f%% more than full replication)\n", "Saving", usd,
                100.0 * (ratio - 1.0));
}

static void print_egress_table(FILE *out, const json_t *root)
{
    fprintf(out, "Local region: %s\n\n", ops__json_string(root, "local_region"));
    print_flows(out, json_object_get(root, "flows"));
    fputc('\n', out);
    print_totals(out, root);
    fputc('\n', out);
    print_comparison(out, root);
}

/* Explains the two answers that mean "no egress to show" before the generic reporter. */
static void report_egress_error(const ops__options *o, const char *target, long status,
                                const ops__response *body)
{
    const char *text = body->data != NULL ? body->data : "";
    if (status == 404 && strstr(text, "<Code>NoTopology</Code>") != NULL) {
        fprintf(o->err,
                "ternctl: egress: the node at %s has no topology configured (regions and their "
                "egress prices), so it does not account egress (HTTP 404 NoTopology)\n",
                o->endpoint);
        return;
    }
    if (status == 400 && strstr(text, "Unknown admin endpoint") != NULL) {
        fprintf(o->err,
                "ternctl: egress: the node at %s does not serve %s (is it older than this "
                "ternctl?)\n",
                o->endpoint, target);
        return;
    }
    ops__report_http_error(o, "GET", target, status, body);
}

int ops__egress_run(const ops__options *o)
{
    static const char target[] = "/_tern/egress";
    ops__response body = {0};
    long status = 0;
    int rc = EXIT_FAILED;
    json_t *root = NULL;
    if (ops__http_request(o, "GET", target, &status, &body) != EXIT_OK) goto out;
    if (status != 200) {
        report_egress_error(o, target, status, &body);
        goto out;
    }
    json_error_t error;
    root = json_loadb(body.data ? body.data : "", body.len, 0, &error);
    if (root == NULL) {
        fprintf(o->err, "ternctl: GET %s%s returned invalid JSON: %s (line %d, column %d)\n",
                o->endpoint, target, error.text, error.line, error.column);
        goto out;
    }
    if (!json_is_object(root) || !json_is_array(json_object_get(root, "flows"))) {
        fprintf(o->err, "ternctl: GET %s%s returned JSON without a \"flows\" array\n", o->endpoint,
                target);
        goto out;
    }
    if (o->json_output)
        ops__print_json(o, root);
    else
        print_egress_table(o->out, root);
    rc = EXIT_OK;
out:
    json_decref(root);
    free(body.data);
    return rc;
}
