"""RFC 5213 §5.3 PBU processing by the reference path (spec-digest §3.2): admission, the binding
cache lookup, ordering by Timestamp or sequence number, new sessions, refreshes, hand-offs,
de-registrations and their PBAs; and the end of an entry's lifetime.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from ipaddress import IPv6Address

from lmaload.protocol.binding_cache import BceState, prefix_key
from lmaload.protocol.datagrams import Datagram
from lmaload.protocol.lma.heartbeat import Heartbeats
from lmaload.protocol.lma.ownership import Ownership
from lmaload.protocol.lma.state import LmaState
from lmaload.protocol.lma.sync_out import SyncOut
from lmaload.protocol.pmip import ALL_ZERO, ProxyBindingUpdate, build_pba, serial_newer
from lmaload.wire import BindingUpdate, Message, Timestamp, decode_mh, encode_mh
from lmaload.wire import codepoints as cp


class PbuProcessor:
    """The reference path for PBUs."""

    def __init__(
        self, state: LmaState, ownership: Ownership, heartbeats: Heartbeats, sync_out: SyncOut
    ) -> None:
        self._state = state
        self._config = state.config
        self._ownership = ownership
        self._heartbeats = heartbeats
        self._sync_out = sync_out

    def on_pbu(
        self, msg: BindingUpdate, datagram: Datagram, now: float
    ) -> ProxyBindingUpdate | None:
        """Process a received PBU; return it if a takeover of its MAG must hold it (hard mode, a
        MAG this LMA does not serve yet): a failover PBU (with an LFI), or any PBU of a MAG
        whose takeover is under way.

        ``datagram.arrival``: the LMA clock when the PBU reached this host, which its
        Timestamp is checked against (spec-digest §3.4), so that time it spends queued here (a
        failover burst) does not push a punctual MAG out of the window."""
        _, src, dst, arrival = datagram
        assert arrival is not None
        self._state.counters.pbu_processed += 1
        if not msg.flags & cp.BU_FLAG_P:
            self._state.drop("not_proxy")
            return None
        pbu = ProxyBindingUpdate.parse(msg, src, dst)
        if self._config.plain:
            pbu = replace(pbu, timestamp=None, lfi=None)
        mag = pbu.proxy_coa
        self._heartbeats.ha_switch_acknowledged(mag)
        status = self._admit(pbu)
        if status is not None:
            self.reject(pbu, status, now)
        elif self._ownership.serves(mag, dst):
            self.process(pbu, now, arrival)
        elif self._config.mode == "hard" and (
            pbu.lfi is not None or self._ownership.takeover(mag) is not None
        ):
            # R29 queues each session's PBU+LFI on its MAG's takeover. Ours: a new session's
            # PBU (no LFI: its MAG failed over before it registered) joins it too, where a 153
            # would only make the MAG retry.
            return pbu
        else:
            self.reject(pbu, cp.STATUS_NOT_LMA_FOR_THIS_MOBILE_NODE, now)
        return None

    def decode(self, datagram: Datagram) -> ProxyBindingUpdate:
        """A PBU that was admitted when it arrived (and held for a takeover), decoded again."""
        data, src, dst, _ = datagram
        msg = decode_mh(data, src, dst, self._state.wire).message
        return ProxyBindingUpdate.parse(msg, src, dst)  # type: ignore[arg-type]

    def _admit(self, pbu: ProxyBindingUpdate) -> int | None:
        """Steps 4-8: MN-ID present, MAG and MN authorised, proxy registration enabled.

        Deviation: the "not serving this MAG" check (153, or the hard-switch takeover) runs after
        step 8 so that a PBU refused by policy never opens a takeover.
        """
        policy = self._config.policy
        if pbu.mn_id is None:
            return cp.STATUS_MISSING_MN_IDENTIFIER_OPTION
        if policy.authorized_mags is not None and pbu.proxy_coa not in policy.authorized_mags:
            return cp.STATUS_MAG_NOT_AUTHORIZED_FOR_PROXY_REG
        mn = pbu.mn_id.identifier
        if policy.authorized_mns is not None and mn not in policy.authorized_mns:
            return cp.STATUS_NOT_LMA_FOR_THIS_MOBILE_NODE
        if mn in policy.pmip_disabled_mns:
            return cp.STATUS_PROXY_REG_NOT_ENABLED
        return None

    def process(self, pbu: ProxyBindingUpdate, now: float, arrival: float) -> None:
        """Steps 9-14 for an admitted PBU this LMA serves. ``arrival`` is when it was received
        (a PBU queued during a takeover is checked against the window at its arrival)."""
        row, lookup_status = self._lookup(pbu)
        status = self._check_order(pbu, row, arrival)
        if status is not None:
            if status == cp.STATUS_SEQUENCE_OUT_OF_WINDOW:
                self.reject(pbu, status, now, sequence=self._state.cache.get(row, "seq"))
            else:
                self.reject(pbu, status, now, timestamp=Timestamp.from_unix(now))
            return
        for missing, code in (
            (not pbu.prefixes, cp.STATUS_MISSING_HOME_NETWORK_PREFIX_OPTION),
            (pbu.hi is None, cp.STATUS_MISSING_HANDOFF_INDICATOR_OPTION),
            (pbu.att is None, cp.STATUS_MISSING_ACCESS_TECH_TYPE_OPTION),
        ):
            if missing:
                self.reject(pbu, code, now)
                return
        if lookup_status is not None:
            self.reject(pbu, lookup_status, now)
        elif pbu.message.lifetime == 0:
            self._deregister(pbu, row, now)
        elif row is not None:
            self._accept(pbu, row, now)
        elif self._is_recovery(pbu) and self._config.no_synced_state == "reject":
            mn = pbu.mn_id.identifier  # type: ignore[union-attr]
            self._state.event(now, "no_synced_state", mag=str(pbu.proxy_coa), mn=mn)
            self.reject(pbu, cp.STATUS_NOT_LMA_FOR_THIS_MOBILE_NODE, now)
        else:
            self._new_session(pbu, now)

    def _lookup(self, pbu: ProxyBindingUpdate) -> tuple[int | None, int | None]:
        """The BCE the PBU is about (spec-digest §3.2.1), or None for a new session; and the
        rejection (155, 159) the lookup calls for."""
        cache = self._state.cache
        mn = pbu.mn_id.identifier  # type: ignore[union-attr]
        explicit = pbu.explicit_prefixes()
        if explicit:
            rows = {cache.by_prefix(p) for p in explicit} - {None}
            if not rows:
                return None, None
            if len(rows) > 1:
                return None, cp.STATUS_BCE_PBU_PREFIX_SET_DO_NOT_MATCH
            row = rows.pop()
            assert row is not None
            if cache.mn_ids[row] != mn:
                return None, cp.STATUS_NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX
            if set(cache.prefixes(row)) != set(explicit):
                return row, cp.STATUS_BCE_PBU_PREFIX_SET_DO_NOT_MATCH
            return row, None
        candidates = [
            r
            for r in cache.by_mn(mn)
            if pbu.ll_id is None
            or (cache.ll_ids[r] == pbu.ll_id and cache.get(r, "att") == pbu.att)
        ]
        if len(candidates) != 1:
            return None, None
        # Deviation: HI 4 updates the BCE at once instead of waiting MaxDelayBeforeNewBCEAssign
        # for the previous MAG's de-registration.
        if pbu.message.lifetime == 0 or pbu.hi in (
            cp.HI_HANDOFF_BETWEEN_INTERFACES,
            cp.HI_HANDOFF_BETWEEN_MAGS,
            cp.HI_UNKNOWN,
        ):
            return candidates[0], None
        return None, None

    def _check_order(self, pbu: ProxyBindingUpdate, row: int | None, arrival: float) -> int | None:
        """Step 9, spec-digest §3.4: Timestamp (156, 157) or sequence number (135)."""
        cache = self._state.cache
        ts = pbu.timestamp
        if ts is not None:
            if abs(ts.seconds - arrival) > self._config.timestamp_validity_window:
                return cp.STATUS_TIMESTAMP_MISMATCH
            if row is not None and ts.value <= cache.get(row, "ts"):
                return cp.STATUS_TIMESTAMP_LOWER_THAN_PREV_ACCEPTED
            return None
        if row is not None and not serial_newer(pbu.message.sequence, cache.get(row, "seq")):
            return cp.STATUS_SEQUENCE_OUT_OF_WINDOW
        return None

    def _is_recovery(self, pbu: ProxyBindingUpdate) -> bool:
        """A PBU re-registering a session that should have been synced (spec-digest §8.5): it
        carries an LFI, or it is a re-registration (HI 5) from a MAG taken over."""
        return pbu.lfi is not None or (
            pbu.hi == cp.HI_NOT_CHANGED and self._ownership.is_recovered(pbu.proxy_coa)
        )

    def _new_session(self, pbu: ProxyBindingUpdate, now: float) -> None:
        """RFC 5213 §5.3.2: the requested prefixes if authorised (else 155), or one allocated
        for an ALL_ZERO HNP (none left: 130)."""
        explicit = pbu.explicit_prefixes()
        if explicit:
            networks = self._config.home_networks
            if not all(any(p.subnet_of(n) for n in networks) for p in explicit):
                self.reject(pbu, cp.STATUS_NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX, now)
                return
            keys = tuple(prefix_key(p) for p in explicit)
        else:
            key = self._state.pool.allocate()
            if key is None:
                self.reject(pbu, cp.STATUS_INSUFFICIENT_RESOURCES, now)
                return
            keys = (key,)
        mn = pbu.mn_id.identifier  # type: ignore[union-attr]
        row = self._state.cache.insert(
            mn,
            keys,
            pbu.ll_id,
            state=BceState.ACTIVE,
            proxy_coa=pbu.proxy_coa,
            anchor=self._config.address,
        )
        self._accept(pbu, row, now)

    def _accept(self, pbu: ProxyBindingUpdate, row: int, now: float) -> None:
        """Create, refresh (HI 5, same Proxy-CoA), hand off (new Proxy-CoA), revive or adopt a
        synced entry, and answer PBA 0."""
        state = self._state
        cache, tunnels = state.cache, state.tunnels
        msg = pbu.message
        mag = pbu.proxy_coa
        lla = cache.get(row, "lla")
        if pbu.lla is not None and lla == ALL_ZERO:
            lla = pbu.lla if pbu.lla != ALL_ZERO else _link_local(cache.mn_ids[row])
        expires = now + 4 * msg.lifetime
        cache.set(
            row,
            state=BceState.ACTIVE,
            anchor=self._config.address,
            flags=msg.flags,
            seq=msg.sequence,
            lifetime=msg.lifetime,
            expires=expires,
            ts=pbu.timestamp.value if pbu.timestamp is not None else 0,
            att=pbu.att,
            hi=pbu.hi,
            proxy_coa=mag,
            lla=lla,
            tunnel=tunnels.setdefault(mag.packed, len(tunnels) + 1),
        )
        state.expiry.push(row, expires)
        pba = build_pba(
            pbu,
            cp.STATUS_ACCEPTED,
            lifetime=msg.lifetime,
            prefixes=cache.prefixes(row),
            lla=lla,
        )
        self._sync_out.record_change(row, now, deleted=False, pba=self._pba_datagram(pbu, pba))

    def _deregister(self, pbu: ProxyBindingUpdate, row: int | None, now: float) -> None:
        """Lifetime 0: ignored unless it comes from the registered Proxy-CoA; the entry is kept
        MinDelayBeforeBCEDelete, and a valid PBU meanwhile revives it (§3.2)."""
        state = self._state
        cache = state.cache
        if row is None or cache.get(row, "proxy_coa") != pbu.proxy_coa:
            state.drop("deregistration_ignored")
            return
        msg = pbu.message
        expires = now + self._config.min_delay_before_bce_delete
        cache.set(
            row,
            state=BceState.DEREGISTERED,
            flags=msg.flags,
            seq=msg.sequence,
            lifetime=0,
            expires=expires,
            ts=pbu.timestamp.value if pbu.timestamp is not None else 0,
            hi=pbu.hi,
        )
        state.expiry.push(row, expires)
        lla = cache.get(row, "lla")
        pba = build_pba(pbu, cp.STATUS_ACCEPTED, prefixes=cache.prefixes(row), lla=lla)
        self._sync_out.record_change(row, now, deleted=True, pba=self._pba_datagram(pbu, pba))

    def reject(
        self,
        pbu: ProxyBindingUpdate,
        status: int,
        now: float,
        *,
        sequence: int | None = None,
        timestamp: Timestamp | None = None,
    ) -> None:
        pba = build_pba(pbu, status, sequence=sequence, timestamp=timestamp)
        self._state.out.extend([self._pba_datagram(pbu, pba)])

    def _pba_datagram(self, pbu: ProxyBindingUpdate, pba: Message) -> Datagram:
        self._state.counters.pba_status[pba.status] += 1  # type: ignore[attr-defined]
        return Datagram(encode_mh(pba, pbu.dst, pbu.src, self._state.wire), pbu.dst, pbu.src)

    def expire(self, now: float, row: int) -> None:
        """The end of a lifetime, or of MinDelayBeforeBCEDelete after a de-registration."""
        state = self._state
        bce_state = state.cache.state(row)
        if bce_state is BceState.ACTIVE:
            state.counters.bce_expired += 1
            self._sync_out.record_change(row, now, deleted=True, pba=None)
        if bce_state is not BceState.FREE:
            state.delete(row)


def _link_local(mn_id: bytes) -> IPv6Address:
    """A stable MAG link-local address for a session whose PBU asked for one (RFC 5213 §6.8)."""
    iid = int.from_bytes(hashlib.blake2b(mn_id, digest_size=8).digest(), "big") & ~(1 << 57)
    return IPv6Address((0xFE80 << 112) | iid)
