"""``UdpRoutes`` (ext/udp_routes.pyx), the LMA transport's compiled routes and framing, against
the reference it replaces: a dict of inner → outer routes, learnt row by row (the later row
winning), the derived default of RFC 5844's port for the rest, and ``framing.frame``."""

from __future__ import annotations

import socket
from ipaddress import IPv6Address

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from lmaload._ext.framing import frame
from lmaload._ext.udp_routes import UdpRoutes

from lmaload.protocol.datagrams import Columns, Datagram, Datagrams
from lmaload.transport.udp5436 import PMIP6_CNTL_PORT

# A few inner addresses, IPv4-mapped and not, so that routes repeat and defaults are exercised.
INNER = [
    IPv6Address("::ffff:127.1.0.1"),
    IPv6Address("::ffff:127.1.0.2"),
    IPv6Address("::ffff:10.0.0.9"),
    IPv6Address("2001:db8::1"),
    IPv6Address("2001:db8::2"),
    IPv6Address("::1"),
]
LMAA = INNER[4]


def default_outer(inner: bytes, width: int) -> tuple[bytes, int] | None:
    """Where the reference sends ``inner`` with nothing learnt or configured."""
    mapped = IPv6Address(inner).ipv4_mapped
    if width == 4:
        return (mapped.packed, PMIP6_CNTL_PORT) if mapped else None
    return None if mapped else (inner, PMIP6_CNTL_PORT)


def reference(
    routes: dict[bytes, tuple[bytes, int]],
    datagrams: Datagrams,
    width: int,
    lmaa: bytes | None,
    own: bool,
) -> tuple[bytes, list[int], list[bytes], list[int], int]:
    kept: list[Datagram] = []
    outers: list[tuple[bytes, int]] = []
    unrouted = 0
    for d in datagrams:
        if lmaa is not None and (d.src.packed == lmaa) != own:
            continue
        outer = routes.get(d.dst.packed) or default_outer(d.dst.packed, width)
        if outer is None:
            unrouted += 1
            continue
        kept.append(d)
        outers.append(outer)
    if not kept:
        return b"", [0], [], [], unrouted
    columns = Columns.of(kept)
    buf, offsets = frame(columns.buf, columns.starts, columns.ends, columns.src, columns.dst)
    return buf.tobytes(), offsets.tolist(), [o for o, _ in outers], [p for _, p in outers], unrouted


addresses = st.sampled_from(INNER)
payloads = st.binary(min_size=0, max_size=40)


@st.composite
def parts(draw: st.DrawFn) -> Datagram | Columns:
    rows = draw(st.lists(st.tuples(payloads, addresses, addresses), min_size=0, max_size=6))
    datagrams = [Datagram(p, s, d) for p, s, d in rows]
    if len(datagrams) == 1 and draw(st.booleans()):
        return datagrams[0]
    columns = Columns.of(datagrams)
    if len(datagrams) > 1 and draw(st.booleans()):  # bounds that skip octets, as take makes
        columns = columns.take(np.arange(len(datagrams))[::-1])
    return columns


learnt = st.lists(st.tuples(addresses, st.binary(min_size=16, max_size=16), st.integers(1, 65535)))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([4, 16]),
    learnt,
    st.lists(st.booleans()),
    st.lists(parts(), max_size=5),
    st.sampled_from([None, LMAA.packed]),
    st.booleans(),
)
def test_frame_matches_the_reference(
    width: int,
    learn: list[tuple[IPv6Address, bytes, int]],
    ok: list[bool],
    batch: list[Datagram | Columns],
    lmaa: bytes | None,
    own: bool,
) -> None:
    routes = UdpRoutes(width)
    expected: dict[bytes, tuple[bytes, int]] = {}
    good = np.array([ok[i] if i < len(ok) else True for i in range(len(learn))], dtype=np.uint8)
    for (inner, outer, port), g in zip(learn, good, strict=True):
        if g:
            expected[inner.packed] = (outer[:width], port)
    inner = np.frombuffer(b"".join(i.packed for i, _, _ in learn), np.uint8).reshape(-1, 16)
    outer = np.frombuffer(b"".join(o[:width] for _, o, _ in learn), np.uint8).reshape(-1, width)
    routes.learn(inner, outer, np.array([p for _, _, p in learn], dtype=np.uint16), good)
    for key in INNER:
        assert routes.get(key.packed) == expected.get(key.packed)
    datagrams = Datagrams(batch)
    buf, offsets, hosts, ports, unrouted = routes.frame(datagrams.parts(), lmaa, own)
    want = reference(expected, datagrams, width, lmaa, own)
    assert (buf.tobytes(), offsets.tolist()) == want[:2]
    assert [h.tobytes() for h in hosts] == want[2]
    assert ports.tolist() == want[3]
    assert unrouted == want[4]


def test_many_routes_grow_the_table() -> None:
    routes = UdpRoutes(4)
    inner = np.zeros((5000, 16), dtype=np.uint8)
    inner[:, 10:12] = 0xFF
    inner[:, 12:] = np.arange(5000, dtype=">u4").view(np.uint8).reshape(-1, 4)
    outer = inner[:, 12:].copy()
    ports = np.arange(5000, dtype=np.uint16)
    routes.learn(inner, outer, ports)
    routes.learn(inner[:10], outer[:10], ports[:10] + 1)  # learnt again: the later wins
    assert all(routes.get(inner[i].tobytes()) == (outer[i].tobytes(), i + 1) for i in range(10))
    assert routes.get(inner[4999].tobytes()) == (outer[4999].tobytes(), 4999)
    assert socket.inet_ntoa(routes.get(inner[300].tobytes())[0]) == "0.0.1.44"
