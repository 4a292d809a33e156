"""A run's per-second time series, recorded while it goes on (like SIPp's ``-trace_stat``).

``SeriesRecorder`` is given plain things by its driver: the schedule's intended send offsets,
a cumulative latency histogram, and at each sample the cumulative counters and the session
state column. Each sample closes an interval (one second on the driver's grid, the last one
shorter): it stores the interval's end (seconds since the schedule start), the scheduled sends
that fell due in it (offered), the counters' increments, the latency's p50 and p99 over the
interval (the difference of the cumulative histogram and its copy at the previous sample), and
the sessions in each state at its end; and it writes the interval to an HdrHistogram log when
it has one. Its CPU time is kept (``recording_seconds``): about 0.4 ms a sample for 100 000
sessions, 3 ms with the log (three histograms encoded a second).

The series is columnar: ``columns`` maps each name to one value per interval.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import numpy as np

from lmaload.measure.hdrlog import HdrLogWriter
from lmaload.measure.histogram import Histogram

INTERVAL = 1.0  # seconds


class SeriesRecorder:
    """Samples from ``start`` (Unix seconds) on, every ``INTERVAL``: the driver calls ``sample``
    once ``next_at`` has come, and once more at the end. ``offsets`` are the intended sends in
    seconds after ``start`` (sorted), ``totals`` the counters at ``start``, ``states`` the names
    of the session states by value."""

    def __init__(
        self,
        start: float,
        offsets: np.ndarray,
        totals: Mapping[str, int],
        latency: Histogram,
        states: Sequence[str],
        log: HdrLogWriter | None = None,
    ) -> None:
        self.start = start
        self.next_at = start + INTERVAL
        self._offsets = offsets
        self._totals = {"offered": 0, **totals}
        self._latency = latency
        self._latency_before = latency.copy()
        self._states = [f"sessions_{name}" for name in states]
        self._then = start
        self.log = log
        self.columns: dict[str, list[Any]] = {
            name: []
            for name in (
                "time",
                *self._totals,
                "latency_p50_us",
                "latency_p99_us",
                *self._states,
            )
        }
        self.recording_seconds = 0.0

    def sample(self, now: float, totals: Mapping[str, int], states: np.ndarray) -> None:
        """Close the interval ending at ``now`` (nothing when none has passed): ``totals`` are
        the cumulative counters, ``states`` the state of every session."""
        if now <= self._then:
            return
        began = time.process_time()
        columns = self.columns
        columns["time"].append(round(now - self.start, 6))
        offered = int(np.searchsorted(self._offsets, now - self.start, side="right"))
        for name, total in {"offered": offered, **totals}.items():
            columns[name].append(total - self._totals[name])
            self._totals[name] = total
        interval = self._latency.since(self._latency_before)
        self._latency_before = self._latency.copy()
        empty = not interval.total
        columns["latency_p50_us"].append(None if empty else interval.percentile(50.0))
        columns["latency_p99_us"].append(None if empty else interval.percentile(99.0))
        counts = np.bincount(states, minlength=len(self._states)).tolist()
        for name, count in zip(self._states, counts, strict=False):
            columns[name].append(count)
        if self.log is not None:
            self.log.interval(self._then, now)
        self._then = now
        # The next second of the grid: an overrun slice does not shift the grid.
        self.next_at = self.start + INTERVAL * (math.floor((now - self.start) / INTERVAL) + 1)
        self.recording_seconds += time.process_time() - began

    def document(self) -> dict[str, Any]:
        """The results document's ``series``."""
        return {
            "start": self.start,
            "interval": INTERVAL,
            "recording_seconds": self.recording_seconds,
            "columns": self.columns,
        }


def write_csv(series: dict[str, Any], out: TextIO) -> None:
    """The series as CSV: a header row of the column names, then a row per interval (an empty
    field where a value is None)."""
    columns = series["columns"]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
