/* s3load: S3 PUT/GET load generator (libcurl multi) printing throughput and latency as JSON. */

/*
 * Design notes.
 *
 * One thread drives `concurrency` easy handles through one curl multi handle;
 * each handle runs one request at a time and keeps its connection alive, so
 * `concurrency` is the number of concurrent clients (and connections).
 *
 * PUT bodies are generated on the fly by the read callback from a 1 MiB
 * random pattern, with a 16-byte tag (run nonce, object id, page index) at
 * the start of every 4 KiB page, so no two objects and no two blocks of one
 * object share content: a content-addressed store cannot deduplicate them,
 * and no whole object is ever held in memory (1 GiB objects stream).
 *
 * Requests are signed with SigV4 (header auth, UNSIGNED-PAYLOAD) here with
 * OpenSSL, independently of the server's code; --no-sign sends plain GETs
 * (nginx baseline). Keys are <prefix><index as %08llu>; GET walks the key
 * space [0, --keys) round-robin from a random start.
 *
 * Everything is bounded: the run stops starting requests at --count or after
 * --duration, each request has a --timeout, and a hard deadline (--deadline,
 * else duration + timeout + 30 s) aborts what is still in flight; SIGINT and
 * SIGTERM do the same at once. Aborted requests are counted, and the JSON line
 * is printed in every case. Latencies are kept in an array capped at LATENCY_SAMPLES_MAX, beyond
 * which reservoir sampling keeps the percentiles unbiased.
 */

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PATTERN_BYTES        (1u << 20)
#define PAGE_BYTES           4096u
#define TAG_BYTES            16u
#define LATENCY_SAMPLES_MAX  (8u << 20)
#define CONCURRENCY_MAX      4096u
#define URL_BYTES_MAX        2048u
#define ERRORS_PRINTED_MAX   5u
#define CURL_BUFFER_BYTES    (256L * 1024L)
#define TERN_BENCH_MIN(a, b) ((a) < (b) ? (a) : (b))

enum { MODE_PUT = 0, MODE_GET, MODE_MAKE_BUCKET };

typedef struct {
    const char *url_base; /* "http://127.0.0.1:9000" (no trailing slash needed) */
    const char *bucket;
    const char *prefix;
    const char *access_key;
    const char *secret_key;
    const char *region;
    const char *label;
    bool sign;
    int mode;
    uint64_t size_bytes;
    uint32_t concurrency;
    double duration_s; /* 0: run until count */
    uint64_t count;    /* 0: run until duration */
    uint64_t keys;     /* GET key space */
    uint64_t key_start;
    uint32_t timeout_s;
    double deadline_s; /* 0: none beyond duration + timeout; else abort in-flight requests then */
    uint64_t seed;
} options;

typedef struct runner runner;

typedef struct {
    runner *r;
    CURL *easy;
    struct curl_slist *headers;
    bool busy;
    uint64_t object_index;
    uint64_t offset_bytes; /* PUT: bytes handed to curl; GET: bytes received */
    uint64_t start_ns;
    char url[URL_BYTES_MAX];
    char errbuf[CURL_ERROR_SIZE];
} transfer;

struct runner {
    const options *opt;
    CURLM *multi;
    transfer *transfers;
    uint8_t *pattern;
    uint64_t nonce;
    char hostport[256];
    uint64_t started;
    uint64_t next_index;
    uint64_t ok;
    uint64_t errors;
    uint64_t aborted; /* in flight at the deadline or at SIGINT/SIGTERM */
    bool interrupted;
    uint64_t bytes_ok;
    double *latency_ms;
    size_t latency_count;
    uint64_t latency_seen;
    uint64_t rng;
    char first_error[512];
    /* SigV4 signing key cache, per date. */
    char key_date8[9];
    uint8_t signing_key[32];
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* ------------------------------------------------------------------ payload */

/* Fills out with bytes [offset, offset+len) of object `object_index`'s content. */
static void payload_fill(const runner *r, uint64_t object_index, uint64_t offset, uint8_t *out,
                         size_t len)
{
    if (len == 0) return;
    size_t done = 0;
    while (done < len) {
        size_t pattern_offset = (size_t)((offset + done) % PATTERN_BYTES);
        size_t run = TERN_BENCH_MIN(len - done, PATTERN_BYTES - pattern_offset);
        memcpy(out + done, r->pattern + pattern_offset, run);
        done += run;
    }
    uint64_t first_page = offset / PAGE_BYTES;
    uint64_t last_page = (offset + len - 1) / PAGE_BYTES;
    for (uint64_t page = first_page; page <= last_page; page++) {
        uint8_t tag[TAG_BYTES];
        uint64_t a = r->nonce ^ (object_index * 0x9E3779B97F4A7C15ull);
        memcpy(tag, &a, 8);
        memcpy(tag + 8, &page, 8);
        uint64_t tag_start = page * PAGE_BYTES;
        for (unsigned k = 0; k < TAG_BYTES; k++) {
            uint64_t pos = tag_start + k;
            if (pos >= offset && pos < offset + len) out[pos - offset] = tag[k];
        }
    }
}

/* ------------------------------------------------------------------ SigV4 */

static void hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static void hmac_sha256(const uint8_t *key, size_t key_len, const void *msg, size_t msg_len,
                        uint8_t out[32])
{
    unsigned int out_len = 32;
    HMAC(EVP_sha256(), key, (int)key_len, msg, msg_len, out, &out_len);
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    uint8_t digest[32];
    SHA256(data, len, digest);
    hex_encode(digest, 32, out);
}

static void signing_key_refresh(runner *r, const char *date8)
{
    if (strcmp(r->key_date8, date8) == 0) return;
    char secret[512];
    snprintf(secret, sizeof(secret), "AWS4%s", r->opt->secret_key);
    uint8_t k1[32], k2[32], k3[32];
    hmac_sha256((const uint8_t *)secret, strlen(secret), date8, 8, k1);
    hmac_sha256(k1, 32, r->opt->region, strlen(r->opt->region), k2);
    hmac_sha256(k2, 32, "s3", 2, k3);
    hmac_sha256(k3, 32, "aws4_request", 12, r->signing_key);
    memcpy(r->key_date8, date8, 9);
}

/* Percent-encodes per SigV4 (unreserved kept, '/' kept). Returns false if out is too small. */
static bool uri_encode_path(const char *in, char *out, size_t out_len)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t j = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        bool keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~' ||
                    *p == '/';
        if (j + 4 >= out_len) return false;
        if (keep) {
            out[j++] = (char)*p;
        } else {
            out[j++] = '%';
            out[j++] = digits[*p >> 4];
            out[j++] = digits[*p & 15];
        }
    }
    out[j] = '\0';
    return true;
}

/* Builds the request headers (signed unless --no-sign) for method and encoded path. */
static struct curl_slist *request_headers(runner *r, const char *method, const char *path)
{
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
    if (!r->opt->sign) return h;
    char amz_date[17];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
    char date8[9];
    memcpy(date8, amz_date, 8);
    date8[8] = '\0';
    signing_key_refresh(r, date8);

    char canonical[URL_BYTES_MAX + 512];
    snprintf(canonical, sizeof(canonical),
             "%s\n%s\n\nhost:%s\nx-amz-content-sha256:UNSIGNED-PAYLOAD\nx-amz-date:%s\n\n"
             "host;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD",
             method, path, r->hostport, amz_date);
    char canonical_hash[65];
    sha256_hex(canonical, strlen(canonical), canonical_hash);
    char scope[128];
    snprintf(scope, sizeof(scope), "%s/%s/s3/aws4_request", date8, r->opt->region);
    char to_sign[512];
    snprintf(to_sign, sizeof(to_sign), "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope,
             canonical_hash);
    uint8_t sig[32];
    hmac_sha256(r->signing_key, 32, to_sign, strlen(to_sign), sig);
    char sig_hex[65];
    hex_encode(sig, 32, sig_hex);

    char line[1024];
    snprintf(line, sizeof(line), "x-amz-date: %s", amz_date);
    h = curl_slist_append(h, line);
    h = curl_slist_append(h, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    snprintf(line, sizeof(line),
             "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, "
             "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=%s",
             r->opt->access_key, scope, sig_hex);
    h = curl_slist_append(h, line);
    return h;
}

/* ------------------------------------------------------------------ transfers */

static size_t put_read(char *buf, size_t size, size_t nitems, void *userp)
{
    transfer *t = userp;
    uint64_t left = t->r->opt->size_bytes - t->offset_bytes;
    size_t n = (size_t)TERN_BENCH_MIN((uint64_t)size * nitems, left);
    payload_fill(t->r, t->object_index, t->offset_bytes, (uint8_t *)buf, n);
    t->offset_bytes += n;
    return n;
}

static int put_seek(void *userp, curl_off_t offset, int origin)
{
    transfer *t = userp;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > t->r->opt->size_bytes)
        return CURL_SEEKFUNC_CANTSEEK;
    t->offset_bytes = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t get_write(char *data, size_t size, size_t nmemb, void *userp)
{
    (void)data;
    transfer *t = userp;
    t->offset_bytes += (uint64_t)size * nmemb;
    return size * nmemb;
}

static void record_error(runner *r, const char *fmt, const char *a, long b)
{
    r->errors++;
    char msg[512];
    snprintf(msg, sizeof(msg), fmt, a, b);
    if (r->first_error[0] == '\0') snprintf(r->first_error, sizeof(r->first_error), "%s", msg);
    if (r->errors <= ERRORS_PRINTED_MAX) fprintf(stderr, "s3load: %s\n", msg);
}

static void record_latency(runner *r, double ms)
{
    r->latency_seen++;
    if (r->latency_count < LATENCY_SAMPLES_MAX) {
        r->latency_ms[r->latency_count++] = ms;
        return;
    }
    uint64_t slot = xorshift64(&r->rng) % r->latency_seen;
    if (slot < LATENCY_SAMPLES_MAX) r->latency_ms[slot] = ms;
}

static int transfer_start(runner *r, transfer *t)
{
    const options *o = r->opt;
    t->object_index =
        o->mode == MODE_PUT ? o->key_start + r->next_index : (r->next_index % o->keys);
    r->next_index++;
    char raw_path[URL_BYTES_MAX];
    if (o->mode == MODE_MAKE_BUCKET)
        snprintf(raw_path, sizeof(raw_path), "/%s", o->bucket);
    else
        snprintf(raw_path, sizeof(raw_path), "/%s/%s%08" PRIu64, o->bucket, o->prefix,
                 t->object_index);
    char path[URL_BYTES_MAX];
    if (!uri_encode_path(raw_path, path, sizeof(path))) {
        fprintf(stderr, "s3load: key too long\n");
        return -1;
    }
    snprintf(t->url, sizeof(t->url), "%s%s", o->url_base, path);
    curl_slist_free_all(t->headers);
    bool is_put = o->mode == MODE_PUT || o->mode == MODE_MAKE_BUCKET;
    t->headers = request_headers(r, is_put ? "PUT" : "GET", path);
    t->offset_bytes = 0;
    t->errbuf[0] = '\0';

    CURL *e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, t->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    if (is_put) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)o->size_bytes);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, put_read);
        curl_easy_setopt(e, CURLOPT_READDATA, t);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, put_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, t);
    }
    /* PUT responses have small bodies; GET bodies are counted and dropped. */
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, get_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    t->start_ns = mono_ns();
    t->busy = true;
    r->started++;
    if (curl_multi_add_handle(r->multi, e) != CURLM_OK) {
        fprintf(stderr, "s3load: curl_multi_add_handle failed\n");
        return -1;
    }
    return 0;
}

static void transfer_done(runner *r, transfer *t, CURLcode result)
{
    double ms = (double)(mono_ns() - t->start_ns) / 1e6;
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(r->multi, t->easy);
    t->busy = false;
    if (result != CURLE_OK) {
        record_error(r, "%s: curl error %ld", t->errbuf[0] ? t->errbuf : t->url, (long)result);
        return;
    }
    bool bucket_exists = r->opt->mode == MODE_MAKE_BUCKET && status == 409;
    if (status != 200 && !bucket_exists) {
        record_error(r, "%s: HTTP %ld", t->url, status);
        return;
    }
    if (r->opt->mode == MODE_GET && t->offset_bytes != r->opt->size_bytes) {
        record_error(r, "%s: short body (%ld bytes)", t->url, (long)t->offset_bytes);
        return;
    }
    r->ok++;
    r->bytes_ok += r->opt->size_bytes;
    record_latency(r, ms);
}

/* ------------------------------------------------------------------ options */

static int parse_bytes(const char *text, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text) return -1;
    uint64_t mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1024ull;
    else if (*end == 'M' || *end == 'm')
        mult = 1024ull * 1024;
    else if (*end == 'G' || *end == 'g')
        mult = 1024ull * 1024 * 1024;
    else if (*end != '\0')
        return -1;
    if (mult != 1 && end[1] != '\0' && strcmp(end + 1, "iB") != 0 && strcmp(end + 1, "B") != 0)
        return -1;
    *out = (uint64_t)v * mult;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: s3load --mode put|get|mb --url http://HOST:PORT --bucket B [options]\n"
               "  --size BYTES        object size (K/M/G suffixes), default 4K\n"
               "  --concurrency N     concurrent clients (connections), default 1\n"
               "  --duration SEC      run this long (default 10 unless --count)\n"
               "  --count N           run exactly N requests\n"
               "  --prefix P          key prefix, default \"obj-\" (keys are P%%08u)\n"
               "  --keys N            GET: key space [0,N), default 1000\n"
               "  --key-start N       PUT: first key index, default 0\n"
               "  --access-key A --secret-key S   (or env AWS_ACCESS_KEY_ID/SECRET)\n"
               "  --region R          default us-east-1\n"
               "  --no-sign           plain requests (e.g. nginx)\n"
               "  --timeout SEC       per request, default 600\n"
               "  --deadline SEC      abort whatever is still in flight after SEC (counted as\n"
               "                      aborted); SIGINT/SIGTERM do the same at once\n"
               "  --label TEXT        copied into the JSON output\n");
}

static int parse_options(int argc, char **argv, options *o)
{
    static const struct option longopts[] = {
        {"mode", required_argument, 0, 'm'},        {"url", required_argument, 0, 'u'},
        {"bucket", required_argument, 0, 'b'},      {"size", required_argument, 0, 's'},
        {"concurrency", required_argument, 0, 'c'}, {"duration", required_argument, 0, 'd'},
        {"count", required_argument, 0, 'n'},       {"prefix", required_argument, 0, 'p'},
        {"keys", required_argument, 0, 'k'},        {"key-start", required_argument, 0, 'S'},
        {"access-key", required_argument, 0, 'A'},  {"secret-key", required_argument, 0, 'K'},
        {"region", required_argument, 0, 'r'},      {"no-sign", no_argument, 0, 'N'},
        {"timeout", required_argument, 0, 't'},     {"label", required_argument, 0, 'l'},
        {"seed", required_argument, 0, 'x'},        {"help", no_argument, 0, 'h'},
        {"deadline", required_argument, 0, 'D'},    {0, 0, 0, 0}};
    memset(o, 0, sizeof(*o));
    o->prefix = "obj-";
    o->region = "us-east-1";
    o->label = "";
    o->sign = true;
    o->mode = -1;
    o->size_bytes = 4096;
    o->concurrency = 1;
    o->keys = 1000;
    o->timeout_s = 600;
    o->access_key = getenv("AWS_ACCESS_KEY_ID");
    o->secret_key = getenv("AWS_SECRET_ACCESS_KEY");
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            o->mode = strcmp(optarg, "put") == 0   ? MODE_PUT
                      : strcmp(optarg, "get") == 0 ? MODE_GET
                      : strcmp(optarg, "mb") == 0  ? MODE_MAKE_BUCKET
                                                   : -2;
            break;
        case 'u':
            o->url_base = optarg;
            break;
        case 'b':
            o->bucket = optarg;
            break;
        case 's':
            if (parse_bytes(optarg, &o->size_bytes) != 0) {
                fprintf(stderr, "s3load: bad --size %s\n", optarg);
                return -1;
            }
            break;
        case 'c':
            o->concurrency = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'd':
            o->duration_s = strtod(optarg, NULL);
            break;
        case 'n':
            o->count = strtoull(optarg, NULL, 10);
            break;
        case 'p':
            o->prefix = optarg;
            break;
        case 'k':
            o->keys = strtoull(optarg, NULL, 10);
            break;
        case 'S':
            o->key_start = strtoull(optarg, NULL, 10);
            break;
        case 'A':
            o->access_key = optarg;
            break;
        case 'K':
            o->secret_key = optarg;
            break;
        case 'r':
            o->region = optarg;
            break;
        case 'N':
            o->sign = false;
            break;
        case 't':
            o->timeout_s = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'l':
            o->label = optarg;
            break;
        case 'x':
            o->seed = strtoull(optarg, NULL, 10);
            break;
        case 'D':
            o->deadline_s = strtod(optarg, NULL);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (o->mode < 0 || !o->url_base || !o->bucket) {
        usage(stderr);
        return -1;
    }
    if (o->concurrency < 1 || o->concurrency > CONCURRENCY_MAX) {
        fprintf(stderr, "s3load: --concurrency must be 1..%u\n", CONCURRENCY_MAX);
        return -1;
    }
    if (o->mode == MODE_GET && o->keys == 0) {
        fprintf(stderr, "s3load: --keys must be > 0\n");
        return -1;
    }
    if (o->sign && (!o->access_key || !o->secret_key)) {
        fprintf(stderr, "s3load: credentials needed (--access-key/--secret-key) or --no-sign\n");
        return -1;
    }
    if (o->mode == MODE_MAKE_BUCKET) {
        o->count = 1;
        o->concurrency = 1;
        o->size_bytes = 0;
        o->duration_s = 0;
    }
    if (o->count == 0 && o->duration_s <= 0) o->duration_s = 10;
    if (o->timeout_s == 0) o->timeout_s = 600;
    return 0;
}

/* ------------------------------------------------------------------ main loop */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *sorted, size_t n, double p)
{
    if (n == 0) return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[TERN_BENCH_MIN(i, n - 1)];
}

static int runner_init(runner *r, const options *o)
{
    memset(r, 0, sizeof(*r));
    r->opt = o;
    r->nonce = o->seed ? o->seed : ((uint64_t)time(NULL) << 20) ^ mono_ns();
    r->rng = r->nonce | 1;
    const char *authority = strstr(o->url_base, "://");
    authority = authority ? authority + 3 : o->url_base;
    size_t len = strcspn(authority, "/");
    if (len == 0 || len >= sizeof(r->hostport)) {
        fprintf(stderr, "s3load: bad --url %s\n", o->url_base);
        return -1;
    }
    memcpy(r->hostport, authority, len);
    r->pattern = malloc(PATTERN_BYTES);
    r->latency_ms = malloc(sizeof(double) * LATENCY_SAMPLES_MAX);
    r->transfers = calloc(o->concurrency, sizeof(transfer));
    r->multi = curl_multi_init();
    if (!r->pattern || !r->latency_ms || !r->transfers || !r->multi) {
        fprintf(stderr, "s3load: out of memory\n");
        return -1;
    }
    uint64_t state = r->nonce | 1;
    for (size_t i = 0; i < PATTERN_BYTES; i += 8) {
        uint64_t v = xorshift64(&state);
        memcpy(r->pattern + i, &v, 8);
    }
    curl_multi_setopt(r->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)o->concurrency);
    curl_multi_setopt(r->multi, CURLMOPT_MAXCONNECTS, (long)o->concurrency);
    for (uint32_t i = 0; i < o->concurrency; i++) {
        transfer *t = &r->transfers[i];
        t->r = r;
        t->easy = curl_easy_init();
        if (!t->easy) return -1;
        curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(t->easy, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(t->easy, CURLOPT_TIMEOUT, (long)o->timeout_s);
        curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(t->easy, CURLOPT_BUFFERSIZE, CURL_BUFFER_BYTES);
        curl_easy_setopt(t->easy, CURLOPT_UPLOAD_BUFFERSIZE, CURL_BUFFER_BYTES);
        curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
        curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    }
    /* GET walks the key space from a random point so runs do not all start at key 0. */
    if (o->mode == MODE_GET) r->next_index = xorshift64(&r->rng) % o->keys;
    return 0;
}

static void runner_free(runner *r)
{
    for (uint32_t i = 0; r->transfers && i < r->opt->concurrency; i++) {
        if (r->transfers[i].easy) {
            if (r->transfers[i].busy) curl_multi_remove_handle(r->multi, r->transfers[i].easy);
            curl_easy_cleanup(r->transfers[i].easy);
        }
        curl_slist_free_all(r->transfers[i].headers);
    }
    if (r->multi) curl_multi_cleanup(r->multi);
    free(r->transfers);
    free(r->latency_ms);
    free(r->pattern);
}

static bool may_start(const runner *r, uint64_t now_ns, uint64_t end_ns)
{
    if (r->opt->count)
        return r->started < r->opt->count && (r->opt->duration_s <= 0 || now_ns < end_ns);
    return now_ns < end_ns;
}

static int run(runner *r, double *elapsed_s)
{
    const options *o = r->opt;
    uint64_t begin_ns = mono_ns();
    uint64_t end_ns = o->duration_s > 0 ? begin_ns + (uint64_t)(o->duration_s * 1e9) : UINT64_MAX;
    /* Hard stop: the planned duration (or none) plus one request timeout and a margin. */
    uint64_t run_bound_ns =
        o->duration_s > 0 ? (uint64_t)(o->duration_s * 1e9) : 86400ull * 1000000000ull;
    uint64_t hard_end_ns = begin_ns + run_bound_ns + ((uint64_t)o->timeout_s + 30) * 1000000000ull;
    if (o->deadline_s > 0) hard_end_ns = begin_ns + (uint64_t)(o->deadline_s * 1e9);
    uint64_t last_done_ns = begin_ns;
    for (;;) {
        uint64_t now = mono_ns();
        if (now > hard_end_ns || stop_requested) {
            r->interrupted = stop_requested != 0;
            for (uint32_t i = 0; i < o->concurrency; i++)
                r->aborted += r->transfers[i].busy;
            fprintf(stderr, "s3load: %s; aborting %" PRIu64 " request(s) in flight\n",
                    stop_requested ? "interrupted" : "deadline reached", r->aborted);
            last_done_ns = mono_ns();
            break;
        }
        size_t busy = 0;
        for (uint32_t i = 0; i < o->concurrency; i++) {
            transfer *t = &r->transfers[i];
            if (!t->busy && may_start(r, now, end_ns)) {
                if (transfer_start(r, t) != 0) return -1;
            }
            busy += t->busy;
        }
        if (busy == 0) break;
        int running = 0;
        if (curl_multi_perform(r->multi, &running) != CURLM_OK) {
            fprintf(stderr, "s3load: curl_multi_perform failed\n");
            return -1;
        }
        CURLMsg *msg;
        int queued;
        size_t completed = 0;
        while ((msg = curl_multi_info_read(r->multi, &queued)) != NULL) {
            if (msg->msg != CURLMSG_DONE) continue;
            char *private_ptr = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &private_ptr);
            transfer *t = (transfer *)(void *)private_ptr;
            CURLcode result = msg->data.result;
            transfer_done(r, t, result);
            last_done_ns = mono_ns();
            completed++;
        }
        /* Idle handles get their next request before waiting for socket activity. */
        if (completed == 0) curl_multi_poll(r->multi, NULL, 0, 50, NULL);
    }
    *elapsed_s = (double)(last_done_ns - begin_ns) / 1e9;
    return 0;
}

static void print_json(const runner *r, double elapsed_s)
{
    const options *o = r->opt;
    qsort(r->latency_ms, r->latency_count, sizeof(double), cmp_double);
    double secs = elapsed_s > 0 ? elapsed_s : 1e-9;
    printf("{\"tool\":\"s3load\",\"label\":\"%s\",\"mode\":\"%s\",\"url\":\"%s\",\"signed\":%s,"
           "\"size_bytes\":%" PRIu64 ",\"concurrency\":%u,\"ops\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"seconds\":%.3f,\"ops_per_s\":%.1f,\"mb_per_s\":%.2f,"
           "\"mib_per_s\":%.2f,\"latency_ms_p50\":%.3f,\"latency_ms_p99\":%.3f,"
           "\"latency_ms_max\":%.3f,\"aborted\":%" PRIu64 ",\"interrupted\":%s,"
           "\"first_error\":\"",
           o->label,
           o->mode == MODE_PUT   ? "put"
           : o->mode == MODE_GET ? "get"
                                 : "mb",
           o->url_base, o->sign ? "true" : "false", o->size_bytes, o->concurrency, r->ok, r->errors,
           elapsed_s, (double)r->ok / secs, (double)r->bytes_ok / 1e6 / secs,
           (double)r->bytes_ok / 1048576.0 / secs,
           percentile(r->latency_ms, r->latency_count, 0.50),
           percentile(r->latency_ms, r->latency_count, 0.99),
           r->latency_count ? r->latency_ms[r->latency_count - 1] : 0.0, r->aborted,
           r->interrupted ? "true" : "false");
    for (const char *p = r->first_error; *p; p++) {
        if (*p == '"' || *p == '\\') putchar('\\');
        if ((unsigned char)*p >= 0x20) putchar(*p);
    }
    printf("\"}\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    options opt;
    if (parse_options(argc, argv, &opt) != 0) return 64;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "s3load: curl_global_init failed\n");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    runner r;
    int rc = runner_init(&r, &opt);
    double elapsed_s = 0;
    if (rc == 0) rc = run(&r, &elapsed_s);
    if (rc == 0) print_json(&r, elapsed_s);
    int exit_code = rc != 0 ? 1 : ((r.errors || r.aborted) ? 2 : 0);
    runner_free(&r);
    curl_global_cleanup();
    return exit_code;
}
