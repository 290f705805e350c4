/* Percent-decoding and SigV4 percent-encoding of paths and query strings, and query parsing. */
#include "api_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* A query string with more parameters than this is refused: no S3 request needs nearly as many. */
#define API_QUERY_PARAMS_MAX 1000

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int decode(const char *in, size_t len, bool plus_is_space, char **out, size_t *out_len)
{
    char *res = malloc(len + 1);
    if (res == NULL) return TERN_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%') {
            if (len - i < 3) goto bad;
            int h = hex_digit(in[i + 1]), l = hex_digit(in[i + 2]);
            if (h < 0 || l < 0) goto bad;
            res[n++] = (char)(h << 4 | l);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            res[n++] = ' ';
        } else {
            res[n++] = c;
        }
    }
    res[n] = '\0';
    *out = res;
    if (out_len != NULL) *out_len = n;
    return 0;
bad:
    free(res);
    return TERN_EPARSE;
}

int api__uri_decode(const char *in, size_t len, char **out, size_t *out_len)
{
    return decode(in, len, false, out, out_len);
}

int api__query_decode(const char *in, size_t len, char **out, size_t *out_len)
{
    return decode(in, len, true, out, out_len);
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int api__uri_encode(api__buf *out, const char *s, size_t len, bool encode_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    /* Ensure out->data exists even for an empty input. */
    int rc = api__buf_append(out, "", 0);
    for (size_t i = 0; rc == 0 && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (c == '/' && !encode_slash)) {
            rc = api__buf_append(out, &s[i], 1);
        } else {
            char esc[3] = {'%', digits[c >> 4], digits[c & 15]};
            rc = api__buf_append(out, esc, 3);
        }
    }
    return rc;
}

void api__query_free(api__param *params, size_t count)
{
    if (params == NULL) return;
    for (size_t i = 0; i < count; i++) {
        free(params[i].name);
        free(params[i].value);
    }
    free(params);
}

/* Decodes one "name[=value]" segment into *p. */
static int parse_param(const char *seg, size_t len, api__param *p)
{
    const char *eq = memchr(seg, '=', len);
    size_t name_len = eq != NULL ? (size_t)(eq - seg) : len;
    int rc = api__query_decode(seg, name_len, &p->name, NULL);
    if (rc != 0) return rc;
    if (eq != NULL) {
        rc = api__query_decode(eq + 1, len - name_len - 1, &p->value, NULL);
    } else {
        rc = api__query_decode("", 0, &p->value, NULL);
    }
    if (rc != 0) {
        free(p->name);
        p->name = NULL;
    }
    return rc;
}

int api__query_parse(const char *query, size_t len, api__param **out, size_t *count)
{
    assert(out != NULL && count != NULL);
    *out = NULL;
    *count = 0;
    size_t segments = 1;
    for (size_t i = 0; i < len; i++)
        segments += query[i] == '&';
    if (segments > API_QUERY_PARAMS_MAX) return TERN_ETOOBIG;
    api__param *params = calloc(segments, sizeof(*params));
    if (params == NULL) return TERN_ENOMEM;
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && query[i] != '&') continue;
        /* Empty segments ("a=1&&b", a trailing '&') carry nothing and are skipped. */
        if (i > start) {
            int rc = parse_param(query + start, i - start, &params[n]);
            if (rc != 0) {
                api__query_free(params, n);
                return rc;
            }
            n++;
        }
        start = i + 1;
    }
    *out = params;
    *count = n;
    return 0;
}

const char *api__query_get(const api__param *params, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(params[i].name, name) == 0) return params[i].value;
    }
    return NULL;
}
