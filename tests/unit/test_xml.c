/* Unit tests of XML escaping and the CompleteMultipartUpload, Delete and CreateBucket parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api_internal.h"

#define NS "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""

/* ---------------- escaping ---------------- */

static void test_escape(void **state)
{
    (void)state;
    api__buf b = {0};
    const char *s = "a&b<c>d\"e'f";
    assert_int_equal(api__xml_escape(&b, s, strlen(s)), 0);
    assert_string_equal(b.data, "a&amp;b&lt;c&gt;d&quot;e&apos;f");
    api__buf_reset(&b);
    assert_int_equal(api__xml_escape(&b, "", 0), 0);
    assert_string_equal(b.data, "");
    /* Only len bytes are read. */
    assert_int_equal(api__xml_escape(&b, "<<>>", 2), 0);
    assert_string_equal(b.data, "&lt;&lt;");
    api__buf_reset(&b);
    assert_int_equal(api__xml_escape(&b, "plain \xE6\x97\xA5 text", 14), 0);
    assert_string_equal(b.data, "plain \xE6\x97\xA5 text");
    api__buf_reset(&b);
    assert_int_equal(api__xml_element(&b, "Key", "a<b>&c"), 0);
    assert_string_equal(b.data, "<Key>a&lt;b&gt;&amp;c</Key>");
    api__buf_free(&b);
}

/* ---------------- CompleteMultipartUpload ---------------- */

static int parse_complete(const char *xml, api__completed_part **parts, size_t *count, char *err)
{
    return api__xml_parse_complete_multipart(xml, strlen(xml), parts, count, err, 200);
}

static void test_complete_multipart(void **state)
{
    (void)state;
    static const char xml[] =
        "\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<!-- written by a client -->\n"
        "<CompleteMultipartUpload " NS ">\n"
        "  <Part>\n"
        "    <PartNumber>1</PartNumber>\n"
        "    <ETag>\"a54357aff0632cce46d942af68356b38\"</ETag>\n"
        "  </Part>\n"
        "  <Part><PartNumber> 2 </PartNumber>"
        "<ETag>&quot;0c78aef83f66abc1fa1e8477f296d394&quot;</ETag></Part>\n"
        "  <Part><ETag>acbd18db4cc2f85cedef654fccc4a4d8</ETag><PartNumber>3</PartNumber>"
        "<ChecksumCRC32>AAAAAA==</ChecksumCRC32><!-- c --><?pi x?></Part>\n"
        "  <Part><PartNumber>10000</PartNumber><ETag><![CDATA[\"cd-tag-2\"]]></ETag></Part>\n"
        "  <Part><PartNumber>4</PartNumber><ETag>&#34;abc&#x22;</ETag></Part>\n"
        "</CompleteMultipartUpload>\n<!-- trailing comment -->\n";
    api__completed_part *parts = NULL;
    size_t count = 0;
    char err[200] = "";
    assert_int_equal(parse_complete(xml, &parts, &count, err), 0);
    assert_int_equal(count, 5);
    assert_int_equal(parts[0].part_number, 1);
    assert_string_equal(parts[0].etag, "a54357aff0632cce46d942af68356b38");
    assert_int_equal(parts[1].part_number, 2);
    assert_string_equal(parts[1].etag, "0c78aef83f66abc1fa1e8477f296d394");
    assert_int_equal(parts[2].part_number, 3);
    assert_string_equal(parts[2].etag, "acbd18db4cc2f85cedef654fccc4a4d8");
    assert_int_equal(parts[3].part_number, 10000);
    assert_string_equal(parts[3].etag, "cd-tag-2");
    assert_int_equal(parts[4].part_number, 4);
    assert_string_equal(parts[4].etag, "abc");
    free(parts);
    /* Namespace prefixes are matched on the local name; attributes are ignored. */
    static const char prefixed[] =
        "<s3:CompleteMultipartUpload xmlns:s3='http://s3.amazonaws.com/doc/2006-03-01/' a = \"1\">"
        "<s3:Part><s3:PartNumber>7</s3:PartNumber><s3:ETag>\"x-1\"</s3:ETag></s3:Part>"
        "</s3:CompleteMultipartUpload>";
    assert_int_equal(parse_complete(prefixed, &parts, &count, err), 0);
    assert_int_equal(count, 1);
    assert_int_equal(parts[0].part_number, 7);
    assert_string_equal(parts[0].etag, "x-1");
    free(parts);
}

static void test_complete_multipart_limits(void **state)
{
    (void)state;
    api__buf b = {0};
    assert_int_equal(api__buf_append_str(&b, "<CompleteMultipartUpload>"), 0);
    for (int i = 1; i <= 10000; i++) {
        assert_int_equal(api__buf_printf(&b,
                                         "<Part><PartNumber>%d</PartNumber><ETag>\"%032x\"</ETag>"
                                         "<ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>",
                                         i, i),
                         0);
    }
    assert_int_equal(api__buf_append_str(&b, "</CompleteMultipartUpload>"), 0);
    api__completed_part *parts = NULL;
    size_t count = 0;
    char err[200];
    assert_int_equal(api__xml_parse_complete_multipart(b.data, b.len, &parts, &count, err, 200), 0);
    assert_int_equal(count, 10000);
    assert_int_equal(parts[9999].part_number, 10000);
    assert_string_equal(parts[9999].etag, "00000000000000000000000000002710");
    free(parts);
    /* One part more is refused. */
    b.len -= strlen("</CompleteMultipartUpload>");
    assert_int_equal(api__buf_append_str(&b, "<Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>"
                                             "</CompleteMultipartUpload>"),
                     0);
    assert_int_equal(api__xml_parse_complete_multipart(b.data, b.len, &parts, &count, err, 200),
                     TERN_EPARSE);
    assert_null(parts);
    assert_int_equal(count, 0);
    assert_non_null(strstr(err, "10000"));
    api__buf_free(&b);
}

#define PART(n, e) "<Part><PartNumber>" n "</PartNumber><ETag>" e "</ETag></Part>"
#define CMU(body)  "<CompleteMultipartUpload>" body "</CompleteMultipartUpload>"

static void test_complete_multipart_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *xml;
        const char *error; /* substring of errmsg */
    } cases[] = {
        {"", "no root"},
        {"   \n", "no root"},
        {"<?xml version=\"1.0\"?>", "no root"},
        {CMU(""), "1 to 10000"},
        {CMU("<Other/>"), "1 to 10000"},
        {"<CompleteMultipartUpload/>", "1 to 10000"},
        {"<Complete>" PART("1", "x") "</Complete>", "root element"},
        {CMU(PART("0", "x")), "PartNumber"},
        {CMU(PART("10001", "x")), "PartNumber"},
        {CMU(PART("-1", "x")), "PartNumber"},
        {CMU(PART("+1", "x")), "PartNumber"},
        {CMU(PART("1a", "x")), "PartNumber"},
        {CMU(PART("", "x")), "PartNumber"},
        {CMU(PART("99999999999", "x")), "PartNumber"},
        {CMU(PART("1", "")), "ETag"},
        {CMU(PART("1", "\"\"")), "ETag"},
        {CMU(PART("1", "0123456789012345678901234567890123456789012345678901234567890123456789"
                       "0123456789")),
         "ETag"},
        {CMU("<Part><PartNumber>1</PartNumber></Part>"), "needs"},
        {CMU("<Part><ETag>x</ETag></Part>"), "needs"},
        {CMU("<Part><PartNumber>1</PartNumber><PartNumber>2</PartNumber><ETag>x</ETag></Part>"),
         "more than one"},
        {CMU("<Part><PartNumber><n>1</n></PartNumber><ETag>x</ETag></Part>"), "must not contain"},
        {CMU("<Part>junk" PART("1", "x") "</Part>"), "mixed"},
        {CMU(PART("1", "x")) "<CompleteMultipartUpload/>", "after the root"},
        {CMU(PART("1", "x")) "text", "after the root"},
        {"text" CMU(PART("1", "x")), "before the root"},
        {"<CompleteMultipartUpload><Part></CompleteMultipartUpload>", "does not match"},
        {"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>",
         "end of document"},
        {"<CompleteMultipartUpload>", "end of document"},
        {CMU(PART("1", "a&amp")), "entity"},
        {CMU(PART("1", "a&foo;")), "entity"},
        {CMU(PART("1", "&#0;")), "forbidden"},
        {CMU(PART("1", "&#xD800;")), "forbidden"},
        {CMU(PART("1", "&#x110000;")), "out of range"},
        {CMU(PART("1", "&#;")), "malformed character reference"},
        {CMU(PART("1", "&#x;")), "malformed character reference"},
        {CMU(PART("1", "&#12a;")), "malformed character reference"},
        {CMU(PART("1", "a\x01")), "control character"},
        {CMU(PART("1", "<![CDATA[x")), "CDATA"},
        {CMU(PART("1", "x")) "<!-- never closed", "comment"},
        {"<CompleteMultipartUpload a=1>" PART("1", "x") "</CompleteMultipartUpload>", "quoted"},
        {"<CompleteMultipartUpload a=\"<\">" PART("1", "x") "</CompleteMultipartUpload>",
         "attribute"},
        {"<CompleteMultipartUpload a=\"1\"b=\"2\">" PART("1", "x") "</CompleteMultipartUpload>",
         "whitespace"},
        {"<CompleteMultipartUpload a>" PART("1", "x") "</CompleteMultipartUpload>", "'='"},
        {"<1CompleteMultipartUpload/>", "XML name"},
        {"< CompleteMultipartUpload/>", "XML name"},
        {CMU("<Part/ >"), "malformed start tag"},
        {CMU("</ >"), "XML name"},
        {"<!DOCTYPE x [<!ENTITY a \"b\">]>" CMU(PART("1", "&a;")), "DOCTYPE"},
        {CMU("<!ENTITY a \"b\">" PART("1", "x")), "DOCTYPE"},
        {CMU("<!ELEMENT a ANY>" PART("1", "x")), "unsupported declaration"},
        {"<![CDATA[x]]>" CMU(PART("1", "x")), "before the root"},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
        print_message("  %zu: %s\n", i, cases[i].xml);
        api__completed_part *parts = (api__completed_part *)1;
        size_t count = 99;
        char err[200] = "";
        assert_int_equal(parse_complete(cases[i].xml, &parts, &count, err), TERN_EPARSE);
        assert_null(parts);
        assert_int_equal(count, 0);
        if (strstr(err, cases[i].error) == NULL)
            fail_msg("case %zu: error \"%s\", expected \"%s\"", i, err, cases[i].error);
    }
    /* A NUL byte inside the declared length. */
    api__completed_part *parts = NULL;
    size_t count = 0;
    char err[200];
    static const char nul[] = CMU(PART("1", "a\0b"));
    assert_int_equal(
        api__xml_parse_complete_multipart(nul, sizeof(nul) - 1, &parts, &count, err, sizeof(err)),
        TERN_EPARSE);
    assert_non_null(strstr(err, "NUL"));
    /* A NULL errmsg buffer is allowed. */
    assert_int_equal(api__xml_parse_complete_multipart("<x", 2, &parts, &count, NULL, 0),
                     TERN_EPARSE);
}

/* The classic "billion laughs" and friends never get as far as expansion. */
static void test_xml_bombs_and_depth(void **state)
{
    (void)state;
    static const char laughs[] =
        "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n"
        " <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
        " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n]>\n"
        "<Delete><Object><Key>&lol3;</Key></Object></Delete>";
    static const char external[] = "<!DOCTYPE foo [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
                                   "<Delete><Object><Key>&xxe;</Key></Object></Delete>";
    char **keys = NULL;
    size_t count = 0;
    bool quiet = true;
    char err[200];
    assert_int_equal(api__xml_parse_delete(laughs, strlen(laughs), &keys, &count, &quiet, err, 200),
                     TERN_EPARSE);
    assert_non_null(strstr(err, "DOCTYPE"));
    assert_false(quiet);
    assert_int_equal(
        api__xml_parse_delete(external, strlen(external), &keys, &count, &quiet, err, 200),
        TERN_EPARSE);
    /* Undeclared entities are refused too (there is no DTD to declare them). */
    static const char undeclared[] = "<Delete><Object><Key>&lol3;</Key></Object></Delete>";
    assert_int_equal(
        api__xml_parse_delete(undeclared, strlen(undeclared), &keys, &count, &quiet, err, 200),
        TERN_EPARSE);
    /* 16 levels are accepted, 17 are not. */
    for (int depth = 16; depth <= 17; depth++) {
        api__buf b = {0};
        assert_int_equal(api__buf_append_str(&b, "<Delete><Object><Key>k</Key></Object>"), 0);
        for (int i = 0; i < depth - 1; i++)
            assert_int_equal(api__buf_append_str(&b, "<x>"), 0);
        for (int i = 0; i < depth - 1; i++)
            assert_int_equal(api__buf_append_str(&b, "</x>"), 0);
        assert_int_equal(api__buf_append_str(&b, "</Delete>"), 0);
        int rc = api__xml_parse_delete(b.data, b.len, &keys, &count, &quiet, err, 200);
        if (depth == 16) {
            assert_int_equal(rc, 0);
            assert_int_equal(count, 1);
            api__strv_free(keys, count);
        } else {
            assert_int_equal(rc, TERN_EPARSE);
            assert_non_null(strstr(err, "deeply"));
        }
        api__buf_free(&b);
    }
    /* Very deep nesting fails fast on the depth bound, not on memory or the stack. */
    api__buf b = {0};
    for (int i = 0; i < 100000; i++)
        assert_int_equal(api__buf_append_str(&b, "<a>"), 0);
    assert_int_equal(api__xml_parse_delete(b.data, b.len, &keys, &count, &quiet, err, 200),
                     TERN_EPARSE);
    assert_non_null(strstr(err, "deeply"));
    /* Too many elements. */
    api__buf_reset(&b);
    assert_int_equal(api__buf_append_str(&b, "<Delete><Object><Key>k</Key></Object>"), 0);
    for (int i = 0; i < 100001; i++)
        assert_int_equal(api__buf_append_str(&b, "<e/>"), 0);
    assert_int_equal(api__buf_append_str(&b, "</Delete>"), 0);
    assert_int_equal(api__xml_parse_delete(b.data, b.len, &keys, &count, &quiet, err, 200),
                     TERN_EPARSE);
    assert_non_null(strstr(err, "too many elements"));
    api__buf_free(&b);
}

/* ---------------- Delete ---------------- */

static int parse_delete(const char *xml, char ***keys, size_t *count, bool *quiet, char *err)
{
    return api__xml_parse_delete(xml, strlen(xml), keys, count, quiet, err, 200);
}

static void test_delete(void **state)
{
    (void)state;
    static const char xml[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n"
        "<Delete " NS ">\r\n"
        "  <Quiet> true </Quiet>\r\n"
        "  <Object><Key>sample1.txt</Key></Object>\r\n"
        "  <Object><Key>sample2.txt</Key><VersionId>OYcLXagmS.WaD..oyH4KRguB95_YhLs7</VersionId>"
        "<ETag>\"x\"</ETag></Object>\r\n"
        "  <Object><Key> spaced key </Key></Object>\r\n"
        "  <Object><Key>a&amp;b&lt;c&gt;&quot;&apos;&#x1F600;&#233;</Key></Object>\r\n"
        "  <Object><Key>line1\r\nline2&#13;</Key></Object>\r\n"
        "  <Object><Key><![CDATA[<raw & cdata>]]></Key></Object>\r\n"
        "</Delete>";
    char **keys = NULL;
    size_t count = 0;
    bool quiet = false;
    char err[200] = "";
    assert_int_equal(parse_delete(xml, &keys, &count, &quiet, err), 0);
    assert_true(quiet);
    assert_int_equal(count, 6);
    assert_string_equal(keys[0], "sample1.txt");
    assert_string_equal(keys[1], "sample2.txt");
    assert_string_equal(keys[2], " spaced key ");
    assert_string_equal(keys[3], "a&b<c>\"'\xF0\x9F\x98\x80\xC3\xA9");
    /* Literal CRLF is normalized to LF as XML requires; &#13; keeps a CR. */
    assert_string_equal(keys[4], "line1\nline2\r");
    assert_string_equal(keys[5], "<raw & cdata>");
    api__strv_free(keys, count);

    static const struct {
        const char *quiet;
        bool want;
    } quiets[] = {{"true", true}, {"false", false}, {"1", true}, {"0", false}, {NULL, false}};
    for (size_t i = 0; i < TERN_ARRAY_LEN(quiets); i++) {
        char doc[200];
        snprintf(doc, sizeof(doc), "<Delete>%s%s%s<Object><Key>k</Key></Object></Delete>",
                 quiets[i].quiet ? "<Quiet>" : "", quiets[i].quiet ? quiets[i].quiet : "",
                 quiets[i].quiet ? "</Quiet>" : "");
        quiet = !quiets[i].want;
        assert_int_equal(parse_delete(doc, &keys, &count, &quiet, err), 0);
        assert_int_equal(quiet, quiets[i].want);
        assert_int_equal(count, 1);
        api__strv_free(keys, count);
    }
}

static void test_delete_limits(void **state)
{
    (void)state;
    char **keys = NULL;
    size_t count = 0;
    bool quiet = false;
    char err[200];
    api__buf b = {0};
    assert_int_equal(api__buf_append_str(&b, "<Delete>"), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(api__buf_printf(&b, "<Object><Key>key-%04d</Key></Object>", i), 0);
    assert_int_equal(api__buf_append_str(&b, "</Delete>"), 0);
    assert_int_equal(api__xml_parse_delete(b.data, b.len, &keys, &count, &quiet, err, 200), 0);
    assert_int_equal(count, 1000);
    assert_string_equal(keys[999], "key-0999");
    api__strv_free(keys, count);
    b.len -= strlen("</Delete>");
    assert_int_equal(api__buf_append_str(&b, "<Object><Key>one-more</Key></Object></Delete>"), 0);
    assert_int_equal(api__xml_parse_delete(b.data, b.len, &keys, &count, &quiet, err, 200),
                     TERN_EPARSE);
    assert_null(keys);
    assert_non_null(strstr(err, "1 to 1000"));
    /* Key length: 1024 bytes are fine, 1025 are not. */
    for (int len = 1024; len <= 1025; len++) {
        api__buf_reset(&b);
        assert_int_equal(api__buf_append_str(&b, "<Delete><Object><Key>"), 0);
        for (int i = 0; i < len; i++)
            assert_int_equal(api__buf_append(&b, "k", 1), 0);
        assert_int_equal(api__buf_append_str(&b, "</Key></Object></Delete>"), 0);
        int rc = api__xml_parse_delete(b.data, b.len, &keys, &count, &quiet, err, 200);
        if (len == 1024) {
            assert_int_equal(rc, 0);
            assert_int_equal(strlen(keys[0]), 1024);
            api__strv_free(keys, count);
        } else {
            assert_int_equal(rc, TERN_EPARSE);
            assert_non_null(strstr(err, "1024"));
        }
    }
    api__buf_free(&b);
}

static void test_delete_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *xml;
        const char *error;
    } cases[] = {
        {"<Delete></Delete>", "1 to 1000"},
        {"<Delete><Quiet>true</Quiet></Delete>", "1 to 1000"},
        {"<Remove><Object><Key>k</Key></Object></Remove>", "root element"},
        {"<Delete><Object><VersionId>v</VersionId></Object></Delete>", "needs a <Key>"},
        {"<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>", "more than one"},
        {"<Delete><Object><Key></Key></Object></Delete>", "Key must be"},
        {"<Delete><Object><Key/></Object></Delete>", "Key must be"},
        {"<Delete><Object><Key>\xC0\xAF</Key></Object></Delete>", "UTF-8"},
        {"<Delete><Object><Key>\xED\xA0\x80</Key></Object></Delete>", "UTF-8"},
        {"<Delete><Object><Key><b/></Key></Object></Delete>", "must not contain"},
        {"<Delete><Object><Key>a<b/></Key></Object></Delete>", "mixed"},
        {"<Delete><Quiet>yes</Quiet><Object><Key>k</Key></Object></Delete>", "Quiet"},
        {"<Delete><Quiet>TRUE</Quiet><Object><Key>k</Key></Object></Delete>", "Quiet"},
        {"<Delete><Quiet>true</Quiet><Quiet>true</Quiet><Object><Key>k</Key></Object></Delete>",
         "more than one"},
        {"<Delete><Object><Key>k</Key></Object></delete>", "does not match"},
        {"<Delete><Object><Key>k</Key></Object></Delete><Delete/>", "after the root"},
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(cases); i++) {
        print_message("  %zu: %s\n", i, cases[i].xml);
        char **keys = (char **)1;
        size_t count = 5;
        bool quiet = true;
        char err[200] = "";
        assert_int_equal(api__xml_parse_delete(cases[i].xml, strlen(cases[i].xml), &keys, &count,
                                               &quiet, err, sizeof(err)),
                         TERN_EPARSE);
        assert_null(keys);
        assert_int_equal(count, 0);
        assert_false(quiet);
        if (strstr(err, cases[i].error) == NULL)
            fail_msg("case %zu: error \"%s\", expected \"%s\"", i, err, cases[i].error);
    }
}

/* ---------------- CreateBucketConfiguration ---------------- */

static void test_create_bucket(void **state)
{
    (void)state;
    char *region = NULL;
    char err[200] = "";
    static const char xml[] = "<CreateBucketConfiguration " NS ">\n"
                              "  <LocationConstraint> eu-west-1 </LocationConstraint>\n"
                              "</CreateBucketConfiguration>";
    assert_int_equal(api__xml_parse_create_bucket(xml, strlen(xml), &region, err, 200), 0);
    assert_string_equal(region, "eu-west-1");
    free(region);
    static const char *const none[] = {
        "<CreateBucketConfiguration/>",
        "<CreateBucketConfiguration><LocationConstraint/></CreateBucketConfiguration>",
        "<CreateBucketConfiguration><LocationConstraint></LocationConstraint>"
        "<Bucket><Type>Directory</Type></Bucket></CreateBucketConfiguration>",
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(none); i++) {
        region = (char *)1;
        assert_int_equal(api__xml_parse_create_bucket(none[i], strlen(none[i]), &region, err, 200),
                         0);
        assert_null(region);
    }
    static const char *const bad[] = {
        "",
        "<CreateBucket/>",
        "<CreateBucketConfiguration><LocationConstraint>a</LocationConstraint>"
        "<LocationConstraint>b</LocationConstraint></CreateBucketConfiguration>",
        "<CreateBucketConfiguration><LocationConstraint><x/></LocationConstraint>"
        "</CreateBucketConfiguration>",
        "<CreateBucketConfiguration><LocationConstraint>a</LocationConstraint>",
        "<!DOCTYPE a><CreateBucketConfiguration/>",
    };
    for (size_t i = 0; i < TERN_ARRAY_LEN(bad); i++) {
        region = (char *)1;
        err[0] = '\0';
        assert_int_equal(api__xml_parse_create_bucket(bad[i], strlen(bad[i]), &region, err, 200),
                         TERN_EPARSE);
        assert_null(region);
        assert_true(strlen(err) > 0);
    }
    api__buf b = {0};
    assert_int_equal(api__buf_append_str(&b, "<CreateBucketConfiguration><LocationConstraint>"), 0);
    for (int i = 0; i < 129; i++)
        assert_int_equal(api__buf_append(&b, "r", 1), 0);
    assert_int_equal(api__buf_append_str(&b, "</LocationConstraint></CreateBucketConfiguration>"),
                     0);
    assert_int_equal(api__xml_parse_create_bucket(b.data, b.len, &region, err, 200), TERN_EPARSE);
    assert_non_null(strstr(err, "too long"));
    api__buf_free(&b);
}

/* Every prefix of a valid document is refused (never crashes, never reads past len). */
static void test_truncations(void **state)
{
    (void)state;
    static const char xml[] = "<?xml version=\"1.0\"?><!--c--><Delete a='&amp;'><Quiet>true</Quiet>"
                              "<Object><Key>k&#x41;<![CDATA[x]]></Key></Object></Delete>";
    size_t n = strlen(xml);
    for (size_t len = 0; len < n; len++) {
        char *copy = malloc(len + 1);
        memcpy(copy, xml, len);
        char **keys = NULL;
        size_t count = 0;
        bool quiet = false;
        char err[200];
        /* No NUL terminator inside the buffer: the parser must stay within len. */
        int rc = api__xml_parse_delete(copy, len, &keys, &count, &quiet, err, sizeof(err));
        assert_int_equal(rc, TERN_EPARSE);
        free(copy);
    }
    char **keys = NULL;
    size_t count = 0;
    bool quiet = false;
    assert_int_equal(api__xml_parse_delete(xml, n, &keys, &count, &quiet, NULL, 0), 0);
    assert_string_equal(keys[0], "kAx");
    api__strv_free(keys, count);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_complete_multipart),
        cmocka_unit_test(test_complete_multipart_limits),
        cmocka_unit_test(test_complete_multipart_invalid),
        cmocka_unit_test(test_xml_bombs_and_depth),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_delete_limits),
        cmocka_unit_test(test_delete_invalid),
        cmocka_unit_test(test_create_bucket),
        cmocka_unit_test(test_truncations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
