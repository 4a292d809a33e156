"""``lmaload merge``: the results documents of the shards of one run (``lmaload run --shard i/N``)
combined into the document of the whole run.

Exact: counts add, histograms merge bucket by bucket (``Histogram.decode``/``merge``), per-MAG
takeover rows are concatenated and the percentiles over MAGs recomputed from them; the
registration span runs from the earliest start to the latest acknowledgement. Shards of
different runs (any config difference but the shard and the output paths) are refused.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmaload.measure.histogram import Histogram
from lmaload.measure.results import SCHEMA_VERSION, latency_summary, percentiles_over

PER_SHARD_CONFIG = frozenset(
    {"shard", "results", "pcap", "metrics_port", "metrics_host", "lma_metrics_port"}
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
    return {
        "schema_version": SCHEMA_VERSION,
        "config": config,
        "registration": _registration([d["registration"] for d in documents]),
        "refresh_latency_us": latency_summary(
            _histogram([d["refresh_latency_us"]["histogram"] for d in documents])
        ),
        "takeover": _takeover([d["takeover"] for d in documents]),
        "generator": _generator([d["generator"] for d in documents]),
    }


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


def _registration(parts: list[dict[str, Any]]) -> dict[str, Any]:
    start = min(p["start"] for p in parts)
    end = max(p["start"] + p["duration"] for p in parts)
    registered = sum(p["registered"] for p in parts)
    span = end - start
    complete = [p["sync_complete"] for p in parts]
    waits = [p["sync_wait"] for p in parts]
    return {
        "start": start,
        "target_rate": sum(p["target_rate"] for p in parts),
        "achieved_rate": registered / span if span > 0 else 0.0,
        "sessions": sum(p["sessions"] for p in parts),
        "registered": registered,
        "failed": sum(p["failed"] for p in parts),
        "duration": span,
        "pbus_sent": sum(p["pbus_sent"] for p in parts),
        "pbus_retransmitted": sum(p["pbus_retransmitted"] for p in parts),
        "pba_status": _counts([p["pba_status"] for p in parts]),
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
            "kept": sum(r["kept"] for r in rows),
            "lost": sum(r["lost"] for r in rows),
            "pending": sum(r["pending"] for r in rows),
            "stayed": sum(r["stayed"] for r in rows),
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
        "lag_max": max(p["lag_max"] for p in parts),
        "lag_p99_us": lag.percentile(99.0) if lag.total else None,
        "lag_histogram": lag.encode() if lag.total else None,
        "lag_tolerance": parts[0]["lag_tolerance"],
        "scheduled_sends": sent,
        "late_sends": late,
        "behind_schedule": late / sent if sent else 0.0,
        "drops": dict(drops),
    }
