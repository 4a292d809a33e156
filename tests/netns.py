"""A network namespace per test (root and iproute2, else the test is skipped): lo up and an
AnyIP route for the MAG prefix (unless ``anyip=False``); two of them joined by a veth link
(``linked``); and a way to run a function of a test module inside one.

Used by tests/test_batch_io.py, tests/test_lma_raw.py and tests/test_raw_own.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from ipaddress import IPv6Network
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0
ANYIP_PREFIX = "fd00:6d61:6700::/64"


@contextlib.contextmanager
def namespace(*setup: list[str], anyip: bool = True) -> Iterator[str]:
    """A fresh namespace: lo up, then the ``setup`` commands (``ip ...``), then (``anyip``) a
    local route for ANYIP_PREFIX on lo. On exit whatever still runs in it is killed (only
    processes the test started live there) and the namespace is deleted."""
    if not IS_ROOT or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    name = f"lmaload-test-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"ip netns add failed: {made.stderr.strip()}")
    try:
        anyip_route = ["ip", "-6", "route", "add", "local", ANYIP_PREFIX, "dev", "lo"]
        for command in (["ip", "link", "set", "lo", "up"], *setup, *([anyip_route] * anyip)):
            subprocess.run(["ip", "netns", "exec", name, *command], check=True)
        yield name
    finally:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], check=False)


@contextlib.contextmanager
def linked(link: IPv6Network, anyip: bool = False) -> Iterator[tuple[str, str]]:
    """Two fresh namespaces (``namespace``) joined by a veth pair on ``link``: in each the
    interface ``peer`` with the address ``link``::1 in the first, ::2 in the second."""
    with namespace(anyip=anyip) as first, namespace(anyip=anyip) as second:
        ends = ((first, 1), (second, 2))
        veth = ["type", "veth", "peer", "name", "peer", "netns", second]
        subprocess.run(["ip", "-n", first, "link", "add", "peer", *veth], check=True)
        for name, host in ends:
            address = f"{link.network_address + host}/{link.prefixlen}"
            ip = ["ip", "-n", name]
            subprocess.run([*ip, "addr", "add", address, "dev", "peer", "nodad"], check=True)
            subprocess.run([*ip, "link", "set", "peer", "up"], check=True)
        yield first, second


def run_in_netns(name: str, module: str, function: str, *args: str, timeout: float) -> None:
    """Run ``function(*args)`` of ``tests.<module>`` in a child ``python3`` inside namespace
    ``name`` (from the repository, so ``tests`` is importable); it must exit 0."""
    code = f"from tests.{module} import {function}; {function}(*{args!r})"
    child = subprocess.run(
        ["ip", "netns", "exec", name, sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert child.returncode == 0, child.stderr
