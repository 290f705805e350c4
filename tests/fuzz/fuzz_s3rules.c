/* libFuzzer driver: ranges, dates, names, keys, URI and query decoding on arbitrary text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    uint64_t first, last;
    if (api__range_parse(s, 5 * 1024 * 1024 + 1, &first, &last) == 0) {
        if (!(first <= last && last < 5 * 1024 * 1024 + 1)) abort();
    }
    (void)api__range_parse(s, 0, &first, &last);
    int64_t ms;
    (void)api__http_date_parse(s, &ms);
    (void)api__amz_date_parse(s, &ms);
    (void)api__bucket_name_valid(s);
    (void)api__object_key_check(s, size);
    char *out = NULL;
    size_t out_len = 0;
    if (api__uri_decode(s, size, &out, &out_len) == 0) free(out);
    api__param *params = NULL;
    size_t count = 0;
    if (api__query_parse(s, size, &params, &count) == 0) api__query_free(params, count);
    api__buf b = {0};
    (void)api__uri_encode(&b, s, size, true);
    (void)api__xml_escape(&b, s, size);
    api__buf_free(&b);
    free(s);
    return 0;
}
