"""The reference LMA: ``LmaEngine`` (``engine``) and the parts it is made of — PBU processing
(``pbu``), heartbeats, HA-HELLO and the election (``heartbeat``), the per-MAG takeover
(``takeover``), State Sync out and in (``sync_out``, ``sync_in``), the compiled fast lane
(``fast_lane``), and the state they share (``state``, ``ownership``)."""

from lmaload.protocol.lma.engine import LmaEngine

__all__ = ["LmaEngine"]
