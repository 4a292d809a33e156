"""``lmaload merge``: the shards of one run combined."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import click

from lmaload.cli.finish import finish
from lmaload.cli.group import (
    EXIT_INVALID_INPUT,
    fail,
    junit_option,
    load_documents,
    main,
    results_option,
    threshold_option,
)


@main.command(name="merge")
@click.argument("documents", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--from-logs",
    "logs",
    type=click.File("r"),
    metavar="FILE",
    help="Also take the shards' documents from their logs ('-': standard input): the "
    "lmaload run --print-results lines in kubectl logs -l job-name=NAME --tail=-1 output.",
)
@results_option("results.json")
@threshold_option("run")
@junit_option
def merge_command(
    documents: tuple[Path, ...],
    logs: TextIO | None,
    results_path: Path,
    thresholds: list[Any],
    junit_path: Path | None,
) -> None:
    """Combine the results of the shards of one run (lmaload run --shard I/N) exactly: the
    DOCUMENTS, and those printed in --from-logs.

    Writes the whole run's results document, prints its summary table, and exits as lmaload
    run would have (1 when a check of the run fails, 99 when a threshold is crossed), or 1 when
    the documents are not the shards of one run.
    """
    from lmaload.merge import MergeError, merge
    from lmaload.results import table
    from lmaload.run_checks import checks
    from lmaload.shard_logs import LogError, read_logs

    if not documents and logs is None:
        raise click.UsageError("give the shards' DOCUMENTS or --from-logs FILE")
    loaded = []
    if logs is not None:
        try:
            loaded.extend(read_logs(logs, logs.name))
        except LogError as exc:
            fail(f"merge: {exc}")
            sys.exit(EXIT_INVALID_INPUT)
    loaded.extend(load_documents(documents, "merge"))
    try:
        merged = merge(loaded)
    except (MergeError, KeyError, TypeError) as exc:
        fail(f"merge: {exc if isinstance(exc, MergeError) else f'not a results document: {exc}'}")
        sys.exit(EXIT_INVALID_INPUT)
    finish("merge", merged, checks(merged), thresholds, results_path, junit_path, table)
