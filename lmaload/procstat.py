"""What the kernel says about another process: its CPU time and resident memory (/proc)."""

from __future__ import annotations

from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` so far, every thread, to the nanosecond (schedstat: the
    clock ticks of /proc/PID/stat are too coarse for a load of a fraction of a second)."""
    return (
        sum(
            int((task / "schedstat").read_text().split()[0])
            for task in Path(f"/proc/{pid}/task").iterdir()
        )
        * 1e-9
    )


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
