/* Remote block reads: fetches a block this region does not hold from a region that does. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "node.h"

/*
 * A GET whose object's blocks placement put in other regions reads them one
 * block at a time through here (a worker thread blocks on the transfer; the
 * response streams each block as it arrives, so no whole object is held).
 * Candidates are the holders the origin recorded, the one source selection
 * picks first and then by egress price, then every other region (a holder
 * may have dropped its copy, another may have made one). Within a region
 * each of its S3 endpoints is tried in turn, so a dead node or a dead region
 * costs a connect timeout, not the read: the next block of the same read
 * starts again from the best candidate. A block is accepted only when its
 * bytes hash to its id. Transfers are recorded as egress (remote_read) and
 * fed back to source selection with their latency.
 */

#define FETCH_TIMEOUT_MS   15000
#define CONNECT_TIMEOUT_MS 1500
#define HANDLES_MAX        16

struct node_geo_fetch {
    const node_topology *topology;
    uint32_t local_region;
    char *userpwd;
    node_egress *egress;       /* may be NULL */
    node_placement *placement; /* may be NULL: then by price only */
    pthread_mutex_t mu;
    CURL *idle[HANDLES_MAX]; /* reused handles keep their connections */
    size_t idle_count;
};

int node_geo_fetch_new(const node_topology *t, uint32_t local_region, const char *access_key,
                       const char *secret_key, node_egress *egress, node_placement *placement,
                       node_geo_fetch **out)
{
    *out = NULL;
    node_geo_fetch *f = calloc(1, sizeof *f);
    if (f == NULL) return TERN_ENOMEM;
    if (asprintf(&f->userpwd, "%s:%s", access_key, secret_key) < 0) {
        free(f);
        return TERN_ENOMEM;
    }
    f->topology = t;
    f->local_region = local_region;
    f->egress = egress;
    f->placement = placement;
    pthread_mutex_init(&f->mu, NULL);
    *out = f;
    return 0;
}

void node_geo_fetch_free(node_geo_fetch *f)
{
    if (f == NULL) return;
    for (size_t i = 0; i < f->idle_count; i++)
        curl_easy_cleanup(f->idle[i]);
    pthread_mutex_destroy(&f->mu);
    free(f->userpwd);
    free(f);
}

static CURL *handle_take(node_geo_fetch *f)
{
    pthread_mutex_lock(&f->mu);
    CURL *c = f->idle_count ? f->idle[--f->idle_count] : NULL;
    pthread_mutex_unlock(&f->mu);
    return c ? c : curl_easy_init();
}

static void handle_give(node_geo_fetch *f, CURL *c)
{
    pthread_mutex_lock(&f->mu);
    if (f->idle_count < HANDLES_MAX) {
        f->idle[f->idle_count++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&f->mu);
    if (c) curl_easy_cleanup(c);
}

typedef struct {
    char *data;
    size_t len, cap;
} sink;

static size_t sink_write(char *p, size_t size, size_t n, void *ctx)
{
    sink *s = ctx;
    size_t add = size * n;
    if (s->len + add > s->cap) return 0; /* more than the block's size: refuse */
    memcpy(s->data + s->len, p, add);
    s->len += add;
    return add;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One request to one endpoint: GET path?query, or POST of body when body is not NULL.
 * Returns the HTTP status, or 0 when no answer came. */
static long fetch_one(node_geo_fetch *f, const char *endpoint, const char *path, const char *query,
                      const void *body, size_t body_len, sink *out)
{
    CURL *c = handle_take(f);
    if (c == NULL) return 0;
    curl_easy_reset(c);
    char url[1024];
    snprintf(url, sizeof url, "%s%s%s%s", endpoint, path, query ? "?" : "", query ? query : "");
    char hash_header[100];
    node_block_id digest;
    node_block_hash(body ? body : "", body ? body_len : 0, &digest);
    char hex[65];
    tern_hex(digest.bytes, 32, hex);
    snprintf(hash_header, sizeof hash_header, "x-amz-content-sha256: %s", hex);
    struct curl_slist *headers = curl_slist_append(NULL, hash_header);
    headers = curl_slist_append(headers, "Expect:");
    headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, "aws:amz:us-east-1:s3");
    curl_easy_setopt(c, CURLOPT_USERPWD, f->userpwd);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ternd-geo/" TERN_VERSION);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)FETCH_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    handle_give(f, c);
    return status;
}

/* Fills order with the candidate regions, best first; returns how many. */
static size_t candidates(node_geo_fetch *f, uint32_t holders, uint32_t order[PLC_REGIONS_MAX])
{
    const plc_topology *t = &f->topology->prices;
    uint32_t everyone = ((1u << t->region_count) - 1) & ~(1u << f->local_region);
    uint32_t hinted = holders ? holders & everyone : everyone;
    size_t n = 0;
    if (hinted && f->placement) order[n++] = node_placement_choose_source(f->placement, hinted);
    /* The rest of the hinted holders by price from them to here, then everyone else. */
    for (int pass = 0; pass < 2; pass++) {
        uint32_t left = pass == 0 ? hinted : everyone & ~hinted;
        for (size_t i = 0; i < n; i++)
            left &= ~(1u << order[i]);
        while (left) {
            uint32_t best = 0;
            double best_usd = -1;
            for (uint32_t r = 0; r < t->region_count; r++) {
                if (!(left & (1u << r))) continue;
                double usd = t->egress_usd_per_gb[r][f->local_region];
                if (best_usd < 0 || usd < best_usd) best = r, best_usd = usd;
            }
            order[n++] = best;
            left &= ~(1u << best);
        }
    }
    return n;
}

int node_geo_fetch_block(node_geo_fetch *f, const char *bucket, const char *key, uint32_t holders,
                         const node_block_id *id, uint32_t size_bytes, void **data_out,
                         size_t *len_out, uint32_t *from_out)
{
    *data_out = NULL;
    *len_out = 0;
    const node_topology *t = f->topology;
    sink s = {malloc(size_bytes ? size_bytes : 1), 0, size_bytes};
    if (s.data == NULL) return TERN_ENOMEM;
    char hex[65];
    tern_hex(id->bytes, NODE_BLOCK_ID_BYTES, hex);
    char *eb = curl_easy_escape(NULL, bucket, 0), *ek = curl_easy_escape(NULL, key, 0);
    char *er = curl_easy_escape(NULL, t->prices.names[f->local_region], 0);
    char *query = NULL;
    if (eb == NULL || ek == NULL || er == NULL ||
        /* Sorted by name: libcurl 7.88 signs the query as given, and SigV4 wants it sorted. */
        asprintf(&query, "bucket=%s&id=%s&key=%s&reader=%s", eb, hex, ek, er) < 0)
        query = NULL;
    curl_free(eb);
    curl_free(ek);
    curl_free(er);
    if (query == NULL) {
        free(s.data);
        return TERN_ENOMEM;
    }
    uint32_t order[PLC_REGIONS_MAX];
    size_t n = candidates(f, holders, order);
    bool answered = false;
    int rc = TERN_EUNAVAIL;
    for (size_t i = 0; i < n && rc != 0; i++) {
        uint32_t r = order[i];
        for (size_t e = 0; e < t->s3_endpoint_count[r]; e++) {
            s.len = 0;
            double start = now_ms();
            long status =
                fetch_one(f, t->s3_endpoints[r][e], "/_tern/geo/block", query, NULL, 0, &s);
            if (status == 404) {
                answered = true;
                break; /* that region does not have it: try the next region */
            }
            if (status != 200) continue; /* that node is down or busy: its neighbour */
            answered = true;
            node_block_id got;
            node_block_hash(s.data, s.len, &got);
            if (s.len != size_bytes || memcmp(got.bytes, id->bytes, sizeof got.bytes) != 0) {
                node_log(NODE_LOG_WARN, "geo",
                         "block %.16s from %s: damaged in transit or at the "
                         "holder (%zu bytes); trying another",
                         hex, t->s3_endpoints[r][e], s.len);
                continue;
            }
            if (f->egress)
                node_egress_record(f->egress, r, f->local_region, NODE_EGRESS_REMOTE_READ, s.len);
            if (f->placement)
                node_placement_observe_transfer(f->placement, r, s.len, now_ms() - start);
            *from_out = r;
            rc = 0;
            break;
        }
    }
    free(query);
    if (rc != 0) {
        free(s.data);
        if (answered) rc = TERN_ENOTFOUND;
        node_log(NODE_LOG_WARN, "geo", "block %.16s of %s/%s: %s", hex, bucket, key,
                 rc == TERN_ENOTFOUND ? "no region holds it" : "no holder answered");
        return rc;
    }
    *data_out = s.data;
    *len_out = s.len;
    return 0;
}

int node_geo_fetch_have(node_geo_fetch *f, uint32_t region, const node_block_id *ids, size_t count,
                        bool *all)
{
    const node_topology *t = f->topology;
    *all = false;
    if (region >= t->prices.region_count || count == 0) return TERN_EINVAL;
    sink s = {malloc(count), 0, count};
    if (s.data == NULL) return TERN_ENOMEM;
    int rc = TERN_EUNAVAIL;
    for (size_t e = 0; e < t->s3_endpoint_count[region] && rc != 0; e++) {
        s.len = 0;
        long status = fetch_one(f, t->s3_endpoints[region][e], "/_tern/geo/have", NULL, ids,
                                count * sizeof *ids, &s);
        if (status != 200 || s.len != count) continue;
        rc = 0;
        *all = memchr(s.data, '0', count) == NULL;
    }
    free(s.data);
    return rc;
}

int node_geo_fetch_journal(node_geo_fetch *f, const char *endpoint, uint64_t after, void **body,
                           size_t *len)
{
    *body = NULL;
    *len = 0;
    char query[40];
    snprintf(query, sizeof query, "after=%llu", (unsigned long long)after);
    sink s = {malloc(2u << 20), 0, 2u << 20};
    if (s.data == NULL) return TERN_ENOMEM;
    long status = fetch_one(f, endpoint, "/_tern/placement/journal", query, NULL, 0, &s);
    if (status != 200) {
        free(s.data);
        return status == 0 ? TERN_EUNAVAIL : TERN_EIO;
    }
    *body = s.data;
    *len = s.len;
    return 0;
}
