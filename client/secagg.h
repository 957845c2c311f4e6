/* client/secagg: the client half of SecAgg+ (privacy/secagg) behind the sl_client_t
 * `masked` and `secagg` hooks.
 *
 *   sl_client_secagg_new(&cs, cfg)
 *   co.masked = sl_client_secagg_masked; co.secagg = sl_client_secagg_on_message; co.ctx -> ...
 *
 * The hooks take the sl_client_secagg_t as ctx; when the caller's ctx is something else,
 * call them from its own hook functions with the sl_client_secagg_t.
 * SETUP (the first SECAGG_DOWN of a round) carries this client's index, n and B: the
 * client starts the SecAgg client. The delta handed to `masked` (which may come before or
 * after SETUP) is then quantized with sl_quant_encode (stochastic rounding from the OS
 * CSPRNG, weight 1) and set as input. The quantizer is built at that point, from n, the
 * TASK and [secagg] bits, exactly as the coordinator builds it (coordinator/secagg.h):
 *   dp_mode off          range [dp] clip, no headroom;
 *   dp_mode distributed  sl_ddg_quant_init(TASK dp_clip, TASK dp_noise, ...) (privacy/dp/ddg.h),
 *                        the delta is clipped to dp_clip and this client's discrete Gaussian
 *                        share (sl_dp_client_secagg_share) is added after rounding, before
 *                        masking; the noise source as in client/dp.h;
 *   other modes          refused (the coordinator refuses them with secagg).
 * If its B differs from SETUP's the input is refused (SL_EMISMATCH, logged) and the client
 * leaves the round: the coordinator drops it at the masked-input deadline.
 * Every reply goes to the coordinator with sl_client_send_secagg (stage = the SecAgg
 * message type); SecAgg messages between clients are relayed by the coordinator (they are
 * end-to-end encrypted). An ABORT ends the round for this client quietly; a rejected
 * message is logged and ignored (the coordinator drops this client at the stage deadline).
 */
#ifndef SL_CLIENT_SECAGG_H
#define SL_CLIENT_SECAGG_H

#include "client/client.h"
#include "core/config.h"
#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sl_client_secagg sl_client_secagg_t;

/* cfg is copied ([dp] clip, [secagg] bits; run.seed and dp.insecure_seeded_noise choose
 * the DP noise source). */
SL_NODISCARD int sl_client_secagg_new(sl_client_secagg_t **out, const sl_config_t *cfg);
/* Wipes the round's secrets; NULL-safe, nulls *cs. */
void sl_client_secagg_destroy(sl_client_secagg_t **cs);

/* The `masked` hook: ctx = sl_client_secagg_t. delta: (dim) floats, copied. */
int sl_client_secagg_masked(void *ctx, sl_client_t *c, const sl_client_task_t *task, const float *delta,
                            size_t dim);
/* The `secagg` hook: ctx = sl_client_secagg_t; one SECAGG_DOWN blob of `round`. */
int sl_client_secagg_on_message(void *ctx, sl_client_t *c, uint64_t round, uint32_t stage, const uint8_t *blob,
                                size_t len);

#endif
