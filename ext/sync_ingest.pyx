# cython: language_level=3
"""The standby LMA's State Synchronization ingest (spec-digest §7.2, R14): the SS-REPs of a
received batch that come from a known peer to this LMA are scanned, their sessions stored in the
binding cache and their SS-ACKs encoded, all in one call (``ingest``). ``scan_ss_rep`` is the scan
of one SS-REP as ``ingest`` runs it, into SS_SESSION_DTYPE records.

The pure-Python twin is the reference path: lmaload.wire.decode_mh, then
lmaload.protocol.lma.sync_in.SyncIn.on_reply (StateSync.sessions, SyncedSession.parse, _apply),
answered by lmaload.protocol.lma.sync_out.encode_ss_ack. An SS-REP the scan declines — malformed,
a bad checksum, nested PBCIs, options other than the session ones and one lead Restart Counter,
an option twice in a session, an MN-ID that is not a non-empty NAI, an HNP with host bits set — is
left in the batch for the reference path.
"""

import functools

import numpy as np

cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

from lmaload._ext.cache_index cimport CacheIndex

from lmaload.bce import BCE_DTYPE, BceState
from lmaload.bulk_types import NO_MN_ID as NO_MN_ID_VALUE
from lmaload.bulk_types import SS_SESSION_DTYPE
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
    SS_ACK_LENGTH = 16

cdef uint8_t IPPROTO_MH = cp.IPPROTO_MH
cdef uint8_t PAYLOAD_PROTO_NONE = cp.PAYLOAD_PROTO_NONE
cdef uint8_t OPT_PAD1 = cp.OPT_PAD1
cdef uint8_t OPT_PADN = cp.OPT_PADN
cdef uint8_t MNID_SUBTYPE_NAI = cp.MNID_SUBTYPE_NAI
cdef uint8_t PBCI_FIXED_LENGTH = wo.PBCI_FIXED_LENGTH
cdef uint32_t NO_MN_ID = NO_MN_ID_VALUE
cdef uint8_t SS_REPLY = cp.SS_REPLY
cdef uint8_t SS_FLAG_A = cp.SS_FLAG_A
cdef uint8_t SYNCED = BceState.SYNCED
cdef uint8_t MOVED = BceState.MOVED


def _offset(dtype, name):
    return dtype.fields[name][1]


include "octets.pxi"
include "mh_decode.pxi"
include "cache_rows.pxi"


# ---------------------------------------------------------------------------------------------
# The scan of one SS-REP

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
    const uint8_t* mh, Py_ssize_t n, const uint8_t* kinds, const wire_t* w, session_t* out,
    int64_t* counter,
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
        if k == Q_OTHER or not length_ok(w.option_kind[kind], mh, body):
            return -1
        if k == Q_RC:
            if s != NULL or counter[0] >= 0:
                return -1  # only one lead Restart Counter, before the sessions
            counter[0] = be32(mh + body)
            continue
        if k == Q_PBCI:
            if length != PBCI_FIXED_LENGTH:
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
                return -1  # the scan wants a non-empty NAI
            s.mn_start = body + 1
            s.mn_len = length - 1
        elif k == Q_HNP:
            if host_bits(mh + body + 2, mh[body + 1]):
                return -1
            s.plen = mh[body + 1]
            memcpy(s.hnp, mh + body + 2, 16)
        elif k == Q_ATT:
            s.att = mh[body + 1]
        elif k == Q_TS:
            s.ts = bswap64(load64(mh + body))
        elif k == Q_LLID:
            s.llid_start = body + 2
            s.llid_len = length - 2
        else:  # Q_LLA
            s.has_lla = 1
            memcpy(s.lla, mh + body, 16)
    if s != NULL:
        s.ok = (seen & Q_REQUIRED) == Q_REQUIRED
    return count


cdef inline bint scan_ok(
    const uint8_t* mh, Py_ssize_t n, const uint8_t* src, const uint8_t* dst, const uint8_t* t,
    const wire_t* w, session_t* out, int64_t* counter, Py_ssize_t* count,
) noexcept nogil:
    """Whether the scan takes mh[0:n] (from src to dst) as an SS-REP: its sessions into out and
    count[0], its lead Restart Counter (or -1) into counter[0]."""
    if n < 16 or mh[0] != PAYLOAD_PROTO_NONE or (mh[1] + 1) * 8 != n or mh[2] != t[0]:
        return False
    if mh[6] != SS_REPLY:
        return False
    count[0] = scan_sessions(mh, n, t + 1, w, out, counter)
    return count[0] >= 0 and finish(n + IPPROTO_MH, address_sum(src, dst) + native_sum(mh, n)) == 0


cdef inline Py_ssize_t max_sessions(Py_ssize_t n) noexcept nogil:
    """More sessions than an SS-REP of n octets can hold (a PBCI takes 30)."""
    return n // 30 + 1


def scan_ss_rep(data, bytes src not None, bytes dst not None, config=DEFAULT_CONFIG):
    """An SS-REP Mobility Header ``data`` (received from ``src`` at ``dst``, 16 octets each) as
    (flags, identifier, lead Restart Counter or -1, SS_SESSION_DTYPE records; MN-ID and LL-ID
    offsets into ``data``), or None when the scan declines it (see the module docstring). The
    records are what ``StateSync.sessions`` and ``SyncedSession.parse`` give, ``ok`` 0 where
    parse gives None."""
    if len(src) != 16 or len(dst) != 16:
        raise ValueError("src and dst are 16 octets")
    buf = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    cdef const uint8_t* mh = <const uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>buf)
    cdef Py_ssize_t n = len(buf)
    cdef bytes tables = _ss_tables(config)
    cdef wire_t w
    fill_wire(&w, config)
    out = np.zeros(max_sessions(n), dtype=SS_SESSION_DTYPE)
    cdef session_t* rec = <session_t*>cnp.PyArray_DATA(<cnp.ndarray>out)
    cdef int64_t counter
    cdef Py_ssize_t count = 0
    cdef const uint8_t* s = src
    cdef const uint8_t* d = dst
    cdef const uint8_t* t = tables
    cdef bint ok
    with nogil:
        ok = scan_ok(mh, n, s, d, t, &w, rec, &counter, &count)
    if not ok:
        return None
    return mh[7], be16(mh + 8), counter, out[:count]


# ---------------------------------------------------------------------------------------------
# ingest

cdef class Ingested:
    """What one ``ingest`` did. Per SS-REP taken, in order: its index in the batch (``taken``),
    flags, identifier and sender (index into the peers). The rows stored with their new expiry
    (``row[:count]``, ``expires[:count]``); the sessions dropped as older than the copy held
    (``stale``) or missing a mandatory option (``bad``); the last lead Restart Counter (-1:
    none). The SS-ACKs asked for (A=1), laid end to end: ``acks`` with ``ack_offsets``, from
    ``ack_src`` to ``ack_dst`` (packed addresses)."""

    cdef public object taken, flags, identifier, peer, row, expires
    cdef public object acks, ack_offsets, ack_src, ack_dst
    cdef public Py_ssize_t messages, count, stale, bad
    cdef public int64_t counter


cdef int store_sessions(
    cache, Indexes ix, const uint8_t* mh, const session_t* sessions, Py_ssize_t n,
    const uint8_t* anchor, double now, delete, int64_t* o_row, double* o_expires, Ingested out,
) except -1:
    """Store the sessions of one SS-REP from ``anchor`` as SyncIn._apply does one by one: state
    SYNCED, anchor the sender; lifetime 0 deletes a synced or moved copy; a copy older than ours
    (by Timestamp, else sequence number) is dropped. A row whose MN or prefixes differ is given
    to ``delete(row)`` first (LmaState.delete, which also returns the prefix to the pool)."""
    cdef CacheIndex index = ix.index
    cdef const session_t* s
    cdef uint8_t* rows = <uint8_t*>cnp.PyArray_DATA(cache.rows)
    cdef uint8_t* r = NULL
    cdef uint8_t key_octets[17]
    cdef object mn, key, llid, mag
    cdef Py_ssize_t i, row, found
    cdef uint64_t held_ts
    cdef double expires
    cdef bint is_stale
    for i in range(n):
        s = sessions + i
        if not s.ok:
            out.bad += 1
            continue
        mn = PyBytes_FromStringAndSize(<const char*>mh + s.mn_start, s.mn_len)
        memcpy(key_octets, s.hnp, 16)
        key_octets[16] = s.plen
        found = index.find_prefix(key_octets)
        if found >= 0 and not holds(ix, found, mn, key_octets):
            delete(found)
            found = -1
        if found >= 0:
            r = rows + found * ROW_SIZE
            held_ts = get64(r + R_TS)
            if held_ts and s.ts:
                is_stale = s.ts < held_ts
            else:
                is_stale = serial_newer(get16(r + R_SEQ), s.seq)
            if is_stale:
                out.stale += 1
                continue
        if s.lifetime == 0:
            if found >= 0 and (r[R_STATE] == SYNCED or r[R_STATE] == MOVED):
                delete(found)
            continue
        if found < 0:
            llid = None
            if s.llid_len >= 0:
                llid = PyBytes_FromStringAndSize(<const char*>mh + s.llid_start, s.llid_len)
            mag = PyBytes_FromStringAndSize(<const char*>s.proxy_coa, 16)
            key = PyBytes_FromStringAndSize(<const char*>key_octets, 17)
            row = new_row(cache, ix, mn, key, llid, mag)
            rows = <uint8_t*>cnp.PyArray_DATA(cache.rows)
            r = rows + row * ROW_SIZE
        else:
            row = found
            if memcmp(r + R_PROXY_COA, s.proxy_coa, 16) != 0:
                cache.move(row, PyBytes_FromStringAndSize(<const char*>s.proxy_coa, 16))
        expires = now + 4.0 * s.lifetime
        set_state(index, r, SYNCED)
        memcpy(r + R_ANCHOR, anchor, 16)
        memcpy(r + R_FLAGS, &s.flags, 2)
        memcpy(r + R_SEQ, &s.seq, 2)
        memcpy(r + R_LIFETIME, &s.lifetime, 2)
        memcpy(r + R_EXPIRES, &expires, 8)
        memcpy(r + R_TS, &s.ts, 8)
        r[R_ATT] = s.att
        memcpy(r + R_PROXY_COA, s.proxy_coa, 16)
        if s.has_lla:
            memcpy(r + R_LLA, s.lla, 16)
        else:
            memset(r + R_LLA, 0, 16)
        memcpy(r + R_TUNNEL, &s.tunnel, 4)
        o_row[out.count] = row
        o_expires[out.count] = expires
        out.count += 1
    return 0


cdef inline Py_ssize_t peer_of(
    const uint8_t* address, const uint8_t* peers, Py_ssize_t n
) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        if memcmp(address, peers + 16 * k, 16) == 0:
            return k
    return -1


cdef inline void put_ss_ack(
    uint8_t* q, const uint8_t* template, uint16_t identifier, const uint8_t* src,
    const uint8_t* dst,
) noexcept nogil:
    """encode_ss_ack(identifier, src, dst) at q, from its template."""
    memcpy(q, template, SS_ACK_LENGTH)
    q[4] = q[5] = 0
    put_be16(q + 8, identifier)
    put_be16(q + 4, csum_fold(
        csum_pseudo_header(src, dst, SS_ACK_LENGTH, IPPROTO_MH) + csum_add(q, SS_ACK_LENGTH)
    ))


cdef inline bint _ss_rep_to(
    const uint8_t* d, Py_ssize_t start, Py_ssize_t length, uint8_t mh_type,
    const uint8_t[:, :] dst, Py_ssize_t i, const uint8_t* me,
) noexcept:
    """Whether datagram ``i`` (``d[start:start + length]``) is an SS-REP by its type octets,
    addressed to ``me``."""
    cdef uint8_t address[16]
    cdef Py_ssize_t k
    if length < 16 or d[start + 2] != mh_type or d[start + 6] != SS_REPLY:
        return False
    for k in range(16):
        address[k] = dst[i, k]
    return memcmp(address, me, 16) == 0


def ingest(
    cache,
    const uint8_t[::1] buf,
    const int64_t[:] starts,
    const int64_t[:] ends,
    const uint8_t[:, :] src,
    const uint8_t[:, :] dst,
    bytes own not None,
    const uint8_t[:, ::1] peers,
    double now,
    delete,
    bytes ack_template not None,
    config=DEFAULT_CONFIG,
):
    """Take the SS-REPs of a received batch (datagram ``i`` is ``buf[starts[i]:ends[i]]`` from
    ``src[i]`` to ``dst[i]``) that come from one of ``peers`` ((n, 16) packed addresses) to
    ``own`` (16 octets) and that the scan takes: store their sessions in ``cache`` (a
    BindingCache) in order and answer those asking for it (A=1) with the SS-ACK built from
    ``ack_template`` (``encode_ss_ack``'s octets for any identifier and addresses). An
    ``Ingested``, or None when the batch holds none to take."""
    if len(own) != 16 or len(ack_template) != SS_ACK_LENGTH:
        raise ValueError("own is 16 octets and the SS-ACK template 16")
    cdef Py_ssize_t n = starts.shape[0], npeers = peers.shape[0], i, k, length, start
    if n == 0 or npeers == 0:
        return None
    if ends.shape[0] != n or src.shape[0] != n or dst.shape[0] != n:
        raise ValueError("the batch's columns differ in length")
    cdef bytes tables = _ss_tables(config)
    cdef const uint8_t* t = <const uint8_t*>tables
    cdef const uint8_t* d = &buf[0] if buf.shape[0] else NULL
    cdef const uint8_t* me = <const uint8_t*>PyBytes_AS_STRING(own)
    cdef const uint8_t* p = &peers[0, 0]
    cdef uint8_t address[16]
    cdef Py_ssize_t candidates = 0, longest = 0, capacity = 0
    # A first pass finds the candidates: SS-REPs by their type octets, to this LMA, from a peer.
    for i in range(n):
        start, length = starts[i], ends[i] - starts[i]
        if not _ss_rep_to(d, start, length, t[0], dst, i, me):
            continue
        candidates += 1
        longest = max(longest, length)
        capacity += max_sessions(length)
    if not candidates:
        return None
    cdef wire_t w
    fill_wire(&w, config)
    scratch = np.empty(max_sessions(longest), dtype=SS_SESSION_DTYPE)
    cdef session_t* sessions = <session_t*>cnp.PyArray_DATA(<cnp.ndarray>scratch)
    out = Ingested()
    out.taken = np.empty(candidates, dtype=np.int64)
    out.flags = np.empty(candidates, dtype=np.uint8)
    out.identifier = np.empty(candidates, dtype=np.uint16)
    out.peer = np.empty(candidates, dtype=np.int64)
    out.row = np.empty(capacity, dtype=np.int64)
    out.expires = np.empty(capacity, dtype=np.float64)
    acks = np.empty(SS_ACK_LENGTH * candidates, dtype=np.uint8)
    ack_dst = np.empty((candidates, 16), dtype=np.uint8)
    cdef int64_t[::1] taken = out.taken
    cdef uint8_t[::1] flags = out.flags
    cdef uint16_t[::1] identifier = out.identifier
    cdef int64_t[::1] peer = out.peer
    cdef int64_t* o_row = <int64_t*>cnp.PyArray_DATA(<cnp.ndarray>out.row)
    cdef double* o_expires = <double*>cnp.PyArray_DATA(<cnp.ndarray>out.expires)
    cdef uint8_t* q = <uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>acks)
    cdef uint8_t* q_dst = <uint8_t*>cnp.PyArray_DATA(<cnp.ndarray>ack_dst)
    cdef const uint8_t* template = <const uint8_t*>PyBytes_AS_STRING(ack_template)
    cdef const uint8_t* mh
    cdef Py_ssize_t messages = 0, nacks = 0, count, sender
    cdef int64_t counter, last_counter = -1
    cdef Indexes ix = Indexes(cache)
    out.count = out.stale = out.bad = 0
    for i in range(n):
        start, length = starts[i], ends[i] - starts[i]
        if not _ss_rep_to(d, start, length, t[0], dst, i, me):
            continue
        for k in range(16):
            address[k] = src[i, k]
        sender = peer_of(address, p, npeers)
        mh = d + start
        if sender < 0 or not scan_ok(mh, length, address, me, t, &w, sessions, &counter, &count):
            continue
        store_sessions(
            cache, ix, mh, sessions, count, address, now, delete, o_row, o_expires, out
        )
        if counter >= 0:
            last_counter = counter
        taken[messages] = i
        flags[messages] = mh[7]
        identifier[messages] = be16(mh + 8)
        peer[messages] = sender
        messages += 1
        if mh[7] & SS_FLAG_A:
            put_ss_ack(q + SS_ACK_LENGTH * nacks, template, be16(mh + 8), me, address)
            memcpy(q_dst + 16 * nacks, address, 16)
            nacks += 1
    if not messages:
        return None
    out.messages = messages
    out.counter = last_counter
    out.taken = out.taken[:messages]
    out.flags = out.flags[:messages]
    out.identifier = out.identifier[:messages]
    out.peer = out.peer[:messages]
    out.acks = acks[: SS_ACK_LENGTH * nacks]
    out.ack_offsets = np.arange(0, SS_ACK_LENGTH * (nacks + 1), SS_ACK_LENGTH, dtype=np.int64)
    out.ack_dst = ack_dst[:nacks]
    out.ack_src = np.frombuffer(own * nacks, dtype=np.uint8).reshape(nacks, 16)
    return out
