/* placement: placeholder translation unit until the engine lands (issue 4). */
#include "placement.h"

uint32_t plc_format_version(void)
{
    return 1;
}
