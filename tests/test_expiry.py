"""The compiled binding cache expiry heap (ext/expiry.pyx) against a reference model: a dict of
the rows armed and their deadlines, scanned in (when, row) order."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmaload._ext import expiry
from lmaload.protocol.binding_cache import BCE_DTYPE, BceState, BindingCache

ROWS = 40
# Few distinct deadlines, so that ties (same when, several rows; same row armed twice) abound.
whens = st.integers(0, 30).map(lambda k: k / 2)
rows = st.integers(0, ROWS - 1)
ops = st.one_of(
    st.tuples(st.just("arm"), rows, whens),
    st.tuples(st.just("arm_many"), st.lists(st.tuples(rows, whens), max_size=60)),
    st.tuples(st.just("free"), rows),
    st.tuples(st.just("pop_due"), whens),
    st.tuples(st.just("next")),
    st.tuples(st.just("grow")),
    st.tuples(st.just("compact")),
)


class Model:
    """The cache columns the heap reads, and the rows armed (row → when) that pop_due has not
    returned yet."""

    def __init__(self) -> None:
        self.rows = np.zeros(ROWS // 4, dtype=BCE_DTYPE)
        self.armed: dict[int, float] = {}

    def ensure(self, row: int) -> None:
        while row >= len(self.rows):  # the cache reallocates its rows when it grows
            rows = np.zeros(2 * len(self.rows), dtype=BCE_DTYPE)
            rows[: len(self.rows)] = self.rows
            self.rows = rows

    def arm(self, row: int, when: float) -> None:
        self.ensure(row)
        self.rows["state"][row] = BceState.ACTIVE
        self.rows["expires"][row] = when
        self.armed[row] = when

    def free(self, row: int) -> None:
        if row < len(self.rows):
            self.rows["state"][row] = BceState.FREE
        self.armed.pop(row, None)

    def next(self) -> float | None:
        return min(self.armed.values(), default=None)

    def pop_due(self, now: float) -> list[int]:
        due = sorted((when, row) for row, when in self.armed.items() if when <= now)
        for _, row in due:
            del self.armed[row]
        return [row for _, row in due]

    def columns(self) -> tuple[np.ndarray, np.ndarray, int]:
        """The columns and the rows in use, as the engine passes them."""
        return self.rows["expires"], self.rows["state"], int(np.count_nonzero(self.rows["state"]))


def run(sequence: list[tuple]) -> None:
    model, heap = Model(), expiry.ExpiryHeap()
    for op, *args in sequence:
        if op == "arm":
            model.arm(*args)
            heap.push(*args)
        elif op == "arm_many":
            for row, when in args[0]:
                model.arm(row, when)
            heap.push_many(
                np.array([r for r, _ in args[0]], dtype=np.int64),
                np.array([w for _, w in args[0]], dtype=np.float64),
            )
        elif op == "free":
            model.free(*args)
        elif op == "pop_due":
            got = heap.pop_due(args[0], *model.columns())
            assert got.dtype == np.int64
            assert got.tolist() == model.pop_due(args[0])
        elif op == "next":
            assert heap.next(*model.columns()) == model.next()
        elif op == "grow":
            model.ensure(2 * len(model.rows))
        elif op == "compact":
            heap.compact(*model.columns()[:2])
            assert len(heap) == len(model.armed)
        assert len(heap) >= len(model.armed)
    assert heap.next(*model.columns()) == model.next()
    assert heap.pop_due(1e9, *model.columns()).tolist() == model.pop_due(1e9)
    assert heap.next(*model.columns()) is None
    assert len(heap) == 0


@settings(max_examples=400, deadline=None)
@given(st.lists(ops, max_size=80))
def test_matches_the_model(sequence: list[tuple]) -> None:
    run(sequence)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.just("arm_many"), st.lists(st.tuples(rows, whens), min_size=300, max_size=600))
        | ops,
        max_size=30,
    )
)
def test_matches_the_model_past_the_compaction_threshold(sequence: list[tuple]) -> None:
    run(sequence)


def test_same_when_same_row_is_returned_once_and_ties_go_by_row() -> None:
    model = Model()
    heap = expiry.ExpiryHeap()
    for row in (7, 3, 7, 5, 3):
        model.arm(row, 2.0)
        heap.push(row, 2.0)
    assert heap.next(*model.columns()) == 2.0
    assert heap.pop_due(1.9, *model.columns()).tolist() == []
    assert heap.pop_due(2.0, *model.columns()).tolist() == [3, 5, 7]
    assert heap.next(*model.columns()) is None


def test_refreshes_do_not_grow_it_without_bound() -> None:
    model, heap = Model(), expiry.ExpiryHeap()
    live = np.arange(ROWS, dtype=np.int64)
    for k in range(2000):
        when = np.full(ROWS, 100.0 + k)
        for row in live:
            model.arm(int(row), 100.0 + k)
        heap.push_many(live, when)
        assert heap.next(*model.columns()) == 100.0 + k
        assert len(heap) <= 2 * ROWS + 1024 + ROWS
    assert heap.pop_due(1e9, *model.columns()).tolist() == live.tolist()


def test_with_a_real_binding_cache_that_grows() -> None:
    """The columns of a BindingCache, passed per call, across its reallocation."""
    from ipaddress import IPv6Address

    cache, heap = BindingCache(capacity=4), expiry.ExpiryHeap()
    mag = IPv6Address("2001:db8::1")
    for i in range(50):
        key = (0x20010DB8 << 96 | i << 64).to_bytes(16, "big") + bytes([64])
        row = cache.insert(b"mn%d" % i, (key,), None, state=BceState.ACTIVE, proxy_coa=mag)
        cache.set(row, expires=1000.0 - i)
        heap.push(row, 1000.0 - i)
    cache.delete(49)
    cache.set(0, expires=2000.0)
    heap.push(0, 2000.0)
    rows = heap.pop_due(1000.0, cache.rows["expires"], cache.rows["state"], len(cache))
    assert rows.tolist() == list(range(48, 0, -1))
    assert heap.next(cache.rows["expires"], cache.rows["state"], len(cache)) == 2000.0


def test_rejects_nan_and_mismatched_batches() -> None:
    heap = expiry.ExpiryHeap()
    with pytest.raises(ValueError):
        heap.push(1, float("nan"))
    with pytest.raises(ValueError):
        heap.push_many(np.array([1, 2]), np.array([1.0]))
    assert len(heap) == 0
