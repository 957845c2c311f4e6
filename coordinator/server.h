/* coordinator/server: the coordinator's I/O loop: one ROUTER transport around the engine.
 *
 *   sl_transport_t *t;  sl_engine_t *e;       (created by the caller)
 *   rc = sl_coordinator_run(e, t, &stop_flag, NULL, NULL);
 *
 * Loop: zmq_poll on the socket until the engine's next deadline (no busy wait; it includes
 * the aggregator's SecAgg+ stage deadlines; at most 1 s, to see *stop), feed each
 * received message to the engine (malformed frame structures are logged and dropped),
 * tick, send the outbox (a peer the ROUTER no longer knows is reported with
 * sl_engine_peer_gone), until the engine is DONE or FAILED, or *stop becomes non-zero
 * (then BYE to every client and return SL_EINTR). After DONE the loop lingers briefly
 * so the BYEs leave.
 */
#ifndef SL_SERVER_H
#define SL_SERVER_H

#include "coordinator/engine.h"
#include "core/transport.h"

#include <signal.h>

/* Called after every completed round (progress bars); may be NULL. */
typedef void (*sl_progress_fn)(void *ctx, const sl_round_report_t *rep);

/* Returns 0 when the run completed (or stopped on budget), the engine's failure code
 * (message in sl_last_error) when it FAILED, SL_EINTR when *stop was set. */
SL_NODISCARD int sl_coordinator_run(sl_engine_t *e, sl_transport_t *t, volatile sig_atomic_t *stop,
                                    sl_progress_fn progress, void *progress_ctx);

#endif
