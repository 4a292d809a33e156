"""The results of a ``lmaload run``: the JSON document (``schema_version`` 1) built from a MAG
engine's measurements, and the short table printed at the end.

Times in the JSON are seconds, latencies microseconds (the histogram's unit); the encoded
histogram is HdrHistogram-compatible (``Histogram.encode``).
"""

from __future__ import annotations

import copy
import platform
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmaload import __version__
from lmaload.measure.histogram import Histogram
from lmaload.population import SessionState as S
from lmaload.protocol.mag import MagCounters, MagEngine
from lmaload.transport.mag_loop import MagLoop

SCHEMA_VERSION = 1
PERCENTILES = (50.0, 99.0)


@dataclass(frozen=True)
class RegistrationPhase:
    """What the engine had measured when the registration phase ended (its counters and
    latencies go on counting through the failover)."""

    start: float  # Unix seconds
    last_ack: float | None  # Unix seconds of the last accepted PBA
    registered: int
    failed: int
    counters: MagCounters
    latency: Histogram  # µs
    sync_wait: float | None = None  # seconds the standby took to show the sessions synced
    sync_observed: bool = True  # False: the standby could not be looked into, a fixed wait

    @classmethod
    def snapshot(cls, engine: MagEngine, start: float) -> RegistrationPhase:
        acked = engine.pop.mns["t_acked"]
        latency = Histogram()
        latency.merge(engine.latency["register"])
        return cls(
            start=start,
            last_ack=float(acked.max()) / 1e9 if acked.any() else None,
            registered=int((acked > 0).sum()),
            failed=engine.count(S.FAILED),
            counters=copy.deepcopy(engine.counters),
            latency=latency,
        )


def percentiles_over(values: np.ndarray) -> dict[str, float | None]:
    """p50/p99/max of the finite values (None when there are none)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return {"p50": None, "p99": None, "max": None, "count": 0}
    p50, p99 = np.percentile(finite, PERCENTILES)
    return {"p50": float(p50), "p99": float(p99), "max": float(finite.max()), "count": finite.size}


def latency_summary(histogram: Histogram) -> dict[str, Any]:
    """Count, p50, p99, max and the encoded histogram (µs)."""
    if not histogram.total:
        return {"count": 0, "p50": None, "p99": None, "max": None, "histogram": None}
    return {
        "count": histogram.total,
        "p50": histogram.percentile(50.0),
        "p99": histogram.percentile(99.0),
        "max": histogram.max,
        "histogram": histogram.encode(),
    }


def registration(phase: RegistrationPhase, rate: float, sessions: int) -> dict[str, Any]:
    # Achieved: sessions acknowledged per second from the start to the last acknowledgement.
    span = phase.last_ack - phase.start if phase.last_ack is not None else 0.0
    counters = phase.counters
    return {
        "start": phase.start,
        "target_rate": rate,
        "achieved_rate": phase.registered / span if span > 0 else 0.0,
        "sessions": sessions,
        "registered": phase.registered,
        "failed": phase.failed,
        "duration": span,
        "pbus_sent": counters.pbu_sent,
        "pbus_retransmitted": counters.pbu_retransmitted,
        "pba_status": _status_counts(counters.pba_status),
        "latency_us": latency_summary(phase.latency),
        "sync_wait": phase.sync_wait,
        "sync_complete": phase.sync_wait is not None if phase.sync_observed else None,
    }


def _status_counts(counts: Counter[int]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(counts.items()) if v > 0}


def takeover(engine: MagEngine, before: RegistrationPhase, first_mag: int = 0) -> dict[str, Any]:
    """The failover's measurements; PBU and PBA counts are those since ``before``. MAG rows are
    numbered from ``first_mag`` (a shard's first MAG in the whole run)."""
    meter = engine.takeover
    counters, earlier = engine.counters, before.counters
    detection, times = meter.detection, meter.takeover
    kept, lost, pending, stayed = meter.kept, meter.lost, meter.pending, meter.stayed

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
            "stayed": int(stayed.sum()),
        },
        "mags": rows,
    }


def generator(engine: MagEngine, loop: MagLoop) -> dict[str, Any]:
    lag = engine.lag
    return {
        "datagrams_sent": loop.datagrams_sent,
        "datagrams_received": loop.datagrams_received,
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
    lines = [
        f"registration rate   {reg['achieved_rate']:.0f}/s achieved, "
        f"{reg['target_rate']:.0f}/s target ({reg['registered']}/{reg['sessions']} registered, "
        f"{reg['failed']} failed)",
        f"latency             p50 {_fmt(lat['p50'], ' ms', ms)}  p99 {_fmt(lat['p99'], ' ms', ms)}"
        f"  max {_fmt(lat['max'], ' ms', ms)}",
        f"sync wait           {_fmt(reg['sync_wait'], ' s')}{sync_note[reg['sync_complete']]}",
    ]
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
            f"sessions            {summary['kept']} kept, {summary['lost']} lost, "
            f"{summary['pending']} not taken over, {summary['stayed']} refreshed by the same LMA",
        ]
    lines.append(
        f"generator           lag max {_fmt(gen['lag_max'], ' ms', 1e3, 1)}, "
        f"{gen['behind_schedule']:.2%} behind schedule"
    )
    pcap = results.get("pcap")
    if pcap is not None:
        decode = " ".join(f"-d udp.port=={port},ipv6" for port in pcap["udp_ports"])
        lines.append(
            f"pcap                {pcap['frames']} frames: tshark -r {pcap['path']} {decode}"
        )
    return "\n".join(lines)
