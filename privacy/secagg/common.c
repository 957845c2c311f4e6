/* Shared pieces of the SecAgg+ state machines: outbox, parameters, message framing. */
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "privacy/secagg/internal.h"

const char *sl_secagg_stage_name(sl_secagg_stage_t stage)
{
    switch (stage) {
    case SL_SECAGG_INIT:
        return "init";
    case SL_SECAGG_ADVERTISE:
        return "advertise-keys";
    case SL_SECAGG_SHARES:
        return "share-keys";
    case SL_SECAGG_MASKED:
        return "masked-input";
    case SL_SECAGG_UNMASK:
        return "unmasking";
    case SL_SECAGG_DONE:
        return "done";
    case SL_SECAGG_ABORTED:
        return "aborted";
    }
    return "?";
}

void sl_secagg_outbox_init(sl_secagg_outbox_t *o) { memset(o, 0, sizeof *o); }

void sl_secagg_outbox_clear(sl_secagg_outbox_t *o)
{
    for (size_t i = 0; i < o->count; i++)
        free(o->msgs[i].data);
    o->count = 0;
}

void sl_secagg_outbox_free(sl_secagg_outbox_t *o)
{
    sl_secagg_outbox_clear(o);
    free(o->msgs);
    memset(o, 0, sizeof *o);
}

int sa_msg_new(sl_secagg_outbox_t *out, const sa_frame_t *f, uint8_t type, uint32_t sender, uint32_t receiver,
               size_t body_len, uint8_t **body)
{
    if (body_len > UINT32_MAX - SL_SECAGG_HEADER_BYTES)
        return sl_error(SL_ERANGE, "secagg: %s body of %zu bytes is too large", sl_secagg_msg_name(type), body_len);
    if (out->count == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 16;
        sl_secagg_msg_t *m = realloc(out->msgs, cap * sizeof *m);
        if (!m)
            return sl_error(SL_ENOMEM, "secagg: out of memory (outbox)");
        out->msgs = m;
        out->cap = cap;
    }
    uint8_t *data = malloc(SL_SECAGG_HEADER_BYTES + body_len);
    if (!data)
        return sl_error(SL_ENOMEM, "secagg: out of memory (%zu-byte message)", body_len);
    sl_secagg_header_t h = {.type = type, .round = f->round, .sender = sender, .receiver = receiver,
                            .body_len = (uint32_t)body_len};
    memcpy(h.session, f->session, SL_SECAGG_SESSION_BYTES);
    sl_secagg_header_encode(&h, data);
    out->msgs[out->count++] = (sl_secagg_msg_t){receiver, data, SL_SECAGG_HEADER_BYTES + body_len};
    *body = data + SL_SECAGG_HEADER_BYTES;
    return 0;
}

void sa_share_ad(const sa_frame_t *f, uint32_t sender, uint32_t receiver, uint8_t ad[SA_AD_BYTES])
{
    memcpy(ad, SL_SECAGG_MAGIC, 4);
    ad[4] = SL_SECAGG_VERSION;
    sl_put_le64(ad + 5, f->round);
    memcpy(ad + 13, f->session, SL_SECAGG_SESSION_BYTES);
    sl_put_le32(ad + 29, sender);
    sl_put_le32(ad + 33, receiver);
}

void sa_share_nonce(uint32_t sender, uint32_t receiver, uint8_t nonce[24])
{
    memset(nonce, 0, 24);
    sl_put_le32(nonce, sender);
    sl_put_le32(nonce + 4, receiver);
}

void sl_secagg_params_default(sl_secagg_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->mod_bits = 32;
    p->dropout = 0.05;
    p->adversarial = SL_SECAGG_DEFAULT_ADVERSARIAL;
    p->threads = 1;
}

int sl_secagg_params_from_config(sl_secagg_params_t *p, const sl_config_t *cfg, size_t n, size_t dim,
                                 unsigned mod_bits, uint64_t round)
{
    sl_secagg_params_default(p);
    p->round = round;
    p->n = n;
    p->dim = dim;
    p->mod_bits = mod_bits;
    p->k = cfg->secagg.neighbors > 0 ? (size_t)cfg->secagg.neighbors : 0;
    p->t = cfg->secagg.threshold > 0 ? (size_t)cfg->secagg.threshold : 0;
    p->dropout = cfg->secagg.dropout_tolerance;
    size_t k, t;
    return sl_secagg_choose_params(n, p->dropout, p->adversarial, p->k, p->t, &k, &t);
}
