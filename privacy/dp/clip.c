/* privacy/dp/clip: L2 clipping and adaptive clipping (Andrew et al. 2021). */
#include "privacy/dp/clip.h"

#include "core/bytes.h"

#include <math.h>
#include <string.h>

double sl_dp_l2_norm(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) /* x is (n,) */
        s += (double)x[i] * (double)x[i];
    return sqrt(s);
}

int sl_dp_clip(float *x, size_t n, double clip, double *norm_out)
{
    if (!(clip > 0) || !isfinite(clip))
        return sl_error(SL_EINVAL, "dp: clip norm %g must be finite and > 0", clip);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return sl_error(SL_ENOTFINITE, "dp: update element %zu is not finite", i);
    double norm = sl_dp_l2_norm(x, n);
    if (norm_out)
        *norm_out = norm;
    if (!isfinite(norm)) /* finite floats whose squares overflow a double cannot happen */
        return sl_error(SL_ENOTFINITE, "dp: update norm is not finite");
    if (norm <= clip)
        return 0; /* unchanged, bit for bit */
    double scale = clip / norm;
    for (int pass = 0; pass < 8; pass++) {
        for (size_t i = 0; i < n; i++) /* x (n,) <- x * scale */
            x[i] = (float)((double)x[i] * scale);
        double after = sl_dp_l2_norm(x, n);
        if (after <= clip)
            return 0;
        /* float rounding pushed the norm just above C: shrink by a hair more */
        scale = clip / after * (1.0 - 0x1.0p-23);
    }
    return sl_error(SL_ERANGE, "dp: could not clip the update below %g", clip);
}

static int check_adaptive(double clip, double gamma, double lr, double sb, double m)
{
    if (!(clip > 0) || !isfinite(clip))
        return sl_error(SL_EINVAL, "dp: adaptive clip: clip %g must be finite and > 0", clip);
    if (!(gamma >= 0 && gamma <= 1))
        return sl_error(SL_EINVAL, "dp: adaptive clip: target quantile %g is not in [0, 1]", gamma);
    if (!(lr >= 0) || !isfinite(lr))
        return sl_error(SL_EINVAL, "dp: adaptive clip: learning rate %g must be finite and >= 0", lr);
    if (!(sb >= 0) || !isfinite(sb))
        return sl_error(SL_EINVAL, "dp: adaptive clip: count stddev %g must be finite and >= 0", sb);
    if (!(m > 0) || !isfinite(m))
        return sl_error(SL_EINVAL, "dp: adaptive clip: expected clients %g must be finite and > 0", m);
    return 0;
}

int sl_dp_adaptive_clip_init(sl_dp_adaptive_clip_t *ac, double initial_clip, double target_quantile, double lr,
                             double count_stddev, double expected_clients)
{
    int rc = check_adaptive(initial_clip, target_quantile, lr, count_stddev, expected_clients);
    if (rc)
        return rc;
    memset(ac, 0, sizeof *ac);
    ac->clip = initial_clip;
    ac->target_quantile = target_quantile;
    ac->lr = lr;
    ac->count_stddev = count_stddev;
    ac->expected_clients = expected_clients;
    ac->rounds = 0;
    ac->last_estimate = NAN;
    return 0;
}

int sl_dp_adaptive_clip_init_config(sl_dp_adaptive_clip_t *ac, const sl_config_t *cfg, double expected_clients)
{
    return sl_dp_adaptive_clip_init(ac, cfg->dp.clip, cfg->dp.target_quantile, cfg->dp.clip_lr,
                                    cfg->dp.count_noise_multiplier / 2.0, expected_clients);
}

double sl_dp_clip_count_value(double norm, double clip) { return norm <= clip ? 0.5 : -0.5; }

int sl_dp_adaptive_clip_update(sl_dp_adaptive_clip_t *ac, double noised_sum, double *quantile_estimate)
{
    if (!isfinite(noised_sum))
        return sl_error(SL_ENOTFINITE, "dp: adaptive clip: the clipped-count sum is not finite");
    /* Andrew et al. 2021, Algorithm 1: b_bar = (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / m + 1/2,
     * C <- C exp(-eta (b_bar - gamma)). */
    double b_bar = noised_sum / ac->expected_clients + 0.5;
    double next = ac->clip * exp(-ac->lr * (b_bar - ac->target_quantile));
    if (!(next > 0) || !isfinite(next))
        return sl_error(SL_ERANGE, "dp: adaptive clip: the clip norm left the floating-point range (%g)", next);
    ac->clip = next;
    ac->last_estimate = b_bar;
    ac->rounds++;
    if (quantile_estimate)
        *quantile_estimate = b_bar;
    return 0;
}

/* ---- checkpoint ---------------------------------------------------------------------- */

#define AC_MAGIC "SLAC"
#define AC_VERSION 1u

int sl_dp_adaptive_clip_encode(const sl_dp_adaptive_clip_t *ac, uint8_t *buf, size_t cap, size_t *len)
{
    if (cap < SL_DP_ADAPTIVE_CLIP_BYTES)
        return sl_error(SL_ERANGE, "dp: adaptive clip state needs %d bytes, buffer has %zu",
                        SL_DP_ADAPTIVE_CLIP_BYTES, cap);
    memcpy(buf, AC_MAGIC, 4);
    sl_put_le32(buf + 4, AC_VERSION);
    sl_put_f64le(buf + 8, ac->clip);
    sl_put_f64le(buf + 16, ac->target_quantile);
    sl_put_f64le(buf + 24, ac->lr);
    sl_put_f64le(buf + 32, ac->count_stddev);
    sl_put_f64le(buf + 40, ac->expected_clients);
    sl_put_le64(buf + 48, ac->rounds);
    sl_put_f64le(buf + 56, ac->last_estimate);
    *len = SL_DP_ADAPTIVE_CLIP_BYTES;
    return 0;
}

int sl_dp_adaptive_clip_decode(sl_dp_adaptive_clip_t *ac, const uint8_t *buf, size_t len)
{
    if (!buf || len != SL_DP_ADAPTIVE_CLIP_BYTES)
        return sl_error(SL_EFORMAT, "adaptive clip state: %zu bytes, expected %d", len, SL_DP_ADAPTIVE_CLIP_BYTES);
    if (memcmp(buf, AC_MAGIC, 4) != 0)
        return sl_error(SL_EFORMAT, "adaptive clip state: bad magic");
    uint32_t version = sl_get_le32(buf + 4);
    if (version != AC_VERSION)
        return sl_error(SL_EFORMAT, "adaptive clip state: version %u, this build reads %u", version, AC_VERSION);
    sl_dp_adaptive_clip_t t;
    t.clip = sl_get_f64le(buf + 8);
    t.target_quantile = sl_get_f64le(buf + 16);
    t.lr = sl_get_f64le(buf + 24);
    t.count_stddev = sl_get_f64le(buf + 32);
    t.expected_clients = sl_get_f64le(buf + 40);
    t.rounds = sl_get_le64(buf + 48);
    t.last_estimate = sl_get_f64le(buf + 56);
    if (check_adaptive(t.clip, t.target_quantile, t.lr, t.count_stddev, t.expected_clients))
        return sl_error_wrap(SL_EFORMAT, "adaptive clip state");
    if (isinf(t.last_estimate))
        return sl_error(SL_EFORMAT, "adaptive clip state: last estimate is infinite");
    *ac = t;
    return 0;
}
