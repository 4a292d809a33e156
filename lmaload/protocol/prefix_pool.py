"""Allocation of home network prefixes from the LMA's pool (RFC 5213 §5.3.2, ALL_ZERO HNP).
Prefixes are handed out as binding-cache prefix keys (``binding_cache.prefix_key``)."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv6Network


class PrefixPool:
    """Hands out the pool's /``length`` subnets in order, then the released ones, skipping any
    ``in_use`` says is taken (e.g. prefixes of sessions synchronised from a peer)."""

    def __init__(self, pool: IPv6Network, length: int, in_use: Callable[[bytes], bool]) -> None:
        self._base = int(pool.network_address)
        self._step = 1 << (128 - length)
        self._count = 1 << (length - pool.prefixlen)
        self._suffix = bytes((length,))
        self._next = 0
        self._released: list[bytes] = []
        self._in_use = in_use

    def allocate(self) -> bytes | None:
        """The key of a free prefix, or None when the pool is exhausted (status 130)."""
        while self._released:
            key = self._released.pop()
            if not self._in_use(key):
                return key
        while self._next < self._count:
            key = (self._base + self._next * self._step).to_bytes(16, "big") + self._suffix
            self._next += 1
            if not self._in_use(key):
                return key
        return None

    def release(self, key: bytes) -> None:
        """Return a prefix this pool handed out (others are ignored)."""
        offset = int.from_bytes(key[:16], "big") - self._base
        if key[16:] == self._suffix and 0 <= offset < self._count * self._step:
            self._released.append(key)
