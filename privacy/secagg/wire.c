#include "privacy/secagg/wire.h"

#include "core/bytes.h"

#include <string.h>

const char *sl_secagg_msg_name(int type)
{
    static const char *const names[] = {"?",      "SETUP",  "ADVERTISE",  "KEYS",        "SHARES",
                                        "FORWARD", "MASKED", "UNMASK_REQ", "UNMASK_RESP", "ABORT"};
    return type >= 1 && type <= 9 ? names[type] : "?";
}

int sl_secagg_header_decode(const uint8_t *msg, size_t len, sl_secagg_header_t *h)
{
    if (!msg || len < SL_SECAGG_HEADER_BYTES)
        return sl_error(SL_EPROTO, "secagg: message of %zu bytes is shorter than the %d-byte header", len,
                        SL_SECAGG_HEADER_BYTES);
    if (memcmp(msg, SL_SECAGG_MAGIC, 4) != 0)
        return sl_error(SL_EPROTO, "secagg: bad magic (not a SecAgg message)");
    if (msg[4] != SL_SECAGG_VERSION)
        return sl_error(SL_EPROTO, "secagg: version %u, expected %d", msg[4], SL_SECAGG_VERSION);
    if (msg[5] < SL_SECAGG_MSG_SETUP || msg[5] > SL_SECAGG_MSG_ABORT)
        return sl_error(SL_EPROTO, "secagg: unknown message type %u", msg[5]);
    if (msg[6] || msg[7])
        return sl_error(SL_EPROTO, "secagg: reserved header bytes are not zero");
    h->type = msg[5];
    h->round = sl_get_le64(msg + 8);
    memcpy(h->session, msg + 16, SL_SECAGG_SESSION_BYTES);
    h->sender = sl_get_le32(msg + 32);
    h->receiver = sl_get_le32(msg + 36);
    h->body_len = sl_get_le32(msg + 40);
    if ((uint64_t)h->body_len != (uint64_t)(len - SL_SECAGG_HEADER_BYTES))
        return sl_error(SL_EPROTO, "secagg: %s body length field %u but %zu bytes follow the header",
                        sl_secagg_msg_name(h->type), h->body_len, len - SL_SECAGG_HEADER_BYTES);
    return 0;
}

void sl_secagg_header_encode(const sl_secagg_header_t *h, uint8_t out[SL_SECAGG_HEADER_BYTES])
{
    memcpy(out, SL_SECAGG_MAGIC, 4);
    out[4] = SL_SECAGG_VERSION;
    out[5] = h->type;
    out[6] = out[7] = 0;
    sl_put_le64(out + 8, h->round);
    memcpy(out + 16, h->session, SL_SECAGG_SESSION_BYTES);
    sl_put_le32(out + 32, h->sender);
    sl_put_le32(out + 36, h->receiver);
    sl_put_le32(out + 40, h->body_len);
}

void sl_secagg_reader_init(sl_secagg_reader_t *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->off = 0;
    r->bad = 0;
}

const uint8_t *sl_secagg_read_bytes(sl_secagg_reader_t *r, size_t n)
{
    if (r->bad || n > r->len - r->off) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *q = r->p + r->off;
    r->off += n;
    return q;
}

uint8_t sl_secagg_read_u8(sl_secagg_reader_t *r)
{
    const uint8_t *q = sl_secagg_read_bytes(r, 1);
    return q ? q[0] : 0;
}

uint32_t sl_secagg_read_u32(sl_secagg_reader_t *r)
{
    const uint8_t *q = sl_secagg_read_bytes(r, 4);
    return q ? sl_get_le32(q) : 0;
}

uint64_t sl_secagg_read_u64(sl_secagg_reader_t *r)
{
    const uint8_t *q = sl_secagg_read_bytes(r, 8);
    return q ? sl_get_le64(q) : 0;
}

size_t sl_secagg_packed_bytes(size_t m, unsigned bits) { return (m / 8) * bits + ((m % 8) * bits + 7) / 8; }

void sl_secagg_pack(const uint32_t *v, size_t m, unsigned bits, uint8_t *out)
{
    if (bits == 32) {
        for (size_t i = 0; i < m; i++)
            sl_put_le32(out + 4 * i, v[i]);
        return;
    }
    if (bits == 16) {
        for (size_t i = 0; i < m; i++)
            out[2 * i] = (uint8_t)v[i], out[2 * i + 1] = (uint8_t)(v[i] >> 8);
        return;
    }
    if (bits == 8) {
        for (size_t i = 0; i < m; i++)
            out[i] = (uint8_t)v[i];
        return;
    }
    uint64_t acc = 0;
    unsigned have = 0;
    size_t o = 0;
    for (size_t i = 0; i < m; i++) {
        acc |= (uint64_t)v[i] << have; /* have < 32, so this fits in 64 bits */
        have += bits;
        if (have >= 32) { /* flush 32 bits at once */
            sl_put_le32(out + o, (uint32_t)acc);
            o += 4;
            acc >>= 32;
            have -= 32;
        }
    }
    while (have > 0) {
        out[o++] = (uint8_t)acc;
        acc >>= 8;
        have = have > 8 ? have - 8 : 0;
    }
}

void sl_secagg_unpack_add(const uint8_t *in, size_t m, unsigned bits, uint32_t *acc)
{
    if (bits == 32) {
        for (size_t i = 0; i < m; i++)
            acc[i] += sl_get_le32(in + 4 * i);
        return;
    }
    if (bits == 16) {
        for (size_t i = 0; i < m; i++)
            acc[i] += (uint32_t)in[2 * i] | (uint32_t)in[2 * i + 1] << 8;
        return;
    }
    if (bits == 8) {
        for (size_t i = 0; i < m; i++)
            acc[i] += in[i];
        return;
    }
    uint64_t buf = 0;
    unsigned have = 0;
    size_t o = 0, total = sl_secagg_packed_bytes(m, bits);
    uint64_t mask = (UINT64_C(1) << bits) - 1;
    for (size_t i = 0; i < m; i++) {
        if (have < bits) { /* refill 32 bits at once while 4 bytes remain, then bytewise */
            if (total - o >= 4) {
                buf |= (uint64_t)sl_get_le32(in + o) << have;
                o += 4;
                have += 32;
            } else {
                while (have < bits) {
                    buf |= (uint64_t)in[o++] << have;
                    have += 8;
                }
            }
        }
        acc[i] += (uint32_t)(buf & mask);
        buf >>= bits;
        have -= bits;
    }
}
