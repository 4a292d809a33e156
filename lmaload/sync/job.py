"""``lmaload sync``: the driver around ``SyncSender`` and ``Verifier`` — sockets, the clock, the
embedded standby, the phases, the results document.

Without ``--standby`` one ``lmaload lma --role standby`` child runs on loopback with lmaload's
socket as its configured peer (the reference standby accepts sync from that peer only). Phases:
HA-HELLO until the standby answers (``HELLO_TIMEOUT``); the stream until every record is sent
(and acknowledged or given up); the sample verification from the sessions' MAGs (one UDP socket
sending from each MAG's 127.1.x.y address, ``MagTransport``) while the sender keeps answering
HELLOs, SO-REQs and SS-REPs. The generator's CPU share is the process's CPU time over the
stream's wall time.

A ``--standby`` reached over the raw Mobility Header (an IPv6 address, ``Endpoint.raw``) gets
the same messages on a raw socket bound to lmaload's own address (the sender's framed payloads
lose their inner IPv6 header on the way out and get one on the way in), and the verification's
MAGs send from the population's prefix, made local for the run unless it is
(``lmaload.lab.mag_host``).
"""

from __future__ import annotations

import selectors
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Any

import numpy as np

from lmaload import results as res
from lmaload._ext.framing import frame
from lmaload.checks import Check
from lmaload.checks import exit_status as check_status
from lmaload.endpoints import RAW, Endpoint
from lmaload.lab import mag_host
from lmaload.lab.netns import LabError
from lmaload.lma_pair import LmaChild, free_port
from lmaload.population import Population, PopulationSpec, generate
from lmaload.progress import Progress
from lmaload.protocol.datagrams import Columns, Datagrams
from lmaload.sync.metrics import SyncMetrics
from lmaload.sync.plan import build_plan
from lmaload.sync.report import generator_section, sync_section
from lmaload.sync.sender import SenderConfig, SyncSender
from lmaload.sync.verify import Verifier, VerifyConfig
from lmaload.transport.batch import BatchSocket
from lmaload.transport.mag_loop import MagTransport, RawMagTransport
from lmaload.transport.raw_mh import send_raw
from lmaload.transport.udp5436 import PMIP6_CNTL_PORT, mapped, send_batch
from lmaload.wire.ipv6 import IPV6_HEADER_LENGTH

EMBEDDED_STANDBY_HOST = "127.0.0.12"
EMBEDDED_PEER_HOST = "127.0.0.21"  # lmaload's own address towards the embedded standby
HELLO_TIMEOUT = 15.0
PROBE_PORT = 5436  # the raw Mobility Header has no ports: a UDP probe of the route needs one
SOCKET_BUFFER = 8 << 20
SLICE = 0.1  # seconds between phase and progress checks
METRICS_INTERVAL = 0.5
MAX_BEHIND_SCHEDULE = 0.01
MAX_BATCHES_PER_WAKEUP = 8


@dataclass(frozen=True)
class SyncJobConfig:
    """The options of ``lmaload sync``. ``standby`` None: the embedded standby."""

    standby: Endpoint | None = None
    listen: tuple[str, int] | None = None  # default: see SyncJob._listen
    address: IPv6Address | None = None  # our inner address; default: listen host, mapped
    sessions: int = 10_000
    mags: int = 100
    rate: float | None = None
    window: int | None = 64
    ack: bool = True
    update_ratio: float = 0.0
    delete_ratio: float = 0.0
    hello: bool = True
    hello_timeout: float = HELLO_TIMEOUT
    verify: int = 1000
    seed: int = 0
    results: Path = Path("results.json")
    metrics_port: int | None = None
    allow_lag: bool = False


class SyncError(Exception):
    """The run could not be carried out: one line for the user."""


class SyncJob:
    """One run: ``run()`` returns the results document."""

    def __init__(self, config: SyncJobConfig, log_dir: Path) -> None:
        self.config = config
        self.log_dir = log_dir
        self.progress = Progress()
        self.child: LmaChild | None = None
        self.metrics = SyncMetrics()
        self.sent = self.received = 0
        self.mag_host = mag_host.MagHost(IPv6Network(PopulationSpec.mag_prefix6))  # raw MH
        self.drops: Counter[str] = Counter()
        self.verifier: Verifier | None = None
        self._metrics_due = 0.0
        self._rate_mark = (time.monotonic(), 0)

    # --- set-up --------------------------------------------------------------------------------

    @property
    def raw(self) -> bool:
        """Whether the standby is reached over the raw Mobility Header."""
        return self.config.standby is not None and self.config.standby.raw

    def _listen(self) -> tuple[str, int]:
        """``--listen``; else a free port of EMBEDDED_PEER_HOST for the embedded standby, else
        the source address towards ``--standby``, port 5436 (over raw MH: port ``RAW``)."""
        cfg = self.config
        if cfg.listen is not None:
            return cfg.listen
        if cfg.standby is None:
            return EMBEDDED_PEER_HOST, free_port(EMBEDDED_PEER_HOST)
        # The address the kernel would send to the standby from.
        family = socket.AF_INET if cfg.standby.host.version == 4 else socket.AF_INET6
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((str(cfg.standby.host), cfg.standby.port or PROBE_PORT))
            except OSError as exc:
                raise SyncError(f"standby {cfg.standby} is unreachable: {exc.strerror}") from None
            return probe.getsockname()[0], RAW if self.raw else PMIP6_CNTL_PORT

    def _start_standby(self, listen: tuple[str, int], address: IPv6Address) -> Endpoint:
        if self.config.standby is not None:
            return self.config.standby
        port = free_port(EMBEDDED_STANDBY_HOST)
        peer = f"{address}@{listen[0]}:{listen[1]}"
        self.child = LmaChild.start(
            "standby",
            EMBEDDED_STANDBY_HOST,
            port,
            self.log_dir,
            ["--role", "standby", "--peer", peer],
        )
        return Endpoint(
            mapped(IPv4Address(EMBEDDED_STANDBY_HOST)), IPv4Address(EMBEDDED_STANDBY_HOST), port
        )

    def _open_raw(self, address: IPv6Address) -> BatchSocket:
        """A raw Mobility Header socket bound to lmaload's own ``address``."""
        try:
            mag_host.require_root()
            if mag_host.not_local([address]) is not None:
                raise SyncError(f"{address} (lmaload's --address) is not an address of this host")
            return BatchSocket.raw_mh(str(address), rcvbuf=SOCKET_BUFFER, sndbuf=SOCKET_BUFFER)
        except LabError as exc:
            raise SyncError(str(exc)) from None
        except OSError as exc:
            raise SyncError(
                f"cannot open a raw Mobility Header socket on {address}: {exc}"
            ) from None

    def _open(self, listen: tuple[str, int], standby: Endpoint) -> BatchSocket:
        try:
            sock = BatchSocket.udp(*listen, rcvbuf=SOCKET_BUFFER, sndbuf=SOCKET_BUFFER)
        except OSError as exc:
            raise SyncError(
                f"cannot listen on {listen[0]} port {listen[1]}: {exc.strerror}"
            ) from None
        if standby.host.version != (6 if sock.family == socket.AF_INET6 else 4):
            sock.close()
            raise SyncError(f"the standby {standby.host} is not of --listen's address family")
        with socket.socket(sock.family, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(standby.outer)
            except OSError as exc:
                sock.close()
                raise SyncError(f"standby {standby} is unreachable: {exc.strerror}") from None
        return sock

    # --- the run -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.config
        if cfg.metrics_port is not None:
            try:
                self.metrics.serve(cfg.metrics_port, "127.0.0.1")
            except OSError as exc:
                raise SyncError(
                    f"cannot serve metrics on port {cfg.metrics_port}: {exc.strerror}"
                ) from None
        listen = (str(cfg.address), RAW) if self.raw and cfg.address else self._listen()
        address = cfg.address or mapped(ip_address(listen[0]))
        if address.is_unspecified:
            raise SyncError("give --address with a wildcard --listen")
        pop = generate(PopulationSpec(mns=cfg.sessions, mags=cfg.mags, seed=cfg.seed))
        plan = build_plan(cfg.sessions, cfg.update_ratio, cfg.delete_ratio, cfg.seed)
        standby = self._start_standby(listen, address)
        self.sock = self._open_raw(address) if self.raw else self._open(listen, standby)
        self.standby = standby
        self._dst = np.frombuffer(standby.host.packed, np.uint8).reshape(1, -1)
        self._src = np.frombuffer(address.packed, np.uint8).reshape(1, -1)
        sender_config = SenderConfig(
            address=address,
            standby=standby.inner,
            rate=cfg.rate,
            window=cfg.window,
            ack=cfg.ack,
            hello=cfg.hello,
        )
        self.sender = sender = SyncSender(pop, plan, sender_config, time.time())
        selector = selectors.DefaultSelector()
        selector.register(self.sock.fileno(), selectors.EVENT_READ, "peer")
        self.selector = selector
        self.mags: MagTransport | RawMagTransport | None = None
        try:
            self.progress.show("waiting for the standby's HA-HELLO" if cfg.hello else "streaming")
            if cfg.hello and not self._serve(
                time.time() + cfg.hello_timeout, lambda: sender.phase != "hello"
            ):
                raise SyncError(self._silent_standby())
            cpu0, wall0 = time.process_time(), time.time()
            self._serve(float("inf"), lambda: sender.done)
            cpu = (time.process_time() - cpu0, time.time() - wall0)
            verification = self._verify(pop, plan.live, address, standby)
            standby_report = self._standby_report()
        finally:
            self.progress.done()
            selector.close()
            self.sock.close()
            if self.mags is not None:
                self.mags.close()
            self.mag_host.close()
        drops = dict(self.drops)
        if self.mags is not None:
            drops.update({f"mag_{k}": v for k, v in self.mags.drops.items()})
        return {
            "schema_version": res.SCHEMA_VERSION,
            "kind": "sync",
            "config": self._config_json(),
            "sync": sync_section(sender, plan, verification, standby_report),
            "generator": generator_section(sender, (self.sent, self.received), cpu, drops),
        }

    def _silent_standby(self) -> str:
        if self.child is not None and not self.child.running:
            return f"the embedded standby LMA failed: {self.child.last_log_line()}"
        return (
            f"standby {self.standby} did not answer HA-HELLO within {self.config.hello_timeout:g} s"
        )

    def _verify(
        self, pop: Population, live: np.ndarray, address: IPv6Address, standby: Endpoint
    ) -> dict[str, Any]:
        cfg = self.config
        if cfg.verify == 0:
            return {"skipped": "--verify 0"}
        if not (self.raw or (standby.host.version == 4 and standby.host.is_loopback)):
            return {"skipped": "the MAGs send from 127.1.x.y: loopback standbys only"}
        candidates = np.nonzero(live & (self.sender.row_state == 1))[0]
        rng = np.random.default_rng(cfg.seed + 1)
        rows = np.sort(rng.choice(candidates, min(cfg.verify, len(candidates)), replace=False))
        self.mags = (
            self._raw_mags(pop) if self.raw else MagTransport(pop, {standby.inner: standby.outer})
        )
        self.selector.register(self.mags.sock.fileno(), selectors.EVENT_READ, "mags")
        verify_config = VerifyConfig(standby.inner, address)
        self.verifier = verifier = Verifier(pop, rows, verify_config, time.time())
        budget = len(rows) / verify_config.rate + verify_config.attempts * verify_config.timeout
        self._serve(time.time() + budget + 5.0, lambda: verifier.done)
        return verifier.summary()

    def _raw_mags(self, pop: Population) -> RawMagTransport:
        """The MAGs' raw socket, their prefix made local for the run unless it is."""
        try:
            return self.mag_host.open(pop, [self.standby.inner])
        except LabError as exc:
            raise SyncError(str(exc)) from None

    def _standby_report(self) -> dict[str, Any] | None:
        """What the embedded standby's /metrics say after the run."""
        child = self.child
        if child is None:
            return None
        return {
            "sessions_applied": child.metric("lmaload_lma_sessions_synced_in_total"),
            "ss_reps_received": child.metric("lmaload_lma_ss_reps_received_total"),
            "synced_entries": child.metric("lmaload_lma_binding_cache_entries", state="synced"),
            "kernel_drops": child.metric("lmaload_lma_drops_total", reason="kernel"),
        }

    # --- the loop ------------------------------------------------------------------------------

    def _serve(self, until: float, done: Callable[[], bool]) -> bool:
        """Drive the engines until ``done()`` or ``until``; whether it got done."""
        while not done():
            now = time.time()
            if now >= until:
                return False
            if self.child is not None and not self.child.running:
                raise SyncError(f"the embedded standby LMA failed: {self.child.last_log_line()}")
            self._run_until(min(now + SLICE, until), done)
            if self.progress.due():
                self.progress.show(self._status())
        return True

    def _engines(self) -> list[Any]:
        return [self.sender] if self.verifier is None else [self.sender, self.verifier]

    def _run_until(self, deadline: float, done: Callable[[], bool]) -> None:
        while not done():
            now = time.time()
            if now >= self._metrics_due:
                self.metrics.observe(self.sender, self.verifier, now)
                self._metrics_due = now + METRICS_INTERVAL
            ran = False
            for engine in self._engines():
                due = engine.next_timer()
                if due is not None and due <= now:
                    engine.handle_timer(now)
                    ran = True
            if ran:
                self._flush()
                continue
            if now >= deadline:
                return
            timers = [t for e in self._engines() if (t := e.next_timer()) is not None]
            timeout = min([deadline, *timers]) - now
            for key, _ in self.selector.select(max(timeout, 0.0)):
                if key.data == "peer":
                    self._receive_peer()
                else:
                    self._receive_mags()

    def _receive_peer(self) -> None:
        for _ in range(MAX_BATCHES_PER_WAKEUP):
            batch = self.sock.recv()
            if batch.new_drops:
                self.drops["kernel"] += batch.new_drops
            if batch.truncated:
                self.drops["too_long"] += batch.truncated
            if not batch.count:
                return
            self.received += batch.count
            buf, offsets = batch.buf, batch.offsets
            if self.raw:  # the sender reads UDP/5436 payloads: each MH behind its IPv6 header
                buf, offsets = frame(buf, offsets[:-1], offsets[1:], batch.src, batch.dst)
            self.sender.receive(buf, offsets, time.time())
            self._flush()

    def _receive_mags(self) -> None:
        assert self.mags is not None and self.verifier is not None
        for _ in range(MAX_BATCHES_PER_WAKEUP):
            datagrams = self.mags.receive()
            if not len(datagrams):
                return
            self.received += len(datagrams)
            self.verifier.receive(datagrams, time.time())

    def _flush(self) -> None:
        for buf, offsets in self.sender.datagrams_to_send():
            count = len(offsets) - 1
            self.sent += count
            if self.raw:  # the Mobility Headers without their inner IPv6 header
                starts = offsets[:-1] + IPV6_HEADER_LENGTH
                src, dst = np.repeat(self._src, count, 0), np.repeat(self._dst, count, 0)
                columns = Columns(buf, starts, offsets[1:], src, dst)
                send_raw(self.sock, Datagrams([columns]), self.drops, self._src.tobytes())
            else:
                send_batch(self.sock, buf, offsets, self._dst, self.standby.port, self.drops)
        if self.verifier is not None and self.mags is not None:
            out = self.verifier.datagrams_to_send()
            if len(out):
                self.sent += len(out)
                self.mags.send(out)

    # --- reporting -----------------------------------------------------------------------------

    def _status(self) -> str:
        sender = self.sender
        if self.verifier is not None:
            v = self.verifier.summary()
            return (
                f"verify    {v['verified']}/{v['sampled']} verified  {v['missing']} missing"
                f"  {v['unanswered']} unanswered"
            )
        if sender.phase == "hello":
            return "waiting for the standby's HA-HELLO"
        c = sender.counters
        done = sender.records_acked if sender.config.ack else int(c.records_sent.sum())
        now = time.monotonic()
        then, before = self._rate_mark
        self._rate_mark = (now, done)
        rate = (done - before) / (now - then) if now > then else 0.0
        word = "acked" if sender.config.ack else "sent"
        return (
            f"stream    {word} {done}/{len(sender.plan)} records  {rate:.0f}/s"
            f"  outstanding {sender.outstanding}  retransmitted {c.ss_rep_retransmitted}"
            f"  lag max {sender.lag.max * 1e3:.1f} ms"
        )

    def _config_json(self) -> dict[str, Any]:
        config = asdict(self.config)
        config["standby"] = str(self.config.standby) if self.config.standby else "embedded"
        config["address"] = str(self.config.address) if self.config.address else None
        config["results"] = str(self.config.results)
        config["versions"] = res.versions()
        return config


def checks(config: SyncJobConfig, results: dict[str, Any]) -> list[Check]:
    """Every record acknowledged and sent, the sampled sessions verified, the generator on
    schedule (unless ``allow_lag``)."""
    s = results["sync"]
    behind = results["generator"]["behind_schedule"]
    found = [
        Check(
            "every record acknowledged",
            not s["records_given_up"],
            f"{s['records_given_up']} records were never acknowledged",
        ),
        Check(
            "every record settled",
            not (s["records_unsettled"] or s["records_not_sent"]),
            f"{s['records_unsettled'] or 0} records were still unacknowledged and "
            f"{s['records_not_sent']} not sent when the stream ended",
        ),
    ]
    v = s["verification"]
    if "skipped" not in v:
        bad = v["missing"] + v["wrong_prefix"] + v["unanswered"] + v["pending"]
        found.append(
            Check(
                "sampled sessions verified",
                not bad,
                f"{bad} of {v['sampled']} sampled sessions did not verify",
            )
        )
    found.append(
        Check(
            "generator on schedule",
            behind <= MAX_BEHIND_SCHEDULE or config.allow_lag,
            f"the generator fell behind schedule for {behind:.1%} of records",
        )
    )
    return found


def exit_status(config: SyncJobConfig, results: dict[str, Any]) -> tuple[int, list[str]]:
    """0 or 1, and the reasons for a 1 (``checks``)."""
    return check_status(checks(config, results))


def run(config: SyncJobConfig) -> tuple[dict[str, Any], list[Check]]:
    """Carry out the run; (results, checks)."""
    with tempfile.TemporaryDirectory(prefix="lmaload-sync-") as logs:
        job = SyncJob(config, Path(logs))
        try:
            results = job.run()
        finally:
            if job.child is not None:
                job.child.stop()
    return results, checks(config, results)
