/* raft: placeholder translation unit until the core lands (issue 3). */
#include "raft.h"

uint32_t raft_format_version(void)
{
    return 1;
}
