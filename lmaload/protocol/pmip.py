"""Proxy Mobile IPv6 message helpers of the LMA (RFC 5213): the options of a received PBU pulled
out once, and the PBA built from them (spec-digest §3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from lmaload.wire import (
    AccessTechnologyType,
    AlternateCareOfAddress,
    BindingAck,
    BindingUpdate,
    HandoffIndicator,
    HomeNetworkPrefix,
    LinkLocalAddress,
    LmaFailureIndication,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    Option,
    Timestamp,
)
from lmaload.wire import codepoints as cp

ALL_ZERO = IPv6Address("::")
ALL_ZERO_PREFIX = IPv6Network("::/0")


@dataclass(frozen=True)
class ProxyBindingUpdate:
    """A received PBU with its options looked up: ``None`` / empty where an option is absent.
    ``proxy_coa`` is the Alternate CoA when present, else the IPv6 source (RFC 5213 §5.3.1)."""

    message: BindingUpdate
    src: IPv6Address
    dst: IPv6Address
    proxy_coa: IPv6Address
    mn_id: MobileNodeIdentifier | None
    prefixes: tuple[HomeNetworkPrefix, ...]
    hi: int | None
    att: int | None
    timestamp: Timestamp | None
    ll_id: bytes | None
    lla: IPv6Address | None
    lfi: LmaFailureIndication | None

    @classmethod
    def parse(
        cls, message: BindingUpdate, src: IPv6Address, dst: IPv6Address
    ) -> ProxyBindingUpdate:
        first: dict[type, Option] = {}
        prefixes: list[HomeNetworkPrefix] = []
        for opt in message.options:
            if isinstance(opt, HomeNetworkPrefix):
                prefixes.append(opt)
            else:
                first.setdefault(type(opt), opt)

        def get(kind: type) -> Option | None:
            return first.get(kind)

        alt = get(AlternateCareOfAddress)
        hi = get(HandoffIndicator)
        att = get(AccessTechnologyType)
        ll_id = get(MobileNodeLinkLayerIdentifier)
        lla = get(LinkLocalAddress)
        return cls(
            message=message,
            src=src,
            dst=dst,
            proxy_coa=alt.address if isinstance(alt, AlternateCareOfAddress) else src,
            mn_id=first.get(MobileNodeIdentifier),  # type: ignore[arg-type]
            prefixes=tuple(prefixes),
            hi=hi.value if isinstance(hi, HandoffIndicator) else None,
            att=att.value if isinstance(att, AccessTechnologyType) else None,
            timestamp=first.get(Timestamp),  # type: ignore[arg-type]
            ll_id=ll_id.identifier if isinstance(ll_id, MobileNodeLinkLayerIdentifier) else None,
            lla=lla.address if isinstance(lla, LinkLocalAddress) else None,
            lfi=first.get(LmaFailureIndication),  # type: ignore[arg-type]
        )

    def explicit_prefixes(self) -> tuple[IPv6Network, ...]:
        """The requested prefixes other than ALL_ZERO, as networks. Bits beyond the prefix
        length should be zero (RFC 5213 §8.3); a sender's stray host bits are masked off."""
        return tuple(
            IPv6Network((int(p.prefix), p.prefix_length), strict=False)
            for p in self.prefixes
            if p.prefix != ALL_ZERO or p.prefix_length != 0
        )


def build_pba(
    pbu: ProxyBindingUpdate,
    status: int,
    *,
    lifetime: int = 0,
    sequence: int | None = None,
    prefixes: tuple[IPv6Network, ...] | None = None,
    timestamp: Timestamp | None = None,
    lla: IPv6Address | None = None,
) -> BindingAck:
    """The PBA answering ``pbu`` (spec-digest §3.1).

    ``prefixes`` are the assigned prefixes of an accepted PBU; a rejection echoes the request's
    HNPs (or one ALL_ZERO). ``timestamp`` overrides the echoed Timestamp (156/157 carry the LMA's
    time); ``lla`` is the binding's MAG link-local address, sent iff the PBU carried the option.
    """
    mn_id = pbu.mn_id or MobileNodeIdentifier(b"")
    if prefixes is not None:
        hnps: tuple[HomeNetworkPrefix, ...] = tuple(
            HomeNetworkPrefix(p.network_address, p.prefixlen) for p in prefixes
        )
    else:
        hnps = pbu.prefixes or (HomeNetworkPrefix(ALL_ZERO, 0),)
    options: list[Option] = [
        mn_id,
        *hnps,
        HandoffIndicator(pbu.hi or 0),
        AccessTechnologyType(pbu.att or 0),
    ]
    if timestamp is not None or pbu.timestamp is not None:
        options.append(timestamp or pbu.timestamp)  # type: ignore[arg-type]
    if pbu.ll_id is not None:
        options.append(MobileNodeLinkLayerIdentifier(pbu.ll_id))
    if pbu.lla is not None:
        options.append(LinkLocalAddress(lla if lla is not None else pbu.lla))
    seq = pbu.message.sequence if sequence is None else sequence
    return BindingAck(status, seq, lifetime, cp.BA_FLAG_P, tuple(options))


def serial_newer(a: int, b: int, bits: int = 16) -> bool:
    """``a`` is newer than ``b`` in modulo-2^bits serial arithmetic (RFC 6275 §9.5.1)."""
    half = 1 << (bits - 1)
    return 0 < (a - b) % (1 << bits) < half
