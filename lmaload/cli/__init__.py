"""The ``lmaload`` command line (click): one group (``group``), one module per command, and the
options several commands share."""

from lmaload.cli import bench, capacity, decode, lab, lma, merge, run, sync  # noqa: F401
from lmaload.cli.group import main

__all__ = ["main"]
