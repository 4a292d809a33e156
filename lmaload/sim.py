"""A deterministic simulated clock and network for sans-IO endpoints.

Endpoints (LMA engines, MAG engines, scripted test peers) are nodes owning IPv6 addresses. A
datagram sent to an address is delivered to every live node owning it (two nodes may share a
virtual-switch LMAA; each engine decides whether it answers). Links between addresses have a
delay, jitter, loss, duplication and reordering probability; partitions cut address sets apart;
nodes crash and restart. A node may have a ``Service`` model: it takes at most ``rate`` datagrams
a second from a bounded receive queue (a socket buffer that drops when full), and each datagram
reaches it stamped with its arrival time, as the kernel stamps it. Every random choice comes
from one seeded RNG, so a run is a function of its seed. ``run_until(t)`` jumps from event to
event: the next delivery, the next service slot or the earliest ``next_timer()`` of a live node.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from lmaload.protocol.datagrams import Columns, Datagram, Datagrams
from lmaload.protocol.endpoint import Endpoint


@dataclass(frozen=True)
class LinkProfile:
    """How a directed path treats datagrams: ``delay`` plus uniform ``jitter`` seconds; each
    datagram is lost with probability ``loss``, duplicated with ``duplicate``, and held back an
    extra uniform(0, ``reorder_delay``) with ``reorder``."""

    delay: float = 0.001
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.01


@dataclass(frozen=True)
class Service:
    """A node that processes at most ``rate`` datagrams per second, ``batch`` at a time (a
    batch of k keeps it busy k / ``rate`` seconds), from a receive queue of ``queue`` datagrams
    that drops what arrives when it is full. ``shed``, if given, counts (monotonically) the
    datagrams the endpoint dropped unprocessed, which cost it nothing: an LMA's shed PBUs, which
    a compiled scan disposes of at a small fraction of a PBU's processing."""

    rate: float
    queue: int
    batch: int = 64
    shed: Callable[[Endpoint], int] | None = None


@dataclass
class Node:
    name: str
    endpoint: Endpoint
    addresses: set[IPv6Address]
    alive: bool = True
    service: Service | None = None
    backlog: deque[Datagram] = field(default_factory=deque)
    busy_until: float = 0.0
    dropped: int = 0  # arrived to a full receive queue


@dataclass(frozen=True)
class Delivery:
    """A datagram that reached a node (kept in ``Simulator.trace`` when tracing)."""

    time: float
    node: str
    datagram: Datagram


@dataclass
class Simulator:
    """The simulated network. ``now`` starts at ``start`` (Unix seconds)."""

    seed: int = 0
    start: float = 1_700_000_000.0
    default_link: LinkProfile = field(default_factory=LinkProfile)
    tracing: bool = False
    columns: bool = False  # deliver each batch as columns, as the UDP transport does

    def __post_init__(self) -> None:
        self.now = self.start
        self.trace: list[Delivery] = []
        self._rng = random.Random(self.seed)
        self._nodes: dict[str, Node] = {}
        self._owners: dict[IPv6Address, list[str]] = defaultdict(list)
        self._links: dict[tuple[IPv6Address, IPv6Address], LinkProfile] = {}
        self._cut: set[tuple[IPv6Address, IPv6Address]] = set()
        self._queue: list[tuple[float, int, Datagram]] = []
        self._order = itertools.count()
        self.lost = 0

    # --- topology ------------------------------------------------------------------------------

    def add_node(
        self,
        name: str,
        endpoint: Endpoint,
        addresses: Iterable[IPv6Address],
        service: Service | None = None,
    ) -> None:
        node = Node(name, endpoint, set(addresses), service=service)
        self._nodes[name] = node
        for address in node.addresses:
            self._owners[address].append(name)
        self._collect(node)

    def endpoint(self, name: str) -> Endpoint:
        return self._nodes[name].endpoint

    def node(self, name: str) -> Node:
        return self._nodes[name]

    def set_link(
        self, src: Iterable[IPv6Address], dst: Iterable[IPv6Address], profile: LinkProfile
    ) -> None:
        """Use ``profile`` for datagrams from any address in ``src`` to any in ``dst``."""
        for pair in itertools.product(src, list(dst)):
            self._links[pair] = profile

    def cut(self, a: Iterable[IPv6Address], b: Iterable[IPv6Address]) -> None:
        """Partition: drop everything between the two address sets, both ways."""
        self._cut.update(self._pairs(a, b))

    def restore(self, a: Iterable[IPv6Address], b: Iterable[IPv6Address]) -> None:
        self._cut.difference_update(self._pairs(a, b))

    def crash(self, name: str) -> None:
        """The node stops: nothing is delivered to it, its timers no longer run."""
        self._nodes[name].alive = False

    def restart(self, name: str, endpoint: Endpoint) -> None:
        """The node comes back as ``endpoint`` (a fresh engine: state is lost)."""
        node = self._nodes[name]
        node.endpoint = endpoint
        node.alive = True
        node.backlog.clear()
        self._collect(node)

    # --- running -------------------------------------------------------------------------------

    def send(self, datagram: Datagram) -> None:
        """Put a datagram on the network at ``now`` (as if a node had sent it)."""
        if (datagram.src, datagram.dst) in self._cut:
            self.lost += 1
            return
        link = self._links.get((datagram.src, datagram.dst), self.default_link)
        rng = self._rng
        if rng.random() < link.loss:
            self.lost += 1
            return
        copies = 2 if rng.random() < link.duplicate else 1
        for _ in range(copies):
            delay = link.delay + rng.uniform(0, link.jitter)
            if rng.random() < link.reorder:
                delay += rng.uniform(0, link.reorder_delay)
            heapq.heappush(self._queue, (self.now + delay, next(self._order), datagram))

    def run_until(self, until: float) -> None:
        """Advance to ``until``, delivering datagrams and firing timers in time order."""
        while True:
            t = self._next_event()
            if t is None or t > until:
                break
            self.now = max(self.now, t)
            self._deliver_due()
            self._serve_due()
            for node in self._nodes.values():
                due = node.endpoint.next_timer() if node.alive else None
                if due is not None and due <= self.now:
                    node.endpoint.handle_timer(self.now)
                    self._collect(node)
        self.now = max(self.now, until)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def _next_event(self) -> float | None:
        times = [self._queue[0][0]] if self._queue else []
        for node in self._nodes.values():
            due = node.endpoint.next_timer() if node.alive else None
            if due is not None:
                times.append(due)
            if node.backlog and node.alive:
                times.append(node.busy_until)
        return min(times, default=None)

    def _deliver_due(self) -> None:
        batches: dict[str, Datagrams] = {}
        while self._queue and self._queue[0][0] <= self.now:
            _, _, datagram = heapq.heappop(self._queue)
            for name in self._owners.get(datagram.dst, ()):
                node = self._nodes[name]
                if node.alive and node.service is not None:
                    if len(node.backlog) < node.service.queue:
                        node.backlog.append(datagram._replace(arrival=self.now))
                    else:
                        node.dropped += 1
                elif node.alive:
                    batches.setdefault(name, Datagrams()).extend([datagram])
                    if self.tracing:
                        self.trace.append(Delivery(self.now, name, datagram))
        for name, batch in batches.items():
            self._hand(self._nodes[name], batch)

    def _serve_due(self) -> None:
        """Nodes with a service model take their next batch when they are done with the last."""
        for node in self._nodes.values():
            if node.backlog and node.alive and node.busy_until <= self.now:
                service = node.service
                assert service is not None
                batch = Datagrams()
                while node.backlog and len(batch) < service.batch:
                    batch.extend([node.backlog.popleft()])
                before = 0 if service.shed is None else service.shed(node.endpoint)
                self._hand(node, batch)
                after = 0 if service.shed is None else service.shed(node.endpoint)
                node.busy_until = self.now + (len(batch) - (after - before)) / service.rate

    def _hand(self, node: Node, batch: Datagrams) -> None:
        if self.columns:
            batch = Datagrams([Columns.of(list(batch))])
        node.endpoint.receive(batch, self.now)
        self._collect(node)

    def _collect(self, node: Node) -> None:
        for datagram in node.endpoint.datagrams_to_send():
            self.send(datagram)

    @staticmethod
    def _pairs(
        a: Iterable[IPv6Address], b: Iterable[IPv6Address]
    ) -> set[tuple[IPv6Address, IPv6Address]]:
        a, b = list(a), list(b)
        return {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}
