"""The compiled binding-cache index against dicts and sets doing the same: rows by MN
identifier, by prefix key and by MAG, the MAGs with a row in a given state, and the free rows,
through inserts, removals, moves and growth far past the tables' first size (so resizes and
backward-shift deletions are exercised)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lmaload._ext.cache_index import CacheIndex


class Model:
    """The index as the dicts and sets the binding cache used to keep."""

    def __init__(self) -> None:
        self.by_mn: dict[bytes, set[int]] = {}
        self.by_prefix: dict[bytes, int] = {}
        self.by_mag: dict[bytes, set[int]] = {}

    def insert(self, row: int, mn: bytes, keys: tuple[bytes, ...], mag: bytes) -> None:
        self.by_mn.setdefault(mn, set()).add(row)
        for key in keys:
            self.by_prefix[key] = row
        self.by_mag.setdefault(mag, set()).add(row)

    def remove(self, row: int, mn: bytes, keys: tuple[bytes, ...], mag: bytes) -> None:
        self.by_mn[mn].discard(row)
        if not self.by_mn[mn]:
            del self.by_mn[mn]
        for key in keys:
            self.by_prefix.pop(key, None)
        self.by_mag[mag].discard(row)


def check(index: CacheIndex, model: Model, mns: list[bytes], keys: list[bytes], mags: list[bytes]):
    for mn in mns:
        assert sorted(index.mn_rows(mn)) == sorted(model.by_mn.get(mn, ()))
    for key in keys:
        assert index.prefix_row(key) == model.by_prefix.get(key)
    for mag in mags:
        assert sorted(index.mag_rows(mag)) == sorted(model.by_mag.get(mag, ()))
    assert index.mn_count == len(model.by_mn)
    assert index.prefix_count == len(model.by_prefix)


def run(seed: int, steps: int, mn_pool: int, mag_pool: int) -> None:
    rng = random.Random(seed)
    mn_ids: list[bytes] = []
    index = CacheIndex(mn_ids)
    model = Model()
    live: dict[int, tuple[bytes, tuple[bytes, ...], bytes]] = {}
    # Identifiers of every length up to 40 (so every tail length of the hash), some sharing all
    # but their last octets.
    mns = [b"mn%d@" % i + b"x" * (i % 30) for i in range(mn_pool)]
    mags = [bytes(15) + bytes((i,)) for i in range(mag_pool)]
    keys_seen: list[bytes] = []
    prefix = 0
    for step in range(steps):
        if step % 97 == 0:  # lookups also while a grown table takes the old one's slots
            check(index, model, rng.sample(mns, min(len(mns), 20)), keys_seen[-50:], mags[:5])
        op = rng.random()
        if op < 0.6 or not live:
            row = index.take()
            if row < 0:
                size = max(1, 2 * len(mn_ids))
                mn_ids += [b""] * (size - len(mn_ids))
                index.grow(size)
                row = index.take()
            mn = rng.choice(mns)
            count = rng.choice((0, 1, 1, 1, 2))
            keys = tuple((prefix + k).to_bytes(16, "big") + bytes((64,)) for k in range(count))
            prefix += count
            if rng.random() < 0.05 and keys_seen:
                keys += (rng.choice(keys_seen),)  # a key entered again points at this row
            keys_seen += keys
            mag = rng.choice(mags)
            mn_ids[row] = mn
            index.insert(row, mn, keys, mag)
            model.insert(row, mn, keys, mag)
            live[row] = (mn, keys, mag)
        elif op < 0.9:
            row = rng.choice(list(live))
            mn, keys, mag = live.pop(row)
            index.remove(row, mn, keys, mag)
            model.remove(row, mn, keys, mag)
            mn_ids[row] = b""
            index.release(row)
        else:
            row = rng.choice(list(live))
            mn, keys, mag = live[row]
            new = rng.choice(mags)
            index.move(row, mag, new)
            model.by_mag[mag].discard(row)
            model.by_mag.setdefault(new, set()).add(row)
            live[row] = (mn, keys, new)
    assert index.free_count == index.rows - len(live)
    state = np.zeros(index.rows, dtype=np.uint8)
    for row in live:
        state[row] = rng.randrange(1, 5)
    for wanted in range(5):
        expected = {mag for row, (_, _, mag) in live.items() if state[row] == wanted}
        assert sorted(index.mags_with(state, wanted)) == sorted(expected)
    check(index, model, mns, [*keys_seen, bytes(17)], [*mags, bytes(16)])


@pytest.mark.parametrize("seed", range(4))
def test_index_matches_dicts_and_sets_through_growth(seed: int) -> None:
    run(seed, steps=20_000, mn_pool=3_000 if seed % 2 else 30, mag_pool=200)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 400), st.integers(1, 50), st.integers(1, 70))
def test_index_matches_dicts_and_sets(seed: int, steps: int, mn_pool: int, mag_pool: int) -> None:
    run(seed, steps, mn_pool, mag_pool)


def test_rows_are_taken_lowest_first_then_last_freed_first() -> None:
    mn_ids = [b""] * 4
    index = CacheIndex(mn_ids)
    index.grow(4)
    assert [index.take() for _ in range(3)] == [0, 1, 2]
    index.release(1)
    index.release(0)
    assert [index.take(), index.take(), index.take(), index.take()] == [0, 1, 3, -1]
    index.grow(6)
    assert [index.take(), index.take()] == [4, 5]


def test_bad_arguments_raise_instead_of_writing_out_of_bounds() -> None:
    index = CacheIndex([b""] * 2)
    index.grow(2)
    with pytest.raises(IndexError):
        index.insert(2, b"mn", (), bytes(16))
    with pytest.raises(ValueError):
        index.insert(0, b"mn", (b"short",), bytes(16))
    with pytest.raises(ValueError):
        index.mag_rows(b"short")
    with pytest.raises(ValueError):
        index.release(0)  # nothing taken: both rows are free already
    with pytest.raises(KeyError):
        index.remove(1, b"mn", (), bytes(16))


def test_a_growing_table_maps_its_pages_a_few_per_insert() -> None:
    """Growth maps the next table ahead, a few pages per insert: no run of inserts faults in a
    whole table (on a virtual machine whose host takes back free memory, each first write of a
    page costs 5-10 µs; a table of 6 MiB mapped at once stalled the LMA 20 ms)."""
    resource = pytest.importorskip("resource")
    count, window = 60_000, 1000
    mns = [b"mn-%07d" % i for i in range(count)]
    keys = [(i.to_bytes(16, "big") + b"\x40",) for i in range(count)]
    index = CacheIndex(mns)
    index.grow(count)
    mag = bytes(16)
    worst = 0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for done in range(count):
        row = index.take()
        index.insert(row, mns[row], keys[row], mag)
        if done % window == window - 1:
            now = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            worst, faults = max(worst, now - faults), now
    # Both spares together take 128 pages per 1 000 inserts (8 + 24 octets a slot, 16 slots'
    # worth an insert); a table mapped by its moves' random writes took 630 within 1 000.
    assert worst <= 400


def test_a_reserved_index_takes_its_rows_without_a_page_mapped_or_a_table_grown() -> None:
    resource = pytest.importorskip("resource")
    count = 60_000
    mns = [b"mn-%07d" % i for i in range(count)]
    keys = [(i.to_bytes(16, "big") + b"\x40",) for i in range(count)]
    index = CacheIndex(mns)
    index.reserve(count)
    assert index.rows == index.free_count == count
    mag = bytes(16)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(count):
        row = index.take()
        index.insert(row, mns[row], keys[row], mag)
    # Unreserved, the same inserts map about 2 200 pages (see the test above).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults <= 50
    assert index.mn_rows(mns[count - 1]) == [count - 1]
    assert index.prefix_row(keys[0][0]) == 0


def test_reserve_is_refused_once_rows_are_indexed() -> None:
    index = CacheIndex([b"mn"])
    index.grow(1)
    index.insert(index.take(), b"mn", (bytes(17),), bytes(16))
    with pytest.raises(ValueError, match="reserve before"):
        index.reserve(10)


def test_reserve_after_a_spare_was_prepared_grows_into_tables_of_the_right_size() -> None:
    """A table once half full has a spare prepared for its growth; reserve replaces the table,
    and the spare, sized for the old one, must not be taken by the next growth."""
    count = 20_000
    mns = [b"mn-%07d" % i for i in range(count)]
    keys = [(i.to_bytes(16, "big") + b"\x40",) for i in range(count)]
    mag = bytes(16)
    index = CacheIndex(mns)
    index.grow(count)
    for row in range(600):  # past half of the first 1 024 slots
        index.insert(index.take(), mns[row], keys[row], mag)
    for row in range(600):
        index.remove(row, mns[row], keys[row], mag)
        index.release(row)
    index.reserve(1000)
    for _ in range(count):
        row = index.take()
        index.insert(row, mns[row], keys[row], mag)
    assert all(index.mn_rows(mns[r]) == [r] for r in range(count))
    assert all(index.prefix_row(keys[r][0]) == r for r in range(count))
