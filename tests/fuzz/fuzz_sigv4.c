/* libFuzzer driver: SigV4 verification of arbitrary request lines, queries and headers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *lookup(void *ctx, const char *access_key)
{
    (void)ctx;
    return strcmp(access_key, "AKIDEXAMPLE") == 0 ? "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
                                                  : NULL;
}

/* Input: NUL-separated fields: path, query, then header name/value pairs. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (copy == NULL) return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *fields[34];
    size_t n = 0;
    const char *p = copy;
    while (n < 34 && p <= copy + size) {
        fields[n++] = p;
        p += strlen(p) + 1;
    }
    api__header headers[16];
    size_t hn = 0;
    for (size_t i = 2; i + 1 < n && hn < 16; i += 2) {
        headers[hn].name = fields[i];
        headers[hn].value = fields[i + 1];
        hn++;
    }
    api__sigv4_request req = {.method = "GET",
                              .raw_path = n > 0 ? fields[0] : "/",
                              .raw_query = n > 1 ? fields[1] : "",
                              .header_count = hn,
                              .headers = headers};
    api__auth_result out;
    (void)api__sigv4_verify(&req, 1369353600000, lookup, NULL, &out);
    api__sigv4_auth auth;
    (void)api__sigv4_parse_authorization(n > 0 ? fields[0] : "", &auth);
    free(copy);
    return 0;
}
