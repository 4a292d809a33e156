"""A binding cache's index as comparable values, for the differential tests of the compiled
paths against the reference one: every live entry's rows by MN identifier, by prefix key and by
MAG, how many identifiers and prefix keys the index holds (so stale entries show too), and the
entries in each state, checked against the rows."""

from __future__ import annotations

import numpy as np

from lmaload.protocol.binding_cache import BceState, BindingCache


def index_state(cache: BindingCache) -> tuple:
    index = cache.index
    live = cache.live_rows()
    mns = sorted({cache.mn_ids[r] for r in live})
    keys = sorted({k for r in live for k in cache.prefix_keys[r]})
    mags = sorted({cache.rows["proxy_coa"][r].tobytes() for r in live})
    counted = np.bincount(cache.rows["state"], minlength=len(BceState))
    assert cache.counts() == {state: counted[state] for state in BceState}
    return (
        [(mn, sorted(index.mn_rows(mn))) for mn in mns],
        [(key, index.prefix_row(key)) for key in keys],
        [(mag, sorted(index.mag_rows(mag))) for mag in mags],
        index.mn_count,
        index.prefix_count,
        len(cache),
    )
