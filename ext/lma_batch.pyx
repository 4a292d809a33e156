# cython: language_level=3
"""The codec of the LMA's fast lane: a batch of received PBUs scanned into PBU_SCAN_DTYPE records,
the PBAs answering the accepted ones encoded into one buffer, and the RFC 5844 inner IPv6 header
taken off and put back on for the UDP/5436 transport.

The reference is lmaload.wire (decode_mh, encode_mh, split_ipv6_mh, ipv6_header) with
lmaload.protocol.pmip (ProxyBindingUpdate.parse, build_pba). ``scan_pbus`` marks a datagram
``fast`` only when the reference decodes it to a PBU of the one common shape, with the same
fields; anything else, malformed or merely unusual, is left to the reference path. The loops run
without the GIL and create no Python objects.

Checksums use the sums of ext/bulk.pyx: a 16-bit word loaded in native (little-endian) order is
the big-endian word times 256 modulo 0xFFFF, so native 64-bit loads are summed into ``b``
(weight 256) and the big-endian values into ``a`` (weight 1), combined once per message.
"""

import functools
import struct

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from lmaload.bulk_types import PBU_SCAN_DTYPE, SS_SESSION_DTYPE
from lmaload.wire import codepoints as cp
from lmaload.wire import messages as wm
from lmaload.wire import options as wo
from lmaload.wire.codepoints import DEFAULT_CONFIG
from lmaload.wire.ipv6 import DEFAULT_HOP_LIMIT

include "checksum.pxi"

cnp.import_array()


cdef extern from *:
    uint64_t bswap64 "__builtin_bswap64"(uint64_t) noexcept nogil


cdef enum:
    IPV6_HEADER = 40
    MH_HEADER = 6
    BU_OPTIONS = 12       # MH header and the Binding Update / Ack fixed part
    MAX_OPTION = 255
    MAX_PAYLOAD = 0xFFFF  # the IPv6 Payload Length field

cdef uint8_t IPPROTO_MH = cp.IPPROTO_MH
cdef uint8_t PAYLOAD_PROTO_NONE = cp.PAYLOAD_PROTO_NONE
cdef uint8_t OPT_PAD1 = cp.OPT_PAD1
cdef uint8_t OPT_PADN = cp.OPT_PADN
cdef uint8_t MNID_SUBTYPE_NAI = cp.MNID_SUBTYPE_NAI
cdef uint16_t BU_FLAG_P = cp.BU_FLAG_P
cdef uint8_t BA_FLAG_P = cp.BA_FLAG_P
cdef uint8_t MH_BINDING_ACK = cp.MH_BINDING_ACK
cdef uint8_t OPT_MN_IDENTIFIER = cp.OPT_MN_IDENTIFIER
cdef uint8_t OPT_HOME_NETWORK_PREFIX = cp.OPT_HOME_NETWORK_PREFIX
cdef uint8_t OPT_HANDOFF_INDICATOR = cp.OPT_HANDOFF_INDICATOR
cdef uint8_t OPT_ACCESS_TECHNOLOGY_TYPE = cp.OPT_ACCESS_TECHNOLOGY_TYPE
cdef uint8_t OPT_TIMESTAMP = cp.OPT_TIMESTAMP
cdef uint8_t OPT_MN_LINK_LAYER_ID = cp.OPT_MN_LINK_LAYER_ID
cdef uint8_t HOP_LIMIT = DEFAULT_HOP_LIMIT


# ---------------------------------------------------------------------------------------------
# Octet and checksum helpers (as in ext/bulk.pyx)

include "octets.pxi"


cdef inline uint64_t native_sum(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    """Weight-256 sum of p[0:n], n a multiple of 8."""
    cdef uint64_t b = 0
    cdef Py_ssize_t k
    for k in range(0, n, 8):
        b += halves(load64(p + k))
    return b


cdef inline uint64_t address_sum(const uint8_t* src, const uint8_t* dst) noexcept nogil:
    """Weight-256 sum of the pseudo-header's two addresses."""
    return (halves(load64(src)) + halves(load64(src + 8))
            + halves(load64(dst)) + halves(load64(dst + 8)))


cdef inline int pad(uint8_t* p, int pos, int x, int y) noexcept nogil:
    """encode_options' padding: Pad1 or PadN from MH offset pos up to the next offset o with
    o % x == y; returns o."""
    cdef int n = (y - pos) % x
    if n < 0:
        n += x
    if n == 1:
        p[pos] = OPT_PAD1
    elif n > 1:
        p[pos] = OPT_PADN
        p[pos + 1] = n - 2
        memset(p + pos + 2, 0, n - 2)
    return pos + n


cdef inline int padded(int pos, int x, int y) noexcept nogil:
    """Where pad(p, pos, x, y) ends."""
    cdef int n = (y - pos) % x
    return pos + (n + x if n < 0 else n)


cdef object c_array(arr, dtype, name, shape=None):
    """arr as a C-contiguous array of dtype (no conversion for a record dtype)."""
    if dtype.names is None:
        arr = np.ascontiguousarray(arr, dtype=dtype)
    else:
        arr = np.ascontiguousarray(arr)
        if arr.dtype != dtype:
            raise TypeError(f"{name} must be an array of PBU_SCAN_DTYPE, got {arr.dtype}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    return arr


cdef object octets(buf):
    """buf's octets as a 1-D uint8 array (buf.tobytes()'s octets, no copy when contiguous)."""
    return np.ascontiguousarray(buf).reshape(-1).view(np.uint8)


# ---------------------------------------------------------------------------------------------
# scan_pbus

cdef packed struct scan_t:
    uint8_t fast
    uint16_t flags
    uint16_t seq
    uint16_t lifetime
    int64_t mn_start
    int16_t mn_len
    uint8_t hnp[16]
    uint8_t plen
    uint8_t hnp_zero
    uint8_t hi
    uint8_t att
    uint8_t has_ts
    uint64_t ts
    int64_t llid_start
    int16_t llid_len
    uint8_t has_lfi


cdef int check_layout() except -1:
    """scan_t must match PBU_SCAN_DTYPE field for field; a typed memoryview checks."""
    cdef const scan_t[::1] scan = np.zeros(1, dtype=PBU_SCAN_DTYPE)
    return 0


check_layout()


cdef enum:  # what an option type is to the fast lane (each seen at most once)
    K_OTHER = 0
    K_MNID = 1
    K_HNP = 2
    K_HI = 4
    K_ATT = 8
    K_TS = 16
    K_LLID = 32
    K_LFI = 64
    K_REQUIRED = K_MNID | K_HNP | K_HI | K_ATT

_OPTION_KIND = {
    wo.MobileNodeIdentifier: K_MNID,
    wo.HomeNetworkPrefix: K_HNP,
    wo.HandoffIndicator: K_HI,
    wo.AccessTechnologyType: K_ATT,
    wo.Timestamp: K_TS,
    wo.MobileNodeLinkLayerIdentifier: K_LLID,
    wo.LmaFailureIndication: K_LFI,
}


cdef struct tables_t:
    uint8_t is_bu[256]        # MH type -> 1 for the Binding Update
    uint8_t option_kind[256]  # option type -> K_ kind (Pad1/PadN are framing, never looked up)


@functools.lru_cache(maxsize=16)
def _tables(config):
    """The Binding Update flag per MH type, then the fast-lane kind per option type, under
    ``config`` (the same tables decode_mh and decode_options look types up in)."""
    table = bytearray(512)
    for code, cls in wm.message_classes(config).items():
        table[code] = cls is wm.BindingUpdate
    for code, cls in wo.option_classes(config).items():
        table[256 + code] = _OPTION_KIND.get(cls, K_OTHER)
    return bytes(table)


cdef void fill_tables(tables_t* t, config):
    cdef bytes table = _tables(config)
    memcpy(t.is_bu, <const char*>table, 256)
    memcpy(t.option_kind, <const char*>table + 256, 256)


cdef bint scan_one(
    const uint8_t* mh, Py_ssize_t n, int64_t base, const uint8_t* src, const uint8_t* dst,
    const tables_t* t, scan_t* r,
) noexcept nogil:
    """Fill r from the MH mh[0:n] (at offset base of the buffer); False unless fast."""
    cdef Py_ssize_t off, body
    cdef uint8_t kind = 0, length, k, q
    cdef int seen = 0
    # decode_mh's framing, then BindingUpdate._require.
    if n < BU_OPTIONS or mh[0] != PAYLOAD_PROTO_NONE or (mh[1] + 1) * 8 != n:
        return False
    if not t.is_bu[mh[2]]:
        return False
    r.seq = be16(mh + 6)
    r.flags = be16(mh + 8)
    r.lifetime = be16(mh + 10)
    if not r.flags & BU_FLAG_P or r.lifetime == 0:
        return False
    # decode_options: each option's Length within the message, then its class's unpack checks.
    off = BU_OPTIONS
    while True:
        body = next_option(mh, &off, n, &kind)
        if body == OPTIONS_MALFORMED:
            return False
        if body == OPTIONS_END:
            break
        length = mh[body - 1]
        k = t.option_kind[kind]
        if k == K_OTHER or seen & k:
            return False
        seen |= k
        if k == K_MNID:
            # MobileNodeIdentifier.unpack takes Length >= 1; the lane wants a non-empty NAI.
            if length < 2 or mh[body] != MNID_SUBTYPE_NAI:
                return False
            r.mn_start = base + body + 1
            r.mn_len = length - 1
        elif k == K_HNP:
            if length != 18 or mh[body + 1] > 128:
                return False
            r.plen = mh[body + 1]
            memcpy(r.hnp, mh + body + 2, 16)
        elif k == K_HI:
            if length != 2:
                return False
            r.hi = mh[body + 1]
        elif k == K_ATT:
            if length != 2:
                return False
            r.att = mh[body + 1]
        elif k == K_TS:
            if length != 8:
                return False
            r.has_ts = 1
            r.ts = bswap64(load64(mh + body))
        elif k == K_LLID:
            if length < 2:
                return False
            r.llid_start = base + body + 2
            r.llid_len = length - 2
        else:  # K_LFI: LmaFailureIndication.unpack takes the LMAA, and its IPv4 LMAA or not
            if length != 16 and length != 20:
                return False
            r.has_lfi = 1
    if seen & K_REQUIRED != K_REQUIRED:
        return False
    # The checksum over the pseudo-header (n is a multiple of 8).
    if finish(n + IPPROTO_MH, address_sum(src, dst) + native_sum(mh, n)) != 0:
        return False
    # ALL_ZERO as sent, then IPv6Network(strict=False)'s masking of the bits beyond plen.
    r.hnp_zero = r.plen == 0
    for k in range(16):
        if r.hnp[k]:
            r.hnp_zero = 0
    q = r.plen >> 3
    if q < 16:
        r.hnp[q] &= <uint8_t>(0xFF00 >> (r.plen & 7))
        memset(r.hnp + q + 1, 0, 15 - q)
    return True


def scan_pbus(buf, starts, ends, src, dst, config=DEFAULT_CONFIG):
    """PBU_SCAN_DTYPE records for the bare Mobility Headers ``buf[starts[i]:ends[i]]`` (sliced
    as Python slices them), received from ``src[i]`` at ``dst[i]`` ((n, 16) uint8 addresses)."""
    data = octets(buf)
    starts_a = np.ascontiguousarray(starts, dtype=np.int64).reshape(-1)
    cdef Py_ssize_t n = len(starts_a)
    ends_a = c_array(ends, np.dtype(np.int64), "ends", (n,))
    src_a = c_array(src, np.dtype(np.uint8), "src", (n, 16))
    dst_a = c_array(dst, np.dtype(np.uint8), "dst", (n, 16))
    cdef tables_t t
    fill_tables(&t, config)
    out = np.zeros(n, dtype=PBU_SCAN_DTYPE)
    cdef scan_t* rec = <scan_t*>cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef const uint8_t* d = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>data)
    cdef Py_ssize_t size = len(data)
    cdef const int64_t* s = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>starts_a)
    cdef const int64_t* e = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>ends_a)
    cdef const uint8_t* sa = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>src_a)
    cdef const uint8_t* da = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>dst_a)
    cdef Py_ssize_t i, a, b
    with nogil:
        for i in range(n):
            a = clamp(s[i], size)
            b = clamp(e[i], size)
            rec[i].llid_len = -1
            if scan_one(d + a, max(b - a, 0), a, sa + 16 * i, da + 16 * i, &t, &rec[i]):
                rec[i].fast = 1
            else:
                memset(&rec[i], 0, sizeof(scan_t))
                rec[i].llid_len = -1
    return out


# ---------------------------------------------------------------------------------------------
# encode_pbas

cdef inline int pba_length(const scan_t* r) noexcept nogil:
    """The length of the PBA encode_pbas writes for r (the layout of write_pba)."""
    cdef int pos = BU_OPTIONS + 3 + r.mn_len      # MN-ID (1, 0)
    pos = padded(pos, 8, 4) + 20                   # HNP (8, 4)
    pos += 8                                       # HI, ATT (1, 0)
    if r.has_ts:
        pos = padded(pos, 8, 2) + 10               # Timestamp (8, 2)
    if r.llid_len >= 0:
        pos = padded(pos, 2, 0) + 4 + r.llid_len   # MN LL-ID (2, 0)
    return padded(pos, 8, 0)


cdef inline void write_pba(
    uint8_t* p, int length, const uint8_t* buf, const scan_t* r, const uint8_t* prefix,
    uint8_t plen, uint16_t lifetime, uint8_t status, const uint8_t* src, const uint8_t* dst,
) noexcept nogil:
    """encode_mh(BindingAck(...)) with build_pba's options for r, from dst back to src."""
    cdef int pos
    cdef uint64_t ts
    p[0] = PAYLOAD_PROTO_NONE
    p[1] = length // 8 - 1
    p[2] = MH_BINDING_ACK
    p[3] = 0
    p[4] = 0
    p[5] = 0
    p[6] = status
    p[7] = BA_FLAG_P
    put_be16(p + 8, r.seq)
    put_be16(p + 10, lifetime)
    p[12] = OPT_MN_IDENTIFIER
    p[13] = 1 + r.mn_len
    p[14] = MNID_SUBTYPE_NAI
    memcpy(p + 15, buf + r.mn_start, r.mn_len)
    pos = pad(p, 15 + r.mn_len, 8, 4)
    p[pos] = OPT_HOME_NETWORK_PREFIX
    p[pos + 1] = 18
    p[pos + 2] = 0
    p[pos + 3] = plen
    memcpy(p + pos + 4, prefix, 16)
    pos += 20
    p[pos] = OPT_HANDOFF_INDICATOR
    p[pos + 1] = 2
    p[pos + 2] = 0
    p[pos + 3] = r.hi
    p[pos + 4] = OPT_ACCESS_TECHNOLOGY_TYPE
    p[pos + 5] = 2
    p[pos + 6] = 0
    p[pos + 7] = r.att
    pos += 8
    if r.has_ts:
        pos = pad(p, pos, 8, 2)
        p[pos] = OPT_TIMESTAMP
        p[pos + 1] = 8
        ts = bswap64(r.ts)
        memcpy(p + pos + 2, &ts, 8)
        pos += 10
    if r.llid_len >= 0:
        pos = pad(p, pos, 2, 0)
        p[pos] = OPT_MN_LINK_LAYER_ID
        p[pos + 1] = 2 + r.llid_len
        p[pos + 2] = 0
        p[pos + 3] = 0
        memcpy(p + pos + 4, buf + r.llid_start, r.llid_len)
        pos += 4 + r.llid_len
    pad(p, pos, 8, 0)
    put_be16(p + 4, finish(length + IPPROTO_MH, address_sum(src, dst) + native_sum(p, length)))


cdef enum:
    ERR_INDEX = 1
    ERR_NOT_FAST = 2
    ERR_BOUNDS = 3


cdef inline int record_error(const scan_t* r, Py_ssize_t size) noexcept nogil:
    """0 for a fast record whose MN-ID and MN LL-ID lie in buf (of size octets) and fit their
    options (scan_pbus's fast records always do); else an ERR_ code."""
    if not r.fast:
        return ERR_NOT_FAST
    if r.mn_len < 1 or r.mn_len > MAX_OPTION - 1 or r.mn_start < 0 or r.mn_start > size - r.mn_len:
        return ERR_BOUNDS
    if r.llid_len < -1 or r.llid_len > MAX_OPTION - 2:
        return ERR_BOUNDS
    if r.llid_len >= 0 and (r.llid_start < 0 or r.llid_start > size - r.llid_len):
        return ERR_BOUNDS
    return 0


def encode_pbas(buf, scan, sel, prefix, plen, lifetime, status, src, dst, config=DEFAULT_CONFIG):
    """The PBAs answering the scanned PBUs ``scan[sel[k]]`` (which must be fast): status
    ``status[k]``, lifetime ``lifetime[k]``, the assigned prefix ``prefix[k]``/``plen[k]``, from
    ``dst[sel[k]]`` back to ``src[sel[k]]``. Returns the octets and the offsets of each PBA.
    ``config`` changes nothing today (the PBA and its options have IANA code points)."""
    data = octets(buf)
    scan_a = c_array(scan, PBU_SCAN_DTYPE, "scan")
    cdef Py_ssize_t n_scan = len(scan_a)
    sel_a = np.ascontiguousarray(sel, dtype=np.int64).reshape(-1)
    cdef Py_ssize_t n = len(sel_a)
    prefix_a = c_array(prefix, np.dtype(np.uint8), "prefix", (n, 16))
    columns = []
    for name, values, dtype in (
        ("plen", plen, np.uint8),
        ("lifetime", lifetime, np.uint16),
        ("status", status, np.uint8),
    ):
        a = np.asarray(values).reshape(-1)
        if a.shape != (n,):
            raise ValueError(f"{name} has shape {a.shape}, expected {(n,)}")
        # Values of the column's own type fit it (the lane's); others are checked.
        if n and a.dtype != dtype and (int(a.min()) < 0 or int(a.max()) > np.iinfo(dtype).max):
            raise struct.error(f"{name} out of range for {np.dtype(dtype)}")
        columns.append(np.ascontiguousarray(a, dtype=dtype))
    plen_a, lifetime_a, status_a = columns
    src_a = c_array(src, np.dtype(np.uint8), "src", (n_scan, 16))
    dst_a = c_array(dst, np.dtype(np.uint8), "dst", (n_scan, 16))

    # Pass 1: each selected record checked (see record_error) and its PBA's length.
    cdef cnp.ndarray rows = np.empty(n, dtype=np.int64)
    cdef int64_t* js = <int64_t*>cnp.PyArray_DATA(rows)
    cdef const int64_t* sel_p = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>sel_a)
    cdef cnp.ndarray offsets = np.zeros(n + 1, dtype=np.int64)
    cdef int64_t* o = <int64_t*>cnp.PyArray_DATA(offsets)
    cdef const scan_t* rec = <const scan_t*>cnp.PyArray_DATA(<cnp.ndarray>scan_a)
    cdef Py_ssize_t size = len(data)
    cdef Py_ssize_t k, j
    cdef int error = 0
    with nogil:
        for k in range(n):
            j = wrap_index(sel_p[k], n_scan)
            if j < 0:
                error = ERR_INDEX
                break
            error = record_error(&rec[j], size)
            if error:
                break
            js[k] = j
            o[k + 1] = o[k] + pba_length(&rec[j])
    if error == ERR_INDEX:
        raise IndexError(f"index {sel_a[k]} is out of bounds for axis 0 with size {n_scan}")
    if error == ERR_NOT_FAST:
        raise ValueError(f"scan row {j} is not fast")
    if error:
        raise ValueError(f"scan row {j}: its MN-ID or MN LL-ID does not lie in buf or fit an option")
    cdef cnp.ndarray out = np.empty(o[n], dtype=np.uint8)
    cdef uint8_t* p = <uint8_t*>cnp.PyArray_DATA(out)
    cdef const uint8_t* d = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>data)
    cdef const uint8_t* pre = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>prefix_a)
    cdef const uint8_t* pl = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>plen_a)
    cdef const uint16_t* lt = <const uint16_t*>cnp.PyArray_DATA(<cnp.ndarray>lifetime_a)
    cdef const uint8_t* st = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>status_a)
    cdef const uint8_t* sa = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>src_a)
    cdef const uint8_t* da = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>dst_a)
    with nogil:
        for k in range(n):
            j = js[k]
            write_pba(
                p + o[k], o[k + 1] - o[k], d, &rec[j], pre + 16 * k, pl[k], lt[k], st[k],
                da + 16 * j, sa + 16 * j,
            )
    return out, offsets


# ---------------------------------------------------------------------------------------------
# RFC 5844 inner IPv6 header

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
    cdef Py_ssize_t i, a, b, length
    cdef const uint8_t* h
    with nogil:
        for i in range(n):
            a = clamp(of[i], size)
            b = clamp(of[i + 1], size)
            length = b - a
            s[i] = e[i] = a
            if length < IPV6_HEADER:
                continue
            h = d + a
            if h[0] >> 4 != 6 or be16(h + 4) != length - IPV6_HEADER or h[6] != IPPROTO_MH:
                continue
            s[i] = a + IPV6_HEADER
            e[i] = b
            memcpy(sa + 16 * i, h + 8, 16)
            memcpy(da + 16 * i, h + 24, 16)
            okp[i] = 1
    return starts, ends, src, dst, ok


def frame(buf, starts, ends, src, dst):
    """Each MH ``buf[starts[i]:ends[i]]`` (sliced as Python slices) behind ipv6_header(src[i],
    dst[i], its length): the octets and the offsets of each packet."""
    data = octets(buf)
    starts_a = np.ascontiguousarray(starts, dtype=np.int64).reshape(-1)
    cdef Py_ssize_t n = len(starts_a)
    ends_a = c_array(ends, np.dtype(np.int64), "ends", (n,))
    src_a = c_array(src, np.dtype(np.uint8), "src", (n, 16))
    dst_a = c_array(dst, np.dtype(np.uint8), "dst", (n, 16))
    cdef Py_ssize_t size = len(data)
    lo = np.clip(np.where(starts_a < 0, starts_a + size, starts_a), 0, size)
    hi = np.clip(np.where(ends_a < 0, ends_a + size, ends_a), 0, size)
    lengths = np.maximum(hi - lo, 0)
    if n and int(lengths.max()) > MAX_PAYLOAD:
        raise struct.error("a Mobility Header over 65535 octets does not fit an IPv6 header")
    cdef cnp.ndarray offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths + IPV6_HEADER, out=offsets[1:])
    cdef cnp.ndarray out = np.empty(offsets[n], dtype=np.uint8)
    lo = np.ascontiguousarray(lo, dtype=np.int64)
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    cdef const int64_t* l0 = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>lo)
    cdef const int64_t* ln = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>lengths)
    cdef const int64_t* of = <const int64_t*>cnp.PyArray_DATA(offsets)
    cdef const uint8_t* d = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>data)
    cdef const uint8_t* sa = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>src_a)
    cdef const uint8_t* da = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>dst_a)
    cdef uint8_t* base = <uint8_t*>cnp.PyArray_DATA(out)
    cdef uint8_t* p
    cdef Py_ssize_t i
    with nogil:
        for i in range(n):
            p = base + of[i]
            p[0] = 0x60
            p[1] = p[2] = p[3] = 0
            put_be16(p + 4, <uint16_t>ln[i])
            p[6] = IPPROTO_MH
            p[7] = HOP_LIMIT
            memcpy(p + 8, sa + 16 * i, 16)
            memcpy(p + 24, da + 16 * i, 16)
            memcpy(p + IPV6_HEADER, d + l0[i], ln[i])
    return out, offsets


# ---------------------------------------------------------------------------------------------
# scan_ss_rep

cdef packed struct session_t:
    uint8_t ok
    uint16_t flags
    uint16_t seq
    uint16_t lifetime
    uint32_t tunnel
    uint8_t proxy_coa[16]
    int64_t mn_start
    int16_t mn_len
    uint8_t hnp[16]
    uint8_t plen
    uint8_t att
    uint64_t ts
    int64_t llid_start
    int16_t llid_len
    uint8_t has_lla
    uint8_t lla[16]


cdef int check_session_layout() except -1:
    cdef const session_t[::1] sessions = np.zeros(1, dtype=SS_SESSION_DTYPE)
    return 0


check_session_layout()


cdef enum:  # what an option type is in an SS-REP the scan takes
    Q_OTHER = 0
    Q_MNID = 1
    Q_HNP = 2
    Q_ATT = 4
    Q_TS = 8
    Q_LLID = 16
    Q_LLA = 32
    Q_PBCI = 64
    Q_RC = 128
    Q_REQUIRED = Q_MNID | Q_HNP | Q_ATT
    PBCI_LENGTH = 28

_SS_OPTION_KIND = {
    wo.MobileNodeIdentifier: Q_MNID,
    wo.HomeNetworkPrefix: Q_HNP,
    wo.AccessTechnologyType: Q_ATT,
    wo.Timestamp: Q_TS,
    wo.MobileNodeLinkLayerIdentifier: Q_LLID,
    wo.LinkLocalAddress: Q_LLA,
    wo.ProxyBindingCacheInformation: Q_PBCI,
    wo.RestartCounter: Q_RC,
}


@functools.lru_cache(maxsize=16)
def _ss_tables(config):
    """The State Sync MH type, then the scan's kind per option type, under ``config``."""
    table = bytearray(257)
    table[0] = config.mh_state_sync
    for code, cls in wo.option_classes(config).items():
        table[1 + code] = _SS_OPTION_KIND.get(cls, Q_OTHER)
    return bytes(table)


cdef inline uint32_t be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>be16(p) << 16) | be16(p + 2)


cdef bint host_bits(const uint8_t* prefix, uint8_t plen) noexcept nogil:
    """Whether the prefix has bits set beyond plen (IPv6Network, strict, refuses it)."""
    cdef int k
    cdef uint8_t q = plen >> 3
    if q >= 16:
        return False
    if prefix[q] & <uint8_t>(0xFF >> (plen & 7)):
        return True
    for k in range(q + 1, 16):
        if prefix[k]:
            return True
    return False


cdef Py_ssize_t scan_sessions(
    const uint8_t* mh, Py_ssize_t n, const uint8_t* kinds, session_t* out, int64_t* counter,
) noexcept nogil:
    """Sessions of the SS-REP options mh[10:n] into out; -1 when the scan declines."""
    cdef Py_ssize_t off = 10, body, count = 0
    cdef uint8_t kind = 0, length, k
    cdef int seen = 0
    cdef session_t* s = NULL
    counter[0] = -1
    while True:
        body = next_option(mh, &off, n, &kind)
        if body == OPTIONS_MALFORMED:
            return -1
        if body == OPTIONS_END:
            break
        length = mh[body - 1]
        k = kinds[kind]
        if k == Q_OTHER:
            return -1
        if k == Q_RC:
            if s != NULL or counter[0] >= 0 or length != 4:
                return -1  # only one lead Restart Counter, before the sessions
            counter[0] = be32(mh + body)
            continue
        if k == Q_PBCI:
            if length != PBCI_LENGTH:
                return -1  # a nested PBCI: the reference path flattens it
            if s != NULL:
                s.ok = (seen & Q_REQUIRED) == Q_REQUIRED
            s = out + count
            count += 1
            memset(s, 0, sizeof(session_t))
            s.llid_len = -1
            s.flags = be16(mh + body)
            s.seq = be16(mh + body + 2)
            s.lifetime = be16(mh + body + 4)
            s.tunnel = be32(mh + body + 8)
            memcpy(s.proxy_coa, mh + body + 12, 16)
            seen = 0
            continue
        if s == NULL or seen & k:
            return -1  # options outside a session, or twice in one
        seen |= k
        if k == Q_MNID:
            if length < 2 or mh[body] != MNID_SUBTYPE_NAI:
                return -1
            s.mn_start = body + 1
            s.mn_len = length - 1
        elif k == Q_HNP:
            if length != 18 or mh[body + 1] > 128 or host_bits(mh + body + 2, mh[body + 1]):
                return -1
            s.plen = mh[body + 1]
            memcpy(s.hnp, mh + body + 2, 16)
        elif k == Q_ATT:
            if length != 2:
                return -1
            s.att = mh[body + 1]
        elif k == Q_TS:
            if length != 8:
                return -1
            s.ts = bswap64(load64(mh + body))
        elif k == Q_LLID:
            if length < 2:
                return -1
            s.llid_start = body + 2
            s.llid_len = length - 2
        else:  # Q_LLA
            if length != 16:
                return -1
            s.has_lla = 1
            memcpy(s.lla, mh + body, 16)
    if s != NULL:
        s.ok = (seen & Q_REQUIRED) == Q_REQUIRED
    return count


def scan_ss_rep(data, bytes src not None, bytes dst not None, config=DEFAULT_CONFIG):
    """An SS-REP Mobility Header ``data`` (received from ``src`` at ``dst``, 16 octets each) as
    (flags, identifier, lead Restart Counter or -1, SS_SESSION_DTYPE records; MN-ID and LL-ID
    offsets into ``data``), or None when the scan declines it and the reference decoder must
    read it: malformed, a bad checksum, not an SS-REP, nested PBCIs, options other than the
    session ones and one lead Restart Counter, an option twice in a session, an MN-ID that is
    not a non-empty NAI, an HNP with host bits set. The records are what ``StateSync.sessions``
    and ``SyncedSession.parse`` give, ``ok`` 0 where parse gives None."""
    if len(src) != 16 or len(dst) != 16:
        raise ValueError("src and dst are 16 octets")
    buf = octets(data)
    cdef const uint8_t* mh = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>buf)
    cdef Py_ssize_t n = len(buf)
    cdef bytes tables = _ss_tables(config)
    cdef const uint8_t* t = <const uint8_t*>tables
    if n < 16 or mh[0] != PAYLOAD_PROTO_NONE or (mh[1] + 1) * 8 != n or mh[2] != t[0]:
        return None
    if mh[6] != cp.SS_REPLY:
        return None
    out = np.zeros(n // 30 + 1, dtype=SS_SESSION_DTYPE)
    cdef session_t* rec = <session_t*>cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef int64_t counter
    cdef Py_ssize_t count
    cdef const uint8_t* s = src
    cdef const uint8_t* d = dst
    with nogil:
        count = scan_sessions(mh, n, t + 1, rec, &counter)
        if count >= 0 and finish(n + IPPROTO_MH, address_sum(s, d) + native_sum(mh, n)) != 0:
            count = -1
    if count < 0:
        return None
    return mh[7], be16(mh + 8), counter, out[:count]
