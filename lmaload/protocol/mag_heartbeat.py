"""RFC 5847 heartbeats of every (MAG, LMA) pair at once, as (n_mags, n_lmas) arrays.

Spec-digest §4 and §8.8 (MAG, per LMA peer): a Request every interval; before sending the next
one an unanswered previous Request counts as missing, and ``missing > MISSING_HEARTBEATS_ALLOWED``
makes the peer unreachable (R23: UP → DOWN); any matching Response resets the count (DOWN → UP).
A Restart Counter different from the one last seen (in a matching or an unsolicited Response)
means the peer restarted and lost its bindings.

A MAG's Requests to all LMAs leave together; the MAGs are spread evenly over the interval in
``groups`` groups (at most one per MAG) that tick together, MAG ``m`` at
``origin + interval·(⌊m·groups / n_mags⌋ / groups + k)``, so the k-th tick is an exact function
of the schedule. Fewer groups than MAGs mean fewer wakeups of the generator (and of the LMAs) for
the same heartbeats.
"""

from __future__ import annotations

import numpy as np

from lmaload.measure.histogram import Histogram

TIME_SLACK = 1e-6  # a due time this close to ``now`` is due (float round trips of the driver)


class HeartbeatTable:
    """Heartbeat state of all (MAG, LMA) pairs."""

    def __init__(
        self,
        n_mags: int,
        n_lmas: int,
        interval: float,
        missing_allowed: int,
        origin: float,
        groups: int | None = None,
    ) -> None:
        shape = (n_mags, n_lmas)
        self.interval = interval
        self.missing_allowed = missing_allowed
        # The schedule (origin + phase + tick * interval per MAG), shared with the compiled step.
        self.origin = origin
        groups = n_mags if groups is None else max(min(groups, n_mags), 1)
        self.phase = interval * (np.arange(n_mags) * groups // max(n_mags, 1)) / max(groups, 1)
        self.tick = np.zeros(n_mags, dtype=np.int64)
        self.seq = np.zeros(shape, dtype=np.uint32)
        self.outstanding = np.zeros(shape, dtype=bool)
        self.missing = np.zeros(shape, dtype=np.int64)
        self.up = np.ones(shape, dtype=bool)
        self.answered = np.zeros(shape, dtype=bool)  # a matching Response ever came
        self.sent_at = np.zeros(shape)
        self.counter = np.zeros(shape, dtype=np.uint32)
        self.counter_known = np.zeros(shape, dtype=bool)
        self.rtt = Histogram()  # µs
        self.missed = 0  # Requests still unanswered when the next one fell due
        self._next_due = float(self._due().min()) if n_mags else None

    def _due(self) -> np.ndarray:
        return self.origin + self.phase + self.tick * self.interval

    def next_due(self) -> float | None:
        return self._next_due

    def set_next_due(self, due: float | None) -> None:
        """The next tick as the compiled steps (``MagStep``), which tick this table, keep it."""
        self._next_due = due

    def fire(self, now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the ticks due at ``now`` (one per MAG; call again while ``next_due() <= now``).
        Returns the MAGs that send Requests now, and the (MAG, LMA) pairs that just went DOWN."""
        mags = np.flatnonzero(self._due() <= now + TIME_SLACK)
        missing = self.missing[mags] + self.outstanding[mags]
        self.missed += int(self.outstanding[mags].sum())
        up = self.up[mags]
        down = up & (missing > self.missing_allowed)
        self.missing[mags] = missing
        self.up[mags] = up & ~down
        self.seq[mags] += np.uint32(1)
        self.outstanding[mags] = True
        self.sent_at[mags] = now
        self.tick[mags] += 1
        self._next_due = float(self._due().min())
        down_mag, down_lma = np.nonzero(down)
        return mags, mags[down_mag], down_lma

    def on_responses(
        self,
        mags: np.ndarray,
        lmas: np.ndarray,
        seqs: np.ndarray,
        unsolicited: np.ndarray,
        counters: np.ndarray,
        has_counter: np.ndarray,
        now: float,
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Responses from LMA ``lmas[i]`` to MAG ``mags[i]``. Returns the pairs that came back UP
        and the pairs whose Restart Counter changed."""
        matched = ~unsolicited & self.outstanding[mags, lmas] & (self.seq[mags, lmas] == seqs)
        # A duplicated Response in the same batch must count once.
        key = mags.astype(np.int64) * self.seq.shape[1] + lmas
        first = np.zeros(len(key), dtype=bool)
        first[np.unique(key, return_index=True)[1]] = True
        m, lm = mags[matched & first], lmas[matched & first]
        self.outstanding[m, lm] = False
        self.answered[m, lm] = True
        self.missing[m, lm] = 0
        self.rtt.record(np.rint((now - self.sent_at[m, lm]) * 1e6).astype(np.int64))
        came_up = ~self.up[m, lm]
        self.up[m, lm] = True
        seen = (matched | unsolicited) & has_counter & first
        sm, sl, sc = mags[seen], lmas[seen], counters[seen]
        changed = self.counter_known[sm, sl] & (self.counter[sm, sl] != sc)
        self.counter[sm, sl] = sc
        self.counter_known[sm, sl] = True
        return (m[came_up], lm[came_up]), (sm[changed], sl[changed])
