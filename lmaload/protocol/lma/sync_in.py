"""State Synchronization into this LMA (spec-digest §7.2, R14, R15, R27): the full-sync request
it sends to a peer that turned active, and the SS-REPs it stores as SYNCED entries anchored at
their sender — the SS-REPs of a received batch in one compiled call (``ingest``, over
``sync_ingest.ingest``), those it declines by the reference decoder (``on_reply``), which
defines what both do.
"""

from __future__ import annotations

import random
from ipaddress import IPv6Address

import numpy as np

from lmaload._ext.sync_ingest import ingest
from lmaload.protocol.binding_cache import BceState, prefix_key
from lmaload.protocol.datagrams import Columns
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
        # What ``ingest`` is given: the peers' packed addresses (None: no peer, or a plain LMA,
        # which does not take State Sync), this LMA's, and the SS-ACK template.
        self._peers: np.ndarray | None = None
        if state.peers and not state.config.plain:
            octets = b"".join(p.packed for p in state.peers)
            self._peers = np.frombuffer(octets, dtype=np.uint8).reshape(-1, 16)
        self._own = state.address.packed
        self._ack_template = encode_ss_ack(0, bytes(16), bytes(16), state.wire)

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

    def ingest(self, columns: Columns, now: float) -> np.ndarray | None:
        """Take the SS-REPs of ``columns`` from a peer to this LMA's address that the compiled
        scan reads, as ``on_reply`` would one by one: sessions stored, SS-ACKs queued as one run
        of columns. The indexes of the datagrams taken, None for none; the rest are left to the
        reference path."""
        state = self._state
        if self._peers is None:
            return None
        done = ingest(
            state.cache,
            columns.buf,
            columns.starts,
            columns.ends,
            columns.src,
            columns.dst,
            self._own,
            self._peers,
            now,
            state.delete,
            self._ack_template,
            state.wire,
        )
        if done is None:
            return None
        counters = state.counters
        counters.ss_rep_received += done.messages
        for reason, count in (("bad_synced_session", done.bad), ("stale_sync", done.stale)):
            if count:
                counters.drops[reason] += count
        if done.counter >= 0 and not self._ownership.owns_lmaa:
            state.lmaa_restart_counter = done.counter
        if done.count:
            state.expiry.push_many(done.row[: done.count], done.expires[: done.count])
            counters.sessions_synced_in += done.count
        if len(done.acks):
            state.out.extend(
                [Columns.from_offsets(done.acks, done.ack_offsets, done.ack_src, done.ack_dst)]
            )
        if self._requests:
            peers = list(state.peers)
            for flags, identifier, peer in zip(
                done.flags.tolist(), done.identifier.tolist(), done.peer.tolist(), strict=True
            ):
                self._end_request(flags, identifier, peers[peer], now)
        return done.taken

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
        self._end_request(flags, identifier, src, now)

    def _end_request(self, flags: int, identifier: int, src: IPv6Address, now: float) -> None:
        """The last SS-REP (M=0) answering this LMA's full-sync request to ``src`` ends it."""
        state = self._state
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
