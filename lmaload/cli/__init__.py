"""The ``lmaload`` command line (click): one group (``group``), one module per command, and the
options several commands share."""

from lmaload.cli import (  # noqa: F401
    bench,
    capacity,
    compare,
    decode,
    k8s,
    lab,
    lma,
    merge,
    population,
    report,
    run,
    sync,
)
from lmaload.cli.group import main

__all__ = ["main"]
