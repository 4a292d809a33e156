"""Restart mode of ``MagEngine`` (``protocol/mag.py``): one LMA without a standby or state sync.

When the LMA fails the MAGs do not switch LMA: a MAG that declared it DOWN (heartbeats missing,
or without heartbeats ``failure_after`` unanswered PBUs in a row) waits for it, its probes going
on, and once the LMA answers again registers every session it held there again. The probe is the
heartbeat Request (RFC 5847); without heartbeats (an LMA without RFC 5847, such as a plain
RFC 5213 one) it is a refresh PBU of the MAG's first registered session every heartbeat interval
(as many messages as the heartbeats would have been), outside the session's own state:
``failure_after`` probes in a row unanswered make the MAG declare the LMA DOWN. An LMA that is
back before then, and says nothing of its restart (no Restart Counter), goes unnoticed: the
MAGs then believe in bindings it lost, and the run reports them not attempted.

Back is the first answer of any kind from the LMA to a waiting MAG, or a Heartbeat Response
with a changed Restart Counter (the LMA restarted faster than the MAG noticed). The sessions
bound there are refreshed (HI 5, their prefix: an LMA that kept the binding refreshes it, one
that lost it opens a new one, RFC 5213 §5.3.2) open-loop, spread at the run's rate over the
MAGs (``spacing`` seconds between two sessions of one MAG), each timed from its intended send
time by the refresh timers of the engine. A changed Restart Counter says the LMA lost its
bindings: those sessions count as rebuilt once accepted (``TakeoverMeter``).

Everything here runs once per failure or probe tick, in Python, for the compiled path and the
reference alike; the answers are taken in from the received columns before the compiled steps.
"""

from __future__ import annotations

import numpy as np

from lmaload.measure.takeover import TakeoverMeter
from lmaload.population import Population
from lmaload.population import SessionState as S
from lmaload.protocol.datagrams import Columns
from lmaload.protocol.events import Event
from lmaload.protocol.mag_config import MagConfig
from lmaload.protocol.mag_heartbeat import HeartbeatTable
from lmaload.protocol.mag_sender import PbuSender
from lmaload.protocol.mag_state import BOUND, MagCounters, Peers, ns
from lmaload.protocol.mag_timers import RowTimers

LMA = 0  # restart mode has one LMA


class LmaRestart:
    """The waiting, probing and re-registering MAGs of restart mode."""

    def __init__(
        self,
        population: Population,
        config: MagConfig,
        peers: Peers,
        sender: PbuSender,
        timers: RowTimers,
        table: HeartbeatTable,
        counters: MagCounters,
        takeover: TakeoverMeter,
        events: list[Event],
        now: float,
    ) -> None:
        self.pop = population
        self.config = config
        self.peers = peers
        self._sender = sender
        self._timers = timers
        self._table = table
        self._counters = counters
        self._takeover = takeover
        self._events = events
        n_mags = len(population.mags)
        self.waiting = np.zeros(n_mags, dtype=bool)
        self._outstanding = np.zeros(n_mags, dtype=bool)
        self._missing = np.zeros(n_mags, dtype=np.int64)
        keys = np.ascontiguousarray(population.mags["addr6"]).view("V16").ravel()
        self._mag_order = np.argsort(keys, kind="stable")
        self._mag_keys = keys[self._mag_order]
        self.probe_interval = config.heartbeat_interval
        self.probe_due = now + self.probe_interval
        schedule = config.schedule
        rate = max([schedule.start_rate, *(s.rate for s in schedule.stages)])
        self.spacing = n_mags / rate if rate > 0 else 0.0

    def heard(self, columns: Columns, now: float, heartbeating: bool) -> None:
        """Everything in ``columns`` from the LMA is an answer to the MAG it is addressed to;
        without heartbeats a waiting MAG that hears one is back."""
        from_lma = np.flatnonzero((columns.src == self.peers.lma_packed[LMA]).all(axis=1))
        if not from_lma.size or not len(self._mag_keys):
            return
        keys = np.ascontiguousarray(columns.dst[from_lma]).view("V16").ravel()
        pos = np.minimum(np.searchsorted(self._mag_keys, keys), len(self._mag_keys) - 1)
        mags = self._mag_order[pos[self._mag_keys[pos] == keys]]
        if not mags.size:
            return
        if columns.arrival is not None:  # the kernel's receive time, when the driver has it
            arrival = columns.arrival[from_lma][self._mag_keys[pos] == keys]
            when = float(np.nanmax(arrival)) if np.isfinite(arrival).any() else now
        else:
            when = now
        mags = np.unique(mags)
        self._outstanding[mags] = False
        self._missing[mags] = 0
        self._takeover.heard(mags, when)
        if not heartbeating:
            for mag in mags[self.waiting[mags]].tolist():
                self.back(mag, when, lost_state=False)

    def down(self, mags: np.ndarray) -> None:
        """The MAGs ``mags`` declared the LMA DOWN: they wait for it."""
        self.waiting[mags] = True

    def back(self, mag: int, now: float, lost_state: bool) -> None:
        """The LMA answered MAG ``mag`` again (``lost_state``: with a changed Restart Counter):
        register its sessions there again, open-loop from ``now``."""
        self.waiting[mag] = False
        self._table.up[mag, LMA] = True  # without heartbeats: unanswered PBUs count afresh
        mns = self.pop.mns
        rows = self.peers.rows_of(mag)
        rows = rows[(mns["lma"][rows] == LMA) & np.isin(mns["state"][rows], BOUND)]
        self._events.append(
            Event(now, "lma_back", {"mag": mag, "sessions": len(rows), "lost_state": lost_state})
        )
        if lost_state:
            self._counters.sessions_invalidated += len(rows)
            self._takeover.invalidated(rows)
        # REGISTERED with the refresh timer at the intended time: the engine's refresh sends it.
        mns["state"][rows] = S.REGISTERED
        intended = ns(now) + np.rint(np.arange(len(rows)) * self.spacing * 1e9).astype(np.int64)
        self._timers.arm(rows, intended)

    def tick(self, now: float) -> np.ndarray:
        """The probe tick due at ``now`` (without heartbeats): a refresh PBU of each MAG's first
        registered session. Returns the MAGs whose probes went unanswered ``failure_after``
        times in a row and were not waiting yet."""
        self.probe_due = now + self.probe_interval
        self._missing += self._outstanding
        down = np.flatnonzero((self._missing >= self.config.failure_after) & ~self.waiting)
        mns = self.pop.mns
        registered = np.flatnonzero((mns["state"] == S.REGISTERED) & (mns["lma"] == LMA))
        mags, first = np.unique(mns["mag"][registered], return_index=True)
        rows = registered[first]
        if rows.size:
            self._sender.probe_pbu(LMA, self.config.lifetime_units, now, rows)
            self._counters.restart_probes_sent += len(rows)
            self._outstanding[mags] = True
        return down
