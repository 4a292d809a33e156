"""The compiled bulk codec (lmaload._ext.bulk) against its pure-Python twins in lmaload.bulk:
byte-identical encodes and identical decoded records for random populations, options and
batches, malformed and foreign datagrams included."""

import inspect
import random
import string
import struct
from ipaddress import IPv6Address

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

# lmaload.bulk first: it imports the extension (importing the extension first would leave
# lmaload.bulk on the pure-Python twins, see test_compiled_functions_are_dispatched).
from lmaload import bulk
from lmaload._ext import bulk as ext
from lmaload.bench import _pba_batch
from lmaload.population import NaiColumn, Population, PopulationSpec, generate
from lmaload.wire import (
    DEFAULT_CONFIG,
    AccessTechnologyType,
    BindingAck,
    HandoffIndicator,
    Heartbeat,
    HomeNetworkPrefix,
    LmaFailureIndication,
    Message,
    MobileNodeIdentifier,
    RestartCounter,
    StateSync,
    Timestamp,
    WireConfig,
    encode_ipv6_mh,
    encode_mh,
)
from lmaload.wire import codepoints as cp
from lmaload.wire import options as wo
from tests.strategies import ipv4, ipv6, messages, option_lists, sync_options, wire_configs

ENCODERS = ("encode_pbus", "encode_heartbeats")
DECODERS = ("decode_pbas", "decode_heartbeats", "decode_ss_acks")
LMA = IPv6Address("fd00:6c6d:6100::1")
SHIFTED_CONFIG = WireConfig(150, 151, 152, 153, 50, 51, 52, 53, 54, hac_mag_encoding="literal")

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_compiled_functions_are_dispatched() -> None:
    for name in ENCODERS + DECODERS:
        assert getattr(bulk, name) is getattr(ext, name), name


@pytest.mark.parametrize("name", ENCODERS + DECODERS)
def test_signatures_match_the_twins(name: str) -> None:
    def parameters(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    assert parameters(getattr(ext, name)) == parameters(getattr(bulk, f"py_{name}"))


# ---------------------------------------------------------------------------------------------
# Encoders


def assert_same_messages(
    got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]
) -> None:
    (buf, offsets), (ref_buf, ref_offsets) = got, want
    assert buf.dtype == np.uint8 and buf.ndim == 1 and buf.flags.c_contiguous
    assert offsets.dtype == np.int64 and len(offsets) == len(ref_offsets)
    for i in range(len(ref_offsets) - 1):
        message = buf[offsets[i] : offsets[i + 1]].tobytes()
        reference = ref_buf[ref_offsets[i] : ref_offsets[i + 1]].tobytes()
        assert message == reference, f"message {i}:\n{message.hex()}\n{reference.hex()}"
    assert np.array_equal(offsets, ref_offsets) and np.array_equal(buf, ref_buf)


@st.composite
def populations(draw: st.DrawFn) -> Population:
    """A generated population whose per-row columns are then randomised over their full range."""
    spec = PopulationSpec(
        mns=draw(st.integers(1, 300)),
        mags=draw(st.integers(1, 20)),
        seed=draw(st.integers(0, 2**32 - 1)),
        realm=draw(st.text(string.ascii_letters + string.digits + ".-@", min_size=1, max_size=60)),
        ll_id_share=draw(st.floats(0, 1)),
    )
    pop = generate(spec)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mns, n = pop.mns, spec.mns
    # Ids of every decimal length, and the largest ones.
    ids = rng.random(n) * 10.0 ** rng.integers(1, 11, n)
    ids[rng.random(n) < 0.05] = 2**32 - 1
    mns["mn_id"] = np.minimum(ids, 2**32 - 1).astype(np.uint32)
    mns["seq"] = rng.integers(0, 2**16, n)
    mns["ts"] = rng.integers(0, 2**64, n, dtype=np.uint64)
    mns["hi"] = rng.integers(0, 256, n)
    mns["att"] = rng.integers(0, 256, n)
    mns["hnp"] = rng.integers(0, 256, (n, 16))
    mns["hnp_len"] = rng.integers(0, 256, n)
    mns["ipv4_hoa"] = rng.integers(0, 256, (n, 4))
    mns["ll_id"] = rng.integers(0, 256, (n, 8))
    # Lengths above the column's 8 octets are cut to 8 by the reference too.
    mns["ll_len"] = np.where(rng.random(n) < 0.5, rng.integers(0, 12, n), mns["ll_len"])
    pop.mags["addr6"] = rng.integers(0, 256, (spec.mags, 16))
    pop.mags["addr4"] = rng.integers(0, 256, (spec.mags, 4))
    if draw(st.booleans()):  # stored NAIs of every length an MN-ID option holds, 0 included
        pop.nais = NaiColumn.of(
            [rng.integers(0, 256, k).astype(np.uint8).tobytes() for k in rng.integers(0, 255, n)]
        )
    return pop


pbu_options = st.builds(
    bulk.PbuOptions,
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.none() | st.builds(LmaFailureIndication, ipv6, st.none() | ipv4),
)


@st.composite
def row_selections(draw: st.DrawFn, pop: Population) -> np.ndarray:
    """Up to 80 rows, with repeats and numpy's negative indices (possibly none)."""
    n = len(pop.mns)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.integers(-n, n, draw(st.integers(0, 80)))


@SETTINGS
@given(st.data(), populations(), pbu_options, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_encode_pbus_matches_reference(
    data: st.DataObject, pop: Population, options: bulk.PbuOptions, flags: int, lifetime: int
) -> None:
    rows = data.draw(row_selections(pop))
    lma = data.draw(ipv6)
    assert_same_messages(
        ext.encode_pbus(pop, rows, lma, flags, lifetime, options),
        bulk.py_encode_pbus(pop, rows, lma, flags, lifetime, options),
    )


def test_encode_pbus_defaults_and_row_lists() -> None:
    pop = generate(PopulationSpec(mns=50, mags=3, seed=7, first_id=4294967200))
    assert_same_messages(
        ext.encode_pbus(pop, list(range(50)), LMA), bulk.py_encode_pbus(pop, range(50), LMA)
    )


def test_encode_pbus_utf8_realm() -> None:
    pop = generate(PopulationSpec(mns=20, mags=2, realm="exämple.中国"))
    rows = np.arange(20)
    assert_same_messages(
        ext.encode_pbus(pop, rows, LMA, options=bulk.PbuOptions(link_layer_id=True)),
        bulk.py_encode_pbus(pop, rows, LMA, options=bulk.PbuOptions(link_layer_id=True)),
    )


def both_raise(exception: type[Exception], function: str, *args, **kwargs) -> None:
    with pytest.raises(exception):
        getattr(ext, function)(*args, **kwargs)
    with pytest.raises(exception):
        getattr(bulk, f"py_{function}")(*args, **kwargs)


def test_encode_pbus_errors_match_reference() -> None:
    pop = generate(PopulationSpec(mns=10, mags=2))
    rows = np.arange(2)
    both_raise(IndexError, "encode_pbus", pop, np.array([3, 10]), LMA)
    both_raise(IndexError, "encode_pbus", pop, np.array([-11]), LMA)
    both_raise(struct.error, "encode_pbus", pop, rows, LMA, flags=0x10000)
    both_raise(struct.error, "encode_pbus", pop, rows, LMA, lifetime=-1)
    pop.mns["mag"][5] = 2
    both_raise(IndexError, "encode_pbus", pop, [4, 5], LMA)
    # Nothing to encode, nothing to fail.
    assert_same_messages(
        ext.encode_pbus(pop, [], LMA, flags=-1), bulk.py_encode_pbus(pop, [], LMA, flags=-1)
    )


def test_encode_pbus_nai_over_255_octets() -> None:
    pop = generate(PopulationSpec(mns=2, mags=1, realm="r" * 245))
    pop.mns["mn_id"] = [7, 1234567]
    # MN-ID option data: 1 + "mn" + 1 digit + "@" + realm fits, 7 digits do not.
    assert_same_messages(ext.encode_pbus(pop, [0], LMA), bulk.py_encode_pbus(pop, [0], LMA))
    both_raise(ValueError, "encode_pbus", pop, [0, 1], LMA)
    pop.nais = NaiColumn.of([b"n" * 254, b"n" * 255])  # stored: the same limit
    assert_same_messages(ext.encode_pbus(pop, [0], LMA), bulk.py_encode_pbus(pop, [0], LMA))
    both_raise(ValueError, "encode_pbus", pop, [0, 1], LMA)


def test_nai_index_matches_reference() -> None:
    rng = np.random.default_rng(5)
    stored = [b"", b"mn7@x", b"imsi-001010000000042@ims.example.org"]
    stored += [rng.integers(0, 256, k).astype(np.uint8).tobytes() for k in range(1, 300)]
    column = NaiColumn.of(stored)
    slots = ext.nai_slots(column.blob, column.offsets)
    assert np.array_equal(slots, bulk.py_nai_slots(column.blob, column.offsets))
    index = bulk.nai_index(column, np.arange(len(stored)) + 10)
    assert [bulk.nai_lookup(index, nai) for nai in stored] == list(range(10, len(stored) + 10))
    assert bulk.nai_lookup(index, b"mn8@x") == bulk.NO_MN_ID


@SETTINGS
@given(populations(), st.integers(0, 40), st.integers(0, 2**32 - 1))
def test_encode_heartbeats_matches_reference(pop: Population, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mags = rng.integers(-len(pop.mags), len(pop.mags), count)
    lmas = rng.integers(0, 256, (count, 16), dtype=np.uint8)
    sequences = rng.integers(0, 2**32, count, dtype=np.uint32)
    sequences[rng.random(count) < 0.1] = 2**32 - 1
    assert_same_messages(
        ext.encode_heartbeats(pop, mags, lmas, sequences),
        bulk.py_encode_heartbeats(pop, mags, lmas, sequences),
    )


def test_encode_heartbeats_errors_match_reference() -> None:
    pop = generate(PopulationSpec(mns=1, mags=2))
    lmas = np.zeros((1, 16), np.uint8)
    both_raise(IndexError, "encode_heartbeats", pop, np.array([2]), lmas, np.array([1]))
    both_raise(struct.error, "encode_heartbeats", pop, np.array([1]), lmas, np.array([2**32]))
    both_raise(struct.error, "encode_heartbeats", pop, np.array([1]), lmas, np.array([-1]))


# ---------------------------------------------------------------------------------------------
# Decoders


def pack(datagrams: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(datagrams) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(d) for d in datagrams])
    return np.frombuffer(b"".join(datagrams), dtype=np.uint8), offsets


def assert_decoders_match(buf: np.ndarray, offsets: np.ndarray, config: WireConfig) -> None:
    """Every decoder, both framings: the same records as the twin, to the last field."""
    for framing in ("ipv6", "mh"):
        for name, extra in [(name, ()) for name in DECODERS] + [("decode_pbas", (INDEX,))]:
            got = getattr(ext, name)(buf, offsets, framing, config, *extra)
            want = getattr(bulk, f"py_{name}")(buf, offsets, framing, config, *extra)
            assert got.dtype == want.dtype and got.shape == want.shape
            if not np.array_equal(got, want):
                i = int(np.flatnonzero(got != want)[0])
                datagram = buf.tobytes()[offsets[i] : offsets[i + 1]].hex()
                raise AssertionError(f"{name} {framing} [{i}]: {got[i]} != {want[i]}\n{datagram}")


# NAIs around every rule of _mn_id_from_nai.
nais = st.one_of(
    st.integers(0, 2**32 + 10).map(lambda i: f"mn{i}@example.com".encode()),
    st.sampled_from(
        [
            b"",
            b"mn",
            b"mn@x",
            b"mn0@x",
            b"mn00@x",
            b"mn01@x",
            b"mn7",
            b"mn7@",
            b"mn7@@x",
            b"mn4294967294@x",
            b"mn4294967295@x",
            b"mn04294967294@x",
            b"mn12345678901@x",
            b"mn\xd9\xa1@x",  # an Arabic-Indic digit: not ASCII
            b"mn 7@x",
            b"mn+7@x",
            b"mn1_0@x",
            b"Mn7@x",
            b"xmn7@x",
        ]
    ),
    st.binary(max_size=24),
)


# Stored NAIs for decode_pbas(nais=...): some derived-looking, one empty, others not in it.
INDEX = bulk.nai_index(
    NaiColumn.of([b"mn7@x", b"", b"mn0@x", b"mn5@example.com", b"Mn7@x", b"mn\xd9\xa1@x"]),
    np.array([3, 1, 4, 1_000_000, 5, 9]),
)


def pba_options(config: WireConfig) -> st.SearchStrategy[tuple]:
    """What a PBA carries, in any order, with repeats and foreign options."""
    pba = st.one_of(
        st.builds(MobileNodeIdentifier, nais, st.sampled_from([1, 1, 1, 0, 2])),
        st.builds(HomeNetworkPrefix, ipv6, st.integers(0, 128)),
        st.builds(Timestamp, st.integers(0, 2**64 - 1)),
        st.builds(HandoffIndicator, st.integers(0, 255)),
        st.builds(AccessTechnologyType, st.integers(0, 255)),
    )
    return st.tuples(st.lists(pba, max_size=6), option_lists(config, max_size=3)).flatmap(
        lambda parts: st.permutations(parts[0] + list(parts[1])).map(tuple)
    )


def wanted_messages(config: WireConfig) -> st.SearchStrategy[Message]:
    """The messages the decoders look for, often, and any other, under ``config``."""
    u8, u16, u32 = st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1)
    typical_pba = st.builds(
        lambda status, seq, mn_id, prefix, length, ts: BindingAck(
            status,
            seq,
            900,
            options=(
                HomeNetworkPrefix(prefix, length),
                MobileNodeIdentifier(f"mn{mn_id}@example.com".encode()),
                Timestamp(ts),
                HandoffIndicator(1),
                AccessTechnologyType(8),
            ),
        ),
        u8,
        u16,
        st.integers(0, 2**32 + 10),
        ipv6,
        st.integers(0, 128),
        st.integers(0, 2**64 - 1),
    )
    counters = st.lists(st.builds(RestartCounter, u32), max_size=2)
    return st.one_of(
        typical_pba,
        st.builds(BindingAck, u8, u16, u16, u8, pba_options(config)),
        st.builds(
            Heartbeat,
            u32,
            u8,
            st.tuples(counters, option_lists(config, max_size=2)).map(lambda p: (*p[0], *p[1])),
        ),
        st.builds(StateSync, st.just(cp.SS_ACK), u16, u8, option_lists(config, max_size=3)),
        st.builds(StateSync, st.integers(0, 3), u16, u8, sync_options(config)),
        messages(config),
    )


def fix_framing(datagram: bytes, head: int) -> bytes:
    """The MH after ``head`` octets cut or zero-padded to a multiple of 8 (at most 2048), with
    Header Len and, after an IPv6 header, Payload Length to match: the damage then reaches the
    message and option checks."""
    mh = bytearray(datagram[head:])
    size = min(max(8, (len(mh) + 7) // 8 * 8), 2048)
    mh = (mh + bytes(size))[:size]
    mh[1] = size // 8 - 1
    header = bytearray(datagram[:head])
    if head:
        header[4:6] = size.to_bytes(2, "big")
    return bytes(header + mh)


def mutate(datagram: bytes, rng: random.Random, head: int) -> bytes:
    """One to three bit flips, random octets, truncations or extensions, then often a framing
    fix so that the Header Len check does not catch everything."""
    data = bytearray(datagram)
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(4)
        if action == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif action == 1 and len(data) > head:
            data[rng.randrange(head, len(data))] = rng.randrange(256)
        elif action == 2:
            del data[rng.randrange(len(data) + 1) :]
        else:
            data += rng.randbytes(rng.randrange(1, 24))
    if len(data) >= head and rng.random() < 0.7:
        return fix_framing(bytes(data), head)
    return bytes(data)


def with_wrong_checksum(datagram: bytes, head: int) -> bytes:
    checksum = (int.from_bytes(datagram[head + 4 : head + 6], "big") + 1) & 0xFFFF
    return datagram[: head + 4] + checksum.to_bytes(2, "big") + datagram[head + 6 :]


configs = st.sampled_from([DEFAULT_CONFIG, SHIFTED_CONFIG]) | wire_configs()


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[bytes], WireConfig]:
    """A few messages encoded under one config, each over the RFC 5844 inner IPv6 header and
    bare, as is, with a wrong checksum and mutated; random octets; decoded under the same config
    or (sometimes) another."""
    config = draw(configs)
    rng = draw(st.randoms(use_true_random=False))
    out = [rng.randbytes(rng.randrange(120)) for _ in range(3)]
    for message in draw(st.lists(wanted_messages(config), min_size=1, max_size=6)):
        src, dst = draw(ipv6), draw(ipv6)
        try:
            framed = [
                (40, encode_ipv6_mh(message, src, dst, config)),
                (0, encode_mh(message, src, dst, config)),
            ]
        except ValueError:  # over 2048 octets, or an option over 255
            continue
        for head, datagram in framed:
            out += [datagram, with_wrong_checksum(datagram, head)]
            out += [mutate(datagram, rng, head) for _ in range(5)]
    rng.shuffle(out)
    return out, draw(st.just(config) | configs)


# Shrinking a batch takes minutes; the failure message already names the datagram.
@settings(SETTINGS, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(batches())
def test_decoders_match_reference(batch: tuple[list[bytes], WireConfig]) -> None:
    datagrams, config = batch
    assert_decoders_match(*pack(datagrams), config)


def bare_pba(options: bytes) -> bytes:
    """A bare PBA around a raw option block, padded with PadN or Pad1 to 8n octets."""
    body = bytes([0, cp.BA_FLAG_P, 0, 1, 0, 0]) + options
    pad = -(6 + len(body)) % 8
    body += bytes([cp.OPT_PADN, pad - 2]) + bytes(pad - 2) if pad > 1 else bytes(pad)
    return (
        bytes([cp.PAYLOAD_PROTO_NONE, (6 + len(body)) // 8 - 1, cp.MH_BINDING_ACK, 0, 0, 0]) + body
    )


@pytest.mark.parametrize("config", [DEFAULT_CONFIG, SHIFTED_CONFIG], ids=["default", "shifted"])
def test_every_option_type_and_length(config: WireConfig) -> None:
    """Each option type with Length 0..41 (data 0x00 or 0x81: an HNP prefix length of 0 or
    129), alone and nested in a PBCI; a PBCI or BCI nested in a PBCI."""
    pbci = config.opt_pbci
    datagrams = [
        bare_pba(bytes([kind, length]) + bytes([fill]) * length)
        for kind in range(256)
        for length in range(42)
        for fill in (0, 0x81)
    ]
    pbci_data = bytes(wo.PBCI_FIXED_LENGTH)
    for kind in range(256):
        for length in range(12):
            inner = bytes([kind, length]) + bytes(length)
            datagrams.append(bare_pba(bytes([pbci, len(pbci_data + inner)]) + pbci_data + inner))
    for inner in (bytes([pbci, 28]) + pbci_data, bytes([config.opt_bci, 40]) + bytes(40)):
        datagrams.append(bare_pba(bytes([pbci, len(pbci_data + inner)]) + pbci_data + inner))
    assert_decoders_match(*pack(datagrams), config)


@pytest.mark.parametrize(
    ("nai", "mn_id"),
    [
        (b"mn0@x", 0),
        (b"mn7@", 7),
        (b"mn7@@x", 7),
        (b"mn4294967294@example.com", 4294967294),
        (b"mn4294967295@x", bulk.NO_MN_ID),
        (b"mn4294967296@x", bulk.NO_MN_ID),
        (b"mn12345678901@x", bulk.NO_MN_ID),
        (b"mn01@x", bulk.NO_MN_ID),
        (b"mn00@x", bulk.NO_MN_ID),
        (b"mn@x", bulk.NO_MN_ID),
        (b"mn7", bulk.NO_MN_ID),
        (b"mn", bulk.NO_MN_ID),
        (b"", bulk.NO_MN_ID),
        (b"mn\xd9\xa1@x", bulk.NO_MN_ID),  # an Arabic-Indic digit: not ASCII
        (b"mn 7@x", bulk.NO_MN_ID),
        (b"mn+7@x", bulk.NO_MN_ID),
        (b"mn1_0@x", bulk.NO_MN_ID),
        (b"Mn7@x", bulk.NO_MN_ID),
        (b"mn7x@x", bulk.NO_MN_ID),
    ],
)
def test_mn_id_from_nai(nai: bytes, mn_id: int) -> None:
    """Only the first MN-ID option counts, and only with the NAI subtype."""
    first = MobileNodeIdentifier(nai)
    other = MobileNodeIdentifier(b"mn5@x")
    datagrams = [
        encode_mh(BindingAck(0, 1, 2, options=options), LMA, LMA)
        for options in [(first,), (first, other), (MobileNodeIdentifier(nai, 2), other)]
    ]
    buf, offsets = pack(datagrams)
    assert ext.decode_pbas(buf, offsets, "mh")["mn_id"].tolist() == [mn_id, mn_id, bulk.NO_MN_ID]
    assert_decoders_match(buf, offsets, DEFAULT_CONFIG)


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False))
def test_decoders_slice_offsets_like_python(rng: random.Random) -> None:
    """Offsets out of order, negative or past the end slice the buffer as bytes slicing does:
    over valid datagrams, so that a wrong slice shows in the records."""
    buf, offsets = _pba_batch(6)
    size = len(buf)
    choices = [lambda o: o, lambda o: o - size, lambda o: rng.randrange(-2 * size, 2 * size)]
    offsets = np.array([rng.choice(choices)(int(o)) for o in offsets], np.int64)
    assert_decoders_match(buf, offsets, DEFAULT_CONFIG)


def test_decoders_on_bench_pbas() -> None:
    """The PBAs of ``lmaload bench``: every field decoded, mn_id from the NAI."""
    buf, offsets = _pba_batch(600)
    records = ext.decode_pbas(buf, offsets)
    assert (records["error"] == 0).all() and (records["checksum_ok"] == 1).all()
    assert records["mn_id"].tolist() == [i % 512 for i in range(600)]
    assert_decoders_match(buf, offsets, DEFAULT_CONFIG)


def test_decoder_argument_errors_match_reference() -> None:
    buf = np.zeros(8, np.uint8)
    for name in DECODERS:
        both_raise(ValueError, name, buf, np.array([0, 8]), framing="udp")
        both_raise(ValueError, name, buf, np.array([], np.int64))
