"""``lmaload run --transport raw --lma ADDR6`` towards an LMA of the user's own over the raw
Mobility Header (RFC 5213 over IPv6), in two network namespaces the test creates (root): the
MAG host, where lmaload runs, and the LMA's, joined by a veth link.

The LMA is a lone ``lmaload lma --transport raw`` (``LMA``), loaded as a plain RFC 5213 LMA is:
sequence-number PBUs and no heartbeats. 10 000 MNs register; lmaload makes the MAG prefix local
for the run and removes it afterwards (a prefix the user made local stays); a capture of the MAG
host's link, decoded by tshark, shows every PBA accepting, no Timestamp option and no Heartbeat.
``lmaload capacity`` and ``lmaload sync`` take the same target forms (against the reference LMA,
whose heartbeats and State Sync they need), and the README's recipe runs as written. What
lmaload refuses — without root, without a route to the LMA, without ``ip`` — it says in one
line; option errors exit 2 and need no root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from lmaload.lab import mag_host, netns
from lmaload.pcap import ethernet_frame, ipv6_packet, write_pcap
from lmaload.population import PopulationSpec
from lmaload.wire import BindingUpdate, Heartbeat, Timestamp, encode_mh
from lmaload.wire import codepoints as cp
from tests.netns import IS_ROOT, linked
from tests.test_lab import Capture as Dumpcap
from tests.test_lab import as_nobody
from tests.test_readme_ci import block
from tests.test_tshark import Tshark

# The LMA the MAGs load: a plain RFC 5213 LMA (no heartbeat answers, sequence ordering, no State
# Sync).
LMA = ("lma", "--transport", "raw", "--plain")
# For what needs the reference LMA's heartbeats (capacity trials) or State Sync (sync).
REFERENCE_LMA = ("lma", "--transport", "raw")
PLAIN_MAGS = ("--pbu-order", "sequence", "--heartbeats", "off")
LINK = IPv6Network("fd00:6d61:6703::/64")  # MAG host ::1, the LMA's host ::2
LMA_ADDRESS = IPv6Address("fd00:6d61:6704::1")  # on the LMA host's lo
MAG_PREFIX = IPv6Network("fd00:6d61:6705::/64")  # not the default: --mag-prefix
DEFAULT_MAG_PREFIX = IPv6Network(PopulationSpec.mag_prefix6)
MNS, MAGS = 10_000, 100
TIMEOUT = 180.0
# A Heartbeat, or a Timestamp option by name or by number.
FORBIDDEN = (
    f"mip6.mhtype == {cp.MH_HEARTBEAT} || mip6.options.ts"
    f" || mip6.mobility_opt == {cp.OPT_TIMESTAMP}"
)


def lmaload(*args: str, netns: str | None = None) -> subprocess.CompletedProcess:
    inside = [] if netns is None else ["ip", "netns", "exec", netns]
    return subprocess.run(
        [*inside, sys.executable, "-m", "lmaload", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def local_routes(netns: str) -> str:
    return subprocess.run(
        ["ip", "-n", netns, "-6", "route", "show", "table", "local", "type", "local"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def hosts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(MAG host, LMA host): the LMA running at LMA_ADDRESS (``LMA``, or the ``lmaload``
    arguments of an indirect parameter), each host routing to the other's addresses over the
    link; the MAG prefixes are not local anywhere."""
    with linked(LINK) as (mag, lma):
        via = {mag: LINK.network_address + 2, lma: LINK.network_address + 1}
        routes = {mag: [LMA_ADDRESS], lma: [MAG_PREFIX, DEFAULT_MAG_PREFIX]}
        for host in (mag, lma):
            for to in routes[host]:
                route = ["-6", "route", "add", str(to), "via", str(via[host]), "dev", "peer"]
                subprocess.run(["ip", "-n", host, *route], check=True)
        lo = ["addr", "add", f"{LMA_ADDRESS}/128", "dev", "lo", "nodad"]
        subprocess.run(["ip", "-n", lma, *lo], check=True)
        log = (tmp_path / "lma.log").open("w")
        command = getattr(request, "param", LMA)
        lmaload_lma = [sys.executable, "-m", "lmaload", *command, "--address", str(LMA_ADDRESS)]
        server = subprocess.Popen(
            ["ip", "netns", "exec", lma, *lmaload_lma],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            yield mag, lma
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()


def own_run(tmp_path: Path, *args: str) -> tuple[str, ...]:
    results = tmp_path / "results.json"
    return (
        "run",
        "--transport",
        "raw",
        "--lma",
        str(LMA_ADDRESS),
        "--results",
        str(results),
        *args,
    )


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.skipif(shutil.which("dumpcap") is None, reason="dumpcap is not installed")
def test_10000_mns_register_with_a_plain_lma_over_raw_mh(
    hosts: tuple[str, str], tmp_path: Path
) -> None:
    mag, _ = hosts
    pcap = tmp_path / "mag-lma.pcap"
    capture = Dumpcap(mag, "peer", pcap)
    # The generator keeping up is not the point here (and the CPU is shared).
    result = lmaload(
        *own_run(tmp_path, "--mag-prefix", str(MAG_PREFIX), *PLAIN_MAGS, "--allow-lag"),
        "--sync-wait",
        "0",
        *("--mns", str(MNS), "--mags", str(MAGS), "--rate", "2500", "--lifetime", "3600"),
        netns=mag,
    )
    capture.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    config = results["config"]
    assert (config["transport"], config["lma"], config["standby"]) == (
        "raw",
        str(LMA_ADDRESS),
        None,
    )
    assert (config["pbu_order"], config["heartbeats"]) == ("sequence", "off")
    assert config["mag_prefix"] == str(MAG_PREFIX)
    registration = results["registration"]
    assert registration["registered"] == MNS, registration
    assert results["generator"]["drops"] == {}
    assert str(MAG_PREFIX) not in local_routes(mag)  # lmaload's route is gone

    tshark = Tshark(tmp_path / "wireshark-config")
    tshark.config_dir.mkdir()
    assert tshark.malformed_or_erroneous(pcap) == []
    fields = ("-T", "fields", "-e", "mip6.mhtype", "-e", "mip6.ba.status", "-e", "ipv6.src")
    rows = [line.split("\t") for line in tshark.run(pcap, "-Y", "mipv6", *fields).splitlines()]
    pbas = [r for r in rows if r[0] == str(cp.MH_BINDING_ACK)]
    pbus = [r for r in rows if r[0] == str(cp.MH_BINDING_UPDATE)]
    assert len(pbus) >= MNS and len(pbas) >= MNS
    assert {r[1] for r in pbas} == {"0"}
    assert {IPv6Address(r[2]) in MAG_PREFIX for r in pbus} == {True}
    assert tshark.run(pcap, "-Y", FORBIDDEN) == ""
    # The filter is live: it finds a PBU's Timestamp option and a Heartbeat.
    mag_address = MAG_PREFIX.network_address + 1
    canary = [
        encode_mh(BindingUpdate(1, 100, options=(Timestamp(1 << 16),)), mag_address, LMA_ADDRESS),
        encode_mh(Heartbeat(1, 0), mag_address, LMA_ADDRESS),
    ]
    canary_pcap = tmp_path / "canary.pcap"
    frames = [
        ethernet_frame(ipv6_packet(mag_address, LMA_ADDRESS, cp.IPPROTO_MH, m)) for m in canary
    ]
    write_pcap(canary_pcap, [(1.0 + i, frame) for i, frame in enumerate(frames)])
    found = tshark.run(canary_pcap, "-Y", FORBIDDEN, "-T", "fields", "-e", "frame.number")
    assert found.split() == ["1", "2"]


def test_no_route_to_the_lma_is_one_line(hosts: tuple[str, str], tmp_path: Path) -> None:
    mag, _ = hosts
    elsewhere = "fd00:6d61:6706::1"  # no route in the MAG host
    result = lmaload(
        "run", "--transport", "raw", "--lma", elsewhere, "--mns", "10", "--mags", "2", netns=mag
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"lmaload: run: no route to the LMA at {elsewhere} from the MAG address "
        "fd00:6d61:6700::1: Network is unreachable"
    )
    assert str(DEFAULT_MAG_PREFIX) not in local_routes(mag)  # made local, and removed again


def test_a_prefix_made_local_by_the_user_is_left_alone(
    hosts: tuple[str, str], tmp_path: Path
) -> None:
    mag, _ = hosts
    local = ["ip", "-n", mag, "-6", "route", "add", "local", str(MAG_PREFIX), "dev", "lo"]
    subprocess.run(local, check=True)
    result = lmaload(
        *own_run(tmp_path, "--mag-prefix", str(MAG_PREFIX), *PLAIN_MAGS),
        *("--mns", "200", "--mags", "4", "--rate", "400"),
        netns=mag,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "results.json").read_text())["registration"]["registered"] == 200
    assert str(MAG_PREFIX) in local_routes(mag)


def test_without_ip_the_prefix_cannot_be_made_local(hosts: tuple[str, str], tmp_path: Path) -> None:
    mag, _ = hosts
    without_ip = ["ip", "netns", "exec", mag, "env", "PATH=/nonexistent"]
    result = subprocess.run(
        [*without_ip, sys.executable, "-m", "lmaload", *own_run(tmp_path, "--mns", "10")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "lmaload: run: --transport raw needs ip (iproute2, not found on PATH)"
    )


@pytest.mark.parametrize("hosts", [REFERENCE_LMA], indirect=True)
def test_capacity_searches_an_lma_over_raw_mh(hosts: tuple[str, str], tmp_path: Path) -> None:
    """A short search (a ramp capped at 1 000/s): trials register over the raw socket, from
    --mag-prefix, whose route goes with the run."""
    mag, _ = hosts
    path = tmp_path / "capacity.json"
    result = lmaload(
        *("capacity", "--transport", "raw", "--lma", str(LMA_ADDRESS)),
        *("--mag-prefix", str(MAG_PREFIX), "--mags", "10", "--start-rate", "500"),
        *("--max-rate", "1000", "--trial-duration", "1", "--confirm-duration", "1"),
        *("--latency-bound", "1s", "--results", str(path)),
        netns=mag,
    )
    trials = json.loads(path.read_text())["trials"]
    assert trials and all(t["registered"] > 0 for t in trials), result.stderr
    assert str(MAG_PREFIX) not in local_routes(mag)


@pytest.mark.skipif(not IS_ROOT or shutil.which("ip") is None, reason="needs root, iproute2")
def test_the_readme_recipe_works(tmp_path: Path) -> None:
    """The README's raw-MH recipe, run as written but for unique namespace names and lmaload
    from this Python's environment."""
    prefix = f"lmaload-test-{uuid.uuid4().hex[:8]}-"
    recipe = block("raw-own", "sh")
    assert recipe.count("own-") >= 10
    script = recipe.replace("own-", prefix)
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    try:
        done = subprocess.run(
            ["bash", "-ec", script],
            cwd=tmp_path,
            env={**os.environ, "PATH": path},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        registration = json.loads((tmp_path / "results.json").read_text())["registration"]
        assert registration["registered"] == 10_000
    finally:
        for name in netns.namespaces() & {f"{prefix}mag", f"{prefix}lma"}:
            netns.delete(name)


@pytest.mark.parametrize(
    "hosts",
    [(*REFERENCE_LMA, "--role", "standby", "--peer", str(LINK.network_address + 1))],
    indirect=True,
)
def test_sync_streams_to_a_standby_over_raw_mh(hosts: tuple[str, str], tmp_path: Path) -> None:
    """lmaload plays the active LMA from its link address (the standby's peer) and verifies a
    sample from the MAGs of the default prefix, made local for the run."""
    mag, _ = hosts
    path = tmp_path / "sync.json"
    result = lmaload(
        *("sync", "--transport", "raw", "--standby", str(LMA_ADDRESS), "--sessions", "10000"),
        *("--verify", "200", "--results", str(path), "--allow-lag"),
        netns=mag,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sync = json.loads(path.read_text())["sync"]
    assert sync["records_acked"] == {"create": 10_000, "delete": 0, "update": 0}, sync
    assert sync["records_given_up"] == 0, sync
    assert sync["verification"]["verified"] == 200, sync["verification"]
    assert str(DEFAULT_MAG_PREFIX) not in local_routes(mag)


def test_without_root_the_mag_host_says_why_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mag_host.os, "geteuid", lambda: 1000)
    why = "--transport raw needs root (a raw Mobility Header socket, the MAG prefix's route)"
    with pytest.raises(netns.LabError) as raised:
        mag_host.make_local(MAG_PREFIX, [MAG_PREFIX.network_address + 1])
    assert str(raised.value) == why


@pytest.mark.skipif(not IS_ROOT or shutil.which("setpriv") is None, reason="needs root, setpriv")
def test_without_root_raw_is_refused_in_one_line() -> None:
    if as_nobody("-c", "import lmaload.cli").returncode != 0:
        pytest.skip("user nobody cannot import lmaload from here")
    run = as_nobody("-m", "lmaload", "run", "--transport", "raw", "--lma", "fd00::1")
    why = "--transport raw needs root (a raw Mobility Header socket, the MAG prefix's route)"
    assert run.returncode == 1, run.stderr
    assert run.stderr.splitlines()[-1] == f"lmaload: run: {why}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--transport", "raw", "--lma", "127.0.0.1"), "expected an IPv6 address"),
        (("--transport", "raw", "--lma", "[fd00::1]:5436"), "expected an IPv6 address"),
        (("--transport", "raw", "--lma", "fd00::1", "--standby", "127.0.0.2"), "--standby"),
        (("--lma", "fd00::1"), "UDP/5436 over IPv4 (IPv6: --transport raw)"),
        (("--lma", "127.0.0.1", "--mag-prefix", "fd00:1::/64"), "needs --transport raw --lma"),
        (("--mag-prefix", "fd00:1::/64"), "needs --transport raw --lma"),
        (("--transport", "raw", "--lma", "fd00::1", "--mag-prefix", "fd00:1::/64/1"), "prefix"),
        (("--transport", "raw", "--lma", "fd00::1", "--mag-prefix", "2001:db8::/64"), "remote"),
        (("--transport", "raw", "--lma", "2001:db8::1"), "--allow-remote"),
        (("--transport", "raw", "--lma", "fd00::1", "--mag-prefix", "fd00::/126"), "fewer"),
        (("--transport", "raw", "--lma", "fd00::1", "--pcap", "x.pcap"), "--pcap"),
        (("--lab", "--lma", "fd00::1", "--transport", "raw"), "--lab runs the embedded pair"),
        (
            ("--transport", "raw", "--lma", "fd00::1", "--shard", "1/2", "--start-at", "1"),
            "one generator process",
        ),
    ],
)
def test_bad_raw_target_options_exit_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    result = lmaload("run", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("lmaload: run: ") and result.stderr.count("\n") == 1
    assert message in result.stderr, result.stderr


def test_capacity_and_population_take_the_same_forms() -> None:
    bad = lmaload("capacity", "--transport", "raw", "--lma", "127.0.0.1")
    assert bad.returncode == 2 and "expected an IPv6 address" in bad.stderr, bad.stderr
    alone = lmaload("capacity", "--transport", "raw")
    assert alone.returncode == 2 and "needs --lma" in alone.stderr, alone.stderr
    listed = lmaload("population", "--mns", "2", "--mags", "2", "--mag-prefix", str(MAG_PREFIX))
    assert listed.returncode == 0, listed.stderr
    assert f",{MAG_PREFIX.network_address + 2}," in listed.stdout
