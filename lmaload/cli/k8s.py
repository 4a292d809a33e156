"""``lmaload k8s-job``: the shards of one ``lmaload run`` as a Kubernetes Indexed Job, printed.

Each pod runs ``lmaload run --shard $(JOB_COMPLETION_INDEX)/N`` from one ``--start-at`` fixed
when the manifest is printed, with ``--print-results``: its results document ends its log as one
marked line, and ``kubectl logs -l job-name=NAME --tail=-1 | lmaload merge --from-logs -``
combines them. A shard's figures are a part of the run's, so ``--threshold`` and ``--junit`` go
to that merge (the manifest's header prints it), not to the pods.
"""

from __future__ import annotations

import math
import re
import shlex
import time
from datetime import UTC, datetime
from typing import Any

import click
from click.core import ParameterSource

from lmaload.cli.config import long_name
from lmaload.cli.group import Duration, main
from lmaload.cli.run import format_stages, run_command, run_config

SET_HERE = frozenset({"shard", "start_at", "print_results", "config"})
AT_MERGE = frozenset({"thresholds", "junit_path"})
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def _name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise click.BadParameter(
            f"{value!r}: a Kubernetes name is lowercase letters, digits and '-', at most 63"
        )
    return value


def _argv(option: click.Option, value: Any) -> list[str]:
    """``option`` with ``value`` as ``lmaload run`` takes it on its command line."""
    flag = f"--{long_name(option)}"
    if option.is_flag:
        return [flag] if value else []
    values = value if option.multiple else (value,)
    return [
        text
        for v in values
        for text in (flag, format_stages(v) if option.name == "stages" else str(v))
    ]


def job(
    name: str,
    namespace: str | None,
    image: str,
    shards: int,
    cpu: float,
    run_args: list[str],
) -> dict[str, Any]:
    """The Indexed Job: one pod per shard, all at once, none run again (its start has passed)."""
    labels = {"app.kubernetes.io/name": "lmaload", "app.kubernetes.io/instance": name}
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if namespace is not None:
        metadata["namespace"] = namespace
    container = {
        "name": "lmaload",
        "image": image,
        "command": ["lmaload"],
        "args": run_args,
        # Kubernetes sets it too; declared, $(JOB_COMPLETION_INDEX) in args expands everywhere.
        "env": [
            {
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": {
                    "fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}
                },
            }
        ],
        "resources": {"requests": {"cpu": f"{cpu:g}"}},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "completionMode": "Indexed",
            "completions": shards,
            "parallelism": shards,
            "backoffLimitPerIndex": 0,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }


def _k8s_job(ctx: click.Context, **options: Any) -> None:
    import yaml

    shards = options["shards"]
    start_at = math.ceil(time.time() + options["start_margin"])
    run_config(ctx, options, (0, shards), float(start_at))  # refused as lmaload run would
    run_args = [
        *("run", "--shard", f"$(JOB_COMPLETION_INDEX)/{shards}", "--start-at", str(start_at)),
        "--print-results",
    ]
    merge_args = ["lmaload", "merge", "--from-logs", "-"]
    for option in run_options():
        if ctx.get_parameter_source(option.name) in (None, ParameterSource.DEFAULT):  # type: ignore[arg-type]
            continue
        value = options[option.name]  # type: ignore[index]
        if option.name in AT_MERGE:
            merge_args += _argv(option, [t.expression for t in value] if option.multiple else value)
        else:
            run_args += _argv(option, value)
    name = options["name"]
    manifest = job(name, options["namespace"], options["image"], shards, options["cpu"], run_args)
    when = datetime.fromtimestamp(start_at, UTC).isoformat()
    namespace = f" -n {options['namespace']}" if options["namespace"] else ""
    click.echo(
        f"# lmaload k8s-job: {shards} shards of one run, starting at {when} (--start-at "
        f"{start_at}).\n"
        "# Apply it before then; when the Job has finished, merge what the pods printed:\n"
        f"#   kubectl{namespace} apply -f job.yaml\n"
        f"#   kubectl{namespace} wait --for=condition=complete --timeout=-1s job/{name}\n"
        f"#   kubectl{namespace} logs -l job-name={name} --tail=-1 | {shlex.join(merge_args)}\n"
        + yaml.safe_dump(manifest, sort_keys=False),
        nl=False,
    )


def run_options() -> list[click.Option]:
    """The options of ``lmaload run`` that ``k8s-job`` takes (all but those it sets itself)."""
    return [p for p in run_command.params if isinstance(p, click.Option) and p.name not in SET_HERE]


k8s_job_command = main.command(
    name="k8s-job",
    help=(
        "Print a Kubernetes Indexed Job that runs lmaload run as --shards pods: pod I is "
        "--shard I/N (JOB_COMPLETION_INDEX), all from one --start-at --start-margin from now, "
        "each ending its log with its results (--print-results). Takes lmaload run's options "
        "(not --shard, --start-at); --threshold and --junit go to the lmaload merge "
        "--from-logs that the header prints. Exits 2 on options lmaload run would refuse."
    ),
    params=[
        click.Option(
            ["--shards"],
            type=click.IntRange(1),
            required=True,
            help="Pods, each one shard of the run (completions and parallelism of the Job).",
        ),
        click.Option(
            ["--image"],
            required=True,
            help="Container image with lmaload installed (the Dockerfile builds one).",
        ),
        click.Option(
            ["--name"],
            default="lmaload",
            show_default=True,
            callback=_name,
            help="Name of the Job; its pods carry the label job-name=NAME.",
        ),
        click.Option(["--namespace"], help="Namespace of the Job (default: kubectl's)."),
        click.Option(
            ["--start-margin"],
            type=Duration(min=0),
            default=120.0,
            show_default=True,
            help="The shared --start-at is this long after printing: time to apply the Job, pull "
            "the image and start every pod (a pod that starts later fails its shard).",
        ),
        click.Option(
            ["--cpu"],
            type=click.FloatRange(min=0, min_open=True),
            default=1.0,
            show_default=True,
            help="CPU request of each pod, cores (one generator process drives one core).",
        ),
        *run_options(),
    ],
)(click.pass_context(_k8s_job))
