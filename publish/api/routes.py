"""The routes of the public API and page: which handler answers which path."""

from __future__ import annotations

from aiohttp import web

from corridors import runtime
from publish import middleware, page
from publish.api.admin import admin_bulletin, admin_collect
from publish.api.archive import archived_body, archived_response
from publish.api.compare import compare
from publish.api.conventions import RECEIVE_UNITS, Handler
from publish.api.corridors import corridor_detail, corridor_history, corridors_list
from publish.api.indicators import indicators
from publish.api.kpis import kpis
from publish.api.operations import openapi_json, prometheus
from publish.api.postal import postal_benchmark
from publish.api.static import STATIC_FILES, static_file
from publish.bulletin_routes import setup_bulletin_routes
from publish.data import data_ctx


def _collection(app: web.Application, path: str, handler: Handler, name: str) -> None:
    """A collection endpoint and its CSV twin."""
    app.router.add_get(path, handler, name=name)
    app.router.add_get(path + ".csv", handler, name=name + "_csv")


def setup_routes(app: web.Application) -> None:
    """The middlewares' state, the routes and the snapshot of the public API and page, on an
    app made with ``middlewares=publish.middleware.MIDDLEWARES`` (called by wiring)."""
    middleware.install(app, rate_limit_per_minute=app[runtime.CONFIG].api.rate_limit_per_minute)
    app[STATIC_FILES] = {}
    app[RECEIVE_UNITS] = {}
    app.cleanup_ctx.append(data_ctx)
    _collection(app, "/v1/compare", compare, "compare")
    _collection(app, "/v1/corridors", corridors_list, "corridors")
    # The twin first: "/v1/corridors/{pair}" would take "USA-MEX.csv" for a corridor.
    app.router.add_get("/v1/corridors/{pair}.csv", corridor_detail, name="corridor_csv")
    app.router.add_get("/v1/corridors/{pair}", corridor_detail, name="corridor")
    _collection(app, "/v1/corridors/{pair}/history", corridor_history, "corridor_history")
    _collection(app, "/v1/indicators", indicators, "indicators")
    _collection(app, "/v1/kpis", kpis, "kpis")
    _collection(app, "/v1/postal/benchmark", postal_benchmark, "postal_benchmark")
    app.router.add_get("/v1/archive/{id}", archived_response, name="archive")
    app.router.add_get("/v1/archive/{id}/body", archived_body, name="archive_body")
    app.router.add_get("/v1/openapi.json", openapi_json, name="openapi")
    app.router.add_get("/metrics", prometheus, name="metrics")
    app.router.add_post("/v1/admin/collect", admin_collect, name="admin_collect")
    app.router.add_post("/v1/admin/bulletin", admin_bulletin, name="admin_bulletin")
    app.router.add_get("/", page.home, name="page")
    app.router.add_get("/static/{name}", static_file, name="static")
    setup_bulletin_routes(app)
