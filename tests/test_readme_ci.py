"""The README's "lmaload in CI" examples: the GitHub Actions workflow and the GitLab CI job are
YAML (taken from the README by their markers) that run a short ``lmaload run`` with thresholds,
keep the JUnit files, results and HTML report as artifacts and compare with a baseline; every
``lmaload`` command in them parses with this lmaload's options. The scenario file example loads
as ``lmaload run``'s defaults."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmaload.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def block(marker: str, language: str) -> str:
    """The fenced block right after ``<!-- MARKER -->``."""
    match = re.search(
        rf"^<!-- {re.escape(marker)} -->\n```{language}\n(.*?)^```$", README, re.M | re.S
    )
    assert match, marker
    return match.group(1)


def commands(script: str) -> list[list[str]]:
    """The ``lmaload`` command lines of a shell script (continuations joined; ``|| ...`` cut)."""
    lines = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line)
        if words[:1] == ["lmaload"]:
            lines.append(words[: words.index("||")] if "||" in words else words)
    return lines


def check_commands(scripts: list[str]) -> set[str]:
    """Each ``lmaload`` command parses (``report`` once it exists); the subcommands seen."""
    seen = set()
    for words in (w for s in scripts for w in commands(s)):
        name, args = words[1], words[2:]
        seen.add(name)
        if name in main.commands:
            command = main.commands[name]
            parent = main.make_context("lmaload", [name])
            command.make_context(name, args, parent=parent)
    return seen


def run_line(scripts: list[str]) -> list[str]:
    [run] = [w for s in scripts for w in commands(s) if w[1] == "run"]
    return run


def test_github_actions_workflow() -> None:
    workflow: dict[str, Any] = yaml.safe_load(block("ci: github-actions", "yaml"))
    [job] = workflow["jobs"].values()
    steps = job["steps"]
    scripts = [s["run"] for s in steps if "run" in s]
    assert check_commands(scripts) >= {"run", "report", "compare"}
    run = run_line(scripts)
    assert "--threshold" in run and "--junit" in run
    [upload] = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert set(upload["with"]["path"].split()) == {
        "results.json",
        "junit.xml",
        "compare.xml",
        "report.html",
    }
    assert "cancelled()" in upload["if"]  # kept when a threshold was crossed


def test_gitlab_ci_job() -> None:
    pipeline: dict[str, Any] = yaml.safe_load(block("ci: gitlab", "yaml"))
    [job] = pipeline.values()
    assert check_commands(job["script"]) >= {"run", "report", "compare"}
    run = run_line(job["script"])
    assert "--threshold" in run and "--junit" in run
    artifacts = job["artifacts"]
    assert artifacts["when"] == "always"
    assert set(artifacts["paths"]) == {"results.json", "junit.xml", "compare.xml", "report.html"}
    assert set(artifacts["reports"]["junit"]) == {"junit.xml", "compare.xml"}


@pytest.mark.parametrize("command", ["run", "k8s-job"])
def test_the_scenario_file_example_loads(tmp_path, command: str) -> None:
    path = tmp_path / "failover.toml"
    path.write_text(block("scenario", "toml"))
    parent = main.make_context("lmaload", [command])
    args = ["--lma", "127.0.0.31"] if command == "k8s-job" else []  # the [k8s-job] table: shards
    ctx = main.commands[command].make_context(command, [*args, "--config", str(path)], parent)
    assert ctx.params["heartbeat_interval"] == 0.1 and len(ctx.params["thresholds"]) == 2
