"""Log lines nobody can forge: control characters are escaped in everything sendcost logs.

A client decides much of what is logged about its request (the path, a query value, a
header); a raw CR or LF in it would start a line that looks like a record of its own, and
an ESC would drive the operator's terminal. ``SafeFormatter``, installed on the handler the
CLI's logging setup (``sendcost.cli.setup_logging``) gives the root logger, so for every
logger, escapes them:

- in a record's line, every C0 control (line breaks and tab included), DEL, every C1
  control and the Unicode line and paragraph separators, as ``\\n``, ``\\r``, ``\\t``,
  ``\\xNN`` or ``\\uNNNN``;
- in a traceback or stack, the same but the line breaks between its lines, each of which
  is indented, so that only a record's first line starts at the margin, with its time.
"""

from __future__ import annotations

import logging
import re

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: What a record's own line may not hold.
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: What a traceback's lines may not hold (its line breaks are its own).
_UNSAFE_IN_TRACE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
#: Indentation of a traceback's lines.
TRACE_INDENT = "  "


def _escaped(match: re.Match[str]) -> str:
    c = match.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def escape(text: str) -> str:
    """``text`` on one line, its control characters escaped."""
    return UNSAFE.sub(_escaped, text)


def _trace(text: str) -> str:
    return "\n".join(TRACE_INDENT + line
                     for line in _UNSAFE_IN_TRACE.sub(_escaped, text).split("\n"))


class SafeFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose output holds no control character a client put there."""

    def format(self, record: logging.LogRecord) -> str:
        # As logging.Formatter.format, without caching the traceback's text on the record:
        # another handler's formatter may have cached it unescaped.
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = escape(self.formatMessage(record))
        if record.exc_info:
            line += "\n" + _trace(self.formatException(record.exc_info))
        elif record.exc_text:
            line += "\n" + _trace(record.exc_text)
        if record.stack_info:
            line += "\n" + _trace(self.formatStack(record.stack_info))
        return line
