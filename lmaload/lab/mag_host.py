"""The MAG host of the raw Mobility Header: the lab's MAG namespace, or the host that runs
``lmaload run --transport raw --lma ADDR6`` towards LMAs of the user's own.

Both need the MAG prefix local — an AnyIP route on lo (``anyip_command``), so one raw
IPPROTO_MH socket sends from, and receives for, every MAG address — and that socket
(``raw_mags``). On the user's host the prefix may be local already (routes or addresses the
user configured): ``MagHost`` adds the route only when some MAG address is not, checks the
route to the LMAs, and removes the route it added when it is closed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from ipaddress import IPv6Address, IPv6Network

from lmaload._ext import mmsg
from lmaload.lab import netns
from lmaload.lab.netns import LabError
from lmaload.population import Population
from lmaload.transport.mag_loop import RawMagTransport

PROBE_PORT = 5436  # raw sockets have no ports; a UDP probe of the route needs one


def anyip_command(
    prefix: IPv6Network, namespace: str | None = None, verb: str = "add"
) -> list[str]:
    """``ip`` adding (``verb`` "del": removing) the local route that makes ``prefix`` this
    host's (in ``namespace``, else where lmaload runs)."""
    where = [] if namespace is None else ["-n", namespace]
    return ["ip", *where, "-6", "route", verb, "local", str(prefix), "dev", "lo"]


def mag_addresses(population: Population) -> list[IPv6Address]:
    return [IPv6Address(a.tobytes()) for a in population.mags["addr6"]]


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "--transport raw needs root (a raw Mobility Header socket, the MAG prefix's route)"
        )


def not_local(addresses: list[IPv6Address]) -> IPv6Address | None:
    """The first address the kernel would not deliver to this host (one ``ip route get``
    batch: a local route, AnyIP or an address's own, says ``local``)."""
    if shutil.which("ip") is None:
        raise LabError("--transport raw needs ip (iproute2, not found on PATH)")
    batch = "".join(f"route get {a}\n" for a in addresses)
    done = subprocess.run(
        ["ip", "-force", "-6", "-batch", "-"], input=batch, capture_output=True, text=True
    )
    local = {
        IPv6Address(line.split()[1])
        for line in done.stdout.splitlines()
        if line.startswith("local ")
    }
    return next((a for a in addresses if a not in local), None)


def make_local(prefix: IPv6Network, addresses: list[IPv6Address]) -> bool:
    """Make the MAG ``addresses`` of ``prefix`` local unless they all are; whether it added a
    route for ``prefix`` (LabError, one line, when that fails)."""
    require_root()
    if not_local(addresses) is None:
        return False
    try:
        netns.run(anyip_command(prefix))
    except LabError as exc:
        raise LabError(f"cannot make the MAG prefix {prefix} local: {exc}") from None
    missing = not_local(addresses)
    if missing is not None:
        unmake_local(prefix)
        raise LabError(f"the MAG address {missing} is not local even with a route for {prefix}")
    return True


def unmake_local(prefix: IPv6Network) -> None:
    netns.run(anyip_command(prefix, verb="del"))


def check_route(lma: IPv6Address, source: IPv6Address) -> None:
    """LabError unless this host has a route from the MAG address ``source`` to ``lma``."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        probe.setsockopt(socket.IPPROTO_IPV6, mmsg.IPV6_FREEBIND, 1)  # as the MAGs' socket
        try:
            probe.bind((str(source), 0))
            probe.connect((str(lma), PROBE_PORT))
        except OSError as exc:
            raise LabError(
                f"no route to the LMA at {lma} from the MAG address {source}: {exc.strerror or exc}"
            ) from None


def raw_mags(population: Population, namespace: str | None = None) -> RawMagTransport:
    """The MAGs' raw Mobility Header socket, opened in ``namespace`` (else here)."""
    entered = contextlib.nullcontext() if namespace is None else netns.entered(namespace)
    with entered:
        try:
            return RawMagTransport(population)
        except PermissionError:
            raise LabError("a raw Mobility Header socket needs root (CAP_NET_RAW)") from None


class MagHost:
    """This host as the MAG host of ``prefix`` towards LMAs of the user's own: ``open`` makes
    the prefix local (once, unless it is), checks the route to the LMAs and opens the MAGs'
    raw socket; ``close`` removes the route it added. LabError, one line, for what fails."""

    def __init__(self, prefix: IPv6Network) -> None:
        self.prefix = prefix
        self.made_local = False

    def open(self, population: Population, lmas: list[IPv6Address]) -> RawMagTransport:
        addresses = mag_addresses(population)
        if not self.made_local:
            self.made_local = make_local(self.prefix, addresses)
        for lma in lmas:
            check_route(lma, addresses[0])
        return raw_mags(population)

    def close(self) -> None:
        if self.made_local:
            self.made_local = False
            unmake_local(self.prefix)
