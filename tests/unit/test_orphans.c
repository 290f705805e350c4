/* Unit tests of the orphan-block grace tracker of replicated stores. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "orphans.h"

static node_block_id id_of(uint8_t b)
{
    node_block_id id;
    memset(id.bytes, b, sizeof id.bytes);
    return id;
}

static void test_collected_only_after_grace(void **state)
{
    (void)state;
    node_orphans *o = node_orphans_new(1000, 16);
    assert_non_null(o);
    node_block_id ids[2] = {id_of(2), id_of(1)};
    node_block_id *ready;
    size_t n;
    assert_int_equal(node_orphans_note(o, ids, 2, false, 0, &ready, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(node_orphans_count(o), 2);
    assert_int_equal(node_orphans_note(o, ids, 2, false, 999, &ready, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(node_orphans_note(o, &ids[1], 1, false, 1000, &ready, &n), 0);
    assert_int_equal(n, 1);
    assert_memory_equal(ready[0].bytes, ids[1].bytes, NODE_BLOCK_ID_BYTES);
    free(ready);
    assert_int_equal(node_orphans_count(o), 1);
    node_orphans_free(o);
}

static void test_referenced_again_is_forgotten_after_a_pass(void **state)
{
    (void)state;
    node_orphans *o = node_orphans_new(1000, 16);
    node_block_id a = id_of(7), b = id_of(8);
    node_block_id *ready;
    size_t n;
    node_block_id both[2] = {a, b};
    assert_int_equal(node_orphans_note(o, both, 2, true, 0, &ready, &n), 0);
    /* Pass 2: only b is still unreferenced; a got a reference (a manifest committed). */
    assert_int_equal(node_orphans_note(o, &b, 1, true, 500, &ready, &n), 0);
    assert_int_equal(node_orphans_count(o), 1);
    /* a unreferenced again later starts a new grace period. */
    assert_int_equal(node_orphans_note(o, both, 2, false, 1200, &ready, &n), 0);
    assert_int_equal(n, 1);
    assert_memory_equal(ready[0].bytes, b.bytes, NODE_BLOCK_ID_BYTES);
    free(ready);
    assert_int_equal(node_orphans_note(o, &a, 1, false, 2100, &ready, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(node_orphans_note(o, &a, 1, false, 2200, &ready, &n), 0);
    assert_int_equal(n, 1);
    free(ready);
    node_orphans_free(o);
}

static void test_bounded_memory(void **state)
{
    (void)state;
    node_orphans *o = node_orphans_new(10, 3);
    node_block_id ids[5] = {id_of(1), id_of(2), id_of(3), id_of(4), id_of(5)};
    node_block_id *ready;
    size_t n;
    assert_int_equal(node_orphans_note(o, ids, 5, false, 0, &ready, &n), 0);
    assert_int_equal(node_orphans_count(o), 3);
    assert_int_equal(node_orphans_note(o, ids, 5, false, 10, &ready, &n), 0);
    assert_int_equal(n, 3); /* the tracked ones; the others start their grace now */
    free(ready);
    assert_int_equal(node_orphans_count(o), 2);
    node_orphans_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collected_only_after_grace),
        cmocka_unit_test(test_referenced_again_is_forgotten_after_a_pass),
        cmocka_unit_test(test_bounded_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
