/* Store read views and cache-only reads: a GET's snapshot survives overwrites and GC. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_fixture.h"

/* The shared fixture with sync on and a bucket to put objects in. */
static int setup_view(void **state)
{
    if (setup(state) != 0) return -1;
    fixture *f = *state;
    f->sync_writes = true;
    fixture_reopen(f);
    return node_store_bucket_create(f->s, "bkt", "local", 1) == 0 ? 0 : -1;
}

/* Stores one single-block object whose block is filled with `fill`; returns the block id. */
static node_block_id put_object(node_store *s, const char *key, char fill, size_t len)
{
    char *data = malloc(len);
    assert_non_null(data);
    memset(data, fill, len);
    node_block_ref ref = {.size_bytes = (uint32_t)len};
    node_block_hash(data, len, &ref.id);
    assert_int_equal(node_store_block_put(s, &ref.id, data, len), 0);
    node_manifest m = {.size_bytes = len, .last_modified_ms = 1, .block_count = 1, .blocks = &ref};
    strcpy(m.etag, "00000000000000000000000000000000");
    assert_int_equal(node_store_object_put(s, "bkt", key, &m), 0);
    node_store_block_unpin(s, &ref.id);
    free(data);
    return ref.id;
}

static void test_view_survives_overwrite_and_gc(void **state)
{
    fixture *f = *state;
    node_block_id old_id = put_object(f->s, "k", 'a', 64 * 1024);
    node_read_view *v;
    assert_int_equal(node_store_view_open(f->s, &v), 0);

    /* Overwrite: the old block's last reference goes, so the commit deletes it. */
    put_object(f->s, "k", 'b', 64 * 1024);
    node_block_view *bv;
    const char *data;
    size_t len;
    assert_int_equal(node_store_block_view(f->s, &old_id, false, &bv, &data, &len), TERN_ENOTFOUND);

    /* Through the view: the old manifest and the old block, byte for byte. */
    node_manifest *m = NULL;
    assert_int_equal(node_store_object_get_in(v, false, "bkt", "k", &m), 0);
    assert_int_equal(m->block_count, 1);
    assert_memory_equal(m->blocks[0].id.bytes, old_id.bytes, NODE_BLOCK_ID_BYTES);
    node_manifest_free(m);
    assert_int_equal(node_store_block_view_in(v, &old_id, false, &bv, &data, &len), 0);
    assert_int_equal(len, 64 * 1024);
    assert_true(data[0] == 'a' && data[len - 1] == 'a');
    node_block_view_release(bv);

    /* A scrub pass (which collects garbage) does not take it away from the view either. */
    node_scrub_result sr;
    assert_int_equal(node_store_scrub_step(f->s, UINT64_MAX, &sr), 0);
    assert_int_equal(node_store_block_view_in(v, &old_id, false, &bv, &data, &len), 0);
    node_block_view_release(bv);
    node_store_view_close(v);

    /* Outside the view the object is the new version. */
    assert_int_equal(node_store_object_get(f->s, "bkt", "k", &m), 0);
    assert_memory_not_equal(m->blocks[0].id.bytes, old_id.bytes, NODE_BLOCK_ID_BYTES);
    node_manifest_free(m);
}

static void test_view_survives_delete(void **state)
{
    fixture *f = *state;
    node_block_id id = put_object(f->s, "gone", 'z', 8192);
    node_read_view *v;
    assert_int_equal(node_store_view_open(f->s, &v), 0);
    assert_int_equal(node_store_object_delete(f->s, "bkt", "gone"), 0);
    node_manifest *m = NULL;
    assert_int_equal(node_store_object_get(f->s, "bkt", "gone", &m), TERN_ENOTFOUND);
    assert_int_equal(node_store_object_get_in(v, false, "bkt", "gone", &m), 0);
    node_manifest_free(m);
    node_block_view *bv;
    const char *data;
    size_t len;
    assert_int_equal(node_store_block_view_in(v, &id, false, &bv, &data, &len), 0);
    assert_int_equal(len, 8192);
    node_block_view_release(bv);
    node_store_view_close(v);
}

static void test_cache_only_reads(void **state)
{
    fixture *f = *state;
    node_block_id id = put_object(f->s, "c", 'q', 32 * 1024);
    /* Still in the memtable: a cache-only read serves it without disk I/O. */
    node_block_view *bv;
    const char *data;
    size_t len;
    assert_int_equal(node_store_block_view(f->s, &id, true, &bv, &data, &len), 0);
    assert_int_equal(len, 32 * 1024);
    node_block_view_release(bv);
    node_manifest *m = NULL;
    assert_int_equal(node_store_object_get_cached(f->s, "bkt", "c", &m), 0);
    node_manifest_free(m);
    /* An absent key is "not found", not "would need the disk". */
    assert_int_equal(node_store_object_get_cached(f->s, "bkt", "nope", &m), TERN_ENOTFOUND);

    /* After a reopen the block lives only in a blob file on disk, not in any cache. */
    fixture_reopen(f);
    assert_int_equal(node_store_block_view(f->s, &id, true, &bv, &data, &len), TERN_EAGAIN);
    /* A normal read fetches it (and fills the cache), after which cache-only works. */
    assert_int_equal(node_store_block_view(f->s, &id, false, &bv, &data, &len), 0);
    node_block_view_release(bv);
    assert_int_equal(node_store_block_view(f->s, &id, true, &bv, &data, &len), 0);
    assert_true(data[0] == 'q');
    node_block_view_release(bv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_view_survives_overwrite_and_gc, setup_view, teardown),
        cmocka_unit_test_setup_teardown(test_view_survives_delete, setup_view, teardown),
        cmocka_unit_test_setup_teardown(test_cache_only_reads, setup_view, teardown),
    };
    return cmocka_run_group_tests_name("store_view", tests, NULL, NULL);
}
