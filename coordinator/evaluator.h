/* coordinator/evaluator: centralized evaluation of the global vector on a coordinator-side
 * test set (HAPT: the held-out users), as the engine's central_eval hook.
 *
 *   sl_evaluator_t ev = {.model = m, .src = test_source, .batch_size = 256};
 *   opts.hooks.central_eval = sl_evaluator_hook; opts.hooks.hook_ctx = &ev;
 */
#ifndef SL_EVALUATOR_H
#define SL_EVALUATOR_H

#include "core/batch.h"
#include "core/model.h"
#include "core/wire.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    sl_model_t *model;       /* borrowed; its trainable vector is overwritten */
    sl_example_source_t src; /* the evaluation examples */
    size_t batch_size;
} sl_evaluator_t;

/* Load `global` (dim floats: the model's trainable vector) and evaluate on ev->src. */
SL_NODISCARD int sl_evaluator_run(sl_evaluator_t *ev, const float *global, size_t dim, sl_eval_info_t *out);

/* The engine hook form: ctx is an sl_evaluator_t. */
int sl_evaluator_hook(void *ctx, uint64_t round, const float *global, size_t dim, sl_eval_info_t *out);

#endif
