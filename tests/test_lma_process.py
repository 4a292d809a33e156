"""Two ``lmaload lma`` processes on loopback as an active/standby pair, driven by test MAG sockets
over UDP/5436: sessions registered at the active reach the standby through before-ack sync; after
SIGKILL of the active, every acknowledged session re-registers at the standby (PBU + LMA Failure
Indication) with the same prefix. In virtual mode the standby takes over the LMAA's UDP address
and answers heartbeats with the active's Restart Counter. Also the command's exit statuses.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv6Address, ip_address
from pathlib import Path

import pytest

from lmaload.lma_pair import free_port
from lmaload.transport.udp5436 import SignallingSocket, mapped
from lmaload.wire import (
    AccessTechnologyType,
    BindingAck,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeNetworkPrefix,
    LmaFailureIndication,
    MobileNodeIdentifier,
    RestartCounter,
    Timestamp,
)
from tests.lma_children import LmaProcess, wait_for

ACTIVE_HOST, STANDBY_HOST, LMAA_HOST = "127.0.0.11", "127.0.0.12", "127.0.0.10"
MAG_HOSTS = [f"127.1.0.{i}" for i in range(1, 5)]
SESSIONS_PER_MAG = 50
ZERO = HomeNetworkPrefix(IPv6Address("::"), 0)
TIMEOUT = 30.0


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., LmaProcess]]:
    started: list[LmaProcess] = []

    def factory(name: str, host: str, port: int, *args: str) -> LmaProcess:
        started.append(LmaProcess.spawn(tmp_path, name, host, port, *args))
        return started[-1]

    yield factory
    for lma in started:
        lma.kill()


@pytest.fixture
def mags() -> Iterator[list[SignallingSocket]]:
    sockets = [SignallingSocket(host) for host in MAG_HOSTS]
    yield sockets
    for s in sockets:
        s.close()


def pbu(mn: bytes, seq: int, prefix: HomeNetworkPrefix = ZERO, *extra: object) -> BindingUpdate:
    hi = 1 if prefix == ZERO else 5
    options = (
        MobileNodeIdentifier(mn),
        prefix,
        HandoffIndicator(hi),
        AccessTechnologyType(4),
        Timestamp.from_unix(time.time()),
        *extra,
    )
    return BindingUpdate(seq, 100, options=options)  # type: ignore[arg-type]


def collect_pbas(
    sockets: list[SignallingSocket], expected: int, timeout: float = TIMEOUT
) -> dict[bytes, BindingAck]:
    """PBAs by MN identifier until ``expected`` came; other messages (HA Switch) are skipped."""
    got: dict[bytes, BindingAck] = {}
    deadline = time.monotonic() + timeout
    by_fd = {s.sock.fileno(): s for s in sockets}
    while len(got) < expected and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(list(by_fd), [], [], left)
        for fd in ready:
            reply = by_fd[fd].receive(0)
            if reply is not None and isinstance(reply[0], BindingAck):
                mn = next(o for o in reply[0].options if isinstance(o, MobileNodeIdentifier))
                got[mn.identifier] = reply[0]
    return got


def register(
    mags: list[SignallingSocket], lma: IPv6Address, outer: tuple[str, int]
) -> dict[bytes, tuple[SignallingSocket, HomeNetworkPrefix]]:
    """SESSIONS_PER_MAG sessions per MAG, all accepted: MN → (MAG, assigned prefix)."""
    owner = {}
    for m, mag in enumerate(mags):
        for i in range(SESSIONS_PER_MAG):
            mn = b"mn-%d-%d@example.com" % (m, i)
            owner[mn] = mag
            mag.send(pbu(mn, 1), lma, outer)
    pbas = collect_pbas(mags, len(owner))
    assert len(pbas) == len(owner)
    assert {p.status for p in pbas.values()} == {0}
    return {
        mn: (owner[mn], next(o for o in p.options if isinstance(o, HomeNetworkPrefix)))
        for mn, p in pbas.items()
    }


def start_pair(spawn, *args: str, **extra: tuple[str, ...]) -> tuple[LmaProcess, LmaProcess]:
    """An active and a standby that know each other; ``extra['active']``/``['standby']`` are
    options for one of them only. Returns once each sees the other alive."""
    ports = {host: free_port(host) for host in (ACTIVE_HOST, STANDBY_HOST)}
    active = spawn(
        "active",
        ACTIVE_HOST,
        ports[ACTIVE_HOST],
        *("--peer", f"{STANDBY_HOST}:{ports[STANDBY_HOST]}"),
        *args,
        *extra.get("active", ()),
    )
    standby = spawn(
        "standby",
        STANDBY_HOST,
        ports[STANDBY_HOST],
        *("--role", "standby", "--peer", f"{ACTIVE_HOST}:{ports[ACTIVE_HOST]}"),
        *args,
        *extra.get("standby", ()),
    )
    for lma in (active, standby):
        wait_for(lambda lma=lma: lma.metric("lmaload_lma_peers_alive") == 1, "the peers")
    return active, standby


def test_hard_failover_keeps_every_acknowledged_session(spawn, mags) -> None:
    active, standby = start_pair(spawn, "--sync", "before-ack")
    sessions = register(mags, active.inner, active.outer)
    # Kill the active as soon as the last PBA is in: before-ack means every acknowledged
    # session is at the standby already.
    active.proc.send_signal(signal.SIGKILL)
    active.proc.wait(TIMEOUT)
    wait_for(
        lambda: (
            standby.metric("lmaload_lma_binding_cache_entries", state="synced") == len(sessions)
        ),
        "the synced sessions",
        timeout=2.0,
    )
    lfi = LmaFailureIndication(active.inner)
    for mn, (mag, prefix) in sessions.items():
        mag.send(pbu(mn, 2, prefix, lfi), standby.inner, standby.outer)
    pbas = collect_pbas(mags, len(sessions))

    assert {mn: p.status for mn, p in pbas.items()} == dict.fromkeys(sessions, 0)
    for mn, p in pbas.items():
        assert next(o for o in p.options if isinstance(o, HomeNetworkPrefix)) == sessions[mn][1]
    wait_for(
        lambda: (
            standby.metric("lmaload_lma_binding_cache_entries", state="active") == len(sessions)
        ),
        "the re-registered sessions",
    )
    wait_for(lambda: standby.metric("lmaload_lma_role", role="active") == 1, "the role change")
    assert standby.metric("lmaload_lma_switchovers_total", kind="mag_takeover") == len(mags)
    log = standby.log.read_text()
    assert log.count("switchover: took over MAG") == len(mags)
    assert "role active" in log


def heartbeat(mag: SignallingSocket, lmaa: IPv6Address, outer: tuple[str, int]) -> int | None:
    """The Restart Counter the LMAA answers a heartbeat with, or None (no answer in 0.5 s)."""
    mag.send(Heartbeat(1), lmaa, outer)
    deadline = time.monotonic() + 0.5
    while (left := deadline - time.monotonic()) > 0:
        reply = mag.receive(left)
        if reply is not None and isinstance(reply[0], Heartbeat) and reply[0].is_response:
            return next(o.counter for o in reply[0].options if isinstance(o, RestartCounter))
    return None


def test_virtual_switch_standby_takes_the_lmaa(spawn, mags) -> None:
    lmaa_port = free_port(LMAA_HOST)
    lmaa, lmaa_outer = mapped(ip_address(LMAA_HOST)), (LMAA_HOST, lmaa_port)
    virtual = ("--mode", "virtual", "--lmaa", f"{LMAA_HOST}:{lmaa_port}")
    active, standby = start_pair(spawn, *virtual, active=("--restart-counter", "7"))
    sessions = register(mags, lmaa, lmaa_outer)
    assert heartbeat(mags[0], lmaa, lmaa_outer) == 7
    wait_for(
        lambda: (
            standby.metric("lmaload_lma_binding_cache_entries", state="synced") == len(sessions)
        ),
        "the sync",
    )

    active.proc.send_signal(signal.SIGKILL)
    active.proc.wait(TIMEOUT)
    # Heartbeats to the LMAA go unanswered until the standby binds its address.
    assert wait_for(lambda: heartbeat(mags[0], lmaa, lmaa_outer), "the LMAA") == 7
    wait_for(lambda: standby.metric("lmaload_lma_owns_lmaa") == 1, "the LMAA metric")
    assert standby.metric("lmaload_lma_switchovers_total", kind="lmaa_takeover") == 1
    for mn, (mag, prefix) in sessions.items():
        mag.send(pbu(mn, 2, prefix), lmaa, lmaa_outer)
    pbas = collect_pbas(mags, len(sessions))
    for mn, p in pbas.items():
        assert p.status == 0
        assert next(o for o in p.options if isinstance(o, HomeNetworkPrefix)) == sessions[mn][1]
    assert len(pbas) == len(sessions)
    assert "switchover: acquired the LMAA" in standby.log.read_text()


def run_cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lmaload", "lma", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--role", "primary"),
        ("--listen", "127.0.0.1:99999"),
        ("--mode", "virtual"),
        ("--peer", "not-an-address"),
        ("--peer", "[::1]:5436"),  # IPv6 peer, IPv4 listen
        ("--listen", "192.0.2.1"),  # not local
        ("--prefix-pool", "2001:db8::/129"),
        ("--transport", "raw", "--listen", "::1", "--pcap", "lma.pcap"),
        ("--plain", "--peer", "127.0.0.12"),
        ("--plain", "--role", "standby"),
        ("--plain", "--sync", "before-ack"),
        ("--plain", "--heartbeat-interval", "5"),
        ("--reserve", "-5"),
    ],
)
def test_bad_options_exit_2_with_one_line(args) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("lmaload: lma: ") and result.stderr.count("\n") == 1


def test_address_in_use_and_unreachable_peer_exit_1(tmp_path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        result = run_cli("--listen", f"127.0.0.1:{taken.getsockname()[1]}")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Address already in use" in result.stderr
    result = run_cli("--listen", "[::1]:0", "--peer", "fe80::1")  # link-local needs a scope
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "unreachable" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly(spawn, signum) -> None:
    lma = spawn("lma", "127.0.0.1", free_port("127.0.0.1"))
    wait_for(lambda: lma.metric("lmaload_lma_role", role="active") == 1, "the LMA")
    lma.proc.send_signal(signum)
    assert lma.proc.wait(TIMEOUT) == 0
    log = lma.log.read_text()
    assert "stopped" in log and "Traceback" not in log


def test_an_lma_runs_batch_scheduled(spawn) -> None:
    """Woken by its peer's datagrams, an LMA does not preempt the process running on its CPU
    (procstat.batch_scheduling)."""
    lma = spawn("lma", "127.0.0.1", free_port("127.0.0.1"))
    wait_for(lambda: lma.metric("lmaload_lma_role", role="active") == 1, "the LMA")
    assert os.sched_getscheduler(lma.proc.pid) == os.SCHED_BATCH
