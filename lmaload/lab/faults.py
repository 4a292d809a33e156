"""Link faults as nftables rules (Debian's nftables; this kernel has no netem qdisc) on the MAG
host ↔ LMA1 link: a ``netdev`` table at each end of it, whose chain on the ``ingress`` hook of
that end's interface drops what arrives. A packet is lost in flight: its sender's stack took it
without an error (an egress drop would fail the send), and a capture on the link shows it.

- ``cut``: every packet between the chosen MAG addresses and LMA1 dropped, both ways — their
  path to LMA1 is gone while LMA1 lives and serves the other MAGs (seed §5, §5.2);
- ``loss``: each Mobility Header packet on the link dropped with probability P, both ways
  (``numgen random``).

``clear`` deletes the tables, which ends every fault; ``lmaload lab down`` removes them with the
namespaces.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv6Address

from lmaload.lab import netns
from lmaload.lab.topology import LMA_ADDRESSES, Lab

TABLE = "lmaload_fault"
# The link's two ends: (host, its interface on the link). The rule of each end drops what
# arrives there: from LMA1 at the MAG host, from the MAGs at LMA1.
ENDS = (("mag", "lma1"), ("lma1", "mag"))
LMA1 = LMA_ADDRESSES["lma1"]
LOSS_SCALE = 1_000_000  # numgen range: loss is set in millionths
MH = 135

Rules = dict[str, str]  # host → its ruleset


def cut_rules(mags: Iterable[IPv6Address]) -> Rules:
    """The rulesets that cut ``mags`` off LMA1."""
    cut = f"set cut {{ type ipv6_addr; elements = {{ {', '.join(str(m) for m in mags)} }} }}"
    return {
        "mag": _table("mag", cut, f"ip6 saddr {LMA1} ip6 daddr @cut counter drop"),
        "lma1": _table("lma1", cut, f"ip6 saddr @cut ip6 daddr {LMA1} counter drop"),
    }


def loss_rules(probability: float) -> Rules:
    """The rulesets that drop Mobility Header packets on the link with ``probability``."""
    below = round(probability * LOSS_SCALE)
    chance = f"numgen random mod {LOSS_SCALE} < {below} " if below < LOSS_SCALE else ""
    drop = f"ip6 nexthdr {MH} {chance}counter drop"
    return {host: _table(host, "", drop) for host, _ in ENDS}


def _table(host: str, declarations: str, rule: str) -> str:
    device = dict(ENDS)[host]
    return (
        f"table netdev {TABLE} {{\n  {declarations}\n  chain ingress {{\n"
        f'    type filter hook ingress device "{device}" priority 0; policy accept;\n'
        f"    {rule}\n  }}\n}}\n"
    )


def _nft(lab: Lab, host: str, *args: str, stdin: str | None = None) -> str:
    return netns.run(["ip", "netns", "exec", lab.namespace(host), "nft", *args], stdin=stdin)


def apply(lab: Lab, rules: Rules) -> None:
    """Install ``rules`` (after any fault already there is cleared)."""
    netns.require("ip", "nft")
    clear(lab)
    for host, ruleset in rules.items():
        _nft(lab, host, "-f", "-", stdin=ruleset)


def installed(lab: Lab) -> list[str]:
    """The hosts that hold fault rules."""
    return [h for h, _ in ENDS if f"netdev {TABLE}" in _nft(lab, h, "list", "tables")]


def clear(lab: Lab) -> None:
    for host in installed(lab):
        _nft(lab, host, "delete", "table", "netdev", TABLE)


def dropped(lab: Lab) -> int:
    """Packets the fault rules dropped so far, both ends."""
    total = 0
    for host in installed(lab):
        words = _nft(lab, host, "list", "table", "netdev", TABLE).split()
        total += sum(int(words[i + 1]) for i, w in enumerate(words[:-1]) if w == "packets")
    return total
