/* Peer transport: TCP on libuv, mutual TLS through OpenSSL memory BIOs, CRC32C-checked frames. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "node.h"
#include "raftlog.h"
#include "transport.h"

/*
 * DESIGN NOTES
 *
 * One libuv loop thread drives everything; OpenSSL never touches a socket. Bytes read from
 * TCP are written into the SSL's read memory BIO, and whatever TLS wants to send is drained
 * from its write memory BIO into a uv_write. A connection moves through:
 *
 *   DIALING --connect--> HANDSHAKING --TLS done, dialer sends its hello--> HELLO
 *   accepted ----------> HANDSHAKING --TLS done--> HELLO
 *   HELLO --peer's hello matches its certificate CN (and the dialed id)--> READY
 *         (the accepting side sends its own hello at this step, only to a hello it accepted)
 *   any state --error, EOF, bad frame, bad hello, close()--> CLOSING --uv close cb--> freed
 *
 * Only READY connections deliver frames other than hello. A connection in CLOSING never
 * calls back again; its memory lives until libuv's close callback, because pending write and
 * connect requests are cancelled (and call back) before that.
 *
 * Bounds: a peer's outbox holds at most outbox_bytes_max of frames (send says TERN_EAGAIN
 * beyond it); ciphertext handed to uv_write per connection is at most
 * write_inflight_bytes_max plus one frame, because the outbox is only pumped into TLS below
 * that mark; the receive buffer holds at most one frame (header + frame_bytes_max) plus one
 * TLS record, because complete frames are consumed as soon as they are buffered.
 *
 * Deadline: every connection must reach READY within hello_timeout_ms of being created
 * (connect, TLS and hello together), so a peer that connects and stays silent, or a dial into
 * a black hole, cannot hold a connection forever.
 *
 * Redial: a peer that has been sent to is kept connected. When its dialed connection closes,
 * a uv timer redials after a jittered delay (uniform in [backoff/2, backoff]) and backoff
 * doubles up to redial_ms_max; it resets when a connection reaches READY.
 */

#define FRAME_MAGIC              0x4E524554u
#define FRAME_VERSION            1
#define FRAME_HEADER_BYTES       16
#define FRAME_TYPE_HELLO         0
#define TLS_RECORD_BYTES         16384
#define WRITE_INFLIGHT_BYTES_MAX (256 * 1024)

enum conn_state { CONN_DIALING, CONN_HANDSHAKING, CONN_HELLO, CONN_READY, CONN_CLOSING };

typedef struct tp_frame {
    struct tp_frame *next;
    size_t len; /* header + payload */
    uint8_t data[];
} tp_frame;

typedef struct tp_peer tp_peer;

typedef struct tp_conn {
    node_transport *t;
    tp_peer *peer;               /* the peer we dialed, NULL for accepted connections */
    struct tp_conn *next, *prev; /* t->conns */
    uv_tcp_t tcp;
    uv_timer_t hello_timer; /* connect + TLS + hello must finish within hello_timeout_ms */
    int handles_open;       /* tcp and hello_timer: freed when both closed */
    uv_connect_t connect_req;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    enum conn_state state;
    uint64_t remote_id;
    uint8_t *rbuf;
    size_t rbuf_len, rbuf_cap;
    size_t write_inflight_bytes;
} tp_conn;

struct tp_peer {
    tp_peer *next;
    node_transport *t;
    uint64_t id;
    struct sockaddr_storage addr;
    char addr_text[64];
    tp_conn *out; /* our dialed connection, if any */
    int wanted;   /* sent to at least once: keep it connected */
    int up;
    uv_timer_t redial_timer;
    uint32_t backoff_ms;
    tp_frame *outbox_head, *outbox_tail;
    size_t outbox_bytes;
};

struct node_transport {
    uv_loop_t *loop;
    node_transport_config cfg;
    node_transport_callbacks cb;
    SSL_CTX *ssl_ctx;
    uv_tcp_t listener;
    tp_peer *peers;
    tp_conn *conns;
    size_t open_handles;
    int closing;
    uint64_t rng;
    node_transport_stats stats;
    char read_slab[64 * 1024];
    void (*on_closed)(void *ctx);
    void *on_closed_ctx;
};

static void outbox_pump(tp_conn *c);
static void redial_cb(uv_timer_t *timer);

/* ---------------- small helpers ---------------- */

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void frame_header(uint8_t *h, uint16_t type, const void *bytes, size_t len)
{
    put_le32(h, FRAME_MAGIC);
    put_le16(h + 4, FRAME_VERSION);
    put_le16(h + 6, type);
    put_le32(h + 8, (uint32_t)len);
    put_le32(h + 12, node_raftlog_crc32c(0, bytes, len));
}

static uint32_t rng_next(node_transport *t)
{
    /* xorshift64: only spreads redials of many nodes apart, needs no quality. */
    t->rng ^= t->rng << 13;
    t->rng ^= t->rng >> 7;
    t->rng ^= t->rng << 17;
    return (uint32_t)(t->rng >> 32);
}

static const char *ssl_error_text(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        tern_errmsg(buf, len, "no OpenSSL error queued");
    } else {
        ERR_error_string_n(e, buf, len);
    }
    ERR_clear_error();
    return buf;
}

/* Names the far end for log lines: "node 3" once known, else its address. */
static void conn_name(tp_conn *c, char *buf, size_t len)
{
    if (c->peer) {
        tern_errmsg(buf, len, "node %" PRIu64 " (%s, dialed)", c->peer->id, c->peer->addr_text);
    } else if (c->remote_id) {
        tern_errmsg(buf, len, "node %" PRIu64 " (accepted)", c->remote_id);
    } else {
        struct sockaddr_storage ss;
        int ss_len = sizeof ss;
        char host[INET6_ADDRSTRLEN] = "?";
        if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &ss_len) == 0)
            uv_ip_name((struct sockaddr *)&ss, host, sizeof host);
        tern_errmsg(buf, len, "unidentified peer at %s (accepted)", host);
    }
}

/* ---------------- teardown ---------------- */

static void transport_free_if_done(node_transport *t)
{
    if (!t->closing || t->open_handles > 0) return;
    while (t->peers) {
        tp_peer *p = t->peers;
        t->peers = p->next;
        while (p->outbox_head) {
            tp_frame *f = p->outbox_head;
            p->outbox_head = f->next;
            free(f);
        }
        free(p);
    }
    SSL_CTX_free(t->ssl_ctx);
    void (*on_closed)(void *) = t->on_closed;
    void *ctx = t->on_closed_ctx;
    free(t);
    if (on_closed) on_closed(ctx);
}

static void handle_closed(uv_handle_t *h)
{
    node_transport *t = h->data;
    assert(t->open_handles > 0);
    t->open_handles--;
    transport_free_if_done(t);
}

static void peer_timer_closed(uv_handle_t *h)
{
    tp_peer *p = h->data;
    node_transport *t = p->t;
    assert(t->open_handles > 0);
    t->open_handles--;
    transport_free_if_done(t);
}

static void conn_closed(uv_handle_t *h)
{
    tp_conn *c = h->data;
    node_transport *t = c->t;
    assert(t->open_handles > 0);
    t->open_handles--;
    if (--c->handles_open > 0) return;
    if (c->prev)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    SSL_free(c->ssl);
    free(c->rbuf);
    free(c);
    transport_free_if_done(t);
}

static void peer_schedule_redial(tp_peer *p)
{
    node_transport *t = p->t;
    if (t->closing || !p->wanted || p->out) return;
    uint32_t backoff = p->backoff_ms;
    uint32_t delay = backoff / 2 + rng_next(t) % (backoff / 2 + 1);
    p->backoff_ms = TERN_MIN(backoff * 2, t->cfg.redial_ms_max);
    uv_timer_start(&p->redial_timer, redial_cb, delay, 0);
}

/* Closes c (once); reason NULL means an orderly close that is not worth a warning. */
static void conn_close(tp_conn *c, const char *reason)
{
    if (c->state == CONN_CLOSING) return;
    if (reason) {
        char name[160];
        conn_name(c, name, sizeof name);
        node_log(NODE_LOG_WARN, "transport", "%s: closing connection: %s", name, reason);
    }
    c->state = CONN_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
    uv_close((uv_handle_t *)&c->hello_timer, conn_closed);
    tp_peer *p = c->peer;
    if (p && p->out == c) {
        p->out = NULL;
        int was_up = p->up;
        p->up = 0;
        peer_schedule_redial(p);
        if (was_up && !c->t->closing && c->t->cb.on_peer_state)
            c->t->cb.on_peer_state(c->t->cb.ctx, p->id, 0);
    }
}

/* ---------------- writing ---------------- */

typedef struct {
    uv_write_t req;
    tp_conn *c;
    size_t len;
    uint8_t data[];
} tp_write;

static void write_done(uv_write_t *req, int status)
{
    tp_write *w = (tp_write *)req;
    tp_conn *c = w->c;
    c->write_inflight_bytes -= w->len;
    free(w);
    if (c->state == CONN_CLOSING) return;
    if (status < 0) {
        char reason[96];
        tern_errmsg(reason, sizeof reason, "write failed: %s", uv_strerror(status));
        conn_close(c, reason);
        return;
    }
    if (c->state == CONN_READY && c->peer) outbox_pump(c);
}

/* Hands whatever TLS produced to the socket. Returns 0 or -1 after closing c. */
static int conn_flush(tp_conn *c)
{
    size_t pending = BIO_ctrl_pending(c->wbio);
    if (pending == 0) return 0;
    tp_write *w = malloc(sizeof *w + pending);
    if (!w) {
        conn_close(c, "out of memory");
        return -1;
    }
    int n = BIO_read(c->wbio, w->data, (int)pending);
    assert(n == (int)pending);
    w->c = c;
    w->len = pending;
    uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)pending);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, write_done);
    if (rc < 0) {
        free(w);
        conn_close(c, uv_strerror(rc));
        return -1;
    }
    c->write_inflight_bytes += pending;
    return 0;
}

/* Encrypts bytes into the TLS stream and flushes. Returns 0 or -1 after closing c. */
static int conn_write_plain(tp_conn *c, const void *bytes, size_t len)
{
    if (len > 0) {
        /* A memory BIO never blocks, so SSL_write takes everything at once. */
        ERR_clear_error();
        int n = SSL_write(c->ssl, bytes, (int)len);
        if (n != (int)len) {
            char err[160];
            conn_close(c, ssl_error_text(err, sizeof err));
            return -1;
        }
    }
    return conn_flush(c);
}

static void outbox_pump(tp_conn *c)
{
    tp_peer *p = c->peer;
    while (p->outbox_head && c->state == CONN_READY &&
           c->write_inflight_bytes < WRITE_INFLIGHT_BYTES_MAX) {
        tp_frame *f = p->outbox_head;
        p->outbox_head = f->next;
        if (!p->outbox_head) p->outbox_tail = NULL;
        p->outbox_bytes -= f->len;
        int rc = conn_write_plain(c, f->data, f->len);
        free(f);
        if (rc < 0) return;
        c->t->stats.frames_sent++;
    }
}

/* ---------------- reading ---------------- */

/* Sends our hello. Returns 0 or -1 after closing c. */
static int conn_send_hello(tp_conn *c)
{
    uint8_t hello[FRAME_HEADER_BYTES + 8];
    uint8_t *id = hello + FRAME_HEADER_BYTES;
    for (int i = 0; i < 8; i++)
        id[i] = (uint8_t)(c->t->cfg.node_id >> (8 * i));
    frame_header(hello, FRAME_TYPE_HELLO, id, 8);
    return conn_write_plain(c, hello, sizeof hello);
}

/* Checks the peer's hello against its certificate; returns NULL or the reason to refuse. */
static const char *hello_check(tp_conn *c, uint64_t id, char *reason, size_t reason_len)
{
    X509 *cert = SSL_get_peer_certificate(c->ssl);
    if (!cert) return "no peer certificate";
    char cn[64] = "";
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
    X509_free(cert);
    /* Exact text match with the canonical decimal id: no signs, spaces or leading zeros. */
    char want[24];
    snprintf(want, sizeof want, "%" PRIu64, id);
    if (n <= 0 || strcmp(cn, want) != 0) {
        tern_errmsg(reason, reason_len, "hello names node %" PRIu64 " but certificate CN is \"%s\"",
                    id, cn);
        return reason;
    }
    if (c->peer && id != c->peer->id) {
        tern_errmsg(reason, reason_len, "dialed node %" PRIu64 " but it is node %" PRIu64,
                    c->peer->id, id);
        return reason;
    }
    return NULL;
}

static void conn_on_hello(tp_conn *c, const uint8_t *payload, size_t len)
{
    node_transport *t = c->t;
    char reason[160];
    assert(c->state == CONN_HELLO && len == 8); /* checked with the header */
    uint64_t id = get_le64(payload);
    if (hello_check(c, id, reason, sizeof reason)) {
        t->stats.hello_rejects++;
        conn_close(c, reason);
        return;
    }
    c->remote_id = id;
    uv_timer_stop(&c->hello_timer);
    /* The accepting side answers only a hello it accepted, so a dialer that reaches READY
     * knows the peer accepted it too (with TLS 1.3 the client finishes its handshake before
     * the server has checked the client certificate). */
    if (!c->peer && conn_send_hello(c) < 0) return;
    c->state = CONN_READY;
    t->stats.connections_ready++;
    char name[160];
    conn_name(c, name, sizeof name);
    node_log(NODE_LOG_DEBUG, "transport", "%s: ready", name);
    tp_peer *p = c->peer;
    if (!p) return;
    p->backoff_ms = t->cfg.redial_ms_min;
    p->up = 1;
    if (t->cb.on_peer_state) t->cb.on_peer_state(t->cb.ctx, p->id, 1);
    if (c->state == CONN_READY) outbox_pump(c);
}

/* Consumes complete frames from rbuf. Returns 0, or -1 once c is closing. */
static int conn_parse_frames(tp_conn *c)
{
    node_transport *t = c->t;
    size_t at = 0;
    char reason[128];
    while (c->rbuf_len - at >= FRAME_HEADER_BYTES) {
        const uint8_t *h = c->rbuf + at;
        uint32_t magic = get_le32(h);
        uint16_t version = (uint16_t)(h[4] | h[5] << 8);
        uint16_t type = (uint16_t)(h[6] | h[7] << 8);
        uint32_t len = get_le32(h + 8);
        reason[0] = '\0';
        if (magic != FRAME_MAGIC) {
            tern_errmsg(reason, sizeof reason, "bad frame magic 0x%08" PRIx32, magic);
        } else if (version != FRAME_VERSION) {
            tern_errmsg(reason, sizeof reason, "unsupported frame version %u", version);
        } else if (len > t->cfg.frame_bytes_max) {
            tern_errmsg(reason, sizeof reason,
                        "frame of %" PRIu32 " bytes exceeds frame_bytes_max %zu", len,
                        t->cfg.frame_bytes_max);
        }
        /* Checked on the header alone, so nothing is buffered for a frame that is refused. */
        if (reason[0] == '\0' && (type == FRAME_TYPE_HELLO) != (c->state == CONN_HELLO))
            tern_errmsg(reason, sizeof reason, "frame of type %u %s", type,
                        type == FRAME_TYPE_HELLO ? "after hello" : "before hello");
        if (reason[0] == '\0' && type == FRAME_TYPE_HELLO && len != 8)
            tern_errmsg(reason, sizeof reason, "hello of %" PRIu32 " bytes", len);
        if (reason[0] == '\0' && c->rbuf_len - at < FRAME_HEADER_BYTES + (size_t)len) break;
        const uint8_t *payload = h + FRAME_HEADER_BYTES;
        if (reason[0] == '\0' && node_raftlog_crc32c(0, payload, len) != get_le32(h + 12))
            tern_errmsg(reason, sizeof reason, "frame CRC32C mismatch (type %u, %" PRIu32 " bytes)",
                        type, len);
        if (reason[0] != '\0') {
            t->stats.frame_errors++;
            conn_close(c, reason);
            return -1;
        }
        at += FRAME_HEADER_BYTES + (size_t)len;
        if (type == FRAME_TYPE_HELLO) {
            conn_on_hello(c, payload, len);
        } else {
            t->stats.frames_received++;
            if (t->cb.on_message) t->cb.on_message(t->cb.ctx, c->remote_id, type, payload, len);
        }
        /* A callback may have closed this connection or the whole transport. */
        if (c->state == CONN_CLOSING) return -1;
    }
    if (at == 0) return 0; /* a partial frame stays put: no copy per TLS record */
    c->rbuf_len -= at;
    if (c->rbuf_len > 0) {
        memmove(c->rbuf, c->rbuf + at, c->rbuf_len);
    } else if (c->rbuf_cap > 4 * TLS_RECORD_BYTES) {
        /* Do not keep a large frame's buffer for the life of an idle connection. */
        free(c->rbuf);
        c->rbuf = NULL;
        c->rbuf_cap = 0;
    }
    return 0;
}

/* Makes room for one more TLS record in rbuf (bounded: see the design note). */
static int conn_rbuf_reserve(tp_conn *c)
{
    if (c->rbuf_cap - c->rbuf_len >= TLS_RECORD_BYTES) return 0;
    size_t cap = TERN_MAX(c->rbuf_cap * 2, c->rbuf_len + TLS_RECORD_BYTES);
    size_t bound = FRAME_HEADER_BYTES + c->t->cfg.frame_bytes_max + TLS_RECORD_BYTES;
    cap = TERN_MIN(cap, bound);
    if (cap - c->rbuf_len < TLS_RECORD_BYTES) cap = c->rbuf_len + TLS_RECORD_BYTES;
    uint8_t *b = realloc(c->rbuf, cap);
    if (!b) return -1;
    c->rbuf = b;
    c->rbuf_cap = cap;
    return 0;
}

static void conn_read_plain(tp_conn *c)
{
    for (;;) {
        if (conn_rbuf_reserve(c) < 0) {
            conn_close(c, "out of memory");
            return;
        }
        int n = SSL_read(c->ssl, c->rbuf + c->rbuf_len, TLS_RECORD_BYTES);
        if (n <= 0) {
            int err = SSL_get_error(c->ssl, n);
            if (err == SSL_ERROR_WANT_READ) break;
            char text[160];
            conn_close(c, err == SSL_ERROR_ZERO_RETURN ? "peer closed TLS"
                                                       : ssl_error_text(text, sizeof text));
            return;
        }
        c->rbuf_len += (size_t)n;
        if (conn_parse_frames(c) < 0) return;
    }
    conn_flush(c); /* SSL_read may answer (key updates, alerts) */
}

/* Advances the handshake and reads frames with whatever ciphertext has arrived. */
static void conn_drive(tp_conn *c)
{
    /* SSL_get_error is only reliable with an empty error queue (it is per thread and shared
     * with every other OpenSSL user on the loop thread). */
    ERR_clear_error();
    if (c->state == CONN_HANDSHAKING) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            int err = SSL_get_error(c->ssl, r);
            if (err == SSL_ERROR_WANT_READ) {
                conn_flush(c);
                return;
            }
            char text[160], reason[320];
            long verify = SSL_get_verify_result(c->ssl);
            tern_errmsg(reason, sizeof reason, "TLS handshake failed: %s (verify: %s)",
                        ssl_error_text(text, sizeof text), X509_verify_cert_error_string(verify));
            c->t->stats.handshake_failures++;
            conn_flush(c); /* let the alert reach the peer if the socket still takes it */
            conn_close(c, reason);
            return;
        }
        if (conn_flush(c) < 0) return;
        c->state = CONN_HELLO;
        if (c->peer && conn_send_hello(c) < 0) return; /* the dialer speaks first */
    }
    if (c->state == CONN_HELLO || c->state == CONN_READY) conn_read_plain(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    /* BIO_write copies the bytes out at once, so one slab per transport serves every read. */
    tp_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->t->read_slab, sizeof c->t->read_slab);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    tp_conn *c = s->data;
    if (c->state == CONN_CLOSING) return;
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? (c->state == CONN_READY ? NULL : "EOF before ready")
                                      : uv_strerror((int)nread));
        return;
    }
    if (nread == 0) return;
    if (BIO_write(c->rbio, buf->base, (int)nread) != (int)nread) {
        conn_close(c, "BIO_write failed");
        return;
    }
    conn_drive(c);
}

/* ---------------- connections ---------------- */

static void hello_timeout_cb(uv_timer_t *timer)
{
    tp_conn *c = timer->data;
    char reason[96];
    tern_errmsg(reason, sizeof reason, "not ready within hello_timeout_ms (%" PRIu32 " ms)",
                c->t->cfg.hello_timeout_ms);
    conn_close(c, reason);
}

static tp_conn *conn_new(node_transport *t, tp_peer *peer)
{
    tp_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->t = t;
    c->peer = peer;
    uv_tcp_init(t->loop, &c->tcp);
    c->tcp.data = c;
    uv_timer_init(t->loop, &c->hello_timer);
    c->hello_timer.data = c;
    uv_timer_start(&c->hello_timer, hello_timeout_cb, t->cfg.hello_timeout_ms, 0);
    c->handles_open = 2;
    t->open_handles += 2;
    c->next = t->conns;
    if (t->conns) t->conns->prev = c;
    t->conns = c;
    c->state = CONN_DIALING;
    return c;
}

/* Creates the SSL object and starts reading. Returns 0 or -1 after closing c. */
static int conn_start_tls(tp_conn *c, int is_server)
{
    c->ssl = SSL_new(c->t->ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) {
        if (!c->ssl) {
            BIO_free(c->rbio);
            BIO_free(c->wbio);
        } else {
            SSL_set_bio(c->ssl, c->rbio, c->wbio); /* so SSL_free frees them */
        }
        conn_close(c, "out of memory");
        return -1;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    if (is_server)
        SSL_set_accept_state(c->ssl);
    else
        SSL_set_connect_state(c->ssl);
    c->state = CONN_HANDSHAKING;
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    if (rc < 0) {
        conn_close(c, uv_strerror(rc));
        return -1;
    }
    conn_drive(c); /* the client speaks first */
    return c->state == CONN_CLOSING ? -1 : 0;
}

static void connect_cb(uv_connect_t *req, int status)
{
    tp_conn *c = req->data;
    if (c->state == CONN_CLOSING) return;
    if (status < 0) {
        char name[160];
        conn_name(c, name, sizeof name);
        node_log(NODE_LOG_DEBUG, "transport", "%s: connect failed: %s", name, uv_strerror(status));
        conn_close(c, NULL);
        return;
    }
    conn_start_tls(c, 0);
}

static void peer_dial(tp_peer *p)
{
    node_transport *t = p->t;
    assert(!p->out && !t->closing);
    tp_conn *c = conn_new(t, p);
    if (!c) {
        peer_schedule_redial(p);
        return;
    }
    p->out = c;
    c->connect_req.data = c;
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, (struct sockaddr *)&p->addr, connect_cb);
    if (rc < 0) conn_close(c, uv_strerror(rc));
}

static void redial_cb(uv_timer_t *timer)
{
    tp_peer *p = timer->data;
    if (!p->out && !p->t->closing) peer_dial(p);
}

static void accept_cb(uv_stream_t *server, int status)
{
    node_transport *t = server->data;
    if (status < 0 || t->closing) return;
    tp_conn *c = conn_new(t, NULL);
    if (!c) return;
    c->state = CONN_HANDSHAKING;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c, NULL);
        return;
    }
    conn_start_tls(c, 1);
}

/* ---------------- public API ---------------- */

static int parse_addr(const char *host, int port, struct sockaddr_storage *out)
{
    if (port < 0 || port > 65535) return TERN_EINVAL;
    memset(out, 0, sizeof *out);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)out) == 0) return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)out) == 0) return 0;
    return TERN_EINVAL;
}

static SSL_CTX *tls_context(const node_transport_config *cfg, char *errmsg, size_t errmsg_len)
{
    char text[200];
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx) goto err;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* The cluster CA is the only trust anchor: no system store. */
    if (SSL_CTX_load_verify_locations(ctx, cfg->ca_path, NULL) != 1) goto err_ctx;
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_path) != 1) goto err_ctx;
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_path, SSL_FILETYPE_PEM) != 1) goto err_ctx;
    if (SSL_CTX_check_private_key(ctx) != 1) goto err_ctx;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_num_tickets(ctx, 0); /* no resumption: every connection proves its cert */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    return ctx;
err_ctx:
    SSL_CTX_free(ctx);
err:
    tern_errmsg(errmsg, errmsg_len, "TLS setup (ca %s, cert %s, key %s): %s", cfg->ca_path,
                cfg->cert_path, cfg->key_path, ssl_error_text(text, sizeof text));
    return NULL;
}

static void create_failed_closed(uv_handle_t *h)
{
    node_transport *t = h->data;
    SSL_CTX_free(t->ssl_ctx);
    free(t);
}

int node_transport_create(uv_loop_t *loop, const node_transport_config *cfg,
                          const node_transport_callbacks *callbacks, node_transport **out,
                          char *errmsg, size_t errmsg_len)
{
    struct sockaddr_storage addr;
    if (!cfg->listen_host || parse_addr(cfg->listen_host, cfg->listen_port, &addr) < 0 ||
        cfg->node_id == 0 || cfg->frame_bytes_max == 0 ||
        cfg->frame_bytes_max > NODE_TRANSPORT_FRAME_BYTES_LIMIT ||
        cfg->outbox_bytes_max < FRAME_HEADER_BYTES || !cfg->ca_path || !cfg->cert_path ||
        !cfg->key_path) {
        tern_errmsg(errmsg, errmsg_len, "transport: invalid configuration");
        return TERN_EINVAL;
    }
    node_transport *t = calloc(1, sizeof *t);
    if (!t) return TERN_ENOMEM;
    t->loop = loop;
    t->cfg = *cfg;
    if (!t->cfg.redial_ms_min) t->cfg.redial_ms_min = 50;
    if (!t->cfg.hello_timeout_ms) t->cfg.hello_timeout_ms = 10000;
    if (!t->cfg.redial_ms_max) t->cfg.redial_ms_max = 5000;
    t->cfg.redial_ms_max = TERN_MAX(t->cfg.redial_ms_max, t->cfg.redial_ms_min);
    if (callbacks) t->cb = *callbacks;
    t->rng = (cfg->node_id * 0x9E3779B97F4A7C15ull) ^ uv_hrtime();
    if (!t->rng) t->rng = 1;
    t->ssl_ctx = tls_context(cfg, errmsg, errmsg_len);
    if (!t->ssl_ctx) {
        free(t);
        return TERN_EINVAL;
    }
    uv_tcp_init(loop, &t->listener);
    t->listener.data = t;
    int rc = uv_tcp_bind(&t->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&t->listener, 128, accept_cb);
    if (rc < 0) {
        tern_errmsg(errmsg, errmsg_len, "transport: listen on %s:%d: %s", cfg->listen_host,
                    cfg->listen_port, uv_strerror(rc));
        uv_close((uv_handle_t *)&t->listener, create_failed_closed);
        return TERN_EIO;
    }
    t->open_handles = 1;
    *out = t;
    return 0;
}

int node_transport_listen_port(node_transport *t)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&t->listener, (struct sockaddr *)&ss, &len) < 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static tp_peer *peer_find(node_transport *t, uint64_t id)
{
    for (tp_peer *p = t->peers; p; p = p->next)
        if (p->id == id) return p;
    return NULL;
}

int node_transport_add_peer(node_transport *t, uint64_t peer_id, const char *host, int port)
{
    if (t->closing) return TERN_ECLOSED;
    if (peer_id == 0 || peer_id == t->cfg.node_id || !host) return TERN_EINVAL;
    if (peer_find(t, peer_id)) return TERN_EEXIST;
    tp_peer *p = calloc(1, sizeof *p);
    if (!p) return TERN_ENOMEM;
    if (parse_addr(host, port, &p->addr) < 0) {
        free(p);
        return TERN_EINVAL;
    }
    snprintf(p->addr_text, sizeof p->addr_text, "%s:%d", host, port);
    p->t = t;
    p->id = peer_id;
    p->backoff_ms = t->cfg.redial_ms_min;
    uv_timer_init(t->loop, &p->redial_timer);
    p->redial_timer.data = p;
    t->open_handles++;
    p->next = t->peers;
    t->peers = p;
    return 0;
}

int node_transport_send(node_transport *t, uint64_t peer_id, uint16_t type, const void *bytes,
                        size_t len)
{
    if (t->closing) return TERN_ECLOSED;
    if (type == FRAME_TYPE_HELLO) return TERN_EINVAL;
    if (len > t->cfg.frame_bytes_max) return TERN_ETOOBIG;
    tp_peer *p = peer_find(t, peer_id);
    if (!p) return TERN_ECONN;
    size_t frame_len = FRAME_HEADER_BYTES + len;
    if (p->outbox_bytes + frame_len > t->cfg.outbox_bytes_max) return TERN_EAGAIN;
    tp_frame *f = malloc(sizeof *f + frame_len);
    if (!f) return TERN_ENOMEM;
    f->next = NULL;
    f->len = frame_len;
    frame_header(f->data, type, bytes, len);
    if (len) memcpy(f->data + FRAME_HEADER_BYTES, bytes, len);
    if (p->outbox_tail)
        p->outbox_tail->next = f;
    else
        p->outbox_head = f;
    p->outbox_tail = f;
    p->outbox_bytes += frame_len;
    p->wanted = 1;
    if (p->out && p->out->state == CONN_READY)
        outbox_pump(p->out);
    else if (!p->out && !uv_is_active((uv_handle_t *)&p->redial_timer))
        peer_dial(p);
    return 0;
}

int node_transport__send_raw(node_transport *t, uint64_t peer_id, const void *bytes, size_t len)
{
    tp_peer *p = peer_find(t, peer_id);
    if (!p || !p->out || p->out->state != CONN_READY) return TERN_ECONN;
    return conn_write_plain(p->out, bytes, len) < 0 ? TERN_ECONN : 0;
}

void node_transport_stats_get(node_transport *t, node_transport_stats *out)
{
    *out = t->stats;
}

void node_transport_close(node_transport *t, void (*on_closed)(void *ctx), void *ctx)
{
    assert(!t->closing);
    t->closing = 1;
    t->on_closed = on_closed;
    t->on_closed_ctx = ctx;
    for (tp_conn *c = t->conns; c; c = c->next)
        conn_close(c, NULL);
    for (tp_peer *p = t->peers; p; p = p->next)
        uv_close((uv_handle_t *)&p->redial_timer, peer_timer_closed);
    uv_close((uv_handle_t *)&t->listener, handle_closed);
}
