"""``lmaload lab up|down|status``: the namespace lab."""

from __future__ import annotations

import sys
from typing import Any

import click

from lmaload.cli.group import EXIT_INVALID_INPUT, EXIT_USAGE, fail, main


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
        fail(f"lab {action}: --prefix: {exc}")
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
        fail(f"lab {action}: {exc}")
        sys.exit(EXIT_INVALID_INPUT)


@lab_group.command(name="up")
@_prefix_option
def lab_up(prefix: str) -> None:
    """Create the lab's namespaces, veth links, addresses, routes and the MAG host's AnyIP
    route; exit 1 when it is (partly) there already."""
    _lab_action("up", prefix)


@lab_group.command(name="down")
@_prefix_option
def lab_down(prefix: str) -> None:
    """Remove what ``lab up`` created (also after a crash), killing what runs inside."""
    _lab_action("down", prefix)


@lab_group.command(name="status")
@_prefix_option
def lab_status(prefix: str) -> None:
    """The lab's namespaces, interfaces and addresses, processes and fault rules."""
    _lab_action("status", prefix)
