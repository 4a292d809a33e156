"""The event loop that runs one sans-IO engine over real sockets, one loop per process.

Each turn: wait (``select.epoll``) for a readable socket or the engine's next timer; on
readiness receive a batch (recvmmsg), hand it to ``engine.receive`` with ``time.time()``, and
send what ``engine.datagrams_to_send`` returns in one batch (sendmmsg); run ``handle_timer`` when
due.
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
import select
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
        self._poll = select.epoll()
        self._poll.register(self._wake_r.fileno(), select.EPOLLIN)
        self._registered: dict[int, BatchSocket] = {}
        self._owns_lmaa = False
        self._sync_sockets()

    def stop(self) -> None:
        """Ask ``run`` to return (safe from signal handlers and other threads)."""
        self._stopping = True
        # A full socketpair means a wakeup is already pending; a closed one, that run returned.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def run(self) -> None:
        """Serve until ``stop``; then close the sockets."""
        engine, transport, on_tick = self.engine, self.transport, self._on_tick
        poll, wake, registered = self._poll.poll, self._wake_r.fileno(), self._registered
        next_tick = 0.0
        try:
            self._after_engine()
            while not self._stopping:
                now = time.time()
                due = engine.next_timer()
                if due is not None and due <= now:
                    engine.handle_timer(now)
                    self._after_engine()
                    continue
                if on_tick is not None and now >= next_tick:
                    on_tick(self)
                    next_tick = now + self._tick_interval
                timeout = -1.0 if due is None else due - now  # epoll: -1 waits for ever
                if on_tick is not None and (timeout < 0 or next_tick - now < timeout):
                    timeout = next_tick - now
                if transport.waiting_for_lmaa:
                    self._after_engine()
                    if timeout < 0 or timeout > LMAA_RETRY_INTERVAL:
                        timeout = LMAA_RETRY_INTERVAL
                for fd, _ in poll(timeout if timeout < 0 else max(timeout, 0.0)):
                    if fd == wake:
                        self._drain_wakeups()
                    elif (sock := registered.get(fd)) is not None:
                        self._receive(sock)
        finally:
            if on_tick is not None:
                on_tick(self)
            self.close()

    def close(self) -> None:
        self._poll.close()
        self.transport.close()
        self._wake_r.close()
        self._wake_w.close()

    # --- internals -----------------------------------------------------------------------------

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
        engine, transport = self.engine, self.transport
        out = engine.datagrams_to_send()
        if len(out):
            self.datagrams_sent += len(out)
            transport.send(out)
        events = engine.pop_events()
        if events and self._on_event is not None:
            for event in events:
                self._on_event(event)
        owns = engine.owns_lmaa
        # The transport's sockets change only with the ownership, or while it retries a bind.
        if owns != self._owns_lmaa or transport.waiting_for_lmaa:
            self._owns_lmaa = owns
            if transport.update(owns) or transport.waiting_for_lmaa:
                self._sync_sockets()

    def _sync_sockets(self) -> None:
        current = {sock.fileno(): sock for sock in self.transport.sockets}
        for fd, sock in list(self._registered.items()):
            if current.get(fd) is not sock:
                with contextlib.suppress(OSError):  # closed already: epoll forgot it
                    self._poll.unregister(fd)
                del self._registered[fd]
        for fd, sock in current.items():
            if fd not in self._registered:
                self._poll.register(fd, select.EPOLLIN)
                self._registered[fd] = sock

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(64):
                pass
