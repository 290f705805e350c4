/* tcpproxy: a libuv TCP proxy that lets tests delay, throttle, cut, reset and count traffic. */

/*
 * DESIGN NOTE
 *
 * Each route listens on LISTEN and forwards every accepted connection ("a", the client side)
 * to TARGET ("b"). A connection has two directions, a2b and b2a; each is a FIFO of chunks read
 * from its source and not yet written to its destination, with at most one write in flight.
 *
 * Delay: a chunk is stamped due_ms = read time + the route's delay when it is read. The pump
 * only ever looks at the head of the FIFO, so if the head is not yet due it arms the
 * direction's timer and waits; later chunks wait behind it, which preserves byte order even
 * when the delay is lowered while bytes are queued.
 *
 * Bandwidth: a token bucket per direction, refilled from uv_hrtime() and capped at BURST_MS
 * worth of bytes, so a long idle period cannot turn into an unthrottled burst. The pump
 * writes at most the tokens it holds and otherwise arms the same timer.
 *
 * Cut: a cut direction simply is not pumped. Reading continues until the direction holds
 * BUFFERED_BYTES_MAX bytes, then stops, so TCP flow control pushes back on the sender and
 * memory stays bounded; the connection stays open, which is what a partition looks like.
 * Heal pumps again and the held bytes flow in order. A full cut (both directions) also
 * refuses new connections: they are accepted and closed with RST at once.
 *
 * Memory bound: a direction reads only while buffered_bytes < BUFFERED_BYTES_MAX and sizes
 * each read buffer to the room left, so a direction never holds more than that.
 *
 * The pump is idempotent: every event that might unblock a direction (read, write done,
 * timer, heal, a new delay or rate) calls it, and it does nothing when nothing can move.
 */

#include <assert.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common.h"

#define ROUTES_MAX         16
#define ROUTE_NAME_MAX     32
#define READ_CHUNK_BYTES   (64 * 1024)
#define BUFFERED_BYTES_MAX (1024 * 1024) /* per connection and direction */
#define CONTROL_LINE_MAX   256
#define REPLY_MAX          160
#define BURST_MS           20
#define DELAY_MS_MAX       600000
#define LISTEN_BACKLOG     128

enum { A2B = 0, B2A = 1 };

struct chunk {
    struct chunk *next;
    char *data;
    size_t len;
    size_t offset; /* bytes already written */
    uint64_t due_ms;
};

struct conn;

struct direction {
    struct conn *conn;
    int index;
    uv_stream_t *src;
    uv_stream_t *dst;
    struct chunk *head;
    struct chunk *tail;
    size_t buffered_bytes;
    int reading;
    int eof;
    int writing;
    int shutdown_sent;
    size_t write_len;
    double tokens;
    uint64_t tokens_at_ns;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
};

struct route {
    char name[ROUTE_NAME_MAX];
    struct sockaddr_in listen_addr;
    struct sockaddr_in target_addr;
    uv_tcp_t listener;
    uint64_t delay_ms;
    uint64_t bandwidth_bytes_per_sec;
    int cut[2];
    uint64_t bytes[2];
    uint64_t conns_open;
    struct conn *conns;
};

struct conn {
    struct route *route;
    struct conn *prev;
    struct conn *next;
    uv_tcp_t a;
    uv_tcp_t b;
    struct direction dir[2];
    uv_connect_t connect_req;
    int connected;
    int closing;
    int handles_open;
    int shutdowns_done;
};

struct control_client {
    uv_tcp_t tcp;
    struct control_client *prev;
    struct control_client *next;
    char line[CONTROL_LINE_MAX];
    size_t line_len;
    int discarding; /* the current line overflowed: drop it and reply err at its end */
};

struct reply {
    uv_write_t req;
    char text[REPLY_MAX];
    int quit;
};

static uv_loop_t *loop;
static struct route routes[ROUTES_MAX];
static size_t routes_len;
static uv_tcp_t control_listener;
static struct control_client *control_clients;
static int quitting;

static void direction_pump(struct direction *d);

static void on_conn_handle_close(uv_handle_t *handle)
{
    struct direction *d = handle->data;
    struct conn *conn = d->conn;
    if (--conn->handles_open > 0) return;
    for (int i = 0; i < 2; i++) {
        struct chunk *c = conn->dir[i].head;
        while (c != NULL) {
            struct chunk *next = c->next;
            free(c->data);
            free(c);
            c = next;
        }
    }
    free(conn);
}

/* Closes both sides; with reset the peers see RST instead of FIN, like a crashed middlebox. */
static void conn_close(struct conn *conn, int reset)
{
    if (conn->closing) return;
    conn->closing = 1;
    struct route *route = conn->route;
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        route->conns = conn->next;
    if (conn->next != NULL) conn->next->prev = conn->prev;
    route->conns_open--;
    uv_tcp_t *sides[2] = {&conn->a, &conn->b};
    for (int i = 0; i < 2; i++) {
        /* close_reset refuses a handle that is shutting down; a plain close is then fine. */
        if (reset && uv_tcp_close_reset(sides[i], on_conn_handle_close) == 0) continue;
        uv_close((uv_handle_t *)sides[i], on_conn_handle_close);
    }
    uv_close((uv_handle_t *)&conn->dir[A2B].timer, on_conn_handle_close);
    uv_close((uv_handle_t *)&conn->dir[B2A].timer, on_conn_handle_close);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct direction *d = handle->data;
    /* Reading stops at the bound, so there is always room here; size to it to stay exact. */
    assert(d->buffered_bytes < BUFFERED_BYTES_MAX);
    size_t len = TERN_MIN((size_t)READ_CHUNK_BYTES, BUFFERED_BYTES_MAX - d->buffered_bytes);
    buf->base = malloc(len);
    buf->len = buf->base != NULL ? len : 0; /* libuv reports UV_ENOBUFS for a zero buffer */
}

static void direction_read_stop(struct direction *d)
{
    if (!d->reading) return;
    uv_read_stop(d->src);
    d->reading = 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void direction_read_start(struct direction *d)
{
    if (d->reading || d->eof || d->buffered_bytes >= BUFFERED_BYTES_MAX) return;
    if (uv_read_start(d->src, on_alloc, on_read) != 0) {
        conn_close(d->conn, 1);
        return;
    }
    d->reading = 1;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct direction *d = stream->data;
    struct conn *conn = d->conn;
    if (nread > 0) {
        struct chunk *c = calloc(1, sizeof *c);
        if (c == NULL) {
            free(buf->base);
            conn_close(conn, 1);
            return;
        }
        c->data = buf->base;
        c->len = (size_t)nread;
        c->due_ms = uv_now(loop) + conn->route->delay_ms;
        if (d->tail != NULL)
            d->tail->next = c;
        else
            d->head = c;
        d->tail = c;
        d->buffered_bytes += c->len;
        if (d->buffered_bytes >= BUFFERED_BYTES_MAX) direction_read_stop(d);
        direction_pump(d);
        return;
    }
    free(buf->base);
    if (nread == 0) return;
    if (nread == UV_EOF) {
        /* Forward the half-close only after the queued bytes, so the peer sees them all. */
        direction_read_stop(d);
        d->eof = 1;
        direction_pump(d);
        return;
    }
    conn_close(conn, 1);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct direction *d = req->data;
    struct conn *conn = d->conn;
    if (conn->closing) return;
    if (status < 0) {
        conn_close(conn, 1);
        return;
    }
    /* Both sides half-closed and drained: nothing can pass any more. */
    if (++conn->shutdowns_done == 2) conn_close(conn, 0);
}

static void on_write(uv_write_t *req, int status)
{
    struct direction *d = req->data;
    struct conn *conn = d->conn;
    d->writing = 0;
    if (conn->closing) return; /* the chunks are freed with the connection */
    if (status < 0) {
        conn_close(conn, 1);
        return;
    }
    struct chunk *c = d->head;
    assert(c != NULL && c->offset + d->write_len <= c->len);
    c->offset += d->write_len;
    conn->route->bytes[d->index] += d->write_len;
    if (c->offset == c->len) {
        d->head = c->next;
        if (d->head == NULL) d->tail = NULL;
        d->buffered_bytes -= c->len;
        free(c->data);
        free(c);
        direction_read_start(d);
    }
    direction_pump(d);
}

/* Token bucket: returns how many of want bytes may go now, or 0 and how long to wait. */
static size_t bandwidth_grant(struct direction *d, uint64_t rate, size_t want, uint64_t *wait_ms)
{
    uint64_t now_ns = uv_hrtime();
    double burst = TERN_MAX((double)rate * BURST_MS / 1000.0, 1.0);
    d->tokens += (double)(now_ns - d->tokens_at_ns) * (double)rate / 1e9;
    d->tokens = TERN_MIN(d->tokens, burst);
    d->tokens_at_ns = now_ns;
    /* Wait for a worthwhile amount rather than waking every millisecond for a few bytes. */
    double target = TERN_MIN((double)want, burst);
    if (d->tokens >= target) {
        size_t grant = TERN_MIN(want, (size_t)d->tokens);
        d->tokens -= (double)grant;
        return grant;
    }
    *wait_ms = (uint64_t)ceil((target - d->tokens) * 1000.0 / (double)rate);
    if (*wait_ms == 0) *wait_ms = 1;
    return 0;
}

static void on_timer(uv_timer_t *timer)
{
    direction_pump(timer->data);
}

static void direction_pump(struct direction *d)
{
    struct conn *conn = d->conn;
    struct route *route = conn->route;
    if (conn->closing || !conn->connected || d->writing) return;
    if (route->cut[d->index]) return; /* hold the bytes: heal pumps again */
    struct chunk *c = d->head;
    if (c == NULL) {
        if (d->eof && !d->shutdown_sent) {
            d->shutdown_sent = 1;
            if (uv_shutdown(&d->shutdown_req, d->dst, on_shutdown) != 0) conn_close(conn, 1);
        }
        return;
    }
    uint64_t now = uv_now(loop);
    if (c->due_ms > now) {
        uv_timer_start(&d->timer, on_timer, c->due_ms - now, 0);
        return;
    }
    size_t len = c->len - c->offset;
    if (route->bandwidth_bytes_per_sec > 0) {
        uint64_t wait_ms = 0;
        len = bandwidth_grant(d, route->bandwidth_bytes_per_sec, len, &wait_ms);
        if (len == 0) {
            uv_timer_start(&d->timer, on_timer, wait_ms, 0);
            return;
        }
    }
    uv_buf_t buf = uv_buf_init(c->data + c->offset, (unsigned int)len);
    d->write_len = len;
    d->writing = 1;
    if (uv_write(&d->write_req, d->dst, &buf, 1, on_write) != 0) {
        d->writing = 0;
        conn_close(conn, 1);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *conn = req->data;
    if (conn->closing) return;
    if (status < 0) {
        conn_close(conn, 1); /* the client sees RST, as if the target refused it */
        return;
    }
    conn->connected = 1;
    uv_tcp_nodelay(&conn->a, 1);
    uv_tcp_nodelay(&conn->b, 1);
    direction_read_start(&conn->dir[A2B]);
    direction_read_start(&conn->dir[B2A]);
}

static struct conn *conn_create(struct route *route)
{
    struct conn *conn = calloc(1, sizeof *conn);
    if (conn == NULL) return NULL;
    conn->route = route;
    uv_tcp_init(loop, &conn->a);
    uv_tcp_init(loop, &conn->b);
    for (int i = 0; i < 2; i++) {
        struct direction *d = &conn->dir[i];
        d->conn = conn;
        d->index = i;
        d->src = (uv_stream_t *)(i == A2B ? &conn->a : &conn->b);
        d->dst = (uv_stream_t *)(i == A2B ? &conn->b : &conn->a);
        d->src->data = d;
        d->tokens_at_ns = uv_hrtime();
        uv_timer_init(loop, &d->timer);
        d->timer.data = d;
        d->write_req.data = d;
        d->shutdown_req.data = d;
    }
    conn->connect_req.data = conn;
    conn->handles_open = 4;
    conn->next = route->conns;
    if (route->conns != NULL) route->conns->prev = conn;
    route->conns = conn;
    route->conns_open++;
    return conn;
}

static void on_accept(uv_stream_t *listener, int status)
{
    struct route *route = listener->data;
    if (status < 0) return;
    struct conn *conn = conn_create(route);
    if (conn == NULL) return; /* the kernel keeps it queued; the next accept retries */
    if (uv_accept(listener, (uv_stream_t *)&conn->a) != 0) {
        conn_close(conn, 0);
        return;
    }
    /* A fully cut route refuses new connections, as a partitioned peer would. */
    if (route->cut[A2B] && route->cut[B2A]) {
        conn_close(conn, 1);
        return;
    }
    if (uv_tcp_connect(&conn->connect_req, &conn->b, (const struct sockaddr *)&route->target_addr,
                       on_connect) != 0)
        conn_close(conn, 1);
}

static void route_pump_all(struct route *route)
{
    for (struct conn *conn = route->conns; conn != NULL; conn = conn->next) {
        direction_pump(&conn->dir[A2B]);
        direction_pump(&conn->dir[B2A]);
    }
}

static void on_control_close(uv_handle_t *handle)
{
    free(handle->data);
}

static void shutdown_all(void)
{
    quitting = 1;
    for (size_t i = 0; i < routes_len; i++) {
        uv_close((uv_handle_t *)&routes[i].listener, NULL);
        while (routes[i].conns != NULL)
            conn_close(routes[i].conns, 0);
    }
    uv_close((uv_handle_t *)&control_listener, NULL);
    for (struct control_client *cl = control_clients; cl != NULL; cl = cl->next)
        if (!uv_is_closing((uv_handle_t *)&cl->tcp))
            uv_close((uv_handle_t *)&cl->tcp, on_control_close);
}

static struct route *route_find(const char *name)
{
    for (size_t i = 0; i < routes_len; i++)
        if (strcmp(routes[i].name, name) == 0) return &routes[i];
    return NULL;
}

/* Parses a whole decimal number no larger than max; rejects signs, spaces and trailing junk. */
static int parse_u64(const char *text, uint64_t max, uint64_t *out)
{
    if (text == NULL || *text < '0' || *text > '9') return TERN_EPARSE;
    uint64_t value = 0;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') return TERN_EPARSE;
        if (value > (max - (uint64_t)(*p - '0')) / 10) return TERN_ERANGE;
        value = value * 10 + (uint64_t)(*p - '0');
    }
    *out = value;
    return 0;
}

/* Which directions a cut/heal names: both by default, or one of a2b / b2a. */
static int parse_directions(const char *text, int *a2b, int *b2a)
{
    *a2b = text == NULL || strcmp(text, "a2b") == 0;
    *b2a = text == NULL || strcmp(text, "b2a") == 0;
    return *a2b || *b2a ? 0 : TERN_EPARSE;
}

/* Runs one command; fills reply with "ok ..." or "err <reason>". Errors change nothing. */
static void control_execute(char *line, char *reply, size_t reply_len, int *quit)
{
    char *save = NULL;
    char *argv[5] = {0};
    int argc = 0;
    for (char *t = strtok_r(line, " \t", &save); t != NULL; t = strtok_r(NULL, " \t", &save)) {
        if (argc == 4) return tern_errmsg(reply, reply_len, "err too many arguments");
        argv[argc++] = t;
    }
    if (argc == 0) return tern_errmsg(reply, reply_len, "err empty command");
    const char *cmd = argv[0];
    if (strcmp(cmd, "quit") == 0) {
        if (argc != 1) return tern_errmsg(reply, reply_len, "err usage: quit");
        *quit = 1;
        return tern_errmsg(reply, reply_len, "ok");
    }
    int known = strcmp(cmd, "delay") == 0 || strcmp(cmd, "bandwidth") == 0 ||
                strcmp(cmd, "cut") == 0 || strcmp(cmd, "heal") == 0 || strcmp(cmd, "reset") == 0 ||
                strcmp(cmd, "stats") == 0;
    if (!known) return tern_errmsg(reply, reply_len, "err unknown command '%.32s'", cmd);
    if (argc < 2) return tern_errmsg(reply, reply_len, "err missing route name");
    struct route *route = route_find(argv[1]);
    if (route == NULL) return tern_errmsg(reply, reply_len, "err no route '%.32s'", argv[1]);
    uint64_t value = 0;
    if (strcmp(cmd, "delay") == 0 || strcmp(cmd, "bandwidth") == 0) {
        int is_delay = cmd[0] == 'd';
        if (argc != 3)
            return tern_errmsg(reply, reply_len, "err usage: %s NAME %s", cmd,
                               is_delay ? "MS" : "BYTES_PER_SEC");
        uint64_t max = is_delay ? DELAY_MS_MAX : UINT64_MAX / 1000;
        int rc = parse_u64(argv[2], max, &value);
        if (rc == TERN_ERANGE)
            return tern_errmsg(reply, reply_len, "err %s out of range (max %llu)", cmd,
                               (unsigned long long)max);
        if (rc != 0) return tern_errmsg(reply, reply_len, "err %s needs a decimal number", cmd);
        if (is_delay)
            route->delay_ms = value;
        else
            route->bandwidth_bytes_per_sec = value;
    } else if (strcmp(cmd, "cut") == 0 || strcmp(cmd, "heal") == 0) {
        int a2b = 0, b2a = 0;
        if (argc > 3 || parse_directions(argv[2], &a2b, &b2a) != 0)
            return tern_errmsg(reply, reply_len, "err usage: %s NAME [a2b|b2a]", cmd);
        int cut = cmd[0] == 'c';
        if (a2b) route->cut[A2B] = cut;
        if (b2a) route->cut[B2A] = cut;
    } else if (strcmp(cmd, "reset") == 0) {
        if (argc != 2) return tern_errmsg(reply, reply_len, "err usage: reset NAME");
        while (route->conns != NULL)
            conn_close(route->conns, 1);
    } else {
        if (argc != 2) return tern_errmsg(reply, reply_len, "err usage: stats NAME");
        return tern_errmsg(reply, reply_len, "ok bytes_a2b=%llu bytes_b2a=%llu conns=%llu",
                           (unsigned long long)route->bytes[A2B],
                           (unsigned long long)route->bytes[B2A],
                           (unsigned long long)route->conns_open);
    }
    route_pump_all(route); /* a heal, shorter delay or higher rate may unblock bytes now */
    tern_errmsg(reply, reply_len, "ok");
}

static void on_reply_written(uv_write_t *req, int status)
{
    struct reply *reply = req->data;
    int quit = reply->quit;
    free(reply);
    if (quit && !quitting) shutdown_all(); /* after the "ok" is out, so the caller sees it */
}

static void control_reply(struct control_client *cl, const char *line, int discard)
{
    struct reply *reply = calloc(1, sizeof *reply);
    if (reply == NULL) return;
    char command[CONTROL_LINE_MAX];
    tern_errmsg(command, sizeof command, "%s", line);
    if (discard)
        tern_errmsg(reply->text, REPLY_MAX, "err line too long");
    else
        control_execute(command, reply->text, REPLY_MAX - 1, &reply->quit);
    size_t len = strlen(reply->text);
    reply->text[len++] = '\n';
    reply->req.data = reply;
    uv_buf_t buf = uv_buf_init(reply->text, (unsigned int)len);
    if (uv_write(&reply->req, (uv_stream_t *)&cl->tcp, &buf, 1, on_reply_written) != 0) {
        int quit = reply->quit;
        free(reply);
        if (quit && !quitting) shutdown_all();
    }
}

static void on_control_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    static char scratch[4096]; /* bytes are copied into the line buffer at once */
    *buf = uv_buf_init(scratch, sizeof scratch);
}

static void control_client_close(struct control_client *cl)
{
    if (uv_is_closing((uv_handle_t *)&cl->tcp)) return;
    if (cl->prev != NULL)
        cl->prev->next = cl->next;
    else
        control_clients = cl->next;
    if (cl->next != NULL) cl->next->prev = cl->prev;
    cl->prev = cl->next = NULL;
    uv_close((uv_handle_t *)&cl->tcp, on_control_close);
}

static void on_control_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct control_client *cl = stream->data;
    if (nread < 0) {
        control_client_close(cl);
        return;
    }
    for (ssize_t i = 0; i < nread && !quitting; i++) {
        char ch = buf->base[i];
        if (ch == '\n') {
            if (cl->line_len > 0 && cl->line[cl->line_len - 1] == '\r') cl->line_len--;
            cl->line[cl->line_len] = '\0';
            control_reply(cl, cl->line, cl->discarding);
            cl->line_len = 0;
            cl->discarding = 0;
        } else if (cl->line_len + 1 < CONTROL_LINE_MAX) {
            cl->line[cl->line_len++] = ch;
        } else {
            cl->discarding = 1; /* bounded: an overlong line is dropped, not buffered */
        }
    }
}

static void on_control_accept(uv_stream_t *listener, int status)
{
    if (status < 0) return;
    struct control_client *cl = calloc(1, sizeof *cl);
    if (cl == NULL) return;
    uv_tcp_init(loop, &cl->tcp);
    cl->tcp.data = cl;
    cl->next = control_clients;
    if (control_clients != NULL) control_clients->prev = cl;
    control_clients = cl;
    if (uv_accept(listener, (uv_stream_t *)&cl->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&cl->tcp, on_control_alloc, on_control_read) != 0)
        control_client_close(cl);
}

/* Parses HOST:PORT (IPv4 literal) into addr. */
static int parse_addr(const char *text, struct sockaddr_in *addr)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    if (colon == NULL || (size_t)(colon - text) >= sizeof host) return TERN_EPARSE;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    uint64_t port = 0;
    if (parse_u64(colon + 1, 65535, &port) != 0) return TERN_EPARSE;
    return uv_ip4_addr(host, (int)port, addr) == 0 ? 0 : TERN_EPARSE;
}

/* Parses NAME=LISTEN_HOST:PORT->TARGET_HOST:PORT into a new route. */
static int parse_route(const char *text)
{
    char buf[256];
    if (routes_len == ROUTES_MAX || strlen(text) >= sizeof buf) return TERN_ERANGE;
    tern_errmsg(buf, sizeof buf, "%s", text);
    char *eq = strchr(buf, '=');
    char *arrow = strstr(buf, "->");
    if (eq == NULL || arrow == NULL || arrow < eq) return TERN_EPARSE;
    *eq = '\0';
    *arrow = '\0';
    size_t name_len = strlen(buf);
    if (name_len == 0 || name_len >= ROUTE_NAME_MAX || route_find(buf) != NULL) return TERN_EPARSE;
    struct route *route = &routes[routes_len];
    memset(route, 0, sizeof *route);
    memcpy(route->name, buf, name_len + 1);
    if (parse_addr(eq + 1, &route->listen_addr) != 0) return TERN_EPARSE;
    if (parse_addr(arrow + 2, &route->target_addr) != 0) return TERN_EPARSE;
    routes_len++;
    return 0;
}

static int listen_on(uv_tcp_t *tcp, const struct sockaddr_in *addr, uv_connection_cb cb)
{
    uv_tcp_init(loop, tcp);
    int rc = uv_tcp_bind(tcp, (const struct sockaddr *)addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)tcp, LISTEN_BACKLOG, cb);
    return rc;
}

static int usage(const char *why)
{
    fprintf(stderr,
            "tcpproxy: %s\nusage: tcpproxy --control HOST:PORT "
            "--route NAME=LISTEN_HOST:PORT->TARGET_HOST:PORT [--route ...]\n",
            why);
    return 2;
}

int main(int argc, char **argv)
{
    /* libuv writes with write(2): a peer that vanished (a SIGKILLed node) must cost its
     * connection an EPIPE, not kill the proxy and every route with it. */
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in control_addr;
    int have_control = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) return usage("missing value");
        if (strcmp(argv[i], "--control") == 0) {
            if (parse_addr(argv[++i], &control_addr) != 0) return usage("bad --control");
            have_control = 1;
        } else if (strcmp(argv[i], "--route") == 0) {
            if (parse_route(argv[++i]) != 0) return usage("bad or duplicate --route");
        } else {
            return usage("unknown option");
        }
    }
    if (!have_control || routes_len == 0) return usage("need --control and a --route");
    loop = uv_default_loop();
    for (size_t i = 0; i < routes_len; i++) {
        int rc = listen_on(&routes[i].listener, &routes[i].listen_addr, on_accept);
        if (rc != 0) {
            fprintf(stderr, "tcpproxy: route %s: %s\n", routes[i].name, uv_strerror(rc));
            return 1;
        }
        routes[i].listener.data = &routes[i];
    }
    int rc = listen_on(&control_listener, &control_addr, on_control_accept);
    if (rc != 0) {
        fprintf(stderr, "tcpproxy: control: %s\n", uv_strerror(rc));
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 0;
}
