"""The wiring of one running sendcost: database, store, HTTP client, scheduler, web app.

``create_app(config, target)`` does no I/O; everything that opens a connection or starts a
task lives in ``app.cleanup_ctx`` and is closed in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from collector.schedule import add_jobs as collector_jobs
from collector.schedule import add_recovery_job
from corridors import runtime
from corridors.config import Config
from corridors.db import DatabaseTarget, database
from corridors.store import Store, connect
from publish import middleware
from publish.api import setup_routes
from publish.problems import RETRY_AFTER_UNAVAILABLE
from publish.schedule import add_jobs as bulletin_jobs

log = logging.getLogger(__name__)

BACKGROUND: web.AppKey[set[asyncio.Task[object]]] = web.AppKey("background", set)


@contextlib.asynccontextmanager
async def open_store(config: Config, *, migrate: bool = True
                     ) -> AsyncIterator[tuple[Store, DatabaseTarget]]:
    """For one-shot commands: the configured database (embedded started here), migrated."""
    stack = contextlib.ExitStack()
    # Starting the embedded server blocks for ~0.7 s: keep the loop free.
    target = await asyncio.to_thread(stack.enter_context,
                                     database(config.database_url, config.data_dir))
    try:
        store = await connect(target.url, min_size=1, max_size=config.database.pool_max,
                              timeout=config.database.connect_timeout_seconds)
        try:
            if migrate:
                await store.migrate()
            yield store, target
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(stack.close)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config, target = app[runtime.CONFIG], app[runtime.DATABASE]
    store = await connect(target.url, min_size=config.database.pool_min,
                          max_size=config.database.pool_max,
                          timeout=config.database.connect_timeout_seconds)
    await store.migrate()
    app[runtime.STORE] = store
    log.info("store ready on %s (%s)", target.display,
             "embedded" if target.embedded else "external")
    yield
    await store.close()


async def _http_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[runtime.CONFIG].collection
    # The default client timeout is 5 minutes: never rely on it.
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=config.timeout_seconds,
                                      connect=min(10.0, config.timeout_seconds)),
        headers={"User-Agent": config.user_agent},
    )
    app[runtime.HTTP] = session
    yield
    await session.close()


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    scheduler = AsyncIOScheduler(timezone="UTC")
    app[runtime.SCHEDULER] = scheduler
    for add_jobs in _job_registrars():
        add_jobs(app, scheduler)
    scheduler.start()
    log.info("scheduler started with %d job(s)", len(scheduler.get_jobs()))
    yield
    # APScheduler 3's asyncio executor cancels running jobs on shutdown but cannot wait for
    # them; wait here, so a cancelled collection records its end before the pool closes.
    running = [f for executor in scheduler._executors.values()
               for f in getattr(executor, "_pending_futures", ())]
    scheduler.shutdown(wait=False)
    if running:
        await asyncio.wait(running, timeout=30)


async def _background_ctx(app: web.Application) -> AsyncIterator[None]:
    tasks: set[asyncio.Task[object]] = set()
    app[BACKGROUND] = tasks
    config = app[runtime.CONFIG]
    if config.import_rpw_on_empty:
        from collector.rpw_import import import_bundled_if_empty

        task: asyncio.Task[object] = asyncio.create_task(
            import_bundled_if_empty(app[runtime.STORE]), name="import-bundled-rpw")
        tasks.add(task)
        task.add_done_callback(_log_task_end)
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _log_task_end(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed: %s", task.get_name(), task.exception())


def _job_registrars() -> list[Callable[[web.Application, AsyncIOScheduler], None]]:
    """Each stage that runs on a schedule contributes a function (app, scheduler) -> None."""
    return [collector_jobs, add_recovery_job, bulletin_jobs]


async def healthz(request: web.Request) -> web.Response:
    """Liveness and readiness: database reachable, last collection per source."""
    store = request.app[runtime.STORE]
    ok = await store.ping()
    runs = await store.last_runs() if ok else []
    body = {
        "status": "ok" if ok else "degraded",
        "database": {"reachable": ok, "embedded": request.app[runtime.DATABASE].embedded},
        "collections": [
            {"source": r["source"], "run_id": r["id"], "status": r["status"],
             "started_at": r["started_at"].isoformat(),
             "finished_at": r["finished_at"].isoformat() if r["finished_at"] else None,
             "quotes_stored": r["quotes_stored"],
             "quotes_quarantined": r["quotes_quarantined"]}
            for r in runs
        ],
    }
    headers = {"Cache-Control": "no-store"}
    if not ok:
        headers["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE)
    return web.json_response(body, status=200 if ok else 503, headers=headers)


def create_app(config: Config, target: DatabaseTarget) -> web.Application:
    """The aiohttp application of one running sendcost. Does no I/O."""
    app = web.Application(client_max_size=64 * 1024)
    app[runtime.CONFIG] = config
    app[runtime.DATABASE] = target
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_http_ctx)
    app.cleanup_ctx.append(_background_ctx)
    app.cleanup_ctx.append(_scheduler_ctx)
    setup_routes(app)
    middleware.get(app, "/healthz", healthz, name="healthz")
    middleware.finish(app)
    return app
