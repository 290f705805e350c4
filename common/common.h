/* Shared by every tern module: the one error-code table and small helpers (libc only). */
#ifndef TERN_COMMON_H
#define TERN_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define TERN_VERSION "0.1.0"

/*
 * Every fallible function in tern returns 0 on success or one of these
 * negative codes. The X-macro generates the enum and tern_strerror() so the
 * table is the single place a code is defined (the libuv UV_ERRNO_MAP rule).
 */
#define TERN_ERRNO_MAP(X)                                                                          \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EIO, -3, "I/O error")                                                                        \
    X(ENOTFOUND, -4, "not found")                                                                  \
    X(EEXIST, -5, "already exists")                                                                \
    X(ENOTEMPTY, -6, "not empty")                                                                  \
    X(ECORRUPT, -7, "data corruption detected")                                                    \
    X(ENOSPC, -8, "no space left on device")                                                       \
    X(ETOOBIG, -9, "too large")                                                                    \
    X(EPARSE, -10, "malformed input")                                                              \
    X(EAUTH, -11, "authentication failed")                                                         \
    X(ECONFLICT, -12, "conflicting concurrent change")                                             \
    X(EFAILED, -13, "store is in a failed state after a disk error")                               \
    X(ECLOSED, -14, "shutting down")                                                               \
    X(EAGAIN, -15, "resource temporarily unavailable")                                             \
    X(ETIMEDOUT, -16, "timed out")                                                                 \
    X(ECONN, -17, "connection failed")                                                             \
    X(ERANGE, -18, "out of range")                                                                 \
    X(EPRECOND, -19, "precondition failed")                                                        \
    X(ENOTSUP, -20, "not supported")                                                               \
    X(EUNAVAIL, -21, "no leader: the region group is unavailable")

enum {
#define TERN_ERR_ENUM(name, value, text) TERN_##name = (value),
    TERN_ERRNO_MAP(TERN_ERR_ENUM)
#undef TERN_ERR_ENUM
};

/* Returns a static description of a tern error code (or of 0, "ok"). */
const char *tern_strerror(int code);
/* Returns the symbolic name ("TERN_ENOTFOUND") of a tern error code. */
const char *tern_errname(int code);

/* Wall-clock milliseconds since the Unix epoch (not for pure modules: raft/ and placement/). */
int64_t tern_now_ms(void);
/* Monotonic nanoseconds, for latency measurement. */
uint64_t tern_mono_ns(void);

/* Lowercase hex of len bytes into out (2*len+1 bytes with the NUL). */
void tern_hex(const uint8_t *bytes, size_t len, char *out);
/* Parses 2*len hex digits; returns 0 or TERN_EPARSE. */
int tern_unhex(const char *hex, size_t hex_len, uint8_t *out);

/* snprintf into a fixed buffer that never overflows and is always terminated. */
void tern_errmsg(char *buf, size_t buf_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define TERN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define TERN_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define TERN_MAX(a, b)    ((a) > (b) ? (a) : (b))

/* Little-endian integers in byte buffers (every on-disk and on-wire format of ours). */
/* splitmix64 (Steele, Lea and Flood): a seeded stream of well-mixed 64-bit values, the same on
 * every platform; used to seed generators and as the simulator's own generator. */
static inline uint64_t tern_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/*
 * Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014): a
 * timestamp is physical milliseconds in the high 48 bits and a logical
 * counter in the low 16, so timestamps compare as plain integers, never go
 * backwards even when the wall clock does, and stay within the clock drift
 * of real time. Object versions across regions are (timestamp, region id),
 * compared by tern_version_cmp: the last writer wins, ties broken by region.
 * Pure: the physical time is an argument.
 */
#define TERN_HLC_LOGICAL_BITS 16
/* A remote timestamp further ahead of the local clock than this is refused (a peer with a
 * broken clock must not drag every region's versions into the future). */
#define TERN_HLC_DRIFT_MS_MAX (60 * 1000)

typedef struct {
    uint64_t last; /* the latest timestamp issued or observed */
} tern_hlc;

/* A timestamp for a local event (a write) at wall time physical_ms: > every earlier one. */
uint64_t tern_hlc_now(tern_hlc *c, int64_t physical_ms);
/* Merges a timestamp received from another region; TERN_ERANGE (and no change) when it is
 * more than TERN_HLC_DRIFT_MS_MAX ahead of physical_ms. */
int tern_hlc_observe(tern_hlc *c, uint64_t remote, int64_t physical_ms);

static inline int64_t tern_hlc_physical_ms(uint64_t t)
{
    return (int64_t)(t >> TERN_HLC_LOGICAL_BITS);
}

static inline uint32_t tern_hlc_logical(uint64_t t)
{
    return (uint32_t)(t & ((1u << TERN_HLC_LOGICAL_BITS) - 1));
}

/* <0, 0, >0 as version (hlc_a, region_a) is older than, the same as, newer than b. */
static inline int tern_version_cmp(uint64_t hlc_a, uint32_t region_a, uint64_t hlc_b,
                                   uint32_t region_b)
{
    if (hlc_a != hlc_b) return hlc_a < hlc_b ? -1 : 1;
    if (region_a != region_b) return region_a < region_b ? -1 : 1;
    return 0;
}

static inline void tern_le_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void tern_le_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t tern_le_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t tern_le_get_u64(const uint8_t *p)
{
    return (uint64_t)tern_le_get_u32(p) | (uint64_t)tern_le_get_u32(p + 4) << 32;
}

#endif
