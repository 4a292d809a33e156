"""``lmaload population``: the mobile nodes of a run as a subscriber list for an LMA's policy
store (issue 14 item 5, the export half)."""

from __future__ import annotations

import csv
import json
import sys

import click

from lmaload.cli.group import mags_option, main, seed_option


@main.command(name="population")
@click.option(
    "--mns",
    type=click.IntRange(1),
    default=100_000,
    show_default=True,
    help="Mobile nodes, as lmaload run --mns.",
)
@mags_option
@seed_option
@click.option(
    "--request-prefix",
    is_flag=True,
    help="List each MN's own /64 as the HNP it requests (lmaload run asks the LMA to assign "
    "one: the column is empty without this).",
)
@click.option(
    "--mag-prefix",
    metavar="PREFIX",
    help="The MAGs' IPv6 prefix, as lmaload run --transport raw --mag-prefix (default: "
    "fd00:6d61:6700::/64).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="csv: a header line, then one line per MN; json: an array of objects.",
)
def population_command(
    mns: int, mags: int, seed: int, request_prefix: bool, mag_prefix: str | None, output_format: str
) -> None:
    """Print the mobile nodes lmaload run emulates with the same --mns, --mags and --seed: each
    MN's MN-ID NAI, MN link-layer identifier, requested HNP and MAG addresses (IPv6 Proxy-CoA,
    IPv4), ready to load into an LMA's list of subscribers."""
    from lmaload.population import SUBSCRIBER_FIELDS, generate, subscribers
    from lmaload.run import RunConfig

    try:
        spec = RunConfig(mns=mns, mags=mags, seed=seed, mag_prefix=mag_prefix).population_spec()
        rows = subscribers(generate(spec), request_prefix)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if output_format == "json":
        json.dump(list(rows), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=SUBSCRIBER_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
