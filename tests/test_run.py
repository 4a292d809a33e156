"""``lmaload run`` end to end: an embedded LMA pair on loopback, 2,000 sessions over 20 MAGs
registered with before-ack sync, the active killed, every session kept at the standby (and a
Pushgateway that does not answer only warned about); the same
against "the user's own" LMAs (``lmaload lma`` processes the test starts) with ``--fail-cmd``, a
registration-only run, a plain RFC 5213 LMA (``lmaload lma --plain``) rehearsed against and
restarted, and an LMA that does not answer; the ``--pcap`` sample read back by
tshark; the one-line exit 2 on bad options, and exit 1 when /metrics cannot be served."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest

from lmaload.lma_pair import free_port
from tests.conftest import USER_ACTIVE
from tests.lma_children import LmaProcess, wait_for

TIMEOUT = 120.0
LMALOAD = (sys.executable, "-m", "lmaload")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LMALOAD, "run", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_before_ack_failover_keeps_every_session(tmp_path) -> None:
    path = tmp_path / "tmp" / "results.json"
    gateway = f"127.0.0.1:{free_port('127.0.0.1')}"  # nothing listens there
    result = run_cli(
        *("--mns", "2000", "--mags", "20", "--rate", "1000", "--sync", "before-ack"),
        *("--results", str(path), "--allow-lag"),  # a busy machine may delay the sender
        *("--pushgateway", gateway),
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("lmaload:")]
    assert warnings == [
        f"lmaload: run: warning: could not push the metrics to {gateway}: "
        "[Errno 111] Connection refused"
    ]
    assert "takeover" in result.stdout and "registration rate" in result.stdout
    results = json.loads(path.read_text())
    assert results["schema_version"] == 2
    assert {"config", "registration", "takeover", "generator"} <= results.keys()
    assert results["config"]["mns"] == 2000 and results["config"]["sync"] == "before-ack"
    assert "lmaload" in results["config"]["versions"]
    registration = results["registration"]
    assert registration["registered"] == 2000 and registration["rejected"] == 0
    assert registration["given_up"] == registration["unanswered"] == registration["not_sent"] == 0
    assert registration["completed"] == sum(registration["per_second"]) == 2000
    # 2 000 at 1 000/s: the last send 1.999 s in, and the window ends at the last PBA after it
    # (its round trip may take less than a millisecond).
    assert 1.999 <= registration["window"] < 3.0
    assert registration["achieved_rate"] == 2000 / registration["window"]
    assert registration["latency_us"]["histogram"]
    assert registration["pba_status"]["0"] >= 2000
    takeover = results["takeover"]
    assert takeover["summary"]["lost"] == 0 and takeover["summary"]["pending"] == 0
    assert takeover["summary"]["kept"] == takeover["summary"]["at_risk"] == 2000
    assert takeover["summary"]["not_attempted"] == 0
    rows = takeover["mags"]
    assert [r["mag"] for r in rows] == list(range(20))
    assert all(r["detection"] is not None and r["takeover"] is not None for r in rows)
    assert sum(r["kept"] for r in rows) == 2000
    assert 0 <= results["generator"]["behind_schedule"] <= 1


def test_virtual_switch_takeover_is_measured(tmp_path) -> None:
    """The standby takes the LMAA; the MAGs refresh as soon as it answers, so every session's
    fate and every MAG's takeover time are known when the run ends."""
    path = tmp_path / "results.json"
    result = run_cli(
        *("--mns", "1000", "--mags", "10", "--rate", "1000", "--mode", "virtual"),
        *("--results", str(path), "--allow-lag"),
    )
    assert result.returncode == 0, result.stderr
    takeover = json.loads(path.read_text())["takeover"]
    summary = takeover["summary"]
    assert (summary["kept"], summary["lost"], summary["pending"]) == (1000, 0, 0)
    assert summary["takeover"]["count"] == 10
    assert all(r["takeover"] > r["detection"] for r in takeover["mags"])


@pytest.mark.parametrize(
    "args",
    [
        ("--rate", "0"),
        ("--mns", "many"),
        ("--mode", "cold"),
        ("--sync", "never"),
        ("--no-such-option",),
        ("--standby", "127.0.0.1"),
        ("--fail-cmd", "true"),
        ("--lma", "192.0.2.1"),
        ("--lma", "::1"),
        ("--lma", "127.0.0.1", "--fail-cmd", "true"),
        ("--lma", "127.0.0.1", "--standby", "127.0.0.2", "--mode", "virtual"),
        ("--metrics-port", "0"),
        ("--metrics-port", "65536"),
        ("--lma", "127.0.0.1", "--lma-metrics-port", "9401"),
    ],
)
def test_bad_options_exit_2_with_one_line(args) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("lmaload: run: ") and result.stderr.count("\n") == 1


def test_metrics_port_in_use_exits_1_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--metrics-port", str(port))
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"lmaload: run: cannot serve /metrics on 127.0.0.1:{port}: Address already in use\n"
    )


def test_duration_holds_the_population_refreshing_before_the_failure(tmp_path) -> None:
    path = tmp_path / "results.json"
    result = run_cli(
        *("--mns", "500", "--mags", "5", "--rate", "1000", "--lifetime", "8", "--duration", "6"),
        *("--results", str(path), "--allow-lag"),
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(path.read_text())
    assert results["refresh_latency_us"]["count"] >= 500 and "refreshes" in result.stdout
    assert results["takeover"]["failure_at"] - results["registration"]["start"] > 6
    assert results["takeover"]["summary"]["kept"] == 500


def test_exit_status_names_what_failed() -> None:
    """1 when the generator fell behind by more than 1 % (unless --allow-lag), mobile nodes
    were left unregistered or were rejected, no MAG detected the failure, the failover
    accounting does not add up, or sessions were lost or left pending with before-ack sync;
    async losses are reported, not failed."""
    from lmaload.run_checks import exit_status

    def document(
        behind: float,
        lost: int,
        allow_lag: bool = False,
        sync: str = "before-ack",
        unanswered: int = 0,
        detected: int = 10,
        at_risk: int | None = None,
        cut: bool = False,
        rejected: int = 0,
    ):
        kept = 100 - lost
        return {
            "config": {"allow_lag": allow_lag, "sync": sync},
            "generator": {"behind_schedule": behind},
            "registration": {
                "sessions": 100 + unanswered,
                "given_up": 0,
                "unanswered": unanswered,
                "not_sent": 0,
                "rejected": rejected,
                "rejected_by_status": {"130": rejected} if rejected else {},
                "cut_by_failure": cut,
            },
            "takeover": {
                "failure_at": 1.0,
                "summary": {
                    "detection": {"count": detected},
                    "at_risk": 100 if at_risk is None else at_risk,
                    "kept": kept,
                    "lost": lost,
                    "pending": 0,
                    "not_attempted": 0,
                },
            },
        }

    assert exit_status(document(0.01, 0)) == (0, [])
    assert exit_status(document(0.2, 0)) == (
        1,
        ["the generator fell behind schedule for 20.0% of registrations"],
    )
    assert exit_status(document(0.2, 0, allow_lag=True)) == (0, [])
    assert exit_status(document(0.0, 3)) == (1, ["3 sessions lost with before-ack sync"])
    assert exit_status(document(0.0, 3, sync="async")) == (0, [])
    assert exit_status(document(0.0, 0, unanswered=7)) == (
        1,
        ["7 of 107 mobile nodes were not registered (0 given up, 7 unanswered)"],
    )
    assert exit_status(document(0.0, 0, unanswered=7, cut=True)) == (0, [])
    assert exit_status(document(0.0, 0, rejected=5)) == (
        1,
        ["the LMA rejected 5 of 100 mobile nodes (status 130: 5)"],
    )
    assert exit_status(document(0.0, 0, detected=0)) == (
        1,
        ["no MAG detected the failure of the active LMA"],
    )
    assert exit_status(document(0.0, 0, at_risk=101)) == (
        1,
        [
            "the failover accounting does not add up: 101 sessions at risk, 100 kept, "
            "0 lost, 0 pending, 0 not_attempted"
        ],
    )


def test_user_lmas_failed_by_fail_cmd(user_pair, tmp_path) -> None:
    active, standby = user_pair
    path = tmp_path / "results.json"
    result = run_cli(
        *("--mns", "1000", "--mags", "10", "--rate", "1000", "--sync-wait", "1", "--allow-lag"),
        *("--lma", f"{active.host}:{active.port}", "--standby", f"{standby.host}:{standby.port}"),
        *("--fail-cmd", f"kill -9 {active.proc.pid}", "--results", str(path)),
    )
    assert result.returncode == 0, result.stderr
    assert "fixed: the standby is not observed" in result.stdout
    results = json.loads(path.read_text())
    assert results["config"]["lma"].endswith(f"@{active.host}:{active.port}")
    assert results["config"]["fail_cmd"] == f"kill -9 {active.proc.pid}"
    assert results["registration"]["registered"] == 1000
    assert results["registration"]["sync_complete"] is None
    summary = results["takeover"]["summary"]
    assert (summary["kept"], summary["lost"], summary["pending"]) == (1000, 0, 0)
    assert active.proc.wait(5) == -9
    # The standby's /metrics snapshot is up to a tick (0.25 s) behind its binding cache.
    wait_for(
        lambda: standby.metric("lmaload_lma_binding_cache_entries", state="active") == 1000,
        "the standby to show the sessions taken over",
        timeout=5.0,
    )


def test_user_lma_without_fail_cmd_measures_registration_only(user_pair, tmp_path) -> None:
    active, _ = user_pair
    path = tmp_path / "results.json"
    result = run_cli(
        *("--mns", "500", "--mags", "5", "--rate", "1000", "--sync-wait", "0", "--allow-lag"),
        *("--lma", f"{active.host}:{active.port}", "--results", str(path)),
    )
    assert result.returncode == 0, result.stderr
    assert "none injected" in result.stdout
    results = json.loads(path.read_text())
    assert results["registration"]["registered"] == 500
    assert results["takeover"]["failure_at"] is None and active.running


@pytest.mark.parametrize("heartbeats", ["off", "auto"])
def test_rehearsal_against_a_plain_lma_and_its_restart(tmp_path, heartbeats: str) -> None:
    """``lmaload lma --plain`` as the user's LMA: sequence-number PBUs and heartbeats off (or
    auto, turned off in one line by the first Binding Error 2) register every MN with no
    standby; restarted, the LMA has no binding and registers the same MNs again."""
    port = free_port(USER_ACTIVE)
    args = (
        *("--mns", "500", "--mags", "5", "--rate", "1000", "--sync-wait", "0", "--allow-lag"),
        *("--lma", f"{USER_ACTIVE}:{port}", "--pbu-order", "sequence"),
        *("--heartbeats", heartbeats, "--results", str(tmp_path / "results.json")),
    )
    for life in ("first", "restarted"):
        lma = LmaProcess.spawn(tmp_path, life, USER_ACTIVE, port, "--plain")
        try:
            wait_for(lambda lma=lma: lma.metric("lmaload_lma_role", role="active"), "the LMA")
            assert lma.metric("lmaload_lma_binding_cache_entries", state="active") == 0
            result = run_cli(*args)
            assert result.returncode == 0, result.stderr
            fallback = [line for line in result.stderr.splitlines() if "Binding Error" in line]
            assert fallback == (
                [
                    "an LMA answers RFC 5847 heartbeats with Binding Error status 2 (it has no "
                    "heartbeats): going on without them"
                ]
                if heartbeats == "auto"
                else []
            )
            results = json.loads((tmp_path / "results.json").read_text())
            assert results["registration"]["registered"] == 500
            assert not results["registration"]["peer_quirks"].get("hnp_all_zero")
            wait_for(
                lambda lma=lma: (
                    lma.metric("lmaload_lma_binding_cache_entries", state="active") == 500
                ),
                "the LMA's bindings",
                timeout=5.0,
            )
            assert lma.metric("lmaload_lma_heartbeat_requests_answered_total") == 0
            # A heartbeat or two (MAGs 10 ms apart) went out before the first Binding Error.
            answered = lma.metric("lmaload_lma_drops_total", reason="unknown_type")
            assert answered >= 1 if heartbeats == "auto" else answered == 0
        finally:
            lma.kill()


@pytest.mark.parametrize(
    ("heartbeats", "expected"),
    [
        (
            "on",
            "no heartbeat response from the LMA at {} within 15 s: is it running, and does it "
            "answer RFC 5847 heartbeats (else --heartbeats off)?",
        ),
        ("off", "no PBA from the LMA at {} within 15 s: is it running, and does it answer PBUs?"),
    ],
)
def test_silent_lma_is_reported_in_one_line(heartbeats: str, expected: str) -> None:
    port = free_port(USER_ACTIVE)  # nothing listens there
    result = run_cli(
        *("--mns", "10", "--mags", "1", "--lma", f"{USER_ACTIVE}:{port}"),
        *("--heartbeats", heartbeats),
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "lmaload: run: " + expected.format(
        f"{USER_ACTIVE}:{port}"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_pcap_sample_decodes_in_tshark(tmp_path) -> None:
    """The sample holds the MAGs' PBUs, PBAs and heartbeats and the LMAs' messages to each other
    (State Sync, HA-HELLO, the SO-REQ/SO-REP of the takeover), none malformed."""
    pcap, path = tmp_path / "sample.pcap", tmp_path / "results.json"
    result = run_cli(
        *("--mns", "1000", "--mags", "10", "--rate", "1000", "--allow-lag"),
        *("--pcap", str(pcap), "--results", str(path)),
    )
    assert result.returncode == 0, result.stderr
    sample = json.loads(path.read_text())["pcap"]
    assert f"tshark -r {pcap}" in result.stdout and sample["frames"] > 0
    decode = [arg for port in sample["udp_ports"] for arg in ("-d", f"udp.port=={port},ipv6")]
    wanted = ("mip6.mhtype", "ip.src", "ip.dst", "_ws.malformed")
    fields = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), *decode, "-T", "fields"]
        + [arg for field in wanted for arg in ("-e", field)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(fields) == sample["frames"]
    rows = [line.split("\t") for line in fields]
    assert not [r for r in rows if r[3]], "malformed frames"
    lmas = Counter(r[0] for r in rows if "127.1." not in r[1] + r[2])
    mags = Counter(r[0] for r in rows if "127.1." in r[1] + r[2])
    assert {"5", "6", "13"} <= mags.keys()  # PBU, PBA, heartbeat
    assert {"200", "201", "202"} <= lmas.keys()  # State Sync, HA Control, HA-HELLO


def test_shards_share_the_run_and_merge_exactly(user_pair, tmp_path) -> None:
    """Two generator processes, each half of the MNs, MAGs and rate, start together against the
    same pair; shard 0 fails the active at the shared instant (the command given to both runs
    once); ``lmaload merge`` adds them up into the whole run."""
    active, standby = user_pair
    marker = tmp_path / "failed"
    start = time.time() + 4
    common = (
        *("--mns", "1000", "--mags", "10", "--rate", "1000", "--allow-lag"),
        *("--lma", f"{active.host}:{active.port}", "--standby", f"{standby.host}:{standby.port}"),
        *("--start-at", str(start), "--fail-at", "3"),
        *("--fail-cmd", f"echo x >> {marker}; kill -9 {active.proc.pid}"),
    )
    shards = [
        subprocess.Popen(
            [
                *LMALOAD,
                "run",
                *common,
                "--shard",
                f"{i}/2",
                "--results",
                f"{tmp_path}/shard{i}.json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for shard in shards:
        _, err = shard.communicate(timeout=TIMEOUT)
        assert shard.returncode == 0, err
    assert marker.read_text() == "x\n"
    parts = [json.loads((tmp_path / f"shard{i}.json").read_text()) for i in range(2)]
    assert [p["registration"]["sessions"] for p in parts] == [500, 500]
    assert [r["mag"] for r in parts[1]["takeover"]["mags"]] == list(range(5, 10))
    merged_path = tmp_path / "merged.json"
    result = subprocess.run(
        [
            *LMALOAD,
            "merge",
            f"{tmp_path}/shard1.json",
            f"{tmp_path}/shard0.json",
            "--results",
            str(merged_path),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    merged = json.loads(merged_path.read_text())
    assert merged["config"]["shards"] == 2
    registration = merged["registration"]
    assert registration["sessions"] == registration["registered"] == 1000
    assert registration["latency_us"]["count"] == sum(
        p["registration"]["latency_us"]["count"] for p in parts
    )
    summary = merged["takeover"]["summary"]
    assert (summary["kept"], summary["lost"], summary["pending"]) == (1000, 0, 0)
    assert merged["takeover"]["failure_at"] == start + 3
    assert [r["mag"] for r in merged["takeover"]["mags"]] == list(range(10))
    assert summary["takeover"]["count"] == 10
    generator = merged["generator"]
    assert generator["scheduled_sends"] == sum(p["generator"]["scheduled_sends"] for p in parts)

    again = subprocess.run(
        [
            *LMALOAD,
            "merge",
            f"{tmp_path}/shard0.json",
            f"{tmp_path}/shard0.json",
            "--results",
            f"{tmp_path}/bad.json",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert again.returncode == 1
    assert again.stderr.startswith("lmaload: merge: shards ") and again.stderr.count("\n") == 1
