"""``lmaload bench``: the engine room's rates on this machine."""

from __future__ import annotations

import json

import click

from lmaload.cli.group import main


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON document.")
@click.option("--quick", is_flag=True, help="Smaller runs (100 000 instead of 1 000 000 nodes).")
@click.option(
    "--e2e",
    is_flag=True,
    help="Also the whole system (benchmarks/e2e.py): the embedded pair's capacity, the "
    "generator's CPU per registration and the idle hold, as ratios to a compiled yardstick.",
)
def bench(as_json: bool, quick: bool, e2e: bool) -> None:
    """Measure the bulk codec, batched I/O and population memory on this machine."""
    from lmaload import bench_e2e
    from lmaload.bench import format_report, run

    results = run(quick=quick)
    if e2e:
        results["e2e"] = bench_e2e.run(quick=quick)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    click.echo(format_report(results))
    if e2e:
        click.echo(bench_e2e.format_report(results["e2e"]))
