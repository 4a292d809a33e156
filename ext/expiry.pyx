# cython: language_level=3, annotation_typing=False
"""Binding cache expiry: a lazy min-heap of (when, row) in C memory.

The compiled replacement for arming ``("bce", row)`` in the engine's Python timer heap. Entries
are never removed when a row is re-armed or freed; they go stale instead, and are skipped (and
dropped) when they reach the top. An entry (when, row) is *current* when, in the binding cache's
columns passed to the call, ``state[row] != 0`` (not FREE) and ``expires[row] == when``. The cache
may reallocate its rows array when it grows, so ``next``, ``pop_due`` and ``compact`` take the
``rows["expires"]`` and ``rows["state"]`` columns each time (strided views are fine); a row
outside them counts as stale.

Entries are ordered by (when, row): among equal deadlines the lower row comes first. Pushing the
same (when, row) twice keeps both entries, but ``pop_due`` returns the row once. When the heap
holds more than 2 × in_use + 1024 entries (``in_use``: the rows in use, not FREE, which the
caller passes to ``next`` and ``pop_due``; each holds one current entry at most), they rebuild it
from one entry per current row, so a long run of refreshes cannot grow it without bound, and a
cache that only grows (nothing stale) is never rebuilt.

The pure-Python twin is ``lmaload.protocol.timers.Timers``.
"""

import numpy as np

from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.math cimport isnan
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, malloc, realloc

cdef enum:
    INITIAL_CAPACITY = 64
    COMPACT_SLACK = 1024


cdef inline bint before(double w1, int64_t r1, double w2, int64_t r2) noexcept nogil:
    return w1 < w2 or (w1 == w2 and r1 < r2)


cdef inline bint is_current(
    double when, int64_t row, const double[:] expires, const uint8_t[:] state
) noexcept nogil:
    if row < 0 or row >= expires.shape[0] or row >= state.shape[0]:
        return False
    return state[row] != 0 and expires[row] == when


cdef class ExpiryHeap:
    """Deadlines per binding cache row; see the module docstring for the lazy semantics."""

    cdef double* _when
    cdef int64_t* _row
    cdef Py_ssize_t _size
    cdef Py_ssize_t _capacity

    def __cinit__(self):
        self._when = <double*>PyMem_Malloc(INITIAL_CAPACITY * sizeof(double))
        self._row = <int64_t*>PyMem_Malloc(INITIAL_CAPACITY * sizeof(int64_t))
        if self._when == NULL or self._row == NULL:
            raise MemoryError()
        self._size = 0
        self._capacity = INITIAL_CAPACITY

    def __dealloc__(self):
        PyMem_Free(self._when)
        PyMem_Free(self._row)

    def __len__(self):
        """Entries held, stale ones included (an upper bound on the rows armed)."""
        return self._size

    cdef int _reserve(self, Py_ssize_t size) except -1:
        cdef Py_ssize_t capacity = self._capacity
        cdef double* when
        cdef int64_t* row
        if size <= capacity:
            return 0
        while capacity < size:
            capacity *= 2
        when = <double*>PyMem_Realloc(self._when, capacity * sizeof(double))
        if when == NULL:
            raise MemoryError()
        self._when = when
        row = <int64_t*>PyMem_Realloc(self._row, capacity * sizeof(int64_t))
        if row == NULL:
            raise MemoryError()
        self._row = row
        self._capacity = capacity
        return 0

    cdef void _sift_up(self, Py_ssize_t i) noexcept nogil:
        cdef double w = self._when[i]
        cdef int64_t r = self._row[i]
        cdef Py_ssize_t parent
        while i > 0:
            parent = (i - 1) >> 1
            if not before(w, r, self._when[parent], self._row[parent]):
                break
            self._when[i] = self._when[parent]
            self._row[i] = self._row[parent]
            i = parent
        self._when[i] = w
        self._row[i] = r

    cdef void _sift_down(self, Py_ssize_t i) noexcept nogil:
        cdef Py_ssize_t n = self._size, child
        cdef double w = self._when[i]
        cdef int64_t r = self._row[i]
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            if child + 1 < n and before(
                self._when[child + 1], self._row[child + 1], self._when[child], self._row[child]
            ):
                child += 1
            if not before(self._when[child], self._row[child], w, r):
                break
            self._when[i] = self._when[child]
            self._row[i] = self._row[child]
            i = child
        self._when[i] = w
        self._row[i] = r

    cdef void _pop_top(self) noexcept nogil:
        self._size -= 1
        if self._size > 0:
            self._when[0] = self._when[self._size]
            self._row[0] = self._row[self._size]
            self._sift_down(0)

    cdef void _drop_stale(self, const double[:] expires, const uint8_t[:] state) noexcept nogil:
        while self._size and not is_current(self._when[0], self._row[0], expires, state):
            self._pop_top()

    cdef int _maybe_compact(
        self, const double[:] expires, const uint8_t[:] state, Py_ssize_t in_use
    ) except -1:
        if self._size > 2 * in_use + COMPACT_SLACK:
            self._compact(expires, state)
        return 0

    cdef int _compact(self, const double[:] expires, const uint8_t[:] state) except -1:
        """Keep one entry per current row, then heapify."""
        cdef Py_ssize_t rows = min(expires.shape[0], state.shape[0])
        cdef uint8_t* seen = <uint8_t*>PyMem_Malloc(rows if rows else 1)
        cdef Py_ssize_t i, kept = 0
        cdef int64_t r
        if seen == NULL:
            raise MemoryError()
        with nogil:
            for i in range(rows):
                seen[i] = 0
            for i in range(self._size):
                r = self._row[i]
                if is_current(self._when[i], r, expires, state) and not seen[r]:
                    seen[r] = 1
                    self._when[kept] = self._when[i]
                    self._row[kept] = r
                    kept += 1
            self._size = kept
            for i in range(kept // 2 - 1, -1, -1):
                self._sift_down(i)
        PyMem_Free(seen)
        return 0

    def push(self, row, when):
        """Arm ``row`` at ``when`` (Unix seconds). Older entries of the row go stale once the
        cache's ``expires[row]`` is set to ``when``."""
        cdef int64_t r = row
        cdef double w = when
        if isnan(w):
            raise ValueError("an expiry time is not NaN")
        self._reserve(self._size + 1)
        self._when[self._size] = w
        self._row[self._size] = r
        self._size += 1
        self._sift_up(self._size - 1)

    def push_many(self, rows, when):
        """Arm ``rows[i]`` at ``when[i]`` for every i (one call for a batch)."""
        cdef const int64_t[:] r = np.ascontiguousarray(rows, dtype=np.int64)
        cdef const double[:] w = np.ascontiguousarray(when, dtype=np.float64)
        cdef Py_ssize_t i, n = r.shape[0]
        if w.shape[0] != n:
            raise ValueError(f"{n} rows but {w.shape[0]} expiry times")
        for i in range(n):
            if isnan(w[i]):
                raise ValueError("an expiry time is not NaN")
        self._reserve(self._size + n)
        with nogil:
            for i in range(n):
                self._when[self._size] = w[i]
                self._row[self._size] = r[i]
                self._size += 1
                self._sift_up(self._size - 1)

    def next(self, const double[:] expires, const uint8_t[:] state, Py_ssize_t in_use):
        """The earliest deadline of a current entry, or None; stale entries on top are dropped."""
        self._maybe_compact(expires, state, in_use)
        with nogil:
            self._drop_stale(expires, state)
        return self._when[0] if self._size else None

    def pop_due(
        self, double now, const double[:] expires, const uint8_t[:] state, Py_ssize_t in_use
    ):
        """The rows whose current deadline is at or before ``now``, in (when, row) order, each
        once; their entries leave the heap (the caller re-arms or frees the rows)."""
        self._maybe_compact(expires, state, in_use)
        cdef Py_ssize_t count = 0, capacity = 64
        cdef int64_t* due = <int64_t*>malloc(capacity * sizeof(int64_t))
        cdef int64_t* grown
        cdef double w, last_when = 0
        cdef int64_t r
        cdef bint failed = False
        if due == NULL:
            raise MemoryError()
        with nogil:
            while self._size:
                w = self._when[0]
                r = self._row[0]
                if not is_current(w, r, expires, state):
                    self._pop_top()
                    continue
                if w > now:
                    break
                if count and w == last_when and r == due[count - 1]:
                    self._pop_top()  # the same (when, row) pushed again
                    continue
                if count == capacity:
                    grown = <int64_t*>realloc(due, 2 * capacity * sizeof(int64_t))
                    if grown == NULL:
                        failed = True
                        break
                    due = grown
                    capacity *= 2
                self._pop_top()
                due[count] = r
                count += 1
                last_when = w
        try:
            if failed:
                raise MemoryError()
            out = np.empty(count, dtype=np.int64)
            if count:
                out[:] = <int64_t[:count]>due
            return out
        finally:
            free(due)

    def compact(self, const double[:] expires, const uint8_t[:] state):
        """Rebuild the heap from one entry per current row now."""
        self._compact(expires, state)
