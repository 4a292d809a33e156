"""Tests for lmaload.pcap: capture reading and writing, packet builders, MH dissection."""

import pickle
import random
import shutil
import struct
import subprocess
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from lmaload.capture import Capture, merge
from lmaload.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    PMIP_UDP_PORT,
    MobilityPayload,
    Packet,
    PcapError,
    ethernet_frame,
    find_mobility,
    ipv4_packet,
    ipv6_packet,
    read_packets,
    udp_datagram,
    write_pcap,
)

MN6, LMA6 = "2001:db8::10", "2001:db8::1"
MAG4, LMA4 = "192.0.2.10", "192.0.2.1"
# A Binding Refresh Request: payload proto 59, header length 0, type 0, checksum left zero.
MH = bytes([59, 0, 0, 0, 0, 0, 0, 0])
T0 = 1_700_000_000.123456


def ones_sum(data: bytes) -> int:
    """Folded 16-bit one's complement sum, written independently of the module under test."""
    data += bytes(len(data) % 2)
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def mh6() -> bytes:
    return ipv6_packet(MN6, LMA6, 135, MH)


def udp4(sport: int = PMIP_UDP_PORT, dport: int = PMIP_UDP_PORT, payload: bytes = MH) -> bytes:
    return ipv4_packet(MAG4, LMA4, 17, udp_datagram(MAG4, LMA4, sport, dport, payload))


def udp6(sport: int = PMIP_UDP_PORT, dport: int = PMIP_UDP_PORT, payload: bytes = MH) -> bytes:
    return ipv6_packet(MN6, LMA6, 17, udp_datagram(MN6, LMA6, sport, dport, payload))


def frame(data: bytes, linktype: int = LINKTYPE_ETHERNET) -> Packet:
    return Packet(1, 0.0, linktype, data)


def ext_header(next_header: int, length_units: int = 0) -> bytes:
    """A zero-filled IPv6 hop-by-hop, routing or destination options header."""
    return bytes([next_header, length_units]) + bytes(6 + 8 * length_units)


def fragment_header(next_header: int, offset_units: int, more: bool) -> bytes:
    return struct.pack("!BxHI", next_header, offset_units << 3 | more, 0x1234)


# --- builders and write/read round trips ------------------------------------------------------


@pytest.mark.parametrize(
    ("linktype", "data"),
    [
        (LINKTYPE_RAW, mh6()),
        (LINKTYPE_RAW, udp4()),
        (LINKTYPE_RAW, udp6()),
        (LINKTYPE_IPV6, mh6()),
        (LINKTYPE_ETHERNET, ethernet_frame(udp4(payload=b"odd"))),
        (LINKTYPE_ETHERNET, ethernet_frame(udp6(payload=b"odd"))),
        (LINKTYPE_ETHERNET, ethernet_frame(mh6())),
    ],
)
def test_round_trip(tmp_path: Path, linktype: int, data: bytes) -> None:
    path = tmp_path / "rt.pcap"
    write_pcap(path, [(T0, data), (T0 + 1.5, data[:20])], linktype)
    packets = list(read_packets(path))
    assert packets == [
        Packet(1, T0, linktype, data),
        Packet(2, T0 + 1.5, linktype, data[:20]),
    ]
    assert find_mobility(packets[0]) is not None


def test_write_pcap_header_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    write_pcap(path, [], LINKTYPE_LINUX_SLL2)
    raw = path.read_bytes()
    assert raw == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_LINUX_SLL2)
    assert list(read_packets(path)) == []


def test_write_pcap_rejects_frames_over_snaplen(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="snaplen"):
        write_pcap(tmp_path / "big.pcap", [(0.0, bytes(65536))])


def test_ipv4_header_matches_known_checksum() -> None:
    # The textbook header 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
    packet = ipv4_packet("192.168.0.1", "192.168.0.199", 17, bytes(0x73 - 20))
    assert packet[:20].hex() == "45000073000040004011b861c0a80001c0a800c7"
    assert ones_sum(packet[:20]) == 0xFFFF


def test_ipv6_header_fields() -> None:
    packet = ipv6_packet(IPv6Address(MN6), LMA6, 135, MH, hop_limit=255)
    assert packet[0] >> 4 == 6
    assert struct.unpack("!HBB", packet[4:8]) == (len(MH), 135, 255)
    assert packet[8:24] == IPv6Address(MN6).packed
    assert packet[24:40] == IPv6Address(LMA6).packed
    assert packet[40:] == MH


@pytest.mark.parametrize(("src", "dst"), [(MAG4, LMA4), (MN6, LMA6)])
@pytest.mark.parametrize("payload", [b"", b"x", MH, bytes(range(256)) * 3])
def test_udp_checksum_verifies(src: str, dst: str, payload: bytes) -> None:
    datagram = udp_datagram(src, dst, 1234, PMIP_UDP_PORT, payload)
    assert struct.unpack("!HHH", datagram[:6]) == (1234, PMIP_UDP_PORT, 8 + len(payload))
    assert datagram[8:] == payload
    length = len(datagram)
    if ":" in src:
        pseudo = IPv6Address(src).packed + IPv6Address(dst).packed
        pseudo += struct.pack("!I3xB", length, 17)
    else:
        pseudo = IPv4Address(src).packed + IPv4Address(dst).packed
        pseudo += struct.pack("!xBH", 17, length)
    assert ones_sum(pseudo + datagram) == 0xFFFF


@pytest.mark.parametrize(("src", "dst"), [(MAG4, LMA4), (MN6, LMA6)])
def test_udp_zero_checksum_is_sent_as_ffff(src: str, dst: str) -> None:
    # With a two-byte payload w the one's complement sum is S + w, so w = ~S makes it 0xFFFF and
    # the computed checksum 0; the checksum of the zero-payload datagram is exactly ~S.
    probe = udp_datagram(src, dst, 1, 2, b"\x00\x00")
    datagram = udp_datagram(src, dst, 1, 2, probe[6:8])
    assert datagram[6:8] == b"\xff\xff"


def test_builders_reject_wrong_families() -> None:
    with pytest.raises(ValueError):
        udp_datagram(MAG4, LMA6, 1, 2, b"")
    with pytest.raises(ValueError):
        ipv6_packet(MAG4, LMA6, 135, MH)
    with pytest.raises(ValueError):
        ipv4_packet(IPv4Address(MAG4), MN6, 17, b"")
    with pytest.raises(ValueError):
        ethernet_frame(b"")
    with pytest.raises(ValueError):
        ethernet_frame(b"\x50" + bytes(39))


def test_ethernet_frame_layout() -> None:
    assert ethernet_frame(mh6())[:14] == bytes(12) + b"\x86\xdd"
    assert ethernet_frame(udp4())[:14] == bytes(12) + b"\x08\x00"


# --- classic pcap variants ----------------------------------------------------------------------


def classic_pcap(
    order: str, magic: int, linktype: int, records: list[tuple[int, int, bytes]]
) -> bytes:
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)
    for seconds, fraction, data in records:
        out += struct.pack(order + "IIII", seconds, fraction, len(data), len(data) + 4) + data
    return out


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(("magic", "ticks"), [(0xA1B2C3D4, 10**6), (0xA1B23C4D, 10**9)])
def test_classic_pcap_byte_orders_and_resolutions(
    tmp_path: Path, order: str, magic: int, ticks: int
) -> None:
    path = tmp_path / "c.pcap"
    frames = [ethernet_frame(udp4()), ethernet_frame(mh6())]
    path.write_bytes(
        classic_pcap(
            order, magic, LINKTYPE_ETHERNET, [(1_700_000_000, 999, frames[0]), (5, 1, frames[1])]
        )
    )
    packets = list(read_packets(path))
    assert [p.number for p in packets] == [1, 2]
    assert packets[0].time == (1_700_000_000 * ticks + 999) / ticks
    assert packets[1].time == (5 * ticks + 1) / ticks
    assert [p.data for p in packets] == frames
    assert {p.linktype for p in packets} == {LINKTYPE_ETHERNET}
    assert find_mobility(packets[1]) is not None


def test_classic_pcap_linktype_ignores_fcs_flag_bits(tmp_path: Path) -> None:
    path = tmp_path / "fcs.pcap"
    path.write_bytes(classic_pcap("<", 0xA1B2C3D4, 0x1000_0000 | LINKTYPE_ETHERNET, [(1, 0, b"x")]))
    assert next(read_packets(path)).linktype == LINKTYPE_ETHERNET


# --- pcapng -------------------------------------------------------------------------------------


def pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def block(order: str, block_type: int, body: bytes) -> bytes:
    body = pad4(body)
    return (
        struct.pack(order + "II", block_type, 12 + len(body))
        + body
        + struct.pack(order + "I", 12 + len(body))
    )


def shb(order: str) -> bytes:
    options = struct.pack(order + "HH", 4, 5) + pad4(b"tests") + bytes(4)  # shb_userappl
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1) + options)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + pad4(value)


def idb(order: str, linktype: int, snaplen: int = 0, options: bytes = b"") -> bytes:
    if options:
        options += bytes(4)  # opt_endofopt
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + options)


def epb(order: str, interface: int, ticks: int, data: bytes) -> bytes:
    head = struct.pack(
        order + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return block(order, 6, head + data)


def spb(order: str, data: bytes, original_length: int | None = None) -> bytes:
    return block(order, 3, struct.pack(order + "I", original_length or len(data)) + data)


def pcapng_file(first: str, second: str) -> tuple[bytes, list[tuple[float, int, bytes]]]:
    """A two-section file in the given byte orders and the (time, linktype, data) it holds."""
    eth, raw6, raw4 = ethernet_frame(udp6()), mh6(), udp4()
    ns = 1_700_000_000_123_456_789
    data = (
        shb(first)
        + idb(first, LINKTYPE_ETHERNET, options=option(first, 2, b"eth0"))
        + idb(first, LINKTYPE_IPV6, snaplen=40 + len(MH), options=option(first, 9, b"\x09"))
        + epb(first, 0, 1_700_000_000_000_001, eth)
        + block(first, 4, b"\x00\x00\x00\x00")  # a Name Resolution Block, skipped
        + epb(first, 1, ns, raw6)
        + spb(first, raw6 + b"junk", original_length=len(raw6) + 4)  # interface 0 has no snaplen
        + shb(second)
        + idb(
            second,
            LINKTYPE_RAW,
            options=option(second, 9, b"\x8a") + option(second, 14, struct.pack(second + "q", 100)),
        )
        + block(second, 0x0BAD, b"custom")
        + epb(second, 0, 3 * 1024 + 512, raw4)
    )
    expected = [
        (1_700_000_000.000001, LINKTYPE_ETHERNET, eth),
        (ns / 10**9, LINKTYPE_IPV6, raw6),
        (0.0, LINKTYPE_ETHERNET, raw6 + b"junk"),
        (100 + 3.5, LINKTYPE_RAW, raw4),
    ]
    return data, expected


@pytest.mark.parametrize(("first", "second"), [("<", ">"), (">", "<")])
def test_pcapng_sections_interfaces_and_blocks(tmp_path: Path, first: str, second: str) -> None:
    data, expected = pcapng_file(first, second)
    path = tmp_path / "f.pcapng"
    path.write_bytes(data)
    packets = list(read_packets(path))
    assert [(p.time, p.linktype, p.data) for p in packets] == expected
    assert [p.number for p in packets] == [1, 2, 3, 4]
    found = [find_mobility(p) for p in packets]
    assert [m.transport if m else None for m in found] == ["udp", "ipv6", None, "udp"]


def test_pcapng_simple_packet_block_respects_snaplen(tmp_path: Path) -> None:
    order = "<"
    path = tmp_path / "spb.pcapng"
    path.write_bytes(
        shb(order) + idb(order, LINKTYPE_RAW, snaplen=10) + spb(order, bytes(range(20)))
    )
    assert [p.data for p in read_packets(path)] == [bytes(range(10))]


# --- damaged files ------------------------------------------------------------------------------


def read_error(tmp_path: Path, data: bytes) -> PcapError:
    path = tmp_path / "bad"
    path.write_bytes(data)
    with pytest.raises(PcapError) as info:
        list(read_packets(path))
    return info.value


def test_pcap_error_is_value_error_and_pickles() -> None:
    error = PcapError(24, "truncated packet record")
    assert isinstance(error, ValueError)
    assert str(error) == "offset 24: truncated packet record"
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.offset, clone.reason, str(clone)) == (24, "truncated packet record", str(error))


def test_bad_files_name_the_offset(tmp_path: Path) -> None:
    good = classic_pcap("<", 0xA1B2C3D4, LINKTYPE_RAW, [(1, 0, mh6()), (2, 0, mh6())])
    second = 24 + 16 + len(mh6())
    cases = [
        (b"", "offset 0: not a pcap or pcapng file (empty file)"),
        (b"GIF89a" + bytes(40), "offset 0: not a pcap or pcapng file (47494638)"),
        (good[:10], "offset 0: truncated file header"),
        (good[:30], "offset 24: truncated packet record header"),
        (good[:50], "offset 24: truncated packet record"),
        (good[:-1], f"offset {second}: truncated packet record"),
        (good[:4] + b"\x01\x00" + good[6:], "offset 4: unsupported pcap version 1.4"),
    ]
    for data, message in cases:
        assert str(read_error(tmp_path, data)) == message


def test_bad_pcapng_files_name_the_offset(tmp_path: Path) -> None:
    o = "<"
    head = shb(o) + idb(o, LINKTYPE_RAW)
    n = len(head)
    packet = epb(o, 0, 0, mh6())
    bad_trailer = packet[:-4] + struct.pack(o + "I", len(packet) + 4)
    wrong_version = shb(o)[:12] + struct.pack(o + "H", 2) + shb(o)[14:]
    cases = [
        (head + packet[:-1], f"offset {n}: truncated block"),
        (head + packet[:6], f"offset {n}: truncated block header"),
        (head + packet[:2], f"offset {n}: truncated block header"),
        (head + bad_trailer, f"offset {n}: block trailing length differs from leading length"),
        (head + struct.pack(o + "II", 6, 14) + bytes(6), f"offset {n}: bad block length 14"),
        (head + epb(o, 1, 0, mh6()), f"offset {n}: packet on undefined interface 1"),
        (head + block(o, 6, bytes(16)), f"offset {n}: enhanced packet block too short"),
        (
            shb(o) + spb(o, mh6()),
            f"offset {len(shb(o))}: simple packet block before any interface description",
        ),
        (shb(o)[:8] + b"\x01\x02\x03\x04" + shb(o)[12:], "offset 8: bad byte-order magic 01020304"),
        (wrong_version, "offset 0: unsupported pcapng version 2.0"),
        (shb(o)[:10], "offset 0: truncated section header block"),
        (
            head + block(o, 1, struct.pack(o + "HHIHH", 1, 0, 0, 9, 200)),
            f"offset {n}: option 9 overruns interface description block",
        ),
    ]
    for data, message in cases:
        assert str(read_error(tmp_path, data)) == message


def test_packets_before_damage_are_yielded(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    write_pcap(path, [(1.0, mh6()), (2.0, mh6())], LINKTYPE_RAW)
    path.write_bytes(path.read_bytes()[:-3])
    packets = read_packets(path)
    assert next(packets).number == 1
    with pytest.raises(PcapError, match="truncated packet record"):
        next(packets)


# --- dissection ---------------------------------------------------------------------------------


def test_mh_over_ipv6_in_every_ipv6_link_type() -> None:
    expected = MobilityPayload(IPv6Address(MN6), IPv6Address(LMA6), "ipv6", None, None, MH)
    assert find_mobility(frame(mh6(), LINKTYPE_RAW)) == expected
    assert find_mobility(frame(mh6(), LINKTYPE_IPV6)) == expected
    assert find_mobility(frame(ethernet_frame(mh6()))) == expected
    # Ethernet minimum-size padding after the packet is not part of the Mobility Header.
    assert find_mobility(frame(ethernet_frame(mh6()) + bytes(30))) == expected


def test_mh_behind_ipv6_extension_headers() -> None:
    # Hop-by-hop, routing, atomic fragment (RFC 6946: no reassembly needed), destination options.
    chain = ext_header(43, 1) + ext_header(44) + fragment_header(60, 0, False) + ext_header(135, 2)
    packet = ipv6_packet(MN6, LMA6, 0, chain + MH)
    found = find_mobility(frame(packet, LINKTYPE_RAW))
    assert found is not None
    assert (found.transport, found.payload) == ("ipv6", MH)


@pytest.mark.parametrize(("offset_units", "more"), [(0, True), (1, True), (185, False)])
def test_ipv6_fragments_are_skipped(offset_units: int, more: bool) -> None:
    packet = ipv6_packet(MN6, LMA6, 44, fragment_header(135, offset_units, more) + MH)
    assert find_mobility(frame(packet, LINKTYPE_RAW)) is None


@pytest.mark.parametrize(("make", "src", "dst"), [(udp4, MAG4, LMA4), (udp6, MN6, LMA6)])
@pytest.mark.parametrize(("sport", "dport"), [(5436, 5436), (40000, 5436), (5436, 40000)])
def test_udp_encapsulated_mh(
    make: Callable[[int, int, bytes], bytes], src: str, dst: str, sport: int, dport: int
) -> None:
    found = find_mobility(frame(ethernet_frame(make(sport, dport, MH + b"\x01"))))
    expected = MobilityPayload(ip_address(src), ip_address(dst), "udp", sport, dport, MH + b"\x01")
    assert found == expected


def test_udp_payload_is_bounded_by_udp_length() -> None:
    datagram = udp_datagram(MAG4, LMA4, 5436, 5436, MH)
    packet = ipv4_packet(MAG4, LMA4, 17, datagram + b"trailer")
    found = find_mobility(frame(packet, LINKTYPE_IPV4))
    assert found is not None
    assert found.payload == MH


def test_ipv4_with_options() -> None:
    plain = udp4()
    options = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    packet = (
        bytes([0x46])
        + plain[1:2]
        + struct.pack("!H", len(plain) + 4)
        + plain[4:20]
        + options
        + plain[20:]
    )
    found = find_mobility(frame(packet, LINKTYPE_RAW))
    assert found is not None
    assert found.payload == MH


@pytest.mark.parametrize("tags", [[0x8100], [0x88A8, 0x8100], [0x8100, 0x8100]])
def test_vlan_tagged_ethernet(tags: list[int]) -> None:
    vlan = b"".join(struct.pack("!HH", tpid, 100 + i) for i, tpid in enumerate(tags))
    for ip, ethertype in ((mh6(), 0x86DD), (udp4(), 0x0800)):
        data = bytes(12) + vlan + struct.pack("!H", ethertype) + ip
        assert find_mobility(frame(data)) is not None


def test_three_vlan_tags_are_not_dissected() -> None:
    data = bytes(12) + struct.pack("!HH", 0x8100, 1) * 3 + b"\x86\xdd" + mh6()
    assert find_mobility(frame(data)) is None


@pytest.mark.parametrize(("ip", "ethertype"), [(mh6(), 0x86DD), (udp4(), 0x0800)])
def test_linux_cooked_captures(ip: bytes, ethertype: int) -> None:
    sll = struct.pack("!HHH8sH", 0, 1, 6, bytes(8), ethertype)
    sll2 = struct.pack("!HHIHBB8s", ethertype, 0, 3, 1, 4, 6, bytes(8))
    assert len(sll) == 16 and len(sll2) == 20
    assert find_mobility(frame(sll + ip, LINKTYPE_LINUX_SLL)) is not None
    assert find_mobility(frame(sll2 + ip, LINKTYPE_LINUX_SLL2)) is not None
    assert find_mobility(frame(sll[:14] + b"\x08\x06" + ip, LINKTYPE_LINUX_SLL)) is None


@pytest.mark.parametrize("linktype", [LINKTYPE_NULL, LINKTYPE_LOOP])
@pytest.mark.parametrize("order", ["<", ">"])
def test_null_and_loop_address_families(linktype: int, order: str) -> None:
    for family in (10, 24, 28, 30):
        found = find_mobility(frame(struct.pack(order + "I", family) + mh6(), linktype))
        assert found is not None
        assert found.transport == "ipv6"
    found = find_mobility(frame(struct.pack(order + "I", 2) + udp4(), linktype))
    assert found is not None
    assert found.transport == "udp"
    assert find_mobility(frame(struct.pack(order + "I", 2) + mh6(), linktype)) is None
    assert find_mobility(frame(struct.pack(order + "I", 7) + mh6(), linktype)) is None


ARP = bytes(12) + b"\x08\x06" + bytes.fromhex("0001080006040001") + bytes(20)


@pytest.mark.parametrize(
    "packet",
    [
        frame(b""),
        frame(b"\x00"),
        frame(ARP),
        frame(ethernet_frame(ipv6_packet(MN6, LMA6, 58, b"\x80\x00\x00\x00\x00\x01\x00\x01"))),
        frame(ethernet_frame(udp4(40000, 53))),
        frame(ethernet_frame(udp6(5435, 5437))),
        frame(ipv4_packet(MAG4, LMA4, 6, struct.pack("!HH", 5436, 5436) + bytes(16)), LINKTYPE_RAW),
        frame(mh6()[:-1], LINKTYPE_RAW),  # payload length overruns the capture
        frame(udp4()[:-1], LINKTYPE_RAW),  # total length overruns the capture
        frame(ipv6_packet(MN6, LMA6, 0, ext_header(135, 3)[:16]), LINKTYPE_RAW),  # overrun
        frame(ipv6_packet(MN6, LMA6, 0, b"\x87\x00"), LINKTYPE_RAW),  # header shorter than 8
        frame(udp4()[:6] + b"\x20\x00" + udp4()[8:], LINKTYPE_RAW),  # IPv4 More Fragments
        frame(udp4()[:6] + b"\x00\x10" + udp4()[8:], LINKTYPE_RAW),  # IPv4 fragment offset
        frame(b"\x44" + udp4()[1:], LINKTYPE_RAW),  # IHL below 5
        frame(udp4()[:24] + b"\x00\x07" + udp4()[26:], LINKTYPE_RAW),  # UDP length below 8
        frame(mh6(), LINKTYPE_IPV4),
        frame(udp4(), LINKTYPE_IPV6),
        frame(bytes(12) + b"\x86\xdd" + udp4()),  # ethertype disagrees with the IP version
        frame(b"\x70" + mh6()[1:], LINKTYPE_RAW),
        frame(mh6(), 147),  # a user link type
    ],
)
def test_frames_without_mh(packet: Packet) -> None:
    assert find_mobility(packet) is None


def test_fuzzed_frames_never_raise() -> None:
    rng = random.Random(0x5436)
    seeds = [
        (LINKTYPE_ETHERNET, ethernet_frame(udp4())),
        (LINKTYPE_ETHERNET, ethernet_frame(udp6())),
        (LINKTYPE_ETHERNET, bytes(12) + b"\x81\x00\x00\x01\x86\xdd" + mh6()),
        (
            LINKTYPE_RAW,
            ipv6_packet(MN6, LMA6, 0, ext_header(44) + fragment_header(135, 0, False) + MH),
        ),
        (LINKTYPE_IPV4, udp4()),
        (LINKTYPE_IPV6, mh6()),
        (LINKTYPE_LINUX_SLL, struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x86DD) + mh6()),
        (LINKTYPE_LINUX_SLL2, struct.pack("!HHIHBB8s", 0x0800, 0, 3, 1, 4, 6, bytes(8)) + udp4()),
        (LINKTYPE_NULL, struct.pack("<I", 30) + mh6()),
        (LINKTYPE_LOOP, struct.pack(">I", 2) + udp4()),
    ]
    interesting = [0, 1, 4, 6, 8, 17, 43, 44, 60, 0x45, 0x60, 0x81, 0x86, 0xDD, 135, 0xFF]
    found = 0
    for _ in range(5000):
        linktype, data = rng.choice(seeds)
        mutable = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            choice = rng.random()
            if choice < 0.4 and mutable:
                mutable[rng.randrange(len(mutable))] = rng.choice(
                    [*interesting, rng.randrange(256)]
                )
            elif choice < 0.6:
                del mutable[rng.randrange(len(mutable) + 1) :]
            elif choice < 0.8:
                at = rng.randrange(len(mutable) + 1)
                mutable[at:at] = rng.randbytes(rng.randint(1, 16))
            elif choice < 0.9:
                mutable = bytearray(rng.randbytes(rng.randint(0, 120)))
            else:
                linktype = rng.choice([0, 1, 101, 108, 113, 228, 229, 276, rng.randrange(300)])
        result = find_mobility(Packet(1, 0.0, linktype, bytes(mutable)))
        assert result is None or isinstance(result, MobilityPayload)
        found += result is not None
    assert found  # the mutations leave some frames intact enough to dissect


def test_fuzzed_files_raise_only_pcap_error(tmp_path: Path) -> None:
    rng = random.Random(2011)
    classic = classic_pcap("<", 0xA1B2C3D4, LINKTYPE_RAW, [(1, 0, mh6()), (2, 0, udp4())])
    files = [classic, pcapng_file("<", ">")[0], pcapng_file(">", "<")[0]]
    path = tmp_path / "fuzz"
    for _ in range(600):
        data = bytearray(rng.choice(files))
        for _ in range(rng.randint(1, 3)):
            if data and rng.random() < 0.7:
                data[rng.randrange(len(data))] = rng.randrange(256)
            else:
                del data[rng.randrange(len(data) + 1) :]
                data.extend(rng.randbytes(rng.randint(0, 8)))
        path.write_bytes(data)
        try:
            for packet in read_packets(path):
                find_mobility(packet)
        except PcapError:
            pass


# --- cross-check with Wireshark ------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_accepts_written_udp(tmp_path: Path) -> None:
    path = tmp_path / "udp.pcap"
    # Wireshark dissects port 5436 as a Mobility Header, so only well-formed ones go there.
    mh_padn = bytes([59, 1, 0, 0, 0, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0])
    frames = [ethernet_frame(make(payload=mh)) for make in (udp4, udp6) for mh in (MH, mh_padn)]
    for payload in (b"", b"a", b"odd-length payload", bytes(range(256)) * 4):
        frames.append(ethernet_frame(udp4(40000, 9, payload)))
        frames.append(ethernet_frame(udp6(40001, 9, payload)))
    write_pcap(path, [(T0 + i / 1000, f) for i, f in enumerate(frames)])

    def tshark(*args: str) -> list[str]:
        result = subprocess.run(
            ["tshark", "-n", "-r", str(path), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return result.stdout.splitlines()

    checks = ("-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE")
    assert tshark("-Y", "_ws.malformed") == []
    assert (
        tshark(*checks, "-Y", 'udp.checksum.status == "Bad" || ip.checksum.status == "Bad"') == []
    )
    # Guard against a vacuous pass: every datagram must have been verified as good.
    assert len(tshark(*checks, "-Y", 'udp.checksum.status == "Good"')) == len(frames)


def test_capture_keeps_a_budget_per_phase_kind_and_direction(tmp_path) -> None:
    """``lmaload.capture``: at most ``budget`` datagrams per (phase, MH type, direction), each a
    valid Ethernet/IPv4/UDP frame; a merge keeps what one host sent to the others."""
    mag, lma = (bytes([127, 1, 0, 1]), 40000), (bytes([127, 0, 0, 11]), 5436)
    pbu = bytes(42) + bytes([5]) + bytes(30)
    pba = bytes(42) + bytes([6]) + bytes(30)
    capture = Capture(tmp_path / "mag.pcap", budget=2)
    for phase in ("register", "failover"):
        capture.phase = phase
        for _ in range(5):
            capture.record(1.0, "out", mag, lma, pbu)
            capture.record(1.5, "in", lma, mag, pba)
    capture.close()
    frames = list(read_packets(tmp_path / "mag.pcap"))
    assert capture.recorded == len(frames) == 8
    found = [find_mobility(f) for f in frames]
    assert {(str(m.src), m.dport) for m in found if m is not None} == {
        ("127.1.0.1", 5436),
        ("127.0.0.11", 40000),
    }
    peer = Capture(tmp_path / "lma.pcap")
    peer.record(1.2, "out", lma, (bytes([127, 0, 0, 12]), 5436), pba)
    peer.record(1.3, "in", (bytes([127, 0, 0, 12]), 5436), lma, pba)  # the peer's copy: left out
    peer.close()
    merged = tmp_path / "all.pcap"
    assert (
        merge(
            merged,
            tmp_path / "mag.pcap",
            [(tmp_path / "lma.pcap", "127.0.0.11")],
            frozenset({"127.0.0.11", "127.0.0.12"}),
        )
        == 9
    )
    assert [p.time for p in read_packets(merged)] == sorted(p.time for p in read_packets(merged))
