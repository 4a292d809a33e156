"""What a driver may do with a sans-IO engine: the one interface the socket loops
(``lmaload.transport.engine_loop``, ``lmaload.transport.mag_loop``) and the simulator
(``lmaload.sim``) use, implemented by ``LmaEngine`` and ``MagEngine``.

Time is always an argument (Unix seconds). A driver hands the engine what it received, sends what
the engine returns, runs its timers when due and takes its events; it reads nothing else of the
engine and changes none of its state.
"""

from __future__ import annotations

from typing import Protocol

from lmaload.protocol.datagrams import Datagrams
from lmaload.protocol.events import Event


class Endpoint(Protocol):
    """A sans-IO protocol engine."""

    def receive(self, datagrams: Datagrams, now: float) -> None:
        """Process a batch of received Mobility Headers. An engine that raises on one has
        counted those it finished in ``datagrams.done``, so the driver can go on after it."""
        ...

    def datagrams_to_send(self) -> Datagrams:
        """Everything the engine has to send; the engine forgets it."""
        ...

    def next_timer(self) -> float | None:
        """When ``handle_timer`` must next be called, or None."""
        ...

    def handle_timer(self, now: float) -> None:
        """Run what is due at ``now``."""
        ...

    def pop_events(self) -> list[Event]:
        """What happened since the last call, oldest first; the engine forgets it."""
        ...


class LmaEndpoint(Endpoint, Protocol):
    """An LMA, whose driver also listens on the LMAA while the LMA answers for it."""

    @property
    def owns_lmaa(self) -> bool: ...
