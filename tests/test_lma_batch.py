"""The LMA fast lane's codec (lmaload._ext.lma_batch) against the reference codec: scan_pbus
marks a datagram fast only when decode_mh and ProxyBindingUpdate.parse agree on every field,
encode_pbas writes encode_mh(BindingAck(...)) octet for octet, and unframe / frame are
split_ipv6_mh / ipv6_header."""

from __future__ import annotations

import random
import struct
from collections import Counter
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmaload._ext import framing, lma_batch
from lmaload.bulk_types import PBU_SCAN_DTYPE
from lmaload.protocol.pmip import ProxyBindingUpdate, build_pba
from lmaload.wire import (
    AccessTechnologyType,
    AlternateCareOfAddress,
    BindingAck,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeNetworkPrefix,
    IPv4CareOfAddress,
    IPv4HomeAddressRequest,
    LinkLocalAddress,
    LmaFailureIndication,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    Option,
    RestartCounter,
    Timestamp,
    UnknownOption,
    VendorSpecific,
    WireConfig,
    WireError,
)
from lmaload.wire import codepoints as cp
from lmaload.wire.checksum import mh_checksum
from lmaload.wire.codepoints import DEFAULT_CONFIG
from lmaload.wire.ipv6 import ipv6_header, split_ipv6_mh
from lmaload.wire.messages import decode_mh, encode_mh
from tests.plain_mag import LAYOUTS, OPMIP_FRAME_3, OPMIP_FRAME_ADDRESSES, plain_pbu
from tests.strategies import ipv6, messages, u8, u16, wire_configs

SHIFTED_CONFIG = WireConfig(150, 151, 152, 153, 50, 51, 52, 53, 54, hac_mag_encoding="literal")
MAG = IPv6Address("2001:db8:1::1")
LMA = IPv6Address("2001:db8:ffff::1")
FAST_OPTIONS = {
    MobileNodeIdentifier,
    HomeNetworkPrefix,
    HandoffIndicator,
    AccessTechnologyType,
    Timestamp,
    MobileNodeLinkLayerIdentifier,
    LmaFailureIndication,
}
REQUIRED = FAST_OPTIONS - {Timestamp, MobileNodeLinkLayerIdentifier, LmaFailureIndication}

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
configs = st.sampled_from([DEFAULT_CONFIG, SHIFTED_CONFIG]) | wire_configs()


# ---------------------------------------------------------------------------------------------
# The reference: what the fast lane must agree with


def reference_scan(data: bytes, src: bytes, dst: bytes, config: WireConfig) -> dict | None:
    """The record fields decode_mh + ProxyBindingUpdate.parse give for a fast-lane PBU, or None
    when the datagram is not one (it goes to the reference path)."""
    try:
        decoded = decode_mh(data, IPv6Address(src), IPv6Address(dst), config)
    except WireError:
        return None
    msg = decoded.message
    if decoded.checksum_ok is not True or not isinstance(msg, BindingUpdate):
        return None
    if not msg.flags & cp.BU_FLAG_P or msg.lifetime == 0:
        return None
    counts = Counter(type(o) for o in msg.options)
    if set(counts) - FAST_OPTIONS or not set(counts) >= REQUIRED or max(counts.values()) > 1:
        return None
    pbu = ProxyBindingUpdate.parse(msg, IPv6Address(src), IPv6Address(dst))
    assert pbu.mn_id is not None
    if pbu.mn_id.subtype != cp.MNID_SUBTYPE_NAI or not pbu.mn_id.identifier:
        return None
    (hnp,) = pbu.prefixes
    explicit = pbu.explicit_prefixes()
    network = explicit[0] if explicit else IPv6Network("::/0")
    return {
        "flags": msg.flags,
        "seq": msg.sequence,
        "lifetime": msg.lifetime,
        "mn": pbu.mn_id.identifier,
        "hnp": network.network_address.packed,
        "plen": hnp.prefix_length,
        "hnp_zero": int(not explicit),
        "hi": pbu.hi,
        "att": pbu.att,
        "ts": pbu.timestamp.value if pbu.timestamp is not None else None,
        "llid": pbu.ll_id,
        "lfi": int(pbu.lfi is not None),
    }


def record_fields(rec: np.void, buf: np.ndarray) -> dict:
    mn_start, mn_len = int(rec["mn_start"]), int(rec["mn_len"])
    llid_start, llid_len = int(rec["llid_start"]), int(rec["llid_len"])
    return {
        "flags": int(rec["flags"]),
        "seq": int(rec["seq"]),
        "lifetime": int(rec["lifetime"]),
        "mn": buf[mn_start : mn_start + mn_len].tobytes(),
        "hnp": rec["hnp"].tobytes(),
        "plen": int(rec["plen"]),
        "hnp_zero": int(rec["hnp_zero"]),
        "hi": int(rec["hi"]),
        "att": int(rec["att"]),
        "ts": int(rec["ts"]) if rec["has_ts"] else None,
        "llid": buf[llid_start : llid_start + llid_len].tobytes() if llid_len >= 0 else None,
        "lfi": int(rec["has_lfi"]),
    }


def addresses(values: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(values), dtype=np.uint8).reshape(-1, 16)


def pack_batch(datagrams: list[bytes], gaps: list[int]) -> tuple[np.ndarray, list, list]:
    """One buffer holding the datagrams apart by the given gaps of junk."""
    parts, starts, ends, pos = [], [], [], 0
    for data, gap in zip(datagrams, gaps, strict=True):
        parts.append(bytes([0xA5]) * gap)
        pos += gap
        starts.append(pos)
        parts.append(data)
        pos += len(data)
        ends.append(pos)
    return np.frombuffer(b"".join(parts), dtype=np.uint8), starts, ends


def scan(
    datagrams: list[bytes],
    srcs: list[bytes],
    dsts: list[bytes],
    config: WireConfig = DEFAULT_CONFIG,
    gaps: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    buf, starts, ends = pack_batch(datagrams, gaps or [0] * len(datagrams))
    out = lma_batch.scan_pbus(buf, starts, ends, addresses(srcs), addresses(dsts), config)
    return out, buf


def check_scan(
    datagrams: list[bytes],
    srcs: list[bytes],
    dsts: list[bytes],
    config: WireConfig,
    gaps: list[int] | None = None,
) -> np.ndarray:
    """fast == 1 exactly when the reference takes the datagram, with the reference's fields."""
    out, buf = scan(datagrams, srcs, dsts, config, gaps)
    assert out.dtype == PBU_SCAN_DTYPE and len(out) == len(datagrams)
    for rec, data, src, dst in zip(out, datagrams, srcs, dsts, strict=True):
        expected = reference_scan(data, src, dst, config)
        assert rec["fast"] == (expected is not None), data.hex()
        if expected is not None:
            assert record_fields(rec, buf) == expected, data.hex()
        else:
            assert rec["llid_len"] == -1
    return out


def with_checksum(data: bytes, src: bytes, dst: bytes) -> bytes:
    """data with its MH checksum field recomputed (when it has one)."""
    if len(data) < 6:
        return data
    zeroed = data[:4] + b"\0\0" + data[6:]
    value = mh_checksum(IPv6Address(src), IPv6Address(dst), zeroed)
    return zeroed[:4] + value.to_bytes(2, "big") + zeroed[6:]


# ---------------------------------------------------------------------------------------------
# Strategies

mn_ids = st.binary(min_size=1, max_size=200)
prefixes = st.one_of(
    st.just((IPv6Address(0), 0)),
    st.tuples(ipv6, st.integers(0, 128)),
    st.tuples(st.just(IPv6Address(0)), st.integers(1, 128)),
    st.tuples(ipv6, st.just(0)),
)


@st.composite
def fast_pbus(draw: st.DrawFn) -> tuple[BindingUpdate, bytes, bytes]:
    """A PBU the fast lane must take: the options in any order, random flags with P."""
    prefix, plen = draw(prefixes)
    opts: list[Option] = [
        MobileNodeIdentifier(draw(mn_ids)),
        HomeNetworkPrefix(prefix, plen),
        HandoffIndicator(draw(u8)),
        AccessTechnologyType(draw(u8)),
    ]
    if draw(st.booleans()):
        opts.append(Timestamp(draw(st.integers(0, 2**64 - 1))))
    if draw(st.booleans()):
        opts.append(MobileNodeLinkLayerIdentifier(draw(st.binary(max_size=40))))
    opts = draw(st.permutations(opts))
    flags = draw(u16) | cp.BU_FLAG_P
    msg = BindingUpdate(draw(u16), draw(st.integers(1, 0xFFFF)), flags, tuple(opts))
    return msg, draw(ipv6).packed, draw(ipv6).packed


def usually(draw: st.DrawFn) -> bool:
    """True seven times in eight (hypothesis favours small integers, so not integers(0, 7))."""
    return draw(st.sampled_from([True] * 7 + [False]))


def raw_option(draw: st.DrawFn, kinds: list[int]) -> bytes:
    """One option TLV as octets: one of ``kinds`` (or any type) with a length near, or at, its
    rule, reserved octets set; Pad1, or PadN of any content."""
    kind = draw(st.sampled_from(kinds)) if usually(draw) else draw(u8)
    if kind == cp.OPT_PAD1:
        return b"\0"
    near = {8: 6, 22: 18, 23: 2, 24: 2, 25: 6, 27: 8}.get(kind, 4)
    length = draw(st.integers(max(0, near - 2), near + 2) | st.integers(0, 40))
    if usually(draw) and kind in (22, 23, 24, 27):
        length = near
    body = bytearray(draw(st.binary(min_size=length, max_size=length)))
    if kind == cp.OPT_MN_IDENTIFIER and length and usually(draw):
        body[0] = cp.MNID_SUBTYPE_NAI
    if kind == cp.OPT_HOME_NETWORK_PREFIX and length >= 2 and usually(draw):
        body[1] = draw(st.integers(0, 130))
    return bytes([kind, length]) + bytes(body)


@st.composite
def raw_pbus(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    """A Binding Update assembled from raw TLVs (odd padding, reserved octets, lengths near
    their rule), usually with the four required options so that many come close to fast;
    checksum right."""
    tlvs = []
    required = {8: 0, 22: 0, 23: 0, 24: 0}
    for kind in required:
        if usually(draw):
            tlvs.append(raw_option(draw, [kind]))
    tlvs += [
        raw_option(draw, [0, 0, 1, 1, 25, 25, 27, 27, 8, 22, 23, 24, 3, 26, 19, 39])
        for _ in range(draw(st.integers(0, 3)))
    ]
    tlvs = draw(st.permutations(tlvs))
    body = b"".join(tlvs)
    if usually(draw):
        body += bytes(-(12 + len(body)) % 8)  # Pad1s to the boundary
    total = 12 + len(body)
    header_len = (total + 7) // 8 - 1 if usually(draw) else total // 8 - 1
    flags = draw(u16) | (cp.BU_FLAG_P * usually(draw))
    lifetime = draw(u16) if usually(draw) else 0
    fixed = struct.pack("!HHH", draw(u16), flags, lifetime)
    mh_type = cp.MH_BINDING_UPDATE if usually(draw) else draw(u8)
    data = bytes([cp.PAYLOAD_PROTO_NONE, header_len % 256, mh_type, draw(u8), 0, 0]) + fixed + body
    src, dst = draw(ipv6).packed, draw(ipv6).packed
    return with_checksum(data, src, dst), src, dst


@st.composite
def mutated(draw: st.DrawFn, base: tuple[bytes, bytes, bytes]) -> tuple[bytes, bytes, bytes]:
    """A datagram changed a little: octets flipped, truncated, extended or swapped addresses,
    the checksum recomputed half the time so that the change itself is what is tested."""
    data, src, dst = base
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["flip", "set", "truncate", "extend", "header_len", "swap"]))
        if how in ("flip", "set") and out:
            at = draw(st.integers(0, len(out) - 1))
            out[at] = out[at] ^ (1 << draw(st.integers(0, 7))) if how == "flip" else draw(u8)
        elif how == "truncate":
            del out[draw(st.integers(0, len(out))) :]
        elif how == "extend":
            out += draw(st.binary(min_size=1, max_size=16))
        elif how == "header_len" and len(out) > 1:
            out[1] = max(len(out) // 8 - 1, 0) % 256
        elif how == "swap":
            src, dst = dst, src
    data = bytes(out)
    if draw(st.booleans()):
        data = with_checksum(data, src, dst)
    return data, src, dst


def encoded(pbu: tuple[BindingUpdate, bytes, bytes], config=DEFAULT_CONFIG):
    msg, src, dst = pbu
    return encode_mh(msg, IPv6Address(src), IPv6Address(dst), config), src, dst


@st.composite
def any_datagrams(draw: st.DrawFn, config: WireConfig) -> tuple[bytes, bytes, bytes]:
    src, dst = draw(ipv6).packed, draw(ipv6).packed
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return encoded(draw(fast_pbus()), config)
    if choice == 1:
        return draw(mutated(encoded(draw(fast_pbus()), config)))
    if choice == 2:
        return draw(raw_pbus())
    if choice == 3:
        return draw(mutated(draw(raw_pbus())))
    if choice == 4:
        msg = draw(messages(config))
        try:
            data = encode_mh(msg, IPv6Address(src), IPv6Address(dst), config)
        except ValueError:  # over the MH limit
            data = b""
        return data, src, dst
    return draw(st.binary(max_size=80)), src, dst


# ---------------------------------------------------------------------------------------------
# scan_pbus


@SETTINGS
@given(st.lists(fast_pbus(), min_size=1, max_size=6), configs, st.data())
def test_scan_takes_every_fast_pbu(pbus, config: WireConfig, data: st.DataObject) -> None:
    datagrams = [encoded(p, config) for p in pbus]
    gaps = data.draw(st.lists(st.integers(0, 9), min_size=len(pbus), max_size=len(pbus)))
    out = check_scan(*map(list, zip(*datagrams, strict=True)), config, gaps)
    assert out["fast"].all()


@settings(SETTINGS, max_examples=400)
@given(st.data(), configs)
def test_scan_agrees_with_reference(data: st.DataObject, config: WireConfig) -> None:
    batch = data.draw(st.lists(any_datagrams(config), min_size=1, max_size=8))
    check_scan(*map(list, zip(*batch, strict=True)), config)


@settings(SETTINGS, max_examples=60)
@given(st.randoms(use_true_random=False))
def test_scan_slices_like_python(rng: random.Random) -> None:
    """Bounds out of range, negative or reversed slice buf as Python would."""
    msg, src, dst = encoded(
        (
            BindingUpdate(
                1,
                2,
                options=(
                    MobileNodeIdentifier(b"mn1@x"),
                    HomeNetworkPrefix(IPv6Address(0), 0),
                    HandoffIndicator(1),
                    AccessTechnologyType(4),
                ),
            ),
            MAG.packed,
            LMA.packed,
        )
    )
    buf = np.frombuffer(bytes(rng.randrange(256) for _ in range(rng.randrange(8))) + msg, np.uint8)
    n = 20
    starts = [rng.randrange(-len(buf) - 5, len(buf) + 5) for _ in range(n)]
    ends = [rng.randrange(-len(buf) - 5, len(buf) + 5) for _ in range(n)]
    starts[0], ends[0] = len(buf) - len(msg) - len(buf), len(buf) + 3  # negative start
    out = lma_batch.scan_pbus(buf, starts, ends, addresses([src] * n), addresses([dst] * n))
    raw = buf.tobytes()
    for rec, a, b in zip(out, starts, ends, strict=True):
        assert rec["fast"] == (reference_scan(raw[a:b], src, dst, DEFAULT_CONFIG) is not None)
    assert out["fast"][0] == 1
    assert out["mn_start"][0] == len(buf) - len(msg) + 15


def fast_options(**replace: Option | None) -> list[Option]:
    opts: dict[str, Option | None] = {
        "mn": MobileNodeIdentifier(b"mn00000001@bench.example"),
        "hnp": HomeNetworkPrefix(IPv6Address(0), 0),
        "hi": HandoffIndicator(1),
        "att": AccessTechnologyType(4),
        "ts": Timestamp(0x65000000_0000_8000),
    }
    opts.update(replace)
    return [o for o in opts.values() if o is not None]


def scan_one(
    opts: list[Option], lifetime: int = 100, flags: int = cp.PBU_DEFAULT_FLAGS, **kw
) -> np.void:
    data = encode_mh(BindingUpdate(9, lifetime, flags, tuple(opts)), MAG, LMA)
    data = kw.get("edit", lambda d: d)(data)
    out = check_scan([data], [MAG.packed], [LMA.packed], DEFAULT_CONFIG)
    return out[0]


def test_scan_typical_pbu() -> None:
    rec = scan_one(fast_options())
    assert rec["fast"] == 1 and rec["hnp_zero"] == 1 and rec["has_ts"] == 1
    assert rec["llid_len"] == -1 and rec["mn_len"] == len(b"mn00000001@bench.example")
    assert rec["flags"] == cp.PBU_DEFAULT_FLAGS and rec["seq"] == 9 and rec["lifetime"] == 100


@pytest.mark.parametrize(
    "extra",
    [
        AlternateCareOfAddress(MAG),
        LinkLocalAddress(IPv6Address(0)),
        LmaFailureIndication(LMA, IPv4Address("192.0.2.9")),  # a second LFI, below
        VendorSpecific(b"\0\0\0\x01\x02"),
        IPv4CareOfAddress(IPv4Address("192.0.2.1")),
        IPv4HomeAddressRequest(IPv4Address(0)),
        RestartCounter(1),
        UnknownOption(250, b"xyz"),
        HomeNetworkPrefix(IPv6Address("2001:db8::"), 64),  # a second HNP
        MobileNodeIdentifier(b"mn2@x"),  # duplicates
        HandoffIndicator(1),
        AccessTechnologyType(4),
        Timestamp(1),
        MobileNodeLinkLayerIdentifier(b"\1\2"),
    ],
    ids=lambda o: type(o).__name__,
)
def test_scan_disqualifying_option(extra: Option) -> None:
    opts = fast_options()
    if isinstance(extra, MobileNodeLinkLayerIdentifier):
        opts.append(MobileNodeLinkLayerIdentifier(b"\3"))
    if isinstance(extra, LmaFailureIndication):
        opts.append(LmaFailureIndication(LMA))
    assert scan_one([*opts, extra])["fast"] == 0
    assert scan_one([extra, *opts])["fast"] == 0


@pytest.mark.parametrize("missing", ["mn", "hnp", "hi", "att"])
def test_scan_missing_option(missing: str) -> None:
    assert scan_one(fast_options(**{missing: None}))["fast"] == 0


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_scan_takes_what_plain_mags_send(layout: str) -> None:
    """Third-party MAGs' option orders and padding, with and without a Timestamp, a new
    session (HNP ::/0) or a re-registration of an assigned prefix: all fast, as the reference
    reads them."""
    rng = random.Random(layout)
    datagrams = []
    for i in range(40):
        prefix, plen, hi = bytes(16), 0, cp.HI_ATTACH_NEW_INTERFACE
        if i % 2:
            prefix, plen, hi = bytes([0x20, 1, 0xD, 0xB8, 0x80, i]) + bytes(10), 64, 5
        seq = rng.choice([0, 1, 2, 0x7FFF, 0x8000, 0xFFFF])
        mn = b"mn%d@plain.example" % i
        datagrams.append(
            plain_pbu(layout, mn, seq, MAG, LMA, prefix=prefix, plen=plen, hi=hi, ts=i << 16)
        )
    out = check_scan(datagrams, [MAG.packed] * 40, [LMA.packed] * 40, DEFAULT_CONFIG)
    assert out["fast"].all()
    assert (out["has_ts"] == 1).all() == ("ts" in LAYOUTS[layout][0])


def test_scan_takes_a_captured_plain_mag_pbu() -> None:
    src, dst = (a.packed for a in OPMIP_FRAME_ADDRESSES)
    rec = check_scan([OPMIP_FRAME_3], [src], [dst], DEFAULT_CONFIG)[0]
    assert rec["fast"] == 1 and rec["hnp_zero"] == 1 and rec["has_ts"] == 0
    assert rec["seq"] == 1 and rec["lifetime"] == 75 and rec["hi"] == 1 and rec["att"] == 4


def test_scan_mn_id_shapes() -> None:
    assert scan_one(fast_options(mn=MobileNodeIdentifier(b"")))["fast"] == 0  # zero-length
    assert scan_one(fast_options(mn=MobileNodeIdentifier(b"abc", subtype=2)))["fast"] == 0
    assert scan_one(fast_options(mn=MobileNodeIdentifier(b"x" * 254)))["fast"] == 1


def test_scan_optional_options() -> None:
    rec = scan_one(fast_options(ts=None))
    assert rec["fast"] == 1 and rec["has_ts"] == 0
    rec = scan_one([*fast_options(), MobileNodeLinkLayerIdentifier(b"")])
    assert rec["fast"] == 1 and rec["llid_len"] == 0
    rec = scan_one([MobileNodeLinkLayerIdentifier(b"\xaa" * 8), *fast_options()])
    assert rec["fast"] == 1 and rec["llid_len"] == 8


def test_scan_hnp_masking() -> None:
    rec = scan_one(fast_options(hnp=HomeNetworkPrefix(IPv6Address("2001:db8:ffff::1"), 36)))
    assert rec["fast"] == 1 and rec["plen"] == 36 and rec["hnp_zero"] == 0
    assert IPv6Address(rec["hnp"].tobytes()) == IPv6Address("2001:db8:f000::")
    # A nonzero prefix of length 0 is not ALL_ZERO: explicit ::/0 after masking.
    rec = scan_one(fast_options(hnp=HomeNetworkPrefix(IPv6Address("2001:db8::"), 0)))
    assert rec["fast"] == 1 and rec["hnp_zero"] == 0 and not rec["hnp"].any()
    rec = scan_one(fast_options(hnp=HomeNetworkPrefix(IPv6Address(0), 64)))
    assert rec["fast"] == 1 and rec["hnp_zero"] == 0


def test_scan_rejections() -> None:
    assert scan_one(fast_options(), lifetime=0)["fast"] == 0
    assert scan_one(fast_options(), flags=cp.BU_FLAG_A)["fast"] == 0
    assert scan_one(fast_options(), flags=cp.BU_FLAG_P)["fast"] == 1
    bad_checksum = scan_one(fast_options(), edit=lambda d: d[:4] + bytes([d[4] ^ 1]) + d[5:])
    assert bad_checksum["fast"] == 0
    # A Heartbeat or BA with the same options is not a PBU.
    for msg in (
        Heartbeat(1, options=tuple(fast_options())),
        BindingAck(0, 1, 1, options=tuple(fast_options())),
    ):
        data = encode_mh(msg, MAG, LMA)
        assert scan([data], [MAG.packed], [LMA.packed])[0]["fast"][0] == 0


def test_scan_checksum_and_length_edges() -> None:
    """Every one-bit and off-by-one error in the checksum field; a Header Len short of the
    datagram (zeros after it, which would parse as Pad1) with the checksum over all of it."""
    good = encode_mh(BindingUpdate(9, 100, options=tuple(fast_options())), MAG, LMA)
    field = int.from_bytes(good[4:6], "big")
    bad = [field ^ (1 << bit) for bit in range(16)] + [(field + 1) % 65536, (field - 1) % 65536]
    datagrams = [good[:4] + v.to_bytes(2, "big") + good[6:] for v in bad]
    datagrams += [with_checksum(good + bytes(n), MAG.packed, LMA.packed) for n in (1, 7, 8, 16)]
    datagrams += [with_checksum(good[:-8], MAG.packed, LMA.packed)]
    n = len(datagrams)
    out = check_scan(datagrams, [MAG.packed] * n, [LMA.packed] * n, DEFAULT_CONFIG)
    assert not out["fast"].any()


def test_scan_accepts_what_the_reference_ignores() -> None:
    """Reserved octets (MH, HNP, HI, ATT, LL-ID), odd padding and PadN content are the
    reference's to ignore, so the lane takes them too."""
    body = (
        b"\x01\x03abc"  # PadN with content
        + bytes([8, 5, 1])
        + b"mn@x"
        + b"\x00"  # Pad1
        + bytes([22, 18, 0xFF, 64])
        + IPv6Address("2001:db8::").packed
        + bytes([23, 2, 0xEE, 3, 24, 2, 0xDD, 5])
        + bytes([25, 3, 0xCC, 0xBB, 0x42])
    )
    body += bytes(-(12 + len(body)) % 8)
    data = bytes([59, (12 + len(body)) // 8 - 1, 5, 0x77, 0, 0, 0, 1, 0x82, 0, 0, 1]) + body
    data = with_checksum(data, MAG.packed, LMA.packed)
    (rec,) = check_scan([data], [MAG.packed], [LMA.packed], DEFAULT_CONFIG)
    assert rec["fast"] == 1 and rec["hi"] == 3 and rec["att"] == 5 and rec["llid_len"] == 1


REQUIRED_TLVS = {
    cp.OPT_MN_IDENTIFIER: bytes([8, 5, 1]) + b"mn@x",
    cp.OPT_HOME_NETWORK_PREFIX: bytes([22, 18, 0, 0]) + bytes(16),
    cp.OPT_HANDOFF_INDICATOR: bytes([23, 2, 0, 1]),
    cp.OPT_ACCESS_TECHNOLOGY_TYPE: bytes([24, 2, 0, 4]),
}


def raw_pbu(tlvs: list[bytes], flags: int = cp.PBU_DEFAULT_FLAGS) -> bytes:
    body = b"".join(tlvs)
    body += bytes(-(12 + len(body)) % 8)
    head = bytes([59, (12 + len(body)) // 8 - 1, 5, 0, 0, 0])
    data = head + struct.pack("!HHH", 1, flags, 1) + body
    return with_checksum(data, MAG.packed, LMA.packed)


@pytest.mark.parametrize("config", [DEFAULT_CONFIG, SHIFTED_CONFIG])
def test_every_option_type_and_length(config: WireConfig) -> None:
    """Each option type at each length up to 40 (HNP with every prefix length byte, MN-ID with
    every subtype), placed before and after the required options, replacing its own kind."""
    datagrams = []
    rng = random.Random(5)
    for kind in range(2, 256):
        bodies = [bytes(rng.randrange(256) for _ in range(n)) for n in range(41)]
        if kind == cp.OPT_HOME_NETWORK_PREFIX:
            bodies += [bytes([0, plen]) + bytes(16) for plen in range(256)]
        if kind == cp.OPT_MN_IDENTIFIER:
            bodies += [bytes([subtype]) + b"x" for subtype in range(256)] + [b"\1" + bytes(254)]
        for body in bodies:
            tlv = bytes([kind, len(body)]) + body
            others = [t for k, t in REQUIRED_TLVS.items() if k != kind]
            datagrams += [raw_pbu([tlv, *others]), raw_pbu([*others, tlv])]
    n = len(datagrams)
    out = check_scan(datagrams, [MAG.packed] * n, [LMA.packed] * n, config)
    assert 300 < out["fast"].sum() < n // 2


def test_scan_empty_and_tiny() -> None:
    out = lma_batch.scan_pbus(
        np.zeros(0, np.uint8), [], [], np.zeros((0, 16), np.uint8), np.zeros((0, 16), np.uint8)
    )
    assert len(out) == 0 and out.dtype == PBU_SCAN_DTYPE
    check_scan(
        [b"", b"\x3b", b"\x3b\x00\x05" + bytes(5), b"\x3b\x01\x05" + bytes(13)],
        [MAG.packed] * 4,
        [LMA.packed] * 4,
        DEFAULT_CONFIG,
    )


def test_scan_argument_shapes() -> None:
    buf = np.zeros(8, np.uint8)
    with pytest.raises(ValueError):
        lma_batch.scan_pbus(
            buf, [0], [0, 1], np.zeros((1, 16), np.uint8), np.zeros((1, 16), np.uint8)
        )
    with pytest.raises(ValueError):
        lma_batch.scan_pbus(buf, [0], [1], np.zeros((2, 16), np.uint8), np.zeros((1, 16), np.uint8))


# ---------------------------------------------------------------------------------------------
# encode_pbas


def reference_pba(
    rec: np.void,
    buf: np.ndarray,
    prefix: bytes,
    plen: int,
    lifetime: int,
    status: int,
    src: bytes,
    dst: bytes,
    config: WireConfig,
) -> bytes:
    fields = record_fields(rec, buf)
    opts: list[Option] = [
        MobileNodeIdentifier(fields["mn"]),
        HomeNetworkPrefix(IPv6Address(prefix), plen),
        HandoffIndicator(fields["hi"]),
        AccessTechnologyType(fields["att"]),
    ]
    if fields["ts"] is not None:
        opts.append(Timestamp(fields["ts"]))
    if fields["llid"] is not None:
        opts.append(MobileNodeLinkLayerIdentifier(fields["llid"]))
    msg = BindingAck(status, fields["seq"], lifetime, cp.BA_FLAG_P, tuple(opts))
    return encode_mh(msg, IPv6Address(dst), IPv6Address(src), config)


@SETTINGS
@given(st.lists(fast_pbus(), min_size=1, max_size=6), configs, st.data())
def test_encode_pbas_matches_reference(pbus, config: WireConfig, data: st.DataObject) -> None:
    datagrams, srcs, dsts = map(list, zip(*(encoded(p, config) for p in pbus), strict=True))
    out_scan, buf = scan(
        datagrams,
        srcs,
        dsts,
        config,
        data.draw(st.lists(st.integers(0, 5), min_size=len(pbus), max_size=len(pbus))),
    )
    assert out_scan["fast"].all()
    n = len(pbus)
    sel = data.draw(st.lists(st.integers(-n, n - 1), max_size=8))
    k = len(sel)
    prefix = data.draw(st.lists(ipv6, min_size=k, max_size=k))
    plen = data.draw(st.lists(st.integers(0, 128), min_size=k, max_size=k))
    lifetime = data.draw(st.lists(u16, min_size=k, max_size=k))
    status = data.draw(st.lists(u8, min_size=k, max_size=k))
    src_a, dst_a = addresses(srcs), addresses(dsts)
    out, offsets = lma_batch.encode_pbas(
        buf,
        out_scan,
        np.array(sel, dtype=np.int64),
        addresses([p.packed for p in prefix]),
        np.array(plen, dtype=np.uint8),
        np.array(lifetime, dtype=np.uint16),
        np.array(status, dtype=np.uint8),
        src_a,
        dst_a,
        config,
    )
    assert out.dtype == np.uint8 and offsets.dtype == np.int64 and len(offsets) == k + 1
    assert offsets[0] == 0 and offsets[-1] == len(out)
    for i, j in enumerate(sel):
        expected = reference_pba(
            out_scan[j],
            buf,
            prefix[i].packed,
            plen[i],
            lifetime[i],
            status[i],
            srcs[j],
            dsts[j],
            config,
        )
        assert out[offsets[i] : offsets[i + 1]].tobytes() == expected


def test_encode_pbas_is_build_pba() -> None:
    """For an accepted PBU with an assigned (masked) prefix, the PBA is build_pba's."""
    opts = fast_options(ll=MobileNodeLinkLayerIdentifier(b"\x02\x00\x5e\x00\x53\x01"))
    msg = BindingUpdate(77, 300, options=tuple(opts))
    data = encode_mh(msg, MAG, LMA)
    out_scan, buf = scan([data], [MAG.packed], [LMA.packed])
    network = IPv6Network("2001:db8:42::/48")
    out, _ = lma_batch.encode_pbas(
        buf,
        out_scan,
        [0],
        addresses([network.network_address.packed]),
        [48],
        [300],
        [0],
        addresses([MAG.packed]),
        addresses([LMA.packed]),
    )
    pbu = ProxyBindingUpdate.parse(decode_mh(data).message, MAG, LMA)
    ack = build_pba(pbu, cp.STATUS_ACCEPTED, lifetime=300, prefixes=(network,))
    assert out.tobytes() == encode_mh(ack, LMA, MAG)
    assert decode_mh(out.tobytes(), LMA, MAG).checksum_ok


def test_encode_pbas_errors() -> None:
    data = encode_mh(BindingUpdate(1, 1, options=tuple(fast_options())), MAG, LMA)
    out_scan, buf = scan([data, b"junk"], [MAG.packed] * 2, [LMA.packed] * 2)
    addr = addresses([MAG.packed] * 2)
    one = (np.zeros((1, 16), np.uint8), [0], [1], [0])
    with pytest.raises(IndexError):
        lma_batch.encode_pbas(buf, out_scan, [2], *one, addr, addr)
    with pytest.raises(ValueError, match="not fast"):
        lma_batch.encode_pbas(buf, out_scan, [1], *one, addr, addr)
    with pytest.raises(struct.error):
        lma_batch.encode_pbas(buf, out_scan, [0], one[0], [0], [70000], [0], addr, addr)
    with pytest.raises(TypeError):
        lma_batch.encode_pbas(buf, np.zeros(2, np.uint8), [0], *one, addr, addr)
    for field, value in (("mn_start", len(buf) - 3), ("mn_len", 0), ("llid_len", 300)):
        tampered = out_scan.copy()
        tampered[field][0] = value
        with pytest.raises(ValueError, match="does not lie in buf"):
            lma_batch.encode_pbas(buf, tampered, [0], *one, addr, addr)
    out, _ = lma_batch.encode_pbas(buf, out_scan, [-2], *one, addr, addr)  # numpy indexing
    assert out[6] == 0 and out[8:10].tobytes() == b"\0\1"
    out, offsets = lma_batch.encode_pbas(
        buf, out_scan, np.zeros(0, np.int64), np.zeros((0, 16), np.uint8), [], [], [], addr, addr
    )
    assert len(out) == 0 and list(offsets) == [0]


# ---------------------------------------------------------------------------------------------
# unframe / frame


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    mh = draw(st.binary(max_size=64))
    src, dst = draw(ipv6), draw(ipv6)
    packet = bytearray(ipv6_header(src, dst, len(mh)) + mh)
    if draw(st.booleans()):
        return bytes(packet)
    how = draw(st.sampled_from(["version", "length", "next", "truncate", "junk", "flip"]))
    if how == "version":
        packet[0] = draw(u8)
    elif how == "length":
        packet[4:6] = draw(u16).to_bytes(2, "big")
    elif how == "next":
        packet[6] = draw(u8)
    elif how == "truncate":
        del packet[draw(st.integers(0, len(packet))) :]
    elif how == "junk":
        return draw(st.binary(max_size=60))
    else:
        at = draw(st.integers(0, len(packet) - 1))
        packet[at] ^= 1 << draw(st.integers(0, 7))
    return bytes(packet)


@SETTINGS
@given(st.lists(payloads(), max_size=8), st.integers(0, 5))
def test_unframe_matches_split_ipv6_mh(packets: list[bytes], lead: int) -> None:
    raw = bytes(lead) + b"".join(packets)
    offsets = np.cumsum([lead, *map(len, packets)], dtype=np.int64)
    buf = np.frombuffer(raw, np.uint8)
    starts, ends, src, dst, ok = framing.unframe(buf, offsets)
    assert len(ok) == len(packets) and src.shape == (len(packets), 16)
    for i, packet in enumerate(packets):
        try:
            s, d, mh = split_ipv6_mh(packet)
        except WireError:
            assert ok[i] == 0
            continue
        assert ok[i] == 1
        assert raw[starts[i] : ends[i]] == mh
        assert src[i].tobytes() == s.packed and dst[i].tobytes() == d.packed


@SETTINGS
@given(st.lists(st.tuples(st.binary(max_size=100), ipv6, ipv6), max_size=8))
def test_frame_matches_ipv6_header(items: list[tuple[bytes, IPv6Address, IPv6Address]]) -> None:
    mhs = [m for m, _, _ in items]
    buf, starts, ends = pack_batch(mhs, [3] * len(mhs))
    out, offsets = framing.frame(
        buf,
        starts,
        ends,
        addresses([s.packed for _, s, _ in items]),
        addresses([d.packed for _, _, d in items]),
    )
    expected = b"".join(ipv6_header(s, d, len(m)) + m for m, s, d in items)
    assert out.tobytes() == expected
    assert list(offsets) == list(np.cumsum([0] + [40 + len(m) for m in mhs]))
    # And back.
    starts2, ends2, _, _, ok = framing.unframe(out, offsets)
    assert ok.all()
    assert [out[a:b].tobytes() for a, b in zip(starts2, ends2, strict=True)] == mhs


@SETTINGS
@given(
    st.binary(max_size=60),
    st.lists(st.tuples(st.integers(-80, 80), st.integers(-80, 80), ipv6, ipv6), max_size=6),
)
def test_frame_slices_as_python_does(
    data: bytes, items: list[tuple[int, int, IPv6Address, IPv6Address]]
) -> None:
    """Bounds past either end, negative or crossed: each MH is ``data[start:end]``."""
    buf = np.frombuffer(data, dtype=np.uint8)
    out, offsets = framing.frame(
        buf,
        np.array([a for a, _, _, _ in items], dtype=np.int64),
        np.array([b for _, b, _, _ in items], dtype=np.int64),
        addresses([s.packed for _, _, s, _ in items]),
        addresses([d.packed for _, _, _, d in items]),
    )
    expected = b"".join(ipv6_header(s, d, len(data[a:b])) + data[a:b] for a, b, s, d in items)
    assert out.tobytes() == expected
    assert list(offsets) == list(np.cumsum([0] + [40 + len(data[a:b]) for a, b, _, _ in items]))


def test_frame_scan_encode_round_trip() -> None:
    """UDP/5436 payloads in, PBAs framed back out: the lane's whole codec path."""
    n = 5
    pbus = [
        BindingUpdate(i, 10, options=tuple(fast_options(mn=MobileNodeIdentifier(b"mn%d@x" % i))))
        for i in range(n)
    ]
    mags = [IPv6Address(int(MAG) + i) for i in range(n)]
    packets = []
    for msg, mag in zip(pbus, mags, strict=True):
        mh = encode_mh(msg, mag, LMA)
        packets.append(ipv6_header(mag, LMA, len(mh)) + mh)
    buf = np.frombuffer(b"".join(packets), np.uint8)
    offsets = np.cumsum([0, *map(len, packets)])
    starts, ends, src, dst, ok = framing.unframe(buf, offsets)
    assert ok.all()
    records = lma_batch.scan_pbus(buf, starts, ends, src, dst)
    assert records["fast"].all()
    sel = np.arange(n, dtype=np.int64)
    pbas, pba_offsets = lma_batch.encode_pbas(
        buf,
        records,
        sel,
        np.zeros((n, 16), np.uint8),
        np.zeros(n, np.uint8),
        np.full(n, 10, np.uint16),
        np.zeros(n, np.uint8),
        src,
        dst,
    )
    out, out_offsets = framing.frame(pbas, pba_offsets[:-1], pba_offsets[1:], dst, src)
    for i in range(n):
        s, d, mh = split_ipv6_mh(out[out_offsets[i] : out_offsets[i + 1]].tobytes())
        assert (s, d) == (LMA, mags[i])
        decoded = decode_mh(mh, s, d)
        assert decoded.checksum_ok and decoded.message.sequence == i
        assert decoded.message.options[0] == MobileNodeIdentifier(b"mn%d@x" % i)
