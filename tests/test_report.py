"""``lmaload report``: a page of two simulated runs (a baseline and a slower, overloaded run) and a
capacity search, self-contained, rendered by a real headless Chromium into a PNG in which every
plot's region holds a drawing with coloured data in it; and the one-line failures without
matplotlib or with a file that is no results document."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmaload.capacity import CapacityConfig
from lmaload.report.layout import GAP, MARGIN, PAGE_WIDTH, PLOT_WIDTH, plot_box, plots_height
from lmaload.run import RunConfig
from lmaload.sim import LinkProfile, Simulator
from tests.sim_target import simulated_run
from tests.test_capacity import search

PLOTS = 7  # six for the runs, one for the capacity search
LMALOAD = [sys.executable, "-m", "lmaload"]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("report")
    baseline = simulated_run(RunConfig(mns=2000, mags=10, rate=1000.0, sync="async"))
    overloaded = simulated_run(
        RunConfig(mns=3000, mags=10, rate=1500.0, sync="async"), capacity=1200.0
    )
    config = CapacityConfig(
        mags=10, sync="async", start_rate=500, trial_duration=1, confirm_duration=1, resolution=0.3
    )
    found = search(config, Simulator(default_link=LinkProfile(delay=0.001)))
    paths = []
    for name, document in (("baseline.json", baseline), ("now.json", overloaded)):
        paths.append(folder / name)
        paths[-1].write_text(json.dumps(document))
    paths.append(folder / "capacity.json")
    paths[-1].write_text(json.dumps(found))
    html = folder / "out" / "report.html"
    result = subprocess.run(
        [*LMALOAD, "report", *map(str, paths), "-o", str(html), "--title", "nightly"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return html, result


def test_the_report_is_one_self_contained_page(page) -> None:
    html, result = page
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{html}: {PLOTS} plots, 3 results files\n"
    text = html.read_text()
    assert text.count("<svg") == PLOTS and "<script" not in text
    # Nothing fetched: no source or link but to the page's own elements.
    assert not re.findall(r'(?:src|href)\s*=\s*"(?!#)', text)
    assert not re.findall(r"url\((?!#)", text)
    for label in ("baseline.json", "now.json", "capacity.json", "Key figures: run"):
        assert label in text
    assert "Capacity trials: capacity.json" in text and "<title>nightly</title>" in text


def _png(path: Path) -> np.ndarray:
    from matplotlib.image import imread

    return imread(path)[:, :, :3]


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)",
)
def test_chromium_draws_every_plot(page, tmp_path) -> None:
    html, _ = page
    shot = tmp_path / "report.png"
    height = plot_box(0).top + plots_height(PLOTS)
    subprocess.run(
        [
            *("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"),
            *("--force-device-scale-factor=1", f"--window-size={PAGE_WIDTH},{height}"),
            f"--screenshot={shot}",
            html.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = _png(shot)
    assert pixels.shape[:2] == (height, PAGE_WIDTH)

    def inked(region: np.ndarray) -> tuple[float, int]:
        """The share of pixels that are not the white background, and how many are coloured
        (lines of data, not the black and grey of axes and text)."""
        drawn = (region < 0.95).any(axis=2).mean()
        coloured = int((region.max(axis=2) - region.min(axis=2) > 0.3).sum())
        return float(drawn), coloured

    for index in range(PLOTS):
        box = plot_box(index)
        region = pixels[box.top : box.top + box.height, box.left : box.left + box.width]
        drawn, coloured = inked(region)
        assert drawn > 0.03 and region.std() > 0.05, (index, drawn)
        assert coloured > 300, (index, coloured)
    # The check can tell a blank region: the gap between the columns is blank.
    gap = pixels[plot_box(0).top :, MARGIN + PLOT_WIDTH + 5 : MARGIN + PLOT_WIDTH + GAP - 5]
    assert inked(gap) == (0.0, 0)


def test_without_matplotlib_report_fails_in_one_line(tmp_path) -> None:
    code = "import sys; sys.modules['matplotlib'] = None; from lmaload.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "report", str(tmp_path / "results.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "lmaload: report: needs matplotlib, which is not installed: pip install 'lmaload[report]'\n"
    )


def test_a_file_that_is_no_results_document_exits_1(tmp_path) -> None:
    bad = tmp_path / "other.json"
    bad.write_text('{"kind": "weather"}')
    result = subprocess.run(
        [*LMALOAD, "report", str(bad), "-o", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and not (tmp_path / "r.html").exists()
    assert result.stderr.count("\n") == 1 and "kind 'weather'" in result.stderr
