/* coordinator/engine: the federated round engine, sans-I/O.
 *
 * Feed it received messages (sl_engine_on_message) and clock ticks (sl_engine_tick);
 * after each call, send what sl_engine_outbox returns. It never touches a socket and
 * never reads the clock itself, so a test drives 1,000 simulated clients in one process
 * and the real coordinator (coordinator/server.h) runs exactly the same code.
 *
 * Life of a run
 *   WAITING   HELLOs register clients (client id, data sizes, modalities); each gets a
 *             WELCOME. Round 1 starts when start_clients are registered (or start_timeout
 *             passed with >= min_clients).
 *   ROUND     sample (fraction of the live registered clients, >= min_clients, <= max_clients;
 *             from sl_rng_init(seed, "sample", round, attempt) over clients sorted by id),
 *             aggregator->begin_round, TASK (global vector + training config) to each
 *             sampled client, then collect UPDATEs, each folded into the aggregator as it
 *             arrives. The round closes when every sampled client answered (or left), or
 *             at the deadline (federation.round_timeout). Quorum = federation.min_clients
 *             updates: below it the round is retried (same round, attempt + 1, new sample)
 *             up to max_retries times with quorum_policy = retry, else the run FAILS with
 *             SL_EQUORUM and a message. Otherwise: aggregator->finish -> strategy step ->
 *             aggregator->report (its own metrics, e.g. SecAgg+ stages) -> centralized
 *             evaluation hook (every eval_every rounds and at the last round) -> round_end
 *             hook -> metrics line + checkpoint (when a runlog is attached). A sampled
 *             client that leaves (BYE, unreachable, ERROR; banned, under SecAgg) is
 *             reported to aggregator->client_dropped at once.
 *             When the run ends (DONE, FAILED, stopped) summary.json is written too.
 *   FINAL_EVAL  (opts.final_eval) EVALUATE with the final vector to every live client,
 *             RESULTs collected until all answered or the deadline.
 *   DONE      BYE sent to every client. FAILED: BYE too; sl_engine_error() says why.
 *
 * Validation, before any state change (see docs/protocol.md for the full table):
 *   codec checks (sl_wire_decode), then: version, sender id == the client id registered
 *   for that routing id, vector length == dim, layout hash, round == current round, client
 *   sampled and not yet answered, update norm <= federation.update_norm_bound (when > 0).
 *   A late update (earlier round) or a duplicate is discarded and counted; a malformed
 *   message gets an ERROR reply and counts against the peer, registered or not:
 *   net.max_invalid_messages invalid messages ban the peer for net.cooldown_seconds
 *   (messages ignored; the banned hook extends it to the peer's key). Messages above
 *   net.max_messages_per_second per peer, registered or not, are dropped. A client that reconnects
 *   (new routing id, same client id) replaces its old registration; one that missed a
 *   round is sampled again in later rounds.
 *
 * Memory: O(dim) for the global vector, aggregation and server state plus O(clients)
 * registry, unless a buffering (robust) aggregator is chosen.
 */
#ifndef SL_ENGINE_H
#define SL_ENGINE_H

#include "coordinator/aggregator.h"
#include "coordinator/checkpoint.h"
#include "coordinator/runlog.h"
#include "core/config.h"
#include "core/error.h"
#include "core/transport.h"
#include "core/wire.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sl_engine sl_engine_t;

typedef enum {
    SL_ENGINE_WAITING = 0,
    SL_ENGINE_ROUND,
    SL_ENGINE_FINAL_EVAL,
    SL_ENGINE_DONE,
    SL_ENGINE_FAILED
} sl_engine_state_t;

/* Hooks: all optional (NULL). Each gets opts.hook_ctx. A hook returning < 0 fails the run
 * with that code (its sl_error message kept), except round_end returning SL_EBUDGET,
 * which ends the run cleanly (status "budget": the privacy budget is spent). So does an
 * aggregator call (secagg_message, tick, client_dropped, finish) returning SL_EBUDGET: the
 * DP aggregator refused to unmask a secure sum the budget cannot pay for; the round is
 * abandoned unreleased and the checkpoint stays at the last completed round. */
typedef struct {
    /* Centralized evaluation of the global vector (the CLI runs sl_evaluate on the held-out
     * users). Fill out->examples/loss/accuracy/macro_f1. */
    int (*central_eval)(void *ctx, uint64_t round, const float *global, size_t dim, sl_eval_info_t *out);
    /* Adjust a TASK's training config before the broadcast (e.g. adaptive DP clip). */
    int (*prepare_task)(void *ctx, uint64_t round, sl_task_info_t *task);
    /* After the strategy step and evaluation, before the metrics line and the checkpoint:
     * the DP accountant steps here and fills rep->epsilon; SL_EBUDGET stops the run. */
    int (*round_end)(void *ctx, sl_round_report_t *rep, const float *global, size_t dim);
    /* HELLO admission beyond the built-in checks: e.g. bind client id <-> CURVE key
     * (peer->user_id). Return 0 to admit, < 0 to refuse (the message becomes the reason). */
    int (*authorize)(void *ctx, uint64_t client_id, const sl_peer_t *peer, const sl_hello_info_t *hello);
    /* Extension state in checkpoints (accountant, adaptive clip, ...). save: *out malloc'd. */
    int (*ext_save)(void *ctx, uint8_t **out, size_t *len);
    int (*ext_load)(void *ctx, const uint8_t *buf, size_t len);
    /* A peer was banned for `seconds` (too many invalid messages): e.g. refuse its CURVE
     * key (peer->user_id) at the ZAP handler so a reconnect does not escape the ban. */
    void (*banned)(void *ctx, const sl_peer_t *peer, double seconds);
    void *hook_ctx;
} sl_engine_hooks_t;

typedef struct {
    const sl_config_t *cfg;      /* copied at _new: federation.*, train.* (TASK), dp.*, net.* */
    size_t dim;                  /* trainable vector length */
    const float *init;           /* (dim) initial global vector, copied */
    uint64_t layout;             /* layout hash clients must match (0 = not checked) */
    sl_aggregator_t *aggregator; /* NULL = from cfg (mean / median / trimmed_mean); else the
                                  * engine takes ownership (DP / SecAgg wrappers) */
    size_t start_clients;        /* registrations before round 1; 0 = min_clients */
    double start_timeout;        /* seconds after the first tick; 0 = wait for start_clients */
    int final_eval;              /* federated evaluation of the final vector on every client */
    size_t max_uploads; /* 0 = federation.upload_window. Upload credits: at most this many clients upload at
                         * once (TASK "cred": READY -> GRANT -> UPDATE), bounding the coordinator's receive
                         * buffers to max_uploads x model whatever the number of clients; 0 = no credits
                         * (clients upload as soon as they trained). Ignored under SecAgg. */
    const sl_checkpoint_t *resume; /* continue after resume->round (NULL = fresh run) */
    sl_runlog_t *runlog;           /* borrowed; NULL = no metrics/checkpoint files */
    sl_engine_hooks_t hooks;
} sl_engine_opts_t;

/* A message to send. Views valid until the next engine call. */
typedef struct {
    sl_peer_t peer;
    uint64_t client; /* destination client id (0 if unregistered peer) */
    const uint8_t *header;
    size_t header_len;
    const void *payload; /* NULL = no payload frame */
    size_t payload_len;
    sl_shared_buf_t *shared; /* non-NULL: payload lives in this refcounted buffer (the
                              * round's broadcast snapshot): send it with
                              * sl_transport_send_shared (zero copy) */
} sl_outmsg_t;

/* Validates opts (SL_ECONFIG for e.g. a robust aggregator with secagg.enabled, or a
 * resume checkpoint whose dim/seed differ). */
SL_NODISCARD int sl_engine_new(sl_engine_t **out, const sl_engine_opts_t *opts);
void sl_engine_destroy(sl_engine_t **e);

/* Driving it (what coordinator/server.c does; a custom loop does the same):
 *   loop: recv with timeout until sl_engine_next_deadline; sl_engine_on_message for a
 *   message; then sl_engine_tick(now) (every iteration: it also starts round 1 once enough
 *   clients registered); after EACH engine call send everything sl_engine_outbox lists;
 *   report undeliverable peers with sl_engine_peer_gone; stop at DONE / FAILED. */

/* One received message: frames as from sl_transport_recv; `now` in seconds (sl_now()).
 * Bad peer input is handled here (ERROR reply queued, logged, counted) and returns 0;
 * < 0 only when the run itself fails (hook error, out of memory, quorum failure), after
 * which the state is FAILED. */
SL_NODISCARD int sl_engine_on_message(sl_engine_t *e, const sl_peer_t *peer, const uint8_t *hdr,
                                      size_t hdr_len, const uint8_t *payload, size_t payload_len, double now);

/* Time passes: start rounds, close rounds at their deadline, retry, finish. Same returns. */
SL_NODISCARD int sl_engine_tick(sl_engine_t *e, double now);

/* The transport dropped a message from `peer` with a bad frame structure (SL_EPROTO from
 * sl_transport_recv): it counts against the peer like an undecodable message (strike,
 * ban past net.max_invalid_messages), without a reply. Leaves the outbox alone. */
void sl_engine_on_bad_frame(sl_engine_t *e, const sl_peer_t *peer, double now);

/* The transport could not deliver to `peer` (gone): treat its client as dropped. */
SL_NODISCARD int sl_engine_peer_gone(sl_engine_t *e, const sl_peer_t *peer, double now);

/* Stop early (SIGINT): BYE to every client, state DONE with status "stopped". */
SL_NODISCARD int sl_engine_shutdown(sl_engine_t *e, const char *why);

/* Messages queued by the last call (cleared at the start of the next call). */
size_t sl_engine_outbox(sl_engine_t *e, const sl_outmsg_t **msgs);

/* Absolute time (same clock as `now`) by which sl_engine_tick must be called; INFINITY if
 * only messages can make progress. During a round: the round deadline or the aggregator's
 * next_deadline (SecAgg+ stage deadlines), whichever comes first. */
double sl_engine_next_deadline(const sl_engine_t *e);

sl_engine_state_t sl_engine_state(const sl_engine_t *e);
/* Why the run FAILED / status text ("completed", "stopped", "budget", "failed: ..."). */
const char *sl_engine_status(const sl_engine_t *e);
/* Current round (the one running, or the last completed once DONE). */
uint64_t sl_engine_round(const sl_engine_t *e);
uint64_t sl_engine_rounds_completed(const sl_engine_t *e);
const float *sl_engine_global(const sl_engine_t *e, size_t *dim);
size_t sl_engine_registered(const sl_engine_t *e);
/* The report of the last completed round (NULL before the first). */
const sl_round_report_t *sl_engine_last_report(const sl_engine_t *e);
/* Final evaluation: weighted metrics over the RESULTs (examples == 0 if none). */
const sl_eval_info_t *sl_engine_final_eval(const sl_engine_t *e);
/* Checkpoint of the current state as of the last completed round: arrays owned by ck
 * (sl_checkpoint_free). */
SL_NODISCARD int sl_engine_checkpoint(const sl_engine_t *e, sl_checkpoint_t *ck);

#endif
