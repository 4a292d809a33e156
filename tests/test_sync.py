"""``lmaload sync``: the record plan, the batch framing, the sans-IO sender and verifier against a
reference standby ``LmaEngine`` on the simulated network (lossy links: retransmissions, nothing
given up; a restarted standby's SS-REQ answered with a full sync; failover PBUs verified with the
SO-REQ answered), and the command end to end against the embedded standby and a throttled one.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import numpy as np
import pytest
from lmaload._ext.framing import frame_between as frame_batch
from prometheus_client.parser import text_string_to_metric_families

from lmaload.lma_pair import free_port
from lmaload.population import PopulationSpec, generate
from lmaload.protocol import LmaConfig, LmaEngine
from lmaload.protocol.binding_cache import BceState
from lmaload.protocol.datagrams import Datagrams
from lmaload.sim import LinkProfile, Simulator
from lmaload.sync.metrics import SyncMetrics
from lmaload.sync.plan import CREATE, DELETE, UPDATE, build_plan
from lmaload.sync.sender import SenderConfig, SyncSender
from lmaload.sync.verify import Verifier, VerifyConfig
from lmaload.transport.udp5436 import unframe
from lmaload.wire.ipv6 import frame
from tests.lma_children import LmaProcess, wait_for

ACTIVE = IPv6Address("2001:db8:ffff::a")
STANDBY = IPv6Address("2001:db8:ffff::b")
TIMEOUT = 120.0


def test_plan_orders_each_sessions_records() -> None:
    plan = build_plan(1000, update_ratio=1.5, delete_ratio=0.2, seed=3)
    assert list(plan.counts) == [1000, 1500, 200]
    assert plan.live.sum() == 800
    for row in (0, 17, 999):
        mine = np.nonzero(plan.row == row)[0]
        kinds = plan.kind[mine]
        assert kinds[0] == CREATE and (kinds[1:] != CREATE).all()
        assert DELETE not in kinds[:-1]
        assert list(plan.seq[mine]) == list(range(1, len(mine) + 1))
        assert (kinds[-1] == DELETE) == (not plan.live[row])
    assert set(np.unique(plan.kind)) == {CREATE, UPDATE, DELETE}


def test_frame_batch_matches_the_transport() -> None:
    messages = [bytes([59, i, 0, 0, 0, 0]) + bytes(2 + 8 * i) for i in range(5)]
    offsets = np.zeros(6, dtype=np.int64)
    np.cumsum([len(m) for m in messages], out=offsets[1:])
    buf, out_offsets = frame_batch(
        np.frombuffer(b"".join(messages), np.uint8), offsets, ACTIVE, STANDBY
    )
    for i, m in enumerate(messages):
        assert buf[out_offsets[i] : out_offsets[i + 1]].tobytes() == frame(m, ACTIVE, STANDBY)


class SenderNode:
    """A SyncSender on the simulator: datagrams framed in, unframed out."""

    def __init__(self, sender: SyncSender) -> None:
        self.sender = sender

    def receive(self, datagrams: Datagrams, now: float) -> None:
        payloads = [frame(d.data, d.src, d.dst) for d in datagrams]
        offsets = np.zeros(len(payloads) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in payloads], out=offsets[1:])
        self.sender.receive(np.frombuffer(b"".join(payloads), np.uint8), offsets, now)

    def datagrams_to_send(self) -> Datagrams:
        out = Datagrams()
        for buf, offsets in self.sender.datagrams_to_send():
            for i in range(len(offsets) - 1):
                out.extend([unframe(buf[offsets[i] : offsets[i + 1]].tobytes())])
        return out

    def next_timer(self) -> float | None:
        return self.sender.next_timer()

    def handle_timer(self, now: float) -> None:
        self.sender.handle_timer(now)


def standby_engine(now: float) -> LmaEngine:
    return LmaEngine(LmaConfig(address=STANDBY, peers=(ACTIVE,), role="standby"), now)


def synced_rows(engine: LmaEngine, pop, rows: np.ndarray) -> int:
    """How many of ``rows`` the standby holds as synced, with the session's MAG."""
    found = 0
    for row in rows:
        prefix = IPv6Network((IPv6Address(pop.mns["hnp"][row].tobytes()), 64))
        at = engine.cache.by_prefix(prefix)
        if at is not None and engine.cache.state(at) is BceState.SYNCED:
            mag = pop.mag_address6(int(pop.mns["mag"][row]))
            found += engine.cache.get(at, "proxy_coa") == mag
    return found


def simulate(link: LinkProfile, sessions: int = 3000, **sender: object):
    sim = Simulator(seed=1, default_link=link)
    pop = generate(PopulationSpec(mns=sessions, mags=20, seed=1))
    plan = build_plan(sessions, update_ratio=0.5, delete_ratio=0.1, seed=1)
    config = SenderConfig(address=ACTIVE, standby=STANDBY, **sender)  # type: ignore[arg-type]
    node = SenderNode(SyncSender(pop, plan, config, sim.now))
    sim.add_node("standby", standby_engine(sim.now), [STANDBY])
    sim.add_node("lmaload", node, [ACTIVE])
    deadline = sim.now + 300
    while not node.sender.done and sim.now < deadline:
        sim.run_for(0.5)
    return sim, pop, plan, node.sender


@pytest.mark.parametrize(
    "mode", [{"window": 32}, {"rate": 5000.0, "window": None, "ack": True}], ids=["window", "rate"]
)
def test_lossy_link_retransmits_and_loses_nothing(mode) -> None:
    sim, pop, plan, sender = simulate(LinkProfile(delay=0.002, loss=0.1, reorder=0.05), **mode)
    c = sender.counters
    assert sender.done
    assert c.ss_rep_retransmitted > 0 and c.records_given_up == 0
    assert list(c.records_acked) == list(plan.counts)
    assert c.ss_req_received >= 1  # the standby's SS-REQ on our first HELLO
    standby = sim.endpoint("standby")
    assert isinstance(standby, LmaEngine)
    live = np.nonzero(plan.live)[0]
    assert synced_rows(standby, pop, live) == len(live)
    # No record overtakes an earlier one of its session: no create retransmitted after the
    # session's delete brings it back.
    assert synced_rows(standby, pop, np.nonzero(~plan.live)[0]) == 0
    assert sender.latency.total + sender.latency.overflow == c.ss_rep_sent  # each acked once


def test_restarted_standby_gets_a_full_sync() -> None:
    sim, pop, plan, sender = simulate(LinkProfile(delay=0.002), sessions=2000)
    live = np.nonzero(plan.live)[0]
    sim.restart("standby", standby_engine(sim.now))
    sim.run_for(3.0)
    standby = sim.endpoint("standby")
    assert isinstance(standby, LmaEngine)
    assert synced_rows(standby, pop, live) == len(live)
    assert sender.counters.ss_req_received == 2
    assert sender.counters.full_sync_sessions == len(live)


class VerifierNode:
    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    def receive(self, datagrams: Datagrams, now: float) -> None:
        self.verifier.receive(datagrams, now)

    def datagrams_to_send(self) -> Datagrams:
        return self.verifier.datagrams_to_send()

    def next_timer(self) -> float | None:
        return self.verifier.next_timer()

    def handle_timer(self, now: float) -> None:
        self.verifier.handle_timer(now)


def test_verifier_finds_synced_sessions_and_misses_deleted_ones() -> None:
    sim, pop, plan, sender = simulate(LinkProfile(delay=0.002), sessions=1000)
    deleted = np.nonzero(~plan.live)[0][:20]
    sample = np.concatenate([np.nonzero(plan.live)[0][::10], deleted])
    verifier = Verifier(pop, sample, VerifyConfig(STANDBY, ACTIVE), sim.now)
    mags = {pop.mag_address6(m) for m in range(len(pop.mags))}
    sim.add_node("mags", VerifierNode(verifier), mags)
    while not verifier.done:
        sim.run_for(0.5)
    summary = verifier.summary()
    assert summary["verified"] == len(sample) - len(deleted)
    assert summary["missing"] == len(deleted) and summary["refused_status"] == {"153": 20}
    assert summary["unanswered"] == summary["wrong_prefix"] == 0
    assert sender.counters.so_req_answered == len(mags)  # one takeover per MAG
    assert sender.counters.sw_comp_received == len(mags)


# --- the command -------------------------------------------------------------------------------


def run_sync(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lmaload", "sync", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_sync_against_the_embedded_standby_verifies_every_session(tmp_path) -> None:
    path = tmp_path / "results.json"
    result = run_sync(
        *("--sessions", "4000", "--verify", "4000", "--update-ratio", "0.5"),
        *("--delete-ratio", "0.1", "--results", str(path)),
    )
    assert result.returncode == 0, result.stderr
    assert "sessions" in result.stdout and "verification" in result.stdout
    results = json.loads(path.read_text())
    assert results["schema_version"] == 2 and results["config"]["standby"] == "embedded"
    s = results["sync"]
    assert s["records"] == {"create": 4000, "update": 2000, "delete": 400}
    assert s["records_acked"] == s["records"] and s["records_given_up"] == 0
    assert s["records_unsettled"] == s["records_not_sent"] == 0
    assert sum(s["acked_per_second"]) == 6400
    assert s["sessions_per_second"] == 4000 / s["duration"]
    assert s["sessions_per_second"] > 0 and s["ss_ack_latency_us"]["histogram"]
    v = s["verification"]
    assert v["sampled"] == 3600 and v["verified"] == 3600
    assert s["standby"]["sessions_applied"] >= 6000  # creates and updates (deletes uncounted)
    assert results["generator"]["cpu_share"] > 0


def test_throttled_standby_shows_retransmissions_not_loss(tmp_path) -> None:
    """The standby stopped (SIGSTOP) for PAUSE seconds mid-stream: nothing is acknowledged
    meanwhile, so the stream takes at least that long, the sender retransmits, and every record
    is acknowledged and every sampled session verified in the end."""
    pause = 2.0
    host, port = "127.0.0.12", free_port("127.0.0.12")
    me, my_port = "127.0.0.22", free_port("127.0.0.22")
    standby = LmaProcess.spawn(
        tmp_path, "standby", host, port, "--role", "standby", "--peer", f"{me}:{my_port}"
    )
    path = tmp_path / "results.json"
    try:
        sync = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lmaload",
                "sync",
                *("--standby", f"{host}:{port}", "--listen", f"{me}:{my_port}"),
                *("--sessions", "30000", "--rate", "15000", "--ack", "--verify", "2000"),
                "--allow-lag",  # a shared machine: lag is not what this test is about
                *("--results", str(path)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: standby.metric("lmaload_lma_sessions_synced_in_total") > 0, "sync")
        standby.proc.send_signal(signal.SIGSTOP)
        time.sleep(pause)
        standby.proc.send_signal(signal.SIGCONT)
        out, err = sync.communicate(timeout=TIMEOUT)
    finally:
        standby.proc.send_signal(signal.SIGCONT)
        standby.kill()
    assert sync.returncode == 0, err
    s = json.loads(path.read_text())["sync"]
    assert s["ss_rep_retransmissions"] > 0
    assert s["records_given_up"] == 0 and s["records_acked"]["create"] == 30000
    assert s["duration"] >= pause
    assert s["verification"]["verified"] == 2000
    print(out)


@pytest.mark.parametrize(
    "args",
    [
        ("--rate", "100", "--window", "4"),
        ("--ack",),
        ("--delete-ratio", "1.5"),
        ("--standby", "not-an-address"),
        ("--standby", "192.0.2.1"),  # not local
        ("--no-such-option",),
    ],
)
def test_bad_options_exit_2_with_one_line(args) -> None:
    result = run_sync(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("lmaload: sync: ") and result.stderr.count("\n") == 1


def test_silent_standby_is_one_line(tmp_path) -> None:
    port = free_port("127.0.0.1")  # nobody listens there
    result = run_sync(
        *("--standby", f"127.0.0.1:{port}", "--listen", "127.0.0.1:0", "--hello-timeout", "1"),
        *("--results", str(tmp_path / "r.json")),
    )
    assert result.returncode == 1
    assert result.stderr.strip().endswith("did not answer HA-HELLO within 1 s")
    assert "Traceback" not in result.stderr
    assert Path(tmp_path / "r.json").exists() is False


def test_metrics_follow_the_conventions() -> None:
    _, _, plan, sender = simulate(LinkProfile(delay=0.002), sessions=500, rate=2000.0, window=None)
    metrics = SyncMetrics()
    metrics.observe(sender, None, sender.last_ack or 0.0)
    text = metrics.exposition()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert all(name.startswith("lmaload_sync_") for name in families)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    acked = plan.counts
    assert samples[("lmaload_sync_records_acked_total", (("kind", "create"),))] == acked[0]
    assert samples[("lmaload_sync_records_acked_total", (("kind", "update"),))] == acked[1]
    assert families["lmaload_sync_ss_ack_latency_seconds"].type == "histogram"
    count = samples[("lmaload_sync_ss_ack_latency_seconds_count", ())]
    assert count == sender.counters.ss_rep_sent
    infinity = samples[("lmaload_sync_ss_ack_latency_seconds_bucket", (("le", "+Inf"),))]
    assert infinity == count
    assert samples[("lmaload_sync_generator_lag_seconds_count", ())] == len(plan)
