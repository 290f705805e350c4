/* libFuzzer driver: the three S3 XML body parsers must refuse or parse any input without harm. */
#include <stdint.h>
#include <stdlib.h>

#include "api_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char errmsg[256];
    api__completed_part *parts = NULL;
    size_t count = 0;
    if (api__xml_parse_complete_multipart((const char *)data, size, &parts, &count, errmsg,
                                          sizeof errmsg) == 0)
        free(parts);
    char **keys = NULL;
    bool quiet = false;
    if (api__xml_parse_delete((const char *)data, size, &keys, &count, &quiet, errmsg,
                              sizeof errmsg) == 0)
        api__strv_free(keys, count);
    char *region = NULL;
    if (api__xml_parse_create_bucket((const char *)data, size, &region, errmsg, sizeof errmsg) ==
        0)
        free(region);
    return 0;
}
