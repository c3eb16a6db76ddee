"""The service's own documents: ``/v1/openapi.json`` (the contract) and ``/metrics``
(Prometheus)."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from corridors import runtime
from publish import middleware, openapi
from publish.api.conventions import JSON
from publish.contract import encode
from publish.contract_ops import OpenAPI
from publish.data import DATA, STORE_ERRORS, StoreUnavailable
from publish.responses import send

log = logging.getLogger(__name__)


async def openapi_json(request: web.Request) -> web.StreamResponse:
    return send(request, encode(OpenAPI(**openapi.document())), JSON)


async def prometheus(request: web.Request) -> web.StreamResponse:
    """Request metrics always; the collection gauges when the store answers. A scrape must
    not fail with the database: the request metrics are what shows the outage."""
    telemetry = request.app[middleware.TELEMETRY]
    # Only the latest run of each source: a source whose run went from "running" to
    # "failed" must not keep its "running" series (labels are set, never unset, otherwise).
    for gauge in (telemetry.run_started, telemetry.run_stored, telemetry.run_quarantined):
        gauge.clear()
    try:
        snap = await request.app[DATA].snapshot()
        telemetry.snapshot_version.set(snap.version)
        runs = await request.app[runtime.STORE].last_runs()
    except StoreUnavailable:  # no snapshot yet, and no store: logged by the data holder
        runs = []
    except STORE_ERRORS as exc:
        # Scraped every few seconds: the outage is logged when it starts, and when it ends.
        if not telemetry.store_unreachable:
            telemetry.store_unreachable = True
            log.warning("metrics: the store is unreachable, collection gauges left out until "
                        "it answers again: %s", str(exc).strip() or type(exc).__name__)
        runs = []
    else:
        if telemetry.store_unreachable:
            telemetry.store_unreachable = False
            log.info("metrics: the store answers again, collection gauges are back")
    for run in runs:
        telemetry.run_started.labels(run["source"], run["status"]).set(
            run["started_at"].timestamp())
        telemetry.run_stored.labels(run["source"]).set(run["quotes_stored"])
        telemetry.run_quarantined.labels(run["source"]).set(run["quotes_quarantined"])
    return web.Response(body=generate_latest(telemetry.registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST,
                                 "Cache-Control": "no-store"})
