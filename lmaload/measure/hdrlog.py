"""HdrHistogram interval logs: the text format of HdrHistogram's ``HistogramLogWriter`` (log
format version 1.3), which its ``HistogramLogReader`` (Java, Python's ``hdrhistogram``) and
HistogramLogAnalyzer read.

The log opens with the format version, the start time and the base time the interval timestamps
are relative to, and the legend; then one line per interval and tag::

    Tag=registration,0.000,1.000,12.345,HISTFAAAA...

(start relative to the base time, length, both in seconds; the interval's maximum divided by
``max_value_unit_ratio``; the interval histogram in the V2 compressed encoding). Each interval
histogram is the difference of a cumulative histogram and its copy at the previous interval.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TextIO

from lmaload.measure.histogram import Histogram

FORMAT_VERSION = "1.3"
LEGEND = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'


class HdrLogWriter:
    """Writes interval histograms of the cumulative ``histograms`` (by tag) to ``out``, with
    times relative to ``base`` (Unix seconds). Tags must not hold commas or white space.
    ``max_value_unit_ratio`` scales the Interval_Max column: 1000 shows µs values in ms."""

    def __init__(
        self,
        out: TextIO,
        base: float,
        histograms: Mapping[str, Histogram],
        max_value_unit_ratio: float = 1000.0,
        comment: str = "",
    ) -> None:
        if any("," in tag or tag.split() != [tag] for tag in histograms):
            raise ValueError("a tag holds a comma or white space")
        self.out = out
        self.base = base
        self.ratio = max_value_unit_ratio
        self._histograms = histograms
        self._before = {tag: h.copy() for tag, h in histograms.items()}
        when = datetime.datetime.fromtimestamp(base, datetime.UTC).isoformat(timespec="seconds")
        if comment:
            out.write(f"#{comment}\n")
        out.write(f"#[Histogram log format version {FORMAT_VERSION}]\n")
        out.write(f"#[StartTime: {base:.3f} (seconds since epoch), {when}]\n")
        out.write(f"#[BaseTime: {base:.3f} (seconds since epoch)]\n")
        out.write(LEGEND + "\n")

    def interval(self, begin: float, end: float) -> None:
        """One line per tag: what each histogram recorded since the previous interval, as the
        interval from ``begin`` to ``end`` (Unix seconds)."""
        for tag, histogram in self._histograms.items():
            interval = histogram.since(self._before[tag])
            self._before[tag] = histogram.copy()
            self.out.write(
                f"Tag={tag},{begin - self.base:.3f},{end - begin:.3f},"
                f"{interval.max / self.ratio:.3f},{interval.encode()}\n"
            )
