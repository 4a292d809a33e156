"""The named figures of a results document, one table per ``kind`` (run, sync, capacity,
bench): what ``--threshold`` expressions and ``lmaload compare`` speak of.

Every figure is in base units — seconds for times, a fraction for a share, per second for a
rate — and knows whether more is better, so a comparison can tell a regression from a gain.
A figure the document does not have (no failover measured, no refresh) is None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Unit = Literal["s", "ratio", "count", "/s"]


@dataclass(frozen=True)
class Figure:
    name: str
    unit: Unit
    better: Literal["higher", "lower"]
    what: str
    get: Callable[[dict[str, Any]], float | None]


def _path(*keys: str, scale: float = 1.0) -> Callable[[dict[str, Any]], float | None]:
    def get(document: dict[str, Any]) -> float | None:
        value: Any = document
        for key in keys:
            if not isinstance(value, dict) or value.get(key) is None:
                return None
            value = value[key]
        return float(value) * scale

    return get


def _failed_ratio(d: dict[str, Any]) -> float | None:
    reg = d["registration"]
    return (reg["sessions"] - reg["registered"]) / reg["sessions"] if reg["sessions"] else None


def _rate_ratio(d: dict[str, Any]) -> float | None:
    reg = d["registration"]
    return reg["achieved_rate"] / reg["target_rate"] if reg["target_rate"] else None


def _latency(name: str, *keys: str, what: str) -> list[Figure]:
    return [
        Figure(f"{name}.{p}", "s", "lower", f"{what}, {p}", _path(*keys, p, scale=1e-6))
        for p in ("p50", "p99", "max")
    ]


def _over_mags(name: str, what: str) -> list[Figure]:
    return [
        Figure(f"{name}.{p}", "s", "lower", f"{what} over MAGs, {p}",
               _path("takeover", "summary", name, p))
        for p in ("p50", "p99", "max")
    ]  # fmt: skip


RUN = [
    Figure("registration.rate", "/s", "higher", "registrations/s over the scheduled window",
           _path("registration", "achieved_rate")),
    Figure("registration.target_rate", "/s", "higher", "the target registrations/s",
           _path("registration", "target_rate")),
    Figure("registration.rate_ratio", "ratio", "higher", "achieved over target rate",
           _rate_ratio),
    Figure("registration.registered", "count", "higher", "mobile nodes registered",
           _path("registration", "registered")),
    Figure("registration.rejected", "count", "lower", "mobile nodes rejected",
           _path("registration", "rejected")),
    Figure("registration.given_up", "count", "lower", "mobile nodes given up",
           _path("registration", "given_up")),
    Figure("registration.unanswered", "count", "lower", "mobile nodes unanswered",
           _path("registration", "unanswered")),
    Figure("registration.failed_ratio", "ratio", "lower",
           "share of the mobile nodes not registered", _failed_ratio),
    Figure("registration.retransmission_share", "ratio", "lower", "PBUs that were retransmissions",
           _path("registration", "retransmission_share")),
    *_latency("registration.latency", "registration", "latency_us", what="registration latency"),
    *_latency("refresh.latency", "refresh_latency_us", what="refresh latency"),
    *_over_mags("detection", "failure to detection"),
    *_over_mags("takeover", "failure to takeover (restart mode: to re-registration)"),
    *_over_mags("outage", "restart mode: last answer before the failure to first after"),
    *(
        Figure(f"sessions.{fate}", "count", "higher" if fate in ("kept", "rebuilt") else "lower",
               f"sessions at risk {fate.replace('_', ' ')}", _path("takeover", "summary", fate))
        for fate in ("kept", "rebuilt", "lost", "pending", "not_attempted")
    ),
    Figure("generator.behind_schedule", "ratio", "lower", "sends later than the lag tolerance",
           _path("generator", "behind_schedule")),
    Figure("generator.lag_max", "s", "lower", "the generator's largest lag",
           _path("generator", "lag_max")),
]  # fmt: skip

SYNC = [
    Figure("sync.sessions_per_second", "/s", "higher", "sessions synchronised per second",
           _path("sync", "sessions_per_second")),
    Figure("sync.pbci_per_second", "/s", "higher", "PBCI options per second",
           _path("sync", "pbci_per_second")),
    Figure("sync.bytes_per_second", "/s", "higher", "octets per second",
           _path("sync", "bytes_per_second")),
    *_latency("sync.ack_latency", "sync", "ss_ack_latency_us", what="SS-ACK latency"),
    Figure("sync.records_given_up", "count", "lower", "records never acknowledged",
           _path("sync", "records_given_up")),
    Figure("sync.retransmissions", "count", "lower", "SS-REPs retransmitted",
           _path("sync", "ss_rep_retransmissions")),
    Figure("generator.behind_schedule", "ratio", "lower", "sends later than the lag tolerance",
           _path("generator", "behind_schedule")),
    Figure("generator.cpu_share", "ratio", "lower", "the generator's share of a core",
           _path("generator", "cpu_share")),
]  # fmt: skip

CAPACITY = [
    Figure("capacity.pdr", "/s", "higher", "partial-drop rate found",
           _path("pdr", "rate")),
    Figure("capacity.ndr", "/s", "higher", "no-drop rate found",
           _path("ndr", "rate")),
    Figure("generator.cpu_per_registration", "s", "lower",
           "the generator's CPU per registration (median of the trials)",
           _path("generator", "cpu_per_registration_us", scale=1e-6)),
]  # fmt: skip


def _bench(document: dict[str, Any]) -> list[Figure]:
    """Every rate, ratio and per-node budget of a ``lmaload bench --json`` document."""
    figures = []

    def walk(value: Any, keys: tuple[str, ...]) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                walk(child, (*keys, key))
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        last = keys[-1]
        if last.endswith("per_second") or "ratio" in last:
            better, unit = "higher", "/s" if last.endswith("per_second") else "ratio"
        elif last.endswith("bytes_per_node"):
            better, unit = "lower", "count"
        else:
            return
        name = ".".join(keys)
        figures.append(Figure(name, unit, better, name, _path(*keys)))  # type: ignore[arg-type]

    walk({k: v for k, v in document.items() if k != "kind"}, ())
    return figures


TABLES: dict[str, list[Figure]] = {"run": RUN, "sync": SYNC, "capacity": CAPACITY}
KINDS = (*TABLES, "bench")


def figures_of(document: dict[str, Any]) -> dict[str, Figure]:
    """The figures a document of its ``kind`` has, by name (ValueError: no known kind)."""
    kind = document.get("kind")
    if kind == "bench":
        return {f.name: f for f in _bench(document)}
    if kind not in TABLES:
        raise ValueError(f"not a results document of lmaload (kind {kind!r})")
    return {f.name: f for f in TABLES[kind]}
