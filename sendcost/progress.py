"""Progress on long work: a live line on a terminal, a few log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger("sendcost.progress")


class Progress:
    def __init__(self, label: str, *, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self._last_logged = -1

    def __call__(self, done: int, total: int) -> None:
        pct = 100 * done // total if total else 100
        if self.tty:
            elapsed = time.monotonic() - self.started
            self.stream.write(f"\r{self.label}: {done:,}/{total:,} ({pct}%) {elapsed:.1f}s")
            if done >= total:
                self.stream.write("\n")
            self.stream.flush()
        elif pct // 25 != self._last_logged:
            # Without a terminal, a line at 0/25/50/75/100% keeps logs readable.
            self._last_logged = pct // 25
            log.info("%s: %d/%d (%d%%)", self.label, done, total, pct)
