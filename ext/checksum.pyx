# cython: language_level=3
"""Internet checksum (RFC 1071) and the Mobility Header checksum over the IPv6 pseudo-header.

The compiled twin of lmaload/wire/checksum.py; both must give the same value for every input.
"""

from libc.stdint cimport uint8_t, uint16_t, uint64_t

cdef enum:
    MH_NEXT_HEADER = 135


cdef inline uint64_t _sum_words(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t s = 0
    cdef Py_ssize_t i = 0
    while i + 1 < n:
        s += (<uint64_t>p[i] << 8) | p[i + 1]
        i += 2
    if n & 1:
        s += <uint64_t>p[n - 1] << 8
    return s


cdef inline uint16_t _fold_complement(uint64_t s) noexcept nogil:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return <uint16_t>(~s & 0xFFFF)


def internet_checksum(const uint8_t[::1] data not None) -> int:
    """One's complement of the one's complement sum of ``data`` as 16-bit big-endian words."""
    cdef uint64_t s
    with nogil:
        s = _sum_words(&data[0], data.shape[0]) if data.shape[0] else 0
    return _fold_complement(s)


def mh_checksum(
    const uint8_t[::1] src not None, const uint8_t[::1] dst not None, const uint8_t[::1] mh not None
) -> int:
    """Checksum of a Mobility Header (checksum field zero) under the IPv6 pseudo-header."""
    if src.shape[0] != 16 or dst.shape[0] != 16:
        raise ValueError("pseudo-header addresses must be 16 octets")
    cdef Py_ssize_t n = mh.shape[0]
    cdef uint64_t s
    with nogil:
        s = _sum_words(&src[0], 16) + _sum_words(&dst[0], 16)
        s += (n >> 16) + (n & 0xFFFF) + MH_NEXT_HEADER
        if n:
            s += _sum_words(&mh[0], n)
    return _fold_complement(s)
