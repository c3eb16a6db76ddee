"""The request pipeline of the public API: observe → errors → limits → handler.

``observe`` counts and times every request for ``/metrics`` and opens GET to every origin
(CORS). ``errors`` is the one place where a ``Problem``, an aiohttp ``HTTPException`` or an
unexpected exception becomes an RFC 9457 problem+json response. ``limits`` refuses oversized
requests and applies the per-client rate limit (``api.rate_limit_per_minute``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from publish.problems import Problem, problem_response

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Longest query string accepted (characters); longer is 414.
MAX_QUERY = 2048
#: Largest request body accepted (bytes); larger is 413.
MAX_BODY = 16 * 1024
#: Paths outside the rate limit: probes and scrapers.
UNLIMITED = frozenset({"/healthz", "/metrics"})


class Telemetry:
    """The Prometheus metrics of one app, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("sendcost_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "sendcost_http_request_duration_seconds", "Time to answer an HTTP request",
            ["route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        self.rate_limited = Counter("sendcost_http_rate_limited", "Requests refused with 429",
                                    registry=self.registry)
        self.run_started = Gauge("sendcost_collection_last_run_started_timestamp_seconds",
                                 "Start of the last collection run per source",
                                 ["source", "status"], registry=self.registry)
        self.run_stored = Gauge("sendcost_collection_last_run_quotes_stored",
                                "Quotes stored by the last collection run per source",
                                ["source"], registry=self.registry)
        self.run_quarantined = Gauge("sendcost_collection_last_run_quotes_quarantined",
                                     "Quotes quarantined by the last collection run per source",
                                     ["source"], registry=self.registry)
        # labels() takes a lock and builds a key per call: keep each child once found.
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.snapshot_version = Gauge("sendcost_snapshot_quote_id",
                                      "Highest quote id in the served snapshot",
                                      registry=self.registry)


    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(*key), self.latency.labels(route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


class RateLimiter:
    """Fixed one-minute windows per client address; 0 requests per minute disables it."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._window = 0
        self._counts: dict[str, int] = {}

    def retry_after(self, client: str, now: float) -> int | None:
        """None when the request may go ahead, else the seconds until it may."""
        if self.per_minute <= 0:
            return None
        window = int(now // 60)
        if window != self._window:
            self._window, self._counts = window, {}
        count = self._counts.get(client, 0) + 1
        self._counts[client] = count
        if count <= self.per_minute:
            return None
        return max(1, math.ceil((window + 1) * 60 - now))


TELEMETRY = web.AppKey("publish_telemetry", Telemetry)
LIMITER = web.AppKey("publish_rate_limiter", RateLimiter)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    route = _route(request)
    if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
        # CORS preflight: the API is open for reading, to anyone.
        response: web.StreamResponse = web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "GET, HEAD",
            "Access-Control-Allow-Headers": "Accept, If-None-Match",
            "Access-Control-Max-Age": "86400"})
    else:
        response = await handler(request)
    if request.method in ("GET", "HEAD", "OPTIONS"):
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Expose-Headers"] = "ETag, Link, Retry-After"
    request.app[TELEMETRY].observe(request.method, route, response.status,
                                   time.perf_counter() - started)
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as p:
        return problem_response(p.status, p.detail, instance=request.path_qs[:300],
                                parameter=p.parameter, headers=p.headers, **p.extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {}
        if exc.status == 405:
            allowed = getattr(exc, "allowed_methods", set())
            headers["Allow"] = ", ".join(sorted(allowed))
            detail = (f"{request.method} is not allowed on {request.path}; allowed: "
                      f"{headers['Allow']}")
        elif exc.status == 404:
            detail = f"no resource at {request.path[:200]}; see /v1/openapi.json"
        elif exc.status == 413:
            detail = f"the request body is larger than {MAX_BODY} bytes"
        else:
            detail = exc.text or exc.reason
        return problem_response(exc.status, detail, instance=request.path_qs[:300],
                                headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(500, "an unexpected error occurred; it has been logged",
                                instance=request.path_qs[:300])


@web.middleware
async def limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    if len(request.query_string) > MAX_QUERY:
        raise Problem(414, f"the query string is longer than {MAX_QUERY} characters")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Problem(413, f"the request body is larger than {MAX_BODY} bytes")
    if request.app[LIMITER].per_minute > 0 and request.path not in UNLIMITED:
        wait = request.app[LIMITER].retry_after(request.remote or "unknown", time.time())
        if wait is not None:
            request.app[TELEMETRY].rate_limited.inc()
            raise Problem(429, f"more than {request.app[LIMITER].per_minute} requests a minute "
                               f"from this client; retry in {wait} s",
                          headers={"Retry-After": str(wait)})
    return await handler(request)


def install(app: web.Application, *, rate_limit_per_minute: int) -> None:
    app[TELEMETRY] = Telemetry()
    app[LIMITER] = RateLimiter(rate_limit_per_minute)
    app.middlewares.extend([observe, errors, limits])
