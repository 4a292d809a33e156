# The MAG transport's routes, included by ext/mag_step.pyx: each MAG's IPv4 address and each
# LMA's outer address and port by row, with the allocation helpers they use.
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

    def route(self, src, dst):
        """(src4, dst4, ports, routed) of datagrams from inner ``src[i]`` to ``dst[i]`` ((n, 16)
        uint8); ``routed`` is None when every one has a route, else the bool mask of those that
        do (the others' rows are zero)."""
        cdef const uint8_t[:, ::1] s = np.ascontiguousarray(src, dtype=np.uint8)
        cdef const uint8_t[:, ::1] d = np.ascontiguousarray(dst, dtype=np.uint8)
        cdef Py_ssize_t i, n = s.shape[0], unrouted = 0
        cdef int64_t mag, lma
        src4 = np.zeros((n, 4), dtype=np.uint8)
        dst4 = np.zeros((n, 4), dtype=np.uint8)
        ports = np.zeros(n, dtype=np.uint16)
        routed = np.ones(n, dtype=bool)
        cdef uint8_t* s4 = <uint8_t*>data_of(src4)
        cdef uint8_t* d4 = <uint8_t*>data_of(dst4)
        cdef uint16_t* p = <uint16_t*>data_of(ports)
        cdef uint8_t* ok = <uint8_t*>data_of(routed)
        for i in range(n):
            mag = self.mags.find(&s[i, 0])
            lma = self.lmas.find(&d[i, 0])
            if mag < 0 or lma < 0:
                ok[i] = 0
                unrouted += 1
                continue
            memcpy(s4 + 4 * i, self.mag_addr4 + 4 * mag, 4)
            memcpy(d4 + 4 * i, self.lma_addr4 + 4 * lma, 4)
            p[i] = self.lma_port[lma]
        return src4, dst4, ports, routed if unrouted else None
