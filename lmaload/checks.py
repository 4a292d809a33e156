"""What a command checked about its own run: named checks that pass or fail with a reason. A
failed check makes the run fail (exit 1); JUnit reports list every check as a test case."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str = ""  # why it failed


def exit_status(checks: list[Check]) -> tuple[int, list[str]]:
    """1 and the failed checks' reasons, or 0."""
    reasons = [c.message for c in checks if not c.ok]
    return (1 if reasons else 0), reasons
