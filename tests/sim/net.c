/* sim: a fake network: delay, drop, duplicate, reorder, and partitions that change over a run. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/*
 * Messages carry a delivery time drawn per message, so two messages on the
 * same link overtake each other whenever their delays differ (reordering).
 * Links are cut at delivery, not at send: a partition that appears while a
 * message is in flight loses it, as a real one would. Links are between slots
 * (sim_slot_of), so a fresh node in a slot inherits the slot's links.
 */

void sim_net_init(sim_net *n)
{
    memset(n, 0, sizeof(*n));
    n->msgs = calloc(SIM_NET_MSGS_MAX, sizeof(*n->msgs));
    assert(n->msgs);
    n->delay_min_ms = 1;
    n->delay_max_ms = 20;
}

void sim_net_free_msg(raft_message *m)
{
    free((void *)m->data);
    free((void *)m->conf);
    m->data = m->conf = NULL;
    for (size_t k = 0; k < m->entries_count && m->entries; k++)
        free((void *)m->entries[k].data);
    free((void *)m->entries);
    m->entries = NULL;
}

void sim_net_free(sim_net *n)
{
    for (size_t k = 0; k < n->count; k++)
        sim_net_free_msg(&n->msgs[k].m);
    free(n->msgs);
    memset(n, 0, sizeof(*n));
}

static void *copy_bytes(const void *data, size_t len)
{
    if (len == 0) return NULL;
    void *copy = malloc(len);
    assert(copy);
    memcpy(copy, data, len);
    return copy;
}

static void copy_message(raft_message *to, const raft_message *m)
{
    *to = *m;
    to->entries = NULL;
    to->data = copy_bytes(m->data, m->data_len);
    to->conf = copy_bytes(m->conf, m->conf_len);
    if (m->entries_count == 0) return;
    raft_entry *entries = calloc(m->entries_count, sizeof(*entries));
    assert(entries);
    for (size_t k = 0; k < m->entries_count; k++) {
        entries[k] = m->entries[k];
        entries[k].data = NULL;
        if (m->entries[k].len) {
            void *d = malloc(m->entries[k].len);
            assert(d);
            memcpy(d, m->entries[k].data, m->entries[k].len);
            entries[k].data = d;
        }
    }
    to->entries = entries;
}

static void enqueue(sim_net *n, sim_rng *g, uint64_t now_ms, const raft_message *m)
{
    if (n->count == SIM_NET_MSGS_MAX) {
        n->dropped++;
        return;
    }
    sim_msg *slot = &n->msgs[n->count++];
    copy_message(&slot->m, m);
    unsigned span = n->delay_max_ms - n->delay_min_ms + 1;
    slot->deliver_at_ms = now_ms + n->delay_min_ms + sim_below(g, span);
    /* Now and then a message is very late: it arrives after newer ones and old terms. */
    if (sim_chance(g, 5)) slot->deliver_at_ms += 200 + sim_below(g, 800);
    slot->seq = n->next_seq++;
}

void sim_net_send(sim_net *n, sim_rng *g, uint64_t now_ms, const raft_message *m)
{
    if (sim_chance(g, n->drop_permille)) {
        n->dropped++;
        return;
    }
    enqueue(n, g, now_ms, m);
    if (sim_chance(g, n->dup_permille)) enqueue(n, g, now_ms, m);
}

bool sim_net_next(sim_net *n, uint64_t now_ms, bool (*accept)(void *ctx, uint64_t to), void *ctx,
                  raft_message *out)
{
    for (;;) {
        size_t best = n->count;
        for (size_t k = 0; k < n->count; k++) {
            const sim_msg *s = &n->msgs[k];
            if (s->deliver_at_ms > now_ms || !accept(ctx, s->m.to)) continue;
            if (best == n->count || s->deliver_at_ms < n->msgs[best].deliver_at_ms ||
                (s->deliver_at_ms == n->msgs[best].deliver_at_ms && s->seq < n->msgs[best].seq))
                best = k;
        }
        if (best == n->count) return false;
        *out = n->msgs[best].m;
        n->msgs[best] = n->msgs[--n->count];
        if (!n->cut[sim_slot_of(out->from)][sim_slot_of(out->to)]) {
            n->delivered++;
            return true;
        }
        n->dropped++;
        sim_net_free_msg(out);
    }
}

void sim_net_heal(sim_net *n)
{
    memset(n->cut, 0, sizeof(n->cut));
}

static void cut_both(sim_net *n, size_t a, size_t b)
{
    n->cut[a][b] = n->cut[b][a] = true;
}

/* Splits the nodes into two random sides; a bridge node (if any) keeps links to both. */
static void split(sim_net *n, sim_rng *g, size_t nodes, bool bridge, char *what, size_t len)
{
    bool side[SIM_NODES_MAX];
    for (size_t a = 0; a < nodes; a++)
        side[a] = sim_below(g, 2);
    size_t bridge_slot = bridge ? (size_t)sim_below(g, nodes) : SIM_NODES_MAX;
    for (size_t a = 0; a < nodes; a++)
        for (size_t b = a + 1; b < nodes; b++)
            if (side[a] != side[b] && a != bridge_slot && b != bridge_slot) cut_both(n, a, b);
    size_t at = (size_t)snprintf(what, len, "%s (slots)", bridge ? "bridge split" : "split");
    for (size_t a = 0; a < nodes && at < len; a++)
        at += (size_t)snprintf(what + at, len - at, " %zu%s", a + 1,
                               a == bridge_slot ? "*"
                               : side[a]        ? "a"
                                                : "b");
}

void sim_net_repartition(sim_net *n, sim_rng *g, size_t nodes, char *what, size_t len)
{
    size_t a = (size_t)sim_below(g, nodes);
    size_t b = (size_t)sim_below(g, nodes);
    switch (sim_below(g, 7)) {
    case 0:
    case 1:
        sim_net_heal(n);
        snprintf(what, len, "heal");
        break;
    case 2: /* symmetric: one node alone */
        sim_net_heal(n);
        for (size_t k = 0; k < nodes; k++)
            if (k != a) cut_both(n, a, k);
        snprintf(what, len, "isolate slot %zu", a + 1);
        break;
    case 3:
        sim_net_heal(n);
        split(n, g, nodes, false, what, len);
        break;
    case 4:
        sim_net_heal(n);
        split(n, g, nodes, true, what, len);
        break;
    case 5: /* one-way link, added to whatever is cut already */
        if (a != b) n->cut[a][b] = true;
        snprintf(what, len, "one-way cut slot %zu->%zu", a + 1, b + 1);
        break;
    default: /* asymmetric: a node hears nobody but is still heard (or the reverse) */
        sim_net_heal(n);
        bool deaf = sim_below(g, 2);
        for (size_t k = 0; k < nodes; k++)
            if (k != a) {
                if (deaf)
                    n->cut[k][a] = true;
                else
                    n->cut[a][k] = true;
            }
        snprintf(what, len, "%s slot %zu", deaf ? "deaf" : "mute", a + 1);
        break;
    }
}
