# RFC 5844's inner IPv6 header (UDP/5436), compiled: the checks and the writer that
# ext/framing.pyx and the decoders of mh_decode.pxi share. The pure-Python twin is
# lmaload/wire/ipv6.py (split_ipv6_mh, ipv6_header). Include after octets.pxi, in a module that
# defines IPV6_HEADER and IPPROTO_MH (mh_decode.pxi includes it):
#     include "framing.pxi"
from libc.stdint cimport uint8_t, uint16_t
from libc.string cimport memcpy


cdef inline bint inner_header_ok(const uint8_t* h, Py_ssize_t n) noexcept nogil:
    """split_ipv6_mh's checks on the payload h[0:n]: version 6, Payload Length n - 40, Next
    Header 135."""
    return (
        n >= IPV6_HEADER and h[0] >> 4 == 6 and be16(h + 4) == n - IPV6_HEADER
        and h[6] == IPPROTO_MH
    )


cdef inline void put_inner_header(
    uint8_t* p, uint16_t length, const uint8_t* src, const uint8_t* dst, uint8_t hop_limit
) noexcept nogil:
    """ipv6_header(src, dst, length, hop_limit) at p."""
    p[0] = 0x60
    p[1] = p[2] = p[3] = 0
    put_be16(p + 4, length)
    p[6] = IPPROTO_MH
    p[7] = hop_limit
    memcpy(p + 8, src, 16)
    memcpy(p + 24, dst, 16)
