"""The reference LMA engine, sans-IO: RFC 5213 PBU processing over a columnar binding cache, the
RFC 5847 heartbeat responder and originator, and the redundancy layer of the seed draft (HA-HELLO,
State Synchronization, per-MAG hard switch, HA Switch fan-out, virtual switch).

The engine never reads a clock and owns no socket: a driver (or ``lmaload.sim``) hands it batches
of received datagrams with ``receive(batch, now)``, calls ``handle_timer(now)`` when
``next_timer()`` is due, and sends what ``datagrams_to_send()`` returns. ``now`` is Unix time in
seconds; Timestamp options are checked against it.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from typing import Any

import numpy as np

from lmaload._ext.bce_sync import encode_sessions
from lmaload._ext.expiry import ExpiryHeap
from lmaload._ext.lane import PrefixPool, Synced, apply_synced
from lmaload._ext.lma_batch import scan_ss_rep
from lmaload.bulk_types import SyncBatch
from lmaload.measure.histogram import Histogram
from lmaload.protocol.binding_cache import BceState, BindingCache, prefix_key
from lmaload.protocol.config import LmaConfig
from lmaload.protocol.datagrams import Columns, Datagram, Datagrams
from lmaload.protocol.events import Counters, Event, Role
from lmaload.protocol.fast_lane import FastLane
from lmaload.protocol.pmip import ALL_ZERO, ProxyBindingUpdate, build_pba, serial_newer
from lmaload.protocol.redundancy import (
    HaSwitch,
    Peer,
    SyncedSession,
    Takeover,
    hello,
    session_options,
)
from lmaload.protocol.timers import Timers
from lmaload.wire import (
    BindingError,
    BindingUpdate,
    Heartbeat,
    HomeAgentControl,
    HomeAgentHello,
    HomeAgentSwitch,
    HomeNetworkPrefix,
    LmaFailureIndication,
    MagAddress,
    Message,
    MobileNodeIdentifier,
    Option,
    ProxyBindingCacheInformation,
    RestartCounter,
    StateSync,
    Timestamp,
    UnknownMessage,
    WireError,
    decode_mh,
    encode_mh,
)
from lmaload.wire import codepoints as cp
from lmaload.wire.messages import pack_sessions

HAC_SWITCH_STATUS_TAKE_OVER = frozenset({0, 130})
NO_ROWS = np.zeros(0, dtype=np.int64)
NO_COLUMNS = Columns.of([])  # spec-digest §8.5 policy table
MAX_SYNC_REQUEST_TIMEOUT = 30.0


@dataclass
class MagHeartbeat:
    """Heartbeat state towards one MAG (RFC 5847 §3.1, R23)."""

    seq: int = 0
    outstanding: bool = False
    missing: int = 0
    unreachable: bool = False


@dataclass
class SyncChange:
    """A deleted session waiting for the next SS-REP batch — its options, taken while the entry
    was still there — with the PBAs it withholds."""

    options: list[Option]
    pbas: list[Datagram] = field(default_factory=list)


@dataclass
class PendingSync:
    """An SS-REP sent with A=1 and not yet acknowledged by every peer in ``waiting``."""

    data: dict[IPv6Address, bytes]
    waiting: set[IPv6Address]
    pbas: Datagrams
    interval: float
    packed_at: float
    retransmissions: int = 0


class LmaEngine:
    """One LMA. See the module docstring for the driving interface and ``LmaConfig`` for what
    the sync modes guarantee."""

    def __init__(self, config: LmaConfig, now: float) -> None:
        self.config = config
        self.cache = BindingCache()
        self.counters = Counters()
        # From packing an SS-REP to each peer's SS-ACK (µs): pacing and retransmissions included.
        self.sync_ack_latency = Histogram()
        self.events: list[Event] = []
        self.role = Role.INIT if config.role == "auto" else Role(config.role)
        self.owns_lmaa = config.mode == "hard" or self.role is Role.ACTIVE
        self._lmaa: IPv6Address = config.lmaa  # type: ignore[assignment]
        self._wire = config.wire
        self._pool = PrefixPool(config.prefix_pool, config.prefix_length, self.cache.prefix_index)
        self._timers = Timers()
        self._expiry = ExpiryHeap()  # binding cache lifetimes (and MinDelayBeforeBCEDelete)
        self._out = Datagrams()
        # Restart Counter advertised for the LMAA: in virtual mode the group's, synced (R30).
        self._lmaa_restart_counter = config.restart_counter
        self._peers = {a: Peer(a, hello_interval=config.hello_interval) for a in config.peers}
        self._hello_seq = 0
        self._taken: set[IPv6Address] = set()  # MAGs this LMA took over (partial switchover)
        self._moved: dict[IPv6Address, IPv6Address] = {}  # MAG → the LMA it switched over to
        self._recovered: set[IPv6Address] = set()  # MAGs taken over from another LMA
        self._takeovers: dict[IPv6Address, Takeover] = {}
        self._ha_switches: dict[IPv6Address, HaSwitch] = {}
        self._tunnels: dict[bytes, int] = {}  # packed MAG address → tunnel interface id
        self._hb_seq = 0
        self._heartbeats: dict[IPv6Address, MagHeartbeat] = {}
        # Changes for the next SS-REP batch: deleted sessions by (MN-ID, first prefix key), and
        # the rows of live ones (read when packed), with the PBAs they withhold in before-ack.
        self._sync_deleted: dict[tuple[bytes, bytes], SyncChange] = {}
        self._sync_live: list[np.ndarray] = []
        self._sync_held: list[tuple[np.ndarray, Columns]] = []  # rows and the PBAs they withhold
        self._sync_queue: deque[Datagram] = deque()
        self._sync_next_send = now
        self._sync_id = 0
        self._sync_pending: dict[int, PendingSync] = {}
        self._sync_requests: dict[IPv6Address, tuple[int, float]] = {}  # peer → (Id, interval)
        self._rng = random.Random(int(config.address))
        self._fast = FastLane(self) if self._fast_lane_applies() else None
        self._timers.arm(("hello",), now)
        self._timers.arm(("heartbeat",), now + config.heartbeat_interval)
        self._event(now, "role", role=self.role.value, reason="start")
        if self.role is Role.INIT:
            self._timers.arm(("init",), now + config.dead_interval_factor * config.hello_interval)

    # --- driving interface ---------------------------------------------------------------------

    def receive(self, datagrams: Datagrams, now: float) -> None:
        """Process a batch of received Mobility Headers, counting them in ``datagrams.done``.
        Columns go through the compiled fast lane where it applies (``fast_lane``)."""
        for part in datagrams.parts():
            if isinstance(part, Columns):
                self._receive_columns(part, now, datagrams)
            else:
                self._receive_datagram(part, now)
                datagrams.done += 1
        self._flush_sync(now)

    def datagrams_to_send(self) -> Datagrams:
        """Everything the engine has to send; the engine forgets it."""
        out, self._out = self._out, Datagrams()
        return out

    def next_timer(self) -> float | None:
        """When ``handle_timer`` must next be called (Unix seconds), or None."""
        timer, expiry = self._timers.next(), self._next_expiry()
        if timer is None or expiry is None:
            return expiry if timer is None else timer
        return min(timer, expiry)

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now``, and end the entries whose time is up, in time order
        (timers first at equal times)."""
        while True:
            timer, expiry = self._timers.next(), self._next_expiry()
            if expiry is not None and expiry <= now and (timer is None or expiry < timer):
                rows = self.cache.rows
                for row in self._expiry.pop_due(expiry, rows["expires"], rows["state"]):
                    self._expire(now, int(row))
                continue
            key = self._timers.pop_due(now)
            if key is None:
                break
            kind, *args = key  # type: ignore[misc]
            getattr(self, f"_timer_{kind}")(now, *args)
        self._flush_sync(now)

    @property
    def bce_count(self) -> int:
        """Binding cache entries this LMA serves."""
        return self.cache.count(BceState.ACTIVE)

    @property
    def fast_lane_pbus(self) -> int:
        """PBUs the compiled fast lane processed (``fast_lane``)."""
        return 0 if self._fast is None else self._fast.taken

    @property
    def peers_alive(self) -> int:
        """Peer LMAs whose HA-HELLOs are current."""
        return len(self._sync_targets())

    @property
    def sync_backlog(self) -> int:
        """SS-REPs waiting for a pacing slot plus those waiting for an SS-ACK."""
        return len(self._sync_queue) + len(self._sync_pending)

    # --- receive dispatch ----------------------------------------------------------------------

    def _receive_datagram(self, datagram: Datagram, now: float, compiled: bool = False) -> None:
        """One datagram by the reference path; ``compiled``: it came in columns, and an SS-REP
        is read by the compiled scan where it can be."""
        data, src, dst, arrival = datagram
        self._receive_one(data, src, dst, now, now if arrival is None else arrival, compiled)

    def _receive_columns(self, columns: Columns, now: float, batch: Datagrams) -> None:
        if self._fast is None:
            for i in range(len(columns)):
                self._receive_datagram(columns.datagram(i), now)
                batch.done += 1
            return

        base = batch.done

        def slow(i: int) -> None:
            batch.done = base + i  # the lane took those before it
            self._receive_datagram(columns.datagram(i), now, compiled=True)

        self._fast.receive(columns, now, slow, self._lane_accepted)
        batch.done = base + len(columns)

    def _lane_accepted(self, rows: np.ndarray, expires: np.ndarray) -> None:
        """Follow-up of PBUs the fast lane accepted: their entries' expiry and sync."""
        self._expiry.push_many(rows, expires)
        self._sync_live.append(rows)

    def _fast_lane_applies(self) -> bool:
        """The lane authorises everyone (see ``fast_lane``)."""
        policy = self.config.policy
        return (
            policy.authorized_mags is None
            and policy.authorized_mns is None
            and not policy.pmip_disabled_mns
        )

    def _withholds_pbas(self) -> bool:
        """before-ack with a standby alive: PBAs wait for the SS-ACK of their change."""
        return self.config.sync == "before-ack" and bool(self._sync_targets())

    def _ownership(self) -> tuple[object, ...]:
        """Everything that decides which MAGs' PBUs the fast lane may take (``fast_lane``)."""
        return (
            self.role,
            self.owns_lmaa,
            frozenset(self._moved.items()),
            frozenset(self._taken),
            frozenset(self._recovered),
            frozenset(self._ha_switches),
            frozenset(self._takeovers),
        )

    def _receive_one(
        self,
        data: bytes,
        src: IPv6Address,
        dst: IPv6Address,
        now: float,
        arrival: float,
        compiled: bool = False,
    ) -> None:
        if dst != self.config.address and not (dst == self._lmaa and self.owns_lmaa):
            self._drop("not_local")
            return
        if (
            compiled
            and len(data) > 8
            and data[2] == self._wire.mh_state_sync
            and src in self._peers
            and (scanned := scan_ss_rep(data, src.packed, dst.packed, self._wire)) is not None
        ):
            self._on_scanned_sync_reply(data, scanned, src, now)
            return
        try:
            decoded = decode_mh(data, src, dst, self._wire)
        except WireError:
            self._drop("malformed")
            return
        if decoded.checksum_ok is False:
            self._drop("checksum")
            return
        msg = decoded.message
        if isinstance(msg, BindingUpdate):
            self._on_pbu(msg, Datagram(data, src, dst, arrival), now)
        elif isinstance(msg, Heartbeat):
            self._on_heartbeat(msg, src, dst, now)
        elif isinstance(msg, UnknownMessage):
            self.counters.binding_errors_sent += 1
            self._drop("unknown_type")
            self._send(BindingError(2), dst, src)
        elif isinstance(msg, HomeAgentControl) and src not in self._peers:
            if msg.hac_type == cp.HAC_SWITCHOVER_REQUEST:
                self._send(
                    HomeAgentControl(cp.HAC_SWITCHOVER_REPLY, 132, msg.mag_address), dst, src
                )
            self._drop("unknown_peer")
        elif isinstance(msg, StateSync | HomeAgentControl | HomeAgentHello):
            if src not in self._peers:
                self._drop("unknown_peer")
            elif isinstance(msg, StateSync):
                self._on_state_sync(msg, src, now)
            elif isinstance(msg, HomeAgentControl):
                self._on_ha_control(msg, src, now)
            else:
                self._on_hello(msg, src, now)
        else:
            self._drop("unexpected_type")

    # --- PBU processing (RFC 5213 §5.3, spec-digest §3.2) ---------------------------------------

    def _on_pbu(self, msg: BindingUpdate, datagram: Datagram, now: float) -> None:
        """``datagram.arrival``: the LMA clock when the PBU reached this host, which its
        Timestamp is checked against (spec-digest §3.4), so that time it spends queued here (a
        failover burst) does not push a punctual MAG out of the window."""
        _, src, dst, arrival = datagram
        assert arrival is not None
        self.counters.pbu_processed += 1
        if not msg.flags & cp.BU_FLAG_P:
            self._drop("not_proxy")
            return
        pbu = ProxyBindingUpdate.parse(msg, src, dst)
        mag = pbu.proxy_coa
        if mag in self._ha_switches:  # the PBU is the HA Switch's acknowledgement (§1.3)
            del self._ha_switches[mag]
            self._timers.cancel(("has", mag))
        status = self._admit(pbu)
        if status is not None:
            self._reject(pbu, status, now)
        elif self._serves(mag, dst):
            self._process(pbu, now, arrival)
        elif pbu.lfi is not None and self.config.mode == "hard":
            self._queue_takeover(pbu, datagram, now)
        else:
            self._reject(pbu, cp.STATUS_NOT_LMA_FOR_THIS_MOBILE_NODE, now)

    def _admit(self, pbu: ProxyBindingUpdate) -> int | None:
        """Steps 4-8: MN-ID present, MAG and MN authorised, proxy registration enabled.

        Deviation: the "not serving this MAG" check (153, or the hard-switch takeover) runs after
        step 8 so that a PBU refused by policy never opens a takeover.
        """
        policy = self.config.policy
        if pbu.mn_id is None:
            return cp.STATUS_MISSING_MN_IDENTIFIER_OPTION
        if policy.authorized_mags is not None and pbu.proxy_coa not in policy.authorized_mags:
            return cp.STATUS_MAG_NOT_AUTHORIZED_FOR_PROXY_REG
        mn = pbu.mn_id.identifier
        if policy.authorized_mns is not None and mn not in policy.authorized_mns:
            return cp.STATUS_NOT_LMA_FOR_THIS_MOBILE_NODE
        if mn in policy.pmip_disabled_mns:
            return cp.STATUS_PROXY_REG_NOT_ENABLED
        return None

    def _process(self, pbu: ProxyBindingUpdate, now: float, arrival: float) -> None:
        """Steps 9-14 for an admitted PBU this LMA serves. ``arrival`` is when it was received
        (a PBU queued during a takeover is checked against the window at its arrival)."""
        row, lookup_status = self._lookup(pbu)
        status = self._check_order(pbu, row, arrival)
        if status is not None:
            if status == cp.STATUS_SEQUENCE_OUT_OF_WINDOW:
                self._reject(pbu, status, now, sequence=self.cache.get(row, "seq"))
            else:
                self._reject(pbu, status, now, timestamp=Timestamp.from_unix(now))
            return
        for missing, code in (
            (not pbu.prefixes, cp.STATUS_MISSING_HOME_NETWORK_PREFIX_OPTION),
            (pbu.hi is None, cp.STATUS_MISSING_HANDOFF_INDICATOR_OPTION),
            (pbu.att is None, cp.STATUS_MISSING_ACCESS_TECH_TYPE_OPTION),
        ):
            if missing:
                self._reject(pbu, code, now)
                return
        if lookup_status is not None:
            self._reject(pbu, lookup_status, now)
        elif pbu.message.lifetime == 0:
            self._deregister(pbu, row, now)
        elif row is not None:
            self._accept(pbu, row, now)
        elif self._is_recovery(pbu) and self.config.no_synced_state == "reject":
            self._event(now, "no_synced_state", mag=str(pbu.proxy_coa), mn=pbu.mn_id.identifier)  # type: ignore[union-attr]
            self._reject(pbu, cp.STATUS_NOT_LMA_FOR_THIS_MOBILE_NODE, now)
        else:
            self._new_session(pbu, now)

    def _lookup(self, pbu: ProxyBindingUpdate) -> tuple[int | None, int | None]:
        """The BCE the PBU is about (spec-digest §3.2.1), or None for a new session; and the
        rejection (155, 159) the lookup calls for."""
        mn = pbu.mn_id.identifier  # type: ignore[union-attr]
        explicit = pbu.explicit_prefixes()
        if explicit:
            rows = {self.cache.by_prefix(p) for p in explicit} - {None}
            if not rows:
                return None, None
            if len(rows) > 1:
                return None, cp.STATUS_BCE_PBU_PREFIX_SET_DO_NOT_MATCH
            row = rows.pop()
            assert row is not None
            if self.cache.mn_ids[row] != mn:
                return None, cp.STATUS_NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX
            if set(self.cache.prefixes(row)) != set(explicit):
                return row, cp.STATUS_BCE_PBU_PREFIX_SET_DO_NOT_MATCH
            return row, None
        candidates = [
            r
            for r in self.cache.by_mn(mn)
            if pbu.ll_id is None
            or (self.cache.ll_ids[r] == pbu.ll_id and self.cache.get(r, "att") == pbu.att)
        ]
        if len(candidates) != 1:
            return None, None
        # Deviation: HI 4 updates the BCE at once instead of waiting MaxDelayBeforeNewBCEAssign
        # for the previous MAG's de-registration.
        if pbu.message.lifetime == 0 or pbu.hi in (
            cp.HI_HANDOFF_BETWEEN_INTERFACES,
            cp.HI_HANDOFF_BETWEEN_MAGS,
            cp.HI_UNKNOWN,
        ):
            return candidates[0], None
        return None, None

    def _check_order(self, pbu: ProxyBindingUpdate, row: int | None, arrival: float) -> int | None:
        """Step 9, spec-digest §3.4: Timestamp (156, 157) or sequence number (135)."""
        ts = pbu.timestamp
        if ts is not None:
            if abs(ts.seconds - arrival) > self.config.timestamp_validity_window:
                return cp.STATUS_TIMESTAMP_MISMATCH
            if row is not None and ts.value <= self.cache.get(row, "ts"):
                return cp.STATUS_TIMESTAMP_LOWER_THAN_PREV_ACCEPTED
            return None
        if row is not None and not serial_newer(pbu.message.sequence, self.cache.get(row, "seq")):
            return cp.STATUS_SEQUENCE_OUT_OF_WINDOW
        return None

    def _is_recovery(self, pbu: ProxyBindingUpdate) -> bool:
        """A PBU re-registering a session that should have been synced (spec-digest §8.5): it
        carries an LFI, or it is a re-registration (HI 5) from a MAG taken over."""
        return pbu.lfi is not None or (
            pbu.hi == cp.HI_NOT_CHANGED and pbu.proxy_coa in self._recovered
        )

    def _new_session(self, pbu: ProxyBindingUpdate, now: float) -> None:
        """RFC 5213 §5.3.2: the requested prefixes if authorised (else 155), or one allocated
        for an ALL_ZERO HNP (none left: 130)."""
        explicit = pbu.explicit_prefixes()
        if explicit:
            networks = self.config.home_networks
            if not all(any(p.subnet_of(n) for n in networks) for p in explicit):
                self._reject(pbu, cp.STATUS_NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, now)
                return
            keys = tuple(prefix_key(p) for p in explicit)
        else:
            key = self._pool.allocate()
            if key is None:
                self._reject(pbu, cp.STATUS_INSUFFICIENT_RESOURCES, now)
                return
            keys = (key,)
        mn = pbu.mn_id.identifier  # type: ignore[union-attr]
        row = self.cache.insert(
            mn,
            keys,
            pbu.ll_id,
            state=BceState.ACTIVE,
            proxy_coa=pbu.proxy_coa,
            anchor=self.config.address,
        )
        self._accept(pbu, row, now)

    def _accept(self, pbu: ProxyBindingUpdate, row: int, now: float) -> None:
        """Create, refresh (HI 5, same Proxy-CoA), hand off (new Proxy-CoA), revive or adopt a
        synced entry, and answer PBA 0."""
        msg = pbu.message
        mag = pbu.proxy_coa
        lla = self.cache.get(row, "lla")
        if pbu.lla is not None and lla == ALL_ZERO:
            lla = pbu.lla if pbu.lla != ALL_ZERO else _link_local(self.cache.mn_ids[row])
        expires = now + 4 * msg.lifetime
        self.cache.set(
            row,
            state=BceState.ACTIVE,
            anchor=self.config.address,
            flags=msg.flags,
            seq=msg.sequence,
            lifetime=msg.lifetime,
            expires=expires,
            ts=pbu.timestamp.value if pbu.timestamp is not None else 0,
            att=pbu.att,
            hi=pbu.hi,
            proxy_coa=mag,
            lla=lla,
            tunnel=self._tunnels.setdefault(mag.packed, len(self._tunnels) + 1),
        )
        self._expiry.push(row, expires)
        pba = build_pba(
            pbu,
            cp.STATUS_ACCEPTED,
            lifetime=msg.lifetime,
            prefixes=self.cache.prefixes(row),
            lla=lla,
        )
        self._record_change(row, now, deleted=False, pba=self._pba_datagram(pbu, pba))

    def _deregister(self, pbu: ProxyBindingUpdate, row: int | None, now: float) -> None:
        """Lifetime 0: ignored unless it comes from the registered Proxy-CoA; the entry is kept
        MinDelayBeforeBCEDelete, and a valid PBU meanwhile revives it (§3.2)."""
        if row is None or self.cache.get(row, "proxy_coa") != pbu.proxy_coa:
            self._drop("deregistration_ignored")
            return
        msg = pbu.message
        expires = now + self.config.min_delay_before_bce_delete
        self.cache.set(
            row,
            state=BceState.DEREGISTERED,
            flags=msg.flags,
            seq=msg.sequence,
            lifetime=0,
            expires=expires,
            ts=pbu.timestamp.value if pbu.timestamp is not None else 0,
            hi=pbu.hi,
        )
        self._expiry.push(row, expires)
        lla = self.cache.get(row, "lla")
        pba = build_pba(pbu, cp.STATUS_ACCEPTED, prefixes=self.cache.prefixes(row), lla=lla)
        self._record_change(row, now, deleted=True, pba=self._pba_datagram(pbu, pba))

    def _reject(
        self,
        pbu: ProxyBindingUpdate,
        status: int,
        now: float,
        *,
        sequence: int | None = None,
        timestamp: Timestamp | None = None,
    ) -> None:
        pba = build_pba(pbu, status, sequence=sequence, timestamp=timestamp)
        self._out.extend([self._pba_datagram(pbu, pba)])

    def _pba_datagram(self, pbu: ProxyBindingUpdate, pba: Message) -> Datagram:
        self.counters.pba_status[pba.status] += 1  # type: ignore[attr-defined]
        return Datagram(encode_mh(pba, pbu.dst, pbu.src, self._wire), pbu.dst, pbu.src)

    def _delete(self, row: int) -> None:
        for key in self.cache.prefix_keys[row]:
            self._pool.release(key)
        self.cache.delete(row)

    def _next_expiry(self) -> float | None:
        rows = self.cache.rows
        return self._expiry.next(rows["expires"], rows["state"])

    def _expire(self, now: float, row: int) -> None:
        """The end of a lifetime, or of MinDelayBeforeBCEDelete after a de-registration."""
        state = self.cache.state(row)
        if state is BceState.ACTIVE:
            self.counters.bce_expired += 1
            self._record_change(row, now, deleted=True, pba=None)
        if state is not BceState.FREE:
            self._delete(row)

    def _serves(self, mag: IPv6Address, dst: IPv6Address) -> bool:
        """Whether PBUs from ``mag`` sent to ``dst`` are this LMA's to answer (spec-digest §8.8:
        per-MAG ownership after a partial switchover)."""
        if self.config.mode == "virtual":
            return self.owns_lmaa and dst == self._lmaa and mag not in self._moved
        if mag in self._taken:
            return True
        return mag not in self._moved and self.role is Role.ACTIVE

    # --- heartbeat (RFC 5847, spec-digest §4) ---------------------------------------------------

    def _on_heartbeat(self, msg: Heartbeat, src: IPv6Address, dst: IPv6Address, now: float) -> None:
        if msg.is_response:
            state = self._heartbeats.get(src)
            if msg.flags & cp.HB_FLAG_U or state is None or state.seq != msg.sequence:
                self._drop("unmatched_heartbeat")
                return
            self.counters.heartbeat_responses_received += 1
            state.outstanding = False
            state.missing = 0
            if state.unreachable:
                state.unreachable = False
                self._event(now, "mag_reachable", mag=str(src))
            return
        counter = self._lmaa_restart_counter if dst == self._lmaa else self.config.restart_counter
        self.counters.heartbeat_requests_answered += 1
        self._send(Heartbeat(msg.sequence, cp.HB_FLAG_R, (RestartCounter(counter),)), dst, src)

    def _timer_heartbeat(self, now: float) -> None:
        """Probe every MAG this LMA has bindings with. Losing one is only recorded: an LMA must
        not start a failover on heartbeat loss (spec-digest §4, last bullet)."""
        served = self._served_mags()
        for mag in set(self._heartbeats) - served:
            del self._heartbeats[mag]
        for mag in sorted(served):
            state = self._heartbeats.setdefault(mag, MagHeartbeat())
            if state.outstanding:
                state.missing += 1
                if state.missing > self.config.missing_heartbeats_allowed and not state.unreachable:
                    state.unreachable = True
                    self._event(now, "mag_unreachable", mag=str(mag), missing=state.missing)
            self._hb_seq = (self._hb_seq + 1) & 0xFFFFFFFF
            state.seq = self._hb_seq
            state.outstanding = True
            self.counters.heartbeat_requests_sent += 1
            self._send(Heartbeat(state.seq), self._lmaa, mag)
        self._timers.arm(("heartbeat",), now + self.config.heartbeat_interval)

    def _served_mags(self) -> set[IPv6Address]:
        if not self.owns_lmaa:
            return set()
        rows = self.cache.rows
        active = rows["proxy_coa"][rows["state"] == BceState.ACTIVE]
        return {IPv6Address(bytes(a)) for a in {a.tobytes() for a in active}}

    # --- HA-HELLO and peer liveness (spec-digest §7.4, §8.6) ------------------------------------

    def _timer_hello(self, now: float) -> None:
        first = self.counters.hello_sent == 0
        self._send_hello(list(self._peers), request=first)
        self._timers.arm(("hello",), now + self.config.hello_interval)

    def _send_hello(self, to: list[IPv6Address], request: bool = False) -> None:
        flags = cp.HELLO_FLAG_A if self.role is Role.ACTIVE or self._taken else 0
        if request:
            flags |= cp.HELLO_FLAG_R
        message = hello(self.config, self._hello_seq, flags)
        for peer in to:
            self.counters.hello_sent += 1
            self._send(message, self.config.address, peer)
        self._hello_seq = (self._hello_seq + 1) & 0xFFFF

    def _on_hello(self, msg: HomeAgentHello, src: IPv6Address, now: float) -> None:
        peer = self._peers[src]
        if msg.group_id != self.config.group_id:
            self._drop("other_group")
            return
        if (
            peer.alive
            and peer.last_seq is not None
            and not serial_newer(msg.sequence, peer.last_seq)
        ):
            self._drop("stale_hello")
            return
        self.counters.hello_received += 1
        was_alive, was_active = peer.alive, peer.active
        peer.last_seq = msg.sequence
        peer.preference = msg.preference
        peer.hello_interval = max(1, msg.hello_interval)
        peer.active = bool(msg.flags & cp.HELLO_FLAG_A)
        if msg.lifetime == 0:  # goodbye (R22)
            peer.alive = True
            self._peer_dead(peer, now, "lifetime 0")
            return
        peer.alive = True
        self._timers.arm(
            ("dead", src), now + self.config.dead_interval_factor * peer.hello_interval
        )
        if not was_alive:
            self._event(now, "peer_up", peer=str(src), active=peer.active)
        if msg.flags & cp.HELLO_FLAG_R:
            self._send_hello([src])
        if peer.active and self.role is Role.INIT:
            self._settle(now, f"active peer {src}")
        if peer.active and not (was_alive and was_active):
            self._send_sync_request(src, now, self.config.sync_request_timeout)

    def _timer_init(self, now: float) -> None:
        """One dead interval after an INIT start: no peer said it is active, so the best live
        LMA of the set — this one or a peer — becomes active (spec-digest §8.8)."""
        if self.role is Role.INIT:
            self._settle(now, "no active peer")

    def _settle(self, now: float, reason: str) -> None:
        """Leave INIT: standby beside a live active peer or a better live peer, else active."""
        self._timers.cancel(("init",))
        mine = (self.config.preference, int(self.config.address))
        alive = [p for p in self._peers.values() if p.alive]
        if any(p.active or (p.preference, int(p.address)) > mine for p in alive):
            self.role = Role.STANDBY
            self._event(now, "role", role=Role.STANDBY.value, reason=reason)
            self._send_hello(list(self._peers))
        else:
            self._become_active(now, reason)

    def _timer_dead(self, now: float, address: IPv6Address) -> None:
        self._peer_dead(self._peers[address], now, "hello timeout")

    def _peer_dead(self, peer: Peer, now: float, reason: str) -> None:
        """A peer stopped (dead interval, R=0 goodbye): stop syncing to it, finish takeovers
        waiting on it (R19), and if this LMA is the best survivor take over what it served —
        virtual: own the LMAA; hard: HA Switch to each of its MAGs (§8.6, R28)."""
        if not peer.alive:
            return
        was_active = peer.active
        peer.alive = peer.active = False
        self._timers.cancel(("dead", peer.address))
        self._timers.cancel(("ssreq", peer.address))
        self._sync_requests.pop(peer.address, None)
        self._event(now, "peer_dead", peer=str(peer.address), reason=reason, active=was_active)
        for ident, pending in list(self._sync_pending.items()):
            pending.waiting.discard(peer.address)
            if not pending.waiting:
                self._finish_sync(ident)
        for mag, takeover in list(self._takeovers.items()):
            if takeover.current == peer.address:
                self._complete_takeover(mag, now, "current LMA dead")
        mine = (self.config.preference, int(self.config.address))
        if any((p.preference, int(p.address)) > mine for p in self._peers.values() if p.alive):
            return
        anchored = self._rows_anchored_at(peer.address)
        if self.config.mode == "virtual":
            if was_active and not self.owns_lmaa:
                self._become_active(now, f"peer {peer.address} dead")
                for row in anchored:
                    self.cache.set(int(row), state=BceState.ACTIVE, anchor=self.config.address)
            return
        if was_active and self.role is Role.STANDBY:
            self._become_active(now, f"peer {peer.address} dead")
        mags = sorted({self.cache.get(int(r), "proxy_coa") for r in anchored})
        for i, mag in enumerate(mags):
            self._moved.pop(mag, None)
            self._recovered.add(mag)
            self._ha_switches[mag] = HaSwitch(
                mag, peer.address, self.config.ha_switch_initial_timeout
            )
            self._timers.arm(("has", mag), now + i / self.config.ha_switch_pacing_rate)
        if mags:
            self._event(now, "ha_switch_fanout", failed=str(peer.address), mags=len(mags))

    def _rows_anchored_at(self, lma: IPv6Address) -> list[int]:
        rows = self.cache.rows
        synced = rows["state"] == BceState.SYNCED
        anchored = (rows["anchor"] == list(lma.packed)).all(axis=1)
        return [int(r) for r in (synced & anchored).nonzero()[0]]

    def _become_active(self, now: float, reason: str) -> None:
        self.role = Role.ACTIVE
        self._event(now, "role", role=Role.ACTIVE.value, reason=reason)
        if self.config.mode == "virtual" and not self.owns_lmaa:
            self.owns_lmaa = True
            self._event(now, "lmaa_acquired", lmaa=str(self._lmaa))
        self._send_hello(list(self._peers))

    def _timer_has(self, now: float, mag: IPv6Address) -> None:
        """(Re)send the HA Switch to ``mag``: 5 s doubling to 20 s, while sessions of the failed
        LMA at that MAG are still waiting to be re-registered."""
        switch = self._ha_switches.get(mag)
        if switch is None:
            return
        if not self.cache.by_mag(mag) & set(self._rows_anchored_at(switch.failed)):
            del self._ha_switches[mag]
            return
        has = HomeAgentSwitch((self._lmaa,), 0, (LmaFailureIndication(switch.failed),))
        self.counters.ha_switch_sent += 1
        self._send(has, self._lmaa, mag)
        self._timers.arm(("has", mag), now + switch.interval)
        switch.interval = min(2 * switch.interval, self.config.ha_switch_max_timeout)

    # --- hard switch per MAG (seed Figure 3, spec-digest §8.5, R16, R17, R29) ------------------

    def _queue_takeover(self, pbu: ProxyBindingUpdate, datagram: Datagram, now: float) -> None:
        """Hold a PBU+LFI; the first one of a MAG sends the SO-REQ naming that MAG."""
        mag = pbu.proxy_coa
        key = (pbu.mn_id.identifier, pbu.ll_id, pbu.att)  # type: ignore[union-attr]
        takeover = self._takeovers.get(mag)
        if takeover is not None:
            takeover.hold(key, datagram)
            return
        current = self._current_lma_of(mag, pbu.lfi.lmaa)  # type: ignore[union-attr]
        takeover = Takeover(mag, current, self.config.switchover_initial_timeout)
        takeover.hold(key, datagram)
        self._takeovers[mag] = takeover
        self._event(now, "switchover_started", mag=str(mag), current=str(current))
        if not self._peers[current].alive:
            self._complete_takeover(mag, now, "current LMA not alive")
            return
        self._send_switchover_request(takeover)
        self._timers.arm(("so", mag), now + takeover.interval)

    def _current_lma_of(self, mag: IPv6Address, named: IPv6Address) -> IPv6Address:
        """The LMA to ask: the one the LFI names if it is a peer, else the anchor of the MAG's
        synced sessions, else the first peer."""
        if named in self._peers:
            return named
        for row in self.cache.by_mag(mag):
            anchor = self.cache.get(row, "anchor")
            if anchor in self._peers:
                return anchor
        return next(iter(self._peers))

    def _send_switchover_request(self, takeover: Takeover) -> None:
        self.counters.so_req_sent += 1
        request = HomeAgentControl(cp.HAC_SWITCHOVER_REQUEST, 0, takeover.mag)
        self._send(request, self.config.address, takeover.current)

    def _timer_so(self, now: float, mag: IPv6Address) -> None:
        takeover = self._takeovers[mag]
        if takeover.interval < self.config.switchover_max_timeout:
            takeover.interval *= 2
            self._send_switchover_request(takeover)
            self._timers.arm(("so", mag), now + takeover.interval)
        elif self.config.takeover_on_so_timeout:
            self._complete_takeover(mag, now, "no SO-REP")
        else:
            self._refuse_takeover(mag, now, "no SO-REP")

    def _complete_takeover(self, mag: IPv6Address, now: float, reason: str) -> None:
        """Serve the MAG from now on: answer its queued PBUs, then SW-COMP (R11)."""
        takeover = self._takeovers.pop(mag)
        self._timers.cancel(("so", mag))
        was_advertising = self.role is Role.ACTIVE or bool(self._taken)
        self._taken.add(mag)
        self._moved.pop(mag, None)
        self._recovered.add(mag)
        self._event(
            now, "switchover_done", mag=str(mag), reason=reason, queued=len(takeover.queued)
        )
        self._replay(list(takeover.queued.values()), now)
        current = self._peers[takeover.current]
        if self.config.send_switch_complete and current.alive:
            complete = HomeAgentControl(cp.HAC_SWITCH_COMPLETE, 0, mag)
            self._send(complete, self.config.address, current.address)
        if not was_advertising:
            self._send_hello(list(self._peers))

    def _refuse_takeover(self, mag: IPv6Address, now: float, reason: str) -> None:
        takeover = self._takeovers.pop(mag)
        self._timers.cancel(("so", mag))
        self._event(now, "switchover_refused", mag=str(mag), reason=reason)
        for datagram in takeover.queued.values():
            self._reject(self._held_pbu(datagram), cp.STATUS_ADMINISTRATIVELY_PROHIBITED, now)

    def _replay(self, held: list[Datagram], now: float) -> None:
        """Process held PBUs as this LMA's own (steps 9-14), through the fast lane where it
        applies; they were counted and admitted when they arrived."""
        if self._fast is None:
            for datagram in held:
                self._process(self._held_pbu(datagram), now, datagram.arrival)  # type: ignore[arg-type]
            return

        def slow(i: int) -> None:
            self._process(self._held_pbu(held[i]), now, held[i].arrival)  # type: ignore[arg-type]

        self._fast.receive(Columns.of(held), now, slow, self._lane_accepted, replay=True)

    def _held_pbu(self, datagram: Datagram) -> ProxyBindingUpdate:
        data, src, dst, _ = datagram
        msg = decode_mh(data, src, dst, self._wire).message
        return ProxyBindingUpdate.parse(msg, src, dst)  # type: ignore[arg-type]

    def _on_ha_control(self, msg: HomeAgentControl, src: IPv6Address, now: float) -> None:
        mag = msg.mag_address
        if msg.hac_type == cp.HAC_SWITCHOVER_REQUEST:
            status = self._switchover_requested(mag, src, now)
            reply = HomeAgentControl(cp.HAC_SWITCHOVER_REPLY, status, mag)
            self._send(reply, self.config.address, src)
        elif msg.hac_type == cp.HAC_SWITCHOVER_REPLY:
            takeover = self._takeovers.get(mag) if mag is not None else None
            if takeover is None or takeover.current != src:
                self._drop("unsolicited_so_rep")
            elif msg.status in HAC_SWITCH_STATUS_TAKE_OVER:
                self._complete_takeover(mag, now, f"SO-REP {msg.status}")  # type: ignore[arg-type]
            else:
                self._refuse_takeover(mag, now, f"SO-REP {msg.status}")  # type: ignore[arg-type]
        elif msg.hac_type == cp.HAC_SWITCH_COMPLETE and mag is not None:
            for row in list(self.cache.by_mag(mag)):
                if self.cache.state(row) is BceState.MOVED:
                    self._delete(row)
            self._event(now, "switch_complete", mag=str(mag), by=str(src))
        else:
            self._drop("unsupported_ha_control")

    def _switchover_requested(self, mag: IPv6Address | None, src: IPv6Address, now: float) -> int:
        """SO-REQ at the current LMA: with a MAG Address, yield that MAG only (R17) — keep
        serving the others; without, the base HA-rel full switchover."""
        if mag is None:
            if self.role is not Role.ACTIVE:
                return 130
            self.role = Role.STANDBY
            self.owns_lmaa = self.config.mode == "hard"
            self._event(now, "role", role=Role.STANDBY.value, reason=f"SO-REQ from {src}")
            return 0
        if self._moved.get(mag) == src:
            return 0  # a retransmitted SO-REQ
        if not self._serves(mag, self._lmaa):
            return 130
        if not self.config.accept_partial_switchover:
            return 129
        self._moved[mag] = src
        self._taken.discard(mag)
        for row in self.cache.by_mag(mag):
            if self.cache.state(row) is BceState.ACTIVE:
                self.cache.set(row, state=BceState.MOVED)
        heartbeat = self._heartbeats.get(mag)
        self._event(
            now,
            "partial_switchover",
            mag=str(mag),
            to=str(src),
            heartbeat_lost=bool(heartbeat and heartbeat.unreachable),
        )
        return 0

    # --- State Synchronization (spec-digest §7.2, §8.1, R14, R15, R27) --------------------------

    def _record_change(self, row: int, now: float, deleted: bool, pba: Datagram | None) -> None:
        """Queue a binding change for the next SS-REP batch; in before-ack mode the PBA waits
        for the standby's SS-ACK, otherwise it goes now. A live entry is read when packed; a
        deleted one is described now, while it is still there."""
        rows = np.array([row], dtype=np.int64)
        if deleted:
            key = (self.cache.mn_ids[row], self.cache.prefix_keys[row][0])
            change = self._sync_deleted.setdefault(key, SyncChange([]))
            change.options = session_options(self.cache, row, now, deleted=True)
        else:
            self._sync_live.append(rows)
        if pba is None:
            return
        if not self._withholds_pbas():
            self._out.extend([pba])
        elif deleted:
            change.pbas.append(pba)
        else:
            self._hold_pbas(rows, Columns.of([pba]))

    def _hold_pbas(self, rows: np.ndarray, pbas: Columns) -> None:
        """before-ack: withhold the PBA ``pbas[i]`` until the SS-REP carrying ``rows[i]`` is
        acknowledged."""
        self._sync_held.append((rows, pbas))

    def _sync_targets(self) -> list[IPv6Address]:
        return [p.address for p in self._peers.values() if p.alive]

    def _lead_options(self) -> list[Option]:
        """Options before the first PBCI of every SS-REP: our Restart Counter, so that a
        virtual-switch standby answers heartbeats with the group's value (R30). Deviation: HA-rel
        puts nothing outside a session; receivers that do not know this skip it."""
        return [RestartCounter(self._lmaa_restart_counter)]

    def _flush_sync(self, now: float) -> None:
        self._timer_pace(now)

    def _has_changes(self) -> bool:
        return bool(self._sync_deleted or self._sync_live or self._sync_held)

    def _pack_changes(self, now: float) -> None:
        """Every binding change recorded since the last pacing slot, into SS-REPs: the deleted
        sessions, then the live entries changed (each once, as they are now)."""
        deleted = list(self._sync_deleted.values())
        self._sync_deleted.clear()
        held_rows, held = self._held_pbas()
        targets = self._sync_targets()
        if not targets:
            self._sync_live = []
            for change in deleted:
                self._out.extend(change.pbas)
            self._out.extend([held])
            return
        if deleted:
            messages = pack_sessions(self._lead_options(), [c.options for c in deleted])
            for options, carried in messages:
                ident = self._next_sync_id()
                rep = StateSync(cp.SS_REPLY, ident, cp.SS_FLAG_A, tuple(options))
                data = {t: encode_mh(rep, self.config.address, t, self._wire) for t in targets}
                pbas = Datagrams(p for i in carried for p in deleted[i].pbas)
                self._send_sync(ident, data, targets, pbas, len(carried), now)
        rows = self._live_rows()
        if not len(rows):
            self._out.extend([held])  # entries no longer live: their PBAs need not wait
            return
        first_id = self._sync_id
        batches = {t: self._encode_live(rows, now, t, first_id, more=False) for t in targets}
        first = next(iter(batches.values())).first
        # The message carrying each held PBA's entry (-1: none, the entry is gone).
        sorter = np.argsort(rows, kind="stable")
        at = np.minimum(np.searchsorted(rows, held_rows, sorter=sorter), len(rows) - 1)
        found = rows[sorter[at]] == held_rows
        message = np.where(found, np.searchsorted(first, sorter[at], side="right") - 1, -1)
        order = np.argsort(message, kind="stable")
        bounds = np.searchsorted(message[order], np.arange(-1, len(first)))
        self._out.extend([held.take(order[bounds[0] : bounds[1]])])
        for k in range(len(first) - 1):
            ident = self._next_sync_id()
            data = {t: _message(b, k) for t, b in batches.items()}
            pbas = Datagrams([held.take(order[bounds[k + 1] : bounds[k + 2]])])
            self._send_sync(ident, data, targets, pbas, first[k + 1] - first[k], now)

    def _held_pbas(self) -> tuple[np.ndarray, Columns]:
        """Every withheld PBA as one run of columns, with the entry each waits for."""
        held, self._sync_held = self._sync_held, []
        if not held:
            return NO_ROWS, NO_COLUMNS
        rows = np.concatenate([r for r, _ in held])
        return rows, Columns.concat([c for _, c in held])

    def _live_rows(self) -> np.ndarray:
        """The live entries changed since the last packing, in the order of their first change,
        each once, dropping those that are no longer served here."""
        if not self._sync_live:
            return np.zeros(0, dtype=np.int64)
        rows = np.concatenate(self._sync_live)
        self._sync_live = []
        _, first = np.unique(rows, return_index=True)
        rows = rows[np.sort(first)]
        return rows[self.cache.rows["state"][rows] == BceState.ACTIVE]

    def _encode_live(
        self, rows: np.ndarray, now: float, dst: IPv6Address, identifier: int, more: bool
    ) -> SyncBatch:
        """SS-REPs for the entries in ``rows`` (``encode_sessions``): async batches (``more``
        False) number their messages on from ``identifier``, a full sync (``more``) gives them
        all ``identifier`` and sets M on all but the last."""
        cache = self.cache
        return encode_sessions(
            cache.rows,
            cache.mn_ids,
            cache.prefix_keys,
            cache.ll_ids,
            rows,
            now,
            self._lmaa_restart_counter,
            self.config.address.packed,
            dst.packed,
            identifier,
            step_identifiers=not more,
            ack=not more,
            more=more,
            config=self._wire,
        )

    def _next_sync_id(self) -> int:
        self._sync_id = self._sync_id % 0xFFFF + 1  # non-zero (R14)
        return self._sync_id

    def _send_sync(
        self,
        ident: int,
        data: dict[IPv6Address, bytes],
        targets: list[IPv6Address],
        pbas: Datagrams,
        sessions: int,
        now: float,
    ) -> None:
        """Queue one SS-REP (A=1) to every target and wait for their SS-ACKs."""
        pending = PendingSync(data, set(targets), pbas, self.config.sync_ack_timeout, now)
        self._sync_pending[ident] = pending
        for target in targets:
            self._enqueue_sync(data[target], target)
        self.counters.sessions_synced_out += sessions
        delay = len(self._sync_queue) / self.config.sync_pacing_rate
        self._timers.arm(("ssrep", ident), now + delay + pending.interval)
        if pbas:
            self._timers.arm(("hold", ident), now + self.config.before_ack_timeout)

    def _enqueue_sync(self, data: bytes, dst: IPv6Address) -> None:
        self.counters.ss_rep_sent += 1
        self._sync_queue.append(Datagram(data, self.config.address, dst))

    def _timer_pace(self, now: float) -> None:
        """Send one SS-REP per slot of ``sync_pacing_rate`` (R26): a queued one (retransmission,
        full sync) if any, else all the changes recorded since the last slot, packed together.
        Packing at the slot rather than per received batch lets a busy LMA fill its SS-REPs
        (about 20 sessions each) instead of spending a slot on every session."""
        self._sync_next_send = max(self._sync_next_send, now)
        step = 1.0 / self.config.sync_pacing_rate
        while self._sync_next_send <= now:
            if not self._sync_queue and self._has_changes():
                self._pack_changes(now)
            if not self._sync_queue:
                break
            datagram = self._sync_queue.popleft()
            self.counters.ss_rep_octets_sent += len(datagram.data)
            self._out.extend([datagram])
            self._sync_next_send += step
        if self._sync_queue or self._has_changes():
            self._timers.arm(("pace",), self._sync_next_send)

    def _timer_ssrep(self, now: float, ident: int) -> None:
        pending = self._sync_pending.get(ident)
        if pending is None:
            return
        if pending.retransmissions >= self.config.sync_max_retransmissions:
            self.counters.sync_gave_up += 1
            self._finish_sync(ident)
            return
        pending.retransmissions += 1
        pending.interval *= 2
        for target in sorted(pending.waiting):
            self.counters.ss_rep_retransmitted += 1
            self._enqueue_sync(pending.data[target], target)
        self._timers.arm(("ssrep", ident), now + pending.interval)

    def _timer_hold(self, now: float, ident: int) -> None:
        """before-ack: the standby did not acknowledge in time — answer the MAGs anyway."""
        pending = self._sync_pending.get(ident)
        if pending is not None and pending.pbas:
            self.counters.pba_sync_timeout += len(pending.pbas)
            self._out.extend(pending.pbas)
            pending.pbas = Datagrams()

    def _finish_sync(self, ident: int) -> None:
        pending = self._sync_pending.pop(ident)
        self._timers.cancel(("ssrep", ident))
        self._timers.cancel(("hold", ident))
        self._out.extend(pending.pbas)

    def _send_sync_request(self, peer: IPv6Address, now: float, interval: float) -> None:
        """SS-REQ for all sessions: one ALL_ZERO HNP of length 0 (R27); random non-zero Id."""
        ident = self._rng.randrange(1, 0x10000)
        self._sync_requests[peer] = (ident, interval)
        request = StateSync(cp.SS_REQUEST, ident, 0, (HomeNetworkPrefix(ALL_ZERO, 0),))
        self.counters.ss_req_sent += 1
        self._send(request, self.config.address, peer)
        self._timers.arm(("ssreq", peer), now + interval)

    def _timer_ssreq(self, now: float, peer: IPv6Address) -> None:
        _, interval = self._sync_requests[peer]
        self._send_sync_request(peer, now, min(2 * interval, MAX_SYNC_REQUEST_TIMEOUT))

    def _on_state_sync(self, msg: StateSync, src: IPv6Address, now: float) -> None:
        if msg.ss_type == cp.SS_REQUEST:
            self._answer_sync_request(msg, src, now)
        elif msg.ss_type == cp.SS_REPLY:
            self._on_sync_reply(msg, src, now)
        elif msg.ss_type == cp.SS_ACK:
            pending = self._sync_pending.get(msg.identifier)
            if pending is None or src not in pending.waiting:
                self._drop("unmatched_ss_ack")
                return
            self.counters.ss_ack_received += 1
            self.sync_ack_latency.record(np.array([round((now - pending.packed_at) * 1e6)]))
            pending.waiting.discard(src)
            if not pending.waiting:
                self._finish_sync(msg.identifier)
        else:
            self._drop("unknown_ss_type")

    def _answer_sync_request(self, msg: StateSync, src: IPv6Address, now: float) -> None:
        """Full (ALL_ZERO HNP), per-MN, per-prefix or per-MAG sync of the sessions served here,
        split at 2048 octets with M on all but the last SS-REP (R15, R27)."""
        served = [r for r in self.cache.live_rows() if self.cache.state(int(r)) is BceState.ACTIVE]
        wanted: set[int] = set()
        for opt in msg.options:
            if isinstance(opt, HomeNetworkPrefix) and opt.prefix_length == 0:
                wanted.update(int(r) for r in served)
            elif isinstance(opt, HomeNetworkPrefix):
                row = self.cache.by_prefix(IPv6Network((int(opt.prefix), opt.prefix_length)))
                wanted.update({row} if row is not None else set())
            elif isinstance(opt, MobileNodeIdentifier):
                wanted.update(self.cache.by_mn(opt.identifier))
            elif isinstance(opt, MagAddress):
                wanted.update(self.cache.by_mag(opt.address))
        rows = np.array(
            sorted(r for r in wanted if self.cache.state(r) is BceState.ACTIVE), dtype=np.int64
        )
        if not len(rows):  # still one SS-REP, ending the request
            rep = StateSync(cp.SS_REPLY, msg.identifier, 0, tuple(self._lead_options()))
            self._enqueue_sync(encode_mh(rep, self.config.address, src, self._wire), src)
            return
        batch = self._encode_live(rows, now, src, msg.identifier, more=True)
        for k in range(len(batch.offsets) - 1):
            self._enqueue_sync(_message(batch, k), src)
        self.counters.sessions_synced_out += len(rows)

    def _on_scanned_sync_reply(
        self,
        data: bytes,
        scanned: tuple[int, int, int, np.ndarray],
        src: IPv6Address,
        now: float,
    ) -> None:
        """An SS-REP the compiled scan read (``lma_batch.scan_ss_rep``), stored in one call to
        ``lane.apply_synced`` — the same as ``_on_sync_reply``."""
        flags, identifier, counter, sessions = scanned
        self.counters.ss_rep_received += 1
        if counter >= 0 and not self.owns_lmaa:
            self._lmaa_restart_counter = counter
        done = Synced(len(sessions))
        buf = np.frombuffer(data, dtype=np.uint8)
        apply_synced(self.cache, buf, sessions, src.packed, now, self._delete, done)
        for reason, count in (("bad_synced_session", done.bad), ("stale_sync", done.stale)):
            if count:
                self.counters.drops[reason] += count
        self._expiry.push_many(done.row[: done.count], done.expires[: done.count])
        self.counters.sessions_synced_in += done.count
        self._after_sync_reply(flags, identifier, src, now)

    def _on_sync_reply(self, msg: StateSync, src: IPv6Address, now: float) -> None:
        self.counters.ss_rep_received += 1
        lead = next(
            (
                o
                for o in msg.options
                if isinstance(o, RestartCounter | ProxyBindingCacheInformation)
            ),
            None,
        )
        if isinstance(lead, RestartCounter) and not self.owns_lmaa:
            self._lmaa_restart_counter = lead.counter
        for pbci, options in msg.sessions():
            session = (
                SyncedSession.parse(pbci, options)
                if isinstance(pbci, ProxyBindingCacheInformation)
                else None
            )
            if session is None:
                self._drop("bad_synced_session")
            else:
                self._apply_synced(session, src, now)
        self._after_sync_reply(msg.flags, msg.identifier, src, now)

    def _after_sync_reply(self, flags: int, identifier: int, src: IPv6Address, now: float) -> None:
        """The SS-ACK asked for, and the end of a full sync this LMA requested."""
        if flags & cp.SS_FLAG_A:
            self._send(StateSync(cp.SS_ACK, identifier), self.config.address, src)
        request = self._sync_requests.get(src)
        if request is not None and request[0] == identifier and not flags & cp.SS_FLAG_M:
            del self._sync_requests[src]
            self._timers.cancel(("ssreq", src))
            self._event(now, "sync_complete", peer=str(src))

    def _apply_synced(self, session: SyncedSession, sender: IPv6Address, now: float) -> None:
        """Store a session the sender serves (state SYNCED, anchor = sender); lifetime 0 deletes
        it. A copy older than ours (by Timestamp, else sequence number) is ignored, so reordered
        or retransmitted SS-REPs cannot roll a session back."""
        cache = self.cache
        pbci = session.pbci
        row = cache.by_prefix(session.prefixes[0])
        if row is not None and (
            cache.mn_ids[row] != session.mn_id or set(cache.prefixes(row)) != set(session.prefixes)
        ):
            self._delete(row)
            row = None
        if row is not None and self._is_stale(row, session):
            self._drop("stale_sync")
            return
        if pbci.lifetime == 0:
            if row is not None and cache.state(row) in (BceState.SYNCED, BceState.MOVED):
                self._delete(row)
            return
        if row is None:
            row = cache.insert(
                session.mn_id,
                tuple(prefix_key(p) for p in session.prefixes),
                session.ll_id,
                state=BceState.SYNCED,
                proxy_coa=pbci.proxy_coa,
            )
        expires = now + 4 * pbci.lifetime
        cache.set(
            row,
            state=BceState.SYNCED,
            anchor=sender,
            flags=pbci.flags,
            seq=pbci.sequence,
            lifetime=pbci.lifetime,
            expires=expires,
            ts=session.timestamp,
            att=session.att,
            proxy_coa=pbci.proxy_coa,
            lla=session.lla or ALL_ZERO,
            tunnel=pbci.tunnel_interface_id,
        )
        self._expiry.push(row, expires)
        self.counters.sessions_synced_in += 1

    def _is_stale(self, row: int, session: SyncedSession) -> bool:
        ts = self.cache.get(row, "ts")
        if ts and session.timestamp:
            return session.timestamp < ts
        return serial_newer(self.cache.get(row, "seq"), session.pbci.sequence)

    # --- helpers -------------------------------------------------------------------------------

    def _send(self, msg: Message, src: IPv6Address, dst: IPv6Address) -> None:
        self._out.append(encode_mh(msg, src, dst, self._wire), src, dst)

    def _drop(self, reason: str) -> None:
        self.counters.drops[reason] += 1

    def _event(self, now: float, kind: str, **detail: Any) -> None:
        self.events.append(Event(now, kind, detail))


def _message(batch: SyncBatch, k: int) -> bytes:
    return batch.buf[batch.offsets[k] : batch.offsets[k + 1]].tobytes()


def _link_local(mn_id: bytes) -> IPv6Address:
    """A stable MAG link-local address for a session whose PBU asked for one (RFC 5213 §6.8)."""
    iid = int.from_bytes(hashlib.blake2b(mn_id, digest_size=8).digest(), "big") & ~(1 << 57)
    return IPv6Address((0xFE80 << 112) | iid)
