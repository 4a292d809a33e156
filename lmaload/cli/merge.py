"""``lmaload merge``: the shards of one run combined."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from lmaload.cli.finish import finish
from lmaload.cli.group import (
    EXIT_INVALID_INPUT,
    OneLineErrors,
    fail,
    junit_option,
    main,
    results_option,
    threshold_option,
)


@main.command(name="merge", cls=OneLineErrors)
@click.argument(
    "documents", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@results_option("results.json")
@threshold_option("run")
@junit_option
def merge_command(
    documents: tuple[Path, ...],
    results_path: Path,
    thresholds: list[Any],
    junit_path: Path | None,
) -> None:
    """Combine the results of the shards of one run (lmaload run --shard I/N) exactly.

    Writes the whole run's results document, prints its summary table, and exits as lmaload
    run would have (1 when a check of the run fails, 99 when a threshold is crossed), or 1 when
    the documents are not the shards of one run.
    """
    from lmaload.merge import MergeError, merge
    from lmaload.results import table
    from lmaload.run import checks

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
    finish("merge", merged, checks(merged), thresholds, results_path, junit_path, table)
