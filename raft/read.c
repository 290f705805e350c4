/* raft: linearizable reads by ReadIndex (thesis 6.4) and leadership transfer (thesis 3.10). */
#include "raft_internal.h"

/*
 * ReadIndex, thesis 6.4:
 *   1. the leader must have committed an entry of its term (its no-op), so its
 *      commit index is at least that of any earlier leader; reads asked for
 *      before that wait with round 0;
 *   2. the read index is the commit index when the read's round starts;
 *   3. the leader sends a heartbeat round (context = round number) and the
 *      read is ready once a majority, itself included, acknowledged that
 *      round or a later one: no newer leader existed when the round started;
 *   4. the driver serves the read after applying up to the read index.
 * A leader that steps down fails every pending read (status TERN_EPRECOND).
 */

static bool term_committed(const raft *r)
{
    return r->commit >= r->term_start_index;
}

static void push_ready(raft *r, uint64_t request_id, uint64_t index, int status)
{
    /* reads_ready holds at most reads_max: every entry came from reads. */
    RAFT_ASSERT(r->reads_ready_count < r->config.reads_max);
    r->reads_ready[r->reads_ready_count++] = (raft_read_ready){request_id, index, status};
}

/* Starts a heartbeat round for every read still waiting for one. */
static void start_round(raft *r)
{
    bool any = false;
    for (size_t k = 0; k < r->reads_count; k++) {
        if (r->reads[k].round != 0) continue;
        if (!any) r->read_round++;
        any = true;
        r->reads[k].round = r->read_round;
        r->reads[k].index = r->commit;
    }
    if (!any) return;
    raft__progress *self = raft__voter_of(r, r->id); /* NULL once it removed itself */
    if (self) self->read_ack = r->read_round;
    raft__reads_on_ack(r); /* a single voter confirms alone */
    if (r->reads_count > 0) raft__broadcast_heartbeat(r, r->read_round);
}

int raft_read_index(raft *r, uint64_t request_id)
{
    RAFT_ASSERT(!r->update_out);
    if (r->role != RAFT_LEADER) return TERN_EPRECOND;
    if (r->reads_count + r->reads_ready_count >= r->config.reads_max) return TERN_EAGAIN;
    r->reads[r->reads_count++] = (raft__read){.request_id = request_id};
    if (term_committed(r)) start_round(r);
    return 0;
}

void raft__reads_on_commit(raft *r)
{
    if (r->role == RAFT_LEADER && term_committed(r)) start_round(r);
}

void raft__reads_on_ack(raft *r)
{
    size_t kept = 0;
    for (size_t k = 0; k < r->reads_count; k++) {
        raft__read *read = &r->reads[k];
        size_t acks = 0;
        for (size_t j = 0; read->round != 0 && j < r->progress_count; j++)
            if (r->progress[j].role == RAFT_MEMBER_VOTER && r->progress[j].read_ack >= read->round)
                acks++;
        if (read->round != 0 && acks >= raft__quorum(r))
            push_ready(r, read->request_id, read->index, 0);
        else
            r->reads[kept++] = *read;
    }
    r->reads_count = kept;
}

void raft__reads_fail_all(raft *r)
{
    for (size_t k = 0; k < r->reads_count; k++)
        push_ready(r, r->reads[k].request_id, 0, TERN_EPRECOND);
    r->reads_count = 0;
}

/*
 * Thesis 3.10: the leader stops accepting proposals, brings the target's log
 * up to date, then sends TimeoutNow; the target campaigns at once and its
 * votes bypass leader stickiness. Abandoned after an election timeout.
 */
int raft_transfer_leadership(raft *r, uint64_t target)
{
    RAFT_ASSERT(!r->update_out);
    if (r->role != RAFT_LEADER) return TERN_EPRECOND;
    raft__progress *p = raft__voter_of(r, target); /* only a voter can be elected */
    if (!p || target == r->id) return TERN_EINVAL;
    if (r->transfer_target != 0) return TERN_EAGAIN;
    r->transfer_target = target;
    r->transfer_elapsed = 0;
    if (p->match == raft__log_last_index(r)) {
        raft_message t = {.type = RAFT_MSG_TIMEOUT_NOW, .to = target, .term = r->term};
        raft__send(r, &t);
    } else {
        raft__send_append(r, p, false);
    }
    return 0;
}
