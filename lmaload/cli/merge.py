"""``lmaload merge``: the shards of one run combined."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from lmaload.cli.group import EXIT_INVALID_INPUT, OneLineErrors, fail, main, results_option


@main.command(name="merge", cls=OneLineErrors)
@click.argument(
    "documents", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@results_option("results.json")
def merge_command(documents: tuple[Path, ...], results_path: Path) -> None:
    """Combine the results of the shards of one run (lmaload run --shard I/N) exactly.

    Writes the whole run's results document, prints its summary table, and exits as lmaload
    run would have: 1 when the generators fell behind or sessions were lost with before-ack
    sync, or when the documents are not the shards of one run.
    """
    from lmaload.merge import MergeError, merge
    from lmaload.results import table
    from lmaload.run import exit_status

    loaded = []
    for path in documents:
        try:
            loaded.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            fail(f"merge: {path}: {getattr(exc, 'strerror', None) or exc}")
            sys.exit(EXIT_INVALID_INPUT)
    try:
        merged = merge(loaded)
    except (MergeError, KeyError, TypeError) as exc:
        fail(f"merge: {exc if isinstance(exc, MergeError) else f'not a results document: {exc}'}")
        sys.exit(EXIT_INVALID_INPUT)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(merged, indent=2) + "\n")
    click.echo(table(merged))
    status, reasons = exit_status(merged)
    for reason in reasons:
        fail(f"merge: {reason}")
    sys.exit(status)
