/* Internal to node/: Raft messages to and from their protobuf wire form (proto/peer.proto). */
#ifndef TERN_NODE_RAFTWIRE_H
#define TERN_NODE_RAFTWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "raft.h"

/* Bounds a decoded message must respect; a message beyond them is refused, not truncated. */
#define NODE_RAFTWIRE_ENTRIES_MAX      4096
#define NODE_RAFTWIRE_ENTRY_BYTES_MAX  (8u << 20)

/* Encodes m (and its entries) for group; *out is malloc'd. TERN_EINVAL for a bad message. */
int node_raftwire_encode(const raft_message *m, uint32_t group, uint8_t **out, size_t *out_len);

/*
 * A decoded message: `msg` (with msg.entries pointing into this object) stays
 * valid until node_raftwire_free. Decoding checks what the core trusts its
 * caller for: a known type, non-zero sender and receiver, entry indexes that
 * are contiguous after prev_index, bounded counts and sizes. Anything else is
 * TERN_EPARSE and no object is returned.
 */
typedef struct node_raftwire_msg node_raftwire_msg;
struct node_raftwire_msg {
    raft_message msg;
    uint32_t group;
    raft_entry *entries;
    void *unpacked; /* the protobuf-c object the entries' data points into */
};

int node_raftwire_decode(const uint8_t *buf, size_t len, node_raftwire_msg **out);
void node_raftwire_free(node_raftwire_msg *m);

#endif
