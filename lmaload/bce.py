"""A binding cache entry's row layout (``BCE_DTYPE``) and states, apart from
``lmaload.protocol.binding_cache`` so that the compiled modules reading and writing rows
(``ext/lane.pyx``, ``ext/bce_sync.pyx``, ``ext/binding_cache.pxi`` mirrors the layout) import it
without loading the protocol package, which imports them."""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class BceState(IntEnum):
    FREE = 0
    ACTIVE = 1
    DEREGISTERED = 2
    SYNCED = 3
    MOVED = 4


BCE_DTYPE = np.dtype(
    [
        ("state", "u1"),
        ("flags", "<u2"),  # flag word of the last accepted PBU
        ("seq", "<u2"),  # sequence number of the last accepted PBU
        ("lifetime", "<u2"),  # granted lifetime, 4-second units
        ("expires", "<f8"),  # end of the lifetime; for DEREGISTERED the deletion time
        ("ts", "<u8"),  # last accepted Timestamp option (48.16), 0 under the sequence scheme
        ("att", "u1"),
        ("hi", "u1"),  # handoff indicator of the last accepted PBU
        ("tunnel", "<u4"),  # tunnel interface id (local, opaque, R4)
        ("proxy_coa", "u1", (16,)),
        ("lla", "u1", (16,)),  # MAG link-local address (all zero: none)
        ("anchor", "u1", (16,)),  # address of the LMA serving the session
    ],
    align=False,
)
