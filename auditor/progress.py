"""A progress bar for long work on a terminal: done/total, rate and time left.

Quiet when stderr is not a terminal or when asked to be; redraws at most ten times a second
so it costs nothing on the hot path.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _human(n: float) -> str:
    for unit in ("", "k", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}P"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}:{s % 60:02d}"


class Progress:
    """``update(done, items)``; ``done``/``total`` in bytes (or any unit), ``items`` counted."""

    def __init__(
        self,
        total: float,
        label: str,
        *,
        unit: str = "lines",
        quiet: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self.total = max(total, 1.0)
        self.label = label
        self.unit = unit
        self.start = time.monotonic()
        self._last = 0.0
        self.done = 0.0
        self.items = 0

    def update(self, done: float, items: int) -> None:
        self.done, self.items = done, items
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        frac = min(self.done / self.total, 1.0)
        width = 24
        filled = int(frac * width)
        bar = "#" * filled + "-" * (width - filled)
        rate = self.items / elapsed
        left = (elapsed / frac - elapsed) if frac > 0 else 0.0
        text = (
            f"\r{self.label} [{bar}] {frac * 100:5.1f}%  {_human(self.items)} {self.unit}"
            f"  {_human(rate)} {self.unit}/s  {_duration(left)} left "
        )
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.done = self.total
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
