/* client/dp: user-level differential privacy on the client, the `privatize` step.
 *
 * Called on the delta after local training, before it leaves (sl_client_opts_t.privatize
 * in client/client.h). The TASK says what to do (sl_task_info_t dp_mode, dp_clip,
 * dp_noise, filled by the coordinator's coordinator/dp.h):
 *   off          nothing;
 *   central      nothing: the coordinator clips (it needs the pre-clip norm for adaptive
 *                clipping) and adds the noise; central mode trusts the coordinator;
 *   distributed  clip to C, add this client's share N(0, (dp_noise C)^2 I); with secagg
 *                nothing here: the SecAgg hook clips, quantizes and adds a discrete share;
 *   local        clip to C, add N(0, (dp_noise C)^2 I) (the full noise).
 * The weight stays the example count on the wire; the DP aggregator ignores it (uniform
 * weights under DP).
 * Noise source: sl_dp_noise_init(&ns, cfg, round, client_id): the OS CSPRNG, or the
 * seeded test stream when dp.insecure_seeded_noise is set.
 */
#ifndef SL_CLIENT_DP_H
#define SL_CLIENT_DP_H

#include "client/client.h"
#include "core/config.h"
#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

/* Privatize `delta` (dim,) in place for `task`. cfg is borrowed (run.seed and
 * dp.insecure_seeded_noise choose the noise source). *norm_out (may be NULL) receives the
 * pre-clip norm (NaN when nothing was clipped here). A distributed-DP task with secagg
 * is left alone here (0): the SecAgg hook (client/secagg.h) clips and adds the discrete
 * share with sl_dp_client_secagg_share. SL_EPROTO for task DP fields a coordinator could
 * not have sent; SL_ENOTSUP for local DP with a SecAgg task; SL_EINVAL for a non-finite
 * delta (left untouched). */
SL_NODISCARD int sl_dp_client_apply(const sl_config_t *cfg, const sl_client_task_t *task, float *delta,
                                    size_t dim, double *norm_out);

/* For the SecAgg path (a TASK with dp_mode distributed and secagg set; the hook the SecAgg
 * client integration calls before quantizing): clip `delta` (dim,) in place to the task's
 * C, and fill `noise` (dim,) with this client's discrete Gaussian share
 * N_Z(0, (scale * s)^2), s = dp_noise * C the client's noise std, in quantized units
 * (`scale` = the quantizer's s in privacy/secagg/quantize.h): pass it as sl_quant_encode's
 * noise argument with weight 1. Noise source as sl_dp_client_apply. SL_ERANGE if
 * 0 < scale * s < 1 (the sum of the shares would no longer be close to a discrete Gaussian:
 * use a finer quantization scale; s = 0, no noise, fills zeros); SL_EINVAL unless the task is distributed DP with
 * secagg; SL_EPROTO for impossible DP fields. *norm_out as sl_dp_client_apply. */
SL_NODISCARD int sl_dp_client_secagg_share(const sl_config_t *cfg, const sl_client_task_t *task, double scale,
                                           float *delta, int32_t *noise, size_t dim, double *norm_out);

#endif
