"""The raw IPv6 Mobility Header transport (protocol 135, needs CAP_NET_RAW): datagrams are the
Mobility Headers themselves, their IPv6 addresses are the packets', and the kernel computes and
verifies the MH checksum.

Bound to the LMA's own address in hard mode. In virtual mode the socket is left unbound — it sees
every Mobility Header of its network namespace — and the engine keeps what is addressed to it
(its address, or the LMAA while it owns it); making the LMAA a local address of the host that
owns it is the lab's job, not the transport's.
"""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv6Address

import numpy as np

from lmaload.protocol.datagrams import Columns, Datagram, Datagrams
from lmaload.transport.batch import Batch, BatchSocket
from lmaload.transport.udp5436 import send_batch
from lmaload.wire import codepoints as cp


def send_raw(
    sock: BatchSocket, datagrams: Datagrams, drops: Counter[str], bound: bytes | None = None
) -> None:
    """Send Mobility Headers on a raw socket, each from its own source address, one sendmmsg
    run per part of the batch (``send_batch`` counts what the kernel refuses in ``drops``).
    ``bound``: the packed address the socket is bound to, which needs no IPV6_PKTINFO."""
    listed: list[Datagram] = []
    for part in datagrams.parts():
        if isinstance(part, Columns):
            if listed:
                _send_columns(sock, Columns.of(listed), drops, bound)
                listed = []
            _send_columns(sock, part, drops, bound)
        else:
            listed.append(part)
    if listed:
        _send_columns(sock, Columns.of(listed), drops, bound)


def _send_columns(
    sock: BatchSocket, columns: Columns, drops: Counter[str], bound: bytes | None
) -> None:
    starts, ends = columns.starts, columns.ends
    if (starts[1:] == ends[:-1]).all():  # end to end already (the codecs' output)
        buf, offsets = columns.buf, np.concatenate([starts[:1], ends])
    else:
        buf, offsets = columns.compact()
    src: np.ndarray | None = columns.src
    if bound is not None and columns.src.tobytes() == bound * len(columns):
        src = None  # all from the bound address: no control message to build and parse
    send_batch(
        sock,
        np.ascontiguousarray(buf),
        np.ascontiguousarray(offsets, dtype=np.int64),
        columns.dst,
        0,
        drops,
        src,
    )


def received_columns(batch: Batch) -> Columns:
    """A raw socket's batch as columns over its receive buffer (valid until the next receive):
    the packets' own addresses and the kernel's arrival times."""
    offsets = batch.offsets
    return Columns(
        batch.buf, offsets[:-1], offsets[1:], batch.src, batch.dst, batch.arrival_seconds()
    )


class RawTransport:
    """One engine's raw IPPROTO_MH socket (see the module docstring)."""

    waiting_for_lmaa = False

    def __init__(
        self,
        address: IPv6Address | None,
        *,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
    ) -> None:
        self.drops: Counter[str] = Counter()
        self._bound = None if address is None else address.packed
        # No inner header on this transport: room for the longest Mobility Header is enough.
        self.main = BatchSocket.raw_mh(
            None if address is None else str(address),
            rcvbuf=rcvbuf,
            sndbuf=sndbuf,
            max_size=cp.MH_MAX_LENGTH,
        )

    @property
    def sockets(self) -> list[BatchSocket]:
        return [self.main]

    def update(self, owns_lmaa: bool) -> bool:
        return False

    def receive(self, sock: BatchSocket, max_datagrams: int | None = None) -> Datagrams:
        """What is queued on ``sock`` (one recvmmsg), as columns (``received_columns``)."""
        batch = sock.recv(max_datagrams)
        if batch.truncated:
            self.drops["too_long"] += batch.truncated
        # The kernel verifies the MH checksum and drops a bad one before we see it (where the UDP
        # transport lets the engine count it as "checksum"), and drops what overflows the
        # receive buffer: count both, so a raw LMA's drops are not silent.
        if batch.new_drops:
            self.drops["kernel"] += batch.new_drops
        if not batch.count:
            return Datagrams()
        return Datagrams([received_columns(batch)])

    def send(self, datagrams: Datagrams) -> None:
        send_raw(self.main, datagrams, self.drops, self._bound)

    def close(self) -> None:
        self.main.close()
