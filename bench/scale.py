"""Benchmark: how serving grows with the history of quotes kept (issue 15, item 1).

For each size asked (default 1M quotes), a throw-away database is filled with generated
quotes (235 corridors × 20 services, at 200 and 500 USD, spread over the 18 months
2025-06 … 2026-11), their rollups made in chunks as the store's write path makes them
(``rollup_quotes``), and then:

- ``sendcost serve``'s app runs in a child process (as bench/api.py runs it): the time until
  it answers from its first snapshot, and its resident memory then and after requests,
  beside a bare aiohttp server's (the floor any Python server pays);
- 5,000 new quotes (one collection) are written through the store's write path, three
  times; the refresh after each (``ApiData.refresh``, timed in this process on the same
  database, beside the first, whole, build); the child's first ``/v1/compare`` of a changed corridor
  once it serves the new quotes, beside the same URL again (cached) and a bare handler;
  ``/v1/indicators`` for a past period, first and again.

    .venv/bin/python bench/scale.py [--quotes 1000000 10000000] \\
        [--database-url postgresql://postgres@127.0.0.1:5432/test]

Goals: resident memory under 1 GB at every size, the refresh under 1 s, the first compare
after it under 50 ms, a past period's indicators under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing as mp
import os
import re
import statistics
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from api import (  # bench/api.py, beside this
    drop_database,
    free_port,
    serve_bare,
    serve_sendcost,
    wait_up,
)

from corridors.store import Store
from publish.data import ApiData

CORRIDORS_FROM, CORRIDORS_TO, SERVICES_PER_CORRIDOR = 5, 47, 20
START = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
DAYS = 548  # 2025-06-01 … 2026-11-30
CHUNK = 500_000
COLLECTION = 5_000
#: Collections written and refreshed after, one after another (their median is the figure).
COLLECTIONS = 3

_SERVICES_SQL = f"""
INSERT INTO corridors (source_code, destination_code)
SELECT s.alpha3, d.alpha3
FROM (SELECT alpha3 FROM countries ORDER BY alpha3 LIMIT {CORRIDORS_FROM}) s
CROSS JOIN (SELECT alpha3 FROM countries ORDER BY alpha3 DESC LIMIT {CORRIDORS_TO}) d;
INSERT INTO firms (name, firm_type)
SELECT 'Bench firm ' || i, CASE WHEN i % 3 = 0 THEN 'bank' ELSE 'mto' END
FROM generate_series(1, {SERVICES_PER_CORRIDOR}) i;
INSERT INTO services (service_key, corridor_id, firm_id, product, pay_in, pay_out, speed)
SELECT 'bench:' || c.id || ':' || f.id, c.id, f.id, '', 'cash', 'cash', 'same_day'
FROM corridors c CROSS JOIN firms f ORDER BY c.id, f.id;
"""

#: Quotes $1 … $2 of $3, one second-fraction apart over DAYS days, each service in turn.
_QUOTES_SQL = """
INSERT INTO quotes (service_id, period, amount_usd, send_amount, send_currency,
                    receive_currency, fee, applied_rate, reference_rate, reference_source,
                    reference_at, transparent, collected_at, source, flags, data_kind,
                    fee_deducted)
SELECT s.id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM'), amt, amt, 'USD', 'MXN',
       round((1 + (g % 97) / 10.0)::numeric, 2), 17.0 - (g % 13) / 100.0, 17.2, 'ecb', at,
       true, at, 'bench-op', '{}', 'observed', false
FROM generate_series($1::bigint, $2::bigint) g
CROSS JOIN LATERAL (SELECT $4::timestamptz
                    + (g::float8 * $5::float8 / $3::float8) * interval '1 second' AS at,
                    CASE WHEN (g / $6::bigint) % 2 = 0 THEN 200 ELSE 500 END AS amt) x
JOIN services s ON s.id = (SELECT min(id) FROM services) + g % $6::bigint
"""


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def timed_get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:
        resp.read()
        if resp.status != 200:
            raise SystemExit(f"{url}: {resp.status}")
    return (time.perf_counter() - started) * 1000


def snapshot_version(base: str) -> int:
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    found = re.search(r"^sendcost_snapshot_quote_id(?:\{[^}]*\})? ([\d.e+]+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


async def fill(server_url: str, n: int) -> tuple[str, dict[str, float]]:
    """A new database with ``n`` generated quotes and their rollups; the seconds each took."""
    import asyncpg

    from corridors.store import connect

    name = f"sendcost_bench_scale_{os.getpid()}_{n}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    store = await connect(url)
    took = {"insert": 0.0, "rollup": 0.0}
    try:
        await store.migrate()
        # The month partitions a service running through those months would have made
        # ahead (migration 10), so the history is spread over them as it would be.
        await store.pool.execute(
            "SELECT sendcost_month_partition(t, m::date) "
            "FROM unnest(ARRAY['quotes', 'raw_responses']) t, "
            "generate_series($1::timestamp, $2::timestamp, interval '1 month') m",
            START.replace(tzinfo=None), START.replace(tzinfo=None) + dt.timedelta(days=DAYS))
        await store.pool.execute(_SERVICES_SQL)
        services = await store.pool.fetchval("SELECT count(*) FROM services")
        span = DAYS * 86400.0
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK) - 1
            started = time.perf_counter()
            first = await store.pool.fetchval("SELECT coalesce(max(id), 0) FROM quotes")
            await store.pool.execute(_QUOTES_SQL, lo, hi, n, START, span, services,
                                     timeout=3600)
            took["insert"] += time.perf_counter() - started
            started = time.perf_counter()
            await store.pool.execute("SELECT rollup_quotes(array_agg(id), min(collected_at), "
                                     "max(collected_at)) FROM quotes WHERE id > $1", first,
                                     timeout=3600)
            took["rollup"] += time.perf_counter() - started
            print(f"  {hi + 1:>11,} quotes stored", flush=True)
        await store.pool.execute("ANALYZE")
    finally:
        await store.close()
    return url, took


async def collect_once(url: str, minute: int = 0) -> float:
    """One collection's 5,000 quotes through the store's write path; seconds taken."""
    from corridors.store import connect
    from corridors.types import (
        DataKind,
        Firm,
        FirmType,
        PayIn,
        PayOut,
        Quote,
        ServiceAttributes,
        Speed,
    )

    store = await connect(url)
    try:
        rows = await store.pool.fetch(
            "SELECT s.service_key, c.source_code, c.destination_code, f.name, f.firm_type "
            "FROM services s JOIN corridors c ON c.id = s.corridor_id "
            "JOIN firms f ON f.id = s.firm_id ORDER BY s.id LIMIT $1", COLLECTION // 2)
        at = START + dt.timedelta(days=DAYS - 1, hours=23, minutes=59 - minute)
        quotes = [Quote(
            source_code=r["source_code"], destination_code=r["destination_code"],
            firm=Firm(r["name"], FirmType(r["firm_type"])),
            service=ServiceAttributes("", PayIn.CASH, PayOut.CASH, None, Speed.SAME_DAY),
            service_key=r["service_key"], period=at.strftime("%Y-%m"), amount_usd=usd,
            send_amount=Decimal(usd), send_currency="USD", receive_currency="MXN",
            fee=Decimal("3.99"), applied_rate=Decimal("16.9"), reference_rate=Decimal("17.2"),
            reference_source="ecb", reference_at=at, transparent=True, collected_at=at,
            source="bench-op", data_kind=DataKind.OBSERVED, fee_deducted=False)
            for r in rows for usd in (200, 500)]
        started = time.perf_counter()
        await store.store_quotes(quotes)
        return time.perf_counter() - started
    finally:
        await store.close()


async def in_process_refresh(url: str) -> tuple[tuple[ApiData, Store], float]:
    from corridors.store import connect

    store = await connect(url)
    api = ApiData(store)
    started = time.perf_counter()
    await api.refresh()
    return (api, store), time.perf_counter() - started


def measure(server_url: str, n: int) -> None:
    print(f"== {n:,} quotes ==", flush=True)
    url, took = asyncio.run(fill(server_url, n))
    print(f"generating: insert {took['insert']:.1f} s, rollups {took['rollup']:.1f} s "
          f"({took['rollup'] / took['insert']:.2f} × the insert)")
    ctx = mp.get_context("spawn")
    bare_port, port = free_port(), free_port()
    bare = ctx.Process(target=serve_bare, args=(bare_port,), daemon=True)
    bare.start()
    started = time.perf_counter()
    server = ctx.Process(target=serve_sendcost, args=(port, url), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{port}"
    loop = asyncio.new_event_loop()
    try:
        wait_up(f"http://127.0.0.1:{bare_port}/bare")
        compare = "/v1/compare?from={}&to={}&amount=200&currency=USD"
        _ready(base)
        ready = time.perf_counter() - started
        with urllib.request.urlopen(f"{base}/v1/corridors.csv?limit=500", timeout=300) as resp:
            src, dst = resp.read().decode().splitlines()[1].split(",")[:2]
        print(f"serve: first snapshot served {ready:.1f} s after start")
        assert server.pid is not None and bare.pid is not None
        print(f"serve: resident {rss_mb(server.pid):.0f} MB once ready "
              f"(bare aiohttp {rss_mb(bare.pid):.0f} MB)")

        # The refresh after one collection, in this process on the same database.
        (api, store), whole = loop.run_until_complete(in_process_refresh(url))
        writes, refreshes = [], []
        for minute in range(COLLECTIONS):
            writes.append(loop.run_until_complete(collect_once(url, minute)))
            t0 = time.perf_counter()
            loop.run_until_complete(api.refresh())
            refreshes.append(time.perf_counter() - t0)
        loop.run_until_complete(store.close())
        print(f"{COLLECTIONS} collections of {COLLECTION:,} quotes written in "
              + ", ".join(f"{w * 1000:.0f}" for w in writes) + " ms")
        print("refresh after each: " + ", ".join(f"{r * 1000:.0f}" for r in refreshes)
              + f" ms (median {statistics.median(refreshes) * 1000:.0f} ms; the first, whole "
              f"build: {whole * 1000:.0f} ms)")

        # The child's first compare once it serves the new quotes.
        newest = loop.run_until_complete(_max_id(url))
        deadline = time.monotonic() + 120
        while snapshot_version(base) < newest and time.monotonic() < deadline:
            time.sleep(0.05)
        path = compare.format(src, dst)
        first = timed_get(base + path)
        again = min(timed_get(base + path) for _ in range(20))
        bare_ms = min(timed_get(f"http://127.0.0.1:{bare_port}/bare") for _ in range(20))
        print(f"/v1/compare after the refresh: first {first:.1f} ms, again {again:.1f} ms "
              f"(bare handler {bare_ms:.1f} ms)")
        past = "/v1/indicators?period=2025-07&amount=200"
        first = timed_get(base + past)
        again = min(timed_get(base + past) for _ in range(20))
        print(f"/v1/indicators of a past period: first {first:.1f} ms, again {again:.1f} ms")
        print(f"serve: resident {rss_mb(server.pid):.0f} MB after the requests")
    finally:
        server.terminate()
        bare.terminate()
        server.join(10)
        bare.join(10)
        loop.run_until_complete(drop_database(server_url, url))
        loop.close()


def _ready(base: str, timeout: float = 1800) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/v1/corridors.csv?limit=1", timeout=60) as r:
                if r.status == 200 and len(r.read().splitlines()) > 1:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("serve did not answer from a snapshot")


async def _max_id(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT max(id) FROM quotes"))
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quotes", type=int, nargs="+", default=[1_000_000],
                        help="the sizes of history to measure (default: 1000000)")
    parser.add_argument("--database-url", default=os.environ.get(
        "SENDCOST_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL server to create the throw-away databases on")
    args = parser.parse_args()
    for n in args.quotes:
        measure(args.database_url, n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
