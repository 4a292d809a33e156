# The RFC 5847 Heartbeat Request the MAGs send, written straight into an output buffer, shared by
# the ext modules that encode them. Include after checksum.pxi and octets.pxi, in a module that
# defines PAYLOAD_PROTO_NONE, MH_HEARTBEAT, IPPROTO_MH and OPT_PADN:
#     include "mh_heartbeat.pxi"
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef enum:
    HEARTBEAT_LENGTH = 16  # header, Reserved, Flags 0, Sequence, PadN(4)


cdef inline void write_heartbeat(
    uint8_t* p, uint32_t seq, const uint8_t* src, const uint8_t* dst
) noexcept nogil:
    """The Request with sequence number ``seq`` from IPv6 address ``src`` to ``dst`` (16 octets
    each) at p[0:HEARTBEAT_LENGTH], checksum filled."""
    # Constant words plus the pseudo-header's length and next header.
    cdef uint64_t a = (<uint64_t>seq + (PAYLOAD_PROTO_NONE << 8) + 1 + (MH_HEARTBEAT << 8) + 0x0102
                       + HEARTBEAT_LENGTH + IPPROTO_MH)
    cdef uint64_t b = (halves(load64(src)) + halves(load64(src + 8))
                       + halves(load64(dst)) + halves(load64(dst + 8)))
    memset(p, 0, HEARTBEAT_LENGTH)
    p[0] = PAYLOAD_PROTO_NONE
    p[1] = 1
    p[2] = MH_HEARTBEAT
    put_be16(p + 8, seq >> 16)
    put_be16(p + 10, seq & 0xFFFF)
    p[12] = OPT_PADN
    p[13] = 2
    put_be16(p + 4, finish(a, b))
