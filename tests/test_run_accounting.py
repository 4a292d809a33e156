"""``lmaload run``'s accounting on the simulated clock: the real ``Runner`` drives a MAG engine
against a simulated LMA pair (reference engines) that answers the first N PBUs and then nothing.
The run must exit 1, account for every mobile node, and report N over the scheduled window; a
healthy run's numbers stay what they were (every node registered, the target rate achieved)."""

from __future__ import annotations

from typing import Any

import pytest

from lmaload import results as res
from lmaload.run import RunConfig
from lmaload.run_checks import exit_status
from tests.sim_target import simulated_run

MNS, MAGS, RATE = 2000, 10, 1000.0


def accounted_run(
    answered: int | None, fail_at: float | None = None, **options: Any
) -> dict[str, Any]:
    config = RunConfig(mns=MNS, mags=MAGS, rate=RATE, sync="async", fail_at=fail_at, **options)
    return simulated_run(config, answered)


@pytest.fixture(scope="module")
def stalled() -> dict[str, Any]:
    return accounted_run(answered=500)


def test_a_stalled_lma_fails_the_run(stalled) -> None:
    status, reasons = exit_status(stalled)
    assert status == 1
    assert reasons == [
        f"1500 of {MNS} mobile nodes were not registered (1500 given up, 0 unanswered)"
    ]


def test_every_mobile_node_is_accounted_for(stalled) -> None:
    reg = stalled["registration"]
    assert (reg["registered"], reg["rejected"], reg["given_up"]) == (500, 0, 1500)
    assert reg["registered"] + reg["rejected"] + reg["given_up"] + reg["unanswered"] == MNS
    assert reg["not_sent"] == 0 and not reg["cut_by_failure"]
    # Each unanswered PBU was sent once and retransmitted max_retransmissions (4) times.
    assert reg["pbus_sent"] == 500 + 1500 * 5 and reg["overloaded"]
    assert "the target is overloaded" in res.table(stalled)


def test_the_achieved_rate_is_taken_over_the_scheduled_window(stalled) -> None:
    reg = stalled["registration"]
    last_scheduled = (MNS - 1) / RATE
    # The last PBU is given up 1+2+4+8+16 s after it was sent, and the phase ends then.
    assert reg["window"] == pytest.approx(last_scheduled + 31, abs=0.01)
    assert reg["completed"] == sum(reg["per_second"]) == 500
    assert reg["achieved_rate"] == pytest.approx(500 / reg["window"])
    assert reg["per_second"][0] == 500 and not any(reg["per_second"][1:])


def test_the_failover_accounting_adds_up(stalled) -> None:
    summary = stalled["takeover"]["summary"]
    assert summary["at_risk"] == 500
    fates = summary["kept"] + summary["lost"] + summary["pending"] + summary["not_attempted"]
    assert fates == summary["at_risk"]
    assert summary["detection"]["count"] == MAGS


def test_a_healthy_run_keeps_its_numbers() -> None:
    results = accounted_run(answered=None)
    assert exit_status(results) == (0, [])
    reg = results["registration"]
    assert (reg["registered"], reg["given_up"], reg["unanswered"]) == (MNS, 0, 0)
    assert reg["pbus_sent"] == MNS and reg["pbus_per_registration"] == 1.0
    assert reg["retransmission_share"] == 0.0 and not reg["overloaded"]
    # Last scheduled send at 1.999 s, its PBA 2 ms later: the target rate, less one round trip.
    assert reg["window"] == pytest.approx((MNS - 1) / RATE + 0.002, abs=1e-4)
    assert reg["achieved_rate"] == pytest.approx(RATE, rel=0.002)
    summary = results["takeover"]["summary"]
    assert (summary["at_risk"], summary["kept"], summary["not_attempted"]) == (MNS, MNS, 0)


def test_a_run_without_heartbeats_or_timestamps() -> None:
    """--heartbeats off --pbu-order sequence: the start-up check registers and de-registers mn0
    with each LMA (4 PBUs), the MAGs learn of the failure from PBUs or the HA Switch alone."""
    results = accounted_run(
        answered=None, heartbeats="off", failure_after=2, lifetime=8.0, pbu_order="sequence"
    )
    assert exit_status(results) == (0, [])
    reg = results["registration"]
    assert reg["registered"] == MNS and reg["pbus_sent"] == MNS + 4
    summary = results["takeover"]["summary"]
    assert summary["kept"] == MNS and summary["detection"]["count"] == MAGS


def test_the_schedule_goes_on_through_a_failure_during_the_registrations() -> None:
    """The active fails 1 s into a 2 s schedule: the mobile nodes not yet registered register
    with the standby once their MAG failed over, counted apart, and every one of them is."""
    results = accounted_run(answered=None, fail_at=1.0)
    reg, summary = results["registration"], results["takeover"]["summary"]
    assert reg["cut_by_failure"] and reg["not_sent"] > 0
    assert results["final"]["registered"] == MNS
    assert results["final"]["given_up"] == results["final"]["unanswered"] == 0
    fates = summary["kept"] + summary["lost"] + summary["pending"] + summary["not_attempted"]
    assert fates == summary["at_risk"] == reg["registered"]
    assert summary["registered_after_failure"] >= reg["not_sent"]
    assert exit_status(results) == (0, [])
    assert "new sessions registered" in res.table(results)
