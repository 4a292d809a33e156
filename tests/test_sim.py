"""The deterministic network simulator: delivery order and delay, loss, duplication, reordering,
partitions, crashes, shared addresses, timers, and reproducibility from the seed."""

from __future__ import annotations

from ipaddress import IPv6Address

from lmaload.protocol import Datagram, Datagrams
from lmaload.sim import LinkProfile, Simulator

A = IPv6Address("2001:db8::a")
B = IPv6Address("2001:db8::b")
C = IPv6Address("2001:db8::c")


class Recorder:
    """Records what it receives; sends ``count`` numbered datagrams to ``peer`` every
    ``interval`` seconds from its first timer."""

    def __init__(
        self,
        me: IPv6Address,
        peer: IPv6Address | None = None,
        interval: float = 1.0,
        start: float | None = None,
        count: int = 1,
    ) -> None:
        self.me, self.peer, self.interval, self.count = me, peer, interval, count
        self.due = start
        self.got: list[tuple[float, bytes]] = []
        self.out = Datagrams()
        self.sent = 0

    def receive(self, datagrams: Datagrams, now: float) -> None:
        self.got += [(now, d.data) for d in datagrams]

    def datagrams_to_send(self) -> Datagrams:
        out, self.out = self.out, Datagrams()
        return out

    def next_timer(self) -> float | None:
        return self.due

    def handle_timer(self, now: float) -> None:
        for _ in range(self.count):
            self.out.append(self.sent.to_bytes(4, "big"), self.me, self.peer)
            self.sent += 1
        self.due = now + self.interval


def pair(
    seed: int = 0, link: LinkProfile | None = None, count: int = 1
) -> tuple[Simulator, Recorder, Recorder]:
    sim = Simulator(seed=seed, start=100.0, default_link=link or LinkProfile(delay=0.01))
    a = Recorder(A, B, start=100.0, count=count)
    b = Recorder(B)
    sim.add_node("a", a, [A])
    sim.add_node("b", b, [B])
    return sim, a, b


def test_delay_and_timer_driven_sends_in_order():
    sim, _a, b = pair()
    sim.run_until(103.0)
    assert [t for t, _ in b.got] == [100.01, 101.01, 102.01]
    assert [int.from_bytes(d, "big") for _, d in b.got] == [0, 1, 2]
    assert sim.now == 103.0


def test_loss_duplication_and_reordering_are_seeded():
    link = LinkProfile(
        delay=0.01, jitter=0.0, loss=0.2, duplicate=0.2, reorder=0.5, reorder_delay=0.5
    )

    def run(seed: int) -> list[tuple[float, bytes]]:
        sim, _, b = pair(seed, link, count=20)
        sim.run_until(105.0)
        return b.got

    first = run(7)
    assert first == run(7) and first != run(8)
    numbers = [int.from_bytes(d, "big") for _, d in first]
    assert len(set(numbers)) < 100  # some lost
    assert len(numbers) != len(set(numbers))  # some duplicated
    assert numbers != sorted(numbers)  # some reordered


def test_partition_cut_and_restore():
    sim, _a, b = pair()
    sim.cut([A], [B])
    sim.run_until(102.0)
    assert b.got == [] and sim.lost == 3
    sim.restore([A], [B])
    sim.run_until(103.5)
    assert len(b.got) == 1


def test_crash_stops_delivery_and_timers_and_restart_replaces_the_endpoint():
    sim, a, b = pair()
    sim.run_until(100.5)
    sim.crash("a")
    sim.run_until(103.0)
    assert len(b.got) == 1 and a.sent == 1
    fresh = Recorder(A, B, start=103.0)
    sim.restart("a", fresh)
    sim.run_until(103.5)
    assert fresh.sent == 1 and len(b.got) == 2


def test_shared_address_reaches_every_live_owner_in_one_batch():
    sim = Simulator(start=0.0)
    x, y = Recorder(B), Recorder(C)
    sim.add_node("x", x, [B])
    sim.add_node("y", y, [B, C])
    sim.send(Datagram(b"one", A, B))
    sim.send(Datagram(b"two", A, B))
    sim.run_until(1.0)
    assert [d for _, d in x.got] == [b"one", b"two"] == [d for _, d in y.got]
    sim.crash("x")
    sim.send(Datagram(b"three", A, B))
    sim.run_until(2.0)
    assert len(x.got) == 2 and len(y.got) == 3


def test_per_link_profile_overrides_the_default():
    sim, _a, b = pair()
    sim.set_link([A], [B], LinkProfile(delay=0.5))
    sim.run_until(101.0)
    assert [t for t, _ in b.got] == [100.5]
