/* starling: dispatch to a subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/rng.h"

#ifndef SL_VERSION
#define SL_VERSION "0.0.0"
#endif

static const cli_command_t commands[] = {
    {"coordinator", "run the coordinator of a federation", cmd_coordinator},
    {"client", "run one (or --virtual N) federated clients", cmd_client},
    {"cluster", "run a local federation: coordinator + client processes", cmd_cluster},
    {"pretrain", "train the frozen base model centrally on public data", cmd_pretrain},
    {"train", "centralized training baseline", cmd_train},
    {"eval", "evaluate a model on a dataset", cmd_eval},
    {"keygen", "make a CurveZMQ key pair", cmd_keygen},
    {"privacy", "differential-privacy accountant: epsilon, noise", cmd_privacy},
    {"report", "render a run folder as an HTML report", cmd_report},
    {"dataset", "list, inspect and partition datasets", cmd_dataset},
    {"bench", "built-in benchmarks (secagg, ...)", cmd_bench},
    {"config", "print or describe the configuration", cmd_config},
};

const cli_command_t *cli_commands(int *count)
{
    *count = (int)(sizeof commands / sizeof commands[0]);
    return commands;
}

static void print_help(FILE *out)
{
    fprintf(out,
            "starling %s: federated learning for multimodal IoT models\n\n"
            "Usage: starling <command> [options]\n"
            "       starling <command> --help\n\n"
            "Commands:\n",
            SL_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nOptions:\n  --help       this help\n  --version    print the version\n\n%s",
            cli_common_help);
}

int main(int argc, char **argv)
{
    if (sl_csprng_init() != 0) {
        fprintf(stderr, "starling: %s\n", sl_last_error());
        return CLI_EXIT_FAIL;
    }
    if (argc < 2) {
        print_help(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        print_help(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
        printf("starling %s\n", SL_VERSION);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(name, commands[i].name) == 0) {
            sl_log_set_tag(name);
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    if (name[0] == '-')
        return cli_usage_error(NULL, "unknown option '%s'", name);
    return cli_usage_error(NULL, "unknown command '%s'", name);
}
