"""Where an LMA is reached over UDP/5436 (RFC 5844): an *inner* IPv6 address, the one its
Mobility Headers carry, and the *outer* socket address the datagrams go to. Over the raw
Mobility Header (RFC 5213 over IPv6) the two are one IPv6 address and there is no port
(``parse_raw_endpoint``: port ``RAW``).

An endpoint is written ``[INNER@]HOST[:PORT]`` (IPv6 hosts in brackets when a port follows), the
inner address defaulting to HOST itself for IPv6 and to HOST IPv4-mapped (``::ffff:a.b.c.d``) for
IPv4, the port to 5436. Local addresses (``is_local``) are loopback, link-local, unique local
(fc00::/7) and their IPv4-mapped forms: the only ones lmaload talks to unless the user allows
remote ones explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address

from lmaload.transport.udp5436 import PMIP6_CNTL_PORT, mapped

UNIQUE_LOCAL = IPv6Network("fc00::/7")
RAW = 0  # the port of an endpoint reached over the raw Mobility Header: it has none


@dataclass(frozen=True)
class Endpoint:
    """An engine address and the socket address it is reached at."""

    inner: IPv6Address
    host: IPv4Address | IPv6Address
    port: int = PMIP6_CNTL_PORT

    @property
    def outer(self) -> tuple[str, int]:
        return str(self.host), self.port

    @property
    def raw(self) -> bool:
        return self.port == RAW

    def __str__(self) -> str:
        if self.raw:
            return str(self.host)
        host = f"[{self.host}]" if self.host.version == 6 else str(self.host)
        return f"{self.inner}@{host}:{self.port}"


def outer_text(host: str, port: int) -> str:
    """``HOST:PORT`` of an outer address, ``[IPV6]:PORT`` for IPv6, the bare address over the
    raw Mobility Header."""
    if port == RAW:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_host_port(text: str, default_port: int = PMIP6_CNTL_PORT) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``IPV6``, or ``[IPV6]:PORT`` → (host, port); ValueError."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: expected [IPV6]:PORT")
        port = rest[1:] or str(default_port)
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, str(default_port)
    ip_address(host)
    if not port.isdigit() or not 0 <= int(port) <= 0xFFFF:
        raise ValueError(f"{text!r}: bad port {port!r}")
    return host, int(port)


def parse_endpoint(text: str) -> Endpoint:
    """``[INNER@]HOST[:PORT]`` (see the module docstring); ValueError."""
    inner_text, sep, outer = text.rpartition("@")
    host, port = parse_host_port(outer)
    address = ip_address(host)
    inner = IPv6Address(inner_text) if sep else mapped(address)
    return Endpoint(inner, address, port)


def parse_raw_endpoint(text: str) -> Endpoint:
    """An IPv6 address, reached over the raw Mobility Header; ValueError."""
    address = IPv6Address(text)
    return Endpoint(address, address, RAW)


def is_local(address: IPv4Address | IPv6Address) -> bool:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return is_local(address.ipv4_mapped)
    if address.is_loopback or address.is_link_local:
        return True
    return isinstance(address, IPv6Address) and address in UNIQUE_LOCAL
