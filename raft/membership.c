/* raft: membership configurations: the codec, the current configuration, one-server changes. */
#include <string.h>

#include "raft_internal.h"

/*
 * DESIGN NOTE (thesis 4.1, one server at a time)
 *
 * The configuration in force is always the latest one in the log, committed
 * or not: the last CONFIG entry above the snapshot, else the snapshot's
 * configuration, else the bootstrap one (raft_config.voters; empty for a
 * joining node). It is not kept as a history: when a truncation removes the
 * CONFIG entry in force, raft__conf_recompute scans the log down from the
 * truncation point for the previous one. Such truncations are rare (an
 * uncommitted change lost with its leader) and the scan stops at the first
 * CONFIG entry or at the snapshot, so the log since the last compaction bounds
 * its cost.
 *
 * r->progress mirrors r->conf member by member (same order), voters and
 * learners alike: learners are replicated to but never counted in a quorum,
 * for votes, commit, ReadIndex or check-quorum, and never campaign. Every one
 * of the RAFT_MEMBERS_MAX slots owns an in-flight ring allocated at raft_new,
 * so a change never allocates: the rings move with the members.
 *
 * A leader changes the configuration only when everything before its term is
 * committed (its no-op is) and no change is uncommitted, so at most one CONFIG
 * entry of its term lies above its commit index, and two configurations in
 * force at once differ by one server, so their majorities overlap. A leader
 * that removed itself leads (without counting itself) until that entry
 * commits, then steps down (thesis 4.2.2) and hands the election a head start
 * with TimeoutNow to its most caught-up voter.
 *
 * Encoding: u8 version (1) | u8 count | u16 reserved 0 | u32 reserved 0, then
 * per member: u64 id | u8 role | u8 address length | u16 0 | u32 0 | address
 * bytes (no NUL). Little-endian.
 */
#define CONF_VERSION 1

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
        tern_le_put_u64(p, m->id);
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
        m->id = tern_le_get_u64(p);
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

bool raft__conf_valid(const raft_conf *c)
{
    if (c->count > RAFT_MEMBERS_MAX) return false;
    size_t voters = 0;
    for (size_t k = 0; k < c->count; k++) {
        const raft_member *m = &c->members[k];
        if (m->id == 0 || (m->role != RAFT_MEMBER_VOTER && m->role != RAFT_MEMBER_LEARNER) ||
            !memchr(m->address, 0, sizeof(m->address)))
            return false;
        for (size_t j = 0; j < k; j++)
            if (c->members[j].id == m->id) return false;
        if (m->role == RAFT_MEMBER_VOTER) voters++;
    }
    return voters >= 1 && voters <= RAFT_VOTERS_MAX;
}

bool raft__is_voter(const raft *r, uint64_t id)
{
    const raft_member *m = raft_conf_find(&r->conf, id);
    return m && m->role == RAFT_MEMBER_VOTER;
}

static void progress_fresh(raft *r, raft__progress *p, const raft_member *m)
{
    raft__inflight *ring = p->inflight;
    memset(p, 0, sizeof(*p));
    p->inflight = ring;
    p->id = m->id;
    p->role = m->role;
    p->next = raft__log_last_index(r) + 1;
    p->state = RAFT__PROBE;
    p->recent_active = true; /* a newcomer is not held against check-quorum at once */
    if (m->id == r->id) p->match = r->stable;
}

/* Rebuilds r->progress in the order of conf: members that stay keep their progress (and
 * ring), new ones start fresh on a ring left by a departed member or an unused slot. */
static void progress_rebuild(raft *r, const raft_conf *conf)
{
    raft__progress old[RAFT_MEMBERS_MAX];
    bool taken[RAFT_MEMBERS_MAX] = {false}, kept[RAFT_MEMBERS_MAX] = {false};
    memcpy(old, r->progress, sizeof(old));
    for (size_t k = 0; k < conf->count; k++) {
        for (size_t j = 0; j < r->progress_count; j++) {
            if (taken[j] || old[j].id != conf->members[k].id) continue;
            r->progress[k] = old[j];
            r->progress[k].role = conf->members[k].role;
            taken[j] = kept[k] = true;
            break;
        }
    }
    size_t spare = 0;
    for (size_t k = 0; k < RAFT_MEMBERS_MAX; k++) {
        if (k < conf->count && kept[k]) continue;
        while (taken[spare])
            spare++;
        RAFT_ASSERT(spare < RAFT_MEMBERS_MAX);
        taken[spare] = true;
        r->progress[k].inflight = old[spare].inflight;
        if (k < conf->count) {
            progress_fresh(r, &r->progress[k], &conf->members[k]);
        } else {
            raft__inflight *ring = r->progress[k].inflight;
            memset(&r->progress[k], 0, sizeof(r->progress[k]));
            r->progress[k].inflight = ring;
        }
    }
    r->progress_count = conf->count;
}

void raft__conf_set(raft *r, const raft_conf *conf, uint64_t index)
{
    progress_rebuild(r, conf);
    r->conf = *conf;
    r->conf_index = index;
    r->conf_changed = true;
    r->voters_count = 0;
    for (size_t k = 0; k < conf->count; k++)
        if (conf->members[k].role == RAFT_MEMBER_VOTER) r->voters_count++;
    if (r->transfer_target != 0 && !raft__is_voter(r, r->transfer_target)) r->transfer_target = 0;
    /* A campaign is for voters only (a truncation may have reverted our promotion). */
    if ((r->role == RAFT_PRECANDIDATE || r->role == RAFT_CANDIDATE) && !raft__is_voter(r, r->id))
        raft__become_follower(r, r->term, 0);
}

void raft__conf_recompute(raft *r, uint64_t before_index)
{
    for (uint64_t i = before_index - 1; i > r->snapshot.index; i--) {
        raft_entry e;
        raft__log_get(r, i, &e);
        if (e.type != RAFT_ENTRY_CONFIG) continue;
        raft_conf conf;
        int rc = raft_conf_decode(e.data, e.len, &conf);
        RAFT_ASSERT(rc == 0); /* checked when it entered the log (or at raft_new) */
        raft__conf_set(r, &conf, i);
        return;
    }
    if (r->snapshot.index > 0)
        raft__conf_set(r, &r->snapshot.conf, r->snapshot.index);
    else
        raft__conf_set(r, &r->bootstrap, 0);
}

bool raft__maybe_step_down_removed(raft *r)
{
    if (r->role != RAFT_LEADER || raft__is_voter(r, r->id) || r->commit < r->conf_index)
        return false;
    /* Let the others learn the commit at once, and give the most caught-up voter a head start
     * (thesis 4.2.2: the removed leader steps down once the change is committed). */
    raft__broadcast_heartbeat(r, 0);
    raft__progress *best = NULL;
    for (size_t k = 0; k < r->progress_count; k++) {
        raft__progress *p = &r->progress[k];
        if (p->role == RAFT_MEMBER_VOTER && (!best || p->match > best->match)) best = p;
    }
    if (best && best->match == raft__log_last_index(r)) {
        raft_message t = {.type = RAFT_MSG_TIMEOUT_NOW, .to = best->id, .term = r->term};
        raft__send(r, &t);
    }
    raft__become_follower(r, r->term, 0);
    return true;
}

/* Builds the configuration after one change, or says why not (the TERN_EINVAL cases). */
static int conf_after(const raft *r, raft_conf_change_type type, uint64_t id, const char *address,
                      raft_conf *out)
{
    *out = r->conf;
    raft_member *m = NULL;
    for (size_t k = 0; k < out->count; k++)
        if (out->members[k].id == id) m = &out->members[k];
    switch (type) {
    case RAFT_CONF_ADD_LEARNER: {
        size_t len = address ? strlen(address) : 0;
        if (id == 0 || m || out->count == RAFT_MEMBERS_MAX || len >= RAFT_ADDRESS_MAX)
            return TERN_EINVAL;
        raft_member *added = &out->members[out->count++];
        memset(added, 0, sizeof(*added));
        added->id = id;
        added->role = RAFT_MEMBER_LEARNER;
        if (len) memcpy(added->address, address, len);
        return 0;
    }
    case RAFT_CONF_PROMOTE:
        if (!m || m->role != RAFT_MEMBER_LEARNER || r->voters_count == RAFT_VOTERS_MAX)
            return TERN_EINVAL;
        m->role = RAFT_MEMBER_VOTER;
        return 0;
    case RAFT_CONF_REMOVE:
        if (!m || (m->role == RAFT_MEMBER_VOTER && r->voters_count == 1)) return TERN_EINVAL;
        /* The others keep their order (status output reads better for it). */
        for (size_t k = (size_t)(m - out->members); k + 1 < out->count; k++)
            out->members[k] = out->members[k + 1];
        out->count--;
        return 0;
    }
    return TERN_EINVAL;
}

/* Thesis 4.1 with Ongaro's 2015 fix: a leader changes the configuration one server at a time,
 * only once its term's no-op and every earlier change are committed. */
int raft_propose_conf_change(raft *r, raft_conf_change_type type, uint64_t node_id,
                             const char *address, uint64_t *index)
{
    RAFT_ASSERT(!r->update_out);
    if (r->role != RAFT_LEADER) return TERN_EPRECOND;
    raft_conf next;
    int rc = conf_after(r, type, node_id, address, &next);
    if (rc) return rc;
    if (r->transfer_target != 0 || r->commit < r->term_start_index || r->conf_index > r->commit)
        return TERN_EAGAIN;
    if (type == RAFT_CONF_PROMOTE) {
        /* A voter that lags would weaken the quorum until it caught up. */
        uint64_t last = raft__log_last_index(r);
        uint64_t need =
            last > r->config.learner_catchup_entries ? last - r->config.learner_catchup_entries : 0;
        if (raft__progress_of(r, node_id)->match < need) return TERN_EAGAIN;
    }
    uint8_t buf[RAFT_CONF_ENCODED_MAX];
    raft_entry e = {.index = raft__log_last_index(r) + 1,
                    .term = r->term,
                    .type = RAFT_ENTRY_CONFIG,
                    .data = buf,
                    .len = raft_conf_encode(&next, buf)};
    rc = raft__log_append(r, &e); /* takes effect at once (raft__conf_set) */
    if (rc) return rc;
    r->uncommitted_bytes += e.len;
    raft__progress *self = raft__progress_of(r, r->id);
    if (self) self->next = e.index + 1;
    if (index) *index = e.index;
    raft__broadcast_append(r);
    return 0;
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
    for (size_t k = 0; k < r->progress_count && n < max; k++) {
        const raft__progress *p = &r->progress[k];
        bool self = p->id == r->id;
        out[n++] = (raft_member_progress){.id = p->id,
                                          .role = p->role,
                                          .match = self ? r->stable : p->match,
                                          .next = p->next,
                                          .active = self || p->recent_active,
                                          .snapshot = p->state == RAFT__SNAPSHOT};
    }
    return n;
}
