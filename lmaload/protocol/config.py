"""Configuration of the reference LMA: addresses and redundancy role, RFC 5213 / RFC 5847 /
HA-rel timers (spec-digest §3.7, §4, §7.8), the authorisation policy and the switchover and
synchronisation policies of spec-digest §8.5 and R18/R19/R26."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from typing import Literal

from lmaload.wire import DEFAULT_CONFIG, WireConfig

DEFAULT_PREFIX_POOL = IPv6Network("2001:db8:8000::/48")


@dataclass(frozen=True)
class Policy:
    """Who may use this LMA (RFC 5213 §5.3.1 steps 5-8).

    ``None`` authorises everyone. ``home_networks`` are the prefixes a MAG may request explicitly
    (None: the LMA's own prefix pool) — a requested prefix outside them is refused with 155.
    """

    authorized_mags: frozenset[IPv6Address] | None = None
    authorized_mns: frozenset[bytes] | None = None
    pmip_disabled_mns: frozenset[bytes] = frozenset()
    home_networks: tuple[IPv6Network, ...] | None = None


@dataclass(frozen=True)
class LmaConfig:
    """One LMA of a redundant pair (or set).

    Addresses: ``address`` is the individual address (HA-HELLO, state sync, HA Control); ``lmaa``
    the LMA address MAGs register with — the same as ``address`` in hard mode, the shared group
    address in virtual mode (spec-digest §7.1, §8.7). ``peers`` are the other LMAs' individual
    addresses.

    Sync modes (what a PBA 0 means for the standby):

    * ``async``: the PBA is sent at once; the change goes to the standby in the next SS-REP batch
      (A=1, retransmitted until SS-ACK). A crash of the active between the PBA and the standby's
      receipt of that SS-REP loses the change at the standby.
    * ``before-ack``: the PBA of every accepted PBU is withheld until the standby acknowledged the
      SS-REP carrying the change (SS-ACK). So every session a MAG holds a PBA 0 for is at the
      standby — unless no standby was alive, or the standby did not acknowledge within
      ``before_ack_timeout`` (then the PBA is sent anyway and counted in
      ``Counters.pba_sync_timeout``), trading that guarantee for availability.

    ``plain``: a standalone RFC 5213 LMA, as third-party ones are, for rehearsals: no peers,
    HA-HELLO or State Sync, and no RFC 5847 — a Heartbeat, like the draft's messages, is an
    unrecognised MH type answered with Binding Error status 2 (RFC 6275 §9.2), and none is sent
    to the MAGs; PBUs are ordered by sequence number alone, their Timestamp and LMA Failure
    Indication options ignored (RFC 6275 §6.2.1: an option not understood is skipped) and never
    echoed in the PBA.
    """

    address: IPv6Address
    lmaa: IPv6Address | None = None
    peers: tuple[IPv6Address, ...] = ()
    mode: Literal["hard", "virtual"] = "hard"
    role: Literal["active", "standby", "auto"] = "active"  # auto: INIT, then elected
    preference: int = 100
    group_id: int = 1
    prefix_pool: IPv6Network = DEFAULT_PREFIX_POOL
    prefix_length: int = 64
    policy: Policy = field(default_factory=Policy)
    restart_counter: int = 1
    # RFC 5213 §9.1 (spec-digest §3.7), seconds
    min_delay_before_bce_delete: float = 10.0
    timestamp_validity_window: float = 0.3
    # RFC 5847 (spec-digest §4)
    heartbeat_interval: float = 60.0
    missing_heartbeats_allowed: int = 3
    # HA-HELLO (spec-digest §7.4, §7.8): a peer is dead after dead_interval_factor intervals
    hello_interval: int = 1
    hello_lifetime: int = 1800
    dead_interval_factor: float = 3.0
    # State synchronisation (spec-digest §7.2, R15, R26)
    sync: Literal["async", "before-ack"] = "async"
    sync_pacing_rate: float = 1000.0
    sync_ack_timeout: float = 1.0
    sync_max_retransmissions: int = 4
    sync_request_timeout: float = 3.0
    before_ack_timeout: float = 2.0
    # Switchover (spec-digest §7.3, §8.5, R18, R19)
    switchover_initial_timeout: float = 1.0
    switchover_max_timeout: float = 16.0
    no_synced_state: Literal["reject", "new-session"] = "reject"
    # Home Agent Switch (spec-digest §1.3, §8.6)
    ha_switch_initial_timeout: float = 5.0
    ha_switch_max_timeout: float = 20.0
    ha_switch_pacing_rate: float = 100.0
    # Overload (README "Overload"; lmaload.protocol.lma.shed): a PBU queued longer than
    # pbu_max_delay is dropped unanswered, half the MAG's 1 s INITIAL_BINDACK_TIMEOUT leaving the
    # other half for the before-ack SS-ACK and the way back; a PBU a later one of the same batch
    # supersedes is dropped; PBUs are dropped while max_withheld_pbas PBAs wait for an SS-ACK or
    # max_pending_ss_reps SS-REPs for theirs; a takeover holds at most max_held_pbus PBUs.
    pbu_max_delay: float = 0.5
    supersede_pbus: bool = True
    max_withheld_pbas: int = 20_000
    max_pending_ss_reps: int = 2_000
    max_held_pbus: int = 100_000
    wire: WireConfig = DEFAULT_CONFIG
    plain: bool = False
    # Binding cache entries made room for at start, their memory written then
    # (BindingCache.reserve): a configured capacity, as a carrier LMA has.
    reserve: int = 0

    def __post_init__(self) -> None:
        if self.lmaa is None:
            object.__setattr__(self, "lmaa", self.address)
        if self.mode == "hard" and self.lmaa != self.address:
            raise ValueError("in hard mode the LMAA is the LMA's own address")
        if self.mode == "virtual" and self.lmaa == self.address:
            raise ValueError("in virtual mode the LMAA is shared and differs from the address")
        if not 0 <= self.preference <= 0xFFFF or not 0 <= self.group_id <= 0xFF:
            raise ValueError("preference is 16-bit and group id 8-bit (R21)")
        if not self.prefix_pool.prefixlen <= self.prefix_length <= 128:
            raise ValueError("prefix_length must not be shorter than the pool's")
        if self.plain and (
            self.peers or self.mode != "hard" or self.role != "active" or self.sync != "async"
        ):
            raise ValueError("a plain LMA stands alone: no peers, hard mode, active, async")

    @property
    def home_networks(self) -> tuple[IPv6Network, ...]:
        return self.policy.home_networks or (self.prefix_pool,)
