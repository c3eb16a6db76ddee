"""The request pipeline of the public API: aiohttp middlewares around every route.

``MIDDLEWARES`` (given to ``web.Application(middlewares=...)``; ``install`` then gives the app
their state) is one middleware, ``pipeline_middleware``, doing in order: it answers CORS
preflights; refuses oversized requests and applies the per-client rate limit
(``api.rate_limit_per_minute``); turns every exception into problem+json; opens GET to every
origin (CORS) and sends the headers of a hardened public site (``SECURITY_HEADERS``: a strict
Content-Security-Policy, nosniff, no framing, no referrer) on every answer, errors and static
files included; and counts and times the request for ``/metrics``. Being a middleware, it sees
every request, a route added with a plain ``app.router.add_get`` and a path no route takes
(aiohttp's 404 and 405) alike.
``error_response`` is the one place where a ``Problem``, an aiohttp ``HTTPException`` or an
unexpected exception becomes an RFC 9457 problem+json response.

Requests aiohttp's parser refuses (a malformed request line, a NUL in a header) never reach
the middlewares: aiohttp answers them 400 itself and logs the parser's exception at ERROR with
its traceback, which any client could fill the logs with. ``MalformedRequestFilter`` (on
aiohttp's server logger, from ``install``) turns those records into one DEBUG line; every
other record of that logger, a real server error among them, is left as it is.
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator
from itertools import accumulate
from typing import TypedDict

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
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
#: an oversized query string reaches the pipeline's limits and gets its 414 problem+json.
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
                                         "Sendcost-Periods, Sendcost-Methodology-Version, "
                                         "Sendcost-Sources, Sendcost-Licence, "
                                         "Sendcost-Warning, Sendcost-Data-Kinds"}
#: The Content-Security-Policy of every answer. The page runs no script and loads only its
#: own stylesheet (``/static/style.css``); its one form submits to itself; a bulletin's
#: charts are its own images. JSON, CSV and problem answers load nothing at all, and the same
#: policy keeps them inert if a browser ever renders one.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; "
                           "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
#: The headers a hardened public site sends, on every answer of the app. A handler may set
#: its own Content-Security-Policy (a bulletin's HTML has an inline stylesheet);
#: ``finish_headers`` never overrides a header the handler set. No
#: Strict-Transport-Security: the service speaks plain HTTP behind whatever terminates
#: TLS, which is the place to send it.
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


class RequestMetrics(Collector):
    """The request counter and latency histogram, as a prometheus-client collector: each
    answer adds to plain tallies, O(1) and lock-free (the app answers on one event loop), and
    a scrape turns them into prometheus-client's metric families. Its own ``Counter`` and
    ``Histogram`` took a lock per value and checked the metric on every call: counting an
    answer cost as much as answering a repeated comparison from memory (docs/api.md,
    "Speed")."""

    def __init__(self) -> None:
        # (method, route, status) → [sum of seconds, count in each bucket …, count past them]
        self._tallies: dict[tuple[str, str, int], list[float]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        tally[0] += seconds
        # A bucket counts the answers that took at most its bound.
        tally[1 + bisect_left(LATENCY_BUCKETS, seconds)] += 1

    @property
    def requests(self) -> dict[tuple[str, str, int], float]:
        """(method, route, status) → requests answered."""
        return {key: sum(tally[1:]) for key, tally in self._tallies.items()}

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(ANSWERED, ANSWERED_HELP, labels=["method", "route", "status"])
        yield HistogramMetricFamily(LATENCY, LATENCY_HELP, labels=["route"])

    def collect(self) -> Iterator[Metric]:
        answered = CounterMetricFamily(ANSWERED, ANSWERED_HELP,
                                       labels=["method", "route", "status"])
        by_route: dict[str, list[float]] = {}
        for (method, route, status), tally in sorted(self._tallies.items()):
            answered.add_metric([method, route, str(status)], sum(tally[1:]))
            total = by_route.setdefault(route, [0.0] * len(tally))
            for i, value in enumerate(tally):
                total[i] += value
        latency = HistogramMetricFamily(LATENCY, LATENCY_HELP, labels=["route"])
        bounds = [floatToGoString(b) for b in LATENCY_BUCKETS] + ["+Inf"]
        for route, total in by_route.items():
            latency.add_metric([route], list(zip(bounds, accumulate(total[1:]), strict=True)),
                               sum_value=total[0])
        yield answered
        yield latency


ANSWERED, ANSWERED_HELP = "sendcost_http_requests", "HTTP requests answered"
LATENCY, LATENCY_HELP = "sendcost_http_request_duration_seconds", "Time to answer an HTTP request"


class Telemetry:
    """The Prometheus metrics of one app, in a registry of its own (``registry``), made of
    prometheus-client's own types: one app's requests never show in another's ``/metrics``
    (tests make many apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.answers = RequestMetrics()
        self.registry.register(self.answers)
        #: Count and time one answer: ``observe(method, route, status, seconds)``.
        self.observe = self.answers.observe
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

    @property
    def requests(self) -> dict[tuple[str, str, int], float]:
        """(method, route, status) → requests answered."""
        return self.answers.requests


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
                                parameter=exc.parameter, headers=exc.headers,
                                corridor=exc.corridor, jobs=exc.jobs)
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


def route_of(request: web.Request) -> str:
    """The metrics label of a request's route: its path pattern as the OpenAPI document
    writes it (``/v1/corridors/{pair}``), or ``unmatched`` when no route took it."""
    resource = request.match_info.route.resource
    return "unmatched" if resource is None else resource.canonical


def finish_headers(request: web.Request, response: web.StreamResponse) -> None:
    """CORS on a GET, HEAD or OPTIONS answer and ``SECURITY_HEADERS`` on every answer, never
    overriding a header the handler set."""
    if request.method in CORS_METHODS:
        response.headers.update(CORS)
    harden(response)


@web.middleware
async def pipeline_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The whole pipeline of every request, in one middleware (four nested ones cost a
    quarter of the throughput of an answer from memory: docs/api.md, "Speed"). In order:

    1. a CORS preflight, which no route takes, is answered 204;
    2. the limits: the query string's length, the body's size (read, for a body sent without
       Content-Length, only on routes that may take one) and the per-client rate limit,
       before the handler (and before an unmatched path's 404);
    3. every error, an unmatched path's 404 and 405 and a limit's refusal included, becomes
       problem+json (``error_response``); a redirect passes as aiohttp raises it;
    4. the headers (``finish_headers``), on errors and redirects too;
    5. the answer is counted and timed for ``/metrics``, by method, route and status.
    """
    started = time.perf_counter()
    app = request.app
    try:
        if (request.method == "OPTIONS" and request.match_info.http_exception is not None
                and "Access-Control-Request-Method" in request.headers):
            # Browsers send preflights on their own: answered before the limits.
            response: web.StreamResponse = web.Response(status=204, headers=PREFLIGHT)
        else:
            _check_limits(request, app[LIMITER], app[TELEMETRY])
            if request.method not in CORS_METHODS and request.match_info.http_exception is None:
                await _check_unsized_body(request)
            response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect: aiohttp answers it from the exception
            harden(exc)
            app[TELEMETRY].observe(request.method, route_of(request), exc.status,
                                   time.perf_counter() - started)
            raise
        response = error_response(request, exc)
    except Exception as exc:
        response = error_response(request, exc)
    finish_headers(request, response)
    app[TELEMETRY].observe(request.method, route_of(request), response.status,
                           time.perf_counter() - started)
    return response


#: The API's middlewares: ``web.Application(middlewares=MIDDLEWARES)``, then ``install``.
#: Every route of the app, however it was added, passes through them.
MIDDLEWARES = (pipeline_middleware,)


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


def install(app: web.Application, *, rate_limit_per_minute: int) -> None:
    """Give ``app`` (made with ``middlewares=MIDDLEWARES``) the telemetry and rate limiter
    its middlewares use."""
    missing = [m.__name__ for m in MIDDLEWARES if m not in app.middlewares]
    if missing:
        raise ValueError(f"the app lacks the API's middlewares {', '.join(missing)}: make it "
                         "with web.Application(middlewares=publish.middleware.MIDDLEWARES)")
    quiet_malformed_requests()
    app[TELEMETRY] = Telemetry()
    app[LIMITER] = RateLimiter(rate_limit_per_minute)
