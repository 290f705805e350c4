/* Logging: one line per event to stderr with a UTC timestamp, level and component. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "node.h"

static atomic_int log_level = NODE_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void node_log_set_level(int level)
{
    atomic_store(&log_level, level);
}

int node_log_level_parse(const char *name)
{
    for (size_t i = 0; i < TERN_ARRAY_LEN(level_names); i++)
        if (strcmp(name, level_names[i]) == 0) return (int)i;
    return -1;
}

void node_log(int level, const char *component, const char *fmt, ...)
{
    if (level > atomic_load(&log_level)) return;
    char line[2048];
    int64_t now_ms = tern_now_ms();
    time_t secs = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(now_ms % 1000), level_names[level], component);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line) vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fputs of the whole line keeps concurrent threads' lines whole. */
    size_t len = strlen(line);
    if (len + 1 < sizeof line) {
        line[len] = '\n';
        line[len + 1] = '\0';
    }
    fputs(line, stderr);
}
