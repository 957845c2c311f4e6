/* starling pretrain: supervised pretraining of the full model on the public split; the
 * loop is starling train's (cli/cmd_train.c). */
#include "cli/cli.h"
#include "cli/progress.h"

int cmd_pretrain(int argc, char **argv) { return cli_train_command(argc, argv, 1); }
