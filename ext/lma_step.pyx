# cython: language_level=3
"""The LMA's compiled step over one received batch, beside the fast lane (``lmaload._ext.lane``):
what takes each datagram, which PBUs are shed unanswered, and the RFC 5847 heartbeat responses.

``lmaload.protocol.lma.fast_lane`` scans a batch (``lma_batch.scan_pbus``), then:

- ``shed_marks`` marks the PBUs to drop unanswered under overload (``lmaload.protocol.lma.shed``
  is the reference: it decides the same from decoded messages, and stands in whenever the batch
  holds a Binding Update the scan did not read);
- ``Classifier.codes`` gives each datagram its taker under the current ownership: the lane, the
  heartbeat responder, a takeover's hold, nobody (shed), or the reference path;
- ``answer_heartbeats`` answers a run of heartbeat requests with the octets of the reference
  encoder's response (a template from ``encode_mh``, its sequence number and checksum filled;
  a plain RFC 5213 LMA's is a Binding Error 2, its checksum filled).

No numpy allocation per datagram; the verdict per (MAG, destination) pair comes from a dict the
caller keeps per ownership state.

The pure-Python twin is the reference dispatch of ``lmaload.protocol.lma.engine.LmaEngine``
with ``lmaload.protocol.lma.heartbeat.Heartbeats``.
"""

import numpy as np

cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.math cimport isnan
from libc.stdint cimport int16_t, int64_t, uint8_t, uint16_t, uint64_t
from libc.string cimport memcmp, memcpy

from lmaload.bulk_types import PBU_SCAN_DTYPE
from lmaload.wire import codepoints as cp

include "checksum.pxi"

cnp.import_array()

# What takes a datagram (Classifier.codes).
REFERENCE = 0
LANE = 1
HEARTBEAT = 2
TAKEOVER = 3
SHED = 4

# Why a PBU is shed (shed_marks; lmaload.protocol.lma.shed mirrors these).
KEEP = 0
STALE = 1
SUPERSEDED = 2
BACKLOG = 3


def _offset(name):
    return PBU_SCAN_DTYPE.fields[name][1]


cdef Py_ssize_t SCAN_SIZE = PBU_SCAN_DTYPE.itemsize
cdef Py_ssize_t S_FAST = _offset("fast")
cdef Py_ssize_t S_MN_START = _offset("mn_start")
cdef Py_ssize_t S_MN_LEN = _offset("mn_len")
cdef Py_ssize_t S_HNP_ZERO = _offset("hnp_zero")
cdef Py_ssize_t S_HI = _offset("hi")
cdef Py_ssize_t S_ATT = _offset("att")
cdef Py_ssize_t S_LLID_START = _offset("llid_start")
cdef Py_ssize_t S_LLID_LEN = _offset("llid_len")
cdef Py_ssize_t S_HAS_LFI = _offset("has_lfi")

cdef uint8_t MH_HEARTBEAT = cp.MH_HEARTBEAT
cdef uint8_t MH_BINDING_UPDATE = cp.MH_BINDING_UPDATE
cdef uint8_t HB_FLAG_R = cp.HB_FLAG_R
cdef uint8_t PAYLOAD_PROTO_NONE = cp.PAYLOAD_PROTO_NONE
cdef uint8_t IPPROTO_MH = cp.IPPROTO_MH
cdef uint8_t OPT_PADN = cp.OPT_PADN
cdef uint8_t HI_NOT_CHANGED = cp.HI_NOT_CHANGED
# A heartbeat request as MAGs send it: the 6-octet fixed part padded to 16 octets by a PadN.
cdef Py_ssize_t HB_REQUEST_LENGTH = 16

# Verdict bits (FastLane._verdict).
cdef int ALLOWED = 1
cdef int FOR_TAKEOVER = 2
cdef int RECOVERED = 4


cdef inline uint16_t mh_checksum(
    const uint8_t* mh, Py_ssize_t n, const uint8_t* src, const uint8_t* dst
) noexcept nogil:
    """The Mobility Header checksum of mh[0:n] with its checksum field counted as it is."""
    return csum_fold(csum_pseudo_header(src, dst, n, IPPROTO_MH) + csum_add(mh, n))


cdef inline bint is_heartbeat_request(
    const uint8_t* mh, Py_ssize_t n, const uint8_t* src, const uint8_t* dst
) noexcept nogil:
    """A heartbeat request of the one common shape, checksum valid: the reference decodes it to
    a ``Heartbeat`` without R and answers it."""
    return (
        n == HB_REQUEST_LENGTH
        and mh[0] == PAYLOAD_PROTO_NONE
        and mh[1] == 1
        and mh[2] == MH_HEARTBEAT
        and not mh[7] & HB_FLAG_R
        and mh[12] == OPT_PADN and mh[13] == 2 and mh[14] == 0 and mh[15] == 0
        and mh_checksum(mh, n, src, dst) == 0
    )


cdef bytes shed_key(const uint8_t* buf, const uint8_t* rec, const uint8_t* src, const uint8_t* dst):
    """The mobile node interface a scanned PBU is for, as ``shed.key`` builds it from decoded
    fields: source and destination, ATT, MN LL-ID and MN-ID."""
    cdef int16_t llid_len = (<const int16_t*>(rec + S_LLID_LEN))[0]
    cdef int16_t mn_len = (<const int16_t*>(rec + S_MN_LEN))[0]
    cdef Py_ssize_t ll = llid_len if llid_len > 0 else 0
    cdef bytes key = PyBytes_FromStringAndSize(NULL, 35 + ll + mn_len)
    cdef uint8_t* k = <uint8_t*>PyBytes_AS_STRING(key)
    memcpy(k, src, 16)
    memcpy(k + 16, dst, 16)
    k[32] = rec[S_ATT]
    k[33] = <uint8_t>(llid_len + 1)  # 0: no MN LL-ID
    k[34] = <uint8_t>ll
    if ll:
        memcpy(k + 35, buf + (<const int64_t*>(rec + S_LLID_START))[0], ll)
    memcpy(k + 35 + ll, buf + (<const int64_t*>(rec + S_MN_START))[0], mn_len)
    return key


def shed_marks(
    const uint8_t[::1] buf,
    const int64_t[::1] starts,
    const int64_t[::1] ends,
    cnp.ndarray scan,
    const uint8_t[:, ::1] src,
    const uint8_t[:, ::1] dst,
    const double[::1] arrival,
    double now,
    double max_delay,
    bint supersede,
    bint backlog,
    uint8_t[::1] out,
):
    """Mark (in ``out``, KEEP or the reason) the scanned PBUs to shed: all of them when
    ``backlog``; else those that waited more than ``max_delay`` seconds since ``arrival``
    (STALE), then, if ``supersede``, those for a mobile node interface that a later PBU of the
    batch is also for (SUPERSEDED). Returns how many it marked, or -1, marking nothing, when a
    datagram of Binding Update type was not scanned (``fast``): ``shed.marks`` must decide from
    decoded messages."""
    cdef Py_ssize_t n = scan.shape[0], i
    cdef const uint8_t* recs = <const uint8_t*>cnp.PyArray_DATA(scan)
    cdef const uint8_t* rec
    cdef Py_ssize_t size = buf.shape[0]
    cdef set seen = set()
    cdef bytes key
    cdef Py_ssize_t marked = 0
    for i in range(n):
        out[i] = KEEP
        if not recs[i * SCAN_SIZE + S_FAST] and 0 <= starts[i] and starts[i] + 2 < ends[i] <= size:
            if buf[starts[i] + 2] == MH_BINDING_UPDATE:
                return -1
    for i in range(n - 1, -1, -1):
        rec = recs + i * SCAN_SIZE
        if not rec[S_FAST]:
            continue
        if backlog:
            out[i] = BACKLOG
        elif not isnan(arrival[i]) and now - arrival[i] > max_delay:
            out[i] = STALE
        elif supersede:
            key = shed_key(&buf[0], rec, &src[i, 0], &dst[i, 0])
            if key in seen:
                out[i] = SUPERSEDED
            else:
                seen.add(key)
        marked += out[i] != KEEP
    return marked


cdef class Classifier:
    """Gives each datagram of a batch its taker (the codes above) for an LMA of individual
    ``address`` and LMAA ``lmaa`` (16 octets each)."""

    cdef bytes address, lmaa

    def __init__(self, bytes address not None, bytes lmaa not None):
        if len(address) != 16 or len(lmaa) != 16:
            raise ValueError("addresses are 16 octets")
        self.address = address
        self.lmaa = lmaa

    def codes(
        self,
        const uint8_t[::1] buf,
        const int64_t[::1] starts,
        const int64_t[::1] ends,
        cnp.ndarray scan,
        const uint8_t[:, ::1] src,
        const uint8_t[:, ::1] dst,
        const uint8_t[::1] shed,
        bint owns_lmaa,
        dict verdicts,
        verdict,
        uint8_t[::1] out,
    ):
        """Fill ``out``: SHED where ``shed`` marks the datagram, LANE for an eligible PBU,
        TAKEOVER for a failover PBU to hold for a takeover under way, HEARTBEAT for a request
        to answer, REFERENCE otherwise. ``verdicts`` caches ``verdict(pair)`` (the verdict bits
        for the 32 octets of source and destination). Returns how many are HEARTBEAT."""
        cdef Py_ssize_t n = scan.shape[0], i, a, b
        cdef Py_ssize_t size = buf.shape[0]
        cdef const uint8_t* recs = <const uint8_t*>cnp.PyArray_DATA(scan)
        cdef const uint8_t* rec
        cdef const uint8_t* own = <const uint8_t*>PyBytes_AS_STRING(self.address)
        cdef const uint8_t* lmaa = <const uint8_t*>PyBytes_AS_STRING(self.lmaa)
        cdef uint8_t pair[32]
        cdef object bits
        cdef int v
        cdef bint local, recovery
        cdef Py_ssize_t heartbeats = 0
        for i in range(n):
            rec = recs + i * SCAN_SIZE
            local = memcmp(&dst[i, 0], own, 16) == 0 or (
                owns_lmaa and memcmp(&dst[i, 0], lmaa, 16) == 0
            )
            if shed[i]:
                out[i] = SHED
            elif rec[S_FAST]:
                out[i] = REFERENCE
                if not local:
                    continue
                memcpy(pair, &src[i, 0], 16)
                memcpy(pair + 16, &dst[i, 0], 16)
                key = PyBytes_FromStringAndSize(<const char*>pair, 32)
                bits = verdicts.get(key)
                if bits is None:
                    bits = verdicts[key] = verdict(key)
                v = bits
                # A recovery asking for a new prefix (§8.5) is the reference path's.
                recovery = rec[S_HNP_ZERO] and (
                    rec[S_HAS_LFI] or (v & RECOVERED and rec[S_HI] == HI_NOT_CHANGED)
                )
                if v & FOR_TAKEOVER and rec[S_HAS_LFI]:
                    out[i] = TAKEOVER
                elif v & ALLOWED and not recovery:
                    out[i] = LANE
            else:
                out[i] = REFERENCE
                a, b = starts[i], ends[i]
                if local and 0 <= a <= b <= size and is_heartbeat_request(
                    &buf[a], b - a, &src[i, 0], &dst[i, 0]
                ):
                    out[i] = HEARTBEAT
                    heartbeats += 1
        return heartbeats


def answer_heartbeats(
    const uint8_t[::1] buf,
    const int64_t[::1] starts,
    const uint8_t[:, ::1] src,
    const uint8_t[:, ::1] dst,
    const uint8_t[::1] codes,
    Py_ssize_t start,
    bytes lmaa not None,
    bytes to_lmaa not None,
    bytes to_address not None,
    bint echo_sequence=True,
):
    """Answer the heartbeat requests from ``start`` on, skipping SHED, up to the first datagram
    of another code. ``to_lmaa`` and ``to_address`` are the reference's responses (with sequence
    number 0) to a request sent to the LMAA and to the individual address; ``echo_sequence``
    false: they carry none (a plain LMA's Binding Error), only the checksum is filled. Returns
    (stop, buf, offsets, src, dst): the responses as columns, from where each request went to
    its sender."""
    cdef Py_ssize_t n = codes.shape[0], i, k = 0, count = 0, stop = n
    for i in range(start, n):
        if codes[i] == HEARTBEAT:
            count += 1
        elif codes[i] != SHED:
            stop = i
            break
    cdef Py_ssize_t length = len(to_lmaa)
    if len(to_address) != length or len(lmaa) != 16:
        raise ValueError("the responses differ in length")
    out = np.empty(count * length, dtype=np.uint8)
    offsets = np.arange(0, (count + 1) * length, length, dtype=np.int64)
    out_src = np.empty((count, 16), dtype=np.uint8)
    out_dst = np.empty((count, 16), dtype=np.uint8)
    cdef uint8_t[::1] o = out
    cdef uint8_t[:, ::1] os = out_src
    cdef uint8_t[:, ::1] od = out_dst
    cdef const uint8_t* to_l = <const uint8_t*>PyBytes_AS_STRING(to_lmaa)
    cdef const uint8_t* to_a = <const uint8_t*>PyBytes_AS_STRING(to_address)
    cdef const uint8_t* l = <const uint8_t*>PyBytes_AS_STRING(lmaa)
    cdef uint8_t* p
    cdef uint16_t checksum
    for i in range(start, stop):
        if codes[i] == SHED:
            continue
        p = &o[k * length]
        memcpy(p, to_l if memcmp(&dst[i, 0], l, 16) == 0 else to_a, length)
        if echo_sequence:
            memcpy(p + 8, &buf[starts[i] + 8], 4)  # the request's sequence number
        p[4] = p[5] = 0
        checksum = mh_checksum(p, length, &dst[i, 0], &src[i, 0])
        p[4] = checksum >> 8
        p[5] = <uint8_t>checksum
        memcpy(&os[k, 0], &dst[i, 0], 16)
        memcpy(&od[k, 0], &src[i, 0], 16)
        k += 1
    return stop, out, offsets, out_src, out_dst
