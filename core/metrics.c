#include "core/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sl_metrics_init(sl_metrics_t *mt, size_t n_classes)
{
    memset(mt, 0, sizeof *mt);
    if (n_classes == 0 || n_classes > 65536)
        return sl_error(SL_EINVAL, "metrics: %zu classes (expected 1..65536)", n_classes);
    mt->confusion = calloc(n_classes * n_classes, sizeof(uint64_t));
    if (!mt->confusion)
        return sl_error(SL_ENOMEM, "metrics: cannot allocate a %zu x %zu confusion matrix", n_classes, n_classes);
    mt->n_classes = n_classes;
    return 0;
}

void sl_metrics_free(sl_metrics_t *mt)
{
    if (!mt)
        return;
    free(mt->confusion);
    memset(mt, 0, sizeof *mt);
}

void sl_metrics_reset(sl_metrics_t *mt)
{
    if (mt->confusion)
        memset(mt->confusion, 0, mt->n_classes * mt->n_classes * sizeof(uint64_t));
    mt->examples = 0;
    mt->loss = mt->loss_sum = mt->accuracy = mt->macro_f1 = 0.0;
}

int sl_metrics_add(sl_metrics_t *mt, int64_t truth, int64_t predicted)
{
    const int64_t k = (int64_t)mt->n_classes;
    if (truth < 0 || truth >= k || predicted < 0 || predicted >= k)
        return sl_error(SL_ERANGE, "metrics: label pair (%lld, %lld) outside [0, %lld)", (long long)truth,
                        (long long)predicted, (long long)k);
    mt->confusion[(size_t)truth * mt->n_classes + (size_t)predicted]++;
    mt->examples++;
    return 0;
}

int sl_metrics_add_logits(sl_metrics_t *mt, const float *logits, const int32_t *labels, size_t B)
{
    const size_t K = mt->n_classes;
    for (size_t b = 0; b < B; b++) {
        const float *row = logits + b * K; /* (K) */
        size_t arg = 0;
        float mx = row[0];
        for (size_t k = 0; k < K; k++) {
            if (!isfinite(row[k]))
                return sl_error(SL_ENOTFINITE, "metrics: logits of example %zu are not finite", b);
            if (row[k] > mx) {
                mx = row[k];
                arg = k;
            }
        }
        int rc = sl_metrics_add(mt, labels[b], (int64_t)arg);
        if (rc)
            return rc;
        double s = 0.0;
        for (size_t k = 0; k < K; k++)
            s += exp((double)row[k] - (double)mx);
        mt->loss_sum += log(s) + (double)mx - (double)row[labels[b]];
    }
    return 0;
}

uint64_t sl_metrics_support(const sl_metrics_t *mt, size_t k)
{
    uint64_t s = 0;
    for (size_t j = 0; j < mt->n_classes; j++)
        s += mt->confusion[k * mt->n_classes + j];
    return s;
}

static uint64_t predicted_count(const sl_metrics_t *mt, size_t k)
{
    uint64_t s = 0;
    for (size_t i = 0; i < mt->n_classes; i++)
        s += mt->confusion[i * mt->n_classes + k];
    return s;
}

double sl_metrics_precision(const sl_metrics_t *mt, size_t k)
{
    uint64_t p = predicted_count(mt, k);
    return p ? (double)mt->confusion[k * mt->n_classes + k] / (double)p : 0.0;
}

double sl_metrics_recall(const sl_metrics_t *mt, size_t k)
{
    uint64_t s = sl_metrics_support(mt, k);
    return s ? (double)mt->confusion[k * mt->n_classes + k] / (double)s : 0.0;
}

double sl_metrics_f1(const sl_metrics_t *mt, size_t k)
{
    /* 2 tp / (2 tp + fp + fn) equals 2PR/(P+R) and is defined whenever the class occurs */
    uint64_t tp = mt->confusion[k * mt->n_classes + k];
    uint64_t denom = sl_metrics_support(mt, k) + predicted_count(mt, k);
    return denom ? 2.0 * (double)tp / (double)denom : 0.0;
}

void sl_metrics_finish(sl_metrics_t *mt)
{
    uint64_t correct = 0;
    double f1_sum = 0.0;
    size_t present = 0;
    for (size_t k = 0; k < mt->n_classes; k++) {
        correct += mt->confusion[k * mt->n_classes + k];
        if (sl_metrics_support(mt, k) + predicted_count(mt, k) > 0) {
            f1_sum += sl_metrics_f1(mt, k);
            present++;
        }
    }
    mt->accuracy = mt->examples ? (double)correct / (double)mt->examples : 0.0;
    mt->macro_f1 = present ? f1_sum / (double)present : 0.0;
    mt->loss = mt->examples ? mt->loss_sum / (double)mt->examples : 0.0;
}

int sl_metrics_merge(sl_metrics_t *a, const sl_metrics_t *b)
{
    if (a->n_classes != b->n_classes)
        return sl_error(SL_EMISMATCH, "metrics: cannot merge %zu-class and %zu-class counts", a->n_classes,
                        b->n_classes);
    for (size_t i = 0; i < a->n_classes * a->n_classes; i++)
        a->confusion[i] += b->confusion[i];
    a->examples += b->examples;
    a->loss_sum += b->loss_sum;
    return 0;
}
