/* coordinator/secagg: the SecAgg+ secure aggregator (privacy/secagg) plugged into the round
 * engine through sl_aggregator_t (.secure = 1). The coordinator learns only the modular sum
 * of the masked, quantized deltas of the clients that finished the masked-input stage.
 *
 * Per round:
 *   begin_round  maps the sampled client ids to SecAgg indices 0..n-1 (in the engine's
 *                order), sizes the quantizer (sl_quant_init) and the protocol parameters
 *                (sl_secagg_params_from_config), starts the server and emits one SETUP per
 *                client (SECAGG_DOWN, stage = the SecAgg message type).
 *   secagg_message  SECAGG_UP blobs -> sl_secagg_server_handle; replies are emitted to
 *                the client ids named by the outbox indices. A malformed/forged blob is
 *                SL_EPROTO (the engine strikes the peer); a late one is ignored.
 *   tick         stage deadlines (see below): sl_secagg_server_close_stage drops whoever
 *                did not answer.
 *   next_deadline  the open stage's deadline (or the end of the grace period after DONE):
 *                the engine wakes up exactly then.
 *   client_dropped  the engine lost a client (BYE, unreachable, banned, error report):
 *                sl_secagg_server_drop, so the stage closes as soon as every remaining
 *                client answered instead of at its deadline.
 *   ready        1 once the protocol is ABORTED (the round closes early), or DONE and every
 *                included client's UNMASK_RESP arrived (the sum may be complete at the
 *                threshold; waiting for the rest keeps their answers from arriving after
 *                the round closed, which the engine would count against them), or DONE
 *                for T/16 (T = round_timeout: a client that vanished while unmasking).
 *   finish       decodes the sum (sl_quant_decode; with distributed DP the noised sum) and
 *                divides by the number of included clients; SL_EQUORUM if the protocol
 *                aborted or did not finish (fewer survivors than the threshold): the
 *                engine counts the round as failed.
 *   report       the attempt's figures into rep->secagg (see sl_secagg_report_t and
 *                docs/secagg.md): per stage the time from its opening to its close on the
 *                engine clock, the SecAgg message bytes of that stage in each direction
 *                (SETUP+ADVERTISE, KEYS+SHARES, FORWARD+MASKED, UNMASK_REQ+UNMASK_RESP,
 *                ABORT notices in the stage whose close sent them; late and refused blobs
 *                included), the clients that entered it and the ones that did not go on;
 *                the number of inputs in the sum; earlier aborted attempts of the round.
 *
 * Quantization: per-coordinate clip c = [dp] clip (the L2 clip norm: an update inside the
 * L2 ball has every coordinate in [-c, c]; coordinates outside are clipped), bits =
 * [secagg] bits. Without DP: no headroom; clients must use the same [dp] clip and [secagg]
 * bits. With dp.mode = distributed (the secure sum of coordinator/dp.h's DP aggregator):
 * sl_ddg_quant_init (privacy/dp/ddg.h) from the round plan, so the ring has headroom for the
 * clients' discrete Gaussian noise shares, and the server aborts before unmasking when
 * fewer than [federation] min_clients inputs (noise shares) survive; its parameter errors
 * (noise too large or too fine for the ring) fail the run. Either way each client builds
 * the same quantizer from SETUP's n and its TASK and refuses its input if its B differs
 * from SETUP's (client/secagg.h).
 * Weights: every included client has weight 1 (the sum is unweighted: a client's example
 * count would leak through a weighted sum only as much as it does in the UPDATE stats, but
 * weighting inside the mask would have to be agreed before training); the result is the
 * plain mean over the included clients, res->count = res->total_weight = that number.
 * Stage deadlines, with T = [federation] round_timeout and t0 = begin_round's clock:
 * ADVERTISE and SHARES close T/8 after they open, MASKED (which also covers local training)
 * at max(opened + T/8, t0 + 3T/4), UNMASK T/8 after it opens.
 */
#ifndef SL_COORD_SECAGG_H
#define SL_COORD_SECAGG_H

#include "coordinator/aggregator.h"
#include "core/config.h"
#include "core/error.h"
#include "privacy/secagg/quantize.h"
#include "privacy/secagg/secagg.h"

#include <stddef.h>

/* A heap secure aggregator for dim-coordinate deltas. cfg is copied (its [dp] clip,
 * [secagg] and [federation] round_timeout are used). Free with sl_aggregator_destroy. */
SL_NODISCARD int sl_aggregator_secagg_new(sl_aggregator_t **out, const sl_config_t *cfg, size_t dim);

/* The figures of the current (or last) attempt so far, as report() would give them.
 * SL_EINVAL if agg is not a SecAgg+ aggregator. */
SL_NODISCARD int sl_aggregator_secagg_stats(const sl_aggregator_t *agg, sl_secagg_report_t *out);

/* Give every round's SecAgg+ server this unmask gate (sl_secagg_server_set_unmask_gate):
 * called right before the sum is computed, with the number of inputs in it; a non-zero
 * return aborts the attempt with nothing revealed (the ABORTs go out, the round fails).
 * coordinator/dp.c writes its privacy ledger and checks the budget there. SL_EINVAL if g
 * is not a SecAgg+ aggregator. */
SL_NODISCARD int sl_aggregator_secagg_set_unmask_gate(sl_aggregator_t *g, sl_secagg_unmask_gate_fn fn, void *ctx);

/* The quantizer of the round begin_round started (the one the sum is decoded with), or
 * NULL if g is not a SecAgg+ aggregator or its current round could not start (n < 2,
 * parameters that do not fit). Valid until the next begin_round. */
const sl_quant_t *sl_aggregator_secagg_quant(const sl_aggregator_t *g);

#endif
