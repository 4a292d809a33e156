"""The generator's Prometheus metrics (``lmaload.generator_metrics``): a real MAG engine on the
deterministic simulator, through a registration and an LMA crash, read back from the text
exposition; and the HdrHistogram-to-classic-bucket conversion against the exact values."""

from __future__ import annotations

import numpy as np
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lmaload.generator_metrics import GeneratorMetrics
from lmaload.measure.histogram import Histogram
from lmaload.metrics import BUCKETS, hdr_buckets
from lmaload.sim import Simulator
from lmaload.transport.mag_loop import MagLoop, MagTransport
from tests.test_mag_engine import CLEAN, lma_pair, mag_engine

MNS, MAGS = 400, 8


def samples(metrics: GeneratorMetrics) -> dict[tuple[str, tuple], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_failover_as_the_metrics_tell_it() -> None:
    sim = Simulator(default_link=CLEAN)
    lma_pair(sim)
    engine = mag_engine(sim, MNS, MAGS, heartbeat_interval=0.2)
    loop = MagLoop(engine, MagTransport(engine.pop, {}))  # its counters, not its socket
    metrics = GeneratorMetrics(MNS, MAGS, 1000.0)
    try:
        before = samples(metrics)
        assert before[("lmaload_phase", (("phase", "start"),))] == 1
        assert before[("lmaload_registration_latency_seconds_count", (("kind", "register"),))] == 0
        assert before[("lmaload_failover_takeover_seconds_count", ())] == 0

        sim.run_for(1.5)
        metrics.observe(engine, loop, "register")
        registered = samples(metrics)
        assert registered[("lmaload_registrations_total", ())] == MNS
        assert registered[("lmaload_sessions", (("state", "registered"),))] == MNS
        assert registered[("lmaload_pbas_received_total", (("status", "0"),))] == MNS
        assert registered[("lmaload_pbus_sent_total", ())] == engine.counters.pbu_sent
        inf = (("kind", "register"), ("le", "+Inf"))
        assert registered[("lmaload_registration_latency_seconds_bucket", inf)] == MNS
        assert engine.latency["register"].total == MNS
        assert registered[("lmaload_target_registrations_per_second", ())] == 1000.0
        assert registered[("lmaload_heartbeat_rtt_seconds_count", ())] > 0

        sim.crash("lma1")
        engine.mark_failure(sim.now)
        metrics.observe(engine, loop, "failover")
        at_failure = samples(metrics)
        assert at_failure[("lmaload_takeover_sessions", (("fate", "not_attempted"),))] == MNS
        assert at_failure[("lmaload_takeover_sessions", (("fate", "pending"),))] == 0
        sim.run_for(12)
        metrics.observe(engine, loop, "done")
        after = samples(metrics)
    finally:
        loop.close()
    assert after[("lmaload_phase", (("phase", "done"),))] == 1
    assert after[("lmaload_phase", (("phase", "failover"),))] == 0
    assert after[("lmaload_takeover_sessions", (("fate", "kept"),))] == MNS
    assert after[("lmaload_takeover_sessions", (("fate", "pending"),))] == 0
    meter = engine.takeover
    for name, values in (("detection", meter.detection), ("takeover", meter.takeover)):
        assert after[(f"lmaload_failover_{name}_seconds_count", ())] == MAGS
        assert np.isclose(after[(f"lmaload_failover_{name}_seconds_sum", ())], values.sum())
        for bound in BUCKETS:
            key = (f"lmaload_failover_{name}_seconds_bucket", (("le", str(bound)),))
            assert after[key] == (values <= bound).sum()
    assert after[("lmaload_heartbeats_missed_total", ())] > 0
    assert after[("lmaload_heartbeat_pairs_down", ())] == MAGS  # every MAG sees LMA1 down


def test_latency_buckets_match_the_recorded_values_within_the_histograms_precision() -> None:
    rng = np.random.default_rng(1)
    values = np.rint(rng.lognormal(np.log(3000), 1.5, 50_000)).astype(np.int64)  # µs
    histogram = Histogram()
    histogram.record(values)
    histogram.record(np.array([70_000_000]))  # above the 60-s range: +Inf only
    buckets, total = hdr_buckets(histogram)
    assert buckets[-1] == ("+Inf", len(values) + 1)
    for (le, count), bound in zip(buckets, BUCKETS, strict=False):
        assert le == str(bound)
        bound_us = bound * 1e6
        assert (values <= bound_us).sum() <= count <= (values <= bound_us * 1.001).sum()
    exact = values.sum() / 1e6 + 60.0
    assert abs(total - exact) <= 0.001 * exact
