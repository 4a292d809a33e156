"""Plain-data views of decoded messages: JSON-ready dicts for ``lmaload decode --json`` and the
one-line-per-item text rendering of the same dicts.

Fixed fields keep their snake_case dataclass names and raw wire values; derived readings sit
beside them (``lifetime_seconds``, ``flag_names``, ``status_name``), never instead of them, except
where a combined form reads better (``prefix`` as "addr/len", ``timestamp`` as Unix seconds).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from lmaload.wire import codepoints as cp
from lmaload.wire import messages as m
from lmaload.wire import options as o
from lmaload.wire.codepoints import WireConfig
from lmaload.wire.ipv6 import DecodedPacket

LIFETIME_UNIT_SECONDS = 4
MAX_DATETIME_SECONDS = 253402300799  # 9999-12-31T23:59:59Z

_FLAG_NAMES: dict[type, dict[int, str]] = {
    m.BindingUpdate: cp.BU_FLAG_NAMES,
    m.BindingAck: cp.BA_FLAG_NAMES,
    m.Heartbeat: cp.HB_FLAG_NAMES,
    m.HomeAgentSwitch: cp.HAS_FLAG_NAMES,
    m.StateSync: cp.SS_FLAG_NAMES,
    m.HomeAgentHello: cp.HELLO_FLAG_NAMES,
    o.BindingCacheInformation: cp.BU_FLAG_NAMES,
    o.ProxyBindingCacheInformation: cp.BU_FLAG_NAMES,
}
_STATUS_NAMES: dict[type, dict[int, str]] = {
    m.BindingAck: cp.BA_STATUS_NAMES,
    m.BindingError: cp.BE_STATUS_NAMES,
    m.HomeAgentControl: cp.HAC_STATUS_NAMES,
    o.IPv4HomeAddressReply: cp.IPV4_HOA_REPLY_STATUS_NAMES,
}
_LIFETIME_IN_UNITS = (
    m.BindingUpdate,
    m.BindingAck,
    o.BindingCacheInformation,
    o.ProxyBindingCacheInformation,
)


def _plain(value: Any) -> Any:
    if isinstance(value, IPv4Address | IPv6Address):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _fields(obj: Any) -> dict[str, Any]:
    out = {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    kind = type(obj)
    if kind in _FLAG_NAMES:
        names = _FLAG_NAMES[kind]
        out["flag_names"] = [name for bit, name in names.items() if obj.flags & bit]
    if kind in _STATUS_NAMES:
        out["status_name"] = _STATUS_NAMES[kind].get(obj.status, "UNKNOWN")
    if isinstance(obj, _LIFETIME_IN_UNITS):
        out["lifetime_seconds"] = obj.lifetime * LIFETIME_UNIT_SECONDS
    return out


def _nai_text(identifier: bytes) -> str | None:
    try:
        text = identifier.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _utc(value: int) -> str | None:
    """ISO 8601 UTC of a 48.16 timestamp, or None past the year 9999."""
    seconds = value >> 16
    if seconds > MAX_DATETIME_SECONDS:
        return None
    fraction = f"{(value & 0xFFFF) / 65536:.6f}".rstrip("0").rstrip(".")[1:]
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def describe_option(opt: o.Option, config: WireConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"type": opt.type_code(config), "name": opt.NAME}
    fields = _fields(opt)
    if isinstance(opt, o.HomeNetworkPrefix):
        fields = {"prefix": f"{opt.prefix}/{opt.prefix_length}"}
    elif isinstance(opt, o.MobileNodeIdentifier):
        text = _nai_text(opt.identifier) if opt.subtype == cp.MNID_SUBTYPE_NAI else None
        fields["identifier"] = text if text is not None else opt.identifier.hex()
        fields["identifier_encoding"] = "text" if text is not None else "hex"
    elif isinstance(opt, o.Timestamp):
        fields = {"timestamp": opt.seconds, "utc": _utc(opt.value)}
    elif isinstance(opt, o.HandoffIndicator):
        fields["meaning"] = cp.HI_NAMES.get(opt.value, "reserved")
    elif isinstance(opt, o.AccessTechnologyType):
        fields["meaning"] = cp.ATT_NAMES.get(opt.value, "unassigned")
    elif isinstance(opt, o.UnknownOption):
        del fields["type"]
    out.update(fields)
    return out


def describe_message(message: m.Message, config: WireConfig) -> dict[str, Any]:
    """The message's fields and its options as they were on the wire: a Home Agent Control's
    MAG address is the ``mag_address`` field only in the literal form (seed Figure 6); in the
    option form it is listed first among the options, as it was carried."""
    out: dict[str, Any] = {"mh_type": message.type_code(config), "name": message.name}
    fields = _fields(message)
    fields.pop("options")
    options = message.options
    if isinstance(message, m.HomeAgentControl) and config.hac_mag_encoding == "option":
        fields.pop("mag_address")
        if message.mag_address is not None:
            options = (o.MagAddress(message.mag_address), *options)
    if isinstance(message, m.StateSync):
        fields["ss_type_name"] = cp.SS_TYPE_NAMES.get(message.ss_type, "unknown")
    elif isinstance(message, m.HomeAgentControl):
        fields["hac_type_name"] = cp.HAC_TYPE_NAMES.get(message.hac_type, "unknown")
    elif isinstance(message, m.Heartbeat):
        fields["response"] = message.is_response
    elif isinstance(message, m.UnknownMessage):
        del fields["mh_type"]
    out.update(fields)
    out["options"] = [describe_option(opt, config) for opt in options]
    return out


def describe_packet(packet: DecodedPacket, config: WireConfig) -> dict[str, Any]:
    """Message fields first, then the MH framing: length, checksum and whether it verifies."""
    out = describe_message(packet.mh.message, config)
    options = out.pop("options")
    out["length"] = packet.mh.length
    out["checksum"] = packet.mh.checksum
    if packet.mh.checksum_ok is not None:
        out["checksum_ok"] = packet.mh.checksum_ok
    if packet.src is not None:
        out["src"] = str(packet.src)
        out["dst"] = str(packet.dst)
    out["options"] = options
    return out


def _text_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + " ".join(_text_value(v) for v in value) + "]"
    return str(value)


def _text_fields(d: dict[str, Any], skip: set[str]) -> str:
    return " ".join(
        f"{k}=0x{v:x}" if k == "flags" else f"{k}={_text_value(v)}"
        for k, v in d.items()
        if k not in skip
    )


def format_text(described: dict[str, Any]) -> str:
    """A header line for the message, then one indented line per option."""
    check = {True: " ok", False: " BAD"}.get(described.get("checksum_ok"), "")
    head = (
        f"{described['name']} (MH {described['mh_type']}), {described['length']} octets, "
        f"checksum 0x{described['checksum']:04x}{check}"
    )
    skip = {"mh_type", "name", "length", "checksum", "checksum_ok", "options"}
    skip |= {"frame", "time", "transport"}  # capture metadata, shown by the caller
    lines = [f"{head}: {_text_fields(described, skip)}"]
    for opt in described["options"]:
        lines.append(f"    {opt['name']} ({opt['type']}): {_text_fields(opt, {'type', 'name'})}")
    return "\n".join(lines)
