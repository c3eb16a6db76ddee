"""Polite, resilient HTTP for the collectors: one shared ClientSession, used with care.

* Retries are written once, as an aiohttp client middleware (``RetryMiddleware``): timeouts,
  connection errors and 5xx are retried with exponential backoff and full jitter. A 429 or
  503 with ``Retry-After`` is retried no earlier than it asks, and meanwhile no request goes
  to that host; a wait longer than ``retry_after_max_seconds`` is not waited for: that
  request (and any other to the host while the wait lasts) gives up. Each attempt has its
  own timeout (``timeout_seconds``, or the source's own ``timeout_seconds``) that covers
  reading the body, so a slow body is a timeout.
* Per host, shared by every source fetching from it (``HostLimit``): at most
  ``max_concurrency`` requests in flight and at most ``requests_per_second`` started per
  second — every attempt, retries included. Sources that configure different limits for one
  host all get the strictest.
* A circuit breaker per source opens after ``circuit_failures`` failed requests in a row
  (after their retries) and lets one trial request through after ``circuit_cooldown_seconds``.
* Conditional requests: an ETag / Last-Modified seen on a 200 is sent back as
  If-None-Match / If-Modified-Since; a 304 re-uses the body kept from that 200.
* A body broken in transit (the connection dropped mid-body, a false gzip header) is
  retried like a connection error (``payload``); when the retries are spent the response
  comes back with its status and headers, an empty body and its ``error``, so it is
  archived and counted. A 2xx that is not the upstream's data — an HTML page (a captcha,
  a login or consent wall) or an empty body — is a failure for the circuit breaker
  (``unexpected_content``), never a success.
* The headers kept describe the body kept: it is decompressed, so ``Content-Encoding``
  and ``Content-Length`` are dropped and the encoding it came in is named in
  ``X-Sendcost-Decoded-From``.
* Credentials: a source's headers, the ``${NAME}``s of its URL (filled in for the request
  only; what is archived, logged and named in errors keeps ``${NAME}``) and an OAuth 2.0
  client-credentials bearer token (``Fetcher.bearer``), none of them ever archived.
* A question asked as JSON is POSTed (``json_body``); everything else is a GET.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import email.utils
import json
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote_plus

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from yarl import URL

from collector.errors import FetchError
from corridors.config import CollectionConfig, SourceConfig

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Statuses whose Retry-After we honour (RFC 9110 §10.2.3).
RETRY_AFTER_STATUSES = frozenset({429, 503})


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's "full jitter")."""
    return rng.uniform(0, min(cap, base * 2 ** attempt))


class RetryMiddleware:
    """aiohttp client middleware: retry one request until it succeeds or the budget is spent.

    Every attempt first takes its host's limit (``limit_for(url)``: a slot in flight, a start
    time within the rate, the end of any wait the host asked for), so retries are as polite
    as first attempts; the slot is given back during the backoff. On success the body is
    read inside the attempt, so a body that trickles in too slowly is retried as a timeout
    like any other. ``on_attempt(kind)`` is told of every attempt's outcome ("ok",
    "timeout", "connection", "http_5xx", "http_429").
    """

    def __init__(self, config: CollectionConfig, limit_for: Callable[[URL], HostLimit], *,
                 rng: random.Random, on_attempt: Callable[[str], None] | None = None,
                 redact: Callable[[str], str] = str) -> None:
        self.config = config
        self.limit_for = limit_for
        self.rng = rng
        self.on_attempt = on_attempt or (lambda kind: None)
        #: What a URL is logged as (its secrets put back as ${NAME}).
        self.redact = redact

    async def __call__(self, req: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        cfg = self.config
        attempt = 0
        while True:
            limit = self.limit_for(req.url)
            await limit.acquire(cfg.retry_after_max_seconds)
            resp: ClientResponse | None = None
            try:
                async with asyncio.timeout(cfg.timeout_seconds):
                    resp = await handler(req)
                    asked = (retry_after_seconds(resp.headers.get("Retry-After"))
                             if resp.status in RETRY_AFTER_STATUSES else None)
                    if asked is not None:
                        # The host asked *us* to wait, not just this request.
                        limit.hold_off(asked, resp.status)
                    if (resp.status not in RETRY_STATUSES or attempt >= cfg.max_retries
                            or (asked is not None and asked > cfg.retry_after_max_seconds)):
                        await resp.read()
                        self.on_attempt(_status_kind(resp.status))
                        return resp
            except TimeoutError:
                if resp is not None:
                    resp.close()
                self.on_attempt("timeout")
                if attempt >= cfg.max_retries:
                    raise
                delay = backoff_delay(attempt, cfg.backoff_base_seconds,
                                      cfg.backoff_max_seconds, self.rng)
            except aiohttp.ClientConnectionError:
                if resp is not None:
                    resp.close()
                self.on_attempt("connection")
                if attempt >= cfg.max_retries:
                    raise
                delay = backoff_delay(attempt, cfg.backoff_base_seconds,
                                      cfg.backoff_max_seconds, self.rng)
            except aiohttp.ClientPayloadError as exc:
                # The status and headers came, the body broke (a dropped connection, a
                # false gzip header): another attempt may get it whole.
                if resp is not None:
                    resp.close()
                self.on_attempt("payload")
                if attempt >= cfg.max_retries:
                    if resp is None:
                        raise
                    raise PayloadBroken(resp.status, dict(resp.headers.items()),
                                        f"{type(exc).__name__}: {exc}") from None
                delay = backoff_delay(attempt, cfg.backoff_base_seconds,
                                      cfg.backoff_max_seconds, self.rng)
            else:
                assert resp is not None
                self.on_attempt(_status_kind(resp.status))
                # Never earlier than asked (the limit holds the host back that long too).
                delay = asked if asked is not None else backoff_delay(
                    attempt, cfg.backoff_base_seconds, cfg.backoff_max_seconds, self.rng)
                resp.release()
            finally:
                limit.release()
            attempt += 1
            log.debug("retrying %s in %.2fs (attempt %d)", self.redact(str(req.url)), delay,
                      attempt + 1)
            await asyncio.sleep(delay)


def _status_kind(status: int) -> str:
    if status == 429:
        return "http_429"
    if status >= 500:
        return "http_5xx"
    if status >= 400:
        return "http_4xx"
    return "ok"


class CircuitBreaker:
    """Closed → open after ``failures`` failures in a row → half-open after ``cooldown``
    seconds (one trial request) → closed on its success, open again on its failure."""

    def __init__(self, failures: int, cooldown: float,
                 clock: Callable[[], float] = time.monotonic, *, name: str = "") -> None:
        self.name = name  # the source's, for the log
        self.failures = max(1, failures)
        self.cooldown = cooldown
        self.clock = clock
        self.consecutive = 0
        self.opened_at: float | None = None
        self.trial_in_flight = False
        self.trial_done = asyncio.Event()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cooldown:
            return "half_open"
        return "open"

    async def before(self, source: str) -> bool:
        """Let a request through (True when it is a half-open circuit's one trial), or raise
        FetchError("circuit_open"). While the trial is out, the others wait for its
        outcome."""
        while True:
            state = self.state
            if state == "closed":
                return False
            if state == "open":
                raise FetchError("circuit_open", f"source {source!r} failed "
                                 f"{self.consecutive} times in a row; not asking it until "
                                 "the cool-down ends")
            if not self.trial_in_flight:
                self.trial_in_flight = True
                self.trial_done = asyncio.Event()
                return True
            await self.trial_done.wait()

    def _end_trial(self) -> None:
        self.trial_in_flight = False
        self.trial_done.set()

    def abandoned(self, trial: bool) -> None:
        """A request ended without an outcome (cancelled): neither a success nor a failure;
        if it was the trial, the next request is."""
        if trial:
            self._end_trial()

    def success(self) -> None:
        if self.opened_at is not None:
            log.info("%scircuit closed again after a successful trial request",
                     f"{self.name}: " if self.name else "")
        self.consecutive = 0
        self.opened_at = None
        self._end_trial()

    def failure(self) -> None:
        self.consecutive += 1
        self._end_trial()
        if self.opened_at is not None or self.consecutive >= self.failures:
            if self.opened_at is None:
                log.warning("%scircuit opened after %d failures in a row",
                            f"{self.name}: " if self.name else "", self.consecutive)
            self.opened_at = self.clock()


#: A bearer token is fetched anew this long before the expiry its endpoint gave.
TOKEN_MARGIN_SECONDS = 60.0


class PayloadBroken(Exception):
    """The response's body broke in transit on every attempt: its status and headers."""

    def __init__(self, status: int, headers: dict[str, str], detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.headers = headers
        self.detail = detail


#: Headers that describe the bytes on the wire, not the (decompressed) body kept.
WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})
DECODED_HEADER = "X-Sendcost-Decoded-From"
PAYLOAD_ERROR_HEADER = "X-Sendcost-Payload-Error"


def kept_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The response's headers as they describe the body kept: decompressed, so without
    Content-Encoding / Content-Length, the encoding named in X-Sendcost-Decoded-From."""
    out: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower == "content-encoding" and value.strip().lower() not in ("", "identity"):
            out[DECODED_HEADER] = value
        elif lower not in WIRE_HEADERS:
            out[name] = value if name not in out else f"{out[name]}, {value}"
    return out


def client_basic_auth(client_id: str, client_secret: str) -> str:
    """The Authorization header of an OAuth 2.0 client (RFC 6749 §2.3.1): the id and the
    secret each form-encoded (application/x-www-form-urlencoded) before HTTP Basic, so an
    id or secret holding ':', '%', '+' or a non-ASCII letter reaches the server as it is."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


def expand_secrets(url: str, secrets: Mapping[str, str]) -> str:
    """``url`` with each ${NAME} replaced by its secret (``SourceConfig.url_secrets``)."""
    for name, value in secrets.items():
        url = url.replace(f"${{{name}}}", value)
    return url


def expand_body_secrets(body: bytes, secrets: Mapping[str, str]) -> bytes:
    """A JSON ``body`` with each ${NAME} replaced by its secret, escaped as the inside of a
    JSON string (where the template names it)."""
    for name, value in secrets.items():
        body = body.replace(f"${{{name}}}".encode(), json.dumps(value)[1:-1].encode())
    return body


def unexpected_content(content_type: str | None, body: bytes) -> str | None:
    """Why a 2xx body is not an upstream's data (None when it may be): an HTML page —
    a captcha, a login or consent wall, an error page sent with 200 — or nothing at all.
    No source kind reads HTML."""
    if not body or body.isspace():
        return "an empty body"
    media = (content_type or "").split(";")[0].strip().lower()
    head = body[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if media in ("text/html", "application/xhtml+xml") or head.startswith(
            (b"<!doctype html", b"<html")):
        return f"an HTML page ({media or 'no Content-Type'}), not the upstream's data"
    return None


class HostBusy(Exception):
    """The host asked us to wait (Retry-After) longer than we are willing to: not asked."""

    def __init__(self, seconds: float, status: int) -> None:
        super().__init__(f"asked to wait {seconds:.0f}s")
        self.seconds = seconds
        self.status = status


#: The longest a host's Retry-After holds every request to it back.
MAX_HOLD_SECONDS = 24 * 3600


class HostLimit:
    """One host's limits, shared by every source fetching from it: at most ``concurrency``
    requests in flight, started at most ``rate`` per second, none while the host's
    Retry-After lasts. A source declaring stricter limits tightens them for all (the
    strictest wins: two sources' politeness toward one host must not add up)."""

    def __init__(self, host: str, concurrency: int, rate: float) -> None:
        self.host = host
        self.concurrency = max(1, concurrency)
        self.interval = 1.0 / rate
        self.in_flight = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.next_start = 0.0
        self.blocked_until = 0.0  # time.monotonic() before which the host is not asked
        self.blocked_status = 429
        self.declared: dict[str, tuple[int, float]] = {}

    def declare(self, source: str, concurrency: int, rate: float) -> None:
        """``source`` fetches from this host with these limits; keep the strictest."""
        if source in self.declared:
            return
        self.declared[source] = (concurrency, rate)
        if concurrency < self.concurrency or 1.0 / rate > self.interval:
            log.info("host %s: limits of source %s (%d in flight, %g/s) are stricter than "
                     "%d in flight, %g/s; every source fetching from the host gets them",
                     self.host, source, concurrency, rate, self.concurrency, 1 / self.interval)
        self.concurrency = min(self.concurrency, max(1, concurrency))
        self.interval = max(self.interval, 1.0 / rate)
        self._hand_over()

    def hold_off(self, seconds: float, status: int) -> None:
        """The host answered ``status`` with Retry-After ``seconds``: nobody asks it sooner
        (for at most ``MAX_HOLD_SECONDS``: a date years ahead is a broken upstream, and must
        not silence the host until the service restarts)."""
        if seconds > MAX_HOLD_SECONDS:
            log.warning("host %s: Retry-After of %.0f s cut to %d s", self.host, seconds,
                        MAX_HOLD_SECONDS)
            seconds = MAX_HOLD_SECONDS
        until = time.monotonic() + seconds
        if until > self.blocked_until:
            self.blocked_until, self.blocked_status = until, status

    async def acquire(self, give_up_after: float) -> None:
        """Wait for a slot, the end of the host's asked wait, and a start within the rate.

        Raises HostBusy when the host's asked wait is longer than ``give_up_after``."""
        await self._slot()
        try:
            while True:
                now = time.monotonic()
                blocked = self.blocked_until - now
                if blocked > 0:
                    if blocked > give_up_after:
                        raise HostBusy(blocked, self.blocked_status)
                    await asyncio.sleep(blocked)
                    continue
                start = max(now, self.next_start)
                self.next_start = start + self.interval
                if start > now:
                    await asyncio.sleep(start - now)
                if self.blocked_until <= time.monotonic():
                    return
                # A Retry-After arrived while we waited for our turn: wait for it too.
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._hand_over()

    async def _slot(self) -> None:
        if self.in_flight < self.concurrency and not self.waiters:
            self.in_flight += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut  # resolved by _hand_over, which counts the slot as ours
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(fut)
            raise

    def _hand_over(self) -> None:
        while self.waiters and self.in_flight < self.concurrency:
            fut = self.waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)


@dataclass(frozen=True, slots=True)
class Response:
    """One final upstream response (retries are not kept, only counted)."""

    url: str
    status: int
    body: bytes
    headers: dict[str, str]
    content_type: str | None
    fetched_at: dt.datetime
    #: For a 304: the raw response whose body this one re-uses.
    body_from_raw_id: int | None = None
    #: A response that came but cannot be used (its body broke in transit, or a 2xx that
    #: is not the upstream's data): archived all the same, then raised.
    error: FetchError | None = None


@dataclass(slots=True)
class _Validators:
    etag: str | None
    last_modified: str | None
    body: bytes
    raw_id: int


class Fetcher:
    """Everything between a collector and the network. One per process, shared by runs."""

    #: How many URLs' validators (ETag, Last-Modified, body) are remembered.
    MAX_VALIDATORS = 20_000

    def __init__(self, session: aiohttp.ClientSession, config: CollectionConfig, *,
                 seed: int | None = None) -> None:
        self.session = session
        self.config = config
        self.rng = random.Random(seed)
        self.circuits: dict[str, CircuitBreaker] = {}
        #: One per host ("host:port"), shared by every source fetching from it.
        self.limits: dict[str, HostLimit] = {}
        self.validators: OrderedDict[str, _Validators] = OrderedDict()
        #: Each source's own request headers, their ${NAME}s read from the environment
        #: once (SourceConfig.request_headers), not per request.
        self.source_headers: dict[str, dict[str, str]] = {}
        #: Each source's URL secrets (SourceConfig.url_secrets), by NAME, read once.
        self.source_secrets: dict[str, dict[str, str]] = {}
        #: OAuth bearer tokens by source, with the time.monotonic() they are good until.
        self.tokens: dict[str, tuple[str, float]] = {}
        self.token_locks: dict[str, asyncio.Lock] = {}

    async def bearer(self, source: SourceConfig) -> str:
        """A bearer token for ``source`` from its OAuth 2.0 token endpoint (client
        credentials, HTTP Basic), kept until a minute before it expires (or until the
        upstream answers 401). The exchange is neither archived nor logged: it carries the
        secret and the token. FetchError("auth") when no token comes back."""
        lock = self.token_locks.setdefault(source.name, asyncio.Lock())
        async with lock:
            known = self.tokens.get(source.name)
            if known is not None and known[1] > time.monotonic():
                return known[0]
            creds = source.oauth_credentials()
            form = {"grant_type": "client_credentials"}
            if creds.get("scope"):
                form["scope"] = creds["scope"]
            try:
                basic = client_basic_auth(creds["client_id"], creds["client_secret"])
                async with self.session.post(
                        creds["token_url"], data=form,
                        headers={"User-Agent": self.config.user_agent, "Authorization": basic},
                        timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds)
                ) as resp:
                    status, body = resp.status, await resp.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise FetchError("auth", f"no token from the OAuth token endpoint "
                                 f"({type(exc).__name__})") from None
            if status != 200:
                raise FetchError("auth", f"the OAuth token endpoint answered HTTP {status}",
                                 status=status)
            try:
                doc = json.loads(body)
                token, expires = doc["access_token"], float(doc.get("expires_in") or 3600)
                if not isinstance(token, str) or not token or expires != expires:
                    raise ValueError
            except (ValueError, TypeError, KeyError):
                raise FetchError("auth", "the OAuth token endpoint's answer has no "
                                 "access_token (and expires_in)") from None
            good_until = time.monotonic() + max(0.0, min(expires, 86400) - TOKEN_MARGIN_SECONDS)
            self.tokens[source.name] = (token, good_until)
            return token

    def circuit(self, source: str) -> CircuitBreaker:
        if source not in self.circuits:
            self.circuits[source] = CircuitBreaker(self.config.circuit_failures,
                                                   self.config.circuit_cooldown_seconds,
                                                   name=source)
        return self.circuits[source]

    def _limit(self, source: SourceConfig, url: URL) -> HostLimit:
        key = f"{url.host}:{url.port}"
        limit = self.limits.get(key)
        if limit is None:
            limit = self.limits[key] = HostLimit(key, source.max_concurrency,
                                                 source.requests_per_second)
        limit.declare(source.name, source.max_concurrency, source.requests_per_second)
        return limit

    def declare(self, sources: Iterable[SourceConfig]) -> None:
        """Register the sources' limits on their hosts before any request, so the strictest
        of them holds from the first request on (otherwise a host's limits tighten as each
        source first fetches from it)."""
        for source in sources:
            with contextlib.suppress(ValueError):
                url = URL(source.url)
                if url.absolute and url.host and "{" not in url.host:
                    self._limit(source, url)

    async def get(self, source: SourceConfig, url: str,
                  on_attempt: Callable[[str], None] | None = None, *,
                  json_body: bytes | None = None) -> Response:
        """GET ``url`` for ``source`` (POST ``json_body`` when given: a quote API that takes
        its question as JSON; the URL's fragment, never sent, tells such requests apart in
        the archive); any HTTP status comes back as a Response.

        Raises FetchError for what gives no response: timeout, connection, open circuit, or
        a host whose Retry-After asks for longer than ``retry_after_max_seconds`` (counted
        as the status that asked: http_429 or http_5xx).
        """
        circuit = self.circuit(source.name)
        trial = await circuit.before(source.name)
        secrets = self.source_secrets.get(source.name)
        if secrets is None:
            secrets = self.source_secrets[source.name] = source.url_secrets()

        def redact(text: str) -> str:
            for name, value in secrets.items():
                text = text.replace(value, f"${{{name}}}")
                # As a JSON body carries it (an echoed question: quotes, backslashes escaped).
                text = text.replace(json.dumps(value)[1:-1], f"${{{name}}}")
            return text

        # ${NAME} is filled in for the request only: the URL archived, logged and named in
        # errors is ``url`` as the adapter built it, with ${NAME}.
        parsed = URL(expand_secrets(url, secrets))
        # The source's own headers (credentials) first, never archived or logged: the
        # archive keeps what came back, not what was sent.
        own = self.source_headers.get(source.name)
        if own is None:
            own = self.source_headers[source.name] = source.request_headers()
        headers = {**own, "User-Agent": self.config.user_agent, "Accept-Encoding": "gzip"}
        if source.oauth:
            try:
                headers["Authorization"] = f"Bearer {await self.bearer(source)}"
            except BaseException:
                circuit.failure()  # a half-open trial never hangs on a token
                raise
        known = self.validators.get(url) if json_body is None else None
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            # The body's ${NAME}s are filled in for the request only (JSON-escaped, inside
            # their string): the URL archived names the body by a hash of it with ${NAME}.
            json_body = expand_body_secrets(json_body, secrets)
        if known is not None:
            if known.etag:
                headers["If-None-Match"] = known.etag
            if known.last_modified:
                headers["If-Modified-Since"] = known.last_modified
        # A source may take longer per attempt than the rest (a large file).
        config = self.config if source.timeout_seconds is None else dataclasses.replace(
            self.config, timeout_seconds=source.timeout_seconds)
        middleware = RetryMiddleware(config, lambda u: self._limit(source, u),
                                     rng=self.rng, on_attempt=on_attempt, redact=redact)
        # Each attempt has its own timeout in the middleware; the session's total timeout
        # would otherwise cover all attempts and their backoff together.
        budget = aiohttp.ClientTimeout(total=None, connect=config.timeout_seconds)
        error: FetchError | None = None
        try:
            async with self.session.request(
                    "GET" if json_body is None else "POST", parsed.with_fragment(None),
                    data=json_body, headers=headers, middlewares=(middleware,),
                    timeout=budget, allow_redirects=True) as resp:
                body = await resp.read()
                status = resp.status
                resp_headers = kept_headers(resp.headers.items())
        except PayloadBroken as exc:
            body, status = b"", exc.status
            resp_headers = {**kept_headers(exc.headers.items()),
                            PAYLOAD_ERROR_HEADER: redact(exc.detail)}
            error = FetchError("payload", f"HTTP {status} whose body broke in transit on "
                               f"every attempt ({redact(exc.detail)})", url=url, status=status)
        except HostBusy as exc:
            circuit.failure()
            raise FetchError(_status_kind(exc.status), f"{redact(parsed.host or '')} asked us "
                             f"to wait "
                             f"{exc.seconds:.0f}s (Retry-After), more than "
                             f"retry_after_max_seconds; not asked meanwhile", url=url,
                             status=exc.status) from None
        except TimeoutError:
            circuit.failure()
            raise FetchError("timeout", f"no complete response within "
                             f"{config.timeout_seconds:g}s", url=url) from None
        except aiohttp.ClientError as exc:
            circuit.failure()
            raise FetchError("connection", redact(f"{type(exc).__name__}: {exc}"),
                             url=url) from None
        except BaseException:
            # Cancelled (a stopping service, a run stopped): says nothing of the upstream, so
            # it is not a failure; a half-open trial is given back for another to try.
            circuit.abandoned(trial)
            raise
        if secrets:  # an upstream echoing the URL (Content-Location) keeps no secret
            resp_headers = {k: redact(v) for k, v in resp_headers.items()}
        why = unexpected_content(resp_headers.get("Content-Type"), body) \
            if error is None and 200 <= status < 300 else None
        if why is not None:
            error = FetchError("unexpected_content", f"HTTP {status} with {why}", url=url,
                               status=status)
        if status == 401 and source.oauth:
            self.tokens.pop(source.name, None)  # revoked or expired early: a new one next
        if status >= 500 or status == 429 or error is not None:
            circuit.failure()
        else:
            circuit.success()
        body_from = None
        if status == 304 and known is not None:
            body, body_from = known.body, known.raw_id
        return Response(url=url, status=status, body=body, headers=resp_headers,
                        content_type=resp_headers.get("Content-Type"),
                        fetched_at=dt.datetime.now(dt.UTC), body_from_raw_id=body_from,
                        error=error)

    def remember(self, response: Response, raw_id: int) -> None:
        """Keep a 200's validators so the next request for the URL can be conditional."""
        if response.status != 200 or response.error is not None:
            return
        headers = {k.lower(): v for k, v in response.headers.items()}
        etag = headers.get("etag")
        last_modified = headers.get("last-modified")
        if not etag and not last_modified:
            return
        self.validators[response.url] = _Validators(etag, last_modified, response.body, raw_id)
        self.validators.move_to_end(response.url)
        while len(self.validators) > self.MAX_VALIDATORS:
            self.validators.popitem(last=False)
