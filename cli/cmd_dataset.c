#include "cli/cli.h"

/* Not built yet: see the README for the commands this build has. */
int cmd_dataset(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_not_available("dataset");
}
