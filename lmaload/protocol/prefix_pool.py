"""Allocation of home network prefixes from the LMA's pool (RFC 5213 §5.3.2, ALL_ZERO HNP)."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv6Network


class PrefixPool:
    """Hands out the pool's /``length`` subnets in order, then the released ones, skipping any
    ``in_use`` says is taken (e.g. prefixes of sessions synchronised from a peer)."""

    def __init__(
        self, pool: IPv6Network, length: int, in_use: Callable[[IPv6Network], bool]
    ) -> None:
        self._base = int(pool.network_address)
        self._step = 1 << (128 - length)
        self._count = 1 << (length - pool.prefixlen)
        self._length = length
        self._next = 0
        self._released: list[IPv6Network] = []
        self._in_use = in_use

    def allocate(self) -> IPv6Network | None:
        """A free prefix, or None when the pool is exhausted (status 130)."""
        while self._released:
            prefix = self._released.pop()
            if not self._in_use(prefix):
                return prefix
        while self._next < self._count:
            # An int, not an IPv6Address: IPv6Network would turn that into a string and back.
            prefix = IPv6Network((self._base + self._next * self._step, self._length))
            self._next += 1
            if not self._in_use(prefix):
                return prefix
        return None

    def release(self, prefix: IPv6Network) -> None:
        """Return a prefix this pool handed out (others are ignored)."""
        offset = int(prefix.network_address) - self._base
        if prefix.prefixlen == self._length and 0 <= offset < self._count * self._step:
            self._released.append(prefix)
