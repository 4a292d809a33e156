# cython: language_level=3
"""RFC 5844 framing for the UDP/5436 transport, compiled: the inner IPv6 header (next header 135)
taken off (``unframe``) and put on (``frame``, ``frame_between``) a batch of Mobility Headers.
Every transport and ``lmaload sync`` frame through here; the pure-Python twin is
lmaload/wire/ipv6.py (``split_ipv6_mh``, ``ipv6_header``), the checks and the header writer are
ext/framing.pxi (shared with the decoders of ext/mh_decode.pxi).
"""

import struct

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t, uint16_t
from libc.string cimport memcpy

from lmaload.wire import codepoints as cp
from lmaload.wire.ipv6 import DEFAULT_HOP_LIMIT, IPV6_HEADER_LENGTH

cnp.import_array()

cdef enum:
    MAX_PAYLOAD = 0xFFFF  # the IPv6 Payload Length field

cdef Py_ssize_t IPV6_HEADER = IPV6_HEADER_LENGTH
cdef uint8_t IPPROTO_MH = cp.IPPROTO_MH
cdef uint8_t OPT_PAD1 = cp.OPT_PAD1
cdef uint8_t OPT_PADN = cp.OPT_PADN
cdef uint8_t HOP_LIMIT = DEFAULT_HOP_LIMIT

include "checksum.pxi"
include "octets.pxi"
include "framing.pxi"


cdef object octets(buf):
    """buf's octets as a 1-D uint8 array (buf.tobytes()'s octets, no copy when contiguous)."""
    return np.ascontiguousarray(buf).reshape(-1).view(np.uint8)


cdef object address_rows(addresses, str name, Py_ssize_t n):
    """``addresses`` as n C-contiguous rows of 16 octets."""
    arr = np.ascontiguousarray(addresses, dtype=np.uint8)
    if arr.shape != (n, 16):
        raise ValueError(f"{name} has shape {arr.shape}, expected {(n, 16)}")
    return arr


def unframe(buf, offsets):
    """split_ipv6_mh over the payloads ``buf[offsets[i]:offsets[i + 1]]``: the MH bounds in buf,
    the inner source and destination ((n, 16) uint8) and ok (1 where split_ipv6_mh accepts the
    payload; elsewhere the bounds are empty and the addresses zero)."""
    data = octets(buf)
    offs = np.ascontiguousarray(offsets, dtype=np.int64).reshape(-1)
    cdef Py_ssize_t n = max(len(offs) - 1, 0)
    cdef cnp.ndarray starts = np.zeros(n, dtype=np.int64)
    cdef cnp.ndarray ends = np.zeros(n, dtype=np.int64)
    cdef cnp.ndarray src = np.zeros((n, 16), dtype=np.uint8)
    cdef cnp.ndarray dst = np.zeros((n, 16), dtype=np.uint8)
    cdef cnp.ndarray ok = np.zeros(n, dtype=np.uint8)
    cdef const uint8_t* d = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>data)
    cdef Py_ssize_t size = len(data)
    cdef const int64_t* of = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>offs)
    cdef int64_t* s = <int64_t*>cnp.PyArray_DATA(starts)
    cdef int64_t* e = <int64_t*>cnp.PyArray_DATA(ends)
    cdef uint8_t* sa = <uint8_t*>cnp.PyArray_DATA(src)
    cdef uint8_t* da = <uint8_t*>cnp.PyArray_DATA(dst)
    cdef uint8_t* okp = <uint8_t*>cnp.PyArray_DATA(ok)
    cdef Py_ssize_t i, a, b
    cdef const uint8_t* h
    with nogil:
        for i in range(n):
            a = clamp(of[i], size)
            b = clamp(of[i + 1], size)
            s[i] = e[i] = a
            h = d + a
            if not inner_header_ok(h, b - a):
                continue
            s[i] = a + IPV6_HEADER
            e[i] = b
            memcpy(sa + 16 * i, h + 8, 16)
            memcpy(da + 16 * i, h + 24, 16)
            okp[i] = 1
    return starts, ends, src, dst, ok


cdef object frame_rows(data, starts, ends, const uint8_t* sa, const uint8_t* da, Py_ssize_t step):
    """Each MH ``data[starts[i]:ends[i]]`` (int64 arrays, sliced as Python slices) behind the
    inner header from ``sa + step * i`` to ``da + step * i``: the octets and the offsets of
    each packet. Bounds and offsets in one pass, the octets in a second: no array but the two
    returned is made."""
    cdef const int64_t* s0 = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>starts)
    cdef const int64_t* e0 = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>ends)
    cdef Py_ssize_t n = len(starts), size = len(data)
    cdef cnp.ndarray offsets = np.empty(n + 1, dtype=np.int64)
    cdef int64_t* of = <int64_t*>cnp.PyArray_DATA(offsets)
    cdef Py_ssize_t i, lo, length, longest = 0
    of[0] = 0
    with nogil:
        for i in range(n):
            lo = clamp(s0[i], size)
            length = clamp(e0[i], size) - lo
            if length < 0:
                length = 0
            if length > longest:
                longest = length
            of[i + 1] = of[i] + length + IPV6_HEADER
    if longest > MAX_PAYLOAD:
        raise struct.error("a Mobility Header over 65535 octets does not fit an IPv6 header")
    cdef cnp.ndarray out = np.empty(of[n], dtype=np.uint8)
    cdef const uint8_t* d = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>data)
    cdef uint8_t* base = <uint8_t*>cnp.PyArray_DATA(out)
    with nogil:
        for i in range(n):
            length = of[i + 1] - of[i] - IPV6_HEADER
            put_inner_header(base + of[i], <uint16_t>length, sa + step * i, da + step * i, HOP_LIMIT)
            memcpy(base + of[i] + IPV6_HEADER, d + clamp(s0[i], size), length)
    return out, offsets


def frame(buf, starts, ends, src, dst):
    """Each MH ``buf[starts[i]:ends[i]]`` (sliced as Python slices) behind ipv6_header(src[i],
    dst[i], its length): the octets and the offsets of each packet."""
    data = octets(buf)
    starts_a = np.ascontiguousarray(starts, dtype=np.int64).reshape(-1)
    cdef Py_ssize_t n = len(starts_a)
    ends_a = np.ascontiguousarray(ends, dtype=np.int64)
    if ends_a.shape != (n,):
        raise ValueError(f"ends has shape {ends_a.shape}, expected {(n,)}")
    src_a = address_rows(src, "src", n)
    dst_a = address_rows(dst, "dst", n)
    return frame_rows(
        data, starts_a, ends_a, <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>src_a),
        <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>dst_a), 16,
    )


def frame_between(buf, offsets, src, dst):
    """Every MH ``buf[offsets[i]:offsets[i + 1]]`` (offsets within buf, non-decreasing) behind
    one inner header ``src`` → ``dst`` (IPv6Address): the octets and the offsets of each
    packet."""
    data = octets(buf)
    offs = np.ascontiguousarray(offsets, dtype=np.int64).reshape(-1)
    cdef bytes s = src.packed, d = dst.packed
    return frame_rows(data, offs[:-1], offs[1:], s, d, 0)
