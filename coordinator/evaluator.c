#include "coordinator/evaluator.h"

#include "core/train.h"

#include <string.h>

int sl_evaluator_run(sl_evaluator_t *ev, const float *global, size_t dim, sl_eval_info_t *out)
{
    size_t n;
    float *w = sl_model_trainable(ev->model, &n);
    if (n != dim)
        return sl_error(SL_EMISMATCH, "evaluator: global vector has %zu values, the model %zu", dim, n);
    memcpy(w, global, n * sizeof *w);
    sl_metrics_t mt;
    int rc = sl_metrics_init(&mt, sl_model_schema(ev->model)->n_classes);
    if (rc)
        return rc;
    rc = sl_evaluate(ev->model, &ev->src, ev->batch_size ? ev->batch_size : 256, &mt);
    if (rc == 0) {
        out->examples = mt.examples;
        out->loss = mt.loss;
        out->accuracy = mt.accuracy;
        out->macro_f1 = mt.macro_f1;
    }
    sl_metrics_free(&mt);
    return rc;
}

int sl_evaluator_hook(void *ctx, uint64_t round, const float *global, size_t dim, sl_eval_info_t *out)
{
    (void)round;
    return sl_evaluator_run(ctx, global, dim, out);
}
