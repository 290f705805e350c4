/* libFuzzer driver: the aws-chunked decoder, unsigned and signed, fed in fuzzer-chosen pieces. */
#include <stdint.h>
#include <string.h>

#include "api_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sink(void *ctx, const char *d, size_t len)
{
    size_t *total = ctx;
    (void)d;
    *total += len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    /* First byte: split stride; second: signed or not. */
    size_t stride = (size_t)data[0] % 64 + 1;
    bool signed_mode = data[1] & 1;
    data += 2;
    size -= 2;
    api__auth_result auth;
    memset(&auth, 0, sizeof auth);
    memcpy(auth.seed_signature, "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
           65);
    memcpy(auth.amz_date, "20130524T000000Z", 17);
    strcpy(auth.scope, "20130524/us-east-1/s3/aws4_request");
    api__chunked *d = api__chunked_new(signed_mode ? &auth : NULL, 1 << 20);
    if (d == NULL) return 0;
    size_t total = 0;
    for (size_t off = 0; off < size; off += stride) {
        size_t n = size - off < stride ? size - off : stride;
        if (api__chunked_feed(d, (const char *)data + off, n, sink, &total) != 0) break;
    }
    (void)api__chunked_finish(d);
    (void)api__chunked_error(d);
    api__chunked_free(d);
    return 0;
}
