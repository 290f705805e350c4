/* /_tern/geo/...: the receiving side of geo-replication (blocks, changes, how far we got). */
#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"
#include "sm.h"

/*
 * Another region's shipper (node/geo_ship.c) calls these, signed with the
 * deployment's root credentials like every admin request:
 *   POST /_tern/geo/block?id=HEX   the block's bytes: checked against its
 *                                  SHA-256 id, then committed through the
 *                                  group (a block already here is not);
 *   POST /_tern/geo/apply          records u32 len | u64 origin index |
 *                                  geo record, in the origin's order: each
 *                                  committed as a GEO_APPLY, stopping at the
 *                                  first refusal; answers {"applied": n};
 *   GET  /_tern/geo/received?origin=ID8  {"index": highest applied}.
 * Every change goes through this region's group, so any node may receive.
 */

typedef struct {
    api__req *r;
    int rc;
    const char *s3_code;
    char message[200];
    size_t applied;
    uint64_t index;
} geo_job;

static void block_work(void *arg)
{
    geo_job *j = arg;
    api__req *r = j->r;
    const char *hex = api__req_param(r, "id");
    node_block_id id;
    if (hex == NULL || strlen(hex) != 64 || tern_unhex(hex, 64, id.bytes) != 0) {
        j->s3_code = "InvalidArgument";
        snprintf(j->message, sizeof j->message, "id must be 64 hex digits (a SHA-256).");
        return;
    }
    node_block_id got;
    node_block_hash(r->body.data ? r->body.data : "", r->body.len, &got);
    if (r->body.len == 0 || memcmp(got.bytes, id.bytes, sizeof id.bytes) != 0) {
        j->s3_code = "BadDigest";
        snprintf(j->message, sizeof j->message,
                 "The block's bytes do not hash to its id: it was damaged on the way.");
        return;
    }
    void *data = NULL;
    size_t len = 0;
    if (node_store_block_get(r->server->store, &id, false, &data, &len) == 0) {
        free(data); /* already here: nothing to commit */
        return;
    }
    j->rc = node_cmd_block_put(r->server->group, &id, r->body.data, r->body.len);
}

static void apply_work(void *arg)
{
    geo_job *j = arg;
    api__req *r = j->r;
    const uint8_t *p = (const uint8_t *)r->body.data, *end = p + r->body.len;
    while (p < end) {
        if (end - p < 4) break;
        uint32_t len = tern_le_get_u32(p);
        if (len < 8 || (size_t)(end - p - 4) < len) break;
        uint64_t index = tern_le_get_u64(p + 4);
        uint64_t hlc;
        uint32_t origin;
        const uint8_t *change;
        size_t change_len;
        if (node_sm_geo_decode(p + 12, len - 8, &hlc, &origin, &change, &change_len) != 0) break;
        j->rc = node_cmd_geo_apply(r->server->group, origin, index, hlc, change, change_len);
        if (j->rc != 0) {
            snprintf(j->message, sizeof j->message, "change %llu of region %08x: %s",
                     (unsigned long long)index, origin,
                     j->rc == TERN_ECONFLICT ? "its blocks are not here" : tern_strerror(j->rc));
            return;
        }
        j->applied++;
        p += 4 + len;
    }
    if (p != end) {
        j->s3_code = "InvalidRequest";
        snprintf(j->message, sizeof j->message,
                 "Malformed batch of changes after %zu applied record(s).", j->applied);
    }
}

static void received_work(void *arg)
{
    geo_job *j = arg;
    api__req *r = j->r;
    const char *origin = api__req_param(r, "origin");
    if (origin == NULL || strlen(origin) != 8 || strspn(origin, "0123456789abcdef") != 8) {
        j->s3_code = "InvalidArgument";
        snprintf(j->message, sizeof j->message, "origin must be 8 hex digits (a region id).");
        return;
    }
    if ((j->rc = node_group_read_barrier_wait(r->server->group)) != 0) return;
    char key[32];
    snprintf(key, sizeof key, "raft/geo/in/%s", origin);
    uint8_t le[8];
    size_t n = 0;
    int rc = node_store_raft_meta_get(r->server->store, key, le, sizeof le, &n);
    if (rc == 0 && n == 8)
        j->index = tern_le_get_u64(le);
    else if (rc != TERN_ENOTFOUND)
        j->rc = rc;
}

static void geo_done(api__req *r, void *arg)
{
    geo_job *j = arg;
    if (!r->aborted) {
        if (j->s3_code) {
            api__respond_error(r, j->s3_code, j->message);
        } else if (j->rc == TERN_ECONFLICT) {
            api__respond_error(r, "SlowDown", j->message);
        } else if (j->rc != 0) {
            api__respond_store_error(r, j->rc, "NoSuchBucket");
        } else {
            char text[96];
            if (r->op == API_OP_GEO_APPLY)
                snprintf(text, sizeof text, "{\"applied\": %zu}\n", j->applied);
            else
                snprintf(text, sizeof text, "{\"index\": %llu}\n", (unsigned long long)j->index);
            api__respond(r, 200, NULL, "application/json", text, strlen(text));
        }
    }
    free(j);
}

void api__geo_handle(api__req *r)
{
    geo_job *j = calloc(1, sizeof *j);
    assert(j != NULL);
    j->r = r;
    api__work_fn work = r->op == API_OP_GEO_BLOCK   ? block_work
                        : r->op == API_OP_GEO_APPLY ? apply_work
                                                    : received_work;
    api__job_submit(r, work, geo_done, j);
}

void api__access(api__req *r, plc_op op, uint64_t bytes)
{
    api_server *s = r->server;
    node_placement_observe(s->placement, r->bucket, r->key, op, bytes, tern_now_ms());
    if (s->egress == NULL || s->local_region < 0) return;
    uint32_t region = (uint32_t)s->local_region;
    /* The counterfactual's inputs: what full replication would have shipped for this write,
     * and the reads it would have served locally. */
    if (op == PLC_PUT)
        node_egress_record_write(s->egress, region, bytes);
    else if (op == PLC_GET)
        node_egress_record_read(s->egress, region, bytes);
}
