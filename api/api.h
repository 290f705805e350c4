/* api: tern's client-facing servers: the S3-compatible HTTP/1.1 API, admin and metrics endpoints.
 */
#ifndef TERN_API_H
#define TERN_API_H

#include <uv.h>

#include "node.h"

typedef struct api_server api_server;

typedef struct {
    uv_loop_t *loop;
    node_store *store; /* reads; every change goes through group */
    node_group *group;
    node_metrics *metrics;
    const node_config *config;
    int64_t started_ms;
    /* Egress accounting for /metrics and GET /_tern/egress; NULL when the node has no topology
     * (the endpoint then answers 404 NoTopology and /metrics has no tern_egress_ families). */
    node_egress *egress;
    /* The deployment's topology, to check bucket policies against; NULL without one. */
    const node_topology *topology;
    /* The placement engine fed with this node's accesses; NULL without a topology. */
    node_placement *placement;
    /* Remote reads of blocks placement put in other regions; NULL without peer regions. */
    node_geo_fetch *fetch;
} api_server_options;

/* Binds config->s3_listen and starts accepting. errmsg gets the reason on failure. */
int api_server_start(const api_server_options *opts, api_server **out, char *errmsg,
                     size_t errmsg_len);
/*
 * Stops accepting, lets requests in flight finish (up to grace_ms, after which
 * their connections are closed and their uploads discarded), then calls done
 * on the loop thread. Safe to call once.
 */
void api_server_shutdown(api_server *s, uint32_t grace_ms, void (*done)(void *ctx), void *ctx);
void api_server_free(api_server *s);
/* Requests currently being served (for shutdown and tests). */
size_t api_server_inflight(const api_server *s);

#endif
