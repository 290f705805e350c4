/* Raft messages to and from protobuf (proto/peer.proto), validated before the core sees them. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "peer.pb-c.h"
#include "raftwire.h"

int node_raftwire_encode(const raft_message *m, uint32_t group, uint8_t **out, size_t *out_len)
{
    if (m == NULL || m->type < RAFT_MSG_APPEND || m->type > RAFT_MSG_SNAPSHOT_RESPONSE ||
        m->entries_count > NODE_RAFTWIRE_ENTRIES_MAX ||
        m->data_len > NODE_RAFTWIRE_CHUNK_BYTES_MAX || m->conf_len > RAFT_CONF_ENCODED_MAX)
        return TERN_EINVAL;
    Tern__Peer__RaftMessage pb = TERN__PEER__RAFT_MESSAGE__INIT;
    pb.type = (uint32_t)m->type;
    pb.from = m->from;
    pb.to = m->to;
    pb.term = m->term;
    pb.prev_index = m->prev_index;
    pb.prev_term = m->prev_term;
    pb.commit = m->commit;
    pb.reject = m->reject;
    pb.index = m->index;
    pb.hint_index = m->hint_index;
    pb.hint_term = m->hint_term;
    pb.last_index = m->last_index;
    pb.last_term = m->last_term;
    pb.transfer = m->transfer;
    pb.granted = m->granted;
    pb.context = m->context;
    pb.group = group;
    pb.offset = m->offset;
    pb.data.data = (uint8_t *)m->data; /* pack only reads it */
    pb.data.len = m->data_len;
    pb.conf.data = (uint8_t *)m->conf;
    pb.conf.len = m->conf_len;
    pb.done = m->done;
    Tern__Peer__RaftEntry *entries = NULL;
    Tern__Peer__RaftEntry **ptrs = NULL;
    if (m->entries_count > 0) {
        entries = calloc(m->entries_count, sizeof *entries);
        ptrs = calloc(m->entries_count, sizeof *ptrs);
        if (entries == NULL || ptrs == NULL) {
            free(entries);
            free(ptrs);
            return TERN_ENOMEM;
        }
        for (size_t i = 0; i < m->entries_count; i++) {
            const raft_entry *e = &m->entries[i];
            tern__peer__raft_entry__init(&entries[i]);
            entries[i].index = e->index;
            entries[i].term = e->term;
            entries[i].type = (uint32_t)e->type;
            entries[i].data.data = (uint8_t *)e->data; /* pack only reads it */
            entries[i].data.len = e->len;
            ptrs[i] = &entries[i];
        }
        pb.n_entries = m->entries_count;
        pb.entries = ptrs;
    }
    size_t len = tern__peer__raft_message__get_packed_size(&pb);
    uint8_t *buf = malloc(len ? len : 1);
    int rc = TERN_ENOMEM;
    if (buf != NULL) {
        size_t packed = tern__peer__raft_message__pack(&pb, buf);
        rc = packed == len ? 0 : TERN_EINVAL;
    }
    free(entries);
    free(ptrs);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

/* The checks a peer's bytes must pass before the core may see them. */
static int validate(const Tern__Peer__RaftMessage *pb)
{
    if (pb->type < RAFT_MSG_APPEND || pb->type > RAFT_MSG_SNAPSHOT_RESPONSE) return TERN_EPARSE;
    if (pb->from == 0 || pb->to == 0 || pb->from == pb->to) return TERN_EPARSE;
    if (pb->n_entries > NODE_RAFTWIRE_ENTRIES_MAX) return TERN_EPARSE;
    if (pb->n_entries > 0 && pb->type != RAFT_MSG_APPEND) return TERN_EPARSE;
    for (size_t i = 0; i < pb->n_entries; i++) {
        const Tern__Peer__RaftEntry *e = pb->entries[i];
        if (e->index != pb->prev_index + 1 + i) return TERN_EPARSE; /* contiguous */
        if (e->term == 0 || e->term > pb->term) return TERN_EPARSE;
        if (i > 0 && e->term < pb->entries[i - 1]->term) return TERN_EPARSE;
        if (e->type > RAFT_ENTRY_CONFIG) return TERN_EPARSE;
        if (e->data.len > NODE_RAFTWIRE_ENTRY_BYTES_MAX) return TERN_EPARSE;
    }
    /* Snapshot bytes ride only on SNAPSHOT; a configuration must decode. */
    if (pb->data.len > 0 && pb->type != RAFT_MSG_SNAPSHOT) return TERN_EPARSE;
    if (pb->data.len > NODE_RAFTWIRE_CHUNK_BYTES_MAX) return TERN_EPARSE;
    if (pb->conf.len > 0) {
        raft_conf conf;
        if (pb->type != RAFT_MSG_SNAPSHOT || pb->conf.len > RAFT_CONF_ENCODED_MAX ||
            raft_conf_decode(pb->conf.data, pb->conf.len, &conf) != 0)
            return TERN_EPARSE;
    } else if (pb->type == RAFT_MSG_SNAPSHOT) {
        return TERN_EPARSE; /* a snapshot always names its configuration */
    }
    if (pb->type == RAFT_MSG_SNAPSHOT && pb->last_index == 0) return TERN_EPARSE;
    return 0;
}

int node_raftwire_decode(const uint8_t *buf, size_t len, node_raftwire_msg **out)
{
    *out = NULL;
    Tern__Peer__RaftMessage *pb = tern__peer__raft_message__unpack(NULL, len, buf);
    if (pb == NULL) return TERN_EPARSE;
    int rc = validate(pb);
    node_raftwire_msg *m = rc == 0 ? calloc(1, sizeof *m) : NULL;
    if (rc == 0 && m == NULL) rc = TERN_ENOMEM;
    if (rc == 0 && pb->n_entries > 0) {
        m->entries = calloc(pb->n_entries, sizeof *m->entries);
        if (m->entries == NULL) rc = TERN_ENOMEM;
    }
    if (rc != 0) {
        if (m) free(m);
        tern__peer__raft_message__free_unpacked(pb, NULL);
        return rc;
    }
    for (size_t i = 0; i < pb->n_entries; i++) {
        const Tern__Peer__RaftEntry *e = pb->entries[i];
        m->entries[i] = (raft_entry){.index = e->index,
                                     .term = e->term,
                                     .type = (raft_entry_type)e->type,
                                     .data = e->data.data,
                                     .len = e->data.len};
    }
    m->msg = (raft_message){.type = (raft_message_type)pb->type,
                            .from = pb->from,
                            .to = pb->to,
                            .term = pb->term,
                            .prev_index = pb->prev_index,
                            .prev_term = pb->prev_term,
                            .commit = pb->commit,
                            .entries = m->entries,
                            .entries_count = pb->n_entries,
                            .reject = pb->reject,
                            .index = pb->index,
                            .hint_index = pb->hint_index,
                            .hint_term = pb->hint_term,
                            .last_index = pb->last_index,
                            .last_term = pb->last_term,
                            .transfer = pb->transfer,
                            .granted = pb->granted,
                            .context = pb->context,
                            .offset = pb->offset,
                            .data = pb->data.len ? pb->data.data : NULL,
                            .data_len = pb->data.len,
                            .conf = pb->conf.len ? pb->conf.data : NULL,
                            .conf_len = pb->conf.len,
                            .done = pb->done};
    m->group = pb->group;
    m->unpacked = pb;
    *out = m;
    return 0;
}

void node_raftwire_free(node_raftwire_msg *m)
{
    if (m == NULL) return;
    tern__peer__raft_message__free_unpacked(m->unpacked, NULL);
    free(m->entries);
    free(m);
}

/* ---------------- group driver frames ---------------- */

static bool status_valid(int32_t status)
{
    return status == 0 || (status < 0 && strcmp(tern_errname(status), "TERN_UNKNOWN") != 0);
}

static bool string_valid(const char *s)
{
    return s == NULL || strlen(s) <= NODE_RAFTWIRE_ADDRESS_MAX;
}

int node_groupwire_encode(const node_groupwire_msg *m, uint8_t **out, size_t *out_len)
{
    if (m->kind < NODE_FRAME_FORWARD_PROPOSE || m->kind > NODE_FRAME_KIND_MAX ||
        !status_valid(m->status) || !string_valid(m->address) || !string_valid(m->s3_address) ||
        m->entry_len > NODE_RAFTWIRE_ENTRY_BYTES_MAX ||
        (m->entry_len > 0 && m->kind != NODE_FRAME_FORWARD_PROPOSE))
        return TERN_EINVAL;
    Tern__Peer__GroupMessage pb = TERN__PEER__GROUP_MESSAGE__INIT;
    pb.kind = m->kind;
    pb.group = m->group;
    pb.request_id = m->request_id;
    pb.client_id = m->client_id;
    pb.seq = m->seq;
    pb.status = m->status;
    pb.index = m->index;
    pb.leader_id = m->leader_id;
    pb.op = m->op;
    pb.node_id = m->node_id;
    pb.address = (char *)m->address; /* pack only reads them */
    pb.s3_address = (char *)m->s3_address;
    pb.entry.data = (uint8_t *)m->entry;
    pb.entry.len = m->entry_len;
    size_t len = tern__peer__group_message__get_packed_size(&pb);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) return TERN_ENOMEM;
    if (tern__peer__group_message__pack(&pb, buf) != len) {
        free(buf);
        return TERN_EINVAL;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

int node_groupwire_decode(const uint8_t *buf, size_t len, node_groupwire_msg **out)
{
    *out = NULL;
    Tern__Peer__GroupMessage *pb = tern__peer__group_message__unpack(NULL, len, buf);
    if (pb == NULL) return TERN_EPARSE;
    int rc = 0;
    if (pb->kind < NODE_FRAME_FORWARD_PROPOSE || pb->kind > NODE_FRAME_KIND_MAX ||
        !status_valid(pb->status) || !string_valid(pb->address) || !string_valid(pb->s3_address) ||
        pb->entry.len > NODE_RAFTWIRE_ENTRY_BYTES_MAX ||
        (pb->entry.len > 0 && pb->kind != NODE_FRAME_FORWARD_PROPOSE))
        rc = TERN_EPARSE;
    node_groupwire_msg *m = rc == 0 ? calloc(1, sizeof *m) : NULL;
    if (rc == 0 && m == NULL) rc = TERN_ENOMEM;
    if (rc != 0) {
        tern__peer__group_message__free_unpacked(pb, NULL);
        return rc;
    }
    m->kind = pb->kind;
    m->group = pb->group;
    m->request_id = pb->request_id;
    m->client_id = pb->client_id;
    m->seq = pb->seq;
    m->status = pb->status;
    m->index = pb->index;
    m->leader_id = pb->leader_id;
    m->op = pb->op;
    m->node_id = pb->node_id;
    /* protobuf-c strings are NUL-terminated; an embedded NUL just shortens them. */
    if (pb->address) snprintf(m->address, sizeof m->address, "%s", pb->address);
    if (pb->s3_address) snprintf(m->s3_address, sizeof m->s3_address, "%s", pb->s3_address);
    m->entry = pb->entry.len ? pb->entry.data : NULL;
    m->entry_len = pb->entry.len;
    m->unpacked = pb;
    *out = m;
    return 0;
}

void node_groupwire_free(node_groupwire_msg *m)
{
    if (m == NULL) return;
    tern__peer__group_message__free_unpacked(m->unpacked, NULL);
    free(m);
}
