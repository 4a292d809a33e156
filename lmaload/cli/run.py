"""``lmaload run``: the main job."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from lmaload.cli.config import where
from lmaload.cli.finish import finish
from lmaload.cli.group import (
    EXIT_INVALID_INPUT,
    Duration,
    allow_lag_option,
    allow_remote_option,
    fail,
    heartbeat_interval_option,
    heartbeats_option,
    junit_option,
    mags_option,
    main,
    metrics_port_option,
    mode_option,
    parse_duration,
    pbu_order_option,
    results_option,
    seed_option,
    sync_option,
    threshold_option,
)
from lmaload.cli.targets import (
    lma_option,
    mag_prefix,
    mag_prefix_option,
    run_targets,
    standby_option,
)
from lmaload.shard_logs import RESULTS_MARKER

if TYPE_CHECKING:
    from lmaload.measure.schedule import Stage
    from lmaload.run import RunConfig


def _shard(text: str | None) -> tuple[int, int]:
    """``--shard I/N`` parsed: (index, count)."""
    if text is None:
        return 0, 1
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise click.BadParameter(f"{text!r}: expected I/N with 0 <= I < N", param_hint="--shard")
    return int(index), int(count)


class Stages(click.ParamType):
    """``DURATION:RATE,...``: ramp linearly to RATE registrations/s over DURATION, from 0, each
    stage from where the last ended (k6's stages); ``0s:RATE`` is a step."""

    name = "stages"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from lmaload.measure.schedule import Stage

        if isinstance(value, tuple):
            return value
        stages = []
        for part in str(value).split(","):
            duration, sep, rate = part.strip().partition(":")
            try:
                if not sep:
                    raise ValueError
                stages.append(Stage(parse_duration(duration), float(rate)))
            except ValueError:
                self.fail(f"{part.strip()!r}: expected DURATION:RATE, e.g. 30s:5000", param, ctx)
            if stages[-1].duration < 0 or not 0 <= stages[-1].rate < float("inf"):
                self.fail(
                    f"{part.strip()!r}: durations and rates are finite, not negative", param, ctx
                )
        return tuple(stages)


def format_stages(stages: tuple[Stage, ...]) -> str:
    """``--stages`` text for ``stages`` (the inverse of ``Stages``)."""
    return ",".join(f"{s.duration!r}:{s.rate!r}" for s in stages)


@main.command(name="run")
@click.option(
    "--mns",
    type=click.IntRange(1),
    default=25_000,
    show_default=True,
    help="Emulated mobile nodes, each registered once.",
)
@mags_option
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=1000.0,
    show_default=True,
    help="Target registrations per second (open loop).",
)
@click.option(
    "--ramp",
    type=Duration(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to ramp from 0 to --rate.",
)
@click.option(
    "--stages",
    type=Stages(),
    metavar="DURATION:RATE,...",
    help="The rate profile instead of --rate/--ramp, e.g. 10s:1000,30s:5000,10s:0: ramp from 0 "
    "to each RATE over its DURATION (0s: a step); the last rate holds until --mns are sent. "
    "Ending at 0, --mns defaults to the registrations the stages schedule. Shards split each "
    "rate.",
)
@mode_option
@sync_option
@heartbeat_interval_option
@click.option(
    "--missing-heartbeats",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    help="Heartbeats a MAG may miss in a row before it declares its LMA failed (RFC 5847).",
)
@pbu_order_option
@heartbeats_option
@click.option(
    "--failure-after",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Without heartbeats: PBU (re)transmissions in a row to an LMA without an answer that "
    "make a MAG declare it failed.",
)
@seed_option
@results_option("results.json")
@allow_lag_option
@click.option(
    "--lag-tolerance",
    type=Duration(min=0, min_open=True),
    default=0.02,
    show_default=True,
    help="Seconds after its intended time past which a registration counts as behind schedule.",
)
@lma_option
@standby_option
@click.option(
    "--fail-cmd",
    metavar="CMD",
    help="Shell command that fails your active LMA; run at the failure instant. Without it a "
    "run against --lma ends after the registrations.",
)
@click.option(
    "--sync-wait",
    type=Duration(min=0),
    default=5.0,
    show_default=True,
    help="With --lma: seconds between the last registration and the failure, for state sync.",
)
@allow_remote_option
@click.option(
    "--shard",
    metavar="I/N",
    help="Be shard I (0-based) of N processes sharing the run: MNs, MAGs and rate split "
    "evenly; needs --lma and --start-at when N > 1. Combine the results with lmaload merge.",
)
@click.option(
    "--start-at",
    type=float,
    metavar="UNIX_SECONDS",
    help="Start the registration schedule then (shards share it).",
)
@click.option(
    "--fail-at",
    type=Duration(min=0),
    metavar="SECONDS",
    help="Fail the active this long after the start instead of once sync caught up "
    "(shard 0 runs --fail-cmd; every shard measures from that instant).",
)
@click.option(
    "--pcap",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a sample of the signalling here: the MAGs' PBUs, PBAs and heartbeats, and the "
    "embedded LMAs' messages to each other (tshark: -d udp.port==5436,ipv6).",
)
@click.option(
    "--hdr-log",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the registration, refresh and takeover latencies here as an HdrHistogram "
    "interval log (one interval a second, tagged by kind; values in µs).",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the per-second series here as CSV (offered, sent, answered, completed, failed, "
    "retransmitted, latency p50/p99, sessions by state, heartbeat misses).",
)
@metrics_port_option
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address --metrics-port listens on (0.0.0.0 or :: to be scraped from elsewhere).",
)
@click.option(
    "--lma-metrics-port",
    type=click.IntRange(1, 0xFFFF),
    help="Port of the embedded LMAs' /metrics at their own addresses, 127.0.0.11 (active) and "
    "127.0.0.12 (standby). Default: a free port each.",
)
@click.option(
    "--pushgateway",
    metavar="URL",
    help="Push the final metrics to this Prometheus Pushgateway (job lmaload) at the end.",
)
@click.option(
    "--lifetime",
    type=Duration(min=4, max=0xFFFF * 4),
    default=3600.0,
    show_default=True,
    help="Binding lifetime the MAGs request, seconds (they refresh 10 s before it ends, or at "
    "half of it).",
)
@click.option(
    "--fault",
    "fault_text",
    default="kill-active",
    show_default=True,
    metavar="FAULT",
    help="What fails on cue: kill-active (SIGKILL the active LMA); with --lab also "
    "cut-link[=SHARE] (the MAG host loses its path to LMA1 for the first SHARE of the MAGs, "
    "default 0.5, while LMA1 stays up) or loss=P (drop Mobility Header packets on the MAG "
    "host-LMA1 link with probability P).",
)
@click.option(
    "--duration",
    type=Duration(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to hold the registered population (refreshing per --lifetime) before the "
    "active is failed: a steady-state soak.",
)
@click.option(
    "--observe",
    type=Duration(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to keep the MAGs running after the failover (refreshes, heartbeats).",
)
@click.option(
    "--transport",
    type=click.Choice(["udp", "raw"]),
    help="udp: UDP/5436 with the RFC 5844 inner IPv6 header (the default, on loopback); raw: "
    "the Mobility Header over IPv6 (root): to your --lma at its IPv6 address from "
    "--mag-prefix, else in the namespace lab (implies --lab).",
)
@mag_prefix_option
@click.option(
    "--lab",
    is_flag=True,
    help="Run in network namespaces (root): the LMAs in their own over raw Mobility Header "
    "sockets, the MAGs in a MAG host's (hard mode only). Uses the lab of --lab-prefix if it is "
    "up, else brings one up and down for the run.",
)
@click.option(
    "--lab-prefix",
    default="lmaload-lab-",
    show_default=True,
    help="Name prefix of the lab's network namespaces.",
)
@threshold_option("run")
@junit_option
@click.option(
    "--print-results",
    is_flag=True,
    help=f"Also print the results document as one line, {RESULTS_MARKER} and the JSON, last "
    "on stdout: lmaload merge --from-logs collects the shards' from their logs (k8s-job).",
)
@click.pass_context
def run_command(ctx: click.Context, **options: Any) -> None:
    """Register a population with an LMA pair — the embedded one on loopback or in a namespace
    lab (--lab), or yours with --lma/--standby — fail the active, and measure the failover.

    Prints a summary table and writes the results JSON. Exits 0 on success, 1 when the
    generator fell behind schedule (unless --allow-lag), when mobile nodes were given up or left
    unanswered, when no MAG detected the failure, when sessions were lost with before-ack sync,
    when an LMA, the lab or /metrics failed to start, when an LMA did not answer, or when
    --fail-cmd failed; 2 on bad options. A push to the Pushgateway that fails is
    a warning.
    """
    from lmaload.measure.series import write_csv
    from lmaload.results import table
    from lmaload.run import RunError, run

    config = run_config(ctx, options, _shard(options["shard"]), options["start_at"])
    try:
        results, checks = run(config, warn=lambda m: fail(f"run: warning: {m}"))
    except RunError as exc:
        fail(f"run: {exc}")
        sys.exit(EXIT_INVALID_INPUT)
    csv_path = options["csv_path"]
    if csv_path is not None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with csv_path.open("w", newline="") as out:
            write_csv(results["series"], out)
    finish(
        "run",
        results,
        checks,
        options["thresholds"],
        config.results,
        options["junit_path"],
        table,
        print_results=options["print_results"],
    )


def run_config(
    ctx: click.Context, options: dict[str, Any], shard: tuple[int, int], start_at: float | None
) -> RunConfig:
    """The RunConfig of run's ``options`` (``lmaload run`` and ``k8s-job``, which checks them
    before it prints); UsageError for a bad combination."""
    from lmaload.fault import parse_fault
    from lmaload.lab.topology import check_prefix
    from lmaload.measure.schedule import Schedule
    from lmaload.run import RunConfig

    try:
        fault = parse_fault(options["fault_text"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    try:
        check_prefix(options["lab_prefix"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lab-prefix") from None
    transport, lab = options["transport"], options["lab"]
    if transport == "udp" and lab:
        raise click.UsageError("--lab speaks the raw Mobility Header: not with --transport udp")
    own = options["lma"] is not None
    targets = run_targets(
        options["lma"], options["standby"], options["fail_cmd"], options["mode"],
        options["allow_remote"], transport,
    )  # fmt: skip
    stages: tuple[Stage, ...] = options["stages"] or ()
    rate, mns = options["rate"], options["mns"]
    if stages:
        if ctx.get_parameter_source("rate") is not ParameterSource.DEFAULT:
            raise click.UsageError(
                f"--stages gives the rate profile: not with {where(ctx, 'rate')}"
            )
        rate = max(s.rate for s in stages)
        due = Schedule(stages).total
        if due < 1:
            raise click.BadParameter("no registration is due", param_hint="--stages")
        if ctx.get_parameter_source("mns") is ParameterSource.DEFAULT and due < float("inf"):
            mns = int(due)
    try:
        return RunConfig(
            mns=mns,
            mags=options["mags"],
            rate=rate,
            ramp=options["ramp"],
            stages=stages,
            mode=options["mode"],
            sync=options["sync"],
            heartbeat_interval=options["heartbeat_interval"],
            missing_heartbeats=options["missing_heartbeats"],
            pbu_order=options["pbu_order"],
            heartbeats=options["heartbeats"],
            failure_after=options["failure_after"],
            seed=options["seed"],
            results=options["results_path"],
            allow_lag=options["allow_lag"],
            lag_tolerance=options["lag_tolerance"],
            lma=targets[0],
            standby=targets[1],
            fail_cmd=options["fail_cmd"],
            sync_wait=options["sync_wait"],
            pcap=options["pcap"],
            shard=shard,
            start_at=start_at,
            fail_at=options["fail_at"],
            metrics_port=options["metrics_port"],
            metrics_host=options["metrics_host"],
            lma_metrics_port=options["lma_metrics_port"],
            pushgateway=options["pushgateway"],
            lifetime=options["lifetime"],
            fault=fault,
            duration=options["duration"],
            observe=options["observe"],
            lab=lab or (transport == "raw" and not own),
            mag_prefix=mag_prefix(
                options["mag_prefix"], targets[0], options["mags"], options["allow_remote"]
            ),
            lab_prefix=options["lab_prefix"],
            hdr_log=options["hdr_log"],
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
