"""The request pipeline of the public API: one guard around every handler.

For each request it answers CORS preflights, refuses oversized requests, applies the
per-client rate limit (``api.rate_limit_per_minute``), opens GET to every origin (CORS), sends
the headers of a hardened public site (``SECURITY_HEADERS``: a strict Content-Security-Policy,
nosniff, no framing, no referrer) on every answer, errors and static files included, and
counts and times the request for ``/metrics``. ``error_response`` is the one place where a
``Problem``, an aiohttp ``HTTPException`` or an unexpected exception becomes an RFC 9457
problem+json response.

The guard wraps each route's handler when the route is registered (``get``, ``post``)
instead of being an aiohttp middleware: an app with any middleware pays, on every request,
for aiohttp's own middleware (``_fix_request_current_app``) and a cached-chain lookup as
well as ours, and on ``/v1/compare`` answered from memory that was a fifth of the server's
time (bench/api.py: 19.7k requests/s with the middleware, 24.4k without). What a middleware
also saw, requests that match no route (404, 405, preflights), reach ``Pipeline.unmatched``
through one catch-all route that ``finish`` registers last. So the security headers are set in
the guard and in ``unmatched``, the two places every answer of the app passes, rather than by
an ``@web.middleware``: the same coverage without the measured cost.

Requests aiohttp's parser refuses (a malformed request line, a NUL in a header) never reach
the pipeline: aiohttp answers them 400 itself and logs the parser's exception at ERROR with
its traceback, which any client could fill the logs with. ``MalformedRequestFilter`` (on
aiohttp's server logger, from ``install``) turns those records into one DEBUG line; every
other record of that logger, a real server error among them, is left as it is.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from itertools import accumulate
from typing import TypedDict

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from corridors.store import UNREACHABLE_ERRORS
from publish.problems import RETRY_AFTER_UNAVAILABLE, Problem, problem_response

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Longest query string accepted (characters); longer is 414.
MAX_QUERY = 2048
#: Longest request line aiohttp's parser reads (bytes; its default is 8190). A longer line
#: is refused by the parser with a plain-text 400 before any middleware runs, and aiohttp
#: offers no hook to render that as problem+json; so the limit sits far above MAX_QUERY and
#: an oversized query string reaches ``api_pipeline`` and gets its 414 problem+json.
MAX_REQUEST_LINE = 64 * 1024


class HandlerArgs(TypedDict):
    """What ``HANDLER_ARGS`` holds (typed, so ``**HANDLER_ARGS`` checks against run_app)."""
    max_line_size: int


#: Keyword arguments for aiohttp's request handler: ``web.run_app(app, **HANDLER_ARGS)``.
HANDLER_ARGS: HandlerArgs = {"max_line_size": MAX_REQUEST_LINE}
#: Largest request body accepted (bytes); larger is 413.
MAX_BODY = 16 * 1024
#: Paths outside the rate limit: probes and scrapers.
UNLIMITED = frozenset({"/healthz", "/metrics"})
#: Upper bounds (seconds) of the request latency histogram.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: The API is open for reading, to anyone.
CORS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CORS = {"Access-Control-Allow-Origin": "*",
        "Access-Control-Expose-Headers": "ETag, Link, Retry-After, Sendcost-Period, "
                                         "Sendcost-Methodology-Version, Sendcost-Sources, "
                                         "Sendcost-Licence"}
#: The Content-Security-Policy of every answer. The page runs no script and loads only its
#: own stylesheet (``/static/style.css``); its one form submits to itself; a bulletin's
#: charts are its own images. JSON, CSV and problem answers load nothing at all, and the same
#: policy keeps them inert if a browser ever renders one.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
#: The headers a hardened public site sends, on every answer of the app. A handler may set
#: its own Content-Security-Policy (a bulletin's HTML has an inline stylesheet); the guard
#: never overrides a header the handler set. No Strict-Transport-Security: the service
#: speaks plain HTTP behind whatever terminates TLS, which is the place to send it.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # frame-ancestors 'none' for browsers that predate CSP level 2.
    "X-Frame-Options": "DENY",
    # A comparison's URL names the reader's corridor and amount: never sent to another site.
    "Referrer-Policy": "no-referrer",
}


def harden(response: web.StreamResponse | web.HTTPException) -> None:
    """Add ``SECURITY_HEADERS`` that the handler did not set itself."""
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        if name not in headers:
            headers[name] = value


PREFLIGHT = {"Access-Control-Allow-Methods": "GET, HEAD",
             "Access-Control-Allow-Headers": "Accept, If-None-Match",
             "Access-Control-Max-Age": "86400"}


class Telemetry:
    """The Prometheus metrics of one app, in a registry of its own.

    Requests are counted in plain dicts and become metric families only when ``/metrics``
    is scraped. Requests and scrapes all run on the event loop's thread, so the locks that
    ``Counter.inc`` and ``Histogram.observe`` take on every call protect nothing here; they
    cost about 1 µs a request, one fiftieth of a cached ``/v1/compare``.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # (method, route, status) → requests answered
        self.requests: dict[tuple[str, str, int], int] = {}
        # route → [sum of seconds, count per latency bucket …, count above the last bucket]
        self.latency: dict[str, list[float]] = {}
        self.registry.register(self)
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
        self.snapshot_version = Gauge("sendcost_snapshot_quote_id",
                                      "Highest quote id in the served snapshot",
                                      registry=self.registry)
        #: The last scrape found the store unreachable: its outage is logged once, when it
        #: starts, and its end once (``publish.api.operations.prometheus``).
        self.store_unreachable = False

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        counts = self.latency.get(route)
        if counts is None:
            counts = self.latency[route] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        counts[0] += seconds
        counts[1 + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def describe(self) -> Iterator[Metric]:
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        """The request metrics as ``prometheus_client`` families (called when scraped)."""
        requests = CounterMetricFamily("sendcost_http_requests", "HTTP requests answered",
                                       labels=["method", "route", "status"])
        for (method, route, status), n in sorted(self.requests.items()):
            requests.add_metric([method, route, str(status)], n)
        yield requests
        latency = HistogramMetricFamily("sendcost_http_request_duration_seconds",
                                        "Time to answer an HTTP request", labels=["route"])
        for route, counts in sorted(self.latency.items()):
            cumulative = list(accumulate(counts[1:]))
            bounds = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]
            latency.add_metric([route], list(zip(bounds, cumulative, strict=True)),
                               counts[0])
        yield latency


class RateLimiter:
    """Fixed one-minute windows per client address; 0 requests per minute disables it.

    O(1) a request: one dict lookup and store; the whole table is dropped when the minute
    turns, so it never holds more than one minute's clients.
    """

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



def error_response(request: web.Request, exc: Exception) -> web.Response:
    """The one place where an exception becomes an RFC 9457 problem+json response."""
    instance = request.path_qs[:300]
    if isinstance(exc, Problem):
        return problem_response(exc.status, exc.detail, instance=instance,
                                parameter=exc.parameter, headers=exc.headers, **exc.extra)
    if isinstance(exc, web.HTTPException):
        headers = {}
        if exc.status == 405:
            allowed: Iterable[str] = getattr(exc, "allowed_methods", set())
            headers["Allow"] = ", ".join(sorted(allowed))
            detail = (f"{request.method} is not allowed on {request.path}; allowed: "
                      f"{headers['Allow']}")
        elif exc.status == 404:
            detail = f"no resource at {request.path[:200]}; see /v1/openapi.json"
        elif exc.status == 413:
            detail = f"the request body is larger than {MAX_BODY} bytes"
        else:
            detail = exc.text or exc.reason
        return problem_response(exc.status, detail, instance=instance, headers=headers)
    if isinstance(exc, UNREACHABLE_ERRORS):
        # A 503 with Retry-After, not a 500. The data endpoints never see these (they answer
        # from the snapshot, publish.data); admin actions that read the store may.
        log.warning("%s %s: the database cannot be reached (%s: %s)", request.method,
                    request.path, type(exc).__name__, str(exc).strip() or "no detail")
        return problem_response(503, "the database cannot be reached; try again later",
                                instance=instance,
                                headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)})
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return problem_response(500, "an unexpected error occurred; it has been logged",
                            instance=instance)


def _check_limits(request: web.Request, limiter: RateLimiter, telemetry: Telemetry) -> None:
    if len(request.query_string) > MAX_QUERY:
        raise Problem(414, f"the query string is longer than {MAX_QUERY} characters")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _body_too_large()
    if limiter.per_minute > 0 and request.path not in UNLIMITED:
        wait = limiter.retry_after(request.remote or "unknown", time.time())
        if wait is not None:
            telemetry.rate_limited.inc()
            raise Problem(429, f"more than {limiter.per_minute} requests a minute from this "
                               f"client; retry in {wait} s", headers={"Retry-After": str(wait)})


def _body_too_large() -> Problem:
    return Problem(413, f"the request body is larger than {MAX_BODY} bytes")


async def _check_unsized_body(request: web.Request) -> None:
    """A body sent without Content-Length (chunked) is read up to MAX_BODY + 1 bytes, never
    more, and refused with 413 if it goes past MAX_BODY (one with Content-Length is refused
    by ``_check_limits`` before it is read). Only for routes that may take a body (POST):
    a GET answered from memory pays nothing for it."""
    if request.content_length is not None or not request.body_exists:
        return
    content, size = request.content, 0
    while size <= MAX_BODY:
        chunk = await content.read(MAX_BODY + 1 - size)
        if not chunk:
            return
        size += len(chunk)
    raise _body_too_large()


class Pipeline:
    """The guard of one app's routes, bound to its telemetry and rate limiter."""

    def __init__(self, telemetry: Telemetry, limiter: RateLimiter) -> None:
        self.telemetry = telemetry
        self.limiter = limiter
        self.catch_all: web.AbstractResource | None = None

    def guard(self, handler: Handler, route: str, *, body: bool = False) -> Handler:
        """``handler`` behind the limits, the one error place, CORS and the metrics;
        ``body``: the method may carry a body (its size is checked however it is framed)."""
        limiter, telemetry = self.limiter, self.telemetry
        observe, perf_counter = telemetry.observe, time.perf_counter

        async def guarded(request: web.Request) -> web.StreamResponse:
            started = perf_counter()
            response: web.StreamResponse
            try:
                _check_limits(request, limiter, telemetry)
                if body:
                    await _check_unsized_body(request)
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:  # a redirect: aiohttp answers it from the exception
                    harden(exc)
                    observe(request.method, route, exc.status, perf_counter() - started)
                    raise
                response = error_response(request, exc)
            except Exception as exc:
                response = error_response(request, exc)
            method = request.method
            if method in CORS_METHODS:
                response.headers.update(CORS)
            harden(response)
            observe(method, route, response.status, perf_counter() - started)
            return response

        guarded.__name__ = getattr(handler, "__name__", "guarded")
        guarded.__doc__ = handler.__doc__
        return guarded

    async def unmatched(self, request: web.Request) -> web.StreamResponse:
        """Every request no route takes: a CORS preflight (204), else 405 or 404."""
        started = time.perf_counter()
        method = request.method
        response: web.StreamResponse
        if method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            # Browsers send preflights on their own: answered before the limits.
            response = web.Response(status=204, headers=PREFLIGHT)
        else:
            try:
                _check_limits(request, self.limiter, self.telemetry)
                allowed: set[str] = set()
                for resource in request.app.router.resources():
                    if resource is not self.catch_all:
                        match, methods = await resource.resolve(request)
                        if match is None:
                            allowed |= methods
                if allowed:
                    raise web.HTTPMethodNotAllowed(method, allowed)
                raise web.HTTPNotFound()
            except Exception as exc:
                response = error_response(request, exc)
        if method in CORS_METHODS:
            response.headers.update(CORS)
        harden(response)
        self.telemetry.observe(method, "unmatched", response.status,
                               time.perf_counter() - started)
        return response


PIPELINE = web.AppKey("publish_pipeline", Pipeline)


class MalformedRequestFilter(logging.Filter):
    """On aiohttp's server logger: a request its parser refused (``HttpProcessingError``:
    a bad request line, method or header, a line too long) becomes one DEBUG line without
    traceback; any other record passes unchanged. Any client can send such requests, and
    aiohttp has already answered them 400: they are not the server's errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "malformed request from %s refused with %s: %s"
        record.args = (remote, exc.code or 400,
                       f"{type(exc).__name__}: {' '.join(str(exc.message).split())}"[:200])
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info = record.exc_text = None
        return True


#: aiohttp's server logger, where it logs the requests it could not parse.
SERVER_LOGGER = "aiohttp.server"


def quiet_malformed_requests() -> None:
    """Install ``MalformedRequestFilter`` on aiohttp's server logger (once)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(MalformedRequestFilter())


def install(app: web.Application, *, rate_limit_per_minute: int) -> Pipeline:
    """Give ``app`` its telemetry, rate limiter and route guard (before adding routes)."""
    quiet_malformed_requests()
    telemetry, limiter = Telemetry(), RateLimiter(rate_limit_per_minute)
    app[TELEMETRY] = telemetry
    app[LIMITER] = limiter
    pipeline = app[PIPELINE] = Pipeline(telemetry, limiter)
    return pipeline


def get(app: web.Application, path: str, handler: Handler, *, name: str | None = None) -> None:
    """A guarded GET (and HEAD) route."""
    app.router.add_get(path, app[PIPELINE].guard(handler, path), name=name)


def post(app: web.Application, path: str, handler: Handler, *,
         name: str | None = None) -> None:
    """A guarded POST route."""
    app.router.add_post(path, app[PIPELINE].guard(handler, path, body=True), name=name)


def finish(app: web.Application) -> None:
    """Register the catch-all route for requests no other route takes (call it last)."""
    pipeline = app[PIPELINE]
    # (?s): a path may hold an encoded newline, which "." alone would not match.
    route = app.router.add_route("*", "/{unmatched:(?s:.*)}", pipeline.unmatched)
    pipeline.catch_all = route.resource
