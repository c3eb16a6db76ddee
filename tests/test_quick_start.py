"""The README's quick start, as a user runs it: `sendcost serve --sandbox` with the shipped
config.toml (whose sources are real upstreams) collects from the emulated profile instead, on
its schedule and with no network — quotes stored, every response archived, the emulated
operators' implausible quotes quarantined — and the page's API shows the collected prices.
The sandbox's port is one of the test's own (--sandbox-port), so that another instance on
8765 is no obstacle."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _healthz(http: aiohttp.ClientSession, base: str) -> dict[str, Any] | None:
    try:
        async with http.get(f"{base}/healthz") as resp:
            return await resp.json() if resp.status == 200 else None
    except aiohttp.ClientError:
        return None


async def test_serve_with_the_sandbox_collects_archives_and_quarantines(
        fresh_database: str, tmp_path: Path) -> None:
    config = (ROOT / "config.toml").read_text(encoding="utf-8")
    # Everything as shipped, but the bundled RPW import at start (the rpw source still
    # imports the same file from the sandbox, as it does on a first start).
    config = config.replace("import_rpw_on_empty = true", "import_rpw_on_empty = false")
    (tmp_path / "config.toml").write_text(config, encoding="utf-8")
    port, sandbox_port = _free_port(), _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=fresh_database, SENDCOST_DATA_DIR=str(tmp_path),
               PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sendcost", "serve", "--sandbox", "--port", str(port),
         "--sandbox-port", str(sandbox_port), "--config", str(tmp_path / "config.toml")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    operators = {"sandbox-op-0", "sandbox-op-1", "sandbox-op-2"}
    try:
        deadline = time.monotonic() + 150
        runs: dict[str, dict[str, Any]] = {}
        # Patient: on a machine running two suites at once (CI beside newcomer-test) the
        # first comparison after the collections waited out 5 s behind the snapshots' builds.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            while time.monotonic() < deadline:
                assert proc.poll() is None, proc.communicate()[1][-3000:]
                body = await _healthz(http, base)
                if body:
                    runs = {r["source"]: r for r in body["collections"]}
                    wanted = operators | {"sandbox-post-fra", "sandbox-comparison"}
                    if wanted <= set(runs) and all(runs[s]["finished_at"] for s in wanted):
                        break
                await asyncio.sleep(0.5)
            assert operators <= set(runs), runs
            async with http.get(f"{base}/v1/compare?from=US&to=MX&amount=200") as resp:
                default = await resp.json()
            async with http.get(f"{base}/v1/compare?from=US&to=MX&amount=200"
                                "&include=emulated") as resp:
                compare = await resp.json()
            async with http.get(f"{base}/?from=US&to=MX&amount=200") as resp:
                page = await resp.text()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGABRT)
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err[-3000:]

    assert all(runs[o]["status"] == "ok" for o in operators), runs
    # The shipped profile's operators send a few implausible quotes: quarantined, not stored.
    assert sum(runs[o]["quotes_quarantined"] for o in operators) >= 1
    assert sum(runs[o]["quotes_stored"] for o in operators) >= 20
    assert runs["sandbox-post-fra"]["quotes_stored"] >= 1  # a crontab source, caught up
    conn = await asyncpg.connect(fresh_database)
    try:
        requests = await conn.fetchval(
            "SELECT sum(requests) FROM collection_runs WHERE source LIKE 'sandbox-op-%'")
        archived = await conn.fetchval(
            "SELECT count(*) FROM raw_responses WHERE source LIKE 'sandbox-op-%'")
        reasons = {r["reason"] for r in await conn.fetch(
            "SELECT reason FROM quarantined_quotes WHERE source LIKE 'sandbox-op-%'")}
        kinds = {r["data_kind"] for r in await conn.fetch(
            "SELECT DISTINCT data_kind FROM quotes WHERE source LIKE 'sandbox-%'")}
        asked = {r["url"].split("/")[2] for r in await conn.fetch(
            "SELECT DISTINCT url FROM raw_responses")}
        stale = await conn.fetchval(
            "SELECT count(*) FROM quotes WHERE source LIKE 'sandbox-op-%' "
            "AND 'reference_stale' = ANY(flags)")
    finally:
        await conn.close()
    assert archived == requests  # every response archived
    assert reasons and reasons <= {"fee_negative", "fee_above_amount", "rate_off_reference",
                                   "received_inconsistent", "currency_mismatch",
                                   "implausible_negative_margin"}
    assert stale == 0  # the rates came first
    # Every source was the emulated profile's, at the sandbox's port: none of the shipped
    # config's real upstreams was asked.
    assert asked == {f"127.0.0.1:{sandbox_port}"}, asked
    assert f"sandbox upstreams on http://127.0.0.1:{sandbox_port}" in err
    # Whatever the config calls them, the sandbox's quotes are stored as emulated data.
    assert kinds == {"emulated"}
    # The API leaves them out unless asked, and then says what they are.
    default_sources = {s["source"] for s in default.get("services", [])
                       + default.get("non_transparent", [])}
    assert not default_sources & operators and "warning" not in default, default
    sources = {s["source"] for s in compare["services"] + compare["non_transparent"]}
    assert sources & operators, compare
    assert compare["warning"] == "emulated data — not real prices"
    assert {s["data_kind"] for s in compare["services"] if s["source"] in operators} == {
        "emulated"}
    # The quick start's page shows them, under the banner.
    assert 'class="emulated-banner"' in page and "EMULATED DATA — NOT REAL PRICES" in page
    # The operators' providers the API gave are on it too (which operator's quote the
    # sandbox made implausible, and so quarantined, varies from run to run).
    providers = {s["provider"] for s in compare["services"] if s["source"] in operators}
    assert any(f"{p}</" in page for p in providers), (providers, page[-3000:])
