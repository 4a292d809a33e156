"""Which received PBUs an overloaded LMA drops unanswered (the README's "Overload"): the
reference definition, which ``lmaload._ext.lma_step.shed_marks`` computes from scan records.

Within one received batch, from the last datagram back, a PBU (a Binding Update with P and an
MN-ID, checksum not wrong) is shed

- every one of them, while the backlog of withheld PBAs or unacknowledged SS-REPs is at its
  bound (``backlog``, BACKLOG);
- when it waited longer than ``LmaConfig.pbu_max_delay`` between its arrival (the kernel's
  receive time) and ``now`` (STALE): its MAG has retransmitted it, or is about to;
- when a later PBU of the same batch is for the same mobile node interface — source,
  destination, ATT, MN LL-ID and MN-ID — (SUPERSEDED): the MAG's retransmission with a new
  sequence number, whose answer is the one it waits for.

Shed PBUs are counted (``Counters.pbu_shed``), not answered: the MAG retransmits with its
RFC 5213 back-off.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lmaload.protocol.datagrams import Datagram
from lmaload.wire import (
    AccessTechnologyType,
    BindingUpdate,
    MobileNodeIdentifier,
    MobileNodeLinkLayerIdentifier,
    WireConfig,
    WireError,
    decode_mh,
)
from lmaload.wire import codepoints as cp

KEEP, STALE, SUPERSEDED, BACKLOG = 0, 1, 2, 3  # as lmaload._ext.lma_step
REASONS = {STALE: "stale", SUPERSEDED: "superseded", BACKLOG: "backlog"}


def key(datagram: Datagram, wire: WireConfig) -> tuple | None:
    """The mobile node interface a PBU is for, None for anything else."""
    data, src, dst, _ = datagram
    if len(data) < 3 or data[2] != cp.MH_BINDING_UPDATE:
        return None
    try:
        decoded = decode_mh(data, src, dst, wire)
    except WireError:
        return None
    msg = decoded.message
    if decoded.checksum_ok is False or not isinstance(msg, BindingUpdate):
        return None
    if not msg.flags & cp.BU_FLAG_P:
        return None
    mn = llid = att = None
    for option in msg.options:
        if isinstance(option, MobileNodeIdentifier) and mn is None:
            mn = (option.subtype, option.identifier)
        elif isinstance(option, MobileNodeLinkLayerIdentifier) and llid is None:
            llid = option.identifier
        elif isinstance(option, AccessTechnologyType) and att is None:
            att = option.value
    if mn is None:
        return None
    return (src, dst, att, llid, mn)


def marks(
    datagrams: Sequence[Datagram],
    now: float,
    max_delay: float,
    supersede: bool,
    backlog: bool,
    wire: WireConfig,
) -> list[int]:
    """KEEP or the reason to shed, for each datagram of one batch (see the module docstring)."""
    out = [KEEP] * len(datagrams)
    seen: set[tuple] = set()
    for i in range(len(datagrams) - 1, -1, -1):
        datagram = datagrams[i]
        k = key(datagram, wire)
        if k is None:
            continue
        arrival = datagram.arrival
        if backlog:
            out[i] = BACKLOG
        elif arrival is not None and not math.isnan(arrival) and now - arrival > max_delay:
            out[i] = STALE
        elif supersede:
            if k in seen:
                out[i] = SUPERSEDED
            else:
                seen.add(k)
    return out
