/* The C accountant against tests/dp/rdp_reference.py, an independent standard-library
 * Python port of Opacus's RDP analysis, over a grid of (q, sigma, steps, delta).
 * Skips (exit 77) when /usr/bin/python3 is missing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "privacy/dp/accountant.h"
#include "support/check.h"

/* Compare every "q sigma steps delta eps alpha" line of `cmd` with sl_dp_epsilon.
 * Returns the number of rows, or -77 if the command exited 77 (reference unavailable). */
static int compare_grid(const char *cmd, const char *label)
{
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p)
        return 0;
    char line[1024];
    int rows = 0;
    while (fgets(line, sizeof line, p)) {
        double q, sigma, delta, eps_ref, alpha_ref, eps, alpha;
        long long steps;
        if (sscanf(line, "%lf %lf %lld %lf %lf %lf", &q, &sigma, &steps, &delta, &eps_ref, &alpha_ref) != 6) {
            CHECK_MSG(0, "%s: unparsable line: %s", label, line);
            continue;
        }
        CHECK(sl_dp_epsilon(q, sigma, steps, delta, &eps, &alpha) == 0);
        CHECK_MSG(fabs(eps - eps_ref) <= 1e-6 * fabs(eps_ref), "%s: q=%g sigma=%g steps=%lld: %.17g vs %.17g", label,
                  q, sigma, steps, eps, eps_ref);
        CHECK(alpha == alpha_ref);
        rows++;
    }
    int st = pclose(p);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        return -77;
    CHECK_EQ(st, 0);
    return rows;
}

int main(void)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "test_dp_accountant_ref: /usr/bin/python3 not found, skipping\n");
        return 77;
    }
    const char *src = getenv("SL_SOURCE_DIR");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/dp/rdp_reference.py grid", src ? src : ".");
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p)
        return check_summary("test_dp_accountant_ref");
    char line[1024];
    int rows = 0, history = 0;
    while (fgets(line, sizeof line, p)) {
        double q, sigma, delta, eps_ref, alpha_ref;
        long long steps;
        if (strncmp(line, "history ", 8) == 0) {
            CHECK(sscanf(line + 8, "%lf %lf", &eps_ref, &alpha_ref) == 2);
            sl_dp_accountant_t *acc = NULL;
            CHECK(sl_dp_accountant_new(&acc) == 0);
            CHECK(sl_dp_accountant_step(acc, 0.01, 1.0, 500) == 0);
            CHECK(sl_dp_accountant_step(acc, 0.02, 1.5, 300) == 0);
            double eps, alpha;
            CHECK(sl_dp_accountant_epsilon(acc, 1e-5, &eps, &alpha) == 0);
            CHECK_MSG(fabs(eps - eps_ref) <= 1e-6 * eps_ref, "history: %.17g vs %.17g", eps, eps_ref);
            CHECK(alpha == alpha_ref);
            sl_dp_accountant_destroy(&acc);
            history++;
            continue;
        }
        if (sscanf(line, "%lf %lf %lld %lf %lf %lf", &q, &sigma, &steps, &delta, &eps_ref, &alpha_ref) != 6) {
            CHECK_MSG(0, "unparsable reference line: %s", line);
            continue;
        }
        double eps, alpha;
        CHECK(sl_dp_epsilon(q, sigma, steps, delta, &eps, &alpha) == 0);
        CHECK_MSG(fabs(eps - eps_ref) <= 1e-6 * fabs(eps_ref), "q=%g sigma=%g steps=%lld delta=%g: %.17g vs %.17g",
                  q, sigma, steps, delta, eps, eps_ref);
        CHECK_MSG(alpha == alpha_ref, "q=%g sigma=%g: best alpha %g vs %g", q, sigma, alpha, alpha_ref);
        fprintf(stderr, "q=%-10.6g sigma=%-5g steps=%-7lld delta=%-6g eps=%.17g ref=%.17g rel=%.2e\n", q, sigma, steps,
                delta, eps, eps_ref, fabs(eps - eps_ref) / eps_ref);
        rows++;
    }
    int status = pclose(p);
    CHECK_EQ(status, 0);
    CHECK(rows >= 8);
    CHECK_EQ(history, 1);

    /* Opacus itself, where it can be imported (not on the CI image: no pip) */
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/dp/rdp_reference.py opacus-grid", src ? src : ".");
    int orows = compare_grid(cmd, "opacus");
    if (orows == -77)
        fprintf(stderr, "test_dp_accountant_ref: opacus is not importable; compared with the Python port only\n");
    else
        CHECK(orows >= 8);
    return check_summary("test_dp_accountant_ref");
}
