/* starling privacy epsilon | noise: the RDP accountant from the command line.
 * stdout carries only the answer (scripts parse it); errors go to stderr. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "privacy/dp/accountant.h"

static const char usage[] =
    "Usage: starling privacy epsilon --sampling-rate Q --noise-multiplier S --steps N --delta D\n"
    "       starling privacy epsilon --grid FILE.csv\n"
    "       starling privacy noise --sampling-rate Q --steps N --delta D --target-epsilon E\n\n"
    "The RDP accountant of the sampled Gaussian mechanism (the same numbers as Opacus 1.5).\n\n"
    "  epsilon                  print epsilon spent by N steps at sampling rate Q, noise S\n"
    "  noise                    print the noise multiplier that keeps epsilon <= E\n"
    "  --sampling-rate Q        probability a client takes part in a round, in [0, 1]\n"
    "  --noise-multiplier S     noise std / clip norm, >= 0\n"
    "  --steps N                rounds, >= 1\n"
    "  --delta D                delta of (epsilon, delta), in (0, 1)\n"
    "  --target-epsilon E       the budget, > 0\n"
    "  --epsilon-tolerance T    noise: bisection stops within T below E (default 0.01)\n"
    "  --grid FILE.csv          one epsilon per row of a CSV with header q,sigma,steps,delta\n"
    "                           ('-' reads stdin); writes q,sigma,steps,delta,eps,best_alpha to\n"
    "                           stdout, or on a bad row an error naming FILE:LINE and exit 1\n\n"
    "Exit status: 0 ok, 1 failure (bad grid row, budget too low), 2 bad arguments.\n\n";

static int parse_double(const char *cmd, const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
        return cli_usage_error(cmd, "%s: expected a number, got \"%s\"", opt, s);
    *out = v;
    return 0;
}

static int parse_steps(const char *cmd, const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE || v < 1)
        return cli_usage_error(cmd, "--steps: expected an integer >= 1, got \"%s\"", s);
    *out = v;
    return 0;
}

/* Strict field parsers for the grid: 0 on success. */
static int field_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (*end == ' ' || *end == '\t')
        end++;
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int field_steps(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (end == s || *end != '\0' || errno == ERANGE || v < 1)
        return -1;
    *out = v;
    return 0;
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

typedef struct {
    double q, sigma, delta, eps, alpha;
    long long steps;
} grid_row_t;

/* Read and evaluate every row first, so a bad row prints nothing on stdout. */
static int run_grid(const char *path)
{
    const char *cmd = "privacy epsilon";
    int use_stdin = strcmp(path, "-") == 0;
    FILE *f = use_stdin ? stdin : fopen(path, "r");
    if (use_stdin)
        path = "<stdin>";
    if (!f) {
        fprintf(stderr, "starling %s: %s: %s\n", cmd, path, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    int rc = CLI_EXIT_OK;
    grid_row_t *rows = NULL;
    size_t n = 0, cap = 0;
    char line[4096];
    long lineno = 0;
    int header = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            fprintf(stderr, "starling %s: %s:%ld: line too long\n", cmd, path, lineno);
            rc = CLI_EXIT_FAIL;
            goto cleanup;
        }
        chomp(line);
        if (!header) {
            const char *h = line;
            if (strncmp(h, "\xef\xbb\xbf", 3) == 0) /* UTF-8 BOM */
                h += 3;
            if (strcmp(h, "q,sigma,steps,delta") != 0) {
                fprintf(stderr, "starling %s: %s:%ld: expected the header \"q,sigma,steps,delta\", got \"%s\"\n", cmd,
                        path, lineno, h);
                rc = CLI_EXIT_FAIL;
                goto cleanup;
            }
            header = 1;
            continue;
        }
        if (line[0] == '\0')
            continue; /* blank lines are allowed */
        char *fields[5] = {0};
        int nf = 0;
        char *p = line;
        for (;;) {
            if (nf < 5)
                fields[nf] = p;
            nf++;
            char *comma = strchr(p, ',');
            if (!comma)
                break;
            *comma = '\0';
            p = comma + 1;
        }
        if (nf != 4) {
            fprintf(stderr, "starling %s: %s:%ld: expected 4 fields (q,sigma,steps,delta), got %d\n", cmd, path, lineno,
                    nf);
            rc = CLI_EXIT_FAIL;
            goto cleanup;
        }
        grid_row_t r;
        for (int i = 0; i < 4; i++)
            while (*fields[i] == ' ' || *fields[i] == '\t')
                fields[i]++;
        const char *what = NULL;
        if (field_double(fields[0], &r.q) || !(r.q >= 0 && r.q <= 1))
            what = "q must be a number in [0, 1]";
        else if (field_double(fields[1], &r.sigma) || !(r.sigma >= 0))
            what = "sigma must be a number >= 0";
        else if (field_steps(fields[2], &r.steps))
            what = "steps must be an integer >= 1";
        else if (field_double(fields[3], &r.delta) || !(r.delta > 0 && r.delta < 1))
            what = "delta must be a number in (0, 1)";
        if (what) {
            fprintf(stderr, "starling %s: %s:%ld: %s\n", cmd, path, lineno, what);
            rc = CLI_EXIT_FAIL;
            goto cleanup;
        }
        if (sl_dp_epsilon(r.q, r.sigma, r.steps, r.delta, &r.eps, &r.alpha) != 0) {
            fprintf(stderr, "starling %s: %s:%ld: %s\n", cmd, path, lineno, sl_last_error());
            rc = CLI_EXIT_FAIL;
            goto cleanup;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            grid_row_t *g = realloc(rows, nc * sizeof *g);
            if (!g) {
                fprintf(stderr, "starling %s: out of memory\n", cmd);
                rc = CLI_EXIT_FAIL;
                goto cleanup;
            }
            rows = g;
            cap = nc;
        }
        rows[n++] = r;
    }
    if (ferror(f)) {
        fprintf(stderr, "starling %s: %s: read error\n", cmd, path);
        rc = CLI_EXIT_FAIL;
        goto cleanup;
    }
    if (!header) {
        fprintf(stderr, "starling %s: %s: empty file (expected the header \"q,sigma,steps,delta\")\n", cmd, path);
        rc = CLI_EXIT_FAIL;
        goto cleanup;
    }
    printf("q,sigma,steps,delta,eps,best_alpha\n");
    for (size_t i = 0; i < n; i++)
        printf("%.17g,%.17g,%lld,%.17g,%.17g,%.17g\n", rows[i].q, rows[i].sigma, rows[i].steps, rows[i].delta,
               rows[i].eps, rows[i].alpha);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "starling %s: writing stdout: %s\n", cmd, strerror(errno));
        rc = CLI_EXIT_FAIL;
    }
cleanup:
    free(rows);
    if (!use_stdin)
        fclose(f);
    return rc;
}

int cmd_privacy(int argc, char **argv)
{
    enum {
        OPT_Q = CLI_OPT_FIRST_FREE,
        OPT_SIGMA,
        OPT_STEPS,
        OPT_DELTA,
        OPT_TARGET,
        OPT_TOL,
        OPT_GRID
    };
    static const struct option longopts[] = {{"sampling-rate", required_argument, NULL, OPT_Q},
                                             {"noise-multiplier", required_argument, NULL, OPT_SIGMA},
                                             {"steps", required_argument, NULL, OPT_STEPS},
                                             {"delta", required_argument, NULL, OPT_DELTA},
                                             {"target-epsilon", required_argument, NULL, OPT_TARGET},
                                             {"epsilon-tolerance", required_argument, NULL, OPT_TOL},
                                             {"grid", required_argument, NULL, OPT_GRID},
                                             CLI_COMMON_LONG_OPTIONS,
                                             {NULL, 0, NULL, 0}};
    if (argc < 2) {
        fprintf(stderr, "%s", usage);
        return cli_usage_error("privacy", "say 'epsilon' or 'noise'");
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        printf("%s%s", usage, cli_common_help);
        return CLI_EXIT_OK;
    }
    int is_eps = strcmp(sub, "epsilon") == 0, is_noise = strcmp(sub, "noise") == 0;
    if (!is_eps && !is_noise)
        return cli_usage_error("privacy", "unknown subcommand '%s' (say 'epsilon' or 'noise')", sub);
    const char *cmd = is_eps ? "privacy epsilon" : "privacy noise";

    cli_common_t common = {0};
    double q = NAN, sigma = NAN, delta = NAN, target = NAN, tol = 0.01;
    long long steps = -1;
    const char *grid = NULL;
    int opt;
    opterr = 0;
    optind = 1;
    argc--;
    argv++; /* argv[0] is now the subcommand */
    /* leading ':' makes a missing value report ':' rather than '?' */
    while ((opt = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        int handled = cli_common_option(&common, opt, optarg, cmd);
        if (handled < 0)
            return -handled;
        if (handled)
            continue;
        int rc = 0;
        switch (opt) {
        case OPT_Q:
            rc = parse_double(cmd, "--sampling-rate", optarg, &q);
            break;
        case OPT_SIGMA:
            if (is_noise)
                return cli_usage_error(cmd, "--noise-multiplier is the answer of 'noise', not an input");
            rc = parse_double(cmd, "--noise-multiplier", optarg, &sigma);
            break;
        case OPT_STEPS:
            rc = parse_steps(cmd, optarg, &steps);
            break;
        case OPT_DELTA:
            rc = parse_double(cmd, "--delta", optarg, &delta);
            break;
        case OPT_TARGET:
            if (is_eps)
                return cli_usage_error(cmd, "--target-epsilon belongs to 'privacy noise'");
            rc = parse_double(cmd, "--target-epsilon", optarg, &target);
            break;
        case OPT_TOL:
            if (is_eps)
                return cli_usage_error(cmd, "--epsilon-tolerance belongs to 'privacy noise'");
            rc = parse_double(cmd, "--epsilon-tolerance", optarg, &tol);
            break;
        case OPT_GRID:
            if (is_noise)
                return cli_usage_error(cmd, "--grid belongs to 'privacy epsilon'");
            grid = optarg;
            break;
        case ':':
            return cli_usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
        if (rc)
            return rc;
    }
    if (common.help) {
        printf("%s%s", usage, cli_common_help);
        return CLI_EXIT_OK;
    }
    if (optind < argc)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);

    if (grid) {
        if (!isnan(q) || !isnan(sigma) || steps != -1 || !isnan(delta))
            return cli_usage_error(cmd, "--grid takes its parameters from the file; drop the other options");
        return run_grid(grid);
    }
    if (isnan(q))
        return cli_usage_error(cmd, "missing --sampling-rate");
    if (is_eps && isnan(sigma))
        return cli_usage_error(cmd, "missing --noise-multiplier");
    if (steps == -1)
        return cli_usage_error(cmd, "missing --steps");
    if (isnan(delta))
        return cli_usage_error(cmd, "missing --delta");
    if (is_noise && isnan(target))
        return cli_usage_error(cmd, "missing --target-epsilon");
    if (!(q >= 0 && q <= 1))
        return cli_usage_error(cmd, "--sampling-rate %g is not in [0, 1]", q);
    if (!(delta > 0 && delta < 1))
        return cli_usage_error(cmd, "--delta %g is not in (0, 1)", delta);
    if (is_eps) {
        if (!(sigma >= 0))
            return cli_usage_error(cmd, "--noise-multiplier %g must be >= 0", sigma);
        double eps;
        if (sl_dp_epsilon(q, sigma, steps, delta, &eps, NULL) != 0)
            return cli_fail(cmd, -1);
        printf("%.17g\n", eps);
        return CLI_EXIT_OK;
    }
    if (!(target > 0))
        return cli_usage_error(cmd, "--target-epsilon %g must be > 0", target);
    if (!(tol > 0))
        return cli_usage_error(cmd, "--epsilon-tolerance %g must be > 0", tol);
    double z;
    if (sl_dp_noise_multiplier(q, steps, delta, target, tol, &z) != 0)
        return cli_fail(cmd, -1);
    printf("%.17g\n", z);
    return CLI_EXIT_OK;
}
