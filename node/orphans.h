/* node internal header (not public, used by node/ only): when a replicated store's orphan
 * blocks may be collected. */
#ifndef TERN_NODE_ORPHANS_H
#define TERN_NODE_ORPHANS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node.h"

/*
 * A replicated store never deletes an unreferenced block by itself: the
 * scrubber reports it, and the leader proposes BLOCKS_COLLECT once the block
 * has stayed unreferenced for a grace period. A block is unreferenced for a
 * while in normal operation: an upload commits its blocks before the
 * manifest that refers to them. Collecting one of those early is safe (the
 * manifest commit then fails with ECONFLICT and the client retries), and the
 * grace period makes it rare: it should exceed the longest single upload.
 *
 * The tracker remembers when each orphan was first reported; a block
 * referenced again simply stops being reported and is forgotten at the end
 * of the next full pass. Memory is bounded by orphans_max (beyond it, new
 * orphans wait for a later pass).
 */
typedef struct node_orphans node_orphans;

node_orphans *node_orphans_new(uint64_t grace_ms, size_t orphans_max);
void node_orphans_free(node_orphans *o);
/*
 * Records the orphans one scrub step reported at now_ms. *ready (malloc'd,
 * or NULL when none) receives those first reported at least grace_ms ago;
 * they are forgotten (a later report starts a new grace period). At the end
 * of a full pass (pass_complete), orphans not reported during it are
 * forgotten. Returns 0 or TERN_ENOMEM.
 */
int node_orphans_note(node_orphans *o, const node_block_id *ids, size_t count, bool pass_complete,
                      int64_t now_ms, node_block_id **ready, size_t *ready_count);
/* Orphans currently tracked. */
size_t node_orphans_count(const node_orphans *o);

#endif
