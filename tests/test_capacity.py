"""``lmaload capacity`` on the simulated clock: the search finds a simulated LMA's known capacity
within its resolution, lists every trial, confirms what it reports; a generator that cannot keep
its schedule is flagged as the limit; and the command's options and results on real sockets."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from lmaload.capacity import CapacityConfig, CapacitySearch, exit_status, table
from lmaload.lma_pair import free_port
from lmaload.protocol.datagrams import Datagrams
from lmaload.protocol.mag import MagEngine
from lmaload.sim import LinkProfile, Simulator
from tests.conftest import USER_ACTIVE
from tests.lma_children import LmaProcess, wait_for
from tests.sim_target import SimLoop, SimPair

CAPACITY = 800.0  # PBUs per second the simulated active LMA serves


def search(config: CapacityConfig, sim: Simulator, mag_loop=None, reset=None) -> dict[str, Any]:
    target = SimPair(sim, capacity=CAPACITY)
    target.wait_ready(1.0)
    searcher = CapacitySearch(
        config,
        target,  # type: ignore[arg-type]
        clock=lambda: sim.now,
        mag_loop=mag_loop or (lambda engine: SimLoop(sim, engine)),
        sleep=sim.run_for,
        cpu=lambda: 0.0,
        reset=reset,
    )
    return searcher.run()


@pytest.fixture(scope="module")
def found() -> dict[str, Any]:
    config = CapacityConfig(
        mags=10, sync="async", start_rate=100, trial_duration=2, confirm_duration=4
    )
    return search(config, Simulator(default_link=LinkProfile(delay=0.001)))


def test_the_search_finds_the_known_capacity_within_its_resolution(found) -> None:
    for kind in ("pdr", "ndr"):
        rate = found[kind]["rate"]
        # Above the capacity the dropped PBUs are retransmitted after 1 s: the latency bound
        # fails a trial once more than 1 % of them were, i.e. within the resolution.
        assert abs(rate - CAPACITY) / CAPACITY <= 0.02, (kind, rate)
        assert found[kind]["limit"] == "target"
        assert (found[kind]["failed_above"] - rate) / found[kind]["failed_above"] <= 0.02
    assert exit_status(found) == (0, [])


def test_every_trial_is_listed_and_the_rate_found_was_confirmed(found) -> None:
    trials = found["trials"]
    ramp = [t["rate"] for t in trials[:5]]
    assert ramp == [100, 200, 400, 800, 1600]  # doubling until the first failure
    assert not trials[4]["pdr"] and trials[4]["reasons"]
    confirmations = [t for t in trials if t["confirmation"]]
    assert confirmations and all(t["duration"] == 4 for t in confirmations)
    assert any(t["rate"] == found["pdr"]["rate"] and t["pdr"] for t in confirmations)
    for t in trials:
        assert t["sessions"] == round(t["rate"] * t["duration"])
        assert t["registered"] + t["failed"] == t["sessions"]
    assert "NDR" in table(found) and "PDR" in table(found)
    assert found["target_reset_between_trials"] is False


def test_a_reset_target_is_started_afresh_with_room_for_each_trial_but_the_first() -> None:
    sim = Simulator(default_link=LinkProfile(delay=0.001))
    config = CapacityConfig(
        mags=4, sync="async", start_rate=200, trial_duration=1, confirm_duration=2, max_trials=5
    )
    resets: list[int] = []
    results = search(config, sim, reset=lambda sessions: resets.append(sessions))
    assert results["trials"] and len(resets) == len(results["trials"]) - 1
    assert resets == [t["sessions"] for t in results["trials"][1:]]
    assert results["target_reset_between_trials"] is True


class Late:
    """A MAG engine whose driver wakes ``delay`` seconds after every timer: a generator that
    cannot keep its schedule."""

    def __init__(self, engine: MagEngine, delay: float) -> None:
        self.engine, self.delay = engine, delay
        self.pop = engine.pop

    def receive(self, datagrams: Datagrams, now: float) -> None:
        self.engine.receive(datagrams, now)

    def next_timer(self) -> float | None:
        due = self.engine.next_timer()
        return None if due is None else due + self.delay

    def handle_timer(self, now: float) -> None:
        self.engine.handle_timer(now)

    def datagrams_to_send(self) -> Datagrams:
        return self.engine.datagrams_to_send()


def test_a_generator_bound_trial_is_flagged() -> None:
    sim = Simulator(default_link=LinkProfile(delay=0.001))
    config = CapacityConfig(
        mags=4, sync="async", start_rate=200, min_rate=40, trial_duration=1, confirm_duration=2
    )
    results = search(config, sim, lambda engine: SimLoop(sim, Late(engine, 0.05)))
    trials = results["trials"]
    assert trials and all(t["generator_bound"] for t in trials)
    assert all("behind schedule" in " ".join(t["reasons"]) for t in trials)
    assert results["generator"]["bound_trials"] == len(trials)
    status, reasons = exit_status(results)
    assert status == 1 and reasons == [
        "no trial rate passed the PDR criteria",
        "no trial rate passed the NDR criteria",
    ]


@pytest.mark.parametrize(
    "args",
    [("--start-rate", "0"), ("--resolution", "1.5"), ("--lma", "::1"), ("--sync", "never")],
)
def test_bad_options_exit_2_with_one_line(args) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lmaload", "capacity", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("lmaload: capacity: ") and result.stderr.count("\n") == 1


def capacity_cli(*args: str) -> subprocess.CompletedProcess:
    """``lmaload capacity`` over 10 MAGs with ``args``."""
    return subprocess.run(
        [sys.executable, "-m", "lmaload", "capacity", "--mags", "10", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_capacity_of_the_embedded_pair(tmp_path) -> None:
    """A short search against the real embedded pair on loopback: every trial listed in the
    results, a rate found, the generator's CPU per registration reported."""
    path = tmp_path / "capacity.json"
    result = capacity_cli(
        *("--sync", "async", "--start-rate", "500", "--max-rate", "1000"),
        *("--trial-duration", "1", "--confirm-duration", "2", "--results", str(path)),
    )
    assert result.returncode in (0, 1), result.stderr
    results = json.loads(path.read_text())
    assert results["kind"] == "capacity" and results["trials"]
    assert results["target_reset_between_trials"] is True
    assert "PDR" in result.stdout and "trial" in result.stderr
    assert results["generator"]["cpu_per_registration_us"] > 0
    # The ramp starts at --start-rate; where it goes next depends on how busy the machine is.
    assert results["trials"][0]["rate"] == 500
    assert all(t["registered"] + t["failed"] == t["sessions"] for t in results["trials"])


def test_capacity_of_a_plain_lma_without_heartbeats(tmp_path) -> None:
    """The user's own LMA as a plain RFC 5213 LMA (no RFC 5847, sequence ordering): trials with
    sequence-number PBUs and no heartbeats, each LMA's readiness shown by a PBU exchange."""
    port = free_port(USER_ACTIVE)
    lma = LmaProcess.spawn(tmp_path, "plain", USER_ACTIVE, port, "--plain")
    try:
        wait_for(lambda: lma.metric("lmaload_lma_role", role="active"), "the LMA")
        path = tmp_path / "capacity.json"
        result = capacity_cli(
            *("--lma", f"{USER_ACTIVE}:{port}", "--pbu-order", "sequence"),
            *("--heartbeats", "off", "--start-rate", "200", "--max-rate", "400"),
            *("--trial-duration", "1", "--confirm-duration", "1", "--results", str(path)),
        )
        assert result.returncode in (0, 1), result.stderr
        trials = json.loads(path.read_text())["trials"]
        assert trials[0]["rate"] == 200 and trials[0]["registered"] == 200, trials[0]
        assert lma.metric("lmaload_lma_heartbeat_requests_answered_total") == 0
        assert lma.metric("lmaload_lma_drops_total", reason="unknown_type") == 0
    finally:
        lma.kill()
