"""Alerts (#16 item 2): what moved (pure Polars), events once each, Atom feeds, signed
webhooks delivered from the queue in PostgreSQL, across a restart of the app.

Real PostgreSQL, real HTTP on loopback: the upstreams (ECB rates, three operators' quote
APIs) and the webhook receiver are aiohttp servers; nothing is mocked."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import msgspec
import polars as pl
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from polars.testing import assert_frame_equal
from yarl import URL

from collector.run import Collector
from collector.sandbox import OPERATOR_FIELDS, OPERATOR_LABELS, last_concertation
from corridors.alerts import (
    CORRIDOR_FIGURES_SCHEMA,
    GLOBAL_FIGURES_SCHEMA,
    SERVICE_FIGURES_SCHEMA,
    Figures,
    NewEvent,
    claim_due,
    record_detection,
    record_event,
)
from corridors.config import Config, ConfigError, parse_config
from corridors.db import DatabaseTarget
from corridors.store import Store
from metrics import alerts as moved
from publish.alerts import bulletin_published
from publish.contract_ops import (
    ArchivedResponse,
    Problem,
    WebhookCreated,
    WebhookDeliveries,
    WebhookRedelivered,
    Webhooks,
)
from publish.webhooks import backoff_seconds, deliver_due, sign, verify
from sendcost.wiring import create_app

ROOT = Path(__file__).resolve().parent.parent
ATOM = "{http://www.w3.org/2005/Atom}"
TOKEN = "test-admin-token"
DATA_DIR = tempfile.TemporaryDirectory(prefix="sc-alerts-", dir="/tmp")

# --- what moved: pure Polars on tiny tables ---------------------------------------------------


def corridor_rows(rows: list[tuple[Any, ...]]) -> pl.LazyFrame:
    return pl.LazyFrame(rows, schema={
        "source_code": pl.String, "destination_code": pl.String, "amount_usd": pl.Int32,
        "period": pl.String, "average": pl.Float64, "smart": pl.Float64,
        "cheapest_firm": pl.String, "cheapest_total_cost": pl.Float64}, orient="row")


def test_the_latest_period_of_each_corridor_is_its_figure() -> None:
    table = corridor_rows([
        ("USA", "MEX", 200, "2014Q2", 6.0, 4.0, "A", 3.0),
        ("USA", "MEX", 200, "2026-11", 4.0, 3.0, "B", 2.0),
        ("USA", "MEX", 200, "2014Q1", 7.0, 5.0, "A", 4.0),
        ("GBR", "IND", 200, "2026-09", 5.5, 4.0, "C", 1.0),
        ("GBR", "IND", 200, "2026Q3", 5.6, 4.1, "C", 1.1),  # a quarter after its last month
    ])
    got = moved.latest_corridor_figures(table).collect()
    assert got.select("source_code", "period").rows() == [("GBR", "2026Q3"), ("USA", "2026-11")]


def test_crossings_both_ways_at_both_targets_for_average_and_smart() -> None:
    before = corridor_rows([
        ("USA", "MEX", 200, "2026-10", 4.8, 2.9, "A", 2.0),
        ("GBR", "IND", 200, "2026-10", 5.2, 3.5, "B", 2.0),
        ("FRA", "SEN", 200, "2026-10", 5.0, None, "C", 2.0),   # exactly 5 is not above
        ("DEU", "TUR", 200, "2026-10", float("nan"), 3.0, "D", 2.0),
    ])
    after = corridor_rows([
        ("USA", "MEX", 200, "2026-11", 5.3, 3.1, "A", 2.0),
        ("GBR", "IND", 200, "2026-11", 2.9, 3.5, "B", 2.0),
        ("FRA", "SEN", 200, "2026-11", 5.01, 9.0, "C", 2.0),
        ("DEU", "TUR", 200, "2026-11", 6.0, 3.0, "D", 2.0),    # NaN crosses nothing
        ("USA", "PHL", 200, "2026-11", 9.0, 9.0, "E", 2.0),    # first seen: a baseline
    ])
    got = moved.corridor_crossings(before, after).collect()
    expected = pl.DataFrame([
        ("FRA", "SEN", 200, "2026-11", "2026-10", "average", 5.0, "above", 5.0, 5.01),
        ("GBR", "IND", 200, "2026-11", "2026-10", "average", 3.0, "below", 5.2, 2.9),
        ("GBR", "IND", 200, "2026-11", "2026-10", "average", 5.0, "below", 5.2, 2.9),
        ("USA", "MEX", 200, "2026-11", "2026-10", "average", 5.0, "above", 4.8, 5.3),
        ("USA", "MEX", 200, "2026-11", "2026-10", "smart", 3.0, "above", 2.9, 3.1),
    ], schema={"source_code": pl.String, "destination_code": pl.String,
               "amount_usd": pl.Int32, "period": pl.String, "period_before": pl.String,
               "measure": pl.String, "threshold": pl.Float64, "direction": pl.String,
               "before": pl.Float64, "after": pl.Float64}, orient="row")
    assert_frame_equal(got, expected)


def test_a_new_cheapest_provider_and_price_changes_beyond_the_threshold() -> None:
    before = corridor_rows([("USA", "MEX", 200, "2026-10", 4.0, 3.0, "A", 2.0),
                            ("GBR", "IND", 200, "2026-10", 4.0, 3.0, None, None)])
    after = corridor_rows([("USA", "MEX", 200, "2026-11", 4.0, 3.0, "B", 1.5),
                           ("GBR", "IND", 200, "2026-11", 4.0, 3.0, "C", 1.0)])
    got = moved.new_cheapest(before, after).collect()
    assert got.select("source_code", "before", "after", "after_total_cost").rows() == [
        ("USA", "A", "B", 1.5)]
    schema = {"service_id": pl.String, "amount_usd": pl.Int32, "period": pl.String,
              "firm": pl.String, "source_code": pl.String, "destination_code": pl.String,
              "fee_pct": pl.Float64, "fx_margin_pct": pl.Float64}
    old = pl.LazyFrame([("s1", 200, "2026-10", "A", "USA", "MEX", 2.0, 1.0),
                        ("s2", 200, "2026-10", "B", "USA", "MEX", 2.0, 1.0)],
                       schema=schema, orient="row")
    new = pl.LazyFrame([("s1", 200, "2026-11", "A", "USA", "MEX", 2.6, 0.6),
                        ("s2", 200, "2026-11", "B", "USA", "MEX", 2.4, None)],
                       schema=schema, orient="row")
    changes = moved.price_changes(old, new, fee_points=0.5, fx_margin_points=0.5).collect()
    assert changes.select("service_id", "measure", "before", "after").rows() == [
        ("s1", "fee_pct", 2.0, 2.6)]
    assert changes["change"].round(6).to_list() == [0.6]


def test_global_figures_come_from_the_latest_period_with_enough_corridors() -> None:
    services = pl.LazyFrame([
        ("2014Q2", 200, True, 6.0), ("2014Q2", 200, True, 2.0), ("2014Q2", 200, False, None),
        ("2026-11", 200, True, 1.0),  # one corridor only: not a global figure
        ("2014Q2", 500, True, 2.0),
    ], schema={"period": pl.String, "amount_usd": pl.Int32, "transparent": pl.Boolean,
               "total_cost_pct": pl.Float64}, orient="row")
    table = corridor_rows([
        ("USA", "MEX", 200, "2014Q2", 6.0, 5.0, "A", 1.0),
        ("GBR", "IND", 200, "2014Q2", 2.0, None, "B", 1.0),
        ("USA", "MEX", 200, "2026-11", 1.0, 1.0, "A", 1.0),
        ("USA", "MEX", 500, "2014Q2", 2.0, 2.0, "A", 1.0),
    ])
    got = moved.global_figures(services, table, min_corridors=2).collect()
    assert got.rows() == [(200, "2014Q2", 4.0, 5.0, 2)]
    before = got.lazy().with_columns(pl.lit(2.5).alias("average"))
    crossed = moved.corridor_crossings(before, got.lazy(), key=moved.GLOBAL_KEY).collect()
    assert crossed.select("measure", "threshold", "direction").rows() == [
        ("average", 3.0, "above")]


# --- signatures --------------------------------------------------------------------------------


def _documented_receiver() -> Callable[[str, bytes, str], bool]:
    """docs/alerts.md's receiver, as written there (its ten lines, run as they stand)."""
    text = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    block = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(block.strip().splitlines()) <= 10, "the receiver is no longer ten lines"
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/alerts.md", "exec"), namespace)
    return cast(Callable[[str, bytes, str], bool], namespace["verify_sendcost"])


receiver_verifies = _documented_receiver()


def test_a_signature_verifies_and_a_changed_body_or_old_timestamp_does_not() -> None:
    now = int(time.time())
    header = sign("whsec_x", b'{"a":1}', now)
    assert header.startswith(f"t={now},v1=")
    expected = hmac.new(b"whsec_x", f"{now}.".encode() + b'{"a":1}', hashlib.sha256)
    assert header.endswith(expected.hexdigest())
    assert verify("whsec_x", b'{"a":1}', header) and receiver_verifies("whsec_x", b'{"a":1}',
                                                                         header)
    assert not verify("whsec_x", b'{"a":2}', header)
    assert not verify("whsec_y", b'{"a":1}', header)
    old = sign("whsec_x", b'{"a":1}', now - 301)
    assert not verify("whsec_x", b'{"a":1}', old)
    assert not receiver_verifies("whsec_x", b'{"a":1}', old)
    assert not verify("whsec_x", b"{}", "v1=abc")
    assert [backoff_seconds(n, 30, 3600) for n in (1, 2, 3, 8)] == [30, 60, 120, 3600]


# --- the app, a loopback operator market and a webhook receiver ---------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_config(**alerts: Any) -> Config:
    raw = {"service": {"import_rpw_on_empty": False, "data_dir": DATA_DIR.name},
           "api": {"rate_limit_per_minute": 0}, "bulletin": {"enabled": False},
           "alerts": {"check_seconds": 0.2, "delivery_seconds": 0.2,
                      "backoff_base_seconds": 0.2, "backoff_max_seconds": 1.0,
                      "max_attempts": 50, "delivery_timeout_seconds": 2.0, **alerts}}
    return parse_config(raw)


@pytest.fixture
def admin_token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SENDCOST_ADMIN_TOKEN", TOKEN)
    return TOKEN


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


class Market:
    """Three operators quoting NOR → UGA on loopback, at fees the test sets, with the ECB's
    rates (as of its last concertation) for reference."""

    def __init__(self) -> None:
        self.RATES = {"USD": 1.05, "NOK": 11.5, "UGX": 3900.0}
        self.MARGIN = 0.01  # each operator's rate is 1 % below the mid-market rate
        self.fees = [40.0, 50.0, 60.0]  # NOK on 2000 NOK: 2 %, 2.5 %, 3 %

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ecb.xml", self.ecb)
        app.router.add_get("/op/{n}", self.quote)
        return app

    async def ecb(self, request: web.Request) -> web.Response:
        day = last_concertation(dt.datetime.now(dt.UTC)).isoformat()
        cubes = "".join(f"<Cube currency='{c}' rate='{r}'/>" for c, r in self.RATES.items())
        return web.Response(text=(
            '<?xml version="1.0" encoding="UTF-8"?><gesmes:Envelope xmlns:gesmes='
            '"http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/'
            '2002-08-01/eurofxref"><gesmes:subject>Reference rates</gesmes:subject>'
            f"<Cube><Cube time='{day}'>{cubes}</Cube></Cube></gesmes:Envelope>"),
            content_type="text/xml")

    async def quote(self, request: web.Request) -> web.Response:
        amount = float(request.query["amount"])
        fee = self.fees[int(request.match_info["n"])] * amount / 2000
        rate = self.RATES["UGX"] / self.RATES["NOK"] * (1 - self.MARGIN)
        return web.json_response({"quote": {
            "sendAmount": amount, "sendCurrency": "NOK", "receiveCurrency": "UGX",
            "destinationCountry": "UGA", "fee": {"amount": fee, "currency": "NOK"},
            "exchangeRate": round(rate, 4), "receiveAmount": round(amount * rate, 2),
            "deliveryHours": 2, "payIn": "BANK", "payOut": "ACCOUNT"}})


def collector_config(base: str, prefix: str) -> Config:
    sources: list[dict[str, Any]] = [
        {"name": f"{prefix}-ecb", "kind": "ecb_rates", "url": f"{base}/ecb.xml"}]
    for n in range(3):
        sources.append({
            "name": f"{prefix}-op-{n}", "kind": "operator_json",
            "url": base + f"/op/{n}?source={{source}}&amount={{amount}}",
            "requests_per_second": 1000.0,
            "options": {"firm": f"{prefix} Remit {n}", "fields": OPERATOR_FIELDS,
                        "labels": OPERATOR_LABELS, "fee_deducted": False,
                        "reference_sources": [f"{prefix}-ecb"]}})
    return parse_config({
        "service": {"data_dir": DATA_DIR.name},
        "collection": {"backoff_base_seconds": 0.01, "timeout_seconds": 5.0},
        "corridors": [{"from": "NOR", "to": "UGA", "amounts": [2000, 5000]}],
        "sources": sources})


async def collect(config: Config, store: Store) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        reports = await Collector(config, store, session).run_all()
    assert all(r.status == "ok" for r in reports), [(r.source, r.status) for r in reports]


@pytest.fixture
async def market() -> AsyncIterator[tuple[Market, str]]:
    m = Market()
    server = TestServer(m.app(), host="127.0.0.1")
    await server.start_server()
    yield m, str(server.make_url("")).rstrip("/")
    await server.close()


class Receiver:
    """A webhook receiver: keeps what it was sent and whether each signature verified."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.got: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        return app

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = receiver_verifies(self.secret, body, request.headers["Sendcost-Signature"])
        self.got.append({"verified": ok, "payload": json.loads(body),
                         "event_id": request.headers["Sendcost-Event-Id"]})
        return web.Response(status=204 if ok else 400)


@pytest.fixture
async def own_store(fresh_database: str) -> AsyncIterator[tuple[Store, str]]:
    """A database of the test's own: figures no other test's quotes move (the shared one
    holds the bundled survey once test_api has run, whose corridors change the averages)."""
    from corridors.store import connect

    s = await connect(fresh_database, min_size=1, max_size=8)
    await s.migrate()
    yield s, fresh_database
    await s.close()


async def test_a_collection_across_5_percent_gives_a_feed_entry_and_a_signed_webhook_that_survives_a_restart_of_serve(  # noqa: E501
        own_store: tuple[Store, str], market: tuple[Market, str], admin_token: str) -> None:
    store, database_url = own_store
    m, base = market
    prefix = f"a{uuid.uuid4().hex[:6]}"
    collecting = collector_config(base, prefix)
    await collect(collecting, store)  # fees 2-3 % + 1 % margin: the average is 3.5 %
    target = DatabaseTarget(database_url, embedded=False)
    hook_port = _free_port()  # nothing listens there until after the restart

    async with TestClient(TestServer(create_app(app_config(), target))) as client:
        made = await client.post("/v1/admin/webhooks", headers=AUTH, json={
            "url": f"http://127.0.0.1:{hook_port}/hook", "scope": "corridor",
            "value": "NO-UG"})
        assert made.status == 201, await made.text()
        sub = await made.json()
        assert sub["value"] == "NOR-UGA" and sub["secret"].startswith("whsec_")

        async def baseline() -> Any:
            return await store.pool.fetchval(
                "SELECT average FROM alert_corridor_figures WHERE source_code = 'NOR' "
                "AND destination_code = 'UGA' AND amount_usd = 200")
        assert 3.4 < await until(baseline, "the first figures seen") < 3.6
        m.fees = [180.0, 180.0, 180.0]  # 9 % + 1 %: the period's mean goes above 5 %
        await collect(collecting, store)

        async def entry() -> Any:
            resp = await client.get("/v1/feeds/corridor/NOR-UGA.atom")
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
            feed = ET.fromstring(await resp.read())
            return [e for e in feed.findall(f"{ATOM}entry")
                    if e.findtext(f"{ATOM}title", "").endswith(
                        "USD 200: the average total cost rose above 5%")]
        [crossed] = await until(entry, "the corridor's feed entry")
        figures = crossed.find(f"{ATOM}link[@rel='alternate']")
        assert figures is not None
        assert figures.get("href", "").endswith("/v1/corridors/NOR-UGA?period="
                                                f"{dt.datetime.now(dt.UTC):%Y-%m}&amount=200")
        assert "Archived responses behind these figures: raw_responses" in (
            crossed.findtext(f"{ATOM}content") or "")
        event_id = int((crossed.findtext(f"{ATOM}id") or "").rsplit("/", 1)[1])
        event = await store.pool.fetchrow("SELECT * FROM alert_events WHERE id = $1", event_id)
        assert event["details"]["before"] < 5 < event["details"]["after"]
        assert len(event["raw_response_ids"]) >= 3  # one archived answer per operator
        # Each archived response behind it is linked, and served as it was collected.
        related = [link.get("href", "") for link in crossed.findall(f"{ATOM}link[@rel='related']")]
        assert sorted(int(h.rsplit("/", 1)[1]) for h in related) == sorted(
            event["raw_response_ids"])
        archived_resp = await client.get(URL(related[0]).path)
        archived = await archived_resp.json()
        assert msgspec.json.decode(await archived_resp.read(),
                                   type=ArchivedResponse).id == archived["id"]
        assert archived["id"] == int(related[0].rsplit("/", 1)[1])
        assert archived["source"].startswith(prefix) and archived["status"] == 200
        body = await client.get(archived["body_url"])
        assert body.status == 200
        assert hashlib.sha256(await body.read()).hexdigest() == archived["content_hash"]
        assert (await client.get("/v1/archive/x1")).status == 400
        missing = await client.get("/v1/archive/999999999")
        assert missing.status == 404
        assert missing.headers["Content-Type"].startswith("application/problem+json")
        assert msgspec.json.decode(await missing.read(), type=Problem).status == 404
        # The figures it links to say what the detector sees, once both have caught up (a
        # detection between two operators' writes saw the crossing on part of the
        # collection: the event's figure is then below the whole collection's, not above).
        async def agreeing() -> Any:
            resp = await client.get(URL(figures.get("href", "")).path_qs)
            served = (await resp.json())["indicators"]
            seen = await baseline()
            return (served if seen is not None and served["average"] == pytest.approx(seen)
                    else None)
        served = await until(agreeing, "the served figures and the detector's agreeing")
        assert 5 < event["details"]["after"] <= served["average"] + 1e-9

        # The same entry in the sending and receiving countries' feeds and the global one;
        # the operators' fee rises in their providers' feeds.
        for path in ("/v1/feeds/sending/NO.atom", "/v1/feeds/receiving/UGA.atom",
                     "/v1/feeds/global.atom"):
            feed = ET.fromstring(await (await client.get(path)).read())
            assert crossed.findtext(f"{ATOM}id") in [
                e.findtext(f"{ATOM}id") for e in feed.findall(f"{ATOM}entry")], path
        # Each operator's run is its own write: a detection between them sees the corridor
        # cross on two operators' new prices, and the third's fee rise on the next one.
        async def fee_rose() -> Any:
            provider = ET.fromstring(await (await client.get(
                f"/v1/feeds/provider/{prefix}-remit-0.atom")).read())
            titles = [e.findtext(f"{ATOM}title") or ""
                      for e in provider.findall(f"{ATOM}entry")]
            return any(t.startswith(f"{prefix} Remit 0: the fee rose by ") for t in titles)
        await until(fee_rose, "the operator's fee rise in its provider's feed")
        # The page's "watch this corridor" gives the feed's URL.
        page = await (await client.get("/?from=NOR&to=UGA&amount=2000")).text()
        assert '<a href="/v1/feeds/corridor/NOR-UGA.atom" type="application/atom+xml">' \
               "Watch this corridor</a>" in page

        async def queued() -> Any:
            return await store.pool.fetchrow(
                "SELECT status, attempts FROM webhook_deliveries WHERE subscription_id = $1 "
                "AND event_id = $2 AND attempts >= 1", sub["id"], event_id)
        row = await until(queued, "a failed first attempt")
        assert row["status"] == "pending"
    # The app is stopped with the delivery queued; the receiver comes up; `sendcost serve`
    # starts, a process of its own, on the same database, and delivers from the queue.
    receiver = Receiver(sub["secret"])
    hook = TestServer(receiver.app(), host="127.0.0.1", port=hook_port)
    await hook.start_server()
    port = _free_port()
    config = Path(DATA_DIR.name) / "serve.toml"
    config.write_text('[service]\nimport_rpw_on_empty = false\n[bulletin]\nenabled = false\n'
                      '[alerts]\ncheck_seconds = 0.5\ndelivery_seconds = 0.5\n')
    env = {**os.environ, "DATABASE_URL": database_url, "SENDCOST_DATA_DIR": DATA_DIR.name,
           "SENDCOST_ADMIN_TOKEN": TOKEN}
    serve = subprocess.Popen([sys.executable, "-m", "sendcost", "serve", "--config",
                              str(config), "--port", str(port)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        async def delivered() -> Any:
            assert serve.poll() is None, serve.stderr.read() if serve.stderr else "exited"
            return [g for g in receiver.got if g["event_id"] == str(event_id)]
        [got] = await until(delivered, "the delivery after the restart")
        assert got["verified"]
        assert got["payload"]["kind"] == "corridor_crossed"
        assert got["payload"]["details"]["threshold"] == 5.0
        assert got["payload"]["corridor"] == "NOR-UGA"

        async def recorded() -> Any:  # the receiver answered before serve recorded it
            return await store.pool.fetchval(
                "SELECT status = 'delivered' FROM webhook_deliveries WHERE subscription_id "
                "= $1 AND event_id = $2", sub["id"], event_id)
        await until(recorded, "the delivery recorded as delivered")

        async def counted() -> Any:
            async with aiohttp.ClientSession() as http, \
                    http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            return 'sendcost_webhook_deliveries{state="delivered"}' in text and \
                'sendcost_webhook_delivery_attempts_total{outcome="delivered"}' in text
        await until(counted, "the counts in serve's /metrics")
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=30)
        assert serve.returncode == 0 and "Traceback" not in err, err
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
        await hook.close()
    # Once each: the detections of both runs recorded the crossing once.
    assert await store.pool.fetchval(
        "SELECT count(*) FROM alert_events WHERE kind = 'corridor_crossed' AND source_code = "
        "'NOR' AND destination_code = 'UGA' AND amount_usd = 200 AND details->>'measure' = "
        "'average' AND details->>'threshold' = '5.0'") == 1


# --- feeds, admin API, queue --------------------------------------------------------------------


@pytest.fixture
async def client(store: Store, database_url: str, admin_token: str
                 ) -> AsyncIterator[TestClient]:
    # Alerts on, but the jobs not due within a test: the tests call them.
    app = create_app(app_config(check_seconds=3600, delivery_seconds=3600),
                     DatabaseTarget(database_url, embedded=False))
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.mark.parametrize(("path", "status", "parameter"), [
    ("/v1/feeds/corridor/USAMEX.atom", 400, "pair"),
    ("/v1/feeds/corridor/USA-XXX.atom", 422, "pair"),
    ("/v1/feeds/corridor/USA-US.atom", 422, "pair"),
    ("/v1/feeds/sending/U1.atom", 400, "country"),
    ("/v1/feeds/receiving/ZZZ.atom", 422, "country"),
    ("/v1/feeds/provider/no-such-provider-anywhere.atom", 404, None),
])
async def test_bad_feed_parameters_are_problems(client: TestClient, path: str, status: int,
                                                parameter: str | None) -> None:
    resp = await client.get(path)
    assert resp.status == status
    assert resp.headers["Content-Type"] == "application/problem+json"
    body = await resp.json()
    assert body["status"] == status and body.get("parameter") == parameter


async def test_a_bulletin_event_is_in_the_global_feed_once_as_valid_atom(
        client: TestClient, store: Store) -> None:
    period = f"20{uuid.uuid4().int % 90 + 10}Q1"  # a period no other test publishes
    await bulletin_published(client.app, period)
    await bulletin_published(client.app, period)  # published again: not news
    assert await store.pool.fetchval("SELECT count(*) FROM alert_events WHERE event_key = $1",
                                     f"new_bulletin:{period}") == 1
    resp = await client.get("/v1/feeds/global.atom")
    assert resp.status == 200 and resp.headers["ETag"]
    feed = ET.fromstring(await resp.read())
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}id") == "tag:sendcost.org,2026:feed/global"
    for required in ("title", "updated", "author/" + ATOM + "name"):
        assert feed.findtext(ATOM + required), required
    self_link = feed.find(f"{ATOM}link[@rel='self']")
    assert self_link is not None and self_link.get("href", "").endswith("/v1/feeds/global.atom")
    entries = [e for e in feed.findall(f"{ATOM}entry")
               if period in (e.findtext(f"{ATOM}title") or "")]
    assert len(entries) == 1
    e = entries[0]
    assert (e.findtext(f"{ATOM}id") or "").startswith("tag:sendcost.org,2026:event/")
    dt.datetime.strptime(e.findtext(f"{ATOM}updated") or "", "%Y-%m-%dT%H:%M:%SZ")
    link = e.find(f"{ATOM}link")
    assert link is not None and link.get("href", "").endswith(f"/v1/bulletins/{period}/")
    again = await client.get("/v1/feeds/global.atom",
                             headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


async def test_subscriptions_need_the_token_and_good_values(client: TestClient) -> None:
    no = await client.post("/v1/admin/webhooks", json={"url": "http://127.0.0.1:9/x"})
    assert no.status == 401
    for body, parameter in [({"url": "ftp://x/y"}, "url"), ({}, "url"),
                            ({"url": "http://h/x", "scope": "planet"}, "scope"),
                            ({"url": "http://h/x", "scope": "corridor"}, "value"),
                            ({"url": "http://h/x", "scope": "sending", "value": "XX"}, "value"),
                            ({"url": "http://h/x", "colour": "red"}, "colour")]:
        resp = await client.post("/v1/admin/webhooks", headers=AUTH, json=body)
        assert resp.status in (400, 422), (body, resp.status)
        assert (await resp.json())["parameter"] == parameter, body
    bad_json = await client.post("/v1/admin/webhooks", headers=AUTH, data=b"{")
    assert bad_json.status == 400 and (await bad_json.json())["parameter"] == "body"
    made = await client.post("/v1/admin/webhooks", headers=AUTH,
                             json={"url": "http://127.0.0.1:9/x", "scope": "receiving",
                                   "value": "mx"})
    assert made.status == 201
    sub = await made.json()
    assert sub["value"] == "MEX" and sub["scope"] == "receiving"
    # Each body is its contract model's, to the key and type (decoding is strict).
    assert msgspec.json.decode(await made.read(), type=WebhookCreated).secret == sub["secret"]
    listed_resp = await client.get("/v1/admin/webhooks", headers=AUTH)
    listed = await listed_resp.json()
    msgspec.json.decode(await listed_resp.read(), type=Webhooks)
    mine = [w for w in listed["webhooks"] if w["id"] == sub["id"]]
    assert mine and "secret" not in mine[0]
    assert mine[0]["deliveries"] == {"pending": 0, "delivered": 0, "dead": 0}
    assert (await client.delete(f"/v1/admin/webhooks/{sub['id']}", headers=AUTH)).status == 204
    assert (await client.delete(f"/v1/admin/webhooks/{sub['id']}", headers=AUTH)).status == 404


async def test_a_failing_receiver_is_retried_with_backoff_then_dead(
        store: Store, database_url: str, admin_token: str) -> None:
    calls: list[float] = []

    async def refuse(request: web.Request) -> web.Response:
        calls.append(time.monotonic())
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/hook", refuse)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    config = app_config(check_seconds=3600, delivery_seconds=3600, max_attempts=3,
                        backoff_base_seconds=0.3, backoff_max_seconds=0.3)
    client = TestClient(TestServer(create_app(config, DatabaseTarget(database_url,
                                                                     embedded=False))))
    await client.start_server()
    try:
        period = f"19{uuid.uuid4().int % 90 + 10}Q2"
        url = str(server.make_url("/hook"))
        sub = await (await client.post("/v1/admin/webhooks", headers=AUTH,
                                       json={"url": url, "scope": "global"})).json()
        event = await record_event(store.pool, NewEvent(
            key=f"new_bulletin:{period}", kind="new_bulletin", title="t", summary="s",
            figures_path=f"/v1/bulletins/{period}/", period=period))
        assert event is not None

        async def state() -> Any:
            await deliver_due(client.app)
            row = await store.pool.fetchrow(
                "SELECT status, attempts, last_status FROM webhook_deliveries "
                "WHERE subscription_id = $1", sub["id"])
            return row if row["status"] == "dead" else None
        row = await until(state, "a dead delivery", timeout=30)
        assert (row["attempts"], row["last_status"]) == (3, 500)
        assert len(calls) == 3 and calls[1] - calls[0] >= 0.3 and calls[2] - calls[1] >= 0.3
        text = await (await client.get("/metrics")).text()
        # At least this one: deliveries other tests left in the session's database (to
        # receivers long gone) may die in the same deliver_due passes.
        dead_total = re.search(
            r'^sendcost_webhook_delivery_attempts_total\{outcome="dead"\} (\S+)$', text, re.M)
        assert dead_total and float(dead_total.group(1)) >= 1.0, text
        # The dead letter, its last error, and a redelivery once the receiver is fixed.
        dead = await client.get(f"/v1/admin/webhooks/{sub['id']}/deliveries?state=dead",
                                headers=AUTH)
        [letter] = (await dead.json())["deliveries"]
        assert msgspec.json.decode(await dead.read(), type=WebhookDeliveries).webhook == \
            sub["id"]
        assert (letter["state"], letter["attempts"], letter["last_status"],
                letter["last_error"], letter["title"]) == ("dead", 3, 500, "HTTP 500", "t")
        bad = await client.get(f"/v1/admin/webhooks/{sub['id']}/deliveries?state=lost",
                               headers=AUTH)
        assert bad.status == 400 and (await bad.json())["parameter"] == "state"
        again = await client.post(f"/v1/admin/webhooks/{sub['id']}/redeliver", headers=AUTH)
        assert again.status == 202 and (await again.json())["queued"] == 1
        assert msgspec.json.decode(await again.read(), type=WebhookRedelivered).queued == 1
        assert await store.pool.fetchval(
            "SELECT (status, attempts)::text FROM webhook_deliveries WHERE subscription_id = $1",
            sub["id"]) == "(pending,0)"
        assert (await client.post("/v1/admin/webhooks/999999999/redeliver",
                                  headers=AUTH)).status == 404
    finally:
        await client.delete(f"/v1/admin/webhooks/{sub['id']}", headers=AUTH)
        await client.close()
        await server.close()


async def test_two_deliverers_never_take_the_same_delivery(client: TestClient,
                                                           store: Store) -> None:
    sub = await (await client.post("/v1/admin/webhooks", headers=AUTH, json={
        "url": "http://127.0.0.1:9/none", "scope": "global"})).json()
    try:
        for _ in range(6):
            period = f"18{uuid.uuid4().int % 90 + 10}Q3-{uuid.uuid4().hex[:4]}"
            await record_event(store.pool, NewEvent(
                key=f"new_bulletin:{period}", kind="new_bulletin", title="t", summary="s",
                figures_path="/", period=None))
        async with store.pool.acquire() as a, store.pool.acquire() as b:
            ta, tb = a.transaction(), b.transaction()
            await ta.start()
            await tb.start()
            # Two claimers at once, each in a transaction still open: SKIP LOCKED.
            first = await a.fetch("SELECT id FROM webhook_deliveries WHERE subscription_id = $1"
                                  " AND status = 'pending' FOR UPDATE SKIP LOCKED LIMIT 4",
                                  sub["id"])
            second = await b.fetch("SELECT id FROM webhook_deliveries WHERE subscription_id ="
                                   " $1 AND status = 'pending' FOR UPDATE SKIP LOCKED",
                                   sub["id"])
            await ta.rollback()
            await tb.rollback()
        assert len(first) == 4 and len(second) == 2
        assert not {r["id"] for r in first} & {r["id"] for r in second}
        # And the queue's own claim, twice at once: disjoint, every due one taken once.
        got = await asyncio.gather(claim_due(store.pool, 100, 60), claim_due(store.pool, 100, 60))
        mine = [[r["delivery_id"] for r in g if r["url"].endswith("/none")] for g in got]
        assert not set(mine[0]) & set(mine[1]) and len(mine[0]) + len(mine[1]) == 6
    finally:
        await client.delete(f"/v1/admin/webhooks/{sub['id']}", headers=AUTH)


async def test_replicas_record_an_event_once_and_an_older_snapshot_changes_nothing(
        store: Store) -> None:
    key = f"corridor_crossed:TST-{uuid.uuid4().hex[:8]}"
    was = int(await store.pool.fetchval("SELECT version FROM alert_cursor"))
    version = was + 1000
    seen: list[int] = []

    async def detect(before: Figures) -> tuple[list[NewEvent], Figures]:
        seen.append(before[0].height)
        await asyncio.sleep(0.2)  # both replicas at once: the second waits for the cursor
        return ([NewEvent(key=key, kind="corridor_crossed", title="t", summary="s",
                          figures_path="/")],
                (pl.DataFrame(schema=CORRIDOR_FIGURES_SCHEMA),
                 pl.DataFrame(schema=SERVICE_FIGURES_SCHEMA),
                 pl.DataFrame(schema=GLOBAL_FIGURES_SCHEMA)))
    try:
        a, b = await asyncio.gather(record_detection(store.pool, version, detect),
                                    record_detection(store.pool, version, detect))
        # The second waited for the first's cursor, found this snapshot compared: nothing.
        assert (a is None) != (b is None)
        assert len(a or b or []) == 1 and len(seen) == 1
        assert await store.pool.fetchval(
            "SELECT count(*) FROM alert_events WHERE event_key = $1", key) == 1
        # The same event found again at a newer snapshot is not written twice.
        assert await record_detection(store.pool, version + 1, detect) == []
        # A replica whose snapshot is older than the last one compared does nothing.
        assert await record_detection(store.pool, version - 1, detect) is None
        assert len(seen) == 2
    finally:  # the session's other tests detect at their own snapshots
        await store.pool.execute("UPDATE alert_cursor SET version = $1", was)


# --- retention ---------------------------------------------------------------------------------


async def test_retention_drops_ended_deliveries_and_old_events_but_never_a_pending_one(
        fresh_database: str) -> None:
    from corridors.alerts import prune_alerts
    from corridors.store import connect

    store = await connect(fresh_database, min_size=1, max_size=2)
    try:
        await store.migrate()
        pool = store.pool
        now = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
        ago = lambda days: now - dt.timedelta(days=days)  # noqa: E731
        sub = await pool.fetchval("INSERT INTO webhook_subscriptions (url, scope, secret) "
                                  "VALUES ('http://127.0.0.1:9/h', 'global', 's') RETURNING id")

        async def event(key: str, created: dt.datetime, status: str | None,
                        ended: dt.datetime | None = None) -> int:
            eid = await pool.fetchval(
                "INSERT INTO alert_events (event_key, kind, title, summary, figures_path, "
                "created_at) VALUES ($1, 'new_bulletin', $1, $1, '/v1/indicators', $2) "
                "RETURNING id", key, created)
            if status is not None:
                await pool.execute(
                    "INSERT INTO webhook_deliveries (subscription_id, event_id, status, "
                    "delivered_at, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    sub, eid, status, ended if status == "delivered" else None,
                    ended or created, created)
            return int(eid)

        old_delivered = await event("old-delivered", ago(400), "delivered", ago(399))
        old_pending = await event("old-pending", ago(400), "pending", ago(400))
        old_dead_recent = await event("old-dead", ago(400), "dead", ago(10))
        new_delivered = await event("new-delivered", ago(5), "delivered", ago(4))
        old_bare = await event("old-bare", ago(500), None)
        await event("new-bare", ago(1), None)

        # 0 keeps everything.
        kept = await prune_alerts(pool, deliveries_days=0, events_days=0, now=now)
        assert (kept.deliveries, kept.events) == (0, 0)

        pruned = await prune_alerts(pool, deliveries_days=90, events_days=365, now=now)
        # The delivery that ended 399 days ago; the events older than a year but the one a
        # delivery still waits for (the recent dead letter goes with its event).
        assert pruned.deliveries == 1
        assert pruned.events == 3
        left = {r["id"] for r in await pool.fetch("SELECT id FROM alert_events")}
        assert old_pending in left and new_delivered in left
        assert not {old_delivered, old_dead_recent, old_bare} & left
        states = {r["event_id"]: r["status"] for r in await pool.fetch(
            "SELECT event_id, status FROM webhook_deliveries")}
        assert states == {old_pending: "pending", new_delivered: "delivered"}
        # Run again: nothing more to drop (a daily job finds only what aged since).
        again = await prune_alerts(pool, deliveries_days=90, events_days=365, now=now)
        assert (again.deliveries, again.events) == (0, 0)
    finally:
        await store.close()


def test_retention_settings_are_checked() -> None:
    assert app_config().alerts.keep_deliveries_days == 90
    assert app_config().alerts.keep_events_days == 0
    with pytest.raises(ConfigError, match=r"alerts\.keep_events_days"):
        app_config(keep_events_days=-1)
    with pytest.raises(ConfigError, match="alerts"):
        app_config(keep_deliveries_days="soon")


async def test_serve_runs_the_retention_daily(client: TestClient) -> None:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from publish.feeds import RETENTION_JOB, add_jobs, retention_job

    scheduler = AsyncIOScheduler(timezone="UTC")
    add_jobs(client.app, scheduler)
    job = scheduler.get_job(RETENTION_JOB)
    assert job is not None and "hour='0', minute='30'" in str(job.trigger)
    pruned = await retention_job(client.app)  # on the test's database: runs, drops by age
    assert pruned is not None and pruned.deliveries >= 0 and pruned.events == 0
