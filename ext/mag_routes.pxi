# The MAG transport's routes, included by ext/mag_step.pyx: each MAG's IPv4 address and each
# LMA's outer address and port by row, with the allocation helpers they use; the framing of what
# the MAGs send and the receive clock of what they receive.
cdef void* calloc_or_raise(size_t n, size_t size) except NULL:
    cdef void* p = malloc(n * size)
    if not p:
        raise MemoryError()
    memset(p, 0, n * size)
    return p


cdef void* grow(void* p, size_t size) except NULL:
    cdef void* q = realloc(p, size)
    if not q:
        raise MemoryError()
    return q


# ---------------------------------------------------------------------------------------------
# The UDP/5436 transport's addresses

cdef class Routes:
    """Where each datagram the MAGs send goes over UDP/5436: from the IPv4 address of the MAG
    whose Proxy-CoA is its inner source, to the outer address and port of the LMA its inner
    destination names."""

    cdef AddressTable mags, lmas
    cdef object refs
    cdef const uint8_t* mag_addr4
    cdef const uint8_t* lma_addr4
    cdef const uint16_t* lma_port

    def __cinit__(self, mag_addr6, mag_addr4, lma_inner, lma_addr4, lma_port):
        mag4 = np.ascontiguousarray(mag_addr4, dtype=np.uint8).reshape(-1, 4)
        lma4 = np.ascontiguousarray(lma_addr4, dtype=np.uint8).reshape(-1, 4)
        ports = np.ascontiguousarray(lma_port, dtype=np.uint16).reshape(-1)
        self.refs = (mag4, lma4, ports)
        self.mags = AddressTable(mag_addr6)
        self.lmas = AddressTable(lma_inner)
        self.mag_addr4 = <const uint8_t*>data_of(mag4)
        self.lma_addr4 = <const uint8_t*>data_of(lma4)
        self.lma_port = <const uint16_t*>data_of(ports)

    cdef bint route(
        self, const uint8_t* mh, Py_ssize_t length, const uint8_t* src, const uint8_t* dst,
        uint8_t* out, uint8_t* src4, uint8_t* dst4, uint16_t* port,
    ) noexcept nogil:
        """Frame ``mh[0:length]`` from inner ``src`` to ``dst`` at ``out`` with its IPv4 source,
        destination and port; False (nothing written) when it has no route."""
        cdef int64_t mag = self.mags.find(src), lma = self.lmas.find(dst)
        if mag < 0 or lma < 0:
            return False
        put_inner_header(out, <uint16_t>length, src, dst, HOP_LIMIT)
        if length:
            memcpy(out + IPV6_HEADER, mh, length)
        memcpy(src4, self.mag_addr4 + 4 * mag, 4)
        memcpy(dst4, self.lma_addr4 + 4 * lma, 4)
        port[0] = self.lma_port[lma]
        return True

    def frame(self, buf, starts, ends, src, dst):
        """The datagrams ``buf[starts[i]:ends[i]]`` (bounds within buf) from inner ``src[i]`` to
        ``dst[i]`` ((n, 16) uint8) that have a route, in order, each behind its inner header
        (``framing.frame``), with its IPv4 source and destination and its port: (framed, offsets,
        src4, dst4, ports, unrouted), ``unrouted`` counting those left out."""
        cdef const uint8_t[::1] b = buf
        cdef const int64_t[::1] lo = np.ascontiguousarray(starts, dtype=np.int64)
        cdef const int64_t[::1] hi = np.ascontiguousarray(ends, dtype=np.int64)
        cdef const uint8_t[:, ::1] s = np.ascontiguousarray(src, dtype=np.uint8)
        cdef const uint8_t[:, ::1] d = np.ascontiguousarray(dst, dtype=np.uint8)
        cdef Py_ssize_t i, n = lo.shape[0], kept = 0, size = 0, length
        if hi.shape[0] != n or s.shape[0] != n or d.shape[0] != n:
            raise ValueError("starts, ends, src and dst differ in length")
        for i in range(n):
            if not 0 <= lo[i] <= hi[i] <= b.shape[0] or hi[i] - lo[i] > 0xFFFF:
                raise ValueError(f"datagram {i} is not within the buffer")
            size += hi[i] - lo[i] + IPV6_HEADER
        framed = np.empty(size, dtype=np.uint8)
        offsets = np.empty(n + 1, dtype=np.int64)
        src4 = np.empty((n, 4), dtype=np.uint8)
        dst4 = np.empty((n, 4), dtype=np.uint8)
        ports = np.empty(n, dtype=np.uint16)
        cdef uint8_t* out = <uint8_t*>data_of(framed)
        cdef int64_t* of = <int64_t*>data_of(offsets)
        cdef uint8_t* s4 = <uint8_t*>data_of(src4)
        cdef uint8_t* d4 = <uint8_t*>data_of(dst4)
        cdef uint16_t* p = <uint16_t*>data_of(ports)
        of[0] = 0
        for i in range(n):
            length = hi[i] - lo[i]
            if self.route(
                &b[lo[i]], length, &s[i, 0], &d[i, 0], out + of[kept], s4 + 4 * kept,
                d4 + 4 * kept, p + kept,
            ):
                of[kept + 1] = of[kept] + IPV6_HEADER + length
                kept += 1
        if kept < n:
            framed, offsets = framed[: of[kept]], offsets[: kept + 1]
            src4, dst4, ports = src4[:kept], dst4[:kept], ports[:kept]
        return framed, offsets, src4, dst4, ports, n - kept


cdef class ReceiveClock:
    """When the kernel received a batch, for the engine: its last datagram's arrival (not
    after ``now``), and the delay from its first to ``now`` recorded (µs) in ``histogram``."""

    cdef hist_t delay
    cdef object histogram

    def __cinit__(self, histogram):
        open_histogram(&self.delay, histogram)
        self.histogram = histogram

    cdef Py_ssize_t run_end(
        self, const double* when, Py_ssize_t start, Py_ssize_t n, double spread
    ) noexcept:
        """The end of the run from ``start``: its known arrivals span at most ``spread``."""
        cdef double first = NAN
        cdef Py_ssize_t end = start
        while end < n:
            if when[end] == when[end]:  # not NaN
                if first != first:
                    first = when[end]
                elif when[end] - first > spread:
                    break
            end += 1
        return end

    cdef double time_of(
        self, const double* when, Py_ssize_t start, Py_ssize_t end, double now
    ) noexcept:
        """When the kernel received ``when[start:end]``: its last known arrival, not after
        ``now`` (``now`` when none is known); the delay from its first recorded, not folded."""
        cdef double earliest = INFINITY, last = -INFINITY
        cdef Py_ssize_t i
        for i in range(start, end):
            if when[i] == when[i]:
                earliest = min(earliest, when[i])
                last = max(last, when[i])
        if earliest > last:
            return now
        record(&self.delay, max(<int64_t>rint((now - earliest) * 1e6), 0))
        return min(last, now)

    def received_at(self, arrival, double now) -> float:
        """``arrival``: Unix seconds per datagram, NaN where unknown (None: all unknown); ``now``
        when no time is known."""
        if arrival is None or not len(arrival):
            return now
        cdef const double[:] a = arrival
        cdef double at = self.time_of(&a[0], 0, a.shape[0], now)
        fold_range(&self.delay, self.histogram)
        return at

    def runs(self, arrival, Py_ssize_t n, double spread) -> list:
        """Where to cut a batch of ``n`` so that each run's known arrivals span at most
        ``spread`` seconds: the end index of each run, in order ([n] when it is one run)."""
        if arrival is None or not n:
            return [n]
        cdef const double[:] a = arrival
        cdef Py_ssize_t start = 0
        ends = []
        while start < n:
            start = self.run_end(&a[0], start, n, spread)
            ends.append(start)
        return ends
