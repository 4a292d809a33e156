# cython: language_level=3, annotation_typing=False
"""Bulk State Synchronization: the compiled twin of ``lmaload.bulk.py_encode_state_sync``.

Sessions (PBCI, MN-ID, HNP, [Timestamp], ATT, [MN LL-ID]) are packed into SS-REPs by passes over
the selected rows in C without the GIL: one checks the rows, one decides where each message starts
and how long it is, and the last writes the octets into one buffer sized by the one before.

Every option's place follows the encoder algorithm of spec-digest §1.2. The PBCI is aligned at
8n+2, so a session's octets after its leading padding do not depend on where it starts, and
which message a session joins only depends on the lengths of the sessions before it.
"""

import struct

import numpy as np

from lmaload.bulk_types import SyncBatch
from lmaload.wire import codepoints as cp
from lmaload.wire.codepoints import DEFAULT_CONFIG

from libc.string cimport memcpy, memset

include "checksum.pxi"
include "population.pxi"

cdef enum:
    IPPROTO_MH = 135
    PAYLOAD_PROTO_NONE = 59
    OPT_PAD1 = 0
    OPT_PADN = 1
    OPT_MN_IDENTIFIER = 8
    OPT_HOME_NETWORK_PREFIX = 22
    OPT_ACCESS_TECHNOLOGY_TYPE = 24
    OPT_MN_LINK_LAYER_ID = 25
    OPT_TIMESTAMP = 27
    MNID_SUBTYPE_NAI = 1
    SS_REPLY = 1
    SS_FLAG_A = 0x80
    SS_FLAG_M = 0x40
    MH_MAX_LENGTH = 2048
    OPTIONS_START = 10  # MH header (6) and the SS fixed part: type, flags, Identifier
    PBCI_LENGTH = 28
    LL_ID_SIZE = 8  # octets of the ll_id column; the reference slices ll_id[:ll_len]
    MAX_OPTION_LENGTH = 255


include "octets.pxi"

# Outcomes of a pass over the sessions; the index of the offending session goes with them.
cdef enum:
    OK = 0
    BAD_ROW = 1  # IndexError: row outside the MN table
    BAD_MAG = 2  # IndexError: the row's MAG outside the MAG table
    BAD_LIFETIME = 3  # struct.error: lifetime not a u16
    BAD_TUNNEL_ID = 4  # struct.error: tunnel interface id not a u32
    TOO_LONG = 5  # ValueError: the session alone does not fit max_length


cdef struct params_t:
    const mn_t* mns
    Py_ssize_t n_mns
    const mag_t* mags
    Py_ssize_t n_mags
    const int64_t* rows
    const int64_t* lifetimes  # NULL: the row's lifetime column
    const int64_t* tunnel_ids  # NULL: 0
    const uint8_t* realm
    Py_ssize_t realm_len
    bint timestamp
    uint16_t flags
    Py_ssize_t limit  # max_length, capped at the MH limit


cdef inline Py_ssize_t row_of(const params_t* p, Py_ssize_t i) noexcept nogil:
    cdef int64_t row = p.rows[i]
    return row + p.n_mns if row < 0 else row  # numpy indexing, as the reference does


cdef inline int decimal_digits(uint32_t v) noexcept nogil:
    cdef int n = 1
    while v >= 10:
        v //= 10
        n += 1
    return n


cdef inline Py_ssize_t nai_length(const params_t* p, const mn_t* mn) noexcept nogil:
    """Length of ``mn{mn_id}@{realm}``."""
    return 3 + decimal_digits(mn.mn_id) + p.realm_len


cdef inline Py_ssize_t ll_length(const mn_t* mn) noexcept nogil:
    return mn.ll_len if mn.ll_len < LL_ID_SIZE else LL_ID_SIZE


cdef inline Py_ssize_t session_end(
    Py_ssize_t off, Py_ssize_t nai_len, bint timestamp, Py_ssize_t ll_len
) noexcept nogil:
    """MH offset after a session that starts at ``off``: what ``write_session`` writes."""
    off += (2 - off) & 7  # PBCI at 8n+2
    off += 2 + PBCI_LENGTH
    off += 3 + nai_len  # MN-ID, no alignment
    off += (4 - off) & 7  # HNP at 8n+4
    off += 20
    if timestamp:
        off += (2 - off) & 7  # Timestamp at 8n+2
        off += 10
    off += 4  # ATT, no alignment; it ends at 8n or 8n+4, so the MN LL-ID (2n) needs no padding
    if ll_len:
        off += 4 + ll_len
    return off


cdef inline Py_ssize_t padded(Py_ssize_t end) noexcept nogil:
    """Message length for options ending at ``end``: padded to a multiple of 8."""
    return (end + 7) & ~(<Py_ssize_t>7)


cdef int check_rows(const params_t* p, Py_ssize_t n, Py_ssize_t* bad) noexcept nogil:
    """Every row and its MAG inside their tables (the reference fails on these before it packs)."""
    cdef Py_ssize_t i, row
    for i in range(n):
        row = row_of(p, i)
        if row < 0 or row >= p.n_mns:
            bad[0] = i
            return BAD_ROW
        if p.mns[row].mag >= <uint64_t>p.n_mags:
            bad[0] = i
            return BAD_MAG
    return OK


cdef int layout(
    const params_t* p, Py_ssize_t n, int64_t* first, int64_t* offsets, Py_ssize_t* count,
    Py_ssize_t* bad,
) noexcept nogil:
    """The reference's greedy split: a session joins the current message iff the message with it,
    padded, stays within the limit. Fills ``first`` and ``offsets`` (``count`` + 1 entries)."""
    cdef Py_ssize_t i, m = 0, end = 0, e, nai_len, ll_len
    cdef const mn_t* mn
    cdef int64_t value
    offsets[0] = 0
    for i in range(n):
        if p.lifetimes != NULL:
            value = p.lifetimes[i]
            if value < 0 or value > 0xFFFF:
                bad[0] = i
                return BAD_LIFETIME
        if p.tunnel_ids != NULL:
            value = p.tunnel_ids[i]
            if value < 0 or value > 0xFFFFFFFFLL:
                bad[0] = i
                return BAD_TUNNEL_ID
        mn = &p.mns[row_of(p, i)]
        nai_len = nai_length(p, mn)
        ll_len = ll_length(mn)
        if 1 + nai_len > MAX_OPTION_LENGTH:
            bad[0] = i
            return TOO_LONG
        if m:
            e = session_end(end, nai_len, p.timestamp, ll_len)
            if padded(e) <= p.limit:
                end = e
                continue
            offsets[m] = offsets[m - 1] + padded(end)
        e = session_end(OPTIONS_START, nai_len, p.timestamp, ll_len)
        if padded(e) > p.limit:
            bad[0] = i
            return TOO_LONG
        first[m] = i
        m += 1
        end = e
    if m:
        offsets[m] = offsets[m - 1] + padded(end)
    first[m] = n
    count[0] = m
    return OK


cdef inline Py_ssize_t put_decimal(uint8_t* q, uint32_t v) noexcept nogil:
    cdef int n = decimal_digits(v), k
    for k in range(n - 1, -1, -1):
        q[k] = <uint8_t>(48 + v % 10)
        v //= 10
    return n


cdef Py_ssize_t write_session(
    const params_t* p, Py_ssize_t i, uint8_t* mh, Py_ssize_t off, uint8_t pbci_type
) noexcept nogil:
    """Session ``i`` at MH offset ``off``; returns the offset after it."""
    cdef const mn_t* mn = &p.mns[row_of(p, i)]
    cdef uint8_t* q
    cdef Py_ssize_t nai_len = nai_length(p, mn), ll_len = ll_length(mn)

    off = put_padding(mh, off, (2 - off) & 7)
    q = mh + off
    q[0] = pbci_type
    q[1] = PBCI_LENGTH
    put_be16(q + 2, p.flags)
    put_be16(q + 4, mn.seq)
    put_be16(q + 6, <uint16_t>(p.lifetimes[i] if p.lifetimes != NULL else mn.lifetime))
    q[8] = 0
    q[9] = 0
    put_be32(q + 10, <uint32_t>(p.tunnel_ids[i] if p.tunnel_ids != NULL else 0))
    memcpy(q + 14, p.mags[mn.mag].addr6, 16)
    off += 2 + PBCI_LENGTH

    q = mh + off
    q[0] = OPT_MN_IDENTIFIER
    q[1] = <uint8_t>(1 + nai_len)
    q[2] = MNID_SUBTYPE_NAI
    q[3] = b'm'
    q[4] = b'n'
    q += 5 + put_decimal(q + 5, mn.mn_id)
    q[0] = b'@'
    memcpy(q + 1, p.realm, p.realm_len)
    off += 3 + nai_len

    off = put_padding(mh, off, (4 - off) & 7)
    q = mh + off
    q[0] = OPT_HOME_NETWORK_PREFIX
    q[1] = 18
    q[2] = 0
    q[3] = mn.hnp_len
    memcpy(q + 4, mn.hnp, 16)
    off += 20

    if p.timestamp:
        off = put_padding(mh, off, (2 - off) & 7)
        q = mh + off
        q[0] = OPT_TIMESTAMP
        q[1] = 8
        put_be64(q + 2, mn.ts)
        off += 10

    q = mh + off
    q[0] = OPT_ACCESS_TECHNOLOGY_TYPE
    q[1] = 2
    q[2] = 0
    q[3] = mn.att
    off += 4

    if ll_len:
        q = mh + off
        q[0] = OPT_MN_LINK_LAYER_ID
        q[1] = <uint8_t>(2 + ll_len)
        q[2] = 0
        q[3] = 0
        memcpy(q + 4, mn.ll_id, ll_len)
        off += 4 + ll_len
    return off


cdef inline uint16_t message_identifier(
    uint16_t identifier, Py_ssize_t k, uint16_t step
) noexcept nogil:
    """lmaload.bulk.sync_identifier: stepping counts through 1..65535, never 0 (R14)."""
    if step == 0:
        return identifier
    return <uint16_t>((<int64_t>identifier + 0xFFFE + <int64_t>k * step) % 0xFFFF + 1)


cdef void write_messages(
    const params_t* p, const int64_t* first, const int64_t* offsets, Py_ssize_t count,
    uint8_t* out, uint8_t mh_type, uint8_t pbci_type, uint8_t ack_flag, uint16_t identifier,
    uint16_t identifier_step, const uint8_t* src, const uint8_t* dst,
) noexcept nogil:
    cdef Py_ssize_t k, i, off, length
    cdef uint8_t* mh
    cdef uint64_t s
    for k in range(count):
        mh = out + offsets[k]
        length = offsets[k + 1] - offsets[k]
        mh[0] = PAYLOAD_PROTO_NONE
        mh[1] = <uint8_t>(length // 8 - 1)
        mh[2] = mh_type
        mh[3] = 0
        mh[4] = 0
        mh[5] = 0
        mh[6] = SS_REPLY
        mh[7] = ack_flag | (SS_FLAG_M if k < count - 1 else 0)
        put_be16(mh + 8, message_identifier(identifier, k, identifier_step))
        off = OPTIONS_START
        for i in range(first[k], first[k + 1]):
            off = write_session(p, i, mh, off, pbci_type)
        put_padding(mh, off, length - off)
        if src != NULL:
            s = csum_pseudo_header(src, dst, length, IPPROTO_MH) + csum_add(mh, length)
            put_be16(mh + 4, csum_fold(s))


def encode_state_sync(
    pop: Population,
    rows: np.ndarray,
    src: IPv6Address,
    dst: IPv6Address,
    identifier: int,
    identifier_step: int = 0,
    ack: bool = False,
    flags: int = cp.PBU_DEFAULT_FLAGS,
    lifetimes: np.ndarray | None = None,
    tunnel_interface_ids: np.ndarray | None = None,
    timestamp: bool = True,
    max_length: int = cp.MH_MAX_LENGTH,
    config: WireConfig = DEFAULT_CONFIG,
) -> SyncBatch:
    """Same octets, ``first`` and ``offsets`` as ``lmaload.bulk.py_encode_state_sync``."""
    if not (0 <= identifier <= 0xFFFF and 0 <= identifier_step <= 0xFFFF):
        raise ValueError("identifier and identifier_step are 16-bit values")
    row_array = np.ascontiguousarray(rows, dtype=np.int64)
    cdef Py_ssize_t n = row_array.shape[0]
    if n == 0:
        empty = np.zeros(1, dtype=np.int64)
        return SyncBatch(np.zeros(0, dtype=np.uint8), empty, empty.copy())

    cdef const mn_t[::1] mns = np.ascontiguousarray(pop.mns)
    cdef const mag_t[::1] mags = np.ascontiguousarray(pop.mags)
    cdef const int64_t[::1] row_view = row_array
    cdef const int64_t[::1] lifetime_view
    cdef const int64_t[::1] tunnel_view
    cdef bytes realm = pop.realm.encode()
    cdef params_t p
    p.mns = &mns[0] if mns.shape[0] else NULL
    p.n_mns = mns.shape[0]
    p.mags = &mags[0] if mags.shape[0] else NULL
    p.n_mags = mags.shape[0]
    p.rows = &row_view[0]
    p.lifetimes = NULL
    p.tunnel_ids = NULL
    p.realm = realm
    p.realm_len = len(realm)
    p.timestamp = bool(timestamp)
    p.limit = max(0, min(max_length, MH_MAX_LENGTH))

    cdef Py_ssize_t bad = 0
    cdef int status
    with nogil:
        status = check_rows(&p, n, &bad)
    if status == BAD_ROW:
        raise IndexError(f"row {row_view[bad]} is outside the {p.n_mns} mobile nodes")
    if status == BAD_MAG:
        row = row_of(&p, bad)
        raise IndexError(f"MAG {mns[row].mag} of row {row} is outside the {p.n_mags} MAGs")
    if lifetimes is not None:
        if len(lifetimes) < n:
            raise IndexError(f"{len(lifetimes)} lifetimes for {n} rows")
        lifetime_view = np.ascontiguousarray(lifetimes[:n], dtype=np.int64)
        p.lifetimes = &lifetime_view[0]
    if tunnel_interface_ids is not None:
        if len(tunnel_interface_ids) < n:
            raise IndexError(f"{len(tunnel_interface_ids)} tunnel interface ids for {n} rows")
        tunnel_view = np.ascontiguousarray(tunnel_interface_ids[:n], dtype=np.int64)
        p.tunnel_ids = &tunnel_view[0]
    # struct.error: what the reference's struct.pack of the PBCI raises for out-of-range fields.
    if not 0 <= flags <= 0xFFFF:
        raise struct.error(f"PBCI flags {flags} are not a 16-bit value")
    p.flags = flags

    first = np.empty(n + 1, dtype=np.int64)
    offsets = np.empty(n + 1, dtype=np.int64)
    cdef int64_t[::1] first_view = first
    cdef int64_t[::1] offsets_view = offsets
    cdef Py_ssize_t count = 0
    with nogil:
        status = layout(&p, n, &first_view[0], &offsets_view[0], &count, &bad)
    if status == BAD_LIFETIME:
        raise struct.error(f"lifetime {lifetime_view[bad]} is not a 16-bit value")
    if status == BAD_TUNNEL_ID:
        raise struct.error(f"tunnel interface id {tunnel_view[bad]} is not a 32-bit value")
    if status == TOO_LONG:
        raise ValueError(f"session of row {row_view[bad]} alone exceeds {max_length} octets")

    buf = np.empty(offsets_view[count], dtype=np.uint8)
    cdef uint8_t[::1] buf_view = buf
    cdef bytes src_packed, dst_packed
    cdef const uint8_t* src_ptr = NULL  # no addresses: checksum left 0, as encode_mh does
    cdef const uint8_t* dst_ptr = NULL
    if src is not None and dst is not None:
        src_packed, dst_packed = src.packed, dst.packed
        src_ptr, dst_ptr = src_packed, dst_packed
    cdef uint8_t mh_type = config.mh_state_sync
    cdef uint8_t pbci_type = config.opt_pbci
    cdef uint8_t ack_flag = SS_FLAG_A if ack else 0
    cdef uint16_t ident = identifier
    cdef uint16_t step = identifier_step
    with nogil:
        write_messages(
            &p, &first_view[0], &offsets_view[0], count, &buf_view[0], mh_type, pbci_type,
            ack_flag, ident, step, src_ptr, dst_ptr,
        )
    return SyncBatch(buf, offsets[: count + 1].copy(), first[: count + 1].copy())
