"""PBUs per second through the reference LMA (``lmaload lma``, one process pinned to one core)
over UDP/5436 on loopback.

The client, pinned to the other core, pre-encodes PBUs for distinct mobile nodes (sequence-number
scheme, so no Timestamp goes stale while it waits), blasts them with the batched sender from
several MAG source addresses of 127.1/16 with at most ``--window`` unanswered, and counts the
PBAs: first new sessions (ALL_ZERO HNP), then refreshes (HI 5) of the prefixes the PBAs gave.
``--profile FILE`` runs the LMA under cProfile and prints where its time went.

    python3 benchmarks/lma_pbu.py --count 100000
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from ipaddress import IPv6Address, ip_address
from pathlib import Path

import numpy as np

from lmaload.bulk import decode_pbas
from lmaload.transport.batch import BatchSocket
from lmaload.transport.udp5436 import frame, mapped
from lmaload.wire import (
    AccessTechnologyType,
    BindingUpdate,
    HandoffIndicator,
    HomeNetworkPrefix,
    MobileNodeIdentifier,
    encode_mh,
)

LMA_HOST = "127.0.0.21"
MAG_HOSTS = [f"127.1.1.{i}" for i in range(1, 17)]
ZERO = HomeNetworkPrefix(IPv6Address("::"), 0)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def encode_pbus(
    count: int, lma: IPv6Address, prefixes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Framed PBUs for ``count`` distinct MNs (buf, offsets) and each one's MAG source row:
    new sessions asking for a prefix (HI 1), or with ``prefixes`` (the /64 each MN was given,
    (count, 16)) refreshes of those (HI 5)."""
    payloads = []
    mags = [mapped(ip_address(h)) for h in MAG_HOSTS]
    for i in range(count):
        mag = mags[i % len(mags)]
        hnp = (
            ZERO if prefixes is None else HomeNetworkPrefix(IPv6Address(prefixes[i].tobytes()), 64)
        )
        options = (
            MobileNodeIdentifier(b"mn%d@bench.example" % i),
            hnp,
            HandoffIndicator(1 if prefixes is None else 5),
            AccessTechnologyType(4),
        )
        seq = 1 if prefixes is None else 2
        mh = encode_mh(BindingUpdate(seq, 1000, options=options), mag, lma)
        payloads.append(frame(mh, mag, lma))
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum([len(p) for p in payloads], out=offsets[1:])
    sources = np.array(
        [ip_address(MAG_HOSTS[i % len(MAG_HOSTS)]).packed for i in range(count)], dtype="S4"
    ).view(np.uint8)
    return (
        np.frombuffer(b"".join(payloads), dtype=np.uint8),
        offsets,
        sources.reshape(-1, 4),
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def blast(
    buf: np.ndarray,
    offsets: np.ndarray,
    sources: np.ndarray,
    lma: tuple[str, int],
    window: int,
    prefixes: np.ndarray,
) -> tuple[int, float]:
    """Send everything with at most ``window`` unanswered; (PBAs received, seconds). The
    prefix each PBA 0 assigns goes to ``prefixes`` (row: the MN's number)."""
    count = len(offsets) - 1
    # bound to the wildcard address: the PBAs come back to every MAG address, at one port
    sock = BatchSocket.udp("0.0.0.0", 0, rcvbuf=8 << 20, sndbuf=8 << 20)
    sent = received = 0
    start = time.perf_counter()
    last_progress = start
    while received < count:
        if sent < count and sent - received < window:
            end = min(count, received + window)
            sent += sock.send(
                buf[: offsets[end]], offsets[: end + 1], lma[0], lma[1], sources[:end], sent
            )
        batch = sock.recv(timeout=0.001 if sent < count else 0.2)
        got = batch.count
        received += got
        if got:
            pba = decode_pbas(batch.buf, batch.offsets)
            ok = (pba["error"] == 0) & (pba["status"] == 0) & (pba["mn_id"] < count)
            prefixes[pba["mn_id"][ok]] = pba["hnp"][ok]
        now = time.perf_counter()
        if got:
            last_progress = now
        elif now - last_progress > 5.0:
            break  # lost PBAs: report what came
    elapsed = time.perf_counter() - start
    sock.close()
    return received, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=4096)
    parser.add_argument("--profile", metavar="FILE")
    args = parser.parse_args()

    port = free_port(LMA_HOST)
    lma_inner = mapped(ip_address(LMA_HOST))
    metrics_port = free_port(LMA_HOST)
    prefix = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    command = [sys.executable, *prefix, "-m", "lmaload", "lma", "--listen", f"{LMA_HOST}:{port}"]
    command += ["--metrics-port", str(metrics_port), "--prefix-pool", "2001:db8::/32"]
    lma = subprocess.Popen(command, preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    os.sched_setaffinity(0, {1})
    try:
        buf, offsets, sources = encode_pbus(args.count, lma_inner)
        metrics_url = f"http://{LMA_HOST}:{metrics_port}/metrics"
        for _ in range(100):
            try:
                urllib.request.urlopen(metrics_url, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        prefixes = np.zeros((args.count, 16), dtype=np.uint8)
        for phase in ("new sessions", "refreshes"):
            if phase == "refreshes":
                buf, offsets, sources = encode_pbus(args.count, lma_inner, prefixes)
            cpu = cpu_seconds(lma.pid)
            target = (LMA_HOST, port)
            received, elapsed = blast(buf, offsets, sources, target, args.window, prefixes)
            cpu = cpu_seconds(lma.pid) - cpu
            print(
                f"{phase}: {received} PBAs for {args.count} PBUs in {elapsed:.2f} s: "
                f"{received / elapsed:,.0f} PBUs/s over UDP loopback; the LMA used "
                f"{cpu:.2f} s of CPU: {received / cpu:,.0f} PBUs per CPU second"
            )
    finally:
        lma.send_signal(signal.SIGTERM)
        lma.wait(30)
    if args.profile:
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
