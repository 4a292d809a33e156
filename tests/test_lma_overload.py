"""What an overloaded LMA sheds (lmaload.protocol.lma.shed), the same as columns (compiled) and
as datagrams (reference): PBUs queued too long, PBUs a later one of the batch supersedes, PBUs
while the before-ack backlog is at its bound, and a takeover's hold at its bound; and the
compiled heartbeat responder's octets at the LMAA of a virtual pair."""

from __future__ import annotations

from ipaddress import IPv6Address

from lmaload.metrics import LmaMetrics
from lmaload.protocol import Datagram, Datagrams, LmaConfig, LmaEngine
from lmaload.protocol.datagrams import Columns
from lmaload.wire import (
    AccessTechnologyType,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeNetworkPrefix,
    MobileNodeIdentifier,
    decode_mh,
    encode_mh,
)

T0 = 1_700_000_000.0
LMA = IPv6Address("2001:db8:bbbb::1")
LMAA = IPv6Address("2001:db8:bbbb::100")
MAG = IPv6Address("2001:db8:aaaa::1")
ZERO = HomeNetworkPrefix(IPv6Address("::"), 0)


def pbu(mn: bytes, seq: int, arrival: float | None = T0, att: int = 4) -> Datagram:
    options = (MobileNodeIdentifier(mn), ZERO, HandoffIndicator(1), AccessTechnologyType(att))
    return Datagram(
        encode_mh(BindingUpdate(seq, 100, options=options), MAG, LMA), MAG, LMA, arrival
    )


def both(config: LmaConfig, batch: list[Datagram], now: float) -> list[LmaEngine]:
    """Two engines given ``batch``: as columns and as datagrams; the same octets out."""
    engines = [LmaEngine(config, T0), LmaEngine(config, T0)]
    engines[0].receive(Datagrams([Columns.of(batch)]), now)
    engines[1].receive(Datagrams(batch), now)
    out = [[(d.data, d.src, d.dst) for d in e.datagrams_to_send()] for e in engines]
    assert out[0] == out[1]
    assert engines[0].counters == engines[1].counters
    return engines


def test_a_pbu_queued_past_pbu_max_delay_is_shed_unanswered():
    config = LmaConfig(address=LMA)
    batch = [pbu(b"a", 1, T0 - 0.7), pbu(b"b", 1, T0 - 0.2), pbu(b"c", 1, None)]
    for engine in both(config, batch, T0):
        assert engine.counters.pbu_shed == {"stale": 1}
        assert engine.counters.pbu_processed == 2 and engine.bce_count == 2


def test_a_pbu_a_later_one_of_the_batch_supersedes_is_not_processed():
    config = LmaConfig(address=LMA)
    batch = [pbu(b"a", 1), pbu(b"b", 1), pbu(b"a", 2), pbu(b"a", 3, att=5)]
    for engine in both(config, batch, T0):
        assert engine.counters.pbu_shed == {"superseded": 1}
        assert engine.counters.pbu_processed == 3
    keep = LmaConfig(address=LMA, supersede_pbus=False)
    assert both(keep, batch, T0)[0].counters.pbu_processed == 4


def test_pbus_are_shed_while_the_withheld_pbas_are_at_their_bound():
    peer = IPv6Address("2001:db8:bbbb::2")
    config = LmaConfig(address=LMA, peers=(peer,), sync="before-ack", max_withheld_pbas=2)
    engine = LmaEngine(config, T0)
    engine.state.peers[peer].alive = True  # a live standby: PBAs wait for its SS-ACK
    engine.receive(Datagrams([Columns.of([pbu(b"a", 1), pbu(b"b", 1)])]), T0)
    assert engine.sync_out.at_bound()
    engine.receive(Datagrams([Columns.of([pbu(b"c", 1)])]), T0)
    assert engine.counters.pbu_shed == {"backlog": 1} and engine.bce_count == 2
    metrics = LmaMetrics()
    metrics.snapshot.pbus_shed = {"backlog": 1}
    assert 'lmaload_lma_pbus_shed_total{reason="backlog"} 1.0' in metrics.exposition()


def test_heartbeats_at_the_lmaa_are_answered_compiled_with_the_groups_restart_counter():
    peer = IPv6Address("2001:db8:bbbb::2")
    config = LmaConfig(address=LMA, lmaa=LMAA, mode="virtual", peers=(peer,), restart_counter=7)
    batch = [
        Datagram(encode_mh(Heartbeat(s), MAG, dst), MAG, dst, T0)
        for s, dst in ((1, LMAA), (2, LMA), (3, LMAA))
    ]
    engines = [LmaEngine(config, T0), LmaEngine(config, T0)]
    for engine in engines:
        engine.ownership.owns_lmaa = True
        engine.state.lmaa_restart_counter = 9
        engine.datagrams_to_send()
    engines[0].receive(Datagrams([Columns.of(batch)]), T0)
    engines[1].receive(Datagrams(batch), T0)
    out = [[(d.data, d.src, d.dst) for d in e.datagrams_to_send()] for e in engines]
    assert out[0] == out[1] and len(out[0]) == 3
    counters = [decode_mh(d).message.options[0].counter for d, _, _ in out[0]]
    assert counters == [9, 7, 9]
    assert engines[0].counters.heartbeat_requests_answered == 3
