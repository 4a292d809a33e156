"""The whole system measured as a user meets it: the generator pinned to one core and the
embedded LMA pair to the other, beside a yardstick measured in the same run on the same machine.

* **yardstick** — a plain compiled UDP request/response loop over loopback (``mmsg.request_loop``
  against ``mmsg.echo_loop``: recvmmsg/sendmmsg, a window of 64): requests per second, and the
  client's CPU per request. Every figure below is also given as a ratio to it, so the ratios hold
  on any machine.
* **capacity** — the embedded pair's highest registration rate (``lmaload.capacity``'s PDR), with
  ``before-ack`` and with ``async`` State Synchronization, over the yardstick's requests/s.
* **generator** — the generator's CPU per registration in a trial at a paced rate (a quarter of
  the async capacity), over the yardstick's CPU per request.
* **idle** — the CPU share of the generator and of each LMA while a registered population
  (100 000 mobile nodes on 100 MAGs; ``quick``: 20 000) holds, its MAGs heartbeating both LMAs
  every 0.2 s.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lmaload._ext import mmsg
from lmaload.capacity import READY_TIMEOUT, CapacityConfig, CapacitySearch
from lmaload.lma_pair import EmbeddedPair
from lmaload.measure.schedule import Schedule
from lmaload.population import PopulationSpec, generate
from lmaload.population import SessionState as S
from lmaload.procstat import cpu_seconds, pin
from lmaload.protocol.mag import MagEngine
from lmaload.protocol.mag_config import MagConfig
from lmaload.transport.mag_loop import MagLoop

GENERATOR_CPU, PAIR_CPU = 0, 1
WINDOW = 64
REQUEST = 64  # octets, about a PBU
HEARTBEAT_INTERVAL = 0.2
IDLE_RATE = 5000.0  # registrations/s of the population the idle hold measures


@contextlib.contextmanager
def _pinned_generator() -> Iterator[None]:
    before = os.sched_getaffinity(0)
    if (os.cpu_count() or 1) > GENERATOR_CPU:
        os.sched_setaffinity(0, {GENERATOR_CPU})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def _pair(sync: str) -> Iterator[EmbeddedPair]:
    with tempfile.TemporaryDirectory(prefix="lmaload-e2e-") as logs:
        pair = EmbeddedPair("hard", sync, Path(logs), cpu=PAIR_CPU)
        try:
            pair.start()
            pair.wait_ready(READY_TIMEOUT)
            yield pair
        finally:
            pair.stop()


def _echo(port: mp.Queue) -> None:  # type: ignore[type-arg]
    pin(PAIR_CPU)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port.put(sock.getsockname()[1])
        mmsg.echo_loop(sock.fileno(), 500)


def yardstick(requests: int) -> dict[str, float]:
    """The compiled request/response loop: requests/s and the client's CPU µs per request."""
    port: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    server = mp.Process(target=_echo, args=(port,), daemon=True)
    server.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("127.0.0.1", port.get(timeout=10)))
            request = np.zeros(REQUEST, dtype=np.uint8)
            cpu0 = time.process_time()
            answered, seconds = mmsg.request_loop(sock.fileno(), request, WINDOW, requests, 1000)
            cpu = time.process_time() - cpu0
    finally:
        server.join(5)
        if server.is_alive():
            server.kill()
    return {
        "requests_per_second": answered / seconds if seconds > 0 else 0.0,
        "cpu_us_per_request": cpu / answered * 1e6 if answered else float("inf"),
        "answered": answered,
    }


def capacity(sync: str, quick: bool) -> dict[str, Any]:
    """The pair's PDR and NDR (registrations/s) and the trials behind them."""
    config = CapacityConfig(
        mags=100,
        sync=sync,  # type: ignore[arg-type]
        start_rate=2000.0,
        trial_duration=2.0 if quick else 5.0,
        confirm_duration=4.0 if quick else 15.0,
        resolution=0.1 if quick else 0.02,
        max_trials=12 if quick else 40,
    )
    with _pair(sync) as pair:
        results = CapacitySearch(
            config, pair, reset=functools.partial(pair.restart, READY_TIMEOUT)
        ).run()
    return {
        "pdr": results["pdr"]["rate"] or 0.0,
        "ndr": results["ndr"]["rate"] or 0.0,
        "limit": results["pdr"]["limit"],
        "trials": len(results["trials"]),
    }


def paced_generator(rate: float, seconds: float) -> dict[str, float]:
    """The generator's CPU per registration in one trial at ``rate`` against the async pair."""
    with _pair("async") as pair:
        search = CapacitySearch(CapacityConfig(mags=100, sync="async"), pair)
        trial = search.trial(rate, seconds)
    return {
        "rate": rate,
        "cpu_us_per_registration": trial.cpu_per_registration_us or float("inf"),
        "cpu_share": trial.generator_cpu_share,
        "registered": trial.registered,
        "sessions": trial.sessions,
    }


def idle(mns: int, mags: int, hold: float) -> dict[str, Any]:
    """CPU shares while ``mns`` registered mobile nodes on ``mags`` MAGs hold for ``hold``
    seconds, heartbeating both LMAs."""
    with _pair("async") as pair:
        lmaa, standby = pair.anchors()
        config = MagConfig(
            lmaa=lmaa,
            standby=standby,
            heartbeat_interval=HEARTBEAT_INTERVAL,
            schedule=Schedule.constant(IDLE_RATE),
        )
        engine = MagEngine(generate(PopulationSpec(mns=mns, mags=mags)), config, time.time())
        loop = MagLoop(engine, pair.mag_transport(engine.pop, None))
        try:
            deadline = time.time() + mns / IDLE_RATE + 30.0
            while engine.count(S.REGISTERED) < mns and time.time() < deadline:
                loop.run_until(time.time() + 0.1)
            registered = engine.count(S.REGISTERED)
            loop.run_until(time.time() + 1.0)  # the last registrations' work settles
            pids = {c.name: c.proc.pid for c in pair.children}
            lma0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
            cpu0, wall0 = time.process_time(), time.time()
            loop.run_until(wall0 + hold)
            wall = time.time() - wall0
            generator = (time.process_time() - cpu0) / wall
            lmas = {name: (cpu_seconds(pid) - lma0[name]) / wall for name, pid in pids.items()}
        finally:
            loop.close()
    return {
        "mns": mns,
        "mags": mags,
        "registered": registered,
        "heartbeats_per_second": mags * 2 / HEARTBEAT_INTERVAL,
        "generator_cpu_share": generator,
        "lma_cpu_share": lmas,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Every figure, and the ratios to the yardstick."""
    with _pinned_generator():
        stick = yardstick(200_000 if quick else 1_000_000)
        caps = {sync: capacity(sync, quick) for sync in ("before-ack", "async")}
        paced_rate = max(100.0, caps["async"]["pdr"] / 4)
        generator = paced_generator(paced_rate, 3.0 if quick else 10.0)
        hold = idle(20_000 if quick else 100_000, 100, 3.0 if quick else 10.0)
    per_request, requests = stick["cpu_us_per_request"], stick["requests_per_second"]
    return {
        "yardstick": stick,
        "capacity": caps,
        "generator": generator,
        "idle": hold,
        "ratios": {
            "capacity_before_ack": caps["before-ack"]["pdr"] / requests,
            "capacity_async": caps["async"]["pdr"] / requests,
            "generator_cpu_per_registration": generator["cpu_us_per_registration"] / per_request,
            "idle_generator_share": hold["generator_cpu_share"],
            "idle_lma_share": max(hold["lma_cpu_share"].values()),
        },
    }


def format_report(results: dict[str, Any]) -> str:
    stick, caps, gen, hold, ratios = (
        results[k] for k in ("yardstick", "capacity", "generator", "idle", "ratios")
    )
    lmas = ", ".join(f"{name} {share:.1%}" for name, share in hold["lma_cpu_share"].items())
    return "\n".join(
        [
            f"yardstick             {stick['requests_per_second']:,.0f} requests/s, "
            f"{stick['cpu_us_per_request']:.2f} µs CPU per request (client)",
            *(
                f"capacity {sync:<12} PDR {c['pdr']:,.0f}/s, NDR {c['ndr']:,.0f}/s "
                f"({ratios['capacity_' + sync.replace('-', '_')]:.3f}x the yardstick; limited "
                f"by the {c['limit']}, {c['trials']} trials)"
                for sync, c in caps.items()
            ),
            f"generator             {gen['cpu_us_per_registration']:.1f} µs CPU per registration "
            f"at {gen['rate']:,.0f}/s ({ratios['generator_cpu_per_registration']:.1f}x the "
            "yardstick's per request)",
            f"idle                  {hold['registered']:,} MNs on {hold['mags']} MAGs, "
            f"{hold['heartbeats_per_second']:,.0f} heartbeats/s: generator "
            f"{hold['generator_cpu_share']:.1%} of a core; {lmas}",
        ]
    )
