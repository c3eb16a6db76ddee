"""A run holds its source's lease (``corridors.leases``) from before it starts to its end.

``hold(store, source)`` gives the lease, renewed in the background every third of its
length, or ``None`` with the holder when another process collects the source. Should the
lease be lost (the database away for longer than the lease lasts, so another collector may
have taken the source over), the run is cancelled: two collectors never fetch one source at
once. A database away for less than that only delays a renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from collector.errors import LeaseLost
from corridors import leases
from corridors.store import STORE_ERRORS, Store

log = logging.getLogger(__name__)

#: How long a lease lasts unless renewed: a killed collector's sources wait this long (on
#: another host; on its own host a dead pid frees them at once).
LEASE_SECONDS = 60.0


class Held:
    """The lease a run holds; ``name(run_id)`` records the run in it."""

    def __init__(self, store: Store, lease: leases.Lease) -> None:
        self.store = store
        self.lease = lease
        self.renewed = time.monotonic()
        self.lost: str | None = None

    async def name(self, run_id: int) -> None:
        if await leases.renew(self.store, self.lease, run_id):
            self.renewed = time.monotonic()

    async def keep(self, task: asyncio.Task[object]) -> None:
        every = self.lease.seconds / 3
        while True:
            await asyncio.sleep(every)
            try:
                ours = await leases.renew(self.store, self.lease)
            except STORE_ERRORS as exc:
                if time.monotonic() - self.renewed < self.lease.seconds - every / 2:
                    log.debug("%s: lease not renewed yet: %s", self.lease.source, exc)
                    continue
                self.lost = (f"its lease could not be renewed for {self.lease.seconds:g}s "
                             f"({type(exc).__name__}: {exc})")
            else:
                if ours:
                    self.renewed = time.monotonic()
                    continue
                self.lost = "its lease was taken over by another collector after it expired"
            log.error("%s: stopping the run: %s", self.lease.source, self.lost)
            task.cancel()
            return


@contextlib.asynccontextmanager
async def hold(store: Store, source: str, seconds: float = LEASE_SECONDS
               ) -> AsyncIterator[Held | leases.Holder]:
    """The source's lease while the block runs, or who holds it (the block then does not
    collect). Released at the end, however the block ends."""
    got = await leases.take(store, source, seconds)
    if isinstance(got, leases.Holder):
        yield got
        return
    held = Held(store, got)
    task = asyncio.current_task()
    assert task is not None
    keeper = asyncio.create_task(held.keep(task), name=f"lease:{source}")
    try:
        yield held
    except asyncio.CancelledError:
        if held.lost is not None and task.uncancel() == 0:
            raise LeaseLost(f"stopped: {held.lost}") from None
        raise
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        if held.lost is None:
            # Given back even when the run was cancelled; an unreachable database lets it
            # expire instead.
            try:
                await asyncio.shield(asyncio.wait_for(leases.release(store, got), 5))
            except STORE_ERRORS as exc:
                log.debug("%s: lease not released (it expires): %r", source, exc)
