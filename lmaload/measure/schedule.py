"""Open-loop load: when each initial registration is *meant* to be sent, and how far the generator
trails that plan.

The main job asks for "a target registration rate with ramp stages; each PBU has an intended send
time and latency is measured from it (no coordinated omission). The generator measures its own
lag". ``Schedule`` turns a rate profile into intended send times; ``LagMeter`` records, for
every PBU sent on the schedule, how late it actually left (actual minus intended), so a run whose
generator could not keep up is visible and can be failed (``behind_schedule``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmaload.measure.histogram import Histogram


@dataclass(frozen=True)
class Stage:
    """Change the rate linearly to ``rate`` (registrations/s) over ``duration`` seconds; a zero
    duration is a step."""

    duration: float
    rate: float


@dataclass(frozen=True)
class Schedule:
    """A rate profile starting at ``start_rate``: the ``stages`` in order (k6-style ramps), then
    the last rate held for ever. Registration ``k`` (0-based) is due when the integral of the rate
    since the start reaches ``k``."""

    stages: tuple[Stage, ...] = ()
    start_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.start_rate < 0 or any(s.duration < 0 or s.rate < 0 for s in self.stages):
            raise ValueError("rates and durations must not be negative")

    @classmethod
    def constant(cls, rate: float) -> Schedule:
        return cls((), rate)

    @property
    def total(self) -> float:
        """Registrations due in all, when the profile ends at rate 0 (``inf`` otherwise)."""
        if (self.stages[-1].rate if self.stages else self.start_rate) > 0:
            return float("inf")
        total, rate = 0.0, self.start_rate
        for stage in self.stages:
            total += (rate + stage.rate) / 2 * stage.duration
            rate = stage.rate
        return total

    def offsets(self, count: int) -> np.ndarray:
        """Intended send times of registrations 0..count-1, seconds after the start."""
        r0, r1, durations = [], [], []
        rate = self.start_rate
        for stage in self.stages:
            if stage.duration > 0:
                r0.append(rate)
                r1.append(stage.rate)
                durations.append(stage.duration)
            rate = stage.rate
        r0.append(rate)  # the hold after the last stage
        r1.append(rate)
        durations.append(np.inf)
        r0_a, r1_a, dur = np.array(r0), np.array(r1), np.array(durations)
        finite = np.isfinite(dur)
        counts = np.zeros(len(dur))  # registrations due before each segment
        counts[1:] = np.cumsum((r0_a[finite] + r1_a[finite]) / 2 * dur[finite])
        starts = np.zeros(len(dur))
        starts[1:] = np.cumsum(dur[finite])
        k = np.arange(count, dtype=np.float64)
        if count and rate == 0 and k[-1] >= counts[-1]:
            raise ValueError(f"the schedule ends at rate 0 before {count} registrations")
        seg = np.searchsorted(counts, k, side="right") - 1
        rem = k - counts[seg]
        a = np.where(finite[seg], (r1_a[seg] - r0_a[seg]) / (2 * np.where(finite, dur, 1)[seg]), 0)
        b = r0_a[seg]
        # Root of a·τ² + b·τ = rem, in the form that stays finite when a or b is 0.
        root = b + np.sqrt(b * b + 4 * a * rem)
        tau = np.divide(2 * rem, root, out=np.zeros_like(rem), where=rem > 0)
        return starts[seg] + tau


class LagMeter:
    """How far actual sends trail intended ones: a histogram of the lag (µs), its maximum, the
    largest lag of the latest sends (``last``), and the share of sends later than ``tolerance``
    seconds."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.histogram = Histogram()
        self.max = 0.0
        self.last = 0.0
        self.sent = 0
        self.late = 0

    def record(self, lags: np.ndarray) -> None:
        """Record lags in seconds (negative values — sent early by less than the timer slack —
        count as 0)."""
        if not lags.size:
            return
        lags = np.maximum(lags, 0.0)
        self.histogram.record(np.rint(lags * 1e6).astype(np.int64))
        self.count(lags.size, float(lags.max()), int((lags > self.tolerance).sum()))

    def count(self, sent: int, last: float, late: int) -> None:
        """``sent`` sends whose lags the histogram already holds: ``last`` the largest of them
        (seconds), ``late`` of them later than ``tolerance``."""
        self.last = last
        self.max = max(self.max, last)
        self.sent += sent
        self.late += late

    @property
    def behind_schedule(self) -> float:
        """Fraction of scheduled sends that left more than ``tolerance`` late (0 when none)."""
        return self.late / self.sent if self.sent else 0.0
