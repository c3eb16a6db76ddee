"""``/v1/admin/…``: actions behind the admin token (trigger a collection, publish a
bulletin)."""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any

from aiohttp import web

from corridors import runtime
from corridors.errors import NoData
from publish.bulletin_files import publish_bulletin
from publish.params import Params
from publish.problems import Problem, bad_parameter, not_found


def authorise(request: web.Request) -> None:
    token = request.app[runtime.CONFIG].admin_token
    if token is None:
        raise not_found("admin actions are off: no SENDCOST_ADMIN_TOKEN is set")
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                             token.encode()):
        raise Problem(401, "admin actions need the header Authorization: Bearer <token>",
                      headers={"WWW-Authenticate": 'Bearer realm="sendcost-admin"'})


ADMIN_COLLECT_PARAMS = frozenset({"source"})
ADMIN_BULLETIN_PARAMS = frozenset({"period"})


def _running(scheduler: Any, job: Any) -> bool:
    """Whether a run of ``job`` is under way, as its own job or as the catch-up run a
    crontab source gets after a start (``collector.schedule``): triggered now, the scheduler
    would skip it (``max_instances``), or collect the same source twice at once.

    APScheduler 3 has no public count of a job's running instances; its executor's count is
    the one ``max_instances`` is checked against, so that is the one read here."""
    for job_id in (job.id, f"catch-up:{job.id}"):
        try:
            executor = scheduler._lookup_executor(job.executor)
            if executor._instances.get(job_id, 0) > 0:
                return True
        except (AttributeError, KeyError):  # not an APScheduler 3 executor: nothing known
            return False
    return False


async def admin_collect(request: web.Request) -> web.StreamResponse:
    authorise(request)
    p = Params(request.query, ADMIN_COLLECT_PARAMS)
    source = p.raw("source")
    scheduler = request.app.get(runtime.SCHEDULER)
    jobs = [j for j in (scheduler.get_jobs() if scheduler else [])
            if j.id.startswith("collect") and (source is None or source in j.id.split(":"))]
    if not jobs:
        raise not_found("no collection job is scheduled" +
                        (f" for source {source!r}" if source else ""))
    running = sorted(j.id for j in jobs if _running(scheduler, j))
    idle = [j for j in jobs if j.id not in running]
    if not idle:
        raise Problem(409, f"{', '.join(running)}: already running; not triggered again (a "
                           "job runs one at a time): ask again when the run has ended",
                      jobs=running)
    now = dt.datetime.now(dt.UTC)
    for job in idle:
        job.modify(next_run_time=now)
    return web.json_response({"status": "triggered", "jobs": sorted(j.id for j in idle),
                              "already_running": running, "at": now.isoformat()},
                             status=202, headers={"Cache-Control": "no-store"})


async def admin_bulletin(request: web.Request) -> web.StreamResponse:
    authorise(request)
    p = Params(request.query, ADMIN_BULLETIN_PARAMS)
    period = p.period()
    if period is None:
        raise bad_parameter("period", "period is required: the quarter (2014Q2) or month "
                                      "(2026-11) whose bulletin to publish")
    try:
        result = await publish_bulletin(request.app, period)
    except NoData as exc:
        raise not_found(str(exc)) from None
    # Where GET /v1/bulletins serves it, and its folder relative to the data folder: the
    # server's own paths are none of the client's business.
    published = result["period"]
    return web.json_response({"status": "published", "period": published,
                              "url": f"/v1/bulletins/{published}/",
                              "folder": f"bulletins/{published}"},
                             status=202, headers={"Cache-Control": "no-store"})
