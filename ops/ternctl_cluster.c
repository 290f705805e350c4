/* ternctl cluster: the region group's status and membership changes (/_tern/cluster). */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ternctl_internal.h"

/*
 * Only the leader knows how far each member's log matches its own, so "cluster status" on a
 * follower asks the leader it names (at its advertised S3 address, with the same scheme and
 * credentials) for the member table. That second request is best effort: when it fails, the
 * follower's own view is shown with a note, and the command still succeeds, because the
 * follower answered and its view is what the operator asked for.
 */

/* The node's addresses fit in NODE_GROUP_ADDRESS_MAX (96) bytes with the NUL. */
#define ADDRESS_BYTES_MAX 96
#define TARGET_BYTES_MAX  512
#define URL_BYTES_MAX     160
#define WHY_BYTES_MAX     512
#define CELL_BYTES_MAX    ADDRESS_BYTES_MAX
#define MEMBER_COLUMNS    7

enum cluster_kind {
    CLUSTER_STATUS,
    CLUSTER_ADD,
    CLUSTER_REMOVE,
    CLUSTER_PROMOTE,
    CLUSTER_TRANSFER
};

typedef struct {
    const char *name;     /* the subcommand, and the last segment of a change's endpoint */
    const char *done_fmt; /* a change's success line; %llu is the node id */
} cluster_command;

static const cluster_command commands[] = {
    [CLUSTER_STATUS] = {"status", NULL},
    [CLUSTER_ADD] = {"add-node", "node %llu added as a learner; the leader promotes it to a "
                                 "voter once it has caught up"},
    [CLUSTER_REMOVE] = {"remove-node", "node %llu removed from the group"},
    [CLUSTER_PROMOTE] = {"promote-node", "node %llu promoted to a voter"},
    [CLUSTER_TRANSFER] = {"transfer-leader", "leadership transferred: node %llu is the leader"},
};

const char ops__cluster_usage[] =
    "  cluster status\n"
    "                the region group: this node's Raft state and the members with their\n"
    "                replication lag (from the leader when this node is not it)\n"
    "  cluster add-node ID PEER_HOST:PORT\n"
    "                add node ID, listening for peers at PEER_HOST:PORT, as a learner; the\n"
    "                leader promotes it to a voter once it has caught up\n"
    "  cluster promote-node ID\n"
    "                make learner ID a voter now (it must have caught up)\n"
    "  cluster remove-node ID\n"
    "                remove node ID from the group\n"
    "  cluster transfer-leader ID\n"
    "                hand the leadership to voter ID\n";

/* ---------------- arguments ---------------- */

/* Decimal digits only, 1 .. INT64_MAX: the node's JSON carries ids as signed 64-bit. */
static bool parse_node_id(const char *text, unsigned long long *id)
{
    if (text[0] == '\0' || strspn(text, "0123456789") != strlen(text)) return false;
    errno = 0;
    unsigned long long value = strtoull(text, NULL, 10);
    if (errno != 0 || value == 0 || value > INT64_MAX) return false;
    *id = value;
    return true;
}

/* HOST:PORT or [IPv6]:PORT with a port 1..65535, the form the node's peer list takes. */
static bool valid_peer_address(const char *text)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL || strlen(text) >= ADDRESS_BYTES_MAX) return false;
    const char *host = text;
    size_t host_len = (size_t)(colon - text);
    const char *host_chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-";
    if (text[0] == '[') {
        if (host_len < 3 || colon[-1] != ']') return false;
        host++;
        host_len -= 2;
        host_chars = "0123456789abcdefABCDEF:.";
    }
    if (host_len == 0) return false;
    for (size_t i = 0; i < host_len; i++)
        if (strchr(host_chars, host[i]) == NULL) return false;
    const char *port = colon + 1;
    size_t port_len = strlen(port);
    if (port_len == 0 || port_len > 5 || strspn(port, "0123456789") != port_len) return false;
    long value = strtol(port, NULL, 10);
    return value >= 1 && value <= 65535;
}

int ops__cluster_parse(const ops__options *o, int argc, char **argv, ops__cluster_cmd *cmd)
{
    memset(cmd, 0, sizeof *cmd);
    if (argc == 0)
        return ops__usage_error(o, "cluster: missing subcommand (status, add-node, remove-node, "
                                   "promote-node or transfer-leader)");
    size_t kind = 0;
    while (kind < TERN_ARRAY_LEN(commands) && strcmp(argv[0], commands[kind].name) != 0)
        kind++;
    if (kind == TERN_ARRAY_LEN(commands))
        return ops__usage_error(o, "unknown cluster command '%s'", argv[0]);
    const char *name = commands[kind].name;
    cmd->kind = (int)kind;
    int words = 1; /* the subcommand and its operands */
    if (kind != CLUSTER_STATUS) {
        if (argc < 2) return ops__usage_error(o, "cluster %s: missing node ID", name);
        if (!parse_node_id(argv[1], &cmd->node_id))
            return ops__usage_error(o, "cluster %s: invalid node ID '%s': expected an integer >= 1",
                                    name, argv[1]);
        words = 2;
    }
    if (kind == CLUSTER_ADD) {
        if (argc < 3)
            return ops__usage_error(o, "cluster add-node: missing the new node's peer address "
                                       "PEER_HOST:PORT");
        if (!valid_peer_address(argv[2]))
            return ops__usage_error(o,
                                    "cluster add-node: invalid peer address '%s': expected "
                                    "HOST:PORT or [IPv6]:PORT with a port from 1 to 65535",
                                    argv[2]);
        cmd->peer = argv[2];
        words = 3;
    }
    if (argc > words)
        return ops__usage_error(o, "unexpected argument '%s' after the command", argv[words]);
    return EXIT_OK;
}

/* ---------------- responses ---------------- */

/* The body as a JSON object, or NULL if it is not one. */
static json_t *parse_object(const ops__response *body)
{
    if (body->data == NULL) return NULL;
    json_t *root = json_loadb(body->data, body->len, 0, NULL);
    if (root != NULL && !json_is_object(root)) {
        json_decref(root);
        root = NULL;
    }
    return root;
}

/*
 * The node's own error document {"code":"EAGAIN","error":"..."} when it sent one; otherwise
 * whatever the generic reporter makes of the body (refused credentials come as S3 XML).
 */
static void report_cluster_error(const ops__options *o, const char *name, const char *method,
                                 const char *target, long status, const ops__response *body,
                                 const json_t *root)
{
    const char *code = json_string_value(json_object_get(root, "code"));
    const char *text = json_string_value(json_object_get(root, "error"));
    if (code == NULL && text == NULL) {
        if (status / 100 == 2)
            fprintf(o->err,
                    "ternctl: cluster %s: the node answered HTTP %ld without {\"ok\": true}\n",
                    name, status);
        else
            ops__report_http_error(o, method, target, status, body);
        return;
    }
    /* Codes come as "EAGAIN" or, from tern_errname, "TERN_EAGAIN": show the short form. */
    if (code != NULL && strncmp(code, "TERN_", 5) == 0) code += 5;
    fprintf(o->err, "ternctl: cluster %s: %ld %s: %s\n", name, status, code ? code : "error",
            text ? text : "no message");
}

/* GET /_tern/cluster from o->endpoint: the document, or NULL after printing why on o->err. */
static json_t *get_cluster(const ops__options *o)
{
    static const char target[] = "/_tern/cluster";
    ops__response body = {0};
    long status = 0;
    json_t *root = NULL;
    if (ops__http_request(o, "GET", target, &status, &body) != EXIT_OK) goto out;
    root = parse_object(&body);
    if (status != 200) {
        report_cluster_error(o, "status", "GET", target, status, &body, root);
        json_decref(root);
        root = NULL;
    } else if (root == NULL) {
        fprintf(o->err, "ternctl: GET %s%s returned something other than a JSON object\n",
                o->endpoint, target);
    }
out:
    free(body.data);
    return root;
}

static bool is_leader(const json_t *doc)
{
    const char *role = json_string_value(json_object_get(doc, "role"));
    return role != NULL && strcmp(role, "leader") == 0;
}

/* An integer field, or -1 when it is absent, negative or not an integer. */
static long long int_field(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (long long)json_integer_value(v) : -1;
}

static const char *string_field(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL && s[0] != '\0' ? s : NULL;
}

/*
 * The URL of the leader's admin API, from the follower's document: its S3 address with the
 * scheme of the endpoint the operator gave. Returns NULL with the reason in why when the
 * address cannot be used.
 */
static const char *leader_endpoint(const ops__options *o, const json_t *doc, char *url,
                                   size_t url_len, const char **why)
{
    const char *s3 = string_field(doc, "leader_s3");
    if (s3 == NULL) {
        *why = "its S3 address is not known yet";
        return NULL;
    }
    /* The address goes into a URL, so only a plain HOST:PORT is followed. */
    if (strspn(s3, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") !=
            strlen(s3) ||
        strchr(s3, ':') == NULL) {
        *why = "its S3 address is not HOST:PORT";
        return NULL;
    }
    /* A node listening on every interface advertises 0.0.0.0 or [::], which names no host. */
    if (strncmp(s3, "0.0.0.0:", 8) == 0 || strncmp(s3, "[::]:", 5) == 0) {
        *why = "it advertises a wildcard S3 address";
        return NULL;
    }
    /* set_endpoint accepts only http:// and https:// endpoints. */
    const char *scheme_end = strstr(o->endpoint, "://");
    if (scheme_end == NULL ||
        (size_t)snprintf(url, url_len, "%.*s://%s", (int)(scheme_end - o->endpoint), o->endpoint,
                         s3) >= url_len) {
        *why = "its S3 address is too long";
        return NULL;
    }
    return url;
}

/*
 * Asks the leader at endpoint for its document. Its diagnostics are captured rather than
 * printed, since a failure here is only a note; the reason comes back as one line in why.
 */
static json_t *query_leader(const ops__options *o, const char *endpoint, char *why, size_t why_len)
{
    char *text = NULL;
    size_t text_len = 0;
    ops__options leader = *o;
    leader.endpoint = endpoint;
    leader.endpoint_owned = NULL;
    leader.err = open_memstream(&text, &text_len);
    if (leader.err == NULL) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    json_t *doc = get_cluster(&leader);
    fclose(leader.err);
    if (doc != NULL && !is_leader(doc)) {
        const char *role = string_field(doc, "role");
        snprintf(why, why_len, "it is no longer the leader (it answered as %s)",
                 role ? role : "an unknown role");
        json_decref(doc);
        doc = NULL;
    } else if (doc == NULL) {
        const char *p = text != NULL ? text : "";
        if (strncmp(p, "ternctl: ", 9) == 0) p += 9;
        snprintf(why, why_len, "%.*s", (int)strcspn(p, "\n"), p);
    }
    free(text);
    return doc;
}

/* ---------------- the status table ---------------- */

/* A scalar as table text: "-" for absent, empty or nested values. */
static void cell_text(const json_t *v, char *out, size_t out_len)
{
    if (json_is_string(v) && json_string_value(v)[0] != '\0')
        snprintf(out, out_len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, out_len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_boolean(v))
        snprintf(out, out_len, "%s", json_is_true(v) ? "yes" : "no");
    else
        snprintf(out, out_len, "-");
}

static void print_header(const ops__options *o, const json_t *doc)
{
    static const struct {
        const char *label, *key;
    } fields[] = {
        {"Region", "region"},
        {"Role", "role"},
        {"Term", "term"},
        {"Leader", NULL},
        {"Commit index", "commit_index"},
        {"Applied index", "applied_index"},
        {"Last index", "last_index"},
        {"Snapshot index", "snapshot_index"},
        {"Failed", "failed"},
    };
    char value[CELL_BYTES_MAX * 2];
    fprintf(o->out, "%-16s%lld (answered at %s)\n", "Node", int_field(doc, "node_id"), o->endpoint);
    for (size_t i = 0; i < TERN_ARRAY_LEN(fields); i++) {
        if (fields[i].key != NULL) {
            cell_text(json_object_get(doc, fields[i].key), value, sizeof value);
        } else if (int_field(doc, "leader_id") <= 0) {
            snprintf(value, sizeof value, "none known");
        } else {
            const char *s3 = string_field(doc, "leader_s3");
            snprintf(value, sizeof value, "node %lld (S3 %s)", int_field(doc, "leader_id"),
                     s3 ? s3 : "address not known yet");
        }
        fprintf(o->out, "%-16s%s\n", fields[i].label, value);
    }
}

/* One member's row; match, lag and active only when the view is the leader's. */
static void member_cells(const json_t *m, bool progress_known,
                         char cells[MEMBER_COLUMNS][CELL_BYTES_MAX])
{
    static const char *const keys[MEMBER_COLUMNS] = {"id",    "role", "peer",  "s3",
                                                     "match", "lag",  "active"};
    for (size_t c = 0; c < MEMBER_COLUMNS; c++) {
        if (c >= 4 && !progress_known)
            snprintf(cells[c], CELL_BYTES_MAX, "-");
        else
            cell_text(json_object_get(m, keys[c]), cells[c], CELL_BYTES_MAX);
    }
}

/* Columns padded to width and two spaces apart; the last one unpadded (no trailing blanks). */
static void print_row(FILE *out, const char *const cells[MEMBER_COLUMNS],
                      const int width[MEMBER_COLUMNS])
{
    for (size_t c = 0; c + 1 < MEMBER_COLUMNS; c++)
        fprintf(out, "%-*s  ", width[c], cells[c]);
    fprintf(out, "%s\n", cells[MEMBER_COLUMNS - 1]);
}

static void print_members(const ops__options *o, const json_t *members, bool progress_known)
{
    static const char *const headings[MEMBER_COLUMNS] = {"ID",    "ROLE", "PEER",  "S3",
                                                         "MATCH", "LAG",  "ACTIVE"};
    char cells[MEMBER_COLUMNS][CELL_BYTES_MAX];
    const char *row[MEMBER_COLUMNS];
    int width[MEMBER_COLUMNS];
    size_t i;
    const json_t *m;
    for (size_t c = 0; c < MEMBER_COLUMNS; c++) {
        width[c] = (int)strlen(headings[c]);
        row[c] = cells[c];
    }
    /* Two passes, measuring then printing, so the table needs no copy of the members. */
    json_array_foreach(members, i, m)
    {
        member_cells(m, progress_known, cells);
        for (size_t c = 0; c < MEMBER_COLUMNS; c++)
            width[c] = TERN_MAX(width[c], (int)strlen(cells[c]));
    }
    print_row(o->out, headings, width);
    json_array_foreach(members, i, m)
    {
        member_cells(m, progress_known, cells);
        print_row(o->out, row, width);
    }
    if (json_array_size(members) == 0) fprintf(o->out, "(no members: not in a group yet)\n");
}

/*
 * The table: the asked node's own state, then the member table from the best view there is.
 * leader is the leader's document when it answered; leader_url is where the leader is, when
 * its address is usable (whether or not it answered).
 */
static void print_cluster_table(const ops__options *o, const json_t *doc, const json_t *leader,
                                const char *leader_url)
{
    print_header(o, doc);
    fputc('\n', o->out);
    if (leader != NULL) {
        fprintf(o->out, "Members, as the leader (node %lld at %s) reports them:\n",
                int_field(leader, "node_id"), leader_url);
        print_members(o, json_object_get(leader, "members"), true);
        return;
    }
    bool self_leader = is_leader(doc);
    fprintf(o->out, "Members, as node %lld (%s) reports them:\n", int_field(doc, "node_id"),
            self_leader ? "the leader" : "not the leader");
    print_members(o, json_object_get(doc, "members"), self_leader);
    if (self_leader) return;
    const char *s3 = string_field(doc, "leader_s3");
    if (int_field(doc, "leader_id") <= 0)
        fprintf(o->out, "Note: match, lag and active are known by the leader only, and no "
                        "leader is known now.\n");
    else if (leader_url != NULL)
        fprintf(o->out,
                "Note: match, lag and active are known by the leader (node %lld) only; ask it "
                "with --endpoint %s\n",
                int_field(doc, "leader_id"), leader_url);
    else
        fprintf(o->out,
                "Note: match, lag and active are known by the leader (node %lld, S3 %s) "
                "only.\n",
                int_field(doc, "leader_id"), s3 ? s3 : "address not known yet");
}

static int cluster_status(const ops__options *o)
{
    json_t *doc = get_cluster(o);
    if (doc == NULL) return EXIT_FAILED;
    json_t *leader = NULL;
    char url[URL_BYTES_MAX];
    const char *leader_url = NULL;
    if (!is_leader(doc) && int_field(doc, "leader_id") > 0) {
        const char *why_static = NULL;
        char why[WHY_BYTES_MAX] = "";
        leader_url = leader_endpoint(o, doc, url, sizeof url, &why_static);
        if (leader_url != NULL) leader = query_leader(o, leader_url, why, sizeof why);
        if (leader == NULL)
            fprintf(o->err,
                    "ternctl: note: cannot get the member table from the leader (node %lld%s%s): "
                    "%s; showing node %lld's view\n",
                    int_field(doc, "leader_id"), leader_url ? " at " : "",
                    leader_url ? leader_url : "", why_static ? why_static : why,
                    int_field(doc, "node_id"));
    }
    if (o->json_output) {
        /* The asked node's document as it came; the leader's rides along under "leader". */
        if (leader != NULL) json_object_set(doc, "leader", leader);
        ops__print_json(o, doc);
    } else {
        print_cluster_table(o, doc, leader, leader_url);
    }
    json_decref(leader);
    json_decref(doc);
    return EXIT_OK;
}

/* ---------------- changes ---------------- */

static int cluster_change(const ops__options *o, const ops__cluster_cmd *cmd)
{
    const cluster_command *c = &commands[cmd->kind];
    char target[TARGET_BYTES_MAX];
    /* Parameters in name order with encoded values: the query is signed exactly as written. */
    int n = snprintf(target, sizeof target, "/_tern/cluster/%s?id=%llu%s", c->name, cmd->node_id,
                     cmd->peer != NULL ? "&peer=" : "");
    /* The peer address is under 96 bytes, so even fully encoded it fits. */
    if (n < 0 || (size_t)n >= sizeof target ||
        (cmd->peer != NULL && !ops__query_encode(cmd->peer, target, sizeof target))) {
        fprintf(o->err, "ternctl: cluster %s: request too long\n", c->name);
        return EXIT_FAILED;
    }
    ops__response body = {0};
    long status = 0;
    int rc = ops__http_request(o, "POST", target, &status, &body);
    if (rc != EXIT_OK) goto out;
    json_t *root = parse_object(&body);
    if (status == 200 && json_is_true(json_object_get(root, "ok"))) {
        if (o->json_output) {
            ops__print_json(o, root);
        } else {
            fprintf(o->out, c->done_fmt, cmd->node_id);
            fputc('\n', o->out);
        }
    } else {
        report_cluster_error(o, c->name, "POST", target, status, &body, root);
        rc = EXIT_FAILED;
    }
    json_decref(root);
out:
    free(body.data);
    return rc;
}

int ops__cluster_run(const ops__options *o, const ops__cluster_cmd *cmd)
{
    return cmd->kind == CLUSTER_STATUS ? cluster_status(o) : cluster_change(o, cmd);
}
