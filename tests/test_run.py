"""``lmaload run`` end to end: an embedded LMA pair on loopback, 2,000 sessions over 20 MAGs
registered with before-ack sync, the active killed, every session kept at the standby; and the
one-line exit 2 on bad options."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

TIMEOUT = 120.0


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lmaload", "run", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_before_ack_failover_keeps_every_session(tmp_path) -> None:
    path = tmp_path / "tmp" / "results.json"
    result = run_cli(
        *("--mns", "2000", "--mags", "20", "--rate", "1000", "--sync", "before-ack"),
        *("--results", str(path)),
    )
    assert result.returncode == 0, result.stderr
    assert "takeover" in result.stdout and "registration rate" in result.stdout
    results = json.loads(path.read_text())
    assert results["schema_version"] == 1
    assert {"config", "registration", "takeover", "generator"} <= results.keys()
    assert results["config"]["mns"] == 2000 and results["config"]["sync"] == "before-ack"
    assert "lmaload" in results["config"]["versions"]
    registration = results["registration"]
    assert registration["registered"] == 2000 and registration["failed"] == 0
    assert registration["latency_us"]["histogram"]
    assert registration["pba_status"]["0"] >= 2000
    takeover = results["takeover"]
    assert takeover["summary"]["lost"] == 0 and takeover["summary"]["pending"] == 0
    assert takeover["summary"]["kept"] == 2000
    rows = takeover["mags"]
    assert [r["mag"] for r in rows] == list(range(20))
    assert all(r["detection"] is not None and r["takeover"] is not None for r in rows)
    assert sum(r["kept"] for r in rows) == 2000
    assert results["generator"]["behind_schedule"] <= 0.01


@pytest.mark.parametrize(
    "args",
    [
        ("--rate", "0"),
        ("--mns", "many"),
        ("--mode", "cold"),
        ("--sync", "never"),
        ("--no-such-option",),
    ],
)
def test_bad_options_exit_2_with_one_line(args) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("lmaload: run: ") and result.stderr.count("\n") == 1
