# cython: language_level=3, annotation_typing=False
"""Bulk State Synchronization: the compiled twin of ``lmaload.bulk.py_encode_state_sync``.

Sessions (PBCI, MN-ID, HNP, [Timestamp], ATT, [MN LL-ID]) are packed into SS-REPs by passes over
the selected rows in C without the GIL: one checks the rows, one reads them into the sessions of
the one State Sync writer (ext/state_sync.pxi, shared with ext/bce_sync.pyx), one decides where
each message starts and how long it is, and the last writes the octets into one buffer sized by
the one before.

Every option's place follows the encoder algorithm of spec-digest §1.2. The PBCI is aligned at
8n+2, so a session's octets after its leading padding do not depend on where it starts, and
which message a session joins only depends on the lengths of the sessions before it.
"""

import struct

import numpy as np

from lmaload.bulk_types import SyncBatch
from lmaload.wire import codepoints as cp
from lmaload.wire.codepoints import DEFAULT_CONFIG

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t

include "checksum.pxi"
include "population.pxi"

cdef uint8_t OPT_PAD1 = cp.OPT_PAD1
cdef uint8_t OPT_PADN = cp.OPT_PADN

include "octets.pxi"
include "state_sync.pxi"

cdef enum:
    LL_ID_SIZE = 8  # octets of the ll_id column; the reference slices ll_id[:ll_len]

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
    Py_ssize_t realm_len
    bint timestamp
    uint16_t flags


cdef inline Py_ssize_t row_of(const params_t* p, Py_ssize_t i) noexcept nogil:
    cdef int64_t row = p.rows[i]
    return row + p.n_mns if row < 0 else row  # numpy indexing, as the reference does


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


cdef int fill_sessions(
    const params_t* p, Py_ssize_t n, ss_session_t* sessions, const uint8_t** keys,
    Py_ssize_t* bad,
) noexcept nogil:
    """The sessions of the selected rows for the writer, each checked as the reference's
    struct.pack and encode_options check it."""
    cdef Py_ssize_t i
    cdef const mn_t* mn
    cdef ss_session_t* s
    cdef int64_t value
    for i in range(n):
        s = &sessions[i]
        mn = &p.mns[row_of(p, i)]
        if p.lifetimes != NULL:
            value = p.lifetimes[i]
            if value < 0 or value > 0xFFFF:
                bad[0] = i
                return BAD_LIFETIME
            s.lifetime = <uint16_t>value
        else:
            s.lifetime = mn.lifetime
        if p.tunnel_ids != NULL:
            value = p.tunnel_ids[i]
            if value < 0 or value > 0xFFFFFFFFLL:
                bad[0] = i
                return BAD_TUNNEL_ID
            s.tunnel = <uint32_t>value
        else:
            s.tunnel = 0
        s.mn_len = 3 + decimal_digits(mn.mn_id) + p.realm_len  # mn{mn_id}@{realm}
        if 1 + s.mn_len > MAX_OPTION_LENGTH:
            bad[0] = i
            return TOO_LONG
        s.flags = p.flags
        s.seq = mn.seq
        s.proxy_coa = p.mags[mn.mag].addr6
        s.mn_id = NULL
        s.mn_number = mn.mn_id
        keys[i] = mn.hnp  # hnp, then hnp_len: a prefix key
        s.key0 = i
        s.n_keys = 1
        s.att = mn.att
        s.has_ts = p.timestamp
        s.ts = mn.ts
        s.ll_len = mn.ll_len if mn.ll_len < LL_ID_SIZE else LL_ID_SIZE
        s.ll_id = mn.ll_id if s.ll_len else NULL
        s.lla = NULL
    return OK


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
    p.realm_len = len(realm)
    p.timestamp = bool(timestamp)

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

    cdef ss_messages_t m
    cdef bytes src_packed, dst_packed
    m.mh_type = config.mh_state_sync
    m.pbci_type = config.opt_pbci
    m.ts_before_att = True
    m.realm = realm
    m.realm_len = len(realm)
    m.lead = False
    m.restart_counter = 0
    m.identifier = identifier
    m.identifier_step = identifier_step
    m.ack_flag = SS_FLAG_A if ack else 0
    m.more = True
    m.src = NULL
    m.dst = NULL
    if src is not None and dst is not None:
        src_packed, dst_packed = src.packed, dst.packed
        m.src, m.dst = src_packed, dst_packed

    cdef ss_session_t* sessions = <ss_session_t*>PyMem_Malloc(n * sizeof(ss_session_t))
    cdef const uint8_t** keys = <const uint8_t**>PyMem_Malloc(n * sizeof(uint8_t*))
    cdef Py_ssize_t limit = max(0, min(max_length, MH_MAX_LENGTH)), count = 0
    cdef int64_t[::1] first_view, offsets_view
    cdef uint8_t[::1] buf_view
    try:
        if sessions == NULL or keys == NULL:
            raise MemoryError()
        with nogil:
            status = fill_sessions(&p, n, sessions, keys, &bad)
        if status == BAD_LIFETIME:
            raise struct.error(f"lifetime {lifetime_view[bad]} is not a 16-bit value")
        if status == BAD_TUNNEL_ID:
            raise struct.error(f"tunnel interface id {tunnel_view[bad]} is not a 32-bit value")
        first = np.empty(n + 2, dtype=np.int64)
        offsets = np.empty(n + 2, dtype=np.int64)
        first_view = first
        offsets_view = offsets
        if status == OK:
            with nogil:
                count = layout(&m, sessions, n, limit, &first_view[0], &offsets_view[0], &bad)
        if status == TOO_LONG or count < 0:
            raise ValueError(f"session of row {row_view[bad]} alone exceeds {max_length} octets")
        buf = np.empty(offsets_view[count], dtype=np.uint8)
        buf_view = buf
        with nogil:
            write_messages(
                &m, sessions, keys, &first_view[0], &offsets_view[0], count, &buf_view[0]
            )
        return SyncBatch(buf, offsets[: count + 1].copy(), first[: count + 1].copy())
    finally:
        PyMem_Free(sessions)
        PyMem_Free(keys)
