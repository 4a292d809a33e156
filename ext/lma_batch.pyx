# cython: language_level=3
"""The codec of the LMA's fast lane: a batch of received PBUs scanned into PBU_SCAN_DTYPE records
and the PBAs answering the accepted ones encoded into one buffer (RFC 5844 framing is
ext/framing.pyx; the SS-REPs of a peer are ext/sync_ingest.pyx's).

The pure-Python twin is lmaload.wire (decode_mh, encode_mh) with
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

from lmaload.bulk_types import NO_MN_ID as NO_MN_ID_VALUE
from lmaload.bulk_types import PBU_SCAN_DTYPE
from lmaload.wire import codepoints as cp
from lmaload.wire import messages as wm
from lmaload.wire import options as wo
from lmaload.wire.codepoints import DEFAULT_CONFIG

include "checksum.pxi"

cnp.import_array()


cdef extern from *:
    uint32_t bswap32 "__builtin_bswap32"(uint32_t) noexcept nogil
    uint64_t bswap64 "__builtin_bswap64"(uint64_t) noexcept nogil


cdef enum:
    IPV6_HEADER = 40
    MH_HEADER = 6
    BU_OPTIONS = 12       # MH header and the Binding Update / Ack fixed part
    MAX_OPTION = 255

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
cdef uint8_t PBCI_FIXED_LENGTH = wo.PBCI_FIXED_LENGTH
cdef uint32_t NO_MN_ID = NO_MN_ID_VALUE


# ---------------------------------------------------------------------------------------------
# Octet, checksum and option helpers, and the decoders' option-length rules (shared includes)

include "octets.pxi"
include "mh_decode.pxi"


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

_LANE_KIND = {
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
    wire_t wire               # the decoders' kinds, whose Length rules the scan applies


@functools.lru_cache(maxsize=16)
def _tables(config):
    """The Binding Update flag per MH type, then the fast-lane kind per option type, under
    ``config`` (the same tables decode_mh and decode_options look types up in)."""
    table = bytearray(512)
    for code, cls in wm.message_classes(config).items():
        table[code] = cls is wm.BindingUpdate
    for code, cls in wo.option_classes(config).items():
        table[256 + code] = _LANE_KIND.get(cls, K_OTHER)
    return bytes(table)


cdef void fill_tables(tables_t* t, config):
    cdef bytes table = _tables(config)
    memcpy(t.is_bu, <const char*>table, 256)
    memcpy(t.option_kind, <const char*>table + 256, 256)
    fill_wire(&t.wire, config)


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
        if k == K_OTHER or seen & k or not length_ok(t.wire.option_kind[kind], mh, body):
            return False
        seen |= k
        if k == K_MNID:
            if length < 2 or mh[body] != MNID_SUBTYPE_NAI:
                return False  # the lane wants a non-empty NAI
            r.mn_start = base + body + 1
            r.mn_len = length - 1
        elif k == K_HNP:
            r.plen = mh[body + 1]
            memcpy(r.hnp, mh + body + 2, 16)
        elif k == K_HI:
            r.hi = mh[body + 1]
        elif k == K_ATT:
            r.att = mh[body + 1]
        elif k == K_TS:
            r.has_ts = 1
            r.ts = bswap64(load64(mh + body))
        elif k == K_LLID:
            r.llid_start = base + body + 2
            r.llid_len = length - 2
        else:  # K_LFI
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
    pos = padded_to(pos, 8, 4) + 20                   # HNP (8, 4)
    pos += 8                                       # HI, ATT (1, 0)
    if r.has_ts:
        pos = padded_to(pos, 8, 2) + 10               # Timestamp (8, 2)
    if r.llid_len >= 0:
        pos = padded_to(pos, 2, 0) + 4 + r.llid_len   # MN LL-ID (2, 0)
    return padded_to(pos, 8, 0)


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
