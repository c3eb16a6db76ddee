"""The collectors' schedule on a real APScheduler AsyncIOScheduler, against the sandbox on
loopback and the session's PostgreSQL: triggers fire, crontab sources catch up at start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from collector.sandbox import Faults, Sandbox
from collector.schedule import COLLECTION_JOBS, CollectionJobs, add_jobs
from corridors import runtime
from corridors.config import parse_config
from corridors.jobs import JobsUnderWay
from corridors.store import Store


@pytest.fixture
async def sandbox_url() -> AsyncIterator[str]:
    server = TestServer(Sandbox(Faults(), operators_n=1).app(), host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@contextlib.asynccontextmanager
async def scheduled(store: Store, sandbox_url: str, name: str, schedule: str
                    ) -> AsyncIterator[AsyncIOScheduler]:
    """One ECB source ``name`` on ``schedule`` (no jitter), its jobs declared as the service
    declares them; the test starts the scheduler (after looking at its jobs, if it
    likes), and it is shut down on leaving."""
    async with aiohttp.ClientSession() as session:
        app = web.Application()
        app[runtime.CONFIG] = parse_config({"sources": [{
            "name": name, "kind": "ecb_rates", "url": f"{sandbox_url}/ecb/eurofxref-daily.xml",
            "schedule": schedule, "jitter_seconds": 0}]})
        app[runtime.STORE] = store
        app[runtime.HTTP] = session
        scheduler = AsyncIOScheduler(timezone="UTC")
        add_jobs(app, scheduler)
        try:
            yield scheduler
        finally:
            if scheduler.running:
                scheduler.shutdown(wait=False)


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
    async with scheduled(store, sandbox_url, name, "interval:1") as scheduler:
        scheduler.start()
        assert await _wait_for_runs(store, name, 2, 15) >= 2


async def test_a_crontab_source_that_never_collected_collects_at_start(
        store: Store, sandbox_url: str) -> None:
    name = f"cron-{uuid.uuid4().hex[:8]}"
    async with scheduled(store, sandbox_url, name, "0 5 1 1 *") as scheduler:  # once a year
        assert {j.id for j in scheduler.get_jobs()} == {f"collect:{name}",
                                                         f"catch-up:collect:{name}"}
        scheduler.start()
        assert await _wait_for_runs(store, name, 1, 15) == 1


async def test_a_crontab_source_collected_since_its_last_due_time_waits(
        store: Store, sandbox_url: str, caplog: pytest.LogCaptureFixture) -> None:
    name = f"cron-{uuid.uuid4().hex[:8]}"
    await store.pool.execute(
        "INSERT INTO collection_runs (source, status, finished_at) VALUES ($1, 'ok', now())",
        name)
    caplog.set_level(logging.INFO, logger="collector.schedule")
    async with scheduled(store, sandbox_url, name, "0 5 1 1 *") as scheduler:
        scheduler.start()
        for _ in range(50):
            if f"{name}: collected" in caplog.text:
                break
            await asyncio.sleep(0.1)
        assert f"{name}: collected" in caplog.text and "next at" in caplog.text
        assert await _runs(store, name) == 1  # the one inserted above, nothing new


def test_add_jobs_names_each_sources_jobs() -> None:
    """Who needs a source's jobs finds them by source (COLLECTION_JOBS), not by parsing ids."""
    app = web.Application()
    app[runtime.CONFIG] = parse_config({"sources": [
        {"name": name, "kind": "ecb_rates", "url": "http://127.0.0.1:9/eurofxref-daily.xml",
         "schedule": schedule, "jitter_seconds": 0}
        for name, schedule in (("often", "interval:60"), ("yearly", "0 5 1 1 *"))]})
    scheduler = AsyncIOScheduler(timezone="UTC")
    add_jobs(app, scheduler)
    assert app[COLLECTION_JOBS] == {
        "often": CollectionJobs("often", "collect:often"),
        "yearly": CollectionJobs("yearly", "collect:yearly", "catch-up:collect:yearly")}
    assert {j.id for j in scheduler.get_jobs()} == {
        "collect:often", "collect:yearly", "catch-up:collect:yearly"}


async def test_jobs_under_way_follow_the_schedulers_events() -> None:
    """A run is under way from its submission until it ends, cancelled included."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    under_way = JobsUnderWay()
    under_way.attach(scheduler)
    started, release = asyncio.Event(), asyncio.Event()

    async def job() -> None:
        started.set()
        await release.wait()

    scheduler.start()
    try:
        assert under_way.count() == 0 and not under_way.running("slow")
        scheduler.add_job(job, id="slow")  # runs at once
        await asyncio.wait_for(started.wait(), 10)
        assert under_way.running("slow") and under_way.count() == 1
        release.set()
        await under_way.wait(timeout=10)
        assert under_way.count() == 0 and not under_way.running("slow")
        # Cancelled when the scheduler stops: ended too, and waited for.
        started.clear()
        release.clear()
        scheduler.add_job(job, id="stopped")
        await asyncio.wait_for(started.wait(), 10)
        assert under_way.running("stopped")
    finally:
        scheduler.shutdown(wait=False)
    await under_way.wait(timeout=10)
    assert under_way.count() == 0
