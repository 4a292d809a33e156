# cython: language_level=3
"""The LMA engine's fast lane: RFC 5213 PBU processing (spec-digest §3.2) for the common PBU, in
compiled code, over the columnar binding cache.

``lmaload.protocol.lma.LmaEngine`` hands a run of scanned PBUs (``lmaload._ext.lma_batch``
scan records, ``lmaload.bulk_types.PBU_SCAN_DTYPE``) to ``Lane.run``. The lane takes the
cases that make up a load: a new session asking for a prefix (ALL_ZERO HNP), and a PBU for an
entry in the cache from the MAG it names (its prefix, newer Timestamp or sequence number): a
refresh, a revival of a de-registered entry, or the adoption of a synchronised one at takeover.
It stops, with nothing changed, at the first PBU that needs anything else — a rejection, a
hand-off, an explicitly requested new prefix, an exhausted pool — and
the engine gives that one to the reference path (``LmaEngine._receive_one``) before running the
lane again from the next. The outcome is the reference's, PBU for PBU, which the differential
tests check.

The lane writes the binding cache rows (by the field offsets of ``BCE_DTYPE``), the cache's
lists and indexes, the pool and the tunnel table; the engine then arms the expiry of the accepted
rows, records them for State Synchronization and encodes their PBAs in one call.

``PrefixPool`` lives here too, compiled, so that the lane allocates without a Python call; the
reference path uses the same object.
"""

import numpy as np

cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.math cimport fabs, isnan
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

from lmaload.bulk_types import PBU_SCAN_DTYPE, SS_SESSION_DTYPE
from lmaload.bce import BCE_DTYPE, BceState
from lmaload.wire import codepoints as cp

cnp.import_array()


def _offset(dtype, name):
    return dtype.fields[name][1]


# Binding cache row layout.
cdef Py_ssize_t ROW_SIZE = BCE_DTYPE.itemsize
cdef Py_ssize_t R_STATE = _offset(BCE_DTYPE, "state")
cdef Py_ssize_t R_FLAGS = _offset(BCE_DTYPE, "flags")
cdef Py_ssize_t R_SEQ = _offset(BCE_DTYPE, "seq")
cdef Py_ssize_t R_LIFETIME = _offset(BCE_DTYPE, "lifetime")
cdef Py_ssize_t R_EXPIRES = _offset(BCE_DTYPE, "expires")
cdef Py_ssize_t R_TS = _offset(BCE_DTYPE, "ts")
cdef Py_ssize_t R_ATT = _offset(BCE_DTYPE, "att")
cdef Py_ssize_t R_HI = _offset(BCE_DTYPE, "hi")
cdef Py_ssize_t R_TUNNEL = _offset(BCE_DTYPE, "tunnel")
cdef Py_ssize_t R_PROXY_COA = _offset(BCE_DTYPE, "proxy_coa")
cdef Py_ssize_t R_ANCHOR = _offset(BCE_DTYPE, "anchor")

# Scan record layout.
cdef Py_ssize_t SCAN_SIZE = PBU_SCAN_DTYPE.itemsize
cdef Py_ssize_t S_FLAGS = _offset(PBU_SCAN_DTYPE, "flags")
cdef Py_ssize_t S_SEQ = _offset(PBU_SCAN_DTYPE, "seq")
cdef Py_ssize_t S_LIFETIME = _offset(PBU_SCAN_DTYPE, "lifetime")
cdef Py_ssize_t S_MN_START = _offset(PBU_SCAN_DTYPE, "mn_start")
cdef Py_ssize_t S_MN_LEN = _offset(PBU_SCAN_DTYPE, "mn_len")
cdef Py_ssize_t S_HNP = _offset(PBU_SCAN_DTYPE, "hnp")
cdef Py_ssize_t S_PLEN = _offset(PBU_SCAN_DTYPE, "plen")
cdef Py_ssize_t S_HNP_ZERO = _offset(PBU_SCAN_DTYPE, "hnp_zero")
cdef Py_ssize_t S_HI = _offset(PBU_SCAN_DTYPE, "hi")
cdef Py_ssize_t S_ATT = _offset(PBU_SCAN_DTYPE, "att")
cdef Py_ssize_t S_HAS_TS = _offset(PBU_SCAN_DTYPE, "has_ts")
cdef Py_ssize_t S_TS = _offset(PBU_SCAN_DTYPE, "ts")
cdef Py_ssize_t S_LLID_START = _offset(PBU_SCAN_DTYPE, "llid_start")
cdef Py_ssize_t S_LLID_LEN = _offset(PBU_SCAN_DTYPE, "llid_len")

cdef uint8_t ACTIVE = BceState.ACTIVE
cdef uint8_t HI_BETWEEN_INTERFACES = cp.HI_HANDOFF_BETWEEN_INTERFACES
cdef uint8_t HI_BETWEEN_MAGS = cp.HI_HANDOFF_BETWEEN_MAGS
cdef uint8_t HI_UNKNOWN = cp.HI_UNKNOWN
# lmaload._ext.lma_step's codes
cdef uint8_t LANE = 1
cdef uint8_t SHED = 4


cdef extern from *:
    ctypedef unsigned long long u128 "unsigned __int128"


cdef class PrefixPool:
    """Allocation of home network prefixes from the LMA's pool (RFC 5213 §5.3.2, ALL_ZERO HNP),
    as binding-cache prefix keys (``binding_cache.prefix_key``): the pool's /``length`` subnets
    in order, then the released ones (last released first), skipping any that is a key of
    ``taken`` (the cache's prefix index: prefixes of sessions synchronised from a peer)."""

    cdef u128 _base, _step, _count, _next
    cdef uint8_t _length
    cdef list _released
    cdef dict _taken

    def __init__(self, pool, int length, dict taken):
        if not pool.prefixlen <= length <= 128:
            raise ValueError("the prefix length must not be shorter than the pool's")
        self._base = 0
        for octet in pool.network_address.packed:
            self._base = (self._base << 8) | <uint8_t>octet
        self._step = (<u128>1) << (128 - length) if length > 0 else 0
        # Subnets beyond 2^64 are never reached; the count is capped to stay in 128 bits.
        self._count = (<u128>1) << min(length - pool.prefixlen, 64)
        self._next = 0
        self._length = length
        self._released = []
        self._taken = taken

    def allocate(self):
        """The key of a free prefix, or None when the pool is exhausted (status 130)."""
        return self._allocate()

    def release(self, bytes key not None):
        """Return a prefix this pool handed out (others are ignored)."""
        if len(key) != 17 or (<const uint8_t*>PyBytes_AS_STRING(key))[16] != self._length:
            return
        cdef u128 value = 0
        cdef const uint8_t* octets = <const uint8_t*>PyBytes_AS_STRING(key)
        cdef int i
        for i in range(16):
            value = (value << 8) | octets[i]
        if value >= self._base and (self._step == 0 or (value - self._base) // self._step < self._count):
            self._released.append(key)

    cdef object _allocate(self):
        cdef object key
        cdef uint8_t octets[17]
        cdef u128 value
        cdef int i
        while self._released:
            key = self._released.pop()
            if key not in self._taken:
                return key
        while self._next < self._count:
            value = self._base + self._next * self._step
            self._next += 1
            for i in range(15, -1, -1):
                octets[i] = <uint8_t>(value & 0xFF)
                value >>= 8
            octets[16] = self._length
            key = PyBytes_FromStringAndSize(<const char*>octets, 17)
            if key not in self._taken:
                return key
        return None


cdef inline uint16_t get16(const uint8_t* p) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return v


cdef inline uint64_t get64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline bint serial_newer(uint16_t a, uint16_t b) noexcept nogil:
    """RFC 6275 §9.5.1, as lmaload.protocol.pmip.serial_newer."""
    cdef uint16_t d = <uint16_t>(a - b)
    return 0 < d < 0x8000


cdef class Indexes:
    """The binding cache's lists and indexes, looked up once per call."""

    cdef list free, mn_ids, prefix_keys, ll_ids
    cdef dict by_mn, by_prefix, by_mag

    def __init__(self, cache):
        self.free = cache._free
        self.mn_ids = cache.mn_ids
        self.prefix_keys = cache.prefix_keys
        self.ll_ids = cache.ll_ids
        self.by_mn = cache._by_mn
        self.by_prefix = cache._by_prefix
        self.by_mag = cache._by_mag


cdef Py_ssize_t new_row(
    cache, Indexes ix, object mn, bytes key, object llid, bytes mag, object rows_of_mn
) except -1:
    """A zeroed row of the cache (grown if full) holding a new entry: MN ``mn`` (whose
    by-MN index entry is ``rows_of_mn``, None for none), the one prefix ``key``, MN LL-ID
    ``llid``, at the MAG of packed address ``mag``. The caller reads ``cache.rows`` again."""
    if not ix.free:
        cache._grow()
    # One int object for the row in every index (an object each would cost 32 octets per
    # index per entry).
    cdef object row_obj = ix.free.pop()
    cdef Py_ssize_t row = row_obj
    cdef uint8_t* r = <uint8_t*>cnp.PyArray_DATA(cache.rows) + row * ROW_SIZE
    memset(r, 0, ROW_SIZE)
    memcpy(r + R_PROXY_COA, PyBytes_AS_STRING(mag), 16)
    ix.mn_ids[row] = mn
    ix.prefix_keys[row] = (key,)
    ix.ll_ids[row] = llid
    if rows_of_mn is None:
        ix.by_mn[mn] = row_obj
    elif type(rows_of_mn) is int:
        ix.by_mn[mn] = {rows_of_mn, row_obj}
    else:
        rows_of_mn.add(row_obj)
    ix.by_prefix[key] = row_obj
    mag_rows = ix.by_mag.get(mag)
    if mag_rows is None:
        ix.by_mag[mag] = {row_obj}
    else:
        mag_rows.add(row_obj)
    return row


cdef class Accepted:
    """The PBUs one ``Lane.run`` accepted, in order: datagram index, binding cache row, the
    assigned prefix (16 octets and length), granted lifetime and the row's new expiry."""

    cdef public object sel, row, prefix, plen, lifetime, expires
    cdef public Py_ssize_t count

    def __init__(self, Py_ssize_t capacity):
        self.sel = np.empty(capacity, dtype=np.int64)
        self.row = np.empty(capacity, dtype=np.int64)
        self.prefix = np.empty((capacity, 16), dtype=np.uint8)
        self.plen = np.empty(capacity, dtype=np.uint8)
        self.lifetime = np.empty(capacity, dtype=np.uint16)
        self.expires = np.empty(capacity, dtype=np.float64)
        self.count = 0


cdef class Lane:
    """The fast lane of one LMA engine: ``cache`` (BindingCache), ``pool`` (PrefixPool),
    ``tunnels`` (packed MAG → tunnel interface id, shared with the engine), the engine's own
    individual ``address`` (packed) and the TimestampValidityWindow."""

    cdef object cache, tunnels
    cdef PrefixPool pool
    cdef bytes address
    cdef double window

    def __init__(self, cache, PrefixPool pool, dict tunnels, bytes address, double window):
        if len(address) != 16:
            raise ValueError("the address is 16 octets")
        self.cache = cache
        self.pool = pool
        self.tunnels = tunnels
        self.address = address
        self.window = window

    def run(
        self,
        const uint8_t[::1] buf,
        cnp.ndarray scan,
        const uint8_t[:, ::1] src,
        const uint8_t[::1] eligible,
        const double[::1] arrival,
        double now,
        Py_ssize_t start,
        Accepted out,
    ):
        """Process datagrams ``start``, ``start + 1``, ... while they are eligible PBUs the lane
        can take (``eligible``: the codes of ``lmaload._ext.lma_step``, LANE; SHED ones are
        passed over); return the index of the first one it did not take (``len(scan)`` when none).
        ``out`` receives the accepted ones (``out.count`` of them, from 0)."""
        cdef Py_ssize_t n = scan.shape[0]
        if not (src.shape[0] == n and eligible.shape[0] == n and arrival.shape[0] == n):
            raise ValueError("scan, src, eligible and arrival differ in length")
        if len(out.sel) < n - start:
            raise ValueError("out is too small for the run")
        cache = self.cache
        cdef uint8_t* rows = <uint8_t*>cnp.PyArray_DATA(cache.rows)
        cdef const uint8_t* recs = <const uint8_t*>cnp.PyArray_DATA(scan)
        cdef Indexes indexes = Indexes(cache)
        cdef list mn_ids = indexes.mn_ids
        cdef list prefix_keys = indexes.prefix_keys
        cdef list ll_ids = indexes.ll_ids
        cdef dict by_mn = indexes.by_mn
        cdef dict by_prefix = indexes.by_prefix
        cdef dict tunnels = self.tunnels
        cdef PrefixPool pool = self.pool
        cdef const uint8_t* own = <const uint8_t*>PyBytes_AS_STRING(self.address)

        cdef int64_t[::1] o_sel = out.sel
        cdef int64_t[::1] o_row = out.row
        cdef uint8_t[:, ::1] o_prefix = out.prefix
        cdef uint8_t[::1] o_plen = out.plen
        cdef uint16_t[::1] o_lifetime = out.lifetime
        cdef double[::1] o_expires = out.expires
        cdef Py_ssize_t count = 0

        cdef Py_ssize_t i, row, candidates
        cdef const uint8_t* rec
        cdef uint8_t* r
        cdef const uint8_t* mag_ptr = NULL
        cdef object mag = None, tunnel = None
        cdef object mn, llid, key, found, rows_of_mn, c
        cdef int64_t mn_start, llid_start
        cdef int16_t llid_len
        cdef uint64_t ts
        cdef uint16_t seq, lifetime
        cdef uint8_t hi, att, has_ts
        cdef double when, expires
        cdef uint8_t key_octets[17]

        for i in range(start, n):
            if eligible[i] == SHED:
                continue
            if eligible[i] != LANE:
                out.count = count
                return i
            rec = recs + i * SCAN_SIZE
            has_ts = rec[S_HAS_TS]
            ts = get64(rec + S_TS)
            seq = get16(rec + S_SEQ)
            lifetime = get16(rec + S_LIFETIME)
            hi = rec[S_HI]
            att = rec[S_ATT]
            when = arrival[i]
            if isnan(when):
                when = now
            if has_ts and fabs(<double>ts / 65536.0 - when) > self.window:
                break  # 156
            mn_start = (<const int64_t*>(rec + S_MN_START))[0]
            mn = PyBytes_FromStringAndSize(<const char*>&buf[mn_start], get16(rec + S_MN_LEN))
            llid_len = (<const int16_t*>(rec + S_LLID_LEN))[0]
            if llid_len >= 0:
                llid_start = (<const int64_t*>(rec + S_LLID_START))[0]
                llid = PyBytes_FromStringAndSize(<const char*>&buf[llid_start], llid_len)
            else:
                llid = None
            if mag_ptr == NULL or memcmp(mag_ptr, &src[i, 0], 16) != 0:
                mag_ptr = &src[i, 0]
                mag = PyBytes_FromStringAndSize(<const char*>mag_ptr, 16)
                tunnel = None

            if rec[S_HNP_ZERO]:
                # A new session unless exactly one entry of this MN interface hands off (§3.2.1).
                rows_of_mn = by_mn.get(mn)
                if rows_of_mn is not None and (
                    hi == HI_BETWEEN_INTERFACES or hi == HI_BETWEEN_MAGS or hi == HI_UNKNOWN
                ):
                    candidates = 0
                    for c in ((rows_of_mn,) if type(rows_of_mn) is int else rows_of_mn):
                        if llid is None or (
                            ll_ids[c] == llid and rows[<Py_ssize_t>c * ROW_SIZE + R_ATT] == att
                        ):
                            candidates += 1
                    if candidates == 1:
                        break  # hand-off
                key = pool._allocate()
                if key is None:
                    break  # 130
                row = new_row(cache, indexes, mn, key, llid, mag, rows_of_mn)
                rows = <uint8_t*>cnp.PyArray_DATA(cache.rows)
                r = rows + row * ROW_SIZE
                memcpy(&o_prefix[count, 0], PyBytes_AS_STRING(key), 16)
                o_plen[count] = (<const uint8_t*>PyBytes_AS_STRING(key))[16]
            else:
                memcpy(key_octets, rec + S_HNP, 16)
                key_octets[16] = rec[S_PLEN]
                key = PyBytes_FromStringAndSize(<const char*>key_octets, 17)
                found = by_prefix.get(key)
                if found is None:
                    break  # a new session with a requested prefix
                row = found
                r = rows + row * ROW_SIZE
                if (
                    mn_ids[row] != mn
                    or prefix_keys[row] != (key,)
                    or memcmp(r + R_PROXY_COA, mag_ptr, 16) != 0
                ):
                    break  # 159 / 155, hand-off
                if has_ts:
                    if ts <= get64(r + R_TS):
                        break  # 157
                elif not serial_newer(seq, get16(r + R_SEQ)):
                    break  # 135
                memcpy(&o_prefix[count, 0], key_octets, 16)
                o_plen[count] = key_octets[16]

            expires = now + 4.0 * lifetime
            r[R_STATE] = ACTIVE
            memcpy(r + R_ANCHOR, own, 16)
            memcpy(r + R_FLAGS, rec + S_FLAGS, 2)
            memcpy(r + R_SEQ, &seq, 2)
            memcpy(r + R_LIFETIME, &lifetime, 2)
            memcpy(r + R_EXPIRES, &expires, 8)
            if not has_ts:
                ts = 0
            memcpy(r + R_TS, &ts, 8)
            r[R_ATT] = att
            r[R_HI] = hi
            if tunnel is None:
                tunnel = tunnels.get(mag)
                if tunnel is None:
                    tunnel = tunnels[mag] = len(tunnels) + 1
            _put_u32(r + R_TUNNEL, tunnel)
            o_sel[count] = i
            o_row[count] = row
            o_lifetime[count] = lifetime
            o_expires[count] = expires
            count += 1
        else:
            out.count = count
            return n
        out.count = count
        return i


cdef inline void _put_u32(uint8_t* p, object value):
    cdef unsigned int v = value
    memcpy(p, &v, 4)


# State Synchronization records (lmaload._ext.lma_batch.scan_ss_rep).
cdef Py_ssize_t SS_SIZE = SS_SESSION_DTYPE.itemsize
cdef Py_ssize_t Q_OK = _offset(SS_SESSION_DTYPE, "ok")
cdef Py_ssize_t Q_FLAGS = _offset(SS_SESSION_DTYPE, "flags")
cdef Py_ssize_t Q_SEQ = _offset(SS_SESSION_DTYPE, "seq")
cdef Py_ssize_t Q_LIFETIME = _offset(SS_SESSION_DTYPE, "lifetime")
cdef Py_ssize_t Q_TUNNEL = _offset(SS_SESSION_DTYPE, "tunnel")
cdef Py_ssize_t Q_PROXY_COA = _offset(SS_SESSION_DTYPE, "proxy_coa")
cdef Py_ssize_t Q_MN_START = _offset(SS_SESSION_DTYPE, "mn_start")
cdef Py_ssize_t Q_MN_LEN = _offset(SS_SESSION_DTYPE, "mn_len")
cdef Py_ssize_t Q_HNP = _offset(SS_SESSION_DTYPE, "hnp")
cdef Py_ssize_t Q_PLEN = _offset(SS_SESSION_DTYPE, "plen")
cdef Py_ssize_t Q_ATT = _offset(SS_SESSION_DTYPE, "att")
cdef Py_ssize_t Q_TS = _offset(SS_SESSION_DTYPE, "ts")
cdef Py_ssize_t Q_LLID_START = _offset(SS_SESSION_DTYPE, "llid_start")
cdef Py_ssize_t Q_LLID_LEN = _offset(SS_SESSION_DTYPE, "llid_len")
cdef Py_ssize_t Q_HAS_LLA = _offset(SS_SESSION_DTYPE, "has_lla")
cdef Py_ssize_t Q_LLA = _offset(SS_SESSION_DTYPE, "lla")
cdef Py_ssize_t R_LLA = _offset(BCE_DTYPE, "lla")

cdef uint8_t SYNCED = BceState.SYNCED
cdef uint8_t MOVED = BceState.MOVED


cdef class Synced:
    """What one ``Lane.apply_synced`` did: the rows stored (with their new expiry), and the
    sessions dropped as older than the copy held (``stale``) or missing an option (``bad``)."""

    cdef public object row, expires
    cdef public Py_ssize_t count, stale, bad

    def __init__(self, Py_ssize_t capacity):
        self.row = np.empty(capacity, dtype=np.int64)
        self.expires = np.empty(capacity, dtype=np.float64)
        self.count = self.stale = self.bad = 0


def apply_synced(
    cache,
    const uint8_t[::1] data,
    cnp.ndarray sessions,
    bytes sender not None,
    double now,
    delete,
    Synced out,
):
    """Store the sessions of one SS-REP from ``sender`` (16 octets), scanned from ``data``, in
    the binding cache as ``LmaEngine._apply_synced`` does one by one: state SYNCED, anchor the
    sender; lifetime 0 deletes a synced or moved copy; an older copy than ours is dropped. A row
    whose MN or prefixes differ is given to ``delete(row)`` first (the engine's, which also
    returns the prefix to the pool)."""
    cdef Py_ssize_t n = sessions.shape[0]
    if len(sender) != 16:
        raise ValueError("the sender is 16 octets")
    if len(out.row) < n:
        raise ValueError("out is too small")
    cdef const uint8_t* recs = <const uint8_t*>cnp.PyArray_DATA(sessions)
    cdef const uint8_t* anchor = <const uint8_t*>PyBytes_AS_STRING(sender)
    cdef uint8_t* rows = <uint8_t*>cnp.PyArray_DATA(cache.rows)
    cdef Indexes indexes = Indexes(cache)
    cdef list mn_ids = indexes.mn_ids
    cdef list prefix_keys = indexes.prefix_keys
    cdef dict by_prefix = indexes.by_prefix
    cdef int64_t[::1] o_row = out.row
    cdef double[::1] o_expires = out.expires
    cdef Py_ssize_t count = 0, stale = 0, bad = 0, i, row
    cdef const uint8_t* rec
    cdef uint8_t* r
    cdef uint8_t key_octets[17]
    cdef object mn, key, found, llid, mag
    cdef int64_t start
    cdef int16_t llid_len
    cdef uint16_t seq, lifetime
    cdef uint64_t ts, held_ts
    cdef double expires
    cdef bint is_stale

    for i in range(n):
        rec = recs + i * SS_SIZE
        if not rec[Q_OK]:
            bad += 1
            continue
        start = (<const int64_t*>(rec + Q_MN_START))[0]
        mn = PyBytes_FromStringAndSize(<const char*>&data[start], get16(rec + Q_MN_LEN))
        memcpy(key_octets, rec + Q_HNP, 16)
        key_octets[16] = rec[Q_PLEN]
        key = PyBytes_FromStringAndSize(<const char*>key_octets, 17)
        seq = get16(rec + Q_SEQ)
        lifetime = get16(rec + Q_LIFETIME)
        ts = get64(rec + Q_TS)
        found = by_prefix.get(key)
        if found is not None and (mn_ids[found] != mn or prefix_keys[found] != (key,)):
            delete(found)
            found = None
        if found is not None:
            r = rows + <Py_ssize_t>found * ROW_SIZE
            held_ts = get64(r + R_TS)
            if held_ts and ts:
                is_stale = ts < held_ts
            else:
                is_stale = serial_newer(get16(r + R_SEQ), seq)
            if is_stale:
                stale += 1
                continue
        if lifetime == 0:
            if found is not None and (r[R_STATE] == SYNCED or r[R_STATE] == MOVED):
                delete(found)
            continue
        if found is None:
            llid_len = (<const int16_t*>(rec + Q_LLID_LEN))[0]
            llid = None
            if llid_len >= 0:
                start = (<const int64_t*>(rec + Q_LLID_START))[0]
                llid = PyBytes_FromStringAndSize(<const char*>&data[start], llid_len)
            mag = PyBytes_FromStringAndSize(<const char*>(rec + Q_PROXY_COA), 16)
            row = new_row(cache, indexes, mn, key, llid, mag, indexes.by_mn.get(mn))
            rows = <uint8_t*>cnp.PyArray_DATA(cache.rows)
            r = rows + row * ROW_SIZE
        else:
            row = found
            if memcmp(r + R_PROXY_COA, rec + Q_PROXY_COA, 16) != 0:
                cache.move(row, PyBytes_FromStringAndSize(<const char*>(rec + Q_PROXY_COA), 16))
        expires = now + 4.0 * lifetime
        r[R_STATE] = SYNCED
        memcpy(r + R_ANCHOR, anchor, 16)
        memcpy(r + R_FLAGS, rec + Q_FLAGS, 2)
        memcpy(r + R_SEQ, &seq, 2)
        memcpy(r + R_LIFETIME, &lifetime, 2)
        memcpy(r + R_EXPIRES, &expires, 8)
        memcpy(r + R_TS, &ts, 8)
        r[R_ATT] = rec[Q_ATT]
        memcpy(r + R_PROXY_COA, rec + Q_PROXY_COA, 16)
        if rec[Q_HAS_LLA]:
            memcpy(r + R_LLA, rec + Q_LLA, 16)
        else:
            memset(r + R_LLA, 0, 16)
        memcpy(r + R_TUNNEL, rec + Q_TUNNEL, 4)
        o_row[count] = row
        o_expires[count] = expires
        count += 1
    out.count, out.stale, out.bad = count, stale, bad
