#include "core/error.h"

#include <stdio.h>
#include <string.h>

#define SL_ERROR_MSG_MAX 1024

static _Thread_local char last_message[SL_ERROR_MSG_MAX];

const char *sl_strerror(int code)
{
    switch (code) {
#define SL_X_DESC(name, value, desc) \
    case value:                      \
        return desc;
        SL_ERROR_TABLE(SL_X_DESC)
#undef SL_X_DESC
    default:
        return "unknown error";
    }
}

const char *sl_error_name(int code)
{
    switch (code) {
#define SL_X_NAME(name, value, desc) \
    case value:                      \
        return #name;
        SL_ERROR_TABLE(SL_X_NAME)
#undef SL_X_NAME
    default:
        return "SL_E?";
    }
}

int sl_verror(int code, const char *fmt, va_list ap)
{
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    return code;
}

int sl_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_verror(code, fmt, ap);
    va_end(ap);
    return code;
}

int sl_error_wrap(int code, const char *fmt, ...)
{
    char prefix[SL_ERROR_MSG_MAX];
    char old[SL_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_message, sizeof old);
    if (old[0] == '\0')
        snprintf(last_message, sizeof last_message, "%s: %s", prefix, sl_strerror(code));
    else
        snprintf(last_message, sizeof last_message, "%s: %s", prefix, old);
    return code;
}

const char *sl_last_error(void) { return last_message; }

void sl_error_clear(void) { last_message[0] = '\0'; }
