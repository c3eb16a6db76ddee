"""/healthz says why the service is degraded: the database unreachable, restarting, or
refusing writes because its disk is full (a real server's DiskFullError)."""

from __future__ import annotations

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import make_app

from corridors import runtime
from publish.contract_ops import Health

DISK_FULL = """
CREATE FUNCTION _disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'could not extend file "base/16384/16390": No space left on device'
        USING ERRCODE = 'disk_full', HINT = 'Check free disk space.';
END $$;
CREATE TRIGGER _disk_full BEFORE INSERT ON collection_runs
    FOR EACH ROW EXECUTE FUNCTION _disk_full();
"""


async def test_writes_refused_for_a_full_disk_make_healthz_degraded(
        fresh_database: str) -> None:
    """Before: runs failed with DiskFullError while /healthz said 200 ok."""
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        store = client.app[runtime.STORE]
        assert (await client.get("/healthz")).status == 200
        await store.pool.execute(DISK_FULL)  # the server refuses to extend a table
        with pytest.raises(asyncpg.exceptions.DiskFullError):
            await store.start_run("health-test")
        resp = await client.get("/healthz")
        assert resp.status == 503 and resp.headers["Retry-After"]
        body = await resp.json()
        # The same model either way, to the key and type (decoding is strict).
        assert msgspec.json.decode(await resp.read(), type=Health).status == "degraded"
        assert body["status"] == "degraded" and body["database"]["reachable"] is True
        [reason] = body["reasons"]
        assert reason.startswith("writes fail: disk full: no space left on device where the "
                                 "database keeps its data (DiskFullError: could not extend")
        # Space again: the next write that succeeds makes it ok.
        await store.pool.execute("DROP TRIGGER _disk_full ON collection_runs")
        await store.start_run("health-test")
        ok = await client.get("/healthz")
        body = await ok.json()
        assert (body["status"], body["reasons"]) == ("ok", [])
        assert msgspec.json.decode(await ok.read(), type=Health).database.reachable


async def test_other_write_errors_are_not_health(fresh_database: str) -> None:
    """A write refused for what it holds (a bug of ours, a constraint) says nothing of the
    database's health."""
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        store = client.app[runtime.STORE]
        with pytest.raises(asyncpg.exceptions.CheckViolationError):
            await store.finish_run(await store.start_run("health-test"), status="nonsense",
                                   requests=0, quotes_stored=0, quotes_quarantined=0,
                                   errors={})
        assert (await client.get("/healthz")).status == 200


async def test_metrics_say_an_outage_once_not_on_every_scrape(
        fresh_database: str, server_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """With the database down every /metrics scrape logged an ERROR."""
    import logging
    from urllib.parse import urlsplit

    async with TestClient(TestServer(make_app(fresh_database))) as client:
        assert (await client.get("/metrics")).status == 200
        admin = await asyncpg.connect(server_url)
        try:  # the database goes away under the running app
            name = urlsplit(fresh_database).path.lstrip("/")
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        caplog.clear()
        for _ in range(5):
            assert (await client.get("/metrics")).status == 200
        said = [r for r in caplog.records if r.name == "publish.api.operations"]
        assert [r.levelno for r in said] == [logging.WARNING], [r.getMessage() for r in said]
        assert said[0].getMessage().startswith("metrics: the store is unreachable")
