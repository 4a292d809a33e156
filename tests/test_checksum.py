"""The compiled checksum must equal the pure-Python reference on every input."""

import random
from ipaddress import IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmaload.wire import checksum
from tests.vectors import VECTORS


def test_extension_is_built() -> None:
    # The test command installs the package, so a missing extension is a build failure, not a
    # reason to quietly test only the fallback.
    assert checksum.ACCELERATED


@given(st.binary(max_size=2100))
def test_internet_checksum_matches_reference(data: bytes) -> None:
    assert checksum.internet_checksum(data) == checksum.py_internet_checksum(data)


@given(
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=16, max_size=16),
    st.binary(max_size=2048),
)
def test_mh_checksum_matches_reference(src: bytes, dst: bytes, mh: bytes) -> None:
    s, d = IPv6Address(src), IPv6Address(dst)
    assert checksum.mh_checksum(s, d, mh) == checksum.py_mh_checksum(s, d, mh)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\xff", b"\xff\xff" * 3, b"\x00\x01\xff\xfe"])
def test_edge_cases(data: bytes) -> None:
    assert checksum.internet_checksum(data) == checksum.py_internet_checksum(data)


def test_against_word_loop() -> None:
    """The reference's modulo shortcut against the textbook end-around-carry loop."""
    rng = random.Random(5436)
    for _ in range(2000):
        data = rng.randbytes(rng.randrange(0, 80) * 2)
        s = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        assert checksum.py_internet_checksum(data) == ~s & 0xFFFF


def test_spec_worked_example() -> None:
    """spec-digest §1.1: V1's checksum is 0x4c79."""
    v1 = bytes.fromhex(VECTORS[0]["hex"])
    zeroed = v1[:4] + b"\x00\x00" + v1[6:]
    src, dst = IPv6Address(VECTORS[0]["src"]), IPv6Address(VECTORS[0]["dst"])
    assert checksum.mh_checksum(src, dst, zeroed) == 0x4C79
    assert checksum.mh_checksum(src, dst, v1) == 0
