/* core/error: one table of error codes, a per-thread detail message.
 *
 * Library functions return 0 on success or a negative SL_E* code. The code says
 * what kind of failure; sl_last_error() says exactly what, e.g.
 *   config examples/x.ini:12: [dp] noise_multiplier: expected a number >= 0, got "abc"
 */
#ifndef SL_ERROR_H
#define SL_ERROR_H

#include <stdarg.h>

#if defined(__GNUC__) || defined(__clang__)
#define SL_NODISCARD __attribute__((warn_unused_result))
#define SL_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define SL_NODISCARD
#define SL_PRINTF(fmt, args)
#endif

/* X(name, value, description). Values are stable: they may travel in error messages. */
#define SL_ERROR_TABLE(X)                                                   \
    X(SL_OK, 0, "success")                                                  \
    X(SL_ENOMEM, -1, "out of memory")                                       \
    X(SL_EINVAL, -2, "invalid argument")                                    \
    X(SL_EIO, -3, "input/output error")                                     \
    X(SL_ENOTFOUND, -4, "not found")                                        \
    X(SL_ECONFIG, -5, "invalid configuration")                              \
    X(SL_EFORMAT, -6, "malformed or corrupt data")                          \
    X(SL_ERANGE, -7, "value out of range")                                  \
    X(SL_EPROTO, -8, "protocol violation")                                  \
    X(SL_ECRYPTO, -9, "cryptographic failure")                              \
    X(SL_ETIMEOUT, -10, "timed out")                                        \
    X(SL_EQUORUM, -11, "not enough clients")                                \
    X(SL_EBUDGET, -12, "privacy budget exhausted")                          \
    X(SL_ENOTSUP, -13, "not supported")                                     \
    X(SL_ESTATE, -14, "operation not valid in the current state")           \
    X(SL_EPLUGIN, -15, "plug-in error")                                     \
    X(SL_ENET, -16, "network error")                                        \
    X(SL_EINTR, -17, "interrupted")                                         \
    X(SL_EABORT, -18, "aborted")                                            \
    X(SL_EPERM, -19, "permission denied")                                   \
    X(SL_EOVERFLOW, -20, "arithmetic overflow")                             \
    X(SL_EMISMATCH, -21, "shape or layout mismatch")                        \
    X(SL_ENOTFINITE, -22, "non-finite value")

enum sl_error {
#define SL_X_ENUM(name, value, desc) name = value,
    SL_ERROR_TABLE(SL_X_ENUM)
#undef SL_X_ENUM
};

/* Short fixed description of a code ("invalid configuration"); never NULL. */
const char *sl_strerror(int code);

/* Symbolic name of a code ("SL_ECONFIG"); never NULL. */
const char *sl_error_name(int code);

/* Record a detail message for this thread and return `code`, so a failing function
 * can `return sl_error(SL_EFORMAT, "%s: truncated header", path);`. */
int sl_error(int code, const char *fmt, ...) SL_PRINTF(2, 3);
int sl_verror(int code, const char *fmt, va_list ap);

/* Prefix the current detail message with more context ("loading run.ini: ..."). */
int sl_error_wrap(int code, const char *fmt, ...) SL_PRINTF(2, 3);

/* The last detail message of this thread ("" if none). Valid until the next sl_error. */
const char *sl_last_error(void);

/* Forget the detail message. */
void sl_error_clear(void);

#endif
