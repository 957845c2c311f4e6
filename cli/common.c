#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/model.h"
#include "datasets/dataset.h"

const char cli_common_help[] =
    "Common options:\n"
    "  --config FILE         read configuration from an INI file\n"
    "  --set SECTION.KEY=V   override one configuration key (repeatable)\n"
    "  --log-level LEVEL     debug, info, warn, error or off\n"
    "  --quiet               only errors in the log\n"
    "  --log-json            log lines as JSON objects\n"
    "  --log-file FILE       append log lines to FILE instead of stderr\n"
    "  --help                this help\n";

int cli_usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "starling%s%s: ", command ? " " : "", command ? command : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'starling%s%s --help'.\n", command ? " " : "", command ? command : "");
    return CLI_EXIT_USAGE;
}

int cli_fail(const char *command, int code)
{
    const char *detail = sl_last_error();
    fprintf(stderr, "starling %s: %s\n", command, detail[0] ? detail : sl_strerror(code));
    return CLI_EXIT_FAIL;
}

int cli_not_available(const char *command)
{
    fprintf(stderr, "starling %s: not available in this build\n", command);
    return CLI_EXIT_USAGE;
}

int cli_stderr_is_tty(void) { return isatty(STDERR_FILENO); }

int cli_common_option(cli_common_t *common, int opt, const char *arg, const char *command)
{
    switch (opt) {
    case CLI_OPT_CONFIG:
        common->config_path = arg;
        return 1;
    case CLI_OPT_SET:
        if (common->nsets >= CLI_MAX_SETS)
            return -cli_usage_error(command, "more than %d --set options", CLI_MAX_SETS);
        common->sets[common->nsets++] = arg;
        return 1;
    case CLI_OPT_LOG_LEVEL: {
        sl_log_level_t level;
        if (sl_log_parse_level(arg, &level) != 0)
            return -cli_usage_error(command, "%s", sl_last_error());
        sl_log_set_level(level);
        common->log_level_given = 1;
        return 1;
    }
    case CLI_OPT_QUIET:
        sl_log_set_level(SL_LOG_ERROR);
        common->log_level_given = 1;
        return 1;
    case CLI_OPT_LOG_JSON:
        sl_log_set_json(1);
        return 1;
    case CLI_OPT_LOG_FILE:
        if (sl_log_set_file(arg) != 0)
            return -cli_usage_error(command, "%s", sl_last_error());
        return 1;
    case CLI_OPT_HELP:
        common->help = 1;
        return 1;
    case CLI_OPT_DATA:
        common->data_name = arg;
        return 1;
    case CLI_OPT_DATA_OPT:
        if (common->n_data_opts >= CLI_MAX_SETS)
            return -cli_usage_error(command, "more than %d --data-opt options", CLI_MAX_SETS);
        common->data_opts[common->n_data_opts++] = arg;
        return 1;
    default:
        return 0;
    }
}

int cli_load_config(const cli_common_t *common, sl_config_t *cfg)
{
    sl_config_defaults(cfg);
    int rc = 0;
    if (common->config_path && (rc = sl_config_load(cfg, common->config_path)) != 0)
        goto fail;
    for (int i = 0; i < common->nsets; i++)
        if ((rc = sl_config_set(cfg, common->sets[i])) != 0)
            goto fail;
    if (common->data_name && (rc = sl_config_set_value(cfg, "data", "name", common->data_name)) != 0)
        goto fail;
    for (int i = 0; i < common->n_data_opts; i++)
        if ((rc = sl_dataset_option_append(cfg, common->data_opts[i])) != 0)
            goto fail;
    if ((rc = sl_config_validate(cfg)) != 0)
        goto fail;
    /* Process-wide settings the configuration carries. */
    if (!common->log_level_given) {
        sl_log_level_t level;
        if (sl_log_parse_level(cfg->run.log_level, &level) == 0)
            sl_log_set_level(level);
    }
    sl_blas_set_threads((int)cfg->train.threads);
    return 0;
fail:
    fprintf(stderr, "starling: %s\n", sl_last_error());
    return CLI_EXIT_USAGE;
}
