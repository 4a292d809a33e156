"""RFC 5213 PBU processing of the reference LMA engine, driven directly (no network): one PBU per
status code of spec-digest §3.2/§3.5, the PBA contents of §3.1, and the binding lifecycle
(refresh, handoff, de-registration with MinDelayBeforeBCEDelete, revival, expiry)."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest

from lmaload.protocol import BceState, Datagram, Datagrams, LmaConfig, LmaEngine, Policy
from lmaload.wire import (
    AccessTechnologyType,
    AlternateCareOfAddress,
    BindingAck,
    BindingError,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeNetworkPrefix,
    LinkLocalAddress,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    RestartCounter,
    Timestamp,
    UnknownMessage,
    decode_mh,
    encode_mh,
)
from lmaload.wire import codepoints as cp

T0 = 1_700_000_000.0
LMA = IPv6Address("2001:db8:bbbb::1")
MAG = IPv6Address("2001:db8:aaaa::1")
MAG2 = IPv6Address("2001:db8:aaaa::2")
POOL = IPv6Network("2001:db8:8000::/48")
ZERO = HomeNetworkPrefix(IPv6Address("::"), 0)


def engine(**overrides) -> LmaEngine:
    return LmaEngine(LmaConfig(**{"address": LMA, "prefix_pool": POOL, **overrides}), T0)


def pbu_options(
    mn: bytes | None = b"mn1@example.com",
    hnp: HomeNetworkPrefix | None = ZERO,
    hi: int | None = 1,
    att: int | None = 4,
    ts: float | None = None,
    extra: tuple = (),
) -> tuple:
    opts: list = []
    if mn is not None:
        opts.append(MobileNodeIdentifier(mn))
    if hnp is not None:
        opts.append(hnp)
    if hi is not None:
        opts.append(HandoffIndicator(hi))
    if att is not None:
        opts.append(AccessTechnologyType(att))
    if ts is not None:
        opts.append(Timestamp.from_unix(ts))
    return (*opts, *extra)


def exchange(
    lma: LmaEngine, msg, now: float = T0, src: IPv6Address = MAG, dst: IPv6Address = LMA
) -> list:
    lma.receive(Datagrams([Datagram(encode_mh(msg, src, dst), src, dst)]), now)
    out = []
    for data, s, d, _ in lma.datagrams_to_send():
        decoded = decode_mh(data, s, d)
        assert decoded.checksum_ok
        out.append((decoded.message, s, d))
    return out


def pba(
    lma: LmaEngine, seq: int, lifetime: int = 100, now: float = T0, src=MAG, **kw
) -> BindingAck:
    replies = exchange(lma, BindingUpdate(seq, lifetime, options=pbu_options(**kw)), now, src)
    acks = [m for m, _, _ in replies if isinstance(m, BindingAck)]
    assert len(acks) == 1, replies
    assert replies[0][1] == LMA and replies[0][2] == src
    return acks[0]


def opt(msg, kind):
    return next((o for o in msg.options if isinstance(o, kind)), None)


def hnps(msg) -> list[HomeNetworkPrefix]:
    return [o for o in msg.options if isinstance(o, HomeNetworkPrefix)]


def test_new_session_allocates_a_prefix_and_echoes_the_request():
    lma = engine()
    ack = pba(lma, 7, ts=T0, extra=(MobileNodeLinkLayerIdentifier(b"\x02\x00\x00\x00\x00\x01"),))
    assert (ack.status, ack.sequence, ack.lifetime, ack.flags) == (0, 7, 100, cp.BA_FLAG_P)
    assert opt(ack, MobileNodeIdentifier).identifier == b"mn1@example.com"
    assert hnps(ack) == [HomeNetworkPrefix(IPv6Address("2001:db8:8000::"), 64)]  # never ALL_ZERO
    assert opt(ack, HandoffIndicator).value == 1 and opt(ack, AccessTechnologyType).value == 4
    assert opt(ack, Timestamp) == Timestamp.from_unix(T0)
    assert opt(ack, MobileNodeLinkLayerIdentifier).identifier == b"\x02\x00\x00\x00\x00\x01"
    assert opt(ack, LinkLocalAddress) is None
    assert lma.bce_count == 1 and lma.counters.pba_status[0] == 1
    second = pba(lma, 1, mn=b"mn2@example.com")
    assert hnps(second) == [HomeNetworkPrefix(IPv6Address("2001:db8:8000:1::"), 64)]
    assert opt(second, Timestamp) is None


def test_link_local_address_is_generated_once_and_kept():
    lma = engine()
    ask = (LinkLocalAddress(IPv6Address("::")),)
    created = pba(lma, 1, extra=ask)
    first = opt(created, LinkLocalAddress).address
    assert first.is_link_local
    handoff = pba(lma, 2, hnp=hnps(created)[0], hi=3, src=MAG2, extra=ask)
    assert opt(handoff, LinkLocalAddress).address == first


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"mn": None}, 160),
        ({"hnp": None}, 158),
        ({"hi": None}, 161),
        ({"att": None}, 162),
        ({"ts": T0 + 1.0}, 156),
        ({"ts": T0 - 1.0}, 156),
        ({"hnp": HomeNetworkPrefix(IPv6Address("2001:db8:9999::"), 64)}, 155),
    ],
)
def test_rejections_of_a_single_pbu(kwargs, status):
    lma = engine()
    ack = pba(lma, 1, **kwargs)
    assert ack.status == status and ack.lifetime == 0
    assert lma.bce_count == 0
    assert hnps(ack) == ([kwargs["hnp"]] if kwargs.get("hnp") else [ZERO])
    assert opt(ack, MobileNodeIdentifier).identifier == (
        b"" if "mn" in kwargs else b"mn1@example.com"
    )
    if status == 156:  # the rejection carries the LMA's time, not the MAG's
        assert opt(ack, Timestamp) == Timestamp.from_unix(T0)


def test_policy_rejections_152_153_154():
    policy = Policy(
        authorized_mags=frozenset({MAG}),
        authorized_mns=frozenset({b"mn1@example.com", b"off@example.com"}),
        pmip_disabled_mns=frozenset({b"off@example.com"}),
    )
    lma = engine(policy=policy)
    assert pba(lma, 1, src=MAG2).status == 154
    assert pba(lma, 1, mn=b"stranger@example.com").status == 153
    assert pba(lma, 1, mn=b"off@example.com").status == 152
    assert pba(lma, 1).status == 0


def test_insufficient_resources_130_when_the_pool_is_exhausted():
    lma = engine(prefix_pool=IPv6Network("2001:db8:8000::/63"))
    assert [pba(lma, 1, mn=b"mn%d" % i).status for i in range(3)] == [0, 0, 130]


def test_timestamp_window_is_checked_at_arrival_not_when_processed():
    """A PBU that waited in the receive queue past the window (but not so long that it is shed)
    is judged by when it arrived."""
    pbu = BindingUpdate(1, 100, options=pbu_options(ts=T0))
    late = T0 + 0.4
    for arrival, status in ((T0, 0), (None, 156)):
        lma = engine()
        lma.receive(Datagrams([Datagram(encode_mh(pbu, MAG, LMA), MAG, LMA, arrival)]), late)
        (reply,) = lma.datagrams_to_send()
        assert decode_mh(reply.data, reply.src, reply.dst).message.status == status


def test_timestamp_lower_than_previously_accepted_157():
    lma = engine()
    assert pba(lma, 1, ts=T0).status == 0
    ack = pba(lma, 2, hnp=HomeNetworkPrefix(IPv6Address("2001:db8:8000::"), 64), hi=5, ts=T0 - 0.1)
    assert ack.status == 157 and opt(ack, Timestamp) == Timestamp.from_unix(T0)


def test_sequence_out_of_window_135_reports_the_last_accepted_sequence():
    lma = engine()
    first = pba(lma, 10)
    assigned = hnps(first)[0]
    ack = pba(lma, 9, hnp=assigned, hi=5)
    assert ack.status == 135 and ack.sequence == 10 and opt(ack, Timestamp) is None
    assert pba(lma, 11, hnp=assigned, hi=5).status == 0


def test_prefix_of_another_mn_155_and_prefix_set_mismatch_159():
    lma = engine()
    a = hnps(pba(lma, 1, mn=b"a@example.com"))[0]
    b = hnps(pba(lma, 1, mn=b"b@example.com"))[0]
    assert pba(lma, 2, mn=b"b@example.com", hnp=a, hi=5).status == 155
    both = (a, b)
    msg = BindingUpdate(
        3,
        100,
        options=(
            MobileNodeIdentifier(b"a@example.com"),
            *both,
            HandoffIndicator(5),
            AccessTechnologyType(4),
        ),
    )
    ((ack, _, _),) = exchange(lma, msg)
    assert ack.status == 159 and hnps(ack) == list(both)
    other = HomeNetworkPrefix(IPv6Address("2001:db8:8000:7::"), 64)
    msg = BindingUpdate(
        4,
        100,
        options=(
            MobileNodeIdentifier(b"a@example.com"),
            a,
            other,
            HandoffIndicator(5),
            AccessTechnologyType(4),
        ),
    )
    ((ack, _, _),) = exchange(lma, msg)
    assert ack.status == 159


def test_explicit_authorised_prefix_is_accepted():
    lma = engine()
    wanted = HomeNetworkPrefix(IPv6Address("2001:db8:8000:42::"), 64)
    ack = pba(lma, 1, hnp=wanted)
    assert ack.status == 0 and hnps(ack) == [wanted]


def test_prefix_with_stray_host_bits_is_masked_not_a_crash():
    lma = engine()
    stray = HomeNetworkPrefix(IPv6Address("2001:db8:8000:42::1"), 64)
    ack = pba(lma, 1, hnp=stray)
    assert ack.status == 0
    assert hnps(ack) == [HomeNetworkPrefix(IPv6Address("2001:db8:8000:42::"), 64)]
    assert pba(lma, 1, mn=b"mn2@example.com", hnp=HomeNetworkPrefix(POOL[1], 0)).status == 155


def test_refresh_handoff_and_alternate_coa():
    lma = engine()
    hnp = hnps(pba(lma, 1))[0]
    row = lma.cache.by_prefix(IPv6Network((hnp.prefix, 64)))
    assert pba(lma, 2, hnp=hnp, hi=5, lifetime=200, now=T0 + 10).lifetime == 200
    assert lma.cache.get(row, "expires") == T0 + 10 + 800
    # handoff to another MAG, which names itself in an Alternate CoA option
    alt = (AlternateCareOfAddress(MAG2),)
    assert pba(lma, 3, hnp=hnp, hi=3, src=MAG, extra=alt).status == 0
    assert lma.cache.get(row, "proxy_coa") == MAG2 and lma.cache.by_mag(MAG) == set()
    # HI 2 with ALL_ZERO finds the single BCE of the MN and updates it
    assert hnps(pba(lma, 4, hi=2, src=MAG)) == [hnp]
    assert lma.bce_count == 1 and lma.cache.get(row, "proxy_coa") == MAG


def test_deregistration_keeps_the_entry_then_deletes_it():
    lma = engine(min_delay_before_bce_delete=10.0)
    hnp = hnps(pba(lma, 1))[0]
    # a de-registration from a MAG that does not hold the binding is silently ignored
    assert exchange(lma, BindingUpdate(2, 0, options=pbu_options(hnp=hnp, hi=4)), src=MAG2) == []
    ack = pba(lma, 3, lifetime=0, hnp=hnp, hi=4)
    assert ack.status == 0 and ack.lifetime == 0 and hnps(ack) == [hnp]
    assert lma.bce_count == 0 and lma.cache.count(BceState.DEREGISTERED) == 1
    lma.handle_timer(T0 + 9.9)
    assert len(lma.cache) == 1
    lma.handle_timer(T0 + 10.0)
    assert len(lma.cache) == 0
    # a lifetime-0 PBU matching nothing is ignored
    assert exchange(lma, BindingUpdate(4, 0, options=pbu_options(hnp=hnp, hi=4)), T0 + 11) == []


def test_valid_pbu_within_min_delay_revives_the_entry():
    lma = engine()
    hnp = hnps(pba(lma, 1))[0]
    pba(lma, 2, lifetime=0, hnp=hnp, hi=4)
    ack = pba(lma, 3, hnp=hnp, hi=5, now=T0 + 5)
    assert ack.status == 0 and hnps(ack) == [hnp] and lma.bce_count == 1
    lma.handle_timer(T0 + 20)  # the old deletion deadline no longer applies
    assert lma.bce_count == 1


def test_binding_expires_at_the_end_of_its_lifetime():
    lma = engine()
    pba(lma, 1, lifetime=5)
    assert lma.next_timer() <= T0 + 20
    lma.handle_timer(T0 + 19.9)
    assert lma.bce_count == 1
    lma.handle_timer(T0 + 20)
    assert lma.bce_count == 0 and lma.counters.bce_expired == 1


def test_heartbeat_request_is_answered_with_restart_counter():
    lma = engine(restart_counter=42)
    ((reply, src, dst),) = exchange(lma, Heartbeat(77))
    assert isinstance(reply, Heartbeat) and reply.flags == cp.HB_FLAG_R and reply.sequence == 77
    assert opt(reply, RestartCounter).counter == 42 and (src, dst) == (LMA, MAG)


def test_unknown_mh_type_gets_binding_error_2():
    lma = engine()
    ((reply, _, dst),) = exchange(lma, UnknownMessage(99, bytes(10)))
    assert isinstance(reply, BindingError) and reply.status == 2 and dst == MAG
    assert lma.counters.drops["unknown_type"] == 1


def test_bad_checksum_malformed_and_foreign_destination_are_dropped():
    lma = engine()
    good = encode_mh(BindingUpdate(1, 100, options=pbu_options()), MAG, LMA)
    bad = good[:4] + bytes([good[4] ^ 0xFF]) + good[5:]
    lma.receive(
        Datagrams(
            [Datagram(bad, MAG, LMA), Datagram(good[:-8], MAG, LMA), Datagram(good, MAG, MAG2)]
        ),
        T0,
    )
    assert list(lma.datagrams_to_send()) == []
    assert lma.counters.drops == {"checksum": 1, "malformed": 1, "not_local": 1}
