"""Which MAGs this LMA answers for (spec-digest §8.8): its role, whether it owns the LMAA, the
MAGs it took over, yielded to a peer or recovered from a failed one, the per-MAG takeovers under
way and the HA Switches awaiting a PBU.

Every change goes through ``Ownership``'s methods, so ``snapshot()`` can hand the fast lane one
immutable copy per state: the lane caches its per-MAG verdicts for as long as it gets the same
snapshot object.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address

from lmaload.protocol.config import LmaConfig
from lmaload.protocol.events import Role
from lmaload.protocol.redundancy import HaSwitch, Takeover


@dataclass(frozen=True)
class OwnershipSnapshot:
    """The ownership state at one moment; ``serves`` is the one rule of who answers a MAG."""

    virtual: bool
    lmaa: IPv6Address
    role: Role
    owns_lmaa: bool
    took_over: frozenset[IPv6Address]
    yielded: frozenset[IPv6Address]
    recovered: frozenset[IPv6Address]
    taking_over: frozenset[IPv6Address]
    awaiting_ha_switch: frozenset[IPv6Address]

    def serves(self, mag: IPv6Address, dst: IPv6Address) -> bool:
        """Whether PBUs from ``mag`` sent to ``dst`` are this LMA's to answer (spec-digest §8.8:
        per-MAG ownership after a partial switchover)."""
        if self.virtual:
            return self.owns_lmaa and dst == self.lmaa and mag not in self.yielded
        if mag in self.took_over:
            return True
        return mag not in self.yielded and self.role is Role.ACTIVE


class Ownership:
    """The live ownership state of one LMA (see the module docstring)."""

    def __init__(self, config: LmaConfig) -> None:
        self._virtual = config.mode == "virtual"
        self._lmaa: IPv6Address = config.lmaa  # type: ignore[assignment]
        self._role = Role.INIT if config.role == "auto" else Role(config.role)
        self._owns_lmaa = config.mode == "hard" or self._role is Role.ACTIVE
        self._took_over: set[IPv6Address] = set()  # MAGs won by a per-MAG takeover
        self._yielded: dict[IPv6Address, IPv6Address] = {}  # MAG → the LMA it switched over to
        # MAGs whose sessions came from a peer (takeover, HA Switch): see PbuProcessor._is_recovery
        self._recovered: set[IPv6Address] = set()
        self._takeovers: dict[IPv6Address, Takeover] = {}
        self._ha_switches: dict[IPv6Address, HaSwitch] = {}
        self._snapshot: OwnershipSnapshot | None = None

    # --- reading -------------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self._role

    @role.setter
    def role(self, role: Role) -> None:
        self._role = role
        self._snapshot = None

    @property
    def owns_lmaa(self) -> bool:
        """Whether this LMA answers for the LMAA (always, in hard mode)."""
        return self._owns_lmaa

    @owns_lmaa.setter
    def owns_lmaa(self, owns: bool) -> None:
        self._owns_lmaa = owns
        self._snapshot = None

    @property
    def advertises_active(self) -> bool:
        """HA-HELLO's A flag: active, or serving MAGs it took over."""
        return self._role is Role.ACTIVE or bool(self._took_over)

    def serves(self, mag: IPv6Address, dst: IPv6Address) -> bool:
        return self.snapshot().serves(mag, dst)

    def is_recovered(self, mag: IPv6Address) -> bool:
        return mag in self._recovered

    def yielded_to(self, mag: IPv6Address) -> IPv6Address | None:
        return self._yielded.get(mag)

    def snapshot(self) -> OwnershipSnapshot:
        """The state now, the same object until it next changes."""
        if self._snapshot is None:
            self._snapshot = OwnershipSnapshot(
                self._virtual,
                self._lmaa,
                self._role,
                self._owns_lmaa,
                frozenset(self._took_over),
                frozenset(self._yielded),
                frozenset(self._recovered),
                frozenset(self._takeovers),
                frozenset(self._ha_switches),
            )
        return self._snapshot

    # --- per-MAG changes -----------------------------------------------------------------------

    def took_over(self, mag: IPv6Address) -> None:
        """A takeover of ``mag`` completed: serve it from now on."""
        self._took_over.add(mag)
        self._yielded.pop(mag, None)
        self._recovered.add(mag)
        self._snapshot = None

    def recovering(self, mag: IPv6Address, switch: HaSwitch) -> None:
        """The LMA that served ``mag`` failed and this one sends it an HA Switch."""
        self._yielded.pop(mag, None)
        self._recovered.add(mag)
        self._ha_switches[mag] = switch
        self._snapshot = None

    def yield_mag(self, mag: IPv6Address, to: IPv6Address) -> None:
        """``mag`` switched over to the peer ``to``."""
        self._yielded[mag] = to
        self._took_over.discard(mag)
        self._snapshot = None

    # --- takeovers under way and HA Switches awaiting a PBU ------------------------------------

    def takeover(self, mag: IPv6Address) -> Takeover | None:
        return self._takeovers.get(mag)

    def takeovers(self) -> list[Takeover]:
        return list(self._takeovers.values())

    def start_takeover(self, takeover: Takeover) -> None:
        self._takeovers[takeover.mag] = takeover
        self._snapshot = None

    def end_takeover(self, mag: IPv6Address) -> Takeover:
        self._snapshot = None
        return self._takeovers.pop(mag)

    def ha_switch(self, mag: IPv6Address) -> HaSwitch | None:
        return self._ha_switches.get(mag)

    def end_ha_switch(self, mag: IPv6Address) -> bool:
        """Forget the HA Switch to ``mag``; whether there was one."""
        if self._ha_switches.pop(mag, None) is None:
            return False
        self._snapshot = None
        return True
