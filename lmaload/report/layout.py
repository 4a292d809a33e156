"""Where a report's plots are on its page: a fixed layout, so that a screenshot of the page can
be checked plot by plot (``tests/test_report.py``).

The page is ``PAGE_WIDTH`` CSS pixels wide with no body margin; a header of ``HEADER_HEIGHT``;
then the plots, two to a row, each a ``PLOT_WIDTH`` by ``PLOT_HEIGHT`` picture with a caption of
``CAPTION_HEIGHT`` below it; then the tables.
"""

from __future__ import annotations

from typing import NamedTuple

PAGE_WIDTH = 1280
MARGIN = 20
GAP = 40  # between the two columns
HEADER_HEIGHT = 130
PLOT_WIDTH = 600
PLOT_HEIGHT = 340
CAPTION_HEIGHT = 56
ROW_GAP = 14
COLUMNS = 2


class Box(NamedTuple):
    """A rectangle of the page, CSS pixels from its top left corner."""

    left: int
    top: int
    width: int
    height: int


def plot_box(index: int) -> Box:
    """The picture of plot ``index`` (0-based, in page order)."""
    row, column = divmod(index, COLUMNS)
    return Box(
        MARGIN + column * (PLOT_WIDTH + GAP),
        HEADER_HEIGHT + row * (PLOT_HEIGHT + CAPTION_HEIGHT + ROW_GAP),
        PLOT_WIDTH,
        PLOT_HEIGHT,
    )


def plots_height(count: int) -> int:
    """The height of the plots' part of the page."""
    rows = -(-count // COLUMNS)
    return rows * (PLOT_HEIGHT + CAPTION_HEIGHT + ROW_GAP)
