"""What the collaborators of ``MagEngine`` (``protocol/mag.py``) share: the session-state groups
and PBA status classes they react to, the engine's counters, and ``Peers`` — the LMAs and MAGs by
address and index, and each MAG's session rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address

import numpy as np

from lmaload.population import Population
from lmaload.population import SessionState as S
from lmaload.wire import codepoints as cp

SLACK_NS = 1_000  # a due time this close to ``now`` is due (float seconds → ns round trips)
NO_LFI = -1
BOUND = (S.REGISTERED, S.REFRESHING)  # the LMA holds a binding the MAG knows about
AWAITING_PBA = (S.REGISTERING, S.REFRESHING, S.FAILOVER, S.DEREGISTERING)
MOVABLE = (S.REGISTERING, S.REGISTERED, S.REFRESHING, S.FAILOVER)  # may switch LMA
TIMING_STATUS = (cp.STATUS_TIMESTAMP_MISMATCH, cp.STATUS_TIMESTAMP_LOWER_THAN_PREV_ACCEPTED)
RESYNC = cp.STATUS_SEQUENCE_OUT_OF_WINDOW
KEEPS_BINDING = (*TIMING_STATUS, RESYNC)  # a retry after these may still keep the session
RETRY_NOW = (*KEEPS_BINDING, cp.STATUS_NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX)
MAX_IMMEDIATE_RETRIES = 3  # 135/155/156/157 answered again and again: give the session up
LATENCY_KIND = {S.REGISTERING: "register", S.REFRESHING: "refresh", S.FAILOVER: "failover"}


def ns(t: float) -> int:
    """Unix seconds as integer nanoseconds."""
    return round(t * 1e9)


def pairs(both: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(MAG, LMA) pairs as two int64 arrays."""
    array = np.array(both, dtype=np.int64).reshape(-1, 2)
    return array[:, 0], array[:, 1]


@dataclass
class MagCounters:
    """Monotonic counters of a MAG engine."""

    pbu_sent: int = 0
    pbu_retransmitted: int = 0
    pba_received: int = 0
    pba_ignored: int = 0  # malformed, unknown MN or LMA, stale or duplicate
    quirks: Counter[str] = field(default_factory=Counter)  # peer_quirks kinds: malformed by reason
    pba_status: Counter[int] = field(default_factory=Counter)
    failed: Counter[int] = field(default_factory=Counter)  # sessions given up, by status
    heartbeat_requests_sent: int = 0
    heartbeat_responses_received: int = 0
    heartbeat_requests_answered: int = 0
    ha_switch_received: int = 0
    sessions_invalidated: int = 0
    given_up: int = 0  # sessions whose PBU went unanswered through every retransmission


class Peers:
    """The LMAs (``lmas``, in configuration order) and the MAGs of ``population``: addresses,
    indices, and the session rows of each MAG."""

    def __init__(self, population: Population, lmas: Sequence[IPv6Address]) -> None:
        mns = population.mns
        n_mags = len(population.mags)
        self.lmas = list(lmas)
        self.lma_index = {a: i for i, a in enumerate(self.lmas)}
        self.lma_packed = np.array([list(a.packed) for a in self.lmas], dtype=np.uint8).reshape(
            -1, 16
        )
        self.mag_index = {population.mag_address6(m): m for m in range(n_mags)}
        self._mag_order = np.argsort(mns["mag"], kind="stable")
        self._mag_start = np.searchsorted(mns["mag"][self._mag_order], np.arange(n_mags + 1))

    def lma_of(self, src: np.ndarray) -> np.ndarray:
        """Index of the LMA each packed source address is, -1 for none of them."""
        lma = np.full(len(src), -1, dtype=np.int64)
        for i, packed in enumerate(self.lma_packed):
            lma[(src == packed).all(axis=1)] = i
        return lma

    def rows_of(self, mag: int) -> np.ndarray:
        """The session rows of MAG ``mag``."""
        return self._mag_order[self._mag_start[mag] : self._mag_start[mag + 1]]
