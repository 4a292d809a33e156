"""The LMA's ownership state: who answers a MAG, and the snapshot the fast lane caches on."""

from __future__ import annotations

from ipaddress import IPv6Address

from lmaload.protocol import LmaConfig, Role
from lmaload.protocol.lma.ownership import Ownership
from lmaload.protocol.redundancy import HaSwitch, Takeover

LMA = IPv6Address("2001:db8:1::1")
PEER = IPv6Address("2001:db8:1::2")
LMAA = IPv6Address("2001:db8:1::100")
MAG = IPv6Address("2001:db8:2::1")
OTHER = IPv6Address("2001:db8:2::2")


def test_the_snapshot_is_one_object_until_the_state_changes() -> None:
    ownership = Ownership(LmaConfig(address=LMA, peers=(PEER,)))
    first = ownership.snapshot()
    assert ownership.snapshot() is first
    ownership.start_takeover(Takeover(MAG, PEER))
    second = ownership.snapshot()
    assert second is not first and MAG in second.taking_over and MAG not in first.taking_over
    assert not ownership.end_ha_switch(MAG)
    assert ownership.snapshot() is second  # nothing to end: nothing changed


def test_hard_mode_serves_what_it_took_over_and_not_what_it_yielded() -> None:
    ownership = Ownership(LmaConfig(address=LMA, peers=(PEER,), role="standby"))
    assert not ownership.serves(MAG, LMA)
    ownership.took_over(MAG)
    assert ownership.serves(MAG, LMA) and not ownership.serves(OTHER, LMA)
    assert ownership.advertises_active and ownership.is_recovered(MAG)
    ownership.role = Role.ACTIVE
    ownership.yield_mag(MAG, PEER)
    assert not ownership.serves(MAG, LMA) and ownership.serves(OTHER, LMA)
    assert ownership.yielded_to(MAG) == PEER
    ownership.recovering(MAG, HaSwitch(MAG, PEER, 5.0))
    assert ownership.serves(MAG, LMA) and MAG in ownership.snapshot().awaiting_ha_switch


def test_virtual_mode_serves_the_lmaa_while_it_owns_it() -> None:
    config = LmaConfig(address=LMA, lmaa=LMAA, peers=(PEER,), mode="virtual", role="standby")
    ownership = Ownership(config)
    assert not ownership.owns_lmaa and not ownership.serves(MAG, LMAA)
    ownership.owns_lmaa = True
    assert ownership.serves(MAG, LMAA) and not ownership.serves(MAG, LMA)
