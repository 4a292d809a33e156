"""State Synchronization from this LMA to its peers (spec-digest §7.2, §8.1, R14, R15, R26,
R27): binding changes recorded as they happen, packed into SS-REPs at each pacing slot, sent
with A=1 and retransmitted until every live peer acknowledges; in before-ack mode the PBAs of
those changes wait for that SS-ACK. Also the answer to a peer's SS-REQ.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network

import numpy as np

from lmaload._ext.bce_sync import encode_sessions
from lmaload._ext.checksum import mh_checksum
from lmaload._ext.sync_plan import group_withheld, live_rows, scan_ss_acks
from lmaload.bulk_types import SyncBatch
from lmaload.measure.histogram import Histogram
from lmaload.protocol.binding_cache import BceState
from lmaload.protocol.datagrams import Columns, Datagram, Datagrams
from lmaload.protocol.lma.state import LmaState
from lmaload.protocol.redundancy import session_options
from lmaload.wire import (
    HomeNetworkPrefix,
    MagAddress,
    MobileNodeIdentifier,
    Option,
    RestartCounter,
    StateSync,
    encode_mh,
)
from lmaload.wire import codepoints as cp
from lmaload.wire.codepoints import WireConfig
from lmaload.wire.messages import pack_sessions

NO_ROWS = np.zeros(0, dtype=np.int64)
NO_COLUMNS = Columns.of([])
# Seconds of pacing slots a late wakeup may still use: an LMA woken less often than its slots
# come round keeps to its pacing rate instead of sending one SS-REP per wakeup.
PACING_CATCH_UP = 0.005
ACK_LATENCY_BATCH = 4096  # SS-ACK latencies kept before they are recorded in the histogram
SS_ACK_LENGTH = 16  # the fixed part padded to 8n octets


@functools.cache
def _ss_ack_template(wire: WireConfig) -> bytes:
    zero = IPv6Address(0)
    template = encode_mh(StateSync(cp.SS_ACK, 0), zero, zero, wire)
    assert len(template) == SS_ACK_LENGTH
    return template


def encode_ss_ack(identifier: int, src: bytes, dst: bytes, wire: WireConfig) -> bytes:
    """The octets ``encode_mh`` gives an SS-ACK with ``identifier`` from ``src`` to ``dst``
    (packed), from a template: the SS-ACK of every SS-REP costs no message encoding."""
    template = _ss_ack_template(wire)
    body = b"".join((template[:4], b"\0\0", template[6:8], identifier.to_bytes(2), template[10:]))
    checksum = mh_checksum(src, dst, body)
    return b"".join((body[:4], checksum.to_bytes(2), body[6:]))


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


class SyncOut:
    """The State Sync sender of one LMA."""

    def __init__(self, state: LmaState, now: float) -> None:
        self._state = state
        self._config = state.config
        # From packing an SS-REP to each peer's SS-ACK (µs): pacing and retransmissions included;
        # kept in a list as they come and recorded in one call when read or when it is long.
        self._ack_latency = Histogram()
        self._ack_latencies: list[int] = []
        # Changes for the next SS-REP batch: deleted sessions by (MN-ID, first prefix key), and
        # the rows of live ones (read when packed), with the PBAs they withhold in before-ack.
        self._deleted: dict[tuple[bytes, bytes], SyncChange] = {}
        self._live: list[np.ndarray] = []
        self._withheld: list[tuple[np.ndarray, Columns]] = []  # PBAs and the rows they wait for
        self._queue: deque[Datagram] = deque()
        self._next_send = now
        self._id = 0
        self._pending: dict[int, PendingSync] = {}
        self._withheld_count = 0  # PBAs waiting for an SS-ACK: withheld, in changes or pending
        self._peers = list(state.peers)
        self._peer_rows = np.array([p.packed for p in self._peers], dtype="S16").view(np.uint8)

    @property
    def ack_latency(self) -> Histogram:
        """From packing an SS-REP to each peer's SS-ACK (µs)."""
        self._record_ack_latencies()
        return self._ack_latency

    def _record_ack_latencies(self) -> None:
        if self._ack_latencies:
            self._ack_latency.record(np.array(self._ack_latencies, dtype=np.int64))
            self._ack_latencies = []

    @property
    def backlog(self) -> int:
        """SS-REPs waiting for a pacing slot plus those waiting for an SS-ACK."""
        return len(self._queue) + len(self._pending)

    def at_bound(self) -> bool:
        """Whether the PBAs waiting for an SS-ACK or the SS-REPs waiting for theirs reached
        their bound (``LmaConfig.max_withheld_pbas``, ``max_pending_ss_reps``): received PBUs
        are shed until they fall below (``shed``)."""
        config = self._config
        return (
            self._withheld_count >= config.max_withheld_pbas
            or len(self._pending) >= config.max_pending_ss_reps
        )

    def _release(self, pbas: Iterable[Datagram | Columns] | Datagrams, count: int) -> None:
        """Send PBAs that waited for an SS-ACK (or no longer need to)."""
        self._withheld_count -= count
        self._state.out.extend(pbas)

    # --- recording changes ---------------------------------------------------------------------

    def record_change(self, row: int, now: float, deleted: bool, pba: Datagram | None) -> None:
        """Queue a binding change for the next SS-REP batch; in before-ack mode the PBA waits
        for the standby's SS-ACK, otherwise it goes now. A live entry is read when packed; a
        deleted one is described now, while it is still there."""
        cache = self._state.cache
        rows = np.array([row], dtype=np.int64)
        if deleted:
            key = (cache.mn_ids[row], cache.prefix_keys[row][0])
            change = self._deleted.setdefault(key, SyncChange([]))
            change.options = session_options(cache, row, now, deleted=True)
        else:
            self._live.append(rows)
        if pba is None:
            return
        if not self.withholds_pbas():
            self._state.out.extend([pba])
        elif deleted:
            change.pbas.append(pba)
            self._withheld_count += 1
        else:
            self.withhold_pbas(rows, Columns.of([pba]))

    def record_live(self, rows: np.ndarray) -> None:
        """Entries accepted (created or refreshed) outside ``record_change``: the fast lane's."""
        self._live.append(rows)

    def send_pbas(self, rows: np.ndarray, pbas: Columns) -> None:
        """Send the PBAs ``pbas[i]`` of the live entries ``rows[i]``, or withhold them."""
        if self.withholds_pbas():
            self.withhold_pbas(rows, pbas)
        else:
            self._state.out.extend([pbas])

    def withholds_pbas(self) -> bool:
        """before-ack with a standby alive: PBAs wait for the SS-ACK of their change."""
        return self._config.sync == "before-ack" and bool(self._state.live_peers())

    def withhold_pbas(self, rows: np.ndarray, pbas: Columns) -> None:
        """before-ack: withhold the PBA ``pbas[i]`` until the SS-REP carrying ``rows[i]`` is
        acknowledged."""
        self._withheld.append((rows, pbas))
        self._withheld_count += len(pbas)

    # --- pacing and packing --------------------------------------------------------------------

    def on_pace_timer(self, now: float) -> None:
        """Send one SS-REP per slot of ``sync_pacing_rate`` (R26): a queued one (retransmission,
        full sync) if any, else all the changes recorded since the last slot, packed together.
        Packing at the slot rather than per received batch lets a busy LMA fill its SS-REPs
        (about 20 sessions each) instead of spending a slot on every session. The whole slots of
        the last ``PACING_CATCH_UP`` seconds not used yet are still there to use."""
        rate = self._config.sync_pacing_rate
        step = 1.0 / rate
        self._next_send = max(self._next_send, now - step * int(PACING_CATCH_UP * rate))
        while self._next_send <= now:
            if not self._queue and self._has_changes():
                self._pack_changes(now)
            if not self._queue:
                break
            datagram = self._queue.popleft()
            self._state.counters.ss_rep_octets_sent += len(datagram.data)
            self._state.out.extend([datagram])
            self._next_send += step
        if self._queue or self._has_changes():
            self._state.timers.arm(("pace",), self._next_send)

    def _has_changes(self) -> bool:
        return bool(self._deleted or self._live or self._withheld)

    def _pack_changes(self, now: float) -> None:
        """Every binding change recorded since the last pacing slot, into SS-REPs: the deleted
        sessions, then the live entries changed (each once, as they are now)."""
        state = self._state
        deleted = list(self._deleted.values())
        self._deleted.clear()
        waiting_rows, withheld = self._take_withheld_pbas()
        targets = state.live_peers()
        if not targets:
            self._live = []
            for change in deleted:
                self._release(change.pbas, len(change.pbas))
            self._release([withheld], len(withheld))
            return
        if deleted:
            messages = pack_sessions(self._lead_options(), [c.options for c in deleted])
            for options, carried in messages:
                ident = self._next_id()
                rep = StateSync(cp.SS_REPLY, ident, cp.SS_FLAG_A, tuple(options))
                data = {t: encode_mh(rep, state.address, t, state.wire) for t in targets}
                pbas = Datagrams(p for i in carried for p in deleted[i].pbas)
                self._send(ident, data, targets, pbas, len(carried), now)
        rows = self._live_rows()
        if not len(rows):
            self._release([withheld], len(withheld))  # entries no longer live: no need to wait
            return
        first_id = self._id
        batches = {t: self._encode_live(rows, now, t, first_id, more=False) for t in targets}
        first = next(iter(batches.values())).first
        order, bounds = group_withheld(rows, first, waiting_rows)
        # One gather, then each message's PBAs are a slice of it (views, no copies).
        grouped = withheld.take(order)
        bounds, sessions = bounds.tolist(), first.tolist()
        self._release([grouped.take(slice(bounds[0], bounds[1]))], bounds[1] - bounds[0])
        for k in range(len(first) - 1):
            ident = self._next_id()
            data = {t: _message(b, k) for t, b in batches.items()}
            pbas = Datagrams([grouped.take(slice(bounds[k + 1], bounds[k + 2]))])
            self._send(ident, data, targets, pbas, sessions[k + 1] - sessions[k], now)

    def _take_withheld_pbas(self) -> tuple[np.ndarray, Columns]:
        """Every withheld PBA as one run of columns, with the entry each waits for."""
        withheld, self._withheld = self._withheld, []
        if not withheld:
            return NO_ROWS, NO_COLUMNS
        if len(withheld) == 1:
            return withheld[0]
        rows = np.concatenate([r for r, _ in withheld])
        return rows, Columns.concat([c for _, c in withheld])

    def _live_rows(self) -> np.ndarray:
        """The live entries changed since the last packing, in the order of their first change,
        each once, dropping those that are no longer served here."""
        live, self._live = self._live, []
        return live_rows(live, self._state.cache.rows["state"], BceState.ACTIVE)

    def _encode_live(
        self, rows: np.ndarray, now: float, dst: IPv6Address, identifier: int, more: bool
    ) -> SyncBatch:
        """SS-REPs for the entries in ``rows`` (``encode_sessions``): async batches (``more``
        False) number their messages on from ``identifier``, a full sync (``more``) gives them
        all ``identifier`` and sets M on all but the last."""
        state = self._state
        cache = state.cache
        return encode_sessions(
            cache.rows,
            cache.mn_ids,
            cache.prefix_keys,
            cache.ll_ids,
            rows,
            now,
            state.lmaa_restart_counter,
            state.address.packed,
            dst.packed,
            identifier,
            step_identifiers=not more,
            ack=not more,
            more=more,
            config=state.wire,
        )

    def _lead_options(self) -> list[Option]:
        """Options before the first PBCI of every SS-REP: our Restart Counter, so that a
        virtual-switch standby answers heartbeats with the group's value (R30). Deviation: HA-rel
        puts nothing outside a session; receivers that do not know this skip it."""
        return [RestartCounter(self._state.lmaa_restart_counter)]

    def _next_id(self) -> int:
        self._id = self._id % 0xFFFF + 1  # non-zero (R14)
        return self._id

    # --- sending, acknowledgement, retransmission ----------------------------------------------

    def _send(
        self,
        ident: int,
        data: dict[IPv6Address, bytes],
        targets: list[IPv6Address],
        pbas: Datagrams,
        sessions: int,
        now: float,
    ) -> None:
        """Queue one SS-REP (A=1) to every target and wait for their SS-ACKs."""
        pending = PendingSync(data, set(targets), pbas, self._config.sync_ack_timeout, now)
        self._pending[ident] = pending
        for target in targets:
            self._enqueue(data[target], target)
        self._state.counters.sessions_synced_out += sessions
        delay = len(self._queue) / self._config.sync_pacing_rate
        self._state.timers.arm(("ssrep", ident), now + delay + pending.interval)
        if pbas:
            self._state.timers.arm(("before_ack", ident), now + self._config.before_ack_timeout)

    def _enqueue(self, data: bytes, dst: IPv6Address) -> None:
        self._state.counters.ss_rep_sent += 1
        self._queue.append(Datagram(data, self._state.address, dst))

    def on_retransmit_timer(self, now: float, ident: int) -> None:
        pending = self._pending.get(ident)
        if pending is None:
            return
        counters = self._state.counters
        if pending.retransmissions >= self._config.sync_max_retransmissions:
            counters.sync_gave_up += 1
            self._finish(ident)
            return
        pending.retransmissions += 1
        pending.interval *= 2
        for target in sorted(pending.waiting):
            counters.ss_rep_retransmitted += 1
            self._enqueue(pending.data[target], target)
        self._state.timers.arm(("ssrep", ident), now + pending.interval)

    def on_before_ack_timer(self, now: float, ident: int) -> None:
        """before-ack: the standby did not acknowledge in time — answer the MAGs anyway."""
        pending = self._pending.get(ident)
        if pending is not None and pending.pbas:
            self._state.counters.pba_sync_timeout += len(pending.pbas)
            self._release(pending.pbas, len(pending.pbas))
            pending.pbas = Datagrams()

    def scan_acks(self, columns: Columns) -> list[tuple[int, int, IPv6Address]]:
        """The SS-ACKs of ``columns`` that the reference path would take as such: from a peer
        to this LMA's address, their octets those of ``encode_ss_ack`` (``scan_ss_acks``).
        (index, identifier, peer) of each, for ``on_ack``."""
        if not self._pending:  # then the reference path's verdict is as quick: unmatched
            return []
        state = self._state
        return scan_ss_acks(
            columns.buf, columns.starts, columns.ends, columns.src, columns.dst,
            state.address.packed, self._peer_rows, self._peers, _ss_ack_template(state.wire),
        )  # fmt: skip

    def on_ack(self, identifier: int, src: IPv6Address, now: float) -> None:
        pending = self._pending.get(identifier)
        if pending is None or src not in pending.waiting:
            self._state.drop("unmatched_ss_ack")
            return
        self._state.counters.ss_ack_received += 1
        self._ack_latencies.append(round((now - pending.packed_at) * 1e6))
        if len(self._ack_latencies) >= ACK_LATENCY_BATCH:
            self._record_ack_latencies()
        pending.waiting.discard(src)
        if not pending.waiting:
            self._finish(identifier)

    def forget_peer(self, peer: IPv6Address) -> None:
        """A peer died: stop waiting for its SS-ACKs."""
        for ident, pending in list(self._pending.items()):
            pending.waiting.discard(peer)
            if not pending.waiting:
                self._finish(ident)

    def _finish(self, ident: int) -> None:
        pending = self._pending.pop(ident)
        self._state.timers.cancel(("ssrep", ident))
        self._state.timers.cancel(("before_ack", ident))
        self._release(pending.pbas, len(pending.pbas))

    # --- SS-REQ --------------------------------------------------------------------------------

    def answer_request(self, msg: StateSync, src: IPv6Address, now: float) -> None:
        """Full (ALL_ZERO HNP), per-MN, per-prefix or per-MAG sync of the sessions served here,
        split at 2048 octets with M on all but the last SS-REP (R15, R27)."""
        state = self._state
        cache = state.cache
        served = [r for r in cache.live_rows() if cache.state(int(r)) is BceState.ACTIVE]
        wanted: set[int] = set()
        for opt in msg.options:
            if isinstance(opt, HomeNetworkPrefix) and opt.prefix_length == 0:
                wanted.update(int(r) for r in served)
            elif isinstance(opt, HomeNetworkPrefix):
                row = cache.by_prefix(IPv6Network((int(opt.prefix), opt.prefix_length)))
                wanted.update({row} if row is not None else set())
            elif isinstance(opt, MobileNodeIdentifier):
                wanted.update(cache.by_mn(opt.identifier))
            elif isinstance(opt, MagAddress):
                wanted.update(cache.by_mag(opt.address))
        rows = np.array(
            sorted(r for r in wanted if cache.state(r) is BceState.ACTIVE), dtype=np.int64
        )
        if not len(rows):  # still one SS-REP, ending the request
            rep = StateSync(cp.SS_REPLY, msg.identifier, 0, tuple(self._lead_options()))
            self._enqueue(encode_mh(rep, state.address, src, state.wire), src)
            return
        batch = self._encode_live(rows, now, src, msg.identifier, more=True)
        for k in range(len(batch.offsets) - 1):
            self._enqueue(_message(batch, k), src)
        state.counters.sessions_synced_out += len(rows)


def _message(batch: SyncBatch, k: int) -> bytes:
    return batch.buf[batch.offsets[k] : batch.offsets[k + 1]].tobytes()
