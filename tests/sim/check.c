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
 *   - state machine safety: no two nodes apply different entries at one index;
 *   - monotonic commit and term within a node's life; apply in index order;
 *   - the core's own raft_check_invariants.
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
    for (uint64_t i = from; i <= to; i++) {
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

void sim_check_node(sim *s, sim_node *n)
{
    char err[256];
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
    const sim_log *log = &n->disk.current;
    if (e->index > log->count || log->entries[e->index - 1].e.term != e->term)
        sim_fail(s, "apply durability", "node %llu applies index %llu not on its disk",
                 (unsigned long long)n->id, (unsigned long long)e->index);
    uint64_t chain = log->entries[e->index - 1].chain;
    sim_committed *c = committed_at(s, e->index);
    if (c->term == 0) c->term = e->term;
    if (c->chain == 0) c->chain = chain;
    if (c->term != e->term || c->chain != chain)
        sim_fail(s, "state machine safety",
                 "node %llu applies index %llu term %llu, another node applied term %llu",
                 (unsigned long long)n->id, (unsigned long long)e->index,
                 (unsigned long long)e->term, (unsigned long long)c->term);
}

void sim_check_free(sim *s)
{
    free(s->leader_of_term);
    free(s->committed);
    free(s->entry_table);
    s->leader_of_term = NULL;
    s->committed = NULL;
    s->entry_table = NULL;
}
