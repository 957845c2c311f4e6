/* datasets/dataset: open a dataset by name and get example sources for clients and for
 * the global splits.
 *
 * A dataset (built-in `hapt`, `synthetic`, `files`, or a plug-in, see datasets/plugin.h)
 * exposes groups of examples: natural clients, public (pretraining) groups and held-out
 * test groups. This module turns them into what federated training needs:
 *   - clients: the natural client groups (data.partition = natural), or the pooled client
 *     examples re-split into data.clients clients by a seeded partitioner
 *     (iid | dirichlet | shards | quantity, datasets/partition.h);
 *   - per client, a local train / test split (data.local_test_fraction, seeded by the run
 *     seed and the client id);
 *   - modality dropout: data.missing_fraction of the clients lack data.missing_modality
 *     (present = 0 and zero values for all their examples);
 *   - global splits: PUBLIC (pretraining groups), TRAIN (every client example pooled, local
 *     test included: the centralized baseline) and TEST (held-out groups).
 * Everything is deterministic in (dataset, options, run.seed). docs/datasets.md documents
 * every dataset and its options.
 *
 * Example sources returned here are borrowed views, valid while the dataset lives; their
 * fill() is safe to call from several threads at once on different batches.
 */
#ifndef SL_DATASET_H
#define SL_DATASET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/batch.h"
#include "core/config.h"
#include "core/error.h"
#include "datasets/plugin.h"

typedef struct sl_dataset sl_dataset_t;

/* Open the dataset named by cfg->data (name, path, plugin, options "k=v,k=v", classes,
 * partition, clients, alpha, shards_per_client, quantity_exponent, missing_modality,
 * missing_fraction, local_test_fraction), seeded by cfg->run.seed. An unknown name or
 * option is SL_ENOTFOUND / SL_ECONFIG with a message listing what exists; a bad plug-in is
 * SL_EPLUGIN. *out is owned by the caller (sl_dataset_destroy). */
SL_NODISCARD int sl_dataset_open(sl_dataset_t **out, const sl_config_t *cfg);
/* Free the dataset and null *ds; NULL-safe. */
void sl_dataset_destroy(sl_dataset_t **ds);

/* Modalities and class count (borrowed). */
const sl_schema_t *sl_dataset_schema(const sl_dataset_t *ds);
/* Name of class k ("WALKING"); borrowed; "?" when k is out of range. */
const char *sl_dataset_class_name(const sl_dataset_t *ds, size_t k);
/* Registry name of the open dataset ("hapt"). */
const char *sl_dataset_name(const sl_dataset_t *ds);

/* Federated clients (after partitioning). */
size_t sl_dataset_num_clients(const sl_dataset_t *ds);
/* Stable id of client `index`: the natural group id (HAPT user number) when not
 * re-partitioned, else the index itself. */
uint64_t sl_dataset_client_id(const sl_dataset_t *ds, size_t index);

typedef enum { SL_SPLIT_TRAIN = 0, SL_SPLIT_TEST } sl_split_t;
/* A client's local train or test examples (borrowed view, valid while ds lives).
 * SL_ERANGE for a bad index. */
SL_NODISCARD int sl_dataset_client_source(sl_dataset_t *ds, size_t index, sl_split_t split,
                                          sl_example_source_t *out);

typedef enum { SL_GLOBAL_PUBLIC = 0, SL_GLOBAL_TRAIN, SL_GLOBAL_TEST } sl_global_split_t;
/* PUBLIC: the pretraining groups (neither clients nor test); TRAIN: all federated
 * clients' examples pooled (centralized baseline; HAPT central_train=all21 adds the public
 * users); TEST: held-out groups (coordinator-side evaluation). SL_ENOTFOUND if the dataset
 * has none (e.g. an empty PUBLIC). */
SL_NODISCARD int sl_dataset_global_source(sl_dataset_t *ds, sl_global_split_t which, sl_example_source_t *out);

/* ---- extras: introspection for the CLI and tests --------------------------------------- */

/* Label of example i of a source made by this module (client or global view). SL_EINVAL
 * for a source from elsewhere, SL_ERANGE for i >= count. */
SL_NODISCARD int sl_dataset_source_label(const sl_example_source_t *src, size_t i, int32_t *label);

/* Examples of client `index`, local train + test (0 for a bad index); cheap: builds no view. */
size_t sl_dataset_client_size(const sl_dataset_t *ds, size_t index);

/* Whether client `index` lacks modality m (modality dropout). */
int sl_dataset_client_missing(const sl_dataset_t *ds, size_t index, size_t m);

/* The dataset's natural groups before partitioning: count, and per group its id, role
 * (sl_group_role_t) and example count. */
size_t sl_dataset_num_groups(const sl_dataset_t *ds);
SL_NODISCARD int sl_dataset_group_info(const sl_dataset_t *ds, size_t g, uint64_t *id, sl_group_role_t *role,
                                       size_t *count);
/* All examples of natural group g, whatever its role (borrowed view). */
SL_NODISCARD int sl_dataset_group_source(sl_dataset_t *ds, size_t g, sl_example_source_t *out);

/* ---- registry ---------------------------------------------------------------------------- */

/* Built-in dataset tables: count and entry i (hapt, synthetic, files). */
size_t sl_dataset_builtin_count(void);
const sl_dataset_plugin_t *sl_dataset_builtin(size_t i);

/* Write "name: summary" lines of the built-ins and of every plug-in found in the
 * STARLING_PLUGIN_PATH folders to `out`. */
SL_NODISCARD int sl_dataset_list(FILE *out);

/* Write the accepted options of dataset `name` (built-in or plug-in via cfg) to out. */
SL_NODISCARD int sl_dataset_describe_options(const sl_dataset_plugin_t *table, FILE *out);

/* Append "key=value" to cfg->data.options (the CLI's --data-opt). SL_EINVAL when
 * `assignment` has no '=' or the options string would overflow. */
SL_NODISCARD int sl_dataset_option_append(sl_config_t *cfg, const char *assignment);

/* The bundled data folder: $STARLING_DATA_DIR, else the source tree's datasets/data (a
 * compile-time path), else <prefix>/share/starling/data. Writes it to buf; SL_ENOTFOUND
 * (with the places tried) when none exists. */
SL_NODISCARD int sl_dataset_data_dir(char *buf, size_t cap);

#endif
