"""Mobility options (RFC 6275 §6.2 TLVs): one dataclass per option, and the encoder and decoder of
an option block with the deterministic alignment padding of spec-digest §1.2.

Pad1 and PadN are not dataclasses: the encoder derives them from each option's alignment and the
decoder skips them. Decoders enforce lengths, never alignment (a receiver accepts any padding).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar

from lmaload.wire import codepoints as cp
from lmaload.wire.codepoints import WireConfig
from lmaload.wire.errors import WireError

PBCI_FIXED_LENGTH = 28
MAX_OPTION_LENGTH = 255


class Option:
    """A mobility option. Subclasses are frozen dataclasses holding the option's fields.

    ``TYPE`` is the IANA type number; options whose number the drafts left TBD set ``CODEPOINT``
    to the WireConfig attribute holding it instead. ``ALIGN = (x, y)`` asks for the Type octet at
    an MH offset ``o`` with ``o % x == y``.
    """

    NAME: ClassVar[str]
    TYPE: ClassVar[int] = -1
    CODEPOINT: ClassVar[str] = ""
    ALIGN: ClassVar[tuple[int, int]] = (1, 0)

    def type_code(self, config: WireConfig) -> int:
        return getattr(config, self.CODEPOINT) if self.CODEPOINT else self.TYPE

    def pack(self) -> bytes:
        """The option data: everything after the Type and Length octets."""
        raise NotImplementedError

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> Option:
        """Parse the option data ``body``, which starts at ``offset`` in the decoded buffer."""
        raise NotImplementedError


def _expect_length(cls: type[Option], body: bytes, offset: int, *allowed: int) -> None:
    if len(body) not in allowed:
        want = " or ".join(str(n) for n in allowed)
        raise WireError(offset - 1, f"{cls.NAME} option Length {len(body)}, expected {want}")


def _expect_min_length(cls: type[Option], body: bytes, offset: int, minimum: int) -> None:
    if len(body) < minimum:
        raise WireError(offset - 1, f"{cls.NAME} option Length {len(body)}, minimum {minimum}")


@dataclass(frozen=True)
class AlternateCareOfAddress(Option):
    address: IPv6Address
    NAME: ClassVar[str] = "Alternate Care-of Address"
    TYPE: ClassVar[int] = cp.OPT_ALTERNATE_COA
    ALIGN: ClassVar[tuple[int, int]] = (8, 6)

    def pack(self) -> bytes:
        return self.address.packed

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> AlternateCareOfAddress:
        _expect_length(cls, body, offset, 16)
        return cls(IPv6Address(body))


@dataclass(frozen=True)
class MobileNodeIdentifier(Option):
    """RFC 4283; subtype 1 is an NAI. An empty identifier is the "zero-length" MN-ID of a PBA."""

    identifier: bytes
    subtype: int = cp.MNID_SUBTYPE_NAI
    NAME: ClassVar[str] = "Mobile Node Identifier"
    TYPE: ClassVar[int] = cp.OPT_MN_IDENTIFIER

    def pack(self) -> bytes:
        return bytes([self.subtype]) + self.identifier

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> MobileNodeIdentifier:
        _expect_min_length(cls, body, offset, 1)
        return cls(identifier=body[1:], subtype=body[0])


@dataclass(frozen=True)
class VendorSpecific(Option):
    """RFC 5094, kept as the raw option data (Vendor ID, sub-type and value)."""

    data: bytes
    NAME: ClassVar[str] = "Vendor Specific"
    TYPE: ClassVar[int] = cp.OPT_VENDOR_SPECIFIC
    ALIGN: ClassVar[tuple[int, int]] = (4, 2)

    def pack(self) -> bytes:
        return self.data

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> VendorSpecific:
        return cls(body)


@dataclass(frozen=True)
class HomeNetworkPrefix(Option):
    """RFC 5213 §8.3. ``::``/0 is the ALL_ZERO prefix ("please assign one")."""

    prefix: IPv6Address
    prefix_length: int
    NAME: ClassVar[str] = "Home Network Prefix"
    TYPE: ClassVar[int] = cp.OPT_HOME_NETWORK_PREFIX
    ALIGN: ClassVar[tuple[int, int]] = (8, 4)

    def pack(self) -> bytes:
        return bytes([0, self.prefix_length]) + self.prefix.packed

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> HomeNetworkPrefix:
        _expect_length(cls, body, offset, 18)
        if body[1] > 128:
            raise WireError(offset + 1, f"prefix length {body[1]} exceeds 128")
        return cls(IPv6Address(body[2:]), body[1])


class _OctetOption(Option):
    """Layout shared by HI and ATT (RFC 5213 §8.4-8.5): a reserved octet, then the value."""

    value: int

    def pack(self) -> bytes:
        return bytes([0, self.value])

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> Option:
        _expect_length(cls, body, offset, 2)
        return cls(body[1])


@dataclass(frozen=True)
class HandoffIndicator(_OctetOption):
    value: int
    NAME: ClassVar[str] = "Handoff Indicator"
    TYPE: ClassVar[int] = cp.OPT_HANDOFF_INDICATOR


@dataclass(frozen=True)
class AccessTechnologyType(_OctetOption):
    value: int
    NAME: ClassVar[str] = "Access Technology Type"
    TYPE: ClassVar[int] = cp.OPT_ACCESS_TECHNOLOGY_TYPE


@dataclass(frozen=True)
class MobileNodeLinkLayerIdentifier(Option):
    identifier: bytes
    NAME: ClassVar[str] = "Mobile Node Link-layer Identifier"
    TYPE: ClassVar[int] = cp.OPT_MN_LINK_LAYER_ID
    ALIGN: ClassVar[tuple[int, int]] = (2, 0)

    def pack(self) -> bytes:
        return bytes(2) + self.identifier

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> MobileNodeLinkLayerIdentifier:
        _expect_min_length(cls, body, offset, 2)
        return cls(body[2:])


@dataclass(frozen=True)
class LinkLocalAddress(Option):
    """RFC 5213 §8.7. ``::`` (ALL_ZERO) in a PBU asks the LMA to supply one."""

    address: IPv6Address
    NAME: ClassVar[str] = "Link-local Address"
    TYPE: ClassVar[int] = cp.OPT_LINK_LOCAL_ADDRESS
    ALIGN: ClassVar[tuple[int, int]] = (8, 6)

    def pack(self) -> bytes:
        return self.address.packed

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> LinkLocalAddress:
        _expect_length(cls, body, offset, 16)
        return cls(IPv6Address(body))


@dataclass(frozen=True)
class Timestamp(Option):
    """RFC 5213 §8.8: ``value`` is the raw 64-bit field, 48-bit Unix seconds then 1/65536 s
    fractions (not NTP format, R35)."""

    value: int
    NAME: ClassVar[str] = "Timestamp"
    TYPE: ClassVar[int] = cp.OPT_TIMESTAMP
    ALIGN: ClassVar[tuple[int, int]] = (8, 2)

    @classmethod
    def from_unix(cls, seconds: float) -> Timestamp:
        return cls(round(seconds * 65536))

    @property
    def seconds(self) -> float:
        return self.value / 65536

    def pack(self) -> bytes:
        return self.value.to_bytes(8, "big")

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> Timestamp:
        _expect_length(cls, body, offset, 8)
        return cls(int.from_bytes(body, "big"))


@dataclass(frozen=True)
class RestartCounter(Option):
    counter: int
    NAME: ClassVar[str] = "Restart Counter"
    TYPE: ClassVar[int] = cp.OPT_RESTART_COUNTER
    ALIGN: ClassVar[tuple[int, int]] = (4, 2)

    def pack(self) -> bytes:
        return self.counter.to_bytes(4, "big")

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> RestartCounter:
        _expect_length(cls, body, offset, 4)
        return cls(int.from_bytes(body, "big"))


class _IPv4AddressOption(Option):
    """Layout shared by the RFC 5555/5844 options: two reserved octets, then an IPv4 address."""

    address: IPv4Address
    ALIGN: ClassVar[tuple[int, int]] = (4, 0)

    def pack(self) -> bytes:
        return bytes(2) + self.address.packed

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> Option:
        _expect_length(cls, body, offset, 6)
        return cls(IPv4Address(body[2:]))


@dataclass(frozen=True)
class IPv4CareOfAddress(_IPv4AddressOption):
    address: IPv4Address
    NAME: ClassVar[str] = "IPv4 Care-of Address"
    TYPE: ClassVar[int] = cp.OPT_IPV4_COA


@dataclass(frozen=True)
class IPv4DefaultRouterAddress(_IPv4AddressOption):
    address: IPv4Address
    NAME: ClassVar[str] = "IPv4 Default-Router Address"
    TYPE: ClassVar[int] = cp.OPT_IPV4_DEFAULT_ROUTER


@dataclass(frozen=True)
class IPv4HomeAddressRequest(Option):
    """RFC 5844 §3.3.1. ``0.0.0.0`` asks the LMA to allocate an address."""

    address: IPv4Address
    prefix_length: int = 0
    NAME: ClassVar[str] = "IPv4 Home Address Request"
    TYPE: ClassVar[int] = cp.OPT_IPV4_HOA_REQUEST
    ALIGN: ClassVar[tuple[int, int]] = (4, 0)

    def pack(self) -> bytes:
        return (self.prefix_length << 10).to_bytes(2, "big") + self.address.packed

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> IPv4HomeAddressRequest:
        _expect_length(cls, body, offset, 6)
        return cls(IPv4Address(body[2:]), body[0] >> 2)


@dataclass(frozen=True)
class IPv4HomeAddressReply(Option):
    """RFC 5844 §3.3.2."""

    status: int
    address: IPv4Address
    prefix_length: int = 0
    NAME: ClassVar[str] = "IPv4 Home Address Reply"
    TYPE: ClassVar[int] = cp.OPT_IPV4_HOA_REPLY
    ALIGN: ClassVar[tuple[int, int]] = (4, 0)

    def pack(self) -> bytes:
        return bytes([self.status, self.prefix_length << 2]) + self.address.packed

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> IPv4HomeAddressReply:
        _expect_length(cls, body, offset, 6)
        return cls(body[0], IPv4Address(body[2:]), body[1] >> 2)


@dataclass(frozen=True)
class IPv4DhcpSupportMode(Option):
    """RFC 5844 §3.3.4: ``server`` is the S flag (the MAG is a DHCP server, not a relay)."""

    server: bool
    NAME: ClassVar[str] = "IPv4 DHCP Support Mode"
    TYPE: ClassVar[int] = cp.OPT_IPV4_DHCP_SUPPORT_MODE

    def pack(self) -> bytes:
        return bytes([0, int(self.server)])

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> IPv4DhcpSupportMode:
        _expect_length(cls, body, offset, 2)
        return cls(bool(body[1] & 1))


@dataclass(frozen=True)
class BindingCacheInformation(Option):
    """HA-rel §5.2.2 BCI: the binding of a Mobile IPv6 MN, in State Synchronization messages."""

    flags: int
    sequence: int
    lifetime: int
    home_address: IPv6Address
    care_of_address: IPv6Address
    NAME: ClassVar[str] = "Binding Cache Information"
    CODEPOINT: ClassVar[str] = "opt_bci"
    ALIGN: ClassVar[tuple[int, int]] = (8, 2)

    def pack(self) -> bytes:
        head = struct.pack("!HHHH", self.flags, self.sequence, self.lifetime, 0)
        return head + self.home_address.packed + self.care_of_address.packed

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> BindingCacheInformation:
        _expect_length(cls, body, offset, 40)
        flags, sequence, lifetime, _ = struct.unpack_from("!HHHH", body)
        return cls(flags, sequence, lifetime, IPv6Address(body[8:24]), IPv6Address(body[24:40]))


@dataclass(frozen=True)
class ProxyBindingCacheInformation(Option):
    """Seed §6.1 PBCI: one proxy mobility session in a State Synchronization message.

    ``lifetime`` is the remaining lifetime in 4-second units, 0 meaning the entry was deleted (R6).
    Canonically (R1, Length 28) the session's MN options follow as sibling options up to the next
    (P)BCI; a received nested PBCI (Length 28 + N) is decoded into that same flat form with
    ``nested`` set, and is re-encoded nested. ``nested`` is not part of equality: both forms carry
    the same session.
    """

    flags: int
    sequence: int
    lifetime: int
    tunnel_interface_id: int
    proxy_coa: IPv6Address
    nested: bool = field(default=False, compare=False)
    NAME: ClassVar[str] = "Proxy Binding Cache Information"
    CODEPOINT: ClassVar[str] = "opt_pbci"
    ALIGN: ClassVar[tuple[int, int]] = (8, 2)

    def pack(self) -> bytes:
        head = struct.pack(
            "!HHHHI", self.flags, self.sequence, self.lifetime, 0, self.tunnel_interface_id
        )
        return head + self.proxy_coa.packed

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> ProxyBindingCacheInformation:
        _expect_length(cls, body, offset, PBCI_FIXED_LENGTH)
        flags, sequence, lifetime, _, tunnel = struct.unpack_from("!HHHHI", body)
        return cls(flags, sequence, lifetime, tunnel, IPv6Address(body[12:28]))


@dataclass(frozen=True)
class LmaFailureIndication(Option):
    """Seed §6.2 LFI: the LMAA (and optionally the IPv4 LMAA) of the LMA the MAG lost (R7)."""

    lmaa: IPv6Address
    ipv4_lmaa: IPv4Address | None = None
    NAME: ClassVar[str] = "LMA Failure Indication"
    CODEPOINT: ClassVar[str] = "opt_lfi"
    ALIGN: ClassVar[tuple[int, int]] = (8, 6)

    def pack(self) -> bytes:
        tail = self.ipv4_lmaa.packed if self.ipv4_lmaa is not None else b""
        return self.lmaa.packed + tail

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> LmaFailureIndication:
        _expect_length(cls, body, offset, 16, 20)
        ipv4 = IPv4Address(body[16:]) if len(body) == 20 else None
        return cls(IPv6Address(body[:16]), ipv4)


@dataclass(frozen=True)
class MagAddress(Option):
    """Seed §6.3 MAG Address (R9): the MAG's Proxy-CoA, IPv4-mapped for an IPv4 MAG (R12)."""

    address: IPv6Address
    NAME: ClassVar[str] = "MAG Address"
    CODEPOINT: ClassVar[str] = "opt_mag_address"
    ALIGN: ClassVar[tuple[int, int]] = (8, 6)

    def pack(self) -> bytes:
        return self.address.packed

    @classmethod
    def unpack(cls, body: bytes, offset: int) -> MagAddress:
        _expect_length(cls, body, offset, 16)
        return cls(IPv6Address(body))


@dataclass(frozen=True)
class UnknownOption(Option):
    """An option type lmaload does not interpret; re-encodes to the same octets."""

    type: int
    data: bytes
    NAME: ClassVar[str] = "Unknown"

    def type_code(self, config: WireConfig) -> int:
        return self.type

    def pack(self) -> bytes:
        return self.data


_FIXED_TYPES: tuple[type[Option], ...] = (
    AlternateCareOfAddress,
    MobileNodeIdentifier,
    VendorSpecific,
    HomeNetworkPrefix,
    HandoffIndicator,
    AccessTechnologyType,
    MobileNodeLinkLayerIdentifier,
    LinkLocalAddress,
    Timestamp,
    RestartCounter,
    IPv4CareOfAddress,
    IPv4HomeAddressRequest,
    IPv4HomeAddressReply,
    IPv4DefaultRouterAddress,
    IPv4DhcpSupportMode,
)
_TBD_TYPES: tuple[type[Option], ...] = (
    BindingCacheInformation,
    ProxyBindingCacheInformation,
    LmaFailureIndication,
    MagAddress,
)
_SESSION_SEPARATORS = (BindingCacheInformation, ProxyBindingCacheInformation)


@lru_cache(maxsize=16)
def option_classes(config: WireConfig) -> dict[int, type[Option]]:
    """Option type number → dataclass under ``config``."""
    table = {cls.TYPE: cls for cls in _FIXED_TYPES}
    table.update({getattr(config, cls.CODEPOINT): cls for cls in _TBD_TYPES})
    return table


def padding(n: int) -> bytes:
    """``n`` octets of padding: nothing, Pad1, or PadN."""
    if n == 0:
        return b""
    if n == 1:
        return b"\x00"
    return bytes([cp.OPT_PADN, n - 2]) + bytes(n - 2)


def options_end(options: Iterable[Option], start: int) -> int:
    """The MH offset where ``options`` encoded from ``start`` end, before the final padding to 8
    (the same alignment rule as ``encode_options``)."""
    for opt in options:
        x, y = opt.ALIGN
        start += (y - start) % x + 2 + len(opt.pack())
    return start


def encode_options(options: tuple[Option, ...], start: int, config: WireConfig) -> bytes:
    """The option block that starts at MH offset ``start``, aligned per option and padded so that
    it ends on an 8-octet boundary (spec-digest §1.2)."""
    out = bytearray()
    nested_length_at = -1  # index in ``out`` of an open nested PBCI's Length octet

    def close_nested() -> None:
        length = len(out) - nested_length_at - 1
        if length > MAX_OPTION_LENGTH:
            raise ValueError(f"nested PBCI with its MN options is {length} octets, over 255")
        out[nested_length_at] = length

    for opt in options:
        if nested_length_at >= 0 and isinstance(opt, _SESSION_SEPARATORS):
            close_nested()
            nested_length_at = -1
        x, y = opt.ALIGN
        out += padding((y - start - len(out)) % x)
        body = opt.pack()
        if len(body) > MAX_OPTION_LENGTH:
            raise ValueError(f"{opt.NAME} option data is {len(body)} octets, over 255")
        out += bytes([opt.type_code(config), len(body)])
        if isinstance(opt, ProxyBindingCacheInformation) and opt.nested:
            nested_length_at = len(out) - 1
        out += body
    if nested_length_at >= 0:
        close_nested()
    out += padding(-(start + len(out)) % 8)
    return bytes(out)


def decode_options(
    buf: bytes, start: int, end: int, config: WireConfig, *, inside_pbci: bool = False
) -> list[Option]:
    """Decode the options in ``buf[start:end]``; offsets in errors are offsets into ``buf``."""
    classes = option_classes(config)
    options: list[Option] = []
    off = start
    while off < end:
        kind = buf[off]
        if kind == cp.OPT_PAD1:
            off += 1
            continue
        if off + 2 > end:
            raise WireError(off, f"option type {kind} has no Length octet before the end")
        length = buf[off + 1]
        body_at = off + 2
        if body_at + length > end:
            raise WireError(
                off + 1, f"option type {kind} Length {length} runs past the end at {end}"
            )
        body = buf[body_at : body_at + length]
        off = body_at + length
        if kind == cp.OPT_PADN:
            continue
        cls = classes.get(kind)
        if cls is None:
            options.append(UnknownOption(kind, body))
        elif cls is ProxyBindingCacheInformation:
            if inside_pbci:
                raise WireError(body_at - 2, "PBCI nested inside another PBCI")
            _expect_min_length(cls, body, body_at, PBCI_FIXED_LENGTH)
            pbci = cls.unpack(body[:PBCI_FIXED_LENGTH], body_at)
            if length == PBCI_FIXED_LENGTH:
                options.append(pbci)
            else:
                options.append(replace(pbci, nested=True))
                options += decode_options(
                    buf, body_at + PBCI_FIXED_LENGTH, off, config, inside_pbci=True
                )
        elif inside_pbci and cls is BindingCacheInformation:
            raise WireError(body_at - 2, "BCI nested inside a PBCI")
        else:
            options.append(cls.unpack(body, body_at))
    return options
