"""The generator's own CPU: a ``MagEngine`` on a ``MagTransport`` (UDP/5436 over loopback) against
the embedded LMA pair (two ``lmaload lma`` processes, ``--sync async``), in this process.

* idle hold: 1 000 MNs on 100 MAGs, nothing registering, heartbeats every ``--interval`` (0.2 s)
  to both LMAs — CPU µs per heartbeat sent and % of a core;
* registrations: ``--registrations`` fresh MNs on the same 100 MAGs at ``--rate`` per second
  (heartbeats going on beside) — CPU µs per registration, with and without the idle hold's share.

CPU is this process's, user and system (``os.times``); the LMA processes are not counted. Each
figure is the best of ``--repeat`` runs (the machine may be shared). ``--reference`` runs the
engine on its pure-Python/numpy reference path; ``--profile FILE`` writes a cProfile of one idle
hold.

    python3 benchmarks/mag_idle.py [--seconds 5] [--rate 2000] [--json]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from lmaload.lma_pair import EmbeddedPair
from lmaload.measure.schedule import Schedule
from lmaload.population import PopulationSpec, generate
from lmaload.population import SessionState as S
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_config import MagConfig
from lmaload.transport.mag_loop import MagLoop, MagTransport

MAGS = 100
IDLE_MNS = 1_000
WARMUP = 1.0  # s: every MAG has heartbeated a few times before the clock starts
LATER = 1e6  # s: a schedule start that never comes: the idle hold registers nothing


def _cpu_since(before: os.times_result) -> tuple[float, float]:
    """User and system CPU seconds of this process since ``before``."""
    now = os.times()
    return now.user - before.user, now.system - before.system


def _engine(
    loop: MagLoop, spec: PopulationSpec, config: MagConfig, start: float, reference: bool
) -> MagEngine:
    """A new engine on ``loop``: every run's MAGs (the same 100) keep the loop's one socket, the
    outer address the LMAs know them by."""
    engine = MagEngine(generate(spec), config, time.time(), start, compiled=not reference)
    loop.engine = engine
    return engine


def idle_hold(
    loop: MagLoop, config: MagConfig, seconds: float, reference: bool, profile: Path | None
) -> dict[str, float]:
    """CPU per heartbeat while 100 MAGs heartbeat both LMAs and nothing registers."""
    engine = _engine(
        loop, PopulationSpec(IDLE_MNS, MAGS, first_id=0), config, time.time() + LATER, reference
    )
    loop.run_until(time.time() + WARMUP)
    counters = engine.counters
    sent, cpu, wall = counters.heartbeat_requests_sent, os.times(), time.time()
    answered = engine.heartbeats.rtt.total
    profiler = cProfile.Profile() if profile is not None else None
    if profiler is not None:
        profiler.enable()
    loop.run_until(wall + seconds)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    user, system = _cpu_since(cpu)
    cpu, wall = user + system, time.time() - wall
    heartbeats = counters.heartbeat_requests_sent - sent
    answered = engine.heartbeats.rtt.total - answered
    return {
        "heartbeats_per_s": heartbeats / wall,
        "cpu_us_per_heartbeat": cpu / heartbeats * 1e6,
        "core_percent": cpu / wall * 100,
        "system_share": system / cpu,
        "answered": answered,
    }


def registrations(
    loop: MagLoop, config: MagConfig, count: int, rate: float, first_id: int, reference: bool
) -> dict[str, float]:
    """CPU per registration of ``count`` fresh MNs at ``rate``/s (heartbeats going on beside),
    each accepted or refused."""
    spec = PopulationSpec(count, MAGS, first_id=first_id)
    paced = MagConfig(**{**config.__dict__, "schedule": Schedule.constant(rate)})
    start = time.time() + WARMUP
    engine = _engine(loop, spec, paced, start, reference)
    loop.run_until(start)
    sent, cpu, wall = engine.counters.heartbeat_requests_sent, os.times(), time.time()
    deadline = wall + count / rate + 10.0
    # Until every session is settled: an LMA pair under load may refuse some (153).
    while engine.count(S.REGISTERED) + engine.count(S.FAILED) < count:
        if time.time() >= deadline:
            break
        loop.run_until(time.time() + 0.05)
    user, system = _cpu_since(cpu)
    cpu, wall = user + system, time.time() - wall
    registered = engine.count(S.REGISTERED)
    failed = engine.count(S.FAILED)
    heartbeats = engine.counters.heartbeat_requests_sent - sent
    return {
        "registered": registered,
        "refused": failed,
        "registrations_per_s": registered / wall,
        "cpu_us_per_registration": cpu / max(registered + failed, 1) * 1e6,
        "core_percent": cpu / wall * 100,
        "system_share": system / cpu,
        "p99_latency_us": engine.latency["register"].percentile(99.0),
        "heartbeats": heartbeats,
        "cpu_s": cpu,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="idle hold measured")
    parser.add_argument("--interval", type=float, default=0.2, help="heartbeat interval, s")
    parser.add_argument("--rate", type=float, default=2000.0, help="registrations per second")
    parser.add_argument("--registrations", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reference", action="store_true", help="the pure-Python/numpy path")
    parser.add_argument("--profile", type=Path, help="cProfile of one idle hold to this file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as logs:
        pair = EmbeddedPair("hard", "async", Path(logs))
        pair.start()
        try:
            pair.wait_ready(30.0)
            lmaa, standby = pair.anchors()
            config = MagConfig(lmaa=lmaa, standby=standby, heartbeat_interval=args.interval)
            population = generate(PopulationSpec(IDLE_MNS, MAGS))
            loop = MagLoop(
                MagEngine(population, config, time.time(), time.time() + LATER),
                MagTransport(population, pair.routes()),
            )
            idle = [
                idle_hold(loop, config, args.seconds, args.reference, args.profile)
                for _ in range(args.repeat)
            ]
            registering = [
                registrations(
                    loop,
                    config,
                    args.registrations,
                    args.rate,
                    IDLE_MNS + k * args.registrations,
                    args.reference,
                )
                for k in range(args.repeat)
            ]
            loop.close()
        finally:
            pair.stop()
    best_idle = min(idle, key=lambda r: r["cpu_us_per_heartbeat"])
    best_reg = min(registering, key=lambda r: r["cpu_us_per_registration"])
    # What the heartbeats cost during the registrations, taken out: the registrations' own CPU.
    heartbeat_cpu = best_reg["heartbeats"] * best_idle["cpu_us_per_heartbeat"] / 1e6
    settled = best_reg["registered"] + best_reg["refused"]
    own = (best_reg["cpu_s"] - heartbeat_cpu) / max(settled, 1) * 1e6
    results: dict[str, Any] = {
        "path": "reference" if args.reference else "compiled",
        "idle": best_idle,
        "registration": {**best_reg, "cpu_us_per_registration_without_heartbeats": own},
        "runs": {"idle": idle, "registration": registering},
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{results['path']}: idle hold {best_idle['heartbeats_per_s']:.0f} heartbeats/s: "
        f"{best_idle['cpu_us_per_heartbeat']:.1f} µs CPU per heartbeat, "
        f"{best_idle['core_percent']:.2f} % of a core ({best_idle['system_share']:.0%} system)"
    )
    print(
        f"{results['path']}: {settled} registrations ({best_reg['refused']} refused) at "
        f"{best_reg['registrations_per_s']:.0f}/s: {best_reg['cpu_us_per_registration']:.1f} µs "
        f"CPU each ({own:.1f} µs without the heartbeats), {best_reg['core_percent']:.1f} % of a "
        f"core, p99 {best_reg['p99_latency_us']} µs"
    )


if __name__ == "__main__":
    main()
