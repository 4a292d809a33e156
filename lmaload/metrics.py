"""Prometheus metrics (prefix ``lmaload_``, base units, ``_total`` counters, no per-node or per-MAG
labels) and their HTTP exposition.

``LmaMetrics`` exposes one reference LMA. The event loop refreshes a snapshot of the engine's
counters now and then (``observe``, from the loop's thread) and feeds it the engine's events
(``on_event``); scrapes read the latest snapshot, so the HTTP thread never touches the engine.

Latency histograms are copies of the engines' HdrHistogram counts (``lmaload.measure``), turned
into cumulative counts at ``BUCKETS`` when scraped (``hdr_buckets``): a value within the
histogram's precision (3 significant digits) of a bound counts as at most that bound, ``_sum``
adds each count at the middle of its HdrHistogram range, and a value above the histogram's range
counts in ``+Inf`` only (and at the range's top in ``_sum``). ``lmaload.generator_metrics`` uses
them too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from lmaload.measure.histogram import Histogram
from lmaload.protocol.binding_cache import BceState
from lmaload.protocol.events import Event, Role
from lmaload.protocol.lma import LmaEngine
from lmaload.protocol.lma.shed import REASONS
from lmaload.transport.engine_loop import EngineLoop

PREFIX = "lmaload_lma_"

# Drop reasons reported from the start (0 until they happen), so dashboards find their series.
SOCKET_DROPS = ("kernel", "send_buffer_full")
# Reasons PBUs are shed under overload (lmaload.protocol.lma.shed), reported from the start.
SHED_REASONS = (*REASONS.values(), "takeover")
# Bucket bounds of every seconds histogram: 1-2-5 steps from 100 µs to 50 s.
BUCKETS = tuple(m * 10.0**e for e in range(-4, 2) for m in (1, 2, 5))

# Engine events that are switchovers, and the ``kind`` label each is counted under.
SWITCHOVER_KINDS = {
    "switchover_done": "mag_takeover",  # per-MAG hard switch completed here
    "switchover_refused": "mag_refused",
    "partial_switchover": "mag_yield",  # this LMA handed a MAG over to a peer
    "ha_switch_fanout": "ha_switch",  # HELLO-detected failure: HA Switch to the MAGs
    "lmaa_acquired": "lmaa_takeover",  # virtual switch
}

# (metric, help, Counters attribute)
SYNC_COUNTERS = (
    ("ss_reps_sent", "State Synchronization replies sent, retransmissions included", "ss_rep_sent"),
    (
        "ss_rep_bytes_sent",
        "Octets of SS-REPs sent (Mobility Header), retransmissions included",
        "ss_rep_octets_sent",
    ),
    ("ss_rep_retransmissions", "SS-REPs sent again for want of an SS-ACK", "ss_rep_retransmitted"),
    ("ss_acks_received", "SS-ACKs received for SS-REPs this LMA sent", "ss_ack_received"),
    ("ss_reps_received", "State Synchronization replies received", "ss_rep_received"),
    ("sessions_synced_out", "Sessions carried in SS-REPs sent", "sessions_synced_out"),
    ("sessions_synced_in", "Sessions applied from SS-REPs received", "sessions_synced_in"),
    ("sync_gave_up", "SS-REPs abandoned after the last retransmission", "sync_gave_up"),
    ("pba_sync_timeouts", "PBAs sent unsynced (before-ack timeout)", "pba_sync_timeout"),
    (
        "heartbeat_requests_answered",
        "Heartbeat requests answered",
        "heartbeat_requests_answered",
    ),
)


@dataclass
class LmaSnapshot:
    """The values one scrape reports."""

    role: str = Role.STANDBY.value
    owns_lmaa: bool = False
    peers_alive: int = 0
    bce: dict[str, int] = field(default_factory=dict)
    pbu_processed: int = 0
    fast_lane_pbus: int = 0
    pba_status: dict[int, int] = field(default_factory=dict)
    pbus_shed: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    sync_backlog: int = 0
    sync: dict[str, int] = field(default_factory=dict)
    ss_ack_latency: Histogram = field(default_factory=Histogram)  # µs
    switchovers: dict[str, int] = field(default_factory=dict)
    datagrams_received: int = 0
    datagrams_sent: int = 0


class LmaMetrics(Collector):
    """The ``lmaload_lma_*`` metrics of one LMA, in a registry of their own."""

    def __init__(self) -> None:
        self.snapshot = LmaSnapshot()
        self._switchovers: Counter[str] = Counter()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def on_event(self, event: Event) -> None:
        kind = SWITCHOVER_KINDS.get(event.kind)
        if kind is not None:
            self._switchovers[kind] += 1

    def observe(self, loop: EngineLoop[LmaEngine]) -> None:
        """Take a new snapshot of ``loop``'s engine and transport (from the loop's thread)."""
        engine = loop.engine
        counters = engine.counters
        drops = Counter(dict.fromkeys(SOCKET_DROPS, 0))
        drops.update(counters.drops)
        drops.update(loop.transport.drops)
        drops.update(loop.drops)
        bce = engine.cache.counts()
        self.snapshot = LmaSnapshot(
            role=engine.role.value,
            owns_lmaa=engine.owns_lmaa,
            peers_alive=engine.peers_alive,
            bce={s.name.lower(): n for s, n in bce.items() if s is not BceState.FREE},
            pbu_processed=counters.pbu_processed,
            fast_lane_pbus=engine.fast_lane_pbus,
            pba_status=dict(counters.pba_status),
            pbus_shed={reason: counters.pbu_shed[reason] for reason in SHED_REASONS},
            drops=dict(drops),
            sync_backlog=engine.sync_backlog,
            sync={name: getattr(counters, attr) for name, _, attr in SYNC_COUNTERS},
            ss_ack_latency=copy_histogram(engine.sync_ack_latency),
            switchovers=dict(self._switchovers),
            datagrams_received=loop.datagrams_received,
            datagrams_sent=loop.datagrams_sent,
        )

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        role = GaugeMetricFamily(PREFIX + "role", "1 for the LMA's current role", labels=["role"])
        for r in Role:
            role.add_metric([r.value], 1.0 if s.role == r.value else 0.0)
        yield role
        yield GaugeMetricFamily(
            PREFIX + "owns_lmaa", "1 while this LMA answers for the LMAA", value=s.owns_lmaa
        )
        yield GaugeMetricFamily(
            PREFIX + "peers_alive", "Peer LMAs alive by HA-HELLO", value=s.peers_alive
        )
        bce = GaugeMetricFamily(
            PREFIX + "binding_cache_entries", "Binding cache entries by state", labels=["state"]
        )
        for state, count in sorted(s.bce.items()):
            bce.add_metric([state], count)
        yield bce
        yield CounterMetricFamily(
            PREFIX + "pbus_processed", "Proxy Binding Updates processed", value=s.pbu_processed
        )
        yield CounterMetricFamily(
            PREFIX + "fast_lane_pbus",
            "Proxy Binding Updates processed by the compiled fast lane (of pbus_processed)",
            value=s.fast_lane_pbus,
        )
        pbas = CounterMetricFamily(
            PREFIX + "pbas", "Proxy Binding Acknowledgements by status code", labels=["status"]
        )
        for status, count in sorted(s.pba_status.items()):
            pbas.add_metric([str(status)], count)
        yield pbas
        shed = CounterMetricFamily(
            PREFIX + "pbus_shed",
            "PBUs dropped unanswered under overload, by reason (stale: queued past "
            "pbu_max_delay; superseded: a later PBU of the batch for the same MN interface; "
            "backlog: too many PBAs or SS-REPs waiting for SS-ACKs; takeover: a full hold)",
            labels=["reason"],
        )
        for reason, count in s.pbus_shed.items():
            shed.add_metric([reason], count)
        yield shed
        drops = CounterMetricFamily(
            PREFIX + "drops", "Datagrams dropped, by reason", labels=["reason"]
        )
        for reason, count in sorted(s.drops.items()):
            drops.add_metric([reason], count)
        yield drops
        yield GaugeMetricFamily(
            PREFIX + "sync_backlog",
            "SS-REPs queued for pacing or waiting for an SS-ACK",
            value=s.sync_backlog,
        )
        for name, help_text, _ in SYNC_COUNTERS:
            yield CounterMetricFamily(PREFIX + name, help_text, value=s.sync.get(name, 0))
        ack_latency = HistogramMetricFamily(
            PREFIX + "ss_ack_latency_seconds",
            "From packing an SS-REP to each peer's SS-ACK, pacing and retransmissions included",
        )
        ack_latency.add_metric([], *hdr_buckets(s.ss_ack_latency))
        yield ack_latency
        switchovers = CounterMetricFamily(
            PREFIX + "switchovers", "Switchovers, by kind", labels=["kind"]
        )
        for kind in sorted(set(SWITCHOVER_KINDS.values())):
            switchovers.add_metric([kind], s.switchovers.get(kind, 0))
        yield switchovers
        yield CounterMetricFamily(
            PREFIX + "datagrams_received", "Datagrams received", value=s.datagrams_received
        )
        yield CounterMetricFamily(
            PREFIX + "datagrams_sent", "Datagrams sent", value=s.datagrams_sent
        )

    def serve(self, port: int, host: str) -> None:
        """Expose /metrics on ``host``:``port`` from a daemon thread (OSError if taken)."""
        start_http_server(port, host, registry=self.registry)

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()


def copy_histogram(histogram: Histogram) -> Histogram:
    """A copy the engine will not touch, for a snapshot."""
    out = Histogram(histogram.layout)
    out.merge(histogram)
    return out


def cumulative_buckets(counts: Iterable[float], total: int) -> list[tuple[str, float]]:
    """(le, count) pairs for ``HistogramMetricFamily``: ``counts`` at ``BUCKETS``, then +Inf."""
    return [(str(b), float(n)) for b, n in zip(BUCKETS, counts, strict=True)] + [
        ("+Inf", float(total))
    ]


def hdr_buckets(histogram: Histogram) -> tuple[list[tuple[str, float]], float]:
    """Cumulative counts at ``BUCKETS`` of a µs histogram, and its sum in seconds."""
    layout, counts = histogram.layout, histogram.counts
    bounds = np.rint(np.array(BUCKETS) * 1e6).astype(np.int64)
    cumulative = np.cumsum(counts)
    at_bounds = cumulative[np.minimum(layout.index_of(bounds), len(counts) - 1)]
    indexes = np.flatnonzero(counts)
    middle = (layout.value_at(indexes) + layout.highest_equivalent(indexes)) / 2
    seconds = float((counts[indexes] * middle).sum()) / 1e6
    overflow_seconds = histogram.overflow * layout.highest / 1e6
    return (
        cumulative_buckets(at_bounds.tolist(), histogram.total + histogram.overflow),
        seconds + overflow_seconds,
    )
