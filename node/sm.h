/* node internal header (not public, used by node/ only): the region group's state machine. */
#ifndef TERN_NODE_SM_H
#define TERN_NODE_SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node.h"

/*
 * COMMANDS
 *
 * Every replicated change is one command: u8 version (1) | u8 type | fields,
 * integers little-endian, strings as u32 length + bytes:
 *   1 BUCKET_CREATE   name, region, i64 created_ms
 *   2 BUCKET_DELETE   name
 *   3 BLOCK_PUT       id[32], block bytes (the rest)
 *   4 OBJECT_PUT      bucket, key, manifest record (the rest; store_codec format)
 *   5 OBJECT_DELETE   bucket, key
 *   6 UPLOAD_CREATE   bucket, key, upload id, i64 initiated_ms, template record (the rest)
 *   7 PART_PUT        bucket, key, upload id, part record (the rest)
 *   8 UPLOAD_COMPLETE bucket, key, upload id, manifest record (the rest)
 *   9 UPLOAD_ABORT    bucket, key, upload id
 *  10 BLOCKS_COLLECT  u32 count, ids[32] (delete those still unreferenced)
 *  11 OBJECT_PUT_WITH_BLOCK  bucket, key, id[32], block bytes, manifest record (the rest)
 *  12 PART_PUT_WITH_BLOCK    bucket, key, upload id, id[32], block bytes, part record
 *  13 BUCKET_POLICY  name, policy record (the rest; store_codec format)
 *  14 GEO_APPLY      u32 origin region, u64 origin index, u64 hlc, a plain change command
 *  15 GEO_TRIM       u64 upto (drop the geo log through it: every peer has applied it)
 *  16 GEO_APPLY_PLACED  u32 origin region, u64 origin index, u64 hlc, u8 holders (topology
 *                    region mask the origin shipped the blocks to; 0 = every region), u8
 *                    flags (1: this region is one of them; 2: part of a re-seed, applied by
 *                    last writer wins without moving the high-water index), a plain change
 *                    command. GEO_APPLY (14) is the same with every region a holder.
 *  17 BLOCKS_DROP    u32 count, ids[32] (delete the bytes, keep the references: this
 *                    region's replica goes, reads fetch the blocks from another region)
 *  19 GEO_MARK       u32 origin region, u64 hlc (origin was idle: every later change of it
 *                    is newer than hlc), optionally u64 index (a re-seed brought this region
 *                    up to it)
 *  20 GEO_GC         u32 count, then per tombstone bucket, key, u64 hlc, u32 origin region
 *                    (collect the key's version record if it is still that tombstone)
 *  18 OBJECT_DELETE_AT  bucket, key, i64 time_ms (the proposer's clock: the delete's version
 *                    in the geo log is at least this time, as a put's is its mtime)
 * The _WITH_BLOCK forms carry an object's last (often only) block with its manifest, so a
 * small PUT is one log entry and one commit instead of two in sequence.
 * A command carries every value its apply needs (upload ids, times): apply
 * reads nothing but the replicated state, so every replica computes the
 * same result.
 *
 * SESSIONS (exactly-once)
 *
 * A proposal carries (client_id, seq) from the group. Per client the state
 * keeps the highest seq applied, a 64-bit window of which of the 64 seqs up
 * to it were applied, and their results. A seq in the window that was
 * applied is not applied again: its recorded result is returned. A seq
 * older than the window answers TERN_EPRECOND without applying (the group
 * retries a proposal within its 64 most recent ones only). seq 0 = no
 * session (never deduplicated). Session records live in the store's meta
 * ("raft/session/<hex id>"), written with the applied index after the change.
 *
 * RESULTS
 *
 * Deterministic results (0, ENOTFOUND, EEXIST, ENOTEMPTY, ECONFLICT, EINVAL,
 * EPARSE) are returned to the proposer. A local failure (I/O error, full
 * disk, no memory) is TERN_EFAILED: the group stops applying, because
 * skipping the command would make this replica diverge.
 */

#define NODE_SM_SESSION_WINDOW 64

typedef struct node_sm node_sm;
struct node_group_sm;

/* The state machine over store (which must be opened with replicated = true). */
int node_sm_create(node_store *store, node_sm **out);
/* The region whose id stamps the geo log records of this region's changes (node_sm_region_id
 * of its name), and whether to log them at all: only a region with peers does, since nothing
 * trims the log but the peers' acknowledgements. Off until set. */
void node_sm_set_region(node_sm *sm, const char *region, bool log_changes);
uint32_t node_sm_region_id(const char *region);
int node_sm_encode_geo_trim(uint64_t upto, uint8_t **out, size_t *len);
/* A change another region originated, to commit through this region's group (GEO_APPLY). */
int node_sm_encode_geo_apply(uint32_t origin_region, uint64_t origin_index, uint64_t hlc,
                             uint32_t holders, bool local_holder, bool reseed,
                             const uint8_t *change, size_t change_len, uint8_t **out, size_t *len);
/* The version of the key's latest change, a delete's included: TERN_ENOTFOUND if it has none. */
int node_sm_version_get(node_sm *sm, const char *bucket, const char *key, uint64_t *hlc,
                        uint32_t *region, bool *deleted);
/* The highest index of origin_region's log this region has applied (0: none): where a shipper
 * resumes. */
uint64_t node_sm_geo_received(node_sm *sm, uint32_t origin_region);
/* How far this region has applied origin_region's log (*index) and the bound every later change
 * of that region is newer than (*bound: the newest applied, or what the origin promised while
 * idle). Zeros when nothing came yet. */
int node_geo_received_get(node_store *s, uint32_t origin_region, uint64_t *index, uint64_t *bound);
/* The number of tombstones (versions of deleted keys) this region keeps. */
int node_geo_tombstone_count(node_store *s, size_t *count);
/* upto > 0: also raise the high-water index to it (the end of a re-seed). */
int node_sm_encode_geo_mark(uint32_t origin_region, uint64_t hlc, uint64_t upto, uint8_t **out,
                            size_t *len);
/* The version record of a key (its latest change, a tombstone included): TERN_ENOTFOUND. */
int node_geo_version_get(node_store *s, const char *bucket, const char *key, uint64_t *hlc,
                         uint32_t *region, bool *deleted, uint32_t *holders);
/* The version of a bucket's policy (set in some region with peers): TERN_ENOTFOUND. */
int node_geo_policy_version_get(node_store *s, const char *bucket, uint64_t *hlc, uint32_t *region);
/* The index this region's geo log was trimmed through (0: never). */
uint64_t node_geo_trimmed_get(node_store *s);
/* A geo record of cmd (a plain change command) at version (hlc, region_id), as the log keeps
 * them: for a re-seed, which sends current state rather than log records. */
int node_sm_geo_record(uint64_t hlc, uint32_t region_id, const uint8_t *cmd, size_t len,
                       uint8_t **out, size_t *out_len);
/*
 * Tombstones any region may still need are those newer than what some region has not yet
 * passed: with bound = the smallest of the peers' bounds (node_geo_received_get), a tombstone
 * with hlc <= bound can go (no peer can send an older write of its key any more). Scans at
 * most scan_max version records from cursor (a key; "" = start; updated to where the next
 * scan starts) and encodes a GEO_GC command of at most max of them into out (*found of them;
 * 0: nothing to propose).
 */
int node_sm_geo_gc_scan(node_store *s, uint64_t bound, char *cursor, size_t cursor_cap,
                        size_t scan_max, size_t max, uint8_t **out, size_t *len, size_t *found);
/* Splits a geo log record: its version (hlc, origin region id) and the change as a command. */
int node_sm_geo_decode(const void *record, size_t len, uint64_t *hlc, uint32_t *region_id,
                       const uint8_t **cmd, size_t *cmd_len);
void node_sm_free(node_sm *sm);
/* The callbacks the region group drives (node/group.h). */
void node_sm_callbacks(node_sm *sm, struct node_group_sm *out);

/* Command builders: fill out (malloc'd, caller frees) with one encoded command. */
int node_sm_encode_bucket_create(const char *name, const char *region, int64_t created_ms,
                                 uint8_t **out, size_t *len);
int node_sm_encode_bucket_delete(const char *name, uint8_t **out, size_t *len);
int node_sm_encode_bucket_policy(const char *name, const node_bucket_policy *p, uint8_t **out,
                                 size_t *len);
int node_sm_encode_block_put(const node_block_id *id, const void *data, size_t data_len,
                             uint8_t **out, size_t *len);
int node_sm_encode_object_put(const char *bucket, const char *key, const node_manifest *m,
                              uint8_t **out, size_t *len);
int node_sm_encode_object_delete(const char *bucket, const char *key, uint8_t **out, size_t *len);
int node_sm_encode_object_delete_at(const char *bucket, const char *key, int64_t time_ms,
                                    uint8_t **out, size_t *len);
int node_sm_encode_upload_create(const char *bucket, const char *key, const char *upload_id,
                                 int64_t initiated_ms, const node_manifest *tmpl, uint8_t **out,
                                 size_t *len);
int node_sm_encode_part_put(const char *bucket, const char *key, const char *upload_id,
                            const node_part *part, uint8_t **out, size_t *len);
int node_sm_encode_upload_complete(const char *bucket, const char *key, const char *upload_id,
                                   const node_manifest *final, uint8_t **out, size_t *len);
int node_sm_encode_upload_abort(const char *bucket, const char *key, const char *upload_id,
                                uint8_t **out, size_t *len);
/* The _with_block forms: block (id, data, data_len) is stored, then the manifest committed. */
int node_sm_encode_object_put_with_block(const char *bucket, const char *key,
                                         const node_manifest *m, const node_block_id *id,
                                         const void *data, size_t data_len, uint8_t **out,
                                         size_t *len);
int node_sm_encode_part_put_with_block(const char *bucket, const char *key, const char *upload_id,
                                       const node_part *part, const node_block_id *id,
                                       const void *data, size_t data_len, uint8_t **out,
                                       size_t *len);
int node_sm_encode_blocks_collect(const node_block_id *ids, size_t count, uint8_t **out,
                                  size_t *len);
int node_sm_encode_blocks_drop(const node_block_id *ids, size_t count, uint8_t **out, size_t *len);

/* Applies one command directly (tests; the group uses the callbacks). */
int node_sm_apply(node_sm *sm, uint64_t index, uint64_t client_id, uint64_t seq, const void *cmd,
                  size_t len);

#endif
