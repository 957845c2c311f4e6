/* privacy/secagg/sim: a whole SecAgg+ round in one process (no sockets), for tests,
 * `starling bench secagg` and bench/secagg.c.
 *
 * n clients with random inputs (uniform floats in [-1, 1] quantized to b bits) run the
 * protocol against one server; a chosen fraction drops out, spread over the four stages
 * (a client that drops at stage s never answers the message of stage s or later). The run
 * reports whether the unmasked sum equals the exact sum in Z_{2^B} of the inputs the
 * server included, the client and server times and the bytes each client sent/received.
 */
#ifndef SL_SECAGG_SIM_H
#define SL_SECAGG_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "privacy/secagg/secagg.h"

typedef struct sl_secagg_sim_opts {
    size_t n, dim;
    double dropout;          /* fraction of clients dropping, spread evenly over the 4 stages */
    const uint8_t *drop_at;  /* optional (n,): 0 = stays, 1..4 = drops at that stage; overrides dropout */
    int drop_stage;          /* 1..4: every dropout happens at this stage (0 = spread over all 4) */
    size_t k, t;             /* 0 = chosen by the parameter finder */
    double tolerance;        /* dropout the parameters must survive; 0 = max(dropout, 0.05) */
    unsigned bits;           /* quantization bits b per value (8..32) */
    unsigned server_threads, client_threads;
    uint64_t seed;           /* inputs, dropout pattern, graph, session */
    int seeded_keys;         /* 1: client secrets from seeded streams (reproducible tests) */
    int measure_floor;       /* r > 0: also time the bare keystream of the server's masks r times */
    const uint8_t *graph_seed; /* optional 32 bytes (else derived from seed) */
    uint8_t *included_out;   /* optional (n,): set to 1 for clients whose input is in the sum */
    sl_secagg_unmask_gate_fn unmask_gate; /* optional: the server's unmask gate (secagg.h) */
    void *unmask_gate_ctx;
} sl_secagg_sim_opts_t;

typedef struct sl_secagg_sim_result {
    int rc;                  /* 0, or the server's abort code (SL_EQUORUM, ...) */
    char error[512];         /* the abort message */
    int correct;             /* rc == 0 and sum == exact sum of included inputs mod 2^B */
    size_t k, t, included, dropped[5]; /* dropped[s] = clients told to drop at stage s */
    unsigned bits, mod_bits;
    double client_time_mean, client_time_max; /* s per completing client, protocol only */
    double client_time_median, client_time_p10, client_time_p90;
    double client_quant_time;                 /* s per client to quantize its input */
    double server_time;                       /* s in all server calls */
    double server_collect_time;               /* s folding masked inputs into the sum */
    double server_unmask_time;                /* s in the call that finished unmasking */
    double keystream_floor;                   /* s for the same keystream alone: median of the repeats */
    double keystream_floor_min;               /* and the fastest repeat */
    double unmask_other;                      /* s of unmasking outside mask regeneration (shares, X25519) */
    double replay_apply;                      /* median s to apply as many masks again (random seeds), */
    double replay_floor;                      /*   interleaved with their bare keystream (same threads) */
    double unmask_ratio;                      /* (unmask_other + replay_apply) / replay_floor */
    size_t prg_terms;                         /* masks the server regenerated */
    double bytes_up, bytes_down;              /* per completing client (mean) */
    double raw_bytes;                         /* 4 * dim: the float32 update */
    double expansion;                         /* bytes_up / raw_bytes */
} sl_secagg_sim_result_t;

/* Run one round. Returns 0 when the simulation ran (even if the round aborted: see
 * r->rc), or an error for bad options / out of memory / a protocol bug (a message the
 * other side rejected). */
SL_NODISCARD int sl_secagg_sim_run(const sl_secagg_sim_opts_t *o, sl_secagg_sim_result_t *r);

#endif
