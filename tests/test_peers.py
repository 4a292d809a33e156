"""The MAG side against replies nobody here wrote: the frames of ../shared/peers/*.pcap (OPMIP's and
OAI's LMAs answering hand-made PBUs and Heartbeats), decoded through ``MagEngine.receive`` with
each session set up to await the PBA, and every outcome checked against the frame descriptions
of ../shared/peers/README.md, on both MAG paths."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from lmaload.pcap import find_mobility, read_packets
from lmaload.population import PopulationSpec, generate
from lmaload.population import SessionState as S
from lmaload.protocol.datagrams import Datagram, Datagrams
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_config import MagConfig

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"  # beside the clone, as in CI
MAG1, LMA, MAG2 = (IPv6Address(f"fd00:5213::{i}") for i in (1, 2, 3))
NOW = 1_000.0


def frames(name: str) -> dict[int, Datagram]:
    """The Mobility Headers of capture ``name`` by tshark's frame number."""
    out = {}
    for packet in read_packets(PEERS / name):
        found = find_mobility(packet)
        if found is not None:
            out[packet.number] = Datagram(found.payload, found.src, found.dst)  # type: ignore[arg-type]
    return out


def engine(compiled: bool, **config) -> MagEngine:
    """MNs mn0..mn9@example.com on the capture's MAGs (rows 0 and 1), registering with its LMA;
    nothing sent yet."""
    pop = generate(PopulationSpec(mns=10, mags=2, mag_prefix6="fd00:5213::/64"))
    pop.mags["addr6"][1] = list(MAG2.packed)
    pop.mns["mag"] = 0
    return MagEngine(pop, MagConfig(lmaa=LMA, **config), NOW, compiled=compiled)


def awaiting(mag: MagEngine, mn: int, seq: int, state: int = S.REGISTERING) -> None:
    """Session ``mn`` has just sent PBU ``seq`` to the LMA and awaits its PBA."""
    mns = mag.pop.mns
    mns["state"][mn], mns["seq"][mn], mns["retries"][mn], mns["lma"][mn] = state, seq, 0, 0
    mns["t_send"][mn] = round(NOW * 1e9)


def deliver(mag: MagEngine, *datagrams: Datagram) -> None:
    mag.receive(Datagrams(datagrams), NOW + 0.01)


@pytest.fixture(params=[True, False], ids=["compiled", "reference"])
def compiled(request: pytest.FixtureRequest) -> Iterator[bool]:
    yield request.param


def test_opmip_replies(compiled: bool) -> None:
    f = frames("opmip-capture.pcap")
    mag = engine(compiled)
    mns = mag.pop.mns

    awaiting(mag, 1, 1)  # frames 3 → 6: registered, though the HNP is still ::/0
    deliver(mag, f[6])
    assert mns["state"][1] == S.REGISTERED and mns["lifetime"][1] == 75
    assert mag.pop.prefix(1) == (IPv6Address("::"), 0)

    awaiting(mag, 1, 2, S.REFRESHING)  # 8 → 9: re-registration
    deliver(mag, f[9])
    assert mns["state"][1] == S.REGISTERED

    awaiting(mag, 1, 2, S.REFRESHING)  # 10 → 11: 135 out of window, seq 2: go on from 2
    deliver(mag, f[11])
    assert mag.counters.pba_status[135] == 1 and mag.counters.quirks["sequence_resync"] == 1
    assert mns["state"][1] == S.REFRESHING and mns["seq"][1] == 3
    [pbu] = list(mag.datagrams_to_send())
    assert pbu.data[6:8] == (3).to_bytes(2, "big")

    awaiting(mag, 9, 1)  # 12 → 13: an MN this population does not have (nobody@): ignored
    before = mns.copy()
    deliver(mag, f[13])
    assert (mns == before).all() and mag.counters.pba_ignored == 1

    deliver(mag, f[19])  # 18 → 19: mn9 provisioned for another LMA: 153 ends it
    assert mns["state"][9] == S.FAILED and mag.counters.failed[153] == 1

    awaiting(mag, 1, 10)  # 20 → 21: hand-off to the second MAG, seq 10
    deliver(mag, f[21])
    assert mns["state"][1] == S.REGISTERED

    awaiting(mag, 1, 3, S.DEREGISTERING)  # 28 → 29: de-registration answered, lifetime 0
    deliver(mag, f[29])
    assert mns["state"][1] == S.IDLE
    assert not any(k.startswith("malformed") for k in mag.counters.quirks)
    assert mag.counters.pba_status[0] == 4
    assert mag.counters.quirks["hnp_all_zero"] == 3  # frames 6, 9, 21 echo ::/0


def test_opmip_heartbeat_capture_replies(compiled: bool) -> None:
    f = frames("opmip-hb-kills-receivers.pcap")
    mag = engine(compiled)
    for mn, seq, frame in ((1, 1, 4), (1, 10, 6), (2, 2, 8), (1, 2, 15)):
        awaiting(mag, mn, seq)
        deliver(mag, f[frame])
        assert mag.pop.mns["state"][mn] == S.REGISTERED, frame
    assert mag.pop.prefix(2) == (IPv6Address("fd00:aaaa:2::"), 64)


def test_oai_malformed_pbas_are_counted_and_dropped(compiled: bool) -> None:
    f = frames("oai-capture.pcap")
    mag = engine(compiled)
    mns = mag.pop.mns
    for seq, frame in ((1, 4), (2, 6), (3, 8)):
        awaiting(mag, 1, seq)
        deliver(mag, f[frame])
        assert mns["state"][1] == S.REGISTERING  # neither kept nor lost: still awaiting
    awaiting(mag, 1, 4, S.DEREGISTERING)
    deliver(mag, f[13])
    assert mns["state"][1] == S.DEREGISTERING
    c = mag.counters
    assert c.quirks["malformed_header_length"] == 4
    assert c.pba_received == c.pba_ignored == 4 and not c.pba_status

    # The same PBA with its length fixed up: the Timestamp still runs past the end.
    data = f[4].data[:128]
    deliver(mag, f[4]._replace(data=data))
    assert c.quirks["malformed_option_overrun"] == 1
    # A well-formed PBA without the P flag (OPMIP's frame 6 with P cleared) is dropped too.
    ack = frames("opmip-capture.pcap")[6]
    awaiting(mag, 1, 1)
    deliver(mag, ack._replace(data=ack.data[:7] + bytes([ack.data[7] & ~0x20]) + ack.data[8:]))
    assert c.quirks["malformed_p_flag_unset"] == 1 and mns["state"][1] == S.REGISTERING


def test_oai_binding_error_to_a_heartbeat(compiled: bool) -> None:
    f = frames("oai-capture.pcap")
    mag = engine(compiled)
    deliver(mag, f[11])  # 10 → 11: Binding Error status 2 to the Heartbeat
    assert mag.counters.quirks["binding_error_2"] == 1
    assert mag.counters.quirks["heartbeats_unsupported"] == 1
    assert [e.kind for e in mag.pop_events()] == ["heartbeats_unsupported"]
    deliver(mag, f[11])
    assert mag.counters.quirks["heartbeats_unsupported"] == 2 and not mag.pop_events()
