# cython: language_level=3
"""Batched datagram I/O: sendmmsg and recvmmsg with the GIL released, for IPv4 and IPv6 sockets,
UDP or raw.

Datagrams travel in the bulk codec's layout: one contiguous uint8 buffer plus an int64 offsets
array, datagram ``i`` being ``buf[offsets[i]:offsets[i + 1]]``. Addresses are the rows of a
(n, 4) or (n, 16) uint8 array in network order, ports a uint16 array in host order. On send, a
source address rides with each datagram as IP_PKTINFO / IPV6_PKTINFO ancillary data, so one
socket speaks for any number of local (or AnyIP) addresses; on receive the same ancillary data
(IP_PKTINFO / IPV6_RECVPKTINFO set on the socket) gives the address each datagram was sent to.

The socket option numbers that the ``socket`` module of Python 3.11 lacks are exported here,
from the C headers this module was built against.

The pure-Python twin is a loop of ``socket.sendto`` / ``socket.recvfrom``, one datagram per call;
lmaload/transport/batch.py (``BatchSocket``) is this module's face.
"""

import os
import time

import numpy as np

from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memmove, memset
from posix.time cimport timespec


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long nfds, int timeout)
    enum:
        POLLIN


IPPROTO_MH: int = _IPPROTO_MH
IP_PKTINFO: int = _IP_PKTINFO
IP_FREEBIND: int = _IP_FREEBIND
IPV6_RECVPKTINFO: int = _IPV6_RECVPKTINFO
IPV6_FREEBIND: int = _IPV6_FREEBIND
IPV6_CHECKSUM: int = _IPV6_CHECKSUM
SO_RCVBUFFORCE: int = _SO_RCVBUFFORCE
SO_SNDBUFFORCE: int = _SO_SNDBUFFORCE
SO_RXQ_OVFL: int = _SO_RXQ_OVFL
SO_TIMESTAMPNS: int = _SO_TIMESTAMPNS

cdef enum:
    # UIO_MAXIOV: the kernel moves at most this many datagrams per sendmmsg/recvmmsg call.
    MAX_BATCH = 1024
    # Ancillary room per received datagram: a pktinfo, an SO_RXQ_OVFL counter and an
    # SO_TIMESTAMPNS timespec need 92 octets; the rest is slack so nothing truncates the pktinfo.
    RECV_CONTROL = 160

MAX_DATAGRAMS_PER_CALL: int = MAX_BATCH


cdef size_t SEND_CONTROL = CMSG_SPACE(sizeof(in6_pktinfo))
cdef uint8_t EMPTY[1]


cdef int _address_width(int family) except -1:
    if family == AF_INET:
        return 4
    if family == AF_INET6:
        return 16
    raise ValueError(f"address family {family} is neither AF_INET nor AF_INET6")


cdef Py_ssize_t _rows(const uint8_t[:, :] a, str name, Py_ssize_t n, Py_ssize_t width) except -1:
    """Check an address array; returns the step between the rows used for datagram i and i+1."""
    if a.shape[1] != width:
        raise ValueError(f"{name} rows are {a.shape[1]} octets, expected {width} (4 or 16 octets)")
    if a.shape[0] != 1 and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} rows for {n} datagrams (give 1 or {n})")
    if a.strides[1] != 1:
        raise ValueError(f"{name} rows must be contiguous")
    return 0 if a.shape[0] == 1 else a.strides[0]


cdef void _fill_name(sockaddr_any* name, int width, const uint8_t* addr, uint16_t port) noexcept nogil:
    memset(name, 0, sizeof(sockaddr_any))
    if width == 4:
        name.v4.sin_family = AF_INET
        name.v4.sin_port = htons(port)
        memcpy(&name.v4.sin_addr, addr, 4)
    else:
        name.v6.sin6_family = AF_INET6
        name.v6.sin6_port = htons(port)
        memcpy(&name.v6.sin6_addr, addr, 16)


cdef size_t _fill_pktinfo(char* control, int width, const uint8_t* addr) noexcept nogil:
    """Write the cmsg that makes ``addr`` a datagram's source; returns its msg_controllen."""
    cdef cmsghdr* cm = <cmsghdr*>control
    cdef in_pktinfo* info4
    cdef in6_pktinfo* info6
    if width == 4:
        cm.cmsg_level = IPPROTO_IP
        cm.cmsg_type = _IP_PKTINFO
        cm.cmsg_len = CMSG_LEN(sizeof(in_pktinfo))
        info4 = <in_pktinfo*>CMSG_DATA(cm)
        memset(info4, 0, sizeof(in_pktinfo))
        # ipi_spec_dst is the source address on send (ipi_addr is only meaningful on receive).
        memcpy(&info4.ipi_spec_dst, addr, 4)
        return CMSG_SPACE(sizeof(in_pktinfo))
    cm.cmsg_level = IPPROTO_IPV6
    cm.cmsg_type = _IPV6_PKTINFO
    cm.cmsg_len = CMSG_LEN(sizeof(in6_pktinfo))
    info6 = <in6_pktinfo*>CMSG_DATA(cm)
    memset(info6, 0, sizeof(in6_pktinfo))
    memcpy(&info6.ipi6_addr, addr, 16)
    return CMSG_SPACE(sizeof(in6_pktinfo))


cdef class BatchSender:
    """Scratch for sendmmsg, kept across calls: message headers, iovecs, socket addresses and
    pktinfo cmsgs for up to 1024 datagrams (UIO_MAXIOV) at a time. One call at a time per object.
    """

    def __cinit__(self):
        self.msgs = <mmsghdr*>calloc(MAX_BATCH, sizeof(mmsghdr))
        self.iov = <iovec*>calloc(MAX_BATCH, sizeof(iovec))
        self.names = <sockaddr_any*>calloc(MAX_BATCH, sizeof(sockaddr_any))
        self.control = <char*>calloc(MAX_BATCH, SEND_CONTROL)
        if not (self.msgs and self.iov and self.names and self.control):
            raise MemoryError()

    def __dealloc__(self):
        free(self.msgs)
        free(self.iov)
        free(self.names)
        free(self.control)

    def send(
        self,
        int fd,
        const uint8_t[::1] buf not None,
        const int64_t[::1] offsets not None,
        const uint8_t[:, :] dst not None,
        const uint16_t[::1] dst_port not None,
        const uint8_t[:, :] src=None,
        Py_ssize_t start=0,
    ) -> int:
        """Send datagrams ``start``, ``start + 1``, ... of (buf, offsets) with sendmmsg; returns
        how many went out in this call.

        ``dst`` (rows of 4 or 16 octets), ``dst_port`` and ``src`` (same width as ``dst``) hold
        one row per datagram, or a single row that applies to all of them. ``src`` None lets the
        kernel choose the source address; an all-zero row does the same for one datagram.

        Fewer than requested are sent when the socket would block (non-blocking socket: call
        again once it is writable) or when a datagram fails after others went out in this call:
        the next call, starting at that datagram, raises its error. OSError is raised only for
        an error on the first datagram of a call. ValueError (nothing sent) for inconsistent
        arrays.
        """
        cdef Py_ssize_t n = offsets.shape[0] - 1
        if n < 0:
            raise ValueError("offsets must hold at least one entry")
        if start < 0 or start > n:
            raise ValueError(f"start {start} outside 0..{n}")
        if start == n:
            return 0
        cdef int width = dst.shape[1]
        if width != 4 and width != 16:
            raise ValueError(f"dst rows are {width} octets, expected 4 (IPv4) or 16 (IPv6)")
        cdef Py_ssize_t dst_step = _rows(dst, "dst", n, width)
        if dst_port.shape[0] != 1 and dst_port.shape[0] != n:
            raise ValueError(f"dst_port has {dst_port.shape[0]} entries for {n} datagrams")
        cdef Py_ssize_t port_step = 0 if dst_port.shape[0] == 1 else 1
        cdef Py_ssize_t src_step = 0
        cdef const uint8_t* src_p = NULL
        if src is not None:
            src_step = _rows(src, "src", n, width)
            src_p = &src[0, 0]
        cdef const int64_t* off = &offsets[0]
        cdef Py_ssize_t size = buf.shape[0]
        cdef const uint8_t* data = &buf[0] if size else EMPTY
        cdef Py_ssize_t i
        cdef bint bad = off[start] < 0 or off[n] > size
        with nogil:
            i = start
            while i < n and not bad:
                bad = off[i + 1] < off[i]
                i += 1
        if bad:
            raise ValueError(f"offsets must be non-decreasing and within the {size}-octet buffer")
        return self.send_from(
            fd, data, off, start, n, &dst[0, 0], dst_step, &dst_port[0], port_step, src_p,
            src_step, width,
        )

    cdef Py_ssize_t send_from(
        self, int fd, const uint8_t* data, const int64_t* off, Py_ssize_t start, Py_ssize_t n,
        const uint8_t* dst, Py_ssize_t dst_step, const uint16_t* port, Py_ssize_t port_step,
        const uint8_t* src, Py_ssize_t src_step, int width,
    ) except -1:
        """``send`` over arrays already checked: datagrams ``start`` .. ``n - 1`` of (data, off),
        ``dst``, ``port`` and ``src`` (NULL: the kernel's choice) rows ``*_step`` apart."""
        if self.busy:
            raise RuntimeError("BatchSender is already sending in another thread")
        cdef Py_ssize_t done = start, k, j
        cdef int r, err = 0
        self.busy = True
        try:
            while done < n:
                k = min(<Py_ssize_t>MAX_BATCH, n - done)
                with nogil:
                    self._fill(data, off, done, k, dst, dst_step, port, port_step, src,
                               src_step, width)
                    j = 0
                    err = 0
                    while j < k:
                        r = sendmmsg(fd, self.msgs + j, <unsigned int>(k - j), 0)
                        if r <= 0:
                            err = errno if r < 0 else EAGAIN
                            break
                        j += r
                done += j
                if err == EINTR:
                    PyErr_CheckSignals()
                elif err:
                    break
        finally:
            self.busy = False
        if err and err != EAGAIN and done == start:
            raise OSError(err, os.strerror(err))
        return done - start

    cdef void _fill(
        self, const uint8_t* data, const int64_t* off, Py_ssize_t first, Py_ssize_t k,
        const uint8_t* dst, Py_ssize_t dst_step, const uint16_t* port, Py_ssize_t port_step,
        const uint8_t* src, Py_ssize_t src_step, int width,
    ) noexcept nogil:
        """Message headers for datagrams first .. first + k - 1 into slots 0 .. k - 1."""
        cdef Py_ssize_t m, d
        cdef socklen_t namelen = sizeof(sockaddr_in) if width == 4 else sizeof(sockaddr_in6)
        cdef bint one_name = dst_step == 0 and port_step == 0
        cdef bint one_src = src_step == 0
        cdef size_t controllen = 0
        cdef msghdr* h
        if one_name:
            _fill_name(&self.names[0], width, dst, port[0])
        if src != NULL and one_src:
            controllen = _fill_pktinfo(self.control, width, src)
        for m in range(k):
            d = first + m
            self.iov[m].iov_base = <void*>(data + off[d])
            self.iov[m].iov_len = <size_t>(off[d + 1] - off[d])
            h = &self.msgs[m].msg_hdr
            h.msg_iov = &self.iov[m]
            h.msg_iovlen = 1
            h.msg_flags = 0
            h.msg_namelen = namelen
            if one_name:
                h.msg_name = &self.names[0]
            else:
                _fill_name(&self.names[m], width, dst + d * dst_step, port[d * port_step])
                h.msg_name = &self.names[m]
            if src == NULL:
                h.msg_control = NULL
                h.msg_controllen = 0
            elif one_src:
                h.msg_control = self.control
                h.msg_controllen = controllen
            else:
                h.msg_control = self.control + m * SEND_CONTROL
                h.msg_controllen = _fill_pktinfo(<char*>h.msg_control, width, src + d * src_step)


cdef class BatchReceiver:
    """Scratch for recvmmsg, kept across calls: room for ``capacity`` datagrams (at most 1024,
    UIO_MAXIOV) of up to ``max_size`` octets each, from a socket of address ``family``.

    ``recv`` returns views into arrays this object owns by default: they stay valid memory but
    the next ``recv`` overwrites them. Decode or copy before calling again, or pass copy=True.
    One call at a time per object.
    """

    def __cinit__(self, Py_ssize_t capacity, Py_ssize_t max_size, int family):
        if not 1 <= capacity <= MAX_BATCH:
            raise ValueError(f"capacity {capacity} outside 1..{MAX_BATCH} (UIO_MAXIOV)")
        if max_size < 1:
            raise ValueError("max_size must be positive")
        self.width = _address_width(family)
        self.capacity = capacity
        self.max_size = max_size
        self.family = family
        self.buf = np.empty(capacity * max_size, dtype=np.uint8)
        self.offsets = np.zeros(capacity + 1, dtype=np.int64)
        self.src = np.zeros((capacity, self.width), dtype=np.uint8)
        self.sport = np.zeros(capacity, dtype=np.uint16)
        self.dst = np.zeros((capacity, self.width), dtype=np.uint8)
        self.arrival = np.zeros(capacity, dtype=np.int64)
        cdef uint8_t[::1] b = self.buf
        cdef int64_t[::1] o = self.offsets
        cdef uint8_t[:, ::1] s = self.src
        cdef uint16_t[::1] p = self.sport
        cdef uint8_t[:, ::1] d = self.dst
        cdef int64_t[::1] a = self.arrival
        self.buf_p = &b[0]
        self.offsets_p = &o[0]
        self.src_p = &s[0, 0]
        self.sport_p = &p[0]
        self.dst_p = &d[0, 0]
        self.arrival_p = &a[0]
        self.msgs = <mmsghdr*>calloc(capacity, sizeof(mmsghdr))
        self.iov = <iovec*>calloc(capacity, sizeof(iovec))
        self.names = <sockaddr_any*>calloc(capacity, sizeof(sockaddr_any))
        self.control = <char*>calloc(capacity, RECV_CONTROL)
        if not (self.msgs and self.iov and self.names and self.control):
            raise MemoryError()
        cdef Py_ssize_t i
        for i in range(capacity):
            self.iov[i].iov_base = self.buf_p + i * max_size
            self.iov[i].iov_len = max_size
            self.msgs[i].msg_hdr.msg_iov = &self.iov[i]
            self.msgs[i].msg_hdr.msg_iovlen = 1
            self.msgs[i].msg_hdr.msg_name = &self.names[i]
            self.msgs[i].msg_hdr.msg_control = self.control + i * RECV_CONTROL
        self.dirty = capacity

    def __dealloc__(self):
        free(self.msgs)
        free(self.iov)
        free(self.names)
        free(self.control)

    def recv(self, int fd, timeout=0.0, bint copy=False, max_datagrams=None) -> tuple:
        """Receive up to ``max_datagrams`` (default: capacity) datagrams with one recvmmsg.

        ``timeout`` bounds the wait for the first datagram, in seconds: 0 does not wait
        (MSG_DONTWAIT), None waits as long as it takes. Returns
        ``(buf, offsets, src, sport, dst, arrival, truncated, drops)``:

        - ``buf`` uint8 and ``offsets`` int64 (count + 1 entries) in the bulk codec's layout;
        - ``src`` (count, 4|16) uint8 and ``sport`` uint16: each datagram's source address and
          port (port 0 on raw sockets);
        - ``dst`` (count, 4|16) uint8: the address each datagram was sent to, from IP_PKTINFO /
          IPV6_PKTINFO; all zero when the socket does not ask for pktinfo;
        - ``arrival`` int64: when the kernel received each datagram, Unix nanoseconds
          (SO_TIMESTAMPNS); 0 when the socket does not ask for timestamps;
        - ``truncated``: datagrams longer than max_size, dropped from the batch and only counted;
        - ``drops``: the socket's SO_RXQ_OVFL counter (datagrams the kernel dropped on it since
          it opened: receive buffer full, bad checksum, ...) as of the latest datagram that
          carried it, or -1 when none did (the option is off, or nothing was dropped yet).

        A raw IPv4 socket's datagrams include their IP header; raw IPv6 ones do not.
        """
        cdef Py_ssize_t want = self.capacity if max_datagrams is None else max_datagrams
        if not 1 <= want <= self.capacity:
            raise ValueError(f"max_datagrams {want} outside 1..{self.capacity}")
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be None or at least 0")
        if self.busy:
            raise RuntimeError("BatchReceiver is already receiving in another thread")
        deadline = None if timeout is None else time.monotonic() + timeout
        cdef int got, err, ready, wait_ms
        cdef (Py_ssize_t, Py_ssize_t, Py_ssize_t, int64_t) counts
        cdef pollfd pfd
        pfd.fd = fd
        pfd.events = POLLIN
        self.busy = True
        try:
            while True:
                got = self.pull(fd, want)
                if got >= 0:
                    break
                if deadline is None:
                    wait_ms = -1
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        got = 0
                        break
                    wait_ms = max(1, int(remaining * 1000.0 + 0.999))
                with nogil:
                    ready = poll(&pfd, 1, wait_ms)
                    err = errno if ready < 0 else 0
                if err == EINTR:
                    PyErr_CheckSignals()
                elif err:
                    raise OSError(err, os.strerror(err))
            with nogil:
                counts = self._compact(got)
        finally:
            self.busy = False
        count, size, truncated, drops = counts
        out = (
            self.buf[:size],
            self.offsets[: count + 1],
            self.src[:count],
            self.sport[:count],
            self.dst[:count],
            self.arrival[:count],
        )
        if copy:
            out = tuple(a.copy() for a in out)
        return (*out, truncated, drops)

    cdef int pull(self, int fd, Py_ssize_t want) except -2:
        """One recvmmsg of up to ``want`` (1 .. capacity) datagrams without waiting: how many it
        took (``_compact`` them next, before another call), -1 when none was queued."""
        cdef int got, err
        while True:
            with nogil:
                got = self._recvmmsg(fd, want)
                err = errno if got < 0 else 0
            if got >= 0:
                return got
            if err == EAGAIN:
                return -1
            if err != EINTR:
                raise OSError(err, os.strerror(err))
            PyErr_CheckSignals()

    cdef int _recvmmsg(self, int fd, Py_ssize_t want) noexcept nogil:
        cdef Py_ssize_t i
        cdef msghdr* h
        cdef int got
        for i in range(self.dirty):
            # The kernel overwrites these three in each header it fills.
            h = &self.msgs[i].msg_hdr
            h.msg_namelen = sizeof(sockaddr_any)
            h.msg_controllen = RECV_CONTROL
            h.msg_flags = 0
        got = recvmmsg(fd, self.msgs, <unsigned int>want, MSG_DONTWAIT, NULL)
        self.dirty = max(got, 0)
        return got

    cdef (Py_ssize_t, Py_ssize_t, Py_ssize_t, int64_t) _compact(self, int got) noexcept nogil:
        """Move the ``got`` datagrams received into fixed slots together, in order, dropping the
        truncated ones, and fill the address columns; returns (count, octets, truncated, drops).
        """
        cdef Py_ssize_t i, count = 0, size = 0, truncated = 0, length
        cdef int64_t drops = -1
        cdef int w = self.width
        cdef msghdr* h
        cdef cmsghdr* cm
        cdef sockaddr_any* name
        cdef uint8_t* dst_row
        cdef timespec* stamp
        for i in range(got):
            h = &self.msgs[i].msg_hdr
            dst_row = self.dst_p + count * w
            memset(dst_row, 0, w)
            self.arrival_p[count] = 0
            cm = CMSG_FIRSTHDR(h)
            while cm != NULL:
                if cm.cmsg_level == IPPROTO_IP and cm.cmsg_type == _IP_PKTINFO and w == 4:
                    memcpy(dst_row, &(<in_pktinfo*>CMSG_DATA(cm)).ipi_addr, 4)
                elif cm.cmsg_level == IPPROTO_IPV6 and cm.cmsg_type == _IPV6_PKTINFO and w == 16:
                    memcpy(dst_row, &(<in6_pktinfo*>CMSG_DATA(cm)).ipi6_addr, 16)
                elif cm.cmsg_level == SOL_SOCKET and cm.cmsg_type == _SO_RXQ_OVFL:
                    drops = (<uint32_t*>CMSG_DATA(cm))[0]
                elif cm.cmsg_level == SOL_SOCKET and cm.cmsg_type == _SCM_TIMESTAMPNS:
                    stamp = <timespec*>CMSG_DATA(cm)
                    self.arrival_p[count] = <int64_t>stamp.tv_sec * 1000000000 + stamp.tv_nsec
                cm = CMSG_NXTHDR(h, cm)
            if h.msg_flags & MSG_TRUNC:
                truncated += 1
                continue
            length = self.msgs[i].msg_len
            # Slots are max_size apart and datagrams at most that long, so size <= i * max_size.
            if size != i * self.max_size:
                memmove(self.buf_p + size, self.buf_p + i * self.max_size, length)
            self.offsets_p[count] = size
            size += length
            name = &self.names[i]
            if w == 4 and name.v4.sin_family == AF_INET:
                memcpy(self.src_p + count * 4, &name.v4.sin_addr, 4)
                self.sport_p[count] = ntohs(name.v4.sin_port)
            elif w == 16 and name.v6.sin6_family == AF_INET6:
                memcpy(self.src_p + count * 16, &name.v6.sin6_addr, 16)
                self.sport_p[count] = ntohs(name.v6.sin6_port)
            else:
                memset(self.src_p + count * w, 0, w)
                self.sport_p[count] = 0
            count += 1
        self.offsets_p[count] = size
        return count, size, truncated, drops


# --- the yardstick: a plain compiled request/response loop -----------------------------------

cdef enum:
    YARDSTICK_BATCH = 64
    YARDSTICK_SLOT = 2048


cdef void _arm_receive(
    mmsghdr* msgs, iovec* iov, uint8_t* slots, sockaddr_any* names
) noexcept nogil:
    """Point each of the batch's headers at its slot (and at its name, unless ``names`` is
    NULL) for the next recvmmsg."""
    cdef int i
    for i in range(YARDSTICK_BATCH):
        iov[i].iov_base = slots + i * YARDSTICK_SLOT
        iov[i].iov_len = YARDSTICK_SLOT
        memset(&msgs[i], 0, sizeof(mmsghdr))
        msgs[i].msg_hdr.msg_iov = &iov[i]
        msgs[i].msg_hdr.msg_iovlen = 1
        if names != NULL:
            msgs[i].msg_hdr.msg_name = &names[i]
            msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_any)


def echo_loop(int fd, int idle_ms):
    """Answer every datagram on the UDP socket ``fd`` with itself, to its source, in batches of
    up to 64 (recvmmsg, then sendmmsg), until none arrived for ``idle_ms``; the datagrams
    answered. The yardstick's server: batched I/O and no work."""
    cdef mmsghdr msgs[YARDSTICK_BATCH]
    cdef iovec iov[YARDSTICK_BATCH]
    cdef sockaddr_any names[YARDSTICK_BATCH]
    cdef uint8_t* slots = <uint8_t*>calloc(YARDSTICK_BATCH, YARDSTICK_SLOT)
    cdef pollfd p
    cdef int i, n, sent
    cdef long answered = 0
    if slots == NULL:
        raise MemoryError()
    p.fd = fd
    p.events = POLLIN
    with nogil:
        while True:
            _arm_receive(msgs, iov, slots, names)
            n = recvmmsg(fd, msgs, YARDSTICK_BATCH, MSG_DONTWAIT, NULL)
            if n <= 0:
                if n < 0 and errno != EAGAIN and errno != EINTR:
                    break
                if poll(&p, 1, idle_ms) == 0:
                    break
                continue
            for i in range(n):
                iov[i].iov_len = msgs[i].msg_len
            sent = 0
            while sent < n:
                i = sendmmsg(fd, &msgs[sent], n - sent, 0)
                if i < 0:
                    if errno == EINTR:
                        continue
                    break
                sent += i
            answered += n
    free(slots)
    return answered


def request_loop(int fd, const uint8_t[:] request, int window, long count, int timeout_ms):
    """Send ``count`` copies of ``request`` on the connected UDP socket ``fd``, keeping
    ``window`` unanswered, each answer releasing the next (recvmmsg and sendmmsg in batches of up
    to 64); stops early when nothing arrived for ``timeout_ms``. Returns (answered, seconds).
    The yardstick's client."""
    cdef mmsghdr msgs[YARDSTICK_BATCH]
    cdef iovec iov[YARDSTICK_BATCH]
    cdef iovec out_iov
    cdef mmsghdr out[YARDSTICK_BATCH]
    cdef uint8_t* slots = <uint8_t*>calloc(YARDSTICK_BATCH, YARDSTICK_SLOT)
    cdef pollfd p
    cdef int i, n, k, burst
    cdef long sent = 0, answered = 0
    cdef double started = time.perf_counter()
    if slots == NULL:
        raise MemoryError()
    if request.shape[0] == 0 or request.shape[0] > YARDSTICK_SLOT:
        free(slots)
        raise ValueError("the request is 1 to 2048 octets")
    if window < 1:
        free(slots)
        raise ValueError("the window is at least 1")
    out_iov.iov_base = <void*>&request[0]
    out_iov.iov_len = request.shape[0]
    for i in range(YARDSTICK_BATCH):
        memset(&out[i], 0, sizeof(mmsghdr))
        out[i].msg_hdr.msg_iov = &out_iov
        out[i].msg_hdr.msg_iovlen = 1
    p.fd = fd
    p.events = POLLIN
    with nogil:
        while answered < count:
            burst = <int>min(<long>min(window - (sent - answered), YARDSTICK_BATCH), count - sent)
            while burst > 0:
                k = sendmmsg(fd, out, burst, 0)
                if k < 0:
                    if errno == EINTR:
                        continue
                    break
                sent += k
                burst -= k
            _arm_receive(msgs, iov, slots, NULL)
            n = recvmmsg(fd, msgs, YARDSTICK_BATCH, MSG_DONTWAIT, NULL)
            if n > 0:
                answered += n
                continue
            if n < 0 and errno != EAGAIN and errno != EINTR:
                break
            if poll(&p, 1, timeout_ms) == 0:
                break
    free(slots)
    return answered, time.perf_counter() - started
