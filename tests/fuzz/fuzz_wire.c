/* libFuzzer harness for the wire codec (built with -DSL_FUZZ=ON and clang):
 *   input = u16 little-endian header length | header bytes | payload bytes
 * Properties: the decoder never crashes or reads out of bounds (ASan), and whatever it
 * accepts re-encodes to a header that decodes to the same message. */
#include "core/wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t hlen = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (hlen > size)
        hlen = size;
    /* exact-size copies so ASan sees any overread */
    uint8_t *hdr = malloc(hlen ? hlen : 1);
    size_t plen = size - hlen;
    uint8_t *pay = plen ? aligned_alloc(16, (plen + 15) / 16 * 16) : NULL;
    memcpy(hdr, data, hlen);
    if (plen)
        memcpy(pay, data + hlen, plen);
    sl_wire_limits_t lim = {.max_payload_bytes = 1 << 20, .max_vec = 4096, .max_blob = 1 << 16};
    sl_msg_t m;
    if (sl_wire_decode(hdr, hlen, pay, plen, &lim, &m) == 0) {
        sl_wire_buf_t b = {0};
        if (sl_wire_encode(&m, &b) != 0)
            abort(); /* accepted input must be re-encodable */
        sl_msg_t m2;
        if (sl_wire_decode(b.data, b.len, pay, plen, &lim, &m2) != 0)
            abort();
        if (m2.type != m.type || m2.round != m.round || m2.sender != m.sender || m2.n != m.n)
            abort();
        sl_wire_buf_free(&b);
    }
    free(hdr);
    free(pay);
    return 0;
}
