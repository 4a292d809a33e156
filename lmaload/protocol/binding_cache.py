"""The LMA binding cache (RFC 5213 §5.1, spec-digest §3.6), columnar.

Fixed-size fields live in one numpy structured array, one row per binding cache entry, grown by
half (by ``GROW_LIMIT`` rows at most), or made room for at once before the first entry
(``reserve``); freed rows are reused. The array is a view of a larger zeroed block reserved up
front (``RESERVED_ROWS``): the kernel maps its pages only when they are first written, so it
costs no memory until used, and growing within it exposes more rows without a copy (a copy of
300 000 rows stalls the LMA for about 40 ms, in the middle of the latencies a run measures).

The variable-size fields — MN identifier, the set of home network prefixes, MN link-layer
identifier — are Python lists indexed by row. A compiled index (``lmaload._ext.cache_index``)
finds rows by MN identifier, by home network prefix and by Proxy-CoA (the MAG), and keeps the
free rows.

Prefixes and MAGs are held in their packed form, which the compiled fast lane
(``lmaload.protocol.lma.fast_lane``) reads and writes without building ``ipaddress`` objects: a
*prefix key* is the 16 octets of the network address followed by the prefix length, a MAG key
the 16 octets of its address. The methods taking and giving ``IPv6Network`` / ``IPv6Address``
convert.

Each row has a ``state``: the entry is served here (ACTIVE), de-registered and waiting
MinDelayBeforeBCEDelete (DEREGISTERED), a copy synchronised from the LMA in ``anchor`` (SYNCED),
or was served here until its MAG switched over to another LMA (MOVED, spec-digest §8.8).
"""

from __future__ import annotations

import mmap
from ipaddress import IPv6Address, IPv6Network
from itertools import repeat
from typing import Any

import numpy as np

from lmaload._ext.cache_index import CacheIndex
from lmaload.bce import BCE_DTYPE, BceState


def prefix_key(prefix: IPv6Network) -> bytes:
    """The 17-octet key of ``prefix``: network address, then prefix length."""
    return prefix.network_address.packed + bytes((prefix.prefixlen,))


def key_network(key: bytes) -> IPv6Network:
    """The network a prefix key stands for."""
    return IPv6Network((int.from_bytes(key[:16], "big"), key[16]))


ADDRESS_FIELDS = frozenset({"proxy_coa", "lla", "anchor"})
INITIAL_CAPACITY = 64
RESERVED_ROWS = 1 << 24  # 1.3 GB of address space, not of memory
# Rows a growth adds at most: each new row's list slots are written at once (a growth by half
# at 1 M rows wrote 40 MB, 5 000 pages first written, 40 ms where each costs 8 µs).
GROW_LIMIT = 32768


def _zeroed(rows: int, at_least: int) -> np.ndarray:
    """A zeroed block of ``rows`` rows, or of ``at_least`` where the system refuses to reserve
    that much address space (strict overcommit: the cache then grows by copying)."""
    try:
        return np.zeros(rows, dtype=BCE_DTYPE)
    except MemoryError:
        return np.zeros(at_least, dtype=BCE_DTYPE)


class BindingCache:
    """Rows of BCE_DTYPE plus the variable-size columns and the lookup indexes."""

    def __init__(self, capacity: int = INITIAL_CAPACITY) -> None:
        self._block = _zeroed(max(capacity, RESERVED_ROWS), capacity)
        self.rows = self._block[:capacity]
        self._columns = self._views()
        # The few addresses the cache holds (MAGs, LMAs, link-local ones), converted once.
        self._address_of: dict[bytes, IPv6Address] = {}
        self._octets_of: dict[IPv6Address, np.ndarray] = {}
        self.mn_ids: list[bytes] = [b""] * capacity
        self.prefix_keys: list[tuple[bytes, ...]] = [()] * capacity
        self.ll_ids: list[bytes | None] = [None] * capacity
        self.index = CacheIndex(self.mn_ids)
        self.index.grow(capacity)

    def __len__(self) -> int:
        return len(self.rows) - self.index.free_count

    # --- lookups -------------------------------------------------------------------------------

    def by_prefix(self, prefix: IPv6Network) -> int | None:
        return self.index.prefix_row(prefix_key(prefix))

    def by_mn(self, mn_id: bytes) -> set[int]:
        return set(self.index.mn_rows(mn_id))

    def by_mag(self, mag: IPv6Address) -> set[int]:
        return set(self.index.mag_rows(mag.packed))

    def mags_with(self, state: BceState) -> set[IPv6Address]:
        """The MAGs with an entry in ``state`` (from the index: no scan of the rows)."""
        return {self._address(m) for m in self.index.mags_with(self.rows["state"], state)}

    def prefixes(self, row: int) -> tuple[IPv6Network, ...]:
        """The home network prefixes of ``row``."""
        return tuple(key_network(key) for key in self.prefix_keys[row])

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.rows["state"] != BceState.FREE)

    def count(self, state: BceState) -> int:
        return self.index.state_count(state)

    def counts(self) -> dict[BceState, int]:
        """Entries in each state (counted as they change: no row is read)."""
        return {state: self.index.state_count(state) for state in BceState}

    # --- field access --------------------------------------------------------------------------

    def get(self, row: int, name: str) -> Any:
        value = self._columns[name][row]
        if name in ADDRESS_FIELDS:
            return self._address(value.tobytes())
        return value.item()

    def _address(self, octets: bytes) -> IPv6Address:
        address = self._address_of.get(octets)
        if address is None:
            address = self._address_of[octets] = IPv6Address(octets)
        return address

    def state(self, row: int) -> BceState:
        return BceState(int(self.rows["state"][row]))

    def set(self, row: int, **fields: Any) -> None:
        """Assign fields of ``row``; IPv6Address values go to the address columns."""
        if "proxy_coa" in fields:
            self.move(row, fields["proxy_coa"].packed)
        if "state" in fields:
            self.index.restate(self.rows["state"][row], fields["state"])
        columns = self._columns
        for name, value in fields.items():
            if name in ADDRESS_FIELDS:
                octets = self._octets_of.get(value)
                if octets is None:
                    octets = self._octets_of[value] = np.frombuffer(value.packed, dtype=np.uint8)
                columns[name][row] = octets
            else:
                columns[name][row] = value

    def move(self, row: int, mag: bytes) -> None:
        """Index a live ``row`` under the MAG of packed address ``mag`` instead of its own (the
        caller writes the ``proxy_coa`` column)."""
        old = self.rows["proxy_coa"][row].tobytes()
        if old != mag and self.rows["state"][row] != BceState.FREE:
            self.index.move(row, old, mag)

    # --- insertion and deletion ----------------------------------------------------------------

    def insert(
        self,
        mn_id: bytes,
        prefix_keys: tuple[bytes, ...],
        ll_id: bytes | None,
        **fields: Any,
    ) -> int:
        """A new entry with ``fields`` (must include ``state`` and ``proxy_coa``); its row."""
        row = self.index.take()
        if row < 0:
            self._grow()
            row = self.index.take()
        self.rows[row] = np.zeros((), dtype=BCE_DTYPE)
        self.mn_ids[row] = mn_id
        self.prefix_keys[row] = prefix_keys
        self.ll_ids[row] = ll_id
        self.set(row, **fields)
        self.index.insert(row, mn_id, prefix_keys, self.rows["proxy_coa"][row].tobytes())
        return row

    def delete(self, row: int) -> None:
        self.index.remove(
            row, self.mn_ids[row], self.prefix_keys[row], self.rows["proxy_coa"][row].tobytes()
        )
        self.index.restate(self.rows["state"][row], BceState.FREE)
        self.rows["state"][row] = BceState.FREE
        self.mn_ids[row] = b""
        self.prefix_keys[row] = ()
        self.ll_ids[row] = None
        self.index.release(row)

    def reserve(self, rows: int) -> None:
        """Make room for ``rows`` entries before the first is inserted, writing every page of
        that room now (rows, lists and indexes), so that no insert up to then grows anything
        or writes a page for the first time: what a carrier LMA's configured binding capacity
        does. Not the per-entry objects (MN identifier, prefix keys): see ``lmaload._ext.arena``."""
        self.index.reserve(rows)  # first: it refuses a cache holding entries
        if len(self.rows) < rows:
            self._resize(rows)
        self._block[:rows].view(np.uint8)[:: mmap.PAGESIZE] = 0

    def _views(self) -> dict[str, np.ndarray]:
        """Each field of ``rows`` as an array (taking a field view costs more than indexing)."""
        return {name: self.rows[name] for name in BCE_DTYPE.names}  # type: ignore[union-attr]

    def _grow(self) -> None:
        old = len(self.rows)
        # By half (at 200 000 entries a cache grown by doubling holds a third again as many
        # free rows, with their list slots), and by GROW_LIMIT at most.
        self._resize(old + min(max(1, old // 2), GROW_LIMIT))

    def _resize(self, new: int) -> None:
        """``new`` rows in use, the added ones free."""
        old = len(self.rows)
        if new > len(self._block):
            block = _zeroed(max(new, 2 * len(self._block)), new)
            block[:old] = self.rows
            self._block = block
        self.rows = self._block[:new]
        self._columns = self._views()
        self.mn_ids.extend(repeat(b"", new - old))
        self.prefix_keys.extend(repeat((), new - old))
        self.ll_ids.extend(repeat(None, new - old))
        self.index.grow(new)
