/* core/rng: known answers (ChaCha20 keystream, key derivation), reproducibility,
 * independence of streams, seek/tell, and the distributions built on top. */
#include <stdint.h>
#include <stdlib.h>

#include "core/rng.h"
#include "support/check.h"

static void hex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
}

int main(void)
{
    CHECK_EQ(sl_csprng_init(), 0);

    /* ChaCha20, all-zero key and nonce, block 0: the well-known first keystream block
     * (RFC 7539 section A.1, test vector #1). */
    uint8_t key[32] = {0}, want[64], got[64];
    hex("76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586",
        want, 64);
    sl_rng_t r;
    sl_rng_init_key(&r, key);
    sl_rng_bytes(&r, got, 64);
    CHECK(memcmp(got, want, 64) == 0);
    /* The same bytes read in odd-sized pieces. */
    sl_rng_init_key(&r, key);
    sl_rng_bytes(&r, got, 7);
    sl_rng_bytes(&r, got + 7, 50);
    sl_rng_bytes(&r, got + 57, 7);
    CHECK(memcmp(got, want, 64) == 0);

    /* Key derivation: BLAKE2b-256("starling-rng-v1\0" || seed || len || purpose || round
     * || client), little-endian u64s; value computed independently with Python hashlib. */
    uint8_t want_key[32];
    hex("ac1b3566d47f819d1309cd635ecab270439edd3d0b10d4663a336959b5426de7", want_key, 32);
    sl_rng_init(&r, 42, "init", 3, 17);
    CHECK(memcmp(r.key, want_key, 32) == 0);

    /* Reproducible; different (purpose, round, client, seed) give different streams. */
    sl_rng_t a, b;
    sl_rng_init(&a, 7, "sample", 1, 2);
    sl_rng_init(&b, 7, "sample", 1, 2);
    uint64_t a0 = sl_rng_u64(&a);
    CHECK(a0 == sl_rng_u64(&b));
    sl_rng_t v[4];
    sl_rng_init(&v[0], 7, "shuffle", 1, 2);
    sl_rng_init(&v[1], 7, "sample", 2, 2);
    sl_rng_init(&v[2], 7, "sample", 1, 3);
    sl_rng_init(&v[3], 8, "sample", 1, 2);
    for (int i = 0; i < 4; i++)
        CHECK(sl_rng_u64(&v[i]) != a0);

    /* tell/seek: resuming at a recorded position replays the same bytes. */
    sl_rng_init(&a, 1, "x", 0, 0);
    uint8_t skip[133], first[300], again[300];
    sl_rng_bytes(&a, skip, sizeof skip);
    uint64_t pos = sl_rng_tell(&a);
    CHECK_EQ(pos, 133);
    sl_rng_bytes(&a, first, sizeof first);
    sl_rng_init(&b, 1, "x", 0, 0);
    sl_rng_seek(&b, pos);
    sl_rng_bytes(&b, again, sizeof again);
    CHECK(memcmp(first, again, sizeof first) == 0);
    CHECK_EQ(sl_rng_tell(&b), 433);

    /* Uniform doubles: mean 1/2, variance 1/12. Normals: mean 0, variance 1. */
    const int n = 200000;
    double s = 0, s2 = 0, ns = 0, ns2 = 0;
    for (int i = 0; i < n; i++) {
        double u = sl_rng_uniform(&a);
        CHECK_MSG(u >= 0.0 && u < 1.0, "u = %g", u);
        s += u;
        s2 += u * u;
        double z = sl_rng_normal(&a);
        ns += z;
        ns2 += z * z;
    }
    CHECK_NEAR(s / n, 0.5, 0.005);
    CHECK_NEAR(s2 / n - (s / n) * (s / n), 1.0 / 12.0, 0.005);
    CHECK_NEAR(ns / n, 0.0, 0.01);
    CHECK_NEAR(ns2 / n, 1.0, 0.02);

    /* below(n): chi-square over 10 buckets, 9 degrees of freedom (p = 0.001 at 27.9). */
    double counts[10] = {0};
    for (int i = 0; i < 100000; i++)
        counts[sl_rng_below(&a, 10)] += 1;
    double chi2 = 0;
    for (int k = 0; k < 10; k++)
        chi2 += (counts[k] - 10000.0) * (counts[k] - 10000.0) / 10000.0;
    CHECK_MSG(chi2 < 27.9, "chi2 = %g", chi2);
    CHECK_EQ(sl_rng_below(&a, 1), 0);

    /* Shuffle is a permutation. */
    uint32_t idx[1000];
    int seen[1000] = {0};
    for (uint32_t i = 0; i < 1000; i++)
        idx[i] = i;
    sl_rng_shuffle_u32(&a, idx, 1000);
    int moved = 0;
    for (uint32_t i = 0; i < 1000; i++) {
        seen[idx[i]]++;
        moved += idx[i] != i;
    }
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(seen[i], 1);
    CHECK(moved > 900);

    /* CSPRNG: works and differs call to call. */
    CHECK(sl_csprng_u64() != sl_csprng_u64());
    double cu = sl_csprng_uniform();
    CHECK(cu >= 0.0 && cu < 1.0);
    CHECK(sl_csprng_below(3) < 3);

    sl_rng_wipe(&a);
    uint8_t zero[32] = {0};
    CHECK(memcmp(a.key, zero, 32) == 0);
    return check_summary("test_rng");
}
