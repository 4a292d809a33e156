"""A bounded sample of the UDP/5436 signalling a process sends and receives, streamed to a pcap
file that tshark reads (``-d udp.port==5436,ipv6``: RFC 5844 puts an inner IPv6 header in the
payload), and the merge of several such files into one.

Sampling: at most ``budget`` datagrams per (phase, Mobility Header type, direction), so a capture
of a long run still holds the failover and the rare message types, not only the first
registrations. The driver names the phase. Frames are Ethernet/IP/UDP as they went over the
wire; the transport flushes after every batch, so the capture of a process killed mid-run (the
active LMA of ``lmaload run``) keeps what it recorded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from ipaddress import ip_address
from pathlib import Path
from typing import Literal

from lmaload.pcap import (
    PcapError,
    PcapWriter,
    ethernet_frame,
    ipv4_packet,
    ipv6_packet,
    read_packets,
    udp_datagram,
)

IPPROTO_UDP = 17
MH_TYPE_OFFSET = 40 + 2  # the inner IPv6 header, then Payload Proto and Header Len
DEFAULT_BUDGET = 2000

Direction = Literal["out", "in"]


class Capture:
    """Streams sampled datagrams to ``path`` (see the module docstring)."""

    def __init__(self, path: Path, budget: int = DEFAULT_BUDGET) -> None:
        self.path = path
        self.budget = budget
        self.phase = ""
        self.recorded = 0
        self._taken: Counter[tuple[str, int, str]] = Counter()
        self._writer = PcapWriter(path)

    def record(
        self,
        now: float,
        direction: Direction,
        src: tuple[bytes, int],
        dst: tuple[bytes, int],
        payload: bytes,
    ) -> None:
        """A UDP payload that went from ``src`` to ``dst`` (packed IPv4 or IPv6 address, port)."""
        kind = payload[MH_TYPE_OFFSET] if len(payload) > MH_TYPE_OFFSET else -1
        key = (self.phase, kind, direction)
        if self._taken[key] >= self.budget:
            return
        self._taken[key] += 1
        self.recorded += 1
        source, destination = ip_address(src[0]), ip_address(dst[0])
        segment = udp_datagram(source, destination, src[1], dst[1], payload)
        if source.version == 4:
            packet = ipv4_packet(source, destination, IPPROTO_UDP, segment)
        else:
            packet = ipv6_packet(source, destination, IPPROTO_UDP, segment)
        self._writer.write(now, ethernet_frame(packet))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def merge(out: Path, base: Path, others: Iterable[tuple[Path, str]], among: frozenset[str]) -> int:
    """Write ``out``: every frame of ``base`` plus, from each (capture, host) of ``others``, the
    frames ``host`` sent to one of the hosts ``among`` (each such frame once: the sender's
    copy), in time order. Returns how many frames ``out`` holds."""
    frames = [(p.time, p.data) for p in read_packets(base)]
    for path, host in others:
        try:
            for packet in read_packets(path):
                src, dst = _addresses(packet.data)
                if src == host and dst in among:
                    frames.append((packet.time, packet.data))
        except PcapError:
            pass  # a process killed while writing: the frames before the torn one count
    frames.sort(key=lambda frame: frame[0])
    with PcapWriter(out) as writer:
        for time, data in frames:
            writer.write(time, data)
    return len(frames)


def _addresses(frame: bytes) -> tuple[str, str]:
    """The IP source and destination of one of our Ethernet frames (``record``'s)."""
    ip = frame[14:]
    if ip[0] >> 4 == 4:
        return str(ip_address(ip[12:16])), str(ip_address(ip[16:20]))
    return str(ip_address(ip[8:24])), str(ip_address(ip[24:40]))
