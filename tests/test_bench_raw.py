"""benchmarks/lma_raw.py's harness (``lmaload.bench_raw``) in small: the echo and the reference
LMA, each in a namespace of its own, answer every PBU of a plain MAG over the raw Mobility Header,
the namespaces are gone afterwards; and the CI gate reports a benchmark skipped without root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmaload import bench_raw

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(bench_raw.unavailable() is not None, reason=str(bench_raw.unavailable()))
def test_echo_and_lma_answer_every_pbu_and_leave_no_namespace(tmp_path: Path) -> None:
    before = namespaces()
    results = bench_raw.run(mns=(3000,), windows=(64, 1024), log=tmp_path / "servers.log")
    loads = {(x["server"], x["window"]): x for x in results["loads"]}
    assert set(loads) == {(s, w) for s in ("echo", "lma") for w in (64, 1024)}
    for load in loads.values():
        assert load["answered"] == load["accepted"] == 3000, load
        assert load["socket_drops"] == load["link_drops"] == 0
    assert results["lost"] == 0 and set(results["ratios"]) == {"3000x64", "3000x1024"}
    assert loads[("lma", 64)]["rss_bytes"] > 0
    assert namespaces() <= before


def namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.startswith("lmaload-bench-")}


def test_check_reports_a_skipped_benchmark(tmp_path: Path) -> None:
    results = {
        "pbu_encode": {"ratio": 100, "bulk": {"per_second": 5e7}},
        "pba_decode": {"ratio": 100},
        "state_sync": {"ratio": 100, "pbci_options": {"per_second": 1e7}},
        "lma_engine": {
            "ratio": 20,
            "registration": {"per_second": 1e6},
            "refresh": {"per_second": 1e6},
        },
        "population": {"array_bytes_per_node": 80, "traced_bytes_per_node": 80},
        "udp_send": {"batched": {"per_second": 1e6, "lost": 0}},
        "lma_raw": {"skipped": "needs root (network namespaces, raw sockets)"},
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(results))
    check = [sys.executable, str(REPO / "benchmarks" / "check.py"), str(path)]
    done = subprocess.run(check, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped: needs root" in done.stdout
