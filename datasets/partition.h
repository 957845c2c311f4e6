/* datasets/partition: seeded partitioners that split n examples into clients.
 *
 * Every partitioner is a pure function of (labels or n, parameters, seed): the same seed
 * gives the same partition, bit for bit. The result lists, for each client, the indices
 * (0..n-1) of its examples; every example is in exactly one client. Schemes:
 *   iid       a random permutation cut into near-equal parts
 *   dirichlet label skew: client c draws label proportions q_c ~ Dir_K(alpha) and fills
 *             n/N slots by sampling labels from q_c without replacement from the pools
 *             (an exhausted label's mass moves to the labels left), so
 *             E[sum_k q_ck^2] = (1 + alpha) / (1 + K alpha)
 *   shards    examples sorted by label, cut into N * s shards, s random shards per client
 *   quantity  IID examples, client sizes ~ (rank + 1)^-exponent over a random client order,
 *             at least one example each
 * and modality dropout: a random subset of round(fraction * N) clients.
 */
#ifndef SL_PARTITION_H
#define SL_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Client c owns items[offsets[c] .. offsets[c+1]-1] (example indices, increasing). */
typedef struct {
    size_t n_clients;
    size_t n_items;
    size_t *offsets; /* (n_clients + 1) */
    size_t *items;   /* (n_items) */
} sl_parts_t;

/* Free the arrays and zero the struct; NULL-safe. */
void sl_parts_free(sl_parts_t *parts);

/* Each returns 0 or SL_EINVAL (n_clients == 0 or > n, bad parameter) / SL_ENOMEM; on
 * success *out owns its arrays (sl_parts_free). */
SL_NODISCARD int sl_partition_iid(sl_parts_t *out, size_t n, size_t n_clients, uint64_t seed);
SL_NODISCARD int sl_partition_dirichlet(sl_parts_t *out, const int32_t *labels, size_t n, size_t n_classes,
                                        size_t n_clients, double alpha, uint64_t seed);
SL_NODISCARD int sl_partition_shards(sl_parts_t *out, const int32_t *labels, size_t n, size_t n_clients,
                                     size_t shards_per_client, uint64_t seed);
SL_NODISCARD int sl_partition_quantity(sl_parts_t *out, size_t n, size_t n_clients, double exponent,
                                       uint64_t seed);

/* Modality dropout: missing[c] = 1 for exactly round(fraction * n_clients) clients chosen
 * at random, else 0. SL_EINVAL for a fraction outside [0, 1]. */
SL_NODISCARD int sl_partition_missing(uint8_t *missing, size_t n_clients, double fraction, uint64_t seed);

/* Draw q ~ Dirichlet(alpha, ..., alpha) of dimension k from a seeded stream (robust for
 * tiny alpha: works in log space). Used by the partitioner and the synthetic generator. */
struct sl_rng;
void sl_dirichlet_sample(struct sl_rng *rng, double alpha, size_t k, double *q);
/* Gamma(shape, 1) variate (Marsaglia-Tsang), shape > 0. */
double sl_gamma_sample(struct sl_rng *rng, double shape);

#endif
