"""``lmaload._ext.sync_plan`` against what it replaced in ``SyncOut``: the rows an SS-REP batch
carries and the message each withheld PBA waits for (numpy), the SS-ACKs of a received batch
(octets against ``encode_ss_ack``)."""

from __future__ import annotations

from ipaddress import IPv6Address

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from lmaload._ext.sync_plan import group_withheld, live_rows, scan_ss_acks

from lmaload.protocol.datagrams import Columns, Datagram
from lmaload.protocol.lma.sync_out import _ss_ack_template, encode_ss_ack
from lmaload.wire.codepoints import DEFAULT_CONFIG

ACTIVE = 1


def reference_live_rows(parts: list[np.ndarray], state: np.ndarray) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=np.int64)
    rows = np.concatenate(parts)
    _, first = np.unique(rows, return_index=True)
    rows = rows[np.sort(first)]
    return rows[state[rows] == ACTIVE]


def reference_group(
    rows: np.ndarray, first: np.ndarray, waiting: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    sorter = np.argsort(rows, kind="stable")
    at = np.minimum(np.searchsorted(rows, waiting, sorter=sorter), len(rows) - 1)
    found = rows[sorter[at]] == waiting
    message = np.where(found, np.searchsorted(first, sorter[at], side="right") - 1, -1)
    order = np.argsort(message, kind="stable")
    bounds = np.searchsorted(message[order], np.arange(-1, len(first)))
    return order, bounds


row_lists = st.lists(st.lists(st.integers(0, 19), max_size=12), max_size=4)


@settings(max_examples=300, deadline=None)
@given(row_lists, st.lists(st.sampled_from([0, 1, 2]), min_size=20, max_size=20))
def test_live_rows(parts: list[list[int]], states: list[int]) -> None:
    arrays = [np.array(p, dtype=np.int64) for p in parts]
    # the cache's state column is a field of a structured array: strided
    cache = np.zeros(20, dtype=[("expires", "f8"), ("state", "u1")])
    cache["state"] = states
    got = live_rows(arrays, cache["state"], ACTIVE)
    assert got.tolist() == reference_live_rows(arrays, cache["state"]).tolist()


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(1, 15), st.lists(st.integers(0, 29), max_size=25))
def test_group_withheld(data: st.DataObject, n: int, waiting: list[int]) -> None:
    rows = np.array(data.draw(st.permutations(range(30)))[:n], dtype=np.int64)
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=n - 1)) if n > 1 else [])
    first = np.array([0, *cuts, n], dtype=np.int64)
    want = np.array(waiting, dtype=np.int64)
    order, bounds = group_withheld(rows, first, want)
    expected_order, expected_bounds = reference_group(rows, first, want)
    assert order.tolist() == expected_order.tolist()
    assert bounds.tolist() == expected_bounds.tolist()


OWN = IPv6Address("::ffff:127.0.0.11")
PEERS = [IPv6Address("::ffff:127.0.0.12"), IPv6Address("2001:db8::12")]
STRANGER = IPv6Address("::ffff:127.0.0.99")


def reference_acks(columns: Columns) -> list[tuple[int, int, int]]:
    found = []
    for i in range(len(columns)):
        data, src, dst, _ = columns.datagram(i)
        if src not in PEERS or dst != OWN or len(data) != 16:
            continue
        identifier = int.from_bytes(data[8:10])
        if data == encode_ss_ack(identifier, src.packed, dst.packed, DEFAULT_CONFIG):
            found.append((i, identifier, PEERS.index(src)))
    return found


@st.composite
def acks(draw: st.DrawFn) -> Datagram:
    src = draw(st.sampled_from([*PEERS, STRANGER]))
    dst = draw(st.sampled_from([OWN, STRANGER]))
    data = bytearray(
        encode_ss_ack(draw(st.integers(0, 0xFFFF)), src.packed, dst.packed, DEFAULT_CONFIG)
    )
    if draw(st.booleans()):  # spoil one octet, or the length
        at = draw(st.integers(0, 16))
        if at == 16:
            data += b"\0"
        else:
            data[at] ^= draw(st.integers(1, 255))
    return Datagram(bytes(data), src, dst)


@settings(max_examples=300, deadline=None)
@given(st.lists(acks(), max_size=8))
def test_scan_ss_acks(datagrams: list[Datagram]) -> None:
    columns = Columns.of(datagrams)
    peers = np.array([p.packed for p in PEERS], dtype="S16").view(np.uint8)
    got = scan_ss_acks(
        columns.buf, columns.starts, columns.ends, columns.src, columns.dst, OWN.packed, peers,
        [0, 1], _ss_ack_template(DEFAULT_CONFIG),
    )  # fmt: skip
    assert got == reference_acks(columns)
