/* placement simulator internals shared by sim_ledger.c, sim_baselines.c, oracle.c and sim_run.c. */
#ifndef TERN_PLACEMENT_SIM_INTERNAL_H
#define TERN_PLACEMENT_SIM_INTERNAL_H

#include "placement.h"

/* The cheapest holder to read or copy from into region `to` (egress price, then RTT, then the
 * lower index); UINT32_MAX when holders is empty. Same rule as plc_cheapest_source. */
uint32_t plc__cheapest_holder(const plc_topology *t, plc_mask holders, uint32_t to);

/* All regions of the topology as a mask; a policy's allowed set with 0 meaning all. */
plc_mask plc__all_regions(const plc_topology *t);
plc_mask plc__allowed(const plc_topology *t, const plc_bucket_policy *p);

/* USD per byte per millisecond of holding a replica in every region of set. */
double plc__storage_rate(const plc_topology *t, plc_mask set);
/* A remote read's latency: the pair's RTT plus the transfer at the topology's bandwidth. */
double plc__read_latency_ms(const plc_topology *t, uint32_t from, uint32_t to, uint64_t bytes);

/* Distinct allowed sets priced at once (each table is 2^k x 2^k doubles): the policies' and
 * the one of all regions. */
#define PLC__RELAY_TABLES_MAX 64

/* One relay table per distinct allowed mask of a trace's policies, plus one for all regions. */
typedef struct plc__relay_cache {
    size_t count;
    plc_mask masks[PLC__RELAY_TABLES_MAX];
    plc_relay_table *tables[PLC__RELAY_TABLES_MAX];
    const plc_relay_table **by_policy; /* policy_count entries */
    const plc_relay_table *all;
} plc__relay_cache;

int plc__relay_cache_init(plc__relay_cache *c, const plc_topology *t, const plc_sim_trace *trace);
void plc__relay_cache_free(plc__relay_cache *c);

/* Baselines (every policy but the engine's and the oracle). */
typedef struct plc__baseline plc__baseline;
typedef void (*plc__changed_fn)(void *ctx, uint32_t object, plc_mask after);

int plc__baseline_new(const plc_topology *t, const plc_sim_trace *trace, const plc_sim_options *o,
                      plc__baseline **out);
void plc__baseline_free(plc__baseline *b);
/* The object's set after ev, given its holders before; other objects a cache evicts to make
 * room are reported through changed() before this returns. */
plc_mask plc__baseline_observe(plc__baseline *b, const plc_sim_event *ev, plc_mask before,
                               plc__changed_fn changed, void *ctx);

static inline uint32_t plc__popcount(plc_mask m)
{
    return (uint32_t)__builtin_popcount(m);
}

#endif
