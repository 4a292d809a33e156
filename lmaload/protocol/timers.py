"""A timer wheel for sans-IO engines: named deadlines, re-armable and cancellable, the earliest
one always at hand. Keys are any hashable value naming what the timer is for."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable


class Timers:
    """Deadlines by key. Arming a key again moves its deadline; stale heap entries are skipped."""

    def __init__(self) -> None:
        self._due: dict[Hashable, float] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._order = itertools.count()

    def arm(self, key: Hashable, when: float) -> None:
        self._due[key] = when
        heapq.heappush(self._heap, (when, next(self._order), key))

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
