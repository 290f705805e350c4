/* Unit tests of the Raft log segments: round trips, rolls, truncation, torn tails, corruption,
 * injected write/sync failures and a crash that drops unsynced data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node.h"
#include "raftlog.h"

/* ---------------- helpers ---------------- */

static char *make_dir(void)
{
    char tmpl[] = "/tmp/tern-raftlog-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    char path[PATH_MAX];
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

/* Number of segment files (names starting with a digit), and the name of the last in order. */
static int count_segments(const char *dir, char *last_name)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    if (last_name) last_name[0] = '\0';
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        n++;
        if (last_name && strcmp(de->d_name, last_name) > 0) strcpy(last_name, de->d_name);
    }
    closedir(d);
    return n;
}

/* Payload of entry index in "generation" gen: length and bytes depend on both. */
static size_t payload_fill(uint64_t index, uint32_t gen, uint8_t *buf)
{
    size_t len = (size_t)((index * 37 + gen * 11) % 300);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(index * 131 + i * 7 + gen);
    return len;
}

static uint64_t term_of(uint64_t index, uint32_t gen)
{
    return 1 + index / 10 + gen * 1000;
}

/* Appends first..last in batches of batch entries. */
static void append_range(node_raftlog *log, uint64_t first, uint64_t last, uint32_t gen,
                         size_t batch)
{
    static uint8_t bufs[64][300];
    node_raftlog_entry e[64];
    assert_true(batch <= 64);
    for (uint64_t i = first; i <= last;) {
        size_t n = 0;
        for (; n < batch && i <= last; n++, i++) {
            size_t len = payload_fill(i, gen, bufs[n]);
            e[n] = (node_raftlog_entry){.index = i,
                                        .term = term_of(i, gen),
                                        .type = (uint32_t)(i % 3),
                                        .data = bufs[n],
                                        .len = len};
        }
        assert_int_equal(node_raftlog_append(log, e, n), 0);
    }
}

static void check_range(node_raftlog *log, uint64_t first, uint64_t last, uint32_t gen)
{
    uint8_t want[300];
    for (uint64_t i = first; i <= last;) {
        node_raftlog_entry *e;
        size_t n;
        assert_int_equal(node_raftlog_read(log, i, last, 1000, &e, &n), 0);
        assert_true(n >= 1);
        size_t bytes = 0;
        for (size_t k = 0; k < n; k++, i++) {
            size_t len = payload_fill(i, gen, want);
            assert_int_equal(e[k].index, i);
            assert_int_equal(e[k].term, term_of(i, gen));
            assert_int_equal(e[k].type, i % 3);
            assert_int_equal(e[k].len, len);
            if (len) assert_memory_equal(e[k].data, want, len);
            bytes += len;
        }
        assert_true(n == 1 || bytes <= 1000);
        node_raftlog_entries_free(e);
    }
}

static node_raftlog *open_ok(const char *dir, uint64_t segment_bytes_max)
{
    node_raftlog_options opts = {.segment_bytes_max = segment_bytes_max};
    node_raftlog *log = NULL;
    char err[512];
    int rv = node_raftlog_open(dir, &opts, &log, err, sizeof err);
    if (rv != 0) fail_msg("open %s: %s (%s)", dir, err, tern_errname(rv));
    return log;
}

static int open_err(const char *dir, char *err, size_t err_len)
{
    node_raftlog *log = NULL;
    int rv = node_raftlog_open(dir, NULL, &log, err, err_len);
    assert_null(log);
    return rv;
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void flip_byte(const char *path, off_t offset)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, offset), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, offset), 1);
    close(fd);
}

/* ---------------- CRC32C ---------------- */

static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(node_raftlog_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(node_raftlog_crc32c_table(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(node_raftlog_crc32c(0, "", 0), 0);
    uint8_t buf[1031];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 97 + 13);
    for (size_t len = 0; len < sizeof buf; len += 17) {
        for (size_t start = 0; start < 9; start++) {
            size_t n = len > start ? len - start : 0;
            uint32_t hw = node_raftlog_crc32c(0, buf + start, n);
            assert_int_equal(hw, node_raftlog_crc32c_table(0, buf + start, n));
            /* Chaining over a split gives the same value. */
            size_t half = n / 2;
            uint32_t chained = node_raftlog_crc32c(node_raftlog_crc32c(0, buf + start, half),
                                                   buf + start + half, n - half);
            assert_int_equal(chained, hw);
        }
    }
}

/* ---------------- round trips ---------------- */

static void test_roundtrip_rolls(void **state)
{
    (void)state;
    char *dir = make_dir();
    node_raftlog *log = open_ok(dir, 4096);
    assert_int_equal(node_raftlog_first_index(log), 0);
    assert_int_equal(node_raftlog_last_index(log), 0);
    uint64_t durable = 99;
    assert_int_equal(node_raftlog_sync(log, &durable), 0);
    assert_int_equal(durable, 0);

    append_range(log, 1, 250, 0, 7);
    assert_int_equal(node_raftlog_sync(log, &durable), 0);
    assert_int_equal(durable, 250);
    assert_int_equal(node_raftlog_first_index(log), 1);
    assert_int_equal(node_raftlog_last_index(log), 250);
    check_range(log, 1, 250, 0);
    assert_true(count_segments(dir, NULL) > 5);
    uint64_t term = 0;
    assert_int_equal(node_raftlog_term(log, 123, &term), 0);
    assert_int_equal(term, term_of(123, 0));
    assert_int_equal(node_raftlog_term(log, 251, &term), TERN_ERANGE);
    assert_int_equal(node_raftlog_term(log, 0, &term), TERN_ERANGE);
    node_raftlog_entry *e;
    size_t n;
    assert_int_equal(node_raftlog_read(log, 240, 251, 1 << 20, &e, &n), TERN_ERANGE);
    assert_null(e);
    /* bytes_max 0 still returns one entry. */
    assert_int_equal(node_raftlog_read(log, 10, 20, 0, &e, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].index, 10);
    node_raftlog_entries_free(e);
    node_raftlog_close(log);

    int segments = count_segments(dir, NULL);
    log = open_ok(dir, 4096);
    assert_int_equal(count_segments(dir, NULL), segments);
    assert_int_equal(node_raftlog_first_index(log), 1);
    assert_int_equal(node_raftlog_last_index(log), 250);
    check_range(log, 1, 250, 0);
    append_range(log, 251, 300, 0, 1);
    node_raftlog_close(log);
    log = open_ok(dir, 4096);
    check_range(log, 1, 300, 0);
    node_raftlog_close(log);
    remove_dir(dir);
}

static void test_truncate_suffix_then_append(void **state)
{
    (void)state;
    char *dir = make_dir();
    node_raftlog *log = open_ok(dir, 4096);
    append_range(log, 1, 200, 0, 5);
    uint64_t durable;
    assert_int_equal(node_raftlog_sync(log, &durable), 0);
    int before = count_segments(dir, NULL);

    /* Into the open segment region, then deep into a closed one. */
    assert_int_equal(node_raftlog_truncate_suffix(log, 190), 0);
    assert_int_equal(node_raftlog_last_index(log), 189);
    assert_int_equal(node_raftlog_truncate_suffix(log, 500), 0); /* past the end: no-op */
    assert_int_equal(node_raftlog_last_index(log), 189);
    assert_int_equal(node_raftlog_truncate_suffix(log, 60), 0);
    assert_int_equal(node_raftlog_last_index(log), 59);
    assert_int_equal(node_raftlog_sync(log, &durable), 0);
    assert_int_equal(durable, 59);
    assert_true(count_segments(dir, NULL) < before);
    check_range(log, 1, 59, 0);
    /* New terms after the truncation point (generation 1 has higher terms). */
    append_range(log, 60, 220, 1, 9);
    check_range(log, 1, 59, 0);
    check_range(log, 60, 220, 1);
    node_raftlog_close(log);

    log = open_ok(dir, 4096);
    assert_int_equal(node_raftlog_last_index(log), 220);
    check_range(log, 1, 59, 0);
    check_range(log, 60, 220, 1);
    /* Truncating everything empties the log; a new start index is accepted. */
    assert_int_equal(node_raftlog_truncate_suffix(log, 1), 0);
    assert_int_equal(node_raftlog_first_index(log), 0);
    assert_int_equal(node_raftlog_last_index(log), 0);
    assert_int_equal(count_segments(dir, NULL), 0);
    append_range(log, 1000, 1010, 2, 4);
    node_raftlog_close(log);
    log = open_ok(dir, 4096);
    assert_int_equal(node_raftlog_first_index(log), 1000);
    check_range(log, 1000, 1010, 2);
    node_raftlog_close(log);
    remove_dir(dir);
}

static void test_compact_prefix(void **state)
{
    (void)state;
    char *dir = make_dir();
    node_raftlog *log = open_ok(dir, 4096);
    append_range(log, 1, 300, 0, 3);
    int before = count_segments(dir, NULL);
    assert_int_equal(node_raftlog_compact_prefix(log, 1), 0); /* nothing before 1 */
    assert_int_equal(count_segments(dir, NULL), before);
    assert_int_equal(node_raftlog_compact_prefix(log, 150), 0);
    int after = count_segments(dir, NULL);
    assert_true(after < before);
    uint64_t first = node_raftlog_first_index(log);
    assert_true(first > 1 && first <= 150);
    uint64_t term;
    assert_int_equal(node_raftlog_term(log, first - 1, &term), TERN_ERANGE);
    check_range(log, first, 300, 0);
    node_raftlog_close(log);

    log = open_ok(dir, 4096);
    assert_int_equal(node_raftlog_first_index(log), first);
    assert_int_equal(node_raftlog_last_index(log), 300);
    check_range(log, first, 300, 0);
    /* Compacting past the end drops every closed segment but keeps the open one. */
    assert_int_equal(node_raftlog_compact_prefix(log, 10000), 0);
    assert_int_equal(count_segments(dir, NULL), 1);
    assert_int_equal(node_raftlog_last_index(log), 300);
    append_range(log, 301, 310, 0, 2);
    check_range(log, node_raftlog_first_index(log), 310, 0);
    node_raftlog_close(log);
    remove_dir(dir);
}

/* Types come from the index without reading payloads; emptying the log lets it restart at any
 * index (how the group driver continues after an installed snapshot). */
static void test_type_and_restart_after_empty(void **state)
{
    (void)state;
    char *dir = make_dir();
    node_raftlog *log = open_ok(dir, 0);
    static const uint8_t payload[3] = {1, 2, 3};
    node_raftlog_entry es[3] = {
        {.index = 1, .term = 1, .type = 1, .data = NULL, .len = 0},
        {.index = 2, .term = 1, .type = 0, .data = payload, .len = 3},
        {.index = 3, .term = 2, .type = 2, .data = payload, .len = 2},
    };
    assert_int_equal(node_raftlog_append(log, es, 3), 0);
    uint32_t type = 99;
    assert_int_equal(node_raftlog_type(log, 1, &type), 0);
    assert_int_equal(type, 1);
    assert_int_equal(node_raftlog_type(log, 3, &type), 0);
    assert_int_equal(type, 2);
    assert_int_equal(node_raftlog_type(log, 4, &type), TERN_ERANGE);
    assert_int_equal(node_raftlog_type(log, 0, &type), TERN_ERANGE);
    assert_int_equal(node_raftlog_truncate_suffix(log, node_raftlog_first_index(log)), 0);
    assert_int_equal(node_raftlog_last_index(log), 0);
    node_raftlog_entry after = {.index = 101, .term = 5, .type = 0, .data = payload, .len = 1};
    assert_int_equal(node_raftlog_append(log, &after, 1), 0);
    assert_int_equal(node_raftlog_sync(log, NULL), 0);
    node_raftlog_close(log);
    log = open_ok(dir, 0);
    assert_int_equal(node_raftlog_first_index(log), 101);
    assert_int_equal(node_raftlog_last_index(log), 101);
    node_raftlog_close(log);
    remove_dir(dir);
}

static void test_hard_state(void **state)
{
    (void)state;
    char *dir = make_dir();
    node_raftlog *log = open_ok(dir, 0);
    node_raftlog_hard_state hs;
    node_raftlog_hard_state_get(log, &hs);
    assert_int_equal(hs.term, 0);
    assert_int_equal(hs.vote, 0);
    assert_int_equal(hs.commit, 0);
    node_raftlog_hard_state want = {.term = 7, .vote = 3, .commit = 41};
    assert_int_equal(node_raftlog_hard_state_save(log, &want), 0);
    want.term = 8;
    assert_int_equal(node_raftlog_hard_state_save(log, &want), 0);
    node_raftlog_close(log);
    log = open_ok(dir, 0);
    node_raftlog_hard_state_get(log, &hs);
    assert_int_equal(hs.term, 8);
    assert_int_equal(hs.vote, 3);
    assert_int_equal(hs.commit, 41);
    node_raftlog_close(log);

    /* A leftover temp file is ignored and removed; a damaged hard state is corruption. */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/hardstate.tmp", dir);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    close(fd);
    log = open_ok(dir, 0);
    node_raftlog_close(log);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof path, "%s/hardstate", dir);
    flip_byte(path, 12);
    char err[512];
    assert_int_equal(open_err(dir, err, sizeof err), TERN_ECORRUPT);
    assert_non_null(strstr(err, "hardstate"));
    remove_dir(dir);
}

/* ---------------- torn tails and corruption ---------------- */

static void segment_path(const char *dir, char *path, size_t path_len)
{
    char name[64];
    assert_true(count_segments(dir, name) > 0);
    snprintf(path, path_len, "%s/%s", dir, name);
}

/* Writes entries 1..5 (one open segment) and returns the offset of record 5. */
static off_t write_small_log(const char *dir)
{
    node_raftlog *log = open_ok(dir, 0);
    append_range(log, 1, 4, 0, 4);
    node_raftlog_close(log);
    char path[PATH_MAX];
    segment_path(dir, path, sizeof path);
    off_t start = file_size(path);
    log = open_ok(dir, 0);
    append_range(log, 5, 5, 0, 1);
    node_raftlog_close(log);
    return start;
}

static void after_torn_reopen(const char *dir, const char *path, off_t start)
{
    node_raftlog *log = open_ok(dir, 0);
    assert_int_equal(node_raftlog_last_index(log), 4);
    check_range(log, 1, 4, 0);
    assert_int_equal(file_size(path), start);
    /* Appending works, with a different payload for 5. */
    append_range(log, 5, 6, 1, 2);
    node_raftlog_close(log);
    log = open_ok(dir, 0);
    check_range(log, 1, 4, 0);
    check_range(log, 5, 6, 1);
    node_raftlog_close(log);
}

static void clear_dir(const char *dir)
{
    char *copy = strdup(dir);
    remove_dir(copy);
    assert_int_equal(mkdir(dir, 0755), 0);
}

static void test_torn_tail_every_offset(void **state)
{
    (void)state;
    char *dir = make_dir();
    char path[PATH_MAX];
    off_t start = write_small_log(dir);
    segment_path(dir, path, sizeof path);
    off_t end = file_size(path);
    assert_true(end - start > NODE_RAFTLOG_RECORD_HEADER_BYTES);
    for (off_t cut = start + 1; cut < end; cut++) {
        clear_dir(dir);
        assert_int_equal(write_small_log(dir), start);
        assert_int_equal(truncate(path, cut), 0);
        after_torn_reopen(dir, path, start);
    }
    /* CRC mismatch in the very last record (payload byte, then header byte). */
    off_t flips[] = {end - 1, start + 20};
    for (size_t i = 0; i < 2; i++) {
        clear_dir(dir);
        write_small_log(dir);
        flip_byte(path, flips[i]);
        after_torn_reopen(dir, path, start);
    }
    /* A torn write that extended the file with zeros after record 4. */
    clear_dir(dir);
    write_small_log(dir);
    assert_int_equal(truncate(path, start), 0);
    assert_int_equal(truncate(path, start + 4096), 0);
    after_torn_reopen(dir, path, start);
    remove_dir(dir);
}

static int name_compare(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_corruption_in_middle(void **state)
{
    (void)state;
    char *dir = make_dir();
    char path[PATH_MAX], err[512];
    /* A CRC mismatch in record 2 of the open segment, followed by valid records. */
    write_small_log(dir);
    segment_path(dir, path, sizeof path);
    off_t second = NODE_RAFTLOG_RECORD_HEADER_BYTES + (off_t)payload_fill(1, 0, (uint8_t[300]){0});
    flip_byte(path, second + NODE_RAFTLOG_RECORD_HEADER_BYTES - 1); /* term byte of entry 2 */
    assert_int_equal(open_err(dir, err, sizeof err), TERN_ECORRUPT);
    assert_non_null(strstr(err, path));
    char want[64];
    snprintf(want, sizeof want, "offset %lld", (long long)second);
    assert_non_null(strstr(err, want));

    /* The last record of a closed segment is never a torn tail. */
    clear_dir(dir);
    node_raftlog *log = open_ok(dir, 4096);
    append_range(log, 1, 100, 0, 1);
    node_raftlog_close(log);
    DIR *d = opendir(dir);
    struct dirent *de;
    char closed[PATH_MAX] = "";
    while ((de = readdir(d)) != NULL)
        if (strlen(de->d_name) == 41 && (closed[0] == '\0' || strcmp(de->d_name, closed) < 0))
            strcpy(closed, de->d_name);
    closedir(d);
    assert_true(closed[0] != '\0');
    char closed_path[PATH_MAX + 64];
    snprintf(closed_path, sizeof closed_path, "%s/%s", dir, closed);
    off_t closed_size = file_size(closed_path);
    flip_byte(closed_path, closed_size - 1);
    assert_int_equal(open_err(dir, err, sizeof err), TERN_ECORRUPT);
    assert_non_null(strstr(err, closed));
    flip_byte(closed_path, closed_size - 1); /* repair */
    log = open_ok(dir, 4096);
    node_raftlog_close(log);
    /* A closed segment cut short. */
    assert_int_equal(truncate(closed_path, closed_size - 1), 0);
    assert_int_equal(open_err(dir, err, sizeof err), TERN_ECORRUPT);
    assert_non_null(strstr(err, closed));

    /* A gap: a closed segment in the middle is missing. */
    clear_dir(dir);
    log = open_ok(dir, 4096);
    append_range(log, 1, 100, 0, 1);
    node_raftlog_close(log);
    char names[64][64];
    int n = 0;
    d = opendir(dir);
    while ((de = readdir(d)) != NULL)
        if (strlen(de->d_name) == 41 && n < 64) strcpy(names[n++], de->d_name);
    closedir(d);
    assert_true(n >= 3);
    qsort(names, (size_t)n, sizeof names[0], name_compare);
    snprintf(closed_path, sizeof closed_path, "%s/%s", dir, names[1]);
    assert_int_equal(unlink(closed_path), 0);
    assert_int_equal(open_err(dir, err, sizeof err), TERN_ECORRUPT);
    assert_non_null(strstr(err, "gap"));
    remove_dir(dir);
}

/* A record with a valid CRC but the wrong index is corruption even at the tail. */
static void test_bad_index_record(void **state)
{
    (void)state;
    char *dir = make_dir();
    char path[PATH_MAX], err[512];
    write_small_log(dir);
    segment_path(dir, path, sizeof path);
    uint8_t rec[NODE_RAFTLOG_RECORD_HEADER_BYTES + 3] = {0};
    uint64_t index = 7, term = term_of(7, 0);
    rec[4] = 3; /* length */
    for (int i = 0; i < 8; i++) {
        rec[16 + i] = (uint8_t)(index >> (8 * i));
        rec[24 + i] = (uint8_t)(term >> (8 * i));
    }
    memcpy(rec + NODE_RAFTLOG_RECORD_HEADER_BYTES, "abc", 3);
    uint32_t crc = node_raftlog_crc32c(0, rec + 4, sizeof rec - 4);
    for (int i = 0; i < 4; i++)
        rec[i] = (uint8_t)(crc >> (8 * i));
    off_t end = file_size(path);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, rec, sizeof rec, end), (ssize_t)sizeof rec);
    close(fd);
    assert_int_equal(open_err(dir, err, sizeof err), TERN_ECORRUPT);
    assert_non_null(strstr(err, "index 7 where 6 was expected"));
    /* The same record with index 6 but a lower term than entry 5 is corruption too. */
    index = 6;
    term = 0;
    for (int i = 0; i < 8; i++) {
        rec[16 + i] = (uint8_t)(index >> (8 * i));
        rec[24 + i] = (uint8_t)(term >> (8 * i));
    }
    crc = node_raftlog_crc32c(0, rec + 4, sizeof rec - 4);
    for (int i = 0; i < 4; i++)
        rec[i] = (uint8_t)(crc >> (8 * i));
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, rec, sizeof rec, end), (ssize_t)sizeof rec);
    close(fd);
    assert_int_equal(open_err(dir, err, sizeof err), TERN_ECORRUPT);
    assert_non_null(strstr(err, "term decreases"));
    remove_dir(dir);
}

/* The directory states a crash can leave in the middle of a roll or a truncation recover. */
static void test_crash_states_of_roll_and_truncate(void **state)
{
    (void)state;
    char *dir = make_dir();
    node_raftlog *log = open_ok(dir, 2048);
    append_range(log, 1, 60, 0, 2);
    node_raftlog_close(log);
    char open_name[64], path[PATH_MAX], closed_path[PATH_MAX];
    int segments = count_segments(dir, open_name);
    assert_non_null(strstr(open_name, "-open"));
    snprintf(path, sizeof path, "%s/%s", dir, open_name);

    /* Roll: the open segment was renamed to closed, no new open segment yet. */
    log = open_ok(dir, 2048);
    uint64_t open_first = strtoull(open_name, NULL, 10);
    snprintf(closed_path, sizeof closed_path, "%s/%020llu-%020llu", dir,
             (unsigned long long)open_first, 60ull);
    node_raftlog_close(log);
    assert_int_equal(rename(path, closed_path), 0);
    log = open_ok(dir, 2048);
    assert_int_equal(node_raftlog_last_index(log), 60);
    append_range(log, 61, 65, 0, 5);
    check_range(log, 1, 65, 0);
    node_raftlog_close(log);
    assert_int_equal(count_segments(dir, NULL), segments + 1);

    /* Truncation into a closed segment: later segments gone and the closed one renamed to
     * -open, but the crash came before its ftruncate. */
    char name[64];
    count_segments(dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(unlink(path), 0);
    char reopened[PATH_MAX];
    snprintf(reopened, sizeof reopened, "%s/%020llu-open", dir, (unsigned long long)open_first);
    assert_int_equal(rename(closed_path, reopened), 0);
    log = open_ok(dir, 2048);
    assert_int_equal(node_raftlog_last_index(log), 60);
    check_range(log, 1, 60, 0);
    append_range(log, 61, 70, 1, 3);
    node_raftlog_close(log);
    log = open_ok(dir, 2048);
    check_range(log, 1, 60, 0);
    check_range(log, 61, 70, 1);
    node_raftlog_close(log);

    /* Two open segments cannot come from any crash. */
    count_segments(dir, name);
    snprintf(path, sizeof path, "%s/%020llu-open", dir, 1ull);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    close(fd);
    char err[512];
    assert_int_equal(open_err(dir, err, sizeof err), TERN_ECORRUPT);
    assert_non_null(strstr(err, "not the last"));
    remove_dir(dir);
}

/* ---------------- group commit from two threads ---------------- */

#define GROUP_COMMIT_LAST 3000

typedef struct {
    node_raftlog *log;
    int syncs;
    bool bad;
} syncer;

static void *sync_thread(void *arg)
{
    syncer *s = arg;
    uint64_t durable = 0, prev = 0;
    while (durable < GROUP_COMMIT_LAST) {
        if (node_raftlog_sync(s->log, &durable) != 0) s->bad = true;
        if (durable < prev || durable > node_raftlog_last_index(s->log)) s->bad = true;
        if (s->bad) break;
        prev = durable;
        s->syncs++;
    }
    return NULL;
}

static void test_group_commit_threads(void **state)
{
    (void)state;
    char *dir = make_dir();
    node_raftlog *log = open_ok(dir, 64 * 1024);
    syncer s = {.log = log};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sync_thread, &s), 0);
    append_range(log, 1, GROUP_COMMIT_LAST, 0, 10);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_false(s.bad);
    assert_true(s.syncs >= 1);
    check_range(log, 1, GROUP_COMMIT_LAST, 0);
    node_raftlog_close(log);
    log = open_ok(dir, 64 * 1024);
    check_range(log, 1, GROUP_COMMIT_LAST, 0);
    node_raftlog_close(log);
    remove_dir(dir);
}

/* ---------------- fault injection ---------------- */

/* The shim fails the nth pwrite or fsync, and remembers how much of each file was synced so
 * a simulated crash can drop everything that was not. */
typedef struct {
    int pwrite_fail_at; /* fail the nth call (1-based); 0: never */
    int pwrite_errno;
    int fsync_fail_at;
    int pwrites, fsyncs;
    struct {
        ino_t inode;
        off_t synced;
    } files[256];
    int files_len;
} shim;

static ssize_t shim_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t offset)
{
    shim *s = ctx;
    if (++s->pwrites == s->pwrite_fail_at) {
        errno = s->pwrite_errno;
        return -1;
    }
    return pwrite(fd, buf, len, offset);
}

static int shim_fsync(void *ctx, int fd, bool data_only)
{
    shim *s = ctx;
    if (++s->fsyncs == s->fsync_fail_at) {
        errno = EIO;
        return -1;
    }
    int rv = data_only ? fdatasync(fd) : fsync(fd);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    if (S_ISDIR(st.st_mode)) return rv;
    /* Tracked by inode: a segment keeps its inode when it is renamed from -open to closed. */
    for (int i = 0; i < s->files_len; i++)
        if (s->files[i].inode == st.st_ino) {
            s->files[i].synced = st.st_size;
            return rv;
        }
    assert_true(s->files_len < 256);
    s->files[s->files_len].inode = st.st_ino;
    s->files[s->files_len++].synced = st.st_size;
    return rv;
}

static node_raftlog *open_shim(const char *dir, shim *s, uint64_t segment_bytes_max)
{
    node_raftlog_io io = {.pwrite = shim_pwrite, .fsync = shim_fsync, .ctx = s};
    node_raftlog_options opts = {.segment_bytes_max = segment_bytes_max, .io = &io};
    node_raftlog *log = NULL;
    char err[512];
    int rv = node_raftlog_open(dir, &opts, &log, err, sizeof err);
    if (rv) fail_msg("open: %s", err);
    return log;
}

static void test_failed_write_is_sticky(void **state)
{
    (void)state;
    int errs[] = {EIO, ENOSPC};
    int codes[] = {TERN_EIO, TERN_ENOSPC};
    for (int k = 0; k < 2; k++) {
        char *dir = make_dir();
        shim s = {0};
        node_raftlog *log = open_shim(dir, &s, 0);
        append_range(log, 1, 10, 0, 5);
        s.pwrite_fail_at = s.pwrites + 1;
        s.pwrite_errno = errs[k];
        uint8_t byte = 1;
        node_raftlog_entry e = {.index = 11, .term = term_of(11, 0), .data = &byte, .len = 1};
        assert_int_equal(node_raftlog_append(log, &e, 1), codes[k]);
        assert_non_null(strstr(node_raftlog_errmsg(log), "write"));
        assert_int_equal(node_raftlog_append(log, &e, 1), TERN_EFAILED);
        assert_int_equal(node_raftlog_sync(log, NULL), TERN_EFAILED);
        assert_int_equal(node_raftlog_truncate_suffix(log, 5), TERN_EFAILED);
        node_raftlog_hard_state hs = {.term = 1};
        assert_int_equal(node_raftlog_hard_state_save(log, &hs), TERN_EFAILED);
        check_range(log, 1, 10, 0); /* reads keep working */
        node_raftlog_close(log);
        log = open_ok(dir, 0);
        assert_int_equal(node_raftlog_last_index(log), 10);
        node_raftlog_close(log);
        remove_dir(dir);
    }
}

static void test_failed_fsync_is_sticky(void **state)
{
    (void)state;
    char *dir = make_dir();
    shim s = {0};
    node_raftlog *log = open_shim(dir, &s, 0);
    append_range(log, 1, 10, 0, 5);
    uint64_t durable = 0;
    assert_int_equal(node_raftlog_sync(log, &durable), 0);
    assert_int_equal(durable, 10);
    append_range(log, 11, 20, 0, 5);
    s.fsync_fail_at = s.fsyncs + 1;
    assert_int_equal(node_raftlog_sync(log, &durable), TERN_EIO);
    assert_int_equal(durable, 10); /* nothing more was made durable */
    /* The next sync would succeed at the OS level: it must not pretend it worked. */
    int fsyncs = s.fsyncs;
    assert_int_equal(node_raftlog_sync(log, &durable), TERN_EFAILED);
    assert_int_equal(durable, 10);
    assert_int_equal(s.fsyncs, fsyncs);
    uint8_t byte = 0;
    node_raftlog_entry e = {.index = 21, .term = term_of(21, 0), .data = &byte, .len = 1};
    assert_int_equal(node_raftlog_append(log, &e, 1), TERN_EFAILED);
    node_raftlog_close(log);

    /* A failed fsync of the hard state fails the save and the log. */
    shim s2 = {0};
    log = open_shim(dir, &s2, 0);
    s2.fsync_fail_at = s2.fsyncs + 1;
    node_raftlog_hard_state hs = {.term = 5, .vote = 1};
    assert_int_equal(node_raftlog_hard_state_save(log, &hs), TERN_EIO);
    node_raftlog_hard_state got;
    node_raftlog_hard_state_get(log, &got);
    assert_int_equal(got.term, 0);
    assert_int_equal(node_raftlog_hard_state_save(log, &hs), TERN_EFAILED);
    node_raftlog_close(log);
    remove_dir(dir);
}

/* A failed fdatasync while rolling a full segment fails that append and the log. */
static void test_failed_roll_is_sticky(void **state)
{
    (void)state;
    char *dir = make_dir();
    shim s = {0};
    node_raftlog *log = open_shim(dir, &s, 2048);
    append_range(log, 1, 3, 0, 3);
    s.fsync_fail_at = s.fsyncs + 1;
    uint8_t buf[300];
    int rv = 0;
    uint64_t index = 4;
    for (; index < 100 && rv == 0; index++) {
        size_t len = payload_fill(index, 0, buf);
        node_raftlog_entry e = {.index = index,
                                .term = term_of(index, 0),
                                .type = (uint32_t)(index % 3),
                                .data = buf,
                                .len = len};
        rv = node_raftlog_append(log, &e, 1);
    }
    assert_int_equal(rv, TERN_EIO);
    assert_non_null(strstr(node_raftlog_errmsg(log), "fdatasync"));
    assert_int_equal(count_segments(dir, NULL), 1); /* the segment was not renamed */
    uint64_t failed_index = index - 1;
    assert_int_equal(node_raftlog_last_index(log), failed_index - 1);
    assert_int_equal(node_raftlog_sync(log, NULL), TERN_EFAILED);
    node_raftlog_close(log);
    log = open_ok(dir, 2048);
    assert_int_equal(node_raftlog_last_index(log), failed_index - 1);
    check_range(log, 1, failed_index - 1, 0);
    node_raftlog_close(log);
    remove_dir(dir);
}

/* Simulates a power loss: every tracked file is cut back to what was synced; files never
 * synced lose all their data. keep_unsynced bytes of the unsynced tail survive (torn). */
static void crash(const char *dir, shim *s, off_t keep_unsynced)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        off_t synced = 0;
        for (int i = 0; i < s->files_len; i++)
            if (s->files[i].inode == st.st_ino) synced = s->files[i].synced;
        off_t size = st.st_size;
        if (size > synced)
            assert_int_equal(truncate(path, TERN_MIN(size, synced + keep_unsynced)), 0);
    }
    closedir(d);
}

static void test_crash_drops_unsynced(void **state)
{
    (void)state;
    off_t keeps[] = {0, 1, 45, 100000};
    for (size_t k = 0; k < TERN_ARRAY_LEN(keeps); k++) {
        char *dir = make_dir();
        shim s = {0};
        node_raftlog *log = open_shim(dir, &s, 2048);
        uint64_t durable = 0;
        append_range(log, 1, 40, 0, 4);
        assert_int_equal(node_raftlog_sync(log, &durable), 0);
        assert_int_equal(durable, 40);
        append_range(log, 41, 47, 0, 3); /* unsynced; may roll (which syncs) */
        uint64_t durable2;
        node_raftlog_sync(log, NULL);
        append_range(log, 48, 60, 0, 5);
        assert_int_equal(node_raftlog_sync(log, &durable2), 0);
        assert_int_equal(durable2, 60);
        append_range(log, 61, 90, 0, 6); /* unsynced, except segments closed by a roll */
        node_raftlog_close(log);
        crash(dir, &s, keeps[k]);

        log = open_ok(dir, 2048);
        uint64_t last = node_raftlog_last_index(log);
        assert_true(last >= 60 && last <= 90);
        check_range(log, 1, last, 0);
        if (keeps[k] == 100000) assert_int_equal(last, 90);
        append_range(log, last + 1, 100, 0, 3);
        node_raftlog_close(log);
        log = open_ok(dir, 2048);
        check_range(log, 1, 100, 0);
        node_raftlog_close(log);
        remove_dir(dir);
    }
}

int main(void)
{
    node_log_set_level(NODE_LOG_ERROR + (getenv("TERN_TEST_VERBOSE") ? 3 : 0));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_roundtrip_rolls),
        cmocka_unit_test(test_truncate_suffix_then_append),
        cmocka_unit_test(test_compact_prefix),
        cmocka_unit_test(test_hard_state),
        cmocka_unit_test(test_type_and_restart_after_empty),
        cmocka_unit_test(test_torn_tail_every_offset),
        cmocka_unit_test(test_corruption_in_middle),
        cmocka_unit_test(test_bad_index_record),
        cmocka_unit_test(test_crash_states_of_roll_and_truncate),
        cmocka_unit_test(test_group_commit_threads),
        cmocka_unit_test(test_failed_write_is_sticky),
        cmocka_unit_test(test_failed_fsync_is_sticky),
        cmocka_unit_test(test_failed_roll_is_sticky),
        cmocka_unit_test(test_crash_drops_unsynced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
