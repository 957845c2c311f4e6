/* client/dp: clip and noise the delta per the TASK's DP fields. */
#include "client/dp.h"

#include "privacy/dp/clip.h"
#include "privacy/dp/mechanism.h"
#include "privacy/dp/noise.h"

#include <math.h>
#include <string.h>

int sl_dp_client_apply(const sl_config_t *cfg, const sl_client_task_t *task, float *delta, size_t dim,
                       double *norm_out)
{
    if (norm_out)
        *norm_out = NAN;
    int mode = task->info.dp_mode;
    if (mode == SL_DP_OFF || mode == SL_DP_CENTRAL)
        return 0;
    if (mode != SL_DP_DISTRIBUTED && mode != SL_DP_LOCAL)
        return sl_error(SL_EPROTO, "dp: task of round %llu has unknown dp_mode %d",
                        (unsigned long long)task->round, mode);
    if (task->info.secagg && mode == SL_DP_DISTRIBUTED)
        return 0; /* the SecAgg hook clips and adds the discrete share (sl_dp_client_secagg_share) */
    if (task->info.secagg)
        return sl_error(SL_ENOTSUP,
                        "dp: local DP with secure aggregation is not supported (each report must carry "
                        "the full noise on its own); the coordinator should have refused this run");
    sl_dp_round_t r;
    int rc = sl_dp_round_for_client(mode, task->info.dp_clip, task->info.dp_noise, 0, 0.0, &r);
    if (rc)
        return rc;
    sl_dp_noise_t ns;
    memset(&ns, 0, sizeof ns);
    if ((rc = sl_dp_noise_init(&ns, cfg, task->round, task->client_id)))
        return rc;
    double norm = NAN;
    rc = sl_dp_client_privatize(&r, &ns, delta, dim, &norm, NULL); /* delta (dim) clipped + noised in place */
    sl_dp_noise_free(&ns);
    if (rc == SL_ENOTFINITE)
        return sl_error(SL_EINVAL, "dp: client %llu: the trained delta is not finite",
                        (unsigned long long)task->client_id);
    if (rc)
        return rc;
    if (norm_out)
        *norm_out = norm;
    return 0;
}

int sl_dp_client_secagg_share(const sl_config_t *cfg, const sl_client_task_t *task, double scale, float *delta,
                              int32_t *noise, size_t dim, double *norm_out)
{
    if (norm_out)
        *norm_out = NAN;
    if (task->info.dp_mode != SL_DP_DISTRIBUTED || !task->info.secagg)
        return sl_error(SL_EINVAL, "dp: discrete noise shares are for distributed DP with secure aggregation "
                                   "(task has dp_mode %d, secagg %d)",
                        task->info.dp_mode, task->info.secagg);
    sl_dp_round_t r;
    int rc = sl_dp_round_for_client(task->info.dp_mode, task->info.dp_clip, task->info.dp_noise, 0, 0.0, &r);
    if (rc)
        return rc;
    double sigma = r.client_update_std * scale; /* the share's std in quantized units */
    if (!(scale > 0) || !isfinite(scale) || !(sigma == 0.0 || sigma >= 1.0))
        return sl_error(SL_ERANGE, "dp: noise share std %g in quantized units (scale %g) is below 1: the sum of "
                                   "the shares would not be a discrete Gaussian; use a finer quantization",
                        sigma, scale);
    double norm = NAN;
    if ((rc = sl_dp_clip(delta, dim, r.clip, &norm))) /* delta (dim) clipped in place */
        return rc == SL_ENOTFINITE ? sl_error(SL_EINVAL, "dp: client %llu: the trained delta is not finite",
                                              (unsigned long long)task->client_id)
                                   : rc;
    sl_dp_noise_t ns;
    memset(&ns, 0, sizeof ns);
    if ((rc = sl_dp_noise_init(&ns, cfg, task->round, task->client_id)))
        return rc;
    rc = sl_dp_discrete_gaussian_i32(&ns, noise, dim, sigma); /* noise (dim) ~ N_Z(0, sigma^2) */
    sl_dp_noise_free(&ns);
    if (rc)
        return rc;
    if (norm_out)
        *norm_out = norm;
    return 0;
}
