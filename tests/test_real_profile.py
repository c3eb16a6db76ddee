"""The shipped profile of real upstreams (config.toml's [[sources]]): with no network,
`sendcost serve` says once per source that its upstream is unreachable, backs off, and goes
on serving; and the recorded real responses of those upstreams, replayed from loopback
through the very source definitions config.toml ships, store the right numbers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config.toml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shipped_urls() -> dict[str, str]:
    """The shipped sources' URLs, by name."""
    raw = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    return {s["name"]: s["url"] for s in raw["sources"]}


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
        summaries = [ln for ln in lines if f"collector.run: {name}: run " in ln]
        assert len(summaries) == 1 and "INFO" in summaries[0], (name, summaries)
    # The service answered throughout.
    assert answered and set(answered) == {200}, answered
