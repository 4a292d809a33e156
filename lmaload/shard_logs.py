"""Results documents carried in logs: ``lmaload run --print-results`` ends its output with the
document as one marked line, and ``lmaload merge --from-logs`` finds those lines in what
``kubectl logs`` gives back (one pod after another, with or without ``--prefix`` or
``--timestamps``: the marker may stand anywhere in a line, the JSON runs to its end)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

RESULTS_MARKER = "LMALOAD-RESULTS"


class LogError(ValueError):
    """Logs that hold no readable results line: one line for the user."""


def results_line(document: dict[str, Any]) -> str:
    return f"{RESULTS_MARKER} {json.dumps(document, separators=(',', ':'))}"


def read_logs(lines: Iterable[str], source: str) -> list[dict[str, Any]]:
    """Every results document marked in ``lines`` (of ``source``, named in errors)."""
    documents = []
    for number, line in enumerate(lines, 1):
        at = line.find(f"{RESULTS_MARKER} {{")
        if at < 0:
            continue
        try:
            documents.append(json.loads(line[at + len(RESULTS_MARKER) :].rstrip("\r\n")))
        except ValueError as exc:
            raise LogError(
                f"{source}, line {number}: the {RESULTS_MARKER} line is not whole JSON ({exc})"
            ) from None
    if not documents:
        raise LogError(f"{source}: no {RESULTS_MARKER} line (lmaload run --print-results)")
    return documents
