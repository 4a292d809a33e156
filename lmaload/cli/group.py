"""The ``lmaload`` group, its exit codes, and what every command shares: one-line usage errors
(exit 2), the IPv6 parameter type, the options several commands take, and the local-target
guard."""

from __future__ import annotations

import sys
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import click

from lmaload import __version__

EXIT_INVALID_INPUT = 1
EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lmaload")
def main() -> None:
    """Load generator and failover tester for Proxy Mobile IPv6 LMA pairs."""


def fail(message: str) -> None:
    click.echo(f"lmaload: {message}", err=True)


def refuse_remote(addresses: list[Any], allow_remote: bool) -> None:
    """UsageError naming the first address that is not local, unless ``allow_remote``."""
    if addresses and not allow_remote:
        raise click.UsageError(
            f"{addresses[0]} is not a local address (loopback, link-local, fc00::/7); "
            "add --allow-remote to use it"
        )


allow_remote_option = click.option(
    "--allow-remote",
    is_flag=True,
    help="Accept non-local addresses (default: loopback, link-local, fc00::/7 only).",
)
mags_option = click.option(
    "--mags",
    type=click.IntRange(1, 65_000),
    default=100,
    show_default=True,
    help="Emulated MAGs, each with its own address; the mobile nodes are spread over them.",
)
mode_option = click.option(
    "--mode",
    type=click.Choice(["hard", "virtual"]),
    default="hard",
    show_default=True,
    help="hard: the MAGs fail over to the standby's own address (SwitchOver); virtual: the "
    "standby takes the shared LMAA.",
)
sync_option = click.option(
    "--sync",
    type=click.Choice(["async", "before-ack"]),
    default="before-ack",
    show_default=True,
    help="How the LMA pair synchronises: before-ack withholds each PBA until the standby has "
    "the change.",
)
seed_option = click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the population: the same seed gives the same identities and access types.",
)
heartbeat_interval_option = click.option(
    "--heartbeat-interval",
    type=click.FloatRange(min=0.01),
    default=0.2,
    show_default=True,
    help="Seconds between the MAGs' heartbeats to each LMA.",
)
allow_lag_option = click.option(
    "--allow-lag", is_flag=True, help="Exit 0 even when the generator fell behind schedule."
)
metrics_port_option = click.option(
    "--metrics-port",
    type=click.IntRange(1, 0xFFFF),
    help="Serve Prometheus metrics on /metrics at this port while it runs.",
)


junit_option = click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a JUnit XML report here: a test case per check and per threshold.",
)


def threshold_option(kind: str) -> Any:
    """``--threshold EXPR`` (repeatable), parsed against the figures of ``kind`` documents."""

    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[Any]:
        from lmaload.thresholds import ThresholdError, parse

        try:
            return [parse(v, kind) for v in values]
        except ThresholdError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None

    from lmaload.figures import TABLES

    return click.option(
        "--threshold",
        "thresholds",
        multiple=True,
        metavar="EXPR",
        callback=parse,
        help="FIGURE OP LIMIT (repeatable), e.g. takeover.p99<3s, registration.latency.p99<=50ms, "
        "sessions.lost==0, registration.failed_ratio<0.1%; any crossed makes the exit status 99. "
        f"Figures: {', '.join(f.name for f in TABLES[kind])}.",
    )


def results_option(default: str) -> Any:
    return click.option(
        "--results",
        "results_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=default,
        show_default=True,
        help="Where the results JSON goes.",
    )


class IPv6Param(click.ParamType):
    name = "IPV6"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, IPv6Address):
            return value
        try:
            return IPv6Address(value)
        except ValueError:
            self.fail(f"{value!r} is not an IPv6 address", param, ctx)


class OneLineErrors(click.Command):
    """A command whose usage errors are one line on stderr and exit status 2."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            fail(f"{info_name}: {exc.format_message()}")
            sys.exit(EXIT_USAGE)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            fail(f"{ctx.info_name}: {exc.format_message()}")
            sys.exit(EXIT_USAGE)
