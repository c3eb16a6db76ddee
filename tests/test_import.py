"""`sendcost import rpw` on a real PostgreSQL: whole file or nothing, and never twice."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from collector.rpw_import import import_rpw
from corridors import partitions
from corridors.errors import ImportFileError
from corridors.reading.rpw import RpwRead, bundled_rpw_path, read_rpw
from corridors.store import Store, connect

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def empty_store(fresh_database: str):
    s = await connect(fresh_database)
    await s.migrate()
    yield s
    await s.close()


async def test_import_is_complete_and_idempotent(empty_store: Store) -> None:
    read = read_rpw(bundled_rpw_path())
    first = await import_rpw(empty_store, bundled_rpw_path())
    assert first.quotes_stored == read.frame.height == first.quotes_read
    assert first.rejected == []
    assert first.periods == ["2011Q1", "2011Q3", "2012Q1", "2012Q3", "2013Q1", "2013Q2",
                             "2013Q3", "2013Q4", "2014Q1", "2014Q2"]
    assert first.services == read.rows_read == 28467
    again = await import_rpw(empty_store, bundled_rpw_path())
    assert (again.quotes_stored, again.duplicates) == (0, read.frame.height)
    assert await empty_store.pool.fetchval("SELECT count(*) FROM quotes") == read.frame.height
    imports = await empty_store.pool.fetch("SELECT status, quotes_stored FROM imports ORDER BY id")
    assert [(r["status"], r["quotes_stored"]) for r in imports] == [
        ("ok", read.frame.height), ("ok", 0)]

    # What the store gives back is what the file said.
    stored = await empty_store.quote_frame("2011Q3", amount_usd=200)
    direct = read.frame.filter((pl.col("period") == "2011Q3") & (pl.col("amount_usd") == 200))
    key = ["service_id"]
    cols = ["service_id", "fee", "total_cost_reported", "transparent", "firm_type", "speed",
            "payout_currency_noted"]
    got = stored.select(cols).sort(key)
    want = direct.select(cols).sort(key)
    assert got.height == want.height
    assert got.equals(want)
    # The pay-out currency RPW's notes name is stored as the reader read it (migration 12):
    # 472 of the 2,668 services of 2011Q3 name one.
    assert got["payout_currency_noted"].drop_nulls().len() == 472


async def test_imports_of_one_file_take_turns_and_the_second_is_not_parsed(
        empty_store: Store) -> None:
    """The bundled import at a first start and a scheduled RPW source meet on one file."""
    first, second = await asyncio.gather(
        import_rpw(empty_store, bundled_rpw_path(), unless_imported=True),
        import_rpw(empty_store, bundled_rpw_path(), unless_imported=True))
    done, skipped = (first, second) if second.same_as is not None else (second, first)
    assert done.same_as is None and done.quotes_stored == done.quotes_read > 0
    assert skipped.same_as == done.import_id and skipped.quotes_read == 0
    assert "not parsed again" in skipped.lines()[0]
    assert await empty_store.pool.fetchval("SELECT count(*) FROM imports") == 1
    # Asked for (sendcost import rpw), a file is parsed again: every quote already there.
    again = await import_rpw(empty_store, bundled_rpw_path())
    assert (again.same_as, again.quotes_stored, again.duplicates) == (
        None, 0, done.quotes_read)


async def test_a_survey_lands_in_its_months_and_a_detached_month_stays_out(
        empty_store: Store) -> None:
    """Each month of a survey gets a partition of its own, made before the import's
    quotes are written (none go to the default partition), so old survey months detach
    like any other; a later import of a file that holds them leaves their quotes out."""
    first = await import_rpw(empty_store, bundled_rpw_path())
    pool = empty_store.pool
    assert await pool.fetchval("SELECT count(*) FROM quotes_default") == 0
    by_month = {r["name"]: r["n"] for r in await pool.fetch(
        "SELECT tableoid::regclass::text AS name, count(*) AS n FROM quotes GROUP BY 1")}
    assert by_month["quotes_p2011_01"] == 5193 and by_month["quotes_p2014_05"] == 5896
    assert len(by_month) == 12 and sum(by_month.values()) == first.quotes_stored
    rollups = await pool.fetch("SELECT * FROM service_periods ORDER BY 1, 2, 3, 4, 5, 6")

    done = await partitions.detach_before(empty_store, dt.date(2011, 3, 1),
                                          now=dt.datetime(2026, 12, 7, tzinfo=dt.UTC))
    assert done.detached == ["quotes_p2011_01", "quotes_p2011_02"]
    assert done.latest_prices_removed == 5193 + 12
    again = await import_rpw(empty_store, bundled_rpw_path())
    assert (again.quotes_stored, again.detached) == (0, 5193 + 12)
    assert again.duplicates == first.quotes_stored - again.detached
    assert "5,205 of detached months left out" in "\n".join(again.lines())
    # Nothing counted twice: the 2011Q1 rollups keep the sums of the quotes detached.
    assert await pool.fetch("SELECT * FROM service_periods ORDER BY 1, 2, 3, 4, 5, 6") == rollups
    assert await pool.fetchval("SELECT count(*) FROM quotes_default") == 0


async def test_truncated_file_stores_nothing(empty_store: Store, tmp_path: Path) -> None:
    data = gzip.decompress(bundled_rpw_path().read_bytes())
    bad = tmp_path / "truncated.csv.gz"
    bad.write_bytes(gzip.compress(data)[: len(gzip.compress(data)) // 2])
    with pytest.raises(ImportFileError) as err:
        await import_rpw(empty_store, bad)
    assert "truncated.csv.gz" in str(err.value)
    assert await empty_store.pool.fetchval("SELECT count(*) FROM quotes") == 0
    assert await empty_store.pool.fetchval("SELECT count(*) FROM imports") == 0


def test_cli_import_reports_and_exits_1_on_corrupt_file(tmp_path: Path, fresh_database: str
                                                        ) -> None:
    bad = tmp_path / "corrupt.csv"
    bad.write_text("id,period\n1,2011_1Q\n")
    env = {**os.environ, "DATABASE_URL": fresh_database}
    out = subprocess.run([sys.executable, "-m", "sendcost", "import", "rpw", str(bad)],
                         env=env, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 1
    assert "sendcost: error:" in out.stderr and "corrupt.csv" in out.stderr
    assert "Traceback" not in out.stderr


def _run(*args: str, database_url: str, config: Path | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    extra = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "sendcost", *args, *extra], env=env,
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_cli_import_of_a_file_imported_whole_says_so_and_reads_nothing(
        tmp_path: Path, fresh_database: str) -> None:
    small = tmp_path / "rpw_small.csv"
    pl.read_csv(bundled_rpw_path(), infer_schema=False, n_rows=300).write_csv(small)
    quotes = read_rpw(small).frame.height
    first = _run("import", "rpw", str(small), database_url=fresh_database)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"quotes stored:  {quotes:,} new" in first.stdout
    # The same file again: not read (no read report, nothing stored), said once on stdout.
    again = _run("import", "rpw", str(small), database_url=fresh_database)
    assert again.returncode == 0, again.stdout + again.stderr
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    assert again.stdout.splitlines() == [
        f"{small}: already imported on {today} (import 1, same SHA-256): {quotes:,} quotes; "
        "nothing to do, not parsed again; --force to import again"]
    assert "rows read" not in again.stderr and "not parsed again" not in again.stderr
    # --force reads it again: every quote is already there, and a second import is recorded.
    forced = _run("import", "rpw", str(small), "--force", database_url=fresh_database)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert f"quotes stored:  0 new, {quotes:,} already there" in forced.stdout

    async def imports() -> list[tuple[str, int]]:
        s = await connect(fresh_database)
        try:
            return [(r["status"], r["quotes_stored"]) for r in await s.pool.fetch(
                "SELECT status, quotes_stored FROM imports ORDER BY id")]
        finally:
            await s.close()

    assert asyncio.run(imports()) == [("ok", quotes), ("ok", 0)]


def _every_row_rejected(tmp_path: Path) -> Path:
    """Ten real rows whose every total is text that is no number."""
    frame = pl.read_csv(bundled_rpw_path(), infer_schema=False, n_rows=10)
    bad = tmp_path / "all_rejected.csv"
    frame.with_columns(pl.lit("about five").alias("cc1 total cost %")).write_csv(bad)
    return bad


def test_cli_import_of_a_mostly_rejected_file_exits_1_and_stores_nothing(
        tmp_path: Path, fresh_database: str) -> None:
    out = _run("import", "rpw", str(_every_row_rejected(tmp_path)),
               database_url=fresh_database)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "10 rows read, 0 used (0 quotes), 10 rejected (100.0%)" in out.stderr
    assert "rejected, not a number: cc1 total cost %: 10 rows" in out.stderr
    assert "column 'cc1 total cost %', value 'about five'" in out.stderr
    assert "10 of 10 rows rejected (100.0%), more than the 3.0% allowed" in out.stderr
    assert "Traceback" not in out.stderr

    async def counts() -> tuple[int, int]:
        s = await connect(fresh_database)
        try:
            return (await s.pool.fetchval("SELECT count(*) FROM quotes"),
                    await s.pool.fetchval("SELECT count(*) FROM imports"))
        finally:
            await s.close()

    assert asyncio.run(counts()) == (0, 0)


async def test_import_reports_unknown_labels_and_keeps_their_rows(
        empty_store: Store, tmp_path: Path) -> None:
    frame = pl.read_csv(bundled_rpw_path(), infer_schema=False, n_rows=40)
    path = tmp_path / "labels.csv"
    frame.with_columns(pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("Teleport"))
                       .otherwise(pl.col("pick-up method")).alias("pick-up method")
                       ).write_csv(path)
    seen: list[RpwRead] = []
    summary = await import_rpw(empty_store, path, on_read=seen.append)
    assert summary.rows_read == summary.rows_used == 40 and summary.rejected == []
    assert summary.unknown_labels == {"pick-up method": {"Teleport": 20}}
    assert "  unknown label in 'pick-up method': 'Teleport' on 20 rows (kept)" in \
        seen[0].report()
    row = await empty_store.pool.fetchrow("SELECT status, summary FROM imports")
    assert row["status"] == "ok"
    assert row["summary"]["unknown_labels"] == {"pick-up method": {"Teleport": 20}}


async def test_import_over_the_rejected_share_stores_nothing(empty_store: Store,
                                                             tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match=r"more than the 50\.0% allowed"):
        await import_rpw(empty_store, _every_row_rejected(tmp_path), max_rejected_share=0.5)
    assert await empty_store.pool.fetchval("SELECT count(*) FROM imports") == 0


def test_cli_indicators_from_file_reports_and_fails_on_a_mostly_rejected_file(
        tmp_path: Path, database_url: str) -> None:
    bad = _run("indicators", "--period", "2011Q1", "--format", "json", "--from-file",
               str(_every_row_rejected(tmp_path)), database_url=database_url)
    assert bad.returncode == 1 and bad.stdout == ""
    assert "10 rows read, 0 used" in bad.stderr and "more than the 3.0% allowed" in bad.stderr
    loose = tmp_path / "loose.toml"
    loose.write_text("[import]\nmax_rejected_share = 1.0\n")
    ok = _run("indicators", "--period", "2011Q1", "--format", "json", "--from-file",
              str(bundled_rpw_path()), database_url=database_url, config=loose)
    assert ok.returncode == 0, ok.stderr
    assert "28,467 rows read, 28,467 used" in ok.stderr


async def test_the_bundled_file_and_the_full_workbook_do_not_store_a_quote_twice(
        empty_store: Store, tmp_path: Path) -> None:
    """The bundled 2011-2014 file and the World Bank's 2011-2025 workbook carry the same
    2011-2014 quotes (its sheet "Dataset (up to Q1 2016)"): imported one after the other,
    each quote is stored once. The workbook's cells as the real one writes
    them: numbers (ids, amounts) as numbers, dates as date cells, and a firm's name with
    stray spaces or another case than the CSV's."""
    import csv
    import datetime as dt
    import io

    import xlsxwriter
    from rpw_real_format import SHEET_OLD

    text = gzip.decompress(bundled_rpw_path().read_bytes()).decode()
    header, *rows = list(csv.reader(io.StringIO(text)))
    sample = rows[::97]  # about 290 services of every period
    col = {name: i for i, name in enumerate(header)}
    path = tmp_path / "rpw_dataset_2011_2025_q3.xlsx"
    with xlsxwriter.Workbook(str(path)) as wb:
        date_format = wb.add_format({"num_format": "dd/mmm/yyyy"})
        ws = wb.add_worksheet(SHEET_OLD)
        for c, name in enumerate(header):
            ws.write_string(0, c, name)
        for r, values in enumerate(sample, start=1):
            for c, v in enumerate(values):
                if c == col["date"] and v:
                    ws.write_datetime(r, c, dt.datetime.strptime(v, "%d/%b/%Y"), date_format)
                elif c == col["firm"]:
                    # " Western  Union ", "WESTERN UNION": one firm, written otherwise.
                    ws.write_string(r, c, f" {v.replace(' ', '  ')} " if r % 2 else v.upper())
                elif v != "" and v.replace(".", "", 1).lstrip("-").isdigit():
                    ws.write_number(r, c, float(v))
                elif v != "":
                    ws.write_string(r, c, v)
    bundled = await import_rpw(empty_store, bundled_rpw_path())
    tables = "SELECT (SELECT count(*) FROM quotes), (SELECT count(*) FROM services), " \
             "(SELECT count(*) FROM firms)"
    before = tuple(await empty_store.pool.fetchrow(tables))
    workbook = await import_rpw(empty_store, path)
    assert workbook.quotes_read > 2 * 250 and workbook.rejected == []
    assert (workbook.quotes_stored, workbook.duplicates) == (0, workbook.quotes_read)
    # Nor a service or a firm of another name: the workbook's names are the CSV's.
    assert tuple(await empty_store.pool.fetchrow(tables)) == before
    assert before[0] == bundled.quotes_stored
