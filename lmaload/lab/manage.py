"""Bring a lab up, take it down, tell its state: ``lmaload lab up|down|status``.

``up`` refuses a lab whose namespaces (any of them) exist already, and removes what it made
when a step fails. ``down`` deletes every namespace of the lab that exists — after a crash, a
half-built lab, a lab still running LMAs (their processes are killed first) — and with them
the veth links, addresses, routes and nftables rules, which all live inside them.
"""

from __future__ import annotations

import shutil

from lmaload.lab import faults, netns
from lmaload.lab.netns import LabError
from lmaload.lab.topology import HOSTS, Lab


def present(lab: Lab) -> list[str]:
    """The lab's namespaces that exist."""
    existing = netns.namespaces()
    return [name for name in lab.namespaces if name in existing]


def up(lab: Lab) -> None:
    netns.require("ip")
    if present(lab):
        raise LabError(
            f"lab {lab.prefix} is already up or left over: lmaload lab down --prefix {lab.prefix}"
        )
    try:
        for name in lab.namespaces:
            netns.run(["ip", "netns", "add", name])
        for command in lab.up_commands():
            netns.run(command)
    except BaseException:
        down(lab)
        raise


def down(lab: Lab) -> list[str]:
    """Delete the lab's namespaces; the names deleted."""
    netns.require("ip")
    gone = present(lab)
    for name in gone:
        netns.delete(name)
    return gone


def is_up(lab: Lab) -> bool:
    """Whether the whole lab is there; LabError when only part of it is."""
    found = present(lab)
    if found and len(found) < len(HOSTS):
        raise LabError(
            f"lab {lab.prefix} is half there ({', '.join(found)}): "
            f"lmaload lab down --prefix {lab.prefix}"
        )
    return bool(found)


def status(lab: Lab) -> str:
    """A few lines per host: its namespace, links and addresses, processes, fault rules."""
    netns.require("ip")
    lines = []
    existing = set(present(lab))
    for host in HOSTS:
        name = lab.namespace(host)
        if name not in existing:
            lines.append(f"{host:<5} {name}: absent")
            continue
        processes = netns.pids(name)
        lines.append(f"{host:<5} {name}: {len(processes)} process(es)")
        for row in netns.run(["ip", "-n", name, "-br", "addr"]).splitlines():
            lines.append(f"      {row.strip()}")
    if len(existing) == len(HOSTS) and shutil.which("nft") is not None and faults.installed(lab):
        lines.append(f"fault on the mag-lma1 link: {faults.dropped(lab)} packets dropped so far")
    return "\n".join(lines)
