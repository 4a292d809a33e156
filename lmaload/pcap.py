"""Packet captures holding Mobility Header traffic: pcap/pcapng reading, dissection, writing.

read_packets() yields the frames of a classic pcap or pcapng file, find_mobility() digs a
Mobility Header (IPv6 next header 135) or a UDP-encapsulated PMIPv6 message (port 5436,
RFC 5844) out of one frame, and PcapWriter / write_pcap() with the packet builders make captures
for tests and tools.
"""

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from os import PathLike
from typing import BinaryIO, Literal

from lmaload.wire.checksum import internet_checksum
from lmaload.wire.codepoints import IPPROTO_MH

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

PMIP_UDP_PORT = 5436

Address = str | IPv4Address | IPv6Address

_PCAP_MAGICS = {  # first four file bytes -> (byte order, timestamp ticks per second)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAP_SNAPLEN = 65535

_SHB_TYPE = b"\x0a\x0d\x0d\x0a"  # a palindrome, so it reads the same in either byte order
_SHB_BYTE_ORDERS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_IDB, _SPB, _EPB = 1, 3, 6
_OPT_ENDOFOPT, _IF_TSRESOL, _IF_TSOFFSET = 0, 9, 14

_READ_CHUNK = 1 << 20

_ETHERTYPE_VERSION = {0x0800: 4, 0x86DD: 6}
_VLAN_ETHERTYPES = {0x8100, 0x88A8}
_AF_VERSION = {2: 4, 10: 6, 24: 6, 28: 6, 30: 6}  # AF_INET; AF_INET6 on Linux, *BSD, macOS
_IPV6_EXTENSIONS = {0, 43, 60}  # hop-by-hop, routing, destination options
_IPPROTO_FRAGMENT = 44
_IPPROTO_UDP = 17


class PcapError(ValueError):
    """A capture file that is damaged, truncated or in a format this module does not read."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(offset, reason)
        self.offset = offset
        self.reason = reason

    def __str__(self) -> str:
        return f"offset {self.offset}: {self.reason}"


@dataclass(frozen=True)
class Packet:
    """One captured frame; number is 1-based across the whole file, time is Unix seconds."""

    number: int
    time: float
    linktype: int
    data: bytes


@dataclass(frozen=True)
class MobilityPayload:
    """Mobility signalling found in a frame, with the outer IP addresses it travelled between.

    transport is "ipv6" when payload is a Mobility Header carried directly by IPv6 (sport and
    dport are None) and "udp" when payload is the body of a UDP datagram to or from port 5436.
    """

    src: IPv6Address | IPv4Address
    dst: IPv6Address | IPv4Address
    transport: Literal["ipv6", "udp"]
    sport: int | None
    dport: int | None
    payload: bytes


@dataclass(frozen=True)
class _Interface:
    linktype: int
    snaplen: int
    ticks_per_second: int
    offset_seconds: int


def read_packets(path: str | PathLike[str]) -> Iterator[Packet]:
    """Yield the packets of a classic pcap or pcapng file in file order.

    PcapError is raised while iterating, at the first structural problem. Simple Packet Blocks
    carry no timestamp; their packets get time 0.0.
    """
    with open(path, "rb") as f:
        magic = f.read(4)
        if magic == _SHB_TYPE:
            yield from _read_pcapng(f)
        elif magic in _PCAP_MAGICS:
            yield from _read_pcap(f, *_PCAP_MAGICS[magic])
        else:
            found = magic.hex() if magic else "empty file"
            raise PcapError(0, f"not a pcap or pcapng file ({found})")


def _read_exact(f: BinaryIO, n: int, offset: int, what: str) -> bytes:
    # Chunked so that a garbage length field costs at most the file's size in memory instead
    # of an up-front allocation of up to 4 GiB.
    parts = []
    while n > 0:
        part = f.read(min(n, _READ_CHUNK))
        if not part:
            raise PcapError(offset, f"truncated {what}")
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _read_pcap(f: BinaryIO, order: str, ticks_per_second: int) -> Iterator[Packet]:
    header = _read_exact(f, 20, 0, "file header")
    major, minor, _, _, _, network = struct.unpack(order + "HHiIII", header)
    if major != 2:
        raise PcapError(4, f"unsupported pcap version {major}.{minor}")
    linktype = network & 0xFFFF  # the upper bits may hold FCS-length flags
    offset, number = 24, 0
    while record_header := f.read(16):
        if len(record_header) < 16:
            raise PcapError(offset, "truncated packet record header")
        seconds, fraction, caplen, _ = struct.unpack(order + "IIII", record_header)
        data = _read_exact(f, caplen, offset, "packet record")
        number += 1
        time = (seconds * ticks_per_second + fraction) / ticks_per_second
        yield Packet(number, time, linktype, data)
        offset += 16 + caplen


def _read_pcapng(f: BinaryIO) -> Iterator[Packet]:
    """Read blocks after read_packets() consumed the first Section Header Block's type."""
    offset, number = 0, 0
    order = "<"
    interfaces: list[_Interface] = []
    block_type = _SHB_TYPE
    while True:
        if block_type == _SHB_TYPE:
            head = _read_exact(f, 8, offset, "section header block")
            if head[4:] not in _SHB_BYTE_ORDERS:
                raise PcapError(offset + 8, f"bad byte-order magic {head[4:].hex()}")
            order = _SHB_BYTE_ORDERS[head[4:]]
            (length,) = struct.unpack(order + "I", head[:4])
            if length < 28 or length % 4:
                raise PcapError(offset, f"bad section header block length {length}")
            prefix = head[4:]
        else:
            (length,) = struct.unpack(order + "I", _read_exact(f, 4, offset, "block header"))
            if length < 12 or length % 4:
                raise PcapError(offset, f"bad block length {length}")
            prefix = b""
        rest = prefix + _read_exact(f, length - 8 - len(prefix), offset, "block")
        body = rest[:-4]
        if struct.unpack(order + "I", rest[-4:])[0] != length:
            raise PcapError(offset, "block trailing length differs from leading length")

        (kind,) = struct.unpack(order + "I", block_type)
        if block_type == _SHB_TYPE:
            major, minor = struct.unpack_from(order + "HH", body, 4)
            if major != 1:
                raise PcapError(offset, f"unsupported pcapng version {major}.{minor}")
            interfaces = []
        elif kind == _IDB:
            interfaces.append(_parse_interface(body, order, offset))
        elif kind == _EPB:
            number += 1
            yield _parse_enhanced_packet(body, order, offset, interfaces, number)
        elif kind == _SPB:
            number += 1
            yield _parse_simple_packet(body, order, offset, interfaces, number)

        offset += length
        block_type = f.read(4)
        if not block_type:
            return
        if len(block_type) < 4:
            raise PcapError(offset, "truncated block header")


def _parse_interface(body: bytes, order: str, offset: int) -> _Interface:
    if len(body) < 8:
        raise PcapError(offset, "interface description block too short")
    linktype, _, snaplen = struct.unpack_from(order + "HHI", body)
    ticks_per_second, offset_seconds = 1_000_000, 0
    pos = 8
    while pos + 4 <= len(body):
        code, size = struct.unpack_from(order + "HH", body, pos)
        pos += 4
        if code == _OPT_ENDOFOPT:
            break
        if pos + size > len(body):
            raise PcapError(offset, f"option {code} overruns interface description block")
        value = body[pos : pos + size]
        if code == _IF_TSRESOL and size == 1:
            exponent = value[0] & 0x7F
            ticks_per_second = 2**exponent if value[0] & 0x80 else 10**exponent
        elif code == _IF_TSOFFSET and size == 8:
            (offset_seconds,) = struct.unpack(order + "q", value)
        pos += (size + 3) & ~3
    return _Interface(linktype, snaplen, ticks_per_second, offset_seconds)


def _parse_enhanced_packet(
    body: bytes, order: str, offset: int, interfaces: list[_Interface], number: int
) -> Packet:
    if len(body) < 20:
        raise PcapError(offset, "enhanced packet block too short")
    interface_id, high, low, caplen, _ = struct.unpack_from(order + "IIIII", body)
    if interface_id >= len(interfaces):
        raise PcapError(offset, f"packet on undefined interface {interface_id}")
    if 20 + caplen > len(body):
        raise PcapError(offset, "captured length overruns enhanced packet block")
    interface = interfaces[interface_id]
    ticks = (high << 32 | low) + interface.offset_seconds * interface.ticks_per_second
    time = ticks / interface.ticks_per_second
    return Packet(number, time, interface.linktype, body[20 : 20 + caplen])


def _parse_simple_packet(
    body: bytes, order: str, offset: int, interfaces: list[_Interface], number: int
) -> Packet:
    if len(body) < 4:
        raise PcapError(offset, "simple packet block too short")
    if not interfaces:
        raise PcapError(offset, "simple packet block before any interface description")
    interface = interfaces[0]
    (original_length,) = struct.unpack_from(order + "I", body)
    # The block stores min(original length, snaplen) bytes plus padding; 0 means no snaplen.
    caplen = min(original_length, len(body) - 4)
    if interface.snaplen:
        caplen = min(caplen, interface.snaplen)
    return Packet(number, 0.0, interface.linktype, body[4 : 4 + caplen])


def find_mobility(packet: Packet) -> MobilityPayload | None:
    """The mobility signalling carried by packet, or None if it has none or cannot be dissected."""
    located = _locate_ip(packet.linktype, packet.data)
    if located is None:
        return None
    start, expected_version = located
    ip = packet.data[start:]
    if not ip:
        return None
    version = ip[0] >> 4
    if expected_version is not None and version != expected_version:
        return None
    if version == 6:
        return _from_ipv6(ip)
    if version == 4:
        return _from_ipv4(ip)
    return None


def _locate_ip(linktype: int, data: bytes) -> tuple[int, int | None] | None:
    """Where the IP header starts and which IP version the link layer announces (if any)."""
    if linktype == LINKTYPE_ETHERNET:
        pos = 12
        for _ in range(3):  # the ethertype, behind at most two VLAN tags
            if len(data) < pos + 2:
                return None
            ethertype = int.from_bytes(data[pos : pos + 2], "big")
            if ethertype not in _VLAN_ETHERTYPES:
                break
            pos += 4
        else:
            return None
        version = _ETHERTYPE_VERSION.get(ethertype)
        return None if version is None else (pos + 2, version)
    if linktype == LINKTYPE_LINUX_SLL:
        return _by_ethertype(data, 14, 16)
    if linktype == LINKTYPE_LINUX_SLL2:
        return _by_ethertype(data, 0, 20)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            return None
        # NULL is in the capturing host's byte order and LOOP should be big-endian, but
        # writers get both wrong; AF values are small, so only one reading can match.
        family = _AF_VERSION.get(int.from_bytes(data[:4], "little")) or _AF_VERSION.get(
            int.from_bytes(data[:4], "big")
        )
        return None if family is None else (4, family)
    if linktype == LINKTYPE_RAW:
        return 0, None
    if linktype == LINKTYPE_IPV4:
        return 0, 4
    if linktype == LINKTYPE_IPV6:
        return 0, 6
    return None


def _by_ethertype(data: bytes, field: int, header_length: int) -> tuple[int, int] | None:
    if len(data) < header_length:
        return None
    version = _ETHERTYPE_VERSION.get(int.from_bytes(data[field : field + 2], "big"))
    return None if version is None else (header_length, version)


def _from_ipv6(ip: bytes) -> MobilityPayload | None:
    if len(ip) < 40:
        return None
    end = 40 + int.from_bytes(ip[4:6], "big")
    if end > len(ip):
        return None
    next_header, pos = ip[6], 40
    while next_header in _IPV6_EXTENSIONS or next_header == _IPPROTO_FRAGMENT:
        if pos + 8 > end:
            return None
        if next_header == _IPPROTO_FRAGMENT:
            # Fragment offset or More-Fragments set means a piece of a datagram that would
            # need reassembly; an atomic fragment (both clear, RFC 6946) holds it whole.
            if int.from_bytes(ip[pos + 2 : pos + 4], "big") & 0xFFF9:
                return None
            length = 8
        else:
            length = (ip[pos + 1] + 1) * 8
        next_header = ip[pos]
        pos += length
        if pos > end:
            return None
    src, dst = IPv6Address(ip[8:24]), IPv6Address(ip[24:40])
    if next_header == IPPROTO_MH:
        return MobilityPayload(src, dst, "ipv6", None, None, ip[pos:end])
    if next_header == _IPPROTO_UDP:
        return _from_udp(src, dst, ip[pos:end])
    return None


def _from_ipv4(ip: bytes) -> MobilityPayload | None:
    if len(ip) < 20:
        return None
    header_length = (ip[0] & 0x0F) * 4
    total_length = int.from_bytes(ip[2:4], "big")
    if header_length < 20 or not header_length <= total_length <= len(ip):
        return None
    if int.from_bytes(ip[6:8], "big") & 0x3FFF:  # More-Fragments or a fragment offset
        return None
    if ip[9] != _IPPROTO_UDP:
        return None
    src, dst = IPv4Address(ip[12:16]), IPv4Address(ip[16:20])
    return _from_udp(src, dst, ip[header_length:total_length])


def _from_udp(
    src: IPv6Address | IPv4Address, dst: IPv6Address | IPv4Address, segment: bytes
) -> MobilityPayload | None:
    if len(segment) < 8:
        return None
    sport, dport, length = struct.unpack_from("!HHH", segment)
    if PMIP_UDP_PORT not in (sport, dport) or not 8 <= length <= len(segment):
        return None
    return MobilityPayload(src, dst, "udp", sport, dport, segment[8:length])


class PcapWriter:
    """A little-endian, microsecond classic pcap file written frame by frame; ``flush`` puts
    what was written on disk, so a process killed later leaves a readable capture."""

    def __init__(self, path: str | PathLike[str], linktype: int = LINKTYPE_ETHERNET) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 -- closed by close()
        self._file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, _PCAP_SNAPLEN, linktype))

    def write(self, time: float, data: bytes) -> None:
        """One frame captured at Unix ``time``."""
        if len(data) > _PCAP_SNAPLEN:
            raise ValueError(f"{len(data)}-byte frame exceeds snaplen {_PCAP_SNAPLEN}")
        seconds, micros = divmod(round(time * 1_000_000), 1_000_000)
        self._file.write(struct.pack("<IIII", seconds, micros, len(data), len(data)))
        self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_pcap(
    path: str | PathLike[str],
    packets: Iterable[tuple[float, bytes]],
    linktype: int = LINKTYPE_ETHERNET,
) -> None:
    """Write (Unix time, frame) pairs as a classic pcap file (``PcapWriter``)."""
    with PcapWriter(path, linktype) as writer:
        for time, data in packets:
            writer.write(time, data)


def ipv6_packet(
    src: Address, dst: Address, next_header: int, payload: bytes, hop_limit: int = 64
) -> bytes:
    """An IPv6 header (traffic class and flow label zero) followed by payload."""
    source, destination = _addresses(src, dst, 6)
    header = struct.pack("!IHBB", 6 << 28, len(payload), next_header, hop_limit)
    return header + source.packed + destination.packed + payload


def ipv4_packet(src: Address, dst: Address, protocol: int, payload: bytes, ttl: int = 64) -> bytes:
    """An option-less IPv4 header with a valid checksum followed by payload."""
    source, destination = _addresses(src, dst, 4)
    # DF with identification 0 marks an atomic datagram (RFC 6864).
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        0,
        0x4000,
        ttl,
        protocol,
        0,
        source.packed,
        destination.packed,
    )
    checksum = internet_checksum(header).to_bytes(2, "big")
    return header[:10] + checksum + header[12:] + payload


def udp_datagram(src: Address, dst: Address, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP header and payload, checksummed over the IPv4 or IPv6 pseudo-header of src/dst."""
    source, destination = ip_address(src), ip_address(dst)
    if source.version != destination.version:
        raise ValueError(f"{source} and {destination} are of different address families")
    length = 8 + len(payload)
    if source.version == 4:
        pseudo = struct.pack("!4s4sxBH", source.packed, destination.packed, _IPPROTO_UDP, length)
    else:
        pseudo = struct.pack("!16s16sI3xB", source.packed, destination.packed, length, _IPPROTO_UDP)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    # A computed 0 is sent as 0xFFFF because 0 means "no checksum" (RFC 768).
    checksum = internet_checksum(pseudo + header + payload) or 0xFFFF
    return header[:6] + checksum.to_bytes(2, "big") + payload


def ethernet_frame(ip_packet: bytes) -> bytes:
    """ip_packet behind an Ethernet II header with zero MAC addresses."""
    version = ip_packet[0] >> 4 if ip_packet else None
    ethertype = {4: 0x0800, 6: 0x86DD}.get(version)
    if ethertype is None:
        raise ValueError(f"not an IPv4 or IPv6 packet (version {version})")
    return bytes(12) + ethertype.to_bytes(2, "big") + ip_packet


def _addresses(
    src: Address, dst: Address, version: int
) -> tuple[IPv4Address | IPv6Address, IPv4Address | IPv6Address]:
    source, destination = ip_address(src), ip_address(dst)
    for address in (source, destination):
        if address.version != version:
            raise ValueError(f"{address} is not an IPv{version} address")
    return source, destination
