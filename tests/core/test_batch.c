/* core/batch: value counts, schema validation, batch allocation. */
#include "core/batch.h"
#include "support/check.h"

int main(void)
{
    sl_schema_t s = {0};
    s.n_modalities = 3;
    s.n_classes = 6;
    s.modalities[0] = (sl_modality_t){"acc", SL_MOD_TIMESERIES, {128, 3, 0}};
    s.modalities[1] = (sl_modality_t){"cam", SL_MOD_IMAGE, {8, 8, 3}};
    s.modalities[2] = (sl_modality_t){"feat", SL_MOD_VECTOR, {20, 0, 0}};
    CHECK_EQ(sl_modality_values(&s.modalities[0]), 384);
    CHECK_EQ(sl_modality_values(&s.modalities[1]), 192);
    CHECK_EQ(sl_modality_values(&s.modalities[2]), 20);
    CHECK_EQ(sl_schema_validate(&s), 0);
    CHECK_EQ(sl_schema_find(&s, "cam"), 1);
    CHECK_EQ(sl_schema_find(&s, "gyro"), -1);

    sl_batch_t b;
    CHECK_EQ(sl_batch_init(&b, &s, 4), 0);
    CHECK(b.x[0] && b.x[1] && b.x[2] && b.present && b.labels);
    b.x[1][4 * 192 - 1] = 1.0f; /* last element is addressable */
    sl_batch_free(&b);
    sl_batch_free(&b); /* idempotent */

    sl_schema_t dup = s;
    snprintf(dup.modalities[2].name, SL_NAME_MAX, "acc");
    CHECK_EQ(sl_schema_validate(&dup), SL_EINVAL);
    CHECK_CONTAINS(sl_last_error(), "appears twice");
    sl_schema_t zero = s;
    zero.modalities[0].dims[1] = 0;
    CHECK_EQ(sl_schema_validate(&zero), SL_EINVAL);
    CHECK_CONTAINS(sl_last_error(), "zero dimension");
    sl_schema_t one = s;
    one.n_classes = 1;
    CHECK_EQ(sl_schema_validate(&one), SL_EINVAL);
    return check_summary("test_batch");
}
