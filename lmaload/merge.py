"""``lmaload merge``: the results documents of the shards of one run (``lmaload run --shard i/N``)
combined into the document of the whole run.

Exact: counts add, histograms merge bucket by bucket (``Histogram.decode``/``merge``), per-MAG
takeover rows are concatenated and the percentiles over MAGs recomputed from them; the
registration window runs from the earliest scheduled send to the latest end of a shard's
window, and the per-second goodput series add up second by second. Shards of
different runs (any config difference but the shard and the output paths) are refused.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmaload.measure.goodput import achieved_rate
from lmaload.measure.histogram import Histogram
from lmaload.measure.summary import latency_summary, percentiles_over
from lmaload.results import SCHEMA_VERSION, retransmission_health

PER_SHARD_CONFIG = frozenset(
    {"shard", "results", "pcap", "hdr_log", "metrics_port", "metrics_host", "lma_metrics_port"}
)


class MergeError(ValueError):
    """Documents that are not the shards of one run: one line for the user."""


def merge(documents: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The whole run's results from every shard's (in any order)."""
    if not documents:
        raise MergeError("nothing to merge")
    _check(documents)
    config = {k: v for k, v in documents[0]["config"].items() if k not in PER_SHARD_CONFIG}
    config["shards"] = len(documents)
    finals = [d.get("final") for d in documents]
    merged = {
        "schema_version": SCHEMA_VERSION,
        "kind": "run",
        "config": config,
        "registration": _registration([d["registration"] for d in documents]),
        "refresh_latency_us": latency_summary(
            _histogram([d["refresh_latency_us"]["histogram"] for d in documents])
        ),
        "takeover": _takeover([d["takeover"] for d in documents]),
        "generator": _generator([d["generator"] for d in documents]),
    }
    if all(f is not None for f in finals):
        merged["final"] = {k: sum(f[k] for f in finals) for k in finals[0]}  # type: ignore[index]
    return merged


def _check(documents: Sequence[dict[str, Any]]) -> None:
    versions = {d.get("schema_version") for d in documents}
    if versions != {SCHEMA_VERSION}:
        raise MergeError(f"schema versions {sorted(map(str, versions))}, not {SCHEMA_VERSION}")
    shards = sorted(tuple(d["config"].get("shard", (0, 1))) for d in documents)
    count = len(documents)
    if shards != [(i, count) for i in range(count)]:
        raise MergeError(f"shards {shards} are not 0..{count - 1} of {count}, each once")

    def common(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k not in PER_SHARD_CONFIG}

    first = common(documents[0]["config"])
    for document in documents[1:]:
        other = common(document["config"])
        if other != first:
            keys = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
            raise MergeError(f"the shards differ in {', '.join(keys)}: not one run")


def _histogram(encoded: list[str | None]) -> Histogram:
    merged = Histogram()
    for text in encoded:
        if text is not None:
            merged.merge(Histogram.decode(text))
    return merged


def _counts(parts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(sorted(total.items(), key=lambda kv: int(kv[0])))


def _per_second(parts: list[dict[str, Any]], start: float) -> list[int]:
    total: list[int] = []
    for part in parts:
        shift = round(part["start"] - start)
        for second, count in enumerate(part["per_second"], shift):
            total.extend([0] * (second + 1 - len(total)))
            total[second] += count
    return total


def _registration(parts: list[dict[str, Any]]) -> dict[str, Any]:
    start = min(p["start"] for p in parts)
    window = max(p["start"] + p["window"] for p in parts) - start
    completed = sum(p["completed"] for p in parts)
    complete = [p["sync_complete"] for p in parts]
    waits = [p["sync_wait"] for p in parts]

    def total(name: str) -> int:
        return sum(p[name] for p in parts)

    return {
        "start": start,
        "target_rate": sum(p["target_rate"] for p in parts),
        "achieved_rate": achieved_rate(completed, window),
        "window": window,
        "completed": completed,
        "per_second": _per_second(parts, start),
        "cut_by_failure": any(p["cut_by_failure"] for p in parts),
        **{
            name: total(name)
            for name in ("sessions", "registered", "rejected", "given_up", "unanswered")
        },
        "rejected_by_status": _counts([p["rejected_by_status"] for p in parts]),
        "not_sent": total("not_sent"),
        "pbus_sent": total("pbus_sent"),
        "pbus_retransmitted": total("pbus_retransmitted"),
        **retransmission_health(total("pbus_sent"), total("pbus_retransmitted"), completed),
        "pba_status": _counts([p["pba_status"] for p in parts]),
        "peer_quirks": dict(
            sorted(sum(map(Counter, (p["peer_quirks"] for p in parts)), Counter()).items())
        ),
        "latency_us": latency_summary(_histogram([p["latency_us"]["histogram"] for p in parts])),
        "sync_wait": None if None in waits else max(waits),
        "sync_complete": None if None in complete else all(complete),
    }


def _takeover(parts: list[dict[str, Any]]) -> dict[str, Any]:
    failures = {p["failure_at"] for p in parts}
    if len(failures) != 1:
        raise MergeError("the shards measured different failure instants (--fail-at)")
    rows = sorted((copy.deepcopy(r) for p in parts for r in p["mags"]), key=lambda r: r["mag"])

    def column(name: str) -> np.ndarray:
        return np.array([np.nan if r[name] is None else r[name] for r in rows], dtype=float)

    return {
        "failure_at": failures.pop(),
        "pbus_sent": sum(p["pbus_sent"] for p in parts),
        "pbus_retransmitted": sum(p["pbus_retransmitted"] for p in parts),
        "pba_status": _counts([p["pba_status"] for p in parts]),
        "failed": _counts([p["failed"] for p in parts]),
        "failover_latency_us": latency_summary(
            _histogram([p["failover_latency_us"]["histogram"] for p in parts])
        ),
        "summary": {
            "detection": percentiles_over(column("detection")),
            "takeover": percentiles_over(column("takeover")),
            "outage": percentiles_over(column("outage")),
            "kept": sum(r["kept"] for r in rows),
            "rebuilt": sum(r["rebuilt"] for r in rows),
            "lost": sum(r["lost"] for r in rows),
            **{
                fate: sum(r[fate] for r in rows)
                for fate in ("pending", "not_attempted", "at_risk", "stayed")
            },
            "registered_after_failure": sum(
                p["summary"]["registered_after_failure"] for p in parts
            ),
        },
        "mags": rows,
    }


def _generator(parts: list[dict[str, Any]]) -> dict[str, Any]:
    lag = _histogram([p["lag_histogram"] for p in parts])
    sent = sum(p["scheduled_sends"] for p in parts)
    late = sum(p["late_sends"] for p in parts)
    drops: Counter[str] = Counter()
    for part in parts:
        drops.update(part["drops"])
    return {
        "datagrams_sent": sum(p["datagrams_sent"] for p in parts),
        "datagrams_received": sum(p["datagrams_received"] for p in parts),
        "receive_delay_us": latency_summary(
            _histogram([p["receive_delay_us"]["histogram"] for p in parts])
        ),
        "lag_max": max(p["lag_max"] for p in parts),
        "lag_p99_us": lag.percentile(99.0) if lag.total else None,
        "lag_histogram": lag.encode() if lag.total else None,
        "lag_tolerance": parts[0]["lag_tolerance"],
        "scheduled_sends": sent,
        "late_sends": late,
        "behind_schedule": late / sent if sent else 0.0,
        "drops": dict(drops),
    }
