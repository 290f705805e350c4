/* The region group driver: --peers parsing, metrics and the status snapshot. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "group_internal.h"

/* ---------------- --peers parsing ---------------- */

/* Splits "host:port" or "[v6]:port"; host without brackets. */
int group__split_host_port(const char *addr, char *host, size_t host_len, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr) return TERN_EINVAL;
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (addr[0] == '[') {
        if (hl < 3 || colon[-1] != ']') return TERN_EINVAL;
        h = addr + 1;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_len) return TERN_EINVAL;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || p < 0 || p > 65535) return TERN_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

int node_group_parse_peers(const char *text, node_group_peer *out, size_t max, size_t *count,
                           char *errmsg, size_t errmsg_len)
{
    *count = 0;
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[160];
        if (len == 0 || len >= sizeof item) {
            tern_errmsg(errmsg, errmsg_len, "peers: empty or overlong entry in '%s'", text);
            return TERN_EINVAL;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        char *eq = strchr(item, '=');
        char *idend = NULL;
        errno = 0;
        unsigned long long id = eq ? strtoull(item, &idend, 10) : 0;
        if (eq == NULL || idend != eq || id == 0 || errno || item[0] == '-') {
            tern_errmsg(errmsg, errmsg_len, "peers: '%s': expected ID=HOST:PORT with ID >= 1",
                        item);
            return TERN_EINVAL;
        }
        char host[NODE_GROUP_ADDRESS_MAX];
        int port;
        uint8_t addr[16];
        if (group__split_host_port(eq + 1, host, sizeof host, &port) != 0 || port == 0 ||
            strlen(eq + 1) >= NODE_GROUP_ADDRESS_MAX) {
            tern_errmsg(errmsg, errmsg_len, "peers: '%s': expected HOST:PORT with a port 1..65535",
                        item);
            return TERN_EINVAL;
        }
        if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1) {
            tern_errmsg(errmsg, errmsg_len, "peers: '%s': the host must be a numeric IP address",
                        item);
            return TERN_EINVAL;
        }
        for (size_t i = 0; i < *count; i++) {
            if (out[i].id == id) {
                tern_errmsg(errmsg, errmsg_len, "peers: node id %llu appears twice", id);
                return TERN_EINVAL;
            }
        }
        if (*count == max) {
            tern_errmsg(errmsg, errmsg_len, "peers: more than %zu nodes", max);
            return TERN_EINVAL;
        }
        out[*count].id = id;
        snprintf(out[*count].address, sizeof out[*count].address, "%s", eq + 1);
        (*count)++;
        p = end ? end + 1 : p + len;
        if (end && *p == '\0') {
            tern_errmsg(errmsg, errmsg_len, "peers: trailing ',' in '%s'", text);
            return TERN_EINVAL;
        }
    }
    if (*count == 0) {
        tern_errmsg(errmsg, errmsg_len, "peers: empty list");
        return TERN_EINVAL;
    }
    return 0;
}

/* ---------------- metrics ---------------- */

void group__metrics_init(node_group *g)
{
    node_metrics *m = g->cfg.metrics;
    if (m == NULL) return;
    g->m_term = node_metrics_gauge(m, "tern_raft_term", "Current Raft term.", NULL);
    g->m_commit = node_metrics_gauge(m, "tern_raft_commit_index", "Raft commit index.", NULL);
    g->m_applied = node_metrics_gauge(m, "tern_raft_applied_index",
                                      "Index applied to the state machine.", NULL);
    g->m_last = node_metrics_gauge(m, "tern_raft_last_index", "Last Raft log index.", NULL);
    g->m_leader =
        node_metrics_gauge(m, "tern_raft_leader", "1 if this node leads its group.", NULL);
    const char *help = "Proposals submitted to the region group, by result.";
    g->m_prop_ok = node_metrics_counter(m, "tern_raft_proposals_total", help, "result=\"ok\"");
    g->m_prop_err = node_metrics_counter(m, "tern_raft_proposals_total", help, "result=\"error\"");
    g->m_prop_unavail =
        node_metrics_counter(m, "tern_raft_proposals_total", help, "result=\"unavailable\"");
    g->m_prop_timeout =
        node_metrics_counter(m, "tern_raft_proposals_total", help, "result=\"timeout\"");
    g->m_prop_again =
        node_metrics_counter(m, "tern_raft_proposals_total", help, "result=\"overloaded\"");
    g->m_elections =
        node_metrics_counter(m, "tern_raft_elections_total", "Elections this node started.", NULL);
    g->m_snap_sent = node_metrics_counter(m, "tern_raft_snapshots_sent_total",
                                          "Snapshot chunks sent to followers.", NULL);
    g->m_snap_taken = node_metrics_counter(m, "tern_raft_snapshots_taken_total",
                                           "Snapshots of the state machine taken.", NULL);
    g->m_snap_installed = node_metrics_counter(m, "tern_raft_snapshots_installed_total",
                                               "Snapshots received and installed.", NULL);
    static const double bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                    0.05,   0.1,   0.25,  0.5,   1,    2.5};
    g->m_sync = node_metrics_histogram(m, "tern_raft_log_sync_seconds",
                                       "Raft log persist batches: append + fdatasync (+ hard "
                                       "state) seconds.",
                                       NULL, bounds, TERN_ARRAY_LEN(bounds));
}

void group__metrics_update(node_group *g)
{
    if (g->m_term == NULL) return;
    node_gauge_set(g->m_term, (double)g->term);
    node_gauge_set(g->m_commit, (double)raft_get_commit(g->r));
    node_gauge_set(g->m_applied, (double)atomic_load(&g->applied));
    node_gauge_set(g->m_last, (double)raft_get_last_index(g->r));
    node_gauge_set(g->m_leader, g->role == RAFT_LEADER ? 1 : 0);
}

/* ---------------- status ---------------- */

const char *group__s3_of(node_group *g, uint64_t id)
{
    if (id == g->cfg.node_id) return g->s3_listen;
    for (size_t i = 0; i < NODE_GROUP_PEERS_MAX; i++)
        if (g->info[i].id == id) return g->info[i].s3;
    return "";
}

void node_group_status_get(node_group *g, node_group_status *out)
{
    assert(group__on_loop(g));
    memset(out, 0, sizeof *out);
    out->node_id = g->cfg.node_id;
    snprintf(out->region, sizeof out->region, "%s", g->region);
    out->role = raft_role_name(raft_get_role(g->r));
    out->term = raft_get_term(g->r);
    out->leader_id = raft_get_leader(g->r);
    if (out->leader_id)
        snprintf(out->leader_s3_address, sizeof out->leader_s3_address, "%s",
                 group__s3_of(g, out->leader_id));
    out->commit_index = raft_get_commit(g->r);
    out->applied_index = atomic_load(&g->applied);
    out->last_index = raft_get_last_index(g->r);
    out->snapshot_index = raft_get_snapshot(g->r)->index;
    out->failed = g->failed;
    const raft_conf *conf = raft_get_conf(g->r);
    raft_member_progress progress[RAFT_MEMBERS_MAX];
    size_t pcount = raft_get_progress(g->r, progress, RAFT_MEMBERS_MAX);
    for (size_t i = 0; i < conf->count && i < NODE_GROUP_PEERS_MAX; i++) {
        const raft_member *m = &conf->members[i];
        node_group_member *o = &out->members[out->member_count++];
        o->id = m->id;
        o->role = m->role == RAFT_MEMBER_LEARNER ? NODE_GROUP_LEARNER : NODE_GROUP_VOTER;
        snprintf(o->address, sizeof o->address, "%s", m->address);
        for (size_t j = 0; o->address[0] == '\0' && j < g->peer_count; j++)
            if (g->peers[j].id == m->id)
                snprintf(o->address, sizeof o->address, "%s", g->peers[j].address);
        snprintf(o->s3_address, sizeof o->s3_address, "%s", group__s3_of(g, m->id));
        for (size_t j = 0; j < pcount; j++) {
            if (progress[j].id != m->id) continue;
            o->match = progress[j].match;
            o->lag = out->last_index > o->match ? out->last_index - o->match : 0;
            o->active = progress[j].active;
        }
    }
}

bool node_group_ready(node_group *g)
{
    /* Read without the loop: a stale answer only delays a readiness probe by one period. */
    return !__atomic_load_n(&g->failed, __ATOMIC_RELAXED) &&
           __atomic_load_n(&g->leader_id, __ATOMIC_RELAXED) != 0;
}
