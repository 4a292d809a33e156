"""The LMAs a load command aims at: the user's ``--lma``/``--standby`` over UDP/5436 or, with
``--transport raw``, over the raw Mobility Header from ``--mag-prefix``, checked; or the
embedded pair."""

from __future__ import annotations

from typing import Any

import click

from lmaload.cli.group import refuse_remote

lma_option = click.option(
    "--lma",
    metavar="[INNER@]HOST[:PORT]|IPV6",
    help="Your active LMA (virtual mode: the shared LMAA) instead of the embedded pair: over "
    "UDP/5436 at an IPv4 HOST, or with --transport raw over the raw Mobility Header at its IPv6 "
    "address (root).",
)
standby_option = click.option(
    "--standby",
    metavar="[INNER@]HOST[:PORT]|IPV6",
    help="Your standby LMA (hard mode), in --lma's form.",
)
mag_prefix_option = click.option(
    "--mag-prefix",
    metavar="PREFIX",
    help="With --transport raw --lma: the IPv6 prefix the MAGs' addresses come from (the MAG "
    "i has its (i+1)-th address; lmaload population lists them). Made local for the run by an "
    "AnyIP route on lo unless it is already. Default: fd00:6d61:6700::/64.",
)


def mag_prefix(text: str | None, lma: Any, mags: int, allow_remote: bool) -> str | None:
    """``--mag-prefix``, checked: with a raw ``lma`` only, room for ``mags`` addresses, and of
    non-local addresses only with --allow-remote (lmaload makes it this host's)."""
    from ipaddress import IPv6Network

    from lmaload.endpoints import is_local

    if text is None:
        return None
    if lma is None or not lma.raw:
        raise click.UsageError(
            "--mag-prefix (the MAGs' raw source addresses) needs --transport raw --lma"
        )
    try:
        network = IPv6Network(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint="--mag-prefix") from None
    if mags >= network.num_addresses:
        raise click.BadParameter(
            f"{network} holds fewer than {mags + 1} addresses (--mags {mags})",
            param_hint="--mag-prefix",
        )
    ends = (network.network_address, network.broadcast_address)
    refuse_remote([network] if not all(is_local(a) for a in ends) else [], allow_remote)
    return str(network)


def run_targets(
    lma: str | None,
    standby: str | None,
    fail_cmd: str | None,
    mode: str,
    allow_remote: bool,
    transport: str | None = None,
) -> tuple[Any, Any]:
    """The user's (active, standby) endpoints of ``lmaload run``, checked, over ``transport``
    (default udp); (None, None) for the embedded pair."""
    from lmaload.endpoints import is_local, parse_endpoint, parse_raw_endpoint

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
            end = parse_raw_endpoint(text) if transport == "raw" else parse_endpoint(text)
        except ValueError as exc:
            raw = transport == "raw"
            form = "an IPv6 address (--transport raw)" if raw else "[INNER@]HOST[:PORT]"
            raise click.BadParameter(
                f"{text!r}: expected {form} ({exc})", param_hint=option
            ) from None
        if end.host.version != 4 and not end.raw:
            raise click.BadParameter(
                f"{text!r}: the emulated MAGs speak UDP/5436 over IPv4 (IPv6: --transport raw)",
                param_hint=option,
            )
        refuse_remote([] if is_local(end.host) else [end.host], allow_remote)
        ends.append(end)
    return ends[0], ends[1]
