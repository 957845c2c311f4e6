/* core/error: every code has a distinct name and description; details round-trip. */
#include "core/error.h"
#include "support/check.h"

static const int codes[] = {
#define X(name, value, desc) value,
    SL_ERROR_TABLE(X)
#undef X
};

int main(void)
{
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        CHECK(strcmp(sl_strerror(codes[i]), "unknown error") != 0);
        CHECK(strncmp(sl_error_name(codes[i]), "SL_", 3) == 0);
        CHECK(codes[i] <= 0);
        for (size_t j = 0; j < i; j++) {
            CHECK(codes[i] != codes[j]);
            CHECK(strcmp(sl_error_name(codes[i]), sl_error_name(codes[j])) != 0);
        }
    }
    CHECK(strcmp(sl_error_name(SL_ECONFIG), "SL_ECONFIG") == 0);
    CHECK(strcmp(sl_strerror(12345), "unknown error") == 0);

    /* sl_error returns its code and keeps the formatted detail. */
    CHECK_EQ(sl_error(SL_EFORMAT, "file %s: bad magic %d", "x.bin", 7), SL_EFORMAT);
    CHECK(strcmp(sl_last_error(), "file x.bin: bad magic 7") == 0);
    CHECK_EQ(sl_error_wrap(SL_EFORMAT, "loading %s", "model"), SL_EFORMAT);
    CHECK(strcmp(sl_last_error(), "loading model: file x.bin: bad magic 7") == 0);
    sl_error_clear();
    CHECK(strcmp(sl_last_error(), "") == 0);
    /* Wrapping with no detail falls back to the code's description. */
    (void)sl_error_wrap(SL_ENOMEM, "step %d", 3);
    CHECK(strcmp(sl_last_error(), "step 3: out of memory") == 0);
    return check_summary("test_error");
}
