"""The emulated MAGs, sans-IO and vectorised: every mobile node of a population is one row of
numpy columns (``population.MN_DTYPE``), PBUs and heartbeats are encoded and PBAs decoded in bulk
(``lmaload.bulk``); there is no Python object per session.

Per session (spec-digest §8.8, ``state`` column): ``IDLE → REGISTERING`` (PBU at the intended
send time of the open-loop schedule; retransmitted with a new sequence number and Timestamp, and
HI 4 instead of 1, after INITIAL_BINDACK_TIMEOUT 1 s, doubling to MAX_BINDACK_TIMEOUT 32 s, §3.7)
``→ REGISTERED`` (the assigned prefix from the PBA in ``hnp``/``hnp_len``) ``→ REFRESHING`` (HI 5,
``refresh_margin`` before expiry) ``→ REGISTERED``. A PBU still unanswered after
``max_retransmissions`` retransmissions ends the session in ``GIVEN_UP``. PBA status reactions
(§3.4): 157 re-register; 156 resynchronise the clock and retry; 135 (sequence number out of
window) continue from the sequence number the PBA carries, the LMA's last accepted one (RFC 6275
§11.7.1; matched whatever its sequence number, counted as a quirk); 155 retry with ALL_ZERO; 153
to a failover PBU (the standby has no synced state, §8.5) start a new session there; 152 and every
other code ≥128 end in ``FAILED``, counted by status. A PBA is matched to its session by the
MN-ID's ``mn_id``, the sequence number of any PBU of the attempt and the LMA it was sent to;
anything else (stale, duplicate) is ignored.

Per (MAG, LMA): RFC 5847 heartbeats (``HeartbeatTable``, R23); a changed Restart Counter
invalidates the sessions anchored at that LMA, which register again from scratch (lost). Without
heartbeats (``MagConfig.heartbeats``, for LMAs without RFC 5847) a MAG declares an LMA DOWN after
``failure_after`` of its PBU (re)transmissions to it in a row went unanswered (any PBA matched
from it starts the count again), or on an HA Switch; before the schedule starts each LMA is
asked for a PBA (the first MN registered for 4 s, de-registered once answered; again every
``initial_bindack_timeout``) until it answers.

Hard switch (seed Figure 2, §8.4): when the LMA of a MAG's sessions goes DOWN, each of them sends a
PBU with HI 5 (R33), its assigned prefix and an LFI naming the failed LMA to the other LMA; an HA
Switch (MH 12, §8.6, R28) does the same towards the address it carries, for the sessions anchored
at the LMA its LFI names (without LFI: every session not already there). Restart mode: one LMA, no
standby; a MAG that lost it waits and probes until it answers, then registers its sessions there
again (``LmaRestart``, ``mag_restart``). Virtual switch (§8.7):
one LMAA, nothing to do but keep refreshing; heartbeats tell whether the LMA restarted (and with
``refresh_on_recovery`` the sessions are refreshed as soon as the LMAA answers again).

Two paths do the same: this module's numpy code is the reference (``compiled=False``); by default
the per-wakeup steps — heartbeat tick and responses, PBA matching and acceptance, PBU bookkeeping,
the session timers — run compiled (``lmaload/_ext/mag_step``, ``ext/mag_step.pyx``), and only
what happens rarely (status ≥ 128, an LMA down, up or restarted, a probe from an LMA, an HA
Switch, failover) comes back to the reference code.

Measurements: latency from the *intended* send time (open loop, no coordinated omission) per PBU
kind, the generator's lag behind its schedule, PBA status counts, heartbeat RTT, and the failover
measurements of ``lmaload.measure.takeover`` for the instant a driver names with
``mark_failure``.

Collaborators, each in a module of its own: ``PbuSender`` (``mag_sender``) sends the PBUs and
makes the transitions that end in one; ``LmaLiveness`` (``mag_liveness``) runs the heartbeats,
the HA Switch and Binding Error handling and the failovers they call for; ``mag_state`` holds the
counters, the state groups and ``Peers`` (addresses and indices). This module keeps the schedule,
the session timers, the PBAs and the start-up probe, and the compiled path's glue.
"""

from __future__ import annotations

import numpy as np

from lmaload._ext.mag_step import MagStep, RowHeap
from lmaload.bulk import NO_MN_ID, decode_pbas, nai_index
from lmaload.measure.goodput import PerSecond
from lmaload.measure.histogram import Histogram
from lmaload.measure.schedule import LagMeter
from lmaload.measure.takeover import TakeoverMeter
from lmaload.population import Population
from lmaload.population import SessionState as S
from lmaload.protocol.datagrams import Columns, Datagram, Datagrams
from lmaload.protocol.events import Event
from lmaload.protocol.mag_compiled import CompiledPath
from lmaload.protocol.mag_config import MagConfig
from lmaload.protocol.mag_heartbeat import TIME_SLACK, HeartbeatTable
from lmaload.protocol.mag_liveness import LmaLiveness
from lmaload.protocol.mag_restart import LmaRestart
from lmaload.protocol.mag_sender import PbuSender
from lmaload.protocol.mag_state import (
    AWAITING_PBA,
    BOUND,
    KEEPS_BINDING,
    LATENCY_KIND,
    MAX_IMMEDIATE_RETRIES,
    NO_LFI,
    RESYNC,
    RETRY_NOW,
    SLACK_NS,
    MagCounters,
    Peers,
    ns,
)
from lmaload.protocol.mag_timers import RowTimers
from lmaload.protocol.peer_quirks import (
    HNP_ALL_ZERO,
    HNP_DIFFERS,
    SEQUENCE_RESYNC,
    malformed,
    malformed_reason,
)
from lmaload.wire import codepoints as cp

__all__ = ["LATENCY_KIND", "MagConfig", "MagCounters", "MagEngine"]

UNSETTLED = (S.IDLE, S.REGISTERING)  # waiting to be sent or answered its initial registration


class MagEngine(CompiledPath):
    """All MAGs of ``population`` (each with its Proxy-CoA ``mags['addr6']``), driven like
    ``LmaEngine``: ``receive(batch, now)``, ``handle_timer(now)`` when ``next_timer()`` is due,
    ``datagrams_to_send()``. The engine owns the population's signalling columns.
    ``compiled=False`` runs the reference path (see the module docstring)."""

    def __init__(
        self,
        population: Population,
        config: MagConfig,
        now: float,
        schedule_start: float | None = None,
        compiled: bool = True,
    ) -> None:
        self.pop = population
        self.config = config
        mns = population.mns
        n_mags = len(population.mags)
        self.peers = Peers(population, config.lmas)
        n_lmas = len(self.peers.lmas)
        self._id_order = np.argsort(mns["mn_id"], kind="stable")
        self._ids_sorted = mns["mn_id"][self._id_order]
        self._nais = None if population.nais is None else nai_index(population.nais, mns["mn_id"])
        self._lfi = np.full(len(mns), NO_LFI, dtype=np.int8)  # LMA named in the failover PBU
        # The LMA each MAG registers new sessions with: the one it failed over to, once it did
        # (the schedule goes on through a failover).
        self._mag_lma = np.zeros(n_mags, dtype=np.uint8)
        self._unanswered = np.zeros((n_mags, n_lmas), dtype=np.int64)  # PBUs in a row
        self._pba_from = np.zeros(n_lmas, dtype=bool)  # before the schedule starts
        self._probe_due: float | None = None if config.heartbeats != "off" else now
        self._deregister_at = config.deregister_at
        self._timers = RowHeap(mns) if compiled else RowTimers(mns["t_due"])
        self._unsettled = 0  # a row that waited for its initial registration at the last look

        self.counters = MagCounters()
        self.events: list[Event] = []
        self.latency = {kind: Histogram() for kind in LATENCY_KIND.values()}  # µs
        self.lag = LagMeter(config.lag_tolerance)
        self.registrations = PerSecond()  # initial registrations accepted, per second of schedule
        self.last_settled: float | None = None  # a registration last accepted, rejected, given up
        self.takeover = TakeoverMeter(mns["mag"], n_mags)
        self.heartbeats = HeartbeatTable(
            n_mags,
            n_lmas,
            config.heartbeat_interval,
            config.missing_heartbeats_allowed,
            now,
            config.heartbeat_groups,
        )
        self._step = (
            MagStep(
                population,
                self.peers.lma_packed,
                self._lfi,
                self._mag_lma,
                self._ids_sorted,
                self._id_order,
                self._nais,
                self._timers,
                self.heartbeats,
                self.lag.histogram,
                [self.latency[kind] for kind in LATENCY_KIND.values()],
                self._unanswered,
                config,
            )
            if compiled
            else None
        )
        self.sender = PbuSender(
            population,
            config,
            self.peers,
            self._lfi,
            self._timers,
            self._step,
            self.counters,
            self.takeover,
        )
        self.restart = (
            LmaRestart(
                population,
                config,
                self.peers,
                self.sender,
                self._timers,
                self.heartbeats,
                self.counters,
                self.takeover,
                self.events,
                now,
            )
            if config.mode == "restart"
            else None
        )
        self.liveness = LmaLiveness(
            population,
            config,
            self.peers,
            self.heartbeats,
            self._mag_lma,
            self.sender,
            self._step,
            self.counters,
            self.takeover,
            self.events,
            self.restart,
        )

        # The open-loop schedule: IDLE rows in row order, intended times from ``schedule_start``
        # (default ``now``).
        self._scheduled = np.flatnonzero(mns["state"] == S.IDLE)
        offsets = config.schedule.offsets(len(self._scheduled))
        self._offsets = np.rint(offsets * 1e9).astype(np.int64)
        self._intended = self._offsets
        self._cursor = 0
        self.start_schedule(now if schedule_start is None else schedule_start)
        if not config.pbu.request_prefix:
            self.sender.clear_prefix(self._scheduled)

    # --- driving interface ---------------------------------------------------------------------

    def start_schedule(self, when: float) -> None:
        """Let the open-loop schedule begin at ``when`` (Unix seconds) — before it sent anything:
        a driver that first waits for the LMAs to answer, or shards sharing a start time."""
        if self._cursor:
            raise RuntimeError("the schedule has started")
        self._intended = ns(when) + self._offsets
        self.schedule_start = when
        self.registrations.restart(when)
        self.pop.mns["t_send"][self._scheduled] = self._intended

    def receive(self, datagrams: Datagrams, now: float) -> None:
        """Process a batch of received Mobility Headers (PBAs, heartbeats, HA Switch)."""
        parts = datagrams.parts()
        listed = [p for p in parts if not isinstance(p, Columns)]
        batches = [p for p in parts if isinstance(p, Columns)]
        if listed:
            batches.append(Columns.of(listed))  # type: ignore[arg-type]
        for columns in batches:
            self._receive_columns(columns, now)
            if self.restart is not None:
                self.restart.heard(columns, now, self.heartbeating)

    def _receive_columns(self, columns: Columns, now: float) -> None:
        if self._probe_due is not None and not self._cursor:  # the start-up check's PBAs
            whole = np.flatnonzero(columns.ends - columns.starts >= 8)
            pbas = whole[columns.buf[columns.starts[whole] + 2] == cp.MH_BINDING_ACK]
            lma = self.peers.lma_of(columns.src[pbas])
            for answered in np.unique(lma[(lma >= 0) & ~self._pba_from[np.maximum(lma, 0)]]):
                self._pba_from[answered] = True
                self.sender.probe_pbu(int(answered), 0, now)  # de-register the probe's binding
        if self._step is not None:
            self._receive_compiled(columns, now)
            return
        buf, starts = columns.buf, columns.starts
        kind = np.zeros(len(columns), dtype=np.int16)  # the MH type; -1: not a Mobility Header
        whole = columns.ends - starts >= 8
        kind[whole] = buf[starts[whole] + 2]
        whole[whole] = buf[starts[whole]] == cp.PAYLOAD_PROTO_NONE
        kind[~whole] = -1
        pbas = np.flatnonzero(kind == cp.MH_BINDING_ACK)
        if pbas.size:
            part = columns.take(pbas)
            self._on_pbas(*part.compact(), self.peers.lma_of(part.src), now)
        heartbeats = np.flatnonzero(kind == cp.MH_HEARTBEAT).tolist()
        if heartbeats:
            self.liveness.on_heartbeats([columns.datagram(i) for i in heartbeats], now)
        for i in np.flatnonzero(kind == cp.MH_HOME_AGENT_SWITCH).tolist():
            self.liveness.on_ha_switch(columns.datagram(i), now)
        for i in np.flatnonzero(kind == cp.MH_BINDING_ERROR).tolist():
            self._on_binding_error(columns.datagram(i), now)

    def _on_binding_error(self, datagram: Datagram, now: float) -> None:
        """A Binding Error; one that turned the heartbeats off before the schedule started
        starts the probe."""
        if self.liveness.on_binding_error(datagram, now) and not self._cursor:
            self._probe_due = now

    def datagrams_to_send(self) -> Datagrams:
        """Everything the engine has to send; the engine forgets it."""
        return self.sender.take()

    def pop_events(self) -> list[Event]:
        """What happened since the last call, oldest first; the engine forgets it."""
        events = list(self.events)
        self.events.clear()  # the list the collaborators append to
        return events

    def next_timer(self) -> float | None:
        """When ``handle_timer`` must next be called (Unix seconds), or None."""
        times = []
        if self._cursor < len(self._intended):
            times.append(int(self._intended[self._cursor]) / 1e9)
        due = self._timers.next()
        if due is not None:
            times.append(due / 1e9)
        hb = self.heartbeats.next_due()
        if hb is not None and self.heartbeating:
            times.append(hb)
        if self._probe_due is not None:
            times.append(self._probe_due)
        if self.restart is not None and not self.heartbeating:
            times.append(self.restart.probe_due)
        if self._deregister_at is not None:
            times.append(self._deregister_at)
        return min(times, default=None)

    def handle_timer(self, now: float) -> None:
        """Send what the schedule, the session timers, the heartbeats and the de-registration
        time call for at ``now``."""
        limit = ns(now) + SLACK_NS
        self._send_scheduled(now, limit)
        if self._probe_due is not None and self._probe_due <= now + TIME_SLACK:
            self._probe(now)
        while (
            self.heartbeating
            and (due := self.heartbeats.next_due()) is not None
            and due <= now + TIME_SLACK
        ):
            self.liveness.tick(now)
        restart = self.restart
        if restart is not None and not self.heartbeating and restart.probe_due <= now + TIME_SLACK:
            down = restart.tick(now)
            self.heartbeats.up[down] = False
            self.liveness.went_down(down, np.zeros(len(down), dtype=np.int64), now)
        self._session_timers(now, limit)
        if self._deregister_at is not None and self._deregister_at <= now + TIME_SLACK:
            self._deregister_at = None
            self._deregister_all(now)
        if self._step is not None:
            self._step.fold(self.counters)

    # --- what a driver reads or sets -----------------------------------------------------------

    @property
    def heartbeating(self) -> bool:
        """Whether the MAGs heartbeat their LMAs (RFC 5847): not with ``heartbeats="off"``, nor
        with ``"auto"`` once an LMA said it has no RFC 5847."""
        return self.liveness.heartbeating

    def mark_failure(self, when: float, mags: np.ndarray | None = None) -> None:
        """Measure a failover from ``when``: sessions bound and acknowledged by then — of the
        MAG rows ``mags`` only, when given (a fault of their path) — are at risk (``takeover``
        holds the results)."""
        mns = self.pop.mns
        at_risk = np.isin(mns["state"], BOUND) & (mns["t_acked"] <= ns(when))
        if mags is not None:
            at_risk &= np.isin(mns["mag"], mags)
        self.takeover.mark_failure(when, at_risk, mns["lma"], self.config.mode == "restart")

    def lma_lost_state(self) -> None:
        """Restart mode: the driver knows the LMA came back without its bindings (a new
        process): the sessions at risk count as rebuilt once accepted again."""
        self.takeover.invalidated(np.arange(len(self.pop.mns)))

    @property
    def behind_schedule(self) -> float:
        """Fraction of scheduled registrations sent later than ``lag_tolerance``."""
        return self.lag.behind_schedule

    @property
    def last_scheduled(self) -> float | None:
        """The intended time of the schedule's last send (Unix seconds; None: nothing to send)."""
        return int(self._intended[-1]) / 1e9 if len(self._intended) else None

    @property
    def lmas_answered(self) -> np.ndarray:
        """Whether each LMA answered yet: a Heartbeat Response to some MAG, or (before the
        schedule started) a PBA."""
        return self._pba_from | self.heartbeats.answered.any(axis=0)

    @property
    def registrations_settled(self) -> bool:
        """No session waits to be sent or answered for its initial registration."""
        state = self.pop.mns["state"]
        # The last row found waiting is most often still waiting (the schedule goes in row
        # order): one look, not a pass over the population, while it is.
        if self._unsettled < len(state) and state[self._unsettled] in UNSETTLED:
            return False
        waiting = np.flatnonzero((state == S.IDLE) | (state == S.REGISTERING))
        if len(waiting):
            self._unsettled = int(waiting[-1])
        return not len(waiting)

    def registrations_end(self, settled: bool, now: float) -> float:
        """When a registration phase ended: with every session ``settled``, at the last one
        settled (not at the driver's next check), but not before the last scheduled send;
        otherwise ``now``."""
        last = self.last_settled
        if not settled or last is None:
            return now
        return max(last, self.last_scheduled or last)

    def count(self, state: int) -> int:
        """Sessions in ``state`` (a ``SessionState``)."""
        return int((self.pop.mns["state"] == state).sum())

    def rows_of(self, mag: int) -> np.ndarray:
        """The session rows of MAG ``mag``."""
        return self.peers.rows_of(mag)

    # --- sending PBUs --------------------------------------------------------------------------

    def _send_scheduled(self, now: float, limit: int) -> None:
        """Initial registrations whose intended time has come (all of them, however late: the
        lag is recorded, never hidden)."""
        if self._step is not None:
            sent = self._step.send_scheduled(
                self._scheduled, self._intended, self._cursor, ns(now), limit, self.lag.tolerance
            )
            if sent is None:
                return
            end, last, late = sent
            self.lag.count(end - self._cursor, last, late)
            rows = self._scheduled[self._cursor : end]
            self._cursor = end
            self.sender.transmit(rows, now)
            return
        end = int(np.searchsorted(self._intended, limit, side="right"))
        if end <= self._cursor:
            return
        rows = self._scheduled[self._cursor : end]
        self.lag.record((ns(now) - self._intended[self._cursor : end]) / 1e9)
        self._cursor = end
        mns = self.pop.mns
        mns["state"][rows] = S.REGISTERING
        mns["hi"][rows] = cp.HI_ATTACH_NEW_INTERFACE
        mns["retries"][rows] = 0
        mns["lma"][rows] = self._mag_lma[mns["mag"][rows]]
        self._lfi[rows] = NO_LFI
        self.sender.transmit(rows, now)

    def _session_timers(self, now: float, limit: int) -> None:
        """Refreshes due, retransmissions due, de-registrations timed out."""
        mns = self.pop.mns
        due = self._timers.pop_due(limit)
        if not due.size:
            return
        state = mns["state"][due]
        done = due[state == S.DEREGISTERING]  # no PBA within INITIAL_BINDACK_TIMEOUT: forget
        mns["state"][done] = S.IDLE
        self._timers.disarm(done)
        retransmit = due[np.isin(state, (S.REGISTERING, S.REFRESHING, S.FAILOVER))]
        if not self.heartbeating:
            retransmit = self._unanswered_pbus(retransmit, now)
        exhausted = mns["retries"][retransmit] >= self.config.max_retransmissions
        if exhausted.any():
            self._give_up(retransmit[exhausted], now)
            retransmit = retransmit[~exhausted]
        # The LMA may have opened the session and lost only its PBA: HI 1 again would open a
        # second one (a new interface, RFC 5213 §5.4.1); HI 4 updates the one it has, if any.
        first = mns["hi"][retransmit] == cp.HI_ATTACH_NEW_INTERFACE
        mns["hi"][retransmit[first]] = cp.HI_UNKNOWN
        mns["retries"][retransmit] = np.minimum(
            mns["retries"][retransmit].astype(np.int64) + 1, 255
        )
        self.counters.pbu_retransmitted += len(retransmit)
        refresh = due[state == S.REGISTERED]
        self.sender.begin_refresh(refresh, mns["t_due"][refresh])  # intended: when it fell due
        self.sender.transmit(np.concatenate([retransmit, refresh]), now)

    def _unanswered_pbus(self, rows: np.ndarray, now: float) -> np.ndarray:
        """Without heartbeats: the last PBU of each of ``rows`` went unanswered. A (MAG, LMA)
        pair with ``failure_after`` such PBUs in a row goes DOWN (the hard switch fails its
        sessions over). Returns the rows still to retransmit: those the failover did not move."""
        mns = self.pop.mns
        lma = mns["lma"][rows]
        np.add.at(self._unanswered, (mns["mag"][rows].astype(np.int64), lma.astype(np.int64)), 1)
        up = self.heartbeats.up
        down = (self._unanswered >= self.config.failure_after) & up
        if not down.any():
            return rows
        up[down] = False
        self._unanswered[down] = 0
        self.liveness.went_down(*np.nonzero(down), now)
        return rows[mns["lma"][rows] == lma]

    def _registered(self, count: int, now: float) -> None:
        """``count`` initial registrations were accepted at ``now``."""
        self.registrations.record(now, count)
        self.last_settled = now
        self.takeover.registered(count, now)

    def _give_up(self, rows: np.ndarray, now: float) -> None:
        """``rows`` had no answer through every retransmission: GIVEN_UP (a session at risk in a
        failover is then lost)."""
        self.pop.mns["state"][rows] = S.GIVEN_UP
        self._timers.disarm(rows)
        self._lfi[rows] = NO_LFI
        self.counters.given_up += len(rows)
        self.takeover.gave_up(rows)
        self.last_settled = now

    def _deregister_all(self, now: float) -> None:
        """§8.8 ``any → DEREGISTERING`` (lifetime 0, HI 4); the schedule stops."""
        mns = self.pop.mns
        self._cursor = len(self._intended)
        state = mns["state"]
        unbound = np.flatnonzero(state == S.REGISTERING)
        mns["state"][unbound] = S.IDLE
        self._timers.disarm(unbound)
        rows = np.flatnonzero(np.isin(state, (*BOUND, S.FAILOVER)))
        mns["state"][rows] = S.DEREGISTERING
        mns["hi"][rows] = cp.HI_UNKNOWN
        mns["retries"][rows] = 0
        self._lfi[rows] = NO_LFI
        self.sender.transmit(rows, now)

    # --- PBAs ----------------------------------------------------------------------------------

    def _on_pbas(self, buf: np.ndarray, offsets: np.ndarray, lma: np.ndarray, now: float) -> None:
        """PBAs ``buf[offsets[i]:offsets[i + 1]]`` from the LMAs of index ``lma[i]`` (-1: none)."""
        mns = self.pop.mns
        count = len(offsets) - 1
        self.counters.pba_received += count
        pba = decode_pbas(buf, offsets, framing="mh", nais=self._nais)
        decoded = (pba["error"] == 0) & (pba["flags"] & cp.BA_FLAG_P != 0)
        for i in np.flatnonzero(~decoded).tolist():
            self._malformed(buf[offsets[i] : offsets[i + 1]].tobytes())
        ids = pba["mn_id"]
        pos = np.minimum(np.searchsorted(self._ids_sorted, ids), len(self._ids_sorted) - 1)
        found = (ids != NO_MN_ID) & (self._ids_sorted[pos] == ids) if len(mns) else ids < 0
        ok = np.flatnonzero(decoded & found & (lma >= 0))
        rows = self._id_order[pos[ok]]
        # A PBA answering any PBU of the registration attempt — the last one, or one of the
        # retransmissions before it (seq - retries .. seq, mod 2^16) — settles it (RFC 5213
        # §5.3: the LMA may answer an earlier retransmission late; the answer still holds).
        behind = (mns["seq"][rows].astype(np.int64) - pba["seq"][ok]) & 0xFFFF
        match = (
            np.isin(mns["state"][rows], AWAITING_PBA)
            & ((behind <= mns["retries"][rows]) | (pba["status"][ok] == RESYNC))
            & (mns["lma"][rows] == lma[ok])
        )
        ok, rows = ok[match], rows[match]
        rows, first = np.unique(rows, return_index=True)  # a duplicated PBA counts once
        ok = ok[first]
        self._unanswered[mns["mag"][rows], lma[ok]] = 0
        self.counters.pba_ignored += count - len(rows)
        if not rows.size:
            return
        pba, lma = pba[ok], lma[ok]
        status = pba["status"]
        for code, n in zip(*np.unique(status, return_counts=True), strict=True):
            self.counters.pba_status[int(code)] += int(n)

        state = mns["state"][rows]
        dereg = state == S.DEREGISTERING
        mns["state"][rows[dereg]] = S.IDLE
        self._timers.disarm(rows[dereg])
        live = ~dereg
        accepted = live & (status < 128)
        self._accept(rows[accepted], lma[accepted], pba[accepted], state[accepted], now)
        rejected = live & (status >= 128)
        self._reject(rows[rejected], lma[rejected], status[rejected], pba["seq"][rejected], now)

    def _malformed(self, mh: bytes) -> None:
        """A PBA the decoder refused: counted by reason, dropped."""
        self.counters.quirks[malformed(malformed_reason(mh))] += 1

    def _reject(
        self, rows: np.ndarray, lma: np.ndarray, status: np.ndarray, seq: np.ndarray, now: float
    ) -> None:
        """§3.4's reactions to PBAs of status ≥ 128 and sequence number ``seq[i]`` from LMA
        ``lma[i]`` for sessions ``rows`` (each once, none de-registering)."""
        if not rows.size:
            return
        mns = self.pop.mns
        retry = np.isin(status, RETRY_NOW) & (mns["retries"][rows] < MAX_IMMEDIATE_RETRIES)
        mismatch = retry & (status == cp.STATUS_TIMESTAMP_MISMATCH)
        if mismatch.any():
            self.sender.clock_offset = 0.0
            mns["ts"][rows[mismatch]] = 0  # never accepted: the next one comes from the clock
        resync = retry & (status == RESYNC)
        if resync.any():
            mns["seq"][rows[resync]] = seq[resync]  # the next PBU goes one past it
            self.counters.quirks[SEQUENCE_RESYNC] += int(resync.sum())
        self.sender.clear_prefix(rows[status == cp.STATUS_NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX])
        no_state = (status == cp.STATUS_NOT_LMA_FOR_THIS_MOBILE_NODE) & (self._lfi[rows] != NO_LFI)
        final = ~retry & ~no_state
        # A timing retry may still keep the session; one given up on (``final``) is lost.
        lost = ~(retry & np.isin(status, KEEPS_BINDING))
        self.takeover.rejected(rows[lost], lma[lost], now, self.config.mode != "hard")
        for code, n in zip(*np.unique(status[final], return_counts=True), strict=True):
            self.counters.failed[int(code)] += int(n)
        mns["state"][rows[final]] = S.FAILED
        if final.any():
            self.last_settled = now
        self._timers.disarm(rows[final])
        mns["retries"][rows[retry]] += np.uint8(1)
        self.sender.transmit(rows[retry], now)
        self.sender.restart_sessions(rows[no_state], now)

    def _accept(
        self, rows: np.ndarray, lma: np.ndarray, pba: np.ndarray, state: np.ndarray, now: float
    ) -> None:
        cfg = self.config
        mns = self.pop.mns
        now_ns = ns(now)
        changed = (mns["hnp_len"][rows] != pba["hnp_len"]) | (mns["hnp"][rows] != pba["hnp"]).any(
            axis=1
        )
        # The LMA's word is the session's prefix, an echoed ALL_ZERO one included (OPMIP): the
        # refreshes then ask for what it gave. Counted, for an LMA that does not assign one.
        all_zero = ~pba["hnp"].any(axis=1)
        differs = changed & ~all_zero & mns["hnp"][rows].any(axis=1)
        for kind, seen in ((HNP_ALL_ZERO, all_zero), (HNP_DIFFERS, differs)):
            if seen.any():
                self.counters.quirks[kind] += int(seen.sum())
        mns["hnp"][rows] = pba["hnp"]
        mns["hnp_len"][rows] = pba["hnp_len"]
        latency = (now_ns - mns["t_send"][rows]) // 1000
        for kind_state, kind in LATENCY_KIND.items():
            self.latency[kind].record(latency[state == kind_state])
        registrations = int(np.count_nonzero(state == S.REGISTERING))
        if registrations:
            self._registered(registrations, now)
        self.takeover.accepted(rows, lma, changed, now, cfg.mode != "hard")
        granted = pba["lifetime"].astype(np.float64) * 4
        refresh_in = np.maximum(
            np.maximum(granted - cfg.refresh_margin, granted / 2), cfg.initial_bindack_timeout
        )
        mns["state"][rows] = S.REGISTERED
        mns["hi"][rows] = cp.HI_NOT_CHANGED
        mns["retries"][rows] = 0
        mns["lifetime"][rows] = pba["lifetime"]
        mns["t_acked"][rows] = now_ns
        self._timers.arm(rows, now_ns + np.rint(refresh_in * 1e9).astype(np.int64))
        self._lfi[rows] = NO_LFI

    # --- the start-up check without heartbeats -------------------------------------------------

    def _probe(self, now: float) -> None:
        """Ask each LMA that has not answered yet for a PBA: a registration of the first MN for
        the shortest lifetime (4 s), de-registered as soon as the LMA answered (an LMA may ignore
        a de-registration of a binding it does not hold, as lmaload's own does); again after
        ``initial_bindack_timeout``, until every LMA answered or the schedule started."""
        silent = np.flatnonzero(~self.lmas_answered)
        if self._cursor or not silent.size or not len(self.pop.mns):
            self._probe_due = None
            return
        self._probe_due = now + self.config.initial_bindack_timeout
        for lma in silent.tolist():
            self.sender.probe_pbu(lma, 1, now)
