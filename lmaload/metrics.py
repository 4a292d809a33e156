"""Prometheus metrics (prefix ``lmaload_``, base units, ``_total`` counters, no per-node or per-MAG
labels) and their HTTP exposition.

``LmaMetrics`` exposes one reference LMA. The event loop refreshes a snapshot of the engine's
counters now and then (``observe``, from the loop's thread) and feeds it the engine's events
(``on_event``); scrapes read the latest snapshot, so the HTTP thread never touches the engine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from lmaload.protocol.binding_cache import BceState
from lmaload.protocol.events import Event, Role
from lmaload.transport.engine_loop import EngineLoop

PREFIX = "lmaload_lma_"

# Drop reasons reported from the start (0 until they happen), so dashboards find their series.
SOCKET_DROPS = ("kernel", "send_buffer_full")

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
    pba_status: dict[int, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    sync_backlog: int = 0
    sync: dict[str, int] = field(default_factory=dict)
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

    def observe(self, loop: EngineLoop) -> None:
        """Take a new snapshot of ``loop``'s engine and transport (from the loop's thread)."""
        engine = loop.engine
        counters = engine.counters
        drops = Counter(dict.fromkeys(SOCKET_DROPS, 0))
        drops.update(counters.drops)
        drops.update(loop.transport.drops)
        drops.update(loop.drops)
        cache = engine.cache
        self.snapshot = LmaSnapshot(
            role=engine.role.value,
            owns_lmaa=engine.owns_lmaa,
            peers_alive=engine.peers_alive,
            bce={s.name.lower(): cache.count(s) for s in BceState if s is not BceState.FREE},
            pbu_processed=counters.pbu_processed,
            pba_status=dict(counters.pba_status),
            drops=dict(drops),
            sync_backlog=engine.sync_backlog,
            sync={name: getattr(counters, attr) for name, _, attr in SYNC_COUNTERS},
            switchovers=dict(self._switchovers),
            datagrams_received=loop.datagrams_received,
            datagrams_sent=loop.datagrams_sent,
        )

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
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
        pbas = CounterMetricFamily(
            PREFIX + "pbas", "Proxy Binding Acknowledgements by status code", labels=["status"]
        )
        for status, count in sorted(s.pba_status.items()):
            pbas.add_metric([str(status)], count)
        yield pbas
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
