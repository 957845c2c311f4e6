/* client/client: the client side of the protocol, sans-I/O.
 *
 *   sl_client_start(c, now)          queue HELLO
 *   sl_client_on_message(c, ...)     WELCOME -> READY; TASK -> train callback -> UPDATE;
 *                                    EVALUATE -> evaluate callback -> RESULT;
 *                                    SECAGG_DOWN -> secagg callback; BYE -> DONE;
 *                                    ERROR "not registered" -> HELLO again
 *   sl_client_tick(c, now)           HELLO retry until WELCOME; HEARTBEAT when idle
 *   sl_client_outbox(c, &msgs)       what to send after each call
 *
 * Training is a synchronous callback: the client owns no thread. Every coordinator
 * message is validated (codec, version, sender 0, vector length == dim, round) before
 * anything runs; an invalid one is answered with ERROR and otherwise ignored.
 *
 * Extension points for privacy (the integrator plugs them in):
 *   privatize   called on the delta after training, before it leaves: DP clipping and
 *               local/distributed noise (the TASK carries dp mode, clip and noise)
 *   masked      when the TASK says secagg: the delta is handed to the SecAgg+ client
 *               instead of the UPDATE payload; it answers SECAGG_DOWN blobs through
 *               sl_client_send_secagg. The UPDATE then carries only statistics.
 */
#ifndef SL_CLIENT_H
#define SL_CLIENT_H

#include "core/error.h"
#include "core/transport.h"
#include "core/wire.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sl_client sl_client_t;

typedef enum {
    SL_CLIENT_INIT = 0, /* not started */
    SL_CLIENT_HELLO,    /* HELLO sent, waiting for WELCOME */
    SL_CLIENT_READY,    /* registered, idle */
    SL_CLIENT_DONE,     /* the coordinator said BYE (or we left) */
    SL_CLIENT_FAILED    /* refused (version, layout) or a callback failed fatally */
} sl_client_state_t;

/* The TASK as the train callback sees it. */
typedef struct {
    uint64_t round;
    uint64_t client_id;
    sl_task_info_t info;
} sl_client_task_t;

typedef struct {
    uint64_t client_id; /* stable id (e.g. the HAPT user), != 0 */
    size_t dim;         /* trainable vector length */
    uint64_t layout;    /* layout hash (0 = not checked) */
    uint64_t train_examples;
    uint64_t test_examples;
    size_t n_modalities;
    const char *modalities[SL_WIRE_MAX_MODS]; /* copied */
    double heartbeat_s;                       /* idle HEARTBEAT period; 0 = 2 s */
    double hello_retry_s;                     /* HELLO resend period until WELCOME; 0 = 2 s */
    float *scratch;                           /* optional (dim) buffer for the delta, borrowed, may be shared
                                               * by virtual clients that run one at a time; NULL = own one */
    void *ctx;
    /* Required. Train from `global` (dim) per task->info; write delta = trained - global
     * into `delta` (dim) and fill info (examples > 0, steps, train_loss, seconds; and
     * has_eval + eval_* when task->info.want_eval: evaluate `global` before training). */
    int (*train)(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                 sl_update_info_t *info);
    /* Evaluate `global` on the local test split (EVALUATE). NULL = answer with ERROR. */
    int (*evaluate)(void *ctx, uint64_t round, const float *global, size_t dim, sl_eval_info_t *out);
    /* Optional: clip / noise the delta in place before it is sent. */
    int (*privatize)(void *ctx, const sl_client_task_t *task, float *delta, size_t dim);
    /* SecAgg+: the delta to mask (TASK with secagg), then each SECAGG_DOWN blob. */
    int (*masked)(void *ctx, sl_client_t *c, const sl_client_task_t *task, const float *delta, size_t dim);
    int (*secagg)(void *ctx, sl_client_t *c, uint64_t round, uint32_t stage, const uint8_t *blob, size_t len);
} sl_client_opts_t;

SL_NODISCARD int sl_client_new(sl_client_t **out, const sl_client_opts_t *opts);
void sl_client_destroy(sl_client_t **c);

/* Queue HELLO (also after a reconnect: registration starts over). */
SL_NODISCARD int sl_client_start(sl_client_t *c, double now);

/* One message from the coordinator. Invalid input -> ERROR queued, returns 0. Returns < 0
 * only on a local failure (callback error other than a refused task, out of memory). */
SL_NODISCARD int sl_client_on_message(sl_client_t *c, const uint8_t *hdr, size_t hdr_len,
                                      const uint8_t *payload, size_t payload_len, double now);
SL_NODISCARD int sl_client_tick(sl_client_t *c, double now);

/* Queue BYE and go DONE (SIGINT). */
SL_NODISCARD int sl_client_leave(sl_client_t *c, const char *why);

/* For the secagg callback: queue a SECAGG_UP of the current round. */
SL_NODISCARD int sl_client_send_secagg(sl_client_t *c, uint32_t stage, const uint8_t *blob, size_t len);

/* Messages queued by the last call (header + optional payload), cleared at the next call.
 * Views valid until then. */
typedef struct {
    const uint8_t *header;
    size_t header_len;
    const void *payload;
    size_t payload_len;
} sl_client_out_t;
size_t sl_client_outbox(sl_client_t *c, const sl_client_out_t **msgs);

/* Next time sl_client_tick must run (absolute, same clock as now). */
double sl_client_next_deadline(const sl_client_t *c);
sl_client_state_t sl_client_state(const sl_client_t *c);
uint64_t sl_client_id(const sl_client_t *c);
/* Last time any valid coordinator message arrived (liveness; -INFINITY if never). */
double sl_client_last_heard(const sl_client_t *c);
/* Rounds trained / updates sent so far. */
uint64_t sl_client_rounds_done(const sl_client_t *c);
const char *sl_client_status(const sl_client_t *c);

#endif
