"""One reference LMA process (``lmaload lma``): settings from the command line turned into an
``LmaConfig`` and a transport, the event loop run until SIGTERM/SIGINT, role changes and
switchovers logged, metrics served.

Addresses. The engine speaks IPv6: its own individual address (``address``), the LMAA, and the
peers' individual addresses are *inner* addresses, each reached at an *outer* socket address with
the UDP transport (``lmaload.endpoints``). With the raw transport inner and outer are the same and
endpoints are plain IPv6 addresses.

Only local outer addresses are accepted unless ``allow_remote`` (``endpoints.is_local``), and the
unspecified address for listening.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import signal
import socket
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Literal

from lmaload._ext import arena
from lmaload.capture import Capture
from lmaload.endpoints import Endpoint, is_local
from lmaload.metrics import LmaMetrics
from lmaload.procstat import batch_scheduling, freeze_heap
from lmaload.protocol import LmaConfig, LmaEngine, Policy
from lmaload.protocol.events import Event
from lmaload.transport.engine_loop import EngineLoop
from lmaload.transport.raw_mh import RawTransport
from lmaload.transport.udp5436 import UdpTransport, mapped

log = logging.getLogger("lmaload.lma")

# Socket buffers: room for bursts of a few thousand PBUs (past net.core.rmem_max as root).
SOCKET_BUFFER = 32 << 20
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD = 128 << 10  # glibc's default, held fixed
POLICY_KEYS = frozenset({"authorized_mags", "authorized_mns", "pmip_disabled_mns", "home_networks"})
LOGGED_EVENTS = frozenset(
    {
        "role",
        "lmaa_acquired",
        "peer_up",
        "peer_dead",
        "switchover_done",
        "switchover_refused",
        "partial_switchover",
        "ha_switch_fanout",
        "switch_complete",
    }
)


class StartupError(Exception):
    """The LMA cannot start (address in use, unreachable peer, ...): one line for the user."""


def load_policy(path: Path) -> Policy:
    """A Policy from JSON: ``authorized_mags`` (IPv6 or IPv4 addresses — IPv4 stands for its
    IPv4-mapped form), ``authorized_mns`` and ``pmip_disabled_mns`` (MN identifiers as UTF-8
    strings), ``home_networks`` (IPv6 prefixes). An absent list authorises everyone.
    ValueError on anything else."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("the policy is a JSON object")
    unknown = set(data) - POLICY_KEYS
    if unknown:
        raise ValueError(f"unknown policy keys: {', '.join(sorted(unknown))}")

    def strings(key: str) -> list[str] | None:
        value = data.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise ValueError(f"{key} is a list of strings")
        return value

    mags, mns = strings("authorized_mags"), strings("authorized_mns")
    networks = strings("home_networks")
    return Policy(
        authorized_mags=None if mags is None else frozenset(mapped(ip_address(m)) for m in mags),
        authorized_mns=None if mns is None else frozenset(m.encode() for m in mns),
        pmip_disabled_mns=frozenset(m.encode() for m in strings("pmip_disabled_mns") or ()),
        home_networks=None if networks is None else tuple(IPv6Network(n) for n in networks),
    )


@dataclass(frozen=True)
class LmaSettings:
    """Everything ``lmaload lma`` takes. ``lmaa`` is set in virtual mode only."""

    role: Literal["active", "standby", "auto"]
    listen: tuple[str, int]
    address: IPv6Address
    peers: tuple[Endpoint, ...]
    transport: Literal["udp", "raw"]
    mode: Literal["hard", "virtual"]
    lmaa: Endpoint | None
    prefix_pool: IPv6Network
    sync: Literal["async", "before-ack"]
    hello_interval: int
    heartbeat_interval: float
    missing_heartbeats: int
    restart_counter: int
    policy: Policy
    preference: int = 100
    plain: bool = False  # a plain RFC 5213 LMA (LmaConfig.plain)
    metrics_port: int | None = None
    pcap: Path | None = None  # a sample of the signalling (UDP transport)
    sync_pacing_rate: float = 1000.0
    reserve: int = 0  # sessions (LmaConfig.reserve), and an arena pool for their small objects

    def engine_config(self) -> LmaConfig:
        return LmaConfig(
            address=self.address,
            lmaa=self.lmaa.inner if self.lmaa is not None else None,
            peers=tuple(p.inner for p in self.peers),
            mode=self.mode,
            role=self.role,
            prefix_pool=self.prefix_pool,
            policy=self.policy,
            restart_counter=self.restart_counter,
            preference=self.preference,
            heartbeat_interval=self.heartbeat_interval,
            missing_heartbeats_allowed=self.missing_heartbeats,
            hello_interval=self.hello_interval,
            sync=self.sync,
            sync_pacing_rate=self.sync_pacing_rate,
            plain=self.plain,
            reserve=self.reserve,
        )

    def check_families(self) -> None:
        """ValueError when a UDP peer or LMAA is not of the listening socket's family."""
        if self.transport == "raw":
            return
        version = ip_address(self.listen[0]).version
        for endpoint in (*self.peers, *([self.lmaa] if self.lmaa else [])):
            if endpoint.host.version != version:
                raise ValueError(f"{endpoint.host} is not IPv{version} like --listen")

    def remote_addresses(self) -> list[IPv4Address | IPv6Address]:
        """The outer addresses that are not local (see ``is_local``)."""
        listen = ip_address(self.listen[0])
        found = [] if listen.is_unspecified or is_local(listen) else [listen]
        endpoints = [*self.peers, *([self.lmaa] if self.lmaa else [])]
        if self.transport == "raw":
            found += [a for a in (self.address, *(e.inner for e in endpoints)) if not is_local(a)]
        else:
            found += [e.host for e in endpoints if not is_local(e.host)]
        return found


def open_transport(settings: LmaSettings) -> UdpTransport | RawTransport:
    """The engine's sockets; StartupError with the reason when they cannot be had."""
    if settings.transport == "raw":
        bind = settings.address if settings.mode == "hard" else None
        try:
            return RawTransport(bind, rcvbuf=SOCKET_BUFFER, sndbuf=SOCKET_BUFFER)
        except OSError as exc:
            # Name the address: the default one (--listen 127.0.0.1, IPv4-mapped) cannot be bound
            # by a raw IPv6 socket, and "Cannot assign requested address" alone does not say so.
            where = f" on {bind}" if bind is not None else ""
            if bind is not None and bind.ipv4_mapped is not None:
                where += f" (IPv4-mapped {bind.ipv4_mapped}: give --address an IPv6 address)"
            reason = exc.strerror
            raise StartupError(
                f"cannot open a raw Mobility Header socket{where}: {reason}"
            ) from None
    lmaa = (settings.lmaa.inner, settings.lmaa.outer) if settings.lmaa is not None else None
    try:
        transport = UdpTransport(
            settings.listen,
            routes={p.inner: p.outer for p in settings.peers},
            lmaa=lmaa,
            rcvbuf=SOCKET_BUFFER,
            sndbuf=SOCKET_BUFFER,
            capture=Capture(settings.pcap) if settings.pcap is not None else None,
        )
    except OSError as exc:
        host, port = settings.listen
        raise StartupError(f"cannot listen on {host} port {port}: {exc.strerror}") from None
    if settings.lmaa is not None and settings.role == "active":
        host, port = settings.lmaa.outer
        try:
            bound = transport.update(True)
        except OSError as exc:
            transport.close()
            reason = exc.strerror
            raise StartupError(f"cannot listen on the LMAA {host} port {port}: {reason}") from None
        if not bound:
            transport.close()
            raise StartupError(f"cannot listen on the LMAA {host} port {port}: address in use")
    return transport


def check_peers(settings: LmaSettings) -> None:
    """StartupError for a peer without a route (a connect() sends nothing)."""
    for peer in settings.peers:
        family = socket.AF_INET6 if peer.host.version == 6 else socket.AF_INET
        target = peer.outer if settings.transport == "udp" else (str(peer.inner), 0)
        if settings.transport == "raw":
            family = socket.AF_INET6
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(target)
            except OSError as exc:
                # A raw peer is its IPv6 address alone (its Endpoint's port is a placeholder 0).
                name = peer.inner if settings.transport == "raw" else peer
                raise StartupError(f"peer {name} is unreachable: {exc.strerror}") from None


def describe(event: Event) -> str:
    d = event.detail
    texts = {
        "role": lambda: f"role {d.get('role')} ({d.get('reason')})",
        "lmaa_acquired": lambda: f"switchover: acquired the LMAA {d.get('lmaa')}",
        "peer_up": lambda: f"peer {d.get('peer')} up (active={d.get('active')})",
        "peer_dead": lambda: f"peer {d.get('peer')} dead ({d.get('reason')})",
        "switchover_started": lambda: (
            f"switchover of MAG {d.get('mag')} started: SO-REQ to {d.get('current')}"
        ),
        "switchover_done": lambda: (
            f"switchover: took over MAG {d.get('mag')} ({d.get('reason')}), "
            f"{d.get('queued')} PBUs answered"
        ),
        "switchover_refused": lambda: (
            f"switchover of MAG {d.get('mag')} refused ({d.get('reason')})"
        ),
        "partial_switchover": lambda: f"switchover: handed MAG {d.get('mag')} to {d.get('to')}",
        "ha_switch_fanout": lambda: (
            f"switchover: peer {d.get('failed')} failed, HA Switch to {d.get('mags')} MAGs"
        ),
        "switch_complete": lambda: f"switch complete for MAG {d.get('mag')} from {d.get('by')}",
    }
    return texts[event.kind]() if event.kind in texts else f"{event.kind} {d}"


def log_event(event: Event) -> None:
    level = logging.INFO if event.kind in LOGGED_EVENTS else logging.DEBUG
    log.log(level, "%s", describe(event))


def return_freed_memory() -> None:
    """Have glibc give large freed blocks back to the system. By default, once a large block
    is freed, glibc raises its mmap threshold past that size and keeps blocks like it in the
    heap: the old arrays and index tables a growing binding cache leaves behind stay resident
    (13 MiB at 200 000 entries). A fixed threshold keeps them mapped, so freeing unmaps them."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


# Octets of pymalloc's arenas per session: 230 measured in both LMAs of the embedded pair after
# 320 000 registrations at 160 000/s (the binding cache's MN identifiers, prefix keys and their
# tuples, and what is in flight), with room to spare.
SMALL_OBJECT_OCTETS = 384


def run(settings: LmaSettings) -> None:
    """Serve until SIGTERM or SIGINT. StartupError when it cannot start."""
    check_peers(settings)
    return_freed_memory()
    config = settings.engine_config()
    try:
        arena.reserve(settings.reserve * SMALL_OBJECT_OCTETS)
        engine = LmaEngine(config, time.time())
    except MemoryError:
        why = f"not enough memory for {settings.reserve} sessions (--reserve)"
        raise StartupError(why) from None
    metrics = LmaMetrics()
    if settings.metrics_port is not None:
        host = settings.listen[0]
        try:
            metrics.serve(settings.metrics_port, host)
        except OSError as exc:
            where = f"{host} port {settings.metrics_port}"
            raise StartupError(f"cannot serve metrics on {where}: {exc.strerror}") from None
    transport = open_transport(settings)

    def on_event(event: Event) -> None:
        metrics.on_event(event)
        log_event(event)

    loop = EngineLoop(engine, transport, on_event=on_event, on_tick=metrics.observe)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: loop.stop())
    freeze_heap()
    batch_scheduling()
    if isinstance(transport, UdpTransport):
        where = f"udp {transport.main.local_address[0]} port {transport.main.local_address[1]}"
    else:
        where = "raw IPv6 Mobility Header"
    if config.plain:
        log.info("LMA %s (plain RFC 5213, standalone) on %s", config.address, where)
    else:
        log.info(
            "LMA %s (%s mode, %s sync) on %s, %d peer(s)",
            config.address,
            config.mode,
            config.sync,
            where,
            len(config.peers),
        )
    loop.run()
    log.info("stopped")
