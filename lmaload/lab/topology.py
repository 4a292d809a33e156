"""The lab's plan, with no side effects: three hosts (network namespaces ``PREFIX`` + ``mag``,
``lma1``, ``lma2``), a veth link between each two of them, unique-local addresses and routes.

::

    MAG host ──(fd00:6d61:6702:1::/64)── LMA1
        └─────(fd00:6d61:6702:2::/64)── LMA2 ──(fd00:6d61:6702:3::/64)── LMA1

The interface of a host towards another is named after the other host (``lma1`` in the MAG
host leads to LMA1), and both ends of each link are created inside their namespaces: the lab
puts nothing in the namespace it is started from, so deleting its namespaces removes all of it.

The MAG host holds the population's MAG prefix as an AnyIP local route on lo (one raw socket
sends and receives for every MAG address); each LMA has its individual address on lo, reached
by the MAGs over their own link and by the other LMA over the LMA1-LMA2 link, so the MAG host
can lose LMA1 while the two LMAs still see each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from lmaload.lab.mag_host import anyip_command
from lmaload.population import PopulationSpec

HOSTS = ("mag", "lma1", "lma2")
MAG_PREFIX = IPv6Network(PopulationSpec.mag_prefix6)
LMA_ADDRESSES = {
    "lma1": IPv6Address("fd00:6d61:6701::1"),
    "lma2": IPv6Address("fd00:6d61:6701::2"),
}
DEFAULT_PREFIX = "lmaload-lab-"
PREFIX_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


@dataclass(frozen=True)
class Link:
    """A veth pair between hosts ``a`` and ``b`` on ``network`` (``a`` is ::1, ``b`` ::2)."""

    a: str
    b: str
    network: IPv6Network

    def address(self, host: str) -> IPv6Address:
        return self.network.network_address + (1 if host == self.a else 2)

    def peer(self, host: str) -> str:
        return self.b if host == self.a else self.a


LINKS = (
    Link("mag", "lma1", IPv6Network("fd00:6d61:6702:1::/64")),
    Link("mag", "lma2", IPv6Network("fd00:6d61:6702:2::/64")),
    Link("lma1", "lma2", IPv6Network("fd00:6d61:6702:3::/64")),
)


def link_between(a: str, b: str) -> Link:
    return next(link for link in LINKS if {link.a, link.b} == {a, b})


def routes(host: str) -> list[tuple[IPv6Network, Link]]:
    """What ``host`` reaches over which link: every other host's addresses (an LMA's /128, the
    MAG prefix) via that host's end of their direct link."""
    out = []
    for other in HOSTS:
        if other == host:
            continue
        target = MAG_PREFIX if other == "mag" else IPv6Network(LMA_ADDRESSES[other])
        out.append((target, link_between(host, other)))
    return out


def check_prefix(prefix: str) -> str:
    """``prefix`` if it makes safe namespace names (lower-case letters, digits, '-'; up to 40
    characters, ending in '-'); ValueError otherwise."""
    if not PREFIX_PATTERN.fullmatch(prefix) or not prefix.endswith("-"):
        raise ValueError(
            f"{prefix!r}: a lab prefix is up to 40 lower-case letters, digits and '-', "
            "ending in '-'"
        )
    return prefix


@dataclass(frozen=True)
class Lab:
    """One lab, named by its namespace prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    def namespace(self, host: str) -> str:
        return f"{self.prefix}{host}"

    @property
    def namespaces(self) -> list[str]:
        return [self.namespace(h) for h in HOSTS]

    def up_commands(self) -> list[list[str]]:
        """The ``ip`` commands that build the lab, in order (after ``ip netns add`` of each
        namespace)."""
        ns = self.namespace
        commands = [["ip", "-n", ns(h), "link", "set", "lo", "up"] for h in HOSTS]
        for link in LINKS:
            veth = ["type", "veth", "peer", "name", link.a, "netns", ns(link.b)]
            commands.append(["ip", "link", "add", link.b, "netns", ns(link.a), *veth])
            for host in (link.a, link.b):
                interface = link.peer(host)
                address = f"{link.address(host)}/{link.network.prefixlen}"
                commands.append(
                    ["ip", "-n", ns(host), "addr", "add", address, "dev", interface, "nodad"]
                )
                commands.append(["ip", "-n", ns(host), "link", "set", interface, "up"])
        for host, address in LMA_ADDRESSES.items():
            commands.append(["ip", "-n", ns(host), "addr", "add", f"{address}/128", "dev", "lo"])
        commands.append(anyip_command(MAG_PREFIX, ns("mag")))
        for host in HOSTS:
            for target, link in routes(host):
                via = ["via", str(link.address(link.peer(host))), "dev", link.peer(host)]
                commands.append(["ip", "-n", ns(host), "-6", "route", "add", str(target), *via])
        return commands
