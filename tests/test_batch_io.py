"""Tests for lmaload.transport.batch over real sockets: many source and destination addresses
through one socket, raw Mobility Header checksums, partial sends, timeouts and truncation.

Loopback only. IPv6 AnyIP addresses and traffic shaping live in a network namespace each test
creates and deletes (root); code that must run inside it is a plain function of this module,
run by a child ``python3`` under ``ip netns exec``.
"""

from __future__ import annotations

import errno
import random
import shlex
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple

import numpy as np
import pytest

from lmaload._ext import mmsg
from lmaload.transport.batch import Batch, BatchSocket, addresses
from lmaload.wire import Heartbeat, WireError, decode_mh, encode_mh
from tests.netns import IS_ROOT, namespace
from tests.netns import run_in_netns as netns_run

BIG_RCVBUF = 4 << 20
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (raw sockets, namespaces)")


class Received(NamedTuple):
    payload: bytes
    src: str
    sport: int
    dst: str


def pack(payloads: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The bulk codec's layout: one buffer, offsets with len(payloads) + 1 entries."""
    offsets = np.zeros(len(payloads) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in payloads])
    return np.frombuffer(b"".join(payloads), dtype=np.uint8), offsets


def distinct_payloads(count: int) -> list[bytes]:
    return [f"datagram {i}:".encode() + b"." * (i % 37) for i in range(count)]


def hosts(first: str, count: int) -> list[str]:
    start = IPv6Address(first) if ":" in first else IPv4Address(first)
    return [str(start + i) for i in range(count)]


def entries(batch: Batch) -> list[Received]:
    return [
        Received(
            batch.datagram(i), str(batch.source(i)), int(batch.sport[i]), str(batch.destination(i))
        )
        for i in range(batch.count)
    ]


def collect(rx: BatchSocket, expected: int, timeout: float = 2.0) -> list[Received]:
    """Receive until ``expected`` datagrams came or ``timeout`` passed."""
    got: list[Received] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and (left := deadline - time.monotonic()) > 0:
        got += entries(rx.recv(timeout=left))
    return got


def transfer(
    tx: BatchSocket,
    rx: BatchSocket,
    payloads: Sequence[bytes],
    dst: Sequence[str] | str,
    port: int,
    src: Sequence[str] | str | None = None,
) -> list[Received]:
    """Send ``payloads`` with one call when the receiver's buffer holds them all, else in chunks
    received before the next is sent (net.core.rmem_max may be small when not root)."""
    # A small datagram takes about 1 kB of receive buffer in the kernel.
    chunk = max(1, rx.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2048)
    buf, offsets = pack(payloads)
    dst_rows = addresses(dst, tx.family)
    src_rows = None if src is None else addresses(src, tx.family)
    got: list[Received] = []
    for start in range(0, len(payloads), chunk):
        stop = min(start + chunk, len(payloads))
        # Rows per datagram must match the datagrams in offsets; a single row applies to all.
        dst_part = dst_rows if len(dst_rows) == 1 else dst_rows[:stop]
        src_part = src_rows if src_rows is None or len(src_rows) == 1 else src_rows[:stop]
        sent = tx.send(buf, offsets[: stop + 1], dst_part, port, src_part, start)
        assert sent == stop - start
        got += collect(rx, sent, timeout=5.0)
    return got


@pytest.fixture
def receiver() -> Iterator[BatchSocket]:
    with BatchSocket.udp("127.0.0.1", 0, rcvbuf=BIG_RCVBUF) as rx:
        yield rx


@pytest.fixture
def sender() -> Iterator[BatchSocket]:
    with BatchSocket.udp("0.0.0.0", 0) as tx:
        yield tx


def test_udp4_many_sources_one_socket(sender: BatchSocket, receiver: BatchSocket) -> None:
    """1,000 MAG addresses 127.1.0.1 .. 127.1.3.232 speak through one socket."""
    payloads = distinct_payloads(1000)
    sources = hosts("127.1.0.1", 1000)
    assert sources[-1] == "127.1.3.232"
    got = transfer(sender, receiver, payloads, "127.0.0.1", receiver.local_address[1], sources)
    port = sender.local_address[1]
    assert got == [
        Received(p, s, port, "127.0.0.1") for p, s in zip(payloads, sources, strict=True)
    ]


def test_one_send_call_beyond_the_kernel_batch_limit(
    sender: BatchSocket, receiver: BatchSocket
) -> None:
    """2,500 datagrams take three sendmmsg calls of at most 1,024 inside one send."""
    payloads = distinct_payloads(2500)
    sources = hosts("127.2.0.1", 2500)
    got = transfer(sender, receiver, payloads, "127.0.0.1", receiver.local_address[1], sources)
    assert [(r.payload, r.src) for r in got] == list(zip(payloads, sources, strict=True))


def test_udp4_many_destinations_one_listener(sender: BatchSocket) -> None:
    """One socket on the wildcard address tells which MAG address each datagram was sent to."""
    payloads = distinct_payloads(1000)
    targets = hosts("127.1.0.1", 1000)
    with BatchSocket.udp("0.0.0.0", 0, rcvbuf=BIG_RCVBUF) as rx:
        got = transfer(sender, rx, payloads, targets, rx.local_address[1], src="127.0.0.1")
    assert [(r.payload, r.dst, r.src) for r in got] == [
        (p, d, "127.0.0.1") for p, d in zip(payloads, targets, strict=True)
    ]


def test_batch_layout_and_per_datagram_ports(sender: BatchSocket) -> None:
    payloads = distinct_payloads(6)
    buf, offsets = pack(payloads)
    with BatchSocket.udp("127.0.0.1") as a, BatchSocket.udp("127.0.0.1") as b:
        ports = np.array([a.local_address[1], b.local_address[1]] * 3, dtype=np.uint16)
        assert sender.send(buf, offsets, "127.0.0.1", ports) == 6
        batch_a, batch_b = a.recv(timeout=1.0), b.recv(timeout=1.0)
    assert batch_a.count == batch_b.count == 3
    assert batch_a.buf.dtype == np.uint8 and batch_a.offsets.dtype == np.int64
    assert batch_a.src.shape == batch_a.dst.shape == (3, 4) and batch_a.sport.dtype == np.uint16
    assert batch_a.offsets[0] == 0 and batch_a.offsets[-1] == len(batch_a.buf)
    assert [batch_a.datagram(i) for i in range(3)] == payloads[0::2]
    assert [batch_b.datagram(i) for i in range(3)] == payloads[1::2]


def test_udp6_loopback() -> None:
    payloads = distinct_payloads(50)
    with BatchSocket.udp("::") as tx, BatchSocket.udp("::1") as rx:
        got = transfer(tx, rx, payloads, "::1", rx.local_address[1], src="::1")
        port = tx.local_address[1]
    assert got == [Received(p, "::1", port, "::1") for p in payloads]


def test_recv_timeout_returns_an_empty_batch(receiver: BatchSocket) -> None:
    t0 = time.monotonic()
    assert receiver.recv().count == 0
    batch = receiver.recv(timeout=0.1)
    waited = time.monotonic() - t0
    assert batch.count == 0 and batch.truncated == 0
    assert 0.09 <= waited < 1.0
    assert batch.offsets.tolist() == [0] and batch.src.shape == (0, 4) and len(batch.buf) == 0


def test_recv_wait_ends_when_a_datagram_arrives(sender: BatchSocket, receiver: BatchSocket) -> None:
    """The wait releases the GIL: another thread sends while recv waits."""
    buf, offsets = pack([b"late"])
    thread = threading.Timer(
        0.05, sender.send, (buf, offsets, "127.0.0.1", receiver.local_address[1])
    )
    thread.start()
    t0 = time.monotonic()
    batch = receiver.recv(timeout=10.0)
    thread.join()
    assert batch.count == 1 and batch.datagram(0) == b"late"
    assert time.monotonic() - t0 < 5.0


def test_max_datagrams_per_recv(sender: BatchSocket, receiver: BatchSocket) -> None:
    buf, offsets = pack(distinct_payloads(50))
    assert sender.send(buf, offsets, "127.0.0.1", receiver.local_address[1]) == 50
    time.sleep(0.01)
    assert receiver.recv(max_datagrams=10).count == 10
    assert len(collect(receiver, 40)) == 40


def test_truncated_datagrams_are_counted_not_mixed(sender: BatchSocket) -> None:
    payloads = [b"a" * 100, b"B" * 1000, b"c" * 50, b"D" * 257, b"e" * 256, b""]
    buf, offsets = pack(payloads)
    with BatchSocket.udp("127.0.0.1", max_size=256) as rx:
        assert sender.send(buf, offsets, "127.0.0.1", rx.local_address[1]) == 6
        time.sleep(0.01)
        batch = rx.recv(timeout=1.0)
    assert batch.truncated == 2
    fitting = [p for p in payloads if len(p) <= 256]
    assert [batch.datagram(i) for i in range(batch.count)] == fitting


def test_views_are_reused_unless_copied(sender: BatchSocket, receiver: BatchSocket) -> None:
    port = receiver.local_address[1]
    first_buf, first_offsets = pack([b"first"])
    second_buf, second_offsets = pack([b"later"])
    sender.send(first_buf, first_offsets, "127.0.0.1", port)
    view = receiver.recv(timeout=1.0)
    sender.send(first_buf, first_offsets, "127.0.0.1", port)
    kept = receiver.recv(timeout=1.0, copy=True)
    sender.send(second_buf, second_offsets, "127.0.0.1", port)
    assert receiver.recv(timeout=1.0).datagram(0) == b"later"
    assert view.datagram(0) == b"later"
    assert kept.datagram(0) == b"first"


def test_full_receiver_drops_are_counted(sender: BatchSocket) -> None:
    """UDP has no back-pressure: the sender sends everything, the kernel drops what does not
    fit the receive buffer and counts it (SO_RXQ_OVFL) on the next datagram queued."""
    buf, offsets = pack(distinct_payloads(300))
    with BatchSocket.udp("127.0.0.1") as rx:
        rx.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
        port = rx.local_address[1]
        assert sender.send(buf, offsets, "127.0.0.1", port) == 300
        received = len(collect(rx, 300, timeout=0.2))
        assert 0 < received < 300
        sender.send(buf, offsets[:2], "127.0.0.1", port)
        batch = rx.recv(timeout=1.0)
    assert batch.count == 1 and batch.drops == 300 - received


def test_send_stops_at_a_failing_datagram(sender: BatchSocket, receiver: BatchSocket) -> None:
    """192.0.2.1 is no local address: datagrams before it go, the call starting at it raises,
    and the caller skips it."""
    buf, offsets = pack(distinct_payloads(5))
    sources = ["127.1.0.1", "127.1.0.2", "127.1.0.3", "192.0.2.1", "127.1.0.5"]
    port = receiver.local_address[1]
    assert sender.send(buf, offsets, "127.0.0.1", port, sources) == 3
    with pytest.raises(OSError) as failure:
        sender.send(buf, offsets, "127.0.0.1", port, sources, start=3)
    assert failure.value.errno in (errno.EINVAL, errno.ENETUNREACH)
    assert sender.send(buf, offsets, "127.0.0.1", port, sources, start=4) == 1
    got = collect(receiver, 4)
    assert [r.src for r in got] == sources[:3] + sources[4:]


@pytest.mark.parametrize(
    ("offsets", "dst", "src", "message"),
    [
        ([0, 2, 4], ["127.0.0.1"] * 3, None, "dst has 3 rows for 2 datagrams"),
        ([0, 2, 99], "127.0.0.1", None, "offsets must be non-decreasing"),
        ([0, 3, 2], "127.0.0.1", None, "offsets must be non-decreasing"),
        ([0, 2, 4], "127.0.0.1", ["127.0.0.2"] * 3, "src has 3 rows"),
        ([], "127.0.0.1", None, "at least one entry"),
    ],
)
def test_send_checks_its_arrays_before_sending(
    sender: BatchSocket,
    receiver: BatchSocket,
    offsets: list[int],
    dst: list[str] | str,
    src: list[str] | None,
    message: str,
) -> None:
    buf = np.zeros(4, dtype=np.uint8)
    with pytest.raises(ValueError, match=message):
        sender.send(buf, np.array(offsets, dtype=np.int64), dst, receiver.local_address[1], src)
    assert receiver.recv(timeout=0.05).count == 0


def test_address_arrays() -> None:
    rows = addresses(["127.0.0.1", IPv4Address("10.0.0.1")], socket.AF_INET)
    assert rows.tolist() == [[127, 0, 0, 1], [10, 0, 0, 1]]
    assert addresses("::1", socket.AF_INET6).shape == (1, 16)
    strided = np.zeros(3, dtype=[("n", "u1"), ("addr4", "u1", (4,))])["addr4"]
    assert addresses(strided, socket.AF_INET).shape == (3, 4)
    with pytest.raises(ValueError, match="IPv6"):
        addresses(["::1", "127.0.0.1"], socket.AF_INET6)


# Raw Mobility Header sockets on ::1. They see every MH of the host, so keep only our sequences.


def heartbeats(count: int) -> tuple[list[int], list[bytes]]:
    base = random.randrange(0, 2**31)
    sequences = [base + i for i in range(count)]
    return sequences, [encode_mh(Heartbeat(s)) for s in sequences]


def ours(got: list[Received], sequences: list[int]) -> dict[int, Received]:
    """Our heartbeats among ``got``, by sequence number."""
    wanted = set(sequences)
    out = {}
    for r in got:
        try:
            message = decode_mh(r.payload).message
        except WireError:
            continue
        if isinstance(message, Heartbeat) and message.sequence in wanted:
            out[message.sequence] = r
    return out


@needs_root
def test_raw_mh_kernel_fills_the_checksum() -> None:
    sequences, messages = heartbeats(20)
    assert all(m[4:6] == b"\0\0" for m in messages)
    buf, offsets = pack(messages)
    with BatchSocket.raw_mh() as tx, BatchSocket.raw_mh("::1") as rx:
        assert tx.send(buf, offsets, "::1", src="::1") == 20
        got = ours(collect(rx, 20, timeout=1.0), sequences)
    assert sorted(got) == sequences
    for r in got.values():
        assert (r.src, r.dst, r.sport) == ("::1", "::1", 0)
        decoded = decode_mh(r.payload, IPv6Address(r.src), IPv6Address(r.dst))
        assert decoded.checksum != 0 and decoded.checksum_ok


@needs_root
def test_raw_mh_without_kernel_checksum() -> None:
    """With IPV6_CHECKSUM off the checksum field goes out as given; a receiver with the kernel
    check drops a bad one (and counts the drop), a receiver without it gets it."""
    (bad_seq, good_seq), _ = heartbeats(2)
    bad = encode_mh(Heartbeat(bad_seq))
    good = encode_mh(Heartbeat(good_seq), IPv6Address("::1"), IPv6Address("::1"))
    buf, offsets = pack([bad, good])
    with (
        BatchSocket.raw_mh(kernel_checksum=False) as tx,
        BatchSocket.raw_mh("::1") as checking,
        BatchSocket.raw_mh("::1", kernel_checksum=False) as lenient,
    ):
        assert tx.send(buf, offsets, "::1", src="::1") == 2
        checked = ours(collect(checking, 1, timeout=1.0), [bad_seq, good_seq])
        drops = checking.drops
        unchecked = ours(collect(lenient, 2, timeout=1.0), [bad_seq, good_seq])
    assert list(checked) == [good_seq] and drops >= 1
    assert sorted(unchecked) == [bad_seq, good_seq]
    assert unchecked[bad_seq].payload == bad
    assert decode_mh(bad, IPv6Address("::1"), IPv6Address("::1")).checksum_ok is False


# IPv6 AnyIP in a network namespace of our own.


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with lo up and an AnyIP route for the MAG prefix."""
    with namespace() as name:
        yield name


def run_in_netns(name: str, function: str) -> None:
    """Run ``function`` of this module in a child process inside namespace ``name``."""
    netns_run(name, "test_batch_io", function, timeout=60)


def anyip_udp() -> None:
    payloads = distinct_payloads(1000)
    mags = hosts("fd00:6d61:6700::1", 1000)
    with BatchSocket.udp("::") as tx, BatchSocket.udp("::1", rcvbuf=BIG_RCVBUF) as rx:
        got = transfer(tx, rx, payloads, "::1", rx.local_address[1], mags)
        port = tx.local_address[1]
        assert got == [Received(p, s, port, "::1") for p, s in zip(payloads, mags, strict=True)]
    with BatchSocket.udp("::") as tx, BatchSocket.udp("::", rcvbuf=BIG_RCVBUF) as rx:
        got = transfer(tx, rx, payloads, mags, rx.local_address[1], "::1")
        assert [(r.payload, r.dst) for r in got] == list(zip(payloads, mags, strict=True))
    with BatchSocket.udp("fd00:6d61:6700::99") as bound:  # FREEBIND: bind to an AnyIP address
        assert bound.local_address[0] == "fd00:6d61:6700::99"
    with BatchSocket.udp("::") as tx:
        tx.sock.setsockopt(socket.IPPROTO_IPV6, mmsg.IPV6_FREEBIND, 0)
        buf, offsets = pack([b"x"])
        with pytest.raises(OSError) as failure:
            tx.send(buf, offsets, "::1", 9, mags[0])
        assert failure.value.errno == errno.EINVAL


def anyip_raw_mh() -> None:
    mags = hosts("fd00:6d61:6700::1", 200)
    sequences, messages = heartbeats(200)
    buf, offsets = pack(messages)
    with BatchSocket.raw_mh() as tx, BatchSocket.raw_mh("::1") as rx:
        assert tx.send(buf, offsets, "::1", src=mags) == 200
        got = ours(collect(rx, 200), sequences)
    assert sorted(got) == sequences
    for sequence, mag in zip(sequences, mags, strict=True):
        r = got[sequence]
        assert r.src == mag
        assert decode_mh(r.payload, IPv6Address(r.src), IPv6Address(r.dst)).checksum_ok


def partial_sends() -> None:
    """Behind a slow qdisc a tiny send buffer fills: send returns short, and the rest goes once
    the socket is writable again."""
    payloads = [bytes([i]) * 1000 for i in range(100)]
    buf, offsets = pack(payloads)
    with BatchSocket.udp("::1", rcvbuf=4 << 20) as rx, BatchSocket.udp("::", sndbuf=1) as tx:
        first = tx.send(buf, offsets, "::1", rx.local_address[1])
        assert 0 < first < 100
        sent, calls = first, 1
        while sent < 100:
            assert tx.wait_writable(10.0)
            sent += tx.send(buf, offsets, "::1", rx.local_address[1], start=sent)
            calls += 1
        assert calls > 2
        assert [r.payload for r in collect(rx, 100, timeout=10.0)] == payloads


@needs_root
def test_ipv6_anyip_many_sources_and_destinations(netns: str) -> None:
    run_in_netns(netns, "anyip_udp")


@needs_root
def test_raw_mh_from_anyip_sources(netns: str) -> None:
    """The kernel computes each checksum over the pseudo-header of the datagram's own source."""
    run_in_netns(netns, "anyip_raw_mh")


@needs_root
def test_partial_send_with_a_tiny_send_buffer(netns: str) -> None:
    if shutil.which("tc") is None:
        pytest.skip("tc (iproute2) is not installed")
    # 2 Mbit/s: 100 datagrams of 1 kB drain in about half a second.
    qdisc = shlex.split("tc qdisc add dev lo root tbf rate 2mbit burst 4kb limit 1mb")
    shaped = subprocess.run(
        ["ip", "netns", "exec", netns, *qdisc],
        capture_output=True,
        text=True,
    )
    if shaped.returncode != 0:
        pytest.skip(f"no tbf qdisc: {shaped.stderr.strip()}")
    run_in_netns(netns, "partial_sends")


def test_each_datagram_carries_its_kernel_arrival_time(
    sender: BatchSocket, receiver: BatchSocket
) -> None:
    """SO_TIMESTAMPNS: stamped when the kernel took the datagram, not when recv ran."""
    # The first socket of a system to ask for timestamps turns receive stamping on from a
    # kernel work item; until it has run, datagrams are stamped when read.
    time.sleep(0.05)
    buf, offsets = pack(distinct_payloads(20))
    before = time.time_ns()
    assert sender.send(buf, offsets, "127.0.0.1", receiver.local_address[1]) == 20
    sent = time.time_ns()
    time.sleep(0.2)
    batch = receiver.recv(timeout=1.0)
    assert batch.count == 20 and batch.arrival.dtype == np.int64
    assert (batch.arrival >= before).all() and (batch.arrival <= sent).all()
    assert (np.diff(batch.arrival) >= 0).all()
