/* Raft log storage benchmark: segment files (node/raftlog) against a RocksDB column family. */
#include <errno.h>
#include <stdbool.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "raftlog.h"

/*
 * Both backends get the same work, in the same run and on the same disk: append
 * `entries` entries of `size` bytes in batches of `batch`, and make each batch
 * durable before the next (what a Raft follower does before acknowledging).
 * Segments: one pwrite per batch, then fdatasync. RocksDB: one WriteBatch per
 * batch (key = big-endian index in a "raftlog" column family), written with
 * sync=true. Reported per backend: entries/s, MB/s of payload, batch latency
 * p50/p99, and bytes the process wrote to disk per payload byte (from
 * /proc/self/io, including RocksDB's flushes at close).
 */

typedef struct {
    const char *dir;
    uint64_t entries;
    uint64_t batch;
    size_t size;
} bench_args;

typedef struct {
    const char *backend;
    double seconds;
    double entries_per_s;
    double mb_per_s;
    double p50_ms, p99_ms;
    double write_amplification;
} bench_result;

static uint64_t io_write_bytes(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    uint64_t v = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "write_bytes: %llu", (unsigned long long *)&v) == 1) break;
    if (f) fclose(f);
    return v;
}

/* Incompressible payload: RocksDB compresses SST blocks by default, segments do not. */
static void fill_random(uint8_t *p, size_t n)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void finish(bench_result *r, const bench_args *a, double *lat_ms, size_t n, uint64_t t0_ns,
                   uint64_t w0)
{
    r->seconds = (double)(tern_mono_ns() - t0_ns) / 1e9;
    qsort(lat_ms, n, sizeof *lat_ms, cmp_double);
    r->p50_ms = lat_ms[n / 2];
    r->p99_ms = lat_ms[(size_t)((double)n * 0.99)];
    r->entries_per_s = (double)a->entries / r->seconds;
    r->mb_per_s = (double)(a->entries * a->size) / 1e6 / r->seconds;
    r->write_amplification = (double)(io_write_bytes() - w0) / (double)(a->entries * a->size);
}

static int run_segments(const bench_args *a, bench_result *r)
{
    char dir[512], errmsg[512];
    snprintf(dir, sizeof dir, "%s/segments", a->dir);
    node_raftlog *log;
    if (node_raftlog_open(dir, NULL, &log, errmsg, sizeof errmsg) != 0) {
        fprintf(stderr, "raftlog open: %s\n", errmsg);
        return 1;
    }
    uint8_t *payload = malloc(a->size);
    node_raftlog_entry *batch = calloc(a->batch, sizeof *batch);
    size_t batches = (size_t)(a->entries / a->batch);
    double *lat = calloc(batches, sizeof *lat);
    fill_random(payload, a->size);
    uint64_t w0 = io_write_bytes(), t0 = tern_mono_ns(), index = 1;
    for (size_t b = 0; b < batches; b++) {
        uint64_t s = tern_mono_ns();
        for (uint64_t i = 0; i < a->batch; i++)
            batch[i] =
                (node_raftlog_entry){.index = index++, .term = 1, .data = payload, .len = a->size};
        uint64_t durable = 0;
        if (node_raftlog_append(log, batch, a->batch) != 0 ||
            node_raftlog_sync(log, &durable) != 0 || durable != index - 1) {
            fprintf(stderr, "raftlog: %s\n", node_raftlog_errmsg(log));
            return 1;
        }
        lat[b] = (double)(tern_mono_ns() - s) / 1e6;
    }
    node_raftlog_close(log);
    r->backend = "segments";
    finish(r, a, lat, batches, t0, w0);
    free(lat);
    free(batch);
    free(payload);
    return 0;
}

static int run_rocksdb(const bench_args *a, bench_result *r)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/rocksdb", a->dir);
    rocksdb_options_t *opt = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(opt, 1);
    rocksdb_options_set_create_missing_column_families(opt, 1);
    const char *names[] = {"default", "raftlog"};
    const rocksdb_options_t *cf_opts[] = {opt, opt};
    rocksdb_column_family_handle_t *cfs[2];
    char *err = NULL;
    rocksdb_t *db = rocksdb_open_column_families(opt, dir, 2, names, cf_opts, cfs, &err);
    if (err) {
        fprintf(stderr, "rocksdb open: %s\n", err);
        return 1;
    }
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(wo, 1);
    uint8_t *payload = malloc(a->size);
    fill_random(payload, a->size);
    size_t batches = (size_t)(a->entries / a->batch);
    double *lat = calloc(batches, sizeof *lat);
    uint64_t w0 = io_write_bytes(), t0 = tern_mono_ns(), index = 1;
    for (size_t b = 0; b < batches; b++) {
        uint64_t s = tern_mono_ns();
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        for (uint64_t i = 0; i < a->batch; i++, index++) {
            uint8_t key[8];
            for (int k = 0; k < 8; k++)
                key[k] = (uint8_t)(index >> (56 - 8 * k));
            rocksdb_writebatch_put_cf(wb, cfs[1], (const char *)key, 8, (const char *)payload,
                                      a->size);
        }
        rocksdb_write(db, wo, wb, &err);
        rocksdb_writebatch_destroy(wb);
        if (err) {
            fprintf(stderr, "rocksdb write: %s\n", err);
            return 1;
        }
        lat[b] = (double)(tern_mono_ns() - s) / 1e6;
    }
    /* Count what RocksDB writes for the same data at close (memtable flush). */
    rocksdb_writeoptions_destroy(wo);
    rocksdb_column_family_handle_destroy(cfs[0]);
    rocksdb_column_family_handle_destroy(cfs[1]);
    rocksdb_close(db);
    rocksdb_options_destroy(opt);
    r->backend = "rocksdb";
    finish(r, a, lat, batches, t0, w0);
    free(lat);
    free(payload);
    return 0;
}

static void print_json(const bench_args *a, const bench_result *r)
{
    printf("{\"backend\":\"%s\",\"entries\":%llu,\"batch\":%llu,\"size_bytes\":%zu,"
           "\"seconds\":%.3f,\"entries_per_s\":%.1f,\"mb_per_s\":%.2f,\"batch_latency_ms_p50\":"
           "%.3f,\"batch_latency_ms_p99\":%.3f,\"write_amplification\":%.2f}\n",
           r->backend, (unsigned long long)a->entries, (unsigned long long)a->batch, a->size,
           r->seconds, r->entries_per_s, r->mb_per_s, r->p50_ms, r->p99_ms, r->write_amplification);
}

int main(int argc, char **argv)
{
    bench_args a = {.dir = NULL, .entries = 20000, .batch = 1, .size = 256};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            a.dir = argv[i + 1];
        else if (strcmp(argv[i], "--entries") == 0)
            a.entries = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--batch") == 0)
            a.batch = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--size") == 0)
            a.size = strtoull(argv[i + 1], NULL, 10);
    }
    if (a.dir == NULL || a.batch == 0 || a.entries < a.batch || a.size == 0) {
        fprintf(stderr, "usage: raftlog_bench --dir DIR [--entries N] [--batch B] [--size BYTES]\n"
                        "  DIR must not exist yet or be empty (on the disk to measure)\n");
        return 2;
    }
    mkdir(a.dir, 0755);
    /* --order rocksdb-first runs RocksDB first, to see drift of the disk between the two. */
    bool rocksdb_first = false;
    for (int i = 1; i + 1 < argc; i += 2)
        if (strcmp(argv[i], "--order") == 0)
            rocksdb_first = strcmp(argv[i + 1], "rocksdb-first") == 0;
    bench_result seg, rdb;
    if (rocksdb_first ? (run_rocksdb(&a, &rdb) != 0 || run_segments(&a, &seg) != 0)
                      : (run_segments(&a, &seg) != 0 || run_rocksdb(&a, &rdb) != 0))
        return 1;
    print_json(&a, &seg);
    print_json(&a, &rdb);
    printf("{\"ratio_segments_over_rocksdb_entries_per_s\":%.3f}\n",
           seg.entries_per_s / rdb.entries_per_s);
    return 0;
}
