"""The ``lmaload`` group, its exit codes, and what every command shares: one-line usage errors
(exit 2), ``--config`` and ``LMALOAD_<OPTION>`` defaults (``lmaload.cli.config``), the IPv6 and
duration parameter types, the options several commands take, and the local-target guard."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import click

from lmaload import __version__
from lmaload.cli import config

EXIT_INVALID_INPUT = 1
EXIT_USAGE = 2


def fail(message: str) -> None:
    click.echo(f"lmaload: {message}", err=True)


def load_documents(paths: Iterable[Path], command: str) -> list[dict[str, Any]]:
    """The JSON documents at ``paths``; one line naming the file and exit 1 for one that
    cannot be read."""
    documents = []
    for path in paths:
        try:
            documents.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            fail(f"{command}: {path}: {getattr(exc, 'strerror', None) or exc}")
            sys.exit(EXIT_INVALID_INPUT)
    return documents


def refuse_remote(addresses: list[Any], allow_remote: bool) -> None:
    """UsageError naming the first address that is not local, unless ``allow_remote``."""
    if addresses and not allow_remote:
        raise click.UsageError(
            f"{addresses[0]} is not a local address (loopback, link-local, fc00::/7); "
            "add --allow-remote to use it"
        )


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds from ``30``, ``2.5``, ``250ms``, ``30s``, ``5m``, ``1h`` or ``1m30s``
    (ValueError otherwise)."""
    from lmaload.thresholds import TIME_UNITS

    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration (seconds, or e.g. 250ms, 30s, 5m, 1m30s)")
    return sum(float(number) * TIME_UNITS[unit] for number, unit in parts)


class Duration(click.ParamType):
    """Seconds, as a plain number or with a unit (``250ms``, ``30s``, ``5m``, ``1h``,
    ``1m30s``), within ``FloatRange``'s bounds; ``whole`` for options that take whole
    seconds."""

    name = "duration"

    def __init__(self, whole: bool = False, **bounds: Any) -> None:
        self.whole = whole
        self.range = click.FloatRange(**bounds)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            try:
                value = parse_duration(value)
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        seconds = self.range.convert(value, param, ctx)
        if self.whole:
            if not float(seconds).is_integer():
                self.fail(f"{seconds:g} s is not a whole number of seconds", param, ctx)
            return int(seconds)
        return seconds

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "DURATION"


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
    type=Duration(min=0.01),
    default=0.2,
    show_default=True,
    help="Seconds between the MAGs' heartbeats to each LMA.",
)
pbu_order_option = click.option(
    "--pbu-order",
    type=click.Choice(["timestamp", "sequence"]),
    default="timestamp",
    show_default=True,
    help="How the LMA orders a mobile node's PBUs: timestamp (RFC 5213's preference: a "
    "Timestamp option in every PBU) or sequence (no Timestamp option: sequence numbers only, "
    "for LMAs such as OPMIP; a PBA 135 makes the MAG continue from the number it carries).",
)
heartbeats_option = click.option(
    "--heartbeats",
    type=click.Choice(["on", "off", "auto"]),
    default="on",
    show_default=True,
    help="RFC 5847 heartbeats to the LMAs. off: none (an LMA without RFC 5847 may take them for "
    "an error; OPMIP stops answering): a MAG declares its LMA failed after --failure-after "
    "unanswered PBUs or on an HA Switch, and the start-up check sends a PBU; auto: on until an "
    "LMA answers one with Binding Error status 2, then off.",
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
    """A command of lmaload: usage errors are one line on stderr and exit status 2; every option
    takes its default from ``LMALOAD_<OPTION>`` or from ``--config FILE.toml`` (added here)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for option in config.scenario_options(self).values():
            if option.envvar is None:
                option.envvar = config.envvar(option)
        self.params.append(config.config_option())

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> click.Context:
        given = list(args)  # the parser consumes ``args``
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            _name_the_variable(exc, given)
            fail(f"{info_name}: {exc.format_message()}")
            sys.exit(EXIT_USAGE)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            fail(f"{ctx.info_name}: {exc.format_message()}")
            sys.exit(EXIT_USAGE)


def _name_the_variable(exc: click.UsageError, args: list[str]) -> None:
    """A bad value from the environment is named by its variable as well as its option."""
    if not isinstance(exc, click.BadParameter) or exc.param_hint is not None:
        return
    option = exc.param
    if (
        isinstance(option, click.Option)
        and isinstance(option.envvar, str)
        and option.envvar in os.environ
        and not any(a.split("=", 1)[0] in option.opts for a in args)
    ):
        exc.param_hint = f"'--{config.long_name(option)}' ({option.envvar})"


class Lmaload(click.Group):
    """The group: its commands and subgroups are ``OneLineErrors`` commands and groups."""

    command_class = OneLineErrors
    group_class = type


@click.group(cls=Lmaload, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lmaload")
def main() -> None:
    """Load generator and failover tester for Proxy Mobile IPv6 LMA pairs.

    Every command takes --config FILE.toml (a scenario file: the long option names as keys) and
    LMALOAD_<OPTION> environment variables (LMALOAD_RATE, LMALOAD_HEARTBEAT_INTERVAL) as option
    defaults; the command line wins over the environment, which wins over the file. Options in
    seconds also take a unit: 250ms, 30s, 5m, 1h, 1m30s.
    """
