"""State Synchronization into this LMA (spec-digest §7.2, R14, R15, R27): the full-sync request
it sends to a peer that turned active, and the SS-REPs it stores as SYNCED entries anchored at
their sender — by the compiled scan and store (``lma_batch.scan_ss_rep``, ``lane.apply_synced``)
where they apply, else by the reference decoder.
"""

from __future__ import annotations

import random
from ipaddress import IPv6Address

import numpy as np

from lmaload._ext.lane import Synced, apply_synced
from lmaload.protocol.binding_cache import BceState, prefix_key
from lmaload.protocol.lma.ownership import Ownership
from lmaload.protocol.lma.state import LmaState
from lmaload.protocol.lma.sync_out import encode_ss_ack
from lmaload.protocol.pmip import ALL_ZERO, serial_newer
from lmaload.protocol.redundancy import SyncedSession
from lmaload.wire import (
    HomeNetworkPrefix,
    ProxyBindingCacheInformation,
    RestartCounter,
    StateSync,
)
from lmaload.wire import codepoints as cp

MAX_SYNC_REQUEST_TIMEOUT = 30.0


class SyncIn:
    """The State Sync receiver of one LMA."""

    def __init__(self, state: LmaState, ownership: Ownership) -> None:
        self._state = state
        self._ownership = ownership
        self._requests: dict[IPv6Address, tuple[int, float]] = {}  # peer → (Id, interval)
        self._rng = random.Random(int(state.address))

    def request_full_sync(self, peer: IPv6Address, now: float, interval: float) -> None:
        """SS-REQ for all sessions: one ALL_ZERO HNP of length 0 (R27); random non-zero Id."""
        state = self._state
        ident = self._rng.randrange(1, 0x10000)
        self._requests[peer] = (ident, interval)
        request = StateSync(cp.SS_REQUEST, ident, 0, (HomeNetworkPrefix(ALL_ZERO, 0),))
        state.counters.ss_req_sent += 1
        state.send(request, state.address, peer)
        state.timers.arm(("ssreq", peer), now + interval)

    def on_request_timer(self, now: float, peer: IPv6Address) -> None:
        _, interval = self._requests[peer]
        self.request_full_sync(peer, now, min(2 * interval, MAX_SYNC_REQUEST_TIMEOUT))

    def forget_peer(self, peer: IPv6Address) -> None:
        """A peer died: stop asking it for a full sync."""
        self._state.timers.cancel(("ssreq", peer))
        self._requests.pop(peer, None)

    def on_scanned_reply(
        self,
        data: bytes,
        scanned: tuple[int, int, int, np.ndarray],
        src: IPv6Address,
        now: float,
    ) -> None:
        """An SS-REP the compiled scan read (``lma_batch.scan_ss_rep``), stored in one call to
        ``lane.apply_synced`` — the same as ``on_reply``."""
        state = self._state
        flags, identifier, counter, sessions = scanned
        state.counters.ss_rep_received += 1
        if counter >= 0 and not self._ownership.owns_lmaa:
            state.lmaa_restart_counter = counter
        done = Synced(len(sessions))
        buf = np.frombuffer(data, dtype=np.uint8)
        apply_synced(state.cache, buf, sessions, src.packed, now, state.delete, done)
        for reason, count in (("bad_synced_session", done.bad), ("stale_sync", done.stale)):
            if count:
                state.counters.drops[reason] += count
        state.expiry.push_many(done.row[: done.count], done.expires[: done.count])
        state.counters.sessions_synced_in += done.count
        self._after_reply(flags, identifier, src, now)

    def on_reply(self, msg: StateSync, src: IPv6Address, now: float) -> None:
        self._state.counters.ss_rep_received += 1
        lead = next(
            (
                o
                for o in msg.options
                if isinstance(o, RestartCounter | ProxyBindingCacheInformation)
            ),
            None,
        )
        if isinstance(lead, RestartCounter) and not self._ownership.owns_lmaa:
            self._state.lmaa_restart_counter = lead.counter
        for pbci, options in msg.sessions():
            session = (
                SyncedSession.parse(pbci, options)
                if isinstance(pbci, ProxyBindingCacheInformation)
                else None
            )
            if session is None:
                self._state.drop("bad_synced_session")
            else:
                self._apply(session, src, now)
        self._after_reply(msg.flags, msg.identifier, src, now)

    def _after_reply(self, flags: int, identifier: int, src: IPv6Address, now: float) -> None:
        """The SS-ACK asked for, and the end of a full sync this LMA requested."""
        state = self._state
        if flags & cp.SS_FLAG_A:
            address = state.address
            ack = encode_ss_ack(identifier, address.packed, src.packed, state.wire)
            state.out.append(ack, address, src)
        request = self._requests.get(src)
        if request is not None and request[0] == identifier and not flags & cp.SS_FLAG_M:
            del self._requests[src]
            state.timers.cancel(("ssreq", src))
            state.event(now, "sync_complete", peer=str(src))

    def _apply(self, session: SyncedSession, sender: IPv6Address, now: float) -> None:
        """Store a session the sender serves (state SYNCED, anchor = sender); lifetime 0 deletes
        it. A copy older than ours (by Timestamp, else sequence number) is ignored, so reordered
        or retransmitted SS-REPs cannot roll a session back."""
        state = self._state
        cache = state.cache
        pbci = session.pbci
        row = cache.by_prefix(session.prefixes[0])
        if row is not None and (
            cache.mn_ids[row] != session.mn_id or set(cache.prefixes(row)) != set(session.prefixes)
        ):
            state.delete(row)
            row = None
        if row is not None and self._is_stale(row, session):
            state.drop("stale_sync")
            return
        if pbci.lifetime == 0:
            if row is not None and cache.state(row) in (BceState.SYNCED, BceState.MOVED):
                state.delete(row)
            return
        if row is None:
            row = cache.insert(
                session.mn_id,
                tuple(prefix_key(p) for p in session.prefixes),
                session.ll_id,
                state=BceState.SYNCED,
                proxy_coa=pbci.proxy_coa,
            )
        expires = now + 4 * pbci.lifetime
        cache.set(
            row,
            state=BceState.SYNCED,
            anchor=sender,
            flags=pbci.flags,
            seq=pbci.sequence,
            lifetime=pbci.lifetime,
            expires=expires,
            ts=session.timestamp,
            att=session.att,
            proxy_coa=pbci.proxy_coa,
            lla=session.lla or ALL_ZERO,
            tunnel=pbci.tunnel_interface_id,
        )
        state.expiry.push(row, expires)
        state.counters.sessions_synced_in += 1

    def _is_stale(self, row: int, session: SyncedSession) -> bool:
        cache = self._state.cache
        ts = cache.get(row, "ts")
        if ts and session.timestamp:
            return session.timestamp < ts
        return serial_newer(cache.get(row, "seq"), session.pbci.sequence)
