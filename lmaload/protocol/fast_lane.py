"""The glue between ``LmaEngine`` and its compiled fast lane (``lmaload._ext.lane``): which
received PBUs the lane may take, and the PBAs of those it accepted, encoded in one call.

A batch that arrives as ``Columns`` is scanned by ``lmaload._ext.lma_batch.scan_pbus``. A PBU is
*eligible* when the scan says the reference decoder would read exactly its fields (``fast``), it
is addressed to this LMA, and the engine's per-MAG state lets the lane decide alone: the engine
serves that MAG at that address (``_serves``), no HA Switch to the MAG awaits its PBU, and it is
not a HI 5 re-registration asking for a prefix from a MAG taken over (a recovery, §8.5). The
lane itself stops at every PBU whose outcome is not an acceptance it can write
(``lmaload._ext.lane``). That per-MAG state changes only in the reference path, so eligibility is
worked out again whenever a datagram went that way and the state differs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import TYPE_CHECKING

import numpy as np

from lmaload._ext.lane import Accepted, Lane, classify
from lmaload._ext.lma_batch import encode_pbas, scan_pbus
from lmaload.protocol.datagrams import Columns
from lmaload.wire import codepoints as cp

if TYPE_CHECKING:
    from lmaload.protocol.lma import LmaEngine


class FastLane:
    """Runs the columns of a received batch through the lane and the reference path, in order."""

    def __init__(self, engine: LmaEngine) -> None:
        self._engine = engine
        config = engine.config
        self._lane = Lane(
            engine.cache,
            engine._pool,
            engine._tunnels,
            config.address.packed,
            config.timestamp_validity_window,
        )
        self._address = config.address.packed
        self._lmaa = config.lmaa.packed  # type: ignore[union-attr]
        self.taken = 0  # PBUs the lane processed
        self._verdicts: dict[tuple[bytes, bool], tuple[bool, bool, bool]] = {}
        self._verdicts_for: tuple[object, ...] | None = None

    def receive(
        self,
        columns: Columns,
        now: float,
        slow: Callable[[int], None],
        on_accepted: Callable[[np.ndarray, np.ndarray], None],
        replay: bool = False,
    ) -> None:
        """Process every datagram of ``columns``: the lane's, and ``slow(i)`` for the others.
        ``on_accepted(rows, expires)`` follows each run the lane accepted. ``replay``: PBUs
        held for a takeover, counted when they arrived."""
        engine = self._engine
        n = len(columns)
        scan = scan_pbus(
            columns.buf, columns.starts, columns.ends, columns.src, columns.dst, engine._wire
        )
        arrival = columns.arrival if columns.arrival is not None else np.full(n, np.nan)
        arrival = np.ascontiguousarray(arrival, dtype=np.float64)
        src = np.ascontiguousarray(columns.src)
        state = engine._ownership()
        eligible, hold = self._classify(scan, columns, replay, state)
        accepted = Accepted(n)
        i = 0
        while i < n:
            stop = self._lane.run(columns.buf, scan, src, eligible, arrival, now, i, accepted)
            if accepted.count:
                self.taken += accepted.count
                self._answer(columns, scan, accepted, count=not replay)
                on_accepted(
                    accepted.row[: accepted.count].copy(), accepted.expires[: accepted.count]
                )
            if stop == n:
                break
            if hold[stop]:
                self._hold(columns, scan, stop)
            else:
                slow(stop)
                now_state = engine._ownership()
                if now_state != state:
                    state = now_state
                    eligible, hold = self._classify(scan, columns, replay, state)
            i = stop + 1

    def _classify(
        self, scan: np.ndarray, columns: Columns, replay: bool, state: tuple[object, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which datagrams the lane may take, and which are failover PBUs to hold for a
        takeover already under way (hard mode: a MAG this LMA does not serve yet); ``state`` is
        the engine's ownership state now (``lmaload._ext.lane.classify``)."""
        if state != self._verdicts_for:
            self._verdicts.clear()
            self._verdicts_for = state
        lmaa = self._lmaa if self._engine.owns_lmaa else None
        return classify(
            scan,
            np.ascontiguousarray(columns.src),
            np.ascontiguousarray(columns.dst),
            self._address,
            lmaa,
            functools.partial(self._verdict, replay=replay),
        )

    def _verdict(self, pair: bytes, replay: bool) -> tuple[bool, bool, bool]:
        """For PBUs from the MAG to the address of ``pair`` (32 octets): whether the lane may
        answer them, hold them for a takeover under way, and whether the MAG was taken over.
        Kept until the engine's ownership state changes (``_classify`` checks)."""
        key = (pair, replay)
        verdict = self._verdicts.get(key)
        if verdict is None:
            engine = self._engine
            mag, dst = IPv6Address(pair[:16]), IPv6Address(pair[16:])
            if mag in engine._ha_switches:
                verdict = (False, False, False)
            else:
                allowed = engine._serves(mag, dst)
                hard = engine.config.mode == "hard"
                held = hard and not replay and not allowed and mag in engine._takeovers
                verdict = (allowed, held, mag in engine._recovered)
            self._verdicts[key] = verdict
        return verdict

    def _hold(self, columns: Columns, scan: np.ndarray, i: int) -> None:
        """Hold a failover PBU for the takeover of its MAG, as ``LmaEngine._queue_takeover``
        does once the takeover is under way."""
        engine = self._engine
        rec = scan[i]
        buf = columns.buf
        start, length = int(rec["mn_start"]), int(rec["mn_len"])
        llid = None
        if rec["llid_len"] >= 0:
            at = int(rec["llid_start"])
            llid = buf[at : at + int(rec["llid_len"])].tobytes()
        datagram = columns.datagram(i)
        key = (buf[start : start + length].tobytes(), llid, int(rec["att"]))
        engine._takeovers[datagram.src].hold(key, datagram)
        engine.counters.pbu_processed += 1

    def _answer(self, columns: Columns, scan: np.ndarray, accepted: Accepted, count: bool) -> None:
        """PBA 0 for every accepted PBU, from where it was sent to back to its sender;
        ``count``: count the PBUs as processed."""
        engine = self._engine
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
            engine._wire,
        )
        pbas = Columns.from_offsets(buf, offsets, columns.dst[sel], columns.src[sel])
        if engine._withholds_pbas():
            engine._hold_pbas(accepted.row[:k].copy(), pbas)
        else:
            engine._out.extend([pbas])
        if count:
            engine.counters.pbu_processed += k
        engine.counters.pba_status[cp.STATUS_ACCEPTED] += k
