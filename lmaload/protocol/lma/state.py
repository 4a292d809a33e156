"""The state every part of the reference LMA shares: its configuration, binding cache, prefix
pool, tunnel ids, lifetimes, timers, peers, counters, and what it has to send and report.

Each collaborator of ``LmaEngine`` (``pbu``, ``heartbeat``, ``takeover``, ``sync_out``,
``sync_in``, ``fast_lane``) is given the one ``LmaState`` of its engine, the ``Ownership`` if it
needs it, and the collaborators it hands work to; what it alone keeps stays private to it.
"""

from __future__ import annotations

from ipaddress import IPv6Address
from typing import Any

from lmaload._ext.expiry import ExpiryHeap
from lmaload._ext.lane import PrefixPool
from lmaload.protocol.binding_cache import BindingCache
from lmaload.protocol.config import LmaConfig
from lmaload.protocol.datagrams import Datagrams
from lmaload.protocol.events import Counters, Event
from lmaload.protocol.redundancy import Peer
from lmaload.protocol.timers import Timers
from lmaload.wire import Message, encode_mh


class LmaState:
    """Shared by the parts of one LMA. ``out`` collects the datagrams to send and ``events``
    what happened, until the engine hands them over."""

    def __init__(self, config: LmaConfig) -> None:
        self.config = config
        self.wire = config.wire
        self.address = config.address
        self.lmaa: IPv6Address = config.lmaa  # type: ignore[assignment]
        self.cache = BindingCache()
        if config.reserve:
            self.cache.reserve(config.reserve)
        self.counters = Counters()
        self.pool = PrefixPool(config.prefix_pool, config.prefix_length, self.cache.index)
        self.tunnels: dict[bytes, int] = {}  # packed MAG address → tunnel interface id
        self.expiry = ExpiryHeap()  # binding cache lifetimes (and MinDelayBeforeBCEDelete)
        self.timers = Timers()
        self.peers = {a: Peer(a, hello_interval=config.hello_interval) for a in config.peers}
        # Restart Counter advertised for the LMAA: in virtual mode the group's, synced (R30).
        self.lmaa_restart_counter = config.restart_counter
        self.out = Datagrams()
        self.events: list[Event] = []

    def live_peers(self) -> list[IPv6Address]:
        """Peer LMAs whose HA-HELLOs are current: the State Sync targets."""
        return [p.address for p in self.peers.values() if p.alive]

    def send(self, msg: Message, src: IPv6Address, dst: IPv6Address) -> None:
        self.out.append(encode_mh(msg, src, dst, self.wire), src, dst)

    def drop(self, reason: str) -> None:
        self.counters.drops[reason] += 1

    def event(self, now: float, kind: str, **detail: Any) -> None:
        self.events.append(Event(now, kind, detail))

    def delete(self, row: int) -> None:
        """Remove an entry from the cache and give its prefixes back to the pool."""
        for key in self.cache.prefix_keys[row]:
            self.pool.release(key)
        self.cache.delete(row)
