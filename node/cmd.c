/* Replicated writes for the S3 API: each encodes one command and commits it through the group. */
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#include "group.h"
#include "sm.h"

/* Commits an encoded command (freed here) and returns its result. Worker threads. */
static int call(node_group *g, int rc, uint8_t *cmd, size_t len)
{
    if (rc != 0) return rc;
    rc = node_group_call(g, cmd, len);
    free(cmd);
    return rc;
}

int node_cmd_bucket_create(node_group *g, const char *name, const char *region, int64_t created_ms)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_bucket_create(name, region, created_ms, &c, &n);
    return call(g, rc, c, n);
}

int node_cmd_bucket_delete(node_group *g, const char *name)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_bucket_delete(name, &c, &n);
    return call(g, rc, c, n);
}

int node_cmd_bucket_policy_set(node_group *g, const char *name, const node_bucket_policy *p)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_bucket_policy(name, p, &c, &n);
    return call(g, rc, c, n);
}

int node_cmd_geo_apply(node_group *g, uint32_t origin_region, uint64_t origin_index, uint64_t hlc,
                       uint32_t holders, bool local_holder, bool reseed, const uint8_t *change,
                       size_t change_len)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_geo_apply(origin_region, origin_index, hlc, holders, local_holder,
                                      reseed, change, change_len, &c, &n);
    return call(g, rc, c, n);
}

int node_cmd_block_put(node_group *g, const node_block_id *id, const void *data, size_t len)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_block_put(id, data, len, &c, &n);
    return call(g, rc, c, n);
}

int node_cmd_object_put(node_group *g, const char *bucket, const char *key, const node_manifest *m)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_object_put(bucket, key, m, &c, &n);
    return call(g, rc, c, n);
}

int node_cmd_object_delete(node_group *g, const char *bucket, const char *key)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_object_delete_at(bucket, key, tern_now_ms(), &c, &n);
    return call(g, rc, c, n);
}

int node_cmd_upload_create(node_group *g, const char *bucket, const char *key,
                           const node_manifest *tmpl, int64_t initiated_ms,
                           char upload_id_out[NODE_UPLOAD_ID_MAX + 1])
{
    uint8_t random[16];
    upload_id_out[0] = '\0';
    if (RAND_bytes(random, sizeof random) != 1) return TERN_EIO;
    char id[33];
    tern_hex(random, sizeof random, id);
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_upload_create(bucket, key, id, initiated_ms, tmpl, &c, &n);
    rc = call(g, rc, c, n);
    if (rc == 0) memcpy(upload_id_out, id, sizeof id);
    return rc;
}

int node_cmd_upload_part_put(node_group *g, const char *bucket, const char *key,
                             const char *upload_id, const node_part *part)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_part_put(bucket, key, upload_id, part, &c, &n);
    return call(g, rc, c, n);
}

int node_cmd_upload_complete(node_group *g, const char *bucket, const char *key,
                             const char *upload_id, const node_manifest *final)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_upload_complete(bucket, key, upload_id, final, &c, &n);
    return call(g, rc, c, n);
}

int node_cmd_upload_abort(node_group *g, const char *bucket, const char *key, const char *upload_id)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_upload_abort(bucket, key, upload_id, &c, &n);
    return call(g, rc, c, n);
}

int node_cmd_blocks_collect(node_group *g, const node_block_id *ids, size_t count)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_blocks_collect(ids, count, &c, &n);
    return call(g, rc, c, n);
}

int node_cmd_blocks_drop(node_group *g, const node_block_id *ids, size_t count)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_blocks_drop(ids, count, &c, &n);
    return call(g, rc, c, n);
}

static void async_done(void *arg, int status)
{
    (void)arg;
    if (status != 0 && status != TERN_ECLOSED)
        node_log(NODE_LOG_WARN, "geo", "storing a block failed: %s", tern_strerror(status));
}

int node_cmd_block_put_async(node_group *g, const node_block_id *id, const void *data, size_t len)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_block_put(id, data, len, &c, &n);
    if (rc == 0) rc = node_group_submit(g, c, n, async_done, NULL);
    free(c);
    return rc;
}

int node_cmd_geo_mark(node_group *g, uint32_t origin_region, uint64_t hlc, uint64_t upto)
{
    uint8_t *c = NULL;
    size_t n = 0;
    int rc = node_sm_encode_geo_mark(origin_region, hlc, upto, &c, &n);
    return call(g, rc, c, n);
}
