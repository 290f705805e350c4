/* The region group driver's persist thread (log, hard state) and apply thread (state machine). */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "group_internal.h"

/*
 * DESIGN NOTES
 *
 * Persist thread: takes jobs in order. A raft batch is: write a received snapshot chunk (the
 * last one installs the snapshot, see group_snapshot.c), truncate a conflicting tail, append
 * the entries, fdatasync, then save term and vote if they changed. Term and vote are thus
 * durable before raft_persisted releases any message that depends on them, and entries
 * before any acknowledgement. The commit index alone is not saved (it costs two fsyncs and
 * is relearned from the leader, or from a 1-node group's next commit; applied entries are
 * covered by the state machine's own applied index). Maintenance jobs save a new snapshot's
 * meta, compact the log prefix and delete older snapshot directories.
 *
 * Apply thread: applies [applied+1, apply_target] read back from the log (the entries are
 * durable there before the core hands them out as committed), at most GROUP_APPLY_BATCH_MAX
 * or GROUP_APPLY_BYTES_MAX per step; between steps it takes a snapshot when asked, and it
 * installs a received snapshot when the persist thread asks (the persist thread waits).
 * TERN_EFAILED from the state machine stops applying for good (sticky, like the store).
 */

#define COMPONENT "group"

static double seconds_since(uint64_t start_ns)
{
    return (double)(tern_mono_ns() - start_ns) / 1e9;
}

/* ---------------- persist ---------------- */

void group__persist_job_free(group_persist_job *job)
{
    if (job == NULL) return;
    free(job->entries);
    free(job->data);
    free(job->chunk_data);
    free(job);
}

static int persist_entries(node_group *g, group_persist_job *job)
{
    node_raftlog *log = g->log;
    uint64_t first = job->entries[0].index;
    int rc = 0;
    uint64_t log_first = node_raftlog_first_index(log), log_last = node_raftlog_last_index(log);
    if (g->log_reset_after != 0 || (log_last > 0 && first > log_last + 1)) {
        /* After an installed snapshot the log starts again right after it. */
        if (log_last > 0) rc = node_raftlog_truncate_suffix(log, log_first);
        g->log_reset_after = 0;
    } else if (log_last > 0 && first <= log_last) {
        rc = node_raftlog_truncate_suffix(log, first); /* a conflicting tail */
    }
    if (rc != 0) return rc;
    node_raftlog_entry *es = malloc(job->entries_count * sizeof *es);
    if (es == NULL) return TERN_ENOMEM;
    for (size_t i = 0; i < job->entries_count; i++) {
        const raft_entry *e = &job->entries[i];
        es[i] = (node_raftlog_entry){.index = e->index,
                                     .term = e->term,
                                     .type = (uint32_t)e->type,
                                     .data = e->data,
                                     .len = e->len};
    }
    rc = node_raftlog_append(log, es, job->entries_count);
    free(es);
    return rc;
}

static void persist_run(node_group *g, group_persist_job *job)
{
    uint64_t start = tern_mono_ns();
    int rc = 0;
    if (job->has_chunk) rc = group__recv_chunk(g, job);
    if (rc == 0 && job->entries_count > 0) {
        rc = persist_entries(g, job);
        if (rc == 0 && g->cfg.sync) rc = node_raftlog_sync(g->log, NULL);
    }
    if (rc == 0 && job->save_hard_state &&
        (job->hard_state.term != g->saved_hs.term || job->hard_state.vote != g->saved_hs.vote)) {
        node_raftlog_hard_state hs = {.term = job->hard_state.term,
                                      .vote = job->hard_state.vote,
                                      .commit = job->hard_state.commit};
        rc = node_raftlog_hard_state_save(g->log, &hs);
        if (rc == 0) g->saved_hs = hs;
    }
    if (rc == 0 && job->compact) {
        if (job->compact_meta.index > 0) {
            rc = group__meta_save(g, &job->compact_meta);
            if (rc == 0 && job->compact_prefix_index > 0)
                rc = node_raftlog_compact_prefix(g->log, job->compact_prefix_index);
            if (rc == 0) group__snapshots_prune(g, job->compact_meta.index);
        } else {
            /* The core refused the snapshot: drop its directory, keep the current one. */
            char dir[512];
            group__snapshot_dir(g, job->compact_prefix_index, dir, sizeof dir);
            if (job->compact_prefix_index != g->snapshot_index) group__rmtree(dir);
        }
    }
    if (rc != 0)
        node_log(NODE_LOG_ERROR, COMPONENT, "persist failed: %s (%s)", tern_strerror(rc),
                 node_raftlog_errmsg(g->log));
    job->rc = rc;
    job->sync_seconds = seconds_since(start);
}

static void *persist_main(void *arg)
{
    node_group *g = arg;
    pthread_mutex_lock(&g->persist_mu);
    for (;;) {
        while (g->persist_head == NULL && !g->persist_stop)
            pthread_cond_wait(&g->persist_cond, &g->persist_mu);
        if (g->persist_stop) break;
        group_persist_job *job = g->persist_head;
        g->persist_head = job->next;
        if (g->persist_head == NULL) g->persist_tail = NULL;
        job->next = NULL;
        pthread_mutex_unlock(&g->persist_mu);
        persist_run(g, job);
        pthread_mutex_lock(&g->persist_mu);
        job->next = g->persist_done_head;
        g->persist_done_head = job;
        uv_async_send(&g->persist_async);
    }
    pthread_mutex_unlock(&g->persist_mu);
    return NULL;
}

void group__persist_submit(node_group *g, group_persist_job *job)
{
    pthread_mutex_lock(&g->persist_mu);
    job->next = NULL;
    if (g->persist_tail)
        g->persist_tail->next = job;
    else
        g->persist_head = job;
    g->persist_tail = job;
    pthread_cond_signal(&g->persist_cond);
    pthread_mutex_unlock(&g->persist_mu);
}

/* ---------------- apply ---------------- */

static bool own_client(const node_group *g, uint64_t client_id)
{
    uint64_t lane = client_id & 0xFF;
    return client_id - lane == g->client_base && lane < g->lane_count;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Applies one entry; returns its status (TERN_EFAILED stops the thread). */
static int apply_entry(node_group *g, const node_raftlog_entry *e, group_apply_result *result,
                       bool *has_result)
{
    *has_result = false;
    if (e->type == RAFT_ENTRY_NORMAL && e->len >= GROUP_ENVELOPE_BYTES &&
        e->data[0] == GROUP_ENVELOPE_VERSION) {
        uint64_t client_id = le64(e->data + 8), seq = le64(e->data + 16);
        int status = g->sm.apply(g->sm.ctx, e->index, client_id, seq,
                                 e->data + GROUP_ENVELOPE_BYTES, e->len - GROUP_ENVELOPE_BYTES);
        if (own_client(g, client_id)) {
            *result = (group_apply_result){.client_id = client_id, .seq = seq, .status = status};
            *has_result = true;
        }
        return status == TERN_EFAILED ? status : 0;
    }
    if (e->type == RAFT_ENTRY_CONFIG) {
        raft_conf conf;
        if (raft_conf_decode(e->data, e->len, &conf) == 0) g->apply_conf = conf;
    }
    /* NOOP, CONFIG, and (never proposed by us) a NORMAL entry without an envelope. */
    int rc = g->sm.apply_other(g->sm.ctx, e->index);
    return rc == TERN_EFAILED ? rc : 0;
}

static int results_push(node_group *g, const group_apply_result *r, size_t n)
{
    if (n == 0) return 0;
    if (g->results_count + n > g->results_cap) {
        size_t cap = TERN_MAX(g->results_cap * 2, g->results_count + n + 16);
        group_apply_result *grown = realloc(g->results, cap * sizeof *grown);
        if (grown == NULL) return TERN_ENOMEM;
        g->results = grown;
        g->results_cap = cap;
    }
    memcpy(g->results + g->results_count, r, n * sizeof *r);
    g->results_count += n;
    return 0;
}

/* One step: reads and applies a batch; called without apply_mu. */
static void apply_step(node_group *g, uint64_t target)
{
    uint64_t from = atomic_load(&g->applied) + 1;
    uint64_t to = TERN_MIN(target, from + GROUP_APPLY_BATCH_MAX - 1);
    node_raftlog_entry *es;
    size_t n;
    int rc = node_raftlog_read(g->log, from, to, GROUP_APPLY_BYTES_MAX, &es, &n);
    if (rc != 0) {
        node_log(NODE_LOG_ERROR, COMPONENT,
                 "cannot read committed entries %" PRIu64 "..%" PRIu64 ": %s (%s)", from, to,
                 tern_strerror(rc), node_raftlog_errmsg(g->log));
        pthread_mutex_lock(&g->apply_mu);
        g->apply_failed = true;
        pthread_mutex_unlock(&g->apply_mu);
        uv_async_send(&g->apply_async);
        return;
    }
    group_apply_result *results = malloc(n * sizeof *results);
    size_t nres = 0;
    uint64_t applied = from - 1, applied_term = atomic_load(&g->applied_term);
    bool failed = false;
    for (size_t i = 0; i < n; i++) {
        bool has;
        group_apply_result r;
        if (apply_entry(g, &es[i], &r, &has) != 0) {
            failed = true;
            break;
        }
        applied = es[i].index;
        applied_term = es[i].term;
        if (has && results) results[nres++] = r;
    }
    node_raftlog_entries_free(es);
    pthread_mutex_lock(&g->apply_mu);
    /* A result that cannot be queued only leaves its proposer to time out. */
    results_push(g, results, nres);
    atomic_store(&g->applied_term, applied_term);
    atomic_store(&g->applied, applied);
    if (failed) g->apply_failed = true;
    pthread_mutex_unlock(&g->apply_mu);
    free(results);
    uv_async_send(&g->apply_async);
}

static int take_snapshot(node_group *g, raft_snapshot_meta *meta)
{
    char snapdir[600], tmp[700], final[512];
    snprintf(snapdir, sizeof snapdir, "%s/snapshots", g->raft_dir);
    if (mkdir(snapdir, 0755) != 0 && errno != EEXIST) return TERN_EIO;
    snprintf(tmp, sizeof tmp, "%s/tmp", snapdir);
    group__rmtree(tmp);
    uint64_t index = 0;
    int rc = g->sm.snapshot_create(g->sm.ctx, tmp, &index);
    if (rc != 0) return rc;
    if (index == 0 || index <= g->snapshot_index) {
        group__rmtree(tmp);
        return TERN_EEXIST; /* nothing new since the last one */
    }
    uint64_t term;
    rc = node_raftlog_term(g->log, index, &term);
    if (rc != 0) {
        group__rmtree(tmp);
        return rc;
    }
    group__snapshot_dir(g, index, final, sizeof final);
    group__rmtree(final);
    if (rename(tmp, final) != 0) return TERN_EIO;
    rc = group__fsync_path(snapdir);
    if (rc != 0) return rc;
    memset(meta, 0, sizeof *meta);
    meta->index = index;
    meta->term = term;
    meta->conf = g->apply_conf;
    return 0;
}

static void *apply_main(void *arg)
{
    node_group *g = arg;
    pthread_mutex_lock(&g->apply_mu);
    for (;;) {
        while (!g->apply_stop && !g->install_requested && !g->snapshot_requested &&
               (g->apply_failed || atomic_load(&g->applied) >= g->apply_target))
            pthread_cond_wait(&g->apply_cond, &g->apply_mu);
        if (g->apply_stop) break;
        if (g->install_requested) {
            g->install_requested = false;
            char dir[512];
            snprintf(dir, sizeof dir, "%s", g->install_dir);
            uint64_t index = g->install_index;
            pthread_mutex_unlock(&g->apply_mu);
            int rc = g->sm.snapshot_install(g->sm.ctx, dir);
            pthread_mutex_lock(&g->apply_mu);
            if (rc == 0) {
                atomic_store(&g->applied, index);
                if (g->apply_target < index) g->apply_target = index;
            }
            g->install_rc = rc;
            g->install_finished = true;
            pthread_cond_broadcast(&g->apply_cond);
            continue;
        }
        if (g->snapshot_requested) {
            g->snapshot_requested = false;
            raft_snapshot_meta meta;
            int rc = TERN_EFAILED;
            if (!g->apply_failed) {
                pthread_mutex_unlock(&g->apply_mu);
                rc = take_snapshot(g, &meta);
                pthread_mutex_lock(&g->apply_mu);
            }
            g->snapshot_result_rc = rc;
            if (rc == 0) g->snapshot_result = meta;
            g->snapshot_result_ready = true;
            uv_async_send(&g->apply_async);
            continue;
        }
        uint64_t target = g->apply_target;
        pthread_mutex_unlock(&g->apply_mu);
        apply_step(g, target);
        pthread_mutex_lock(&g->apply_mu);
    }
    pthread_mutex_unlock(&g->apply_mu);
    return NULL;
}

void group__apply_set_target(node_group *g, uint64_t target)
{
    pthread_mutex_lock(&g->apply_mu);
    if (target > g->apply_target) {
        g->apply_target = target;
        pthread_cond_broadcast(&g->apply_cond);
    }
    pthread_mutex_unlock(&g->apply_mu);
}

void group__apply_request_snapshot(node_group *g)
{
    pthread_mutex_lock(&g->apply_mu);
    g->snapshot_requested = true;
    pthread_cond_broadcast(&g->apply_cond);
    pthread_mutex_unlock(&g->apply_mu);
}

/* Persist thread: has the apply thread install dir (a received snapshot) and waits. */
int group__apply_install(node_group *g, const char *dir, const raft_snapshot_meta *meta)
{
    pthread_mutex_lock(&g->apply_mu);
    snprintf(g->install_dir, sizeof g->install_dir, "%s", dir);
    g->install_index = meta->index;
    g->install_requested = true;
    g->install_finished = false;
    pthread_cond_broadcast(&g->apply_cond);
    while (!g->install_finished && !g->apply_stop)
        pthread_cond_wait(&g->apply_cond, &g->apply_mu);
    int rc = g->install_finished ? g->install_rc : TERN_ECLOSED;
    if (rc == 0) {
        g->apply_conf = meta->conf;
        atomic_store(&g->applied_term, meta->term);
    }
    pthread_mutex_unlock(&g->apply_mu);
    return rc;
}

int group__install_local_snapshot(node_group *g, const raft_snapshot_meta *meta, char *errmsg,
                                  size_t errmsg_len)
{
    char dir[512];
    group__snapshot_dir(g, meta->index, dir, sizeof dir);
    node_log(NODE_LOG_WARN, COMPONENT,
             "the state machine is behind snapshot %" PRIu64 ": installing %s", meta->index, dir);
    int rc = g->sm.snapshot_install ? g->sm.snapshot_install(g->sm.ctx, dir) : TERN_ENOTSUP;
    if (rc != 0)
        tern_errmsg(errmsg, errmsg_len, "cannot install snapshot %s: %s", dir, tern_strerror(rc));
    return rc;
}

/* ---------------- start and stop ---------------- */

int group__threads_start(node_group *g, char *errmsg, size_t errmsg_len)
{
    int err = pthread_create(&g->persist_thread, NULL, persist_main, g);
    if (err != 0) {
        tern_errmsg(errmsg, errmsg_len, "cannot start the persist thread: %s", strerror(err));
        return TERN_ENOMEM;
    }
    err = pthread_create(&g->apply_thread, NULL, apply_main, g);
    if (err != 0) {
        pthread_mutex_lock(&g->persist_mu);
        g->persist_stop = true;
        pthread_cond_broadcast(&g->persist_cond);
        pthread_mutex_unlock(&g->persist_mu);
        pthread_join(g->persist_thread, NULL);
        tern_errmsg(errmsg, errmsg_len, "cannot start the apply thread: %s", strerror(err));
        return TERN_ENOMEM;
    }
    g->threads_started = true;
    return 0;
}

void group__threads_stop(node_group *g)
{
    if (!g->threads_started) return;
    g->threads_started = false;
    /* The persist thread may wait for an install on the apply thread: stop it first, and
     * wake its wait by stopping the apply thread's loop too. */
    pthread_mutex_lock(&g->persist_mu);
    g->persist_stop = true;
    pthread_cond_broadcast(&g->persist_cond);
    pthread_mutex_unlock(&g->persist_mu);
    pthread_mutex_lock(&g->apply_mu);
    g->apply_stop = true;
    pthread_cond_broadcast(&g->apply_cond);
    pthread_mutex_unlock(&g->apply_mu);
    pthread_join(g->persist_thread, NULL);
    pthread_join(g->apply_thread, NULL);
    group_persist_job *lists[] = {g->persist_head, g->persist_done_head};
    g->persist_head = g->persist_tail = g->persist_done_head = NULL;
    for (size_t l = 0; l < 2; l++) {
        for (group_persist_job *j = lists[l], *next; j; j = next) {
            next = j->next;
            group__persist_job_free(j);
        }
    }
}
