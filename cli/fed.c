#include "cli/fed.h"

#include <string.h>

#include "core/log.h"
#include "core/safetensors.h"

volatile sig_atomic_t cli_fed_stop;
volatile sig_atomic_t cli_fed_reload;

static void on_stop(int sig)
{
    (void)sig;
    cli_fed_stop = 1;
}

static void on_hup(int sig)
{
    (void)sig;
    cli_fed_reload = 1;
}

void cli_fed_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int cli_fed_model(const sl_config_t *cfg, const sl_dataset_t *ds, sl_model_t **out)
{
    int rc = sl_model_new(out, cfg, sl_dataset_schema(ds));
    if (rc)
        return rc;
    if (!cfg->model.base[0])
        return 0;
    /* A head of another shape (a 6-class base fine-tuned on 12 classes) keeps its seeded
     * init, the same in every process; every other tensor must load. */
    size_t loaded = 0, skipped = 0;
    if ((rc = sl_model_load_ex(*out, cfg->model.base, SL_LOAD_SKIP_MISMATCHED, &loaded, &skipped)) != 0) {
        sl_model_destroy(out);
        return sl_error_wrap(rc, "base model %s", cfg->model.base);
    }
    if (skipped)
        SL_INFO("base model %s: %zu tensors loaded, %zu of another shape left at their seeded init",
                cfg->model.base, loaded, skipped);
    return 0;
}

int cli_fed_security(const sl_config_t *cfg, sl_transport_opts_t *opts, sl_keypair_t *kp, const char *key_prefix,
                     const char *default_name)
{
    const char *endpoint = opts->endpoint ? opts->endpoint : "";
    if (cfg->net.insecure) {
        if (strncmp(endpoint, "tcp://", 6) == 0)
            SL_WARN("net.insecure = true on %s: traffic is NOT encrypted and ANY peer may join. "
                    "Use CURVE keys (starling keygen) outside a lab.",
                    endpoint);
        return 0;
    }
    char prefix[4096];
    if (key_prefix)
        snprintf(prefix, sizeof prefix, "%s", key_prefix);
    else if (cfg->net.keys_dir[0])
        snprintf(prefix, sizeof prefix, "%s/%s", cfg->net.keys_dir, default_name);
    else
        return sl_error(SL_ECONFIG, "transport security: set net.keys_dir (keys from `starling keygen`) or "
                                    "net.insecure = true for a plain local test");
    int rc = sl_keypair_load(kp, prefix);
    if (rc)
        return rc;
    opts->curve_public_z85 = kp->public_z85;
    opts->curve_secret_z85 = kp->secret_z85;
    if (opts->role == SL_TRANSPORT_SERVER) {
        opts->zap_domain = "starling";
        return 0;
    }
    static _Thread_local char server_key[SL_Z85_KEY_LEN + 1];
    if (!cfg->net.server_public_key[0])
        return sl_error(SL_ECONFIG, "transport security: set net.server_public_key to the coordinator's "
                                    "public key (its .pub file or the 40-character key)");
    rc = sl_public_key_resolve(cfg->net.server_public_key, server_key);
    if (rc)
        return sl_error_wrap(rc, "net.server_public_key");
    opts->curve_server_z85 = server_key;
    return 0;
}
