#include "core/batch.h"

#include <stdlib.h>
#include <string.h>

size_t sl_modality_values(const sl_modality_t *m)
{
    switch (m->kind) {
    case SL_MOD_TIMESERIES:
        return m->dims[0] * m->dims[1];
    case SL_MOD_IMAGE:
        return m->dims[0] * m->dims[1] * m->dims[2];
    case SL_MOD_VECTOR:
    case SL_MOD_TEXT:
        return m->dims[0];
    }
    return 0;
}

const char *sl_modality_kind_name(sl_modality_kind_t kind)
{
    static const char *const names[] = {"timeseries", "image", "vector", "text"};
    return (unsigned)kind < 4 ? names[kind] : "?";
}

int sl_schema_find(const sl_schema_t *schema, const char *name)
{
    for (size_t i = 0; i < schema->n_modalities; i++)
        if (strcmp(schema->modalities[i].name, name) == 0)
            return (int)i;
    return -1;
}

int sl_schema_validate(const sl_schema_t *schema)
{
    if (schema->n_modalities == 0 || schema->n_modalities > SL_MAX_MODALITIES)
        return sl_error(SL_EINVAL, "schema: %zu modalities (expected 1..%d)", schema->n_modalities,
                        SL_MAX_MODALITIES);
    if (schema->n_classes < 2)
        return sl_error(SL_EINVAL, "schema: %zu classes (expected >= 2)", schema->n_classes);
    for (size_t i = 0; i < schema->n_modalities; i++) {
        const sl_modality_t *m = &schema->modalities[i];
        if (m->name[0] == '\0' || memchr(m->name, '\0', SL_NAME_MAX) == NULL)
            return sl_error(SL_EINVAL, "schema: modality %zu has no name", i);
        if ((unsigned)m->kind > SL_MOD_TEXT)
            return sl_error(SL_EINVAL, "schema: modality %s has an unknown kind", m->name);
        if (sl_modality_values(m) == 0)
            return sl_error(SL_EINVAL, "schema: modality %s has a zero dimension", m->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(schema->modalities[j].name, m->name) == 0)
                return sl_error(SL_EINVAL, "schema: modality name %s appears twice", m->name);
    }
    return 0;
}

int sl_batch_init(sl_batch_t *batch, const sl_schema_t *schema, size_t capacity)
{
    memset(batch, 0, sizeof *batch);
    batch->schema = schema;
    batch->capacity = capacity;
    for (size_t m = 0; m < schema->n_modalities; m++) {
        batch->x[m] = calloc(capacity * sl_modality_values(&schema->modalities[m]), sizeof(float));
        if (!batch->x[m])
            goto oom;
    }
    batch->present = calloc(capacity * schema->n_modalities, 1);
    batch->labels = calloc(capacity, sizeof(int32_t));
    if (!batch->present || !batch->labels)
        goto oom;
    return 0;
oom:
    sl_batch_free(batch);
    return sl_error(SL_ENOMEM, "batch: cannot allocate %zu rows", capacity);
}

void sl_batch_free(sl_batch_t *batch)
{
    if (!batch)
        return;
    for (size_t m = 0; m < SL_MAX_MODALITIES; m++)
        free(batch->x[m]);
    free(batch->present);
    free(batch->labels);
    memset(batch, 0, sizeof *batch);
}
