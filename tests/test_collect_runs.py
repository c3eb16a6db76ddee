"""Collection runs end to end: real PostgreSQL, real HTTP on loopback (the sandbox served by
an aiohttp test server), faults, the circuit breaker, a killed connection, re-parse, and the
scheduler. Source names are unique per test: the database is shared by the session."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from collector.run import Collector
from collector.sandbox import Faults, Sandbox, expected_rejection, sources_config
from collector.schedule import add_jobs, trigger
from corridors import runtime
from corridors.config import Config, parse_config
from corridors.store import Store, connect

DATA_DIR = tempfile.TemporaryDirectory(prefix="sc-data-", dir="/tmp")
CORRIDORS = [("USA", "MEX"), ("GBR", "IND"), ("FRA", "SEN"), ("USA", "PHL"), ("SAU", "PAK"),
             ("DEU", "TUR"), ("USA", "GTM"), ("GBR", "NGA")]


async def start_sandbox(faults: Faults | None = None, operators_n: int = 4
                        ) -> tuple[TestServer, Sandbox]:
    sandbox = Sandbox(faults or Faults(), operators_n=operators_n)
    server = TestServer(sandbox.app(), host="127.0.0.1")
    await server.start_server()
    return server, sandbox


def make_config(base_url: str, *, operators_n: int, corridors: list[tuple[str, str]],
                posts: tuple[str, ...] = (), max_concurrency: int = 4,
                **collection: Any) -> tuple[Config, str]:
    """A config of sandbox sources renamed with a unique prefix; (config, prefix)."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    sources = sources_config(base_url, operators_n=operators_n, posts=posts)
    for s in sources:
        s["name"] = s["name"].replace("sandbox", prefix)
        s["max_concurrency"] = max_concurrency
        s["requests_per_second"] = 1000.0
        if s["kind"] != "ecb_rates":
            s.setdefault("options", {})["reference_sources"] = [f"{prefix}-ecb"]
    raw = {"collection": {"backoff_base_seconds": 0.01, "backoff_max_seconds": 2.0,
                          "timeout_seconds": 2.0, **collection},
           # A spool of the tests' own, never the user's.
           "service": {"data_dir": DATA_DIR.name},
           "corridors": [{"from": a, "to": b} for a, b in corridors], "sources": sources}
    return parse_config(raw), prefix


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def test_run_stores_archives_and_measures_against_reference(store: Store,
                                                                   session: Any) -> None:
    server, sandbox = await start_sandbox()
    try:
        config, p = make_config(str(server.make_url("")).rstrip("/"), operators_n=2,
                                corridors=CORRIDORS[:3], posts=("FRA",))
        collector = Collector(config, store, session, seed=1)
        reports = await collector.run_all()
        by_name = {r.source: r for r in reports}
        assert by_name[f"{p}-ecb"].status == "ok" and by_name[f"{p}-ecb"].rates > 20
        # Every response archived, in fewer statements than responses (sources share them).
        assert collector.archiver.archived == sum(r.requests for r in reports)
        assert collector.archiver.writes < collector.archiver.archived
        op = by_name[f"{p}-op-0"]
        print("\n".join(r.line() for r in reports))
        assert (op.status, op.stored, op.quarantined, op.requests) == ("ok", 6, 0, 6)
        rows = await store.pool.fetch(
            "SELECT q.*, r.status AS raw_status, r.url FROM quotes q "
            "JOIN raw_responses r ON r.id = q.raw_response_id WHERE q.run_id = $1", op.run_id)
        assert len(rows) == 6 and {r["raw_status"] for r in rows} == {200}
        for r in rows:
            assert r["reference_rate"] > 0 and r["reference_source"].startswith(f"{p}-ecb")
            assert "reference_stale" not in r["flags"] and r["transparent"]
            assert r["send_amount"] in (200, 500, 120, 300, 140, 345)
        archived = await store.pool.fetchval(
            "SELECT count(*) FROM raw_responses WHERE run_id = $1", op.run_id)
        assert archived == 6
        post = by_name[f"{p}-post-fra"]
        assert post.status == "ok" and post.stored == 2  # FRA-SEN at EUR 140 and 345
        flags = await store.pool.fetchval(
            "SELECT flags FROM quotes WHERE run_id = $1 LIMIT 1", post.run_id)
        assert any(f.startswith("valid_from:") for f in flags)
        comparison = by_name[f"{p}-comparison"]
        assert comparison.status == "ok" and comparison.stored == 4 * 2 * 3  # 4 providers
        frame = await store.quote_frame(source=f"{p}-op-0")
        assert frame.height == 6 and not frame["reference_stale"].any()

        # The second run asks conditionally: the sandbox answers 304, the body is re-used.
        again = await collector.run(f"{p}-op-0")
        assert again.stored == 6
        statuses = await store.pool.fetch(
            "SELECT status, payload IS NULL AS empty, headers->>'X-Sendcost-Body-From' AS src "
            "FROM raw_responses WHERE run_id = $1", again.run_id)
        assert {(r["status"], r["empty"]) for r in statuses} == {(304, True)}
        assert all(r["src"] for r in statuses)
        # Each 304's hash is that of the body it re-uses, not the hash of nothing.
        pairs = await store.pool.fetch(
            "SELECT r.content_hash AS hash, o.content_hash AS original FROM raw_responses r "
            "JOIN raw_responses o ON o.id = (r.headers->>'X-Sendcost-Body-From')::bigint "
            "WHERE r.run_id = $1", again.run_id)
        assert len(pairs) == 6 and all(p["hash"] == p["original"] for p in pairs)

        # A re-parse fetches nothing and replaces the run's quotes with the same ones.
        served = sandbox.requests
        redo = await collector.reparse(op.run_id)
        assert sandbox.requests == served
        assert (redo.status, redo.stored, redo.reparse_of) == ("ok", 6, op.run_id)
        assert await store.pool.fetchval(
            "SELECT count(*) FROM quotes WHERE source = $1", f"{p}-op-0") == 12
        redo304 = await collector.reparse(again.run_id)
        assert (redo304.status, redo304.stored) == ("ok", 6)
    finally:
        await server.close()


async def test_faulty_upstreams_lose_nothing_and_store_nothing_wrong(store: Store,
                                                                     session: Any) -> None:
    faults = Faults(error_rate=0.20, timeout_rate=0.10, hang_seconds=1.5, malformed_rate=0.05,
                    burst_429_every=37, burst_429_length=4, retry_after="1",
                    bad_quote_rate=0.15, seed=7)
    server, sandbox = await start_sandbox(Faults(), operators_n=5)
    try:
        config, p = make_config(str(server.make_url("")).rstrip("/"), operators_n=5,
                                corridors=CORRIDORS, timeout_seconds=0.5,
                                circuit_failures=1000, max_retries=3)
        collector = Collector(config, store, session, seed=3)
        await collector.run(f"{p}-ecb")
        sandbox.faults = faults
        sandbox.log.clear()
        names = [f"{p}-op-{i}" for i in range(5)]
        reports = await collector.run_all(names)
    finally:
        await server.close()

    # What the sandbox finally answered to each request (retries answer the same URL again).
    final: dict[tuple[int, str, str], str] = {}
    for path_qs, outcome in sandbox.log:
        parts = urlsplit(path_qs)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        op = int(parts.path.split("/")[2])
        final[(op, f"{q['source']}-{q['destination']}", q["amount"])] = outcome
    assert len(final) == 5 * len(CORRIDORS) * 2
    outcomes = Counter(final.values())
    assert outcomes["ok"] > 40  # the faults left most requests answerable in the end

    run_ids = [r.run_id for r in reports]
    stored = await store.pool.fetch(
        "SELECT s.service_key, q.amount_usd, q.send_amount, q.source, q.flags FROM quotes q "
        "JOIN services s ON s.id = q.service_id WHERE q.run_id = ANY($1::bigint[])", run_ids)
    quarantined = await store.pool.fetch(
        "SELECT reason, field, payload, source FROM quarantined_quotes "
        "WHERE run_id = ANY($1::bigint[])", run_ids)

    expected_ok: Counter[tuple[int, str, str]] = Counter()
    expected_bad: Counter[str] = Counter()
    for (op, corridor, amount), outcome in final.items():
        if outcome != "ok":
            continue
        reason = expected_rejection(op, corridor, amount, faults.bad_quote_rate)
        if reason is None:
            expected_ok[(op, corridor, amount)] += 1
        else:
            expected_bad[reason] += 1
    got_ok: Counter[tuple[int, str, str]] = Counter()
    for r in stored:
        op = int(r["source"].rsplit("-", 1)[1])
        corridor = r["service_key"].split(":")[2]  # firm type:firm:corridor:…
        got_ok[(op, corridor, str(r["send_amount"]))] += 1
    # Every valid quote that was answered is stored exactly once; nothing else is stored.
    assert got_ok == expected_ok
    # Every implausible one is quarantined, with the reason the sandbox built into it.
    assert Counter(r["reason"] for r in quarantined) == expected_bad
    assert all(r["field"] for r in quarantined)
    # Every failure is recorded in its run, by kind.
    errors: Counter[str] = Counter()
    for r in reports:
        errors.update({k: v for k, v in r.errors.items() if not k.startswith("retry:")})
    assert errors["http_5xx"] == outcomes["5xx"]
    assert errors["timeout"] == outcomes["timeout"]
    assert errors["malformed"] == outcomes["malformed"]
    assert errors["http_429"] == outcomes["429"]
    assert sum(r.requests for r in reports) == len(sandbox.log)
    recorded = await store.pool.fetch(
        "SELECT status, errors, requests, quotes_stored, quotes_quarantined, finished_at "
        "FROM collection_runs WHERE id = ANY($1::bigint[])", run_ids)
    assert all(r["finished_at"] is not None for r in recorded)
    assert sum(r["quotes_stored"] for r in recorded) == sum(expected_ok.values())
    assert sum(r["quotes_quarantined"] for r in recorded) == sum(expected_bad.values())
    assert sum(r["errors"].get("malformed", 0) for r in recorded) == outcomes["malformed"]
    assert all("reference_stale" not in r["flags"] for r in stored)

    # A re-parse replaces what the responses gave, quarantine records included: nothing is
    # counted twice.
    most = max(reports, key=lambda r: r.quarantined)
    assert most.quarantined > 0
    redo = await collector.reparse(most.run_id)
    assert (redo.stored, redo.quarantined) == (most.stored, most.quarantined)
    assert await store.pool.fetchval(
        "SELECT count(*) FROM quarantined_quotes WHERE source = $1", most.source
    ) == most.quarantined


async def test_circuit_breaker_opens_and_recovers(store: Store, session: Any) -> None:
    server, sandbox = await start_sandbox(Faults(), operators_n=1)
    try:
        config, p = make_config(str(server.make_url("")).rstrip("/"), operators_n=1,
                                corridors=CORRIDORS[:5], max_concurrency=1, max_retries=0,
                                circuit_failures=3, circuit_cooldown_seconds=0.5)
        collector = Collector(config, store, session)
        await collector.run(f"{p}-ecb")
        # The cool-down runs on the test's clock: on a busy machine the two runs below could
        # take longer than it on the real one.
        now = [0.0]
        collector.fetcher.circuit(f"{p}-op-0").clock = lambda: now[0]
        sandbox.faults.error_rate = 1.0
        sandbox.log.clear()
        broken = await collector.run(f"{p}-op-0")
        assert broken.status == "failed"
        # Two requests may be in flight when the third failure opens the circuit.
        failed = broken.errors["http_5xx"]
        assert 3 <= failed <= 4 and broken.errors["circuit_open"] == 10 - failed
        assert len(sandbox.log) == failed  # an open circuit asks nothing
        assert collector.fetcher.circuit(f"{p}-op-0").state == "open"

        sandbox.faults.error_rate = 0.0
        still_open = await collector.run(f"{p}-op-0")
        assert still_open.errors["circuit_open"] == 10 and len(sandbox.log) == failed
        now[0] += 0.6
        recovered = await collector.run(f"{p}-op-0")
        assert (recovered.status, recovered.stored) == ("ok", 10)
        assert collector.fetcher.circuit(f"{p}-op-0").state == "closed"
    finally:
        await server.close()


def with_application_name(url: str, name: str) -> str:
    """``url`` whose connections show as ``name`` in pg_stat_activity. The embedded
    database's URL already has a query (``?host=<socket folder>``): add to it."""
    parts = urlsplit(url)
    query = "&".join(filter(None, (parts.query, urlencode({"application_name": name}))))
    return urlunsplit(parts._replace(query=query))


def where_tasks_wait() -> str:
    """Every task of sendcost's or asyncpg's, with the whole chain of awaits it is in (a
    task's own stack shows only its outermost coroutine)."""
    out: list[str] = []
    for task in asyncio.all_tasks():
        chain: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                chain.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} "
                             f"{frame.f_code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if any(("/collector/" in c or "/corridors/" in c or "asyncpg" in c) for c in chain):
            out.append(f"{task.get_name()}:\n" + "\n".join(chain))
    return "\n".join(out)


async def test_killed_connection_mid_write_leaves_nothing_half_written(
        store: Store, database_url: str, session: Any) -> None:
    app_name = f"sendcost-kill-{uuid.uuid4().hex[:6]}"
    victim = await connect(with_application_name(database_url, app_name), max_size=2)
    server, _ = await start_sandbox(Faults(), operators_n=2)
    locker = await asyncpg.connect(database_url)
    try:
        config, p = make_config(str(server.make_url("")).rstrip("/"), operators_n=2,
                                corridors=CORRIDORS[:4])
        collector = Collector(config, victim, session)
        await collector.run(f"{p}-ecb")
        # Hold the quotes table so the run's write waits inside its transaction (services
        # inserted, rows copied), then cut that connection exactly there.
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE quotes IN EXCLUSIVE MODE")
        task = asyncio.create_task(collector.run(f"{p}-op-0"))
        # Up to a minute: on a busy machine the run's fetches take a while before its write.
        # Watched from outside the locker's transaction: inside one, pg_stat_activity is a
        # snapshot taken at its first read, and would never show the run reaching the lock.
        for _ in range(1200):
            pid = await store.pool.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
                "AND wait_event_type = 'Lock'", app_name)
            if pid:
                break
            await asyncio.sleep(0.05)
        if not pid:  # say where the run is, for whoever reads a failure
            activity = await store.pool.fetch(
                "SELECT state, wait_event_type, wait_event, left(query, 120) AS query "
                "FROM pg_stat_activity WHERE application_name = $1", app_name)
            raise AssertionError(f"the run never reached its write (done: {task.done()}); "
                                 f"its connections: {[dict(r) for r in activity]}; "
                                 f"where it is:\n{where_tasks_wait()}")
        assert await locker.fetchval("SELECT pg_terminate_backend($1)", pid)
        await tx.rollback()
        dead = await task
        assert dead.status == "failed" and dead.stored == 0 and dead.message
        row = await store.pool.fetchrow("SELECT status, message, finished_at FROM "
                                        "collection_runs WHERE id = $1", dead.run_id)
        assert row["status"] == "failed" and row["finished_at"] is not None
        assert await store.pool.fetchval(
            "SELECT count(*) FROM quotes WHERE source = $1", f"{p}-op-0") == 0
        assert await store.pool.fetchval(
            "SELECT count(*) FROM services WHERE service_key LIKE $1", f"{p}-op-0:%") == 0
        # The raw responses were archived before the write: nothing was lost.
        assert await store.pool.fetchval(
            "SELECT count(*) FROM raw_responses WHERE run_id = $1", dead.run_id) == 8

        nxt = await collector.run(f"{p}-op-0")
        assert (nxt.status, nxt.stored) == ("ok", 8)
        recovered = await collector.reparse(dead.run_id)
        assert (recovered.status, recovered.stored) == ("ok", 8)
    finally:
        await locker.close()
        await server.close()
        await victim.close()


async def test_a_write_lost_mid_run_is_held_and_written_later(
        store: Store, database_url: str, session: Any) -> None:
    # Batches of 2 quotes: the run writes while it is still fetching. The connection of its
    # first write is cut; that batch is held and written with a later one, nothing lost.
    app_name = f"sendcost-midrun-{uuid.uuid4().hex[:6]}"
    victim = await connect(with_application_name(database_url, app_name), max_size=4)
    server, _ = await start_sandbox(Faults(), operators_n=1)
    locker = await asyncpg.connect(database_url)
    try:
        config, p = make_config(str(server.make_url("")).rstrip("/"), operators_n=1,
                                corridors=CORRIDORS[:4], max_concurrency=1)
        collector = Collector(config, victim, session, store_batch=2)
        await collector.run(f"{p}-ecb")
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE quotes IN EXCLUSIVE MODE")
        task = asyncio.create_task(collector.run(f"{p}-op-0"))
        for _ in range(1200):  # watched from outside the locker's transaction, as above
            pid = await store.pool.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
                "AND wait_event_type = 'Lock'", app_name)
            if pid:
                break
            await asyncio.sleep(0.05)
        assert pid, "the run never reached its first write"
        assert await locker.fetchval("SELECT pg_terminate_backend($1)", pid)
        await tx.rollback()
        report = await task
        assert report.errors["database"] >= 1 and "malformed" not in report.errors
        assert (report.status, report.stored) == ("partial", 8)
        # The run's message names what went wrong, as for any other failure.
        assert report.message and "last error: database:" in report.message
        assert "held for the next write" in report.message
        assert await store.pool.fetchval(
            "SELECT count(*) FROM quotes WHERE source = $1", f"{p}-op-0") == 8
    finally:
        await locker.close()
        await server.close()
        await victim.close()


async def test_one_runs_failing_batch_does_not_sink_another_in_the_same_write(
        store: Store) -> None:
    from test_store import make_quote

    from collector.run import _Writer
    from corridors.store import WriteBatch

    tag = uuid.uuid4().hex[:8]
    good = WriteBatch([make_quote(service_key=f"{tag}:good", source=f"{tag}-a")], None,
                      [{"source": f"{tag}-a", "reason": "test", "payload": {"n": 1}}])
    # amount_usd is a smallint column: 70,000 makes the database refuse this batch.
    bad = WriteBatch([make_quote(service_key=f"{tag}:bad", source=f"{tag}-b",
                                 amount_usd=70_000)], -1)
    writer = _Writer(store)
    results = await asyncio.gather(writer.write(good), writer.write(bad),
                                   return_exceptions=True)
    first, second = results
    assert not isinstance(first, BaseException), first
    assert first.inserted == 1 and first.quarantined == 1
    assert isinstance(second, OverflowError | asyncpg.DataError)
    assert writer.writes == 1 and writer.batches == 2  # they went in together
    assert await store.pool.fetchval(
        "SELECT count(*) FROM quotes WHERE source = ANY($1::text[])",
        [f"{tag}-a", f"{tag}-b"]) == 1


async def test_responses_of_runs_side_by_side_are_archived_together(store: Store,
                                                                     tmp_path: Any) -> None:
    import datetime as dt

    from collector.run import _Archiver
    from collector.spool import Spool

    tag = uuid.uuid4().hex[:8]
    archiver = _Archiver(store, Spool(tmp_path), max_batch=3, delay=0.05)
    archiver.enter()

    def row(run: str, n: int) -> dict[str, Any]:
        return {"source": f"{tag}-{run}", "url": f"http://127.0.0.1/{run}/{n}",
                "fetched_at": dt.datetime.now(dt.UTC), "status": 200, "body": b"{}"}

    # Two runs' responses within one window: one statement. The next three fill a batch,
    # which goes at once rather than at the end of the window.
    ids = await asyncio.gather(archiver.add(row("a", 1)), archiver.add(row("b", 1)))
    assert archiver.writes == 1 and ids[0] < ids[1]
    archiver.delay = 30.0
    started = asyncio.get_running_loop().time()
    more = await asyncio.gather(*[archiver.add(row("a", n)) for n in range(2, 5)])
    assert archiver.writes == 2 and asyncio.get_running_loop().time() - started < 15
    await archiver.leave()
    stored = await store.pool.fetch(
        "SELECT id, url FROM raw_responses WHERE source LIKE $1 ORDER BY id", f"{tag}-%")
    assert [r["id"] for r in stored] == [*ids, *more]
    assert [r["url"].rsplit("/", 2)[1:] for r in stored] == [
        ["a", "1"], ["b", "1"], ["a", "2"], ["a", "3"], ["a", "4"]]


async def test_scheduler_fires_a_job_on_its_trigger(store: Store, session: Any) -> None:
    server, _ = await start_sandbox(Faults(), operators_n=1)
    try:
        config, p = make_config(str(server.make_url("")).rstrip("/"), operators_n=1,
                                corridors=CORRIDORS[:1])
        sources = [s for s in config.sources if s.name == f"{p}-ecb"]
        config = Config(**{**{f: getattr(config, f) for f in config.__dataclass_fields__},
                           "sources": tuple(
                               type(s)(**{**{f: getattr(s, f) for f in s.__dataclass_fields__},
                                          "schedule": "interval:3600", "jitter_seconds": 0})
                               for s in sources)})
        app = web.Application()
        app[runtime.CONFIG] = config
        app[runtime.STORE] = store
        app[runtime.HTTP] = session
        scheduler = AsyncIOScheduler(timezone="UTC")
        add_jobs(app, scheduler)
        add_jobs(app, scheduler)  # declared again on every start: replaced, not doubled
        scheduler.start()
        assert [j.id for j in scheduler.get_jobs()] == [f"collect:{p}-ecb"]
        try:
            for _ in range(60):
                n = await store.pool.fetchval(
                    "SELECT count(*) FROM collection_runs WHERE source = $1 AND status = 'ok'",
                    f"{p}-ecb")
                if n:
                    break
                await asyncio.sleep(0.1)
            assert n == 1
        finally:
            scheduler.shutdown(wait=False)
    finally:
        await server.close()


async def test_after_a_start_quote_sources_wait_for_the_first_rates(store: Store,
                                                                     session: Any) -> None:
    """The operator's job fires first, yet collects only once the ECB job has run: none of
    its quotes is left without a reference rate (``reference_stale``)."""
    from collector.schedule import collect_job

    server, _ = await start_sandbox(Faults(), operators_n=1)
    try:
        config, p = make_config(str(server.make_url("")).rstrip("/"), operators_n=1,
                                corridors=CORRIDORS[:2])
        app = web.Application()
        app[runtime.CONFIG] = config
        app[runtime.STORE] = store
        app[runtime.HTTP] = session
        add_jobs(app, AsyncIOScheduler(timezone="UTC"))

        async def rates_later() -> None:
            await asyncio.sleep(0.5)
            await collect_job(app, f"{p}-ecb")

        await asyncio.wait_for(asyncio.gather(collect_job(app, f"{p}-op-0"), rates_later()), 60)
        runs = {r["source"]: r for r in await store.pool.fetch(
            "SELECT source, started_at, finished_at FROM collection_runs WHERE source = ANY($1)",
            [f"{p}-ecb", f"{p}-op-0"])}
        assert runs[f"{p}-op-0"]["started_at"] >= runs[f"{p}-ecb"]["finished_at"]
        flags = await store.pool.fetch(
            "SELECT flags, reference_rate FROM quotes WHERE source = $1", f"{p}-op-0")
        assert len(flags) == 4
        assert all(r["reference_rate"] is not None and "reference_stale" not in r["flags"]
                   for r in flags)
    finally:
        await server.close()


def test_cron_schedule_fires_at_its_time() -> None:
    import datetime as dt

    config = parse_config({"sources": [{"name": "q", "kind": "rpw", "url": "x.csv",
                                        "schedule": "0 3 1 1,4,7,10 *", "jitter_seconds": 0}]})
    nxt = trigger(config.sources[0]).get_next_fire_time(
        None, dt.datetime(2026, 2, 10, tzinfo=dt.UTC))
    assert nxt == dt.datetime(2026, 4, 1, 3, 0, tzinfo=dt.UTC)
