/* /_tern/buckets/NAME/policy: a bucket's durability and residency policy, read and set as JSON. */
#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

/*
 * GET answers the policy (a bucket never given one answers the defaults).
 * PUT merges the fields given into the current policy, checks the result
 * (against the topology when the node has one) and commits it through the
 * region group; DELETE returns the bucket to the defaults. Every change is a
 * replicated command, so every node of the region enforces the same policy.
 * Reads pass a ReadIndex barrier like every other read.
 */

#define RPO_RTO_SECONDS_MAX (365u * 86400)

typedef struct {
    api__req *r;
    char bucket[NODE_BUCKET_NAME_MAX + 1];
    json_t *body; /* PUT: the parsed document */
    node_bucket_policy policy;
    int rc;
    const char *s3_code; /* a refusal decided on the worker, with its message */
    char message[300];
} policy_job;

static void set_error(policy_job *j, const char *code, const char *fmt, const char *a,
                      const char *b)
{
    j->s3_code = code;
    snprintf(j->message, sizeof j->message, fmt, a, b);
}

/* Fills list from a JSON array of region names; false (and j's error) when it is not one. */
static bool region_list(policy_job *j, const json_t *v, const char *field,
                        char (*list)[NODE_REGION_MAX + 1], uint32_t *count)
{
    if (!json_is_array(v) || json_array_size(v) > NODE_POLICY_REGIONS_MAX) {
        set_error(j, "InvalidPolicy", "%s: not an array of at most 8 region names%s", field, "");
        return false;
    }
    *count = 0;
    size_t i;
    const json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || json_string_length(e) > NODE_REGION_MAX) {
            set_error(j, "InvalidPolicy", "%s: not an array of region names%s", field, "");
            return false;
        }
        strcpy(list[(*count)++], json_string_value(e));
    }
    return true;
}

static bool seconds(policy_job *j, const json_t *v, const char *field, uint32_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > RPO_RTO_SECONDS_MAX) {
        set_error(j, "InvalidPolicy", "%s: not an integer number of seconds from 0 to a year%s",
                  field, "");
        return false;
    }
    *out = (uint32_t)json_integer_value(v);
    return true;
}

/* Applies the PUT document's fields to j->policy. */
static bool merge(policy_job *j)
{
    const char *key;
    json_t *v;
    json_object_foreach(j->body, key, v)
    {
        if (strcmp(key, "min_regions") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > NODE_POLICY_REGIONS_MAX) {
                set_error(j, "InvalidPolicy", "min_regions: not an integer from 1 to 8%s%s", "",
                          "");
                return false;
            }
            j->policy.min_regions = (uint32_t)json_integer_value(v);
        } else if (strcmp(key, "allowed_regions") == 0) {
            if (!region_list(j, v, key, j->policy.allowed, &j->policy.allowed_count)) return false;
        } else if (strcmp(key, "pinned_regions") == 0) {
            if (!region_list(j, v, key, j->policy.pinned, &j->policy.pinned_count)) return false;
        } else if (strcmp(key, "rpo_seconds") == 0) {
            if (!seconds(j, v, key, &j->policy.rpo_seconds)) return false;
        } else if (strcmp(key, "rto_seconds") == 0) {
            if (!seconds(j, v, key, &j->policy.rto_seconds)) return false;
        } else if (strcmp(key, "bucket") != 0) { /* a GET's document may be sent back as is */
            set_error(j, "InvalidPolicy", "%s: unknown field%s", key, "");
            return false;
        }
    }
    return true;
}

/* Every region a policy names must be one of the deployment's, when the node knows them. */
static bool in_topology(policy_job *j, const node_topology *t)
{
    if (t == NULL) return true;
    for (int pass = 0; pass < 2; pass++) {
        uint32_t count = pass ? j->policy.pinned_count : j->policy.allowed_count;
        for (uint32_t i = 0; i < count; i++) {
            const char *name = pass ? j->policy.pinned[i] : j->policy.allowed[i];
            if (node_topology_region(t, name) < 0) {
                set_error(j, "InvalidPolicy", "%s: %s is not a region of the topology",
                          pass ? "pinned_regions" : "allowed_regions", name);
                return false;
            }
        }
    }
    return true;
}

static void get_work(void *arg)
{
    policy_job *j = arg;
    node_bucket b;
    if ((j->rc = node_group_read_barrier_wait(j->r->server->group)) != 0) return;
    if ((j->rc = node_store_bucket_get(j->r->server->store, j->bucket, &b)) != 0) return;
    j->policy = b.policy;
}

static void put_work(void *arg)
{
    policy_job *j = arg;
    api_server *s = j->r->server;
    node_bucket b;
    if ((j->rc = node_group_read_barrier_wait(s->group)) != 0) return;
    if ((j->rc = node_store_bucket_get(s->store, j->bucket, &b)) != 0) return;
    j->policy = b.policy;
    if (!merge(j) || !in_topology(j, s->topology)) return;
    char why[200];
    size_t regions = s->topology ? s->topology->prices.region_count : 0;
    if (node_bucket_policy_check(&j->policy, regions, why, sizeof why) != 0) {
        set_error(j, "InvalidPolicy", "%s%s", why, "");
        return;
    }
    j->rc = node_cmd_bucket_policy_set(s->group, j->bucket, &j->policy);
}

static void delete_work(void *arg)
{
    policy_job *j = arg;
    node_bucket_policy_default(&j->policy);
    j->rc = node_cmd_bucket_policy_set(j->r->server->group, j->bucket, &j->policy);
}

static json_t *region_array(const char (*list)[NODE_REGION_MAX + 1], uint32_t count)
{
    json_t *a = json_array();
    for (uint32_t i = 0; a != NULL && i < count; i++)
        json_array_append_new(a, json_string(list[i]));
    return a;
}

static void respond_policy(api__req *r, const char *bucket, const node_bucket_policy *p)
{
    json_t *doc = json_pack("{s:s, s:I, s:o, s:o, s:I, s:I}", "bucket", bucket, "min_regions",
                            (json_int_t)p->min_regions, "allowed_regions",
                            region_array(p->allowed, p->allowed_count), "pinned_regions",
                            region_array(p->pinned, p->pinned_count), "rpo_seconds",
                            (json_int_t)p->rpo_seconds, "rto_seconds", (json_int_t)p->rto_seconds);
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    json_decref(doc);
    if (text == NULL) {
        api__respond_error(r, "InternalError", "Out of memory.");
        return;
    }
    api__respond(r, 200, NULL, "application/json", text, strlen(text));
    free(text);
}

static void job_done(api__req *r, void *arg)
{
    policy_job *j = arg;
    if (!r->aborted) {
        if (j->s3_code)
            api__respond_error(r, j->s3_code, j->message);
        else if (j->rc == TERN_EINVAL)
            api__respond_error(r, "InvalidPolicy", "The bucket policy is not valid.");
        else if (j->rc != 0)
            api__respond_store_error(r, j->rc, "NoSuchBucket");
        else if (r->op == API_OP_ADMIN_POLICY_DELETE)
            api__respond(r, 204, NULL, NULL, NULL, 0);
        else
            respond_policy(r, j->bucket, &j->policy);
    }
    json_decref(j->body);
    free(j);
}

void api__policy_handle(api__req *r)
{
    /* The router matched "buckets/NAME/policy". */
    const char *name = r->key + strlen("buckets/");
    size_t len = (size_t)(strchr(name, '/') - name);
    if (len > NODE_BUCKET_NAME_MAX) {
        api__respond_error(r, "NoSuchBucket", "The specified bucket does not exist.");
        return;
    }
    policy_job *j = calloc(1, sizeof *j);
    assert(j != NULL);
    j->r = r;
    memcpy(j->bucket, name, len);
    api__work_fn work = get_work;
    if (r->op == API_OP_ADMIN_POLICY_PUT) {
        json_error_t err;
        j->body = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, &err);
        if (j->body == NULL || !json_is_object(j->body)) {
            char msg[260];
            snprintf(msg, sizeof msg, "The body must be a JSON object of policy fields: %s",
                     j->body ? "not an object" : err.text);
            api__respond_error(r, "MalformedJSON", msg);
            json_decref(j->body);
            free(j);
            return;
        }
        work = put_work;
    } else if (r->op == API_OP_ADMIN_POLICY_DELETE) {
        work = delete_work;
    }
    api__job_submit(r, work, job_done, j);
}

bool api__residency_allows(const api_server *s, const node_bucket *b, char *msg, size_t msg_len)
{
    const char *region = s->config->region;
    if (node_bucket_policy_allows(&b->policy, region)) return true;
    /* Name the regions that may hold it, so the client knows where to send the request. */
    char allowed[NODE_POLICY_REGIONS_MAX * (NODE_REGION_MAX + 2) + 1] = "";
    for (uint32_t i = 0; i < b->policy.allowed_count; i++) {
        if (i) strcat(allowed, ", ");
        strcat(allowed, b->policy.allowed[i]);
    }
    snprintf(msg, msg_len,
             "Bucket %s keeps its data only in %s; this node is in region %s. Send the request "
             "to an endpoint of an allowed region.",
             b->name, allowed, region);
    return false;
}
