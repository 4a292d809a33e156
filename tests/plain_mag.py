"""PBUs laid out octet by octet as plain (third-party) MAGs lay them out, not as lmaload's own
encoders do: the option orders, padding styles and sequence-number form of the MAGs behind the
captures in ../shared/peers (OPMIP's and OAI's), with the checksum over the given addresses.

Used by tests/test_lma_batch.py (the scan takes them) and tests/test_lma_fast_lane.py (the lane
answers them as the reference path does).
"""

from __future__ import annotations

from ipaddress import IPv6Address

from lmaload.wire import codepoints as cp
from lmaload.wire.checksum import py_mh_checksum

# Frame 3 of opmip-capture.pcap, as the MAG sent it (fd00:5213::1 → fd00:5213::2): sequence 1,
# A and P, lifetime 75, MN-ID "mn1@example.com", PadN, HNP ::/0, HI 1, ATT 4, no Timestamp.
OPMIP_FRAME_3 = bytes.fromhex(
    "3b070500b07e00018200004b0810016d6e31406578616d706c652e636f6d0104000000001612000000000000"
    "0000000000000000000000001702000118020004"
)
OPMIP_FRAME_ADDRESSES = (IPv6Address("fd00:5213::1"), IPv6Address("fd00:5213::2"))

# How each layout aligns an option: (x, y) puts it at an offset o with o % x == y (RFC 6275
# §6.2.1: HNP 8n+4, Timestamp 8n+2) or anywhere ("packed"); and how it pads.
LAYOUTS = {
    # MN-ID, PadN to 8n+4, HNP, HI, ATT (OPMIP)
    "opmip": (("mnid", "hnp", "hi", "att"), "padn"),
    # MN-ID, HNP, HI, ATT, MN LL-ID, Timestamp, unaligned, PadN at the end (OAI)
    "oai": (("mnid", "hnp", "hi", "att", "llid", "ts"), "oai"),
    # HI and ATT first, aligned with runs of Pad1
    "pad1": (("hi", "att", "mnid", "hnp", "ts"), "pad1"),
    # options back to back, no alignment at all
    "packed": (("att", "hnp", "hi", "mnid"), "packed"),
}
ALIGN = {"hnp": (8, 4), "ts": (8, 2)}


def _padding(n: int, style: str) -> bytes:
    if n == 0:
        return b""
    if style == "pad1" or n == 1:
        return bytes([cp.OPT_PAD1]) * n
    return bytes([cp.OPT_PADN, n - 2]) + bytes(n - 2)


def plain_pbu(
    layout: str,
    mn: bytes,
    seq: int,
    src: IPv6Address,
    dst: IPv6Address,
    *,
    prefix: bytes = bytes(16),
    plen: int = 0,
    hi: int = cp.HI_ATTACH_NEW_INTERFACE,
    lifetime: int = 75,
    ts: int = 0,
    llid: bytes = b"\x02\x00\x00\x00\x00\x11",
) -> bytes:
    """A PBU (A and P set) in ``layout`` (``LAYOUTS``) from ``src`` to ``dst``, checksum
    filled. ``ts`` is the Timestamp's 64-bit value, for the layouts that send one."""
    order, style = LAYOUTS[layout]
    body = {
        "mnid": bytes([cp.OPT_MN_IDENTIFIER, 1 + len(mn), cp.MNID_SUBTYPE_NAI]) + mn,
        "hnp": bytes([cp.OPT_HOME_NETWORK_PREFIX, 18, 0, plen]) + prefix,
        "hi": bytes([cp.OPT_HANDOFF_INDICATOR, 2, 0, hi]),
        "att": bytes([cp.OPT_ACCESS_TECHNOLOGY_TYPE, 2, 0, 4]),
        "llid": bytes([cp.OPT_MN_LINK_LAYER_ID, 2 + len(llid), 0, 0]) + llid,
        "ts": bytes([cp.OPT_TIMESTAMP, 8]) + ts.to_bytes(8, "big"),
    }
    mh = bytearray([cp.PAYLOAD_PROTO_NONE, 0, cp.MH_BINDING_UPDATE, 0, 0, 0])
    mh += seq.to_bytes(2, "big") + cp.PBU_DEFAULT_FLAGS.to_bytes(2, "big")
    mh += lifetime.to_bytes(2, "big")
    for name in order:
        if style in ("padn", "pad1") and name in ALIGN:
            x, y = ALIGN[name]
            mh += _padding((y - len(mh)) % x, style)
        mh += body[name]
    mh += _padding(-len(mh) % 8, "pad1" if style == "pad1" else "padn")
    mh[1] = len(mh) // 8 - 1
    mh[4:6] = py_mh_checksum(src, dst, bytes(mh)).to_bytes(2, "big")
    return bytes(mh)
