# Octet, checksum, option-framing and hashing helpers shared by the ext modules that read and write
# Mobility Headers. Include after checksum.pxi and after the module's OPT_PAD1 and OPT_PADN:
#     include "octets.pxi"
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

include "hashing.pxi"


cdef inline uint64_t halves(uint64_t v) noexcept nogil:
    """v's two 32-bit halves added: the same sum of 16-bit words, modulo 0xFFFF."""
    return <uint32_t>v + (v >> 32)


cdef inline uint64_t native_sum(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Weight-256 sum of p[0:n], n a multiple of 8."""
    cdef uint64_t b = 0
    cdef Py_ssize_t k
    for k in range(0, n, 8):
        b += halves(load64(p + k))
    return b


cdef inline uint64_t address_sum(const uint8_t* src, const uint8_t* dst) noexcept nogil:
    """Weight-256 sum of the pseudo-header's two addresses."""
    return (halves(load64(src)) + halves(load64(src + 8))
            + halves(load64(dst)) + halves(load64(dst + 8)))


cdef inline uint64_t fold16(uint64_t s) noexcept nogil:
    """s reduced to 16 bits with end-around carries (same value modulo 0xFFFF)."""
    s = <uint32_t>s + (s >> 32)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (s & 0xFFFF) + (s >> 16)


cdef inline uint16_t finish(uint64_t a, uint64_t b) noexcept nogil:
    """The checksum field for the weight-1 sum a and the weight-256 sum b."""
    b = fold16(b)
    return csum_fold(a + (((b << 8) | (b >> 8)) & 0xFFFF))


cdef inline uint16_t be16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]


cdef inline Py_ssize_t clamp(int64_t i, Py_ssize_t n) noexcept nogil:
    """A Python slice bound of a sequence of length n."""
    if i < 0:
        i += n
        return 0 if i < 0 else i
    return n if i > n else i


cdef inline Py_ssize_t wrap_index(int64_t i, Py_ssize_t n) noexcept nogil:
    """numpy's index semantics: negative counts from the end; -1 when out of range."""
    if i < 0:
        i += n
    return i if 0 <= i < n else -1


cdef inline void put_be16(uint8_t* q, uint16_t v) noexcept nogil:
    q[0] = v >> 8
    q[1] = <uint8_t>v


cdef inline void put_be32(uint8_t* q, uint32_t v) noexcept nogil:
    q[0] = v >> 24
    q[1] = <uint8_t>(v >> 16)
    q[2] = <uint8_t>(v >> 8)
    q[3] = <uint8_t>v


cdef inline void put_be64(uint8_t* q, uint64_t v) noexcept nogil:
    put_be32(q, <uint32_t>(v >> 32))
    put_be32(q + 4, <uint32_t>v)


cdef inline Py_ssize_t put_padding(uint8_t* mh, Py_ssize_t off, Py_ssize_t n) noexcept nogil:
    """Pad1 or PadN of ``n`` octets at ``off``."""
    if n == 1:
        mh[off] = OPT_PAD1
    elif n >= 2:
        mh[off] = OPT_PADN
        mh[off + 1] = <uint8_t>(n - 2)
        memset(mh + off + 2, 0, n - 2)
    return off + n


cdef inline int pad(uint8_t* p, int pos, int x, int y) noexcept nogil:
    """encode_options' padding: Pad1 or PadN from MH offset pos up to the next offset o with
    o % x == y; returns o."""
    cdef int n = (y - pos) % x
    if n < 0:
        n += x
    put_padding(p, pos, n)
    return pos + n


cdef inline int padded_to(int pos, int x, int y) noexcept nogil:
    """Where pad(p, pos, x, y) ends."""
    cdef int n = (y - pos) % x
    return pos + (n + x if n < 0 else n)


cdef enum:
    OPTIONS_END = -1
    OPTIONS_MALFORMED = -2


cdef inline Py_ssize_t next_option(
    const uint8_t* mh, Py_ssize_t* off, Py_ssize_t end, uint8_t* kind
) noexcept nogil:
    """decode_options' framing of mh[off[0]:end]: the body offset of the next option, its type
    in kind[0] (its Length is mh[body - 1]) and off[0] moved past it, Pad1 and PadN skipped;
    OPTIONS_END at the end, OPTIONS_MALFORMED when an option runs past ``end``."""
    cdef Py_ssize_t body
    while off[0] < end:
        kind[0] = mh[off[0]]
        if kind[0] == OPT_PAD1:
            off[0] += 1
            continue
        if off[0] + 2 > end:
            return OPTIONS_MALFORMED
        body = off[0] + 2
        off[0] = body + mh[off[0] + 1]
        if off[0] > end:
            return OPTIONS_MALFORMED
        if kind[0] != OPT_PADN:
            return body
    return OPTIONS_END
