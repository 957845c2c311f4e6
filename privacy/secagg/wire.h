/* privacy/secagg/wire: the byte format of SecAgg+ stage messages (see docs/secagg.md).
 *
 * Every message is one self-contained blob: a 44-byte header then the body.
 *
 *   off size field
 *    0   4   magic "SLSA"
 *    4   1   version (1)
 *    5   1   type (sl_secagg_msg_type_t)
 *    6   2   reserved, 0
 *    8   8   round id (u64 LE), the coordinator's round
 *   16  16   session id (random, chosen by the server per SecAgg instance)
 *   32   4   sender index (u32 LE; 0xFFFFFFFF = the server)
 *   36   4   receiver index (u32 LE; 0xFFFFFFFF = the server)
 *   40   4   body length (u32 LE) = total length - 44
 *
 * All integers little-endian. Decoders take a length and never read past it.
 */
#ifndef SL_SECAGG_WIRE_H
#define SL_SECAGG_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "privacy/secagg/kdf.h"

#define SL_SECAGG_MAGIC "SLSA"
#define SL_SECAGG_VERSION 1
#define SL_SECAGG_HEADER_BYTES 44
#define SL_SECAGG_SERVER_ID UINT32_C(0xFFFFFFFF)

typedef enum {
    SL_SECAGG_MSG_SETUP = 1,       /* server -> client: parameters, your index */
    SL_SECAGG_MSG_ADVERTISE = 2,   /* client -> server: c_pk, s_pk, commitment to b */
    SL_SECAGG_MSG_KEYS = 3,        /* server -> client: public keys of live neighbours */
    SL_SECAGG_MSG_SHARES = 4,      /* client -> server: encrypted shares, one per neighbour */
    SL_SECAGG_MSG_FORWARD = 5,     /* server -> client: shares addressed to it */
    SL_SECAGG_MSG_MASKED = 6,      /* client -> server: masked input, B-bit packed */
    SL_SECAGG_MSG_UNMASK_REQ = 7,  /* server -> client: which neighbours survived / dropped */
    SL_SECAGG_MSG_UNMASK_RESP = 8, /* client -> server: b-shares of survivors, s-shares of dropped */
    SL_SECAGG_MSG_ABORT = 9        /* server -> client: the round is over, with a reason */
} sl_secagg_msg_type_t;

/* Plaintext of one encrypted share: sender, receiver, share of s^SK, share of b. */
#define SL_SECAGG_SHARE_PT_BYTES (8 + 2 * 40)
#define SL_SECAGG_SHARE_CT_BYTES (SL_SECAGG_SHARE_PT_BYTES + 16) /* + Poly1305 tag */

typedef struct sl_secagg_header {
    uint8_t type;
    uint64_t round;
    uint8_t session[SL_SECAGG_SESSION_BYTES];
    uint32_t sender, receiver;
    uint32_t body_len;
} sl_secagg_header_t;

/* Name of a message type ("SHARES"), "?" if unknown. */
const char *sl_secagg_msg_name(int type);

/* Parse and check the header of msg[0..len): magic, version, known type, reserved = 0,
 * body length = len - 44. SL_EPROTO with a message on any mismatch. */
SL_NODISCARD int sl_secagg_header_decode(const uint8_t *msg, size_t len, sl_secagg_header_t *h);
void sl_secagg_header_encode(const sl_secagg_header_t *h, uint8_t out[SL_SECAGG_HEADER_BYTES]);

/* A bounds-checked little-endian reader over a body. */
typedef struct sl_secagg_reader {
    const uint8_t *p;
    size_t len, off;
    int bad; /* set once a read ran past the end; reads then return 0 */
} sl_secagg_reader_t;
void sl_secagg_reader_init(sl_secagg_reader_t *r, const uint8_t *p, size_t len);
uint8_t sl_secagg_read_u8(sl_secagg_reader_t *r);
uint32_t sl_secagg_read_u32(sl_secagg_reader_t *r);
uint64_t sl_secagg_read_u64(sl_secagg_reader_t *r);
/* Pointer to the next n bytes (NULL and bad = 1 if fewer remain). */
const uint8_t *sl_secagg_read_bytes(sl_secagg_reader_t *r, size_t n);
static inline size_t sl_secagg_reader_left(const sl_secagg_reader_t *r) { return r->bad ? 0 : r->len - r->off; }


/* Bytes of m values packed at `bits` bits each (1..32), LSB first: ceil(m * bits / 8). */
size_t sl_secagg_packed_bytes(size_t m, unsigned bits);
/* Pack v[0..m) (each < 2^bits) into out (sl_secagg_packed_bytes bytes). */
void sl_secagg_pack(const uint32_t *v, size_t m, unsigned bits, uint8_t *out);
/* acc[i] += unpacked value i (mod 2^32): the server folds a masked input into its sum. */
void sl_secagg_unpack_add(const uint8_t *in, size_t m, unsigned bits, uint32_t *acc);

#endif
