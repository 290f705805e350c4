/* Unit tests of the region group's state machine: commands, exactly-once sessions, checkpoints. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "group.h"
#include "sm.h"
#include "store_fixture.h"
#include "store_internal.h"

typedef struct {
    fixture f;
    node_sm *sm;
    uint64_t index;
} smfix;

static int setup_sm(void **state)
{
    smfix *x = calloc(1, sizeof *x);
    if (x == NULL) return -1;
    strcpy(x->f.dir, "/tmp/tern-sm-XXXXXX");
    if (mkdtemp(x->f.dir) == NULL) return -1;
    x->f.replicated = true;
    fixture_open(&x->f);
    if (node_sm_create(x->f.s, &x->sm) != 0) return -1;
    *state = x;
    return 0;
}

static int teardown_sm(void **state)
{
    smfix *x = *state;
    node_sm_free(x->sm);
    node_store_close(x->f.s);
    nftw(x->f.dir, fixture_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(x);
    return 0;
}

/* Applies an encoded command at the next index; frees it; returns the result. */
static int apply(smfix *x, uint64_t client, uint64_t seq, uint8_t *cmd, size_t len)
{
    int rc = node_sm_apply(x->sm, ++x->index, client, seq, cmd, len);
    free(cmd);
    return rc;
}

static int bucket_create(smfix *x, const char *name)
{
    uint8_t *c;
    size_t n;
    assert_int_equal(node_sm_encode_bucket_create(name, "r1", 1000, &c, &n), 0);
    return apply(x, 0, 0, c, n);
}

/* Puts a block through a command; returns its reference. */
static node_block_ref block_cmd(smfix *x, uint32_t seed, size_t len)
{
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    fill(buf, len, seed);
    node_block_ref ref = {.size_bytes = (uint32_t)len};
    node_block_hash(buf, len, &ref.id);
    uint8_t *c;
    size_t n;
    assert_int_equal(node_sm_encode_block_put(&ref.id, buf, len, &c, &n), 0);
    free(buf);
    assert_int_equal(apply(x, 0, 0, c, n), 0);
    return ref;
}

static node_manifest manifest_of(node_block_ref *blocks, size_t count, const char *etag)
{
    node_manifest m = {.block_count = count, .blocks = blocks, .last_modified_ms = 5};
    for (size_t i = 0; i < count; i++)
        m.size_bytes += blocks[i].size_bytes;
    snprintf(m.etag, sizeof m.etag, "%s", etag);
    return m;
}

static int object_put(smfix *x, uint64_t client, uint64_t seq, const char *key, node_manifest *m)
{
    uint8_t *c;
    size_t n;
    assert_int_equal(node_sm_encode_object_put("bkt", key, m, &c, &n), 0);
    return apply(x, client, seq, c, n);
}

static void assert_etag(smfix *x, const char *key, const char *etag)
{
    node_manifest *m = NULL;
    assert_int_equal(node_store_object_get(x->f.s, "bkt", key, &m), 0);
    assert_string_equal(m->etag, etag);
    node_manifest_free(m);
}

static void test_commands_apply_and_record_index(void **state)
{
    smfix *x = *state;
    assert_int_equal(bucket_create(x, "bkt"), 0);
    assert_int_equal(bucket_create(x, "bkt"), TERN_EEXIST);
    node_block_ref b = block_cmd(x, 1, 4096);
    node_manifest m = manifest_of(&b, 1, "e1");
    assert_int_equal(object_put(x, 0, 0, "k", &m), 0);
    assert_etag(x, "k", "e1");
    uint64_t stamped = 0; /* recorded in the put's own batch (the apply stamp) */
    assert_int_equal(node_store_applied_get(x->f.s, &stamped), 0);
    assert_int_equal(stamped, x->index);
    /* A manifest naming a block never put is refused alike on every replica. */
    node_block_ref missing = {.size_bytes = 10};
    memset(missing.id.bytes, 0x5a, sizeof missing.id.bytes);
    node_manifest bad = manifest_of(&missing, 1, "e2");
    assert_int_equal(object_put(x, 0, 0, "k2", &bad), TERN_ECONFLICT);
    uint8_t *c;
    size_t n;
    assert_int_equal(node_sm_encode_bucket_delete("bkt", &c, &n), 0);
    assert_int_equal(apply(x, 0, 0, c, n), TERN_ENOTEMPTY);
    assert_int_equal(node_sm_encode_object_delete("bkt", "k", &c, &n), 0);
    assert_int_equal(apply(x, 0, 0, c, n), 0);
    assert_int_equal(node_sm_encode_object_delete("bkt", "k", &c, &n), 0);
    assert_int_equal(apply(x, 0, 0, c, n), TERN_ENOTFOUND);
    uint64_t applied = 0;
    assert_int_equal(node_store_applied_get(x->f.s, &applied), 0);
    assert_int_equal(applied, x->index);
}

static int policy_set(smfix *x, const char *bucket, const node_bucket_policy *p)
{
    uint8_t *c;
    size_t n;
    assert_int_equal(node_sm_encode_bucket_policy(bucket, p, &c, &n), 0);
    return apply(x, 0, 0, c, n);
}

/* A bucket policy is a replicated command: set, read back through the bucket record, survive a
 * reopen (record version 2), refused whole when inconsistent or for a missing bucket. */
static void test_bucket_policy_command(void **state)
{
    smfix *x = *state;
    assert_int_equal(bucket_create(x, "eu-docs"), 0);
    node_bucket b;
    assert_int_equal(node_store_bucket_get(x->f.s, "eu-docs", &b), 0);
    assert_int_equal(b.policy.min_regions, 1);
    assert_int_equal(b.policy.allowed_count, 0);
    assert_true(node_bucket_policy_allows(&b.policy, "anywhere"));

    node_bucket_policy p;
    node_bucket_policy_default(&p);
    p.min_regions = 2;
    p.rpo_seconds = 30;
    p.rto_seconds = 600;
    p.allowed_count = 2;
    strcpy(p.allowed[0], "eu-west");
    strcpy(p.allowed[1], "eu-central");
    p.pinned_count = 1;
    strcpy(p.pinned[0], "eu-west");
    assert_int_equal(policy_set(x, "eu-docs", &p), 0);
    assert_int_equal(node_store_bucket_get(x->f.s, "eu-docs", &b), 0);
    assert_int_equal(b.policy.min_regions, 2);
    assert_int_equal(b.policy.rpo_seconds, 30);
    assert_int_equal(b.policy.rto_seconds, 600);
    assert_int_equal(b.policy.allowed_count, 2);
    assert_string_equal(b.policy.allowed[1], "eu-central");
    assert_int_equal(b.policy.pinned_count, 1);
    assert_string_equal(b.policy.pinned[0], "eu-west");
    assert_int_equal(b.created_ms, 1000); /* the rest of the record is kept */
    assert_true(node_bucket_policy_allows(&b.policy, "eu-central"));
    assert_false(node_bucket_policy_allows(&b.policy, "us-east"));

    /* Inconsistent policies change nothing. */
    node_bucket_policy bad = p;
    strcpy(bad.pinned[0], "us-east");
    assert_int_equal(policy_set(x, "eu-docs", &bad), TERN_EINVAL);
    bad = p;
    bad.min_regions = 3;
    assert_int_equal(policy_set(x, "eu-docs", &bad), TERN_EINVAL);
    bad = p;
    strcpy(bad.allowed[1], "eu-west");
    assert_int_equal(policy_set(x, "eu-docs", &bad), TERN_EINVAL);
    bad = p;
    strcpy(bad.allowed[1], "bad name!");
    assert_int_equal(policy_set(x, "eu-docs", &bad), TERN_EINVAL);
    assert_int_equal(policy_set(x, "nobucket", &p), TERN_ENOTFOUND);
    assert_int_equal(node_store_bucket_get(x->f.s, "eu-docs", &b), 0);
    assert_int_equal(b.policy.min_regions, 2);
    assert_string_equal(b.policy.pinned[0], "eu-west");

    /* Survives a reopen; the listing decodes it too. */
    node_sm_free(x->sm);
    node_store_close(x->f.s);
    fixture_open(&x->f);
    assert_int_equal(node_sm_create(x->f.s, &x->sm), 0);
    node_bucket *list = NULL;
    size_t count = 0;
    assert_int_equal(node_store_bucket_list(x->f.s, &list, &count), 0);
    assert_int_equal(count, 1);
    assert_int_equal(list[0].policy.allowed_count, 2);
    free(list);

    /* A command cut short is refused. */
    uint8_t *c;
    size_t n;
    assert_int_equal(node_sm_encode_bucket_policy("eu-docs", &p, &c, &n), 0);
    assert_int_equal(node_sm_apply(x->sm, ++x->index, 0, 0, c, n - 3), TERN_EPARSE);
    free(c);
}

/* A bucket record written before policies existed (version 1) reads with the defaults. */
static void test_bucket_record_version_1(void **state)
{
    (void)state;
    node__buf rec = {0};
    node__buf_u8(&rec, 1);
    node__buf_u64(&rec, 777);
    node__buf_u8(&rec, 2);
    node__buf_bytes(&rec, "r9", 2);
    node_bucket b;
    assert_int_equal(node__bucket_decode("old", (const char *)rec.data, rec.len, &b), 0);
    assert_int_equal(b.created_ms, 777);
    assert_string_equal(b.region, "r9");
    assert_int_equal(b.policy.min_regions, 1);
    assert_int_equal(b.policy.allowed_count, 0);
    /* Trailing bytes after a version 1 record are corruption, not a policy. */
    node__buf_u32(&rec, 2);
    assert_int_equal(node__bucket_decode("old", (const char *)rec.data, rec.len, &b),
                     TERN_ECORRUPT);
    node__buf_free(&rec);
}

typedef struct {
    size_t count;
    uint64_t index[16];
    uint64_t hlc[16];
    uint32_t region[16];
    int type[16];
    size_t cmd_len[16];
} geo_seen;

static int collect_geo(void *ctx, uint64_t index, const void *rec, size_t len)
{
    geo_seen *g = ctx;
    assert_true(g->count < 16);
    const uint8_t *cmd;
    size_t n;
    assert_int_equal(
        node_sm_geo_decode(rec, len, &g->hlc[g->count], &g->region[g->count], &cmd, &n), 0);
    g->index[g->count] = index;
    g->type[g->count] = cmd[1];
    g->cmd_len[g->count] = n;
    g->count++;
    return 0;
}

/* The region's own changes land in the geo log with the change itself: in log order, each
 * with a version past the previous one and no earlier than its own time, stamped with the
 * region; blocks, refused commands and missing deletes leave no record; a small PUT's inline
 * block stays out of it; the clock survives a reopen. */
static void test_geo_log_records_changes(void **state)
{
    smfix *x = *state;
    node_sm_set_region(x->sm, "eu-west", true);
    assert_int_equal(bucket_create(x, "bkt"), 0);           /* 1: logged */
    assert_int_equal(bucket_create(x, "bkt"), TERN_EEXIST); /* refused: not logged */
    node_block_ref b = block_cmd(x, 7, 2048);               /* a block: not logged */
    node_manifest m = manifest_of(&b, 1, "e1");
    m.last_modified_ms = 1700000000000;
    assert_int_equal(object_put(x, 0, 0, "k", &m), 0); /* logged, dated by its mtime */
    uint8_t *c;
    size_t n;
    uint8_t data[100];
    fill(data, sizeof data, 3);
    node_block_ref inl = {.size_bytes = sizeof data};
    node_block_hash(data, sizeof data, &inl.id);
    node_manifest m2 = manifest_of(&inl, 1, "e2");
    m2.last_modified_ms = 1600000000000; /* older than the clock: the clock wins */
    assert_int_equal(node_sm_encode_object_put_with_block("bkt", "small", &m2, &inl.id, data,
                                                          sizeof data, &c, &n),
                     0);
    size_t with_block_len = n;
    assert_int_equal(apply(x, 0, 0, c, n), 0);
    assert_int_equal(node_sm_encode_object_delete("bkt", "nope", &c, &n), 0);
    assert_int_equal(apply(x, 0, 0, c, n), TERN_ENOTFOUND); /* nothing deleted: not logged */
    assert_int_equal(node_sm_encode_object_delete("bkt", "k", &c, &n), 0);
    assert_int_equal(apply(x, 0, 0, c, n), 0);

    geo_seen g = {0};
    assert_int_equal(node_store_geolog_read(x->f.s, 0, 100, collect_geo, &g), 4);
    assert_int_equal(g.count, 4);
    int types[] = {1 /* BUCKET_CREATE */, 4 /* OBJECT_PUT */, 4 /* the inline form, plain */,
                   5 /* OBJECT_DELETE */};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(g.type[i], types[i]);
        assert_int_equal(g.region[i], node_sm_region_id("eu-west"));
        if (i > 0) {
            assert_true(g.index[i] > g.index[i - 1]);
            assert_true(g.hlc[i] > g.hlc[i - 1]);
        }
    }
    assert_int_equal(tern_hlc_physical_ms(g.hlc[1]), 1700000000000);
    assert_true(g.cmd_len[2] + sizeof data < with_block_len); /* the block bytes stayed out */
    /* Reading after an index resumes there; max bounds a batch. */
    geo_seen tail = {0};
    assert_int_equal(node_store_geolog_read(x->f.s, g.index[1], 1, collect_geo, &tail), 1);
    assert_int_equal(tail.index[0], g.index[2]);

    /* After a reopen the clock goes on from the last record. */
    node_sm_free(x->sm);
    node_store_close(x->f.s);
    fixture_open(&x->f);
    assert_int_equal(node_sm_create(x->f.s, &x->sm), 0);
    node_sm_set_region(x->sm, "eu-west", true);
    assert_int_equal(bucket_create(x, "bkt2"), 0);
    geo_seen after = {0};
    assert_int_equal(node_store_geolog_read(x->f.s, g.index[3], 10, collect_geo, &after), 1);
    uint64_t stored = 0;
    assert_int_equal(node_store_geo_hlc_get(x->f.s, &stored), 0);
    assert_int_equal(stored, after.hlc[0]);

    /* Trimming through an index drops it and everything before, nothing after; the trim is a
     * replicated command like any other. */
    assert_int_equal(node_sm_encode_geo_trim(g.index[2], &c, &n), 0);
    assert_int_equal(apply(x, 0, 0, c, n), 0);
    geo_seen rest = {0};
    assert_int_equal(node_store_geolog_read(x->f.s, 0, 100, collect_geo, &rest), 2);
    assert_int_equal(rest.index[0], g.index[3]);
    assert_int_equal(rest.index[1], after.index[0]);

    /* A region without peers logs nothing. */
    node_sm_set_region(x->sm, "eu-west", false);
    assert_int_equal(bucket_create(x, "bkt3"), 0);
    geo_seen none = {0};
    assert_int_equal(node_store_geolog_read(x->f.s, after.index[0], 10, collect_geo, &none), 0);
    assert_true(after.hlc[0] > g.hlc[3]);
}

/* ---- two regions exchanging their geo logs ---- */

typedef struct {
    smfix x;
    const char *name;
    uint64_t shipped; /* the highest index of this region's log delivered to the other */
} region_fix;

static void region_open(region_fix *g, const char *name)
{
    memset(g, 0, sizeof *g);
    g->name = name;
    strcpy(g->x.f.dir, "/tmp/tern-geo-XXXXXX");
    assert_non_null(mkdtemp(g->x.f.dir));
    g->x.f.replicated = true;
    fixture_open(&g->x.f);
    assert_int_equal(node_sm_create(g->x.f.s, &g->x.sm), 0);
    node_sm_set_region(g->x.sm, name, true);
}

static void region_close(region_fix *g)
{
    node_sm_free(g->x.sm);
    node_store_close(g->x.f.s);
    nftw(g->x.f.dir, fixture_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct {
    region_fix *to;
    uint32_t origin;
    uint64_t last;
    size_t applied;
} delivery;

static int deliver_one(void *ctx, uint64_t index, const void *rec, size_t len)
{
    delivery *d = ctx;
    uint64_t hlc;
    uint32_t region;
    const uint8_t *change;
    size_t change_len;
    assert_int_equal(node_sm_geo_decode(rec, len, &hlc, &region, &change, &change_len), 0);
    assert_int_equal(region, d->origin);
    uint8_t *c;
    size_t n;
    assert_int_equal(
        node_sm_encode_geo_apply(region, index, hlc, 0, true, false, change, change_len, &c, &n), 0);
    assert_int_equal(apply(&d->to->x, 0, 0, c, n), 0);
    d->last = index;
    d->applied++;
    return 0;
}

/* Delivers up to max entries of from's log after `after` to `to`; returns the last index. */
static uint64_t ship(region_fix *from, region_fix *to, uint64_t after, size_t max)
{
    delivery d = {to, node_sm_region_id(from->name), after, 0};
    assert_true(node_store_geolog_read(from->x.f.s, after, max, deliver_one, &d) >= 0);
    return d.last;
}

typedef struct {
    char keys[64][16];
    char etags[64][NODE_ETAG_MAX + 1];
    size_t count;
} listing;

static void list_all(region_fix *g, listing *out)
{
    memset(out, 0, sizeof *out);
    node_object_iter *it;
    assert_int_equal(node_store_object_iter_open(g->x.f.s, "bkt", "", &it), 0);
    node_object_entry e;
    while (node_store_object_iter_next(it, &e) == 1) {
        assert_true(out->count < 64);
        snprintf(out->keys[out->count], sizeof out->keys[0], "%s", e.key);
        snprintf(out->etags[out->count], sizeof out->etags[0], "%s", e.etag);
        out->count++;
    }
    node_store_object_iter_close(it);
}

/* Concurrent writes of the same keys in two regions, deletes among them, each region's log
 * delivered to the other in random slices (and again, as after a leader change): both end
 * with the same objects, and every key holds the write with the newest version. */
static void test_geo_regions_converge(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        region_fix a, b;
        region_open(&a, "us-east");
        region_open(&b, "eu-west");
        assert_int_equal(bucket_create(&a.x, "bkt"), 0);
        assert_int_equal(bucket_create(&b.x, "bkt"), 0);
        node_block_ref blocks[4];
        for (int i = 0; i < 4; i++) {
            blocks[i] = block_cmd(&a.x, (uint32_t)i + 100, 1000);
            block_cmd(&b.x, (uint32_t)i + 100, 1000); /* block shipping is not modelled here */
        }
        uint64_t s = seed * 7919;
        uint64_t a_after = 0, b_after = 0;
        int64_t now = 1700000000000;
        for (int step = 0; step < 60; step++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            region_fix *g = (s >> 33) % 2 ? &a : &b;
            char key[16];
            snprintf(key, sizeof key, "k%d", (int)((s >> 40) % 6));
            /* Clocks of the two regions drift apart by up to a second. */
            now += (int64_t)((s >> 20) % 50);
            int64_t t = now + (g == &a ? 0 : (int64_t)((s >> 12) % 1000) - 500);
            int action = (int)((s >> 50) % 10);
            uint8_t *c;
            size_t n;
            if (action < 6) {
                char etag[16];
                snprintf(etag, sizeof etag, "%s-%d", g->name, step);
                node_manifest m = manifest_of(&blocks[(s >> 28) % 4], 1, etag);
                m.last_modified_ms = t;
                assert_int_equal(node_sm_encode_object_put("bkt", key, &m, &c, &n), 0);
                assert_int_equal(apply(&g->x, 0, 0, c, n), 0);
            } else if (action < 8) {
                /* Deletes with their own time, and (as logs written before they had one) a
                 * delete versioned by the region clock alone. */
                if (action == 6)
                    assert_int_equal(node_sm_encode_object_delete_at("bkt", key, t, &c, &n), 0);
                else
                    assert_int_equal(node_sm_encode_object_delete("bkt", key, &c, &n), 0);
                int rc = apply(&g->x, 0, 0, c, n);
                assert_true(rc == 0 || rc == TERN_ENOTFOUND);
                /* Now and then the bucket's policy changes too, in either region. */
                if ((s >> 5) % 3 == 0) {
                    node_bucket_policy p;
                    node_bucket_policy_default(&p);
                    p.min_regions = 1 + (uint32_t)((s >> 7) % 3);
                    p.rpo_seconds = (uint32_t)step;
                    assert_int_equal(node_sm_encode_bucket_policy("bkt", &p, &c, &n), 0);
                    assert_int_equal(apply(&g->x, 0, 0, c, n), 0);
                }
            } else if (action == 8) {
                a_after = ship(&a, &b, a_after, 1 + (s >> 8) % 5);
            } else {
                b_after = ship(&b, &a, b_after, 1 + (s >> 8) % 5);
            }
        }
        /* Everything again from the start (a new leader that lost its cursor), then the rest:
         * the duplicates change nothing. */
        ship(&a, &b, 0, 1000);
        ship(&b, &a, 0, 1000);
        listing la, lb;
        list_all(&a, &la);
        list_all(&b, &lb);
        assert_int_equal(la.count, lb.count);
        /* The bucket's policy: the one set last wins in both. */
        node_bucket ba, bb;
        assert_int_equal(node_store_bucket_get(a.x.f.s, "bkt", &ba), 0);
        assert_int_equal(node_store_bucket_get(b.x.f.s, "bkt", &bb), 0);
        assert_int_equal(ba.policy.min_regions, bb.policy.min_regions);
        assert_int_equal(ba.policy.rpo_seconds, bb.policy.rpo_seconds);
        for (size_t i = 0; i < la.count; i++) {
            assert_string_equal(la.keys[i], lb.keys[i]);
            assert_string_equal(la.etags[i], lb.etags[i]);
        }
        /* Each key's version is the same on both sides (a tombstone's included). */
        for (int k = 0; k < 6; k++) {
            char key[16];
            snprintf(key, sizeof key, "k%d", k);
            uint64_t ha = 0, hb = 0;
            uint32_t ra = 0, rb = 0;
            bool da = false, db = false;
            int rca = node_sm_version_get(a.x.sm, "bkt", key, &ha, &ra, &da);
            int rcb = node_sm_version_get(b.x.sm, "bkt", key, &hb, &rb, &db);
            assert_int_equal(rca, rcb);
            assert_true(ha == hb && ra == rb && da == db);
        }
        region_close(&a);
        region_close(&b);
    }
}

typedef struct {
    uint64_t index;
    uint8_t rec[1024];
    size_t len;
} grabbed;

static int grab_record(void *ctx, uint64_t index, const void *rec, size_t len)
{
    grabbed *g = ctx;
    assert_true(len <= sizeof g->rec);
    g->index = index;
    memcpy(g->rec, rec, len);
    g->len = len;
    return 0;
}

/* Applies the grabbed record to region to as a GEO_APPLY; returns the result. */
static int deliver(region_fix *to, const grabbed *gr)
{
    uint64_t hlc;
    uint32_t region;
    const uint8_t *change;
    size_t change_len;
    assert_int_equal(node_sm_geo_decode(gr->rec, gr->len, &hlc, &region, &change, &change_len), 0);
    uint8_t *c;
    size_t n;
    assert_int_equal(
        node_sm_encode_geo_apply(region, gr->index, hlc, 0, true, false, change, change_len, &c, &n), 0);
    return apply(&to->x, 0, 0, c, n);
}

/* Tombstones: a scan proposes only those every peer has passed (hlc <= bound), and GEO_GC
 * collects a key's version only while it is still that tombstone. Marks raise a peer's bound
 * and never lower it. */
static void test_geo_tombstones_are_collected_once_passed(void **state)
{
    (void)state;
    region_fix a, b;
    region_open(&a, "us-east");
    region_open(&b, "eu-west");
    assert_int_equal(bucket_create(&a.x, "bkt"), 0);
    node_block_ref blk = block_cmd(&a.x, 9, 100);
    node_manifest m = manifest_of(&blk, 1, "v1");
    m.last_modified_ms = 1800000000000;
    assert_int_equal(object_put(&a.x, 0, 0, "gone", &m), 0);
    assert_int_equal(object_put(&a.x, 0, 0, "kept", &m), 0);
    uint8_t *c;
    size_t n;
    for (int i = 0; i < 2; i++) {
        const char *key = i ? "kept" : "gone";
        assert_int_equal(node_sm_encode_object_delete_at("bkt", key, 1800000001000, &c, &n), 0);
        assert_int_equal(apply(&a.x, 0, 0, c, n), 0);
    }
    uint64_t t, tomb_hlc;
    uint32_t origin;
    bool deleted;
    assert_int_equal(node_sm_version_get(a.x.sm, "bkt", "gone", &tomb_hlc, &origin, &deleted), 0);
    assert_true(deleted);
    size_t count;
    assert_int_equal(node_geo_tombstone_count(a.x.f.s, &count), 0);
    assert_int_equal(count, 2);
    /* A bound below the tombstones: nothing to collect. */
    char cursor[256] = "";
    size_t found = 99;
    assert_int_equal(
        node_sm_geo_gc_scan(a.x.f.s, tomb_hlc - 1, cursor, sizeof cursor, 100, 100, &c, &n, &found),
        0);
    free(c);
    assert_int_equal(found, 0);
    /* Every peer passed them: both are proposed. "kept" is written again before the command
     * applies, so only "gone" goes. */
    assert_int_equal(node_sm_geo_gc_scan(a.x.f.s, UINT64_MAX - 1, cursor, sizeof cursor, 100, 100,
                                         &c, &n, &found),
                     0);
    assert_int_equal(found, 2);
    m.last_modified_ms = 1800000002000;
    assert_int_equal(object_put(&a.x, 0, 0, "kept", &m), 0);
    assert_int_equal(apply(&a.x, 0, 0, c, n), 0);
    assert_int_equal(node_sm_version_get(a.x.sm, "bkt", "gone", &t, &origin, &deleted),
                     TERN_ENOTFOUND);
    assert_int_equal(node_sm_version_get(a.x.sm, "bkt", "kept", &t, &origin, &deleted), 0);
    assert_false(deleted);
    assert_int_equal(node_geo_tombstone_count(a.x.f.s, &count), 0);
    assert_int_equal(count, 0);
    /* Marks: b learns a's bound; an older mark does not lower it. */
    uint32_t from_a = node_sm_region_id("us-east");
    uint64_t index, bound;
    assert_int_equal(node_sm_encode_geo_mark(from_a, 5000, 0, &c, &n), 0);
    assert_int_equal(apply(&b.x, 0, 0, c, n), 0);
    assert_int_equal(node_sm_encode_geo_mark(from_a, 4000, 0, &c, &n), 0);
    assert_int_equal(apply(&b.x, 0, 0, c, n), 0);
    assert_int_equal(node_geo_received_get(b.x.f.s, from_a, &index, &bound), 0);
    assert_int_equal(index, 0);
    assert_int_equal(bound, 5000);
    /* A region's own mark echoed back is refused. */
    assert_int_equal(node_sm_encode_geo_mark(node_sm_region_id("eu-west"), 6000, 0, &c, &n), 0);
    assert_int_equal(apply(&b.x, 0, 0, c, n), TERN_EINVAL);
    region_close(&a);
    region_close(&b);
}

/* A delete carries its own time: a region whose clock lagged (it wrote nothing for a while)
 * deletes a key after another region wrote it, and the delete wins everywhere. A delete
 * versioned by the lagging clock alone would lose to the earlier write. */
static void test_geo_delete_carries_its_time(void **state)
{
    (void)state;
    for (int with_time = 0; with_time < 2; with_time++) {
        region_fix a, b;
        region_open(&a, "us-east");
        region_open(&b, "eu-west");
        assert_int_equal(bucket_create(&a.x, "bkt"), 0);
        assert_int_equal(bucket_create(&b.x, "bkt"), 0);
        node_block_ref blk = block_cmd(&a.x, 7, 100);
        block_cmd(&b.x, 7, 100);
        node_manifest m = manifest_of(&blk, 1, "old-b");
        m.last_modified_ms = 1700000000000; /* b's last write, long ago */
        assert_int_equal(object_put(&b.x, 0, 0, "k", &m), 0);
        m = manifest_of(&blk, 1, "from-a");
        m.last_modified_ms = 1900000000000; /* a writes k at T1 */
        assert_int_equal(object_put(&a.x, 0, 0, "k", &m), 0);
        uint8_t *c;
        size_t n;
        /* b deletes k at T2 > T1, before a's write has reached it. */
        if (with_time)
            assert_int_equal(node_sm_encode_object_delete_at("bkt", "k", 1900000005000, &c, &n), 0);
        else
            assert_int_equal(node_sm_encode_object_delete("bkt", "k", &c, &n), 0);
        assert_int_equal(apply(&b.x, 0, 0, c, n), 0);
        ship(&a, &b, 0, 100);
        ship(&b, &a, 0, 100);
        node_manifest *got = NULL;
        int rca = node_store_object_get(a.x.f.s, "bkt", "k", &got);
        node_manifest_free(got);
        got = NULL;
        int rcb = node_store_object_get(b.x.f.s, "bkt", "k", &got);
        node_manifest_free(got);
        assert_int_equal(rca, rcb); /* converged either way */
        assert_int_equal(rca, with_time ? TERN_ENOTFOUND : 0);
        region_close(&a);
        region_close(&b);
    }
}

/* A put newer than the key's version whose blocks are not here is refused and records
 * nothing: sent again once its blocks are here, it applies. A change seen before is a no-op,
 * an echo of the region's own change is refused, and later local writes are newer than what
 * arrived (the clock merged the remote timestamp). */
static void test_geo_apply_edges(void **state)
{
    (void)state;
    region_fix a, b;
    region_open(&a, "us-east");
    region_open(&b, "eu-west");
    assert_int_equal(bucket_create(&a.x, "bkt"), 0);
    assert_int_equal(bucket_create(&b.x, "bkt"), 0);
    node_block_ref blk = block_cmd(&a.x, 42, 500);
    node_manifest m = manifest_of(&blk, 1, "from-a");
    m.last_modified_ms = 1900000000000; /* a's clock runs ahead of b's writes below */
    assert_int_equal(object_put(&a.x, 0, 0, "k", &m), 0);
    grabbed put = {0};
    assert_int_equal(node_store_geolog_read(a.x.f.s, 0, 10, grab_record, &put), 2);

    assert_int_equal(deliver(&b, &put), TERN_ECONFLICT); /* its block is not in b yet */
    uint32_t from_a = node_sm_region_id("us-east");
    assert_int_equal(node_sm_geo_received(b.x.sm, from_a), 0); /* refused: not recorded */
    node_manifest *got = NULL;
    assert_int_equal(node_store_object_get(b.x.f.s, "bkt", "k", &got), TERN_ENOTFOUND);
    block_cmd(&b.x, 42, 500); /* the block arrives */
    assert_int_equal(deliver(&b, &put), 0);
    assert_int_equal(node_store_object_get(b.x.f.s, "bkt", "k", &got), 0);
    assert_string_equal(got->etag, "from-a");
    node_manifest_free(got);
    assert_int_equal(node_sm_geo_received(b.x.sm, from_a), put.index);
    assert_int_equal(deliver(&b, &put), 0); /* again: nothing changes */

    /* b writes the key after receiving it: its version is newer, whatever b's mtime says. */
    node_manifest mb = manifest_of(&blk, 1, "from-b");
    mb.last_modified_ms = 1700000000000;
    assert_int_equal(object_put(&b.x, 0, 0, "k", &mb), 0);
    grabbed bput = {0};
    assert_int_equal(node_store_geolog_read(b.x.f.s, 0, 10, grab_record, &bput), 2);
    assert_int_equal(deliver(&a, &bput), 0);
    assert_int_equal(node_store_object_get(a.x.f.s, "bkt", "k", &got), 0);
    assert_string_equal(got->etag, "from-b");
    node_manifest_free(got);

    /* Its own change echoed back is refused. */
    assert_int_equal(deliver(&a, &put), TERN_EINVAL);
    region_close(&a);
    region_close(&b);
}

/* Policy consistency rules, named by field. */
static void test_bucket_policy_check(void **state)
{
    (void)state;
    node_bucket_policy p;
    node_bucket_policy_default(&p);
    char why[200];
    assert_int_equal(node_bucket_policy_check(&p, 0, why, sizeof why), 0);
    p.min_regions = 4;
    assert_int_equal(node_bucket_policy_check(&p, 3, why, sizeof why), TERN_EINVAL);
    assert_non_null(strstr(why, "min_regions: 4 is more than the 3 regions of the deployment"));
    p.min_regions = 0;
    assert_int_equal(node_bucket_policy_check(&p, 0, why, sizeof why), TERN_EINVAL);
    assert_non_null(strstr(why, "min_regions"));
    node_bucket_policy_default(&p);
    p.allowed_count = 1;
    strcpy(p.allowed[0], "eu-west");
    p.pinned_count = 1;
    strcpy(p.pinned[0], "us-east");
    assert_int_equal(node_bucket_policy_check(&p, 0, why, sizeof why), TERN_EINVAL);
    assert_string_equal(why, "pinned_regions: us-east is not in allowed_regions");
    /* With every region allowed, any pinned region is within it. */
    p.allowed_count = 0;
    assert_int_equal(node_bucket_policy_check(&p, 0, why, sizeof why), 0);
}

static void test_retry_applies_once(void **state)
{
    smfix *x = *state;
    assert_int_equal(bucket_create(x, "bkt"), 0);
    node_block_ref b1 = block_cmd(x, 1, 4096), b2 = block_cmd(x, 2, 4096);
    node_manifest m1 = manifest_of(&b1, 1, "v1"), m2 = manifest_of(&b2, 1, "v2");
    const uint64_t client = 0x0100000000000007ull;
    assert_int_equal(object_put(x, client, 1, "k", &m1), 0);
    assert_int_equal(object_put(x, 0, 0, "k", &m2), 0); /* another writer */
    /* The retry of seq 1 (e.g. re-sent to a new leader) must not revert k to v1. */
    assert_int_equal(object_put(x, client, 1, "k", &m1), 0);
    assert_etag(x, "k", "v2");
    /* A manifest naming a block that is not stored fails; its retry returns the recorded
     * failure even once the block is there. */
    node_block_ref b3 = {.size_bytes = 4096};
    uint8_t buf3[4096];
    fill(buf3, sizeof buf3, 3);
    node_block_hash(buf3, sizeof buf3, &b3.id);
    node_manifest m3 = manifest_of(&b3, 1, "v3");
    assert_int_equal(object_put(x, client, 2, "k2", &m3), TERN_ECONFLICT);
    block_cmd(x, 3, 4096);
    assert_int_equal(object_put(x, client, 2, "k2", &m3), TERN_ECONFLICT);
    node_manifest *none = NULL;
    assert_int_equal(node_store_object_get(x->f.s, "bkt", "k2", &none), TERN_ENOTFOUND);
    /* Sessions survive a restart of the node. */
    node_sm_free(x->sm);
    fixture_reopen(&x->f);
    assert_int_equal(node_sm_create(x->f.s, &x->sm), 0);
    assert_int_equal(object_put(x, client, 1, "k", &m1), 0);
    assert_etag(x, "k", "v2");
    /* Out-of-order seqs inside the window each apply once. */
    assert_int_equal(object_put(x, client, 10, "a", &m1), 0);
    assert_int_equal(object_put(x, client, 5, "b", &m1), 0);
    assert_int_equal(object_put(x, 0, 0, "b", &m2), 0);
    assert_int_equal(object_put(x, client, 5, "b", &m1), 0);
    assert_etag(x, "b", "v2");
    /* Beyond the window the answer is "unknown", never a second apply. */
    assert_int_equal(object_put(x, client, 10 + NODE_SM_SESSION_WINDOW, "c", &m1), 0);
    assert_int_equal(object_put(x, 0, 0, "a", &m2), 0);
    assert_int_equal(object_put(x, client, 10, "a", &m1), TERN_EPRECOND);
    assert_etag(x, "a", "v2");
}

static void test_replay_is_idempotent(void **state)
{
    smfix *x = *state;
    assert_int_equal(bucket_create(x, "bkt"), 0);
    node_block_ref b[2] = {block_cmd(x, 1, 8192), block_cmd(x, 2, 8192)};
    node_manifest m = manifest_of(b, 2, "v1");
    assert_int_equal(object_put(x, 0, 0, "k", &m), 0);
    node_store_stats before, after;
    assert_int_equal(node_store_stats_get(x->f.s, &before), 0);
    /* A crash may lose the applied index of the last command: replaying it changes nothing. */
    node_block_ref again = block_cmd(x, 2, 8192);
    assert_memory_equal(again.id.bytes, b[1].id.bytes, NODE_BLOCK_ID_BYTES);
    assert_int_equal(object_put(x, 0, 0, "k", &m), 0);
    assert_int_equal(node_store_stats_get(x->f.s, &after), 0);
    assert_int_equal(after.object_count, before.object_count);
    assert_int_equal(after.referenced_block_bytes, before.referenced_block_bytes);
    assert_int_equal(after.block_count, before.block_count);
}

static void test_malformed_commands_are_refused(void **state)
{
    smfix *x = *state;
    assert_int_equal(bucket_create(x, "bkt"), 0);
    node_block_ref b = block_cmd(x, 1, 4096);
    node_manifest m = manifest_of(&b, 1, "v1");
    uint8_t *c;
    size_t n;
    assert_int_equal(node_sm_encode_object_put("bkt", "k", &m, &c, &n), 0);
    /* Every truncation is refused as malformed and changes nothing. */
    for (size_t len = 0; len < n; len++)
        assert_int_equal(node_sm_apply(x->sm, ++x->index, 0, 0, c, len), TERN_EPARSE);
    c[0] = 9; /* unknown version */
    assert_int_equal(node_sm_apply(x->sm, ++x->index, 0, 0, c, n), TERN_EPARSE);
    c[0] = 1;
    c[1] = 99; /* unknown type */
    assert_int_equal(node_sm_apply(x->sm, ++x->index, 0, 0, c, n), TERN_EPARSE);
    free(c);
    node_manifest *got = NULL;
    assert_int_equal(node_store_object_get(x->f.s, "bkt", "k", &got), TERN_ENOTFOUND);
}

static void test_multipart_through_commands(void **state)
{
    smfix *x = *state;
    assert_int_equal(bucket_create(x, "bkt"), 0);
    const char *id = "0123456789abcdef0123456789abcdef";
    uint8_t *c;
    size_t n;
    assert_int_equal(node_sm_encode_upload_create("bkt", "big", id, 77, NULL, &c, &n), 0);
    assert_int_equal(apply(x, 0, 0, c, n), 0);
    node_block_ref b = block_cmd(x, 3, 4096);
    node_part part = {.part_number = 1, .size_bytes = 4096, .block_count = 1, .blocks = &b};
    strcpy(part.etag, "p1");
    assert_int_equal(node_sm_encode_part_put("bkt", "big", id, &part, &c, &n), 0);
    assert_int_equal(apply(x, 0, 0, c, n), 0);
    node_manifest final = manifest_of(&b, 1, "f-1");
    assert_int_equal(node_sm_encode_upload_complete("bkt", "big", id, &final, &c, &n), 0);
    assert_int_equal(apply(x, 0, 0, c, n), 0);
    assert_etag(x, "big", "f-1");
    assert_int_equal(node_sm_encode_upload_abort("bkt", "big", id, &c, &n), 0);
    assert_int_equal(apply(x, 0, 0, c, n), TERN_ENOTFOUND);
}

static void test_last_block_travels_with_its_manifest(void **state)
{
    smfix *x = *state;
    assert_int_equal(bucket_create(x, "bkt"), 0);
    node_block_ref first = block_cmd(x, 1, 4096);
    uint8_t last[1000];
    fill(last, sizeof last, 2);
    node_block_ref refs[2] = {first, {.size_bytes = sizeof last}};
    node_block_hash(last, sizeof last, &refs[1].id);
    node_manifest m = manifest_of(refs, 2, "two");
    uint8_t *c;
    size_t n;
    assert_int_equal(node_sm_encode_object_put_with_block("bkt", "k", &m, &refs[1].id, last,
                                                          sizeof last, &c, &n),
                     0);
    /* Truncated anywhere, the command is refused and nothing of it is visible. */
    for (size_t len = 0; len < n; len += 97)
        assert_int_equal(node_sm_apply(x->sm, ++x->index, 0, 0, c, len), TERN_EPARSE);
    node_manifest *got = NULL;
    assert_int_equal(node_store_object_get(x->f.s, "bkt", "k", &got), TERN_ENOTFOUND);
    assert_int_equal(apply(x, 0, 0, c, n), 0);
    assert_etag(x, "k", "two");
    void *data;
    size_t len;
    assert_int_equal(node_store_block_get(x->f.s, &refs[1].id, true, &data, &len), 0);
    assert_int_equal(len, sizeof last);
    assert_memory_equal(data, last, sizeof last);
    free(data);

    /* The part form. */
    const char *id = "00112233445566778899aabbccddeeff";
    assert_int_equal(node_sm_encode_upload_create("bkt", "mp", id, 1, NULL, &c, &n), 0);
    assert_int_equal(apply(x, 0, 0, c, n), 0);
    node_part part = {
        .part_number = 1, .size_bytes = sizeof last, .block_count = 1, .blocks = &refs[1]};
    strcpy(part.etag, "p");
    assert_int_equal(node_sm_encode_part_put_with_block("bkt", "mp", id, &part, &refs[1].id, last,
                                                        sizeof last, &c, &n),
                     0);
    assert_int_equal(apply(x, 0, 0, c, n), 0);
    node_part *parts = NULL;
    size_t count = 0;
    assert_int_equal(node_store_upload_parts_list(x->f.s, "bkt", "mp", id, &parts, &count), 0);
    assert_int_equal(count, 1);
    assert_string_equal(parts[0].etag, "p");
    node_parts_free(parts, count);
}

static void test_orphans_are_reported_and_collected_by_command(void **state)
{
    smfix *x = *state;
    assert_int_equal(bucket_create(x, "bkt"), 0);
    node_block_ref kept = block_cmd(x, 1, 4096), orphan = block_cmd(x, 2, 4096);
    /* A block whose last reference goes stays stored until collected. */
    node_manifest mo = manifest_of(&orphan, 1, "o");
    assert_int_equal(object_put(x, 0, 0, "k", &mo), 0);
    node_manifest m = manifest_of(&kept, 1, "v1");
    assert_int_equal(object_put(x, 0, 0, "k", &m), 0);
    void *held;
    size_t held_len;
    assert_int_equal(node_store_block_get(x->f.s, &orphan.id, false, &held, &held_len), 0);
    free(held);
    node_scrub_result r;
    assert_int_equal(node_store_scrub_step(x->f.s, 1u << 30, &r), 0);
    assert_int_equal(r.orphans_deleted, 0); /* a replicated store never collects on its own */
    assert_int_equal(r.orphan_count, 1);
    assert_memory_equal(r.orphans[0].bytes, orphan.id.bytes, NODE_BLOCK_ID_BYTES);
    free(r.orphans);
    node_block_id ids[2] = {kept.id, orphan.id};
    uint8_t *c;
    size_t n;
    assert_int_equal(node_sm_encode_blocks_collect(ids, 2, &c, &n), 0);
    assert_int_equal(apply(x, 0, 0, c, n), 0);
    void *data;
    size_t len;
    assert_int_equal(node_store_block_get(x->f.s, &orphan.id, false, &data, &len), TERN_ENOTFOUND);
    assert_int_equal(node_store_block_get(x->f.s, &kept.id, false, &data, &len), 0);
    free(data);
}

static void test_checkpoint_install_replaces_replicated_state(void **state)
{
    smfix *x = *state;
    assert_int_equal(bucket_create(x, "bkt"), 0);
    node_block_ref b = block_cmd(x, 1, 4096);
    node_manifest m = manifest_of(&b, 1, "leader");
    assert_int_equal(object_put(x, 0x42, 1, "k", &m), 0);
    char cp[96];
    snprintf(cp, sizeof cp, "%s/checkpoint", x->f.dir);
    assert_int_equal(node_store_checkpoint(x->f.s, cp), 0);

    /* A second replica that diverged (it missed entries and holds other data). */
    smfix *y = NULL;
    assert_int_equal(setup_sm((void **)&y), 0);
    assert_int_equal(bucket_create(y, "other"), 0);
    assert_int_equal(bucket_create(y, "bkt"), 0);
    node_block_ref ob = block_cmd(y, 9, 4096);
    node_manifest om = manifest_of(&ob, 1, "stale");
    assert_int_equal(object_put(y, 0, 0, "k", &om), 0);
    assert_int_equal(object_put(y, 0, 0, "extra", &om), 0);
    assert_int_equal(node_store_meta_put(y->f.s, "local", "mine", 5), 0);

    node_group_sm cbs;
    node_sm_callbacks(y->sm, &cbs);
    assert_int_equal(cbs.snapshot_install(cbs.ctx, cp), 0);
    node_bucket bk;
    assert_int_equal(node_store_bucket_get(y->f.s, "other", &bk), TERN_ENOTFOUND);
    assert_etag(y, "k", "leader");
    node_manifest *got = NULL;
    assert_int_equal(node_store_object_get(y->f.s, "bkt", "extra", &got), TERN_ENOTFOUND);
    void *data;
    size_t len;
    assert_int_equal(node_store_block_get(y->f.s, &b.id, true, &data, &len), 0);
    free(data);
    assert_int_equal(node_store_block_get(y->f.s, &ob.id, false, &data, &len), TERN_ENOTFOUND);
    node_store_stats sx, sy;
    assert_int_equal(node_store_stats_get(x->f.s, &sx), 0);
    assert_int_equal(node_store_stats_get(y->f.s, &sy), 0);
    assert_int_equal(sy.object_count, sx.object_count);
    assert_int_equal(sy.block_count, sx.block_count);
    assert_int_equal(cbs.applied_index(cbs.ctx), x->index);
    char *v;
    assert_int_equal(node_store_meta_get(y->f.s, "local", &v, &len), 0); /* local meta kept */
    assert_string_equal(v, "mine");
    free(v);
    /* The installed session deduplicates a retry on the new replica too. */
    y->index = x->index;
    node_manifest m2 = manifest_of(&b, 1, "v2");
    assert_int_equal(object_put(y, 0, 0, "k", &m2), 0);
    assert_int_equal(object_put(y, 0x42, 1, "k", &m), 0);
    assert_etag(y, "k", "v2");
    teardown_sm((void **)&y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bucket_policy_command, setup_sm, teardown_sm),
        cmocka_unit_test(test_bucket_policy_check),
        cmocka_unit_test(test_bucket_record_version_1),
        cmocka_unit_test_setup_teardown(test_geo_log_records_changes, setup_sm, teardown_sm),
        cmocka_unit_test(test_geo_regions_converge),
        cmocka_unit_test(test_geo_apply_edges),
        cmocka_unit_test_setup_teardown(test_commands_apply_and_record_index, setup_sm,
                                        teardown_sm),
        cmocka_unit_test_setup_teardown(test_retry_applies_once, setup_sm, teardown_sm),
        cmocka_unit_test_setup_teardown(test_replay_is_idempotent, setup_sm, teardown_sm),
        cmocka_unit_test_setup_teardown(test_malformed_commands_are_refused, setup_sm, teardown_sm),
        cmocka_unit_test_setup_teardown(test_multipart_through_commands, setup_sm, teardown_sm),
        cmocka_unit_test(test_geo_delete_carries_its_time),
        cmocka_unit_test(test_geo_tombstones_are_collected_once_passed),
        cmocka_unit_test_setup_teardown(test_last_block_travels_with_its_manifest, setup_sm,
                                        teardown_sm),
        cmocka_unit_test_setup_teardown(test_orphans_are_reported_and_collected_by_command,
                                        setup_sm, teardown_sm),
        cmocka_unit_test_setup_teardown(test_checkpoint_install_replaces_replicated_state, setup_sm,
                                        teardown_sm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
