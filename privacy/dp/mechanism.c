/* privacy/dp/mechanism: per-mode noise placement and accounting. */
#include "privacy/dp/mechanism.h"

#include <math.h>
#include <string.h>

#include "privacy/dp/clip.h"

double sl_dp_party_noise_std(int mode, sl_dp_party_t party, double z, double sensitivity, int64_t min_clients)
{
    if (!(z >= 0) || !isfinite(z) || !(sensitivity >= 0) || !isfinite(sensitivity))
        return NAN;
    if (party != SL_DP_PARTY_COORDINATOR && party != SL_DP_PARTY_CLIENT)
        return NAN;
    int client = party == SL_DP_PARTY_CLIENT;
    switch (mode) {
    case SL_DP_OFF:
        return 0;
    case SL_DP_CENTRAL:
        return client ? 0 : z * sensitivity;
    case SL_DP_DISTRIBUTED:
        if (min_clients < 1)
            return NAN;
        /* r >= m_min shares of variance (z s)^2 / m_min sum to at least (z s)^2 */
        return client ? z * sensitivity / sqrt((double)min_clients) : 0;
    case SL_DP_LOCAL:
        return client ? z * sensitivity : 0;
    default:
        return NAN;
    }
}

double sl_dp_effective_noise_multiplier(int mode, double z, int64_t min_clients, int64_t reported)
{
    if (!(z >= 0) || !isfinite(z) || reported < 0)
        return NAN;
    switch (mode) {
    case SL_DP_OFF:
        return 0;
    case SL_DP_CENTRAL:
    case SL_DP_LOCAL:
        return z;
    case SL_DP_DISTRIBUTED:
        if (min_clients < 1)
            return NAN;
        /* Var(sum of r shares) = r (z C)^2 / m_min = (z sqrt(r / m_min) C)^2 */
        return z * sqrt((double)reported / (double)min_clients);
    default:
        return NAN;
    }
}

int sl_dp_adaptive_update_noise_multiplier(double z, double count_stddev, double *z_update)
{
    if (!(z >= 0) || !isfinite(z) || !(count_stddev >= 0) || !isfinite(count_stddev))
        return sl_error(SL_EINVAL, "dp: noise multiplier %g and count stddev %g must be finite and >= 0", z,
                        count_stddev);
    if (z == 0) {
        *z_update = 0;
        return 0;
    }
    /* Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially Private Learning with
     * Adaptive Clipping", Section 3.1: releasing the update sum (sensitivity C, noise
     * z_u C) and the centered clipped count (sensitivity 1/2, noise sigma_b) together is
     * a Gaussian mechanism with 1/z^2 = 1/z_u^2 + 1/(2 sigma_b)^2, so
     *     z_u = (z^-2 - (2 sigma_b)^-2)^(-1/2),
     * defined only when 2 sigma_b > z. */
    if (!(2 * count_stddev > z))
        return sl_error(SL_ECONFIG,
                        "dp: adaptive clipping needs the count noise multiplier (2 sigma_b = %g, "
                        "[dp] count_noise_multiplier) to exceed the noise multiplier z = %g",
                        2 * count_stddev, z);
    *z_update = pow(pow(z, -2.0) - pow(2 * count_stddev, -2.0), -0.5);
    return 0;
}

int sl_dp_round_plan(const sl_config_t *cfg, double clip, sl_dp_round_t *out)
{
    memset(out, 0, sizeof *out);
    int mode = cfg->dp.mode;
    if (mode != SL_DP_OFF && mode != SL_DP_CENTRAL && mode != SL_DP_DISTRIBUTED && mode != SL_DP_LOCAL)
        return sl_error(SL_ECONFIG, "dp: unknown mode %d", mode);
    out->mode = mode;
    out->min_clients = cfg->federation.min_clients;
    if (mode == SL_DP_OFF)
        return 0;
    if (!(clip > 0) || !isfinite(clip))
        return sl_error(SL_EINVAL, "dp: clip norm %g must be finite and > 0", clip);
    double z = cfg->dp.noise_multiplier;
    if (!(z >= 0) || !isfinite(z))
        return sl_error(SL_ECONFIG, "dp: noise multiplier %g must be finite and >= 0", z);
    if (mode == SL_DP_DISTRIBUTED && out->min_clients < 1)
        return sl_error(SL_ECONFIG, "dp: distributed mode needs [federation] min_clients >= 1");
    out->clip = clip;
    out->noise_multiplier = z;
    out->update_noise_multiplier = z;
    out->adaptive = cfg->dp.adaptive_clip != 0;
    if (out->adaptive) {
        out->count_stddev = cfg->dp.count_noise_multiplier / 2.0;
        int rc = sl_dp_adaptive_update_noise_multiplier(z, out->count_stddev, &out->update_noise_multiplier);
        if (rc)
            return rc;
        out->coordinator_count_std =
            sl_dp_party_noise_std(mode, SL_DP_PARTY_COORDINATOR, 1.0, out->count_stddev, out->min_clients);
        out->client_count_std =
            sl_dp_party_noise_std(mode, SL_DP_PARTY_CLIENT, 1.0, out->count_stddev, out->min_clients);
    }
    double zu = out->update_noise_multiplier;
    out->coordinator_update_std = sl_dp_party_noise_std(mode, SL_DP_PARTY_COORDINATOR, zu, clip, out->min_clients);
    out->client_update_std = sl_dp_party_noise_std(mode, SL_DP_PARTY_CLIENT, zu, clip, out->min_clients);
    return 0;
}

double sl_dp_round_client_noise_multiplier(const sl_dp_round_t *r)
{
    if (r->mode == SL_DP_OFF || !(r->clip > 0))
        return 0;
    return r->client_update_std / r->clip;
}

int sl_dp_round_for_client(int mode, double clip, double client_noise_multiplier, int adaptive_flag,
                           double client_count_std, sl_dp_round_t *out)
{
    memset(out, 0, sizeof *out);
    if (mode != SL_DP_OFF && mode != SL_DP_CENTRAL && mode != SL_DP_DISTRIBUTED && mode != SL_DP_LOCAL)
        return sl_error(SL_EPROTO, "dp: task names an unknown DP mode %d", mode);
    out->mode = mode;
    if (mode == SL_DP_OFF)
        return 0;
    if (!(clip > 0) || !isfinite(clip))
        return sl_error(SL_EPROTO, "dp: task clip norm %g must be finite and > 0", clip);
    if (!(client_noise_multiplier >= 0) || !isfinite(client_noise_multiplier))
        return sl_error(SL_EPROTO, "dp: task noise multiplier %g must be finite and >= 0", client_noise_multiplier);
    if (!(client_count_std >= 0) || !isfinite(client_count_std))
        return sl_error(SL_EPROTO, "dp: task count noise %g must be finite and >= 0", client_count_std);
    if (mode == SL_DP_CENTRAL && (client_noise_multiplier > 0 || client_count_std > 0))
        return sl_error(SL_EPROTO, "dp: central mode but the task asks the client for noise");
    out->clip = clip;
    out->client_update_std = client_noise_multiplier * clip;
    out->client_count_std = client_count_std;
    out->adaptive = adaptive_flag != 0 || client_count_std > 0;
    return 0;
}

int sl_dp_client_privatize(const sl_dp_round_t *r, sl_dp_noise_t *ns, float *update, size_t n, double *norm_out,
                           double *count_value)
{
    if (count_value)
        *count_value = 0;
    if (r->mode == SL_DP_OFF) {
        if (norm_out)
            *norm_out = sl_dp_l2_norm(update, n);
        return 0;
    }
    double norm;
    int rc = sl_dp_clip(update, n, r->clip, &norm);
    if (rc)
        return rc;
    if (norm_out)
        *norm_out = norm;
    rc = sl_dp_add_gaussian(ns, update, n, r->client_update_std);
    if (rc)
        return rc;
    if (r->adaptive && count_value)
        *count_value = sl_dp_clip_count_value(norm, r->clip) + sl_dp_gaussian(ns, r->client_count_std);
    return 0;
}

int sl_dp_coordinator_finish_sum(const sl_dp_round_t *r, sl_dp_noise_t *ns, float *sum, size_t n)
{
    return sl_dp_add_gaussian(ns, sum, n, r->coordinator_update_std);
}

int sl_dp_coordinator_finish_sum_f64(const sl_dp_round_t *r, sl_dp_noise_t *ns, double *sum, size_t n)
{
    return sl_dp_add_gaussian_f64(ns, sum, n, r->coordinator_update_std);
}

int sl_dp_coordinator_finish_count(const sl_dp_round_t *r, sl_dp_noise_t *ns, double *count_sum)
{
    if (!isfinite(*count_sum))
        return sl_error(SL_ENOTFINITE, "dp: clipped-count sum is not finite");
    if (r->adaptive)
        *count_sum += sl_dp_gaussian(ns, r->coordinator_count_std);
    return 0;
}

int sl_dp_round_accounting(const sl_dp_round_t *r, double q, int64_t reported, double *q_out, double *z_out)
{
    if (!(q >= 0 && q <= 1))
        return sl_error(SL_EINVAL, "dp: sampling rate %g is not in [0, 1]", q);
    if (reported < 0)
        return sl_error(SL_EINVAL, "dp: %lld updates reported", (long long)reported);
    switch (r->mode) {
    case SL_DP_OFF:
        *q_out = 0;
        *z_out = 0;
        return 0;
    case SL_DP_CENTRAL:
        *q_out = q;
        *z_out = r->noise_multiplier;
        return 0;
    case SL_DP_DISTRIBUTED:
        if (reported < r->min_clients)
            return sl_error(SL_EQUORUM,
                            "dp: only %lld of the %lld noise shares needed arrived; the sum is under-noised "
                            "and must not be released",
                            (long long)reported, (long long)r->min_clients);
        *q_out = q;
        *z_out = sl_dp_effective_noise_multiplier(r->mode, r->noise_multiplier, r->min_clients, reported);
        return 0;
    case SL_DP_LOCAL:
        *q_out = 1.0;
        *z_out = r->noise_multiplier;
        return 0;
    default:
        return sl_error(SL_EINVAL, "dp: unknown mode %d", r->mode);
    }
}
