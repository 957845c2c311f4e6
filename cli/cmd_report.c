/* starling report RUN_DIR [--out FILE] */
#include <stdio.h>

#include "cli/cli.h"
#include "coordinator/report.h"

static const char usage[] = "Usage: starling report RUN_DIR [--out FILE]\n\n"
                            "Render RUN_DIR/metrics.jsonl, summary.json and config.ini as one HTML page\n"
                            "with plots (default RUN_DIR/report.html).\n\n";

int cmd_report(int argc, char **argv)
{
    enum { OPT_OUT = CLI_OPT_FIRST_FREE };
    static const struct option longopts[] = {{"out", required_argument, NULL, OPT_OUT}, CLI_COMMON_LONG_OPTIONS,
                                             {NULL, 0, NULL, 0}};
    cli_common_t common = {0};
    const char *out = NULL;
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int handled = cli_common_option(&common, opt, optarg, "report");
        if (handled < 0)
            return -handled;
        if (handled)
            continue;
        if (opt == OPT_OUT)
            out = optarg;
        else
            return cli_usage_error("report", "unknown option '%s'", argv[optind - 1]);
    }
    if (common.help) {
        printf("%s%s", usage, cli_common_help);
        return CLI_EXIT_OK;
    }
    if (optind != argc - 1)
        return cli_usage_error("report", "expected one RUN_DIR");
    int rc = sl_report_write(argv[optind], out);
    if (rc)
        return cli_fail("report", rc);
    printf("report: %s%s\n", out ? out : argv[optind], out ? "" : "/report.html");
    return CLI_EXIT_OK;
}
