"""``lmaload report``: results documents as one self-contained HTML page with plots."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lmaload.cli.group import EXIT_INVALID_INPUT, OneLineErrors, fail, main


@main.command(name="report", cls=OneLineErrors)
@click.argument(
    "paths",
    metavar="RESULTS...",
    nargs=-1,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="Where the HTML page goes.",
)
@click.option("--title", default="lmaload report", show_default=True, help="The page's title.")
def report_command(paths: tuple[Path, ...], output: Path, title: str) -> None:
    """Write one self-contained HTML page (no network needed to view it) of the results
    documents RESULTS (of lmaload run, capacity, sync, merge or bench --json), overlaid in
    the order given, each labelled by its file name: the first is the baseline the last is
    compared with.

    Plots for runs: the registration rate against the target over time, latency percentiles
    over time, the percentile spectrum, failure detection and takeover over MAGs as a CDF, the
    sessions' fates, the sessions by state over time; for capacity searches, the trials. Then
    the key figures, the trials and the configuration as tables.

    Needs matplotlib (pip install 'lmaload[report]'). Exits 1 without it or when a file is not
    a results document, 2 on bad options.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        fail("report: needs matplotlib, which is not installed: pip install 'lmaload[report]'")
        sys.exit(EXIT_INVALID_INPUT)
    from lmaload.report.page import ReportError, load, render

    try:
        documents = load(paths)
    except ReportError as exc:
        fail(f"report: {exc}")
        sys.exit(EXIT_INVALID_INPUT)
    report = render(documents, title)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report.html)
    click.echo(f"{output}: {len(report.plots)} plots, {len(documents)} results files")
