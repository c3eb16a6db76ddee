"""The collectors' jobs on the service's APScheduler 3.11 ``AsyncIOScheduler``.

``add_jobs(app, scheduler)`` is called by the wiring on every start (before the scheduler
starts): one job per enabled source, id ``collect:<name>``, declared again with
``replace_existing=True`` so a changed config.toml takes effect on restart. ``schedule`` is
``interval:SECONDS`` (first run within ``jitter_seconds`` of start, so a fresh service has
data at once) or a 5-field crontab in UTC; both get ``jitter_seconds`` of jitter. A crontab
source also gets a one-off ``catch-up:collect:<name>`` job at start: it collects at once when
the source never has, or when its last due time passed while the service was down. After a
start, quote sources' first runs wait for the reference-rate sources' (``RatesFirst``).
What an interruption left unstored (``Collector.recover_if_needed``) is recovered by the
``recover-runs`` job (``add_recovery_job``): at start, then every
``RECOVER_EVERY_SECONDS`` when a run lost its database; each collection job also recovers
first and after its run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from dataclasses import dataclass

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from collector.run import RATE_KINDS, Collector
from corridors import runtime
from corridors.config import SourceConfig

log = logging.getLogger(__name__)

COLLECTOR = web.AppKey("collector", Collector)


def trigger(source: SourceConfig) -> BaseTrigger:
    jitter = source.jitter_seconds or None
    if source.schedule.startswith("interval:"):
        return IntervalTrigger(seconds=float(source.schedule.split(":", 1)[1]), jitter=jitter,
                               timezone=dt.UTC)
    cron = _crontab(source)
    cron.jitter = jitter
    return cron


def _crontab(source: SourceConfig) -> CronTrigger:
    # from_crontab reads the day of week as cron does (0 = Sunday); no jitter.
    return CronTrigger.from_crontab(source.schedule, timezone=dt.UTC)


def collector_of(app: web.Application) -> Collector:
    """The app's collector, made on first use (the store and session exist by then)."""
    if COLLECTOR not in app:
        app[COLLECTOR] = Collector(app[runtime.CONFIG], app[runtime.STORE], app[runtime.HTTP])
    return app[COLLECTOR]


class RatesFirst:
    """On start, the reference-rate sources' first runs come before any quote source's.

    A quote is measured against the reference rate current when it is collected; one
    collected before the service has any rate is kept but marked ``reference_stale`` and
    left out of the averages until the source's next run. So a quote source's first run
    waits (``RATES_FIRST_WAIT_SECONDS`` at most) until each rate source has run once,
    whatever its outcome (or, for a crontab one, its catch-up found it need not).
    """

    def __init__(self, rate_sources: set[str]) -> None:
        self.pending = set(rate_sources)
        self.ready = asyncio.Event()
        if not self.pending:
            self.ready.set()

    def ran(self, name: str) -> None:
        self.pending.discard(name)
        if not self.pending:
            self.ready.set()

    async def wait(self, name: str) -> None:
        if self.ready.is_set():
            return
        try:
            async with asyncio.timeout(RATES_FIRST_WAIT_SECONDS):
                await self.ready.wait()
        except TimeoutError:
            log.warning("%s: collecting without waiting any longer for the first run of %s",
                        name, ", ".join(sorted(self.pending)))


#: A crontab source's catch-up at start comes within this many seconds (or its jitter).
CATCH_UP_SPREAD_SECONDS = 30.0
#: The longest a quote source's first run waits for the rate sources' first runs.
RATES_FIRST_WAIT_SECONDS = 120.0
RATES_FIRST = web.AppKey("collector_rates_first", RatesFirst)


@dataclass(frozen=True)
class CollectionJobs:
    """The scheduler's jobs that collect one source: its own (``job_id``), and the catch-up
    run a crontab source gets at start (``catch_up_id``; None for an interval source)."""
    source: str
    job_id: str
    catch_up_id: str | None = None


#: Source name → its ``CollectionJobs``, set by ``add_jobs``: who needs a source's jobs
#: (the admin endpoint) looks them up here rather than parsing job ids.
COLLECTION_JOBS: web.AppKey[dict[str, CollectionJobs]] = web.AppKey("collector_collection_jobs")


async def collect_job(app: web.Application, name: str) -> None:
    """One scheduled run; a failure is recorded in the run and logged, never raised."""
    gate = app.get(RATES_FIRST)
    is_rates = app[runtime.CONFIG].source(name).kind in RATE_KINDS
    try:
        collector = collector_of(app)
        # Whatever an interruption left unstored (a previous process killed, the database
        # away during a run) is stored first, and again after a run that lost its database.
        await collector.recover_if_needed()
        if gate is not None and not is_rates:
            await gate.wait(name)
        await collector.run(name)
        await collector.recover_if_needed()
    except asyncio.CancelledError:
        # The service is stopping (the scheduler cancels its jobs): the run has recorded
        # its end. Ending here rather than raising keeps APScheduler from logging a
        # traceback per job; the wiring says once how many were stopped.
        log.debug("%s: scheduled collection stopped (the service is stopping)", name)
        return
    except Exception:
        log.exception("scheduled collection of %s failed", name)
    finally:
        if gate is not None and is_rates:
            gate.ran(name)


async def catch_up_job(app: web.Application, name: str) -> None:
    """Once after a start, for a crontab source: collect now if it has never collected or
    its last due time passed while the service was down; otherwise wait for the crontab."""
    config = app[runtime.CONFIG]
    source = config.source(name)
    gate = app.get(RATES_FIRST)
    try:
        now = dt.datetime.now(dt.UTC)
        last = await app[runtime.STORE].last_collected(name)
        due = _crontab(source).get_next_fire_time(None, last) if last is not None else None
        if last is not None and due is not None and due > now:
            log.info("%s: collected %s; next at %s (%s)", name, last.isoformat(timespec="seconds"),
                     due.isoformat(timespec="minutes"), source.schedule)
            return
        log.info("%s: %s; collecting now", name, "never collected" if last is None else
                 f"the run due {due:%Y-%m-%d %H:%M} UTC was missed while the service was down")
        await collect_job(app, name)
    except asyncio.CancelledError:
        log.debug("%s: catch-up stopped (the service is stopping)", name)
        return
    except Exception:
        log.exception("catching up %s failed", name)
    finally:
        if gate is not None and source.kind in RATE_KINDS:
            gate.ran(name)


def add_jobs(app: web.Application, scheduler: AsyncIOScheduler) -> None:
    from collector.sources import check_sources

    config = app[runtime.CONFIG]
    check_sources(config)
    now = dt.datetime.now(dt.UTC)
    app[RATES_FIRST] = RatesFirst({s.name for s in config.sources
                                   if s.enabled and s.kind in RATE_KINDS})
    jobs = app[COLLECTION_JOBS] = {}
    for source in config.sources:
        job_id = f"collect:{source.name}"
        if not source.enabled:
            if scheduler.get_job(job_id):
                scheduler.remove_job(job_id)
            continue
        first = None
        catch_up_id = f"catch-up:{job_id}"
        spread = max(1, source.jitter_seconds)
        if source.schedule.startswith("interval:"):
            first = now + dt.timedelta(seconds=random.uniform(0, spread))
            if scheduler.get_job(catch_up_id):
                scheduler.remove_job(catch_up_id)
        else:
            # Within half a minute at most: a crontab's jitter spreads its regular runs.
            soon = now + dt.timedelta(seconds=random.uniform(
                0, min(CATCH_UP_SPREAD_SECONDS, spread)))
            scheduler.add_job(catch_up_job, DateTrigger(soon), args=(app, source.name),
                              id=catch_up_id, name=f"catch up {source.name} ({source.kind})",
                              replace_existing=True, misfire_grace_time=None)
        scheduler.add_job(collect_job, trigger(source), args=(app, source.name), id=job_id,
                          name=f"collect {source.name} ({source.kind})",
                          replace_existing=True, max_instances=1, coalesce=True,
                          misfire_grace_time=max(60, source.jitter_seconds * 2),
                          **({"next_run_time": first} if first else {}))
        jobs[source.name] = CollectionJobs(source.name, job_id,
                                           None if first else catch_up_id)
        log.debug("scheduled %s: %s", job_id, source.schedule)


#: How often the service looks whether something is left to recover (a no-op unless a run
#: lost its database, or the database was away at the last try).
RECOVER_EVERY_SECONDS = 15.0


async def recover_job(app: web.Application) -> None:
    """Replay the spool and re-parse the runs whose quotes were not all stored."""
    try:
        await collector_of(app).recover_if_needed()
    except asyncio.CancelledError:
        # Stopping: what is left is recovered at the next start (a re-parse replaces).
        log.debug("recovery of interrupted runs stopped")
    except Exception:
        log.exception("recovering interrupted collection runs failed")


def add_recovery_job(app: web.Application, scheduler: AsyncIOScheduler) -> None:
    """The ``recover-runs`` job: at once on start, then every ``RECOVER_EVERY_SECONDS``.
    Called while the app starts (its store and HTTP session exist): the collector is made
    now, as the app's state may not change once it runs."""
    collector_of(app)
    scheduler.add_job(recover_job, IntervalTrigger(seconds=RECOVER_EVERY_SECONDS),
                      args=(app,), id="recover-runs", name="recover interrupted runs",
                      replace_existing=True, max_instances=1, coalesce=True,
                      next_run_time=dt.datetime.now(dt.UTC))
