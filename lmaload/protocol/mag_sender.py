"""The PBUs of ``MagEngine`` (``protocol/mag.py``) and what it sends: ``PbuSender`` owns the
outgoing ``Datagrams``, the MAGs' clock for Timestamp options and the PBU options by LFI, and makes
the session transitions that end in a PBU (a refresh, a new registration, a failover, the start-up
probe). Each transmission takes a new sequence number and Timestamp and arms the retransmission
timer (§3.7); one bulk encode per (LMA, LFI, de-registration) group, by ``MagStep`` when the
engine runs compiled."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv6Address

import numpy as np

from lmaload._ext.bulk import PbuEncoder
from lmaload._ext.mag_step import MagStep, RowHeap
from lmaload.bulk import PbuOptions, encode_pbus
from lmaload.measure.takeover import TakeoverMeter
from lmaload.population import Population
from lmaload.population import SessionState as S
from lmaload.protocol.datagrams import Columns, Datagrams
from lmaload.protocol.mag_config import MagConfig
from lmaload.protocol.mag_state import BOUND, NO_LFI, MagCounters, Peers, ns
from lmaload.protocol.mag_timers import RowTimers
from lmaload.wire import LmaFailureIndication
from lmaload.wire import codepoints as cp


class PbuSender:
    """PBUs of the rows of ``population`` to the LMAs of ``peers``; ``lfi`` is the column of the
    LMA each row's failover PBU names (``NO_LFI``: none), ``step`` the compiled steps or None."""

    def __init__(
        self,
        population: Population,
        config: MagConfig,
        peers: Peers,
        lfi: np.ndarray,
        timers: RowHeap | RowTimers,
        step: MagStep | None,
        counters: MagCounters,
        takeover: TakeoverMeter,
    ) -> None:
        self.pop = population
        self.config = config
        self.peers = peers
        self.lfi = lfi
        self.clock_offset = config.clock_offset  # the MAGs' clock error in Timestamp options
        self._timers = timers
        self._step = step
        self._counters = counters
        self._takeover = takeover
        self._out = Datagrams()
        self._options: dict[int, PbuOptions] = {}  # PBU options by the LFI's LMA
        self.encoders: dict[int, PbuEncoder] = {}  # compiled path: by encoding group key

    # --- what leaves ----------------------------------------------------------------------------

    def take(self) -> Datagrams:
        """Everything to send; forgotten here."""
        self.seal()
        out, self._out = self._out, Datagrams()
        return out

    def seal(self) -> None:
        """What the compiled steps wrote, after what was emitted before it."""
        if self._step is not None and self._step.pending:
            self._out.extend([Columns.from_offsets(*self._step.seal())])

    def emit(
        self, buf: np.ndarray, offsets: np.ndarray, mags: np.ndarray, lmas: np.ndarray
    ) -> None:
        """Messages from the MAGs of rows ``mags`` to the LMAs of index ``lmas``, as columns."""
        self.seal()
        src = np.ascontiguousarray(self.pop.mags["addr6"][mags])
        dst = np.ascontiguousarray(self.peers.lma_packed[lmas])
        self._out.extend([Columns.from_offsets(buf, offsets, src, dst)])

    def send_one(self, data: bytes, src: IPv6Address, dst: IPv6Address) -> None:
        """One Mobility Header built elsewhere, after everything before it."""
        self.seal()
        self._out.append(data, src, dst)

    # --- PBUs ---------------------------------------------------------------------------------

    def transmit(self, rows: np.ndarray, now: float) -> None:
        """(Re)send the PBU of each row: a new sequence number and Timestamp (§3.7), the
        retransmission timer armed, one bulk encode per (LMA, LFI, de-registration) group."""
        if not rows.size:
            return
        cfg = self.config
        mns = self.pop.mns
        now_ns = ns(now)
        clock = np.uint64(round((now + self.clock_offset) * 65536))
        any_lma = cfg.mode != "hard"  # the same LMA takes the sessions back
        if self._step is not None:
            rows = np.ascontiguousarray(rows, dtype=np.int64)
            common = self._step.transmit(rows, now_ns, int(clock))
            if self._takeover.failure_at is not None:
                self._takeover.sent(rows, mns["lma"][rows].astype(np.int64), now, any_lma)
            self.encode_rows(rows, common)
            return
        mns["seq"][rows] += np.uint16(1)
        mns["ts"][rows] = np.maximum(mns["ts"][rows] + np.uint64(1), clock)
        dereg = mns["state"][rows] == S.DEREGISTERING
        retries = mns["retries"][rows].astype(np.float64)
        timeout = np.minimum(cfg.initial_bindack_timeout * 2.0**retries, cfg.max_bindack_timeout)
        timeout[dereg] = cfg.initial_bindack_timeout
        self._timers.arm(rows, now_ns + np.rint(timeout * 1e9).astype(np.int64))
        self._counters.pbu_sent += len(rows)
        self._takeover.sent(rows, mns["lma"][rows].astype(np.int64), now, any_lma)
        self.encode(self._groups(rows))

    def encode(self, groups: list[tuple[int, np.ndarray]]) -> None:
        """The PBUs of each (key, rows) encoding group (see ``_groups``), after the bookkeeping
        of their transmission."""
        cfg, mns, lmas = self.config, self.pop.mns, self.peers.lmas
        for k, group in groups:
            lma_i, lfi_i, is_dereg = k // 512, (k // 2) % 256 - 1, k % 2
            lifetime = 0 if is_dereg else cfg.lifetime_units
            if self._step is None:
                buf, offsets = encode_pbus(
                    self.pop, group, lmas[lma_i], lifetime=lifetime, options=self._pbu(lfi_i)
                )
                self.emit(buf, offsets, mns["mag"][group], np.full(len(group), lma_i))
                continue
            if (encoder := self.encoders.get(k)) is None:
                encoder = self.encoders[k] = PbuEncoder(
                    self.pop, lmas[lma_i], lifetime=lifetime, options=self._pbu(lfi_i)
                )
            self._step.emit(*encoder.encode(group), group, lma_i)

    def encode_rows(self, rows: np.ndarray, common: int) -> None:
        """``encode`` for rows whose transmission ``MagStep.transmit`` booked (``common``: their
        group key, or -1 when they differ)."""
        self.encode([(common, rows)] if common >= 0 else self._groups(rows))

    def _groups(self, rows: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """``rows`` by encoding group: key (LMA · 256 + LFI + 1) · 2 + de-registration."""
        mns = self.pop.mns
        dereg = mns["state"][rows] == S.DEREGISTERING
        key = (mns["lma"][rows].astype(np.int64) * 256 + self.lfi[rows] + 1) * 2 + dereg
        return [(k, rows[key == k]) for k in np.unique(key).tolist()]

    def _pbu(self, lfi: int) -> PbuOptions:
        """The PBU options, with an LFI naming LMA ``lfi`` (none for NO_LFI)."""
        if (options := self._options.get(lfi)) is None:
            options = self._options[lfi] = replace(
                self.config.pbu,
                request_prefix=True,
                lfi=LmaFailureIndication(self.peers.lmas[lfi]) if lfi != NO_LFI else None,
            )
        return options

    def probe_pbu(
        self, lma: int, lifetime: int, now: float, rows: np.ndarray | None = None
    ) -> None:
        """A PBU of each of ``rows`` (default: the first MN) to LMA ``lma``, outside the
        sessions' state: their own sequence number and Timestamp, no timer."""
        mns = self.pop.mns
        row = np.zeros(1, dtype=np.int64) if rows is None else rows
        clock = np.uint64(round((now + self.clock_offset) * 65536))
        mns["seq"][row] += np.uint16(1)
        mns["ts"][row] = np.maximum(mns["ts"][row] + np.uint64(1), clock)
        buf, offsets = encode_pbus(
            self.pop, row, self.peers.lmas[lma], lifetime=lifetime, options=self._pbu(NO_LFI)
        )
        self.emit(buf, offsets, mns["mag"][row], np.full(len(row), lma))
        self._counters.pbu_sent += len(row)

    # --- session transitions that send a PBU ----------------------------------------------------

    def begin_refresh(self, rows: np.ndarray, intended: np.ndarray | int) -> None:
        """``rows`` go REFRESHING (HI 5), their latency timed from ``intended`` (ns)."""
        mns = self.pop.mns
        mns["state"][rows] = S.REFRESHING
        mns["hi"][rows] = cp.HI_NOT_CHANGED
        mns["retries"][rows] = 0
        mns["t_send"][rows] = intended

    def clear_prefix(self, rows: np.ndarray) -> None:
        """Ask the LMA for a prefix next time (ALL_ZERO HNP)."""
        self.pop.mns["hnp"][rows] = 0
        self.pop.mns["hnp_len"][rows] = 0

    def restart_sessions(self, rows: np.ndarray, now: float) -> None:
        """Register ``rows`` again as new sessions (HI 1), now."""
        mns = self.pop.mns
        mns["state"][rows] = S.REGISTERING
        mns["hi"][rows] = cp.HI_ATTACH_NEW_INTERFACE
        mns["retries"][rows] = 0
        mns["t_send"][rows] = ns(now)
        self.lfi[rows] = NO_LFI
        if not self.config.pbu.request_prefix:
            self.clear_prefix(rows)
        self.transmit(rows, now)

    def fail_over(self, rows: np.ndarray, to: int, failed: np.ndarray, now: float) -> None:
        """Seed Figure 2 step 8: PBU + LFI(failed LMA) to LMA ``to`` for each row; bound sessions
        keep their prefix with HI 5 (R33), unacknowledged ones keep registering there."""
        mns = self.pop.mns
        bound = np.isin(mns["state"][rows], BOUND) | (mns["hi"][rows] == cp.HI_NOT_CHANGED)
        mns["hi"][rows[bound]] = cp.HI_NOT_CHANGED
        mns["state"][rows] = S.FAILOVER
        mns["lma"][rows] = to
        mns["retries"][rows] = 0
        mns["t_send"][rows] = ns(now)
        self.lfi[rows] = failed
        self.transmit(rows, now)
