/* raft: elections: timers, pre-vote, RequestVote, leader stickiness, TimeoutNow. */
#include "raft_internal.h"

/* Thesis 3.4: each election timeout is drawn anew from [t, 2t) to split votes rarely. */
void raft__reset_election_timer(raft *r)
{
    uint32_t t = r->config.election_timeout_ms;
    r->election_elapsed = 0;
    r->election_timeout_randomized = t + (uint32_t)(raft__random(r) % t);
}

/*
 * True while a leader is known and was heard from within the (minimum)
 * election timeout: with check-quorum on, such a node ignores (pre)votes
 * (thesis 4.2.3 "disruptive servers"), so a node that was partitioned away
 * cannot depose a healthy leader.
 */
bool raft__in_lease(const raft *r)
{
    return r->config.check_quorum && r->leader != 0 &&
           r->election_elapsed < r->config.election_timeout_ms;
}

void raft__become_follower(raft *r, uint64_t term, uint64_t leader)
{
    RAFT_ASSERT(term >= r->term);
    bool was_leader = r->role == RAFT_LEADER;
    if (term > r->term) {
        r->term = term;
        r->vote = 0;
        raft__mark_dirty(r);
    }
    r->role = RAFT_FOLLOWER;
    r->leader = leader;
    r->transfer_target = 0;
    if (was_leader) raft__reads_fail_all(r);
    raft__reset_election_timer(r);
}

static void become_candidate(raft *r, bool pre_vote)
{
    RAFT_ASSERT(r->role != RAFT_LEADER);
    if (r->role == RAFT_LEADER) raft__reads_fail_all(r);
    r->leader = 0;
    if (pre_vote) {
        r->role = RAFT_PRECANDIDATE; /* term and vote unchanged (thesis 9.6) */
    } else {
        r->role = RAFT_CANDIDATE;
        r->term++;
        r->vote = r->id;
        raft__mark_dirty(r);
    }
    for (size_t k = 0; k < r->progress_count; k++)
        r->progress[k].vote_result = r->progress[k].id == r->id ? 1 : 0;
    raft__reset_election_timer(r);
}

/* Votes of voters only: a learner's or a stranger's never counts (thesis 4.1). */
static size_t count_votes(const raft *r, int result)
{
    size_t n = 0;
    for (size_t k = 0; k < r->progress_count; k++)
        if (r->progress[k].role == RAFT_MEMBER_VOTER && r->progress[k].vote_result == result) n++;
    return n;
}

/* Only a voter of its latest configuration campaigns, and not while installing a snapshot
 * (its log is being replaced). */
static bool may_campaign(const raft *r)
{
    return raft__is_voter(r, r->id) && !r->install_pending;
}

/* Figure 3.1 "Rules for Servers: Followers/Candidates": on timeout, start an election. */
void raft__campaign(raft *r, bool pre_vote, bool transfer)
{
    RAFT_ASSERT(may_campaign(r));
    become_candidate(r, pre_vote);
    if (count_votes(r, 1) >= raft__quorum(r)) {
        /* A single-node cluster wins its (pre-)election alone. */
        if (pre_vote) {
            raft__campaign(r, false, transfer);
            return;
        }
        raft__become_leader(r);
        return;
    }
    raft_message m = {
        .type = pre_vote ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE,
        .term = pre_vote ? r->term + 1 : r->term,
        .last_index = raft__log_last_index(r),
        .last_term = raft__log_last_term(r),
        .transfer = transfer,
    };
    for (size_t k = 0; k < r->progress_count; k++) {
        if (r->progress[k].id == r->id || r->progress[k].role != RAFT_MEMBER_VOTER) continue;
        m.to = r->progress[k].id;
        raft__send(r, &m);
    }
}

void raft__tick_election(raft *r, uint32_t elapsed_ms)
{
    /* Saturates: a node that may not campaign keeps counting (so it leaves the lease). */
    uint32_t limit = r->election_timeout_randomized;
    r->election_elapsed = r->election_elapsed >= limit - TERN_MIN(limit, elapsed_ms)
                              ? limit
                              : r->election_elapsed + elapsed_ms;
    if (r->election_elapsed >= limit && may_campaign(r))
        raft__campaign(r, r->config.pre_vote, false);
}

/*
 * Figure 3.1 "RequestVote RPC, receiver implementation" (and thesis 9.6 for
 * pre-votes): grant if we have not voted for another in this term and the
 * candidate's log is at least as up-to-date as ours (section 3.6.1). A
 * pre-vote is granted for a higher term without recording a vote. The caller
 * has applied the term rules and leader stickiness.
 */
void raft__recv_vote(raft *r, const raft_message *m)
{
    bool pre_vote = m->type == RAFT_MSG_PREVOTE;
    uint64_t last_term = raft__log_last_term(r);
    bool up_to_date = m->last_term > last_term ||
                      (m->last_term == last_term && m->last_index >= raft__log_last_index(r));
    bool can_vote =
        r->vote == m->from || (r->vote == 0 && r->leader == 0) || (pre_vote && m->term > r->term);
    raft_message resp = {
        .type = pre_vote ? RAFT_MSG_PREVOTE_RESPONSE : RAFT_MSG_VOTE_RESPONSE,
        .to = m->from,
        .granted = can_vote && up_to_date,
    };
    /* A granted pre-vote answers in the proposed term so the precandidate counts it. */
    resp.term = resp.granted && pre_vote ? m->term : r->term;
    if (resp.granted && !pre_vote) {
        r->vote = m->from;
        raft__mark_dirty(r); /* the response waits until the vote is durable */
        raft__reset_election_timer(r);
    }
    raft__send(r, &resp);
}

/* Figure 3.1 "Rules for Servers: Candidates": a majority of votes makes a leader. */
void raft__recv_vote_response(raft *r, const raft_message *m)
{
    bool pre_vote = m->type == RAFT_MSG_PREVOTE_RESPONSE;
    if (pre_vote ? r->role != RAFT_PRECANDIDATE : r->role != RAFT_CANDIDATE) return;
    if (pre_vote && m->granted && m->term != r->term + 1) return; /* a stale round */
    raft__progress *p = raft__voter_of(r, m->from);
    if (!p) return;
    if (p->vote_result == 0) p->vote_result = m->granted ? 1 : 2;
    if (count_votes(r, 1) >= raft__quorum(r)) {
        if (pre_vote)
            raft__campaign(r, false, false);
        else
            raft__become_leader(r);
    } else if (count_votes(r, 2) >= raft__quorum(r)) {
        raft__become_follower(r, r->term, 0);
    }
}

/* Thesis 3.10: TimeoutNow makes the transfer target start an election at once. */
void raft__recv_timeout_now(raft *r, const raft_message *m)
{
    if (r->role == RAFT_LEADER || !may_campaign(r)) return;
    raft__campaign(r, false, true);
}
