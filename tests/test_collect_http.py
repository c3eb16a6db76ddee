"""Politeness toward upstreams (collector/http.py), against real aiohttp servers on loopback:
per-host limits shared by every source, retries passing the limits, Retry-After honoured
(never shortened, host-wide, given up beyond retry_after_max_seconds). Also the sandbox's
ECB file date."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from collector.errors import FetchError
from collector.http import Fetcher
from collector.run import Collector
from collector.sandbox import last_concertation
from corridors.config import Config, parse_config
from corridors.errors import ConfigError
from corridors.store import Store


@dataclass
class Upstream:
    """A loopback server that records when each request arrived and how many overlapped;
    ``answer(path, n)`` (n: the path's 0-based request count) gives (status, headers)."""

    url: str = ""
    arrivals: list[tuple[str, float]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    hold: float = 0.0
    answer: Any = None

    def times(self, path: str) -> list[float]:
        return [t for p, t in self.arrivals if p == path]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream(answer=lambda path, n: (200, {}))

    async def serve(request: web.Request) -> web.Response:
        path = request.path
        n = sum(1 for p, _ in up.arrivals if p == path)
        up.arrivals.append((path, time.monotonic()))
        up.in_flight += 1
        up.max_in_flight = max(up.max_in_flight, up.in_flight)
        try:
            await asyncio.sleep(up.hold)
            status, headers = up.answer(path, n)
            return web.Response(status=status, headers=headers, text="{}")
        finally:
            up.in_flight -= 1

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    up.url = str(server.make_url("")).rstrip("/")
    yield up
    await server.close()


def config(up: Upstream, sources: list[dict[str, Any]], **collection: Any) -> Config:
    raw = {"collection": {"backoff_base_seconds": 0.001, "backoff_max_seconds": 0.05,
                          "timeout_seconds": 5.0, **collection},
           "sources": [{"kind": "json_rates", "url": f"{up.url}/{s['name']}", **s}
                       for s in sources]}
    return parse_config(raw)


async def test_limits_are_per_host_shared_by_every_source(upstream: Upstream) -> None:
    """Two sources on one host, 2 in flight each: 2 in flight on the host, not 4."""
    upstream.hold = 0.05
    cfg = config(upstream, [{"name": n, "max_concurrency": 2, "requests_per_second": 1000.0}
                            for n in ("a", "b")])
    a, b = cfg.sources
    async with aiohttp.ClientSession() as session:
        fetcher = Fetcher(session, cfg.collection)
        await asyncio.gather(*[fetcher.get(s, f"{upstream.url}/{s.name}/{i}")
                               for i in range(8) for s in (a, b)])
    assert len(upstream.arrivals) == 16
    assert upstream.max_in_flight == 2
    assert len(fetcher.limits) == 1


async def test_sources_with_different_limits_on_one_host_get_the_strictest(
        upstream: Upstream) -> None:
    upstream.hold = 0.02
    cfg = config(upstream, [
        {"name": "lenient", "max_concurrency": 4, "requests_per_second": 1000.0},
        {"name": "strict", "max_concurrency": 1, "requests_per_second": 20.0}])
    lenient, strict = cfg.sources
    async with aiohttp.ClientSession() as session:
        fetcher = Fetcher(session, cfg.collection)
        fetcher.declare(cfg.sources)
        await asyncio.gather(*[fetcher.get(s, f"{upstream.url}/{s.name}/{i}")
                               for i in range(4) for s in (lenient, strict)])
    assert upstream.max_in_flight == 1
    starts = sorted(t for _, t in upstream.arrivals)
    # 20 per second for everyone: 8 starts span 7 intervals of 50 ms. Arrivals jitter by
    # tens of ms on a loaded machine (the first also opens the connection), hence the 3/4;
    # without the shared limit they would all arrive within a few ms.
    assert starts[-1] - starts[0] >= 0.75 * 7 * 0.05, starts

    # Without declaring up front, the host's limits tighten as the strict source arrives.
    upstream.arrivals.clear()
    upstream.max_in_flight = 0
    async with aiohttp.ClientSession() as session:
        fetcher = Fetcher(session, cfg.collection)
        await fetcher.get(lenient, f"{upstream.url}/lenient/x")
        await fetcher.get(strict, f"{upstream.url}/strict/x")
        await asyncio.gather(*[fetcher.get(lenient, f"{upstream.url}/lenient/{i}")
                               for i in range(4)])
    assert upstream.max_in_flight == 1


async def test_retries_pass_through_the_rate_limit(upstream: Upstream) -> None:
    """A 503 without Retry-After is retried after a short backoff — but each retry is a
    request to the host like any other, started within requests_per_second."""
    upstream.answer = lambda path, n: (503, {})
    cfg = config(upstream, [{"name": "s", "requests_per_second": 10.0}], max_retries=4)
    attempts: list[str] = []
    async with aiohttp.ClientSession() as session:
        fetcher = Fetcher(session, cfg.collection, seed=1)
        resp = await fetcher.get(cfg.sources[0], f"{upstream.url}/s", attempts.append)
    assert resp.status == 503 and attempts == ["http_5xx"] * 5
    t = upstream.times("/s")
    # Backoff alone would put the five attempts within a few tens of milliseconds; at 10 per
    # second they span four intervals of 100 ms (3/4 of it, for arrival jitter on a loaded
    # machine: the first attempt also opens the connection).
    assert len(t) == 5 and t[-1] - t[0] >= 0.75 * 4 * 0.1, t


async def test_retry_after_is_honoured_in_full_and_holds_the_whole_host(
        upstream: Upstream) -> None:
    """Retry-After: 1 with backoff_max_seconds 0.05: the retry comes after a full second, and
    meanwhile another source's request to that host waits too."""
    upstream.answer = lambda path, n: ((429, {"Retry-After": "1"}) if path == "/a" and n == 0
                                       else (200, {}))
    cfg = config(upstream, [{"name": "a", "requests_per_second": 1000.0},
                            {"name": "b", "requests_per_second": 1000.0}])
    a, b = cfg.sources
    limited = asyncio.Event()

    def on_attempt(kind: str) -> None:
        if kind == "http_429":
            limited.set()

    async with aiohttp.ClientSession() as session:
        fetcher = Fetcher(session, cfg.collection)
        first = asyncio.create_task(fetcher.get(a, f"{upstream.url}/a", on_attempt))
        await limited.wait()
        other = await fetcher.get(b, f"{upstream.url}/b")
        retried = await first
    assert (retried.status, other.status) == (200, 200)
    [asked, retry] = upstream.times("/a")
    [later] = upstream.times("/b")
    assert retry - asked >= 0.99  # not backoff_max_seconds (0.05) later: a full second
    assert later - asked >= 0.99


async def test_a_retry_after_too_long_gives_up_instead_of_retrying_early(
        upstream: Upstream) -> None:
    upstream.answer = lambda path, n: (429, {"Retry-After": "120"})
    cfg = config(upstream, [{"name": "s"}], retry_after_max_seconds=5.0)
    s = cfg.sources[0]
    attempts: list[str] = []
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        fetcher = Fetcher(session, cfg.collection)
        resp = await fetcher.get(s, f"{upstream.url}/s/1", attempts.append)
        assert resp.status == 429 and attempts == ["http_429"]
        # The host asked for two minutes: the next request does not ask it meanwhile.
        with pytest.raises(FetchError, match="asked us to wait") as info:
            await fetcher.get(s, f"{upstream.url}/s/2", attempts.append)
    assert info.value.kind == "http_429"
    assert time.monotonic() - started < 2.0
    assert len(upstream.arrivals) == 1 and attempts == ["http_429"]


async def test_a_run_counts_a_too_long_retry_after_as_http_429(store: Store,
                                                                upstream: Upstream) -> None:
    """End to end: a 429 asking for two minutes is archived and counted http_429, once per
    request, with one request sent — not retried after backoff_max_seconds."""
    upstream.answer = lambda path, n: (429, {"Retry-After": "120"})
    p = f"h{uuid.uuid4().hex[:8]}"
    cfg = parse_config({
        "collection": {"backoff_base_seconds": 0.001, "backoff_max_seconds": 0.05,
                       "retry_after_max_seconds": 10.0},
        "corridors": [{"from": "USA", "to": "MEX"}],
        "sources": [{"name": f"{p}-op", "kind": "operator_json", "max_concurrency": 1,
                     "url": f"{upstream.url}/quote?amount={{amount}}",
                     "options": {"firm": "Acme", "fields": {"fee": "fee"}}}]})
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        [report] = await Collector(cfg, store, session).run_all()
    assert time.monotonic() - started < 5.0
    assert (report.status, report.requests, report.errors["http_429"]) == ("failed", 1, 2), \
        report.line()
    assert len(upstream.arrivals) == 1
    assert await store.pool.fetchval(
        "SELECT count(*) FROM raw_responses WHERE run_id = $1 AND status = 429",
        report.run_id) == 1


def test_retry_after_max_seconds_is_a_validated_key() -> None:
    assert parse_config({}).collection.retry_after_max_seconds == 300.0
    assert parse_config({"collection": {"retry_after_max_seconds": 60}}
                        ).collection.retry_after_max_seconds == 60.0
    with pytest.raises(ConfigError, match=r"collection\.retry_after_max_seconds"):
        parse_config({"collection": {"retry_after_max_seconds": 0}})
    with pytest.raises(ConfigError, match=r"collection\.retry_after_max_seconds"):
        parse_config({"collection": {"retry_after_max_seconds": "5m"}})


@pytest.mark.parametrize(("now", "day"), [
    # 14:15 in Frankfurt is 13:15 UTC in winter (CET), 12:15 UTC in summer (CEST).
    (dt.datetime(2026, 1, 15, 13, 14, tzinfo=dt.UTC), dt.date(2026, 1, 14)),
    (dt.datetime(2026, 1, 15, 13, 15, tzinfo=dt.UTC), dt.date(2026, 1, 15)),
    (dt.datetime(2026, 7, 15, 12, 14, tzinfo=dt.UTC), dt.date(2026, 7, 14)),
    (dt.datetime(2026, 7, 15, 12, 16, tzinfo=dt.UTC), dt.date(2026, 7, 15)),
    (dt.datetime(2026, 1, 1, 0, 30, tzinfo=dt.UTC), dt.date(2025, 12, 31)),
])
def test_the_sandbox_ecb_file_is_dated_by_its_last_publication(now: dt.datetime,
                                                              day: dt.date) -> None:
    assert last_concertation(now) == day


async def test_the_sandbox_ecb_rates_are_never_from_the_future() -> None:
    from collector import ecb_rates
    from collector.sandbox import Sandbox

    server = TestServer(Sandbox(operators_n=1).app(), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session, session.get(
                server.make_url("/ecb/eurofxref-daily.xml")) as resp:
            body = await resp.read()
    finally:
        await server.close()
    as_of = ecb_rates.parse(body)[0][3]
    now = dt.datetime.now(dt.UTC)
    assert now - dt.timedelta(hours=24) < as_of <= now


def test_an_absurd_retry_after_holds_the_host_back_a_day_at_most(
        caplog: pytest.LogCaptureFixture) -> None:
    from collector.http import MAX_HOLD_SECONDS, HostLimit, retry_after_seconds

    limit = HostLimit("upstream.example", 1, 1.0)
    asked = retry_after_seconds("Fri, 01 Jan 2100 00:00:00 GMT")
    assert asked is not None and asked > 70 * 365 * 86400
    limit.hold_off(asked, 503)
    assert 0 < limit.blocked_until - time.monotonic() <= MAX_HOLD_SECONDS == 86400
    assert "cut to 86400 s" in caplog.text
    limit.hold_off(30, 429)  # a shorter wait never shortens a longer one
    assert limit.blocked_until - time.monotonic() > 3600


async def test_a_source_sends_its_headers_with_secrets_from_the_environment(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A source's headers go with every request; ${NAME} is read from the environment, so
    the token is in neither the config nor the archive. Unset, nothing starts, and the
    error names the variable, not a value."""
    token = f"s3cret-{uuid.uuid4().hex}"
    seen: list[str | None] = []

    async def rates(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        assert request.headers["X-Client"] == "sendcost-test"
        assert request.headers["User-Agent"].startswith("sendcost")
        return web.json_response({"base": "USD", "date": dt.date.today().isoformat(),
                                  "rates": {"MXN": 17.1}})

    app = web.Application()
    app.router.add_get("/rates", rates)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    name = f"h{uuid.uuid4().hex[:8]}-rates"
    cfg = parse_config({"sources": [{
        "name": name, "kind": "json_rates", "url": str(server.make_url("/rates")),
        "headers": {"Authorization": "Bearer ${SENDCOST_TEST_TOKEN}",
                    "X-Client": "sendcost-test"}}]})
    try:
        monkeypatch.setenv("SENDCOST_TEST_TOKEN", token)
        async with aiohttp.ClientSession() as session:
            [report] = await Collector(cfg, store, session).run_all()
            assert report.status == "ok", report.line()
            assert seen == [f"Bearer {token}"]
            assert await store.pool.fetchval(
                "SELECT count(*) FROM raw_responses WHERE run_id = $1", report.run_id) == 1
            assert await store.pool.fetchval(
                "SELECT count(*) FROM raw_responses WHERE run_id = $1 AND (url LIKE $2 OR "
                "headers::text LIKE $2 OR encode(payload, 'escape') LIKE $2)",
                report.run_id, f"%{token}%") == 0
            monkeypatch.delenv("SENDCOST_TEST_TOKEN")
            with pytest.raises(ConfigError) as caught:
                Collector(cfg, store, session)
        assert str(caught.value) == (
            f"sources[{name}].headers.Authorization: environment variable SENDCOST_TEST_TOKEN"
            " is not set (the header's value names it as ${SENDCOST_TEST_TOKEN})")
        assert len(seen) == 1  # nothing was sent without it
    finally:
        await server.close()


async def test_a_disabled_source_run_by_name_needs_its_header_variables(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENDCOST_TEST_UNSET", raising=False)
    name = f"h{uuid.uuid4().hex[:8]}-off"
    cfg = parse_config({"sources": [{
        "name": name, "kind": "json_rates", "url": "http://127.0.0.1:9/rates",
        "enabled": False, "headers": {"X-Api-Key": "${SENDCOST_TEST_UNSET}"}}]})
    async with aiohttp.ClientSession() as session:
        collector = Collector(cfg, store, session)  # starts: the source is not scheduled
        with pytest.raises(ConfigError, match="environment variable SENDCOST_TEST_UNSET"):
            await collector.run(name)
    assert await store.pool.fetchval(
        "SELECT count(*) FROM collection_runs WHERE source = $1", name) == 0


async def test_cancelled_requests_are_not_circuit_failures(upstream: Upstream,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    """A stopping service cancels its requests: that says nothing of the upstream, so no
    circuit opens ("circuit opened" ×11 on every SIGTERM before); a cancelled half-open
    trial lets the next request be the trial."""
    upstream.hold = 30.0
    cfg = config(upstream, [{"name": "c", "max_concurrency": 20,
                             "requests_per_second": 1000.0}],
                 circuit_failures=2, circuit_cooldown_seconds=0.05)
    [source] = cfg.sources
    async with aiohttp.ClientSession() as session:
        fetcher = Fetcher(session, cfg.collection)
        tasks = [asyncio.create_task(fetcher.get(source, f"{upstream.url}/c/{i}"))
                 for i in range(11)]
        for _ in range(1000):
            if len(upstream.arrivals) >= 11:
                break
            await asyncio.sleep(0.01)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        circuit = fetcher.circuit("c")
        assert (circuit.state, circuit.consecutive) == ("closed", 0)
        assert "circuit opened" not in caplog.text

        # Half-open: the trial is cancelled; the next request is the trial.
        circuit.consecutive, circuit.opened_at = 2, circuit.clock() - 1.0
        trial = asyncio.create_task(fetcher.get(source, f"{upstream.url}/c/trial"))
        for _ in range(1000):
            if len(upstream.arrivals) >= 12:
                break
            await asyncio.sleep(0.01)
        trial.cancel()
        await asyncio.gather(trial, return_exceptions=True)
        upstream.hold = 0.0
        response = await asyncio.wait_for(fetcher.get(source, f"{upstream.url}/c/next"), 5)
        assert response.status == 200 and circuit.state == "closed"


# -- real upstreams' failures (issue 13) ----------------------------------------------------

RATES = b'{"base": "USD", "date": "2024-11-20", "rates": {"MXN": 20.29}}'


@pytest.fixture
async def raw_upstream() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A loopback HTTP/1.1 server written by hand, to break bodies as real networks do:
    ``/cut`` promises 500 bytes and hangs up after 20; ``/gzip`` says gzip and is not;
    ``/flaky`` is cut on its first request only; ``/zipped`` is really gzipped. Yields
    its URL and the requests seen per path."""
    import gzip

    seen: dict[str, int] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        while (await reader.readline()).strip():
            pass
        path = line.split()[1].decode()
        seen[path] = seen.get(path, 0) + 1
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        if path == "/cut" or (path == "/flaky" and seen[path] == 1):
            writer.write(f"{head}Content-Length: 500\r\n\r\n".encode() + RATES[:20])
        elif path == "/gzip":
            writer.write(f"{head}Content-Encoding: gzip\r\nContent-Length: {len(RATES)}"
                         "\r\n\r\n".encode() + RATES)
        else:
            body = gzip.compress(RATES) if path == "/zipped" else RATES
            enc = "Content-Encoding: gzip\r\n" if path == "/zipped" else ""
            writer.write(f"{head}{enc}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", seen
    server.close()
    await server.wait_closed()


async def test_a_body_broken_in_transit_is_retried_counted_and_archived(
        store: Store, raw_upstream: tuple[str, dict[str, int]]) -> None:
    """A dropped connection or a false gzip header mid-body is retried; when every attempt
    broke, the run counts each attempt and the failure ("payload"), and the response is
    archived (status, headers, what broke) — not 0 requests and nothing kept."""
    url, seen = raw_upstream
    p = f"b{uuid.uuid4().hex[:8]}"
    cfg = parse_config({
        "collection": {"backoff_base_seconds": 0.001, "backoff_max_seconds": 0.01,
                       "max_retries": 2},
        "sources": [{"name": f"{p}-{path}", "kind": "json_rates", "url": f"{url}/{path}"}
                    for path in ("cut", "gzip", "flaky")]})
    async with aiohttp.ClientSession() as session:
        reports = {r.source: r for r in await Collector(cfg, store, session).run_all()}
    for path in ("cut", "gzip"):
        r = reports[f"{p}-{path}"]
        assert (r.status, r.requests) == ("failed", 3), r.line()
        assert (r.errors["retry:payload"], r.errors["payload"]) == (3, 1), r.line()
        [row] = await store.pool.fetch(
            "SELECT status, headers, payload FROM raw_responses WHERE run_id = $1", r.run_id)
        assert row["status"] == 200 and row["payload"] == b""
        assert "X-Sendcost-Payload-Error" in row["headers"]
    flaky = reports[f"{p}-flaky"]
    assert (flaky.status, flaky.requests, flaky.rates) == ("ok", 2, 1), flaky.line()
    assert flaky.errors["retry:payload"] == 1
    assert seen["/cut"] == seen["/gzip"] == 3
    # A re-parse counts what broke as the live run did: a payload error, not a malformed
    # (empty) body.
    async with aiohttp.ClientSession() as session:
        collector = Collector(cfg, store, session)
        for path in ("cut", "gzip"):
            again = await collector.reparse(reports[f"{p}-{path}"].run_id)
            assert (again.status, again.requests, dict(again.errors)) == (
                "failed", 1, {"payload": 1}), again.line()


async def test_archived_headers_describe_the_stored_body(
        store: Store, raw_upstream: tuple[str, dict[str, int]]) -> None:
    """The body is archived decompressed: its headers must not say gzip (nor give the
    compressed length); they say what it was decoded from."""
    url, _ = raw_upstream
    name = f"z{uuid.uuid4().hex[:8]}"
    cfg = parse_config({"sources": [{"name": name, "kind": "json_rates",
                                     "url": f"{url}/zipped"}]})
    async with aiohttp.ClientSession() as session:
        [report] = await Collector(cfg, store, session).run_all()
    assert report.status == "ok", report.line()
    row = await store.pool.fetchrow(
        "SELECT headers, payload FROM raw_responses WHERE run_id = $1", report.run_id)
    headers = {k.lower(): v for k, v in row["headers"].items()}
    assert row["payload"] == RATES
    assert "content-encoding" not in headers and "content-length" not in headers
    assert headers["x-sendcost-decoded-from"] == "gzip"


@pytest.mark.parametrize(("content_type", "body"), [
    ("text/html", b"<html><body>Please verify you are a human</body></html>"),
    ("application/json", b"<!DOCTYPE html><html><title>Just a moment...</title></html>"),
    ("application/json", b""),
])
async def test_a_200_that_is_not_the_upstreams_data_opens_the_circuit(
        content_type: str, body: bytes) -> None:
    """A captcha or consent page sent with 200 is a failure for the breaker, never a
    success: after circuit_failures of them the source is not asked."""
    asked = 0

    async def serve(request: web.Request) -> web.Response:
        nonlocal asked
        asked += 1
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/q", serve)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    cfg = parse_config({"collection": {"circuit_failures": 3},
                        "sources": [{"name": "s", "kind": "json_rates",
                                     "url": str(server.make_url("/q"))}]})
    try:
        async with aiohttp.ClientSession() as session:
            fetcher = Fetcher(session, cfg.collection)
            for _ in range(3):
                resp = await fetcher.get(cfg.sources[0], str(server.make_url("/q")))
                assert resp.error is not None and resp.error.kind == "unexpected_content"
            with pytest.raises(FetchError) as caught:
                await fetcher.get(cfg.sources[0], str(server.make_url("/q")))
            assert caught.value.kind == "circuit_open" and asked == 3
    finally:
        await server.close()


async def test_a_reparsed_200_that_is_not_data_counts_as_it_did_live(store: Store) -> None:
    """A captcha page archived with its 200 is, re-parsed, what it was live: the
    upstream's unexpected content, not a malformed answer."""
    async def captcha(request: web.Request) -> web.Response:
        return web.Response(body=b"<html><body>Please verify you are a human</body></html>",
                            headers={"Content-Type": "text/html"})

    app = web.Application()
    app.router.add_get("/q", captcha)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    cfg = parse_config({"sources": [{"name": f"c{uuid.uuid4().hex[:8]}", "kind": "json_rates",
                                     "url": str(server.make_url("/q"))}]})
    try:
        async with aiohttp.ClientSession() as session:
            collector = Collector(cfg, store, session)
            [live] = await collector.run_all()
            again = await collector.reparse(live.run_id)
    finally:
        await server.close()
    assert dict(live.errors) == {"unexpected_content": 1}, live.line()
    assert (again.requests, dict(again.errors)) == (1, {"unexpected_content": 1}), again.line()


async def test_a_secret_in_a_url_is_sent_and_never_stored_or_logged(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """${NAME} in a source's URL (an API key in the query string, as open.er-api's paid
    plans and currencyapi ask) is filled in from the environment for the request only:
    the archive, the logs and the run keep ${NAME}. Unset, nothing starts."""
    import logging

    key = f"k3y-{uuid.uuid4().hex}"
    asked: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        asked.append(request.query.get("key", ""))
        if request.query.get("key") != key:
            return web.json_response({"error": "invalid key"}, status=403)
        if len(asked) == 1:  # one retry, to see what the retry's log line says
            return web.Response(status=503)
        if request.path == "/quote":
            return web.json_response({"fee": 2.0, "rate": 17.0})
        return web.json_response({"base": "USD", "date": dt.date.today().isoformat(),
                                  "rates": {"MXN": 17.1}})

    app = web.Application()
    app.router.add_get("/rates", serve)
    app.router.add_get("/quote", serve)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    p = f"k{uuid.uuid4().hex[:8]}"
    base = str(server.make_url("")).rstrip("/")
    cfg = parse_config({
        "collection": {"backoff_base_seconds": 0.001, "backoff_max_seconds": 0.01},
        "corridors": [{"from": "USA", "to": "MEX", "amounts": [200]}],
        "sources": [
            {"name": f"{p}-rates", "kind": "json_rates",
             "url": f"{base}/rates?key=${{SENDCOST_TEST_KEY}}"},
            {"name": f"{p}-op", "kind": "operator_json",
             "url": f"{base}/quote?amount={{amount}}&key=${{SENDCOST_TEST_KEY}}",
             "options": {"firm": "Acme", "fields": {"fee": "fee", "applied_rate": "rate"},
                         "reference_sources": [f"{p}-rates"]}}]})
    caplog.set_level(logging.DEBUG)
    try:
        monkeypatch.setenv("SENDCOST_TEST_KEY", key)
        async with aiohttp.ClientSession() as session:
            reports = await Collector(cfg, store, session).run_all()
            monkeypatch.delenv("SENDCOST_TEST_KEY")
            with pytest.raises(ConfigError, match=r"sources\[.*\]\.url: environment variable "
                                                  "SENDCOST_TEST_KEY is not set"):
                Collector(cfg, store, session)
    finally:
        await server.close()
    assert [r.status for r in reports] == ["ok", "ok"], [r.line() for r in reports]
    assert asked == [key] * 3
    urls = await store.pool.fetch(
        "SELECT url FROM raw_responses WHERE run_id = ANY($1::bigint[]) ORDER BY id",
        [r.run_id for r in reports])
    assert [u["url"] for u in urls] == [f"{base}/rates?key=${{SENDCOST_TEST_KEY}}",
                                        f"{base}/quote?amount=200&key=${{SENDCOST_TEST_KEY}}"]
    assert await store.pool.fetchval(
        "SELECT count(*) FROM raw_responses WHERE url LIKE $1 OR headers::text LIKE $1 OR "
        "encode(payload, 'escape') LIKE $1", f"%{key}%") == 0
    # sendcost's own log lines (the loopback upstream's access log is the upstream's).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    assert "retrying" in ours and "${SENDCOST_TEST_KEY}" in ours and key not in ours


async def test_an_oauth_client_id_and_secret_are_form_encoded_before_basic(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 6749 §2.3.1: the client id and secret are each form-encoded, then sent with HTTP
    Basic; an id holding ':' (which bare Basic cannot carry) and a secret holding '%', '+',
    '&', a space and a non-ASCII letter reach the token endpoint as they are."""
    import base64
    from urllib.parse import unquote_plus

    client_id, secret = "tenant:42 é", f"s%2B+&= ü{uuid.uuid4().hex}"
    got: list[tuple[str, str]] = []

    async def token(request: web.Request) -> web.Response:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        user, _, password = base64.b64decode(value).decode("ascii").partition(":")
        got.append((unquote_plus(user), unquote_plus(password)))
        if scheme != "Basic" or got[-1] != (client_id, secret):
            return web.json_response({"error": "invalid_client"}, status=401)
        return web.json_response({"access_token": "tok", "expires_in": 3600})

    async def rates(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer tok":
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({"base": "USD", "date": dt.date.today().isoformat(),
                                  "rates": {"MXN": 17.1}})

    app = web.Application()
    app.router.add_post("/oauth/token", token)
    app.router.add_get("/rates", rates)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    name = f"o{uuid.uuid4().hex[:8]}-rates"
    cfg = parse_config({"sources": [{
        "name": name, "kind": "json_rates", "url": str(server.make_url("/rates")),
        "oauth": {"token_url": str(server.make_url("/oauth/token")),
                  "client_id": "${SENDCOST_TEST_ID}",
                  "client_secret": "${SENDCOST_TEST_SECRET}"}}]})
    monkeypatch.setenv("SENDCOST_TEST_ID", client_id)
    monkeypatch.setenv("SENDCOST_TEST_SECRET", secret)
    try:
        async with aiohttp.ClientSession() as session:
            report = await Collector(cfg, store, session).run(name)
    finally:
        await server.close()
    assert got == [(client_id, secret)]
    assert (report.status, report.rates) == ("ok", 1), report.line()


async def test_an_oauth_client_credentials_token_is_fetched_kept_and_never_stored(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A source behind OAuth 2.0 client credentials (Wise's API for partners): the token
    is fetched with the id and secret from the environment, kept across requests and runs,
    fetched anew after a 401, and neither it nor the secret is archived. A secret written in
    the file, or unset, stops the start."""
    import base64

    secret = f"cs-{uuid.uuid4().hex}"
    issued: list[str] = []

    async def token(request: web.Request) -> web.Response:
        basic = base64.b64encode(f"sendcost-test:{secret}".encode()).decode()
        form = await request.post()
        if request.headers.get("Authorization") != f"Basic {basic}" or \
                form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "invalid_client"}, status=401)
        issued.append(f"tok-{uuid.uuid4().hex}")
        return web.json_response({"access_token": issued[-1], "token_type": "bearer",
                                  "expires_in": 3600, "scope": form.get("scope")})

    async def rates(request: web.Request) -> web.Response:
        if not issued or request.headers.get("Authorization") != f"Bearer {issued[-1]}":
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({"base": "USD", "date": dt.date.today().isoformat(),
                                  "rates": {"MXN": 17.1}})

    app = web.Application()
    app.router.add_post("/oauth/token", token)
    app.router.add_get("/rates", rates)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    name = f"o{uuid.uuid4().hex[:8]}-rates"
    raw: dict[str, Any] = {"sources": [{
        "name": name, "kind": "json_rates", "url": str(server.make_url("/rates")),
        "oauth": {"token_url": str(server.make_url("/oauth/token")),
                  "client_id": "sendcost-test", "client_secret": "${SENDCOST_TEST_SECRET}",
                  "scope": "comparisons"}}]}
    cfg = parse_config(raw)
    monkeypatch.setenv("SENDCOST_TEST_SECRET", secret)
    try:
        async with aiohttp.ClientSession() as session:
            collector = Collector(cfg, store, session)
            first = await collector.run(name)
            second = await collector.run(name)
            assert [first.status, second.status] == ["ok", "ok"], second.line()
            assert len(issued) == 1  # kept across requests and runs
            issued.append("revoked")  # the upstream no longer takes the token it gave
            third = await collector.run(name)
            assert third.errors["http_4xx"] == 1 and len(issued) == 2
            fourth = await collector.run(name)
            assert fourth.status == "ok" and len(issued) == 3, fourth.line()
            monkeypatch.delenv("SENDCOST_TEST_SECRET")
            with pytest.raises(ConfigError, match=r"oauth\.client_secret: environment "
                                                  "variable SENDCOST_TEST_SECRET is not set"):
                Collector(cfg, store, session)
    finally:
        await server.close()
    runs = [r.run_id for r in (first, second, third, fourth)]
    for value in (secret, *issued[:1], *issued[2:]):
        assert await store.pool.fetchval(
            "SELECT count(*) FROM raw_responses WHERE run_id = ANY($1::bigint[]) AND "
            "(url LIKE $2 OR headers::text LIKE $2 OR encode(payload, 'escape') LIKE $2)",
            runs, f"%{value}%") == 0
    raw["sources"][0]["oauth"]["client_secret"] = "written-in-the-file"
    with pytest.raises(ConfigError, match=r"oauth\.client_secret: expected \$\{NAME\}"):
        parse_config(raw)
