/* sim: the cluster-wide safety properties, checked after every call into a core. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"
/* White-box: the leader's whole log, including entries not yet handed to the disk. */
#include "raft_internal.h"

/*
 * Properties (Raft thesis Figure 3.2), and where each is checked:
 *   - election safety: at most one leader per term (leader_of_term, at every check);
 *   - log matching: two entries with the same index and term have the same
 *     history before them. Every entry written to any disk gets a chain hash
 *     of itself and all before it; the first (index, term) seen fixes the hash
 *     and any other write of that (index, term) must match it (entry_table);
 *   - leader completeness: an entry committed by the leader of term U is in the
 *     log of every leader of a term above U, checked when a leader is first
 *     seen (against everything committed so far) and when a leader is seen
 *     committing (against the leaders of higher terms alive then);
 *   - state machine safety: no two nodes apply different entries at one index,
 *     and the key-value state after an index is the same on every node, whether
 *     it got there by applying entries, by installing a snapshot or by
 *     restarting from its own (sim_check_state);
 *   - monotonic commit and term within a node's life; apply in index order;
 *   - configurations: a node whose configuration in force comes from a
 *     committed index (its CONFIG entry or its snapshot) holds exactly the
 *     configuration committed there (sim_conf_as_of), and a leader's log holds
 *     at most one CONFIG entry above everything known committed (one change at
 *     a time, thesis 4.1);
 *   - the core's own raft_check_invariants.
 *
 * Compaction: entries at or below a node's snapshot index are gone from its
 * log, so leader completeness checks only the entries a leader still holds,
 * plus its snapshot's index and term; what a snapshot covers is checked as
 * state (the snapshot's chain hash and key-value state against the committed
 * ones) when it is taken, installed or restarted from.
 */

static void *grow_zeroed(void *array, size_t *capacity, size_t need, size_t item)
{
    if (need <= *capacity) return array;
    size_t next = *capacity ? *capacity * 2 : 256;
    while (next < need)
        next *= 2;
    char *grown = realloc(array, next * item);
    assert(grown);
    memset(grown + *capacity * item, 0, (next - *capacity) * item);
    *capacity = next;
    return grown;
}

static sim_committed *committed_at(sim *s, uint64_t index)
{
    s->committed =
        grow_zeroed(s->committed, &s->committed_capacity, (size_t)index + 1, sizeof(sim_committed));
    if (index > s->committed_max) s->committed_max = index;
    return &s->committed[index];
}

static void check_has_entry(sim *s, sim_node *leader, uint64_t index, const sim_committed *c)
{
    raft *r = leader->r;
    if (index < raft_get_snapshot(r)->index) return; /* compacted: checked as state */
    if (index > raft_get_last_index(r) || raft__log_term(r, index) != c->term)
        sim_fail(s, "leader completeness",
                 "node %llu leads term %llu without index %llu (term %llu, committed in term %llu)",
                 (unsigned long long)leader->id, (unsigned long long)raft_get_term(r),
                 (unsigned long long)index, (unsigned long long)c->term,
                 (unsigned long long)c->commit_term);
}

static void check_election(sim *s, sim_node *n)
{
    uint64_t term = raft_get_term(n->r);
    s->leader_of_term =
        grow_zeroed(s->leader_of_term, &s->terms_capacity, (size_t)term + 1, sizeof(uint64_t));
    if (s->leader_of_term[term] == n->id) return;
    if (s->leader_of_term[term] != 0)
        sim_fail(s, "election safety", "nodes %llu and %llu both led term %llu",
                 (unsigned long long)s->leader_of_term[term], (unsigned long long)n->id,
                 (unsigned long long)term);
    s->leader_of_term[term] = n->id;
    if (term > s->max_term) s->max_term = term;
    sim_trace(s, "node %llu leads term %llu", (unsigned long long)n->id, (unsigned long long)term);
    for (uint64_t i = 1; i <= s->committed_max; i++) {
        const sim_committed *c = &s->committed[i];
        if (c->commit_term != 0 && c->commit_term < term) check_has_entry(s, n, i, c);
    }
}

/* The leader n advanced its commit: record who committed what, check later leaders. */
static void record_commit(sim *s, sim_node *n, uint64_t from, uint64_t to)
{
    uint64_t term = raft_get_term(n->r);
    for (uint64_t i = TERN_MAX(from, raft_get_snapshot(n->r)->index); i <= to; i++) {
        if (i == 0) continue;
        uint64_t entry_term = raft__log_term(n->r, i);
        sim_committed *c = committed_at(s, i);
        if (c->term == 0) c->term = entry_term;
        if (c->term != entry_term)
            sim_fail(s, "state machine safety",
                     "leader %llu commits index %llu with term %llu, committed before with %llu",
                     (unsigned long long)n->id, (unsigned long long)i,
                     (unsigned long long)entry_term, (unsigned long long)c->term);
        if (c->commit_term != 0 && c->commit_term <= term) continue;
        c->commit_term = term;
        for (size_t k = 0; k < s->n; k++) {
            sim_node *other = &s->nodes[k];
            if (other->up && raft_get_role(other->r) == RAFT_LEADER &&
                raft_get_term(other->r) > term)
                check_has_entry(s, other, i, c);
        }
    }
}

static uint64_t conf_hash(const raft_conf *c)
{
    uint8_t buf[RAFT_CONF_ENCODED_MAX];
    size_t len = raft_conf_encode(c, buf);
    uint64_t h = 0x1234;
    for (size_t k = 0; k < len; k++)
        h = (h ^ buf[k]) * 0x100000001B3ull;
    return h;
}

const raft_conf *sim_conf_as_of(const sim *s, uint64_t index)
{
    size_t lo = 0, hi = s->confs_count; /* the last record with index <= index */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->confs[mid].index <= index)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 ? &s->confs[lo - 1].conf : &s->bootstrap_conf;
}

static void check_conf(sim *s, sim_node *n)
{
    raft *r = n->r;
    uint64_t at = r->conf_index; /* white-box: where the configuration in force comes from */
    /* Only a committed one, applied somewhere so its configuration is recorded (an entry with
     * the committed index and term is the committed entry: log matching). */
    if (at == 0 || at > s->applied_max || s->committed[at].term == 0) return;
    if (at > raft_get_snapshot(r)->index && raft__log_term(r, at) != s->committed[at].term) return;
    const raft_conf *want = sim_conf_as_of(s, at);
    if (conf_hash(want) != conf_hash(raft_get_conf(r)))
        sim_fail(s, "configuration",
                 "node %llu uses a configuration of %zu members from "
                 "committed index %llu, where %zu members were committed",
                 (unsigned long long)n->id, raft_get_conf(r)->count, (unsigned long long)at,
                 want->count);
}

/* One change at a time: above what is known committed, a leader holds one CONFIG entry. */
static void check_one_change(sim *s, sim_node *n)
{
    raft *r = n->r;
    uint64_t from = TERN_MAX(s->committed_max, raft_get_snapshot(r)->index) + 1;
    size_t configs = 0;
    for (uint64_t i = from; i <= raft_get_last_index(r); i++) {
        raft_entry e;
        raft__log_get(r, i, &e);
        if (e.type == RAFT_ENTRY_CONFIG) configs++;
    }
    if (configs > 1)
        sim_fail(s, "one change at a time",
                 "leader %llu holds %zu uncommitted CONFIG entries above index %llu",
                 (unsigned long long)n->id, configs, (unsigned long long)(from - 1));
}

void sim_check_node(sim *s, sim_node *n)
{
    char err[256];
    check_conf(s, n);
    if (raft_get_role(n->r) == RAFT_LEADER) check_one_change(s, n);
    if (raft_check_invariants(n->r, err, sizeof(err)) != 0)
        sim_fail(s, "raft_check_invariants", "%s", err);
    uint64_t commit = raft_get_commit(n->r), term = raft_get_term(n->r);
    if (commit < n->commit_seen)
        sim_fail(s, "monotonic commit", "node %llu commit went from %llu to %llu",
                 (unsigned long long)n->id, (unsigned long long)n->commit_seen,
                 (unsigned long long)commit);
    if (term < n->term_seen)
        sim_fail(s, "monotonic term", "node %llu term went from %llu to %llu",
                 (unsigned long long)n->id, (unsigned long long)n->term_seen,
                 (unsigned long long)term);
    n->term_seen = term;
    if (raft_get_role(n->r) == RAFT_LEADER) {
        check_election(s, n);
        if (commit > n->commit_seen) record_commit(s, n, n->commit_seen + 1, commit);
    }
    n->commit_seen = commit;
}

static size_t entry_slot(const sim *s, uint64_t index, uint64_t term)
{
    uint64_t h = (index * 0x9E3779B97F4A7C15ull) ^ (term * 0xC2B2AE3D27D4EB4Full);
    return (size_t)((h ^ (h >> 32)) % s->entry_slots);
}

static void entry_table_grow(sim *s)
{
    sim_entry_key *old = s->entry_table;
    size_t old_slots = s->entry_slots;
    s->entry_slots = old_slots ? old_slots * 2 : 4096;
    s->entry_table = calloc(s->entry_slots, sizeof(sim_entry_key));
    assert(s->entry_table);
    for (size_t k = 0; k < old_slots; k++) {
        if (old[k].index == 0) continue;
        size_t at = entry_slot(s, old[k].index, old[k].term);
        while (s->entry_table[at].index != 0)
            at = (at + 1) % s->entry_slots;
        s->entry_table[at] = old[k];
    }
    free(old);
}

void sim_check_written(sim *s, const sim_entry *e)
{
    if (2 * (s->entry_count + 1) > s->entry_slots) entry_table_grow(s);
    size_t at = entry_slot(s, e->e.index, e->e.term);
    while (s->entry_table[at].index != 0) {
        sim_entry_key *k = &s->entry_table[at];
        if (k->index == e->e.index && k->term == e->e.term) {
            if (k->chain != e->chain)
                sim_fail(s, "log matching",
                         "two logs hold index %llu term %llu with different histories",
                         (unsigned long long)e->e.index, (unsigned long long)e->e.term);
            return;
        }
        at = (at + 1) % s->entry_slots;
    }
    s->entry_table[at] = (sim_entry_key){e->e.index, e->e.term, e->chain};
    s->entry_count++;
}

void sim_check_applied(sim *s, sim_node *n, const raft_entry *e)
{
    if (e->index != n->applied + 1)
        sim_fail(s, "apply order", "node %llu applies %llu after %llu", (unsigned long long)n->id,
                 (unsigned long long)e->index, (unsigned long long)n->applied);
    const sim_entry *on_disk = sim_log_at(&n->disk.current, e->index);
    if (!on_disk || on_disk->e.term != e->term)
        sim_fail(s, "apply durability", "node %llu applies index %llu not on its disk",
                 (unsigned long long)n->id, (unsigned long long)e->index);
    uint64_t chain = on_disk->chain;
    sim_committed *c = committed_at(s, e->index);
    if (c->term == 0) c->term = e->term;
    if (c->chain == 0) c->chain = chain;
    if (c->term != e->term || c->chain != chain)
        sim_fail(s, "state machine safety",
                 "node %llu applies index %llu term %llu, another node applied term %llu",
                 (unsigned long long)n->id, (unsigned long long)e->index,
                 (unsigned long long)e->term, (unsigned long long)c->term);
    if (e->type != RAFT_ENTRY_CONFIG) return;
    /* Record each committed configuration once, in index order (see sim_conf_record). */
    if (s->confs_count > 0 && s->confs[s->confs_count - 1].index >= e->index) return;
    if (s->confs_count == s->confs_capacity) {
        s->confs_capacity = s->confs_capacity ? 2 * s->confs_capacity : 16;
        s->confs = realloc(s->confs, s->confs_capacity * sizeof(*s->confs));
        assert(s->confs);
    }
    sim_conf_record *rec = &s->confs[s->confs_count++];
    rec->index = e->index;
    if (raft_conf_decode(e->data, e->len, &rec->conf) != 0)
        sim_fail(s, "configuration", "committed CONFIG entry %llu does not decode",
                 (unsigned long long)e->index);
    rec->hash = conf_hash(&rec->conf);
}

static uint64_t kv_hash(uint64_t chain, const uint64_t *kv)
{
    uint64_t h = chain * 0x9E3779B97F4A7C15ull + 1;
    for (size_t k = 0; k < SIM_KEYS; k++)
        h = (h ^ kv[k]) * 0xBF58476D1CE4E5B9ull + k;
    return h | 1; /* never 0, which means unknown */
}

void sim_check_state(sim *s, sim_node *n, uint64_t index, uint64_t chain, const uint64_t *kv,
                     const char *what)
{
    if (index == 0) return;
    sim_committed *c = committed_at(s, index);
    if (c->chain == 0) c->chain = chain;
    if (c->chain != chain)
        sim_fail(s, "state machine safety", "node %llu %s at index %llu with another history",
                 (unsigned long long)n->id, what, (unsigned long long)index);
    uint64_t h = kv_hash(chain, kv);
    if (index > s->applied_max) s->applied_max = index;
    if (c->kv_hash == 0) c->kv_hash = h;
    if (c->kv_hash != h)
        sim_fail(s, "state machine safety",
                 "node %llu %s at index %llu with a key-value state no other node had there",
                 (unsigned long long)n->id, what, (unsigned long long)index);
}

void sim_check_free(sim *s)
{
    free(s->leader_of_term);
    free(s->committed);
    free(s->entry_table);
    free(s->confs);
    s->leader_of_term = NULL;
    s->committed = NULL;
    s->entry_table = NULL;
    s->confs = NULL;
}
