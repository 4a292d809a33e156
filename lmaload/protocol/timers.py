"""A timer wheel for sans-IO engines: named deadlines, re-armable and cancellable, the earliest
one always at hand. Keys are any hashable value naming what the timer is for."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable

# Stale heap entries (cancelled or moved deadlines) allowed beyond the armed ones before a sweep.
SWEEP_SLACK = 64


class Timers:
    """Deadlines by key. Arming a key again moves its deadline; stale heap entries are skipped,
    and swept out when they outnumber the armed ones: left behind a deadline far ahead they
    would otherwise all be popped when it fires (an LMA cancelling two timers per SS-REP popped
    25 000 of them, 13 ms, at every one-second HA-HELLO)."""

    def __init__(self) -> None:
        self._due: dict[Hashable, float] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._order = itertools.count()

    def arm(self, key: Hashable, when: float) -> None:
        due = self._due
        due[key] = when
        heap = self._heap
        heapq.heappush(heap, (when, next(self._order), key))
        if len(heap) > 2 * len(due) + SWEEP_SLACK:
            self._heap = [entry for entry in heap if due.get(entry[2]) == entry[0]]
            heapq.heapify(self._heap)

    def cancel(self, key: Hashable) -> None:
        self._due.pop(key, None)

    def due(self, key: Hashable) -> float | None:
        return self._due.get(key)

    def next(self) -> float | None:
        """The earliest armed deadline, or None."""
        heap = self._heap
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> Hashable | None:
        """Disarm and return one key whose deadline is at or before ``now`` (earliest first)."""
        when = self.next()
        if when is None or when > now:
            return None
        _, _, key = heapq.heappop(self._heap)
        del self._due[key]
        return key
