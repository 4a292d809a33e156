"""The results of a ``lmaload run``: the JSON document (``schema_version`` 2) built from a MAG
engine's measurements, and the short table printed at the end.

Times in the JSON are seconds, latencies microseconds (the histogram's unit); the encoded
histogram is HdrHistogram-compatible (``Histogram.encode``).

Every mobile node is accounted for at the end of the registration phase: registered, rejected
(a final PBA status), given up (unanswered through every retransmission), unanswered (still
waiting) or not sent (the phase was cut short by ``--fail-at``), adding up to the sessions.
Every session at risk in a failover is kept, lost, pending or not attempted. The achieved rate
is taken over the scheduled window (``lmaload.measure.goodput``).
"""

from __future__ import annotations

import copy
import platform
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmaload import __version__
from lmaload.measure.goodput import achieved_rate, scheduled_window
from lmaload.measure.histogram import Histogram
from lmaload.measure.summary import latency_summary, percentiles_over
from lmaload.population import SessionState as S
from lmaload.protocol.mag import MagCounters, MagEngine
from lmaload.transport.mag_loop import MagLoop

SCHEMA_VERSION = 2
# Above this share of retransmitted PBUs the target is reported overloaded: a healthy LMA loses
# almost none, and a share this high means answers come later than the 1 s retransmission timer.
RETRANSMISSION_OVERLOAD = 0.05


@dataclass(frozen=True)
class RegistrationPhase:
    """What the engine had measured when the registration phase ended (its counters and
    latencies go on counting through the failover)."""

    start: float  # Unix seconds: the first scheduled send
    last_scheduled: float  # Unix seconds: the last scheduled send
    end: float  # Unix seconds the phase ended (its wait for answers included)
    cut: bool  # the phase ended at ``--fail-at`` with mobile nodes still to register
    per_second: list[int]  # registrations completed in each second from ``start``
    registered: int
    rejected: int
    given_up: int
    unanswered: int
    not_sent: int
    counters: MagCounters
    latency: Histogram  # µs
    sync_wait: float | None = None  # seconds the standby took to show the sessions synced
    sync_observed: bool = True  # False: the standby could not be looked into, a fixed wait

    @classmethod
    def snapshot(cls, engine: MagEngine, end: float, cut: bool = False) -> RegistrationPhase:
        mns = engine.pop.mns
        state = mns["state"]
        by_state = np.bincount(state, minlength=S.GIVEN_UP + 1)
        acked_failover = int(np.count_nonzero((state == S.FAILOVER) & (mns["t_acked"] > 0)))
        registered = int(by_state[S.REGISTERED] + by_state[S.REFRESHING]) + acked_failover
        rejected, given_up, not_sent = (int(by_state[s]) for s in (S.FAILED, S.GIVEN_UP, S.IDLE))
        latency = Histogram()
        latency.merge(engine.latency["register"])
        start = engine.schedule_start
        return cls(
            start=start,
            last_scheduled=engine.last_scheduled or start,
            end=end,
            cut=cut,
            per_second=engine.registrations.until(end),
            registered=registered,
            rejected=rejected,
            given_up=given_up,
            unanswered=len(mns) - registered - rejected - given_up - not_sent,
            not_sent=not_sent,
            counters=copy.deepcopy(engine.counters),
            latency=latency,
        )


def registration(phase: RegistrationPhase, rate: float, sessions: int) -> dict[str, Any]:
    window = scheduled_window(phase.start, phase.last_scheduled, phase.end)
    completed = sum(phase.per_second)
    counters = phase.counters
    return {
        "start": phase.start,
        "target_rate": rate,
        "achieved_rate": achieved_rate(completed, window),
        "window": window,
        "completed": completed,
        "per_second": phase.per_second,
        "cut_by_failure": phase.cut,
        "sessions": sessions,
        **accounting(phase),
        "rejected_by_status": _status_counts(counters.failed),
        "pbus_sent": counters.pbu_sent,
        "pbus_retransmitted": counters.pbu_retransmitted,
        **retransmission_health(counters.pbu_sent, counters.pbu_retransmitted, completed),
        "pba_status": _status_counts(counters.pba_status),
        "peer_quirks": dict(sorted(counters.quirks.items())),
        "latency_us": latency_summary(phase.latency),
        "sync_wait": phase.sync_wait,
        "sync_complete": phase.sync_wait is not None if phase.sync_observed else None,
    }


def accounting(phase: RegistrationPhase) -> dict[str, int]:
    """Every mobile node at the end of ``phase``, by what became of it."""
    return {
        "registered": phase.registered,
        "rejected": phase.rejected,
        "given_up": phase.given_up,
        "unanswered": phase.unanswered,
        "not_sent": phase.not_sent,
    }


def retransmission_health(sent: int, retransmitted: int, completed: int) -> dict[str, Any]:
    """PBUs per completed registration (1.0 is perfect), the retransmitted share of the PBUs, and
    whether that share says the target is overloaded."""
    share = retransmitted / sent if sent else 0.0
    return {
        "pbus_per_registration": sent / completed if completed else None,
        "retransmission_share": share,
        "overloaded": share > RETRANSMISSION_OVERLOAD,
    }


def unregistered(registration: dict[str, Any]) -> int:
    """Mobile nodes the registration phase did not get an answer for."""
    r = registration
    return r["given_up"] + r["unanswered"] + r["not_sent"]


def _status_counts(counts: Counter[int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(counts.items()) if v > 0}


def takeover(engine: MagEngine, before: RegistrationPhase, first_mag: int = 0) -> dict[str, Any]:
    """The failover's measurements; PBU and PBA counts are those since ``before``. MAG rows are
    numbered from ``first_mag`` (a shard's first MAG in the whole run)."""
    meter = engine.takeover
    counters, earlier = engine.counters, before.counters
    detection, times = meter.detection, meter.takeover
    kept, lost, pending, stayed = meter.kept, meter.lost, meter.pending, meter.stayed
    not_attempted, at_risk = meter.not_attempted, meter.at_risk

    def seconds(value: float) -> float | None:
        return float(value) if np.isfinite(value) else None

    rows = [
        {
            "mag": first_mag + m,
            "detection": seconds(detection[m]),
            "takeover": seconds(times[m]),
            "kept": int(kept[m]),
            "lost": int(lost[m]),
            "pending": int(pending[m]),
            "not_attempted": int(not_attempted[m]),
            "at_risk": int(at_risk[m]),
            "stayed": int(stayed[m]),
        }
        for m in range(len(detection))
    ]
    return {
        "failure_at": meter.failure_at,
        "pbus_sent": counters.pbu_sent - earlier.pbu_sent,
        "pbus_retransmitted": counters.pbu_retransmitted - earlier.pbu_retransmitted,
        "pba_status": _status_counts(counters.pba_status - earlier.pba_status),
        "failed": _status_counts(counters.failed - earlier.failed),
        "failover_latency_us": latency_summary(engine.latency["failover"]),
        "summary": {
            "detection": percentiles_over(detection),
            "takeover": percentiles_over(times),
            "kept": int(kept.sum()),
            "lost": int(lost.sum()),
            "pending": int(pending.sum()),
            "not_attempted": int(not_attempted.sum()),
            "at_risk": int(at_risk.sum()),
            "stayed": int(stayed.sum()),
            "registered_after_failure": meter.registered_after,
        },
        "mags": rows,
    }


def generator(engine: MagEngine, loop: MagLoop) -> dict[str, Any]:
    lag = engine.lag
    return {
        "datagrams_sent": loop.datagrams_sent,
        "datagrams_received": loop.datagrams_received,
        "receive_delay_us": latency_summary(loop.receive_delay),
        "lag_max": lag.max,
        "lag_p99_us": lag.histogram.percentile(99.0) if lag.histogram.total else None,
        "lag_histogram": lag.histogram.encode() if lag.histogram.total else None,
        "lag_tolerance": engine.config.lag_tolerance,
        "scheduled_sends": lag.sent,
        "late_sends": lag.late,
        "behind_schedule": engine.behind_schedule,
        "drops": dict(loop.transport.drops),
    }


def versions() -> dict[str, str]:
    """What produced a results document (its ``config.versions``)."""
    return {
        "lmaload": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def _fmt(value: float | None, unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}{unit}"


def table(results: dict[str, Any]) -> str:
    """The end-of-run summary."""
    reg, tk, gen = results["registration"], results["takeover"], results["generator"]
    lat = reg["latency_us"]
    summary = tk["summary"]
    det, take = summary["detection"], summary["takeover"]
    ms = 1e-3  # µs → ms
    sync_note = {True: "", False: " (timed out)", None: " (fixed: the standby is not observed)"}
    if results["config"].get("fail_at") is not None:
        sync_note[None] = " (none: the active failed at --fail-at)"
    elif reg["sync_wait"] is None and reg["sync_complete"] is None:
        sync_note[None] = " (none: no standby)"
    rejected = ", ".join(f"status {code}: {n}" for code, n in reg["rejected_by_status"].items())
    not_sent = f", {reg['not_sent']} not sent" if reg["not_sent"] else ""
    per_registration = reg["pbus_per_registration"]
    lines = [
        f"registration rate   {reg['achieved_rate']:.0f}/s achieved over {reg['window']:.1f} s, "
        f"{reg['target_rate']:.0f}/s target",
        f"mobile nodes        {reg['registered']} registered, {reg['rejected']} rejected"
        f"{f' ({rejected})' if rejected else ''}, {reg['given_up']} given up, "
        f"{reg['unanswered']} unanswered{not_sent} (of {reg['sessions']})",
        f"retransmissions     {reg['pbus_sent']} PBUs, "
        f"{_fmt(per_registration, digits=2)} per registration, "
        f"{reg['retransmission_share']:.1%} retransmitted"
        f"{': the target is overloaded' if reg['overloaded'] else ''}",
        f"latency             p50 {_fmt(lat['p50'], ' ms', ms)}  p99 {_fmt(lat['p99'], ' ms', ms)}"
        f"  max {_fmt(lat['max'], ' ms', ms)}",
        f"sync wait           {_fmt(reg['sync_wait'], ' s')}{sync_note[reg['sync_complete']]}",
    ]
    if quirks := reg.get("peer_quirks"):
        lines.append("peer quirks         " + ", ".join(f"{k}: {n}" for k, n in quirks.items()))
    refresh = results["refresh_latency_us"]
    if refresh["count"]:
        lines.append(
            f"refreshes           {refresh['count']}  p50 {_fmt(refresh['p50'], ' ms', ms)}"
            f"  p99 {_fmt(refresh['p99'], ' ms', ms)}  max {_fmt(refresh['max'], ' ms', ms)}"
        )
    if tk["failure_at"] is None:
        lines.append("failover            none injected (no --fail-cmd)")
    else:
        lines += [
            f"detection           p50 {_fmt(det['p50'], ' s')}  p99 {_fmt(det['p99'], ' s')}"
            f"  max {_fmt(det['max'], ' s')}  ({det['count']} MAGs)",
            f"takeover            p50 {_fmt(take['p50'], ' s')}  p99 {_fmt(take['p99'], ' s')}"
            f"  max {_fmt(take['max'], ' s')}  ({take['count']} MAGs)",
            f"sessions            {summary['at_risk']} at risk: {summary['kept']} kept, "
            f"{summary['lost']} lost, {summary['pending']} pending, "
            f"{summary['not_attempted']} not attempted; {summary['stayed']} refreshed by the "
            "same LMA",
        ]
        if summary["registered_after_failure"]:
            lines.append(
                f"after the failure  {summary['registered_after_failure']} new sessions registered"
            )
    final = results.get("final")
    if final is not None:
        lines.append(
            f"schedule, in all    {final['registered']} registered, {final['rejected']} "
            f"rejected, {final['given_up']} given up, "
            f"{final['unanswered'] + final['not_sent']} unanswered"
        )
    lines.append(
        f"generator           lag max {_fmt(gen['lag_max'], ' ms', 1e3, 1)}, "
        f"{gen['behind_schedule']:.2%} behind schedule; kernel to engine p99 "
        f"{_fmt(gen['receive_delay_us']['p99'], ' ms', ms, 2)}"
    )
    pcap = results.get("pcap")
    if pcap is not None:
        decode = " ".join(f"-d udp.port=={port},ipv6" for port in pcap["udp_ports"])
        lines.append(
            f"pcap                {pcap['frames']} frames: tshark -r {pcap['path']} {decode}"
        )
    return "\n".join(lines)
