"""The batch type that flows in and out of the sans-IO engines.

A datagram is one whole Mobility Header with the IPv6 source and destination of its checksum
pseudo-header: for raw IPv6 sockets those are the packet's addresses; for the UDP/5436 transport
of RFC 5844 the driver strips (on receive) or adds (on send) the inner IPv6 header that carries
them.

A batch holds, in order, plain ``Datagram`` tuples and ``Columns``: runs of datagrams over one
buffer with packed addresses, as the batched socket calls and the compiled codecs produce them.
Iterating a batch gives ``Datagram`` tuples either way (building them for columns); an engine's
fast lane and a transport take the columns as they are (``parts``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import NamedTuple

import numpy as np


class Datagram(NamedTuple):
    """One Mobility Header and its pseudo-header addresses; ``arrival`` is when the kernel
    received it (Unix seconds), None where unknown or for datagrams to send."""

    data: bytes
    src: IPv6Address
    dst: IPv6Address
    arrival: float | None = None


@dataclass(frozen=True)
class Columns:
    """Datagram ``i`` is ``buf[starts[i]:ends[i]]`` (uint8 buffer, int64 bounds) from ``src[i]``
    to ``dst[i]`` (packed IPv6 addresses, (n, 16) uint8), received at ``arrival[i]`` (Unix
    seconds, NaN where unknown; None: all unknown)."""

    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    arrival: np.ndarray | None = None

    @classmethod
    def from_offsets(
        cls, buf: np.ndarray, offsets: np.ndarray, src: np.ndarray, dst: np.ndarray
    ) -> Columns:
        """Datagrams laid end to end: datagram ``i`` is ``buf[offsets[i]:offsets[i + 1]]``."""
        return cls(buf, offsets[:-1], offsets[1:], src, dst)

    @classmethod
    def of(cls, datagrams: Sequence[Datagram]) -> Columns:
        """The same datagrams laid out as columns."""
        payloads = [d.data for d in datagrams]
        offsets = np.zeros(len(payloads) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in payloads], out=offsets[1:])
        buf = np.frombuffer(b"".join(payloads), dtype=np.uint8)

        def packed(addresses: Iterable[IPv6Address]) -> np.ndarray:
            octets = b"".join(a.packed for a in addresses)
            return np.frombuffer(octets, dtype=np.uint8).reshape(-1, 16)

        arrival = [math.nan if d.arrival is None else d.arrival for d in datagrams]
        return cls(
            buf,
            offsets[:-1],
            offsets[1:],
            packed(d.src for d in datagrams),
            packed(d.dst for d in datagrams),
            np.array(arrival, dtype=np.float64),
        )

    @classmethod
    def concat(cls, parts: Sequence[Columns]) -> Columns:
        """The datagrams of ``parts`` in order, in one buffer (copied, unless they share one)."""
        if len(parts) == 1:
            return parts[0]
        parts = _shared_runs(parts)
        if len(parts) == 1:
            return parts[0]
        compacted = [part.compact() for part in parts]
        sizes = np.cumsum([0] + [len(buf) for buf, _ in compacted])
        starts = np.concatenate(
            [o[:-1] + base for (_, o), base in zip(compacted, sizes, strict=False)]
        )
        ends = np.concatenate(
            [o[1:] + base for (_, o), base in zip(compacted, sizes, strict=False)]
        )
        arrival = None
        if any(p.arrival is not None for p in parts):
            arrival = np.concatenate(
                [p.arrival if p.arrival is not None else np.full(len(p), math.nan) for p in parts]
            )
        return cls(
            np.concatenate([buf for buf, _ in compacted]),
            starts,
            ends,
            np.concatenate([p.src for p in parts]),
            np.concatenate([p.dst for p in parts]),
            arrival,
        )

    def __len__(self) -> int:
        return len(self.starts)

    def datagram(self, i: int) -> Datagram:
        arrival = None if self.arrival is None else float(self.arrival[i])
        return Datagram(
            self.buf[self.starts[i] : self.ends[i]].tobytes(),
            IPv6Address(self.src[i].tobytes()),
            IPv6Address(self.dst[i].tobytes()),
            None if arrival is None or math.isnan(arrival) else arrival,
        )

    def compact(self) -> tuple[np.ndarray, np.ndarray]:
        """The datagrams end to end in a new buffer: (buf, offsets)."""
        lengths = self.ends - self.starts
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        at = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1] - self.starts, lengths)
        return self.buf[at], offsets

    def take(self, index: np.ndarray | slice) -> Columns:
        """The datagrams at ``index`` (same buffer)."""
        arrival = None if self.arrival is None else self.arrival[index]
        return Columns(
            self.buf,
            self.starts[index],
            self.ends[index],
            self.src[index],
            self.dst[index],
            arrival,
        )


def _shared_runs(parts: Sequence[Columns]) -> list[Columns]:
    """``parts`` with each run of consecutive parts over the same buffer made one (the PBAs of
    one encoding, released a few at a time, say): no octet copied for them."""
    runs: list[list[Columns]] = []
    for part in parts:
        if runs and runs[-1][0].buf is part.buf:
            runs[-1].append(part)
        else:
            runs.append([part])
    if len(runs) == len(parts):
        return list(parts)
    out = []
    for run in runs:
        if len(run) == 1:
            out.append(run[0])
            continue
        arrival = None
        if any(p.arrival is not None for p in run):
            arrival = np.concatenate(
                [p.arrival if p.arrival is not None else np.full(len(p), math.nan) for p in run]
            )
        out.append(
            Columns(
                run[0].buf,
                np.concatenate([p.starts for p in run]),
                np.concatenate([p.ends for p in run]),
                np.concatenate([p.src for p in run]),
                np.concatenate([p.dst for p in run]),
                arrival,
            )
        )
    return out


SMALL = 32  # up to this many rows, grouping by a dict beats sorting


def distinct(rows: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """The distinct rows of an (n, k) uint8 array (addresses, say) as bytes, and the index of
    each row among them."""
    n, width = rows.shape
    flat = rows.tobytes()
    if flat == flat[:width] * n:  # one key: a batch from one MAG, say
        return [flat[:width]] if n else [], np.zeros(n, dtype=np.intp)
    if n <= SMALL:
        index: dict[bytes, int] = {}
        inverse = np.empty(n, dtype=np.intp)
        for i in range(n):
            inverse[i] = index.setdefault(flat[i * width : (i + 1) * width], len(index))
        return list(index), inverse
    keys = np.ascontiguousarray(rows).view(np.dtype((np.void, width))).ravel()
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique.tolist(), inverse.reshape(-1)


class Datagrams:
    """An ordered batch of datagrams (see the module docstring). ``done`` counts the datagrams
    an engine has finished with, so that a driver can resume after one that raised."""

    __slots__ = ("_len", "_parts", "done")

    def __init__(self, items: Iterable[Datagram | Columns] = ()) -> None:
        self._parts: list[Datagram | Columns] = []
        self._len = 0
        self.done = 0
        self.extend(items)

    def append(
        self, data: bytes, src: IPv6Address, dst: IPv6Address, arrival: float | None = None
    ) -> None:
        self._parts.append(Datagram(data, src, dst, arrival))
        self._len += 1

    def extend(self, other: Iterable[Datagram | Columns]) -> None:
        parts = other._parts if isinstance(other, Datagrams) else other
        for part in parts:
            if isinstance(part, Columns):
                if not len(part):
                    continue
                self._len += len(part)
            else:
                self._len += 1
            self._parts.append(part)

    def parts(self) -> list[Datagram | Columns]:
        """The batch as it is held: datagrams and columns, in order."""
        return self._parts

    def after(self, count: int) -> Datagrams:
        """The datagrams after the first ``count``."""
        rest = Datagrams()
        for part in self._parts:
            size = len(part) if isinstance(part, Columns) else 1
            if count >= size:
                count -= size
                continue
            rest.extend([part.take(slice(count, None)) if isinstance(part, Columns) else part])
            count = 0
        return rest

    def __iter__(self) -> Iterator[Datagram]:
        for part in self._parts:
            if isinstance(part, Columns):
                for i in range(len(part)):
                    yield part.datagram(i)
            else:
                yield part

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> Datagram:
        if index < 0:
            index += self._len
        for part in self._parts:
            size = len(part) if isinstance(part, Columns) else 1
            if index < size:
                return part.datagram(index) if isinstance(part, Columns) else part
            index -= size
        raise IndexError("datagram index out of range")

    def __repr__(self) -> str:
        return f"Datagrams({self._len})"
