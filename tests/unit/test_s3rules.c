/* Unit tests of S3 naming rules, Range parsing, date formats and the S3 error table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api_internal.h"

/* ---------------- bucket names ---------------- */

static void test_bucket_names_valid(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "abc",
        "my-bucket",
        "my.bucket.name",
        "docexamplebucket1",
        "1bucket",
        "bucket1",
        "a-b",
        "a.b",
        "192.168.5",     /* three groups: not an IPv4 address */
        "192.168.5.4.1", /* five groups */
        "192.168.5.a",   /* not all digits */
        "1234.168.5.4",  /* a group of four digits */
        "xn-abc",        /* "xn--" is the reserved prefix, not "xn-" */
        "sthree",        /* "sthree-" is reserved, "sthree" alone is not */
        "abc-s3alia",
        "abc-ol-s3",
        "a--b",
        "012345678901234567890123456789012345678901234567890123456789012", /* 63 */
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(ok); i++) {
        if (!api__bucket_name_valid(ok[i])) fail_msg("\"%s\" should be valid", ok[i]);
    }
}

static void test_bucket_names_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "ab",
        "0123456789012345678901234567890123456789012345678901234567890123", /* 64 */
        "Abc",
        "abC",
        "my_bucket",
        "my bucket",
        "my/bucket",
        "-abc",
        "abc-",
        ".abc",
        "abc.",
        "a..b",
        "my..bucket",
        "192.168.5.4",
        "10.0.0.1",
        "0.0.0.0",
        "999.999.999.999",
        "xn--abc",
        "sthree-abc",
        "sthree-configurator",
        "amzn-s3-demo-bucket",
        "abc-s3alias",
        "abc--ol-s3",
        "abc.mrap",
        "abc--x-s3",
        "abc--table-s3",
        "ab\xC3\xA7",
        "abc\n",
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(bad); i++) {
        if (api__bucket_name_valid(bad[i])) fail_msg("\"%s\" should be invalid", bad[i]);
    }
    assert_false(api__bucket_name_valid(NULL));
}

/* ---------------- object keys ---------------- */

static void test_object_keys(void **state)
{
    (void)state;
    static const char *const ok[] = {"a",
                                     "photos/2006/February/sample.jpg",
                                     " spaced ",
                                     "\x7F",
                                     "\xE6\x97\xA5\xE6\x9C\xAC",
                                     "\xF0\x9F\x98\x80",
                                     "\xF4\x8F\xBF\xBF",
                                     "\xEF\xBF\xBF",
                                     "../..//x",
                                     "%41+&=?"};
    for (size_t i = 0; i < TERN_ARRAY_LEN(ok); i++)
        assert_int_equal(api__object_key_check(ok[i], strlen(ok[i])), 0);
    static const char *const bad_utf8[] = {
        "\x80",             /* lone continuation byte */
        "\xC0\xAF",         /* overlong '/' */
        "\xE0\x80\xAF",     /* overlong */
        "\xED\xA0\x80",     /* UTF-16 surrogate */
        "\xF4\x90\x80\x80", /* above U+10FFFF */
        "\xF8\x88\x80\x80\x80",
        "\xFF",
        "\xE2\x82", /* truncated */
        "a\xC3",    /* truncated at the end */
        "\xC3\x28", /* bad continuation */
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(bad_utf8); i++)
        assert_int_equal(api__object_key_check(bad_utf8[i], strlen(bad_utf8[i])), TERN_EINVAL);
    assert_int_equal(api__object_key_check("", 0), TERN_EINVAL);
    assert_int_equal(api__object_key_check(NULL, 0), TERN_EINVAL);
    assert_int_equal(api__object_key_check("a\0b", 3), TERN_EINVAL);
    char key[1026];
    memset(key, 'k', sizeof(key));
    assert_int_equal(api__object_key_check(key, 1024), 0);
    assert_int_equal(api__object_key_check(key, 1025), TERN_ETOOBIG);
    /* A truncated sequence inside the length is caught even if the buffer continues. */
    assert_int_equal(api__object_key_check("\xE6\x97\xA5", 2), TERN_EINVAL);
}

/* ---------------- Range ---------------- */

static void test_range(void **state)
{
    (void)state;
    static const struct {
        const char *header;
        uint64_t size;
        int rc;
        uint64_t first, last;
    } cases[] = {
        {"bytes=0-499", 1000, 0, 0, 499},
        {"bytes=500-999", 1000, 0, 500, 999},
        {"bytes=500-", 1000, 0, 500, 999},
        {"bytes=-500", 1000, 0, 500, 999},
        {"bytes=-1", 1000, 0, 999, 999},
        {"bytes=-1500", 1000, 0, 0, 999},
        {"bytes=-1000", 1000, 0, 0, 999},
        {"bytes=0-0", 1, 0, 0, 0},
        {"bytes=0-", 1, 0, 0, 0},
        {"bytes=999-", 1000, 0, 999, 999},
        {"bytes=0-5000", 1000, 0, 0, 999},
        {"bytes=0-99999999999999999999999", 1000, 0, 0, 999},
        {"BYTES=1-2", 1000, 0, 1, 2},
        {" bytes=1-2 ", 1000, 0, 1, 2},
        {"bytes=1000-", 1000, TERN_ERANGE, 0, 0},
        {"bytes=1000-2000", 1000, TERN_ERANGE, 0, 0},
        {"bytes=18446744073709551615-", 1000, TERN_ERANGE, 0, 0},
        {"bytes=99999999999999999999999-", 1000, TERN_ERANGE, 0, 0},
        {"bytes=-0", 1000, TERN_ERANGE, 0, 0},
        {"bytes=0-", 0, TERN_ERANGE, 0, 0},
        {"bytes=0-0", 0, TERN_ERANGE, 0, 0},
        {"bytes=-5", 0, TERN_ERANGE, 0, 0},
        {"bytes=5-3", 1000, 1, 0, 0},
        {"bytes=0-1,3-4", 1000, 1, 0, 0},
        {"bytes=0-1,", 1000, 1, 0, 0},
        {"", 1000, 1, 0, 0},
        {"bytes", 1000, 1, 0, 0},
        {"bytes=", 1000, 1, 0, 0},
        {"bytes=-", 1000, 1, 0, 0},
        {"bytes=a-b", 1000, 1, 0, 0},
        {"bytes=0x1-2", 1000, 1, 0, 0},
        {"bits=0-1", 1000, 1, 0, 0},
        {"bytes=0-1x", 1000, 1, 0, 0},
        {"bytes=1-2-3", 1000, 1, 0, 0},
        {"bytes=--1", 1000, 1, 0, 0},
        {"bytes=+1-2", 1000, 1, 0, 0},
        {"bytes 0-1", 1000, 1, 0, 0},
        {"items=0-1", 1000, 1, 0, 0},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
        uint64_t first = 77, last = 77;
        int rc = api__range_parse(cases[i].header, cases[i].size, &first, &last);
        if (rc != cases[i].rc)
            fail_msg("\"%s\" size %llu: rc %d, want %d", cases[i].header,
                     (unsigned long long)cases[i].size, rc, cases[i].rc);
        if (rc == 0) {
            assert_int_equal(first, cases[i].first);
            assert_int_equal(last, cases[i].last);
        }
    }
    uint64_t first, last;
    assert_int_equal(api__range_parse(NULL, 10, &first, &last), 1);
}

/* ---------------- dates ---------------- */

static void test_http_date_format(void **state)
{
    (void)state;
    static const struct {
        int64_t ms;
        const char *text;
    } cases[] = {
        {784111777000LL, "Sun, 06 Nov 1994 08:49:37 GMT"},
        {784111777999LL, "Sun, 06 Nov 1994 08:49:37 GMT"},
        {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
        {-1000, "Wed, 31 Dec 1969 23:59:59 GMT"},
        {-1, "Wed, 31 Dec 1969 23:59:59 GMT"},
        {1369353600000LL, "Fri, 24 May 2013 00:00:00 GMT"},
        {951782400000LL, "Tue, 29 Feb 2000 00:00:00 GMT"},
        {-2203848000000LL, "Thu, 01 Mar 1900 12:00:00 GMT"},
        {13574649599000LL, "Tue, 29 Feb 2400 23:59:59 GMT"},
        {253402300799000LL, "Fri, 31 Dec 9999 23:59:59 GMT"},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
        char out[32];
        api__http_date_format(cases[i].ms, out);
        assert_string_equal(out, cases[i].text);
        assert_int_equal(strlen(out), 29);
    }
}

static void test_http_date_parse(void **state)
{
    (void)state;
    static const char *const same[] = {"Sun, 06 Nov 1994 08:49:37 GMT",
                                       "Sunday, 06-Nov-94 08:49:37 GMT",
                                       "Sun Nov  6 08:49:37 1994"};
    for (size_t i = 0; i < TERN_ARRAY_LEN(same); i++) {
        int64_t ms = 0;
        assert_int_equal(api__http_date_parse(same[i], &ms), 0);
        assert_int_equal(ms, 784111777000LL);
    }
    int64_t ms = 0;
    assert_int_equal(api__http_date_parse("Thursday, 01-Jan-15 00:00:00 GMT", &ms), 0);
    assert_int_equal(ms, 1420070400000LL);
    assert_int_equal(api__http_date_parse("Tue Feb 29 00:00:00 2000", &ms), 0);
    assert_int_equal(ms, 951782400000LL);
    assert_int_equal(api__http_date_parse("Fri, 24 May 2013 00:00:00 GMT", &ms), 0);
    assert_int_equal(ms, 1369353600000LL);
    static const char *const bad[] = {
        "",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        " Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun 06 Nov 1994 08:49:37 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 29 Feb 2001 00:00:00 GMT",
        "Sun, 29 Feb 1900 00:00:00 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "1994-11-06T08:49:37Z",
        "784111777",
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(bad); i++) {
        if (api__http_date_parse(bad[i], &ms) != TERN_EPARSE)
            fail_msg("\"%s\" should not parse", bad[i]);
    }
    assert_int_equal(api__http_date_parse(NULL, &ms), TERN_EPARSE);
    /* Leap second 60 is accepted. */
    assert_int_equal(api__http_date_parse("Sat, 31 Dec 2016 23:59:60 GMT", &ms), 0);
    assert_int_equal(ms, 1483228800000LL);
}

static void test_date_round_trips(void **state)
{
    (void)state;
    /* Every day from 1899 to 2401 at a varying time of day: format, parse, compare. */
    for (int64_t day = -25567 - 365; day < 157000; day += 1) {
        int64_t ms = (day * 86400 + (day * 7919) % 86400) * 1000;
        char http[32], iso[32];
        api__http_date_format(ms, http);
        int64_t back = 0;
        if (api__http_date_parse(http, &back) != 0 || back != ms)
            fail_msg("day %lld: \"%s\" -> %lld", (long long)day, http, (long long)back);
        api__iso8601_format(ms, iso);
        char amz[17] = {iso[0],  iso[1],  iso[2],  iso[3],  iso[5],  iso[6],  iso[8], iso[9], 'T',
                        iso[11], iso[12], iso[14], iso[15], iso[17], iso[18], 'Z',    '\0'};
        if (api__amz_date_parse(amz, &back) != 0 || back != ms)
            fail_msg("day %lld: \"%s\" -> %lld", (long long)day, amz, (long long)back);
    }
}

static void test_iso_and_amz_dates(void **state)
{
    (void)state;
    char out[32];
    api__iso8601_format(1255369830000LL, out);
    assert_string_equal(out, "2009-10-12T17:50:30.000Z");
    api__iso8601_format(1255369830123LL, out);
    assert_string_equal(out, "2009-10-12T17:50:30.123Z");
    api__iso8601_format(-1, out);
    assert_string_equal(out, "1969-12-31T23:59:59.999Z");
    api__iso8601_format(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    int64_t ms = 0;
    assert_int_equal(api__amz_date_parse("20130524T000000Z", &ms), 0);
    assert_int_equal(ms, 1369353600000LL);
    assert_int_equal(api__amz_date_parse("20150830T123600Z", &ms), 0);
    assert_int_equal(ms, 1440938160000LL);
    assert_int_equal(api__amz_date_parse("20000229T235959Z", &ms), 0);
    assert_int_equal(ms, 951868799000LL);
    static const char *const bad[] = {
        "",
        "20130524T000000",
        "20130524T000000z",
        "20130524t000000Z",
        "2013-05-24T00:00:00Z",
        "20130524T000000Z ",
        "20130524T0000000Z",
        "2013052T000000Z",
        "20131324T000000Z",
        "20130024T000000Z",
        "20130532T000000Z",
        "20130431T000000Z",
        "20010229T000000Z",
        "20130524T250000Z",
        "20130524T006000Z",
        "20130524T000061Z",
        "2013O524T000000Z",
        "+0130524T000000Z",
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(bad); i++) {
        if (api__amz_date_parse(bad[i], &ms) != TERN_EPARSE)
            fail_msg("\"%s\" should not parse", bad[i]);
    }
    assert_int_equal(api__amz_date_parse(NULL, &ms), TERN_EPARSE);
}

/* ---------------- S3 errors ---------------- */

static void test_error_statuses(void **state)
{
    (void)state;
    static const struct {
        const char *code;
        int status;
    } cases[] = {
        {"AccessDenied", 403},
        {"AccountProblem", 403},
        {"AuthorizationHeaderMalformed", 400},
        {"AuthorizationQueryParametersError", 400},
        {"BadDigest", 400},
        {"BucketAlreadyExists", 409},
        {"BucketAlreadyOwnedByYou", 409},
        {"BucketNotEmpty", 409},
        {"EntityTooLarge", 400},
        {"EntityTooSmall", 400},
        {"IncompleteBody", 400},
        {"InsufficientStorage", 507},
        {"InternalError", 500},
        {"InvalidAccessKeyId", 403},
        {"InvalidArgument", 400},
        {"InvalidBucketName", 400},
        {"InvalidDigest", 400},
        {"InvalidObjectState", 403},
        {"InvalidPart", 400},
        {"InvalidPartOrder", 400},
        {"InvalidRange", 416},
        {"InvalidRequest", 400},
        {"KeyTooLongError", 400},
        {"MalformedXML", 400},
        {"MetadataTooLarge", 400},
        {"MethodNotAllowed", 405},
        {"MissingContentLength", 411},
        {"MissingRequestBodyError", 400},
        {"MissingSecurityHeader", 400},
        {"NoSuchBucket", 404},
        {"NoSuchKey", 404},
        {"NoSuchUpload", 404},
        {"NotImplemented", 501},
        {"NotModified", 304},
        {"PreconditionFailed", 412},
        {"RequestHeaderSectionTooLarge", 400},
        {"RequestTimeTooSkewed", 403},
        {"RequestTimeout", 400},
        {"ServiceUnavailable", 503},
        {"SignatureDoesNotMatch", 403},
        {"SlowDown", 503},
        {"XAmzContentSHA256Mismatch", 400},
        {"NoSuchThing", 500},
        {"nosuchkey", 500},
        {"", 500},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
        if (api__s3_error_status(cases[i].code) != cases[i].status)
            fail_msg("%s: %d, want %d", cases[i].code, api__s3_error_status(cases[i].code),
                     cases[i].status);
    }
    assert_int_equal(api__s3_error_status(NULL), 500);
}

static void test_error_xml(void **state)
{
    (void)state;
    api__buf b = {0};
    assert_int_equal(api__s3_error_xml(&b, "NoSuchKey", "The specified key does not exist.",
                                       "/mybucket/a<b>&c.txt", "4442587FB7D0A2F9"),
                     0);
    assert_string_equal(b.data, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                "<Error><Code>NoSuchKey</Code>"
                                "<Message>The specified key does not exist.</Message>"
                                "<Resource>/mybucket/a&lt;b&gt;&amp;c.txt</Resource>"
                                "<RequestId>4442587FB7D0A2F9</RequestId></Error>");
    api__buf_reset(&b);
    /* Without a message the table's default text is used; absent fields are left out. */
    assert_int_equal(api__s3_error_xml(&b, "InvalidRange", NULL, NULL, NULL), 0);
    assert_string_equal(b.data, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                "<Error><Code>InvalidRange</Code>"
                                "<Message>The requested range is not satisfiable</Message>"
                                "</Error>");
    api__buf_reset(&b);
    assert_int_equal(api__s3_error_xml(&b, "Custom", "quote \" and ' apostrophe", "", "id"), 0);
    assert_string_equal(b.data, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                "<Error><Code>Custom</Code>"
                                "<Message>quote &quot; and &apos; apostrophe</Message>"
                                "<Resource></Resource><RequestId>id</RequestId></Error>");
    api__buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_names_valid), cmocka_unit_test(test_bucket_names_invalid),
        cmocka_unit_test(test_object_keys),        cmocka_unit_test(test_range),
        cmocka_unit_test(test_http_date_format),   cmocka_unit_test(test_http_date_parse),
        cmocka_unit_test(test_date_round_trips),   cmocka_unit_test(test_iso_and_amz_dates),
        cmocka_unit_test(test_error_statuses),     cmocka_unit_test(test_error_xml),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
