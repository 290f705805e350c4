/* Internal to node/: Raft messages to and from their protobuf wire form (proto/peer.proto). */
#ifndef TERN_NODE_RAFTWIRE_H
#define TERN_NODE_RAFTWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "raft.h"

/* Bounds a decoded message must respect; a message beyond them is refused, not truncated. */
#define NODE_RAFTWIRE_ENTRIES_MAX     4096
#define NODE_RAFTWIRE_ENTRY_BYTES_MAX (8u << 20)
/* A SNAPSHOT chunk's data (the driver sends 1 MiB chunks). */
#define NODE_RAFTWIRE_CHUNK_BYTES_MAX (8u << 20)
/* Transport frame types on the peer connection (proto/peer.proto GroupMessage.kind). */
enum {
    NODE_FRAME_RAFT = 1,
    NODE_FRAME_FORWARD_PROPOSE = 2,
    NODE_FRAME_PROPOSE_RESULT = 3,
    NODE_FRAME_READ_INDEX_REQUEST = 4,
    NODE_FRAME_READ_INDEX_RESPONSE = 5,
    NODE_FRAME_ADMIN_REQUEST = 6,
    NODE_FRAME_ADMIN_RESPONSE = 7,
    NODE_FRAME_NODE_INFO = 8,
};
#define NODE_FRAME_KIND_MAX NODE_FRAME_NODE_INFO
/* Longest address or S3 address string in a group frame. */
#define NODE_RAFTWIRE_ADDRESS_MAX 95

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

/*
 * The group driver's frames (kinds 2..8 above), one flat struct. Strings are NUL-terminated
 * and at most NODE_RAFTWIRE_ADDRESS_MAX bytes; entry is at most NODE_RAFTWIRE_ENTRY_BYTES_MAX
 * and only on forward proposals. Decoding refuses (TERN_EPARSE) an unknown kind, a status
 * that is not 0 or a TERN_E* code, oversized or NUL-holding strings and misplaced entries.
 */
typedef struct node_groupwire_msg {
    uint32_t kind;
    uint32_t group;
    uint64_t request_id;
    uint64_t client_id;
    uint64_t seq;
    int32_t status;
    uint64_t index;
    uint64_t leader_id;
    uint32_t op;
    uint64_t node_id;
    char address[NODE_RAFTWIRE_ADDRESS_MAX + 1];
    char s3_address[NODE_RAFTWIRE_ADDRESS_MAX + 1];
    const uint8_t *entry; /* decoded: points into `unpacked` */
    size_t entry_len;
    void *unpacked;
} node_groupwire_msg;

/* *out is malloc'd. TERN_EINVAL for a message decoding would refuse. */
int node_groupwire_encode(const node_groupwire_msg *m, uint8_t **out, size_t *out_len);
/* On success *out must be freed with node_groupwire_free. */
int node_groupwire_decode(const uint8_t *buf, size_t len, node_groupwire_msg **out);
void node_groupwire_free(node_groupwire_msg *m);

#endif
