/* Whole SecAgg+ rounds in one process, n in {3, 10, 100, 1000}, random dropout patterns at
 * every stage. Each outcome is checked against a direct reference of the protocol's
 * recovery rule: the round must succeed exactly when every needed secret keeps t live
 * holders, and then the unmasked sum equals the exact sum in Z_{2^B} of the inputs of the
 * clients that completed masked-input collection; otherwise it aborts with SL_EQUORUM and
 * a message. */
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "privacy/secagg/graph.h"
#include "privacy/secagg/sim.h"
#include "support/check.h"

enum { IN_U1 = 1, IN_U2 = 2, IN_U3 = 4, IN_U4 = 8 };

static size_t live_nbrs(const sl_secagg_graph_t *g, const uint8_t *f, size_t u, uint8_t flag)
{
    size_t c = 0;
    const uint32_t *row = sl_secagg_graph_row(g, u);
    for (size_t j = 0; j < g->k; j++)
        c += (f[row[j]] & flag) != 0;
    return c;
}

static size_t prune(const sl_secagg_graph_t *g, uint8_t *f, uint8_t flag, size_t t)
{
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t u = 0; u < g->n; u++)
            if ((f[u] & flag) && live_nbrs(g, f, u, flag) + 1 < t)
                f[u] &= (uint8_t)~flag, changed = 1;
    }
    size_t c = 0;
    for (size_t u = 0; u < g->n; u++)
        c += (f[u] & flag) != 0;
    return c;
}

/* The reference: does the round succeed, and with which clients (flags IN_U3)? */
static int reference(const sl_secagg_graph_t *g, size_t t, const uint8_t *drop, uint8_t *f)
{
    size_t n = g->n, min = t;
    for (size_t u = 0; u < n; u++)
        f[u] = drop[u] == 1 ? 0 : IN_U1;
    if (prune(g, f, IN_U1, t) < min)
        return 0;
    for (size_t u = 0; u < n; u++)
        if ((f[u] & IN_U1) && drop[u] != 2)
            f[u] |= IN_U2;
    if (prune(g, f, IN_U2, t) < min)
        return 0;
    size_t u3 = 0;
    for (size_t u = 0; u < n; u++)
        if ((f[u] & IN_U2) && drop[u] != 3)
            f[u] |= IN_U3, u3++;
    if (u3 < min)
        return 0;
    for (size_t u = 0; u < n; u++)
        if ((f[u] & IN_U3) && drop[u] != 4)
            f[u] |= IN_U4;
    for (size_t u = 0; u < n; u++) {
        if (f[u] & IN_U3) {
            if (live_nbrs(g, f, u, IN_U3) + 1 < t || live_nbrs(g, f, u, IN_U4) + ((f[u] & IN_U4) != 0) < t)
                return 0;
        } else if ((f[u] & IN_U2) && live_nbrs(g, f, u, IN_U3) > 0) {
            if (live_nbrs(g, f, u, IN_U4) < t)
                return 0;
        }
    }
    return 1;
}

static int successes, aborts;

/* One round with a dropout pattern where each client drops with probability `rate`, at a
 * uniformly random stage 1..4. */
static void run(size_t n, size_t dim, double rate, double tolerance, unsigned bits, uint64_t seed, unsigned threads)
{
    sl_rng_t rng;
    sl_rng_init(&rng, seed, "test-protocol", n, 0);
    uint8_t *drop = calloc(n, 1), *flags = calloc(n, 1), *incl = calloc(n, 1);
    uint8_t gseed[32];
    sl_rng_bytes(&rng, gseed, 32);
    for (size_t u = 0; u < n; u++)
        if (sl_rng_uniform(&rng) < rate)
            drop[u] = (uint8_t)(1 + sl_rng_below(&rng, 4));
    sl_secagg_sim_opts_t o = {.n = n, .dim = dim, .drop_at = drop, .tolerance = tolerance, .bits = bits,
                              .seed = seed, .seeded_keys = 1, .graph_seed = gseed, .included_out = incl,
                              .server_threads = threads, .client_threads = threads};
    sl_secagg_sim_result_t r;
    int rc = sl_secagg_sim_run(&o, &r);
    CHECK_MSG(rc == 0, "n=%zu seed=%llu: %s", n, (unsigned long long)seed, sl_last_error());
    sl_secagg_graph_t g;
    CHECK_EQ(sl_secagg_graph_init(&g, n, r.k, gseed), 0);
    int ok = reference(&g, r.t, drop, flags);
    CHECK_MSG(ok == (r.rc == 0), "n=%zu seed=%llu rate=%.2f: reference says %s, the round %s (%s)", n,
              (unsigned long long)seed, rate, ok ? "success" : "abort", r.rc ? "aborted" : "completed", r.error);
    if (r.rc == 0) {
        successes++;
        CHECK_MSG(r.correct, "n=%zu seed=%llu: unmasked sum differs from the exact sum", n, (unsigned long long)seed);
        int same = 1;
        for (size_t u = 0; u < n; u++)
            same &= ((flags[u] & IN_U3) != 0) == (incl[u] != 0);
        CHECK(same);
    } else {
        aborts++;
        CHECK_EQ(r.rc, SL_EQUORUM);
        CHECK(strlen(r.error) > 0);
        CHECK_CONTAINS(r.error, "aborted");
    }
    sl_secagg_graph_free(&g);
    free(drop), free(flags), free(incl);
}

/* The unmask gate: called once per round, when every needed share is in, with the number
 * of inputs in the sum; refusing aborts the round with the gate's code before any secret is
 * rebuilt (no mask regenerated), accepting leaves the sum exact. Client 3 drops before its
 * masked input: 9 of 10 inputs. */
typedef struct {
    int calls, refuse;
    size_t inputs;
} gate_t;

static int test_gate(void *ctx, size_t inputs)
{
    gate_t *g = ctx;
    g->calls++;
    g->inputs = inputs;
    return g->refuse ? sl_error(SL_EBUDGET, "the test gate says no") : 0;
}

static void test_unmask_gate(void)
{
    for (int refuse = 0; refuse <= 1; refuse++) {
        uint8_t drop[10] = {0}, incl[10] = {0};
        drop[3] = 3;
        gate_t g = {.refuse = refuse};
        sl_secagg_sim_opts_t o = {.n = 10, .dim = 50, .drop_at = drop, .tolerance = 0.2, .bits = 16, .seed = 77,
                                  .seeded_keys = 1, .included_out = incl, .unmask_gate = test_gate,
                                  .unmask_gate_ctx = &g};
        sl_secagg_sim_result_t r;
        CHECK_MSG(sl_secagg_sim_run(&o, &r) == 0, "sim: %s", sl_last_error());
        CHECK_EQ(g.calls, 1);
        CHECK_EQ(g.inputs, 9);
        CHECK_EQ(r.included, 9);
        if (refuse) {
            CHECK_EQ(r.rc, SL_EBUDGET);
            CHECK_CONTAINS(r.error, "unmasking refused: the test gate says no");
            CHECK_EQ(r.prg_terms, 0);
        } else {
            CHECK_EQ(r.rc, 0);
            CHECK(r.correct);
            CHECK(r.prg_terms > 0);
        }
    }
}

int main(int argc, char **argv)
{
    if (sl_csprng_init() != 0)
        return 1;
    if (argc > 1 && strcmp(argv[1], "slow") == 0) {
        /* The long run: n = 1000 with larger inputs and many dropout patterns. */
        static const double r1000[] = {0.0, 0.02, 0.05, 0.08, 0.1, 0.15, 0.2, 0.3};
        for (uint64_t s = 0; s < 8; s++)
            run(1000, 4099, r1000[s], 0.1, s % 2 ? 32 : 16, 1000 + s, 2);
        for (uint64_t s = 0; s < 30; s++)
            run(100, 1000, 0.02 * (double)(s % 15), 0.1, 16, 2000 + s, 1);
        CHECK(successes >= 20);
        return check_summary("test_secagg_protocol slow");
    }
    test_unmask_gate();
    static const double rates[] = {0.0, 0.05, 0.1, 0.2, 0.3, 0.5};
    static const unsigned bits[] = {8, 16, 32};
    /* n = 3 and 10: the complete graph. */
    for (uint64_t s = 0; s < 24; s++)
        run(3, 33, rates[s % 6], 0.3, bits[s % 3], 100 + s, 1);
    for (uint64_t s = 0; s < 24; s++)
        run(10, 100, rates[s % 6], 0.2, bits[s % 3], 200 + s, 1 + (unsigned)(s % 2));
    /* n = 100 and 1000: sparse Harary graphs. */
    for (uint64_t s = 0; s < 12; s++)
        run(100, 257, rates[s % 6], 0.1, bits[s % 3], 300 + s, 1);
    static const double big[] = {0.0, 0.05, 0.1};
    for (uint64_t s = 0; s < 2; s++)
        run(1000, 16, big[s + 1], 0.1, 16, 400 + s, 2);
    CHECK(successes >= 30);
    CHECK(aborts >= 3);

    /* Deterministic below-threshold cases. n = 3, t = 2: two clients vanish before
     * unmasking, the last survivor alone cannot rebuild its b. */
    uint8_t drop3[3] = {0, 4, 4};
    sl_secagg_sim_opts_t o = {.n = 3, .dim = 8, .drop_at = drop3, .bits = 16, .seed = 5, .tolerance = 0.3};
    sl_secagg_sim_result_t r;
    CHECK_EQ(sl_secagg_sim_run(&o, &r), 0);
    CHECK_EQ(r.rc, SL_EQUORUM);
    CHECK_CONTAINS(r.error, "threshold");
    /* Same with one dropout only: the round completes with all three inputs. */
    uint8_t drop1[3] = {0, 4, 0};
    o.drop_at = drop1;
    CHECK_EQ(sl_secagg_sim_run(&o, &r), 0);
    CHECK_EQ(r.rc, 0);
    CHECK(r.correct);
    CHECK_EQ(r.included, 3);
    /* Everybody gone at advertise: quorum abort, cleanly. */
    uint8_t dropall[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    o.n = 10;
    o.drop_at = dropall;
    CHECK_EQ(sl_secagg_sim_run(&o, &r), 0);
    CHECK_EQ(r.rc, SL_EQUORUM);
    CHECK_CONTAINS(r.error, "advertised keys");
    return check_summary("test_secagg_protocol");
}
