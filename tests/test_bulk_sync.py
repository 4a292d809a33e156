"""The compiled State Synchronization packer (ext/sync.pyx) must produce the reference's SS-REPs
octet for octet, split at the same sessions, and fail where the reference fails; every message it
produces must decode back to the sessions of the selected rows."""

import inspect
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmaload import bulk
from lmaload._ext import sync
from lmaload.population import MAG_DTYPE, MN_DTYPE, Population, PopulationSpec, generate
from lmaload.wire import (
    HomeNetworkPrefix,
    MobileNodeIdentifier,
    StateSync,
    WireConfig,
    decode_mh,
)
from lmaload.wire import codepoints as cp
from lmaload.wire.codepoints import DEFAULT_CONFIG
from tests.vectors import vector_addresses, vector_named

OTHER_CONFIG = WireConfig(mh_state_sync=210, opt_pbci=230, opt_bci=231)
ipv6 = st.binary(min_size=16, max_size=16).map(IPv6Address)


@dataclass(frozen=True)
class Call:
    """Arguments of one encode_state_sync call (positional, then keywords)."""

    pop: Population
    rows: np.ndarray
    src: IPv6Address
    dst: IPv6Address
    identifier: int
    kwargs: dict

    def run(self, fn: Callable[..., bulk.SyncBatch]) -> bulk.SyncBatch | ValueError:
        """The SyncBatch of ``fn``, or the ValueError it raised."""
        try:
            return fn(self.pop, self.rows, self.src, self.dst, self.identifier, **self.kwargs)
        except ValueError as error:
            return error


@st.composite
def populations(draw: st.DrawFn) -> Population:
    """A generated population whose signalling columns are then filled with random values."""
    spec = PopulationSpec(
        mns=draw(st.integers(0, 400)),
        mags=draw(st.integers(1, 20)),
        seed=draw(st.integers(0, 2**32 - 1)),
        realm=draw(st.text(st.characters(codec="ascii"), min_size=1, max_size=80)),
        ll_id_share=draw(st.floats(0, 1)),
    )
    pop = generate(spec)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mns, n = pop.mns, spec.mns
    mns["seq"] = rng.integers(0, 2**16, n)
    mns["ts"] = rng.integers(0, 2**64, n, dtype=np.uint64)
    mns["att"] = rng.integers(0, 2**8, n)
    # Random shifts spread the ids over every decimal width (the NAI length sets the padding).
    shifts = rng.integers(0, 33, n, dtype=np.uint64)
    mns["mn_id"] = rng.integers(0, 2**32, n, dtype=np.uint64) >> shifts
    mns["hnp"] = rng.integers(0, 2**8, (n, 16))
    mns["hnp_len"] = rng.integers(0, 129, n)
    mns["lifetime"] = rng.integers(0, 2**16, n)
    # Odd lengths end a session off the 2-octet grid; lengths over the 8-octet column are cut.
    with_ll = mns["ll_len"] > 0
    mns["ll_len"][with_ll] = rng.integers(1, 11, int(with_ll.sum()))
    mns["ll_id"] = rng.integers(0, 2**8, (n, 8))
    return pop


@st.composite
def calls(draw: st.DrawFn) -> Call:
    pop = draw(populations())
    n = len(pop.mns)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    count = draw(st.integers(0, 300)) if n else 0
    # Negative rows count from the end, as numpy indexing does in the reference.
    rows = rng.integers(-n, n, count).astype(draw(st.sampled_from([np.int64, np.int32])))
    extra = draw(st.integers(0, 3))  # the reference ignores entries past the selection
    kwargs = {
        "identifier_step": draw(st.integers(0, 2**17)),
        "ack": draw(st.booleans()),
        "flags": draw(st.integers(0, 0xFFFF)),
        "timestamp": draw(st.booleans()),
        # Small limits are where single sessions stop fitting; over 2048 the MH limit rules.
        "max_length": draw(st.one_of(st.integers(80, 260), st.integers(260, 2200))),
        "config": draw(st.sampled_from([DEFAULT_CONFIG, OTHER_CONFIG])),
    }
    if draw(st.booleans()):
        kwargs["lifetimes"] = rng.integers(0, 2**16, count + extra).astype(
            draw(st.sampled_from([np.uint16, np.int64]))
        )
    if draw(st.booleans()):
        kwargs["tunnel_interface_ids"] = rng.integers(0, 2**32, count + extra, dtype=np.uint64)
    return Call(pop, rows, draw(ipv6), draw(ipv6), draw(st.integers(-(2**17), 2**17)), kwargs)


def test_extension_is_built_and_used() -> None:
    assert bulk.encode_state_sync is sync.encode_state_sync


def test_signature_matches_reference() -> None:
    assert inspect.signature(sync.encode_state_sync) == inspect.signature(bulk.py_encode_state_sync)


def expected_sessions(call: Call, first: int, stop: int) -> list[tuple]:
    """The reference's options of sessions ``first`` to ``stop - 1`` of the selection."""
    kw = call.kwargs
    lifetimes, tunnels = kw.get("lifetimes"), kw.get("tunnel_interface_ids")
    out = []
    for i in range(first, stop):
        row = int(call.rows[i])
        lifetime = call.pop.mns["lifetime"][row] if lifetimes is None else lifetimes[i]
        tunnel = 0 if tunnels is None else tunnels[i]
        options = bulk.sync_session_options(
            call.pop, row, kw["flags"], int(lifetime), int(tunnel), kw["timestamp"]
        )
        mn = call.pop.mns[row]
        assert options[1] == MobileNodeIdentifier(f"mn{mn['mn_id']}@{call.pop.realm}".encode())
        assert options[2] == HomeNetworkPrefix(IPv6Address(mn["hnp"].tobytes()), mn["hnp_len"])
        out.append(options)
    return out


def assert_sessions_decode(call: Call, batch: bulk.SyncBatch) -> None:
    """Each message decodes, checksum included, to the sessions of its rows with its flags."""
    kw = call.kwargs
    count = len(batch.offsets) - 1
    assert batch.first[0] == 0 and batch.first[-1] == len(call.rows)
    assert (np.diff(batch.first) > 0).all()
    for k in range(count):
        data = batch.buf[batch.offsets[k] : batch.offsets[k + 1]].tobytes()
        assert len(data) <= kw["max_length"]
        decoded = decode_mh(data, call.src, call.dst, kw["config"])
        assert decoded.checksum_ok
        msg = decoded.message
        assert isinstance(msg, StateSync) and msg.ss_type == cp.SS_REPLY
        assert msg.identifier == bulk.sync_identifier(call.identifier, k, kw["identifier_step"])
        more = cp.SS_FLAG_M if k < count - 1 else 0
        assert msg.flags == (cp.SS_FLAG_A if kw["ack"] else 0) | more
        sessions = [(pbci, *options) for pbci, options in msg.sessions()]
        assert sessions == expected_sessions(call, batch.first[k], batch.first[k + 1])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls())
def test_matches_reference(call: Call) -> None:
    got, want = call.run(sync.encode_state_sync), call.run(bulk.py_encode_state_sync)
    if isinstance(want, ValueError):
        assert isinstance(got, ValueError) and str(got) == str(want)
        return
    assert isinstance(got, bulk.SyncBatch)
    assert got.buf.dtype == np.uint8 and got.buf.tobytes() == want.buf.tobytes()
    assert got.offsets.dtype == got.first.dtype == np.int64
    assert got.offsets.tolist() == want.offsets.tolist()
    assert got.first.tolist() == want.first.tolist()
    if len(call.rows):
        assert_sessions_decode(call, got)


def test_vector_v5() -> None:
    """spec-digest §13 V5: one session, A set, Identifier 0x1234, tunnel id 7."""
    vector = vector_named("V5")
    mns, mags = np.zeros(1, dtype=MN_DTYPE), np.zeros(1, dtype=MAG_DTYPE)
    mags["addr6"][0] = np.frombuffer(IPv6Address("2001:db8:aaaa::1").packed, dtype=np.uint8)
    mns["mn_id"], mns["seq"], mns["lifetime"], mns["att"] = 1, 1, 900, 4
    mns["hnp"][0] = np.frombuffer(IPv6Address("2001:db8:1::").packed, dtype=np.uint8)
    mns["hnp_len"], mns["ts"] = 64, 0x00004A9329808000
    src, dst = vector_addresses(vector)
    pop = Population(mns, mags, "example.com")
    batch = sync.encode_state_sync(
        pop, np.array([0]), src, dst, 0x1234, ack=True, tunnel_interface_ids=np.array([7])
    )
    assert batch.buf.tobytes().hex() == vector["hex"]
    assert batch.offsets.tolist() == [0, 96] and batch.first.tolist() == [0, 1]


def test_many_messages_with_defaults() -> None:
    pop = generate(PopulationSpec(mns=5000, mags=50, seed=9, ll_id_share=0.2))
    rows = np.arange(5000)[::-1]
    src, dst = IPv6Address("fd00::1"), IPv6Address("fd00::2")
    got = sync.encode_state_sync(pop, rows, src, dst, 0xFFFE, 1)
    want = bulk.py_encode_state_sync(pop, rows, src, dst, 0xFFFE, 1)
    assert len(got.offsets) > 200
    assert got.buf.tobytes() == want.buf.tobytes()
    assert got.first.tolist() == want.first.tolist()


def test_without_addresses_the_checksum_is_zero() -> None:
    pop = generate(PopulationSpec(mns=100, mags=3, seed=4))
    rows = np.arange(100)
    got = sync.encode_state_sync(pop, rows, None, None, 7)
    want = bulk.py_encode_state_sync(pop, rows, None, None, 7)
    assert got.buf.tobytes() == want.buf.tobytes()
    assert not got.buf[got.offsets[:-1, None] + [4, 5]].any()


def test_empty_selection() -> None:
    pop = generate(PopulationSpec(mns=3, mags=1))
    for fn in (sync.encode_state_sync, bulk.py_encode_state_sync):
        batch = fn(pop, np.array([], dtype=np.int64), IPv6Address(1), IPv6Address(2), 1)
        assert len(batch.buf) == 0 and batch.buf.dtype == np.uint8
        assert batch.offsets.tolist() == [0] and batch.first.tolist() == [0]


SMALL = generate(PopulationSpec(mns=4, mags=1))
BAD_MAG = generate(PopulationSpec(mns=4, mags=2))
BAD_MAG.mns["mag"][2] = 2
LONG_REALM = generate(PopulationSpec(mns=4, mags=1, realm="r" * 252))


@pytest.mark.parametrize(
    ("pop", "rows", "kwargs", "error"),
    [
        (SMALL, [1, 4], {}, IndexError),
        (SMALL, [-5], {}, IndexError),
        (BAD_MAG, [0, 2], {}, IndexError),
        (SMALL, [0, 1], {"lifetimes": [1]}, IndexError),
        (SMALL, [0, 1], {"lifetimes": [1, 2**16]}, struct.error),
        (SMALL, [0], {"lifetimes": [-1]}, struct.error),
        (SMALL, [0, 1], {"tunnel_interface_ids": [0, 2**32]}, struct.error),
        (SMALL, [0], {"flags": 2**16}, struct.error),
        # The NAI of a 252-octet realm no longer fits the one-octet option Length.
        (LONG_REALM, [0], {}, ValueError),
        (SMALL, [0], {"max_length": 64}, ValueError),
    ],
)
def test_fails_like_reference(pop: Population, rows: list, kwargs: dict, error: type) -> None:
    for fn in (sync.encode_state_sync, bulk.py_encode_state_sync):
        with pytest.raises(error):
            fn(pop, np.array(rows), IPv6Address(1), IPv6Address(2), 1, **kwargs)
