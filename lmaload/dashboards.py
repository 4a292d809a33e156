"""The Grafana dashboards, as code: Load, Takeover, State sync and LMA, built with Grafana's
grafana-foundation-sdk (the ``dashboards`` extra pins it) over a Prometheus data-source variable.

``python -m lmaload.dashboards [DIR]`` writes them as JSON into DIR (default
``grafana/dashboards``); the checked-in files must equal what this module renders
(tests/test_dashboards.py). Every panel has a unit; rates use ``$__rate_interval``. Generator
queries sum over instances (shards add up), LMA queries keep one series per instance, and none
names a job, so they work whatever the scrape config calls the targets. The State sync dashboard
reads the reference LMAs' own sync metrics (``lmaload_lma_*``): the generator has no sync side
yet.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    Panel,
    Threshold,
    ThresholdsMode,
)

DEFAULT_DIR = Path("grafana/dashboards")
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "lmaload"
WIDTH, HEIGHT = 12, 8  # two panels a row
STAT_WIDTH, STAT_HEIGHT = 6, 4
QUANTILES = (0.5, 0.9, 0.99)

P = TypeVar("P", timeseries.Panel, stat.Panel)


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


def rate(metric: str, by: str = "", matchers: str = "") -> str:
    """``sum by (by) (rate(metric{matchers}[$__rate_interval]))``."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{matchers}[$__rate_interval]))"


def quantiles(histogram: str, matchers: str = "", per_second: bool = True) -> list[Query]:
    """``histogram_quantile`` of a classic histogram: of its recent observations
    (``per_second``), or of all of them (a one-off distribution, such as one failover's)."""
    buckets = f"{histogram}_bucket{matchers}"
    source = f"rate({buckets}[$__rate_interval])" if per_second else buckets
    return [
        Query(f"histogram_quantile({q}, sum by (le) ({source}))", f"p{q * 100:g}")
        for q in QUANTILES
    ]


def _targets(panel: P, queries: list[Query]) -> P:
    for i, query in enumerate(queries):
        panel.with_target(
            prometheus.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + i))
            .datasource(DATASOURCE)
        )
    return panel


def graph(
    title: str, unit: str, description: str, *queries: Query, stack: bool = False
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(HEIGHT)
        .span(WIDTH)
        .fill_opacity(20 if stack else 0)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    if stack:
        panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    return _targets(panel, list(queries))


def big_number(
    title: str, unit: str, description: str, query: Query, red_from: float | None = None
) -> stat.Panel:
    """The latest value, red from ``red_from`` on."""
    steps = [Threshold(None, "green")]
    if red_from is not None:
        steps.append(Threshold(red_from, "red"))
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(STAT_HEIGHT)
        .span(STAT_WIDTH)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .thresholds(builders.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps))
    )
    return _targets(panel, [query])


def dashboard(
    uid: str, title: str, description: str, panels: list[Builder[Panel]]
) -> builders.Dashboard:
    board = (
        builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("10s")
        .time("now-30m", "now")
        .timezone("browser")
        .with_variable(
            builders.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .link(
            builders.DashboardLink("lmaload")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for panel in panels:
        board.with_panel(panel)
    return board


def load() -> builders.Dashboard:
    register = 'kind="register"'
    return dashboard(
        "lmaload-load",
        "lmaload / Load",
        "The generator (lmaload run): registrations against the open-loop target, PBA status "
        "codes, latency from each PBU's intended send time, and whether the generator kept up.",
        [
            big_number(
                "Sessions registered",
                "short",
                "Sessions whose initial registration an LMA accepted.",
                Query("sum(lmaload_registrations_total)", "registered"),
            ),
            big_number(
                "Sessions to register",
                "short",
                "The population of the run.",
                Query("sum(lmaload_sessions_target)", "target"),
            ),
            big_number(
                "Behind schedule",
                "percentunit",
                "Share of scheduled registrations sent later than the lag tolerance; a run "
                "fails above 1 %.",
                Query("max(lmaload_generator_behind_schedule_ratio)", "behind"),
                red_from=0.01,
            ),
            big_number(
                "Lag max",
                "s",
                "How late the latest scheduled registration ever left.",
                Query("max(lmaload_generator_lag_max_seconds)", "max"),
            ),
            graph(
                "Registration rate vs target",
                "ops",
                "Initial registrations accepted per second, and the open-loop target rate.",
                Query(rate("lmaload_registrations_total"), "registered"),
                Query("sum(lmaload_target_registrations_per_second)", "target"),
            ),
            graph(
                "Sessions by state",
                "short",
                "MAG-side state of every emulated session.",
                Query("sum by (state) (lmaload_sessions)", "{{state}}"),
                stack=True,
            ),
            graph(
                "PBA status mix",
                "ops",
                "PBAs matched to an outstanding PBU, per second, by status code (0 accepted; "
                "128 and up rejected).",
                Query(rate("lmaload_pbas_received_total", "status"), "{{status}}"),
                stack=True,
            ),
            graph(
                "PBUs",
                "ops",
                "Proxy Binding Updates sent (retransmissions included) and retransmitted, and "
                "PBAs ignored (stale, duplicate, malformed), per second.",
                Query(rate("lmaload_pbus_sent_total"), "sent"),
                Query(rate("lmaload_pbus_retransmitted_total"), "retransmitted"),
                Query(rate("lmaload_pbas_ignored_total"), "PBAs ignored"),
            ),
            graph(
                "Registration latency",
                "s",
                "From each initial PBU's intended send time to the PBA accepting it (open "
                "loop: the generator's own lag is included).",
                *quantiles("lmaload_registration_latency_seconds", "{" + register + "}"),
            ),
            graph(
                "Generator lag",
                "s",
                "How late the latest scheduled registrations left, and the worst so far.",
                Query("max(lmaload_generator_lag_seconds)", "latest"),
                Query("max(lmaload_generator_lag_max_seconds)", "max"),
            ),
            graph(
                "Datagrams",
                "pps",
                "What the emulated MAGs sent and received, and what they dropped by reason.",
                Query(rate("lmaload_datagrams_sent_total"), "sent"),
                Query(rate("lmaload_datagrams_received_total"), "received"),
                Query(rate("lmaload_drops_total", "reason"), "dropped {{reason}}"),
            ),
            graph(
                "Latency p99 by kind",
                "s",
                "99th percentile of PBU-to-accepting-PBA latency for initial registrations, "
                "refreshes and failover PBUs.",
                Query(
                    "histogram_quantile(0.99, sum by (kind, le) "
                    "(rate(lmaload_registration_latency_seconds_bucket[$__rate_interval])))",
                    "{{kind}}",
                ),
            ),
        ],
    )


def takeover() -> builders.Dashboard:
    return dashboard(
        "lmaload-takeover",
        "lmaload / Takeover",
        "The failure of the active LMA as the emulated MAGs saw it: heartbeat detection, "
        "takeover by the standby, and the fate of the sessions at risk.",
        [
            big_number(
                "Sessions kept",
                "short",
                "Sessions at risk that the standby accepted with their prefix.",
                Query('sum(lmaload_takeover_sessions{fate="kept"})', "kept"),
            ),
            big_number(
                "Sessions lost",
                "short",
                "Sessions at risk that were rejected, got another prefix, or were invalidated "
                "by a Restart Counter change.",
                Query('sum(lmaload_takeover_sessions{fate="lost"})', "lost"),
                red_from=1,
            ),
            big_number(
                "MAGs taken over",
                "short",
                "MAGs none of whose sessions is still pending.",
                Query("sum(lmaload_failover_takeover_seconds_count)", "MAGs"),
            ),
            big_number(
                "MAGs",
                "short",
                "Emulated MAGs.",
                Query("sum(lmaload_mags)", "MAGs"),
            ),
            graph(
                "Detection time over MAGs",
                "s",
                "From the failure to each MAG's first LMA-down (missing heartbeats), as "
                "quantiles over the MAGs.",
                *quantiles("lmaload_failover_detection_seconds", per_second=False),
            ),
            graph(
                "Takeover time over MAGs",
                "s",
                "From the failure to the last of each MAG's sessions accepted by the taking-over "
                "LMA, as quantiles over the MAGs.",
                *quantiles("lmaload_failover_takeover_seconds", per_second=False),
            ),
            graph(
                "Sessions at risk",
                "short",
                "Sessions bound when the active LMA failed, by fate.",
                Query("sum by (fate) (lmaload_takeover_sessions)", "{{fate}}"),
                stack=True,
            ),
            graph(
                "MAGs that detected and took over",
                "short",
                "MAGs that declared the failed LMA down, and MAGs whose sessions all moved.",
                Query("sum(lmaload_failover_detection_seconds_count)", "detected"),
                Query("sum(lmaload_failover_takeover_seconds_count)", "taken over"),
            ),
            graph(
                "Heartbeat RTT",
                "s",
                "RFC 5847 Heartbeat Request to matching Response, MAGs to LMAs.",
                *quantiles("lmaload_heartbeat_rtt_seconds"),
            ),
            graph(
                "Heartbeat misses",
                "ops",
                "Heartbeat Requests sent, and those still unanswered when the next fell due, "
                "per second.",
                Query(rate("lmaload_heartbeat_requests_sent_total"), "sent"),
                Query(rate("lmaload_heartbeats_missed_total"), "missed"),
            ),
            graph(
                "MAG-LMA pairs down",
                "short",
                "(MAG, LMA) pairs whose heartbeats declare the LMA unreachable.",
                Query("sum(lmaload_heartbeat_pairs_down)", "down"),
            ),
            graph(
                "Failover PBU latency",
                "s",
                "From each failover PBU (with LMA Failure Indication) to the PBA accepting it.",
                *quantiles("lmaload_registration_latency_seconds", '{kind="failover"}'),
            ),
        ],
    )


def state_sync() -> builders.Dashboard:
    return dashboard(
        "lmaload-state-sync",
        "lmaload / State sync",
        "State Synchronization between the LMAs (draft-wakikawa-netext-lma-reliability), from "
        "the reference LMAs' own metrics: sessions and octets carried, SS-REPs and SS-ACKs, "
        "SS-ACK latency, and the backlog waiting for pacing or acknowledgement.",
        [
            graph(
                "Sessions synced",
                "ops",
                "Sessions carried in SS-REPs sent, and applied from SS-REPs received, per "
                "second and LMA.",
                Query(
                    rate("lmaload_lma_sessions_synced_out_total", "instance"), "out {{instance}}"
                ),
                Query(rate("lmaload_lma_sessions_synced_in_total", "instance"), "in {{instance}}"),
            ),
            graph(
                "Sync octets",
                "Bps",
                "Octets of SS-REPs sent (Mobility Header, retransmissions included) per second "
                "and LMA.",
                Query(rate("lmaload_lma_ss_rep_bytes_sent_total", "instance"), "{{instance}}"),
            ),
            graph(
                "SS-ACK latency",
                "s",
                "From packing an SS-REP to each peer's SS-ACK: pacing, the round trip and "
                "retransmissions. With before-ack sync, what a PBA waits for.",
                *quantiles("lmaload_lma_ss_ack_latency_seconds"),
            ),
            graph(
                "SS-REPs and SS-ACKs",
                "ops",
                "State Synchronization replies sent (retransmissions included), retransmitted "
                "and received, and SS-ACKs received, per second.",
                Query(rate("lmaload_lma_ss_reps_sent_total"), "SS-REP sent"),
                Query(rate("lmaload_lma_ss_rep_retransmissions_total"), "SS-REP retransmitted"),
                Query(rate("lmaload_lma_ss_reps_received_total"), "SS-REP received"),
                Query(rate("lmaload_lma_ss_acks_received_total"), "SS-ACK received"),
            ),
            graph(
                "Sync backlog",
                "short",
                "SS-REPs queued for pacing or waiting for an SS-ACK, per LMA.",
                Query("sum by (instance) (lmaload_lma_sync_backlog)", "{{instance}}"),
            ),
            graph(
                "Sessions per SS-REP",
                "short",
                "How many sessions each SS-REP carried (PBCI options packed up to the "
                "2048-octet Mobility Header limit).",
                Query(
                    f"{rate('lmaload_lma_sessions_synced_out_total')}"
                    f" / {rate('lmaload_lma_ss_reps_sent_total')}",
                    "sessions/SS-REP",
                ),
            ),
            graph(
                "Sync failures",
                "ops",
                "SS-REPs abandoned after the last retransmission, and PBAs sent unsynced when "
                "before-ack sync timed out, per second.",
                Query(rate("lmaload_lma_sync_gave_up_total"), "gave up"),
                Query(rate("lmaload_lma_pba_sync_timeouts_total"), "PBA sync timeouts"),
            ),
            graph(
                "Synced bindings",
                "short",
                "Binding cache entries held as synced copies (the standby's view of the "
                "active's sessions), per LMA.",
                Query(
                    'sum by (instance) (lmaload_lma_binding_cache_entries{state="synced"})',
                    "{{instance}}",
                ),
            ),
        ],
    )


def lma() -> builders.Dashboard:
    return dashboard(
        "lmaload-lma",
        "lmaload / LMA",
        "The reference LMAs (lmaload lma, or the pair lmaload run embeds): role, binding "
        "cache, signalling processed and datagrams dropped.",
        [
            graph(
                "LMAs by role",
                "short",
                "How many LMAs are active and how many standby.",
                Query("sum by (role) (lmaload_lma_role)", "{{role}}"),
            ),
            graph(
                "Peers alive and LMAA owner",
                "short",
                "Peer LMAs each LMA sees alive by HA-HELLO, and which LMA answers for the "
                "shared LMAA (virtual switch).",
                Query("sum by (instance) (lmaload_lma_peers_alive)", "peers alive {{instance}}"),
                Query("sum by (instance) (lmaload_lma_owns_lmaa)", "owns LMAA {{instance}}"),
            ),
            graph(
                "Binding cache",
                "short",
                "Binding cache entries by LMA and state.",
                Query(
                    "sum by (instance, state) (lmaload_lma_binding_cache_entries)",
                    "{{instance}} {{state}}",
                ),
            ),
            graph(
                "PBUs processed",
                "ops",
                "Proxy Binding Updates processed per second, by LMA.",
                Query(rate("lmaload_lma_pbus_processed_total", "instance"), "{{instance}}"),
            ),
            graph(
                "PBAs by status",
                "ops",
                "Proxy Binding Acknowledgements sent per second, by status code.",
                Query(rate("lmaload_lma_pbas_total", "status"), "{{status}}"),
                stack=True,
            ),
            graph(
                "Drops",
                "pps",
                "Datagrams dropped per second, by LMA and reason.",
                Query(
                    rate("lmaload_lma_drops_total", "instance, reason"), "{{instance}} {{reason}}"
                ),
            ),
            graph(
                "Datagrams",
                "pps",
                "Datagrams received and sent per second, by LMA.",
                Query(
                    rate("lmaload_lma_datagrams_received_total", "instance"),
                    "received {{instance}}",
                ),
                Query(rate("lmaload_lma_datagrams_sent_total", "instance"), "sent {{instance}}"),
            ),
            graph(
                "Switchovers",
                "short",
                "Switchovers in each interval, by kind (per-MAG takeover, refusal, yield, HA "
                "Switch fan-out, LMAA takeover).",
                Query(
                    "sum by (kind) (increase(lmaload_lma_switchovers_total[$__rate_interval]))",
                    "{{kind}}",
                ),
            ),
        ],
    )


DASHBOARDS = {
    "lmaload-load.json": load,
    "lmaload-takeover.json": takeover,
    "lmaload-state-sync.json": state_sync,
    "lmaload-lma.json": lma,
}


def render() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {
        name: json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: python -m lmaload.dashboards [DIR]", file=sys.stderr)
        return 2
    out = Path(argv[0]) if argv else DEFAULT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
