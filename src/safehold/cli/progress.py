"""Progress of long commands on standard error: updated in place on a terminal, one
line every ``every`` steps otherwise (so that logs of cron jobs stay short)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(self, label: str, stream: TextIO | None = None, every: int = 1000,
                 interval: float = 0.2, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.interval = interval  # terminal redraws at most this often (seconds)
        self.clock = clock
        self.total = 0
        self.done = 0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = -1.0

    def start(self, total: int) -> None:
        self.total, self.done = total, 0

    def step(self, n: int = 1) -> None:
        self.done += n
        if self._tty:
            now = self.clock()
            if now - self._drawn >= self.interval:
                self._drawn = now
                self.stream.write(f"\r{self._text()}")
                self.stream.flush()
        elif self.done // self.every != (self.done - n) // self.every:
            self.stream.write(self._text() + "\n")
            self.stream.flush()

    def finish(self) -> None:
        self.stream.write(("\r" if self._tty else "") + self._text() + "\n")
        self.stream.flush()

    def _text(self) -> str:
        return f"{self.label}: {self.done}/{self.total} items"
