/* datasets/plugin: the dataset plug-in ABI (version 1).
 *
 * A dataset plug-in is a shared object that exports one function,
 *
 *     const sl_dataset_plugin_t *starling_dataset_plugin_v1(void);
 *
 * returning a static table whose first field is SL_DATASET_PLUGIN_ABI_VERSION. starling
 * loads it with dlopen (data.plugin = path, or <name>.so found in a STARLING_PLUGIN_PATH
 * folder), checks the version, validates the schema, the group sizes and every label, and
 * from then on treats it exactly like the built-in datasets (which implement this same
 * table): partitioning, local train/test splits, modality dropout and global splits are
 * done by starling, not by the plug-in.
 *
 * The data model: a plug-in exposes "groups" of examples. A group is a natural client
 * (a user, a device, a house) or a held-out set: its role says whether its examples belong
 * to a federated client, to the public (pretraining) split or to the global test split.
 * An example is addressed by (group, index in group). fill() writes examples into rows of a
 * caller-owned sl_batch_t (layouts in core/batch.h).
 *
 * Plain C, no dependency beyond core/batch.h (which is header-only for a plug-in: a
 * plug-in links against nothing from starling). docs/plugins.md walks through
 * examples/plugin/toy.c.
 */
#ifndef SL_DATASET_PLUGIN_H
#define SL_DATASET_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"

#define SL_DATASET_PLUGIN_ABI_VERSION 1u
#define SL_DATASET_PLUGIN_SYMBOL "starling_dataset_plugin_v1"

/* Role of a group of examples. */
typedef enum {
    SL_GROUP_CLIENT = 0, /* a natural federated client */
    SL_GROUP_PUBLIC = 1, /* public / pretraining data: not a client, not test */
    SL_GROUP_TEST = 2    /* held out: the global test split */
} sl_group_role_t;

/* One example: index `index` of group `group`. */
typedef struct {
    size_t group;
    size_t index;
} sl_dataset_ref_t;

/* An option the dataset accepts ("key=value" in data.options); the table ends with a
 * NULL key. Unknown keys are rejected by starling before open() with this list. */
typedef struct {
    const char *key;
    const char *def;  /* default, as text (documentation only) */
    const char *help; /* one line */
} sl_dataset_option_t;

/* What open() gets. Strings are borrowed for the duration of open() only. */
typedef struct {
    uint64_t seed;        /* run.seed */
    size_t classes;       /* data.classes; 0 = the dataset's default */
    const char *path;     /* data.path ("" if unset) */
    const char *data_dir; /* starling's bundled data folder ("" if none found) */
    size_t n_options;     /* the user's options, already checked against `options` */
    const char *const *keys;
    const char *const *values;
} sl_dataset_args_t;

typedef struct sl_dataset_plugin {
    uint32_t abi_version; /* SL_DATASET_PLUGIN_ABI_VERSION: always the first field */
    uint32_t flags;       /* reserved, 0 */
    const char *name;     /* registry name: [a-z0-9_]+, e.g. "toy" */
    const char *summary;  /* one line for `starling dataset list` */
    const sl_dataset_option_t *options;

    /* Open the dataset: *state receives the plug-in's handle. Returns 0, or a negative
     * SL_E* code with a message written to err (NUL-terminated, at most err_len bytes). */
    int (*open)(void **state, const sl_dataset_args_t *args, char *err, size_t err_len);
    /* Release everything open() made. state may be NULL. */
    void (*close)(void *state);

    /* The schema (borrowed, valid until close). */
    const sl_schema_t *(*schema)(void *state);
    /* Name of class k < n_classes (borrowed); NULL means "class<k>". */
    const char *(*class_name)(void *state, size_t k);

    size_t (*num_groups)(void *state);
    uint64_t (*group_id)(void *state, size_t g);     /* stable id, e.g. the user number */
    sl_group_role_t (*group_role)(void *state, size_t g);
    size_t (*group_size)(void *state, size_t g);     /* examples in group g */
    /* Label of example i of group g, in [0, n_classes). Must be cheap. */
    int32_t (*label)(void *state, size_t g, size_t i);

    /* Write examples refs[0..n-1] into rows 0..n-1 of batch (n <= batch->capacity):
     * batch->x[m] rows, batch->present (1 where the modality exists) and batch->labels.
     * Called concurrently from several threads on different batches: keep it read-only
     * on state. Returns 0 or a negative SL_E* code with a message in err. */
    int (*fill)(void *state, const sl_dataset_ref_t *refs, size_t n, sl_batch_t *batch, char *err,
                size_t err_len);
} sl_dataset_plugin_t;

/* The entry point a plug-in exports (declared here so plug-ins get the prototype). */
typedef const sl_dataset_plugin_t *(*sl_dataset_plugin_entry_t)(void);
const sl_dataset_plugin_t *starling_dataset_plugin_v1(void);

/* Value of option `key` in args, or NULL (for plug-ins; header-only helper). */
static inline const char *sl_dataset_args_get(const sl_dataset_args_t *args, const char *key)
{
    for (size_t i = 0; i < args->n_options; i++) {
        const char *a = args->keys[i], *b = key;
        while (*a && *a == *b) {
            a++;
            b++;
        }
        if (*a == '\0' && *b == '\0')
            return args->values[i];
    }
    return NULL;
}

#endif
