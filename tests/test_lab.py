"""The namespace lab (``lmaload lab``, ``lmaload run --lab``) end to end, as root: the lab comes
up and goes down leaving no namespace behind (also after a crash); a small population over raw
Mobility Header sockets survives a SIGKILL of the active LMA; and the seed's tunnel-failure case
(§5, §5.2): half of the MAGs lose their path to LMA1 while LMA1 lives, exactly those move to
LMA2 through PBU + LFI and SO-REQ/SO-REP, and LMA1 keeps refreshing the other half — shown by
the run's results and by captures of the three links, which tshark decodes without a malformed
packet.

Without root, ``ip`` or ``nft`` the lab tests are skipped; what needs neither (the plan, the
fault rules, option checks, the one-line refusal without root) always runs. Every lab is named
``lmaload-test-<random>-`` and taken down by the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import numpy as np
import pytest

from lmaload.bulk import encode_pbus
from lmaload.fault import Fault, parse_fault
from lmaload.lab import faults, netns
from lmaload.lab.topology import HOSTS, LINKS, LMA_ADDRESSES, MAG_PREFIX, Lab, check_prefix
from lmaload.pcap import find_mobility, read_packets
from lmaload.population import PopulationSpec, generate
from lmaload.protocol.datagrams import Datagram, Datagrams
from lmaload.transport.batch import BatchSocket
from lmaload.transport.mag_loop import RawMagTransport
from lmaload.wire import (
    BindingAck,
    BindingUpdate,
    Heartbeat,
    HomeAgentControl,
    LmaFailureIndication,
    Message,
    MobileNodeIdentifier,
    decode_mh,
    encode_mh,
)
from lmaload.wire import codepoints as cp
from tests.netns import namespace, run_in_netns
from tests.test_tshark import Tshark

IS_ROOT = os.geteuid() == 0
HAVE_TOOLS = all(shutil.which(t) for t in ("ip", "nft"))
needs_lab = pytest.mark.skipif(
    not (IS_ROOT and HAVE_TOOLS), reason="the lab needs root, iproute2 and nftables"
)
LMA1, LMA2 = LMA_ADDRESSES["lma1"], LMA_ADDRESSES["lma2"]
MNS, MAGS = 400, 20
# The generator keeping up with its schedule is not the point here (and CPU is shared).
SMALL_RUN = ("--mns", str(MNS), "--mags", str(MAGS), "--rate", "400", "--allow-lag")
TIMEOUT = 120.0
SETTLE = 0.5  # seconds after a cut by which LMA1 has answered what reached it before


def lmaload(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lmaload", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def leftovers(prefix: str) -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith(prefix)]


@pytest.fixture
def prefix() -> Iterator[str]:
    """A unique lab prefix; whatever of the lab is left at the end is removed."""
    name = f"lmaload-test-{uuid.uuid4().hex[:8]}-"
    yield name
    if IS_ROOT and shutil.which("ip"):
        for ns in leftovers(name):
            netns.delete(ns)


# --- no root needed ---------------------------------------------------------------------------


def test_plan_builds_everything_inside_the_lab_namespaces() -> None:
    lab = Lab("lmaload-test-plan-")
    commands = lab.up_commands()
    for command in commands:
        # Every command names a lab namespace: nothing lands where the lab is started from.
        assert any(ns in command for ns in lab.namespaces), command
    veths = [c for c in commands if c[:3] == ["ip", "link", "add"]]
    assert len(veths) == len(LINKS) == 3
    routes = [c for c in commands if "route" in c]
    assert ["ip", "-n", lab.namespace("mag"), "-6", "route", "add", "local", str(MAG_PREFIX)] == (
        routes[0][:8]
    )
    # Each host reaches each other host over their direct link.
    for host in HOSTS:
        reached = {(c[6], c[-1]) for c in routes[1:] if c[2] == lab.namespace(host)}
        assert reached == {
            (str(MAG_PREFIX) if other == "mag" else f"{LMA_ADDRESSES[other]}/128", other)
            for other in HOSTS
            if other != host
        }
    assert IPv6Network(PopulationSpec.mag_prefix6) == MAG_PREFIX


@pytest.mark.parametrize("bad", ["", "lab", "Lab-", "lmaload lab-", "a/b-", "x" * 41 + "-"])
def test_bad_prefixes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        check_prefix(bad)


def test_fault_rules() -> None:
    mags = [IPv6Address("fd00:6d61:6700::1"), IPv6Address("fd00:6d61:6700::2")]
    cut = faults.cut_rules(mags)
    assert set(cut) == {"mag", "lma1"}
    assert 'hook ingress device "lma1"' in cut["mag"] and f"ip6 saddr {LMA1}" in cut["mag"]
    assert 'hook ingress device "mag"' in cut["lma1"] and f"ip6 daddr {LMA1}" in cut["lma1"]
    assert "fd00:6d61:6700::1, fd00:6d61:6700::2" in cut["mag"]
    loss = faults.loss_rules(0.25)
    assert all("numgen random mod 1000000 < 250000" in r for r in loss.values())
    assert all("ip6 nexthdr 135 counter drop" in r for r in faults.loss_rules(1.0).values())


def test_parse_fault() -> None:
    assert parse_fault("kill-active") == Fault()
    assert parse_fault("cut-link") == Fault("cut-link", share=0.5)
    assert parse_fault("cut-link=0.25").cut_mags(20).tolist() == [0, 1, 2, 3, 4]
    assert parse_fault("loss=0.1") == Fault("loss", probability=0.1)
    assert str(parse_fault("loss=0.1")) == "loss=0.1"
    for bad in ("kill", "loss", "loss=2", "cut-link=1", "kill-active=1", "loss=x"):
        with pytest.raises(ValueError):
            parse_fault(bad)


@pytest.mark.parametrize(
    "args",
    [
        ("--fault", "cut-link"),  # without --lab
        ("--fault", "loss=0.1"),
        ("--fault", "explode"),
        ("--lab", "--mode", "virtual"),
        ("--lab", "--lab-prefix", "Bad Prefix"),
        ("--lab", "--pcap", "signalling.pcap"),
        ("--lab", "--lma", "127.0.0.31"),
        ("--lab", "--lma-metrics-port", "9401"),
        ("--lab", "--transport", "udp"),
        ("--transport", "raw", "--lma", "127.0.0.31"),
        ("--lifetime", "1"),
    ],
)
def test_bad_lab_options_exit_2_with_one_line(args: tuple[str, ...]) -> None:
    result = lmaload("run", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("lmaload: run: ") and result.stderr.count("\n") == 1


def test_without_root_lab_says_why_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(netns.LabError, match="the lab needs root"):
        netns.require("ip")


def as_nobody(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd="/",
    )


@pytest.mark.skipif(not IS_ROOT or shutil.which("setpriv") is None, reason="needs root, setpriv")
def test_lab_as_nobody_says_why_in_one_line() -> None:
    if as_nobody("-c", "import lmaload.cli").returncode != 0:
        pytest.skip("user nobody cannot import lmaload from here")
    why = "the lab needs root (network namespaces, veth links, raw sockets)\n"
    run = as_nobody("-m", "lmaload", "run", "--lab", "--results", "/dev/null")
    assert (run.returncode, run.stderr) == (1, f"lmaload: run: {why}")
    up = as_nobody("-m", "lmaload", "lab", "up")
    assert (up.returncode, up.stderr) == (1, f"lmaload: lab up: {why}")


# --- the MAGs' raw transport, in a namespace of its own (root) ---------------------------------


def test_raw_mag_transport_sends_the_codecs_octets_from_each_mag() -> None:
    lma = ["ip", "-6", "addr", "add", f"{LMA1}/128", "dev", "lo"]
    with namespace(lma) as name:  # lo up, an AnyIP route for the MAG prefix
        run_in_netns(name, "test_lab", "raw_mag_transport", timeout=30)


def raw_mag_transport() -> None:
    """In the namespace: PBUs from the bulk encoder (checksum over the MAG's and LMA1's
    addresses) leave each from its MAG's address; LMA1's socket, without the kernel's check,
    gets the very octets — the kernel's checksum at offset 4 is the codec's. Replies to MAG
    addresses come back; what is addressed elsewhere is not the MAGs'."""
    pop = generate(PopulationSpec(mns=12, mags=4))
    rows = np.arange(12)
    buf, offsets = encode_pbus(pop, rows, LMA1, lifetime=100)
    mags = [pop.mag_address6(int(m)) for m in pop.mns["mag"]]
    sent = [buf[offsets[i] : offsets[i + 1]].tobytes() for i in rows]
    transport = RawMagTransport(pop)
    with BatchSocket.raw_mh(str(LMA1), kernel_checksum=False) as lma:
        transport.send(Datagrams(Datagram(d, m, LMA1) for d, m in zip(sent, mags, strict=True)))
        got: list[tuple[bytes, IPv6Address]] = []
        deadline = time.monotonic() + 5
        while len(got) < len(sent) and time.monotonic() < deadline:
            batch = lma.recv(timeout=1.0)
            got += [(batch.datagram(i), batch.source(i)) for i in range(batch.count)]
        assert sorted(got) == sorted(zip(sent, mags, strict=True))

        replies = [(Heartbeat(7, cp.HB_FLAG_R), m) for m in (mags[0], mags[5])]
        stray = IPv6Address("fd00:6d61:6701::99")  # on no MAG: the transport drops it
        items = [*replies, (Heartbeat(8, cp.HB_FLAG_R), stray)]
        data = [encode_mh(message, LMA1, to) for message, to in items]
        out_offsets = np.cumsum([0, *map(len, data)])
        lma.send(np.frombuffer(b"".join(data), dtype=np.uint8), out_offsets, [t for _, t in items])
        received: list[Datagram] = []
        deadline = time.monotonic() + 5
        while len(received) < len(replies) and time.monotonic() < deadline:
            time.sleep(0.05)
            received += list(transport.receive())
        assert sorted((d.data, d.src, d.dst) for d in received) == sorted(
            (d, LMA1, to) for d, (_, to) in zip(data, replies, strict=False)
        )
    assert transport.drops == {}
    transport.close()


# --- the lab itself (root) --------------------------------------------------------------------


@needs_lab
def test_lab_up_status_down_and_down_after_a_crash(prefix: str) -> None:
    up = lmaload("lab", "up", "--prefix", prefix)
    assert up.returncode == 0, up.stderr
    assert sorted(leftovers(prefix)) == sorted(f"{prefix}{h}" for h in HOSTS)
    again = lmaload("lab", "up", "--prefix", prefix)
    assert again.returncode == 1 and again.stderr.count("\n") == 1, again.stderr
    assert "already up" in again.stderr
    status = lmaload("lab", "status", "--prefix", prefix)
    assert status.returncode == 0, status.stderr
    for link in LINKS:
        assert f"{link.address(link.a)}/64" in status.stdout
    assert f"{LMA1}/128" in status.stdout and f"{LMA2}/128" in status.stdout

    # A crash: something still runs inside, and the lab is half gone.
    sleeper = subprocess.Popen(["ip", "netns", "exec", f"{prefix}lma1", "sleep", "60"])
    subprocess.run(["ip", "netns", "del", f"{prefix}lma2"], check=True)
    half = lmaload("run", "--lab", "--lab-prefix", prefix, "--results", "/dev/null")
    assert half.returncode == 1 and "half there" in half.stderr, half.stderr
    down = lmaload("lab", "down", "--prefix", prefix)
    assert down.returncode == 0, down.stderr
    assert sleeper.wait(10) == -signal.SIGKILL
    assert leftovers(prefix) == []
    assert "nothing was there" in lmaload("lab", "down", "--prefix", prefix).stdout


@needs_lab
def test_run_lab_kill_active_takes_over_and_leaves_no_namespace(
    prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "results.json"
    # --transport raw is --lab: the raw Mobility Header runs in the lab
    result = lmaload(
        "run", "--transport", "raw", "--lab-prefix", prefix, *SMALL_RUN, "--results", str(path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert leftovers(prefix) == []
    results = json.loads(path.read_text())
    assert results["config"]["lab"] and results["config"]["fault"] == "kill-active"
    assert results["registration"]["registered"] == MNS
    takeover = results["takeover"]
    assert takeover["summary"]["kept"] == MNS
    assert takeover["summary"]["lost"] == takeover["summary"]["pending"] == 0
    assert takeover["summary"]["takeover"]["count"] == MAGS
    assert all(r["detection"] is not None and r["takeover"] is not None for r in takeover["mags"])
    assert results["generator"]["drops"] == {}


@needs_lab
def test_run_lab_total_loss_on_the_lma1_link_moves_every_mag(prefix: str, tmp_path: Path) -> None:
    """loss=1: the rule drops every Mobility Header on the link, LMA1 stays up. A lossy link
    is watched one detection window; on a busy machine a MAG may notice later: --observe."""
    path = tmp_path / "results.json"
    result = lmaload(
        *("run", "--lab", "--lab-prefix", prefix, *SMALL_RUN, "--results", str(path)),
        *("--fault", "loss=1", "--observe", "3"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert leftovers(prefix) == []
    results = json.loads(path.read_text())
    assert results["config"]["fault"] == "loss=1"
    summary = results["takeover"]["summary"]
    assert (summary["kept"], summary["lost"], summary["pending"]) == (MNS, 0, 0), summary
    assert summary["detection"]["count"] == summary["takeover"]["count"] == MAGS


class Capture:
    """dumpcap on one interface of a lab namespace, writing a classic pcap."""

    def __init__(self, namespace: str, interface: str, path: Path) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "dumpcap", "-q", "-P", "-i", interface, "-w", path],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()  # "Capturing on 'lma1'" once it captures
        assert "Capturing on" in line, line + self.proc.stderr.read()

    def stop(self) -> list[tuple[float, Message, IPv6Address, IPv6Address]]:
        """Stop; every Mobility Header captured (time, message, source, destination), each
        with the checksum the kernel put in verified by our codec."""
        time.sleep(0.2)  # the last packets reach the file
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(10) == 0
        out = []
        for packet in read_packets(self.path):
            found = find_mobility(packet)
            if found is None:
                continue
            assert found.transport == "ipv6"
            decoded = decode_mh(found.payload, found.src, found.dst)
            assert decoded.checksum_ok, (packet.number, decoded)
            out.append((packet.time, decoded.message, found.src, found.dst))
        return out


def option(message: Message, kind: type) -> object | None:
    return next((o for o in message.options if isinstance(o, kind)), None)


@needs_lab
@pytest.mark.skipif(shutil.which("dumpcap") is None, reason="dumpcap is not installed")
def test_cut_link_moves_exactly_the_cut_mags_while_lma1_serves_the_rest(
    prefix: str, tmp_path: Path
) -> None:
    up = lmaload("lab", "up", "--prefix", prefix)
    assert up.returncode == 0, up.stderr
    captures = {
        "mag-lma1": Capture(f"{prefix}mag", "lma1", tmp_path / "mag-lma1.pcap"),
        "mag-lma2": Capture(f"{prefix}mag", "lma2", tmp_path / "mag-lma2.pcap"),
        "lma1-lma2": Capture(f"{prefix}lma1", "lma2", tmp_path / "lma1-lma2.pcap"),
    }
    path = tmp_path / "results.json"
    # Lifetime 4 s: every session refreshes every 2 s, so 2.5 s after the takeover each session
    # LMA1 kept has refreshed there since the cut.
    result = lmaload(
        *("run", "--lab", "--lab-prefix", prefix, *SMALL_RUN, "--results", str(path)),
        *("--fault", "cut-link", "--lifetime", "4", "--observe", "2.5"),
    )
    seen = {name: capture.stop() for name, capture in captures.items()}
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(leftovers(prefix)) == sorted(f"{prefix}{h}" for h in HOSTS)  # not its lab
    assert not faults.installed(Lab(prefix))  # but its faults are cleared
    down = lmaload("lab", "down", "--prefix", prefix)
    assert down.returncode == 0 and leftovers(prefix) == []

    results = json.loads(path.read_text())
    takeover = results["takeover"]
    cut_rows = set(range(MAGS // 2))
    pop = generate(PopulationSpec(mns=MNS, mags=MAGS))
    per_mag = {m: int((pop.mns["mag"] == m).sum()) for m in range(MAGS)}
    cut = {pop.mag_address6(m) for m in cut_rows}
    kept = {pop.mag_address6(m) for m in range(MAGS)} - cut
    for row in takeover["mags"]:
        if row["mag"] in cut_rows:  # detected, moved to LMA2 with every session kept
            assert row["detection"] is not None and row["takeover"] is not None, row
            assert (row["kept"], row["lost"], row["pending"]) == (per_mag[row["mag"]], 0, 0), row
        else:  # never lost LMA1, which refreshed every session after the cut
            assert row["detection"] is None and row["takeover"] is None, row
            assert (row["kept"], row["stayed"]) == (0, per_mag[row["mag"]]), row
    assert set(takeover["pba_status"]) == {"0"} and takeover["failed"] == {}
    cut_at = takeover["failure_at"]

    # On the wire. MAG host - LMA2: failover PBUs (LFI naming LMA1) from exactly the cut MAGs,
    # every one answered 0.
    lfi_from = {
        src
        for _, m, src, dst in seen["mag-lma2"]
        if isinstance(m, BindingUpdate) and dst == LMA2 and option(m, LmaFailureIndication)
    }
    assert lfi_from == cut
    assert all(m.status == 0 for _, m, _, _ in seen["mag-lma2"] if isinstance(m, BindingAck)), (
        "a PBA from LMA2 refused a session"
    )
    # LMA1 - LMA2: LMA2 asked LMA1 for exactly the cut MAGs (SO-REQ with the MAG address), and
    # LMA1 agreed to each (SO-REP 0).
    hac = [(m, src) for _, m, src, _ in seen["lma1-lma2"] if isinstance(m, HomeAgentControl)]
    requests = {m.mag_address for m, src in hac if m.hac_type == cp.HAC_SWITCHOVER_REQUEST}
    replies = {(m.mag_address, m.status) for m, src in hac if m.hac_type == cp.HAC_SWITCHOVER_REPLY}
    assert requests == cut
    assert replies == {(mag, 0) for mag in cut}
    assert all(src == LMA2 for m, src in hac if m.hac_type == cp.HAC_SWITCHOVER_REQUEST)
    # MAG host - LMA1 after the cut: PBAs 0 to the other MAGs only (their refreshes). The cut
    # MAGs' own packets still show on the link (they are lost at its far end); a PBA for a PBU
    # that reached LMA1 just before the cut may follow it by a State Sync round trip.
    after = [(m, dst) for t, m, src, dst in seen["mag-lma1"] if t > cut_at + SETTLE and src == LMA1]
    refreshed = {dst for m, dst in after if isinstance(m, BindingAck) and m.status == 0}
    assert refreshed == kept
    assert all(m.status == 0 for m, _ in after if isinstance(m, BindingAck))

    # Time from the wire: each cut MAG's takeover time is its last session's first accepted PBA
    # from LMA2, as the capture on the MAG host's link to LMA2 saw it, within 1 ms.
    first_accept: dict[bytes, tuple[float, IPv6Address]] = {}
    for t, m, src, dst in seen["mag-lma2"]:
        mn = option(m, MobileNodeIdentifier)
        if isinstance(m, BindingAck) and m.status == 0 and src == LMA2 and t > cut_at and mn:
            first_accept.setdefault(mn.identifier, (t, dst))
    on_wire: dict[IPv6Address, float] = {}
    for t, mag in first_accept.values():
        on_wire[mag] = max(on_wire.get(mag, t), t)
    late = {
        m: row["takeover"] - (on_wire[pop.mag_address6(m)] - cut_at)
        for m, row in ((row["mag"], row) for row in takeover["mags"])
        if m in cut_rows
    }
    assert all(abs(d) <= 1e-3 for d in late.values()), late

    if shutil.which("tshark") is not None:
        config = tmp_path / "wireshark-config"
        config.mkdir()
        tshark = Tshark(config)
        for capture in captures.values():
            assert tshark.malformed_or_erroneous(capture.path) == [], capture.path
