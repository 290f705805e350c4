/* Multipart uploads: create, complete (validation and the "-N" ETag), abort, list parts, list
 * uploads. */
#include <assert.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

#define XML_HEADER "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
#define S3_XMLNS   "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""

typedef struct mp_job mp_job;
struct mp_job {
    api__req *r;
    node_store *store;
    void (*work)(mp_job *j);
    int rc;
    const char *not_found_code;
    const char *s3_code;
    char message[API_RESIDENCY_MESSAGE_MAX];
    int status;
    api__buf body;
    node_manifest tmpl;
    api__completed_part *parts;
    size_t part_count;
};

static void mp_work(void *arg)
{
    mp_job *j = arg;
    j->work(j);
}

static void mp_free(mp_job *j)
{
    api__buf_free(&j->body);
    for (size_t i = 0; i < j->tmpl.header_count; i++) {
        free(j->tmpl.headers[i].name);
        free(j->tmpl.headers[i].value);
    }
    free(j->tmpl.headers);
    free(j->tmpl.content_type);
    free(j->parts);
    free(j);
}

static void mp_done(api__req *r, void *arg)
{
    mp_job *j = arg;
    if (!r->aborted) {
        if (j->s3_code)
            api__respond_error(r, j->s3_code, j->message);
        else if (j->rc != 0)
            api__respond_store_error(r, j->rc,
                                     j->not_found_code ? j->not_found_code : "NoSuchUpload");
        else
            api__respond(r, j->status ? j->status : 200, NULL,
                         j->body.len ? "application/xml" : NULL, j->body.data, j->body.len);
    }
    mp_free(j);
}

static void xml_text(api__buf *b, const char *tag, const char *value)
{
    api__buf_printf(b, "<%s>", tag);
    api__xml_escape(b, value, strlen(value));
    api__buf_printf(b, "</%s>", tag);
}

/* True (with j's refusal set) when the bucket's residency policy excludes this node's region:
 * checked when an upload starts and again when it completes (the policy may change between). */
static bool residency_refused(mp_job *j)
{
    node_bucket b;
    char msg[API_RESIDENCY_MESSAGE_MAX];
    if (node_store_bucket_get(j->store, j->r->bucket, &b) != 0 ||
        api__residency_allows(j->r->server, &b, msg, sizeof msg))
        return false;
    j->s3_code = "ResidencyViolation";
    snprintf(j->message, sizeof j->message, "%s", msg);
    return true;
}

/* Distinguishes a missing bucket from a missing upload for the error code. */
static void upload_not_found(mp_job *j)
{
    node_bucket b;
    if (node_store_bucket_get(j->store, j->r->bucket, &b) == TERN_ENOTFOUND)
        j->not_found_code = "NoSuchBucket";
}

static void create_work(mp_job *j)
{
    api__req *r = j->r;
    char upload_id[NODE_UPLOAD_ID_MAX + 1];
    if (residency_refused(j)) return;
    j->rc = node_cmd_upload_create(r->server->group, r->bucket, r->key, &j->tmpl, tern_now_ms(),
                                   upload_id);
    if (j->rc == TERN_ENOTFOUND) {
        j->not_found_code = "NoSuchBucket";
        return;
    }
    if (j->rc != 0) return;
    api__buf_printf(&j->body, XML_HEADER "<InitiateMultipartUploadResult " S3_XMLNS ">");
    xml_text(&j->body, "Bucket", r->bucket);
    xml_text(&j->body, "Key", r->key);
    xml_text(&j->body, "UploadId", upload_id);
    api__buf_append_str(&j->body, "</InitiateMultipartUploadResult>");
}

static bool validate_parts(mp_job *j, const node_part *stored, size_t stored_count)
{
    for (size_t i = 0; i < j->part_count; i++) {
        const api__completed_part *want = &j->parts[i];
        if (i > 0 && want->part_number <= j->parts[i - 1].part_number) {
            j->s3_code = "InvalidPartOrder";
            snprintf(j->message, sizeof j->message,
                     "The list of parts was not in ascending order (part %u after %u).",
                     want->part_number, j->parts[i - 1].part_number);
            return false;
        }
        const node_part *found = NULL;
        for (size_t k = 0; k < stored_count && found == NULL; k++)
            if (stored[k].part_number == want->part_number) found = &stored[k];
        if (found == NULL || strcmp(found->etag, want->etag) != 0) {
            j->s3_code = "InvalidPart";
            snprintf(j->message, sizeof j->message,
                     "Part %u could not be found or its ETag does not match.", want->part_number);
            return false;
        }
        if (i + 1 < j->part_count && found->size_bytes < API_PART_BYTES_MIN) {
            j->s3_code = "EntityTooSmall";
            snprintf(j->message, sizeof j->message,
                     "Part %u is smaller than the minimum allowed size (5 MiB).",
                     want->part_number);
            return false;
        }
    }
    return true;
}

/* Concatenates the chosen parts' blocks and computes md5(concat(part md5s)) + "-N". */
static int build_final(mp_job *j, const node_part *stored, size_t stored_count,
                       node_manifest *final)
{
    size_t blocks = 0;
    const node_part **chosen = calloc(j->part_count, sizeof *chosen);
    if (chosen == NULL) return TERN_ENOMEM;
    for (size_t i = 0; i < j->part_count; i++) {
        for (size_t k = 0; k < stored_count; k++)
            if (stored[k].part_number == j->parts[i].part_number) chosen[i] = &stored[k];
        blocks += chosen[i]->block_count;
    }
    final->blocks = calloc(blocks ? blocks : 1, sizeof *final->blocks);
    EVP_MD_CTX *md5 = EVP_MD_CTX_new();
    if (final->blocks == NULL || md5 == NULL) {
        free(chosen);
        EVP_MD_CTX_free(md5);
        return TERN_ENOMEM;
    }
    EVP_DigestInit_ex(md5, EVP_md5(), NULL);
    for (size_t i = 0; i < j->part_count; i++) {
        const node_part *p = chosen[i];
        memcpy(final->blocks + final->block_count, p->blocks, p->block_count * sizeof *p->blocks);
        final->block_count += p->block_count;
        final->size_bytes += p->size_bytes;
        uint8_t raw[16];
        tern_unhex(p->etag, 32, raw);
        EVP_DigestUpdate(md5, raw, sizeof raw);
    }
    uint8_t digest[16];
    unsigned int n = 0;
    EVP_DigestFinal_ex(md5, digest, &n);
    EVP_MD_CTX_free(md5);
    char hex[33];
    tern_hex(digest, 16, hex);
    snprintf(final->etag, sizeof final->etag, "%s-%zu", hex, j->part_count);
    free(chosen);
    return 0;
}

static void complete_work(mp_job *j)
{
    if ((j->rc = node_group_read_barrier_wait(j->r->server->group)) != 0) return;
    api__req *r = j->r;
    const char *upload_id = api__req_param(r, "uploadId");
    if (residency_refused(j)) return;
    node_manifest *tmpl = NULL;
    j->rc = node_store_upload_get(j->store, r->bucket, r->key, upload_id, &tmpl);
    if (j->rc == TERN_ENOTFOUND) upload_not_found(j);
    if (j->rc != 0) return;
    node_part *stored = NULL;
    size_t stored_count = 0;
    j->rc = node_store_upload_parts_list(j->store, r->bucket, r->key, upload_id, &stored,
                                         &stored_count);
    if (j->rc == 0 && validate_parts(j, stored, stored_count)) {
        node_manifest final = *tmpl;
        final.blocks = NULL;
        final.block_count = 0;
        final.size_bytes = 0;
        final.last_modified_ms = tern_now_ms();
        j->rc = build_final(j, stored, stored_count, &final);
        if (j->rc == 0)
            j->rc =
                node_cmd_upload_complete(r->server->group, r->bucket, r->key, upload_id, &final);
        if (j->rc == 0) {
            api__buf_printf(&j->body,
                            XML_HEADER "<CompleteMultipartUploadResult " S3_XMLNS ">"
                                       "<Location>/%s/",
                            r->bucket);
            api__xml_escape(&j->body, r->key, r->key_len);
            api__buf_append_str(&j->body, "</Location>");
            xml_text(&j->body, "Bucket", r->bucket);
            xml_text(&j->body, "Key", r->key);
            api__buf_printf(&j->body, "<ETag>&quot;%s&quot;</ETag>", final.etag);
            api__buf_append_str(&j->body, "</CompleteMultipartUploadResult>");
            api__access(r, PLC_PUT, final.size_bytes);
        }
        free(final.blocks);
    }
    node_parts_free(stored, stored_count);
    node_manifest_free(tmpl);
}

static void abort_work(mp_job *j)
{
    api__req *r = j->r;
    j->rc =
        node_cmd_upload_abort(r->server->group, r->bucket, r->key, api__req_param(r, "uploadId"));
    if (j->rc == TERN_ENOTFOUND) upload_not_found(j);
    j->status = 204;
}

static uint32_t param_u32(const api__req *r, const char *name, uint32_t dflt, uint32_t max)
{
    const char *v = api__req_param(r, name);
    if (v == NULL || v[0] == '\0') return dflt;
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (*end != '\0') return dflt;
    return n > max ? max : (uint32_t)n;
}

static void list_parts_work(mp_job *j)
{
    if ((j->rc = node_group_read_barrier_wait(j->r->server->group)) != 0) return;
    api__req *r = j->r;
    const char *upload_id = api__req_param(r, "uploadId");
    node_manifest *tmpl = NULL;
    j->rc = node_store_upload_get(j->store, r->bucket, r->key, upload_id, &tmpl);
    node_manifest_free(tmpl);
    if (j->rc == TERN_ENOTFOUND) upload_not_found(j);
    if (j->rc != 0) return;
    node_part *parts = NULL;
    size_t count = 0;
    j->rc = node_store_upload_parts_list(j->store, r->bucket, r->key, upload_id, &parts, &count);
    if (j->rc != 0) return;
    uint32_t marker = param_u32(r, "part-number-marker", 0, API_PARTS_MAX);
    uint32_t max = param_u32(r, "max-parts", 1000, 1000);
    api__buf part_xml = {0};
    uint32_t listed = 0, last = 0;
    bool truncated = false;
    for (size_t i = 0; i < count; i++) {
        if (parts[i].part_number <= marker) continue;
        if (listed == max) {
            truncated = true;
            break;
        }
        char date[32];
        api__iso8601_format(parts[i].last_modified_ms, date);
        api__buf_printf(&part_xml,
                        "<Part><PartNumber>%u</PartNumber><LastModified>%s</LastModified>"
                        "<ETag>&quot;%s&quot;</ETag><Size>%llu</Size></Part>",
                        parts[i].part_number, date, parts[i].etag,
                        (unsigned long long)parts[i].size_bytes);
        last = parts[i].part_number;
        listed++;
    }
    api__buf_printf(&j->body, XML_HEADER "<ListPartsResult " S3_XMLNS ">");
    xml_text(&j->body, "Bucket", r->bucket);
    xml_text(&j->body, "Key", r->key);
    xml_text(&j->body, "UploadId", upload_id);
    api__buf_printf(&j->body,
                    "<PartNumberMarker>%u</PartNumberMarker><NextPartNumberMarker>%u"
                    "</NextPartNumberMarker><MaxParts>%u</MaxParts><IsTruncated>%s</IsTruncated>"
                    "<StorageClass>STANDARD</StorageClass>",
                    marker, last, max, truncated ? "true" : "false");
    if (part_xml.len) api__buf_append(&j->body, part_xml.data, part_xml.len);
    api__buf_append_str(&j->body, "</ListPartsResult>");
    api__buf_free(&part_xml);
    node_parts_free(parts, count);
}

static void list_uploads_work(mp_job *j)
{
    if ((j->rc = node_group_read_barrier_wait(j->r->server->group)) != 0) return;
    api__req *r = j->r;
    node_bucket b;
    j->rc = node_store_bucket_get(j->store, r->bucket, &b);
    if (j->rc == TERN_ENOTFOUND) j->not_found_code = "NoSuchBucket";
    if (j->rc != 0) return;
    const char *prefix = api__req_param(r, "prefix");
    const char *key_marker = api__req_param(r, "key-marker");
    const char *id_marker = api__req_param(r, "upload-id-marker");
    uint32_t max = param_u32(r, "max-uploads", 1000, 1000);
    node_upload_entry *ups = NULL;
    size_t count = 0;
    j->rc = node_store_upload_list(j->store, r->bucket, prefix ? prefix : "", key_marker, id_marker,
                                   (size_t)max + 1, &ups, &count);
    if (j->rc != 0) return;
    bool truncated = count > max;
    if (truncated) count = max;
    api__buf *o = &j->body;
    api__buf_printf(o, XML_HEADER "<ListMultipartUploadsResult " S3_XMLNS ">");
    xml_text(o, "Bucket", r->bucket);
    xml_text(o, "KeyMarker", key_marker ? key_marker : "");
    xml_text(o, "UploadIdMarker", id_marker ? id_marker : "");
    xml_text(o, "NextKeyMarker", count ? ups[count - 1].key : "");
    xml_text(o, "NextUploadIdMarker", count ? ups[count - 1].upload_id : "");
    xml_text(o, "Prefix", prefix ? prefix : "");
    api__buf_printf(o, "<MaxUploads>%u</MaxUploads><IsTruncated>%s</IsTruncated>", max,
                    truncated ? "true" : "false");
    for (size_t i = 0; i < count; i++) {
        char date[32];
        api__iso8601_format(ups[i].initiated_ms, date);
        api__buf_append_str(o, "<Upload>");
        xml_text(o, "Key", ups[i].key);
        xml_text(o, "UploadId", ups[i].upload_id);
        api__buf_printf(o,
                        "<Initiator><ID>tern</ID><DisplayName>tern</DisplayName></Initiator>"
                        "<Owner><ID>tern</ID><DisplayName>tern</DisplayName></Owner>"
                        "<StorageClass>STANDARD</StorageClass><Initiated>%s</Initiated></Upload>",
                        date);
    }
    api__buf_append_str(o, "</ListMultipartUploadsResult>");
    node_uploads_free(ups, count + (truncated ? 1 : 0));
}

void api__multipart_handle(api__req *r)
{
    mp_job *j = calloc(1, sizeof *j);
    assert(j != NULL);
    j->r = r;
    j->store = r->server->store;
    switch (r->op) {
    case API_OP_CREATE_UPLOAD: {
        const char *code = NULL;
        if (api__collect_headers(r, &j->tmpl, &code) != 0) {
            mp_free(j);
            api__respond_error(r, code ? code : "InternalError",
                               code ? "Your metadata headers exceed 2 KB." : "Out of memory.");
            return;
        }
        j->work = create_work;
        break;
    }
    case API_OP_COMPLETE_UPLOAD: {
        char errmsg[256] = "";
        if (api__xml_parse_complete_multipart(r->body.data ? r->body.data : "", r->body.len,
                                              &j->parts, &j->part_count, errmsg,
                                              sizeof errmsg) != 0) {
            mp_free(j);
            api__respond_error(r, "MalformedXML",
                               errmsg[0] ? errmsg : "The XML you provided was not well-formed.");
            return;
        }
        j->work = complete_work;
        break;
    }
    case API_OP_ABORT_UPLOAD:
        j->work = abort_work;
        break;
    case API_OP_LIST_PARTS:
        j->work = list_parts_work;
        break;
    case API_OP_LIST_UPLOADS:
        j->work = list_uploads_work;
        break;
    default:
        /* The router sends only the operations above here. */
        assert(!"multipart handler reached with an operation it does not serve");
        mp_free(j);
        return;
    }
    api__job_submit(r, mp_work, mp_done, j);
}
