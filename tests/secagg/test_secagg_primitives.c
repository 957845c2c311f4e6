/* Known answers and properties of the SecAgg+ building blocks: ChaCha20 PRG (RFC 8439),
 * X25519 (RFC 7748) + BLAKE2b KDF (pinned, computed with Python's hashlib), Shamir over
 * GF(2^61-1) (pinned shares of a fixed polynomial, reconstruction from any t, failure from
 * t-1), the parameter finder (Google fcp's published table), the Harary graph, bit packing
 * and quantization. */
#include <sodium.h>
#include <stdlib.h>

#include "core/rng.h"
#include "privacy/secagg/graph.h"
#include "privacy/secagg/kdf.h"
#include "privacy/secagg/prg.h"
#include "privacy/secagg/quantize.h"
#include "privacy/secagg/shamir.h"
#include "privacy/secagg/wire.h"
#include "support/check.h"

static void hex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

static void test_prg(void)
{
    /* RFC 8439 A.1 #1 and #2: key 0, nonce 0, block counter 0 and 1. */
    static const char *block0 = "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
                                "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586";
    static const char *block1 = "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed"
                                "29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f";
    uint8_t key[32] = {0}, expect[128];
    hex(block0, expect, 64);
    hex(block1, expect + 64, 64);
    uint32_t acc[32] = {0};
    sl_prg_add(key, 1, acc, 32);
    for (int i = 0; i < 32; i++) {
        uint32_t w = (uint32_t)expect[4 * i] | (uint32_t)expect[4 * i + 1] << 8 | (uint32_t)expect[4 * i + 2] << 16 |
                     (uint32_t)expect[4 * i + 3] << 24;
        CHECK_EQ(acc[i], w);
    }
    sl_prg_add(key, -1, acc, 32); /* subtracting the same mask gives 0 back */
    int zero = 1;
    for (int i = 0; i < 32; i++)
        zero &= acc[i] == 0;
    CHECK(zero);

    /* Chunked, multi-seed, threaded apply == one-shot libsodium keystream per seed. */
    size_t m = 3 * 4096 + 21;
    sl_prg_term_t terms[5];
    sl_rng_t rng;
    sl_rng_init(&rng, 1, "test-prg", 0, 0);
    for (int j = 0; j < 5; j++) {
        sl_rng_bytes(&rng, terms[j].seed, 32);
        terms[j].sign = j % 2 ? -1 : 1;
    }
    uint32_t *ref = calloc(m, 4), *got = calloc(m, 4);
    uint8_t *ks = malloc(4 * m);
    static const uint8_t nonce[8];
    for (int j = 0; j < 5; j++) {
        crypto_stream_chacha20(ks, 4 * m, nonce, terms[j].seed);
        for (size_t i = 0; i < m; i++) {
            uint32_t w = (uint32_t)ks[4 * i] | (uint32_t)ks[4 * i + 1] << 8 | (uint32_t)ks[4 * i + 2] << 16 |
                         (uint32_t)ks[4 * i + 3] << 24;
            ref[i] += terms[j].sign > 0 ? w : 0u - w;
        }
    }
    for (unsigned th = 1; th <= 3; th++) {
        memset(got, 0, 4 * m);
        CHECK_EQ(sl_prg_apply(terms, 5, got, m, th), 0);
        CHECK(memcmp(got, ref, 4 * m) == 0);
    }
    free(ref);
    free(got);
    free(ks);
}

static void test_kdf(void)
{
    /* RFC 7748 6.1 */
    uint8_t a_sk[32], a_pk[32], b_sk[32], b_pk[32], shared[32], pk[32], s1[32];
    hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a", a_sk, 32);
    hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a", a_pk, 32);
    hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb", b_sk, 32);
    hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f", b_pk, 32);
    hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742", shared, 32);
    crypto_scalarmult_base(pk, a_sk);
    CHECK(memcmp(pk, a_pk, 32) == 0);
    CHECK_EQ(crypto_scalarmult(s1, a_sk, b_pk), 0);
    CHECK(memcmp(s1, shared, 32) == 0);

    uint8_t session[16], out_a[32], out_b[32], expect[32];
    for (int i = 0; i < 16; i++)
        session[i] = (uint8_t)i;
    /* Pinned: BLAKE2b-256 computed independently with Python's hashlib. */
    hex("d17bc01063d655b1edf4b4829de4a1aba0e75ee3b8925b588e5c345ae770a95a", expect, 32);
    CHECK_EQ(sl_secagg_agree("mask", session, 7, a_sk, a_pk, b_pk, out_a), 0);
    CHECK_EQ(sl_secagg_agree("mask", session, 7, b_sk, b_pk, a_pk, out_b), 0);
    CHECK(memcmp(out_a, expect, 32) == 0);
    CHECK(memcmp(out_b, expect, 32) == 0); /* both ends agree: ordered public keys */
    hex("6d8299de4704452dc19d1315c7e91a7f23cd5c2f859854eeef5e75ddb107476a", expect, 32);
    sl_secagg_kdf("enc", session, 7, b_pk, a_pk, shared, out_a);
    CHECK(memcmp(out_a, expect, 32) == 0);
    /* Another round or session gives an unrelated key. */
    CHECK_EQ(sl_secagg_agree("mask", session, 8, a_sk, a_pk, b_pk, out_b), 0);
    CHECK(memcmp(out_b, out_a, 32) != 0);
    uint8_t b[32];
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)(32 + i);
    hex("a3d079af1d56c23593dfb393fbc8ea30bc609eccd9d17edcb54ca47e94b0d776", expect, 32);
    sl_secagg_commit(session, 7, 5, b, out_a);
    CHECK(memcmp(out_a, expect, 32) == 0);
    /* A low-order public key is refused. */
    uint8_t zero_pk[32] = {0};
    CHECK_EQ(sl_secagg_agree("mask", session, 7, a_sk, a_pk, zero_pk, out_a), SL_ECRYPTO);
}

static void test_shamir(void)
{
    const uint64_t P = SL_SHAMIR_P;
    CHECK_EQ(sl_gf61_mul(P - 1, P - 1), 1);
    CHECK_EQ(sl_gf61_add(P - 1, 5), 4);
    CHECK_EQ(sl_gf61_sub(3, 5), P - 2);
    CHECK_EQ(sl_gf61_mul(sl_gf61_inv(123456789), 123456789), 1);

    /* Fixed polynomial -> fixed shares (pinned with Python big integers). */
    uint64_t c[5][3];
    const uint64_t *coef[5];
    for (int l = 0; l < 5; l++) {
        c[l][0] = 11 + (uint64_t)l;
        c[l][1] = 1000003 * (uint64_t)(l + 1);
        c[l][2] = (uint64_t)((__extension__(unsigned __int128)123456789012345 * (unsigned)(l + 2)) % P);
        coef[l] = c[l];
    }
    static const uint64_t expect1[5] = {246913579024704, 370370369037053, 493827159049402, 617283949061751,
                                        740740739074100};
    static const uint64_t expect1000[5] = {188376039824750254u, 1435485564843973852u, 376752080649503499u,
                                           1623861605668727097u, 565128121474256744u};
    sl_shamir_share_t sh;
    sl_shamir_eval(coef, 3, 1, &sh);
    for (int l = 0; l < 5; l++)
        CHECK_EQ(sh.v[l], expect1[l]);
    sl_shamir_eval(coef, 3, 1000, &sh);
    for (int l = 0; l < 5; l++)
        CHECK_EQ(sh.v[l], expect1000[l]);

    /* Any t of n reconstruct; t-1 do not. */
    sl_rng_t rng;
    sl_rng_init(&rng, 2, "test-shamir", 0, 0);
    uint8_t secret[32], back[32];
    for (int i = 0; i < 32; i++)
        secret[i] = (uint8_t)(0xF0 ^ (i * 37));
    secret[31] = 0xFF;
    enum { N = 7, T = 4 };
    uint64_t xs[N];
    sl_shamir_share_t shares[N];
    for (int i = 0; i < N; i++)
        xs[i] = (uint64_t)(3 * i + 1);
    CHECK_EQ(sl_shamir_split(secret, T, xs, N, &rng, shares), 0);
    int subsets = 0, ok = 0;
    for (unsigned mask = 0; mask < (1u << N); mask++) {
        if (__builtin_popcount(mask) != T)
            continue;
        uint64_t sx[T];
        sl_shamir_share_t ss[T];
        int j = 0;
        for (int i = 0; i < N; i++)
            if (mask & (1u << i))
                sx[j] = xs[i], ss[j++] = shares[i];
        subsets++;
        ok += sl_shamir_combine(sx, ss, T, back) == 0 && memcmp(back, secret, 32) == 0;
    }
    CHECK_EQ(subsets, 35);
    CHECK_EQ(ok, 35);
    int wrong = 0, tried = 0;
    for (unsigned mask = 0; mask < (1u << N); mask++) {
        if (__builtin_popcount(mask) != T - 1)
            continue;
        uint64_t sx[T];
        sl_shamir_share_t ss[T];
        int j = 0;
        for (int i = 0; i < N; i++)
            if (mask & (1u << i))
                sx[j] = xs[i], ss[j++] = shares[i];
        memset(back, 0, 32);
        int rc = sl_shamir_combine(sx, ss, T - 1, back);
        tried++;
        wrong += rc == SL_ECRYPTO || (rc == 0 && memcmp(back, secret, 32) != 0);
    }
    CHECK_EQ(wrong, tried);
    /* A corrupted share is detected (invalid encoding) or gives a wrong secret. */
    sl_shamir_share_t bad[T];
    memcpy(bad, shares, sizeof bad);
    bad[1].v[2] ^= 1;
    int rc = sl_shamir_combine(xs, bad, T, back);
    CHECK(rc == SL_ECRYPTO || memcmp(back, secret, 32) != 0);
    /* Bad arguments. */
    CHECK_EQ(sl_shamir_split(secret, 0, xs, N, &rng, shares), SL_EINVAL);
    CHECK_EQ(sl_shamir_split(secret, N + 1, xs, N, &rng, shares), SL_EINVAL);
    uint64_t dup[2] = {5, 5};
    CHECK_EQ(sl_shamir_split(secret, 1, dup, 2, &rng, shares), SL_EINVAL);
    uint64_t zx[1] = {0};
    CHECK_EQ(sl_shamir_split(secret, 1, zx, 1, &rng, shares), SL_EINVAL);
    /* Encoding round trip; elements >= p are rejected. */
    uint8_t enc[SL_SHAMIR_SHARE_BYTES];
    sl_shamir_share_t dec;
    sl_shamir_share_encode(&shares[0], enc);
    CHECK_EQ(sl_shamir_share_decode(enc, &dec), 0);
    CHECK(memcmp(&dec, &shares[0], sizeof dec) == 0);
    memset(enc, 0xFF, 8);
    CHECK_EQ(sl_shamir_share_decode(enc, &dec), SL_EFORMAT);
}

static void test_params(void)
{
    /* Google fcp graph_parameter_finder_test.cc, semi-honest server: (n, adversarial,
     * dropout) -> exact degree and an upper bound on the threshold. */
    static const struct {
        size_t n;
        double adv, drop;
        size_t k, t_max;
    } table[] = {
        {100, 0.05, 0.05, 12, 6},    {1000, 0.05, 0.05, 30, 17},  {10000, 0.05, 0.05, 34, 20},
        {100000, 0.05, 0.05, 36, 21}, {1000000, 0.05, 0.05, 38, 22}, {1000, 0.05, 0.33, 72, 24},
        {10000, 0.05, 0.33, 86, 29}, {1000, 0.33, 0.05, 78, 60},   {1000, 0.0, 0.33, 38, 2},
        {1000, 0.33, 0.33, 286, 150}, {100, 0.33, 0.33, 68, 34},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        size_t k = 0, t = 0;
        CHECK_EQ(sl_secagg_find_degree(table[i].n, table[i].drop, table[i].adv, &k, &t), 0);
        CHECK_MSG(k == table[i].k, "n=%zu adv=%g drop=%g: k=%zu, fcp %zu", table[i].n, table[i].adv, table[i].drop,
                  k, table[i].k);
        CHECK_MSG(t <= table[i].t_max, "n=%zu: t=%zu > fcp %zu", table[i].n, t, table[i].t_max);
        sl_secagg_bounds_t b;
        sl_secagg_bounds(table[i].n, k, table[i].drop, table[i].adv, &b);
        CHECK(b.feasible);
        CHECK(b.t_min <= b.t_max && b.t_max <= k + 1);
    }
    /* The chosen t sits in [t_min, t_max] and is a strict majority when that is allowed. */
    size_t k, t;
    CHECK_EQ(sl_secagg_choose_params(1000, 0.05, 0.05, 0, 0, &k, &t), 0);
    CHECK_EQ(k, 30);
    CHECK(t >= 16 && t <= 31);
    /* Small n: complete graph. */
    CHECK_EQ(sl_secagg_choose_params(3, 0.05, 0.05, 0, 0, &k, &t), 0);
    CHECK_EQ(k, 2);
    CHECK_EQ(t, 2);
    CHECK_EQ(sl_secagg_choose_params(10, 0.05, 0.05, 40, 0, &k, &t), 0);
    CHECK_EQ(k, 9);
    /* Overrides and their checks. */
    CHECK_EQ(sl_secagg_choose_params(1000, 0.05, 0.05, 41, 20, &k, &t), 0);
    CHECK_EQ(k, 42);
    CHECK_EQ(t, 20);
    CHECK_EQ(sl_secagg_choose_params(1000, 0.05, 0.05, 40, 42, &k, &t), SL_EINVAL);
    CHECK_CONTAINS(sl_last_error(), "threshold");
    CHECK_EQ(sl_secagg_choose_params(1, 0.05, 0.05, 0, 0, &k, &t), SL_EINVAL);
    CHECK_EQ(sl_secagg_choose_params(100, 0.6, 0.4, 0, 0, &k, &t), SL_EINVAL);
}

static void test_graph(void)
{
    uint8_t seed[32] = {1, 2, 3};
    sl_secagg_graph_t g, g2;
    CHECK_EQ(sl_secagg_graph_init(&g, 101, 10, seed), 0);
    int regular = 1, symmetric = 1, sorted = 1, noself = 1;
    for (size_t u = 0; u < g.n; u++) {
        const uint32_t *row = sl_secagg_graph_row(&g, u);
        for (size_t j = 0; j < g.k; j++) {
            noself &= row[j] != u;
            if (j)
                sorted &= row[j] > row[j - 1];
            symmetric &= sl_secagg_graph_find(&g, row[j], (uint32_t)u) >= 0;
        }
    }
    regular &= g.k == 10;
    CHECK(regular && symmetric && sorted && noself);
    /* Same seed, same graph; another seed, another graph. */
    CHECK_EQ(sl_secagg_graph_init(&g2, 101, 10, seed), 0);
    CHECK(memcmp(g.adj, g2.adj, 101 * 10 * 4) == 0);
    sl_secagg_graph_free(&g2);
    seed[0] = 9;
    CHECK_EQ(sl_secagg_graph_init(&g2, 101, 10, seed), 0);
    CHECK(memcmp(g.adj, g2.adj, 101 * 10 * 4) != 0);
    sl_secagg_graph_free(&g2);
    sl_secagg_graph_free(&g);
    /* k >= n - 1: the complete graph. */
    CHECK_EQ(sl_secagg_graph_init(&g, 5, 8, seed), 0);
    CHECK_EQ(g.k, 4);
    CHECK_EQ(sl_secagg_graph_row(&g, 2)[2], 3);
    sl_secagg_graph_free(&g);
    CHECK_EQ(sl_secagg_graph_init(&g, 50, 7, seed), SL_EINVAL);
}

static void test_pack(void)
{
    sl_rng_t rng;
    sl_rng_init(&rng, 3, "test-pack", 0, 0);
    for (unsigned bits = 1; bits <= 32; bits++) {
        size_t m = 1000 + bits;
        uint32_t *v = malloc(m * 4), *back = calloc(m, 4);
        uint8_t *buf = malloc(sl_secagg_packed_bytes(m, bits));
        for (size_t i = 0; i < m; i++)
            v[i] = sl_rng_u32(&rng) & (bits == 32 ? UINT32_MAX : (1u << bits) - 1);
        sl_secagg_pack(v, m, bits, buf);
        sl_secagg_unpack_add(buf, m, bits, back);
        CHECK_MSG(memcmp(v, back, m * 4) == 0, "bits %u", bits);
        CHECK_EQ(sl_secagg_packed_bytes(m, bits), (m * bits + 7) / 8);
        free(v), free(back), free(buf);
    }
}

static void test_quantize(void)
{
    sl_quant_t q;
    CHECK_EQ(sl_quant_init(&q, 2.0, 16, 1000, 0), 0);
    CHECK_EQ(q.bits, 16);
    CHECK_EQ(q.mod_bits, 26);
    CHECK_EQ(sl_quant_init(&q, 1.0, 32, 1000, 0), 0); /* capped: b lowered to fit 32 */
    CHECK_EQ(q.bits, 22);
    CHECK_EQ(q.mod_bits, 32);
    CHECK_EQ(sl_quant_init(&q, 1.0, 7, 10, 0), SL_EINVAL);
    CHECK_EQ(sl_quant_init(&q, 0.0, 16, 10, 0), SL_EINVAL);

    /* Sum of n clients decodes to the float sum within n / scale; clipping applies. */
    enum { N = 50, M = 64 };
    CHECK_EQ(sl_quant_init(&q, 1.0, 12, N, 0), 0);
    sl_rng_t rng;
    sl_rng_init(&rng, 4, "test-quant", 0, 0);
    uint32_t sum[M] = {0}, enc[M];
    double ref[M] = {0};
    float x[M];
    for (int c = 0; c < N; c++) {
        for (int i = 0; i < M; i++) {
            x[i] = (float)(3.0 * sl_rng_uniform(&rng) - 1.5);
            ref[i] += fmax(-1.0, fmin(1.0, 0.5 * (double)x[i]));
        }
        CHECK_EQ(sl_quant_encode(&q, x, M, 0.5, &rng, NULL, enc), 0);
        for (int i = 0; i < M; i++)
            sum[i] += enc[i];
    }
    float out[M];
    sl_quant_decode(&q, sum, M, out);
    int close = 1;
    for (int i = 0; i < M; i++)
        close &= fabs((double)out[i] - ref[i]) <= (double)N / q.scale + 1e-6;
    CHECK(close);
    /* Stochastic rounding is unbiased: 0.3 / step averages to 0.3 / step. */
    float v = (float)(0.3 / q.scale);
    double mean = 0;
    for (int r = 0; r < 20000; r++) {
        uint32_t e;
        CHECK_EQ(sl_quant_encode(&q, &v, 1, 1.0, &rng, NULL, &e), 0);
        mean += (double)sl_quant_centre(&q, e);
    }
    CHECK_NEAR(mean / 20000, 0.3, 0.02);
    /* The DP noise share is added to the integers; negatives wrap and centre back. */
    int32_t noise[2] = {-5, 7};
    float z[2] = {0, 0};
    uint32_t e2[2];
    CHECK_EQ(sl_quant_encode(&q, z, 2, 1.0, &rng, noise, e2), 0);
    CHECK_EQ(sl_quant_centre(&q, e2[0]), -5);
    CHECK_EQ(sl_quant_centre(&q, e2[1]), 7);
    float nan = NAN;
    CHECK_EQ(sl_quant_encode(&q, &nan, 1, 1.0, &rng, NULL, e2), SL_ENOTFINITE);
}

int main(void)
{
    if (sl_csprng_init() != 0)
        return 1;
    test_prg();
    test_kdf();
    test_shamir();
    test_params();
    test_graph();
    test_pack();
    test_quantize();
    return check_summary("test_secagg_primitives");
}
