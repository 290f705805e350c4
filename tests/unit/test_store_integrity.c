/* Store integrity tests: scrub, quarantine, RocksDB corruption, disk errors, concurrency. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <rocksdb/c.h>

#include "node.h"
#include "store_internal.h" /* node__write_error: the disk-error test injects RocksDB errors */

#include "store_fixture.h"

/* ------------------------------------------------------------------ helpers */

/* Stores blocks as one object (so they are referenced) and drops the put pins. */
static void commit_object(node_store *s, const char *key, node_block_ref *refs, size_t count)
{
    node_manifest m = {.block_count = count, .blocks = refs};
    for (size_t i = 0; i < count; i++)
        m.size_bytes += refs[i].size_bytes;
    strcpy(m.etag, "00000000000000000000000000000000");
    assert_int_equal(node_store_object_put(s, "b", key, &m), 0);
    for (size_t i = 0; i < count; i++)
        node_store_block_unpin(s, &refs[i].id);
}

static int get_rc(node_store *s, const node_block_ref *ref, bool verify_hash)
{
    void *data = NULL;
    size_t len = 0;
    int rc = node_store_block_get(s, &ref->id, verify_hash, &data, &len);
    free(data);
    return rc;
}

static uint64_t corruption_count(node_store *s)
{
    node_store_stats st;
    assert_int_equal(node_store_stats_get(s, &st), 0);
    return st.corruption_count;
}

static void scrub_full_pass(node_store *s, node_scrub_result *total)
{
    memset(total, 0, sizeof *total);
    for (int i = 0; i < 1000; i++) {
        node_scrub_result r;
        assert_int_equal(node_store_scrub_step(s, 1u << 30, &r), 0);
        total->blocks_checked += r.blocks_checked;
        total->corrupt_found += r.corrupt_found;
        total->orphans_deleted += r.orphans_deleted;
        if (r.pass_complete) {
            total->pass_complete = true;
            return;
        }
    }
    fail_msg("scrub never completed a pass");
}

/* Writes value under a block id straight into the blocks CF of a closed store. */
static void raw_put_block(const char *dir, const node_block_id *id, const void *value, size_t len)
{
    rocksdb_options_t *o = rocksdb_options_create();
    char *err = NULL;
    size_t cf_count = 0;
    char **names = rocksdb_list_column_families(o, dir, &cf_count, &err);
    assert_null(err);
    const rocksdb_options_t **cf_opts = calloc(cf_count, sizeof *cf_opts);
    rocksdb_column_family_handle_t **cfs = calloc(cf_count, sizeof *cfs);
    assert_true(cf_opts != NULL && cfs != NULL);
    for (size_t i = 0; i < cf_count; i++)
        cf_opts[i] = o;
    rocksdb_t *db = rocksdb_open_column_families(o, dir, (int)cf_count, (const char *const *)names,
                                                 cf_opts, cfs, &err);
    assert_null(err);
    size_t blocks = cf_count;
    for (size_t i = 0; i < cf_count; i++)
        if (strcmp(names[i], "blocks") == 0) blocks = i;
    assert_true(blocks < cf_count);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put_cf(db, wo, cfs[blocks], (const char *)id->bytes, NODE_BLOCK_ID_BYTES, value, len,
                   &err);
    assert_null(err);
    rocksdb_writeoptions_destroy(wo);
    for (size_t i = 0; i < cf_count; i++)
        rocksdb_column_family_handle_destroy(cfs[i]);
    rocksdb_close(db);
    rocksdb_list_column_families_destroy(names, cf_count);
    free(cf_opts);
    free(cfs);
    rocksdb_options_destroy(o);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Flips 64 bytes in the middle of the oldest blob file; returns how many blob files exist. */
static size_t corrupt_first_blob(const char *dir)
{
    char *names[64];
    size_t n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 64) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".blob") == 0) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    assert_true(n > 0);
    qsort(names, n, sizeof *names, name_cmp); /* zero-padded numbers: oldest first */
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, names[0]);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    off_t size = lseek(fd, 0, SEEK_END);
    assert_true(size > 4096);
    uint8_t buf[64];
    assert_int_equal(pread(fd, buf, sizeof buf, size / 2), sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] ^= 0x5a;
    assert_int_equal(pwrite(fd, buf, sizeof buf, size / 2), sizeof buf);
    close(fd);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    return n;
}

/* ------------------------------------------------------------------ tests */

static void test_scrub_detects_wrong_id(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    node_block_ref refs[] = {put_block(f->s, 1, 4096), put_block(f->s, 2, 4096),
                             put_block(f->s, 3, 4096)};
    commit_object(f->s, "k", refs, 3);
    fixture_close(f);
    /* Blocks 0 and 1 now hold data that does not hash to their ids. */
    uint8_t wrong[4096];
    fill(wrong, sizeof wrong, 99);
    raw_put_block(f->dir, &refs[0].id, wrong, sizeof wrong);
    raw_put_block(f->dir, &refs[1].id, wrong, sizeof wrong);
    fixture_open(f);

    /* A read that verifies the hash finds block 1; RocksDB alone cannot. */
    assert_int_equal(get_rc(f->s, &refs[1], false), 0);
    assert_int_equal(get_rc(f->s, &refs[1], true), TERN_ECORRUPT);
    assert_int_equal(corruption_count(f->s), 1);
    assert_int_equal(get_rc(f->s, &refs[1], false), TERN_ECORRUPT); /* never served again */

    node_scrub_result r;
    scrub_full_pass(f->s, &r);
    assert_int_equal(r.blocks_checked, 3);
    assert_int_equal(r.corrupt_found, 1); /* block 0; block 1 was already known */
    assert_int_equal(r.orphans_deleted, 0);
    assert_int_equal(corruption_count(f->s), 2);
    assert_int_equal(get_rc(f->s, &refs[0], false), TERN_ECORRUPT);
    uint8_t slice[16];
    assert_int_equal(node_store_block_read(f->s, &refs[0].id, 0, slice, sizeof slice),
                     TERN_ECORRUPT);
    assert_int_equal(get_rc(f->s, &refs[2], true), 0);

    fixture_reopen(f);
    assert_int_equal(get_rc(f->s, &refs[0], false), TERN_ECORRUPT);
    assert_int_equal(get_rc(f->s, &refs[1], false), TERN_ECORRUPT);
    scrub_full_pass(f->s, &r);
    assert_int_equal(r.corrupt_found, 0);
    assert_int_equal(corruption_count(f->s), 0); /* counted since open */

    /* Uploading the right content again repairs a quarantined block. */
    uint8_t good[4096];
    fill(good, sizeof good, 1);
    assert_int_equal(node_store_block_put(f->s, &refs[0].id, wrong, sizeof wrong), TERN_EINVAL);
    assert_int_equal(node_store_block_put(f->s, &refs[0].id, good, sizeof good), 0);
    node_store_block_unpin(f->s, &refs[0].id);
    assert_int_equal(get_rc(f->s, &refs[0], true), 0);
    fixture_reopen(f);
    assert_int_equal(get_rc(f->s, &refs[0], true), 0);
    assert_int_equal(get_rc(f->s, &refs[1], false), TERN_ECORRUPT);
}

static void test_blob_corruption_on_read(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    node_block_ref ref = put_block(f->s, 5, 64 * 1024);
    commit_object(f->s, "k", &ref, 1);
    fixture_close(f); /* close flushes: the block is now in a blob file */
    assert_int_equal(corrupt_first_blob(f->dir), 1);
    fixture_open(f);
    assert_int_equal(get_rc(f->s, &ref, false), TERN_ECORRUPT);
    assert_non_null(strstr(node_store_errmsg(f->s), "Corruption"));
    assert_int_equal(corruption_count(f->s), 1);
    assert_int_equal(get_rc(f->s, &ref, false), TERN_ECORRUPT);
    assert_int_equal(corruption_count(f->s), 1); /* one corruption, counted once */
    uint8_t slice[16];
    assert_int_equal(node_store_block_read(f->s, &ref.id, 100, slice, sizeof slice), TERN_ECORRUPT);
    fixture_reopen(f);
    assert_int_equal(get_rc(f->s, &ref, false), TERN_ECORRUPT); /* quarantine persisted */
}

static void test_blob_corruption_found_by_scrub(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    node_block_ref bad = put_block(f->s, 6, 64 * 1024);
    commit_object(f->s, "bad", &bad, 1);
    fixture_reopen(f); /* bad alone in the first blob file */
    node_block_ref good[8];
    for (uint32_t i = 0; i < 8; i++)
        good[i] = put_block(f->s, 100 + i, 8192);
    commit_object(f->s, "good", good, 8);
    fixture_close(f);
    assert_int_equal(corrupt_first_blob(f->dir), 2);
    fixture_open(f);
    /* The walk gets past the unreadable blob and still checks every other block. */
    node_scrub_result r;
    scrub_full_pass(f->s, &r);
    assert_true(r.pass_complete);
    assert_int_equal(r.corrupt_found, 1);
    assert_int_equal(r.blocks_checked, 9);
    assert_int_equal(corruption_count(f->s), 1);
    assert_int_equal(get_rc(f->s, &bad, false), TERN_ECORRUPT);
    for (int i = 0; i < 8; i++)
        assert_int_equal(get_rc(f->s, &good[i], true), 0);
    scrub_full_pass(f->s, &r);
    assert_int_equal(r.corrupt_found, 0);
    assert_int_equal(r.blocks_checked, 9);
}

static void test_scrub_budget_and_cursor(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    node_block_ref refs[10];
    for (uint32_t i = 0; i < 10; i++)
        refs[i] = put_block(f->s, 200 + i, 4096);
    commit_object(f->s, "k", refs, 10);
    node_scrub_result r;
    assert_int_equal(node_store_scrub_step(f->s, 3 * 4096, &r), 0);
    assert_int_equal(r.blocks_checked, 3);
    assert_int_equal(r.bytes_checked, 3 * 4096);
    assert_false(r.pass_complete);
    assert_int_equal(node_store_scrub_step(f->s, 0, &r), 0); /* always makes progress */
    assert_int_equal(r.blocks_checked, 1);
    fixture_reopen(f); /* the cursor survives */
    assert_int_equal(node_store_scrub_step(f->s, 1u << 30, &r), 0);
    assert_int_equal(r.blocks_checked, 6);
    assert_true(r.pass_complete);
    assert_int_equal(node_store_scrub_step(f->s, 1u << 30, &r), 0);
    assert_int_equal(r.blocks_checked, 10);
    assert_true(r.pass_complete);
    assert_int_equal(r.corrupt_found + r.orphans_deleted, 0);
}

static void test_disk_errors(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    node_block_ref ref = put_block(f->s, 7, 4096);
    commit_object(f->s, "k", &ref, 1);

    /* No space: reported, but not sticky (freeing space is how to recover). */
    char *nospace = strdup("IO error: No space left on device: While appending to file: 9.log");
    assert_int_equal(node__write_error(f->s, nospace, "test"), TERN_ENOSPC);
    assert_non_null(strstr(node_store_errmsg(f->s), "No space"));
    assert_int_equal(node_store_object_delete(f->s, "b", "k"), 0);
    commit_object(f->s, "k", (node_block_ref[]){put_block(f->s, 7, 4096)}, 1);

    /* An I/O error on a write: every later write is refused, reads still work. */
    char *eio = strdup("IO error: While fsync: a file descriptor: Input/output error");
    assert_int_equal(node__write_error(f->s, eio, "test"), TERN_EIO);
    node_manifest empty = {.etag = "e"};
    assert_int_equal(node_store_object_put(f->s, "b", "new", &empty), TERN_EFAILED);
    assert_non_null(strstr(node_store_errmsg(f->s), "failed state"));
    assert_int_equal(node_store_object_delete(f->s, "b", "k"), TERN_EFAILED);
    assert_int_equal(node_store_bucket_create(f->s, "c", "", 1), TERN_EFAILED);
    assert_int_equal(node_store_meta_put(f->s, "x", "y", 1), TERN_EFAILED);
    uint8_t data[4096];
    fill(data, sizeof data, 8);
    node_block_id id;
    node_block_hash(data, sizeof data, &id);
    assert_int_equal(node_store_block_put(f->s, &id, data, sizeof data), TERN_EFAILED);
    char upload_id[NODE_UPLOAD_ID_MAX + 1];
    assert_int_equal(node_store_upload_create(f->s, "b", "u", NULL, 1, upload_id), TERN_EFAILED);
    assert_int_equal(get_rc(f->s, &ref, true), 0);
    node_manifest *m = NULL;
    assert_int_equal(node_store_object_get(f->s, "b", "k", &m), 0);
    node_manifest_free(m);
    /* A restart recovers from the WAL and accepts writes again. */
    fixture_reopen(f);
    assert_int_equal(node_store_object_put(f->s, "b", "new", &empty), 0);
}

/* ------------------------------------------------------------------ concurrency */

#define WORKERS 4
#define ROUNDS  40

typedef struct {
    node_store *s;
    uint32_t worker;
    int failures;
} worker_arg;

/* Each round uploads a shared and a unique block, commits them, and deletes every other object. */
static void *worker(void *p)
{
    worker_arg *a = p;
    for (uint32_t i = 0; i < ROUNDS; i++) {
        node_block_ref refs[2];
        uint8_t buf[4096];
        fill(buf, sizeof buf, 999);
        node_block_hash(buf, sizeof buf, &refs[0].id);
        refs[0].size_bytes = sizeof buf;
        if (node_store_block_put(a->s, &refs[0].id, buf, sizeof buf) != 0) a->failures++;
        fill(buf, sizeof buf, 10000 + a->worker * 1000 + i);
        node_block_hash(buf, sizeof buf, &refs[1].id);
        refs[1].size_bytes = sizeof buf;
        if (node_store_block_put(a->s, &refs[1].id, buf, sizeof buf) != 0) a->failures++;
        node_manifest m = {.size_bytes = 8192, .block_count = 2, .blocks = refs};
        char key[32];
        snprintf(key, sizeof key, "w%u-%02u", a->worker, i);
        if (node_store_object_put(a->s, "b", key, &m) != 0) a->failures++;
        node_store_block_unpin(a->s, &refs[0].id);
        node_store_block_unpin(a->s, &refs[1].id);
        if (i % 2 == 1 && node_store_object_delete(a->s, "b", key) != 0) a->failures++;
    }
    return NULL;
}

typedef struct {
    node_store *s;
    atomic_int stop;
    uint64_t steps;
} scrubber_arg;

static void *scrubber(void *p)
{
    scrubber_arg *a = p;
    while (!atomic_load(&a->stop)) {
        node_scrub_result r;
        if (node_store_scrub_step(a->s, 64 * 1024, &r) == 0) a->steps++;
    }
    return NULL;
}

static void test_concurrent_commits_and_scrub(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    pthread_t threads[WORKERS], scrub_thread;
    worker_arg args[WORKERS];
    scrubber_arg sa = {.s = f->s};
    atomic_init(&sa.stop, 0);
    assert_int_equal(pthread_create(&scrub_thread, NULL, scrubber, &sa), 0);
    for (uint32_t i = 0; i < WORKERS; i++) {
        args[i] = (worker_arg){.s = f->s, .worker = i};
        assert_int_equal(pthread_create(&threads[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(args[i].failures, 0); /* no pinned block was ever collected */
    }
    atomic_store(&sa.stop, 1);
    pthread_join(scrub_thread, NULL);
    assert_true(sa.steps > 0);

    node_store_stats st;
    assert_int_equal(node_store_stats_get(f->s, &st), 0);
    const uint64_t live = WORKERS * ROUNDS / 2;
    assert_int_equal(st.object_count, live);
    assert_int_equal(st.logical_bytes, live * 8192);
    assert_int_equal(st.block_count, live + 1);
    assert_int_equal(st.block_bytes, (live + 1) * 4096);
    assert_int_equal(st.referenced_block_bytes, live * 8192);
    assert_int_equal(st.corruption_count, 0);
    node_scrub_result r;
    scrub_full_pass(f->s, &r); /* finishes the pass the scrubber thread was in */
    scrub_full_pass(f->s, &r);
    assert_int_equal(r.blocks_checked, live + 1); /* every deleted object's block is gone */
    assert_int_equal(r.orphans_deleted, 0);
    for (uint32_t w = 0; w < WORKERS; w++)
        for (uint32_t i = 0; i < ROUNDS; i += 2) {
            char key[32];
            snprintf(key, sizeof key, "w%u-%02u", w, i);
            assert_int_equal(node_store_object_delete(f->s, "b", key), 0);
        }
    assert_int_equal(node_store_stats_get(f->s, &st), 0);
    assert_int_equal(st.object_count + st.block_count + st.block_bytes, 0);
    assert_int_equal(st.referenced_block_bytes + st.logical_bytes, 0);
    scrub_full_pass(f->s, &r);
    assert_int_equal(r.blocks_checked, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scrub_detects_wrong_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_corruption_on_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_corruption_found_by_scrub, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scrub_budget_and_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_commits_and_scrub, setup, teardown),
    };
    /* Corruption tests log errors on purpose; keep the output to failures. */
    node_log_set_level(-1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
