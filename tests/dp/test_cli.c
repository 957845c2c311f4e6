/* `starling privacy`: the exact stdout contract scripts depend on (epsilon, --grid, noise)
 * and exit code 2 with a one-line error + hint for bad arguments. Runs the built binary
 * $SL_BINARY_DIR/cli/starling. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "privacy/dp/accountant.h"
#include "support/check.h"

static char bin[4096], tmpdir[256], out_path[512], err_path[512];
static char out[65536], err[65536];

static void slurp(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Run "starling <args>", capture stdout/stderr; returns the exit code. */
static int run(const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s", bin, args, out_path, err_path);
    int st = system(cmd);
    slurp(out_path, out, sizeof out);
    slurp(err_path, err, sizeof err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_epsilon(void)
{
    CHECK_EQ(run("privacy epsilon --sampling-rate 0.0042666666666666667 --noise-multiplier 1.1 --steps 14062 "
                 "--delta 1e-5"),
             0);
    CHECK_MSG(strcmp(out, "2.5965558689607486\n") == 0, "stdout \"%s\"", out);
    CHECK_EQ(run("privacy epsilon --sampling-rate 0.01 --noise-multiplier 1.0 --steps 1000 --delta 1e-5"), 0);
    CHECK_MSG(strcmp(out, "2.1013652716430564\n") == 0, "stdout \"%s\"", out);
    /* option order does not matter; common options are accepted */
    CHECK_EQ(run("privacy epsilon --delta=1e-5 --steps 1000 --quiet --noise-multiplier 1 --sampling-rate 0.01"), 0);
    CHECK(strcmp(out, "2.1013652716430564\n") == 0);
    CHECK_EQ(run("privacy --help"), 0);
    CHECK_CONTAINS(out, "--sampling-rate");
    CHECK_EQ(run("privacy epsilon --help"), 0);
    CHECK_CONTAINS(out, "--grid");
}

static void test_grid(void)
{
    char csv[512], bad[512];
    snprintf(csv, sizeof csv, "%s/grid.csv", tmpdir);
    write_file(csv, "q,sigma,steps,delta\n"
                    "0.01,1.0,1000,1e-5\n"
                    "0.0042666666666666667,1.1,14062,1e-5\n"
                    "\n"
                    "0.05,2,500,1e-6\r\n"
                    "1,3.5,10,1e-5\n");
    char args[1024];
    snprintf(args, sizeof args, "privacy epsilon --grid %s", csv);
    CHECK_EQ(run(args), 0);
    CHECK_EQ(count_lines(out), 5);
    CHECK(strncmp(out, "q,sigma,steps,delta,eps,best_alpha\n", 35) == 0);
    const double qs[] = {0.01, 0.0042666666666666667, 0.05, 1};
    const double ss[] = {1.0, 1.1, 2, 3.5};
    const long long st[] = {1000, 14062, 500, 10};
    const double ds[] = {1e-5, 1e-5, 1e-6, 1e-5};
    char want[4096];
    int off = snprintf(want, sizeof want, "q,sigma,steps,delta,eps,best_alpha\n");
    for (int i = 0; i < 4; i++) {
        double eps, alpha;
        CHECK(sl_dp_epsilon(qs[i], ss[i], st[i], ds[i], &eps, &alpha) == 0);
        off += snprintf(want + off, sizeof want - (size_t)off, "%.17g,%.17g,%lld,%.17g,%.17g,%.17g\n", qs[i], ss[i],
                        st[i], ds[i], eps, alpha);
    }
    CHECK_MSG(strcmp(out, want) == 0, "grid output:\n%s\nwant:\n%s", out, want);
    CHECK_CONTAINS(out, ",2.1013652716430564,");
    CHECK_CONTAINS(out, ",2.5965558689607486,");

    /* a bad row names its line and prints nothing on stdout */
    snprintf(bad, sizeof bad, "%s/bad.csv", tmpdir);
    write_file(bad, "q,sigma,steps,delta\n0.01,1.0,1000,1e-5\n0.01,abc,1000,1e-5\n");
    snprintf(args, sizeof args, "privacy epsilon --grid %s", bad);
    CHECK(run(args) != 0);
    CHECK(out[0] == '\0');
    CHECK_CONTAINS(err, "bad.csv:3:");
    CHECK_CONTAINS(err, "sigma");
    write_file(bad, "q,sigma,steps,delta\n0.01,1.0,1000\n");
    CHECK(run(args) != 0);
    CHECK_CONTAINS(err, "bad.csv:2:");
    write_file(bad, "q,sigma,steps,delta\n1.5,1.0,1000,1e-5\n");
    CHECK(run(args) != 0);
    CHECK_CONTAINS(err, "bad.csv:2:");
    write_file(bad, "q,sigma,steps,delta\n0.5,1.0,0,1e-5\n");
    CHECK(run(args) != 0);
    CHECK_CONTAINS(err, "steps");
    write_file(bad, "q,sigma,steps\n0.5,1.0,10\n");
    CHECK(run(args) != 0);
    CHECK_CONTAINS(err, "bad.csv:1:");
    CHECK_CONTAINS(err, "header");
    write_file(bad, "");
    CHECK(run(args) != 0);
    snprintf(args, sizeof args, "privacy epsilon --grid %s/does-not-exist.csv", tmpdir);
    CHECK(run(args) != 0);
    CHECK_CONTAINS(err, "does-not-exist.csv");
    /* stdin */
    snprintf(args, sizeof args, "privacy epsilon --grid - < %s", csv);
    CHECK_EQ(run(args), 0);
    CHECK(strcmp(out, want) == 0);
    /* header only: just the output header */
    write_file(bad, "q,sigma,steps,delta\n");
    snprintf(args, sizeof args, "privacy epsilon --grid %s", bad);
    CHECK_EQ(run(args), 0);
    CHECK(strcmp(out, "q,sigma,steps,delta,eps,best_alpha\n") == 0);
}

static void test_noise(void)
{
    CHECK_EQ(run("privacy noise --sampling-rate 0.01 --steps 1000 --delta 1e-5 --target-epsilon 2.0"), 0);
    CHECK_EQ(count_lines(out), 1);
    char *end;
    double z = strtod(out, &end);
    CHECK(end != out && strcmp(end, "\n") == 0);
    double want;
    CHECK(sl_dp_noise_multiplier(0.01, 1000, 1e-5, 2.0, 0.01, &want) == 0);
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g\n", want);
    CHECK(strcmp(out, buf) == 0);
    double eps;
    CHECK(sl_dp_epsilon(0.01, z, 1000, 1e-5, &eps, NULL) == 0);
    CHECK(eps <= 2.0 && 2.0 - eps <= 0.01);
    /* and the other way round through the CLI */
    char args[256];
    snprintf(args, sizeof args, "privacy epsilon --sampling-rate 0.01 --noise-multiplier %.17g --steps 1000 --delta 1e-5",
             z);
    CHECK_EQ(run(args), 0);
    CHECK(strtod(out, NULL) <= 2.0);
    CHECK(run("privacy noise --sampling-rate 1 --steps 1000000 --delta 1e-10 --target-epsilon 1e-6") == 1);
    CHECK_CONTAINS(err, "budget");
}

/* exit 2, nothing on stdout, one error line + the hint */
static void bad(const char *args, const char *needle)
{
    int rc = run(args);
    CHECK_MSG(rc == 2, "'%s' exited %d", args, rc);
    CHECK_MSG(out[0] == '\0', "'%s' printed \"%s\"", args, out);
    CHECK_CONTAINS(err, needle);
    CHECK_CONTAINS(err, "Try 'starling privacy");
}

static void test_bad_arguments(void)
{
    bad("privacy", "epsilon");
    bad("privacy frobnicate", "unknown subcommand");
    bad("privacy epsilon --noise-multiplier 1 --steps 10 --delta 1e-5", "missing --sampling-rate");
    bad("privacy epsilon --sampling-rate 0.1 --steps 10 --delta 1e-5", "missing --noise-multiplier");
    bad("privacy epsilon --sampling-rate 0.1 --noise-multiplier 1 --delta 1e-5", "missing --steps");
    bad("privacy epsilon --sampling-rate 0.1 --noise-multiplier 1 --steps 10", "missing --delta");
    bad("privacy epsilon --sampling-rate abc --noise-multiplier 1 --steps 10 --delta 1e-5", "--sampling-rate");
    bad("privacy epsilon --sampling-rate 1.5 --noise-multiplier 1 --steps 10 --delta 1e-5", "--sampling-rate");
    bad("privacy epsilon --sampling-rate 0.1 --noise-multiplier -1 --steps 10 --delta 1e-5", "--noise-multiplier");
    bad("privacy epsilon --sampling-rate 0.1 --noise-multiplier 1 --steps 0 --delta 1e-5", "--steps");
    bad("privacy epsilon --sampling-rate 0.1 --noise-multiplier 1 --steps 2.5 --delta 1e-5", "--steps");
    bad("privacy epsilon --sampling-rate 0.1 --noise-multiplier 1 --steps 10 --delta 1", "--delta");
    bad("privacy epsilon --sampling-rate 0.1 --noise-multiplier 1 --steps 10 --delta 1e-5 --bogus", "unknown option");
    bad("privacy epsilon --sampling-rate 0.1 --noise-multiplier 1 --steps 10 --delta 1e-5 extra", "unexpected");
    bad("privacy epsilon --sampling-rate 0.1 --noise-multiplier 1 --steps", "needs a value");
    bad("privacy epsilon --grid x.csv --steps 10", "--grid");
    bad("privacy noise --sampling-rate 0.1 --steps 10 --delta 1e-5", "missing --target-epsilon");
    bad("privacy noise --sampling-rate 0.1 --steps 10 --delta 1e-5 --target-epsilon 0", "--target-epsilon");
    bad("privacy noise --sampling-rate 0.1 --steps 10 --delta 1e-5 --target-epsilon 1 --noise-multiplier 2",
        "--noise-multiplier");
    /* one error line, then the hint line */
    run("privacy epsilon --sampling-rate 0.1");
    CHECK_EQ(count_lines(err), 2);
}

int main(void)
{
    const char *bdir = getenv("SL_BINARY_DIR");
    snprintf(bin, sizeof bin, "%s/cli/starling", bdir ? bdir : ".");
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "test_dp_cli: %s is not built\n", bin);
        CHECK(0);
        return check_summary("test_dp_cli");
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sl-test-dp-cli-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        CHECK(0);
        return check_summary("test_dp_cli");
    }
    snprintf(out_path, sizeof out_path, "%s/stdout", tmpdir);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmpdir);
    test_epsilon();
    test_grid();
    test_noise();
    test_bad_arguments();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_dp_cli: could not remove %s\n", tmpdir);
    return check_summary("test_dp_cli");
}
