#!/usr/bin/python3
"""Independent reference for the RDP accountant: a straightforward double-precision port of
Opacus 1.5's opacus/accountants/analysis/rdp.py (itself from TF Privacy), written with the
standard library only (no numpy/scipy), so CTest can check the C accountant against it.

Differences from the C port, on purpose (so the two are not the same code twice):
binomial coefficients from lgamma with an explicit sign, log(erfc) from math.erfc with an
asymptotic series far in the tail, orders built by list comprehension as in Opacus.

Usage:
  rdp_reference.py eps Q SIGMA STEPS DELTA      -> "eps best_alpha"
  rdp_reference.py grid                         -> "q sigma steps delta eps best_alpha" per line
  rdp_reference.py opacus-grid                  -> the same grid from Opacus itself, if it can be
                                                   imported (exit 77 when it cannot)
"""
import math
import sys

ALPHAS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


def log_add(logx, logy):
    a, b = min(logx, logy), max(logx, logy)
    if a == -math.inf:
        return b
    return math.log1p(math.exp(a - b)) + b


def log_sub(logx, logy):
    if logx < logy:
        raise ValueError("negative")
    if logy == -math.inf:
        return logx
    if logx == logy:
        return -math.inf
    try:
        return math.log(math.expm1(logx - logy)) + logy
    except OverflowError:
        return logx


def binom(n, k):
    """Generalised binomial coefficient C(n, k) for real n, integer k >= 0."""
    if n == int(n) and n >= 0:
        return float(math.comb(int(n), k))
    a = n - k + 1
    val = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(a)
    sign = 1.0
    # Gamma(x) < 0 for x in (-1, 0), (-3, -2), ...
    if a < 0 and math.floor(a) % 2 == 1:
        sign = -sign
    if n + 1 < 0 and math.floor(n + 1) % 2 == 1:
        sign = -sign
    return sign * math.exp(val)


def log_erfc(x):
    if x < 25.0:
        return math.log(math.erfc(x))
    r = 1.0 / (x * x)
    s = 1.0 - 0.5 * r + 0.75 * r * r - 1.875 * r ** 3 + 6.5625 * r ** 4
    return -x * x - math.log(x) - 0.5 * math.log(math.pi) + math.log(s)


def log_a_int(q, sigma, alpha):
    log_a = -math.inf
    for i in range(alpha + 1):
        log_coef_i = math.log(binom(alpha, i)) + i * math.log(q) + (alpha - i) * math.log(1 - q)
        s = log_coef_i + (i * i - i) / (2 * (sigma ** 2))
        log_a = log_add(log_a, s)
    return log_a


def log_a_frac(q, sigma, alpha):
    log_a0, log_a1 = -math.inf, -math.inf
    i = 0
    z0 = sigma ** 2 * math.log(1 / q - 1) + 0.5
    while True:
        coef = binom(alpha, i)
        log_coef = math.log(abs(coef))
        j = alpha - i
        log_t0 = log_coef + i * math.log(q) + j * math.log(1 - q)
        log_t1 = log_coef + j * math.log(q) + i * math.log(1 - q)
        log_e0 = math.log(0.5) + log_erfc((i - z0) / (math.sqrt(2) * sigma))
        log_e1 = math.log(0.5) + log_erfc((z0 - j) / (math.sqrt(2) * sigma))
        log_s0 = log_t0 + (i * i - i) / (2 * (sigma ** 2)) + log_e0
        log_s1 = log_t1 + (j * j - j) / (2 * (sigma ** 2)) + log_e1
        if coef > 0:
            log_a0 = log_add(log_a0, log_s0)
            log_a1 = log_add(log_a1, log_s1)
        else:
            log_a0 = log_sub(log_a0, log_s0)
            log_a1 = log_sub(log_a1, log_s1)
        i += 1
        if max(log_s0, log_s1) < -30:
            break
    return log_add(log_a0, log_a1)


def compute_rdp(q, sigma, alpha):
    if q == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    if q == 1.0:
        return alpha / (2 * sigma ** 2)
    if float(alpha).is_integer():
        return log_a_int(q, sigma, int(alpha)) / (alpha - 1)
    return log_a_frac(q, sigma, alpha) / (alpha - 1)


def epsilon(history, delta):
    """history: list of (q, sigma, steps), summed in order as RDPAccountant does."""
    rdp = [0.0] * len(ALPHAS)
    for q, sigma, steps in history:
        for k, a in enumerate(ALPHAS):
            rdp[k] = rdp[k] + compute_rdp(q, sigma, a) * steps
    best, best_alpha = None, math.nan
    for k, a in enumerate(ALPHAS):
        e = rdp[k] - (math.log(delta) + math.log(a)) / (a - 1) + math.log((a - 1) / a)
        if math.isnan(e):
            continue
        if best is None or e < best:
            best, best_alpha = e, a
    if best is None:
        return math.inf, math.nan
    return best, float(best_alpha)


GRID = [
    (256 / 60000, 1.1, 14062, 1e-5),
    (0.01, 1.0, 1000, 1e-5),
    (0.001, 0.8, 10000, 1e-6),
    (0.05, 2.0, 500, 1e-5),
    (0.1, 0.7, 100, 1e-5),
    (0.2, 5.0, 2000, 1e-8),
    (0.5, 1.3, 50, 1e-5),
    (0.02, 0.5, 300, 1e-5),
    (1e-4, 1.0, 100000, 1e-5),
    (0.3, 10.0, 10000, 1e-5),
]


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "eps" and len(sys.argv) == 6:
        q, sigma, steps, delta = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        e, a = epsilon([(q, sigma, steps)], delta)
        print("%.17g %.17g" % (e, a))
        return 0
    if len(sys.argv) == 2 and sys.argv[1] == "grid":
        for q, sigma, steps, delta in GRID:
            e, a = epsilon([(q, sigma, steps)], delta)
            print("%.17g %.17g %d %.17g %.17g %.17g" % (q, sigma, steps, delta, e, a))
        # a two-entry history, composed in order
        e, a = epsilon([(0.01, 1.0, 500), (0.02, 1.5, 300)], 1e-5)
        print("history %.17g %.17g" % (e, a))
        return 0
    if len(sys.argv) == 2 and sys.argv[1] == "opacus-grid":
        try:
            from opacus.accountants import RDPAccountant
        except Exception:  # not installed here (no pip): the caller skips this part
            return 77
        for q, sigma, steps, delta in GRID:
            acc = RDPAccountant()
            acc.history = [(sigma, q, steps)]
            e, a = acc.get_privacy_spent(delta=delta)
            print("%.17g %.17g %d %.17g %.17g %.17g" % (q, sigma, steps, delta, e, a))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
