"""Closed periods as Parquet, for Polars and DuckDB users (docs/storage.md).

One period's quotes, each with its service, corridor, firm, data kind, flags and provenance
(the source, the run or import that stored it, and the archived response it was parsed from:
URL, fetch time, content hash, licence), written by Polars in parts of at most ``PART_ROWS``
rows into ``DIR/quotes-<period>/part-NNNNN.parquet``. Money and rates are exact decimals
(Decimal(38, 12)), as the store holds them; emulated quotes (the sandbox's invented prices)
are never exported. The parts are written into a temporary folder beside the target and
renamed into place at the end: a failed export leaves nothing half-written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import polars as pl

from corridors.errors import BadPeriod, NoData
from corridors.periods import Period, parse_period
from corridors.store import Store

#: Rows per Parquet file: bounded memory whatever a period holds.
PART_ROWS = 250_000
_MONEY = pl.Decimal(38, 12)
_TIME = pl.Datetime("us", "UTC")

#: The columns of the export, in order, with their Parquet types.
SCHEMA: dict[str, pl.DataType] = {
    "quote_id": pl.Int64(), "period": pl.String(), "source_code": pl.String(),
    "destination_code": pl.String(), "firm": pl.String(), "firm_type": pl.String(),
    "service_key": pl.String(), "product": pl.String(), "pay_in": pl.String(),
    "pay_out": pl.String(), "access_point": pl.String(), "speed": pl.String(),
    "amount_usd": pl.Int16(), "send_amount": _MONEY, "send_currency": pl.String(),
    "receive_currency": pl.String(), "fee": _MONEY, "applied_rate": _MONEY,
    "reference_rate": _MONEY, "reference_source": pl.String(), "reference_at": _TIME,
    "fx_margin_reported": _MONEY, "total_cost_reported": _MONEY, "received_amount": _MONEY,
    "fee_deducted": pl.Boolean(), "transparent": pl.Boolean(), "flags": pl.List(pl.String()),
    "data_kind": pl.String(), "collected_at": _TIME, "source": pl.String(),
    "run_id": pl.Int64(), "import_id": pl.Int64(), "import_file_sha256": pl.String(),
    "raw_response_id": pl.Int64(), "raw_url": pl.String(), "raw_fetched_at": _TIME,
    "raw_content_sha256": pl.String(), "raw_licence": pl.String(),
}

_NUMERIC = ("send_amount", "fee", "applied_rate", "reference_rate", "fx_margin_reported",
            "total_cost_reported", "received_amount")
_COLUMNS = {
    "quote_id": "q.id", "period": "q.period", "source_code": "c.source_code",
    "destination_code": "c.destination_code", "firm": "f.name", "firm_type": "f.firm_type",
    "service_key": "s.service_key", "product": "s.product", "pay_in": "s.pay_in",
    "pay_out": "s.pay_out", "access_point": "s.access_point", "speed": "s.speed",
    "import_file_sha256": "i.file_hash", "raw_url": "r.url", "raw_fetched_at": "r.fetched_at",
    "raw_content_sha256": "r.content_hash", "raw_licence": "r.licence",
}
_SELECT = ", ".join(
    f"round(q.{name}, 12) AS {name}" if name in _NUMERIC
    else f"{_COLUMNS.get(name, 'q.' + name)} AS {name}" for name in SCHEMA)
_QUERY = (
    f"SELECT {_SELECT} FROM quotes q JOIN services s ON s.id = q.service_id "
    "JOIN corridors c ON c.id = s.corridor_id JOIN firms f ON f.id = s.firm_id "
    "LEFT JOIN raw_responses r ON r.id = q.raw_response_id AND r.fetched_at = q.raw_fetched_at "
    "LEFT JOIN imports i ON i.id = q.import_id "
    "WHERE q.period = ANY($1::text[]) AND q.data_kind <> 'emulated' "
    "ORDER BY q.collected_at, q.id")


@dataclass(frozen=True, slots=True)
class ParquetExport:
    period: str
    folder: Path
    files: list[Path]
    quotes: int


def closed_period(text: str, now: dt.datetime | None = None) -> Period:
    """The period ``text`` names, if it has ended; BadPeriod saying why not otherwise."""
    period = parse_period(text)
    now = now or dt.datetime.now(dt.UTC)
    if period.end > now:
        raise BadPeriod(f"period {period} is not closed yet (it ends {period.end:%Y-%m-%d}): "
                        "only closed periods are exported as Parquet")
    return period


def _scratch_folder(out: Path, label: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".quotes-{label}-", dir=out))


def _put_in_place(tmp: Path, target: Path) -> None:
    """Rename the finished folder into place, replacing an earlier export of the period."""
    if target.exists():
        old = target.with_name(f".{target.name}-replaced")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(target)


def _frame(rows: Sequence[asyncpg.Record]) -> pl.DataFrame:
    return pl.DataFrame([tuple(r) for r in rows], schema=SCHEMA, orient="row")


async def export_parquet(store: Store, period: str, out: Path, *,
                         now: dt.datetime | None = None,
                         part_rows: int = PART_ROWS) -> ParquetExport:
    """Write the closed ``period``'s quotes (a quarter: its own and its months') as Parquet
    under ``out``/quotes-<period>/; NoData when it has none. An existing folder of that
    period is replaced whole."""
    p = closed_period(period, now)
    label = str(p)
    target = out / f"quotes-{label}"
    tmp = await asyncio.to_thread(_scratch_folder, out, label)
    try:
        files: list[Path] = []
        total = 0
        async with store.pool.acquire() as conn, conn.transaction(readonly=True,
                                                                   isolation="repeatable_read"):
            cursor = await conn.cursor(_QUERY, p.labels)
            while rows := await cursor.fetch(part_rows):
                frame = await asyncio.to_thread(_frame, rows)
                path = tmp / f"part-{len(files):05d}.parquet"
                await asyncio.to_thread(frame.write_parquet, path, statistics=True)
                files.append(path)
                total += len(rows)
        if not total:
            raise NoData(f"no quotes for period {label} in the store (emulated quotes are "
                         "never exported)")
        await asyncio.to_thread(_put_in_place, tmp, target)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, tmp, ignore_errors=True)
        raise
    return ParquetExport(label, target, [target / f.name for f in files], total)
