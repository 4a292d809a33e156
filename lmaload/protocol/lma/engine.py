"""The reference LMA engine, sans-IO: RFC 5213 PBU processing over a columnar binding cache, the
RFC 5847 heartbeat responder and originator, and the redundancy layer of the seed draft (HA-HELLO,
State Synchronization, per-MAG hard switch, HA Switch fan-out, virtual switch).

The engine never reads a clock and owns no socket: it is an ``Endpoint``
(``lmaload.protocol.endpoint``). A driver (or ``lmaload.sim``) hands it batches of received
datagrams with ``receive(batch, now)``, calls ``handle_timer(now)`` when ``next_timer()`` is due,
sends what ``datagrams_to_send()`` returns and takes its events with ``pop_events()``. ``now`` is
Unix time in seconds; Timestamp options are checked against it.

``LmaEngine`` decodes and dispatches; the work is done by its collaborators, which share an
``LmaState`` and an ``Ownership``: ``PbuProcessor`` (``pbu``), ``Heartbeats`` (``heartbeat``),
``Takeovers`` (``takeover``), ``SyncOut`` and ``SyncIn`` (``sync_out``, ``sync_in``) and the
``FastLane`` (``fast_lane``). Where one concern's outcome sets off another's — a takeover
completing, a peer dying — the engine carries it from one to the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from ipaddress import IPv6Address

import numpy as np

from lmaload._ext.lma_step import HEARTBEAT, REFERENCE
from lmaload.measure.histogram import Histogram
from lmaload.protocol.binding_cache import BceState, BindingCache
from lmaload.protocol.config import LmaConfig
from lmaload.protocol.datagrams import Columns, Datagram, Datagrams
from lmaload.protocol.events import Counters, Event, Role
from lmaload.protocol.lma import shed
from lmaload.protocol.lma.fast_lane import FastLane, LaneBatch
from lmaload.protocol.lma.heartbeat import Heartbeats, HelloOutcome
from lmaload.protocol.lma.ownership import Ownership
from lmaload.protocol.lma.pbu import PbuProcessor
from lmaload.protocol.lma.state import LmaState
from lmaload.protocol.lma.sync_in import SyncIn
from lmaload.protocol.lma.sync_out import SyncOut
from lmaload.protocol.lma.takeover import Ended, Outcome, Takeovers
from lmaload.wire import (
    BindingError,
    BindingUpdate,
    Heartbeat,
    HomeAgentControl,
    HomeAgentHello,
    StateSync,
    UnknownMessage,
    WireError,
    decode_mh,
)
from lmaload.wire import codepoints as cp

# The message types a plain RFC 5213 LMA (``LmaConfig.plain``) does not recognise: RFC 5847's
# and the draft's.
UNKNOWN_PLAIN = (Heartbeat, StateSync, HomeAgentControl, HomeAgentHello)


class LmaEngine:
    """One LMA. See the module docstring for the driving interface and ``LmaConfig`` for what
    the sync modes guarantee."""

    def __init__(self, config: LmaConfig, now: float) -> None:
        self.config = config
        self.state = state = LmaState(config)
        self.ownership = ownership = Ownership(config)
        self.sync_out = SyncOut(state, now)
        self.sync_in = SyncIn(state, ownership)
        self.heartbeats = Heartbeats(state, ownership, now)
        self.takeovers = Takeovers(state, ownership)
        self.pbu = PbuProcessor(state, ownership, self.heartbeats, self.sync_out)
        self.fast_lane = FastLane(state) if self._fast_lane_applies() else None
        self._timer_handlers: dict[str, Callable[..., None]] = {
            "hello": self.heartbeats.on_hello_timer,
            "heartbeat": self.heartbeats.on_heartbeat_timer,
            "init": self.heartbeats.on_init_timer,
            "dead": self._on_dead_timer,
            "has": self.heartbeats.on_ha_switch_timer,
            "so": self._on_switchover_timer,
            "pace": self.sync_out.on_pace_timer,
            "ssrep": self.sync_out.on_retransmit_timer,
            "before_ack": self.sync_out.on_before_ack_timer,
            "ssreq": self.sync_in.on_request_timer,
        }
        state.event(now, "role", role=ownership.role.value, reason="start")

    # --- driving interface ---------------------------------------------------------------------

    def receive(self, datagrams: Datagrams, now: float) -> None:
        """Process a batch of received Mobility Headers, counting them in ``datagrams.done``.
        Columns go through the compiled fast lane where it applies (``fast_lane``); PBUs are
        shed first where overload calls for it (``shed``)."""
        backlog = self.sync_out.at_bound()
        run: list[Datagram] = []
        for part in [*datagrams.parts(), None]:
            if isinstance(part, Datagram):
                run.append(part)
                continue
            if run:
                self._receive_datagrams(run, now, datagrams, backlog)
                run = []
            if part is not None:
                self._receive_columns(part, now, datagrams, backlog)
        self.sync_out.on_pace_timer(now)

    def datagrams_to_send(self) -> Datagrams:
        """Everything the engine has to send; the engine forgets it."""
        out, self.state.out = self.state.out, Datagrams()
        return out

    def next_timer(self) -> float | None:
        """When ``handle_timer`` must next be called (Unix seconds), or None."""
        timer, expiry = self.state.timers.next(), self._next_expiry()
        if timer is None or expiry is None:
            return expiry if timer is None else timer
        return min(timer, expiry)

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now``, and end the entries whose time is up, in time order
        (timers first at equal times)."""
        state = self.state
        while True:
            timer, expiry = state.timers.next(), self._next_expiry()
            if expiry is not None and expiry <= now and (timer is None or expiry < timer):
                cache = state.cache
                rows = cache.rows
                for row in state.expiry.pop_due(expiry, rows["expires"], rows["state"], len(cache)):
                    self.pbu.expire(now, int(row))
                continue
            key = state.timers.pop_due(now)
            if key is None:
                break
            kind, *args = key  # type: ignore[misc]
            self._timer_handlers[kind](now, *args)
        self.sync_out.on_pace_timer(now)

    def pop_events(self) -> list[Event]:
        """What happened since the last call, oldest first; the engine forgets it."""
        events, self.state.events = self.state.events, []
        return events

    @property
    def events(self) -> list[Event]:
        """What happened and was not popped yet, oldest first."""
        return self.state.events

    @property
    def cache(self) -> BindingCache:
        return self.state.cache

    @property
    def counters(self) -> Counters:
        return self.state.counters

    @property
    def role(self) -> Role:
        return self.ownership.role

    @property
    def owns_lmaa(self) -> bool:
        return self.ownership.owns_lmaa

    @property
    def sync_ack_latency(self) -> Histogram:
        """From packing an SS-REP to each peer's SS-ACK (µs)."""
        return self.sync_out.ack_latency

    @property
    def bce_count(self) -> int:
        """Binding cache entries this LMA serves."""
        return self.state.cache.count(BceState.ACTIVE)

    @property
    def fast_lane_pbus(self) -> int:
        """PBUs the compiled fast lane accepted (``fast_lane``)."""
        return 0 if self.fast_lane is None else self.fast_lane.pbus_accepted

    @property
    def peers_alive(self) -> int:
        """Peer LMAs whose HA-HELLOs are current."""
        return len(self.state.live_peers())

    @property
    def sync_backlog(self) -> int:
        """SS-REPs waiting for a pacing slot plus those waiting for an SS-ACK."""
        return self.sync_out.backlog

    # --- receive dispatch ----------------------------------------------------------------------

    def _receive_datagram(self, datagram: Datagram, now: float) -> None:
        """One datagram by the reference path."""
        data, src, dst, arrival = datagram
        self._receive_one(data, src, dst, now, now if arrival is None else arrival)

    def _receive_datagrams(
        self, datagrams: list[Datagram], now: float, batch: Datagrams, backlog: bool
    ) -> None:
        """The reference path for a run of datagrams: shed what overload calls for
        (``shed.marks``), then take the rest one by one."""
        config = self.config
        marks = shed.marks(
            datagrams, now, config.pbu_max_delay, config.supersede_pbus, backlog, self.state.wire
        )
        for datagram, mark in zip(datagrams, marks, strict=True):
            if mark:
                self.state.counters.pbu_shed[shed.REASONS[mark]] += 1
            else:
                self._receive_datagram(datagram, now)
            batch.done += 1

    def _receive_columns(
        self, columns: Columns, now: float, batch: Datagrams, backlog: bool
    ) -> None:
        base = batch.done
        if self.fast_lane is None:
            datagrams = [columns.datagram(i) for i in range(len(columns))]
            self._receive_datagrams(datagrams, now, batch, backlog)
            return
        # SS-REPs are taken before the rest of the batch (as if they had arrived first), SS-ACKs
        # out of the lane's way and acted on after it.
        total = len(columns)
        synced = self.sync_in.ingest(columns, now)
        if synced is not None and len(synced) == total:  # nothing but SS-REPs
            batch.done = base + total
            return
        acks = self.sync_out.scan_acks(columns)
        left = None
        if acks or synced is not None:
            keep = np.ones(total, dtype=bool)
            keep[[i for i, _, _ in acks]] = False
            if synced is not None:
                keep[synced] = False
            left = np.flatnonzero(keep)
            columns = columns.take(left)
        try:
            if len(columns):
                self._through_lane_and_reference(columns, now, batch, backlog, left)
        finally:  # also when the engine failed on a datagram: the driver takes the batch again
            # after it, where an SS-ACK taken here counts as unmatched
            for _, identifier, peer in acks:
                self.sync_out.on_ack(identifier, peer, now)
        batch.done = base + total

    def _through_lane_and_reference(
        self,
        columns: Columns,
        now: float,
        batch: Datagrams,
        backlog: bool,
        left: np.ndarray | None,
    ) -> None:
        """``columns`` (the batch's datagrams at ``left``, None: all) through the lane, and
        what it leaves by the reference path."""
        assert self.fast_lane is not None
        base = batch.done
        scanned = self.fast_lane.scan(columns, now, False, backlog)
        if scanned.marked < 0:  # a Binding Update the scan did not read
            config = self.config
            datagrams = [columns.datagram(i) for i in range(len(columns))]
            marks = shed.marks(
                datagrams, now, config.pbu_max_delay, config.supersede_pbus, backlog, config.wire
            )
            scanned.shed[:] = marks
            scanned.marked = len(marks) - marks.count(shed.KEEP)
        if scanned.marked:
            counts = np.bincount(scanned.shed, minlength=len(shed.REASONS) + 1)
            for mark, reason in shed.REASONS.items():
                if counts[mark]:
                    self.state.counters.pbu_shed[reason] += int(counts[mark])
        for i in self._through_lane(scanned, now):
            batch.done = base + (i if left is None else int(left[i]))  # the lane took those before
            self._receive_datagram(columns.datagram(i), now)

    def _through_lane(self, batch: LaneBatch, now: float) -> Iterator[int]:
        """Run ``batch`` through the fast lane and the heartbeat responder (a plain LMA's: Binding
        Error 2), following up what they took; yield the index of each datagram they leave to the
        reference path, which the caller takes before they go on."""
        lane = self.fast_lane
        assert lane is not None
        state = self.state
        counters = state.counters
        replay = batch.replay
        codes = batch.codes
        n = len(codes)
        i = 0
        while i < n:
            ownership = self.ownership.snapshot()
            lane.classify(batch, ownership)
            if codes[i] == HEARTBEAT:
                i, responses = lane.heartbeats(batch, i)
                if self.config.plain:
                    counters.binding_errors_sent += len(responses)
                    counters.drops["unknown_type"] += len(responses)
                else:
                    counters.heartbeat_requests_answered += len(responses)
                state.out.extend([responses])
                continue
            if codes[i] == REFERENCE:  # the lane would stop at once (an SS-REP, say)
                yield i
                i += 1
                continue
            run = lane.run(batch, i, now, ownership)
            if run.pbas is not None:
                k = len(run.rows)
                self.sync_out.send_pbas(run.rows, run.pbas)
                if not replay:
                    counters.pbu_processed += k
                counters.pba_status[cp.STATUS_ACCEPTED] += k
                state.expiry.push_many(run.rows, run.expires)
                self.sync_out.record_live(run.rows)
            if run.stop == n:
                return
            if codes[run.stop] == HEARTBEAT:
                i = run.stop
                continue
            if run.takeover_key is not None:
                datagram = batch.columns.datagram(run.stop)
                if datagram.arrival is None:  # as the reference path holds it
                    datagram = datagram._replace(arrival=now)
                self.takeovers.hold(datagram.src, run.takeover_key, datagram)
                counters.pbu_processed += 1
            else:
                yield run.stop
            i = run.stop + 1

    def _fast_lane_applies(self) -> bool:
        """The lane authorises everyone (see ``fast_lane``)."""
        policy = self.config.policy
        return (
            policy.authorized_mags is None
            and policy.authorized_mns is None
            and not policy.pmip_disabled_mns
        )

    def _receive_one(
        self,
        data: bytes,
        src: IPv6Address,
        dst: IPv6Address,
        now: float,
        arrival: float,
    ) -> None:
        state = self.state
        if dst != state.address and not (dst == state.lmaa and self.ownership.owns_lmaa):
            state.drop("not_local")
            return
        try:
            decoded = decode_mh(data, src, dst, state.wire)
        except WireError:
            state.drop("malformed")
            return
        if decoded.checksum_ok is False:
            state.drop("checksum")
            return
        msg = decoded.message
        plain = self.config.plain
        if isinstance(msg, UnknownMessage) or (plain and isinstance(msg, UNKNOWN_PLAIN)):
            state.counters.binding_errors_sent += 1
            state.drop("unknown_type")
            state.send(BindingError(2), dst, src)
        elif isinstance(msg, BindingUpdate):
            datagram = Datagram(data, src, dst, arrival)
            pbu = self.pbu.on_pbu(msg, datagram, now)
            if pbu is not None and self.takeovers.queue(pbu, datagram, now) is Outcome.COMPLETE:
                self._complete_takeover(pbu.proxy_coa, now, "current LMA not alive")
        elif isinstance(msg, Heartbeat):
            self.heartbeats.on_heartbeat(msg, src, dst, now)
        elif isinstance(msg, HomeAgentControl) and src not in state.peers:
            if msg.hac_type == cp.HAC_SWITCHOVER_REQUEST:
                state.send(
                    HomeAgentControl(cp.HAC_SWITCHOVER_REPLY, 132, msg.mag_address), dst, src
                )
            state.drop("unknown_peer")
        elif isinstance(msg, StateSync | HomeAgentControl | HomeAgentHello):
            if src not in state.peers:
                state.drop("unknown_peer")
            elif isinstance(msg, StateSync):
                self._on_state_sync(msg, src, now)
            elif isinstance(msg, HomeAgentControl):
                self._on_ha_control(msg, src, now)
            else:
                self._on_hello(msg, src, now)
        else:
            state.drop("unexpected_type")

    def _on_state_sync(self, msg: StateSync, src: IPv6Address, now: float) -> None:
        if msg.ss_type == cp.SS_REQUEST:
            self.sync_out.answer_request(msg, src, now)
        elif msg.ss_type == cp.SS_REPLY:
            self.sync_in.on_reply(msg, src, now)
        elif msg.ss_type == cp.SS_ACK:
            self.sync_out.on_ack(msg.identifier, src, now)
        else:
            self.state.drop("unknown_ss_type")

    def _on_ha_control(self, msg: HomeAgentControl, src: IPv6Address, now: float) -> None:
        state = self.state
        mag = msg.mag_address
        if msg.hac_type == cp.HAC_SWITCHOVER_REQUEST:
            lost = mag is not None and self.heartbeats.mag_unreachable(mag)
            status = self.takeovers.on_request(mag, src, now, heartbeat_lost=lost)
            state.send(HomeAgentControl(cp.HAC_SWITCHOVER_REPLY, status, mag), state.address, src)
        elif msg.hac_type == cp.HAC_SWITCHOVER_REPLY:
            outcome = self.takeovers.on_reply(msg, src)
            if outcome is Outcome.COMPLETE:
                self._complete_takeover(mag, now, f"SO-REP {msg.status}")  # type: ignore[arg-type]
            elif outcome is Outcome.REFUSE:
                self._refuse_takeover(mag, now, f"SO-REP {msg.status}")  # type: ignore[arg-type]
        elif msg.hac_type == cp.HAC_SWITCH_COMPLETE and mag is not None:
            self.takeovers.on_switch_complete(mag, src, now)
        else:
            state.drop("unsupported_ha_control")

    def _on_hello(self, msg: HomeAgentHello, src: IPv6Address, now: float) -> None:
        outcome = self.heartbeats.on_hello(msg, src, now)
        if outcome is HelloOutcome.GOODBYE:
            self._peer_dead(src, now, "lifetime 0")
        elif outcome is HelloOutcome.NEW_ACTIVE:
            self.sync_in.request_full_sync(src, now, self.config.sync_request_timeout)

    # --- what one concern sets off in another --------------------------------------------------

    def _on_dead_timer(self, now: float, address: IPv6Address) -> None:
        self._peer_dead(address, now, "hello timeout")

    def _peer_dead(self, address: IPv6Address, now: float, reason: str) -> None:
        """A peer stopped (dead interval, R=0 goodbye): stop syncing with it, finish takeovers
        waiting on it (R19), and if this LMA is the best survivor take over what it served."""
        peer = self.state.peers[address]
        was_active = self.heartbeats.mark_dead(peer, now, reason)
        if was_active is None:
            return
        self.sync_in.forget_peer(address)
        self.sync_out.forget_peer(address)
        for mag in self.takeovers.waiting_on(address):
            self._complete_takeover(mag, now, "current LMA dead")
        self.heartbeats.survive(peer, was_active, now)

    def _on_switchover_timer(self, now: float, mag: IPv6Address) -> None:
        if self.takeovers.on_switchover_timer(now, mag) is Outcome.COMPLETE:
            self._complete_takeover(mag, now, "no SO-REP")

    def _complete_takeover(self, mag: IPv6Address, now: float, reason: str) -> None:
        """Serve the MAG from now on: answer its held PBUs, then SW-COMP (R11)."""
        ended = self.takeovers.complete(mag, now, reason)
        self._replay(ended, now)
        self.takeovers.confirm(ended)
        if ended.starts_advertising:
            self.heartbeats.send_hello(list(self.state.peers))

    def _refuse_takeover(self, mag: IPv6Address, now: float, reason: str) -> None:
        ended = self.takeovers.refuse(mag, now, reason)
        for datagram in ended.held:
            pbu = self.pbu.decode(datagram)
            self.pbu.reject(pbu, cp.STATUS_ADMINISTRATIVELY_PROHIBITED, now)

    def _replay(self, ended: Ended, now: float) -> None:
        """Process held PBUs as this LMA's own (steps 9-14), through the fast lane where it
        applies; they were counted and admitted when they arrived."""
        held = ended.held
        if self.fast_lane is None:
            indices: Iterator[int] | range = range(len(held))
        else:
            indices = self._through_lane(self.fast_lane.scan(Columns.of(held), now, True), now)
        for i in indices:
            self.pbu.process(self.pbu.decode(held[i]), now, held[i].arrival)  # type: ignore[arg-type]

    def _next_expiry(self) -> float | None:
        cache = self.state.cache
        rows = cache.rows
        return self.state.expiry.next(rows["expires"], rows["state"], len(cache))
