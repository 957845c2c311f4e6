/* coordinator/report: a run folder rendered as one self-contained HTML page.
 *
 * Reads RUN_DIR/metrics.jsonl (one JSON object per round), RUN_DIR/summary.json and
 * RUN_DIR/config.ini when present, and writes RUN_DIR/report.html with inline SVG plots
 * (accuracy, losses, epsilon, bytes, round time, clients) and the summary and
 * configuration. No scripts, no external assets: it opens anywhere.
 */
#ifndef SL_REPORT_H
#define SL_REPORT_H

#include "core/error.h"

/* Write the report of `run_dir` to `out_path` (NULL = RUN_DIR/report.html). Malformed
 * metrics lines are an error naming the line. */
SL_NODISCARD int sl_report_write(const char *run_dir, const char *out_path);

#endif
