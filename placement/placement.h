/* placement: the pure placement engine and cost model (no I/O, no clock); built out in issue 4. */
#ifndef TERN_PLACEMENT_H
#define TERN_PLACEMENT_H

#include <stdint.h>

/* The module's version of its persistent formats; bumped when they change. */
uint32_t plc_format_version(void);

#endif
