"""``python -m lmaload``: the same command line as the ``lmaload`` script."""

from lmaload.cli import main

main()
