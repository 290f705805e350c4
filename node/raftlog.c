/* Durable Raft log in append-only CRC32C segment files, and the hard state file (see raftlog.h). */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "node.h"
#include "raftlog.h"

#define HDR_BYTES          NODE_RAFTLOG_RECORD_HEADER_BYTES
#define HARD_STATE_NAME    "hardstate"
#define HARD_STATE_TMP     "hardstate.tmp"
#define HARD_STATE_MAGIC   0x54484653u /* "SFHT" */
#define HARD_STATE_VERSION 1u
#define HARD_STATE_BYTES   36u
#define SEG_NAME_MAX       48
#define COMPONENT          "raftlog"

typedef struct {
    uint64_t first;
    uint64_t last; /* first - 1 while an open segment is still empty */
    uint64_t size; /* bytes of valid records */
    bool open;
    int fd;
} segment;

typedef struct {
    uint64_t term;
    uint64_t offset; /* of the record header in its segment */
    uint32_t len;
    uint32_t type;
} entry_meta;

struct node_raftlog {
    char *dir;
    int dir_fd;
    uint64_t segment_bytes_max;
    node_raftlog_io io;
    pthread_mutex_t mu;
    segment *segs; /* ascending; only the last may be open */
    size_t segs_len, segs_cap;
    entry_meta *meta; /* meta[i] describes index first + i */
    size_t meta_len, meta_cap;
    uint64_t first;          /* 0 when empty */
    uint64_t durable;        /* highest index known durable */
    uint64_t truncate_count; /* lets a sync in flight notice a truncation */
    bool failed;
    node_raftlog_hard_state hard_state;
    char errmsg[512];
};

/* ---------------- encoding ---------------- */

typedef struct {
    uint32_t crc, len, type, reserved;
    uint64_t index, term;
} record_header;

static void header_decode(const uint8_t *p, record_header *h)
{
    h->crc = tern_le_get_u32(p);
    h->len = tern_le_get_u32(p + 4);
    h->type = tern_le_get_u32(p + 8);
    h->reserved = tern_le_get_u32(p + 12);
    h->index = tern_le_get_u64(p + 16);
    h->term = tern_le_get_u64(p + 24);
}

static uint32_t record_crc(const uint8_t *hdr, const uint8_t *payload, size_t len)
{
    return node_raftlog_crc32c(node_raftlog_crc32c(0, hdr + 4, HDR_BYTES - 4), payload, len);
}

static void record_encode(uint8_t *p, const node_raftlog_entry *e)
{
    tern_le_put_u32(p + 4, (uint32_t)e->len);
    tern_le_put_u32(p + 8, e->type);
    tern_le_put_u32(p + 12, 0);
    tern_le_put_u64(p + 16, e->index);
    tern_le_put_u64(p + 24, e->term);
    if (e->len > 0) memcpy(p + HDR_BYTES, e->data, e->len);
    tern_le_put_u32(p, record_crc(p, p + HDR_BYTES, e->len));
}

/* ---------------- system calls (through the test hooks) ---------------- */

static ssize_t real_pwrite(void *ctx, int fd, const void *buf, size_t len, off_t offset)
{
    return pwrite(fd, buf, len, offset);
}

static int real_fsync(void *ctx, int fd, bool data_only)
{
    return data_only ? fdatasync(fd) : fsync(fd);
}

static int errno_code(int err)
{
    return (err == ENOSPC || err == EDQUOT) ? TERN_ENOSPC : TERN_EIO;
}

/* Records a disk error and enters the sticky failed state. Returns the code for this call. */
static int fail(node_raftlog *log, int err, const char *what, const char *name)
{
    log->failed = true;
    tern_errmsg(log->errmsg, sizeof log->errmsg, "%s %s/%s: %s (log now failed)", what, log->dir,
                name, strerror(err));
    node_log(NODE_LOG_ERROR, COMPONENT, "%s", log->errmsg);
    return errno_code(err);
}

static int check_failed(node_raftlog *log)
{
    return log->failed ? TERN_EFAILED : 0;
}

static int write_all(node_raftlog *log, int fd, const uint8_t *buf, size_t len, uint64_t offset)
{
    while (len > 0) {
        ssize_t n = log->io.pwrite(log->io.ctx, fd, buf, len, (off_t)offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 ? errno : EIO;
        buf += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

static int sync_dir(node_raftlog *log)
{
    if (log->io.fsync(log->io.ctx, log->dir_fd, false) != 0) return fail(log, errno, "fsync", ".");
    return 0;
}

static void seg_name(const segment *s, char *out)
{
    if (s->open)
        snprintf(out, SEG_NAME_MAX, "%020" PRIu64 "-open", s->first);
    else
        snprintf(out, SEG_NAME_MAX, "%020" PRIu64 "-%020" PRIu64, s->first, s->last);
}

/* ---------------- in-memory index ---------------- */

static uint64_t last_index(const node_raftlog *log)
{
    return log->meta_len == 0 ? 0 : log->first + log->meta_len - 1;
}

static int meta_reserve(node_raftlog *log, size_t extra)
{
    if (log->meta_len + extra <= log->meta_cap) return 0;
    size_t cap = log->meta_cap ? log->meta_cap : 1024;
    while (cap < log->meta_len + extra)
        cap *= 2;
    entry_meta *m = realloc(log->meta, cap * sizeof *m);
    if (!m) return TERN_ENOMEM;
    log->meta = m;
    log->meta_cap = cap;
    return 0;
}

static int segs_push(node_raftlog *log, const segment *s)
{
    if (log->segs_len == log->segs_cap) {
        size_t cap = log->segs_cap ? log->segs_cap * 2 : 16;
        segment *n = realloc(log->segs, cap * sizeof *n);
        if (!n) return TERN_ENOMEM;
        log->segs = n;
        log->segs_cap = cap;
    }
    log->segs[log->segs_len++] = *s;
    return 0;
}

static segment *open_segment(node_raftlog *log)
{
    if (log->segs_len == 0 || !log->segs[log->segs_len - 1].open) return NULL;
    return &log->segs[log->segs_len - 1];
}

static segment *segment_of(node_raftlog *log, uint64_t index)
{
    size_t lo = 0, hi = log->segs_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        segment *s = &log->segs[mid];
        if (index < s->first)
            hi = mid;
        else if (index > s->last)
            lo = mid + 1;
        else
            return s;
    }
    return NULL;
}

/* The invariant checker: segments tile first..last, terms never decrease. */
static void check_invariants(const node_raftlog *log)
{
    if (log->meta_len == 0) {
        assert(log->first == 0);
        return;
    }
    assert(log->segs_len > 0);
    assert(log->segs[0].first == log->first);
    for (size_t i = 0; i < log->segs_len; i++) {
        const segment *s = &log->segs[i];
        assert(s->open == (i == log->segs_len - 1 && s->open));
        if (i > 0) assert(s->first == log->segs[i - 1].last + 1);
        assert(s->last + 1 >= s->first);
    }
    assert(log->segs[log->segs_len - 1].last == last_index(log));
    assert(log->durable <= last_index(log));
    for (size_t i = 1; i < log->meta_len; i++)
        assert(log->meta[i].term >= log->meta[i - 1].term);
}

/* The checks an append can break, for the entries from meta index `from` on: the full scan
 * is linear in the log, and an append per persist batch must stay O(batch). */
static void check_appended(const node_raftlog *log, size_t from)
{
    assert(log->segs_len > 0);
    assert(log->segs[log->segs_len - 1].last == last_index(log));
    for (size_t i = from ? from : 1; i < log->meta_len; i++)
        assert(log->meta[i].term >= log->meta[i - 1].term);
}

/* ---------------- recovery ---------------- */

typedef struct {
    char *errmsg;
    size_t errmsg_len;
    uint8_t *buf;
    size_t buf_cap;
} recovery;

static int corrupt(recovery *rc, const node_raftlog *log, const char *name, uint64_t offset,
                   const char *why)
{
    tern_errmsg(rc->errmsg, rc->errmsg_len, "corrupt raft log %s/%s at offset %" PRIu64 ": %s",
                log->dir, name, offset, why);
    node_log(NODE_LOG_ERROR, COMPONENT, "%s", rc->errmsg);
    return TERN_ECORRUPT;
}

static int io_error(recovery *rc, const node_raftlog *log, const char *what, const char *name,
                    int err)
{
    tern_errmsg(rc->errmsg, rc->errmsg_len, "%s %s/%s: %s", what, log->dir, name, strerror(err));
    return errno_code(err);
}

static int read_exact(int fd, uint8_t *buf, size_t len, uint64_t offset)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)offset);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno;
        if (n == 0) return EIO; /* the file is shorter than its recorded size */
        buf += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

/* True when every byte from offset to size is zero: a file extended by a torn write. */
static int rest_is_zero(int fd, uint64_t offset, uint64_t size, bool *zero)
{
    uint8_t chunk[4096];
    *zero = true;
    while (offset < size) {
        size_t n = (size_t)TERN_MIN((uint64_t)sizeof chunk, size - offset);
        int err = read_exact(fd, chunk, n, offset);
        if (err) return err;
        for (size_t i = 0; i < n; i++)
            if (chunk[i] != 0) {
                *zero = false;
                return 0;
            }
        offset += n;
    }
    return 0;
}

/* Scans one segment, appending its entries to the index. For the open segment a torn tail is
 * truncated; *torn_at is set to its offset (UINT64_MAX when the segment is whole). */
static int scan_segment(node_raftlog *log, recovery *rc, segment *s, const char *name,
                        uint64_t file_size, uint64_t *torn_at)
{
    uint64_t off = 0, expect = s->first;
    const char *torn_why = NULL;
    *torn_at = UINT64_MAX;
    while (off < file_size) {
        uint8_t hdr[HDR_BYTES];
        record_header h;
        if (file_size - off < HDR_BYTES) {
            torn_why = "short record header";
            break;
        }
        int err = read_exact(s->fd, hdr, HDR_BYTES, off);
        if (err) return io_error(rc, log, "read", name, err);
        header_decode(hdr, &h);
        if ((uint64_t)h.len > file_size - off - HDR_BYTES) {
            torn_why = "record payload runs past end of file";
            break;
        }
        if (h.len > rc->buf_cap) {
            uint8_t *b = realloc(rc->buf, h.len);
            if (!b) return TERN_ENOMEM;
            rc->buf = b;
            rc->buf_cap = h.len;
        }
        err = read_exact(s->fd, rc->buf, h.len, off + HDR_BYTES);
        if (err) return io_error(rc, log, "read", name, err);
        uint64_t end = off + HDR_BYTES + h.len;
        if (record_crc(hdr, rc->buf, h.len) != h.crc) {
            bool zero = false;
            err = rest_is_zero(s->fd, off, file_size, &zero);
            if (err) return io_error(rc, log, "read", name, err);
            if (!s->open || (end != file_size && !zero))
                return corrupt(rc, log, name, off, "record CRC32C mismatch");
            torn_why = zero ? "zero-filled tail" : "CRC32C mismatch in the last record";
            break;
        }
        if (h.index != expect) {
            char why[96];
            snprintf(why, sizeof why, "index %" PRIu64 " where %" PRIu64 " was expected", h.index,
                     expect);
            return corrupt(rc, log, name, off, why);
        }
        uint64_t prev_term = log->meta_len ? log->meta[log->meta_len - 1].term : 0;
        if (h.term < prev_term) return corrupt(rc, log, name, off, "term decreases");
        int rv = meta_reserve(log, 1);
        if (rv) return rv;
        if (log->meta_len == 0) log->first = h.index;
        log->meta[log->meta_len++] =
            (entry_meta){.term = h.term, .offset = off, .len = h.len, .type = h.type};
        expect++;
        off = end;
    }
    if (torn_why && !s->open) return corrupt(rc, log, name, off, torn_why);
    if (torn_why) {
        node_log(NODE_LOG_WARN, COMPONENT,
                 "%s/%s: torn tail at offset %" PRIu64 " (%s, %" PRIu64 " bytes): truncating it",
                 log->dir, name, off, torn_why, file_size - off);
        *torn_at = off;
    }
    s->size = off;
    s->last = expect - 1;
    return 0;
}

/* Parses "<20 digits>-<20 digits>" or "<20 digits>-open". */
static bool parse_seg_name(const char *name, segment *s)
{
    size_t len = strlen(name);
    if (len != 25 && len != 41) return false;
    for (int i = 0; i < 20; i++)
        if (name[i] < '0' || name[i] > '9') return false;
    if (name[20] != '-') return false;
    s->first = strtoull(name, NULL, 10);
    if (len == 25) {
        if (strcmp(name + 21, "open") != 0) return false;
        s->open = true;
        s->last = s->first - 1;
        return s->first >= 1;
    }
    for (int i = 21; i < 41; i++)
        if (name[i] < '0' || name[i] > '9') return false;
    s->open = false;
    s->last = strtoull(name + 21, NULL, 10);
    return s->first >= 1 && s->last >= s->first;
}

static int seg_compare(const void *a, const void *b)
{
    const segment *x = a, *y = b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return (int)x->open - (int)y->open;
}

/* Lists the segment files of the directory into log->segs (fds not yet open), sorted. */
static int list_segments(node_raftlog *log, recovery *rc)
{
    DIR *d = fdopendir(dup(log->dir_fd));
    if (!d) return io_error(rc, log, "opendir", ".", errno);
    struct dirent *de;
    int rv = 0;
    while ((de = readdir(d)) != NULL) {
        segment s = {.fd = -1};
        if (de->d_name[0] == '.' || strcmp(de->d_name, HARD_STATE_NAME) == 0) continue;
        if (strcmp(de->d_name, HARD_STATE_TMP) == 0) {
            unlinkat(log->dir_fd, de->d_name, 0); /* a save that never completed */
            continue;
        }
        if (!parse_seg_name(de->d_name, &s)) {
            node_log(NODE_LOG_WARN, COMPONENT, "%s: ignoring unknown file %s", log->dir,
                     de->d_name);
            continue;
        }
        rv = segs_push(log, &s);
        if (rv) break;
    }
    closedir(d);
    if (rv) return rv;
    if (log->segs_len > 1) qsort(log->segs, log->segs_len, sizeof *log->segs, seg_compare);
    for (size_t i = 0; i + 1 < log->segs_len; i++) {
        char name[SEG_NAME_MAX];
        seg_name(&log->segs[i], name);
        if (log->segs[i].open) return corrupt(rc, log, name, 0, "open segment is not the last");
    }
    return 0;
}

/* Opens and scans every segment; truncates a torn tail of the open segment; checks for gaps. */
static int recover_segments(node_raftlog *log, recovery *rc)
{
    int rv = list_segments(log, rc);
    if (rv) return rv;
    for (size_t i = 0; i < log->segs_len; i++) {
        segment *s = &log->segs[i];
        char name[SEG_NAME_MAX];
        seg_name(s, name);
        uint64_t named_last = s->last;
        s->fd = openat(log->dir_fd, name, O_RDWR | O_CLOEXEC);
        if (s->fd < 0) return io_error(rc, log, "open", name, errno);
        struct stat st;
        if (fstat(s->fd, &st) != 0) return io_error(rc, log, "fstat", name, errno);
        if (log->meta_len > 0 && s->first != last_index(log) + 1)
            return corrupt(rc, log, name, 0, "gap or overlap in log indexes before this segment");
        uint64_t torn_at;
        rv = scan_segment(log, rc, s, name, (uint64_t)st.st_size, &torn_at);
        if (rv) return rv;
        if (!s->open && s->last != named_last)
            return corrupt(rc, log, name, s->size,
                           "closed segment does not end at its named last index");
        if (torn_at != UINT64_MAX) {
            if (ftruncate(s->fd, (off_t)torn_at) != 0)
                return io_error(rc, log, "ftruncate", name, errno);
        }
    }
    /* An empty open segment (created, never written, or all torn) is removed. */
    segment *o = open_segment(log);
    if (o && o->last + 1 == o->first) {
        char name[SEG_NAME_MAX];
        seg_name(o, name);
        close(o->fd);
        log->segs_len--;
        if (unlinkat(log->dir_fd, name, 0) != 0) return io_error(rc, log, "unlink", name, errno);
    }
    /* Whatever a crashed process left in the page cache becomes durable now. */
    o = open_segment(log);
    if (o && log->io.fsync(log->io.ctx, o->fd, false) != 0)
        return io_error(rc, log, "fsync", "open segment", errno);
    return 0;
}

static int hard_state_load(node_raftlog *log, recovery *rc)
{
    int fd = openat(log->dir_fd, HARD_STATE_NAME, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return 0;
    if (fd < 0) return io_error(rc, log, "open", HARD_STATE_NAME, errno);
    uint8_t buf[HARD_STATE_BYTES + 1];
    ssize_t n = pread(fd, buf, sizeof buf, 0);
    int err = errno;
    int rv = 0;
    if (n < 0)
        rv = io_error(rc, log, "read", HARD_STATE_NAME, err);
    else if (n != HARD_STATE_BYTES)
        rv = corrupt(rc, log, HARD_STATE_NAME, 0, "hard state file has the wrong size");
    else if (tern_le_get_u32(buf) != HARD_STATE_MAGIC ||
             tern_le_get_u32(buf + 4) != HARD_STATE_VERSION)
        rv = corrupt(rc, log, HARD_STATE_NAME, 0, "bad hard state magic or version");
    else if (node_raftlog_crc32c(0, buf, 32) != tern_le_get_u32(buf + 32))
        rv = corrupt(rc, log, HARD_STATE_NAME, 32, "hard state CRC32C mismatch");
    else if (log->io.fsync(log->io.ctx, fd, false) != 0)
        rv = io_error(rc, log, "fsync", HARD_STATE_NAME, errno);
    if (rv == 0) {
        log->hard_state.term = tern_le_get_u64(buf + 8);
        log->hard_state.vote = tern_le_get_u64(buf + 16);
        log->hard_state.commit = tern_le_get_u64(buf + 24);
    }
    close(fd);
    return rv;
}

static void log_free(node_raftlog *log)
{
    for (size_t i = 0; i < log->segs_len; i++)
        if (log->segs[i].fd >= 0) close(log->segs[i].fd);
    if (log->dir_fd >= 0) close(log->dir_fd);
    pthread_mutex_destroy(&log->mu);
    free(log->segs);
    free(log->meta);
    free(log->dir);
    free(log);
}

int node_raftlog_open(const char *dir, const node_raftlog_options *opts, node_raftlog **out,
                      char *errmsg, size_t errmsg_len)
{
    static const node_raftlog_io real_io = {.pwrite = real_pwrite, .fsync = real_fsync};
    assert(dir && out && errmsg);
    *out = NULL;
    node_raftlog *log = calloc(1, sizeof *log);
    if (!log || !(log->dir = strdup(dir))) {
        free(log);
        tern_errmsg(errmsg, errmsg_len, "out of memory");
        return TERN_ENOMEM;
    }
    pthread_mutex_init(&log->mu, NULL);
    log->dir_fd = -1;
    log->io = (opts && opts->io) ? *opts->io : real_io;
    log->segment_bytes_max = (opts && opts->segment_bytes_max) ? opts->segment_bytes_max
                                                               : NODE_RAFTLOG_SEGMENT_BYTES_DEFAULT;
    recovery rc = {.errmsg = errmsg, .errmsg_len = errmsg_len};
    int rv;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        rv = io_error(&rc, log, "mkdir", ".", errno);
        goto err;
    }
    log->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (log->dir_fd < 0) {
        rv = io_error(&rc, log, "open", ".", errno);
        goto err;
    }
    rv = recover_segments(log, &rc);
    if (rv) goto err;
    rv = hard_state_load(log, &rc);
    if (rv) goto err;
    /* Renames, unlinks and truncations of this or a crashed process become durable. */
    if (log->io.fsync(log->io.ctx, log->dir_fd, false) != 0) {
        rv = io_error(&rc, log, "fsync", ".", errno);
        goto err;
    }
    log->durable = last_index(log);
    check_invariants(log);
    free(rc.buf);
    *out = log;
    return 0;
err:
    free(rc.buf);
    log_free(log);
    return rv;
}

void node_raftlog_close(node_raftlog *log)
{
    if (log) log_free(log);
}

const char *node_raftlog_errmsg(node_raftlog *log)
{
    return log->errmsg;
}

/* ---------------- append, roll, sync ---------------- */

/* Closes the open segment: fdatasync, rename to first-last, fsync the directory. */
static int roll(node_raftlog *log)
{
    segment *o = open_segment(log);
    assert(o && o->last >= o->first);
    char from[SEG_NAME_MAX], to[SEG_NAME_MAX];
    seg_name(o, from);
    if (log->io.fsync(log->io.ctx, o->fd, true) != 0) return fail(log, errno, "fdatasync", from);
    o->open = false;
    seg_name(o, to);
    if (renameat(log->dir_fd, from, log->dir_fd, to) != 0) {
        o->open = true;
        return fail(log, errno, "rename", from);
    }
    int rv = sync_dir(log);
    if (rv) return rv;
    if (o->last > log->durable) log->durable = o->last;
    return 0;
}

static int create_open_segment(node_raftlog *log, uint64_t first)
{
    segment s = {.first = first, .last = first - 1, .open = true, .fd = -1};
    char name[SEG_NAME_MAX];
    seg_name(&s, name);
    int rv = segs_push(log, &s); /* reserve first so nothing fails after the file exists */
    if (rv) return rv;
    int fd = openat(log->dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        log->segs_len--;
        return fail(log, errno, "create", name);
    }
    log->segs[log->segs_len - 1].fd = fd;
    return sync_dir(log);
}

static void assert_batch(const node_raftlog *log, const node_raftlog_entry *entries, size_t count)
{
    uint64_t last = last_index(log);
    uint64_t prev_term = log->meta_len ? log->meta[log->meta_len - 1].term : 0;
    assert(count > 0);
    assert(log->meta_len == 0 ? entries[0].index >= 1 : entries[0].index == last + 1);
    for (size_t i = 0; i < count; i++) {
        assert(i == 0 || entries[i].index == entries[i - 1].index + 1);
        assert(entries[i].term >= prev_term);
        assert(entries[i].len == 0 || entries[i].data);
        prev_term = entries[i].term;
    }
}

int node_raftlog_append(node_raftlog *log, const node_raftlog_entry *entries, size_t count)
{
    pthread_mutex_lock(&log->mu);
    int rv = check_failed(log);
    if (rv) goto out;
    assert_batch(log, entries, count);
    uint64_t bytes = 0;
    for (size_t i = 0; i < count; i++) {
        if (entries[i].len > UINT32_MAX) {
            tern_errmsg(log->errmsg, sizeof log->errmsg, "entry %" PRIu64 " too large",
                        entries[i].index);
            rv = TERN_ETOOBIG;
            goto out;
        }
        bytes += HDR_BYTES + entries[i].len;
    }
    if ((rv = meta_reserve(log, count)) != 0) goto out;
    uint8_t *buf = malloc(bytes);
    if (!buf) {
        rv = TERN_ENOMEM;
        goto out;
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < count; i++) {
        record_encode(buf + pos, &entries[i]);
        pos += HDR_BYTES + entries[i].len;
    }
    segment *o = open_segment(log);
    if (o && o->size > 0 && o->size + bytes > log->segment_bytes_max) {
        if ((rv = roll(log)) != 0) goto out_free;
        o = NULL;
    }
    if (!o) {
        if ((rv = create_open_segment(log, entries[0].index)) != 0) goto out_free;
        o = open_segment(log);
    }
    char name[SEG_NAME_MAX];
    seg_name(o, name);
    int err = write_all(log, o->fd, buf, bytes, o->size);
    if (err) {
        rv = fail(log, err, "write", name);
        goto out_free;
    }
    if (log->meta_len == 0) log->first = entries[0].index;
    pos = o->size;
    for (size_t i = 0; i < count; i++) {
        log->meta[log->meta_len++] = (entry_meta){.term = entries[i].term,
                                                  .offset = pos,
                                                  .len = (uint32_t)entries[i].len,
                                                  .type = entries[i].type};
        pos += HDR_BYTES + entries[i].len;
    }
    o->size = pos;
    o->last = entries[count - 1].index;
    check_appended(log, log->meta_len - count);
out_free:
    free(buf);
out:
    pthread_mutex_unlock(&log->mu);
    return rv;
}

int node_raftlog_sync(node_raftlog *log, uint64_t *durable_index)
{
    pthread_mutex_lock(&log->mu);
    int rv = check_failed(log);
    segment *o = open_segment(log);
    uint64_t target = last_index(log), truncations = log->truncate_count;
    if (rv || !o || log->durable == target) {
        if (durable_index) *durable_index = log->durable;
        pthread_mutex_unlock(&log->mu);
        return rv;
    }
    /* fdatasync without the lock, on a duplicate so a roll or truncation may close the
     * original meanwhile: appends from another thread keep going (group commit). */
    char name[SEG_NAME_MAX];
    seg_name(o, name);
    int fd = dup(o->fd);
    int err = fd < 0 ? errno : 0;
    pthread_mutex_unlock(&log->mu);
    if (fd >= 0) {
        if (log->io.fsync(log->io.ctx, fd, true) != 0) err = errno;
        close(fd);
    }
    pthread_mutex_lock(&log->mu);
    if (err) {
        /* Never retried: after a failed fsync the page cache may have dropped the dirty
         * pages, so a later successful fsync would prove nothing. */
        rv = log->failed ? TERN_EFAILED : fail(log, err, "fdatasync", name);
    } else if (log->truncate_count == truncations && target > log->durable) {
        log->durable = target;
    }
    if (durable_index) *durable_index = log->durable;
    pthread_mutex_unlock(&log->mu);
    return rv;
}

/* ---------------- truncate and compact ---------------- */

static int remove_last_segment(node_raftlog *log)
{
    segment *s = &log->segs[log->segs_len - 1];
    char name[SEG_NAME_MAX];
    seg_name(s, name);
    close(s->fd);
    log->segs_len--;
    if (unlinkat(log->dir_fd, name, 0) != 0) return fail(log, errno, "unlink", name);
    /* One directory fsync per unlink, newest first, so a crash never leaves a gap. */
    return sync_dir(log);
}

int node_raftlog_truncate_suffix(node_raftlog *log, uint64_t index)
{
    pthread_mutex_lock(&log->mu);
    int rv = check_failed(log);
    if (rv || log->meta_len == 0 || index > last_index(log)) goto out;
    if (index < log->first) index = log->first;
    log->truncate_count++;
    uint64_t cut_offset = log->meta[index - log->first].offset;
    while (log->segs_len > 0 && log->segs[log->segs_len - 1].first >= index)
        if ((rv = remove_last_segment(log)) != 0) goto out;
    log->meta_len = index - log->first;
    if (log->meta_len == 0) log->first = 0;
    if (log->durable > last_index(log)) log->durable = last_index(log);
    if (log->segs_len > 0 && log->segs[log->segs_len - 1].last >= index) {
        segment *s = &log->segs[log->segs_len - 1];
        char name[SEG_NAME_MAX];
        seg_name(s, name);
        if (!s->open) {
            /* Reopen the closed segment first: an open segment may legally end early. */
            char to[SEG_NAME_MAX];
            s->open = true;
            seg_name(s, to);
            if (renameat(log->dir_fd, name, log->dir_fd, to) != 0) {
                s->open = false;
                rv = fail(log, errno, "rename", name);
                goto out;
            }
            if ((rv = sync_dir(log)) != 0) goto out;
            memcpy(name, to, sizeof name);
        }
        uint64_t size = cut_offset;
        if (ftruncate(s->fd, (off_t)size) != 0) {
            rv = fail(log, errno, "ftruncate", name);
            goto out;
        }
        if (log->io.fsync(log->io.ctx, s->fd, false) != 0) {
            rv = fail(log, errno, "fsync", name);
            goto out;
        }
        s->size = size;
        s->last = index - 1;
    }
    check_invariants(log);
out:
    pthread_mutex_unlock(&log->mu);
    return rv;
}

int node_raftlog_compact_prefix(node_raftlog *log, uint64_t index)
{
    pthread_mutex_lock(&log->mu);
    int rv = check_failed(log);
    size_t removed = 0;
    while (rv == 0 && removed < log->segs_len && !log->segs[removed].open &&
           log->segs[removed].last < index) {
        segment *s = &log->segs[removed];
        char name[SEG_NAME_MAX];
        seg_name(s, name);
        close(s->fd);
        s->fd = -1;
        removed++;
        /* Oldest first, one directory fsync each, so a crash never leaves a gap. */
        if (unlinkat(log->dir_fd, name, 0) != 0)
            rv = fail(log, errno, "unlink", name);
        else
            rv = sync_dir(log);
    }
    if (removed > 0) {
        uint64_t new_first = removed < log->segs_len ? log->segs[removed].first : 0;
        size_t dropped = new_first ? (size_t)(new_first - log->first) : log->meta_len;
        memmove(log->meta, log->meta + dropped, (log->meta_len - dropped) * sizeof *log->meta);
        log->meta_len -= dropped;
        log->first = log->meta_len ? new_first : 0;
        memmove(log->segs, log->segs + removed, (log->segs_len - removed) * sizeof *log->segs);
        log->segs_len -= removed;
        if (log->durable > last_index(log)) log->durable = last_index(log);
    }
    if (rv == 0) check_invariants(log);
    pthread_mutex_unlock(&log->mu);
    return rv;
}

/* ---------------- reads ---------------- */

static int range_error(node_raftlog *log, uint64_t first, uint64_t last)
{
    tern_errmsg(log->errmsg, sizeof log->errmsg,
                "entries %" PRIu64 "..%" PRIu64 " not in the log (%" PRIu64 "..%" PRIu64 ")", first,
                last, log->first, last_index(log));
    return TERN_ERANGE;
}

static int read_one(node_raftlog *log, uint64_t index, node_raftlog_entry *e, uint8_t *payload)
{
    const entry_meta *m = &log->meta[index - log->first];
    segment *s = segment_of(log, index);
    assert(s);
    uint8_t hdr[HDR_BYTES];
    char name[SEG_NAME_MAX];
    seg_name(s, name);
    int err = read_exact(s->fd, hdr, HDR_BYTES, m->offset);
    if (!err) err = read_exact(s->fd, payload, m->len, m->offset + HDR_BYTES);
    if (err) {
        tern_errmsg(log->errmsg, sizeof log->errmsg, "read %s/%s: %s", log->dir, name,
                    strerror(err));
        return TERN_EIO;
    }
    record_header h;
    header_decode(hdr, &h);
    if (h.crc != record_crc(hdr, payload, m->len) || h.index != index || h.len != m->len) {
        tern_errmsg(log->errmsg, sizeof log->errmsg,
                    "corrupt raft log %s/%s at offset %" PRIu64 ": entry %" PRIu64
                    " fails its CRC32C on read",
                    log->dir, name, m->offset, index);
        node_log(NODE_LOG_ERROR, COMPONENT, "%s", log->errmsg);
        return TERN_ECORRUPT;
    }
    *e = (node_raftlog_entry){
        .index = index, .term = h.term, .type = h.type, .data = payload, .len = m->len};
    return 0;
}

int node_raftlog_read(node_raftlog *log, uint64_t first, uint64_t last, size_t bytes_max,
                      node_raftlog_entry **entries, size_t *count)
{
    *entries = NULL;
    *count = 0;
    pthread_mutex_lock(&log->mu);
    int rv = 0;
    if (log->meta_len == 0 || first < log->first || last > last_index(log) || first > last) {
        rv = range_error(log, first, last);
        goto out;
    }
    size_t n = 0, payload = 0;
    for (uint64_t i = first; i <= last; i++) {
        size_t len = log->meta[i - log->first].len;
        if (n > 0 && payload + len > bytes_max) break;
        payload += len;
        n++;
    }
    node_raftlog_entry *e = malloc(n * sizeof *e + payload + 1);
    if (!e) {
        rv = TERN_ENOMEM;
        goto out;
    }
    uint8_t *data = (uint8_t *)(e + n);
    for (size_t i = 0; i < n; i++) {
        if ((rv = read_one(log, first + i, &e[i], data)) != 0) {
            free(e);
            goto out;
        }
        data += e[i].len;
    }
    *entries = e;
    *count = n;
out:
    pthread_mutex_unlock(&log->mu);
    return rv;
}

void node_raftlog_entries_free(node_raftlog_entry *entries)
{
    free(entries);
}

int node_raftlog_term(node_raftlog *log, uint64_t index, uint64_t *term)
{
    pthread_mutex_lock(&log->mu);
    int rv = 0;
    if (log->meta_len == 0 || index < log->first || index > last_index(log))
        rv = range_error(log, index, index);
    else
        *term = log->meta[index - log->first].term;
    pthread_mutex_unlock(&log->mu);
    return rv;
}

int node_raftlog_type(node_raftlog *log, uint64_t index, uint32_t *type)
{
    pthread_mutex_lock(&log->mu);
    int rv = 0;
    if (log->meta_len == 0 || index < log->first || index > last_index(log))
        rv = range_error(log, index, index);
    else
        *type = log->meta[index - log->first].type;
    pthread_mutex_unlock(&log->mu);
    return rv;
}

uint64_t node_raftlog_first_index(node_raftlog *log)
{
    pthread_mutex_lock(&log->mu);
    uint64_t v = log->first;
    pthread_mutex_unlock(&log->mu);
    return v;
}

uint64_t node_raftlog_last_index(node_raftlog *log)
{
    pthread_mutex_lock(&log->mu);
    uint64_t v = last_index(log);
    pthread_mutex_unlock(&log->mu);
    return v;
}

/* ---------------- hard state ---------------- */

int node_raftlog_hard_state_save(node_raftlog *log, const node_raftlog_hard_state *hs)
{
    pthread_mutex_lock(&log->mu);
    int rv = check_failed(log);
    if (rv) goto out;
    uint8_t buf[HARD_STATE_BYTES];
    tern_le_put_u32(buf, HARD_STATE_MAGIC);
    tern_le_put_u32(buf + 4, HARD_STATE_VERSION);
    tern_le_put_u64(buf + 8, hs->term);
    tern_le_put_u64(buf + 16, hs->vote);
    tern_le_put_u64(buf + 24, hs->commit);
    tern_le_put_u32(buf + 32, node_raftlog_crc32c(0, buf, 32));
    int fd = openat(log->dir_fd, HARD_STATE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rv = fail(log, errno, "create", HARD_STATE_TMP);
        goto out;
    }
    const char *what = "write";
    int err = write_all(log, fd, buf, sizeof buf, 0);
    if (!err && log->io.fsync(log->io.ctx, fd, false) != 0) {
        err = errno;
        what = "fsync";
    }
    close(fd);
    if (err) {
        rv = fail(log, err, what, HARD_STATE_TMP);
        goto out;
    }
    if (renameat(log->dir_fd, HARD_STATE_TMP, log->dir_fd, HARD_STATE_NAME) != 0) {
        rv = fail(log, errno, "rename", HARD_STATE_TMP);
        goto out;
    }
    if ((rv = sync_dir(log)) != 0) goto out;
    log->hard_state = *hs;
out:
    pthread_mutex_unlock(&log->mu);
    return rv;
}

void node_raftlog_hard_state_get(node_raftlog *log, node_raftlog_hard_state *hs)
{
    pthread_mutex_lock(&log->mu);
    *hs = log->hard_state;
    pthread_mutex_unlock(&log->mu);
}
