"""The per-second series, the HdrHistogram interval log and the CSV of ``lmaload run``: recorded
on the simulated clock by the real ``Runner`` (every count adds up to the run's totals, the log
read back by the ``hdrhistogram`` package's own ``HistogramLogReader``), and written by the
command on real sockets."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from lmaload.measure.hdrlog import LEGEND, HdrLogWriter
from lmaload.measure.histogram import LATENCY_LAYOUT, Histogram
from lmaload.measure.series import SeriesRecorder, write_csv
from lmaload.run import RunConfig
from tests.sim_target import simulated_run

MNS, MAGS, RATE = 3000, 10, 1000.0


def hdr_log_totals(path: Path) -> Counter[str]:
    """Values per tag in an interval log, as HdrHistogram's reader reads it."""
    layout = LATENCY_LAYOUT
    reader = HistogramLogReader(str(path), HdrHistogram(layout.lowest, layout.highest, 3))
    totals: Counter[str] = Counter()
    while (interval := reader.get_next_interval_histogram()) is not None:
        totals[interval.get_tag()] += interval.get_total_count()
    reader.close()
    return totals


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> tuple[dict[str, Any], Path]:
    log = tmp_path_factory.mktemp("series") / "run.hlog"
    config = RunConfig(mns=MNS, mags=MAGS, rate=RATE, sync="async", hdr_log=log, observe=2.0)
    return simulated_run(config), log


def test_the_series_adds_up_to_the_run(simulated) -> None:
    results, _ = simulated
    series, reg, takeover = results["series"], results["registration"], results["takeover"]
    columns = series["columns"]
    assert series["start"] == reg["start"] and series["interval"] == 1.0
    times = np.array(columns["time"])
    # A sample each second of the grid; the last one ends the run, earlier.
    assert np.allclose(times[:-1], np.arange(1, len(times)))
    assert 0 < times[-1] - times[-2] <= 1
    assert sum(columns["offered"]) == MNS and columns["offered"][:3] == [1001, 1000, 999]
    assert sum(columns["completed"]) == reg["completed"] == MNS
    assert sum(columns["sent"]) == reg["pbus_sent"] + takeover["pbus_sent"]
    assert (
        sum(columns["retransmitted"]) == reg["pbus_retransmitted"] + takeover["pbus_retransmitted"]
    )
    assert sum(columns["failed"]) == 0 and sum(columns["heartbeat_misses"]) > 0
    states = [name for name in columns if name.startswith("sessions_")]
    assert all(sum(row) == MNS for row in zip(*(columns[s] for s in states), strict=True))
    assert max(columns["sessions_failover"]) == MNS  # every session moving, after the failure
    assert columns["sessions_registered"][-1] == MNS
    for done, p50, p99 in zip(
        columns["completed"], columns["latency_p50_us"], columns["latency_p99_us"], strict=True
    ):
        assert (p50 is None) == (done == 0)
        assert done == 0 or 1900 <= p50 <= p99 <= 2100  # two 1 ms links


def test_the_hdr_log_reads_back_with_the_runs_counts(simulated) -> None:
    results, log = simulated
    lines = log.read_text().splitlines()
    assert lines[1] == "#[Histogram log format version 1.3]"
    assert lines[2].startswith(f"#[StartTime: {results['series']['start']:.3f} (seconds since")
    assert lines[4] == LEGEND
    intervals = [line for line in lines if line.startswith("Tag=")]
    assert len(intervals) == 3 * len(results["series"]["columns"]["time"])
    assert intervals[0].startswith("Tag=registration,0.000,1.000,")
    assert hdr_log_totals(log) == {
        "registration": results["registration"]["latency_us"]["count"],
        "refresh": results["refresh_latency_us"]["count"],
        "takeover": results["takeover"]["failover_latency_us"]["count"],
    }
    assert results["takeover"]["failover_latency_us"]["count"] == MNS


def test_the_csv_has_a_header_and_a_row_a_second(simulated) -> None:
    results, _ = simulated
    out = io.StringIO()
    write_csv(results["series"], out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    columns = results["series"]["columns"]
    assert list(rows[0]) == list(columns)
    assert len(rows) == len(columns["time"])
    assert [int(r["completed"]) for r in rows] == columns["completed"]
    empty = columns["latency_p99_us"].index(None)
    assert rows[empty]["latency_p99_us"] == ""


def test_an_overrun_sample_keeps_the_grid_and_intervals_are_differences() -> None:
    latency = Histogram()
    out = io.StringIO()
    log = HdrLogWriter(out, 100.0, {"registration": latency})
    recorder = SeriesRecorder(
        100.0, np.array([0.0, 0.5, 1.5, 2.6]), {"sent": 0}, latency, ["idle", "busy"], log
    )
    latency.record(np.array([10, 20]))
    recorder.sample(102.5, {"sent": 3}, np.array([0, 1, 1, 1]))
    assert recorder.next_at == 103.0
    latency.record(np.array([5000]))
    recorder.sample(102.5, {"sent": 9}, np.array([1, 1, 1, 1]))  # no time passed: nothing
    recorder.sample(102.75, {"sent": 4}, np.array([1, 1, 1, 1]))
    columns = recorder.columns
    assert columns["time"] == [2.5, 2.75]
    assert columns["offered"] == [3, 1] and columns["sent"] == [3, 1]
    assert columns["latency_p99_us"] == [20, 5003]  # HdrHistogram's highest equivalent value
    assert columns["sessions_idle"] == [1, 0] and columns["sessions_busy"] == [3, 4]
    assert out.getvalue().splitlines()[-1].startswith("Tag=registration,2.500,0.250,5.003,")
    with pytest.raises(ValueError, match="comma"):
        HdrLogWriter(io.StringIO(), 0.0, {"a,b": latency})


def test_run_writes_the_hdr_log_and_the_csv(tmp_path) -> None:
    paths = {name: tmp_path / "out" / name for name in ("results.json", "run.hlog", "run.csv")}
    result = subprocess.run(
        [
            *(sys.executable, "-m", "lmaload", "run", "--mns", "1000", "--mags", "10"),
            *("--rate", "1000", "--sync", "async", "--allow-lag"),
            *("--results", str(paths["results.json"]), "--hdr-log", str(paths["run.hlog"])),
            *("--csv", str(paths["run.csv"])),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(paths["results.json"].read_text())
    assert results["config"]["hdr_log"] == str(paths["run.hlog"])
    totals = hdr_log_totals(paths["run.hlog"])
    assert totals["registration"] == results["registration"]["latency_us"]["count"] == 1000
    assert totals["takeover"] == results["takeover"]["failover_latency_us"]["count"]
    rows = list(csv.DictReader(paths["run.csv"].open()))
    assert sum(int(r["offered"]) for r in rows) == 1000
    assert sum(int(r["completed"]) for r in rows) == 1000
