/* core/metrics: confusion matrix, accuracy, macro-F1 and per-class precision/recall on
 * hand-computed examples. */
#include <math.h>

#include "core/metrics.h"
#include "support/check.h"

static void test_three_classes(void)
{
    /* truth 0 0 0 1 1 2 2 2 2 / predicted 0 0 1 1 2 2 2 0 2
     * confusion rows (true): [2 1 0] [0 1 1] [1 0 3]
     * precision = recall = F1 = 2/3, 1/2, 3/4; accuracy 6/9; macro-F1 23/36 */
    const int t[9] = {0, 0, 0, 1, 1, 2, 2, 2, 2}, p[9] = {0, 0, 1, 1, 2, 2, 2, 0, 2};
    sl_metrics_t mt;
    CHECK_EQ(sl_metrics_init(&mt, 3), 0);
    for (int i = 0; i < 9; i++)
        CHECK_EQ(sl_metrics_add(&mt, t[i], p[i]), 0);
    sl_metrics_finish(&mt);
    const uint64_t conf[9] = {2, 1, 0, 0, 1, 1, 1, 0, 3};
    for (int i = 0; i < 9; i++)
        CHECK_EQ(mt.confusion[i], conf[i]);
    CHECK_EQ(mt.examples, 9);
    CHECK_NEAR(mt.accuracy, 6.0 / 9.0, 1e-15);
    CHECK_NEAR(mt.macro_f1, 23.0 / 36.0, 1e-15);
    const double pr[3] = {2.0 / 3, 0.5, 0.75};
    for (size_t k = 0; k < 3; k++) {
        CHECK_NEAR(sl_metrics_precision(&mt, k), pr[k], 1e-15);
        CHECK_NEAR(sl_metrics_recall(&mt, k), pr[k], 1e-15);
        CHECK_NEAR(sl_metrics_f1(&mt, k), pr[k], 1e-15);
    }
    CHECK_EQ(sl_metrics_support(&mt, 2), 4);
    CHECK_EQ(sl_metrics_add(&mt, 3, 0), SL_ERANGE);
    CHECK_CONTAINS(sl_last_error(), "outside [0, 3)");
    CHECK_EQ(sl_metrics_add(&mt, 0, -1), SL_ERANGE);

    /* merge doubles every count, ratios unchanged */
    sl_metrics_t copy;
    CHECK_EQ(sl_metrics_init(&copy, 3), 0);
    CHECK_EQ(sl_metrics_merge(&copy, &mt), 0);
    CHECK_EQ(sl_metrics_merge(&copy, &mt), 0);
    sl_metrics_finish(&copy);
    CHECK_EQ(copy.examples, 18);
    CHECK_EQ(copy.confusion[8], 6);
    CHECK_NEAR(copy.macro_f1, 23.0 / 36.0, 1e-15);
    sl_metrics_t other;
    CHECK_EQ(sl_metrics_init(&other, 4), 0);
    CHECK_EQ(sl_metrics_merge(&other, &mt), SL_EMISMATCH);
    sl_metrics_free(&other);
    sl_metrics_free(&copy);

    sl_metrics_reset(&mt);
    CHECK_EQ(mt.examples, 0);
    CHECK_EQ(mt.confusion[0], 0);
    sl_metrics_free(&mt);
    CHECK(mt.confusion == NULL);
    sl_metrics_free(NULL);
}

static void test_absent_and_unpredicted(void)
{
    /* 4 classes; class 3 never occurs (left out of the macro average), class 1 is never
     * predicted (F1 0). truth 0 1 1 2, predicted 0 0 0 2:
     * F1(0) = 2*1/(1+3) = 0.5, F1(1) = 0, F1(2) = 1 -> macro (0.5+0+1)/3 = 0.5; acc 0.5 */
    sl_metrics_t mt;
    CHECK_EQ(sl_metrics_init(&mt, 4), 0);
    const int t[4] = {0, 1, 1, 2}, p[4] = {0, 0, 0, 2};
    for (int i = 0; i < 4; i++)
        CHECK_EQ(sl_metrics_add(&mt, t[i], p[i]), 0);
    sl_metrics_finish(&mt);
    CHECK_NEAR(mt.accuracy, 0.5, 1e-15);
    CHECK_NEAR(mt.macro_f1, 0.5, 1e-15);
    CHECK_NEAR(sl_metrics_precision(&mt, 0), 1.0 / 3.0, 1e-15);
    CHECK_NEAR(sl_metrics_recall(&mt, 0), 1.0, 1e-15);
    CHECK_NEAR(sl_metrics_precision(&mt, 1), 0.0, 0);
    CHECK_NEAR(sl_metrics_recall(&mt, 3), 0.0, 0);
    sl_metrics_free(&mt);
    CHECK_EQ(sl_metrics_init(&mt, 0), SL_EINVAL);
}

static void test_logits(void)
{
    /* logits (2, 3): argmax 0 and 2; cross-entropy log(1+e^-1+e^-2) and log(1+2e^-3) */
    const float logits[6] = {2, 1, 0, 0, 0, 3};
    const int32_t labels[2] = {0, 2};
    sl_metrics_t mt;
    CHECK_EQ(sl_metrics_init(&mt, 3), 0);
    CHECK_EQ(sl_metrics_add_logits(&mt, logits, labels, 2), 0);
    sl_metrics_finish(&mt);
    CHECK_NEAR(mt.accuracy, 1.0, 0);
    const double ce = 0.5 * (log(1 + exp(-1.0) + exp(-2.0)) + log(1 + 2 * exp(-3.0)));
    CHECK_NEAR(mt.loss, ce, 1e-12);
    /* ties go to the first index; a wrong prediction counts off-diagonal */
    const float tie[3] = {1, 1, 1};
    const int32_t lab1[1] = {1};
    CHECK_EQ(sl_metrics_add_logits(&mt, tie, lab1, 1), 0);
    CHECK_EQ(mt.confusion[1 * 3 + 0], 1);
    const float bad[3] = {NAN, 0, 0};
    CHECK_EQ(sl_metrics_add_logits(&mt, bad, lab1, 1), SL_ENOTFINITE);
    sl_metrics_free(&mt);
}

int main(void)
{
    test_three_classes();
    test_absent_and_unpredicted();
    test_logits();
    return check_summary("test_metrics");
}
