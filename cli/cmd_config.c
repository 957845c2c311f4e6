/* starling config --print | --describe */
#include <stdio.h>

#include "cli/cli.h"

static const char usage[] = "Usage: starling config --print [--config FILE] [--set S.K=V ...]\n"
                            "       starling config --describe\n\n"
                            "  --print      the effective configuration, as an INI file\n"
                            "  --describe   every key with type, default, range and meaning (Markdown)\n\n";

int cmd_config(int argc, char **argv)
{
    enum { OPT_PRINT = CLI_OPT_FIRST_FREE, OPT_DESCRIBE };
    static const struct option longopts[] = {
        {"print", no_argument, NULL, OPT_PRINT}, {"describe", no_argument, NULL, OPT_DESCRIBE},
        CLI_COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    cli_common_t common = {0};
    int print = 0, describe = 0, opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int handled = cli_common_option(&common, opt, optarg, "config");
        if (handled < 0)
            return -handled;
        if (handled)
            continue;
        if (opt == OPT_PRINT)
            print = 1;
        else if (opt == OPT_DESCRIBE)
            describe = 1;
        else
            return cli_usage_error("config", "unknown option '%s'", argv[optind - 1]);
    }
    if (common.help) {
        printf("%s%s", usage, cli_common_help);
        return CLI_EXIT_OK;
    }
    if (optind < argc)
        return cli_usage_error("config", "unexpected argument '%s'", argv[optind]);
    if (print == describe)
        return cli_usage_error("config", "say --print or --describe");
    if (describe)
        return sl_config_describe(stdout) ? cli_fail("config", -1) : CLI_EXIT_OK;
    sl_config_t cfg;
    int rc = cli_load_config(&common, &cfg);
    if (rc)
        return rc;
    return sl_config_write(&cfg, stdout) ? cli_fail("config", -1) : CLI_EXIT_OK;
}
