# cython: language_level=3, boundscheck=False, wraparound=False
"""The bookkeeping of the active LMA's State Sync packing (``protocol/lma/sync_out.py``),
compiled: which binding cache rows an SS-REP batch carries (``live_rows``) and which SS-REP each
withheld PBA waits for (``group_withheld``), each in one call instead of a dozen numpy calls on
small arrays; and the SS-ACKs among a received batch (``scan_ss_acks``). ``tests/test_sync_plan.py``
checks them against the numpy and the ``encode_ss_ack`` they replace.
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc, qsort
from libc.string cimport memcmp

from lmaload.wire import codepoints as cp

cnp.import_array()

include "checksum.pxi"

cdef enum:
    SS_ACK_LENGTH = 16  # the fixed part padded to 8n octets

cdef uint8_t IPPROTO_MH = cp.IPPROTO_MH


cdef struct pair_t:
    int64_t row
    int64_t pos


cdef int by_row_then_pos(const void* a, const void* b) noexcept nogil:
    cdef const pair_t* x = <const pair_t*>a
    cdef const pair_t* y = <const pair_t*>b
    if x.row != y.row:
        return (x.row > y.row) - (x.row < y.row)
    return (x.pos > y.pos) - (x.pos < y.pos)


cdef pair_t* sorted_pairs(const int64_t* rows, Py_ssize_t n) except NULL:
    """(row, position) of each of ``rows``, sorted by row, then position."""
    cdef pair_t* pairs = <pair_t*>malloc(max(n, 1) * sizeof(pair_t))
    cdef Py_ssize_t i
    if not pairs:
        raise MemoryError()
    for i in range(n):
        pairs[i].row = rows[i]
        pairs[i].pos = i
    qsort(pairs, n, sizeof(pair_t), by_row_then_pos)
    return pairs


def live_rows(list parts, const uint8_t[:] state, uint8_t active):
    """The rows of ``parts`` (int64 arrays, in order) each once, in the order of its first
    appearance, leaving out those whose ``state`` is not ``active``."""
    cdef Py_ssize_t n = 0, i, k = 0
    cdef const int64_t[::1] part
    for p in parts:
        n += len(p)
    rows = np.empty(n, dtype=np.int64)
    cdef int64_t* r = <int64_t*>cnp.PyArray_DATA(rows)
    for p in parts:
        part = np.ascontiguousarray(p, dtype=np.int64)
        for i in range(part.shape[0]):
            if not 0 <= part[i] < state.shape[0]:
                raise IndexError(f"row {part[i]} is not in the cache")
            r[k] = part[i]
            k += 1
    keep = np.zeros(n, dtype=np.uint8)
    cdef uint8_t* kp = <uint8_t*>cnp.PyArray_DATA(keep)
    cdef pair_t* pairs = sorted_pairs(r, n)
    for i in range(n):
        if (i == 0 or pairs[i].row != pairs[i - 1].row) and state[pairs[i].row] == active:
            kp[pairs[i].pos] = 1
    free(pairs)
    k = 0
    for i in range(n):
        if kp[i]:
            r[k] = r[i]
            k += 1
    return rows[:k]


def group_withheld(const int64_t[::1] rows, const int64_t[::1] first, const int64_t[::1] waiting):
    """For PBAs waiting for the rows ``waiting``, an SS-REP batch carrying the distinct
    ``rows``, message k the rows ``first[k]`` to ``first[k + 1] - 1``: (order, bounds), the
    PBAs ordered by the message that carries their row (stable), those of message k at
    ``order[bounds[k + 1]:bounds[k + 2]]`` and those whose row it does not carry at
    ``order[bounds[0]:bounds[1]]``."""
    cdef Py_ssize_t n = rows.shape[0], w = waiting.shape[0], m = first.shape[0] - 1, i, lo, hi, mid
    cdef int64_t key
    if m < 0:
        raise ValueError("first is empty")
    message = np.empty(w, dtype=np.int64)
    order = np.empty(w, dtype=np.int64)
    bounds = np.zeros(m + 2, dtype=np.int64)
    cdef int64_t* msg = <int64_t*>cnp.PyArray_DATA(message)
    cdef int64_t* out = <int64_t*>cnp.PyArray_DATA(order)
    cdef int64_t* b = <int64_t*>cnp.PyArray_DATA(bounds)
    cdef pair_t* pairs = sorted_pairs(&rows[0] if n else NULL, n)
    for i in range(w):
        key = waiting[i]
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) // 2
            if pairs[mid].row < key:
                lo = mid + 1
            else:
                hi = mid
        if lo == n or pairs[lo].row != key:
            msg[i] = -1
        else:  # the last message starting at or before the row's position
            key = pairs[lo].pos
            lo, hi = 0, m + 1
            while lo < hi:
                mid = (lo + hi) // 2
                if first[mid] <= key:
                    lo = mid + 1
                else:
                    hi = mid
            msg[i] = lo - 1
        b[msg[i] + 2] += 1
    free(pairs)
    for i in range(m + 1):
        b[i + 1] += b[i]
    # A counting sort: the next free place of each message's PBAs, from the start of its own.
    cdef int64_t* place = <int64_t*>malloc((m + 1) * sizeof(int64_t))
    if not place:
        raise MemoryError()
    for i in range(m + 1):
        place[i] = b[i]
    for i in range(w):
        out[place[msg[i] + 1]] = i
        place[msg[i] + 1] += 1
    free(place)
    return order, bounds


cdef inline const void* data_of(object a):
    return cnp.PyArray_DATA(<cnp.ndarray>a)


def scan_ss_acks(buf, starts, ends, src, dst, bytes own, peers, list peer_names, bytes template):
    """The datagrams ``buf[starts[i]:ends[i]]`` from one of ``peers`` ((p, 16) uint8) to ``own``
    (16 octets) whose octets are ``template`` (an SS-ACK of Identifier 0 as ``encode_mh`` gives
    it, whatever its checksum) but for their own Identifier and the checksum under their
    addresses: (index, identifier, ``peer_names[j]``) of each, in order, ``j`` its peer's row.
    Raw pointers rather than typed memoryviews: this runs on every wakeup of an active LMA."""
    buf_a = np.ascontiguousarray(buf, dtype=np.uint8)
    lo_a = np.ascontiguousarray(starts, dtype=np.int64)
    hi_a = np.ascontiguousarray(ends, dtype=np.int64)
    src_a = np.ascontiguousarray(src, dtype=np.uint8)
    dst_a = np.ascontiguousarray(dst, dtype=np.uint8)
    peers_a = np.ascontiguousarray(peers, dtype=np.uint8)
    cdef Py_ssize_t n = len(lo_a), size = buf_a.size, p = peers_a.size // 16, i, j
    if len(own) != 16 or len(template) != SS_ACK_LENGTH or len(peer_names) != p:
        raise ValueError("own is 16 octets, the template an SS-ACK's, a name for each peer")
    if len(hi_a) != n or src_a.size != 16 * n or dst_a.size != 16 * n:
        raise ValueError("starts, ends, src and dst differ in length or width")
    cdef const uint8_t* b = <const uint8_t*>data_of(buf_a)
    cdef const int64_t* lo = <const int64_t*>data_of(lo_a)
    cdef const int64_t* hi = <const int64_t*>data_of(hi_a)
    cdef const uint8_t* s = <const uint8_t*>data_of(src_a)
    cdef const uint8_t* d = <const uint8_t*>data_of(dst_a)
    cdef const uint8_t* ps = <const uint8_t*>data_of(peers_a)
    cdef const uint8_t* t = template
    cdef const uint8_t* me = own
    cdef const uint8_t* m
    cdef uint64_t sum
    found = []
    for i in range(n):
        if hi[i] - lo[i] != SS_ACK_LENGTH or not 0 <= lo[i] <= size - SS_ACK_LENGTH:
            continue
        m = b + lo[i]
        if memcmp(m, t, 4) or memcmp(m + 6, t + 6, 2) or memcmp(m + 10, t + 10, SS_ACK_LENGTH - 10):
            continue
        if memcmp(d + 16 * i, me, 16):
            continue
        for j in range(p):
            if not memcmp(s + 16 * i, ps + 16 * j, 16):
                break
        else:
            continue
        sum = csum_pseudo_header(s + 16 * i, d + 16 * i, SS_ACK_LENGTH, IPPROTO_MH)
        sum += csum_add(m, 4) + csum_add(m + 6, SS_ACK_LENGTH - 6)
        if csum_fold(sum) != (m[4] << 8 | m[5]):
            continue
        found.append((i, m[8] << 8 | m[9], peer_names[j]))
    return found
