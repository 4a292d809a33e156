"""The sample check after a sync run, sans-IO: each sampled session's MAG sends the standby a
failover PBU (HI 5, the session's prefix requested, a fresh Timestamp, and the LMA Failure
Indication naming lmaload — the failed active, spec-digest §8.4 step 8), paced at ``rate`` and
sent again with a fresh Timestamp after ``timeout`` (``attempts`` in all). A session is verified
when its PBA has status 0 and the same prefix, missing when the standby refuses it (no synced
state: status 154 from the reference LMA), unanswered when no PBA came.

Fed the MAGs' received Mobility Headers with ``receive(datagrams, now)``; polled for
``datagrams_to_send()`` (from each MAG's Proxy-CoA to the standby) and ``next_timer()``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv6Address

import numpy as np

from lmaload.bulk import decode_pbas, encode_pbus
from lmaload.bulk_types import DECODE_OK, PbuOptions
from lmaload.population import Population
from lmaload.protocol.datagrams import Datagrams
from lmaload.wire import LmaFailureIndication, Timestamp, WireConfig
from lmaload.wire import codepoints as cp
from lmaload.wire.codepoints import DEFAULT_CONFIG

WAITING, SENT, ANSWERED, UNANSWERED = 0, 1, 2, 3
MAX_PER_STEP = 1024


@dataclass(frozen=True)
class VerifyConfig:
    standby: IPv6Address  # the standby's inner address, where the PBUs go
    failed_lma: IPv6Address  # the LMA the LFI names: lmaload's own inner address
    rate: float = 2000.0  # PBUs/s
    timeout: float = 2.0
    attempts: int = 3
    lifetime: int = 3600  # seconds
    wire: WireConfig = DEFAULT_CONFIG


class Verifier:
    """See the module docstring. ``rows`` are population rows of live sessions."""

    def __init__(self, pop: Population, rows: np.ndarray, config: VerifyConfig, now: float):
        self.pop = pop
        self.config = config
        order = np.argsort(pop.mns["mn_id"][rows])
        self.rows = np.asarray(rows, dtype=np.int64)[order]
        self._mn_ids = pop.mns["mn_id"][self.rows]
        n = len(self.rows)
        self.state = np.full(n, WAITING, dtype=np.uint8)
        self.attempts = np.zeros(n, dtype=np.int32)
        self.sent_at = np.zeros(n)
        self.status = np.zeros(n, dtype=np.int16)
        self.same_prefix = np.zeros(n, dtype=bool)
        self.pbas_received = 0
        self.start = now
        self._initial_sent = 0
        self._out = Datagrams()

    # --- driving interface ---------------------------------------------------------------------

    def receive(self, datagrams: Datagrams, now: float) -> None:
        if not len(datagrams):
            return
        data = [d.data for d in datagrams]
        offsets = np.zeros(len(data) + 1, dtype=np.int64)
        np.cumsum([len(d) for d in data], out=offsets[1:])
        pbas = decode_pbas(np.frombuffer(b"".join(data), np.uint8), offsets, "mh", self.config.wire)
        pbas = pbas[pbas["error"] == DECODE_OK]
        at = np.searchsorted(self._mn_ids, pbas["mn_id"])
        known = at < len(self.rows)
        known[known] &= self._mn_ids[at[known]] == pbas["mn_id"][known]
        pbas, at = pbas[known], at[known]
        open_ = self.state[at] == SENT
        pbas, at = pbas[open_], at[open_]
        self.pbas_received += len(at)
        rows = self.rows[at]
        self.state[at] = ANSWERED
        self.status[at] = pbas["status"]
        self.same_prefix[at] = (pbas["hnp"] == self.pop.mns["hnp"][rows]).all(axis=1) & (
            pbas["hnp_len"] == self.pop.mns["hnp_len"][rows]
        )

    def datagrams_to_send(self) -> Datagrams:
        out, self._out = self._out, Datagrams()
        return out

    def next_timer(self) -> float | None:
        due = []
        if self._initial_sent < len(self.rows):
            due.append(self.start + self._initial_sent / self.config.rate)
        sent = self.state == SENT
        if sent.any():
            due.append(float(self.sent_at[sent].min()) + self.config.timeout)
        return min(due) if due else None

    def handle_timer(self, now: float) -> None:
        cfg = self.config
        late = np.nonzero((self.state == SENT) & (self.sent_at + cfg.timeout <= now))[0]
        exhausted = late[self.attempts[late] >= cfg.attempts]
        self.state[exhausted] = UNANSWERED
        again = late[self.attempts[late] < cfg.attempts]
        allowed = math.floor((now - self.start) * cfg.rate) + 1
        if now >= self.start + self._initial_sent / cfg.rate:  # due, whatever the rounding
            allowed = max(allowed, self._initial_sent + 1)
        allowed = min(allowed, len(self.rows), self._initial_sent + MAX_PER_STEP)
        fresh = np.arange(self._initial_sent, allowed)
        self._initial_sent = max(self._initial_sent, allowed)
        self._send(np.concatenate([again, fresh]), now)

    @property
    def done(self) -> bool:
        return not ((self.state == WAITING) | (self.state == SENT)).any()

    def summary(self) -> dict[str, object]:
        answered = self.state == ANSWERED
        ok = answered & (self.status == cp.STATUS_ACCEPTED)
        statuses = Counter(self.status[answered & ~ok].tolist())
        return {
            "sampled": len(self.rows),
            "verified": int((ok & self.same_prefix).sum()),
            "wrong_prefix": int((ok & ~self.same_prefix).sum()),
            "missing": int((answered & ~ok).sum()),
            "unanswered": int((self.state == UNANSWERED).sum()),
            "pending": int(((self.state == WAITING) | (self.state == SENT)).sum()),
            "refused_status": {str(k): v for k, v in sorted(statuses.items())},
            "pbus_sent": int(self.attempts.sum()),
        }

    # --- sending -------------------------------------------------------------------------------

    def _send(self, index: np.ndarray, now: float) -> None:
        if not len(index):
            return
        cfg = self.config
        rows = self.rows[index]
        staged = self.pop.mns[rows]
        staged["seq"] += 1
        staged["ts"] = Timestamp.from_unix(now).value
        staged["hi"] = cp.HI_NOT_CHANGED
        buf, offsets = encode_pbus(
            Population(staged, self.pop.mags, self.pop.realm),
            np.arange(len(rows), dtype=np.int64),
            cfg.standby,
            lifetime=min(math.ceil(cfg.lifetime / 4), 0xFFFF),
            options=PbuOptions(request_prefix=True, lfi=LmaFailureIndication(cfg.failed_lma)),
            config=cfg.wire,
        )
        mags = self.pop.mags["addr6"][staged["mag"]]
        for k in range(len(rows)):
            self._out.append(
                buf[offsets[k] : offsets[k + 1]].tobytes(),
                IPv6Address(mags[k].tobytes()),
                cfg.standby,
            )
        self.state[index] = SENT
        self.attempts[index] += 1
        self.sent_at[index] = now
