"""Session timers of the MAG engine without a scan of the population per event.

The ``t_due`` column of ``population.MN_DTYPE`` stays the truth (``NO_TIMER`` when a session has
no timer). Each arming adds one batch — its rows sorted by deadline — to a heap keyed by the
batch's earliest deadline; a row re-armed or disarmed later leaves a stale copy behind, which is
recognised (its recorded deadline no longer equals the column) and dropped when its batch comes
due. Cost: O(batch · log) per arming and per firing, whatever the population size.
"""

from __future__ import annotations

import heapq
import itertools

import numpy as np

NO_TIMER = np.iinfo(np.int64).max


class RowTimers:
    """Deadlines (ns) of rows of ``due``, a view of the ``t_due`` column."""

    def __init__(self, due: np.ndarray) -> None:
        self._due = due
        self._due[:] = NO_TIMER
        self._heap: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        self._order = itertools.count()

    def arm(self, rows: np.ndarray, deadlines: np.ndarray) -> None:
        if not rows.size:
            return
        self._due[rows] = deadlines
        order = np.argsort(deadlines, kind="stable")
        rows, deadlines = rows[order], deadlines[order]
        heapq.heappush(self._heap, (int(deadlines[0]), next(self._order), rows, deadlines))

    def disarm(self, rows: np.ndarray) -> None:
        self._due[rows] = NO_TIMER

    def next(self) -> int | None:
        """The earliest deadline (possibly of a stale copy: an early wake-up finds nothing)."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, limit: int) -> np.ndarray:
        """Rows whose deadline is at or before ``limit``; their timers stay in the column until
        re-armed or disarmed."""
        fired = []
        heap = self._heap
        while heap and heap[0][0] <= limit:
            _, _, rows, deadlines = heapq.heappop(heap)
            k = int(np.searchsorted(deadlines, limit, side="right"))
            live = self._due[rows[:k]] == deadlines[:k]
            fired.append(rows[:k][live])
            if k < len(rows):
                heapq.heappush(
                    heap, (int(deadlines[k]), next(self._order), rows[k:], deadlines[k:])
                )
        return np.unique(np.concatenate(fired)) if fired else np.zeros(0, dtype=np.int64)
