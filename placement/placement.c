/* placement: the module version (the engine, cost model and simulator live in the other files). */
#include "placement.h"

uint32_t plc_format_version(void)
{
    return 1;
}
