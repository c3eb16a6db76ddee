"""The collectors' jobs on the service's APScheduler 3.11 ``AsyncIOScheduler``.

``add_jobs(app, scheduler)`` is called by the wiring on every start (before the scheduler
starts): one job per enabled source, id ``collect:<name>``, declared again with
``replace_existing=True`` so a changed config.toml takes effect on restart. ``schedule`` is
``interval:SECONDS`` (first run within ``jitter_seconds`` of start, so a fresh service has
data at once) or a 5-field crontab in UTC; both get ``jitter_seconds`` of jitter. After a
start, quote sources' first runs wait for the reference-rate sources' (``RatesFirst``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
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
    # from_crontab reads the day of week as cron does (0 = Sunday); jitter is set after.
    cron = CronTrigger.from_crontab(source.schedule, timezone=dt.UTC)
    cron.jitter = jitter
    return cron


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
    whatever its outcome.
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


#: The longest a quote source's first run waits for the rate sources' first runs.
RATES_FIRST_WAIT_SECONDS = 120.0
RATES_FIRST = web.AppKey("collector_rates_first", RatesFirst)


async def collect_job(app: web.Application, name: str) -> None:
    """One scheduled run; a failure is recorded in the run and logged, never raised."""
    gate = app.get(RATES_FIRST)
    is_rates = app[runtime.CONFIG].source(name).kind in RATE_KINDS
    try:
        if gate is not None and not is_rates:
            await gate.wait(name)
        await collector_of(app).run(name)
    except Exception:
        log.exception("scheduled collection of %s failed", name)
    finally:
        if gate is not None and is_rates:
            gate.ran(name)


def add_jobs(app: web.Application, scheduler: AsyncIOScheduler) -> None:
    from collector.sources import check_sources

    config = app[runtime.CONFIG]
    check_sources(config)
    now = dt.datetime.now(dt.UTC)
    # Only rate sources on an interval run at start; a crontab one is not waited for.
    app[RATES_FIRST] = RatesFirst({s.name for s in config.sources
                                   if s.enabled and s.kind in RATE_KINDS
                                   and s.schedule.startswith("interval:")})
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
