"""Progress on long work: a live line on a terminal, a few log lines otherwise.

On a terminal, every piece of work under way shares one status line (``Board``): several
sources collected side by side show as ``op-0 4/10 · op-1 7/10 …``, redrawn in place and
cleared before anything else is written to the terminal by the logging module, so log lines
and the status line never run into each other.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger("sendcost.progress")


class Board:
    """The one status line of a terminal, shared by the Progress objects drawing on it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.active: dict[int, str] = {}
        self.shown = False

    def update(self, key: int, text: str | None) -> None:
        if text is None:
            self.active.pop(key, None)
        else:
            self.active[key] = text
        self.draw()

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False

    def draw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        line = " · ".join(self.active.values())
        if len(line) > width:
            line = line[: max(0, width - 1)] + "…"
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()
        self.shown = bool(line)


_BOARDS: dict[int, Board] = {}


def clear_all() -> None:
    """Take every status line off its terminal, for good (work stopped: interrupted,
    terminated, failed), so that what is printed next starts on a line of its own."""
    for board in _BOARDS.values():
        board.active.clear()
        board.clear()


def board_of(stream: TextIO) -> Board:
    board = _BOARDS.get(id(stream))
    if board is None:
        board = _BOARDS[id(stream)] = Board(stream)
        _install_log_hook(board)
    return board


def _install_log_hook(board: Board) -> None:
    """Clear the status line before a log record reaches this terminal; redraw it after."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is board.stream:
            handler.emit = _around(board, handler.emit)  # type: ignore[method-assign,assignment]


def _around(board: Board, emit: Callable[[logging.LogRecord], None]
            ) -> Callable[[logging.LogRecord], None]:
    def emit_around(record: logging.LogRecord) -> None:
        had = board.shown
        board.clear()
        emit(record)
        if had and board.active:
            board.draw()
    return emit_around


class Progress:
    def __init__(self, label: str, *, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.board = board_of(stream) if self.tty else None
        self.started = time.monotonic()
        self._last_logged = -1

    def __call__(self, done: int, total: int) -> None:
        pct = 100 * done // total if total else 100
        if self.board is not None:
            if done >= total:
                self.board.update(id(self), None)
                if not self.board.active:
                    self.board.clear()
            else:
                self.board.update(id(self), f"{self.label} {done:,}/{total:,} ({pct}%)")
        elif pct // 25 != self._last_logged:
            # Without a terminal, a line at 0/25/50/75/100% keeps logs readable.
            self._last_logged = pct // 25
            log.info("%s: %d/%d (%d%%)", self.label, done, total, pct)
