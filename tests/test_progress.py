"""Progress on a terminal: one shared status line, never run into by log lines."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from sendcost.progress import Progress, clear_all


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    handler = logging.StreamHandler(term)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield term
    root.removeHandler(handler)


def test_sources_side_by_side_share_one_line_and_logs_keep_theirs(terminal: Terminal) -> None:
    a, b = Progress("op-0", stream=terminal), Progress("op-1", stream=terminal)
    a(0, 10)
    b(0, 10)
    a(5, 10)
    logging.getLogger("sendcost.test").warning("a log line")
    b(3, 10)
    a(10, 10)
    b(10, 10)
    out = terminal.getvalue()
    assert "op-0 5/10 (50%) · op-1 0/10 (0%)" in out
    # The status line is cleared before the log line, which ends its own line, then redrawn.
    assert "\r\x1b[Ka log line\n\r\x1b[Kop-0 5/10 (50%) · op-1 0/10 (0%)" in out
    assert out.endswith("\r\x1b[K")  # all done: nothing left on the line


def test_work_stopped_half_way_leaves_no_status_line(terminal: Terminal) -> None:
    a = Progress("op-0", stream=terminal)
    a(3, 10)
    clear_all()  # interrupted: what is printed next starts on a line of its own
    assert terminal.getvalue().endswith("op-0 3/10 (30%)\r\x1b[K")
    logging.getLogger("sendcost.test").warning("after")
    assert terminal.getvalue().endswith("\r\x1b[Kafter\n")  # nothing redrawn


def test_without_a_terminal_a_few_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sendcost.progress")
    p = Progress("import", stream=io.StringIO())
    for i in range(101):
        p(i, 100)
    lines = [r.getMessage() for r in caplog.records if r.name == "sendcost.progress"]
    assert lines == ["import: 0/100 (0%)", "import: 25/100 (25%)", "import: 50/100 (50%)",
                     "import: 75/100 (75%)", "import: 100/100 (100%)"]
