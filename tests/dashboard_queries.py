"""The checked-in Grafana dashboards (grafana/dashboards/*.json) as the tests read them: every
panel with its PromQL expressions, and those expressions with Grafana's variables substituted
as it would for Prometheus."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    """(dashboard file name, panel) of every panel."""
    for name, board in dashboards().items():
        for panel in board["panels"]:
            yield name, panel


def substitute(expr: str, rate_interval: str) -> str:
    """``expr`` as Grafana sends it: ``$__rate_interval`` replaced (the only variable panels
    use besides the data source)."""
    return expr.replace("$__rate_interval", rate_interval)
