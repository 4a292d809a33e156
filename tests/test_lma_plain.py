"""The reference LMA as a plain RFC 5213 LMA (``LmaConfig.plain``, ``lmaload lma --plain``):
a Heartbeat answered with OAI's Binding Error status 2 (../shared/peers, oai-capture.pcap frame
11), no HA-HELLO, heartbeat or State Sync traffic, PBUs ordered by sequence number (135 with the
last accepted one, Timestamp and LMA Failure Indication ignored and never echoed), the assigned
prefix in the PBA, and a restart that forgets every binding and accepts the MAGs again; each
exchange given to one engine as columns (fast lane) and to another as datagrams (reference path),
which must answer alike. Then MAGs of both paths against it on the simulated clock."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest

from lmaload.bulk import PbuOptions
from lmaload.measure.schedule import Schedule
from lmaload.population import PopulationSpec, generate
from lmaload.population import SessionState as S
from lmaload.protocol import LmaConfig, LmaEngine
from lmaload.protocol.datagrams import Columns, Datagram, Datagrams
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_config import MagConfig
from lmaload.sim import LinkProfile, Simulator
from lmaload.wire import (
    AccessTechnologyType,
    BindingAck,
    BindingError,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeAgentControl,
    HomeNetworkPrefix,
    LmaFailureIndication,
    MobileNodeIdentifier,
    StateSync,
    Timestamp,
    decode_mh,
    encode_mh,
)
from lmaload.wire import codepoints as cp
from tests.test_mag_engine import mag_addresses

T0 = 1_700_000_000.0
MAG, LMA = IPv6Address("fd00:5213::1"), IPv6Address("fd00:5213::2")  # as in the captures
OTHER_LMA = IPv6Address("fd00:5213::9")
POOL = IPv6Network("2001:db8:8000::/48")
ZERO = HomeNetworkPrefix(IPv6Address("::"), 0)
# oai-capture.pcap frame 11 (fd00:5213::2 → fd00:5213::1): the Mobility Header of OAI's answer
# to a Heartbeat, Binding Error status 2 with the unspecified Home Address.
OAI_FRAME_11 = bytes.fromhex("3b0207001d330200" + "00" * 16)


class Both:
    """A plain LMA twice: fed as columns (fast lane) and as datagrams (reference path)."""

    def __init__(self, now: float = T0, **overrides) -> None:
        config = LmaConfig(address=LMA, prefix_pool=POOL, plain=True, **overrides)
        self.fast, self.reference = LmaEngine(config, now), LmaEngine(config, now)

    def send(self, msg, now: float = T0, src: IPv6Address = MAG) -> list[tuple[bytes, object]]:
        """``msg`` from ``src`` to both; the one answer's octets (the same from both), decoded."""
        datagram = Datagram(encode_mh(msg, src, LMA), src, LMA, now)
        self.fast.receive(Datagrams([Columns.of([datagram])]), now)
        self.reference.receive(Datagrams([datagram]), now)
        return self.sent()

    def timers(self, now: float) -> list[tuple[bytes, object]]:
        for engine in (self.fast, self.reference):
            engine.handle_timer(now)
        return self.sent()

    def sent(self) -> list[tuple[bytes, object]]:
        out = [(d.data, d.src, d.dst) for d in self.fast.datagrams_to_send()]
        assert out == [(d.data, d.src, d.dst) for d in self.reference.datagrams_to_send()]
        assert self.fast.counters == self.reference.counters
        assert self.fast.cache.rows.tobytes() == self.reference.cache.rows.tobytes()
        return [(data, decode_mh(data, src, dst).message) for data, src, dst in out]


def pbu(seq: int, hnp: HomeNetworkPrefix = ZERO, hi: int = 1, lifetime: int = 75, *extra):
    options = (MobileNodeIdentifier(b"mn1@example.com"), hnp, HandoffIndicator(hi))
    return BindingUpdate(seq, lifetime, options=(*options, AccessTechnologyType(4), *extra))


def answer(lma: Both, msg, now: float = T0) -> BindingAck:
    [(_, pba)] = lma.send(msg, now)
    assert isinstance(pba, BindingAck)
    assert not any(isinstance(o, Timestamp | LmaFailureIndication) for o in pba.options)
    return pba


def prefix(pba: BindingAck) -> HomeNetworkPrefix:
    return next(o for o in pba.options if isinstance(o, HomeNetworkPrefix))


def test_a_heartbeat_gets_oais_binding_error_2() -> None:
    lma = Both()
    for flags in (0, cp.HB_FLAG_R):  # a request (compiled responder), a response (reference)
        [(octets, error)] = lma.send(Heartbeat(1, flags))
        assert octets == OAI_FRAME_11 and error == BindingError(cp.BE_STATUS_UNRECOGNIZED_MH_TYPE)
    counters = lma.fast.counters
    assert counters.binding_errors_sent == 2 and counters.heartbeat_requests_answered == 0


def test_no_hello_heartbeat_or_state_sync_and_the_drafts_messages_are_unknown() -> None:
    lma = Both()
    assert lma.fast.next_timer() is None  # no HA-HELLO, no heartbeat to the MAGs
    pba = answer(lma, pbu(1))
    assert pba.status == cp.STATUS_ACCEPTED
    for now in (T0 + 1, T0 + 61, T0 + 299):
        assert lma.fast.next_timer() == T0 + 300  # only the binding's lifetime
        assert lma.timers(now) == []
    for msg in (
        StateSync(cp.SS_REQUEST, 1),
        HomeAgentControl(cp.HAC_SWITCHOVER_REQUEST, 0, MAG),
    ):
        [(_, error)] = lma.send(msg, src=OTHER_LMA)
        assert error == BindingError(cp.BE_STATUS_UNRECOGNIZED_MH_TYPE)
    counters = lma.fast.counters
    assert counters.hello_sent == counters.heartbeat_requests_sent == 0
    assert lma.timers(T0 + 300) == [] and lma.fast.cache.live_rows().size == 0


def test_sequence_numbers_order_pbus_whatever_timestamp_they_carry() -> None:
    lma = Both()
    stale = Timestamp.from_unix(T0 - 1000)  # 156 for an RFC 5213 LMA preferring Timestamps
    first = answer(lma, pbu(1, ZERO, 1, 75, stale))
    assert (first.status, first.sequence, first.lifetime) == (cp.STATUS_ACCEPTED, 1, 75)
    assigned = prefix(first)
    assert assigned.prefix_length == 64 and IPv6Network(f"{assigned.prefix}/64").subnet_of(POOL)
    assert answer(lma, pbu(2, assigned, 5)).status == cp.STATUS_ACCEPTED
    for old in (2, 1, 2 + 0x8000):  # repeated, older, half the window away
        rejected = answer(lma, pbu(old, assigned, 5, 75, stale))
        assert (rejected.status, rejected.sequence) == (cp.STATUS_SEQUENCE_OUT_OF_WINDOW, 2)
    wrapped = answer(lma, pbu(0x7FFF + 2, assigned, 5))
    assert (wrapped.status, prefix(wrapped)) == (cp.STATUS_ACCEPTED, assigned)
    # An LMA Failure Indication means nothing here: a new MN is a new session.
    other = BindingUpdate(
        1, 75, options=(MobileNodeIdentifier(b"mn2@example.com"), ZERO, HandoffIndicator(1),
                        AccessTechnologyType(4), LmaFailureIndication(OTHER_LMA)),
    )  # fmt: skip
    assert answer(lma, other).status == cp.STATUS_ACCEPTED
    assert lma.fast.fast_lane is not None and lma.fast.fast_lane_pbus > 0


def test_a_restarted_lma_has_no_bindings_and_accepts_the_mags_again() -> None:
    lma = Both()
    assigned = prefix(answer(lma, pbu(1)))
    assert answer(lma, pbu(2, assigned, 5)).status == cp.STATUS_ACCEPTED
    restarted = Both(T0 + 10)
    assert restarted.fast.cache.live_rows().size == 0
    refresh = answer(restarted, pbu(3, assigned, 5), T0 + 10)
    assert (refresh.status, prefix(refresh)) == (cp.STATUS_ACCEPTED, assigned)
    again = Both(T0 + 20)  # and a MAG that restarted too starts from sequence 1
    assert answer(again, pbu(1, assigned, 5), T0 + 20).status == cp.STATUS_ACCEPTED
    assert prefix(answer(again, pbu(1, ZERO, 1, 75), T0 + 20)) != ZERO


@pytest.mark.parametrize(
    "overrides",
    [{"peers": (OTHER_LMA,)}, {"role": "standby"}, {"role": "auto"}, {"sync": "before-ack"}],
)
def test_a_plain_lma_stands_alone(overrides: dict) -> None:
    with pytest.raises(ValueError, match="a plain LMA stands alone"):
        LmaConfig(address=LMA, plain=True, **overrides)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "reference"])
def test_mags_rehearse_against_a_plain_lma_and_its_restart(compiled: bool) -> None:
    """Sequence-number PBUs and heartbeats ``auto``: the first Binding Error 2 turns the MAGs'
    heartbeats off; the LMA restarts with an empty cache and every refresh is accepted again,
    with the same prefix."""
    sim = Simulator(default_link=LinkProfile(delay=0.002))
    config = LmaConfig(address=LMA, prefix_pool=POOL, plain=True)
    sim.add_node("lma", LmaEngine(config, sim.now), [LMA])
    pop = generate(PopulationSpec(mns=100, mags=5, seed=7))
    mag_config = MagConfig(
        lmaa=LMA,
        schedule=Schedule.constant(1000.0),
        pbu=PbuOptions(timestamp=False),
        heartbeats="auto",
        lifetime=8.0,
        refresh_margin=2.0,
    )
    mags = MagEngine(pop, mag_config, sim.now, compiled=compiled)
    sim.add_node("mags", mags, mag_addresses(mags))
    mags.start_schedule(sim.now + 2.0)
    sim.run_for(3.0)
    mns = pop.mns
    assert not mags.heartbeating and (mns["state"] == S.REGISTERED).all()
    kinds = [e.kind for e in mags.pop_events()]
    assert kinds.count("heartbeats_unsupported") == 1 and kinds.count("heartbeats_off") == 1
    prefixes = mns["hnp"].copy()
    sim.crash("lma")
    restarted = LmaEngine(config, sim.now)
    sim.restart("lma", restarted)
    sim.run_for(8.0)
    assert restarted.bce_count == 100
    assert (mns["state"] == S.REGISTERED).all() and not mags.counters.failed
    assert (mns["hnp"] == prefixes).all()
    assert mags.counters.heartbeat_requests_sent == 1
