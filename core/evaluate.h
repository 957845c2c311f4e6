/* core/evaluate: how good is a given trainable vector? Load it into a model and evaluate
 * on an example source, summarised as the wire's sl_eval_info_t. Shared by the
 * coordinator's centralized evaluation and the clients' local evaluation. */
#ifndef SL_EVALUATE_H
#define SL_EVALUATE_H

#include <stddef.h>

#include "core/batch.h"
#include "core/model.h"
#include "core/wire.h"

/* Copy `vec` (n floats: m's trainable vector) into m, evaluate on src (batch_size at a
 * time; 0 = 256) and fill out. SL_EMISMATCH if n differs from the model's vector. */
SL_NODISCARD int sl_evaluate_vector(sl_model_t *m, const float *vec, size_t n, const sl_example_source_t *src,
                                    size_t batch_size, sl_eval_info_t *out);

#endif
