"""``lmaload run``: register a population with an LMA pair, fail the active, measure the failover.

Phases: start the target (``lmaload.targets``: by default the embedded pair of
``lmaload.lma_pair``, which is up once each LMA sees the other; with ``lab`` that pair inside the
namespaces of ``lmaload.lab``) and wait until every LMA answers the MAGs' heartbeats; register
every session open-loop at the target rate (the MAG engine's schedule); wait until the standby's
binding cache shows the sessions synced (or ``SYNC_TIMEOUT``; the user's own LMAs cannot be
looked into: a fixed ``sync_wait``); mark the failure instant and fail the active (SIGKILL, the
user's ``--fail-cmd``, or in the lab the ``fault`` of ``lmaload.fault``: the path to it cut for
some MAGs, or its link lossy; without any the run ends after the registration); let the MAGs
detect it (heartbeats) and fail over until every MAG at risk took over (or
``failover_timeout``; a lossy link is watched for one ``detection_window`` and until the MAGs
that lost LMA1 moved); keep serving ``observe`` seconds more; stop the target. In a virtual
switch the MAGs refresh their sessions as soon as the LMAA answers their heartbeats again
(``MagConfig.refresh_on_recovery``), which is when the takeover of a MAG is measured done. The
restart mode (``--mode restart``) has one LMA (``lma_pair.EmbeddedLma``, or the user's with
``--fail-cmd`` and ``--recover-cmd``): it is failed, started again ``restart_after`` seconds
later, and the MAGs (``protocol/mag_restart.py``) register every session there again; the phase
ends once every session at risk is settled (``Runner._restart``). The
results are ``lmaload.results``'s; ``lmaload.generator_metrics`` serves them to
Prometheus while the run goes on (``metrics_port``) and pushes the last values to a Pushgateway
at the end.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO
from wsgiref.simple_server import WSGIServer

import numpy as np

from lmaload import __version__
from lmaload import results as res
from lmaload.bulk import PbuOptions
from lmaload.capture import Capture, merge
from lmaload.checks import Check
from lmaload.endpoints import outer_text
from lmaload.fault import Fault
from lmaload.generator_metrics import GeneratorMetrics
from lmaload.lab.netns import LabError
from lmaload.lab.topology import DEFAULT_PREFIX
from lmaload.lma_pair import EmbeddedLma, EmbeddedPair, LmaStartError, url_host
from lmaload.measure.hdrlog import HdrLogWriter
from lmaload.measure.histogram import Histogram
from lmaload.measure.schedule import Schedule, Stage
from lmaload.measure.series import SeriesRecorder
from lmaload.population import Population, PopulationSpec, generate
from lmaload.population import SessionState as S
from lmaload.procstat import freeze_heap
from lmaload.progress import Progress
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_config import MagConfig
from lmaload.protocol.peer_quirks import NO_HEARTBEATS
from lmaload.run_checks import checks
from lmaload.subscriber_file import read_subscribers
from lmaload.targets import Endpoint, Target, own_lmas
from lmaload.transport.mag_loop import MagLoop

STARTUP_TIMEOUT = 15.0  # for the embedded pair to come up, and for every LMA to answer
LATE_ANSWER = 1.0  # after the last PBU's give-up time: a PBA still on its way
SYNC_TIMEOUT = 30.0
FAILOVER_GRACE = 20.0  # after the heartbeats' detection time
SLICE = 0.1  # seconds of engine work between phase checks
SNAPSHOT_INTERVAL = 0.5  # seconds between metrics snapshots of the engine
# The session states by value: the series' sessions_* columns.
STATE_NAMES = [n.lower() for _, n in sorted((v, n) for n, v in vars(S).items() if n.isupper())]
HDR_LOG_TAGS = {"registration": "register", "refresh": "refresh", "takeover": "failover"}


@dataclass(frozen=True)
class RunConfig:
    """The options of ``lmaload run``."""

    # The default run: 25 000 MNs at 1 000/s, about 30 s with before-ack sync. The embedded
    # pair sustains about 16 000/s before-ack on a quiet 2-vCPU box (`lmaload bench --e2e`); a
    # user's box may be slower or busy: the default stays well under a quarter of it.
    mns: int = 25_000
    mags: int = 100
    rate: float = 1000.0
    ramp: float = 0.0  # seconds from 0 to ``rate``
    stages: tuple[Stage, ...] = ()  # the whole run's rate profile instead; ``rate`` is its peak
    mode: Literal["hard", "virtual", "restart"] = "hard"
    sync: Literal["async", "before-ack"] = "before-ack"
    heartbeat_interval: float = 0.2
    missing_heartbeats: int = 3
    pbu_order: Literal["timestamp", "sequence"] = "timestamp"  # sequence: no Timestamp option
    heartbeats: Literal["on", "off", "auto"] = "on"  # RFC 5847 (MagConfig.heartbeats)
    failure_after: int = 3  # without heartbeats: unanswered PBUs in a row that fail an LMA
    seed: int = 0
    population_file: Path | None = None  # the user's subscriber list: its MNs, not generated ones
    results: Path = Path("results.json")
    allow_lag: bool = False
    lag_tolerance: float = 0.02  # seconds late that count as behind schedule
    lma: Endpoint | None = None  # the user's LMAs instead of the embedded pair
    standby: Endpoint | None = None
    fail_cmd: str | None = None
    recover_cmd: str | None = None  # restart mode with --lma: starts the LMA again
    restart_after: float = 3.0  # restart mode: seconds from the failure to starting the LMA again
    sync_wait: float = 5.0  # the user's LMAs: seconds allowed for sync after the registrations
    pcap: Path | None = None  # a sample of the signalling (``lmaload.capture``)
    shard: tuple[int, int] = (0, 1)  # (index, count): this process's part of the run
    start_at: float | None = None  # Unix seconds the schedule starts (shards share it)
    fail_at: float | None = None  # seconds after the start: fail the active then, synced or not
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    lma_metrics_port: int | None = None  # the embedded LMAs' /metrics, each at its own address
    pushgateway: str | None = None
    lifetime: float = 3600.0  # requested binding lifetime, seconds
    fault: Fault = field(default_factory=Fault)  # other than kill-active: lab only
    observe: float = 0.0  # seconds to keep serving after the failover
    duration: float = 0.0  # seconds to hold the registered population before the failure
    lab: bool = False  # the embedded pair in network namespaces, over raw Mobility Header
    lab_prefix: str = DEFAULT_PREFIX
    hdr_log: Path | None = None  # the latencies as an HdrHistogram interval log, a line a second
    mag_prefix: str | None = None  # the MAGs' addresses over raw MH to ``lma`` (None: default)

    def __post_init__(self) -> None:
        """ValueError, naming the options, for a combination that does not make a run."""
        lab = "--lab (or --transport raw)"
        if self.fault.needs_lab and not self.lab:
            raise ValueError(f"--fault {self.fault.kind} needs --lab")
        if self.lab and self.lma is not None:
            raise ValueError("--lab runs the embedded pair: not with --lma")
        raw_own = self.lma is not None and self.lma.raw
        if raw_own and self.pcap is not None:
            raise ValueError("--pcap samples UDP/5436: capture on the interface towards your LMAs")
        if self.lab and self.mode == "virtual":
            raise ValueError(
                f"{lab} runs hard mode only (a virtual LMAA cannot move between namespaces yet)"
            )
        if self.lab and self.pcap is not None:
            raise ValueError(
                "--pcap samples UDP/5436: in the lab, capture its links (see lmaload lab status)"
            )
        if self.mode == "restart":
            if self.standby is not None:
                raise ValueError("--mode restart has one LMA: not with --standby")
            if self.lab:
                raise ValueError(f"{lab} runs an LMA pair: --mode restart needs --lma")
        elif self.recover_cmd is not None:
            raise ValueError("--recover-cmd is for --mode restart")
        shards = self.shard[1]
        if shards > min(self.mns, self.mags):
            raise ValueError(f"--shard: {shards} shards need as many MNs and MAGs at least")
        if shards > 1 and (self.lma is None or self.start_at is None):
            raise ValueError(
                "--shard with N > 1 needs --lma (every shard loads the same LMAs) and --start-at"
            )
        if shards > 1 and raw_own:
            raise ValueError("--transport raw runs one generator process: not with --shard")
        if self.stages and self.ramp:
            raise ValueError("--stages and --ramp both shape the rate: give one")
        due = Schedule(self.stages).total if self.stages else float("inf")
        if self.mns - 1 >= due:
            raise ValueError(
                f"--mns {self.mns}: the --stages end at rate 0 after {due:.0f} registrations"
            )
        if self.fail_at is not None and self.duration:
            raise ValueError("--duration and --fail-at both time the failure: give one")
        if self.lma is not None and self.lma_metrics_port is not None:
            raise ValueError("--lma-metrics-port is for the embedded pair: not with --lma")
        if self.lab and (shards > 1 or self.lma_metrics_port is not None):
            option = "--shard" if shards > 1 else "--lma-metrics-port"
            raise ValueError(f"{option} is not for the lab (one pair, /metrics in its namespaces)")

    @property
    def shard_rate(self) -> float:
        return self.rate / self.shard[1]

    @property
    def schedule(self) -> Schedule:
        if self.stages:
            count = self.shard[1]
            return Schedule(tuple(Stage(s.duration, s.rate / count) for s in self.stages))
        if self.ramp > 0:
            return Schedule((Stage(self.ramp, self.shard_rate),))
        return Schedule.constant(self.shard_rate)

    def population_spec(self) -> PopulationSpec:
        """This shard's MNs and MAGs: contiguous slices of the run's id space and MAG table."""
        index, count = self.shard
        first_mn, first_mag = self.mns * index // count, self.mags * index // count
        return PopulationSpec(
            mns=self.mns * (index + 1) // count - first_mn,
            mags=self.mags * (index + 1) // count - first_mag,
            seed=self.seed + index,
            first_id=first_mn,
            first_mag=first_mag,
            mag_prefix6=self.mag_prefix or PopulationSpec.mag_prefix6,
        )

    def population(self) -> Population:
        """This shard's population: generated from ``population_spec``, or its part of the
        subscriber list (whose rows ``mns`` and MAGs ``mags`` count)."""
        if self.population_file is None:
            return generate(self.population_spec())
        return read_subscribers(self.population_file).population(self.shard)

    @property
    def detection_window(self) -> float:
        """Seconds by which every MAG has noticed a lost LMA: by heartbeats, or without them by
        ``failure_after`` unanswered PBUs (of sessions sending one: a registered session sends
        its next at its refresh)."""
        if self.heartbeats == "off":
            first, most = MagConfig.initial_bindack_timeout, MagConfig.max_bindack_timeout
            return sum(min(first * 2**k, most) for k in range(self.failure_after))
        return self.heartbeat_interval * (self.missing_heartbeats + 2)

    @property
    def failover_timeout(self) -> float:
        return self.detection_window + FAILOVER_GRACE


class MagDriver(Protocol):
    """What drives the MAG engine for ``Runner``: ``MagLoop`` over sockets, or a simulation."""

    datagrams_sent: int
    datagrams_received: int
    receive_delay: Histogram  # µs from the kernel's receipt to the engine

    def run_until(self, deadline: float) -> None: ...
    def close(self) -> None: ...


class RunError(Exception):
    """The run could not be carried out: one line for the user."""


class Runner:
    """One run against ``target``. ``clock`` and ``mag_loop`` are the driver: by default the
    wall clock and a ``MagLoop`` over the target's MAG transport; a simulation gives its own."""

    def __init__(
        self,
        config: RunConfig,
        target: Target,
        capture: Capture | None,
        metrics: GeneratorMetrics | None,
        clock: Callable[[], float] = time.time,
        mag_loop: Callable[[MagEngine], MagDriver] | None = None,
    ) -> None:
        self.config = config
        self.target = target
        self.capture = capture
        self.metrics = metrics
        self.clock = clock
        self._mag_loop = mag_loop or (
            lambda engine: MagLoop(engine, target.mag_transport(engine.pop, capture))
        )
        self.progress = Progress()
        self._enter("start")
        self.loop: MagDriver | None = None
        self._next_snapshot = 0.0
        self._rate_mark = (time.monotonic(), 0)  # (when, sessions registered): the rate shown
        self.series: SeriesRecorder | None = None
        self._hdr_log: TextIO | None = None
        self._recovered_at: float | None = None  # restart mode: the target started again

    def run(self) -> dict[str, Any]:
        cfg = self.config
        spec = cfg.population_spec()
        pop = cfg.population()
        self.progress.show(self.target.starting)
        self.target.start()
        try:
            self.target.wait_ready(STARTUP_TIMEOUT)
        except LmaStartError as exc:
            raise RunError(str(exc)) from None
        lmaa, standby = self.target.anchors()
        mag_config = MagConfig(
            lmaa=lmaa,
            standby=standby,
            mode=cfg.mode,
            heartbeat_interval=cfg.heartbeat_interval,
            missing_heartbeats_allowed=cfg.missing_heartbeats,
            lifetime=cfg.lifetime,
            pbu=PbuOptions(
                timestamp=cfg.pbu_order == "timestamp",
                # A subscriber list's HNPs are requested; a generated population's are not.
                request_prefix=cfg.population_file is not None and bool(pop.mns["hnp_len"].any()),
            ),
            heartbeats=cfg.heartbeats,
            failure_after=cfg.failure_after,
            schedule=cfg.schedule,
            lag_tolerance=cfg.lag_tolerance,
            refresh_on_recovery=True,
        )
        # The schedule waits for the LMAs to answer (or for the shards' shared start).
        engine = MagEngine(pop, mag_config, self.clock(), self.clock() + STARTUP_TIMEOUT)
        routes = self.target.routes()
        self.loop = loop = self._mag_loop(engine)
        try:
            self._wait_for_lmas(engine, routes)
            freeze_heap()
            start = self.clock() if cfg.start_at is None else cfg.start_at
            if cfg.start_at is not None and start < self.clock():
                raise RunError("--start-at passed before every LMA answered")
            engine.start_schedule(start)
            self._record_series(engine, start)
            failure = None if cfg.fail_at is None else start + cfg.fail_at
            final = None
            registration = self._register(engine, start, failure)
            if failure is None:
                standby = self.target.anchors()[1] is not None  # no standby: no sync to wait for
                registration = replace(
                    registration,
                    sync_wait=self._wait_for_sync(engine) if standby else None,
                    sync_observed=standby and self.target.observes_sync,
                )
                if cfg.duration:
                    self._enter("hold")
                    self._hold(engine, self.clock() + cfg.duration)
                if self.target.can_fail:
                    self._fail_active(engine, self.clock(), inject=True)
            else:
                registration = replace(registration, sync_observed=False)
                self._enter("hold")
                self._hold(engine, failure)
                # Every shard measures the failure; the first one causes it.
                self._fail_active(engine, failure, inject=self.target.can_fail and not cfg.shard[0])
                if registration.cut:
                    final = self._finish_schedule(engine, start)
            self.progress.show(self._status(engine))
            self._enter("done")
            self._observe(engine, force=True)
            self._sample(engine, end=True)
        finally:
            self.progress.done()
            loop.close()
            if self._hdr_log is not None:
                self._hdr_log.close()
        document = {
            "schema_version": res.SCHEMA_VERSION,
            "kind": "run",
            "config": self._config_json(),
            "registration": res.registration(registration, cfg.shard_rate, len(pop.mns)),
            "refresh_latency_us": res.latency_summary(engine.latency["refresh"]),
            "takeover": res.takeover(engine, registration, spec.first_mag),
            "generator": res.generator(engine, loop),
            "series": None if self.series is None else self.series.document(),
        }
        if final is not None:
            document["final"] = res.accounting(final)
        if cfg.mode == "restart":
            document["restart"] = res.restart(document["takeover"], self._recovered_at)
        return document

    # --- phases --------------------------------------------------------------------------------

    def _enter(self, phase: str) -> None:
        self.phase = phase
        if self.capture is not None:
            self.capture.phase = phase

    def _hold(self, engine: MagEngine, until: float) -> None:
        """Keep the MAGs running (refreshes, heartbeats) until ``until``."""
        self._serve(engine, until, lambda: False)

    def _serve(self, engine: MagEngine, until: float, done: Callable[[], bool]) -> bool:
        """Drive the engine in slices until ``done()`` or ``until``; whether it got done."""
        assert self.loop is not None
        while not done():
            now = self.clock()
            if now >= until:
                return False
            next_sample = math.inf if self.series is None else self.series.next_at
            self.loop.run_until(min(now + SLICE, until, next_sample))
            self._observe(engine)
            self._sample(engine)
            if self.progress.due():
                self.progress.show(self._status(engine))
        return True

    def _observe(self, engine: MagEngine, force: bool = False) -> None:
        """A new metrics snapshot, at most every SNAPSHOT_INTERVAL unless ``force``."""
        now = time.monotonic()
        if self.metrics is None or self.loop is None or (now < self._next_snapshot and not force):
            return
        self._next_snapshot = now + SNAPSHOT_INTERVAL
        self.metrics.observe(engine, self.loop, self.phase)

    def _record_series(self, engine: MagEngine, start: float) -> None:
        """Record the per-second series from ``start`` (and the HdrHistogram log, if asked)."""
        cfg = self.config
        log = None
        if cfg.hdr_log is not None:
            cfg.hdr_log.parent.mkdir(parents=True, exist_ok=True)
            self._hdr_log = cfg.hdr_log.open("w")
            tagged = {tag: engine.latency[kind] for tag, kind in HDR_LOG_TAGS.items()}
            note = f"[Logged with lmaload {__version__}; values in microseconds]"
            log = HdrLogWriter(self._hdr_log, start, tagged, comment=note)
        offsets = cfg.schedule.offsets(len(engine.pop.mns))
        latency = engine.latency["register"]
        self.series = SeriesRecorder(
            start, offsets, self._totals(engine), latency, STATE_NAMES, log
        )

    @staticmethod
    def _totals(engine: MagEngine) -> dict[str, int]:
        """The counters of the per-second series, cumulative."""
        counters = engine.counters
        return {
            "sent": counters.pbu_sent,
            "answered": counters.pba_received,
            "completed": engine.registrations.total,
            "failed": sum(counters.failed.values()) + counters.given_up,
            "retransmitted": counters.pbu_retransmitted,
            "heartbeat_misses": engine.heartbeats.missed,
        }

    def _sample(self, engine: MagEngine, end: bool = False) -> None:
        """A sample of the series when its second has come (``end``: the last one, shorter)."""
        now = self.clock()
        if self.series is None or (now < self.series.next_at and not end):
            return
        self.series.sample(now, self._totals(engine), engine.pop.mns["state"])

    def _wait_for_lmas(self, engine: MagEngine, routes: dict[IPv6Address, tuple[str, int]]) -> None:
        """Until every LMA answered a heartbeat of some MAG, or without heartbeats a PBU
        (RunError after STARTUP_TIMEOUT). An LMA answering heartbeats with Binding Error status 2
        is told in one line (with ``--heartbeats auto`` the run goes on without them)."""
        self._enter("connect")
        done = self._serve(
            engine, self.clock() + STARTUP_TIMEOUT, lambda: bool(engine.lmas_answered.all())
        )
        unsupported = engine.counters.quirks[NO_HEARTBEATS] > 0
        if unsupported:
            self.progress.show(
                "an LMA answers RFC 5847 heartbeats with Binding Error status 2 (it has no "
                + (
                    "heartbeats): going on without them"
                    if not engine.heartbeating
                    else "heartbeats): use --heartbeats off or auto"
                )
            )
        if done:
            return
        lmas = [a for a in self.target.anchors() if a is not None]  # the engine's LMA order
        answered = engine.lmas_answered
        silent = [outer_text(*routes[lma]) for i, lma in enumerate(lmas) if not answered[i]]
        what = "heartbeat response" if engine.heartbeating else "PBA"
        raise RunError(
            f"no {what} from the LMA at {' and '.join(silent)} within {STARTUP_TIMEOUT:g} s: "
            + (
                "is it running, and does it answer RFC 5847 heartbeats (else --heartbeats off)?"
                if engine.heartbeating
                else "is it running, and does it answer PBUs?"
            )
        )

    def _register(
        self, engine: MagEngine, start: float, failure: float | None
    ) -> res.RegistrationPhase:
        """Until every session is registered, rejected or given up, and not past a scheduled
        ``failure``. It waits at most until the MAGs give up the last scheduled PBU, plus
        LATE_ANSWER, so that a stalled target ends with its mobile nodes given up."""
        self._enter("register")
        self._rate_mark = (time.monotonic(), 0)
        until = self._registrations_deadline(engine, start)
        done = self._serve(
            engine,
            until if failure is None else min(until, failure),
            lambda: engine.registrations_settled,
        )
        cut = not done and failure is not None and failure <= until
        return res.RegistrationPhase.snapshot(
            engine, engine.registrations_end(done, self.clock()), cut
        )

    @staticmethod
    def _registrations_deadline(engine: MagEngine, start: float) -> float:
        """When the MAGs have given up the last scheduled PBU, plus LATE_ANSWER."""
        grace = engine.config.give_up_after + LATE_ANSWER
        return (engine.last_scheduled or start) + grace

    def _finish_schedule(self, engine: MagEngine, start: float) -> res.RegistrationPhase:
        """After a failure that cut the registrations short, the schedule goes on (its mobile
        nodes register with the LMA their MAG failed over to): serve until every session is
        settled, as ``_register`` does; what the whole schedule came to."""
        self._enter("register")
        deadline = self._registrations_deadline(engine, start)
        self._serve(engine, deadline, lambda: engine.registrations_settled)
        return res.RegistrationPhase.snapshot(engine, self.clock())

    def _wait_for_sync(self, engine: MagEngine) -> float | None:
        """Seconds until the standby's binding cache held every registered session as synced
        (None: not within SYNC_TIMEOUT)."""
        self._enter("sync")
        sessions = engine.count(S.REGISTERED)
        began = self.clock()
        if not self.target.observes_sync:
            self._hold(engine, began + self.config.sync_wait)
            return self.config.sync_wait
        synced = self._serve(engine, began + SYNC_TIMEOUT, lambda: self.target.synced(sessions))
        return self.clock() - began if synced else None

    def _fail_active(self, engine: MagEngine, failure: float, inject: bool) -> None:
        """Measure from ``failure`` (and fail the active, or its link, then if ``inject``);
        serve until every MAG at risk detected it and took over (a lossy link: see the module
        docstring), then ``observe`` seconds more."""
        self._enter("failover")
        fault = self.config.fault
        if self.config.mode == "restart":
            self._restart(engine, failure, inject)
            return
        if inject:
            self.target.fail()
            if fault.needs_lab:  # a link fault is there once its rules are (they take a while)
                failure = self.clock()
        # A cut is a fault of some MAGs' path: only their sessions are at risk.
        cut = fault.cut_mags(len(engine.pop.mags)) if fault.cuts else None
        engine.mark_failure(failure, cut)
        meter = engine.takeover
        at_risk = meter.unresolved > 0

        def taken_over() -> bool:
            if fault.kind == "loss":
                # Some MAGs lose LMA1, some do not: watch one detection window, and until the
                # MAGs that did are done moving.
                detected = np.isfinite(meter.detection)
                watched = self.clock() - failure >= self.config.detection_window
                return watched and not meter.unresolved[detected].any()
            return not (np.isnan(meter.detection[at_risk]).any() or meter.unresolved.any())

        self._serve(engine, failure + self.config.failover_timeout, taken_over)
        self._hold(engine, self.clock() + self.config.observe)

    def _restart(self, engine: MagEngine, failure: float, inject: bool) -> None:
        """Restart mode: fail the LMA (if ``inject``), start it again ``restart_after`` seconds
        later (the embedded LMA, or ``--recover-cmd``; nothing: it restarts itself); serve until
        every session at risk is registered again, kept or lost (or the deadline: every MAG
        noticed, the LMA answers again, the re-registrations sent open-loop and the last one
        given up), then ``observe`` seconds more."""
        cfg = self.config
        engine.mark_failure(failure)
        meter = engine.takeover
        if inject:
            self.target.fail()
            self._hold(engine, failure + cfg.restart_after)
            self.target.recover()
            self._recovered_at = self.clock()
            if self.target.loses_state:
                engine.lma_lost_state()
        spread = len(engine.pop.mns) / cfg.shard_rate
        deadline = max(self.clock(), failure + cfg.restart_after) + STARTUP_TIMEOUT + spread
        deadline += cfg.detection_window + engine.config.give_up_after
        self._serve(engine, deadline, lambda: not meter.unresolved.any())
        self._hold(engine, self.clock() + cfg.observe)

    # --- reporting -----------------------------------------------------------------------------

    def _status(self, engine: MagEngine) -> str:
        cfg = self.config
        if self.phase == "failover":
            meter = engine.takeover
            detected = int(np.isfinite(meter.detection).sum())
            return (
                f"failover  detected by {detected}/{len(engine.pop.mags)} MAGs"
                f"  kept {int(meter.kept.sum())}  rebuilt {int(meter.rebuilt.sum())}"
                f"  lost {int(meter.lost.sum())}"
                f"  pending {int(meter.pending.sum())}"
                f"  not attempted {int(meter.not_attempted.sum())}"
            )
        if self.phase == "connect":
            what = "heartbeats" if engine.heartbeating else "PBUs"
            return f"connect   waiting for every LMA to answer the {what}"
        registered = engine.registrations.total
        now = time.monotonic()
        then, before = self._rate_mark
        self._rate_mark = (now, registered)
        rate = (registered - before) / (now - then) if now > then else 0.0
        return (
            f"{self.phase:<9} registered {registered}/{len(engine.pop.mns)}  {rate:.0f}/s"
            f" (target {cfg.shard_rate:.0f}/s)  lag max {engine.lag.max * 1e3:.1f} ms"
        )

    def _config_json(self) -> dict[str, Any]:
        config = asdict(self.config)
        for name in ("results", "population_file", "lma", "standby", "pcap", "fault", "hdr_log"):
            value = config[name]
            config[name] = None if value is None else str(getattr(self.config, name))
        config["shard"] = list(self.config.shard)
        raw = self.config.lab or (self.config.lma is not None and self.config.lma.raw)
        config["transport"] = "raw" if raw else "udp"
        config["versions"] = res.versions()
        return config


@contextlib.contextmanager
def _target(config: RunConfig, log_dir: Path) -> Iterator[Target]:
    """The LMAs of the run, stopped (the lab's cleaned up) on the way out; RunError for a lab
    that cannot be had."""
    if config.lab:
        from lmaload.lab.pair import lab_pair

        try:
            with lab_pair(config.lab_prefix, config.sync, config.fault, log_dir) as pair:
                yield pair
        except LabError as exc:
            raise RunError(str(exc)) from None
        return
    target: Target
    if config.lma is not None:
        target = own_lmas(
            config.lma, config.standby, config.fail_cmd, config.mag_prefix, config.recover_cmd
        )
    elif config.mode == "restart":
        # A plain LMA has no RFC 5847: with the heartbeats on, the reference LMA alone.
        plain = config.heartbeats != "on"
        target = EmbeddedLma(log_dir, capture=config.pcap is not None, plain=plain)
    else:
        target = EmbeddedPair(
            config.mode,
            config.sync,
            log_dir,
            capture=config.pcap is not None,
            metrics_port=config.lma_metrics_port,
            reserve=config.mns,
        )
    try:
        yield target
    except LabError as exc:
        raise RunError(str(exc)) from None
    finally:
        target.stop()


def _metrics(config: RunConfig) -> tuple[GeneratorMetrics | None, WSGIServer | None]:
    """The run's metrics when it serves or pushes them, and the /metrics server when it serves
    them (RunError when the port is taken)."""
    if config.metrics_port is None and config.pushgateway is None:
        return None, None
    spec = config.population_spec()
    metrics = GeneratorMetrics(spec.mns, spec.mags, config.shard_rate)
    if config.metrics_port is None:
        return metrics, None
    try:
        return metrics, metrics.serve(config.metrics_port, config.metrics_host)
    except OSError as exc:
        where = f"{url_host(config.metrics_host)}:{config.metrics_port}"
        raise RunError(f"cannot serve /metrics on {where}: {exc.strerror or exc}") from None


def run(config: RunConfig, warn: Callable[[str], None]) -> tuple[dict[str, Any], list[Check]]:
    """Carry out the run and push the metrics; (results, checks). A push that fails is a
    ``warn``ing, not a failure of the run."""
    metrics, server = _metrics(config)
    try:
        with tempfile.TemporaryDirectory(prefix="lmaload-run-") as logs:
            capture = Capture(Path(logs) / "mags.pcap") if config.pcap is not None else None
            with _target(config, Path(logs)) as target:
                results = Runner(config, target, capture, metrics).run()
                problems = target.failure_problems()
            if capture is not None and config.pcap is not None:
                lmas = target.lma_captures()
                config.pcap.parent.mkdir(parents=True, exist_ok=True)
                frames = merge(config.pcap, capture.path, lmas, frozenset(h for _, h in lmas))
                ports = sorted({port for _, port in target.routes().values()})
                results["pcap"] = {"path": str(config.pcap), "frames": frames, "udp_ports": ports}
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    if metrics is not None and config.pushgateway is not None:
        try:
            index, count = config.shard
            metrics.push(config.pushgateway, index if count > 1 else None)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)  # urllib's errors wrap the socket's
            warn(f"could not push the metrics to {config.pushgateway}: {reason}")
    return results, [*checks(results), *(Check("failure injected", False, p) for p in problems)]
