"""The bulletin's schedule: on the first day of each month, publish last month's bulletin.

``add_jobs(app, scheduler)`` is called by the wiring's scheduler context. The job publishes
into ``<data_dir>/bulletins/<period>/``; when last month closed a quarter, it also publishes
that quarter's bulletin (the World Bank's RPW rounds, once imported, are quarterly). A period
without data is logged and skipped: nothing is written for it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from corridors import runtime
from corridors.errors import NoData
from corridors.periods import Period

log = logging.getLogger(__name__)

JOB_ID = "bulletin-monthly"


def periods_to_publish(today: dt.date) -> list[str]:
    """Last month, and the quarter it closed if it was the quarter's last month."""
    month = Period(today.year, 0, today.month).previous()
    out = [str(month)]
    if month.month % 3 == 0:
        out.append(str(month.quarter_of))
    return out


async def publish_last_month(app: Any, *, today: dt.date | None = None) -> list[str]:
    """The job: publish the bulletins due on ``today`` (default: the current UTC date).

    Returns the periods published.
    """
    from publish.bulletin_files import publish_bulletin

    day = today or dt.datetime.now(dt.UTC).date()
    published = []
    for period in periods_to_publish(day):
        try:
            await publish_bulletin(app, period)
        except NoData as exc:
            log.info("no bulletin for %s: %s", period, exc)
            continue
        published.append(period)
    return published


def add_jobs(app: Any, scheduler: Any) -> None:
    config = app[runtime.CONFIG].bulletin
    if not config.enabled:
        log.info("bulletin publishing is disabled ([bulletin] enabled = false)")
        return
    scheduler.add_job(publish_last_month, CronTrigger(day=1, hour=config.publish_hour_utc,
                                                      minute=0, timezone="UTC"),
                      args=[app], id=JOB_ID, replace_existing=True,
                      misfire_grace_time=6 * 3600, coalesce=True)
