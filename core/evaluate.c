#include "core/evaluate.h"

#include <string.h>

#include "core/metrics.h"
#include "core/train.h"

int sl_evaluate_vector(sl_model_t *m, const float *vec, size_t n, const sl_example_source_t *src,
                       size_t batch_size, sl_eval_info_t *out)
{
    size_t dim;
    float *w = sl_model_trainable(m, &dim);
    if (n != dim)
        return sl_error(SL_EMISMATCH, "evaluate: vector has %zu values, the model %zu", n, dim);
    memcpy(w, vec, n * sizeof *w);
    memset(out, 0, sizeof *out);
    sl_metrics_t mt;
    int rc = sl_metrics_init(&mt, sl_model_schema(m)->n_classes);
    if (rc)
        return rc;
    rc = sl_evaluate(m, src, batch_size ? batch_size : 256, &mt);
    if (rc == 0) {
        out->examples = mt.examples;
        out->loss = mt.loss;
        out->accuracy = mt.accuracy;
        out->macro_f1 = mt.macro_f1;
    }
    sl_metrics_free(&mt);
    return rc;
}
