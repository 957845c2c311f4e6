/* privacy/secagg/secagg: SecAgg+ (Bell, Bonawitz, Gascon, Lepoint, Raykova, CCS 2020; on
 * Bonawitz et al., CCS 2017) as two sans-I/O state machines. The coordinator learns only
 * the sum (mod 2^B) of the inputs of the clients that completed masked-input collection,
 * even when clients drop out at any stage; semi-honest server.
 *
 * Roles: one server (the coordinator) and n clients with indices 0..n-1 (the coordinator
 * maps its client ids to indices). Nothing here does I/O: each call takes one message
 * (a self-contained byte blob, see privacy/secagg/wire.h and docs/secagg.md) and appends
 * the messages to send to an outbox. The transport must authenticate who sent a message
 * to the server (`from` below); clients only accept messages from the server.
 *
 *   server:  sl_secagg_server_new(&s, &params);  sl_secagg_server_start(s, &out)
 *            -> out holds SETUP for every client: deliver out.msgs[i].data to out.msgs[i].to
 *            for each message m from client c:  sl_secagg_server_handle(s, c, m, len, &out)
 *            on the stage deadline:            sl_secagg_server_close_stage(s, &out)
 *            when the transport lost client c:  sl_secagg_server_drop(s, c, &out)
 *            stage DONE: sl_secagg_server_result(s, &sum, &dim)   (sum in Z_{2^B})
 *   client:  sl_secagg_client_new(&c, &opts);  sl_secagg_client_set_input(c, v, dim, &out)
 *            for each message m from the server:  sl_secagg_client_handle(c, m, len, &out)
 *            out.msgs[i].to is always SL_SECAGG_SERVER_ID.
 *
 * Stages: ADVERTISE (keys) -> SHARES (encrypted Shamir shares) -> MASKED (masked inputs)
 * -> UNMASK (shares of b for survivors, of s^SK for dropped) -> DONE, or ABORTED.
 * A stage closes when every expected client answered or was dropped (sl_secagg_server_drop),
 * or when the caller says the stage deadline passed (close_stage): whoever has not
 * answered is dropped.
 *
 * Errors: a rejected message returns SL_EPROTO (malformed, forged, duplicate, wrong
 * round/session/size), SL_ECRYPTO (bad ciphertext or tag, low-order key) or SL_ESTATE (a
 * well-formed message for a stage that is closed or not open yet) with sl_last_error(),
 * and leaves the state machine unchanged. If a message or close_stage makes the round
 * impossible (fewer than t live holders of a needed secret, fewer than min_clients
 * survivors) the server moves to ABORTED, puts ABORT messages to the live clients in the
 * outbox and returns SL_EQUORUM (or SL_ECRYPTO if a reconstructed secret fails its check);
 * the caller goes on with the next round. A client receiving ABORT returns SL_EABORT.
 */
#ifndef SL_SECAGG_H
#define SL_SECAGG_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "privacy/secagg/graph.h"
#include "privacy/secagg/wire.h"

typedef enum {
    SL_SECAGG_INIT = 0,  /* not started (server) / waiting for SETUP (client) */
    SL_SECAGG_ADVERTISE, /* collecting public keys / sent them, waiting for KEYS */
    SL_SECAGG_SHARES,    /* collecting encrypted shares / sent them, waiting for FORWARD */
    SL_SECAGG_MASKED,    /* collecting masked inputs / waiting for input or UNMASK_REQ */
    SL_SECAGG_UNMASK,    /* collecting unmasking shares (server only) */
    SL_SECAGG_DONE,      /* server: sum available; client: answered the unmask request */
    SL_SECAGG_ABORTED
} sl_secagg_stage_t;

const char *sl_secagg_stage_name(sl_secagg_stage_t stage);

/* ---- outbox ------------------------------------------------------------------------ */

typedef struct sl_secagg_msg {
    uint32_t to;   /* client index, or SL_SECAGG_SERVER_ID */
    uint8_t *data; /* owned by the outbox; take it by setting data = NULL */
    size_t len;
} sl_secagg_msg_t;

typedef struct sl_secagg_outbox {
    sl_secagg_msg_t *msgs;
    size_t count, cap;
} sl_secagg_outbox_t;

void sl_secagg_outbox_init(sl_secagg_outbox_t *o);
/* Free the messages (count = 0), keep the array. */
void sl_secagg_outbox_clear(sl_secagg_outbox_t *o);
void sl_secagg_outbox_free(sl_secagg_outbox_t *o);

/* ---- parameters -------------------------------------------------------------------- */

typedef struct sl_secagg_params {
    uint64_t round;      /* the coordinator's round id, bound into every message and key */
    size_t n;            /* clients, indices 0..n-1 (2 <= n < 2^32 - 1) */
    size_t dim;          /* M: coordinates per input */
    unsigned mod_bits;   /* B: inputs and sum live in Z_{2^B}, 1..32 */
    size_t k;            /* neighbours per client; 0 = chosen from n and dropout */
    size_t t;            /* Shamir threshold among the k + 1 holders; 0 = chosen */
    double dropout;      /* dropout fraction k and t must survive (default 0.05) */
    double adversarial;  /* fraction of clients colluding with the server (default 0.05) */
    size_t min_clients;  /* abort if fewer inputs survive; 0 = t */
    unsigned threads;    /* server threads for mask regeneration (default 1) */
    const uint8_t *graph_seed; /* 32 bytes, or NULL for the OS CSPRNG (tests fix it) */
    const uint8_t *session;    /* 16 bytes, or NULL for the OS CSPRNG */
} sl_secagg_params_t;

/* Defaults: dropout 0.05, adversarial 0.05, mod_bits 32, threads 1, the rest 0/NULL. */
void sl_secagg_params_default(sl_secagg_params_t *p);

/* Fill p for n clients and dim coordinates from [secagg] neighbors, threshold and
 * dropout_tolerance; mod_bits from the quantizer (sl_quant_t.mod_bits). */
SL_NODISCARD int sl_secagg_params_from_config(sl_secagg_params_t *p, const sl_config_t *cfg, size_t n, size_t dim,
                                              unsigned mod_bits, uint64_t round);

/* ---- client ------------------------------------------------------------------------ */

typedef struct sl_secagg_client sl_secagg_client_t;

typedef struct sl_secagg_client_opts {
    uint32_t index;   /* this client's index in the session (SETUP must agree) */
    uint64_t round;   /* expected round id */
    unsigned threads; /* threads for mask generation (0 or 1 = calling thread) */
    sl_rng_t *rng;    /* borrowed; NULL = OS CSPRNG for keys, seeds and shares (tests may seed) */
} sl_secagg_client_opts_t;

SL_NODISCARD int sl_secagg_client_new(sl_secagg_client_t **out, const sl_secagg_client_opts_t *opts);
/* Wipes every secret; NULL-safe, nulls *c. */
void sl_secagg_client_destroy(sl_secagg_client_t **c);

/* Give the client its input: dim values in Z_{2^B} (quantized, e.g. by sl_quant_encode),
 * copied. Any time before the masked-input stage; if the client is already waiting for it,
 * the MASKED message goes to `out` now. SL_EMISMATCH on a dim other than SETUP's,
 * SL_ERANGE on a value >= 2^B, SL_ESTATE if the input was already used. */
SL_NODISCARD int sl_secagg_client_set_input(sl_secagg_client_t *c, const uint32_t *v, size_t dim,
                                            sl_secagg_outbox_t *out);

/* Feed one message from the server; replies go to `out`. */
SL_NODISCARD int sl_secagg_client_handle(sl_secagg_client_t *c, const uint8_t *msg, size_t len,
                                         sl_secagg_outbox_t *out);

sl_secagg_stage_t sl_secagg_client_stage(const sl_secagg_client_t *c);
/* 1 if the client has the FORWARD message and waits for set_input to send its masked input. */
int sl_secagg_client_needs_input(const sl_secagg_client_t *c);

/* ---- server ------------------------------------------------------------------------ */

typedef struct sl_secagg_server sl_secagg_server_t;

/* Validates p (chooses k and t if 0) and allocates the O(n k + dim) state. */
SL_NODISCARD int sl_secagg_server_new(sl_secagg_server_t **out, const sl_secagg_params_t *p);
void sl_secagg_server_destroy(sl_secagg_server_t **s);

/* Begin: SETUP messages for all n clients into `out`; stage -> ADVERTISE. */
SL_NODISCARD int sl_secagg_server_start(sl_secagg_server_t *s, sl_secagg_outbox_t *out);

/* Feed one message received from client `from` (transport-authenticated). */
SL_NODISCARD int sl_secagg_server_handle(sl_secagg_server_t *s, uint32_t from, const uint8_t *msg, size_t len,
                                         sl_secagg_outbox_t *out);

/* The stage deadline passed: drop the clients that did not answer and go on. */
SL_NODISCARD int sl_secagg_server_close_stage(sl_secagg_server_t *s, sl_secagg_outbox_t *out);

/* Client u is gone (disconnected, timed out, banned): it is no longer waited for, nothing
 * more is sent to it, and its later messages are refused (SL_ESTATE). If every other client
 * the open stage waits for has answered, the stage closes now (messages of the next stage
 * go to `out`; SL_EQUORUM / SL_ECRYPTO as in close_stage if that close aborts). Its fate
 * is what it would be at a deadline: out of the round before its masked input arrived;
 * after it, its input stays in the sum and its neighbours' shares remove its masks. Any
 * stage (also before start and after DONE); a second drop of u is a no-op. SL_EINVAL if
 * u >= n. */
SL_NODISCARD int sl_secagg_server_drop(sl_secagg_server_t *s, uint32_t u, sl_secagg_outbox_t *out);

/* The unmask gate: called once per round, when every share unmasking needs is in and
 * right before the server rebuilds any secret and computes the sum, with the number of
 * masked inputs in that sum. 0 goes on; any other return aborts the round with that code
 * (ABORTED, ABORT to the live clients, the code returned by the call that reached the
 * gate) before anything about the inputs is revealed. coordinator/dp.c records and checks
 * the privacy charge of the sum here. NULL fn = no gate (the default). */
typedef int (*sl_secagg_unmask_gate_fn)(void *ctx, size_t inputs);
void sl_secagg_server_set_unmask_gate(sl_secagg_server_t *s, sl_secagg_unmask_gate_fn fn, void *ctx);

sl_secagg_stage_t sl_secagg_server_stage(const sl_secagg_server_t *s);

/* The unmasked sum in Z_{2^B}, (dim,), valid while s lives; SL_ESTATE unless DONE. */
SL_NODISCARD int sl_secagg_server_result(const sl_secagg_server_t *s, const uint32_t **sum, size_t *dim);

typedef struct sl_secagg_info {
    size_t n, k, t, dim;
    unsigned mod_bits;
    size_t advertised, shared, masked, unmasked; /* |U1|, |U2|, |U3|, |U4| so far */
    size_t reconstructed_b, reconstructed_s;     /* secrets rebuilt at the end */
    size_t prg_terms;                            /* masks regenerated at the end */
    double prg_seconds;                          /* wall time of that regeneration (benchmarks) */
} sl_secagg_info_t;
void sl_secagg_server_info(const sl_secagg_server_t *s, sl_secagg_info_t *info);

/* 1 if client u's masked input is in the sum (valid once the MASKED stage closed). */
int sl_secagg_server_included(const sl_secagg_server_t *s, uint32_t u);

/* The neighbour graph (borrowed). */
const sl_secagg_graph_t *sl_secagg_server_graph(const sl_secagg_server_t *s);

#endif
