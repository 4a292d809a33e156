"""Prometheus metrics of the generator, ``lmaload run`` (prefix ``lmaload_``, base units,
``_total`` counters, classic histograms with log-spaced buckets, no per-node or per-MAG labels),
served while it runs and pushed to a Pushgateway at the end.

The run's thread takes a snapshot of the MAG engine now and then (``observe``); scrapes and the
push read the latest one, so the HTTP thread never touches the engine. Latency histograms are
copies of the engine's HdrHistogram counts, turned into cumulative bucket counts at scrape time
(``lmaload.metrics.hdr_buckets``); detection and takeover times are one value per MAG, bucketed
exactly at the same bounds.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

import numpy as np
from prometheus_client import CollectorRegistry, push_to_gateway, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from lmaload.measure.histogram import Histogram
from lmaload.metrics import (
    BUCKETS,
    SOCKET_DROPS,
    copy_histogram,
    cumulative_buckets,
    hdr_buckets,
)
from lmaload.population import SessionState
from lmaload.protocol.mag import LATENCY_KIND, MagCounters, MagEngine
from lmaload.transport.mag_loop import MagLoop

PREFIX = "lmaload_"
PHASES = ("start", "connect", "register", "sync", "hold", "failover", "done")
STATES = {
    getattr(SessionState, name): name.lower() for name in vars(SessionState) if name.isupper()
}
FATES = ("kept", "rebuilt", "lost", "pending", "not_attempted")
PUSH_TIMEOUT = 10.0


@dataclass(frozen=True)
class GeneratorSnapshot:
    """The values one scrape reports (arrays and histograms are copies the engine no longer
    touches)."""

    phase: str = "start"
    sessions: dict[str, int] = field(default_factory=dict)
    registered: int = 0
    counters: MagCounters = field(default_factory=MagCounters)
    latency: dict[str, Histogram] = field(  # µs, by kind
        default_factory=lambda: {kind: Histogram() for kind in LATENCY_KIND.values()}
    )
    heartbeat_rtt: Histogram = field(default_factory=Histogram)  # µs
    heartbeats_missed: int = 0
    heartbeat_pairs_down: int = 0
    lag_last: float = 0.0
    lag_max: float = 0.0
    behind_schedule: float = 0.0
    detection: np.ndarray = field(default_factory=lambda: np.zeros(0))  # seconds, per MAG
    takeover: np.ndarray = field(default_factory=lambda: np.zeros(0))
    outage: np.ndarray = field(default_factory=lambda: np.zeros(0))  # restart mode, per MAG
    fates: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FATES, 0))
    datagrams_sent: int = 0
    datagrams_received: int = 0
    drops: dict[str, int] = field(default_factory=dict)


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]  # a copy


class GeneratorMetrics(Collector):
    """The ``lmaload_*`` metrics of one run, in a registry of their own."""

    def __init__(self, sessions: int, mags: int, rate: float) -> None:
        self.sessions_target = sessions
        self.mags = mags
        self.target_rate = rate
        self.snapshot = GeneratorSnapshot()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def observe(self, engine: MagEngine, loop: MagLoop, phase: str) -> None:
        """Take a new snapshot of ``engine`` and ``loop`` (from the thread that drives them)."""
        mns = engine.pop.mns
        states = np.bincount(mns["state"], minlength=len(STATES))
        meter = engine.takeover
        heartbeats = engine.heartbeats
        self.snapshot = GeneratorSnapshot(
            phase=phase,
            sessions={name: int(states[value]) for value, name in STATES.items()},
            registered=int(np.count_nonzero(mns["t_acked"])),
            counters=copy.deepcopy(engine.counters),
            latency={kind: copy_histogram(h) for kind, h in engine.latency.items()},
            heartbeat_rtt=copy_histogram(heartbeats.rtt),
            heartbeats_missed=heartbeats.missed,
            heartbeat_pairs_down=int((~heartbeats.up).sum()),
            lag_last=engine.lag.last,
            lag_max=engine.lag.max,
            behind_schedule=engine.behind_schedule,
            detection=_finite(meter.detection),
            takeover=_finite(meter.takeover),
            outage=_finite(meter.outage),
            fates={name: int(getattr(meter, name).sum()) for name in FATES},
            datagrams_sent=loop.datagrams_sent,
            datagrams_received=loop.datagrams_received,
            drops={**dict.fromkeys(SOCKET_DROPS, 0), **loop.transport.drops},
        )

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        c = s.counters
        phase = GaugeMetricFamily(
            PREFIX + "phase", "1 for the run's current phase", labels=["phase"]
        )
        for name in PHASES:
            phase.add_metric([name], 1.0 if s.phase == name else 0.0)
        yield phase
        yield GaugeMetricFamily(
            PREFIX + "sessions_target", "Sessions the run registers", value=self.sessions_target
        )
        yield GaugeMetricFamily(PREFIX + "mags", "Emulated MAGs", value=self.mags)
        yield GaugeMetricFamily(
            PREFIX + "target_registrations_per_second",
            "Target rate of initial registrations (open loop)",
            value=self.target_rate,
        )
        sessions = GaugeMetricFamily(
            PREFIX + "sessions", "Sessions by MAG-side state", labels=["state"]
        )
        for name in STATES.values():
            sessions.add_metric([name], s.sessions.get(name, 0))
        yield sessions
        yield CounterMetricFamily(
            PREFIX + "registrations",
            "Sessions whose initial registration an LMA accepted",
            value=s.registered,
        )
        yield CounterMetricFamily(
            PREFIX + "pbus_sent", "Proxy Binding Updates sent, retransmissions included", c.pbu_sent
        )
        yield CounterMetricFamily(
            PREFIX + "pbus_retransmitted",
            "Proxy Binding Updates sent again for want of a PBA",
            c.pbu_retransmitted,
        )
        yield _labelled(
            CounterMetricFamily,
            "pbas_received",
            "PBAs matched to an outstanding PBU, by status code",
            "status",
            {str(k): v for k, v in c.pba_status.items()},
        )
        yield CounterMetricFamily(
            PREFIX + "pbas_ignored",
            "PBAs ignored: malformed, unknown mobile node or LMA, stale or duplicate",
            c.pba_ignored,
        )
        yield _labelled(
            CounterMetricFamily,
            "peer_quirks",
            "Replies an RFC 5213 LMA would not send, by kind (malformed ones dropped, by reason)",
            "kind",
            dict(c.quirks),
        )
        yield _labelled(
            CounterMetricFamily,
            "sessions_failed",
            "Sessions given up, by the PBA status that ended them",
            "status",
            {str(k): v for k, v in c.failed.items()},
        )
        latency = HistogramMetricFamily(
            PREFIX + "registration_latency_seconds",
            "From a PBU's intended send time to the PBA accepting it, by kind",
            labels=["kind"],
        )
        for kind in LATENCY_KIND.values():
            latency.add_metric([kind], *hdr_buckets(s.latency[kind]))
        yield latency
        yield GaugeMetricFamily(
            PREFIX + "generator_lag_seconds",
            "How late the latest scheduled registrations left",
            value=s.lag_last,
        )
        yield GaugeMetricFamily(
            PREFIX + "generator_lag_max_seconds",
            "How late the latest scheduled registration ever left",
            value=s.lag_max,
        )
        yield GaugeMetricFamily(
            PREFIX + "generator_behind_schedule_ratio",
            "Share of scheduled registrations sent later than the lag tolerance",
            value=s.behind_schedule,
        )
        rtt = HistogramMetricFamily(
            PREFIX + "heartbeat_rtt_seconds", "Heartbeat Request to matching Response"
        )
        rtt.add_metric([], *hdr_buckets(s.heartbeat_rtt))
        yield rtt
        yield CounterMetricFamily(
            PREFIX + "heartbeat_requests_sent", "Heartbeat Requests sent", c.heartbeat_requests_sent
        )
        yield CounterMetricFamily(
            PREFIX + "heartbeats_missed",
            "Heartbeat Requests still unanswered when the next one fell due",
            s.heartbeats_missed,
        )
        yield GaugeMetricFamily(
            PREFIX + "heartbeat_pairs_down",
            "(MAG, LMA) pairs whose heartbeats declare the LMA unreachable",
            value=s.heartbeat_pairs_down,
        )
        for name, help_text, values in (
            ("detection", "From the failure to the MAG's first LMA-down, over MAGs", s.detection),
            (
                "takeover",
                "From the failure to the MAG's last session taken over, over MAGs",
                s.takeover,
            ),
            (
                "outage",
                "Restart mode: from the LMA's last answer to a MAG before the failure to its "
                "first after it, over MAGs",
                s.outage,
            ),
        ):
            family = HistogramMetricFamily(PREFIX + f"failover_{name}_seconds", help_text)
            family.add_metric([], *_value_buckets(values))
            yield family
        yield _labelled(
            GaugeMetricFamily,
            "takeover_sessions",
            "Sessions at risk in the failure, by fate: kept, rebuilt (restart mode), lost, "
            "pending, not attempted",
            "fate",
            s.fates,
        )
        yield CounterMetricFamily(
            PREFIX + "datagrams_sent", "Datagrams the MAGs sent", s.datagrams_sent
        )
        yield CounterMetricFamily(
            PREFIX + "datagrams_received", "Datagrams the MAGs received", s.datagrams_received
        )
        yield _labelled(
            CounterMetricFamily, "drops", "Datagrams dropped, by reason", "reason", s.drops
        )

    def serve(self, port: int, host: str) -> WSGIServer:
        """Expose /metrics on ``host``:``port`` from a daemon thread (OSError if taken); the
        caller shuts the server down."""
        server, _ = start_http_server(port, host, registry=self.registry)
        return server

    def push(self, gateway: str, shard: int | None = None) -> None:
        """Push the latest snapshot to the Pushgateway at ``gateway`` (job ``lmaload``, grouped by
        ``shard`` for a sharded run so the shards do not overwrite each other); OSError when it
        cannot be reached or refuses."""
        key = None if shard is None else {"shard": str(shard)}
        push_to_gateway(
            gateway, job="lmaload", grouping_key=key, registry=self.registry, timeout=PUSH_TIMEOUT
        )


def _labelled(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    help_text: str,
    label: str,
    values: dict[str, int],
) -> Metric:
    family = kind(PREFIX + name, help_text, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _value_buckets(values: np.ndarray) -> tuple[list[tuple[str, float]], float]:
    """Cumulative counts at ``BUCKETS`` of plain values in seconds, and their sum."""
    ordered = np.sort(values)
    return (
        cumulative_buckets(np.searchsorted(ordered, BUCKETS, side="right").tolist(), len(ordered)),
        float(ordered.sum()),
    )
