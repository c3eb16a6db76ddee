"""The wiring of one running sendcost: database, store, HTTP client, scheduler, web app.

``create_app(config, target)`` does no I/O; everything that opens a connection or starts a
task lives in ``app.cleanup_ctx`` and is closed in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import shutil
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from collector.postal_tariff import stale_tariffs
from collector.schedule import add_jobs as collector_jobs
from collector.schedule import add_recovery_job
from corridors import health, partitions, runtime
from corridors.config import Config
from corridors.db import DatabaseTarget, EmbeddedServer, database, redact
from corridors.errors import DatabaseError
from corridors.jobs import JobsUnderWay
from corridors.store import STORE_ERRORS, Store, connect, migrations
from publish import middleware
from publish.api.postal_summary import setup_postal_summary_routes
from publish.api.routes import setup_routes
from publish.contract import encode
from publish.contract_ops import Collection, Health, HealthDatabase, StaleTariff
from publish.feeds import add_jobs as alerts_jobs
from publish.feeds import setup_alerts
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
                await store.migrate(partitions_ahead=config.storage.partitions_ahead_months)
            yield store, target
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(stack.close)


async def _open(config: Config, url: str) -> Store:
    return await connect(url, min_size=config.database.pool_min,
                         max_size=config.database.pool_max,
                         timeout=config.database.connect_timeout_seconds)


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config, target = app[runtime.CONFIG], app[runtime.DATABASE]
    read_url = config.read_database_url
    if not app[runtime.COLLECTING]:
        # A replica: one pool, on the read database (else the write one), that never
        # writes; the collecting process keeps the schema and the rollups.
        store = await _open(config, read_url or target.url)
        try:
            await check_schema(store)
        except BaseException:
            await store.close()
            raise
        app[runtime.STORE] = store
        log.info("serving only (no collection) from %s", redact(read_url) if read_url
                 else target.display)
        yield
        await store.close()
        return
    store = await _open(config, target.url)
    read: Store | None = None
    try:
        await store.migrate(partitions_ahead=config.storage.partitions_ahead_months)
        if read_url:
            read = await _open(config, read_url)
            app[runtime.READ_STORE] = read
    except BaseException:
        await store.close()
        raise
    app[runtime.STORE] = store
    log.info("store ready on %s (%s)%s", target.display,
             "embedded" if target.embedded else "external",
             f"; the API reads {redact(read_url)}" if read_url else "")
    yield
    if read is not None:
        await read.close()
    await store.close()


async def check_schema(store: Store) -> None:
    """A replica does not migrate: the database it reads must have this sendcost's schema
    (the collecting process, or ``sendcost db migrate``, applies it on the primary)."""
    applied: set[int] = set()
    if await store.schema_version():
        applied = {r["version"] for r in await store.pool.fetch(
            "SELECT version FROM schema_migrations")}
    # Every one, not only the newest: a migration numbered below one applied may come later.
    missing = [name for version, name, _ in migrations() if version not in applied]
    if missing:
        raise DatabaseError(
            f"the database lacks {len(missing)} of this sendcost's migrations "
            f"({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}): 'serve "
            "--no-collect' does not migrate; run 'sendcost db migrate' (or start the "
            "collecting 'sendcost serve') against the primary first")


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
    under_way = JobsUnderWay()
    under_way.attach(scheduler)
    app[runtime.SCHEDULER] = scheduler
    app[runtime.JOBS_UNDER_WAY] = under_way
    for add_jobs in _job_registrars(collecting=app[runtime.COLLECTING]):
        add_jobs(app, scheduler)
    scheduler.start()
    log.info("scheduler started with %d job(s)", len(scheduler.get_jobs()))
    yield
    # APScheduler 3's asyncio executor cancels running jobs on shutdown but cannot wait for
    # them; wait here, so a cancelled collection records its end before the pool closes.
    running = under_way.count()
    scheduler.shutdown(wait=False)
    if running:
        await under_way.wait(timeout=30)
        # Said once for all: each job ends quietly (collector/schedule.py).
        log.info("stopping: %d scheduled job(s) under way were stopped (a collection stopped "
                 "so is recorded as failed, 'cancelled')", running)


async def _background_ctx(app: web.Application) -> AsyncIterator[None]:
    tasks: set[asyncio.Task[object]] = set()
    app[BACKGROUND] = tasks
    config = app[runtime.CONFIG]
    if config.import_rpw_on_empty and app[runtime.COLLECTING]:
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


def _job_registrars(*, collecting: bool = True
                    ) -> list[Callable[[web.Application, AsyncIOScheduler], None]]:
    """Each stage that runs on a schedule contributes a function (app, scheduler) -> None.
    A replica (``collecting=False``) runs none that writes to the database: no collection,
    no recovery of runs, no storage upkeep (partitions, retention), no alert detection or
    webhook delivery (they record events and deliveries); the monthly bulletin only reads
    it (into its own data folder)."""
    if not collecting:
        return [bulletin_jobs]
    return [collector_jobs, add_recovery_job, bulletin_jobs, storage_jobs, alerts_jobs]


async def _storage_upkeep(app: web.Application) -> None:
    storage = app[runtime.CONFIG].storage
    try:
        await partitions.daily_upkeep(app[runtime.STORE], storage.partitions_ahead_months,
                                      storage.raw_retention_days)
    except STORE_ERRORS as exc:
        # Tomorrow's run tries again; the partitions ahead leave months of slack.
        log.error("the store's daily upkeep failed: %s: %s", type(exc).__name__, exc)


def storage_jobs(app: web.Application, scheduler: AsyncIOScheduler) -> None:
    """Daily at 00:15 UTC: month partitions ahead, and the retention of raw bodies
    (corridors.partitions; the partitions are also made at every start, by migrate)."""
    scheduler.add_job(_storage_upkeep, CronTrigger(hour=0, minute=15, timezone="UTC"),
                      args=[app], id=partitions.JOB_ID, replace_existing=True,
                      max_instances=1, coalesce=True, misfire_grace_time=6 * 3600)


class Supervisor:
    """Keeps serve's embedded PostgreSQL running: checks its postmaster every few seconds;
    when it is gone, says why (from its log) and starts it again, backing off while it
    cannot (a full disk, say); when another process started it meanwhile, uses that one
    (and stops it at the end, like its own)."""

    CHECK_SECONDS = 2.0
    BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server
        #: Why the database cannot be used now (for /healthz), or None while it runs.
        self.reason: str | None = None
        self.restarts = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.CHECK_SECONDS)
            if await asyncio.to_thread(self.server.alive):
                continue
            await self._recover()

    async def _recover(self) -> None:
        old = self.server.pid
        other = await asyncio.to_thread(self.server.running_pid)
        if other is not None:
            new = await asyncio.to_thread(self.server.restart)
            log.warning("embedded PostgreSQL (pid %s) was replaced by one another sendcost "
                        "process started (pid %d); serve uses that one now", old, new)
            return
        why = await asyncio.to_thread(self.server.why_down)
        self.reason = f"restarting: the embedded PostgreSQL (pid {old}) stopped: {why}"
        log.warning("the embedded PostgreSQL (pid %s) stopped: %s; restarting it", old, why)
        for attempt in itertools.count():
            try:
                new = await asyncio.to_thread(self.server.restart)
            except DatabaseError as exc:
                delay = self.BACKOFF_SECONDS[min(attempt, len(self.BACKOFF_SECONDS) - 1)]
                self.reason = f"restarting: {exc}; next attempt in {delay:g} s"
                log.error("%s", self.reason)
                await asyncio.sleep(delay)
                continue
            break
        self.restarts += 1
        self.reason = None
        log.warning("embedded PostgreSQL restarted (pid %d)", new)


SUPERVISOR: web.AppKey[Supervisor] = web.AppKey("embedded_supervisor", Supervisor)
#: Less free space than this where the embedded database keeps its data (one WAL segment)
#: is a full disk: PostgreSQL cannot be trusted to write.
DISK_FULL_BYTES = 16 * 1024 * 1024


async def _supervisor_ctx(app: web.Application) -> AsyncIterator[None]:
    server = app[runtime.DATABASE].server
    if server is None:  # an external database is someone else's to keep running
        yield
        return
    supervisor = Supervisor(server)
    app[SUPERVISOR] = supervisor
    task = asyncio.create_task(supervisor.run(), name="embedded-postgres-supervisor")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _database_reasons(app: web.Application) -> tuple[bool, list[str]]:
    """Whether the database answers, and why the service is degraded (none: it is not)."""
    store, target = app[runtime.STORE], app[runtime.DATABASE]
    reasons: list[str] = []
    supervisor = app.get(SUPERVISOR)
    if supervisor is not None and supervisor.reason:
        reasons.append(supervisor.reason)
    try:
        reachable = await store.pool.fetchval("SELECT 1") == 1
    except STORE_ERRORS as exc:
        reachable = False
        if not reasons:
            text = f"{type(exc).__name__}: {exc}"
            if target.embedded and isinstance(exc, FileNotFoundError):
                text = "the embedded PostgreSQL is not running (its socket is gone)"
            reasons.append(health.reason(health.classify(exc) or "unreachable", text))
    if target.server is not None:
        try:
            free = (await asyncio.to_thread(shutil.disk_usage, target.server.pgdata)).free
        except OSError:
            free = None
        if free is not None and free < DISK_FULL_BYTES:
            reasons.append(f"disk full: {health.NO_SPACE} ({free} bytes free in "
                           f"{target.server.pgdata})")
    if (failing := store.health.failing) and failing not in reasons:
        reasons.append(f"writes fail: {failing}")
    return reachable, reasons


async def healthz(request: web.Request) -> web.Response:
    """Liveness and readiness: database reachable and writable, last collection per source;
    degraded with the reasons otherwise."""
    store = request.app[runtime.STORE]
    reachable, reasons = await _database_reasons(request.app)
    ok = reachable and not reasons
    try:
        runs = await store.last_runs() if reachable else []
    except STORE_ERRORS:
        runs = []
    # A postal tariff older than the configured age is said, without degrading the service:
    # it is still the post's latest published price sendcost holds.
    config = request.app[runtime.CONFIG]
    stale = await asyncio.to_thread(stale_tariffs, config, dt.datetime.now(dt.UTC).date())
    body = Health(
        status="ok" if ok else "degraded",
        reasons=reasons,
        stale_tariffs=[StaleTariff(**t) for t in stale],
        database=HealthDatabase(reachable=reachable,
                                embedded=request.app[runtime.DATABASE].embedded),
        collecting=request.app.get(runtime.COLLECTING, True),
        collections=[
            Collection(source=r["source"], run_id=r["id"], status=r["status"],
                       started_at=r["started_at"].isoformat(),
                       finished_at=r["finished_at"].isoformat() if r["finished_at"] else None,
                       quotes_stored=r["quotes_stored"],
                       quotes_quarantined=r["quotes_quarantined"])
            for r in runs
        ],
    )
    headers = {"Cache-Control": "no-store"}
    if not ok:
        headers["Retry-After"] = str(RETRY_AFTER_UNAVAILABLE)
    return web.Response(body=encode(body), status=200 if ok else 503,
                        content_type="application/json", headers=headers)


def create_app(config: Config, target: DatabaseTarget, *,
               collecting: bool = True) -> web.Application:
    """The aiohttp application of one running sendcost. Does no I/O.

    ``target`` is the database the collectors write to (a replica with only a read URL:
    that one). ``collecting=False``: a replica (``serve --no-collect``) that only serves,
    reading ``[database] read_url`` when set; it never writes."""
    app = web.Application(middlewares=middleware.MIDDLEWARES, client_max_size=64 * 1024)
    app[runtime.CONFIG] = config
    app[runtime.DATABASE] = target
    app[runtime.COLLECTING] = collecting
    # New quotes are announced where they are written (corridors/notify.py).
    app[runtime.NOTIFY_URL] = target.url
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_supervisor_ctx)
    app.cleanup_ctx.append(_http_ctx)
    app.cleanup_ctx.append(_background_ctx)
    app.cleanup_ctx.append(_scheduler_ctx)
    setup_routes(app)
    setup_postal_summary_routes(app)
    setup_alerts(app)
    app.router.add_get("/healthz", healthz, name="healthz")
    return app
