"""``/v1/admin/…``: actions behind the admin token (trigger a collection, publish a
bulletin)."""

from __future__ import annotations

import datetime as dt
import hmac

from aiohttp import web

from collector.schedule import COLLECTION_JOBS
from corridors import runtime
from corridors.errors import NoData
from publish.bulletin_files import publish_bulletin
from publish.contract import Model, encode
from publish.contract_ops import AdminBulletin, AdminCollect
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


def admin_answer(model: Model, *, status: int = 200,
                 headers: dict[str, str] | None = None) -> web.Response:
    """An admin action's JSON answer: never cached (``no-store``)."""
    return web.Response(body=encode(model), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store", **(headers or {})})


def accepted(model: Model) -> web.Response:
    return admin_answer(model, status=202)


ADMIN_COLLECT_PARAMS = frozenset({"source"})
ADMIN_BULLETIN_PARAMS = frozenset({"period"})


async def admin_collect(request: web.Request) -> web.StreamResponse:
    """Run a source's collection now (all sources' without ``source``); a run under way (its
    own, or the catch-up run of a crontab source after a start) is not triggered again: the
    scheduler would skip it (``max_instances``) or collect the same source twice at once."""
    authorise(request)
    p = Params(request.query, ADMIN_COLLECT_PARAMS)
    source = p.raw("source")
    if not request.app.get(runtime.COLLECTING, True):
        raise not_found("this process only serves (serve --no-collect): ask a collecting "
                        "sendcost serve to collect")
    scheduler = request.app.get(runtime.SCHEDULER)
    jobs = [j for j in request.app.get(COLLECTION_JOBS, {}).values()
            if (source is None or j.source == source)
            and scheduler is not None and scheduler.get_job(j.job_id) is not None]
    if not jobs or scheduler is None:
        raise not_found("no collection job is scheduled" +
                        (f" for source {source!r}" if source else ""))
    under_way = request.app[runtime.JOBS_UNDER_WAY]
    running = sorted(j.job_id for j in jobs if under_way.running(j.job_id) or (
        j.catch_up_id is not None and under_way.running(j.catch_up_id)))
    idle = sorted(j.job_id for j in jobs if j.job_id not in running)
    if not idle:
        raise Problem(409, f"{', '.join(running)}: already running; not triggered again (a "
                           "job runs one at a time): ask again when the run has ended",
                      jobs=running)
    now = dt.datetime.now(dt.UTC)
    for job_id in idle:
        scheduler.modify_job(job_id, next_run_time=now)
    return accepted(AdminCollect(status="triggered", jobs=idle, already_running=running,
                                 at=now.isoformat()))


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
    return accepted(AdminBulletin(status="published", period=published,
                                  url=f"/v1/bulletins/{published}/",
                                  folder=f"bulletins/{published}"))
