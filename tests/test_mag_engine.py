"""The vectorised MAG engine against two reference LMAs on the deterministic simulator: open-loop
registration, retransmission, refresh, status-code reactions (spec-digest §3.4), heartbeat failure
detection, hard and virtual switch (§8.4-§8.8), and the measurements (latency from the intended
send time, generator lag, detection and takeover times, sessions kept and lost)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv6Address, IPv6Network

import numpy as np
import pytest

from lmaload.bulk import PbuOptions
from lmaload.measure.schedule import Schedule, Stage
from lmaload.population import PopulationSpec, generate
from lmaload.population import SessionState as S
from lmaload.protocol import Datagrams, LmaConfig, LmaEngine, Policy
from lmaload.protocol.datagrams import Datagram
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_config import MagConfig
from lmaload.sim import LinkProfile, Simulator
from lmaload.wire import BindingAck, Heartbeat, decode_mh
from lmaload.wire import codepoints as cp

LMA1 = IPv6Address("2001:db8:bbbb::1")
LMA2 = IPv6Address("2001:db8:cccc::1")
LMAA = IPv6Address("2001:db8:ffff::1")  # shared, virtual mode
POOL1 = IPv6Network("2001:db8:8000::/48")
POOL2 = IPv6Network("2001:db8:8001::/48")
HOME = IPv6Network("2001:db8:8000::/40")
DELAY = 0.002
CLEAN = LinkProfile(delay=DELAY)


def lma_pair(sim: Simulator, mode: str = "hard", policy: Policy | None = None, **overrides):
    """LMA1 active (Restart Counter 5), LMA2 standby (9), as in tests/test_lma_flows.py."""
    common = {"mode": mode, "policy": policy or Policy(home_networks=(HOME,)), **overrides}
    lmaa = {"lmaa": LMAA} if mode == "virtual" else {}
    lmas = []
    for address, peer, role, pref, pool, counter in (
        (LMA1, LMA2, "active", 200, POOL1, 5),
        (LMA2, LMA1, "standby", 100, POOL2, 9),
    ):
        config = LmaConfig(
            address=address,
            peers=(peer,),
            role=role,
            preference=pref,
            prefix_pool=pool,
            restart_counter=counter,
            **lmaa,
            **common,
        )
        lmas.append(LmaEngine(config, sim.now))
    extra = [LMAA] if mode == "virtual" else []
    sim.add_node("lma1", lmas[0], [LMA1, *extra])
    sim.add_node("lma2", lmas[1], [LMA2, *extra])
    return lmas


def mag_engine(sim: Simulator, mns: int, mags: int, mode: str = "hard", **overrides) -> MagEngine:
    pop = generate(PopulationSpec(mns=mns, mags=mags, seed=7))
    addresses = {"lmaa": LMAA} if mode == "virtual" else {"lmaa": LMA1, "standby": LMA2}
    config = MagConfig(mode=mode, **{**addresses, **overrides})
    engine = MagEngine(pop, config, sim.now)
    sim.add_node("mags", engine, mag_addresses(engine))
    return engine


def mag_addresses(engine: MagEngine, mags=None) -> list[IPv6Address]:
    n = len(engine.pop.mags)
    return [engine.pop.mag_address6(m) for m in (range(n) if mags is None else mags)]


def prefixes(engine: MagEngine) -> list[IPv6Network]:
    mns = engine.pop.mns
    return [
        IPv6Network((IPv6Address(h.tobytes()), int(n)))
        for h, n in zip(mns["hnp"], mns["hnp_len"], strict=True)
    ]


def delivered_pbas(sim: Simulator, node: str = "mags"):
    """(time, src, status, mn NAI) of every PBA delivered to ``node``."""
    out = []
    for d in sim.trace:
        if d.node == node and d.datagram.data[2] == cp.MH_BINDING_ACK:
            msg = decode_mh(d.datagram.data, d.datagram.src, d.datagram.dst).message
            assert isinstance(msg, BindingAck)
            nai = next(o.identifier for o in msg.options if o.NAME == "Mobile Node Identifier")
            out.append((d.time, d.datagram.src, msg.status, nai))
    return out


def registered_everywhere(engine: MagEngine, lma: int) -> bool:
    mns = engine.pop.mns
    return bool(np.all(mns["state"] == S.REGISTERED) and np.all(mns["lma"] == lma))


# --- registration, retransmission, refresh -----------------------------------------------------


@pytest.mark.parametrize("mode", ["hard", "virtual"])
def test_open_loop_registration_with_a_ramp(mode):
    """2,000 MNs over 20 MAGs: 0 → 2,000/s over 1 s, then 2,000/s. Every PBU leaves at its
    intended time (no lag), every MN gets a distinct prefix from LMA1's pool, latency is the
    round trip."""
    sim = Simulator(default_link=CLEAN, tracing=True)
    lma1, _ = lma_pair(sim, mode)
    schedule = Schedule((Stage(1.0, 2000.0),))
    engine = mag_engine(sim, 2000, 20, mode, schedule=schedule)
    start = sim.now
    sim.run_for(2.0)
    assert registered_everywhere(engine, 0) and lma1.bce_count == 2000
    assert engine.counters.pba_status == {0: 2000} and engine.counters.pbu_retransmitted == 0
    assigned = prefixes(engine)
    assert len(set(assigned)) == 2000 and all(p.subnet_of(POOL1) for p in assigned)
    # PBUs reached LMA1 one link delay after the schedule's intended times
    arrivals = sorted(
        d.time for d in sim.trace if d.node == "lma1" and d.datagram.data[2] == cp.MH_BINDING_UPDATE
    )
    intended = start + schedule.offsets(2000)
    assert np.allclose(arrivals, intended + DELAY, atol=1e-6)
    assert engine.lag.max < 1e-6 and engine.behind_schedule == 0
    latency = engine.latency["register"]
    assert latency.total == 2000 and abs(latency.percentile(99) - 2 * DELAY * 1e6) <= 5


def test_retransmission_under_loss():
    """10 % loss each way between the MAGs and LMA1: PBUs are retransmitted (1 s doubling) with a
    new sequence number and Timestamp until every MN is registered; stale PBAs are ignored. An
    initial PBU whose PBA was lost is retransmitted with HI 4, so the LMA updates the session it
    opened rather than opening a second one for a new interface (HI 1)."""
    sim = Simulator(seed=3, default_link=CLEAN)
    lma1, _ = lma_pair(sim)
    engine = mag_engine(sim, 300, 10, schedule=Schedule.constant(1000.0))
    engine_addrs = mag_addresses(engine)
    sim.set_link(engine_addrs, [LMA1], LinkProfile(delay=DELAY, loss=0.1))
    sim.set_link([LMA1], engine_addrs, LinkProfile(delay=DELAY, loss=0.1))
    engine.heartbeats.missing_allowed = 1000  # this test is about PBUs, not failover
    sim.run_for(40)
    assert registered_everywhere(engine, 0)
    assert 30 < engine.counters.pbu_retransmitted < 150
    assert engine.latency["register"].max >= 1_000_000  # at least one retransmission interval
    assert engine.counters.failed == {}
    assert lma1.bce_count == 300


def test_refresh_before_expiry():
    """Lifetime 8 s, margin 2 s: every session refreshes (HI 5, its prefix) every 6 s, LMA1
    never expires a binding and the prefixes never change."""
    sim = Simulator(default_link=CLEAN)
    lma1, _ = lma_pair(sim)
    engine = mag_engine(sim, 200, 4, lifetime=8.0, refresh_margin=2.0)
    sim.run_for(1)
    before = prefixes(engine)
    sim.run_for(30)
    assert registered_everywhere(engine, 0) and prefixes(engine) == before
    assert engine.latency["refresh"].total == 5 * 200
    assert lma1.counters.bce_expired == 0 and lma1.bce_count == 200
    assert np.all(engine.pop.mns["hi"] == cp.HI_NOT_CHANGED)


def test_deregistration_at_the_end():
    sim = Simulator(default_link=CLEAN)
    lma1, _ = lma_pair(sim)
    engine = mag_engine(sim, 100, 4, deregister_at=sim.now + 1.0)
    sim.run_for(2)
    assert engine.count(S.IDLE) == 100 and lma1.bce_count == 0
    assert engine.counters.pba_status == {0: 200}


# --- PBA status reactions (spec-digest §3.4) ------------------------------------------------------


class StatusRewriter:
    """An LMA whose first PBA to each MN in ``mns`` carries ``status`` instead (the MAG engine does
    not verify checksums of bare MHs, so the octet is simply patched)."""

    def __init__(self, inner: LmaEngine, mns: set[int], status: int) -> None:
        self.inner, self.mns, self.status, self.done = inner, mns, status, set()

    def receive(self, datagrams: Datagrams, now: float) -> None:
        self.inner.receive(datagrams, now)

    def next_timer(self):
        return self.inner.next_timer()

    def handle_timer(self, now: float) -> None:
        self.inner.handle_timer(now)

    def datagrams_to_send(self) -> Datagrams:
        out = Datagrams()
        for d in self.inner.datagrams_to_send():
            if d.data[2] == cp.MH_BINDING_ACK:
                msg = decode_mh(d.data, d.src, d.dst).message
                nai = next(o.identifier for o in msg.options if o.NAME == "Mobile Node Identifier")
                mn = int(nai.split(b"@")[0][2:])
                if mn in self.mns and mn not in self.done:
                    self.done.add(mn)
                    d = Datagram(d.data[:6] + bytes([self.status]) + d.data[7:], d.src, d.dst)
            out.append(*d)
        return out


def test_status_codes_152_and_154_fail_the_session():
    """152 (proxy registration not enabled for the MN) and 154 (MAG not authorised) are final."""
    sim = Simulator(default_link=CLEAN)
    pop = generate(PopulationSpec(mns=100, mags=4, seed=7))
    disabled = frozenset(pop.nai(r) for r in range(0, 100, 10))
    mags = frozenset(pop.mag_address6(m) for m in (0, 1, 2))
    lma_pair(
        sim, policy=Policy(home_networks=(HOME,), authorized_mags=mags, pmip_disabled_mns=disabled)
    )
    engine = MagEngine(pop, MagConfig(lmaa=LMA1, standby=LMA2), sim.now)
    sim.add_node("mags", engine, mag_addresses(engine))
    sim.run_for(3)
    mns = pop.mns
    at_mag3 = mns["mag"] == 3
    is_disabled = np.isin(np.arange(100), np.arange(0, 100, 10))
    expected_154 = int(at_mag3.sum())
    expected_152 = int((is_disabled & ~at_mag3).sum())
    assert engine.counters.failed == {154: expected_154, 152: expected_152}
    assert np.all((mns["state"] == S.FAILED) == (at_mag3 | is_disabled))
    assert engine.count(S.REGISTERED) == 100 - expected_152 - expected_154
    assert np.all(mns["t_due"][mns["state"] == S.FAILED] == np.iinfo(np.int64).max)


def test_status_155_retries_with_all_zero():
    """The MAG requests the population's prefixes (2001:db8:0:i::/64), which LMA1 does not own:
    155, then ALL_ZERO and a prefix from LMA1's pool."""
    sim = Simulator(default_link=CLEAN)
    lma_pair(sim)
    engine = mag_engine(sim, 50, 2, pbu=PbuOptions(request_prefix=True))
    sim.run_for(2)
    assert engine.counters.pba_status == {155: 50, 0: 50} and engine.counters.failed == {}
    assert registered_everywhere(engine, 0) and all(p.subnet_of(POOL1) for p in prefixes(engine))


def test_status_156_resyncs_the_clock():
    """A MAG clock 2 s fast: 156 TIMESTAMP_MISMATCH, the engine resynchronises, the retry is
    accepted."""
    sim = Simulator(default_link=CLEAN)
    lma_pair(sim)
    engine = mag_engine(sim, 50, 2, clock_offset=2.0, schedule=Schedule.constant(1e6))
    sim.run_for(2)
    assert engine.counters.pba_status == {156: 50, 0: 50} and registered_everywhere(engine, 0)


def test_status_157_reregisters():
    sim = Simulator(default_link=CLEAN)
    lma1, _ = lma_pair(sim)
    sim.restart("lma1", StatusRewriter(lma1, set(range(0, 60, 2)), 157))
    engine = mag_engine(sim, 60, 3)
    sim.run_for(2)
    assert engine.counters.pba_status == {157: 30, 0: 60} and registered_everywhere(engine, 0)


# --- failure detection and switchover ------------------------------------------------------------


def detection_truth(sim: Simulator, engine: MagEngine, node: str, failed_at: float) -> np.ndarray:
    """Per MAG: the last heartbeat Request delivered to ``node`` before the failure was sent one
    link delay earlier, was answered, and MISSING_HEARTBEATS_ALLOWED + 1 unanswered ones follow
    it, one interval apart (R23): detection is (MHA + 2) intervals after it was sent."""
    cfg = engine.config
    last = {}
    for d in sim.trace:
        if d.node == node and d.time <= failed_at and d.datagram.data[2] == cp.MH_HEARTBEAT:
            msg = decode_mh(d.datagram.data, d.datagram.src, d.datagram.dst).message
            if isinstance(msg, Heartbeat) and not msg.is_response:
                last[d.datagram.src] = d.time - DELAY
    sent = np.array([last[a] for a in mag_addresses(engine)])
    return sent + (cfg.missing_heartbeats_allowed + 2) * cfg.heartbeat_interval - failed_at


def takeover_truth(sim: Simulator, engine: MagEngine, failed_at: float, src=None) -> np.ndarray:
    """Per MAG: the last of its sessions' first accepted PBA after the failure (from ``src``)."""
    first: dict[bytes, float] = {}
    for t, s, status, nai in delivered_pbas(sim):
        if t > failed_at and status == 0 and (src is None or s == src):
            first.setdefault(nai, t)
    pop = engine.pop
    out = np.full(len(pop.mags), -np.inf)
    for row in range(len(pop.mns)):
        m = int(pop.mns["mag"][row])
        out[m] = max(out[m], first[pop.nai(row)])
    return out - failed_at


@pytest.mark.parametrize(
    ("mode", "sessions"),
    [
        ("hard", {"lifetime": 8.0, "refresh_margin": 2.0}),
        ("virtual", {"lifetime": 8.0, "refresh_margin": 2.0}),
        ("virtual", {"refresh_on_recovery": True}),  # hour-long bindings
    ],
    ids=["hard", "virtual", "virtual-refresh-on-recovery"],
)
def test_crash_detection_and_takeover_times_match_the_simulation(mode, sessions):
    """LMA1 crashes at a known instant. Heartbeats (0.2 s, MHA 3) detect it per MAG; hard: every
    session fails over to LMA2 with PBU + LFI (HI 5, its prefix), LMA2 answers once it declared
    LMA1 dead (3 HELLO intervals); virtual: LMA2 takes the LMAA with LMA1's Restart Counter and
    the refreshes (lifetime 8 s) succeed — or, with hour-long bindings, the refreshes each MAG
    sends as soon as the LMAA answers its heartbeats again (refresh_on_recovery). Reported
    detection and takeover times equal the truth read from the trace within 1 ms; nothing is
    lost."""
    sim = Simulator(default_link=CLEAN, tracing=True)
    _, lma2 = lma_pair(sim, mode)
    engine = mag_engine(sim, 400, 8, mode, heartbeat_interval=0.2, **sessions)
    sim.run_for(1.5)
    before = prefixes(engine)
    failed_at = sim.now + 0.0123
    sim.run_until(failed_at)
    sim.crash("lma1")
    engine.mark_failure(failed_at)
    sim.run_for(12)
    meter = engine.takeover
    detection = detection_truth(sim, engine, "lma1", failed_at)
    assert np.all(np.abs(meter.detection - detection) < 1e-3), (meter.detection, detection)
    src = LMA2 if mode == "hard" else None
    takeover = takeover_truth(sim, engine, failed_at, src)
    assert np.all(np.abs(meter.takeover - takeover) < 1e-3), (meter.takeover, takeover)
    assert registered_everywhere(engine, 1 if mode == "hard" else 0)
    assert prefixes(engine) == before
    per_mag = np.bincount(engine.pop.mns["mag"], minlength=8)
    assert np.array_equal(meter.kept, per_mag) and not meter.lost.any()
    assert engine.counters.sessions_invalidated == 0
    if mode == "hard":  # LMA2 held the PBAs until it declared LMA1 dead
        dead = next(e.time for e in lma2.events if e.kind == "peer_dead")
        assert np.allclose(meter.takeover, dead + DELAY - failed_at, atol=1e-3)
    print(
        f"{mode}: detection {meter.detection.mean():.3f} s, takeover {meter.takeover.mean():.3f} s"
    )


def test_ha_switch_reregisters_with_the_address_it_carries():
    """§8.6, R28: slow heartbeats (30 s) leave detection to LMA2's HELLO; its HA Switch (LMAA2 +
    LFI(LMA1)) moves every session of each MAG to LMA2 with its prefix."""
    sim = Simulator(default_link=CLEAN)
    lma_pair(sim)
    engine = mag_engine(sim, 200, 5, heartbeat_interval=30.0)
    sim.run_for(1.5)
    before = prefixes(engine)
    engine.mark_failure(sim.now)
    sim.crash("lma1")
    sim.run_for(8)
    assert engine.counters.ha_switch_received == 5
    assert registered_everywhere(engine, 1) and prefixes(engine) == before
    assert np.all(np.isnan(engine.takeover.detection))  # the MAGs never saw LMA1 fail
    assert np.all(engine.takeover.takeover > 2.0) and engine.takeover.kept.sum() == 200


def test_partial_path_cut_moves_exactly_those_mags():
    """The path between MAGs 0-2 and LMA1 is cut; LMA1 stays up. Only those MAGs detect it and
    re-register with LMA2 (which takes them over by SO-REQ/SO-REP); the others stay at LMA1."""
    sim = Simulator(default_link=CLEAN)
    lma1, lma2 = lma_pair(sim)
    engine = mag_engine(sim, 400, 8, heartbeat_interval=0.2)
    sim.run_for(1.5)
    before = prefixes(engine)
    cut = [0, 1, 2]
    engine.mark_failure(sim.now)
    sim.cut(mag_addresses(engine, cut), [LMA1])
    sim.run_for(5)
    mns = engine.pop.mns
    moved = np.isin(mns["mag"], cut)
    assert np.array_equal(mns["lma"] == 1, moved) and np.all(mns["state"] == S.REGISTERED)
    assert prefixes(engine) == before
    detected = ~np.isnan(engine.takeover.detection)
    assert np.array_equal(np.flatnonzero(detected), cut)
    assert np.all(engine.takeover.takeover[cut] < 1.5)  # SO-REP from the live LMA1, no timeout
    assert engine.takeover.kept.sum() == moved.sum() and engine.takeover.lost.sum() == 0
    assert lma1.role.value == "active" and lma2.bce_count == moved.sum()


def test_before_ack_pair_loses_nothing_at_takeover():
    """A burst of registrations and LMA1 crashes 5 ms after it: with sync before-ack every session
    the MAGs hold a PBA for is at LMA2, so the takeover keeps all of them; the unacknowledged ones
    register anew at LMA2."""
    sim = Simulator(default_link=CLEAN)
    lma_pair(sim, sync="before-ack", sync_pacing_rate=200.0)
    sim.run_for(2)
    engine = mag_engine(sim, 300, 6, heartbeat_interval=0.2, schedule=Schedule.constant(10_000.0))
    sim.run_for(0.035)
    engine.mark_failure(sim.now)
    sim.crash("lma1")
    acked = engine.count(S.REGISTERED)
    sim.run_for(12)
    meter = engine.takeover
    assert 0 < acked < 300, acked
    assert meter.lost.sum() == 0 and meter.kept.sum() == acked
    assert registered_everywhere(engine, 1)


def test_restart_counter_change_invalidates_and_counts_lost():
    """Virtual switch: LMA1 restarts (fresh state, Restart Counter 6) before LMA2 notices; the
    MAGs see the counter change, drop the sessions and register them again — all lost."""
    sim = Simulator(default_link=CLEAN)
    lma1, _ = lma_pair(sim, "virtual")
    engine = mag_engine(sim, 100, 4, "virtual", heartbeat_interval=0.2)
    sim.run_for(1.5)
    engine.mark_failure(sim.now)
    sim.crash("lma1")
    sim.run_for(0.5)
    sim.restart("lma1", LmaEngine(replace(lma1.config, restart_counter=6), sim.now))
    sim.run_for(3)
    assert engine.counters.sessions_invalidated == 100
    assert engine.takeover.lost.sum() == 100 and engine.takeover.kept.sum() == 0
    assert registered_everywhere(engine, 0)


# --- open loop: latency from the intended time, generator lag ------------------------------------


class StalledLma:
    """An LMA that holds every reply it produces between ``start`` and ``end`` until ``end``."""

    def __init__(self, inner: LmaEngine, start: float, end: float) -> None:
        self.inner, self.start, self.end = inner, start, end
        self.held = Datagrams()
        self.now = 0.0

    def receive(self, datagrams: Datagrams, now: float) -> None:
        self.now = now
        self.inner.receive(datagrams, now)

    def handle_timer(self, now: float) -> None:
        self.now = now
        self.inner.handle_timer(now)

    def next_timer(self):
        inner = self.inner.next_timer()
        if len(self.held):
            return self.end if inner is None else min(inner, self.end)
        return inner

    def datagrams_to_send(self) -> Datagrams:
        self.held.extend(self.inner.datagrams_to_send())
        if self.start <= self.now < self.end:
            return Datagrams()
        out, self.held = self.held, Datagrams()
        return out


def test_a_stalled_lma_shows_in_the_latency_p99():
    """LMA1 answers nothing for 0.9 s in the middle of a 3 s run at 500/s: the generator keeps
    sending on schedule (no lag), and the ~15 % of registrations caught in the stall show in the
    p99 as the time they waited — no coordinated omission."""
    sim = Simulator(default_link=CLEAN)
    lma1, _ = lma_pair(sim)
    start = sim.now
    sim.restart("lma1", StalledLma(lma1, start + 1.0, start + 1.9))
    engine = mag_engine(sim, 1500, 10, schedule=Schedule.constant(500.0))
    sim.run_for(4)
    latency = engine.latency["register"]
    assert registered_everywhere(engine, 0) and latency.total == 1500
    assert latency.percentile(50) < 10_000
    assert 850_000 < latency.percentile(99) < 910_000
    assert engine.lag.max < 1e-6


class LazyDriver:
    """Drives an engine's timers only every ``period`` seconds (a generator that cannot keep up)."""

    def __init__(self, inner: MagEngine, period: float) -> None:
        self.inner, self.period = inner, period

    def receive(self, datagrams: Datagrams, now: float) -> None:
        self.inner.receive(datagrams, now)

    def handle_timer(self, now: float) -> None:
        self.inner.handle_timer(now)

    def next_timer(self):
        due = self.inner.next_timer()
        return None if due is None else float(np.ceil(due / self.period) * self.period)

    def datagrams_to_send(self) -> Datagrams:
        return self.inner.datagrams_to_send()


def test_a_schedule_faster_than_the_driver_shows_lag_and_latency():
    """5,000 registrations/s but timers run only every 50 ms: sends trail the schedule by up to
    50 ms, ~90 % are over the 5 ms tolerance, and the latency measured from the intended time
    carries that lag."""
    sim = Simulator(default_link=CLEAN)
    lma_pair(sim)
    pop = generate(PopulationSpec(mns=1000, mags=10, seed=7))
    config = MagConfig(lmaa=LMA1, schedule=Schedule.constant(5000.0), lag_tolerance=0.005)
    engine = MagEngine(pop, config, sim.now)
    sim.add_node("mags", LazyDriver(engine, 0.05), mag_addresses(engine))
    sim.run_for(1)
    assert registered_everywhere(engine, 0)
    assert 0.045 < engine.lag.max <= 0.05
    assert 0.85 < engine.behind_schedule < 0.95
    assert engine.latency["register"].percentile(50) > 20_000  # vs a 4 ms round trip


def test_heartbeats_leave_in_groups():
    """10 MAGs, interval 0.2 s, spacing 0.05 s: four groups, each MAG's Requests every 0.2 s, the
    generator woken four times per interval (not ten)."""
    sim = Simulator(default_link=CLEAN, tracing=True)
    lma_pair(sim)
    engine = mag_engine(sim, 20, 10, heartbeat_interval=0.2, heartbeat_spacing=0.05)
    start = sim.now
    sim.run_for(1.0 - 1e-9)
    sent = [
        (round(d.time - DELAY - start, 6), d.datagram.src)
        for d in sim.trace
        if d.node == "lma1" and d.datagram.data[2] == cp.MH_HEARTBEAT
    ]
    assert sorted({t for t, _ in sent}) == pytest.approx([0.05 * k for k in range(20)])
    per_mag = {a: sorted(t for t, src in sent if src == a) for a in mag_addresses(engine)}
    assert all(np.allclose(np.diff(times), 0.2) and len(times) == 5 for times in per_mag.values())
    assert engine.heartbeats.answered.all()
