"""The collectors' jobs on the service's APScheduler 3.11 ``AsyncIOScheduler``.

``add_jobs(app, scheduler)`` is called by the wiring on every start (before the scheduler
starts): one job per enabled source, id ``collect:<name>``, declared again with
``replace_existing=True`` so a changed config.toml takes effect on restart. ``schedule`` is
``interval:SECONDS`` (first run within ``jitter_seconds`` of start, so a fresh service has
data at once) or a 5-field crontab in UTC; both get ``jitter_seconds`` of jitter.
"""

from __future__ import annotations

import datetime as dt
import logging
import random

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from collector.run import Collector
from corridors import runtime
from corridors.config import SourceConfig

log = logging.getLogger(__name__)

COLLECTOR = web.AppKey("collector", Collector)


def trigger(source: SourceConfig) -> BaseTrigger:
    jitter = source.jitter_seconds or None
    if source.schedule.startswith("interval:"):
        return IntervalTrigger(seconds=float(source.schedule.split(":", 1)[1]), jitter=jitter,
                               timezone=dt.UTC)
    # from_crontab reads the day of week as cron does (0 = Sunday); jitter is set after.
    cron = CronTrigger.from_crontab(source.schedule, timezone=dt.UTC)
    cron.jitter = jitter
    return cron


def collector_of(app: web.Application) -> Collector:
    """The app's collector, made on first use (the store and session exist by then)."""
    if COLLECTOR not in app:
        app[COLLECTOR] = Collector(app[runtime.CONFIG], app[runtime.STORE], app[runtime.HTTP])
    return app[COLLECTOR]


async def collect_job(app: web.Application, name: str) -> None:
    """One scheduled run; a failure is recorded in the run and logged, never raised."""
    try:
        await collector_of(app).run(name)
    except Exception:
        log.exception("scheduled collection of %s failed", name)


def add_jobs(app: web.Application, scheduler: AsyncIOScheduler) -> None:
    from collector.sources import check_sources

    config = app[runtime.CONFIG]
    check_sources(config)
    now = dt.datetime.now(dt.UTC)
    for source in config.sources:
        job_id = f"collect:{source.name}"
        if not source.enabled:
            if scheduler.get_job(job_id):
                scheduler.remove_job(job_id)
            continue
        first = None
        if source.schedule.startswith("interval:"):
            first = now + dt.timedelta(seconds=random.uniform(0, max(1, source.jitter_seconds)))
        scheduler.add_job(collect_job, trigger(source), args=(app, source.name), id=job_id,
                          name=f"collect {source.name} ({source.kind})",
                          replace_existing=True, max_instances=1, coalesce=True,
                          misfire_grace_time=max(60, source.jitter_seconds * 2),
                          **({"next_run_time": first} if first else {}))
        log.debug("scheduled %s: %s", job_id, source.schedule)
