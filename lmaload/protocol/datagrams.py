"""The batch type that flows in and out of the sans-IO engines.

A datagram is one whole Mobility Header with the IPv6 source and destination of its checksum
pseudo-header: for raw IPv6 sockets those are the packet's addresses; for the UDP/5436 transport
of RFC 5844 the driver strips (on receive) or adds (on send) the inner IPv6 header that carries
them. This reference batch is a plain list; a compiled fast path can offer the same interface over
one contiguous buffer plus offsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from ipaddress import IPv6Address
from typing import NamedTuple


class Datagram(NamedTuple):
    """One Mobility Header and its pseudo-header addresses; ``arrival`` is when the kernel
    received it (Unix seconds), None where unknown or for datagrams to send."""

    data: bytes
    src: IPv6Address
    dst: IPv6Address
    arrival: float | None = None


class Datagrams:
    """An ordered batch of datagrams."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Datagram] = ()) -> None:
        self._items: list[Datagram] = list(items)

    def append(
        self, data: bytes, src: IPv6Address, dst: IPv6Address, arrival: float | None = None
    ) -> None:
        self._items.append(Datagram(data, src, dst, arrival))

    def extend(self, other: Iterable[Datagram]) -> None:
        self._items.extend(other)

    def __iter__(self) -> Iterator[Datagram]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Datagram:
        return self._items[index]

    def __repr__(self) -> str:
        return f"Datagrams({len(self._items)})"
