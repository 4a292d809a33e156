"""The embedded LMA pair of ``lmaload run``: two ``lmaload lma`` child processes on loopback, an
active and a standby that know each other, watched through their /metrics endpoints.

Hard mode: each LMA is reached at its own address (127.0.0.11, 127.0.0.12; inner addresses
IPv4-mapped). Virtual mode: the MAGs talk to the shared LMAA 127.0.0.10, bound by the active and
taken over by the standby. Either way each LMA serves /metrics at its own address, on a free port
or on the one port given for both. Every LMA writes its log to a file in ``log_dir`` (no pipe to
fill). Restart mode has one LMA instead (``EmbeddedLma``, at 127.0.0.11), killed and started
again.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from lmaload.capture import Capture
from lmaload.population import Population
from lmaload.procstat import pin
from lmaload.transport.mag_loop import MagTransport, RawMagTransport
from lmaload.transport.udp5436 import mapped

ACTIVE_HOST, STANDBY_HOST, LMAA_HOST = "127.0.0.11", "127.0.0.12", "127.0.0.10"
# Enough /64s for any population (the default /48 holds 65 536).
PREFIX_POOL = "2001:db8:8000::/40"
STOP_TIMEOUT = 10.0
# SS-REPs per second from each LMA to the other. The default (1000, spec-digest R26) protects a
# peer across a network; at about 21 sessions a message it would cap the pair's before-ack
# capacity near 21 000/s, below what the pair's CPU sustains on loopback.
SYNC_PACING_RATE = 20_000


class LmaStartError(Exception):
    """An LMA of the pair did not come up: one line for the user."""


def free_port(host: str) -> int:
    """A port free on ``host`` for UDP and for TCP (/metrics)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            try:
                tcp.bind((host, port))
            except OSError:
                continue
        return port


def url_host(host: str) -> str:
    """``host`` as it goes before ``:port`` (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


@dataclass
class LmaChild:
    """One ``lmaload lma`` process."""

    name: str
    host: str
    port: int
    metrics_port: int
    log: Path
    proc: subprocess.Popen
    netns: str | None = None

    @classmethod
    def start(
        cls,
        name: str,
        host: str,
        port: int,
        log_dir: Path,
        args: list[str],
        metrics_port: int | None = None,
        netns: str | None = None,
    ) -> LmaChild:
        """``metrics_port`` defaults to one free on ``host`` (an IPv4 host); give it for IPv6.
        ``netns``: run it in that network namespace (``ip netns exec``)."""
        if metrics_port is None:
            metrics_port = free_port(host)
        log = log_dir / f"{name}.log"
        listen = f"{url_host(host)}:{port}"
        argv = ["--listen", listen, "--metrics-port", str(metrics_port), *args]
        with log.open("wb") as err:
            # Run from the log directory: "python -m" puts the working directory first on the
            # path, and a source checkout there (no compiled extensions) would shadow the
            # installed package.
            enter = ["ip", "netns", "exec", netns] if netns is not None else []
            proc = subprocess.Popen(
                [*enter, sys.executable, "-m", "lmaload", "lma", *argv],
                cwd=log_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        return cls(name, host, port, metrics_port, log, proc, netns)

    @property
    def inner(self) -> IPv6Address:
        return mapped(ip_address(self.host))

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def metrics_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.metrics_port}/metrics"

    def metric(self, name: str, **labels: str) -> float | None:
        """One sample of the LMA's /metrics (None while it does not answer)."""
        try:
            text = urllib.request.urlopen(self.metrics_url, timeout=1).read().decode()
        except OSError:
            return None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return 0.0

    def last_log_line(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.proc.returncode}"

    def kill(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()


class EmbeddedPair:
    """Active and standby ``lmaload lma`` processes (``start``, ``wait_ready``, ``stop``,
    ``restart``), every thread of both on ``cpu`` when given, each with room for ``reserve``
    sessions made at start (``lmaload lma --reserve``)."""

    def __init__(
        self,
        mode: str,
        sync: str,
        log_dir: Path,
        capture: bool = False,
        metrics_port: int | None = None,
        cpu: int | None = None,
        reserve: int = 0,
    ) -> None:
        self.mode = mode
        self.sync = sync
        self.cpu = cpu
        self.reserve = reserve
        self.log_dir = log_dir
        self.capture = capture
        self.metrics_port = metrics_port
        self.lmaa_port = free_port(LMAA_HOST) if mode == "virtual" else None
        self.active: LmaChild | None = None
        self.standby: LmaChild | None = None

    starting = "starting the LMA pair"

    def start(self) -> None:
        common = [
            *("--mode", self.mode, "--sync", self.sync, "--prefix-pool", PREFIX_POOL),
            *("--sync-pacing-rate", str(SYNC_PACING_RATE)),
            *("--reserve", str(self.reserve)),
        ]
        if self.lmaa_port is not None:
            common += ["--lmaa", f"{LMAA_HOST}:{self.lmaa_port}"]
        active_port, standby_port = free_port(ACTIVE_HOST), free_port(STANDBY_HOST)
        active = f"{ACTIVE_HOST}:{active_port}"
        self.active = LmaChild.start(
            "active",
            ACTIVE_HOST,
            active_port,
            self.log_dir,
            [*common, *self._pcap("active"), "--peer", f"{STANDBY_HOST}:{standby_port}"],
            self.metrics_port,
        )
        self.standby = LmaChild.start(
            "standby",
            STANDBY_HOST,
            standby_port,
            self.log_dir,
            [*common, *self._pcap("standby"), "--role", "standby", "--peer", active],
            self.metrics_port,
        )
        if self.cpu is not None:
            for child in self.children:
                pin(self.cpu, child.proc.pid)

    def restart(self, timeout: float, reserve: int = 0) -> None:
        """Stop both LMAs and start a fresh pair with room for ``reserve`` sessions, ready
        within ``timeout`` (``wait_ready``)."""
        self.reserve = reserve
        self.stop()
        self.start()
        self.wait_ready(timeout)

    def _pcap(self, name: str) -> list[str]:
        return ["--pcap", str(self.log_dir / f"{name}.pcap")] if self.capture else []

    def lma_captures(self) -> list[tuple[Path, str]]:
        """(capture, host) of each LMA that records its signalling."""
        if not self.capture:
            return []
        return [(self.log_dir / f"{c.name}.pcap", c.host) for c in self.children]

    @property
    def children(self) -> list[LmaChild]:
        return [c for c in (self.active, self.standby) if c is not None]

    def wait_ready(self, timeout: float) -> None:
        """Until each LMA sees its peer alive; LmaStartError when one exits or time runs out."""
        deadline = time.monotonic() + timeout
        waiting = list(self.children)
        while waiting:
            for child in list(waiting):
                if not child.running:
                    raise LmaStartError(f"{child.name} LMA failed: {child.last_log_line()}")
                if child.metric("lmaload_lma_peers_alive") == 1:
                    waiting.remove(child)
            if time.monotonic() > deadline:
                names = " and ".join(c.name for c in waiting)
                raise LmaStartError(f"{names} LMA did not see its peer within {timeout:g} s")
            time.sleep(0.05)

    def routes(self) -> dict[IPv6Address, tuple[str, int]]:
        """Inner address → outer (host, port) of what the MAGs talk to."""
        assert self.active is not None and self.standby is not None
        if self.lmaa_port is not None:
            return {mapped(ip_address(LMAA_HOST)): (LMAA_HOST, self.lmaa_port)}
        return {c.inner: (c.host, c.port) for c in (self.active, self.standby)}

    def anchors(self) -> tuple[IPv6Address, IPv6Address | None]:
        """The inner addresses the MAGs register with, and fail over to (None: virtual)."""
        if self.lmaa_port is not None:
            return mapped(ip_address(LMAA_HOST)), None
        assert self.active is not None and self.standby is not None
        return self.active.inner, self.standby.inner

    observes_sync = True

    def synced(self, sessions: int) -> bool:
        """Whether the standby's binding cache holds ``sessions`` synced entries."""
        assert self.standby is not None
        value = self.standby.metric("lmaload_lma_binding_cache_entries", state="synced")
        return value is not None and value >= sessions

    can_fail = True

    def fail(self) -> None:
        """SIGKILL the active."""
        assert self.active is not None
        self.active.kill()

    loses_state = False

    def recover(self) -> None:
        raise NotImplementedError("a pair fails over: restart mode has its own target")

    def failure_problems(self) -> list[str]:
        return []

    def mag_transport(
        self, population: Population, capture: Capture | None
    ) -> MagTransport | RawMagTransport:
        """UDP/5436 towards ``routes`` (the lab's pair: raw Mobility Header)."""
        return MagTransport(population, self.routes(), capture)

    def stop(self) -> None:
        for child in self.children:
            child.stop()


class EmbeddedLma:
    """Restart mode's target: one standalone ``lmaload lma`` process (no peer, no standby).
    ``fail`` SIGKILLs it; ``recover`` starts it again with the same arguments. ``plain``: a
    plain RFC 5213 LMA (``--plain``: no heartbeats, so no Restart Counter); otherwise the
    reference LMA with the next Restart Counter each time (RFC 5847 §3.4: an LMA counts its
    restarts that lost the binding cache)."""

    def __init__(self, log_dir: Path, capture: bool = False, plain: bool = False) -> None:
        self.log_dir = log_dir
        self.capture = capture
        self.plain = plain
        self.port = free_port(ACTIVE_HOST)
        self.restarts = 0
        self.lma: LmaChild | None = None

    starting = "starting the LMA"

    def start(self) -> None:
        pcap = ["--pcap", str(self.log_dir / f"lma{self.restarts}.pcap")] if self.capture else []
        self.lma = LmaChild.start(
            f"lma{self.restarts}",
            ACTIVE_HOST,
            self.port,
            self.log_dir,
            ["--prefix-pool", PREFIX_POOL, *self._kind, *pcap],
        )

    @property
    def _kind(self) -> list[str]:
        return ["--plain"] if self.plain else ["--restart-counter", str(self.restarts + 1)]

    def wait_ready(self, timeout: float) -> None:
        """Until its /metrics answer; LmaStartError when it exits or time runs out."""
        deadline = time.monotonic() + timeout
        assert self.lma is not None
        while self.lma.metric("lmaload_lma_peers_alive") is None:
            if not self.lma.running:
                raise LmaStartError(f"the LMA failed: {self.lma.last_log_line()}")
            if time.monotonic() > deadline:
                raise LmaStartError(f"the LMA did not answer within {timeout:g} s")
            time.sleep(0.05)

    def routes(self) -> dict[IPv6Address, tuple[str, int]]:
        assert self.lma is not None
        return {self.lma.inner: (ACTIVE_HOST, self.port)}

    def anchors(self) -> tuple[IPv6Address, IPv6Address | None]:
        return mapped(ip_address(ACTIVE_HOST)), None

    observes_sync = False

    def synced(self, sessions: int) -> bool:
        raise NotImplementedError("one LMA: nothing is synced")

    can_fail = True

    def fail(self) -> None:
        """SIGKILL the LMA: its binding cache is gone."""
        assert self.lma is not None
        self.lma.kill()

    loses_state = True  # a new process: its binding cache starts empty

    def recover(self) -> None:
        """Start it again, at the same address (the MAGs' probes tell when it answers)."""
        self.restarts += 1
        self.start()

    def failure_problems(self) -> list[str]:
        return []

    def lma_captures(self) -> list[tuple[Path, str]]:
        if not self.capture:
            return []
        return [(self.log_dir / f"lma{n}.pcap", ACTIVE_HOST) for n in range(self.restarts + 1)]

    def mag_transport(self, population: Population, capture: Capture | None) -> MagTransport:
        return MagTransport(population, self.routes(), capture)

    def stop(self) -> None:
        if self.lma is not None:
            self.lma.stop()
