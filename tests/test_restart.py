"""``lmaload run --mode restart`` on the simulated clock: the real ``Runner`` against one simulated
reference LMA that is crashed and comes back ``restart_after`` seconds later as a fresh engine
(an empty binding cache), with the next Restart Counter or — an LMA that does not count its
restarts — the same one, or never. The MAGs must wait for it, register every session there
again, and the results must account for every session at risk; the outage is measured from the
last answer before the failure to the first after it."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import pytest

from lmaload import results as res
from lmaload.lma_pair import free_port
from lmaload.protocol import LmaConfig, LmaEngine
from lmaload.run import RunConfig
from lmaload.run_checks import exit_status
from lmaload.sim import LinkProfile, Simulator
from tests.conftest import USER_ACTIVE
from tests.sim_target import run_on

MNS, MAGS, RATE = 600, 6, 600.0
LMA = IPv6Address("2001:db8:1::1")
RESTART_AFTER = 2.0
LMALOAD = (sys.executable, "-m", "lmaload")


class SimSingle:
    """Restart mode's simulated target: one reference LMA engine; ``recover`` brings it back
    empty, with the Restart Counter ``counter_after`` (None: it stays down)."""

    starting = "starting the simulated LMA"
    observes_sync = False
    can_fail = True
    loses_state = False  # the MAGs learn it from the Restart Counter, or not at all

    def __init__(self, sim: Simulator, counter_after: int | None) -> None:
        self.sim = sim
        self.counter_after = counter_after
        sim.add_node("lma", self._engine(1), [LMA])

    def _engine(self, counter: int) -> LmaEngine:
        pool = IPv6Network("fd00:b000::/40")
        return LmaEngine(
            LmaConfig(address=LMA, prefix_pool=pool, restart_counter=counter), self.sim.now
        )

    def start(self) -> None:
        pass

    def wait_ready(self, timeout: float) -> None:
        pass

    def routes(self) -> dict[IPv6Address, tuple[str, int]]:
        return {LMA: ("lma", 0)}

    def anchors(self) -> tuple[IPv6Address, None]:
        return LMA, None

    def fail(self) -> None:
        self.sim.crash("lma")

    def recover(self) -> None:
        if self.counter_after is not None:
            self.sim.restart("lma", self._engine(self.counter_after))

    def failure_problems(self) -> list[str]:
        return []

    def stop(self) -> None:
        pass


def restart_run(counter_after: int | None, **options: Any) -> dict[str, Any]:
    sim = Simulator(default_link=LinkProfile(delay=0.001))
    config = RunConfig(
        mns=MNS, mags=MAGS, rate=RATE, mode="restart", restart_after=RESTART_AFTER, **options
    )
    return run_on(sim, config, SimSingle(sim, counter_after))


@pytest.fixture(scope="module")
def restarted() -> dict[str, Any]:
    """Heartbeats on; the LMA comes back with the next Restart Counter."""
    return restart_run(counter_after=2)


def test_every_session_is_rebuilt_after_a_restart_that_lost_them(restarted) -> None:
    assert exit_status(restarted) == (0, [])
    restart = restarted["restart"]
    assert restart["at_risk"] == MNS
    assert (restart["rebuilt"], restart["kept"], restart["not_reregistered"]) == (MNS, 0, 0)
    summary = restarted["takeover"]["summary"]
    assert summary["lost"] == summary["pending"] == summary["not_attempted"] == 0
    assert all(m["rebuilt"] == MNS // MAGS for m in restarted["takeover"]["mags"])


def test_outage_and_reregistration_are_measured_per_mag(restarted) -> None:
    restart = restarted["restart"]
    outage, rereg = restart["outage"], restart["reregistration"]
    assert outage["count"] == rereg["count"] == MAGS
    # Silent from the last answer before the crash until the restarted LMA's first Response:
    # the restart_after, plus at most a heartbeat interval on either side.
    interval = RunConfig.heartbeat_interval
    assert RESTART_AFTER - 0.01 <= outage["p50"] <= outage["max"] <= RESTART_AFTER + 2 * interval
    # Every MAG's sessions back: after the LMA answered, within their spread at the run's rate.
    assert RESTART_AFTER < rereg["p50"] <= rereg["max"] <= RESTART_AFTER + 1.0 + MNS / RATE
    table = res.table(restarted)
    assert "outage              p50" in table
    assert f"{MNS} at risk: 0 kept, {MNS} rebuilt, 0 lost" in table


def test_without_heartbeats_refresh_probes_detect_and_find_the_lma_again() -> None:
    """An LMA without RFC 5847 (heartbeats off) that does not count its restarts: the MAGs'
    refresh probes notice it gone and back; the sessions' refreshes are accepted with the
    prefix they ask for, which the MAG cannot tell from a kept binding."""
    results = restart_run(counter_after=1, heartbeats="off", failure_after=2)
    assert exit_status(results) == (0, [])
    restart = results["restart"]
    assert restart["kept"] + restart["rebuilt"] == restart["at_risk"] == MNS
    summary = results["takeover"]["summary"]
    assert summary["detection"]["count"] == MAGS
    assert restart["outage"]["count"] == MAGS
    assert RESTART_AFTER <= restart["outage"]["p50"] <= RESTART_AFTER + 2.0


def test_an_lma_that_never_comes_back_fails_the_run() -> None:
    results = restart_run(counter_after=None)
    status, reasons = exit_status(results)
    assert status == 1
    assert reasons == [
        f"{MNS} of {MNS} sessions at risk were not registered again after the restart "
        f"(0 lost, 0 pending, {MNS} not attempted)"
    ]
    assert results["restart"]["outage"]["count"] == 0


# --- processes: lmaload run --mode restart on loopback UDP/5436 --------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LMALOAD, "run", "--mode", "restart", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("heartbeats", ["on", "auto"])  # auto: lmaload lma --plain
def test_the_embedded_lma_is_killed_started_again_and_every_session_rebuilt(
    tmp_path, heartbeats
) -> None:
    results_path = tmp_path / "results.json"
    result = run_cli(
        *("--mns", "500", "--mags", "5", "--rate", "500", "--restart-after", "1"),
        *("--heartbeats", heartbeats),
        *("--results", str(results_path)),
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(results_path.read_text())
    restart = results["restart"]
    # A new process: the Restart Counter 1 → 2 says so, and the run knows it of the plain one.
    assert restart["at_risk"] == 500 and restart["rebuilt"] == 500
    assert restart["not_reregistered"] == 0
    assert restart["recovered_at"] - restart["failure_at"] >= 1.0
    # Silent at least from the kill to the restart; the new process then takes a while to start.
    assert restart["outage"]["count"] == 5 and restart["outage"]["p50"] >= 1.0
    assert restart["reregistration"]["max"] >= restart["outage"]["max"]
    for line in ("outage              p50", "500 at risk: 0 kept, 500 rebuilt, 0 lost"):
        assert line in result.stdout


def test_the_users_lma_is_failed_and_recovered_by_commands(tmp_path) -> None:
    """--lma with --fail-cmd and --recover-cmd: an LMA that does not count its restarts
    (the same Restart Counter) and without heartbeats, found again by the refresh probes."""
    port = free_port(USER_ACTIVE)
    argv = [*LMALOAD, "lma", "--listen", f"{USER_ACTIVE}:{port}"]
    pid_file = tmp_path / "lma.pid"
    lma = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file.write_text(str(lma.pid))
    # Its output away from the run's: the test reads the run's to the end.
    again = f"{shlex.join(argv)} >/dev/null 2>&1 </dev/null & echo $! > {pid_file}"
    try:  # the run waits for the LMA to answer
        result = run_cli(
            *("--mns", "300", "--mags", "3", "--rate", "300", "--restart-after", "1"),
            *("--lma", f"{USER_ACTIVE}:{port}", "--heartbeats", "off", "--failure-after", "2"),
            *("--fail-cmd", f"kill -9 $(cat {pid_file})", "--recover-cmd", again),
            *("--results", str(tmp_path / "results.json")),
        )
        assert result.returncode == 0, result.stderr
        restart = json.loads((tmp_path / "results.json").read_text())["restart"]
        assert restart["kept"] + restart["rebuilt"] == restart["at_risk"] == 300
        assert restart["outage"]["count"] == 3
    finally:
        lma.kill()
        subprocess.run(["kill", "-9", pid_file.read_text().strip()], stderr=subprocess.DEVNULL)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--mode", "restart", "--lma", "127.0.0.31", "--standby", "127.0.0.32"),
            "--mode restart has one LMA, restarted: give --lma alone",
        ),
        (("--recover-cmd", "true"), "--recover-cmd is for --mode restart"),
    ],
)
def test_restart_options_that_do_not_make_a_run_exit_2(args, message) -> None:
    result = subprocess.run([*LMALOAD, "run", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
