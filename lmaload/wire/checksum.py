"""Internet checksum (RFC 1071) and the Mobility Header checksum over the IPv6 pseudo-header
(RFC 6275 §6.1.1, spec-digest §1.1).

``internet_checksum`` and ``mh_checksum`` use the compiled ``lmaload._ext.checksum`` when it is
built and fall back to the pure-Python versions below, which are the reference the tests compare
the extension with.
"""

from ipaddress import IPv6Address

from lmaload.wire.codepoints import IPPROTO_MH

try:
    from lmaload._ext import checksum as _ext
except ImportError:  # a source checkout that was never built: the reference code still works
    _ext = None

ACCELERATED = _ext is not None


def py_internet_checksum(data: bytes) -> int:
    """Reference one's-complement checksum of ``data`` (16-bit big-endian words)."""
    if len(data) & 1:
        data = data + b"\x00"
    # 2**16 == 1 (mod 0xFFFF), so the one's-complement sum of the words is the value of the whole
    # buffer modulo 0xFFFF, except that a non-zero sum is represented as 0xFFFF rather than 0.
    value = int.from_bytes(data, "big")
    folded = value % 0xFFFF
    if folded == 0 and value:
        folded = 0xFFFF
    return ~folded & 0xFFFF


def pseudo_header(src: IPv6Address, dst: IPv6Address, length: int) -> bytes:
    """The 40-octet IPv6 pseudo-header for a Mobility Header of ``length`` octets."""
    return src.packed + dst.packed + length.to_bytes(4, "big") + bytes(3) + bytes([IPPROTO_MH])


def py_mh_checksum(src: IPv6Address, dst: IPv6Address, mh: bytes) -> int:
    """Reference MH checksum: ``mh`` must carry zero (or be summed with) its checksum field."""
    return py_internet_checksum(pseudo_header(src, dst, len(mh)) + mh)


if _ext is not None:

    def internet_checksum(data: bytes) -> int:
        return _ext.internet_checksum(data)

    def mh_checksum(src: IPv6Address, dst: IPv6Address, mh: bytes) -> int:
        return _ext.mh_checksum(src.packed, dst.packed, mh)

else:
    internet_checksum = py_internet_checksum
    mh_checksum = py_mh_checksum
