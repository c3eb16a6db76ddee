"""Storage for years: the month partitions of quotes and raw responses, detaching old ones,
and the retention of raw bodies (migration 10; docs/storage.md).

``quotes`` is partitioned by collection time and ``raw_responses`` by fetch time, one
partition a month (``quotes_p2026_11``) and a default one (``quotes_default``) for what no
month partition takes. Partitions are made ahead (``ensure_partitions``: this month and
``[storage] partitions_ahead_months`` after it), by every process that migrates the store and
daily by serve, and for the months of a survey by its import (``make_month_partitions``).
Months of closed quarters can be detached (``detach_before``): they leave the tables as
standalone tables of the same name, to be dumped and dropped by whoever keeps the archive,
and the latest prices whose quotes they took leave what the API serves with them. Bodies
of old raw responses can be dropped (``drop_raw_bodies``), keeping each row's provenance,
hash and size.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from corridors.errors import BadPeriod, DatabaseError
from corridors.notify import NOTIFY_QUOTES
from corridors.periods import Period, parse_period


class Store(Protocol):
    """What this module needs of a corridors.store.Store (which calls it as it migrates:
    a protocol, not an import, keeps the two from importing each other)."""

    pool: asyncpg.Pool


log = logging.getLogger(__name__)

#: The partitioned tables, each with the column it is partitioned by.
PARTITIONED = {"quotes": "collected_at", "raw_responses": "fetched_at"}
#: The migration that partitioned them.
PARTITIONS_VERSION = 10
#: Held by whoever makes a month partition, until its transaction ends (7411606; the
#: migrations hold 7411601).
_LOCK_PARTITION_MAKERS = "SELECT pg_advisory_xact_lock(7411606)"
_MONTH_PARTITION = re.compile(r"^(quotes|raw_responses)_p(\d{4})_(\d{2})$")


def month_start(day: dt.date | dt.datetime) -> dt.date:
    return dt.date(day.year, day.month, 1)


def add_months(month: dt.date, n: int) -> dt.date:
    idx = month.year * 12 + month.month - 1 + n
    return dt.date(idx // 12, idx % 12 + 1, 1)


def closed_before(now: dt.datetime) -> dt.date:
    """The first month of the current quarter: every month before it is in a closed
    quarter (its month and quarter bulletins due or published)."""
    return dt.date(now.year, (now.month - 1) // 3 * 3 + 1, 1)


async def ensure_partitions(store: Store, months_ahead: int,
                            today: dt.date | None = None) -> list[str]:
    """Make the month partitions of both tables for this month and ``months_ahead`` after
    it, where missing; return the names made. Quotes of such a month that arrived first in
    the default partition move into it; raw responses stay there (migration 14)."""
    first = month_start(today or dt.datetime.now(dt.UTC).date())
    months = [add_months(first, n) for n in range(months_ahead + 1)]
    async with store.pool.acquire() as conn:
        made = [name for table in PARTITIONED
                for name in await make_month_partitions(conn, table, months)]
    if made:
        log.info("made month partitions %s", ", ".join(made))
    return made


async def make_month_partitions(conn: asyncpg.Connection, table: str,
                                months: Iterable[dt.date]) -> list[str]:
    """Make the partitions of ``table`` for ``months`` where missing (each in a transaction
    of its own: ``conn`` must not be in one); return the names made. The month of a
    partition detached earlier gets none (its name is taken by the archived table)."""
    made: list[str] = []
    for month in sorted({month_start(m) for m in months}):
        # One transaction each: a partition made holds the parent's lock only for its own
        # statement. One maker at a time (several serve processes start together): two
        # making partitions of quotes and raw_responses at once, each locking the other's
        # parent through the foreign key, deadlock.
        name = await _make_one(conn, table, month)
        if name:
            made.append(name)
    return made


#: What making a month partition of each parent locks: the tables its foreign keys name
#: (cloned onto the partition, which takes SHARE ROW EXCLUSIVE on them), and the parent.
_LOCKS = {
    "quotes": ("services, raw_responses, collection_runs, imports", "quotes"),
    "raw_responses": ("reference_rates, quarantined_quotes, quotes", "raw_responses"),
}
#: How long a maker tries to take its locks among writers before it gives up.
LOCK_PATIENCE_SECONDS = 120.0


async def _make_one(conn: asyncpg.Connection, table: str, month: dt.date) -> str | None:
    """One month's partition, its locks taken up front and without waiting (NOWAIT), again
    and again while writers hold them. Waiting for one lock while holding another, a maker
    met a writer holding the first (a service created) and waiting for the second (the
    quotes): a deadlock, whose victim could be the writer. A maker that never waits is in
    no such cycle; it waits between tries, holding nothing."""
    referenced, parent = _LOCKS[table]
    # Made already (or detached, its name kept by the archived table): nothing to lock.
    # Every process that opens the store asks for the months ahead; taking the parent's
    # ACCESS EXCLUSIVE lock each time would wait out every reader of the quotes, a long
    # report or an API's refresh in a transaction, only to learn that.
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL",
                           f"{table}_p{month:%Y_%m}"):
        return None
    deadline = asyncio.get_running_loop().time() + LOCK_PATIENCE_SECONDS
    pause = 0.02
    while True:
        try:
            async with conn.transaction():
                await conn.execute(_LOCK_PARTITION_MAKERS)
                await conn.execute(f"LOCK TABLE {referenced} IN SHARE ROW EXCLUSIVE MODE "
                                   "NOWAIT")
                await conn.execute(f"LOCK TABLE {parent} IN ACCESS EXCLUSIVE MODE NOWAIT")
                return await conn.fetchval("SELECT sendcost_month_partition($1, $2)",
                                           table, month)
        except asyncpg.LockNotAvailableError:
            if asyncio.get_running_loop().time() > deadline:
                raise DatabaseError(
                    f"could not make the {month:%Y-%m} partition of {table}: for "
                    f"{LOCK_PATIENCE_SECONDS:.0f} s other sessions held the tables it locks "
                    f"({await _lock_holders(conn, referenced + ', ' + parent)}); end or "
                    "wait for them and run `sendcost db partitions` again") from None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)


async def _lock_holders(conn: asyncpg.Connection, tables: str) -> str:
    """Who holds locks on ``tables`` (a comma-separated list): each session's pid, its
    application, state and how long its transaction has been open."""
    rows = await conn.fetch(
        "SELECT DISTINCT a.pid, a.application_name, a.state, "
        "extract(epoch FROM now() - a.xact_start)::int AS open_s "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.granted AND l.pid <> pg_backend_pid() AND l.relation = ANY ("
        "SELECT to_regclass(trim(t))::oid FROM unnest(string_to_array($1, ',')) t) "
        "ORDER BY a.pid", tables)
    if not rows:
        return "none holds them now"
    return "; ".join(
        f"pid {r['pid']} {r['application_name'] or 'unnamed'} {r['state'] or '?'}"
        + (f", transaction open {r['open_s']} s" if r["open_s"] is not None else "")
        for r in rows)


@dataclass(frozen=True, slots=True)
class Partition:
    table: str
    name: str
    month: dt.date


async def month_partitions(store: Store) -> list[Partition]:
    """The month partitions attached now, oldest first."""
    rows = await store.pool.fetch(
        "SELECT p.relname AS parent, c.relname AS name FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE i.inhparent = ANY (ARRAY[to_regclass('quotes'), to_regclass('raw_responses')]) "
        "ORDER BY c.relname")
    out = []
    for r in rows:
        if m := _MONTH_PARTITION.match(r["name"]):
            out.append(Partition(r["parent"], r["name"], dt.date(int(m[2]), int(m[3]), 1)))
    return sorted(out, key=lambda p: (p.month, p.table != "quotes"))


@dataclass(slots=True)
class Detached:
    """What ``detach_before`` did: partitions detached, and those kept with the reason;
    how many latest prices left with the quotes detached (``latest_prices_removed``)."""

    detached: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)
    latest_prices_removed: int = 0


def parse_month(text: str) -> dt.date:
    """``YYYY-MM`` as the first day of that month; BadPeriod saying what is expected."""
    try:
        period = parse_period(text)
    except BadPeriod:
        period = None
    if period is None or period.is_quarter:
        raise BadPeriod(f"month {text!r} is not understood: expected a month like 2024-01")
    return month_start(period.start)


#: The latest prices whose quote was collected in [$1, $2): those of a quotes partition.
_LATEST_OF_MONTH = (
    "DELETE FROM latest_prices WHERE collected_at >= $1 AND collected_at < $2 "
    "RETURNING period, service_id, send_amount, data_kind")
#: For each key of the latest prices removed, the latest quote of it that stays, if any.
#: Only quotes collected before the month ($3) can be (the removed one was the key's
#: latest), and months go oldest first, so of those only the default partition's are
#: still in the store: the bound keeps this from reading every month.
_LATEST_AGAIN = """
INSERT INTO latest_prices AS lp (period, service_id, send_amount, data_kind, quote_id,
                                 collected_at)
SELECT DISTINCT ON (q.period, q.service_id, q.send_amount, q.data_kind)
       q.period, q.service_id, q.send_amount, q.data_kind, q.id, q.collected_at
FROM quotes q
JOIN unnest($1::text[], $2::integer[], $4::numeric[], $5::text[])
     AS gone (period, service_id, send_amount, data_kind)
  ON (q.period, q.service_id, q.send_amount, q.data_kind)
   = (gone.period, gone.service_id, gone.send_amount, gone.data_kind)
WHERE q.collected_at < $3
ORDER BY q.period, q.service_id, q.send_amount, q.data_kind, q.collected_at DESC, q.id DESC
"""


async def detach_before(store: Store, before: dt.date, *,
                        now: dt.datetime | None = None) -> Detached:
    """Detach the month partitions of both tables for months before ``before``, which must
    not be later than the first month of the current quarter (only closed quarters go).

    Each month's quotes go first, then its raw responses. A detached table keeps its rows
    under its name, outside the store; its own foreign keys are dropped (an archive points
    at nothing). A raw responses partition still named by rows that stay (a reference rate,
    a quarantine record, a quote in a later month) is kept, and said so.

    In the transaction that detaches a month's quotes, the latest prices whose quote left
    are removed (a key whose latest quote left has none left in the store: its earlier ones
    are in months detached before), the rollups' sums stay as they are, and the detachment
    is recorded (``detachments``); serving processes are told on commit (corridors.notify)
    and read what they serve again, whole."""
    now = now or dt.datetime.now(dt.UTC)
    limit = closed_before(now)
    if before > limit:
        raise BadPeriod(f"--before {before:%Y-%m}: only months of closed quarters can be "
                        f"detached; the latest allowed now is {limit:%Y-%m}")
    result = Detached()
    for part in await month_partitions(store):
        if part.month >= before:
            continue
        async with store.pool.acquire() as conn, conn.transaction():
            if part.table == "quotes":
                # Detaching gives the partition's foreign keys triggers of their own on the
                # tables they name. Those first, as a writer takes them (a service, then its
                # quotes): a writer holding services while it waits for quotes, which the
                # detaching transaction holds, would otherwise deadlock with it. Readers
                # are not held up by this mode.
                await conn.execute("LOCK TABLE services, collection_runs, imports, "
                                   "raw_responses IN SHARE ROW EXCLUSIVE MODE")
            try:
                async with conn.transaction():  # a savepoint: a refusal undoes only this
                    await conn.execute(f'ALTER TABLE {part.table} DETACH PARTITION '
                                       f'"{part.name}"')
            except asyncpg.ForeignKeyViolationError as exc:
                result.kept.append((part.name, str(exc)))
                log.warning("kept %s: %s", part.name, exc)
                continue
            removed = (await _remove_latest_prices(conn, part.month)
                       if part.table == "quotes" else 0)
            await conn.execute(
                "INSERT INTO detachments (parent, partition, month, latest_prices_removed) "
                "VALUES ($1, $2, $3, $4)", part.table, part.name, part.month, removed)
            await conn.execute(NOTIFY_QUOTES)
        # Its foreign keys go once it is out: dropping one locks the table it names
        # (services, ...) whole, which a reader of the store may hold while it waits for
        # the partition the detaching transaction holds (a deadlock, seen with the API
        # refreshing). Detached, the table is read by no one.
        async with store.pool.acquire() as conn, conn.transaction():
            fks = [r["conname"] for r in await conn.fetch(
                "SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass "
                "AND contype = 'f' AND conparentid = 0", part.name)]
            for name in fks:
                await conn.execute(f'ALTER TABLE "{part.name}" DROP CONSTRAINT "{name}"')
        result.detached.append(part.name)
        result.latest_prices_removed += removed
        log.info("detached %s (its rows stay in table %s, outside the store)%s", part.name,
                 part.name, f"; {removed} latest prices went with it" if removed else "")
    return result


async def _remove_latest_prices(conn: asyncpg.Connection, month: dt.date) -> int:
    """Remove the latest prices whose quote was collected in ``month`` (just detached),
    putting back for each key the latest quote of it still in the store, if any; how many
    keys were left without one."""
    lo = dt.datetime.combine(month, dt.time(), dt.UTC)
    hi = dt.datetime.combine(add_months(month, 1), dt.time(), dt.UTC)
    gone = await conn.fetch(_LATEST_OF_MONTH, lo, hi)
    if not gone:
        return 0
    status = await conn.execute(
        _LATEST_AGAIN, [r["period"] for r in gone], [r["service_id"] for r in gone], lo,
        [r["send_amount"] for r in gone], [r["data_kind"] for r in gone])
    return len(gone) - int(status.split()[-1])


@dataclass(frozen=True, slots=True)
class Pruned:
    bodies: int
    bytes: int
    before: dt.datetime


def retention_cutoff(days: int, now: dt.datetime) -> dt.datetime:
    """Bodies fetched before this are dropped: ``days`` ago, and no later than the start
    of the current quarter (a body of an open period may still be re-parsed for it)."""
    quarter = Period(now.year, (now.month - 1) // 3 + 1, 0).start
    return min(now - dt.timedelta(days=days), quarter)


async def drop_raw_bodies(store: Store, days: int, *, now: dt.datetime | None = None,
                          batch: int = 5000) -> Pruned:
    """Drop the bodies of raw responses fetched more than ``days`` days ago in closed
    quarters. Each row keeps its source, URL, time, status, headers, licence, content hash
    and body size, and says when its body was dropped; no quote is touched. Works in
    batches of ``batch`` rows (each its own transaction), so a first run over years of
    bodies holds no long lock."""
    if days < 1:
        raise ValueError(f"raw retention needs at least 1 day, got {days}")
    cutoff = retention_cutoff(days, now or dt.datetime.now(dt.UTC))
    bodies = size = 0
    while True:
        row = await store.pool.fetchrow(
            "WITH doomed AS (SELECT id, fetched_at FROM raw_responses "
            "  WHERE fetched_at < $1 AND payload IS NOT NULL LIMIT $2), "
            "dropped AS (UPDATE raw_responses r SET payload = NULL, "
            "  body_size = coalesce(r.body_size, octet_length(r.payload)), "
            "  body_dropped_at = now() FROM doomed d "
            "  WHERE r.id = d.id AND r.fetched_at = d.fetched_at "
            "  RETURNING r.body_size) "
            "SELECT count(*) AS n, coalesce(sum(body_size), 0) AS bytes FROM dropped",
            cutoff, batch)
        assert row is not None
        bodies += row["n"]
        size += row["bytes"]
        if row["n"] < batch:
            break
    if bodies:
        log.info("dropped %d raw bodies (%d bytes) fetched before %s", bodies, size,
                 cutoff.isoformat())
    return Pruned(bodies, size, cutoff)


#: serve's daily job (sendcost.wiring): partitions ahead, then the retention of raw bodies.
JOB_ID = "storage-daily"


async def daily_upkeep(store: Store, months_ahead: int, raw_retention_days: int, *,
                       now: dt.datetime | None = None) -> tuple[list[str], Pruned | None]:
    """What serve does once a day: make the partitions ahead; drop the raw bodies past
    their retention when one is set (``raw_retention_days`` > 0)."""
    now = now or dt.datetime.now(dt.UTC)
    made = await ensure_partitions(store, months_ahead, today=now.date())
    pruned = (await drop_raw_bodies(store, raw_retention_days, now=now)
              if raw_retention_days > 0 else None)
    return made, pruned
