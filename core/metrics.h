/* core/metrics: classification metrics from a confusion matrix.
 *
 * Accumulate (true, predicted) pairs, or logits, into a (n_classes, n_classes) confusion
 * matrix (row = true class, column = predicted), then read accuracy, macro-F1 and
 * per-class precision / recall / F1 from it. Macro-F1 averages F1 over the classes that
 * occur as a true or a predicted label (scikit-learn's default label set), with F1 = 0
 * for a class never predicted correctly.
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
    size_t n_classes;
    size_t examples;
    double loss;       /* mean loss over examples (as accumulated by the caller) */
    double accuracy;   /* set by sl_metrics_finish */
    double macro_f1;   /* set by sl_metrics_finish */
    uint64_t *confusion; /* (n_classes, n_classes) row = true */
    double loss_sum;   /* sum of per-example losses accumulated so far */
} sl_metrics_t;

/* Zeroed metrics for n_classes >= 1 (owns the confusion matrix; free with sl_metrics_free). */
SL_NODISCARD int sl_metrics_init(sl_metrics_t *mt, size_t n_classes);
void sl_metrics_free(sl_metrics_t *mt);
/* Back to zero counts, keeping n_classes and the allocation. */
void sl_metrics_reset(sl_metrics_t *mt);

/* Count one example; SL_ERANGE if a label is outside [0, n_classes). */
SL_NODISCARD int sl_metrics_add(sl_metrics_t *mt, int64_t truth, int64_t predicted);

/* Count B examples from logits (B, n_classes) (argmax, first index on ties) and labels
 * (B); adds sum over the batch of the cross-entropy -log softmax(logits)[label] to loss_sum. */
SL_NODISCARD int sl_metrics_add_logits(sl_metrics_t *mt, const float *logits, const int32_t *labels, size_t B);

/* Compute loss (loss_sum / examples), accuracy and macro_f1 from the counts. */
void sl_metrics_finish(sl_metrics_t *mt);

/* Per-class figures from the counts; 0 when undefined (no predictions / no support). */
double sl_metrics_precision(const sl_metrics_t *mt, size_t k);
double sl_metrics_recall(const sl_metrics_t *mt, size_t k);
double sl_metrics_f1(const sl_metrics_t *mt, size_t k);
uint64_t sl_metrics_support(const sl_metrics_t *mt, size_t k); /* examples whose true class is k */

/* Merge the counts of `b` into `a` (same n_classes). */
SL_NODISCARD int sl_metrics_merge(sl_metrics_t *a, const sl_metrics_t *b);

#endif
