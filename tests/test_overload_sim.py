"""Overload degrades, it does not collapse (#12 item 2): the real LMA engines (before-ack sync)
and the real MAG engine on the simulated clock, the active LMA able to process C datagrams a
second from a bounded receive queue. Offered 2C registrations a second for 4 s, then C/2: the
goodput during the overload stays at 0.8 C or more, and the registration latency is back to
normal within a few seconds after the load falls."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import numpy as np

from lmaload.measure.schedule import Schedule, Stage
from lmaload.population import PopulationSpec, generate
from lmaload.protocol import LmaConfig, LmaEngine
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_config import MagConfig
from lmaload.sim import LinkProfile, Service, Simulator

LMA1 = IPv6Address("2001:db8:bbbb::1")
LMA2 = IPv6Address("2001:db8:cccc::1")
C = 1000.0  # the active LMA's capacity, datagrams/s
OVERLOAD, RECOVERY = 4.0, 14.0  # seconds at 2C, then at C/2
# The overload leaves ~(2C - C) * OVERLOAD registrations to retry, which the spare C/2 works off
# in ~2 * OVERLOAD seconds; the latency is back to normal after that.
SETTLED = 2 * OVERLOAD + 2.0


def test_twice_the_capacity_degrades_gracefully_and_recovers():
    sim = Simulator(default_link=LinkProfile(delay=0.001), columns=True)
    lmas = []
    for address, peer, role, pool in (
        (LMA1, LMA2, "active", "2001:db8:8000::/40"),
        (LMA2, LMA1, "standby", "2001:db8:9000::/40"),
    ):
        config = LmaConfig(
            address=address,
            peers=(peer,),
            role=role,
            prefix_pool=IPv6Network(pool),
            sync="before-ack",
        )
        lmas.append(LmaEngine(config, sim.now))
    # A receive queue of 1 s of work: queued PBUs would outlive the MAG's 1 s timer unshed.
    service = Service(rate=C, queue=int(C), shed=lambda lma: lma.counters.pbu_shed.total())
    sim.add_node("lma1", lmas[0], [LMA1], service=service)
    sim.add_node("lma2", lmas[1], [LMA2])
    sim.run_for(1.0)  # the pair sees each other's HELLO
    count = int(2 * C * OVERLOAD + C / 2 * RECOVERY)
    pop = generate(PopulationSpec(mns=count, mags=50, seed=3))
    schedule = Schedule((Stage(OVERLOAD, 2 * C), Stage(0.0, C / 2)), start_rate=2 * C)
    # Heartbeats share the receive queue with the PBUs: every 5 s, so that losing some to the
    # full queue does not make the MAGs fail over, which is not what this test is about.
    config = MagConfig(lmaa=LMA1, standby=LMA2, schedule=schedule, heartbeat_interval=5.0)
    mag = MagEngine(pop, config, sim.now)
    start = sim.now
    sim.add_node("mags", mag, [pop.mag_address6(m) for m in range(len(pop.mags))])
    sim.run_for(OVERLOAD + RECOVERY + 4.0)

    mns = pop.mns
    intended = (mns["t_send"] - int(start * 1e9)) / 1e9  # the initial registration's intended time
    acked = mns["t_acked"] > 0
    done_at = (mns["t_acked"] - int(start * 1e9)) / 1e9
    # Goodput: registrations completed in each second of the overload (after the first, filling).
    per_second = np.histogram(done_at[acked], bins=np.arange(0.0, OVERLOAD + RECOVERY + 1))[0]
    assert min(per_second[1 : int(OVERLOAD)]) >= 0.8 * C, per_second
    # Latency back to normal: the registrations sent once the retries are worked off.
    late = (intended >= OVERLOAD + SETTLED) & (intended < OVERLOAD + RECOVERY)
    latency = done_at[late] - intended[late]
    assert acked[late].all()
    assert np.percentile(latency, 99) < 0.1, np.percentile(latency, [50, 99])
    counters = lmas[0].counters
    assert counters.pbu_shed["stale"] > 0 or sim.node("lma1").dropped > 0
