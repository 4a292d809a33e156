"""``MagEngine``'s compiled path (``protocol/mag.py``): how the results of the compiled PBA and
heartbeat steps (``MagStep``) reach the engine's reference code — the rare work they hand back —
and what the compiled driver (``MagServe``, run by ``transport.mag_loop.MagLoop``) reads from the
engine before a slice and gives back after it. A base class of ``MagEngine``, over its state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lmaload.protocol.datagrams import Columns
from lmaload.protocol.mag_state import ns, pairs

if TYPE_CHECKING:
    from lmaload._ext.mag_step import MagStep


class CompiledPath:
    """The compiled path's glue of ``MagEngine`` (which sets every attribute used here)."""

    def _receive_compiled(self, columns: Columns, now: float) -> None:
        """``_receive_columns`` by the compiled steps: the PBAs, then the Heartbeats, then any HA
        Switch, as the reference takes them."""
        step = self._step
        assert step is not None
        meter = self.takeover
        measuring = meter.failure_at is not None and now >= meter.failure_at
        pbas = step.pbas(
            columns.buf, columns.starts, columns.ends, columns.src, now, ns(now), measuring
        )
        self.after_pbas(columns, now, pbas)

    def after_pbas(self, columns: Columns, now: float, pbas: tuple | None) -> None:
        """What the compiled PBA step left of ``columns`` (its result ``pbas``), then the
        Heartbeats among them."""
        step = self._step
        assert step is not None
        if pbas is not None:
            registrations, accepted, rejected, dropped = pbas
            for i in dropped:
                self._malformed(columns.datagram(i).data)
            if registrations:
                self._registered(registrations, now)
            if accepted:
                rows, lmas, changed = (np.array(c) for c in zip(*accepted, strict=True))
                self.takeover.accepted(rows, lmas, changed, now, self.config.mode != "hard")
            if rejected:  # in row order, as the reference's np.unique leaves them
                rows, lmas, status, seq = np.array(sorted(rejected), dtype=np.int64).T
                self._reject(rows, lmas, status, seq, now)
        rare = step.heartbeats(
            columns.buf, columns.starts, columns.ends, columns.src, columns.dst, now
        )
        self.after_heartbeats(columns, now, rare)

    def after_heartbeats(self, columns: Columns, now: float, rare: tuple | None) -> None:
        """What the compiled heartbeat step left of ``columns`` (its result ``rare``)."""
        assert self._step is not None
        self._step.fold(self.counters)
        if rare is None:
            return
        probes, came_up, restarted, switches, errors = rare
        for i, seq in probes:
            self.liveness.answer(columns.datagram(i), seq)
        self.liveness.changes(pairs(came_up), pairs(restarted), now)
        for i in switches:
            self.liveness.on_ha_switch(columns.datagram(i), now)
        for i in errors:
            self._on_binding_error(columns.datagram(i), now)

    # --- the compiled driver's interface ------------------------------------------------------

    @property
    def scheduled(self) -> np.ndarray:
        """The schedule's rows, in the order of its intended times."""
        return self._scheduled

    @property
    def step(self) -> MagStep | None:
        """The compiled steps, or None on the reference path."""
        return self._step

    def serve_state(self) -> tuple | None:
        """What ``MagServe.serve`` needs after the positional deadline (intended times, cursor,
        the engine's own due time, heartbeating, the takeover's failure time, whether the
        schedule's sends may run compiled, the clock offset, the registrations' origin), or None
        while only this engine's code may serve (the start-up probe before the schedule, restart
        mode)."""
        if (
            self._step is None
            or self.restart is not None  # it hears every batch (LmaRestart.heard)
            or (self._probe_due is not None and not self._cursor)
        ):
            return None
        own = [t for t in (self._probe_due, self._deregister_at) if t is not None]
        failure = self.takeover.failure_at
        return (
            self._intended,
            self._cursor,
            min(own, default=float("inf")),
            self.heartbeating,
            float("inf") if failure is None else failure,
            failure is None,
            self.sender.clock_offset,
            self.registrations.start,
        )

    def served(
        self, cursor: int, lag: tuple[int, float, int], registered: list[tuple[int, float]]
    ) -> None:
        """After ``MagServe.serve``: the schedule's cursor, the lag of the sends it made
        (count, largest, late), the initial registrations it saw accepted ((count, at) by
        second), the heartbeat table's next due time, the counters."""
        assert self._step is not None
        self._cursor = cursor
        for count, at in registered:
            self._registered(count, at)
        if lag[0]:
            self.lag.count(*lag)
        self.heartbeats.set_next_due(self._step.next_heartbeat)
        self._step.fold(self.counters)
