"""The PostgreSQL quote store (asyncpg): migrations, reference data, quotes and provenance.

Writes are idempotent and atomic: a batch of quotes (several runs' batches, with their
quarantine records) is written in one transaction, by one COPY straight into ``quotes`` when
all of it is new, else through a temporary table and one ``INSERT … ON CONFLICT DO
NOTHING``; so re-storing the same quote adds nothing and a failure half way leaves nothing
half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg
import polars as pl

from corridors import partitions
from corridors.db import pid_alive
from corridors.errors import DatabaseError
from corridors.frame import QUOTE_FRAME_SCHEMA, conform
from corridors.health import WriteHealth
from corridors.notify import NOTIFY_QUOTES
from corridors.periods import Period
from corridors.types import DataKind, Quote

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

TABLES = (
    "countries", "currencies", "corridors", "firms", "services", "quotes", "reference_rates",
    "raw_responses", "collection_runs", "quarantined_quotes", "imports",
)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every file in corridors/migrations, in order."""
    out = []
    for entry in resources.files("corridors").joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql"):
            out.append((int(name.split("_", 1)[0]), name, entry.read_text(encoding="utf-8")))
    return sorted(out)


#: What the database raises when it cannot be reached or went away mid-use: refused, reset,
#: timed out, shutting down, dropped, not accepting connections (ALLOW_CONNECTIONS false),
#: out of connections or resources, refusing our credentials, or a pooled connection that
#: a terminated session left half-way through an operation (asyncpg raises
#: InternalClientError there, MagicStack/asyncpg#1069). A caller answers these with "try
#: again later", not a crash; any other error PostgreSQL reports is a bug of ours.
UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    asyncpg.InternalClientError, asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InvalidCatalogNameError, asyncpg.ObjectNotInPrerequisiteStateError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InvalidAuthorizationSpecificationError)
#: Every failure of a database operation: the above, any error PostgreSQL reported, an OS error.
STORE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, asyncpg.PostgresError, *UNREACHABLE_ERRORS)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads,
                                  schema="pg_catalog")


async def connect(url: str, *, min_size: int = 1, max_size: int = 10,
                  timeout: float = 10.0) -> Store:
    """Open a pool, or raise DatabaseError saying why the database cannot be reached."""
    from corridors.db import redact

    try:
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size,
                                         timeout=timeout, init=_init_connection,
                                         command_timeout=300)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseError(f"cannot reach the database at {redact(url)}: "
                            f"{type(exc).__name__}: {exc}") from exc
    except ValueError as exc:  # asyncpg's DSN parser
        raise DatabaseError(f"database URL {redact(url)!r} is malformed: {exc}") from exc
    assert pool is not None
    return Store(pool)


@dataclass(frozen=True, slots=True)
class StoreResult:
    inserted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """One run's quotes and quarantine records, to be written together."""

    quotes: Sequence[Quote]
    run_id: int | None = None
    quarantine: Sequence[dict[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: int
    duplicates: int
    quarantined: int


#: The quotes columns a write fills, in the order of its records.
COPY_COLUMNS = (
    "service_id", "period", "amount_usd", "send_amount", "send_currency", "receive_currency",
    "payout_currency_noted",
    "fee", "applied_rate", "reference_rate", "reference_source", "reference_at",
    "fx_margin_reported", "total_cost_reported", "received_amount", "fee_deducted",
    "transparent", "collected_at", "source", "raw_response_id", "run_id", "import_id", "flags",
    "data_kind", "raw_fetched_at",
)

#: The services columns a COPY of new services fills, in the order of its records.
SERVICE_COLUMNS = ("service_key", "corridor_id", "firm_id", "product", "pay_in",
                    "pay_out", "access_point", "speed")

#: Ids of services by key.
_SERVICE_IDS = "SELECT id, service_key FROM services WHERE service_key = ANY($1::text[])"
#: Held by a write that creates services, until it commits: one such writer at a time, so
#: that two writers pricing the same new service do not both create it (the second waits,
#: then finds it). An advisory lock (the migrations hold 7411601, an RPW import 7411602),
#: not a table lock: it needs no privilege beyond the writer's own, does not wait for
#: autovacuum and holds up no reader. Only sendcost's writers take it; should anything else
#: insert a service meanwhile with an id this write drew, the primary key refuses one of
#: the two rows and that write fails whole, to be tried again: no row is ever wrong.
_LOCK_SERVICES = "SELECT pg_advisory_xact_lock(7411603)"
#: Draws $1 service ids in one go (under _LOCK_SERVICES); returns the last.
_DRAW_SERVICE_IDS = "SELECT setval('services_id_seq', nextval('services_id_seq') + $1 - 1)"
#: Held while spooled responses are archived (``Store.archive_spooled``): one replayer at a
#: time, so a response is archived once however many processes replay the same spool.
_LOCK_SPOOL = "SELECT pg_advisory_xact_lock(7411604)"
#: A run (alias {r}) that may have left quotes unstored: failed for another reason than
#: that no request succeeded, or counted a spooled response or a failed write.
_LOST_SOMETHING = (
    "({r}.status = 'failed' AND coalesce({r}.message, '') NOT LIKE 'no request succeeded%') "
    "OR {r}.errors ?| array['spooled', 'database']")
#: One recoverer per run (7411605; the second key is the run id, modulo 2^31).
_TRY_LOCK_RECOVERY = "SELECT pg_try_advisory_lock(7411605, ($1::bigint % 2147483648)::int)"
_UNLOCK_RECOVERY = "SELECT pg_advisory_unlock(7411605, ($1::bigint % 2147483648)::int)"
#: The archived header that carries a spooled response's key (collector/spool.py).
SPOOL_KEY_HEADER = "X-Sendcost-Spool"


#: Draws $1 quote ids (not under a lock: each nextval is its own).
_DRAW_QUOTE_IDS = "SELECT nextval('quotes_id_seq') FROM generate_series(1, $1::integer)"
#: Adds the quotes just written ($1: their ids, collected from $2 to $3) to the serving
#: rollups (migrations 8 and 10).
_ROLLUP_QUOTES = "SELECT rollup_quotes($1::bigint[], $2::timestamptz, $3::timestamptz)"
#: The same, reading every month: for a database whose migration 11 came before the bounded
#: function did (one migrated by a build between the two).
_ROLLUP_QUOTES_ALL = "SELECT rollup_quotes($1::bigint[])"
_HAS_BOUNDED_ROLLUP = ("SELECT to_regprocedure("
                       "'rollup_quotes(bigint[], timestamptz, timestamptz)') IS NOT NULL")
#: Archives raw responses given column by column ($1 … $11, arrays of one length), in one
#: statement and one round trip (no transaction, temporary table or COPY around it: a
#: collector archives every few milliseconds, in batches of tens): each row's id drawn from
#: the sequence as it is read, returned in the rows' order. Headers travel as JSON text.
_ARCHIVE_RAW = (
    "WITH r AS MATERIALIZED (SELECT nextval('raw_responses_id_seq') AS id, u.* FROM unnest("
    "$1::text[], $2::text[], $3::timestamptz[], $4::integer[], $5::text[], $6::text[], "
    "$7::text[], $8::bytea[], $9::bigint[], $10::text[], $11::integer[]) WITH ORDINALITY "
    "AS u (source, url, fetched_at, status, content_type, headers, content_hash, payload, "
    "run_id, licence, body_size, n)), "
    "ins AS (INSERT INTO raw_responses (id, source, url, fetched_at, status, content_type, "
    "headers, content_hash, payload, run_id, licence, body_size) SELECT id, source, url, "
    "fetched_at, status, content_type, headers::jsonb, content_hash, payload, run_id, "
    "licence, body_size FROM r) "
    "SELECT id FROM r ORDER BY n")
#: The most body bytes one archive statement carries: its bodies travel as one bytea array,
#: and a PostgreSQL value holds at most 1 GB (large files are archived in statements of
#: their own).
_ARCHIVE_STATEMENT_BYTES = 64 * 1024 * 1024


def _archive_statements(rows: Sequence[dict[str, Any]]) -> list[Sequence[dict[str, Any]]]:
    """``rows`` in consecutive parts of at most ``_ARCHIVE_STATEMENT_BYTES`` of bodies
    each (a larger body alone): one archive statement each, most often just one."""
    parts: list[Sequence[dict[str, Any]]] = []
    start, size = 0, 0
    for i, r in enumerate(rows):
        body = len(r.get("body") or b"")
        if i > start and size + body > _ARCHIVE_STATEMENT_BYTES:
            parts.append(rows[start:i])
            start, size = i, 0
        size += body
    parts.append(rows[start:])
    return parts


#: When each raw response of $1 was fetched: the second half of its key (migration 10),
#: which a row naming it carries beside its id.
_RAW_FETCHED_AT = "SELECT id, fetched_at FROM raw_responses WHERE id = ANY($1::bigint[])"


def _ensure_sql(table: str, a: str, b: str) -> str:
    """Ids of rows of ``table`` by key columns ``a`` and ``b`` ($1, $2: arrays), inserting
    the missing ones: the inserted rows from RETURNING, the others from the table as it was
    when the statement began."""
    return (f"WITH w ({a}, {b}) AS (SELECT * FROM unnest($1::text[], $2::text[])), "
            f"ins AS (INSERT INTO {table} ({a}, {b}) SELECT * FROM w ON CONFLICT DO NOTHING "
            f"RETURNING id, {a}, {b}) "
            f"SELECT id, {a}, {b} FROM ins UNION ALL "
            f"SELECT t.id, t.{a}, t.{b} FROM {table} t JOIN w USING ({a}, {b})")


_ENSURE_CORRIDORS = _ensure_sql("corridors", "source_code", "destination_code")
_ENSURE_FIRMS = _ensure_sql("firms", "name", "firm_type")


def _write(method: Callable[Concatenate[Store, P], Awaitable[R]]
           ) -> Callable[Concatenate[Store, P], Awaitable[R]]:
    """A write whose outcome tells /healthz whether the database takes writes."""

    @functools.wraps(method)
    async def noted(self: Store, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result = await method(self, *args, **kwargs)
        except BaseException as exc:
            self.health.failed(exc)
            raise
        self.health.succeeded()
        return result

    return noted


class Store:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool
        #: Whether the last write that says something of it found the database writable.
        self.health = WriteHealth()
        #: Whether rollup_quotes takes the written quotes' time bounds (checked by migrate).
        self._bounded_rollup = True

    async def close(self, timeout: float = 10.0) -> None:
        """Close the pool once its connections are given back, waiting ``timeout`` seconds at
        most: a connection never given back (its holder wedged, or its protocol left broken
        by a session the server ended) must not keep a stopping service from stopping.
        Past the timeout the pool is terminated (asyncpg does so when close() is cancelled)."""
        try:
            await asyncio.wait_for(self.pool.close(), timeout)
        except TimeoutError:
            log.warning("the database pool did not close within %.0f s (a connection was "
                        "never given back); its connections were terminated", timeout)

    # -- schema ------------------------------------------------------------------------------

    async def migrate(self, *, partitions_ahead: int = 3) -> list[str]:
        """Apply pending migrations; return the names applied. Safe to run concurrently.

        Then makes the month partitions of quotes and raw responses for this month and
        ``partitions_ahead`` months after it, where missing (corridors.partitions)."""
        applied: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            # One migrator at a time, whichever process gets here first.
            await conn.execute("SELECT pg_advisory_xact_lock(7411601)")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, sql in migrations():
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
                applied.append(name)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        await self.load_reference_data()
        if await self.schema_version() >= partitions.PARTITIONS_VERSION:
            await partitions.ensure_partitions(self, partitions_ahead)
        self._bounded_rollup = bool(await self.pool.fetchval(_HAS_BOUNDED_ROLLUP))
        return applied

    async def schema_version(self) -> int:
        exists = await self.pool.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not exists:
            return 0
        return int(await self.pool.fetchval("SELECT coalesce(max(version), 0) FROM "
                                            "schema_migrations"))

    async def row_counts(self) -> dict[str, int]:
        counts = {}
        async with self.pool.acquire() as conn:
            for table in TABLES:
                if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                    counts[table] = await conn.fetchval(f"SELECT count(*) FROM {table}")
        return counts

    async def load_reference_data(self) -> None:
        """Countries and currencies from the shipped reference data (idempotent upsert)."""
        from corridors.reference import countries, currencies

        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO currencies (code, name, numeric) VALUES ($1, $2, $3) "
                "ON CONFLICT (code) DO UPDATE SET name = excluded.name, numeric = excluded.numeric",
                [(c.code, c.name, c.numeric) for c in currencies().values()],
            )
            await conn.executemany(
                "INSERT INTO countries (alpha3, alpha2, name, region, income_group, g8, g20, "
                "currency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (alpha3) DO UPDATE "
                "SET alpha2 = excluded.alpha2, name = excluded.name, region = excluded.region, "
                "income_group = excluded.income_group, g8 = excluded.g8, g20 = excluded.g20, "
                "currency = excluded.currency",
                [(c.alpha3, c.alpha2, c.name, c.region, c.income_group, c.g8, c.g20, c.currency)
                 for c in countries().values()],
            )

    # -- quotes ------------------------------------------------------------------------------

    async def store_quotes(self, quotes: Sequence[Quote], *, run_id: int | None = None,
                           import_id: int | None = None,
                           conn: asyncpg.Connection | None = None) -> StoreResult:
        """Store quotes exactly once; return how many were new and how many already there.

        Everything happens in one transaction: on error nothing of this batch is stored.
        """
        if not quotes:
            return StoreResult(0, 0)
        [result] = await self.write_batches([WriteBatch(quotes, run_id)], import_id=import_id,
                                            conn=conn)
        return StoreResult(result.inserted, result.duplicates)

    @_write
    async def write_batches(self, batches: Sequence[WriteBatch], *,
                            import_id: int | None = None,
                            conn: asyncpg.Connection | None = None) -> list[WriteResult]:
        """Store several runs' quotes and quarantine records in one transaction: all of it,
        or (on error) none of it. One result per batch, in order. The batches' run ids must
        differ (the counts of a run are told apart by its id)."""
        if conn is None:
            async with self.pool.acquire() as own:
                return await self.write_batches(batches, import_id=import_id, conn=own)
        quotes = [q for b in batches for q in b.quotes]
        async with conn.transaction():
            if quotes:
                # Services by key, read in this transaction (one round trip): the foreign
                # keys (migration 10) check what a cached id could no longer promise.
                service_ids = await self._ensure_services(conn, quotes)
                fetched = await self._raw_fetched_at(
                    conn, {q.raw_response_id for q in quotes if q.raw_fetched_at is None})
                records = [
                    (
                        service_ids[q.service_key], q.period, q.amount_usd, q.send_amount,
                        q.send_currency, q.receive_currency, q.payout_currency_noted,
                        q.fee, q.applied_rate,
                        q.reference_rate, q.reference_source, q.reference_at,
                        q.fx_margin_reported, q.total_cost_reported, q.received_amount,
                        q.fee_deducted, q.transparent, q.collected_at, q.source,
                        q.raw_response_id, b.run_id, import_id, list(q.flags),
                        DataKind(q.data_kind).value,
                        None if q.raw_response_id is None
                        else q.raw_fetched_at or fetched.get(q.raw_response_id),
                    )
                    for b in batches for q in b.quotes
                ]
                inserted, ids = await self._insert_quotes(conn, records, batches)
                # What serving reads (migration 8), from the quotes just written, in the
                # same transaction: every writer goes through here. Their collection times
                # bound the partitions read (migration 10).
                if self._bounded_rollup:
                    times = [q.collected_at for q in quotes]
                    await conn.execute(_ROLLUP_QUOTES, ids, min(times), max(times))
                else:
                    await conn.execute(_ROLLUP_QUOTES_ALL, ids)
                # Serving processes refresh when this commits (corridors/notify.py).
                await conn.execute(NOTIFY_QUOTES)
            else:
                inserted = [0] * len(batches)
            quarantined = [await self.quarantine(b.quarantine, conn=conn) for b in batches]
        return [WriteResult(n, len(b.quotes) - n, k)
                for b, n, k in zip(batches, inserted, quarantined, strict=True)]

    @staticmethod
    async def _raw_fetched_at(conn: asyncpg.Connection, raw_ids: set[int | None]
                              ) -> dict[int | None, dt.datetime]:
        """When each of ``raw_ids`` was fetched (the rest of its key). An id not archived
        is left out: the row naming it is then refused by its foreign key (MATCH FULL)."""
        wanted = [i for i in raw_ids if i is not None]
        if not wanted:
            return {}
        return {r["id"]: r["fetched_at"] for r in await conn.fetch(_RAW_FETCHED_AT, wanted)}

    @staticmethod
    async def _insert_quotes(conn: asyncpg.Connection, records: list[tuple[Any, ...]],
                             batches: Sequence[WriteBatch]) -> tuple[list[int], list[int]]:
        """Insert quote rows, skipping those already stored; how many of each batch were new,
        and the ids of the new rows."""
        cols = list(COPY_COLUMNS)
        # Most batches are new quotes (a new collection time): COPY them straight in, under
        # ids drawn beforehand (the rollups are made from them). Should one already be there,
        # the savepoint undoes the COPY and the slower path sorts the duplicates out.
        ids = [r[0] for r in await conn.fetch(_DRAW_QUOTE_IDS, len(records))]
        try:
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "quotes", records=[(i, *r) for i, r in zip(ids, records, strict=True)],
                    columns=["id", *cols])
            return [len(b.quotes) for b in batches], ids
        except asyncpg.UniqueViolationError:
            pass
        col_list = ", ".join(cols)
        # Only the columns we copy, and no defaults: a LIKE copy would draw an id from the
        # quotes sequence for every row, only to draw another on insert.
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _incoming_quotes ON COMMIT DELETE ROWS AS "
            f"SELECT {col_list} FROM quotes WITH NO DATA")
        await conn.copy_records_to_table("_incoming_quotes", records=records, columns=cols)
        rows = await conn.fetch(
            f"WITH ins AS (INSERT INTO quotes ({col_list}) "
            f"SELECT DISTINCT ON (source, service_id, amount_usd, send_amount, collected_at) "
            f"{col_list} FROM _incoming_quotes "
            "ON CONFLICT (source, service_id, amount_usd, send_amount, collected_at) "
            "DO NOTHING RETURNING run_id, id) "
            "SELECT run_id, count(*) AS n, array_agg(id) AS ids FROM ins GROUP BY 1")
        by_run = {r["run_id"]: r["n"] for r in rows}
        return ([by_run.pop(b.run_id, 0) for b in batches],
                [i for r in rows for i in r["ids"]])

    async def _ensure_services(self, conn: asyncpg.Connection,
                               quotes: Sequence[Quote]) -> dict[str, int]:
        """Ids of the quotes' services, creating corridors, firms and services as needed."""
        if not quotes:
            return {}
        keys = list(dict.fromkeys(q.service_key for q in quotes))
        ids = {r["service_key"]: r["id"] for r in await conn.fetch(_SERVICE_IDS, keys)}
        if len(ids) == len(keys):
            return ids  # all there already: the steady state, no lock taken
        # One creator of services at a time, until this write commits: what the look-up
        # below misses is this write's to create, under ids it draws from the sequence in
        # one go, since no other writer creates a service (and so draws an id) meanwhile.
        await conn.execute(_LOCK_SERVICES)
        rows = await conn.fetch(_SERVICE_IDS, keys)
        ids = {r["service_key"]: r["id"] for r in rows}
        if len(ids) == len(keys):
            return ids  # another writer created them meanwhile
        new: dict[str, Quote] = {}
        for q in quotes:
            if q.service_key not in ids and q.service_key not in new:
                new[q.service_key] = q
        corridor_ids = await self._ensure_ids(
            conn, _ENSURE_CORRIDORS, {(q.source_code, q.destination_code) for q in new.values()})
        firm_ids = await self._ensure_ids(
            conn, _ENSURE_FIRMS, {(q.firm.name, q.firm.firm_type.value) for q in new.values()})
        last = await conn.fetchval(_DRAW_SERVICE_IDS, len(new))
        first = last - len(new) + 1
        records = []
        for i, (key, q) in enumerate(new.items(), first):
            a = q.service
            records.append((
                i, key, corridor_ids[(q.source_code, q.destination_code)],
                firm_ids[(q.firm.name, q.firm.firm_type.value)], a.product, _opt(a.pay_in),
                _opt(a.pay_out), _opt(a.access_point), _opt(a.speed)))
        # COPY, about twice as fast as an INSERT of the same rows (a first collection
        # creates thousands of services).
        await conn.copy_records_to_table("services", records=records,
                                         columns=("id", *SERVICE_COLUMNS))
        ids.update(zip(new, range(first, last + 1), strict=True))
        return ids

    @staticmethod
    async def _ensure_ids(conn: asyncpg.Connection, sql: str,
                          pairs: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Ids of corridors or firms by their two key columns, created where missing, in one
        statement. Writers create them only under the services lock, so none is created
        meanwhile; should one be (by a writer of another version), the statement waits for
        it and skips it, and its second run, with a newer snapshot, finds it."""
        ordered = sorted(pairs)
        found: dict[tuple[str, str], int] = {}
        for _ in range(2):
            rows = await conn.fetch(sql, [p[0] for p in ordered], [p[1] for p in ordered])
            found.update(((r[1], r[2]), r[0]) for r in rows)
            ordered = [p for p in ordered if p not in found]
            if not ordered:
                break
        return found

    async def quote_frame(self, period: Period | str | None = None,
                          amount_usd: int | None = None,
                          source: str | None = None) -> pl.DataFrame:
        """Quotes as the quote frame, for one period (a quarter includes its months)."""
        clauses: list[str] = []
        args: list[object] = []
        if period is not None:
            p = period if isinstance(period, Period) else _parse(period)
            args.append(p.labels)
            clauses.append(f"period = ANY(${len(args)}::text[])")
        if amount_usd is not None:
            args.append(amount_usd)
            clauses.append(f"amount_usd = ${len(args)}")
        if source is not None:
            args.append(source)
            clauses.append(f"source = ${len(args)}")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.pool.fetch(f"SELECT {_FRAME_COLUMNS} FROM quote_frame{where}", *args)
        label = str(p) if period is not None and p.is_quarter else None
        # Building the frame is CPU work: keep the event loop free while it runs.
        return await asyncio.to_thread(_quote_frame_of, rows, label)

    async def periods(self) -> list[str]:
        rows = await self.pool.fetch("SELECT DISTINCT period FROM quotes ORDER BY period")
        return [r["period"] for r in rows]

    # -- provenance --------------------------------------------------------------------------

    @_write
    async def archive_raw_many(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Archive many upstream responses, all of them or (on error) none; return their ids
        in order.

        Each row has ``source``, ``url``, ``fetched_at`` and optionally ``status``,
        ``content_type``, ``headers``, ``body``, ``run_id``, ``licence`` and ``content_hash``
        (else the body's; a 304 gives the hash of the body it re-uses, which it does not
        store). One statement (``_ARCHIVE_RAW``), atomic on its own; bodies too large
        together for one (``_ARCHIVE_STATEMENT_BYTES``) go in several, in one transaction.
        """
        if not rows:
            return []
        if len(_archive_statements(rows)) == 1:
            return await self._archive_raw(self.pool, rows)
        async with self.pool.acquire() as conn, conn.transaction():
            return await self._archive_raw(conn, rows)

    async def archive_spooled(self, rows: Sequence[dict[str, Any]]) -> int:
        """Archive responses kept in the local spool (``collector.spool``), each once: a row
        archived already — same run, URL and time — is skipped, so a replay that is repeated
        (a crash after its commit, two processes at once, the same response in a killed
        process's journal too) adds nothing. Returns how many were new. Each keeps its spool
        key (header ``X-Sendcost-Spool``): where it came from."""
        return await self.archive_missing(rows)

    async def archive_missing(self, rows: Sequence[dict[str, Any]]) -> int:
        """Archive those of ``rows`` (a killed collector's journal, the spool) the archive
        lacks: a response is the same when its run, URL and time are. Returns how many were
        new. One replayer at a time (an advisory lock), so each is archived once."""
        if not rows:
            return 0
        runs = sorted({r["run_id"] for r in rows if r.get("run_id") is not None})
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_LOCK_SPOOL)
            there = {(r["run_id"], r["url"], r["fetched_at"]) for r in await conn.fetch(
                "SELECT run_id, url, fetched_at FROM raw_responses "
                "WHERE run_id = ANY($1::bigint[])", runs)}
            new = [r for r in rows if (r.get("run_id"), r["url"], r["fetched_at"]) not in there]
            await self._archive_raw(conn, new)
        return len(new)

    @staticmethod
    async def _archive_raw(conn: asyncpg.Connection | asyncpg.Pool,
                           rows: Sequence[dict[str, Any]]) -> list[int]:
        """Archive ``rows``, one ``_ARCHIVE_RAW`` statement per ``_archive_statements``
        part (a pool only when there is one part: several need the caller's transaction)."""
        if not rows:
            return []
        ids: list[int] = []
        for part in _archive_statements(rows):
            records = [
                (r["source"], r["url"], r["fetched_at"], r.get("status"),
                 r.get("content_type"), json.dumps(r.get("headers") or {}),
                 r.get("content_hash") or hashlib.sha256(r.get("body") or b"").hexdigest(),
                 r.get("body"), r.get("run_id"), r.get("licence"),
                 None if r.get("body") is None else len(r["body"]))
                for r in part
            ]
            columns = [list(column) for column in zip(*records, strict=True)]
            ids += [row[0] for row in await conn.fetch(_ARCHIVE_RAW, *columns)]
        return ids

    async def database_key(self) -> str:
        """A name for this database that stays the same for its life and differs from other
        databases' (its name and when it was first migrated): the collectors' spool keeps
        each database's responses apart, so one is never replayed into another."""
        row = await self.pool.fetchrow(
            "SELECT current_database() AS name, to_char(min(applied_at) AT TIME ZONE 'UTC', "
            "'YYYYMMDD\"T\"HH24MISSUS') AS born FROM schema_migrations")
        return "".join(c if c.isalnum() or c in "-_." else "_"
                       for c in f"{row['name']}-{row['born']}")

    async def raw_responses_of_run(self, run_id: int) -> list[dict[str, Any]]:
        """The archived responses of a run, oldest first (for a re-parse)."""
        rows = await self.pool.fetch(
            "SELECT id, url, fetched_at, status, content_type, headers, payload, content_hash "
            "FROM raw_responses WHERE run_id = $1 ORDER BY id", run_id)
        return [dict(r) for r in rows]

    async def raw_payload(self, raw_id: int) -> bytes | None:
        return await self.pool.fetchval("SELECT payload FROM raw_responses WHERE id = $1",
                                        raw_id)

    @_write
    async def replace_quotes_of_raw(self, source: str, raw_ids: Sequence[int],
                                    batch: WriteBatch) -> WriteResult:
        """In one transaction: drop the quotes and quarantine records ``source`` derived from
        ``raw_ids``, and write ``batch`` (a re-parse of those responses) in their place."""
        async with self.pool.acquire() as conn, conn.transaction():
            for table in ("quotes", "quarantined_quotes"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE source = $1 "
                    "AND raw_response_id = ANY($2::bigint[])", source, list(raw_ids))
            [result] = await self.write_batches([batch], conn=conn)
            return result

    async def run_info(self, run_id: int) -> dict[str, Any] | None:
        row = await self.pool.fetchrow("SELECT * FROM collection_runs WHERE id = $1", run_id)
        return dict(row) if row else None

    @_write
    async def start_run(self, source: str, *, reparse_of: int | None = None) -> int:
        run_id = int(await self.pool.fetchval(
            "INSERT INTO collection_runs (source, reparse_of, host, pid) "
            "VALUES ($1, $2, $3, $4) RETURNING id",
            source, reparse_of, socket.gethostname(), os.getpid()))
        _RUNS_STARTED_HERE.add(run_id)
        return run_id

    async def runs_to_recover(self, sources: Sequence[str],
                              run_ids: Sequence[int] | None = None) -> list[int]:
        """Runs of ``sources`` whose archived responses' quotes may not all be stored, oldest
        first: runs that failed (killed and abandoned, cancelled, cut off from the database
        at their last write) or that spooled a response or failed a write, which no re-parse
        has completed since. A run that failed only because no request succeeded has
        nothing to recover; nor has a run with no usable response archived. A run three
        re-parses could not recover is left to a person (``sendcost collect --reparse``)."""
        rows = await self.pool.fetch(
            "SELECT r.id FROM collection_runs r WHERE r.reparse_of IS NULL "
            "AND r.source = ANY($1::text[]) "
            "AND ($2::bigint[] IS NULL OR r.id = ANY($2::bigint[])) "
            f"AND ({_LOST_SOMETHING.format(r='r')}) "
            "AND EXISTS (SELECT 1 FROM raw_responses a WHERE a.run_id = r.id "
            "AND a.status < 400) "
            "AND NOT EXISTS (SELECT 1 FROM collection_runs p WHERE p.reparse_of = r.id "
            f"AND p.status <> 'running' AND NOT ({_LOST_SOMETHING.format(r='p')})) "
            "AND (SELECT count(*) FROM collection_runs p WHERE p.reparse_of = r.id) < 3 "
            "ORDER BY r.id", list(sources), None if run_ids is None else list(run_ids))
        return [r["id"] for r in rows]

    @contextlib.asynccontextmanager
    async def recovery_lock(self, run_id: int) -> AsyncIterator[bool]:
        """Yields whether this process may recover ``run_id`` now (no other holds it), held
        until the block ends (a session advisory lock on a connection of its own)."""
        async with self.pool.acquire() as conn:
            mine = bool(await conn.fetchval(_TRY_LOCK_RECOVERY, run_id))
            try:
                yield mine
            finally:
                if mine:
                    await conn.fetchval(_UNLOCK_RECOVERY, run_id)

    async def abandon_dead_runs(self, *, older_than: dt.timedelta = dt.timedelta(days=1)
                                ) -> list[int]:
        """Mark failed the runs still 'running' whose process is gone: on this host, a pid
        that no longer exists; on any host, a start longer ago than ``older_than`` (no run
        lasts that long). Returns their ids."""
        host = socket.gethostname()
        rows = await self.pool.fetch(
            "SELECT id, source, host, pid, now() - started_at AS age FROM collection_runs "
            "WHERE status = 'running'")
        dead: list[tuple[int, str]] = []
        for r in rows:
            mine = r["host"] == host and r["pid"] == os.getpid()
            if r["host"] == host and r["pid"] is not None and (
                    # Our pid, but not a run this process started: a previous process that
                    # had the pid (a container's service is often pid 1 on every start).
                    (mine and r["id"] not in _RUNS_STARTED_HERE)
                    or (not mine and not pid_alive(r["pid"]))):
                why = f"process {r['pid']} on {host} ended before recording the run's end"
            elif r["age"] > older_than:
                why = (f"still 'running' {r['age']} after it started (process "
                       f"{r['pid'] or '?'} on {r['host'] or 'an unknown host'})")
            else:
                continue
            dead.append((r["id"], f"abandoned: {why}"))
        if dead:
            # What the run did before its process ended, from what it left: the responses
            # it archived (one per request that got an answer), the quotes and quarantine
            # records it wrote; its errors say why it ended.
            await self.pool.executemany(
                "UPDATE collection_runs c SET status = 'failed', finished_at = now(), "
                "message = $2, errors = c.errors || '{\"abandoned\": 1}'::jsonb, "
                "requests = greatest(c.requests, (SELECT count(*) FROM raw_responses r "
                "  WHERE r.run_id = c.id)), "
                "quotes_stored = greatest(c.quotes_stored, (SELECT count(*) FROM quotes q "
                "  WHERE q.run_id = c.id "
                "  AND q.period >= to_char(c.started_at AT TIME ZONE 'UTC', 'YYYY-MM'))), "
                "quotes_quarantined = greatest(c.quotes_quarantined, (SELECT count(*) "
                "  FROM quarantined_quotes x WHERE x.run_id = c.id)) "
                "WHERE c.id = $1 AND c.status = 'running'", dead)
            for run_id, why in dead:
                log.warning("collection run %d marked failed: %s", run_id, why)
        return [run_id for run_id, _ in dead]

    @_write
    async def finish_run(self, run_id: int, *, status: str, requests: int, quotes_stored: int,
                         quotes_quarantined: int, errors: dict[str, int],
                         message: str | None = None) -> None:
        await self.pool.execute(
            "UPDATE collection_runs SET finished_at = now(), status = $2, requests = $3, "
            "quotes_stored = $4, quotes_quarantined = $5, errors = $6, message = $7 "
            "WHERE id = $1", run_id, status, requests, quotes_stored, quotes_quarantined,
            errors, message)

    async def quarantine(self, records: Sequence[dict[str, Any]], *,
                         conn: asyncpg.Connection | None = None) -> int:
        """Keep implausible quotes with their reason. Each record: source, reason, payload,
        and optionally run_id, raw_response_id (with raw_fetched_at, else looked up),
        field."""
        if not records:
            return 0
        if conn is None:
            async with self.pool.acquire() as own, own.transaction():
                return await self.quarantine(records, conn=own)
        fetched = await self._raw_fetched_at(conn, {
            r.get("raw_response_id") for r in records if r.get("raw_fetched_at") is None})
        await conn.executemany(
            "INSERT INTO quarantined_quotes (source, run_id, raw_response_id, reason, field, "
            "payload, raw_fetched_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [(r["source"], r.get("run_id"), r.get("raw_response_id"), r["reason"],
              r.get("field"), r["payload"],
              None if r.get("raw_response_id") is None
              else r.get("raw_fetched_at") or fetched.get(r.get("raw_response_id")))
             for r in records])
        return len(records)

    @_write
    async def store_reference_rates(self, rates: Sequence[tuple[str, str, str, Decimal,
                                                                dt.datetime, int | None]]) -> int:
        """(source, base, quote, rate, as_of, raw_response_id) rows; duplicates absorbed."""
        if not rates:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            fetched = await self._raw_fetched_at(conn, {r[5] for r in rates})
            await conn.executemany(
                "INSERT INTO reference_rates (source, base, quote, rate, as_of, raw_response_id, "
                "raw_fetched_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                [(*r, fetched.get(r[5])) for r in rates])
        return len(rates)

    async def last_collected(self, source: str) -> dt.datetime | None:
        """When the last run of ``source`` that collected anything (ok or partial) started."""
        value = await self.pool.fetchval(
            "SELECT max(started_at) FROM collection_runs WHERE source = $1 "
            "AND status IN ('ok', 'partial')", source)
        return value if isinstance(value, dt.datetime) else None

    async def last_runs(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (source) source, id, started_at, finished_at, status, "
            "quotes_stored, quotes_quarantined FROM collection_runs "
            "ORDER BY source, started_at DESC")
        return [dict(r) for r in rows]

    async def ping(self) -> bool:
        try:
            return await self.pool.fetchval("SELECT 1") == 1
        except STORE_ERRORS:
            return False


_FRAME_COLUMNS = ", ".join(QUOTE_FRAME_SCHEMA)
#: The quote frame with text as plain strings, as rows arrive; conform() makes it Categorical.
_ROW_SCHEMA = {k: pl.String() if v == pl.Categorical else v for k, v in QUOTE_FRAME_SCHEMA.items()}


def _quote_frame_of(rows: Sequence[asyncpg.Record], quarter: str | None) -> pl.DataFrame:
    frame = pl.DataFrame({c: [r[c] for r in rows] for c in QUOTE_FRAME_SCHEMA},
                         schema=_ROW_SCHEMA)
    if quarter is not None:
        # Monthly quotes of a quarter are labelled with the quarter they belong to.
        frame = frame.with_columns(pl.lit(quarter).alias("period"))
    return conform(frame).collect()


class _OneLine(logging.Filter):
    """While the database is away, asyncpg's pool retries reconnecting (backing off to once a
    minute) and logs a whole traceback each time: one line with the error says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLine())

#: When this process started (near enough: when this module was first imported).
#: The collection runs this process started: a run 'running' under our host and pid that is
#: not among them is a previous process's (no clock is compared).
_RUNS_STARTED_HERE: set[int] = set()


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _parse(text: str) -> Period:
    from corridors.periods import parse_period

    return parse_period(text)
