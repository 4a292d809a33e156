"""What the bulk codec takes and gives: the PBU option set, the State Synchronization batch, and
the dtypes of decoded columns. Shared by lmaload.bulk and its compiled twins in ext/, which import
this module rather than lmaload.bulk so that neither depends on the other being loaded first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmaload.wire import LmaFailureIndication

NO_MN_ID = 0xFFFFFFFF  # mn_id column of a decoded PBA whose NAI is no MN's
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3  # FNV-1a, 64 bits


@dataclass(frozen=True)
class NaiIndex:
    """Stored NAIs to their ``mn_id``, for a population whose NAIs are not ``mn{digits}@...``
    (``lmaload.bulk.nai_index``): entry ``k`` is the NAI ``blob[offsets[k]:offsets[k + 1]]`` of
    ``ids[k]``. ``slots`` (a power of two of them, at least twice the entries) is an open-addressing
    table: the FNV-1a hash of an NAI, masked, is its first slot, then the next ones in turn;
    each holds an entry or -1. A match is confirmed by comparing the octets."""

    blob: np.ndarray  # uint8
    offsets: np.ndarray  # int64
    ids: np.ndarray  # uint32
    slots: np.ndarray  # int64


@dataclass(frozen=True)
class PbuOptions:
    """The options of every PBU in a bulk batch, always in this order:
    HNP, MN-ID, [Timestamp], HI, ATT, [MN LL-ID], [Link-local Address], [IPv4 HoA Request],
    [IPv4 CoA], [LMA Failure Indication].

    - HNP is the row's prefix when ``request_prefix``, else ALL_ZERO ::/0 (the LMA assigns one).
    - Timestamp is the row's ``ts`` column; HI the row's ``hi``; ATT the row's ``att``.
    - MN LL-ID goes only into rows whose ``ll_len`` is non-zero.
    - The Link-local Address is ALL_ZERO (the MAG asks the LMA for one).
    - IPv4 HoA Request carries the row's ``ipv4_hoa`` (0.0.0.0: allocate), prefix length 0.
    - IPv4 CoA is the IPv4 address of the row's MAG.
    - ``lfi`` names the failed LMA, for failover PBUs to a standby.
    """

    timestamp: bool = True
    request_prefix: bool = False
    link_layer_id: bool = False
    link_local: bool = False
    ipv4_hoa_request: bool = False
    ipv4_coa: bool = False
    lfi: LmaFailureIndication | None = None


DEFAULT_PBU_OPTIONS = PbuOptions()


@dataclass(frozen=True)
class SyncBatch:
    """State Synchronization replies holding a run of sessions (``encode_state_sync``):
    message ``i`` carries sessions ``first[i]`` to ``first[i + 1] - 1`` of the selection."""

    buf: np.ndarray
    offsets: np.ndarray
    first: np.ndarray


# Decoded columns. ``error`` is 0 for a datagram that decoded as the expected message, 1 when
# the reference decoder raises WireError, 2 when it decoded as another message (or SS type).
# ``checksum_ok`` is 1/0, or -1 when the datagram had no IPv6 header to check it against.
DECODE_OK, DECODE_MALFORMED, DECODE_OTHER_MESSAGE = 0, 1, 2

PBA_DTYPE = np.dtype(
    [
        ("error", "u1"),
        ("checksum_ok", "i1"),
        ("status", "u1"),
        ("flags", "u1"),
        ("seq", "<u2"),
        ("lifetime", "<u2"),
        ("mn_id", "<u4"),  # from the first MN-ID option's NAI mn{digits}@...; else NO_MN_ID
        ("hnp", "u1", (16,)),  # first HNP option (zeros, length 0, when none)
        ("hnp_len", "u1"),
        ("has_ts", "u1"),
        ("ts", "<u8"),  # first Timestamp option
    ],
    align=False,
)
HEARTBEAT_DTYPE = np.dtype(
    [
        ("error", "u1"),
        ("checksum_ok", "i1"),
        ("flags", "u1"),
        ("seq", "<u4"),
        ("has_restart_counter", "u1"),
        ("restart_counter", "<u4"),  # first Restart Counter option
    ],
    align=False,
)
SS_ACK_DTYPE = np.dtype(
    [("error", "u1"), ("checksum_ok", "i1"), ("identifier", "<u2")], align=False
)

# One record per received datagram from lmaload._ext.lma_batch.scan_pbus, the LMA's fast lane.
# ``fast`` is 1 for a PBU the lane may take: the reference decodes it (decode_mh), its checksum
# verifies, the P flag is set, lifetime > 0, and its options (padding aside) are exactly one NAI
# MN-ID (non-empty), one HNP, one HI, one ATT, at most one Timestamp, at most one MN LL-ID and at
# most one LMA Failure Indication, in any order. Then every other field is what decode_mh and
# ProxyBindingUpdate.parse give; when ``fast`` is 0 the other fields mean nothing (the datagram
# goes to the reference path).
PBU_SCAN_DTYPE = np.dtype(
    [
        ("fast", "u1"),
        ("flags", "<u2"),  # the Binding Update flag word
        ("seq", "<u2"),
        ("lifetime", "<u2"),  # in 4-second units, as on the wire
        ("mn_start", "<i8"),  # the NAI (the MN-ID after its subtype octet): offset into buf
        ("mn_len", "<i2"),
        ("hnp", "u1", (16,)),  # the HNP with the bits beyond plen masked off
        ("plen", "u1"),
        ("hnp_zero", "u1"),  # 1: the HNP was ALL_ZERO ::/0 as sent
        ("hi", "u1"),
        ("att", "u1"),
        ("has_ts", "u1"),
        ("ts", "<u8"),  # the Timestamp option's value (48.16 fixed point)
        ("llid_start", "<i8"),  # the MN LL-ID's identifier (after its 2 reserved octets)
        ("llid_len", "<i2"),  # -1: no MN LL-ID option
        ("has_lfi", "u1"),  # 1: an LMA Failure Indication (a failover PBU, seed §6.2)
    ],
    align=False,
)

# One record per session of a State Synchronization Reply (lmaload._ext.sync_ingest.scan_ss_rep):
# the PBCI's fields and its MN options. ``ok`` is 0 for a session missing a mandatory MN option
# (MN-ID, HNP, ATT), which the standby drops, as ``SyncedSession.parse`` returns None.
SS_SESSION_DTYPE = np.dtype(
    [
        ("ok", "u1"),
        ("flags", "<u2"),
        ("seq", "<u2"),
        ("lifetime", "<u2"),  # remaining, 4-second units; 0: deleted
        ("tunnel", "<u4"),
        ("proxy_coa", "u1", (16,)),
        ("mn_start", "<i8"),  # the NAI, offset into the message
        ("mn_len", "<i2"),
        ("hnp", "u1", (16,)),
        ("plen", "u1"),
        ("att", "u1"),
        ("ts", "<u8"),  # 0: no Timestamp option
        ("llid_start", "<i8"),
        ("llid_len", "<i2"),  # -1: no MN LL-ID option
        ("has_lla", "u1"),
        ("lla", "u1", (16,)),
    ],
    align=False,
)
