"""A collection run's end is always recorded: stopped by SIGTERM, or its process killed."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from corridors.store import Store

ROOT = Path(__file__).resolve().parent.parent


async def _insert_running(store: Store, source: str, *, host: str, pid: int | None,
                          started_at: dt.datetime) -> int:
    return int(await store.pool.fetchval(
        "INSERT INTO collection_runs (source, host, pid, started_at) VALUES ($1, $2, $3, $4) "
        "RETURNING id", source, host, pid, started_at))


async def test_runs_of_dead_processes_are_marked_failed(store: Store) -> None:
    tag = uuid.uuid4().hex[:8]
    now = dt.datetime.now(dt.UTC)
    here = socket.gethostname()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = await _insert_running(store, f"{tag}-dead", host=here, pid=gone.pid, started_at=now)
    # What the dead run did is recorded with its end: two responses archived, one quote
    # quarantined.
    raw = await store.archive_raw_many([
        {"source": f"{tag}-dead", "url": f"http://x/{i}", "fetched_at": now, "status": 200,
         "body": b"{}", "run_id": dead} for i in range(2)])
    await store.quarantine([{"source": f"{tag}-dead", "run_id": dead,
                             "raw_response_id": raw[0], "reason": "fee_missing",
                             "payload": {}}])
    alive = await store.start_run(f"{tag}-alive")  # ours, under way
    # Our pid, but not a run of this process: a previous process that had the pid (however
    # recently it started; no clock is compared).
    reused = await _insert_running(store, f"{tag}-reused", host=here, pid=os.getpid(),
                                   started_at=now)
    elsewhere = await _insert_running(store, f"{tag}-elsewhere", host="other-host", pid=1,
                                      started_at=now - dt.timedelta(minutes=5))
    stale = await _insert_running(store, f"{tag}-stale", host="other-host", pid=1,
                                  started_at=now - dt.timedelta(days=2))

    marked = await store.abandon_dead_runs()
    assert {dead, reused, stale} <= set(marked)
    assert alive not in marked and elsewhere not in marked
    rows = {r["id"]: r for r in await store.pool.fetch(
        "SELECT id, status, finished_at, message FROM collection_runs WHERE source LIKE $1",
        f"{tag}-%")}
    for run_id in (dead, reused, stale):
        assert rows[run_id]["status"] == "failed" and rows[run_id]["finished_at"]
        assert rows[run_id]["message"].startswith("abandoned: ")
    assert f"process {gone.pid} on {here}" in rows[dead]["message"]
    did = await store.pool.fetchrow(
        "SELECT requests, quotes_stored, quotes_quarantined, errors FROM collection_runs "
        "WHERE id = $1", dead)
    assert dict(did) == {"requests": 2, "quotes_stored": 0, "quotes_quarantined": 1,
                         "errors": {"abandoned": 1}}
    assert rows[alive]["status"] == rows[elsewhere]["status"] == "running"
    assert await store.abandon_dead_runs() == []  # once only
    await store.pool.execute(  # leave nothing 'running' for other tests
        "UPDATE collection_runs SET status = 'failed' WHERE id = ANY($1::bigint[])",
        [alive, elsewhere])


async def test_sigterm_stops_collect_and_records_its_runs(store: Store, database_url: str,
                                                          tmp_path: Path) -> None:
    """SIGTERM (systemd, cron, docker stop) is Ctrl-C: the run under way is recorded as
    failed, saying how to recover what it fetched, and the exit code is 128 + 15."""
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/{tail:.*}", hang)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    name = f"slow-{uuid.uuid4().hex[:8]}"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        "[collection]\ntimeout_seconds = 60.0\n\n"
        f'[[sources]]\nname = "{name}"\nkind = "ecb_rates"\n'
        f'url = "{server.make_url("/ecb/eurofxref-daily.xml")}"\n')
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=database_url, SENDCOST_DATA_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "sendcost", "collect", "--config", str(cfg)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for _ in range(300):
            status = await store.pool.fetchval(
                "SELECT status FROM collection_runs WHERE source = $1", name)
            if status == "running":
                break
            assert proc.poll() is None, proc.communicate()
            await asyncio.sleep(0.1)
        assert status == "running"
        await asyncio.sleep(0.3)  # the request is out, waiting on the upstream
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        release.set()
        await server.close()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    row = await store.pool.fetchrow(
        "SELECT id, status, finished_at, message FROM collection_runs WHERE source = $1", name)
    assert row["status"] == "failed" and row["finished_at"] is not None
    assert f"--reparse {row['id']}" in row["message"]


@pytest.mark.parametrize("extra", [["--source", "x"], ["--corridor", "USA-MEX"]])
def test_reparse_with_a_source_is_a_usage_error(extra: list[str], tmp_path: Path) -> None:
    # Said before any config is read: a usage error whatever the config file.
    out = subprocess.run([sys.executable, "-m", "sendcost", "collect", "--config",
                          str(tmp_path / "missing.toml"), "--reparse", "1", *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SENDCOST_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2, out.stderr
    assert "--reparse takes no --source or --corridor" in out.stderr


async def test_a_failed_run_says_why_without_verbose_logs(store: Store) -> None:
    import aiohttp

    from collector.run import Collector
    from corridors.config import parse_config

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    name = f"refused-{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{port}/ecb.xml"
    config = parse_config({"collection": {"max_retries": 1, "backoff_base_seconds": 0.01},
                           "sources": [{"name": name, "kind": "ecb_rates", "url": url}]})
    async with aiohttp.ClientSession() as session:
        report = await Collector(config, store, session).run(name)
    assert report.status == "failed"
    assert report.message is not None and report.message.startswith("no request succeeded")
    assert "last error: connection" in report.message and url in report.message
    assert await store.pool.fetchval(
        "SELECT message FROM collection_runs WHERE id = $1", report.run_id) == report.message


async def test_a_run_cancelled_at_any_point_is_closed(store: Store) -> None:
    """Cancelled wherever it is — taking its lease, writing its row, loading its rates,
    fetching — a run is recorded failed, never left 'running' (`collect` SIGTERM left one
    'running' in 1 of 10 tries)."""
    import aiohttp

    from collector.run import Collector
    from corridors.config import parse_config

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/{tail:.*}", hang)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    name = f"cancel-{uuid.uuid4().hex[:8]}"
    config = parse_config({"sources": [{"name": name, "kind": "ecb_rates",
                                        "url": str(server.make_url("/eurofxref-daily.xml"))}]})
    try:
        async with aiohttp.ClientSession() as session:
            collector = Collector(config, store, session)
            for step in range(80):  # from at once to well into the fetch
                task = asyncio.create_task(collector.run(name))
                await asyncio.sleep(step * 0.0015)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await server.close()
    rows = await store.pool.fetch(
        "SELECT status, errors, message FROM collection_runs WHERE source = $1", name)
    assert rows and {r["status"] for r in rows} == {"failed"}
    assert all(r["errors"].get("cancelled") == 1 and "cancelled" in r["message"]
               for r in rows)
    assert await store.pool.fetchval(
        "SELECT count(*) FROM source_leases WHERE source = $1", name) == 0


async def test_stopping_run_all_waits_for_every_run_to_record_its_end(
        store: Store, database_url: str) -> None:
    """`collect` on SIGTERM cancels run_all, then closes its pool. gather gave up at the
    first run that ended cancelled, so the pool closed under the others ("pool is closing")
    and one was left 'running' in about 1 of 10 tries."""
    import aiohttp

    from collector.run import Collector
    from corridors.config import parse_config
    from corridors.store import connect

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/{tail:.*}", hang)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    tag = f"stop-{uuid.uuid4().hex[:8]}"
    config = parse_config({"sources": [
        {"name": f"{tag}-{i}", "kind": "json_rates",
         "url": str(server.make_url(f"/rates/{i}"))} for i in range(6)]})
    own = await connect(database_url, min_size=1, max_size=4)
    try:
        async with aiohttp.ClientSession() as session:
            collector = Collector(config, own, session)
            task = asyncio.create_task(collector.run_all())
            for _ in range(300):
                started = await store.pool.fetchval(
                    "SELECT count(*) FROM collection_runs WHERE source LIKE $1", f"{tag}-%")
                if started == 6:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)  # their requests are out
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Every run has ended (recorded its end) by the time run_all has.
            still = [t for t in asyncio.all_tasks() if not t.done()
                     and getattr(t.get_coro(), "__qualname__", "") == "Collector.run"]
            await own.close()  # as `collect` does at once
            assert still == []
    finally:
        await server.close()
    rows = await store.pool.fetch(
        "SELECT status, message FROM collection_runs WHERE source LIKE $1", f"{tag}-%")
    assert len(rows) == 6
    assert {r["status"] for r in rows} == {"failed"}, rows


async def test_a_scheduled_run_stopped_by_shutdown_ends_quietly(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """serve's SIGTERM cancels the scheduler's jobs: each ended with an ERROR and a
    traceback from APScheduler; now the job ends quietly, its run recorded as cancelled."""
    import logging

    import aiohttp

    from collector.schedule import collect_job
    from corridors import runtime
    from corridors.config import parse_config

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(status=503)

    upstream = web.Application()
    upstream.router.add_get("/{tail:.*}", hang)
    server = TestServer(upstream, host="127.0.0.1")
    await server.start_server()
    name = f"job-{uuid.uuid4().hex[:8]}"
    app = web.Application()
    app[runtime.CONFIG] = parse_config({"sources": [
        {"name": name, "kind": "json_rates", "url": str(server.make_url("/rates"))}]})
    app[runtime.STORE] = store
    try:
        async with aiohttp.ClientSession() as session:
            app[runtime.HTTP] = session
            job = asyncio.create_task(collect_job(app, name))
            for _ in range(300):
                if await store.pool.fetchval(
                        "SELECT count(*) FROM collection_runs WHERE source = $1", name):
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
            caplog.clear()
            caplog.set_level(logging.DEBUG)
            job.cancel()
            await job  # ended, not raised
    finally:
        await server.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    row = await store.pool.fetchrow(
        "SELECT status, errors FROM collection_runs WHERE source = $1", name)
    assert (row["status"], row["errors"]) == ("failed", {"cancelled": 1})
