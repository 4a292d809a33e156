"""The compiled SS-REP scan (lmaload._ext.sync_ingest.scan_ss_rep) against the reference decoder:
whatever it accepts, decode_mh + StateSync.sessions + SyncedSession.parse must read the same way
(flags, identifier, lead Restart Counter, every session's fields, the sessions parse drops); what
our own encoders send it must accept; and the standby's whole ingest (``sync_ingest.ingest``)
against the reference path."""

from __future__ import annotations

import random
from ipaddress import IPv6Address, IPv6Network

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lmaload._ext.bce_sync import encode_sessions
from lmaload._ext.sync_ingest import scan_ss_rep

from lmaload.protocol import Datagram, Datagrams, LmaConfig, LmaEngine
from lmaload.protocol.binding_cache import BceState, BindingCache, prefix_key
from lmaload.protocol.datagrams import Columns
from lmaload.protocol.redundancy import SyncedSession
from lmaload.wire import (
    AccessTechnologyType,
    Heartbeat,
    HomeNetworkPrefix,
    LinkLocalAddress,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    ProxyBindingCacheInformation,
    RestartCounter,
    StateSync,
    Timestamp,
    WireConfig,
    WireError,
    decode_mh,
    encode_mh,
)
from lmaload.wire import codepoints as cp
from lmaload.wire.codepoints import DEFAULT_CONFIG
from tests.cache_state import index_state
from tests.strategies import mn_options, pbci, sync_options

SRC = IPv6Address("2001:db8:1::1")
DST = IPv6Address("2001:db8:2::2")
MAG = IPv6Address("2001:db8:aa::9")
OTHER_CONFIG = WireConfig(mh_state_sync=210, opt_pbci=230, opt_bci=231)
configs = st.sampled_from([DEFAULT_CONFIG, OTHER_CONFIG])


def reference(data: bytes, config: WireConfig) -> tuple | None:
    """What the reference path reads from an SS-REP: (flags, identifier, lead counter, sessions
    as field tuples or None for a dropped one), or None when it does not take it as one."""
    try:
        decoded = decode_mh(data, SRC, DST, config)
    except WireError:
        return None
    msg = decoded.message
    if not decoded.checksum_ok or not isinstance(msg, StateSync) or msg.ss_type != cp.SS_REPLY:
        return None
    lead = next(
        (o for o in msg.options if isinstance(o, RestartCounter | ProxyBindingCacheInformation)),
        None,
    )
    sessions = []
    for head, options in msg.sessions():
        session = (
            SyncedSession.parse(head, options)
            if isinstance(head, ProxyBindingCacheInformation)
            else None
        )
        if session is None:
            sessions.append(None)
            continue
        p = session.pbci
        sessions.append(
            (
                p.flags,
                p.sequence,
                p.lifetime,
                p.tunnel_interface_id,
                p.proxy_coa.packed,
                session.mn_id,
                session.prefixes,
                session.att,
                session.timestamp,
                session.ll_id,
                session.lla.packed if session.lla is not None else None,
            )
        )
    counter = lead.counter if isinstance(lead, RestartCounter) else -1
    return msg.flags, msg.identifier, counter, sessions


def scanned(data: bytes, config: WireConfig) -> tuple | None:
    out = scan_ss_rep(data, SRC.packed, DST.packed, config)
    if out is None:
        return None
    flags, identifier, counter, records = out
    sessions = []
    for r in records:
        if not r["ok"]:
            sessions.append(None)
            continue
        mn = data[int(r["mn_start"]) : int(r["mn_start"]) + int(r["mn_len"])]
        llid = None
        if r["llid_len"] >= 0:
            llid = data[int(r["llid_start"]) : int(r["llid_start"]) + int(r["llid_len"])]
        network = IPv6Network((int.from_bytes(r["hnp"].tobytes(), "big"), int(r["plen"])))
        sessions.append(
            (
                int(r["flags"]),
                int(r["seq"]),
                int(r["lifetime"]),
                int(r["tunnel"]),
                r["proxy_coa"].tobytes(),
                mn,
                (network,),
                int(r["att"]),
                int(r["ts"]),
                llid,
                r["lla"].tobytes() if r["has_lla"] else None,
            )
        )
    return flags, identifier, counter, sessions


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), configs, st.integers(0, 255), st.integers(0, 0xFFFF))
def test_what_the_scan_takes_the_reference_reads_alike(data, config, flags, identifier) -> None:
    options = data.draw(sync_options(config))
    if data.draw(st.booleans()):
        options = (RestartCounter(data.draw(st.integers(0, 2**32 - 1))), *options)
    try:
        mh = encode_mh(StateSync(cp.SS_REPLY, identifier, flags, options), SRC, DST, config)
    except ValueError:
        return
    if data.draw(st.booleans()) and len(mh) > 8:  # corrupt an octet (the checksum may catch it)
        at = data.draw(st.integers(0, len(mh) - 1))
        mh = mh[:at] + bytes([mh[at] ^ data.draw(st.integers(1, 255))]) + mh[at + 1 :]
    got = scanned(mh, config)
    if got is not None:
        assert got == reference(mh, config)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(pbci(), st.lists(mn_options(), max_size=6)), max_size=8),
    configs,
)
def test_flat_sessions_of_known_options_are_read(sessions, config) -> None:
    options = tuple(o for head, rest in sessions for o in (head, *rest))
    try:
        mh = encode_mh(StateSync(cp.SS_REPLY, 7, cp.SS_FLAG_A, options), SRC, DST, config)
    except ValueError:
        return
    got = scanned(mh, config)
    if got is not None:
        assert got == reference(mh, config)


@st.composite
def sessions_of_known_options(draw: st.DrawFn) -> list:
    """A session of the options the scan reads, each at most once, in any order, sometimes
    without a mandatory one."""
    ipv6 = st.integers(0, 2**128 - 1).map(IPv6Address)
    length = draw(st.integers(0, 128))
    prefix = draw(st.integers(0, 2**128 - 1)) >> (128 - length) << (128 - length) if length else 0
    candidates = [
        MobileNodeIdentifier(draw(st.binary(min_size=1, max_size=80))),
        HomeNetworkPrefix(IPv6Address(prefix), length),
        AccessTechnologyType(draw(st.integers(0, 255))),
        Timestamp(draw(st.integers(0, 2**64 - 1))),
        MobileNodeLinkLayerIdentifier(draw(st.binary(max_size=30))),
        LinkLocalAddress(draw(ipv6)),
    ]
    chosen = [o for o in candidates if draw(st.integers(0, 9)) > 0]
    return [draw(pbci()), *draw(st.permutations(chosen))]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(sessions_of_known_options(), max_size=10),
    st.none() | st.integers(0, 2**32 - 1),
    configs,
)
def test_sessions_of_known_options_are_read_alike(sessions, counter, config) -> None:
    options = tuple(o for session in sessions for o in session)
    if counter is not None:
        options = (RestartCounter(counter), *options)
    try:
        mh = encode_mh(StateSync(cp.SS_REPLY, 9, cp.SS_FLAG_A, options), SRC, DST, config)
    except ValueError:
        return
    got = scanned(mh, config)
    assert got is not None
    assert got == reference(mh, config)


def test_what_the_engine_sends_is_read() -> None:
    """Every SS-REP of the compiled encoder over a random cache is taken, and read as the
    reference reads it."""
    rng = random.Random(3)
    cache = BindingCache()
    for i in range(500):
        network = IPv6Network((0x20010DB8 << 96 | i << 64, 64))
        row = cache.insert(
            b"mn%d@x" % i,
            (prefix_key(network),),
            bytes([2, i & 0xFF]) if rng.random() < 0.3 else None,
            state=BceState.ACTIVE,
            proxy_coa=IPv6Address(rng.choice(["2001:db8:aa::1", "2001:db8:aa::2"])),
        )
        cache.set(
            row,
            flags=cp.PBU_DEFAULT_FLAGS,
            seq=rng.randrange(1 << 16),
            lifetime=100,
            expires=1e9 + rng.uniform(1, 400),
            ts=rng.choice([0, rng.randrange(1 << 60)]),
            att=4,
            tunnel=rng.randrange(1, 100),
            lla=IPv6Address("fe80::1") if rng.random() < 0.3 else IPv6Address(0),
        )
    batch = encode_sessions(
        cache.rows,
        cache.mn_ids,
        cache.prefix_keys,
        cache.ll_ids,
        cache.live_rows(),
        1e9,
        5,
        SRC.packed,
        DST.packed,
        0,
        step_identifiers=True,
        ack=True,
    )
    for k in range(len(batch.offsets) - 1):
        mh = batch.buf[batch.offsets[k] : batch.offsets[k + 1]].tobytes()
        got = scanned(mh, DEFAULT_CONFIG)
        assert got is not None and got == reference(mh, DEFAULT_CONFIG)
        assert got[2] == 5 and all(s is not None for s in got[3])


def test_a_prefix_with_host_bits_is_a_bad_session_both_ways() -> None:
    """The scan leaves it to the reference path, which drops that session (and no other)."""
    bad = (
        ProxyBindingCacheInformation(0, 1, 100, 3, SRC),
        MobileNodeIdentifier(b"mn1@x"),
        HomeNetworkPrefix(IPv6Address("2001:db8::1"), 64),
        AccessTechnologyType(4),
    )
    good = (
        ProxyBindingCacheInformation(0, 1, 100, 3, SRC),
        MobileNodeIdentifier(b"mn2@x"),
        HomeNetworkPrefix(IPv6Address("2001:db8:0:1::"), 64),
        AccessTechnologyType(4),
    )
    mh = encode_mh(StateSync(cp.SS_REPLY, 1, 0, (*bad, *good)), SRC, DST)
    assert scan_ss_rep(mh, SRC.packed, DST.packed) is None
    for columns in (False, True):
        engine = LmaEngine(LmaConfig(address=DST, peers=(SRC,), role="standby"), 1e9)
        batch = [Datagram(mh, SRC, DST)]
        engine.receive(Datagrams([Columns.of(batch)] if columns else batch), 1e9)
        assert engine.counters.drops["bad_synced_session"] == 1
        assert engine.counters.sessions_synced_in == 1


def test_what_the_scan_declines() -> None:
    att, mn = AccessTechnologyType(4), MobileNodeIdentifier(b"mn@x")
    head = ProxyBindingCacheInformation(0, 1, 2, 3, SRC)
    for options in (
        (head, mn, att, RestartCounter(1)),  # a Restart Counter inside a session
        (mn, head, att),  # an option before the sessions
        (head, mn, mn, att),  # twice in a session
        (ProxyBindingCacheInformation(0, 1, 2, 3, SRC, nested=True), mn, att),
    ):
        mh = encode_mh(StateSync(cp.SS_REPLY, 1, 0, options), SRC, DST)
        assert scan_ss_rep(mh, SRC.packed, DST.packed) is None
    mh = bytearray(encode_mh(StateSync(cp.SS_REPLY, 1, 0, (head, mn, att)), SRC, DST))
    assert scan_ss_rep(bytes(mh), SRC.packed, DST.packed) is not None
    mh[4] ^= 1  # checksum
    assert scan_ss_rep(bytes(mh), SRC.packed, DST.packed) is None
    request = encode_mh(StateSync(cp.SS_REQUEST, 1, 0, ()), SRC, DST)
    assert scan_ss_rep(request, SRC.packed, DST.packed) is None
    assert scan_ss_rep(np.zeros(3, dtype=np.uint8), SRC.packed, DST.packed) is None


def ingest_state(engine: LmaEngine) -> tuple:
    cache = engine.cache
    live = cache.live_rows()
    return (
        cache.rows[live].tobytes(),
        [cache.mn_ids[r] for r in live],
        [cache.prefix_keys[r] for r in live],
        [cache.ll_ids[r] for r in live],
        index_state(cache),
        engine.counters,
        engine.state.lmaa_restart_counter,
        engine.next_timer(),
        [(e.kind, e.detail) for e in engine.pop_events()],
    )


def random_session(rng: random.Random, mns: list[bytes], ts: float) -> list:
    """One session of a random MN: a refresh, a deletion, an older copy, another MN on its
    prefix, one missing its ATT, with or without Timestamp, LL-ID and link-local address."""
    k = rng.randrange(len(mns))
    mn = mns[k]
    if rng.random() < 0.05:
        mn = b"thief@x"  # another MN on this prefix: the held entry is withdrawn first
    prefix = HomeNetworkPrefix(IPv6Address((0x20010DB8 << 96) | (k << 64)), 64)
    kind = rng.random()
    lifetime = 0 if kind < 0.1 else rng.choice([10, 100, 300])
    stamp = ts - rng.choice([1.0, 100.0]) if kind > 0.9 else ts
    mag = IPv6Address(f"2001:db8:aa::{rng.randrange(1, 4)}")
    seq = int(stamp * 10) & 0xFFFF
    options = [ProxyBindingCacheInformation(cp.PBU_DEFAULT_FLAGS, seq, lifetime, k + 1, mag)]
    options.append(MobileNodeIdentifier(mn))
    options.append(prefix)
    if rng.random() > 0.03:
        options.append(AccessTechnologyType(4))
    if rng.random() < 0.8:
        options.append(Timestamp.from_unix(stamp))
    if rng.random() < 0.3:
        options.append(MobileNodeLinkLayerIdentifier(bytes([0, 0, 2, k & 0xFF])))
    if rng.random() < 0.3:
        options.append(LinkLocalAddress(IPv6Address("fe80::1")))
    return options


@pytest.mark.parametrize("seed", range(6))
def test_ingest_matches_the_reference_path(seed: int) -> None:
    """The same SS-REPs given as columns (the compiled ingest) to one standby and as datagrams
    (decode_mh + SyncIn.on_reply) to another: the same binding cache and indexes, counters,
    Restart Counter, timers, events and SS-ACK octets — over refreshes, deletions, older
    copies, sessions missing an option, a prefix taken by another MN, corrupt messages, an
    unknown peer, a full sync this LMA asked for, and batches mixed with other traffic."""
    rng = random.Random(seed)
    config = LmaConfig(address=DST, peers=(SRC,), role="standby")
    fast, reference = LmaEngine(config, 1e9), LmaEngine(config, 1e9)
    mns = [b"mn%d@sync.example" % i for i in range(rng.choice([5, 40, 200]))]
    now, ident = 1e9, 0
    for step in range(25):
        now += rng.choice([0.001, 0.5, 30.0, 400.0])
        for engine in (fast, reference):
            if (due := engine.next_timer()) is not None and due <= now:
                engine.handle_timer(now)
        requested = None
        if step % 7 == 3:
            for engine in (fast, reference):
                engine.sync_in.request_full_sync(SRC, now, 1.0)
            requested = fast.sync_in._requests[SRC][0]
        assert sent(fast.datagrams_to_send()) == sent(reference.datagrams_to_send())
        batch = []
        for _ in range(rng.randrange(1, 12)):
            options = [
                o for _ in range(rng.randrange(1, 20)) for o in random_session(rng, mns, now)
            ]
            if rng.random() < 0.3:
                options.insert(0, RestartCounter(rng.randrange(1 << 32)))
            ident = ident % 0xFFFF + 1
            flags = rng.choice([cp.SS_FLAG_A, cp.SS_FLAG_A, 0])
            if requested is not None:
                ident, flags = requested, rng.choice([0, cp.SS_FLAG_M])
            mh = encode_mh(StateSync(cp.SS_REPLY, ident, flags, tuple(options)), SRC, DST)
            src, dst, kind = SRC, DST, rng.random()
            if kind < 0.05:
                src = IPv6Address("2001:db8:6::6")  # an unknown peer
                mh = encode_mh(StateSync(cp.SS_REPLY, ident, flags, tuple(options)), src, DST)
            elif kind < 0.1:
                mh = bytearray(mh)
                mh[rng.randrange(len(mh))] ^= 1 << rng.randrange(8)
                mh = bytes(mh)
            batch.append(Datagram(mh, src, dst, now))
        if rng.random() < 0.3:  # last: the ingest takes the SS-REPs as if they came first
            hb = encode_mh(Heartbeat(rng.randrange(1 << 16)), MAG, DST)
            batch.append(Datagram(hb, MAG, DST, now))
        fast.receive(Datagrams([Columns.of(batch)]), now)
        reference.receive(Datagrams(batch), now)
        assert sent(fast.datagrams_to_send()) == sent(reference.datagrams_to_send())
        assert ingest_state(fast) == ingest_state(reference)
    counters = fast.counters
    assert counters.sessions_synced_in > 0 and counters.drops["stale_sync"] > 0
    assert counters.drops["bad_synced_session"] > 0 and counters.drops["unknown_peer"] > 0


def sent(out: Datagrams) -> list[tuple[bytes, IPv6Address, IPv6Address]]:
    return [(d.data, d.src, d.dst) for d in out]
