"""``--threshold EXPR``: pass/fail criteria over a results document's figures
(``lmaload.figures``), as k6's thresholds are; a crossed threshold makes the command exit 99.

An expression is ``FIGURE OP LIMIT`` with OP one of ``< <= > >= == !=`` and LIMIT either a
number with an optional unit — ``us``, ``ms``, ``s`` or ``m`` for times, ``%`` for shares,
``/s`` for rates — or another figure times a factor (``0.99*registration.target_rate``).
Examples: ``takeover.p99<3s``, ``registration.latency.p99<=50ms``, ``sessions.lost==0``,
``registration.failed_ratio<0.1%``, ``registration.rate>=0.99*registration.target_rate``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmaload.figures import TABLES, Figure

EXIT_THRESHOLD = 99
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
TIME_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_EXPRESSION = re.compile(r"^\s*([a-z_.0-9]+)\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")
_NUMBER = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*(us|µs|ms|s|m|%|/s)?$")
_FACTOR = re.compile(r"^(?:([-+]?(?:\d+\.?\d*|\.\d+))\s*\*\s*)?([a-z_][a-z_.0-9]*)$")


class ThresholdError(ValueError):
    """A bad expression: one line naming it and what was expected."""


@dataclass(frozen=True)
class Threshold:
    expression: str
    figure: Figure
    op: str
    number: float | None  # the limit, in the figure's base unit; or
    factor: float = 1.0  # times ``other``
    other: Figure | None = None

    def limit(self, document: dict[str, Any]) -> float | None:
        if self.other is None:
            return self.number
        value = self.other.get(document)
        return None if value is None else self.factor * value

    def outcome(self, document: dict[str, Any]) -> dict[str, Any]:
        value, limit = self.figure.get(document), self.limit(document)
        ok = value is not None and limit is not None and OPERATORS[self.op](value, limit)
        return {
            "expression": self.expression,
            "figure": self.figure.name,
            "value": value,
            "limit": limit,
            "ok": ok,
        }


def _known(kind: str) -> str:
    return ", ".join(f.name for f in TABLES[kind])


def _number(text: str, figure: Figure, expression: str) -> float:
    match = _NUMBER.match(text)
    if match is None:
        raise ThresholdError(f"{expression!r}: {text!r} is neither a number nor a figure")
    value, unit = float(match.group(1)), match.group(2)
    if unit is None:
        return value
    if unit in TIME_UNITS and figure.unit == "s":
        return value * TIME_UNITS[unit]
    if unit == "%" and figure.unit == "ratio":
        return value / 100
    if unit == "/s" and figure.unit == "/s":
        return value
    raise ThresholdError(f"{expression!r}: {figure.name} is not measured in {unit}")


def parse(expression: str, kind: str) -> Threshold:
    """The threshold ``expression`` over the figures of a ``kind`` document."""
    figures = {f.name: f for f in TABLES[kind]}
    match = _EXPRESSION.match(expression)
    if match is None:
        raise ThresholdError(f"{expression!r}: expected FIGURE OP LIMIT, e.g. takeover.p99<3s")
    name, op, rhs = match.groups()
    if name not in figures:
        raise ThresholdError(f"{expression!r}: unknown figure {name!r}; known: {_known(kind)}")
    figure = figures[name]
    reference = _FACTOR.match(rhs)
    if reference is not None and reference.group(2) in figures:
        factor = float(reference.group(1)) if reference.group(1) else 1.0
        return Threshold(expression, figure, op, None, factor, figures[reference.group(2)])
    if reference is not None and not _NUMBER.match(rhs):
        raise ThresholdError(
            f"{expression!r}: unknown figure {reference.group(2)!r}; known: {_known(kind)}"
        )
    return Threshold(expression, figure, op, _number(rhs, figure, expression))


def evaluate(thresholds: list[Threshold], document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each threshold's outcome over ``document``."""
    return [t.outcome(document) for t in thresholds]


def crossed(outcomes: list[dict[str, Any]]) -> list[str]:
    """One line per threshold that does not hold."""
    return [
        f"threshold {o['expression']} crossed: {o['figure']} is "
        f"{'not measured' if o['value'] is None else format(o['value'], '.6g')}"
        for o in outcomes
        if not o["ok"]
    ]


def table(outcomes: list[dict[str, Any]]) -> str:
    """The thresholds' lines of a summary table."""
    return "\n".join(
        f"threshold           {o['expression']:<40} "
        f"{'-' if o['value'] is None else format(o['value'], '.6g'):>12}  "
        f"{'ok' if o['ok'] else 'CROSSED'}"
        for o in outcomes
    )
