"""Liveness of one LMA's neighbours: the RFC 5847 heartbeats with the MAGs it serves
(spec-digest §4), the HA-HELLOs with its peers and the INIT election (§7.4, §8.8), and what the
best surviving LMA does when a peer dies: become active, own the LMAA (virtual switch) or send an
HA Switch to each MAG the dead peer served (hard switch, §8.6, R28).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv6Address

from lmaload.protocol.binding_cache import BceState
from lmaload.protocol.events import Role
from lmaload.protocol.lma.ownership import Ownership
from lmaload.protocol.lma.state import LmaState
from lmaload.protocol.pmip import serial_newer
from lmaload.protocol.redundancy import HaSwitch, Peer, hello
from lmaload.wire import (
    Heartbeat,
    HomeAgentHello,
    HomeAgentSwitch,
    LmaFailureIndication,
    RestartCounter,
)
from lmaload.wire import codepoints as cp


@dataclass
class MagHeartbeat:
    """Heartbeat state towards one MAG (RFC 5847 §3.1, R23)."""

    seq: int = 0
    outstanding: bool = False
    missing: int = 0
    unreachable: bool = False


class HelloOutcome(Enum):
    """What a received HA-HELLO asks of the rest of the engine."""

    NOTHING = "nothing"
    GOODBYE = "goodbye"  # lifetime 0: the peer is dead (R22)
    NEW_ACTIVE = "new_active"  # the peer turned active: ask it for a full sync


class Heartbeats:
    """Heartbeats, HA-HELLOs, the election and the survivor's part of a failover."""

    def __init__(self, state: LmaState, ownership: Ownership, now: float) -> None:
        self._state = state
        self._config = state.config
        self._ownership = ownership
        self._hb_seq = 0
        self._mags: dict[IPv6Address, MagHeartbeat] = {}
        self._hello_seq = 0
        timers = state.timers
        if not self._config.plain:
            timers.arm(("hello",), now)
            timers.arm(("heartbeat",), now + self._config.heartbeat_interval)
        if ownership.role is Role.INIT:
            interval = self._config.dead_interval_factor * self._config.hello_interval
            timers.arm(("init",), now + interval)

    # --- MAG heartbeats (RFC 5847) -------------------------------------------------------------

    def on_heartbeat(self, msg: Heartbeat, src: IPv6Address, dst: IPv6Address, now: float) -> None:
        state = self._state
        if msg.is_response:
            mag = self._mags.get(src)
            if msg.flags & cp.HB_FLAG_U or mag is None or mag.seq != msg.sequence:
                state.drop("unmatched_heartbeat")
                return
            state.counters.heartbeat_responses_received += 1
            mag.outstanding = False
            mag.missing = 0
            if mag.unreachable:
                mag.unreachable = False
                state.event(now, "mag_reachable", mag=str(src))
            return
        counter = state.lmaa_restart_counter if dst == state.lmaa else self._config.restart_counter
        state.counters.heartbeat_requests_answered += 1
        state.send(Heartbeat(msg.sequence, cp.HB_FLAG_R, (RestartCounter(counter),)), dst, src)

    def on_heartbeat_timer(self, now: float) -> None:
        """Probe every MAG this LMA has bindings with. Losing one is only recorded: an LMA must
        not start a failover on heartbeat loss (spec-digest §4, last bullet)."""
        state = self._state
        served = self._served_mags()
        for mag in set(self._mags) - served:
            del self._mags[mag]
        for mag in sorted(served):
            hb = self._mags.setdefault(mag, MagHeartbeat())
            if hb.outstanding:
                hb.missing += 1
                if hb.missing > self._config.missing_heartbeats_allowed and not hb.unreachable:
                    hb.unreachable = True
                    state.event(now, "mag_unreachable", mag=str(mag), missing=hb.missing)
            self._hb_seq = (self._hb_seq + 1) & 0xFFFFFFFF
            hb.seq = self._hb_seq
            hb.outstanding = True
            state.counters.heartbeat_requests_sent += 1
            state.send(Heartbeat(hb.seq), state.lmaa, mag)
        state.timers.arm(("heartbeat",), now + self._config.heartbeat_interval)

    def mag_unreachable(self, mag: IPv6Address) -> bool:
        """Whether ``mag`` missed more heartbeats than allowed."""
        hb = self._mags.get(mag)
        return bool(hb and hb.unreachable)

    def _served_mags(self) -> set[IPv6Address]:
        if not self._ownership.owns_lmaa:
            return set()
        return self._state.cache.mags_with(BceState.ACTIVE)

    # --- HA-HELLO and the election (spec-digest §7.4, §8.8) ------------------------------------

    def on_hello_timer(self, now: float) -> None:
        first = self._state.counters.hello_sent == 0
        self.send_hello(list(self._state.peers), request=first)
        self._state.timers.arm(("hello",), now + self._config.hello_interval)

    def send_hello(self, to: list[IPv6Address], request: bool = False) -> None:
        state = self._state
        flags = cp.HELLO_FLAG_A if self._ownership.advertises_active else 0
        if request:
            flags |= cp.HELLO_FLAG_R
        message = hello(self._config, self._hello_seq, flags)
        for peer in to:
            state.counters.hello_sent += 1
            state.send(message, state.address, peer)
        self._hello_seq = (self._hello_seq + 1) & 0xFFFF

    def on_hello(self, msg: HomeAgentHello, src: IPv6Address, now: float) -> HelloOutcome:
        state = self._state
        peer = state.peers[src]
        if msg.group_id != self._config.group_id:
            state.drop("other_group")
            return HelloOutcome.NOTHING
        if (
            peer.alive
            and peer.last_seq is not None
            and not serial_newer(msg.sequence, peer.last_seq)
        ):
            state.drop("stale_hello")
            return HelloOutcome.NOTHING
        state.counters.hello_received += 1
        was_alive, was_active = peer.alive, peer.active
        peer.last_seq = msg.sequence
        peer.preference = msg.preference
        peer.hello_interval = max(1, msg.hello_interval)
        peer.active = bool(msg.flags & cp.HELLO_FLAG_A)
        peer.alive = True
        if msg.lifetime == 0:  # goodbye (R22)
            return HelloOutcome.GOODBYE
        state.timers.arm(
            ("dead", src), now + self._config.dead_interval_factor * peer.hello_interval
        )
        if not was_alive:
            state.event(now, "peer_up", peer=str(src), active=peer.active)
        if msg.flags & cp.HELLO_FLAG_R:
            self.send_hello([src])
        if peer.active and self._ownership.role is Role.INIT:
            self._settle(now, f"active peer {src}")
        if peer.active and not (was_alive and was_active):
            return HelloOutcome.NEW_ACTIVE
        return HelloOutcome.NOTHING

    def on_init_timer(self, now: float) -> None:
        """One dead interval after an INIT start: no peer said it is active, so the best live
        LMA of the set — this one or a peer — becomes active (spec-digest §8.8)."""
        if self._ownership.role is Role.INIT:
            self._settle(now, "no active peer")

    def _settle(self, now: float, reason: str) -> None:
        """Leave INIT: standby beside a live active peer or a better live peer, else active."""
        state = self._state
        state.timers.cancel(("init",))
        mine = (self._config.preference, int(self._config.address))
        alive = [p for p in state.peers.values() if p.alive]
        if any(p.active or (p.preference, int(p.address)) > mine for p in alive):
            self._ownership.role = Role.STANDBY
            state.event(now, "role", role=Role.STANDBY.value, reason=reason)
            self.send_hello(list(state.peers))
        else:
            self._become_active(now, reason)

    def _become_active(self, now: float, reason: str) -> None:
        state, ownership = self._state, self._ownership
        ownership.role = Role.ACTIVE
        state.event(now, "role", role=Role.ACTIVE.value, reason=reason)
        if self._config.mode == "virtual" and not ownership.owns_lmaa:
            ownership.owns_lmaa = True
            state.event(now, "lmaa_acquired", lmaa=str(state.lmaa))
        self.send_hello(list(state.peers))

    # --- a peer's death (spec-digest §8.6) -----------------------------------------------------

    def mark_dead(self, peer: Peer, now: float, reason: str) -> bool | None:
        """Record that ``peer`` stopped; whether it was active, or None if it was not alive."""
        if not peer.alive:
            return None
        was_active = peer.active
        peer.alive = peer.active = False
        self._state.timers.cancel(("dead", peer.address))
        self._state.event(
            now, "peer_dead", peer=str(peer.address), reason=reason, active=was_active
        )
        return was_active

    def survive(self, peer: Peer, was_active: bool, now: float) -> None:
        """If this LMA is the best survivor, take over what the dead ``peer`` served —
        virtual: own the LMAA; hard: HA Switch to each of its MAGs (§8.6, R28)."""
        state, ownership = self._state, self._ownership
        mine = (self._config.preference, int(self._config.address))
        if any((p.preference, int(p.address)) > mine for p in state.peers.values() if p.alive):
            return
        anchored = self._rows_anchored_at(peer.address)
        if self._config.mode == "virtual":
            if was_active and not ownership.owns_lmaa:
                self._become_active(now, f"peer {peer.address} dead")
                for row in anchored:
                    state.cache.set(int(row), state=BceState.ACTIVE, anchor=state.address)
            return
        if was_active and ownership.role is Role.STANDBY:
            self._become_active(now, f"peer {peer.address} dead")
        mags = sorted({state.cache.get(int(r), "proxy_coa") for r in anchored})
        for i, mag in enumerate(mags):
            switch = HaSwitch(mag, peer.address, self._config.ha_switch_initial_timeout)
            ownership.recovering(mag, switch)
            state.timers.arm(("has", mag), now + i / self._config.ha_switch_pacing_rate)
        if mags:
            state.event(now, "ha_switch_fanout", failed=str(peer.address), mags=len(mags))

    def _rows_anchored_at(self, lma: IPv6Address) -> list[int]:
        rows = self._state.cache.rows
        synced = rows["state"] == BceState.SYNCED
        anchored = (rows["anchor"] == list(lma.packed)).all(axis=1)
        return [int(r) for r in (synced & anchored).nonzero()[0]]

    # --- HA Switch (spec-digest §1.3, §8.6) ----------------------------------------------------

    def on_ha_switch_timer(self, now: float, mag: IPv6Address) -> None:
        """(Re)send the HA Switch to ``mag``: 5 s doubling to 20 s, while sessions of the failed
        LMA at that MAG are still waiting to be re-registered."""
        state = self._state
        switch = self._ownership.ha_switch(mag)
        if switch is None:
            return
        if not state.cache.by_mag(mag) & set(self._rows_anchored_at(switch.failed)):
            self._ownership.end_ha_switch(mag)
            return
        has = HomeAgentSwitch((state.lmaa,), 0, (LmaFailureIndication(switch.failed),))
        state.counters.ha_switch_sent += 1
        state.send(has, state.lmaa, mag)
        state.timers.arm(("has", mag), now + switch.interval)
        switch.interval = min(2 * switch.interval, self._config.ha_switch_max_timeout)

    def ha_switch_acknowledged(self, mag: IPv6Address) -> None:
        """A PBU from ``mag`` is the acknowledgement of its HA Switch, if one was sent (§1.3)."""
        if self._ownership.end_ha_switch(mag):
            self._state.timers.cancel(("has", mag))
