/* Unit tests of the region group driver: real TLS over loopback, real fsync, one uv loop. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <uv.h>

#include "group.h"
#include "group_internal.h"
#include "node.h"

#define NODES_MAX   5
#define DEADLINE_MS 20000
#define SEEN_MAX    4096

/* ---------------- throwaway PKI (as in test_transport.c) ---------------- */

static char pki_dir[64];

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static EVP_PKEY *make_cert(const char *name, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                           X509 **cert_out)
{
    static long serial = 1;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(key);
    X509 *cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *subject = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : subject);
    if (issuer) {
        add_ext(cert, issuer, NID_basic_constraints, "critical,CA:FALSE");
    } else {
        add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    assert_true(X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    char path[128];
    snprintf(path, sizeof path, "%s/%s.crt", pki_dir, name);
    FILE *f = fopen(path, "w");
    PEM_write_X509(f, cert);
    fclose(f);
    snprintf(path, sizeof path, "%s/%s.key", pki_dir, name);
    f = fopen(path, "w");
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    if (cert_out)
        *cert_out = cert;
    else
        X509_free(cert);
    return key;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rmtree(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int suite_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* the transport writes sockets with write(2) */
    snprintf(pki_dir, sizeof pki_dir, "/tmp/tern-group-pki-XXXXXX");
    assert_non_null(mkdtemp(pki_dir));
    X509 *ca;
    EVP_PKEY *ca_key = make_cert("ca", "tern test CA", NULL, NULL, &ca);
    for (int i = 1; i <= NODES_MAX; i++) {
        char name[16], cn[16];
        snprintf(name, sizeof name, "node%d", i);
        snprintf(cn, sizeof cn, "%d", i);
        EVP_PKEY_free(make_cert(name, cn, ca, ca_key, NULL));
    }
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    node_log_set_level(getenv("TEST_GROUP_DEBUG") ? NODE_LOG_DEBUG : NODE_LOG_WARN);
    return 0;
}

static int suite_teardown(void **state)
{
    (void)state;
    rmtree(pki_dir);
    return 0;
}

/* ---------------- a test state machine: commands recorded in order, deduplicated ----------------
 */

typedef struct {
    pthread_mutex_t mu;
    uint64_t applied;
    size_t seen_count;
    struct {
        uint64_t client, seq;
        int result;
    } seen[SEEN_MAX];
    size_t cmd_count;
    char cmds[SEEN_MAX][32];
    size_t duplicates;
    uint64_t fail_at; /* apply returns TERN_EFAILED at this index */
    size_t installs, snapshots;
} test_sm;

static int sm_apply(void *ctx, uint64_t index, uint64_t client, uint64_t seq, const void *cmd,
                    size_t len)
{
    test_sm *s = ctx;
    pthread_mutex_lock(&s->mu);
    assert_true(index == s->applied + 1);
    if (s->fail_at && index >= s->fail_at) {
        pthread_mutex_unlock(&s->mu);
        return TERN_EFAILED;
    }
    s->applied = index;
    for (size_t i = 0; i < s->seen_count; i++) {
        if (s->seen[i].client == client && s->seen[i].seq == seq) {
            s->duplicates++;
            int r = s->seen[i].result;
            pthread_mutex_unlock(&s->mu);
            return r;
        }
    }
    assert_true(s->seen_count < SEEN_MAX);
    int result = len >= 4 && memcmp(cmd, "bad:", 4) == 0 ? TERN_EINVAL : 0;
    s->seen[s->seen_count].client = client;
    s->seen[s->seen_count].seq = seq;
    s->seen[s->seen_count++].result = result;
    snprintf(s->cmds[s->cmd_count++], 32, "%.*s", (int)TERN_MIN(len, 31), (const char *)cmd);
    pthread_mutex_unlock(&s->mu);
    return result;
}

static int sm_apply_other(void *ctx, uint64_t index)
{
    test_sm *s = ctx;
    pthread_mutex_lock(&s->mu);
    assert_true(index == s->applied + 1);
    s->applied = index;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static uint64_t sm_applied_index(void *ctx)
{
    test_sm *s = ctx;
    pthread_mutex_lock(&s->mu);
    uint64_t v = s->applied;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* The checkpoint is one file holding the whole struct (the test's "RocksDB checkpoint"). */
static int sm_snapshot_create(void *ctx, const char *dir, uint64_t *index_out)
{
    test_sm *s = ctx;
    if (mkdir(dir, 0755) != 0) return TERN_EIO;
    char path[600];
    snprintf(path, sizeof path, "%s/state", dir);
    FILE *f = fopen(path, "wb");
    if (f == NULL) return TERN_EIO;
    pthread_mutex_lock(&s->mu);
    size_t skip = offsetof(test_sm, applied);
    fwrite((char *)s + skip, 1, sizeof *s - skip, f);
    *index_out = s->applied;
    s->snapshots++;
    pthread_mutex_unlock(&s->mu);
    fflush(f);
    fsync(fileno(f));
    fclose(f);
    /* A second, empty file and a subdirectory exercise the stream format. */
    snprintf(path, sizeof path, "%s/sub", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/sub/EMPTY", dir);
    f = fopen(path, "wb");
    fclose(f);
    return 0;
}

static int sm_snapshot_install(void *ctx, const char *dir)
{
    test_sm *s = ctx;
    char path[600];
    snprintf(path, sizeof path, "%s/state", dir);
    FILE *f = fopen(path, "rb");
    if (f == NULL) return TERN_EIO;
    pthread_mutex_lock(&s->mu);
    size_t skip = offsetof(test_sm, applied);
    size_t installs = s->installs, snapshots = s->snapshots;
    size_t n = fread((char *)s + skip, 1, sizeof *s - skip, f);
    s->installs = installs + 1;
    s->snapshots = snapshots;
    pthread_mutex_unlock(&s->mu);
    fclose(f);
    return n == sizeof *s - skip ? 0 : TERN_EIO;
}

static void sm_init(test_sm *s)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
}

static size_t sm_count_cmd(test_sm *s, const char *cmd)
{
    pthread_mutex_lock(&s->mu);
    size_t n = 0;
    for (size_t i = 0; i < s->cmd_count; i++)
        if (strcmp(s->cmds[i], cmd) == 0) n++;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* ---------------- a cluster on one loop ---------------- */

typedef struct {
    node_group *g;
    test_sm sm;
    char dir[128];
    int port;
    bool closed;
} tnode;

typedef struct {
    uv_loop_t loop;
    char root[64];
    size_t n;
    tnode nodes[NODES_MAX];
    node_group_config base; /* per-test overrides */
} cluster;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

static node_group_sm sm_vtable(test_sm *s)
{
    return (node_group_sm){.ctx = s,
                           .apply = sm_apply,
                           .apply_other = sm_apply_other,
                           .applied_index = sm_applied_index,
                           .snapshot_create = sm_snapshot_create,
                           .snapshot_install = sm_snapshot_install};
}

static void cluster_init(cluster *c, size_t n)
{
    memset(c, 0, sizeof *c);
    uv_loop_init(&c->loop);
    snprintf(c->root, sizeof c->root, "/tmp/tern-group-XXXXXX");
    assert_non_null(mkdtemp(c->root));
    c->n = n;
    for (size_t i = 0; i < n; i++) {
        tnode *t = &c->nodes[i];
        sm_init(&t->sm);
        snprintf(t->dir, sizeof t->dir, "%s/node%zu", c->root, i + 1);
        t->port = free_port();
        t->closed = true;
    }
    c->base.election_timeout_ms = 300;
    c->base.heartbeat_ms = 30;
    c->base.leader_wait_ms = 3000;
    c->base.sync = true;
}

/* Starts node i (0-based) of a cluster of c->n with --peers for all (none when n == 1). */
static int node_start_with(cluster *c, size_t i, bool join, char *errmsg, size_t errmsg_len)
{
    tnode *t = &c->nodes[i];
    node_group_peer peers[NODES_MAX];
    for (size_t k = 0; k < c->n; k++) {
        peers[k].id = k + 1;
        snprintf(peers[k].address, sizeof peers[k].address, "127.0.0.1:%d", c->nodes[k].port);
    }
    char ca[128], crt[128], key[128], listen[64], s3[64];
    snprintf(ca, sizeof ca, "%s/ca.crt", pki_dir);
    snprintf(crt, sizeof crt, "%s/node%zu.crt", pki_dir, i + 1);
    snprintf(key, sizeof key, "%s/node%zu.key", pki_dir, i + 1);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", t->port);
    snprintf(s3, sizeof s3, "127.0.0.1:%d", 9000 + (int)i + 1);
    node_group_config cfg = c->base;
    cfg.node_id = i + 1;
    cfg.region = "test";
    cfg.data_dir = t->dir;
    cfg.s3_listen = s3;
    cfg.join = join;
    if (c->n > 1) {
        cfg.peers = peers;
        cfg.peer_count = join ? c->n - 1 : c->n;
        if (join) { /* the joiner lists the members, not itself */
            size_t k = 0;
            for (size_t j = 0; j < c->n; j++)
                if (j != i) peers[k++] = (node_group_peer){.id = j + 1};
            for (size_t j = 0, m = 0; j < c->n; j++)
                if (j != i)
                    snprintf(peers[m++].address, sizeof peers[0].address, "127.0.0.1:%d",
                             c->nodes[j].port);
        }
        cfg.peer_listen = listen;
        cfg.peer_ca = ca;
        cfg.peer_cert = crt;
        cfg.peer_key = key;
    }
    node_group_sm sm = sm_vtable(&t->sm);
    int rc = node_group_create(&c->loop, &cfg, &sm, &t->g, errmsg, errmsg_len);
    if (rc == 0) t->closed = false;
    return rc;
}

static void node_start(cluster *c, size_t i)
{
    char err[512] = "";
    int rc = node_start_with(c, i, false, err, sizeof err);
    if (rc != 0) fail_msg("node_group_create %zu: %s (%s)", i + 1, err, tern_strerror(rc));
}

static void cluster_start(cluster *c)
{
    for (size_t i = 0; i < c->n; i++)
        node_start(c, i);
}

typedef int (*predicate)(cluster *c, void *arg);

static void wake(uv_timer_t *t)
{
    (void)t;
}

static int run_until(cluster *c, predicate pred, void *arg, uint64_t deadline_ms)
{
    uv_timer_t timer;
    uv_timer_init(&c->loop, &timer);
    uv_timer_start(&timer, wake, 5, 5);
    uint64_t deadline = uv_now(&c->loop) + deadline_ms;
    int ok;
    while (!(ok = pred(c, arg)) && uv_now(&c->loop) < deadline)
        uv_run(&c->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(&c->loop, UV_RUN_NOWAIT);
    return ok;
}

static void on_node_closed(void *ctx)
{
    ((tnode *)ctx)->closed = true;
}

static int all_closed(cluster *c, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < c->n; i++)
        if (!c->nodes[i].closed) return 0;
    return 1;
}

static void node_stop(cluster *c, size_t i)
{
    tnode *t = &c->nodes[i];
    if (t->closed || t->g == NULL) return;
    node_group_close(t->g, on_node_closed, t);
    t->g = NULL;
    /* closed is set by the callback */
}

static void cluster_free(cluster *c)
{
    for (size_t i = 0; i < c->n; i++)
        node_stop(c, i);
    assert_true(run_until(c, all_closed, NULL, DEADLINE_MS));
    uv_run(&c->loop, UV_RUN_DEFAULT); /* every handle closed */
    assert_int_equal(uv_loop_close(&c->loop), 0);
    rmtree(c->root);
}

/* The leader every live node agrees on, or 0. */
static uint64_t agreed_leader(cluster *c)
{
    uint64_t leader = 0;
    for (size_t i = 0; i < c->n; i++) {
        tnode *t = &c->nodes[i];
        if (t->closed) continue;
        node_group_status st;
        node_group_status_get(t->g, &st);
        if (st.leader_id == 0) return 0;
        if (leader != 0 && st.leader_id != leader) return 0;
        leader = st.leader_id;
    }
    if (leader == 0 || c->nodes[leader - 1].closed) return 0;
    node_group_status st;
    node_group_status_get(c->nodes[leader - 1].g, &st);
    return strcmp(st.role, "leader") == 0 ? leader : 0;
}

static int has_leader(cluster *c, void *arg)
{
    (void)arg;
    return agreed_leader(c) != 0;
}

static uint64_t wait_leader(cluster *c)
{
    assert_true(run_until(c, has_leader, NULL, DEADLINE_MS));
    return agreed_leader(c);
}

/* ---------------- submissions ---------------- */

typedef struct {
    int done;
    int status;
} result;

static void on_done(void *arg, int status)
{
    result *r = arg;
    assert_int_equal(r->done, 0); /* exactly once */
    r->done = 1;
    r->status = status;
}

static int results_done(cluster *c, void *arg)
{
    (void)c;
    result *r = arg;
    for (; r->status != INT32_MIN; r++)
        if (!r->done) return 0;
    return 1;
}

static int one_done(cluster *c, void *arg)
{
    (void)c;
    return ((result *)arg)->done;
}

static void submit_text(node_group *g, const char *text, result *r)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(node_group_submit(g, text, strlen(text), on_done, r), 0);
}

static int count_everywhere(cluster *c, void *arg)
{
    const char *cmd = arg;
    for (size_t i = 0; i < c->n; i++)
        if (!c->nodes[i].closed && sm_count_cmd(&c->nodes[i].sm, cmd) != 1) return 0;
    return 1;
}

/* ---------------- tests ---------------- */

static void test_parse_peers(void **state)
{
    (void)state;
    node_group_peer p[NODE_GROUP_PEERS_MAX];
    size_t n;
    char err[256];
    assert_int_equal(node_group_parse_peers("1=127.0.0.1:7001,2=10.0.0.2:7000,3=[::1]:7003", p,
                                            NODE_GROUP_PEERS_MAX, &n, err, sizeof err),
                     0);
    assert_int_equal(n, 3);
    assert_int_equal(p[2].id, 3);
    assert_string_equal(p[2].address, "[::1]:7003");
    const char *bad[] = {"",
                         "1",
                         "1=",
                         "0=127.0.0.1:1",
                         "x=1.2.3.4:5",
                         "1=1.2.3.4",
                         "1=1.2.3.4:0",
                         "1=1.2.3.4:70000",
                         "1=1.1.1.1:1,1=2.2.2.2:2",
                         "1=1.1.1.1:1,",
                         "-1=1.1.1.1:1",
                         "1=host.example:7000"};
    for (size_t i = 0; i < TERN_ARRAY_LEN(bad); i++)
        assert_int_equal(
            node_group_parse_peers(bad[i], p, NODE_GROUP_PEERS_MAX, &n, err, sizeof err),
            TERN_EINVAL);
}

static void test_single_node(void **state)
{
    (void)state;
    cluster c;
    cluster_init(&c, 1);
    cluster_start(&c);
    assert_int_equal(wait_leader(&c), 1);
    node_group *g = c.nodes[0].g;
    result r[3];
    submit_text(g, "one", &r[0]);
    submit_text(g, "bad:two", &r[1]);
    r[2].status = INT32_MIN;
    assert_true(run_until(&c, results_done, r, DEADLINE_MS));
    assert_int_equal(r[0].status, 0);
    assert_int_equal(r[1].status, TERN_EINVAL); /* the state machine's answer reaches done */
    assert_int_equal(sm_count_cmd(&c.nodes[0].sm, "one"), 1);
    /* A 1-voter leader with everything applied answers the barrier synchronously. */
    result b = {0};
    assert_int_equal(node_group_read_barrier(g, on_done, &b), 0);
    assert_int_equal(b.done, 1);
    assert_int_equal(b.status, 0);
    node_group_status st;
    node_group_status_get(g, &st);
    assert_int_equal(st.node_id, 1);
    assert_string_equal(st.role, "leader");
    assert_int_equal(st.member_count, 1);
    assert_true(st.applied_index >= 3); /* no-op + two commands */
    assert_true(node_group_ready(g));
    assert_int_equal(node_group_submit(g, "x", NODE_GROUP_COMMAND_BYTES_MAX + 1, on_done, &b),
                     TERN_ETOOBIG);
    cluster_free(&c);
}

static void test_three_nodes_forward_and_barrier(void **state)
{
    (void)state;
    cluster c;
    cluster_init(&c, 3);
    cluster_start(&c);
    uint64_t leader = wait_leader(&c);
    size_t follower = leader == 1 ? 1 : 0;
    size_t other = 3 - leader - follower - 1 + 1; /* the third index */
    for (size_t i = 0; i < 3; i++)
        if (i + 1 != leader && i != follower) other = i;
    result r;
    submit_text(c.nodes[follower].g, "forwarded", &r);
    assert_true(run_until(&c, one_done, &r, DEADLINE_MS));
    assert_int_equal(r.status, 0);
    /* done ran after the proposer applied it: read-your-writes on the proposing node. */
    assert_int_equal(sm_count_cmd(&c.nodes[follower].sm, "forwarded"), 1);
    assert_true(run_until(&c, count_everywhere, "forwarded", DEADLINE_MS));

    /* A write through the leader, then a barrier on the other follower must see it. */
    submit_text(c.nodes[leader - 1].g, "via-leader", &r);
    assert_true(run_until(&c, one_done, &r, DEADLINE_MS));
    assert_int_equal(r.status, 0);
    result b[4];
    for (int i = 0; i < 3; i++) {
        memset(&b[i], 0, sizeof b[i]);
        assert_int_equal(node_group_read_barrier(c.nodes[other].g, on_done, &b[i]), 0);
    }
    b[3].status = INT32_MIN;
    assert_true(run_until(&c, results_done, b, DEADLINE_MS));
    for (int i = 0; i < 3; i++)
        assert_int_equal(b[i].status, 0);
    assert_int_equal(sm_count_cmd(&c.nodes[other].sm, "via-leader"), 1);
    /* The leader's own barrier. */
    memset(&b[0], 0, sizeof b[0]);
    assert_int_equal(node_group_read_barrier(c.nodes[leader - 1].g, on_done, &b[0]), 0);
    assert_true(run_until(&c, one_done, &b[0], DEADLINE_MS));
    assert_int_equal(b[0].status, 0);

    node_group_status st;
    node_group_status_get(c.nodes[leader - 1].g, &st);
    assert_int_equal(st.member_count, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_true(st.members[i].address[0] != '\0');
        if (st.members[i].id != leader) assert_true(st.members[i].match > 0);
    }
    node_group_status_get(c.nodes[follower].g, &st);
    assert_int_equal(st.leader_id, leader);
    char want[32];
    snprintf(want, sizeof want, "127.0.0.1:%d", 9000 + (int)leader);
    assert_string_equal(st.leader_s3_address, want); /* gossiped */
    cluster_free(&c);
}

static void test_failover_retries_apply_once(void **state)
{
    (void)state;
    cluster c;
    cluster_init(&c, 3);
    cluster_start(&c);
    uint64_t leader = wait_leader(&c);
    size_t follower = leader == 1 ? 1 : 0;
    enum { N = 40 };
    result r[N + 1];
    char text[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(text[i], sizeof text[i], "w%d", i);
        submit_text(c.nodes[follower].g, text[i], &r[i]);
        if (i == N / 2) node_stop(&c, leader - 1); /* the leader dies mid-stream */
    }
    r[N].status = INT32_MIN;
    assert_true(run_until(&c, results_done, r, DEADLINE_MS));
    uint64_t new_leader = wait_leader(&c);
    assert_int_not_equal(new_leader, leader);
    /* Force duplicates: every outstanding... none are left, so resend a fresh batch twice. */
    result d[11];
    for (int i = 0; i < 10; i++) {
        char t[16];
        snprintf(t, sizeof t, "dup%d", i);
        submit_text(c.nodes[follower].g, t, &d[i]);
    }
    group__propose_dispatch_all(c.nodes[follower].g); /* the same client_id/seq again */
    group__propose_dispatch_all(c.nodes[follower].g);
    d[10].status = INT32_MIN;
    assert_true(run_until(&c, results_done, d, DEADLINE_MS));
    for (int i = 0; i < 10; i++)
        assert_int_equal(d[i].status, 0);
    for (int i = 0; i < N; i++) {
        /* Each write either succeeded, or failed in a way that says so; none applied twice. */
        if (r[i].status == 0) assert_true(run_until(&c, count_everywhere, text[i], DEADLINE_MS));
        for (size_t k = 0; k < 3; k++)
            if (!c.nodes[k].closed) assert_true(sm_count_cmd(&c.nodes[k].sm, text[i]) <= 1);
    }
    for (int i = 0; i < 10; i++) {
        char t[16];
        snprintf(t, sizeof t, "dup%d", i);
        assert_true(run_until(&c, count_everywhere, t, DEADLINE_MS));
    }
    size_t ok = 0;
    for (int i = 0; i < N; i++)
        ok += r[i].status == 0;
    assert_true(ok >= N / 2); /* retried to the new leader, not all failed */
    cluster_free(&c);
}

static void test_restart_replays(void **state)
{
    (void)state;
    cluster c;
    cluster_init(&c, 3);
    cluster_start(&c);
    uint64_t leader = wait_leader(&c);
    result r[6];
    for (int i = 0; i < 5; i++) {
        char t[16];
        snprintf(t, sizeof t, "r%d", i);
        submit_text(c.nodes[leader - 1].g, t, &r[i]);
    }
    r[5].status = INT32_MIN;
    assert_true(run_until(&c, results_done, r, DEADLINE_MS));
    assert_true(run_until(&c, count_everywhere, "r4", DEADLINE_MS));
    for (size_t i = 0; i < 3; i++)
        node_stop(&c, i);
    assert_true(run_until(&c, all_closed, NULL, DEADLINE_MS));
    /* Node 1 comes back with an empty state machine: the log is replayed once committed. */
    sm_init(&c.nodes[0].sm);
    cluster_start(&c);
    wait_leader(&c);
    for (int i = 0; i < 5; i++) {
        char t[16];
        snprintf(t, sizeof t, "r%d", i);
        assert_true(run_until(&c, count_everywhere, t, DEADLINE_MS));
    }
    /* And it still takes writes. */
    result w;
    submit_text(c.nodes[0].g, "after", &w);
    assert_true(run_until(&c, one_done, &w, DEADLINE_MS));
    assert_int_equal(w.status, 0);
    cluster_free(&c);
}

static void test_single_node_restart(void **state)
{
    (void)state;
    cluster c;
    cluster_init(&c, 1);
    cluster_start(&c);
    wait_leader(&c);
    result r;
    submit_text(c.nodes[0].g, "kept", &r);
    assert_true(run_until(&c, one_done, &r, DEADLINE_MS));
    node_stop(&c, 0);
    assert_true(run_until(&c, all_closed, NULL, DEADLINE_MS));
    /* Same state machine (applied index kept): nothing replays twice. */
    cluster_start(&c);
    wait_leader(&c);
    submit_text(c.nodes[0].g, "more", &r);
    assert_true(run_until(&c, one_done, &r, DEADLINE_MS));
    assert_int_equal(r.status, 0);
    assert_int_equal(sm_count_cmd(&c.nodes[0].sm, "kept"), 1);
    assert_int_equal(c.nodes[0].sm.duplicates, 0);
    cluster_free(&c);
}

static void test_bounds_and_no_leader(void **state)
{
    (void)state;
    cluster c;
    cluster_init(&c, 3);
    c.base.pending_max = 2;
    c.base.barriers_max = 1;
    c.base.leader_wait_ms = 400;
    node_start(&c, 0); /* alone: no quorum, no leader */
    node_group *g = c.nodes[0].g;
    result r[3];
    submit_text(g, "a", &r[0]);
    submit_text(g, "b", &r[1]);
    assert_int_equal(node_group_submit(g, "c", 1, on_done, &r[2]), TERN_EAGAIN);
    result b[2] = {{0}, {0}};
    assert_int_equal(node_group_read_barrier(g, on_done, &b[0]), 0);
    assert_int_equal(node_group_read_barrier(g, on_done, &b[1]), TERN_EAGAIN);
    assert_false(node_group_ready(g));
    r[2].status = INT32_MIN;
    assert_true(run_until(&c, results_done, r, DEADLINE_MS));
    assert_int_equal(r[0].status, TERN_EUNAVAIL);
    assert_int_equal(r[1].status, TERN_EUNAVAIL);
    assert_true(run_until(&c, one_done, &b[0], DEADLINE_MS));
    assert_int_equal(b[0].status, TERN_EUNAVAIL);
    /* Pending work at close gets TERN_ECLOSED. */
    submit_text(g, "late", &r[0]);
    assert_int_equal(node_group_read_barrier(g, on_done, &b[1]), 0);
    node_stop(&c, 0);
    assert_int_equal(r[0].done, 1);
    assert_int_equal(r[0].status, TERN_ECLOSED);
    assert_int_equal(b[1].status, TERN_ECLOSED);
    cluster_free(&c);
}

typedef struct {
    node_group *g;
    int rc_call, rc_barrier;
} worker_arg;

static void *worker(void *arg)
{
    worker_arg *w = arg;
    w->rc_call = node_group_call(w->g, "from-worker", 11);
    w->rc_barrier = node_group_read_barrier_wait(w->g);
    return NULL;
}

static int worker_done(cluster *c, void *arg)
{
    (void)c;
    return __atomic_load_n((int *)arg, __ATOMIC_ACQUIRE);
}

typedef struct {
    worker_arg w;
    int finished;
} worker_box;

static void *worker_wrap(void *arg)
{
    worker_box *b = arg;
    worker(&b->w);
    __atomic_store_n(&b->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_worker_thread_calls(void **state)
{
    (void)state;
    cluster c;
    cluster_init(&c, 3);
    cluster_start(&c);
    uint64_t leader = wait_leader(&c);
    size_t follower = leader == 1 ? 1 : 0;
    worker_box box = {.w = {.g = c.nodes[follower].g, .rc_call = 1, .rc_barrier = 1}};
    pthread_t t;
    pthread_create(&t, NULL, worker_wrap, &box);
    assert_true(run_until(&c, worker_done, &box.finished, DEADLINE_MS));
    pthread_join(t, NULL);
    assert_int_equal(box.w.rc_call, 0);
    assert_int_equal(box.w.rc_barrier, 0);
    assert_int_equal(sm_count_cmd(&c.nodes[follower].sm, "from-worker"), 1);
    cluster_free(&c);
}

static void test_apply_failure_is_sticky(void **state)
{
    (void)state;
    cluster c;
    cluster_init(&c, 1);
    cluster_start(&c);
    wait_leader(&c);
    c.nodes[0].sm.fail_at = 1; /* every command from now on; the no-op is not a command */
    result r;
    submit_text(c.nodes[0].g, "breaks", &r);
    assert_true(run_until(&c, one_done, &r, DEADLINE_MS));
    assert_int_equal(r.status, TERN_EFAILED);
    assert_false(node_group_ready(c.nodes[0].g));
    assert_int_equal(node_group_submit(c.nodes[0].g, "x", 1, on_done, &r), TERN_EFAILED);
    cluster_free(&c);
}

static void test_config_errors(void **state)
{
    (void)state;
    cluster c;
    cluster_init(&c, 3);
    char err[512];
    node_group_config cfg = c.base;
    node_group_peer peers[1] = {{.id = 2, .address = "127.0.0.1:1"}};
    cfg.node_id = 1;
    cfg.region = "r";
    cfg.data_dir = c.nodes[0].dir;
    cfg.peers = peers;
    cfg.peer_count = 1;
    test_sm sm;
    sm_init(&sm);
    node_group_sm v = sm_vtable(&sm);
    node_group *g = NULL;
    assert_int_equal(node_group_create(&c.loop, &cfg, &v, &g, err, sizeof err), TERN_EINVAL);
    assert_non_null(strstr(err, "include this node"));
    cfg.join = true;
    assert_int_equal(node_group_create(&c.loop, &cfg, &v, &g, err, sizeof err), TERN_EINVAL);
    assert_non_null(strstr(err, "--peer-ca"));
    cfg.join = false;
    cfg.peer_count = 0;
    cfg.heartbeat_ms = 400;
    cfg.election_timeout_ms = 300;
    assert_int_equal(node_group_create(&c.loop, &cfg, &v, &g, err, sizeof err), TERN_EINVAL);
    assert_null(g);
    cluster_free(&c);
}

/* ---------------- snapshots and membership (need the core's compaction) ---------------- */

static int snapshot_taken(cluster *c, void *arg)
{
    size_t i = *(size_t *)arg;
    node_group_status st;
    node_group_status_get(c->nodes[i].g, &st);
    return st.snapshot_index > 0;
}

static int installed(cluster *c, void *arg)
{
    size_t i = *(size_t *)arg;
    pthread_mutex_lock(&c->nodes[i].sm.mu);
    size_t n = c->nodes[i].sm.installs;
    pthread_mutex_unlock(&c->nodes[i].sm.mu);
    return n > 0;
}

static void test_snapshot_to_lagging_follower(void **state)
{
    (void)state;
    cluster c;
    cluster_init(&c, 3);
    c.base.snapshot_threshold_entries = 20;
    c.base.snapshot_keep_entries = 2;
    cluster_start(&c);
    uint64_t leader = wait_leader(&c);
    size_t lagger = leader == 3 ? 1 : 2;
    node_stop(&c, lagger);
    enum { N = 80 };
    result r[N + 1];
    for (int i = 0; i < N; i++) {
        char t[16];
        snprintf(t, sizeof t, "s%d", i);
        submit_text(c.nodes[leader - 1].g, t, &r[i]);
    }
    r[N].status = INT32_MIN;
    assert_true(run_until(&c, results_done, r, DEADLINE_MS));
    size_t li = leader - 1;
    assert_true(run_until(&c, snapshot_taken, &li, DEADLINE_MS));
    /* More writes so the compacted prefix is gone for the lagging node. */
    for (int i = 0; i < 30; i++) {
        char t[16];
        snprintf(t, sizeof t, "t%d", i);
        submit_text(c.nodes[leader - 1].g, t, &r[i]);
    }
    r[30].status = INT32_MIN;
    assert_true(run_until(&c, results_done, r, DEADLINE_MS));
    sm_init(&c.nodes[lagger].sm);
    rmtree(c.nodes[lagger].dir);
    node_start(&c, lagger);
    assert_true(run_until(&c, installed, &lagger, DEADLINE_MS));
    assert_true(run_until(&c, count_everywhere, "s0", DEADLINE_MS));
    assert_true(run_until(&c, count_everywhere, "t29", DEADLINE_MS));
    cluster_free(&c);
}

static int member_is_voter(cluster *c, void *arg)
{
    uint64_t id = *(uint64_t *)arg;
    uint64_t leader = agreed_leader(c);
    if (leader == 0) return 0;
    node_group_status st;
    node_group_status_get(c->nodes[leader - 1].g, &st);
    for (size_t i = 0; i < st.member_count; i++)
        if (st.members[i].id == id) return st.members[i].role == NODE_GROUP_VOTER;
    return 0;
}

static void test_add_promote_remove(void **state)
{
    (void)state;
    cluster c;
    cluster_init(&c, 4);
    c.n = 3; /* start 3; node 4 joins */
    cluster_start(&c);
    uint64_t leader = wait_leader(&c);
    result w;
    submit_text(c.nodes[leader - 1].g, "before-join", &w);
    assert_true(run_until(&c, one_done, &w, DEADLINE_MS));
    c.n = 4;
    char err[512];
    assert_int_equal(node_start_with(&c, 3, true, err, sizeof err), 0);
    size_t follower = leader == 1 ? 1 : 0;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", c.nodes[3].port);
    result a = {0};
    assert_int_equal(node_group_add_node(c.nodes[follower].g, 4, addr, on_done, &a), 0);
    assert_true(run_until(&c, one_done, &a, DEADLINE_MS));
    assert_int_equal(a.status, 0);
    uint64_t four = 4;
    assert_true(run_until(&c, member_is_voter, &four, DEADLINE_MS)); /* promoted by itself */
    assert_true(run_until(&c, count_everywhere, "before-join", DEADLINE_MS));
    /* Remove a follower that is not the one we talk through. */
    uint64_t victim = 0;
    for (uint64_t id = 1; id <= 3 && victim == 0; id++)
        if (id != leader && id != follower + 1) victim = id;
    result rm = {0};
    /* TERN_EAGAIN while the promotion is still uncommitted: the caller retries. */
    for (int attempt = 0; attempt < 50; attempt++) {
        memset(&rm, 0, sizeof rm);
        assert_int_equal(node_group_remove_node(c.nodes[follower].g, victim, on_done, &rm), 0);
        assert_true(run_until(&c, one_done, &rm, DEADLINE_MS));
        if (rm.status != TERN_EAGAIN) break;
        result pause = {0};
        run_until(&c, one_done, &pause, 50);
    }
    assert_int_equal(rm.status, 0);
    node_group_status st;
    node_group_status_get(c.nodes[follower].g, &st);
    assert_int_equal(st.member_count, 3);
    node_stop(&c, victim - 1);
    /* Transfer leadership to node 4. */
    result tr = {0};
    assert_int_equal(node_group_transfer_leader(c.nodes[follower].g, 4, on_done, &tr), 0);
    assert_true(run_until(&c, one_done, &tr, DEADLINE_MS));
    assert_int_equal(tr.status, 0);
    assert_int_equal(wait_leader(&c), 4);
    /* The new leader serves writes from the old nodes. */
    submit_text(c.nodes[follower].g, "after-transfer", &w);
    assert_true(run_until(&c, one_done, &w, DEADLINE_MS));
    assert_int_equal(w.status, 0);
    assert_true(run_until(&c, count_everywhere, "after-transfer", DEADLINE_MS));
    cluster_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_peers),
        cmocka_unit_test(test_single_node),
        cmocka_unit_test(test_three_nodes_forward_and_barrier),
        cmocka_unit_test(test_failover_retries_apply_once),
        cmocka_unit_test(test_restart_replays),
        cmocka_unit_test(test_single_node_restart),
        cmocka_unit_test(test_bounds_and_no_leader),
        cmocka_unit_test(test_worker_thread_calls),
        cmocka_unit_test(test_apply_failure_is_sticky),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_snapshot_to_lagging_follower),
        cmocka_unit_test(test_add_promote_remove),
    };
    return cmocka_run_group_tests_name("group", tests, suite_setup, suite_teardown);
}
