"""``lmaload capacity``: the highest registration rate a target sustains, found as RFC 2544 and
FD.io CSIT's MLRsearch find packet rates.

A *trial* registers fresh mobile nodes (ids never used before in the search, so the target never
sees a refresh) open loop at a fixed rate for a fixed duration, then waits ``drain`` seconds for
late answers. Against the embedded pair every trial after the first meets a pair started afresh
(``reset``): the bindings earlier trials left (hundreds of thousands in a search) would otherwise
make each trial meet a bigger binding cache, growing through bigger stalls, than the one before;
your own LMAs keep them until their lifetime ends. Its mobile nodes are accounted for as in
``lmaload run``; those not registered by
the end of the trial count as failed. A trial passes for the **NDR** (no-drop rate) when none
failed, for the **PDR** (partial-drop rate) when at most ``loss_bound`` of them did; in both cases
the registration latency's p99 must be within ``latency_bound`` and the generator must have kept
to its schedule. A trial whose generator fell behind, or used nearly a whole core, is flagged
*generator-bound*: its verdict says more about lmaload than about the target.

The MAGs of a trial register with the active LMA (or the LMAA) and never fail over. The search:
an exponential ramp from ``start_rate`` until a trial fails the PDR; then, for the PDR
and then the NDR, bisection between the highest rate that passed below the lowest that failed,
until they are within ``resolution`` of each other; then a longer confirmation trial at the rate
found. A failed confirmation becomes the new upper bound and the bisection goes on. Every trial
counts towards both rates (a trial is one measurement, two verdicts).

Sans-IO like ``lmaload run``: the searcher takes a clock and a MAG driver, so the tests run it on
the simulated clock against a simulated LMA of known capacity.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lmaload import results as res
from lmaload.bulk import PbuOptions
from lmaload.checks import Check
from lmaload.checks import exit_status as check_status
from lmaload.endpoints import Endpoint
from lmaload.lab.netns import LabError
from lmaload.lma_pair import EmbeddedPair, LmaStartError
from lmaload.measure.goodput import achieved_rate, scheduled_window
from lmaload.measure.schedule import Schedule
from lmaload.population import PopulationSpec, generate
from lmaload.procstat import freeze_heap
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_config import MagConfig
from lmaload.run import SLICE, MagDriver
from lmaload.run_checks import MAX_BEHIND_SCHEDULE
from lmaload.targets import Target, own_lmas
from lmaload.transport.mag_loop import MagLoop

READY_TIMEOUT = 15.0  # the target's start; every LMA answering a trial's first heartbeat or PBU
BUSY_CORE = 0.95  # the generator's CPU share of a trial at which it, not the target, is the limit
PAUSE = 1.0  # seconds between trials on a target not reset: it drains what a trial left queued
KINDS = ("pdr", "ndr")


@dataclass(frozen=True)
class CapacityConfig:
    """The options of ``lmaload capacity``."""

    mags: int = 100
    mode: Literal["hard", "virtual"] = "hard"
    sync: Literal["async", "before-ack"] = "before-ack"
    heartbeat_interval: float = 0.2
    missing_heartbeats: int = 3
    pbu_order: Literal["timestamp", "sequence"] = "timestamp"  # as RunConfig's
    heartbeats: Literal["on", "off", "auto"] = "on"
    seed: int = 0
    trial_duration: float = 10.0
    confirm_duration: float = 30.0
    drain: float = 2.0  # seconds after a trial's last scheduled send for late answers
    start_rate: float = 1000.0
    max_rate: float = 1_000_000.0
    min_rate: float = 10.0  # below this the search gives up: the target sustains nothing
    resolution: float = 0.02  # relative width of the final interval
    loss_bound: float = 0.005  # PDR: the share of a trial's mobile nodes that may fail
    latency_bound: float = 0.05  # seconds, registration latency p99
    lag_tolerance: float = 0.02
    max_trials: int = 40
    lma: Endpoint | None = None  # the user's LMAs instead of the embedded pair
    standby: Endpoint | None = None
    mag_prefix: str | None = None  # the MAGs' addresses over raw MH to ``lma`` (None: default)
    results: Path = Path("capacity.json")

    def __post_init__(self) -> None:
        if not 0 < self.start_rate <= self.max_rate:
            raise ValueError("the start rate must be positive and at most the maximum rate")
        if not 0 < self.resolution < 1 or not 0 <= self.loss_bound < 1:
            raise ValueError("the resolution and the loss bound are fractions")
        if min(self.trial_duration, self.confirm_duration, self.latency_bound) <= 0:
            raise ValueError("durations and the latency bound must be positive")


class CapacityError(Exception):
    """The search could not be carried out: one line for the user."""


@dataclass(frozen=True)
class Trial:
    """One trial's measurement and verdicts."""

    rate: float
    duration: float
    confirmation: bool
    sessions: int
    registered: int
    rejected: int
    unanswered: int  # given up or still waiting at the trial's end
    achieved_rate: float  # registrations over the scheduled window
    per_second: list[int]
    latency_p50_us: float | None
    latency_p99_us: float | None
    behind_schedule: float
    pbus_sent: int
    generator_cpu_seconds: float
    generator_cpu_share: float
    ndr: bool
    pdr: bool
    generator_bound: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.sessions - self.registered

    @property
    def cpu_per_registration_us(self) -> float | None:
        return self.generator_cpu_seconds / self.registered * 1e6 if self.registered else None

    def passed(self, kind: str) -> bool:
        return self.ndr if kind == "ndr" else self.pdr

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "failed": self.failed,
            "cpu_per_registration_us": self.cpu_per_registration_us,
        }


class CapacitySearch:
    """The search against ``target`` (started and stopped by the caller). ``clock``, ``sleep``,
    ``cpu`` and ``mag_loop`` are the driver (as for ``lmaload.run.Runner``); ``show`` gets a line
    per trial; ``reset`` (None: none) starts the target afresh, with room for the trial's
    sessions, before every trial but the first."""

    def __init__(
        self,
        config: CapacityConfig,
        target: Target,
        clock: Callable[[], float] = time.time,
        mag_loop: Callable[[MagEngine], MagDriver] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        cpu: Callable[[], float] = time.process_time,
        show: Callable[[str], None] | None = None,
        reset: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.target = target
        self.clock = clock
        self.sleep = sleep
        self.cpu = cpu
        self._mag_loop = mag_loop or (
            lambda engine: MagLoop(engine, target.mag_transport(engine.pop, None))
        )
        self._show = show or (lambda line: None)
        self._reset = reset
        self.trials: list[Trial] = []
        self._next_id = 0

    # --- the search ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Search; the results document. A target that stops answering ends the search: the
        document then holds the trials so far and why it was ``aborted``."""
        cfg = self.config
        found: dict[str, float | None] = dict.fromkeys(KINDS)
        try:
            rate = cfg.start_rate
            while True:  # exponential ramp until the PDR fails
                trial = self.trial(rate, cfg.trial_duration)
                if not trial.pdr or rate >= cfg.max_rate or self._exhausted():
                    break
                rate = min(rate * 2, cfg.max_rate)
            for kind in KINDS:
                found[kind] = self._search(kind)
        except CapacityError as exc:
            return self._document(found, str(exc))
        return self._document(found)

    def _exhausted(self) -> bool:
        return len(self.trials) >= self.config.max_trials

    def bounds(self, kind: str) -> tuple[float | None, float | None]:
        """(highest passing rate below the lowest failing one, lowest failing rate) for
        ``kind``, over every trial so far."""
        failed = [t.rate for t in self.trials if not t.passed(kind)]
        high = min(failed, default=None)
        passed = [t.rate for t in self.trials if t.passed(kind) and (high is None or t.rate < high)]
        return max(passed, default=None), high

    def _search(self, kind: str) -> float | None:
        """Bisect, then confirm, the ``kind`` rate; None when nothing passes."""
        cfg = self.config
        while not self._exhausted():
            low, high = self.bounds(kind)
            if high is None:  # every trial passed up to the maximum rate
                candidate = low
            elif low is None:
                if high / 2 < cfg.min_rate:
                    return None
                self.trial(high / 2, cfg.trial_duration)
                continue
            elif (high - low) / high > cfg.resolution:
                self.trial((low + high) / 2, cfg.trial_duration)
                continue
            else:
                candidate = low
            if candidate is None:
                return None
            confirmed = [
                t for t in self.trials if t.confirmation and t.rate == candidate and t.passed(kind)
            ]
            if confirmed or self.trial(candidate, cfg.confirm_duration, True).passed(kind):
                return candidate
        low, _ = self.bounds(kind)
        return low

    # --- one trial -----------------------------------------------------------------------------

    def trial(self, rate: float, duration: float, confirmation: bool = False) -> Trial:
        """Run one trial at ``rate`` for ``duration`` seconds; it joins ``trials``."""
        cfg = self.config
        sessions = max(1, round(rate * duration))
        if self.trials and self._reset is not None:
            try:
                self._reset(sessions)
            except LmaStartError as exc:
                raise CapacityError(str(exc)) from None
        elif self.trials:
            self.sleep(PAUSE)
        spec = PopulationSpec(
            mns=sessions,
            mags=cfg.mags,
            seed=cfg.seed,
            first_id=self._next_id,
            mag_prefix6=cfg.mag_prefix or PopulationSpec.mag_prefix6,
        )
        self._next_id += sessions
        # The MAGs of a trial do not fail over: a trial measures registrations, and heartbeats
        # missed under overload would otherwise move the MAGs to the standby mid-search.
        mag_config = MagConfig(
            lmaa=self.target.anchors()[0],
            mode=cfg.mode,
            heartbeat_interval=cfg.heartbeat_interval,
            missing_heartbeats_allowed=cfg.missing_heartbeats,
            pbu=PbuOptions(timestamp=cfg.pbu_order == "timestamp"),
            heartbeats=cfg.heartbeats,
            schedule=Schedule.constant(rate),
            lag_tolerance=cfg.lag_tolerance,
        )
        probe = "PBUs" if cfg.heartbeats == "off" else "heartbeats"
        now = self.clock()
        engine = MagEngine(generate(spec), mag_config, now, now + READY_TIMEOUT)
        loop = self._mag_loop(engine)
        try:
            if not self._serve(loop, now + READY_TIMEOUT, lambda: engine.lmas_answered.all()):
                raise CapacityError(
                    f"the LMA did not answer the MAGs' {probe} within {READY_TIMEOUT:g} s"
                )
            freeze_heap()
            start = self.clock()
            engine.start_schedule(start)
            until = (engine.last_scheduled or start) + cfg.drain
            cpu0, wall0 = self.cpu(), self.clock()
            settled = self._serve(loop, until, lambda: engine.registrations_settled)
            cpu, wall = self.cpu() - cpu0, self.clock() - wall0
        finally:
            loop.close()
        end = engine.registrations_end(settled, self.clock())
        trial = self._verdict(rate, duration, confirmation, engine, start, end, cpu, wall)
        self.trials.append(trial)
        self._show(self._line(len(self.trials), trial))
        return trial

    def _serve(self, loop: MagDriver, until: float, done: Callable[[], bool]) -> bool:
        while not done():
            now = self.clock()
            if now >= until:
                return False
            loop.run_until(min(now + SLICE, until))
        return True

    def _verdict(
        self,
        rate: float,
        duration: float,
        confirmation: bool,
        engine: MagEngine,
        start: float,
        end: float,
        cpu: float,
        wall: float,
    ) -> Trial:
        cfg = self.config
        phase = res.RegistrationPhase.snapshot(engine, end)
        sessions = len(engine.pop.mns)
        latency = engine.latency["register"]
        p99 = latency.percentile(99.0) if latency.total else None
        behind = engine.behind_schedule
        share = cpu / wall if wall > 0 else 0.0
        failed = sessions - phase.registered
        reasons = []
        if failed:
            reasons.append(f"{failed} of {sessions} not registered")
        if p99 is None or p99 > cfg.latency_bound * 1e6:
            shown = "-" if p99 is None else f"{p99 / 1e3:.1f} ms"
            reasons.append(f"latency p99 {shown} > {cfg.latency_bound * 1e3:g} ms")
        if behind > MAX_BEHIND_SCHEDULE:
            reasons.append(f"generator {behind:.1%} behind schedule")
        timely = (
            p99 is not None and p99 <= cfg.latency_bound * 1e6 and behind <= MAX_BEHIND_SCHEDULE
        )
        window = scheduled_window(start, phase.last_scheduled, end)
        return Trial(
            rate=rate,
            duration=duration,
            confirmation=confirmation,
            sessions=sessions,
            registered=phase.registered,
            rejected=phase.rejected,
            unanswered=phase.given_up + phase.unanswered + phase.not_sent,
            achieved_rate=achieved_rate(sum(phase.per_second), window),
            per_second=phase.per_second,
            latency_p50_us=latency.percentile(50.0) if latency.total else None,
            latency_p99_us=p99,
            behind_schedule=behind,
            pbus_sent=engine.counters.pbu_sent,
            generator_cpu_seconds=cpu,
            generator_cpu_share=share,
            ndr=timely and failed == 0,
            pdr=timely and failed <= cfg.loss_bound * sessions,
            generator_bound=behind > MAX_BEHIND_SCHEDULE or share >= BUSY_CORE,
            reasons=reasons,
        )

    @staticmethod
    def _line(number: int, t: Trial) -> str:
        verdict = "/".join(k.upper() for k in KINDS if t.passed(k)) or "fail"
        p99 = "-" if t.latency_p99_us is None else f"{t.latency_p99_us / 1e3:.1f} ms"
        bound = "  generator-bound" if t.generator_bound else ""
        why = f"  ({'; '.join(t.reasons)})" if t.reasons else ""
        kind = "confirm" if t.confirmation else "trial"
        return (
            f"{kind} {number:>2}  {t.rate:>9.0f}/s x {t.duration:g} s  {verdict:<7}"
            f"  achieved {t.achieved_rate:.0f}/s  p99 {p99}  failed {t.failed}{bound}{why}"
        )

    # --- the results ---------------------------------------------------------------------------

    def _document(
        self, found: dict[str, float | None], aborted: str | None = None
    ) -> dict[str, Any]:
        cfg = self.config
        rates: dict[str, Any] = {}
        for kind in KINDS:
            _, high = self.bounds(kind)
            at_limit = [t for t in self.trials if high is not None and t.rate == high]
            rates[kind] = {
                "rate": found[kind],
                "failed_above": high,
                "limit": (
                    None
                    if high is None
                    else "generator"
                    if any(t.generator_bound for t in at_limit)
                    else "target"
                ),
            }
        timed = [t.cpu_per_registration_us for t in self.trials if t.cpu_per_registration_us]
        config = asdict(cfg)
        for name in ("lma", "standby", "results"):
            value = getattr(cfg, name)
            config[name] = None if value is None else str(value)
        config["versions"] = res.versions()
        return {
            "schema_version": res.SCHEMA_VERSION,
            "kind": "capacity",
            "config": config,
            "aborted": aborted,
            "target_reset_between_trials": self._reset is not None,
            **rates,
            "generator": {
                "cpu_per_registration_us": float(np.median(timed)) if timed else None,
                "bound_trials": sum(t.generator_bound for t in self.trials),
            },
            "trials": [t.to_json() for t in self.trials],
        }


def table(results: dict[str, Any]) -> str:
    """The end-of-search summary."""
    lines = []
    for kind in KINDS:
        r = results[kind]
        rate = "none found" if r["rate"] is None else f"{r['rate']:.0f}/s"
        if r["failed_above"] is not None:
            rate += f" (failed at {r['failed_above']:.0f}/s, limited by the {r['limit']})"
        lines.append(f"{kind.upper():<20}{rate}")
    gen = results["generator"]
    cpu = gen["cpu_per_registration_us"]
    lines.append(
        f"generator           {'-' if cpu is None else f'{cpu:.1f} µs'} CPU per registration, "
        f"{gen['bound_trials']} of {len(results['trials'])} trials generator-bound"
    )
    return "\n".join(lines)


def checks(results: dict[str, Any]) -> list[Check]:
    """The search ran to its end; for the PDR and the NDR, some rate passed, and the target, not
    the generator, set the limit."""
    found = [
        Check(
            "search completed",
            not results["aborted"],
            f"the search stopped after {len(results['trials'])} trials: {results['aborted']}",
        )
    ]
    for kind in KINDS:
        r = results[kind]
        found.append(
            Check(
                f"{kind.upper()} found",
                r["rate"] is not None,
                f"no trial rate passed the {kind.upper()} criteria",
            )
        )
        if r["rate"] is not None:
            found.append(
                Check(
                    f"{kind.upper()} limited by the target",
                    r["limit"] != "generator",
                    f"the generator, not the target, was the limit of the {kind.upper()} "
                    "search: the target's capacity is higher than reported",
                )
            )
    return found


def exit_status(results: dict[str, Any]) -> tuple[int, list[str]]:
    """0 or 1, and the reasons for a 1 (``checks``)."""
    return check_status(checks(results))


@contextlib.contextmanager
def _target(config: CapacityConfig, log_dir: Path) -> Iterator[Target]:
    target: Target
    if config.lma is not None:
        target = own_lmas(config.lma, config.standby, None, config.mag_prefix)
    else:
        target = EmbeddedPair(config.mode, config.sync, log_dir)
    try:
        yield target
    except LabError as exc:
        raise CapacityError(str(exc)) from None
    finally:
        target.stop()


def capacity(
    config: CapacityConfig, show: Callable[[str], None]
) -> tuple[dict[str, Any], list[Check]]:
    """Search, showing a line per trial; (results, checks)."""
    with (
        tempfile.TemporaryDirectory(prefix="lmaload-capacity-") as logs,
        _target(config, Path(logs)) as target,
    ):
        show(target.starting)
        target.start()
        try:
            target.wait_ready(READY_TIMEOUT)
        except LmaStartError as exc:
            raise CapacityError(str(exc)) from None
        reset = None
        if isinstance(target, EmbeddedPair):
            reset = functools.partial(target.restart, READY_TIMEOUT)
        results = CapacitySearch(config, target, show=show, reset=reset).run()
    return results, checks(results)
