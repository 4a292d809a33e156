"""The active LMA as lmaload plays it towards a standby under test, sans-IO: fed the standby's
UDP/5436 payloads with ``receive(buf, offsets, now)``, polled for ``datagrams_to_send()`` (framed
payloads, all for the standby) and ``next_timer()``/``handle_timer(now)``.

Phases: ``hello`` — HA-HELLO with A=1 (and R=1 until the standby answers) every Hello Interval
for the whole run; the stream starts once the standby's HELLO came and its SS-REQ was answered
(or ``settle`` seconds after its first HELLO), or at once without HELLO. ``stream`` — the plan's
records bulk-encoded into SS-REPs (``lmaload.bulk.encode_state_sync``: PBCI + MN options,
2048-octet split), either open-loop at ``rate`` records/s from their intended send times (the
generator's lag recorded), or keeping ``window`` SS-REPs unacknowledged. With acknowledgements
each SS-REP has A=1 and its own Identifier; one not acknowledged within the retransmission
timeout (TCP-style: smoothed round trip plus four deviations, doubling per retransmission) is
sent again, up to ``max_retransmissions`` times, then counted as given up — never silently lost.
A record whose session has an earlier record in an unacknowledged SS-REP is deferred until that
SS-ACK (records of other sessions go on time), so no session's records arrive out of order.
``done`` — every record sent, and with acknowledgements every SS-REP acknowledged or given up.

Throughout: an SS-REQ from the standby gets a full sync of the sessions live so far (one reply,
M on all but its last SS-REP); an SO-REQ gets SO-REP 0 with the MAG Address echoed (the old LMA
yields the MAG, spec-digest §8.5); an SS-REP with A=1 gets its SS-ACK.

Columns, not objects: pending SS-REPs live in arrays indexed by Identifier; only the framed octets
of each unacknowledged SS-REP (kept for retransmission) are per-message Python objects.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from ipaddress import IPv6Address

import numpy as np

from lmaload._ext.framing import frame_between
from lmaload.bulk import decode_ss_acks, encode_state_sync
from lmaload.bulk_types import DECODE_MALFORMED, DECODE_OK
from lmaload.measure.goodput import PerSecond
from lmaload.measure.histogram import Histogram
from lmaload.measure.schedule import LagMeter, Schedule
from lmaload.population import Population
from lmaload.protocol.redundancy import hello
from lmaload.sync.plan import DELETE, SyncPlan
from lmaload.wire import (
    HomeAgentControl,
    HomeAgentHello,
    RestartCounter,
    StateSync,
    Timestamp,
    WireConfig,
    WireError,
    decode_datagram,
    encode_mh,
)
from lmaload.wire import codepoints as cp
from lmaload.wire.codepoints import DEFAULT_CONFIG
from lmaload.wire.ipv6 import IPV6_HEADER_LENGTH, frame

IDENTIFIERS = 0x10000  # Identifier 0 is never used (R14)
MAX_RECORDS_PER_STEP = 8192  # records encoded per call, so receiving and timers get a turn
INITIAL_RECORDS_PER_MESSAGE = 16


@dataclass(frozen=True)
class SenderConfig:
    """How the active peer behaves. Exactly one of ``rate`` (records/s, open loop) and
    ``window`` (SS-REPs unacknowledged) is set; ``window`` implies ``ack``."""

    address: IPv6Address  # ours, the inner source of everything we send
    standby: IPv6Address  # the standby's inner address
    rate: float | None = None
    window: int | None = 64
    ack: bool = True
    hello: bool = True
    hello_interval: int = 1
    hello_lifetime: int = 1800
    group_id: int = 1
    preference: int = 200
    restart_counter: int = 1
    lifetime: int = 3600  # seconds: the PBCI lifetime of a live session
    initial_rto: float = 1.0
    min_rto: float = 1.0  # RFC 6298: a queue building at the standby is no loss
    max_rto: float = 8.0
    max_retransmissions: int = 8
    settle: float = 1.0
    send_quantum: float = 0.001  # open loop: at most one send step per quantum
    lag_tolerance: float = 0.02  # as lmaload run's default
    wire: WireConfig = DEFAULT_CONFIG

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.window is None):
            raise ValueError("give a rate or a window, not both")
        if self.window is not None and not (self.ack and 1 <= self.window < IDENTIFIERS - 1):
            raise ValueError("a window needs acknowledgements and at most 65534 SS-REPs")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("the rate must be positive")


@dataclass
class SyncCounters:
    """What the sender counted. Records by kind are (create, update, delete) arrays."""

    ss_rep_sent: int = 0  # first transmissions
    ss_rep_retransmitted: int = 0
    ss_ack_received: int = 0
    ss_ack_duplicate: int = 0
    bytes_sent: int = 0  # Mobility Header octets of SS-REPs, retransmissions included
    bytes_acked: int = 0
    records_sent: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    records_acked: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    records_given_up: int = 0
    messages_given_up: int = 0
    ss_req_received: int = 0
    full_sync_sessions: int = 0
    full_sync_messages: int = 0
    hello_sent: int = 0
    hello_received: int = 0
    so_req_answered: int = 0
    sw_comp_received: int = 0
    ss_rep_received: int = 0
    dropped: int = 0  # malformed, from elsewhere, or of no use to us


class SyncSender:
    """See the module docstring."""

    def __init__(self, pop: Population, plan: SyncPlan, config: SenderConfig, now: float) -> None:
        self.pop = pop
        self.plan = plan
        self.config = config
        self.counters = SyncCounters()
        self.latency = Histogram()  # SS-ACK latency, µs, from the SS-REP's intended send time
        self.lag = LagMeter(config.lag_tolerance)
        self.phase = "hello" if config.hello else "stream"
        self.standby_seen: float | None = None  # first HELLO from the standby
        self.standby_last_hello: float | None = None
        self.stream_start: float | None = None if config.hello else now
        self.last_send: float | None = None
        self.last_ack: float | None = None
        self.last_settled: float | None = None  # the last record acknowledged or given up
        self.acked_per_second = PerSecond(now)  # records acknowledged, per second of stream
        self.cursor = 0  # records taken up so far (sent or deferred)
        self.row_state = np.zeros(len(pop.mns), dtype=np.uint8)  # 0 unsent, 1 live, 2 deleted
        self._row_message = np.zeros(len(pop.mns), dtype=np.int64)  # SS-REP of the last record
        self.rto = config.initial_rto
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._full_sync_answered = False
        self._hello_seq = 0
        self._next_hello = now if config.hello else math.inf
        self._offsets = (
            Schedule.constant(config.rate).offsets(len(plan)) if config.rate is not None else None
        )
        self._records_per_message = INITIAL_RECORDS_PER_MESSAGE
        self._deferred = np.zeros(0, dtype=np.int64)  # records waiting for their session
        self._retry = False  # an SS-ACK may have freed deferred records
        self._next_id = 1
        # Pending SS-REPs by Identifier.
        self._active = np.zeros(IDENTIFIERS, dtype=bool)
        self._kinds = np.zeros((IDENTIFIERS, 3), dtype=np.int64)  # records carried, by kind
        self._sent_at = np.zeros(IDENTIFIERS)  # first transmission
        self._intended = np.zeros(IDENTIFIERS)  # when it was meant to go (latency origin)
        self._retx = np.zeros(IDENTIFIERS, dtype=np.int32)
        self._deadline = np.zeros(IDENTIFIERS)
        self._size = np.zeros(IDENTIFIERS, dtype=np.int64)
        self._payload: dict[int, bytes] = {}
        self._timeouts: list[tuple[float, int]] = []  # heap; stale entries skipped
        self.outstanding = 0
        self._out: list[tuple[np.ndarray, np.ndarray]] = []
        self._out_single: list[bytes] = []
        if self.phase == "stream":
            self._send_due(now)

    # --- driving interface ---------------------------------------------------------------------

    def receive(self, buf: np.ndarray, offsets: np.ndarray, now: float) -> None:
        """A batch of UDP/5436 payloads from the standby."""
        if len(offsets) < 2:
            return
        acks = decode_ss_acks(buf, offsets, "ipv6", self.config.wire)
        ok = (acks["error"] == DECODE_OK) & (acks["checksum_ok"] != 0)
        if ok.any():
            self._on_acks(acks["identifier"][ok].astype(np.int64), now)
        self.counters.dropped += int((acks["error"] == DECODE_MALFORMED).sum())
        for i in np.nonzero(~ok & (acks["error"] != DECODE_MALFORMED))[0]:
            self._receive_other(buf[offsets[i] : offsets[i + 1]].tobytes(), now)
        self._advance(now)

    def datagrams_to_send(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Framed UDP/5436 payloads for the standby, as (buf, offsets) batches; forgotten here."""
        out = self._out
        if self._out_single:
            out.append(pack(self._out_single))
        self._out, self._out_single = [], []
        return out

    def next_timer(self) -> float | None:
        due = [self._next_hello]
        if self.phase == "hello" and self.standby_seen is not None:
            due.append(self.standby_seen + self.config.settle)
        if self.phase == "stream" and self._offsets is not None and self.cursor < len(self.plan):
            assert self.stream_start is not None
            intended = self.stream_start + float(self._offsets[self.cursor])
            quantum = -math.inf if self.last_send is None else self.last_send
            due.append(max(intended, quantum + self.config.send_quantum))
        if self._offsets is not None and self._retry and self.last_send is not None:
            # Open loop: deferred records an SS-ACK freed go at the next send step.
            due.append(self.last_send + self.config.send_quantum)
        while self._timeouts:
            deadline, ident = self._timeouts[0]
            if self._active[ident] and self._deadline[ident] == deadline:
                due.append(deadline)
                break
            heapq.heappop(self._timeouts)
        when = min(due)
        return None if math.isinf(when) else when

    def handle_timer(self, now: float) -> None:
        if now >= self._next_hello:
            self._send_hello(request=self.standby_seen is None)
            self._next_hello = now + self.config.hello_interval
        while self._timeouts and self._timeouts[0][0] <= now:
            deadline, ident = heapq.heappop(self._timeouts)
            if self._active[ident] and self._deadline[ident] == deadline:
                self._timed_out(ident, now)
        self._advance(now)

    @property
    def last_scheduled(self) -> float | None:
        """The intended time of the last record (rate mode, once the stream started)."""
        if self._offsets is None or self.stream_start is None or not len(self._offsets):
            return None
        return self.stream_start + float(self._offsets[-1])

    @property
    def done(self) -> bool:
        return self.phase == "done"

    @property
    def records_acked(self) -> int:
        return int(self.counters.records_acked.sum())

    # --- phases --------------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        seen = self.standby_seen
        if (
            self.phase == "hello"
            and seen is not None
            and (self._full_sync_answered or now >= seen + self.config.settle)
        ):
            self.phase = "stream"
            self.stream_start = now
            self.acked_per_second.restart(now)
        if self.phase == "stream":
            self._send_due(now)
            if self.cursor == len(self.plan) and not self.outstanding and not len(self._deferred):
                self.phase = "done"

    def _send_due(self, now: float) -> None:
        """Encode and send the records that are due — open loop, those whose intended time has
        come; windowed, enough to fill the window — after the deferred ones."""
        cfg = self.config
        n = len(self.plan)
        while True:
            if self._offsets is not None:
                assert self.stream_start is not None
                if self.last_send is not None and now < self.last_send + cfg.send_quantum:
                    return
                due = int(np.searchsorted(self._offsets, now - self.stream_start, "right"))
                if self.cursor < n and now >= self.stream_start + self._offsets[self.cursor]:
                    due = max(due, self.cursor + 1)  # due, whatever the rounding
                stop, free = min(due, self.cursor + MAX_RECORDS_PER_STEP), None
            else:
                assert cfg.window is not None
                free = cfg.window - self.outstanding
                want = (free + 1) * self._records_per_message
                stop = min(n, self.cursor + want, self.cursor + MAX_RECORDS_PER_STEP)
            fresh = np.arange(self.cursor, max(stop, self.cursor), dtype=np.int64)
            if free == 0 or not (len(fresh) or len(self._deferred)):
                return
            if self._offsets is not None and len(fresh):
                assert self.stream_start is not None
                self.lag.record(now - (self.stream_start + self._offsets[fresh]))
            self.cursor += len(fresh)
            candidates = np.concatenate([self._deferred, fresh])
            if not self._send_records(candidates, free, now) and not len(fresh):
                return

    def _send_records(self, candidates: np.ndarray, free: int | None, now: float) -> bool:
        """SS-REPs for the records ``candidates`` (plan indices, in order), at most ``free`` of
        them and none whose Identifier is still pending; what does not go is deferred. Whether
        any went."""
        cfg, plan = self.config, self.plan
        self._retry = False
        if cfg.ack:
            ready = self._in_order(plan.row[candidates])
            self._deferred, candidates = candidates[~ready], candidates[ready]
        else:
            self._deferred = candidates[:0]
        if not len(candidates):
            return False
        rows = plan.row[candidates]
        kinds = plan.kind[candidates]
        staged = self.pop.mns[rows]
        staged["seq"] = plan.seq[candidates]
        staged["ts"] = Timestamp.from_unix(now).value
        lifetimes = np.where(kinds == DELETE, 0, min(math.ceil(cfg.lifetime / 4), 0xFFFF))
        batch = encode_state_sync(
            Population(staged, self.pop.mags, self.pop.realm),
            np.arange(len(rows), dtype=np.int64),
            cfg.address,
            cfg.standby,
            self._next_id,
            identifier_step=1,
            ack=cfg.ack,
            lifetimes=lifetimes.astype(np.int64),
            config=cfg.wire,
        )
        count = len(batch.offsets) - 1
        ids = (self._next_id - 1 + np.arange(count)) % (IDENTIFIERS - 1) + 1
        if cfg.ack:  # an Identifier still pending (after 65 535 SS-REPs) waits for its SS-ACK
            busy = np.nonzero(self._active[ids])[0]
            count = int(busy[0]) if len(busy) else count
        if free is not None:
            count = min(count, free)
        carried = int(batch.first[count])
        self._deferred = np.sort(np.concatenate([self._deferred, candidates[carried:]]))
        if count == 0:
            return False
        ids = ids[:count]
        buf, offsets = frame_between(
            batch.buf, batch.offsets[: count + 1], cfg.address, cfg.standby
        )
        self._out.append((buf, offsets))
        c = self.counters
        c.ss_rep_sent += count
        c.bytes_sent += int(batch.offsets[count] - batch.offsets[0])
        kinds, rows, sent = kinds[:carried], rows[:carried], candidates[:carried]
        c.records_sent += np.bincount(kinds, minlength=3)
        self.pop.mns["seq"][rows] = staged["seq"][:carried]
        self.pop.mns["ts"][rows] = staged["ts"][:carried]
        self.row_state[rows] = np.where(kinds == DELETE, 2, 1)
        self._records_per_message = max(1, carried // count)
        carrier = np.searchsorted(batch.first, np.arange(carried), "right") - 1
        if self._offsets is not None:
            assert self.stream_start is not None
            intended = np.full(count, -np.inf)
            np.maximum.at(intended, carrier, self.stream_start + self._offsets[sent])
        else:
            intended = np.full(count, now)
        if cfg.ack:
            per_message = np.zeros((count, 3), dtype=np.int64)
            np.add.at(per_message, (carrier, kinds), 1)
            self._track(ids, per_message, buf, offsets, intended, now)
            self._row_message[rows] = ids[carrier]
        self._next_id = int(ids[-1]) % (IDENTIFIERS - 1) + 1
        self.last_send = now
        return True

    def _in_order(self, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` (the candidate records' sessions) can go now without overtaking an
        earlier record of the same session: none may wait in an unacknowledged SS-REP or appear
        twice among the candidates (in two SS-REPs, the later could arrive first after a loss).
        Otherwise a lost create retransmitted after its delete would bring a deleted session
        back. The others are deferred until the SS-ACK."""
        ready = ~self._active[self._row_message[rows]]
        _, first = np.unique(rows, return_index=True)
        once = np.zeros(len(rows), dtype=bool)
        once[first] = True
        return ready & once

    def _track(
        self,
        ids: np.ndarray,
        kinds: np.ndarray,
        buf: np.ndarray,
        offsets: np.ndarray,
        intended: np.ndarray,
        now: float,
    ) -> None:
        self._active[ids] = True
        self._kinds[ids] = kinds
        self._sent_at[ids] = now
        self._intended[ids] = intended
        self._retx[ids] = 0
        self._size[ids] = np.diff(offsets) - IPV6_HEADER_LENGTH
        deadline = now + self.rto
        self._deadline[ids] = deadline
        for k, ident in enumerate(ids.tolist()):
            self._payload[ident] = buf[offsets[k] : offsets[k + 1]].tobytes()
            heapq.heappush(self._timeouts, (deadline, ident))
        self.outstanding += len(ids)

    def _timed_out(self, ident: int, now: float) -> None:
        c = self.counters
        if self._retx[ident] >= self.config.max_retransmissions:
            self._active[ident] = False
            del self._payload[ident]
            self.outstanding -= 1
            c.messages_given_up += 1
            self._retry = bool(len(self._deferred))
            c.records_given_up += int(self._kinds[ident].sum())
            self.last_settled = now
            return
        self._retx[ident] += 1
        c.ss_rep_retransmitted += 1
        c.bytes_sent += int(self._size[ident])
        self._out_single.append(self._payload[ident])
        deadline = now + min(self.rto * 2 ** int(self._retx[ident]), self.config.max_rto)
        self._deadline[ident] = deadline
        heapq.heappush(self._timeouts, (deadline, ident))

    def _on_acks(self, ids: np.ndarray, now: float) -> None:
        c = self.counters
        c.ss_ack_received += len(ids)
        unique = np.unique(ids)
        fresh = unique[self._active[unique]]
        c.ss_ack_duplicate += len(ids) - len(fresh)
        if not len(fresh):
            return
        self._active[fresh] = False
        self.outstanding -= len(fresh)
        self._retry = bool(len(self._deferred))
        self.latency.record(np.rint((now - self._intended[fresh]) * 1e6).astype(np.int64))
        acked = self._kinds[fresh].sum(axis=0)
        c.records_acked += acked
        self.acked_per_second.record(now, int(acked.sum()))
        c.bytes_acked += int(self._size[fresh].sum())
        for ident in fresh.tolist():
            del self._payload[ident]
        # Karn: round trips only of SS-REPs sent once.
        samples = now - self._sent_at[fresh[self._retx[fresh] == 0]]
        if len(samples):
            self._update_rto(float(samples.mean()))
        self.last_ack = self.last_settled = now

    def _update_rto(self, rtt: float) -> None:
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - rtt)
            self._srtt = 0.875 * self._srtt + 0.125 * rtt
        cfg = self.config
        self.rto = min(max(self._srtt + 4 * self._rttvar, cfg.min_rto), cfg.max_rto)

    # --- the rest of the peer protocol ---------------------------------------------------------

    def _receive_other(self, payload: bytes, now: float) -> None:
        try:
            packet = decode_datagram(payload, config=self.config.wire)
        except WireError:
            self.counters.dropped += 1
            return
        msg = packet.mh.message
        if packet.src != self.config.standby or packet.mh.checksum_ok is False:
            self.counters.dropped += 1
        elif isinstance(msg, HomeAgentHello):
            self._on_hello(msg, now)
        elif isinstance(msg, StateSync) and msg.ss_type == cp.SS_REQUEST:
            self._full_sync(msg.identifier, now)
        elif isinstance(msg, StateSync) and msg.ss_type == cp.SS_REPLY:
            self.counters.ss_rep_received += 1
            if msg.flags & cp.SS_FLAG_A:
                self._send(StateSync(cp.SS_ACK, msg.identifier))
        elif isinstance(msg, HomeAgentControl) and msg.hac_type == cp.HAC_SWITCHOVER_REQUEST:
            self.counters.so_req_answered += 1
            self._send(HomeAgentControl(cp.HAC_SWITCHOVER_REPLY, 0, msg.mag_address))
        elif isinstance(msg, HomeAgentControl) and msg.hac_type == cp.HAC_SWITCH_COMPLETE:
            self.counters.sw_comp_received += 1
        else:
            self.counters.dropped += 1

    def _on_hello(self, msg: HomeAgentHello, now: float) -> None:
        if msg.group_id != self.config.group_id:
            self.counters.dropped += 1
            return
        self.counters.hello_received += 1
        if self.standby_seen is None:
            self.standby_seen = now
        self.standby_last_hello = now
        if msg.flags & cp.HELLO_FLAG_R:
            self._send_hello(request=False)

    def _send_hello(self, request: bool) -> None:
        flags = cp.HELLO_FLAG_A | (cp.HELLO_FLAG_R if request else 0)
        message = hello(self.config, self._hello_seq, flags)
        self._hello_seq = (self._hello_seq + 1) & 0xFFFF
        self.counters.hello_sent += 1
        self._send(message)

    def _full_sync(self, identifier: int, now: float) -> None:
        """Every session live so far, in one reply to the SS-REQ ``identifier`` (M on all but
        the last SS-REP; no A: the request's retransmission is the standby's to make)."""
        cfg, c = self.config, self.counters
        c.ss_req_received += 1
        self._full_sync_answered = True
        rows = np.nonzero(self.row_state == 1)[0].astype(np.int64)
        if not len(rows):
            reply = StateSync(cp.SS_REPLY, identifier, 0, (RestartCounter(cfg.restart_counter),))
            self._send(reply)
            c.full_sync_messages += 1
            return
        lifetimes = np.full(len(rows), min(math.ceil(cfg.lifetime / 4), 0xFFFF), np.int64)
        batch = encode_state_sync(
            self.pop,
            rows,
            cfg.address,
            cfg.standby,
            identifier,
            lifetimes=lifetimes,
            config=cfg.wire,
        )
        self._out.append(frame_between(batch.buf, batch.offsets, cfg.address, cfg.standby))
        c.full_sync_sessions += len(rows)
        c.full_sync_messages += len(batch.offsets) - 1

    def _send(self, msg: HomeAgentHello | HomeAgentControl | StateSync) -> None:
        cfg = self.config
        mh = encode_mh(msg, cfg.address, cfg.standby, cfg.wire)
        self._out_single.append(frame(mh, cfg.address, cfg.standby))


def pack(payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Separate payloads as one (buf, offsets) batch."""
    offsets = np.zeros(len(payloads) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in payloads], out=offsets[1:])
    return np.frombuffer(b"".join(payloads), dtype=np.uint8), offsets
