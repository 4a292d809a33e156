"""Thresholds (exit 99), ``lmaload compare`` and JUnit reports: expressions parsed with their
units, a real short run whose thresholds hold (exit 0), the same document re-judged with a
threshold it crosses (exit 99) and its JUnit report read back, a document compared with itself
and with a worsened copy, and the one-line errors."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from junitparser import Failure, JUnitXml

from lmaload.compare import CompareError, compare
from lmaload.thresholds import ThresholdError, parse

LMALOAD = (sys.executable, "-m", "lmaload")


def lmaload(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LMALOAD, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("expression", "limit"),
    [
        ("takeover.p99<3s", 3.0),
        ("registration.latency.p99<=50ms", 0.05),
        ("registration.latency.p50 < 800us", 0.0008),
        ("sessions.lost==0", 0.0),
        ("registration.failed_ratio<0.1%", 0.001),
        ("registration.rate>=4500/s", 4500.0),
        ("detection.max<1m", 60.0),
    ],
)
def test_limits_are_read_in_base_units(expression: str, limit: float) -> None:
    threshold = parse(expression, "run")
    assert threshold.limit({}) == pytest.approx(limit)


def test_a_limit_may_be_another_figure_times_a_factor() -> None:
    threshold = parse("registration.rate>=0.99*registration.target_rate", "run")
    document = {"registration": {"achieved_rate": 990.0, "target_rate": 1000.0}}
    assert threshold.outcome(document)["ok"]
    document["registration"]["achieved_rate"] = 989.0
    assert not threshold.outcome(document)["ok"]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("nonsense<3", "unknown figure 'nonsense'; known: registration.rate,"),
        ("takeover.p99 3s", "expected FIGURE OP LIMIT"),
        ("sessions.lost==0ms", "sessions.lost is not measured in ms"),
        ("registration.rate>=0.9*nothing", "unknown figure 'nothing'"),
        ("takeover.p99<3x", "'3x' is neither a number nor a figure"),
    ],
)
def test_bad_expressions_name_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ThresholdError, match=message.replace("(", r"\(").replace("*", r"\*")):
        parse(expression, "run")


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    path = tmp_path_factory.mktemp("run") / "results.json"
    result = lmaload(
        "run",
        *("--mns", "1000", "--mags", "10", "--rate", "1000", "--sync", "async", "--allow-lag"),
        *("--results", str(path)),
        *("--threshold", "sessions.lost==0", "--threshold", "registration.latency.p99<10s"),
        *("--threshold", "registration.rate>=0.5*registration.target_rate"),
    )
    return result, path


def test_a_run_whose_thresholds_hold_exits_0(short_run) -> None:
    result, path = short_run
    assert result.returncode == 0, result.stderr
    document = json.loads(path.read_text())
    assert document["kind"] == "run"
    assert [o["ok"] for o in document["thresholds"]] == [True, True, True]
    assert "threshold           sessions.lost==0" in result.stdout


def test_a_crossed_threshold_exits_99_and_fails_its_junit_case(short_run, tmp_path) -> None:
    _, path = short_run
    junit = tmp_path / "junit.xml"
    result = lmaload(
        "merge", str(path), "--results", str(tmp_path / "merged.json"), "--junit", str(junit),
        "--threshold", "registration.latency.p99<1us", "--threshold", "sessions.lost==0",
    )  # fmt: skip
    assert result.returncode == 99, result.stderr
    assert "threshold registration.latency.p99<1us crossed" in result.stderr
    suite = next(iter(JUnitXml.fromfile(str(junit))))
    cases = {case.name: case for case in suite}
    failed = {
        name for name, case in cases.items() if any(isinstance(r, Failure) for r in case.result)
    }
    assert failed == {"threshold registration.latency.p99<1us"}
    assert {"generator on schedule", "every mobile node registered", "failure detected"} <= set(
        cases
    )
    assert "threshold sessions.lost==0" in cases


def test_compare_with_itself_and_with_a_worse_copy(short_run, tmp_path) -> None:
    _, path = short_run
    same = lmaload("compare", str(path), str(path))
    assert same.returncode == 0, same.stderr
    worse: dict[str, Any] = json.loads(path.read_text())
    worse["takeover"]["summary"]["takeover"]["p99"] *= 2
    worse["registration"]["achieved_rate"] *= 0.5
    worse_path = tmp_path / "worse.json"
    worse_path.write_text(json.dumps(worse))
    junit = tmp_path / "compare.xml"
    result = lmaload("compare", str(path), str(worse_path), "--junit", str(junit))
    assert result.returncode == 99
    assert "takeover.p99 got worse" in result.stderr
    assert "registration.rate got worse" in result.stderr
    # A looser tolerance for the rate lets it pass; the takeover still fails.
    result = lmaload("compare", str(path), str(worse_path), "--metric", "registration.rate=60%")
    assert result.returncode == 99 and "registration.rate got worse" not in result.stderr
    suite = next(iter(JUnitXml.fromfile(str(junit))))
    failed = {case.name for case in suite if any(isinstance(r, Failure) for r in case.result)}
    assert {"takeover.p99", "registration.rate"} <= failed


def test_compare_judges_direction_and_refuses_other_kinds() -> None:
    base = {"kind": "capacity", "pdr": {"rate": 1000.0}, "ndr": {"rate": 900.0}}
    better = copy.deepcopy(base)
    better["pdr"]["rate"] = 2000.0
    verdicts = {r.name: r.verdict for r in compare(base, better, 0.1)}
    assert verdicts["capacity.pdr"] == "better" and verdicts["capacity.ndr"] == "same"
    assert verdicts["generator.cpu_per_registration"] == "not compared"
    with pytest.raises(CompareError, match="cannot compare a 'capacity' document with a 'run'"):
        compare(base, {"kind": "run"}, 0.1)


def test_compare_of_different_kinds_exits_1(tmp_path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"kind": "sync"}))
    b.write_text(json.dumps({"kind": "capacity"}))
    result = lmaload("compare", str(a), str(b))
    assert result.returncode == 1 and result.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["run", "sync", "capacity"])
def test_an_unknown_figure_exits_2_naming_the_known_ones(command: str) -> None:
    result = lmaload(command, "--threshold", "no.such<1")
    assert result.returncode == 2
    assert result.stderr.startswith(f"lmaload: {command}: ") and "known:" in result.stderr
