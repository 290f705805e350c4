/* Unit tests of the peer transport: mutual TLS, hello identity, framing, bounds, redial. */
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <uv.h>

#include "node.h"
#include "raftlog.h"
#include "transport.h"

#define RUN_DEADLINE_MS 20000
#define PAYLOAD_MAX     (1024 * 1024)

/* ---------------- throwaway PKI, made with the OpenSSL C API ---------------- */

static char pki_dir[64];
static uint32_t hello_timeout_ms = 5000; /* per test; short where the test waits for it */

static void pki_path(char *out, size_t len, const char *name, const char *ext)
{
    snprintf(out, len, "%s/%s.%s", pki_dir, name, ext);
}

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

/* Makes a certificate for cn signed by (issuer, issuer_key), or self-signed when issuer is
 * NULL. Writes name.crt and name.key; returns the key and *cert_out for signing others. */
static EVP_PKEY *make_cert(const char *name, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                           X509 **cert_out)
{
    static long serial = 1;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(key);
    X509 *cert = X509_new();
    assert_non_null(cert);
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
        add_ext(cert, cert, NID_subject_key_identifier, "hash");
    }
    assert_true(X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256()) > 0);

    char path[128];
    pki_path(path, sizeof path, name, "crt");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, cert), 1);
    fclose(f);
    pki_path(path, sizeof path, name, "key");
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    if (cert_out)
        *cert_out = cert;
    else
        X509_free(cert);
    return key;
}

static int pki_setup(void **state)
{
    (void)state;
    snprintf(pki_dir, sizeof pki_dir, "/tmp/tern-transport-XXXXXX");
    assert_non_null(mkdtemp(pki_dir));
    X509 *ca, *rogue;
    EVP_PKEY *ca_key = make_cert("ca", "tern test CA", NULL, NULL, &ca);
    EVP_PKEY *rogue_key = make_cert("rogue-ca", "tern test CA", NULL, NULL, &rogue);
    EVP_PKEY_free(make_cert("node1", "1", ca, ca_key, NULL));
    EVP_PKEY_free(make_cert("node2", "2", ca, ca_key, NULL));
    /* node3's certificate names node 3, but the test runs it as node 4 (hello mismatch). */
    EVP_PKEY_free(make_cert("node3", "3", ca, ca_key, NULL));
    /* A correct CN from the wrong CA. */
    EVP_PKEY_free(make_cert("rogue2", "2", rogue, rogue_key, NULL));
    X509_free(ca);
    X509_free(rogue);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(rogue_key);
    return 0;
}

static int pki_teardown(void **state)
{
    (void)state;
    DIR *d = opendir(pki_dir);
    struct dirent *e;
    char path[384];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", pki_dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(pki_dir);
    return 0;
}

/* ---------------- a node under test ---------------- */

typedef struct {
    node_transport *t;
    uint64_t id;
    int port;
    size_t received;
    size_t received_bytes;
    int order_ok; /* every message i matched the expected size and pattern */
    size_t ups, downs;
    int closed;
    uint64_t expect_peer; /* 0 = any */
    int close_on_message; /* closes its own transport from inside on_message */
} tnode;

static size_t message_size(size_t i)
{
    if (i % 50 == 0) return 0;
    if (i % 37 == 0) return PAYLOAD_MAX;
    return (i * 7919) % 70001;
}

static void fill_message(uint8_t *buf, size_t i, size_t len)
{
    for (size_t j = 0; j < len; j++)
        buf[j] = (uint8_t)(i * 31 + j);
}

static void on_closed(void *ctx)
{
    ((tnode *)ctx)->closed = 1;
}

static void on_message(void *ctx, uint64_t peer_id, uint16_t type, const uint8_t *bytes, size_t len)
{
    tnode *n = ctx;
    size_t i = n->received++;
    n->received_bytes += len;
    int ok = type == (uint16_t)(1 + i % 1000) && len == message_size(i);
    for (size_t j = 0; ok && j < len; j++)
        ok = bytes[j] == (uint8_t)(i * 31 + j);
    if (n->expect_peer && peer_id != n->expect_peer) ok = 0;
    if (!ok) n->order_ok = 0;
    if (n->close_on_message && n->t) {
        node_transport_close(n->t, on_closed, n);
        n->t = NULL;
    }
}

static void on_peer_state(void *ctx, uint64_t peer_id, int up)
{
    tnode *n = ctx;
    if (up)
        n->ups++;
    else
        n->downs++;
    (void)peer_id;
}

static void tnode_start(uv_loop_t *loop, tnode *n, uint64_t id, const char *cert, int port,
                        size_t outbox_bytes_max)
{
    char ca[128], crt[128], key[128], err[256];
    pki_path(ca, sizeof ca, "ca", "crt");
    pki_path(crt, sizeof crt, cert, "crt");
    pki_path(key, sizeof key, cert, "key");
    node_transport_config cfg = {
        .listen_host = "127.0.0.1",
        .listen_port = port,
        .node_id = id,
        .ca_path = ca,
        .cert_path = crt,
        .key_path = key,
        .frame_bytes_max = PAYLOAD_MAX,
        .outbox_bytes_max = outbox_bytes_max,
        .redial_ms_min = 10,
        .redial_ms_max = 100,
        .hello_timeout_ms = hello_timeout_ms,
    };
    node_transport_callbacks cb = {
        .ctx = n, .on_message = on_message, .on_peer_state = on_peer_state};
    memset(n, 0, sizeof *n);
    n->id = id;
    n->order_ok = 1;
    int rc = node_transport_create(loop, &cfg, &cb, &n->t, err, sizeof err);
    if (rc != 0) fail_msg("node_transport_create: %s", err);
    n->port = node_transport_listen_port(n->t);
    assert_true(n->port > 0);
}

typedef int (*predicate)(void *arg);

static void tick(uv_timer_t *timer)
{
    (void)timer;
}

/* Runs the loop until pred holds; fails the test at the deadline. The periodic timer only
 * wakes the loop to check the deadline; progress comes from real socket events. */
static void run_until(uv_loop_t *loop, predicate pred, void *arg)
{
    uv_timer_t timer;
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, tick, 10, 10);
    uint64_t deadline = uv_now(loop) + RUN_DEADLINE_MS;
    int ok;
    while (!(ok = pred(arg)) && uv_now(loop) < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&timer, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    assert_true(ok);
}

static int is_closed(void *arg)
{
    return ((tnode *)arg)->closed;
}

static void tnode_stop(uv_loop_t *loop, tnode *n)
{
    node_transport_close(n->t, on_closed, n);
    run_until(loop, is_closed, n);
    n->t = NULL;
}

static void loop_finish(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static node_transport_stats stats_of(tnode *n)
{
    node_transport_stats s;
    node_transport_stats_get(n->t, &s);
    return s;
}

/* ---------------- tests ---------------- */

typedef struct {
    tnode *n;
    size_t count;
} want_count;

static int received_at_least(void *arg)
{
    want_count *w = arg;
    return w->n->received >= w->count;
}

static int is_up(void *arg)
{
    return ((tnode *)arg)->ups > ((tnode *)arg)->downs;
}

static int is_down(void *arg)
{
    return ((tnode *)arg)->ups == ((tnode *)arg)->downs && ((tnode *)arg)->downs > 0;
}

/* Sends message i (pattern, size and type derived from i), running the loop on EAGAIN. */
static void send_message(uv_loop_t *loop, tnode *from, uint64_t to, size_t i, uint8_t *buf)
{
    size_t len = message_size(i);
    fill_message(buf, i, len);
    uint64_t deadline = uv_now(loop) + RUN_DEADLINE_MS;
    int rc;
    while ((rc = node_transport_send(from->t, to, (uint16_t)(1 + i % 1000), buf, len)) ==
           TERN_EAGAIN) {
        assert_true(uv_now(loop) < deadline);
        uv_run(loop, UV_RUN_ONCE);
    }
    assert_int_equal(rc, 0);
}

static void test_exchange_both_ways(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode a, b;
    tnode_start(&loop, &a, 1, "node1", 0, 4 * 1024 * 1024);
    tnode_start(&loop, &b, 2, "node2", 0, 4 * 1024 * 1024);
    assert_int_equal(node_transport_add_peer(a.t, 2, "127.0.0.1", b.port), 0);
    assert_int_equal(node_transport_add_peer(b.t, 1, "127.0.0.1", a.port), 0);
    assert_int_equal(node_transport_add_peer(a.t, 2, "127.0.0.1", b.port), TERN_EEXIST);
    assert_int_equal(node_transport_add_peer(a.t, 1, "127.0.0.1", b.port), TERN_EINVAL);
    assert_int_equal(node_transport_add_peer(a.t, 5, "not-an-ip", b.port), TERN_EINVAL);
    assert_int_equal(node_transport_send(a.t, 2, 0, "x", 1), TERN_EINVAL);
    a.expect_peer = 2;
    b.expect_peer = 1;
    assert_int_equal(node_transport_send(a.t, 9, 1, "x", 1), TERN_ECONN);
    assert_int_equal(node_transport_send(a.t, 2, 1, NULL, PAYLOAD_MAX + 1), TERN_ETOOBIG);

    uint8_t *buf = malloc(PAYLOAD_MAX);
    assert_non_null(buf);
    const size_t count = 300;
    for (size_t i = 0; i < count; i++) {
        send_message(&loop, &a, 2, i, buf);
        send_message(&loop, &b, 1, i, buf);
    }
    want_count wa = {&a, count}, wb = {&b, count};
    run_until(&loop, received_at_least, &wb);
    run_until(&loop, received_at_least, &wa);
    assert_int_equal(a.received, count);
    assert_int_equal(b.received, count);
    assert_true(a.order_ok);
    assert_true(b.order_ok);
    assert_int_equal(a.ups, 1);
    assert_int_equal(b.ups, 1);
    node_transport_stats s = stats_of(&b);
    assert_int_equal(s.frames_received, count);
    assert_int_equal(s.frame_errors + s.hello_rejects + s.handshake_failures, 0);
    free(buf);
    tnode_stop(&loop, &a);
    tnode_stop(&loop, &b);
    loop_finish(&loop);
}

typedef struct {
    tnode *n;
    int which; /* 0 handshake_failures, 1 hello_rejects, 2 frame_errors */
    uint64_t before;
} want_stat;

static int stat_nonzero(void *arg)
{
    want_stat *w = arg;
    node_transport_stats s = stats_of(w->n);
    uint64_t v = w->which == 0   ? s.handshake_failures
                 : w->which == 1 ? s.hello_rejects
                                 : s.frame_errors;
    return v > 0;
}

static int stat_grew(void *arg)
{
    want_stat *w = arg;
    node_transport_stats s = stats_of(w->n);
    uint64_t v = w->which == 0 ? s.handshake_failures : s.hello_rejects;
    return v > w->before;
}

/* A node whose certificate comes from another CA is refused, as a client and as a server.
 * Both nodes trust the cluster CA; only the rogue's own certificate is foreign. */
static void test_rogue_ca_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode a, rogue;
    tnode_start(&loop, &a, 1, "node1", 0, 1024 * 1024);
    tnode_start(&loop, &rogue, 2, "rogue2", 0, 1024 * 1024);
    assert_int_equal(node_transport_add_peer(rogue.t, 1, "127.0.0.1", a.port), 0);
    assert_int_equal(node_transport_send(rogue.t, 1, 7, "hi", 2), 0);
    want_stat w = {&a, 0, 0};
    run_until(&loop, stat_grew, &w); /* a, accepting, refused the rogue client */
    assert_int_equal(a.received + rogue.ups, 0);
    tnode_stop(&loop, &rogue);

    /* Now a dials a rogue server (which itself dials nobody). */
    tnode_start(&loop, &rogue, 2, "rogue2", 0, 1024 * 1024);
    assert_int_equal(node_transport_add_peer(a.t, 2, "127.0.0.1", rogue.port), 0);
    assert_int_equal(node_transport_send(a.t, 2, 7, "hi", 2), 0);
    w.before = stats_of(&a).handshake_failures;
    run_until(&loop, stat_grew, &w);
    assert_int_equal(a.received + rogue.received, 0);
    assert_int_equal(a.ups + rogue.ups, 0);
    tnode_stop(&loop, &a);
    tnode_stop(&loop, &rogue);
    loop_finish(&loop);
}

/* node3's certificate (CN 3) used by a node that says it is node 4: refused at hello. */
static void test_hello_cn_mismatch_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode a, liar;
    tnode_start(&loop, &a, 1, "node1", 0, 1024 * 1024);
    tnode_start(&loop, &liar, 4, "node3", 0, 1024 * 1024);
    assert_int_equal(node_transport_add_peer(liar.t, 1, "127.0.0.1", a.port), 0);
    assert_int_equal(node_transport_send(liar.t, 1, 7, "hi", 2), 0);
    want_stat w = {&a, 1, 0};
    run_until(&loop, stat_grew, &w);
    assert_int_equal(a.received + liar.ups, 0);
    tnode_stop(&loop, &liar);

    /* The other direction: a dials "node 4" and meets a certificate for node 3. */
    tnode_start(&loop, &liar, 4, "node3", 0, 1024 * 1024);
    assert_int_equal(node_transport_add_peer(a.t, 4, "127.0.0.1", liar.port), 0);
    assert_int_equal(node_transport_send(a.t, 4, 7, "hi", 2), 0);
    w.before = stats_of(&a).hello_rejects;
    run_until(&loop, stat_grew, &w);
    assert_int_equal(a.received + liar.received, 0);
    assert_int_equal(a.ups, 0);
    tnode_stop(&loop, &a);
    tnode_stop(&loop, &liar);
    loop_finish(&loop);
}

/* Writes one damaged frame after a good one; the receiver drops the connection. */
static void corrupt_case(int kind)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode a, b;
    tnode_start(&loop, &a, 1, "node1", 0, 1024 * 1024);
    tnode_start(&loop, &b, 2, "node2", 0, 1024 * 1024);
    assert_int_equal(node_transport_add_peer(a.t, 2, "127.0.0.1", b.port), 0);
    static uint8_t buf[8192];
    send_message(&loop, &a, 2, 0, buf); /* message 0 is empty */
    want_count wb = {&b, 1};
    run_until(&loop, received_at_least, &wb);
    run_until(&loop, is_up, &a);

    uint8_t frame[16 + 8] = {0};
    const uint8_t payload[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint32_t magic = kind == 0 ? 0xDEADBEEFu : 0x4E524554u;
    uint32_t len = kind == 1 ? PAYLOAD_MAX + 1 : 8;
    uint32_t crc = node_raftlog_crc32c(0, payload, 8) ^ (kind == 2 ? 1u : 0u);
    for (int i = 0; i < 4; i++) {
        frame[i] = (uint8_t)(magic >> (8 * i));
        frame[8 + i] = (uint8_t)(len >> (8 * i));
        frame[12 + i] = (uint8_t)(crc >> (8 * i));
    }
    frame[4] = kind == 3 ? 2 : 1; /* version */
    frame[6] = kind == 4 ? 0 : 5; /* type: 0 is a second hello */
    memcpy(frame + 16, payload, 8);
    assert_int_equal(node_transport__send_raw(a.t, 2, frame, sizeof frame), 0);
    want_stat wf = {&b, 2, 0};
    run_until(&loop, stat_nonzero, &wf);
    run_until(&loop, is_down, &a); /* b closed the connection */
    assert_int_equal(b.received, 1);
    /* a redials and the next message arrives intact. */
    send_message(&loop, &a, 2, 1, buf);
    want_count wb2 = {&b, 2};
    run_until(&loop, received_at_least, &wb2);
    assert_true(b.order_ok);
    assert_int_equal(stats_of(&b).frame_errors, 1);
    tnode_stop(&loop, &a);
    tnode_stop(&loop, &b);
    loop_finish(&loop);
}

static void test_corrupt_frames_close(void **state)
{
    (void)state;
    corrupt_case(0); /* bad magic */
    corrupt_case(1); /* over frame_bytes_max */
    corrupt_case(2); /* CRC mismatch */
    corrupt_case(3); /* unknown version */
    corrupt_case(4); /* a second hello */
}

/* With nothing listening and the loop not run, the outbox fills and says TERN_EAGAIN. */
static void test_outbox_bound(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode a, b;
    tnode_start(&loop, &a, 1, "node1", 0, 64 * 1024);
    tnode_start(&loop, &b, 2, "node2", 0, 64 * 1024);
    assert_int_equal(node_transport_add_peer(a.t, 2, "127.0.0.1", b.port), 0);
    uint8_t payload[1000] = {0};
    int rc = 0;
    size_t sent = 0;
    while ((rc = node_transport_send(a.t, 2, 1, payload, sizeof payload)) == 0)
        sent++;
    assert_int_equal(rc, TERN_EAGAIN);
    assert_int_equal(sent, (64 * 1024) / (16 + sizeof payload));
    /* The queue drains once the loop runs. */
    want_count wb = {&b, sent};
    run_until(&loop, received_at_least, &wb);
    assert_int_equal(node_transport_send(a.t, 2, 1, payload, sizeof payload), 0);
    tnode_stop(&loop, &a);
    tnode_stop(&loop, &b);
    loop_finish(&loop);
}

/* A peer that goes away and comes back on the same port is redialed; queued frames flow. */
static void test_redial_after_restart(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode a, b;
    tnode_start(&loop, &a, 1, "node1", 0, 4 * 1024 * 1024);
    tnode_start(&loop, &b, 2, "node2", 0, 4 * 1024 * 1024);
    int port = b.port;
    assert_int_equal(node_transport_add_peer(a.t, 2, "127.0.0.1", port), 0);
    uint8_t *buf = malloc(PAYLOAD_MAX);
    assert_non_null(buf);
    for (size_t i = 0; i < 10; i++)
        send_message(&loop, &a, 2, i, buf);
    want_count wb = {&b, 10};
    run_until(&loop, received_at_least, &wb);

    tnode_stop(&loop, &b);
    run_until(&loop, is_down, &a);
    /* While b is down, frames queue (bounded) and redials fail with backoff. */
    for (size_t i = 0; i < 5; i++)
        send_message(&loop, &a, 2, i, buf);
    tnode_start(&loop, &b, 2, "node2", port, 4 * 1024 * 1024);
    for (size_t i = 5; i < 20; i++)
        send_message(&loop, &a, 2, i, buf);
    want_count wb2 = {&b, 20};
    run_until(&loop, received_at_least, &wb2);
    assert_true(b.order_ok);
    assert_int_equal(a.ups, 2);
    free(buf);
    tnode_stop(&loop, &a);
    tnode_stop(&loop, &b);
    loop_finish(&loop);
}

typedef struct {
    uv_tcp_t tcp;
    uv_connect_t req;
    int eof;
    char buf[16384];
    SSL_CTX *ssl_ctx; /* set: speak TLS without a client certificate */
    SSL *ssl;
    BIO *rbio, *wbio;
} raw_client;

typedef struct {
    uv_write_t req;
    char data[];
} raw_write;

static void raw_write_done(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

/* Drives the test's TLS client: handshake, then drain whatever it wants to send. */
static void raw_tls_drive(raw_client *r)
{
    if (SSL_do_handshake(r->ssl) != 1) ERR_clear_error();
    char sink[256];
    while (SSL_read(r->ssl, sink, sizeof sink) > 0) {
    }
    ERR_clear_error();
    size_t pending = BIO_ctrl_pending(r->wbio);
    if (pending == 0 || r->eof) return;
    raw_write *w = malloc(sizeof *w + pending);
    assert_non_null(w);
    assert_int_equal(BIO_read(r->wbio, w->data, (int)pending), (int)pending);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)pending);
    if (uv_write(&w->req, (uv_stream_t *)&r->tcp, &buf, 1, raw_write_done) < 0) free(w);
}

static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    raw_client *r = h->data;
    (void)suggested;
    *buf = uv_buf_init(r->buf, sizeof r->buf);
}

static void raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    raw_client *r = s->data;
    if (nread < 0) r->eof = 1;
    if (nread <= 0 || !r->ssl) return;
    BIO_write(r->rbio, buf->base, (int)nread);
    raw_tls_drive(r);
}

static void raw_connected(uv_connect_t *req, int status)
{
    raw_client *r = req->data;
    assert_int_equal(status, 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read), 0);
    if (!r->ssl_ctx) return;
    r->ssl = SSL_new(r->ssl_ctx);
    r->rbio = BIO_new(BIO_s_mem());
    r->wbio = BIO_new(BIO_s_mem());
    assert_true(r->ssl && r->rbio && r->wbio);
    SSL_set_bio(r->ssl, r->rbio, r->wbio);
    SSL_set_connect_state(r->ssl);
    raw_tls_drive(r);
}

static int raw_eof(void *arg)
{
    return ((raw_client *)arg)->eof;
}

/* A client that connects and never speaks TLS is dropped after hello_timeout_ms. */
static void test_silent_client_dropped(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode a;
    hello_timeout_ms = 200;
    tnode_start(&loop, &a, 1, "node1", 0, 1024 * 1024);
    hello_timeout_ms = 5000;
    raw_client r = {.eof = 0};
    uv_tcp_init(&loop, &r.tcp);
    r.tcp.data = &r;
    r.req.data = &r;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", a.port, &addr);
    assert_int_equal(uv_tcp_connect(&r.req, &r.tcp, (struct sockaddr *)&addr, raw_connected), 0);
    run_until(&loop, raw_eof, &r);
    uv_close((uv_handle_t *)&r.tcp, NULL);
    tnode_stop(&loop, &a);
    loop_finish(&loop);
}

static void on_on_closed_noop(void *ctx)
{
    (void)ctx;
}

/* Bad certificate paths and a taken port fail cleanly (nothing leaks, the loop closes). */
static void test_create_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode a;
    tnode_start(&loop, &a, 1, "node1", 0, 1024 * 1024);
    char ca[128], crt[128], key[128], other_key[128], err[256];
    pki_path(ca, sizeof ca, "ca", "crt");
    pki_path(crt, sizeof crt, "node1", "crt");
    pki_path(key, sizeof key, "node1", "key");
    pki_path(other_key, sizeof other_key, "node2", "key");
    node_transport_config cfg = {.listen_host = "127.0.0.1",
                                 .listen_port = a.port,
                                 .node_id = 1,
                                 .ca_path = ca,
                                 .cert_path = crt,
                                 .key_path = key,
                                 .frame_bytes_max = 1024,
                                 .outbox_bytes_max = 4096};
    node_transport *t = NULL;
    assert_int_equal(node_transport_create(&loop, &cfg, NULL, &t, err, sizeof err), TERN_EIO);
    assert_non_null(strstr(err, "listen"));
    cfg.listen_port = 0;
    cfg.key_path = other_key; /* key does not match the certificate */
    assert_int_equal(node_transport_create(&loop, &cfg, NULL, &t, err, sizeof err), TERN_EINVAL);
    cfg.key_path = key;
    cfg.ca_path = "/nonexistent/ca.crt";
    assert_int_equal(node_transport_create(&loop, &cfg, NULL, &t, err, sizeof err), TERN_EINVAL);
    cfg.ca_path = ca;
    cfg.frame_bytes_max = 0;
    assert_int_equal(node_transport_create(&loop, &cfg, NULL, &t, err, sizeof err), TERN_EINVAL);
    assert_null(t);
    tnode_stop(&loop, &a);
    loop_finish(&loop);
}

/* A transport closed from inside its own on_message stops cleanly. */
static void test_close_from_callback(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode a, b;
    tnode_start(&loop, &a, 1, "node1", 0, 1024 * 1024);
    tnode_start(&loop, &b, 2, "node2", 0, 1024 * 1024);
    b.close_on_message = 1;
    assert_int_equal(node_transport_add_peer(a.t, 2, "127.0.0.1", b.port), 0);
    uint8_t buf[1];
    send_message(&loop, &a, 2, 0, buf);
    send_message(&loop, &a, 2, 50, buf); /* also empty: may arrive in the same read */
    run_until(&loop, is_closed, &b);
    assert_int_equal(b.received, 1); /* nothing after close */
    node_transport_close(a.t, on_on_closed_noop, NULL);
    loop_finish(&loop);
}

typedef struct {
    raw_client *r;
    tnode *n;
} refused_wait;

static int raw_refused(void *arg)
{
    refused_wait *w = arg;
    return w->r->eof && stats_of(w->n).handshake_failures > 0;
}

/* A TLS client that trusts the cluster CA but shows no certificate is refused. */
static void test_client_without_certificate_refused(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    tnode a;
    tnode_start(&loop, &a, 1, "node1", 0, 1024 * 1024);
    char ca[128];
    pki_path(ca, sizeof ca, "ca", "crt");
    raw_client r = {.eof = 0};
    r.ssl_ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(r.ssl_ctx);
    assert_int_equal(SSL_CTX_load_verify_locations(r.ssl_ctx, ca, NULL), 1);
    SSL_CTX_set_verify(r.ssl_ctx, SSL_VERIFY_PEER, NULL);
    uv_tcp_init(&loop, &r.tcp);
    r.tcp.data = &r;
    r.req.data = &r;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", a.port, &addr);
    assert_int_equal(uv_tcp_connect(&r.req, &r.tcp, (struct sockaddr *)&addr, raw_connected), 0);
    refused_wait w = {&r, &a};
    run_until(&loop, raw_refused, &w);
    assert_int_equal(a.received, 0);
    uv_close((uv_handle_t *)&r.tcp, NULL);
    tnode_stop(&loop, &a);
    loop_finish(&loop);
    SSL_free(r.ssl);
    SSL_CTX_free(r.ssl_ctx);
}

int main(void)
{
    /* As in ternd: a write to a socket the peer reset must fail with EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    node_log_set_level(NODE_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exchange_both_ways),
        cmocka_unit_test(test_rogue_ca_refused),
        cmocka_unit_test(test_hello_cn_mismatch_refused),
        cmocka_unit_test(test_corrupt_frames_close),
        cmocka_unit_test(test_outbox_bound),
        cmocka_unit_test(test_redial_after_restart),
        cmocka_unit_test(test_silent_client_dropped),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_close_from_callback),
        cmocka_unit_test(test_client_without_certificate_refused),
    };
    return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
