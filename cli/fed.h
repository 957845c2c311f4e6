/* cli/fed: what the coordinator, client and cluster commands share: building the model
 * from the config and dataset, CURVE transport options from key files, signal flags. */
#ifndef SL_CLI_FED_H
#define SL_CLI_FED_H

#include <signal.h>

#include "core/config.h"
#include "core/keys.h"
#include "core/model.h"
#include "core/transport.h"
#include "datasets/dataset.h"

/* Set by SIGINT/SIGTERM (stop) and SIGHUP (reload) once cli_fed_signals() ran. */
extern volatile sig_atomic_t cli_fed_stop;
extern volatile sig_atomic_t cli_fed_reload;
void cli_fed_signals(void);

/* The model of the run: sl_model_new from cfg and the dataset's schema, then the base
 * weights of cfg->model.base when set. Prints nothing; errors via sl_last_error(). */
SL_NODISCARD int cli_fed_model(const sl_config_t *cfg, const sl_dataset_t *ds, sl_model_t **out);

/* Transport security from cfg->net: with net.insecure = false, load the key pair
 * `key_prefix` (DIR/NAME; NULL = <net.keys_dir>/<default_name>) into kp and point opts
 * at it; a client also pins net.server_public_key. With net.insecure = true, leave opts
 * plain (and warn loudly for a tcp:// endpoint). */
SL_NODISCARD int cli_fed_security(const sl_config_t *cfg, sl_transport_opts_t *opts, sl_keypair_t *kp,
                                  const char *key_prefix, const char *default_name);

#endif
