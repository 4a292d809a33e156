"""The open-loop schedule (intended send times from a rate and ramp stages) and the lag meter."""

from __future__ import annotations

import numpy as np
import pytest

from lmaload.measure.schedule import LagMeter, Schedule, Stage


def test_constant_rate():
    assert np.allclose(Schedule.constant(100.0).offsets(5), [0, 0.01, 0.02, 0.03, 0.04])


def test_linear_ramp_then_hold():
    """0 → 1000/s over 2 s: N(t) = 250 t², so registration k is due at sqrt(k / 250); the 1000
    of the ramp are followed by 1000/s."""
    offsets = Schedule((Stage(2.0, 1000.0),)).offsets(1500)
    k = np.arange(1000)
    assert np.allclose(offsets[:1000], np.sqrt(k / 250))
    assert np.allclose(offsets[1000:], 2.0 + np.arange(500) / 1000)


def test_step_and_plateaus():
    offsets = Schedule((Stage(1.0, 10.0), Stage(0.0, 100.0)), start_rate=10.0).offsets(20)
    assert np.allclose(offsets[:10], np.arange(10) / 10)
    assert np.allclose(offsets[10:], 1.0 + np.arange(10) / 100)
    assert np.all(np.diff(offsets) > 0)


def test_a_schedule_ending_at_rate_zero_holds_only_what_it_ramps():
    schedule = Schedule((Stage(1.0, 10.0), Stage(1.0, 0.0)))
    assert len(schedule.offsets(9)) == 9
    with pytest.raises(ValueError):
        schedule.offsets(11)


def test_lag_meter():
    meter = LagMeter(tolerance=0.005)
    meter.record(np.array([0.0, -1e-7, 0.001, 0.010, 0.100]))
    assert meter.sent == 5 and meter.late == 2 and meter.behind_schedule == pytest.approx(0.4)
    assert meter.max == pytest.approx(0.1)
    assert meter.histogram.max == pytest.approx(100_000, rel=1e-3)
