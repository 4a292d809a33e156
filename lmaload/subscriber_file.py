"""The user's own subscriber list (``lmaload run --population FILE``): the file
``lmaload population`` writes, CSV with a header line or a JSON array of objects, read back into
the population a run emulates.

Each row is one MN: its MN-ID NAI (any shape, 1..254 octets so that the MN-ID option's data,
subtype included, fits in 255), its MN link-layer identifier (colon-separated hex, up to the
``ll_id`` column's 8 octets, empty for none), the HNP it requests (an IPv6 /64, empty to have the
LMA assign one) and its MAG's IPv6 Proxy-CoA (raw Mobility Header) and/or IPv4 address
(UDP/5436). Rows come in any order of MAG. The MAG table is the distinct MAGs sorted by address
(the order ``lmaload population`` numbers them in), and row ``i`` of the file has ``mn_id`` ``i``.
A bad row is a ``SubscriberFileError`` naming the file, its line and the reason.
"""

from __future__ import annotations

import csv
import functools
import json
import socket
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address, IPv6Address
from pathlib import Path

import numpy as np

from lmaload.population import (
    MAG_DTYPE,
    SUBSCRIBER_FIELDS,
    NaiColumn,
    Population,
    PopulationSpec,
    generate,
)

MAX_NAI = 254  # octets: the MN-ID option's data (subtype + NAI) is at most 255
MAX_LINK_LAYER_ID = 8  # octets: the ll_id column


class SubscriberFileError(ValueError):
    """A subscriber list that cannot be read: ``file:line: reason``."""


@dataclass(frozen=True)
class Row:
    nai: bytes
    ll_id: bytes
    hnp: bytes  # 16 octets, all zero: ask the LMA
    mag: tuple[bytes, bytes]  # (IPv6 Proxy-CoA, IPv4 address), zeros where not given


@dataclass(frozen=True)
class Subscribers:
    """A subscriber list: its rows in file order, and the MAG table (distinct MAGs by address)."""

    rows: list[Row]
    mags: np.ndarray  # MAG_DTYPE
    mag_of: np.ndarray  # row -> MAG table row

    def population(self, shard: tuple[int, int] = (0, 1)) -> Population:
        """Shard ``index`` of ``count``'s part: its contiguous slice of the MAG table and the
        MNs attached to those MAGs (``mn_id`` stays the file row). The columns the file does
        not give (access technology, timing) are those of a generated population of that
        size, seeded with the shard index, as ``lmaload run`` seeds its shards."""
        index, count = shard
        n_mags = len(self.mags)
        first, end = n_mags * index // count, n_mags * (index + 1) // count
        ids = np.flatnonzero((self.mag_of >= first) & (self.mag_of < end))
        pop = generate(PopulationSpec(mns=len(ids), mags=end - first, seed=index))
        mns = pop.mns
        mns["mn_id"] = ids
        mns["mag"] = self.mag_of[ids] - first
        rows = [self.rows[i] for i in ids.tolist()]
        mns["hnp"] = np.frombuffer(b"".join(r.hnp for r in rows), dtype=np.uint8).reshape(-1, 16)
        mns["hnp_len"] = [64 if any(r.hnp) else 0 for r in rows]
        mns["ll_len"] = [len(r.ll_id) for r in rows]
        mns["ll_id"] = np.frombuffer(
            b"".join(r.ll_id.ljust(MAX_LINK_LAYER_ID, b"\0") for r in rows), dtype=np.uint8
        ).reshape(-1, MAX_LINK_LAYER_ID)
        return Population(
            mns, self.mags[first:end].copy(), pop.realm, NaiColumn.of([r.nai for r in rows])
        )


def _ll_id(text: str) -> bytes:
    if not text:
        return b""
    parts = text.split(":")
    if len(parts) > MAX_LINK_LAYER_ID or not all(
        len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts
    ):
        raise ValueError(
            f"link_layer_id {text!r}: expected 1 to {MAX_LINK_LAYER_ID} hex octets separated by ':'"
        )
    return bytes(int(p, 16) for p in parts)


def _hnp(text: str) -> bytes:
    if not text:
        return bytes(16)
    address, _, length = text.partition("/")
    try:  # inet_pton: ipaddress takes ten times as long, for a column of distinct values
        packed = socket.inet_pton(socket.AF_INET6, address)
    except OSError:
        packed = b""
    if length != "64" or len(packed) != 16 or any(packed[8:]):
        raise ValueError(f"hnp {text!r}: expected an IPv6 /64 prefix (or empty: the LMA assigns)")
    return packed


@functools.cache  # MAGs repeat row after row
def _mag(addr6: str, addr4: str) -> tuple[bytes, bytes]:
    if not addr6 and not addr4:
        raise ValueError("no MAG address: give mag (IPv6) or mag_ipv4 or both")
    try:
        six = IPv6Address(addr6).packed if addr6 else bytes(16)
    except AddressValueError:
        raise ValueError(f"mag {addr6!r}: not an IPv6 address") from None
    try:
        four = IPv4Address(addr4).packed if addr4 else bytes(4)
    except AddressValueError:
        raise ValueError(f"mag_ipv4 {addr4!r}: not an IPv4 address") from None
    return six, four


def _row(fields: object) -> Row:
    """One row from its fields (a dict of strings); ValueError with the reason."""
    if not isinstance(fields, dict):
        raise ValueError("expected an object with " + ", ".join(SUBSCRIBER_FIELDS))
    values = {f: fields.get(f) or "" for f in SUBSCRIBER_FIELDS}
    bad = [f for f, v in values.items() if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{bad[0]}: expected a string")
    nai = values["nai"].encode()
    if not 1 <= len(nai) <= MAX_NAI:
        raise ValueError(f"nai is {len(nai)} octets: an MN-ID option holds 1 to {MAX_NAI}")
    return Row(
        nai,
        _ll_id(values["link_layer_id"]),
        _hnp(values["hnp"]),
        _mag(values["mag"], values["mag_ipv4"]),
    )


def _csv_records(text: str, name: str) -> list[tuple[int, object]]:
    reader = csv.DictReader(text.splitlines(keepends=True))
    header = reader.fieldnames or []
    if "nai" not in header or not {"mag", "mag_ipv4"} & set(header):
        raise SubscriberFileError(
            f"{name}:1: header {','.join(header)!r}: expected {','.join(SUBSCRIBER_FIELDS)}"
        )
    out: list[tuple[int, object]] = []
    for fields in reader:
        if None in fields:
            raise SubscriberFileError(f"{name}:{reader.line_num}: more fields than the header")
        out.append((reader.line_num, fields))
    return out


def _json_records(text: str, name: str) -> list[tuple[int, object]]:
    """The array's elements with the line each starts on."""
    decoder = json.JSONDecoder()
    out: list[tuple[int, object]] = []
    try:
        pos = text.index("[") + 1
        while True:
            while text[pos : pos + 1].isspace():
                pos += 1
            if text[pos : pos + 1] == "]" and not out:
                break
            value, end = decoder.raw_decode(text, pos)
            out.append((text.count("\n", 0, pos) + 1, value))
            while text[end : end + 1].isspace():
                end += 1
            if text[end : end + 1] == "]":
                break
            if text[end : end + 1] != ",":
                raise json.JSONDecodeError("expected ',' or ']'", text, end)
            pos = end + 1
    except json.JSONDecodeError as exc:
        raise SubscriberFileError(f"{name}:{exc.lineno}: not JSON: {exc.msg}") from None
    return out


def read_subscribers(path: Path) -> Subscribers:
    """The subscriber list in ``path`` (CSV or JSON, told by its first character)."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SubscriberFileError(f"{name}: cannot read: {exc}") from None
    records = (_json_records if text.lstrip()[:1] == "[" else _csv_records)(text, name)
    if not records:
        raise SubscriberFileError(f"{name}: no subscribers")
    rows: list[Row] = []
    seen: dict[bytes, int] = {}
    mags6: dict[bytes, tuple[bytes, int]] = {}
    mags4: dict[bytes, tuple[bytes, int]] = {}
    for line, fields in records:
        try:
            row = _row(fields)
            if row.nai in seen:
                raise ValueError(f"nai {row.nai.decode()!r} repeats line {seen[row.nai]}")
            for key, other, table in ((0, 1, mags6), (1, 0, mags4)):
                address = row.mag[key]
                if (
                    any(address)
                    and table.setdefault(address, (row.mag[other], line))[0] != row.mag[other]
                ):
                    raise ValueError(
                        f"MAG {_address(address)} is given with {_address(table[address][0])} "
                        f"on line {table[address][1]}, {_address(row.mag[other])} here"
                    )
        except ValueError as exc:
            raise SubscriberFileError(f"{name}:{line}: {exc}") from None
        seen[row.nai] = line
        rows.append(row)
    keys = sorted({r.mag for r in rows})
    index = {key: i for i, key in enumerate(keys)}
    mags = np.zeros(len(keys), dtype=MAG_DTYPE)
    mags["addr6"] = np.frombuffer(b"".join(k[0] for k in keys), dtype=np.uint8).reshape(-1, 16)
    mags["addr4"] = np.frombuffer(b"".join(k[1] for k in keys), dtype=np.uint8).reshape(-1, 4)
    mag_of = np.array([index[r.mag] for r in rows], dtype=np.int64)
    return Subscribers(rows, mags, mag_of)


def _address(packed: bytes) -> str:
    if not any(packed):
        return "no address"
    return str(IPv6Address(packed) if len(packed) == 16 else IPv4Address(packed))
