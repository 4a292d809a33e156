"""What a ``lmaload run`` must show (its results document, or merged shards'): the checks behind
its exit status 1, one reason a line."""

from __future__ import annotations

from typing import Any

from lmaload import results as res
from lmaload.checks import Check
from lmaload.checks import exit_status as check_status
from lmaload.fault import parse_fault

MAX_BEHIND_SCHEDULE = 0.01


def checks(results: dict[str, Any]) -> list[Check]:
    """What a run (or merged shards) must show: the generator on schedule (unless
    ``allow_lag``); every mobile node registered, none rejected, by the end of the registration
    phase, which waits for the MAGs to give up the last scheduled PBU (not when ``--fail-at`` cut
    it short);
    with a failure measured, some MAG detecting it and the failover accounting adding up; with
    before-ack sync, no session lost; after a restart (``--mode restart``), every session at risk
    registered again."""
    config = results["config"]
    behind = results["generator"]["behind_schedule"]
    found = [
        Check(
            "generator on schedule",
            behind <= MAX_BEHIND_SCHEDULE or config["allow_lag"],
            f"the generator fell behind schedule for {behind:.1%} of registrations",
        )
    ]
    reg = results["registration"]
    # A failure that cut the registrations short: the schedule went on, judged at its end.
    counts = results.get("final") if reg["cut_by_failure"] else reg
    if counts is not None:
        missing = res.unregistered(counts)
        found.append(
            Check(
                "every mobile node registered",
                not missing,
                f"{missing} of {reg['sessions']} mobile nodes were not registered "
                f"({counts['given_up']} given up, "
                f"{counts['unanswered'] + counts['not_sent']} unanswered)",
            )
        )
        refused = ", ".join(f"status {code}: {n}" for code, n in reg["rejected_by_status"].items())
        found.append(
            Check(
                "no mobile node rejected",
                not counts["rejected"],
                f"the LMA rejected {counts['rejected']} of {reg['sessions']} mobile nodes"
                + (f" ({refused})" if counts is reg and refused else ""),
            )
        )
    takeover = results["takeover"]
    summary = takeover["summary"]
    # On a lossy link a MAG that never lost LMA1 stays with it: its sessions are not lost.
    moves_all = parse_fault(config.get("fault", "kill-active")).kind != "loss"
    if takeover["failure_at"] is not None:
        if moves_all:
            found.append(
                Check(
                    "failure detected",
                    bool(summary["detection"]["count"]),
                    "no MAG detected the failure of the active LMA",
                )
            )
        rebuilt = ("rebuilt",) if results.get("restart") is not None else ()
        fates = ("kept", *rebuilt, "lost", "pending", "not_attempted")
        found.append(
            Check(
                "failover accounting adds up",
                sum(summary[f] for f in fates) == summary["at_risk"],
                f"the failover accounting does not add up: {summary['at_risk']} sessions at "
                f"risk, {', '.join(f'{summary[f]} {f}' for f in fates)}",
            )
        )
    restart = results.get("restart")
    if restart is not None and restart["failure_at"] is not None:
        missing = restart["not_reregistered"]
        found.append(
            Check(
                "every session registered again after the restart",
                not missing,
                f"{missing} of {restart['at_risk']} sessions at risk were not registered again "
                f"after the restart ({summary['lost']} lost, {summary['pending']} pending, "
                f"{summary['not_attempted']} not attempted)",
            )
        )
    elif config["sync"] == "before-ack":
        unrecovered = summary["lost"] + (
            summary["pending"] + summary["not_attempted"] if moves_all else 0
        )
        found.append(
            Check(
                "no session lost with before-ack sync",
                not unrecovered,
                f"{unrecovered} sessions lost with before-ack sync",
            )
        )
    return found


def exit_status(results: dict[str, Any]) -> tuple[int, list[str]]:
    """0 or 1, and the reasons for a 1 (``checks``)."""
    return check_status(checks(results))
