/* placement: the seeded generator and the Gamma-Poisson demand posteriors with forgetting. */
#include <math.h>

#include "placement_internal.h"

/* ---------------------------------------------------------------- randomness */

void plc__rng_seed(plc__rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = tern_splitmix64(&x); /* spreads one seed over the state, as its authors advise */
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t plc__rng_next(plc__rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double plc__rng_uniform(plc__rng *r)
{
    /* 53 random bits, offset by half a step so neither 0 nor 1 comes out (log(u) is safe). */
    return ((double)(plc__rng_next(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

double plc__rng_normal(plc__rng *r)
{
    /* Marsaglia's polar method: no trigonometry, about 1.27 pairs of uniforms per sample. */
    for (;;) {
        double u = 2 * plc__rng_uniform(r) - 1;
        double v = 2 * plc__rng_uniform(r) - 1;
        double s = u * u + v * v;
        if (s > 0 && s < 1) return u * sqrt(-2 * log(s) / s);
    }
}

double plc__rng_gamma(plc__rng *r, double shape)
{
    if (!(shape > 0)) return 0;
    if (shape < 1) {
        /* Gamma(a) = Gamma(a + 1) x U^(1/a) (Marsaglia and Tsang, section 6). */
        double g = plc__rng_gamma(r, shape + 1);
        return g * pow(plc__rng_uniform(r), 1 / shape);
    }
    /* Marsaglia and Tsang, "A simple method for generating gamma variables" (2000). */
    double d = shape - 1.0 / 3, c = 1 / sqrt(9 * d);
    for (;;) {
        double x, v;
        do {
            x = plc__rng_normal(r);
            v = 1 + c * x;
        } while (v <= 0);
        v = v * v * v;
        double u = plc__rng_uniform(r);
        if (u < 1 - 0.0331 * x * x * x * x) return d * v;
        if (log(u) < 0.5 * x * x + d * (1 - v + log(v))) return d * v;
    }
}

/* ---------------------------------------------------------------- forgetting */

double plc__decay(double dt_days, double half_life_days)
{
    assert(half_life_days > 0);
    if (dt_days <= 0) return 1;
    return exp(-M_LN2 * dt_days / half_life_days);
}

double plc__exposure_after(double beta, double d, double heff_days)
{
    /* The exposure of the elapsed interval, each instant discounted by its age:
     * integral over [0, dt] of exp(-ln2 s / H) ds = H_eff (1 - d). */
    return beta * d + heff_days * (1 - d);
}

static double days_between(uint32_t from_s, uint32_t to_s)
{
    return to_s > from_s ? (double)(to_s - from_s) / 86400.0 : 0;
}

/* ---------------------------------------------------------------- prefixes */

double plc__prefix_rates(const plc_engine *e, const plc__prefix *p, uint32_t now_s,
                         double rates[PLC_REGIONS_MAX], double *ends_per_day)
{
    double d = plc__decay(days_between(p->updated_s, now_s), e->half_life_days);
    double exposure = plc__exposure_after(p->exposure, d, e->heff_days);
    /* A prefix seen for minutes would otherwise turn one read into a huge rate. */
    double exposure_min = TERN_MIN(1.0 / 24, e->heff_days);
    double per = d / TERN_MAX(exposure, exposure_min) / TERN_MAX(p->objects, 1u);
    double sum = 0;
    for (size_t r = 0; r < e->t.region_count; r++) {
        rates[r] = p->reads[r] * per;
        sum += rates[r];
    }
    if (ends_per_day) *ends_per_day = p->ends * per;
    return sum;
}

static void prefix_decay(plc_engine *e, plc__prefix *p, uint32_t now_s)
{
    if (now_s <= p->updated_s) return;
    double d = plc__decay(days_between(p->updated_s, now_s), e->half_life_days);
    for (size_t r = 0; r < e->t.region_count; r++)
        p->reads[r] *= d;
    p->ends *= d;
    p->versions *= d;
    for (size_t r = 0; r < e->t.region_count; r++)
        p->firsts[r] *= d;
    p->exposure = plc__exposure_after(p->exposure, d, e->heff_days);
    p->updated_s = now_s;
}

void plc__prefix_read(plc_engine *e, plc__prefix *p, uint32_t now_s, uint32_t region)
{
    assert(region < e->t.region_count);
    prefix_decay(e, p, now_s);
    p->reads[region] += 1;
}

void plc__prefix_end(plc_engine *e, plc__prefix *p, uint32_t now_s)
{
    prefix_decay(e, p, now_s);
    p->ends += 1;
}

void plc__prefix_version(plc_engine *e, plc__prefix *p, uint32_t now_s)
{
    prefix_decay(e, p, now_s);
    p->versions += 1;
}

void plc__prefix_first(plc_engine *e, plc__prefix *p, uint32_t now_s, uint32_t region)
{
    assert(region < e->t.region_count);
    prefix_decay(e, p, now_s);
    p->firsts[region] += 1;
}

void plc__prefix_first_shares(const plc_engine *e, const plc__prefix *p,
                              double shares[PLC_REGIONS_MAX])
{
    /* Both counts decay alike, so their ratio needs no decay to now. Half a pseudo-version
     * read nowhere keeps a prefix with one version from claiming certainty. */
    for (size_t r = 0; r < e->t.region_count; r++)
        shares[r] = TERN_MIN(p->firsts[r] / (p->versions + 0.5), 1.0);
}

const plc__prefix *plc__prior_source(const plc_engine *e, const plc__prefix *p)
{
    /* A key prefix that has seen less than about one read lends its bucket's demand instead,
     * so an object in a fresh directory of a bucket read from Tokyo still starts in Tokyo. */
    double sum = 0;
    for (size_t r = 0; r < e->t.region_count; r++)
        sum += p->reads[r];
    if (sum >= 1 || p->parent == PLC__NONE) return p;
    return &e->prefixes[p->parent];
}

/* ---------------------------------------------------------------- objects */

double plc__posterior(const plc_engine *e, const plc__obj *o, uint32_t now_s,
                      double alpha[PLC_REGIONS_MAX], double *ends_alpha, double *prior_w_now)
{
    double d = plc__decay(days_between(o->updated_s, now_s), e->half_life_days);
    double beta = plc__exposure_after(o->beta, d, e->heff_days);
    double prior_w = o->prior_w * d;
    double m[PLC_REGIONS_MAX], m_ends;
    plc__prefix_rates(e, plc__prior_source(e, &e->prefixes[o->prefix]), now_s, m, &m_ends);
    if (ends_alpha) *ends_alpha = (double)o->ends * d + m_ends * prior_w;
    if (prior_w_now) *prior_w_now = prior_w;
    const float *shape = o->tracked ? plc__shapes(e, o) : NULL;
    for (uint32_t r = 0; r < e->t.region_count; r++) {
        if (o->tracked & (1u << r))
            alpha[r] = *shape++ * d;
        else
            alpha[r] = m[r] * prior_w;
    }
    return beta;
}

void plc__obj_decay(plc_engine *e, plc__obj *o, uint32_t now_s)
{
    if (now_s <= o->updated_s) return;
    double d = plc__decay(days_between(o->updated_s, now_s), e->half_life_days);
    float *shape = o->tracked ? plc__shapes(e, o) : NULL;
    for (int i = 0; i < plc__popcount(o->tracked); i++)
        shape[i] = (float)(shape[i] * d);
    o->ends = (float)(o->ends * d);
    o->beta = (float)plc__exposure_after(o->beta, d, e->heff_days);
    o->prior_w = (float)(o->prior_w * d);
    o->updated_s = now_s;
}

void plc__obj_prior(plc_engine *e, plc__obj *o, uint32_t now_s)
{
    double m[PLC_REGIONS_MAX];
    double sum =
        plc__prefix_rates(e, plc__prior_source(e, &e->prefixes[o->prefix]), now_s, m, NULL);
    /* prior_strength pseudo-reads spread like the prefix's demand: alpha_r = s m_r / M and
     * beta = s / M give mean m_r. The prior never weighs more than a full window of the object's
     * own observation (H_eff), which also covers a prefix with no reads yet. */
    double s = e->c.prior_strength;
    double beta0 = sum * e->heff_days > s ? s / sum : e->heff_days;
    o->beta = (float)beta0;
    o->prior_w = (float)beta0;
    o->updated_s = now_s;
}
