#include "privacy/secagg/quantize.h"

#include <math.h>
#include <string.h>

static unsigned ceil_log2(size_t n)
{
    unsigned b = 0;
    while (b < 64 && ((size_t)1 << b) < n)
        b++;
    return b;
}

int sl_quant_init(sl_quant_t *q, double clip, unsigned bits_requested, size_t n_clients, unsigned headroom_bits)
{
    memset(q, 0, sizeof *q);
    if (!(clip > 0) || !isfinite(clip))
        return sl_error(SL_EINVAL, "quantize: clip range %g must be a positive number", clip);
    if (bits_requested < 8 || bits_requested > 32)
        return sl_error(SL_EINVAL, "quantize: %u bits per value, expected 8..32", bits_requested);
    if (n_clients < 1)
        return sl_error(SL_EINVAL, "quantize: needs at least one client");
    if (headroom_bits > 8)
        return sl_error(SL_EINVAL, "quantize: %u headroom bits, expected 0..8", headroom_bits);
    unsigned grow = ceil_log2(n_clients) + headroom_bits;
    unsigned b = bits_requested;
    if (b + grow > 32) {
        if (grow + 2 > 32)
            return sl_error(SL_ERANGE, "quantize: %zu clients need %u bits of headroom, no room left in 32 bits",
                            n_clients, grow);
        b = 32 - grow;
    }
    q->clip = clip;
    q->bits = b;
    q->mod_bits = b + grow;
    q->scale = ((double)(UINT64_C(1) << (b - 1)) - 1.0) / clip;
    q->n_clients = n_clients;
    return 0;
}

int sl_quant_encode(const sl_quant_t *q, const float *x, size_t m, double weight, sl_rng_t *rng,
                    const int32_t *noise, uint32_t *out)
{
    if (!isfinite(weight))
        return sl_error(SL_ENOTFINITE, "quantize: weight is not finite");
    uint32_t mask = q->mod_bits == 32 ? UINT32_MAX : (UINT32_C(1) << q->mod_bits) - 1;
    double lim = (double)(UINT64_C(1) << (q->bits - 1)) - 1.0;
    uint32_t u[256];
    for (size_t i0 = 0; i0 < m; i0 += 256) {
        size_t n = m - i0 < 256 ? m - i0 : 256;
        if (rng)
            sl_rng_bytes(rng, u, n * sizeof *u);
        else
            sl_csprng_bytes(u, n * sizeof *u);
        for (size_t j = 0; j < n; j++) {
            size_t i = i0 + j;
            double v = weight * (double)x[i];
            if (!isfinite(v))
                return sl_error(SL_ENOTFINITE, "quantize: value %zu is not finite", i);
            if (v > q->clip)
                v = q->clip;
            if (v < -q->clip)
                v = -q->clip;
            double y = v * q->scale, f = floor(y);
            /* u/2^32 < y - f with probability y - f */
            double r = f + ((double)u[j] * 0x1.0p-32 < y - f ? 1.0 : 0.0);
            if (r > lim)
                r = lim;
            if (r < -lim)
                r = -lim;
            int64_t qi = (int64_t)r;
            if (noise)
                qi += noise[i];
            out[i] = (uint32_t)(uint64_t)qi & mask;
        }
    }
    return 0;
}

int64_t sl_quant_centre(const sl_quant_t *q, uint32_t v)
{
    uint64_t mod = UINT64_C(1) << q->mod_bits;
    uint64_t x = (uint64_t)v & (mod - 1);
    return x >= mod / 2 ? (int64_t)x - (int64_t)mod : (int64_t)x;
}

void sl_quant_decode(const sl_quant_t *q, const uint32_t *sum, size_t m, float *out)
{
    for (size_t i = 0; i < m; i++)
        out[i] = (float)((double)sl_quant_centre(q, sum[i]) / q->scale);
}
