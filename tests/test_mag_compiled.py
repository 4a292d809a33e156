"""The compiled MAG steps (``ext/mag_step.pyx``) against the reference path of ``MagEngine``: the
same seeded traffic on the simulated clock — loss, duplication, reordering, refreshes,
de-registration, an LMA crash and failover, a restart, PBA status reactions — must give the same
octets at the same times, the same population columns, counters, histograms, heartbeat state,
takeover measurements and events. Plus the compiled timer heap against ``RowTimers`` and the
address table against a dict."""

from __future__ import annotations

import math
import random
from dataclasses import fields, replace
from ipaddress import IPv6Address
from typing import Any

import numpy as np
import pytest
from lmaload._ext.framing import frame
from lmaload._ext.mag_step import AddressTable, ReceiveClock, Routes, RowHeap

from lmaload.bulk import PbuOptions
from lmaload.measure.histogram import Histogram
from lmaload.measure.schedule import Schedule
from lmaload.population import MN_DTYPE, PopulationSpec, generate
from lmaload.protocol import Datagrams, LmaEngine, Policy
from lmaload.protocol.datagrams import Columns
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_config import MagConfig
from lmaload.protocol.mag_timers import RowTimers
from lmaload.sim import LinkProfile, Simulator
from tests.test_mag_engine import HOME, LMA1, LMA2, LMAA, StatusRewriter, lma_pair


class Recorder:
    """A MAG engine whose every datagram out is noted with the simulated time; with ``columns``
    it receives each batch as columns, as from the UDP transport; with a ``period`` its timers
    run only on multiples of it (a driver that falls behind its schedule)."""

    def __init__(self, engine: MagEngine, sim: Simulator, columns: bool, period: float) -> None:
        self.engine, self.sim, self.columns, self.period, self.sent = (
            engine,
            sim,
            columns,
            period,
            [],
        )

    def receive(self, datagrams: Datagrams, now: float) -> None:
        if self.columns:
            datagrams = Datagrams([Columns.of(list(datagrams))])
        self.engine.receive(datagrams, now)

    def next_timer(self) -> float | None:
        due = self.engine.next_timer()
        if due is None or not self.period:
            return due
        return math.ceil(due / self.period) * self.period

    def handle_timer(self, now: float) -> None:
        self.engine.handle_timer(now)

    def datagrams_to_send(self) -> Datagrams:
        out = self.engine.datagrams_to_send()
        self.sent.extend((self.sim.now, *d) for d in out)
        return out


def scenario(name: str, seed: int, compiled: bool) -> dict[str, Any]:
    """Run scenario ``name`` with ``seed``; everything the engine produced and holds."""
    rng = random.Random(seed)
    link = LinkProfile(
        delay=0.002,
        jitter=rng.uniform(0, 0.003),
        loss=rng.choice([0.0, 0.05, 0.2]),
        duplicate=rng.choice([0.0, 0.1]),
        reorder=rng.choice([0.0, 0.3]),
        reorder_delay=0.02,
    )
    sim = Simulator(seed=seed, default_link=link)
    mode = "virtual" if name == "virtual_restart" else "hard"
    policy = Policy(home_networks=(HOME,))
    overrides: dict[str, Any] = {}
    pop = generate(PopulationSpec(mns=rng.randrange(50, 300), mags=rng.randrange(2, 13), seed=seed))
    if name == "statuses":
        policy = Policy(
            home_networks=(HOME,), pmip_disabled_mns=frozenset(pop.nai(r) for r in range(0, 50, 7))
        )
        overrides = {"pbu": PbuOptions(request_prefix=True), "clock_offset": 2.0}
    if name == "sequence":
        overrides = {"pbu": PbuOptions(timestamp=False)}
    if name == "no_heartbeats":
        overrides = {"heartbeats": "off", "failure_after": 2}
    lma1, _ = lma_pair(sim, mode, policy)
    if name == "statuses":
        sim.restart("lma1", StatusRewriter(lma1, set(range(1, 40, 3)), 157))
    addresses = {"lmaa": LMAA} if mode == "virtual" else {"lmaa": LMA1, "standby": LMA2}
    config = MagConfig(
        mode=mode,
        lifetime=8.0,
        refresh_margin=2.0,
        heartbeat_interval=0.2,
        heartbeat_spacing=rng.choice([0.0, 0.05]),
        schedule=Schedule.constant(rng.choice([200.0, 1000.0, 1e6])),
        deregister_at=sim.now + 5.5 if name == "lossy" else None,
        refresh_on_recovery=mode == "virtual",
        max_retransmissions=rng.choice([1, 4]),
        **addresses,
        **overrides,
    )
    engine = MagEngine(pop, config, sim.now, compiled=compiled)
    recorder = Recorder(engine, sim, columns=bool(seed % 2), period=rng.choice([0.0, 0.03]))
    sim.add_node("mags", recorder, [pop.mag_address6(m) for m in range(len(pop.mags))])
    if name in ("crash_hard", "virtual_restart"):
        sim.run_for(1.5)
        engine.mark_failure(sim.now)
        sim.crash("lma1")
        sim.run_for(0.5 if name == "virtual_restart" else 1.5)
        if name == "virtual_restart":
            sim.restart("lma1", LmaEngine(replace(lma1.config, restart_counter=6), sim.now))
    if name == "no_heartbeats":  # the failure shows only as PBUs going unanswered
        sim.run_for(0.5)
        engine.mark_failure(sim.now)
        sim.crash("lma1")
    if name == "sequence":  # some MAGs forget their sequence numbers: the LMA answers 135
        sim.run_for(1.5)
        pop.mns["seq"][::5] -= 1000
    sim.run_for(6.0)
    table, meter = engine.heartbeats, engine.takeover
    histograms = {"rtt": table.rtt, **engine.latency}
    return {
        "sent": recorder.sent,
        "mns": pop.mns.tobytes(),
        "lfi": engine._lfi.tobytes(),
        "counters": {f.name: getattr(engine.counters, f.name) for f in fields(engine.counters)},
        "histograms": {
            k: (h.counts.tobytes(), h.overflow, h.underflow) for k, h in histograms.items()
        },
        "heartbeats": [
            getattr(table, f).tobytes()
            for f in (
                "seq", "outstanding", "missing", "up", "answered", "sent_at", "counter",
                "counter_known", "tick",
            )
        ],
        "missed": table.missed,
        "takeover": [
            getattr(meter, f).tobytes()
            for f in ("fate", "_recovered_at", "_stayed", "_detected_at")
        ],
        "events": engine.events,
        "lag": (
            engine.lag.max,
            engine.lag.last,
            engine.behind_schedule,
            engine.lag.histogram.counts.tobytes(),
        ),
        "registrations": vars(engine.registrations),
        "last_settled": engine.last_settled,
        "next_timer": engine.next_timer(),
    }  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "name", ["lossy", "crash_hard", "virtual_restart", "statuses", "sequence", "no_heartbeats"]
)
def test_compiled_steps_match_the_reference(name, seed):
    reference = scenario(name, seed, compiled=False)
    compiled = scenario(name, seed, compiled=True)
    assert len(compiled["sent"]) == len(reference["sent"])
    for i, (a, b) in enumerate(zip(compiled["sent"], reference["sent"], strict=True)):
        assert a == b, f"datagram {i} differs"
    for key in reference:
        assert compiled[key] == reference[key], key
    assert reference["counters"]["pba_received"] > 0  # the scenario did something


def test_the_scenarios_reach_their_rare_paths():
    """The differential scenarios go through the reactions the compiled steps hand back."""
    crash = scenario("crash_hard", 1, compiled=True)
    assert any(e.kind == "lma_down" for e in crash["events"])
    assert any(
        scenario("crash_hard", seed, compiled=True)["counters"]["given_up"] for seed in range(4)
    )
    restart = scenario("virtual_restart", 0, compiled=True)
    assert restart["counters"]["sessions_invalidated"] > 0
    statuses = scenario("statuses", 2, compiled=True)
    assert {152, 155, 156, 157} <= set(statuses["counters"]["pba_status"])
    sequence = scenario("sequence", 0, compiled=True)
    assert sequence["counters"]["quirks"]["sequence_resync"] > 0
    assert 135 in sequence["counters"]["pba_status"]
    quiet = scenario("no_heartbeats", 0, compiled=True)
    assert quiet["counters"]["heartbeat_requests_sent"] == 0
    assert any(e.kind == "lma_down" for e in quiet["events"])


@pytest.mark.parametrize("seed", range(20))
def test_row_heap_matches_row_timers(seed):
    rng = np.random.default_rng(seed)
    mns_a, mns_b = np.zeros(50, dtype=MN_DTYPE), np.zeros(50, dtype=MN_DTYPE)
    reference, heap = RowTimers(mns_a["t_due"]), RowHeap(mns_b)
    now = 0
    for _ in range(200):
        op = rng.integers(3)
        rows = rng.choice(50, size=rng.integers(0, 8), replace=False).astype(np.int64)
        if op == 0:
            deadlines = now + rng.integers(0, 1000, size=len(rows))
            reference.arm(rows, deadlines)
            heap.arm(rows, deadlines)
        elif op == 1:
            reference.disarm(rows)
            heap.disarm(rows)
        else:
            now += int(rng.integers(0, 400))
            assert np.array_equal(heap.pop_due(now), reference.pop_due(now))
        assert heap.next() == reference.next()
        assert mns_a.tobytes() == mns_b.tobytes()


def test_address_table_and_routes():
    addresses = [IPv6Address(f"2001:db8::{i:x}").packed for i in range(1, 300)]
    keys = np.frombuffer(b"".join(addresses), dtype=np.uint8).reshape(-1, 16)
    table = AddressTable(keys)
    probe = np.concatenate([keys[::-7], np.zeros((1, 16), dtype=np.uint8)])
    expected = {a: i for i, a in enumerate(addresses)}
    assert table.lookup(probe).tolist() == [expected.get(p.tobytes(), -1) for p in probe]

    pop = generate(PopulationSpec(mns=10, mags=3))
    lmas = np.frombuffer(LMA1.packed + LMA2.packed, dtype=np.uint8).reshape(2, 16)
    routes = Routes(
        pop.mags["addr6"], pop.mags["addr4"], lmas, [[127, 0, 0, 11], [127, 0, 0, 12]], [5, 6]
    )
    src = pop.mags["addr6"][[2, 0, 1]]
    dst = lmas[[1, 0, 0]].copy()
    dst[2] = 0  # no such LMA
    buf = np.arange(30, dtype=np.uint8)
    starts, ends = np.array([0, 8, 20]), np.array([8, 8, 30])
    framed, offsets, src4, dst4, ports, unrouted = routes.frame(buf, starts, ends, src, dst)
    assert unrouted == 1
    assert src4.tolist() == pop.mags["addr4"][[2, 0]].tolist()
    assert dst4.tolist() == [[127, 0, 0, 12], [127, 0, 0, 11]] and ports.tolist() == [6, 5]
    expected, expected_offsets = frame(buf, starts[:2], ends[:2], src[:2], dst[:2])
    assert framed.tobytes() == expected.tobytes()
    assert offsets.tolist() == expected_offsets.tolist()
    assert routes.frame(buf, starts[:2], ends[:2], src[:2], dst[:2])[5] == 0
    with pytest.raises(ValueError):
        routes.frame(buf, np.array([25]), np.array([31]), src[:1], dst[:1])


def test_receive_clock_matches_the_loops_arithmetic():
    """The batch's time is its last known arrival, never after now; the delay recorded is from
    its first, in µs (a value past the histogram's range counted as overflow)."""
    delays = Histogram()
    clock = ReceiveClock(delays)
    assert clock.received_at(None, 5.0) == 5.0
    assert clock.received_at(np.array([np.nan, np.nan]), 5.0) == 5.0
    assert clock.received_at(np.array([], dtype=np.float64), 5.0) == 5.0
    assert delays.total == 0
    assert clock.received_at(np.array([4.75, np.nan, 4.5]), 5.0) == 4.75
    assert clock.received_at(np.array([5.5]), 5.0) == 5.0  # a clock step: not in the future
    reference = Histogram()
    reference.record(np.array([500_000, 0]))
    assert np.array_equal(delays.counts, reference.counts)
    clock.received_at(np.array([0.0]), 1e9)
    assert delays.overflow == 1


def test_receive_clock_cuts_a_batch_into_runs_of_at_most_the_spread():
    """Each run's known arrivals span at most the spread (a datagram of unknown time joins the
    run it is in), so no datagram is timed later than it arrived by more than that."""
    clock = ReceiveClock(Histogram())
    assert clock.runs(None, 5, 1e-3) == [5]
    assert clock.runs(np.array([], dtype=np.float64), 0, 1e-3) == [0]
    assert clock.runs(np.array([np.nan, np.nan]), 2, 1e-3) == [2]
    arrival = np.array([1.0, 1.0001, np.nan, 1.001, 1.0021, 1.0022, 1.01])
    assert clock.runs(arrival, 7, 1e-3) == [4, 6, 7]
    assert clock.runs(arrival, 7, 1.0) == [7]
