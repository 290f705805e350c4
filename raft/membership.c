/* raft: membership configurations (encoding, one-server-at-a-time changes) and snapshots. */
#include <string.h>

#include "raft_internal.h"

/*
 * TEMPORARY (this file is being replaced by the membership and snapshot work
 * in progress): the codec is real; changes and compaction answer TERN_ENOTSUP.
 *
 * Encoding: u8 version (1) | u8 count | u16 reserved 0 | u32 reserved 0, then
 * per member: u64 id | u8 role | u8 address length | u16 0 | u32 0 | address
 * bytes (no NUL). Little-endian.
 */
#define CONF_VERSION 1

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

size_t raft_conf_encode(const raft_conf *c, uint8_t *buf)
{
    RAFT_ASSERT(c->count <= RAFT_MEMBERS_MAX);
    uint8_t *p = buf;
    memset(p, 0, 8);
    p[0] = CONF_VERSION;
    p[1] = (uint8_t)c->count;
    p += 8;
    for (size_t k = 0; k < c->count; k++) {
        const raft_member *m = &c->members[k];
        size_t alen = strnlen(m->address, RAFT_ADDRESS_MAX - 1);
        memset(p, 0, 16);
        put_u64(p, m->id);
        p[8] = (uint8_t)m->role;
        p[9] = (uint8_t)alen;
        memcpy(p + 16, m->address, alen);
        p += 16 + alen;
    }
    return (size_t)(p - buf);
}

int raft_conf_decode(const void *data, size_t len, raft_conf *out)
{
    const uint8_t *p = data, *end = p + len;
    if (len < 8 || p[0] != CONF_VERSION || p[1] > RAFT_MEMBERS_MAX) return TERN_EPARSE;
    memset(out, 0, sizeof *out);
    size_t count = p[1], voters = 0;
    p += 8;
    for (size_t k = 0; k < count; k++) {
        if (end - p < 16) return TERN_EPARSE;
        raft_member *m = &out->members[k];
        m->id = get_u64(p);
        if (m->id == 0 || p[8] > RAFT_MEMBER_LEARNER || p[9] >= RAFT_ADDRESS_MAX)
            return TERN_EPARSE;
        m->role = (raft_member_role)p[8];
        size_t alen = p[9];
        if ((size_t)(end - p) < 16 + alen) return TERN_EPARSE;
        memcpy(m->address, p + 16, alen);
        if (memchr(m->address, 0, alen)) return TERN_EPARSE;
        for (size_t j = 0; j < k; j++)
            if (out->members[j].id == m->id) return TERN_EPARSE;
        if (m->role == RAFT_MEMBER_VOTER) voters++;
        p += 16 + alen;
    }
    if (p != end || voters == 0 || voters > RAFT_VOTERS_MAX) return TERN_EPARSE;
    out->count = count;
    return 0;
}

const raft_member *raft_conf_find(const raft_conf *c, uint64_t id)
{
    for (size_t k = 0; k < c->count; k++)
        if (c->members[k].id == id) return &c->members[k];
    return NULL;
}

int raft_propose_conf_change(raft *r, raft_conf_change_type type, uint64_t node_id,
                             const char *address, uint64_t *index)
{
    (void)r, (void)type, (void)node_id, (void)address, (void)index;
    return TERN_ENOTSUP;
}

int raft_compact(raft *r, const raft_snapshot_meta *meta)
{
    (void)r, (void)meta;
    return TERN_ENOTSUP;
}

const raft_conf *raft_get_conf(const raft *r)
{
    return &r->conf;
}

const raft_snapshot_meta *raft_get_snapshot(const raft *r)
{
    return &r->snapshot;
}

size_t raft_get_progress(const raft *r, raft_member_progress *out, size_t max)
{
    if (r->role != RAFT_LEADER) return 0;
    size_t n = 0;
    for (size_t k = 0; k < r->voters_count && n < max; k++) {
        const raft__progress *p = &r->progress[k];
        out[n++] = (raft_member_progress){.id = p->id,
                                          .role = RAFT_MEMBER_VOTER,
                                          .match = p->id == r->id ? r->stable : p->match,
                                          .next = p->next,
                                          .active = p->id == r->id || p->recent_active};
    }
    return n;
}
