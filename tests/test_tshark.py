"""Cross-check of the reference wire codec against tshark's Mobility Header dissector.

Every message kind lmaload.wire encodes goes into one capture: raw IPv6 (next header 135) in
Ethernet, and a subset also over UDP/5436 in IPv4 and IPv6 with the RFC 5844 inner IPv6
header. tshark dissects the capture once as PDML and every field it decodes must equal what
we encoded: MH header, fixed part, each option in wire order (padding included), the outer
IPv4/IPv6/UDP headers. The MH checksum, which tshark does not verify, is checked here over the
addresses tshark reports. A second run asserts that tshark flags nothing as malformed or as an
error (and a canary capture shows that this filter does catch both). The same comparison runs on
the spec's independently produced tests/data/vectors.pcap, as a check of the field extraction.

tshark 4.0 facts relied on (spec-digest §13.1):
* MH types >= 200 are "Unknown" with the Message Data as raw bytes, and options >= 200 are
  "Unknown (0x..)"; for those, only the raw octets can be compared.
* UDP/5436 needs ``-d udp.port==5436,ipv6``: RFC 5844 puts an inner IPv6 header in the payload.
* Home Agent Switch: the dissector returns 2 + 16·N instead of 6 + 2 + 16·N as the end of the
  fixed part, so option parsing starts 6 octets early, inside the last address. Only the fixed
  part of a HAS is comparable, and its bogus "options" may raise expert warnings.
* An unknown option's "Length" item is read from offset 1 of the Mobility Header, i.e. it
  shows the MH Header Len, not the option's Length; the item's octets are right and are used.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path

import pytest

from lmaload.pcap import (
    PMIP_UDP_PORT,
    ethernet_frame,
    ipv4_packet,
    ipv6_packet,
    read_packets,
    udp_datagram,
    write_pcap,
)
from lmaload.wire import (
    DEFAULT_CONFIG,
    AccessTechnologyType,
    BindingAck,
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
    Message,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    Option,
    ProxyBindingCacheInformation,
    RestartCounter,
    StateSync,
    Timestamp,
    WireConfig,
    decode_mh,
    encode_ipv6_mh,
)
from lmaload.wire import codepoints as cp
from lmaload.wire.messages import MH_HEADER_LENGTH
from tests.vectors import VECTORS, VECTORS_PCAP, vector_config

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

TSHARK_OPTIONS = (
    "-n",  # no name resolution: numeric addresses, and no DNS lookups
    "-d",
    f"udp.port=={PMIP_UDP_PORT},ipv6",
    "-o",
    "ip.check_checksum:TRUE",
    "-o",
    "udp.check_checksum:TRUE",
)
DOCUMENTATION_NETWORKS = (
    IPv6Network("2001:db8::/32"),
    IPv4Network("192.0.2.0/24"),
    IPv4Network("198.51.100.0/24"),
)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SEVERITY_WARNING = 0x00600000  # _ws.expert.severity values (tshark -G values)
T0 = 1_700_000_000.0

MAG = IPv6Address("2001:db8:aaaa::1")
LMA1 = IPv6Address("2001:db8:bbbb::1")
LMA2 = IPv6Address("2001:db8:cccc::1")
MAG_OUTER6 = IPv6Address("2001:db8:aaaa::10")
LMA1_OUTER6 = IPv6Address("2001:db8:bbbb::10")
MAG4 = IPv4Address("192.0.2.10")
LMA1_4 = IPv4Address("198.51.100.1")
LMA2_4 = IPv4Address("198.51.100.2")
MAG_PORT = 49152

HNP1 = HomeNetworkPrefix(IPv6Address("2001:db8:1::"), 64)
HNP2 = HomeNetworkPrefix(IPv6Address("2001:db8:2:300::"), 56)
HNP_ALL_ZERO = HomeNetworkPrefix(IPv6Address("::"), 0)
MNID1 = MobileNodeIdentifier(b"mn1@example.com")
MNID2 = MobileNodeIdentifier(b"001010123456789@nai.epc.mnc001.mcc001.3gppnetwork.org")
TS_V1 = Timestamp.from_unix(1251158400.5)  # the spec's V1: Aug 25, 2009 00:00:00.5 UTC
TS_DAY3 = Timestamp((1_233_619_200 << 16) | 0x0001)  # Feb  3, 2009 plus 1/65536 s
TS_LATE = Timestamp((1_700_000_123 << 16) | 0xFFFF)
TS_LMA = Timestamp((1_700_000_007 << 16) | 0x4000)
HI = {n: HandoffIndicator(n) for n in range(1, 6)}
ATT = {n: AccessTechnologyType(n) for n in (3, 4, 5, 8)}
MN_LL_ID = MobileNodeLinkLayerIdentifier(bytes.fromhex("02005e100001"))
LLA = LinkLocalAddress(IPv6Address("fe80::200:5eff:fe10:1"))
LLA_ALL_ZERO = LinkLocalAddress(IPv6Address("::"))
HOA_REQUEST = IPv4HomeAddressRequest(IPv4Address("192.0.2.77"), 24)
HOA_ALLOCATE = IPv4HomeAddressRequest(IPv4Address("0.0.0.0"))
HOA_REPLY = IPv4HomeAddressReply(0, IPv4Address("192.0.2.77"), 24)
HOA_REPLY_FAILED = IPv4HomeAddressReply(132, IPv4Address("0.0.0.0"))
DEFAULT_ROUTER = IPv4DefaultRouterAddress(IPv4Address("192.0.2.1"))
LFI = LmaFailureIndication(LMA1, IPv4Address("192.0.2.1"))
PBCI1 = ProxyBindingCacheInformation(cp.PBU_DEFAULT_FLAGS, 1, 900, 7, MAG)
PBCI2 = ProxyBindingCacheInformation(cp.PBU_DEFAULT_FLAGS | cp.BU_FLAG_H, 9, 12, 8, MAG)
SESSIONS = (PBCI1, MNID1, HNP1, TS_V1, ATT[4], PBCI2, MNID2, HNP2, ATT[8])
LITERAL_HAC = WireConfig(hac_mag_encoding="literal")
ALL_BU_FLAGS = sum(cp.BU_FLAG_NAMES)
ALL_BA_FLAGS = sum(cp.BA_FLAG_NAMES)


@dataclass(frozen=True)
class Udp:
    """RFC 5844 encapsulation: the IPv6 packet as the payload of a UDP datagram."""

    src: IPv4Address | IPv6Address
    dst: IPv4Address | IPv6Address
    sport: int
    dport: int


@dataclass(frozen=True)
class Sample:
    kind: str
    message: Message
    src: IPv6Address
    dst: IPv6Address
    udp: Udp | None = None
    config: WireConfig = DEFAULT_CONFIG


UDP4_UP = Udp(MAG4, LMA1_4, MAG_PORT, PMIP_UDP_PORT)
UDP4_DOWN = Udp(LMA1_4, MAG4, PMIP_UDP_PORT, MAG_PORT)
UDP6_UP = Udp(MAG_OUTER6, LMA1_OUTER6, MAG_PORT, PMIP_UDP_PORT)
UDP6_DOWN = Udp(LMA1_OUTER6, MAG_OUTER6, PMIP_UDP_PORT, MAG_PORT)

A_P = cp.BU_FLAG_A | cp.BU_FLAG_P
A_H_P = cp.BU_FLAG_A | cp.BU_FLAG_H | cp.BU_FLAG_P
PBU_INITIAL = BindingUpdate(1, 900, A_P, (HNP1, MNID1, TS_V1, HI[1], ATT[4]))
PBU_IPV4 = BindingUpdate(
    3, 900, A_P, (HNP1, MNID1, TS_V1, HI[1], ATT[4], IPv4CareOfAddress(MAG4), HOA_ALLOCATE)
)
PBA_IPV4 = BindingAck(
    0, 3, 900, cp.BA_FLAG_P, (HNP1, MNID1, TS_V1, HI[1], ATT[4], HOA_REPLY, DEFAULT_ROUTER)
)
HB_REQUEST = Heartbeat(7)
HB_RESPONSE = Heartbeat(7, cp.HB_FLAG_R, (RestartCounter(1),))
SS_REPLY = StateSync(cp.SS_REPLY, 0x4321, cp.SS_FLAG_A, SESSIONS)
HELLO = HomeAgentHello(1, 100, 1800, 1, 1, cp.HELLO_FLAG_A | cp.HELLO_FLAG_R)

SAMPLES: tuple[Sample, ...] = (
    Sample("PBU A|P HI1 ATT4 TS", PBU_INITIAL, MAG, LMA1),
    Sample(
        "PBU A|H|P 2 HNPs HI2 ATT3 LL-ID LLA",
        BindingUpdate(2, 3600 // 4, A_H_P, (MNID2, HNP1, HNP2, HI[2], ATT[3], MN_LL_ID, LLA)),
        MAG,
        LMA1,
    ),
    Sample(
        "PBU HI3 ATT8 ALL_ZERO HNP and LLA",
        BindingUpdate(0xFFFF, 65535, A_P, (MNID1, HNP_ALL_ZERO, HI[3], ATT[8], LLA_ALL_ZERO)),
        MAG,
        LMA1,
    ),
    Sample(
        "PBU HI5 IPv4 HoA request and CoA",
        BindingUpdate(
            4, 450, A_H_P, (MNID1, HNP1, HI[5], ATT[5], HOA_REQUEST, IPv4CareOfAddress(MAG4))
        ),
        MAG,
        LMA1,
    ),
    Sample(
        "PBU de-registration HI4",
        BindingUpdate(5, 0, A_P, (MNID1, HNP1, HI[4], ATT[4], TS_DAY3)),
        MAG,
        LMA1,
    ),
    Sample(
        "PBU HI5 LMA Failure Indication",
        BindingUpdate(6, 900, A_P, (MNID1, HNP1, HI[5], ATT[4], TS_LATE, LFI)),
        MAG,
        LMA2,
    ),
    Sample("BU every flag bit", BindingUpdate(7, 1, ALL_BU_FLAGS, (MNID1,)), MAG, LMA1),
    Sample(
        "PBA 0 IPv4 HoA reply router DHCP server",
        BindingAck(
            0,
            1,
            900,
            cp.BA_FLAG_P,
            (
                HNP1,
                MNID1,
                TS_V1,
                HI[1],
                ATT[4],
                HOA_REPLY,
                DEFAULT_ROUTER,
                IPv4DhcpSupportMode(True),
            ),
        ),
        LMA1,
        MAG,
    ),
    Sample(
        "PBA 153 not LMA for MN",
        BindingAck(153, 2, 0, cp.BA_FLAG_P, (MNID2, HNP1, HNP2, HI[2], ATT[3])),
        LMA1,
        MAG,
    ),
    Sample(
        "PBA 156 timestamp mismatch",
        BindingAck(156, 5, 0, cp.BA_FLAG_P, (MNID1, HNP1, HI[4], ATT[4], TS_LMA)),
        LMA1,
        MAG,
    ),
    Sample(
        "PBA 130 IPv4 HoA reply 132 DHCP relay",
        BindingAck(
            130,
            4,
            0,
            cp.BA_FLAG_P,
            (MNID1, HNP1, HI[5], ATT[5], HOA_REPLY_FAILED, IPv4DhcpSupportMode(False)),
        ),
        LMA1,
        MAG,
    ),
    Sample("BA every flag bit", BindingAck(0, 7, 1, ALL_BA_FLAGS, (MNID1,)), LMA1, MAG),
    Sample("Binding Error status 2", BindingError(2), LMA1, MAG),
    Sample(
        "Binding Error status 1 with HoA",
        BindingError(1, IPv6Address("2001:db8:1::10")),
        LMA1,
        MAG,
    ),
    Sample(
        "HAS 1 address with LFI",
        HomeAgentSwitch((LMA2,), options=(LmaFailureIndication(LMA1),)),
        LMA2,
        MAG,
    ),
    Sample("HAS 2 addresses I flag", HomeAgentSwitch((LMA2, LMA1), cp.HAS_FLAG_I), LMA2, MAG),
    Sample("Heartbeat request", HB_REQUEST, MAG, LMA1),
    Sample("Heartbeat response RC", HB_RESPONSE, LMA1, MAG),
    Sample(
        "Heartbeat unsolicited response",
        Heartbeat(0x89ABCDEF, cp.HB_FLAG_U | cp.HB_FLAG_R, (RestartCounter(0xFFFFFFFE),)),
        LMA1,
        MAG,
    ),
    Sample(
        "SS-REQ",
        StateSync(cp.SS_REQUEST, 0x4321, cp.SS_FLAG_A, (MNID1, HNP_ALL_ZERO)),
        LMA2,
        LMA1,
    ),
    Sample("SS-REP flat", SS_REPLY, LMA1, LMA2),
    Sample(
        "SS-REP nested M flag",
        StateSync(
            cp.SS_REPLY,
            0x4321,
            cp.SS_FLAG_A | cp.SS_FLAG_M,
            (replace(PBCI1, nested=True), MNID1, HNP1, TS_V1, ATT[4]),
        ),
        LMA1,
        LMA2,
    ),
    Sample("SS-ACK", StateSync(cp.SS_ACK, 0x4321), LMA2, LMA1),
    Sample(
        "SO-REQ",
        HomeAgentControl(cp.HAC_SWITCHOVER_REQUEST, mag_address=MAG),
        LMA2,
        LMA1,
    ),
    Sample(
        "SO-REQ literal",
        HomeAgentControl(cp.HAC_SWITCHOVER_REQUEST, mag_address=MAG),
        LMA2,
        LMA1,
        config=LITERAL_HAC,
    ),
    Sample("SO-REP", HomeAgentControl(cp.HAC_SWITCHOVER_REPLY, 0, MAG), LMA1, LMA2),
    Sample("SO-REP 130", HomeAgentControl(cp.HAC_SWITCHOVER_REPLY, 130, MAG), LMA1, LMA2),
    Sample("SW-COMP", HomeAgentControl(cp.HAC_SWITCH_COMPLETE, 0, MAG), LMA2, LMA1),
    Sample("HA-HELLO", HELLO, LMA1, LMA2),
    Sample("UDP4 PBU", PBU_IPV4, MAG, LMA1, UDP4_UP),
    Sample("UDP4 PBA", PBA_IPV4, LMA1, MAG, UDP4_DOWN),
    Sample("UDP4 Heartbeat request", HB_REQUEST, MAG, LMA1, UDP4_UP),
    Sample("UDP4 Heartbeat response", HB_RESPONSE, LMA1, MAG, UDP4_DOWN),
    Sample(
        "UDP4 HA-HELLO",
        HELLO,
        LMA1,
        LMA2,
        Udp(LMA1_4, LMA2_4, PMIP_UDP_PORT, PMIP_UDP_PORT),
    ),
    Sample("UDP6 PBU", PBU_INITIAL, MAG, LMA1, UDP6_UP),
    Sample("UDP6 PBA", PBA_IPV4, LMA1, MAG, UDP6_DOWN),
    Sample("UDP6 SS-REP", SS_REPLY, LMA1, LMA2, Udp(LMA1_OUTER6, LMA2, 5436, 5436)),
)


def ip_packet(
    src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, protocol: int, payload: bytes
) -> bytes:
    if src.version == 4:
        return ipv4_packet(src, dst, protocol, payload)
    return ipv6_packet(src, dst, protocol, payload)


def build_frame(sample: Sample) -> bytes:
    packet = encode_ipv6_mh(sample.message, sample.src, sample.dst, sample.config)
    if sample.udp is not None:
        udp = sample.udp
        datagram = udp_datagram(udp.src, udp.dst, udp.sport, udp.dport, packet)
        packet = ip_packet(udp.src, udp.dst, 17, datagram)
    return ethernet_frame(packet)


# --- running tshark and reading PDML ------------------------------------------------------------


@dataclass(frozen=True)
class Tshark:
    """Runs tshark with an empty configuration directory, which keeps personal preferences and
    Decode As entries out of the results."""

    config_dir: Path

    def run(self, pcap: Path, *args: str) -> str:
        assert TSHARK is not None
        result = subprocess.run(
            [TSHARK, "-r", str(pcap), *TSHARK_OPTIONS, *args],
            capture_output=True,
            text=True,
            env={**os.environ, "WIRESHARK_CONFIG_DIR": str(self.config_dir)},
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def dissect(self, pcap: Path) -> list[ET.Element]:
        """The PDML of each frame of ``pcap``, in frame order."""
        return ET.fromstring(self.run(pcap, "-T", "pdml")).findall("packet")

    def malformed_or_erroneous(self, pcap: Path) -> list[int]:
        """Numbers of the frames tshark marks malformed or gives an error-level expert info."""
        display_filter = "_ws.malformed || _ws.expert.severity == error"
        out = self.run(pcap, "-Y", display_filter, "-T", "fields", "-e", "frame.number")
        return [int(line) for line in out.split()]


def only(elements: Iterable[ET.Element]) -> ET.Element:
    found = list(elements)
    assert len(found) == 1, [e.get("name") or e.get("show") for e in found]
    return found[0]


def protos(packet: ET.Element, *names: str) -> list[ET.Element]:
    return [p for p in packet.iter("proto") if p.get("name") in names]


def field_show(element: ET.Element, name: str) -> str:
    return only(f for f in element.iter("field") if f.get("name") == name).get("show", "")


def ignored(name: str) -> bool:
    # Reserved fields are covered by the raw octets; expert items are checked separately.
    return name.endswith(".reserved") or name.startswith("_ws.expert")


def shown_fields(element: ET.Element) -> list[tuple[str, str]]:
    """The (name, show) of the direct children, plus the seconds tshark derives from lifetimes."""
    fields = []
    for child in element:
        name = child.get("name", "")
        if ignored(name):
            continue
        fields.append((name, child.get("show", "")))
        if name.endswith(".lifetime"):
            seconds = re.search(r"\((\d+) seconds\)", child.get("showname", ""))
            fields.append((f"{name} seconds", seconds.group(1) if seconds else "?"))
    return fields


PADDING = ("mip6.options.pad1", "mip6.options.padn")


def decoded_option(element: ET.Element) -> tuple[str, list[tuple[str, str]]]:
    name = element.get("name", "")
    tlv = ("tlv", element.get("value", ""))
    if name in PADDING:
        return name, [tlv]
    if not name:
        # An option type tshark does not know. Its "Length" child is the MH Header Len (see the
        # module docstring), so only the type and the item's octets are taken.
        return "unknown", [("mip6.mobility_opt", field_show(element, "mip6.mobility_opt")), tlv]
    return name, [*shown_fields(element), tlv]


@dataclass(frozen=True)
class DecodedMH:
    """What tshark shows of one Mobility Header."""

    header: list[tuple[str, str]]
    fixed: tuple[str, str, list[tuple[str, str]]]  # title, octets (hex), fields
    options: list[tuple[str, list[tuple[str, str]]]] | None  # None: not compared


def decoded_mh(packet: ET.Element) -> DecodedMH:
    mh = only(protos(packet, "mipv6"))
    header: list[tuple[str, str]] = []
    fixed: tuple[str, str, list[tuple[str, str]]] = ("", "", [])
    # tshark misplaces the options of a Home Agent Switch (module docstring): not compared.
    options = None if int(field_show(mh, "mip6.mhtype")) == cp.MH_HOME_AGENT_SWITCH else []
    for child in mh:
        name, show = child.get("name", ""), child.get("show", "")
        if name == "mip6.unknown_type_data":
            fixed = ("Message Data", child.get("value", ""), [])
        elif name.startswith("mip6."):
            if not ignored(name):
                header.append((name, show))
        elif show == "Mobility Options":
            if options is not None:
                options = [decoded_option(option) for option in child]
        elif not name:
            fixed = (show, child.get("value", ""), shown_fields(child))
    return DecodedMH(header, fixed, options)


def mh_octets(packet: ET.Element, frame: bytes) -> bytes:
    """The octets of the frame that tshark dissected as the Mobility Header."""
    mh = only(protos(packet, "mipv6"))
    start = int(mh.get("pos", "-1"))
    return frame[start : start + int(mh.get("size", "0"))]


NETWORK_FIELDS = {
    "ip": ("ip.src", "ip.dst", "ip.proto", "ip.len", "ip.checksum.status"),
    "udp": ("udp.srcport", "udp.dstport", "udp.length", "udp.checksum.status"),
    "ipv6": ("ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.plen"),
}


def network_layers(packet: ET.Element) -> list[tuple[str, list[str]]]:
    """The IPv4, UDP and IPv6 headers of the frame, outermost first, as NETWORK_FIELDS."""
    layers = []
    for proto in protos(packet, *NETWORK_FIELDS):
        name = proto.get("name", "")
        own = [f for f in proto if f.tag == "field"]
        shown = {f.get("name"): f.get("show", "") for f in own}
        for field in own:  # ip/udp checksum status sits one level down
            shown.update({c.get("name"): c.get("show", "") for c in field if c.tag == "field"})
        layers.append((name, [shown.get(f, "missing") for f in NETWORK_FIELDS[name]]))
    return layers


def warnings(packets: list[ET.Element], exempt: set[int]) -> dict[int, list[str]]:
    """Frame number → what tshark found wrong with it (malformed, expert infos of Warning level
    or above), for the frames not in ``exempt``."""
    found = {}
    for number, packet in enumerate(packets, 1):
        problems = [
            expert.get("showname", "")
            for expert in packet.iter("field")
            if expert.get("name") == "_ws.expert"
            and int(field_show(expert, "_ws.expert.severity")) >= SEVERITY_WARNING
        ]
        if any(proto.get("name") == "_ws.malformed" for proto in packet.iter("proto")):
            problems.append("malformed")
        if problems and number not in exempt:
            found[number] = problems
    return found


# --- what tshark should show for what we encoded ------------------------------------------------


def flag(word: int, bit: int) -> str:
    return "1" if word & bit else "0"


def tshark_time(value: int) -> str:
    """A 48.16 RFC 5213 timestamp as tshark prints an absolute UTC time (day padded by space)."""
    when = datetime.fromtimestamp(value >> 16, UTC)
    nanoseconds = (value & 0xFFFF) * 10**9 // 65536
    clock = f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}.{nanoseconds:09d}"
    return f"{MONTHS[when.month - 1]} {when.day:2d}, {when.year} {clock} UTC"


def lifetime_fields(name: str, lifetime: int) -> list[tuple[str, str]]:
    # tshark shows the raw 4-second units and, in the label, the seconds they stand for.
    return [(name, str(lifetime)), (f"{name} seconds", str(lifetime * 4))]


def expected_fixed(message: Message, mh: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    if isinstance(message, BindingUpdate):
        f = message.flags
        fields = [
            ("mip6.bu.seqnr", str(message.sequence)),
            ("mip6.bu.a_flag", flag(f, cp.BU_FLAG_A)),
            ("mip6.bu.h_flag", flag(f, cp.BU_FLAG_H)),
            ("mip6.bu.l_flag", flag(f, cp.BU_FLAG_L)),
            ("mip6.bu.k_flag", flag(f, cp.BU_FLAG_K)),
            ("mip6.bu.m_flag", flag(f, cp.BU_FLAG_M)),
            ("mip6.nemo.bu.r_flag", flag(f, cp.BU_FLAG_R)),
            ("mip6.bu.p_flag", flag(f, cp.BU_FLAG_P)),
            ("mip6.bu.f_flag", flag(f, cp.BU_FLAG_F)),
            ("mip6.bu.t_flag", flag(f, cp.BU_FLAG_T)),
            ("mip6.bu.b_flag", flag(f, cp.BU_FLAG_B)),
            *lifetime_fields("mip6.bu.lifetime", message.lifetime),
        ]
        return "Binding Update", mh[6:12].hex(), fields
    if isinstance(message, BindingAck):
        f = message.flags
        fields = [
            ("mip6.ba.status", str(message.status)),
            ("mip6.ba.k_flag", flag(f, cp.BA_FLAG_K)),
            ("mip6.nemo.ba.r_flag", flag(f, cp.BA_FLAG_R)),
            ("mip6.ba.p_flag", flag(f, cp.BA_FLAG_P)),
            ("mip6.ba.t_flag", flag(f, cp.BA_FLAG_T)),
            ("mip6.ba.b_flag", flag(f, cp.BA_FLAG_B)),
            ("mip6.ba.seqnr", str(message.sequence)),
            *lifetime_fields("mip6.ba.lifetime", message.lifetime),
        ]
        return "Binding Acknowledgement", mh[6:12].hex(), fields
    if isinstance(message, BindingError):
        fields = [
            ("mip6.be.status", str(message.status)),
            ("mip6.be.haddr", str(message.home_address)),
        ]
        return "Binding Error", mh[6:24].hex(), fields
    if isinstance(message, HomeAgentSwitch):
        addresses = [("mip6.has.address", str(a)) for a in message.addresses]
        fields = [("mip6.has.num_addrs", str(len(message.addresses))), *addresses]
        return "Home Agent Switch", mh[6 : 8 + 16 * len(message.addresses)].hex(), fields
    if isinstance(message, Heartbeat):
        fields = [
            ("mip6.hb.u_flag", flag(message.flags, cp.HB_FLAG_U)),
            ("mip6.hb.r_flag", flag(message.flags, cp.HB_FLAG_R)),
            ("mip6.hb.seqnr", str(message.sequence)),
        ]
        return "Heartbeat", mh[6:12].hex(), fields
    return "Message Data", mh[MH_HEADER_LENGTH:].hex(), []


def expected_option(option: Option, config: WireConfig) -> tuple[str, list[tuple[str, str]]]:
    body = option.pack()
    tlv = ("tlv", (bytes([option.type_code(config), len(body)]) + body).hex())
    length = ("mip6.mobility_opt.len", str(len(body)))
    fields: list[tuple[str, str]]
    if isinstance(option, HomeNetworkPrefix):
        name = "mip6.options.hnp"
        fields = [
            ("mip6.nemo.mnp.pfl", str(option.prefix_length)),
            ("mip6.nemo.mnp.mnp", str(option.prefix)),
        ]
    elif isinstance(option, MobileNodeIdentifier):
        name = "mip6.options.mnid"
        fields = [
            ("mip6.mnid.subtype", str(option.subtype)),
            ("mip6.mnid.identifier", option.identifier.decode("ascii")),
        ]
    elif isinstance(option, HandoffIndicator):
        name, fields = "mip6.options.hi", [("mip6.hi", str(option.value))]
    elif isinstance(option, AccessTechnologyType):
        name, fields = "mip6.options.att", [("mip6.att", str(option.value))]
    elif isinstance(option, MobileNodeLinkLayerIdentifier):
        name, fields = "mip6.options.mnlli", [("mip6.mnlli.lli", option.identifier.hex(":"))]
    elif isinstance(option, LinkLocalAddress):
        name, fields = "mip6.options.lla", [("mip6.lila_lla", str(option.address))]
    elif isinstance(option, Timestamp):
        name, fields = "mip6.options.ts", [("mip6.timestamp_tmp", tshark_time(option.value))]
    elif isinstance(option, RestartCounter):
        name, fields = "mip6.options.rc", [("mip6.rc", str(option.counter))]
    elif isinstance(option, IPv4CareOfAddress):
        name, fields = "mip6.options.ipv4coa", [("mip6.ipv4coa.addr", str(option.address))]
    elif isinstance(option, IPv4HomeAddressRequest):
        name = "mip6.options.ipv4hareq"
        fields = [
            ("mip6.ipv4ha.preflen", str(option.prefix_length)),
            ("mip6.ipv4ha.ha", str(option.address)),
        ]
    elif isinstance(option, IPv4HomeAddressReply):
        name = "mip6.options.ipv4harep"
        fields = [
            ("mip6.ipv4aa.sts", str(option.status)),
            ("mip6.ipv4ha.preflen", str(option.prefix_length)),
            ("mip6.ipv4ha.ha", str(option.address)),
        ]
    elif isinstance(option, IPv4DefaultRouterAddress):
        name, fields = "mip6.options.ipv4dra", [("mip6.ipv4dra.dra", str(option.address))]
    elif isinstance(option, IPv4DhcpSupportMode):
        name, fields = "mip6.options.ipv4dsm", [("mip6.ipv4dsm.s_flag", str(int(option.server)))]
    else:
        # Our TBD options (>= 200) are unknown to tshark.
        return "unknown", [("mip6.mobility_opt", str(option.type_code(config))), tlv]
    return name, [length, *fields, tlv]


def expected_options(
    message: Message, mh: bytes, config: WireConfig
) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each option in wire order, with the Pad1/PadN our encoder put between them (found by
    walking the TLVs of ``mh``)."""
    options = iter(message.options)
    out = []
    offset = MH_HEADER_LENGTH + len(message.pack(config)[0])
    while offset < len(mh):
        kind = mh[offset]
        if kind == cp.OPT_PAD1:
            out.append(("mip6.options.pad1", [("tlv", "00")]))
            offset += 1
            continue
        end = offset + 2 + mh[offset + 1]
        if kind == cp.OPT_PADN:
            assert mh[offset + 2 : end] == bytes(end - offset - 2), "PadN with non-zero data"
            out.append(("mip6.options.padn", [("tlv", mh[offset:end].hex())]))
        else:
            option = next(options)
            assert option.type_code(config) == kind
            out.append(expected_option(option, config))
        offset = end
    assert next(options, None) is None
    return out


def expected_mh(message: Message, mh: bytes, config: WireConfig) -> DecodedMH:
    header = [
        ("mip6.proto", str(cp.PAYLOAD_PROTO_NONE)),
        ("mip6.hlen", str(len(mh) // 8 - 1)),
        ("mip6.mhtype", str(message.type_code(config))),
        ("mip6.csum", f"0x{int.from_bytes(mh[4:6], 'big'):04x}"),
    ]
    fixed = expected_fixed(message, mh)
    if isinstance(message, HomeAgentSwitch):
        return DecodedMH(header, fixed, None)  # tshark misplaces HAS options (module docstring)
    if message.type_code(config) not in cp.FIXED_MH_TYPES:
        return DecodedMH(header, fixed, [])  # tshark does not look for options in unknown types
    return DecodedMH(header, fixed, expected_options(message, mh, config))


def expected_layers(
    src: IPv6Address, dst: IPv6Address, mh: bytes, udp: Udp | None
) -> list[tuple[str, list[str]]]:
    inner = ("ipv6", [str(src), str(dst), "135", str(len(mh))])
    if udp is None:
        return [inner]
    udp_length = 8 + 40 + len(mh)
    if udp.src.version == 4:
        outer = ("ip", [str(udp.src), str(udp.dst), "17", str(20 + udp_length), "1"])
    else:
        outer = ("ipv6", [str(udp.src), str(udp.dst), "17", str(udp_length)])
    # checksum.status 1 is "Good": tshark verified the checksum (-o udp.check_checksum:TRUE).
    datagram = ("udp", [str(udp.sport), str(udp.dport), str(udp_length), "1"])
    return [outer, datagram, inner]


def ones_complement_sum(data: bytes) -> int:
    """Folded 16-bit one's complement sum, independent of lmaload's checksum code."""
    data += bytes(len(data) % 2)
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def check_frame(packet: ET.Element, frame: bytes, message: Message, config: WireConfig) -> None:
    """Assert that tshark's dissection of ``frame`` shows exactly ``message`` as we encoded it,
    and that the MH checksum verifies over the inner addresses tshark reports."""
    mh = mh_octets(packet, frame)
    inner = protos(packet, "ipv6")[-1]
    src = IPv6Address(field_show(inner, "ipv6.src"))
    dst = IPv6Address(field_show(inner, "ipv6.dst"))
    assert mh == encode_ipv6_mh(message, src, dst, config)[40:]
    pseudo_header = src.packed + dst.packed + struct.pack("!I3xB", len(mh), cp.IPPROTO_MH)
    assert ones_complement_sum(pseudo_header + mh) == 0xFFFF, "MH checksum does not verify"
    assert decoded_mh(packet) == expected_mh(message, mh, config)


# --- the tests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capture:
    path: Path
    frames: list[bytes]
    packets: list[ET.Element]


@pytest.fixture(scope="module")
def tshark(tmp_path_factory: pytest.TempPathFactory) -> Tshark:
    return Tshark(tmp_path_factory.mktemp("wireshark-config"))


@pytest.fixture(scope="module")
def capture(tshark: Tshark, tmp_path_factory: pytest.TempPathFactory) -> Capture:
    path = tmp_path_factory.mktemp("tshark") / "mobility.pcap"
    frames = [build_frame(sample) for sample in SAMPLES]
    write_pcap(path, [(T0 + i / 1000, frame) for i, frame in enumerate(frames)])
    packets = tshark.dissect(path)
    assert len(packets) == len(frames)
    return Capture(path, frames, packets)


@cache
def sample_index(kind: str) -> int:
    return next(i for i, sample in enumerate(SAMPLES) if sample.kind == kind)


def test_samples_cover_every_message_kind() -> None:
    assert len({s.kind for s in SAMPLES}) == len(SAMPLES)
    kinds = {type(s.message) for s in SAMPLES}
    assert kinds == {
        BindingUpdate,
        BindingAck,
        BindingError,
        HomeAgentSwitch,
        Heartbeat,
        StateSync,
        HomeAgentControl,
        HomeAgentHello,
    }
    state_sync = {s.message.ss_type for s in SAMPLES if isinstance(s.message, StateSync)}
    assert state_sync == {cp.SS_REQUEST, cp.SS_REPLY, cp.SS_ACK}
    control = {s.message.hac_type for s in SAMPLES if isinstance(s.message, HomeAgentControl)}
    assert control == {
        cp.HAC_SWITCHOVER_REQUEST,
        cp.HAC_SWITCHOVER_REPLY,
        cp.HAC_SWITCH_COMPLETE,
    }
    assert {s.udp.src.version for s in SAMPLES if s.udp is not None} == {4, 6}
    for sample in SAMPLES:
        addresses = [sample.src, sample.dst]
        if sample.udp is not None:
            addresses += [sample.udp.src, sample.udp.dst]
        for address in addresses:
            assert any(address in net for net in DOCUMENTATION_NETWORKS), (sample.kind, address)


@pytest.mark.parametrize("kind", [s.kind for s in SAMPLES])
def test_tshark_decodes_what_we_encoded(capture: Capture, kind: str) -> None:
    index = sample_index(kind)
    sample, packet, frame = SAMPLES[index], capture.packets[index], capture.frames[index]
    assert int(field_show(packet, "frame.number")) == index + 1
    via = {None: "", 4: "ip:udp:", 6: "ipv6:udp:"}[sample.udp and sample.udp.src.version]
    assert field_show(packet, "frame.protocols") == f"eth:ethertype:{via}ipv6:mipv6"
    expected = expected_layers(sample.src, sample.dst, mh_octets(packet, frame), sample.udp)
    assert network_layers(packet) == expected
    check_frame(packet, frame, sample.message, sample.config)


def test_tshark_flags_nothing_malformed_or_erroneous(
    tshark: Tshark, capture: Capture, tmp_path: Path
) -> None:
    assert tshark.malformed_or_erroneous(capture.path) == []
    # The filter is live: it catches a bad UDP checksum and a Mobility Header cut short.
    good = build_frame(SAMPLES[sample_index("UDP4 PBU")])
    bad_checksum = good[:-1] + bytes([good[-1] ^ 0xFF])
    truncated = ethernet_frame(ipv6_packet(MAG, LMA1, cp.IPPROTO_MH, bytes([59, 8, 5, 0, 0, 0])))
    canary = tmp_path / "canary.pcap"
    write_pcap(canary, [(T0, bad_checksum), (T0 + 1, truncated), (T0 + 2, good)])
    assert tshark.malformed_or_erroneous(canary) == [1, 2]


def test_tshark_warns_only_about_home_agent_switch(capture: Capture) -> None:
    """Stricter than the error check: no warnings at all, except on Home Agent Switch frames,
    whose options tshark parses from the wrong offset (module docstring); "HAS 2 addresses"
    gets "PadN (length byte past end of options)" from tshark 4.0.17."""
    has_frames = {
        i + 1 for i, sample in enumerate(SAMPLES) if isinstance(sample.message, HomeAgentSwitch)
    }
    assert warnings(capture.packets, exempt=has_frames) == {}


def test_vectors_pcap_decodes_like_our_codec(tshark: Tshark) -> None:
    """The spec's independently produced capture, read through the same field extraction."""
    frames = [packet.data for packet in read_packets(VECTORS_PCAP)]
    packets = tshark.dissect(VECTORS_PCAP)
    assert len(frames) == len(packets) == len(VECTORS)
    has_frames = set()
    rows = zip(VECTORS, frames, packets, strict=True)
    for number, (vector, frame, packet) in enumerate(rows, 1):
        mh = mh_octets(packet, frame)
        assert mh.hex() == vector["hex"], vector["name"]
        inner = protos(packet, "ipv6")[-1]
        src = IPv6Address(field_show(inner, "ipv6.src"))
        dst = IPv6Address(field_show(inner, "ipv6.dst"))
        assert (str(src), str(dst)) == (vector["src"], vector["dst"])
        config = vector_config(vector)
        message = decode_mh(mh, src, dst, config).message
        if isinstance(message, HomeAgentSwitch):
            has_frames.add(number)
        udp = vector.get("udp4")
        outer = None
        if isinstance(udp, dict):
            outer = Udp(ip_address(udp["src"]), ip_address(udp["dst"]), udp["sport"], udp["dport"])
        assert network_layers(packet) == expected_layers(src, dst, mh, outer), vector["name"]
        check_frame(packet, frame, message, config)
    assert has_frames
    assert warnings(packets, exempt=has_frames) == {}
    assert tshark.malformed_or_erroneous(VECTORS_PCAP) == []
