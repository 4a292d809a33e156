"""The LMA engine's compiled fast lane against its reference path: the same received batches,
given as columns (fast lane) to one engine and as datagrams (reference path) to another, must
give the same datagrams out, octet for octet and in order, the same binding cache, counters and
State Synchronization — over random mixes of new sessions, refreshes, hand-offs,
de-registrations, stale and out-of-window PBUs, wrong prefixes, heartbeats, PBUs that waited too
long or that a later one supersedes, a backlog at its bound, and garbage, and over the PBUs of
plain third-party MAGs (sequence numbers, no Timestamp, their option layouts); and both as a
plain RFC 5213 LMA (``LmaConfig.plain``)."""

from __future__ import annotations

import random
from ipaddress import IPv6Address, IPv6Network

import pytest

from lmaload.protocol import BceState, Datagram, Datagrams, LmaConfig, LmaEngine, redundancy
from lmaload.protocol.datagrams import Columns
from lmaload.protocol.lma.sync_out import encode_ss_ack
from lmaload.wire import (
    AccessTechnologyType,
    AlternateCareOfAddress,
    BindingAck,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeNetworkPrefix,
    LmaFailureIndication,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    StateSync,
    Timestamp,
    WireError,
    decode_mh,
    encode_mh,
)
from lmaload.wire import codepoints as cp
from lmaload.wire.codepoints import DEFAULT_CONFIG
from tests.cache_state import index_state
from tests.plain_mag import LAYOUTS, plain_pbu

T0 = 1_700_000_000.0
LMA = IPv6Address("2001:db8:bbbb::1")
PEER = IPv6Address("2001:db8:bbbb::2")
MAGS = [IPv6Address(f"2001:db8:aaaa::{i}") for i in range(1, 5)]
POOL = IPv6Network("2001:db8:8000::/56")  # 256 /64s: small enough to run out
ZERO = HomeNetworkPrefix(IPv6Address("::"), 0)


KINDS = [
    "new", "refresh", "lfi", "handoff", "dereg", "stale", "window", "wrong", "other", "junk",
    "heartbeat", "late",
]  # fmt: skip


class Mix:
    """Random PBU traffic for a few MAGs and MNs, following what the LMA answered."""

    def __init__(self, rng: random.Random, mns: int, sequence_scheme: bool) -> None:
        self.rng = rng
        self.mns = [b"mn%d@fast.example" % i for i in range(mns)]
        self.sequence_scheme = sequence_scheme
        self.seq = dict.fromkeys(self.mns, 0)
        self.prefix: dict[bytes, HomeNetworkPrefix] = {}
        self.mag = {mn: rng.choice(MAGS) for mn in self.mns}
        self.hello_seq = 0
        self.weights = dict(zip(KINDS, [20, 40, 5, 5, 4, 4, 3, 3, 6, 3, 8, 3], strict=True))

    def learn(self, out: list[Datagram]) -> None:
        for data, _, _, _ in out:
            msg = decode_mh(data).message
            if not isinstance(msg, BindingAck) or msg.status != 0 or msg.lifetime == 0:
                continue
            mn = next(o.identifier for o in msg.options if isinstance(o, MobileNodeIdentifier))
            hnp = next(o for o in msg.options if isinstance(o, HomeNetworkPrefix))
            if mn in self.seq:  # not one a corrupted PBU made up
                self.prefix[mn] = hnp

    def ack(self, datagram: Datagram) -> Datagram | None:
        """The standby's SS-ACK for an SS-REP asking for one, most of the time."""
        msg = decode_mh(datagram.data).message
        if not isinstance(msg, StateSync) or not msg.flags & cp.SS_FLAG_A:
            return None
        if self.rng.random() < 0.2:
            return None
        return self._wrap(StateSync(cp.SS_ACK, msg.identifier), PEER, LMA)

    def batch(self, now: float, size: int) -> list[Datagram]:
        return [self.datagram(now) for _ in range(size)]

    def datagram(self, now: float) -> Datagram:
        rng = self.rng
        mn = rng.choice(self.mns)
        mag = self.mag[mn]
        kind = rng.choices(list(self.weights), list(self.weights.values()))[0]
        self.seq[mn] = (self.seq[mn] + rng.choice([1, 1, 1, 0, 40000])) & 0xFFFF
        seq, lifetime, hi = self.seq[mn], rng.choice([100, 200, 5]), 5
        hnp = self.prefix.get(mn, ZERO)
        ts: float | None = None if self.sequence_scheme else now + rng.uniform(-0.1, 0.1)
        extra: list = []
        arrival = now
        if kind == "heartbeat":
            flags = rng.choice([0, 0, 0, cp.HB_FLAG_U])
            return self._wrap(Heartbeat(rng.randrange(1 << 32), flags), mag, LMA, now)
        if kind == "late":  # queued before it reached the engine: shed past pbu_max_delay
            arrival = now - rng.choice([0.2, 0.6, 3.0])
        elif kind == "new":
            hnp, hi = ZERO, 1
            if rng.random() < 0.2:
                extra.append(MobileNodeLinkLayerIdentifier(b"\x02\x00\x00\x00\x00\x01"))
        elif kind == "lfi":
            extra.append(LmaFailureIndication(PEER))
        elif kind == "handoff":
            mag = self.mag[mn] = rng.choice(MAGS)
            hi = 3
        elif kind == "dereg":
            lifetime = 0
        elif kind == "stale" and ts is not None:
            ts -= 1.0
        elif kind == "window" and ts is not None:
            ts += 5.0
        elif kind == "wrong":
            hnp = self.prefix.get(rng.choice(self.mns), ZERO)
        elif kind == "other":
            choice = rng.randrange(3)
            if choice == 0:
                return self._wrap(Heartbeat(rng.randrange(1 << 16)), mag, LMA)
            if choice == 1:
                extra.append(AlternateCareOfAddress(mag))
            else:  # to another address
                return self._wrap(self._pbu(mn, seq, lifetime, hnp, hi, ts, extra), mag, PEER)
        elif kind == "junk":
            data = bytearray(encode_mh(self._pbu(mn, seq, lifetime, hnp, hi, ts, extra), mag, LMA))
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            return Datagram(bytes(data), mag, LMA, now)
        return self._wrap(self._pbu(mn, seq, lifetime, hnp, hi, ts, extra), mag, LMA, arrival)

    def _pbu(self, mn, seq, lifetime, hnp, hi, ts, extra) -> BindingUpdate:
        options = [MobileNodeIdentifier(mn), hnp, HandoffIndicator(hi), AccessTechnologyType(4)]
        if ts is not None:
            options.append(Timestamp.from_unix(ts))
        options += extra
        self.rng.shuffle(options)
        return BindingUpdate(seq, lifetime, options=tuple(options))

    @staticmethod
    def _wrap(msg, src: IPv6Address, dst: IPv6Address, arrival: float | None = None) -> Datagram:
        return Datagram(encode_mh(msg, src, dst), src, dst, arrival)


def state(engine: LmaEngine) -> tuple:
    cache = engine.cache
    live = cache.live_rows()
    return (
        cache.rows[live].tobytes(),
        [cache.mn_ids[r] for r in live],
        [cache.prefix_keys[r] for r in live],
        [cache.ll_ids[r] for r in live],
        index_state(cache),
        sorted(engine.state.tunnels.items()),
        engine.counters,
        engine.next_timer(),
    )


def sent(out: Datagrams) -> list[tuple[bytes, IPv6Address, IPv6Address]]:
    return [(d.data, d.src, d.dst) for d in out]


@pytest.mark.parametrize("seed", range(12))
def test_fast_lane_matches_the_reference_path(seed: int) -> None:
    rng = random.Random(seed)
    peers = (PEER,) if seed % 2 else ()
    sync = "before-ack" if seed % 4 == 1 else "async"
    bound = 20 if seed % 8 == 5 else 20_000  # PBAs withheld before PBUs are shed
    config = LmaConfig(
        address=LMA, prefix_pool=POOL, peers=peers, sync=sync, max_withheld_pbas=bound
    )
    fast = run_both_ways(config, rng, sequence_scheme=seed % 3 == 0, hello=bool(peers))
    assert fast.counters.heartbeat_requests_answered > 0
    assert fast.counters.pbu_shed["backlog"] > 0 or bound > 20


@pytest.mark.parametrize("seed", range(6))
def test_plain_fast_lane_matches_the_reference_path(seed: int) -> None:
    """A plain RFC 5213 LMA: heartbeats, HA-HELLOs and State Sync answered with Binding Error 2
    by both ways, PBUs ordered by sequence number whatever Timestamp they carry."""
    rng = random.Random(1000 + seed)
    config = LmaConfig(address=LMA, prefix_pool=POOL, plain=True)
    fast = run_both_ways(config, rng, sequence_scheme=seed % 2 == 0, hello=True)
    counters = fast.counters
    assert counters.heartbeat_requests_answered == counters.heartbeat_requests_sent == 0
    assert counters.binding_errors_sent > 0 and counters.hello_received == 0
    assert counters.pba_status[cp.STATUS_SEQUENCE_OUT_OF_WINDOW] > 0
    assert not counters.pba_status[cp.STATUS_TIMESTAMP_MISMATCH]
    assert not counters.pba_status[cp.STATUS_TIMESTAMP_LOWER_THAN_PREV_ACCEPTED]


def run_both_ways(
    config: LmaConfig, rng: random.Random, sequence_scheme: bool, hello: bool
) -> LmaEngine:
    """30 random batches (``Mix``, with an HA-HELLO from PEER in each if ``hello``) given as
    columns to one engine and as datagrams to another, which must answer alike; the first."""
    standby = LmaConfig(address=PEER, peers=(LMA,), role="standby")
    fast, reference = LmaEngine(config, T0), LmaEngine(config, T0)
    assert fast.fast_lane is not None
    mix = Mix(rng, mns=rng.choice([5, 40, 300]), sequence_scheme=sequence_scheme)
    now = T0
    acks: list[Datagram] = []
    for _ in range(30):
        now += rng.choice([0.001, 0.05, 1.0, 30.0, 500.0])
        for engine in (fast, reference):
            if (due := engine.next_timer()) is not None and due <= now:
                engine.handle_timer(now)
        timed = list(reference.datagrams_to_send())
        assert sent(fast.datagrams_to_send()) == sent(timed)
        acks += [ack for d in timed if d.dst == PEER and (ack := mix.ack(d)) is not None]
        batch = mix.batch(now, rng.choice([1, 7, 64, 300])) + acks
        if hello:  # keep a standby alive: the changes go out as SS-REPs
            message = redundancy.hello(standby, mix.hello_seq, 0)
            mix.hello_seq += 1
            batch.insert(rng.randrange(len(batch) + 1), mix._wrap(message, PEER, LMA))
        fast.receive(Datagrams([Columns.of(batch)]), now)
        reference.receive(Datagrams(batch), now)
        out_fast, out_reference = fast.datagrams_to_send(), reference.datagrams_to_send()
        assert sent(out_fast) == sent(out_reference)
        assert state(fast) == state(reference)
        mix.learn(list(out_reference))
        acks = [ack for d in out_reference if d.dst == PEER and (ack := mix.ack(d)) is not None]
    assert fast.fast_lane.pbus_accepted > fast.counters.pba_status[0] / 2
    assert fast.counters.pbu_shed["stale"] > 0 and fast.counters.pbu_shed["superseded"] > 0
    assert fast.cache.counts() == {s: fast.cache.count(s) for s in BceState}
    return fast


# (sequence number, HNP: "zero" or the one assigned, HI, lifetime, MAG) of each round: a plain
# MAG registering, re-registering, repeating and going back a sequence number (135), wrapping
# it, asking for a new prefix again, handing off to a second MAG and de-registering there.
PLAIN_ROUNDS = [
    (1, "zero", cp.HI_ATTACH_NEW_INTERFACE, 75, 0),
    (2, "assigned", cp.HI_NOT_CHANGED, 75, 0),
    (2, "assigned", cp.HI_NOT_CHANGED, 75, 0),
    (1, "assigned", cp.HI_NOT_CHANGED, 75, 0),
    (30000, "assigned", cp.HI_NOT_CHANGED, 75, 0),
    (60000, "assigned", cp.HI_NOT_CHANGED, 75, 0),
    (65535, "assigned", cp.HI_NOT_CHANGED, 75, 0),
    (3, "assigned", cp.HI_NOT_CHANGED, 75, 0),
    (4, "zero", cp.HI_NOT_CHANGED, 75, 0),
    (10, "zero", cp.HI_HANDOFF_BETWEEN_MAGS, 75, 1),
    (11, "assigned", cp.HI_HANDOFF_BETWEEN_MAGS, 75, 1),
    (12, "assigned", cp.HI_NOT_CHANGED, 0, 1),
]
LANE_ROUNDS = 6  # rounds the lane answers whatever the layout: 1, 2 and the four of the wrap


@pytest.mark.parametrize("plain", [False, True])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_fast_lane_answers_plain_mags_as_the_reference_path(layout: str, plain: bool) -> None:
    rng = random.Random(layout)
    config = LmaConfig(address=LMA, prefix_pool=POOL, plain=plain)
    fast, reference = LmaEngine(config, T0), LmaEngine(config, T0)
    mns = [b"mn%d@plain.example" % i for i in range(60)]
    assigned: dict[bytes, bytes] = {}
    now = T0
    for seq, hnp, hi, lifetime, mag in PLAIN_ROUNDS:
        now += rng.choice([0.001, 1.0, 30.0])
        rng.shuffle(mns)
        batch = [
            Datagram(
                plain_pbu(
                    layout,
                    mn,
                    seq,
                    MAGS[mag],
                    LMA,
                    prefix=assigned[mn] if hnp == "assigned" else bytes(16),
                    plen=64 if hnp == "assigned" else 0,
                    hi=hi,
                    lifetime=lifetime,
                    ts=Timestamp.from_unix(now).value,
                ),
                MAGS[mag],
                LMA,
                now,
            )
            for mn in mns
        ]
        while batch:
            size = rng.choice([1, 7, 64])
            part, batch = batch[:size], batch[size:]
            fast.receive(Datagrams([Columns.of(part)]), now)
            reference.receive(Datagrams(part), now)
            out = list(reference.datagrams_to_send())
            assert sent(fast.datagrams_to_send()) == [(d.data, d.src, d.dst) for d in out]
            assert state(fast) == state(reference)
            for data, _, _, _ in out:
                msg = decode_mh(data).message
                if plain:  # a plain LMA never sends a Timestamp
                    assert not any(isinstance(o, Timestamp) for o in msg.options)
                if isinstance(msg, BindingAck) and msg.status == 0 and msg.lifetime:
                    mn = next(o for o in msg.options if isinstance(o, MobileNodeIdentifier))
                    hnp_option = next(o for o in msg.options if isinstance(o, HomeNetworkPrefix))
                    assigned[mn.identifier] = hnp_option.prefix.packed
    assert fast.fast_lane is not None
    assert fast.fast_lane.pbus_accepted >= LANE_ROUNDS * len(mns)
    if plain or "ts" not in LAYOUTS[layout][0]:  # sequence-number ordering answered the repeats
        assert reference.counters.pba_status[cp.STATUS_SEQUENCE_OUT_OF_WINDOW] == 2 * len(mns)


@pytest.mark.parametrize("seed", range(6))
def test_fast_lane_matches_the_reference_path_through_a_takeover(seed: int) -> None:
    """A standby synchronised from an active (PEER) that dies: the MAGs' failover PBUs (LFI) are
    held per MAG while the SO-REQ is out, then adopted (replayed through the lane)."""
    rng = random.Random(100 + seed)
    active = LmaEngine(LmaConfig(address=PEER, peers=(LMA,), prefix_pool=POOL), T0)
    config = LmaConfig(address=LMA, peers=(PEER,), role="standby", prefix_pool=POOL)
    fast, reference = LmaEngine(config, T0), LmaEngine(config, T0)
    mix = Mix(rng, mns=rng.choice([20, 200]), sequence_scheme=seed % 2 == 0)
    mix.weights = {"new": 2, "refresh": 6, "stale": 1, "junk": 1}
    now = T0

    def step(to_standby: list[Datagram], dt: float) -> None:
        nonlocal now
        now += dt
        for engine in (fast, reference):
            if (due := engine.next_timer()) is not None and due <= now:
                engine.handle_timer(now)
        fast.receive(Datagrams([Columns.of(to_standby)]), now)
        reference.receive(Datagrams(to_standby), now)
        out = sent(fast.datagrams_to_send())
        assert out == sent(reference.datagrams_to_send())
        assert state(fast) == state(reference)
        acks = [Datagram(d, s, dst) for d, s, dst in out if dst == PEER]
        if active is not None:
            active.receive(Datagrams(acks), now)

    # Registration at the active; its HELLOs and SS-REPs go to both standbys.
    for _ in range(8):
        batch = [d for d in mix.batch(now, 50) if d.dst == LMA]
        active.receive(Datagrams([_to(d, PEER) for d in batch]), now)
        out = list(active.datagrams_to_send())
        mix.learn([d for d in out if d.dst != LMA])
        step([d for d in out if d.dst == LMA], 0.5)
        if (due := active.next_timer()) is not None and due <= now:
            active.handle_timer(now)
            step([d for d in active.datagrams_to_send() if d.dst == LMA], 0.0)
    assert fast.cache.count(BceState.SYNCED) > 0
    # The active dies; the MAGs fail over to the standby with LFI PBUs for their sessions.
    active = None
    for _ in range(12):
        batch = []
        for mn, hnp in list(mix.prefix.items())[: rng.randrange(1, 60)]:
            mix.seq[mn] = (mix.seq[mn] + 1) & 0xFFFF
            ts = None if mix.sequence_scheme else now + 0.3
            pbu = mix._pbu(mn, mix.seq[mn], 100, hnp, 5, ts, [LmaFailureIndication(PEER)])
            batch.append(Mix._wrap(pbu, mix.mag[mn], LMA, now + 0.3))
        step(batch, 0.3)
    assert fast.fast_lane.pbus_accepted > 0
    assert fast.cache.count(BceState.ACTIVE) > 0


def _to(datagram: Datagram, dst: IPv6Address) -> Datagram:
    """The message re-addressed (checksum redone) to ``dst``; garbage stays as it is."""
    try:
        msg = decode_mh(datagram.data).message
    except WireError:
        return datagram._replace(dst=dst)
    return Datagram(encode_mh(msg, datagram.src, dst), datagram.src, dst, datagram.arrival)


def test_ss_ack_template_is_the_reference_encoding() -> None:
    rng = random.Random(7)
    for identifier in [0, 1, 0xFFFF, *rng.sample(range(1 << 16), 500)]:
        src, dst = (IPv6Address(rng.getrandbits(128)) for _ in range(2))
        reference = encode_mh(StateSync(cp.SS_ACK, identifier), src, dst)
        assert encode_ss_ack(identifier, src.packed, dst.packed, DEFAULT_CONFIG) == reference


def test_ss_acks_in_columns_are_taken_as_the_reference_path_takes_them() -> None:
    """SS-ACKs among PBUs, given as columns (taken before the lane, acted on after it) and as
    datagrams (reference path): the same PBAs released, in the same order, the same counters —
    for good SS-ACKs, repeated ones, a bad checksum, one from a stranger, one to another address
    and a datagram too short for a header."""
    config = LmaConfig(address=LMA, prefix_pool=POOL, peers=(PEER,), sync="before-ack")
    standby = LmaConfig(address=PEER, peers=(LMA,), role="standby")
    fast, reference = LmaEngine(config, T0), LmaEngine(config, T0)
    mix = Mix(random.Random(3), mns=60, sequence_scheme=False)
    hello = mix._wrap(redundancy.hello(standby, 0, 0), PEER, LMA)
    now = T0
    for engine in (fast, reference):
        engine.receive(Datagrams([hello]), now)
        engine.datagrams_to_send()
    for _ in range(4):
        now += 0.01
        pbus = [mix._wrap(mix._pbu(mn, 1, 100, ZERO, 1, now, []), MAGS[0], LMA, now)
                for mn in mix.mns[:20]]  # fmt: skip
        mix.mns = mix.mns[20:] + mix.mns[:20]
        for engine in (fast, reference):
            engine.receive(Datagrams([hello, *pbus]), now)
        reps = [d for d in reference.datagrams_to_send() if d.dst == PEER]
        assert sent(fast.datagrams_to_send()) == sent([*reps])
        acks = [mix._wrap(StateSync(cp.SS_ACK, decode_mh(d.data).message.identifier), PEER, LMA)
                for d in reps]  # fmt: skip
        bad = bytearray(acks[0].data)
        bad[4] ^= 1
        odd = [
            Datagram(bytes(bad), PEER, LMA),
            mix._wrap(StateSync(cp.SS_ACK, 1), MAGS[1], LMA),
            mix._wrap(StateSync(cp.SS_ACK, 1), PEER, MAGS[2]),
        ]
        short = Datagram(b"\x3b\x00", MAGS[0], LMA)  # last, where a header read would overrun
        batch = [*odd, acks[0], *pbus[:3], *acks, hello, short]
        now += 0.001
        fast.receive(Datagrams([Columns.of(batch)]), now)
        reference.receive(Datagrams(batch), now)
        assert sent(fast.datagrams_to_send()) == sent(reference.datagrams_to_send())
        assert state(fast) == state(reference)
    assert fast.counters.ss_ack_received > 0
    assert fast.counters.drops["unmatched_ss_ack"] > 0
    assert fast.counters.drops["checksum"] > 0


def test_columns_concat_keeps_the_datagrams_and_their_order() -> None:
    """Runs of parts over one buffer (PBAs released a few at a time) and parts of their own."""
    rng = random.Random(5)
    datagrams = [
        Datagram(rng.randbytes(rng.randrange(1, 40)), rng.choice(MAGS), LMA, rng.choice([None, T0]))
        for _ in range(30)
    ]
    whole = Columns.of(datagrams[:20])
    parts = [whole.take(slice(0, 3)), whole.take(slice(3, 4)), Columns.of(datagrams[20:25])]
    parts += [whole.take(slice(4, 20)), Columns.of(datagrams[25:]), whole.take(slice(0, 0))]
    expected = [*datagrams[:3], datagrams[3], *datagrams[20:25], *datagrams[4:20], *datagrams[25:]]
    joined = Columns.concat(parts)
    assert [joined.datagram(i) for i in range(len(joined))] == expected
    shared = Columns.concat([whole.take(slice(5, 9)), whole.take(slice(0, 2))])
    assert [shared.datagram(i) for i in range(len(shared))] == [*datagrams[5:9], *datagrams[:2]]
