/* raft: the pure Raft core (no sockets, files, clocks or threads); built out in issue 3. */
#ifndef TERN_RAFT_H
#define TERN_RAFT_H

#include <stdint.h>

/* The module's version of its persistent formats; bumped when they change. */
uint32_t raft_format_version(void);

#endif
