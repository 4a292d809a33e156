"""Our vectorised histogram against the hdrhistogram package (the reference implementation):
same counts, same percentiles, and each decodes the other's interchange encoding."""

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from lmaload.measure.histogram import LATENCY_LAYOUT, Histogram, Layout

LAYOUTS = [
    LATENCY_LAYOUT,
    Layout(1, 3_600_000_000, 2),
    Layout(1000, 60_000_000_000, 3),
    Layout(1, 2, 1),
    Layout(7, 1_000_000, 5),
]


def _values(layout: Layout, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [
            rng.integers(0, layout.highest, 3000),
            rng.lognormal(8, 2, 3000).astype(np.int64).clip(0, layout.highest),
            [0, layout.lowest, layout.highest],
        ]
    )


def _reference(layout: Layout, values: np.ndarray) -> HdrHistogram:
    ref = HdrHistogram(layout.lowest, layout.highest, layout.digits)
    for v in values:
        ref.record_value(int(v))
    return ref


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
@pytest.mark.parametrize("seed", [1, 2])
def test_matches_reference_implementation(layout: Layout, seed: int) -> None:
    values = _values(layout, seed)
    ref = _reference(layout, values)
    ours = Histogram(layout)
    ours.record(values)
    assert ours.layout.counts_length == ref.counts_len
    assert np.array_equal(ours.counts, np.array(ref.counts[: ref.counts_len]))
    for p in (0, 0.1, 1, 25, 50, 75, 90, 99, 99.9, 99.99, 100):
        assert ours.percentile(p) == ref.get_value_at_percentile(p), p
    assert ours.max == ref.get_max_value()
    assert ours.total == ref.get_total_count()


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_interchange_encoding_both_ways(layout: Layout) -> None:
    values = _values(layout, 3)
    ours = Histogram(layout)
    ours.record(values)
    theirs = HdrHistogram.decode(ours.encode())
    assert np.array_equal(np.array(theirs.counts[: theirs.counts_len]), ours.counts)
    back = Histogram.decode(_reference(layout, values).encode().decode())
    assert back.layout == layout and np.array_equal(back.counts, ours.counts)


def test_merge_is_exact() -> None:
    values = _values(LATENCY_LAYOUT, 4)
    whole, a, b = Histogram(), Histogram(), Histogram()
    whole.record(values)
    a.record(values[::2])
    b.record(values[1::2])
    a.merge(b)
    assert np.array_equal(a.counts, whole.counts)
    assert Histogram.decode(a.encode()).counts.tolist() == whole.counts.tolist()
    with pytest.raises(ValueError):
        a.merge(Histogram(Layout(1, 1000, 2)))


def test_an_interval_is_the_difference_of_two_cumulative_snapshots() -> None:
    values = _values(LATENCY_LAYOUT, 6)
    cumulative, second_half = Histogram(), Histogram()
    cumulative.record(np.append(values[:4000], -1))
    before = cumulative.copy()
    cumulative.record(np.append(values[4000:], 2**40))
    second_half.record(np.append(values[4000:], 2**40))
    assert before.total == 4000 and before.underflow == 1  # the copy did not move on
    interval = cumulative.since(before)
    assert np.array_equal(interval.counts, second_half.counts)
    assert (interval.overflow, interval.underflow) == (1, 0)
    assert interval.percentile(99) == second_half.percentile(99)
    with pytest.raises(ValueError, match="does not"):
        before.since(cumulative)
    with pytest.raises(ValueError, match="layouts"):
        cumulative.since(Histogram(Layout(1, 1000, 2)))


def test_small_and_large_batches_record_alike() -> None:
    values = _values(LATENCY_LAYOUT, 5)
    whole, pieces = Histogram(), Histogram()
    whole.record(values)
    for start in range(0, len(values), 7):
        pieces.record(values[start : start + 7])
    assert np.array_equal(pieces.counts, whole.counts)


def test_out_of_range_values_are_counted_apart() -> None:
    h = Histogram()
    h.record(np.array([-5, 10, 60_000_001, 2**40]))
    assert (h.total, h.overflow, h.underflow) == (1, 2, 1)


def test_empty_and_bad_encodings() -> None:
    empty = Histogram()
    assert empty.percentile(99) == 0 and empty.max == 0
    assert Histogram.decode(empty.encode()).total == 0
    for bad in ("", "HISTFAAA", "not base64!", "AAAAAAAAAAAA"):
        with pytest.raises(ValueError):
            Histogram.decode(bad)
