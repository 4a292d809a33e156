"""``lmaload sync``: lmaload plays the active LMA towards a standby."""

from __future__ import annotations

import sys
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import click

from lmaload.cli.finish import finish
from lmaload.cli.group import (
    EXIT_INVALID_INPUT,
    Duration,
    IPv6Param,
    allow_lag_option,
    allow_remote_option,
    fail,
    junit_option,
    mags_option,
    main,
    metrics_port_option,
    refuse_remote,
    results_option,
    seed_option,
    threshold_option,
)


@main.command(name="sync")
@click.option(
    "--transport",
    type=click.Choice(["udp", "raw"]),
    default="udp",
    show_default=True,
    help="How lmaload reaches your --standby: udp (UDP/5436) or raw (the Mobility Header over "
    "IPv6, root: --standby is its IPv6 address, --address lmaload's).",
)
@click.option(
    "--standby",
    metavar="[INNER_IPV6@]HOST[:PORT]|IPV6",
    help="The standby LMA under test (its individual IPv6 address and UDP/5436 address, as "
    "lmaload lma --peer; with --transport raw its IPv6 address). Default: an embedded "
    "reference standby on loopback.",
)
@click.option(
    "--listen",
    metavar="HOST[:PORT]",
    help="lmaload's UDP address, the peer the standby is configured with. Default: a free "
    "loopback port for the embedded standby, else this host's source address towards the "
    "standby, port 5436.",
)
@click.option(
    "--address",
    type=IPv6Param(),
    help="lmaload's individual IPv6 address (inner header; with --transport raw the raw "
    "socket's). Default: --listen's host, IPv4-mapped when it is IPv4; over raw this host's "
    "source address towards the standby.",
)
@click.option(
    "--sessions",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Sessions to create at the standby (one PBCI record each, before updates and deletes).",
)
@mags_option
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Open loop: session records (PBCI options) per second, from their intended send times.",
)
@click.option(
    "--window",
    type=click.IntRange(1, 65_534),
    help="SS-REPs in flight without an SS-ACK (A flag). The default mode, with 64.",
)
@click.option("--ack", is_flag=True, help="With --rate: ask for SS-ACKs and retransmit.")
@click.option(
    "--update-ratio",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Update records per session (0.5: one update for every other session).",
)
@click.option(
    "--delete-ratio",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of the sessions deleted (PBCI lifetime 0) later in the stream.",
)
@click.option("--no-hello", is_flag=True, help="Stream at once, without the HA-HELLO exchange.")
@click.option(
    "--hello-timeout",
    type=Duration(min=0, min_open=True),
    default=15.0,
    show_default=True,
    help="Seconds to wait for the standby's first HA-HELLO.",
)
@click.option(
    "--verify",
    type=click.IntRange(0),
    default=1000,
    show_default=True,
    help="Live sessions to check at the standby afterwards (failover PBUs from their MAGs).",
)
@seed_option
@results_option("sync.json")
@metrics_port_option
@allow_lag_option
@allow_remote_option
@threshold_option("sync")
@junit_option
def sync_command(
    transport: str,
    standby: str | None,
    listen: str | None,
    address: IPv6Address | None,
    sessions: int,
    mags: int,
    rate: float | None,
    window: int | None,
    ack: bool,
    update_ratio: float,
    delete_ratio: float,
    no_hello: bool,
    hello_timeout: float,
    verify: int,
    seed: int,
    results_path: Path,
    metrics_port: int | None,
    allow_lag: bool,
    allow_remote: bool,
    thresholds: list[Any],
    junit_path: Path | None,
) -> None:
    """Play the active LMA towards a standby: stream State Synchronization (PBCI + MN options
    per session, SS-REPs of up to 2048 octets) and measure how fast the standby takes it.

    Then check a sample of the sessions at the standby with failover PBUs (LMA Failure
    Indication) from their MAGs, answering its SwitchOver requests as the old LMA. Prints a
    summary table and writes the results JSON. Exits 0 on success; 1 when records went
    unacknowledged, sampled sessions did not verify, the generator fell behind schedule
    (unless --allow-lag), or the standby did not answer; 2 on bad options.
    """
    from ipaddress import ip_address

    from lmaload.endpoints import is_local, parse_endpoint, parse_host_port, parse_raw_endpoint
    from lmaload.sync.job import SyncError, SyncJobConfig, run
    from lmaload.sync.report import table

    if rate is not None and window is not None:
        raise click.UsageError("give --rate or --window, not both")
    if ack and rate is None:
        raise click.UsageError("--ack goes with --rate (a --window always asks for SS-ACKs)")
    raw = transport == "raw"
    if raw and (standby is None or listen is not None):
        raise click.UsageError(
            "--transport raw needs --standby (the embedded standby runs over udp) and takes "
            "--address, not --listen"
        )
    try:
        parse = parse_raw_endpoint if raw else parse_endpoint
        target = parse(standby) if standby is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--standby") from None
    try:
        bind = parse_host_port(listen) if listen is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    outer = [
        *([target.host] if target is not None else []),
        *([ip_address(bind[0])] if bind is not None else []),
        *([address] if raw and address is not None else []),
    ]
    refuse_remote([a for a in outer if not (a.is_unspecified or is_local(a))], allow_remote)
    config = SyncJobConfig(
        standby=target,
        listen=bind,
        address=address,
        sessions=sessions,
        mags=mags,
        rate=rate,
        window=None if rate is not None else (window or 64),
        ack=rate is None or ack,
        update_ratio=update_ratio,
        delete_ratio=delete_ratio,
        hello=not no_hello,
        hello_timeout=hello_timeout,
        verify=verify,
        seed=seed,
        results=results_path,
        metrics_port=metrics_port,
        allow_lag=allow_lag,
    )
    try:
        results, checks = run(config)
    except SyncError as exc:
        fail(f"sync: {exc}")
        sys.exit(EXIT_INVALID_INPUT)
    finish("sync", results, checks, thresholds, results_path, junit_path, table)
