/* privacy/secagg/internal: helpers shared by the client and server state machines.
 * Not installed API. */
#ifndef SL_SECAGG_INTERNAL_H
#define SL_SECAGG_INTERNAL_H

#include "privacy/secagg/secagg.h"
#include "privacy/secagg/shamir.h"

/* Round and session every message of one SecAgg instance carries. */
typedef struct sa_frame {
    uint64_t round;
    uint8_t session[SL_SECAGG_SESSION_BYTES];
} sa_frame_t;

/* Append a message with its header to `out`; *body points at its body_len bytes. */
SL_NODISCARD int sa_msg_new(sl_secagg_outbox_t *out, const sa_frame_t *f, uint8_t type, uint32_t sender,
                            uint32_t receiver, size_t body_len, uint8_t **body);

/* Associated data of a share ciphertext: magic, version, round, session, sender, receiver. */
#define SA_AD_BYTES 37
void sa_share_ad(const sa_frame_t *f, uint32_t sender, uint32_t receiver, uint8_t ad[SA_AD_BYTES]);
/* XChaCha20 nonce: sender || receiver || 16 zero bytes. Unique per key: the key is per
 * (session, round, pair) and each direction of a pair encrypts exactly once. */
void sa_share_nonce(uint32_t sender, uint32_t receiver, uint8_t nonce[24]);

#define SA_SETUP_BODY 24      /* n u32, k u32, t u32, B u8, 3 reserved, dim u64 */
#define SA_ADVERTISE_BODY 96  /* c_pk, s_pk, commitment to b */
#define SA_KEYS_ENTRY 68      /* index u32, c_pk, s_pk */
#define SA_SHARES_ENTRY (4 + SL_SECAGG_SHARE_CT_BYTES)
#define SA_UNMASK_ENTRY (4 + SL_SHAMIR_SHARE_BYTES)
#define SA_MASKED_PREFIX 12   /* dim u64, B u8, 3 reserved */
#define SA_MAX_DIM (UINT64_C(1) << 31)

#endif
