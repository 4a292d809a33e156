"""All emulated MAGs of a population on one socket: UDP/5436 (RFC 5844 framing) or the raw
IPv6 Mobility Header.

``MagTransport`` (UDP): the socket is bound to the IPv4 wildcard, so it receives what is sent to
any MAG's 127.1.x.y address (IP_PKTINFO says which). Each datagram the MAG engine emits leaves
from the IPv4 address of the MAG whose Proxy-CoA is its inner source (per-datagram source,
sendmmsg) towards the outer address of the LMA named by its inner destination. Received payloads
lose their inner IPv6 header and go to the engine as Mobility Headers with the inner addresses.

``RawMagTransport`` (protocol 135, root, in a namespace with an AnyIP route for the MAG prefix,
as the lab's MAG host has): one unbound IPPROTO_MH socket; each Mobility Header leaves from its
MAG's own IPv6 address (per-datagram IPV6_PKTINFO, sendmmsg). The engine's bulk encoders already
put the checksum over those very addresses in; the kernel computes it again at offset 4 (it
sets it whatever the field held), so what goes out is the codec's octets, and it verifies the
checksum of what comes in. Of what arrives only datagrams to a MAG address are kept.
"""

from __future__ import annotations

import select
import time
from collections import Counter
from ipaddress import IPv4Address, IPv6Address

import numpy as np

from lmaload._ext.framing import unframe as unframe_columns
from lmaload._ext.mag_step import MagServe, ReceiveClock, Routes
from lmaload.capture import Capture
from lmaload.measure.histogram import Histogram
from lmaload.population import Population
from lmaload.protocol.datagrams import Columns, Datagrams, distinct
from lmaload.protocol.endpoint import Endpoint
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_state import pairs
from lmaload.transport.batch import BatchSocket
from lmaload.transport.raw_mh import received_columns, send_raw
from lmaload.transport.udp5436 import SEND_WAIT, send_batch

# Room for a failover burst: every MAG's PBUs at once, then the PBAs of a takeover (the kernel
# charges a few hundred octets of overhead per small datagram against the buffer).
SOCKET_BUFFER = 64 << 20
MAX_BATCHES_PER_WAKEUP = 8  # receive batches before the timers get a look in
# Seconds: no datagram is handed to the engine timed later than the kernel received it by more.
ARRIVAL_SPREAD = 0.5e-3
# Seconds: with work due within this, the loop sleeps through to it without watching the socket
# and takes what arrived then (timed by the kernel), one wakeup for both.
QUANTUM = 1e-3
# MagServe.serve's kinds of return, in ext/mag_serve.pxi's order
DONE, TIMER, PBAS, HEARTBEATS, DOWN = range(5)


class MagTransport:
    """The MAGs' socket. ``lmas`` maps each LMA's inner address to its outer (host, port)."""

    def __init__(
        self,
        population: Population,
        lmas: dict[IPv6Address, tuple[str, int]],
        capture: Capture | None = None,
    ) -> None:
        self.drops: Counter[str] = Counter()
        self.capture = capture
        self.sock = BatchSocket.udp("0.0.0.0", 0, rcvbuf=SOCKET_BUFFER, sndbuf=SOCKET_BUFFER)
        self.full = False  # the last receive took as many as it could: more may be queued
        self._port = self.sock.local_address[1]
        inner = list(lmas)
        self.routes = Routes(
            population.mags["addr6"],
            population.mags["addr4"],
            np.frombuffer(b"".join(a.packed for a in inner), dtype=np.uint8).reshape(-1, 16),
            np.frombuffer(
                b"".join(IPv4Address(lmas[a][0]).packed for a in inner), dtype=np.uint8
            ).reshape(-1, 4),
            np.array([lmas[a][1] for a in inner], dtype=np.uint16),
        )

    def send(self, datagrams: Datagrams) -> None:
        """Frame and send, each from its MAG's IPv4 address to its LMA's outer address."""
        for part in datagrams.parts():
            self._send(part if isinstance(part, Columns) else Columns.of([part]))

    def _send(self, columns: Columns) -> None:
        buf, offsets, src4, dst4, ports, unrouted = self.routes.frame(
            columns.buf, columns.starts, columns.ends, columns.src, columns.dst
        )
        if unrouted:
            self.drops["no_route"] += unrouted
        if len(offsets) == 1:
            return
        if self.capture is not None:
            now, port = time.time(), self._port
            for i in range(len(offsets) - 1):
                payload = buf[offsets[i] : offsets[i + 1]].tobytes()
                local, remote = (src4[i].tobytes(), port), (dst4[i].tobytes(), int(ports[i]))
                self.capture.record(now, "out", local, remote, payload)
            self.capture.flush()
        send_batch(self.sock, buf, offsets, dst4, ports, self.drops, src4)

    def receive(self) -> Datagrams:
        """What is queued (one recvmmsg), inner headers stripped, as columns over the socket's
        receive buffer (valid until the next receive)."""
        batch = self.sock.recv()
        self.full = batch.count >= self.sock.max_datagrams
        if batch.truncated:
            self.drops["too_long"] += batch.truncated
        if batch.new_drops:
            self.drops["kernel"] += batch.new_drops
        if not batch.count:
            return Datagrams()
        if self.capture is not None:
            now = time.time()
            for i in range(batch.count):
                source = (batch.src[i].tobytes(), int(batch.sport[i]))
                local = (batch.dst[i].tobytes(), self._port)
                self.capture.record(now, "in", source, local, batch.datagram(i))
            self.capture.flush()
        starts, ends, src, dst, ok = unframe_columns(batch.buf, batch.offsets)
        good = ok.view(bool)
        columns = Columns(batch.buf, starts, ends, src, dst, batch.arrival_seconds())
        if not good.all():
            self.drops["bad_inner_header"] += int(np.count_nonzero(~good))
            columns = columns.take(good)
        return Datagrams([columns])

    def close(self) -> None:
        self.sock.close()
        if self.capture is not None:
            self.capture.close()


class RawMagTransport:
    """The MAGs' raw Mobility Header socket (see the module docstring); open it inside the
    namespace that holds the MAG addresses."""

    def __init__(self, population: Population) -> None:
        self.drops: Counter[str] = Counter()
        self.sock = BatchSocket.raw_mh(rcvbuf=SOCKET_BUFFER, sndbuf=SOCKET_BUFFER)
        self.full = False  # the last receive took as many as it could: more may be queued
        self._mags = {a6.tobytes() for a6 in population.mags["addr6"]}

    def send(self, datagrams: Datagrams) -> None:
        send_raw(self.sock, datagrams, self.drops)

    def receive(self) -> Datagrams:
        """What is queued for the MAG addresses (one recvmmsg), as columns over the socket's
        receive buffer (valid until the next receive)."""
        batch = self.sock.recv()
        self.full = batch.count >= self.sock.max_datagrams
        if batch.truncated:
            self.drops["too_long"] += batch.truncated
        if batch.new_drops:  # receive buffer overflow, bad checksums
            self.drops["kernel"] += batch.new_drops
        if not batch.count:
            return Datagrams()
        columns = received_columns(batch)
        keys, inverse = distinct(columns.dst)
        ours = np.array([key in self._mags for key in keys], dtype=bool)[inverse]
        return Datagrams([columns if ours.all() else columns.take(ours)])

    def close(self) -> None:
        self.sock.close()


class MagLoop:
    """Drives a ``MagEngine`` (any ``Endpoint``) over a ``MagTransport`` or ``RawMagTransport``
    in the caller's thread, a slice at a time (``run_until``), so the caller can change phases
    and show progress between slices. The engine's events stay with it for the caller.

    A compiled ``MagEngine`` without a capture is served by ``MagServe`` (``ext/mag_serve.pxi``):
    one compiled call per slice waits, receives, runs the PBA and heartbeat steps, the
    schedule's sends and the heartbeat ticks, and sends; it returns here only for what the
    engine's own code does (its rare work), after which this loop calls it again. Anything else
    runs the engine through ``Endpoint``'s methods, a wakeup at a time. Both wake at most once
    per ``QUANTUM`` while work is due, for the work and what arrived since."""

    def __init__(self, engine: Endpoint, transport: MagTransport | RawMagTransport) -> None:
        self.engine = engine
        self.transport = transport
        self.datagrams_sent = 0
        self.datagrams_received = 0
        # Microseconds from the kernel's receipt of a batch's first datagram to the engine: the
        # generator's own queueing, kept out of what it measures and reported as health.
        self.receive_delay = Histogram()
        self._clock = ReceiveClock(self.receive_delay)
        self._poll = select.epoll()
        self._poll.register(transport.sock.fileno(), select.EPOLLIN)
        self._serve: MagServe | None = None
        step = engine.step if isinstance(engine, MagEngine) else None
        if step is not None and getattr(transport, "capture", None) is None:
            assert isinstance(engine, MagEngine)
            self._serve = MagServe(
                step,
                transport.sock,
                transport.routes if isinstance(transport, MagTransport) else None,
                self._clock,
                engine.sender.encoders,
                engine.sender.encode_rows,
                engine.scheduled,
                MAX_BATCHES_PER_WAKEUP,
                ARRIVAL_SPREAD,
                engine.lag.tolerance,
                SEND_WAIT,
                QUANTUM,
            )

    def run_until(self, deadline: float) -> None:
        """Serve the engine until ``time.time() >= deadline``."""
        engine = self.engine
        serve = self._serve
        while serve is not None and isinstance(engine, MagEngine):
            state = engine.serve_state()
            if state is None:
                break
            result, cursor = serve.serve(deadline, *state)
            sent, received, lag, kernel, drops, registered = serve.take()
            engine.served(cursor, lag, registered)
            self.datagrams_sent += sent
            self.datagrams_received += received
            self.transport.drops.update(drops)
            if kernel:
                self.transport.drops["kernel"] += kernel
            kind = result[0]
            if kind == DONE:
                return
            if kind == TIMER:
                engine.handle_timer(result[1])
            elif kind == DOWN:
                engine.liveness.went_down(*pairs(result[2]), result[1])
            else:
                columns = Columns(*result[1])
                if kind == PBAS:
                    engine.after_pbas(columns, result[2], result[3])
                else:
                    engine.after_heartbeats(columns, result[2], result[3])
            self._flush()
        while True:
            now = time.time()
            due = engine.next_timer()
            if due is not None and due <= now:
                engine.handle_timer(now)
                self._flush()
                continue
            if now >= deadline:
                return
            timeout = deadline - now if due is None else min(due, deadline) - now
            if due is not None and due - now <= QUANTUM:
                time.sleep(max(timeout, 0.0))
                self._receive()
            elif self._poll.poll(max(timeout, 0.0)):
                self._receive()

    def _receive(self) -> None:
        for _ in range(MAX_BATCHES_PER_WAKEUP):
            datagrams = self.transport.receive()
            if len(datagrams):
                self.datagrams_received += len(datagrams)
                self._deliver(datagrams)
                self._flush()
            if not self.transport.full:  # the queue was drained: no second recvmmsg to learn it
                return

    def _deliver(self, datagrams: Datagrams) -> None:
        """Hand the engine a batch at the time the kernel received it (its last datagram; time
        from the wire, so the generator's queueing never counts against the LMA; now, when the
        kernel does not say): in runs of at most ARRIVAL_SPREAD, so that no datagram is timed
        later than it arrived by more than that."""
        columns = datagrams.parts()[0]  # the transports hand one Columns batch
        assert isinstance(columns, Columns)
        arrival = columns.arrival
        ends = self._clock.runs(arrival, len(columns), ARRIVAL_SPREAD)
        if len(ends) == 1:
            self.engine.receive(datagrams, self._clock.received_at(arrival, time.time()))
            return
        start = 0
        for end in ends:
            run = columns.take(slice(start, end))
            self.engine.receive(Datagrams([run]), self._clock.received_at(run.arrival, time.time()))
            start = end

    def _flush(self) -> None:
        out = self.engine.datagrams_to_send()
        if len(out):
            self.datagrams_sent += len(out)
            self.transport.send(out)

    def close(self) -> None:
        self._poll.close()
        self.transport.close()
