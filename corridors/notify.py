"""New quotes, announced: the writer's NOTIFY and the servers' LISTEN (PostgreSQL).

Every transaction that stores quotes (``corridors.store``) sends, on commit, a notification
on ``QUOTES_CHANNEL`` whose payload is its own transaction id. A serving process (a
collecting ``serve``, or a ``serve --no-collect`` replica) listens on the database the
writers write to and refreshes its in-memory view at once instead of at its next timer
tick. The transaction id says when a database it reads from — a streaming replica, which
replays the primary's commits a little later and cannot itself ``LISTEN`` — has the write:
when the id is visible in the replica's snapshot (``visible``).

A notification is a hint, never the only way: a listener that loses its connection (or a
pooler in transaction mode, which does not carry LISTEN) leaves the timer to refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

#: The channel every quote write notifies on commit.
QUOTES_CHANNEL = "sendcost_quotes"
#: Sent inside a write's transaction: delivered when (and only if) it commits.
NOTIFY_QUOTES = f"SELECT pg_notify('{QUOTES_CHANNEL}', pg_current_xact_id()::text)"
#: Whether the transaction $1 (an xid8) has ended in the snapshot of the database asked.
_VISIBLE = "SELECT pg_visible_in_snapshot($1::xid8, pg_current_snapshot())"
#: A lost listening connection is opened again after this many seconds (doubling to 60).
RECONNECT_SECONDS = (1.0, 2.0, 5.0, 15.0, 30.0, 60.0)


async def visible(conn: asyncpg.Connection | asyncpg.Pool, xid: int) -> bool:
    """Whether the write of transaction ``xid`` has reached the database ``conn`` reads
    (at once on the primary it was written to; on a streaming replica once replayed)."""
    return bool(await conn.fetchval(_VISIBLE, xid))


class QuotesListener:
    """Listens on ``QUOTES_CHANNEL`` at ``url`` for as long as ``run()`` runs, reconnecting
    after a loss; ``on_write(xid)`` is called for every notification (in the loop)."""

    def __init__(self, url: str, on_write: Callable[[int], None], *,
                 timeout: float = 10.0) -> None:
        self.url = url
        self.on_write = on_write
        self.timeout = timeout
        #: Whether a LISTEN is in place now.
        self.listening = False
        self._lost = asyncio.Event()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            xid = int(payload)
        except ValueError:  # someone else's NOTIFY on our channel
            log.debug("ignored a notification on %s: %r", QUOTES_CHANNEL, payload)
            return
        self.on_write(xid)

    def _on_lost(self, _conn: Any) -> None:
        self._lost.set()

    async def run(self) -> None:
        attempt = 0
        said: str | None = None
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.url, timeout=self.timeout)
                self._lost.clear()
                conn.add_termination_listener(self._on_lost)
                await conn.add_listener(QUOTES_CHANNEL, self._notified)
                self.listening, attempt = True, 0
                if said is not None:
                    log.info("listening for new quotes again")
                    said = None
                else:
                    log.debug("listening for new quotes on %s", QUOTES_CHANNEL)
                # Quotes written while no one listened are found by the refresh this
                # triggers (or the timer's).
                self.on_write(0)
                await self._lost.wait()
                raise ConnectionError("the listening connection was closed")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                    TimeoutError) as exc:
                self.listening = False
                text = f"{type(exc).__name__}: {str(exc).strip() or 'no detail'}"
                if said is None:
                    # Once per outage: the timer keeps the view fresh meanwhile.
                    log.warning("cannot listen for new quotes (%s); refreshing on the timer "
                                "until it can", text)
                said = text
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 5)
            await asyncio.sleep(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])
            attempt += 1
