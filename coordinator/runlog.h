/* coordinator/runlog: the run folder.
 *
 *   <out_dir>/<name>/config.ini      the effective configuration (sl_config_write)
 *   <out_dir>/<name>/metrics.jsonl   one JSON object per completed round (fields below)
 *   <out_dir>/<name>/summary.json    written at the end (status, rounds, final/best metrics)
 *   <out_dir>/<name>/checkpoints/last.ckpt   the latest checkpoint (coordinator/checkpoint)
 *   <out_dir>/<name>/privacy.ledger          DP runs: every privacy charge, write-ahead
 *                                            (coordinator/ledger.h; written by the CLI)
 *
 * metrics.jsonl fields: round, attempt, sampled, reported, dropped, rejected, late,
 * train_loss, eval_loss, accuracy (federated evaluation, weighted by test examples),
 * eval_examples, central_loss, central_accuracy, central_macro_f1 (when the centralized
 * evaluation ran), bytes_up, bytes_down, round_seconds, epsilon (when present), secagg
 * (an object, when the round ran SecAgg+: status, reason, included, aborted_attempts,
 * last_abort, and per stage advertise_keys / share_keys / masked_input / unmasking:
 * seconds, bytes_up, bytes_down, entered, dropped; see docs/secagg.md).
 * Absent values (NaN in the report) are omitted, never written as null or NaN.
 */
#ifndef SL_RUNLOG_H
#define SL_RUNLOG_H

#include "core/config.h"
#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

/* SecAgg+ stages in protocol order: advertise keys, share keys, masked input collection,
 * unmasking. */
enum { SL_SECAGG_NSTAGES = 4 };

/* One SecAgg+ stage of a round attempt (coordinator/secagg fills it). */
typedef struct {
    double seconds;      /* engine clock from the stage's opening to its close; NaN = never opened */
    uint64_t bytes_up;   /* SecAgg message bytes received from clients for this stage */
    uint64_t bytes_down; /* SecAgg message bytes sent to clients for this stage */
    size_t entered;      /* clients the stage waited for */
    size_t dropped;      /* of those, how many did not go on to the next stage (left, silent
                          * at the deadline, or excluded for too few live neighbours) */
} sl_secagg_stage_report_t;

/* SecAgg+ figures of the attempt that completed the round (and of earlier aborted ones). */
typedef struct {
    int on;                    /* 1 = the round ran SecAgg+ (else nothing below is written) */
    int completed;             /* 1 = the sum was recovered; 0 = aborted / unfinished: reason */
    char reason[240];          /* why it did not complete ("" when it did) */
    size_t included;           /* clients whose input is in the sum */
    uint32_t aborted_attempts; /* earlier attempts of this round whose protocol aborted */
    char last_abort[240];      /* the reason of the latest of them ("" if none) */
    sl_secagg_stage_report_t stage[SL_SECAGG_NSTAGES];
} sl_secagg_report_t;

/* JSON names of the stages, in order (advertise_keys, share_keys, masked_input, unmasking). */
const char *sl_secagg_stage_key(int stage);

/* One completed round, as the engine reports it. NaN = not measured this round. */
typedef struct {
    uint64_t round;
    uint32_t attempt;  /* retries this round needed (quorum) */
    size_t sampled;    /* clients sent a TASK */
    size_t reported;   /* updates aggregated */
    size_t dropped;    /* sampled clients that did not answer in time */
    size_t rejected;   /* updates refused (norm bound, invalid) */
    size_t late;       /* updates of an earlier round / duplicates discarded */
    double train_loss; /* mean client train loss, weighted by examples */
    double eval_loss;  /* federated evaluation (clients' local test splits) */
    double accuracy;
    uint64_t eval_examples;
    double central_loss; /* centralized evaluation hook */
    double central_accuracy;
    double central_f1;
    uint64_t bytes_up;   /* wire bytes received this round (headers + payloads) */
    uint64_t bytes_down; /* wire bytes sent this round */
    double round_seconds;
    double epsilon; /* DP: filled by the round_end hook */
    sl_secagg_report_t secagg; /* filled by a SecAgg+ aggregator's report method */
} sl_round_report_t;

/* A report with every float field NaN and counters 0. */
void sl_round_report_init(sl_round_report_t *r, uint64_t round);

typedef struct sl_runlog sl_runlog_t;

/* Create (mkdir -p) `dir`, or <cfg->run.out_dir>/<cfg->run.name> when dir is NULL; write
 * config.ini; open metrics.jsonl for append (a resumed run keeps its earlier lines). */
SL_NODISCARD int sl_runlog_new(sl_runlog_t **out, const sl_config_t *cfg, const char *dir);
void sl_runlog_destroy(sl_runlog_t **rl);

const char *sl_runlog_dir(const sl_runlog_t *rl);
/* <dir>/checkpoints/last.ckpt */
const char *sl_runlog_checkpoint_path(const sl_runlog_t *rl);

/* Append one line to metrics.jsonl and flush it. */
SL_NODISCARD int sl_runlog_round(sl_runlog_t *rl, const sl_round_report_t *r);

/* Write summary.json (atomically): status ("completed", "failed: ...", "stopped",
 * "budget"), rounds completed, the last report, best accuracies, totals. */
SL_NODISCARD int sl_runlog_summary(sl_runlog_t *rl, const char *status, uint64_t rounds_completed,
                                   const sl_round_report_t *last, double total_seconds);

/* Format one report as a JSON object (no newline); *out is malloc'd (free()). */
SL_NODISCARD int sl_round_report_json(const sl_round_report_t *r, char **out);

#endif
