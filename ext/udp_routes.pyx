# cython: language_level=3, boundscheck=False, wraparound=False
"""The LMA's UDP/5436 routes, compiled: inner IPv6 address → outer address and port, learnt from
every batch received (the later datagram winning) or configured, with the derived default of
``udp5436.default_outer`` (an IPv4-mapped inner address to its IPv4 address on IPv4 sockets, any
other to itself on IPv6 sockets, at port 5436); and the one pass that routes a wakeup's
datagrams and puts the inner header on each (``framing.frame``), laying them out for
``BatchSocket.send``. ``tests/test_udp_routes.py`` checks it against the reference: a dict of
routes, ``udp5436.default_outer`` and ``framing.frame``.
"""

import struct

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy, memset

from lmaload.wire import codepoints as cp
from lmaload.wire.ipv6 import DEFAULT_HOP_LIMIT, IPV6_HEADER_LENGTH

cnp.import_array()

cdef enum:
    ADDRESS = 16
    MAX_PAYLOAD = 0xFFFF  # the IPv6 Payload Length field
    PMIP6_CNTL_PORT = 5436

cdef Py_ssize_t IPV6_HEADER = IPV6_HEADER_LENGTH
cdef uint8_t IPPROTO_MH = cp.IPPROTO_MH
cdef uint8_t OPT_PAD1 = cp.OPT_PAD1
cdef uint8_t OPT_PADN = cp.OPT_PADN
cdef uint8_t HOP_LIMIT = DEFAULT_HOP_LIMIT

include "checksum.pxi"
include "octets.pxi"
include "framing.pxi"


cdef struct route_t:
    uint8_t inner[ADDRESS]
    uint8_t outer[ADDRESS]
    uint16_t port
    bint used


cdef inline bint ipv4_mapped(const uint8_t* a) noexcept nogil:
    """``::ffff:a.b.c.d``: ten zero octets, then two 0xff."""
    cdef int i
    for i in range(10):
        if a[i]:
            return False
    return a[10] == 0xFF and a[11] == 0xFF


cdef object grown(object a, Py_ssize_t rows):
    """``a`` with room for at least ``rows`` rows, its contents kept."""
    if len(a) >= rows:
        return a
    shape = (max(rows, 2 * len(a)),) + a.shape[1:]
    b = np.empty(shape, dtype=a.dtype)
    b[: len(a)] = a
    return b


cdef class UdpRoutes:
    """Routes for a socket of outer addresses ``width`` octets wide (4: IPv4, 16: IPv6)."""

    cdef route_t* table
    cdef uint64_t mask
    cdef Py_ssize_t used
    cdef readonly int width
    # The last frame's output, grown as needed: valid until the next call.
    cdef object out_buf, out_offsets, out_hosts, out_ports
    cdef Py_ssize_t k, at  # datagrams and octets placed by the frame under way

    def __cinit__(self, int width):
        if width not in (4, 16):
            raise ValueError(f"outer addresses are 4 or 16 octets, not {width}")
        self.width = width
        self.mask = 63
        self.table = <route_t*>calloc(self.mask + 1, sizeof(route_t))
        if not self.table:
            raise MemoryError()
        self.out_buf = np.empty(4096, dtype=np.uint8)
        self.out_offsets = np.empty(65, dtype=np.int64)
        self.out_hosts = np.empty((64, width), dtype=np.uint8)
        self.out_ports = np.empty(64, dtype=np.uint16)

    def __dealloc__(self):
        free(self.table)

    cdef route_t* slot(self, const uint8_t* inner) noexcept nogil:
        """The entry of ``inner``, or the empty one where it would go."""
        cdef uint64_t at = address_hash(inner) & self.mask
        while self.table[at].used and memcmp(self.table[at].inner, inner, ADDRESS):
            at = (at + 1) & self.mask
        return &self.table[at]

    cdef int grow(self) except -1:
        cdef route_t* old = self.table
        cdef uint64_t size = self.mask + 1, i
        cdef route_t* new = <route_t*>calloc(2 * size, sizeof(route_t))
        if not new:
            raise MemoryError()
        self.table = new
        self.mask = 2 * size - 1
        for i in range(size):
            if old[i].used:
                memcpy(self.slot(old[i].inner), &old[i], sizeof(route_t))
        free(old)
        return 0

    cdef int put(self, const uint8_t* inner, const uint8_t* outer, uint16_t port) except -1:
        cdef route_t* r = self.slot(inner)
        if not r.used:
            if 2 * (self.used + 1) > <Py_ssize_t>(self.mask + 1):
                self.grow()
                r = self.slot(inner)
            self.used += 1
            r.used = True
            memcpy(r.inner, inner, ADDRESS)
        memcpy(r.outer, outer, self.width)
        r.port = port
        return 0

    cdef bint find(self, const uint8_t* inner, const uint8_t** outer, uint16_t* port) noexcept nogil:
        """The route of ``inner``: learnt or configured, else the default; False: none."""
        cdef route_t* r = self.slot(inner)
        if r.used:
            outer[0] = r.outer
            port[0] = r.port
            return True
        port[0] = PMIP6_CNTL_PORT
        if self.width == 4:
            outer[0] = inner + 12
            return ipv4_mapped(inner)
        outer[0] = inner
        return not ipv4_mapped(inner)

    def add(self, bytes inner, bytes outer, int port):
        """Route ``inner`` (16 octets) to ``outer`` (``width`` octets) at ``port``."""
        if len(inner) != ADDRESS or len(outer) != self.width:
            raise ValueError("an inner address is 16 octets, an outer one the socket's width")
        self.put(inner, outer, port)

    def get(self, bytes inner):
        """(outer, port) learnt or configured for ``inner`` (16 octets), or None."""
        if len(inner) != ADDRESS:
            raise ValueError("an inner address is 16 octets")
        cdef route_t* r = self.slot(inner)
        return (r.outer[: self.width], r.port) if r.used else None

    def learn(self, inner, outer, port, ok=None):
        """Route each row of ``inner`` ((n, 16) uint8) to ``outer[i]`` ((n, width) uint8) at
        ``port[i]``, in order (the later row winning), skipping the rows where ``ok`` is 0."""
        cdef const uint8_t[:, ::1] s = np.ascontiguousarray(inner, dtype=np.uint8)
        cdef const uint8_t[:, ::1] o = np.ascontiguousarray(outer, dtype=np.uint8)
        cdef const uint16_t[::1] p = np.ascontiguousarray(port, dtype=np.uint16)
        cdef const uint8_t[::1] good
        cdef Py_ssize_t i, n = s.shape[0]
        if o.shape[0] != n or p.shape[0] != n or (n and (s.shape[1] != ADDRESS or o.shape[1] != self.width)):
            raise ValueError("inner, outer and port differ in length or width")
        if ok is not None:
            good = np.ascontiguousarray(ok, dtype=np.uint8)
            if good.shape[0] != n:
                raise ValueError("ok differs in length")
        for i in range(n):
            if ok is None or good[i]:
                self.put(&s[i, 0], &o[i, 0], p[i])

    cdef Py_ssize_t reserve(self, Py_ssize_t k, Py_ssize_t size) except -1:
        self.out_offsets = grown(self.out_offsets, k + 2)
        self.out_hosts = grown(self.out_hosts, k + 1)
        self.out_ports = grown(self.out_ports, k + 1)
        self.out_buf = grown(self.out_buf, size)
        return 0

    cdef int place(
        self, const uint8_t* mh, Py_ssize_t length, const uint8_t* s, const uint8_t* d,
        const uint8_t* lmaa, bint from_lmaa,
    ) except -1:
        """Route and frame one datagram after those placed: 1 placed, 0 unrouted, 2 left out
        (not of the socket asked for). Room was reserved."""
        cdef const uint8_t* outer
        cdef uint16_t port
        if lmaa != NULL and (memcmp(s, lmaa, ADDRESS) == 0) != from_lmaa:
            return 2
        if not self.find(d, &outer, &port):
            return 0
        if length > MAX_PAYLOAD:
            raise struct.error("a Mobility Header over 65535 octets does not fit an IPv6 header")
        cdef uint8_t* p = <uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>self.out_buf) + self.at
        put_inner_header(p, <uint16_t>length, s, d, HOP_LIMIT)
        if length:
            memcpy(p + IPV6_HEADER, mh, length)
        self.at += IPV6_HEADER + length
        memcpy(<uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>self.out_hosts) + self.k * self.width, outer, self.width)
        (<uint16_t*>cnp.PyArray_DATA(<cnp.ndarray>self.out_ports))[self.k] = port
        self.k += 1
        (<int64_t*>cnp.PyArray_DATA(<cnp.ndarray>self.out_offsets))[self.k] = self.at
        return 1

    def frame(self, list parts, bytes lmaa=None, bint from_lmaa=False):
        """The datagrams of ``parts`` (a ``Datagrams``' parts: ``Datagram`` tuples and
        ``Columns``) that have a route, in order, each behind its inner header: (buf, offsets,
        hosts, ports, unrouted), ``unrouted`` counting those left out. With ``lmaa`` (16 octets),
        only those whose source is the LMAA (``from_lmaa``) or only the others. The arrays are
        this table's, valid until the next call."""
        cdef Py_ssize_t unrouted = 0, i, n, size, length
        cdef const uint8_t* data
        cdef const int64_t* lo
        cdef const int64_t* hi
        cdef const uint8_t* src
        cdef const uint8_t* dst
        cdef const uint8_t* lm = NULL
        cdef bytes payload, s, d
        if lmaa is not None:
            if len(lmaa) != ADDRESS:
                raise ValueError("lmaa is 16 octets")
            lm = lmaa
        self.k = self.at = 0
        (<int64_t*>cnp.PyArray_DATA(<cnp.ndarray>self.out_offsets))[0] = 0
        for part in parts:
            if isinstance(part, tuple):  # a Datagram
                payload, s, d = part[0], part[1].packed, part[2].packed
                self.reserve(self.k + 1, self.at + len(payload) + IPV6_HEADER)
                unrouted += self.place(payload, len(payload), s, d, lm, from_lmaa) == 0
                continue
            # Raw pointers rather than typed memoryviews: this runs on every wakeup.
            buf_a = np.ascontiguousarray(part.buf, dtype=np.uint8)
            lo_a = np.ascontiguousarray(part.starts, dtype=np.int64)
            hi_a = np.ascontiguousarray(part.ends, dtype=np.int64)
            src_a = np.ascontiguousarray(part.src, dtype=np.uint8)
            dst_a = np.ascontiguousarray(part.dst, dtype=np.uint8)
            n = len(lo_a)
            if not n:
                continue
            if len(hi_a) != n or src_a.size != ADDRESS * n or dst_a.size != ADDRESS * n:
                raise ValueError("starts, ends, src and dst differ in length or width")
            data = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>buf_a)
            lo = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>lo_a)
            hi = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>hi_a)
            src = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>src_a)
            dst = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>dst_a)
            length = buf_a.size
            size = 0
            for i in range(n):
                if not 0 <= lo[i] <= hi[i] <= length:
                    raise ValueError(f"datagram {i} is not within the buffer")
                size += hi[i] - lo[i] + IPV6_HEADER
            self.reserve(self.k + n, self.at + size)
            for i in range(n):
                unrouted += self.place(
                    data + lo[i], hi[i] - lo[i], src + ADDRESS * i, dst + ADDRESS * i, lm, from_lmaa
                ) == 0
        return (
            self.out_buf[: self.at], self.out_offsets[: self.k + 1], self.out_hosts[: self.k],
            self.out_ports[: self.k], unrouted,
        )
