/* privacy/secagg/graph: the SecAgg+ neighbour graph and how k and t are chosen.
 *
 * Graph: a Harary graph H(k, n) (node at ring position i is joined to positions i +- 1 ..
 * i +- k/2) under a uniformly random permutation of the clients drawn from a 32-byte seed,
 * as in SecAgg+ (Bell et al., CCS 2020). k is even; k >= n - 1 means the complete graph
 * (original SecAgg). Each client's secrets are shared among its k neighbours plus itself
 * (k + 1 holders), threshold t.
 *
 * Parameters: the method published with Google's SecAgg+ (federated-compute,
 * fcp/secagg/server/graph_parameter_finder.cc), reimplemented: for k = 2, 4, ... the
 * smallest k such that, with a fraction `adversarial` of clients colluding with the
 * server and a fraction `dropout` dropping out,
 *   - the graph of honest survivors stays connected except with probability < 2^-41
 *     (union bound over pairs of gaps of k/2 consecutive bad ring positions), and
 *   - there is a t with Pr[some client has >= t adversarial neighbours] < 2^-41 (security,
 *     total 2^-40) and Pr[some client has < t surviving neighbours] < 2^-20 (correctness),
 *     the neighbour counts being hypergeometric (n, ceil(adv n) or n - ceil(drop n), k),
 *     union-bounded over the n clients.
 * The admissible thresholds are (t1, t2]; we take the strict majority floor((k+1)/2) + 1 of
 * the k + 1 holders clamped into [t1 + 1, t2] (a majority also keeps two disjoint groups of
 * holders from both reconstructing). No k < n - 1 works, or n <= SL_SECAGG_COMPLETE_UPTO:
 * complete graph, same rule for t.
 */
#ifndef SL_SECAGG_GRAPH_H
#define SL_SECAGG_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define SL_SECAGG_DEFAULT_ADVERSARIAL 0.05 /* fraction of clients assumed to collude */
/* Up to this many clients the complete graph is used (k = n - 1 <= 31 pairwise masks, no
 * more than a sparse graph costs at n = 1000, and the most robust choice). */
#define SL_SECAGG_COMPLETE_UPTO 32

/* The bounds for one k: t_min = t1 + 1 (security) and t_max = t2 (correctness), and
 * whether the honest-survivor graph is connected w.h.p.; feasible = connected && t_min <= t_max.
 * Exposed for tests against the published table. */
typedef struct sl_secagg_bounds {
    size_t t_min, t_max;
    int connected, feasible;
} sl_secagg_bounds_t;
void sl_secagg_bounds(size_t n, size_t k, double dropout, double adversarial, sl_secagg_bounds_t *out);

/* The smallest even k < n - 1 that is feasible, with its t_min (fcp's answer); returns
 * SL_ENOTFOUND if none (use the complete graph). */
SL_NODISCARD int sl_secagg_find_degree(size_t n, double dropout, double adversarial, size_t *k, size_t *t_min);

/* The parameters a round uses: k and t for n clients. k_override / t_override > 0 force
 * them (k rounded up to even; k >= n-1 means complete graph, k = n - 1). Returns
 * SL_EINVAL on n < 2, rates outside [0, 0.9) or a t outside [1, k+1]. */
SL_NODISCARD int sl_secagg_choose_params(size_t n, double dropout, double adversarial, size_t k_override,
                                         size_t t_override, size_t *k, size_t *t);

/* The neighbour graph of n clients: adjacency lists sorted by index, self excluded. */
typedef struct sl_secagg_graph {
    size_t n, k;    /* k = degree (n - 1 for the complete graph) */
    uint32_t *adj;  /* (n, k): row u = neighbours of u, ascending */
} sl_secagg_graph_t;

/* Build the graph for n clients with degree k (even, or n - 1) from a 32-byte seed. */
SL_NODISCARD int sl_secagg_graph_init(sl_secagg_graph_t *g, size_t n, size_t k, const uint8_t seed[32]);
void sl_secagg_graph_free(sl_secagg_graph_t *g);
/* Row u (k entries). */
static inline const uint32_t *sl_secagg_graph_row(const sl_secagg_graph_t *g, size_t u) { return g->adj + u * g->k; }
/* Position of v in row u, or -1 if not a neighbour (binary search). */
long sl_secagg_graph_find(const sl_secagg_graph_t *g, size_t u, uint32_t v);

#endif
