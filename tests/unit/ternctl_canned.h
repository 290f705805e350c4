/* The ternctl unit tests' canned HTTP node: a loopback server answering fixed bytes and
 * keeping the last request, ternctl run in-process, and the SigV4 pieces to check what it
 * sent. Included by one test file each (static functions, like store_fixture.h). */
#ifndef TERN_TESTS_TERNCTL_CANNED_H
#define TERN_TESTS_TERNCTL_CANNED_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "ops.h"
#include "sigv4_check.h"

#define SECRET      "secret-123"
#define AUTH_PREFIX "Authorization: AWS4-HMAC-SHA256 Credential=AKIDTEST/"
#define ARGC(a)     ((int)(sizeof(a) / sizeof((a)[0])))

#define S3_ERROR_XML(code, message)                                                                \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>" code "</Code><Message>" message    \
    "</Message><RequestId>1</RequestId></Error>"

/* ---------------- the canned server ---------------- */

/* A listening socket and a thread answering every connection with the same bytes; it keeps
 * the last request's head and body for the test to check. */
typedef struct {
    int listen_fd;
    int port;
    pthread_t thread;
    atomic_bool stop;
    char *response;
    pthread_mutex_t lock;
    char head[16384];
    char body[4096];
    int request_count;
} test_server;

/* Reads until the head is complete and Content-Length bytes of body have come. */
static inline void read_request(test_server *s, int fd)
{
    char buf[sizeof s->head + sizeof s->body];
    size_t len = 0, want = 0;
    char *body = NULL;
    while (len + 1 < sizeof buf) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 2000) <= 0) break;
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0) break;
        len += (size_t)n;
        buf[len] = '\0';
        if (body == NULL && (body = strstr(buf, "\r\n\r\n")) != NULL) {
            body += 4;
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            want = cl != NULL && cl < body ? strtoul(cl + 17, NULL, 10) : 0;
        }
        if (body != NULL && (size_t)(buf + len - body) >= want) break;
    }
    buf[len] = '\0';
    pthread_mutex_lock(&s->lock);
    size_t head_len = body != NULL ? (size_t)(body - buf) : len;
    assert_true(head_len < sizeof s->head);
    memcpy(s->head, buf, head_len);
    s->head[head_len] = '\0';
    snprintf(s->body, sizeof s->body, "%s", body != NULL ? body : "");
    s->request_count++;
    pthread_mutex_unlock(&s->lock);
}

static inline void *server_main(void *arg)
{
    test_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {s->listen_fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) continue;
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0) continue;
        read_request(s, fd);
        size_t off = 0, len = strlen(s->response);
        while (off < len) {
            ssize_t n = write(fd, s->response + off, len - off);
            if (n <= 0) break;
            off += (size_t)n;
        }
        close(fd);
    }
    return NULL;
}

/* 127.0.0.1 on an ephemeral port; listening=false leaves it bound but refusing connections. */
static inline int bind_loopback(bool listening, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t addr_len = sizeof addr;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &addr_len), 0);
    if (listening) assert_int_equal(listen(fd, 16), 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

/* body NULL: a response without one (204). */
static inline test_server *server_start(int status, const char *reason, const char *content_type,
                                        const char *body)
{
    test_server *s = calloc(1, sizeof *s);
    assert_non_null(s);
    if (body != NULL)
        assert_true(asprintf(&s->response,
                             "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                             "Connection: close\r\n\r\n%s",
                             status, reason, content_type, strlen(body), body) > 0);
    else
        assert_true(asprintf(&s->response, "HTTP/1.1 %d %s\r\nConnection: close\r\n\r\n", status,
                             reason) > 0);
    pthread_mutex_init(&s->lock, NULL);
    s->listen_fd = bind_loopback(true, &s->port);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
    return s;
}

static inline void server_stop(test_server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
    pthread_mutex_destroy(&s->lock);
    free(s->response);
    free(s);
}

/* ---------------- running ternctl ---------------- */

typedef struct {
    int rc;
    char *out;
    char *err;
} run_result;

/* "ternctl --endpoint URL --access-key AKIDTEST --secret-key SECRET WORDS...", with URL NULL
 * leaving out everything but the words (for usage errors, found before any of it is needed). */
static inline run_result run(const char *url, const char *const *words)
{
    char *argv[32] = {"ternctl"};
    int argc = 1;
    if (url != NULL) {
        const char *const node[] = {"--endpoint",   url,   "--access-key", "AKIDTEST",
                                    "--secret-key", SECRET};
        for (int i = 0; i < ARGC(node); i++)
            argv[argc++] = (char *)node[i];
    }
    for (; *words != NULL; words++) {
        assert_true(argc < ARGC(argv));
        argv[argc++] = (char *)*words;
    }
    run_result r = {0};
    size_t out_len, err_len;
    FILE *out = open_memstream(&r.out, &out_len);
    FILE *err = open_memstream(&r.err, &err_len);
    assert_non_null(out);
    assert_non_null(err);
    r.rc = ops_main(argc, argv, out, err);
    fclose(out);
    fclose(err);
    return r;
}

static inline void result_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

static inline char *endpoint_of(int port)
{
    char *url;
    assert_true(asprintf(&url, "http://127.0.0.1:%d", port) > 0);
    return url;
}

static inline int clean_env(void **state)
{
    (void)state;
    static const char *const vars[] = {
        "TERN_ENDPOINT",         "TERN_ACCESS_KEY", "TERN_SECRET_KEY", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY", "http_proxy",      "HTTP_PROXY",      "https_proxy",
        "HTTPS_PROXY",           "all_proxy",       "ALL_PROXY",
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

#endif
