"""The failure ``lmaload run`` injects on cue (``--fault``):

- ``kill-active`` — SIGKILL the active LMA (the default; loopback or lab);
- ``cut-link[=SHARE]`` — cut the MAG host's path to LMA1 for the first SHARE of the MAGs
  (default half) while LMA1 stays up and keeps serving the others (seed §5, §5.2; lab only);
- ``loss=P`` — drop each Mobility Header packet on the MAG host ↔ LMA1 link with probability P
  (lab only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

KINDS = ("kill-active", "cut-link", "loss")


@dataclass(frozen=True)
class Fault:
    kind: Literal["kill-active", "cut-link", "loss"] = "kill-active"
    share: float = 0.5  # cut-link: the share of MAGs cut off LMA1
    probability: float = 0.0  # loss

    @property
    def needs_lab(self) -> bool:
        return self.kind != "kill-active"

    @property
    def cuts(self) -> bool:
        """Whether it fails only some MAGs' path (``cut_mags``)."""
        return self.kind == "cut-link"

    def cut_mags(self, mags: int) -> np.ndarray:
        """The MAG rows a cut-link cuts off: the first SHARE of them, at least one."""
        return np.arange(max(1, round(self.share * mags)))

    def __str__(self) -> str:
        if self.kind == "cut-link":
            return f"cut-link={self.share:g}"
        if self.kind == "loss":
            return f"loss={self.probability:g}"
        return self.kind


def parse_fault(text: str) -> Fault:
    """``kill-active``, ``cut-link``, ``cut-link=SHARE`` (0 < SHARE < 1) or ``loss=P``
    (0 < P <= 1); ValueError otherwise."""
    kind, sep, value = text.partition("=")
    if kind not in KINDS:
        raise ValueError(f"{text!r}: expected one of kill-active, cut-link[=SHARE], loss=P")
    if kind == "kill-active":
        if sep:
            raise ValueError(f"{text!r}: kill-active takes no value")
        return Fault()
    if kind == "cut-link" and not sep:
        return Fault("cut-link")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{text!r}: {value!r} is not a number") from None
    if kind == "cut-link":
        if not 0 < number < 1:
            raise ValueError(f"{text!r}: the share of MAGs cut is between 0 and 1")
        return Fault("cut-link", share=number)
    if not 0 < number <= 1:
        raise ValueError(f"{text!r}: the loss probability is above 0 and at most 1")
    return Fault("loss", probability=number)
