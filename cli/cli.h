/* cli: the `starling` executable. The only place that prints results, parses argv and
 * turns errors into messages and exit codes (0 ok, 1 failure, 2 usage error).
 *
 * Each command lives in cmd_<name>.c and parses its own arguments with getopt_long;
 * the options every command shares (--config, --set, logging) go through cli_common_*.
 */
#ifndef SL_CLI_H
#define SL_CLI_H

#include <getopt.h>

#include "core/config.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
/* A client process that ended by a planned crash (`starling client --crash-at`):
 * `starling cluster` does not restart it, the federation goes on without it. */
#define CLI_EXIT_PLANNED_CRASH 4

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cli_command_t;

int cmd_coordinator(int argc, char **argv);
int cmd_client(int argc, char **argv);
int cmd_cluster(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_privacy(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_dataset(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_config(int argc, char **argv);

/* ---- options shared by every command ------------------------------------------------ */

/* Long-option ids above any short-option character. */
enum {
    CLI_OPT_CONFIG = 0x1000,
    CLI_OPT_SET,
    CLI_OPT_LOG_LEVEL,
    CLI_OPT_LOG_JSON,
    CLI_OPT_LOG_FILE,
    CLI_OPT_QUIET,
    CLI_OPT_HELP,
    CLI_OPT_DATA,
    CLI_OPT_DATA_OPT,
    CLI_OPT_FIRST_FREE = 0x1100 /* commands number their own long options from here */
};

#define CLI_COMMON_LONG_OPTIONS                                                                      \
    {"config", required_argument, NULL, CLI_OPT_CONFIG}, {"set", required_argument, NULL, CLI_OPT_SET}, \
        {"log-level", required_argument, NULL, CLI_OPT_LOG_LEVEL},                                   \
        {"log-json", no_argument, NULL, CLI_OPT_LOG_JSON},                                           \
        {"log-file", required_argument, NULL, CLI_OPT_LOG_FILE}, {"quiet", no_argument, NULL, CLI_OPT_QUIET}, \
        {"help", no_argument, NULL, CLI_OPT_HELP}

/* --data NAME and --data-opt K=V, for the commands that open a dataset. */
#define CLI_DATA_LONG_OPTIONS                                                                        \
    {"data", required_argument, NULL, CLI_OPT_DATA}, {"data-opt", required_argument, NULL, CLI_OPT_DATA_OPT}

#define CLI_MAX_SETS 128

typedef struct {
    const char *config_path;           /* --config, or NULL */
    const char *sets[CLI_MAX_SETS];    /* --set section.key=value, in order */
    int nsets;
    int help;                          /* --help seen */
    int log_level_given;               /* --log-level or --quiet seen: overrides run.log_level */
    const char *data_name;             /* --data: data.name */
    const char *data_opts[CLI_MAX_SETS]; /* --data-opt K=V, appended to data.options */
    int n_data_opts;
} cli_common_t;

/* Handle one getopt result if it is a common option: returns 1 if handled, 0 if not
 * one of ours, or a negative CLI exit code on a bad value (message printed). */
int cli_common_option(cli_common_t *common, int opt, const char *arg, const char *command);

/* Defaults, then --config, then each --set, then --data / --data-opt, then validation; applies run.log_level
 * unless the command line set one. Prints the error and returns CLI_EXIT_* != 0 on failure. */
int cli_load_config(const cli_common_t *common, sl_config_t *cfg);

/* Print "starling <command>: <message>" and "Try 'starling <command> --help'." to stderr;
 * returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...) SL_PRINTF(2, 3);

/* Print "starling <command>: <sl_last_error() or strerror>" and return CLI_EXIT_FAIL. */
int cli_fail(const char *command, int code);

/* For commands this build lacks: prints a clear message, returns CLI_EXIT_USAGE. */
int cli_not_available(const char *command);

/* Whether stdout/stderr is a terminal (progress bars vs plain lines). */
int cli_stderr_is_tty(void);

/* The command table (for --help and dispatch). */
const cli_command_t *cli_commands(int *count);

/* The common-options block of every command's --help. */
extern const char cli_common_help[];

#endif
