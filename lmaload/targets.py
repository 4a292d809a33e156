"""What ``lmaload run`` measures: the embedded reference pair (``lmaload.lma_pair``) or the user's
own LMAs, behind one interface (``Target``).

The user's LMAs (``ExternalPair``) are reached over UDP/5436 (RFC 5844, ``lmaload.endpoints``),
or over the raw Mobility Header (``RawExternalPair``: RFC 5213 over IPv6, the MAGs sending from
their own addresses on this host, ``lmaload.lab.mag_host``). lmaload cannot look into their
binding caches, so "sync has caught up" is a fixed wait, and it can fail the active one only by
running the user's ``--fail-cmd``.
"""

from __future__ import annotations

import subprocess
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Protocol

from lmaload.capture import Capture
from lmaload.endpoints import Endpoint
from lmaload.lab import mag_host
from lmaload.population import Population, PopulationSpec
from lmaload.transport.mag_loop import MagTransport, RawMagTransport

FAIL_CMD_TIMEOUT = 30.0


class Target(Protocol):
    """The LMAs of a run."""

    starting: str  # what the progress display says while ``start`` runs

    def start(self) -> None: ...
    def wait_ready(self, timeout: float) -> None: ...
    def routes(self) -> dict[IPv6Address, tuple[str, int]]:
        """Inner address → outer (host, port) of every LMA the MAGs talk to."""
        ...

    def anchors(self) -> tuple[IPv6Address, IPv6Address | None]:
        """The inner addresses the MAGs register with, and fail over to (None: virtual)."""
        ...

    def mag_transport(
        self, population: Population, capture: Capture | None
    ) -> MagTransport | RawMagTransport:
        """The socket of the population's MAGs towards these LMAs, recording into ``capture``."""
        ...

    @property
    def observes_sync(self) -> bool:
        """Whether ``synced`` can tell."""
        ...

    def synced(self, sessions: int) -> bool:
        """Whether the standby shows ``sessions`` synced."""
        ...

    @property
    def can_fail(self) -> bool: ...
    def fail(self) -> None:
        """Fail the active LMA, now."""
        ...

    def failure_problems(self) -> list[str]:
        """What went wrong failing the active (after ``fail``), one line each."""
        ...

    def lma_captures(self) -> list[tuple[Path, str]]:
        """(pcap, host) of each LMA that records its signalling (``lmaload.capture``)."""
        ...

    def stop(self) -> None: ...


class ExternalPair:
    """The user's LMAs: ``lma`` (the active, or the shared LMAA of a virtual switch) and
    ``standby`` (hard switch); ``fail_cmd``, a shell command, fails the active one."""

    def __init__(self, lma: Endpoint, standby: Endpoint | None, fail_cmd: str | None) -> None:
        self.lma = lma
        self.standby = standby
        self.fail_cmd = fail_cmd
        self._failing: subprocess.Popen[bytes] | None = None

    starting = "reaching your LMAs"

    def start(self) -> None:
        pass

    def wait_ready(self, timeout: float) -> None:
        pass  # the MAGs' heartbeats tell (``Runner``)

    def routes(self) -> dict[IPv6Address, tuple[str, int]]:
        ends = [e for e in (self.lma, self.standby) if e is not None]
        return {e.inner: e.outer for e in ends}

    def anchors(self) -> tuple[IPv6Address, IPv6Address | None]:
        return self.lma.inner, None if self.standby is None else self.standby.inner

    def mag_transport(
        self, population: Population, capture: Capture | None
    ) -> MagTransport | RawMagTransport:
        return MagTransport(population, self.routes(), capture)

    observes_sync = False

    def synced(self, sessions: int) -> bool:
        raise NotImplementedError("the user's standby cannot be looked into")

    @property
    def can_fail(self) -> bool:
        return self.fail_cmd is not None

    def fail(self) -> None:
        assert self.fail_cmd is not None
        self._failing = subprocess.Popen(self.fail_cmd, shell=True, stdin=subprocess.DEVNULL)

    def failure_problems(self) -> list[str]:
        if self._failing is None:
            return []
        try:
            status = self._failing.wait(FAIL_CMD_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._failing.kill()
            return [f"--fail-cmd still running after {FAIL_CMD_TIMEOUT:g} s: killed"]
        return [f"--fail-cmd exited with status {status}"] if status else []

    def lma_captures(self) -> list[tuple[Path, str]]:
        return []

    def stop(self) -> None:
        if self._failing is not None and self._failing.poll() is None:
            self._failing.kill()
            self._failing.wait()


class RawExternalPair(ExternalPair):
    """The user's LMAs over the raw Mobility Header, the MAGs sending from ``mag_prefix``
    (``lmaload.lab.mag_host.MagHost``: made local when their socket is opened unless it is, the
    route lmaload added removed at ``stop``; LabError without root, when the prefix cannot be
    made local, or when an LMA has no route)."""

    def __init__(
        self,
        lma: Endpoint,
        standby: Endpoint | None,
        fail_cmd: str | None,
        mag_prefix: IPv6Network,
    ) -> None:
        super().__init__(lma, standby, fail_cmd)
        self.mag_host = mag_host.MagHost(mag_prefix)

    def mag_transport(
        self, population: Population, capture: Capture | None
    ) -> MagTransport | RawMagTransport:
        """No ``capture`` (it samples UDP/5436): capture on the interface towards the LMAs."""
        assert capture is None
        return self.mag_host.open(population, list(self.routes()))

    def stop(self) -> None:
        super().stop()
        self.mag_host.close()


def own_lmas(
    lma: Endpoint, standby: Endpoint | None, fail_cmd: str | None, mag_prefix: str | None
) -> ExternalPair:
    """The user's LMAs, over the transport their endpoints are reached by (the raw Mobility
    Header from ``mag_prefix``, by default the population's)."""
    if lma.raw:
        prefix = IPv6Network(mag_prefix or PopulationSpec.mag_prefix6)
        return RawExternalPair(lma, standby, fail_cmd, prefix)
    return ExternalPair(lma, standby, fail_cmd)
