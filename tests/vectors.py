"""The spec's test vectors (copied from ../shared/spec into tests/data) and helpers for them."""

import json
from ipaddress import IPv6Address
from pathlib import Path

from lmaload.wire import WireConfig

DATA = Path(__file__).parent / "data"
VECTORS = json.loads((DATA / "vectors.json").read_text())["vectors"]
VECTORS_PCAP = DATA / "vectors.pcap"
LITERAL_HAC = WireConfig(hac_mag_encoding="literal")


def vector_config(vector: dict) -> WireConfig:
    """V7b uses the seed's literal Home Agent Control layout; every other vector the defaults."""
    return LITERAL_HAC if "literal" in vector["name"] else WireConfig()


def vector_addresses(vector: dict) -> tuple[IPv6Address, IPv6Address]:
    return IPv6Address(vector["src"]), IPv6Address(vector["dst"])


def vector_named(short: str) -> dict:
    """The vector whose name starts with ``short`` (e.g. "V5b")."""
    return next(v for v in VECTORS if v["name"].split()[0] == short)
