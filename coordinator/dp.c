/* coordinator/dp: the DP aggregator, the accountant in the round hooks, checkpoint state. */
#include "coordinator/dp.h"

#include "coordinator/ledger.h"
#include "coordinator/secagg.h"
#include "core/bytes.h"
#include "core/log.h"
#include "privacy/dp/clip.h"
#include "privacy/dp/ddg.h"
#include "privacy/dp/mechanism.h"
#include "privacy/dp/noise.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EXT_MAGIC   "SLDX"
#define EXT_VERSION 2u
#define EXT_HEADER  28 /* magic 4, version 4, flags 4, ledger records covered 8, accountant length 8 */
#define EXT_HEADER1 20 /* version 1 (before the ledger): no ledger count */

struct sl_dp_coord {
    sl_config_t cfg;
    size_t dim;
    sl_dp_accountant_t *acc;
    int adaptive;
    sl_dp_adaptive_clip_t ac;
    const sl_engine_t *engine; /* borrowed, for q's denominator */
    size_t population;

    /* the round in progress (set by begin_round) */
    uint64_t round;
    sl_dp_round_t plan;
    size_t sampled;
    size_t registered;
    double bound;     /* server-side clip bound of this round */
    sl_aggregator_t *mean; /* the built-in exact, order-independent mean of the clipped updates */
    double *sum;      /* (dim) the released sum, at finish */
    float *scratch;   /* (dim) one delta being clipped */
    size_t count;     /* updates folded this attempt */
    double count_sum; /* adaptive: sum of centered bits [norm <= C] - 1/2 */
    uint64_t clipped_total;

    /* released by finish, charged by round_end */
    int pending;
    uint64_t pending_round;
    size_t pending_reported;
    int local_charged; /* local mode: this attempt was charged (at its first report) */
    double last_q, last_z;

    uint32_t attempt; /* the engine's attempt of the round (from its TASK) */
    sl_ledger_t *ledger; /* write-ahead record of every charge (sl_dp_coord_open_ledger), owned */

    /* distributed DP with secure aggregation (secagg.enabled): the secure sum is `secure`,
     * owned; the accountant is charged at its unmask gate (unmask_gate) */
    sl_aggregator_t *secure;
    sl_quant_t sa_q;    /* this round's quantizer, as the secure aggregator and the clients derive it */
    int sa_charged;     /* this attempt's sum was charged (and then unmasked) */
    size_t sa_included; /* noise shares in it */
    int sa_gate_rc;     /* the gate refused this attempt: SL_EBUDGET, or why the charge failed */
    char sa_gate_msg[480];
};

/* ---- configuration ------------------------------------------------------------------------ */

int sl_dp_coord_check_config(const sl_config_t *cfg)
{
    int mode = cfg->dp.mode;
    if (mode == SL_DP_OFF)
        return 0;
    const char *mname = sl_config_enum_name("dp", "mode", mode);
    if (!mname)
        return sl_error(SL_ECONFIG, "dp.mode: unknown value %d", mode);
    int strat = cfg->federation.strategy;
    if (strat == SL_STRAT_MEDIAN || strat == SL_STRAT_TRIMMED_MEAN)
        return sl_error(
            SL_ECONFIG,
            "dp.mode = %s cannot run with federation.strategy = %s: the DP noise is calibrated to "
            "a sum of clipped updates (sensitivity C), which a robust aggregator does not compute; "
            "use fedavg or a server optimizer (fedadam, fedyogi, ...)",
            mname, sl_config_enum_name("federation", "strategy", strat));
    if (cfg->secagg.enabled && mode != SL_DP_DISTRIBUTED)
        return sl_error(
            SL_ENOTSUP,
            "dp.mode = %s together with secure aggregation (secagg.enabled = true) is not supported: "
            "%s; use dp.mode = distributed (discrete Gaussian noise shares under the masks) or turn "
            "secagg off",
            mname,
            mode == SL_DP_CENTRAL ? "in central mode clients send raw deltas for the coordinator to clip, "
                                    "which it cannot do with masked updates"
                                  : "in local mode every report must be noised in full and released on its "
                                    "own, which masking defeats");
    if (cfg->dp.adaptive_clip && mode != SL_DP_CENTRAL)
        return sl_error(SL_ECONFIG,
                        "dp.adaptive_clip = true needs dp.mode = central (got %s): in distributed and local "
                        "mode each client would have to send its noised clipped-count bit, for which the "
                        "protocol has no field",
                        mname);
    sl_dp_round_t r;
    int rc = sl_dp_round_plan(cfg, cfg->dp.clip, &r);
    if (rc)
        return rc == SL_EINVAL ? sl_error_wrap(SL_ECONFIG, "dp.clip") : rc;
    if (cfg->dp.target_epsilon > 0 && !(cfg->dp.noise_multiplier > 0))
        return sl_error(SL_ECONFIG,
                        "dp.target_epsilon = %g needs dp.noise_multiplier > 0 (no noise: infinite "
                        "epsilon)",
                        cfg->dp.target_epsilon);
    return 0;
}

static int unmask_gate(void *ctx, size_t inputs);

int sl_dp_coord_new(sl_dp_coord_t **out, const sl_config_t *cfg, size_t dim)
{
    *out = NULL;
    if (cfg->dp.mode == SL_DP_OFF)
        return sl_error(SL_EINVAL, "dp: mode is off, no DP state to create");
    if (dim == 0)
        return sl_error(SL_EINVAL, "dp: dim must be > 0");
    int rc = sl_dp_coord_check_config(cfg);
    if (rc)
        return rc;
    sl_dp_coord_t *dp = calloc(1, sizeof *dp);
    if (!dp)
        return sl_error(SL_ENOMEM, "dp: out of memory");
    dp->cfg = *cfg;
    dp->dim = dim;
    dp->last_q = dp->last_z = NAN;
    dp->sum = calloc(dim, sizeof *dp->sum);
    dp->scratch = malloc(dim * sizeof *dp->scratch);
    if (!dp->sum || !dp->scratch) {
        rc = sl_error(SL_ENOMEM, "dp: out of memory (dim %zu)", dim);
        goto fail;
    }
    if ((rc = sl_aggregator_mean_new(&dp->mean, dim)))
        goto fail;
    if ((rc = sl_dp_accountant_new(&dp->acc)))
        goto fail;
    if (cfg->secagg.enabled) {
        /* fail now, not in round 1, if the noise cannot fit the ring at the smallest round */
        sl_dp_round_t r;
        size_t n0 = cfg->federation.min_clients > 2 ? (size_t)cfg->federation.min_clients : 2;
        if ((rc = sl_dp_round_plan(cfg, cfg->dp.clip, &r)) ||
            (rc = sl_ddg_quant_init(&dp->sa_q, r.clip, sl_dp_round_client_noise_multiplier(&r),
                                    (unsigned)cfg->secagg.bits, n0, dim))) {
            rc = sl_error_wrap(SL_ECONFIG, "dp with secagg");
            goto fail;
        }
        if ((rc = sl_aggregator_secagg_new(&dp->secure, cfg, dim)) ||
            (rc = sl_aggregator_secagg_set_unmask_gate(dp->secure, unmask_gate, dp)))
            goto fail;
    }
    dp->adaptive = cfg->dp.adaptive_clip != 0;
    if (dp->adaptive) {
        /* m is refreshed every round from the sampled count; 1 is a placeholder */
        if ((rc = sl_dp_adaptive_clip_init_config(&dp->ac, cfg, 1.0))) {
            rc = sl_error_wrap(SL_ECONFIG, "dp: adaptive clipping");
            goto fail;
        }
    }
    if (cfg->dp.insecure_seeded_noise)
        SL_WARN("dp: dp.insecure_seeded_noise = true: the noise is reproducible from run.seed and gives NO "
                "privacy");
    *out = dp;
    return 0;
fail:
    sl_dp_coord_destroy(&dp);
    return rc;
}

void sl_dp_coord_destroy(sl_dp_coord_t **p)
{
    if (!p || !*p)
        return;
    sl_dp_coord_t *dp = *p;
    sl_dp_accountant_destroy(&dp->acc);
    sl_ledger_close(&dp->ledger);
    sl_aggregator_destroy(&dp->secure);
    free(dp->sum);
    sl_aggregator_destroy(&dp->mean);
    free(dp->scratch);
    free(dp);
    *p = NULL;
}

void sl_dp_coord_set_engine(sl_dp_coord_t *dp, const sl_engine_t *e)
{
    dp->engine = e;
}
void sl_dp_coord_set_population(sl_dp_coord_t *dp, size_t population)
{
    dp->population = population;
}

double sl_dp_coord_clip(const sl_dp_coord_t *dp)
{
    return dp->adaptive ? dp->ac.clip : dp->cfg.dp.clip;
}

static double round_q(const sl_dp_coord_t *dp)
{
    size_t reg = dp->registered;
    if (reg < dp->sampled)
        reg = dp->sampled;
    if (reg == 0)
        return 1.0;
    return (double)dp->sampled / (double)reg;
}

/* Plan the round with the current clip. */
static int plan_round(sl_dp_coord_t *dp, uint64_t round)
{
    int rc = sl_dp_round_plan(&dp->cfg, sl_dp_coord_clip(dp), &dp->plan);
    if (rc)
        return rc;
    dp->round = round;
    if (dp->plan.mode == SL_DP_CENTRAL)
        dp->bound = dp->plan.clip;
    else /* the client clipped to C, then added N(0, s^2 I): ||.|| <= C + s (sqrt(d) + 10) w.p. > 1 - e^-50 */
        dp->bound = dp->plan.clip + dp->plan.client_update_std * (sqrt((double)dp->dim) + 10.0);
    return 0;
}

/* What a released sum of `reported` updates costs: sl_dp_round_accounting, or with secure
 * aggregation the DDG multiplier at this round's quantizer (privacy/dp/ddg.h). */
static int round_charge(const sl_dp_coord_t *dp, double q, int64_t reported, double *qa, double *za)
{
    if (!dp->secure)
        return sl_dp_round_accounting(&dp->plan, q, reported, qa, za);
    *qa = q;
    *za = sl_ddg_noise_multiplier(&dp->sa_q, dp->plan.clip, sl_dp_round_client_noise_multiplier(&dp->plan),
                                  dp->dim, reported > 0 ? (size_t)reported : 0);
    return isnan(*za) ? sl_error(SL_EINVAL, "dp: no quantizer for round %llu", (unsigned long long)dp->round)
                      : 0;
}

/* Charge the accountant: write-ahead, so the record is durable in the ledger (when there is
 * one) before the charge takes effect; a resumed run replays it (sl_dp_coord_load). */
static int charge(sl_dp_coord_t *dp, double q, double z, int64_t steps, size_t inputs)
{
    int rc;
    if (dp->ledger) {
        sl_ledger_record_t rec = {.round = dp->round,
                                  .attempt = dp->attempt,
                                  .inputs = inputs > UINT32_MAX ? UINT32_MAX : (uint32_t)inputs,
                                  .mode = (uint32_t)dp->plan.mode,
                                  .q = q,
                                  .z = z,
                                  .steps = (uint64_t)steps};
        if ((rc = sl_ledger_append(dp->ledger, &rec)))
            return rc;
    }
    if ((rc = sl_dp_accountant_step(dp->acc, q, z, steps)))
        return rc;
    dp->last_q = q;
    dp->last_z = z;
    return 0;
}

/* ---- the aggregator ---------------------------------------------------------------------- */

static int dpagg_begin(void *self, uint64_t round, const uint64_t *clients, size_t n,
                       const sl_agg_emit_t *emit)
{
    sl_dp_coord_t *dp = self;
    int rc = dp->mean->begin_round(dp->mean->self, round, clients, n, emit);
    if (rc)
        return rc;
    dp->local_charged = 0;
    dp->count = 0;
    dp->count_sum = 0;
    dp->sampled = n;
    if (dp->engine)
        dp->registered = sl_engine_registered(dp->engine);
    else
        dp->registered = dp->population;
    return plan_round(dp, round);
}

static int dpagg_add(void *self, uint64_t client, const float *delta, size_t dim, double weight)
{
    (void)weight; /* uniform weights under DP: every clipped update counts once */
    sl_dp_coord_t *dp = self;
    if (dim != dp->dim)
        return sl_error(SL_EINVAL, "dp aggregator: dim %zu (want %zu)", dim, dp->dim);
    int rc;
    if (dp->plan.mode == SL_DP_LOCAL && !dp->local_charged) {
        /* local mode: every report is a release of its own to the coordinator, so the attempt
         * is charged (1, z) as its first report arrives, before it is used, whether or not
         * the attempt is released (a retried round costs one step per attempt with reports) */
        double qa, za;
        if ((rc = sl_dp_round_accounting(&dp->plan, round_q(dp), 0, &qa, &za)) || (rc = charge(dp, qa, za, 1, 0)))
            return rc == SL_EINVAL ? sl_error_wrap(SL_ESTATE, "dp: local-mode charge") : rc;
        dp->local_charged = 1;
    }
    memcpy(dp->scratch, delta, dim * sizeof *delta);
    double norm = 0;
    rc = sl_dp_clip(dp->scratch, dim, dp->bound, &norm); /* scratch (dim) clipped in place */
    if (rc == SL_ENOTFINITE)
        return sl_error(SL_EINVAL, "dp aggregator: update of client %llu is not finite",
                        (unsigned long long)client);
    if (rc)
        return rc;
    if (norm > dp->bound) {
        dp->clipped_total++;
        if (dp->plan.mode != SL_DP_CENTRAL)
            SL_WARN("dp: update of client %llu has norm %.4g, above the bound %.4g of a clipped and noised "
                    "update: "
                    "clipped",
                    (unsigned long long)client, norm, dp->bound);
    }
    /* the mean's sum (dim) += clipped (dim), weight 1 */
    if ((rc = dp->mean->add_update(dp->mean->self, client, dp->scratch, dim, 1.0)))
        return rc;
    if (dp->adaptive) /* +-1/2: exact in double, whatever the order */
        dp->count_sum += sl_dp_clip_count_value(norm, dp->plan.clip);
    dp->count++;
    return 0;
}

static int dpagg_finish(void *self, float *out, size_t dim, sl_agg_result_t *res)
{
    sl_dp_coord_t *dp = self;
    if (dim != dp->dim)
        return sl_error(SL_EINVAL, "dp aggregator: dim %zu (want %zu)", dim, dp->dim);
    res->count = dp->count;
    res->total_weight = (double)dp->count;
    if (dp->count == 0)
        return sl_error(SL_EQUORUM, "dp aggregator: no updates");
    if (dp->count < (size_t)dp->cfg.federation.min_clients)
        return 0; /* below quorum: the engine retries; nothing is released */
    sl_dp_noise_t ns;
    memset(&ns, 0, sizeof ns);
    int rc = sl_dp_noise_init(&ns, &dp->cfg, dp->round, UINT64_MAX);
    if (rc)
        return rc;
    /* sum (dim) = count * mean of the clipped updates, then += N(0, (z_u C)^2 I) in central mode */
    sl_agg_result_t inner;
    if ((rc = dp->mean->finish(dp->mean->self, out, dim, &inner)))
        goto done;
    for (size_t i = 0; i < dim; i++)
        dp->sum[i] = (double)out[i] * (double)dp->count;
    if ((rc = sl_dp_coordinator_finish_sum_f64(&dp->plan, &ns, dp->sum, dim)))
        goto done;
    if (dp->adaptive) {
        double count = dp->count_sum;
        if ((rc = sl_dp_coordinator_finish_count(&dp->plan, &ns, &count)))
            goto done;
        dp->ac.expected_clients = (double)(dp->sampled ? dp->sampled : dp->count);
        double est = NAN;
        double before = dp->ac.clip;
        if ((rc = sl_dp_adaptive_clip_update(&dp->ac, count, &est)))
            goto done;
        SL_INFO("dp: round %llu: clipped-count estimate %.3f, clip %.4g -> %.4g",
                (unsigned long long)dp->round, est, before, dp->ac.clip);
    }
    /* out (dim) = noised sum / sampled: a divisor that does not depend on who reported */
    double m = (double)(dp->sampled ? dp->sampled : dp->count);
    for (size_t i = 0; i < dim; i++)
        out[i] = (float)(dp->sum[i] / m);
    dp->pending = 1;
    dp->pending_round = dp->round;
    dp->pending_reported = dp->count;
    dp->count = 0; /* released */
done:
    sl_dp_noise_free(&ns);
    return rc;
}

static void dpagg_destroy(void *self)
{
    (void)self; /* the state belongs to the sl_dp_coord_t */
}

/* ---- the aggregator with secure aggregation (distributed DP, discrete noise shares) -------- */

static int dpsa_begin(void *self, uint64_t round, const uint64_t *clients, size_t n,
                      const sl_agg_emit_t *emit)
{
    sl_dp_coord_t *dp = self;
    dp->sa_charged = 0;
    dp->sa_included = 0;
    dp->sa_gate_rc = 0;
    dp->sampled = n;
    dp->registered = dp->engine ? sl_engine_registered(dp->engine) : dp->population;
    int rc = plan_round(dp, round);
    if (!rc)
        rc = dp->secure->begin_round(dp->secure->self, round, clients, n, emit);
    if (rc)
        return rc;
    /* Charge with the very quantizer the secure sum is decoded with, not a second
     * derivation of it. None when the secure aggregator failed the round itself (n < 2,
     * parameters that do not fit): nothing can be unmasked then, so nothing is charged. */
    const sl_quant_t *q = sl_aggregator_secagg_quant(dp->secure);
    if (q)
        dp->sa_q = *q;
    else
        memset(&dp->sa_q, 0, sizeof dp->sa_q);
    return 0;
}

/* The secure sum's unmask gate (sl_aggregator_secagg_set_unmask_gate): called right
 * before the server computes the noised sum of `inputs` noise shares. From then on the
 * coordinator can compute it, whether or not the engine goes on to release it (it may still
 * fail the attempt, e.g. when too few UPDATEs arrived, and retry the round), so this is
 * where the attempt is charged, after the ledger record is durable. The budget is checked
 * here too: if this charge would bring epsilon above dp.target_epsilon, the gate refuses,
 * the attempt aborts with nothing revealed and nothing charged, and the run ends with
 * status "budget" (dpsa_* return SL_EBUDGET). An attempt that aborts before the gate
 * revealed nothing (masked inputs alone are uniformly random) and costs nothing. */
static int unmask_gate(void *ctx, size_t inputs)
{
    sl_dp_coord_t *dp = ctx;
    if (dp->sa_charged) /* once per attempt (the server calls it once per round) */
        return 0;
    if (inputs < (size_t)dp->cfg.federation.min_clients) /* the server aborts first; never expected */
        SL_WARN("dp: round %llu: the secure sum holds %zu noise shares, fewer than min_clients = %lld",
                (unsigned long long)dp->round, inputs, (long long)dp->cfg.federation.min_clients);
    double qa, za, eps = NAN;
    int stop = 0;
    int rc = round_charge(dp, round_q(dp), (int64_t)inputs, &qa, &za);
    if (!rc && dp->cfg.dp.target_epsilon > 0)
        rc = sl_dp_accountant_would_exceed(dp->acc, qa, za, dp->cfg.dp.delta, dp->cfg.dp.target_epsilon, &stop,
                                           &eps);
    if (!rc && stop)
        rc = sl_error(SL_EBUDGET,
                      "dp: round %llu (attempt %u): unmasking its secure sum of %zu noise shares (q %.4g, noise "
                      "multiplier %.4g) would bring epsilon to %.4g, above dp.target_epsilon = %g: not unmasked "
                      "(nothing revealed, nothing charged); the budget is spent",
                      (unsigned long long)dp->round, dp->attempt, inputs, qa, za, eps, dp->cfg.dp.target_epsilon);
    if (!rc)
        rc = charge(dp, qa, za, 1, inputs);
    if (rc) {
        dp->sa_gate_rc = rc;
        snprintf(dp->sa_gate_msg, sizeof dp->sa_gate_msg, "%s", sl_last_error());
        return rc;
    }
    dp->sa_charged = 1;
    dp->sa_included = inputs;
    SL_INFO("dp: round %llu: secure sum of %zu noise shares charged (q %.4g, noise multiplier %.4g), unmasking",
            (unsigned long long)dp->round, inputs, qa, za);
    return 0;
}

/* After a call into the secure aggregator: a refusal at the gate is the run's business (the
 * aggregator itself only saw an aborted attempt). */
static int gate_result(sl_dp_coord_t *dp, int rc)
{
    if (dp->sa_gate_rc)
        return sl_error(dp->sa_gate_rc, "%s", dp->sa_gate_msg);
    return rc;
}

static int dpsa_msg(void *self, uint64_t client, uint32_t stage, const uint8_t *blob, size_t len,
                    const sl_agg_emit_t *emit)
{
    sl_dp_coord_t *dp = self;
    return gate_result(dp, dp->secure->secagg_message(dp->secure->self, client, stage, blob, len, emit));
}

static int dpsa_tick(void *self, double now, const sl_agg_emit_t *emit)
{
    sl_dp_coord_t *dp = self;
    return gate_result(dp, dp->secure->tick ? dp->secure->tick(dp->secure->self, now, emit) : 0);
}

static int dpsa_dropped(void *self, uint64_t client, const sl_agg_emit_t *emit)
{
    sl_dp_coord_t *dp = self;
    /* a dropout can close the unmasking stage */
    return gate_result(dp, dp->secure->client_dropped ? dp->secure->client_dropped(dp->secure->self, client, emit)
                                                      : 0);
}

static double dpsa_next_deadline(void *self)
{
    sl_dp_coord_t *dp = self;
    return dp->secure->next_deadline ? dp->secure->next_deadline(dp->secure->self) : INFINITY;
}

static void dpsa_report(void *self, sl_round_report_t *rep)
{
    sl_dp_coord_t *dp = self;
    if (dp->secure->report)
        dp->secure->report(dp->secure->self, rep);
}

static int dpsa_ready(void *self)
{
    sl_dp_coord_t *dp = self;
    return dp->secure->ready ? dp->secure->ready(dp->secure->self) : 1;
}

static int dpsa_finish(void *self, float *out, size_t dim, sl_agg_result_t *res)
{
    sl_dp_coord_t *dp = self;
    /* out (dim) = decoded noised sum / included count */
    int rc = gate_result(dp, dp->secure->finish(dp->secure->self, out, dim, res));
    if (rc)
        return rc;
    if (!dp->sa_charged || res->count != dp->sa_included)
        return sl_error(SL_ESTATE, "dp: round %llu: secure sum of %zu inputs released but %zu were charged",
                        (unsigned long long)dp->round, res->count, dp->sa_included);
    if (res->count >= (size_t)dp->cfg.federation.min_clients) {
        dp->pending = 1;
        dp->pending_round = dp->round;
        dp->pending_reported = res->count;
    }
    return 0;
}

int sl_dp_aggregator_new(sl_aggregator_t **out, sl_dp_coord_t *dp)
{
    *out = NULL;
    if (!dp)
        return sl_error(SL_EINVAL, "dp aggregator: no DP state");
    sl_aggregator_t *g = calloc(1, sizeof *g);
    if (!g)
        return sl_error(SL_ENOMEM, "dp aggregator: out of memory");
    g->self = dp;
    g->destroy = dpagg_destroy;
    if (dp->secure) {
        g->name = "dp_secagg";
        g->secure = 1;
        g->begin_round = dpsa_begin;
        g->secagg_message = dpsa_msg;
        g->tick = dpsa_tick;
        g->next_deadline = dpsa_next_deadline;
        g->client_dropped = dpsa_dropped;
        g->ready = dpsa_ready;
        g->report = dpsa_report;
        g->finish = dpsa_finish;
    } else {
        g->name = "dp_mean";
        g->begin_round = dpagg_begin;
        g->add_update = dpagg_add;
        g->finish = dpagg_finish;
    }
    *out = g;
    return 0;
}

/* ---- hooks --------------------------------------------------------------------------------- */

int sl_dp_coord_prepare_task(sl_dp_coord_t *dp, uint64_t round, sl_task_info_t *task)
{
    if (dp->round != round || dp->plan.mode == SL_DP_OFF) { /* no begin_round yet (a foreign aggregator) */
        int rc = plan_round(dp, round);
        if (rc)
            return rc;
    }
    dp->attempt = task->attempt; /* for the ledger's records */
    task->dp_mode = (uint8_t)dp->plan.mode;
    task->dp_clip = dp->plan.clip;
    task->dp_noise = sl_dp_round_client_noise_multiplier(&dp->plan);
    /* Round 1, or a resumed run whose budget is spent: fail before anyone trains. A retry
     * under SecAgg is left to the unmask gate, which decides with the inputs actually in
     * the sum (>= min_clients, so it never allows more than this check would) and ends the
     * run with status "budget" instead of failing it. */
    if (dp->cfg.dp.target_epsilon > 0 && !(dp->secure && task->attempt > 0)) {
        double qa, za, eps = NAN;
        int stop = 0;
        int rc = round_charge(dp, round_q(dp), dp->cfg.federation.min_clients, &qa, &za);
        if (!rc)
            rc = sl_dp_accountant_would_exceed(dp->acc, qa, za, dp->cfg.dp.delta, dp->cfg.dp.target_epsilon,
                                               &stop, &eps);
        if (rc)
            return rc;
        if (stop && sl_dp_accountant_total_steps(dp->acc) == 0)
            return sl_error(
                SL_EBUDGET,
                "dp: a single round costs epsilon %.4g (q %.4g, noise multiplier %.4g), more than "
                "dp.target_epsilon = %g: raise dp.noise_multiplier or lower federation.fraction",
                eps, qa, za, dp->cfg.dp.target_epsilon);
        if (stop)
            return sl_error(SL_EBUDGET,
                            "dp: round %llu would bring epsilon to %.4g, above dp.target_epsilon = %g "
                            "(the budget is spent)",
                            (unsigned long long)round, eps, dp->cfg.dp.target_epsilon);
    }
    return 0;
}

int sl_dp_coord_round_end(sl_dp_coord_t *dp, sl_round_report_t *rep)
{
    if (!dp->pending || dp->pending_round != rep->round)
        return sl_error(SL_ESTATE,
                        "dp: round %llu ended but the DP aggregator released no sum for it (was the DP "
                        "aggregator passed to the engine?)",
                        (unsigned long long)rep->round);
    dp->pending = 0;
    double q = round_q(dp), qa, za;
    int rc;
    /* with secure aggregation the round was charged at its unmask gate, in local mode at
     * each attempt's first report */
    if (!dp->secure && dp->plan.mode != SL_DP_LOCAL) {
        if ((rc = sl_dp_round_accounting(&dp->plan, q, (int64_t)dp->pending_reported, &qa, &za)))
            return rc;
        if ((rc = charge(dp, qa, za, 1, dp->pending_reported)))
            return rc;
    }
    double eps = 0;
    if ((rc = sl_dp_accountant_epsilon(dp->acc, dp->cfg.dp.delta, &eps, NULL)))
        return rc;
    rep->epsilon = eps;
    double target = dp->cfg.dp.target_epsilon;
    if (!(target > 0) || rep->round >= (uint64_t)dp->cfg.federation.rounds)
        return 0;
    if (eps > target) { /* the population shrank and q grew: already over */
        SL_WARN(
            "dp: epsilon %.4g is above dp.target_epsilon = %g after round %llu (q rose to %.4g, or a retried "
            "attempt's unmasked sum was charged too): stopping",
            eps, target, (unsigned long long)rep->round, dp->last_q);
        return SL_EBUDGET;
    }
    double qn, zn, eps_next = NAN;
    int stop = 0;
    if ((rc = round_charge(dp, q, dp->cfg.federation.min_clients, &qn, &zn)) ||
        (rc = sl_dp_accountant_would_exceed(dp->acc, qn, zn, dp->cfg.dp.delta, target, &stop, &eps_next)))
        return rc;
    if (stop) {
        SL_INFO(
            "dp: privacy budget reached after round %llu: epsilon %.4g, one more round would make it %.4g > "
            "dp.target_epsilon = %g",
            (unsigned long long)rep->round, eps, eps_next, target);
        return SL_EBUDGET;
    }
    return 0;
}

int sl_dp_coord_save(sl_dp_coord_t *dp, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    uint8_t *acc = NULL;
    size_t acc_len = 0;
    int rc = sl_dp_accountant_encode(dp->acc, &acc, &acc_len);
    if (rc)
        return rc;
    size_t total = EXT_HEADER + acc_len + (dp->adaptive ? SL_DP_ADAPTIVE_CLIP_BYTES : 0);
    uint8_t *b = malloc(total);
    if (!b) {
        free(acc);
        return sl_error(SL_ENOMEM, "dp: out of memory (checkpoint state)");
    }
    size_t covered = 0; /* every ledger record is in this accountant */
    if (dp->ledger)
        (void)sl_ledger_records(dp->ledger, &covered);
    memcpy(b, EXT_MAGIC, 4);
    sl_put_le32(b + 4, EXT_VERSION);
    sl_put_le32(b + 8, dp->adaptive ? 1u : 0u);
    sl_put_le64(b + 12, covered);
    sl_put_le64(b + 20, acc_len);
    memcpy(b + EXT_HEADER, acc, acc_len);
    free(acc);
    if (dp->adaptive) {
        size_t n = 0;
        if ((rc = sl_dp_adaptive_clip_encode(&dp->ac, b + EXT_HEADER + acc_len, SL_DP_ADAPTIVE_CLIP_BYTES,
                                             &n))) {
            free(b);
            return rc;
        }
    }
    *out = b;
    *len = total;
    return 0;
}

/* Replay into acc the ledger records the checkpoint does not cover (its accountant holds the
 * first `covered`): the charges of a coordinator stopped between a charge and the next
 * checkpoint. The covered ones must add up to the accountant's steps (else the ledger is
 * another run's, or was cut). */
static int replay_ledger(sl_dp_coord_t *dp, sl_dp_accountant_t *acc, uint64_t covered)
{
    size_t n = 0;
    const sl_ledger_record_t *r = sl_ledger_records(dp->ledger, &n);
    const char *path = sl_ledger_path(dp->ledger);
    if (covered > n)
        return sl_error(SL_EFORMAT,
                        "%s holds %zu privacy charges but the checkpoint covers %llu: the ledger was cut or is "
                        "not this run's; resuming would forget privacy spent",
                        path, n, (unsigned long long)covered);
    uint64_t steps = 0;
    for (size_t i = 0; i < covered; i++)
        steps += r[i].steps;
    if ((int64_t)steps != sl_dp_accountant_total_steps(acc))
        return sl_error(SL_EFORMAT,
                        "%s: its first %llu charges hold %llu steps, the checkpoint's accountant %lld: the ledger "
                        "is not this run's",
                        path, (unsigned long long)covered, (unsigned long long)steps,
                        (long long)sl_dp_accountant_total_steps(acc));
    for (size_t i = (size_t)covered; i < n; i++) {
        int rc = sl_dp_accountant_step(acc, r[i].q, r[i].z, (int64_t)r[i].steps);
        if (rc)
            return rc;
        SL_WARN("dp: %s: record %zu (round %llu, attempt %u: q %.4g, noise multiplier %.4g, %llu step(s)) is newer "
                "than the checkpoint: charged again (the coordinator stopped after that charge, before the "
                "round's checkpoint)",
                path, i, (unsigned long long)r[i].round, r[i].attempt, r[i].q, r[i].z,
                (unsigned long long)r[i].steps);
    }
    return 0;
}

int sl_dp_coord_load(sl_dp_coord_t *dp, const uint8_t *buf, size_t len)
{
    if (!buf || len == 0)
        return sl_error(SL_EFORMAT, "dp: the checkpoint has no DP state (was the run started without DP?); "
                                    "resuming would lose the privacy spent so far");
    if (len < EXT_HEADER1 || memcmp(buf, EXT_MAGIC, 4) != 0)
        return sl_error(SL_EFORMAT, "dp: checkpoint DP state: bad magic or truncated (%zu bytes)", len);
    uint32_t ver = sl_get_le32(buf + 4), flags = sl_get_le32(buf + 8);
    if (ver != EXT_VERSION && ver != 1u)
        return sl_error(SL_EFORMAT, "dp: checkpoint DP state: version %u (this build reads 1 and %u)", ver,
                        EXT_VERSION);
    size_t head = ver == 1u ? EXT_HEADER1 : EXT_HEADER;
    if (len < head)
        return sl_error(SL_EFORMAT, "dp: checkpoint DP state: truncated (%zu bytes)", len);
    uint64_t covered = ver == 1u ? 0 : sl_get_le64(buf + 12);
    uint64_t acc_len = sl_get_le64(buf + head - 8);
    if (flags > 1u)
        return sl_error(SL_EFORMAT, "dp: checkpoint DP state: unknown flags %#x", flags);
    int has_ac = (int)(flags & 1u);
    size_t need_ac = has_ac ? SL_DP_ADAPTIVE_CLIP_BYTES : 0;
    if (acc_len > len - head || len - head - acc_len != need_ac)
        return sl_error(SL_EFORMAT, "dp: checkpoint DP state: length %zu does not match its contents", len);
    if (has_ac != dp->adaptive)
        return sl_error(SL_EFORMAT,
                        "dp: checkpoint DP state %s adaptive-clip state but dp.adaptive_clip = %s",
                        has_ac ? "has" : "lacks", dp->adaptive ? "true" : "false");
    sl_dp_accountant_t *acc = NULL;
    int rc = sl_dp_accountant_decode(buf + head, (size_t)acc_len, &acc);
    if (rc)
        return rc;
    sl_dp_adaptive_clip_t ac = dp->ac;
    if (has_ac && (rc = sl_dp_adaptive_clip_decode(&ac, buf + head + acc_len, SL_DP_ADAPTIVE_CLIP_BYTES))) {
        sl_dp_accountant_destroy(&acc);
        return rc;
    }
    if (dp->ledger && ver == 1u) { /* a checkpoint from before the ledger: nothing to replay */
        size_t n = 0;
        (void)sl_ledger_records(dp->ledger, &n);
        covered = n;
        SL_WARN("dp: the checkpoint predates the privacy ledger: no charges replayed from %s",
                sl_ledger_path(dp->ledger));
    }
    if (dp->ledger && (rc = replay_ledger(dp, acc, covered))) {
        sl_dp_accountant_destroy(&acc);
        return rc;
    }
    sl_dp_accountant_destroy(&dp->acc);
    dp->acc = acc;
    dp->ac = ac;
    double eps = 0;
    if (sl_dp_accountant_epsilon(dp->acc, dp->cfg.dp.delta, &eps, NULL) == 0)
        SL_INFO("dp: resumed: %lld rounds charged, epsilon %.4g so far",
                (long long)sl_dp_accountant_total_steps(acc), eps);
    return 0;
}

int sl_dp_coord_open_ledger(sl_dp_coord_t *dp, const char *path, int resume)
{
    sl_ledger_t *l = NULL;
    int rc = resume ? sl_ledger_open(&l, path) : sl_ledger_create(&l, path);
    if (rc == SL_ENOTFOUND)
        return sl_error(SL_ENOTFOUND,
                        "dp: %s is missing: without the privacy ledger the resumed run could forget privacy "
                        "spent after the last checkpoint",
                        path);
    if (rc)
        return rc;
    sl_ledger_close(&dp->ledger);
    dp->ledger = l;
    return 0;
}

static int hook_prepare(void *ctx, uint64_t round, sl_task_info_t *task)
{
    return sl_dp_coord_prepare_task(ctx, round, task);
}
static int hook_round_end(void *ctx, sl_round_report_t *rep, const float *global, size_t dim)
{
    (void)global, (void)dim;
    return sl_dp_coord_round_end(ctx, rep);
}
static int hook_save(void *ctx, uint8_t **out, size_t *len)
{
    return sl_dp_coord_save(ctx, out, len);
}
static int hook_load(void *ctx, const uint8_t *buf, size_t len)
{
    return sl_dp_coord_load(ctx, buf, len);
}

void sl_dp_coord_hooks(sl_dp_coord_t *dp, sl_engine_hooks_t *hooks)
{
    hooks->prepare_task = hook_prepare;
    hooks->round_end = hook_round_end;
    hooks->ext_save = hook_save;
    hooks->ext_load = hook_load;
    hooks->hook_ctx = dp;
}

double sl_dp_coord_epsilon(const sl_dp_coord_t *dp)
{
    double eps = 0;
    if (sl_dp_accountant_epsilon(dp->acc, dp->cfg.dp.delta, &eps, NULL))
        return NAN;
    return sl_dp_accountant_total_steps(dp->acc) ? eps : 0.0;
}

int64_t sl_dp_coord_rounds(const sl_dp_coord_t *dp)
{
    return sl_dp_accountant_total_steps(dp->acc);
}

void sl_dp_coord_last_charge(const sl_dp_coord_t *dp, double *q, double *z)
{
    if (q)
        *q = dp->last_q;
    if (z)
        *z = dp->last_z;
}

uint64_t sl_dp_coord_clipped(const sl_dp_coord_t *dp)
{
    return dp->clipped_total;
}
const sl_dp_accountant_t *sl_dp_coord_accountant(const sl_dp_coord_t *dp)
{
    return dp->acc;
}
