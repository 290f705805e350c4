/* The region group driver's snapshots: the meta file, the byte stream sent, the stream received. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "group_internal.h"

/*
 * FORMATS
 *
 * Snapshot meta (DATA_DIR/raft/snapshot.meta), replaced by write, fsync, rename, fsync dir:
 *   u32 magic "TSNM" | u32 version 1 | u64 index | u64 term | u32 conf_len | conf bytes
 *   (raft_conf_encode) | u32 crc32c of everything before it
 *
 * Snapshot stream (what raft_storage.snapshot_read serves, read from
 * DATA_DIR/raft/snapshots/<index>/, a state machine checkpoint):
 *   u32 magic "TSNP" | u32 version 1 | u64 index
 *   per file, sorted by relative path:  u16 name_len (1..255) | name | u64 size | size bytes
 *   end marker: u16 0
 *   u32 crc32c of every stream byte before it
 * All integers little-endian. Names are relative paths ('/' separated, no empty, "." or ".."
 * component). The receiver parses the stream as chunks arrive, writing files under
 * DATA_DIR/raft/incoming/, and installs only a stream whose end marker and CRC check out.
 *
 * The sender computes the CRC as the stream goes out: it remembers the CRC at each offset it
 * served (one point per chunk), so the usual sequential transfer reads each file once; a
 * restart from offset 0 reuses the points, and a read at an unknown offset extends from the
 * nearest point below it.
 */

#define COMPONENT      "group"
#define META_MAGIC     0x4D4E5354u /* "TSNM" */
#define STREAM_MAGIC   0x504E5354u /* "TSNP" */
#define FORMAT_VERSION 1u
#define STREAM_HEADER  16u
#define NAME_MAX_BYTES 255u

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* ---------------- files ---------------- */

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int group__rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    return nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : TERN_EIO;
}

int group__fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return TERN_EIO;
    int rc = fsync(fd) == 0 ? 0 : TERN_EIO;
    close(fd);
    return rc;
}

void group__snapshot_dir(const node_group *g, uint64_t index, char *out, size_t len)
{
    snprintf(out, len, "%s/snapshots/%020" PRIu64, g->raft_dir, index);
}

/* ---------------- meta ---------------- */

int group__meta_load(const char *raft_dir, raft_snapshot_meta *out, char *errmsg, size_t errmsg_len)
{
    memset(out, 0, sizeof *out);
    char path[1024];
    snprintf(path, sizeof path, "%s/snapshot.meta", raft_dir);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT) return 0;
        tern_errmsg(errmsg, errmsg_len, "cannot open %s: %s", path, strerror(errno));
        return TERN_EIO;
    }
    uint8_t buf[28 + RAFT_CONF_ENCODED_MAX + 4];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    uint32_t conf_len = n >= 28 ? tern_le_get_u32(buf + 24) : 0;
    if (n < 32 || tern_le_get_u32(buf) != META_MAGIC ||
        tern_le_get_u32(buf + 4) != FORMAT_VERSION || conf_len > RAFT_CONF_ENCODED_MAX ||
        n != 28 + conf_len + 4 ||
        tern_le_get_u32(buf + 28 + conf_len) != node_raftlog_crc32c(0, buf, 28 + conf_len) ||
        raft_conf_decode(buf + 28, conf_len, &out->conf) != 0) {
        tern_errmsg(errmsg, errmsg_len, "corrupt snapshot meta %s", path);
        return TERN_ECORRUPT;
    }
    out->index = tern_le_get_u64(buf + 8);
    out->term = tern_le_get_u64(buf + 16);
    return 0;
}

int group__meta_save(node_group *g, const raft_snapshot_meta *meta)
{
    uint8_t buf[28 + RAFT_CONF_ENCODED_MAX + 4];
    tern_le_put_u32(buf, META_MAGIC);
    tern_le_put_u32(buf + 4, FORMAT_VERSION);
    tern_le_put_u64(buf + 8, meta->index);
    tern_le_put_u64(buf + 16, meta->term);
    size_t conf_len = raft_conf_encode(&meta->conf, buf + 28);
    tern_le_put_u32(buf + 24, (uint32_t)conf_len);
    tern_le_put_u32(buf + 28 + conf_len, node_raftlog_crc32c(0, buf, 28 + conf_len));
    size_t len = 28 + conf_len + 4;
    char path[1024], tmp[1024];
    snprintf(path, sizeof path, "%s/snapshot.meta", g->raft_dir);
    snprintf(tmp, sizeof tmp, "%s/snapshot.meta.tmp", g->raft_dir);
    pthread_mutex_lock(&g->meta_mu);
    int rc = TERN_EIO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        bool ok = write(fd, buf, len) == (ssize_t)len && fsync(fd) == 0;
        close(fd);
        if (ok && rename(tmp, path) == 0) rc = group__fsync_path(g->raft_dir);
    }
    pthread_mutex_unlock(&g->meta_mu);
    if (rc != 0) node_log(NODE_LOG_ERROR, COMPONENT, "cannot save %s: %s", path, strerror(errno));
    return rc;
}

int group__snapshots_prune(node_group *g, uint64_t keep_index)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/snapshots", g->raft_dir);
    DIR *d = opendir(dir);
    if (d == NULL) return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        unsigned long long index = strtoull(e->d_name, &end, 10);
        if (*end != '\0' || e->d_name[0] < '0' || e->d_name[0] > '9' || index == keep_index)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        group__rmtree(path);
    }
    closedir(d);
    return 0;
}

/* ---------------- the stream we send (loop thread) ---------------- */

void group__stream_close(group_send_stream *s)
{
    for (size_t i = 0; i < s->file_count; i++)
        free(s->files[i].name);
    free(s->files);
    free(s->points);
    if (s->fd >= 0) close(s->fd);
    memset(s, 0, sizeof *s);
    s->fd = -1;
}

static int name_compare(const void *a, const void *b)
{
    return strcmp(((const group_stream_file *)a)->name, ((const group_stream_file *)b)->name);
}

/* Adds the regular files under dir/rel (recursively) to s. */
static int stream_walk(group_send_stream *s, const char *rel, size_t *cap)
{
    char path[1024];
    snprintf(path, sizeof path, "%s%s%s", s->dir, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (d == NULL) return errno == ENOENT ? TERN_ENOTFOUND : TERN_EIO;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char name[1024], full[2100];
        snprintf(name, sizeof name, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", s->dir, name);
        struct stat st;
        if (lstat(full, &st) != 0) {
            rc = TERN_EIO;
        } else if (S_ISDIR(st.st_mode)) {
            rc = stream_walk(s, name, cap);
        } else if (S_ISREG(st.st_mode)) {
            if (strlen(name) > NAME_MAX_BYTES) {
                rc = TERN_ETOOBIG;
                break;
            }
            if (s->file_count == *cap) {
                *cap = *cap ? *cap * 2 : 16;
                group_stream_file *grown = realloc(s->files, *cap * sizeof *grown);
                if (grown == NULL) {
                    rc = TERN_ENOMEM;
                    break;
                }
                s->files = grown;
            }
            s->files[s->file_count].name = strdup(name);
            s->files[s->file_count].size = (uint64_t)st.st_size;
            if (s->files[s->file_count].name == NULL)
                rc = TERN_ENOMEM;
            else
                s->file_count++;
        }
    }
    closedir(d);
    return rc;
}

static int stream_load(node_group *g, group_send_stream *s, uint64_t index)
{
    group__stream_close(s);
    group__snapshot_dir(g, index, s->dir, sizeof s->dir);
    size_t cap = 0;
    int rc = stream_walk(s, "", &cap);
    if (rc != 0) {
        group__stream_close(s);
        return rc;
    }
    qsort(s->files, s->file_count, sizeof *s->files, name_compare);
    uint64_t off = STREAM_HEADER;
    for (size_t i = 0; i < s->file_count; i++) {
        s->files[i].header_offset = off;
        off += 2 + strlen(s->files[i].name) + 8 + s->files[i].size;
    }
    s->trailer_offset = off;
    s->total = off + 2 + 4;
    s->points = malloc(16 * sizeof *s->points);
    if (s->points == NULL) {
        group__stream_close(s);
        return TERN_ENOMEM;
    }
    s->point_cap = 16;
    s->points[0] = (group_crc_point){0, 0};
    s->point_count = 1;
    s->index = index;
    return 0;
}

/* Reads file bytes for the stream. */
static int file_pread(group_send_stream *s, size_t file, uint64_t off, uint8_t *buf, size_t len)
{
    if (s->fd < 0 || s->fd_file != file) {
        if (s->fd >= 0) close(s->fd);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", s->dir, s->files[file].name);
        s->fd = open(path, O_RDONLY | O_CLOEXEC);
        s->fd_file = file;
        if (s->fd < 0) return errno == ENOENT ? TERN_ENOTFOUND : TERN_EIO;
    }
    while (len > 0) {
        ssize_t n = pread(s->fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return TERN_EIO; /* a checkpoint file never shrinks */
        buf += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

/* Produces stream bytes [offset, offset+len) that lie before the CRC field. */
static long stream_produce(node_group *g, group_send_stream *s, uint64_t offset, uint8_t *buf,
                           size_t len)
{
    uint64_t end = TERN_MIN(offset + len, s->total - 4);
    size_t done = 0;
    uint8_t hdr[STREAM_HEADER + 2 + NAME_MAX_BYTES + 8];
    while (offset + done < end) {
        uint64_t pos = offset + done;
        size_t want = (size_t)(end - pos);
        if (pos < STREAM_HEADER) {
            tern_le_put_u32(hdr, STREAM_MAGIC);
            tern_le_put_u32(hdr + 4, FORMAT_VERSION);
            tern_le_put_u64(hdr + 8, s->index);
            size_t n = TERN_MIN(want, (size_t)(STREAM_HEADER - pos));
            memcpy(buf + done, hdr + pos, n);
            done += n;
            continue;
        }
        if (pos >= s->trailer_offset) {
            uint8_t marker[2] = {0, 0};
            size_t n = TERN_MIN(want, (size_t)(s->trailer_offset + 2 - pos));
            memcpy(buf + done, marker + (pos - s->trailer_offset), n);
            done += n;
            continue;
        }
        /* The file whose header or data holds pos: the last with header_offset <= pos. */
        size_t lo = 0, hi = s->file_count;
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if (s->files[mid].header_offset <= pos)
                lo = mid;
            else
                hi = mid;
        }
        const group_stream_file *f = &s->files[lo];
        size_t name_len = strlen(f->name);
        uint64_t data_off = f->header_offset + 2 + name_len + 8;
        if (pos < data_off) {
            put_u16(hdr, (uint16_t)name_len);
            memcpy(hdr + 2, f->name, name_len);
            tern_le_put_u64(hdr + 2 + name_len, f->size);
            size_t n = TERN_MIN(want, (size_t)(data_off - pos));
            memcpy(buf + done, hdr + (pos - f->header_offset), n);
            done += n;
            continue;
        }
        size_t n = (size_t)TERN_MIN((uint64_t)want, f->size - (pos - data_off));
        int rc = file_pread(s, lo, pos - data_off, buf + done, n);
        if (rc != 0) return rc;
        done += n;
    }
    (void)g;
    return (long)done;
}

static int point_add(group_send_stream *s, uint64_t offset, uint32_t crc)
{
    size_t i = s->point_count;
    while (i > 0 && s->points[i - 1].offset > offset)
        i--;
    if (i > 0 && s->points[i - 1].offset == offset) return 0;
    if (s->point_count == s->point_cap) {
        group_crc_point *grown = realloc(s->points, 2 * s->point_cap * sizeof *grown);
        if (grown == NULL) return TERN_ENOMEM;
        s->points = grown;
        s->point_cap *= 2;
    }
    memmove(s->points + i + 1, s->points + i, (s->point_count - i) * sizeof *s->points);
    s->points[i] = (group_crc_point){offset, crc};
    s->point_count++;
    return 0;
}

/* The CRC of stream bytes [0, offset), extending from the nearest known point. */
static int crc_at(node_group *g, group_send_stream *s, uint64_t offset, uint32_t *crc)
{
    size_t i = s->point_count;
    while (i > 0 && s->points[i - 1].offset > offset)
        i--;
    uint64_t pos = s->points[i - 1].offset;
    uint32_t c = s->points[i - 1].crc;
    uint8_t *buf = pos < offset ? malloc(GROUP_CHUNK_BYTES) : NULL;
    if (pos < offset && buf == NULL) return TERN_ENOMEM;
    while (pos < offset) {
        long n = stream_produce(g, s, pos, buf, (size_t)TERN_MIN(offset - pos, GROUP_CHUNK_BYTES));
        if (n <= 0) {
            free(buf);
            return n < 0 ? (int)n : TERN_EIO;
        }
        c = node_raftlog_crc32c(c, buf, (size_t)n);
        pos += (uint64_t)n;
    }
    free(buf);
    *crc = c;
    return point_add(s, offset, c);
}

long group__stream_read(node_group *g, uint64_t index, uint64_t offset, void *buf, size_t len)
{
    group_send_stream *s = &g->send;
    if (s->index != index) {
        int rc = stream_load(g, s, index);
        if (rc != 0) return rc;
    }
    if (offset >= s->total || len == 0) return 0;
    uint8_t *out = buf;
    long n = 0;
    uint64_t crc_field = s->total - 4;
    if (offset < crc_field) {
        n = stream_produce(g, s, offset, out, len);
        if (n < 0) return n;
        /* Chain the CRC when this read continues a known point (the sequential case). */
        for (size_t i = 0; i < s->point_count; i++) {
            if (s->points[i].offset != offset) continue;
            point_add(s, offset + (uint64_t)n,
                      node_raftlog_crc32c(s->points[i].crc, out, (size_t)n));
            break;
        }
    }
    uint64_t pos = offset + (uint64_t)n;
    if ((size_t)n < len && pos >= crc_field && pos < s->total) {
        uint32_t crc = 0;
        int rc = crc_at(g, s, crc_field, &crc);
        if (rc != 0) return rc;
        uint8_t field[4];
        tern_le_put_u32(field, crc);
        size_t m = TERN_MIN(len - (size_t)n, (size_t)(s->total - pos));
        memcpy(out + n, field + (pos - crc_field), m);
        n += (long)m;
    }
    return n;
}

/* ---------------- the stream we receive (persist thread) ---------------- */

enum { RS_HEADER, RS_NAME_LEN, RS_NAME, RS_SIZE, RS_DATA, RS_CRC, RS_END };

static bool name_valid(const char *name)
{
    if (name[0] == '\0' || name[0] == '/') return false;
    const char *p = name;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += len;
        if (*p == '/') p++;
        if (slash && *p == '\0') return false;
    }
    return true;
}

static int recv_open_file(group_recv_stream *r, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", r->dir, name);
    for (char *p = path + strlen(r->dir) + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) return TERN_EIO;
        *p = '/';
    }
    r->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    return r->fd < 0 ? TERN_EIO : 0;
}

static int recv_close_file(group_recv_stream *r)
{
    int rc = fsync(r->fd) == 0 ? 0 : TERN_EIO;
    close(r->fd);
    r->fd = -1;
    return rc;
}

/* Consumes header bytes into r->hdr until hdr_need are there; returns bytes used. */
static size_t recv_gather(group_recv_stream *r, const uint8_t *p, size_t len)
{
    size_t n = TERN_MIN(len, r->hdr_need - r->hdr_len);
    memcpy(r->hdr + r->hdr_len, p, n);
    r->hdr_len += n;
    return n;
}

static int recv_parse(group_recv_stream *r, const uint8_t *p, size_t len)
{
    while (len > 0) {
        if (r->state == RS_END) return TERN_EPARSE; /* bytes after the CRC */
        if (r->state == RS_DATA) {
            size_t n = (size_t)TERN_MIN((uint64_t)len, r->file_left);
            if (write(r->fd, p, n) != (ssize_t)n) return TERN_EIO;
            r->crc = node_raftlog_crc32c(r->crc, p, n);
            p += n;
            len -= n;
            r->file_left -= n;
            if (r->file_left == 0) {
                int rc = recv_close_file(r);
                if (rc != 0) return rc;
                r->state = RS_NAME_LEN;
                r->hdr_len = 0;
                r->hdr_need = 2;
            }
            continue;
        }
        size_t n = recv_gather(r, p, len);
        if (r->state != RS_CRC) r->crc = node_raftlog_crc32c(r->crc, p, n);
        p += n;
        len -= n;
        if (r->hdr_len < r->hdr_need) continue;
        uint64_t size;
        switch (r->state) {
        case RS_HEADER:
            if (tern_le_get_u32(r->hdr) != STREAM_MAGIC ||
                tern_le_get_u32(r->hdr + 4) != FORMAT_VERSION ||
                tern_le_get_u64(r->hdr + 8) != r->index)
                return TERN_EPARSE;
            r->state = RS_NAME_LEN;
            r->hdr_need = 2;
            break;
        case RS_NAME_LEN:
            r->hdr_need = (size_t)r->hdr[0] | (size_t)r->hdr[1] << 8;
            r->state = r->hdr_need == 0 ? RS_CRC : RS_NAME;
            if (r->hdr_need == 0) r->hdr_need = 4;
            if (r->hdr_need > NAME_MAX_BYTES) return TERN_EPARSE;
            break;
        case RS_NAME:
            r->hdr[r->hdr_len] = '\0';
            if (strlen((char *)r->hdr) != r->hdr_len || !name_valid((char *)r->hdr))
                return TERN_EPARSE;
            if (recv_open_file(r, (char *)r->hdr) != 0) return TERN_EIO;
            r->state = RS_SIZE;
            r->hdr_need = 8;
            break;
        case RS_SIZE:
            size = tern_le_get_u64(r->hdr);
            r->file_left = size;
            r->state = RS_DATA;
            if (size == 0) {
                int rc = recv_close_file(r);
                if (rc != 0) return rc;
                r->state = RS_NAME_LEN;
                r->hdr_need = 2;
            }
            break;
        case RS_CRC:
            if (tern_le_get_u32(r->hdr) != r->crc) return TERN_ECORRUPT;
            r->state = RS_END;
            break;
        }
        r->hdr_len = 0;
    }
    return 0;
}

static void recv_reset(node_group *g, uint64_t index)
{
    group_recv_stream *r = &g->recv;
    if (r->fd >= 0) close(r->fd);
    memset(r, 0, sizeof *r);
    r->fd = -1;
    snprintf(r->dir, sizeof r->dir, "%s/incoming", g->raft_dir);
    group__rmtree(r->dir);
    r->index = index;
    r->state = RS_HEADER;
    r->hdr_need = STREAM_HEADER;
}

/* Fsyncs every directory under path (new files' entries must be durable before the rename). */
static int sync_dirs(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) return TERN_EIO;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0)) continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) rc = sync_dirs(sub);
    }
    closedir(d);
    return rc == 0 ? group__fsync_path(path) : rc;
}

int group__recv_chunk(node_group *g, const group_persist_job *job)
{
    group_recv_stream *r = &g->recv;
    const raft_snapshot_meta *meta = &job->chunk_meta;
    if (job->chunk_offset == 0) {
        recv_reset(g, meta->index);
        if (mkdir(r->dir, 0755) != 0) return TERN_EIO;
    } else if (r->index != meta->index || r->offset != job->chunk_offset) {
        node_log(NODE_LOG_ERROR, COMPONENT,
                 "snapshot %" PRIu64 " chunk at %" PRIu64 " does not follow %" PRIu64 "@%" PRIu64,
                 meta->index, job->chunk_offset, r->index, r->offset);
        return TERN_EPARSE;
    }
    int rc = recv_parse(r, job->chunk_data, job->chunk_len);
    if (rc != 0) {
        node_log(NODE_LOG_ERROR, COMPONENT,
                 "snapshot %" PRIu64 " stream refused at %" PRIu64 ": %s", meta->index, r->offset,
                 tern_strerror(rc));
        return rc;
    }
    r->offset += job->chunk_len;
    if (!job->chunk_done) return 0;
    if (r->state != RS_END) return TERN_EPARSE; /* done before the end marker and CRC */
    char final[512], snapdir[600];
    snprintf(snapdir, sizeof snapdir, "%s/snapshots", g->raft_dir);
    if (mkdir(snapdir, 0755) != 0 && errno != EEXIST) return TERN_EIO;
    group__snapshot_dir(g, meta->index, final, sizeof final);
    rc = sync_dirs(r->dir);
    if (rc != 0) return rc;
    group__rmtree(final);
    if (rename(r->dir, final) != 0) return TERN_EIO;
    if ((rc = group__fsync_path(snapdir)) != 0 || (rc = group__fsync_path(g->raft_dir)) != 0)
        return rc;
    /* Meta first: after a crash from here on, start-up sees the snapshot, empties a log that
     * does not continue it, and installs it if the state machine is behind. */
    rc = group__meta_save(g, meta);
    if (rc != 0) return rc;
    rc = group__apply_install(g, final, meta);
    if (rc != 0) {
        node_log(NODE_LOG_ERROR, COMPONENT, "installing snapshot %" PRIu64 " failed: %s",
                 meta->index, tern_strerror(rc));
        return rc;
    }
    g->log_reset_after = meta->index;
    node_log(NODE_LOG_INFO, COMPONENT,
             "installed snapshot %" PRIu64 " (term %" PRIu64 ", %" PRIu64 " bytes)", meta->index,
             meta->term, r->offset);
    group__snapshots_prune(g, meta->index);
    r->index = 0;
    return 0;
}
