"""What kind of data each quote is (survey, observed, estimate, emulated), and emulated data
never passing for real prices: through the collector, the store's migration, the CLI
(bulletin, export, indicators) and the running service (API and page), on a real
PostgreSQL, with the sandbox served on loopback by an aiohttp test server."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import io
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import make_app

from collector.kinds import EMULATED_HEADER, data_kind, is_sandbox_url
from collector.run import Collector
from collector.sandbox import Faults, Sandbox, sources_config
from corridors.config import Config, SandboxConfig, SourceConfig, parse_config
from corridors.periods import month_of
from corridors.store import Store, connect, migrations
from corridors.types import EMULATED_WARNING, DataKind
from metrics.kinds import TABLE_CAVEATS

ROOT = Path(__file__).resolve().parent.parent
CORRIDORS = [("USA", "MEX"), ("FRA", "SEN"), ("GBR", "IND")]


def sandbox_config(base_url: str, prefix: str) -> Config:
    """The sandbox's rates, comparison feed, two operators and a post, named ``prefix-…``."""
    sources = sources_config(base_url, operators_n=2, posts=("FRA",))
    for s in sources:
        s["name"] = s["name"].replace("sandbox", prefix)
        s["requests_per_second"] = 1000.0
        if s["kind"] != "ecb_rates":
            s.setdefault("options", {})["reference_sources"] = [f"{prefix}-ecb"]
    return parse_config({"collection": {"timeout_seconds": 5.0},
                         "corridors": [{"from": a, "to": b} for a, b in CORRIDORS],
                         "sources": sources})


async def collect(store: Store, *, marked: bool = True) -> tuple[str, list[str], Config]:
    """Collect once from a sandbox on a random loopback port: as it is (every response
    marked emulated), or with its mark taken off (``marked=False``: an upstream like any
    other). Returns the sources' prefix, the names of the quote sources and the config."""
    app = Sandbox(Faults(), operators_n=2).app()
    if not marked:
        app.on_response_prepare.clear()
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    prefix = f"k{uuid.uuid4().hex[:8]}"
    try:
        config = sandbox_config(str(server.make_url("")).rstrip("/"), prefix)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            reports = await Collector(config, store, http, seed=1).run_all()
    finally:
        await server.close()
    assert all(r.status == "ok" for r in reports), [r.line() for r in reports]
    return prefix, [s.name for s in config.sources if s.kind != "ecb_rates"], config


async def kinds_by_source(store: Store, prefix: str) -> dict[str, set[str]]:
    rows = await store.pool.fetch(
        "SELECT source, array_agg(DISTINCT data_kind) AS kinds FROM quotes "
        "WHERE source LIKE $1 GROUP BY source", f"{prefix}-%")
    return {r["source"].removeprefix(prefix + "-"): set(r["kinds"]) for r in rows}


# --- the collector ---------------------------------------------------------------------------


async def test_whatever_the_config_says_the_sandboxs_quotes_are_emulated(store: Store) -> None:
    prefix, _, config = await collect(store)
    assert await kinds_by_source(store, prefix) == {
        "comparison": {"emulated"}, "op-0": {"emulated"}, "op-1": {"emulated"},
        "post-fra": {"emulated"}}
    # The mark is archived with every response: a re-parse knows it as well.
    marks = await store.pool.fetch(
        "SELECT DISTINCT headers->>$2 AS mark FROM raw_responses WHERE source LIKE $1",
        f"{prefix}-%", EMULATED_HEADER)
    assert [r["mark"] for r in marks] == ["true"]
    run = await store.pool.fetchval(
        "SELECT run_id FROM quotes WHERE source = $1 LIMIT 1", f"{prefix}-op-0")
    async with aiohttp.ClientSession() as http:  # the sandbox is gone: nothing is fetched
        redo = await Collector(config, store, http).reparse(run)
    assert redo.stored > 0
    assert await kinds_by_source(store, prefix) == {
        "comparison": {"emulated"}, "op-0": {"emulated"}, "op-1": {"emulated"},
        "post-fra": {"emulated"}}


async def test_without_the_mark_each_source_kind_says_what_its_quotes_are(
        fresh_database: str) -> None:
    # A database of its own: these quotes pass for real ones, and must not reach the
    # session's other tests.
    store = await connect(fresh_database)
    try:
        await store.migrate()
        prefix, _, _ = await collect(store, marked=False)
        assert await kinds_by_source(store, prefix) == {
            "comparison": {"estimate"}, "op-0": {"observed"}, "op-1": {"observed"},
            "post-fra": {"observed"}}
    finally:
        await store.close()


def test_a_source_at_the_sandboxs_address_is_emulated_even_without_the_mark() -> None:
    at_sandbox = SourceConfig(name="real-looking", kind="operator_json",
                              url="http://127.0.0.1:8765/operators/0/quote?x={amount}")
    elsewhere = SourceConfig(name="op", kind="operator_json",
                             url="https://api.example.com/quote?x={amount}")
    feed = SourceConfig(name="feed", kind="comparison", url="https://feed.example.com/v4")
    assert is_sandbox_url(at_sandbox.url) and not is_sandbox_url(elsewhere.url)
    assert data_kind(at_sandbox, {}) is DataKind.EMULATED
    assert data_kind(elsewhere, {}) is DataKind.OBSERVED
    assert data_kind(feed, {}) is DataKind.ESTIMATE
    # The mark can only lower a quote to emulated, whatever case its name is sent in.
    assert data_kind(elsewhere, {"sendcost-emulated": "true"}) is DataKind.EMULATED
    assert data_kind(feed, {"Sendcost-Emulated": "false"}) is DataKind.ESTIMATE


def test_the_emulated_mark_follows_the_configured_sandbox_address() -> None:
    """With the sandbox moved ([sandbox] port, serve --sandbox-port), a source at the new
    address is emulated, and one at 8765 is no longer taken for the sandbox by its address
    (the Sendcost-Emulated header still marks whatever the sandbox sends)."""
    moved = SandboxConfig(port=9123)
    at_moved = SourceConfig(name="op", kind="operator_json",
                            url="http://localhost:9123/operators/0/quote?x={amount}")
    at_default = SourceConfig(name="op", kind="operator_json",
                              url="http://127.0.0.1:8765/operators/0/quote?x={amount}")
    assert data_kind(at_moved, {}, moved) is DataKind.EMULATED
    assert data_kind(at_default, {}, moved) is DataKind.OBSERVED
    assert data_kind(at_default, {"Sendcost-Emulated": "true"}, moved) is DataKind.EMULATED
    assert data_kind(at_moved, {}) is DataKind.OBSERVED  # the default address: 8765
    lan = SandboxConfig(host="10.0.0.5", port=8765)
    assert is_sandbox_url("http://10.0.0.5:8765/ecb/eurofxref-daily.xml", lan)
    assert not is_sandbox_url("http://127.0.0.1:8765/ecb/eurofxref-daily.xml", lan)
    assert not is_sandbox_url("http://10.0.0.6:8765/ecb/eurofxref-daily.xml", lan)


# --- the migration ---------------------------------------------------------------------------


async def test_migration_gives_stored_quotes_their_kind_by_where_they_came_from(
        fresh_database: str) -> None:
    conn = await asyncpg.connect(fresh_database)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                           "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        for version, name, sql in migrations():
            if version <= 5:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)",
                                   version, name)
        await conn.execute(
            "INSERT INTO corridors (id, source_code, destination_code) VALUES (1, 'USA', 'MEX');"
            "INSERT INTO firms (id, name, firm_type) VALUES (1, 'Acme', 'mto');"
            "INSERT INTO services (id, service_key, corridor_id, firm_id) VALUES (1, 's', 1, 1);"
            "INSERT INTO imports (id, kind, path, file_hash) VALUES (1, 'rpw', 'f', 'h');"
            "INSERT INTO raw_responses (id, source, url, fetched_at, content_hash) VALUES "
            "(1, 'local-ops', 'http://127.0.0.1:8765/operators/0/quote', now(), 'h'),"
            "(2, 'acme', 'https://api.acme.example/quote', now(), 'h')")
        rows = [  # (source, import id, raw response id, flags)
            ("rpw", 1, None, []), ("sandbox-op-0", None, None, []),
            ("local-ops", None, 1, []), ("feed", None, 2, ["comparison_feed", "estimate"]),
            ("acme", None, 2, ["negative_margin"])]
        for i, (source, import_id, raw_id, flags) in enumerate(rows):
            await conn.execute(
                "INSERT INTO quotes (service_id, period, amount_usd, send_amount, "
                "send_currency, transparent, collected_at, source, import_id, "
                "raw_response_id, flags) VALUES (1, '2026-11', 200, 200, 'USD', true, "
                "$1, $2, $3, $4, $5)",
                dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i), source,
                import_id, raw_id, flags)
    finally:
        await conn.close()
    store = await connect(fresh_database)
    try:
        assert [n for n in await store.migrate() if n.startswith("0006")]
        got = {r["source"]: r["data_kind"] for r in await store.pool.fetch(
            "SELECT source, data_kind FROM quotes")}
        frame = await store.quote_frame("2026-11")
        # Rolled up by migration 8 before the rollups kept flags, given them by migration 11.
        rolled = {r["source"]: r["flags"] for r in await store.pool.fetch(
            "SELECT source, flags FROM service_periods")}
    finally:
        await store.close()
    assert got == {"rpw": "survey", "sandbox-op-0": "emulated", "local-ops": "emulated",
                   "feed": "estimate", "acme": "observed"}
    # The quote frame carries the kind and the flags.
    assert dict(zip(frame["source"].cast(str), frame["data_kind"].cast(str), strict=True)) == got
    assert set(frame["flags"].to_list()) == {"", "comparison_feed estimate", "negative_margin"}
    assert rolled == {"rpw": [], "sandbox-op-0": [], "local-ops": [],
                      "feed": ["comparison_feed", "estimate"], "acme": ["negative_margin"]}
    # And no writer can store a kind nobody knows.
    conn = await asyncpg.connect(fresh_database)
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE quotes SET data_kind = 'guess' WHERE source = 'acme'")
    finally:
        await conn.close()


# --- a store holding only the sandbox's quotes: the CLI and the running service ----------------


@pytest.fixture
async def emulated_store(fresh_database: str) -> AsyncIterator[tuple[str, list[str]]]:
    """A database whose only quotes are the sandbox's: (url, quote source names)."""
    store = await connect(fresh_database)
    try:
        await store.migrate()
        _, names, _ = await collect(store)
    finally:
        await store.close()
    yield fresh_database, names


async def sendcost(database_url: str, *args: str) -> tuple[int, str, str]:
    """Run the ``sendcost`` CLI as a user does; (exit code, stdout, stderr)."""
    env = {**os.environ, "DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sendcost", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def this_month() -> str:
    return month_of(dt.datetime.now(dt.UTC))


async def test_the_bulletin_refuses_emulated_data_naming_its_sources(
        emulated_store: tuple[str, list[str]], tmp_path: Path) -> None:
    url, names = emulated_store
    month = this_month()
    code, _, err = await sendcost(url, "bulletin", "--period", month, "--source", "store",
                                  "--out", str(tmp_path))
    assert code == 1, err
    assert "emulated data — not real prices" in err and "--include-emulated" in err
    for name in names:
        assert name in err
    assert not any(tmp_path.iterdir())  # nothing written  # noqa: ASYNC240


async def test_the_bulletin_of_emulated_data_says_so_on_every_page_chart_and_file(
        emulated_store: tuple[str, list[str]], tmp_path: Path) -> None:
    url, names = emulated_store
    month = this_month()
    code, _, err = await sendcost(url, "bulletin", "--period", month, "--source", "store",
                                  "--out", str(tmp_path), "--include-emulated")
    assert code == 0, err
    folder = tmp_path / month
    html = (folder / "index.html").read_text(encoding="utf-8")
    body = html[html.index("<body"):]
    # First thing in the body, and at the top of every printed page.
    assert body.split("\n", 2)[1].startswith('<div class="emulated-banner" role="alert"')
    assert "EMULATED DATA — NOT REAL PRICES" in body
    assert '@top-center { content: "EMULATED DATA — NOT REAL PRICES"' in html
    md = (folder / "bulletin.md").read_text(encoding="utf-8")
    assert md.startswith("> **EMULATED DATA — NOT REAL PRICES**")
    charts = sorted((folder / "charts").glob("*.svg"))
    assert charts
    for svg in charts:
        assert 'id="emulated-warning"' in svg.read_text(encoding="utf-8"), svg.name
    tables = sorted((folder / "data").glob("*.csv"))
    assert tables
    for table in tables:
        rows = list(csv.DictReader(io.StringIO(table.read_text(encoding="utf-8"))))
        assert all(r["warning"] == EMULATED_WARNING for r in rows), table.name
    meta = json.loads((folder / "data" / "metadata.json").read_text(encoding="utf-8"))
    assert meta["warning"] == EMULATED_WARNING and set(names) <= set(meta["emulated_sources"])
    from pypdfium2 import PdfDocument

    pdf = PdfDocument(folder / "bulletin.pdf")
    try:
        pages = [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    finally:
        pdf.close()
    assert pages and all("EMULATED DATA" in text for text in pages)


async def test_no_export_and_no_indicator_is_made_of_emulated_data(
        emulated_store: tuple[str, list[str]], tmp_path: Path) -> None:
    url, names = emulated_store
    month = this_month()
    code, out, err = await sendcost(url, "export", "sdmx", "--from", month, "--to", month,
                                    "--source", "store")
    assert code == 1 and "OBS_VALUE" not in out, (out, err)
    code, out, err = await sendcost(url, "export", "postal", "--period", month, "--source",
                                    "store", "--out", str(tmp_path))
    assert code == 1 and not any(tmp_path.iterdir()), err  # noqa: ASYNC240
    code, out, err = await sendcost(url, "indicators", "--period", month, "--format", "json")
    assert code == 1 and "emulated data — not real prices" in err and names[0] in err
    code, out, err = await sendcost(url, "indicators", "--period", month, "--format", "json",
                                    "--include-emulated")
    assert code == 0, err
    assert json.loads(out)["warning"] == EMULATED_WARNING


async def test_the_api_leaves_emulated_data_out_unless_asked(
        emulated_store: tuple[str, list[str]]) -> None:
    url, _ = emulated_store
    month = this_month()
    async with TestClient(TestServer(make_app(url))) as client:
        resp = await client.get("/v1/indicators")
        assert resp.status == 404, await resp.text()  # nothing real to compute from
        resp = await client.get(f"/v1/indicators?period={month}")
        assert resp.status == 404
        body = await (await client.get("/v1/corridors")).json()
        assert body["corridors"] == [] and "warning" not in body
        resp = await client.get("/v1/compare?from=USA&to=MEX&amount=200")
        assert resp.status == 404
        # Asked for, they are there, and every answer says what they are.
        body = await (await client.get("/v1/indicators?include=emulated")).json()
        assert body["warning"] == EMULATED_WARNING and body["period"] == month
        assert body["global_average"] is not None
        body = await (await client.get("/v1/corridors?include=emulated")).json()
        assert body["warning"] == EMULATED_WARNING and body["includes"] == ["emulated"]
        assert {c["period"] for c in body["corridors"]} == {month}
        assert {k for c in body["corridors"] for k in c["data_kinds"]} == {"emulated"}
        body = await (await client.get("/v1/compare?from=USA&to=MEX&amount=200"
                                    "&include=emulated")).json()
        assert body["warning"] == EMULATED_WARNING
        assert {s["data_kind"] for s in body["services"]} == {"emulated"}
        assert all("emulated" in s["flags"] for s in body["services"])
        assert "emulated" in body["flags_explained"]
        resp = await client.get("/v1/corridors.csv?include=emulated")
        assert resp.headers["Sendcost-Warning"] == "emulated data - not real prices"
        # Saved as a file, the CSV still says it: a warning column on every row, and the
        # file's name; a browser's script may read the warning header (CORS).
        rows = list(csv.DictReader(io.StringIO(await resp.text())))
        assert rows and {r["warning"] for r in rows} == {EMULATED_WARNING}
        assert resp.headers["Content-Disposition"].endswith('-EMULATED.csv"')
        exposed = resp.headers["Access-Control-Expose-Headers"]
        assert "Sendcost-Warning" in exposed and "Sendcost-Periods" in exposed
        for twin in ("/v1/indicators.csv?include=emulated", "/v1/kpis.csv?include=emulated"):
            resp = await client.get(twin)
            assert resp.status == 200, (twin, await resp.text())
            text = await resp.text()
            assert text.splitlines()[0].endswith(",warning"), twin
            assert all(line.endswith(EMULATED_WARNING) for line in text.splitlines()[1:])
        resp = await client.get("/v1/corridors.csv")
        assert "warning" not in (await resp.text()).splitlines()[0]
        resp = await client.get("/v1/corridors?include=everything")
        assert resp.status == 400
        assert (await resp.json())["parameter"] == "include"
        # The page: nothing emulated unless asked; asked, under the banner.
        page = await (await client.get("/?from=USA&to=MEX&amount=200")).text()
        assert "emulated-banner" not in page and "No prices are known" in page
        page = await (await client.get("/?from=USA&to=MEX&amount=200&include=emulated")).text()
        assert '<div class="emulated-banner"' in page
        assert '<input type="hidden" name="include" value="emulated">' in page
        assert "emulated — not a real price" in page


# --- caveats and amounts reach the reader ----------------------------------------------------


async def test_a_negative_survey_row_is_flagged_like_a_collected_one(
        api: TestClient) -> None:
    # RPW 2014Q2, USA → HND: services with a negative FX margin (a bad interbank rate).
    body = await (await api.get("/v1/compare?from=USA&to=HND&amount=200&period=2014Q2")).json()
    negative = [s for s in body["services"] if s["fx_margin_pct"] < 0]
    assert negative, body["services"]
    assert all("negative_margin" in s["flags"] for s in negative)
    assert all("negative_margin" not in s["flags"] for s in body["services"]
               if s["fx_margin_pct"] >= 0)
    assert body["flags_explained"]["negative_margin"].startswith("the rate applied beats")
    assert {s["data_kind"] for s in body["services"]} == {"survey"}
    # Ranked lists keep flagged services, marked; the corridor's cheapest leaves them out
    # and says which flags it leaves out.
    assert body["services"][0]["flags"], "the first-ranked service here is a flagged one"
    fit = [s for s in body["services"]
           if not {"negative_margin", "negative_total_cost"} & set(s["flags"])]
    cheapest = body["corridor"]["cheapest"]
    if fit:
        assert (cheapest["provider"], cheapest["total_cost_pct"]) == (
            fit[0]["provider"], fit[0]["total_cost_pct"])
    else:  # every service of the corridor is flagged: none is named cheapest
        assert cheapest is None
    assert body["corridor"]["cheapest_leaves_out"] == [
        "estimate", "negative_margin", "negative_total_cost"]
    # The CSV twin carries them too.
    text = await (await api.get("/v1/compare.csv?from=USA&to=HND&amount=200"
                                "&period=2014Q2")).text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["data_kind"] for r in rows} == {"survey"}
    assert any("negative_margin" in r["flags"].split() for r in rows)
    # And the page shows the mark, with its explanation.
    page = await (await api.get("/?from=USA&to=HND&amount=200")).text()
    assert "Prices of 2014Q2 (World Bank survey" in page
    assert '&#9888; negative margin</span>' in page and 'id="caveats"' in page
    assert 'id="average-below-zero"' in page


async def test_every_cheapest_answer_follows_one_rule_and_says_what_it_left_out(
        api: TestClient) -> None:
    # /v1/corridors, /v1/indicators and /v1/postal/benchmark name the same cheapest service
    # for every corridor of RPW 2014Q2, where negative margins (USA → HND) would otherwise be
    # named cheapest by one and not by the others.
    listed = (await (await api.get("/v1/corridors?limit=500")).json())["corridors"]
    latest = {(c["from"]["alpha3"], c["to"]["alpha3"]): c for c in listed
              if c["period"] == "2014Q2"}
    doc = await (await api.get("/v1/indicators?period=2014Q2")).json()
    assert doc["cheapest_leaves_out"] == ["estimate", "negative_margin", "negative_total_cost"]
    by_pair = {(c["source"], c["destination"]): c for c in doc["corridors"]}
    assert latest and set(latest) <= set(by_pair)
    for pair, c in latest.items():
        assert by_pair[pair]["cheapest"] == c["cheapest"], pair
    hnd = by_pair[("USA", "HND")]
    compare = await (await api.get("/v1/compare?from=USA&to=HND&amount=200&period=2014Q2")
                     ).json()
    flagged = [s for s in compare["services"]
               if {"negative_margin", "negative_total_cost"} & set(s["flags"])]
    assert flagged and hnd["cheapest_left_out"] == len(flagged)
    fit = [s for s in compare["services"] if s not in flagged]
    assert hnd["cheapest"] == (compare["corridor"]["cheapest"] if fit else None)
    # The CSV twin carries the count.
    rows = list(csv.DictReader(io.StringIO(
        await (await api.get("/v1/indicators.csv?period=2014Q2")).text())))
    assert {r["cheapest_left_out"] for r in rows if (r["source"], r["destination"])
            == ("USA", "HND")} == {str(len(flagged))}
    # The postal benchmark names the corridor's cheapest by the same rule.
    postal = (await (await api.get("/v1/postal/benchmark?period=2014Q2&limit=500")).json())
    assert postal["services"]
    for item in postal["services"]:
        pair = (item["from"]["alpha3"], item["to"]["alpha3"])
        assert item["cheapest"] == by_pair[pair]["cheapest"], pair


async def test_the_page_heads_its_figures_with_the_amount_they_are_for(
        api: TestClient) -> None:
    # Italy → China: RPW's only (no test collects it), priced at EUR 140 and 345.
    page = await (await api.get("/?from=ITA&to=CHN&amount=500")).text()
    # Money as CLDR writes it in the page's language (English here: €345.00).
    assert ("Prices for €345.00, the nearest amount surveyed to your €500.00, "
            "from Italy to China") in page
    assert "Sending €500.00" not in page
    page = await (await api.get("/?from=ITA&to=CHN&amount=345")).text()
    assert "Prices for €345.00 from Italy to China" in page
    # Each row says when it was collected and what kind of figure it is.
    assert '<th scope="col">Collected</th>' in page and "World Bank survey" in page


def test_the_ranked_cost_column_is_the_one_the_ranking_uses() -> None:
    from publish.page import render_result

    def service(rank: int, effective: float, total: float) -> dict[str, Any]:
        return {"rank": rank, "provider": f"P{rank}", "product": None, "flags": [],
                "amount_received": 1000.0, "fee_paid_on_top": False, "fee": 1.0,
                "fee_currency": "EUR", "receive_currency": "TRY",
                "amount_received_if_fee_deducted": None, "amount_received_if_fee_on_top": None,
                "effective_cost_pct": effective, "total_cost_pct": total, "speed": None,
                "pay_in": None, "access_point": None, "pay_out": None,
                "collected_at": "2026-12-01T00:00:00Z", "data_kind": "observed"}

    doc = {"from": {"name": "Germany", "alpha3": "DEU"},
           "to": {"name": "Türkiye", "alpha3": "TUR"}, "currency": "EUR",
           "amount": 140.0, "priced_amount": 140.0, "approximate": False, "period": "2026-12",
           "corridor": {"average": 5.0, "points_above_3": 2.0, "points_above_5": 0.0},
           "ranked_by": "amount_received_per_amount_paid", "flags_explained": {},
           "services": [service(1, 21.44, 26.42), service(2, 22.0, 23.0)],
           "non_transparent": []}
    html = render_result(doc)
    assert "Cost (share of all you pay)" in html
    assert "Total cost (survey method: fee % + FX margin %)" in html
    # The first cost column of each row is the effective cost: in rank order.
    assert html.index("21.44%") < html.index("26.42%") < html.index("22.00%")
    assert Decimal("21.44") < Decimal("22.00")


def test_a_bulletin_of_a_mixed_period_leaves_the_emulated_quotes_out_and_says_so() -> None:
    import polars as pl

    from corridors.frame import conform
    from publish.bulletin import EmulatedOnly, choose_data

    def rows(source: str, kind: str, n: int, period: str = "2026-11") -> list[dict[str, Any]]:
        return [{"period": period, "source": source, "data_kind": kind,
                 "service_id": f"{source}:{i}"} for i in range(n)]

    frame = conform(pl.DataFrame(rows("acme", "observed", 3) + rows("sandbox-op-0",
                                                                     "emulated", 2)
                                 + rows("sandbox-op-1", "emulated", 4, "2026-10"))).collect()
    given = {"kind": "store", "quotes": frame.height,
             "sources": ["acme", "sandbox-op-0", "sandbox-op-1"]}
    kept, about = choose_data(frame, "2026-11", given)
    assert kept["source"].cast(pl.String).to_list() == ["acme"] * 3
    assert about == {"kind": "store", "quotes": 3, "sources": ["acme"],
                     "emulated_left_out": ["sandbox-op-0", "sandbox-op-1"]}
    with pytest.raises(EmulatedOnly, match=r"sandbox-op-1 \(4 quotes\)"):
        choose_data(frame, "2026-10", given)
    kept, about = choose_data(frame, "2026-10", given, include_emulated=True)
    assert kept.height == frame.height and about["warning"] == EMULATED_WARNING
    # A file that does not say its kind (the RPW reader's) is not emulated data.
    plain = conform(pl.DataFrame(rows("rpw", "survey", 2))).collect().with_columns(
        pl.lit(None, pl.Categorical).alias("data_kind"))
    kept, about = choose_data(plain, "2026-11", {"kind": "rpw-file"})
    assert kept is plain and about == {"kind": "rpw-file"}


async def _cheapest_and_services(client: TestClient, include: str
                                 ) -> dict[tuple[str, str], tuple[Any, list[dict[str, Any]]]]:
    """Per corridor of ``/v1/corridors``: its named cheapest and ``/v1/compare``'s services at
    USD 200 (``include``: the query's include parameter, "" for none)."""
    listed = (await (await client.get(f"/v1/corridors?amount=200{include}")).json())
    out = {}
    for c in listed["corridors"]:
        src, dst = c["from"]["alpha3"], c["to"]["alpha3"]
        body = await (await client.get(f"/v1/compare?from={src}&to={dst}&amount=200"
                                       f"&currency=USD{include}")).json()
        out[src, dst] = (c, body["services"] + body["non_transparent"])
    return out


def _named_by_the_rule(services: list[dict[str, Any]]) -> tuple[str, float] | None:
    """The cheapest service by kinds.CHEAPEST_LEAVES_OUT, worked out from compare's rows."""
    fit = [s for s in services
           if not {"estimate", "negative_margin", "negative_total_cost"} & set(s["flags"])]
    if not fit:
        return None
    best = min(fit, key=lambda s: (s["total_cost_pct"], s["provider"], s["product"] or "",
                                   s["service_id"]))
    return best["provider"], best["total_cost_pct"]


async def test_with_emulated_data_asked_for_an_estimate_is_never_named_cheapest(
        fresh_database: str) -> None:
    # The sandbox's comparison feed is of kind "emulated" and keeps its "estimate" flag; the
    # snapshot the API serves is built from the store's rollups, which must carry that flag
    # so the one cheapest rule applies with ?include=emulated as it does without it. The
    # same sandbox collected unmarked (its quotes pass for real: the feed's are of kind
    # "estimate") is named cheapest by the same rule.
    store = await connect(fresh_database)
    try:
        await store.migrate()
        prefix, _, _ = await collect(store)
        # The rollup row of every service carries its quotes' flags (migration 11).
        rows = await store.pool.fetch(
            "SELECT q.service_id, array_agg(DISTINCT f ORDER BY f) AS flags FROM quotes q, "
            "unnest(q.flags) f GROUP BY 1")
        quoted = {r["service_id"]: r["flags"] for r in rows}
        rows = await store.pool.fetch(
            "SELECT service_id, array_agg(DISTINCT f ORDER BY f) AS flags FROM "
            "service_periods, unnest(flags) f GROUP BY 1")
        assert {r["service_id"]: r["flags"] for r in rows} == quoted
        feed = await store.pool.fetch(
            "SELECT DISTINCT data_kind, 'estimate' = ANY (flags) AS estimate "
            "FROM service_periods WHERE source = $1", f"{prefix}-comparison")
        assert [tuple(r) for r in feed] == [("emulated", True)]
    finally:
        await store.close()
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        emulated = await _cheapest_and_services(client, "&include=emulated")
    assert emulated
    estimates_seen = 0
    for pair, (row, services) in emulated.items():
        estimates_seen += sum("estimate" in s["flags"] for s in services)
        cheapest = row["cheapest"]
        named = None if cheapest is None else (cheapest["provider"],
                                               cheapest["total_cost_pct"])
        assert named == _named_by_the_rule(
            [s for s in services if s["rank"] is not None]), pair
        assert all(s["data_kind"] == "emulated" for s in services)
        # The corridor row says how many of its services carry each caveat (one collection:
        # each service's flags are its one quote's).
        flags = [f for s in services for f in s["flags"] if f in TABLE_CAVEATS]
        assert row["caveats"] == {f: flags.count(f) for f in TABLE_CAVEATS if f in flags}, pair
    assert estimates_seen, "the sandbox's comparison feed gave no estimate to test with"
    # The first-ranked service of some corridor is an estimate: the rule has work to do.
    assert any("estimate" in min((s for s in services if s["rank"] is not None),
                                 key=lambda s: s["total_cost_pct"])["flags"]
               for _, services in emulated.values())
    async with TestClient(TestServer(make_app(fresh_database))) as client:
        listed = await (await client.get("/v1/corridors?include=emulated")).json()
        assert set(listed["caveats_explained"]) >= {"estimate", "bank_transfer_only"}
        rows = list(csv.DictReader(io.StringIO(await (await client.get(
            "/v1/corridors.csv?include=emulated")).text())))
    assert all("estimate:" in r["caveats"] for r in rows), rows


async def test_the_cheapest_rule_is_the_same_with_and_without_include_emulated(
        fresh_database: str, server_url: str) -> None:
    # The same sandbox collected twice: marked, into one store (every quote emulated, the
    # feed's flagged estimate), and unmarked, into another (observed quotes, the feed's of
    # kind estimate). The first asked for with ?include=emulated, the second without it:
    # each corridor names the same cheapest service and counts the same estimates.
    other = f"sendcost_t_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{other}"')
    await admin.close()
    other_url = urlunsplit(urlsplit(server_url)._replace(path="/" + other))
    try:
        for url, marked in ((fresh_database, True), (other_url, False)):
            store = await connect(url)
            try:
                await store.migrate()
                await collect(store, marked=marked)
            finally:
                await store.close()
        async with TestClient(TestServer(make_app(fresh_database))) as client:
            emulated = await _cheapest_and_services(client, "&include=emulated")
        async with TestClient(TestServer(make_app(other_url))) as client:
            observed = await _cheapest_and_services(client, "")
    finally:
        admin = await asyncpg.connect(server_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
        await admin.close()

    def named(row: dict[str, Any]) -> tuple[str, str, str | None] | None:
        c = row["cheapest"]
        return None if c is None else (c["provider"], c["firm_type"], c["product"])

    assert emulated.keys() == observed.keys() and emulated
    for pair, (row, services) in emulated.items():
        twin, twin_services = observed[pair]
        assert named(row) == named(twin), pair
        # and in both, the one named is a provider's own quote, never the feed's estimate
        # for it (same provider, firm type and product: told apart by their cost)
        for r, ss in ((row, services), (twin, twin_services)):
            if r["cheapest"] is not None:
                assert r["cheapest"]["total_cost_pct"] in {
                    s["total_cost_pct"] for s in ss if "estimate" not in s["flags"]}, pair
        assert row["caveats"].get("estimate") == twin["caveats"].get("estimate"), pair
        assert {s["data_kind"] for s in services} == {"emulated"}
        assert {s["data_kind"] for s in twin_services} == {"observed", "estimate"}


async def test_real_prices_asked_with_include_emulated_are_not_called_emulated(
        emulated_store: tuple[str, list[str]]) -> None:
    """?include=emulated adds the sandbox's quotes where there are some; an answer resting on
    survey quotes alone (another period) says nothing of emulation: its prices are real."""
    from test_api_database import quote as priced

    url, _ = emulated_store
    store = await connect(url)
    try:
        await store.store_quotes([dataclasses.replace(
            priced(n, period="2014Q2"), source="rpw", data_kind=DataKind.SURVEY)
            for n in (1, 2, 3)])
    finally:
        await store.close()
    async with TestClient(TestServer(make_app(url))) as client:
        for path in ("/v1/compare?from=USA&to=MEX&amount=200&period=2014Q2&include=emulated",
                     "/v1/indicators?period=2014Q2&include=emulated",
                     "/v1/corridors/USA-MEX?period=2014Q2&include=emulated"):
            resp = await client.get(path)
            assert resp.status == 200, (path, await resp.text())
            body = await resp.json()
            assert "warning" not in body and "includes" not in body, path
            assert [s["name"] for s in body["sources"]] == ["rpw"], path
        resp = await client.get("/v1/indicators.csv?period=2014Q2&include=emulated")
        assert "Sendcost-Warning" not in resp.headers
        # The sandbox's month, asked for, still says so.
        body = await (await client.get("/v1/indicators?include=emulated")).json()
        assert body["warning"] == EMULATED_WARNING
    # The CLI alike, in what it writes out (a file keeps stdout).
    code, out, err = await sendcost(url, "indicators", "--period", this_month(),
                                    "--include-emulated", "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and {r["warning"] for r in rows} == {EMULATED_WARNING}
    code, out, err = await sendcost(url, "indicators", "--period", this_month(),
                                    "--include-emulated")
    assert code == 0 and out.startswith(f"WARNING: {EMULATED_WARNING}"), out
    code, out, err = await sendcost(url, "indicators", "--period", "2014Q2",
                                    "--include-emulated", "--format", "json")
    assert code == 0, err
    assert "warning" not in json.loads(out) and EMULATED_WARNING not in err
