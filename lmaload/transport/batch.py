"""Batched datagram sockets: many datagrams per system call, each with its own addresses.

``BatchSocket`` wraps a UDP (IPv4 or IPv6) or raw IPv6 Mobility Header socket around the
sendmmsg/recvmmsg wrappers of ``lmaload._ext.mmsg``. Datagrams go out from, and come back as,
the bulk codec's layout (one uint8 buffer plus int64 offsets). Every datagram sent may carry its
own source address, so one socket speaks for thousands of emulated MAGs:

- IPv4: any address of 127.0.0.0/8 works as a source on loopback with no setup (the kernel
  accepts a source covered by a local route);
- IPv6: sources covered only by an AnyIP route (``ip -6 route add local PREFIX dev lo``) need
  IPV6_FREEBIND, which every BatchSocket sets.

Received batches carry each datagram's source address and port and the local address it was
sent to (from IP_PKTINFO / IPV6_PKTINFO), so one socket bound to the wildcard address also
listens for all of them.

Addresses in and out are uint8 arrays of rows of 4 (IPv4) or 16 (IPv6) octets in network order;
ports are uint16 in host order.
"""

from __future__ import annotations

import ipaddress
import select
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import numpy as np

from lmaload._ext import mmsg

# Room per received datagram: a 2048-octet Mobility Header (its limit) plus the inner IPv6 header
# of the UDP/5436 framing, rounded up.
DEFAULT_MAX_SIZE = 4096
DEFAULT_BATCH = mmsg.MAX_DATAGRAMS_PER_CALL

Address = str | IPv4Address | IPv6Address
AddressLike = Address | bytes | np.ndarray | Iterable[Address]


@dataclass(frozen=True)
class Batch:
    """Datagrams received by one ``BatchSocket.recv``: datagram ``i`` is
    ``buf[offsets[i]:offsets[i + 1]]``, from ``src[i]`` port ``sport[i]`` (0 on raw sockets),
    sent to the local address ``dst[i]``, received by the kernel at ``arrival[i]`` (Unix
    nanoseconds, SO_TIMESTAMPNS: before any time the datagram spent queued on the socket).

    ``truncated`` counts datagrams longer than the socket's ``max_size``: they are left out of
    the batch. ``drops`` is the kernel's count of datagrams it dropped on the socket since it
    opened (receive buffer full, bad checksum), as far as this socket has learnt it, and
    ``new_drops`` how much of that this receive learnt (the kernel reports the count only along
    with later datagrams, SO_RXQ_OVFL).
    """

    buf: np.ndarray
    offsets: np.ndarray
    src: np.ndarray
    sport: np.ndarray
    dst: np.ndarray
    arrival: np.ndarray
    count: int
    truncated: int
    drops: int
    new_drops: int

    def datagram(self, i: int) -> bytes:
        return self.buf[self.offsets[i] : self.offsets[i + 1]].tobytes()

    def arrival_seconds(self) -> np.ndarray:
        """``arrival`` in Unix seconds, NaN where unknown (the ``Columns`` convention)."""
        seconds = self.arrival * 1e-9
        seconds[self.arrival == 0] = np.nan
        return seconds

    def source(self, i: int) -> IPv4Address | IPv6Address:
        return ipaddress.ip_address(self.src[i].tobytes())

    def destination(self, i: int) -> IPv4Address | IPv6Address:
        return ipaddress.ip_address(self.dst[i].tobytes())


def addresses(value: AddressLike, family: int) -> np.ndarray:
    """``value`` as a (n, 4) or (n, 16) uint8 array for ``family`` (AF_INET or AF_INET6): an
    array of rows (passed through), one address (a single row), or an iterable of addresses."""
    width = 4 if family == socket.AF_INET else 16
    if isinstance(value, np.ndarray):
        rows = value.reshape(1, -1) if value.ndim == 1 else value
        if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != width:
            raise ValueError(f"address arrays must be uint8 rows of {width} octets")
        return rows if rows.strides[1] == 1 else np.ascontiguousarray(rows)
    if isinstance(value, str | bytes | IPv4Address | IPv6Address):
        value = [value]
    packed = [ipaddress.ip_address(a).packed for a in value]
    if any(len(p) != width for p in packed):
        raise ValueError(f"addresses must all be IPv{4 if width == 4 else 6} for this socket")
    return np.frombuffer(b"".join(packed), dtype=np.uint8).reshape(-1, width)


def _set_buffer(sock: socket.socket, option: int, forced: int, size: int) -> None:
    """Size a socket buffer past net.core.[rw]mem_max when we have CAP_NET_ADMIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, forced, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, option, size)


class BatchSocket:
    """A non-blocking UDP or raw IPv6 socket that sends and receives datagrams in batches.

    Build one with ``udp`` or ``raw_mh``, or adopt an AF_INET/AF_INET6 datagram or raw socket
    (this object owns it from then on and sets it up: non-blocking, pktinfo and kernel
    timestamps on receive, the kernel's drop counter, and FREEBIND so AnyIP addresses work as
    sources and bind addresses).
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        max_datagrams: int = DEFAULT_BATCH,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"{sock.family!r} sockets are not supported")
        self.sock = sock
        self.family = sock.family
        self.max_datagrams = max_datagrams
        self.drops = 0
        sock.setblocking(False)
        if self.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, mmsg.IP_PKTINFO, 1)
            sock.setsockopt(socket.IPPROTO_IP, mmsg.IP_FREEBIND, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, mmsg.IPV6_RECVPKTINFO, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, mmsg.IPV6_FREEBIND, 1)
        sock.setsockopt(socket.SOL_SOCKET, mmsg.SO_RXQ_OVFL, 1)
        sock.setsockopt(socket.SOL_SOCKET, mmsg.SO_TIMESTAMPNS, 1)
        self._fd = sock.fileno()
        self._sender = mmsg.BatchSender()
        self._receiver = mmsg.BatchReceiver(max_datagrams, max_size, self.family)

    @classmethod
    def udp(
        cls,
        host: str = "0.0.0.0",
        port: int = 0,
        *,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        max_datagrams: int = DEFAULT_BATCH,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> BatchSocket:
        """A UDP socket bound to ``host``:``port`` (IPv6 when ``host`` is, and IPv6 only).
        ``rcvbuf``/``sndbuf`` in octets; as root they may exceed net.core.[rw]mem_max."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            out = cls(sock, max_datagrams=max_datagrams, max_size=max_size)
            out.set_buffers(rcvbuf, sndbuf)
            sock.bind((host, port))
        except BaseException:
            sock.close()
            raise
        return out

    @classmethod
    def raw_mh(
        cls,
        host: str | None = None,
        *,
        kernel_checksum: bool = True,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        max_datagrams: int = DEFAULT_BATCH,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> BatchSocket:
        """A raw IPv6 Mobility Header socket (IPPROTO_MH, needs CAP_NET_RAW), bound to ``host``
        if given (then it only receives datagrams sent to that address).

        It sees every Mobility Header arriving in its network namespace. The kernel fills in the
        MH checksum (offset 4) of what it sends and drops received datagrams whose checksum does
        not verify; ``kernel_checksum=False`` (IPV6_CHECKSUM -1) turns both off, to send a
        checksum of our own and to receive datagrams with bad ones.
        """
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, mmsg.IPPROTO_MH)
        try:
            out = cls(sock, max_datagrams=max_datagrams, max_size=max_size)
            if not kernel_checksum:
                sock.setsockopt(socket.IPPROTO_IPV6, mmsg.IPV6_CHECKSUM, -1)
            out.set_buffers(rcvbuf, sndbuf)
            if host is not None:
                sock.bind((host, 0))
        except BaseException:
            sock.close()
            raise
        return out

    def set_buffers(self, rcvbuf: int | None = None, sndbuf: int | None = None) -> None:
        """Size the kernel's receive and send buffers (octets; None leaves one as it is)."""
        if rcvbuf is not None:
            _set_buffer(self.sock, socket.SO_RCVBUF, mmsg.SO_RCVBUFFORCE, rcvbuf)
        if sndbuf is not None:
            _set_buffer(self.sock, socket.SO_SNDBUF, mmsg.SO_SNDBUFFORCE, sndbuf)

    @property
    def local_address(self) -> tuple:
        return self.sock.getsockname()

    def fileno(self) -> int:
        return self._fd

    @property
    def receiver(self) -> mmsg.BatchReceiver:
        """The recvmmsg scratch ``recv`` uses (for a compiled driver: ``MagServe``)."""
        return self._receiver

    @property
    def sender(self) -> mmsg.BatchSender:
        """The sendmmsg scratch ``send`` uses (for a compiled driver: ``MagServe``)."""
        return self._sender

    def send(
        self,
        buf: np.ndarray | bytes,
        offsets: np.ndarray,
        dst: AddressLike,
        dst_port: int | np.ndarray = 0,
        src: AddressLike | None = None,
        start: int = 0,
    ) -> int:
        """Send datagrams ``start``, ``start + 1``, ... of (buf, offsets); returns how many went.

        ``dst``, ``dst_port`` and ``src`` give one value per datagram or one for all of them;
        ``src`` None lets the kernel choose (an all-zero row does for one datagram). Raw
        sockets take port 0. Fewer go out than asked when the socket buffer is full (wait with
        ``wait_writable`` and call again from ``start + sent``) or when a datagram fails after
        others went: the call starting at it raises its OSError (EINVAL: a source address
        that is not local; EMSGSIZE: too long).
        """
        return self._sender.send(
            self._fd,
            buf,
            offsets,
            addresses(dst, self.family),
            np.asarray(dst_port, dtype=np.uint16).reshape(-1),
            None if src is None else addresses(src, self.family),
            start,
        )

    def recv(
        self, max_datagrams: int | None = None, timeout: float | None = 0.0, copy: bool = False
    ) -> Batch:
        """Receive what is queued, up to ``max_datagrams`` (default and most: the socket's
        ``max_datagrams``), waiting up to ``timeout`` seconds for the first (0: no wait, None:
        no limit). An empty batch when nothing came.

        Without ``copy`` the batch's arrays are views into buffers of this socket that the next
        ``recv`` overwrites: decode (or copy) a batch before receiving the next.
        """
        buf, offsets, src, sport, dst, arrival, truncated, drops = self._receiver.recv(
            self._fd, timeout, copy, max_datagrams
        )
        learnt = max(drops - self.drops, 0)
        self.drops += learnt
        return Batch(
            buf, offsets, src, sport, dst, arrival, len(offsets) - 1, truncated, self.drops, learnt
        )

    def wait_writable(self, timeout: float | None = None) -> bool:
        """Whether the socket can take more datagrams, waiting up to ``timeout`` seconds."""
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        return bool(poller.poll(None if timeout is None else timeout * 1000.0))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> BatchSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
