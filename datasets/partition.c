#include "datasets/partition.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

void sl_parts_free(sl_parts_t *parts)
{
    if (!parts)
        return;
    free(parts->offsets);
    free(parts->items);
    memset(parts, 0, sizeof *parts);
}

/* Client of every item -> CSR with increasing items per client. Takes nothing. */
static int build_parts(sl_parts_t *out, const uint32_t *assign, size_t n, size_t n_clients)
{
    memset(out, 0, sizeof *out);
    out->offsets = calloc(n_clients + 1, sizeof *out->offsets);
    out->items = malloc((n ? n : 1) * sizeof *out->items);
    if (!out->offsets || !out->items) {
        sl_parts_free(out);
        return sl_error(SL_ENOMEM, "partition: out of memory for %zu items", n);
    }
    out->n_clients = n_clients;
    out->n_items = n;
    for (size_t i = 0; i < n; i++)
        out->offsets[assign[i] + 1]++;
    for (size_t c = 0; c < n_clients; c++)
        out->offsets[c + 1] += out->offsets[c];
    size_t *fillp = malloc((n_clients ? n_clients : 1) * sizeof *fillp);
    if (!fillp) {
        sl_parts_free(out);
        return sl_error(SL_ENOMEM, "partition: out of memory");
    }
    memcpy(fillp, out->offsets, n_clients * sizeof *fillp);
    for (size_t i = 0; i < n; i++)
        out->items[fillp[assign[i]]++] = i;
    free(fillp);
    return 0;
}

static int check_counts(size_t n, size_t n_clients, const char *scheme)
{
    if (n_clients == 0)
        return sl_error(SL_EINVAL, "partition %s: need at least one client", scheme);
    if (n_clients > n)
        return sl_error(SL_EINVAL, "partition %s: %zu clients but only %zu examples", scheme, n_clients, n);
    if (n_clients > UINT32_MAX)
        return sl_error(SL_EINVAL, "partition %s: too many clients (%zu)", scheme, n_clients);
    return 0;
}

/* ---- random variates ---------------------------------------------------------------------- */

/* log of a Gamma(shape, 1) variate; stays finite for tiny shapes. */
static double log_gamma_sample(sl_rng_t *rng, double shape)
{
    double boost = 0.0;
    if (shape < 1.0) { /* G(a) = G(a+1) * U^(1/a) */
        double u = sl_rng_uniform(rng);
        while (u <= 0.0)
            u = sl_rng_uniform(rng);
        boost = log(u) / shape;
        shape += 1.0;
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = sl_rng_normal(rng), v = 1.0 + c * x;
        if (v <= 0.0)
            continue;
        v = v * v * v;
        double u = sl_rng_uniform(rng);
        if (u > 0.0 && log(u) < 0.5 * x * x + d - d * v + d * log(v))
            return log(d * v) + boost;
    }
}

double sl_gamma_sample(struct sl_rng *rng, double shape) { return exp(log_gamma_sample(rng, shape)); }

void sl_dirichlet_sample(struct sl_rng *rng, double alpha, size_t k, double *q)
{
    double mx = -HUGE_VAL, sum = 0.0;
    for (size_t i = 0; i < k; i++) {
        q[i] = log_gamma_sample(rng, alpha);
        if (q[i] > mx)
            mx = q[i];
    }
    for (size_t i = 0; i < k; i++) {
        q[i] = exp(q[i] - mx);
        sum += q[i];
    }
    for (size_t i = 0; i < k; i++)
        q[i] /= sum;
}

/* ---- partitioners ------------------------------------------------------------------------- */

int sl_partition_iid(sl_parts_t *out, size_t n, size_t n_clients, uint64_t seed)
{
    int rc = check_counts(n, n_clients, "iid");
    if (rc)
        return rc;
    size_t *perm = malloc(n * sizeof *perm);
    uint32_t *assign = malloc(n * sizeof *assign);
    if (!perm || !assign) {
        rc = sl_error(SL_ENOMEM, "partition iid: out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    sl_rng_t rng;
    sl_rng_init(&rng, seed, "partition-iid", 0, 0);
    sl_rng_shuffle_size(&rng, perm, n);
    for (size_t c = 0; c < n_clients; c++) /* client c gets ranks [c n / N, (c+1) n / N) */
        for (size_t r = c * n / n_clients; r < (c + 1) * n / n_clients; r++)
            assign[perm[r]] = (uint32_t)c;
    rc = build_parts(out, assign, n, n_clients);
cleanup:
    free(perm);
    free(assign);
    return rc;
}

int sl_partition_dirichlet(sl_parts_t *out, const int32_t *labels, size_t n, size_t n_classes, size_t n_clients,
                           double alpha, uint64_t seed)
{
    int rc = check_counts(n, n_clients, "dirichlet");
    if (rc)
        return rc;
    if (!(alpha > 0.0) || !isfinite(alpha))
        return sl_error(SL_EINVAL, "partition dirichlet: alpha must be > 0, got %g", alpha);
    if (n_classes == 0)
        return sl_error(SL_EINVAL, "partition dirichlet: no classes");
    size_t *pool_start = calloc(n_classes + 1, sizeof *pool_start);
    size_t *remaining = calloc(n_classes, sizeof *remaining);
    size_t *pool = malloc(n * sizeof *pool);
    uint32_t *assign = malloc(n * sizeof *assign);
    size_t *order = malloc(n_clients * sizeof *order);
    double *q = malloc(n_classes * sizeof *q);
    if (!pool_start || !remaining || !pool || !assign || !order || !q) {
        rc = sl_error(SL_ENOMEM, "partition dirichlet: out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0 || (size_t)labels[i] >= n_classes) {
            rc = sl_error(SL_EINVAL, "partition dirichlet: label %d of example %zu is outside [0, %zu)",
                          (int)labels[i], i, n_classes);
            goto cleanup;
        }
        pool_start[(size_t)labels[i] + 1]++;
    }
    for (size_t k = 0; k < n_classes; k++) {
        remaining[k] = pool_start[k + 1];
        pool_start[k + 1] += pool_start[k];
    }
    {
        size_t *cursor = malloc(n_classes * sizeof *cursor);
        if (!cursor) {
            rc = sl_error(SL_ENOMEM, "partition dirichlet: out of memory");
            goto cleanup;
        }
        memcpy(cursor, pool_start, n_classes * sizeof *cursor);
        for (size_t i = 0; i < n; i++)
            pool[cursor[labels[i]]++] = i;
        free(cursor);
    }
    sl_rng_t rng;
    sl_rng_init(&rng, seed, "partition-dirichlet", 0, 0);
    for (size_t k = 0; k < n_classes; k++) /* random draw order inside each label pool */
        sl_rng_shuffle_size(&rng, pool + pool_start[k], pool_start[k + 1] - pool_start[k]);
    for (size_t c = 0; c < n_clients; c++)
        order[c] = c;
    sl_rng_shuffle_size(&rng, order, n_clients); /* exhaustion should not favour low ids */
    for (size_t oc = 0; oc < n_clients; oc++) {
        size_t c = order[oc];
        size_t size = n / n_clients + (c < n % n_clients ? 1 : 0);
        sl_dirichlet_sample(&rng, alpha, n_classes, q);
        for (size_t s = 0; s < size; s++) {
            double total = 0.0;
            for (size_t k = 0; k < n_classes; k++)
                total += remaining[k] ? q[k] : 0.0;
            size_t pick = n_classes;
            if (total > 0.0) {
                double u = sl_rng_uniform(&rng) * total, acc = 0.0;
                for (size_t k = 0; k < n_classes; k++) {
                    if (!remaining[k])
                        continue;
                    acc += q[k];
                    pick = k;
                    if (u < acc)
                        break;
                }
            } else { /* q's mass is all on exhausted labels: draw by what is left */
                size_t left = 0;
                for (size_t k = 0; k < n_classes; k++)
                    left += remaining[k];
                uint64_t u = sl_rng_below(&rng, left);
                for (size_t k = 0; k < n_classes; k++) {
                    if (u < remaining[k]) {
                        pick = k;
                        break;
                    }
                    u -= remaining[k];
                }
            }
            remaining[pick]--;
            assign[pool[pool_start[pick] + remaining[pick]]] = (uint32_t)c;
        }
    }
    rc = build_parts(out, assign, n, n_clients);
cleanup:
    free(pool_start);
    free(remaining);
    free(pool);
    free(assign);
    free(order);
    free(q);
    return rc;
}

int sl_partition_shards(sl_parts_t *out, const int32_t *labels, size_t n, size_t n_clients, size_t shards_per_client,
                        uint64_t seed)
{
    int rc = check_counts(n, n_clients, "shards");
    if (rc)
        return rc;
    if (shards_per_client == 0 || n_clients * shards_per_client > n)
        return sl_error(SL_EINVAL, "partition shards: %zu clients x %zu shards needs at least that many examples (have %zu)",
                        n_clients, shards_per_client, n);
    size_t n_shards = n_clients * shards_per_client;
    size_t *perm = malloc(n * sizeof *perm), *sorted = malloc(n * sizeof *sorted);
    size_t *shard_perm = malloc(n_shards * sizeof *shard_perm);
    uint32_t *assign = malloc(n * sizeof *assign);
    size_t *count = NULL;
    int32_t lmax = 0;
    if (!perm || !sorted || !shard_perm || !assign) {
        rc = sl_error(SL_ENOMEM, "partition shards: out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0) {
            rc = sl_error(SL_EINVAL, "partition shards: negative label %d at example %zu", (int)labels[i], i);
            goto cleanup;
        }
        if (labels[i] > lmax)
            lmax = labels[i];
        perm[i] = i;
    }
    sl_rng_t rng;
    sl_rng_init(&rng, seed, "partition-shards", 0, 0);
    sl_rng_shuffle_size(&rng, perm, n); /* random order inside a label */
    count = calloc((size_t)lmax + 2, sizeof *count);
    if (!count) {
        rc = sl_error(SL_ENOMEM, "partition shards: out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++)
        count[(size_t)labels[i] + 1]++;
    for (size_t k = 0; k <= (size_t)lmax; k++)
        count[k + 1] += count[k];
    for (size_t r = 0; r < n; r++) /* stable counting sort by label */
        sorted[count[labels[perm[r]]]++] = perm[r];
    for (size_t j = 0; j < n_shards; j++)
        shard_perm[j] = j;
    sl_rng_shuffle_size(&rng, shard_perm, n_shards);
    for (size_t j = 0; j < n_shards; j++) {
        size_t shard = shard_perm[j], client = j / shards_per_client;
        size_t lo = shard * n / n_shards, hi = (shard + 1) * n / n_shards;
        for (size_t r = lo; r < hi; r++)
            assign[sorted[r]] = (uint32_t)client;
    }
    rc = build_parts(out, assign, n, n_clients);
cleanup:
    free(perm);
    free(sorted);
    free(shard_perm);
    free(assign);
    free(count);
    return rc;
}

int sl_partition_quantity(sl_parts_t *out, size_t n, size_t n_clients, double exponent, uint64_t seed)
{
    int rc = check_counts(n, n_clients, "quantity");
    if (rc)
        return rc;
    if (!(exponent >= 0.0) || !isfinite(exponent))
        return sl_error(SL_EINVAL, "partition quantity: exponent must be >= 0, got %g", exponent);
    size_t *perm = malloc(n * sizeof *perm), *order = malloc(n_clients * sizeof *order);
    size_t *size = malloc(n_clients * sizeof *size);
    uint32_t *assign = malloc(n * sizeof *assign);
    if (!perm || !order || !size || !assign) {
        rc = sl_error(SL_ENOMEM, "partition quantity: out of memory");
        goto cleanup;
    }
    sl_rng_t rng;
    sl_rng_init(&rng, seed, "partition-quantity", 0, 0);
    for (size_t c = 0; c < n_clients; c++)
        order[c] = c;
    sl_rng_shuffle_size(&rng, order, n_clients); /* client order[r] has rank r */
    double wsum = 0.0;
    for (size_t r = 0; r < n_clients; r++)
        wsum += pow((double)(r + 1), -exponent);
    size_t spare = n - n_clients, given = 0;
    for (size_t r = 0; r < n_clients; r++) {
        size_t extra = (size_t)floor((double)spare * pow((double)(r + 1), -exponent) / wsum);
        size[order[r]] = 1 + extra;
        given += extra;
    }
    for (size_t r = 0; given < spare; r = (r + 1) % n_clients, given++) /* rounding leftovers: top ranks */
        size[order[r]]++;
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    sl_rng_shuffle_size(&rng, perm, n);
    size_t pos = 0;
    for (size_t c = 0; c < n_clients; c++)
        for (size_t s = 0; s < size[c]; s++)
            assign[perm[pos++]] = (uint32_t)c;
    rc = build_parts(out, assign, n, n_clients);
cleanup:
    free(perm);
    free(order);
    free(size);
    free(assign);
    return rc;
}

int sl_partition_missing(uint8_t *missing, size_t n_clients, double fraction, uint64_t seed)
{
    if (!(fraction >= 0.0 && fraction <= 1.0))
        return sl_error(SL_EINVAL, "modality dropout: fraction must be in [0, 1], got %g", fraction);
    memset(missing, 0, n_clients);
    size_t k = (size_t)floor(fraction * (double)n_clients + 0.5);
    if (k == 0)
        return 0;
    size_t *order = malloc(n_clients * sizeof *order);
    if (!order)
        return sl_error(SL_ENOMEM, "modality dropout: out of memory");
    for (size_t c = 0; c < n_clients; c++)
        order[c] = c;
    sl_rng_t rng;
    sl_rng_init(&rng, seed, "modality-dropout", 0, 0);
    sl_rng_shuffle_size(&rng, order, n_clients);
    for (size_t i = 0; i < k; i++)
        missing[order[i]] = 1;
    free(order);
    return 0;
}
