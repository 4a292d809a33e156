"""The UDP/5436 framing of RFC 5844 for a whole batch: the inner IPv6 header (next header 135)
put in front of every Mobility Header of a (buf, offsets) batch in one pass of numpy, and the
batch's messages as separate payloads for retransmission."""

from __future__ import annotations

from ipaddress import IPv6Address

import numpy as np

from lmaload.wire.ipv6 import IPV6_HEADER_LENGTH, ipv6_header


def frame_batch(
    buf: np.ndarray, offsets: np.ndarray, src: IPv6Address, dst: IPv6Address
) -> tuple[np.ndarray, np.ndarray]:
    """Every message ``buf[offsets[i]:offsets[i + 1]]`` behind an inner header ``src`` → ``dst``."""
    count = len(offsets) - 1
    lengths = np.diff(offsets)
    out_offsets = offsets - offsets[0] + IPV6_HEADER_LENGTH * np.arange(count + 1)
    out = np.empty(int(out_offsets[-1]), dtype=np.uint8)
    headers = np.tile(np.frombuffer(ipv6_header(src, dst, 0), dtype=np.uint8), (count, 1))
    headers[:, 4:6] = lengths.astype(">u2").view(np.uint8).reshape(-1, 2)
    at = out_offsets[:-1, None] + np.arange(IPV6_HEADER_LENGTH)
    out[at] = headers
    body = np.ones(len(out), dtype=bool)
    body[at] = False
    out[body] = buf[offsets[0] : offsets[-1]]
    return out, out_offsets


def pack(payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Separate payloads as one (buf, offsets) batch."""
    offsets = np.zeros(len(payloads) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in payloads], out=offsets[1:])
    return np.frombuffer(b"".join(payloads), dtype=np.uint8), offsets
