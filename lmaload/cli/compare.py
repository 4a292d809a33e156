"""``lmaload compare``: two results documents of one kind, figure by figure."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lmaload.cli.group import EXIT_INVALID_INPUT, fail, junit_option, load_documents, main


@main.command(name="compare")
@click.argument(
    "baseline_path", metavar="BASELINE", type=click.Path(dir_okay=False, path_type=Path)
)
@click.argument("results_path", metavar="RESULTS", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--tolerance",
    default="10%",
    show_default=True,
    help="How far a figure may move the bad way, relative to the baseline, before it is worse.",
)
@click.option(
    "--metric",
    "metric_tolerances",
    multiple=True,
    metavar="NAME=TOL",
    help="Another tolerance for one figure (repeatable), e.g. takeover.p99=25%.",
)
@junit_option
def compare_command(
    baseline_path: Path,
    results_path: Path,
    tolerance: str,
    metric_tolerances: tuple[str, ...],
    junit_path: Path | None,
) -> None:
    """Compare the key figures of RESULTS with those of BASELINE (documents of lmaload run,
    sync, capacity or bench --json, of one kind), direction-aware.

    Exits 99 when a figure got worse beyond its tolerance, 0 otherwise; 1 when a document cannot
    be read or the two are of different kinds; 2 on bad options.
    """
    from lmaload import junit
    from lmaload.checks import Check
    from lmaload.compare import CompareError, compare, parse_tolerance, table
    from lmaload.thresholds import EXIT_THRESHOLD

    try:
        default = parse_tolerance(tolerance)
    except ValueError:
        raise click.BadParameter(f"{tolerance!r}: expected a share like 10% or 0.1") from None
    per_figure = {}
    for text in metric_tolerances:
        name, sep, value = text.partition("=")
        try:
            per_figure[name] = parse_tolerance(value) if sep else -1.0
            if per_figure[name] < 0:
                raise ValueError
        except ValueError:
            raise click.BadParameter(
                f"{text!r}: expected NAME=TOL, e.g. takeover.p99=25%", param_hint="--metric"
            ) from None
    documents = load_documents((baseline_path, results_path), "compare")
    try:
        rows = compare(documents[0], documents[1], default, per_figure)
    except CompareError as exc:
        fail(f"compare: {exc}")
        sys.exit(EXIT_INVALID_INPUT)
    click.echo(table(rows))
    worse = [r for r in rows if r.verdict == "worse"]
    if junit_path is not None:
        checks = [
            Check(
                r.name,
                r.verdict != "worse",
                f"{r.name} moved {r.change:+.1%} from {r.baseline:.6g} to {r.now:.6g}"
                if r.change is not None
                else f"{r.name} moved from {r.baseline} to {r.now}",
            )
            for r in rows
            if r.verdict != "not compared"
        ]
        junit.write(junit_path, "compare", checks, [])
    for r in worse:
        fail(f"compare: {r.name} got worse: {r.baseline:.6g} -> {r.now:.6g}")
    sys.exit(EXIT_THRESHOLD if worse else 0)
