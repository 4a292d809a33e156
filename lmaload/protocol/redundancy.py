"""The redundancy layer's data: peer LMAs as learnt from HA-HELLO (spec-digest §7.4), the
State Synchronization encoding of binding cache entries (PBCI + MN options in the canonical flat
form, §8.1, R1, R6) with the 2048-octet split of R15, and the records of switchovers in progress
(§8.5, §8.6). The LmaEngine drives them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from math import ceil
from typing import Protocol

from lmaload.protocol.binding_cache import BindingCache
from lmaload.protocol.datagrams import Datagram
from lmaload.wire import (
    AccessTechnologyType,
    HomeAgentHello,
    HomeNetworkPrefix,
    LinkLocalAddress,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    Option,
    ProxyBindingCacheInformation,
    Timestamp,
)

ALL_ZERO = IPv6Address("::")


@dataclass
class Peer:
    """A peer LMA (HA list entry, spec-digest §7.4): what its last valid HELLO said."""

    address: IPv6Address
    alive: bool = False
    active: bool = False
    preference: int = 0
    hello_interval: int = 1
    last_seq: int | None = None


@dataclass
class SyncedSession:
    """One session of a received SS-REP (the MN options that follow a PBCI)."""

    pbci: ProxyBindingCacheInformation
    mn_id: bytes
    prefixes: tuple[IPv6Network, ...]
    att: int
    timestamp: int
    ll_id: bytes | None
    lla: IPv6Address | None

    @classmethod
    def parse(
        cls, pbci: ProxyBindingCacheInformation, options: Iterable[Option]
    ) -> SyncedSession | None:
        """None when a mandatory MN option (MN-ID, HNP, ATT; §8.1) is missing, or an HNP has
        host bits set."""
        mn_id = att = None
        prefixes: list[IPv6Network] = []
        timestamp = 0
        ll_id = lla = None
        for opt in options:
            if isinstance(opt, MobileNodeIdentifier):
                mn_id = opt.identifier
            elif isinstance(opt, HomeNetworkPrefix):
                try:
                    prefixes.append(IPv6Network((int(opt.prefix), opt.prefix_length)))
                except ValueError:  # host bits set: no prefix a binding could have
                    return None
            elif isinstance(opt, AccessTechnologyType):
                att = opt.value
            elif isinstance(opt, Timestamp):
                timestamp = opt.value
            elif isinstance(opt, MobileNodeLinkLayerIdentifier):
                ll_id = opt.identifier
            elif isinstance(opt, LinkLocalAddress):
                lla = opt.address
        if mn_id is None or not prefixes or att is None:
            return None
        return cls(pbci, mn_id, tuple(prefixes), att, timestamp, ll_id, lla)


def session_options(cache: BindingCache, row: int, now: float, deleted: bool) -> list[Option]:
    """PBCI + MN options for the entry in ``row`` (spec-digest §8.1); lifetime 0 when
    ``deleted`` (R6), else the remaining lifetime in 4-second units rounded up."""
    remaining = 0 if deleted else max(1, ceil((cache.get(row, "expires") - now) / 4))
    opts: list[Option] = [
        ProxyBindingCacheInformation(
            cache.get(row, "flags"),
            cache.get(row, "seq"),
            min(remaining, 0xFFFF),
            cache.get(row, "tunnel"),
            cache.get(row, "proxy_coa"),
        ),
        MobileNodeIdentifier(cache.mn_ids[row]),
        *(HomeNetworkPrefix(p.network_address, p.prefixlen) for p in cache.prefixes(row)),
        AccessTechnologyType(cache.get(row, "att")),
    ]
    if cache.get(row, "ts"):
        opts.append(Timestamp(cache.get(row, "ts")))
    ll_id = cache.ll_ids[row]
    if ll_id is not None:
        opts.append(MobileNodeLinkLayerIdentifier(ll_id))
    lla = cache.get(row, "lla")
    if lla != ALL_ZERO:
        opts.append(LinkLocalAddress(lla))
    return opts


class HelloSettings(Protocol):
    """What an HA-HELLO says of its sender (``LmaConfig``, lmaload sync's ``SenderConfig``)."""

    preference: int
    hello_lifetime: int
    hello_interval: int
    group_id: int


def hello(settings: HelloSettings, sequence: int, flags: int) -> HomeAgentHello:
    """The HA-HELLO (spec-digest §7.4) a member of the redundant set sends."""
    return HomeAgentHello(
        sequence,
        settings.preference,
        settings.hello_lifetime,
        settings.hello_interval,
        settings.group_id,
        flags,
    )


TakeoverKey = tuple[bytes, bytes | None, int | None]  # (MN-ID, MN LL-ID, ATT)


@dataclass
class Takeover:
    """A per-MAG hard-switch takeover at the standby (spec-digest §8.5, R16, R17, R29): the
    PBUs (as received, with their arrival times) held until the current LMA answers the SO-REQ,
    the latest one per mobile node interface — (MN-ID, MN LL-ID, ATT) — so that a MAG
    retransmitting while it waits replaces its PBU, which the PBA must match."""

    mag: IPv6Address
    current: IPv6Address
    interval: float = 1.0
    queued: dict[TakeoverKey, Datagram] = field(default_factory=dict)

    def hold(self, key: TakeoverKey, datagram: Datagram) -> None:
        self.queued[key] = datagram


@dataclass
class HaSwitch:
    """The HA Switch sent to one MAG after a HELLO-detected failure (§8.6, R28), retransmitted
    until a PBU from that MAG arrives."""

    mag: IPv6Address
    failed: IPv6Address
    interval: float
