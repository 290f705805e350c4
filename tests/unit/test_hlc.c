/* Unit tests of the hybrid logical clock and version order (common/). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common.h"

#define MS(t) ((uint64_t)(t) << TERN_HLC_LOGICAL_BITS)

static void test_now_follows_the_wall_clock(void **state)
{
    (void)state;
    tern_hlc c = {0};
    assert_int_equal(tern_hlc_now(&c, 1000), MS(1000));
    assert_int_equal(tern_hlc_now(&c, 1005), MS(1005));
    /* The same millisecond twice: the counter moves. */
    assert_int_equal(tern_hlc_now(&c, 1005), MS(1005) + 1);
    assert_int_equal(tern_hlc_physical_ms(c.last), 1005);
    assert_int_equal(tern_hlc_logical(c.last), 1);
}

static void test_now_never_goes_backwards(void **state)
{
    (void)state;
    tern_hlc c = {0};
    uint64_t t1 = tern_hlc_now(&c, 50000);
    /* The wall clock steps back ten seconds (NTP): timestamps still rise. */
    uint64_t t2 = tern_hlc_now(&c, 40000);
    uint64_t t3 = tern_hlc_now(&c, 40001);
    assert_true(t2 > t1 && t3 > t2);
    assert_int_equal(tern_hlc_physical_ms(t3), 50000);
    /* Once the wall clock passes the old reading it takes over again. */
    assert_int_equal(tern_hlc_now(&c, 50001), MS(50001));
    /* A clock at or before the epoch still gives rising timestamps. */
    tern_hlc z = {0};
    assert_true(tern_hlc_now(&z, -5) < tern_hlc_now(&z, -5));
}

static void test_counter_overflow_carries(void **state)
{
    (void)state;
    tern_hlc c = {.last = MS(7) + ((1u << TERN_HLC_LOGICAL_BITS) - 1)};
    uint64_t t = tern_hlc_now(&c, 7);
    assert_int_equal(t, MS(8));
    assert_true(t > MS(7) + 1000);
}

static void test_observe_moves_past_remote(void **state)
{
    (void)state;
    tern_hlc c = {0};
    tern_hlc_now(&c, 1000);
    /* A remote write 30 s ahead (within the drift bound): local events come after it. */
    uint64_t remote = MS(31000) + 4;
    assert_int_equal(tern_hlc_observe(&c, remote, 1001), 0);
    assert_true(c.last > remote);
    assert_true(tern_hlc_now(&c, 1002) > remote);
    /* An older remote timestamp changes nothing but the counter's progress. */
    uint64_t before = c.last;
    assert_int_equal(tern_hlc_observe(&c, MS(10), 1003), 0);
    assert_int_equal(c.last, before + 1);
    /* A wall clock ahead of both wins. */
    assert_int_equal(tern_hlc_observe(&c, MS(10), 99000), 0);
    assert_int_equal(c.last, MS(99000));
}

static void test_observe_refuses_a_runaway_clock(void **state)
{
    (void)state;
    tern_hlc c = {0};
    tern_hlc_now(&c, 1000);
    uint64_t before = c.last;
    uint64_t remote = MS(1000 + TERN_HLC_DRIFT_MS_MAX + 1);
    assert_int_equal(tern_hlc_observe(&c, remote, 1000), TERN_ERANGE);
    assert_int_equal(c.last, before);
    assert_int_equal(tern_hlc_observe(&c, MS(1000 + TERN_HLC_DRIFT_MS_MAX), 1000), 0);
}

static void test_version_order(void **state)
{
    (void)state;
    assert_true(tern_version_cmp(MS(5), 2, MS(6), 1) < 0);
    assert_true(tern_version_cmp(MS(6), 1, MS(5), 2) > 0);
    /* Concurrent writes with equal timestamps: the region id decides, the same everywhere. */
    assert_true(tern_version_cmp(MS(5), 1, MS(5), 2) < 0);
    assert_true(tern_version_cmp(MS(5), 2, MS(5), 1) > 0);
    assert_int_equal(tern_version_cmp(MS(5) + 3, 4, MS(5) + 3, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_now_follows_the_wall_clock),
        cmocka_unit_test(test_now_never_goes_backwards),
        cmocka_unit_test(test_counter_overflow_carries),
        cmocka_unit_test(test_observe_moves_past_remote),
        cmocka_unit_test(test_observe_refuses_a_runaway_clock),
        cmocka_unit_test(test_version_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
