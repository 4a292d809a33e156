# Octet and checksum helpers shared by the ext modules that read and write Mobility Headers.
# Include after checksum.pxi and after the module's bswap16 declaration:
#     include "octets.pxi"
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy


cdef inline uint64_t load64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline uint64_t halves(uint64_t v) noexcept nogil:
    """v's two 32-bit halves added: the same sum of 16-bit words, modulo 0xFFFF."""
    return <uint32_t>v + (v >> 32)


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


cdef inline void store_be16(uint8_t* p, uint16_t v) noexcept nogil:
    v = bswap16(v)
    memcpy(p, &v, 2)


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
