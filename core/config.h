/* core/config: the typed, range-checked, documented run configuration.
 *
 * One table in config.c lists every key (section, name, type, default, range, doc).
 * From it come: INI parsing (libinih) with file:line errors, `--set section.key=value`
 * overrides, "did you mean" suggestions for unknown keys, `starling config --print`
 * (the effective configuration as INI) and `starling config --describe` (docs/config.md).
 *
 * To add a key: a field in the struct below and one row in the table in config.c.
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "core/error.h"

#define SL_CFG_STR 256

/* Enumerations stored as int; their names are the table's "choices". */
typedef enum { SL_TRAIN_LORA = 0, SL_TRAIN_HEAD, SL_TRAIN_FULL } sl_train_mode_t;
typedef enum { SL_OPT_SGD = 0, SL_OPT_ADAMW } sl_optimizer_kind_t;
typedef enum { SL_SCHED_CONSTANT = 0, SL_SCHED_COSINE } sl_schedule_t;
typedef enum { SL_POOL_CLS = 0, SL_POOL_MEAN } sl_pooling_t;
typedef enum {
    SL_STRAT_FEDAVG = 0,
    SL_STRAT_FEDAVGM,
    SL_STRAT_FEDADAM,
    SL_STRAT_FEDYOGI,
    SL_STRAT_FEDADAGRAD,
    SL_STRAT_MEDIAN,
    SL_STRAT_TRIMMED_MEAN
} sl_strategy_kind_t;
typedef enum { SL_QUORUM_RETRY = 0, SL_QUORUM_FAIL } sl_quorum_policy_t;
typedef enum { SL_DP_OFF = 0, SL_DP_CENTRAL, SL_DP_DISTRIBUTED, SL_DP_LOCAL } sl_dp_mode_t;
typedef enum {
    SL_PART_NATURAL = 0,
    SL_PART_IID,
    SL_PART_DIRICHLET,
    SL_PART_SHARDS,
    SL_PART_QUANTITY
} sl_partition_t;

typedef struct sl_config {
    struct {
        char name[SL_CFG_STR];
        int64_t seed;
        char out_dir[SL_CFG_STR];
        char log_level[SL_CFG_STR];
    } run;
    struct {
        int64_t d_model;
        int64_t layers;
        int64_t heads;
        int64_t mlp_ratio;
        double dropout;
        int64_t patch_len;
        int64_t image_patch;
        int64_t vector_group;
        int64_t text_max_len;
        int pooling;
        int64_t lora_rank;
        double lora_alpha;
        char lora_targets[SL_CFG_STR];
        char base[SL_CFG_STR];
    } model;
    struct {
        char name[SL_CFG_STR];
        char path[SL_CFG_STR];
        char plugin[SL_CFG_STR];
        char options[SL_CFG_STR];
        int64_t classes;
        int partition;
        int64_t clients;
        double alpha;
        int64_t shards_per_client;
        double quantity_exponent;
        double local_test_fraction;
        char missing_modality[SL_CFG_STR];
        double missing_fraction;
    } data;
    struct {
        int mode;
        int optimizer;
        double lr;
        double momentum;
        double weight_decay;
        int64_t batch_size;
        int64_t local_epochs;
        int64_t local_steps;
        int64_t epochs;
        double grad_clip;
        int schedule;
        int64_t warmup_steps;
        double label_smoothing;
        double fedprox_mu;
        int64_t threads;
        double augment_scale;
        double augment_jitter;
        double augment_rotate;
    } train;
    struct {
        int64_t rounds;
        int64_t clients;
        int strategy;
        double fraction;
        int64_t min_clients;
        int64_t max_clients;
        double round_timeout;
        int quorum_policy;
        int64_t max_retries;
        int64_t eval_every;
        double weight_cap;
        double server_lr;
        double server_momentum;
        double beta1;
        double beta2;
        double tau;
        double trim_fraction;
        double update_norm_bound;
        int64_t upload_window;
    } federation;
    struct {
        int mode;
        double clip;
        double noise_multiplier;
        int adaptive_clip;
        double target_quantile;
        double clip_lr;
        double count_noise_multiplier;
        double delta;
        double target_epsilon;
        int insecure_seeded_noise;
    } dp;
    struct {
        int enabled;
        int64_t bits;
        int64_t neighbors;
        int64_t threshold;
        double dropout_tolerance;
    } secagg;
    struct {
        char bind[SL_CFG_STR];
        char coordinator[SL_CFG_STR];
        int insecure;
        char keys_dir[SL_CFG_STR];
        char authorized_clients[SL_CFG_STR];
        char server_public_key[SL_CFG_STR];
        int64_t heartbeat_ms;
        int64_t max_message_bytes;
        int64_t max_messages_per_second;
        int64_t max_invalid_messages;
        double cooldown_seconds;
        int64_t max_connections;
        int64_t max_connections_per_source;
    } net;
} sl_config_t;

/* Fill every key with its default. */
void sl_config_defaults(sl_config_t *cfg);

/* Read an INI file on top of `cfg`. Unknown sections or keys and bad values are errors
 * naming file:line; `cfg` may be partly updated on error (callers discard it). */
SL_NODISCARD int sl_config_load(sl_config_t *cfg, const char *path);

/* Parse an INI document held in memory; `name` is used in messages. */
SL_NODISCARD int sl_config_load_string(sl_config_t *cfg, const char *text, const char *name);

/* Apply one override "section.key=value" (the CLI's --set). */
SL_NODISCARD int sl_config_set(sl_config_t *cfg, const char *assignment);

/* Set one key from its text value, checked as in a file. */
SL_NODISCARD int sl_config_set_value(sl_config_t *cfg, const char *section, const char *key,
                                     const char *value);

/* Cross-key checks (e.g. heads divides d_model, min_clients <= max_clients). */
SL_NODISCARD int sl_config_validate(const sl_config_t *cfg);

/* Write the effective configuration as an INI document that sl_config_load reads back. */
SL_NODISCARD int sl_config_write(const sl_config_t *cfg, FILE *out);

/* Write the key reference as Markdown (docs/config.md). */
SL_NODISCARD int sl_config_describe(FILE *out);

/* Name of an enum value of a key ("fedavg"), or NULL. */
const char *sl_config_enum_name(const char *section, const char *key, int value);

#endif
