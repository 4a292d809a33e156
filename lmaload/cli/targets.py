"""The LMAs a load command aims at: the user's ``--lma``/``--standby`` over UDP/5436, checked,
or the embedded pair."""

from __future__ import annotations

from typing import Any

import click

from lmaload.cli.group import refuse_remote

lma_option = click.option(
    "--lma",
    metavar="[INNER@]HOST[:PORT]",
    help="Your active LMA (virtual mode: the shared LMAA) over UDP/5436, instead of the "
    "embedded pair. IPv4 HOST.",
)
standby_option = click.option(
    "--standby", metavar="[INNER@]HOST[:PORT]", help="Your standby LMA (hard mode)."
)


def run_targets(
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
    if mode == "restart" and standby is not None:
        raise click.UsageError("--mode restart has one LMA, restarted: give --lma alone")
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
        refuse_remote([] if is_local(end.host) else [end.host], allow_remote)
        ends.append(end)
    return ends[0], ends[1]
