/* model_maxdiff A.safetensors B.safetensors: prints max |a - b| over every coordinate of
 * two models with the same tensors (names, shapes), computed in double, as "%.9g".
 * Exit 0, or 1 with a message when a file cannot be read or the tensor sets differ.
 * A helper of test_secagg_equiv.sh (compare a run with SecAgg and one without). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/safetensors.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: model_maxdiff A.safetensors B.safetensors\n");
        return 2;
    }
    sl_st_file_t a = {0}, b = {0};
    int rc = sl_st_read(&a, argv[1]);
    if (!rc)
        rc = sl_st_read(&b, argv[2]);
    if (rc) {
        fprintf(stderr, "model_maxdiff: %s\n", sl_last_error());
        sl_st_file_free(&a);
        return 1;
    }
    double max = 0;
    int ok = a.n_tensors == b.n_tensors;
    if (!ok)
        fprintf(stderr, "model_maxdiff: %zu tensors vs %zu\n", a.n_tensors, b.n_tensors);
    for (size_t i = 0; ok && i < a.n_tensors; i++) {
        const sl_st_tensor_t *ta = &a.tensors[i];
        const sl_st_tensor_t *tb = sl_st_find(&b, ta->name);
        if (!tb || tb->ndim != ta->ndim || memcmp(tb->shape, ta->shape, ta->ndim * sizeof ta->shape[0])) {
            fprintf(stderr, "model_maxdiff: tensor %s missing or of another shape in %s\n", ta->name,
                    argv[2]);
            ok = 0;
            break;
        }
        for (size_t j = 0; j < ta->numel; j++) {
            double d = fabs((double)ta->data[j] - (double)tb->data[j]);
            if (!(d <= max)) /* NaN propagates as a failure below */
                max = d;
        }
    }
    sl_st_file_free(&a);
    sl_st_file_free(&b);
    if (!ok)
        return 1;
    if (isnan(max)) {
        fprintf(stderr, "model_maxdiff: NaN in a model\n");
        return 1;
    }
    printf("%.9g\n", max);
    return 0;
}
