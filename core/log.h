/* core/log: leveled log lines to stderr (or a file), with a timestamp and a process tag.
 *
 *   2026-11-26T06:30:01.123Z INFO  coord  round 3: 10/10 updates, loss 0.41
 *
 * With JSON output each line is one object: {"ts":..,"level":..,"tag":..,"msg":..}.
 * Thread-safe; never writes to stdout (stdout belongs to the CLI's results).
 */
#ifndef SL_LOG_H
#define SL_LOG_H

#include "core/error.h"

typedef enum { SL_LOG_DEBUG = 0, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR, SL_LOG_OFF } sl_log_level_t;

void sl_log_set_level(sl_log_level_t level);
sl_log_level_t sl_log_get_level(void);
/* Tag printed on every line: "coord", "client-17". Copied. */
void sl_log_set_tag(const char *tag);
void sl_log_set_json(int on);
/* Append log lines to `path` instead of stderr; NULL returns to stderr. */
SL_NODISCARD int sl_log_set_file(const char *path);
/* "debug" | "info" | "warn" | "error" | "off" -> level; SL_EINVAL for anything else. */
SL_NODISCARD int sl_log_parse_level(const char *name, sl_log_level_t *out);
/* "debug", "info", "warn", "error" or "off": what sl_log_parse_level reads back. */
const char *sl_log_level_name(sl_log_level_t level);

void sl_log(sl_log_level_t level, const char *fmt, ...) SL_PRINTF(2, 3);

#define SL_DEBUG(...) sl_log(SL_LOG_DEBUG, __VA_ARGS__)
#define SL_INFO(...) sl_log(SL_LOG_INFO, __VA_ARGS__)
#define SL_WARN(...) sl_log(SL_LOG_WARN, __VA_ARGS__)
#define SL_ERROR(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)

#endif
