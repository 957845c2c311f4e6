/* client/secagg: SecAgg+ client hooks. See secagg.h. */
#include "client/secagg.h"

#include "client/dp.h"
#include "core/log.h"
#include "privacy/dp/ddg.h"
#include "privacy/dp/mechanism.h"
#include "privacy/secagg/quantize.h"
#include "privacy/secagg/secagg.h"
#include "privacy/secagg/wire.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct sl_client_secagg {
    sl_config_t cfg; /* [dp] clip, [secagg] bits; run.seed / dp.insecure_seeded_noise for the noise source */
    sl_secagg_client_t *sc; /* the current round's SecAgg client, or NULL */
    uint64_t sc_round;
    size_t setup_n;   /* SETUP of sc_round: clients in the round */
    unsigned setup_B; /* and its ring bits */
    float *delta;     /* pending delta of delta_round, (delta_dim) */
    size_t delta_dim, delta_cap;
    uint64_t delta_round;
    sl_client_task_t task; /* the TASK the pending delta answers (its DP fields) */
    int have_delta;
    uint32_t *input; /* quantized, (delta_dim) */
    int32_t *noise;  /* distributed DP: this client's discrete Gaussian share, (delta_dim) */
    sl_secagg_outbox_t out;
};

int sl_client_secagg_new(sl_client_secagg_t **out, const sl_config_t *cfg)
{
    *out = NULL;
    if (!cfg || !(cfg->dp.clip > 0) || !isfinite(cfg->dp.clip))
        return sl_error(SL_EINVAL, "client secagg: [dp] clip must be > 0 (the quantization range)");
    sl_client_secagg_t *cs = calloc(1, sizeof *cs);
    if (!cs)
        return sl_error(SL_ENOMEM, "client secagg");
    cs->cfg = *cfg;
    sl_secagg_outbox_init(&cs->out);
    *out = cs;
    return 0;
}

static void wipe_delta(sl_client_secagg_t *cs)
{
    if (cs->delta)
        sodium_memzero(cs->delta, cs->delta_cap * sizeof *cs->delta);
    if (cs->input)
        sodium_memzero(cs->input, cs->delta_cap * sizeof *cs->input);
    if (cs->noise)
        sodium_memzero(cs->noise, cs->delta_cap * sizeof *cs->noise);
    cs->have_delta = 0;
}

void sl_client_secagg_destroy(sl_client_secagg_t **p)
{
    if (!p || !*p)
        return;
    sl_client_secagg_t *cs = *p;
    sl_secagg_client_destroy(&cs->sc);
    wipe_delta(cs);
    free(cs->delta);
    free(cs->input);
    free(cs->noise);
    sl_secagg_outbox_free(&cs->out);
    free(cs);
    *p = NULL;
}

static int flush(sl_client_secagg_t *cs, sl_client_t *c)
{
    int rc = 0;
    for (size_t i = 0; i < cs->out.count && !rc; i++) {
        const sl_secagg_msg_t *m = &cs->out.msgs[i];
        rc = sl_client_send_secagg(c, m->len > 5 ? m->data[5] : 0, m->data, m->len);
    }
    sl_secagg_outbox_clear(&cs->out);
    return rc;
}

/* The round's quantizer, from SETUP's n and the TASK (the coordinator derives the same one,
 * coordinator/secagg.h), and with distributed DP the clipped delta and the noise share.
 * SL_EMISMATCH if it does not give SETUP's B. */
static int prepare_input(sl_client_secagg_t *cs, sl_quant_t *q, const int32_t **noise)
{
    const sl_task_info_t *ti = &cs->task.info;
    unsigned bits = (unsigned)cs->cfg.secagg.bits;
    int rc;
    *noise = NULL;
    if (ti->dp_mode == SL_DP_OFF) {
        rc = sl_quant_init(q, cs->cfg.dp.clip, bits, cs->setup_n, 0);
    } else if (ti->dp_mode == SL_DP_DISTRIBUTED) {
        /* the range and the noise come from the TASK: dp_clip is C, dp_noise the share's std / C */
        rc = sl_ddg_quant_init(q, ti->dp_clip, ti->dp_noise, bits, cs->setup_n, cs->delta_dim);
        if (!rc) /* delta (dim) clipped to C in place; noise (dim) ~ N_Z(0, (scale dp_noise C)^2) */
            rc = sl_dp_client_secagg_share(&cs->cfg, &cs->task, q->scale, cs->delta, cs->noise, cs->delta_dim,
                                           NULL);
        *noise = cs->noise;
    } else {
        rc = sl_error(SL_ENOTSUP, "DP mode %d with secure aggregation (only distributed is supported)",
                      (int)ti->dp_mode);
    }
    if (!rc && q->mod_bits != cs->setup_B)
        rc = sl_error(SL_EMISMATCH,
                      "coordinator uses B = %u, this client's quantizer gives %u ([secagg] bits%s)",
                      cs->setup_B, q->mod_bits, ti->dp_mode == SL_DP_OFF ? ", [dp] clip" : "");
    return rc;
}

/* Quantize the pending delta and hand it to the SecAgg client of the same round. */
static int give_input(sl_client_secagg_t *cs, sl_client_t *c)
{
    if (!cs->sc || !cs->have_delta || cs->delta_round != cs->sc_round)
        return 0;
    if (sl_secagg_client_stage(cs->sc) == SL_SECAGG_ABORTED)
        return 0;
    sl_quant_t q;
    const int32_t *noise = NULL;
    int rc = prepare_input(cs, &q, &noise);
    if (!rc) {
        /* The quantizer clips silently; say how much of the update the range [-c, c] cut, so a
         * too small [dp] clip shows in the client log (and max |delta| helps to choose it).
         * With distributed DP the delta is already L2-clipped to c here: nothing is cut. */
        size_t clipped = 0;
        double max_abs = 0;
        for (size_t i = 0; i < cs->delta_dim; i++) {
            double a = fabs((double)cs->delta[i]);
            clipped += a > q.clip;
            if (a > max_abs)
                max_abs = a;
        }
        if (clipped)
            SL_WARN("secagg client: round %llu: %zu of %zu coordinates clipped to [-%g, %g] ([dp] clip), "
                    "max |delta| %.4g",
                    (unsigned long long)cs->sc_round, clipped, cs->delta_dim, q.clip, q.clip, max_abs);
        else
            SL_DEBUG("secagg client: round %llu: max |delta| %.4g, inside [dp] clip %g",
                     (unsigned long long)cs->sc_round, max_abs, q.clip);
        /* delta (dim,) float (+ noise (dim,) int32) -> input (dim,) in Z_{2^B} */
        rc = sl_quant_encode(&q, cs->delta, cs->delta_dim, 1.0, NULL, noise, cs->input);
    }
    if (!rc)
        rc = sl_secagg_client_set_input(cs->sc, cs->input, cs->delta_dim, &cs->out);
    wipe_delta(cs);
    if (rc) {
        SL_WARN("secagg client: round %llu: input refused: %s", (unsigned long long)cs->sc_round, sl_last_error());
        sl_secagg_outbox_clear(&cs->out);
        sl_secagg_client_destroy(&cs->sc);
        return 0;
    }
    return flush(cs, c);
}

int sl_client_secagg_masked(void *ctx, sl_client_t *c, const sl_client_task_t *task, const float *delta,
                            size_t dim)
{
    sl_client_secagg_t *cs = ctx;
    if (dim > cs->delta_cap) {
        wipe_delta(cs);
        float *d = realloc(cs->delta, dim * sizeof *d);
        if (d)
            cs->delta = d;
        uint32_t *in = realloc(cs->input, dim * sizeof *in);
        if (in)
            cs->input = in;
        int32_t *nz = realloc(cs->noise, dim * sizeof *nz);
        if (nz)
            cs->noise = nz;
        if (!d || !in || !nz)
            return sl_error(SL_ENOMEM, "client secagg: %zu coordinates", dim);
        cs->delta_cap = dim;
    }
    memcpy(cs->delta, delta, dim * sizeof *delta);
    cs->delta_dim = dim;
    cs->delta_round = task->round;
    cs->task = *task;
    cs->have_delta = 1;
    return give_input(cs, c);
}

int sl_client_secagg_on_message(void *ctx, sl_client_t *c, uint64_t round, uint32_t stage, const uint8_t *blob,
                                size_t len)
{
    (void)stage;
    sl_client_secagg_t *cs = ctx;
    sl_secagg_header_t h;
    if (sl_secagg_header_decode(blob, len, &h) != 0) {
        SL_WARN("secagg client: bad blob: %s", sl_last_error());
        return 0;
    }
    if (h.round != round) {
        SL_WARN("secagg client: blob of round %llu in round %llu", (unsigned long long)h.round,
                (unsigned long long)round);
        return 0;
    }
    if (h.type == SL_SECAGG_MSG_SETUP) {
        /* body: n u32, k u32, t u32, B u8, 3 reserved, M u64 */
        sl_secagg_reader_t r;
        sl_secagg_reader_init(&r, blob + SL_SECAGG_HEADER_BYTES, len - SL_SECAGG_HEADER_BYTES);
        uint32_t n = sl_secagg_read_u32(&r);
        (void)sl_secagg_read_u32(&r);
        (void)sl_secagg_read_u32(&r);
        uint8_t B = sl_secagg_read_u8(&r);
        if (r.bad || n < 2) {
            SL_WARN("secagg client: round %llu: bad SETUP", (unsigned long long)round);
            return 0;
        }
        sl_secagg_client_destroy(&cs->sc);
        /* the quantizer is built (and B checked) with the input: with DP it depends on the TASK */
        cs->setup_n = n;
        cs->setup_B = B;
        sl_secagg_client_opts_t o = {.index = h.receiver, .round = round, .threads = 1, .rng = NULL};
        int rc = sl_secagg_client_new(&cs->sc, &o);
        if (rc) {
            SL_WARN("secagg client: round %llu: %s", (unsigned long long)round, sl_last_error());
            return 0;
        }
        cs->sc_round = round;
    }
    if (!cs->sc || cs->sc_round != round)
        return 0; /* not in this session (e.g. SETUP lost): the coordinator drops us */
    int rc = sl_secagg_client_handle(cs->sc, blob, len, &cs->out);
    if (rc == SL_EABORT) {
        SL_INFO("secagg client: round %llu aborted by the coordinator", (unsigned long long)round);
        sl_secagg_outbox_clear(&cs->out);
        sl_secagg_client_destroy(&cs->sc);
        return 0;
    }
    if (rc) {
        SL_WARN("secagg client: round %llu: %s rejected: %s", (unsigned long long)round,
                sl_secagg_msg_name(h.type), sl_last_error());
        sl_secagg_outbox_clear(&cs->out);
        return 0;
    }
    if ((rc = flush(cs, c)))
        return rc;
    if (sl_secagg_client_stage(cs->sc) == SL_SECAGG_DONE) {
        sl_secagg_client_destroy(&cs->sc); /* the round's secrets are no longer needed */
        return 0;
    }
    if (h.type == SL_SECAGG_MSG_SETUP)
        return give_input(cs, c);
    return 0;
}
