"""The report's plots, drawn with matplotlib into SVG text (glyphs as paths: no font and no
network needed to show them). Each plot overlays every results file of its kind, one colour a
file; a plot with nothing to show says so in its middle.

Run documents: the registration rate against the offered (target) rate over time, the
registration latency's p50 and p99 over time, the percentile spectrum of the encoded latency
histograms, failure detection and takeover time over MAGs as a CDF, every session's fate
(registration, failover) as shares, and the sessions by state over time. Capacity documents: the
search's trials.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
)

from lmaload.measure.histogram import Histogram
from lmaload.report.layout import PLOT_HEIGHT, PLOT_WIDTH

DPI = 100
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3}
FILE_COLORS = [matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["tab10"].colors]
LINESTYLES = ("-", "--", ":", "-.")
GOOD, BAD, WORSE, WAITING, NONE = "#2ca02c", "#d62728", "#8c1a1a", "#ff7f0e", "#9a9a9a"
REGISTRATION_FATES = (
    ("registered", GOOD),
    ("rejected", BAD),
    ("given_up", WORSE),
    ("unanswered", WAITING),
    ("not_sent", NONE),
)
FAILOVER_FATES = (("kept", GOOD), ("lost", BAD), ("pending", WAITING), ("not_attempted", NONE))
STATE_COLORS = {
    "idle": NONE,
    "registering": "#1f77b4",
    "registered": GOOD,
    "refreshing": "#17becf",
    "failover": "#9467bd",
    "deregistering": "#bcbd22",
    "failed": BAD,
    "given_up": WORSE,
}
SPECTRUM_KINDS = (  # (label, path to the latency summary, line style)
    ("registration", ("registration", "latency_us"), "-"),
    ("refresh", ("refresh_latency_us",), ":"),
    ("takeover PBUs", ("takeover", "failover_latency_us"), "--"),
)


@dataclass(frozen=True)
class Source:
    """One results file: its label (the file name), its document, its colour in every plot."""

    label: str
    document: dict[str, Any]
    color: str


@dataclass(frozen=True)
class Plot:
    """A plot of the report: its picture (SVG text) and a sentence on what it shows."""

    title: str
    caption: str
    svg: str


Draw = Callable[[Axes, Sequence[Source]], bool]  # draws; whether it had anything to draw


def plots(sources: Sequence[Source]) -> list[Plot]:
    """Every plot for ``sources``, in page order: the run plots if there is a run document, the
    capacity plot if there is a capacity document."""
    runs = [s for s in sources if s.document.get("kind") == "run"]
    searches = [s for s in sources if s.document.get("kind") == "capacity"]
    wanted: list[tuple[str, str, Draw, Sequence[Source]]] = []
    if runs:
        wanted += [
            ("Registration rate", RATE_CAPTION, _rate, runs),
            ("Registration latency over time", LATENCY_CAPTION, _latency_over_time, runs),
            ("Latency percentile spectrum", SPECTRUM_CAPTION, _spectrum, runs),
            ("Failure detection and takeover over MAGs", CDF_CAPTION, _takeover_cdf, runs),
            ("Sessions: registration and failover", FATES_CAPTION, _fates, runs),
            ("Sessions by state over time", STATES_CAPTION, _states, runs),
        ]
    if searches:
        wanted.append(("Capacity search trials", TRIALS_CAPTION, _trials, searches))
    return [
        Plot(title, caption, _svg(title, draw, chosen, f"lmaload-{i}"))
        for i, (title, caption, draw, chosen) in enumerate(wanted)
    ]


RATE_CAPTION = (
    "Registrations completed per second (solid) against the scheduled sends offered per second "
    "(dashed, the target); a dotted line marks the failure."
)
LATENCY_CAPTION = (
    "Registration latency from each PBU's intended send time, p50 (solid) and p99 (dashed) over "
    "each second."
)
SPECTRUM_CAPTION = (
    "Latency at each percentile of the whole run (registration solid, refresh dotted, failover "
    "PBUs dashed), from the encoded HdrHistograms."
)
CDF_CAPTION = (
    "Share of the MAGs that detected the failure (solid) and completed their takeover (dashed) "
    "by each time after it."
)
FATES_CAPTION = (
    "Every mobile node at the end of the registration phase, and every session at risk in the "
    "failover, as shares of the whole (counts in the bars)."
)
STATES_CAPTION = "Sessions in each state at the end of each second (a line style per file)."
TRIALS_CAPTION = (
    "Each trial's offered rate in order: passed NDR (o), passed PDR only (s), failed (x); the "
    "NDR (solid) and PDR (dashed) found."
)


def _svg(title: str, draw: Draw, sources: Sequence[Source], salt: str) -> str:
    with matplotlib.rc_context({**STYLE, "svg.hashsalt": salt}):
        size = (PLOT_WIDTH / DPI, PLOT_HEIGHT / DPI)
        figure = Figure(figsize=size, dpi=DPI, layout="constrained")
        axes = figure.add_subplot()
        axes.set_title(title)
        if not draw(axes, sources):
            axes.cla()
            axes.set_axis_off()
            axes.set_title(title)
            axes.text(0.5, 0.5, "nothing to show in these results", ha="center", va="center")
        elif axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7, loc="best")
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg") :]


def _series(source: Source) -> tuple[np.ndarray, np.ndarray, dict[str, list[Any]]] | None:
    """(interval ends, interval lengths, columns) of a document's per-second series."""
    series = source.document.get("series")
    if not series or not series["columns"]["time"]:
        return None
    columns = series["columns"]
    ends = np.asarray(columns["time"], dtype=float)
    return ends, np.diff(ends, prepend=0.0), columns


def _failure_offset(document: dict[str, Any]) -> float | None:
    failure = document["takeover"]["failure_at"]
    return None if failure is None else failure - document["registration"]["start"]


def _rate(axes: Axes, sources: Sequence[Source]) -> bool:
    for s in sources:
        found = _series(s)
        if found is None:  # a merged document: the goodput of each whole second
            per_second = s.document["registration"]["per_second"]
            ends, lengths = np.arange(1.0, len(per_second) + 1), np.ones(len(per_second))
            completed, offered = np.asarray(per_second, dtype=float), None
        else:
            ends, lengths, columns = found
            completed = np.asarray(columns["completed"]) / lengths
            offered = np.asarray(columns["offered"]) / lengths
        starts = np.concatenate(([0.0], ends))
        axes.stairs(completed, starts, color=s.color, label=f"{s.label} completed")
        if offered is not None:
            label = f"{s.label} offered"
            axes.stairs(offered, starts, color=s.color, linestyle="--", alpha=0.7, label=label)
        failure = _failure_offset(s.document)
        if failure is not None:
            axes.axvline(failure, color=s.color, linestyle=":", linewidth=1)
    axes.set_xlabel("seconds since the schedule start")
    axes.set_ylabel("registrations / s")
    axes.set_ylim(bottom=0)
    return True


def _latency_over_time(axes: Axes, sources: Sequence[Source]) -> bool:
    drew = False
    for s in sources:
        found = _series(s)
        if found is None:
            continue
        ends, lengths, columns = found
        middles = ends - lengths / 2
        for key, style, name in (("latency_p50_us", "-", "p50"), ("latency_p99_us", "--", "p99")):
            ms = np.array([np.nan if v is None else v / 1e3 for v in columns[key]])
            if np.isfinite(ms).any():
                axes.plot(middles, ms, style, marker=".", color=s.color, label=f"{s.label} {name}")
                drew = True
    _log_ms(axes)
    axes.set_xlabel("seconds since the schedule start")
    return drew


def _spectrum(axes: Axes, sources: Sequence[Source]) -> bool:
    """HdrHistogram's percentile distribution plot: the percentile axis as 1 / (1 - p)."""
    drew = False
    for s in sources:
        for name, path, style in SPECTRUM_KINDS:
            summary: Any = s.document
            for key in path:
                summary = summary.get(key) or {}
            if not summary.get("histogram"):
                continue
            x, values = _percentiles(Histogram.decode(summary["histogram"]))
            label = f"{s.label} {name}"
            axes.step(x, values / 1e3, style, where="post", color=s.color, label=label)
            drew = True
    axes.set_xscale("log")
    _log_ms(axes)
    ticks = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000]
    axes.xaxis.set_major_locator(FixedLocator(ticks))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{100 - 100 / x:g}%"))
    axes.xaxis.set_minor_locator(FixedLocator([]))
    axes.set_xlim(left=1)
    axes.set_xlabel("percentile")
    return drew


def _log_ms(axes: Axes) -> None:
    """A logarithmic latency axis in ms, labelled 1, 2, 5, 10, ... in plain numbers."""
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.set_ylabel("latency (ms)")


def _percentiles(histogram: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """For each non-empty bucket: 1 / (1 - the share of values below it), and its highest
    value (µs); the last point at the share 1 - 1/count."""
    counts = histogram.counts
    nonzero = np.flatnonzero(counts)
    below = (np.cumsum(counts[nonzero]) - counts[nonzero]) / histogram.total
    x = 1 / (1 - below)
    values = histogram.layout.highest_equivalent(nonzero).astype(float)
    return np.append(x, histogram.total), np.append(values, values[-1])


def _takeover_cdf(axes: Axes, sources: Sequence[Source]) -> bool:
    drew = False
    for s in sources:
        rows = s.document["takeover"]["mags"]
        for key, style in (("detection", "-"), ("takeover", "--")):
            times = np.sort([r[key] for r in rows if r[key] is not None])
            if not times.size:
                continue
            share = np.arange(1, times.size + 1) / len(rows)
            x, y = np.concatenate(([0.0], times)), np.concatenate(([0.0], share))
            axes.step(x, y, style, where="post", color=s.color, label=f"{s.label} {key}")
            drew = True
    axes.set_xlabel("seconds after the failure")
    axes.set_ylabel("share of the MAGs")
    axes.set_ylim(0, 1.05)
    axes.set_xlim(left=0)
    return drew


def _fates(axes: Axes, sources: Sequence[Source]) -> bool:
    bars: list[tuple[str, list[tuple[str, str, int]]]] = []
    for s in sources:
        reg, summary = s.document["registration"], s.document["takeover"]["summary"]
        bars.append((f"{s.label}\nregistration", [(f, c, reg[f]) for f, c in REGISTRATION_FATES]))
        if s.document["takeover"]["failure_at"] is not None:
            fates = [(f, c, summary[f]) for f, c in FAILOVER_FATES]
            bars.append((f"{s.label}\nfailover", fates))
    seen: set[str] = set()
    for row, (_, parts) in enumerate(bars):
        whole = sum(n for _, _, n in parts) or 1
        left = 0.0
        for fate, color, count in parts:
            if not count:
                continue
            width = count / whole
            label = fate.replace("_", " ") if fate not in seen else None
            seen.add(fate)
            axes.barh(row, width, left=left, color=color, height=0.6, label=label)
            if width > 0.08:
                axes.text(left + width / 2, row, f"{count}", ha="center", va="center", fontsize=7)
            left += width
    axes.set_yticks(range(len(bars)), [name for name, _ in bars], fontsize=7)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.0%}"))
    axes.grid(axis="y", visible=False)
    return bool(bars)


def _states(axes: Axes, sources: Sequence[Source]) -> bool:
    labelled: set[str] = set()
    drew = False
    for s, style in zip(sources, itertools.cycle(LINESTYLES)):
        found = _series(s)
        if found is None:
            continue
        ends, _, columns = found
        for state, color in STATE_COLORS.items():
            counts = columns.get(f"sessions_{state}")
            if counts and any(counts):
                label = None if state in labelled else state.replace("_", " ")
                labelled.add(state)
                axes.plot(ends, counts, style, color=color, label=label)
        if len(sources) > 1:
            axes.plot([], [], style, color="black", label=s.label)
        drew = True
    axes.set_xlabel("seconds since the schedule start")
    axes.set_ylabel("sessions")
    axes.set_ylim(bottom=0)
    return drew


def _trials(axes: Axes, sources: Sequence[Source]) -> bool:
    drew = False
    for s in sources:
        trials = s.document["trials"]
        if not trials:
            continue
        number = np.arange(1, len(trials) + 1)
        axes.plot(number, [t["rate"] for t in trials], color=s.color, linewidth=0.8, alpha=0.6)
        for marker, chosen in (
            ("o", [t["ndr"] for t in trials]),
            ("s", [t["pdr"] and not t["ndr"] for t in trials]),
            ("x", [not t["pdr"] for t in trials]),
        ):
            picked = np.flatnonzero(chosen)
            rates = [trials[i]["rate"] for i in picked]
            axes.plot(number[picked], rates, marker, color=s.color, linestyle="none")
        for kind, style in (("ndr", "-"), ("pdr", "--")):
            rate = s.document[kind]["rate"]
            if rate is not None:
                axes.axhline(rate, color=s.color, linestyle=style, linewidth=1)
        axes.plot([], [], color=s.color, label=s.label)
        drew = True
    axes.set_xlabel("trial")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("offered registrations / s")
    axes.set_ylim(bottom=0)
    return drew
