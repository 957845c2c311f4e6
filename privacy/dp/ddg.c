/* privacy/dp/ddg: quantizer, sensitivity and charge of the distributed discrete Gaussian. */
#include "privacy/dp/ddg.h"

#include <math.h>

double sl_ddg_share_sigma(const sl_quant_t *q, double clip, double rho)
{
    return q->scale * rho * clip;
}

double sl_ddg_tau(double sigma_q, size_t r)
{
    double tau = 0;
    for (size_t k = 1; k < r; k++) {
        double t = exp(-2.0 * M_PI * M_PI * sigma_q * sigma_q * (double)k / (double)(k + 1));
        if (t == 0.0)
            break; /* k / (k + 1) grows with k, so the terms shrink: once one underflows, all later ones do */
        tau += t;
    }
    return 10.0 * tau;
}

double sl_ddg_sensitivity(const sl_quant_t *q, double clip, size_t dim)
{
    return clip + sqrt((double)dim) / q->scale;
}

double sl_ddg_noise_multiplier(const sl_quant_t *q, double clip, double rho, size_t dim, size_t r)
{
    if (!(q->scale > 0) || !(clip > 0) || !(rho >= 0) || !isfinite(rho) || dim == 0)
        return NAN;
    return sqrt((double)r) * rho * clip / sl_ddg_sensitivity(q, clip, dim);
}

int sl_ddg_quant_init(sl_quant_t *q, double clip, double rho, unsigned bits, size_t n, size_t dim)
{
    if (!(clip > 0) || !isfinite(clip) || !(rho >= 0) || !isfinite(rho) || n < 1 || dim == 0)
        return sl_error(SL_EINVAL, "ddg: clip %g, share multiplier %g, %zu clients, dim %zu", clip, rho, n,
                        dim);
    /* sigma_q = (2^(b-1) - 1) rho must stay within the exact sampler's range */
    unsigned b = bits;
    while (b > 8 && ((double)(UINT64_C(1) << (b - 1)) - 1.0) * rho > SL_DDG_MAX_SIGMA)
        b--;
    if (((double)(UINT64_C(1) << (b - 1)) - 1.0) * rho > SL_DDG_MAX_SIGMA)
        return sl_error(SL_ERANGE,
                        "ddg: noise share multiplier %g is too large to quantize (share std above %g "
                        "steps even at 8 bits)",
                        rho, SL_DDG_MAX_SIGMA);
    for (unsigned h = 0; h <= 8; h++) {
        int rc = sl_quant_init(q, clip, b, n, h);
        if (rc == SL_ERANGE)
            break; /* no bits left for more headroom */
        if (rc)
            return rc;
        double sigma = sl_ddg_share_sigma(q, clip, rho);
        double lim = (double)(UINT64_C(1) << (q->bits - 1)) - 1.0;
        double room = (double)(UINT64_C(1) << (q->mod_bits - 1)) - 1.0;
        if ((double)n * lim + SL_DDG_TAIL * sqrt((double)n) * sigma > room)
            continue;
        if (sigma > 0 && sigma < 1.0)
            return sl_error(SL_ERANGE,
                            "ddg: the noise share is %.3g quantization steps (< 1): its sum would not "
                            "be close to a discrete Gaussian; raise [secagg] bits",
                            sigma);
        double taud = sl_ddg_tau(sigma, n) * (double)dim;
        if (sigma > 0 && taud > SL_DDG_MAX_TAU_D)
            return sl_error(SL_ERANGE,
                            "ddg: the noise share is only %.3g quantization steps: the sum of %zu shares "
                            "is too far from a discrete Gaussian (tau d = %.3g > %g); raise [secagg] bits",
                            sigma, n, taud, SL_DDG_MAX_TAU_D);
        return 0;
    }
    return sl_error(SL_ERANGE,
                    "ddg: no ring of at most 32 bits holds %zu clipped updates plus their noise (share "
                    "multiplier %g); lower dp.noise_multiplier or the number of clients per round",
                    n, rho);
}
