"""``lmaload capacity``: the highest registration rate the target sustains."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from lmaload.cli.finish import finish
from lmaload.cli.group import (
    EXIT_INVALID_INPUT,
    Duration,
    allow_remote_option,
    fail,
    heartbeat_interval_option,
    heartbeats_option,
    junit_option,
    mags_option,
    main,
    mode_option,
    pbu_order_option,
    results_option,
    seed_option,
    sync_option,
    threshold_option,
)
from lmaload.cli.targets import lma_option, mag_prefix_option, run_targets, standby_option
from lmaload.cli.targets import mag_prefix as check_mag_prefix


@main.command(name="capacity")
@mags_option
@mode_option
@sync_option
@heartbeat_interval_option
@pbu_order_option
@heartbeats_option
@seed_option
@click.option(
    "--trial-duration",
    type=Duration(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds of registrations in each trial.",
)
@click.option(
    "--confirm-duration",
    type=Duration(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds of the confirmation trial at the rate found.",
)
@click.option(
    "--start-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=1000.0,
    show_default=True,
    help="Registrations/s of the first trial; the ramp doubles it until a trial fails.",
)
@click.option(
    "--max-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=1_000_000.0,
    show_default=True,
    help="The ramp stops here.",
)
@click.option(
    "--resolution",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.02,
    show_default=True,
    help="Bisect until the passing and failing rates are this close (a fraction).",
)
@click.option(
    "--loss-bound",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.005,
    show_default=True,
    help="PDR: the share of a trial's mobile nodes that may go unregistered.",
)
@click.option(
    "--latency-bound",
    type=Duration(min=0, min_open=True),
    default=0.05,
    show_default=True,
    help="Seconds: a trial passes only with its registration latency p99 within this.",
)
@click.option(
    "--transport",
    type=click.Choice(["udp", "raw"]),
    default="udp",
    show_default=True,
    help="How the MAGs reach your --lma: udp (UDP/5436) or raw (the Mobility Header over IPv6, "
    "root; the embedded pair runs over udp).",
)
@lma_option
@standby_option
@mag_prefix_option
@allow_remote_option
@results_option("capacity.json")
@threshold_option("capacity")
@junit_option
def capacity_command(
    mags: int,
    mode: str,
    sync: str,
    heartbeat_interval: float,
    pbu_order: str,
    heartbeats: str,
    seed: int,
    trial_duration: float,
    confirm_duration: float,
    start_rate: float,
    max_rate: float,
    resolution: float,
    loss_bound: float,
    latency_bound: float,
    transport: str,
    lma: str | None,
    standby: str | None,
    mag_prefix: str | None,
    allow_remote: bool,
    results_path: Path,
    thresholds: list[Any],
    junit_path: Path | None,
) -> None:
    """Find the highest registration rate the target sustains (RFC 2544 / MLRsearch style).

    Trials of fixed duration over fresh mobile nodes: an exponential ramp from --start-rate until
    a trial fails, bisection to --resolution, then a longer confirmation trial. Reports the NDR
    (no mobile node unregistered) and the PDR (at most --loss-bound unregistered), each with the
    latency p99 within --latency-bound and the generator on schedule, and every trial. Exits 1
    when no rate passed or the generator, not the target, was the limit; 2 on bad options.
    """
    from lmaload.capacity import CapacityConfig, CapacityError, capacity, table

    if transport == "raw" and lma is None:
        raise click.UsageError("--transport raw needs --lma (the embedded pair runs over udp)")
    targets = run_targets(lma, standby, None, mode, allow_remote, transport)
    if start_rate > max_rate:
        raise click.UsageError("--start-rate is above --max-rate")
    config = CapacityConfig(
        mags=mags,
        mode=mode,  # type: ignore[arg-type]
        sync=sync,  # type: ignore[arg-type]
        heartbeat_interval=heartbeat_interval,
        pbu_order=pbu_order,  # type: ignore[arg-type]
        heartbeats=heartbeats,  # type: ignore[arg-type]
        seed=seed,
        trial_duration=trial_duration,
        confirm_duration=confirm_duration,
        start_rate=start_rate,
        max_rate=max_rate,
        resolution=resolution,
        loss_bound=loss_bound,
        latency_bound=latency_bound,
        lma=targets[0],
        standby=targets[1],
        mag_prefix=check_mag_prefix(mag_prefix, targets[0], mags, allow_remote),
        results=results_path,
    )
    try:
        results, checks = capacity(config, lambda line: click.echo(line, err=True))
    except CapacityError as exc:
        fail(f"capacity: {exc}")
        sys.exit(EXIT_INVALID_INPUT)
    finish("capacity", results, checks, thresholds, results_path, junit_path, table)
