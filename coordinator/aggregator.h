/* coordinator/aggregator: how one round's client updates become one aggregated delta.
 *
 * The engine owns one aggregator and calls, per round:
 *   begin_round(round, sampled clients)            once, before the TASK broadcast
 *   add_update(client, delta, weight)              for each accepted UPDATE, as it arrives
 *   secagg_message(client, stage, blob)            for each SECAGG_UP (secure aggregators)
 *   tick(now)                                      on every engine tick (stage deadlines)
 *   next_deadline()                                when the aggregator next needs a tick
 *   client_dropped(client)                         a sampled client left / timed out
 *   ready()                                        secure: every stage finished
 *   finish(out_mean)                               once, when the round closes
 *   report(rep)                                    after a successful finish: add its own
 *                                                  figures to the round's metrics line
 *
 * Built-in aggregators:
 *   mean          streaming weighted mean: an exact 128-bit fixed-point running sum (the
 *                 result does not depend on arrival order), O(dim) memory
 *                 whatever the number of clients (the default, FedAvg and the server
 *                 optimizers all consume its output)
 *   median        coordinate-wise median, unweighted        } buffer every update:
 *   trimmed_mean  coordinate-wise trimmed mean, unweighted  } O(clients x dim) memory,
 *                 allowed only with secure aggregation off (they need individual vectors)
 *
 * Extension points (what the integrator plugs in, without touching the engine):
 *   DP (central / distributed): wrap `mean` with an aggregator whose add_update clips
 *     each delta to C (and counts clipped updates for adaptive clipping) before folding,
 *     and whose finish adds N(0, (sigma C)^2) to the sum and divides by the expected count;
 *     the accountant steps in the engine's round_end hook.
 *   SecAgg+: an aggregator with .secure = 1. The engine then accepts UPDATEs without a
 *     payload (stats and weight only), routes every SECAGG_UP blob to secagg_message, lets
 *     the aggregator send SECAGG_DOWN blobs through `emit`, keeps the round open until
 *     ready() or the round deadline, and finish() returns the unmasked mean computed from
 *     the modular sum. The coordinator never sees an individual vector.
 */
#ifndef SL_AGGREGATOR_H
#define SL_AGGREGATOR_H

#include "coordinator/runlog.h"
#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

/* How a secure aggregator sends SECAGG_DOWN messages: to one client, `stage`, `blob`
 * (copied before emit returns). Provided by the engine, with its clock at the call (the
 * `now` of the engine call that led here: stage timings and deadlines use it). */
typedef struct {
    int (*send)(void *engine, uint64_t client, uint32_t stage, const uint8_t *blob, size_t len);
    void *engine;
    double now;
} sl_agg_emit_t;

typedef struct {
    size_t count;        /* updates that went into the result */
    double total_weight; /* sum of their weights */
} sl_agg_result_t;

typedef struct sl_aggregator {
    const char *name;
    int secure;  /* 1 = updates arrive masked through SECAGG_* stages */
    int buffers; /* 1 = O(clients x dim) memory (robust aggregators) */
    void *self;
    /* Required. */
    SL_NODISCARD int (*begin_round)(void *self, uint64_t round, const uint64_t *clients, size_t n,
                                    const sl_agg_emit_t *emit);
    /* Required unless secure. delta: (dim) floats, finite, already checked against
     * update_norm_bound; weight > 0. The pointer is only valid during the call. */
    SL_NODISCARD int (*add_update)(void *self, uint64_t client, const float *delta, size_t dim,
                                   double weight);
    /* Secure only (else NULL). */
    SL_NODISCARD int (*secagg_message)(void *self, uint64_t client, uint32_t stage, const uint8_t *blob,
                                       size_t len, const sl_agg_emit_t *emit);
    /* Optional (NULL = nothing to do). */
    SL_NODISCARD int (*tick)(void *self, double now, const sl_agg_emit_t *emit);
    /* Absolute time (engine clock) by which tick must be called, INFINITY if none: the
     * engine folds it into sl_engine_next_deadline, so no caller has to poll. */
    double (*next_deadline)(void *self);
    /* A sampled client of the running round left: BYE, unreachable or it reported an
     * error. Secure aggregators hear it at once, also after the client's UPDATE (the
     * protocol still needs it), and also when the client is banned; others hear it only
     * for clients that never answered, when it happens and at the round's close (timed
     * out). */
    SL_NODISCARD int (*client_dropped)(void *self, uint64_t client, const sl_agg_emit_t *emit);
    int (*ready)(void *self); /* secure: 1 when finish can run before the deadline */
    /* After finish returned 0: add the aggregator's own figures to the round's report
     * (e.g. rep->secagg), before the round_end hook and the metrics line. */
    void (*report)(void *self, sl_round_report_t *rep);
    /* Required. out: (dim) aggregated delta. SL_EQUORUM if nothing was aggregated. */
    SL_NODISCARD int (*finish)(void *self, float *out, size_t dim, sl_agg_result_t *res);
    void (*destroy)(void *self);
} sl_aggregator_t;

/* Built-ins. Each returns a heap aggregator; free with sl_aggregator_destroy. */
SL_NODISCARD int sl_aggregator_mean_new(sl_aggregator_t **out, size_t dim);
SL_NODISCARD int sl_aggregator_median_new(sl_aggregator_t **out, size_t dim);
/* trim in [0, 0.5): fraction of values cut at each end of every coordinate. */
SL_NODISCARD int sl_aggregator_trimmed_mean_new(sl_aggregator_t **out, size_t dim, double trim);

/* Calls agg->destroy(agg->self) and frees agg; NULL-safe, nulls *agg. */
void sl_aggregator_destroy(sl_aggregator_t **agg);

#endif
