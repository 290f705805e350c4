/* S3 rules with no I/O: bucket and key names, Range headers, HTTP and ISO dates, the error table.
 */
#include "api_internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---------------- bucket names and object keys ---------------- */

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* "192.168.5.4"-shaped: four dot-separated runs of one to three digits. */
static bool looks_like_ipv4(const char *s)
{
    int groups = 0, digits = 0;
    for (const char *p = s;; p++) {
        if (*p >= '0' && *p <= '9') {
            if (++digits > 3) return false;
        } else if (*p == '.' || *p == '\0') {
            if (digits == 0) return false;
            groups++;
            digits = 0;
            if (*p == '\0') break;
        } else {
            return false;
        }
    }
    return groups == 4;
}

bool api__bucket_name_valid(const char *name)
{
    static const char *const bad_prefixes[] = {"xn--", "sthree-", "amzn-s3-demo-"};
    static const char *const bad_suffixes[] = {"-s3alias", "--ol-s3", ".mrap", "--x-s3",
                                               "--table-s3"};
    if (name == NULL) return false;
    size_t len = strlen(name);
    if (len < 3 || len > 63) return false;
    if (!is_lower_alnum(name[0]) || !is_lower_alnum(name[len - 1])) return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!is_lower_alnum(c) && c != '.' && c != '-') return false;
        if (c == '.' && name[i + 1] == '.') return false;
    }
    if (looks_like_ipv4(name)) return false;
    /* "sthree-configurator" is covered by the "sthree-" prefix. */
    for (size_t i = 0; i < TERN_ARRAY_LEN(bad_prefixes); i++) {
        if (starts_with(name, bad_prefixes[i])) return false;
    }
    for (size_t i = 0; i < TERN_ARRAY_LEN(bad_suffixes); i++) {
        if (ends_with(name, len, bad_suffixes[i])) return false;
    }
    return true;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 (overlong, surrogate, >
 * U+10FFFF). */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

int api__object_key_check(const char *key, size_t len)
{
    if (key == NULL || len == 0) return TERN_EINVAL;
    if (len > 1024) return TERN_ETOOBIG;
    const unsigned char *s = (const unsigned char *)key;
    for (size_t i = 0; i < len;) {
        if (s[i] == 0) return TERN_EINVAL;
        size_t n = utf8_sequence(s + i, len - i);
        if (n == 0) return TERN_EINVAL;
        i += n;
    }
    return 0;
}

/* ---------------- Range ---------------- */

/* Decimal digits at *p, saturating at UINT64_MAX; false when there are none. */
static bool parse_u64(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
        s++;
    }
    if (s == *p) return false;
    *p = s;
    *out = v;
    return true;
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

int api__range_parse(const char *header, uint64_t size, uint64_t *first, uint64_t *last)
{
    /* RFC 9110 14.2: an invalid or unsupported Range is ignored (return 1, serve everything). */
    if (header == NULL) return 1;
    const char *p = skip_ows(header);
    if (strncasecmp(p, "bytes", 5) != 0) return 1;
    p = skip_ows(p + 5);
    if (*p != '=') return 1;
    p = skip_ows(p + 1);
    if (strchr(p, ',') != NULL) return 1; /* multiple ranges are not supported by S3 either */
    uint64_t a = 0, b = 0;
    bool has_first = parse_u64(&p, &a);
    p = skip_ows(p);
    if (*p != '-') return 1;
    p = skip_ows(p + 1);
    bool has_last = parse_u64(&p, &b);
    if (*skip_ows(p) != '\0' || (!has_first && !has_last)) return 1;
    if (!has_first) {
        /* Suffix range: the last b bytes; "-0" or any suffix of an empty object is unsatisfiable.
         */
        if (b == 0 || size == 0) return TERN_ERANGE;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return 0;
    }
    if (has_last && a > b) return 1;
    if (a >= size) return TERN_ERANGE;
    *first = a;
    *last = !has_last || b >= size ? size - 1 : b;
    return 0;
}

/* ---------------- dates ---------------- */

static const char *const wkday_short[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const wkday_long[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                          "Thursday", "Friday", "Saturday"};
static const char *const month_short[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

typedef struct {
    int64_t year;
    int month, day, hour, minute, second, millis;
    int weekday;
} civil_time;

static void civil_from_ms(int64_t ms, civil_time *t)
{
    int64_t secs = ms / 1000, millis = ms % 1000;
    if (millis < 0) {
        millis += 1000;
        secs--;
    }
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    civil_from_days(days, &t->year, &t->month, &t->day);
    t->hour = (int)(rem / 3600);
    t->minute = (int)(rem / 60 % 60);
    t->second = (int)(rem % 60);
    t->millis = (int)millis;
    t->weekday = (int)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday */
}

/* Validates the fields and converts to milliseconds since the epoch. */
static int ms_from_civil(const civil_time *t, int64_t *ms)
{
    if (t->month < 1 || t->month > 12 || t->day < 1 || t->day > days_in_month(t->year, t->month))
        return TERN_EPARSE;
    /* Second 60 is a leap second; it is accepted and folds into the next minute. */
    if (t->hour > 23 || t->minute > 59 || t->second > 60) return TERN_EPARSE;
    int64_t days = days_from_civil(t->year, t->month, t->day);
    *ms = ((days * 86400) + t->hour * 3600 + t->minute * 60 + t->second) * 1000;
    return 0;
}

void api__http_date_format(int64_t ms, char out[32])
{
    civil_time t;
    civil_from_ms(ms, &t);
    snprintf(out, 32, "%s, %02d %s %04lld %02d:%02d:%02d GMT", wkday_short[t.weekday], t.day,
             month_short[t.month - 1], (long long)t.year, t.hour, t.minute, t.second);
}

void api__iso8601_format(int64_t ms, char out[32])
{
    civil_time t;
    civil_from_ms(ms, &t);
    snprintf(out, 32, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ", (long long)t.year, t.month, t.day,
             t.hour, t.minute, t.second, t.millis);
}

/* Exactly n decimal digits at *p. */
static bool take_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool take_str(const char **p, const char *s)
{
    size_t n = strlen(s);
    if (strncmp(*p, s, n) != 0) return false;
    *p += n;
    return true;
}

/* One of the names in table at *p; returns its index or -1. */
static int take_name(const char **p, const char *const *table, int count)
{
    for (int i = 0; i < count; i++) {
        if (take_str(p, table[i])) return i;
    }
    return -1;
}

static bool take_time(const char **p, civil_time *t)
{
    return take_digits(p, 2, &t->hour) && take_str(p, ":") && take_digits(p, 2, &t->minute) &&
           take_str(p, ":") && take_digits(p, 2, &t->second);
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" */
static bool parse_imf(const char *p, civil_time *t)
{
    int year;
    if (take_name(&p, wkday_short, 7) < 0 || !take_str(&p, ", ")) return false;
    if (!take_digits(&p, 2, &t->day) || !take_str(&p, " ")) return false;
    if ((t->month = take_name(&p, month_short, 12) + 1) == 0 || !take_str(&p, " ")) return false;
    if (!take_digits(&p, 4, &year) || !take_str(&p, " ") || !take_time(&p, t)) return false;
    t->year = year;
    return take_str(&p, " GMT") && *p == '\0';
}

/* "Sunday, 06-Nov-94 08:49:37 GMT" (two-digit years: 70-99 are 19xx, 00-69 are 20xx). */
static bool parse_rfc850(const char *p, civil_time *t)
{
    int year;
    if (take_name(&p, wkday_long, 7) < 0 || !take_str(&p, ", ")) return false;
    if (!take_digits(&p, 2, &t->day) || !take_str(&p, "-")) return false;
    if ((t->month = take_name(&p, month_short, 12) + 1) == 0 || !take_str(&p, "-")) return false;
    if (!take_digits(&p, 2, &year) || !take_str(&p, " ") || !take_time(&p, t)) return false;
    t->year = year < 70 ? 2000 + year : 1900 + year;
    return take_str(&p, " GMT") && *p == '\0';
}

/* "Sun Nov  6 08:49:37 1994" */
static bool parse_asctime(const char *p, civil_time *t)
{
    int year;
    if (take_name(&p, wkday_short, 7) < 0 || !take_str(&p, " ")) return false;
    if ((t->month = take_name(&p, month_short, 12) + 1) == 0 || !take_str(&p, " ")) return false;
    if (*p == ' ') {
        p++;
        if (!take_digits(&p, 1, &t->day)) return false;
    } else if (!take_digits(&p, 2, &t->day)) {
        return false;
    }
    if (!take_str(&p, " ") || !take_time(&p, t) || !take_str(&p, " ")) return false;
    if (!take_digits(&p, 4, &year)) return false;
    t->year = year;
    return *p == '\0';
}

int api__http_date_parse(const char *s, int64_t *ms)
{
    civil_time t = {0};
    if (s == NULL) return TERN_EPARSE;
    if (parse_imf(s, &t) || parse_rfc850(s, &t) || parse_asctime(s, &t))
        return ms_from_civil(&t, ms);
    return TERN_EPARSE;
}

int api__amz_date_parse(const char *s, int64_t *ms)
{
    civil_time t = {0};
    int year;
    if (s == NULL || strlen(s) != 16) return TERN_EPARSE;
    const char *p = s;
    if (!take_digits(&p, 4, &year) || !take_digits(&p, 2, &t.month) ||
        !take_digits(&p, 2, &t.day) || !take_str(&p, "T") || !take_digits(&p, 2, &t.hour) ||
        !take_digits(&p, 2, &t.minute) || !take_digits(&p, 2, &t.second) || !take_str(&p, "Z"))
        return TERN_EPARSE;
    t.year = year;
    return ms_from_civil(&t, ms);
}

/* ---------------- S3 errors ---------------- */

static const struct {
    const char *code;
    int status;
    const char *message; /* default text when the caller gives none */
} s3_errors[] = {
    {"AccessDenied", 403, "Access Denied"},
    {"AccountProblem", 403, "There is a problem with your account that prevents the operation"},
    {"AuthorizationHeaderMalformed", 400, "The authorization header is malformed"},
    {"AuthorizationQueryParametersError", 400, "The query-string authentication is malformed"},
    /* Malformed HTTP framing (S3 answers a bare 400 Bad Request). */
    {"BadRequest", 400, "Bad Request"},
    {"BadDigest", 400, "The Content-MD5 or checksum you specified did not match what we received"},
    {"BucketAlreadyExists", 409, "The requested bucket name is not available"},
    {"BucketAlreadyOwnedByYou", 409,
     "The bucket you tried to create already exists, and you own it"},
    {"BucketNotEmpty", 409, "The bucket you tried to delete is not empty"},
    {"EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed object size"},
    {"EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed object size"},
    {"IncompleteBody", 400, "You did not provide the number of bytes specified by Content-Length"},
    /* tern extension: a replica's disk is full; S3 has no code for it. */
    {"InsufficientStorage", 507, "The store does not have enough space to complete the request"},
    {"InternalError", 500, "We encountered an internal error. Please try again."},
    {"InvalidAccessKeyId", 403, "The AWS access key Id you provided does not exist in our records"},
    {"InvalidArgument", 400, "Invalid Argument"},
    {"InvalidBucketName", 400, "The specified bucket is not valid"},
    {"InvalidDigest", 400, "The Content-MD5 you specified is not valid"},
    {"InvalidObjectState", 403, "The operation is not valid for the current state of the object"},
    {"InvalidPart", 400, "One or more of the specified parts could not be found"},
    {"InvalidPartOrder", 400, "The list of parts was not in ascending order"},
    /* tern's own: a bucket policy that does not hold together (the message names the field). */
    {"InvalidPolicy", 400, "The bucket policy is not valid"},
    {"InvalidURI", 400, "Couldn't parse the specified URI"},
    {"InvalidRange", 416, "The requested range is not satisfiable"},
    {"InvalidRequest", 400, "Invalid Request"},
    {"KeyTooLongError", 400, "Your key is too long"},
    /* tern's own: an admin request body that is not the JSON document asked for. */
    {"MalformedJSON", 400, "The JSON you provided was not well-formed"},
    {"MalformedXML", 400,
     "The XML you provided was not well-formed or did not validate against "
     "our published schema"},
    {"MaxMessageLengthExceeded", 400, "Your request was too big"},
    {"MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size"},
    {"MethodNotAllowed", 405, "The specified method is not allowed against this resource"},
    {"MissingContentLength", 411, "You must provide the Content-Length HTTP header"},
    {"MissingRequestBodyError", 400, "Request Body is empty"},
    {"MissingSecurityHeader", 400, "Your request is missing a required header"},
    {"NoSuchBlock", 404, "This region does not hold the block"}, /* tern's: geo reads */
    {"NoSuchBucket", 404, "The specified bucket does not exist"},
    {"NoSuchKey", 404, "The specified key does not exist"},
    {"NoSuchUpload", 404, "The specified multipart upload does not exist"},
    /* tern's own: /_tern/egress on a node without a topology (no prices to account with). */
    {"NoTopology", 404, "This node has no topology configured"},
    {"NotImplemented", 501, "A header you provided implies functionality that is not implemented"},
    /* Not an error document: 304 answers carry no body; listed so callers get the status. */
    {"NotModified", 304, "Not Modified"},
    {"PreconditionFailed", 412, "At least one of the preconditions you specified did not hold"},
    {"RequestHeaderSectionTooLarge", 400,
     "Your request header section exceeds the maximum allowed "
     "size"},
    /* tern's own: the bucket's residency policy does not allow this node's region. */
    {"ResidencyViolation", 403, "The bucket's policy does not allow its data in this region"},
    {"RequestTimeTooSkewed", 403,
     "The difference between the request time and the current time "
     "is too large"},
    {"RequestTimeout", 400,
     "Your socket connection to the server was not read from or written to "
     "within the timeout period"},
    {"ServiceUnavailable", 503, "Service is unable to handle request"},
    {"SignatureDoesNotMatch", 403,
     "The request signature we calculated does not match the "
     "signature you provided"},
    {"SlowDown", 503, "Please reduce your request rate"},
    {"XAmzContentSHA256Mismatch", 400,
     "The provided 'x-amz-content-sha256' header does not match "
     "what was computed"},
};

static int s3_error_index(const char *s3_code)
{
    for (size_t i = 0; s3_code != NULL && i < TERN_ARRAY_LEN(s3_errors); i++) {
        if (strcmp(s3_errors[i].code, s3_code) == 0) return (int)i;
    }
    return -1;
}

int api__s3_error_status(const char *s3_code)
{
    int i = s3_error_index(s3_code);
    return i < 0 ? 500 : s3_errors[i].status;
}

int api__s3_error_xml(api__buf *out, const char *s3_code, const char *message, const char *resource,
                      const char *request_id)
{
    assert(s3_code != NULL);
    if (message == NULL) {
        int i = s3_error_index(s3_code);
        message = i < 0 ? "" : s3_errors[i].message;
    }
    int rc = api__buf_append_str(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>");
    if (rc == 0) rc = api__xml_element(out, "Code", s3_code);
    if (rc == 0) rc = api__xml_element(out, "Message", message);
    if (rc == 0 && resource != NULL) rc = api__xml_element(out, "Resource", resource);
    if (rc == 0 && request_id != NULL) rc = api__xml_element(out, "RequestId", request_id);
    if (rc == 0) rc = api__buf_append_str(out, "</Error>");
    return rc;
}
