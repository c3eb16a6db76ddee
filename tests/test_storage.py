"""Storage for years (migration 10): month partitions, their foreign keys, detaching old
months, the retention of raw bodies and the Parquet export of closed periods."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import polars as pl
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from test_store import make_quote

from corridors import partitions, runtime
from corridors.config import Config, StorageConfig, parse_config
from corridors.db import DatabaseTarget
from corridors.errors import BadPeriod, NoData
from corridors.store import Store, WriteBatch, connect, migrations
from corridors.types import DataKind, Firm, FirmType, Quote
from publish import data as publish_data
from publish.data import DATA
from publish.parquet import SCHEMA, export_parquet
from sendcost.cli import main
from sendcost.wiring import create_app, storage_jobs

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


async def _schema_up_to(conn: asyncpg.Connection, last: int) -> None:
    await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                       "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
    for version, name, sql in migrations():
        if version <= last:
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, name)


#: A store as migration 5 left it, filled by hand: a survey import (2011 dates), a run's
#: observed quotes from an archived response (November 2026), a reference rate and a
#: quarantine record naming archived responses.
_FILL = """
INSERT INTO corridors (id, source_code, destination_code) VALUES (1, 'USA', 'MEX'),
    (2, 'GBR', 'IND');
INSERT INTO firms (id, name, firm_type) VALUES (1, 'Acme', 'mto'), (2, 'Bank', 'bank');
INSERT INTO services (id, service_key, corridor_id, firm_id) VALUES (1, 'acme:usa-mex', 1, 1),
    (2, 'bank:gbr-ind', 2, 2);
SELECT setval('corridors_id_seq', 2), setval('firms_id_seq', 2), setval('services_id_seq', 2);
INSERT INTO imports (id, kind, path, file_hash) VALUES (1, 'rpw', 'rpw.xlsx', 'abc');
INSERT INTO collection_runs (id, source) VALUES (1, 'acme');
INSERT INTO raw_responses (id, source, url, fetched_at, content_hash, payload, run_id) VALUES
    (1, 'acme', 'https://api.acme.example/q', '2026-11-05 10:00+00', 'h1', '\\x7b7d', 1),
    (2, 'ecb', 'https://ecb.example/rates', '2026-10-31 23:30+00', 'h2', '\\x3c3e', 1);
SELECT setval('raw_responses_id_seq', 2), setval('collection_runs_id_seq', 1),
       setval('imports_id_seq', 1);
INSERT INTO quotes (id, service_id, period, amount_usd, send_amount, send_currency, fee,
                    applied_rate, reference_rate, transparent, collected_at, source,
                    import_id, run_id, raw_response_id, flags) VALUES
    (1, 2, '2011Q1', 200, 125.50, 'GBP', 5, 70.1, 71.2, true, '2011-02-15', 'rpw', 1,
     NULL, NULL, '{}'),
    (2, 2, '2011Q1', 500, 313.75, 'GBP', 8, 70.1, 71.2, true, '2011-03-20', 'rpw', 1,
     NULL, NULL, '{}'),
    (3, 1, '2026-11', 200, 200, 'USD', 4.99, 17.12, 17.50, true, '2026-11-05 10:00+00',
     'acme', NULL, 1, 1, '{negative_margin}'),
    (4, 1, '2026-11', 500, 500, 'USD', 6.99, 17.22, 17.50, true, '2026-11-05 10:00+00',
     'acme', NULL, 1, 1, '{}');
SELECT setval('quotes_id_seq', 4);
INSERT INTO reference_rates (source, base, quote, rate, as_of, raw_response_id) VALUES
    ('ecb', 'EUR', 'USD', 1.08, '2026-10-31', 2);
INSERT INTO quarantined_quotes (source, run_id, raw_response_id, reason, payload) VALUES
    ('acme', 1, 1, 'fee above the amount', '{"fee": 900}');
"""

_ROLLUPS = ("SELECT period, amount_usd, service_id, data_kind, quotes, fee_sum, margin_sum, "
            "total_sum, exact_sum, last_quote_id FROM service_periods ORDER BY 1, 2, 3, 4")
_LATEST = ("SELECT period, service_id, send_amount, data_kind, quote_id, collected_at, "
           "changed_by FROM latest_prices ORDER BY 1, 2, 3, 4")


async def test_a_filled_store_moves_into_partitions_with_its_keys(fresh_database: str) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        await _schema_up_to(conn, 5)
        await conn.execute(_FILL)
        await _schema_up_to_more(conn, 8)
        rollups = [tuple(r) for r in await conn.fetch(_ROLLUPS)]
        before = await conn.fetch("SELECT * FROM quote_frame ORDER BY id")
        # The view's columns then: a later migration may add some (12: the noted currency).
        frame_columns = ", ".join(before[0].keys())
        frame_before = [tuple(r) for r in before]
    finally:
        await conn.close()
    assert len(rollups) == 4
    store = await connect(fresh_database)
    try:
        applied = await store.migrate(partitions_ahead=1)
        assert any(n.startswith("0010") for n in applied)
        pool = store.pool
        # Both tables are partitioned; each month with rows got its partition.
        assert await pool.fetchval(
            "SELECT relkind::text FROM pg_class WHERE relname = 'quotes'") == "p"
        names = {p.name for p in await partitions.month_partitions(store)}
        assert {"quotes_p2011_02", "quotes_p2011_03", "quotes_p2026_11",
                "raw_responses_p2026_10", "raw_responses_p2026_11"} <= names
        assert await pool.fetchval("SELECT count(*) FROM quotes_p2026_11") == 2
        assert await pool.fetchval("SELECT count(*) FROM quotes_default") == 0
        # Every row, every view and rollup as before.
        assert [tuple(r) for r in await pool.fetch(
            f"SELECT {frame_columns} FROM quote_frame ORDER BY id")] == frame_before
        assert [tuple(r) for r in await pool.fetch(_ROLLUPS)] == rollups
        assert await pool.fetchval(
            "SELECT raw_fetched_at FROM quotes WHERE id = 3") == utc(2026, 11, 5, 10)
        assert await pool.fetchval("SELECT body_size FROM raw_responses WHERE id = 1") == 2
        assert await pool.fetchval(
            "SELECT raw_fetched_at FROM reference_rates") == utc(2026, 10, 31, 23, 30)
        # The foreign keys are there, on the partitioned tables.
        fks = {r["conname"] for r in await pool.fetch(
            "SELECT conname FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 "
            "AND conrelid IN ('quotes'::regclass, 'services'::regclass, "
            "'reference_rates'::regclass, 'quarantined_quotes'::regclass)")}
        assert fks >= {"quotes_service_id_fkey", "quotes_raw_response_fkey",
                       "quotes_run_id_fkey", "quotes_import_id_fkey",
                       "services_corridor_id_fkey", "services_firm_id_fkey",
                       "reference_rates_raw_response_fkey",
                       "quarantined_quotes_raw_response_fkey"}
        # The sequences still draw after the rows moved; a new write rolls up as before.
        later = make_quote(service_key="acme:usa-mex", source_code="USA", collected_at=utc(
            2026, 11, 20), period="2026-11", source="acme")
        assert (await store.store_quotes([later])).inserted == 1
        assert await pool.fetchval("SELECT max(id) FROM quotes") == 5
        assert await pool.fetchval(
            "SELECT quotes FROM service_periods WHERE period = '2026-11' AND amount_usd = 200 "
            "AND service_id = 1") == 2
    finally:
        await store.close()


async def _schema_up_to_more(conn: asyncpg.Connection, last: int) -> None:
    done = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    for version, name, sql in migrations():
        if version <= last and version not in done:
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, name)


async def test_survey_quotes_in_the_default_partition_move_into_their_months(
        fresh_database: str) -> None:
    """Migration 14: a survey imported after migration 10 into a fresh database sat in the
    default partition (its months had none, and could never get one); its quotes move into
    partitions of their months, their ids, rollups and latest prices as they were."""
    conn = await asyncpg.connect(fresh_database)
    try:
        await _schema_up_to(conn, 13)
        await conn.execute("""
            INSERT INTO corridors (source_code, destination_code) VALUES ('GBR', 'IND');
            INSERT INTO firms (name, firm_type) VALUES ('Bank', 'bank');
            INSERT INTO services (service_key, corridor_id, firm_id) VALUES ('bank:gbr-ind', 1, 1);
            INSERT INTO imports (kind, path, file_hash) VALUES ('rpw', 'rpw.xlsx', 'abc');
            INSERT INTO quotes (service_id, period, amount_usd, send_amount, send_currency, fee,
                                applied_rate, reference_rate, transparent, collected_at, source,
                                import_id, data_kind) VALUES
                (1, '2011Q1', 200, 125.50, 'GBP', 5, 70.1, 71.2, true, '2011-02-15', 'rpw', 1,
                 'survey'),
                (1, '2011Q1', 500, 313.75, 'GBP', 8, 70.1, 71.2, true, '2011-03-20', 'rpw', 1,
                 'survey');
            SELECT rollup_quotes(array[1, 2]::bigint[]);""")
        assert await conn.fetchval("SELECT count(*) FROM quotes_default") == 2
        rollups = [tuple(r) for r in await conn.fetch(_ROLLUPS)]
        latest = [tuple(r) for r in await conn.fetch(_LATEST)]
    finally:
        await conn.close()
    store = await connect(fresh_database)
    try:
        assert await store.migrate(partitions_ahead=0) == [
            name for version, name, _ in migrations() if version >= 14]
        pool = store.pool
        assert await pool.fetchval("SELECT count(*) FROM quotes_default") == 0
        assert [tuple(r) for r in await pool.fetch(
            "SELECT tableoid::regclass::text, id FROM quotes ORDER BY id")] == [
            ("quotes_p2011_02", 1), ("quotes_p2011_03", 2)]
        assert [tuple(r) for r in await pool.fetch(_ROLLUPS)] == rollups
        assert [tuple(r) for r in await pool.fetch(_LATEST)] == latest
        # A month of the survey now detaches like any other.
        done = await partitions.detach_before(store, dt.date(2011, 3, 1), now=NOW)
        assert "quotes_p2011_02" in done.detached and done.latest_prices_removed == 1
        assert await pool.fetchval("SELECT count(*) FROM quotes") == 1
    finally:
        await store.close()


async def test_rows_naming_missing_parents_stop_the_migration_whole(fresh_database: str
                                                                    ) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        await _schema_up_to(conn, 5)
        await conn.execute(_FILL)
        # Written while the keys were off: a run that is not there.
        await conn.execute("UPDATE quotes SET run_id = 77 WHERE id = 4")
    finally:
        await conn.close()
    store = await connect(fresh_database)
    try:
        with pytest.raises(asyncpg.ForeignKeyViolationError,
                           match=r"1 rows of quotes name a collection run that does not "
                                 r"exist \(e\.g\. id 77\)"):
            await store.migrate()
        # Nothing of it stayed: the tables as they were, unpartitioned, rows in place.
        assert await store.schema_version() < 10
        assert await store.pool.fetchval(
            "SELECT relkind::text FROM pg_class WHERE relname = 'quotes'") == "r"
        assert await store.pool.fetchval("SELECT count(*) FROM quotes") == 4
    finally:
        await store.close()


async def test_partitions_are_made_ahead_and_strays_move_into_theirs(store: Store) -> None:
    made = await partitions.ensure_partitions(store, 2, today=dt.date(2031, 5, 17))
    assert made == ["quotes_p2031_05", "quotes_p2031_06", "quotes_p2031_07",
                    "raw_responses_p2031_05", "raw_responses_p2031_06",
                    "raw_responses_p2031_07"]
    assert await partitions.ensure_partitions(store, 2, today=dt.date(2031, 5, 1)) == []
    # A quote of a month with no partition yet goes to the default partition, and so does
    # the response it came from...
    run, raw = await _archived(store, "test-stray", utc(2033, 2, 3))
    stray = make_quote(service_key="test:stray", collected_at=utc(2033, 2, 3), period="2033-02",
                       source="test-stray", raw_response_id=raw)
    assert (await store.write_batches([WriteBatch([stray], run)]))[0].inserted == 1
    assert await store.pool.fetchval(
        "SELECT count(*) FROM quotes_default WHERE collected_at = $1", utc(2033, 2, 3)) == 1
    # ...and when that month's partitions are made, the quote moves into its own (which can
    # be detached), keeping its id and its latest price; the response, which the quote's
    # foreign key names, stays in the default partition (PostgreSQL refuses that month a
    # partition of raw responses, and the function says so).
    [(quote_id, latest_id)] = await store.pool.fetch(
        "SELECT q.id, lp.quote_id FROM quotes q JOIN latest_prices lp "
        "ON lp.quote_id = q.id AND lp.collected_at = q.collected_at WHERE q.source = 'test-stray'")
    made = await partitions.ensure_partitions(store, 0, today=dt.date(2033, 2, 1))
    assert made == ["quotes_p2033_02"]
    assert await store.pool.fetchval(
        "SELECT count(*) FROM quotes_default WHERE collected_at = $1", utc(2033, 2, 3)) == 0
    assert await store.pool.fetchval(
        "SELECT id FROM quotes_p2033_02 WHERE source = 'test-stray'") == quote_id == latest_id
    assert await store.pool.fetchval(
        "SELECT count(*) FROM raw_responses_default WHERE id = $1", raw) == 1
    # Bounds are UTC months.
    bound = await store.pool.fetchval(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'quotes_p2031_06'")
    assert bound == ("FOR VALUES FROM ('2031-06-01 00:00:00+00') TO ('2031-07-01 00:00:00+00')")


async def test_a_maker_held_off_too_long_says_who_holds_the_tables(
        own_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # A session holding the quotes in an open transaction (a long report, a forgotten psql)
    # keeps every maker out: after its patience, a clear error naming that session, and no
    # partition half made.
    monkeypatch.setattr(partitions, "LOCK_PATIENCE_SECONDS", 0.3)
    async with own_store.pool.acquire() as holder, holder.transaction():
        await holder.execute("SET application_name = 'long-report'")
        await holder.execute("LOCK TABLE quotes IN ACCESS SHARE MODE")
        pid = await holder.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(partitions.DatabaseError) as caught:
            await partitions.ensure_partitions(own_store, 0, today=dt.date(2035, 3, 9))
        # Months made already need no lock: every command that opens the store asks for
        # them, and none waits on the reader for that.
        assert await partitions.ensure_partitions(own_store, 2) == []
    message = str(caught.value)
    assert "could not make the 2035-03 partition of quotes" in message
    assert f"pid {pid} long-report idle in transaction" in message
    assert "sendcost db partitions" in message
    assert "quotes_p2035_03" not in {
        p.name for p in await partitions.month_partitions(own_store)}
    # Once it ends, the maker gets in.
    assert "quotes_p2035_03" in await partitions.ensure_partitions(
        own_store, 0, today=dt.date(2035, 3, 9))


async def _archived(store: Store, source: str, at: dt.datetime, body: bytes = b'{"ok": 1}'
                    ) -> tuple[int, int]:
    run = await store.start_run(source)
    [raw] = await store.archive_raw_many([{"source": source, "url": f"http://127.0.0.1/{source}",
                                           "fetched_at": at, "body": body, "run_id": run}])
    return run, raw


@pytest.fixture
async def own_store(fresh_database: str) -> AsyncIterator[Store]:
    """A store of its own: what detaching takes away, no other test of the session (the
    RPW survey in the shared store, in month partitions since migration 14) misses."""
    s = await connect(fresh_database, min_size=1, max_size=4)
    await s.migrate()
    yield s
    await s.close()


async def test_old_months_detach_with_their_rows_and_referenced_ones_stay(own_store: Store
                                                                          ) -> None:
    store = own_store
    tag = uuid.uuid4().hex[:8]
    await partitions.ensure_partitions(store, 2, today=dt.date(2020, 1, 1))
    run, raw = await _archived(store, f"test-detach-{tag}", utc(2020, 1, 10))
    await store.write_batches([WriteBatch([make_quote(
        service_key=f"test:detach:{tag}", collected_at=utc(2020, 1, 10), period="2020-01",
        source=f"test-detach-{tag}", raw_response_id=raw)], run)])
    # February's response is named by a reference rate, which stays in the store.
    _, named = await _archived(store, f"test-detach-ecb-{tag}", utc(2020, 2, 3))
    await store.store_reference_rates([("ecb", "EUR", f"T{tag[:2].upper()}", Decimal("1.1"),
                                        utc(2020, 2, 3), named)])
    with pytest.raises(BadPeriod, match="closed quarters"):
        await partitions.detach_before(store, dt.date(2026, 11, 1), now=NOW)
    done = await partitions.detach_before(store, dt.date(2020, 3, 1), now=NOW)
    assert {"quotes_p2020_01", "raw_responses_p2020_01", "quotes_p2020_02"} <= set(
        done.detached)
    assert [name for name, _ in done.kept] == ["raw_responses_p2020_02"]
    assert "reference_rates" in done.kept[0][1]
    # The month's rows left the store and stay in a table of their own, with no keys.
    assert await store.pool.fetchval(
        "SELECT count(*) FROM quotes WHERE source = $1", f"test-detach-{tag}") == 0
    assert await store.pool.fetchval(
        "SELECT count(*) FROM quotes_p2020_01 WHERE source = $1", f"test-detach-{tag}") == 1
    assert await store.pool.fetchval(
        "SELECT count(*) FROM raw_responses_p2020_01 WHERE id = $1", raw) == 1
    assert await store.pool.fetchval(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'quotes_p2020_01'::regclass "
        "AND contype = 'f'") == 0
    assert "raw_responses_p2020_02" in {p.name for p in await partitions.month_partitions(store)}


async def _compare(client: TestClient, query: str) -> tuple[int, dict[str, Any]]:
    resp = await client.get(f"/v1/compare?{query}")
    return resp.status, await resp.json()


def _shown(body: dict[str, Any]) -> tuple[Any, ...]:
    """What a compare answer shows of its prices: its period and each service's quote."""
    return (body["period"], [(s["service_id"], s["collected_at"], s["total_cost_pct"])
                             for s in body["services"] + body["non_transparent"]])


async def test_detaching_leaves_the_latest_prices_of_the_months_kept_as_they_were(
        own_store: Store, fresh_database: str, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """Through the running API: a service whose latest price is in a month kept shows it as
    before; the latest prices of the months detached go, from the running service at once
    (told by the detaching transaction) as from one started afterwards; nothing in the
    store points at a quote that left."""
    store = own_store
    await partitions.ensure_partitions(store, 3, today=dt.date(2020, 1, 1))

    def priced(key: str, at: dt.datetime, route: tuple[str, str] = ("USA", "MEX"),
               fee: str = "4.99") -> Quote:
        return make_quote(service_key=key, firm=Firm(key.title(), FirmType.MTO),
                          source_code=route[0], destination_code=route[1],
                          send_currency="USD", collected_at=at, period=f"{at:%Y-%m}",
                          source="test-op", fee=Decimal(fee))

    # A: January and March; B: January only; C, another corridor: February only.
    await store.store_quotes([priced("a", utc(2020, 1, 10)), priced("b", utc(2020, 1, 11)),
                              priced("a", utc(2020, 3, 10), fee="3.99"),
                              priced("c", utc(2020, 2, 5), ("USA", "GTM"))])
    monkeypatch.setattr(publish_data, "REFRESH_SECONDS", 3600.0)  # only the notification
    monkeypatch.delenv("SENDCOST_READ_DATABASE_URL", raising=False)
    config = dataclasses.replace(
        parse_config({"service": {"import_rpw_on_empty": False}}), data_dir=tmp_path)

    def app() -> web.Application:
        return create_app(config, DatabaseTarget(fresh_database, embedded=False),
                          collecting=False)

    async with TestClient(TestServer(app())) as client:
        data = client.app[DATA]
        before = await data.snapshot()
        status, latest = await _compare(client, "from=US&to=MX&amount=200")
        assert status == 200 and _shown(latest)[0] == "2020-03"
        assert [s[0] for s in _shown(latest)[1]] == ["a"]
        status, january = await _compare(client, "from=US&to=MX&amount=200&period=2020-01")
        assert status == 200 and [s[0] for s in _shown(january)[1]] == ["a", "b"]
        assert (await _compare(client, "from=US&to=GT&amount=200"))[0] == 200
        status, indicators = await _compare_indicators(client, "2020-01")
        assert status == 200

        done = await partitions.detach_before(store, dt.date(2020, 3, 1), now=NOW)
        assert {"quotes_p2020_01", "quotes_p2020_02"} <= set(done.detached)
        assert done.latest_prices_removed == 3  # a's and b's of January, c's of February

        async def answers(client: TestClient) -> list[tuple[int, Any]]:
            out: list[tuple[int, Any]] = []
            for query in ("from=US&to=MX&amount=200",
                          "from=US&to=MX&amount=200&period=2020-01",
                          "from=US&to=GT&amount=200"):
                status, body = await _compare(client, query)
                out.append((status, _shown(body) if status == 200 else body["detail"]))
            return out

        # Each month's detachment is announced on its commit: the view follows both.
        for _ in range(600):
            running = await answers(client)
            if data.current() is not before and running[2][0] != 200:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the running service never followed the detachments: "
                                 f"{running}")
        # A's latest price, in March, as before; January's prices and C's corridor are gone,
        # said as for any period or corridor without quotes.
        assert running[0] == (200, _shown(latest))
        assert running[1][0] == 404 and "in 2020-01; it has 2020-03" in running[1][1]
        assert running[2] == (404, "no quotes for the corridor USA → GTM")
        # The figures of past periods, from the rollups, stay as they were.
        assert await _compare_indicators(client, "2020-01") == (status, indicators)

    async with TestClient(TestServer(app())) as restarted:
        assert await answers(restarted) == running
    assert await store.pool.fetchval(
        "SELECT count(*) FROM latest_prices lp WHERE NOT EXISTS (SELECT 1 FROM quotes q "
        "WHERE q.id = lp.quote_id AND q.collected_at = lp.collected_at)") == 0
    assert [tuple(r) for r in await store.pool.fetch(
        "SELECT partition, latest_prices_removed FROM detachments "
        "WHERE parent = 'quotes' ORDER BY id")] == [("quotes_p2020_01", 2),
                                                     ("quotes_p2020_02", 1)]


async def _compare_indicators(client: TestClient, period: str) -> tuple[int, Any]:
    resp = await client.get(f"/v1/indicators?period={period}&amount=200")
    return resp.status, await resp.json()


async def test_retention_drops_old_bodies_and_keeps_their_provenance(store: Store) -> None:
    tag = uuid.uuid4().hex[:8]
    old_run, old = await _archived(store, f"test-ret-{tag}", utc(2026, 6, 1), b"x" * 1000)
    _, recent = await _archived(store, f"test-ret-{tag}", utc(2026, 11, 20), b"y" * 10)
    await store.write_batches([WriteBatch([make_quote(
        service_key=f"test:ret:{tag}", collected_at=utc(2026, 6, 1), period="2026-06",
        source=f"test-ret-{tag}", raw_response_id=old)], old_run)])
    with pytest.raises(ValueError, match="at least 1 day"):
        await partitions.drop_raw_bodies(store, 0, now=NOW)
    # 10 days would reach into the open quarter (2026Q4): the cut stops at its start.
    pruned = await partitions.drop_raw_bodies(store, 10, now=NOW)
    assert pruned.before == utc(2026, 10, 1)
    assert pruned.bodies >= 1 and pruned.bytes >= 1000
    rows = {r["id"]: r for r in await store.pool.fetch(
        "SELECT id, payload, body_size, content_hash, url, body_dropped_at FROM raw_responses "
        "WHERE id = ANY($1::bigint[])", [old, recent])}
    assert rows[old]["payload"] is None and rows[old]["body_size"] == 1000
    assert rows[old]["content_hash"] == hashlib.sha256(b"x" * 1000).hexdigest()
    assert rows[old]["url"].endswith(f"test-ret-{tag}") and rows[old]["body_dropped_at"]
    assert rows[recent]["payload"] == b"y" * 10 and rows[recent]["body_dropped_at"] is None
    # The quote parsed from the dropped body stays.
    assert await store.pool.fetchval(
        "SELECT count(*) FROM quotes WHERE raw_response_id = $1", old) == 1
    assert (await partitions.drop_raw_bodies(store, 10, now=NOW)).bodies == 0


async def test_daily_upkeep_makes_partitions_and_applies_retention(store: Store) -> None:
    tag = uuid.uuid4().hex[:8]
    _, raw = await _archived(store, f"test-daily-{tag}", utc(2025, 1, 1))
    made, pruned = await partitions.daily_upkeep(store, 1, 0, now=utc(2040, 3, 1))
    assert made == ["quotes_p2040_03", "quotes_p2040_04", "raw_responses_p2040_03",
                    "raw_responses_p2040_04"] and pruned is None
    assert await store.raw_payload(raw) is not None
    _, pruned = await partitions.daily_upkeep(store, 1, 30, now=utc(2040, 3, 1))
    assert pruned is not None and await store.raw_payload(raw) is None


async def test_a_closed_period_exports_as_parquet_that_polars_reads(store: Store,
                                                                    tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    run, raw = await _archived(store, f"test-pq-{tag}", utc(2019, 5, 2, 8))
    observed = make_quote(service_key=f"test:pq:{tag}", collected_at=utc(2019, 5, 2, 8),
                          period="2019-05", source=f"test-pq-{tag}", raw_response_id=raw,
                          fee=Decimal("4.990000000001"), flags=("negative_margin",))
    emulated = make_quote(service_key=f"test:pq-emu:{tag}", collected_at=utc(2019, 5, 3),
                          period="2019-05", source=f"sandbox-{tag}",
                          data_kind=DataKind.EMULATED)
    await store.write_batches([WriteBatch([observed, emulated], run)])
    with pytest.raises(BadPeriod, match="not closed"):
        await export_parquet(store, "2026Q4", tmp_path, now=NOW)
    with pytest.raises(NoData):
        await export_parquet(store, "2018-01", tmp_path, now=NOW)
    assert os.listdir(tmp_path) == []  # nothing half-written
    done = await export_parquet(store, "2019Q2", tmp_path, now=NOW, part_rows=1)
    assert done.folder == tmp_path / "quotes-2019Q2"
    frame = pl.read_parquet(done.folder / "*.parquet").filter(
        pl.col("source") == f"test-pq-{tag}")
    assert frame.schema == pl.Schema(SCHEMA)
    row = frame.row(0, named=True)
    assert row["fee"] == Decimal("4.990000000001") and row["send_amount"] == Decimal("200")
    assert row["data_kind"] == "observed" and row["flags"] == ["negative_margin"]
    assert (row["source_code"], row["destination_code"], row["firm"]) == (
        "USA", "MEX", "Acme Remit")
    assert row["raw_response_id"] == raw and row["run_id"] == run
    assert row["raw_url"] == f"http://127.0.0.1/test-pq-{tag}"
    assert row["raw_fetched_at"] == utc(2019, 5, 2, 8)
    assert row["raw_content_sha256"] == hashlib.sha256(b'{"ok": 1}').hexdigest()
    everything = pl.scan_parquet(done.folder / "*.parquet").collect()
    assert everything.height == done.quotes and len(done.files) == done.quotes
    assert not everything["source"].str.starts_with("sandbox-").any()
    # Again: the folder is replaced whole.
    again = await export_parquet(store, "2019Q2", tmp_path, now=NOW)
    assert len(again.files) == 1 and sorted(os.listdir(tmp_path)) == [
        "quotes-2019Q2"]


def test_the_cli_exports_parquet_and_says_what_it_cannot(fresh_database: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_database)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "parquet", "--period", "2031Q2", "-q"]) == 1
    assert "not closed yet" in capsys.readouterr().err
    assert main(["db", "prune-raw", "-q"]) == 1
    assert "no retention set" in capsys.readouterr().err
    assert main(["db", "detach", "--before", "2024Q1", "-q"]) == 1
    assert "expected a month like 2024-01" in capsys.readouterr().err
    assert main(["db", "partitions", "-q"]) == 0
    out = capsys.readouterr().out
    assert "quotes:" in out and "raw_responses:" in out


async def test_serve_schedules_the_daily_upkeep(store: Store, tmp_path: Path) -> None:
    app = web.Application()
    app[runtime.CONFIG] = Config(data_dir=tmp_path, storage=StorageConfig(
        partitions_ahead_months=2, raw_retention_days=30))
    app[runtime.STORE] = store
    scheduler = AsyncIOScheduler(timezone="UTC")
    storage_jobs(app, scheduler)
    job = scheduler.get_job(partitions.JOB_ID)
    assert job is not None
    fields = {f.name: str(f) for f in job.trigger.fields}
    assert (fields["hour"], fields["minute"]) == ("0", "15")
    # The job itself: today's partitions ahead, and the retention.
    tag = uuid.uuid4().hex[:8]
    _, raw = await _archived(store, f"test-job-{tag}", utc(2024, 3, 1))
    await job.func(*job.args)
    assert await store.raw_payload(raw) is None
    names = {p.name for p in await partitions.month_partitions(store)}
    ahead = partitions.add_months(partitions.month_start(dt.datetime.now(dt.UTC)), 2)
    assert f"quotes_p{ahead:%Y_%m}" in names
