"""The API when the database changes or goes away under it, each test on a database of its
own (real PostgreSQL, real HTTP): the last snapshot keeps being served through an outage,
logged once; with no snapshot at all, 503 ``unavailable`` with ``Retry-After``; and the
postal benchmark's default period is the latest one that has post-office quotes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from api_support import make_app

from corridors import runtime
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
from publish import data as publish_data
from publish.data import data_ctx

T0 = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)
#: How often the app checks the store here (seconds): short, so that a test need not wait.
CHECK = 0.2


def quote(n: int, *, firm_type: FirmType = FirmType.MTO, period: str = "2026-11",
          collected_at: dt.datetime = T0) -> Quote:
    """A transparent USA → MEX quote of service ``n`` (cost grows with ``n``)."""
    return Quote(
        source_code="USA", destination_code="MEX",
        firm=Firm(f"Firm {n}", firm_type),
        service=ServiceAttributes("Cash to cash", PayIn.CASH, PayOut.CASH, None, Speed.SAME_DAY),
        service_key=f"test:firm{n}:USA-MEX:cash", period=period, amount_usd=200,
        send_amount=Decimal("200.00"), send_currency="USD", receive_currency="MXN",
        fee=Decimal(n), applied_rate=Decimal("17.00") - Decimal(n) / 10,
        reference_rate=Decimal("17.50"), reference_source="ecb",
        reference_at=collected_at - dt.timedelta(hours=3), transparent=True,
        collected_at=collected_at, source="test-op", fee_deducted=False,
        data_kind=DataKind.OBSERVED)


async def drop(server_url: str, database_url: str) -> None:
    """The database goes away: dropped, its connections terminated (as an outage does)."""
    admin = await asyncpg.connect(server_url)
    try:
        name = urlsplit(database_url).path.lstrip("/")
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def until(client: TestClient, url: str, ok: Any, seconds: float = 30) -> Any:
    """GET ``url`` until ``ok(status, body)``; the last body."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        resp = await client.get(url)
        body = await resp.read()
        if ok(resp.status, body):
            return body
        assert asyncio.get_running_loop().time() < deadline, (url, resp.status, body[:300])
        await asyncio.sleep(CHECK / 2)


@pytest.fixture
async def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publish_data, "REFRESH_SECONDS", CHECK)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_an_outage_is_answered_from_the_last_snapshot(
        quick: None, fresh_database: str, server_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        await client.app[runtime.STORE].store_quotes([quote(n) for n in range(1, 5)])
        compare = "/v1/compare?from=USA&to=MEX&amount=200"
        await until(client, compare, lambda status, _: status == 200)
        urls = [compare, "/v1/indicators", "/v1/corridors", "/v1/corridors/USA-MEX",
                "/v1/corridors/USA-MEX/history", "/?from=USA&to=MEX&amount=200"]
        before = {}
        for url in urls:
            resp = await client.get(url)
            assert resp.status == 200, (url, await resp.text())
            before[url] = await resp.read()
        caplog.clear()
        await drop(server_url, fresh_database)
        health = await client.get("/healthz")
        assert health.status == 503 and health.headers["Retry-After"] == "5"
        # Past several checks of the store, and through the poller's: the same answers.
        loop = asyncio.get_running_loop()
        end = loop.time() + 6 * CHECK
        while loop.time() < end:
            for url in urls:
                resp = await client.get(url)
                assert resp.status == 200, (url, await resp.text())
                assert await resp.read() == before[url], url
            await asyncio.sleep(CHECK / 4)
        # A question not asked before is answered from the snapshot too.
        resp = await client.get("/v1/compare?from=US&to=MX&amount=250")
        assert resp.status == 200 and (await resp.json())["approximate"] is True
        assert client.app[publish_data.DATA].unreachable
    # Logged once for the outage, not per request nor per check; nothing at ERROR.
    logged = [r for r in warnings_of(caplog) if r.name == "publish.data"]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert "cannot be reached" in logged[0].getMessage()
    assert "serving the data of quote" in logged[0].getMessage()
    assert logged[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_query_the_database_refuses_is_a_bug_not_an_outage(
        quick: None, fresh_database: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="publish.data")
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        await client.app[runtime.STORE].store_quotes([quote(1)])
        compare = "/v1/compare?from=USA&to=MEX&amount=200"
        before = await until(client, compare, lambda status, _: status == 200)
        # The database answers, but not the poller's question (as a schema bug would).
        await client.app[runtime.STORE].pool.execute("ALTER TABLE quotes RENAME TO q_gone")
        await asyncio.sleep(4 * CHECK)
        assert await until(client, compare, lambda status, _: status == 200) == before
        assert not client.app[publish_data.DATA].unreachable
    records = [r for r in caplog.records if r.name == "publish.data"]
    assert not [r for r in records if "cannot be reached" in r.getMessage()]
    failed = [r for r in records if r.getMessage() == "snapshot refresh failed"]
    assert failed and failed[0].levelno == logging.ERROR and failed[0].exc_info


async def test_a_stopping_service_does_not_wait_for_a_poller_whose_cancel_was_swallowed(
        quick: None, fresh_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncpg, releasing a connection cancelled in the middle of a COPY, can raise
    InternalClientError instead of the CancelledError (seen as a `sendcost serve` that hung
    on SIGTERM): the poller must end all the same."""
    loading = asyncio.Event()

    async def cancelled_into_an_error(store: Any, version: int) -> Any:
        loading.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise asyncpg.InternalClientError(
                "cannot switch to state 15; another operation (19) is in progress") from None

    monkeypatch.setattr(publish_data, "load_quotes", cancelled_into_an_error)
    client = TestClient(TestServer(make_app(fresh_database)))
    await client.start_server()
    try:
        await client.app[runtime.STORE].store_quotes([quote(1)])
        await asyncio.wait_for(loading.wait(), 30)
    finally:
        closing = asyncio.create_task(client.close())  # the app's cleanup ends the poller
        done, _ = await asyncio.wait({closing}, timeout=30)
        assert closing in done, "the app's cleanup waits for ever for its snapshot poller"


async def test_an_outage_ends_and_new_quotes_are_served(
        quick: None, fresh_database: str, server_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="publish.data")
    name = urlsplit(fresh_database).path.lstrip("/")
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        store = client.app[runtime.STORE]
        await store.store_quotes([quote(n) for n in range(1, 4)])
        compare = "/v1/compare?from=USA&to=MEX&amount=200"
        await until(client, compare, lambda status, body: status == 200)
        admin = await asyncpg.connect(server_url)
        try:  # no new connection is let in, and those open are ended
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
            await asyncio.sleep(3 * CHECK)
            resp = await client.get(compare)
            assert resp.status == 200 and len((await resp.json())["services"]) == 3
            assert client.app[publish_data.DATA].unreachable
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        finally:
            await admin.close()
        await store.store_quotes([quote(4)])
        await until(client, compare, lambda status, body: status == 200
                    and len(json.loads(body)["services"]) == 4)
        assert not client.app[publish_data.DATA].unreachable
    messages = [r.getMessage() for r in caplog.records if r.name == "publish.data"]
    assert len([m for m in messages if "cannot be reached" in m]) == 1, messages
    assert len([m for m in messages if m.startswith("the database answers again")]) == 1, messages


async def test_without_a_snapshot_an_outage_is_503_unavailable(
        quick: None, fresh_database: str, server_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app = make_app(fresh_database)

    async def database_goes_away(app: web.Application) -> AsyncIterator[None]:
        # After the store connected and migrated, before the first snapshot was read.
        await drop(server_url, fresh_database)
        yield

    app.cleanup_ctx.insert(list(app.cleanup_ctx).index(data_ctx), database_goes_away)
    async with TestClient(TestServer(app)) as client:
        for _ in range(3):
            for url in ("/v1/compare?from=USA&to=MEX&amount=200", "/v1/indicators",
                        "/v1/corridors", "/v1/corridors/USA-MEX", "/v1/postal/benchmark",
                        "/v1/compare.csv?from=USA&to=MEX&amount=200", "/?from=US&to=MX"):
                resp = await client.get(url)
                assert resp.status == 503, (url, await resp.text())
                assert resp.content_type == "application/problem+json"
                assert resp.headers["Cache-Control"] == "no-store"
                assert 1 <= int(resp.headers["Retry-After"]) <= 60
                body = await resp.json(content_type=None)
                assert body["type"] == "https://sendcost.org/problems/unavailable"
                assert body["status"] == 503 and "database" in body["detail"]
            await asyncio.sleep(CHECK)
        assert (await client.get("/healthz")).status == 503
        assert (await client.get("/metrics")).status == 200
        assert (await client.get("/v1/openapi.json")).status == 200
    logged = [r for r in warnings_of(caplog) if r.name == "publish.data"]
    assert len(logged) == 1 and "no data to serve" in logged[0].getMessage(), [
        r.getMessage() for r in logged]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR
                and r.name.startswith(("publish", "aiohttp"))]


async def test_postal_benchmark_defaults_to_the_latest_period_with_post_offices(
        quick: None, fresh_database: str) -> None:
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        october = T0 - dt.timedelta(days=30)
        await client.app[runtime.STORE].store_quotes([
            quote(1, period="2026-10", collected_at=october),
            quote(2, period="2026-10", collected_at=october, firm_type=FirmType.POST_OFFICE),
            quote(3, period="2026-10", collected_at=october),
            # November: quotes, but none of a post office.
            quote(1), quote(3)])
        body = await until(client, "/v1/corridors/USA-MEX",
                           lambda status, body: status == 200 and b'"2026-11"' in body)
        resp = await client.get("/v1/postal/benchmark")
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["period"] == "2026-10"
        assert [(s["provider"], s["rank"]) for s in body["services"]] == [("Firm 2", 2)]
        # Asked for, a period without post offices is an empty answer, not another period.
        november = await (await client.get("/v1/postal/benchmark?period=2026-11")).json()
        assert november["period"] == "2026-11" and november["services"] == []
        # At a price point no post office is quoted at: 404.
        assert (await client.get("/v1/postal/benchmark?amount=500")).status == 404
