/* libFuzzer driver: Raft messages and group frames from a peer are refused or valid, never unsafe.
 */
#include <stdint.h>
#include <stdlib.h>

#include "raftwire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The group driver's frames: decoded ones must re-encode (the same checks both ways). */
static void fuzz_group_frame(const uint8_t *data, size_t size)
{
    node_groupwire_msg *g = NULL;
    if (node_groupwire_decode(data, size, &g) != 0) return;
    uint8_t *out = NULL;
    size_t len = 0;
    if (node_groupwire_encode(g, &out, &len) != 0) abort();
    free(out);
    node_groupwire_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_group_frame(data, size);
    node_raftwire_msg *m = NULL;
    if (node_raftwire_decode(data, size, &m) != 0) return 0;
    /* Snapshot bytes only ride on SNAPSHOT messages, which always carry a decodable conf. */
    if (m->msg.data_len > 0 && m->msg.type != RAFT_MSG_SNAPSHOT) abort();
    if (m->msg.type == RAFT_MSG_SNAPSHOT) {
        raft_conf conf;
        if (raft_conf_decode(m->msg.conf, m->msg.conf_len, &conf) != 0) abort();
    }
    /* What validation promises the core: contiguous entries after prev_index. */
    for (size_t i = 0; i < m->msg.entries_count; i++)
        if (m->msg.entries[i].index != m->msg.prev_index + 1 + i) abort();
    uint8_t *out = NULL;
    size_t len = 0;
    if (node_raftwire_encode(&m->msg, m->group, &out, &len) == 0) free(out);
    node_raftwire_free(m);
    return 0;
}
