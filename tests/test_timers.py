"""The engines' timer heap (lmaload.protocol.timers.Timers) against a dict of deadlines: the same
keys come due in the same order whatever is armed, moved and cancelled, and the heap stays within
a bound of the armed timers however many were cancelled behind a distant deadline. (Deadlines
are kept distinct: among equal ones, the first armed comes first.)"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from lmaload.protocol.timers import SWEEP_SLACK, Timers


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 3_000))
def test_timers_match_a_dict_of_deadlines(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    timers, model = Timers(), {}
    now, count = 0.0, 0
    for _ in range(steps):
        op = rng.random()
        key = ("k", rng.randrange(40))
        if op < 0.5:
            count += 1
            when = now + rng.choice((0.0, 0.5, 1.0, rng.random() * 3)) + count * 1e-9  # no ties
            timers.arm(key, when)
            model[key] = when
        elif op < 0.8:
            timers.cancel(key)
            model.pop(key, None)
        else:
            now += rng.random()
            while (key := timers.pop_due(now)) is not None:
                expected = min((k for k in model if model[k] <= now), key=model.__getitem__)
                assert key == expected
                del model[key]
            assert all(when > now for when in model.values())
        assert timers.next() == (min(model.values()) if model else None)
        assert len(timers._heap) <= 2 * len(model) + SWEEP_SLACK + 1


def test_cancelled_timers_behind_a_distant_one_are_swept() -> None:
    timers = Timers()
    timers.arm("hello", 1.0)
    for i in range(25_000):
        timers.arm(("ssrep", i), 2.0)
        timers.cancel(("ssrep", i))
    assert len(timers._heap) <= 2 + SWEEP_SLACK + 1
    assert timers.pop_due(1.0) == "hello" and timers.next() is None
