"""A one-line progress bar with steps/s on stderr, for runs long enough to need one."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Call with the number of steps done; redraws at most every 0.2 s, after the first second."""

    def __init__(self, total: int, label: str, stream: TextIO = sys.stderr):
        self.total, self.label, self.stream = total, label, stream
        self.start = self._last = time.perf_counter()
        self._drawn = False

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if now - self._last < 0.2 or now - self.start < 1.0:
            return
        self._last, self._drawn = now, True
        rate = done / (now - self.start)
        width = 30
        filled = int(width * done / self.total)
        eta = (self.total - done) / rate if rate else 0.0
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                          f"steps  {rate:,.0f} steps/s  {eta:4.0f} s left ")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
