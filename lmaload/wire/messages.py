"""Mobility Header messages (RFC 6275 §6.1 framing): one dataclass per message the draft needs,
and ``encode_mh`` / ``decode_mh`` between them and the octets of a whole Mobility Header.

Fixed fields hold the raw wire values (``lifetime`` in 4-second units, ``flags`` as the flag
word); options are ``lmaload.wire.options`` dataclasses in wire order, padding left out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv6Address
from typing import ClassVar

from lmaload.wire import codepoints as cp
from lmaload.wire.checksum import mh_checksum
from lmaload.wire.codepoints import DEFAULT_CONFIG, WireConfig
from lmaload.wire.errors import WireError
from lmaload.wire.options import (
    BindingCacheInformation,
    MagAddress,
    Option,
    ProxyBindingCacheInformation,
    decode_options,
    encode_options,
    options_end,
)

MH_HEADER_LENGTH = 6  # Payload Proto, Header Len, MH Type, Reserved, Checksum
UNSPECIFIED = IPv6Address("::")


class Message:
    """A Mobility Header message. Subclasses are frozen dataclasses ending in ``options``.

    ``MH_TYPE`` is the IANA type; messages whose type the drafts left TBD name the WireConfig
    attribute holding it in ``CODEPOINT``. ``FIXED`` is the size of the fixed part after the
    6-octet MH header, for messages where it does not depend on the content.
    """

    NAME: ClassVar[str]
    MH_TYPE: ClassVar[int] = -1
    CODEPOINT: ClassVar[str] = ""
    FIXED: ClassVar[int] = 0
    options: tuple[Option, ...]

    @property
    def name(self) -> str:
        return self.NAME

    def type_code(self, config: WireConfig) -> int:
        return getattr(config, self.CODEPOINT) if self.CODEPOINT else self.MH_TYPE

    def pack(self, config: WireConfig) -> tuple[bytes, tuple[Option, ...]]:
        """The fixed part after the MH header, and the options to encode after it."""
        raise NotImplementedError

    @classmethod
    def unpack(cls, mh: bytes, config: WireConfig) -> Message:
        """Parse a whole Mobility Header whose framing ``decode_mh`` has checked."""
        raise NotImplementedError

    @classmethod
    def _require(cls, mh: bytes, fixed: int) -> int:
        """Check the MH holds a fixed part of ``fixed`` octets; return where options start."""
        end = MH_HEADER_LENGTH + fixed
        if len(mh) < end:
            raise WireError(1, f"Header Len {mh[1]} too small for {cls.NAME} ({end} octets)")
        return end

    @classmethod
    def _options(cls, mh: bytes, start: int, config: WireConfig) -> tuple[Option, ...]:
        return tuple(decode_options(mh, start, len(mh), config))


@dataclass(frozen=True)
class BindingUpdate(Message):
    """(Proxy) Binding Update, MH 5. PMIP sets A and P (the default flag word, 0x8200)."""

    sequence: int
    lifetime: int
    flags: int = cp.PBU_DEFAULT_FLAGS
    options: tuple[Option, ...] = ()
    NAME: ClassVar[str] = "Binding Update"
    MH_TYPE: ClassVar[int] = cp.MH_BINDING_UPDATE
    FIXED: ClassVar[int] = 6

    @property
    def name(self) -> str:
        return "Proxy Binding Update" if self.flags & cp.BU_FLAG_P else self.NAME

    def pack(self, config: WireConfig) -> tuple[bytes, tuple[Option, ...]]:
        return struct.pack("!HHH", self.sequence, self.flags, self.lifetime), self.options

    @classmethod
    def unpack(cls, mh: bytes, config: WireConfig) -> BindingUpdate:
        start = cls._require(mh, cls.FIXED)
        sequence, flags, lifetime = struct.unpack_from("!HHH", mh, 6)
        return cls(sequence, lifetime, flags, cls._options(mh, start, config))


@dataclass(frozen=True)
class BindingAck(Message):
    """(Proxy) Binding Acknowledgement, MH 6."""

    status: int
    sequence: int
    lifetime: int
    flags: int = cp.BA_FLAG_P
    options: tuple[Option, ...] = ()
    NAME: ClassVar[str] = "Binding Acknowledgement"
    MH_TYPE: ClassVar[int] = cp.MH_BINDING_ACK
    FIXED: ClassVar[int] = 6

    @property
    def name(self) -> str:
        return "Proxy Binding Acknowledgement" if self.flags & cp.BA_FLAG_P else self.NAME

    def pack(self, config: WireConfig) -> tuple[bytes, tuple[Option, ...]]:
        fixed = struct.pack("!BBHH", self.status, self.flags, self.sequence, self.lifetime)
        return fixed, self.options

    @classmethod
    def unpack(cls, mh: bytes, config: WireConfig) -> BindingAck:
        start = cls._require(mh, cls.FIXED)
        status, flags, sequence, lifetime = struct.unpack_from("!BBHH", mh, 6)
        return cls(status, sequence, lifetime, flags, cls._options(mh, start, config))


@dataclass(frozen=True)
class BindingError(Message):
    """Binding Error, MH 7 (status 2: unrecognized MH type)."""

    status: int
    home_address: IPv6Address = UNSPECIFIED
    options: tuple[Option, ...] = ()
    NAME: ClassVar[str] = "Binding Error"
    MH_TYPE: ClassVar[int] = cp.MH_BINDING_ERROR
    FIXED: ClassVar[int] = 18

    def pack(self, config: WireConfig) -> tuple[bytes, tuple[Option, ...]]:
        return bytes([self.status, 0]) + self.home_address.packed, self.options

    @classmethod
    def unpack(cls, mh: bytes, config: WireConfig) -> BindingError:
        start = cls._require(mh, cls.FIXED)
        return cls(mh[6], IPv6Address(mh[8:24]), cls._options(mh, start, config))


@dataclass(frozen=True)
class HomeAgentSwitch(Message):
    """Home Agent Switch, MH 12 (RFC 5142): the addresses to switch to, in preference order.
    ``flags`` is the reserved octet, whose 0x80 is HA-rel-04's I (re-key only) flag."""

    addresses: tuple[IPv6Address, ...]
    flags: int = 0
    options: tuple[Option, ...] = ()
    NAME: ClassVar[str] = "Home Agent Switch"
    MH_TYPE: ClassVar[int] = cp.MH_HOME_AGENT_SWITCH

    def pack(self, config: WireConfig) -> tuple[bytes, tuple[Option, ...]]:
        addresses = b"".join(a.packed for a in self.addresses)
        return bytes([len(self.addresses), self.flags]) + addresses, self.options

    @classmethod
    def unpack(cls, mh: bytes, config: WireConfig) -> HomeAgentSwitch:
        count = mh[6]
        start = cls._require(mh, 2 + 16 * count)
        addresses = tuple(IPv6Address(mh[i : i + 16]) for i in range(8, start, 16))
        return cls(addresses, mh[7], cls._options(mh, start, config))


@dataclass(frozen=True)
class Heartbeat(Message):
    """Heartbeat, MH 13 (RFC 5847): a request, or a response (R flag), possibly unsolicited (U)."""

    sequence: int
    flags: int = 0
    options: tuple[Option, ...] = ()
    NAME: ClassVar[str] = "Heartbeat"
    MH_TYPE: ClassVar[int] = cp.MH_HEARTBEAT
    FIXED: ClassVar[int] = 6

    @property
    def is_response(self) -> bool:
        return bool(self.flags & cp.HB_FLAG_R)

    def pack(self, config: WireConfig) -> tuple[bytes, tuple[Option, ...]]:
        return struct.pack("!BBI", 0, self.flags, self.sequence), self.options

    @classmethod
    def unpack(cls, mh: bytes, config: WireConfig) -> Heartbeat:
        start = cls._require(mh, cls.FIXED)
        _, flags, sequence = struct.unpack_from("!BBI", mh, 6)
        return cls(sequence, flags, cls._options(mh, start, config))


Session = tuple[ProxyBindingCacheInformation | BindingCacheInformation, tuple[Option, ...]]


@dataclass(frozen=True)
class StateSync(Message):
    """State Synchronization (HA-rel §5.1.1): SS-REQ, SS-REP or SS-ACK; flags A (ack requested)
    and M (more SS-REPs of this reply follow, our R15 extension)."""

    ss_type: int
    identifier: int
    flags: int = 0
    options: tuple[Option, ...] = ()
    NAME: ClassVar[str] = "State Synchronization"
    CODEPOINT: ClassVar[str] = "mh_state_sync"
    FIXED: ClassVar[int] = 4

    def sessions(self) -> list[Session]:
        """Each (P)BCI option with the MN options that follow it, up to the next (P)BCI."""
        out: list[Session] = []
        for opt in self.options:
            if isinstance(opt, ProxyBindingCacheInformation | BindingCacheInformation):
                out.append((opt, ()))
            elif out:
                out[-1] = (out[-1][0], (*out[-1][1], opt))
        return out

    def pack(self, config: WireConfig) -> tuple[bytes, tuple[Option, ...]]:
        return struct.pack("!BBH", self.ss_type, self.flags, self.identifier), self.options

    @classmethod
    def unpack(cls, mh: bytes, config: WireConfig) -> StateSync:
        start = cls._require(mh, cls.FIXED)
        ss_type, flags, identifier = struct.unpack_from("!BBH", mh, 6)
        return cls(ss_type, identifier, flags, cls._options(mh, start, config))


def pack_sessions(
    lead: list[Option], sessions: list[list[Option]], max_length: int = cp.MH_MAX_LENGTH
) -> list[tuple[list[Option], list[int]]]:
    """Split State Synchronization sessions (each a (P)BCI and its MN options) into SS-REP
    option lists filled greedily in order, each starting with ``lead`` and at most
    ``max_length`` octets once encoded (R15). Returns (options, indexes of the sessions carried);
    a session too long to share a message gets one of its own, and no sessions one with ``lead``
    alone."""
    start = options_end(lead, MH_HEADER_LENGTH + StateSync.FIXED)
    messages: list[tuple[list[Option], list[int]]] = []
    current: list[Option] = list(lead)
    carried: list[int] = []
    offset = start
    for index, opts in enumerate(sessions):
        end = options_end(opts, offset)
        if carried and end + (-end % 8) > max_length:
            messages.append((current, carried))
            current, carried = list(lead), []
            end = options_end(opts, start)
        current += opts
        carried.append(index)
        offset = end
    if carried or not messages:
        messages.append((current, carried))
    return messages


@dataclass(frozen=True)
class HomeAgentControl(Message):
    """Home Agent Control (HA-rel §5.1.2): SO-REQ/SO-REP/SB-REQ/SB-REP/SW-COMP.

    ``mag_address`` scopes a switchover to one MAG (seed §6.3, R17). On the wire it is the MAG
    Address option, placed first (canonical, R9), or the literal field of the seed's Figure 6
    when ``WireConfig.hac_mag_encoding`` is "literal" (where it is always present).
    """

    hac_type: int
    status: int = 0
    mag_address: IPv6Address | None = None
    options: tuple[Option, ...] = ()
    NAME: ClassVar[str] = "Home Agent Control"
    CODEPOINT: ClassVar[str] = "mh_ha_control"

    def pack(self, config: WireConfig) -> tuple[bytes, tuple[Option, ...]]:
        head = bytes([self.hac_type, self.status])
        if config.hac_mag_encoding == "literal":
            if self.mag_address is None:
                raise ValueError("the literal Home Agent Control form needs a MAG address")
            return head + self.mag_address.packed, self.options
        if self.mag_address is None:
            return head, self.options
        return head, (MagAddress(self.mag_address), *self.options)

    @classmethod
    def unpack(cls, mh: bytes, config: WireConfig) -> HomeAgentControl:
        if config.hac_mag_encoding == "literal":
            start = cls._require(mh, 18)
            return cls(mh[6], mh[7], IPv6Address(mh[8:24]), cls._options(mh, start, config))
        start = cls._require(mh, 2)
        options = list(cls._options(mh, start, config))
        mag = next((o for o in options if isinstance(o, MagAddress)), None)
        if mag is not None:
            options.remove(mag)
        return cls(mh[6], mh[7], mag.address if mag else None, tuple(options))


@dataclass(frozen=True)
class HomeAgentHello(Message):
    """HA-HELLO (HA-rel §5.1.3): ``lifetime`` and ``hello_interval`` in seconds; flags A (the
    sender is active) and R (answer with a HELLO)."""

    sequence: int
    preference: int
    lifetime: int
    hello_interval: int
    group_id: int
    flags: int = 0
    options: tuple[Option, ...] = ()
    NAME: ClassVar[str] = "Home Agent Hello"
    CODEPOINT: ClassVar[str] = "mh_ha_hello"
    FIXED: ClassVar[int] = 10

    def pack(self, config: WireConfig) -> tuple[bytes, tuple[Option, ...]]:
        fixed = struct.pack(
            "!HHHHBB",
            self.sequence,
            self.preference,
            self.lifetime,
            self.hello_interval,
            self.group_id,
            self.flags,
        )
        return fixed, self.options

    @classmethod
    def unpack(cls, mh: bytes, config: WireConfig) -> HomeAgentHello:
        start = cls._require(mh, cls.FIXED)
        fields = struct.unpack_from("!HHHHBB", mh, 6)
        return cls(*fields, cls._options(mh, start, config))


@dataclass(frozen=True)
class UnknownMessage(Message):
    """An MH type lmaload does not interpret: ``data`` is everything after the checksum."""

    mh_type: int
    data: bytes
    options: tuple[Option, ...] = ()
    NAME: ClassVar[str] = "Unknown"

    def type_code(self, config: WireConfig) -> int:
        return self.mh_type

    def pack(self, config: WireConfig) -> tuple[bytes, tuple[Option, ...]]:
        return self.data, ()

    @classmethod
    def unpack(cls, mh: bytes, config: WireConfig) -> UnknownMessage:
        return cls(mh[2], mh[MH_HEADER_LENGTH:])


_FIXED_TYPES: tuple[type[Message], ...] = (
    BindingUpdate,
    BindingAck,
    BindingError,
    HomeAgentSwitch,
    Heartbeat,
)
_TBD_TYPES: tuple[type[Message], ...] = (StateSync, HomeAgentControl, HomeAgentHello)


@lru_cache(maxsize=16)
def message_classes(config: WireConfig) -> dict[int, type[Message]]:
    """MH type number → dataclass under ``config``."""
    table = {cls.MH_TYPE: cls for cls in _FIXED_TYPES}
    table.update({getattr(config, cls.CODEPOINT): cls for cls in _TBD_TYPES})
    return table


@dataclass(frozen=True)
class DecodedMH:
    """A decoded Mobility Header: the message, its length in octets, the checksum field, and
    whether the checksum verifies (None when the IPv6 addresses were not known)."""

    message: Message
    length: int
    checksum: int
    checksum_ok: bool | None


def encode_mh(
    message: Message,
    src: IPv6Address | None = None,
    dst: IPv6Address | None = None,
    config: WireConfig = DEFAULT_CONFIG,
) -> bytes:
    """The Mobility Header octets of ``message``. The checksum is computed over the pseudo-header
    of ``src`` and ``dst``; without them it is left 0 (for IPPROTO_MH raw sockets, whose kernel
    fills it in)."""
    fixed, options = message.pack(config)
    start = MH_HEADER_LENGTH + len(fixed)
    block = encode_options(options, start, config)
    length = start + len(block)
    if length > cp.MH_MAX_LENGTH:
        raise ValueError(f"{message.name} is {length} octets, over the 2048-octet MH limit")
    header = bytes([cp.PAYLOAD_PROTO_NONE, length // 8 - 1, message.type_code(config), 0, 0, 0])
    mh = header + fixed + block
    if src is None or dst is None:
        return mh
    checksum = mh_checksum(src, dst, mh)
    return mh[:4] + checksum.to_bytes(2, "big") + mh[6:]


def decode_mh(
    data: bytes,
    src: IPv6Address | None = None,
    dst: IPv6Address | None = None,
    config: WireConfig = DEFAULT_CONFIG,
) -> DecodedMH:
    """Decode one whole Mobility Header; raises only WireError. The checksum is verified when
    ``src`` and ``dst`` are given, and reported, not enforced."""
    data = bytes(data)
    if len(data) < 8:
        raise WireError(len(data), f"a Mobility Header is at least 8 octets, got {len(data)}")
    if data[0] != cp.PAYLOAD_PROTO_NONE:
        raise WireError(0, f"Payload Proto {data[0]}, expected {cp.PAYLOAD_PROTO_NONE}")
    length = (data[1] + 1) * 8
    if length != len(data):
        raise WireError(1, f"Header Len {data[1]} means {length} octets, got {len(data)}")
    cls = message_classes(config).get(data[2], UnknownMessage)
    message = cls.unpack(data, config)
    checksum = int.from_bytes(data[4:6], "big")
    ok = None if src is None or dst is None else mh_checksum(src, dst, data) == 0
    return DecodedMH(message, length, checksum, ok)
