#include "privacy/secagg/prg.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_WORDS 4096 /* 16 KiB of keystream per call: stays in L1/L2 */
#define CHUNK_BYTES (CHUNK_WORDS * 4)

static const uint8_t zero_nonce[crypto_stream_chacha20_NONCEBYTES];
static const uint8_t zeros[CHUNK_BYTES];

/* Keystream words [first, first + n) of `seed` into ks (n <= CHUNK_WORDS, first % 16 == 0). */
static void keystream(const uint8_t seed[SL_PRG_SEED_BYTES], size_t first, size_t n, uint32_t *ks)
{
    crypto_stream_chacha20_xor_ic((uint8_t *)ks, zeros, n * 4, zero_nonce, (uint64_t)(first / 16), seed);
}

static uint32_t load_le32(const uint32_t *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static int little_endian(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* acc[0..n) += sign * ks[0..n) */
static void add_words(uint32_t *restrict acc, const uint32_t *restrict ks, size_t n, int sign)
{
    if (!little_endian()) {
        for (size_t i = 0; i < n; i++)
            acc[i] += sign > 0 ? load_le32(&ks[i]) : 0u - load_le32(&ks[i]);
        return;
    }
    if (sign > 0)
        for (size_t i = 0; i < n; i++)
            acc[i] += ks[i];
    else
        for (size_t i = 0; i < n; i++)
            acc[i] -= ks[i];
}

/* Process words [lo, hi) of acc for every term; lo is a multiple of CHUNK_WORDS. */
static void apply_range(const sl_prg_term_t *terms, size_t nterms, uint32_t *acc, size_t lo, size_t hi,
                        uint32_t *ks)
{
    for (size_t c = lo; c < hi; c += CHUNK_WORDS) {
        size_t n = hi - c < CHUNK_WORDS ? hi - c : CHUNK_WORDS;
        for (size_t j = 0; j < nterms; j++) {
            keystream(terms[j].seed, c, n, ks);
            if (acc)
                add_words(acc + c, ks, n, terms[j].sign);
        }
    }
    sodium_memzero(ks, CHUNK_BYTES);
}

void sl_prg_add(const uint8_t seed[SL_PRG_SEED_BYTES], int sign, uint32_t *acc, size_t m)
{
    uint32_t ks[CHUNK_WORDS];
    for (size_t c = 0; c < m; c += CHUNK_WORDS) {
        size_t n = m - c < CHUNK_WORDS ? m - c : CHUNK_WORDS;
        keystream(seed, c, n, ks);
        add_words(acc + c, ks, n, sign);
    }
    sodium_memzero(ks, sizeof ks);
}

typedef struct {
    const sl_prg_term_t *terms;
    size_t nterms;
    uint32_t *acc;
    size_t lo, hi;
    uint32_t *ks;
} job_t;

static void *job_run(void *arg)
{
    job_t *j = arg;
    apply_range(j->terms, j->nterms, j->acc, j->lo, j->hi, j->ks);
    return NULL;
}

static int run(const sl_prg_term_t *terms, size_t nterms, uint32_t *acc, size_t m, unsigned threads)
{
    if (nterms && !terms)
        return sl_error(SL_EINVAL, "prg: NULL terms");
    if (threads == 0)
        threads = 1;
    size_t chunks = (m + CHUNK_WORDS - 1) / CHUNK_WORDS;
    if (threads > chunks)
        threads = chunks ? (unsigned)chunks : 1;
    if (threads > 64)
        threads = 64;
    uint32_t *ks = malloc((size_t)threads * CHUNK_BYTES);
    if (!ks)
        return sl_error(SL_ENOMEM, "prg: out of memory");
    job_t jobs[64];
    pthread_t tid[64];
    int started[64] = {0};
    for (unsigned i = 0; i < threads; i++) {
        size_t c0 = chunks * i / threads, c1 = chunks * (i + 1) / threads;
        size_t lo = c0 * CHUNK_WORDS, hi = c1 * CHUNK_WORDS < m ? c1 * CHUNK_WORDS : m;
        jobs[i] = (job_t){terms, nterms, acc, lo, hi, ks + (size_t)i * CHUNK_WORDS};
    }
    for (unsigned i = 1; i < threads; i++)
        started[i] = pthread_create(&tid[i], NULL, job_run, &jobs[i]) == 0;
    job_run(&jobs[0]);
    for (unsigned i = 1; i < threads; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            job_run(&jobs[i]); /* could not start a thread: do its range here */
    }
    free(ks);
    return 0;
}

int sl_prg_apply(const sl_prg_term_t *terms, size_t nterms, uint32_t *acc, size_t m, unsigned threads)
{
    if (!acc && m)
        return sl_error(SL_EINVAL, "prg: NULL accumulator");
    return run(terms, nterms, acc, m, threads);
}

int sl_prg_keystream_only(const sl_prg_term_t *terms, size_t nterms, size_t words, unsigned threads)
{
    return run(terms, nterms, NULL, words, threads);
}
