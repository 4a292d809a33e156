"""Network namespace primitives for the lab: run ``ip``/``nft`` commands, list namespaces and
the processes in them, and enter one from the calling thread (setns) for as long as it takes
to open a socket there — a socket keeps the namespace it was created in.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


class LabError(Exception):
    """The lab cannot be built, used or removed, or a MAG host cannot be set up: one line for the
    user."""


def require(*tools: str) -> None:
    """LabError unless this process is root and has ``tools`` on its PATH."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veth links, raw sockets)")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(f"the lab needs {' and '.join(missing)} (not found on PATH)")


def run(argv: list[str], stdin: str | None = None) -> str:
    """Run a command; its stdout, or LabError with the command and its first error line."""
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        reason = lines[0] if lines else f"exit status {done.returncode}"
        raise LabError(f"{' '.join(argv[:6])}{' ...' if len(argv) > 6 else ''}: {reason}")
    return done.stdout


def namespaces() -> set[str]:
    """The names of the network namespaces ``ip netns`` knows."""
    out = run(["ip", "netns", "list"])
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def pids(name: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def delete(name: str) -> None:
    """Kill whatever runs in namespace ``name`` (processes the lab started), then delete it."""
    for pid in pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run(["ip", "netns", "del", name])


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise LabError(f"cannot enter a network namespace: {os.strerror(errno)}")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """The calling thread inside namespace ``name`` (other threads stay where they are)."""
    try:
        target = os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY)
    except OSError as exc:
        raise LabError(f"no network namespace {name}: {exc.strerror}") from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
