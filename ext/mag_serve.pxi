# The MAGs' common path, one compiled call per slice of a run (included by ext/mag_step.pyx):
# wait on the socket until the next timer (GIL released; with a timer due within a quantum,
# sleep through to it without watching the socket), receive, unframe, time each run of
# datagrams from the wire, run MagStep's PBA and heartbeat steps, run the schedule's sends and
# the heartbeat ticks, frame and send, calling the socket's and the encoder's C interfaces. What
# is rare goes back to the caller (MagLoop), which hands it to the engine's reference code and
# calls again.
from libc.math cimport ceil, floor
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME

from lmaload._ext.mmsg cimport BatchReceiver, BatchSender
from lmaload.protocol.mag_state import SLACK_NS as _SLACK_NS

cdef int64_t SLACK = _SLACK_NS


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long nfds, int timeout)
    enum:
        POLLIN


cdef enum:
    DONE = 0  # the deadline came
    TIMER = 1  # a timer the engine's reference code runs (MagEngine.handle_timer)
    PBAS = 2  # a run's PBA step left work: MagEngine.after_pbas
    HEARTBEATS = 3  # a run's heartbeat step left work: MagEngine.after_heartbeats
    DOWN = 4  # the heartbeat tick declared (MAG, LMA) pairs DOWN: LmaLiveness.went_down


cdef inline double wall_clock() noexcept nogil:
    """time.time(), the same float operations."""
    cdef timespec t
    clock_gettime(CLOCK_REALTIME, &t)
    return <double>(<int64_t>t.tv_sec * 1000000000 + t.tv_nsec) / 1e9


cdef class MagServe:
    """Serves one ``MagStep`` over one socket (``BatchSocket``): UDP/5436 through ``routes``
    (a ``Routes``), or the raw Mobility Header when ``routes`` is None. ``serve`` returns a
    (kind, value) pair: DONE, TIMER (now), PBAS (columns, now, result), HEARTBEATS (columns,
    now, result) or DOWN (now, pairs); the columns are (buf, starts, ends, src, dst, arrival)
    over this object's receive buffers, valid until the next call. Counters accumulate here
    until the caller takes them (``take``)."""

    cdef MagStep step
    cdef Routes routes
    cdef ReceiveClock clock
    cdef BatchReceiver receiver
    cdef BatchSender sender
    cdef object sock, encoders, fallback
    cdef cnp.ndarray scheduled, intended
    cdef cnp.ndarray pbu_offsets  # the encoder's offsets, grown as needed
    cdef int fd, max_datagrams, max_batches
    cdef bint full  # the last receive took as many as it could: more may be queued
    cdef double spread, tolerance, send_wait, quantum
    cdef Py_ssize_t cursor
    # the batch being delivered: datagrams [0, n) and the next run's start
    cdef object rx_buf, starts, ends, src, dst, arrival
    cdef Py_ssize_t n, at
    # framed output, grown as needed
    cdef cnp.ndarray tx_buf, tx_offsets, tx_src, tx_dst, tx_ports
    # counted since the last take
    cdef public int64_t sent, received, lag_sent, lag_late, kernel_drops
    cdef public double lag_max
    cdef public object drops
    # initial registrations accepted, as (count, the time of the last) per second from origin
    cdef double origin, reg_at
    cdef int64_t reg_count, reg_second
    cdef object registered

    def __cinit__(
        self, MagStep step, sock, Routes routes, ReceiveClock clock, encoders, fallback,
        scheduled, int max_batches, double spread, double tolerance, double send_wait,
        double quantum,
    ):
        self.step, self.sock, self.routes, self.clock = step, sock, routes, clock
        self.receiver, self.sender = sock.receiver, sock.sender
        self.fd, self.max_datagrams = sock.fileno(), sock.max_datagrams
        self.encoders, self.fallback = encoders, fallback
        self.scheduled = c_array(scheduled, np.int64, "scheduled")
        self.max_batches = max_batches  # receive batches before the timers get a look in
        self.spread, self.tolerance, self.send_wait = spread, tolerance, send_wait
        self.quantum = quantum  # work due within it: sleep through to it, socket unwatched
        cap = self.max_datagrams
        self.starts = np.zeros(cap, dtype=np.int64)
        self.ends = np.zeros(cap, dtype=np.int64)
        self.src = np.zeros((cap, ADDRESS), dtype=np.uint8)
        self.dst = np.zeros((cap, ADDRESS), dtype=np.uint8)
        self.arrival = np.zeros(cap, dtype=np.float64)
        self.rx_buf = np.zeros(0, dtype=np.uint8)
        self.pbu_offsets = np.zeros(0, dtype=np.int64)
        self.grow_tx(64, 8192)
        self.drops = {}
        self.registered = []

    cdef grow_tx(self, Py_ssize_t n, Py_ssize_t size):
        width = ADDRESS if self.routes is None else 4
        self.tx_buf = np.empty(size, dtype=np.uint8)
        self.tx_offsets = np.empty(n + 1, dtype=np.int64)
        self.tx_src = np.empty((n, width), dtype=np.uint8)
        self.tx_dst = np.empty((n, width), dtype=np.uint8)
        self.tx_ports = np.zeros(n, dtype=np.uint16)

    cdef count(self, str reason, int64_t n):
        if n:
            self.drops[reason] = self.drops.get(reason, 0) + n

    cdef note_registered(self, double now, int64_t count):
        cdef int64_t second = <int64_t>floor(now - self.origin)
        if self.reg_count and second != self.reg_second:
            self.registered.append((self.reg_count, self.reg_at))
            self.reg_count = 0
        self.reg_second, self.reg_at = second, now
        self.reg_count += count

    def take(self):
        """(sent, received, lag (sent, largest, late), kernel drops, drops by reason, initial
        registrations accepted as (count, at) by second) since the last call."""
        if self.reg_count:
            self.registered.append((self.reg_count, self.reg_at))
            self.reg_count = 0
        out = (
            self.sent, self.received, (self.lag_sent, self.lag_max, self.lag_late),
            self.kernel_drops, self.drops, self.registered,
        )
        self.registered = []
        self.sent = self.received = self.lag_sent = self.lag_late = self.kernel_drops = 0
        self.lag_max = 0.0
        self.drops = {}
        return out

    def serve(
        self, double deadline, intended, Py_ssize_t cursor, double python_due,
        bint heartbeating, double measure_from, bint timers, double clock_offset, double origin,
    ):
        """Until ``deadline`` or something rare: ``intended`` the schedule's times (ns, int64, as
        long as the rows) and ``cursor`` its next row (returned as the second item),
        ``python_due`` when the engine's own timers (start-up probe, de-registration) are due,
        ``measure_from`` the takeover meter's failure time (INFINITY: none), ``timers`` whether
        the schedule's sends may run here (no takeover measured), ``origin`` the start of the
        registrations' seconds (``PerSecond.start``)."""
        cdef double now, due, hb
        cdef int64_t top
        cdef int ready, wait_ms, batches
        cdef bint blind
        cdef pollfd p
        self.intended = c_array(intended, np.int64, "intended")
        self.cursor = cursor
        self.origin = origin
        p.fd = self.fd
        p.events = POLLIN
        while True:
            if self.at < self.n:  # the rest of a batch a rare run interrupted
                out = self.deliver(measure_from)
                if out is not None:
                    return out, self.cursor
                self.flush()
            now = wall_clock()
            due = INFINITY
            if self.cursor < self.intended.shape[0]:
                due = <double>(<int64_t*>data_of(self.intended))[self.cursor] / 1e9
            if self.step.timers.size:
                top = self.step.timers.heap[0].deadline
                if self.step.mns[self.step.timers.heap[0].row].t_due != top:
                    self.step.timers.pop()  # re-armed or disarmed since: stale
                    continue
                if top <= <int64_t>rint(now * 1e9) + SLACK:
                    return (TIMER, now), self.cursor
                due = min(due, <double>top / 1e9)
            if python_due <= now + TIME_SLACK:
                return (TIMER, now), self.cursor
            due = min(due, python_due)
            if heartbeating and self.step.n_mags:
                hb = self.step.due(self.step.hb_cursor)
                if hb <= now + TIME_SLACK:
                    down = self.step.heartbeat_tick(now)
                    self.flush()
                    if down is not None:
                        return (DOWN, now, down), self.cursor
                    continue
                due = min(due, hb)
            if due <= now:
                if not timers:
                    return (TIMER, now), self.cursor
                self.send_scheduled(now, clock_offset)
                self.flush()
                continue
            if now >= deadline:
                return (DONE,), self.cursor
            # epoll's rounding: up to the next millisecond, never early
            wait_ms = <int>ceil((min(due, deadline) - now) * 1000.0)
            # Work due within a quantum: sleep through to it and take what arrived then, one
            # wakeup for both (arrivals are timed by the kernel, so waiting costs no latency).
            blind = due - now <= self.quantum
            with nogil:
                ready = poll(&p, 0 if blind else 1, max(wait_ms, 0))
            if ready <= 0 and not blind:
                continue
            for batches in range(self.max_batches):
                if not self.receive():
                    break
                out = self.deliver(measure_from)
                if out is not None:
                    return out, self.cursor
                self.flush()
                if not self.full:  # drained: no second recvmmsg to learn it
                    break

    cdef send_scheduled(self, double now, double clock_offset):
        """MagEngine._send_scheduled and PbuSender.transmit for the schedule's due rows."""
        cdef int64_t now_ns = <int64_t>rint(now * 1e9)
        cdef double last = 0.0
        cdef int64_t late = 0
        cdef const int64_t* scheduled = <const int64_t*>data_of(self.scheduled)
        cdef Py_ssize_t start = self.cursor, n
        cdef Py_ssize_t end = due_rows(
            self.step, scheduled, <const int64_t*>data_of(self.intended), start,
            self.intended.shape[0], now_ns, now_ns + SLACK, self.tolerance, &last, &late,
        )
        if end == start:
            return
        self.lag_sent += end - start
        self.lag_max = max(self.lag_max, last)
        self.lag_late += late
        self.cursor = end
        n = end - start
        clock = <uint64_t>rint((now + clock_offset) * 65536)
        common = transmit_rows(self.step, scheduled + start, n, now_ns, clock)
        encoder = self.encoders.get(common) if common >= 0 else None
        if encoder is None:
            self.fallback(self.scheduled[start:end], common)  # PbuSender.encode: a new encoder
            return
        if n + 1 > self.pbu_offsets.shape[0]:
            self.pbu_offsets = np.zeros(2 * n + 1, dtype=np.int64)
        emit_encoded(
            self.step, <PbuEncoder>encoder, scheduled + start, n, common // 512,
            <int64_t*>data_of(self.pbu_offsets),
        )

    cdef bint receive(self) except -1:
        """One recvmmsg into the batch; whether anything came."""
        cdef BatchReceiver r = self.receiver
        cdef int got = r.pull(self.fd, self.max_datagrams)
        cdef Py_ssize_t count = 0, size, truncated = 0
        cdef int64_t drops = -1
        if got >= 0:
            count, size, truncated, drops = r._compact(got)
        self.full = count >= self.max_datagrams
        self.count("too_long", truncated)
        if drops >= 0 and drops > self.sock.drops:
            self.kernel_drops += drops - self.sock.drops
            self.sock.drops = drops
        self.n = self.at = 0
        if not count:
            return False
        self.received += count
        self.rx_buf = r.buf
        cdef const uint8_t* b = r.buf_p
        cdef const int64_t* o = r.offsets_p
        cdef const uint8_t* sa = r.src_p
        cdef const uint8_t* da = r.dst_p
        cdef const int64_t* t = r.arrival_p
        cdef int64_t* lo = <int64_t*>data_of(self.starts)
        cdef int64_t* hi = <int64_t*>data_of(self.ends)
        cdef uint8_t* s6 = <uint8_t*>data_of(self.src)
        cdef uint8_t* d6 = <uint8_t*>data_of(self.dst)
        cdef double* when = <double*>data_of(self.arrival)
        cdef Py_ssize_t i, k = 0, bad = 0
        cdef const uint8_t* h
        for i in range(count):
            if self.routes is not None:
                h = &b[o[i]]
                if not inner_header_ok(h, o[i + 1] - o[i]):
                    bad += 1
                    continue
                lo[k], hi[k] = o[i] + IPV6_HEADER, o[i + 1]
                memcpy(s6 + k * ADDRESS, h + 8, ADDRESS)
                memcpy(d6 + k * ADDRESS, h + 24, ADDRESS)
            else:
                if self.step.mag_index.find(da + i * ADDRESS) < 0:
                    continue  # not to a MAG address
                lo[k], hi[k] = o[i], o[i + 1]
                memcpy(s6 + k * ADDRESS, sa + i * ADDRESS, ADDRESS)
                memcpy(d6 + k * ADDRESS, da + i * ADDRESS, ADDRESS)
            when[k] = <double>t[i] * 1e-9 if t[i] else NAN
            k += 1
        self.count("bad_inner_header", bad)
        self.n = k
        return True

    cdef deliver(self, double measure_from):
        """The batch's runs of at most ``spread`` of arrival time from ``at`` on, each at the time
        the kernel received it (ReceiveClock); the first that leaves work, as serve returns it."""
        cdef const uint8_t* b = <const uint8_t*>data_of(self.rx_buf)
        cdef int64_t* lo = <int64_t*>data_of(self.starts)
        cdef int64_t* hi = <int64_t*>data_of(self.ends)
        cdef uint8_t* s6 = <uint8_t*>data_of(self.src)
        cdef uint8_t* d6 = <uint8_t*>data_of(self.dst)
        cdef double* when = <double*>data_of(self.arrival)
        cdef Py_ssize_t start, end
        cdef double now
        while self.at < self.n:
            start = self.at
            end = self.clock.run_end(when, start, self.n, self.spread)
            self.at = end
            now = self.clock.time_of(when, start, end, wall_clock())
            result = self.step.pbas_of(
                b, lo + start, hi + start, s6 + start * ADDRESS, end - start, now,
                <int64_t>rint(now * 1e9), now >= measure_from,
            )
            if result is not None:
                if result[1] or result[2] or result[3]:
                    return (PBAS, self.columns(start, end), now, result)
                self.note_registered(now, result[0])
            result = self.step.heartbeats_of(
                b, lo + start, hi + start, s6 + start * ADDRESS, d6 + start * ADDRESS,
                end - start, now,
            )
            if result is not None:
                return (HEARTBEATS, self.columns(start, end), now, result)
        fold_range(&self.clock.delay, self.clock.histogram)
        return None

    cdef columns(self, Py_ssize_t start, Py_ssize_t end):
        fold_range(&self.clock.delay, self.clock.histogram)
        return (
            self.rx_buf, self.starts[start:end], self.ends[start:end], self.src[start:end],
            self.dst[start:end], self.arrival[start:end],
        )

    cdef flush(self):
        """Send what the step wrote (the arena), each from its MAG to its LMA, and empty it."""
        cdef MagStep step = self.step
        cdef Py_ssize_t n = step.out_n, i, kept = 0, length, extra
        if not n:
            return
        extra = IPV6_HEADER * n if self.routes is not None else 0
        if n > self.tx_ports.shape[0] or step.out_size + extra > self.tx_buf.shape[0]:
            self.grow_tx(2 * n, 2 * (step.out_size + extra))
        cdef uint8_t* out = <uint8_t*>data_of(self.tx_buf)
        cdef int64_t* of = <int64_t*>data_of(self.tx_offsets)
        cdef uint8_t* s = <uint8_t*>data_of(self.tx_src)
        cdef uint8_t* d = <uint8_t*>data_of(self.tx_dst)
        cdef uint16_t* ports = <uint16_t*>data_of(self.tx_ports)
        if self.routes is None:
            memcpy(out, step.out_buf, step.out_size)
            memcpy(of, step.out_offsets, (n + 1) * sizeof(int64_t))
            memcpy(s, step.out_src, n * ADDRESS)
            memcpy(d, step.out_dst, n * ADDRESS)
            kept = n
        else:
            of[0] = 0
            for i in range(n):
                length = step.out_offsets[i + 1] - step.out_offsets[i]
                if self.routes.route(
                    step.out_buf + step.out_offsets[i], length, step.out_src + i * ADDRESS,
                    step.out_dst + i * ADDRESS, out + of[kept], s + 4 * kept, d + 4 * kept,
                    ports + kept,
                ):
                    of[kept + 1] = of[kept] + IPV6_HEADER + length
                    kept += 1
            self.count("no_route", n - kept)
        step.out_n = step.out_size = 0
        if kept:
            self.sent += kept
            self.send(kept)

    cdef send(self, Py_ssize_t n):
        """transport.udp5436.send_batch over the framed output."""
        cdef Py_ssize_t start = 0, width = ADDRESS if self.routes is None else 4
        cdef const uint8_t* src = <const uint8_t*>data_of(self.tx_src)
        cdef const uint8_t* dst = <const uint8_t*>data_of(self.tx_dst)
        while start < n:
            try:
                start += self.sender.send_from(
                    self.fd, <const uint8_t*>data_of(self.tx_buf),
                    <const int64_t*>data_of(self.tx_offsets), start, n, dst, width,
                    <const uint16_t*>data_of(self.tx_ports), 1, src, width, width,
                )
            except OSError:
                self.count("send_error", 1)
                start += 1
                continue
            if start < n and not self.sock.wait_writable(self.send_wait):
                self.count("send_buffer_full", n - start)
                return
