"""The LMA's compiled fast lane (``lmaload._ext.lane``) and what decides which received PBUs it
may take; the PBAs of those it accepted are encoded in one call.

A batch that arrives as ``Columns`` is scanned by ``lmaload._ext.lma_batch.scan_pbus``, the PBUs
overload sheds are marked (``lmaload._ext.lma_step.shed_marks``, after ``shed``), and each
datagram is given its taker (``lma_step.Classifier``): the lane, the compiled heartbeat
responder (``FastLane.heartbeats``; a plain LMA's answers Binding Error 2), a takeover's hold, or
the reference path. A PBU is *eligible* when the scan says the reference decoder would read
exactly its fields (``fast``), it is addressed to this LMA, and the ownership state lets the lane
decide alone: this LMA serves that MAG at that address, no HA Switch to the MAG awaits its PBU,
and it is not a HI 5 re-registration asking for a prefix from a MAG taken over (a recovery,
§8.5). The lane itself stops at every PBU whose outcome is not an acceptance it can write
(``lmaload._ext.lane``).

``FastLane.run`` takes the eligible PBUs from a start index up to the first one it cannot, and
returns what it did (``LaneRun``); the caller records the accepted entries, sends or withholds
the PBAs and takes the datagram at ``stop`` by the reference path. Ownership changes only in the
reference path, so eligibility is worked out again when the caller passes a new
``OwnershipSnapshot``.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address

import numpy as np

from lmaload._ext.lane import Accepted, Lane
from lmaload._ext.lma_batch import encode_pbas, scan_pbus
from lmaload._ext.lma_step import TAKEOVER, Classifier, answer_heartbeats, shed_marks
from lmaload.protocol.datagrams import Columns
from lmaload.protocol.lma.ownership import OwnershipSnapshot
from lmaload.protocol.lma.state import LmaState
from lmaload.protocol.redundancy import TakeoverKey
from lmaload.wire import BindingError, Heartbeat, RestartCounter, encode_mh
from lmaload.wire import codepoints as cp


@dataclass
class LaneBatch:
    """A batch of columns scanned for the lane: ``shed`` marks the PBUs shed unanswered
    (``shed``'s reasons, ``marked`` of them; -1: not yet, the caller must), ``codes`` what
    takes each datagram under ``ownership`` (``lmaload._ext.lma_step``)."""

    columns: Columns
    scan: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    arrival: np.ndarray
    replay: bool
    accepted: Accepted
    shed: np.ndarray
    marked: int
    codes: np.ndarray
    ownership: OwnershipSnapshot | None = None


@dataclass
class LaneRun:
    """What one ``FastLane.run`` did: it accepted the PBUs before ``stop`` that it took, writing
    the cache ``rows`` (expiring at ``expires``, valid until the next run) and encoding ``pbas``
    (PBA 0 each, in order; None if it accepted none). ``stop`` is the first datagram it did not
    take (the batch length: none); ``takeover_key`` is set when that one is a failover PBU to
    hold for the takeover of its MAG already under way."""

    stop: int
    rows: np.ndarray
    expires: np.ndarray
    pbas: Columns | None
    takeover_key: TakeoverKey | None


class FastLane:
    """The lane over the cache, prefix pool and tunnel ids of ``state``."""

    def __init__(self, state: LmaState) -> None:
        config = state.config
        self._state = state
        self._wire = state.wire
        self._lane = Lane(
            state.cache,
            state.pool,
            state.tunnels,
            config.address.packed,
            config.timestamp_validity_window,
        )
        self._classifier = Classifier(config.address.packed, state.lmaa.packed)
        self._lmaa = state.lmaa.packed
        self.pbus_accepted = 0
        # Verdict bits per 32 octets of (MAG, destination), for the snapshot and replay flag.
        self._verdicts: tuple[dict[bytes, int], dict[bytes, int]] = ({}, {})
        self._verdicts_for: OwnershipSnapshot | None = None
        self._responses: tuple[int, int, bytes, bytes] | None = None
        # Where every run writes what it accepted: a run's results are taken before the next
        # run, of this batch or of one scanned meanwhile (a takeover's replay), starts.
        self._accepted = Accepted(0)

    def scan(self, columns: Columns, now: float, replay: bool, backlog: bool = False) -> LaneBatch:
        """Scan ``columns`` for ``run`` and mark the PBUs to shed, unless a Binding Update the
        scan could not read leaves that to ``shed.marks`` (``LaneBatch.marked`` -1).
        ``replay``: PBUs held for a takeover, counted when they arrived, never shed."""
        n = len(columns)
        scan = scan_pbus(
            columns.buf, columns.starts, columns.ends, columns.src, columns.dst, self._wire
        )
        if self._state.config.plain:  # the options a plain LMA skips (PbuProcessor.on_pbu)
            scan["has_ts"] = 0
            scan["has_lfi"] = 0
        arrival = columns.arrival
        if arrival is None or arrival.dtype != np.float64 or not arrival.flags.c_contiguous:
            arrival = np.full(n, np.nan) if arrival is None else np.ascontiguousarray(arrival)
        buf = columns.buf
        starts = _int64(columns.starts)
        ends = _int64(columns.ends)
        src, dst = _rows(columns.src), _rows(columns.dst)
        shed = np.zeros(n, dtype=np.uint8)
        config = self._state.config
        marked = 0 if replay else shed_marks(
            buf, starts, ends, scan, src, dst, arrival, now,
            config.pbu_max_delay, config.supersede_pbus, backlog, shed,
        )  # fmt: skip
        columns = Columns(buf, starts, ends, src, dst, arrival)
        codes = np.empty(n, dtype=np.uint8)
        accepted = self._accepted
        if len(accepted.sel) < n:
            accepted = self._accepted = Accepted(max(n, 2 * len(accepted.sel)))
        return LaneBatch(columns, scan, src, dst, arrival, replay, accepted, shed, marked, codes)

    def heartbeats(self, batch: LaneBatch, start: int) -> tuple[int, Columns]:
        """Answer the run of heartbeat requests at ``start`` (RFC 5847: R and the Restart
        Counter of the address asked; a plain LMA: Binding Error 2); the index after the run,
        and the responses."""
        columns = batch.columns
        plain = self._state.config.plain
        stop, buf, offsets, src, dst = answer_heartbeats(
            columns.buf, columns.starts, columns.src, columns.dst, batch.codes, start,
            self._lmaa, *self._heartbeat_responses(), echo_sequence=not plain,
        )  # fmt: skip
        return stop, Columns.from_offsets(buf, offsets, src, dst)

    def _heartbeat_responses(self) -> tuple[bytes, bytes]:
        """The reference's responses, sequence number 0, to a request sent to the LMAA and to
        the individual address: the templates ``answer_heartbeats`` fills in. A plain LMA's is
        the Binding Error 2 of an unrecognised MH type to either."""
        state = self._state
        if state.config.plain:
            error = encode_mh(BindingError(2), IPv6Address(0), IPv6Address(0), self._wire)
            return error, error
        lmaa, own = state.lmaa_restart_counter, state.config.restart_counter
        cached = self._responses
        if cached is None or cached[:2] != (lmaa, own):
            zero = IPv6Address(0)
            to_lmaa, to_address = (
                encode_mh(Heartbeat(0, cp.HB_FLAG_R, (RestartCounter(c),)), zero, zero, self._wire)
                for c in (lmaa, own)
            )
            cached = self._responses = (lmaa, own, to_lmaa, to_address)
        return cached[2], cached[3]

    def run(
        self, batch: LaneBatch, start: int, now: float, ownership: OwnershipSnapshot
    ) -> LaneRun:
        """Take the PBUs of ``batch`` from ``start`` on, as far as the lane can (``LaneRun``)."""
        self.classify(batch, ownership)
        columns, accepted = batch.columns, batch.accepted
        stop = self._lane.run(
            columns.buf, batch.scan, batch.src, batch.codes, batch.arrival, now, start, accepted
        )
        k = accepted.count
        pbas = None
        if k:
            self.pbus_accepted += k
            pbas = self._answer(batch)
        key = None
        if stop < len(columns) and batch.codes[stop] == TAKEOVER:
            key = self._takeover_key(batch, stop)
        return LaneRun(stop, accepted.row[:k].copy(), accepted.expires[:k], pbas, key)

    def classify(self, batch: LaneBatch, ownership: OwnershipSnapshot) -> None:
        """Work out ``batch.codes`` again if the ownership changed since they were."""
        if batch.ownership is ownership:
            return
        if ownership is not self._verdicts_for:
            for verdicts in self._verdicts:
                verdicts.clear()
            self._verdicts_for = ownership
        columns = batch.columns
        self._classifier.codes(
            columns.buf, columns.starts, columns.ends, batch.scan, batch.src, batch.dst,
            batch.shed, ownership.owns_lmaa, self._verdicts[batch.replay],
            lambda pair: self._verdict(pair, batch.replay, ownership), batch.codes,
        )  # fmt: skip
        batch.ownership = ownership

    @staticmethod
    def _verdict(pair: bytes, replay: bool, ownership: OwnershipSnapshot) -> int:
        """For PBUs from the MAG to the address of ``pair`` (32 octets), the verdict bits of
        ``lmaload._ext.lma_step``: whether the lane may answer them (1), whether they go to the
        takeover of the MAG under way (2), and whether the MAG was taken over (4)."""
        mag, dst = IPv6Address(pair[:16]), IPv6Address(pair[16:])
        if mag in ownership.awaiting_ha_switch:
            return 0
        allowed = ownership.serves(mag, dst)
        takeover = not ownership.virtual and not replay and not allowed
        takeover = takeover and mag in ownership.taking_over
        return allowed | takeover << 1 | (mag in ownership.recovered) << 2

    @staticmethod
    def _takeover_key(batch: LaneBatch, i: int) -> TakeoverKey:
        """The key a takeover holds PBU ``i`` under, as ``Takeovers.queue`` builds it."""
        rec = batch.scan[i]
        buf = batch.columns.buf
        start, length = int(rec["mn_start"]), int(rec["mn_len"])
        llid = None
        if rec["llid_len"] >= 0:
            at = int(rec["llid_start"])
            llid = buf[at : at + int(rec["llid_len"])].tobytes()
        return (buf[start : start + length].tobytes(), llid, int(rec["att"]))

    def _answer(self, batch: LaneBatch) -> Columns:
        """PBA 0 for every accepted PBU, from where it was sent to back to its sender."""
        columns, scan, accepted = batch.columns, batch.scan, batch.accepted
        k = accepted.count
        sel = accepted.sel[:k]
        buf, offsets = encode_pbas(
            columns.buf,
            scan,
            sel,
            accepted.prefix[:k],
            accepted.plen[:k],
            accepted.lifetime[:k],
            np.zeros(k, dtype=np.uint8),
            columns.src,
            columns.dst,
            self._wire,
        )
        return Columns.from_offsets(buf, offsets, columns.dst[sel], columns.src[sel])


def _int64(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.int64 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=np.int64)


def _rows(a: np.ndarray) -> np.ndarray:
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)
