"""The reference LMA over real UDP/5436 sockets on loopback (RFC 5844 framing), run in-process:
one PBU per PBA status code the engine produces, each sent from a test MAG socket with the inner
IPv6 header; replies go back to the PBU's source port, heartbeats are answered, bad inner
headers are counted and dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network, ip_address

import pytest

from lmaload.metrics import LmaMetrics
from lmaload.protocol import LmaConfig, LmaEngine, Policy
from lmaload.transport.engine_loop import EngineLoop
from lmaload.transport.udp5436 import SignallingSocket, UdpTransport, mapped
from lmaload.wire import (
    AccessTechnologyType,
    BindingAck,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeNetworkPrefix,
    MobileNodeIdentifier,
    RestartCounter,
    Timestamp,
    encode_mh,
)
from lmaload.wire import codepoints as cp
from lmaload.wire.ipv6 import frame

MAG_HOST = "127.1.0.1"
OTHER_MAG_HOST = "127.1.0.2"
ZERO = HomeNetworkPrefix(IPv6Address("::"), 0)
OUTSIDE = HomeNetworkPrefix(IPv6Address("2001:db8:9999::"), 64)
TIMEOUT = 5.0


@dataclass
class RunningLma:
    """An LMA engine served by an EngineLoop in a thread, on 127.0.0.1 and an ephemeral port."""

    loop: EngineLoop
    metrics: LmaMetrics
    thread: threading.Thread
    inner: IPv6Address
    outer: tuple[str, int]

    def stop(self) -> None:
        self.loop.stop()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive()


def start_lma(host: str = "127.0.0.1", **overrides: object) -> RunningLma:
    inner = mapped(ip_address(host))
    config = LmaConfig(**{"address": inner, **overrides})  # type: ignore[arg-type]
    transport = UdpTransport((host, 0))
    metrics = LmaMetrics()
    loop = EngineLoop(
        LmaEngine(config, time.time()),
        transport,
        on_event=metrics.on_event,
        on_tick=metrics.observe,
        tick_interval=0.05,
    )
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    return RunningLma(loop, metrics, thread, inner, transport.main.local_address)


@pytest.fixture
def lma_factory() -> Iterator[Callable[..., RunningLma]]:
    started: list[RunningLma] = []

    def factory(**overrides: object) -> RunningLma:
        started.append(start_lma(**overrides))
        return started[-1]

    yield factory
    for lma in started:
        lma.stop()


class Mag:
    """A test MAG: PBUs to one LMA over UDP/5436 from its own socket, PBAs back."""

    def __init__(self, lma: RunningLma, host: str = MAG_HOST) -> None:
        self.lma = lma
        self.socket = SignallingSocket(host)
        self.seq = 0

    def pbu(
        self,
        mn: bytes | None = b"mn1@example.com",
        hnps: tuple[HomeNetworkPrefix, ...] | None = (ZERO,),
        hi: int | None = 1,
        att: int | None = 4,
        ts: float | None = 0.0,
        seq: int | None = None,
        lifetime: int = 100,
    ) -> BindingAck:
        """Send a PBU (``ts`` 0: now; None: no Timestamp) and return its PBA."""
        options: list = []
        if mn is not None:
            options.append(MobileNodeIdentifier(mn))
        options += hnps or ()
        if hi is not None:
            options.append(HandoffIndicator(hi))
        if att is not None:
            options.append(AccessTechnologyType(att))
        if ts is not None:
            options.append(Timestamp.from_unix(ts or time.time()))
        self.seq += 1
        message = BindingUpdate(self.seq if seq is None else seq, lifetime, options=tuple(options))
        self.socket.send(message, self.lma.inner, self.lma.outer)
        return self.reply(BindingAck)

    def reply(self, kind: type) -> object:
        got = self.socket.receive(TIMEOUT)
        assert got is not None, "no reply from the LMA"
        message, src, dst = got
        assert isinstance(message, kind), message
        assert (src, dst) == (self.lma.inner, self.socket.inner)
        return message

    def close(self) -> None:
        self.socket.close()


def assigned(pba: BindingAck) -> HomeNetworkPrefix:
    assert pba.status == 0, pba
    return next(o for o in pba.options if isinstance(o, HomeNetworkPrefix))


# Each case: LmaConfig overrides, and what the MAG does; the last PBA must carry the status.
POLICY = Policy(
    authorized_mags=frozenset({mapped(ip_address(MAG_HOST))}),
    authorized_mns=frozenset({b"mn1@example.com", b"off@example.com"}),
    pmip_disabled_mns=frozenset({b"off@example.com"}),
)


def exhaust_pool(mag: Mag) -> BindingAck:
    assigned(mag.pbu(mn=b"first"))
    return mag.pbu(mn=b"second")


def old_sequence(mag: Mag) -> BindingAck:
    prefix = assigned(mag.pbu(ts=None, seq=10))
    return mag.pbu(hnps=(prefix,), hi=5, ts=None, seq=9)


def older_timestamp(mag: Mag) -> BindingAck:
    now = time.time()
    prefix = assigned(mag.pbu(ts=now))
    return mag.pbu(hnps=(prefix,), hi=5, ts=now - 0.5)


def other_mag(mag: Mag) -> BindingAck:
    stranger = Mag(mag.lma, OTHER_MAG_HOST)
    try:
        return stranger.pbu()
    finally:
        stranger.close()


def prefix_set_mismatch(mag: Mag) -> BindingAck:
    a = assigned(mag.pbu(mn=b"a"))
    b = assigned(mag.pbu(mn=b"b"))
    return mag.pbu(mn=b"a", hnps=(a, b), hi=5)


CASES = [
    (0, {}, lambda mag: mag.pbu()),
    (130, {"prefix_pool": IPv6Network("2001:db8:8000::/64")}, exhaust_pool),
    (135, {}, old_sequence),
    (152, {"policy": POLICY}, lambda mag: mag.pbu(mn=b"off@example.com")),
    (153, {"policy": POLICY}, lambda mag: mag.pbu(mn=b"stranger@example.com")),
    (154, {"policy": POLICY}, other_mag),
    (155, {}, lambda mag: mag.pbu(hnps=(OUTSIDE,))),
    (156, {}, lambda mag: mag.pbu(ts=time.time() - 60)),
    (157, {"timestamp_validity_window": 5.0}, older_timestamp),
    (158, {}, lambda mag: mag.pbu(hnps=None)),
    (159, {}, prefix_set_mismatch),
    (160, {}, lambda mag: mag.pbu(mn=None)),
    (161, {}, lambda mag: mag.pbu(hi=None)),
    (162, {}, lambda mag: mag.pbu(att=None)),
]


@pytest.mark.parametrize(("status", "overrides", "script"), CASES, ids=[str(c[0]) for c in CASES])
def test_pba_status_code(lma_factory, status, overrides, script) -> None:
    lma = lma_factory(**overrides)
    mag = Mag(lma)
    try:
        pba = script(mag)
    finally:
        mag.close()
    assert pba.status == status
    assert pba.flags & cp.BA_FLAG_P
    assert (pba.lifetime == 0) == (status != 0)


def test_every_status_code_the_engine_produces_is_covered() -> None:
    rfc5213 = {getattr(cp, n) for n in dir(cp) if n.startswith("STATUS_")}
    produced = rfc5213 & ({0, 130, 135} | set(range(152, 163)))
    assert produced == {c[0] for c in CASES}


def test_pba_goes_back_to_the_source_port_and_heartbeat_is_answered(lma_factory) -> None:
    lma = lma_factory(restart_counter=9)
    mags = [Mag(lma), Mag(lma), Mag(lma, OTHER_MAG_HOST)]
    try:
        for i, mag in enumerate(mags):  # two MAG sockets share an address, not a port
            assigned(mag.pbu(mn=b"mn%d" % i))
        mags[1].socket.send(Heartbeat(77), lma.inner, lma.outer)
        reply = mags[1].reply(Heartbeat)
        assert reply.is_response and reply.sequence == 77  # type: ignore[attr-defined]
        assert reply.options == (RestartCounter(9),)  # type: ignore[attr-defined]
    finally:
        for mag in mags:
            mag.close()
    assert lma.loop.engine.bce_count == 3


def test_bad_inner_headers_are_counted_and_dropped(lma_factory) -> None:
    lma = lma_factory()
    mag = Mag(lma)
    try:
        good = encode_mh(
            BindingUpdate(1, 100, options=(MobileNodeIdentifier(b"x"), ZERO)),
            mag.socket.inner,
            lma.inner,
        )
        framed = frame(good, mag.socket.inner, lma.inner)
        bad = [
            b"",
            good,  # a bare MH: no inner header
            b"\x45" + framed[1:],  # IPv4 version nibble
            framed[:4] + b"\x00\x01" + framed[6:],  # payload length
            framed[:6] + b"\x11" + framed[7:],  # next header UDP
            framed[:39],
        ]
        for payload in bad:
            mag.socket.send_raw(payload, lma.outer)
        assert mag.pbu().status == 0
        deadline = time.monotonic() + TIMEOUT
        while lma.metrics.snapshot.drops.get("bad_inner_header", 0) < len(bad):
            assert time.monotonic() < deadline, lma.metrics.snapshot.drops
            time.sleep(0.02)
    finally:
        mag.close()
    assert 'lmaload_lma_drops_total{reason="bad_inner_header"} 6.0' in lma.metrics.exposition()
