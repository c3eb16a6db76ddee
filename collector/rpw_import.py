"""Import World Bank RPW data into the store: read, convert and store the file a chunk of
rows at a time, all in one transaction.

A file that fails to parse stores nothing; nor does one of which more than
``max_rejected_share`` of the rows were rejected (``[import]`` in config.toml): both are
found as the file is read, and the transaction is rolled back. A re-import of the same
file adds nothing (quotes are unique per source, service, amount and collection time).
What an import holds at a time is two chunks of rows (``chunk_rows``: the one being stored,
the next being read) and their quotes, not the file (docs/indicators.md has the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import polars as pl

from corridors import partitions
from corridors.config import DEFAULT_MAX_REJECTED_SHARE
from corridors.frame import empty_quote_frame
from corridors.reading.rpw import (
    BUNDLED_RPW,
    CHUNK_ROWS,
    RpwRead,
    bundled_rpw_path,
    iter_rpw,
)
from corridors.store import STORE_ERRORS, Store
from corridors.types import (
    AccessPoint,
    DataKind,
    Firm,
    FirmType,
    PayIn,
    PayOut,
    Quote,
    ServiceAttributes,
    Speed,
)

log = logging.getLogger(__name__)

RPW_LICENCE = ("CC BY 4.0 — The World Bank, Remittance Prices Worldwide, available at "
               "http://remittanceprices.worldbank.org")
_CHUNK = 5000


#: The first key of the advisory lock an import of a file holds (the second: its hash).
_IMPORT_LOCK = 7411602


@dataclass
class ImportSummary:
    path: str
    import_id: int | None
    rows_read: int
    quotes_read: int
    quotes_stored: int
    duplicates: int
    services: int
    periods: list[str]
    corridors: int
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rows_used: int = 0
    #: column → label → rows, for labels kept verbatim that sendcost does not know
    unknown_labels: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The earlier import that stored this very file, when it was not parsed again...
    same_as: int | None = None
    #: ...when it finished, and the quotes of the file it read (new and already there).
    same_as_finished: dt.datetime | None = None
    same_as_quotes: int = 0
    #: Quotes of months detached from the store (docs/storage.md), left out.
    detached: int = 0

    @classmethod
    def already(cls, path: str, import_id: int, finished: dt.datetime | None = None,
                quotes: int = 0) -> ImportSummary:
        return cls(path=path, import_id=None, rows_read=0, quotes_read=0, quotes_stored=0,
                   duplicates=0, services=0, periods=[], corridors=0, same_as=import_id,
                   same_as_finished=finished, same_as_quotes=quotes)

    def lines(self) -> list[str]:
        if self.same_as is not None:
            on = (f" on {self.same_as_finished:%Y-%m-%d}" if self.same_as_finished else "")
            return [f"{self.path}: already imported{on} (import {self.same_as}, same "
                    f"SHA-256): {self.same_as_quotes:,} quotes; nothing to do, not parsed "
                    "again"]
        out = [
            f"imported {self.path}",
            f"  rows read:      {self.rows_read:,} ({self.quotes_read:,} quotes at USD 200/500)",
            f"  rows used:      {self.rows_used:,}",
            f"  quotes stored:  {self.quotes_stored:,} new, {self.duplicates:,} already there"
            + (f", {self.detached:,} of detached months left out" if self.detached else ""),
            f"  services:       {self.services:,}",
            f"  corridors:      {self.corridors:,}",
            f"  periods:        {', '.join(self.periods)}",
            f"  rows rejected:  {len(self.rejected):,}",
        ]
        for r in self.rejected[:20]:
            where = f"sheet {r['sheet']!r} " if r.get("sheet") else ""
            out.append(f"    {where}line {r.get('line')}, column {r.get('column')!r}, value "
                       f"{r.get('value')!r}: {r.get('reason')}")
        if len(self.rejected) > 20:
            out.append(f"    … and {len(self.rejected) - 20} more (see the imports table)")
        return out


def _decimals(values: list[float | None]) -> list[Decimal | None]:
    """Each float as the Decimal of its shortest repr (1.57, not 1.5700000…), each distinct
    value converted once: a workbook repeats a few thousand amounts, fees and rates over
    half a million quotes."""
    memo = {v: Decimal(repr(v)) for v in set(values) if v is not None}
    return [memo.get(v) if v is not None else None for v in values]


def _memo(values: list[str | None], make: Callable[[str], Any]) -> list[Any]:
    memo = {v: make(v) for v in set(values) if v}
    return [memo.get(v) if v else None for v in values]


def frame_to_quotes(frame: pl.DataFrame) -> list[Quote]:
    """Quote-frame rows (from a parser) as Quote objects for the store."""
    from corridors.periods import parse_period

    col = {name: frame[name].to_list() for name in frame.columns}
    dec = {name: _decimals(col[name]) for name in (
        "send_amount", "fee", "applied_rate", "reference_rate", "received_amount",
        "fx_margin_reported", "total_cost_reported")}
    firm_types = _memo(col["firm_type"], FirmType)
    pay_in = _memo(col["pay_in"], PayIn)
    pay_out = _memo(col["pay_out"], PayOut)
    access = _memo(col["access_point"], AccessPoint)
    speed = _memo(col["speed"], Speed)
    # The two price points of a service share its firm and attributes: one object each.
    firms: dict[tuple[str, FirmType], Firm] = {}
    services: dict[tuple[object, ...], ServiceAttributes] = {}
    starts: dict[str, dt.datetime] = {}
    quotes = []
    for i in range(frame.height):
        fkey = (col["firm"][i], firm_types[i])
        firm = firms.get(fkey) or firms.setdefault(fkey, Firm(*fkey))
        skey = (col["product"][i] or "", pay_in[i], pay_out[i], access[i], speed[i])
        service = services.get(skey) or services.setdefault(skey, ServiceAttributes(*skey))
        collected = col["collected_at"][i]
        period = col["period"][i]
        if collected is None:
            collected = starts.get(period) or starts.setdefault(
                period, parse_period(period).start)
        quotes.append(Quote(
            source_code=col["source_code"][i],
            destination_code=col["destination_code"][i],
            firm=firm,
            service=service,
            service_key=col["service_id"][i],
            period=period,
            amount_usd=int(col["amount_usd"][i]),
            send_amount=dec["send_amount"][i] or Decimal(0),
            send_currency=col["send_currency"][i],
            receive_currency=col["receive_currency"][i],
            fee=dec["fee"][i],
            applied_rate=dec["applied_rate"][i],
            reference_rate=dec["reference_rate"][i],
            reference_source=col["reference_source"][i],
            reference_at=None,
            transparent=bool(col["transparent"][i]),
            collected_at=collected,
            source=col["source"][i],
            # The World Bank's survey, wherever the file came from: the sandbox serves the
            # bundled World Bank file byte for byte (its import is the bundled one's).
            data_kind=DataKind.SURVEY,
            received_amount=dec["received_amount"][i],
            fx_margin_reported=dec["fx_margin_reported"][i],
            total_cost_reported=dec["total_cost_reported"][i],
            payout_currency_noted=col["payout_currency_noted"][i],
        ))
    return quotes


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


async def import_rpw(store: Store, path: str | Path,
                     progress: Callable[[int, int], None] | None = None, *,
                     digest: str | None = None, unless_imported: bool = False,
                     max_rejected_share: float = DEFAULT_MAX_REJECTED_SHARE,
                     on_read: Callable[[RpwRead], None] | None = None,
                     chunk_rows: int = CHUNK_ROWS,
                     ) -> ImportSummary:
    """Read ``path`` ``chunk_rows`` rows at a time and store each chunk's quotes as it is
    read, all in one transaction, committed once the whole file is read; but for the quotes
    of months detached from the store (``ImportSummary.detached``). Then each month of the
    survey gets a partition of its own where it has none yet (its quotes, stored in the
    default partition meanwhile, move into it), one short transaction each: made inside the
    import's transaction, the lock it takes on ``quotes`` would be held for the whole import.

    ``on_read`` sees what the read found (rows read, used, rejected, unknown labels) once
    the file is read, before the transaction commits. When more than
    ``max_rejected_share`` of the rows were rejected, or the file has no rows,
    ImportFileError is raised and nothing is stored. ``progress`` gets (rows read, rows the
    file says it has) after each chunk.

    Imports of one file (by SHA-256, ``digest`` when the caller has it) take turns. With
    ``unless_imported``, a file that an import already stored whole is not parsed again:
    the summary names that import (``same_as``) and nothing else happens.

    Raises ImportFileError (naming the line) when the file is corrupt: nothing is stored.
    """
    path = Path(path)
    if digest is None:
        digest = await asyncio.to_thread(file_hash, path)
    async with store.pool.acquire() as conn:
        # The bundled import at a first start and a scheduled RPW source may meet on the
        # same file: the second waits here, then finds the first one's import. A session
        # lock, not a transaction's: the survey's month partitions are made after the
        # transaction that stores its quotes, in short ones of their own.
        await conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", _IMPORT_LOCK, digest)
        try:
            summary, months = await _import_locked(
                store, conn, path, digest, progress, unless_imported=unless_imported,
                max_rejected_share=max_rejected_share, on_read=on_read,
                chunk_rows=chunk_rows)
            made = await partitions.make_month_partitions(conn, "quotes", months)
            if made:
                log.info("made %d month partitions for %s", len(made), path)
            return summary
        finally:
            # Should this fail, the pool's reset of the connection releases it.
            with contextlib.suppress(*STORE_ERRORS):
                await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))",
                                   _IMPORT_LOCK, digest)


def _months(quotes: list[Quote]) -> dict[dt.date, list[int]]:
    """The UTC month of each quote's collection time (the partition it goes to): month →
    indexes in ``quotes``."""
    out: dict[dt.date, list[int]] = {}
    for i, q in enumerate(quotes):
        at = q.collected_at.astimezone(dt.UTC) if q.collected_at.tzinfo else q.collected_at
        out.setdefault(dt.date(at.year, at.month, 1), []).append(i)
    return out


async def _import_locked(store: Store, conn: asyncpg.Connection, path: Path, digest: str,
                         progress: Callable[[int, int], None] | None, *,
                         unless_imported: bool, max_rejected_share: float,
                         on_read: Callable[[RpwRead], None] | None, chunk_rows: int,
                         ) -> tuple[ImportSummary, set[dt.date]]:
    """``import_rpw`` once the file's lock is held on ``conn``: the summary, and the months
    of the quotes stored."""
    if unless_imported:
        before = await conn.fetchrow(
            "SELECT id, finished_at, quotes_stored "
            "+ coalesce((summary->>'duplicates')::bigint, 0) AS quotes FROM imports "
            "WHERE kind = 'rpw' AND status = 'ok' AND file_hash = $1 "
            "ORDER BY id DESC LIMIT 1", digest)
        if before is not None:
            # Debug only: the caller says it (the CLI's line, the run's message).
            log.debug("%s is the file import %d stored (same SHA-256): not parsed again",
                      path, before["id"])
            return ImportSummary.already(str(path), before["id"], before["finished_at"],
                                         before["quotes"]), set()
    # A month detached (docs/storage.md) stays out of the store: its quotes, archived with
    # it, are not stored again (the rollups kept their sums, which would count them twice).
    detached = {r["month"] for r in await conn.fetch(
        "SELECT month FROM detachments WHERE parent = 'quotes'")}
    months: set[dt.date] = set()
    left_out: dict[dt.date, int] = {}
    async with conn.transaction():
        import_id = await conn.fetchval(
            "INSERT INTO imports (kind, path, file_hash) VALUES ('rpw', $1, $2) RETURNING id",
            str(path), digest)
        read = RpwRead(path=str(path), frame=empty_quote_frame())
        chunks = iter_rpw(path, read, chunk_rows=chunk_rows, labels=False)
        stored = 0
        periods: set[str] = set()
        corridors: set[tuple[str, str]] = set()
        # The next chunk is read and converted in a thread while this one is stored.
        reading = asyncio.ensure_future(asyncio.to_thread(_next_quotes, chunks))
        try:
            while (chunk := await reading) is not None:
                frame, quotes = chunk
                reading = asyncio.ensure_future(asyncio.to_thread(_next_quotes, chunks))
                periods.update(frame["period"].unique().to_list())
                corridors.update(frame.select("source_code", "destination_code").unique()
                                 .iter_rows())
                by_month = _months(quotes)
                if gone := by_month.keys() & detached:
                    out = {i for m in gone for i in by_month[m]}
                    for m in gone:
                        left_out[m] = left_out.get(m, 0) + len(by_month[m])
                    quotes = [q for i, q in enumerate(quotes) if i not in out]
                months.update(by_month.keys() - detached)
                for start in range(0, len(quotes), _CHUNK):
                    result = await store.store_quotes(quotes[start:start + _CHUNK],
                                                      import_id=import_id, conn=conn)
                    stored += result.inserted
                del frame, quotes, chunk
                if progress:
                    progress(read.rows_read, max(read.rows_read, read.rows_declared))
        finally:
            # A failed store leaves the reading thread to finish its chunk: wait for it,
            # so the file is closed and nothing reads on behind the rolled-back import.
            if not reading.done():
                with contextlib.suppress(Exception):
                    await reading
        if on_read is not None:
            on_read(read)
        read.check_rejected_share(max_rejected_share)
        rejected = [{"line": r.line, "reason": r.reason, "sheet": r.sheet, "column": r.column,
                     "value": r.value, "kind": r.kind} for r in read.rejected]
        in_detached = sum(left_out.values())
        summary = ImportSummary(
            path=str(path), import_id=import_id, rows_read=read.rows_read,
            quotes_read=read.quotes, quotes_stored=stored,
            duplicates=read.quotes - in_detached - stored,
            services=read.rows_kept, periods=sorted(periods), corridors=len(corridors),
            rejected=rejected, rows_used=read.rows_kept, unknown_labels=read.unknown_labels,
            detached=in_detached,
        )
        await conn.execute(
            "UPDATE imports SET finished_at = now(), status = 'ok', rows_read = $2, "
            "quotes_stored = $3, rejected = $4, summary = $5 WHERE id = $1",
            import_id, read.rows_read, stored, rejected,
            {"services": summary.services, "periods": summary.periods,
             "corridors": summary.corridors, "duplicates": summary.duplicates,
             "in_detached_months": summary.detached,
             "rows_used": read.rows_kept, "unknown_labels": read.unknown_labels,
             "rejected_by_reason": dict(read.rejected_by_kind()),
             "licence": RPW_LICENCE, "finished": dt.datetime.now(dt.UTC).isoformat()})
    if left_out:
        log.info("%s: %d quotes of months detached from the store (%s) left out", path,
                 in_detached, ", ".join(f"{m:%Y-%m}" for m in sorted(left_out)))
    log.info("imported %s: %d quotes new, %d already stored, %d rows rejected", path, stored,
             summary.duplicates, len(rejected))
    return summary, months


def _next_quotes(chunks: Iterator[tuple[str | None, pl.DataFrame]]
                 ) -> tuple[pl.DataFrame, list[Quote]] | None:
    """The next chunk's quote frame and its quotes (None: the file is read)."""
    for _, frame in chunks:
        if frame.height:
            return frame, frame_to_quotes(frame)
    return None


async def import_bundled_if_empty(store: Store) -> ImportSummary | None:
    """On a store without quotes, import the bundled 2011-2014 RPW data."""
    if await store.pool.fetchval("SELECT EXISTS (SELECT 1 FROM quotes)"):
        return None
    log.info("empty store: importing the bundled World Bank RPW data (%s)", BUNDLED_RPW)
    # Parsed even when an import of it is recorded: the store has none of its quotes now.
    return await import_rpw(store, bundled_rpw_path())
