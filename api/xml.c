/* XML escaping for responses and a small, strict XML parser for the three S3 request bodies. */
#include "api_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/*
 * Design note. Request bodies are parsed into a flat array of element nodes
 * (index links, no recursion) and the three extractors walk that tree. The
 * parser is deliberately small and strict: it accepts a prolog with the XML
 * declaration, comments and processing instructions, one root element,
 * attributes (which it ignores: xmlns and friends), the five predefined
 * entities and character references, and CDATA sections. It refuses any
 * DOCTYPE or other "<!" declaration (so no entity expansion, hence no entity
 * bombs), nesting deeper than XML_DEPTH_MAX, more than XML_NODES_MAX
 * elements, raw control characters, text outside the root and text mixed
 * with child elements. Element names are matched on their local part, so
 * <s3:Part> and <Part> are the same element. Byte sequences are not checked
 * for UTF-8 validity here; object keys are (api__object_key_check).
 */

#define XML_DEPTH_MAX 16
/* 10000 parts with a few elements each fit comfortably. */
#define XML_NODES_MAX        100000
#define XML_PARTS_MAX        10000
#define XML_DELETE_KEYS_MAX  1000
#define XML_REGION_BYTES_MAX 128

/* ---------------- escaping ---------------- */

int api__xml_escape(api__buf *out, const char *s, size_t len)
{
    int rc = api__buf_append(out, "", 0);
    size_t run = 0; /* bytes copied through unchanged, flushed in one append */
    for (size_t i = 0; rc == 0 && i < len; i++) {
        const char *esc = NULL;
        switch (s[i]) {
        case '&':
            esc = "&amp;";
            break;
        case '<':
            esc = "&lt;";
            break;
        case '>':
            esc = "&gt;";
            break;
        case '"':
            esc = "&quot;";
            break;
        case '\'':
            esc = "&apos;";
            break;
        default:
            run++;
            continue;
        }
        rc = api__buf_append(out, s + i - run, run);
        run = 0;
        if (rc == 0) rc = api__buf_append_str(out, esc);
    }
    if (rc == 0) rc = api__buf_append(out, s + len - run, run);
    return rc;
}

int api__xml_element(api__buf *out, const char *tag, const char *value)
{
    int rc = api__buf_printf(out, "<%s>", tag);
    if (rc == 0) rc = api__xml_escape(out, value, strlen(value));
    if (rc == 0) rc = api__buf_printf(out, "</%s>", tag);
    return rc;
}

void api__strv_free(char **v, size_t count)
{
    if (v == NULL) return;
    for (size_t i = 0; i < count; i++)
        free(v[i]);
    free(v);
}

/* ---------------- parser ---------------- */

typedef struct {
    const char *qname; /* as written, for matching the end tag */
    size_t qname_len;
    const char *local; /* after any "prefix:" */
    size_t local_len;
    size_t text_off, text_len; /* direct character data, in parser.text */
    int parent, first_child, last_child, next_sibling;
    bool nonspace_text;
} xml_node;

typedef struct {
    const char *s;
    size_t len, pos;
    xml_node *nodes;
    size_t count, cap;
    api__buf text; /* decoded character data of all elements */
    char *errmsg;
    size_t errmsg_len;
} xml_parser;

static int xml_error(xml_parser *p, const char *what)
{
    tern_errmsg(p->errmsg, p->errmsg_len, "%s (at byte %zu)", what, p->pos);
    return TERN_EPARSE;
}

static bool at(const xml_parser *p, const char *lit)
{
    size_t n = strlen(lit);
    return p->len - p->pos >= n && memcmp(p->s + p->pos, lit, n) == 0;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_ws(xml_parser *p)
{
    while (p->pos < p->len && is_ws(p->s[p->pos]))
        p->pos++;
}

static bool name_start(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':' || c >= 0x80;
}

static bool name_char(unsigned char c)
{
    return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

static int parse_name(xml_parser *p, const char **name, size_t *len)
{
    size_t start = p->pos;
    if (p->pos >= p->len || !name_start((unsigned char)p->s[p->pos]))
        return xml_error(p, "expected an XML name");
    while (p->pos < p->len && name_char((unsigned char)p->s[p->pos]))
        p->pos++;
    *name = p->s + start;
    *len = p->pos - start;
    return 0;
}

/* Skips from the current position past `terminator`. */
static int skip_past(xml_parser *p, const char *terminator, const char *what)
{
    size_t n = strlen(terminator);
    for (; p->len - p->pos >= n; p->pos++) {
        if (memcmp(p->s + p->pos, terminator, n) == 0) {
            p->pos += n;
            return 0;
        }
    }
    p->pos = p->len;
    return xml_error(p, what);
}

static bool xml_char_ok(uint32_t cp)
{
    return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
           (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

static int append_utf8(api__buf *out, uint32_t cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp, n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | cp >> 6), b[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | cp >> 12), b[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    } else {
        b[0] = (char)(0xF0 | cp >> 18), b[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        b[2] = (char)(0x80 | (cp >> 6 & 0x3F)), b[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    }
    return api__buf_append(out, b, n);
}

/* Decodes the reference at p->pos ('&') into out (NULL: validate only). */
static int parse_reference(xml_parser *p, api__buf *out)
{
    static const struct {
        const char *name;
        char c;
    } predefined[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    for (size_t i = 0; i < TERN_ARRAY_LEN(predefined); i++) {
        if (at(p, predefined[i].name)) {
            p->pos += strlen(predefined[i].name);
            return out != NULL ? api__buf_append(out, &predefined[i].c, 1) : 0;
        }
    }
    if (!at(p, "&#")) return xml_error(p, "unknown entity (only the predefined ones are allowed)");
    p->pos += 2;
    bool hex = p->pos < p->len && p->s[p->pos] == 'x';
    p->pos += hex;
    uint32_t cp = 0;
    size_t digits = 0;
    for (; p->pos < p->len && p->s[p->pos] != ';'; p->pos++, digits++) {
        char c = p->s[p->pos];
        int d = c >= '0' && c <= '9'          ? c - '0'
                : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
                : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                              : -1;
        if (d < 0) return xml_error(p, "malformed character reference");
        cp = cp * (hex ? 16 : 10) + (uint32_t)d;
        if (cp > 0x10FFFF) return xml_error(p, "character reference out of range");
    }
    if (p->pos >= p->len || digits == 0) return xml_error(p, "malformed character reference");
    p->pos++; /* ';' */
    if (!xml_char_ok(cp)) return xml_error(p, "character reference to a forbidden character");
    return out != NULL ? append_utf8(out, cp) : 0;
}

/* Appends raw bytes with XML line-end normalization (CRLF and CR become LF). */
static int append_raw(xml_parser *p, xml_node *n, const char *s, size_t len)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return xml_error(p, "control character in text");
        if (!is_ws((char)c)) n->nonspace_text = true;
        if (c == '\r') {
            if (i + 1 < len && s[i + 1] == '\n') i++;
            c = '\n';
        }
        rc = api__buf_append(&p->text, &c, 1);
    }
    return rc;
}

static int parse_text(xml_parser *p, xml_node *n)
{
    while (p->pos < p->len && p->s[p->pos] != '<') {
        if (p->s[p->pos] == '&') {
            int rc = parse_reference(p, &p->text);
            if (rc != 0) return rc;
            n->nonspace_text = true;
            continue;
        }
        size_t start = p->pos;
        while (p->pos < p->len && p->s[p->pos] != '<' && p->s[p->pos] != '&')
            p->pos++;
        int rc = append_raw(p, n, p->s + start, p->pos - start);
        if (rc != 0) return rc;
    }
    return 0;
}

static int parse_cdata(xml_parser *p, xml_node *n)
{
    p->pos += 9; /* "<![CDATA[" */
    size_t start = p->pos;
    int rc = skip_past(p, "]]>", "unterminated CDATA section");
    if (rc != 0) return rc;
    return append_raw(p, n, p->s + start, p->pos - 3 - start);
}

/* Attributes are checked for well-formedness and otherwise ignored. */
static int parse_attributes(xml_parser *p)
{
    for (;;) {
        size_t before = p->pos;
        skip_ws(p);
        if (p->pos >= p->len) return xml_error(p, "unterminated start tag");
        char c = p->s[p->pos];
        if (c == '>' || c == '/') return 0;
        if (p->pos == before) return xml_error(p, "expected whitespace before an attribute");
        const char *name;
        size_t name_len;
        int rc = parse_name(p, &name, &name_len);
        if (rc != 0) return rc;
        skip_ws(p);
        if (!at(p, "=")) return xml_error(p, "expected '=' after an attribute name");
        p->pos++;
        skip_ws(p);
        if (p->pos >= p->len || (p->s[p->pos] != '"' && p->s[p->pos] != '\''))
            return xml_error(p, "attribute value must be quoted");
        char quote = p->s[p->pos++];
        while (p->pos < p->len && p->s[p->pos] != quote) {
            if (p->s[p->pos] == '<') return xml_error(p, "'<' in an attribute value");
            if (p->s[p->pos] == '&') {
                rc = parse_reference(p, NULL);
                if (rc != 0) return rc;
            } else {
                p->pos++;
            }
        }
        if (p->pos >= p->len) return xml_error(p, "unterminated attribute value");
        p->pos++;
    }
}

static int new_node(xml_parser *p, int parent, int depth, int *out)
{
    if (depth > XML_DEPTH_MAX) return xml_error(p, "elements nested too deeply");
    if (p->count >= XML_NODES_MAX) return xml_error(p, "too many elements");
    if (p->count == p->cap) {
        size_t cap = p->cap == 0 ? 32 : p->cap * 2;
        xml_node *nodes = realloc(p->nodes, cap * sizeof(*nodes));
        if (nodes == NULL) return TERN_ENOMEM;
        p->nodes = nodes;
        p->cap = cap;
    }
    int i = (int)p->count++;
    xml_node *n = &p->nodes[i];
    memset(n, 0, sizeof(*n));
    n->parent = parent;
    n->first_child = n->last_child = n->next_sibling = -1;
    n->text_off = p->text.len;
    if (parent >= 0) {
        xml_node *par = &p->nodes[parent];
        if (par->last_child >= 0)
            p->nodes[par->last_child].next_sibling = i;
        else
            par->first_child = i;
        par->last_child = i;
    }
    *out = i;
    return 0;
}

/* "<name attrs>" or "<name attrs/>": creates the node; *closed when self-closing. */
static int parse_start_tag(xml_parser *p, int parent, int depth, int *out, bool *closed)
{
    p->pos++; /* '<' */
    const char *name;
    size_t name_len;
    int rc = parse_name(p, &name, &name_len);
    if (rc == 0) rc = parse_attributes(p);
    if (rc == 0) rc = new_node(p, parent, depth, out);
    if (rc != 0) return rc;
    xml_node *n = &p->nodes[*out];
    n->qname = name;
    n->qname_len = name_len;
    const char *colon = memchr(name, ':', name_len);
    n->local = colon != NULL ? colon + 1 : name;
    n->local_len = name_len - (size_t)(n->local - name);
    *closed = at(p, "/>");
    if (!*closed && !at(p, ">")) return xml_error(p, "malformed start tag");
    p->pos += *closed ? 2 : 1;
    return 0;
}

/* "</name>" closing node `cur`; records its text. */
static int parse_end_tag(xml_parser *p, int cur)
{
    p->pos += 2;
    const char *name;
    size_t name_len;
    int rc = parse_name(p, &name, &name_len);
    if (rc != 0) return rc;
    xml_node *n = &p->nodes[cur];
    if (name_len != n->qname_len || memcmp(name, n->qname, name_len) != 0)
        return xml_error(p, "end tag does not match the start tag");
    skip_ws(p);
    if (!at(p, ">")) return xml_error(p, "malformed end tag");
    p->pos++;
    return 0;
}

static void close_node(xml_parser *p, int i)
{
    xml_node *n = &p->nodes[i];
    n->text_len = p->text.len - n->text_off;
}

/* Comments, processing instructions and refused declarations, wherever they appear. */
static int parse_markup_decl(xml_parser *p, bool *handled)
{
    *handled = true;
    if (at(p, "<!--")) return skip_past(p, "-->", "unterminated comment");
    if (at(p, "<?")) return skip_past(p, "?>", "unterminated processing instruction");
    if (at(p, "<!DOCTYPE") || at(p, "<!ENTITY"))
        return xml_error(p, "DOCTYPE and ENTITY declarations are not allowed");
    if (at(p, "<!") && !at(p, "<![CDATA[")) return xml_error(p, "unsupported declaration");
    *handled = false;
    return 0;
}

static int parse_root(xml_parser *p)
{
    int cur = -1, depth = 0;
    bool closed = false;
    int rc = parse_start_tag(p, -1, 1, &cur, &closed);
    if (rc != 0 || closed) {
        if (rc == 0) close_node(p, cur);
        return rc;
    }
    depth = 1;
    while (rc == 0) {
        if (p->pos >= p->len) return xml_error(p, "unexpected end of document");
        bool handled = false;
        if (p->s[p->pos] != '<') {
            rc = parse_text(p, &p->nodes[cur]);
        } else if ((rc = parse_markup_decl(p, &handled)) != 0 || handled) {
            /* comment or PI skipped, or error */
        } else if (at(p, "<![CDATA[")) {
            rc = parse_cdata(p, &p->nodes[cur]);
        } else if (at(p, "</")) {
            rc = parse_end_tag(p, cur);
            if (rc != 0) break;
            close_node(p, cur);
            if (p->nodes[cur].first_child >= 0 && p->nodes[cur].nonspace_text)
                return xml_error(p, "text mixed with child elements");
            cur = p->nodes[cur].parent;
            if (--depth == 0) return 0;
        } else {
            int child;
            rc = parse_start_tag(p, cur, depth + 1, &child, &closed);
            if (rc == 0 && closed) close_node(p, child);
            if (rc == 0 && !closed) {
                cur = child;
                depth++;
            }
        }
    }
    return rc;
}

/* Prolog, one root element, then only whitespace, comments and PIs. */
static int parse_document(xml_parser *p)
{
    if (at(p, "\xEF\xBB\xBF")) p->pos += 3; /* UTF-8 byte order mark */
    for (int part = 0; part < 2; part++) {
        for (;;) {
            skip_ws(p);
            if (p->pos >= p->len) break;
            bool handled = false;
            int rc = parse_markup_decl(p, &handled);
            if (rc != 0) return rc;
            if (handled) continue;
            if (part == 1) return xml_error(p, "content after the root element");
            if (p->s[p->pos] != '<' || at(p, "<![CDATA["))
                return xml_error(p, "content before the root element");
            rc = parse_root(p);
            if (rc != 0) return rc;
            break;
        }
        if (part == 0 && p->count == 0) return xml_error(p, "no root element");
    }
    return 0;
}

static int xml_parse(xml_parser *p, const char *body, size_t len, char *errmsg, size_t errmsg_len)
{
    memset(p, 0, sizeof(*p));
    p->s = body != NULL ? body : "";
    p->len = body != NULL ? len : 0;
    p->errmsg = errmsg;
    p->errmsg_len = errmsg_len;
    if (memchr(p->s, '\0', p->len) != NULL) return xml_error(p, "NUL byte in the document");
    int rc = parse_document(p);
    if (rc == TERN_ENOMEM) tern_errmsg(errmsg, errmsg_len, "out of memory parsing XML");
    return rc;
}

static void xml_parser_free(xml_parser *p)
{
    free(p->nodes);
    api__buf_free(&p->text);
}

/* ---------------- tree helpers ---------------- */

static bool named(const xml_node *n, const char *name)
{
    return n->local_len == strlen(name) && memcmp(n->local, name, n->local_len) == 0;
}

/* The only child called name (-1 if none); error when there are several. */
static int only_child(xml_parser *p, int parent, const char *name, int *out)
{
    *out = -1;
    for (int c = p->nodes[parent].first_child; c >= 0; c = p->nodes[c].next_sibling) {
        if (!named(&p->nodes[c], name)) continue;
        if (*out >= 0) {
            tern_errmsg(p->errmsg, p->errmsg_len, "more than one <%s> element", name);
            return TERN_EPARSE;
        }
        *out = c;
    }
    return 0;
}

/* The text of a leaf element, optionally with surrounding whitespace trimmed. */
static int leaf_text(xml_parser *p, int node, bool trim, const char **text, size_t *len)
{
    const xml_node *n = &p->nodes[node];
    if (n->first_child >= 0) {
        tern_errmsg(p->errmsg, p->errmsg_len, "<%.*s> must not contain elements", (int)n->local_len,
                    n->local);
        return TERN_EPARSE;
    }
    const char *s = p->text.data != NULL ? p->text.data + n->text_off : "";
    size_t l = n->text_len;
    while (trim && l > 0 && is_ws(*s))
        s++, l--;
    while (trim && l > 0 && is_ws(s[l - 1]))
        l--;
    *text = s;
    *len = l;
    return 0;
}

static int check_root(xml_parser *p, const char *name)
{
    if (named(&p->nodes[0], name)) return 0;
    tern_errmsg(p->errmsg, p->errmsg_len, "the root element must be <%s>", name);
    return TERN_EPARSE;
}

/* ---------------- CompleteMultipartUpload ---------------- */

static int parse_part(xml_parser *p, int part, api__completed_part *out)
{
    int num = -1, etag = -1;
    int rc = only_child(p, part, "PartNumber", &num);
    if (rc == 0) rc = only_child(p, part, "ETag", &etag);
    if (rc != 0) return rc;
    if (num < 0 || etag < 0) {
        tern_errmsg(p->errmsg, p->errmsg_len, "every <Part> needs a <PartNumber> and an <ETag>");
        return TERN_EPARSE;
    }
    const char *s;
    size_t len;
    rc = leaf_text(p, num, true, &s, &len);
    if (rc != 0) return rc;
    uint32_t n = 0;
    bool ok = len > 0 && len <= 5;
    for (size_t i = 0; ok && i < len; i++) {
        ok = s[i] >= '0' && s[i] <= '9';
        n = n * 10 + (uint32_t)(s[i] - '0');
    }
    if (!ok || n < 1 || n > XML_PARTS_MAX) {
        tern_errmsg(p->errmsg, p->errmsg_len, "PartNumber must be an integer from 1 to 10000");
        return TERN_EPARSE;
    }
    rc = leaf_text(p, etag, true, &s, &len);
    if (rc != 0) return rc;
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"') s++, len -= 2;
    if (len == 0 || len >= sizeof(out->etag)) {
        tern_errmsg(p->errmsg, p->errmsg_len, "ETag must be 1 to %zu characters",
                    sizeof(out->etag) - 1);
        return TERN_EPARSE;
    }
    out->part_number = n;
    memcpy(out->etag, s, len);
    out->etag[len] = '\0';
    return 0;
}

int api__xml_parse_complete_multipart(const char *body, size_t len, api__completed_part **parts,
                                      size_t *count, char *errmsg, size_t errmsg_len)
{
    *parts = NULL;
    *count = 0;
    xml_parser p;
    int rc = xml_parse(&p, body, len, errmsg, errmsg_len);
    if (rc == 0) rc = check_root(&p, "CompleteMultipartUpload");
    size_t n = 0;
    for (int c = rc == 0 ? p.nodes[0].first_child : -1; c >= 0; c = p.nodes[c].next_sibling) {
        n += named(&p.nodes[c], "Part");
    }
    if (rc == 0 && (n == 0 || n > XML_PARTS_MAX)) {
        tern_errmsg(errmsg, errmsg_len, "CompleteMultipartUpload must list 1 to 10000 parts");
        rc = TERN_EPARSE;
    }
    api__completed_part *out = NULL;
    if (rc == 0 && (out = calloc(n, sizeof(*out))) == NULL) rc = TERN_ENOMEM;
    size_t i = 0;
    for (int c = rc == 0 ? p.nodes[0].first_child : -1; rc == 0 && c >= 0;
         c = p.nodes[c].next_sibling) {
        if (named(&p.nodes[c], "Part")) rc = parse_part(&p, c, &out[i++]);
    }
    xml_parser_free(&p);
    if (rc != 0) {
        free(out);
        return rc;
    }
    *parts = out;
    *count = n;
    return 0;
}

/* ---------------- Delete ---------------- */

static int parse_quiet(xml_parser *p, int node, bool *quiet)
{
    const char *s;
    size_t len;
    int rc = leaf_text(p, node, true, &s, &len);
    if (rc != 0) return rc;
    /* xs:boolean spellings. */
    if ((len == 4 && memcmp(s, "true", 4) == 0) || (len == 1 && s[0] == '1')) {
        *quiet = true;
    } else if ((len == 5 && memcmp(s, "false", 5) == 0) || (len == 1 && s[0] == '0')) {
        *quiet = false;
    } else {
        tern_errmsg(p->errmsg, p->errmsg_len, "Quiet must be true or false");
        return TERN_EPARSE;
    }
    return 0;
}

static int parse_delete_object(xml_parser *p, int object, char **out)
{
    int key = -1;
    int rc = only_child(p, object, "Key", &key);
    if (rc != 0) return rc;
    if (key < 0) {
        tern_errmsg(p->errmsg, p->errmsg_len, "every <Object> needs a <Key>");
        return TERN_EPARSE;
    }
    const char *s;
    size_t len;
    /* Keys are not trimmed: leading and trailing spaces are part of the name. */
    rc = leaf_text(p, key, false, &s, &len);
    if (rc != 0) return rc;
    if (api__object_key_check(s, len) != 0) {
        tern_errmsg(p->errmsg, p->errmsg_len, "a Key must be 1 to 1024 bytes of UTF-8");
        return TERN_EPARSE;
    }
    *out = malloc(len + 1);
    if (*out == NULL) return TERN_ENOMEM;
    memcpy(*out, s, len);
    (*out)[len] = '\0';
    return 0;
}

static int collect_delete(xml_parser *p, char ***keys, size_t *count, bool *quiet)
{
    int rc = check_root(p, "Delete");
    int quiet_node = -1;
    if (rc == 0) rc = only_child(p, 0, "Quiet", &quiet_node);
    if (rc == 0 && quiet_node >= 0) rc = parse_quiet(p, quiet_node, quiet);
    size_t n = 0;
    for (int c = rc == 0 ? p->nodes[0].first_child : -1; c >= 0; c = p->nodes[c].next_sibling) {
        n += named(&p->nodes[c], "Object");
    }
    if (rc == 0 && (n == 0 || n > XML_DELETE_KEYS_MAX)) {
        tern_errmsg(p->errmsg, p->errmsg_len, "Delete must list 1 to 1000 objects");
        rc = TERN_EPARSE;
    }
    char **out = NULL;
    if (rc == 0 && (out = calloc(n, sizeof(*out))) == NULL) rc = TERN_ENOMEM;
    size_t i = 0;
    for (int c = rc == 0 ? p->nodes[0].first_child : -1; rc == 0 && c >= 0;
         c = p->nodes[c].next_sibling) {
        if (named(&p->nodes[c], "Object")) rc = parse_delete_object(p, c, &out[i++]);
    }
    if (rc != 0) {
        api__strv_free(out, n);
        return rc;
    }
    *keys = out;
    *count = n;
    return 0;
}

int api__xml_parse_delete(const char *body, size_t len, char ***keys, size_t *count, bool *quiet,
                          char *errmsg, size_t errmsg_len)
{
    *keys = NULL;
    *count = 0;
    *quiet = false;
    xml_parser p;
    int rc = xml_parse(&p, body, len, errmsg, errmsg_len);
    if (rc == 0) rc = collect_delete(&p, keys, count, quiet);
    xml_parser_free(&p);
    if (rc != 0) *quiet = false;
    return rc;
}

/* ---------------- CreateBucketConfiguration ---------------- */

int api__xml_parse_create_bucket(const char *body, size_t len, char **region, char *errmsg,
                                 size_t errmsg_len)
{
    *region = NULL;
    xml_parser p;
    int rc = xml_parse(&p, body, len, errmsg, errmsg_len);
    if (rc == 0) rc = check_root(&p, "CreateBucketConfiguration");
    int node = -1;
    if (rc == 0) rc = only_child(&p, 0, "LocationConstraint", &node);
    const char *s = NULL;
    size_t l = 0;
    if (rc == 0 && node >= 0) rc = leaf_text(&p, node, true, &s, &l);
    if (rc == 0 && l > XML_REGION_BYTES_MAX) {
        tern_errmsg(errmsg, errmsg_len, "LocationConstraint is too long");
        rc = TERN_EPARSE;
    }
    /* An empty <LocationConstraint/> means the default region, as if it were absent. */
    if (rc == 0 && l > 0) {
        *region = malloc(l + 1);
        if (*region == NULL) {
            rc = TERN_ENOMEM;
        } else {
            memcpy(*region, s, l);
            (*region)[l] = '\0';
        }
    }
    xml_parser_free(&p);
    return rc;
}
