"""Our metrics through a real Prometheus: a Prometheus server (Debian's ``prometheus``) scrapes a
live ``lmaload run`` (2,000 sessions), its embedded LMAs and a Pushgateway the run pushes its
final values to; then every panel query of the Grafana dashboards (``$__rate_interval`` set as
Grafana would for this scrape interval) must return at least one series over the run, and
``promtool check metrics`` must find nothing to say about our /metrics.

Skipped when the binaries are missing outside CI; CI (``.ci/run``) installs them, and there a
missing one fails the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lmaload.lma_pair import ACTIVE_HOST, STANDBY_HOST, free_port
from tests.dashboard_queries import panels, substitute
from tests.lma_children import wait_for

BINARIES = ("prometheus", "promtool", "prometheus-pushgateway")
HOST = "127.0.0.1"
SCRAPE_INTERVAL = 1  # seconds
RATE_INTERVAL = f"{4 * SCRAPE_INTERVAL}s"  # Grafana's $__rate_interval: 4 scrape intervals
MNS = 2000
RUN_TIMEOUT = 120.0

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout: float = 5.0) -> str:
    return _no_proxy.open(url, timeout=timeout).read().decode()


def answers(url: str) -> bool:
    try:
        get(url, timeout=1.0)
    except OSError:
        return False
    return True


@dataclass
class LiveRun:
    """What the fixture saw: the run's exit, window and last /metrics texts, and where
    Prometheus and the Pushgateway answer."""

    returncode: int
    stderr: str
    start: float
    end: float
    run_metrics: str
    lma_metrics: str
    prometheus: str
    pushgateway: str

    def query_range(self, expr: str) -> list[dict]:
        params = urllib.parse.urlencode(
            {"query": expr, "start": self.start, "end": self.end, "step": SCRAPE_INTERVAL}
        )
        answer = json.loads(get(f"{self.prometheus}/api/v1/query_range?{params}"))
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]


def _query(prometheus: str, expr: str) -> list[dict]:
    """An instant query, now."""
    params = urllib.parse.urlencode({"query": expr})
    return json.loads(get(f"{prometheus}/api/v1/query?{params}"))["data"]["result"]


def _binaries() -> None:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing and not os.environ.get("CI"):
        pytest.skip(
            f"{', '.join(missing)} not installed (apt-get install prometheus "
            "prometheus-pushgateway; .ci/run does)"
        )
    assert not missing, f"{missing} missing: .ci/run installs them"


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _prometheus_config(run_port: int, lma_port: int, gateway_port: int) -> str:
    lmas = json.dumps([f"{ACTIVE_HOST}:{lma_port}", f"{STANDBY_HOST}:{lma_port}"])
    return f"""
global:
  scrape_interval: {SCRAPE_INTERVAL}s
  scrape_timeout: {SCRAPE_INTERVAL}s
scrape_configs:
  - job_name: lmaload
    static_configs: [{{targets: ["{HOST}:{run_port}"]}}]
  - job_name: lmaload-lma
    static_configs: [{{targets: {lmas}}}]
  - job_name: pushgateway
    honor_labels: true
    static_configs: [{{targets: ["{HOST}:{gateway_port}"]}}]
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveRun]:
    _binaries()
    tmp = tmp_path_factory.mktemp("prometheus")
    run_port, prom_port, gateway_port = (free_port(HOST) for _ in range(3))
    lma_port = _free_on_both(ACTIVE_HOST, STANDBY_HOST)
    config = tmp / "prometheus.yml"
    config.write_text(_prometheus_config(run_port, lma_port, gateway_port))
    prometheus_url = f"http://{HOST}:{prom_port}"
    gateway_url = f"http://{HOST}:{gateway_port}"
    procs = [
        _start(
            [
                "prometheus-pushgateway",
                f"--web.listen-address={HOST}:{gateway_port}",
                f"--persistence.file={tmp / 'pushgateway.data'}",
            ],
            tmp / "pushgateway.log",
        ),
        _start(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address={HOST}:{prom_port}",
                "--log.level=warn",
            ],
            tmp / "prometheus.log",
        ),
    ]
    try:
        wait_for(lambda: answers(f"{gateway_url}/-/ready"), "the Pushgateway")
        wait_for(lambda: answers(f"{prometheus_url}/-/ready"), "Prometheus")
        # Prometheus applies its targets some seconds after it is ready: start the run once it
        # scrapes.
        wait_for(
            lambda: _query(prometheus_url, 'up{job="pushgateway"} == 1'), "Prometheus to scrape"
        )
        start = time.time()
        run = subprocess.Popen(
            [
                *(sys.executable, "-m", "lmaload", "run", "--mns", str(MNS), "--mags", "20"),
                # Registrations over ~4 s: several 1-s scrapes of the counting LMAs.
                *("--rate", "500"),
                *("--allow-lag", "--results", str(tmp / "results.json")),
                *("--metrics-port", str(run_port), "--lma-metrics-port", str(lma_port)),
                *("--pushgateway", gateway_url),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp,
        )
        texts = _last_texts(
            run,
            [f"http://{HOST}:{run_port}/metrics", f"http://{STANDBY_HOST}:{lma_port}/metrics"],
        )
        _, stderr = run.communicate(timeout=30)
        live_run = LiveRun(
            run.returncode, stderr, start, time.time(), *texts, prometheus_url, gateway_url
        )
        if run.returncode == 0:
            wait_for(
                lambda: _query(prometheus_url, 'push_time_seconds{job="lmaload"}'),
                "Prometheus to scrape the pushed values",
            )
            live_run.end = time.time()
        yield live_run
    finally:
        for proc in procs:
            _stop(proc)


def _last_texts(run: subprocess.Popen, urls: list[str]) -> list[str]:
    """The last text each URL answered while ``run`` went on (killed after RUN_TIMEOUT)."""
    texts = [""] * len(urls)
    deadline = time.monotonic() + RUN_TIMEOUT
    while run.poll() is None:
        if time.monotonic() > deadline:
            run.kill()
            break
        for i, url in enumerate(urls):
            with contextlib.suppress(OSError):  # not up yet, or gone
                texts[i] = get(url, timeout=1.0)
        time.sleep(0.2)
    return texts


def _free_on_both(host: str, other: str) -> int:
    """A TCP port free on ``host`` and on ``other`` (the embedded LMAs share one)."""
    while True:
        port = free_port(host)
        with socket.socket() as probe:
            try:
                probe.bind((other, port))
            except OSError:
                continue
        return port


def test_the_run_succeeds_and_pushes_its_final_values(live: LiveRun) -> None:
    assert live.returncode == 0, live.stderr
    pushed = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(get(f"{live.pushgateway}/metrics"))
        for s in family.samples
        if s.labels.get("job") == "lmaload"
    }
    job = (("instance", ""), ("job", "lmaload"))
    assert pushed[("lmaload_phase", (*job, ("phase", "done")))] == 1
    assert pushed[("lmaload_registrations_total", job)] == MNS
    assert pushed[("lmaload_takeover_sessions", (("fate", "kept"), *job))] == MNS
    assert pushed[("lmaload_failover_takeover_seconds_count", job)] == 20


def test_every_dashboard_query_returns_series(live: LiveRun) -> None:
    assert live.returncode == 0, live.stderr
    empty = []
    checked = 0
    for name, panel in panels():
        for target in panel["targets"]:
            expr = substitute(target["expr"], RATE_INTERVAL)
            if not live.query_range(expr):
                empty.append(f"{name} / {panel['title']}: {expr}")
            checked += 1
    assert not empty, "no series for:\n" + "\n".join(empty)
    assert checked >= 50


@pytest.mark.parametrize("source", ["run", "lma"])
def test_promtool_finds_nothing_to_say_about_our_metrics(live: LiveRun, source: str) -> None:
    text = live.run_metrics if source == "run" else live.lma_metrics
    assert "lmaload_" in text, f"no /metrics text seen from the {source}"
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )
