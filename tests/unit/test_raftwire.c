/* Raft messages over the wire: round trips of every type, and refusal of hostile bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "raftwire.h"

static void roundtrip(const raft_message *m, uint32_t group)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(node_raftwire_encode(m, group, &buf, &len), 0);
    node_raftwire_msg *d = NULL;
    assert_int_equal(node_raftwire_decode(buf, len, &d), 0);
    free(buf);
    const raft_message *g = &d->msg;
    assert_int_equal(d->group, group);
    assert_int_equal(g->type, m->type);
    assert_int_equal(g->from, m->from);
    assert_int_equal(g->to, m->to);
    assert_int_equal(g->term, m->term);
    assert_int_equal(g->prev_index, m->prev_index);
    assert_int_equal(g->prev_term, m->prev_term);
    assert_int_equal(g->commit, m->commit);
    assert_int_equal(g->reject, m->reject);
    assert_int_equal(g->index, m->index);
    assert_int_equal(g->hint_index, m->hint_index);
    assert_int_equal(g->hint_term, m->hint_term);
    assert_int_equal(g->last_index, m->last_index);
    assert_int_equal(g->last_term, m->last_term);
    assert_int_equal(g->transfer, m->transfer);
    assert_int_equal(g->granted, m->granted);
    assert_int_equal(g->context, m->context);
    assert_int_equal(g->offset, m->offset);
    assert_int_equal(g->done, m->done);
    assert_int_equal(g->data_len, m->data_len);
    if (m->data_len) assert_memory_equal(g->data, m->data, m->data_len);
    assert_int_equal(g->conf_len, m->conf_len);
    if (m->conf_len) assert_memory_equal(g->conf, m->conf, m->conf_len);
    assert_int_equal(g->entries_count, m->entries_count);
    for (size_t i = 0; i < m->entries_count; i++) {
        assert_int_equal(g->entries[i].index, m->entries[i].index);
        assert_int_equal(g->entries[i].term, m->entries[i].term);
        assert_int_equal(g->entries[i].type, m->entries[i].type);
        assert_int_equal(g->entries[i].len, m->entries[i].len);
        if (m->entries[i].len)
            assert_memory_equal(g->entries[i].data, m->entries[i].data, m->entries[i].len);
    }
    node_raftwire_free(d);
}

static void test_roundtrip_every_type(void **state)
{
    (void)state;
    static const char payload[] = "put k v";
    raft_entry entries[3] = {
        {.index = 11, .term = 4, .type = RAFT_ENTRY_NOOP, .data = NULL, .len = 0},
        {.index = 12, .term = 4, .type = RAFT_ENTRY_NORMAL, .data = payload, .len = 7},
        {.index = 13, .term = 5, .type = RAFT_ENTRY_NORMAL, .data = payload, .len = 3},
    };
    raft_message append = {.type = RAFT_MSG_APPEND,
                           .from = 1,
                           .to = 2,
                           .term = 5,
                           .prev_index = 10,
                           .prev_term = 3,
                           .commit = 9,
                           .entries = entries,
                           .entries_count = 3};
    roundtrip(&append, 7);
    raft_message resp = {.type = RAFT_MSG_APPEND_RESPONSE,
                         .from = 2,
                         .to = 1,
                         .term = 5,
                         .reject = true,
                         .index = 10,
                         .hint_index = 6,
                         .hint_term = 2};
    roundtrip(&resp, 0);
    raft_message vote = {.type = RAFT_MSG_VOTE,
                         .from = 3,
                         .to = 1,
                         .term = 9,
                         .last_index = 40,
                         .last_term = 8,
                         .transfer = true};
    roundtrip(&vote, 1);
    raft_message granted = {
        .type = RAFT_MSG_PREVOTE_RESPONSE, .from = 1, .to = 3, .term = 9, .granted = true};
    roundtrip(&granted, 1);
    raft_message hb = {.type = RAFT_MSG_HEARTBEAT,
                       .from = 1,
                       .to = 2,
                       .term = 5,
                       .commit = 12,
                       .context = UINT64_MAX};
    roundtrip(&hb, 2);
    raft_message tn = {.type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .to = 2, .term = 5};
    roundtrip(&tn, 2);
    raft_entry conf_entry[1] = {
        {.index = 14, .term = 5, .type = RAFT_ENTRY_CONFIG, .data = payload, .len = 3}};
    raft_message with_conf = {.type = RAFT_MSG_APPEND,
                              .from = 1,
                              .to = 2,
                              .term = 5,
                              .prev_index = 13,
                              .prev_term = 5,
                              .entries = conf_entry,
                              .entries_count = 1};
    roundtrip(&with_conf, 0);
}

static int decode_of(const raft_message *m)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(node_raftwire_encode(m, 0, &buf, &len), 0);
    node_raftwire_msg *d = NULL;
    int rc = node_raftwire_decode(buf, len, &d);
    free(buf);
    if (rc == 0)
        node_raftwire_free(d);
    else
        assert_null(d);
    return rc;
}

static size_t sample_conf(uint8_t *buf)
{
    raft_conf c = {.count = 2};
    c.members[0] = (raft_member){.id = 1, .role = RAFT_MEMBER_VOTER, .address = "10.0.0.1:7000"};
    c.members[1] = (raft_member){.id = 4, .role = RAFT_MEMBER_LEARNER, .address = "10.0.0.4:7000"};
    return raft_conf_encode(&c, buf);
}

static void test_snapshot_messages(void **state)
{
    (void)state;
    uint8_t conf[RAFT_CONF_ENCODED_MAX];
    size_t conf_len = sample_conf(conf);
    static uint8_t chunk[70000];
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (uint8_t)(i * 13);
    raft_message snap = {.type = RAFT_MSG_SNAPSHOT,
                         .from = 1,
                         .to = 3,
                         .term = 7,
                         .last_index = 900,
                         .last_term = 6,
                         .offset = 1u << 20,
                         .data = chunk,
                         .data_len = sizeof chunk,
                         .conf = conf,
                         .conf_len = conf_len,
                         .done = true};
    roundtrip(&snap, 0);
    raft_message resp = {.type = RAFT_MSG_SNAPSHOT_RESPONSE,
                         .from = 3,
                         .to = 1,
                         .term = 7,
                         .last_index = 900,
                         .offset = 2u << 20,
                         .reject = true,
                         .done = true,
                         .index = 900};
    roundtrip(&resp, 0);
}

static void test_refuses_bad_snapshots(void **state)
{
    (void)state;
    uint8_t conf[RAFT_CONF_ENCODED_MAX];
    size_t conf_len = sample_conf(conf);
    static const uint8_t data[4] = {1, 2, 3, 4};
    /* Snapshot bytes on another type. */
    raft_message hb = {
        .type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 1, .data = data, .data_len = 4};
    assert_int_equal(decode_of(&hb), TERN_EPARSE);
    /* A snapshot without a configuration, or with one that does not decode. */
    raft_message snap = {.type = RAFT_MSG_SNAPSHOT,
                         .from = 1,
                         .to = 2,
                         .term = 1,
                         .last_index = 5,
                         .data = data,
                         .data_len = 4};
    assert_int_equal(decode_of(&snap), TERN_EPARSE);
    snap.conf = data;
    snap.conf_len = 4;
    assert_int_equal(decode_of(&snap), TERN_EPARSE);
    snap.conf = conf;
    snap.conf_len = conf_len;
    assert_int_equal(decode_of(&snap), 0);
    snap.last_index = 0; /* a snapshot of nothing */
    assert_int_equal(decode_of(&snap), TERN_EPARSE);
}

static void test_group_frames(void **state)
{
    (void)state;
    static const uint8_t entry[40] = {1};
    node_groupwire_msg m = {.kind = NODE_FRAME_FORWARD_PROPOSE,
                            .group = 3,
                            .request_id = 9,
                            .client_id = 0x1234567890abcdefull,
                            .seq = 77,
                            .status = TERN_EUNAVAIL,
                            .index = 55,
                            .leader_id = 2,
                            .op = 1,
                            .node_id = 4,
                            .entry = entry,
                            .entry_len = sizeof entry};
    snprintf(m.address, sizeof m.address, "10.0.0.4:7000");
    snprintf(m.s3_address, sizeof m.s3_address, "10.0.0.4:9000");
    uint8_t *buf;
    size_t len;
    assert_int_equal(node_groupwire_encode(&m, &buf, &len), 0);
    node_groupwire_msg *d;
    assert_int_equal(node_groupwire_decode(buf, len, &d), 0);
    free(buf);
    assert_int_equal(d->kind, m.kind);
    assert_int_equal(d->group, 3);
    assert_int_equal(d->request_id, 9);
    assert_int_equal(d->client_id, m.client_id);
    assert_int_equal(d->seq, 77);
    assert_int_equal(d->status, TERN_EUNAVAIL);
    assert_int_equal(d->index, 55);
    assert_int_equal(d->leader_id, 2);
    assert_int_equal(d->op, 1);
    assert_int_equal(d->node_id, 4);
    assert_string_equal(d->address, "10.0.0.4:7000");
    assert_string_equal(d->s3_address, "10.0.0.4:9000");
    assert_int_equal(d->entry_len, sizeof entry);
    assert_memory_equal(d->entry, entry, sizeof entry);
    node_groupwire_free(d);
    /* Refused: unknown kind, a status outside the error table, an entry on another kind. */
    node_groupwire_msg bad = {.kind = 1};
    assert_int_equal(node_groupwire_encode(&bad, &buf, &len), TERN_EINVAL);
    bad.kind = NODE_FRAME_KIND_MAX + 1;
    assert_int_equal(node_groupwire_encode(&bad, &buf, &len), TERN_EINVAL);
    bad.kind = NODE_FRAME_PROPOSE_RESULT;
    bad.status = -9999;
    assert_int_equal(node_groupwire_encode(&bad, &buf, &len), TERN_EINVAL);
    bad.status = 0;
    bad.entry = entry;
    bad.entry_len = 1;
    assert_int_equal(node_groupwire_encode(&bad, &buf, &len), TERN_EINVAL);
    /* Every prefix of a valid frame decodes or is refused, never crashes. */
    assert_int_equal(node_groupwire_encode(&m, &buf, &len), 0);
    for (size_t cut = 0; cut < len; cut++) {
        int rc = node_groupwire_decode(buf, cut, &d);
        if (rc == 0)
            node_groupwire_free(d);
        else
            assert_int_equal(rc, TERN_EPARSE);
    }
    free(buf);
}

static void test_refuses_what_the_core_must_not_see(void **state)
{
    (void)state;
    raft_entry gap[2] = {{.index = 11, .term = 2}, {.index = 13, .term = 2}};
    raft_message m = {.type = RAFT_MSG_APPEND,
                      .from = 1,
                      .to = 2,
                      .term = 2,
                      .prev_index = 10,
                      .entries = gap,
                      .entries_count = 2};
    assert_int_equal(decode_of(&m), TERN_EPARSE); /* non-contiguous entries */
    raft_entry future[1] = {{.index = 11, .term = 3}};
    m.entries = future;
    m.entries_count = 1;
    assert_int_equal(decode_of(&m), TERN_EPARSE); /* entry term above the message term */
    raft_entry down[2] = {{.index = 11, .term = 2}, {.index = 12, .term = 1}};
    m.entries = down;
    m.entries_count = 2;
    assert_int_equal(decode_of(&m), TERN_EPARSE); /* terms going down */
    raft_message self = {.type = RAFT_MSG_VOTE, .from = 2, .to = 2, .term = 1};
    assert_int_equal(decode_of(&self), TERN_EPARSE);
    raft_message anon = {.type = RAFT_MSG_VOTE, .from = 0, .to = 2, .term = 1};
    assert_int_equal(decode_of(&anon), TERN_EPARSE);
    raft_entry one[1] = {{.index = 1, .term = 1}};
    raft_message hb = {.type = RAFT_MSG_HEARTBEAT,
                       .from = 1,
                       .to = 2,
                       .term = 1,
                       .entries = one,
                       .entries_count = 1};
    assert_int_equal(decode_of(&hb), TERN_EPARSE); /* entries only ride on appends */
    raft_message bad_type = {.type = (raft_message_type)99, .from = 1, .to = 2};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(node_raftwire_encode(&bad_type, 0, &buf, &len), TERN_EINVAL);
}

static void test_refuses_garbage_and_truncation(void **state)
{
    (void)state;
    static const char payload[64] = "x";
    raft_entry e[1] = {{.index = 5, .term = 2, .data = payload, .len = sizeof payload}};
    raft_message m = {.type = RAFT_MSG_APPEND,
                      .from = 1,
                      .to = 2,
                      .term = 2,
                      .prev_index = 4,
                      .entries = e,
                      .entries_count = 1};
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(node_raftwire_encode(&m, 0, &buf, &len), 0);
    /* Every strict prefix is refused or decodes to something valid: never a crash. */
    for (size_t cut = 0; cut < len; cut++) {
        node_raftwire_msg *d = NULL;
        int rc = node_raftwire_decode(buf, cut, &d);
        if (rc == 0)
            node_raftwire_free(d);
        else
            assert_int_equal(rc, TERN_EPARSE);
    }
    node_raftwire_msg *d = NULL;
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(node_raftwire_decode(junk, sizeof junk, &d), TERN_EPARSE);
    assert_null(d);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_type),
        cmocka_unit_test(test_refuses_what_the_core_must_not_see),
        cmocka_unit_test(test_refuses_garbage_and_truncation),
        cmocka_unit_test(test_snapshot_messages),
        cmocka_unit_test(test_refuses_bad_snapshots),
        cmocka_unit_test(test_group_frames),
    };
    return cmocka_run_group_tests_name("raftwire", tests, NULL, NULL);
}
