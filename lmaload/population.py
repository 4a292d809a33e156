"""The emulated mobile nodes and their MAGs as numpy structured arrays (columns, not objects),
generated deterministically from a seed.

One row of ``MN_DTYPE`` per mobile node: identity, the MAG it attaches to, its home network
prefix, access technology, link-layer id, the signalling state the MAG engine keeps for it, and
timing columns. A generated population does not store the NAI: it is ``mn{mn_id}@{realm}``; a
subscriber list's (``lmaload.subscriber_file``) keeps its NAIs in a ``NaiColumn`` beside the
rows, so the row stays the same size. One row of ``MAG_DTYPE`` per MAG: its IPv6 Proxy-CoA (the
address in the MH pseudo-header) and its IPv4 address (the UDP/5436 source on loopback or in a
lab).

The dtypes are packed (no alignment padding) and mirrored field for field by the C structs in
``ext/population.pxi``; change both together.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import numpy as np

from lmaload.wire import codepoints as cp

MN_DTYPE = np.dtype(
    [
        ("mn_id", "<u4"),  # global index (derived NAI mn{mn_id}@realm); shards take id ranges
        ("mag", "<u4"),  # row of the MAG table
        ("hnp", "u1", (16,)),  # home network prefix (network order); all zero = ask the LMA
        ("hnp_len", "u1"),
        ("att", "u1"),  # access technology type
        ("hi", "u1"),  # handoff indicator of the next PBU
        ("ll_len", "u1"),  # 0: no MN link-layer identifier
        ("ll_id", "u1", (8,)),
        ("lma", "u1"),  # serving LMA (row of the caller's LMA table)
        ("state", "u1"),  # SessionState
        ("retries", "u1"),  # retransmissions of the outstanding PBU
        ("seq", "<u2"),  # sequence number of the last PBU sent
        ("lifetime", "<u2"),  # granted lifetime, 4-second units
        ("ts", "<u8"),  # timestamp of the last PBU sent (RFC 5213 48.16 format)
        ("ipv4_hoa", "u1", (4,)),  # assigned IPv4 home address (network order), 0 = none
        ("t_send", "<i8"),  # intended send time of the outstanding PBU, ns (open-loop latency)
        ("t_due", "<i8"),  # next timer of this session (retransmit or refresh), ns
        ("t_acked", "<i8"),  # time of the last accepted PBA, ns
    ],
    align=False,
)

MAG_DTYPE = np.dtype(
    [
        ("addr6", "u1", (16,)),  # Proxy-CoA
        ("addr4", "u1", (4,)),  # IPv4 address (UDP/5436 source), network order
    ],
    align=False,
)


class SessionState:
    """Values of the ``state`` column (spec-digest §8.8, MAG per session)."""

    IDLE = 0
    REGISTERING = 1
    REGISTERED = 2
    REFRESHING = 3
    FAILOVER = 4
    DEREGISTERING = 5
    FAILED = 6  # rejected by the LMA (a final PBA status)
    GIVEN_UP = 7  # no answer after MagConfig.max_retransmissions retransmissions


DEFAULT_ATT_MIX: Mapping[int, float] = {8: 0.6, 4: 0.3, 7: 0.1}  # E-UTRAN, 802.11, UTRAN


@dataclass(frozen=True)
class PopulationSpec:
    """Everything a population is generated from; the same spec always gives the same arrays."""

    mns: int
    mags: int
    seed: int = 0
    realm: str = "example.com"
    base_prefix: str = "2001:db8::/32"  # each MN gets the mn_id-th /64 inside it
    mag_prefix6: str = "fd00:6d61:6700::/64"  # MAG Proxy-CoAs: the (i+1)-th address
    mag_prefix4: str = "127.1.0.0/16"  # MAG IPv4 addresses: the (i+1)-th address
    att_mix: Mapping[int, float] = field(default_factory=lambda: dict(DEFAULT_ATT_MIX))
    ll_id_share: float = 0.0  # share of MNs with a link-layer id (a locally administered MAC)
    first_id: int = 0  # mn_id of row 0 (a shard's slice of the id space)
    first_mag: int = 0  # MAG row 0 has the (first_mag + 1)-th addresses (a shard's MAGs)


@dataclass(frozen=True)
class NaiColumn:
    """Stored NAIs: row ``i``'s is ``blob[offsets[i]:offsets[i + 1]]``."""

    blob: np.ndarray  # uint8
    offsets: np.ndarray  # int64, one more than the rows

    @classmethod
    def of(cls, nais: list[bytes]) -> NaiColumn:
        offsets = np.zeros(len(nais) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(n) for n in nais])
        return cls(np.frombuffer(b"".join(nais), dtype=np.uint8).copy(), offsets)

    def __getitem__(self, row: int) -> bytes:
        row = range(len(self.offsets) - 1)[row]  # numpy's negative indices and IndexError
        return self.blob[self.offsets[row] : self.offsets[row + 1]].tobytes()


@dataclass
class Population:
    """The MN and MAG tables of one generator process, the NAI realm, and the stored NAIs when
    they are not derived from ``mn_id`` and the realm."""

    mns: np.ndarray
    mags: np.ndarray
    realm: str
    nais: NaiColumn | None = None

    def nai(self, row: int) -> bytes:
        if self.nais is not None:
            return self.nais[row]
        return f"mn{int(self.mns['mn_id'][row])}@{self.realm}".encode()

    def mag_address6(self, mag: int) -> IPv6Address:
        return IPv6Address(self.mags["addr6"][mag].tobytes())

    def mag_address4(self, mag: int) -> IPv4Address:
        return IPv4Address(self.mags["addr4"][mag].tobytes())

    def prefix(self, row: int) -> tuple[IPv6Address, int]:
        return IPv6Address(self.mns["hnp"][row].tobytes()), int(self.mns["hnp_len"][row])

    @property
    def nbytes(self) -> int:
        stored = 0 if self.nais is None else self.nais.blob.nbytes + self.nais.offsets.nbytes
        return self.mns.nbytes + self.mags.nbytes + stored


def _host_addresses(network: IPv6Network | IPv4Network, count: int, skip: int = 0) -> np.ndarray:
    """The (skip+1)-th..(skip+count)-th host addresses of ``network`` as a (count, 16 or 4) uint8
    array."""
    if skip + count >= network.num_addresses:
        raise ValueError(f"{network} holds fewer than {skip + count + 1} addresses")
    offsets = np.arange(skip + 1, skip + count + 1, dtype=np.uint64)
    if network.version == 4:
        values = np.uint64(int(network.network_address)) + offsets
        return values.astype(">u4").view(np.uint8).reshape(-1, 4)
    # Hosts differ only in the low 64 bits when the network is a /64 or shorter and, for a
    # longer one, because skip + count < num_addresses keeps the sum inside the network.
    high, low = divmod(int(network.network_address), 2**64)
    out = np.empty((count, 16), dtype=np.uint8)
    out[:, :8] = np.frombuffer(high.to_bytes(8, "big"), dtype=np.uint8)
    out[:, 8:] = (np.uint64(low) + offsets).astype(">u8").view(np.uint8).reshape(-1, 8)
    return out


def generate(spec: PopulationSpec) -> Population:
    """Build the population of ``spec``: MNs spread evenly over MAGs in a seeded random order,
    ATT drawn from the mix, a /64 per MN from ``base_prefix``."""
    if spec.mns < 0 or spec.mags < 1:
        raise ValueError("need at least one MAG and a non-negative number of MNs")
    if spec.first_id + spec.mns > 2**32:
        raise ValueError("mn_id is a 32-bit column")
    rng = np.random.default_rng(spec.seed)
    base = IPv6Network(spec.base_prefix)
    if base.prefixlen > 64 or (spec.first_id + spec.mns) > 2 ** (64 - base.prefixlen):
        raise ValueError(f"{base} holds fewer than {spec.first_id + spec.mns} /64 prefixes")

    mns = np.zeros(spec.mns, dtype=MN_DTYPE)
    ids = np.arange(spec.first_id, spec.first_id + spec.mns, dtype=np.uint64)
    mns["mn_id"] = ids
    mns["mag"] = rng.permutation(spec.mns) % spec.mags
    # The /64 of MN i is the i-th /64 of base: the upper 64 bits are base's plus i.
    upper = np.uint64(int(base.network_address) >> 64) + ids
    mns["hnp"][:, :8] = upper.astype(">u8").view(np.uint8).reshape(-1, 8)
    mns["hnp_len"] = 64
    atts = np.array(sorted(spec.att_mix), dtype=np.uint8)
    weights = np.array([spec.att_mix[a] for a in sorted(spec.att_mix)], dtype=float)
    mns["att"] = rng.choice(atts, size=spec.mns, p=weights / weights.sum())
    mns["hi"] = cp.HI_ATTACH_NEW_INTERFACE
    with_ll = rng.random(spec.mns) < spec.ll_id_share
    mns["ll_len"][with_ll] = 6
    ll = mns["ll_id"]
    ll[with_ll, 0] = 0x02  # locally administered, unicast
    ll[with_ll, 2:6] = ids[with_ll].astype(">u4").view(np.uint8).reshape(-1, 4)
    mns["state"] = SessionState.IDLE

    mags = np.zeros(spec.mags, dtype=MAG_DTYPE)
    mags["addr6"] = _host_addresses(IPv6Network(spec.mag_prefix6), spec.mags, spec.first_mag)
    mags["addr4"] = _host_addresses(IPv4Network(spec.mag_prefix4), spec.mags, spec.first_mag)
    return Population(mns, mags, spec.realm)


SUBSCRIBER_FIELDS = ("nai", "link_layer_id", "hnp", "mag", "mag_ipv4")


def subscribers(pop: Population, request_prefix: bool) -> Iterator[dict[str, str]]:
    """Each MN as an LMA's policy store wants it (``SUBSCRIBER_FIELDS``): its MN-ID NAI, its MN
    link-layer identifier (colon-separated hex, empty for none), the HNP it requests (empty when
    it asks the LMA to assign one: not ``request_prefix``), and its MAG's IPv6 and IPv4
    addresses."""
    mns = pop.mns
    for row in range(len(mns)):
        ll = mns["ll_id"][row][: mns["ll_len"][row]]
        prefix, length = pop.prefix(row)
        mag = int(mns["mag"][row])
        yield {
            "nai": pop.nai(row).decode(),
            "link_layer_id": ":".join(f"{b:02x}" for b in ll.tolist()),
            "hnp": f"{prefix}/{length}" if request_prefix else "",
            "mag": str(pop.mag_address6(mag)),
            "mag_ipv4": str(pop.mag_address4(mag)),
        }
