"""The collectors' schedule on a real APScheduler AsyncIOScheduler, against the sandbox on
loopback and the session's PostgreSQL: triggers fire, crontab sources catch up at start."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from collector.sandbox import Faults, Sandbox
from collector.schedule import add_jobs
from corridors import runtime
from corridors.config import parse_config
from corridors.store import Store


@pytest.fixture
async def sandbox_url() -> AsyncIterator[str]:
    server = TestServer(Sandbox(Faults(), operators_n=1).app(), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def _app(store: Store, session: aiohttp.ClientSession, sources: list[dict[str, Any]]
               ) -> web.Application:
    app = web.Application()
    app[runtime.CONFIG] = parse_config({"sources": sources})
    app[runtime.STORE] = store
    app[runtime.HTTP] = session
    return app


async def _runs(store: Store, name: str) -> int:
    return int(await store.pool.fetchval(
        "SELECT count(*) FROM collection_runs WHERE source = $1 AND status = 'ok'", name))


async def _wait_for_runs(store: Store, name: str, n: int, seconds: float) -> int:
    for _ in range(int(seconds * 10)):
        if (found := await _runs(store, name)) >= n:
            return found
        await asyncio.sleep(0.1)
    return await _runs(store, name)


async def test_an_interval_trigger_fires_again(store: Store, sandbox_url: str) -> None:
    """The first run is put at start by hand; the second comes from the trigger itself."""
    name = f"iv-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as session:
        app = await _app(store, session, [{
            "name": name, "kind": "ecb_rates", "url": f"{sandbox_url}/ecb/eurofxref-daily.xml",
            "schedule": "interval:1", "jitter_seconds": 0}])
        scheduler = AsyncIOScheduler(timezone="UTC")
        add_jobs(app, scheduler)
        scheduler.start()
        try:
            assert await _wait_for_runs(store, name, 2, 15) >= 2
        finally:
            scheduler.shutdown(wait=False)


async def test_a_crontab_source_that_never_collected_collects_at_start(
        store: Store, sandbox_url: str) -> None:
    name = f"cron-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as session:
        app = await _app(store, session, [{
            "name": name, "kind": "ecb_rates", "url": f"{sandbox_url}/ecb/eurofxref-daily.xml",
            "schedule": "0 5 1 1 *", "jitter_seconds": 0}])  # once a year
        scheduler = AsyncIOScheduler(timezone="UTC")
        add_jobs(app, scheduler)
        assert {j.id for j in scheduler.get_jobs()} == {f"collect:{name}",
                                                         f"catch-up:collect:{name}"}
        scheduler.start()
        try:
            assert await _wait_for_runs(store, name, 1, 15) == 1
        finally:
            scheduler.shutdown(wait=False)


async def test_a_crontab_source_collected_since_its_last_due_time_waits(
        store: Store, sandbox_url: str, caplog: pytest.LogCaptureFixture) -> None:
    name = f"cron-{uuid.uuid4().hex[:8]}"
    await store.pool.execute(
        "INSERT INTO collection_runs (source, status, finished_at) VALUES ($1, 'ok', now())",
        name)
    caplog.set_level(logging.INFO, logger="collector.schedule")
    async with aiohttp.ClientSession() as session:
        app = await _app(store, session, [{
            "name": name, "kind": "ecb_rates", "url": f"{sandbox_url}/ecb/eurofxref-daily.xml",
            "schedule": "0 5 1 1 *", "jitter_seconds": 0}])
        scheduler = AsyncIOScheduler(timezone="UTC")
        add_jobs(app, scheduler)
        scheduler.start()
        try:
            for _ in range(50):
                if f"{name}: collected" in caplog.text:
                    break
                await asyncio.sleep(0.1)
            assert f"{name}: collected" in caplog.text and "next at" in caplog.text
            assert await _runs(store, name) == 1  # the one inserted above, nothing new
        finally:
            scheduler.shutdown(wait=False)
