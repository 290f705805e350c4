/* The region group driver: proposals, forwarding to the leader, read barriers, admin changes. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "group_internal.h"

/*
 * DESIGN NOTES
 *
 * Proposals (group_pending) live in one list from submit to done. A proposal gets a lane and a
 * sequence number when a lane has room: lane L's slot seq % 64 must be free, so a lane's
 * outstanding sequence numbers always lie within the last 64 it issued, and a retry is always
 * inside the state machine's dedup window. Proposals without a lane wait in FIFO order.
 *
 * A proposal is "sent" to a leader (proposed locally, or forwarded) at most once per leader;
 * a leader change or a reconnection to the leader sends every outstanding proposal again.
 * Completion comes only from this node's apply thread (the entry carries our client id), or
 * from a refusal, a timeout or close.
 *
 * Read barriers: three lists. next (waiting for a round), round (the one ReadIndex request in
 * flight: raft_read_index on the leader, or a request frame to it), applying (answered with an
 * index, waiting for this node to apply it). A round whose leader changes, or that is not
 * answered within two election timeouts, is abandoned and its barriers rejoin next.
 */

#define COMPONENT "group"

/* ---------------- envelope ---------------- */

static bool envelope_valid(const uint8_t *entry, size_t len)
{
    if (len < GROUP_ENVELOPE_BYTES || len > GROUP_ENTRY_BYTES_MAX) return false;
    if (entry[0] != GROUP_ENVELOPE_VERSION) return false;
    for (int i = 1; i < 8; i++)
        if (entry[i] != 0) return false;
    return true;
}

/* ---------------- proposals ---------------- */

static void count_result(node_group *g, int status)
{
    node_counter *c = status == 0                ? g->m_prop_ok
                      : status == TERN_EUNAVAIL  ? g->m_prop_unavail
                      : status == TERN_ETIMEDOUT ? g->m_prop_timeout
                      : status == TERN_EAGAIN    ? g->m_prop_again
                                                 : g->m_prop_err;
    if (c) node_counter_add(c, 1);
}

static void pending_unlink(node_group *g, group_pending *p)
{
    if (p->next) {
        p->prev->next = p->next;
        p->next->prev = p->prev;
        p->next = p->prev = NULL;
    }
    if (p->assigned) {
        group_lane *lane = &g->lanes[p->lane];
        assert(lane->slots[p->seq % NODE_GROUP_DEDUP_WINDOW] == p);
        lane->slots[p->seq % NODE_GROUP_DEDUP_WINDOW] = NULL;
        p->assigned = false;
    } else {
        group_pending **pp = &g->unassigned_head;
        group_pending *prev = NULL;
        while (*pp && *pp != p) {
            prev = *pp;
            pp = &(*pp)->wait_next;
        }
        if (*pp) {
            *pp = p->wait_next;
            if (g->unassigned_tail == p) g->unassigned_tail = prev;
        }
    }
}

static void assign_waiting(node_group *g);
static void dispatch(node_group *g, group_pending *p);

/* Ends a proposal: unlinks it, frees its lane slot and runs done exactly once. */
static void pending_finish(node_group *g, group_pending *p, int status)
{
    pending_unlink(g, p);
    atomic_fetch_sub(&g->pending_count, 1);
    atomic_fetch_sub(&g->pending_bytes, p->entry_len);
    count_result(g, status);
    node_group_done_fn done = p->done;
    void *arg = p->arg;
    free(p->entry);
    free(p);
    done(arg, status);
    if (!g->closing) assign_waiting(g);
}

static bool assign_lane(node_group *g, group_pending *p)
{
    for (uint32_t i = 0; i < g->lane_count; i++) {
        uint32_t l = (g->lane_cursor + i) % g->lane_count;
        group_lane *lane = &g->lanes[l];
        group_pending **slot = &lane->slots[lane->next_seq % NODE_GROUP_DEDUP_WINDOW];
        if (*slot != NULL) continue; /* seq - 64 is still outstanding: the window is full */
        p->lane = l;
        p->seq = lane->next_seq++;
        p->assigned = true;
        *slot = p;
        tern_le_put_u64(p->entry + 8, g->client_base + l);
        tern_le_put_u64(p->entry + 16, p->seq);
        g->lane_cursor = l + 1;
        return true;
    }
    return false;
}

static void assign_waiting(node_group *g)
{
    while (g->unassigned_head && !g->closing) {
        group_pending *p = g->unassigned_head;
        if (!assign_lane(g, p)) return;
        g->unassigned_head = p->wait_next;
        if (g->unassigned_head == NULL) g->unassigned_tail = NULL;
        p->wait_next = NULL;
        dispatch(g, p);
    }
}

static void dispatch(node_group *g, group_pending *p)
{
    uint64_t leader = g->leader_id;
    if (g->failed || g->closing || leader == 0 || !p->assigned) return;
    if (leader == g->cfg.node_id) {
        uint64_t index;
        int rc = raft_propose(g->r, p->entry, p->entry_len, &index);
        if (rc == 0) {
            p->sent_to = leader;
            p->sent_term = g->term;
        } else if (rc != TERN_EPRECOND) {
            pending_finish(g, p, rc); /* TERN_EAGAIN, TERN_ETOOBIG, TERN_ENOMEM */
        }
        return;
    }
    node_groupwire_msg m = {.kind = NODE_FRAME_FORWARD_PROPOSE,
                            .client_id = g->client_base + p->lane,
                            .seq = p->seq,
                            .entry = p->entry,
                            .entry_len = p->entry_len};
    /* A full outbox leaves it unsent; the sweep tries again. */
    if (group__send_frame(g, leader, &m) == 0) {
        p->sent_to = leader;
        p->sent_term = g->term;
    }
}

static void pending_accept(node_group *g, group_pending *p)
{
    p->prev = g->pending.prev;
    p->next = &g->pending;
    g->pending.prev->next = p;
    g->pending.prev = p;
    if (g->unassigned_head == NULL && assign_lane(g, p)) {
        dispatch(g, p);
        return;
    }
    if (g->unassigned_tail)
        g->unassigned_tail->wait_next = p;
    else
        g->unassigned_head = p;
    g->unassigned_tail = p;
}

void group__propose_dispatch_all(node_group *g)
{
    /* Collect first: dispatch may finish (and free) a proposal. */
    size_t n = 0;
    for (group_pending *p = g->pending.next; p != &g->pending; p = p->next)
        n++;
    if (n == 0) return;
    group_pending **list = malloc(n * sizeof *list);
    if (list == NULL) return; /* the sweep sends what is unsent */
    n = 0;
    for (group_pending *p = g->pending.next; p != &g->pending; p = p->next)
        if (p->assigned) list[n++] = p;
    for (size_t i = 0; i < n && !g->closing; i++) {
        /* Still in the list? (a finish before it may have run a callback that closed) */
        group_pending *p = list[i];
        bool alive = false;
        for (group_pending *q = g->pending.next; q != &g->pending && !alive; q = q->next)
            alive = q == p;
        if (!alive) continue;
        p->sent_to = 0;
        dispatch(g, p);
    }
    free(list);
}

void group__propose_complete_results(node_group *g, group_apply_result *results, size_t count)
{
    for (size_t i = 0; i < count && !g->closing; i++) {
        uint64_t lane = results[i].client_id & 0xFF;
        if (results[i].client_id - lane != g->client_base || lane >= g->lane_count) continue;
        group_pending *p = g->lanes[lane].slots[results[i].seq % NODE_GROUP_DEDUP_WINDOW];
        /* A duplicate (a retry applied twice, answered from the dedup table) finds nothing. */
        if (p && p->seq == results[i].seq) pending_finish(g, p, results[i].status);
    }
}

static group_pending *pending_by_id(node_group *g, uint64_t client_id, uint64_t seq)
{
    uint64_t lane = client_id & 0xFF;
    if (client_id - lane != g->client_base || lane >= g->lane_count) return NULL;
    group_pending *p = g->lanes[lane].slots[seq % NODE_GROUP_DEDUP_WINDOW];
    return p && p->seq == seq ? p : NULL;
}

int node_group_submit(node_group *g, const void *cmd, size_t len, node_group_done_fn done,
                      void *arg)
{
    if (__atomic_load_n(&g->closing, __ATOMIC_ACQUIRE)) return TERN_ECLOSED;
    if (__atomic_load_n(&g->failed, __ATOMIC_ACQUIRE)) return TERN_EFAILED;
    if (len > NODE_GROUP_COMMAND_BYTES_MAX) return TERN_ETOOBIG;
    if (atomic_fetch_add(&g->pending_count, 1) >= g->cfg.pending_max) {
        atomic_fetch_sub(&g->pending_count, 1);
        return TERN_EAGAIN;
    }
    size_t entry_len = GROUP_ENVELOPE_BYTES + len;
    if (atomic_fetch_add(&g->pending_bytes, entry_len) + entry_len > g->pending_bytes_max) {
        atomic_fetch_sub(&g->pending_bytes, entry_len);
        atomic_fetch_sub(&g->pending_count, 1);
        return TERN_EAGAIN;
    }
    group_pending *p = calloc(1, sizeof *p);
    uint8_t *entry = malloc(entry_len);
    group_inbox_item *item = group__on_loop(g) ? NULL : calloc(1, sizeof *item);
    if (p == NULL || entry == NULL || (!group__on_loop(g) && item == NULL)) {
        free(p);
        free(entry);
        free(item);
        atomic_fetch_sub(&g->pending_bytes, entry_len);
        atomic_fetch_sub(&g->pending_count, 1);
        return TERN_ENOMEM;
    }
    memset(entry, 0, GROUP_ENVELOPE_BYTES);
    entry[0] = GROUP_ENVELOPE_VERSION;
    if (len) memcpy(entry + GROUP_ENVELOPE_BYTES, cmd, len);
    p->entry = entry;
    p->entry_len = entry_len;
    p->done = done;
    p->arg = arg;
    p->submitted_ms = group__now_ms();
    if (item == NULL) {
        pending_accept(g, p);
        group__kick(g);
        return 0;
    }
    item->pending = p;
    pthread_mutex_lock(&g->inbox_mu);
    if (g->inbox_tail)
        g->inbox_tail->next = item;
    else
        g->inbox_head = item;
    g->inbox_tail = item;
    pthread_mutex_unlock(&g->inbox_mu);
    uv_async_send(&g->inbox_async);
    return 0;
}

/* ---------------- the inbox from other threads ---------------- */

void group__inbox_drain(node_group *g)
{
    pthread_mutex_lock(&g->inbox_mu);
    group_inbox_item *item = g->inbox_head;
    g->inbox_head = g->inbox_tail = NULL;
    pthread_mutex_unlock(&g->inbox_mu);
    while (item) {
        group_inbox_item *next = item->next;
        if (item->pending) {
            if (g->closing || g->failed) {
                item->pending->assigned = false;
                pending_finish(g, item->pending, g->closing ? TERN_ECLOSED : TERN_EFAILED);
            } else {
                pending_accept(g, item->pending);
            }
        } else {
            int rc = g->closing ? TERN_ECLOSED : node_group_read_barrier(g, item->done, item->arg);
            if (rc != 0) item->done(item->arg, rc);
        }
        free(item);
        item = next;
    }
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool done;
    int status;
} waiter;

static void waiter_done(void *arg, int status)
{
    waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->status = status;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

static int waiter_wait(waiter *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        pthread_cond_wait(&w->cond, &w->mu);
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    return w->status;
}

int node_group_call(node_group *g, const void *cmd, size_t len)
{
    assert(!group__on_loop(g)); /* it would wait for itself */
    waiter w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cond, NULL);
    int rc = node_group_submit(g, cmd, len, waiter_done, &w);
    if (rc != 0) {
        pthread_mutex_destroy(&w.mu);
        pthread_cond_destroy(&w.cond);
        return rc;
    }
    return waiter_wait(&w);
}

int node_group_read_barrier_wait(node_group *g)
{
    assert(!group__on_loop(g));
    if (__atomic_load_n(&g->closing, __ATOMIC_ACQUIRE)) return TERN_ECLOSED;
    waiter w = {.done = false};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cond, NULL);
    group_inbox_item *item = calloc(1, sizeof *item);
    if (item == NULL) {
        pthread_mutex_destroy(&w.mu);
        pthread_cond_destroy(&w.cond);
        return TERN_ENOMEM;
    }
    item->done = waiter_done;
    item->arg = &w;
    pthread_mutex_lock(&g->inbox_mu);
    if (g->inbox_tail)
        g->inbox_tail->next = item;
    else
        g->inbox_head = item;
    g->inbox_tail = item;
    pthread_mutex_unlock(&g->inbox_mu);
    uv_async_send(&g->inbox_async);
    return waiter_wait(&w);
}

/* ---------------- read barriers ---------------- */

static bool single_voter(node_group *g)
{
    const raft_conf *c = raft_get_conf(g->r);
    size_t voters = 0;
    for (size_t i = 0; i < c->count; i++)
        if (c->members[i].role == RAFT_MEMBER_VOTER) voters++;
    return voters == 1;
}

int node_group_read_barrier(node_group *g, node_group_done_fn done, void *arg)
{
    assert(group__on_loop(g));
    if (g->closing) return TERN_ECLOSED;
    if (g->failed) return TERN_EFAILED;
    /* A 1-voter leader that applied everything it committed, including an entry of its own
     * term (so no earlier leader's commit can be ahead of it), is linearizable as is. */
    uint64_t applied = atomic_load(&g->applied);
    if (g->role == RAFT_LEADER && single_voter(g) && atomic_load(&g->applied_term) == g->term &&
        applied == raft_get_commit(g->r)) {
        done(arg, 0);
        return 0;
    }
    if (atomic_load(&g->barrier_count) >= g->cfg.barriers_max) return TERN_EAGAIN;
    group_barrier *b = calloc(1, sizeof *b);
    if (b == NULL) return TERN_ENOMEM;
    b->done = done;
    b->arg = arg;
    b->start_ms = group__now_ms();
    atomic_fetch_add(&g->barrier_count, 1);
    if (g->barrier_next_tail)
        g->barrier_next_tail->next = b;
    else
        g->barrier_next = b;
    g->barrier_next_tail = b;
    group__barrier_start_round(g);
    group__kick(g);
    return 0;
}

static void barrier_finish(node_group *g, group_barrier *b, int status)
{
    atomic_fetch_sub(&g->barrier_count, 1);
    node_group_done_fn done = b->done;
    void *arg = b->arg;
    free(b);
    done(arg, status);
}

void group__barrier_abandon_round(node_group *g)
{
    if (g->barrier_round == NULL) {
        g->round_id = 0;
        return;
    }
    group_barrier *last = g->barrier_round;
    while (last->next)
        last = last->next;
    last->next = g->barrier_next;
    if (g->barrier_next == NULL) g->barrier_next_tail = last;
    g->barrier_next = g->barrier_round;
    g->barrier_round = NULL;
    g->round_id = 0;
}

void group__barrier_start_round(node_group *g)
{
    uint64_t leader = g->leader_id;
    if (g->round_id != 0 || g->barrier_next == NULL || g->failed || g->closing || leader == 0)
        return;
    uint64_t id = ++g->next_request_id;
    if (leader == g->cfg.node_id) {
        if (raft_read_index(g->r, id) != 0) return; /* TERN_EAGAIN or stepping down: later */
    } else {
        node_groupwire_msg m = {.kind = NODE_FRAME_READ_INDEX_REQUEST, .request_id = id};
        if (group__send_frame(g, leader, &m) != 0) return;
    }
    g->round_id = id;
    g->round_leader = leader;
    g->round_start_ms = group__now_ms();
    g->barrier_round = g->barrier_next;
    g->barrier_next = g->barrier_next_tail = NULL;
}

static void round_done(node_group *g, int status, uint64_t index)
{
    if (status != 0) {
        group__barrier_abandon_round(g); /* retried with the next leader, until the timeout */
        return;
    }
    group_barrier *b = g->barrier_round;
    g->barrier_round = NULL;
    g->round_id = 0;
    while (b) {
        group_barrier *next = b->next;
        b->index = index;
        b->next = g->barrier_applying;
        g->barrier_applying = b;
        b = next;
    }
    group__barrier_on_applied(g);
    group__barrier_start_round(g);
}

void group__barrier_on_applied(node_group *g)
{
    uint64_t applied = atomic_load(&g->applied);
    bool again = true;
    while (again && !g->closing) {
        again = false;
        for (group_barrier **pp = &g->barrier_applying; *pp; pp = &(*pp)->next) {
            if ((*pp)->index > applied) continue;
            group_barrier *b = *pp;
            *pp = b->next;
            barrier_finish(g, b, 0);
            again = true; /* the callback may have changed the list */
            break;
        }
    }
}

static group_fwd_read *fwd_read_find(node_group *g, uint64_t request_id)
{
    for (size_t i = 0; i < g->cfg.forwarded_max; i++)
        if (g->fwd_reads[i].used && g->fwd_reads[i].request_id == request_id)
            return &g->fwd_reads[i];
    return NULL;
}

static void send_read_response(node_group *g, uint64_t peer, uint64_t request_id, int status,
                               uint64_t index)
{
    node_groupwire_msg m = {.kind = NODE_FRAME_READ_INDEX_RESPONSE,
                            .request_id = request_id,
                            .status = status,
                            .index = index,
                            .leader_id = g->leader_id};
    group__send_frame(g, peer, &m);
}

void group__barrier_on_reads(node_group *g, const raft_read_ready *reads, size_t count)
{
    for (size_t i = 0; i < count && !g->closing; i++) {
        const raft_read_ready *r = &reads[i];
        if (r->request_id == g->round_id && g->round_leader == g->cfg.node_id) {
            round_done(g, r->status, r->index);
            continue;
        }
        group_fwd_read *f = fwd_read_find(g, r->request_id);
        if (f == NULL) continue;
        send_read_response(g, f->peer, f->peer_request_id,
                           r->status == TERN_EPRECOND ? TERN_EUNAVAIL : r->status, r->index);
        f->used = false;
        g->fwd_reads_used--;
    }
}

static void on_read_request(node_group *g, uint64_t peer, const node_groupwire_msg *m)
{
    if (g->role != RAFT_LEADER) {
        send_read_response(g, peer, m->request_id, TERN_EUNAVAIL, 0);
        return;
    }
    group_fwd_read *slot = NULL;
    for (size_t i = 0; i < g->cfg.forwarded_max && slot == NULL; i++)
        if (!g->fwd_reads[i].used) slot = &g->fwd_reads[i];
    if (slot == NULL) {
        send_read_response(g, peer, m->request_id, TERN_EAGAIN, 0);
        return;
    }
    uint64_t id = ++g->next_request_id;
    int rc = raft_read_index(g->r, id);
    if (rc != 0) {
        send_read_response(g, peer, m->request_id, rc == TERN_EPRECOND ? TERN_EUNAVAIL : rc, 0);
        return;
    }
    *slot = (group_fwd_read){
        .used = true, .peer = peer, .peer_request_id = m->request_id, .request_id = id};
    g->fwd_reads_used++;
}

/* ---------------- admin: membership and leadership transfer ---------------- */

/* Whether the configuration in force here (the latest in the log) shows the change. */
static bool admin_visible(node_group *g, const group_admin *a)
{
    const raft_member *m = raft_conf_find(raft_get_conf(g->r), a->node_id);
    switch (a->op) {
    case ADMIN_ADD:
        return m != NULL;
    case ADMIN_PROMOTE:
        return m != NULL && m->role == RAFT_MEMBER_VOTER;
    case ADMIN_REMOVE:
        return m == NULL;
    case ADMIN_TRANSFER:
        return g->leader_id == a->node_id;
    }
    return false;
}

static void admin_finish(node_group *g, group_admin *a, int status)
{
    /* A change re-sent after a leader change can find itself already done (the new leader's
     * log holds it, and a new leader commits its log): that is success, not a bad id. */
    if (status == TERN_EINVAL && a->op != ADMIN_TRANSFER && admin_visible(g, a)) status = 0;
    node_group_done_fn done = a->done;
    void *arg = a->arg;
    memset(a, 0, sizeof *a);
    done(arg, status);
}

static int admin_local(node_group *g, group_admin_op op, uint64_t id, const char *address,
                       uint64_t *index)
{
    *index = 0;
    if (op == ADMIN_TRANSFER) return raft_transfer_leadership(g->r, id);
    raft_conf_change_type type = op == ADMIN_ADD       ? RAFT_CONF_ADD_LEARNER
                                 : op == ADMIN_PROMOTE ? RAFT_CONF_PROMOTE
                                                       : RAFT_CONF_REMOVE;
    return raft_propose_conf_change(g->r, type, id, address, index);
}

/* Sends or runs an admin change; returns an error only for a local, synchronous refusal. */
static int admin_dispatch(node_group *g, group_admin *a)
{
    uint64_t leader = g->leader_id;
    if (leader == 0 || a->sent_to == leader) return 0;
    if (leader == g->cfg.node_id) {
        int rc = admin_local(g, a->op, a->node_id, a->address, &a->index);
        if (rc == 0) a->sent_to = leader;
        return rc;
    }
    a->request_id = ++g->next_request_id;
    node_groupwire_msg m = {.kind = NODE_FRAME_ADMIN_REQUEST,
                            .request_id = a->request_id,
                            .op = a->op,
                            .node_id = a->node_id};
    snprintf(m.address, sizeof m.address, "%s", a->address);
    if (group__send_frame(g, leader, &m) == 0) a->sent_to = leader;
    return 0;
}

static int admin_start(node_group *g, group_admin_op op, uint64_t id, const char *address,
                       node_group_done_fn done, void *arg)
{
    assert(group__on_loop(g));
    if (g->closing) return TERN_ECLOSED;
    if (g->failed) return TERN_EFAILED;
    if (id == 0 || (address && strlen(address) >= NODE_GROUP_ADDRESS_MAX)) return TERN_EINVAL;
    group_admin *a = NULL;
    for (size_t i = 0; i < GROUP_ADMIN_MAX && a == NULL; i++)
        if (!g->admin[i].used) a = &g->admin[i];
    if (a == NULL) return TERN_EAGAIN;
    *a = (group_admin){.used = true,
                       .op = op,
                       .node_id = id,
                       .done = done,
                       .arg = arg,
                       .start_ms = group__now_ms()};
    snprintf(a->address, sizeof a->address, "%s", address ? address : "");
    int rc = admin_dispatch(g, a);
    if (rc != 0) {
        memset(a, 0, sizeof *a);
        return rc;
    }
    group__kick(g);
    return 0;
}

int node_group_add_node(node_group *g, uint64_t id, const char *peer_address,
                        node_group_done_fn done, void *arg)
{
    if (peer_address == NULL || strchr(peer_address, ':') == NULL) return TERN_EINVAL;
    return admin_start(g, ADMIN_ADD, id, peer_address, done, arg);
}

int node_group_promote_node(node_group *g, uint64_t id, node_group_done_fn done, void *arg)
{
    return admin_start(g, ADMIN_PROMOTE, id, NULL, done, arg);
}

int node_group_remove_node(node_group *g, uint64_t id, node_group_done_fn done, void *arg)
{
    return admin_start(g, ADMIN_REMOVE, id, NULL, done, arg);
}

int node_group_transfer_leader(node_group *g, uint64_t id, node_group_done_fn done, void *arg)
{
    return admin_start(g, ADMIN_TRANSFER, id, NULL, done, arg);
}

void group__admin_on_progress(node_group *g)
{
    uint64_t applied = atomic_load(&g->applied);
    for (size_t i = 0; i < GROUP_ADMIN_MAX && !g->closing; i++) {
        group_admin *a = &g->admin[i];
        if (!a->used) continue;
        if (a->op == ADMIN_TRANSFER) {
            if (g->leader_id == a->node_id) admin_finish(g, a, 0);
            continue;
        }
        if (a->index != 0 && applied >= a->index) {
            /* Applied here: either our CONFIG entry, or another that replaced it. */
            admin_finish(g, a, admin_visible(g, a) ? 0 : TERN_EAGAIN);
            continue;
        }
        if (a->sent_to != g->leader_id) {
            /* Our entry is committed in this node's log (e.g. a leader that removed itself
             * steps down at commit): its apply decides, as above; never propose it twice. */
            if (a->index != 0 && raft_get_commit(g->r) >= a->index) continue;
            a->sent_to = 0;
            a->index = 0;
            int rc = admin_dispatch(g, a);
            if (rc != 0) admin_finish(g, a, rc);
        }
    }
}

static void admin_sweep(node_group *g, int64_t now)
{
    for (size_t i = 0; i < GROUP_ADMIN_MAX && !g->closing; i++) {
        group_admin *a = &g->admin[i];
        if (!a->used) continue;
        int64_t limit = a->op == ADMIN_TRANSFER ? 2 * (int64_t)g->cfg.election_timeout_ms
                                                : (int64_t)g->cfg.commit_timeout_ms;
        if (now - a->start_ms >= limit) admin_finish(g, a, TERN_ETIMEDOUT);
    }
}

static void on_admin_request(node_group *g, uint64_t peer, const node_groupwire_msg *m)
{
    node_groupwire_msg r = {
        .kind = NODE_FRAME_ADMIN_RESPONSE, .request_id = m->request_id, .leader_id = g->leader_id};
    if (g->role != RAFT_LEADER) {
        r.status = TERN_EUNAVAIL;
    } else if (m->op < ADMIN_ADD || m->op > ADMIN_TRANSFER || m->node_id == 0) {
        r.status = TERN_EINVAL;
    } else {
        r.status = admin_local(g, (group_admin_op)m->op, m->node_id, m->address, &r.index);
        if (r.status == TERN_EPRECOND) r.status = TERN_EUNAVAIL;
    }
    group__send_frame(g, peer, &r);
}

static void on_admin_response(node_group *g, uint64_t peer, const node_groupwire_msg *m)
{
    for (size_t i = 0; i < GROUP_ADMIN_MAX; i++) {
        group_admin *a = &g->admin[i];
        if (!a->used || a->request_id != m->request_id || a->sent_to != peer) continue;
        if (m->status == TERN_EUNAVAIL) {
            a->sent_to = 0; /* sent again once we know the leader */
        } else if (m->status != 0) {
            admin_finish(g, a, m->status);
        } else {
            a->index = m->index;
        }
        return;
    }
}

void group__auto_promote(node_group *g)
{
    const raft_conf *c = raft_get_conf(g->r);
    for (size_t i = 0; i < c->count; i++) {
        if (c->members[i].role != RAFT_MEMBER_LEARNER) continue;
        uint64_t id = c->members[i].id, index;
        /* TERN_EAGAIN until it has caught up, or while another change is uncommitted. */
        if (raft_propose_conf_change(g->r, RAFT_CONF_PROMOTE, id, NULL, &index) == 0) {
            node_log(NODE_LOG_INFO, COMPONENT, "promoting learner %" PRIu64 " (entry %" PRIu64 ")",
                     id, index);
            return;
        }
    }
}

/* ---------------- sweeps and close ---------------- */

/* The first proposal past a deadline, with the status it gets. */
static group_pending *pending_expired(node_group *g, int64_t now, int *status)
{
    for (group_pending *p = g->pending.next; p != &g->pending; p = p->next) {
        int64_t waiting_since = TERN_MAX(p->submitted_ms, g->leader_lost_ms);
        if (g->leader_id == 0 && now - waiting_since >= (int64_t)g->cfg.leader_wait_ms) {
            *status = TERN_EUNAVAIL;
            return p;
        }
        if (now - p->submitted_ms >= (int64_t)g->cfg.commit_timeout_ms) {
            *status = TERN_ETIMEDOUT;
            return p;
        }
    }
    return NULL;
}

static void barrier_sweep(node_group *g, int64_t now)
{
    if (g->round_id != 0 && now - g->round_start_ms >= 2 * (int64_t)g->cfg.election_timeout_ms)
        group__barrier_abandon_round(g); /* the request or its answer was lost */
    group_barrier **lists[] = {&g->barrier_next, &g->barrier_applying};
    for (size_t l = 0; l < 2; l++) {
        bool again = true;
        while (again && !g->closing) {
            again = false;
            group_barrier *prev = NULL;
            for (group_barrier **pp = lists[l]; *pp; prev = *pp, pp = &(*pp)->next) {
                group_barrier *b = *pp;
                int64_t since = TERN_MAX(b->start_ms, g->leader_lost_ms);
                int status = 0;
                if (g->leader_id == 0 && now - since >= (int64_t)g->cfg.leader_wait_ms)
                    status = TERN_EUNAVAIL;
                else if (now - b->start_ms >= (int64_t)g->cfg.commit_timeout_ms)
                    status = TERN_ETIMEDOUT;
                if (status == 0) continue;
                *pp = b->next;
                if (l == 0 && g->barrier_next_tail == b) g->barrier_next_tail = prev;
                barrier_finish(g, b, status);
                again = true;
                break;
            }
        }
    }
}

void group__propose_sweep(node_group *g, int64_t now)
{
    int status;
    group_pending *p;
    while (!g->closing && (p = pending_expired(g, now, &status)) != NULL)
        pending_finish(g, p, status);
    /* Unsent proposals (full outbox, leader unknown at submit) go to the current leader. */
    if (!g->closing && g->leader_id != 0) {
        for (group_pending *q = g->pending.next; q != &g->pending && !g->closing;) {
            group_pending *next = q->next;
            if (q->assigned && q->sent_to == 0) dispatch(g, q);
            q = next; /* dispatch finishing q frees only q; next is still linked */
        }
    }
    if (!g->closing) barrier_sweep(g, now);
    if (!g->closing) admin_sweep(g, now);
    if (!g->closing) group__barrier_start_round(g);
}

void group__propose_close(node_group *g, int status)
{
    while (g->pending.next != &g->pending)
        pending_finish(g, g->pending.next, status);
    group_barrier *lists[] = {g->barrier_next, g->barrier_round, g->barrier_applying};
    g->barrier_next = g->barrier_next_tail = g->barrier_round = g->barrier_applying = NULL;
    g->round_id = 0;
    for (size_t l = 0; l < 3; l++) {
        for (group_barrier *b = lists[l], *next; b; b = next) {
            next = b->next;
            barrier_finish(g, b, status);
        }
    }
    for (size_t i = 0; i < GROUP_ADMIN_MAX; i++)
        if (g->admin[i].used) admin_finish(g, &g->admin[i], status);
    if (g->closing) group__inbox_drain(g);
}

/* ---------------- frames from peers ---------------- */

int group__send_frame(node_group *g, uint64_t peer, const node_groupwire_msg *m)
{
    if (g->transport == NULL) return TERN_ECONN;
    uint8_t *buf;
    size_t len;
    int rc = node_groupwire_encode(m, &buf, &len);
    if (rc != 0) return rc;
    rc = node_transport_send(g->transport, peer, (uint16_t)m->kind, buf, len);
    free(buf);
    return rc;
}

void group__send_node_info(node_group *g, uint64_t peer)
{
    node_groupwire_msg m = {.kind = NODE_FRAME_NODE_INFO, .node_id = g->cfg.node_id};
    snprintf(m.address, sizeof m.address, "%s", g->peer_listen);
    snprintf(m.s3_address, sizeof m.s3_address, "%s", g->s3_listen);
    group__send_frame(g, peer, &m);
}

static void on_node_info(node_group *g, uint64_t peer, const node_groupwire_msg *m)
{
    if (m->node_id != peer) return; /* only a node speaks for itself */
    size_t free_slot = NODE_GROUP_PEERS_MAX;
    for (size_t i = 0; i < NODE_GROUP_PEERS_MAX; i++) {
        if (g->info[i].id == peer) {
            free_slot = i;
            break;
        }
        if (g->info[i].id == 0 && free_slot == NODE_GROUP_PEERS_MAX) free_slot = i;
    }
    if (free_slot == NODE_GROUP_PEERS_MAX) return;
    g->info[free_slot].id = peer;
    snprintf(g->info[free_slot].s3, sizeof g->info[free_slot].s3, "%s", m->s3_address);
    snprintf(g->info[free_slot].peer, sizeof g->info[free_slot].peer, "%s", m->address);
}

static void on_forward_propose(node_group *g, uint64_t peer, const node_groupwire_msg *m)
{
    node_groupwire_msg r = {.kind = NODE_FRAME_PROPOSE_RESULT, .leader_id = g->leader_id};
    if (!envelope_valid(m->entry, m->entry_len)) {
        node_log(NODE_LOG_WARN, COMPONENT, "malformed forwarded proposal from %" PRIu64, peer);
        return;
    }
    r.client_id = tern_le_get_u64(m->entry + 8);
    r.seq = tern_le_get_u64(m->entry + 16);
    if (g->role != RAFT_LEADER || g->failed) {
        r.status = g->failed ? TERN_EFAILED : TERN_EUNAVAIL;
    } else {
        uint64_t index;
        r.status = raft_propose(g->r, m->entry, m->entry_len, &index);
        if (r.status == 0) return; /* the proposer learns the result from its own apply */
        if (r.status == TERN_EPRECOND) r.status = TERN_EUNAVAIL;
    }
    group__send_frame(g, peer, &r);
}

static void on_propose_result(node_group *g, uint64_t peer, const node_groupwire_msg *m)
{
    group_pending *p = pending_by_id(g, m->client_id, m->seq);
    if (p == NULL || p->sent_to != peer) return;
    if (m->status == TERN_EUNAVAIL || m->status == 0) {
        p->sent_to = 0; /* not the leader (any more): the sweep or a leader change resends */
        return;
    }
    pending_finish(g, p, m->status);
}

void group__on_frame(node_group *g, uint64_t peer, uint16_t type, const uint8_t *bytes, size_t len)
{
    node_groupwire_msg *m;
    if (node_groupwire_decode(bytes, len, &m) != 0 || m->kind != type) {
        if (m) node_groupwire_free(m);
        node_log(NODE_LOG_WARN, COMPONENT, "malformed frame of type %u from %" PRIu64, type, peer);
        return;
    }
    switch (m->kind) {
    case NODE_FRAME_FORWARD_PROPOSE:
        on_forward_propose(g, peer, m);
        break;
    case NODE_FRAME_PROPOSE_RESULT:
        on_propose_result(g, peer, m);
        break;
    case NODE_FRAME_READ_INDEX_REQUEST:
        on_read_request(g, peer, m);
        break;
    case NODE_FRAME_READ_INDEX_RESPONSE:
        if (m->request_id == g->round_id && peer == g->round_leader)
            round_done(g, m->status, m->index);
        break;
    case NODE_FRAME_ADMIN_REQUEST:
        on_admin_request(g, peer, m);
        break;
    case NODE_FRAME_ADMIN_RESPONSE:
        on_admin_response(g, peer, m);
        break;
    case NODE_FRAME_NODE_INFO:
        on_node_info(g, peer, m);
        break;
    }
    node_groupwire_free(m);
}
