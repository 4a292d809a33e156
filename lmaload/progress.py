"""The one-line progress display of the long-running commands (``run``, ``sync``) on stderr."""

from __future__ import annotations

import sys
import time

PROGRESS_INTERVAL = 0.5


class Progress:
    """The one-line progress display on stderr: rewritten in place every PROGRESS_INTERVAL on a
    terminal, a line every LOG_INTERVAL otherwise."""

    LOG_INTERVAL = 5.0

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._next = 0.0
        self._shown = False

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + (PROGRESS_INTERVAL if self._tty else self.LOG_INTERVAL)
        return True

    def show(self, line: str) -> None:
        sys.stderr.write(f"\r\x1b[K{line}" if self._tty else f"{line}\n")
        sys.stderr.flush()
        self._shown = True

    def done(self) -> None:
        if self._tty and self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
