/* The SecAgg+ client state machine. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "core/secmem.h"
#include "privacy/secagg/internal.h"
#include "privacy/secagg/kdf.h"
#include "privacy/secagg/prg.h"
#include "privacy/secagg/shamir.h"

enum { KIND_NONE = 0, KIND_B = 1, KIND_S = 2 };

typedef struct {
    uint32_t index;
    uint8_t c_pk[32], s_pk[32];
    uint8_t enc_key[32];  /* secret */
    uint8_t mask_key[32]; /* secret */
    int in_u2;            /* its shares were forwarded to us: we mask with it */
    sl_shamir_share_t s_share, b_share; /* its shares we hold (secret) */
} neighbour_t;

struct sl_secagg_client {
    sl_secagg_client_opts_t opts;
    sl_secagg_stage_t stage;
    int masked_sent;
    sa_frame_t frame;
    size_t n, k, t, dim;
    unsigned bits;
    /* own secrets */
    uint8_t c_sk[32], s_sk[32], b[32];
    uint8_t c_pk[32], s_pk[32];
    sl_shamir_share_t self_s, self_b;
    neighbour_t *nb;
    size_t nnb;
    uint32_t *input; /* (dim,) */
    size_t input_dim;
    /* the unmask request we answered, and the answer (for an identical retransmission) */
    uint8_t *req_body;
    size_t req_len;
    uint8_t *resp;
    size_t resp_len;
};

static void wipe_neighbours(sl_secagg_client_t *c)
{
    sl_secret_free(c->nb); /* wipes */
    c->nb = NULL;
    c->nnb = 0;
}

static void wipe_input(sl_secagg_client_t *c)
{
    if (c->input) {
        sodium_memzero(c->input, c->input_dim * sizeof *c->input);
        free(c->input);
    }
    c->input = NULL;
}

static void wipe_all(sl_secagg_client_t *c)
{
    wipe_neighbours(c);
    wipe_input(c);
    sodium_memzero(c->c_sk, sizeof c->c_sk);
    sodium_memzero(c->s_sk, sizeof c->s_sk);
    sodium_memzero(c->b, sizeof c->b);
    sodium_memzero(&c->self_s, sizeof c->self_s);
    sodium_memzero(&c->self_b, sizeof c->self_b);
}

int sl_secagg_client_new(sl_secagg_client_t **out, const sl_secagg_client_opts_t *opts)
{
    *out = NULL;
    if (!opts)
        return sl_error(SL_EINVAL, "secagg client: NULL options");
    if (opts->index == SL_SECAGG_SERVER_ID)
        return sl_error(SL_EINVAL, "secagg client: index %u is reserved for the server", opts->index);
    /* the client's own secret keys, mask seed and shares live in the struct: locked,
     * guarded memory (core/secmem.h) */
    sl_secagg_client_t *c = sl_secret_alloc(sizeof *c);
    if (!c)
        return sl_error(SL_ENOMEM, "secagg client: out of memory");
    c->opts = *opts;
    c->stage = SL_SECAGG_INIT;
    *out = c;
    return 0;
}

void sl_secagg_client_destroy(sl_secagg_client_t **cp)
{
    if (!cp || !*cp)
        return;
    sl_secagg_client_t *c = *cp;
    wipe_all(c);
    free(c->req_body);
    free(c->resp);
    sl_secret_free(c); /* wipes */
    *cp = NULL;
}

sl_secagg_stage_t sl_secagg_client_stage(const sl_secagg_client_t *c) { return c->stage; }

int sl_secagg_client_needs_input(const sl_secagg_client_t *c)
{
    return c->stage == SL_SECAGG_MASKED && !c->masked_sent && !c->input;
}

static void random_bytes(sl_secagg_client_t *c, uint8_t *p, size_t n)
{
    if (c->opts.rng)
        sl_rng_bytes(c->opts.rng, p, n);
    else
        sl_csprng_bytes(p, n);
}

static int check_input(const sl_secagg_client_t *c, const uint32_t *v, size_t dim)
{
    if (c->bits < 32) {
        uint32_t hi = ~((UINT32_C(1) << c->bits) - 1);
        for (size_t i = 0; i < dim; i++)
            if (v[i] & hi)
                return sl_error(SL_ERANGE, "secagg client %u: input[%zu] = %u is not below 2^%u", c->opts.index, i,
                                v[i], c->bits);
    }
    return 0;
}

/* y = x + PRG(b) + sum_v sign(u,v) PRG(s_uv) in Z_{2^B}, packed; then wipe the secrets. */
static int send_masked(sl_secagg_client_t *c, sl_secagg_outbox_t *out)
{
    size_t nterms = 1;
    for (size_t j = 0; j < c->nnb; j++)
        nterms += c->nb[j].in_u2 != 0;
    sl_prg_term_t *terms = malloc(nterms * sizeof *terms);
    if (!terms)
        return sl_error(SL_ENOMEM, "secagg client: out of memory");
    memcpy(terms[0].seed, c->b, 32);
    terms[0].sign = 1;
    size_t tn = 1;
    for (size_t j = 0; j < c->nnb; j++) {
        if (!c->nb[j].in_u2)
            continue;
        memcpy(terms[tn].seed, c->nb[j].mask_key, 32);
        terms[tn].sign = c->opts.index < c->nb[j].index ? 1 : -1;
        tn++;
    }
    int rc = sl_prg_apply(terms, nterms, c->input, c->dim, c->opts.threads);
    sodium_memzero(terms, nterms * sizeof *terms);
    free(terms);
    if (rc)
        return rc;
    if (c->bits < 32) {
        uint32_t mask = (UINT32_C(1) << c->bits) - 1;
        for (size_t i = 0; i < c->dim; i++)
            c->input[i] &= mask;
    }
    uint8_t *body;
    size_t packed = sl_secagg_packed_bytes(c->dim, c->bits);
    rc = sa_msg_new(out, &c->frame, SL_SECAGG_MSG_MASKED, c->opts.index, SL_SECAGG_SERVER_ID,
                    SA_MASKED_PREFIX + packed, &body);
    if (rc)
        return rc;
    sl_put_le64(body, c->dim);
    body[8] = (uint8_t)c->bits;
    body[9] = body[10] = body[11] = 0;
    sl_secagg_pack(c->input, c->dim, c->bits, body + SA_MASKED_PREFIX);
    c->masked_sent = 1;
    /* The masking secrets are spent: only the held shares remain until unmasking. */
    wipe_input(c);
    sodium_memzero(c->c_sk, sizeof c->c_sk);
    sodium_memzero(c->s_sk, sizeof c->s_sk);
    sodium_memzero(c->b, sizeof c->b);
    for (size_t j = 0; j < c->nnb; j++) {
        sodium_memzero(c->nb[j].enc_key, 32);
        sodium_memzero(c->nb[j].mask_key, 32);
    }
    return 0;
}

int sl_secagg_client_set_input(sl_secagg_client_t *c, const uint32_t *v, size_t dim, sl_secagg_outbox_t *out)
{
    if (c->masked_sent || c->stage == SL_SECAGG_DONE || c->stage == SL_SECAGG_ABORTED)
        return sl_error(SL_ESTATE, "secagg client %u: input given after the masked-input stage", c->opts.index);
    if (dim == 0 || !v)
        return sl_error(SL_EINVAL, "secagg client %u: empty input", c->opts.index);
    if (c->stage != SL_SECAGG_INIT) {
        if (dim != c->dim)
            return sl_error(SL_EMISMATCH, "secagg client %u: input has %zu values, the round expects %zu",
                            c->opts.index, dim, c->dim);
        int rc = check_input(c, v, dim);
        if (rc)
            return rc;
    }
    uint32_t *copy = malloc(dim * sizeof *copy);
    if (!copy)
        return sl_error(SL_ENOMEM, "secagg client %u: out of memory for %zu values", c->opts.index, dim);
    memcpy(copy, v, dim * sizeof *copy);
    wipe_input(c);
    c->input = copy;
    c->input_dim = dim;
    if (c->stage == SL_SECAGG_MASKED && !c->masked_sent)
        return send_masked(c, out);
    return 0;
}

static int fail_msg(const sl_secagg_client_t *c, int code, const char *what)
{
    return sl_error(code, "secagg client %u: %s", c->opts.index, what);
}

static int on_setup(sl_secagg_client_t *c, const sl_secagg_header_t *h, const uint8_t *body, sl_secagg_outbox_t *out)
{
    if (h->body_len != SA_SETUP_BODY)
        return sl_error(SL_EPROTO, "secagg client %u: SETUP body is %u bytes, expected %d", c->opts.index,
                        h->body_len, SA_SETUP_BODY);
    sl_secagg_reader_t r;
    sl_secagg_reader_init(&r, body, h->body_len);
    uint32_t n = sl_secagg_read_u32(&r), k = sl_secagg_read_u32(&r), t = sl_secagg_read_u32(&r);
    uint8_t bits = sl_secagg_read_u8(&r);
    const uint8_t *res = sl_secagg_read_bytes(&r, 3);
    uint64_t dim = sl_secagg_read_u64(&r);
    if (r.bad || res[0] || res[1] || res[2])
        return fail_msg(c, SL_EPROTO, "malformed SETUP");
    if (n < 2 || n == SL_SECAGG_SERVER_ID || c->opts.index >= n || k < 1 || k > n - 1 || t < 1 || t > k + 1 ||
        bits < 1 || bits > 32 || dim < 1 || dim > SA_MAX_DIM)
        return sl_error(SL_EPROTO,
                        "secagg client %u: SETUP parameters out of range (n %u, k %u, t %u, B %u, dim %llu)",
                        c->opts.index, n, k, t, bits, (unsigned long long)dim);
    c->n = n, c->k = k, c->t = t, c->bits = bits, c->dim = (size_t)dim;
    if (c->input) {
        if (c->input_dim != c->dim)
            return sl_error(SL_EMISMATCH, "secagg client %u: input has %zu values, the round expects %zu",
                            c->opts.index, c->input_dim, c->dim);
        int rc = check_input(c, c->input, c->dim);
        if (rc)
            return rc;
    }
    c->frame.round = h->round;
    memcpy(c->frame.session, h->session, SL_SECAGG_SESSION_BYTES);
    random_bytes(c, c->c_sk, 32);
    random_bytes(c, c->s_sk, 32);
    random_bytes(c, c->b, 32);
    crypto_scalarmult_base(c->c_pk, c->c_sk);
    crypto_scalarmult_base(c->s_pk, c->s_sk);
    uint8_t *ob;
    int rc = sa_msg_new(out, &c->frame, SL_SECAGG_MSG_ADVERTISE, c->opts.index, SL_SECAGG_SERVER_ID,
                        SA_ADVERTISE_BODY, &ob);
    if (rc)
        return rc;
    memcpy(ob, c->c_pk, 32);
    memcpy(ob + 32, c->s_pk, 32);
    sl_secagg_commit(c->frame.session, c->frame.round, c->opts.index, c->b, ob + 64);
    c->stage = SL_SECAGG_ADVERTISE;
    return 0;
}

static int on_keys(sl_secagg_client_t *c, const sl_secagg_header_t *h, const uint8_t *body, sl_secagg_outbox_t *out)
{
    sl_secagg_reader_t r;
    sl_secagg_reader_init(&r, body, h->body_len);
    uint32_t count = sl_secagg_read_u32(&r);
    if (r.bad || count > c->k || (uint64_t)sl_secagg_reader_left(&r) != (uint64_t)count * SA_KEYS_ENTRY)
        return sl_error(SL_EPROTO, "secagg client %u: KEYS body of %u bytes does not hold %u neighbours (k = %zu)",
                        c->opts.index, h->body_len, count, c->k);
    if (count + 1 < c->t)
        return sl_error(SL_EPROTO, "secagg client %u: KEYS lists %u neighbours, below threshold %zu - 1",
                        c->opts.index, count, c->t);
    int rc = 0;
    neighbour_t *nb = sl_secret_alloc((count ? count : 1) * sizeof *nb); /* pairwise keys */
    uint64_t *xs = malloc((count + 1) * sizeof *xs);
    sl_shamir_share_t *ss = sl_secret_alloc((count + 1) * sizeof *ss), *bs = sl_secret_alloc((count + 1) * sizeof *bs);
    if (!nb || !xs || !ss || !bs) {
        rc = sl_error(SL_ENOMEM, "secagg client: out of memory");
        goto cleanup;
    }
    for (uint32_t j = 0; j < count; j++) {
        nb[j].index = sl_secagg_read_u32(&r);
        memcpy(nb[j].c_pk, sl_secagg_read_bytes(&r, 32), 32);
        memcpy(nb[j].s_pk, sl_secagg_read_bytes(&r, 32), 32);
        if (nb[j].index >= c->n || nb[j].index == c->opts.index || (j && nb[j].index <= nb[j - 1].index)) {
            rc = sl_error(SL_EPROTO, "secagg client %u: KEYS neighbour %u is invalid, self or out of order",
                          c->opts.index, nb[j].index);
            goto cleanup;
        }
        rc = sl_secagg_agree("enc", c->frame.session, c->frame.round, c->c_sk, c->c_pk, nb[j].c_pk, nb[j].enc_key);
        if (rc) {
            rc = sl_error_wrap(rc, "secagg client %u: neighbour %u", c->opts.index, nb[j].index);
            goto cleanup;
        }
        xs[j] = (uint64_t)nb[j].index + 1;
    }
    xs[count] = (uint64_t)c->opts.index + 1;
    if ((rc = sl_shamir_split(c->s_sk, c->t, xs, count + 1, c->opts.rng, ss)) ||
        (rc = sl_shamir_split(c->b, c->t, xs, count + 1, c->opts.rng, bs)))
        goto cleanup;
    uint8_t *ob;
    if ((rc = sa_msg_new(out, &c->frame, SL_SECAGG_MSG_SHARES, c->opts.index, SL_SECAGG_SERVER_ID,
                         4 + (size_t)count * SA_SHARES_ENTRY, &ob)))
        goto cleanup;
    sl_put_le32(ob, count);
    ob += 4;
    for (uint32_t j = 0; j < count; j++) {
        uint8_t pt[SL_SECAGG_SHARE_PT_BYTES], ad[SA_AD_BYTES], nonce[24];
        sl_put_le32(pt, c->opts.index);
        sl_put_le32(pt + 4, nb[j].index);
        sl_shamir_share_encode(&ss[j], pt + 8);
        sl_shamir_share_encode(&bs[j], pt + 8 + SL_SHAMIR_SHARE_BYTES);
        sa_share_ad(&c->frame, c->opts.index, nb[j].index, ad);
        sa_share_nonce(c->opts.index, nb[j].index, nonce);
        sl_put_le32(ob, nb[j].index);
        crypto_aead_xchacha20poly1305_ietf_encrypt(ob + 4, NULL, pt, sizeof pt, ad, sizeof ad, NULL, nonce,
                                                   nb[j].enc_key);
        sodium_memzero(pt, sizeof pt);
        ob += SA_SHARES_ENTRY;
    }
    c->self_s = ss[count];
    c->self_b = bs[count];
    wipe_neighbours(c);
    c->nb = nb;
    c->nnb = count;
    nb = NULL;
    c->stage = SL_SECAGG_SHARES;
cleanup:
    sl_secret_free(nb); /* each wipes */
    sl_secret_free(ss);
    sl_secret_free(bs);
    free(xs);
    return rc;
}

static long find_nb(const sl_secagg_client_t *c, uint32_t idx)
{
    size_t lo = 0, hi = c->nnb;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->nb[mid].index < idx)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < c->nnb && c->nb[lo].index == idx ? (long)lo : -1;
}

static int on_forward(sl_secagg_client_t *c, const sl_secagg_header_t *h, const uint8_t *body,
                      sl_secagg_outbox_t *out)
{
    sl_secagg_reader_t r;
    sl_secagg_reader_init(&r, body, h->body_len);
    uint32_t count = sl_secagg_read_u32(&r);
    if (r.bad || count > c->nnb || (uint64_t)sl_secagg_reader_left(&r) != (uint64_t)count * SA_SHARES_ENTRY)
        return sl_error(SL_EPROTO, "secagg client %u: FORWARD body of %u bytes does not hold %u shares",
                        c->opts.index, h->body_len, count);
    if (count + 1 < c->t)
        return sl_error(SL_EPROTO, "secagg client %u: FORWARD carries %u shares, below threshold %zu - 1",
                        c->opts.index, count, c->t);
    /* Decrypt everything into scratch first: a bad entry leaves the client unchanged. */
    int rc = 0;
    long *slot = malloc((count ? count : 1) * sizeof *slot);
    sl_shamir_share_t *s_sh = malloc((count ? count : 1) * sizeof *s_sh);
    sl_shamir_share_t *b_sh = malloc((count ? count : 1) * sizeof *b_sh);
    uint8_t(*mk)[32] = malloc((count ? count : 1) * sizeof *mk);
    if (!slot || !s_sh || !b_sh || !mk) {
        rc = sl_error(SL_ENOMEM, "secagg client: out of memory");
        goto cleanup;
    }
    uint32_t prev = 0;
    for (uint32_t j = 0; j < count; j++) {
        uint32_t from = sl_secagg_read_u32(&r);
        const uint8_t *ct = sl_secagg_read_bytes(&r, SL_SECAGG_SHARE_CT_BYTES);
        slot[j] = find_nb(c, from);
        if (slot[j] < 0 || (j && from <= prev)) {
            rc = sl_error(SL_EPROTO, "secagg client %u: FORWARD share from %u, not a neighbour or out of order",
                          c->opts.index, from);
            goto cleanup;
        }
        prev = from;
        neighbour_t *nb = &c->nb[slot[j]];
        uint8_t pt[SL_SECAGG_SHARE_PT_BYTES], ad[SA_AD_BYTES], nonce[24];
        sa_share_ad(&c->frame, from, c->opts.index, ad);
        sa_share_nonce(from, c->opts.index, nonce);
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt, NULL, NULL, ct, SL_SECAGG_SHARE_CT_BYTES, ad, sizeof ad,
                                                       nonce, nb->enc_key) != 0) {
            rc = sl_error(SL_ECRYPTO, "secagg client %u: the share from %u fails authentication", c->opts.index,
                          from);
            goto cleanup;
        }
        sl_secagg_reader_t pr;
        sl_secagg_reader_init(&pr, pt, sizeof pt);
        uint32_t ps = sl_secagg_read_u32(&pr), pv = sl_secagg_read_u32(&pr);
        if (ps != from || pv != c->opts.index ||
            sl_shamir_share_decode(pt + 8, &s_sh[j]) != 0 ||
            sl_shamir_share_decode(pt + 8 + SL_SHAMIR_SHARE_BYTES, &b_sh[j]) != 0) {
            sodium_memzero(pt, sizeof pt);
            rc = sl_error(SL_EPROTO, "secagg client %u: the share from %u is malformed", c->opts.index, from);
            goto cleanup;
        }
        sodium_memzero(pt, sizeof pt);
        rc = sl_secagg_agree("mask", c->frame.session, c->frame.round, c->s_sk, c->s_pk, nb->s_pk, mk[j]);
        if (rc) {
            rc = sl_error_wrap(rc, "secagg client %u: neighbour %u", c->opts.index, from);
            goto cleanup;
        }
    }
    for (uint32_t j = 0; j < count; j++) {
        neighbour_t *nb = &c->nb[slot[j]];
        nb->in_u2 = 1;
        nb->s_share = s_sh[j];
        nb->b_share = b_sh[j];
        memcpy(nb->mask_key, mk[j], 32);
    }
    c->stage = SL_SECAGG_MASKED;
    if (c->input)
        rc = send_masked(c, out);
cleanup:
    if (s_sh)
        sodium_memzero(s_sh, (count ? count : 1) * sizeof *s_sh);
    if (b_sh)
        sodium_memzero(b_sh, (count ? count : 1) * sizeof *b_sh);
    if (mk)
        sodium_memzero(mk, (count ? count : 1) * sizeof *mk);
    free(slot);
    free(s_sh);
    free(b_sh);
    free(mk);
    return rc;
}

/* UNMASK_REQ body: n_alive u32, n_dropped u32, alive[n_alive] u32, dropped[n_dropped] u32,
 * each ascending. It must partition exactly {self} + the neighbours whose shares we hold,
 * with self among the survivors: a client never reveals both shares of one neighbour. */
static int on_unmask(sl_secagg_client_t *c, const sl_secagg_header_t *h, const uint8_t *body,
                     sl_secagg_outbox_t *out)
{
    if (c->stage == SL_SECAGG_DONE) {
        if (h->body_len != c->req_len || memcmp(body, c->req_body, c->req_len) != 0)
            return sl_error(SL_EPROTO, "secagg client %u: refusing a second, different unmask request",
                            c->opts.index);
        uint8_t *ob;
        int rc = sa_msg_new(out, &c->frame, SL_SECAGG_MSG_UNMASK_RESP, c->opts.index, SL_SECAGG_SERVER_ID,
                            c->resp_len, &ob);
        if (rc)
            return rc;
        memcpy(ob, c->resp, c->resp_len);
        return 0;
    }
    if (!c->masked_sent)
        return sl_error(SL_ESTATE, "secagg client %u: UNMASK_REQ before this client sent its masked input",
                        c->opts.index);
    sl_secagg_reader_t r;
    sl_secagg_reader_init(&r, body, h->body_len);
    uint32_t na = sl_secagg_read_u32(&r), nd = sl_secagg_read_u32(&r);
    if (r.bad || (uint64_t)na + nd > c->nnb + 1 ||
        (uint64_t)sl_secagg_reader_left(&r) != ((uint64_t)na + nd) * 4)
        return sl_error(SL_EPROTO, "secagg client %u: malformed UNMASK_REQ (%u survivors, %u dropped, %u bytes)",
                        c->opts.index, na, nd, h->body_len);
    size_t held = 1;
    for (size_t j = 0; j < c->nnb; j++)
        held += c->nb[j].in_u2 != 0;
    if ((size_t)na + nd != held)
        return sl_error(SL_EPROTO, "secagg client %u: UNMASK_REQ names %u clients, this client holds shares of %zu",
                        c->opts.index, na + nd, held);
    uint8_t *kind = calloc(c->nnb + 1, 1); /* slot nnb = self */
    if (!kind)
        return sl_error(SL_ENOMEM, "secagg client: out of memory");
    int rc = 0;
    for (uint32_t i = 0; i < na + nd; i++) {
        uint32_t idx = sl_secagg_read_u32(&r);
        uint8_t want = i < na ? KIND_B : KIND_S;
        long s = idx == c->opts.index ? (long)c->nnb : find_nb(c, idx);
        if (s < 0 || (s < (long)c->nnb && !c->nb[s].in_u2)) {
            rc = sl_error(SL_EPROTO, "secagg client %u: UNMASK_REQ names %u, whose shares this client does not hold",
                          c->opts.index, idx);
            goto cleanup;
        }
        if (kind[s]) {
            rc = sl_error(SL_EPROTO,
                          kind[s] != want ? "secagg client %u: UNMASK_REQ asks for both the b-share and the s-share "
                                            "of client %u: refused"
                                          : "secagg client %u: UNMASK_REQ names client %u twice",
                          c->opts.index, idx);
            goto cleanup;
        }
        kind[s] = want;
    }
    if (kind[c->nnb] != KIND_B) {
        rc = sl_error(SL_EPROTO, "secagg client %u: UNMASK_REQ lists this (surviving) client as dropped: refused",
                      c->opts.index);
        goto cleanup;
    }
    size_t resp_len = 8 + ((size_t)na + nd) * SA_UNMASK_ENTRY;
    uint8_t *resp = malloc(resp_len), *req = malloc(h->body_len);
    if (!resp || !req) {
        free(resp), free(req);
        rc = sl_error(SL_ENOMEM, "secagg client: out of memory");
        goto cleanup;
    }
    sl_put_le32(resp, na);
    sl_put_le32(resp + 4, nd);
    sl_secagg_reader_init(&r, body + 8, h->body_len - 8);
    for (uint32_t i = 0; i < na + nd; i++) {
        uint32_t idx = sl_secagg_read_u32(&r);
        long s = idx == c->opts.index ? (long)c->nnb : find_nb(c, idx);
        const sl_shamir_share_t *sh;
        if (s == (long)c->nnb)
            sh = kind[s] == KIND_B ? &c->self_b : &c->self_s;
        else
            sh = kind[s] == KIND_B ? &c->nb[s].b_share : &c->nb[s].s_share;
        uint8_t *e = resp + 8 + (size_t)i * SA_UNMASK_ENTRY;
        sl_put_le32(e, idx);
        sl_shamir_share_encode(sh, e + 4);
    }
    uint8_t *ob;
    rc = sa_msg_new(out, &c->frame, SL_SECAGG_MSG_UNMASK_RESP, c->opts.index, SL_SECAGG_SERVER_ID, resp_len, &ob);
    if (rc) {
        sodium_memzero(resp, resp_len);
        free(resp), free(req);
        goto cleanup;
    }
    memcpy(ob, resp, resp_len);
    memcpy(req, body, h->body_len);
    c->resp = resp;
    c->resp_len = resp_len;
    c->req_body = req;
    c->req_len = h->body_len;
    /* Everything secret is spent: only the (already revealed) answer is kept. */
    wipe_all(c);
    c->stage = SL_SECAGG_DONE;
cleanup:
    free(kind);
    return rc;
}

static int on_abort(sl_secagg_client_t *c, const sl_secagg_header_t *h, const uint8_t *body)
{
    char text[256] = "";
    sl_secagg_reader_t r;
    sl_secagg_reader_init(&r, body, h->body_len);
    (void)sl_secagg_read_u32(&r); /* error code, informative */
    uint32_t tl = sl_secagg_read_u32(&r);
    const uint8_t *tp = r.bad ? NULL : sl_secagg_read_bytes(&r, tl);
    if (tp) {
        size_t n = tl < sizeof text - 1 ? tl : sizeof text - 1;
        for (size_t i = 0; i < n; i++)
            text[i] = tp[i] >= 32 && tp[i] < 127 ? (char)tp[i] : '?';
        text[n] = '\0';
    }
    wipe_all(c);
    c->stage = SL_SECAGG_ABORTED;
    return sl_error(SL_EABORT, "secagg client %u: the server aborted round %llu: %s", c->opts.index,
                    (unsigned long long)c->frame.round, text[0] ? text : "(no reason given)");
}

int sl_secagg_client_handle(sl_secagg_client_t *c, const uint8_t *msg, size_t len, sl_secagg_outbox_t *out)
{
    sl_secagg_header_t h;
    int rc = sl_secagg_header_decode(msg, len, &h);
    if (rc)
        return sl_error_wrap(rc, "secagg client %u", c->opts.index);
    const uint8_t *body = msg + SL_SECAGG_HEADER_BYTES;
    if (h.sender != SL_SECAGG_SERVER_ID || h.receiver != c->opts.index)
        return sl_error(SL_EPROTO, "secagg client %u: %s from %u to %u, expected from the server to this client",
                        c->opts.index, sl_secagg_msg_name(h.type), h.sender, h.receiver);
    if (h.round != c->opts.round)
        return sl_error(SL_EPROTO, "secagg client %u: %s for round %llu, this client is in round %llu",
                        c->opts.index, sl_secagg_msg_name(h.type), (unsigned long long)h.round,
                        (unsigned long long)c->opts.round);
    if (c->stage != SL_SECAGG_INIT && memcmp(h.session, c->frame.session, SL_SECAGG_SESSION_BYTES) != 0)
        return sl_error(SL_EPROTO, "secagg client %u: %s from another session", c->opts.index,
                        sl_secagg_msg_name(h.type));
    if (c->stage == SL_SECAGG_ABORTED)
        return sl_error(SL_ESTATE, "secagg client %u: %s after the round was aborted", c->opts.index,
                        sl_secagg_msg_name(h.type));
    if (h.type == SL_SECAGG_MSG_ABORT)
        return on_abort(c, &h, body);
    sl_secagg_stage_t want;
    switch (h.type) {
    case SL_SECAGG_MSG_SETUP:
        want = SL_SECAGG_INIT;
        break;
    case SL_SECAGG_MSG_KEYS:
        want = SL_SECAGG_ADVERTISE;
        break;
    case SL_SECAGG_MSG_FORWARD:
        want = SL_SECAGG_SHARES;
        break;
    case SL_SECAGG_MSG_UNMASK_REQ:
        if (c->stage == SL_SECAGG_MASKED || c->stage == SL_SECAGG_DONE)
            return on_unmask(c, &h, body, out);
        want = SL_SECAGG_MASKED;
        break;
    default:
        return sl_error(SL_EPROTO, "secagg client %u: %s is not a server-to-client message", c->opts.index,
                        sl_secagg_msg_name(h.type));
    }
    if (c->stage != want)
        return sl_error(c->stage > want ? SL_EPROTO : SL_ESTATE, "secagg client %u: %s in stage %s (%s)",
                        c->opts.index, sl_secagg_msg_name(h.type), sl_secagg_stage_name(c->stage),
                        c->stage > want ? "duplicate or stale" : "too early");
    switch (h.type) {
    case SL_SECAGG_MSG_SETUP:
        return on_setup(c, &h, body, out);
    case SL_SECAGG_MSG_KEYS:
        return on_keys(c, &h, body, out);
    case SL_SECAGG_MSG_FORWARD:
        return on_forward(c, &h, body, out);
    default:
        return sl_error(SL_ESTATE, "secagg client %u: UNMASK_REQ before the masked-input stage", c->opts.index);
    }
}
