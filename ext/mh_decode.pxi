# The decoders' validity rules (decode_datagram of ipv6.py, messages.py, options.py) as tables of
# message and option kinds per type number under a WireConfig, shared by the ext modules that
# read Mobility Headers. Include after checksum.pxi and octets.pxi, in a module that defines
# IPV6_HEADER, MH_HEADER, IPPROTO_MH, PAYLOAD_PROTO_NONE, MNID_SUBTYPE_NAI, PBCI_FIXED_LENGTH and
# NO_MN_ID, declares bswap32 (__builtin_bswap32) and imports functools, lmaload.wire.messages as wm and lmaload.wire.options as wo:
#     include "mh_decode.pxi"
from libc.stdint cimport int8_t, int32_t, uint32_t
from libc.string cimport memchr, memcpy


cdef inline uint32_t load32(const uint8_t* p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint32_t be32(const uint8_t* p) noexcept nogil:
    return bswap32(load32(p))


cdef enum:  # message kinds, each with its fixed-part rule
    M_UNKNOWN, M_BU, M_BA, M_BE, M_HAS, M_HB, M_SS, M_HAC, M_HELLO

cdef enum:  # option kinds, each with its Length rule (O_ANY: unknown types too)
    O_ANY, O_LEN2, O_LEN6, O_LEN16, O_MNID, O_HNP, O_LLID, O_TS, O_RC, O_BCI, O_PBCI, O_LFI

_MESSAGE_KIND = {
    wm.BindingUpdate: M_BU,
    wm.BindingAck: M_BA,
    wm.BindingError: M_BE,
    wm.HomeAgentSwitch: M_HAS,
    wm.Heartbeat: M_HB,
    wm.StateSync: M_SS,
    wm.HomeAgentControl: M_HAC,
    wm.HomeAgentHello: M_HELLO,
}
_OPTION_KIND = {
    wo.AlternateCareOfAddress: O_LEN16,
    wo.MobileNodeIdentifier: O_MNID,
    wo.VendorSpecific: O_ANY,
    wo.HomeNetworkPrefix: O_HNP,
    wo.HandoffIndicator: O_LEN2,
    wo.AccessTechnologyType: O_LEN2,
    wo.MobileNodeLinkLayerIdentifier: O_LLID,
    wo.LinkLocalAddress: O_LEN16,
    wo.Timestamp: O_TS,
    wo.RestartCounter: O_RC,
    wo.IPv4CareOfAddress: O_LEN6,
    wo.IPv4DefaultRouterAddress: O_LEN6,
    wo.IPv4HomeAddressRequest: O_LEN6,
    wo.IPv4HomeAddressReply: O_LEN6,
    wo.IPv4DhcpSupportMode: O_LEN2,
    wo.BindingCacheInformation: O_BCI,
    wo.ProxyBindingCacheInformation: O_PBCI,
    wo.LmaFailureIndication: O_LFI,
    wo.MagAddress: O_LEN16,
}


cdef struct wire_t:
    uint8_t message_kind[256]
    uint8_t option_kind[256]
    bint hac_literal


cdef struct found_t:
    # MH offsets of the data of the first MN-ID, HNP, Timestamp and Restart Counter options
    int32_t mnid, hnp, ts, rc


@functools.lru_cache(maxsize=16)
def _kind_tables(config):
    """Message kind per MH type, then option kind per option type, under ``config``."""
    kinds = bytearray(512)
    for code, cls in wm.message_classes(config).items():
        kinds[code] = _MESSAGE_KIND[cls]
    for code, cls in wo.option_classes(config).items():
        kinds[256 + code] = _OPTION_KIND[cls]
    return bytes(kinds)


cdef int fill_wire(wire_t* w, config) except -1:
    """The kind tables of ``config`` (a WireConfig) into w."""
    cdef bytes table = _kind_tables(config)
    memcpy(w.message_kind, <const char*>table, 256)
    memcpy(w.option_kind, <const char*>table + 256, 256)
    w.hac_literal = config.hac_mag_encoding == "literal"
    return 0


cdef bint options_ok(
    const uint8_t* mh, Py_ssize_t off, Py_ssize_t end, const wire_t* w, bint inside_pbci,
    found_t* f,
) noexcept nogil:
    """decode_options' checks on mh[off:end], noting the first options the records need."""
    cdef uint8_t kind = 0, length, k
    cdef Py_ssize_t body
    while True:
        body = next_option(mh, &off, end, &kind)
        if body == OPTIONS_MALFORMED:
            return False
        if body == OPTIONS_END:
            return True
        length = mh[body - 1]
        k = w.option_kind[kind]
        if k == O_ANY:
            pass
        elif k == O_LEN2:
            if length != 2:
                return False
        elif k == O_LEN6:
            if length != 6:
                return False
        elif k == O_LEN16:
            if length != 16:
                return False
        elif k == O_MNID:
            if length < 1:
                return False
            if f.mnid < 0:
                f.mnid = body
        elif k == O_HNP:
            if length != 18 or mh[body + 1] > 128:
                return False
            if f.hnp < 0:
                f.hnp = body
        elif k == O_LLID:
            if length < 2:
                return False
        elif k == O_TS:
            if length != 8:
                return False
            if f.ts < 0:
                f.ts = body
        elif k == O_RC:
            if length != 4:
                return False
            if f.rc < 0:
                f.rc = body
        elif k == O_BCI:
            if inside_pbci or length != 40:
                return False
        elif k == O_PBCI:
            # A longer PBCI nests its session's options, which may not hold another (P)BCI.
            if inside_pbci or length < PBCI_FIXED_LENGTH:
                return False
            if not options_ok(mh, body + PBCI_FIXED_LENGTH, off, w, True, f):
                return False
        elif k == O_LFI:
            if length != 16 and length != 20:
                return False


cdef struct decoded_t:
    const uint8_t* mh
    uint8_t kind
    int8_t checksum_ok
    found_t found


cdef bint decode_datagram(
    const uint8_t* d, Py_ssize_t n, bint ipv6, const wire_t* w, decoded_t* out
) noexcept nogil:
    """True when decode_datagram would accept d[0:n] (framed as the batch says)."""
    cdef const uint8_t* mh = d
    cdef Py_ssize_t length = n, fixed, k
    cdef uint64_t b
    if ipv6:
        if n < IPV6_HEADER or d[0] >> 4 != 6 or d[6] != IPPROTO_MH:
            return False
        if be16(d + 4) != n - IPV6_HEADER:  # Payload Length
            return False
        mh += IPV6_HEADER
        length -= IPV6_HEADER
    if length < 8 or mh[0] != PAYLOAD_PROTO_NONE or (mh[1] + 1) * 8 != length:
        return False
    out.mh = mh
    out.kind = w.message_kind[mh[2]]
    out.found.mnid = out.found.hnp = out.found.ts = out.found.rc = -1
    if out.kind != M_UNKNOWN:
        if out.kind == M_BE:
            fixed = 18
        elif out.kind == M_HAS:
            fixed = 2 + 16 * mh[6]
        elif out.kind == M_SS:
            fixed = 4
        elif out.kind == M_HAC:
            fixed = 18 if w.hac_literal else 2
        elif out.kind == M_HELLO:
            fixed = 10
        else:
            fixed = 6
        if length < MH_HEADER + fixed:
            return False
        if not options_ok(mh, MH_HEADER + fixed, length, w, False, &out.found):
            return False
    if not ipv6:
        out.checksum_ok = -1
        return True
    # Pseudo-header addresses and the MH (a multiple of 8 octets) in native 64-bit words.
    b = 0
    for k in range(8, IPV6_HEADER, 8):
        b += halves(load64(d + k))
    for k in range(0, length, 8):
        b += halves(load64(mh + k))
    out.checksum_ok = finish(length + IPPROTO_MH, b) == 0
    return True


cdef inline uint32_t nai_mn_id(const uint8_t* s, Py_ssize_t n) noexcept nogil:
    """_mn_id_from_nai: ``mn{digits}@...``, ASCII digits without leading zeros, < 2^32 - 1."""
    cdef const uint8_t* at = <const uint8_t*>memchr(s, 64, n)
    cdef Py_ssize_t digits, k
    cdef uint64_t v = 0
    if at == NULL:
        return NO_MN_ID
    digits = at - s - 2
    if digits < 1 or digits > 10 or s[0] != 109 or s[1] != 110 or (digits > 1 and s[2] == 48):
        return NO_MN_ID
    for k in range(2, 2 + digits):
        if not 48 <= s[k] <= 57:
            return NO_MN_ID
        v = v * 10 + s[k] - 48
    return <uint32_t>v if v < NO_MN_ID else NO_MN_ID
