"""Source leases in PostgreSQL: one collector per source at a time, on one machine or several.

A lease is a row of ``source_leases`` (migration 7): the source, a holder token, the
holder's host, pid and run, and when it expires. Taking one is one atomic upsert that
succeeds only when the source is free, its lease expired, or its holder is a process of
this host that is gone; the holder renews it while the run lasts and deletes it at the end.
Expiry is measured by the database's clock, so machines whose clocks disagree still agree.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from corridors.db import pid_alive

if TYPE_CHECKING:
    from corridors.store import Store


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a source's lease, and until when."""

    source: str
    holder: uuid.UUID
    host: str
    pid: int
    run_id: int | None
    acquired_at: dt.datetime
    expires_at: dt.datetime

    def describe(self) -> str:
        run = f"run {self.run_id}" if self.run_id is not None else "a run starting"
        return (f"{run} of process {self.pid} on {self.host} holds its lease "
                f"(since {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC, renewed until "
                f"{self.expires_at:%H:%M:%S} UTC)")


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease this process holds."""

    source: str
    holder: uuid.UUID
    seconds: float


_TAKE = """
INSERT INTO source_leases AS l (source, holder, host, pid, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
ON CONFLICT (source) DO UPDATE SET holder = EXCLUDED.holder, host = EXCLUDED.host,
    pid = EXCLUDED.pid, run_id = NULL, acquired_at = now(), expires_at = EXCLUDED.expires_at
WHERE l.expires_at < now() OR l.holder = ANY($6::uuid[])
RETURNING holder
"""
#: The leases this process has taken (their tokens), to tell its pid from a predecessor's.
_TAKEN_HERE: set[uuid.UUID] = set()
_HOLDER = ("SELECT source, holder, host, pid, run_id, acquired_at, expires_at "
           "FROM source_leases WHERE source = $1")


def _gone(row: Holder) -> bool:
    """Whether the holder's process is known to be gone: only this host can tell."""
    if row.host != socket.gethostname():
        return False
    if row.pid == os.getpid():
        # Our pid but not a lease this process took: a previous process that had the pid
        # (a container's service is often pid 1 on every start).
        return row.holder not in _TAKEN_HERE
    return not pid_alive(row.pid)


async def held(store: Store) -> list[Holder]:
    """Every lease in force: which process collects which source now."""
    rows = await store.pool.fetch(_HOLDER.replace("WHERE source = $1", "WHERE expires_at > now() "
                                                  "ORDER BY source"))
    return [Holder(**dict(r)) for r in rows]


async def holder(store: Store, source: str) -> Holder | None:
    row = await store.pool.fetchrow(_HOLDER, source)
    return Holder(**dict(row)) if row else None


async def take(store: Store, source: str, seconds: float) -> Lease | Holder:
    """The source's lease for ``seconds`` (renew it before they pass), or who holds it."""
    token = uuid.uuid4()
    current = await holder(store, source)
    takeable = [current.holder] if current is not None and _gone(current) else []
    got = await store.pool.fetchval(_TAKE, source, token, socket.gethostname(), os.getpid(),
                                    float(seconds), takeable)
    if got == token:
        _TAKEN_HERE.add(token)
        return Lease(source, token, seconds)
    now_held = await holder(store, source)
    if now_held is None:  # released between the two statements: try once more
        got = await store.pool.fetchval(_TAKE, source, token, socket.gethostname(),
                                        os.getpid(), float(seconds), [])
        if got == token:
            _TAKEN_HERE.add(token)
            return Lease(source, token, seconds)
        now_held = await holder(store, source)
    assert now_held is not None
    return now_held


async def renew(store: Store, lease: Lease, run_id: int | None = None) -> bool:
    """Extend the lease (and name its run); False when it is no longer ours."""
    got = await store.pool.fetchval(
        "UPDATE source_leases SET expires_at = now() + make_interval(secs => $3), "
        "run_id = coalesce($4, run_id) WHERE source = $1 AND holder = $2 RETURNING 1",
        lease.source, lease.holder, float(lease.seconds), run_id)
    return got == 1


async def release(store: Store, lease: Lease) -> None:
    # Forgotten even when the delete fails (the database away): the run has ended, so a
    # later run of this process may take over the row, which expires meanwhile anyway.
    _TAKEN_HERE.discard(lease.holder)
    await store.pool.execute("DELETE FROM source_leases WHERE source = $1 AND holder = $2",
                             lease.source, lease.holder)
