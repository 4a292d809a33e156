"""Fixtures several test modules share: "the user's own" LMA pair (two ``lmaload lma``
processes on loopback addresses apart from the embedded pair's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lmaload.lma_pair import free_port
from tests.lma_children import LmaProcess, wait_for

USER_ACTIVE, USER_STANDBY = "127.0.0.31", "127.0.0.32"  # apart from the embedded pair's


@pytest.fixture
def user_pair(tmp_path: Path) -> Iterator[tuple[LmaProcess, LmaProcess]]:
    """An active and a standby ``lmaload lma`` that know each other (before-ack sync)."""
    ports = {host: free_port(host) for host in (USER_ACTIVE, USER_STANDBY)}
    common = ("--sync", "before-ack", "--prefix-pool", "2001:db8:8000::/40")
    active = LmaProcess.spawn(
        tmp_path,
        "active",
        USER_ACTIVE,
        ports[USER_ACTIVE],
        *("--peer", f"{USER_STANDBY}:{ports[USER_STANDBY]}", *common),
    )
    standby = LmaProcess.spawn(
        tmp_path,
        "standby",
        USER_STANDBY,
        ports[USER_STANDBY],
        *("--role", "standby", "--peer", f"{USER_ACTIVE}:{ports[USER_ACTIVE]}", *common),
    )
    try:
        for lma in (active, standby):
            wait_for(lambda lma=lma: lma.metric("lmaload_lma_peers_alive") == 1, "the peers")
        yield active, standby
    finally:
        active.kill()
        standby.kill()
