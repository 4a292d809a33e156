"""A simulated target for ``lmaload run`` and ``lmaload capacity``: reference LMA engines on the
deterministic simulator (``lmaload.sim``), the MAG engine driven as a simulator node, and LMA
wrappers that misbehave on purpose (stall after N PBUs, or serve at most C PBUs per second)."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from lmaload.measure.histogram import Histogram
from lmaload.protocol import LmaConfig, LmaEngine
from lmaload.protocol.datagrams import Datagrams
from lmaload.protocol.mag import MagEngine
from lmaload.run import RunConfig, Runner
from lmaload.sim import Endpoint, LinkProfile, Simulator
from lmaload.wire import codepoints as cp

LMA1 = IPv6Address("fd00:5213::1")
LMA2 = IPv6Address("fd00:5213::2")


class Mute:
    """An LMA engine that takes the first ``answered`` PBUs and drops every later one unseen
    (it still answers heartbeats and talks to its peer): an LMA whose PBU processing stalled."""

    def __init__(self, inner: Endpoint, answered: int) -> None:
        self.inner = inner
        self.left = answered

    def receive(self, datagrams: Datagrams, now: float) -> None:
        kept = Datagrams()
        for d in datagrams:
            if d.data[2] == cp.MH_BINDING_UPDATE:
                if self.left == 0:
                    continue
                self.left -= 1
            kept.append(*d)
        self.inner.receive(kept, now)

    def next_timer(self) -> float | None:
        return self.inner.next_timer()

    def handle_timer(self, now: float) -> None:
        self.inner.handle_timer(now)

    def datagrams_to_send(self) -> Datagrams:
        return self.inner.datagrams_to_send()


class Limited(Mute):
    """An LMA engine that serves at most ``rate`` PBUs per second (a token bucket holding 10 ms
    worth) and drops the rest unseen: an LMA of known capacity."""

    def __init__(self, inner: Endpoint, rate: float, now: float) -> None:
        self.inner = inner
        self.rate = rate
        self.burst = rate / 100
        self.tokens = self.burst
        self.last = now

    def receive(self, datagrams: Datagrams, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        kept = Datagrams()
        for d in datagrams:
            if d.data[2] == cp.MH_BINDING_UPDATE:
                if self.tokens < 1:
                    continue
                self.tokens -= 1
            kept.append(*d)
        self.inner.receive(kept, now)


class SimLoop:
    """``Runner``'s MAG driver on the simulator: the engine is a node, time is the simulator's."""

    def __init__(self, sim: Simulator, engine: MagEngine) -> None:
        self.sim = sim
        self.datagrams_sent = self.datagrams_received = 0
        self.receive_delay = Histogram()  # none: the simulator delivers on time
        self.transport = type("Transport", (), {"drops": Counter()})()
        pop = engine.pop
        sim.add_node("mags", engine, [pop.mag_address6(m) for m in range(len(pop.mags))])

    def run_until(self, deadline: float) -> None:
        self.sim.run_until(deadline)

    def close(self) -> None:
        pass


class SimPair:
    """The ``Target`` of a simulated run: reference LMA engines, LMA1 active, LMA1 answering only
    its first ``answered`` PBUs, or at most ``capacity`` PBUs per second."""

    starting = "starting the simulated pair"
    observes_sync = True
    can_fail = True

    def __init__(
        self, sim: Simulator, answered: int | None = None, capacity: float | None = None
    ) -> None:
        self.sim = sim
        self.engines = []
        for address, peer, role, preference, pool in (
            (LMA1, LMA2, "active", 200, "fd00:b000::/40"),
            (LMA2, LMA1, "standby", 100, "fd00:c000::/40"),
        ):
            config = LmaConfig(
                address=address,
                peers=(peer,),
                role=role,
                preference=preference,
                prefix_pool=IPv6Network(pool),
                sync="async",
            )
            self.engines.append(LmaEngine(config, sim.now))
        active: Endpoint = self.engines[0]
        if capacity is not None:
            active = Limited(active, capacity, sim.now)
        if answered is not None:
            active = Mute(active, answered)
        sim.add_node("lma1", active, [LMA1])
        sim.add_node("lma2", self.engines[1], [LMA2])

    def start(self) -> None:
        pass

    def wait_ready(self, timeout: float) -> None:
        self.sim.run_for(1.0)  # the pair sees each other's HELLO

    def routes(self) -> dict[IPv6Address, tuple[str, int]]:
        return {LMA1: ("lma1", 0), LMA2: ("lma2", 0)}

    def anchors(self) -> tuple[IPv6Address, IPv6Address | None]:
        return LMA1, LMA2

    def synced(self, sessions: int) -> bool:
        return len(self.engines[1].cache) >= sessions

    def fail(self) -> None:
        self.sim.crash("lma1")

    def failure_problems(self) -> list[str]:
        return []

    def stop(self) -> None:
        pass


def run_on(sim: Simulator, config: RunConfig, target: Any) -> dict[str, Any]:
    """The results of the real ``Runner`` against ``target`` on ``sim``'s clock."""
    runner = Runner(
        config,
        target,
        None,
        None,
        clock=lambda: sim.now,
        mag_loop=lambda engine: SimLoop(sim, engine),  # type: ignore[arg-type,return-value]
    )
    return runner.run()


def simulated_run(
    config: RunConfig, answered: int | None = None, capacity: float | None = None
) -> dict[str, Any]:
    """The results of the real ``Runner`` against a ``SimPair`` on the simulated clock (1 ms
    links)."""
    sim = Simulator(default_link=LinkProfile(delay=0.001))
    return run_on(sim, config, SimPair(sim, answered, capacity))
