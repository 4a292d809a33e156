"""The compiled SS-REP encoder over the binding cache (ext/bce_sync.pyx) must give the octets of
the engine's reference loop — session_options, pack_sessions, encode_mh — split at the same
sessions, with the same Identifiers and flags, and fail where the reference fails."""

import math
from ipaddress import IPv6Address

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmaload._ext import bce_sync
from lmaload.bulk_types import SyncBatch
from lmaload.protocol.binding_cache import BceState, BindingCache
from lmaload.protocol.redundancy import session_options
from lmaload.wire import RestartCounter, StateSync, WireConfig, decode_mh, encode_mh
from lmaload.wire import codepoints as cp
from lmaload.wire.codepoints import DEFAULT_CONFIG
from lmaload.wire.messages import pack_sessions

OTHER_CONFIG = WireConfig(mh_state_sync=210, opt_pbci=230, opt_bci=231)
NOW = 1_790_000_000.25
SRC = IPv6Address("2001:db8:1::1")
DST = IPv6Address("2001:db8:2::2")


def reference(
    cache: BindingCache,
    sel: list[int],
    now: float,
    restart_counter: int | None,
    src: IPv6Address | None,
    dst: IPv6Address | None,
    identifier: int,
    step_identifiers: bool,
    ack: bool,
    more: bool,
    config: WireConfig,
) -> tuple[list[bytes], list[int]]:
    """The engine's loop: the messages, and the index of each one's first session (+ the end)."""
    sessions = [session_options(cache, int(r), now, deleted=False) for r in sel]
    lead = [] if restart_counter is None else [RestartCounter(restart_counter)]
    messages = pack_sessions(lead, sessions)
    sync_id = identifier
    datas, first = [], []
    for k, (options, carried) in enumerate(messages):
        if step_identifiers:
            sync_id = sync_id % 0xFFFF + 1
        ident = sync_id if step_identifiers else identifier
        flags = (cp.SS_FLAG_A if ack else 0) | (
            cp.SS_FLAG_M if more and k < len(messages) - 1 else 0
        )
        rep = StateSync(cp.SS_REPLY, ident, flags, tuple(options))
        datas.append(encode_mh(rep, src, dst, config))
        first.append(carried[0] if carried else len(sel))
    return datas, [*first, len(sel)]


def compiled(cache: BindingCache, sel: list[int], now: float, *args, **kwargs) -> SyncBatch:
    return bce_sync.encode_sessions(
        cache.rows,
        cache.mn_ids,
        cache.prefix_keys,
        cache.ll_ids,
        np.array(sel, dtype=np.int64),
        now,
        *args,
        **kwargs,
    )


def messages(batch: SyncBatch) -> list[bytes]:
    buf, offsets = batch.buf.tobytes(), batch.offsets
    return [buf[offsets[k] : offsets[k + 1]] for k in range(len(offsets) - 1)]


def outcome(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError:  # NetmaskValueError included
        return ValueError
    except OverflowError:
        return OverflowError


def check(cache, sel, now, rc, src, dst, identifier, step, ack, more, config) -> None:
    want = outcome(reference, cache, sel, now, rc, src, dst, identifier, step, ack, more, config)
    got = outcome(
        compiled,
        cache,
        sel,
        now,
        rc,
        src,
        dst,
        identifier,
        step_identifiers=step,
        ack=ack,
        more=more,
        config=config,
    )
    if isinstance(want, type):
        assert got is want
        return
    datas, first = want
    assert messages(got) == datas
    assert got.first.tolist() == first
    assert got.offsets.dtype == got.first.dtype == np.int64
    assert got.buf.dtype == np.uint8


# --- populations ---------------------------------------------------------------------------


def network_key(octets: bytes, length: int) -> bytes:
    value = int.from_bytes(octets, "big")
    value &= ((1 << 128) - 1) ^ ((1 << (128 - length)) - 1)
    return value.to_bytes(16, "big") + bytes([length])


@st.composite
def entries(draw: st.DrawFn) -> dict:
    n_keys = draw(st.integers(1, 3))
    keys = tuple(
        dict.fromkeys(
            network_key(draw(st.binary(min_size=16, max_size=16)), draw(st.integers(0, 128)))
            for _ in range(n_keys)
        )
    )
    return {
        "mn_id": draw(st.binary(min_size=1, max_size=120)),
        "keys": keys,
        "ll_id": draw(st.none() | st.binary(max_size=24)),
        "proxy_coa": IPv6Address(draw(st.binary(min_size=16, max_size=16))),
        "flags": draw(st.integers(0, 0xFFFF)),
        "seq": draw(st.integers(0, 0xFFFF)),
        "lifetime": draw(st.integers(0, 0xFFFF)),
        # Around now: expired, a fraction of a unit left, the 0xFFFF cap, exact multiples of 4.
        "expires": NOW
        + draw(
            st.floats(-1000, 300_000, allow_nan=False)
            | st.integers(-3, 8).map(lambda k: 4.0 * k)
            | st.sampled_from([0.0, 1e-9, -1e-9, 4 * 0xFFFF, 4 * 0xFFFF + 1e-3, 1e12])
        ),
        "ts": draw(st.just(0) | st.integers(1, 2**64 - 1)),
        "att": draw(st.integers(0, 0xFF)),
        "tunnel": draw(st.integers(0, 2**32 - 1)),
        "lla": draw(
            st.just(IPv6Address("::")) | st.binary(min_size=16, max_size=16).map(IPv6Address)
        ),
        "state": draw(st.sampled_from([BceState.ACTIVE, BceState.SYNCED])),
    }


def insert(cache: BindingCache, e: dict) -> int:
    row = cache.insert(
        e["mn_id"],
        e["keys"],
        e["ll_id"],
        state=e["state"],
        proxy_coa=e["proxy_coa"],
        anchor=SRC,
    )
    cache.set(
        row,
        **{k: e[k] for k in ("flags", "seq", "lifetime", "expires", "ts", "att", "tunnel", "lla")},
    )
    return row


@st.composite
def caches(draw: st.DrawFn) -> tuple[BindingCache, list[int]]:
    """A cache (some rows freed and reused, so rows are not in insertion order) and a selection
    of its rows (any order, repeats allowed)."""
    cache = BindingCache(capacity=draw(st.sampled_from([1, 8, 64])))
    used: set[bytes] = set()
    rows = []
    for e in draw(st.lists(entries(), max_size=60)):
        if used & set(e["keys"]):
            continue
        used |= set(e["keys"])
        rows.append(insert(cache, e))
    for row in draw(st.lists(st.sampled_from(rows), max_size=5, unique=True)) if rows else []:
        used -= set(cache.prefix_keys[row])
        cache.delete(row)
        rows.remove(row)
    live = cache.live_rows().tolist()
    if live and draw(st.booleans()):
        sel = draw(st.lists(st.sampled_from(live), max_size=80))
    else:
        sel = live
    return cache, sel


identifiers = st.integers(0, 0xFFFF) | st.sampled_from([0, 1, 0xFFFE, 0xFFFF])


@settings(max_examples=300, deadline=None)
@given(
    caches(),
    identifiers,
    st.none() | st.integers(0, 2**32 - 1),
    st.sampled_from([DEFAULT_CONFIG, OTHER_CONFIG]),
    st.booleans(),
)
def test_async_batches_match_the_reference(population, identifier, rc, config, checksum):
    """A stepped Identifier per message, A on every one."""
    cache, sel = population
    src, dst = (SRC, DST) if checksum else (None, None)
    check(cache, sel, NOW, rc, src, dst, identifier, True, True, False, config)


@settings(max_examples=300, deadline=None)
@given(caches(), identifiers, st.integers(0, 2**32 - 1), st.booleans())
def test_full_sync_answers_match_the_reference(population, identifier, rc, ack):
    """The request's Identifier on every message, M on all but the last (A optional)."""
    cache, sel = population
    check(cache, sel, NOW, rc, SRC, DST, identifier, False, ack, True, DEFAULT_CONFIG)


def big_cache(n: int, seed: int = 1) -> BindingCache:
    rng = np.random.default_rng(seed)
    cache = BindingCache()
    for i in range(n):
        insert(
            cache,
            {
                "mn_id": b"mn%d@example.net" % i,
                "keys": (network_key((0x20010DB8 << 96 | i << 64).to_bytes(16, "big"), 64),),
                "ll_id": None if i % 3 else bytes(rng.integers(0, 256, 6).tolist()),
                "proxy_coa": IPv6Address(0x20010DB8FFFF << 80 | i % 100),
                "flags": 0xF000,
                "seq": i & 0xFFFF,
                "lifetime": 100,
                "expires": NOW + float(rng.uniform(-10, 500)),
                "ts": 0 if i % 2 else (int(NOW) << 16) + i,
                "att": 4,
                "tunnel": 1 + i % 100,
                "lla": IPv6Address("::") if i % 5 else IPv6Address("fe80::1"),
                "state": BceState.ACTIVE,
            },
        )
    return cache


@pytest.mark.parametrize("step", [True, False])
def test_many_messages(step: bool) -> None:
    cache = big_cache(3000)
    sel = cache.live_rows().tolist()
    check(cache, sel, NOW, 7, SRC, DST, 0xFFF0, step, step, not step, DEFAULT_CONFIG)
    batch = compiled(cache, sel, NOW, 7, SRC, DST, 0xFFF0, step_identifiers=step)
    assert len(batch.offsets) > 40
    idents = [decode_mh(m, SRC, DST).message.identifier for m in messages(batch)]
    if step:  # wraps 65535 → 1
        assert idents[:17] == [*range(0xFFF1, 0x10000), 1, 2]
        assert idents[-1] == bce_sync.stepped_identifier(0xFFF0, len(idents) - 1)
    else:
        assert set(idents) == {0xFFF0}
    assert all(decode_mh(m, SRC, DST).checksum_ok for m in messages(batch))


def test_an_empty_selection_gives_the_lead_alone() -> None:
    cache = big_cache(3)
    for rc in (None, 5):
        check(cache, [], NOW, rc, SRC, DST, 9, True, True, False, DEFAULT_CONFIG)
        check(cache, [], NOW, rc, SRC, DST, 9, False, False, True, DEFAULT_CONFIG)
    batch = compiled(cache, [], NOW, 5, SRC, DST, 9)
    assert batch.first.tolist() == [0, 0]
    assert len(batch.offsets) == 2


def one_entry(**changes) -> dict:
    e = {
        "mn_id": b"mn1@example.net",
        "keys": (network_key(bytes.fromhex("20010db8000000010000000000000000"), 64),),
        "ll_id": None,
        "proxy_coa": IPv6Address("2001:db8::1"),
        "flags": 0,
        "seq": 1,
        "lifetime": 10,
        "expires": NOW + 40,
        "ts": 0,
        "att": 4,
        "tunnel": 1,
        "lla": IPv6Address("::"),
        "state": BceState.ACTIVE,
    }
    e.update(changes)
    return e


many_keys = tuple(
    network_key((0x20010DB8 << 96 | i << 64).to_bytes(16, "big"), 64) for i in range(101)
)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        # a session alone over 2048 octets: pack_sessions gives it its own message, encode_mh
        # refuses it
        ({"keys": many_keys}, ValueError),
        ({"keys": many_keys[:99]}, None),  # 2040 octets: fits alone
        ({"mn_id": bytes(254)}, None),
        ({"mn_id": bytes(255)}, ValueError),  # MN-ID option data over 255
        ({"ll_id": bytes(253)}, None),
        ({"ll_id": bytes(254)}, ValueError),
        ({"ll_id": b""}, None),
        ({"keys": (bytes(16) + bytes([129]),)}, ValueError),  # not a prefix length
        ({"keys": (bytes.fromhex("20010db8000000010000000000000001") + b"\x40",)}, ValueError),
        ({"keys": (bytes(15) + b"\x01" + bytes([128]),)}, None),
        ({"keys": ()}, None),  # no HNP at all: the reference encodes it so
        ({"expires": math.nan}, ValueError),
        ({"expires": math.inf}, OverflowError),
        ({"expires": -math.inf}, OverflowError),
    ],
)
def test_edges_and_failures_match_the_reference(changes: dict, error) -> None:
    cache = BindingCache()
    neighbour = insert(cache, one_entry(mn_id=b"x", keys=(bytes(17),)))
    row = insert(cache, one_entry(**changes))
    for sel in ([row], [neighbour, row], [neighbour, row, neighbour]):
        for step in (True, False):
            check(cache, sel, NOW, 3, SRC, DST, 1, step, step, not step, DEFAULT_CONFIG)
    if error is not None:
        with pytest.raises(error):
            compiled(cache, [row], NOW, 3, SRC, DST, 1)


def test_argument_checks() -> None:
    cache = big_cache(4)
    with pytest.raises(ValueError):
        compiled(cache, [0], NOW, 3, SRC, DST, 0x10000)
    with pytest.raises(OverflowError):
        compiled(cache, [0], NOW, 2**32, SRC, DST, 1)
    with pytest.raises(IndexError):
        compiled(cache, [len(cache.rows)], NOW, 3, SRC, DST, 1)
    # negative rows count from the end, as the reference's list and numpy indexing do
    check(cache, [-len(cache.rows)], NOW, 3, SRC, DST, 1, True, True, False, DEFAULT_CONFIG)
    # addresses as packed octets
    batch = compiled(cache, [0], NOW, 3, SRC.packed, DST.packed, 1)
    assert messages(batch) == messages(compiled(cache, [0], NOW, 3, SRC, DST, 1))
    with pytest.raises(TypeError):
        bce_sync.encode_sessions(
            np.zeros(4, dtype=np.uint8), [], [], [], np.zeros(0, np.int64), NOW, 3, SRC, DST, 1
        )


def test_stepped_identifier_is_the_engine_rule() -> None:
    for start in (0, 1, 2, 0xFFFE, 0xFFFF):
        sync_id = start
        for k in range(5):
            sync_id = sync_id % 0xFFFF + 1
            assert bce_sync.stepped_identifier(start, k) == sync_id
