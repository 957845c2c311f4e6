/* core/bytes: little-endian integer and double encoding for every on-disk and on-wire
 * blob (checkpoints, accountant state, safetensors headers, key derivation inputs). */
#ifndef SL_BYTES_H
#define SL_BYTES_H

#include <stdint.h>
#include <string.h>

static inline void sl_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void sl_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t sl_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t sl_get_le64(const uint8_t *p)
{
    return (uint64_t)sl_get_le32(p) | (uint64_t)sl_get_le32(p + 4) << 32;
}

/* IEEE-754 binary64, bit for bit. */
static inline void sl_put_f64le(uint8_t *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    sl_put_le64(p, v);
}

static inline double sl_get_f64le(const uint8_t *p)
{
    uint64_t v = sl_get_le64(p);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

#endif
