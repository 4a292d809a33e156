"""``lmaload k8s-job`` and collecting its results: the printed Indexed Job valid against the
Kubernetes schema (offline, ``kubernetes-validate``'s bundled schemas), run's options from the
command line, the environment and a scenario file carried into the pods' arguments, thresholds
kept for the merge; ``lmaload merge --from-logs`` over what real shards print equal to merging
their result files; the Dockerfile's inputs."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from lmaload.cli import main
from lmaload.shard_logs import RESULTS_MARKER

ROOT = Path(__file__).resolve().parent.parent
LMALOAD = (sys.executable, "-m", "lmaload")
TARGET = ("--lma", "127.0.0.31", "--standby", "127.0.0.32")


def k8s_job(*args: str, env: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """The header comment and the manifest ``lmaload k8s-job ARGS`` prints."""
    result = CliRunner().invoke(main, ["k8s-job", *args], env=env)
    assert result.exit_code == 0, result.stderr
    header = "".join(line for line in result.stdout.splitlines(True) if line.startswith("#"))
    return header, yaml.safe_load(result.stdout)


def value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    [only] = manifest["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("version", ["1.29", kubernetes_validate.latest_version()])
def test_the_job_is_valid_kubernetes(version: str) -> None:
    _, manifest = k8s_job(
        *("--shards", "4", "--image", "registry.example/lmaload:1", *TARGET, "--allow-remote"),
        *("--name", "failover-4", "--namespace", "load", "--mns", "40000", "--mags", "40"),
    )
    kubernetes_validate.validate(manifest, version, strict=True)
    assert manifest["kind"] == "Job" and manifest["metadata"]["namespace"] == "load"
    spec = manifest["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 4
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_every_pod_is_its_shard_from_one_start(tmp_path) -> None:
    before = time.time()
    header, manifest = k8s_job(
        *("--shards", "3", "--image", "lmaload:dev", *TARGET, "--start-margin", "90s"),
        *("--mns", "3000", "--mags", "30", "--stages", "10s:300,10s:0", "--allow-lag"),
        *("--fail-at", "1m", "--fail-cmd", "kubectl delete pod lma-active"),
    )
    args = container(manifest)["args"]
    assert args[:3] == ["run", "--shard", "$(JOB_COMPLETION_INDEX)/3"]
    start_at = int(value(args, "--start-at"))
    assert before + 90 <= start_at <= time.time() + 91
    assert "--print-results" in args
    assert "--allow-lag" in args and value(args, "--fail-cmd") == "kubectl delete pod lma-active"
    assert [value(args, f) for f in ("--mns", "--mags", "--fail-at")] == ["3000", "30", "60.0"]
    assert value(args, "--stages") == "10.0:300.0,10.0:0.0"
    env = {e["name"]: e for e in container(manifest)["env"]}
    field = env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert str(start_at) in header

    # The pods' arguments are a valid lmaload run command line, and pod 2 is shard 2/3.
    from lmaload.cli.run import run_command

    pod = [a.replace("$(JOB_COMPLETION_INDEX)", "2") for a in args[1:]]
    ctx = run_command.make_context("run", pod, parent=main.make_context("lmaload", ["run"]))
    assert ctx.params["shard"] == "2/3" and ctx.params["start_at"] == start_at


def test_options_from_the_environment_and_a_scenario_file_reach_the_pods(tmp_path) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(
        "mns = 5000\nrate = 500\nthreshold = ['sessions.lost==0', 'takeover.p99<3s']\n"
        "[k8s-job]\nshards = 5\nimage = 'lmaload:file'\n"
    )
    header, manifest = k8s_job(
        "--config", str(path), *TARGET, "--rate", "700", env={"LMALOAD_MAGS": "50"}
    )
    args = container(manifest)["args"]
    assert manifest["spec"]["completions"] == 5 and container(manifest)["image"] == "lmaload:file"
    assert [value(args, f) for f in ("--mns", "--mags", "--rate")] == ["5000", "50", "700.0"]
    # A shard's figures are a part of the run's: the thresholds judge the merge.
    assert "--threshold" not in args
    merge = shlex.split(header.splitlines()[-1].split("|", 1)[1])
    assert merge == [
        *("lmaload", "merge", "--from-logs", "-"),
        *("--threshold", "sessions.lost==0", "--threshold", "takeover.p99<3s"),
    ]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--shards", "2", "--image", "x"], "--shard with N > 1 needs --lma"),
        (["--shards", "2", "--image", "x", *TARGET, "--shard", "0/2"], "No such option '--shard'"),
        (["--shards", "2", *TARGET], "Missing option '--image'"),
        (["--shards", "2", "--image", "x", *TARGET, "--name", "Big"], "a Kubernetes name is"),
        (["--shards", "20", "--image", "x", *TARGET, "--mags", "10"], "20 shards need as many"),
    ],
)
def test_what_run_would_refuse_is_refused_before_printing(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(main, ["k8s-job", *args])
    assert (result.exit_code, result.stdout) == (2, ""), result.stderr
    assert expected in result.stderr and result.stderr.count("\n") == 1


def test_merging_the_pods_logs_equals_merging_their_files(user_pair, tmp_path) -> None:
    """Two real shards against "the user's" pair print their documents; their stdout and stderr,
    as ``kubectl logs -l job-name=... --prefix`` would give them one pod after the other, merge
    into the document their result files merge into."""
    active, standby = user_pair
    start = time.time() + 4
    common = (
        *("run", "--mns", "400", "--mags", "4", "--rate", "1000", "--allow-lag"),
        *("--lma", f"{active.host}:{active.port}", "--standby", f"{standby.host}:{standby.port}"),
        *("--sync-wait", "0", "--start-at", str(start), "--print-results"),
    )
    shards = [
        subprocess.Popen(
            [*LMALOAD, *common, "--shard", f"{i}/2", "--results", str(tmp_path / f"shard{i}.json")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    logs = []
    for i, shard in enumerate(shards):
        out, err = shard.communicate(timeout=120)
        assert shard.returncode == 0, err
        assert out.splitlines()[-1].startswith(f"{RESULTS_MARKER} {{")
        logs += [f"[pod/lmaload-{i}-x7k2p/lmaload] {line}" for line in (err + out).splitlines()]
    (tmp_path / "logs.txt").write_text("\n".join(logs) + "\n")

    def merge(*args: str, stdin: str | None = None) -> dict[str, Any]:
        out = tmp_path / "merged.json"
        result = subprocess.run(
            [*LMALOAD, "merge", *args, "--results", str(out)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(out.read_text())

    from_files = merge(str(tmp_path / "shard1.json"), str(tmp_path / "shard0.json"))
    assert from_files["registration"]["registered"] == 400
    assert merge("--from-logs", str(tmp_path / "logs.txt")) == from_files
    assert merge("--from-logs", "-", stdin=(tmp_path / "logs.txt").read_text()) == from_files


@pytest.mark.parametrize(
    ("logs", "expected"),
    [
        ("starting the LMA pair\n", "no LMALOAD-RESULTS line (lmaload run --print-results)"),
        ('x\nLMALOAD-RESULTS {"kind": "ru\n', "line 2: the LMALOAD-RESULTS line is not whole JSON"),
    ],
)
def test_logs_without_a_whole_document_exit_1(tmp_path, logs: str, expected: str) -> None:
    path = tmp_path / "logs.txt"
    path.write_text(logs)
    result = CliRunner().invoke(main, ["merge", "--from-logs", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"lmaload: merge: {path}") and expected in result.stderr
    assert result.stderr.count("\n") == 1


def test_the_dockerfile_builds_from_what_the_repository_has() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["python:3.11-slim"] * 2
    assert "pip install --no-cache-dir ." in text
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE):
        *sources, _ = line.split()
        assert all((ROOT / s).exists() for s in sources), line
    assert re.search(r'^ENTRYPOINT \["lmaload"\]$', text, re.MULTILINE)
