/* core/layout: the identity of a model's exchanged vector.
 *
 * Coordinator and clients compare this hash in HELLO/WELCOME, so two builds or configs
 * whose trainable tensors differ (names, shapes, order) never exchange updates.
 */
#ifndef SL_LAYOUT_H
#define SL_LAYOUT_H

#include <stdint.h>

#include "core/model.h"

/* BLAKE2b-64 (core/wire.h's layout hash) over every trainable tensor of `m`, in buffer
 * order, with offsets relative to the trainable vector. Never 0. */
uint64_t sl_model_layout_hash(const sl_model_t *m);

#endif
