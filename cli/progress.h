/* cli/progress: a progress display for long commands (train, pretrain, cluster).
 *
 * On a terminal: one live line on stderr, redrawn at most ~10 times a second,
 *   epoch 3/20 [#######.........]  45% ETA 0:12 step 120 loss 0.4132 lr 3.0e-03 samples/s 1830
 * Otherwise (a pipe, a log file): nothing per step; cli_progress_log() lines only, so logs
 * stay readable. The caller chooses the fields: a label, a position/total for the bar, and
 * free "name value" fields.
 */
#ifndef SL_CLI_PROGRESS_H
#define SL_CLI_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "core/metrics.h"

#define CLI_PROGRESS_FIELDS 8

typedef struct {
    int tty;         /* draw the live bar (stderr is a terminal and not disabled) */
    int drawn;       /* a bar is on screen (needs clearing before a log line) */
    double start;    /* time of cli_progress_begin */
    double last_draw;
    char label[64];
    uint64_t pos, total;
    size_t nfields;
    char names[CLI_PROGRESS_FIELDS][24];
    char values[CLI_PROGRESS_FIELDS][32];
} cli_progress_t;

/* Start a display; enabled = 0 forces plain mode (e.g. --quiet or --no-progress). */
void cli_progress_init(cli_progress_t *p, int enabled);

/* Set the bar: label ("epoch 3/20"), pos of total units (total 0 = no bar). Clears fields. */
void cli_progress_begin(cli_progress_t *p, const char *label, uint64_t total);

/* Set field `name` to a formatted value (added on first use, in order). */
void cli_progress_field(cli_progress_t *p, const char *name, const char *fmt, ...) SL_PRINTF(3, 4);

/* Move the bar to pos and redraw if due (or always when force != 0). */
void cli_progress_update(cli_progress_t *p, uint64_t pos, int force);

/* Print one permanent line on stderr (clearing the bar first; redrawn on the next update). */
void cli_progress_log(cli_progress_t *p, const char *fmt, ...) SL_PRINTF(2, 3);

/* Remove the bar from the screen. */
void cli_progress_end(cli_progress_t *p);

/* Seconds since an arbitrary fixed point (monotonic). */
double cli_now(void);

/* Peak resident set size of this process in MiB (getrusage). */
double cli_peak_rss_mib(void);

/* ---- shared by the training commands (train, pretrain, eval) ------------------------------ */

/* Print a metrics table to `out`: per class precision / recall / F1 / support with names
 * from class_name(ctx, k), the confusion matrix (rows = true), and a summary line. */
void cli_print_metrics(FILE *out, const sl_metrics_t *mt, const char *(*class_name)(const void *ctx, size_t k),
                       const void *ctx);

/* The body of `starling train` and `starling pretrain` (pretrain = 1: full model on the
 * public split, saved to --out). */
int cli_train_command(int argc, char **argv, int pretrain);

#endif
