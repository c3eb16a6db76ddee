"""The shipped profile of real upstreams (config.toml's [[sources]]): with no network,
`sendcost serve` says once per source that its upstream is unreachable, backs off, and goes
on serving; and the recorded real responses of those upstreams, replayed from loopback
through the very source definitions config.toml ships, store the right numbers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config.toml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shipped_urls() -> dict[str, str]:
    """The shipped upstreams' URLs, by name (the enabled sources on the network: the bundled
    postal tariffs are local files, read without one)."""
    raw = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    return {s["name"]: s["url"] for s in raw["sources"]
            if s.get("enabled", True) and s["url"].startswith(("http://", "https://"))}


async def test_with_no_network_each_source_is_said_unreachable_once_and_serving_goes_on(
        fresh_database: str, tmp_path: Path) -> None:
    """The shipped config.toml, every upstream's host swapped for a closed loopback port
    (as good as no network) and the schedules made fast: several runs of every source fail,
    yet each source's outage is told once, at WARNING, naming it and the backing off; the
    request-by-request failures are not repeated at INFO; the API answers all along."""
    text = SHIPPED.read_text(encoding="utf-8")
    urls = shipped_urls()
    for url in urls.values():
        host = re.match(r"https://[^/]+", url)
        assert host, url
        # A port of its own for each (a host's limits are shared by its sources), bound
        # and released: nothing listens there.
        text = text.replace(host.group(0), f"http://127.0.0.1:{_free_port()}")
    text = re.sub(r'schedule = "interval:\d+"', 'schedule = "interval:2"', text)
    text = re.sub(r"jitter_seconds = \d+", "jitter_seconds = 0", text)
    text = re.sub(r"requests_per_second = [\d.]+", "requests_per_second = 50", text)
    text = text.replace("import_rpw_on_empty = true", "import_rpw_on_empty = false")
    text = text.replace("max_retries = 3", "max_retries = 0")
    text = text.replace("circuit_failures = 5", "circuit_failures = 2")
    text = text.replace("circuit_cooldown_seconds = 300.0", "circuit_cooldown_seconds = 1.0")
    assert "https://" not in re.sub(r"(?m)^#.*$|\"[^\"\n]*\"", "", text)  # only in comments
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=fresh_database, SENDCOST_DATA_DIR=str(tmp_path),
               PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sendcost", "serve", "--port", str(port),
         "--config", str(tmp_path / "config.toml")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs: dict[str, Any] = {}
    counts: dict[str, int] = {}
    answered: list[int] = []
    try:
        deadline = time.monotonic() + 90
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()[1][-3000:]
                try:
                    async with http.get(f"{base}/v1/corridors") as resp:
                        answered.append(resp.status)
                    async with http.get(f"{base}/healthz") as resp:
                        health = await resp.json()
                except aiohttp.ClientConnectionError:
                    assert not answered, "the service stopped answering"
                    await asyncio.sleep(0.3)  # not up yet
                    continue
                runs = {c["source"]: c for c in health.get("collections", [])}
                # Every interval source has run (and failed) a few times.
                if all(name in runs for name in urls):
                    conn = await asyncpg.connect(fresh_database)
                    try:
                        counts = dict(await conn.fetch(
                            "SELECT source, count(*) FROM collection_runs "
                            "WHERE status = 'failed' GROUP BY source"))
                    finally:
                        await conn.close()
                    if all(counts.get(n, 0) >= 3 for n in urls if n != "worldbank-rpw"):
                        break
                await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGABRT)
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err[-3000:]
    assert set(urls) <= set(runs), (runs, err[-3000:])
    assert all(counts.get(n, 0) >= 3 for n in urls if n != "worldbank-rpw"), counts

    lines = err.splitlines()
    for name in urls:
        told = [ln for ln in lines if f"{name}: the upstream 127.0.0.1 is unreachable" in ln]
        assert len(told) == 1, (name, told, err[-3000:])
        assert "WARNING" in told[0] and "backing off" in told[0]
        assert "serving what it has" in told[0]
        # The failures themselves are not repeated request by request, nor run by run:
        # of its several failed runs, only the first is summed up at INFO.
        assert not [ln for ln in lines if f"collector.run: {name}: connection: " in ln
                    or f"collector.run: {name}: circuit_open: " in ln], err[-3000:]
        opened = [ln for ln in lines if f"collector.http: {name}: circuit opened" in ln]
        # Once, though tried again and again (the quarterly RPW source ran only once).
        assert len(opened) == (name != "worldbank-rpw"), (name, opened)
        summaries = [ln for ln in lines if f"collector.run: {name}: run " in ln]
        assert len(summaries) == 1 and "INFO" in summaries[0], (name, summaries)
    # The service answered throughout.
    assert answered and set(answered) == {200}, answered
    # The scheduler's own chatter (every job's start and end, the alerts' detection every
    # few seconds) stays out of the log at INFO.
    assert not [ln for ln in lines if " apscheduler." in ln], err[-3000:]


# -- recorded real responses, through the shipped source definitions --------------------------

REAL = ROOT / "tests" / "fixtures" / "collect" / "real"
#: Each shipped source's recorded answer (tests/fixtures/README.md), by the path it asks for.
RECORDED = {
    "/stats/eurofxref/eurofxref-daily.xml": ("ecb-eurofxref-daily-2025-05-09.xml", "text/xml"),
    "/v6/latest/USD": ("open-er-api-latest-USD-2023-11-23.json", "application/json"),
    "/v4/comparisons/": ("wise-docs-comparison-v4-GBP-EUR-10000.json", "application/json"),
}
#: Wise's recorded comparison answers, by the question (sourceCurrency, targetCurrency,
#: sendAmount) each answered: Wise's documented example and three real recordings.
RECORDED_COMPARISONS = {
    ("GBP", "EUR", "10000"): "wise-docs-comparison-v4-GBP-EUR-10000.json",
    ("USD", "CAD", "500"): "wise-v3-USD-CAD-500-2024-09-24.json",
    ("HUF", "EUR", "998877"): "wise-v4-HUF-EUR-998877-2026-07-16.json",
    ("EUR", "HUF", "1000"): "wise-v4-EUR-HUF-1000-2026-07-16.json",
}


def shipped_on_loopback(base: str | dict[str, str]) -> dict[str, Any]:
    """config.toml as shipped, its sources' scheme and host replaced by ``base`` (one for
    all, or one per source name, as the real upstreams are hosts of their own whose limits
    are not shared; paths, kinds, options, limits kept), and the corridors the recorded
    Wise answers price."""
    raw = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    for s in raw["sources"]:
        where = base if isinstance(base, str) else base.get(s["name"], "http://127.0.0.1:9")
        s["url"] = re.sub(r"^https://[^/]+", where, s["url"])
        s["jitter_seconds"] = 0
    raw["sources"] = [s for s in raw["sources"] if s["kind"] != "rpw"]  # not recorded here
    # The corridors the recorded Wise answers price (DEU → HUN: asked in euros from
    # Germany, the recording answers for a sender in Hungary).
    raw["corridors"] = [{"from": "GBR", "to": "ESP", "amounts": [10000]},
                        {"from": "USA", "to": "CAN", "amounts": [500]},
                        {"from": "HUN", "to": "AUT", "amounts": [998877]},
                        {"from": "DEU", "to": "HUN", "amounts": [1000]}]
    return raw


async def test_recorded_real_responses_through_the_shipped_profile(
        fresh_database: str) -> None:
    """The ECB's daily file of 2025-05-09, open.er-api's USD document of 2023-11-23,
    Wise's documented v4 comparison answer and Wise's comparison answers recorded for three
    corridors (USD→CAD 500 with 14 providers; HUF→EUR and EUR→HUF from Hungary), served
    from loopback at the paths the shipped sources ask for and collected through those very
    definitions: the requests are the ones the real upstreams take, and the right numbers
    are stored."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from collector.rates import RateBook
    from collector.run import Collector
    from corridors.config import parse_config
    from corridors.store import connect

    asked: list[tuple[str, dict[str, str], str]] = []

    async def serve(request: web.Request) -> web.Response:
        asked.append((request.path, dict(request.query), request.headers["User-Agent"]))
        name, kind = RECORDED[request.path]
        if request.path == "/v4/comparisons/":
            q = request.query
            name = RECORDED_COMPARISONS[q["sourceCurrency"], q["targetCurrency"],
                                        q["sendAmount"]]
        return web.Response(body=(REAL / name).read_bytes(), content_type=kind)

    # One loopback server per upstream, as each is a host of its own (a host's request
    # rate is shared by every source asking it, open.er-api's 0.1/s the strictest).
    servers = {}
    for name in ("ecb-daily", "open-er-api", "wise-comparison"):
        app = web.Application()
        for path in RECORDED:
            app.router.add_get(path, serve)
        servers[name] = TestServer(app, host="127.0.0.1")
        await servers[name].start_server()
    store = await connect(fresh_database)
    try:
        await store.migrate()
        config = parse_config(shipped_on_loopback(
            {name: str(server.make_url("")).rstrip("/") for name, server in servers.items()}))
        async with aiohttp.ClientSession() as session:
            reports = {r.source: r for r in await Collector(config, store, session).run_all()}
        rates = {name: await RateBook.load(store, sources=[name])
                 for name in ("ecb-daily", "open-er-api")}
        rows = await store.pool.fetch(
            "SELECT c.source_code || '-' || c.destination_code AS corridor, f.name, "
            "f.firm_type, q.send_amount, q.fee, q.applied_rate, q.received_amount, "
            "q.fx_margin_reported, q.reference_rate, q.data_kind, q.flags, s.speed, "
            "q.collected_at FROM quotes q "
            "JOIN services s ON s.id = q.service_id JOIN firms f ON f.id = s.firm_id "
            "JOIN corridors c ON c.id = s.corridor_id "
            "WHERE q.source = 'wise-comparison' ORDER BY corridor, f.name")
        quarantined = await store.pool.fetch(
            "SELECT reason, field, payload FROM quarantined_quotes "
            "WHERE source = 'wise-comparison'")
        licences = dict(await store.pool.fetch(
            "SELECT DISTINCT source, licence FROM raw_responses"))
    finally:
        await store.close()
        for server in servers.values():
            await server.close()

    # What the shipped definitions ask is what the real upstreams take.
    ua = config.collection.user_agent
    def compare(send: str, receive: str, amount: str, source2: str, dest2: str
                ) -> tuple[str, dict[str, str], str]:
        return ("/v4/comparisons/", {"sourceCurrency": send, "targetCurrency": receive,
                                     "sendAmount": amount, "sourceCountry": source2,
                                     "targetCountry": dest2}, ua)

    assert sorted(asked, key=str) == sorted([
        ("/stats/eurofxref/eurofxref-daily.xml", {}, ua),
        ("/v6/latest/USD", {}, ua),
        compare("GBP", "EUR", "10000", "GB", "ES"), compare("USD", "CAD", "500", "US", "CA"),
        compare("HUF", "EUR", "998877", "HU", "AT"), compare("EUR", "HUF", "1000", "DE", "HU")],
        key=str)
    assert {k: v.split(" (")[0].split(",")[0] for k, v in licences.items()} == {
        "ecb-daily": "Source: European Central Bank",
        "open-er-api": "Rates By Exchange Rate API",
        "wise-comparison": "Wise comparison API v4",
        # The bundled real postal tariffs, read from their files with the same run.
        "tariff-correos": "Correos' Eurogiro tariff as reported by Libre Mercado",
        "tariff-japan-post-bank": "Transcribed from JAPAN POST BANK's published tariff",
        "tariff-postfinance": "Transcribed from PostFinance's published prices"}

    ecb = reports["ecb-daily"]
    assert (ecb.status, ecb.rates) == ("ok", 30), ecb.line()
    gbp = rates["ecb-daily"].rate("EUR", "GBP")
    assert gbp is not None and (gbp.rate, gbp.as_of) == (
        Decimal("0.84770"), dt.datetime(2025, 5, 9, 14, 15, tzinfo=dt.UTC) - dt.timedelta(
            hours=2))  # 14:15 CEST

    er = reports["open-er-api"]
    # 162 keys: USD itself, 6 pseudo-codes the shipped definition names as such, 155 rates.
    assert (er.status, er.rates) == ("ok", 155), er.line()
    er_rates = rates["open-er-api"]
    for code, value in {"XOF": "602.354271", "SAR": "3.75", "PKR": "284.893349",
                        "MXN": "17.195711", "INR": "83.324487"}.items():
        got = er_rates.rate("USD", code)
        assert got is not None and got.rate == Decimal(value), (code, got)
        # The document's own time (its time_last_update_unix), not when it was fetched.
        assert got.as_of == dt.datetime.fromtimestamp(1700770144, dt.UTC), got
    for pseudo in ("FOK", "GGP", "IMP", "JEP", "KID", "TVD"):  # not ISO 4217 currencies
        assert er_rates.rate("USD", pseudo) is None, pseudo

    wise = reports["wise-comparison"]
    # GBR-ESP: the documented example's Wise and Barclays (its third quote, of an amount
    # received, quarantined); USA-CAN: the 14 providers of the real 2024 recording; HUN-AUT:
    # Wise's own real 2026 answer; DEU-HUN: the real answer for a sender in Hungary,
    # quarantined as another corridor's price.
    assert (wise.status, wise.requests, wise.stored, wise.quarantined) == (
        "ok", 4, 2 + 14 + 1, 1 + 1), wise.line()
    D = Decimal
    stored = [(r["corridor"], r["name"], r["send_amount"], r["fee"], r["applied_rate"],
            r["received_amount"], r["fx_margin_reported"]) for r in rows]
    assert stored == [
        ("GBR-ESP", "Barclays", D(10000), D("0.0"), D("1.12792426"), D("11279.24"),
         D("2.75592858")),
        ("GBR-ESP", "Wise", D(10000), D("37.12"), D("1.15989"), D("11555.84"), D("0.0")),
        ("HUN-AUT", "Wise", D(998877), D("14537"), D("0.00276476"), D("2721.46"), D("0")),
        ("USA-CAN", "Andrews Federal Credit Union", D(500), D("3.16"), D("1.34375"),
         D("667.63"), D("0")),
        ("USA-CAN", "Bank of America", D(500), D("0"), D("1.30774822"), D("653.87"),
         D("2.67920223")),
        ("USA-CAN", "Chase (US)", D(500), D("5"), D("1.30341312"), D("645.19"),
         D("3.00181433")),
        ("USA-CAN", "Instarem", D(500), D("0"), D("1.330311"), D("665.16"), D("1.00011163")),
        ("USA-CAN", "OFX", D(500), D("0"), D("1.32540956"), D("662.7"), D("1.36486995")),
        ("USA-CAN", "PayPal", D(500), D("4.99"), D("1.29379002"), D("640.44"), D("3.717952")),
        ("USA-CAN", "Remitly", D(500), D("1.99"), D("1.33410502"), D("664.4"),
         D("0.71776595")),
        ("USA-CAN", "Stanford Federal Credit Union", D(500), D("2.66"), D("1.34375"),
         D("668.3"), D("0")),
        ("USA-CAN", "Wells Fargo", D(500), D("0"), D("1.30130638"), D("650.65"),
         D("3.15859498")),
        ("USA-CAN", "Western Union", D(500), D("1.99"), D("1.32531524"), D("660.02"),
         D("1.37188912")),
        ("USA-CAN", "Wise", D(500), D("3.91"), D("1.34375"), D("666.62"), D("0")),
        ("USA-CAN", "WorldRemit", D(500), D("2.99"), D("1.31734541"), D("654.73"),
         D("1.96499274")),
        ("USA-CAN", "Xe", D(500), D("0"), D("1.31859813"), D("659.3"), D("1.87176707")),
        ("USA-CAN", "Xoom", D(500), D("4.99"), D("1.2910822"), D("639.1"), D("3.91946419"))]
    by = {(r["corridor"], r["name"]): r for r in rows}
    for r in rows:
        assert r["data_kind"] == "estimate", r
        # Measured against a reference far from the quotes' days (2019, 2024 and 2026
        # quotes; the ECB's 2025 and open.er-api's 2023 rates): never a fresh one.
        assert {"estimate", "bank_transfer_only", "comparison_feed",
                "reference_stale"} <= set(r["flags"]), (r["name"], r["flags"])
    # The feed's partners (credit unions offering Wise's own transfers) keep the flag.
    assert sorted(n for (_, n), r in by.items() if "partner" in r["flags"]) == [
        "Andrews Federal Credit Union", "Stanford Federal Credit Union"]
    assert {n for (_, n), r in by.items() if "mid_market_provider" in r["flags"]} == {"Wise"}
    assert by["USA-CAN", "Bank of America"]["firm_type"] == "bank"
    assert by["USA-CAN", "Western Union"]["firm_type"] == "mto"
    # Each quote's own collection time (dateCollected), not the request's.
    assert by["USA-CAN", "Wells Fargo"]["collected_at"] == dt.datetime(
        2024, 9, 23, 21, 20, 40, tzinfo=dt.UTC)
    assert by["HUN-AUT", "Wise"]["collected_at"] == dt.datetime(
        2026, 7, 16, 18, 43, 36, tzinfo=dt.UTC)
    # deliveryEstimation.duration.max: 192 hours for PayPal, none given for Western Union.
    assert (by["USA-CAN", "PayPal"]["speed"], by["USA-CAN", "Western Union"]["speed"]) == (
        "six_days_or_more", None)
    # Other corridors' prices, each quarantined on its own: Barclays' GB→FI quote in the
    # documented GB→ES answer, and Wise's quote for a sender in Hungary asked for DEU→HUN.
    assert sorted((q["reason"], q["field"], q["payload"]["name"], q["payload"]["send_amount"],
                   q["payload"]["quote"]["sourceCountry"], q["payload"]["quote"]["targetCountry"])
                  for q in quarantined) == [
        ("unknown_corridor", "corridor", "Barclays", "10000", "GB", "FI"),
        ("unknown_corridor", "corridor", "Wise", "1000", "HU", None)]


def test_only_the_pseudo_codes_named_are_left_out_quietly() -> None:
    """options.not_currencies silences the keys it names, and no others: a new non-ISO key
    in the document is still left out and counted."""
    from collector import json_rates
    from corridors.config import SourceConfig

    body = (REAL / "open-er-api-latest-USD-2023-11-23.json").read_bytes().replace(
        b'"USD": 1,', b'"USD": 1, "BTC": 0.000027,')
    at = dt.datetime(2023, 11, 24, tzinfo=dt.UTC)
    shipped = next(s for s in tomllib.loads(SHIPPED.read_text(encoding="utf-8"))["sources"]
                   if s["name"] == "open-er-api")
    source = SourceConfig(name="er", kind="json_rates", url="https://x/",
                          options=shipped["options"])
    skipped: list[str] = []
    rates = json_rates.parse(source, body, at, skipped)
    assert len(rates) == 155 and skipped == ["er: 'BTC' is not an ISO 4217 currency code"]
    bare = SourceConfig(name="er", kind="json_rates", url="https://x/",
                        options={k: v for k, v in shipped["options"].items()
                                 if k != "not_currencies"})
    skipped = []
    assert len(json_rates.parse(bare, body, at, skipped)) == 155
    assert sorted(s.split("'")[1] for s in skipped) == [
        "BTC", "FOK", "GGP", "IMP", "JEP", "KID", "TVD"]


def test_the_documented_operator_api_with_credentials_is_a_valid_source(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/collectors.md's example of an operator's own API with a token: the table as
    written is a source sendcost takes, its secret read from the environment only."""
    from collector.sources import check_sources
    from corridors.config import parse_config
    from corridors.errors import ConfigError

    doc = (ROOT / "docs" / "collectors.md").read_text(encoding="utf-8")
    block = doc.split("### Adding an operator's own API, with credentials", 1)[1]
    table = block.split("```toml\n", 1)[1].split("```", 1)[0]
    raw = tomllib.loads(table)
    raw["corridors"] = [{"from": "USA", "to": "MEX"}]
    config = parse_config(raw)
    [source] = config.sources
    assert source.headers == {"Authorization": "Bearer ${WISE_TOKEN}"}
    monkeypatch.delenv("WISE_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="WISE_TOKEN is not set"):
        source.request_headers()
    monkeypatch.setenv("WISE_TOKEN", "t0ken")
    check_sources(config)
    assert source.request_headers() == {"Authorization": "Bearer t0ken"}


def test_a_sandbox_port_in_use_is_named_with_what_to_do(fresh_database: str,
                                                         tmp_path: Path) -> None:
    """Two instances side by side need two sandbox ports: when --sandbox-port is taken,
    serve --sandbox stops at start saying where and how to choose another."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=fresh_database, SENDCOST_DATA_DIR=str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "sendcost", "serve", "--sandbox", "--sandbox-port",
             str(port), "--port", str(_free_port()), "--config", str(SHIPPED)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert (f"sendcost serve --sandbox: cannot listen on http://127.0.0.1:{port}"
            in done.stderr), done.stderr[-2000:]
    assert "Choose another with --sandbox-port or [sandbox] port" in done.stderr
    usage = subprocess.run([sys.executable, "-m", "sendcost", "serve", "--sandbox-port", "9"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2
    assert "--sandbox-port goes with --sandbox" in usage.stderr


@contextlib.asynccontextmanager
async def sandbox_running(port: int, env: dict[str, str]) -> AsyncIterator[None]:
    """A `sendcost sandbox` on ``port``, once it listens; stopped (SIGTERM) after."""
    sandbox = subprocess.Popen([sys.executable, "-m", "sendcost", "sandbox", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert sandbox.poll() is None, sandbox.communicate()[1][-2000:]
            await asyncio.sleep(0.3)
        yield
    finally:
        sandbox.send_signal(signal.SIGTERM)
        sandbox.communicate(timeout=30)


async def test_collect_sandbox_collects_the_emulated_profile_at_the_configured_port(
        fresh_database: str, tmp_path: Path) -> None:
    """`sendcost sandbox --port P` in one process and `sendcost collect --sandbox` in another,
    with [sandbox] port = P: the emulated profile is collected (not the shipped real
    sources), and stored as emulated data."""
    port = _free_port()
    text = SHIPPED.read_text(encoding="utf-8").replace("port = 8765", f"port = {port}")
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=fresh_database, SENDCOST_DATA_DIR=str(tmp_path))
    async with sandbox_running(port, env):
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "sendcost", "collect", "--sandbox", "-q", "--source",
             "sandbox-ecb", "--source", "sandbox-op-0", "--corridor", "USA-MEX",
             "--config", str(tmp_path / "config.toml")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    conn = await asyncpg.connect(fresh_database)
    try:
        kinds = dict(await conn.fetch(
            "SELECT source, array_agg(DISTINCT data_kind) FROM quotes GROUP BY source"))
        hosts = {r["url"].split("/")[2] for r in await conn.fetch(
            "SELECT url FROM raw_responses")}
    finally:
        await conn.close()
    assert kinds == {"sandbox-op-0": ["emulated"]}, (kinds, done.stderr[-2000:])
    assert hosts == {f"127.0.0.1:{port}"}


async def test_collect_sandbox_without_a_sandbox_stops_at_once_and_takes_sandbox_port(
        fresh_database: str, tmp_path: Path) -> None:
    """`sendcost collect --sandbox` with nothing at the sandbox's port exits 1 before any
    run (no 9 failed runs one after the other), saying how to start it; with
    --sandbox-port it collects from the sandbox listening there."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=fresh_database, SENDCOST_DATA_DIR=str(tmp_path))
    port = _free_port()

    def collect(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sendcost", "collect", "--sandbox", "-q", *extra,
             "--config", str(SHIPPED)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    nothing = await asyncio.to_thread(collect, "--sandbox-port", str(port))
    assert nothing.returncode == 1, nothing.stderr[-2000:]
    assert nothing.stderr.strip() == (
        f"sendcost collect: error: no sandbox at 127.0.0.1:{port} — start `sendcost "
        "sandbox` (or `sendcost serve --sandbox`), or give --sandbox-port")
    conn = await asyncpg.connect(fresh_database)
    try:
        # the store not even migrated, or migrated and no run in it
        migrated = await conn.fetchval("SELECT to_regclass('collection_runs') IS NOT NULL")
        runs = (await conn.fetchval("SELECT count(*) FROM collection_runs")
                if migrated else 0)
    finally:
        await conn.close()
    assert runs == 0
    usage = subprocess.run([sys.executable, "-m", "sendcost", "collect", "--sandbox-port",
                            "9"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=60)
    assert usage.returncode == 2 and "--sandbox-port goes with --sandbox" in usage.stderr

    async with sandbox_running(port, env):
        done = await asyncio.to_thread(collect, "--sandbox-port", str(port), "--source",
                                       "sandbox-ecb", "--source", "sandbox-op-0",
                                       "--corridor", "USA-MEX")
    assert done.returncode == 0, done.stderr[-2000:]
    conn = await asyncpg.connect(fresh_database)
    try:
        hosts = {r["url"].split("/")[2] for r in await conn.fetch(
            "SELECT url FROM raw_responses")}
        statuses = [r["status"] for r in await conn.fetch(
            "SELECT status FROM collection_runs")]
    finally:
        await conn.close()
    assert hosts == {f"127.0.0.1:{port}"} and statuses and set(statuses) == {"ok"}


async def test_a_source_of_its_own_timeout_waits_for_a_large_slow_body(store: Any) -> None:
    """The shipped RPW source downloads ~50 MB: it has a timeout of its own. Two sources
    on one slow upstream (its answer after 1.5 s): the one with timeout_seconds = 10 gets
    it, the other gives up after collection.timeout_seconds (0.5 s), as every source did."""
    import uuid

    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from collector.run import Collector
    from corridors.config import parse_config

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.5)
        return web.Response(body=(REAL / "open-er-api-latest-USD-2023-11-23.json").read_bytes(),
                            content_type="application/json")

    app = web.Application()
    app.router.add_get("/v6/latest/USD", slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    p = f"t{uuid.uuid4().hex[:8]}"
    url = str(server.make_url("/v6/latest/USD"))
    options = {"base_path": "base_code", "time_path": "time_last_update_unix",
               "not_currencies": ["FOK", "GGP", "IMP", "JEP", "KID", "TVD"]}
    config = parse_config({
        "collection": {"timeout_seconds": 0.5, "max_retries": 0},
        "sources": [{"name": f"{p}-patient", "kind": "json_rates", "url": url,
                     "timeout_seconds": 10, "options": options},
                    {"name": f"{p}-hasty", "kind": "json_rates", "url": url,
                     "options": options}]})
    assert config.sources[0].timeout_seconds == 10.0 and config.sources[1].timeout_seconds is None
    try:
        async with aiohttp.ClientSession() as session:
            reports = {r.source: r for r in await Collector(config, store, session).run_all()}
    finally:
        await server.close()
    assert (reports[f"{p}-patient"].status, reports[f"{p}-patient"].rates) == ("ok", 155)
    hasty = reports[f"{p}-hasty"]
    assert (hasty.status, dict(hasty.errors)) == ("failed", {"timeout": 1, "retry:timeout": 1})
    assert "no complete response within 0.5s" in (hasty.message or "")
