/* Shared by the store unit suites: a store in a fresh temp directory, and block helpers. */
#ifndef TERN_TEST_STORE_FIXTURE_H
#define TERN_TEST_STORE_FIXTURE_H

#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "node.h"

/* cmocka.h (with its setjmp/stdarg/stddef prerequisites) is included by the suite first. */

typedef struct {
    char dir[64];
    node_store *s;
    bool sync_writes;
    bool replicated;
} fixture;

static inline void fixture_open(fixture *f)
{
    node_store_options o = {.data_dir = f->dir,
                            .block_cache_bytes = 8u << 20,
                            .write_buffer_bytes = 8u << 20,
                            .sync_writes = f->sync_writes,
                            .replicated = f->replicated};
    char errmsg[256] = "";
    int rc = node_store_open(&o, &f->s, errmsg, sizeof errmsg);
    if (rc != 0) fail_msg("open %s: %s (%s)", f->dir, tern_errname(rc), errmsg);
}

static inline void fixture_close(fixture *f)
{
    node_store_close(f->s);
    f->s = NULL;
}

static inline void fixture_reopen(fixture *f)
{
    fixture_close(f);
    fixture_open(f);
}

/* cmocka setup: a store in a new /tmp/tern-store-XXXXXX. */
static inline int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (f == NULL) return -1;
    strcpy(f->dir, "/tmp/tern-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL) return -1;
    fixture_open(f);
    *state = f;
    return 0;
}

static inline int fixture_rm_entry(const char *path, const struct stat *st, int flag,
                                   struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* cmocka teardown: closes the store and removes its directory. */
static inline int teardown(void **state)
{
    fixture *f = *state;
    node_store_close(f->s);
    nftw(f->dir, fixture_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Deterministic pseudo-random bytes: different seeds give different blocks. */
static inline void fill(uint8_t *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
}

/* Puts (and pins) a block of len bytes made from seed; returns its reference. */
static inline node_block_ref put_block(node_store *s, uint32_t seed, size_t len)
{
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    fill(buf, len, seed);
    node_block_ref ref = {.size_bytes = (uint32_t)len};
    node_block_hash(buf, len, &ref.id);
    assert_int_equal(node_store_block_put(s, &ref.id, buf, len), 0);
    free(buf);
    return ref;
}

#endif
