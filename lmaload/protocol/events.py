"""What an engine reports besides datagrams: counters, and a log of events as data (role changes,
peers up/down, switchovers) for a driver to print or record."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    """The LMA's role in its redundant set (spec-digest §8.8). INIT: started without one, it
    asks its peers (HELLO R=1) and settles within one dead interval."""

    INIT = "init"
    ACTIVE = "active"
    STANDBY = "standby"


@dataclass(frozen=True)
class Event:
    """One thing that happened at ``time``: ``kind`` names it, ``detail`` holds its data."""

    time: float
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Counters:
    """Monotonic counters of an LMA engine."""

    pbu_processed: int = 0
    pba_status: Counter[int] = field(default_factory=Counter)
    drops: Counter[str] = field(default_factory=Counter)
    binding_errors_sent: int = 0
    heartbeat_requests_answered: int = 0
    heartbeat_requests_sent: int = 0
    heartbeat_responses_received: int = 0
    hello_sent: int = 0
    hello_received: int = 0
    ss_req_sent: int = 0
    ss_rep_sent: int = 0
    ss_rep_octets_sent: int = 0  # Mobility Header octets, as paced out
    ss_rep_retransmitted: int = 0
    ss_rep_received: int = 0
    ss_ack_received: int = 0
    sessions_synced_out: int = 0
    sessions_synced_in: int = 0
    sync_gave_up: int = 0
    pba_sync_timeout: int = 0
    so_req_sent: int = 0
    ha_switch_sent: int = 0
    bce_expired: int = 0
    pbu_shed: Counter[str] = field(default_factory=Counter)  # unanswered, by lma.shed reason
