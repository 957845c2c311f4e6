/* starling keygen --out DIR [--name NAME] */
#include <stdio.h>

#include "cli/cli.h"
#include "core/keys.h"

static const char usage[] =
    "Usage: starling keygen --out DIR [--name NAME]\n\n"
    "Make a CurveZMQ key pair: DIR/NAME.pub (public, share it) and DIR/NAME.secret\n"
    "(mode 0600, keep it). NAME defaults to \"starling\". Existing keys are never overwritten.\n"
    "Give a coordinator's NAME.pub to clients (--set net.server_public_key=...) and put\n"
    "clients' .pub files in the coordinator's allow-list folder (net.authorized_clients).\n\n";

int cmd_keygen(int argc, char **argv)
{
    enum { OPT_OUT = CLI_OPT_FIRST_FREE, OPT_NAME };
    static const struct option longopts[] = {
        {"out", required_argument, NULL, OPT_OUT}, {"name", required_argument, NULL, OPT_NAME},
        CLI_COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    cli_common_t common = {0};
    const char *out = NULL, *name = "starling";
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int handled = cli_common_option(&common, opt, optarg, "keygen");
        if (handled < 0)
            return -handled;
        if (handled)
            continue;
        if (opt == OPT_OUT)
            out = optarg;
        else if (opt == OPT_NAME)
            name = optarg;
        else
            return cli_usage_error("keygen", "unknown option '%s'", argv[optind - 1]);
    }
    if (common.help) {
        printf("%s%s", usage, cli_common_help);
        return CLI_EXIT_OK;
    }
    if (optind < argc)
        return cli_usage_error("keygen", "unexpected argument '%s'", argv[optind]);
    if (!out)
        return cli_usage_error("keygen", "--out DIR is required");
    sl_keypair_t *kp = NULL;
    int rc = sl_keypair_new(&kp);
    if (rc == 0)
        rc = sl_keypair_generate(kp);
    if (rc == 0)
        rc = sl_keypair_save(kp, out, name);
    if (rc) {
        sl_keypair_destroy(&kp);
        return cli_fail("keygen", rc);
    }
    char fp[17];
    sl_key_fingerprint(kp->public_z85, fp);
    printf("public key  %s/%s.pub  %s  (fingerprint %s)\nsecret key  %s/%s.secret  (mode 0600)\n", out, name,
           kp->public_z85, fp, out, name);
    sl_keypair_destroy(&kp);
    return CLI_EXIT_OK;
}
