"""Sans-IO protocol engines: time is an argument, datagrams go in and out in batches.

``LmaEngine`` is the reference LMA (RFC 5213 + RFC 5847 + the redundancy of
draft-wakikawa-netext-lma-reliability-00), configured by ``LmaConfig``. ``Endpoint`` is what a
driver may do with an engine (``LmaEngine``, ``MagEngine``).
"""

from lmaload.protocol.binding_cache import BceState, BindingCache
from lmaload.protocol.config import LmaConfig, Policy
from lmaload.protocol.datagrams import Datagram, Datagrams
from lmaload.protocol.endpoint import Endpoint, LmaEndpoint
from lmaload.protocol.events import Counters, Event, Role
from lmaload.protocol.lma import LmaEngine

__all__ = [
    "BceState",
    "BindingCache",
    "Counters",
    "Datagram",
    "Datagrams",
    "Endpoint",
    "Event",
    "LmaConfig",
    "LmaEndpoint",
    "LmaEngine",
    "Policy",
    "Role",
]
