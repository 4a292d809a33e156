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

The pure-Python twin is ``lmaload.protocol.lma.pbu.PbuProcessor`` (the reference path).
"""

import numpy as np

cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.math cimport fabs, isnan
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

from lmaload._ext.cache_index cimport CacheIndex

from lmaload.bulk_types import PBU_SCAN_DTYPE
from lmaload.bce import BCE_DTYPE, BceState
from lmaload.wire import codepoints as cp

cnp.import_array()


def _offset(dtype, name):
    return dtype.fields[name][1]


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
    in order, then the released ones (last released first), skipping any that ``taken`` (the
    cache's index) holds: prefixes of sessions synchronised from a peer."""

    cdef u128 _base, _step, _count, _next
    cdef uint8_t _length
    cdef list _released
    cdef CacheIndex _taken

    def __init__(self, pool, int length, CacheIndex taken not None):
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
            if self._taken.find_prefix(<const uint8_t*>PyBytes_AS_STRING(key)) < 0:
                return key
        while self._next < self._count:
            value = self._base + self._next * self._step
            self._next += 1
            for i in range(15, -1, -1):
                octets[i] = <uint8_t>(value & 0xFF)
                value >>= 8
            octets[16] = self._length
            if self._taken.find_prefix(octets) < 0:
                return PyBytes_FromStringAndSize(<const char*>octets, 17)
        return None


include "cache_rows.pxi"


cdef class Accepted:
    """The PBUs one ``Lane.run`` accepted, in order: datagram index, binding cache row, the
    assigned prefix (16 octets and length), granted lifetime and the row's new expiry."""

    # Read only: ``Lane.run`` writes through the arrays' data pointers, made here.
    cdef readonly object sel, row, prefix, plen, lifetime, expires
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
        cdef list ll_ids = indexes.ll_ids
        cdef CacheIndex index = indexes.index
        cdef dict tunnels = self.tunnels
        cdef PrefixPool pool = self.pool
        cdef const uint8_t* own = <const uint8_t*>PyBytes_AS_STRING(self.address)

        # Pointers, not typed memoryviews: this runs on every wakeup that brings PBUs.
        cdef int64_t* o_sel = <int64_t*>cnp.PyArray_DATA(out.sel)
        cdef int64_t* o_row = <int64_t*>cnp.PyArray_DATA(out.row)
        cdef uint8_t* o_prefix = <uint8_t*>cnp.PyArray_DATA(out.prefix)
        cdef uint8_t* o_plen = <uint8_t*>cnp.PyArray_DATA(out.plen)
        cdef uint16_t* o_lifetime = <uint16_t*>cnp.PyArray_DATA(out.lifetime)
        cdef double* o_expires = <double*>cnp.PyArray_DATA(out.expires)
        cdef Py_ssize_t count = 0

        cdef Py_ssize_t i, row, candidates, c
        cdef const uint8_t* rec
        cdef uint8_t* r
        cdef const uint8_t* mag_ptr = NULL
        cdef object mag = None, tunnel = None
        cdef object mn, llid, key
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
                if hi == HI_BETWEEN_INTERFACES or hi == HI_BETWEEN_MAGS or hi == HI_UNKNOWN:
                    candidates = 0
                    c = index.find_mn(<const uint8_t*>PyBytes_AS_STRING(mn), len(mn))
                    while c >= 0:
                        if llid is None or (ll_ids[c] == llid and rows[c * ROW_SIZE + R_ATT] == att):
                            candidates += 1
                        c = index.next_of_mn(c)
                    if candidates == 1:
                        break  # hand-off
                key = pool._allocate()
                if key is None:
                    break  # 130
                row = new_row(cache, indexes, mn, key, llid, mag)
                rows = <uint8_t*>cnp.PyArray_DATA(cache.rows)
                r = rows + row * ROW_SIZE
                memcpy(o_prefix + 16 * count, PyBytes_AS_STRING(key), 16)
                o_plen[count] = (<const uint8_t*>PyBytes_AS_STRING(key))[16]
            else:
                memcpy(key_octets, rec + S_HNP, 16)
                key_octets[16] = rec[S_PLEN]
                row = index.find_prefix(key_octets)
                if row < 0:
                    break  # a new session with a requested prefix
                r = rows + row * ROW_SIZE
                if not holds(indexes, row, mn, key_octets) or memcmp(r + R_PROXY_COA, mag_ptr, 16):
                    break  # 159 / 155, hand-off
                if has_ts:
                    if ts <= get64(r + R_TS):
                        break  # 157
                elif not serial_newer(seq, get16(r + R_SEQ)):
                    break  # 135
                memcpy(o_prefix + 16 * count, key_octets, 16)
                o_plen[count] = key_octets[16]

            expires = now + 4.0 * lifetime
            set_state(index, r, ACTIVE)
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
