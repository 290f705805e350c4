/* Error table, clocks and hex helpers shared by every module. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

const char *tern_strerror(int code)
{
    if (code == 0) return "ok";
    switch (code) {
#define TERN_ERR_CASE(name, value, text)                                                           \
    case TERN_##name:                                                                              \
        return text;
        TERN_ERRNO_MAP(TERN_ERR_CASE)
#undef TERN_ERR_CASE
    }
    return "unknown error";
}

const char *tern_errname(int code)
{
    if (code == 0) return "OK";
    switch (code) {
#define TERN_ERR_NAME(name, value, text)                                                           \
    case TERN_##name:                                                                              \
        return "TERN_" #name;
        TERN_ERRNO_MAP(TERN_ERR_NAME)
#undef TERN_ERR_NAME
    }
    return "TERN_UNKNOWN";
}

int64_t tern_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t tern_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void tern_hex(const uint8_t *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int tern_unhex(const char *hex, size_t hex_len, uint8_t *out)
{
    if (hex_len % 2 != 0) return TERN_EPARSE;
    for (size_t i = 0; i < hex_len / 2; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return TERN_EPARSE;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void tern_errmsg(char *buf, size_t buf_len, const char *fmt, ...)
{
    if (buf == NULL || buf_len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, buf_len, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- hybrid logical clock */

static uint64_t hlc_of_ms(int64_t physical_ms)
{
    /* Before 1970 (a clock reset to zero) counts as 0: the logical part still advances. */
    return physical_ms > 0 ? (uint64_t)physical_ms << TERN_HLC_LOGICAL_BITS : 0;
}

uint64_t tern_hlc_now(tern_hlc *c, int64_t physical_ms)
{
    /* The wall clock wins when it is ahead; otherwise the counter moves on. A counter that
     * overflows carries into the milliseconds, which is the same as borrowing one. */
    uint64_t p = hlc_of_ms(physical_ms);
    c->last = p > c->last ? p : c->last + 1;
    return c->last;
}

int tern_hlc_observe(tern_hlc *c, uint64_t remote, int64_t physical_ms)
{
    if (tern_hlc_physical_ms(remote) > physical_ms + TERN_HLC_DRIFT_MS_MAX) return TERN_ERANGE;
    uint64_t p = hlc_of_ms(physical_ms);
    uint64_t seen = remote > c->last ? remote : c->last;
    c->last = p > seen ? p : seen + 1;
    return 0;
}
