"""Every vector of spec/vectors.json, built from field values, must encode to the vector's octets
and decode back to the same values (spec-digest §13)."""

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

import pytest

from lmaload.pcap import find_mobility, read_packets
from lmaload.wire import (
    AccessTechnologyType,
    BindingAck,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeAgentControl,
    HomeAgentHello,
    HomeAgentSwitch,
    HomeNetworkPrefix,
    IPv4CareOfAddress,
    IPv4HomeAddressRequest,
    LmaFailureIndication,
    Message,
    MobileNodeIdentifier,
    ProxyBindingCacheInformation,
    RestartCounter,
    StateSync,
    Timestamp,
    decode_ipv6_mh,
    decode_mh,
    encode_ipv6_mh,
    encode_mh,
)
from lmaload.wire import codepoints as cp
from tests.vectors import VECTORS, VECTORS_PCAP, vector_addresses, vector_config, vector_named

MAG = IPv6Address("2001:db8:aaaa::1")
LMA1 = IPv6Address("2001:db8:bbbb::1")
LMA2 = IPv6Address("2001:db8:cccc::1")
HNP = HomeNetworkPrefix(IPv6Address("2001:db8:1::"), 64)
MNID = MobileNodeIdentifier(b"mn1@example.com")
TS = Timestamp.from_unix(1251158400.5)  # 2009-08-25T00:00:00.5Z
HI1, HI5 = HandoffIndicator(cp.HI_ATTACH_NEW_INTERFACE), HandoffIndicator(cp.HI_NOT_CHANGED)
ATT = AccessTechnologyType(4)
PBCI = ProxyBindingCacheInformation(0x8200, 1, 900, 7, MAG)

EXPECTED: dict[str, Message] = {
    "V1": BindingUpdate(1, 900, options=(HNP, MNID, TS, HI1, ATT)),
    "V1b": BindingUpdate(1, 900, options=(MNID, HNP, HI1, ATT, TS)),
    "V2": BindingAck(0, 1, 900, options=(HNP, MNID, TS, HI1, ATT)),
    "V3a": Heartbeat(7),
    "V3b": Heartbeat(7, cp.HB_FLAG_R, (RestartCounter(1),)),
    "V4": HomeAgentHello(1, 100, 1800, 1, 1, cp.HELLO_FLAG_A),
    "V5": StateSync(cp.SS_REPLY, 0x1234, cp.SS_FLAG_A, (PBCI, MNID, HNP, TS, ATT)),
    "V5b": StateSync(
        cp.SS_REPLY, 0x1235, cp.SS_FLAG_A, (replace(PBCI, nested=True), MNID, HNP, TS, ATT)
    ),
    "V6": BindingUpdate(
        2,
        900,
        options=(
            HNP,
            MNID,
            Timestamp.from_unix(1251158460.5),
            HI5,
            ATT,
            LmaFailureIndication(LMA1, IPv4Address("192.0.2.1")),
        ),
    ),
    "V7": HomeAgentControl(cp.HAC_SWITCHOVER_REQUEST, 0, MAG),
    "V7b": HomeAgentControl(cp.HAC_SWITCHOVER_REQUEST, 0, MAG),
    "V8": HomeAgentControl(cp.HAC_SWITCHOVER_REPLY, 0, MAG),
    "V9": HomeAgentControl(cp.HAC_SWITCH_COMPLETE, 0, MAG),
    "V10": HomeAgentSwitch((LMA2,), options=(LmaFailureIndication(LMA1),)),
    "V11": BindingUpdate(
        3,
        900,
        options=(
            HNP,
            MNID,
            TS,
            HI1,
            ATT,
            IPv4CareOfAddress(IPv4Address("192.0.2.10")),
            IPv4HomeAddressRequest(IPv4Address("0.0.0.0"), 0),
        ),
    ),
}


def _short(vector: dict) -> str:
    return vector["name"].split()[0]


@pytest.fixture(params=VECTORS, ids=_short)
def vector(request: pytest.FixtureRequest) -> dict:
    return request.param


def test_every_vector_has_an_expected_message() -> None:
    assert {_short(v) for v in VECTORS} == set(EXPECTED)


def test_encode_reproduces_vector(vector: dict) -> None:
    src, dst = vector_addresses(vector)
    encoded = encode_mh(EXPECTED[_short(vector)], src, dst, vector_config(vector))
    assert encoded.hex() == vector["hex"]
    assert len(encoded) == vector["len"]
    assert encoded[1] == vector["hdrlen"]
    assert encoded[2] == vector["mhtype"]
    assert int.from_bytes(encoded[4:6], "big") == int(vector["checksum"], 16)


def test_decode_gives_vector_values(vector: dict) -> None:
    src, dst = vector_addresses(vector)
    decoded = decode_mh(bytes.fromhex(vector["hex"]), src, dst, vector_config(vector))
    assert decoded.message == EXPECTED[_short(vector)]
    assert decoded.checksum_ok is True
    assert decoded.length == vector["len"]
    assert decoded.checksum == int(vector["checksum"], 16)


def test_checksum_detects_wrong_addresses(vector: dict) -> None:
    src, dst = vector_addresses(vector)
    decoded = decode_mh(bytes.fromhex(vector["hex"]), dst, src, vector_config(vector))
    # Swapping source and destination leaves the one's-complement sum unchanged, so use another.
    other = decode_mh(bytes.fromhex(vector["hex"]), src, IPv6Address("::1"), vector_config(vector))
    assert decoded.checksum_ok is True
    assert other.checksum_ok is False


def test_nested_pbci_is_the_same_session_as_flat() -> None:
    flat = decode_mh(bytes.fromhex(vector_named("V5")["hex"])).message
    nested = decode_mh(bytes.fromhex(vector_named("V5b")["hex"])).message
    assert isinstance(flat, StateSync) and isinstance(nested, StateSync)
    assert nested.sessions() == flat.sessions()
    (pbci, mn_options), *_ = nested.sessions()
    assert pbci.nested and not flat.sessions()[0][0].nested
    assert mn_options == (MNID, HNP, TS, ATT)
    assert (nested.identifier, flat.identifier) == (0x1235, 0x1234)


def test_timestamp_is_unix_48_16() -> None:
    assert TS.value == 0x00004A9329808000
    assert TS.seconds == 1251158400.5


def test_vectors_pcap_frames_match_our_ipv6_encoding() -> None:
    """Each frame of spec/vectors.pcap carries exactly the IPv6 packet (or, for V11, the UDP/5436
    payload) that encode_ipv6_mh produces for the vector."""
    frames = [find_mobility(p) for p in read_packets(VECTORS_PCAP)]
    assert len(frames) == len(VECTORS)
    for frame, vector in zip(frames, VECTORS, strict=True):
        assert frame is not None
        src, dst = vector_addresses(vector)
        config = vector_config(vector)
        packet = encode_ipv6_mh(EXPECTED[_short(vector)], src, dst, config)
        if vector["udp4"]:
            assert frame.transport == "udp"
            assert str(frame.src) == vector["udp4"]["src"]
            assert (frame.sport, frame.dport) == (vector["udp4"]["sport"], vector["udp4"]["dport"])
            assert frame.payload == packet
            decoded = decode_ipv6_mh(frame.payload, config)
            assert (decoded.src, decoded.dst) == (src, dst)
            assert decoded.mh.checksum_ok
        else:
            assert frame.transport == "ipv6"
            assert (frame.src, frame.dst) == (src, dst)
            assert frame.payload == packet[40:]
