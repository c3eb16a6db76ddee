"""Benchmark: 250 corridors × 10 operators × 2 amounts from the sandbox into PostgreSQL.

End to end (HTTP on loopback to the sandbox in its own process, archive, parse, validate,
store) and, beside it, the peer measured in the same run: a bare asyncpg
``copy_records_to_table`` of the same rows into a table with the constraints ``quotes`` has
(month partitions, keys, indexes, foreign keys).

    .venv/bin/python bench/collect.py [--database-url postgresql://postgres@127.0.0.1:5432/test]

The database named is only used to create (and drop) a throw-away database of its own.
Goal (issue 4): ≥ 2,000 quotes/s end to end; storage stage ≥ 0.5 × bare COPY. The storage
stage (``Store.store_quotes``: services resolved or created, quotes written exactly once,
committed) is measured as the bare COPY is: one call with the same rows, nothing else on
the event loop — on an empty database (the first collection's write, which creates every
service), and twice more with new prices. The first write is also set beside a bare COPY of
the rows it writes: its services and its quotes. The collector's writer is also timed
inside the two collections; that wall time includes waiting for the event loop the
fetching and parsing share, so it is printed for information beside the goal's measure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from collector.run import Collector
from collector.sandbox import corridors_config, sources_config
from corridors.config import parse_config
from corridors.store import COPY_COLUMNS, SERVICE_COLUMNS, Store, WriteBatch, WriteResult, connect
from corridors.types import Quote

#: Each single write (and the bare COPY beside it) is timed this many times; the median counts.
REPEAT = 5

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


async def bare_gets(session: aiohttp.ClientSession, urls: list[str], *, concurrency: int
                    ) -> tuple[int, float, float]:
    """(requests, seconds, CPU seconds) of plain GETs of ``urls``, ``concurrency`` at a time."""
    todo = iter(urls)

    async def worker() -> None:
        for url in todo:
            async with session.get(url) as resp:
                await resp.read()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return len(urls), time.perf_counter() - started, time.process_time() - cpu


#: The raw_responses columns a first write's empty database is given.
RAW_COLUMNS = ("id, source, url, fetched_at, status, content_type, headers, content_hash, "
               "payload, run_id, licence, body_size")


async def constrained_like_quotes(conn: asyncpg.Connection, name: str) -> None:
    """A table with quotes' columns and constraints: the same month partitions (and a
    default one), primary and unique keys, indexes, checks and foreign keys."""
    await conn.execute(f"CREATE TABLE {name} (LIKE quotes INCLUDING ALL) "
                       "PARTITION BY RANGE (collected_at)")
    for k, r in enumerate(await conn.fetch(
            "SELECT pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'quotes'::regclass")):
        await conn.execute(f"CREATE TABLE {name}_{k} PARTITION OF {name} {r['bound']}")
    await conn.execute(
        f"ALTER TABLE {name} ADD FOREIGN KEY (service_id) REFERENCES services (id), "
        "ADD FOREIGN KEY (raw_response_id, raw_fetched_at) "
        "REFERENCES raw_responses (id, fetched_at) MATCH FULL, "
        "ADD FOREIGN KEY (run_id) REFERENCES collection_runs (id), "
        "ADD FOREIGN KEY (import_id) REFERENCES imports (id)")


def spread(times: list[float]) -> str:
    """'median s (min–max)' of repeated timings."""
    return (f"{statistics.median(times):.3f} s, {min(times):.3f}–{max(times):.3f} over "
            f"{len(times)}")


def expected_of(corridors: int, operators: int) -> int:
    return corridors * operators * 2


async def main(server_url: str, corridors: int, operators: int) -> None:
    name = f"sendcost_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    extra_dbs: list[str] = []
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
            collector = Collector(config, store, session)
            await collector.run("sandbox-ecb")
            # The quotes the first collection writes, as the writer hands them to the store:
            # the rows of the single writes below (and of the bare COPY beside them).
            quotes: list[Quote] = []
            write = collector.writer.write

            async def recording(batch: WriteBatch) -> WriteResult:
                result = await write(batch)
                if not phases:
                    quotes.extend(batch.quotes)
                return result

            collector.writer.write = recording  # type: ignore[method-assign]
            names = [s["name"] for s in sources if s["kind"] == "operator_json"]
            # Twice: the first collection creates every service; the second is the steady
            # state of a scheduled collector (the same services, new prices).
            phases: list[tuple[Any, ...]] = []
            for _ in range(2):
                writer, archiver = collector.writer, collector.archiver
                before = (writer.seconds, writer.writes, writer.batches, archiver.writes,
                          archiver.archived)
                started, cpu = time.perf_counter(), time.process_time()
                reports = await collector.run_all(names)
                elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
                phases.append((reports, elapsed, writer.seconds - before[0],
                               writer.writes - before[1], writer.batches - before[2], cpu,
                               archiver.writes - before[3], archiver.archived - before[4]))
            # The floor under the fetching: a bare aiohttp client GETting the same URLs at the
            # same concurrency, doing nothing with the answers.
            urls = [str(r["url"]) for r in await store.pool.fetch(
                "SELECT url FROM raw_responses WHERE run_id = ANY($1::bigint[])",
                [r.run_id for r in phases[-1][0]])]
            bare_http = await bare_gets(session, urls, concurrency=16 * len(names))
        first_reports = phases[0][0]
        bad = [r.line() for reports, *_ in phases for r in reports if r.status != "ok"]
        run_ids = [r.run_id for r in first_reports]

        # The storage stage alone, as the bare COPY is measured: the same quotes (the first
        # collection's) in one store_quotes call, with no HTTP work competing for the event
        # loop.
        assert len(quotes) == sum(r.stored for r in first_reports)

        def later(days: int) -> list[Quote]:
            """The same services' prices, ``days`` later: new quotes."""
            return [dataclasses.replace(q, collected_at=q.collected_at + dt.timedelta(days=days))
                    for q in quotes]

        async def timed(target: Store, batch: list[Quote]) -> float:
            t0 = time.perf_counter()
            result = await target.store_quotes(batch)
            seconds = time.perf_counter() - t0
            assert result.inserted == len(batch), result
            return seconds

        # First writes go each into an empty database of its own: the write that creates
        # every corridor, firm and service, as a first collection's does. The databases are
        # made (and migrated) beforehand: CREATE DATABASE writes the template's pages to the
        # WAL, whose flushing is not the write's to pay.
        empties = []
        for i in range(REPEAT):
            db = f"{name}_first{i}"
            extra_dbs.append(db)
            admin = await asyncpg.connect(server_url)
            await admin.execute(f'CREATE DATABASE "{db}"')
            await admin.close()
            empty = await connect(urlunsplit(urlsplit(server_url)._replace(path=f"/{db}")),
                                  max_size=1)
            await empty.migrate()
            empties.append(empty)

        # The peer: the same rows, COPYed bare into a table with the constraints quotes has
        # (its month partitions, keys, indexes and foreign keys: migration 10), and, for
        # reference, into one shaped like quotes with none of them. The machine is shared and
        # each timing is tens of milliseconds, so the peer and the stage are timed in turn,
        # REPEAT rounds; each round gives its ratios, and the medians are the figures.
        cols = list(COPY_COLUMNS)  # the columns the store writes, no more, no fewer
        bare_times: list[float] = []
        loose_times: list[float] = []
        # A first write also creates every service: the bare COPY of the rows it writes is
        # the round's bare COPY of its quotes plus one of its services (into a table with
        # the constraints services has).
        both_times: list[float] = []
        first_times: list[float] = []
        cold_times: list[float] = []
        warm_times: list[float] = []
        async with store.pool.acquire() as conn:
            rows = [tuple(r) for r in await conn.fetch(
                f"SELECT {', '.join(cols)} FROM quotes WHERE run_id = ANY($1::bigint[])",
                run_ids)]
            service_rows = [tuple(r) for r in await conn.fetch(
                f"SELECT {', '.join(SERVICE_COLUMNS)} FROM services WHERE id IN "
                "(SELECT service_id FROM quotes WHERE run_id = ANY($1::bigint[]))", run_ids)]
            # A first collection archives its responses before it writes a quote: each empty
            # database gets the responses the quotes name (not timed).
            raw_rows = [tuple(r) for r in await conn.fetch(
                f"SELECT {RAW_COLUMNS} FROM raw_responses WHERE id IN "
                "(SELECT raw_response_id FROM quotes WHERE run_id = ANY($1::bigint[]))",
                run_ids)]
            marks = ", ".join(f"${k}" for k in range(1, len(RAW_COLUMNS.split(", ")) + 1))
            for empty in empties:
                await empty.pool.executemany(
                    f"INSERT INTO raw_responses ({RAW_COLUMNS}) VALUES ({marks})", raw_rows)
            with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
                await conn.execute("CHECKPOINT")
            for i in range(REPEAT):
                await constrained_like_quotes(conn, f"bare_copy_{i}")
                await conn.execute(f"CREATE TABLE bare_loose_{i} (LIKE quotes INCLUDING DEFAULTS)")
                for table, times in ((f"bare_copy_{i}", bare_times),
                                     (f"bare_loose_{i}", loose_times)):
                    t0 = time.perf_counter()
                    await conn.copy_records_to_table(table, records=rows, columns=cols)
                    times.append(time.perf_counter() - t0)
                await conn.execute(
                    f"CREATE TABLE bare_services_{i} (LIKE services INCLUDING ALL); "
                    f"ALTER TABLE bare_services_{i} "
                    "ADD FOREIGN KEY (corridor_id) REFERENCES corridors (id), "
                    "ADD FOREIGN KEY (firm_id) REFERENCES firms (id)")
                t0 = time.perf_counter()
                await conn.copy_records_to_table(f"bare_services_{i}", records=service_rows,
                                                 columns=list(SERVICE_COLUMNS))
                both_times.append(bare_times[i] + time.perf_counter() - t0)
                first_times.append(await timed(empties[i], quotes))
                # New prices by a fresh process-side store, then again by the same store
                # (its statements prepared).
                alone = await connect(url, max_size=2)
                cold_times.append(await timed(alone, later(2 * i + 1)))
                warm_times.append(await timed(alone, later(2 * i + 2)))
                await alone.close()
        for empty in empties:
            await empty.close()
        await store.close()
    finally:
        sandbox.terminate()
        sandbox.wait()
        admin = await asyncpg.connect(server_url)
        for db in (name, *extra_dbs):
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()

    expected = expected_of(corridors, operators)
    bare_seconds = statistics.median(bare_times)
    bare = len(rows) / bare_seconds
    print(f"collect: {corridors} corridors × {operators} operators × 2 amounts = "
          f"{expected:,} quotes a collection, twice; single writes: median of {REPEAT}")
    print(f"  bare COPY (peer):       {bare:8,.0f} quotes/s   ({spread(bare_times)}, "
          f"{len(rows):,} rows into a table with quotes' constraints: month partitions, "
          "keys, indexes, foreign keys)")
    print(f"  COPY, no constraints:   {len(rows) / statistics.median(loose_times):8,.0f} "
          f"quotes/s   ({spread(loose_times)}; shaped like quotes, no index or key: "
          "for reference)")
    gets, gets_seconds, gets_cpu = bare_http
    print(f"  bare aiohttp GETs (floor): {gets / gets_seconds:6,.0f} requests/s "
          f"({gets:,} of the second collection's URLs, same concurrency, answers unused; "
          f"{gets_cpu / gets * 1e6:.0f} µs of CPU each)")
    for label, (reports, elapsed, busy, writes, batches, cpu, arch_writes, archived) in zip(
            ("first collection (creates the services)", "second collection (steady state)"),
            phases, strict=True):
        stored = sum(r.stored for r in reports)
        print(f"  {label}: {stored:,} stored in {elapsed:.2f} s")
        ratio = stored / elapsed / (gets / gets_seconds)
        print(f"    end to end:           {stored / elapsed:8,.0f} quotes/s   (goal ≥ 2,000; "
              f"/ bare GETs {ratio:.2f}; the collector's CPU: {cpu / stored * 1e6:.0f} µs a "
              f"quote, {cpu / elapsed:.0%} of a core)")
        print(f"    archive:              {archived:,} responses in {arch_writes} statements")
        storage = stored / busy if busy else float("nan")
        print(f"    writer, in pipeline:  {storage:8,.0f} quotes/s   ({busy:.3f} s wall time "
              f"writing {batches} run batches in {writes} group commits, / bare COPY "
              f"{storage / bare:.2f};")
        print("                          the wall time includes waiting for the event loop, "
              "which the fetching and parsing share)")
    print("  storage stage alone, as the bare COPY is measured (one store_quotes call of the "
          "same rows, nothing else on the event loop; goal ≥ 0.5):")
    def ratios(peer: list[float], times: list[float]) -> str:
        """The rounds' peer / stage: 'median (min–max)'."""
        r = sorted(b / t for b, t in zip(peer, times, strict=True))
        return f"{statistics.median(r):.2f} ({r[0]:.2f}–{r[-1]:.2f})"

    for label, times in (
            ("first write, empty database", first_times),
            ("new prices, fresh process", cold_times),
            ("new prices, warm", warm_times)):
        rate = len(quotes) / statistics.median(times)
        print(f"    {label + ':':29} {rate:8,.0f} quotes/s   ({spread(times)}); / bare COPY, "
              f"median of the rounds {ratios(bare_times, times)}")
    print(f"    first write / bare COPY of its {len(service_rows):,} services and "
          f"{len(rows):,} quotes ({spread(both_times)}): median of the rounds "
          f"{ratios(both_times, first_times)}")
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
