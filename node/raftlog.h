/* node internal header (not public, used by node/ only): durable Raft log and hard state. */
#ifndef TERN_NODE_RAFTLOG_H
#define TERN_NODE_RAFTLOG_H

/*
 * DESIGN NOTES
 *
 * A log directory holds:
 *   00000000000000000001-00000000000000000100   closed segment, entries 1..100
 *   00000000000000000101-open                     the open segment (at most one, always last)
 *   hardstate                                     term, vote, commit (36 bytes, CRC32C)
 *
 * A segment is a sequence of records, no file header. A record is a 32-byte header followed by
 * the payload; all integers little-endian:
 *   u32 crc32c   over header bytes 4..31 and the payload
 *   u32 length   payload bytes
 *   u32 type     caller's entry type
 *   u32 reserved 0
 *   u64 index
 *   u64 term
 *
 * Invariants: indexes are contiguous across all segments, terms never decrease, every closed
 * segment was fsynced before it was renamed from "-open" to its closed name, and every segment
 * in memory holds at least one entry (except transiently inside one call).
 *
 * Segment roll (when the open segment would exceed segment_bytes_max): fdatasync the open
 * segment, rename it to first-last, fsync the directory; the next append creates a new open
 * segment and fsyncs the directory.
 *
 * Recovery (open): closed segments must be perfect. In the open segment a torn tail is
 * truncated: a short header, a payload running past end of file, or a CRC mismatch in a record
 * that ends exactly at end of file or is followed only by zero bytes (a file extended by a
 * torn write). Anything else is TERN_ECORRUPT naming the file and offset.
 *
 * Errors: a failed write, fsync, rename or unlink puts the log in a sticky failed state; that
 * call returns TERN_EIO or TERN_ENOSPC, every later mutating call TERN_EFAILED. fsync is never
 * retried. Reads keep working.
 *
 * Threads: every call takes the log's mutex. node_raftlog_sync releases it during fdatasync,
 * so one thread may keep appending while another syncs (group commit): sync returns the
 * highest index it made durable.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NODE_RAFTLOG_SEGMENT_BYTES_DEFAULT (64u * 1024 * 1024)
#define NODE_RAFTLOG_RECORD_HEADER_BYTES   32u

typedef struct node_raftlog node_raftlog;

/* One entry. For append, data points at len caller-owned bytes; for reads, into the block
 * allocated by node_raftlog_read. */
typedef struct {
    uint64_t index;
    uint64_t term;
    uint32_t type;
    const uint8_t *data;
    size_t len;
} node_raftlog_entry;

typedef struct {
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
} node_raftlog_hard_state;

/* I/O hooks so tests can inject write and sync failures or drop unsynced data. Each returns
 * like the system call (-1 and errno on failure). fsync is called with data_only true for
 * segment data (fdatasync) and false for directories and metadata changes. */
typedef struct {
    ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t len, off_t offset);
    int (*fsync)(void *ctx, int fd, bool data_only);
    void *ctx;
} node_raftlog_io;

typedef struct {
    uint64_t segment_bytes_max; /* 0: NODE_RAFTLOG_SEGMENT_BYTES_DEFAULT */
    const node_raftlog_io *io;  /* NULL: the real system calls */
} node_raftlog_options;

/* Opens (creating the directory if missing) and recovers the log in dir. On return every
 * entry and the hard state are durable. On failure *out is NULL and errmsg says why
 * (TERN_ECORRUPT names the file and offset). opts may be NULL. */
int node_raftlog_open(const char *dir, const node_raftlog_options *opts, node_raftlog **out,
                      char *errmsg, size_t errmsg_len);
/* Closes the files without syncing anything (unsynced appends may be lost by a crash). */
void node_raftlog_close(node_raftlog *log);
/* The message of the last failure (not synchronized: read it on the thread that failed). */
const char *node_raftlog_errmsg(node_raftlog *log);

/* Appends count >= 1 entries. The first index must be last_index+1 (any index >= 1 when the
 * log is empty), indexes contiguous and terms non-decreasing (asserted). Written to the page
 * cache; not durable until node_raftlog_sync. TERN_ETOOBIG for a payload over 4 GiB - 1. */
int node_raftlog_append(node_raftlog *log, const node_raftlog_entry *entries, size_t count);
/* fdatasyncs the open segment; *durable_index (may be NULL) is the highest index known
 * durable afterwards (0 if none). */
int node_raftlog_sync(node_raftlog *log, uint64_t *durable_index);
/* Deletes entries >= index (durably, before returning). index <= first_index empties the log;
 * index > last_index changes nothing. */
int node_raftlog_truncate_suffix(node_raftlog *log, uint64_t index);
/* Deletes every closed segment whose entries are all < index. Entries of the remaining
 * segments stay readable, so first_index may stay below index. */
int node_raftlog_compact_prefix(node_raftlog *log, uint64_t index);

/* Reads entries first..last (inclusive) but stops before the payload total would exceed
 * bytes_max; at least one entry is always returned. *entries is one allocation: free it with
 * node_raftlog_entries_free. TERN_ERANGE when first..last is not inside the log. */
int node_raftlog_read(node_raftlog *log, uint64_t first, uint64_t last, size_t bytes_max,
                      node_raftlog_entry **entries, size_t *count);
void node_raftlog_entries_free(node_raftlog_entry *entries);
/* Term of the entry at index; TERN_ERANGE if not in the log. */
int node_raftlog_term(node_raftlog *log, uint64_t index, uint64_t *term);
/* Type of the entry at index, without reading its payload; TERN_ERANGE if not in the log. */
int node_raftlog_type(node_raftlog *log, uint64_t index, uint32_t *type);
/* First and last index in the log; both 0 when the log is empty. */
uint64_t node_raftlog_first_index(node_raftlog *log);
uint64_t node_raftlog_last_index(node_raftlog *log);

/* Writes the hard state durably (temp file, fsync, rename, fsync directory). */
int node_raftlog_hard_state_save(node_raftlog *log, const node_raftlog_hard_state *hs);
/* The last saved (or recovered) hard state; zeros for a new log. */
void node_raftlog_hard_state_get(node_raftlog *log, node_raftlog_hard_state *hs);

/* CRC32C (Castagnoli), zlib-style chaining: crc32c(crc32c(0, a), b) == crc32c(0, a||b).
 * Uses the SSE4.2 instruction when the CPU has it. */
uint32_t node_raftlog_crc32c(uint32_t crc, const void *data, size_t len);
/* The table-driven implementation, exposed so tests can compare both. */
uint32_t node_raftlog_crc32c_table(uint32_t crc, const void *data, size_t len);

#endif
