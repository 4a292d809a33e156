"""The reference LMA over the raw Mobility Header, measured from outside: ``lmaload lma
--transport raw`` alone in a network namespace, loaded over a veth pair from a second namespace,
beside a trivial raw-MH echo loaded the same way in the same run as a yardstick.

The client (this process, pinned to CPU 1, its raw IPPROTO_MH socket opened in the MAG
namespace) pre-encodes one PBU per mobile node as a plain MAG sends it — sequence 1, A and P,
lifetime 300 s, MN-ID NAI, HNP ``::/0``, HI 1, ATT 4, no Timestamp — and sends them with
sendmmsg (``lmaload._ext.mmsg``) keeping at most ``window`` unanswered, counting the PBAs with
the compiled decoder. The server (pinned to CPU 0) starts empty for every load. Reported per load:
PBAs per second, the server's CPU share (its time on a CPU over the load's wall time), PBAs per
CPU-second, its RSS at the end, the PBUs left unanswered, and the datagrams the kernel dropped on
the server's socket (receive buffer full) and on its link.

The echo (``python3 -m lmaload.bench_raw echo ADDRESS``) turns each PBU received into a PBA
carrying the PBU's options as received, in place, and sends it back: the same batched I/O with
no protocol work, so ``ratio`` — the LMA's PBAs per CPU-second over the echo's — says how much of
the I/O ceiling the LMA reaches, on any machine.

Needs root and iproute2; the namespaces are deleted on the way out.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import numpy as np

from lmaload.bulk import decode_pbas
from lmaload.bulk_types import DECODE_OK
from lmaload.procstat import cpu_seconds, pin, rss_bytes
from lmaload.transport.batch import BatchSocket
from lmaload.transport.udp5436 import send_batch
from lmaload.wire import (
    AccessTechnologyType,
    BindingUpdate,
    HandoffIndicator,
    HomeNetworkPrefix,
    MobileNodeIdentifier,
    encode_mh,
)
from lmaload.wire import codepoints as cp

MAG = IPv6Address("fd00:5213::1")
LMA = IPv6Address("fd00:5213::2")
POOL = "fd00:b000::/40"
MACS = {"mag": "02:00:00:00:52:01", "lma": "02:00:00:00:52:02"}
LIFETIME = 75  # 300 s in units of 4 s
SOCKET_BUFFER = 32 << 20
SERVER_CPU, CLIENT_CPU = 0, 1
STALL = 2.0  # seconds without a PBA before the rest count as lost
CLONE_NEWNET = 0x40000000
MH_PORT = f":{cp.IPPROTO_MH:04X}"  # a raw socket's "port" in /proc/net/raw6

# Windows 64 and 256 are the loads compared; 1024 checks that none is lost to a burst.
FULL = {"mns": (20_000, 200_000), "windows": (64, 256, 1024)}
QUICK = {"mns": (50_000,), "windows": (256, 1024)}


def unavailable() -> str | None:
    """Why the benchmark cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, raw sockets)"
    if shutil.which("ip") is None:
        return "needs iproute2"
    if (os.cpu_count() or 1) < 2:
        return "needs two CPUs"
    return None


@dataclass(frozen=True)
class Load:
    """One load of one server: ``mns`` PBUs, at most ``window`` unanswered."""

    server: str
    mns: int
    window: int
    answered: int
    accepted: int
    seconds: float
    cpu_seconds: float
    client_cpu_seconds: float
    rss_bytes: int
    socket_drops: int
    link_drops: int

    @property
    def lost(self) -> int:
        return self.mns - self.answered

    @property
    def per_second(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds else 0.0

    @property
    def per_cpu_second(self) -> float:
        return self.answered / self.cpu_seconds if self.cpu_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            lost=self.lost,
            per_second=self.per_second,
            cpu_share=self.cpu_share,
            per_cpu_second=self.per_cpu_second,
        )
        return out


def encode_pbus(count: int) -> tuple[np.ndarray, np.ndarray]:
    """One PBU per mobile node ``mn{i}@bench.example``, end to end (buf, offsets)."""
    zero = HomeNetworkPrefix(IPv6Address(0), 0)
    payloads = [
        encode_mh(
            BindingUpdate(
                1,
                LIFETIME,
                options=(
                    MobileNodeIdentifier(b"mn%d@bench.example" % i),
                    zero,
                    HandoffIndicator(cp.HI_ATTACH_NEW_INTERFACE),
                    AccessTechnologyType(4),
                ),
            ),
            MAG,
            LMA,
        )
        for i in range(count)
    ]
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum([len(p) for p in payloads], out=offsets[1:])
    return np.frombuffer(b"".join(payloads), dtype=np.uint8), offsets


# --- namespaces ------------------------------------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def testbed() -> Iterator[tuple[str, str]]:
    """Two fresh namespaces (MAG, LMA) joined by a veth pair with static neighbours; on exit
    what runs in them is killed (only this benchmark's servers) and they are deleted."""
    tag = uuid.uuid4().hex[:8]
    names = {side: f"lmaload-bench-{side}-{tag}" for side in ("mag", "lma")}
    made: list[str] = []
    try:
        for name in names.values():
            _ip("netns", "add", name)
            made.append(name)
        _ip(
            "link", "add", "veth-mag", "address", MACS["mag"], "netns", names["mag"],
            "type", "veth", "peer", "name", "veth-lma", "address", MACS["lma"],
            "netns", names["lma"],
        )  # fmt: skip
        for side, own, other in (("mag", MAG, LMA), ("lma", LMA, MAG)):
            peer = "lma" if side == "mag" else "mag"
            ns = ("-n", names[side])
            _ip(*ns, "link", "set", "lo", "up")
            _ip(*ns, "link", "set", f"veth-{side}", "up")
            _ip(*ns, "-6", "addr", "add", f"{own}/64", "dev", f"veth-{side}", "nodad")
            _ip(
                *ns, "-6", "neigh", "replace", str(other), "lladdr", MACS[peer],
                "dev", f"veth-{side}", "nud", "permanent",
            )  # fmt: skip
        yield names["mag"], names["lma"]
    finally:
        for name in made:
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """This (single-threaded) process in namespace ``name`` meanwhile: sockets opened here
    stay there."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/self/ns/net") as home, open(f"/run/netns/{name}") as there:
        if libc.setns(there.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        try:
            yield
        finally:
            if libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")


# --- the server's figures from /proc ---------------------------------------------------------


def raw_socket_drops(pid: int) -> int | None:
    """The kernel's drop count of the raw MH socket in ``pid``'s namespace; None: no socket."""
    for line in Path(f"/proc/{pid}/net/raw6").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(MH_PORT):
            return int(fields[-1])
    return None


def link_drops(pid: int, link: str = "veth-lma") -> int:
    """Packets dropped on receive by ``link`` of ``pid``'s namespace."""
    for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]:
        name, _, counters = line.partition(":")
        if name.strip() == link:
            return int(counters.split()[3])
    return 0


# --- the load --------------------------------------------------------------------------------


def start_server(lma_ns: str, server: str, log: Path) -> subprocess.Popen[bytes]:
    """The LMA or the echo in ``lma_ns`` on SERVER_CPU, once its raw socket is open."""
    if server == "lma":
        argv = ["-m", "lmaload", "lma", "--transport", "raw", "--listen", str(LMA)]
        argv += ["--prefix-pool", POOL, "--log-level", "warning"]
    else:
        argv = ["-m", "lmaload.bench_raw", "echo", str(LMA)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", lma_ns, sys.executable, *argv],
            stdout=out,
            stderr=out,
            preexec_fn=lambda: pin(SERVER_CPU),
        )
    deadline = time.monotonic() + 30.0
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if raw_socket_drops(proc.pid) is not None:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the {server} did not start: {log.read_text()[-2000:]}")


def load(
    sock: BatchSocket, pbus: tuple[np.ndarray, np.ndarray], mns: int, window: int, pid: int
) -> tuple[int, int, float, float, float]:
    """PBUs 0 .. mns - 1 with at most ``window`` unanswered: (MNs answered, of them with
    status 0, wall seconds, the server's and this process's CPU seconds), from the first PBU to
    the last answer. Answers are counted as they come and decoded afterwards, so that the
    client's own work per batch is the two system calls."""
    buf, offsets = pbus
    received: list[tuple[np.ndarray, np.ndarray]] = []
    sent = count = 0
    cpu0, own0, start = cpu_seconds(pid), time.process_time(), time.perf_counter()
    last = start
    while count < mns:
        if sent < mns and sent - count < window:
            end = min(mns, count + window)
            sent += sock.send(buf[: offsets[end]], offsets[: end + 1], LMA, 0, None, sent)
        batch = sock.recv(timeout=0.001 if sent < mns else 0.05, copy=True)
        now = time.perf_counter()
        if not batch.count:
            if now - last > STALL:
                break
            continue
        last = now
        count += batch.count
        received.append((batch.buf, batch.offsets))
    cpu, own = cpu_seconds(pid) - cpu0, time.process_time() - own0
    answered = np.zeros(mns, dtype=bool)
    accepted = np.zeros(mns, dtype=bool)
    for data, bounds in received:
        pba = decode_pbas(data, bounds, "mh")
        mine = (pba["error"] == DECODE_OK) & (pba["mn_id"] < mns)
        answered[pba["mn_id"][mine]] = True
        accepted[pba["mn_id"][mine & (pba["status"] == cp.STATUS_ACCEPTED)]] = True
    counts = int(np.count_nonzero(answered)), int(np.count_nonzero(accepted))
    return *counts, last - start, cpu, own


def run(
    quick: bool = False,
    mns: tuple[int, ...] | None = None,
    windows: tuple[int, ...] | None = None,
    log: Path | None = None,
) -> dict[str, Any]:
    """Every load (MNs x windows, ``QUICK`` or ``FULL`` unless given) of the echo, then of the
    LMA, and their ratios (``summary``). ``log`` collects the servers' output."""
    plan = QUICK if quick else FULL
    plan = {"mns": mns or plan["mns"], "windows": windows or plan["windows"]}
    pbus = encode_pbus(max(plan["mns"]))
    affinity = os.sched_getaffinity(0)
    loads: list[Load] = []
    with contextlib.ExitStack() as stack:
        if log is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "servers.log"
        stack.callback(os.sched_setaffinity, 0, affinity)
        pin(CLIENT_CPU)
        mag_ns, lma_ns = stack.enter_context(testbed())
        with inside(mag_ns):
            sock = stack.enter_context(
                BatchSocket.raw_mh(rcvbuf=SOCKET_BUFFER, sndbuf=SOCKET_BUFFER)
            )
        for server in ("echo", "lma"):
            for count in plan["mns"]:
                for window in plan["windows"]:
                    loads.append(_one(sock, pbus, server, count, window, lma_ns, log))
    return summary(loads)


def _one(
    sock: BatchSocket,
    pbus: tuple[np.ndarray, np.ndarray],
    server: str,
    mns: int,
    window: int,
    lma_ns: str,
    log: Path,
) -> Load:
    proc = start_server(lma_ns, server, log)
    try:
        drops0 = raw_socket_drops(proc.pid) or 0
        link0 = link_drops(proc.pid)
        answered, accepted, seconds, cpu, client_cpu = load(sock, pbus, mns, window, proc.pid)
        while sock.recv().count:  # late answers of a stalled load
            pass
        return Load(
            server,
            mns,
            window,
            answered,
            accepted,
            seconds,
            cpu,
            client_cpu,
            rss_bytes(proc.pid),
            (raw_socket_drops(proc.pid) or 0) - drops0,
            link_drops(proc.pid) - link0,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def summary(loads: list[Load]) -> dict[str, Any]:
    """The loads; per (MNs, window) the LMA's PBAs per CPU-second over the echo's, ``ratio``
    the lowest of those; the LMA's lowest PBAs per CPU-second, highest RSS and PBUs lost."""
    by = {(x.server, x.mns, x.window): x for x in loads}
    lma = [x for x in loads if x.server == "lma"]
    ratios = {
        f"{x.mns}x{x.window}": x.per_cpu_second / echo.per_cpu_second
        for x in lma
        if (echo := by.get(("echo", x.mns, x.window))) is not None and echo.per_cpu_second
    }
    return {
        "loads": [x.as_dict() for x in loads],
        "ratios": ratios,
        "ratio": min(ratios.values()) if ratios else 0.0,
        "per_cpu_second": min((x.per_cpu_second for x in lma), default=0.0),
        "rss_bytes": max((x.rss_bytes for x in lma), default=0),
        "lost": sum(x.lost for x in lma),
        "kernel_drops": sum(x.socket_drops + x.link_drops for x in lma),
    }


def format_table(results: dict[str, Any]) -> str:
    lines = [
        "server      MNs  window     PBA/s   CPU  PBAs/CPU-s     RSS  lost  "
        "socket drops  link drops  client CPU",
    ]
    for x in results["loads"]:
        lines.append(
            f"{x['server']:6} {x['mns']:8,} {x['window']:6} {x['per_second'] / 1e3:7.1f} k "
            f"{x['cpu_share'] * 100:4.0f}% {x['per_cpu_second'] / 1e3:8.1f} k "
            f"{x['rss_bytes'] / 2**20:4.0f} MiB {x['lost']:5} {x['socket_drops']:13} "
            f"{x['link_drops']:11} {x['client_cpu_seconds'] / x['seconds'] * 100:10.0f}%"
        )
    ratios = ", ".join(f"{k} {v:.2f}" for k, v in results["ratios"].items())
    lines.append(f"LMA / echo, PBAs per CPU-second: {ratios}")
    return "\n".join(lines)


# --- the echo --------------------------------------------------------------------------------


def echo(address: str) -> None:
    """Answer every Binding Update on a raw MH socket bound to ``address`` with a Binding
    Acknowledgement carrying its options, until SIGTERM."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    drops: Counter[str] = Counter()
    fixed = np.arange(6, 12)
    with BatchSocket.raw_mh(address, rcvbuf=SOCKET_BUFFER, sndbuf=SOCKET_BUFFER) as sock:
        while not stopping:
            batch = sock.recv(timeout=0.2)
            if not batch.count:
                continue
            buf, offsets = batch.buf, batch.offsets
            starts = offsets[:-1, None]
            seq, _, lifetime = buf[starts + fixed].reshape(-1, 3, 2).transpose(1, 0, 2)
            buf[starts[:, 0] + 2] = cp.MH_BINDING_ACK
            # BU: sequence, flags, lifetime; BA: status, flags, sequence, lifetime.
            buf[starts + fixed] = np.concatenate(
                [np.zeros_like(seq[:, :1]), np.full_like(seq[:, :1], cp.BA_FLAG_P), seq, lifetime],
                axis=1,
            )
            send_batch(sock, buf, offsets, batch.src, 0, drops, batch.dst)


if __name__ == "__main__":
    if sys.argv[1:2] == ["echo"] and len(sys.argv) == 3:
        echo(sys.argv[2])
    else:
        sys.exit("usage: python3 -m lmaload.bench_raw echo ADDRESS")
