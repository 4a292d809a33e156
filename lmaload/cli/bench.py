"""``lmaload bench``: the engine room's rates on this machine."""

from __future__ import annotations

import json

import click

from lmaload.cli.group import main


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON document.")
@click.option("--quick", is_flag=True, help="Smaller runs (100 000 instead of 1 000 000 nodes).")
def bench(as_json: bool, quick: bool) -> None:
    """Measure the bulk codec, batched I/O and population memory on this machine."""
    from lmaload.bench import format_report, run

    results = run(quick=quick)
    click.echo(json.dumps(results, indent=2) if as_json else format_report(results))
