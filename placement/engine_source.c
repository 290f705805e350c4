/* placement: source selection, a bandit over which holder serves a remote read. */
#include <math.h>

#include "placement_internal.h"

/*
 * Each candidate holder h is scored as
 *     egress[h][reader] x (reference bytes / 10^9)  +  latency_usd_per_ms x latency(h)
 * where latency(h) = rtt[h][reader] + a sampled transfer time for the
 * reference size. The sample is Thompson-style: normal around the pair's
 * running mean with the running deviation shrunk by the number of
 * observations, or around the topology's prediction (reference / bandwidth)
 * with half of it as deviation before any observation. The lowest score
 * wins, ties to the lower region index. Price dominates across continents
 * (a $0.05/GB difference is $5e-5 per MB); latency decides between equally
 * priced holders (100 ms is $1e-5 at the rate below).
 */
#define SOURCE_REF_BYTES        1e6
#define SOURCE_USD_PER_MS       1e-7
#define SOURCE_OBSERVATIONS_MAX 32.0 /* the running means forget beyond this many */
/* Below this a transfer's time is fixed costs (connection, request, scheduling), not
 * throughput: scaled up to the reference size, 2 ms on a 20-byte read would read as 2 s/MB
 * and outweigh a $0.07/GB price gap (measured by bench/geo). Such transfers teach nothing. */
#define SOURCE_MIN_BYTES 65536

uint32_t plc_engine_choose_source(plc_engine *e, uint32_t reader, plc_mask holders)
{
    assert(e && reader < e->t.region_count);
    holders &= e->all;
    assert(holders != 0);
    if (holders & (1u << reader)) return reader;
    if (plc__popcount(holders) == 1) return (uint32_t)__builtin_ctz(holders);
    double prior_ms = SOURCE_REF_BYTES / 1e6 * 1000 / e->t.bandwidth_mb_per_s;
    uint32_t best = PLC__NONE;
    double best_score = INFINITY;
    for (uint32_t h = 0; h < e->t.region_count; h++) {
        if (!(holders & (1u << h))) continue;
        const plc__link *l = &e->links[h][reader];
        double mean = l->n > 0 ? l->ms_per_mb : prior_ms;
        double sd = l->n > 0 ? sqrt(l->var / l->n) : prior_ms / 2;
        double transfer_ms = mean + sd * plc__rng_normal(&e->rng);
        double latency_ms = e->t.rtt_ms[h][reader] + TERN_MAX(transfer_ms, 0.0);
        double score = e->t.egress_usd_per_gb[h][reader] * SOURCE_REF_BYTES / PLC_BYTES_PER_GB +
                       SOURCE_USD_PER_MS * latency_ms;
        if (score < best_score) {
            best_score = score;
            best = h;
        }
    }
    assert(best != PLC__NONE);
    return best;
}

void plc_engine_observe_transfer(plc_engine *e, uint32_t from, uint32_t to, uint64_t bytes,
                                 double latency_ms)
{
    assert(e);
    if (from >= e->t.region_count || to >= e->t.region_count || !isfinite(latency_ms)) return;
    if (bytes < SOURCE_MIN_BYTES) return;
    /* The part beyond the pair's RTT is the transfer; scale it to the reference size. */
    double mb = (double)bytes / 1e6;
    double x = TERN_MAX(latency_ms - e->t.rtt_ms[from][to], 0.0) / mb * (SOURCE_REF_BYTES / 1e6);
    plc__link *l = &e->links[from][to];
    l->n = TERN_MIN(l->n + 1, SOURCE_OBSERVATIONS_MAX);
    double w = 1 / l->n;
    double delta = x - l->ms_per_mb;
    l->ms_per_mb += w * delta;
    l->var = (1 - w) * (l->var + w * delta * delta);
}
