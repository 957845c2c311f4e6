/* client/dp: clip and noise the delta per the TASK's DP fields. */
#include "client/dp.h"

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
    if (task->info.secagg)
        return sl_error(SL_ENOTSUP,
                        "dp: client-side noise with secure aggregation must be discrete and added "
                        "inside the SecAgg path, which this client does not do");
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
