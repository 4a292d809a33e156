"""``lmaload lma``: one reference LMA process."""

from __future__ import annotations

import sys
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import click

from lmaload.cli.group import (
    EXIT_INVALID_INPUT,
    Duration,
    IPv6Param,
    allow_remote_option,
    fail,
    main,
    metrics_port_option,
    refuse_remote,
)


def endpoint(text: str, option: str, transport: str) -> Any:
    from lmaload.endpoints import parse_endpoint, parse_raw_endpoint

    try:
        return parse_raw_endpoint(text) if transport == "raw" else parse_endpoint(text)
    except ValueError as exc:
        form = "IPV6" if transport == "raw" else "[INNER_IPV6@]HOST[:PORT]"
        raise click.BadParameter(f"{text!r}: expected {form} ({exc})", param_hint=option) from None


# What a plain LMA has none of: peers, the election, State Sync, RFC 5847 heartbeats.
NOT_PLAIN = (
    "peers", "role", "preference", "mode", "lmaa", "sync", "sync_pacing_rate", "hello_interval",
    "heartbeat_interval", "missing_heartbeats", "restart_counter",
)  # fmt: skip


def refuse_with_plain(ctx: click.Context, role: str, mode: str) -> None:
    """UsageError naming the options given with --plain that belong to what it has none of
    (--role active and --mode hard are what it is)."""
    from click.core import ParameterSource

    from lmaload.cli.config import where

    given = [
        where(ctx, name)
        for name in NOT_PLAIN
        if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
        and not (name == "role" and role == "active")
        and not (name == "mode" and mode == "hard")
    ]
    if given:
        raise click.UsageError(
            f"--plain is a standalone LMA without heartbeats (no peers, election or State "
            f"Sync): not with {', '.join(given)}"
        )


@main.command()
@click.option(
    "--role",
    type=click.Choice(["active", "standby", "auto"]),
    default="active",
    show_default=True,
    help="auto: ask the peers first and be the standby beside a live active one (a restarted "
    "LMA rejoins without a second active); with none, the best live LMA by --preference, then "
    "address, becomes active.",
)
@click.option(
    "--preference",
    type=click.IntRange(0, 0xFFFF),
    default=100,
    show_default=True,
    help="Home Agent Preference in HA-HELLO: the higher takes over or is elected.",
)
@click.option(
    "--listen",
    default="127.0.0.1:5436",
    show_default=True,
    metavar="HOST[:PORT]",
    help="UDP address of this LMA ([IPV6]:PORT for IPv6); also where --metrics-port listens.",
)
@click.option(
    "--address",
    type=IPv6Param(),
    help="Own individual IPv6 address (inner header, raw socket). Default: --listen's host, "
    "IPv4-mapped when it is IPv4.",
)
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="[INNER_IPV6@]HOST[:PORT]",
    help="A peer LMA (repeatable): its individual IPv6 address and UDP address. INNER_IPV6 "
    "defaults to HOST (IPv4-mapped for IPv4), PORT to 5436; e.g. 127.0.0.12 or "
    "fd00::2@[::1]:6000. With --transport raw: the peer's IPv6 address only.",
)
@click.option(
    "--transport",
    type=click.Choice(["udp", "raw"]),
    default="udp",
    show_default=True,
    help="udp: UDP/5436 with the RFC 5844 inner IPv6 header; raw: the Mobility Header over IPv6 "
    "(root).",
)
@click.option(
    "--mode",
    type=click.Choice(["hard", "virtual"]),
    default="hard",
    show_default=True,
    help="hard: MAGs register with this LMA's own address; virtual: with the shared --lmaa.",
)
@click.option(
    "--lmaa",
    metavar="[INNER_IPV6@]HOST[:PORT]",
    help="The shared LMAA (virtual mode only), same form as --peer. The active binds its UDP "
    "address at start; the standby once it takes over.",
)
@click.option(
    "--prefix-pool",
    default="2001:db8:8000::/40",
    show_default=True,
    metavar="PREFIX",
    help="The /64 home network prefixes this LMA assigns come from here (the default holds "
    "16 M, enough for any run lmaload makes).",
)
@click.option(
    "--sync",
    type=click.Choice(["async", "before-ack"]),
    default="async",
    show_default=True,
    help="before-ack: withhold each PBA until the standby acknowledged the change.",
)
@click.option(
    "--sync-pacing-rate",
    type=click.FloatRange(1.0),
    default=1000.0,
    show_default=True,
    help="State Synchronization messages per second to each peer, at most.",
)
@click.option(
    "--hello-interval",
    type=Duration(whole=True, min=1, max=0xFFFF),
    default=1,
    show_default=True,
    help="Seconds between HA-HELLOs to the peers.",
)
@click.option(
    "--heartbeat-interval",
    type=Duration(min=0.01),
    default=60.0,
    show_default=True,
    help="Seconds between this LMA's heartbeats to the MAGs it serves (RFC 5847).",
)
@click.option(
    "--missing-heartbeats",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    help="Heartbeats a MAG may miss in a row before this LMA declares it unreachable.",
)
@click.option(
    "--restart-counter",
    type=click.IntRange(0, 0xFFFFFFFF),
    default=1,
    show_default=True,
    help="The Restart Counter this LMA sends in heartbeats (RFC 5847 §3.4): change it across "
    "a restart that lost the binding cache.",
)
@click.option(
    "--plain",
    is_flag=True,
    help="Behave as a plain RFC 5213 LMA, to rehearse against: standalone (no peers, HA-HELLO, "
    "election or State Sync), Binding Error status 2 to a Heartbeat and none sent to the MAGs, "
    "PBUs ordered by sequence number (Timestamp ignored, never sent), 135 with the last "
    "accepted one; the binding cache lives in memory, so a restart starts empty.",
)
@click.option(
    "--reserve",
    type=click.IntRange(0, 2**31 - 2),
    default=0,
    show_default=True,
    help="Sessions to make room for at start: the binding cache's memory for them is written "
    "before the LMA serves, so that registrations up to then never wait for the system to map "
    "a page (costly on a virtual machine whose host takes back free memory).",
)
@metrics_port_option
@click.option(
    "--pcap",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a sample of the signalling (UDP transport) to this pcap file.",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON: {"authorized_mags": [...], "authorized_mns": [...], "pmip_disabled_mns": [...], '
    '"home_networks": [...]}; an absent list authorises everyone.',
)
@allow_remote_option
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Log to stderr from this level up.",
)
def lma(
    role: str,
    listen: str,
    address: IPv6Address | None,
    peers: tuple[str, ...],
    transport: str,
    mode: str,
    lmaa: str | None,
    prefix_pool: str,
    sync: str,
    sync_pacing_rate: float,
    hello_interval: int,
    heartbeat_interval: float,
    missing_heartbeats: int,
    restart_counter: int,
    preference: int,
    plain: bool,
    reserve: int,
    metrics_port: int | None,
    pcap: Path | None,
    policy_path: Path | None,
    allow_remote: bool,
    log_level: str,
) -> None:
    """Run one reference LMA (of an active/standby pair) until SIGTERM or SIGINT.

    Exits 0 when stopped, 2 on bad options, 1 when it cannot start (address in use, peer
    unreachable, no permission for raw sockets).
    """
    import logging
    from ipaddress import IPv6Network, ip_address

    from lmaload.endpoints import parse_host_port
    from lmaload.lma_process import LmaSettings, StartupError, load_policy, run
    from lmaload.protocol import Policy
    from lmaload.transport.udp5436 import mapped

    try:
        host, port = parse_host_port(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    try:
        pool = IPv6Network(prefix_pool)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--prefix-pool") from None
    if address is None:
        listen_ip = ip_address(host)
        if listen_ip.is_unspecified:
            raise click.UsageError("--address is required with a wildcard --listen")
        address = mapped(listen_ip)
    if plain:
        refuse_with_plain(click.get_current_context(), role, mode)
    if (mode == "virtual") != (lmaa is not None):
        raise click.UsageError("--lmaa is required in virtual mode and only there")
    try:
        policy = load_policy(policy_path) if policy_path is not None else Policy()
    except (ValueError, OSError) as exc:
        raise click.BadParameter(str(exc), param_hint="--policy") from None
    settings = LmaSettings(
        role=role,  # type: ignore[arg-type]
        listen=(host, port),
        address=address,
        peers=tuple(endpoint(p, "--peer", transport) for p in peers),
        transport=transport,  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        lmaa=endpoint(lmaa, "--lmaa", transport) if lmaa is not None else None,
        prefix_pool=pool,
        sync=sync,  # type: ignore[arg-type]
        sync_pacing_rate=sync_pacing_rate,
        hello_interval=hello_interval,
        heartbeat_interval=heartbeat_interval,
        missing_heartbeats=missing_heartbeats,
        restart_counter=restart_counter,
        preference=preference,
        plain=plain,
        reserve=reserve,
        policy=policy,
        metrics_port=metrics_port,
        pcap=pcap,
    )
    if pcap is not None and transport != "udp":
        raise click.UsageError("--pcap samples the UDP transport: not with --transport raw")
    refuse_remote(settings.remote_addresses(), allow_remote)
    try:
        settings.check_families()
        settings.engine_config()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    logging.basicConfig(
        stream=sys.stderr,
        level=log_level.upper(),
        format=f"%(asctime)s lma {address}: %(message)s",
    )
    try:
        run(settings)
    except StartupError as exc:
        fail(str(exc))
        sys.exit(EXIT_INVALID_INPUT)
