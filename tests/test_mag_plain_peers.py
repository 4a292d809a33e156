"""The MAG engine's options for plain RFC 5213 LMAs (issue 14): sequence-number PBUs without a
Timestamp option, and running without RFC 5847 heartbeats, on both MAG paths, against the
embedded LMA on the simulated clock."""

from __future__ import annotations

from collections import defaultdict

import pytest

from lmaload.bulk import PbuOptions
from lmaload.measure.schedule import Schedule
from lmaload.population import PopulationSpec, generate
from lmaload.population import SessionState as S
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_config import MagConfig
from lmaload.sim import LinkProfile, Simulator
from lmaload.wire import BindingUpdate, Timestamp, decode_mh
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
