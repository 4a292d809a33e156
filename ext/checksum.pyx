# cython: language_level=3
"""Internet checksum (RFC 1071) and the Mobility Header checksum over the IPv6 pseudo-header.

The compiled twin of lmaload/wire/checksum.py; both must give the same value for every input.
"""

from lmaload.wire import codepoints as cp

include "checksum.pxi"

cdef uint8_t IPPROTO_MH = cp.IPPROTO_MH


def internet_checksum(const uint8_t[::1] data not None) -> int:
    """One's complement of the one's complement sum of ``data`` as 16-bit big-endian words."""
    cdef uint64_t s = 0
    if data.shape[0]:
        with nogil:
            s = csum_add(&data[0], data.shape[0])
    return csum_fold(s)


def mh_checksum(
    const uint8_t[::1] src not None, const uint8_t[::1] dst not None, const uint8_t[::1] mh not None
) -> int:
    """Checksum of a Mobility Header (checksum field zero) under the IPv6 pseudo-header."""
    if src.shape[0] != 16 or dst.shape[0] != 16:
        raise ValueError("pseudo-header addresses must be 16 octets")
    cdef Py_ssize_t n = mh.shape[0]
    cdef uint64_t s
    with nogil:
        s = csum_pseudo_header(&src[0], &dst[0], n, IPPROTO_MH)
        if n:
            s += csum_add(&mh[0], n)
    return csum_fold(s)
