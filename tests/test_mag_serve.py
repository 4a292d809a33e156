"""``MagServe`` (``ext/mag_serve.pxi``, the compiled driver of ``MagLoop``) against the loop's
Python path (``Endpoint``'s methods a wakeup at a time): the same population registering with the
reference LMA over UDP/5436 on loopback, heartbeating it, some sessions refused (152, the rare
path back to the engine), must end in the same states and counts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from lmaload.measure.schedule import Schedule
from lmaload.population import PopulationSpec, generate
from lmaload.population import SessionState as S
from lmaload.protocol import Policy
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_config import MagConfig
from lmaload.transport.mag_loop import MagLoop, MagTransport
from tests.test_lma_udp import RunningLma, start_lma

MNS, MAGS, SEED = 400, 8, 7
REFUSED = range(0, MNS, 25)


@pytest.fixture
def lma() -> Iterator[RunningLma]:
    pop = generate(PopulationSpec(mns=MNS, mags=MAGS, seed=SEED))
    running = start_lma(policy=Policy(pmip_disabled_mns=frozenset(pop.nai(r) for r in REFUSED)))
    yield running
    running.stop()


def register(lma: RunningLma, compiled_driver: bool) -> tuple[MagEngine, MagLoop]:
    pop = generate(PopulationSpec(mns=MNS, mags=MAGS, seed=SEED))
    config = MagConfig(lmaa=lma.inner, heartbeat_interval=0.2, schedule=Schedule.constant(4000.0))
    engine = MagEngine(pop, config, time.time())
    loop = MagLoop(engine, MagTransport(pop, {lma.inner: lma.outer}))
    assert loop._serve is not None
    if not compiled_driver:
        loop._serve = None
    deadline = time.time() + 20.0
    try:
        while not engine.registrations_settled and time.time() < deadline:
            loop.run_until(time.time() + 0.05)
        loop.run_until(time.time() + 0.5)  # heartbeats answered
    finally:
        loop.close()
    return engine, loop


@pytest.mark.parametrize("compiled_driver", [True, False])
def test_both_drivers_register_the_same(lma: RunningLma, compiled_driver: bool) -> None:
    engine, loop = register(lma, compiled_driver)
    assert engine.count(S.REGISTERED) == MNS - len(REFUSED)
    assert engine.count(S.FAILED) == len(REFUSED)
    assert engine.counters.failed[152] == len(REFUSED)
    assert engine.counters.pbu_sent == MNS
    assert engine.counters.pba_received == MNS
    assert engine.counters.heartbeat_responses_received > 0
    assert engine.lag.sent == MNS
    assert engine.registrations.total == MNS - len(REFUSED)
    assert engine.latency["register"].total == MNS - len(REFUSED)
    assert loop.receive_delay.total > 0
    assert loop.datagrams_sent == MNS + engine.counters.heartbeat_requests_sent
    assert not loop.transport.drops


@pytest.mark.parametrize("compiled_driver", [True, False])
def test_answers_are_taken_in_while_sends_are_due_every_quantum(
    lma: RunningLma, compiled_driver: bool
) -> None:
    """At 4 000/s a send is due within every quantum, so the loop sleeps without watching the
    socket: what arrived must still be taken in at each wakeup, not after the schedule."""
    pop = generate(PopulationSpec(mns=MNS, mags=MAGS, seed=SEED))
    config = MagConfig(lmaa=lma.inner, heartbeat_interval=0.2, schedule=Schedule.constant(4000.0))
    engine = MagEngine(pop, config, time.time())
    loop = MagLoop(engine, MagTransport(pop, {lma.inner: lma.outer}))
    if not compiled_driver:
        loop._serve = None
    registered_while_sending = 0
    deadline = time.time() + 20.0
    try:
        while not engine.registrations_settled and time.time() < deadline:
            loop.run_until(time.time() + 0.005)
            if 0 < engine.counters.pbu_sent < MNS:
                registered_while_sending = max(registered_while_sending, engine.count(S.REGISTERED))
    finally:
        loop.close()
    assert engine.count(S.REGISTERED) == MNS - len(REFUSED)
    assert registered_while_sending > 0
