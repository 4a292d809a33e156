"""A flood of malformed datagrams over UDP/5436 — random bytes, bad inner IPv6 headers, truncated
PBUs, mutated PBUs (with their checksum left alone or recomputed) — interleaved with valid PBUs:
the LMA answers every valid PBU and counts what it dropped, by reason, in its metrics.
"""

from __future__ import annotations

import random
import time
from ipaddress import IPv6Address

from prometheus_client.parser import text_string_to_metric_families

from lmaload.wire import (
    AccessTechnologyType,
    BindingAck,
    BindingUpdate,
    HandoffIndicator,
    HomeNetworkPrefix,
    MobileNodeIdentifier,
    Timestamp,
    encode_mh,
)
from lmaload.wire.checksum import mh_checksum
from lmaload.wire.ipv6 import IPV6_HEADER_LENGTH, frame
from tests.test_lma_udp import TIMEOUT, Mag, start_lma

VALID = 200
JUNK_PER_VALID = 10
ZERO = HomeNetworkPrefix(IPv6Address("::"), 0)


def pbu_mh(mn: bytes, src: IPv6Address, dst: IPv6Address, prefix=ZERO) -> bytes:
    options = (
        MobileNodeIdentifier(mn),
        prefix,
        HandoffIndicator(1),
        AccessTechnologyType(4),
        Timestamp.from_unix(time.time()),
    )
    return encode_mh(BindingUpdate(1, 100, options=options), src, dst)


def junk(rng: random.Random, src: IPv6Address, dst: IPv6Address) -> tuple[str, bytes]:
    """One malformed UDP payload and its kind."""
    kind = rng.choice(["random", "inner", "truncated", "mutated", "rechecksummed"])
    prefix = HomeNetworkPrefix(IPv6Address(rng.getrandbits(128)), rng.choice([0, 64, 200]))
    mh = bytearray(pbu_mh(b"junk-%d" % rng.getrandbits(32), src, dst, prefix))
    if kind == "random":  # never a version-6 first octet: always a bad inner header
        payload = bytes([rng.randrange(0x70, 0x100)]) + rng.randbytes(rng.randrange(0, 120))
    elif kind == "inner":
        payload = bytearray(frame(bytes(mh), src, dst))
        field = rng.choice([0, 4, 6])
        payload[field] ^= rng.randrange(1, 256) if field else 0x30
        payload = bytes(payload[: rng.randrange(IPV6_HEADER_LENGTH)] if field == 4 else payload)
    elif kind == "truncated":
        payload = frame(bytes(mh[: rng.randrange(len(mh))]), src, dst)
    else:
        for _ in range(rng.randint(1, 3)):
            mh[rng.randrange(len(mh))] ^= rng.randrange(1, 256)
        if kind == "rechecksummed":
            mh[4:6] = b"\0\0"
            mh[4:6] = mh_checksum(src, dst, bytes(mh)).to_bytes(2, "big")
        payload = frame(bytes(mh), src, dst)
    return kind, payload


def test_malformed_flood_leaves_valid_pbus_served() -> None:
    rng = random.Random(5436)
    lma = start_lma()
    mag = Mag(lma)
    sent: dict[str, int] = {}
    answered: dict[bytes, int] = {}
    try:
        for i in range(VALID):
            for _ in range(JUNK_PER_VALID):
                kind, payload = junk(rng, mag.socket.inner, lma.inner)
                sent[kind] = sent.get(kind, 0) + 1
                mag.socket.send_raw(payload, lma.outer)
            mn = b"valid-%d" % i
            mag.socket.sock.sendto(
                frame(pbu_mh(mn, mag.socket.inner, lma.inner), mag.socket.inner, lma.inner),
                lma.outer,
            )
            # Replies to junk that still decoded as a PBU come too; wait for this one's.
            while mn not in answered:
                reply = mag.socket.receive(TIMEOUT)
                assert reply is not None, f"no PBA for {mn!r}"
                if isinstance(reply[0], BindingAck):
                    ident = next(o for o in reply[0].options if isinstance(o, MobileNodeIdentifier))
                    answered[ident.identifier] = reply[0].status
        # One socket, processed in order: all the junk was seen before the last PBA went out;
        # wait for the metrics snapshot to catch up.
        bad_inner = sent["random"] + sent["inner"]
        deadline = time.monotonic() + TIMEOUT
        while lma.metrics.snapshot.drops.get("bad_inner_header", 0) < bad_inner:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        mag.close()
        lma.stop()

    assert all(answered[b"valid-%d" % i] == 0 for i in range(VALID))
    samples = {
        (s.name, s.labels.get("reason")): s.value
        for family in text_string_to_metric_families(lma.metrics.exposition())
        for s in family.samples
    }
    drops = {r: v for (name, r), v in samples.items() if name == "lmaload_lma_drops_total"}
    assert drops["bad_inner_header"] == bad_inner
    assert drops["malformed"] > 0 and drops["checksum"] > 0
    # Everything with a good inner header reached the engine: dropped there, or processed.
    handed = samples[("lmaload_lma_datagrams_received_total", None)]
    assert handed == VALID * (1 + JUNK_PER_VALID) - bad_inner
    engine_drops = sum(v for reason, v in drops.items() if reason != "bad_inner_header")
    assert engine_drops + samples[("lmaload_lma_pbus_processed_total", None)] >= handed
