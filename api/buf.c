/* Growable, always NUL-terminated byte buffer used to build responses, canonical requests and XML.
 */
#include "api_internal.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for `extra` more bytes plus the terminating NUL. */
static int buf_reserve(api__buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) return TERN_ENOMEM;
    size_t need = b->len + extra + 1;
    if (b->data != NULL && need <= b->cap) return 0;
    size_t cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need) {
        /* Doubling keeps appends amortized O(1); saturate rather than wrap. */
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    char *data = realloc(b->data, cap);
    if (data == NULL) return TERN_ENOMEM;
    if (b->data == NULL) data[0] = '\0';
    b->data = data;
    b->cap = cap;
    return 0;
}

int api__buf_append(api__buf *b, const void *data, size_t len)
{
    assert(b != NULL);
    assert(data != NULL || len == 0);
    int rc = buf_reserve(b, len);
    if (rc != 0) return rc;
    if (len > 0) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int api__buf_append_str(api__buf *b, const char *s)
{
    return api__buf_append(b, s, strlen(s));
}

int api__buf_printf(api__buf *b, const char *fmt, ...)
{
    assert(b != NULL);
    /* Reserve a little first so the common short case formats in one pass. */
    int rc = buf_reserve(b, 64);
    if (rc != 0) return rc;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->data[b->len] = '\0';
        return TERN_EINVAL;
    }
    if ((size_t)n >= b->cap - b->len) {
        rc = buf_reserve(b, (size_t)n);
        if (rc != 0) {
            b->data[b->len] = '\0';
            return rc;
        }
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
    return 0;
}

void api__buf_reset(api__buf *b)
{
    b->len = 0;
    if (b->data != NULL) b->data[0] = '\0';
}

void api__buf_free(api__buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}
