/* core/keys: CurveZMQ identities on disk.
 *
 * A key pair is two small text files made by `starling keygen`:
 *   NAME.pub      the public key, 40 Z85 characters and a newline (share it freely)
 *   NAME.secret   the secret key, same format, mode 0600
 * Like ssh, a secret key file that group or others can read is refused. In memory a
 * secret key lives in a key pair from sl_keypair_new (locked, wiped on free) and is never
 * logged: logs show a public key's fingerprint only.
 * An allow-list (net.authorized_clients) is a file with one Z85 public key per line
 * (the first word of a line; '#' starts a comment line) or a folder of *.pub files.
 */
#ifndef SL_KEYS_H
#define SL_KEYS_H

#include <stddef.h>

#include "core/error.h"

#define SL_Z85_KEY_LEN 40 /* 32 bytes in Z85 */

typedef struct {
    char public_z85[SL_Z85_KEY_LEN + 1];
    char secret_z85[SL_Z85_KEY_LEN + 1]; /* secret: wiped by sl_keypair_wipe */
} sl_keypair_t;

/* An empty key pair in secret memory (core/secmem.h: locked in RAM where the limit
 * allows, guarded, wiped on free). Free with sl_keypair_destroy. */
SL_NODISCARD int sl_keypair_new(sl_keypair_t **out);
/* Wipe and free; NULL-safe, nulls *kp. */
void sl_keypair_destroy(sl_keypair_t **kp);

/* Fresh key pair from the OS CSPRNG (libsodium crypto_box_keypair: X25519, as CURVE uses). */
SL_NODISCARD int sl_keypair_generate(sl_keypair_t *kp);
void sl_keypair_wipe(sl_keypair_t *kp);

/* Write DIR/NAME.pub and DIR/NAME.secret (0600, created exclusively: an existing key is
 * never overwritten). DIR is created (0700) if missing. */
SL_NODISCARD int sl_keypair_save(const sl_keypair_t *kp, const char *dir, const char *name);

/* Read a key pair saved by sl_keypair_save; `path_prefix` is DIR/NAME. The secret file
 * must not be readable by group or others (SL_EPERM, with the chmod to fix it). */
SL_NODISCARD int sl_keypair_load(sl_keypair_t *kp, const char *path_prefix);

/* A public key given either as a path to a .pub file or inline (40 Z85 characters). An
 * existing file wins: a path can itself be 40 valid Z85 characters. */
SL_NODISCARD int sl_public_key_resolve(const char *key_or_path, char out[SL_Z85_KEY_LEN + 1]);

/* True if `z85` is 40 valid Z85 characters that decode to 32 bytes. */
int sl_z85_key_valid(const char *z85);

/* Short printable fingerprint of a public key for logs: 16 hex chars of BLAKE2b. */
void sl_key_fingerprint(const char *public_z85, char out[17]);

/* A set of allowed public keys. */
typedef struct {
    char (*keys)[SL_Z85_KEY_LEN + 1];
    size_t count;
} sl_allowlist_t;

/* Load from a file (one key per line) or a folder of *.pub files. Replaces `list`'s
 * contents only on success, so a bad reload keeps the old list. */
SL_NODISCARD int sl_allowlist_load(sl_allowlist_t *list, const char *path);
int sl_allowlist_contains(const sl_allowlist_t *list, const char *public_z85);
void sl_allowlist_free(sl_allowlist_t *list);

#endif
