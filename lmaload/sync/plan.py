"""The records a sync run streams, as columns: record ``k`` is a ``kind`` (create, update or
delete) of the session in population row ``row[k]`` with PBCI sequence number ``seq[k]``.

Every session is created once, in row order. Updates and deletes are spread over the stream at
random (seeded) positions after their session's create; a deleted session gets no record after
its delete, so ``live`` — the sessions the standby must hold at the end — is every row that was
not deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CREATE, UPDATE, DELETE = 0, 1, 2
KIND_NAMES = ("create", "update", "delete")


@dataclass(frozen=True)
class SyncPlan:
    """The record columns (see the module docstring) and how many records of each kind."""

    row: np.ndarray  # int64
    kind: np.ndarray  # uint8
    seq: np.ndarray  # uint16
    live: np.ndarray  # bool per population row
    counts: np.ndarray  # records by kind, (3,) int64

    def __len__(self) -> int:
        return len(self.row)


def build_plan(sessions: int, update_ratio: float, delete_ratio: float, seed: int) -> SyncPlan:
    """``sessions`` creates, ``round(update_ratio * sessions)`` updates (any session, possibly
    several times) and ``round(delete_ratio * sessions)`` deletes (distinct sessions)."""
    if update_ratio < 0 or not 0 <= delete_ratio <= 1:
        raise ValueError("update ratio >= 0 and delete ratio in [0, 1]")
    rng = np.random.default_rng(seed)
    n = sessions
    deleted = rng.choice(n, round(delete_ratio * n), replace=False).astype(np.int64)
    # Positions on a line where create r sits at r: a delete after its create, an update between
    # its create and its session's end (its delete, or the end of the stream).
    end = np.full(n, float(n))
    delete_key = deleted + (n - deleted) * (1.0 - rng.random(len(deleted)))
    end[deleted] = delete_key
    updated = rng.integers(0, n, round(update_ratio * n)) if n else np.zeros(0, np.int64)
    update_key = updated + (end[updated] - updated) * rng.random(len(updated))
    keys = np.concatenate([np.arange(n, dtype=float), update_key, delete_key])
    kinds = np.concatenate(
        [
            np.full(n, CREATE, np.uint8),
            np.full(len(updated), UPDATE, np.uint8),
            np.full(len(deleted), DELETE, np.uint8),
        ]
    )
    rows = np.concatenate([np.arange(n, dtype=np.int64), updated, deleted])
    order = np.lexsort((kinds, keys))
    rows, kinds = rows[order], kinds[order]
    # Sequence number: 1 + the record's rank among its session's records.
    by_row = np.argsort(rows, kind="stable")
    sorted_rows = rows[by_row]
    starts = np.ones(len(rows), dtype=bool)
    starts[1:] = sorted_rows[1:] != sorted_rows[:-1]
    positions = np.arange(len(rows))
    rank = positions - np.maximum.accumulate(np.where(starts, positions, 0))
    seq = np.empty(len(rows), dtype=np.uint16)
    seq[by_row] = ((1 + rank) & 0xFFFF).astype(np.uint16)
    live = np.ones(n, dtype=bool)
    live[deleted] = False
    counts = np.bincount(kinds, minlength=3).astype(np.int64)
    return SyncPlan(rows, kinds, seq, live, counts)
