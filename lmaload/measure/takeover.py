"""What a failover cost, per MAG: when the MAG noticed, when its sessions were back, and how many
survived.

The driver (or a test) names the failure instant (``mark_failure``); from then on the MAG engine
reports heartbeat DOWN transitions, accepted and rejected PBAs and restart-counter invalidations
here. Definitions (the main job's):

* detection time — failure instant to the first DOWN the MAG declared for any LMA (R23);
* takeover time — failure instant to the last accepted PBA *from the taking-over LMA* (hard switch:
  an LMA other than the session's anchor at the failure; virtual switch: the shared LMAA) for the
  MAG's sessions, once none of them is still pending;
* at risk — bound and acknowledged at the failure (of the MAGs whose path failed, for a cut);
  every session at risk ends the measurement in exactly one of four fates:
* kept — accepted again by the taking-over LMA with the same prefix; lost — rejected by it,
  given a different prefix, given up after every retransmission, or invalidated by a Restart
  Counter change (RFC 5847 §3.4, R30); pending — its MAG sent the taking-over LMA a PBU for it
  that is still unanswered; not attempted — its MAG sent the taking-over LMA nothing for it
  (the MAG did not detect the failure, or had nowhere to go);
* stayed — bound at the failure and accepted again (refreshed) by the same LMA after it: the
  sessions a fault of some MAGs' path left with their LMA (seed §5.2).

A restart (``mark_failure(..., rebuild=True)``: one LMA, no standby, the MAGs register again with
it) has a fifth fate, and the "taking-over LMA" is the restarted one:

* rebuilt — accepted again as a new binding: the MAG knew the LMA lost it (a changed Restart
  Counter: ``invalidated`` marks it to be rebuilt, not lost) or the LMA gave it a new prefix;
  a refresh accepted with the same prefix is kept (an LMA that rebuilt the binding with the
  prefix the PBU asked for cannot be told apart on the wire);
* outage — per MAG, the last answer of any kind (PBA, Heartbeat) from the LMA before the MAG
  detected the failure to the first answer after it (``heard``: the driver's receive times);
  re-registration time — the takeover time above: failure instant to the MAG's last session
  accepted again, once none is pending.
"""

from __future__ import annotations

import numpy as np

UNAFFECTED, PENDING, KEPT, LOST, REBUILT = 0, 1, 2, 3, 4


class TakeoverMeter:
    """Fate of each session at risk in one failure, and per-MAG detection/takeover times."""

    def __init__(self, session_mags: np.ndarray, n_mags: int) -> None:
        self._mags = session_mags.astype(np.int64)
        self._n_mags = n_mags
        self.failure_at: float | None = None
        self.fate = np.zeros(len(session_mags), dtype=np.int8)
        self._anchor = np.full(len(session_mags), -1, dtype=np.int16)
        self._recovered_at = np.full(len(session_mags), np.nan)
        self._stayed = np.zeros(len(session_mags), dtype=bool)
        self._attempted = np.zeros(len(session_mags), dtype=bool)
        self._detected_at = np.full(n_mags, np.nan)
        self._rebuild = False
        self._rebuilding = np.zeros(len(session_mags), dtype=bool)
        self._heard_at = np.full(n_mags, np.nan)  # the last answer from the LMA
        self._silent_from = np.full(n_mags, np.nan)  # the last answer before detection
        self._back_at = np.full(n_mags, np.nan)  # the first answer after detection
        self.registered_after = 0  # initial registrations accepted after the failure

    def mark_failure(
        self, when: float, at_risk: np.ndarray, anchors: np.ndarray, rebuild: bool = False
    ) -> None:
        """Sessions ``at_risk`` (bool per session) anchored at ``anchors`` are measured from
        ``when`` on; a previous failure's measurements are discarded. ``rebuild``: a restart
        (see the module docstring)."""
        self.failure_at = when
        self._rebuild = rebuild
        self._rebuilding[:] = False
        self._silent_from[:] = np.nan
        self._back_at[:] = np.nan
        self.fate[:] = np.where(at_risk, PENDING, UNAFFECTED)
        self._anchor[:] = anchors
        self._recovered_at[:] = np.nan
        self._stayed[:] = False
        self._attempted[:] = False
        self._detected_at[:] = np.nan
        self.registered_after = 0

    def detected(self, mags: np.ndarray, now: float) -> None:
        """The MAGs ``mags`` declared an LMA unreachable at ``now``."""
        if self.failure_at is None or now < self.failure_at:
            return
        first = mags[np.isnan(self._detected_at[mags])]
        self._detected_at[first] = now
        self._silent_from[first] = self._heard_at[first]

    def heard(self, mags: np.ndarray, now: float) -> None:
        """Answers from the LMA reached the MAGs ``mags`` at ``now`` (after the engine took
        them in: a Restart Counter change they carry is detected first)."""
        back = mags[np.isfinite(self._detected_at[mags]) & np.isnan(self._back_at[mags])]
        self._back_at[back] = now
        self._heard_at[mags] = now

    def _moved(self, rows: np.ndarray, lmas: np.ndarray, any_lma: bool, now: float) -> np.ndarray:
        if self.failure_at is None or now < self.failure_at:
            return np.zeros(len(rows), dtype=bool)
        moved = np.ones(len(rows), dtype=bool) if any_lma else lmas != self._anchor[rows]
        return moved & (self.fate[rows] == PENDING)

    def sent(self, rows: np.ndarray, lmas: np.ndarray, now: float, any_lma: bool) -> None:
        """PBUs for sessions ``rows`` went to LMAs ``lmas`` at ``now``: those to the taking-over
        LMA are attempts."""
        if self.failure_at is None or now < self.failure_at:
            return
        self._attempted[rows[self._moved(rows, lmas, any_lma, now)]] = True

    def registered(self, count: int, now: float) -> None:
        """``count`` initial registrations (not sessions at risk) were accepted at ``now``."""
        if self.failure_at is not None and now >= self.failure_at:
            self.registered_after += count

    def gave_up(self, rows: np.ndarray) -> None:
        """The MAG gave sessions ``rows`` up (no answer through every retransmission)."""
        rows = rows[self.fate[rows] == PENDING]
        self.fate[rows] = LOST

    def accepted(
        self,
        rows: np.ndarray,
        lmas: np.ndarray,
        prefix_changed: np.ndarray,
        now: float,
        any_lma: bool,
    ) -> None:
        """PBA 0 at ``now`` from LMA ``lmas[i]`` for session ``rows[i]``. ``any_lma``: every LMA
        counts as the taking-over one (virtual switch)."""
        sel = self._moved(rows, lmas, any_lma, now)
        new = prefix_changed[sel] | self._rebuilding[rows[sel]]
        self.fate[rows[sel]] = np.where(new, REBUILT if self._rebuild else LOST, KEPT)
        self._recovered_at[rows[sel]] = now
        if self.failure_at is not None and now >= self.failure_at:
            same = (lmas == self._anchor[rows]) & (self.fate[rows] <= PENDING)
            self._stayed[rows[same]] = True

    def rejected(self, rows: np.ndarray, lmas: np.ndarray, now: float, any_lma: bool) -> None:
        """A final rejection (≥128) of the taking-over LMA."""
        self.fate[rows[self._moved(rows, lmas, any_lma, now)]] = LOST

    def invalidated(self, rows: np.ndarray) -> None:
        """Sessions dropped because their LMA's Restart Counter changed: lost, or in a restart
        to be rebuilt."""
        rows = rows[self.fate[rows] == PENDING]
        if self._rebuild:
            self._rebuilding[rows] = True
        else:
            self.fate[rows] = LOST

    # --- results, one value per MAG ----------------------------------------------------------

    def _per_mag(self, fate: int) -> np.ndarray:
        return np.bincount(self._mags[self.fate == fate], minlength=self._n_mags)

    @property
    def kept(self) -> np.ndarray:
        return self._per_mag(KEPT)

    @property
    def lost(self) -> np.ndarray:
        return self._per_mag(LOST)

    @property
    def rebuilt(self) -> np.ndarray:
        return self._per_mag(REBUILT)

    @property
    def pending(self) -> np.ndarray:
        """Sessions whose attempt at the taking-over LMA is still unanswered."""
        return np.bincount(
            self._mags[(self.fate == PENDING) & self._attempted], minlength=self._n_mags
        )

    @property
    def not_attempted(self) -> np.ndarray:
        """Sessions at risk for which the MAG sent the taking-over LMA nothing."""
        return np.bincount(
            self._mags[(self.fate == PENDING) & ~self._attempted], minlength=self._n_mags
        )

    @property
    def unresolved(self) -> np.ndarray:
        """Sessions at risk neither kept nor lost: pending or not attempted."""
        return self._per_mag(PENDING)

    @property
    def at_risk(self) -> np.ndarray:
        return np.bincount(self._mags[self.fate != UNAFFECTED], minlength=self._n_mags)

    @property
    def stayed(self) -> np.ndarray:
        return np.bincount(self._mags[self._stayed], minlength=self._n_mags)

    @property
    def detection(self) -> np.ndarray:
        """Seconds from the failure to detection per MAG (NaN: not detected)."""
        return self._detected_at - (self.failure_at if self.failure_at is not None else np.nan)

    @property
    def outage(self) -> np.ndarray:
        """Seconds from the last answer before detection to the first after it, per MAG (NaN:
        not detected, nothing heard before, or nothing heard since)."""
        return self._back_at - self._silent_from

    @property
    def takeover(self) -> np.ndarray:
        """Seconds from the failure to the MAG's last recovering PBA (NaN: nothing at risk, or
        sessions still pending)."""
        last = np.full(self._n_mags, -np.inf)
        done = np.isfinite(self._recovered_at)
        np.maximum.at(last, self._mags[done], self._recovered_at[done])
        last[(self.unresolved > 0) | ~np.isfinite(last)] = np.nan
        return last - (self.failure_at if self.failure_at is not None else np.nan)
