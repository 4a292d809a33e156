"""Whether the LMAs of ``MagEngine`` (``protocol/mag.py``) are up, and what the MAGs do about it.

``LmaLiveness`` runs the RFC 5847 heartbeats (spec-digest §4; the table is ``HeartbeatTable``):
the ticks, the Responses, the answers to an LMA's own Requests. A (MAG, LMA) pair that goes DOWN
fails its sessions over in a hard switch (seed Figure 2, §8.4: PBU with HI 5 and an LFI naming
the failed LMA to the other one); one that comes back UP is refreshed at once with
``refresh_on_recovery``; a changed Restart Counter registers the sessions anchored there again
from scratch. An HA Switch (MH 12, §8.6, R28) fails over towards the address it carries; a
Binding Error 2 in answer to a Heartbeat says the LMA has no RFC 5847, and with
``heartbeats="auto"`` turns the heartbeats off.
"""

from __future__ import annotations

import numpy as np

from lmaload._ext.mag_step import MagStep
from lmaload.bulk import decode_heartbeats, encode_heartbeats
from lmaload.measure.takeover import TakeoverMeter
from lmaload.population import Population
from lmaload.population import SessionState as S
from lmaload.protocol.datagrams import Datagram
from lmaload.protocol.events import Event
from lmaload.protocol.mag_config import MagConfig
from lmaload.protocol.mag_heartbeat import HeartbeatTable
from lmaload.protocol.mag_sender import PbuSender
from lmaload.protocol.mag_state import BOUND, MOVABLE, MagCounters, Peers, ns, pairs
from lmaload.protocol.peer_quirks import NO_HEARTBEATS, binding_error, malformed
from lmaload.wire import (
    BindingError,
    Heartbeat,
    HomeAgentSwitch,
    LmaFailureIndication,
    RestartCounter,
    WireError,
    decode_mh,
    encode_mh,
)
from lmaload.wire import codepoints as cp


class LmaLiveness:
    """The heartbeats of every (MAG, LMA) pair in ``table`` and the failovers they call for.
    ``mag_lma`` is the column of the LMA each MAG registers new sessions with (the one it failed
    over to, once it did); ``events`` the engine's list, appended to."""

    def __init__(
        self,
        population: Population,
        config: MagConfig,
        peers: Peers,
        table: HeartbeatTable,
        mag_lma: np.ndarray,
        sender: PbuSender,
        step: MagStep | None,
        counters: MagCounters,
        takeover: TakeoverMeter,
        events: list[Event],
    ) -> None:
        self.pop = population
        self.config = config
        self.peers = peers
        self.table = table
        self.mag_lma = mag_lma
        self.heartbeating = config.heartbeats != "off"
        self._sender = sender
        self._step = step
        self._counters = counters
        self._takeover = takeover
        self._events = events
        self._without_heartbeats: set[int] = set()  # LMAs that said "no RFC 5847 here"

    # --- heartbeats (RFC 5847, spec-digest §4) -------------------------------------------------

    def tick(self, now: float) -> None:
        """The heartbeat tick due at ``now``: Requests, and the pairs that went DOWN."""
        table = self.table
        if self._step is not None:
            down = self._step.heartbeat_tick(now)
            table.set_next_due(self._step.next_heartbeat)
            if down:
                self.went_down(*pairs(down), now)
            return
        mags, down_mags, down_lmas = table.fire(now)
        n_lmas = len(self.peers.lmas)
        pair_mags = np.repeat(mags, n_lmas)
        pair_lmas = np.tile(np.arange(n_lmas), len(mags))
        buf, offsets = encode_heartbeats(
            self.pop, pair_mags, self.peers.lma_packed[pair_lmas], table.seq[pair_mags, pair_lmas]
        )
        self._sender.emit(buf, offsets, pair_mags, pair_lmas)
        self._counters.heartbeat_requests_sent += len(pair_mags)
        if down_mags.size:
            self.went_down(down_mags, down_lmas, now)

    def went_down(self, down_mags: np.ndarray, down_lmas: np.ndarray, now: float) -> None:
        """The (MAG, LMA) pairs just declared DOWN: events, and the hard switch's failover."""
        lmas = self.peers.lmas
        self._takeover.detected(down_mags, now)
        for mag, lma in zip(down_mags.tolist(), down_lmas.tolist(), strict=True):
            self._events.append(Event(now, "lma_down", {"mag": mag, "lma": str(lmas[lma])}))
            standby = 1 - lma
            if self.config.mode == "hard" and len(lmas) == 2 and self.table.up[mag, standby]:
                rows = self.peers.rows_of(mag)
                mns = self.pop.mns
                rows = rows[(mns["lma"][rows] == lma) & np.isin(mns["state"][rows], MOVABLE)]
                self.mag_lma[mag] = standby
                self._sender.fail_over(rows, standby, np.full(len(rows), lma), now)

    def on_heartbeats(self, datagrams: list[Datagram], now: float) -> None:
        """Heartbeat messages from the LMAs: Responses to the MAGs' Requests, and Requests."""
        offsets = np.zeros(len(datagrams) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(d.data) for d in datagrams])
        buf = np.frombuffer(b"".join(d.data for d in datagrams), dtype=np.uint8)
        hb = decode_heartbeats(buf, offsets, framing="mh")
        lma = np.array([self.peers.lma_index.get(d.src, -1) for d in datagrams], dtype=np.int64)
        mag = np.array([self.peers.mag_index.get(d.dst, -1) for d in datagrams], dtype=np.int64)
        ok = (hb["error"] == 0) & (lma >= 0) & (mag >= 0)
        response = (hb["flags"] & cp.HB_FLAG_R) != 0
        for i in np.flatnonzero(ok & ~response).tolist():  # LMA-originated probes: answer each
            self.answer(datagrams[i], int(hb["seq"][i]))
        sel = ok & response
        self._counters.heartbeat_responses_received += int(sel.sum())
        h = hb[sel]
        came_up, restarted = self.table.on_responses(
            mag[sel],
            lma[sel],
            h["seq"],
            (h["flags"] & cp.HB_FLAG_U) != 0,
            h["restart_counter"],
            h["has_restart_counter"] != 0,
            now,
        )
        self.changes(came_up, restarted, now)

    def answer(self, probe: Datagram, seq: int) -> None:
        """Answer an LMA's Heartbeat Request."""
        answer = Heartbeat(seq, cp.HB_FLAG_R, (RestartCounter(self.config.restart_counter),))
        self._sender.send_one(encode_mh(answer, probe.dst, probe.src), probe.dst, probe.src)
        self._counters.heartbeat_requests_answered += 1

    def changes(
        self,
        came_up: tuple[np.ndarray, np.ndarray],
        restarted_pairs: tuple[np.ndarray, np.ndarray],
        now: float,
    ) -> None:
        """The (MAG, LMA) pairs that came back UP, and those whose LMA restarted."""
        (up_m, up_l), (rs_m, rs_l) = came_up, restarted_pairs
        lmas = self.peers.lmas
        restarted = set(zip(rs_m.tolist(), rs_l.tolist(), strict=True))
        for m, lm in zip(up_m.tolist(), up_l.tolist(), strict=True):
            self._events.append(Event(now, "lma_up", {"mag": m, "lma": str(lmas[lm])}))
            if self.config.refresh_on_recovery and (m, lm) not in restarted:
                self._refresh_now(m, lm, now)
        for m, lm in zip(rs_m.tolist(), rs_l.tolist(), strict=True):
            self._events.append(Event(now, "lma_restarted", {"mag": m, "lma": str(lmas[lm])}))
            rows = self.peers.rows_of(m)
            mns = self.pop.mns
            rows = rows[
                (mns["lma"][rows] == lm) & np.isin(mns["state"][rows], (*BOUND, S.FAILOVER))
            ]
            self._counters.sessions_invalidated += len(rows)
            self._takeover.invalidated(rows)
            self._sender.restart_sessions(rows, now)

    def _refresh_now(self, mag: int, lma: int, now: float) -> None:
        """Refresh (HI 5) the sessions of ``mag`` registered at ``lma``, now."""
        mns = self.pop.mns
        rows = self.peers.rows_of(mag)
        rows = rows[(mns["lma"][rows] == lma) & (mns["state"][rows] == S.REGISTERED)]
        self._sender.begin_refresh(rows, ns(now))
        self._sender.transmit(rows, now)

    # --- HA Switch (RFC 5142, spec-digest §8.6, R28) -------------------------------------------

    def on_ha_switch(self, datagram: Datagram, now: float) -> None:
        """Fail the sessions the HA Switch names over to the LMA it carries."""
        try:
            msg = decode_mh(datagram.data, datagram.src, datagram.dst).message
        except WireError:
            return
        peers = self.peers
        mag = peers.mag_index.get(datagram.dst)
        if not isinstance(msg, HomeAgentSwitch) or not msg.addresses or mag is None:
            return
        to = peers.lma_index.get(msg.addresses[0])
        if to is None:  # not an LMA this MAG has a security association with
            return
        self._counters.ha_switch_received += 1
        if not self.heartbeating:  # the MAG learns of the failure from the HA Switch alone
            self._takeover.detected(np.array([mag]), now)
        lfi = next((o for o in msg.options if isinstance(o, LmaFailureIndication)), None)
        failed = peers.lma_index.get(lfi.lmaa) if lfi is not None else None
        self._events.append(
            Event(now, "ha_switch", {"mag": mag, "to": str(msg.addresses[0]), "failed": failed})
        )
        mns = self.pop.mns
        rows = peers.rows_of(mag)
        lma = mns["lma"][rows]
        anchored = lma != to if failed is None else lma == failed
        rows = rows[anchored & np.isin(mns["state"][rows], MOVABLE)]
        self.mag_lma[mag] = to
        self._sender.fail_over(rows, to, mns["lma"][rows].astype(np.int8), now)

    # --- Binding Error (RFC 6275 §6.1.9) -------------------------------------------------------

    def on_binding_error(self, datagram: Datagram, now: float) -> bool:
        """Counted by status; status 2 (unrecognised MH type) from an LMA the MAGs heartbeat is
        its answer to a Heartbeat (a PBU it knows): no RFC 5847 there, said once per LMA.
        Returns whether this turned the heartbeats off."""
        try:
            msg = decode_mh(datagram.data, datagram.src, datagram.dst).message
        except WireError:
            self._counters.quirks[malformed("binding_error")] += 1
            return False
        if not isinstance(msg, BindingError):
            return False
        self._counters.quirks[binding_error(msg.status)] += 1
        lma = self.peers.lma_index.get(datagram.src)
        if msg.status != cp.BE_STATUS_UNRECOGNIZED_MH_TYPE or lma is None:
            return False
        self._counters.quirks[NO_HEARTBEATS] += 1
        if lma not in self._without_heartbeats:
            self._without_heartbeats.add(lma)
            self._events.append(Event(now, "heartbeats_unsupported", {"lma": str(datagram.src)}))
        if self.config.heartbeats == "auto" and self.heartbeating:
            self.heartbeating = False
            self._events.append(Event(now, "heartbeats_off", {"lma": str(datagram.src)}))
            return True
        return False
