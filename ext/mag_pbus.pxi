# The PBUs of MagStep's sessions, included by ext/mag_step.pyx: the schedule's due rows go
# REGISTERING (MagEngine._send_scheduled), each PBU's bookkeeping (MagEngine._transmit), and an
# encoder's PBUs straight into the arena. MagStep's methods (the engine's Python driver) and
# MagServe (the compiled one) both call these.
from lmaload._ext.bulk cimport PbuEncoder


cdef Py_ssize_t due_rows(
    MagStep step, const int64_t* rows, const int64_t* at, Py_ssize_t cursor, Py_ssize_t n,
    int64_t now_ns, int64_t limit, double tolerance, double* last, int64_t* late,
) noexcept:
    """The schedule's rows ``rows[cursor:]`` whose intended time ``at`` (ns) is at or before
    ``limit`` go REGISTERING (HI 1, the LMA their MAG registers new sessions with), their lag
    recorded, the largest into ``last`` and how many later than ``tolerance`` added to ``late``.
    Returns the end of those rows."""
    cdef Py_ssize_t end = cursor
    cdef double lag
    cdef mn_t* mn
    while end < n and at[end] <= limit:
        lag = max(<double>(now_ns - at[end]) / 1e9, 0.0)
        record(&step.lag, <int64_t>rint(lag * 1e6))
        last[0] = max(last[0], lag)
        late[0] += lag > tolerance
        mn = &step.mns[rows[end]]
        mn.state = REGISTERING
        mn.hi = HI_ATTACH_NEW_INTERFACE
        mn.retries = 0
        mn.lma = step.mag_lma[mn.mag]
        step.lfi[rows[end]] = NO_LFI
        end += 1
    return end


cdef int64_t transmit_rows(
    MagStep step, const int64_t* rows, Py_ssize_t n, int64_t now_ns, uint64_t clock
) except -3:
    """The bookkeeping of a PBU for each of the ``n`` rows: a new sequence number and Timestamp,
    the retransmission timer armed, counted. Returns the rows' common encoding group key
    ((LMA · 256 + LFI + 1) · 2 + de-registration), or -1 when they differ."""
    cdef Py_ssize_t i
    cdef int64_t row, key, common = -2
    cdef mn_t* mn
    cdef bint dereg
    cdef double timeout
    for i in range(n):
        row = rows[i]
        mn = &step.mns[row]
        mn.seq += 1
        mn.ts = max(mn.ts + 1, clock)
        dereg = mn.state == DEREGISTERING
        if dereg:
            timeout = step.initial_timeout
        else:
            timeout = min(step.initial_timeout * ldexp(1.0, mn.retries), step.max_timeout)
        step.timers.push(row, now_ns + <int64_t>rint(timeout * 1e9))
        key = (<int64_t>mn.lma * 256 + step.lfi[row] + 1) * 2 + dereg
        common = key if common == -2 or common == key else -1
    step.pbu_sent += n
    return common


cdef int emit_encoded(
    MagStep step, PbuEncoder encoder, const int64_t* rows, Py_ssize_t n, Py_ssize_t lma,
    int64_t* offsets,
) except -1:
    """``MagStep.emit(*encoder.encode(rows), rows, lma)`` without the arrays in between:
    ``offsets`` is scratch for n + 1 entries."""
    cdef uint8_t* p = step.reserve(n, encoder.room(n))
    encoder.encode_rows(rows, n, step.mns, step.n_mns, p, offsets)
    rows_added(step, offsets, rows, n, lma)
    return 0


cdef void rows_added(
    MagStep step, const int64_t* offsets, const int64_t* rows, Py_ssize_t n, Py_ssize_t lma
) noexcept:
    """The ``n`` messages just written at the arena's end (``offsets``) go from the MAG of
    session ``rows[i]`` to LMA ``lma``."""
    cdef Py_ssize_t i
    for i in range(n):
        step.added(
            offsets[i + 1] - offsets[i], step.mags[step.mns[rows[i]].mag].addr6,
            step.lma_packed + lma * ADDRESS,
        )
