"""The ``sync`` and ``generator`` sections of a ``lmaload sync`` results document (the document of
``lmaload.results``: ``schema_version``, ``config``, then the job's sections) and the
summary table printed at the end.

Rates are over the scheduled window (``lmaload.measure.goodput``): from the stream's start to the
later of the last scheduled record (rate mode) and the last record settled — acknowledged or
given up (the last send, without acknowledgements, when only what was sent is known). Every
planned record is accounted for: acknowledged, given up, unsettled (sent, neither) or not sent.
"Sessions" are session creates, "records" every PBCI option (creates, updates and deletes).
"""

from __future__ import annotations

from typing import Any

from lmaload.measure.goodput import achieved_rate, scheduled_window
from lmaload.measure.summary import latency_summary
from lmaload.sync.plan import KIND_NAMES, SyncPlan
from lmaload.sync.sender import SyncSender


def _by_kind(values: Any) -> dict[str, int]:
    return {name: int(v) for name, v in zip(KIND_NAMES, values, strict=True)}


def sync_section(
    sender: SyncSender,
    plan: SyncPlan,
    verification: dict[str, Any],
    standby: dict[str, Any] | None,
) -> dict[str, Any]:
    cfg, c = sender.config, sender.counters
    end = sender.last_settled if cfg.ack else sender.last_send
    start = sender.stream_start
    span = 0.0
    if start is not None:
        span = scheduled_window(start, sender.last_scheduled or start, end or start)
    basis = c.records_acked if cfg.ack else c.records_sent
    volume = c.bytes_acked if cfg.ack else c.bytes_sent
    sent, acked = int(c.records_sent.sum()), int(c.records_acked.sum())

    def per_second(value: float) -> float:
        return achieved_rate(int(value), span)

    return {
        "mode": "window" if cfg.window is not None else "rate",
        "window": cfg.window,
        "target_rate": cfg.rate,
        "ack": cfg.ack,
        "sessions": len(sender.row_state),
        "records": _by_kind(plan.counts),
        "start": start,
        "duration": span,
        "rates_basis": "acknowledged" if cfg.ack else "sent",
        "sessions_per_second": per_second(int(basis[0])),
        "pbci_per_second": per_second(int(basis.sum())),
        "bytes_per_second": per_second(volume),
        "records_sent": _by_kind(c.records_sent),
        "records_acked": _by_kind(c.records_acked) if cfg.ack else None,
        "records_given_up": c.records_given_up,
        "records_unsettled": sent - acked - c.records_given_up if cfg.ack else None,
        "records_not_sent": len(plan) - sent,
        "acked_per_second": sender.acked_per_second.counts if cfg.ack else None,
        "ss_reps_sent": c.ss_rep_sent,
        "ss_rep_retransmissions": c.ss_rep_retransmitted,
        "ss_reps_given_up": c.messages_given_up,
        "ss_acks_received": c.ss_ack_received,
        "ss_acks_duplicate": c.ss_ack_duplicate,
        "bytes_sent": c.bytes_sent,
        "bytes_acked": c.bytes_acked if cfg.ack else None,
        "ss_ack_latency_us": latency_summary(sender.latency),
        "retransmission_timeout": sender.rto,
        "full_sync": {
            "requests": c.ss_req_received,
            "sessions": c.full_sync_sessions,
            "messages": c.full_sync_messages,
        },
        "hello": {"sent": c.hello_sent, "received": c.hello_received},
        "switchovers_answered": c.so_req_answered,
        "switch_completes": c.sw_comp_received,
        "verification": verification,
        "standby": standby,
    }


def generator_section(
    sender: SyncSender, datagrams: tuple[int, int], cpu: tuple[float, float], drops: dict
) -> dict[str, Any]:
    """``datagrams`` (sent, received); ``cpu`` (process CPU seconds, wall seconds) of the
    stream."""
    lag = sender.lag
    cpu_seconds, wall = cpu
    rate_mode = sender.config.rate is not None
    return {
        "datagrams_sent": datagrams[0],
        "datagrams_received": datagrams[1],
        "lag_max": lag.max if rate_mode else None,
        "lag_p99_us": lag.histogram.percentile(99.0) if lag.histogram.total else None,
        "lag_tolerance": lag.tolerance,
        "behind_schedule": lag.behind_schedule,
        "cpu_seconds": cpu_seconds,
        "cpu_share": cpu_seconds / wall if wall > 0 else 0.0,
        "drops": drops,
    }


def table(results: dict[str, Any]) -> str:
    s, gen = results["sync"], results["generator"]
    lat = s["ss_ack_latency_us"]
    ms = 1e-3
    basis = s["rates_basis"]

    def fmt(value: float | None, scale: float = 1.0, unit: str = "") -> str:
        return "-" if value is None else f"{value * scale:.1f}{unit}"

    v = s["verification"]
    if "skipped" in v:
        verified = f"skipped ({v['skipped']})"
    else:
        verified = (
            f"{v['verified']}/{v['sampled']} verified, {v['missing']} missing, "
            f"{v['wrong_prefix']} wrong prefix, {v['unanswered']} unanswered"
        )
    lines = [
        f"sessions            {s['sessions_per_second']:.0f}/s {basis} "
        f"({s['records']['create']} sessions, {s['duration']:.2f} s)",
        f"PBCI options        {s['pbci_per_second']:.0f}/s {basis} "
        f"(creates/updates/deletes {s['records']['create']}/{s['records']['update']}/"
        f"{s['records']['delete']})",
        f"bytes               {s['bytes_per_second'] / 1e6:.2f} MB/s {basis}",
        f"records             {sum(s['records'].values())} planned: "
        f"{sum((s['records_acked'] or s['records_sent']).values())} {basis}, "
        f"{s['records_given_up']} given up, {s['records_unsettled'] or 0} unsettled, "
        f"{s['records_not_sent']} not sent",
        f"SS-REPs             {s['ss_reps_sent']} sent, {s['ss_rep_retransmissions']} "
        f"retransmitted, {s['ss_reps_given_up']} given up ({s['records_given_up']} records)",
        f"SS-ACK latency      p50 {fmt(lat['p50'], ms, ' ms')}  p99 {fmt(lat['p99'], ms, ' ms')}"
        f"  max {fmt(lat['max'], ms, ' ms')}",
        f"full sync           {s['full_sync']['requests']} SS-REQ, "
        f"{s['full_sync']['sessions']} sessions",
        f"verification        {verified}",
        f"generator           {gen['cpu_share']:.0%} of a core, lag max "
        f"{fmt(gen['lag_max'], 1e3, ' ms')}, {gen['behind_schedule']:.2%} behind schedule",
    ]
    return "\n".join(lines)
