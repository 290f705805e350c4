/* Bucket durability and residency policies: defaults, consistency checks, residency. */
#include <ctype.h>
#include <string.h>

#include "node.h"

void node_bucket_policy_default(node_bucket_policy *p)
{
    memset(p, 0, sizeof *p);
    p->min_regions = 1;
}

/* The same alphabet as --region, so a policy can name every region a node can be in. */
static bool region_name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > NODE_REGION_MAX) return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)name[i]) && strchr("-_.", name[i]) == NULL) return false;
    return true;
}

static bool listed(const char (*list)[NODE_REGION_MAX + 1], uint32_t count, const char *name)
{
    for (uint32_t i = 0; i < count; i++)
        if (strcmp(list[i], name) == 0) return true;
    return false;
}

static int check_list(const char (*list)[NODE_REGION_MAX + 1], uint32_t count, const char *field,
                      char *errmsg, size_t errmsg_len)
{
    if (count > NODE_POLICY_REGIONS_MAX) {
        tern_errmsg(errmsg, errmsg_len, "%s: more than %d regions", field, NODE_POLICY_REGIONS_MAX);
        return TERN_EINVAL;
    }
    for (uint32_t i = 0; i < count; i++) {
        if (!region_name_valid(list[i])) {
            tern_errmsg(errmsg, errmsg_len,
                        "%s: '%s' is not a region name (1..64 letters, digits, '-', '_', '.')",
                        field, list[i]);
            return TERN_EINVAL;
        }
        if (listed(list, i, list[i])) {
            tern_errmsg(errmsg, errmsg_len, "%s: %s is listed twice", field, list[i]);
            return TERN_EINVAL;
        }
    }
    return 0;
}

int node_bucket_policy_check(const node_bucket_policy *p, size_t region_count, char *errmsg,
                             size_t errmsg_len)
{
    int rc = check_list(p->allowed, p->allowed_count, "allowed_regions", errmsg, errmsg_len);
    if (rc == 0) rc = check_list(p->pinned, p->pinned_count, "pinned_regions", errmsg, errmsg_len);
    if (rc != 0) return rc;
    for (uint32_t i = 0; p->allowed_count > 0 && i < p->pinned_count; i++)
        if (!listed(p->allowed, p->allowed_count, p->pinned[i])) {
            tern_errmsg(errmsg, errmsg_len, "pinned_regions: %s is not in allowed_regions",
                        p->pinned[i]);
            return TERN_EINVAL;
        }
    if (p->min_regions < 1) {
        tern_errmsg(errmsg, errmsg_len, "min_regions: must be at least 1");
        return TERN_EINVAL;
    }
    if (p->allowed_count > 0 && p->min_regions > p->allowed_count) {
        tern_errmsg(errmsg, errmsg_len, "min_regions: %u is more than the %u allowed regions",
                    p->min_regions, p->allowed_count);
        return TERN_EINVAL;
    }
    if (region_count > 0 && p->min_regions > region_count) {
        tern_errmsg(errmsg, errmsg_len,
                    "min_regions: %u is more than the %zu regions of the deployment",
                    p->min_regions, region_count);
        return TERN_EINVAL;
    }
    /* min_regions below the pinned count is allowed: pinned regions hold copies anyway. */
    return 0;
}

bool node_bucket_policy_allows(const node_bucket_policy *p, const char *region)
{
    return p->allowed_count == 0 || listed(p->allowed, p->allowed_count, region);
}
