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
