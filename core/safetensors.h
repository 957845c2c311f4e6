/* core/safetensors: tensors on disk in the Hugging Face safetensors format.
 *
 * File layout (https://huggingface.co/docs/safetensors):
 *   u64 little-endian N | N bytes of JSON header | raw little-endian tensor data
 * The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end)}
 * (offsets relative to the start of the data) and may hold "__metadata__", a map of
 * strings. starling writes "format": "starling-v1" there (the magic + version of the
 * blob) plus the model configuration, and pads the header with spaces to a multiple of 8.
 *
 * Only F32 tensors are accepted. A file is read with strict validation: header size
 * limit, valid JSON, known fields, F32 only, shape product * 4 == offset span, offsets in
 * bounds, tensors contiguous (no gap, no overlap) and covering the data exactly, no
 * trailing bytes. Every failure names the file and the offending tensor.
 *
 * Writes are atomic: a temp file in the same folder, fsync, rename, fsync of the folder.
 */
#ifndef SL_SAFETENSORS_H
#define SL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "core/model.h"

#define SL_ST_FORMAT "starling-v1"          /* value of __metadata__["format"] */
#define SL_ST_MAX_HEADER (100u * 1024u * 1024u) /* bytes of JSON header accepted */
#define SL_ST_MAX_DIMS 8
#define SL_ST_NAME_MAX 256

typedef struct {
    char name[SL_ST_NAME_MAX];
    size_t ndim;
    size_t shape[SL_ST_MAX_DIMS];
    size_t numel;      /* product of shape (1 for a scalar) */
    const float *data; /* (numel) host floats; borrowed (write) or owned by the file (read) */
} sl_st_tensor_t;

typedef struct {
    char *key;
    char *value;
} sl_st_meta_t;

/* A parsed file; tensors are in data order (ascending offsets). */
typedef struct {
    size_t n_tensors;
    sl_st_tensor_t *tensors;
    size_t n_meta;
    sl_st_meta_t *meta; /* in header order */
    float *values;      /* all tensor data, host byte order; tensors[i].data points into it */
} sl_st_file_t;

/* Write `n` tensors (data in the given order) and `n_meta` metadata pairs to `path`
 * atomically. Names must be unique, non-empty and not "__metadata__"; the caller owns
 * everything passed. Metadata keys must be unique. */
SL_NODISCARD int sl_st_write(const char *path, const sl_st_tensor_t *tensors, size_t n, const sl_st_meta_t *meta,
                             size_t n_meta);

/* Serialize to a malloc'd buffer (*out, *len; caller frees): the exact bytes sl_st_write
 * puts in the file. */
SL_NODISCARD int sl_st_serialize(const sl_st_tensor_t *tensors, size_t n, const sl_st_meta_t *meta, size_t n_meta,
                                 uint8_t **out, size_t *len);

/* Read and validate `path` into `out` (which the caller frees with sl_st_file_free).
 * On error `out` is left empty. */
SL_NODISCARD int sl_st_read(sl_st_file_t *out, const char *path);

/* Parse `len` bytes already in memory; `name` is used in error messages. Never reads
 * past `len`. */
SL_NODISCARD int sl_st_parse(sl_st_file_t *out, const uint8_t *buf, size_t len, const char *name);

/* Release everything a parse produced; NULL-safe, leaves `f` empty. */
void sl_st_file_free(sl_st_file_t *f);

/* Borrowed tensor `name` in `f`, or NULL. */
const sl_st_tensor_t *sl_st_find(const sl_st_file_t *f, const char *name);

/* Borrowed metadata value of `key`, or NULL. */
const char *sl_st_meta_get(const sl_st_file_t *f, const char *key);

/* "[2, 3]" into buf (for messages); returns buf. */
const char *sl_st_shape_str(const size_t *shape, size_t ndim, char *buf, size_t cap);

/* ---- model I/O ---------------------------------------------------------------------------- */

/* Save m's parameters to `path` atomically: every tensor (trainable_only = 0: a base or full
 * file) or only the trainable ones (an adapter file). __metadata__ holds "format"
 * (SL_ST_FORMAT), "content" ("full" | "trainable"), "model.<key>" for every [model]
 * architecture key, "train.mode", "schema.n_classes" and "schema.modalities"
 * ("acc:timeseries:128x3,gyro:timeseries:128x3"). Works on clones. */
SL_NODISCARD int sl_model_save(sl_model_t *m, const char *path, int trainable_only);

/* Load every tensor present in `path` (a base file, a trainable-only adapter file or a full
 * file) into m. The file must carry format SL_ST_FORMAT; every tensor must exist in m with
 * the same shape (SL_EMISMATCH / SL_ENOTFOUND naming the tensor); nothing is written unless
 * the whole file validates. Loading frozen tensors into a clone is SL_ESTATE (they are
 * shared with its base). */
SL_NODISCARD int sl_model_load(sl_model_t *m, const char *path);

enum {
    SL_LOAD_SKIP_UNKNOWN = 1u,    /* ignore file tensors m does not have (e.g. LoRA into full) */
    SL_LOAD_SKIP_MISMATCHED = 2u, /* ignore tensors whose shape differs (e.g. a 6-class head into 12) */
    SL_LOAD_FROZEN_ONLY = 4u      /* load only tensors that are frozen in m */
};
/* sl_model_load with flags (SL_LOAD_*); *loaded / *skipped (may be NULL) count tensors. */
SL_NODISCARD int sl_model_load_ex(sl_model_t *m, const char *path, unsigned flags, size_t *loaded,
                                  size_t *skipped);

/* Set cfg's architecture keys ([model] ... and train.mode) from the metadata of a model
 * file written by sl_model_save, so a model built from cfg matches the file. Keys the file
 * lacks are left alone. SL_EFORMAT if the file is not a starling model file. */
SL_NODISCARD int sl_model_file_config(const char *path, sl_config_t *cfg);

#endif
