"""Hypothesis strategies for every option and message of lmaload.wire, under a given WireConfig."""

from ipaddress import IPv4Address, IPv6Address

from hypothesis import strategies as st

from lmaload.wire import (
    AccessTechnologyType,
    AlternateCareOfAddress,
    BindingAck,
    BindingCacheInformation,
    BindingError,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeAgentControl,
    HomeAgentHello,
    HomeAgentSwitch,
    HomeNetworkPrefix,
    IPv4CareOfAddress,
    IPv4DefaultRouterAddress,
    IPv4DhcpSupportMode,
    IPv4HomeAddressReply,
    IPv4HomeAddressRequest,
    LinkLocalAddress,
    LmaFailureIndication,
    MagAddress,
    Message,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    Option,
    ProxyBindingCacheInformation,
    RestartCounter,
    StateSync,
    Timestamp,
    UnknownMessage,
    UnknownOption,
    VendorSpecific,
    WireConfig,
)
from lmaload.wire.messages import message_classes
from lmaload.wire.options import option_classes

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
ipv6 = st.binary(min_size=16, max_size=16).map(IPv6Address)
ipv4 = st.binary(min_size=4, max_size=4).map(IPv4Address)


def pbci(nested: bool = False) -> st.SearchStrategy[ProxyBindingCacheInformation]:
    return st.builds(ProxyBindingCacheInformation, u16, u16, u16, u32, ipv6, nested=st.just(nested))


def mn_options() -> st.SearchStrategy[Option]:
    """The options that describe one mobile node (what follows a PBCI, spec-digest §8.1)."""
    return st.one_of(
        st.builds(MobileNodeIdentifier, st.binary(max_size=60), u8),
        st.builds(HomeNetworkPrefix, ipv6, st.integers(0, 128)),
        st.builds(HandoffIndicator, u8),
        st.builds(AccessTechnologyType, u8),
        st.builds(MobileNodeLinkLayerIdentifier, st.binary(max_size=20)),
        st.builds(LinkLocalAddress, ipv6),
        st.builds(Timestamp, st.integers(0, 2**64 - 1)),
        st.builds(IPv4CareOfAddress, ipv4),
        st.builds(IPv4HomeAddressRequest, ipv4, st.integers(0, 63)),
        st.builds(IPv4HomeAddressReply, u8, ipv4, st.integers(0, 63)),
        st.builds(IPv4DefaultRouterAddress, ipv4),
    )


def options(config: WireConfig, *, mag_address: bool = True) -> st.SearchStrategy[Option]:
    """Any single option, including unknown types (never Pad1/PadN, which are framing)."""
    known = set(option_classes(config)) | {0, 1}
    others = [
        mn_options(),
        st.builds(AlternateCareOfAddress, ipv6),
        st.builds(MobileNodeIdentifier, st.binary(max_size=254), u8),
        st.builds(VendorSpecific, st.binary(max_size=255)),
        st.builds(MobileNodeLinkLayerIdentifier, st.binary(max_size=253)),
        st.builds(RestartCounter, u32),
        st.builds(IPv4DhcpSupportMode, st.booleans()),
        st.builds(BindingCacheInformation, u16, u16, u16, ipv6, ipv6),
        pbci(),
        st.builds(LmaFailureIndication, ipv6, st.none() | ipv4),
        st.builds(UnknownOption, u8.filter(lambda t: t not in known), st.binary(max_size=255)),
    ]
    if mag_address:
        others.append(st.builds(MagAddress, ipv6))
    return st.one_of(*others)


def option_lists(config: WireConfig, *, mag_address: bool = True, max_size: int = 10):
    return st.lists(options(config, mag_address=mag_address), max_size=max_size).map(tuple)


@st.composite
def sync_options(draw: st.DrawFn, config: WireConfig) -> tuple[Option, ...]:
    """State Synchronization content: sessions of a (P)BCI, flat or nested, and MN options."""
    out: list[Option] = list(draw(st.lists(mn_options(), max_size=2)))  # e.g. SS-REQ targets
    for _ in range(draw(st.integers(0, 6))):
        out.append(
            draw(
                st.one_of(
                    pbci(nested=False),
                    pbci(nested=True),
                    st.builds(BindingCacheInformation, u16, u16, u16, ipv6, ipv6),
                )
            )
        )
        out += draw(st.lists(mn_options(), max_size=5))
    return tuple(out)


def messages(config: WireConfig) -> st.SearchStrategy[Message]:
    """Any message, with random options, that encodes under ``config``."""
    known = set(message_classes(config))
    hac_mag = ipv6 if config.hac_mag_encoding == "literal" else st.none() | ipv6
    return st.one_of(
        st.builds(BindingUpdate, u16, u16, u16, option_lists(config)),
        st.builds(BindingAck, u8, u16, u16, u8, option_lists(config)),
        st.builds(BindingError, u8, ipv6, option_lists(config)),
        st.builds(HomeAgentSwitch, st.lists(ipv6, max_size=6).map(tuple), u8, option_lists(config)),
        st.builds(Heartbeat, u32, u8, option_lists(config)),
        st.builds(StateSync, u8, u16, u8, sync_options(config)),
        st.builds(HomeAgentControl, u8, u8, hac_mag, option_lists(config, mag_address=False)),
        st.builds(HomeAgentHello, u16, u16, u16, u16, u8, u8, option_lists(config)),
        st.builds(
            UnknownMessage,
            u8.filter(lambda t: t not in known),
            st.integers(0, 40).flatmap(lambda n: st.binary(min_size=8 * n + 2, max_size=8 * n + 2)),
        ),
    )


@st.composite
def wire_configs(draw: st.DrawFn) -> WireConfig:
    """Random, valid choices for every TBD code point."""
    from lmaload.wire.codepoints import FIXED_MH_TYPES, FIXED_OPTION_TYPES

    mh = draw(
        st.lists(u8.filter(lambda t: t not in FIXED_MH_TYPES), min_size=4, max_size=4, unique=True)
    )
    opt = draw(
        st.lists(
            u8.filter(lambda t: t not in FIXED_OPTION_TYPES), min_size=5, max_size=5, unique=True
        )
    )
    return WireConfig(*mh, *opt, hac_mag_encoding=draw(st.sampled_from(["option", "literal"])))
