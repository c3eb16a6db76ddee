"""Whether the database takes writes, as this process has last seen it (for ``/healthz``).

The store notes the outcome of each of its writes (``Store.health``): a write refused
because the disk is full (PostgreSQL's ``disk_full``, SQLSTATE 53100, or an OS "no space
left on device"), or because the database cannot be reached, makes the service degraded
until a write succeeds again. Other errors (a constraint, a bug of ours) say nothing of the
database's health.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass

import asyncpg

NO_SPACE = "no space left on device"


def classify(exc: BaseException) -> str | None:
    """``"disk_full"``, ``"unreachable"``, or None when the error says nothing of health."""
    if isinstance(exc, asyncpg.exceptions.DiskFullError) or NO_SPACE in str(exc).lower() \
            or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        return "disk_full"
    if isinstance(exc, ConnectionError | TimeoutError | OSError
                  | asyncpg.PostgresConnectionError | asyncpg.InterfaceError
                  | asyncpg.exceptions.CannotConnectNowError
                  | asyncpg.exceptions.AdminShutdownError
                  | asyncpg.exceptions.CrashShutdownError):
        return "unreachable"
    return None


def reason(kind: str, exc_text: str) -> str:
    """A line for /healthz and the logs."""
    if kind == "disk_full":
        return f"disk full: {NO_SPACE} where the database keeps its data ({exc_text})"
    return f"database unreachable ({exc_text})"


@dataclass
class WriteHealth:
    """The last write failure that says something of the database, and the last success."""

    failed_at: float | None = None
    failure: str | None = None
    kind: str | None = None
    ok_at: float | None = None

    def succeeded(self) -> None:
        self.ok_at = time.monotonic()

    def failed(self, exc: BaseException) -> None:
        kind = classify(exc)
        if kind is None:
            return
        self.kind = kind
        self.failure = reason(kind, f"{type(exc).__name__}: {exc}")
        self.failed_at = time.monotonic()

    @property
    def failing(self) -> str | None:
        """Why writes fail now (the last one failed), else None."""
        if self.failed_at is None or (self.ok_at is not None and self.ok_at > self.failed_at):
            return None
        return self.failure
