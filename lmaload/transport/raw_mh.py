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

from lmaload.protocol.datagrams import Datagram, Datagrams
from lmaload.transport.batch import BatchSocket
from lmaload.transport.udp5436 import send_batch


def send_raw(sock: BatchSocket, datagrams: Datagrams, drops: Counter[str]) -> None:
    """Send Mobility Headers on a raw socket, each from its own source address (``send_batch``
    counts what the kernel refuses in ``drops``)."""
    if not len(datagrams):
        return
    offsets = np.zeros(len(datagrams) + 1, dtype=np.int64)
    np.cumsum([len(d.data) for d in datagrams], out=offsets[1:])
    buf = np.frombuffer(b"".join(d.data for d in datagrams), dtype=np.uint8)
    dst = np.frombuffer(b"".join(d.dst.packed for d in datagrams), dtype=np.uint8)
    src = np.frombuffer(b"".join(d.src.packed for d in datagrams), dtype=np.uint8)
    send_batch(sock, buf, offsets, dst.reshape(-1, 16), 0, drops, src.reshape(-1, 16))


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
        self.main = BatchSocket.raw_mh(
            None if address is None else str(address), rcvbuf=rcvbuf, sndbuf=sndbuf
        )

    @property
    def sockets(self) -> list[BatchSocket]:
        return [self.main]

    def update(self, owns_lmaa: bool) -> bool:
        return False

    def receive(self, sock: BatchSocket, max_datagrams: int | None = None) -> Datagrams:
        batch = sock.recv(max_datagrams)
        if batch.truncated:
            self.drops["too_long"] += batch.truncated
        # The kernel verifies the MH checksum and drops a bad one before we see it (where the UDP
        # transport lets the engine count it as "checksum"), and drops what overflows the
        # receive buffer: count both, so a raw LMA's drops are not silent.
        if batch.new_drops:
            self.drops["kernel"] += batch.new_drops
        arrival = (batch.arrival * 1e-9).tolist()
        return Datagrams(
            Datagram(
                batch.datagram(i),
                IPv6Address(batch.src[i].tobytes()),
                IPv6Address(batch.dst[i].tobytes()),
                arrival[i] or None,
            )
            for i in range(batch.count)
        )

    def send(self, datagrams: Datagrams) -> None:
        send_raw(self.main, datagrams, self.drops)

    def close(self) -> None:
        self.main.close()
