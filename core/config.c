#include "core/config.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { T_INT, T_DOUBLE, T_BOOL, T_STRING, T_ENUM } key_type_t;

typedef struct {
    const char *section;
    const char *key;
    key_type_t type;
    size_t offset;
    const char *def;     /* default, as text in the file */
    double min, max;     /* inclusive range for T_INT and T_DOUBLE */
    const char *choices; /* T_ENUM: "a|b|c", index = stored value; T_STRING: allowed values */
    const char *doc;
} key_def_t;

#define F(field) offsetof(sl_config_t, field)
#define INF HUGE_VAL
#define NOLIM -INF, INF

static const key_def_t keys[] = {
    /* [run] */
    {"run", "name", T_STRING, F(run.name), "run", NOLIM, NULL, "Run name; results go to <out_dir>/<name>/."},
    {"run", "seed", T_INT, F(run.seed), "42", 0, 9007199254740991.0, NULL,
     "Seed of every deterministic stream (sampling, data order, init)."},
    {"run", "out_dir", T_STRING, F(run.out_dir), "runs", NOLIM, NULL, "Folder that holds run folders."},
    {"run", "log_level", T_STRING, F(run.log_level), "info", NOLIM, "debug|info|warn|error|off", "Log verbosity."},

    /* [model] */
    {"model", "d_model", T_INT, F(model.d_model), "64", 4, 4096, NULL, "Shared token width d."},
    {"model", "layers", T_INT, F(model.layers), "2", 1, 64, NULL, "Transformer blocks L."},
    {"model", "heads", T_INT, F(model.heads), "4", 1, 64, NULL, "Attention heads (must divide d_model)."},
    {"model", "mlp_ratio", T_INT, F(model.mlp_ratio), "2", 1, 16, NULL, "MLP hidden width = mlp_ratio * d_model."},
    {"model", "dropout", T_DOUBLE, F(model.dropout), "0", 0, 0.9, NULL, "Dropout probability in training."},
    {"model", "patch_len", T_INT, F(model.patch_len), "16", 1, 4096, NULL,
     "Time-series patch length P (samples per token)."},
    {"model", "image_patch", T_INT, F(model.image_patch), "4", 1, 256, NULL, "Image patch side p (p x p pixels per token)."},
    {"model", "vector_group", T_INT, F(model.vector_group), "16", 1, 65536, NULL,
     "Feature-vector values per token."},
    {"model", "text_max_len", T_INT, F(model.text_max_len), "64", 1, 65536, NULL, "Maximum byte-text tokens."},
    {"model", "pooling", T_ENUM, F(model.pooling), "cls", NOLIM, "cls|mean", "Head input: CLS token or mean of tokens."},
    {"model", "lora_rank", T_INT, F(model.lora_rank), "4", 0, 1024, NULL, "LoRA rank r (0 disables LoRA)."},
    {"model", "lora_alpha", T_DOUBLE, F(model.lora_alpha), "8", 0, 1e6, NULL, "LoRA scale numerator: scale = alpha / r."},
    {"model", "lora_targets", T_STRING, F(model.lora_targets), "q,k,v,o", NOLIM, NULL,
     "Comma list from q,k,v,o,mlp_up,mlp_down."},
    {"model", "base", T_STRING, F(model.base), "", NOLIM, NULL,
     "Pretrained base weights (safetensors); empty = random init from the seed."},

    /* [data] */
    {"data", "name", T_STRING, F(data.name), "hapt", NOLIM, NULL, "Dataset name (see `starling dataset list`)."},
    {"data", "path", T_STRING, F(data.path), "", NOLIM, NULL, "Data folder for file datasets; empty = bundled."},
    {"data", "plugin", T_STRING, F(data.plugin), "", NOLIM, NULL, "Dataset plug-in shared object to load."},
    {"data", "options", T_STRING, F(data.options), "", NOLIM, NULL,
     "Dataset options \"key=value,key=value\" (as --data-opt)."},
    {"data", "classes", T_INT, F(data.classes), "0", 0, 100000, NULL,
     "Class count where the dataset offers a choice (HAPT: 6 or 12); 0 = dataset default."},
    {"data", "partition", T_ENUM, F(data.partition), "natural", NOLIM, "natural|iid|dirichlet|shards|quantity",
     "How examples are split into clients."},
    {"data", "clients", T_INT, F(data.clients), "0", 0, 10000000, NULL,
     "Client count for re-partitioning; 0 = natural clients."},
    {"data", "alpha", T_DOUBLE, F(data.alpha), "0.5", 1e-6, 1e6, NULL, "Dirichlet concentration (label skew)."},
    {"data", "shards_per_client", T_INT, F(data.shards_per_client), "2", 1, 1000, NULL,
     "Label-sorted shards per client."},
    {"data", "quantity_exponent", T_DOUBLE, F(data.quantity_exponent), "1.5", 0.01, 100, NULL,
     "Power-law exponent of client sizes (quantity skew)."},
    {"data", "local_test_fraction", T_DOUBLE, F(data.local_test_fraction), "0.2", 0, 0.9, NULL,
     "Fraction of each client's examples kept for its local test split."},
    {"data", "missing_modality", T_STRING, F(data.missing_modality), "", NOLIM, NULL,
     "Modality that a fraction of clients lack (modality dropout)."},
    {"data", "missing_fraction", T_DOUBLE, F(data.missing_fraction), "0", 0, 1, NULL,
     "Fraction of clients without missing_modality."},

    /* [train] */
    {"train", "mode", T_ENUM, F(train.mode), "lora", NOLIM, "lora|head|full",
     "What clients train: LoRA adapters + head, the head only, or the full model."},
    {"train", "optimizer", T_ENUM, F(train.optimizer), "adamw", NOLIM, "sgd|adamw", "Local optimizer."},
    {"train", "lr", T_DOUBLE, F(train.lr), "0.003", 0, 100, NULL, "Local learning rate."},
    {"train", "momentum", T_DOUBLE, F(train.momentum), "0.9", 0, 0.999999, NULL, "SGD momentum."},
    {"train", "weight_decay", T_DOUBLE, F(train.weight_decay), "0", 0, 10, NULL, "Decoupled weight decay (AdamW)."},
    {"train", "batch_size", T_INT, F(train.batch_size), "32", 1, 65536, NULL, "Minibatch size."},
    {"train", "local_epochs", T_INT, F(train.local_epochs), "1", 0, 1000, NULL, "Local epochs per round."},
    {"train", "local_steps", T_INT, F(train.local_steps), "0", 0, 1000000, NULL,
     "Local steps per round; 0 = use local_epochs."},
    {"train", "epochs", T_INT, F(train.epochs), "20", 1, 100000, NULL, "Epochs of centralized training."},
    {"train", "grad_clip", T_DOUBLE, F(train.grad_clip), "0", 0, 1e9, NULL, "Gradient-norm clip; 0 = off."},
    {"train", "schedule", T_ENUM, F(train.schedule), "constant", NOLIM, "constant|cosine",
     "Learning-rate schedule (cosine includes warmup)."},
    {"train", "warmup_steps", T_INT, F(train.warmup_steps), "0", 0, 1000000, NULL, "Linear warmup steps."},
    {"train", "label_smoothing", T_DOUBLE, F(train.label_smoothing), "0", 0, 0.999, NULL,
     "Label smoothing of the cross-entropy."},
    {"train", "fedprox_mu", T_DOUBLE, F(train.fedprox_mu), "0", 0, 1e6, NULL,
     "FedProx proximal weight mu; 0 = plain local training."},
    {"train", "threads", T_INT, F(train.threads), "0", 0, 1024, NULL, "BLAS threads; 0 = number of cores."},
    {"train", "augment_scale", T_DOUBLE, F(train.augment_scale), "0", 0, 1, NULL,
     "Time-series augmentation: per-sample amplitude factor ~ N(1, sigma^2); 0 = off."},
    {"train", "augment_jitter", T_DOUBLE, F(train.augment_jitter), "0", 0, 10, NULL,
     "Time-series augmentation: additive Gaussian noise sigma; 0 = off."},
    {"train", "augment_rotate", T_DOUBLE, F(train.augment_rotate), "0", 0, 180, NULL,
     "Time-series augmentation: random 3-D rotation of 3-channel sensors up to this many degrees; 0 = off."},

    /* [federation] */
    {"federation", "rounds", T_INT, F(federation.rounds), "30", 1, 1000000, NULL, "Federated rounds."},
    {"federation", "clients", T_INT, F(federation.clients), "0", 0, 1000000, NULL,
     "Client processes `starling cluster` starts; 0 = one per dataset client."},
    {"federation", "strategy", T_ENUM, F(federation.strategy), "fedavg", NOLIM,
     "fedavg|fedavgm|fedadam|fedyogi|fedadagrad|median|trimmed_mean", "Server aggregation strategy."},
    {"federation", "fraction", T_DOUBLE, F(federation.fraction), "1", 0, 1, NULL,
     "Fraction of registered clients sampled per round."},
    {"federation", "min_clients", T_INT, F(federation.min_clients), "2", 1, 10000000, NULL,
     "Quorum: fewest updates that complete a round."},
    {"federation", "max_clients", T_INT, F(federation.max_clients), "0", 0, 10000000, NULL,
     "Most clients sampled per round; 0 = no cap."},
    {"federation", "round_timeout", T_DOUBLE, F(federation.round_timeout), "120", 0.01, 86400, NULL,
     "Seconds a round waits for updates."},
    {"federation", "quorum_policy", T_ENUM, F(federation.quorum_policy), "retry", NOLIM, "retry|fail",
     "What a round below quorum does."},
    {"federation", "max_retries", T_INT, F(federation.max_retries), "3", 0, 1000, NULL,
     "Consecutive retries of a round below quorum before the run fails."},
    {"federation", "eval_every", T_INT, F(federation.eval_every), "1", 0, 1000000, NULL,
     "Evaluate the global model every N rounds; 0 = only at the end."},
    {"federation", "weight_cap", T_DOUBLE, F(federation.weight_cap), "0", 0, 1e12, NULL,
     "Cap on a client's aggregation weight (example count); 0 = no cap."},
    {"federation", "server_lr", T_DOUBLE, F(federation.server_lr), "1", 0, 1000, NULL, "Server learning rate."},
    {"federation", "server_momentum", T_DOUBLE, F(federation.server_momentum), "0.9", 0, 0.999999, NULL,
     "FedAvgM server momentum."},
    {"federation", "beta1", T_DOUBLE, F(federation.beta1), "0.9", 0, 0.999999, NULL, "FedAdam/FedYogi beta1."},
    {"federation", "beta2", T_DOUBLE, F(federation.beta2), "0.99", 0, 0.999999, NULL, "FedAdam/FedYogi beta2."},
    {"federation", "tau", T_DOUBLE, F(federation.tau), "0.001", 1e-12, 10, NULL, "Adaptive optimizers' epsilon."},
    {"federation", "trim_fraction", T_DOUBLE, F(federation.trim_fraction), "0.1", 0, 0.49, NULL,
     "Trimmed mean: fraction cut at each end."},
    {"federation", "update_norm_bound", T_DOUBLE, F(federation.update_norm_bound), "0", 0, 1e12, NULL,
     "Reject updates with a larger L2 norm; 0 = off."},
    {"federation", "upload_window", T_INT, F(federation.upload_window), "0", 0, 1000000, NULL,
     "Upload credits: at most this many clients upload at once (bounds coordinator memory); 0 = off."},

    /* [dp] */
    {"dp", "mode", T_ENUM, F(dp.mode), "off", NOLIM, "off|central|distributed|local",
     "Where Gaussian noise is added (see docs/privacy.md)."},
    {"dp", "clip", T_DOUBLE, F(dp.clip), "1", 1e-9, 1e9, NULL, "L2 clip norm C of each client update."},
    {"dp", "noise_multiplier", T_DOUBLE, F(dp.noise_multiplier), "1", 0, INF, NULL,
     "sigma: noise std is sigma * C on the sum."},
    {"dp", "adaptive_clip", T_BOOL, F(dp.adaptive_clip), "false", NOLIM, NULL,
     "Track a quantile of update norms (Andrew et al. 2021)."},
    {"dp", "target_quantile", T_DOUBLE, F(dp.target_quantile), "0.5", 0, 1, NULL, "Adaptive clipping target quantile."},
    {"dp", "clip_lr", T_DOUBLE, F(dp.clip_lr), "0.2", 0, 10, NULL, "Adaptive clipping geometric step."},
    {"dp", "count_noise_multiplier", T_DOUBLE, F(dp.count_noise_multiplier), "10", 0, 1e6, NULL,
     "Noise multiplier of the clipped-count estimate."},
    {"dp", "delta", T_DOUBLE, F(dp.delta), "1e-5", 1e-300, 1, NULL, "delta of the reported (epsilon, delta)."},
    {"dp", "target_epsilon", T_DOUBLE, F(dp.target_epsilon), "0", 0, 1e6, NULL,
     "Stop before epsilon would exceed this; 0 = no budget."},
    {"dp", "insecure_seeded_noise", T_BOOL, F(dp.insecure_seeded_noise), "false", NOLIM, NULL,
     "TESTS ONLY: draw DP noise from the seeded stream."},

    /* [secagg] */
    {"secagg", "enabled", T_BOOL, F(secagg.enabled), "false", NOLIM, NULL,
     "Secure aggregation (SecAgg+): the coordinator learns only the sum."},
    {"secagg", "bits", T_INT, F(secagg.bits), "32", 8, 32, NULL, "Quantization bits per coordinate."},
    {"secagg", "neighbors", T_INT, F(secagg.neighbors), "0", 0, 100000, NULL,
     "Neighbours per client k; 0 = chosen from the client count."},
    {"secagg", "threshold", T_INT, F(secagg.threshold), "0", 0, 100000, NULL,
     "Shamir threshold t; 0 = chosen with k."},
    {"secagg", "dropout_tolerance", T_DOUBLE, F(secagg.dropout_tolerance), "0.05", 0, 0.5, NULL,
     "Dropout fraction the parameters must survive."},

    /* [net] */
    {"net", "bind", T_STRING, F(net.bind), "tcp://*:7700", NOLIM, NULL, "Coordinator endpoint to bind."},
    {"net", "coordinator", T_STRING, F(net.coordinator), "tcp://127.0.0.1:7700", NOLIM, NULL,
     "Endpoint a client connects to."},
    {"net", "insecure", T_BOOL, F(net.insecure), "false", NOLIM, NULL, "Plain (unencrypted, unauthenticated) transport."},
    {"net", "keys_dir", T_STRING, F(net.keys_dir), "", NOLIM, NULL, "Folder with this process's CURVE key pair."},
    {"net", "authorized_clients", T_STRING, F(net.authorized_clients), "", NOLIM, NULL,
     "Allow-list of client public keys (file or folder)."},
    {"net", "server_public_key", T_STRING, F(net.server_public_key), "", NOLIM, NULL,
     "Coordinator public key (Z85 or a file) that clients pin."},
    {"net", "heartbeat_ms", T_INT, F(net.heartbeat_ms), "2000", 0, 3600000, NULL, "Dead-peer detection: clients ping the coordinator (ZeroMQ heartbeat) and send HEARTBEAT this often; the coordinator uses TCP keepalives (idle 3x)."},
    {"net", "max_message_bytes", T_INT, F(net.max_message_bytes), "268435456", 1024, 4294967296.0, NULL,
     "Largest message accepted (ZMQ_MAXMSGSIZE)."},
    {"net", "max_messages_per_second", T_INT, F(net.max_messages_per_second), "200", 1, 1000000, NULL,
     "Per-peer message rate limit."},
    {"net", "max_invalid_messages", T_INT, F(net.max_invalid_messages), "5", 1, 1000000, NULL,
     "Invalid messages before a peer is refused."},
    {"net", "cooldown_seconds", T_DOUBLE, F(net.cooldown_seconds), "60", 0, 86400, NULL,
     "How long a refused peer stays refused."},
    {"net", "max_connections", T_INT, F(net.max_connections), "10000", 1, 1000000, NULL,
     "Concurrent connections the coordinator accepts (CURVE)."},
    {"net", "max_connections_per_source", T_INT, F(net.max_connections_per_source), "256", 1, 1000000, NULL,
     "Concurrent connections from one IP address (CURVE)."},
};

static const char *const sections[] = {"run", "model", "data", "train", "federation", "dp", "secagg", "net"};
#define NKEYS (sizeof keys / sizeof keys[0])
#define NSECTIONS (sizeof sections / sizeof sections[0])

/* ---- "did you mean" ------------------------------------------------------------------ */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Closest known key of `section` (or closest section when key is NULL), if close enough. */
static const char *suggest(const char *section, const char *key)
{
    const char *best = NULL;
    size_t best_d = 3; /* farther than 2 edits is no suggestion */
    if (!key) {
        for (size_t i = 0; i < NSECTIONS; i++) {
            size_t d = edit_distance(section, sections[i]);
            if (d < best_d) {
                best_d = d;
                best = sections[i];
            }
        }
        return best;
    }
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].section, section) != 0)
            continue;
        size_t d = edit_distance(key, keys[i].key);
        if (d < best_d) {
            best_d = d;
            best = keys[i].key;
        }
    }
    return best;
}

static int section_known(const char *section)
{
    for (size_t i = 0; i < NSECTIONS; i++)
        if (strcmp(section, sections[i]) == 0)
            return 1;
    return 0;
}

static const key_def_t *find_key(const char *section, const char *key)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
            return &keys[i];
    return NULL;
}

/* ---- values ---------------------------------------------------------------------------- */

static int enum_index(const char *choices, const char *value)
{
    int idx = 0;
    const char *p = choices;
    size_t vlen = strlen(value);
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == vlen && strncasecmp(p, value, len) == 0)
            return idx;
        idx++;
        if (!bar)
            break;
        p = bar + 1;
    }
    return -1;
}

static void enum_name(const char *choices, int index, char *out, size_t cap)
{
    const char *p = choices;
    for (int i = 0; i < index && p; i++) {
        p = strchr(p, '|');
        if (p)
            p++;
    }
    if (!p) {
        snprintf(out, cap, "?");
        return;
    }
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    snprintf(out, cap, "%.*s", (int)len, p);
}

static void describe_range(const key_def_t *k, char *out, size_t cap)
{
    const char *what = k->type == T_INT ? "an integer" : "a number";
    if (isinf(k->min) && isinf(k->max))
        snprintf(out, cap, "%s", what);
    else if (isinf(k->max))
        snprintf(out, cap, "%s >= %.17g", what, k->min);
    else
        snprintf(out, cap, "%s in [%.17g, %.17g]", what, k->min, k->max);
}

/* Parse `value` per `k` into cfg. `where` prefixes error messages ("config a.ini:12"). */
static int assign(sl_config_t *cfg, const key_def_t *k, const char *value, const char *where)
{
    char *field = (char *)cfg + k->offset;
    char expect[128];
    switch (k->type) {
    case T_INT: {
        errno = 0;
        char *end = NULL;
        long long v = strtoll(value, &end, 10);
        describe_range(k, expect, sizeof expect);
        if (errno || end == value || *end != '\0' || (double)v < k->min || (double)v > k->max)
            return sl_error(SL_ECONFIG, "%s: [%s] %s: expected %s, got \"%s\"", where, k->section, k->key, expect,
                            value);
        *(int64_t *)(void *)field = (int64_t)v;
        return 0;
    }
    case T_DOUBLE: {
        errno = 0;
        char *end = NULL;
        double v = strtod(value, &end);
        describe_range(k, expect, sizeof expect);
        if (errno || end == value || *end != '\0' || !isfinite(v) || v < k->min || v > k->max)
            return sl_error(SL_ECONFIG, "%s: [%s] %s: expected %s, got \"%s\"", where, k->section, k->key, expect,
                            value);
        *(double *)(void *)field = v;
        return 0;
    }
    case T_BOOL: {
        int v;
        if (!strcasecmp(value, "true") || !strcasecmp(value, "yes") || !strcasecmp(value, "on") || !strcmp(value, "1"))
            v = 1;
        else if (!strcasecmp(value, "false") || !strcasecmp(value, "no") || !strcasecmp(value, "off") ||
                 !strcmp(value, "0"))
            v = 0;
        else
            return sl_error(SL_ECONFIG, "%s: [%s] %s: expected true or false, got \"%s\"", where, k->section, k->key,
                            value);
        *(int *)(void *)field = v;
        return 0;
    }
    case T_STRING:
        if (strlen(value) >= SL_CFG_STR)
            return sl_error(SL_ECONFIG, "%s: [%s] %s: longer than %d characters", where, k->section, k->key,
                            SL_CFG_STR - 1);
        if (k->choices) /* a string limited to choices is checked below */
            break;
        snprintf(field, SL_CFG_STR, "%s", value);
        return 0;
    case T_ENUM:
        break;
    }
    /* T_ENUM, or T_STRING with choices (kept as its canonical name) */
    int idx = enum_index(k->choices, value);
    if (idx < 0) {
        char choices[256];
        snprintf(choices, sizeof choices, "%s", k->choices);
        for (char *c = choices; *c; c++)
            if (*c == '|')
                *c = ',';
        return sl_error(SL_ECONFIG, "%s: [%s] %s: expected one of %s, got \"%s\"", where, k->section, k->key,
                        choices, value);
    }
    if (k->type == T_ENUM)
        *(int *)(void *)field = idx;
    else
        enum_name(k->choices, idx, field, SL_CFG_STR);
    return 0;
}

static int set_checked(sl_config_t *cfg, const char *section, const char *key, const char *value,
                       const char *where)
{
    if (!section_known(section)) {
        const char *s = suggest(section, NULL);
        return sl_error(SL_ECONFIG, "%s: unknown section [%s]%s%s%s", where, section, s ? " (did you mean [" : "",
                        s ? s : "", s ? "]?)" : "");
    }
    const key_def_t *k = find_key(section, key);
    if (!k) {
        const char *s = suggest(section, key);
        return sl_error(SL_ECONFIG, "%s: [%s] unknown key \"%s\"%s%s%s", where, section, key,
                        s ? " (did you mean \"" : "", s ? s : "", s ? "\"?)" : "");
    }
    return assign(cfg, k, value, where);
}

void sl_config_defaults(sl_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NKEYS; i++) {
        int rc = assign(cfg, &keys[i], keys[i].def, "default");
        (void)rc; /* the defaults are checked by the config test */
    }
}

/* ---- INI ------------------------------------------------------------------------------- */

/* Debian's libinih is built without INI_HANDLER_LINENO, so we feed it lines ourselves
 * (ini_parse_stream) and count them: the handler runs right after its line is read. */
typedef struct {
    sl_config_t *cfg;
    const char *name;
    int rc;
    int lineno;
    FILE *file;       /* source: a file, or */
    const char *text; /* the rest of an in-memory document */
} ini_ctx_t;

static char *read_line(char *str, int num, void *stream)
{
    ini_ctx_t *ctx = stream;
    if (ctx->file) {
        if (!fgets(str, num, ctx->file))
            return NULL;
    } else {
        if (!ctx->text || *ctx->text == '\0' || num < 2)
            return NULL;
        const char *nl = strchr(ctx->text, '\n');
        size_t len = nl ? (size_t)(nl - ctx->text) + 1 : strlen(ctx->text);
        if (len > (size_t)num - 1)
            len = (size_t)num - 1;
        memcpy(str, ctx->text, len);
        str[len] = '\0';
        ctx->text += len;
    }
    ctx->lineno++;
    return str;
}

static int on_ini_value(void *user, const char *section, const char *key, const char *value)
{
    ini_ctx_t *ctx = user;
    char where[SL_CFG_STR + 64];
    snprintf(where, sizeof where, "config %s:%d", ctx->name, ctx->lineno);
    if (section[0] == '\0') {
        ctx->rc = sl_error(SL_ECONFIG, "%s: key \"%s\" is outside any [section]", where, key);
        return 0;
    }
    ctx->rc = set_checked(ctx->cfg, section, key, value, where);
    return ctx->rc == 0;
}

static int finish_parse(ini_ctx_t *ctx, int ini_rc)
{
    if (ctx->rc)
        return ctx->rc;
    if (ini_rc > 0)
        return sl_error(SL_ECONFIG, "config %s:%d: syntax error (expected [section] or key = value)", ctx->name,
                        ini_rc);
    if (ini_rc == -2)
        return sl_error(SL_ENOMEM, "config %s: out of memory", ctx->name);
    return 0;
}

int sl_config_load(sl_config_t *cfg, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sl_error(SL_ENOTFOUND, "config %s: cannot open (%s)", path, strerror(errno));
    ini_ctx_t ctx = {cfg, path, 0, 0, f, NULL};
    int rc = ini_parse_stream(read_line, &ctx, on_ini_value, &ctx);
    fclose(f);
    return finish_parse(&ctx, rc);
}

int sl_config_load_string(sl_config_t *cfg, const char *text, const char *name)
{
    ini_ctx_t ctx = {cfg, name, 0, 0, NULL, text};
    int rc = ini_parse_stream(read_line, &ctx, on_ini_value, &ctx);
    return finish_parse(&ctx, rc);
}

int sl_config_set_value(sl_config_t *cfg, const char *section, const char *key, const char *value)
{
    return set_checked(cfg, section, key, value, "config override");
}

int sl_config_set(sl_config_t *cfg, const char *assignment)
{
    const char *dot = strchr(assignment, '.');
    const char *eq = strchr(assignment, '=');
    if (!dot || !eq || dot > eq || dot == assignment || eq == dot + 1)
        return sl_error(SL_ECONFIG, "--set \"%s\": expected section.key=value", assignment);
    char section[64], key[64];
    size_t slen = (size_t)(dot - assignment), klen = (size_t)(eq - dot - 1);
    if (slen >= sizeof section || klen >= sizeof key)
        return sl_error(SL_ECONFIG, "--set \"%s\": section or key too long", assignment);
    memcpy(section, assignment, slen);
    section[slen] = '\0';
    memcpy(key, dot + 1, klen);
    key[klen] = '\0';
    char where[128];
    snprintf(where, sizeof where, "--set %s.%s", section, key);
    return set_checked(cfg, section, key, eq + 1, where);
}

int sl_config_validate(const sl_config_t *cfg)
{
    if (cfg->model.d_model % cfg->model.heads != 0)
        return sl_error(SL_ECONFIG, "config: [model] heads = %lld must divide d_model = %lld",
                        (long long)cfg->model.heads, (long long)cfg->model.d_model);
    if (cfg->federation.max_clients && cfg->federation.max_clients < cfg->federation.min_clients)
        return sl_error(SL_ECONFIG, "config: [federation] max_clients = %lld is below min_clients = %lld",
                        (long long)cfg->federation.max_clients, (long long)cfg->federation.min_clients);
    if (cfg->dp.insecure_seeded_noise && cfg->dp.mode == SL_DP_OFF)
        return sl_error(SL_ECONFIG, "config: [dp] insecure_seeded_noise is set but dp.mode is off");
    if (cfg->secagg.threshold && cfg->secagg.neighbors && cfg->secagg.threshold > cfg->secagg.neighbors)
        return sl_error(SL_ECONFIG, "config: [secagg] threshold = %lld exceeds neighbors = %lld",
                        (long long)cfg->secagg.threshold, (long long)cfg->secagg.neighbors);
    return 0;
}

static void format_value(const sl_config_t *cfg, const key_def_t *k, char *out, size_t cap)
{
    const char *field = (const char *)cfg + k->offset;
    switch (k->type) {
    case T_INT:
        snprintf(out, cap, "%lld", (long long)*(const int64_t *)(const void *)field);
        break;
    case T_DOUBLE:
        snprintf(out, cap, "%.17g", *(const double *)(const void *)field);
        break;
    case T_BOOL:
        snprintf(out, cap, "%s", *(const int *)(const void *)field ? "true" : "false");
        break;
    case T_STRING:
        snprintf(out, cap, "%s", field);
        break;
    case T_ENUM:
        enum_name(k->choices, *(const int *)(const void *)field, out, cap);
        break;
    }
}

int sl_config_write(const sl_config_t *cfg, FILE *out)
{
    const char *current = NULL;
    char value[SL_CFG_STR + 8];
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def_t *k = &keys[i];
        if (!current || strcmp(current, k->section) != 0) {
            fprintf(out, "%s[%s]\n", current ? "\n" : "", k->section);
            current = k->section;
        }
        format_value(cfg, k, value, sizeof value);
        fprintf(out, "%s = %s\n", k->key, value);
    }
    return ferror(out) ? sl_error(SL_EIO, "config: write failed") : 0;
}

int sl_config_describe(FILE *out)
{
    static const char *const type_names[] = {"integer", "number", "bool", "string", "enum"};
    fputs("# Configuration reference\n\n"
          "Generated by `starling config --describe` from the table in core/config.c.\n"
          "Every key may be set in an INI file (`--config FILE`) or on the command line\n"
          "(`--set section.key=value`). Unknown sections and keys are errors.\n",
          out);
    const char *current = NULL;
    for (size_t i = 0; i < NKEYS; i++) {
        const key_def_t *k = &keys[i];
        if (!current || strcmp(current, k->section) != 0) {
            fprintf(out, "\n## [%s]\n\n| key | type | default | range | meaning |\n|---|---|---|---|---|\n",
                    k->section);
            current = k->section;
        }
        char range[160] = "";
        if (k->type == T_ENUM || (k->type == T_STRING && k->choices))
            snprintf(range, sizeof range, "%s", k->choices);
        else if (k->type == T_INT || k->type == T_DOUBLE)
            describe_range(k, range, sizeof range);
        for (char *c = range; *c; c++)
            if (*c == '|')
                *c = ',';
        fprintf(out, "| `%s` | %s | `%s` | %s | %s |\n", k->key, type_names[k->type], k->def, range, k->doc);
    }
    return ferror(out) ? sl_error(SL_EIO, "config: write failed") : 0;
}

const char *sl_config_enum_name(const char *section, const char *key, int value)
{
    static _Thread_local char name[64];
    const key_def_t *k = find_key(section, key);
    if (!k || k->type != T_ENUM || value < 0)
        return NULL;
    enum_name(k->choices, value, name, sizeof name);
    return strcmp(name, "?") == 0 ? NULL : name;
}
