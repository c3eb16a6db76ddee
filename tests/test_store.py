"""The quote store on a real PostgreSQL: migrations, round trips, idempotent writes."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from corridors.errors import DatabaseError
from corridors.store import TABLES, Store, WriteBatch, connect, migrations
from corridors.types import (
    DataKind,
    Firm,
    FirmType,
    PayIn,
    PayOut,
    Quote,
    ServiceAttributes,
    Speed,
)

T0 = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)


def make_quote(**over) -> Quote:
    base = dict(
        source_code="USA", destination_code="MEX",
        firm=Firm("Acme Remit", FirmType.MTO),
        service=ServiceAttributes("Cash to cash", PayIn.CASH, PayOut.CASH, None, Speed.SAME_DAY),
        service_key="test:acme:USA-MEX:cash",
        period="2026-11", amount_usd=200, send_amount=Decimal("200.00"), send_currency="USD",
        receive_currency="MXN", fee=Decimal("4.99"), applied_rate=Decimal("17.1234"),
        reference_rate=Decimal("17.5012"), reference_source="ecb",
        reference_at=T0 - dt.timedelta(hours=3), transparent=True, collected_at=T0,
        source="test-op", received_amount=Decimal("3339.17"), fee_deducted=False,
        data_kind=DataKind.OBSERVED,
    )
    base.update(over)
    return Quote(**base)  # type: ignore[arg-type]


async def test_migrations_apply_to_empty_database_and_are_idempotent(
        fresh_database: str) -> None:
    s = await connect(fresh_database)
    try:
        assert await s.schema_version() == 0
        applied = await s.migrate()
        assert applied == [name for _, name, _ in migrations()]
        assert await s.migrate() == []
        assert await s.schema_version() == migrations()[-1][0]
        counts = await s.row_counts()
        assert set(counts) == set(TABLES)
        assert counts["countries"] > 200 and counts["currencies"] > 150
        assert counts["quotes"] == 0
    finally:
        await s.close()


async def test_quote_round_trips_types(store: Store) -> None:
    q = make_quote(service_key="test:roundtrip", received_amount=None, fee_deducted=None,
                   flags=("negative_margin",))
    result = await store.store_quotes([q])
    assert (result.inserted, result.duplicates) == (1, 0)
    row = await store.pool.fetchrow(
        "SELECT q.*, s.service_key, s.speed, s.pay_in FROM quotes q "
        "JOIN services s ON s.id = q.service_id WHERE s.service_key = 'test:roundtrip'")
    assert row["fee"] == Decimal("4.99") and isinstance(row["fee"], Decimal)
    assert row["applied_rate"] == Decimal("17.1234")
    assert row["received_amount"] is None and row["fee_deducted"] is None
    assert row["collected_at"] == T0 and row["collected_at"].tzinfo is not None
    assert row["flags"] == ["negative_margin"]
    assert row["speed"] == "same_day" and row["pay_in"] == "cash"


async def test_duplicate_quotes_are_absorbed(store: Store) -> None:
    q1 = make_quote(service_key="test:dup")
    q2 = make_quote(service_key="test:dup", collected_at=T0 + dt.timedelta(days=1))
    first = await store.store_quotes([q1, q1, q2])
    assert first.inserted == 2
    again = await store.store_quotes([q1, q2])
    assert (again.inserted, again.duplicates) == (0, 2)
    n = await store.pool.fetchval(
        "SELECT count(*) FROM quotes q JOIN services s ON s.id = q.service_id "
        "WHERE s.service_key = 'test:dup'")
    assert n == 2


async def test_a_recreated_database_does_not_orphan_quotes(fresh_database: str) -> None:
    # The store resolves services in each write's transaction (no cache of ids that a
    # recreated database could make wrong), and the foreign key (migration 10) refuses a
    # quote naming a service that is not there.
    s = await connect(fresh_database)
    try:
        await s.migrate()
        assert (await s.store_quotes([make_quote(service_key="test:kept")])).inserted == 1
        await s.pool.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        await s.migrate()
        later = make_quote(service_key="test:kept", collected_at=T0 + dt.timedelta(hours=1))
        assert (await s.store_quotes([later])).inserted == 1
        frame = await s.quote_frame()
        assert frame.height == 1 and frame["firm"].to_list() == ["Acme Remit"]
        assert await s.pool.fetchval(
            "SELECT count(*) FROM quotes q LEFT JOIN services s ON s.id = q.service_id "
            "WHERE s.id IS NULL") == 0
    finally:
        await s.close()


async def test_services_rebuilt_under_the_same_table_do_not_orphan_quotes(
        fresh_database: str) -> None:
    # A server rebuilt from scratch (or a backup restored) gives the services table the
    # oid it had, and other services under the ids a process read before.
    s = await connect(fresh_database)
    try:
        await s.migrate()
        assert (await s.store_quotes([make_quote(service_key="test:kept")])).inserted == 1
        await s.pool.execute("DELETE FROM quotes; DELETE FROM services")
        assert (await s.store_quotes([make_quote(service_key="test:other")])).inserted == 1
        later = make_quote(service_key="test:kept", collected_at=T0 + dt.timedelta(hours=1))
        assert (await s.store_quotes([later])).inserted == 1
        rows = await s.pool.fetch("SELECT s.service_key FROM quotes q "
                                  "LEFT JOIN services s ON s.id = q.service_id ORDER BY q.id")
        assert [r["service_key"] for r in rows] == ["test:other", "test:kept"]
    finally:
        await s.close()


async def test_two_writers_creating_the_same_services_both_succeed(store: Store,
                                                                   database_url: str) -> None:
    """One creator of services at a time: a writer with services to create while another's
    new services are uncommitted waits for it, then finds them instead of failing: each
    service once, every quote stored. Readers do not wait."""
    keys = [f"test:race:{i}" for i in range(50)]
    mine = [make_quote(service_key=k) for k in keys]
    theirs = [make_quote(service_key=k, collected_at=T0 + dt.timedelta(minutes=5))
              for k in keys[25:] + [f"test:race:theirs:{i}" for i in range(5)]]
    # The corridor and firm exist already: the writers meet on the services themselves.
    await store.store_quotes([make_quote(service_key="test:race-warm-up")])
    other = await connect(database_url, max_size=2)
    try:
        async with store.pool.acquire() as conn:
            tr = conn.transaction()
            await tr.start()
            assert (await store.store_quotes(mine, conn=conn)).inserted == 50
            # The other writer's COPY meets our uncommitted keys and waits for us.
            racing = asyncio.ensure_future(other.store_quotes(theirs))
            await asyncio.sleep(0.3)
            assert not racing.done()
            assert await asyncio.wait_for(other.pool.fetchval(
                "SELECT count(*) FROM services WHERE service_key LIKE 'test:race:%'"), 5) == 0
            await tr.commit()
        result = await asyncio.wait_for(racing, 10)
    finally:
        await other.close()
    assert (result.inserted, result.duplicates) == (30, 0)
    rows = await store.pool.fetch(
        "SELECT s.service_key, count(*) AS n FROM services s JOIN quotes q ON q.service_id = "
        "s.id WHERE s.service_key LIKE 'test:race:%' GROUP BY 1")
    by_key = {r["service_key"]: r["n"] for r in rows}
    assert len(by_key) == 55
    assert all(by_key[k] == (2 if i >= 25 else 1) for i, k in enumerate(keys))
    # The ids the writers drew in blocks are behind the sequence: the next is a new one.
    assert await store.pool.fetchval("SELECT nextval('services_id_seq') > max(id) FROM services")


async def test_a_corridor_created_meanwhile_by_another_writer_is_found(
        store: Store, database_url: str) -> None:
    """Writers create corridors only under the services lock; one created outside it (by a
    writer of another version) while a write runs is waited for and then found."""
    # A corridor no other test has (the shared database holds every RPW corridor).
    src, dst = "T" + uuid.uuid4().hex[:6], "T" + uuid.uuid4().hex[:6]
    other = await asyncpg.connect(database_url)
    try:
        tr = other.transaction()
        await tr.start()
        await other.execute("INSERT INTO corridors (source_code, destination_code) "
                            "VALUES ($1, $2)", src, dst)
        quote = make_quote(service_key=f"test:meanwhile:{src}", source_code=src,
                           destination_code=dst)
        writing = asyncio.ensure_future(store.store_quotes([quote]))
        await asyncio.sleep(0.3)
        assert not writing.done()  # waiting for the other writer's corridor
        await tr.commit()
        assert (await asyncio.wait_for(writing, 10)).inserted == 1
    finally:
        await other.close()
    assert await store.pool.fetchval(
        "SELECT c.source_code || '-' || c.destination_code FROM quotes q "
        "JOIN services s ON s.id = q.service_id JOIN corridors c ON c.id = s.corridor_id "
        "WHERE s.service_key = $1", f"test:meanwhile:{src}") == f"{src}-{dst}"


async def test_bodies_too_large_for_one_statement_are_archived_together(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Responses whose bodies together exceed what one archive statement carries go in
    several statements of one transaction: ids in the rows' order, every body as it came;
    and a row the archive refuses takes the others with it."""
    from corridors import store as store_module

    monkeypatch.setattr(store_module, "_ARCHIVE_STATEMENT_BYTES", 10)
    run = await store.start_run("test-archive-parts")
    rows: list[dict[str, Any]] = [
        {"source": "test-archive-parts", "url": f"http://127.0.0.1/f/{n}",
         "fetched_at": T0 + dt.timedelta(seconds=n), "body": bytes([n]) * (4 + n),
         "run_id": run} for n in range(5)]
    assert len(store_module._archive_statements(rows)) == 4  # 4+5, 6, 7, 8 bytes
    ids = await store.archive_raw_many(rows)
    assert ids == sorted(ids) and len(set(ids)) == 5
    got = await store.pool.fetch("SELECT id, url, payload, body_size FROM raw_responses "
                                 "WHERE run_id = $1 ORDER BY id", run)
    assert [(r["id"], r["url"], r["payload"], r["body_size"]) for r in got] == [
        (i, r["url"], r["body"], len(r["body"])) for i, r in zip(ids, rows, strict=True)]
    refused = [{**r, "url": r["url"] + "/again"} for r in rows]
    refused[-1]["fetched_at"] = None  # NOT NULL: the last statement fails
    with pytest.raises(asyncpg.NotNullViolationError):
        await store.archive_raw_many(refused)
    assert await store.pool.fetchval(
        "SELECT count(*) FROM raw_responses WHERE run_id = $1", run) == 5


@pytest.mark.parametrize("statement", [
    "DELETE FROM corridors", "DELETE FROM firms", "TRUNCATE services",
    "DELETE FROM services WHERE service_key = 'test:referenced'",
    "DELETE FROM collection_runs", "DELETE FROM raw_responses"])
async def test_rows_that_quotes_name_cannot_be_removed(store: Store, statement: str) -> None:
    """The foreign keys are back (migration 10): a corridor, firm, service, run or raw
    response that a row names stays while it does."""
    run = await store.start_run("test-fk")
    [raw] = await store.archive_raw_many([{"source": "test-fk", "url": "http://127.0.0.1/q",
                                           "fetched_at": T0, "body": b"{}", "run_id": run}])
    await store.write_batches([WriteBatch([make_quote(
        service_key="test:referenced", raw_response_id=raw,
        source=f"test-fk-{uuid.uuid4().hex[:8]}")], run)])
    with pytest.raises((asyncpg.ForeignKeyViolationError,
                        asyncpg.FeatureNotSupportedError)):
        await store.pool.execute(statement)
    assert await store.pool.fetchval(
        "SELECT count(*) FROM quotes q JOIN services s ON s.id = q.service_id "
        "JOIN raw_responses r ON (r.id, r.fetched_at) = (q.raw_response_id, q.raw_fetched_at) "
        "WHERE s.service_key = 'test:referenced' AND q.run_id = $1", run) == 1


@pytest.mark.parametrize(("column", "value"), [
    ("service_id", 2_000_000_000), ("run_id", 9_000_000_000), ("import_id", 9_000_000_000),
    ("raw_response_id", 9_000_000_000)])
async def test_a_quote_naming_a_missing_parent_is_refused(store: Store, column: str,
                                                         value: int) -> None:
    """Whoever writes (not only corridors.store), a quote's service and provenance must
    exist; a raw response is named by its id and fetch time together (MATCH FULL)."""
    service = await store.pool.fetchval("SELECT min(id) FROM services")
    if service is None:
        await store.store_quotes([make_quote(service_key="test:some-service")])
        service = await store.pool.fetchval("SELECT min(id) FROM services")
    values = {"service_id": service, "run_id": None, "import_id": None,
              "raw_response_id": None, column: value}
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await store.pool.execute(
            "INSERT INTO quotes (service_id, period, amount_usd, send_amount, send_currency, "
            "transparent, collected_at, source, run_id, import_id, raw_response_id, "
            "raw_fetched_at, data_kind) VALUES ($1, '2026-11', 200, 200, 'USD', true, $2, "
            "'test-missing', $3, $4, $5, $6, 'observed')",
            values["service_id"], T0, values["run_id"], values["import_id"],
            values["raw_response_id"], T0 if column == "raw_response_id" else None)


async def test_a_quote_naming_an_unarchived_response_stores_nothing(store: Store) -> None:
    """The writer looks the response's fetch time up; an id not archived has none, and the
    key (id, fetch time) refuses the half-known row: the whole batch fails."""
    with pytest.raises(asyncpg.ForeignKeyViolationError, match=r"MATCH FULL|null"):
        await store.store_quotes([make_quote(service_key="test:unarchived",
                                             raw_response_id=9_000_000_001)])
    assert await store.pool.fetchval(
        "SELECT count(*) FROM services WHERE service_key = 'test:unarchived'") == 0


async def test_failed_batch_stores_nothing(store: Store) -> None:
    good = make_quote(service_key="test:atomic-good")
    bad = make_quote(service_key="test:atomic-bad", send_currency=None)  # NOT NULL violated
    with pytest.raises(asyncpg.PostgresError):
        await store.store_quotes([good, bad])
    n = await store.pool.fetchval(
        "SELECT count(*) FROM services WHERE service_key LIKE 'test:atomic-%'")
    assert n == 0


async def test_quote_frame_reads_back_a_period(store: Store) -> None:
    await store.store_quotes([make_quote(service_key="test:frame", period="2026-10",
                                         collected_at=T0 - dt.timedelta(days=30))])
    frame = await store.quote_frame("2026Q4", amount_usd=200, source="test-op")
    row = frame.filter(frame["service_id"] == "test:frame").row(0, named=True)
    assert row["period"] == "2026Q4"
    assert row["firm_type"] == "mto" and row["transparent"] is True
    assert row["fee"] == pytest.approx(4.99)
    assert row["reference_stale"] is False


async def test_provenance_tables_round_trip(store: Store) -> None:
    run = await store.start_run("test-src")
    [raw] = await store.archive_raw_many([{
        "source": "test-src", "url": "http://127.0.0.1/x", "status": 200, "body": b'{"a": 1}',
        "fetched_at": T0, "content_type": "application/json", "headers": {"ETag": '"abc"'},
        "run_id": run}])
    await store.quarantine([{"source": "test-src", "run_id": run, "raw_response_id": raw,
                             "reason": "fee above the amount", "field": "fee",
                             "payload": {"fee": 900}}])
    await store.finish_run(run, status="ok", requests=1, quotes_stored=0, quotes_quarantined=1,
                           errors={"timeout": 0})
    row = await store.pool.fetchrow("SELECT * FROM raw_responses WHERE id = $1", raw)
    assert row["payload"] == b'{"a": 1}' and row["headers"] == {"ETag": '"abc"'}
    assert row["content_hash"] == hashlib.sha256(b'{"a": 1}').hexdigest()
    q = await store.pool.fetchrow("SELECT * FROM quarantined_quotes WHERE run_id = $1", run)
    assert q["payload"] == {"fee": 900} and q["field"] == "fee"
    r = await store.pool.fetchrow("SELECT * FROM collection_runs WHERE id = $1", run)
    assert r["status"] == "ok" and r["finished_at"] >= r["started_at"]
    n = await store.store_reference_rates([("ecb", "EUR", "USD", Decimal("1.0812"), T0, raw)] * 2)
    assert n == 2
    assert await store.pool.fetchval(
        "SELECT count(*) FROM reference_rates WHERE source = 'ecb' AND as_of = $1", T0) == 1


async def test_closing_does_not_wait_for_ever_on_a_connection_never_given_back(
        fresh_database: str, caplog: pytest.LogCaptureFixture) -> None:
    s = await connect(fresh_database)
    held = await s.pool.acquire()  # a holder that never gives it back
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(s.close(timeout=0.5), 20)
    assert asyncio.get_running_loop().time() - started < 10
    assert held is not None and s.pool.is_closing()
    assert "did not close within" in caplog.text


async def test_unreachable_database_gives_a_clear_error() -> None:
    with pytest.raises(DatabaseError, match="cannot reach the database at postgresql://"):
        await connect("postgresql://nobody@127.0.0.1:1/none", timeout=2)


async def test_password_is_not_printed() -> None:
    with pytest.raises(DatabaseError) as err:
        await connect("postgresql://u:s3cret@127.0.0.1:1/none", timeout=2)
    assert "s3cret" not in str(err.value)


def test_malformed_url() -> None:
    from corridors.db import validate_url

    with pytest.raises(DatabaseError, match="malformed: expected postgresql://"):
        validate_url("mysql://x@y/z")
    with pytest.raises(DatabaseError, match="invalid port"):
        validate_url("postgresql://x@y:99999/z")


def test_the_pools_reconnect_warnings_are_one_line(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import corridors.store  # noqa: F401  (installs the filter)

    pool_log = logging.getLogger("asyncpg.pool")
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except ConnectionRefusedError:
        pool_log.warning("Failed to restore the pool connection floor; retrying",
                         exc_info=True)
    [record] = [r for r in caplog.records if r.name == "asyncpg.pool"]
    assert record.exc_info is None and "Traceback" not in caplog.text
    assert record.getMessage() == ("Failed to restore the pool connection floor; retrying "
                                   "(ConnectionRefusedError: [Errno 111] Connect call failed)")
