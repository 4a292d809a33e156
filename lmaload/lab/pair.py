"""The embedded pair inside a lab, a ``lmaload.targets.Target``: ``lmaload lma --transport raw``
in the LMA1 (active) and LMA2 (standby) namespaces, the MAGs' raw Mobility Header socket opened
in the MAG host's namespace, and on cue the run's fault (``lmaload.fault``): LMA1 killed, or the
link faults of ``lmaload.lab.faults``.

``lab_pair`` uses the lab of a prefix when it is up (``lmaload lab up``, e.g. to capture on its
links) and leaves it up, with its faults cleared; otherwise it brings one up for the run and
takes it down afterwards. The LMAs' /metrics are read from inside their own namespaces.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from ipaddress import IPv6Address
from pathlib import Path

from lmaload.capture import Capture
from lmaload.fault import Fault
from lmaload.lab import faults, manage, netns
from lmaload.lab.mag_host import raw_mags
from lmaload.lab.topology import LMA_ADDRESSES, Lab
from lmaload.lma_pair import PREFIX_POOL, EmbeddedPair, LmaChild
from lmaload.population import Population
from lmaload.transport.mag_loop import RawMagTransport

PORT = 5436  # a placeholder: raw sockets have no ports, but ``--listen`` takes one
METRICS_PORT = 9100  # each LMA has a namespace of its own: always free


class LabLma(LmaChild):
    """An LMA in a lab namespace; /metrics read from inside it."""

    def metric(self, name: str, **labels: str) -> float | None:
        assert self.netns is not None
        with netns.entered(self.netns):
            return super().metric(name, **labels)


class LabPair(EmbeddedPair):
    """The pair of ``lmaload run --lab`` (hard mode only: a virtual LMAA would have to move
    between namespaces), failed by ``fault``."""

    def __init__(self, lab: Lab, sync: str, fault: Fault, log_dir: Path) -> None:
        super().__init__("hard", sync, log_dir)
        self.lab = lab
        self.fault = fault
        self._mags: list[IPv6Address] = []

    starting = "starting the LMA pair in the lab"

    def _start(self, name: str, host: str, peer: str, *args: str) -> LabLma:
        address = LMA_ADDRESSES[host]
        argv = ["--transport", "raw", "--mode", "hard", "--sync", self.sync]
        argv += ["--prefix-pool", PREFIX_POOL, "--peer", str(LMA_ADDRESSES[peer]), *args]
        child = LabLma.start(
            name,
            str(address),
            PORT,
            self.log_dir,
            argv,
            metrics_port=METRICS_PORT,
            netns=self.lab.namespace(host),
        )
        assert isinstance(child, LabLma)
        return child

    def start(self) -> None:
        self.active = self._start("active", "lma1", "lma2")
        self.standby = self._start("standby", "lma2", "lma1", "--role", "standby")

    def routes(self) -> dict[IPv6Address, tuple[str, int]]:
        return {address: (str(address), PORT) for address in LMA_ADDRESSES.values()}

    def mag_transport(self, population: Population, capture: Capture | None) -> RawMagTransport:
        """The raw socket, opened in the MAG host; the population's MAGs are the ones a cut
        picks from. No ``capture`` (it samples UDP/5436): capture on the lab's links."""
        assert capture is None
        self._mags = [population.mag_address6(m) for m in range(len(population.mags))]
        return raw_mags(population, self.lab.namespace("mag"))

    def fail(self) -> None:
        fault = self.fault
        if fault.kind == "kill-active":
            super().fail()
        elif fault.cuts:
            cut = [self._mags[m] for m in fault.cut_mags(len(self._mags)).tolist()]
            faults.apply(self.lab, faults.cut_rules(cut))
        else:
            faults.apply(self.lab, faults.loss_rules(fault.probability))


@contextlib.contextmanager
def lab_pair(prefix: str, sync: str, fault: Fault, log_dir: Path) -> Iterator[LabPair]:
    """A ``LabPair`` in the lab ``prefix`` (see the module docstring); the LMAs are stopped and
    the faults cleared (or the lab taken down) on the way out."""
    netns.require("ip", *(("nft",) if fault.needs_lab else ()))
    lab = Lab(prefix)
    ours = not manage.is_up(lab)
    if ours:
        manage.up(lab)
    pair = LabPair(lab, sync, fault, log_dir)
    try:
        yield pair
    finally:
        pair.stop()
        if ours:
            manage.down(lab)
        elif fault.needs_lab:
            faults.clear(lab)
