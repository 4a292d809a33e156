"""The per-MAG hard switch (seed Figure 3, spec-digest §8.5, R16, R17, R29), both sides.

At the standby: a failover PBU (with an LFI) from a MAG it does not serve opens a takeover of
that MAG — the PBUs are held, an SO-REQ names the MAG to its current LMA — which completes on an
SO-REP that grants it, on the current LMA's death, or when the SO-REQs go unanswered. The
engine then processes the held PBUs as its own and this module sends the Switch Complete; an
SO-REP that refuses ends the takeover, and the engine rejects the held PBUs.
At the current LMA: an SO-REQ naming a MAG yields that MAG (its entries become MOVED); without
a MAG it is the base HA-rel full switchover. A Switch Complete ends the MOVED entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv6Address

from lmaload.protocol.binding_cache import BceState
from lmaload.protocol.datagrams import Datagram
from lmaload.protocol.events import Role
from lmaload.protocol.lma.ownership import Ownership
from lmaload.protocol.lma.state import LmaState
from lmaload.protocol.pmip import ProxyBindingUpdate
from lmaload.protocol.redundancy import Takeover, TakeoverKey
from lmaload.wire import HomeAgentControl
from lmaload.wire import codepoints as cp

HAC_SWITCH_STATUS_TAKE_OVER = frozenset({0, 130})


class Outcome(Enum):
    """What should become of a takeover."""

    WAIT = "wait"
    COMPLETE = "complete"
    REFUSE = "refuse"


@dataclass
class Ended:
    """A takeover that ended: ``held`` are its PBUs, as received; ``current`` the LMA that
    served the MAG; ``starts_advertising``: this LMA now sets A in its HA-HELLOs."""

    mag: IPv6Address
    held: list[Datagram]
    current: IPv6Address
    starts_advertising: bool = False


class Takeovers:
    """Per-MAG takeovers at this LMA and its answers to its peers' SO-REQs."""

    def __init__(self, state: LmaState, ownership: Ownership) -> None:
        self._state = state
        self._config = state.config
        self._ownership = ownership

    # --- the taking side -----------------------------------------------------------------------

    def queue(self, pbu: ProxyBindingUpdate, datagram: Datagram, now: float) -> Outcome:
        """Hold a PBU+LFI; the first one of a MAG sends the SO-REQ naming that MAG. COMPLETE: the
        current LMA is not alive, the caller completes the takeover now."""
        mag = pbu.proxy_coa
        key: TakeoverKey = (pbu.mn_id.identifier, pbu.ll_id, pbu.att)  # type: ignore[union-attr]
        takeover = self._ownership.takeover(mag)
        if takeover is not None:
            self._hold(takeover, key, datagram)
            return Outcome.WAIT
        current = self._current_lma_of(mag, pbu.lfi.lmaa)  # type: ignore[union-attr]
        takeover = Takeover(mag, current, self._config.switchover_initial_timeout)
        self._hold(takeover, key, datagram)
        self._ownership.start_takeover(takeover)
        self._state.event(now, "switchover_started", mag=str(mag), current=str(current))
        if not self._state.peers[current].alive:
            return Outcome.COMPLETE
        self._send_request(takeover)
        self._state.timers.arm(("so", mag), now + takeover.interval)
        return Outcome.WAIT

    def hold(self, mag: IPv6Address, key: TakeoverKey, datagram: Datagram) -> None:
        """Hold one more PBU for the takeover of ``mag`` under way (the fast lane found it)."""
        self._hold(self._ownership.takeover(mag), key, datagram)  # type: ignore[arg-type]

    def _hold(self, takeover: Takeover, key: TakeoverKey, datagram: Datagram) -> None:
        """Hold at most ``max_held_pbus`` PBUs (one per mobile node interface): at the bound a
        PBU for one more interface sheds the one held longest, unanswered."""
        queued = takeover.queued
        if key not in queued and len(queued) >= self._config.max_held_pbus:
            del queued[next(iter(queued))]
            self._state.counters.pbu_shed["takeover"] += 1
        takeover.hold(key, datagram)

    def _current_lma_of(self, mag: IPv6Address, named: IPv6Address) -> IPv6Address:
        """The LMA to ask: the one the LFI names if it is a peer, else the anchor of the MAG's
        synced sessions, else the first peer."""
        peers, cache = self._state.peers, self._state.cache
        if named in peers:
            return named
        for row in cache.by_mag(mag):
            anchor = cache.get(row, "anchor")
            if anchor in peers:
                return anchor
        return next(iter(peers))

    def _send_request(self, takeover: Takeover) -> None:
        state = self._state
        state.counters.so_req_sent += 1
        request = HomeAgentControl(cp.HAC_SWITCHOVER_REQUEST, 0, takeover.mag)
        state.send(request, state.address, takeover.current)

    def on_switchover_timer(self, now: float, mag: IPv6Address) -> Outcome:
        """No SO-REP yet: send the SO-REQ again, the interval doubling up to the longest; after
        that, the current LMA is taken as gone (COMPLETE)."""
        takeover = self._ownership.takeover(mag)
        assert takeover is not None
        if takeover.interval < self._config.switchover_max_timeout:
            takeover.interval *= 2
            self._send_request(takeover)
            self._state.timers.arm(("so", mag), now + takeover.interval)
            return Outcome.WAIT
        return Outcome.COMPLETE

    def on_reply(self, msg: HomeAgentControl, src: IPv6Address) -> Outcome:
        """An SO-REP: whether it grants or refuses the takeover of its MAG (WAIT: unsolicited)."""
        mag = msg.mag_address
        takeover = self._ownership.takeover(mag) if mag is not None else None
        if takeover is None or takeover.current != src:
            self._state.drop("unsolicited_so_rep")
            return Outcome.WAIT
        if msg.status in HAC_SWITCH_STATUS_TAKE_OVER:
            return Outcome.COMPLETE
        return Outcome.REFUSE

    def waiting_on(self, peer: IPv6Address) -> list[IPv6Address]:
        """The MAGs whose takeover waits for ``peer``'s SO-REP."""
        return [t.mag for t in self._ownership.takeovers() if t.current == peer]

    def complete(self, mag: IPv6Address, now: float, reason: str) -> Ended:
        """Serve the MAG from now on (R11); the caller processes the held PBUs, then calls
        ``confirm``."""
        ownership = self._ownership
        was_advertising = ownership.advertises_active
        takeover = ownership.end_takeover(mag)
        self._state.timers.cancel(("so", mag))
        ownership.took_over(mag)
        self._state.event(
            now, "switchover_done", mag=str(mag), reason=reason, queued=len(takeover.queued)
        )
        return Ended(mag, list(takeover.queued.values()), takeover.current, not was_advertising)

    def confirm(self, ended: Ended) -> None:
        """Switch Complete to the LMA that served the MAG, if it is still alive."""
        state = self._state
        if state.peers[ended.current].alive:
            complete = HomeAgentControl(cp.HAC_SWITCH_COMPLETE, 0, ended.mag)
            state.send(complete, state.address, ended.current)

    def refuse(self, mag: IPv6Address, now: float, reason: str) -> Ended:
        """Give the takeover up; the caller rejects the held PBUs."""
        takeover = self._ownership.end_takeover(mag)
        self._state.timers.cancel(("so", mag))
        self._state.event(now, "switchover_refused", mag=str(mag), reason=reason)
        return Ended(mag, list(takeover.queued.values()), takeover.current)

    # --- the yielding side ---------------------------------------------------------------------

    def on_request(
        self, mag: IPv6Address | None, src: IPv6Address, now: float, heartbeat_lost: bool
    ) -> int:
        """SO-REQ at the current LMA: with a MAG Address, yield that MAG only (R17) — keep
        serving the others; without, the base HA-rel full switchover. Returns the SO-REP
        status; ``heartbeat_lost``: the MAG missed its heartbeats here."""
        state, ownership = self._state, self._ownership
        if mag is None:
            if ownership.role is not Role.ACTIVE:
                return 130
            ownership.role = Role.STANDBY
            ownership.owns_lmaa = self._config.mode == "hard"
            state.event(now, "role", role=Role.STANDBY.value, reason=f"SO-REQ from {src}")
            return 0
        if ownership.yielded_to(mag) == src:
            return 0  # a retransmitted SO-REQ
        if not ownership.serves(mag, state.lmaa):
            return 130
        ownership.yield_mag(mag, src)
        cache = state.cache
        for row in cache.by_mag(mag):
            if cache.state(row) is BceState.ACTIVE:
                cache.set(row, state=BceState.MOVED)
        state.event(
            now, "partial_switchover", mag=str(mag), to=str(src), heartbeat_lost=heartbeat_lost
        )
        return 0

    def on_switch_complete(self, mag: IPv6Address, src: IPv6Address, now: float) -> None:
        """The MAG's new LMA serves it: the entries kept MOVED here go."""
        state = self._state
        for row in list(state.cache.by_mag(mag)):
            if state.cache.state(row) is BceState.MOVED:
                state.delete(row)
        state.event(now, "switch_complete", mag=str(mag), by=str(src))
