"""The local spool: upstream responses the database could not take, kept on disk until it can.

A response is archived before it is parsed (``collector.run``). When the database cannot be
reached at that moment, the response is not dropped: it is written here, one file per
response in ``<data_dir>/spool``, atomically (a temporary file, fsync, rename) so a crash
leaves either the whole file or none. When the database is back, ``Spool.replay`` archives
the files into ``raw_responses`` under the run that fetched them, and deletes each file only
once its row is committed. Replay is idempotent: every spooled response carries a key
(``X-Sendcost-Spool`` in its archived headers), and a key already archived is not archived
again, so a crash between the commit and the file's removal adds nothing. The run that
spooled a response is then re-parsed (``Collector.recover``), which stores its quotes.

The file is JSON: the archive row with the body in base64.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from corridors.store import SPOOL_KEY_HEADER

log = logging.getLogger(__name__)

#: The archived header that names a response's spool file (the replay's idempotency key).
SPOOL_HEADER = SPOOL_KEY_HEADER
_SUFFIX = ".json"


class SpoolError(Exception):
    """A response could not be written to the spool either (disk full, no permission)."""


class Spool:
    """Files of responses waiting for the database, in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

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
        """Archive every spooled response (idempotently) and remove its file; return the
        runs they belong to. Raises what the store raises when the database is still away
        (the files stay for the next try)."""
        files = self.pending()
        if not files:
            return []
        rows: list[tuple[Path, dict[str, Any]]] = []
        for path in files:
            row = self.read(path)
            if row is not None:
                rows.append((path, row))
        runs: set[int] = set()
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


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
