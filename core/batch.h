/* core/batch: what the model eats. A schema describes the modalities of a dataset; a
 * batch holds B samples of every modality in caller-owned buffers plus a per-sample
 * "modality present" mask; an example source fills batches by example index.
 *
 * Value layouts, per sample (row-major, float32):
 *   time series  (T, C)       samples x channels, so a patch of P samples is contiguous
 *   image        (H, W, ch)
 *   vector       (F)
 *   text         (L)          byte codes 1..255 stored as floats; 0 = padding (masked)
 * A modality that is absent for a sample has present = 0 and its values are ignored.
 *
 * core knows nothing of datasets: datasets/ produces sl_example_source_t values.
 */
#ifndef SL_BATCH_H
#define SL_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define SL_MAX_MODALITIES 8
#define SL_NAME_MAX 32

typedef enum { SL_MOD_TIMESERIES = 0, SL_MOD_IMAGE, SL_MOD_VECTOR, SL_MOD_TEXT } sl_modality_kind_t;

typedef struct {
    char name[SL_NAME_MAX];  /* "acc", "gyro", "camera", ... */
    sl_modality_kind_t kind;
    size_t dims[3];          /* timeseries: T, C; image: H, W, ch; vector: F; text: L */
} sl_modality_t;

typedef struct {
    size_t n_modalities;
    sl_modality_t modalities[SL_MAX_MODALITIES];
    size_t n_classes;
} sl_schema_t;

/* Floats per sample of one modality (product of its dims). */
size_t sl_modality_values(const sl_modality_t *m);
/* "timeseries" | "image" | "vector" | "text". */
const char *sl_modality_kind_name(sl_modality_kind_t kind);
/* Index of modality `name` in the schema, or -1. */
int sl_schema_find(const sl_schema_t *schema, const char *name);
/* Checks counts, names and dims are sane (non-zero, unique names); SL_EINVAL with a message. */
SL_NODISCARD int sl_schema_validate(const sl_schema_t *schema);

typedef struct {
    const sl_schema_t *schema;        /* borrowed */
    size_t capacity;                  /* allocated rows */
    size_t size;                      /* rows filled (B) */
    float *x[SL_MAX_MODALITIES];      /* x[m] is (capacity, values(m)) */
    uint8_t *present;                 /* (capacity, n_modalities): 1 = modality present */
    int32_t *labels;                  /* (capacity) in [0, n_classes) */
} sl_batch_t;

SL_NODISCARD int sl_batch_init(sl_batch_t *batch, const sl_schema_t *schema, size_t capacity);
void sl_batch_free(sl_batch_t *batch);

/* A set of `count` examples addressable by index 0..count-1. fill() writes examples
 * idx[0..n-1] into rows 0..n-1 of `batch` (n <= batch->capacity), sets batch->size = n,
 * and returns 0 or a negative SL_E* code. */
typedef struct {
    void *ctx;
    size_t count;
    int (*fill)(void *ctx, const size_t *idx, size_t n, sl_batch_t *batch);
} sl_example_source_t;

#endif
