#include "cli/progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double cli_peak_rss_mib(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

void cli_progress_init(cli_progress_t *p, int enabled)
{
    memset(p, 0, sizeof *p);
    p->tty = enabled && isatty(STDERR_FILENO);
    p->start = cli_now();
}

void cli_progress_begin(cli_progress_t *p, const char *label, uint64_t total)
{
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->pos = 0;
    p->total = total;
    p->nfields = 0;
    p->start = cli_now();
    p->last_draw = 0.0;
}

void cli_progress_field(cli_progress_t *p, const char *name, const char *fmt, ...)
{
    size_t i = 0;
    while (i < p->nfields && strcmp(p->names[i], name) != 0)
        i++;
    if (i == p->nfields) {
        if (p->nfields == CLI_PROGRESS_FIELDS)
            return;
        snprintf(p->names[i], sizeof p->names[i], "%s", name);
        p->nfields++;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->values[i], sizeof p->values[i], fmt, ap);
    va_end(ap);
}

static int term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20)
        return ws.ws_col;
    return 100;
}

static void draw(cli_progress_t *p)
{
    char line[512];
    size_t used = 0;
    const int width = term_width();
    used += (size_t)snprintf(line + used, sizeof line - used, "%s", p->label);
    if (p->total) {
        const int cells = 16;
        double frac = (double)p->pos / (double)p->total;
        if (frac > 1.0)
            frac = 1.0;
        int full = (int)(frac * cells);
        used += (size_t)snprintf(line + used, sizeof line - used, " [");
        for (int i = 0; i < cells && used < sizeof line - 1; i++)
            line[used++] = i < full ? '#' : '.';
        line[used] = '\0';
        double el = cli_now() - p->start;
        double eta = frac > 0 ? el * (1.0 - frac) / frac : 0.0;
        used += (size_t)snprintf(line + used, sizeof line - used, "] %3.0f%% ETA %d:%02d", 100.0 * frac,
                                 (int)(eta / 60), (int)eta % 60);
    }
    for (size_t i = 0; i < p->nfields && used < sizeof line; i++)
        used += (size_t)snprintf(line + used, sizeof line - used, " %s %s", p->names[i], p->values[i]);
    if (used >= sizeof line)
        used = sizeof line - 1;
    if ((int)used > width - 1)
        used = (size_t)(width - 1);
    line[used] = '\0';
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
    p->drawn = 1;
}

void cli_progress_update(cli_progress_t *p, uint64_t pos, int force)
{
    p->pos = pos;
    if (!p->tty)
        return;
    double t = cli_now();
    if (!force && t - p->last_draw < 0.1)
        return;
    p->last_draw = t;
    draw(p);
}

void cli_progress_log(cli_progress_t *p, const char *fmt, ...)
{
    if (p->drawn) {
        fputs("\r\033[K", stderr);
        p->drawn = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

void cli_progress_end(cli_progress_t *p)
{
    if (p->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drawn = 0;
    }
}

void cli_print_metrics(FILE *out, const sl_metrics_t *mt, const char *(*class_name)(const void *ctx, size_t k),
                       const void *ctx)
{
    const size_t K = mt->n_classes;
    size_t wname = 5;
    for (size_t k = 0; k < K; k++) {
        size_t l = strlen(class_name(ctx, k));
        if (l > wname)
            wname = l;
    }
    fprintf(out, "%-*s  %9s  %6s  %6s  %7s\n", (int)wname, "class", "precision", "recall", "f1", "support");
    for (size_t k = 0; k < K; k++)
        fprintf(out, "%-*s  %9.4f  %6.4f  %6.4f  %7llu\n", (int)wname, class_name(ctx, k),
                sl_metrics_precision(mt, k), sl_metrics_recall(mt, k), sl_metrics_f1(mt, k),
                (unsigned long long)sl_metrics_support(mt, k));
    fprintf(out, "\nconfusion matrix (rows = true class, columns = predicted, in the order above):\n");
    fprintf(out, "%-*s", (int)wname, "");
    for (size_t j = 0; j < K; j++)
        fprintf(out, " %6zu", j);
    fputc('\n', out);
    for (size_t i = 0; i < K; i++) {
        fprintf(out, "%-*s", (int)wname, class_name(ctx, i));
        for (size_t j = 0; j < K; j++)
            fprintf(out, " %6llu", (unsigned long long)mt->confusion[i * K + j]);
        fputc('\n', out);
    }
    fprintf(out, "\nexamples %zu  accuracy %.4f  macro-F1 %.4f  loss %.4f\n", mt->examples, mt->accuracy,
            mt->macro_f1, mt->loss);
}
