"""``lmaload lma`` child processes for the tests: ``lmaload.lma_pair.LmaChild`` (the one
``lmaload run`` starts) with every /metrics sample at hand, and ``wait_for`` to poll them.

Used by tests/test_lma_process.py and, inside a network namespace, by tests/test_lma_raw.py.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from lmaload.lma_pair import LmaChild


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    """``condition()`` once it is true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class LmaProcess(LmaChild):
    """``lmaload lma`` listening on ``host``:``port``; stderr goes to ``<name>.log`` in ``tmp``
    (no pipe to fill). /metrics is read without any proxy, and a dead LMA fails the read."""

    _no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def spawn(
        cls, tmp: Path, name: str, host: str, port: int, *args: str, metrics_port: int | None = None
    ) -> LmaProcess:
        child = cls.start(name, host, port, tmp, list(args), metrics_port)
        assert isinstance(child, LmaProcess)
        return child

    @property
    def outer(self) -> tuple[str, int]:
        return self.host, self.port

    def metrics(self) -> dict[tuple[str, tuple], float]:
        """Samples by (name, sorted labels); empty while the endpoint is not up."""
        try:
            text = self._no_proxy.open(self.metrics_url, timeout=2).read().decode()
        except OSError:
            assert self.proc.poll() is None, self.log.read_text()
            return {}
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        """One sample; 0.0 while absent or while the endpoint is not up."""
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)
