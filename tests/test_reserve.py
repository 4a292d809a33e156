"""Room made before the load: the binding cache's ``reserve``, the LMA's ``reserve`` setting and
the arena pool for Python's small objects (``lmaload._ext.arena``). Each is checked by what it
must spare the load, pages first written and tables grown, counted (page faults are the same
number on any machine, whatever each costs)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from ipaddress import IPv6Address, IPv6Network

import pytest

from lmaload.protocol import LmaConfig, LmaEngine
from lmaload.protocol.binding_cache import BceState, BindingCache, key_network

resource = pytest.importorskip("resource")
MAG = IPv6Address("2001:db8::1")


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def key(i: int) -> bytes:
    return (0x20010DB8 << 96 | i << 64).to_bytes(16, "big") + bytes([64])


def test_a_reserved_cache_takes_its_entries_without_growing_or_mapping_its_pages() -> None:
    count = 50_000
    mns = [b"mn-%07d" % i for i in range(count)]
    keys = [(key(i),) for i in range(count)]
    cache = BindingCache()
    cache.reserve(count)
    rows, block = len(cache.rows), cache._block
    before = faults()
    for i in range(count):
        cache.insert(mns[i], keys[i], None, state=BceState.ACTIVE, proxy_coa=MAG)
    # Unreserved, the same inserts map about 2 700 pages.
    assert faults() - before <= 300
    assert len(cache.rows) == rows == count and cache._block is block
    assert len(cache) == count and cache.count(BceState.ACTIVE) == count
    row = cache.by_prefix(key_network(keys[-1][0]))
    assert row is not None and cache.mn_ids[row] == mns[-1]


def test_reserving_less_than_a_cache_holds_changes_nothing_and_past_its_block_moves_it() -> None:
    cache = BindingCache(capacity=8)
    row = cache.insert(b"mn", (key(1),), None, state=BceState.ACTIVE, proxy_coa=MAG)
    with pytest.raises(ValueError, match="reserve before"):
        cache.reserve(4)
    empty = BindingCache(capacity=8)
    empty._block = empty._block[:16]  # as under strict overcommit: no room reserved ahead
    empty.reserve(100)
    assert len(empty.rows) == 100 and len(empty._block) >= 100 and empty.index.free_count == 100
    assert cache.mn_ids[row] == b"mn"


def test_an_lma_configured_with_a_reserve_starts_with_that_room() -> None:
    config = LmaConfig(
        address=IPv6Address("::ffff:127.0.0.2"), prefix_pool=IPv6Network("2001:db8::/32")
    )
    assert len(LmaEngine(config, 0.0).state.cache.rows) < 1000
    reserved = LmaEngine(LmaConfig(**{**config.__dict__, "reserve": 1000}), 0.0)
    assert len(reserved.state.cache.rows) == reserved.state.cache.index.free_count == 1000


ARENA_SCRIPT = textwrap.dedent(
    """
    import gc, resource
    from lmaload._ext import arena

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def objects(n):  # about what a binding holds: an MN identifier, a prefix key in a tuple
        return [(b"mn-%09d@example.net" % i, (i.to_bytes(16, "big") + b"@",)) for i in range(n)]

    def deep(n):  # frames past the interpreter's first stack chunk: 16 KiB asked of the pool
        return n and deep(n - 1)

    arena.reserve(64 << 20)
    deep(900)
    before = faults()
    held = objects(200_000)
    first, pooled = faults() - before, arena.pooled_octets()
    del held
    gc.collect()
    held = objects(200_000)
    again = arena.pooled_octets()
    try:
        arena.reserve(1 << 20)
        twice = "accepted"
    except RuntimeError:
        twice = "refused"
    print(first, pooled, again, twice)
    """
)


def test_the_arena_pool_serves_small_objects_from_pages_written_before() -> None:
    """In a process of its own: the pool stays for the process, and replaces the allocator.
    The interpreter's frame stack takes its chunks from the same allocator; they are not
    arenas, and do not take the pool's place."""
    out = subprocess.run(
        [sys.executable, "-c", ARENA_SCRIPT], capture_output=True, text=True, check=True
    ).stdout.split()
    first, pooled, again, twice = int(out[0]), int(out[1]), int(out[2]), out[3]
    # 200 000 such objects take about 46 MiB of arenas; without the pool they map 12 000 pages.
    assert pooled >= 20 << 20
    assert first <= 1000
    assert again <= pooled + (2 << 20)  # the arenas freed were handed out again
    assert twice == "refused"
