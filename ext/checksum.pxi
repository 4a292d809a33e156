# One's-complement sums for the Internet checksum (RFC 1071), shared by the ext modules.
# Include with: include "checksum.pxi"
from libc.stdint cimport uint8_t, uint16_t, uint64_t


cdef inline uint64_t csum_add(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Sum of the big-endian 16-bit words of p[0:n] (an odd tail is padded with zero)."""
    cdef uint64_t s = 0
    cdef Py_ssize_t i = 0
    while i + 1 < n:
        s += (<uint64_t>p[i] << 8) | p[i + 1]
        i += 2
    if n & 1:
        s += <uint64_t>p[n - 1] << 8
    return s


cdef inline uint16_t csum_fold(uint64_t s) noexcept nogil:
    """Fold a sum of words to 16 bits and complement it: the checksum field's value."""
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return <uint16_t>(~s & 0xFFFF)


cdef inline uint64_t csum_pseudo_header(
    const uint8_t* src, const uint8_t* dst, Py_ssize_t length, uint8_t next_header
) noexcept nogil:
    """Sum of the IPv6 pseudo-header (RFC 2460 §8.1) for an upper-layer packet of length octets."""
    return csum_add(src, 16) + csum_add(dst, 16) + (length >> 16) + (length & 0xFFFF) + next_header
