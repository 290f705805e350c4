/* node internal header (not public, used by node/ only): mutual-TLS framed peer transport. */
/* The process must ignore SIGPIPE (ternd does): libuv writes sockets with write(2). */
#ifndef TERN_NODE_TRANSPORT_H
#define TERN_NODE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common.h"

/*
 * WIRE FORMAT
 *
 * TCP, then TLS (1.2 minimum, 1.3 preferred) with certificates verified in both directions
 * against the cluster CA only. Inside TLS, a stream of frames; all integers little-endian:
 *   u32 magic    0x4E524554 (the bytes "TERN")
 *   u16 version  1
 *   u16 type     0 = hello (reserved), 1..65535 = caller's message types
 *   u32 length   payload bytes, at most frame_bytes_max
 *   u32 crc32c   CRC32C (Castagnoli) of the payload
 *   payload
 * The first frame each side sends is a hello whose payload is its u64 node id.
 *
 * IDENTITY RULE
 *
 * A node's certificate must be signed by the cluster CA and its subject Common Name must be
 * the node id in decimal ("3" for node 3). Subject alternative names are not consulted: node
 * ids are not host names, and dialing by IP must not depend on DNS names in certificates. A
 * hello whose id differs from the certificate's CN closes the connection; on a connection we
 * dialed, the id must also be the one we dialed.
 *
 * CONNECTIONS
 *
 * Each node sends to a peer only on the connection it dialed itself and receives on the
 * connections peers dialed to it (a dialed connection may also carry frames back, which are
 * delivered too). So there is no tie-break between two simultaneous dials, and per-peer order
 * is the order of one TCP stream. A peer is "up" (on_peer_state) while our dialed connection
 * to it is ready.
 *
 * Delivery is at most once: frames still in the outbox when a connection drops are sent on
 * the next connection; frames already handed to TLS on the dropped one may be lost.
 */

typedef struct node_transport node_transport;

/* frame_bytes_max may not exceed this: lengths go through OpenSSL's int-sized calls. */
#define NODE_TRANSPORT_FRAME_BYTES_LIMIT (1024u * 1024 * 1024)

typedef struct {
    const char *listen_host;   /* numeric IPv4 or IPv6 address */
    int listen_port;           /* 0 = ephemeral (see node_transport_listen_port) */
    uint64_t node_id;          /* must equal the CN of cert_path */
    const char *ca_path;       /* PEM: the cluster CA, the only trust anchor */
    const char *cert_path;     /* PEM: this node's certificate (chain) */
    const char *key_path;      /* PEM: its private key */
    size_t frame_bytes_max;    /* largest payload sent or accepted */
    size_t outbox_bytes_max;   /* per peer: queued frame bytes (headers included) */
    uint32_t redial_ms_min;    /* first redial delay; 0 = 50 ms */
    uint32_t redial_ms_max;    /* cap of the doubling backoff; 0 = 5000 ms */
    uint32_t hello_timeout_ms; /* connect + TLS + hello deadline per connection; 0 = 10000 */
} node_transport_config;

typedef struct {
    void *ctx;
    /* A verified frame from peer_id; bytes are valid only during the call. */
    void (*on_message)(void *ctx, uint64_t peer_id, uint16_t type, const uint8_t *bytes,
                       size_t len);
    /* up = 1 when our dialed connection to peer_id became ready, 0 when it went away. */
    void (*on_peer_state)(void *ctx, uint64_t peer_id, int up);
} node_transport_callbacks;

typedef struct {
    uint64_t frames_sent;        /* handed to TLS */
    uint64_t frames_received;    /* delivered to on_message */
    uint64_t handshake_failures; /* TLS handshake failed (bad or missing certificate, ...) */
    uint64_t hello_rejects;      /* hello id did not match the certificate or the dialed id */
    uint64_t frame_errors;       /* bad magic/version, oversize, CRC mismatch, protocol */
    uint64_t connections_ready;  /* connections that completed the hello exchange */
} node_transport_stats;

/*
 * Loads the TLS material, binds and listens. Returns 0 and *out, or TERN_EINVAL (bad config
 * or certificates) / TERN_EIO (bind or listen failed) with a message in errmsg. On failure
 * nothing is left to close (a listener that was initialized is closed and freed by the loop).
 */
int node_transport_create(uv_loop_t *loop, const node_transport_config *cfg,
                          const node_transport_callbacks *callbacks, node_transport **out,
                          char *errmsg, size_t errmsg_len);

/* The bound listen port (useful with listen_port 0). */
int node_transport_listen_port(node_transport *t);

/* Registers a peer (numeric host). Nothing is dialed until the first send.
 * TERN_EEXIST if the id is known, TERN_EINVAL for a bad address or our own id. */
int node_transport_add_peer(node_transport *t, uint64_t peer_id, const char *host, int port);

/*
 * Queues one frame for peer_id (copied) and dials if needed. Returns 0, TERN_ECONN for an
 * unknown peer, TERN_EAGAIN when the peer's outbox would exceed outbox_bytes_max (retry after
 * the loop ran), TERN_ETOOBIG when len > frame_bytes_max, TERN_EINVAL for type 0,
 * TERN_ECLOSED after close.
 */
int node_transport_send(node_transport *t, uint64_t peer_id, uint16_t type, const void *bytes,
                        size_t len);

void node_transport_stats_get(node_transport *t, node_transport_stats *out);

/*
 * Closes every connection, timer and the listener; queued frames are dropped. on_closed (may
 * be NULL) runs from the loop once all handles are closed, after t was freed. Callbacks are
 * not called after this returns. May be called from inside a callback.
 */
void node_transport_close(node_transport *t, void (*on_closed)(void *ctx), void *ctx);

/* Test hook: writes raw bytes into the TLS stream of the ready connection we dialed to
 * peer_id, bypassing framing. TERN_ECONN when there is none. */
int node_transport__send_raw(node_transport *t, uint64_t peer_id, const void *bytes, size_t len);

#endif
