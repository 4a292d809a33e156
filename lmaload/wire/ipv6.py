"""IPv6 packets carrying a Mobility Header, as in the UDP/5436 transport of RFC 5844 (§6 of the
spec digest): the UDP payload is an inner IPv6 header followed by the MH, whose checksum uses the
inner addresses. ``decode_datagram`` also takes a bare MH, which some peers send over UDP.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address

from lmaload.wire import codepoints as cp
from lmaload.wire.codepoints import DEFAULT_CONFIG, WireConfig
from lmaload.wire.errors import WireError
from lmaload.wire.messages import DecodedMH, Message, decode_mh, encode_mh

IPV6_HEADER_LENGTH = 40
DEFAULT_HOP_LIMIT = 64


@dataclass(frozen=True)
class DecodedPacket:
    """A decoded MH with the IPv6 addresses its checksum was checked against (None: unknown)."""

    src: IPv6Address | None
    dst: IPv6Address | None
    mh: DecodedMH


def ipv6_header(
    src: IPv6Address, dst: IPv6Address, payload_length: int, hop_limit: int = DEFAULT_HOP_LIMIT
) -> bytes:
    """An IPv6 header with next header 135 for a Mobility Header of ``payload_length`` octets."""
    fixed = struct.pack("!IHBB", 6 << 28, payload_length, cp.IPPROTO_MH, hop_limit)
    return fixed + src.packed + dst.packed


def split_ipv6_mh(data: bytes) -> tuple[IPv6Address, IPv6Address, bytes]:
    """The addresses and the MH octets behind an IPv6 header with next header 135; raises
    WireError (offsets counted from the IPv6 header) when the header is missing or wrong."""
    if len(data) < IPV6_HEADER_LENGTH:
        raise WireError(len(data), f"an IPv6 header is 40 octets, got {len(data)}")
    if data[0] >> 4 != 6:
        raise WireError(0, f"IP version {data[0] >> 4}, expected 6")
    payload_length = int.from_bytes(data[4:6], "big")
    if payload_length != len(data) - IPV6_HEADER_LENGTH:
        raise WireError(
            4, f"Payload Length {payload_length}, but {len(data) - 40} octets follow the header"
        )
    if data[6] != cp.IPPROTO_MH:
        raise WireError(6, f"Next Header {data[6]}, expected {cp.IPPROTO_MH} (Mobility Header)")
    return IPv6Address(data[8:24]), IPv6Address(data[24:40]), data[IPV6_HEADER_LENGTH:]


def frame(mh: bytes, src: IPv6Address, dst: IPv6Address) -> bytes:
    """A UDP/5436 payload (RFC 5844): the inner IPv6 header for ``src`` → ``dst``, then ``mh``.
    The compiled batch twin is ``lmaload._ext.framing``."""
    return ipv6_header(src, dst, len(mh)) + mh


def encode_ipv6_mh(
    message: Message,
    src: IPv6Address,
    dst: IPv6Address,
    config: WireConfig = DEFAULT_CONFIG,
    hop_limit: int = DEFAULT_HOP_LIMIT,
) -> bytes:
    """An IPv6 header (next header 135) followed by the MH of ``message``, checksum filled."""
    mh = encode_mh(message, src, dst, config)
    return ipv6_header(src, dst, len(mh), hop_limit) + mh


def decode_ipv6_mh(data: bytes, config: WireConfig = DEFAULT_CONFIG) -> DecodedPacket:
    """Decode an IPv6 header with next header 135 and the MH after it; raises only WireError,
    with offsets counted from the IPv6 header."""
    src, dst, mh = split_ipv6_mh(bytes(data))
    try:
        decoded = decode_mh(mh, src, dst, config)
    except WireError as exc:
        raise WireError(exc.offset + IPV6_HEADER_LENGTH, exc.reason) from None
    return DecodedPacket(src, dst, decoded)


def decode_datagram(
    data: bytes,
    src: IPv6Address | None = None,
    dst: IPv6Address | None = None,
    config: WireConfig = DEFAULT_CONFIG,
) -> DecodedPacket:
    """Decode a bare MH (first octet 59; checked against ``src``/``dst`` when given) or an IPv6
    packet carrying one (first nibble 6; checked against its own addresses)."""
    if data and data[0] >> 4 == 6:
        return decode_ipv6_mh(data, config)
    return DecodedPacket(src, dst, decode_mh(data, src, dst, config))
