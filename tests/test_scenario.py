"""Scenario files and the environment: ``--config FILE.toml`` on every command, ``LMALOAD_<OPTION>``
defaults, their precedence (command line > environment > file > built-in), durations with units,
``lmaload run --stages``, and the one-line exit 2 that names the option, the file, the line and
the key; a real short run from a scenario file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from lmaload.cli import main
from lmaload.cli.group import parse_duration
from lmaload.cli.run import run_command, run_config
from lmaload.measure.schedule import Schedule, Stage
from tests.vectors import vector_named


def context(args: list[str], command: click.Command = run_command) -> click.Context:
    """``command``'s context as ``lmaload NAME ARGS`` makes it, without invoking it."""
    parent = main.make_context("lmaload", [command.name or ""])
    return command.make_context(command.name, args, parent=parent)


def scenario(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_every_command_takes_a_scenario_file() -> None:
    def commands(command: click.Command, name: str):
        if isinstance(command, click.Group):
            for sub, child in command.commands.items():
                yield from commands(child, f"{name} {sub}")
        else:
            yield name, command

    missing = [
        name
        for name, command in commands(main, "lmaload")
        if not any(p.opts == ["--config"] for p in command.params)
    ]
    assert missing == []


def test_command_line_beats_environment_beats_file_beats_default(tmp_path, monkeypatch) -> None:
    path = scenario(
        tmp_path,
        'rate = 100\nheartbeat_interval = "250ms"\nmissing-heartbeats = 5\n'
        'threshold = ["sessions.lost==0", "takeover.p99<3s"]\nallow_lag = true\n',
    )
    params = context(["--config", str(path)]).params
    assert params["rate"] == 100 and params["heartbeat_interval"] == 0.25
    assert params["missing_heartbeats"] == 5 and params["allow_lag"] is True
    assert [t.expression for t in params["thresholds"]] == ["sessions.lost==0", "takeover.p99<3s"]
    assert params["seed"] == 0  # the built-in default

    monkeypatch.setenv("LMALOAD_RATE", "200")
    monkeypatch.setenv("LMALOAD_HEARTBEAT_INTERVAL", "1s")
    monkeypatch.setenv("LMALOAD_THRESHOLD", "sessions.lost==0 sessions.pending==0")
    params = context(["--config", str(path)]).params
    assert (params["rate"], params["heartbeat_interval"]) == (200, 1.0)
    assert [t.expression for t in params["thresholds"]] == [
        "sessions.lost==0",
        "sessions.pending==0",
    ]

    params = context(["--config", str(path), "--rate", "300", "--heartbeat-interval", "0.5"]).params
    assert (params["rate"], params["heartbeat_interval"]) == (300, 0.5)
    assert params["missing_heartbeats"] == 5


def test_config_file_from_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LMALOAD_CONFIG", str(scenario(tmp_path, "mags = 7\n")))
    assert context([]).params["mags"] == 7


def test_a_command_table_over_the_top_level_and_other_commands_tables_skipped(tmp_path) -> None:
    path = scenario(tmp_path, "mags = 5\nmns = 50\n[run]\nmags = 7\n[compare]\ntolerance = '25%'\n")
    params = context(["--config", str(path)]).params
    assert (params["mags"], params["mns"]) == (7, 50)


def test_decode_reads_its_flags_from_a_scenario_file(tmp_path) -> None:
    path = scenario(tmp_path, "json = true\n")
    code, out, err = cli("decode", "--config", str(path), vector_named("V1")["hex"])
    assert code == 0, err
    assert json.loads(out)["name"] == "Proxy Binding Update"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("2.5", 2.5), ("250ms", 0.25), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0),
     ("1m30s", 90.0), ("1.5s", 1.5), ("500us", 0.0005)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_durations_on_the_command_line() -> None:
    params = context(["--ramp", "1m", "--sync-wait", "250ms", "--observe", "2"]).params
    assert (params["ramp"], params["sync_wait"], params["observe"]) == (60.0, 0.25, 2.0)


def test_stages_and_the_mobile_nodes_they_schedule() -> None:
    ctx = context(["--stages", "10s:1000, 30s:5000,10s:0"])
    assert ctx.params["stages"] == (Stage(10, 1000), Stage(30, 5000), Stage(10, 0))
    config = run_config(ctx, ctx.params, (0, 1), None)
    assert config.mns == 5000 + 90_000 + 25_000 and config.rate == 5000
    assert Schedule(config.stages).total == config.mns
    ctx = context(["--stages", "0s:100", "--mns", "300"])  # a step, then held
    config = run_config(ctx, ctx.params, (0, 1), None)
    assert config.mns == 300 and config.schedule.offsets(300)[-1] == pytest.approx(2.99)


def one_line_exit_2(*args: str, env: dict[str, str] | None = None) -> str:
    code, out, err = cli(*args, env=env)
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rate", "fast"], "'--rate': 'fast' is not a valid float range"),
        (["--ramp", "5 minutes"], "'--ramp': '5 minutes' is not a duration"),
        (["--lifetime", "2s"], "'--lifetime': 2.0 is not in the range 4<=x<=262140"),
        (["--stages", "10s:1000,30s"], "'--stages': '30s': expected DURATION:RATE"),
        (["--stages", "1s:1000", "--rate", "10"], "--stages gives the rate profile: not with --ra"),
        (["--stages", "10s:1000", "--ramp", "5s"], "--stages and --ramp both shape the rate"),
        (["--stages", "10s:0"], "--stages: no registration is due"),
        (["--stages", "2s:100,0s:0", "--mns", "500"], "--mns 500: the --stages end at rate 0 af"),
    ],
)  # fmt: skip
def test_bad_values_on_the_command_line(args: list[str], expected: str) -> None:
    assert expected in one_line_exit_2("run", *args)


def test_a_bad_environment_value_names_the_variable() -> None:
    err = one_line_exit_2("run", env={"LMALOAD_HEARTBEAT_INTERVAL": "fast"})
    assert "'--heartbeat-interval' (LMALOAD_HEARTBEAT_INTERVAL): 'fast' is not a duration" in err
    err = one_line_exit_2("lma", "--hello-interval", "1.5", env={"LMALOAD_HELLO_INTERVAL": "2"})
    assert "'--hello-interval': 1.5 s is not a whole number of seconds" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mns = 10\n\nrate = 'fast'\n", "'--rate' ({path}, line 3: rate): 'fast' is not a valid"),
        ("rates = 3\n", "{path}, line 1: unknown key 'rates'; lmaload run takes allow-lag,"),
        ("mags = [1, 2]\n", "'--mags' ({path}, line 1: mags): takes one value, not a list"),
        ("seed = 1979-05-27\n", "'--seed' ({path}, line 1: seed): datetime.date(1979, 5, 27):"),
        ("threshold = 'nope<1'\n", "'--threshold' ({path}, line 1: threshold): 'nope<1': unknown"),
        ("[lmaload]\nrate = 1\n", "{path}, line 1: [lmaload] is not a command's table"),
        ("[run]\nmags = 0\n", "'--mags' ({path}, line 2: mags): 0 is not in the range 1<=x<=6"),
        ("rate = \n", "'--config': {path}: Invalid value (at line 1, column 8)"),
    ],
)
def test_bad_scenario_files_name_the_option_file_line_and_key(
    tmp_path, text: str, expected: str
) -> None:
    path = scenario(tmp_path, text)
    assert expected.format(path=path) in one_line_exit_2("run", "--config", str(path))


def test_a_missing_scenario_file() -> None:
    err = one_line_exit_2("merge", "--config", "/nonexistent/scenario.toml", "a.json")
    assert "'--config': /nonexistent/scenario.toml: No such file or directory" in err


def test_stages_in_the_file_and_rate_in_the_environment_are_named(tmp_path) -> None:
    path = scenario(tmp_path, "stages = '10s:100'\n")
    err = one_line_exit_2("run", "--config", str(path), env={"LMALOAD_RATE": "50"})
    assert "--stages gives the rate profile: not with LMALOAD_RATE" in err
    path = scenario(tmp_path, "stages = '10s:100'\nrate = 50\n")
    assert f"not with rate in {path}" in one_line_exit_2("run", "--config", str(path))


def test_a_run_from_a_scenario_file(tmp_path) -> None:
    """A real short run whose options all come from the file: durations with units, stages that
    end at rate 0 (the MNs they schedule), a threshold, and a flag."""
    results = tmp_path / "results.json"
    path = scenario(
        tmp_path,
        f"mags = 4\nstages = '1s:400,1s:400,1s:0'\nheartbeat-interval = '100ms'\n"
        f"sync_wait = '500ms'\nallow-lag = true\nthreshold = ['sessions.lost==0']\n"
        f"results = '{results}'\n",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "lmaload", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    document: dict[str, Any] = json.loads(results.read_text())
    config = document["config"]
    assert (config["mns"], config["rate"], config["heartbeat_interval"]) == (800, 400.0, 0.1)
    assert config["stages"] == [
        {"duration": 1.0, "rate": 400.0},
        {"duration": 1.0, "rate": 400.0},
        {"duration": 1.0, "rate": 0.0},
    ]
    assert document["registration"]["registered"] == 800
    assert [o["ok"] for o in document["thresholds"]] == [True]
