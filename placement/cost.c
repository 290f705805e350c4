/* placement: cost model helpers shared by the engine and the simulator (policy checks, sources). */
#include "placement_internal.h"

int plc_policy_check(const plc_topology *t, const plc_bucket_policy *p, char *errmsg,
                     size_t errmsg_len)
{
    assert(t && p);
    if (t->region_count < 1 || t->region_count > PLC_REGIONS_MAX) {
        tern_errmsg(errmsg, errmsg_len, "topology has %zu regions (1..%d)", t->region_count,
                    PLC_REGIONS_MAX);
        return TERN_EINVAL;
    }
    plc_mask all = (plc_mask)((1u << t->region_count) - 1);
    if (p->allowed & ~all) {
        tern_errmsg(errmsg, errmsg_len, "allowed regions name a region beyond the %zu known",
                    t->region_count);
        return TERN_EINVAL;
    }
    if (p->pinned & ~all) {
        tern_errmsg(errmsg, errmsg_len, "pinned regions name a region beyond the %zu known",
                    t->region_count);
        return TERN_EINVAL;
    }
    plc_mask allowed = p->allowed ? p->allowed : all;
    if (p->pinned & ~allowed) {
        tern_errmsg(errmsg, errmsg_len, "a pinned region is not in the allowed regions");
        return TERN_EINVAL;
    }
    if (p->min_regions < 1) {
        tern_errmsg(errmsg, errmsg_len, "min_regions must be at least 1");
        return TERN_EINVAL;
    }
    if (p->min_regions > (uint32_t)plc__popcount(allowed)) {
        tern_errmsg(errmsg, errmsg_len, "min_regions %u is more than the %d allowed regions",
                    p->min_regions, plc__popcount(allowed));
        return TERN_EINVAL;
    }
    return 0;
}

uint32_t plc_cheapest_source(const plc_topology *t, plc_mask holders, uint32_t to)
{
    assert(t && to < t->region_count);
    holders &= (plc_mask)((1u << t->region_count) - 1);
    assert(holders != 0);
    if (holders & (1u << to)) return to;
    uint32_t best = UINT32_MAX;
    for (uint32_t h = 0; h < t->region_count; h++) {
        if (!(holders & (1u << h))) continue;
        if (best == UINT32_MAX || t->egress_usd_per_gb[h][to] < t->egress_usd_per_gb[best][to] ||
            (t->egress_usd_per_gb[h][to] == t->egress_usd_per_gb[best][to] &&
             t->rtt_ms[h][to] < t->rtt_ms[best][to]))
            best = h;
    }
    return best;
}
