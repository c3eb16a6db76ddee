"""The real posts' published tariffs bundled in corridors/data/postal_tariffs/: what each
says, its data kind, its age, and a collection of one through the CLI on the real
PostgreSQL, then answered by the running service."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import os
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector import postal_tariff
from collector.context import Fetched
from collector.kinds import data_kind
from collector.model import corridor_specs
from collector.sources import check_sources
from corridors.config import DatabaseConfig, load_config, parse_config
from corridors.db import DatabaseTarget
from corridors.types import DataKind
from sendcost.wiring import create_app

ROOT = Path(__file__).resolve().parent.parent
TARIFFS = ROOT / "corridors" / "data" / "postal_tariffs"
#: Source name -> (file, operator, sending country, currency, fixed fee, % fee, page).
BUNDLED = {
    "tariff-japan-post-bank": ("japan_post_bank.json", "Japan Post Bank", "JPN", "JPY",
                               Decimal(7500), Decimal(0),
                               "https://www.jp-bank.japanpost.jp/en/djp/en_djp_index.html"),
    "tariff-postfinance": ("postfinance.json", "PostFinance (Swiss Post)", "CHE", "CHF",
                           Decimal(2), Decimal(0), "https://www.postfinance.ch/en/private/"
                           "products/payments/giro-international.html"),
    "tariff-correos": ("correos.json", "Correos", "ESP", "EUR", Decimal("5.75"),
                       Decimal("1.5"), "https://libremercado.com/2018-05-20/guia-practica-"
                       "para-enviar-dinero-al-extranjero-sin-pagar-muchas-comisiones-"
                       "1276618902"),
}


@pytest.fixture(scope="module")
def shipped() -> dict[str, object]:
    config = load_config(ROOT / "config.toml")
    check_sources(config)
    return {s.name: s for s in config.sources if s.kind == "postal_tariff"}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_each_bundled_tariff_is_what_its_page_says(name: str, shipped: dict) -> None:
    file, operator, country, currency, fixed, pct, page = BUNDLED[name]
    source = shipped[name]
    assert source.url == f"corridors/data/postal_tariffs/{file}"
    doc = json.loads((TARIFFS / file).read_text(encoding="utf-8"))
    # Provenance: the page, the day it was read, the text the figures come from.
    assert doc["data_kind"] == "published_tariff" and doc["source_url"] == page
    assert dt.date.fromisoformat(doc["read_on"]) and doc["quoted"]
    tariff = postal_tariff.parse(source, (TARIFFS / file).read_bytes())
    assert (tariff.operator, tariff.country, tariff.currency, tariff.source_url) == (
        operator, country, currency, page)
    assert tariff.destinations and not tariff.unplaced
    for d in tariff.destinations.values():
        assert d.problem is None
        # No post publishes its exchange rate or margin on these pages: never made up.
        assert d.applied_rate is None and d.fx_margin_pct is None
        assert [(b.fixed_fee, b.pct_fee) for b in d.bands] == [(fixed, pct)]
    # The figures of the pages are quoted in the file: the fee appears in the text.
    shown = {"tariff-japan-post-bank": "¥7,500", "tariff-postfinance": "CHF 2",
             "tariff-correos": "5,75 euros más un 1,50%"}[name]
    assert shown in doc["quoted"]
    assert data_kind(source, {}) is DataKind.PUBLISHED_TARIFF
    assert data_kind(source, {"Sendcost-Emulated": "true"}) is DataKind.EMULATED
    # Without the option a postal tariff is the post's own quote, as before.
    plain = dataclasses.replace(source, options={
        k: v for k, v in source.options.items() if k != "data_kind"})
    assert data_kind(plain, {}) is DataKind.OBSERVED


@dataclasses.dataclass
class _Corridors:
    """What ``postal_tariff.drafts`` reads of a run: the corridors, no reference rate."""

    corridors: list
    config: object = None

    def reference(self, base: str, quote: str) -> None:
        return None


def test_a_bundled_tariff_prices_the_monitored_corridors(shipped: dict) -> None:
    config = parse_config({"corridors": [{"from": "ESP", "to": "SEN"},
                                         {"from": "ESP", "to": "MAR"}]})
    source = shipped["tariff-correos"]
    body = (TARIFFS / "correos.json").read_bytes()
    tariff = postal_tariff.parse(source, body)
    fetched = Fetched(1, source.url, 200, body, dt.datetime(2026, 12, 7, tzinfo=dt.UTC), {},
                      "x")
    ctx = _Corridors(corridor_specs(config))
    drafts, rejected = postal_tariff.drafts(source, tariff, ctx, fetched)  # type: ignore[arg-type]
    # Morocco is not a Eurogiro destination the pages name: not priced.
    assert {d.corridor.key for d in drafts if d.corridor} == {"ESP-SEN"} and not rejected
    for d in drafts:
        assert d.fee == (Decimal("5.75") + Decimal("1.5") * d.send_amount / 100).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP)
        assert d.applied_rate is None and d.firm.name == "Correos"
        assert d.flags == ("rate_undisclosed",)
        assert d.service.product == "Giro internacional Eurogiro"


def test_an_old_tariff_is_reported_once(shipped: dict, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    config = load_config(ROOT / "config.toml")
    today = dt.date(2026, 12, 7)
    with caplog.at_level(logging.WARNING, logger="collector.postal_tariff"):
        first = postal_tariff.stale_tariffs(config, today)
        second = postal_tariff.stale_tariffs(config, today)
    # Correos' figures are of 2018; the two others were read on 2026-12-07.
    assert first == second == [{
        "source": "tariff-correos", "dated": "2018-05-20",
        "age_days": (today - dt.date(2018, 5, 20)).days, "max_age_days": 365.0,
        "source_url": BUNDLED["tariff-correos"][6], "enabled": True}]
    logged = [r for r in caplog.records if "tariff-correos" in r.getMessage()]
    assert len(logged) == 1 and "postal_tariff_max_age_days" in logged[0].getMessage()
    relaxed = dataclasses.replace(config, collection=dataclasses.replace(
        config.collection, postal_tariff_max_age_days=10000.0))
    assert postal_tariff.stale_tariffs(relaxed, today) == []


def test_bad_tariff_options_are_named() -> None:
    from corridors.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data_kind: expected observed or published_tariff"):
        check_sources(parse_config({"sources": [{
            "name": "t", "kind": "postal_tariff", "url": "t.json",
            "options": {"data_kind": "survey"}}]}))
    with pytest.raises(ConfigError, match="expected an absolute http"):
        parse_config({"sources": [{"name": "e", "kind": "ecb_rates", "url": "rates.xml"}]})


# --- collected through the CLI into the real PostgreSQL, answered by the service ------------



async def _rates_upstream() -> TestServer:
    """A JSON rates API on loopback: JPY -> PHP, dated now (a fresh reference rate)."""
    async def rates(request: web.Request) -> web.Response:
        return web.json_response({"base": "JPY", "date": dt.datetime.now(dt.UTC).isoformat(),
                                  "rates": {"PHP": 0.39, "USD": 0.0067}})

    app = web.Application()
    app.router.add_get("/latest", rates)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_collected_by_the_cli_and_served(fresh_database: str, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    # A copy, removed before the re-parse: that must read the archived bytes.
    tariff = tmp_path / "japan_post_bank.json"
    tariff.write_bytes((TARIFFS / "japan_post_bank.json").read_bytes())
    upstream = await _rates_upstream()
    cfg.write_text(
        '[service]\nimport_rpw_on_empty = false\n\n'
        '[[corridors]]\nfrom = "JPN"\nto = "PHL"\n\n'
        f'[[sources]]\nname = "rates"\nkind = "json_rates"\n'
        f'url = "{upstream.make_url("/latest")}"\n\n'
        '[[sources]]\nname = "tariff-japan-post-bank"\nkind = "postal_tariff"\n'
        f'url = "{tariff}"\noptions.data_kind = "published_tariff"\n'
        'options.pay_in = "bank_account"\noptions.pay_out = "bank_account"\n'
        'options.product = "International remittance: Account Transfer"\n',
        encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=fresh_database, SENDCOST_DATA_DIR=str(tmp_path))

    def sendcost(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sendcost", *args, "--config", str(cfg)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    out = sendcost("db", "migrate")
    assert out.returncode == 0, out.stderr
    try:
        out = await asyncio.to_thread(sendcost, "collect")
    finally:
        await upstream.close()
    assert out.returncode == 0, out.stdout + out.stderr
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM quarantined_quotes") == 0
        quotes = await conn.fetch(
            "SELECT amount_usd, fee, applied_rate, data_kind, raw_response_id, transparent, "
            "flags FROM quotes ORDER BY amount_usd")
        raw = await conn.fetchrow("SELECT url, status, payload FROM raw_responses WHERE id = $1",
                                  quotes[0]["raw_response_id"])
    finally:
        await conn.close()
    # The fee the page states; no rate (the page gives none): not transparent, flagged.
    assert [(q["amount_usd"], q["fee"], q["applied_rate"], q["data_kind"], q["transparent"])
            for q in quotes] == [(200, Decimal("7500.00"), None, "published_tariff", False),
                                 (500, Decimal("7500.00"), None, "published_tariff", False)]
    assert all("rate_undisclosed" in q["flags"] for q in quotes)
    # The file is archived as it was read: a re-parse reads these bytes.
    assert (raw["url"], raw["status"]) == (str(tariff), 200)
    assert bytes(raw["payload"]) == tariff.read_bytes()
    conn = await asyncpg.connect(fresh_database)
    try:
        run = await conn.fetchval("SELECT id FROM collection_runs WHERE source = $1",
                                  "tariff-japan-post-bank")
        body = tariff.read_bytes()
        tariff.unlink()
        out = await asyncio.to_thread(sendcost, "collect", "--reparse", str(run))
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"re-parse of run {run}" in out.stdout, out.stdout
        assert await conn.fetchval("SELECT count(*) FROM quotes") == len(quotes)
        tariff.write_bytes(body)
    finally:
        await conn.close()

    # The export from the store says what its figures rest on: the post's published tariff.
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    out = sendcost("export", "postal", "--period", month, "--by", "corridor", "--out",
                   str(tmp_path / "exports"))
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "exports" / f"postal-{month}-by-corridor.json").read_text())
    assert doc["provenance"] == [{"source": "tariff-japan-post-bank",
                                  "data_kind": "published_tariff", "quotes": 1,
                                  "from": month, "to": month}]
    assert [(r["firm"], r["data_kinds"], r["post_total_cost_pct"]) for r in doc["rows"]] == [
        ("Japan Post Bank", "published_tariff", None)]

    config = dataclasses.replace(load_config(cfg), database=DatabaseConfig(url=fresh_database))
    async with TestClient(TestServer(create_app(config, DatabaseTarget(
            fresh_database, embedded=False)))) as client:
        resp = await client.get("/v1/postal/summary")
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert [(r["source_code"], r["destination_code"], r["firm"], r["role"],
                 r["post_services"], r["post_total_cost_pct"], r["data_kinds"])
                for r in body["rows"]] == [
            ("JPN", "PHL", "Japan Post Bank", "sender", 1, None, "published_tariff")]
        health = await (await client.get("/healthz")).json()
        assert health["stale_tariffs"] == []


async def test_a_newer_month_of_fee_only_tariffs_does_not_hide_the_priced_one(
        fresh_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A post's published tariff states a fee and no rate: no total cost. The month it is
    collected in is not what a migrant is shown by default while an earlier month priced the
    corridor; asked for (``period``), it is answered."""
    from api_support import make_app
    from test_api_database import CHECK, quote, until

    from corridors import runtime
    from publish import data as publish_data

    monkeypatch.setattr(publish_data, "REFRESH_SECONDS", CHECK)
    tariff = dataclasses.replace(
        quote(9, period="2026-11"), firm=dataclasses.replace(quote(9).firm, name="Post 9"),
        service_key="test:post9:USA-MEX:account", applied_rate=None, transparent=False,
        source="tariff-post-9", data_kind=DataKind.PUBLISHED_TARIFF)
    priced = [quote(n, period="2026-10") for n in (1, 2)]
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        await client.app[runtime.STORE].store_quotes([*priced, tariff])
        url = "/v1/compare?from=USA&to=MEX&amount=200"
        body = json.loads(await until(client, url, lambda status, _: status == 200))
        assert body["period"] == "2026-10"
        assert [s["provider"] for s in body["services"]] == ["Firm 1", "Firm 2"]
        newer = await client.get(url + "&period=2026-11")
        assert newer.status == 200
        doc = await newer.json()
        assert doc["period"] == "2026-11" and doc["services"] == []
        assert [(s["provider"], s["total_cost_pct"], s["data_kind"])
                for s in doc["non_transparent"]] == [("Post 9", None, "published_tariff")]
        page = await client.get("/?from=USA&to=MEX&amount=200")
        assert page.status == 200 and "Firm 1" in await page.text()
