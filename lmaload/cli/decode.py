"""``lmaload decode``: Mobility Header messages from hex or a capture."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import fields
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import click

from lmaload.cli.group import EXIT_INVALID_INPUT, IPv6Param, fail, main
from lmaload.wire import WireConfig, WireError, decode_datagram
from lmaload.wire.describe import describe_packet, format_text


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
@click.option("--src", type=IPv6Param(), help="IPv6 source, to verify a bare MH's checksum.")
@click.option("--dst", type=IPv6Param(), help="IPv6 destination, to verify a bare MH's checksum.")
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
            fail(f"invalid input: {exc}")
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
                fail(item)
            elif as_json:
                click.echo(json.dumps(item))
            else:
                click.echo(f"frame {item['frame']} ({item['transport']}): {format_text(item)}")
    except PcapError as exc:
        fail(f"{pcap_path}: {exc}")
        sys.exit(EXIT_INVALID_INPUT)
    if failures:
        sys.exit(EXIT_INVALID_INPUT)
