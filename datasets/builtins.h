/* datasets/builtins: the built-in dataset tables (same ABI as plug-ins, datasets/plugin.h)
 * and small helpers they share. Internal to datasets/. */
#ifndef SL_DATASETS_BUILTINS_H
#define SL_DATASETS_BUILTINS_H

#include <stddef.h>
#include <stdint.h>

#include "datasets/plugin.h"

extern const sl_dataset_plugin_t sl_dataset_hapt;
extern const sl_dataset_plugin_t sl_dataset_synthetic;
extern const sl_dataset_plugin_t sl_dataset_files;

/* Parse a whole decimal integer / double option value; SL_ECONFIG naming the key otherwise.
 * A NULL value leaves *out (the default) unchanged. */
SL_NODISCARD int sl_dsopt_int(const char *dataset, const char *key, const char *value, int64_t min, int64_t max,
                              int64_t *out);
SL_NODISCARD int sl_dsopt_double(const char *dataset, const char *key, const char *value, double min, double max,
                                 double *out);

#endif
