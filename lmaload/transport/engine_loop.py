"""The event loop that runs one sans-IO engine over real sockets, one loop per process.

Each turn: wait (epoll) for a readable socket or the engine's next timer; on readiness receive
a batch (recvmmsg), hand it to ``engine.receive`` with ``time.time()``, and send what
``engine.datagrams_to_send`` returns in one batch (sendmmsg); run ``handle_timer`` when due.
Engine events are popped after each step and passed to ``on_event``, so a long run does not keep
them. The loop uses the engine only through ``LmaEndpoint`` (``lmaload.protocol.endpoint``).
``on_tick`` runs at most every ``tick_interval`` seconds (metrics snapshots).

A datagram the engine raises on (it should not: malformed input is the engine's to count) is
dropped and counted as ``engine_error``, the first one logged with its traceback, and the rest of
its batch processed: input from the network never stops the loop.

``stop`` may be called from a signal handler or another thread; ``run`` returns soon after.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from lmaload.protocol.datagrams import Datagrams
from lmaload.protocol.endpoint import LmaEndpoint
from lmaload.protocol.events import Event
from lmaload.transport.batch import BatchSocket

# Batches taken from one socket before timers get a look in, so a flood cannot starve them.
MAX_BATCHES_PER_WAKEUP = 8
LMAA_RETRY_INTERVAL = 0.1

log = logging.getLogger(__name__)

E = TypeVar("E", bound=LmaEndpoint)


class Transport(Protocol):
    """What the loop needs of a transport (UdpTransport, RawTransport)."""

    @property
    def sockets(self) -> list[BatchSocket]: ...
    @property
    def waiting_for_lmaa(self) -> bool: ...
    def update(self, owns_lmaa: bool) -> bool: ...
    def receive(self, sock: BatchSocket, max_datagrams: int | None = None) -> Datagrams: ...
    def send(self, datagrams: Datagrams) -> None: ...
    def close(self) -> None: ...


class EngineLoop(Generic[E]):
    """Drives ``engine`` over ``transport`` until ``stop``."""

    def __init__(
        self,
        engine: E,
        transport: Transport,
        *,
        on_event: Callable[[Event], None] | None = None,
        on_tick: Callable[[EngineLoop[E]], None] | None = None,
        tick_interval: float = 0.25,
    ) -> None:
        self.engine = engine
        self.transport = transport
        self.datagrams_received = 0
        self.datagrams_sent = 0
        self.drops: Counter[str] = Counter()
        self._on_event = on_event
        self._on_tick = on_tick
        self._tick_interval = tick_interval
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._registered: list[BatchSocket] = []
        self._sync_sockets()

    def stop(self) -> None:
        """Ask ``run`` to return (safe from signal handlers and other threads)."""
        self._stopping = True
        # A full socketpair means a wakeup is already pending; a closed one, that run returned.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def run(self) -> None:
        """Serve until ``stop``; then close the sockets."""
        next_tick = 0.0
        try:
            self._after_engine()
            while not self._stopping:
                if self.transport.waiting_for_lmaa:
                    self._after_engine()
                now = time.time()
                due = self.engine.next_timer()
                if due is not None and due <= now:
                    self.engine.handle_timer(now)
                    self._after_engine()
                    continue
                if self._on_tick is not None and now >= next_tick:
                    self._on_tick(self)
                    next_tick = now + self._tick_interval
                timeout = self._timeout(now, due, next_tick)
                for key, _ in self._selector.select(timeout):
                    if key.data is None:
                        self._drain_wakeups()
                    else:
                        self._receive(key.data)
        finally:
            if self._on_tick is not None:
                self._on_tick(self)
            self.close()

    def close(self) -> None:
        self._selector.close()
        self.transport.close()
        self._wake_r.close()
        self._wake_w.close()

    # --- internals -----------------------------------------------------------------------------

    def _timeout(self, now: float, due: float | None, next_tick: float) -> float | None:
        deadlines = [d for d in (due,) if d is not None]
        if self._on_tick is not None:
            deadlines.append(next_tick)
        if self.transport.waiting_for_lmaa:
            deadlines.append(now + LMAA_RETRY_INTERVAL)
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _receive(self, sock: BatchSocket) -> None:
        for _ in range(MAX_BATCHES_PER_WAKEUP):
            datagrams = self.transport.receive(sock)
            if not len(datagrams):
                return
            self.datagrams_received += len(datagrams)
            self._feed(datagrams, time.time())
            self._after_engine()
            # A batch short of full drained the socket: epoll wakes us for what came since,
            # so asking again now would cost a system call for nothing.
            if self._stopping or len(datagrams) < sock.max_datagrams:
                return

    def _feed(self, batch: Datagrams, now: float) -> None:
        while True:
            try:
                self.engine.receive(batch, now)
                return
            except Exception:
                if not self.drops["engine_error"]:
                    log.exception("the engine failed on a datagram; dropping such datagrams")
                self.drops["engine_error"] += 1
                batch = batch.after(batch.done + 1)

    def _after_engine(self) -> None:
        """Send what the engine produced, report its events, follow its LMAA ownership."""
        out = self.engine.datagrams_to_send()
        if len(out):
            self.datagrams_sent += len(out)
            self.transport.send(out)
        events = self.engine.pop_events()
        if self._on_event is not None:
            for event in events:
                self._on_event(event)
        if self.transport.update(self.engine.owns_lmaa) or self.transport.waiting_for_lmaa:
            self._sync_sockets()

    def _sync_sockets(self) -> None:
        current = self.transport.sockets
        if current == self._registered:
            return
        for sock in self._registered:
            if sock not in current:
                self._selector.unregister(sock)
        for sock in current:
            if sock not in self._registered:
                self._selector.register(sock, selectors.EVENT_READ, sock)
        self._registered = list(current)

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(64):
                pass
