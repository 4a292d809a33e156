# The one State Synchronization writer, shared by ext/sync.pyx (the generator's SS-REPs, twin
# lmaload.bulk.py_encode_state_sync) and ext/bce_sync.pyx (the LMA's, from its binding cache, twin
# the engine's session_options + pack_sessions + encode_mh). A session is an ss_session_t and
# its prefix keys; ``layout`` is pack_sessions' greedy split, ``write_messages`` writes the octets
# and checksums, every option at the alignment of spec-digest §1.2. Identifiers step by the one
# rule of lmaload.bulk.sync_identifier. Include after checksum.pxi and octets.pxi, in a module
# that imports lmaload.wire.codepoints as cp:
#     include "state_sync.pxi"
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

cdef uint8_t IPPROTO_MH = cp.IPPROTO_MH
cdef uint8_t PAYLOAD_PROTO_NONE = cp.PAYLOAD_PROTO_NONE
cdef uint8_t OPT_MN_IDENTIFIER = cp.OPT_MN_IDENTIFIER
cdef uint8_t OPT_HOME_NETWORK_PREFIX = cp.OPT_HOME_NETWORK_PREFIX
cdef uint8_t OPT_ACCESS_TECHNOLOGY_TYPE = cp.OPT_ACCESS_TECHNOLOGY_TYPE
cdef uint8_t OPT_MN_LINK_LAYER_ID = cp.OPT_MN_LINK_LAYER_ID
cdef uint8_t OPT_LINK_LOCAL_ADDRESS = cp.OPT_LINK_LOCAL_ADDRESS
cdef uint8_t OPT_TIMESTAMP = cp.OPT_TIMESTAMP
cdef uint8_t OPT_RESTART_COUNTER = cp.OPT_RESTART_COUNTER
cdef uint8_t MNID_SUBTYPE_NAI = cp.MNID_SUBTYPE_NAI
cdef uint8_t SS_REPLY = cp.SS_REPLY
cdef uint8_t SS_FLAG_A = cp.SS_FLAG_A
cdef uint8_t SS_FLAG_M = cp.SS_FLAG_M
cdef Py_ssize_t MH_MAX_LENGTH = cp.MH_MAX_LENGTH

cdef enum:
    OPTIONS_START = 10  # MH header (6) and the SS fixed part: type, flags, Identifier
    LEAD_END = 16  # after a Restart Counter at OPTIONS_START (already at 4n+2)
    PBCI_LENGTH = 28
    MAX_OPTION_LENGTH = 255


cdef struct ss_session_t:
    uint16_t flags
    uint16_t seq
    uint16_t lifetime  # PBCI lifetime, 4-second units
    uint32_t tunnel
    const uint8_t* proxy_coa
    const uint8_t* mn_id  # NULL: the NAI mn{mn_number}@{realm}
    uint32_t mn_number
    Py_ssize_t mn_len  # octets of the MN identifier
    Py_ssize_t key0  # index of its first prefix key (16-octet prefix, then its length)
    Py_ssize_t n_keys
    uint8_t att
    bint has_ts
    uint64_t ts
    const uint8_t* ll_id  # NULL: no MN LL-ID option
    Py_ssize_t ll_len
    const uint8_t* lla  # NULL: no Link-local Address option


cdef struct ss_messages_t:
    uint8_t mh_type
    uint8_t pbci_type
    bint ts_before_att  # the generator's order (HNP, Timestamp, ATT); else ATT, Timestamp
    const uint8_t* realm
    Py_ssize_t realm_len
    bint lead  # a Restart Counter option first
    uint32_t restart_counter
    uint16_t identifier
    uint16_t identifier_step  # 0: every message carries ``identifier``
    uint8_t ack_flag
    bint more  # M on every message but the last
    const uint8_t* src  # NULL: checksum left 0, as encode_mh does
    const uint8_t* dst


cdef inline int decimal_digits(uint32_t v) noexcept nogil:
    cdef int n = 1
    while v >= 10:
        v //= 10
        n += 1
    return n


cdef inline Py_ssize_t put_decimal(uint8_t* q, uint32_t v) noexcept nogil:
    cdef int n = decimal_digits(v), k
    for k in range(n - 1, -1, -1):
        q[k] = <uint8_t>(48 + v % 10)
        v //= 10
    return n


cdef inline uint16_t stepped(uint16_t identifier, Py_ssize_t k, uint16_t step) noexcept nogil:
    """lmaload.bulk.sync_identifier: ``identifier + k * step`` counted through 1..65535, never
    0 (R14); ``identifier`` when ``step`` is 0."""
    if step == 0:
        return identifier
    return <uint16_t>((<int64_t>identifier + 0xFFFE + <int64_t>k * step) % 0xFFFF + 1)


cdef inline Py_ssize_t timestamp_end(Py_ssize_t off) noexcept nogil:
    off += (2 - off) & 7  # Timestamp at 8n+2
    return off + 10


cdef inline Py_ssize_t session_end(
    const ss_messages_t* p, const ss_session_t* s, Py_ssize_t off
) noexcept nogil:
    """MH offset after the session when it follows options ending at ``off``."""
    cdef Py_ssize_t k
    off += (2 - off) & 7  # PBCI at 8n+2
    off += 2 + PBCI_LENGTH
    off += 3 + s.mn_len  # MN-ID, no alignment
    for k in range(s.n_keys):
        off += (4 - off) & 7  # HNP at 8n+4
        off += 20
    if s.has_ts and p.ts_before_att:
        off = timestamp_end(off)
    off += 4  # ATT, no alignment
    if s.has_ts and not p.ts_before_att:
        off = timestamp_end(off)
    if s.ll_id != NULL:
        off += off & 1  # MN LL-ID at 2n
        off += 4 + s.ll_len
    if s.lla != NULL:
        off += (6 - off) & 7  # Link-local Address at 8n+6
        off += 18
    return off


cdef inline Py_ssize_t padded(Py_ssize_t end) noexcept nogil:
    """Message length for options ending at ``end``: padded to a multiple of 8."""
    return (end + 7) & ~(<Py_ssize_t>7)


cdef Py_ssize_t layout(
    const ss_messages_t* p, const ss_session_t* sessions, Py_ssize_t n, Py_ssize_t limit,
    int64_t* first, int64_t* offsets, Py_ssize_t* too_long,
) noexcept nogil:
    """``pack_sessions``: a session joins the current message iff the message with it, padded,
    stays within ``limit`` octets, else it starts the next one. Fills ``first`` and ``offsets``
    (count + 1 entries) and returns the count of messages, or -1 when a message would exceed
    the limit (a session alone too long; its index in ``too_long``)."""
    cdef Py_ssize_t start = LEAD_END if p.lead else OPTIONS_START
    cdef Py_ssize_t i, m = 0, cur_first = 0, carried = 0, off = start, e, length
    offsets[0] = 0
    for i in range(n):
        e = session_end(p, &sessions[i], off)
        if carried and padded(e) > limit:
            length = padded(off)
            if length > limit:
                too_long[0] = cur_first
                return -1
            first[m] = cur_first
            offsets[m + 1] = offsets[m] + length
            m += 1
            cur_first = i
            carried = 0
            e = session_end(p, &sessions[i], start)
        carried += 1
        off = e
    length = padded(off)  # the last message; with no sessions, the lead alone
    if length > limit:
        too_long[0] = cur_first
        return -1
    first[m] = cur_first
    offsets[m + 1] = offsets[m] + length
    m += 1
    first[m] = n
    return m


cdef inline Py_ssize_t write_timestamp(uint8_t* mh, Py_ssize_t off, uint64_t ts) noexcept nogil:
    off = put_padding(mh, off, (2 - off) & 7)
    mh[off] = OPT_TIMESTAMP
    mh[off + 1] = 8
    put_be64(mh + off + 2, ts)
    return off + 10


cdef Py_ssize_t write_session(
    const ss_messages_t* p, const ss_session_t* s, const uint8_t* const* keys, uint8_t* mh,
    Py_ssize_t off,
) noexcept nogil:
    """The session at MH offset ``off``; returns the offset after it (``session_end``)."""
    cdef const uint8_t* key
    cdef uint8_t* q
    cdef Py_ssize_t k

    off = put_padding(mh, off, (2 - off) & 7)
    q = mh + off
    q[0] = p.pbci_type
    q[1] = PBCI_LENGTH
    put_be16(q + 2, s.flags)
    put_be16(q + 4, s.seq)
    put_be16(q + 6, s.lifetime)
    q[8] = 0
    q[9] = 0
    put_be32(q + 10, s.tunnel)
    memcpy(q + 14, s.proxy_coa, 16)
    off += 2 + PBCI_LENGTH

    q = mh + off
    q[0] = OPT_MN_IDENTIFIER
    q[1] = <uint8_t>(1 + s.mn_len)
    q[2] = MNID_SUBTYPE_NAI
    if s.mn_id != NULL:
        memcpy(q + 3, s.mn_id, s.mn_len)
    else:
        q[3] = b'm'
        q[4] = b'n'
        q += 5 + put_decimal(q + 5, s.mn_number)
        q[0] = b'@'
        memcpy(q + 1, p.realm, p.realm_len)
    off += 3 + s.mn_len

    for k in range(s.n_keys):
        key = keys[s.key0 + k]
        off = put_padding(mh, off, (4 - off) & 7)
        q = mh + off
        q[0] = OPT_HOME_NETWORK_PREFIX
        q[1] = 18
        q[2] = 0
        q[3] = key[16]
        memcpy(q + 4, key, 16)
        off += 20

    if s.has_ts and p.ts_before_att:
        off = write_timestamp(mh, off, s.ts)
    q = mh + off
    q[0] = OPT_ACCESS_TECHNOLOGY_TYPE
    q[1] = 2
    q[2] = 0
    q[3] = s.att
    off += 4
    if s.has_ts and not p.ts_before_att:
        off = write_timestamp(mh, off, s.ts)

    if s.ll_id != NULL:
        off = put_padding(mh, off, off & 1)
        q = mh + off
        q[0] = OPT_MN_LINK_LAYER_ID
        q[1] = <uint8_t>(2 + s.ll_len)
        q[2] = 0
        q[3] = 0
        memcpy(q + 4, s.ll_id, s.ll_len)
        off += 4 + s.ll_len

    if s.lla != NULL:
        off = put_padding(mh, off, (6 - off) & 7)
        q = mh + off
        q[0] = OPT_LINK_LOCAL_ADDRESS
        q[1] = 16
        memcpy(q + 2, s.lla, 16)
        off += 18
    return off


cdef void write_messages(
    const ss_messages_t* p, const ss_session_t* sessions, const uint8_t* const* keys,
    const int64_t* first, const int64_t* offsets, Py_ssize_t count, uint8_t* out,
) noexcept nogil:
    """The ``count`` SS-REPs laid out by ``layout`` into ``out``."""
    cdef Py_ssize_t k, i, off, length
    cdef uint8_t* mh
    cdef uint64_t s
    for k in range(count):
        mh = out + offsets[k]
        length = offsets[k + 1] - offsets[k]
        mh[0] = PAYLOAD_PROTO_NONE
        mh[1] = <uint8_t>(length // 8 - 1)
        mh[2] = p.mh_type
        mh[3] = 0
        mh[4] = 0
        mh[5] = 0
        mh[6] = SS_REPLY
        mh[7] = p.ack_flag | (SS_FLAG_M if p.more and k < count - 1 else 0)
        put_be16(mh + 8, stepped(p.identifier, k, p.identifier_step))
        off = OPTIONS_START
        if p.lead:
            mh[off] = OPT_RESTART_COUNTER
            mh[off + 1] = 4
            put_be32(mh + off + 2, p.restart_counter)
            off = LEAD_END
        for i in range(first[k], first[k + 1]):
            off = write_session(p, &sessions[i], keys, mh, off)
        put_padding(mh, off, length - off)
        if p.src != NULL:
            s = csum_pseudo_header(p.src, p.dst, length, IPPROTO_MH) + csum_add(mh, length)
            put_be16(mh + 4, csum_fold(s))
