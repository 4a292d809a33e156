"""Summaries of measurements for a results document: percentiles over per-MAG values, and a
latency histogram's count, percentiles and encoding."""

from __future__ import annotations

from typing import Any

import numpy as np

from lmaload.measure.histogram import Histogram

PERCENTILES = (50.0, 99.0)


def percentiles_over(values: np.ndarray) -> dict[str, float | None]:
    """p50/p99/max of the finite values (None when there are none)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return {"p50": None, "p99": None, "max": None, "count": 0}
    p50, p99 = np.percentile(finite, PERCENTILES)
    return {"p50": float(p50), "p99": float(p99), "max": float(finite.max()), "count": finite.size}


def latency_summary(histogram: Histogram) -> dict[str, Any]:
    """Count, p50, p99, max and the encoded histogram (µs)."""
    if not histogram.total:
        return {"count": 0, "p50": None, "p99": None, "max": None, "histogram": None}
    return {
        "count": histogram.total,
        "p50": histogram.percentile(50.0),
        "p99": histogram.percentile(99.0),
        "max": histogram.max,
        "histogram": histogram.encode(),
    }
