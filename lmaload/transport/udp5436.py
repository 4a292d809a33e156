"""The UDP/5436 transport of RFC 5844 (spec-digest §6): each UDP payload is an inner IPv6 header
(next header 135) followed by the Mobility Header, whose checksum uses the inner addresses.

``UdpTransport`` carries an engine's datagrams over it. The engine speaks IPv6 (the inner
addresses); the outer addresses are IPv4 or IPv6 socket addresses, mapped from the inner ones:

- learnt from every well-formed datagram received (inner source → outer source address and
  port), so replies, heartbeats and HA Switch messages go back to where a MAG sends from;
- configured for the peer LMAs (``routes``);
- otherwise derived: an IPv4-mapped inner address ``::ffff:a.b.c.d`` goes to a.b.c.d (IPv4
  sockets), any other to itself (IPv6 sockets), at port 5436.

In virtual mode the shared LMAA has an outer address of its own: the transport binds a second
socket there once the engine owns the LMAA (``update``), and sends what the engine sends from the
LMAA through it. Until the bind succeeds (the failed active may still hold the port) it retries
on every ``update``.

``SignallingSocket`` is the other end for tests and tools: a plain blocking UDP socket that sends
messages with the inner header and decodes what comes back.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from collections import Counter
from ipaddress import IPv4Address, IPv6Address

import numpy as np

from lmaload._ext.framing import unframe as unframe_columns
from lmaload._ext.udp_routes import UdpRoutes
from lmaload.capture import Capture
from lmaload.protocol.datagrams import Columns, Datagram, Datagrams
from lmaload.transport.batch import Batch, BatchSocket
from lmaload.wire import Message, WireError, decode_mh, encode_mh
from lmaload.wire.ipv6 import frame, split_ipv6_mh

PMIP6_CNTL_PORT = 5436
SEND_WAIT = 0.05  # seconds to wait for a full send buffer before counting the rest as dropped

OuterAddress = tuple[str, int]


def unframe(payload: bytes) -> Datagram:
    """The Mobility Header of a UDP/5436 payload with its inner addresses (``split_ipv6_mh``);
    WireError when the inner IPv6 header is missing or wrong."""
    src, dst, mh = split_ipv6_mh(payload)
    return Datagram(mh, src, dst)


def mapped(address: IPv4Address | IPv6Address) -> IPv6Address:
    """The inner IPv6 address standing for an outer address: IPv4-mapped for IPv4."""
    if isinstance(address, IPv4Address):
        return IPv6Address(f"::ffff:{address}")
    return address


class UdpTransport:
    """One engine's sockets on UDP/5436 (see the module docstring).

    ``listen`` is the outer address of the individual socket, ``lmaa`` the inner and outer
    LMAA of virtual mode (None in hard mode), ``routes`` the configured inner → outer map of the
    peers. ``drops`` counts datagrams dropped here, by reason.
    """

    def __init__(
        self,
        listen: OuterAddress,
        *,
        routes: dict[IPv6Address, OuterAddress] | None = None,
        lmaa: tuple[IPv6Address, OuterAddress] | None = None,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
        capture: Capture | None = None,
    ) -> None:
        self.drops: Counter[str] = Counter()
        self.capture = capture
        self._buffers = (rcvbuf, sndbuf)
        self.main = BatchSocket.udp(*listen, rcvbuf=rcvbuf, sndbuf=sndbuf)
        self.family = self.main.family
        self._lmaa = lmaa
        self.lmaa_socket: BatchSocket | None = None
        self._want_lmaa = False
        self._routes = UdpRoutes(4 if self.family == socket.AF_INET else 16)
        for inner, outer in (routes or {}).items():
            self._routes.add(inner.packed, *self._packed(outer))

    def _packed(self, outer: OuterAddress) -> tuple[bytes, int]:
        packed = ipaddress.ip_address(outer[0]).packed
        if len(packed) != (4 if self.family == socket.AF_INET else 16):
            raise ValueError(f"{outer[0]} is not of the listening socket's address family")
        return packed, outer[1]

    @property
    def sockets(self) -> list[BatchSocket]:
        return [self.main] if self.lmaa_socket is None else [self.main, self.lmaa_socket]

    @property
    def waiting_for_lmaa(self) -> bool:
        """The engine owns the LMAA but its port could not be bound yet."""
        return self._want_lmaa and self.lmaa_socket is None

    def update(self, owns_lmaa: bool) -> bool:
        """Follow the engine's ownership of a virtual LMAA; True when ``sockets`` changed."""
        if self._lmaa is None:
            return False
        self._want_lmaa = owns_lmaa
        if owns_lmaa and self.lmaa_socket is None:
            try:
                self.lmaa_socket = BatchSocket.udp(
                    *self._lmaa[1], rcvbuf=self._buffers[0], sndbuf=self._buffers[1]
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                return False
            return True
        if not owns_lmaa and self.lmaa_socket is not None:
            self.lmaa_socket.close()
            self.lmaa_socket = None
            return True
        return False

    def receive(self, sock: BatchSocket, max_datagrams: int | None = None) -> Datagrams:
        """What is queued on ``sock``, inner headers stripped, as columns over the socket's
        receive buffer (valid until the next receive); learns the outer addresses."""
        batch = sock.recv(max_datagrams)
        if batch.truncated:
            self.drops["too_long"] += batch.truncated
        if batch.new_drops:  # the receive buffer overflowed
            self.drops["kernel"] += batch.new_drops
        if not batch.count:
            return Datagrams()
        if self.capture is not None:
            self._capture_in(sock, batch)
        starts, ends, inner_src, inner_dst, ok = unframe_columns(batch.buf, batch.offsets)
        good = ok.view(bool)
        bad = batch.count - int(np.count_nonzero(good))
        if bad:
            self.drops["bad_inner_header"] += bad
        columns = Columns(batch.buf, starts, ends, inner_src, inner_dst, batch.arrival_seconds())
        self._routes.learn(inner_src, batch.src, batch.sport, ok if bad else None)
        return Datagrams([columns.take(good)] if bad else [columns])

    def _capture_in(self, sock: BatchSocket, batch: Batch) -> None:
        capture = self.capture
        assert capture is not None
        port, now = sock.local_address[1], time.time()
        arrival = (batch.arrival * 1e-9).tolist()
        for i in range(batch.count):
            source = (batch.src[i].tobytes(), int(batch.sport[i]))
            local = (batch.dst[i].tobytes(), port)
            capture.record(arrival[i] or now, "in", source, local, batch.datagram(i))
        capture.flush()

    def send(self, datagrams: Datagrams) -> None:
        """Route, frame and send, each from the socket of its source address (the LMAA's or
        ours): one compiled pass (``UdpRoutes.frame``) and one sendmmsg a socket."""
        parts = datagrams.parts()
        if self.lmaa_socket is None:
            self._send_from(self.main, parts, None, False)
            return
        lmaa = self._lmaa[0].packed  # type: ignore[index]
        self._send_from(self.main, parts, lmaa, False)
        self._send_from(self.lmaa_socket, parts, lmaa, True)

    def _send_from(
        self, sock: BatchSocket, parts: list[Datagram | Columns], lmaa: bytes | None, own: bool
    ) -> None:
        buf, offsets, hosts, ports, unrouted = self._routes.frame(parts, lmaa, own)
        if unrouted:
            self.drops["no_route"] += unrouted
        if len(offsets) == 1:
            return
        if self.capture is not None:
            self._capture_out(sock, buf, offsets, hosts, ports)
        send_batch(sock, buf, offsets, hosts, ports, self.drops)

    def _capture_out(
        self,
        sock: BatchSocket,
        buf: np.ndarray,
        offsets: np.ndarray,
        hosts: np.ndarray,
        ports: np.ndarray,
    ) -> None:
        capture = self.capture
        assert capture is not None
        host, port = sock.local_address[:2]
        local, now = (ipaddress.ip_address(host).packed, port), time.time()
        for i in range(len(offsets) - 1):
            payload = buf[offsets[i] : offsets[i + 1]].tobytes()
            capture.record(now, "out", local, (hosts[i].tobytes(), int(ports[i])), payload)
        capture.flush()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        if self.capture is not None:
            self.capture.close()


def send_batch(
    sock: BatchSocket,
    buf: np.ndarray,
    offsets: np.ndarray,
    dst: np.ndarray,
    ports: np.ndarray | int,
    drops: Counter[str],
    src: np.ndarray | None = None,
) -> None:
    """Send every datagram of (buf, offsets), waiting briefly on a full socket buffer; a
    datagram the kernel refuses, or that still finds the buffer full, is counted in ``drops``."""
    n = len(offsets) - 1
    start = 0
    while start < n:
        try:
            start += sock.send(buf, offsets, dst, ports, src, start)
        except OSError:
            drops["send_error"] += 1
            start += 1
            continue
        if start < n and not sock.wait_writable(SEND_WAIT):
            drops["send_buffer_full"] += n - start
            return


class SignallingSocket:
    """A blocking UDP/5436 endpoint speaking for ``inner`` from ``host``:``port`` (tests, tools)."""

    def __init__(self, host: str, port: int = 0, inner: IPv6Address | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.inner = inner or mapped(ipaddress.ip_address(host))

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, message: Message, dst: IPv6Address, outer: OuterAddress) -> None:
        self.send_raw(frame(encode_mh(message, self.inner, dst), self.inner, dst), outer)

    def send_raw(self, payload: bytes, outer: OuterAddress) -> None:
        self.sock.sendto(payload, outer)

    def receive(self, timeout: float) -> tuple[Message, IPv6Address, IPv6Address] | None:
        """The next message (with its inner source and destination), or None on timeout.
        Payloads that do not decode with a valid checksum raise WireError."""
        self.sock.settimeout(timeout)
        try:
            payload = self.sock.recv(65535)
        except TimeoutError:
            return None
        data, src, dst, _ = unframe(payload)
        decoded = decode_mh(data, src, dst)
        if decoded.checksum_ok is False:
            raise WireError(4, "bad checksum")
        return decoded.message, src, dst

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SignallingSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
