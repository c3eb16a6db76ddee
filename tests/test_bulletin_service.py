"""The first-of-month job publishes from the store, and GET /v1/bulletins lists it."""

from __future__ import annotations

import datetime as dt

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from collector.rpw_import import bundled_rpw_path, import_rpw
from corridors import runtime
from corridors.config import BulletinConfig, Config
from publish import middleware
from publish.bulletin_routes import setup_bulletin_routes
from publish.schedule import JOB_ID, add_jobs, periods_to_publish, publish_last_month


def test_periods_due() -> None:
    assert periods_to_publish(dt.date(2014, 7, 1)) == ["2014-06", "2014Q2"]
    assert periods_to_publish(dt.date(2026, 12, 1)) == ["2026-11"]
    assert periods_to_publish(dt.date(2027, 1, 1)) == ["2026-12", "2026Q4"]


async def test_add_jobs_schedules_the_first_of_the_month(tmp_path) -> None:
    app = web.Application()
    app[runtime.CONFIG] = Config(data_dir=tmp_path, bulletin=BulletinConfig(publish_hour_utc=7))
    scheduler = AsyncIOScheduler(timezone="UTC")
    add_jobs(app, scheduler)
    job = scheduler.get_job(JOB_ID)
    assert job is not None
    fields = {f.name: str(f) for f in job.trigger.fields}
    assert (fields["day"], fields["hour"], fields["minute"]) == ("1", "7", "0")
    off = web.Application()
    off[runtime.CONFIG] = Config(data_dir=tmp_path, bulletin=BulletinConfig(enabled=False))
    other = AsyncIOScheduler(timezone="UTC")
    add_jobs(off, other)
    assert other.get_jobs() == []


async def test_job_publishes_and_the_api_lists_it(store, tmp_path) -> None:
    await import_rpw(store, bundled_rpw_path())  # idempotent: the store may have it already
    app = web.Application(middlewares=middleware.MIDDLEWARES)
    app[runtime.CONFIG] = Config(data_dir=tmp_path)
    app[runtime.STORE] = store
    # The API's one error place turns a Problem into problem+json, as in the service.
    middleware.install(app, rate_limit_per_minute=0)
    setup_bulletin_routes(app)

    published = await publish_last_month(app, today=dt.date(2014, 7, 1))
    assert "2014Q2" in published
    folder = tmp_path / "bulletins" / "2014Q2"
    assert (folder / "index.html").is_file() and (folder / "bulletin.pdf").is_file()
    # A published bulletin is an alert event (docs/alerts.md), once per period.
    assert await store.pool.fetchval("SELECT count(*) FROM alert_events WHERE event_key = "
                                     "'new_bulletin:2014Q2'") == 1

    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.get(server.make_url("/v1/bulletins")) as resp:
                assert resp.status == 200
                body = await resp.json()
                etag = resp.headers["ETag"]
            async with http.get(server.make_url("/v1/bulletins"),
                                headers={"If-None-Match": etag}) as resp:
                assert resp.status == 304
            periods = [b["period"] for b in body["bulletins"]]
            assert "2014Q2" in periods
            item = body["bulletins"][periods.index("2014Q2")]
            assert item["generated_from"] == "store"
            assert item["files"]["pdf"] == "/v1/bulletins/2014Q2/bulletin.pdf"
            async with http.get(server.make_url("/v1/bulletins/2014Q2"),
                                allow_redirects=False) as resp:
                assert resp.status == 301
                assert resp.headers["Location"] == "/v1/bulletins/2014Q2/"
            async with http.get(server.make_url("/v1/bulletins/2014Q2/")) as resp:
                assert resp.status == 200
                assert resp.content_type == "text/html"
                assert "What it costs to send money home: 2014Q2" in await resp.text()
            async with http.get(server.make_url(item["files"]["pdf"])) as resp:
                assert resp.status == 200 and resp.content_type == "application/pdf"
                assert (await resp.read())[:5] == b"%PDF-"
            async with http.get(server.make_url("/v1/bulletins/2014Q2/charts/trend.svg")) as resp:
                assert resp.status == 200 and resp.content_type == "image/svg+xml"
            async with http.get(server.make_url("/v1/bulletins/2030Q1/")) as resp:
                assert resp.status == 404
                assert resp.content_type == "application/problem+json"
                assert "2030Q1" in (await resp.json())["detail"]
            async with http.get(server.make_url("/v1/bulletins/2014Q2/..%2F..%2Fsecret")) as resp:
                assert resp.status == 404
            async with http.get(server.make_url("/v1/bulletins/nonsense/")) as resp:
                assert resp.status == 400
    finally:
        await server.close()


async def test_job_without_data_publishes_nothing(store, tmp_path) -> None:
    app = web.Application(middlewares=middleware.MIDDLEWARES)
    app[runtime.CONFIG] = Config(data_dir=tmp_path)
    app[runtime.STORE] = store
    assert await publish_last_month(app, today=dt.date(2099, 2, 1)) == []
    root = tmp_path / "bulletins"
    assert not root.exists() or list(root.iterdir()) == []
