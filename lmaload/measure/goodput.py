"""Goodput the way a load test must report it: completions counted per second from the first
scheduled send, and the achieved rate taken over the *scheduled window*.

The window runs from the first scheduled send to the later of the last scheduled send and the
end of the phase (its wait for late answers included). A run that stalls therefore reports the
rate it really delivered, not the rate of its first good second: completions divided by the time
it was asked to work and the time it then took.
"""

from __future__ import annotations

import math


class PerSecond:
    """Completions per whole second since ``start`` (Unix seconds), as a growing list."""

    def __init__(self, start: float = 0.0) -> None:
        self.start = start
        self.counts: list[int] = []

    def restart(self, start: float) -> None:
        """Count from ``start`` on (before anything was recorded)."""
        self.start = start
        self.counts.clear()

    def record(self, now: float, count: int) -> None:
        """``count`` completions at ``now`` (anything before the start goes to second 0)."""
        if count <= 0:
            return
        second = max(0, math.floor(now - self.start))
        if second >= len(self.counts):
            self.counts.extend([0] * (second + 1 - len(self.counts)))
        self.counts[second] += count

    @property
    def total(self) -> int:
        return sum(self.counts)

    def until(self, end: float) -> list[int]:
        """The counts of the seconds that began before ``end``."""
        return self.counts[: max(0, math.ceil(end - self.start))]


def scheduled_window(first_send: float, last_scheduled: float, end: float) -> float:
    """Seconds from the first scheduled send to the later of the last scheduled send and the
    phase's ``end``."""
    return max(last_scheduled, end) - first_send


def achieved_rate(completed: int, window: float) -> float:
    """Completions per second over ``window`` (0 for an empty window)."""
    return completed / window if window > 0 else 0.0
