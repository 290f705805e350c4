/* libFuzzer driver: decoding stored manifest and part records that disk corruption may mangle. */
#include <stdint.h>
#include <stdlib.h>

#include "store_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    node_manifest *m = NULL;
    if (node__manifest_decode((const char *)data, size, &m) == 0) {
        uint64_t sum = 0;
        for (size_t i = 0; i < m->block_count; i++) sum += m->blocks[i].size_bytes;
        (void)sum;
        node_manifest_free(m);
    }
    uint64_t size_bytes;
    char etag[NODE_ETAG_MAX + 1];
    int64_t mtime;
    (void)node__manifest_decode_head((const char *)data, size, &size_bytes, etag, &mtime);
    node_part part = {0};
    if (node__part_decode((const char *)data, size, &part) == 0) free(part.blocks);
    return 0;
}
