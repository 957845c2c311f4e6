#include "coordinator/evaluator.h"

#include "core/evaluate.h"

int sl_evaluator_run(sl_evaluator_t *ev, const float *global, size_t dim, sl_eval_info_t *out)
{
    return sl_evaluate_vector(ev->model, global, dim, &ev->src, ev->batch_size, out);
}

int sl_evaluator_hook(void *ctx, uint64_t round, const float *global, size_t dim, sl_eval_info_t *out)
{
    (void)round;
    return sl_evaluator_run(ctx, global, dim, out);
}
