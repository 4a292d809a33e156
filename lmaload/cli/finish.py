"""How a measuring command ends: its thresholds evaluated, its results document written, its
table printed, its JUnit report written, the document printed as a marked line if asked
(``lmaload.shard_logs``), and its exit status — 1 when a check of the run
failed, 99 when only thresholds were crossed, 0 otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from lmaload import junit
from lmaload.checks import Check, exit_status
from lmaload.cli.group import fail
from lmaload.shard_logs import results_line
from lmaload.thresholds import EXIT_THRESHOLD, Threshold, crossed, evaluate
from lmaload.thresholds import table as threshold_table


def finish(
    command: str,
    results: dict[str, Any],
    checks: list[Check],
    thresholds: list[Threshold],
    results_path: Path,
    junit_path: Path | None,
    table: Callable[[dict[str, Any]], str],
    print_results: bool = False,
) -> NoReturn:
    outcomes = evaluate(thresholds, results)
    results["thresholds"] = outcomes
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    click.echo(table(results))
    if outcomes:
        click.echo(threshold_table(outcomes))
    if junit_path is not None:
        junit.write(junit_path, command, checks, outcomes)
    if print_results:
        click.echo(results_line(results))
    status, reasons = exit_status(checks)
    over = crossed(outcomes)
    for reason in (*reasons, *over):
        fail(f"{command}: {reason}")
    sys.exit(status or (EXIT_THRESHOLD if over else 0))
