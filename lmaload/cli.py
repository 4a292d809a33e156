"""The ``lmaload`` command line (click): one group, one subcommand per job."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import fields
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import click

from lmaload import __version__
from lmaload.wire import WireConfig, WireError, decode_datagram
from lmaload.wire.describe import describe_packet, format_text

EXIT_INVALID_INPUT = 1
EXIT_USAGE = 2


class _IPv6Param(click.ParamType):
    name = "IPV6"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, IPv6Address):
            return value
        try:
            return IPv6Address(value)
        except ValueError:
            self.fail(f"{value!r} is not an IPv6 address", param, ctx)


def _wire_config(settings: tuple[str, ...]) -> WireConfig:
    """WireConfig from ``NAME=VALUE`` settings (code points are integers)."""
    known = {f.name: f.type for f in fields(WireConfig)}
    values: dict[str, Any] = {}
    for setting in settings:
        name, sep, raw = setting.partition("=")
        if not sep or name not in known:
            raise click.BadParameter(
                f"{setting!r}: expected NAME=VALUE with NAME one of {', '.join(known)}",
                param_hint="--wire",
            )
        try:
            values[name] = raw if name == "hac_mag_encoding" else int(raw, 0)
        except ValueError:
            raise click.BadParameter(f"{setting!r}: not an integer", param_hint="--wire") from None
    try:
        return WireConfig(**values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--wire") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lmaload")
def main() -> None:
    """Load generator and failover tester for Proxy Mobile IPv6 LMA pairs."""


def _fail(message: str) -> None:
    click.echo(f"lmaload: {message}", err=True)


def _hex_input(text: str) -> bytes:
    """Bytes from hex text; whitespace, ':' and '0x' prefixes are ignored."""
    cleaned = "".join(text.split()).replace(":", "").removeprefix("0x")
    for i, ch in enumerate(cleaned):
        if ch not in "0123456789abcdefABCDEF":
            raise WireError(i // 2, f"{ch!r} is not a hex digit")
    if len(cleaned) % 2:
        raise WireError(len(cleaned) // 2, "odd number of hex digits")
    return bytes.fromhex(cleaned)


def _decode_capture(path: Path, config: WireConfig) -> Iterator[dict[str, Any] | str]:
    """Per Mobility Header frame of a capture: its description (frame metadata first), or a
    one-line error for a frame whose MH does not decode."""
    from lmaload.pcap import find_mobility, read_packets

    for packet in read_packets(path):
        found = find_mobility(packet)
        if found is None:
            continue
        meta: dict[str, Any] = {
            "frame": packet.number,
            "time": packet.time,
            "transport": found.transport,
        }
        if found.transport == "udp":
            meta.update(
                outer_src=str(found.src),
                outer_dst=str(found.dst),
                sport=found.sport,
                dport=found.dport,
            )
        # A bare MH over UDP/IPv4 has no IPv6 addresses to check its checksum against.
        v6 = found.src.version == 6
        try:
            decoded = decode_datagram(
                found.payload, found.src if v6 else None, found.dst if v6 else None, config
            )
        except WireError as exc:
            yield f"frame {packet.number}: invalid Mobility Header: {exc}"
            continue
        yield {**meta, **describe_packet(decoded, config)}


@main.command()
@click.argument("hex_data", metavar="HEX", required=False)
@click.option(
    "--pcap",
    "pcap_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Decode every Mobility Header frame in a pcap or pcapng file: IPv6 next header "
    "135, and UDP port 5436 (RFC 5844, inner IPv6 header or bare MH).",
)
@click.option("--src", type=_IPv6Param(), help="IPv6 source, to verify a bare MH's checksum.")
@click.option("--dst", type=_IPv6Param(), help="IPv6 destination, to verify a bare MH's checksum.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message, per line.")
@click.option(
    "--wire",
    "wire_settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a TBD code point or hac_mag_encoding (e.g. opt_pbci=202).",
)
def decode(
    hex_data: str | None,
    pcap_path: Path | None,
    src: IPv6Address | None,
    dst: IPv6Address | None,
    as_json: bool,
    wire_settings: tuple[str, ...],
) -> None:
    """Decode Mobility Header messages from HEX ('-' reads it from standard input) or a capture.

    HEX is a bare Mobility Header or an IPv6 packet carrying one (as in a UDP/5436 payload).
    Exits 1, with one line naming the offset and the reason, on input that does not decode.
    """
    if (hex_data is None) == (pcap_path is None):
        raise click.UsageError("give either HEX or --pcap FILE")
    if (src is None) != (dst is None):
        raise click.UsageError("--src and --dst go together")
    config = _wire_config(wire_settings)

    if hex_data is not None:
        text = sys.stdin.read() if hex_data == "-" else hex_data
        try:
            packet = decode_datagram(_hex_input(text), src, dst, config)
        except WireError as exc:
            _fail(f"invalid input: {exc}")
            sys.exit(EXIT_INVALID_INPUT)
        described = describe_packet(packet, config)
        click.echo(json.dumps(described) if as_json else format_text(described))
        return

    from lmaload.pcap import PcapError

    failures = 0
    try:
        for item in _decode_capture(pcap_path, config):
            if isinstance(item, str):
                failures += 1
                _fail(item)
            elif as_json:
                click.echo(json.dumps(item))
            else:
                click.echo(f"frame {item['frame']} ({item['transport']}): {format_text(item)}")
    except PcapError as exc:
        _fail(f"{pcap_path}: {exc}")
        sys.exit(EXIT_INVALID_INPUT)
    if failures:
        sys.exit(EXIT_INVALID_INPUT)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON document.")
@click.option("--quick", is_flag=True, help="Smaller runs (100 000 instead of 1 000 000 nodes).")
def bench(as_json: bool, quick: bool) -> None:
    """Measure the bulk codec, batched I/O and population memory on this machine."""
    from lmaload.bench import format_report, run

    results = run(quick=quick)
    click.echo(json.dumps(results, indent=2) if as_json else format_report(results))


class _OneLineErrors(click.Command):
    """A command whose usage errors are one line on stderr and exit status 2."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            _fail(f"{info_name}: {exc.format_message()}")
            sys.exit(EXIT_USAGE)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            _fail(f"{ctx.info_name}: {exc.format_message()}")
            sys.exit(EXIT_USAGE)


def _endpoint(text: str, option: str, transport: str) -> Any:
    from lmaload.endpoints import Endpoint, parse_endpoint

    try:
        if transport == "raw":
            inner = IPv6Address(text)
            return Endpoint(inner, inner, 0)
        return parse_endpoint(text)
    except ValueError as exc:
        form = "IPV6" if transport == "raw" else "[INNER_IPV6@]HOST[:PORT]"
        raise click.BadParameter(f"{text!r}: expected {form} ({exc})", param_hint=option) from None


@main.command(cls=_OneLineErrors)
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
    type=_IPv6Param(),
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
@click.option("--transport", type=click.Choice(["udp", "raw"]), default="udp", show_default=True)
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
@click.option("--prefix-pool", default="2001:db8:8000::/48", show_default=True, metavar="PREFIX")
@click.option(
    "--sync",
    type=click.Choice(["async", "before-ack"]),
    default="async",
    show_default=True,
    help="before-ack: withhold each PBA until the standby acknowledged the change.",
)
@click.option("--hello-interval", type=click.IntRange(1, 0xFFFF), default=1, show_default=True)
@click.option(
    "--heartbeat-interval", type=click.FloatRange(min=0.01), default=60.0, show_default=True
)
@click.option("--missing-heartbeats", type=click.IntRange(0), default=3, show_default=True)
@click.option("--restart-counter", type=click.IntRange(0, 0xFFFFFFFF), default=1, show_default=True)
@click.option("--metrics-port", type=click.IntRange(0, 0xFFFF), help="Serve /metrics here.")
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
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Accept non-local addresses (default: loopback, link-local, fc00::/7 only).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
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
    hello_interval: int,
    heartbeat_interval: float,
    missing_heartbeats: int,
    restart_counter: int,
    preference: int,
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
        peers=tuple(_endpoint(p, "--peer", transport) for p in peers),
        transport=transport,  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        lmaa=_endpoint(lmaa, "--lmaa", transport) if lmaa is not None else None,
        prefix_pool=pool,
        sync=sync,  # type: ignore[arg-type]
        hello_interval=hello_interval,
        heartbeat_interval=heartbeat_interval,
        missing_heartbeats=missing_heartbeats,
        restart_counter=restart_counter,
        preference=preference,
        policy=policy,
        metrics_port=metrics_port,
        pcap=pcap,
    )
    if pcap is not None and transport != "udp":
        raise click.UsageError("--pcap samples the UDP transport: not with --transport raw")
    remote = settings.remote_addresses()
    if remote and not allow_remote:
        raise click.UsageError(
            f"{remote[0]} is not a local address (loopback, link-local, fc00::/7); "
            "add --allow-remote to use it"
        )
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
        _fail(str(exc))
        sys.exit(EXIT_INVALID_INPUT)


def _run_targets(
    lma: str | None, standby: str | None, fail_cmd: str | None, mode: str, allow_remote: bool
) -> tuple[Any, Any]:
    """The user's (active, standby) endpoints of ``lmaload run``, checked; (None, None) for the
    embedded pair."""
    from lmaload.endpoints import is_local, parse_endpoint

    if lma is None:
        for option, value in (("--standby", standby), ("--fail-cmd", fail_cmd)):
            if value is not None:
                raise click.UsageError(f"{option} needs --lma (the embedded pair fails itself)")
        return None, None
    if mode == "virtual" and standby is not None:
        raise click.UsageError("a virtual switch has one shared LMAA: give --lma alone")
    if mode == "hard" and fail_cmd is not None and standby is None:
        raise click.UsageError("--fail-cmd in hard mode needs --standby to fail over to")
    ends = []
    for option, text in (("--lma", lma), ("--standby", standby)):
        if text is None:
            ends.append(None)
            continue
        try:
            end = parse_endpoint(text)
        except ValueError as exc:
            raise click.BadParameter(
                f"{text!r}: expected [INNER@]HOST[:PORT] ({exc})", param_hint=option
            ) from None
        if end.host.version != 4:
            raise click.BadParameter(
                f"{text!r}: the emulated MAGs speak UDP/5436 over IPv4", param_hint=option
            )
        if not is_local(end.host) and not allow_remote:
            raise click.UsageError(
                f"{end.host} is not a local address (loopback, link-local, fc00::/7); "
                "add --allow-remote to load it"
            )
        ends.append(end)
    return ends[0], ends[1]


def _shard(
    text: str | None, mns: int, mags: int, lma: str | None, start_at: float | None
) -> tuple[int, int]:
    """``--shard I/N`` checked: (index, count)."""
    if text is None:
        return 0, 1
    index, sep, count = text.partition("/")
    if not (sep and index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise click.BadParameter(f"{text!r}: expected I/N with 0 <= I < N", param_hint="--shard")
    shard = int(index), int(count)
    if shard[1] > min(mns, mags):
        raise click.UsageError(f"--shard: {shard[1]} shards need as many MNs and MAGs at least")
    if shard[1] > 1 and (lma is None or start_at is None):
        raise click.UsageError(
            "--shard with N > 1 needs --lma (every shard loads the same LMAs) and --start-at"
        )
    return shard


@main.command(name="run", cls=_OneLineErrors)
@click.option("--mns", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--mags", type=click.IntRange(1, 65_000), default=100, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=5000.0,
    show_default=True,
    help="Target registrations per second (open loop).",
)
@click.option(
    "--ramp",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to ramp from 0 to --rate.",
)
@click.option("--mode", type=click.Choice(["hard", "virtual"]), default="hard", show_default=True)
@click.option(
    "--sync", type=click.Choice(["async", "before-ack"]), default="before-ack", show_default=True
)
@click.option(
    "--heartbeat-interval",
    type=click.FloatRange(min=0.01),
    default=0.2,
    show_default=True,
    help="Seconds between the MAGs' heartbeats to each LMA.",
)
@click.option("--missing-heartbeats", type=click.IntRange(0), default=3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--results",
    "results_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="results.json",
    show_default=True,
)
@click.option(
    "--allow-lag", is_flag=True, help="Exit 0 even when the generator fell behind schedule."
)
@click.option(
    "--lag-tolerance",
    type=click.FloatRange(min=0, min_open=True),
    default=0.02,
    show_default=True,
    help="Seconds after its intended time past which a registration counts as behind schedule.",
)
@click.option(
    "--lma",
    metavar="[INNER@]HOST[:PORT]",
    help="Your active LMA (virtual mode: the shared LMAA) over UDP/5436, instead of the "
    "embedded pair. IPv4 HOST.",
)
@click.option("--standby", metavar="[INNER@]HOST[:PORT]", help="Your standby LMA (hard mode).")
@click.option(
    "--fail-cmd",
    metavar="CMD",
    help="Shell command that fails your active LMA; run at the failure instant. Without it a "
    "run against --lma ends after the registrations.",
)
@click.option(
    "--sync-wait",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="With --lma: seconds between the last registration and the failure, for state sync.",
)
@click.option(
    "--allow-remote", is_flag=True, help="Allow --lma/--standby addresses that are not local."
)
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
    type=click.FloatRange(min=0),
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
    "--metrics-port",
    type=click.IntRange(1, 0xFFFF),
    help="Serve the generator's Prometheus metrics on /metrics here while the run goes on.",
)
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
    type=click.FloatRange(4, 0xFFFF * 4),
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
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to hold the registered population (refreshing per --lifetime) before the "
    "active is failed: a steady-state soak.",
)
@click.option(
    "--observe",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to keep the MAGs running after the failover (refreshes, heartbeats).",
)
@click.option(
    "--transport",
    type=click.Choice(["udp", "raw"]),
    help="udp: UDP/5436 with the RFC 5844 inner IPv6 header (the default, on loopback); raw: "
    "the Mobility Header over IPv6, which runs in the namespace lab (implies --lab).",
)
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
def run_command(
    mns: int,
    mags: int,
    rate: float,
    ramp: float,
    mode: str,
    sync: str,
    heartbeat_interval: float,
    missing_heartbeats: int,
    seed: int,
    results_path: Path,
    allow_lag: bool,
    lag_tolerance: float,
    lma: str | None,
    standby: str | None,
    fail_cmd: str | None,
    sync_wait: float,
    allow_remote: bool,
    shard: str | None,
    start_at: float | None,
    fail_at: float | None,
    pcap: Path | None,
    metrics_port: int | None,
    metrics_host: str,
    lma_metrics_port: int | None,
    pushgateway: str | None,
    lifetime: float,
    fault_text: str,
    duration: float,
    observe: float,
    transport: str | None,
    lab: bool,
    lab_prefix: str,
) -> None:
    """Register a population with an LMA pair — the embedded one on loopback or in a namespace
    lab (--lab), or yours with --lma/--standby — fail the active, and measure the failover.

    Prints a summary table and writes the results JSON. Exits 0 on success, 1 when the
    generator fell behind schedule (unless --allow-lag), when mobile nodes were given up or left
    unanswered, when no MAG detected the failure, when sessions were lost with before-ack sync,
    when an LMA, the lab or /metrics failed to start, when an LMA did not answer, or when
    --fail-cmd failed; 2 on bad options. A push to the Pushgateway that fails is
    a warning.
    """
    from lmaload.fault import parse_fault
    from lmaload.lab.topology import check_prefix
    from lmaload.measure.results import table
    from lmaload.run import RunConfig, RunError, run

    try:
        fault = parse_fault(fault_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    try:
        check_prefix(lab_prefix)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--lab-prefix") from None
    if transport == "udp" and lab:
        raise click.UsageError("--lab speaks the raw Mobility Header: not with --transport udp")
    lab_option = "--lab" if lab else "--transport raw"
    lab = lab or transport == "raw"
    if fault.needs_lab and not lab:
        raise click.UsageError(f"--fault {fault.kind} needs --lab")
    if lab and lma is not None:
        raise click.UsageError(f"{lab_option} runs the embedded pair: not with --lma")
    if lab and mode == "virtual":
        raise click.UsageError(
            f"{lab_option} runs hard mode only (a virtual LMAA cannot move between namespaces yet)"
        )
    if lab and pcap is not None:
        raise click.UsageError(
            "--pcap samples UDP/5436: in the lab, capture its links (see lmaload lab status)"
        )
    targets = _run_targets(lma, standby, fail_cmd, mode, allow_remote)
    shard_of = _shard(shard, mns, mags, lma, start_at)
    if fail_at is not None and duration:
        raise click.UsageError("--duration and --fail-at both time the failure: give one")
    if lma is not None and lma_metrics_port is not None:
        raise click.UsageError("--lma-metrics-port is for the embedded pair: not with --lma")
    if lab and (shard_of[1] > 1 or lma_metrics_port is not None):
        option = "--shard" if shard_of[1] > 1 else "--lma-metrics-port"
        raise click.UsageError(
            f"{option} is not for the lab (one pair, /metrics in its namespaces)"
        )
    config = RunConfig(
        mns=mns,
        mags=mags,
        rate=rate,
        ramp=ramp,
        mode=mode,  # type: ignore[arg-type]
        sync=sync,  # type: ignore[arg-type]
        heartbeat_interval=heartbeat_interval,
        missing_heartbeats=missing_heartbeats,
        seed=seed,
        results=results_path,
        allow_lag=allow_lag,
        lag_tolerance=lag_tolerance,
        lma=targets[0],
        standby=targets[1],
        fail_cmd=fail_cmd,
        sync_wait=sync_wait,
        pcap=pcap,
        shard=shard_of,
        start_at=start_at,
        fail_at=fail_at,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        lma_metrics_port=lma_metrics_port,
        pushgateway=pushgateway,
        lifetime=lifetime,
        fault=fault,
        duration=duration,
        observe=observe,
        lab=lab,
        lab_prefix=lab_prefix,
    )
    try:
        results, status, reasons = run(config, warn=lambda m: _fail(f"run: warning: {m}"))
    except RunError as exc:
        _fail(f"run: {exc}")
        sys.exit(EXIT_INVALID_INPUT)
    click.echo(table(results))
    for reason in reasons:
        _fail(f"run: {reason}")
    sys.exit(status)


@main.command(name="capacity", cls=_OneLineErrors)
@click.option("--mags", type=click.IntRange(1, 65_000), default=100, show_default=True)
@click.option("--mode", type=click.Choice(["hard", "virtual"]), default="hard", show_default=True)
@click.option(
    "--sync", type=click.Choice(["async", "before-ack"]), default="before-ack", show_default=True
)
@click.option(
    "--heartbeat-interval",
    type=click.FloatRange(min=0.01),
    default=0.2,
    show_default=True,
    help="Seconds between the MAGs' heartbeats to each LMA.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--trial-duration",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds of registrations in each trial.",
)
@click.option(
    "--confirm-duration",
    type=click.FloatRange(min=0, min_open=True),
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
    type=click.FloatRange(min=0, min_open=True),
    default=0.05,
    show_default=True,
    help="Seconds: a trial passes only with its registration latency p99 within this.",
)
@click.option(
    "--lma",
    metavar="[INNER@]HOST[:PORT]",
    help="Your active LMA over UDP/5436, instead of the embedded pair. IPv4 HOST.",
)
@click.option("--standby", metavar="[INNER@]HOST[:PORT]", help="Your standby LMA (hard mode).")
@click.option(
    "--allow-remote", is_flag=True, help="Allow --lma/--standby addresses that are not local."
)
@click.option(
    "--results",
    "results_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="capacity.json",
    show_default=True,
)
def capacity_command(
    mags: int,
    mode: str,
    sync: str,
    heartbeat_interval: float,
    seed: int,
    trial_duration: float,
    confirm_duration: float,
    start_rate: float,
    max_rate: float,
    resolution: float,
    loss_bound: float,
    latency_bound: float,
    lma: str | None,
    standby: str | None,
    allow_remote: bool,
    results_path: Path,
) -> None:
    """Find the highest registration rate the target sustains (RFC 2544 / MLRsearch style).

    Trials of fixed duration over fresh mobile nodes: an exponential ramp from --start-rate until
    a trial fails, bisection to --resolution, then a longer confirmation trial. Reports the NDR
    (no mobile node unregistered) and the PDR (at most --loss-bound unregistered), each with the
    latency p99 within --latency-bound and the generator on schedule, and every trial. Exits 1
    when no rate passed or the generator, not the target, was the limit; 2 on bad options.
    """
    from lmaload.capacity import CapacityConfig, CapacityError, capacity, table

    targets = _run_targets(lma, standby, None, mode, allow_remote)
    if start_rate > max_rate:
        raise click.UsageError("--start-rate is above --max-rate")
    config = CapacityConfig(
        mags=mags,
        mode=mode,  # type: ignore[arg-type]
        sync=sync,  # type: ignore[arg-type]
        heartbeat_interval=heartbeat_interval,
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
        results=results_path,
    )
    try:
        results, status, reasons = capacity(config, lambda line: click.echo(line, err=True))
    except CapacityError as exc:
        _fail(f"capacity: {exc}")
        sys.exit(EXIT_INVALID_INPUT)
    click.echo(table(results))
    for reason in reasons:
        _fail(f"capacity: {reason}")
    sys.exit(status)


@main.command(name="merge", cls=_OneLineErrors)
@click.argument(
    "documents", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--results",
    "results_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="results.json",
    show_default=True,
)
def merge_command(documents: tuple[Path, ...], results_path: Path) -> None:
    """Combine the results of the shards of one run (lmaload run --shard I/N) exactly.

    Writes the whole run's results document, prints its summary table, and exits as lmaload
    run would have: 1 when the generators fell behind or sessions were lost with before-ack
    sync, or when the documents are not the shards of one run.
    """
    from lmaload.measure.merge import MergeError, merge
    from lmaload.measure.results import table
    from lmaload.run import exit_status

    loaded = []
    for path in documents:
        try:
            loaded.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            _fail(f"merge: {path}: {getattr(exc, 'strerror', None) or exc}")
            sys.exit(EXIT_INVALID_INPUT)
    try:
        merged = merge(loaded)
    except (MergeError, KeyError, TypeError) as exc:
        _fail(f"merge: {exc if isinstance(exc, MergeError) else f'not a results document: {exc}'}")
        sys.exit(EXIT_INVALID_INPUT)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(merged, indent=2) + "\n")
    click.echo(table(merged))
    status, reasons = exit_status(merged)
    for reason in reasons:
        _fail(f"merge: {reason}")
    sys.exit(status)


@main.group(name="lab")
def lab_group() -> None:
    """The namespace lab (root): a MAG host, LMA1 and LMA2 joined by veth links."""


_prefix_option = click.option(
    "--prefix",
    default="lmaload-lab-",
    show_default=True,
    help="Name prefix of the lab's network namespaces (PREFIXmag, PREFIXlma1, PREFIXlma2).",
)


def _lab(prefix: str, action: str) -> Any:
    """The Lab of ``prefix`` (exit 2 on a bad one)."""
    from lmaload.lab.topology import Lab

    try:
        return Lab(prefix)
    except ValueError as exc:
        _fail(f"lab {action}: --prefix: {exc}")
        sys.exit(EXIT_USAGE)


def _lab_action(action: str, prefix: str) -> None:
    from lmaload.lab import manage
    from lmaload.lab.netns import LabError

    lab = _lab(prefix, action)
    try:
        if action == "up":
            manage.up(lab)
            click.echo(f"lab {prefix} up: {', '.join(lab.namespaces)}")
        elif action == "down":
            gone = manage.down(lab)
            click.echo(f"lab {prefix} down: {', '.join(gone) or 'nothing was there'}")
        else:
            click.echo(manage.status(lab))
    except LabError as exc:
        _fail(f"lab {action}: {exc}")
        sys.exit(EXIT_INVALID_INPUT)


@lab_group.command(name="up", cls=_OneLineErrors)
@_prefix_option
def lab_up(prefix: str) -> None:
    """Create the lab's namespaces, veth links, addresses, routes and the MAG host's AnyIP
    route; exit 1 when it is (partly) there already."""
    _lab_action("up", prefix)


@lab_group.command(name="down", cls=_OneLineErrors)
@_prefix_option
def lab_down(prefix: str) -> None:
    """Remove what ``lab up`` created (also after a crash), killing what runs inside."""
    _lab_action("down", prefix)


@lab_group.command(name="status", cls=_OneLineErrors)
@_prefix_option
def lab_status(prefix: str) -> None:
    """The lab's namespaces, interfaces and addresses, processes and fault rules."""
    _lab_action("status", prefix)


@main.command(name="sync", cls=_OneLineErrors)
@click.option(
    "--standby",
    metavar="[INNER_IPV6@]HOST[:PORT]",
    help="The standby LMA under test (its individual IPv6 address and UDP/5436 address, as "
    "lmaload lma --peer). Default: an embedded reference standby on loopback.",
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
    type=_IPv6Param(),
    help="lmaload's individual IPv6 address (inner header). Default: --listen's host, "
    "IPv4-mapped when it is IPv4.",
)
@click.option("--sessions", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--mags", type=click.IntRange(1, 65_000), default=100, show_default=True)
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
    type=click.FloatRange(min=0, min_open=True),
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
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--results",
    "results_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="results.json",
    show_default=True,
)
@click.option(
    "--metrics-port", type=click.IntRange(0, 0xFFFF), help="Serve /metrics on 127.0.0.1 here."
)
@click.option(
    "--allow-lag", is_flag=True, help="Exit 0 even when the generator fell behind schedule."
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Accept non-local addresses (default: loopback, link-local, fc00::/7 only).",
)
def sync_command(
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

    from lmaload.endpoints import is_local, parse_endpoint, parse_host_port
    from lmaload.sync.job import SyncError, SyncJobConfig, run
    from lmaload.sync.report import table

    if rate is not None and window is not None:
        raise click.UsageError("give --rate or --window, not both")
    if ack and rate is None:
        raise click.UsageError("--ack goes with --rate (a --window always asks for SS-ACKs)")
    try:
        target = parse_endpoint(standby) if standby is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--standby") from None
    try:
        bind = parse_host_port(listen) if listen is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    outer = [
        *([target.host] if target is not None else []),
        *([ip_address(bind[0])] if bind is not None else []),
    ]
    remote = [a for a in outer if not (a.is_unspecified or is_local(a))]
    if remote and not allow_remote:
        raise click.UsageError(
            f"{remote[0]} is not a local address (loopback, link-local, fc00::/7); "
            "add --allow-remote to use it"
        )
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
        results, status, reasons = run(config)
    except SyncError as exc:
        _fail(f"sync: {exc}")
        sys.exit(EXIT_INVALID_INPUT)
    click.echo(table(results))
    for reason in reasons:
        _fail(f"sync: {reason}")
    sys.exit(status)
