# The C interface of ext/mmsg.pyx (module lmaload._ext.mmsg; the dotted name is how Cython finds
# it for a cimport from another module of ext/): the batch I/O classes, so that compiled callers
# (ext/mag_serve.pxi) send and receive without a Python call.
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t
from posix.time cimport timespec


cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    int sendmmsg(int fd, mmsghdr* msgvec, unsigned int vlen, int flags)
    int recvmmsg(int fd, mmsghdr* msgvec, unsigned int vlen, int flags, timespec* timeout)
    cmsghdr* CMSG_FIRSTHDR(msghdr* msg)
    cmsghdr* CMSG_NXTHDR(msghdr* msg, cmsghdr* cmsg)
    unsigned char* CMSG_DATA(cmsghdr* cmsg)
    size_t CMSG_SPACE(size_t length)
    size_t CMSG_LEN(size_t length)
    enum:
        AF_INET
        AF_INET6
        SOL_SOCKET
        MSG_DONTWAIT
        MSG_TRUNC
        _SO_RCVBUFFORCE "SO_RCVBUFFORCE"
        _SO_SNDBUFFORCE "SO_SNDBUFFORCE"
        _SO_RXQ_OVFL "SO_RXQ_OVFL"
        _SO_TIMESTAMPNS "SO_TIMESTAMPNS"
        _SCM_TIMESTAMPNS "SCM_TIMESTAMPNS"


cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct in6_addr:
        uint8_t s6_addr[16]
    struct sockaddr_in:
        unsigned short sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        unsigned short sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id
    struct in_pktinfo:
        int ipi_ifindex
        in_addr ipi_spec_dst
        in_addr ipi_addr
    struct in6_pktinfo:
        in6_addr ipi6_addr
        unsigned int ipi6_ifindex
    enum:
        IPPROTO_IP
        IPPROTO_IPV6
        _IPPROTO_MH "IPPROTO_MH"
        _IP_PKTINFO "IP_PKTINFO"
        _IP_FREEBIND "IP_FREEBIND"
        _IPV6_PKTINFO "IPV6_PKTINFO"
        _IPV6_RECVPKTINFO "IPV6_RECVPKTINFO"
        _IPV6_FREEBIND "IPV6_FREEBIND"
        _IPV6_CHECKSUM "IPV6_CHECKSUM"
    uint16_t htons(uint16_t)
    uint16_t ntohs(uint16_t)


cdef union sockaddr_any:
    sockaddr_in v4
    sockaddr_in6 v6


cdef class BatchSender:
    cdef mmsghdr* msgs
    cdef iovec* iov
    cdef sockaddr_any* names
    cdef char* control
    cdef bint busy

    cdef Py_ssize_t send_from(
        self, int fd, const uint8_t* data, const int64_t* off, Py_ssize_t start, Py_ssize_t n,
        const uint8_t* dst, Py_ssize_t dst_step, const uint16_t* port, Py_ssize_t port_step,
        const uint8_t* src, Py_ssize_t src_step, int width,
    ) except -1
    cdef void _fill(
        self, const uint8_t* data, const int64_t* off, Py_ssize_t first, Py_ssize_t k,
        const uint8_t* dst, Py_ssize_t dst_step, const uint16_t* port, Py_ssize_t port_step,
        const uint8_t* src, Py_ssize_t src_step, int width,
    ) noexcept nogil


cdef class BatchReceiver:
    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t max_size
    cdef readonly int family
    cdef int width
    cdef object buf, offsets, src, sport, dst, arrival
    cdef uint8_t* buf_p
    cdef int64_t* offsets_p
    cdef uint8_t* src_p
    cdef uint16_t* sport_p
    cdef uint8_t* dst_p
    cdef int64_t* arrival_p
    cdef mmsghdr* msgs
    cdef iovec* iov
    cdef sockaddr_any* names
    cdef char* control
    cdef bint busy
    cdef Py_ssize_t dirty  # headers the last recvmmsg filled, to set up again

    cdef int pull(self, int fd, Py_ssize_t want) except -2
    cdef int _recvmmsg(self, int fd, Py_ssize_t want) noexcept nogil
    cdef (Py_ssize_t, Py_ssize_t, Py_ssize_t, int64_t) _compact(self, int got) noexcept nogil
