"""The local spool: upstream responses the database could not take, kept on disk until it can.

A response is archived before it is parsed (``collector.run``). When the database cannot be
reached at that moment, the response is not dropped: it is written here, one file per
response in ``<data_dir>/spool/<database>`` (``Spool.bind``: a spool is replayed only into
its own database), atomically (a temporary file, fsync, rename) so a crash leaves either
the whole file or none. When the database is back, ``Spool.replay`` archives
the files into ``raw_responses`` under the run that fetched them, and deletes each file only
once its row is committed. Replay is idempotent: a response already archived (the same
run, URL and time) is not archived again, so a crash between the commit and the file's
removal adds nothing. Each spooled response keeps its key (``X-Sendcost-Spool`` in its
archived headers): where it came from. The run that
spooled a response is then re-parsed (``Collector.recover``), which stores its quotes.

The file is JSON: the archive row with the body in base64.

The journal closes the last window: a response waits a few milliseconds for the archive's
next batch, and a process killed meanwhile (SIGKILL, out of memory) would take it along.
So each response is first appended to the process's journal
(``<data_dir>/spool/<database>/journal-<pid>-<token>.jsonl``, one JSON line, written but
not synced: it survives the process, not the machine), and the journal is emptied whenever every
response in it is archived or spooled. At start, ``Spool.replay`` archives what the journals
of processes that are gone hold and the archive does not (the same run, URL and time), then
removes them.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import uuid
from pathlib import Path
from typing import Any

import msgspec

from corridors.db import pid_alive
from corridors.store import SPOOL_KEY_HEADER

log = logging.getLogger(__name__)

#: The archived header that names a response's spool file (the replay's idempotency key).
SPOOL_HEADER = SPOOL_KEY_HEADER
_SUFFIX = ".json"
_JOURNAL = "journal-"
#: The journals this process writes (by name): any other is a previous process's, even under
#: the same pid (a container's service is often pid 1 on every start).
_OURS: set[str] = set()


class SpoolError(Exception):
    """A response could not be written to the spool either (disk full, no permission)."""


class Spool:
    """Files of responses waiting for the database, in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.journal = Journal(folder)
        self.bound = False

    def bind(self, database: str) -> None:
        """Keep this database's responses in a folder of its own (``Store.database_key``):
        a spool is only ever replayed into the database it was written for."""
        if not self.bound:
            self.folder = self.folder / database
            if self.journal.fd is None:
                self.journal.folder = self.folder
            self.bound = True

    def put(self, row: dict[str, Any]) -> str:
        """Keep one archive row (as ``Store.archive_raw_many`` takes it); return its key."""
        key = uuid.uuid4().hex
        headers = {**(row.get("headers") or {}), SPOOL_HEADER: key}
        body = row.get("body")
        doc = {**row, "headers": headers, "fetched_at": row["fetched_at"].isoformat(),
               "body": None if body is None else base64.b64encode(body).decode("ascii")}
        final = self.folder / f"{key}{_SUFFIX}"
        tmp = self.folder / f".{key}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(doc, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            _fsync_dir(self.folder)
        except (OSError, TypeError, ValueError) as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SpoolError(f"could not spool a response of {row.get('source')} to "
                             f"{self.folder}: {type(exc).__name__}: {exc}") from exc
        return key

    def pending(self) -> list[Path]:
        """The spooled files, oldest first (by name order within one modification time)."""
        try:
            files = [p for p in self.folder.iterdir() if p.name.endswith(_SUFFIX)
                     and not p.name.startswith(".")]
        except FileNotFoundError:
            return []
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def read(self, path: Path) -> dict[str, Any] | None:
        """The archive row kept in ``path``; None (and the file set aside as ``.bad``) when
        it cannot be read back: it is never replayed half-understood, never deleted."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            doc["fetched_at"] = dt.datetime.fromisoformat(doc["fetched_at"])
            body = doc.get("body")
            doc["body"] = None if body is None else base64.b64decode(body, validate=True)
            if not isinstance(doc.get("headers"), dict) or SPOOL_HEADER not in doc["headers"]:
                raise ValueError(f"no {SPOOL_HEADER} header")
            for name in ("source", "url"):
                if not isinstance(doc.get(name), str):
                    raise ValueError(f"no {name}")
            return dict(doc)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            bad = path.with_name(path.name + ".bad")
            log.error("spooled response %s cannot be read (%s: %s); kept as %s",
                      path, type(exc).__name__, exc, bad.name)
            with contextlib.suppress(OSError):
                path.rename(bad)
            return None

    async def replay(self, store: Any) -> list[int]:
        """Archive every spooled response (idempotently) and remove its file, and what the
        journals of processes that are gone hold that the archive lacks; return the runs
        they belong to. Raises what the store raises when the database is still away (the
        files stay for the next try)."""
        runs = set(await self._replay_journals(store))
        files = self.pending()
        if not files:
            return sorted(runs)
        rows: list[tuple[Path, dict[str, Any]]] = []
        for path in files:
            row = self.read(path)
            if row is not None:
                rows.append((path, row))
        for start in range(0, len(rows), 256):
            chunk = rows[start:start + 256]
            archived = await store.archive_spooled([r for _, r in chunk])
            for path, _ in chunk:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            runs.update(r["run_id"] for _, r in chunk if r.get("run_id") is not None)
            if archived:
                log.info("replayed %d spooled responses into the archive", archived)
        return sorted(runs)

    async def _replay_journals(self, store: Any) -> list[int]:
        runs: set[int] = set()
        try:
            journals = [p for p in self.folder.iterdir() if p.name.startswith(_JOURNAL)
                        and p.name not in _OURS and not _alive(p.name)]
        except FileNotFoundError:
            return []
        for path in journals:
            rows = []
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                log.error("journal %s cannot be read (%s); left in place", path, exc)
                continue
            for line in text.splitlines():
                try:
                    rows.append(_decode(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    continue  # the line being written when the process was killed
            archived = await store.archive_missing(rows) if rows else 0
            if archived:
                log.warning("archived %d responses a killed process had fetched but not "
                            "archived (%s)", archived, path.name)
            runs.update(r["run_id"] for r in rows if r.get("run_id") is not None)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return sorted(runs)


class Journal:
    """This process's journal of responses not yet archived (see the module's docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fd: int | None = None
        self.name = f"{_JOURNAL}{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        #: Responses written and not yet archived or spooled.
        self.open = 0
        self.broken = False

    def append(self, row: dict[str, Any]) -> bool:
        """Write ``row``; False when the journal cannot be written (the response is then
        only in memory until archived, as before: logged once)."""
        if self.broken:
            return False
        line = _JOURNAL_LINE.encode(row) + b"\n"
        try:
            if self.fd is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                _OURS.add(self.name)
                self.fd = os.open(self.folder / self.name,
                                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.write(self.fd, line)
        except OSError as exc:
            self.broken = True
            log.error("cannot write the collector's journal in %s (%s): a response is "
                      "only in memory until archived", self.folder, exc)
            return False
        self.open += 1
        return True

    def done(self, n: int = 1) -> None:
        """``n`` journalled responses are archived or spooled; once none is left open, the
        journal is emptied."""
        self.open = max(0, self.open - n)
        if not self.open and self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)


def _alive(name: str) -> bool:
    try:
        pid = int(name[len(_JOURNAL):].split("-", 1)[0])
    except ValueError:
        return False
    # Our pid, not our journal: a previous process's.
    return pid_alive(pid) and pid != os.getpid()


#: Writes a journal line: the row as ``_encode`` gives it, in the JSON ``_decode`` reads
#: (msgspec writes the body's bytes as base64 and the fetch time as ISO 8601 itself, with no
#: copy of the row: the journal is written for every response, on the event loop).
_JOURNAL_LINE = msgspec.json.Encoder()


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    body = row.get("body")
    return {**row, "fetched_at": row["fetched_at"].isoformat(),
            "body": None if body is None else base64.b64encode(body).decode("ascii")}


def _decode(doc: dict[str, Any]) -> dict[str, Any]:
    doc["fetched_at"] = dt.datetime.fromisoformat(doc["fetched_at"])
    body = doc.get("body")
    doc["body"] = None if body is None else base64.b64decode(body, validate=True)
    for name in ("source", "url"):
        if not isinstance(doc[name], str):
            raise TypeError(name)
    return doc


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
