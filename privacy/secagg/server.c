/* The SecAgg+ server state machine. Memory O(n k + dim): masked inputs are folded into
 * the running sum as they arrive. */
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/bytes.h"
#include "privacy/secagg/internal.h"
#include "privacy/secagg/kdf.h"
#include "privacy/secagg/prg.h"
#include "privacy/secagg/shamir.h"

enum {
    F_ADV = 1 << 0,  /* sent ADVERTISE */
    F_U1 = 1 << 1,   /* in U1: keys forwarded to neighbours */
    F_SH = 1 << 2,   /* sent SHARES */
    F_U2 = 1 << 3,   /* in U2: shares forwarded */
    F_MK = 1 << 4,   /* masked input folded into the sum: U3 */
    F_UNM = 1 << 5,  /* answered the unmask request: U4 */
    F_TOLD = 1 << 6, /* was sent ABORT (or is gone): no more messages to it */
    F_GONE = 1 << 7  /* the transport lost it (sl_secagg_server_drop): not waited for */
};
enum { KIND_NONE = 0, KIND_B = 1, KIND_S = 2 };

struct sl_secagg_server {
    size_t n, dim, k, t, min_clients;
    unsigned bits, threads;
    sa_frame_t frame;
    sl_secagg_graph_t g;
    sl_secagg_stage_t stage;
    uint8_t *flags;              /* (n,) */
    uint8_t (*c_pk)[32], (*s_pk)[32], (*commit)[32]; /* (n,) each */
    uint8_t *ct;                 /* (n, k, CT): u's share for row(u)[j] at [u][j] */
    uint32_t *sum;               /* (dim,) running sum of masked inputs, Z_{2^32} */
    uint8_t *need;               /* (n,) KIND_B for survivors, KIND_S for dropped with live neighbours */
    uint32_t *have;              /* (n,) shares of the needed kind received */
    size_t missing;              /* targets with have < t */
    sl_shamir_share_t *resp;     /* (n, k+1): holder w's share of row(w)[j], slot k = itself */
    size_t u1, u2, u3, u4, expected, got;
    size_t rec_b, rec_s, prg_terms;
    double prg_seconds;
    sl_secagg_unmask_gate_fn gate; /* see sl_secagg_server_set_unmask_gate */
    void *gate_ctx;
};

void sl_secagg_server_set_unmask_gate(sl_secagg_server_t *s, sl_secagg_unmask_gate_fn fn, void *ctx)
{
    s->gate = fn;
    s->gate_ctx = ctx;
}

const sl_secagg_graph_t *sl_secagg_server_graph(const sl_secagg_server_t *s) { return &s->g; }
sl_secagg_stage_t sl_secagg_server_stage(const sl_secagg_server_t *s) { return s->stage; }

int sl_secagg_server_included(const sl_secagg_server_t *s, uint32_t u)
{
    return u < s->n && (s->flags[u] & F_MK) != 0;
}

void sl_secagg_server_info(const sl_secagg_server_t *s, sl_secagg_info_t *info)
{
    *info = (sl_secagg_info_t){.n = s->n, .k = s->k, .t = s->t, .dim = s->dim, .mod_bits = s->bits,
                               .advertised = s->u1, .shared = s->u2, .masked = s->u3, .unmasked = s->u4,
                               .reconstructed_b = s->rec_b, .reconstructed_s = s->rec_s,
                               .prg_terms = s->prg_terms, .prg_seconds = s->prg_seconds};
}

void sl_secagg_server_destroy(sl_secagg_server_t **sp)
{
    if (!sp || !*sp)
        return;
    sl_secagg_server_t *s = *sp;
    sl_secagg_graph_free(&s->g);
    if (s->resp) {
        sodium_memzero(s->resp, s->n * (s->k + 1) * sizeof *s->resp);
        free(s->resp);
    }
    free(s->ct);
    free(s->flags);
    free(s->c_pk);
    free(s->s_pk);
    free(s->commit);
    free(s->sum);
    free(s->need);
    free(s->have);
    free(s);
    *sp = NULL;
}

int sl_secagg_server_new(sl_secagg_server_t **out, const sl_secagg_params_t *p)
{
    *out = NULL;
    if (!p)
        return sl_error(SL_EINVAL, "secagg server: NULL parameters");
    if (p->n < 2 || p->n >= SL_SECAGG_SERVER_ID)
        return sl_error(SL_EINVAL, "secagg server: %zu clients, need 2 .. 2^32 - 2", p->n);
    if (p->dim < 1 || p->dim > SA_MAX_DIM)
        return sl_error(SL_EINVAL, "secagg server: dimension %zu out of range", p->dim);
    if (p->mod_bits < 1 || p->mod_bits > 32)
        return sl_error(SL_EINVAL, "secagg server: modulus bits %u not in 1..32", p->mod_bits);
    size_t k, t;
    int rc = sl_secagg_choose_params(p->n, p->dropout, p->adversarial, p->k, p->t, &k, &t);
    if (rc)
        return rc;
    sl_secagg_server_t *s = calloc(1, sizeof *s);
    if (!s)
        return sl_error(SL_ENOMEM, "secagg server: out of memory");
    s->n = p->n, s->dim = p->dim, s->k = k, s->t = t, s->bits = p->mod_bits;
    s->threads = p->threads ? p->threads : 1;
    s->min_clients = p->min_clients ? p->min_clients : t;
    s->frame.round = p->round;
    if (p->session)
        memcpy(s->frame.session, p->session, SL_SECAGG_SESSION_BYTES);
    else
        sl_csprng_bytes(s->frame.session, SL_SECAGG_SESSION_BYTES);
    uint8_t seed[32];
    if (p->graph_seed)
        memcpy(seed, p->graph_seed, 32);
    else
        sl_csprng_bytes(seed, 32);
    rc = sl_secagg_graph_init(&s->g, s->n, s->k, seed);
    if (rc) {
        free(s);
        return rc;
    }
    s->k = s->g.k;
    s->flags = calloc(s->n, 1);
    s->c_pk = calloc(s->n, 32);
    s->s_pk = calloc(s->n, 32);
    s->commit = calloc(s->n, 32);
    s->sum = calloc(s->dim, sizeof *s->sum);
    s->need = calloc(s->n, 1);
    s->have = calloc(s->n, sizeof *s->have);
    if (!s->flags || !s->c_pk || !s->s_pk || !s->commit || !s->sum || !s->need || !s->have) {
        sl_secagg_server_destroy(&s);
        return sl_error(SL_ENOMEM, "secagg server: out of memory for %zu clients x %zu values", p->n, p->dim);
    }
    s->stage = SL_SECAGG_INIT;
    *out = s;
    return 0;
}

int sl_secagg_server_result(const sl_secagg_server_t *s, const uint32_t **sum, size_t *dim)
{
    if (s->stage != SL_SECAGG_DONE)
        return sl_error(SL_ESTATE, "secagg server: no result in stage %s", sl_secagg_stage_name(s->stage));
    *sum = s->sum;
    *dim = s->dim;
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------ */

static size_t count_in(const sl_secagg_server_t *s, size_t u, uint8_t flag)
{
    const uint32_t *row = sl_secagg_graph_row(&s->g, u);
    size_t c = 0;
    for (size_t j = 0; j < s->k; j++)
        c += (s->flags[row[j]] & flag) != 0;
    return c;
}

/* Abort: tell every live client why, move to ABORTED, return code with the message. */
static int abort_round(sl_secagg_server_t *s, sl_secagg_outbox_t *out, int code, const char *fmt, ...)
    SL_PRINTF(4, 5);
static int abort_round(sl_secagg_server_t *s, sl_secagg_outbox_t *out, int code, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    size_t tl = strlen(text);
    for (size_t u = 0; u < s->n; u++) {
        if (!(s->flags[u] & F_ADV) || (s->flags[u] & F_TOLD))
            continue;
        uint8_t *b;
        if (sa_msg_new(out, &s->frame, SL_SECAGG_MSG_ABORT, SL_SECAGG_SERVER_ID, (uint32_t)u, 8 + tl, &b) == 0) {
            sl_put_le32(b, (uint32_t)code);
            sl_put_le32(b + 4, (uint32_t)tl);
            memcpy(b + 8, text, tl);
        }
        s->flags[u] |= F_TOLD;
    }
    s->stage = SL_SECAGG_ABORTED;
    return sl_error(code, "secagg round %llu aborted: %s", (unsigned long long)s->frame.round, text);
}

/* Tell a client it is out of the round (dropped or pruned). */
static int drop_client(sl_secagg_server_t *s, size_t u, const char *why, sl_secagg_outbox_t *out)
{
    if (s->flags[u] & F_TOLD)
        return 0;
    size_t tl = strlen(why);
    uint8_t *b;
    int rc = sa_msg_new(out, &s->frame, SL_SECAGG_MSG_ABORT, SL_SECAGG_SERVER_ID, (uint32_t)u, 8 + tl, &b);
    if (rc)
        return rc;
    sl_put_le32(b, (uint32_t)SL_EQUORUM);
    sl_put_le32(b + 4, (uint32_t)tl);
    memcpy(b + 8, why, tl);
    s->flags[u] |= F_TOLD;
    return 0;
}

/* Keep in `flag` only clients with >= t - 1 neighbours also in `flag` (their secrets must
 * be reconstructible by t holders, themselves included); repeat to a fixed point. */
static size_t prune(sl_secagg_server_t *s, uint8_t flag)
{
    int changed = 1;
    while (changed) {
        changed = 0;
        for (size_t u = 0; u < s->n; u++)
            if ((s->flags[u] & flag) && count_in(s, u, flag) + 1 < s->t) {
                s->flags[u] &= (uint8_t)~flag;
                changed = 1;
            }
    }
    size_t c = 0;
    for (size_t u = 0; u < s->n; u++)
        c += (s->flags[u] & flag) != 0;
    return c;
}

/* ---- stage transitions ------------------------------------------------------------ */

int sl_secagg_server_start(sl_secagg_server_t *s, sl_secagg_outbox_t *out)
{
    if (s->stage != SL_SECAGG_INIT)
        return sl_error(SL_ESTATE, "secagg server: already started");
    for (size_t u = 0; u < s->n; u++) {
        uint8_t *b;
        int rc = sa_msg_new(out, &s->frame, SL_SECAGG_MSG_SETUP, SL_SECAGG_SERVER_ID, (uint32_t)u, SA_SETUP_BODY, &b);
        if (rc)
            return rc;
        sl_put_le32(b, (uint32_t)s->n);
        sl_put_le32(b + 4, (uint32_t)s->k);
        sl_put_le32(b + 8, (uint32_t)s->t);
        b[12] = (uint8_t)s->bits;
        b[13] = b[14] = b[15] = 0;
        sl_put_le64(b + 16, s->dim);
    }
    s->stage = SL_SECAGG_ADVERTISE;
    s->expected = 0;
    for (size_t u = 0; u < s->n; u++) /* clients dropped before the start are not waited for */
        s->expected += !(s->flags[u] & F_GONE);
    s->got = 0;
    return 0;
}

static int close_advertise(sl_secagg_server_t *s, sl_secagg_outbox_t *out)
{
    for (size_t u = 0; u < s->n; u++)
        if ((s->flags[u] & F_ADV) && !(s->flags[u] & F_GONE))
            s->flags[u] |= F_U1;
    s->u1 = prune(s, F_U1);
    for (size_t u = 0; u < s->n; u++)
        if ((s->flags[u] & F_ADV) && !(s->flags[u] & F_U1)) {
            int rc = drop_client(s, u, "excluded: fewer than t - 1 neighbours advertised keys", out);
            if (rc)
                return rc;
        }
    if (s->u1 < s->min_clients)
        return abort_round(s, out, SL_EQUORUM, "%zu of %zu clients advertised keys with enough live neighbours, "
                           "need %zu (threshold t = %zu)", s->u1, s->n, s->min_clients, s->t);
    s->ct = malloc(s->n * s->k * SL_SECAGG_SHARE_CT_BYTES);
    if (!s->ct)
        return sl_error(SL_ENOMEM, "secagg server: out of memory for shares");
    for (size_t u = 0; u < s->n; u++) {
        if (!(s->flags[u] & F_U1))
            continue;
        size_t cnt = count_in(s, u, F_U1);
        uint8_t *b;
        int rc = sa_msg_new(out, &s->frame, SL_SECAGG_MSG_KEYS, SL_SECAGG_SERVER_ID, (uint32_t)u,
                            4 + cnt * SA_KEYS_ENTRY, &b);
        if (rc)
            return rc;
        sl_put_le32(b, (uint32_t)cnt);
        b += 4;
        const uint32_t *row = sl_secagg_graph_row(&s->g, u);
        for (size_t j = 0; j < s->k; j++) {
            uint32_t v = row[j];
            if (!(s->flags[v] & F_U1))
                continue;
            sl_put_le32(b, v);
            memcpy(b + 4, s->c_pk[v], 32);
            memcpy(b + 36, s->s_pk[v], 32);
            b += SA_KEYS_ENTRY;
        }
    }
    s->stage = SL_SECAGG_SHARES;
    s->expected = s->u1;
    s->got = 0;
    return 0;
}

static int close_shares(sl_secagg_server_t *s, sl_secagg_outbox_t *out)
{
    for (size_t u = 0; u < s->n; u++)
        if ((s->flags[u] & F_U1) && (s->flags[u] & F_SH) && !(s->flags[u] & F_GONE))
            s->flags[u] |= F_U2;
    s->u2 = prune(s, F_U2);
    for (size_t u = 0; u < s->n; u++)
        if ((s->flags[u] & F_U1) && !(s->flags[u] & F_U2)) {
            int rc = drop_client(s, u, "dropped in the share-keys stage", out);
            if (rc)
                return rc;
        }
    if (s->u2 < s->min_clients)
        return abort_round(s, out, SL_EQUORUM, "%zu clients shared keys with enough live neighbours, need %zu "
                           "(threshold t = %zu)", s->u2, s->min_clients, s->t);
    for (size_t v = 0; v < s->n; v++) {
        if (!(s->flags[v] & F_U2))
            continue;
        size_t cnt = count_in(s, v, F_U2);
        uint8_t *b;
        int rc = sa_msg_new(out, &s->frame, SL_SECAGG_MSG_FORWARD, SL_SECAGG_SERVER_ID, (uint32_t)v,
                            4 + cnt * SA_SHARES_ENTRY, &b);
        if (rc)
            return rc;
        sl_put_le32(b, (uint32_t)cnt);
        b += 4;
        const uint32_t *row = sl_secagg_graph_row(&s->g, v);
        for (size_t j = 0; j < s->k; j++) {
            uint32_t u = row[j];
            if (!(s->flags[u] & F_U2))
                continue;
            long slot = sl_secagg_graph_find(&s->g, u, (uint32_t)v);
            sl_put_le32(b, u);
            memcpy(b + 4, s->ct + ((size_t)u * s->k + (size_t)slot) * SL_SECAGG_SHARE_CT_BYTES,
                   SL_SECAGG_SHARE_CT_BYTES);
            b += SA_SHARES_ENTRY;
        }
    }
    free(s->ct);
    s->ct = NULL;
    s->stage = SL_SECAGG_MASKED;
    s->expected = s->u2;
    s->got = 0;
    return 0;
}

/* The request to holder w: survivors (b-shares) and dropped (s-shares) among the clients
 * whose shares w holds, i.e. U2 neighbours of w and w itself, each list ascending. */
static void unmask_lists(const sl_secagg_server_t *s, size_t w, uint32_t *alive, size_t *na, uint32_t *dropped,
                         size_t *nd)
{
    const uint32_t *row = sl_secagg_graph_row(&s->g, w);
    int self_done = 0;
    *na = *nd = 0;
    for (size_t j = 0; j <= s->k; j++) {
        if (!self_done && (j == s->k || row[j] > w)) {
            alive[(*na)++] = (uint32_t)w;
            self_done = 1;
        }
        if (j == s->k)
            break;
        uint32_t v = row[j];
        if (!(s->flags[v] & F_U2))
            continue;
        if (s->flags[v] & F_MK)
            alive[(*na)++] = v;
        else
            dropped[(*nd)++] = v;
    }
}

static int close_masked(sl_secagg_server_t *s, sl_secagg_outbox_t *out)
{
    s->u3 = 0;
    for (size_t u = 0; u < s->n; u++)
        s->u3 += (s->flags[u] & F_MK) != 0;
    for (size_t u = 0; u < s->n; u++)
        if ((s->flags[u] & F_U2) && !(s->flags[u] & F_MK)) {
            int rc = drop_client(s, u, "dropped in the masked-input stage", out);
            if (rc)
                return rc;
        }
    if (s->u3 < s->min_clients)
        return abort_round(s, out, SL_EQUORUM, "%zu masked inputs arrived, need %zu", s->u3, s->min_clients);
    /* What unmasking needs, and whether enough holders are still alive to give it. */
    s->missing = 0;
    for (size_t u = 0; u < s->n; u++) {
        if (s->flags[u] & F_MK) {
            s->need[u] = KIND_B;
            size_t holders = count_in(s, u, F_MK) + 1;
            if (holders < s->t)
                return abort_round(s, out, SL_EQUORUM, "client %zu: %zu surviving holders of its self-mask seed, "
                                   "threshold t = %zu", u, holders, s->t);
            s->missing++;
        } else if ((s->flags[u] & F_U2) && count_in(s, u, F_MK) > 0) {
            s->need[u] = KIND_S;
            size_t holders = count_in(s, u, F_MK);
            if (holders < s->t)
                return abort_round(s, out, SL_EQUORUM, "dropped client %zu: %zu surviving holders of its mask key, "
                                   "threshold t = %zu", u, holders, s->t);
            s->missing++;
        }
    }
    s->resp = calloc(s->n * (s->k + 1), sizeof *s->resp);
    uint32_t *alive = malloc((s->k + 1) * sizeof *alive), *dropped = malloc((s->k + 1) * sizeof *dropped);
    int rc = 0;
    if (!s->resp || !alive || !dropped) {
        rc = sl_error(SL_ENOMEM, "secagg server: out of memory for unmasking");
        goto cleanup;
    }
    s->expected = 0;
    for (size_t w = 0; w < s->n; w++) {
        /* a gone client's input stays in the sum (its masks are removed with its
         * neighbours' shares) but it is not asked for shares */
        if (!(s->flags[w] & F_MK) || (s->flags[w] & F_GONE))
            continue;
        s->expected++;
        size_t na, nd;
        unmask_lists(s, w, alive, &na, dropped, &nd);
        uint8_t *b;
        if ((rc = sa_msg_new(out, &s->frame, SL_SECAGG_MSG_UNMASK_REQ, SL_SECAGG_SERVER_ID, (uint32_t)w,
                             8 + 4 * (na + nd), &b)))
            goto cleanup;
        sl_put_le32(b, (uint32_t)na);
        sl_put_le32(b + 4, (uint32_t)nd);
        for (size_t i = 0; i < na; i++)
            sl_put_le32(b + 8 + 4 * i, alive[i]);
        for (size_t i = 0; i < nd; i++)
            sl_put_le32(b + 8 + 4 * (na + i), dropped[i]);
    }
    s->stage = SL_SECAGG_UNMASK;
    s->got = 0;
cleanup:
    free(alive);
    free(dropped);
    return rc;
}

/* Holder w's share of target x (w == x: its own share). */
static const sl_shamir_share_t *share_of(const sl_secagg_server_t *s, size_t w, size_t x)
{
    long slot = w == x ? (long)s->k : sl_secagg_graph_find(&s->g, w, (uint32_t)x);
    return &s->resp[w * (s->k + 1) + (size_t)slot];
}

/* Rebuild target x's secret from the first t holders that answered. */
static int reconstruct(sl_secagg_server_t *s, size_t x, uint8_t secret[32])
{
    uint64_t *xs = malloc(s->t * sizeof *xs);
    sl_shamir_share_t *sh = malloc(s->t * sizeof *sh);
    if (!xs || !sh) {
        free(xs), free(sh);
        return sl_error(SL_ENOMEM, "secagg server: out of memory");
    }
    size_t got = 0;
    if (s->need[x] == KIND_B && (s->flags[x] & F_UNM)) {
        xs[got] = (uint64_t)x + 1;
        sh[got++] = *share_of(s, x, x);
    }
    const uint32_t *row = sl_secagg_graph_row(&s->g, x);
    for (size_t j = 0; j < s->k && got < s->t; j++) {
        uint32_t w = row[j];
        if (!(s->flags[w] & F_UNM))
            continue;
        xs[got] = (uint64_t)w + 1;
        sh[got++] = *share_of(s, w, x);
    }
    int rc = got < s->t ? sl_error(SL_EQUORUM, "%zu of threshold %zu shares", got, s->t)
                        : sl_shamir_combine(xs, sh, got, secret);
    sodium_memzero(sh, s->t * sizeof *sh);
    free(xs);
    free(sh);
    return rc;
}

static int finish(sl_secagg_server_t *s, sl_secagg_outbox_t *out)
{
    for (size_t x = 0; x < s->n; x++)
        if (s->need[x] && s->have[x] < s->t)
            return abort_round(s, out, SL_EQUORUM, "%s client %zu: %u of threshold %zu shares arrived",
                               s->need[x] == KIND_B ? "surviving" : "dropped", x, s->have[x], s->t);
    if (s->gate) { /* the last moment at which refusing reveals nothing */
        int grc = s->gate(s->gate_ctx, s->u3);
        if (grc) {
            /* the clients get a fixed reason: the gate's detail (budget figures, the
             * ledger's path) is the coordinator's business and stays in its error */
            char why[400];
            snprintf(why, sizeof why, "%s", sl_last_error());
            (void)abort_round(s, out, grc, "unmasking refused by the coordinator");
            return sl_error(grc, "secagg round %llu aborted: unmasking refused: %s",
                            (unsigned long long)s->frame.round, why);
        }
    }
    size_t nterms = 0;
    for (size_t x = 0; x < s->n; x++) {
        if (s->need[x] == KIND_B)
            nterms++;
        else if (s->need[x] == KIND_S)
            nterms += count_in(s, x, F_MK);
    }
    sl_prg_term_t *terms = malloc((nterms ? nterms : 1) * sizeof *terms);
    if (!terms)
        return sl_error(SL_ENOMEM, "secagg server: out of memory");
    size_t tn = 0;
    int rc = 0;
    uint8_t secret[32], pk[32], check[32];
    for (size_t x = 0; x < s->n && !rc; x++) {
        if (!s->need[x])
            continue;
        if ((rc = reconstruct(s, x, secret))) {
            rc = abort_round(s, out, rc, "client %zu: %s", x, sl_last_error());
            break;
        }
        if (s->need[x] == KIND_B) {
            sl_secagg_commit(s->frame.session, s->frame.round, (uint32_t)x, secret, check);
            if (sodium_memcmp(check, s->commit[x], 32) != 0) {
                rc = abort_round(s, out, SL_ECRYPTO, "client %zu: the reconstructed self-mask seed does not match "
                                 "its commitment (corrupt shares)", x);
                break;
            }
            memcpy(terms[tn].seed, secret, 32);
            terms[tn++].sign = -1;
            s->rec_b++;
            continue;
        }
        crypto_scalarmult_base(pk, secret);
        if (sodium_memcmp(pk, s->s_pk[x], 32) != 0) {
            rc = abort_round(s, out, SL_ECRYPTO, "dropped client %zu: the reconstructed key does not match its "
                             "public key (corrupt shares)", x);
            break;
        }
        s->rec_s++;
        const uint32_t *row = sl_secagg_graph_row(&s->g, x);
        for (size_t j = 0; j < s->k; j++) {
            uint32_t u = row[j];
            if (!(s->flags[u] & F_MK))
                continue;
            if ((rc = sl_secagg_agree("mask", s->frame.session, s->frame.round, secret, s->s_pk[x], s->s_pk[u],
                                      terms[tn].seed))) {
                rc = abort_round(s, out, rc, "pair (%zu, %u): %s", x, u, sl_last_error());
                break;
            }
            /* y_u carried sign(u, x) * mask: +1 if u < x. Subtract it. */
            terms[tn++].sign = u < x ? -1 : 1;
        }
    }
    sodium_memzero(secret, sizeof secret);
    if (!rc) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = sl_prg_apply(terms, tn, s->sum, s->dim, s->threads);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        s->prg_seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        s->prg_terms = tn;
    }
    sodium_memzero(terms, (nterms ? nterms : 1) * sizeof *terms);
    free(terms);
    if (rc)
        return rc;
    if (s->bits < 32) {
        uint32_t mask = (UINT32_C(1) << s->bits) - 1;
        for (size_t i = 0; i < s->dim; i++)
            s->sum[i] &= mask;
    }
    sodium_memzero(s->resp, s->n * (s->k + 1) * sizeof *s->resp);
    s->stage = SL_SECAGG_DONE;
    return 0;
}

int sl_secagg_server_close_stage(sl_secagg_server_t *s, sl_secagg_outbox_t *out)
{
    switch (s->stage) {
    case SL_SECAGG_ADVERTISE:
        return close_advertise(s, out);
    case SL_SECAGG_SHARES:
        return close_shares(s, out);
    case SL_SECAGG_MASKED:
        return close_masked(s, out);
    case SL_SECAGG_UNMASK:
        return finish(s, out);
    default:
        return sl_error(SL_ESTATE, "secagg server: no stage to close in stage %s", sl_secagg_stage_name(s->stage));
    }
}

/* Close stages while nothing more is awaited: every expected client answered or is gone,
 * or unmasking holds t shares of every needed secret. Several stages close in a row only
 * when every client a stage waits for is gone (it then aborts). */
static int advance(sl_secagg_server_t *s, sl_secagg_outbox_t *out)
{
    while (s->stage >= SL_SECAGG_ADVERTISE && s->stage <= SL_SECAGG_UNMASK &&
           (s->got >= s->expected || (s->stage == SL_SECAGG_UNMASK && s->missing == 0))) {
        int rc = sl_secagg_server_close_stage(s, out);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- messages ----------------------------------------------------------------------- */

static int on_advertise(sl_secagg_server_t *s, uint32_t from, const sl_secagg_header_t *h, const uint8_t *body)
{
    if (s->flags[from] & F_ADV)
        return sl_error(SL_EPROTO, "secagg server: duplicate ADVERTISE from client %u", from);
    if (h->body_len != SA_ADVERTISE_BODY)
        return sl_error(SL_EPROTO, "secagg server: ADVERTISE from %u has %u bytes, expected %d", from, h->body_len,
                        SA_ADVERTISE_BODY);
    memcpy(s->c_pk[from], body, 32);
    memcpy(s->s_pk[from], body + 32, 32);
    memcpy(s->commit[from], body + 64, 32);
    s->flags[from] |= F_ADV;
    s->got++;
    return 0;
}

static int on_shares(sl_secagg_server_t *s, uint32_t from, const sl_secagg_header_t *h, const uint8_t *body)
{
    if (!(s->flags[from] & F_U1))
        return sl_error(SL_ESTATE, "secagg server: SHARES from client %u, which is not in this stage", from);
    if (s->flags[from] & F_SH)
        return sl_error(SL_EPROTO, "secagg server: duplicate SHARES from client %u", from);
    size_t cnt = count_in(s, from, F_U1);
    sl_secagg_reader_t r;
    sl_secagg_reader_init(&r, body, h->body_len);
    uint32_t c = sl_secagg_read_u32(&r);
    if (r.bad || c != cnt || sl_secagg_reader_left(&r) != cnt * SA_SHARES_ENTRY)
        return sl_error(SL_EPROTO, "secagg server: SHARES from %u: %u bytes, expected %zu shares", from, h->body_len,
                        cnt);
    /* Validate the receivers (exactly the live neighbours, ascending) before storing. */
    const uint32_t *row = sl_secagg_graph_row(&s->g, from);
    size_t j = 0;
    for (size_t e = 0; e < cnt; e++) {
        while (!(s->flags[row[j]] & F_U1))
            j++;
        uint32_t to = sl_secagg_read_u32(&r);
        (void)sl_secagg_read_bytes(&r, SL_SECAGG_SHARE_CT_BYTES);
        if (to != row[j])
            return sl_error(SL_EPROTO, "secagg server: SHARES from %u: entry %zu is for %u, expected %u", from, e, to,
                            row[j]);
        j++;
    }
    sl_secagg_reader_init(&r, body + 4, h->body_len - 4);
    j = 0;
    for (size_t e = 0; e < cnt; e++) {
        while (!(s->flags[row[j]] & F_U1))
            j++;
        (void)sl_secagg_read_u32(&r);
        memcpy(s->ct + ((size_t)from * s->k + j) * SL_SECAGG_SHARE_CT_BYTES,
               sl_secagg_read_bytes(&r, SL_SECAGG_SHARE_CT_BYTES), SL_SECAGG_SHARE_CT_BYTES);
        j++;
    }
    s->flags[from] |= F_SH;
    s->got++;
    return 0;
}

static int on_masked(sl_secagg_server_t *s, uint32_t from, const sl_secagg_header_t *h, const uint8_t *body)
{
    if (!(s->flags[from] & F_U2))
        return sl_error(SL_ESTATE, "secagg server: MASKED from client %u, which is not in this stage", from);
    if (s->flags[from] & F_MK)
        return sl_error(SL_EPROTO, "secagg server: duplicate MASKED from client %u", from);
    size_t packed = sl_secagg_packed_bytes(s->dim, s->bits);
    sl_secagg_reader_t r;
    sl_secagg_reader_init(&r, body, h->body_len);
    uint64_t dim = sl_secagg_read_u64(&r);
    uint8_t bits = sl_secagg_read_u8(&r);
    const uint8_t *res = sl_secagg_read_bytes(&r, 3);
    if (r.bad || dim != s->dim || bits != s->bits || res[0] || res[1] || res[2] ||
        sl_secagg_reader_left(&r) != packed)
        return sl_error(SL_EPROTO, "secagg server: MASKED from %u: %u bytes for dim %llu at %u bits, expected dim "
                        "%zu at %u bits (%zu bytes)", from, h->body_len, (unsigned long long)dim, bits, s->dim,
                        s->bits, SA_MASKED_PREFIX + packed);
    const uint8_t *data = body + SA_MASKED_PREFIX;
    unsigned used = (unsigned)((s->dim * s->bits) % 8);
    if (used && (data[packed - 1] >> used) != 0)
        return sl_error(SL_EPROTO, "secagg server: MASKED from %u: padding bits are not zero", from);
    sl_secagg_unpack_add(data, s->dim, s->bits, s->sum);
    s->flags[from] |= F_MK;
    s->got++;
    return 0;
}

static int on_unmask(sl_secagg_server_t *s, uint32_t from, const sl_secagg_header_t *h, const uint8_t *body)
{
    if (!(s->flags[from] & F_MK))
        return sl_error(SL_ESTATE, "secagg server: UNMASK_RESP from client %u, which is not in this stage", from);
    if (s->flags[from] & F_UNM)
        return sl_error(SL_EPROTO, "secagg server: duplicate UNMASK_RESP from client %u", from);
    size_t cap = s->k + 1, na, nd;
    uint32_t *alive = malloc(2 * cap * sizeof *alive);
    sl_shamir_share_t *tmp = malloc(cap * sizeof *tmp);
    int rc = 0;
    if (!alive || !tmp) {
        rc = sl_error(SL_ENOMEM, "secagg server: out of memory");
        goto cleanup;
    }
    uint32_t *dropped = alive + cap;
    unmask_lists(s, from, alive, &na, dropped, &nd);
    sl_secagg_reader_t r;
    sl_secagg_reader_init(&r, body, h->body_len);
    uint32_t ra = sl_secagg_read_u32(&r), rd = sl_secagg_read_u32(&r);
    if (r.bad || ra != na || rd != nd || sl_secagg_reader_left(&r) != (na + nd) * SA_UNMASK_ENTRY) {
        rc = sl_error(SL_EPROTO, "secagg server: UNMASK_RESP from %u does not answer the request (%zu + %zu shares)",
                      from, na, nd);
        goto cleanup;
    }
    for (size_t i = 0; i < na + nd; i++) {
        uint32_t idx = sl_secagg_read_u32(&r);
        const uint8_t *sh = sl_secagg_read_bytes(&r, SL_SHAMIR_SHARE_BYTES);
        uint32_t want = i < na ? alive[i] : dropped[i - na];
        if (idx != want) {
            rc = sl_error(SL_EPROTO, "secagg server: UNMASK_RESP from %u: entry %zu names %u, expected %u", from, i,
                          idx, want);
            goto cleanup;
        }
        if (sl_shamir_share_decode(sh, &tmp[i]) != 0) {
            rc = sl_error(SL_EPROTO, "secagg server: UNMASK_RESP from %u: share for %u is not a field element", from,
                          idx);
            goto cleanup;
        }
    }
    for (size_t i = 0; i < na + nd; i++) {
        uint32_t x = i < na ? alive[i] : dropped[i - na];
        long slot = x == from ? (long)s->k : sl_secagg_graph_find(&s->g, from, x);
        s->resp[(size_t)from * (s->k + 1) + (size_t)slot] = tmp[i];
        if (s->need[x] && ++s->have[x] == s->t)
            s->missing--;
    }
    s->flags[from] |= F_UNM;
    s->u4++;
    s->got++;
cleanup:
    if (tmp)
        sodium_memzero(tmp, cap * sizeof *tmp);
    free(tmp);
    free(alive);
    return rc;
}

int sl_secagg_server_handle(sl_secagg_server_t *s, uint32_t from, const uint8_t *msg, size_t len,
                            sl_secagg_outbox_t *out)
{
    sl_secagg_header_t h;
    int rc = sl_secagg_header_decode(msg, len, &h);
    if (rc)
        return sl_error_wrap(rc, "secagg server: from client %u", from);
    if (from >= s->n)
        return sl_error(SL_EPROTO, "secagg server: message from unknown client %u (n = %zu)", from, s->n);
    if (h.sender != from)
        return sl_error(SL_EPROTO, "secagg server: %s from client %u claims to be from %u (forged sender)",
                        sl_secagg_msg_name(h.type), from, h.sender);
    if (h.receiver != SL_SECAGG_SERVER_ID)
        return sl_error(SL_EPROTO, "secagg server: %s from %u is addressed to %u, not the server",
                        sl_secagg_msg_name(h.type), from, h.receiver);
    if (h.round != s->frame.round)
        return sl_error(SL_EPROTO, "secagg server: %s from %u for round %llu, this is round %llu",
                        sl_secagg_msg_name(h.type), from, (unsigned long long)h.round,
                        (unsigned long long)s->frame.round);
    if (memcmp(h.session, s->frame.session, SL_SECAGG_SESSION_BYTES) != 0)
        return sl_error(SL_EPROTO, "secagg server: %s from %u belongs to another session", sl_secagg_msg_name(h.type),
                        from);
    sl_secagg_stage_t want;
    switch (h.type) {
    case SL_SECAGG_MSG_ADVERTISE:
        want = SL_SECAGG_ADVERTISE;
        break;
    case SL_SECAGG_MSG_SHARES:
        want = SL_SECAGG_SHARES;
        break;
    case SL_SECAGG_MSG_MASKED:
        want = SL_SECAGG_MASKED;
        break;
    case SL_SECAGG_MSG_UNMASK_RESP:
        want = SL_SECAGG_UNMASK;
        break;
    default:
        return sl_error(SL_EPROTO, "secagg server: %s from %u is not a client-to-server message",
                        sl_secagg_msg_name(h.type), from);
    }
    if (s->stage != want)
        return sl_error(SL_ESTATE, "secagg server: %s from %u in stage %s (%s)", sl_secagg_msg_name(h.type), from,
                        sl_secagg_stage_name(s->stage), s->stage > want ? "late" : "too early");
    if (s->flags[from] & F_GONE)
        return sl_error(SL_ESTATE, "secagg server: %s from client %u, which was dropped",
                        sl_secagg_msg_name(h.type), from);
    const uint8_t *body = msg + SL_SECAGG_HEADER_BYTES;
    switch (h.type) {
    case SL_SECAGG_MSG_ADVERTISE:
        rc = on_advertise(s, from, &h, body);
        break;
    case SL_SECAGG_MSG_SHARES:
        rc = on_shares(s, from, &h, body);
        break;
    case SL_SECAGG_MSG_MASKED:
        rc = on_masked(s, from, &h, body);
        break;
    default:
        rc = on_unmask(s, from, &h, body);
        break;
    }
    if (rc)
        return rc;
    return advance(s, out);
}

/* 1 if client u's answer is still awaited in the current stage. */
static int awaited(const sl_secagg_server_t *s, size_t u)
{
    uint8_t f = s->flags[u];
    switch (s->stage) {
    case SL_SECAGG_ADVERTISE:
        return !(f & F_ADV);
    case SL_SECAGG_SHARES:
        return (f & F_U1) && !(f & F_SH);
    case SL_SECAGG_MASKED:
        return (f & F_U2) && !(f & F_MK);
    case SL_SECAGG_UNMASK:
        return (f & F_MK) && !(f & F_UNM);
    default:
        return 0;
    }
}

int sl_secagg_server_drop(sl_secagg_server_t *s, uint32_t u, sl_secagg_outbox_t *out)
{
    if (u >= s->n)
        return sl_error(SL_EINVAL, "secagg server: drop of unknown client %u (n = %zu)", u, s->n);
    if (s->flags[u] & F_GONE)
        return 0;
    int waited = awaited(s, u);
    s->flags[u] |= F_GONE | F_TOLD; /* F_TOLD: nothing more is sent to it, not even ABORT */
    if (!waited)
        return 0;
    s->expected--;
    return advance(s, out);
}
