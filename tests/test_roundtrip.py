"""Property tests of the reference codec: encode → decode → encode is the identity for every
message type with random options, under the default and under random code points."""

from ipaddress import IPv6Address

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lmaload.wire import (
    DEFAULT_CONFIG,
    BindingUpdate,
    Message,
    ProxyBindingCacheInformation,
    StateSync,
    WireConfig,
    decode_datagram,
    decode_mh,
    encode_ipv6_mh,
    encode_mh,
)
from lmaload.wire.messages import MH_HEADER_LENGTH
from lmaload.wire.options import option_classes
from tests.strategies import messages, wire_configs

SRC = IPv6Address("2001:db8:aaaa::1")
DST = IPv6Address("2001:db8:bbbb::1")
LITERAL = WireConfig(hac_mag_encoding="literal")
ROUNDTRIP = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _encode_or_reject(message: Message, config: WireConfig) -> bytes:
    try:
        return encode_mh(message, SRC, DST, config)
    except ValueError:
        # Over the 2048-octet MH limit, or a nested PBCI over 255 octets: the encoder refuses
        # such messages by design (tested below); hypothesis draws another.
        assume(False)
        raise


def _check_roundtrip(message: Message, config: WireConfig) -> None:
    encoded = _encode_or_reject(message, config)
    assert len(encoded) % 8 == 0 and encoded[1] == len(encoded) // 8 - 1
    decoded = decode_mh(encoded, SRC, DST, config)
    assert decoded.checksum_ok is True
    assert decoded.message == message
    assert encode_mh(decoded.message, SRC, DST, config) == encoded


@ROUNDTRIP
@given(messages(DEFAULT_CONFIG))
def test_roundtrip_default_config(message: Message) -> None:
    _check_roundtrip(message, DEFAULT_CONFIG)


@ROUNDTRIP
@given(messages(LITERAL))
def test_roundtrip_literal_home_agent_control(message: Message) -> None:
    _check_roundtrip(message, LITERAL)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_roundtrip_random_code_points(data: st.DataObject) -> None:
    config = data.draw(wire_configs())
    _check_roundtrip(data.draw(messages(config)), config)


@settings(max_examples=300, deadline=None)
@given(messages(DEFAULT_CONFIG))
def test_ipv6_framing_roundtrip(message: Message) -> None:
    try:
        packet = encode_ipv6_mh(message, SRC, DST)
    except ValueError:
        assume(False)
        raise
    decoded = decode_datagram(packet)
    assert (decoded.src, decoded.dst) == (SRC, DST)
    assert decoded.mh.checksum_ok and decoded.mh.message == message


@settings(max_examples=300, deadline=None)
@given(messages(DEFAULT_CONFIG))
def test_options_are_aligned(message: Message) -> None:
    """Every option's Type octet sits where its alignment asks (spec-digest §1.2)."""
    encoded = _encode_or_reject(message, DEFAULT_CONFIG)
    fixed, _ = message.pack(DEFAULT_CONFIG)
    classes = option_classes(DEFAULT_CONFIG)
    off = MH_HEADER_LENGTH + len(fixed)
    while off < len(encoded):
        kind = encoded[off]
        if kind == 0:
            off += 1
            continue
        cls = classes.get(kind)
        if cls is not None:
            x, y = cls.ALIGN
            assert off % x == y, (cls.NAME, off)
        length = encoded[off + 1]
        if cls is ProxyBindingCacheInformation and length > 28:
            off += 2 + 28  # step into a nested PBCI: its MN options are aligned too
        else:
            off += 2 + length


def test_encoder_refuses_oversized_messages() -> None:
    from lmaload.wire import VendorSpecific

    big = BindingUpdate(1, 1, options=tuple(VendorSpecific(bytes(250)) for _ in range(9)))
    with pytest.raises(ValueError, match="2048"):
        encode_mh(big)
    nested = StateSync(
        1, 0, 0, (ProxyBindingCacheInformation(0, 0, 0, 0, SRC, nested=True), *big.options)
    )
    with pytest.raises(ValueError, match="255"):
        encode_mh(nested)


def test_unchecked_encoding_leaves_checksum_zero() -> None:
    """For IPPROTO_MH raw sockets, whose kernel fills in the checksum (offset 4)."""
    encoded = encode_mh(BindingUpdate(1, 1))
    assert encoded[4:6] == b"\x00\x00"
    assert decode_mh(encoded).checksum_ok is None


def test_config_rejects_clashing_code_points() -> None:
    with pytest.raises(ValueError):
        WireConfig(opt_pbci=203)  # equal to opt_lfi
    with pytest.raises(ValueError):
        WireConfig(mh_state_sync=5)  # the Binding Update
    with pytest.raises(ValueError):
        WireConfig(opt_lfi=22)  # the Home Network Prefix
