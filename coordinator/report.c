#include "coordinator/report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The plotted fields of metrics.jsonl and their chart titles: a dotted path into nested
 * objects, where "*" sums the field over every member (SecAgg+ stages). */
static const struct {
    const char *key;
    const char *title;
} series[] = {
    {"accuracy", "Accuracy (global model, held-out data)"},
    {"eval_loss", "Evaluation loss"},
    {"train_loss", "Training loss (clients' mean)"},
    {"epsilon", "Privacy spent: epsilon"},
    {"reported", "Clients reporting"},
    {"dropped", "Clients dropped"},
    {"bytes_up", "Bytes up per round"},
    {"bytes_down", "Bytes down per round"},
    {"round_seconds", "Round wall time (s)"},
    {"secagg.*.seconds", "SecAgg+: time in its four stages (s)"},
    {"secagg.unmasking.seconds", "SecAgg+: unmasking stage (s)"},
    {"secagg.*.dropped", "SecAgg+: dropouts over its four stages"},
};
#define NSERIES (sizeof series / sizeof series[0])

/* The number at `path` (see series) in o, NAN if absent. */
static double lookup(const cJSON *o, const char *path)
{
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    char key[64];
    if (len >= sizeof key || !cJSON_IsObject(o))
        return NAN;
    memcpy(key, path, len);
    key[len] = '\0';
    if (!dot) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsNumber(v) ? v->valuedouble : NAN;
    }
    if (strcmp(key, "*") != 0)
        return lookup(cJSON_GetObjectItemCaseSensitive(o, key), dot + 1);
    double sum = NAN;
    const cJSON *child;
    cJSON_ArrayForEach(child, o)
    {
        double v = lookup(child, dot + 1);
        if (!isnan(v))
            sum = isnan(sum) ? v : sum + v;
    }
    return sum;
}

static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    if (len_out)
        *len_out = len;
    return buf;
}

static void put_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '&':
            fputs("&amp;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        default:
            fputc(*s, out);
        }
    }
}

/* A line chart of y[0..n-1] against rounds x[0..n-1]; skipped when y has no finite value. */
static void plot(FILE *out, const char *title, const double *x, const double *y, size_t n)
{
    double ymin = INFINITY, ymax = -INFINITY, xmin = INFINITY, xmax = -INFINITY;
    size_t finite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(y[i]))
            continue;
        finite++;
        ymin = fmin(ymin, y[i]);
        ymax = fmax(ymax, y[i]);
        xmin = fmin(xmin, x[i]);
        xmax = fmax(xmax, x[i]);
    }
    if (finite == 0)
        return;
    if (ymax - ymin < 1e-12) {
        ymax += 0.5 * fmax(fabs(ymax), 1.0);
        ymin -= 0.5 * fmax(fabs(ymin), 1.0);
    }
    if (xmax - xmin < 1e-12)
        xmax = xmin + 1;
    const double W = 460, H = 220, L = 60, R = 15, T = 30, B = 35;
    fprintf(out, "<figure><svg viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\">\n", W, H, W, H);
    fprintf(out, "<text x=\"%.0f\" y=\"18\" class=\"t\">", L);
    put_escaped(out, title);
    fputs("</text>\n", out);
    fprintf(out, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" class=\"ax\"/>", L, H - B, W - R,
            H - B);
    fprintf(out, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" class=\"ax\"/>\n", L, T, L, H - B);
    for (int k = 0; k <= 4; k++) {
        double v = ymin + (ymax - ymin) * k / 4.0;
        double py = (H - B) - (H - B - T) * k / 4.0;
        fprintf(out, "<text x=\"%.0f\" y=\"%.1f\" class=\"l\" text-anchor=\"end\">%.4g</text>", L - 5, py + 4,
                v);
        fprintf(out, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" class=\"g\"/>\n", L, py, W - R,
                py);
    }
    fprintf(out, "<text x=\"%.0f\" y=\"%.0f\" class=\"l\">round %.0f</text>", L, H - 12, xmin);
    fprintf(out, "<text x=\"%.0f\" y=\"%.0f\" class=\"l\" text-anchor=\"end\">round %.0f</text>\n", W - R,
            H - 12, xmax);
    fputs("<polyline class=\"p\" points=\"", out);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(y[i]))
            continue;
        double px = L + (W - L - R) * (x[i] - xmin) / (xmax - xmin);
        double py = (H - B) - (H - B - T) * (y[i] - ymin) / (ymax - ymin);
        fprintf(out, "%.1f,%.1f ", px, py);
    }
    fputs("\"/>\n</svg></figure>\n", out);
}

static void put_preformatted_file(FILE *out, const char *title, const char *path)
{
    char *text = read_file(path, NULL);
    if (!text)
        return;
    fprintf(out, "<h2>%s</h2><pre>", title);
    put_escaped(out, text);
    fputs("</pre>\n", out);
    free(text);
}

int sl_report_write(const char *run_dir, const char *out_path)
{
    char path[4096], default_out[4096];
    int rc = 0;
    double *x = NULL;
    double *ys[NSERIES] = {0}; /* ys[s][round index]: NAN where a round lacks the field */
    size_t n = 0, cap = 0;
    FILE *out = NULL;
    char *metrics = NULL;

    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    metrics = read_file(path, NULL);
    if (!metrics) {
        rc = sl_error(SL_ENOTFOUND, "%s: %s", path, strerror(errno));
        goto cleanup;
    }
    int lineno = 0;
    for (char *line = strtok(metrics, "\n"); line; line = strtok(NULL, "\n")) {
        lineno++;
        if (line[strspn(line, " \t\r")] == '\0')
            continue;
        cJSON *obj = cJSON_Parse(line);
        if (!obj || !cJSON_IsObject(obj)) {
            cJSON_Delete(obj);
            rc = sl_error(SL_EFORMAT, "%s:%d: not a JSON object", path, lineno);
            goto cleanup;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            double *nx = realloc(x, cap * sizeof *x);
            if (!nx) {
                cJSON_Delete(obj);
                rc = sl_error(SL_ENOMEM, "out of memory");
                goto cleanup;
            }
            x = nx;
            for (size_t s = 0; s < NSERIES; s++) {
                double *ny = realloc(ys[s], cap * sizeof *ny);
                if (!ny) {
                    cJSON_Delete(obj);
                    rc = sl_error(SL_ENOMEM, "out of memory");
                    goto cleanup;
                }
                ys[s] = ny;
            }
        }
        const cJSON *round = cJSON_GetObjectItemCaseSensitive(obj, "round");
        x[n] = cJSON_IsNumber(round) ? round->valuedouble : (double)n + 1;
        for (size_t s = 0; s < NSERIES; s++)
            ys[s][n] = lookup(obj, series[s].key);
        n++;
        cJSON_Delete(obj);
    }

    if (!out_path) {
        snprintf(default_out, sizeof default_out, "%s/report.html", run_dir);
        out_path = default_out;
    }
    out = fopen(out_path, "w");
    if (!out) {
        rc = sl_error(SL_EIO, "cannot write %s: %s", out_path, strerror(errno));
        goto cleanup;
    }
    fputs("<!doctype html><html><head><meta charset=\"utf-8\"><title>starling run ", out);
    put_escaped(out, run_dir);
    fputs("</title><style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
          "figure{display:inline-block;margin:0.5em}svg{background:#fafafa;border:1px solid #ddd}"
          ".t{font-size:13px;font-weight:bold}.l{font-size:10px;fill:#555}.ax{stroke:#333}"
          ".g{stroke:#e4e4e4}.p{fill:none;stroke:#1f77b4;stroke-width:2}"
          "pre{background:#f4f4f4;padding:1em;overflow:auto}</style></head><body>\n<h1>starling run: ",
          out);
    put_escaped(out, run_dir);
    fprintf(out, "</h1>\n<p>%zu rounds recorded.</p>\n", n);
    for (size_t s = 0; s < NSERIES; s++)
        plot(out, series[s].title, x, ys[s], n);
    snprintf(path, sizeof path, "%s/summary.json", run_dir);
    put_preformatted_file(out, "Summary", path);
    snprintf(path, sizeof path, "%s/config.ini", run_dir);
    put_preformatted_file(out, "Configuration", path);
    fputs("</body></html>\n", out);
    if (fclose(out) != 0)
        rc = sl_error(SL_EIO, "write to %s failed", out_path);
    out = NULL;

cleanup:
    if (out)
        fclose(out);
    free(metrics);
    free(x);
    for (size_t s = 0; s < NSERIES; s++)
        free(ys[s]);
    return rc;
}
