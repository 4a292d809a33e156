"""Exact, mergeable latency histograms with HdrHistogram semantics, recorded from numpy arrays.

The bucket layout is HdrHistogram's (Gil Tene's), so counts index the same value ranges as any
HdrHistogram with the same lowest value, highest value and significant digits, and ``encode`` /
``decode`` use its V2 compressed interchange format (the "HISTFAAA..." base64 strings that
HdrHistogram's tools read). Values are integers in one unit, microseconds for latencies: the
default range is 1 µs to 60 s with 3 significant digits. Merging adds counts, so shard results
combine exactly.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

V2_COOKIE = 0x1C849313
V2_COMPRESSED_COOKIE = 0x1C849314
_V2_HEADER = struct.Struct(">iiiiqqd")  # cookie, payload length, normalizing offset, digits,
# lowest trackable value, highest trackable value, integer-to-double conversion ratio


@dataclass(frozen=True)
class Layout:
    """HdrHistogram's bucket geometry for a (lowest, highest, significant digits) triple."""

    lowest: int
    highest: int
    digits: int

    def __post_init__(self) -> None:
        if self.lowest < 1 or self.highest < 2 * self.lowest or not 1 <= self.digits <= 5:
            raise ValueError("need 1 <= lowest, 2 * lowest <= highest, 1 <= digits <= 5")

    @property
    def unit_magnitude(self) -> int:
        return self.lowest.bit_length() - 1

    @property
    def sub_bucket_half_count_magnitude(self) -> int:
        single_unit_resolution = 2 * 10**self.digits
        return max(math.ceil(math.log2(single_unit_resolution)), 1) - 1

    @property
    def sub_bucket_half_count(self) -> int:
        return 1 << self.sub_bucket_half_count_magnitude

    @property
    def bucket_count(self) -> int:
        smallest_untrackable = (2 * self.sub_bucket_half_count) << self.unit_magnitude
        buckets = 1
        while smallest_untrackable <= self.highest:
            if smallest_untrackable > (2**63 - 1) // 2:
                return buckets + 1
            smallest_untrackable <<= 1
            buckets += 1
        return buckets

    @property
    def counts_length(self) -> int:
        return (self.bucket_count + 1) * self.sub_bucket_half_count

    def index_of(self, values: np.ndarray) -> np.ndarray:
        """Counts index of each (non-negative, in-range) value."""
        values = values.astype(np.int64)
        mask = (2 * self.sub_bucket_half_count - 1) << self.unit_magnitude
        # bit_length(v | mask), exact through frexp while values stay below 2**53.
        bit_length = np.frexp((values | mask).astype(np.float64))[1].astype(np.int64)
        bucket = bit_length - self.unit_magnitude - self.sub_bucket_half_count_magnitude - 1
        sub_bucket = values >> (bucket + self.unit_magnitude)
        return ((bucket + 1) << self.sub_bucket_half_count_magnitude) + (
            sub_bucket - self.sub_bucket_half_count
        )

    def value_at(self, indexes: np.ndarray) -> np.ndarray:
        """Lowest value of each counts index's range."""
        indexes = np.asarray(indexes, dtype=np.int64)
        bucket = (indexes >> self.sub_bucket_half_count_magnitude) - 1
        sub_bucket = (indexes & (self.sub_bucket_half_count - 1)) + self.sub_bucket_half_count
        first = bucket < 0
        sub_bucket = np.where(first, sub_bucket - self.sub_bucket_half_count, sub_bucket)
        bucket = np.where(first, 0, bucket)
        return sub_bucket << (bucket + self.unit_magnitude)

    def highest_equivalent(self, indexes: np.ndarray) -> np.ndarray:
        """Highest value of each counts index's range."""
        indexes = np.asarray(indexes, dtype=np.int64)
        bucket = np.maximum((indexes >> self.sub_bucket_half_count_magnitude) - 1, 0)
        return self.value_at(indexes) + (np.int64(1) << (bucket + self.unit_magnitude)) - 1


LATENCY_LAYOUT = Layout(lowest=1, highest=60_000_000, digits=3)  # 1 µs .. 60 s
SMALL_BATCH = 256


class Histogram:
    """Counts per HdrHistogram bucket, plus how many values fell outside the range."""

    def __init__(self, layout: Layout = LATENCY_LAYOUT) -> None:
        self.layout = layout
        self.counts = np.zeros(layout.counts_length, dtype=np.int64)
        self.overflow = 0  # values above layout.highest (counted, not bucketed)
        self.underflow = 0  # negative values (counted, not bucketed)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def record(self, values: np.ndarray) -> None:
        """Record integer values (e.g. latencies in µs)."""
        values = np.asarray(values, dtype=np.int64)
        over = values > self.layout.highest
        under = values < 0
        self.overflow += int(over.sum())
        self.underflow += int(under.sum())
        kept = values[~(over | under)]
        if kept.size > SMALL_BATCH:
            self.counts += np.bincount(self.layout.index_of(kept), minlength=len(self.counts))
        elif kept.size:
            # A full-length bincount costs as much as the counts array; a few values go in place.
            np.add.at(self.counts, self.layout.index_of(kept), 1)

    def merge(self, other: Histogram) -> None:
        if other.layout != self.layout:
            raise ValueError("histograms with different layouts do not merge exactly")
        self.counts += other.counts
        self.overflow += other.overflow
        self.underflow += other.underflow

    def copy(self) -> Histogram:
        """An independent histogram with the same counts."""
        twin = Histogram(self.layout)
        np.copyto(twin.counts, self.counts)
        twin.overflow, twin.underflow = self.overflow, self.underflow
        return twin

    def since(self, earlier: Histogram) -> Histogram:
        """What was recorded after ``earlier``, a copy of this histogram taken before: the
        interval histogram of a cumulative one."""
        if earlier.layout != self.layout:
            raise ValueError("histograms with different layouts do not subtract exactly")
        interval = Histogram(self.layout)
        np.subtract(self.counts, earlier.counts, out=interval.counts)
        interval.overflow = self.overflow - earlier.overflow
        interval.underflow = self.underflow - earlier.underflow
        if interval.overflow < 0 or interval.underflow < 0 or (interval.counts < 0).any():
            raise ValueError("the earlier histogram holds values this one does not")
        return interval

    def percentile(self, percent: float) -> int:
        """The value at ``percent`` as HdrHistogram reports it: the highest value equivalent to
        the value of rank round(percent * total / 100) (the lowest one for percent 0; 0 for an
        empty histogram)."""
        total = self.total
        if total == 0:
            return 0
        rank = max(1, int(min(percent, 100.0) * total / 100 + 0.5))
        index = np.searchsorted(np.cumsum(self.counts), rank)[None]
        if percent <= 0:
            return int(self.layout.value_at(index)[0])
        return int(self.layout.highest_equivalent(index)[0])

    @property
    def max(self) -> int:
        nonzero = np.flatnonzero(self.counts)
        if nonzero.size == 0:
            return 0
        return int(self.layout.highest_equivalent(nonzero[-1:])[0])

    @property
    def min(self) -> int:
        nonzero = np.flatnonzero(self.counts)
        return int(self.layout.value_at(nonzero[:1])[0]) if nonzero.size else 0

    def encode(self) -> str:
        """The V2 compressed, base64 interchange form (what HdrHistogram's decoders read)."""
        payload = _zigzag_leb128(_payload_values(self.counts))
        layout = self.layout
        header = _V2_HEADER.pack(
            V2_COOKIE, len(payload), 0, layout.digits, layout.lowest, layout.highest, 1.0
        )
        compressed = zlib.compress(header + payload)
        return base64.b64encode(
            struct.pack(">ii", V2_COMPRESSED_COOKIE, len(compressed)) + compressed
        ).decode()

    @classmethod
    def decode(cls, text: str) -> Histogram:
        """Inverse of ``encode``; raises ValueError on anything that is not a V2 histogram."""
        try:
            raw = base64.b64decode(text, validate=True)
            cookie, length = struct.unpack_from(">ii", raw)
            if cookie != V2_COMPRESSED_COOKIE:
                raise ValueError(f"cookie {cookie:#x} is not a V2 compressed histogram")
            inner = zlib.decompress(raw[8 : 8 + length])
            cookie, payload_length, offset, digits, lowest, highest, _ = _V2_HEADER.unpack_from(
                inner
            )
        except (struct.error, zlib.error, ValueError) as exc:
            raise ValueError(f"not an HdrHistogram V2 encoding: {exc}") from None
        if cookie != V2_COOKIE or offset != 0:
            raise ValueError(f"unsupported histogram encoding (cookie {cookie:#x})")
        hist = cls(Layout(lowest, highest, digits))
        payload = inner[_V2_HEADER.size : _V2_HEADER.size + payload_length]
        index = 0
        for value in _read_zigzag_leb128(payload):
            if value < 0:
                index += -value
                continue
            if index >= len(hist.counts):
                raise ValueError("histogram payload runs past its layout")
            hist.counts[index] = value
            index += 1
        return hist


def _payload_values(counts: np.ndarray) -> np.ndarray:
    """The V2 payload's values up to the last count: each count in order, a run of n > 1 zeros
    as -n, a single zero as 0."""
    nonzero = np.flatnonzero(counts)
    if not nonzero.size:
        return np.zeros(0, dtype=np.int64)
    gaps = np.diff(nonzero, prepend=-1) - 1  # zeros before each count
    has_gap = gaps > 0
    at = np.arange(nonzero.size) + np.cumsum(has_gap)  # where each count goes
    values = np.empty(nonzero.size + int(has_gap.sum()), dtype=np.int64)
    values[at] = counts[nonzero]
    values[at[has_gap] - 1] = np.where(gaps[has_gap] > 1, -gaps[has_gap], 0)
    return values


def _zigzag_leb128(values: np.ndarray) -> bytes:
    """HdrHistogram's ZigZag LEB128 variant: at most 9 bytes a value, the 9th carrying 8 full
    bits."""
    encoded = ((values << 1) ^ (values >> 63)).astype(np.uint64)
    length = np.ones(len(values), dtype=np.int64)
    for k in range(1, 9):
        length += encoded >= np.uint64(1 << (7 * k))
    octets = np.empty((len(values), 9), dtype=np.uint8)
    for k in range(8):
        more = np.where(length > k + 1, 0x80, 0).astype(np.uint8)
        octets[:, k] = ((encoded >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8) | more
    octets[:, 8] = (encoded >> np.uint64(56)).astype(np.uint8)
    return octets[np.arange(9) < length[:, None]].tobytes()


def _read_zigzag_leb128(data: bytes):
    i = 0
    while i < len(data):
        value = 0
        for shift in range(0, 57, 7):
            byte = data[i]
            i += 1
            if shift == 56:
                value |= byte << 56
                break
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            if i >= len(data):
                raise ValueError("truncated varint in histogram payload")
        yield (value >> 1) ^ -(value & 1)
