"""The MAG engine's options for plain RFC 5213 LMAs (issue 14): sequence-number PBUs without a
Timestamp option, and running without RFC 5847 heartbeats, on both MAG paths, against the
embedded LMA on the simulated clock."""

from __future__ import annotations

from collections import defaultdict
from ipaddress import IPv6Address

import pytest

from lmaload.bulk import PbuOptions
from lmaload.measure.schedule import Schedule
from lmaload.population import PopulationSpec, generate
from lmaload.population import SessionState as S
from lmaload.protocol import LmaEngine
from lmaload.protocol.datagrams import Datagram, Datagrams
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_config import MagConfig
from lmaload.sim import LinkProfile, Simulator
from lmaload.wire import BindingError, BindingUpdate, Timestamp, decode_mh, encode_mh
from lmaload.wire import codepoints as cp
from tests.test_mag_engine import CLEAN, DELAY, LMA1, LMA2, lma_pair, mag_addresses


def mags(sim: Simulator, compiled: bool, mns: int = 300, **overrides) -> MagEngine:
    pop = generate(PopulationSpec(mns=mns, mags=10, seed=7))
    config = MagConfig(lmaa=LMA1, standby=LMA2, schedule=Schedule.constant(1000.0), **overrides)
    engine = MagEngine(pop, config, sim.now, compiled=compiled)
    sim.add_node("mags", engine, mag_addresses(engine))
    return engine


def sent_pbus(sim: Simulator) -> list[BindingUpdate]:
    out = []
    for d in sim.trace:
        if d.datagram.dst in (LMA1, LMA2) and d.datagram.data[2] == cp.MH_BINDING_UPDATE:
            msg = decode_mh(d.datagram.data, d.datagram.src, d.datagram.dst).message
            assert isinstance(msg, BindingUpdate)
            out.append(msg)
    return out


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "reference"])
def test_sequence_mode_sends_no_timestamp_and_counts_every_transmission(compiled: bool) -> None:
    """Sequence-number ordering under 10 % loss each way: no PBU carries a Timestamp, each MN's
    sequence numbers go up by one per transmission, retransmissions included, and every MN is
    registered (the embedded LMA orders such PBUs by sequence number)."""
    sim = Simulator(seed=3, default_link=CLEAN, tracing=True)
    lma1, _ = lma_pair(sim)
    engine = mags(sim, compiled, pbu=PbuOptions(timestamp=False))
    addrs = mag_addresses(engine)
    sim.set_link(addrs, [LMA1], LinkProfile(delay=DELAY, loss=0.1))
    sim.set_link([LMA1], addrs, LinkProfile(delay=DELAY, loss=0.1))
    engine.heartbeats.missing_allowed = 1000  # about PBUs, not failover
    sim.run_for(40)
    assert (engine.pop.mns["state"] == S.REGISTERED).all() and lma1.bce_count == 300
    pbus = sent_pbus(sim)
    assert engine.counters.pbu_retransmitted > 0
    assert not any(isinstance(o, Timestamp) for p in pbus for o in p.options)
    by_mn: dict[bytes, list[int]] = defaultdict(list)
    for p in pbus:
        by_mn[p.options[1].identifier].append(p.sequence)  # type: ignore[attr-defined]
    assert all(s == sorted(set(s)) for s in by_mn.values())  # those the LMA got, in order
    # one sequence number per transmission, from 1: the last is how many the MN sent
    assert int(engine.pop.mns["seq"].sum()) == engine.counters.pbu_sent


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "reference"])
def test_a_mag_that_forgot_its_sequence_numbers_continues_from_the_pba(compiled: bool) -> None:
    """After registration the MAGs' sequence numbers go back (a MAG restarted): the refreshes get
    PBA 135 carrying the LMA's last accepted sequence number, and the MAGs continue from it."""
    sim = Simulator(default_link=CLEAN)
    lma_pair(sim)
    engine = mags(sim, compiled, mns=50, lifetime=8.0, refresh_margin=2.0, pbu=PbuOptions(False))
    sim.run_for(1.0)
    mns = engine.pop.mns
    assert (mns["state"] == S.REGISTERED).all()
    mns["seq"] -= 1000
    sim.run_for(8.0)
    assert engine.counters.pba_status[135] == 50
    assert engine.counters.quirks["sequence_resync"] == 50
    assert (mns["state"] == S.REGISTERED).all() and not engine.counters.failed


class NoRfc5847:
    """An LMA without RFC 5847: a Heartbeat gets Binding Error status 2 (RFC 6275 §9.2)."""

    def __init__(self, inner: LmaEngine) -> None:
        self.inner, self.errors = inner, []

    def receive(self, datagrams: Datagrams, now: float) -> None:
        rest = []
        for d in datagrams:
            if d.data[2] == cp.MH_HEARTBEAT:
                error = BindingError(cp.BE_STATUS_UNRECOGNIZED_MH_TYPE, IPv6Address("::"))
                self.errors.append(Datagram(encode_mh(error, d.dst, d.src), d.dst, d.src))
            else:
                rest.append(d)
        self.inner.receive(Datagrams(rest), now)

    def next_timer(self) -> float | None:
        return self.inner.next_timer()

    def handle_timer(self, now: float) -> None:
        self.inner.handle_timer(now)

    def datagrams_to_send(self) -> Datagrams:
        out = self.inner.datagrams_to_send()
        out.extend(self.errors)
        self.errors = []
        return out


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "reference"])
def test_without_heartbeats_unanswered_pbus_declare_the_lma_failed(compiled: bool) -> None:
    """Heartbeats off: none is sent; the start-up check gets a PBA from each LMA instead; when
    LMA1 goes deaf (as OPMIP does after two Heartbeats), each MAG declares it failed after
    ``failure_after`` unanswered PBUs and registers its sessions with LMA2."""
    sim = Simulator(default_link=CLEAN, tracing=True)
    lma_pair(sim)
    engine = mags(sim, compiled, mns=100, heartbeats="off", failure_after=2)
    engine.start_schedule(sim.now + 2.0)
    sim.run_for(1.0)
    assert engine.lmas_answered.all()  # a de-registration of mn0 to each
    assert engine.counters.heartbeat_requests_sent == 0
    sim.run_for(1.02)  # the schedule started: the first registrations are on their way
    sim.crash("lma1")
    sim.run_for(10.0)
    mns = engine.pop.mns
    assert (mns["state"] == S.REGISTERED).all() and (mns["lma"] == 1).all()
    assert {e.kind for e in engine.pop_events()} == {"lma_down"}
    assert engine.counters.heartbeat_requests_sent == 0
    assert not any(d.datagram.data[2] == cp.MH_HEARTBEAT for d in sim.trace)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "reference"])
def test_auto_turns_heartbeats_off_at_a_binding_error_2(compiled: bool) -> None:
    sim = Simulator(default_link=CLEAN)
    lma1, lma2 = lma_pair(sim)
    sim.restart("lma1", NoRfc5847(lma1))
    sim.restart("lma2", NoRfc5847(lma2))
    engine = mags(sim, compiled, mns=50, heartbeats="auto")
    engine.start_schedule(sim.now + 3.0)
    sim.run_for(2.5)
    assert not engine.heartbeating and engine.lmas_answered.all()
    sent = engine.counters.heartbeat_requests_sent
    kinds = [e.kind for e in engine.pop_events()]
    assert kinds.count("heartbeats_unsupported") == 2 and kinds.count("heartbeats_off") == 1
    sim.run_for(2.0)
    assert engine.counters.heartbeat_requests_sent == sent
    assert (engine.pop.mns["state"] == S.REGISTERED).all()
