"""The ``lmaload_sync_*`` Prometheus metrics of ``lmaload sync`` (the conventions of
``lmaload.metrics``: prefix ``lmaload_``, base units, ``_total`` counters, classic histograms with
log-spaced buckets, no per-session or per-MAG labels).

The driver takes a snapshot of the sender and verifier now and then (``observe``, from its own
thread); scrapes read the latest snapshot, so the HTTP thread never touches the engines. The
histograms are the exact HdrHistograms of the run folded into ``lmaload.metrics.BUCKETS``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from lmaload.measure.histogram import Histogram
from lmaload.metrics import hdr_buckets
from lmaload.sync.plan import KIND_NAMES
from lmaload.sync.sender import SyncSender
from lmaload.sync.verify import Verifier

PREFIX = "lmaload_sync_"

# (metric, help, SyncCounters attribute)
COUNTERS = (
    ("ss_reps_sent", "SS-REPs sent (each once; see ss_rep_retransmissions)", "ss_rep_sent"),
    ("ss_rep_retransmissions", "SS-REPs sent again for want of an SS-ACK", "ss_rep_retransmitted"),
    ("ss_acks_received", "SS-ACKs received, duplicates included", "ss_ack_received"),
    ("ss_acks_duplicate", "SS-ACKs for SS-REPs already acknowledged", "ss_ack_duplicate"),
    ("sent_bytes", "Mobility Header octets of SS-REPs sent", "bytes_sent"),
    ("acked_bytes", "Mobility Header octets of SS-REPs acknowledged", "bytes_acked"),
    ("records_given_up", "Session records whose SS-REP was never acknowledged", "records_given_up"),
    ("ss_reqs_received", "SS-REQs from the standby (answered with a full sync)", "ss_req_received"),
    ("full_sync_sessions", "Sessions sent in full syncs", "full_sync_sessions"),
    ("so_reqs_answered", "SwitchOver requests answered in the old LMA's role", "so_req_answered"),
    ("received_dropped", "Datagrams from the standby that were of no use", "dropped"),
)


@dataclass
class SyncSnapshot:
    phase: str = "hello"
    counters: dict[str, int] = field(default_factory=dict)
    records_sent: tuple[int, ...] = (0, 0, 0)
    records_acked: tuple[int, ...] = (0, 0, 0)
    outstanding: int = 0
    rto: float = 0.0
    standby_alive: bool = False
    latency: tuple[list[tuple[str, float]], float] = ([], 0.0)  # (le, count) pairs, sum (s)
    lag: tuple[list[tuple[str, float]], float] = ([], 0.0)
    verification: dict[str, int] = field(default_factory=dict)


class SyncMetrics(Collector):
    """The ``lmaload_sync_*`` metrics of one run, in a registry of their own."""

    def __init__(self) -> None:
        self.snapshot = SyncSnapshot()
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def observe(self, sender: SyncSender, verifier: Verifier | None, now: float) -> None:
        c = sender.counters
        alive = sender.standby_last_hello is not None and (
            now - sender.standby_last_hello < 3 * sender.config.hello_interval
        )
        self.snapshot = SyncSnapshot(
            phase=sender.phase if verifier is None else "verify",
            counters={name: getattr(c, attr) for name, _, attr in COUNTERS},
            records_sent=tuple(int(v) for v in c.records_sent),
            records_acked=tuple(int(v) for v in c.records_acked),
            outstanding=sender.outstanding,
            rto=sender.rto,
            standby_alive=alive,
            latency=hdr_buckets(sender.latency),
            lag=hdr_buckets(sender.lag.histogram),
            verification={
                k: v
                for k, v in (verifier.summary() if verifier else {}).items()
                if isinstance(v, int)
            },
        )

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        s = self.snapshot
        phase = GaugeMetricFamily(
            PREFIX + "phase", "1 for the run's current phase", labels=["phase"]
        )
        for name in ("hello", "stream", "done", "verify"):
            phase.add_metric([name], 1.0 if s.phase == name else 0.0)
        yield phase
        for name, help_text, _ in COUNTERS:
            yield CounterMetricFamily(PREFIX + name, help_text, value=s.counters.get(name, 0))
        for name, values, help_text in (
            ("records_sent", s.records_sent, "Session records (PBCI options) sent, by kind"),
            ("records_acked", s.records_acked, "Session records acknowledged, by kind"),
        ):
            family = CounterMetricFamily(PREFIX + name, help_text, labels=["kind"])
            for kind, value in zip(KIND_NAMES, values, strict=True):
                family.add_metric([kind], value)
            yield family
        yield GaugeMetricFamily(
            PREFIX + "outstanding_ss_reps", "SS-REPs waiting for an SS-ACK", value=s.outstanding
        )
        yield GaugeMetricFamily(
            PREFIX + "retransmission_timeout_seconds", "Current SS-REP timeout", value=s.rto
        )
        yield GaugeMetricFamily(
            PREFIX + "standby_alive",
            "1 while the standby's HA-HELLOs are current",
            value=s.standby_alive,
        )
        for name, (buckets, total), help_text in (
            ("ss_ack_latency_seconds", s.latency, "SS-REP intended send time to its SS-ACK"),
            ("generator_lag_seconds", s.lag, "How late records left after their intended time"),
        ):
            yield HistogramMetricFamily(
                PREFIX + name,
                help_text,
                buckets=buckets or hdr_buckets(Histogram())[0],
                sum_value=total,
            )
        verification = CounterMetricFamily(
            PREFIX + "verified_sessions",
            "Sampled sessions checked at the standby, by outcome",
            labels=["outcome"],
        )
        for outcome in ("verified", "missing", "wrong_prefix", "unanswered"):
            verification.add_metric([outcome], s.verification.get(outcome, 0))
        yield verification

    def serve(self, port: int, host: str) -> None:
        """Expose /metrics on ``host``:``port`` from a daemon thread (OSError if taken)."""
        start_http_server(port, host, registry=self.registry)

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()
