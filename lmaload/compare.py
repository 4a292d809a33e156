"""``lmaload compare BASELINE RESULTS``: the key figures of two results documents of one kind side
by side, each change judged by its direction (a latency going up, a rate going down is worse),
as CSIT's trending or k6's baselines do.

A figure is *worse* when it moved in its bad direction by more than its tolerance, relative to
the baseline; from a baseline of 0 (no session lost) any move the bad way is worse. A figure
missing from either document is listed and not judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmaload.figures import figures_of


class CompareError(ValueError):
    """Documents that cannot be compared: one line for the user."""


@dataclass(frozen=True)
class Row:
    name: str
    baseline: float | None
    now: float | None
    change: float | None  # relative to the baseline; None when not defined
    tolerance: float
    verdict: str  # better, worse, same, not compared

    def as_dict(self) -> dict[str, Any]:
        return {
            "figure": self.name,
            "baseline": self.baseline,
            "now": self.now,
            "change": self.change,
            "tolerance": self.tolerance,
            "verdict": self.verdict,
        }


def compare(
    baseline: dict[str, Any],
    now: dict[str, Any],
    tolerance: float,
    tolerances: dict[str, float] | None = None,
) -> list[Row]:
    """A row per figure of the documents' kind (CompareError: different or unknown kinds, or a
    ``tolerances`` name that is no figure of that kind)."""
    kinds = baseline.get("kind"), now.get("kind")
    if kinds[0] != kinds[1]:
        raise CompareError(f"cannot compare a {kinds[0]!r} document with a {kinds[1]!r} one")
    try:
        figures = figures_of(baseline)
    except ValueError as exc:
        raise CompareError(str(exc)) from None
    if baseline["kind"] == "bench":
        figures = {**figures_of(now), **figures}
    tolerances = tolerances or {}
    unknown = sorted(set(tolerances) - set(figures))
    if unknown:
        raise CompareError(f"no figure {unknown[0]!r} in {baseline['kind']} documents")
    rows = []
    for name, figure in figures.items():
        base, value = figure.get(baseline), figure.get(now)
        allowed = tolerances.get(name, tolerance)
        if base is None or value is None:
            rows.append(Row(name, base, value, None, allowed, "not compared"))
            continue
        change = (value - base) / abs(base) if base else None
        worse_way = value < base if figure.better == "higher" else value > base
        moved = value != base and (change is None or abs(change) > allowed)
        verdict = ("worse" if worse_way else "better") if moved else "same"
        rows.append(Row(name, base, value, change, allowed, verdict))
    return rows


def parse_tolerance(text: str) -> float:
    """``10%`` or ``0.1`` as a fraction (ValueError otherwise)."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if value < 0:
        raise ValueError("a tolerance is not negative")
    return value


def table(rows: list[Row]) -> str:
    def fmt(value: float | None) -> str:
        return "-" if value is None else format(value, ".6g")

    lines = [f"{'figure':<36} {'baseline':>14} {'now':>14} {'change':>9}  verdict"]
    for r in rows:
        change = "-" if r.change is None else f"{r.change:+.1%}"
        worse = "WORSE" if r.verdict == "worse" else r.verdict
        lines.append(f"{r.name:<36} {fmt(r.baseline):>14} {fmt(r.now):>14} {change:>9}  {worse}")
    return "\n".join(lines)
