/* libFuzzer driver: Raft messages decoded from a peer's bytes are refused or valid, never unsafe. */
#include <stdint.h>
#include <stdlib.h>

#include "raftwire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    node_raftwire_msg *m = NULL;
    if (node_raftwire_decode(data, size, &m) != 0) return 0;
    /* What validation promises the core: contiguous entries after prev_index. */
    for (size_t i = 0; i < m->msg.entries_count; i++)
        if (m->msg.entries[i].index != m->msg.prev_index + 1 + i) abort();
    uint8_t *out = NULL;
    size_t len = 0;
    if (node_raftwire_encode(&m->msg, m->group, &out, &len) == 0) free(out);
    node_raftwire_free(m);
    return 0;
}
