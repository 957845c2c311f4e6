#include "coordinator/strategy.h"

#include "core/bytes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sl_strategy {
    int kind; /* sl_strategy_kind_t */
    size_t dim;
    double eta, momentum, beta1, beta2, tau;
    uint64_t steps; /* rounds applied */
    float *m;       /* (dim) first moment / momentum; NULL for plain kinds */
    float *v;       /* (dim) second moment; NULL unless adaptive */
    double *next;   /* (dim) scratch: candidate new values, so a failed step changes nothing */
};

static int adaptive(int kind)
{
    return kind == SL_STRAT_FEDADAM || kind == SL_STRAT_FEDYOGI || kind == SL_STRAT_FEDADAGRAD;
}

int sl_strategy_new(sl_strategy_t **out, const sl_config_t *cfg, size_t dim)
{
    *out = NULL;
    if (dim == 0)
        return sl_error(SL_EINVAL, "strategy: dim = 0");
    sl_strategy_t *s = calloc(1, sizeof *s);
    if (!s)
        return sl_error(SL_ENOMEM, "strategy: out of memory");
    s->kind = cfg->federation.strategy;
    s->dim = dim;
    s->eta = cfg->federation.server_lr;
    s->momentum = cfg->federation.server_momentum;
    s->beta1 = s->kind == SL_STRAT_FEDADAGRAD ? 0.0 : cfg->federation.beta1;
    s->beta2 = cfg->federation.beta2;
    s->tau = cfg->federation.tau;
    int need_m = s->kind == SL_STRAT_FEDAVGM || adaptive(s->kind);
    if (need_m)
        s->m = calloc(dim, sizeof *s->m);
    if (adaptive(s->kind))
        s->v = calloc(dim, sizeof *s->v);
    s->next = malloc(dim * sizeof *s->next);
    if ((need_m && !s->m) || (adaptive(s->kind) && !s->v) || !s->next) {
        sl_strategy_destroy(&s);
        return sl_error(SL_ENOMEM, "strategy: out of memory (dim %zu)", dim);
    }
    *out = s;
    return 0;
}

void sl_strategy_destroy(sl_strategy_t **ps)
{
    if (!ps || !*ps)
        return;
    free((*ps)->m);
    free((*ps)->v);
    free((*ps)->next);
    free(*ps);
    *ps = NULL;
}

const char *sl_strategy_name(const sl_strategy_t *s)
{
    const char *n = sl_config_enum_name("federation", "strategy", s->kind);
    return n ? n : "?";
}

int sl_strategy_apply(sl_strategy_t *s, float *x, const float *d)
{
    size_t n = s->dim;
    const double b1 = s->beta1, b2 = s->beta2, tau = s->tau, eta = s->eta;
    /* x (dim), d (dim): compute every new value first, commit only if all are finite */
    switch (s->kind) {
    case SL_STRAT_FEDAVGM:
        for (size_t i = 0; i < n; i++) {
            double m = s->steps == 0 ? (double)d[i] : s->momentum * (double)s->m[i] + (double)d[i];
            s->next[i] = m;
        }
        break;
    case SL_STRAT_FEDADAM:
    case SL_STRAT_FEDYOGI:
    case SL_STRAT_FEDADAGRAD:
        break;
    default: /* fedavg, median, trimmed_mean: x += eta * d */
        for (size_t i = 0; i < n; i++)
            s->next[i] = (double)x[i] + eta * (double)d[i];
        break;
    }
    if (adaptive(s->kind)) {
        /* m, v computed per coordinate, new x into next; m/v committed after the check */
        for (size_t i = 0; i < n; i++) {
            double di = (double)d[i], d2 = di * di;
            double m = b1 * (double)s->m[i] + (1.0 - b1) * di;
            double v = (double)s->v[i];
            if (s->kind == SL_STRAT_FEDADAM)
                v = b2 * v + (1.0 - b2) * d2;
            else if (s->kind == SL_STRAT_FEDYOGI)
                v = v - (1.0 - b2) * d2 * (v - d2 > 0 ? 1.0 : (v - d2 < 0 ? -1.0 : 0.0));
            else
                v = v + d2;
            /* float storage of the moments, as Flower keeps float32 arrays */
            float mf = (float)m, vf = (float)v;
            s->next[i] = (double)x[i] + eta * (double)mf / (sqrt((double)vf) + tau);
            if (!isfinite(s->next[i]) || !isfinite(mf) || !isfinite(vf))
                return sl_error(SL_ENOTFINITE, "strategy %s: non-finite step at coordinate %zu",
                                sl_strategy_name(s), i);
        }
        for (size_t i = 0; i < n; i++) {
            double di = (double)d[i], d2 = di * di;
            double m = b1 * (double)s->m[i] + (1.0 - b1) * di;
            double v = (double)s->v[i];
            if (s->kind == SL_STRAT_FEDADAM)
                v = b2 * v + (1.0 - b2) * d2;
            else if (s->kind == SL_STRAT_FEDYOGI)
                v = v - (1.0 - b2) * d2 * (v - d2 > 0 ? 1.0 : (v - d2 < 0 ? -1.0 : 0.0));
            else
                v = v + d2;
            s->m[i] = (float)m;
            s->v[i] = (float)v;
            x[i] = (float)s->next[i];
        }
        s->steps++;
        return 0;
    }
    if (s->kind == SL_STRAT_FEDAVGM) {
        for (size_t i = 0; i < n; i++) {
            float mf = (float)s->next[i];
            double nx = (double)x[i] + eta * (double)mf;
            if (!isfinite(nx) || !isfinite(mf))
                return sl_error(SL_ENOTFINITE, "strategy fedavgm: non-finite step at coordinate %zu", i);
        }
        for (size_t i = 0; i < n; i++) {
            s->m[i] = (float)s->next[i];
            x[i] = (float)((double)x[i] + eta * (double)s->m[i]);
        }
        s->steps++;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite((float)s->next[i]))
            return sl_error(SL_ENOTFINITE, "strategy %s: non-finite step at coordinate %zu",
                            sl_strategy_name(s), i);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)s->next[i];
    s->steps++;
    return 0;
}

/* ---- state ------------------------------------------------------------------------------ */

#define ST_MAGIC   "SLST"
#define ST_VERSION 1u
#define ST_HEAD    (4 + 4 + 4 + 4 + 8 + 8)

size_t sl_strategy_state_size(const sl_strategy_t *s)
{
    return ST_HEAD + (s->m ? s->dim * 4 : 0) + (s->v ? s->dim * 4 : 0);
}

int sl_strategy_save(const sl_strategy_t *s, uint8_t *buf, size_t len)
{
    if (len != sl_strategy_state_size(s))
        return sl_error(SL_EINVAL, "strategy: state buffer of %zu bytes, need %zu", len,
                        sl_strategy_state_size(s));
    memcpy(buf, ST_MAGIC, 4);
    sl_put_le32(buf + 4, ST_VERSION);
    sl_put_le32(buf + 8, (uint32_t)s->kind);
    sl_put_le32(buf + 12, (s->m ? 1u : 0u) | (s->v ? 2u : 0u));
    sl_put_le64(buf + 16, s->steps);
    sl_put_le64(buf + 24, s->dim);
    size_t off = ST_HEAD;
    if (s->m) {
        memcpy(buf + off, s->m, s->dim * 4);
        off += s->dim * 4;
    }
    if (s->v)
        memcpy(buf + off, s->v, s->dim * 4);
    return 0;
}

int sl_strategy_load(sl_strategy_t *s, const uint8_t *buf, size_t len)
{
    if (len < ST_HEAD || memcmp(buf, ST_MAGIC, 4) != 0)
        return sl_error(SL_EFORMAT, "strategy state: bad magic or truncated (%zu bytes)", len);
    if (sl_get_le32(buf + 4) != ST_VERSION)
        return sl_error(SL_EFORMAT, "strategy state: version %u unsupported", sl_get_le32(buf + 4));
    if ((int)sl_get_le32(buf + 8) != s->kind)
        return sl_error(SL_EMISMATCH, "strategy state is for %s, the run uses %s",
                        sl_config_enum_name("federation", "strategy", (int)sl_get_le32(buf + 8))
                            ? sl_config_enum_name("federation", "strategy", (int)sl_get_le32(buf + 8))
                            : "?",
                        sl_strategy_name(s));
    if (sl_get_le64(buf + 24) != s->dim)
        return sl_error(SL_EMISMATCH, "strategy state: dim %llu, the run has %zu",
                        (unsigned long long)sl_get_le64(buf + 24), s->dim);
    uint32_t flags = sl_get_le32(buf + 12);
    if (flags != ((s->m ? 1u : 0u) | (s->v ? 2u : 0u)) || len != sl_strategy_state_size(s))
        return sl_error(SL_EFORMAT, "strategy state: wrong length %zu", len);
    s->steps = sl_get_le64(buf + 16);
    size_t off = ST_HEAD;
    if (s->m) {
        memcpy(s->m, buf + off, s->dim * 4);
        off += s->dim * 4;
    }
    if (s->v)
        memcpy(s->v, buf + off, s->dim * 4);
    return 0;
}
