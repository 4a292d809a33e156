"""Configuration of the emulated MAGs: the LMAs they use, the switch mode, RFC 5213 / RFC 6275 /
RFC 5847 timers (spec-digest §3.7, §4), the PBU options and the open-loop schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Literal

from lmaload.bulk import PbuOptions
from lmaload.measure.schedule import Schedule


@dataclass(frozen=True)
class MagConfig:
    """What every emulated MAG of a population does.

    * ``lmaa`` is the LMA the sessions register with; ``standby`` the hard-switch standby LMAA
      (seed Figure 2). A virtual switch (§8.7) has one shared LMAA and no standby.
    * ``lifetime`` is the requested binding lifetime (seconds, rounded up to 4-s units); a session
      refreshes ``refresh_margin`` seconds before its granted lifetime ends (but not before half
      of it).
    * ``pbu`` are the options of every PBU; its ``request_prefix`` decides the *initial*
      registration: True requests the population's prefix, False asks the LMA to assign one
      (the engine clears the ``hnp`` column). Refreshes and failovers always request the assigned
      prefix; the engine adds the LFI itself.
    * ``schedule`` gives each initial registration its intended send time from the engine's
      start; a send later than ``lag_tolerance`` counts as behind schedule (20 ms: more than a
      busy 2-core box's scheduling hiccups, far less than a generator that cannot keep up).
    * ``deregister_at`` (Unix seconds): de-register every bound session then (HI 4, lifetime 0).
    * ``heartbeat_spacing``: the MAGs heartbeat in groups at least this far apart (seconds; the
      interval holds ``heartbeat_groups`` of them, 0: one group per MAG), so an idle generator
      wakes up every 50 ms rather than once per MAG (each tick costs the generator and the LMAs
      a wakeup whatever its size: 10 ms groups held 3-5 % of a core idle, 50 ms under 2 %).
    * ``max_retransmissions``: a PBU still unanswered after this many retransmissions (with the
      timeouts doubling from ``initial_bindack_timeout``: 1+2+4+8+16 = 31 s by default,
      ``give_up_after``) is given up (``GIVEN_UP``): RFC 5213 §6.9.4.1
      lets a MAG go on at MAX_BINDACK_TIMEOUT for ever, but a load test must account for every
      mobile node, and one whose LMA never answered has failed.
    * ``clock_offset`` is the error of the MAGs' clock in Timestamp options; a PBA 156 makes the
      engine resynchronise (set it to 0, spec-digest §3.4).
    * ``heartbeats``: ``on`` sends RFC 5847 Heartbeats; ``off`` sends none (an LMA without
      RFC 5847 may take them for an error, OPMIP even stops answering): a MAG then declares its
      LMA failed after ``failure_after`` PBU (re)transmissions to it in a row went unanswered
      (or on an HA Switch), and checks at start-up that every LMA answers a PBU (the first
      MN registered for 4 s and de-registered at once) instead; ``auto`` starts with them and
      turns them off for the run when an LMA answers one with Binding Error status 2 (no
      RFC 5847 there).
    * ``refresh_on_recovery``: when an LMA a MAG declared unreachable answers its heartbeats again
      with the Restart Counter unchanged (a virtual switch: the standby took the LMAA), refresh
      the MAG's sessions there at once rather than at their next refresh, so that whether the
      new owner holds them — and when — is known now (``lmaload run`` measures the takeover so).
    """

    lmaa: IPv6Address
    standby: IPv6Address | None = None
    mode: Literal["hard", "virtual"] = "hard"
    lifetime: float = 3600.0
    refresh_margin: float = 10.0
    heartbeat_interval: float = 1.0
    heartbeat_spacing: float = 0.05
    missing_heartbeats_allowed: int = 3
    initial_bindack_timeout: float = 1.0
    max_bindack_timeout: float = 32.0
    max_retransmissions: int = 4
    pbu: PbuOptions = field(default_factory=PbuOptions)
    schedule: Schedule = field(default_factory=lambda: Schedule.constant(1000.0))
    lag_tolerance: float = 0.02
    deregister_at: float | None = None
    restart_counter: int = 1
    clock_offset: float = 0.0
    refresh_on_recovery: bool = False
    heartbeats: Literal["on", "off", "auto"] = "on"
    failure_after: int = 3

    def __post_init__(self) -> None:
        if self.mode == "virtual" and self.standby is not None:
            raise ValueError("a virtual switch shares one LMAA: no standby address")
        if self.standby == self.lmaa:
            raise ValueError("the standby must differ from the LMAA in hard mode")
        if not 0 < self.lifetime <= 0xFFFF * 4:
            raise ValueError("lifetime is 4 .. 262140 s")
        if self.heartbeat_interval <= 0 or self.missing_heartbeats_allowed < 0:
            raise ValueError("heartbeat interval must be positive")
        if self.heartbeat_spacing < 0:
            raise ValueError("heartbeat spacing must not be negative")
        if self.failure_after < 1:
            raise ValueError("failure_after must be at least 1")
        if self.max_retransmissions < 0:
            raise ValueError("max_retransmissions must not be negative")
        if self.pbu.lfi is not None:
            raise ValueError("the engine adds the LMA Failure Indication to failover PBUs")

    @property
    def give_up_after(self) -> float:
        """Seconds from a PBU's first transmission to giving it up (every retransmission timed
        out)."""
        return sum(
            min(self.initial_bindack_timeout * 2**k, self.max_bindack_timeout)
            for k in range(self.max_retransmissions + 1)
        )

    @property
    def heartbeat_groups(self) -> int | None:
        """How many groups of MAGs heartbeat at distinct times (None: one per MAG)."""
        if self.heartbeat_spacing == 0:
            return None
        return max(math.floor(self.heartbeat_interval / self.heartbeat_spacing + 1e-9), 1)

    @property
    def lifetime_units(self) -> int:
        """The requested lifetime in the PBU's 4-second units."""
        return math.ceil(self.lifetime / 4)

    @property
    def lmas(self) -> tuple[IPv6Address, ...]:
        """The LMA table: the ``lma`` column of a session indexes it."""
        return (self.lmaa,) if self.standby is None else (self.lmaa, self.standby)
