# The MAG step's tables, included by ext/mag_step.pyx: the address table (IPv6 address -> row),
# the row heap of the session timers, the histogram recorder over HdrHistogram counts, and the
# pointers of a batch of datagram columns (Views).
# ---------------------------------------------------------------------------------------------
# Addresses to indexes

cdef class AddressTable:
    """The index of each of ``addresses`` ((n, 16) uint8; a repeated one: its last index), and
    -1 for any other address."""

    cdef uint8_t* keys
    cdef int64_t* slots  # index + 1; 0: empty
    cdef uint64_t mask

    def __cinit__(self, addresses):
        keys = np.ascontiguousarray(addresses, dtype=np.uint8).reshape(-1, ADDRESS)
        cdef Py_ssize_t n = len(keys), size = 16, i
        cdef uint64_t at
        while size < 2 * n:
            size <<= 1
        self.mask = size - 1
        self.keys = <uint8_t*>malloc(max(n, 1) * ADDRESS)
        self.slots = <int64_t*>malloc(size * sizeof(int64_t))
        if not self.keys or not self.slots:
            raise MemoryError()
        memset(self.slots, 0, size * sizeof(int64_t))
        if n:
            memcpy(self.keys, data_of(keys), n * ADDRESS)
        for i in range(n):
            at = address_hash(self.keys + i * ADDRESS) & self.mask
            while self.slots[at] and memcmp(
                self.keys + (self.slots[at] - 1) * ADDRESS, self.keys + i * ADDRESS, ADDRESS
            ):
                at = (at + 1) & self.mask
            self.slots[at] = i + 1

    def __dealloc__(self):
        free(self.keys)
        free(self.slots)

    cdef inline int64_t find(self, const uint8_t* key) noexcept nogil:
        cdef uint64_t at = address_hash(key) & self.mask
        while self.slots[at]:
            if not memcmp(self.keys + (self.slots[at] - 1) * ADDRESS, key, ADDRESS):
                return self.slots[at] - 1
            at = (at + 1) & self.mask
        return -1

    def lookup(self, addresses) -> np.ndarray:
        """The index of each row of ``addresses`` ((n, 16) uint8), -1 for unknown ones."""
        keys = np.ascontiguousarray(addresses, dtype=np.uint8).reshape(-1, ADDRESS)
        out = np.empty(len(keys), dtype=np.int64)
        cdef int64_t* o = <int64_t*>data_of(out)
        cdef const uint8_t* k = <const uint8_t*>data_of(keys)
        cdef Py_ssize_t i
        for i in range(len(keys)):
            o[i] = self.find(k + i * ADDRESS)
        return out


# ---------------------------------------------------------------------------------------------
# Session timers

cdef struct entry_t:
    int64_t deadline
    int64_t row


cdef int compare_rows(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<const int64_t*>a)[0], y = (<const int64_t*>b)[0]
    return (x > y) - (x < y)


cdef class RowHeap:
    """``RowTimers`` (lmaload/protocol/mag_timers.py) compiled: the ``t_due`` column of ``mns``
    stays the truth; each arming pushes (deadline, row) on a binary heap, and an entry whose
    deadline no longer equals the column (re-armed or disarmed since) is dropped when popped.
    The same entries stay pending as in ``RowTimers``, so ``next`` gives the same time."""

    cdef object mns_ref
    cdef mn_t* mns
    cdef Py_ssize_t n_mns
    cdef entry_t* heap
    cdef Py_ssize_t size, capacity

    def __cinit__(self, mns):
        self.mns_ref = c_array(mns, MN_DTYPE, "mns")
        self.mns = <mn_t*>data_of(mns)
        self.n_mns = len(mns)
        self.capacity = 64
        self.heap = <entry_t*>malloc(self.capacity * sizeof(entry_t))
        if not self.heap:
            raise MemoryError()
        cdef Py_ssize_t i
        for i in range(self.n_mns):
            self.mns[i].t_due = NO_TIMER

    def __dealloc__(self):
        free(self.heap)

    cdef int push(self, int64_t row, int64_t deadline) except -1:
        cdef entry_t* grown
        cdef Py_ssize_t i, parent
        if self.size == self.capacity:
            grown = <entry_t*>realloc(self.heap, 2 * self.capacity * sizeof(entry_t))
            if not grown:
                raise MemoryError()
            self.heap, self.capacity = grown, 2 * self.capacity
        self.mns[row].t_due = deadline
        i = self.size
        self.size += 1
        while i:
            parent = (i - 1) >> 1
            if self.heap[parent].deadline <= deadline:
                break
            self.heap[i] = self.heap[parent]
            i = parent
        self.heap[i].deadline = deadline
        self.heap[i].row = row
        return 0

    cdef void pop(self) noexcept nogil:
        cdef entry_t last
        cdef Py_ssize_t i = 0, child
        self.size -= 1
        last = self.heap[self.size]
        while True:
            child = 2 * i + 1
            if child >= self.size:
                break
            if child + 1 < self.size and self.heap[child + 1].deadline < self.heap[child].deadline:
                child += 1
            if self.heap[child].deadline >= last.deadline:
                break
            self.heap[i] = self.heap[child]
            i = child
        self.heap[i] = last

    def arm(self, rows, deadlines) -> None:
        cdef const int64_t[::1] r = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
        cdef const int64_t[::1] d = np.ascontiguousarray(deadlines, dtype=np.int64).reshape(-1)
        cdef Py_ssize_t i
        for i in range(r.shape[0]):
            self.push(wrap_index(r[i], self.n_mns), d[i])

    def disarm(self, rows) -> None:
        cdef const int64_t[::1] r = np.ascontiguousarray(rows, dtype=np.int64).reshape(-1)
        cdef Py_ssize_t i
        for i in range(r.shape[0]):
            self.mns[wrap_index(r[i], self.n_mns)].t_due = NO_TIMER

    cpdef object next(self):
        """The earliest deadline (possibly of a stale entry), None when none is pending."""
        return self.heap[0].deadline if self.size else None

    def pop_due(self, int64_t limit) -> np.ndarray:
        """Rows whose deadline is at or before ``limit`` (sorted, each once); their timers stay
        in the column until re-armed or disarmed."""
        cdef Py_ssize_t n = 0, k = 0, i
        cdef int64_t* rows
        cdef entry_t top
        if not self.size or self.heap[0].deadline > limit:
            return np.zeros(0, dtype=np.int64)
        rows = <int64_t*>malloc(self.size * sizeof(int64_t))
        if not rows:
            raise MemoryError()
        while self.size and self.heap[0].deadline <= limit:
            top = self.heap[0]
            self.pop()
            if self.mns[top.row].t_due == top.deadline:
                rows[n] = top.row
                n += 1
        qsort(rows, n, sizeof(int64_t), compare_rows)
        out = np.empty(n, dtype=np.int64)
        cdef int64_t* o = <int64_t*>data_of(out)
        for i in range(n):
            if i == 0 or rows[i] != rows[i - 1]:
                o[k] = rows[i]
                k += 1
        free(rows)
        return out[:k]


# ---------------------------------------------------------------------------------------------
# Histograms (lmaload.measure.histogram): counts recorded in place, the out-of-range ones counted
# here until the engine adds them to the Histogram.

cdef struct hist_t:
    int64_t* counts
    int64_t highest
    int unit_magnitude, half_count_magnitude
    int64_t half_count
    int64_t overflow, underflow


cdef int open_histogram(hist_t* h, histogram) except -1:
    counts = histogram.counts
    c_array(counts, np.int64, "Histogram.counts")
    layout = histogram.layout
    h.counts = <int64_t*>data_of(counts)
    h.highest = layout.highest
    h.unit_magnitude = layout.unit_magnitude
    h.half_count_magnitude = layout.sub_bucket_half_count_magnitude
    h.half_count = layout.sub_bucket_half_count
    h.overflow = h.underflow = 0
    return 0


cdef inline void record(hist_t* h, int64_t v) noexcept nogil:
    """Layout.index_of of one value, counted."""
    cdef int64_t mask, bucket, sub_bucket
    if v > h.highest:
        h.overflow += 1
        return
    if v < 0:
        h.underflow += 1
        return
    mask = (2 * h.half_count - 1) << h.unit_magnitude
    bucket = (64 - clzll(<unsigned long long>(v | mask))) - h.unit_magnitude
    bucket -= h.half_count_magnitude + 1
    sub_bucket = v >> (bucket + h.unit_magnitude)
    h.counts[((bucket + 1) << h.half_count_magnitude) + (sub_bucket - h.half_count)] += 1


cdef void fold_range(hist_t* h, histogram):
    if h.overflow:
        histogram.overflow += h.overflow
        h.overflow = 0
    if h.underflow:
        histogram.underflow += h.underflow
        h.underflow = 0


cdef inline int64_t floor_div(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b
    return q - 1 if (a % b != 0) and ((a < 0) != (b < 0)) else q


cdef class Views:
    """The pointers of datagrams ``buf[starts[i]:ends[i]]`` from ``src[i]`` to ``dst[i]`` (the
    arrays are kept alive while this is)."""

    cdef const uint8_t[::1] buf
    cdef const int64_t[::1] starts, ends
    cdef const uint8_t[:, ::1] src, dst
    cdef const uint8_t* b
    cdef const int64_t* s
    cdef const int64_t* e
    cdef const uint8_t* sa
    cdef const uint8_t* da
    cdef Py_ssize_t n

    def __cinit__(self, buf, starts, ends, src, dst):
        self.buf = buf
        self.starts = np.ascontiguousarray(starts, dtype=np.int64)
        self.ends = np.ascontiguousarray(ends, dtype=np.int64)
        self.src = np.ascontiguousarray(src, dtype=np.uint8).reshape(-1, ADDRESS)
        self.dst = np.ascontiguousarray(dst, dtype=np.uint8).reshape(-1, ADDRESS)
        self.n = self.starts.shape[0]
        if self.ends.shape[0] != self.n or self.src.shape[0] != self.n:
            raise ValueError("starts, ends and src differ in length")
        self.b = &self.buf[0] if self.buf.shape[0] else NULL
        self.s = &self.starts[0] if self.n else NULL
        self.e = &self.ends[0] if self.n else NULL
        self.sa = &self.src[0, 0] if self.n else NULL
        self.da = &self.dst[0, 0] if self.dst.shape[0] else NULL
