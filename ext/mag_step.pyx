# cython: language_level=3
"""The MAG engine's per-wakeup work, compiled (``MagEngine(compiled=True)``): the heartbeat tick,
heartbeat-response and PBA matching, the session timers and the transport's address mapping,
each a loop over the datagrams or rows at hand on the population's structured arrays — no numpy
call per wakeup, and nothing that grows with the population.

``lmaload/protocol/mag.py`` is the definition: every step here does what the reference path does
for the same input, so that both give the same octets, columns, counters and histograms (the
differential tests hold them to it). What happens rarely — a PBA status of 128 or more, an LMA
going down or up or restarting, a probe from an LMA, an HA Switch — is left to the reference
code: a step reports it and the engine handles it in Python.

* ``AddressTable``: 16-octet addresses to their index (open addressing).
* ``RowHeap``: the session timers as a binary heap of (deadline, row), ``RowTimers``' contract.
* ``MagStep``: heartbeat tick and responses, PBAs, PBU bookkeeping, and the output arena the
  steps write datagrams into (``seal`` turns it into ``Columns`` arrays).
* ``Routes``: the UDP/5436 transport's per-datagram IPv4 source, destination and port, and
  the framing of what the MAGs send; ``ReceiveClock``: when a received batch arrived.
"""

import functools

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int8_t
from libc.math cimport INFINITY, NAN, ldexp, rint
from libc.stdlib cimport free, malloc, qsort, realloc
from libc.string cimport memcmp, memcpy, memset

from lmaload import bulk_types
from lmaload.population import MAG_DTYPE, MN_DTYPE
from lmaload.population import SessionState as S
from lmaload.protocol.mag_timers import NO_TIMER as _NO_TIMER
from lmaload.protocol.peer_quirks import HNP_ALL_ZERO, HNP_DIFFERS
from lmaload.wire import codepoints as cp
from lmaload.wire import messages as wm
from lmaload.wire import options as wo
from lmaload.wire.codepoints import DEFAULT_CONFIG
from lmaload.wire.ipv6 import DEFAULT_HOP_LIMIT

include "checksum.pxi"
include "population.pxi"

cnp.import_array()


cdef extern from *:
    uint32_t bswap32 "__builtin_bswap32"(uint32_t) noexcept nogil
    int clzll "__builtin_clzll"(unsigned long long) noexcept nogil


cdef enum:
    IPV6_HEADER = 40
    MH_HEADER = 6
    ADDRESS = 16

cdef uint8_t IPPROTO_MH = cp.IPPROTO_MH
cdef uint8_t HOP_LIMIT = DEFAULT_HOP_LIMIT
cdef uint8_t PAYLOAD_PROTO_NONE = cp.PAYLOAD_PROTO_NONE
cdef uint8_t MH_BINDING_ACK = cp.MH_BINDING_ACK
cdef uint8_t MH_HEARTBEAT = cp.MH_HEARTBEAT
cdef uint8_t MH_HOME_AGENT_SWITCH = cp.MH_HOME_AGENT_SWITCH
cdef uint8_t MH_BINDING_ERROR = cp.MH_BINDING_ERROR
cdef uint8_t BA_FLAG_P = cp.BA_FLAG_P
cdef uint8_t RESYNC = cp.STATUS_SEQUENCE_OUT_OF_WINDOW
cdef uint8_t OPT_PAD1 = cp.OPT_PAD1
cdef uint8_t OPT_PADN = cp.OPT_PADN
cdef uint8_t MNID_SUBTYPE_NAI = cp.MNID_SUBTYPE_NAI
cdef uint8_t PBCI_FIXED_LENGTH = wo.PBCI_FIXED_LENGTH
cdef uint32_t NO_MN_ID = bulk_types.NO_MN_ID
cdef uint8_t HB_FLAG_R = cp.HB_FLAG_R
cdef uint8_t HB_FLAG_U = cp.HB_FLAG_U
cdef uint8_t HI_NOT_CHANGED = cp.HI_NOT_CHANGED
cdef uint8_t HI_ATTACH_NEW_INTERFACE = cp.HI_ATTACH_NEW_INTERFACE
cdef int64_t NO_TIMER = _NO_TIMER
cdef int8_t NO_LFI = -1
cdef uint8_t REGISTERING = S.REGISTERING
cdef uint8_t REGISTERED = S.REGISTERED
cdef uint8_t REFRESHING = S.REFRESHING
cdef uint8_t FAILOVER = S.FAILOVER
cdef uint8_t DEREGISTERING = S.DEREGISTERING
cdef uint8_t IDLE = S.IDLE
cdef double TIME_SLACK = 1e-6  # mag_heartbeat.TIME_SLACK

include "octets.pxi"
include "mh_decode.pxi"
include "mh_heartbeat.pxi"
include "nai_index.pxi"


cdef object c_array(arr, dtype, name):
    """arr itself when it is a C-contiguous array of dtype (the steps write into it)."""
    if not isinstance(arr, np.ndarray) or arr.dtype != dtype or not arr.flags.c_contiguous:
        raise TypeError(f"{name} must be a C-contiguous array of {dtype}")
    return arr


cdef inline void* data_of(arr) noexcept:
    return cnp.PyArray_DATA(<cnp.ndarray>arr)


include "mag_tables.pxi"

# ---------------------------------------------------------------------------------------------
# The engine's steps

cdef enum:
    LATENCY_KINDS = 3  # REGISTERING, REFRESHING, FAILOVER: MagEngine.latency's kinds in order


cdef class MagStep:
    """The compiled steps of one ``MagEngine``: over its population, LMA table, LFI column,
    ``RowHeap``, ``HeartbeatTable`` arrays and histograms (all shared, none copied). Counters
    accumulate here until ``fold`` adds them to the engine's ``MagCounters``."""

    cdef object refs  # the arrays the pointers below point into
    cdef mn_t* mns
    cdef Py_ssize_t n_mns
    cdef const mag_t* mags
    cdef Py_ssize_t n_mags, n_lmas
    cdef const uint32_t* ids_sorted
    cdef const int64_t* id_order
    cdef nai_index_t nais
    cdef bint stored_nais  # the population's NAIs are in ``nais``, not mn{digits}@...
    cdef const uint8_t* lma_packed
    cdef int8_t* lfi
    cdef int64_t* unanswered  # (MAG, LMA): PBUs unanswered in a row (MagEngine._unanswered)
    cdef const uint8_t* mag_lma  # the LMA each MAG registers new sessions with
    cdef RowHeap timers
    cdef AddressTable mag_index
    cdef wire_t wire
    # MagConfig
    cdef double refresh_margin, initial_timeout, max_timeout
    # HeartbeatTable
    cdef object table
    cdef uint32_t* hb_seq
    cdef uint8_t* hb_outstanding
    cdef int64_t* hb_missing
    cdef uint8_t* hb_up
    cdef uint8_t* hb_answered
    cdef double* hb_sent_at
    cdef uint32_t* hb_counter
    cdef uint8_t* hb_counter_known
    cdef int64_t* hb_tick
    cdef const double* hb_phase
    cdef double hb_origin, hb_interval
    cdef int64_t hb_missing_allowed
    cdef Py_ssize_t hb_cursor  # the MAG due first: MAGs tick in row order, round and round
    cdef hist_t rtt
    cdef object histograms  # rtt, the schedule's lag, then the latency kinds
    cdef hist_t lag
    cdef hist_t latency[LATENCY_KINDS]
    # a datagram or pair handled once per batch: stamped with the batch's generation
    cdef uint32_t generation
    cdef uint32_t* row_stamp
    cdef uint32_t* pair_stamp
    # counters not yet in MagCounters
    cdef int64_t pbu_sent, pba_received, pba_ignored, hb_sent, hb_received, missed
    cdef int64_t hnp_all_zero, hnp_differs  # peer_quirks.HNP_ALL_ZERO, HNP_DIFFERS
    cdef int64_t status[256]
    # output arena: datagram i is buf[offsets[i]:offsets[i + 1]] from src[i] to dst[i]
    cdef uint8_t* out_buf
    cdef int64_t* out_offsets
    cdef uint8_t* out_src
    cdef uint8_t* out_dst
    cdef Py_ssize_t out_n, out_size, out_cap_n, out_cap_size

    def __cinit__(
        self,
        pop,
        lma_packed,
        lfi,
        mag_lma,
        ids_sorted,
        id_order,
        nais,
        RowHeap timers,
        table,
        lag,
        latency,
        unanswered,
        config,
    ):
        mns = c_array(pop.mns, MN_DTYPE, "mns")
        mags = c_array(pop.mags, MAG_DTYPE, "mags")
        lmas = c_array(lma_packed, np.uint8, "lma_packed")
        self.refs = [
            mns,
            mags,
            lmas,
            c_array(lfi, np.int8, "lfi"),
            c_array(mag_lma, np.uint8, "mag_lma"),
            c_array(ids_sorted, np.uint32, "ids_sorted"),
            c_array(id_order, np.int64, "id_order"),
            c_array(unanswered, np.int64, "unanswered"),
        ]
        self.mns = <mn_t*>data_of(mns)
        self.n_mns = len(mns)
        self.mags = <const mag_t*>data_of(mags)
        self.n_mags = len(mags)
        self.n_lmas = len(lmas)
        self.lma_packed = <const uint8_t*>data_of(lmas)
        self.lfi = <int8_t*>data_of(lfi)
        self.unanswered = <int64_t*>data_of(unanswered)
        self.mag_lma = <const uint8_t*>data_of(mag_lma)
        self.ids_sorted = <const uint32_t*>data_of(ids_sorted)
        self.id_order = <const int64_t*>data_of(id_order)
        self.stored_nais = nais is not None
        if self.stored_nais:
            self.refs.append(open_nai_index(&self.nais, nais))
        self.timers = timers
        self.mag_index = AddressTable(mags["addr6"])
        fill_wire(&self.wire, DEFAULT_CONFIG)
        self.refresh_margin = config.refresh_margin
        self.initial_timeout = config.initial_bindack_timeout
        self.max_timeout = config.max_bindack_timeout

        self.table = table
        self.hb_seq = <uint32_t*>data_of(c_array(table.seq, np.uint32, "seq"))
        self.hb_outstanding = <uint8_t*>data_of(c_array(table.outstanding, np.bool_, "outstanding"))
        self.hb_missing = <int64_t*>data_of(c_array(table.missing, np.int64, "missing"))
        self.hb_up = <uint8_t*>data_of(c_array(table.up, np.bool_, "up"))
        self.hb_answered = <uint8_t*>data_of(c_array(table.answered, np.bool_, "answered"))
        self.hb_sent_at = <double*>data_of(c_array(table.sent_at, np.float64, "sent_at"))
        self.hb_counter = <uint32_t*>data_of(c_array(table.counter, np.uint32, "counter"))
        self.hb_counter_known = <uint8_t*>data_of(
            c_array(table.counter_known, np.bool_, "counter_known")
        )
        self.hb_tick = <int64_t*>data_of(c_array(table.tick, np.int64, "tick"))
        self.hb_phase = <const double*>data_of(c_array(table.phase, np.float64, "phase"))
        self.hb_origin = table.origin
        self.hb_interval = table.interval
        self.hb_missing_allowed = table.missing_allowed
        self.histograms = [table.rtt, lag, *latency]
        open_histogram(&self.rtt, table.rtt)
        open_histogram(&self.lag, lag)
        cdef int k
        for k in range(LATENCY_KINDS):
            open_histogram(&self.latency[k], latency[k])

        self.row_stamp = <uint32_t*>calloc_or_raise(max(self.n_mns, 1), sizeof(uint32_t))
        self.pair_stamp = <uint32_t*>calloc_or_raise(
            max(self.n_mags * self.n_lmas, 1), sizeof(uint32_t)
        )
        self.out_cap_n = 64
        self.out_cap_size = 8192
        self.out_buf = <uint8_t*>malloc(self.out_cap_size)
        self.out_offsets = <int64_t*>malloc((self.out_cap_n + 1) * sizeof(int64_t))
        self.out_src = <uint8_t*>malloc(self.out_cap_n * ADDRESS)
        self.out_dst = <uint8_t*>malloc(self.out_cap_n * ADDRESS)
        if not (self.out_buf and self.out_offsets and self.out_src and self.out_dst):
            raise MemoryError()
        self.out_offsets[0] = 0

    def __dealloc__(self):
        free(self.row_stamp)
        free(self.pair_stamp)
        free(self.out_buf)
        free(self.out_offsets)
        free(self.out_src)
        free(self.out_dst)

    # --- output ----------------------------------------------------------------------------

    cdef uint8_t* reserve(self, Py_ssize_t count, Py_ssize_t size) except NULL:
        """Room for ``count`` more datagrams of ``size`` octets in all."""
        cdef Py_ssize_t n = self.out_cap_n, bytes_ = self.out_cap_size
        while self.out_n + count > n:
            n *= 2
        while self.out_size + size > bytes_:
            bytes_ *= 2
        if n != self.out_cap_n:
            self.out_offsets = <int64_t*>grow(self.out_offsets, (n + 1) * sizeof(int64_t))
            self.out_src = <uint8_t*>grow(self.out_src, n * ADDRESS)
            self.out_dst = <uint8_t*>grow(self.out_dst, n * ADDRESS)
            self.out_cap_n = n
        if bytes_ != self.out_cap_size:
            self.out_buf = <uint8_t*>grow(self.out_buf, bytes_)
            self.out_cap_size = bytes_
        return self.out_buf + self.out_size

    cdef inline void added(
        self, Py_ssize_t length, const uint8_t* src, const uint8_t* dst
    ) noexcept nogil:
        """The datagram of ``length`` octets written at the arena's end goes from src to dst."""
        memcpy(self.out_src + self.out_n * ADDRESS, src, ADDRESS)
        memcpy(self.out_dst + self.out_n * ADDRESS, dst, ADDRESS)
        self.out_size += length
        self.out_n += 1
        self.out_offsets[self.out_n] = self.out_size

    @property
    def pending(self) -> int:
        """Datagrams in the arena."""
        return self.out_n

    def seal(self):
        """The arena's datagrams as new (buf, offsets, src, dst) arrays; the arena is emptied."""
        cdef Py_ssize_t n = self.out_n
        buf = np.empty(self.out_size, dtype=np.uint8)
        offsets = np.empty(n + 1, dtype=np.int64)
        src = np.empty((n, ADDRESS), dtype=np.uint8)
        dst = np.empty((n, ADDRESS), dtype=np.uint8)
        memcpy(data_of(buf), self.out_buf, self.out_size)
        memcpy(data_of(offsets), self.out_offsets, (n + 1) * sizeof(int64_t))
        memcpy(data_of(src), self.out_src, n * ADDRESS)
        memcpy(data_of(dst), self.out_dst, n * ADDRESS)
        self.out_n = self.out_size = 0
        return buf, offsets, src, dst

    def emit(self, buf, offsets, rows, Py_ssize_t lma) -> None:
        """Messages ``buf[offsets[i]:offsets[i + 1]]`` from the MAG of session ``rows[i]`` to
        LMA ``lma`` (an encoder's output) into the arena."""
        cdef const uint8_t[::1] b = buf
        cdef const int64_t[::1] o = offsets
        cdef const int64_t[::1] r = rows
        cdef Py_ssize_t n = r.shape[0]
        if not n:
            return
        cdef uint8_t* p = self.reserve(n, o[n] - o[0])
        if o[n] > o[0]:
            memcpy(p, &b[o[0]], o[n] - o[0])
        rows_added(self, &o[0], &r[0], n, lma)

    # --- counters --------------------------------------------------------------------------

    def fold(self, counters) -> None:
        """Add what was counted since the last call to ``counters`` (MagCounters), the table's
        ``missed`` and the histograms' out-of-range counts."""
        cdef int code
        if self.pbu_sent:
            counters.pbu_sent += self.pbu_sent
        if self.pba_received:
            counters.pba_received += self.pba_received
            counters.pba_ignored += self.pba_ignored
            for code in range(256):
                if self.status[code]:
                    counters.pba_status[code] += self.status[code]
                    self.status[code] = 0
        if self.hnp_all_zero:
            counters.quirks[HNP_ALL_ZERO] += self.hnp_all_zero
        if self.hnp_differs:
            counters.quirks[HNP_DIFFERS] += self.hnp_differs
        self.hnp_all_zero = self.hnp_differs = 0
        if self.hb_sent:
            counters.heartbeat_requests_sent += self.hb_sent
        if self.hb_received:
            counters.heartbeat_responses_received += self.hb_received
        if self.missed:
            self.table.missed += self.missed
        self.pbu_sent = self.pba_received = self.pba_ignored = self.hb_sent = 0
        self.hb_received = self.missed = 0
        fold_range(&self.rtt, self.histograms[0])
        fold_range(&self.lag, self.histograms[1])
        for code in range(LATENCY_KINDS):
            fold_range(&self.latency[code], self.histograms[2 + code])

    # --- heartbeats ------------------------------------------------------------------------

    cdef inline double due(self, Py_ssize_t m) noexcept nogil:
        """HeartbeatTable._due() of MAG m, the same float operations in the same order."""
        return self.hb_origin + self.hb_phase[m] + <double>self.hb_tick[m] * self.hb_interval

    @property
    def next_heartbeat(self):
        """HeartbeatTable.next_due(): the earliest due time, the cursor's."""
        return self.due(self.hb_cursor) if self.n_mags else None

    def heartbeat_tick(self, double now):
        """HeartbeatTable.fire plus the Requests: every MAG due at ``now`` (in row order) sends
        one to each LMA, into the arena. Returns the (MAG, LMA) pairs that just went DOWN as a
        list, or None. Due times grow with the row within a round and from round to round, so
        the MAGs due are a run from the cursor on."""
        cdef double threshold = now + TIME_SLACK
        cdef Py_ssize_t n = self.n_mags, L = self.n_lmas, count = 0, first = self.hb_cursor
        cdef Py_ssize_t k, m, l, at, wrapped
        cdef int64_t missing
        while count < n and self.due((first + count) % n) <= threshold:
            count += 1
        if not count:
            return None
        down = None
        wrapped = max(first + count - n, 0)
        self.reserve(count * L, count * L * HEARTBEAT_LENGTH)
        for k in range(count):
            # Row order, as flatnonzero gives them: a run that wraps starts at row 0.
            m = k if k < wrapped else first + k - wrapped
            for l in range(L):
                at = m * L + l
                missing = self.hb_missing[at] + self.hb_outstanding[at]
                self.missed += self.hb_outstanding[at]
                if self.hb_up[at] and missing > self.hb_missing_allowed:
                    self.hb_up[at] = 0
                    if down is None:
                        down = []
                    down.append((m, l))
                self.hb_missing[at] = missing
                self.hb_seq[at] += 1
                self.hb_outstanding[at] = 1
                self.hb_sent_at[at] = now
                write_heartbeat(
                    self.out_buf + self.out_size,
                    self.hb_seq[at],
                    self.mags[m].addr6,
                    self.lma_packed + l * ADDRESS,
                )
                self.added(HEARTBEAT_LENGTH, self.mags[m].addr6, self.lma_packed + l * ADDRESS)
            self.hb_tick[m] += 1
        self.hb_cursor = (first + count) % n
        self.hb_sent += count * L
        return down

    def heartbeats(self, buf, starts, ends, src, dst, double now):
        """The Heartbeats among datagrams ``buf[starts[i]:ends[i]]`` (bare Mobility Headers) from
        ``src[i]`` to ``dst[i]``: HeartbeatTable.on_responses for the responses. Returns None, or
        (probes, came_up, restarted, switches, errors): the (index, sequence number) of each
        Request from an LMA (to answer), the (MAG, LMA) pairs back UP, those whose Restart
        Counter changed, and the indexes of the HA Switch and of the Binding Error messages."""
        cdef Views c = Views(buf, starts, ends, src, dst)
        return self.heartbeats_of(c.b, c.s, c.e, c.sa, c.da, c.n, now)

    cdef object heartbeats_of(
        self, const uint8_t* b, const int64_t* s, const int64_t* e, const uint8_t* src,
        const uint8_t* dst, Py_ssize_t n, double now,
    ):
        cdef Py_ssize_t i, at
        cdef int64_t lma, mag
        cdef decoded_t d
        cdef uint8_t flags
        cdef uint32_t seq, counter
        cdef bint matched, unsolicited, has_counter
        probes = up = restarted = switches = errors = None
        self.generation += 1
        for i in range(n):
            if e[i] - s[i] < 8 or b[s[i]] != PAYLOAD_PROTO_NONE:
                continue
            if b[s[i] + 2] == MH_HOME_AGENT_SWITCH:
                if switches is None:
                    switches = []
                switches.append(i)
                continue
            if b[s[i] + 2] == MH_BINDING_ERROR:
                if errors is None:
                    errors = []
                errors.append(i)
                continue
            if b[s[i] + 2] != MH_HEARTBEAT:
                continue
            if not decode_datagram(&b[s[i]], e[i] - s[i], False, &self.wire, &d) or d.kind != M_HB:
                continue
            lma = self.lma_of(src + i * ADDRESS)
            mag = self.mag_index.find(dst + i * ADDRESS)
            if lma < 0 or mag < 0:
                continue
            flags = d.mh[7]
            if not flags & HB_FLAG_R:
                if probes is None:
                    probes = []
                probes.append((i, be32(d.mh + 8)))
                continue
            self.hb_received += 1
            at = mag * self.n_lmas + lma
            if self.pair_stamp[at] == self.generation:  # a duplicate counts once
                continue
            self.pair_stamp[at] = self.generation
            seq = be32(d.mh + 8)
            unsolicited = (flags & HB_FLAG_U) != 0
            matched = not unsolicited and self.hb_outstanding[at] and self.hb_seq[at] == seq
            if matched:
                self.hb_outstanding[at] = 0
                self.hb_answered[at] = 1
                self.hb_missing[at] = 0
                record(&self.rtt, <int64_t>rint((now - self.hb_sent_at[at]) * 1e6))
                if not self.hb_up[at]:
                    if up is None:
                        up = []
                    up.append((mag, lma))
                self.hb_up[at] = 1
            has_counter = d.found.rc >= 0
            if (matched or unsolicited) and has_counter:
                counter = be32(d.mh + d.found.rc)
                if self.hb_counter_known[at] and self.hb_counter[at] != counter:
                    if restarted is None:
                        restarted = []
                    restarted.append((mag, lma))
                self.hb_counter[at] = counter
                self.hb_counter_known[at] = 1
        if probes is None and up is None and restarted is None and switches is None:
            if errors is None:
                return None
        return probes or [], up or [], restarted or [], switches or [], errors or []

    cdef inline int64_t lma_of(self, const uint8_t* address) noexcept nogil:
        cdef Py_ssize_t k
        for k in range(self.n_lmas - 1, -1, -1):
            if not memcmp(self.lma_packed + k * ADDRESS, address, ADDRESS):
                return k
        return -1

    # --- PBAs ------------------------------------------------------------------------------

    cdef inline int64_t row_of(self, uint32_t mn_id) noexcept nogil:
        """The row of ``mn_id`` (its first in id order), -1 for none."""
        cdef Py_ssize_t lo = 0, hi = self.n_mns, mid
        if mn_id == NO_MN_ID:
            return -1
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.ids_sorted[mid] < mn_id:
                lo = mid + 1
            else:
                hi = mid
        if lo == self.n_mns or self.ids_sorted[lo] != mn_id:
            return -1
        return self.id_order[lo]

    def pbas(self, buf, starts, ends, src, double now, int64_t now_ns, bint takeover):
        """MagEngine._on_pbas for the PBAs among datagrams ``buf[starts[i]:ends[i]]`` from
        ``src[i]``: each matched to its session (MN-ID, a sequence number of the attempt, LMA; once
        per session), de-registrations ended, accepted ones (status < 128) registered, their
        latency recorded and refresh timer armed. Returns None, or (registrations, accepted,
        rejected, malformed): how many initial registrations were accepted, with ``takeover``
        the (row, LMA, prefix changed) of each accepted PBA (for the TakeoverMeter), the (row,
        LMA, status, sequence number) of each status >= 128, left to the caller, and the
        indexes of the PBAs dropped as malformed (undecodable, or without the P flag), for the
        caller to count."""
        cdef Views c = Views(buf, starts, ends, src, src)
        return self.pbas_of(c.b, c.s, c.e, c.sa, c.n, now, now_ns, takeover)

    cdef object pbas_of(
        self, const uint8_t* b, const int64_t* s, const int64_t* e, const uint8_t* src,
        Py_ssize_t n, double now, int64_t now_ns, bint takeover,
    ):
        cdef Py_ssize_t i, kind, registrations = 0
        cdef int64_t lma, row, refresh_ns
        cdef decoded_t d
        cdef const uint8_t* mh
        cdef uint8_t status, state, hnp_len
        cdef uint16_t lifetime
        cdef uint32_t mn_id
        cdef const uint8_t* hnp
        cdef uint8_t zero[16]
        cdef bint changed
        cdef double granted, refresh_in
        cdef mn_t* mn
        memset(zero, 0, 16)
        accepted = rejected = malformed = None
        self.generation += 1
        for i in range(n):
            if e[i] - s[i] < 8 or b[s[i]] != PAYLOAD_PROTO_NONE or b[s[i] + 2] != MH_BINDING_ACK:
                continue
            self.pba_received += 1
            self.pba_ignored += 1  # until matched
            if (
                not decode_datagram(&b[s[i]], e[i] - s[i], False, &self.wire, &d)
                or d.kind != M_BA
                or not d.mh[7] & BA_FLAG_P
            ):
                if malformed is None:
                    malformed = []
                malformed.append(i)
                continue
            mh = d.mh
            mn_id = NO_MN_ID
            if d.found.mnid >= 0 and mh[d.found.mnid] == MNID_SUBTYPE_NAI:
                if self.stored_nais:
                    mn_id = nai_lookup(&self.nais, mh + d.found.mnid + 1, mh[d.found.mnid - 1] - 1)
                else:
                    mn_id = nai_mn_id(mh + d.found.mnid + 1, mh[d.found.mnid - 1] - 1)
            row = self.row_of(mn_id)
            lma = self.lma_of(src + i * ADDRESS)
            if row < 0 or lma < 0:
                continue
            mn = &self.mns[row]
            state = mn.state
            if not (
                (state == REGISTERING or state == REFRESHING or state == FAILOVER
                 or state == DEREGISTERING)
                # Any PBU of the attempt: the last one or a retransmission before it; a 135
                # carries the LMA's last accepted sequence number instead.
                and (<uint16_t>(mn.seq - be16(mh + 8)) <= mn.retries or mh[6] == RESYNC)
                and mn.lma == lma
                and self.row_stamp[row] != self.generation
            ):
                continue
            self.row_stamp[row] = self.generation
            self.pba_ignored -= 1
            self.unanswered[mn.mag * self.n_lmas + lma] = 0
            status = mh[6]
            self.status[status] += 1
            if state == DEREGISTERING:
                mn.state = IDLE
                mn.t_due = NO_TIMER
                continue
            if status >= 128:
                if rejected is None:
                    rejected = []
                rejected.append((row, lma, status, be16(mh + 8)))
                continue
            if d.found.hnp >= 0:
                hnp_len, hnp = mh[d.found.hnp + 1], mh + d.found.hnp + 2
            else:
                hnp_len, hnp = 0, zero
            changed = mn.hnp_len != hnp_len or memcmp(mn.hnp, hnp, 16) != 0
            if memcmp(hnp, zero, 16) == 0:
                self.hnp_all_zero += 1
            elif changed and memcmp(mn.hnp, zero, 16) != 0:
                self.hnp_differs += 1
            memcpy(mn.hnp, hnp, 16)
            mn.hnp_len = hnp_len
            kind = 0 if state == REGISTERING else (1 if state == REFRESHING else 2)
            registrations += state == REGISTERING
            record(&self.latency[kind], floor_div(now_ns - mn.t_send, 1000))
            if takeover:
                if accepted is None:
                    accepted = []
                accepted.append((row, lma, changed))
            lifetime = be16(mh + 10)
            granted = <double>lifetime * 4
            refresh_in = max(
                max(granted - self.refresh_margin, granted / 2), self.initial_timeout
            )
            mn.state = REGISTERED
            mn.hi = HI_NOT_CHANGED
            mn.retries = 0
            mn.lifetime = lifetime
            mn.t_acked = now_ns
            self.timers.push(row, now_ns + <int64_t>rint(refresh_in * 1e9))
            self.lfi[row] = NO_LFI
        if not registrations and accepted is None and rejected is None and malformed is None:
            return None
        return registrations, accepted or [], rejected or [], malformed or []

    # --- PBUs ------------------------------------------------------------------------------

    def send_scheduled(
        self, scheduled, intended, Py_ssize_t cursor, int64_t now_ns, int64_t limit,
        double tolerance,
    ):
        """MagEngine._send_scheduled up to the PBUs (``due_rows``): the schedule's rows
        ``scheduled[cursor:]`` whose ``intended`` time (ns) is at or before ``limit``. Returns
        None, or (end, the largest lag in seconds, how many later than ``tolerance``): the rows
        ``scheduled[cursor:end]`` are due their PBU."""
        c_array(scheduled, np.int64, "scheduled")
        c_array(intended, np.int64, "intended")
        cdef double last = 0.0
        cdef int64_t late = 0
        cdef Py_ssize_t end = due_rows(
            self, <const int64_t*>data_of(scheduled), <const int64_t*>data_of(intended), cursor,
            len(intended), now_ns, limit, tolerance, &last, &late,
        )
        if end == cursor:
            return None
        return end, last, late

    def transmit(self, rows, int64_t now_ns, uint64_t clock) -> int:
        """MagEngine._transmit's bookkeeping for ``rows`` (int64; ``transmit_rows``): their
        common encoding group key, or -1 when they differ."""
        cdef const int64_t[::1] r = rows
        return transmit_rows(self, &r[0] if r.shape[0] else NULL, r.shape[0], now_ns, clock)


include "mag_pbus.pxi"
include "mag_routes.pxi"
include "mag_serve.pxi"
