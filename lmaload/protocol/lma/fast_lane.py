"""The LMA's compiled fast lane (``lmaload._ext.lane``) and what decides which received PBUs it
may take; the PBAs of those it accepted are encoded in one call.

A batch that arrives as ``Columns`` is scanned by ``lmaload._ext.lma_batch.scan_pbus``. A PBU is
*eligible* when the scan says the reference decoder would read exactly its fields (``fast``), it
is addressed to this LMA, and the ownership state lets the lane decide alone: this LMA serves
that MAG at that address, no HA Switch to the MAG awaits its PBU, and it is not a HI 5
re-registration asking for a prefix from a MAG taken over (a recovery, §8.5). The lane itself
stops at every PBU whose outcome is not an acceptance it can write (``lmaload._ext.lane``).

``FastLane.run`` takes the eligible PBUs from a start index up to the first one it cannot, and
returns what it did (``LaneRun``); the caller records the accepted entries, sends or withholds
the PBAs and takes the datagram at ``stop`` by the reference path. Ownership changes only in the
reference path, so eligibility is worked out again when the caller passes a new
``OwnershipSnapshot``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from ipaddress import IPv6Address

import numpy as np

from lmaload._ext.lane import Accepted, Lane, classify
from lmaload._ext.lma_batch import encode_pbas, scan_pbus
from lmaload.protocol.datagrams import Columns
from lmaload.protocol.lma.ownership import OwnershipSnapshot
from lmaload.protocol.lma.state import LmaState
from lmaload.protocol.redundancy import TakeoverKey


@dataclass
class LaneBatch:
    """A batch of columns scanned for the lane, and its eligibility under ``ownership``."""

    columns: Columns
    scan: np.ndarray
    src: np.ndarray
    arrival: np.ndarray
    replay: bool
    accepted: Accepted
    ownership: OwnershipSnapshot | None = None
    eligible: np.ndarray | None = None
    for_takeover: np.ndarray | None = None


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
        self._wire = state.wire
        self._lane = Lane(
            state.cache,
            state.pool,
            state.tunnels,
            config.address.packed,
            config.timestamp_validity_window,
        )
        self._address = config.address.packed
        self._lmaa = state.lmaa.packed
        self.pbus_accepted = 0
        self._verdicts: dict[tuple[bytes, bool], tuple[bool, bool, bool]] = {}
        self._verdicts_for: OwnershipSnapshot | None = None

    def scan(self, columns: Columns, replay: bool) -> LaneBatch:
        """Scan ``columns`` for ``run``. ``replay``: PBUs held for a takeover, counted when
        they arrived."""
        n = len(columns)
        scan = scan_pbus(
            columns.buf, columns.starts, columns.ends, columns.src, columns.dst, self._wire
        )
        arrival = columns.arrival if columns.arrival is not None else np.full(n, np.nan)
        arrival = np.ascontiguousarray(arrival, dtype=np.float64)
        src = np.ascontiguousarray(columns.src)
        return LaneBatch(columns, scan, src, arrival, replay, Accepted(n))

    def run(
        self, batch: LaneBatch, start: int, now: float, ownership: OwnershipSnapshot
    ) -> LaneRun:
        """Take the PBUs of ``batch`` from ``start`` on, as far as the lane can (``LaneRun``)."""
        if batch.ownership is not ownership:
            batch.eligible, batch.for_takeover = self._classify(batch, ownership)
            batch.ownership = ownership
        columns, accepted = batch.columns, batch.accepted
        stop = self._lane.run(
            columns.buf, batch.scan, batch.src, batch.eligible, batch.arrival, now, start, accepted
        )
        k = accepted.count
        pbas = None
        if k:
            self.pbus_accepted += k
            pbas = self._answer(batch)
        key = None
        if stop < len(columns) and batch.for_takeover[stop]:  # type: ignore[index]
            key = self._takeover_key(batch, stop)
        return LaneRun(stop, accepted.row[:k].copy(), accepted.expires[:k], pbas, key)

    def _classify(
        self, batch: LaneBatch, ownership: OwnershipSnapshot
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which datagrams the lane may take, and which are failover PBUs to hold for a
        takeover already under way (hard mode: a MAG this LMA does not serve yet)."""
        if ownership is not self._verdicts_for:
            self._verdicts.clear()
            self._verdicts_for = ownership
        return classify(
            batch.scan,
            batch.src,
            np.ascontiguousarray(batch.columns.dst),
            self._address,
            self._lmaa if ownership.owns_lmaa else None,
            functools.partial(self._verdict, replay=batch.replay, ownership=ownership),
        )

    def _verdict(
        self, pair: bytes, replay: bool, ownership: OwnershipSnapshot
    ) -> tuple[bool, bool, bool]:
        """For PBUs from the MAG to the address of ``pair`` (32 octets): whether the lane may
        answer them, whether they go to the takeover of the MAG under way, and whether the MAG
        was taken over.
        Kept while the ownership snapshot stays the same (``_classify`` checks)."""
        key = (pair, replay)
        verdict = self._verdicts.get(key)
        if verdict is None:
            mag, dst = IPv6Address(pair[:16]), IPv6Address(pair[16:])
            if mag in ownership.awaiting_ha_switch:
                verdict = (False, False, False)
            else:
                allowed = ownership.serves(mag, dst)
                hard = not ownership.virtual
                takeover = hard and not replay and not allowed and mag in ownership.taking_over
                verdict = (allowed, takeover, mag in ownership.recovered)
            self._verdicts[key] = verdict
        return verdict

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
