#include "core/layout.h"

#include "core/wire.h"

uint64_t sl_model_layout_hash(const sl_model_t *m)
{
    size_t count = 0;
    const sl_param_info_t *params = sl_model_params(m, &count);
    size_t base = sl_model_trainable_offset(m);
    sl_layout_hash_t h;
    sl_layout_hash_init(&h);
    for (size_t i = 0; i < count; i++)
        if (params[i].trainable)
            sl_layout_hash_add(&h, params[i].name, params[i].shape, params[i].ndim, params[i].offset - base,
                               params[i].numel);
    return sl_layout_hash_final(&h);
}
