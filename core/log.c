#include "core/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static sl_log_level_t log_level = SL_LOG_INFO;
static int log_json;
static char log_tag[32] = "starling";
static FILE *log_file; /* NULL means stderr */

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

void sl_log_set_level(sl_log_level_t level) { log_level = level; }
sl_log_level_t sl_log_get_level(void) { return log_level; }
void sl_log_set_json(int on) { log_json = on; }

void sl_log_set_tag(const char *tag)
{
    pthread_mutex_lock(&log_lock);
    snprintf(log_tag, sizeof log_tag, "%s", tag ? tag : "");
    pthread_mutex_unlock(&log_lock);
}

int sl_log_set_file(const char *path)
{
    FILE *f = NULL;
    if (path) {
        f = fopen(path, "a");
        if (!f)
            return sl_error(SL_EIO, "log file %s: cannot open for appending", path);
        setvbuf(f, NULL, _IOLBF, 0);
    }
    pthread_mutex_lock(&log_lock);
    if (log_file)
        fclose(log_file);
    log_file = f;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

static const char *const names[] = {"debug", "info", "warn", "error", "off"};

const char *sl_log_level_name(sl_log_level_t level)
{
    return (unsigned)level < 5 ? names[level] : "?";
}

int sl_log_parse_level(const char *name, sl_log_level_t *out)
{
    for (int i = 0; i < 5; i++) {
        if (strcasecmp(name, names[i]) == 0) {
            *out = (sl_log_level_t)i;
            return 0;
        }
    }
    return sl_error(SL_EINVAL, "log level \"%s\": expected debug, info, warn, error or off", name);
}

/* Writes `s` as a JSON string body (without quotes), escaping what JSON requires. */
static void put_json_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
}

void sl_log(sl_log_level_t level, const char *fmt, ...)
{
    if (level < log_level || level >= SL_LOG_OFF)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000L);

    pthread_mutex_lock(&log_lock);
    FILE *out = log_file ? log_file : stderr;
    if (log_json) {
        fprintf(out, "{\"ts\":\"%s\",\"level\":\"%s\",\"tag\":\"", when, level_names[level]);
        put_json_escaped(out, log_tag);
        fputs("\",\"msg\":\"", out);
        put_json_escaped(out, msg);
        fputs("\"}\n", out);
    } else {
        fprintf(out, "%s %-5s %-9s %s\n", when, level_names[level], log_tag, msg);
    }
    fflush(out);
    pthread_mutex_unlock(&log_lock);
}
