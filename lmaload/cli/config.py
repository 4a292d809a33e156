"""Scenario files and the environment: ``--config FILE.toml`` and ``LMALOAD_<OPTION>`` defaults
for the options of every command.

A scenario file's keys are the command's long option names without the dashes; ``_`` and ``-``
are the same (``heartbeat-interval`` or ``heartbeat_interval``). A flag takes ``true`` or
``false``, a repeatable option a list (or one value), a duration a number of seconds or a string
with a unit (``"30s"``). A table named after a command (``[run]``, ``[k8s-job]``) holds keys for
that command alone, over the top-level ones; other commands skip it, so one file can serve
``run``, ``k8s-job`` and ``merge``. Relative paths are taken from the working directory.

Precedence, highest first: the command line, the environment (``LMALOAD_RATE``,
``LMALOAD_HEARTBEAT_INTERVAL``: the long option name in capitals, ``-`` as ``_``; repeatable
options split on whitespace), the scenario file, the built-in default — click's own order for
``envvar`` and ``default_map``, so a CI job can override a checked-in scenario with a variable.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

ENV_PREFIX = "LMALOAD_"
CONFIG_META = "lmaload.config"  # ctx.meta: the scenario file read


def long_name(option: click.Option) -> str:
    """The option's first long name without its dashes (``heartbeat-interval``)."""
    return next((o for o in option.opts if o.startswith("--")), option.opts[0]).lstrip("-")


def envvar(option: click.Option) -> str:
    return ENV_PREFIX + long_name(option).upper().replace("-", "_")


def scenario_options(command: click.Command) -> dict[str, click.Option]:
    """The options a scenario file or the environment may set, by long name."""
    return {
        long_name(p): p for p in command.params if isinstance(p, click.Option) and p.expose_value
    }


def where(ctx: click.Context, name: str) -> str:
    """Where the value of parameter ``name`` came from, as the user would write it."""
    option = next(p for p in ctx.command.params if p.name == name)
    assert isinstance(option, click.Option)
    source = ctx.get_parameter_source(name)
    if source is ParameterSource.ENVIRONMENT:
        return envvar(option)
    if source is ParameterSource.DEFAULT_MAP:
        return f"{long_name(option)} in {ctx.meta[CONFIG_META]}"
    return f"--{long_name(option)}"


def _line(text: str, key: str) -> int | None:
    """The line of ``key =`` or ``[key]`` in the file (the first one), if it can be found."""
    pattern = re.compile(
        rf"^[ \t]*(\[[ \t]*)?[\"']?{re.escape(key)}[\"']?[ \t]*(=|\])", re.MULTILINE
    )
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _at(path: Path, text: str, key: str) -> str:
    line = _line(text, key)
    return f"{path}, line {line}" if line else str(path)


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise click.BadParameter(f"{path}: {exc.strerror}", param_hint="'--config'") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="'--config'") from None


def _commands(ctx: click.Context) -> set[str]:
    root = ctx.find_root().command
    return set(root.commands) if isinstance(root, click.Group) else set()


def _command_name(ctx: click.Context) -> str:
    """The name of the command under the group (``run``; ``lab`` for ``lab up``)."""
    while ctx.parent is not None and ctx.parent.parent is not None:
        ctx = ctx.parent
    return ctx.info_name or ctx.command.name or ""


def load(ctx: click.Context, path: Path) -> dict[str, Any]:
    """The ``default_map`` of ``ctx``'s command from the scenario file at ``path``: every value
    checked as the option would check it from the command line, errors naming the option, the
    file, the line and the key."""
    text, data = _read(path)
    name = _command_name(ctx)
    commands = _commands(ctx)
    options = scenario_options(ctx.command)
    merged: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in commands:
                raise click.UsageError(
                    f"{_at(path, text, key)}: [{key}] is not a command's table; "
                    f"commands: {', '.join(sorted(commands))}"
                )
            continue
        merged.append((key, value))
    table = data.get(name)
    if isinstance(table, dict):
        merged.extend(table.items())

    defaults: dict[str, Any] = {}
    for key, value in merged:
        at = _at(path, text, key)
        option = options.get(key.replace("_", "-"))
        if option is None:
            raise click.UsageError(
                f"{at}: unknown key {key!r}; lmaload {name} takes {', '.join(sorted(options))}"
            )
        hint = f"'--{long_name(option)}' ({at}: {key})"
        if option.multiple and not isinstance(value, list):
            value = [value]
        if isinstance(value, list) and not option.multiple:
            raise click.BadParameter("takes one value, not a list", ctx, param_hint=hint)
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str | int | float | bool):
                raise click.BadParameter(
                    f"{item!r}: expected a string, number or boolean", ctx, param_hint=hint
                )
        try:
            option.process_value(ctx, value)
        except click.BadParameter as exc:
            raise click.BadParameter(exc.message, ctx, param_hint=hint) from None
        defaults[option.name] = value  # type: ignore[index]
    return defaults


def _config_callback(ctx: click.Context, param: click.Parameter, path: Path | None) -> Path | None:
    if path is not None:
        ctx.meta[CONFIG_META] = path
        ctx.default_map = {**(ctx.default_map or {}), **load(ctx, path)}
    return path


def config_option() -> click.Option:
    """``--config FILE.toml``: eager, so the file's values are defaults before any other option
    is read."""
    return click.Option(
        ["--config"],
        type=click.Path(dir_okay=False, path_type=Path),
        is_eager=True,
        expose_value=False,
        callback=_config_callback,
        envvar=f"{ENV_PREFIX}CONFIG",
        metavar="FILE.toml",
        help="Take option defaults from this TOML scenario file (keys: the long option names; "
        "the command line and LMALOAD_<OPTION> variables win).",
    )
