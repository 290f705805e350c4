/* Store unit tests: persistence, blocks, dedup, refcounts, GC, pins, buckets, lists, multipart. */
#include <ftw.h>
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

#include "node.h"

#include "store_fixture.h"

/* ------------------------------------------------------------------ helpers */

static node_manifest manifest_of(node_block_ref *refs, size_t count)
{
    node_manifest m = {0};
    for (size_t i = 0; i < count; i++)
        m.size_bytes += refs[i].size_bytes;
    strcpy(m.etag, "0123456789abcdef0123456789abcdef");
    m.last_modified_ms = 1700000000000;
    m.block_count = count;
    m.blocks = refs;
    return m;
}

static node_store_stats stats(node_store *s)
{
    node_store_stats st;
    assert_int_equal(node_store_stats_get(s, &st), 0);
    return st;
}

static bool block_exists(node_store *s, const node_block_ref *ref)
{
    void *data = NULL;
    size_t len = 0;
    int rc = node_store_block_get(s, &ref->id, true, &data, &len);
    free(data);
    if (rc == TERN_ENOTFOUND) return false;
    assert_int_equal(rc, 0);
    assert_int_equal(len, ref->size_bytes);
    return true;
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

/* ------------------------------------------------------------------ tests */

static void test_open_close_reopen(void **state)
{
    fixture *f = *state;
    f->sync_writes = true;
    fixture_reopen(f);
    assert_int_equal(node_store_bucket_create(f->s, "photos", "eu-west", 42), 0);
    assert_int_equal(node_store_meta_put(f->s, "root", "secret", 6), 0);
    fixture_reopen(f);
    node_bucket b;
    assert_int_equal(node_store_bucket_get(f->s, "photos", &b), 0);
    assert_string_equal(b.name, "photos");
    assert_string_equal(b.region, "eu-west");
    assert_int_equal(b.created_ms, 42);
    char *v = NULL;
    size_t n = 0;
    assert_int_equal(node_store_meta_get(f->s, "root", &v, &n), 0);
    assert_int_equal(n, 6);
    assert_memory_equal(v, "secret", 6);
    assert_string_equal(v, "secret"); /* NUL-terminated for convenience */
    free(v);
    assert_int_equal(node_store_meta_get(f->s, "absent", &v, &n), TERN_ENOTFOUND);
    assert_int_equal(stats(f->s).bucket_count, 1);

    node_store *none = NULL;
    char errmsg[128];
    node_store_options bad = {0};
    assert_int_equal(node_store_open(&bad, &none, errmsg, sizeof errmsg), TERN_EINVAL);
    assert_null(none);
    node_store_close(NULL);
}

static void test_block_hash_vector(void **state)
{
    (void)state;
    static const char *const abc =
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    static const char *const empty =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    node_block_id id;
    char hex[65];
    node_block_hash("abc", 3, &id);
    tern_hex(id.bytes, sizeof id.bytes, hex);
    assert_string_equal(hex, abc);
    node_block_hash("", 0, &id);
    tern_hex(id.bytes, sizeof id.bytes, hex);
    assert_string_equal(hex, empty);
}

static void test_block_put_get_read(void **state)
{
    fixture *f = *state;
    uint8_t data[10000];
    fill(data, sizeof data, 7);
    node_block_id id;
    node_block_hash(data, sizeof data, &id);
    assert_int_equal(node_store_block_put(f->s, &id, data, sizeof data), 0);
    void *out = NULL;
    size_t len = 0;
    assert_int_equal(node_store_block_get(f->s, &id, true, &out, &len), 0);
    assert_int_equal(len, sizeof data);
    assert_memory_equal(out, data, sizeof data);
    free(out);

    uint8_t slice[100];
    assert_int_equal(node_store_block_read(f->s, &id, 5000, slice, sizeof slice), 0);
    assert_memory_equal(slice, data + 5000, sizeof slice);
    assert_int_equal(node_store_block_read(f->s, &id, 9900, slice, 100), 0);
    assert_int_equal(node_store_block_read(f->s, &id, 9901, slice, 100), TERN_ERANGE);
    assert_int_equal(node_store_block_read(f->s, &id, 20000, slice, 1), TERN_ERANGE);

    node_block_id missing;
    node_block_hash("missing", 7, &missing);
    assert_int_equal(node_store_block_get(f->s, &missing, false, &out, &len), TERN_ENOTFOUND);
    assert_int_equal(node_store_block_read(f->s, &missing, 0, slice, 1), TERN_ENOTFOUND);
    assert_int_equal(node_store_block_put(f->s, &id, data, NODE_BLOCK_SIZE_MAX + 1), TERN_ETOOBIG);
    node_store_block_unpin(f->s, &id);
}

static void test_dedup(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "r", 1), 0);
    node_block_ref a = put_block(f->s, 1, 8192), b = put_block(f->s, 2, 8192);
    node_block_ref c = put_block(f->s, 3, 4096);
    node_block_ref again = put_block(f->s, 1, 8192); /* same content: stored once */
    assert_memory_equal(again.id.bytes, a.id.bytes, NODE_BLOCK_ID_BYTES);
    node_block_ref one[] = {a, b}, two[] = {a, b, c};
    node_manifest m1 = manifest_of(one, 2), m2 = manifest_of(two, 3);
    assert_int_equal(node_store_object_put(f->s, "b", "one", &m1), 0);
    assert_int_equal(node_store_object_put(f->s, "b", "two", &m2), 0);
    node_store_stats st = stats(f->s);
    assert_int_equal(st.object_count, 2);
    assert_int_equal(st.logical_bytes, 16384 + 20480);
    assert_int_equal(st.block_count, 3);
    assert_int_equal(st.block_bytes, 20480);
    assert_int_equal(st.referenced_block_bytes, 16384 + 20480);
    for (int i = 0; i < 2; i++)
        node_store_block_unpin(f->s, &a.id);
    node_store_block_unpin(f->s, &b.id);
    node_store_block_unpin(f->s, &c.id);
    /* Nothing is garbage: scrub checks three blocks and collects none. */
    node_scrub_result r;
    scrub_full_pass(f->s, &r);
    assert_int_equal(r.blocks_checked, 3);
    assert_int_equal(r.orphans_deleted, 0);
    assert_int_equal(r.corrupt_found, 0);
}

static void test_refcounts_and_gc(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    node_block_ref shared = put_block(f->s, 10, 4096), x = put_block(f->s, 11, 4096);
    node_block_ref list1[] = {shared}, list2[] = {shared, x};
    node_manifest m1 = manifest_of(list1, 1), m2 = manifest_of(list2, 2);
    assert_int_equal(node_store_object_put(f->s, "b", "k1", &m1), 0);
    assert_int_equal(node_store_object_put(f->s, "b", "k2", &m2), 0);
    node_store_block_unpin(f->s, &shared.id);
    node_store_block_unpin(f->s, &x.id);

    assert_int_equal(node_store_object_delete(f->s, "b", "k1"), 0);
    assert_true(block_exists(f->s, &shared));
    assert_int_equal(stats(f->s).gc_blocks_deleted, 0);
    assert_int_equal(node_store_object_delete(f->s, "b", "k1"), TERN_ENOTFOUND);
    assert_int_equal(node_store_object_delete(f->s, "b", "k2"), 0);
    assert_false(block_exists(f->s, &shared));
    assert_false(block_exists(f->s, &x));
    node_store_stats st = stats(f->s);
    assert_int_equal(st.gc_blocks_deleted, 2);
    assert_int_equal(st.block_count, 0);
    assert_int_equal(st.block_bytes, 0);
    assert_int_equal(st.referenced_block_bytes, 0);
    assert_int_equal(st.object_count, 0);
    assert_int_equal(st.logical_bytes, 0);

    /* Overwriting drops the old version's blocks. */
    node_block_ref old = put_block(f->s, 12, 4096), new = put_block(f->s, 13, 8192);
    node_manifest mo = manifest_of(&old, 1), mn = manifest_of(&new, 1);
    assert_int_equal(node_store_object_put(f->s, "b", "k", &mo), 0);
    node_store_block_unpin(f->s, &old.id);
    assert_int_equal(node_store_object_put(f->s, "b", "k", &mn), 0);
    node_store_block_unpin(f->s, &new.id);
    assert_false(block_exists(f->s, &old));
    assert_true(block_exists(f->s, &new));
    st = stats(f->s);
    assert_int_equal(st.object_count, 1);
    assert_int_equal(st.logical_bytes, 8192);
    assert_int_equal(st.block_count, 1);
    assert_int_equal(st.block_bytes, 8192);

    /* A block repeated inside one object counts one reference per use. */
    node_block_ref rep = put_block(f->s, 14, 4096);
    node_block_ref reps[] = {rep, rep, rep};
    node_manifest mr = manifest_of(reps, 3);
    assert_int_equal(node_store_object_put(f->s, "b", "rep", &mr), 0);
    node_store_block_unpin(f->s, &rep.id);
    st = stats(f->s);
    assert_int_equal(st.block_count, 2);
    assert_int_equal(st.referenced_block_bytes, 8192 + 3 * 4096);
    assert_int_equal(node_store_object_delete(f->s, "b", "rep"), 0);
    assert_false(block_exists(f->s, &rep));
}

static void test_pins_and_orphans(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    node_block_ref p = put_block(f->s, 20, 4096);
    node_manifest m = manifest_of(&p, 1);
    assert_int_equal(node_store_object_put(f->s, "b", "k", &m), 0);
    /* References drop to zero while the pin is held: the data stays. */
    assert_int_equal(node_store_object_delete(f->s, "b", "k"), 0);
    assert_true(block_exists(f->s, &p));
    node_scrub_result r;
    scrub_full_pass(f->s, &r);
    assert_int_equal(r.orphans_deleted, 0);
    assert_true(block_exists(f->s, &p));
    /* Still pinned, the block can be referenced again without a new put. */
    assert_int_equal(node_store_object_put(f->s, "b", "k", &m), 0);
    assert_int_equal(node_store_object_delete(f->s, "b", "k"), 0);
    node_store_block_unpin(f->s, &p.id);
    scrub_full_pass(f->s, &r);
    assert_int_equal(r.orphans_deleted, 1);
    assert_false(block_exists(f->s, &p));

    /* Two puts take two pins; only the last unpin exposes an orphan. */
    node_block_ref q = put_block(f->s, 21, 4096);
    put_block(f->s, 21, 4096);
    node_store_block_unpin(f->s, &q.id);
    scrub_full_pass(f->s, &r);
    assert_int_equal(r.orphans_deleted, 0);
    node_store_block_unpin(f->s, &q.id);
    scrub_full_pass(f->s, &r);
    assert_int_equal(r.orphans_deleted, 1);
    assert_false(block_exists(f->s, &q));
    assert_int_equal(stats(f->s).gc_blocks_deleted, 2);
}

static void test_conflict_and_copy(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    node_block_ref real = put_block(f->s, 30, 4096);
    node_block_ref ghost = {.size_bytes = 4096};
    node_block_hash("never stored", 12, &ghost.id);
    node_block_ref both[] = {real, ghost};
    node_manifest bad = manifest_of(both, 2);
    node_store_stats before = stats(f->s);
    assert_int_equal(node_store_object_put(f->s, "b", "k", &bad), TERN_ECONFLICT);
    assert_non_null(strstr(node_store_errmsg(f->s), "not stored"));
    node_manifest *got = NULL;
    assert_int_equal(node_store_object_get(f->s, "b", "k", &got), TERN_ENOTFOUND);
    node_store_stats after = stats(f->s);
    assert_memory_equal(&before, &after, sizeof before);

    node_manifest good = manifest_of(&real, 1);
    assert_int_equal(node_store_object_put(f->s, "b", "src", &good), 0);
    node_store_block_unpin(f->s, &real.id);
    /* A copy references the source's blocks without any block put. */
    assert_int_equal(node_store_object_put(f->s, "b", "copy", &good), 0);
    assert_int_equal(node_store_object_delete(f->s, "b", "src"), 0);
    assert_true(block_exists(f->s, &real));
    assert_int_equal(node_store_object_delete(f->s, "b", "copy"), 0);
    assert_false(block_exists(f->s, &real));
    /* Collected: referencing it again is a conflict. */
    assert_int_equal(node_store_object_put(f->s, "b", "again", &good), TERN_ECONFLICT);
    assert_int_equal(node_store_object_put(f->s, "nobucket", "k", &good), TERN_ENOTFOUND);
    good.size_bytes++; /* block sizes must sum to the object size */
    assert_int_equal(node_store_object_put(f->s, "b", "k", &good), TERN_EINVAL);
}

static void test_manifest_roundtrip(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    node_block_ref refs[] = {put_block(f->s, 40, 5000), put_block(f->s, 41, 6000)};
    node_kv headers[] = {{"x-amz-meta-color", "blue"}, {"cache-control", "no-cache"}};
    node_manifest m = manifest_of(refs, 2);
    m.content_type = "text/plain";
    m.header_count = 2;
    m.headers = headers;
    strcpy(m.etag, "abcdef-2");
    assert_int_equal(node_store_object_put(f->s, "b", "dir/file.txt", &m), 0);
    fixture_reopen(f); /* also drops the pins */
    node_manifest *got = NULL;
    assert_int_equal(node_store_object_get(f->s, "b", "dir/file.txt", &got), 0);
    assert_int_equal(got->size_bytes, 11000);
    assert_string_equal(got->etag, "abcdef-2");
    assert_string_equal(got->content_type, "text/plain");
    assert_int_equal(got->last_modified_ms, 1700000000000);
    assert_int_equal(got->header_count, 2);
    assert_string_equal(got->headers[1].name, "cache-control");
    assert_string_equal(got->headers[1].value, "no-cache");
    assert_int_equal(got->block_count, 2);
    assert_memory_equal(got->blocks, refs, sizeof refs);
    node_manifest *dup = node_manifest_dup(got);
    assert_non_null(dup);
    assert_string_equal(dup->headers[0].value, "blue");
    assert_memory_equal(dup->blocks, refs, sizeof refs);
    node_manifest_free(dup);
    node_manifest_free(got);

    node_manifest empty = manifest_of(NULL, 0);
    assert_int_equal(node_store_object_put(f->s, "b", "empty", &empty), 0);
    assert_int_equal(node_store_object_get(f->s, "b", "empty", &got), 0);
    assert_null(got->content_type);
    assert_int_equal(got->size_bytes, 0);
    assert_int_equal(got->block_count, 0);
    node_manifest_free(got);
    node_manifest_free(NULL);
}

static void test_buckets(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "zeta", "r1", 3), 0);
    assert_int_equal(node_store_bucket_create(f->s, "alpha", "r2", 1), 0);
    assert_int_equal(node_store_bucket_create(f->s, "mid", "r3", 2), 0);
    assert_int_equal(node_store_bucket_create(f->s, "alpha", "r2", 9), TERN_EEXIST);
    assert_int_equal(node_store_bucket_create(f->s, "a/b", "r", 1), TERN_EINVAL);
    assert_int_equal(node_store_bucket_create(f->s, "", "r", 1), TERN_EINVAL);
    node_bucket b;
    assert_int_equal(node_store_bucket_get(f->s, "nope", &b), TERN_ENOTFOUND);
    node_bucket *list = NULL;
    size_t n = 0;
    assert_int_equal(node_store_bucket_list(f->s, &list, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].name, "alpha");
    assert_string_equal(list[1].name, "mid");
    assert_string_equal(list[2].name, "zeta");
    assert_string_equal(list[2].region, "r1");
    free(list);

    node_manifest empty = manifest_of(NULL, 0);
    assert_int_equal(node_store_object_put(f->s, "mid", "obj", &empty), 0);
    assert_int_equal(node_store_bucket_delete(f->s, "mid"), TERN_ENOTEMPTY);
    assert_int_equal(node_store_object_delete(f->s, "mid", "obj"), 0);
    char upload_id[NODE_UPLOAD_ID_MAX + 1];
    assert_int_equal(node_store_upload_create(f->s, "mid", "up", NULL, 5, upload_id), 0);
    assert_int_equal(node_store_bucket_delete(f->s, "mid"), TERN_ENOTEMPTY);
    assert_int_equal(node_store_upload_abort(f->s, "mid", "up", upload_id), 0);
    assert_int_equal(node_store_bucket_delete(f->s, "mid"), 0);
    assert_int_equal(node_store_bucket_delete(f->s, "mid"), TERN_ENOTFOUND);
    assert_int_equal(node_store_bucket_get(f->s, "mid", &b), TERN_ENOTFOUND);
    /* A neighbour whose name extends "alpha" does not make it non-empty. */
    assert_int_equal(node_store_bucket_create(f->s, "alphabet", "r", 1), 0);
    assert_int_equal(node_store_object_put(f->s, "alphabet", "x", &empty), 0);
    assert_int_equal(node_store_bucket_delete(f->s, "alpha"), 0);
    assert_int_equal(stats(f->s).bucket_count, 2);
}

/* Lists a bucket from seek into a "|"-joined string of keys. */
static void list_keys(node_store *s, const char *bucket, const char *seek, char *out, size_t cap)
{
    node_object_iter *it = NULL;
    assert_int_equal(node_store_object_iter_open(s, bucket, seek, &it), 0);
    out[0] = '\0';
    node_object_entry e;
    int rc;
    while ((rc = node_store_object_iter_next(it, &e)) == 1) {
        if (out[0] != '\0') strncat(out, "|", cap - strlen(out) - 1);
        strncat(out, e.key, cap - strlen(out) - 1);
    }
    assert_int_equal(rc, 0);
    node_store_object_iter_close(it);
}

static void test_listing(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "a", "", 1), 0);
    assert_int_equal(node_store_bucket_create(f->s, "ab", "", 1), 0);
    assert_int_equal(node_store_bucket_create(f->s, "a0", "", 1), 0);
    node_manifest m = manifest_of(NULL, 0);
    const char *keys_a[] = {"x", "a/b", "b", "c", "a", "b0"};
    for (size_t i = 0; i < TERN_ARRAY_LEN(keys_a); i++)
        assert_int_equal(node_store_object_put(f->s, "a", keys_a[i], &m), 0);
    assert_int_equal(node_store_object_put(f->s, "ab", "zzz", &m), 0);
    assert_int_equal(node_store_object_put(f->s, "ab", "a", &m), 0);
    assert_int_equal(node_store_object_put(f->s, "a0", "first", &m), 0);
    char out[512];
    list_keys(f->s, "a", "", out, sizeof out);
    assert_string_equal(out, "a|a/b|b|b0|c|x");
    list_keys(f->s, "a", "b", out, sizeof out);
    assert_string_equal(out, "b|b0|c|x");
    list_keys(f->s, "a", "bb", out, sizeof out);
    assert_string_equal(out, "c|x");
    list_keys(f->s, "a", "y", out, sizeof out);
    assert_string_equal(out, "");
    list_keys(f->s, "ab", "", out, sizeof out);
    assert_string_equal(out, "a|zzz");
    node_object_iter *it = NULL;
    assert_int_equal(node_store_object_iter_open(f->s, "missing", "", &it), TERN_ENOTFOUND);

    /* Entries carry size, etag and mtime; seek repositions; the snapshot hides later puts. */
    node_block_ref r = put_block(f->s, 50, 4096);
    node_manifest big = manifest_of(&r, 1);
    big.last_modified_ms = 77;
    assert_int_equal(node_store_object_put(f->s, "a", "sized", &big), 0);
    assert_int_equal(node_store_object_iter_open(f->s, "a", "s", &it), 0);
    assert_int_equal(node_store_object_put(f->s, "a", "sz-later", &m), 0);
    node_object_entry e;
    assert_int_equal(node_store_object_iter_next(it, &e), 1);
    assert_string_equal(e.key, "sized");
    assert_int_equal(e.size_bytes, 4096);
    assert_int_equal(e.last_modified_ms, 77);
    assert_string_equal(e.etag, big.etag);
    assert_int_equal(node_store_object_iter_next(it, &e), 1);
    assert_string_equal(e.key, "x");
    assert_int_equal(node_store_object_iter_next(it, &e), 0);
    node_store_object_iter_seek(it, "a/");
    assert_int_equal(node_store_object_iter_next(it, &e), 1);
    assert_string_equal(e.key, "a/b");
    node_store_object_iter_close(it);
    node_store_block_unpin(f->s, &r.id);
}

static void test_multipart(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    node_kv hdr[] = {{"x-amz-meta-a", "1"}};
    node_manifest tmpl = {.content_type = "image/png", .header_count = 1, .headers = hdr};
    char id[NODE_UPLOAD_ID_MAX + 1];
    assert_int_equal(node_store_upload_create(f->s, "b", "big", &tmpl, 99, id), 0);
    assert_int_equal(strlen(id), 32);
    assert_int_equal(node_store_upload_create(f->s, "nob", "big", &tmpl, 99, id), TERN_ENOTFOUND);
    assert_int_equal(node_store_upload_create(f->s, "b", "big", &tmpl, 99, id), 0);
    node_manifest *t = NULL;
    assert_int_equal(node_store_upload_get(f->s, "b", "big", id, &t), 0);
    assert_string_equal(t->content_type, "image/png");
    assert_string_equal(t->headers[0].value, "1");
    node_manifest_free(t);
    assert_int_equal(node_store_upload_get(f->s, "b", "other", id, &t), TERN_ENOTFOUND);

    node_block_ref p1a = put_block(f->s, 60, 8192), p1b = put_block(f->s, 61, 8192);
    node_block_ref p2 = put_block(f->s, 62, 4096), p3 = put_block(f->s, 63, 4096);
    node_part part = {.part_number = 2, .size_bytes = 4096, .block_count = 1, .blocks = &p2};
    strcpy(part.etag, "22222222222222222222222222222222");
    assert_int_equal(node_store_upload_part_put(f->s, "b", "big", id, &part), 0);
    part = (node_part){.part_number = 1, .size_bytes = 8192, .block_count = 1, .blocks = &p1a};
    assert_int_equal(node_store_upload_part_put(f->s, "b", "big", id, &part), 0);
    part.blocks = &p1b; /* replace part 1: p1a loses its reference */
    assert_int_equal(node_store_upload_part_put(f->s, "b", "big", id, &part), 0);
    part = (node_part){.part_number = 10001, .size_bytes = 0};
    assert_int_equal(node_store_upload_part_put(f->s, "b", "big", id, &part), TERN_EINVAL);
    node_store_block_unpin(f->s, &p1a.id);
    node_store_block_unpin(f->s, &p1b.id);
    node_store_block_unpin(f->s, &p2.id);
    /* p1a lost its reference while pinned: it stays until the scrubber collects it. */
    assert_true(block_exists(f->s, &p1a));
    node_scrub_result r;
    scrub_full_pass(f->s, &r);
    assert_int_equal(r.orphans_deleted, 1);
    assert_false(block_exists(f->s, &p1a));
    assert_int_equal(stats(f->s).referenced_block_bytes, 8192 + 4096);

    node_part *parts = NULL;
    size_t n = 0;
    assert_int_equal(node_store_upload_parts_list(f->s, "b", "big", id, &parts, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(parts[0].part_number, 1);
    assert_memory_equal(parts[0].blocks[0].id.bytes, p1b.id.bytes, NODE_BLOCK_ID_BYTES);
    assert_int_equal(parts[1].part_number, 2);
    assert_string_equal(parts[1].etag, "22222222222222222222222222222222");
    node_parts_free(parts, n);

    /* Complete with parts 1 and 2 plus a block of no part (p3, pinned). */
    node_block_ref final_blocks[] = {p1b, p2, p3};
    node_manifest final = manifest_of(final_blocks, 3);
    strcpy(final.etag, "ffff-2");
    assert_int_equal(node_store_upload_complete(f->s, "b", "big", id, &final), 0);
    node_store_block_unpin(f->s, &p3.id);
    assert_int_equal(node_store_upload_get(f->s, "b", "big", id, &t), TERN_ENOTFOUND);
    assert_int_equal(node_store_upload_parts_list(f->s, "b", "big", id, &parts, &n),
                     TERN_ENOTFOUND);
    assert_int_equal(node_store_upload_complete(f->s, "b", "big", id, &final), TERN_ENOTFOUND);
    node_store_stats st = stats(f->s);
    assert_int_equal(st.object_count, 1);
    assert_int_equal(st.logical_bytes, 16384);
    assert_int_equal(st.block_count, 3);
    assert_int_equal(st.referenced_block_bytes, 16384); /* the parts' references are gone */
    assert_true(block_exists(f->s, &p1b) && block_exists(f->s, &p2) && block_exists(f->s, &p3));
}

static void test_multipart_abort(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    node_block_ref kept = put_block(f->s, 65, 4096);
    node_manifest m = manifest_of(&kept, 1);
    assert_int_equal(node_store_object_put(f->s, "b", "kept", &m), 0);
    node_store_block_unpin(f->s, &kept.id);
    /* Abort drops the parts' blocks, except those other objects still use. */
    char id2[NODE_UPLOAD_ID_MAX + 1];
    assert_int_equal(node_store_upload_create(f->s, "b", "gone", NULL, 1, id2), 0);
    node_block_ref q = put_block(f->s, 64, 4096);
    node_part part = {.part_number = 1, .size_bytes = 4096, .block_count = 1, .blocks = &q};
    assert_int_equal(node_store_upload_part_put(f->s, "b", "gone", id2, &part), 0);
    node_block_ref shared[] = {kept, kept};
    node_part part2 = {.part_number = 2, .size_bytes = 8192, .block_count = 2, .blocks = shared};
    assert_int_equal(node_store_upload_part_put(f->s, "b", "gone", id2, &part2), 0);
    node_store_block_unpin(f->s, &q.id);
    assert_int_equal(stats(f->s).referenced_block_bytes, 4 * 4096);
    assert_int_equal(node_store_upload_abort(f->s, "b", "gone", id2), 0);
    assert_int_equal(node_store_upload_abort(f->s, "b", "gone", id2), TERN_ENOTFOUND);
    assert_false(block_exists(f->s, &q));
    assert_true(block_exists(f->s, &kept));
    node_store_stats st = stats(f->s);
    assert_int_equal(st.referenced_block_bytes, 4096);
    assert_int_equal(st.block_count, 1);
    node_part *parts = NULL;
    size_t n = 0;
    assert_int_equal(node_store_upload_parts_list(f->s, "b", "gone", id2, &parts, &n),
                     TERN_ENOTFOUND);
    assert_int_equal(node_store_upload_part_put(f->s, "b", "gone", id2, &part), TERN_ENOTFOUND);
    /* Complete referencing a missing block changes nothing. */
    assert_int_equal(node_store_upload_create(f->s, "b", "c", NULL, 1, id2), 0);
    node_manifest bad = manifest_of(&q, 1);
    assert_int_equal(node_store_upload_complete(f->s, "b", "c", id2, &bad), TERN_ECONFLICT);
    node_manifest *t = NULL;
    assert_int_equal(node_store_upload_get(f->s, "b", "c", id2, &t), 0);
    node_manifest_free(t);
    assert_int_equal(node_store_object_get(f->s, "b", "c", &t), TERN_ENOTFOUND);
}

/* Lists uploads into "key:idx|..." where idx is the upload's index in ids. */
static void list_uploads(node_store *s, const char *bucket, const char *prefix, const char *km,
                         const char *im, size_t max, char ids[][NODE_UPLOAD_ID_MAX + 1],
                         size_t id_count, char *out)
{
    node_upload_entry *e = NULL;
    size_t n = 0;
    assert_int_equal(node_store_upload_list(s, bucket, prefix, km, im, max, &e, &n), 0);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t idx = 0;
        while (idx < id_count && strcmp(ids[idx], e[i].upload_id) != 0)
            idx++;
        assert_true(idx < id_count);
        sprintf(out + strlen(out), "%s%s:%zu", i ? "|" : "", e[i].key, idx);
    }
    node_uploads_free(e, n);
}

static void test_upload_list(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "a", "", 1), 0);
    assert_int_equal(node_store_bucket_create(f->s, "ab", "", 1), 0);
    char ids[5][NODE_UPLOAD_ID_MAX + 1];
    const char *keys[] = {"k1", "k1", "k2", "p/a", "k1x"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(node_store_upload_create(f->s, "a", keys[i], NULL, i, ids[i]), 0);
    char other[NODE_UPLOAD_ID_MAX + 1];
    assert_int_equal(node_store_upload_create(f->s, "ab", "k1", NULL, 1, other), 0);
    /* The two k1 uploads sort by id. */
    int lo = strcmp(ids[0], ids[1]) < 0 ? 0 : 1, hi = 1 - lo;
    char out[512], want[512];
    list_uploads(f->s, "a", "", NULL, NULL, 100, ids, 5, out);
    sprintf(want, "k1:%d|k1:%d|k1x:4|k2:2|p/a:3", lo, hi);
    assert_string_equal(out, want);
    list_uploads(f->s, "a", "p/", "", "", 100, ids, 5, out);
    assert_string_equal(out, "p/a:3");
    list_uploads(f->s, "a", "", "k1", NULL, 100, ids, 5, out);
    assert_string_equal(out, "k1x:4|k2:2|p/a:3");
    list_uploads(f->s, "a", "", "k1", ids[lo], 100, ids, 5, out);
    sprintf(want, "k1:%d|k1x:4|k2:2|p/a:3", hi);
    assert_string_equal(out, want);
    list_uploads(f->s, "a", "k1", "k1", ids[hi], 100, ids, 5, out);
    assert_string_equal(out, "k1x:4");
    list_uploads(f->s, "a", "", NULL, NULL, 2, ids, 5, out);
    sprintf(want, "k1:%d|k1:%d", lo, hi);
    assert_string_equal(out, want);
    list_uploads(f->s, "a", "zz", NULL, NULL, 100, ids, 5, out);
    assert_string_equal(out, "");
    node_upload_entry *e = NULL;
    size_t n = 0;
    assert_int_equal(node_store_upload_list(f->s, "ab", "", NULL, NULL, 10, &e, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(e[0].key, "k1");
    assert_string_equal(e[0].upload_id, other);
    assert_int_equal(e[0].initiated_ms, 1);
    node_uploads_free(e, n);
    assert_int_equal(node_store_upload_list(f->s, "nope", "", NULL, NULL, 10, &e, &n),
                     TERN_ENOTFOUND);
}

static void test_counters_survive_reopen(void **state)
{
    fixture *f = *state;
    assert_int_equal(node_store_bucket_create(f->s, "b", "", 1), 0);
    assert_int_equal(node_store_bucket_create(f->s, "c", "", 1), 0);
    node_block_ref r[4];
    for (int i = 0; i < 4; i++)
        r[i] = put_block(f->s, 70 + (uint32_t)i, 65536 * (size_t)(i + 1));
    node_manifest m1 = manifest_of(r, 3), m2 = manifest_of(r + 1, 3);
    assert_int_equal(node_store_object_put(f->s, "b", "1", &m1), 0);
    assert_int_equal(node_store_object_put(f->s, "c", "2", &m2), 0);
    assert_int_equal(node_store_object_put(f->s, "c", "3", &m1), 0);
    assert_int_equal(node_store_object_delete(f->s, "c", "3"), 0);
    node_store_stats before = stats(f->s);
    assert_int_equal(before.object_count, 2);
    assert_int_equal(before.bucket_count, 2);
    assert_int_equal(before.block_count, 4);
    assert_int_equal(before.block_bytes, 65536 * 10);
    assert_int_equal(before.logical_bytes, 65536 * (6 + 9));
    assert_int_equal(before.referenced_block_bytes, 65536 * (6 + 9));
    fixture_reopen(f);
    node_store_stats after = stats(f->s);
    assert_int_equal(after.object_count, before.object_count);
    assert_int_equal(after.bucket_count, before.bucket_count);
    assert_int_equal(after.logical_bytes, before.logical_bytes);
    assert_int_equal(after.block_count, before.block_count);
    assert_int_equal(after.block_bytes, before.block_bytes);
    assert_int_equal(after.referenced_block_bytes, before.referenced_block_bytes);
    assert_true(after.disk_bytes >= after.block_bytes); /* blob files hold every block */
    assert_int_equal(after.corruption_count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_close_reopen, setup, teardown),
        cmocka_unit_test(test_block_hash_vector),
        cmocka_unit_test_setup_teardown(test_block_put_get_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refcounts_and_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pins_and_orphans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_and_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifest_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upload_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counters_survive_reopen, setup, teardown),
    };
    node_log_set_level(NODE_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
