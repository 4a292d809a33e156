"""Bulk codec API over the population: many messages per call, into one contiguous buffer plus an
offsets array (message ``i`` is ``buf[offsets[i]:offsets[i + 1]]``), and batches of received
datagrams decoded into numpy columns.

Each function has a pure-Python twin (prefix ``py_``) built on the reference codec in
``lmaload.wire``; it defines what the compiled version in ``lmaload._ext.bulk`` must produce
octet for octet, and is what the tests and the benchmark compare it with. The public names use
the compiled version when it is built, the twin otherwise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import numpy as np

from lmaload.bulk_types import (
    DECODE_MALFORMED,
    DECODE_OK,
    DECODE_OTHER_MESSAGE,
    DEFAULT_PBU_OPTIONS,
    FNV_OFFSET,
    FNV_PRIME,
    HEARTBEAT_DTYPE,
    NO_MN_ID,
    PBA_DTYPE,
    SS_ACK_DTYPE,
    NaiIndex,
    PbuOptions,
    SyncBatch,
)
from lmaload.population import NaiColumn, Population
from lmaload.wire import (
    AccessTechnologyType,
    BindingAck,
    BindingUpdate,
    HandoffIndicator,
    Heartbeat,
    HomeNetworkPrefix,
    IPv4CareOfAddress,
    IPv4HomeAddressRequest,
    LinkLocalAddress,
    Message,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    Option,
    ProxyBindingCacheInformation,
    RestartCounter,
    StateSync,
    Timestamp,
    WireConfig,
    WireError,
    decode_datagram,
    encode_mh,
)
from lmaload.wire import codepoints as cp
from lmaload.wire.codepoints import DEFAULT_CONFIG
from lmaload.wire.ipv6 import IPV6_HEADER_LENGTH
from lmaload.wire.messages import pack_sessions

ALL_ZERO = IPv6Address(0)


def pbu_message(
    pop: Population, row: int, flags: int, lifetime: int, options: PbuOptions
) -> BindingUpdate:
    """The reference PBU for one row (sequence, timestamp, HI from the row's columns)."""
    mn = pop.mns[row]
    prefix, length = pop.prefix(row) if options.request_prefix else (ALL_ZERO, 0)
    opts: list[Option] = [HomeNetworkPrefix(prefix, length), MobileNodeIdentifier(pop.nai(row))]
    if options.timestamp:
        opts.append(Timestamp(int(mn["ts"])))
    opts += [HandoffIndicator(int(mn["hi"])), AccessTechnologyType(int(mn["att"]))]
    if options.link_layer_id and mn["ll_len"]:
        opts.append(MobileNodeLinkLayerIdentifier(mn["ll_id"][: mn["ll_len"]].tobytes()))
    if options.link_local:
        opts.append(LinkLocalAddress(ALL_ZERO))
    if options.ipv4_hoa_request:
        opts.append(IPv4HomeAddressRequest(IPv4Address(mn["ipv4_hoa"].tobytes()), 0))
    if options.ipv4_coa:
        opts.append(IPv4CareOfAddress(pop.mag_address4(int(mn["mag"]))))
    if options.lfi is not None:
        opts.append(options.lfi)
    return BindingUpdate(int(mn["seq"]), lifetime, flags, tuple(opts))


def _pack(messages: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(messages) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(m) for m in messages])
    return np.frombuffer(b"".join(messages), dtype=np.uint8).copy(), offsets


def py_encode_pbus(
    pop: Population,
    rows: np.ndarray,
    lma: IPv6Address,
    flags: int = cp.PBU_DEFAULT_FLAGS,
    lifetime: int = 0,
    options: PbuOptions = DEFAULT_PBU_OPTIONS,
    config: WireConfig = DEFAULT_CONFIG,
) -> tuple[np.ndarray, np.ndarray]:
    """One PBU per selected row, from the row's MAG Proxy-CoA to ``lma``, checksum filled
    (``config`` gives the LMA Failure Indication's type code)."""
    return _pack(
        [
            encode_mh(
                pbu_message(pop, int(row), flags, lifetime, options),
                pop.mag_address6(int(pop.mns["mag"][row])),
                lma,
                config,
            )
            for row in rows
        ]
    )


def py_encode_heartbeats(
    pop: Population, mags: np.ndarray, lmas: np.ndarray, sequences: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Heartbeat requests from MAG ``mags[i]`` to the LMA whose address is ``lmas[i]`` (a row of
    a (n, 16) uint8 array) with sequence number ``sequences[i]``."""
    return _pack(
        [
            encode_mh(Heartbeat(int(seq)), pop.mag_address6(int(mag)), IPv6Address(lma.tobytes()))
            for mag, lma, seq in zip(mags, lmas, sequences, strict=True)
        ]
    )


def sync_session_options(
    pop: Population,
    row: int,
    flags: int,
    lifetime: int,
    tunnel_interface_id: int,
    timestamp: bool,
) -> tuple[Option, ...]:
    """One session of an SS-REP (spec-digest §8.1): PBCI, then MN-ID, HNP, [Timestamp], ATT,
    [MN LL-ID when the row has one]. The PBCI's sequence is the row's ``seq``, its Proxy-CoA
    the row's MAG, its lifetime ``lifetime`` (remaining, 4-s units; 0 = deleted)."""
    mn = pop.mns[row]
    prefix, length = pop.prefix(row)
    opts: list[Option] = [
        ProxyBindingCacheInformation(
            flags, int(mn["seq"]), lifetime, tunnel_interface_id, pop.mag_address6(int(mn["mag"]))
        ),
        MobileNodeIdentifier(pop.nai(row)),
        HomeNetworkPrefix(prefix, length),
    ]
    if timestamp:
        opts.append(Timestamp(int(mn["ts"])))
    opts.append(AccessTechnologyType(int(mn["att"])))
    if mn["ll_len"]:
        opts.append(MobileNodeLinkLayerIdentifier(mn["ll_id"][: mn["ll_len"]].tobytes()))
    return tuple(opts)


def sync_identifier(identifier: int, k: int, step: int) -> int:
    """Identifier of the ``k``-th SS-REP of a batch: ``identifier`` when ``step`` is 0, else
    ``identifier + k * step`` counted through 1..65535, never 0 (an SS-ACK cannot match 0, R14)."""
    if step == 0:
        return identifier & 0xFFFF
    return (identifier - 1 + k * step) % 0xFFFF + 1


def py_encode_state_sync(
    pop: Population,
    rows: np.ndarray,
    src: IPv6Address,
    dst: IPv6Address,
    identifier: int,
    identifier_step: int = 0,
    ack: bool = False,
    flags: int = cp.PBU_DEFAULT_FLAGS,
    lifetimes: np.ndarray | None = None,
    tunnel_interface_ids: np.ndarray | None = None,
    timestamp: bool = True,
    max_length: int = cp.MH_MAX_LENGTH,
    config: WireConfig = DEFAULT_CONFIG,
) -> SyncBatch:
    """SS-REPs carrying the sessions of ``rows`` in order, each message filled greedily up to
    ``max_length`` octets; M on all but the last message, A when ``ack``. With
    ``identifier_step`` 0 every message has Identifier ``identifier`` (the parts of one
    solicited reply); otherwise message ``k`` has ``sync_identifier(identifier, k, step)``, a
    counter that skips 0 so each acknowledged message can be matched (R14). Per session: lifetime
    ``lifetimes[i]`` (the remaining lifetime, R6; default the row's ``lifetime`` column) and
    tunnel id (default 0)."""
    if not (0 <= identifier <= 0xFFFF and 0 <= identifier_step <= 0xFFFF):
        raise ValueError("identifier and identifier_step are 16-bit values")
    sessions = [
        sync_session_options(
            pop,
            int(row),
            flags,
            int(lifetimes[i]) if lifetimes is not None else int(pop.mns["lifetime"][row]),
            int(tunnel_interface_ids[i]) if tunnel_interface_ids is not None else 0,
            timestamp,
        )
        for i, row in enumerate(rows)
    ]

    def message(k: int, opts: tuple[Option, ...], more: bool) -> StateSync:
        bits = (cp.SS_FLAG_A if ack else 0) | (cp.SS_FLAG_M if more else 0)
        return StateSync(cp.SS_REPLY, sync_identifier(identifier, k, identifier_step), bits, opts)

    for i, session in enumerate(sessions):
        try:
            alone = len(encode_mh(message(0, tuple(session), True), config=config))
        except ValueError:  # an option over 255 octets, or over the 2048-octet MH limit
            alone = max_length + 1
        if alone > max_length:
            raise ValueError(f"session of row {int(rows[i])} alone exceeds {max_length} octets")
    limit = min(max_length, cp.MH_MAX_LENGTH)
    groups = pack_sessions([], [list(s) for s in sessions], limit) if sessions else []
    encoded = [
        encode_mh(message(k, tuple(opts), k < len(groups) - 1), src, dst, config)
        for k, (opts, _) in enumerate(groups)
    ]
    buf, offsets = _pack(encoded)
    first = np.array([carried[0] for _, carried in groups] + [len(sessions)], dtype=np.int64)
    return SyncBatch(buf, offsets, first)


def _mn_id_from_nai(identifier: bytes) -> int:
    """The id of an NAI ``mn{digits}@...`` (ASCII digits without leading zeros, below NO_MN_ID,
    2^32 - 1); else NO_MN_ID."""
    head, at, _ = identifier.partition(b"@")
    digits = head[2:]
    if (
        not at
        or not head.startswith(b"mn")
        or not digits.isdigit()
        or (len(digits) > 1 and digits[0:1] == b"0")
        or int(digits) >= NO_MN_ID
    ):
        return NO_MN_ID
    return int(digits)


def _nai_hash(nai: bytes) -> int:
    h = FNV_OFFSET
    for octet in nai:
        h = ((h ^ octet) * FNV_PRIME) & 0xFFFF_FFFF_FFFF_FFFF
    return h


def py_nai_slots(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """NaiIndex.slots for the NAIs ``blob[offsets[k]:offsets[k + 1]]``: entries inserted in
    order, each in the first free slot from its hash's."""
    n = len(offsets) - 1
    size = 2
    while size < 2 * n:
        size *= 2
    slots = np.full(size, -1, dtype=np.int64)
    data = blob.tobytes()
    for k in range(n):
        i = _nai_hash(data[offsets[k] : offsets[k + 1]]) & (size - 1)
        while slots[i] >= 0:
            i = (i + 1) & (size - 1)
        slots[i] = k
    return slots


def nai_lookup(index: NaiIndex, nai: bytes) -> int:
    """The mn_id of ``nai`` in ``index``, NO_MN_ID for none."""
    mask = len(index.slots) - 1
    i = _nai_hash(nai) & mask
    while (k := int(index.slots[i])) >= 0:
        if index.blob[index.offsets[k] : index.offsets[k + 1]].tobytes() == nai:
            return int(index.ids[k])
        i = (i + 1) & mask
    return NO_MN_ID


def nai_index(nais: NaiColumn, ids: np.ndarray) -> NaiIndex:
    """The index of a population's stored NAIs (row ``k``'s NAI to ``ids[k]``, its mn_id)."""
    return NaiIndex(
        nais.blob, nais.offsets, ids.astype(np.uint32), nai_slots(nais.blob, nais.offsets)
    )


def _decode_batch(
    buf: np.ndarray,
    offsets: np.ndarray,
    framing: str,
    config: WireConfig,
    dtype: np.dtype,
    wanted: Callable[[Message], bool],
    fill: Callable[[np.ndarray, Message], None],
) -> np.ndarray:
    """Reference decode of each datagram into a ``dtype`` record: ``error`` and ``checksum_ok``
    here, the message's own columns by ``fill`` when it is a ``wanted`` message."""
    if framing not in ("ipv6", "mh"):
        raise ValueError("framing is 'ipv6' (inner IPv6 header, RFC 5844) or 'mh' (bare)")
    data = buf.tobytes()
    out = np.zeros(len(offsets) - 1, dtype=dtype)
    for i in range(len(out)):
        datagram = data[offsets[i] : offsets[i + 1]]
        rec = out[i : i + 1]
        framed = (
            len(datagram) >= IPV6_HEADER_LENGTH and datagram[0] >> 4 == 6
            if framing == "ipv6"
            else datagram[:1] == bytes([cp.PAYLOAD_PROTO_NONE])
        )
        try:
            if not framed:
                raise WireError(0, f"not a datagram of {framing} framing")
            packet = decode_datagram(datagram, config=config)
        except WireError:
            rec["error"] = DECODE_MALFORMED
            continue
        rec["checksum_ok"] = -1 if packet.mh.checksum_ok is None else int(packet.mh.checksum_ok)
        if wanted(packet.mh.message):
            fill(rec, packet.mh.message)
        else:
            rec["error"] = DECODE_OTHER_MESSAGE
    return out


def _first(options: tuple[Option, ...], kind: type[Option]) -> Option | None:
    return next((o for o in options if isinstance(o, kind)), None)


def _fill_pba(rec: np.ndarray, msg: BindingAck, nais: NaiIndex | None) -> None:
    rec["status"], rec["flags"], rec["seq"], rec["lifetime"] = (
        msg.status,
        msg.flags,
        msg.sequence,
        msg.lifetime,
    )
    mnid = _first(msg.options, MobileNodeIdentifier)
    nai = mnid is not None and mnid.subtype == cp.MNID_SUBTYPE_NAI
    if not nai:
        rec["mn_id"] = NO_MN_ID
    elif nais is not None:
        rec["mn_id"] = nai_lookup(nais, mnid.identifier)
    else:
        rec["mn_id"] = _mn_id_from_nai(mnid.identifier)
    hnp = _first(msg.options, HomeNetworkPrefix)
    if hnp is not None:
        rec["hnp"] = np.frombuffer(hnp.prefix.packed, dtype=np.uint8)
        rec["hnp_len"] = hnp.prefix_length
    ts = _first(msg.options, Timestamp)
    if ts is not None:
        rec["has_ts"], rec["ts"] = 1, ts.value


def py_decode_pbas(
    buf: np.ndarray,
    offsets: np.ndarray,
    framing: str = "ipv6",
    config: WireConfig = DEFAULT_CONFIG,
    nais: NaiIndex | None = None,
) -> np.ndarray:
    """PBA_DTYPE columns for a batch of received datagrams: ``framing`` "ipv6" for datagrams
    that start with the RFC 5844 inner IPv6 header, "mh" for bare Mobility Headers; ``nais``
    gives the ``mn_id`` of a stored NAI, else an NAI is mn{digits}@..."""
    out = _decode_batch(
        buf,
        offsets,
        framing,
        config,
        PBA_DTYPE,
        lambda m: isinstance(m, BindingAck),
        lambda rec, m: _fill_pba(rec, m, nais),
    )
    out["mn_id"][out["error"] != DECODE_OK] = NO_MN_ID
    return out


def _fill_heartbeat(rec: np.ndarray, msg: Heartbeat) -> None:
    rec["flags"], rec["seq"] = msg.flags, msg.sequence
    counter = _first(msg.options, RestartCounter)
    if counter is not None:
        rec["has_restart_counter"], rec["restart_counter"] = 1, counter.counter


def py_decode_heartbeats(
    buf: np.ndarray, offsets: np.ndarray, framing: str = "ipv6", config: WireConfig = DEFAULT_CONFIG
) -> np.ndarray:
    """HEARTBEAT_DTYPE columns for a batch of received datagrams."""
    return _decode_batch(
        buf,
        offsets,
        framing,
        config,
        HEARTBEAT_DTYPE,
        lambda m: isinstance(m, Heartbeat),
        _fill_heartbeat,
    )


def _fill_ss_ack(rec: np.ndarray, msg: StateSync) -> None:
    rec["identifier"] = msg.identifier


def py_decode_ss_acks(
    buf: np.ndarray, offsets: np.ndarray, framing: str = "ipv6", config: WireConfig = DEFAULT_CONFIG
) -> np.ndarray:
    """SS_ACK_DTYPE columns for a batch of received datagrams (SS-REQ/REP count as other)."""
    return _decode_batch(
        buf,
        offsets,
        framing,
        config,
        SS_ACK_DTYPE,
        lambda m: isinstance(m, StateSync) and m.ss_type == cp.SS_ACK,
        _fill_ss_ack,
    )


def _compiled(module: str, name: str, reference: Callable) -> Callable:
    """``lmaload._ext.<module>.<name>`` when built, else the reference twin."""
    try:
        compiled = importlib.import_module(f"lmaload._ext.{module}")
    except ImportError:
        return reference
    return getattr(compiled, name)


nai_slots = _compiled("bulk", "nai_slots", py_nai_slots)
encode_pbus = _compiled("bulk", "encode_pbus", py_encode_pbus)
encode_heartbeats = _compiled("bulk", "encode_heartbeats", py_encode_heartbeats)
decode_pbas = _compiled("bulk", "decode_pbas", py_decode_pbas)
decode_heartbeats = _compiled("bulk", "decode_heartbeats", py_decode_heartbeats)
decode_ss_acks = _compiled("bulk", "decode_ss_acks", py_decode_ss_acks)
encode_state_sync = _compiled("sync", "encode_state_sync", py_encode_state_sync)
