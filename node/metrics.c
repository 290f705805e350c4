/* Metrics registry: counters, gauges and histograms rendered as Prometheus text format 0.0.4. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

/*
 * Design: the registry is a list of families in registration order, each a
 * list of series in creation order. Lists only grow, and every family and
 * series is its own allocation, so the pointers handed out stay valid until
 * node_metrics_free() and callers cache them. Lookup, creation and rendering
 * take the registry mutex; updates touch only atomics and never lock.
 *
 * Misuse (returns NULL; callers should assert on it): an invalid metric name,
 * a malformed label string, reusing a name with a different type, or a
 * histogram series whose bounds differ from its family's, or bounds that
 * are not finite and strictly ascending. Counters must be named with the
 * _total suffix by the caller, and every family needs help text: the registry
 * never renames, and `promtool check metrics` flags both. The first call's
 * help text is the family's; later calls' help is ignored.
 */

enum metric_type { TYPE_COUNTER, TYPE_GAUGE, TYPE_HISTOGRAM };

static const char *const type_names[] = {"counter", "gauge", "histogram"};

struct node_counter {
    _Atomic uint64_t value;
};

/* A double kept as its bit pattern, as C11 has no portable atomic double. */
struct node_gauge {
    _Atomic uint64_t bits;
};

struct node_histogram {
    size_t bound_count;
    const double *bounds;     /* the family's, ascending */
    _Atomic uint64_t *counts; /* per bucket (not cumulative), bound_count + 1 with +Inf */
    _Atomic uint64_t sum_bits;
};

typedef struct series {
    struct series *next;
    char *labels; /* "" for none */
    union {
        node_counter counter;
        node_gauge gauge;
        node_histogram histogram;
    } u;
} series;

typedef struct family {
    struct family *next;
    char *name;
    char *help;
    enum metric_type type;
    double *bounds; /* histograms only */
    size_t bound_count;
    series *first, *last;
} family;

struct node_metrics {
    pthread_mutex_t lock;
    family *first, *last;
};

static uint64_t double_bits(double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static double bits_double(uint64_t bits)
{
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

node_metrics *node_metrics_new(void)
{
    node_metrics *m = calloc(1, sizeof *m);
    if (m == NULL) return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

static void series_free(series *s, enum metric_type type)
{
    if (type == TYPE_HISTOGRAM) free(s->u.histogram.counts);
    free(s->labels);
    free(s);
}

void node_metrics_free(node_metrics *m)
{
    if (m == NULL) return;
    family *f = m->first;
    while (f != NULL) {
        family *next_family = f->next;
        series *s = f->first;
        while (s != NULL) {
            series *next_series = s->next;
            series_free(s, f->type);
            s = next_series;
        }
        free(f->name);
        free(f->help);
        free(f->bounds);
        free(f);
        f = next_family;
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* */
static bool name_valid(const char *name)
{
    if (name == NULL || name[0] == '\0') return false;
    for (const char *p = name; *p; p++) {
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':';
        bool digit = *p >= '0' && *p <= '9';
        if (!alpha && !(digit && p != name)) return false;
    }
    return true;
}

/*
 * name="value"(,name="value")* with the value escaped (\\, \", \n) and no raw
 * newline. A histogram's labels must not use "le": the renderer adds it.
 */
static bool labels_valid(const char *labels, bool histogram)
{
    const char *p = labels;
    while (*p != '\0') {
        const char *start = p;
        while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
               (p != start && *p >= '0' && *p <= '9'))
            p++;
        size_t name_len = (size_t)(p - start);
        if (name_len == 0 || p[0] != '=' || p[1] != '"') return false;
        if (histogram && name_len == 2 && strncmp(start, "le", 2) == 0) return false;
        for (p += 2; *p != '"'; p++) {
            if (*p == '\0' || *p == '\n') return false;
            if (*p == '\\' && (p[1] == '\\' || p[1] == '"' || p[1] == 'n'))
                p++;
            else if (*p == '\\')
                return false;
        }
        p++;
        if (*p == ',') {
            p++;
            if (*p == '\0') return false;
        } else if (*p != '\0') {
            return false;
        }
    }
    return true;
}

static family *family_find(node_metrics *m, const char *name)
{
    for (family *f = m->first; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0) return f;
    return NULL;
}

static family *family_add(node_metrics *m, const char *name, const char *help,
                          enum metric_type type, const double *bounds, size_t bound_count)
{
    family *f = calloc(1, sizeof *f);
    if (f == NULL) return NULL;
    f->name = strdup(name);
    f->help = strdup(help != NULL ? help : "");
    f->type = type;
    if (bound_count > 0) {
        f->bounds = malloc(bound_count * sizeof *f->bounds);
        if (f->bounds != NULL) memcpy(f->bounds, bounds, bound_count * sizeof *f->bounds);
    }
    f->bound_count = bound_count;
    if (f->name == NULL || f->help == NULL || (bound_count > 0 && f->bounds == NULL)) {
        free(f->name);
        free(f->help);
        free(f->bounds);
        free(f);
        return NULL;
    }
    if (m->last != NULL)
        m->last->next = f;
    else
        m->first = f;
    m->last = f;
    return f;
}

static series *series_add(family *f, const char *labels)
{
    series *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->labels = strdup(labels);
    if (s->labels == NULL) goto fail;
    if (f->type == TYPE_HISTOGRAM) {
        node_histogram *h = &s->u.histogram;
        h->bound_count = f->bound_count;
        h->bounds = f->bounds;
        h->counts = calloc(f->bound_count + 1, sizeof *h->counts);
        if (h->counts == NULL) goto fail;
        atomic_init(&h->sum_bits, double_bits(0.0));
    } else if (f->type == TYPE_GAUGE) {
        atomic_init(&s->u.gauge.bits, double_bits(0.0));
    } else {
        atomic_init(&s->u.counter.value, 0);
    }
    if (f->last != NULL)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    return s;
fail:
    free(s->labels);
    free(s);
    return NULL;
}

static bool bounds_valid(const double *bounds, size_t bound_count)
{
    for (size_t i = 0; i < bound_count; i++) {
        if (isnan(bounds[i]) || isinf(bounds[i])) return false;
        if (i > 0 && !(bounds[i - 1] < bounds[i])) return false;
    }
    return true;
}

/* Finds or creates the series; NULL on misuse (see the design note) or out of memory. */
static series *lookup(node_metrics *m, const char *name, const char *help, const char *labels,
                      enum metric_type type, const double *bounds, size_t bound_count)
{
    if (labels == NULL) labels = "";
    if (!name_valid(name) || !labels_valid(labels, type == TYPE_HISTOGRAM)) return NULL;
    if (type == TYPE_HISTOGRAM && (bound_count > 0 && bounds == NULL)) return NULL;
    if (type == TYPE_HISTOGRAM && !bounds_valid(bounds, bound_count)) return NULL;
    series *found = NULL;
    pthread_mutex_lock(&m->lock);
    family *f = family_find(m, name);
    if (f == NULL) f = family_add(m, name, help, type, bounds, bound_count);
    if (f == NULL || f->type != type) goto out;
    if (type == TYPE_HISTOGRAM &&
        (f->bound_count != bound_count ||
         (bound_count > 0 && memcmp(f->bounds, bounds, bound_count * sizeof *bounds) != 0)))
        goto out;
    for (series *s = f->first; s != NULL; s = s->next) {
        if (strcmp(s->labels, labels) == 0) {
            found = s;
            goto out;
        }
    }
    found = series_add(f, labels);
out:
    pthread_mutex_unlock(&m->lock);
    return found;
}

node_counter *node_metrics_counter(node_metrics *m, const char *name, const char *help,
                                   const char *labels)
{
    series *s = lookup(m, name, help, labels, TYPE_COUNTER, NULL, 0);
    return s != NULL ? &s->u.counter : NULL;
}

node_gauge *node_metrics_gauge(node_metrics *m, const char *name, const char *help,
                               const char *labels)
{
    series *s = lookup(m, name, help, labels, TYPE_GAUGE, NULL, 0);
    return s != NULL ? &s->u.gauge : NULL;
}

node_histogram *node_metrics_histogram(node_metrics *m, const char *name, const char *help,
                                       const char *labels, const double *bounds, size_t bound_count)
{
    series *s = lookup(m, name, help, labels, TYPE_HISTOGRAM, bounds, bound_count);
    return s != NULL ? &s->u.histogram : NULL;
}

void node_counter_add(node_counter *c, uint64_t delta)
{
    atomic_fetch_add_explicit(&c->value, delta, memory_order_relaxed);
}

void node_gauge_set(node_gauge *g, double value)
{
    atomic_store_explicit(&g->bits, double_bits(value), memory_order_relaxed);
}

void node_histogram_observe(node_histogram *h, double value)
{
    /* Buckets are "less than or equal": the first bound >= value; NaN lands in +Inf. */
    size_t bucket = 0;
    while (bucket < h->bound_count && !(value <= h->bounds[bucket]))
        bucket++;
    atomic_fetch_add_explicit(&h->counts[bucket], 1, memory_order_relaxed);
    uint64_t old_bits = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old_bits,
                                                  double_bits(bits_double(old_bits) + value),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* Shortest of %.15g/%.17g that reads back exactly, and the Prometheus spellings of Inf/NaN. */
static void format_double(double value, char *buf, size_t buf_len)
{
    if (isnan(value)) {
        snprintf(buf, buf_len, "NaN");
    } else if (isinf(value)) {
        snprintf(buf, buf_len, "%s", value > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(buf, buf_len, "%.15g", value);
        if (strtod(buf, NULL) != value) snprintf(buf, buf_len, "%.17g", value);
    }
}

static void write_help(FILE *out, const family *f)
{
    /* No help: no HELP line rather than one with a dangling space (promtool lints both). */
    if (f->help[0] == '\0') goto type;
    fprintf(out, "# HELP %s ", f->name);
    for (const char *p = f->help; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
    fputc('\n', out);
type:
    fprintf(out, "# TYPE %s %s\n", f->name, type_names[f->type]);
}

/* name{labels} or name{labels,extra} or name{extra}; braces only when something is inside. */
static void write_series_name(FILE *out, const char *name, const char *suffix, const char *labels,
                              const char *extra)
{
    bool has_labels = labels[0] != '\0', has_extra = extra != NULL;
    fprintf(out, "%s%s", name, suffix);
    if (!has_labels && !has_extra) return;
    fprintf(out, "{%s%s%s}", labels, has_labels && has_extra ? "," : "", has_extra ? extra : "");
}

static void write_histogram(FILE *out, const family *f, const series *s)
{
    const node_histogram *h = &s->u.histogram;
    char number[64], le[80];
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= h->bound_count; i++) {
        cumulative += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < h->bound_count)
            format_double(h->bounds[i], number, sizeof number);
        else
            snprintf(number, sizeof number, "+Inf");
        snprintf(le, sizeof le, "le=\"%s\"", number);
        write_series_name(out, f->name, "_bucket", s->labels, le);
        fprintf(out, " %llu\n", (unsigned long long)cumulative);
    }
    format_double(bits_double(atomic_load_explicit(&h->sum_bits, memory_order_relaxed)), number,
                  sizeof number);
    write_series_name(out, f->name, "_sum", s->labels, NULL);
    fprintf(out, " %s\n", number);
    /* _count is the +Inf bucket by construction, so the two never disagree mid-update. */
    write_series_name(out, f->name, "_count", s->labels, NULL);
    fprintf(out, " %llu\n", (unsigned long long)cumulative);
}

static void write_family(FILE *out, const family *f)
{
    char number[64];
    write_help(out, f);
    for (const series *s = f->first; s != NULL; s = s->next) {
        switch (f->type) {
        case TYPE_COUNTER:
            write_series_name(out, f->name, "", s->labels, NULL);
            fprintf(out, " %llu\n",
                    (unsigned long long)atomic_load_explicit(&s->u.counter.value,
                                                             memory_order_relaxed));
            break;
        case TYPE_GAUGE:
            format_double(bits_double(atomic_load_explicit(&s->u.gauge.bits, memory_order_relaxed)),
                          number, sizeof number);
            write_series_name(out, f->name, "", s->labels, NULL);
            fprintf(out, " %s\n", number);
            break;
        case TYPE_HISTOGRAM:
            write_histogram(out, f, s);
            break;
        }
    }
}

int node_metrics_render(node_metrics *m, char **out, size_t *len)
{
    char *text = NULL;
    size_t text_len = 0;
    FILE *stream = open_memstream(&text, &text_len);
    if (stream == NULL) return TERN_ENOMEM;
    pthread_mutex_lock(&m->lock);
    for (const family *f = m->first; f != NULL; f = f->next)
        write_family(stream, f);
    pthread_mutex_unlock(&m->lock);
    bool failed = ferror(stream) != 0;
    if (fclose(stream) != 0) failed = true;
    if (failed) {
        free(text);
        return TERN_ENOMEM;
    }
    *out = text;
    if (len != NULL) *len = text_len;
    return 0;
}
