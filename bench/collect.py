"""Benchmark: 250 corridors × 10 operators × 2 amounts from the sandbox into PostgreSQL.

End to end (HTTP on loopback to the sandbox in its own process, archive, parse, validate,
store) and, beside it, the peer measured in the same run: a bare asyncpg
``copy_records_to_table`` of the same rows into a table shaped like ``quotes``.

    .venv/bin/python bench/collect.py [--database-url postgresql://postgres@127.0.0.1:5432/test]

The database named is only used to create (and drop) a throw-away database of its own.
Goal (issue 4): ≥ 2,000 quotes/s end to end; storage stage ≥ 0.5 × bare COPY. The storage
stage is the collector's writer (the time it spends writing, every run's batch through it),
measured on a first collection that creates the services and on a second, steady-state one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import polars as pl

from collector.rpw_import import frame_to_quotes
from collector.run import Collector
from collector.sandbox import corridors_config, sources_config
from corridors.config import parse_config
from corridors.store import connect

SANDBOX = ("from aiohttp import web; from collector.sandbox import Sandbox; "
           "web.run_app(Sandbox(operators_n={n}).app(), host='127.0.0.1', port={port}, "
           "access_log=None, print=None)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(port: int) -> None:
    for _ in range(200):
        with contextlib.suppress(OSError):
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        await asyncio.sleep(0.05)
    raise SystemExit("the sandbox did not start")


def expected_of(corridors: int, operators: int) -> int:
    return corridors * operators * 2


async def main(server_url: str, corridors: int, operators: int) -> None:
    name = f"sendcost_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    port = free_port()
    sandbox = subprocess.Popen([sys.executable, "-c", SANDBOX.format(n=operators, port=port)])
    try:
        await wait_for(port)
        base = f"http://127.0.0.1:{port}"
        sources = [s for s in sources_config(base, operators_n=operators)
                   if s["kind"] in ("ecb_rates", "operator_json")]
        for s in sources:
            s["max_concurrency"] = 16
            s["requests_per_second"] = 100_000.0
        config = parse_config({"corridors": corridors_config(corridors), "sources": sources})
        store = await connect(url, max_size=12)
        await store.migrate()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            collector = Collector(config, store, session, store_batch=5000)
            await collector.run("sandbox-ecb")
            names = [s["name"] for s in sources if s["kind"] == "operator_json"]
            # Twice: the first collection creates every service; the second is the steady
            # state of a scheduled collector (the same services, new prices).
            phases = []
            for _ in range(2):
                writer = collector.writer
                before = (writer.seconds, writer.writes, writer.batches)
                started = time.perf_counter()
                reports = await collector.run_all(names)
                elapsed = time.perf_counter() - started
                phases.append((reports, elapsed, writer.seconds - before[0],
                               writer.writes - before[1], writer.batches - before[2]))
        first_reports = phases[0][0]
        bad = [r.line() for reports, *_ in phases for r in reports if r.status != "ok"]
        run_ids = [r.run_id for r in first_reports]

        # The peer: the same rows, COPYed bare into a table shaped like quotes (no indexes),
        # and, for reference, into one with the indexes quotes has.
        cols = ["service_id", "period", "amount_usd", "send_amount", "send_currency",
                "receive_currency", "fee", "applied_rate", "reference_rate",
                "reference_source", "reference_at", "received_amount", "fee_deducted",
                "transparent", "collected_at", "source", "raw_response_id", "run_id", "flags"]
        async with store.pool.acquire() as conn:
            rows = [tuple(r) for r in await conn.fetch(
                f"SELECT {', '.join(cols)} FROM quotes WHERE run_id = ANY($1::bigint[])",
                run_ids)]
            await conn.execute("CREATE TABLE bare_copy (LIKE quotes INCLUDING DEFAULTS)")
            await conn.execute("CREATE TABLE bare_indexed (LIKE quotes INCLUDING ALL)")
            t0 = time.perf_counter()
            await conn.copy_records_to_table("bare_copy", records=rows, columns=cols)
            bare_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            await conn.copy_records_to_table("bare_indexed", records=rows, columns=cols)
            indexed_seconds = time.perf_counter() - t0

        # The storage stage alone, as the bare COPY is measured: the same quotes (an hour
        # later, so they are new) in one store_quotes call, by a fresh process-side store
        # whose service-id cache is cold, with no HTTP work competing for the event loop.
        frame = await store.quote_frame()
        frame = frame.filter(pl.col("source").is_in(names)).with_columns(
            pl.col("collected_at") + pl.duration(days=1))
        quotes = frame_to_quotes(frame.filter(pl.col("collected_at").dt.date()
                                              == pl.col("collected_at").dt.date().min()))
        quotes = quotes[:expected_of(corridors, operators)]
        alone = await connect(url, max_size=2)
        t0 = time.perf_counter()
        result = await alone.store_quotes(quotes)
        alone_seconds = time.perf_counter() - t0
        assert result.inserted == len(quotes), result
        # Again, an hour later: services known to the process, statements prepared.
        later = [dataclasses.replace(q, collected_at=q.collected_at + dt.timedelta(hours=1))
                 for q in quotes]
        t0 = time.perf_counter()
        result = await alone.store_quotes(later)
        steady_seconds = time.perf_counter() - t0
        assert result.inserted == len(later), result
        await alone.close()
        await store.close()
    finally:
        sandbox.terminate()
        sandbox.wait()
        admin = await asyncpg.connect(server_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    expected = expected_of(corridors, operators)
    bare = len(rows) / bare_seconds
    print(f"collect: {corridors} corridors × {operators} operators × 2 amounts = "
          f"{expected:,} quotes a collection, twice")
    print(f"  bare COPY (peer):       {bare:8,.0f} quotes/s   ({bare_seconds:.3f} s, "
          f"{len(rows):,} rows into a table shaped like quotes, no indexes)")
    print(f"  COPY, quotes' indexes:  {len(rows) / indexed_seconds:8,.0f} quotes/s   "
          f"({indexed_seconds:.3f} s; the floor any exactly-once store pays)")
    for label, (reports, elapsed, busy, writes, batches) in zip(
            ("first collection (creates the services)", "second collection (steady state)"),
            phases, strict=True):
        stored = sum(r.stored for r in reports)
        print(f"  {label}: {stored:,} stored in {elapsed:.2f} s")
        print(f"    end to end:           {stored / elapsed:8,.0f} quotes/s   (goal ≥ 2,000)")
        storage = stored / busy if busy else float("nan")
        print(f"    storage stage:        {storage:8,.0f} quotes/s   ({busy:.3f} s writing: "
              f"{batches} run batches in {writes} group commits)")
        print(f"    storage / bare COPY:  {storage / bare:8.2f}         (goal ≥ 0.5)")
    stage = len(quotes) / alone_seconds
    print(f"  storage stage alone, one call, cold cache: {stage:8,.0f} quotes/s "
          f"({alone_seconds:.3f} s; / bare COPY {stage / bare:.2f})")
    steady = len(later) / steady_seconds
    print(f"  storage stage alone, one call, warm:       {steady:8,.0f} quotes/s "
          f"({steady_seconds:.3f} s; / bare COPY {steady / bare:.2f})")
    for line in bad:
        print("  not ok:", line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get(
        "SENDCOST_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--corridors", type=int, default=250)
    parser.add_argument("--operators", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.database_url, args.corridors, args.operators))
