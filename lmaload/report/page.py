"""``lmaload report``: results documents as one self-contained HTML page (inline SVG and CSS, no
script, nothing fetched), viewable with no network.

The page: a header naming each file in its colour; the plots of ``lmaload.report.plots`` at
the fixed places of ``lmaload.report.layout``; the key figures of each kind of document
(``lmaload.figures``) side by side, with the change of the last file against the first (the
baseline) judged as ``lmaload compare`` judges it; the trials of each capacity search; and
every file's configuration, the values that differ between files marked.
"""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmaload.compare import compare
from lmaload.figures import KINDS, Figure, figures_of
from lmaload.report.layout import (
    CAPTION_HEIGHT,
    HEADER_HEIGHT,
    MARGIN,
    PAGE_WIDTH,
    PLOT_HEIGHT,
    PLOT_WIDTH,
    plot_box,
    plots_height,
)
from lmaload.report.plots import FILE_COLORS, Plot, Source, plots

TOLERANCE = 0.10  # the change of a key figure that counts (lmaload compare's default)
TRIAL_COLUMNS = (
    ("rate", "rate /s"),
    ("duration", "s"),
    ("confirmation", "confirmation"),
    ("registered", "registered"),
    ("failed", "failed"),
    ("latency_p99_us", "p99 µs"),
    ("achieved_rate", "achieved /s"),
    ("ndr", "NDR"),
    ("pdr", "PDR"),
    ("generator_bound", "generator-bound"),
    ("reasons", "why not"),
)
CSS = f"""
body {{ margin: 0; width: {PAGE_WIDTH}px; font: 13px/1.4 "DejaVu Sans", Arial, sans-serif;
       color: #222; background: #fff; }}
header {{ height: {HEADER_HEIGHT}px; box-sizing: border-box; padding: 12px {MARGIN}px;
         overflow: hidden; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }}
.files span {{ display: inline-block; margin: 4px 18px 0 0; white-space: nowrap; }}
.swatch {{ display: inline-block; width: 14px; height: 14px; margin-right: 6px;
          vertical-align: -2px; }}
.plots {{ position: relative; }}
.plot {{ position: absolute; margin: 0; width: {PLOT_WIDTH}px; }}
.plot .picture {{ width: {PLOT_WIDTH}px; height: {PLOT_HEIGHT}px; }}
.plot .picture svg {{ width: 100%; height: 100%; display: block; }}
.plot figcaption {{ height: {CAPTION_HEIGHT}px; overflow: hidden; font-size: 12px;
                   color: #555; }}
section {{ padding: 0 {MARGIN}px; }}
h2 {{ font-size: 17px; margin: 22px 0 8px; }}
table {{ border-collapse: collapse; margin-bottom: 8px; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; vertical-align: top; }}
th {{ background: #f4f4f4; }}
td.name, th.name {{ text-align: left; }}
td.worse {{ background: #f8d7da; }}
td.better {{ background: #d4edda; }}
tr.differs td {{ background: #fff3cd; }}
"""


class ReportError(ValueError):
    """A file that cannot go into a report: one line for the user."""


@dataclass(frozen=True)
class Report:
    """The page, and its plots in page order (plot ``i`` is at ``layout.plot_box(i)``)."""

    html: str
    plots: list[Plot]


def load(paths: Sequence[Path]) -> list[tuple[str, dict[str, Any]]]:
    """(label, document) of each results file; the label is the file name (the path as given
    when two files share a name)."""
    names = [p.name for p in paths]
    loaded = []
    for path, name in zip(paths, names, strict=True):
        try:
            document = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ReportError(f"{path}: cannot read a results document: {exc}") from None
        if not isinstance(document, dict) or document.get("kind") not in KINDS:
            kind = document.get("kind") if isinstance(document, dict) else None
            raise ReportError(
                f"{path}: not a results document of lmaload run, sync, capacity or bench "
                f"(kind {kind!r})"
            )
        loaded.append((str(path) if names.count(name) > 1 else name, document))
    return loaded


def render(documents: Sequence[tuple[str, dict[str, Any]]], title: str) -> Report:
    """The report of ``documents`` (label, document), in the order given: the first is the
    baseline of each kind, the last the one compared with it."""
    sources = [
        Source(label, doc, FILE_COLORS[i % len(FILE_COLORS)])
        for i, (label, doc) in enumerate(documents)
    ]
    drawn = plots(sources)
    figures = "".join(_figure(i, plot) for i, plot in enumerate(drawn))
    generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    files = "".join(
        f'<span><i class="swatch" style="background:{s.color}"></i>{_e(s.label)} '
        f"({_e(s.document['kind'])})</span>"
        for s in sources
    )
    body = [
        f"<header><h1>{_e(title)}</h1><div>lmaload report, {generated}</div>"
        f'<div class="files">{files}</div></header>',
        f'<div class="plots" style="height:{plots_height(len(drawn))}px">{figures}</div>',
        _key_figures(sources),
        *(_trials(s) for s in sources if s.document["kind"] == "capacity"),
        _configuration(sources),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
    return Report(page, drawn)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _figure(index: int, plot: Plot) -> str:
    box = plot_box(index)
    return (
        f'<figure class="plot" id="plot-{index}" style="left:{box.left}px;'
        f'top:{box.top - HEADER_HEIGHT}px"><div class="picture">{plot.svg}</div>'
        f"<figcaption>{_e(plot.caption)}</figcaption></figure>"
    )


def _value(figure: Figure, value: float | None) -> str:
    if value is None:
        return "-"
    if figure.unit == "s":
        return f"{value * 1e3:.3g} ms" if abs(value) < 1 else f"{value:.3g} s"
    if figure.unit == "ratio":
        return f"{value:.2%}"
    if figure.unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:.4g}"


def _key_figures(sources: Sequence[Source]) -> str:
    out = []
    for kind in KINDS:
        chosen = [s for s in sources if s.document["kind"] == kind]
        if not chosen:
            continue
        base, last = chosen[0].document, chosen[-1].document
        figures = {**figures_of(last), **figures_of(base)}
        verdicts = {r.name: r for r in compare(base, last, TOLERANCE)} if len(chosen) > 1 else {}
        head = "".join(f"<th>{_e(s.label)}</th>" for s in chosen)
        judged = "<th>change</th>" if verdicts else ""
        rows = []
        for name, figure in figures.items():
            cells = "".join(f"<td>{_value(figure, figure.get(s.document))}</td>" for s in chosen)
            if verdicts:
                row = verdicts[name]
                change = "-" if row.change is None else f"{row.change:+.1%}"
                cells += f'<td class="{row.verdict}">{change} {row.verdict}</td>'
            rows.append(
                f'<tr><td class="name">{_e(name)}</td><td class="name">{_e(figure.what)}</td>'
                f"{cells}</tr>"
            )
        out.append(
            f"<h2>Key figures: {kind}</h2><table><tr><th class='name'>figure</th>"
            f"<th class='name'>what</th>{head}{judged}</tr>{''.join(rows)}</table>"
        )
    note = (
        f"<p>The change is the last file's against the first's; beyond {TOLERANCE:.0%} the bad "
        "way it is worse (as <code>lmaload compare</code> judges).</p>"
    )
    return f"<section>{''.join(out)}{note}</section>"


def _trials(source: Source) -> str:
    head = "".join(f"<th>{_e(label)}</th>" for _, label in TRIAL_COLUMNS)
    rows = []
    for number, trial in enumerate(source.document["trials"], start=1):
        cells = []
        for key, _ in TRIAL_COLUMNS:
            value = trial.get(key)
            if isinstance(value, bool):
                value = "yes" if value else "no"
            elif isinstance(value, list):
                value = "; ".join(value)
            elif isinstance(value, float):
                value = f"{value:,.1f}"
            cells.append(f"<td>{_e('-' if value is None else value)}</td>")
        rows.append(f"<tr><td>{number}</td>{''.join(cells)}</tr>")
    doc = source.document
    found = ", ".join(f"{k.upper()} {_e(doc[k]['rate'])}/s" for k in ("ndr", "pdr"))
    return (
        f"<section><h2>Capacity trials: {_e(source.label)}</h2><p>{found}</p>"
        f"<table><tr><th>#</th>{head}</tr>{''.join(rows)}</table></section>"
    )


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, child in value.items():
        flat.update(_flatten(child, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _configuration(sources: Sequence[Source]) -> str:
    configs = [_flatten(s.document.get("config", {})) for s in sources]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    missing = object()
    rows = []
    for key in keys:
        values = [c.get(key, missing) for c in configs]
        differs = len(sources) > 1 and any(v != values[0] for v in values)
        mark = ' class="differs"' if differs else ""
        cells = "".join(f"<td>{'' if v is missing else _e(json.dumps(v))}</td>" for v in values)
        rows.append(f'<tr{mark}><td class="name">{_e(key)}</td>{cells}</tr>')
    head = "".join(f"<th>{_e(s.label)}</th>" for s in sources)
    return (
        "<section><h2>Configuration</h2><p>Values that differ between the files are marked."
        f"</p><table><tr><th class='name'>option</th>{head}</tr>{''.join(rows)}</table>"
        "</section>"
    )
