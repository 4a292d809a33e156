"""The Grafana dashboards: the checked-in JSON is what ``python -m lmaload.dashboards`` renders,
and every panel follows the rules (a unit, the data-source variable, ``$__rate_interval`` in
rates). Whether their queries find our metrics is tests/test_prometheus.py's."""

from __future__ import annotations

import re
import subprocess
import sys

from lmaload.dashboards import render
from tests.dashboard_queries import DASHBOARD_DIR, dashboards, panels


def test_checked_in_dashboards_are_what_the_code_renders() -> None:
    rendered = render()
    on_disk = {p.name: p.read_text() for p in DASHBOARD_DIR.glob("*.json")}
    assert sorted(on_disk) == sorted(rendered)
    stale = [name for name, text in rendered.items() if on_disk[name] != text]
    assert not stale, f"{stale} differ: run python -m lmaload.dashboards"


def test_the_command_writes_every_dashboard(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lmaload.dashboards", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == render()


def test_bad_arguments_exit_2_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lmaload.dashboards", "a", "b"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1


def test_every_dashboard_has_the_prometheus_data_source_variable() -> None:
    boards = dashboards()
    assert sorted(b["title"] for b in boards.values()) == [
        "lmaload / LMA",
        "lmaload / Load",
        "lmaload / State sync",
        "lmaload / Takeover",
    ]
    for board in boards.values():
        (variable,) = board["templating"]["list"]
        assert (variable["type"], variable["name"], variable["query"]) == (
            "datasource",
            "datasource",
            "prometheus",
        )


def test_every_panel_has_a_unit_the_data_source_variable_and_rate_intervals() -> None:
    count = 0
    for name, panel in panels():
        where = f"{name}: {panel['title']}"
        assert panel["fieldConfig"]["defaults"].get("unit"), where
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], where
            for window in re.findall(r"\b(?:rate|increase)\([^\[]*\[([^\]]*)\]", target["expr"]):
                assert window == "$__rate_interval", where
            count += 1
    assert count >= 50
