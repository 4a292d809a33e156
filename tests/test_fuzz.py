"""The decoders, fed random bytes and mutations of valid messages, raise nothing but WireError, and
whatever they accept can be described for `lmaload decode` without error.

The seeded loops run LMALOAD_FUZZ_EXAMPLES inputs each (default 20 000; 1000000 for a long run)
from LMALOAD_FUZZ_SEED; a hypothesis test adds mutations of drawn messages, which it can shrink.
"""

import json
import os
import random
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from lmaload.wire import (
    DEFAULT_CONFIG,
    AccessTechnologyType,
    AlternateCareOfAddress,
    BindingAck,
    BindingCacheInformation,
    BindingError,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeAgentControl,
    HomeAgentHello,
    HomeAgentSwitch,
    HomeNetworkPrefix,
    IPv4CareOfAddress,
    IPv4DefaultRouterAddress,
    IPv4DhcpSupportMode,
    IPv4HomeAddressReply,
    IPv4HomeAddressRequest,
    LinkLocalAddress,
    LmaFailureIndication,
    MagAddress,
    Message,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    ProxyBindingCacheInformation,
    RestartCounter,
    StateSync,
    Timestamp,
    UnknownMessage,
    UnknownOption,
    VendorSpecific,
    WireConfig,
    WireError,
    decode_datagram,
    decode_mh,
    encode_mh,
)
from lmaload.wire.describe import describe_packet, format_text
from tests.strategies import messages
from tests.vectors import VECTORS, vector_config

FUZZ_EXAMPLES = int(os.environ.get("LMALOAD_FUZZ_EXAMPLES", "20000"))
FUZZ_SEED = int(os.environ.get("LMALOAD_FUZZ_SEED", "5436"))
V4 = IPv4Address("192.0.2.1")
SRC = IPv6Address("2001:db8:aaaa::1")
DST = IPv6Address("2001:db8:bbbb::1")
LITERAL = WireConfig(hac_mag_encoding="literal")


def _decode_only_wire_errors(data: bytes, config: WireConfig = DEFAULT_CONFIG) -> None:
    """Decode as a bare MH and as an IPv6 packet; describe whatever decodes."""
    for attempt in (
        lambda: decode_datagram(data, SRC, DST, config),
        lambda: decode_datagram(encode_ipv6_header(data), config=config),
    ):
        try:
            packet = attempt()
        except WireError as exc:
            assert 0 <= exc.offset <= len(data) + 40
            continue
        described = describe_packet(packet, config)
        json.dumps(described)
        format_text(described)


def encode_ipv6_header(mh: bytes) -> bytes:
    header = bytes([0x60, 0, 0, 0]) + (len(mh) & 0xFFFF).to_bytes(2, "big") + bytes([135, 64])
    return header + SRC.packed + DST.packed + mh


def _corpus() -> list[tuple[bytes, WireConfig]]:
    """Valid messages to mutate: the spec vectors, and one of each kind with every option."""
    corpus = [(bytes.fromhex(v["hex"]), vector_config(v)) for v in VECTORS]
    every_option = tuple(
        cls(*args)
        for cls, args in [
            (AlternateCareOfAddress, (SRC,)),
            (MobileNodeIdentifier, (b"mn7@example.net",)),
            (VendorSpecific, (b"\x00\x00\x1f\x2a\x01xyz",)),
            (HomeNetworkPrefix, (SRC, 64)),
            (HandoffIndicator, (1,)),
            (AccessTechnologyType, (8,)),
            (MobileNodeLinkLayerIdentifier, (b"\x02\x00\x00\x00\x00\x07",)),
            (LinkLocalAddress, (IPv6Address("fe80::1"),)),
            (Timestamp, (0x4A9329808000,)),
            (RestartCounter, (3,)),
            (IPv4CareOfAddress, (V4,)),
            (IPv4HomeAddressRequest, (V4, 24)),
            (IPv4HomeAddressReply, (0, V4, 24)),
            (IPv4DefaultRouterAddress, (V4,)),
            (IPv4DhcpSupportMode, (True,)),
            (BindingCacheInformation, (0x8200, 1, 2, SRC, DST)),
            (ProxyBindingCacheInformation, (0x8200, 1, 2, 3, SRC)),
            (LmaFailureIndication, (DST, V4)),
            (MagAddress, (SRC,)),
            (UnknownOption, (99, b"abc")),
        ]
    )
    nested = ProxyBindingCacheInformation(0x8200, 9, 2, 3, SRC, nested=True)
    for message, config in [
        (BindingUpdate(1, 900, options=every_option), DEFAULT_CONFIG),
        (BindingAck(153, 1, 0, options=every_option[:8]), DEFAULT_CONFIG),
        (BindingError(2, SRC), DEFAULT_CONFIG),
        (HomeAgentSwitch((SRC, DST, SRC), options=every_option[-3:]), DEFAULT_CONFIG),
        (Heartbeat(7, 1, (RestartCounter(1),)), DEFAULT_CONFIG),
        (StateSync(1, 5, 0xC0, (nested, *every_option[:9], *every_option[-5:])), DEFAULT_CONFIG),
        (HomeAgentControl(0, 0, SRC, every_option[-4:]), DEFAULT_CONFIG),
        (HomeAgentControl(1, 130, SRC, every_option[-4:]), LITERAL),
        (HomeAgentHello(1, 2, 3, 4, 5, 0xC0, every_option[:3]), DEFAULT_CONFIG),
        (UnknownMessage(150, bytes(range(26))), DEFAULT_CONFIG),
    ]:
        corpus.append((encode_mh(message, SRC, DST, config), config))
    return corpus


def _mutate(rng: random.Random, data: bytearray) -> None:
    for _ in range(rng.randint(1, 6)):
        action = rng.randrange(5)
        if action == 0 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif action == 1 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif action == 2 and data:
            del data[rng.randrange(len(data)) :]
        elif action == 3:
            data += rng.randbytes(rng.randint(1, 24))
        elif len(data) >= 8:
            # Keep Header Len consistent with the buffer so decoding goes past the framing.
            del data[len(data) - len(data) % 8 :]
            data[1] = min(len(data) // 8 - 1, 255)


def _random_framed(rng: random.Random) -> bytes:
    """Random octets, half of them behind a plausible MH header so the option walker runs."""
    body = rng.randbytes(rng.randrange(300))
    if rng.random() < 0.5:
        return body
    length = (len(body) // 8 + 1) * 8
    mh_type = rng.choice([5, 6, 7, 12, 13, 200, 201, 202, rng.randrange(256)])
    return bytes([59, length // 8 - 1, mh_type]) + body.ljust(length, b"\x00")[3:]


def _fuzz(make_input: Callable[[random.Random], tuple[bytes, WireConfig]]) -> None:
    rng = random.Random(FUZZ_SEED)
    for i in range(FUZZ_EXAMPLES):
        data, config = make_input(rng)
        try:
            _decode_only_wire_errors(data, config)
        except Exception as exc:
            raise AssertionError(f"input {i} (seed {FUZZ_SEED}): {data.hex()}: {exc!r}") from exc


def test_random_bytes_raise_only_wire_error() -> None:
    _fuzz(lambda rng: (_random_framed(rng), DEFAULT_CONFIG))


def test_mutated_messages_raise_only_wire_error() -> None:
    corpus = _corpus()

    def mutated(rng: random.Random) -> tuple[bytes, WireConfig]:
        data, config = rng.choice(corpus)
        buf = bytearray(data)
        _mutate(rng, buf)
        return bytes(buf), config

    _fuzz(mutated)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(DEFAULT_CONFIG), st.randoms(use_true_random=False))
def test_mutated_random_messages_raise_only_wire_error(
    message: Message, rng: random.Random
) -> None:
    """Hypothesis-drawn messages (any option mix), mutated; hypothesis shrinks a failure."""
    try:
        data = bytearray(encode_mh(message, SRC, DST))
    except ValueError:  # over the MH size limits
        reject()
    _mutate(rng, data)
    _decode_only_wire_errors(bytes(data))


def test_decode_mh_rejects_with_offsets() -> None:
    valid = encode_mh(BindingUpdate(1, 1), SRC, DST)
    cases = {
        b"": 0,
        b"\x3b\x00\x05": 3,
        b"\x3a" + valid[1:]: 0,
        valid + bytes(8): 1,
        valid[:8]: 1,
    }
    for data, offset in cases.items():
        try:
            decode_mh(data)
        except WireError as exc:
            assert exc.offset == offset, (data.hex(), exc)
        else:
            raise AssertionError(f"{data.hex()} decoded")
