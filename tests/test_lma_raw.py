"""``lmaload lma --transport raw`` over raw IPv6 Mobility Header sockets, in a network namespace
each test creates and deletes (root): MAGs at AnyIP addresses send PBUs from one raw IPPROTO_MH
socket (kernel checksum) and get PBAs with valid checksums and assigned prefixes; a heartbeat is
answered with the Restart Counter; a PBU with a bad checksum never reaches the LMA. An
active/standby pair keeps the sessions across a SIGKILL of the active (PBU + LMA Failure
Indication to the standby). A plain RFC 5213 LMA (``--plain``) answers a Heartbeat with Binding
Error 2 and a repeated sequence number with 135, and forgets its bindings when restarted.

The MAG side of each test is a plain function of this module run by a child ``python3`` under
``ip netns exec`` (like tests/test_batch_io.py); it starts the LMAs, which inherit the namespace.
A raw MH socket sees every Mobility Header of the namespace — our own PBUs, the LMAs' HA
messages — so replies are picked by source, destination and content.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import numpy as np
import pytest

from lmaload.transport.batch import BatchSocket
from lmaload.wire import (
    AccessTechnologyType,
    BindingAck,
    BindingError,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeNetworkPrefix,
    LmaFailureIndication,
    Message,
    MobileNodeIdentifier,
    RestartCounter,
    Timestamp,
    decode_mh,
    encode_mh,
)
from lmaload.wire import codepoints as cp
from tests import lma_children
from tests.lma_children import LmaProcess
from tests.netns import namespace
from tests.netns import run_in_netns as netns_run
from tests.plain_mag import plain_pbu

ACTIVE = IPv6Address("fd00:6d61:6701::1")  # the LMAs' addresses, on lo of the namespace
STANDBY = IPv6Address("fd00:6d61:6701::2")
MAGS = [IPv6Address("fd00:6d61:6700::1") + i for i in range(4)]  # AnyIP
SESSIONS_PER_MAG = 10
METRICS_PORT = 9100  # a fresh namespace has every port free
POOL = IPv6Network("2001:db8:8000::/40")  # lmaload lma's default --prefix-pool
ZERO = HomeNetworkPrefix(IPv6Address("::"), 0)
TIMEOUT = 15.0
# The child has 50 s in all: shorter waits than tests/test_lma_process.py.
wait_for = functools.partial(lma_children.wait_for, timeout=TIMEOUT)

# --- the parent: a namespace per test --------------------------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh namespace with the LMAs' addresses on lo (raw sockets need root too)."""
    with namespace(
        ["ip", "-6", "addr", "add", f"{ACTIVE}/128", "dev", "lo", "nodad"],
        ["ip", "-6", "addr", "add", f"{STANDBY}/128", "dev", "lo", "nodad"],
    ) as name:
        yield name


def run_in_netns(name: str, function: str, tmp: Path) -> None:
    """Run ``function(tmp)`` of this module in a child process inside namespace ``name``; the
    LMAs it starts die with the namespace should it not kill them itself."""
    netns_run(name, "test_lma_raw", function, str(tmp), timeout=50)


def test_raw_lma_answers_pbus_and_heartbeats(netns: str, tmp_path: Path) -> None:
    run_in_netns(netns, "pbus_heartbeat_and_bad_checksum", tmp_path)


def test_raw_failover_keeps_every_session(netns: str, tmp_path: Path) -> None:
    run_in_netns(netns, "hard_failover", tmp_path)


def test_raw_plain_lma_and_its_restart(netns: str, tmp_path: Path) -> None:
    run_in_netns(netns, "plain_lma_and_restart", tmp_path)


def test_raw_startup_errors_name_the_address(netns: str) -> None:
    """Exit 1 with one line: the default address (--listen 127.0.0.1, IPv4-mapped) cannot be
    bound by a raw IPv6 socket; a raw peer is named by its IPv6 address alone."""
    for args, expected in [
        ((), "cannot open a raw Mobility Header socket on ::ffff:"),
        (("--address", str(ACTIVE), "--peer", "fd00::99"), "peer fd00::99 is unreachable: "),
    ]:
        lma = [sys.executable, "-m", "lmaload", "lma", "--transport", "raw", *args]
        result = subprocess.run(
            ["ip", "netns", "exec", netns, *lma],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith(f"lmaload: {expected}"), result.stderr
        assert args or "IPv4-mapped 127.0.0.1: give --address" in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr


# --- the child: runs inside the namespace ----------------------------------------------------


def raw_lma(tmp: Path, name: str, address: IPv6Address, *args: str) -> LmaProcess:
    """``lmaload lma --transport raw`` at ``address``; /metrics on it, stderr to a file."""
    args = ("--transport", "raw", "--log-level", "debug", *args)
    return LmaProcess.spawn(tmp, name, str(address), 5436, *args, metrics_port=METRICS_PORT)


class Mags:
    """The MAGs: one raw MH socket sends for all of them with the kernel's checksum; another,
    without the kernel's check, receives everything, so a bad checksum from the LMA shows up
    as a failed assertion and not as a missing reply."""

    def __init__(self) -> None:
        self.tx = BatchSocket.raw_mh()
        self.rx = BatchSocket.raw_mh(kernel_checksum=False, rcvbuf=4 << 20)
        self.seen: list[tuple[bytes, IPv6Address, IPv6Address]] = []  # everything received

    def send(self, items: list[tuple[Message, IPv6Address, IPv6Address]]) -> None:
        """(message, MAG, LMA) each; the MH checksum is left 0 for the kernel to fill in."""
        self.send_raw([(encode_mh(m), src, dst) for m, src, dst in items], self.tx)

    def send_raw(self, items: list[tuple[bytes, IPv6Address, IPv6Address]], sock: BatchSocket):
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum([len(data) for data, _, _ in items], out=offsets[1:])
        buf = np.frombuffer(b"".join(data for data, _, _ in items), dtype=np.uint8)
        assert sock.send(buf, offsets, [d for _, _, d in items], src=[s for _, s, _ in items]) == (
            len(items)
        )

    def replies(
        self, lma: IPv6Address, keep: Callable[[Message], object], expected: int
    ) -> list[tuple[Message, IPv6Address]]:
        """Messages ``lma`` sent to the MAGs that ``keep`` wants, with the MAG each went to,
        until ``expected`` came. Every one must carry a valid checksum."""
        got: list[tuple[Message, IPv6Address]] = []
        deadline = time.monotonic() + TIMEOUT
        while len(got) < expected and (left := deadline - time.monotonic()) > 0:
            batch = self.rx.recv(timeout=left)
            for i in range(batch.count):
                data = batch.datagram(i)
                src, dst = IPv6Address(batch.src[i].tobytes()), IPv6Address(batch.dst[i].tobytes())
                self.seen.append((data, src, dst))
                if src != lma or dst not in MAGS:
                    continue  # our own sends, HA messages between the LMAs
                decoded = decode_mh(data, src, dst)
                assert decoded.checksum_ok, (decoded, src, dst)
                if keep(decoded.message):
                    got.append((decoded.message, dst))
        assert len(got) == expected, f"{len(got)} of {expected} replies from {lma}"
        return got

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


def pbu(mn: bytes, seq: int, prefix: HomeNetworkPrefix = ZERO, *extra: object) -> BindingUpdate:
    options = (
        MobileNodeIdentifier(mn),
        prefix,
        HandoffIndicator(1 if prefix == ZERO else 5),
        AccessTechnologyType(4),
        Timestamp.from_unix(time.time()),
        *extra,
    )
    return BindingUpdate(seq, 100, options=options)  # type: ignore[arg-type]


def mn_of(message: Message) -> bytes:
    return next(o.identifier for o in message.options if isinstance(o, MobileNodeIdentifier))


def prefix_of(pba: BindingAck) -> HomeNetworkPrefix:
    return next(o for o in pba.options if isinstance(o, HomeNetworkPrefix))


def register(mags: Mags, lma: IPv6Address, seq: int = 1, *extra: object, sessions=None):
    """SESSIONS_PER_MAG sessions per MAG (or re-register ``sessions``: MN → (MAG, prefix)),
    all accepted with a prefix: MN → (MAG, prefix)."""
    if sessions is None:
        sessions = {
            b"mn-%d-%d@example.com" % (m, i): (mag, ZERO)
            for m, mag in enumerate(MAGS)
            for i in range(SESSIONS_PER_MAG)
        }
    mags.send([(pbu(mn, seq, p, *extra), mag, lma) for mn, (mag, p) in sessions.items()])
    pbas = mags.replies(lma, lambda m: isinstance(m, BindingAck), len(sessions))
    out = {}
    for pba, mag in pbas:
        mn = mn_of(pba)
        assert pba.status == 0 and pba.flags & cp.BA_FLAG_P and pba.sequence == seq, pba
        assert mag == sessions[mn][0], (mn, mag)  # back to the MAG that sent the PBU
        out[mn] = (mag, prefix_of(pba))
    assert set(out) == set(sessions)
    return out


def start(lma: LmaProcess, role: str = "active", peers: int = 0) -> None:
    def up() -> bool:
        samples = lma.metrics()
        return (
            samples.get(("lmaload_lma_role", (("role", role),))) == 1
            and samples.get(("lmaload_lma_peers_alive", ())) == peers
        )

    wait_for(up, f"the {role} LMA at {lma.host}")


def pbus_heartbeat_and_bad_checksum(tmp: str) -> None:
    lma = raw_lma(Path(tmp), "lma", ACTIVE, "--restart-counter", "9")
    mags = Mags()
    try:
        start(lma)
        sessions = register(mags, ACTIVE)
        prefixes = [p for _, p in sessions.values()]
        assert len(set(prefixes)) == len(prefixes)
        assert all(p.prefix in POOL and p.prefix_length == 64 for p in prefixes), prefixes

        mags.send([(Heartbeat(4242), MAGS[1], ACTIVE)])
        [(reply, to)] = mags.replies(
            ACTIVE, lambda m: isinstance(m, Heartbeat) and m.sequence == 4242, 1
        )
        assert to == MAGS[1]
        assert reply.is_response and reply.options == (RestartCounter(9),)

        # A PBU whose checksum is off by one: it goes on the wire (the lenient socket sees it)
        # but the LMA's kernel drops it. The good PBU after it is answered, the bad one never.
        good = encode_mh(pbu(b"good@example.com", 1), MAGS[2], ACTIVE)
        bad = bytearray(encode_mh(pbu(b"bad@example.com", 1), MAGS[2], ACTIVE))
        bad[4:6] = ((int.from_bytes(bad[4:6], "big") + 1) & 0xFFFF).to_bytes(2, "big")
        with BatchSocket.raw_mh(kernel_checksum=False) as own:
            mags.send_raw([(bytes(bad), MAGS[2], ACTIVE), (good, MAGS[2], ACTIVE)], own)
        [(pba, _)] = mags.replies(ACTIVE, lambda m: isinstance(m, BindingAck), 1)
        assert mn_of(pba) == b"good@example.com" and pba.status == 0
        assert (bytes(bad), MAGS[2], ACTIVE) in mags.seen
        assert decode_mh(bytes(bad), MAGS[2], ACTIVE).checksum_ok is False
        time.sleep(0.5)  # room for a (wrong) late PBA
        late = mags.rx.recv(timeout=0.0)
        for i in range(late.count):
            if IPv6Address(late.src[i].tobytes()) == ACTIVE:
                message = decode_mh(late.datagram(i)).message
                assert not isinstance(message, BindingAck), message
        # A plain MAG's PBU as OPMIP's test MAG sent it (sequence number, no Timestamp).
        plain = plain_pbu("opmip", b"plain@example.com", 1, MAGS[3], ACTIVE)
        mags.send_raw([(plain, MAGS[3], ACTIVE)], mags.tx)
        [(pba, _)] = mags.replies(ACTIVE, lambda m: isinstance(m, BindingAck), 1)
        assert mn_of(pba) == b"plain@example.com" and pba.status == 0
        processed = len(sessions) + 2
        wait_for(lambda: lma.metric("lmaload_lma_pbus_processed_total") == processed, "metrics")
        # Every PBU went through the fast lane: raw MH batches reach it as columns.
        assert lma.metric("lmaload_lma_fast_lane_pbus_total") == processed
        assert lma.metric("lmaload_lma_pbas_total", status="0") == processed
        assert lma.metric("lmaload_lma_binding_cache_entries", state="active") == processed
        # The kernel's drop, reported with the good PBU queued after it; nothing else dropped.
        drops = {
            labels: value
            for (name, labels), value in lma.metrics().items()
            if name == "lmaload_lma_drops_total" and value
        }
        assert drops == {(("reason", "kernel"),): 1.0}, drops
    finally:
        mags.close()
        lma.kill()
    log = lma.log.read_text()
    assert "raw IPv6 Mobility Header" in log and "Traceback" not in log, log


def plain_lma_and_restart(tmp: str) -> None:
    """``--plain``: a Heartbeat gets Binding Error 2, a repeated sequence number 135 carrying
    the last accepted one (the Timestamp ignored, never echoed); restarted, the LMA has no
    binding and accepts the same sessions again, with their prefixes."""
    mags = Mags()
    lma = raw_lma(Path(tmp), "plain", ACTIVE, "--plain")
    try:
        start(lma)
        sessions = register(mags, ACTIVE, 7)
        mags.send([(pbu(mn, 7, p), mag, ACTIVE) for mn, (mag, p) in sessions.items()])
        repeats = mags.replies(ACTIVE, lambda m: isinstance(m, BindingAck), len(sessions))
        assert {(pba.status, pba.sequence) for pba, _ in repeats} == {(135, 7)}
        mags.send([(Heartbeat(4242), MAGS[1], ACTIVE)])
        [(error, to)] = mags.replies(ACTIVE, lambda m: not isinstance(m, BindingAck), 1)
        assert to == MAGS[1] and error == BindingError(2)
        assert not any(
            isinstance(o, Timestamp)
            for data, src, _ in mags.seen
            if src == ACTIVE
            for o in decode_mh(data).message.options
        )
        lma.kill()
        lma = raw_lma(Path(tmp), "restarted", ACTIVE, "--plain")
        start(lma)
        assert lma.metric("lmaload_lma_binding_cache_entries", state="active") == 0
        assert register(mags, ACTIVE, 1, sessions=sessions) == sessions
    finally:
        mags.close()
        lma.kill()
    assert "plain RFC 5213" in lma.log.read_text()


def hard_failover(tmp: str) -> None:
    active = raw_lma(Path(tmp), "active", ACTIVE, "--peer", str(STANDBY), "--sync", "before-ack")
    standby = raw_lma(Path(tmp), "standby", STANDBY, "--role", "standby", "--peer", str(ACTIVE))
    mags = Mags()
    try:
        start(active, peers=1)
        start(standby, "standby", peers=1)
        sessions = register(mags, ACTIVE)
        # before-ack: every acknowledged session is at the standby already.
        active.proc.send_signal(signal.SIGKILL)
        active.proc.wait(TIMEOUT)
        wait_for(
            lambda: (
                standby.metric("lmaload_lma_binding_cache_entries", state="synced") == len(sessions)
            ),
            "the synced sessions",
            timeout=2.0,  # a metrics tick or two
        )

        again = register(mags, STANDBY, 2, LmaFailureIndication(ACTIVE), sessions=sessions)
        assert again == sessions  # same MAG, same prefix
        wait_for(
            lambda: (
                standby.metric("lmaload_lma_binding_cache_entries", state="active") == len(sessions)
            ),
            "the re-registered sessions",
        )
        wait_for(lambda: standby.metric("lmaload_lma_role", role="active") == 1, "the role")
        assert standby.metric("lmaload_lma_switchovers_total", kind="mag_takeover") == len(MAGS)
    finally:
        mags.close()
        standby.kill()
        active.kill()
    for lma in (active, standby):
        assert "Traceback" not in lma.log.read_text(), lma.log.read_text()
    assert standby.log.read_text().count("switchover: took over MAG") == len(MAGS)
