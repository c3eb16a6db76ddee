"""No valid quote lost to an interruption (issue #14 item 2): the spool, its idempotent
replay, a 3-second database outage mid-collection, and `sendcost collect` stopped by SIGTERM
or killed, each followed by the recovery a start runs. The measure every test applies: each
response the upstream answered is archived, and each archived operator response gave
exactly one record — a quote or a quarantined quote (a sandbox operator response prices
one service) — so no quote is lost and none is stored twice."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pg_proxy import PgProxy

from collector.run import Collector
from collector.sandbox import Faults, Sandbox, sources_config
from collector.spool import SPOOL_HEADER, Journal, Spool, _decode
from corridors.config import Config, load_config, parse_config
from corridors.store import Store, connect

ROOT = Path(__file__).resolve().parent.parent
CORRIDORS = [("USA", "MEX"), ("GBR", "IND"), ("FRA", "SEN"), ("USA", "PHL"), ("SAU", "PAK"),
             ("DEU", "TUR"), ("USA", "GTM"), ("GBR", "NGA")]


def sandbox_sources(base_url: str, operators_n: int, prefix: str) -> list[dict[str, Any]]:
    """The sandbox's ECB and operator sources (nothing else), named with ``prefix``."""
    sources = [s for s in sources_config(base_url, operators_n=operators_n)
               if s["kind"] == "ecb_rates" or "-op-" in s["name"]]
    for s in sources:
        s["name"] = s["name"].replace("sandbox", prefix)
        s["max_concurrency"] = 1
        s["requests_per_second"] = 1000.0
        if s["kind"] != "ecb_rates":
            s.setdefault("options", {})["reference_sources"] = [f"{prefix}-ecb"]
    return sources


def make_config(base_url: str, data_dir: Path, operators_n: int = 3) -> tuple[Config, str]:
    prefix = f"d{uuid.uuid4().hex[:8]}"
    raw = {"collection": {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.5,
                          "timeout_seconds": 5.0},
           "service": {"data_dir": str(data_dir)},
           "corridors": [{"from": a, "to": b} for a, b in CORRIDORS],
           "sources": sandbox_sources(base_url, operators_n, prefix)}
    # Set on the Config too: $SENDCOST_DATA_DIR (newcomer-test sets it) wins over data_dir.
    return dataclasses.replace(parse_config(raw), data_dir=data_dir), prefix


def answered(sandbox: Sandbox) -> int:
    """Operator responses the sandbox answered with a quote."""
    return sum(1 for where, outcome in sandbox.log
               if outcome == "ok" and where.startswith("/operators/"))


async def records_per_response(store: Store, prefix: str) -> dict[int, int]:
    """Each archived 200 of the operator sources → how many quotes and quarantined quotes
    came from it."""
    rows = await store.pool.fetch(
        "SELECT a.id, (SELECT count(*) FROM quotes q WHERE q.raw_response_id = a.id) "
        "+ (SELECT count(*) FROM quarantined_quotes z WHERE z.raw_response_id = a.id) AS n "
        "FROM raw_responses a WHERE a.source LIKE $1 AND a.status = 200", f"{prefix}-op-%")
    return {r["id"]: r["n"] for r in rows}


async def test_the_spool_is_replayed_once_whatever_happens(store: Store,
                                                           tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    run_id = await store.start_run(f"{tag}-op")
    spool = Spool(tmp_path / "spool")
    now = dt.datetime.now(dt.UTC)
    rows = [{"source": f"{tag}-op", "url": f"http://127.0.0.1/q/{n}", "fetched_at": now,
             "status": 200, "content_type": "application/json", "headers": {"ETag": "x"},
             "body": b'{"n": %d}' % n, "run_id": run_id, "licence": None} for n in range(3)]
    keys = [spool.put(r) for r in rows]
    assert len(spool.pending()) == 3 and not list(spool.folder.glob(".*.tmp"))
    # A crash after the archive's commit, before the files were removed: replaying again
    # archives nothing twice.
    first_two = [spool.read(p) for p in spool.pending()[:2]]
    assert await store.archive_spooled([r for r in first_two if r is not None]) == 2
    (spool.folder / "broken.json").write_text("{not json", encoding="utf-8")
    assert await spool.replay(store) == [run_id]
    assert spool.pending() == []
    assert (spool.folder / "broken.json.bad").exists()  # set aside, never half-replayed
    got = await store.pool.fetch(
        "SELECT url, payload, headers, fetched_at FROM raw_responses WHERE run_id = $1 "
        "ORDER BY url", run_id)
    assert [r["url"] for r in got] == [r["url"] for r in rows]
    assert [r["payload"] for r in got] == [r["body"] for r in rows]
    assert sorted(r["headers"][SPOOL_HEADER] for r in got) == sorted(keys)
    assert all(r["headers"]["ETag"] == "x" and r["fetched_at"] == now for r in got)
    assert await spool.replay(store) == []
    await store.finish_run(run_id, status="ok", requests=3, quotes_stored=0,
                           quotes_quarantined=0, errors={})


def test_a_journal_line_reads_back_as_the_response(tmp_path: Path) -> None:
    """What the journal writes for a response is what a replay reads back: body bytes
    (or none, a 304's), fetch time, headers and the rest, one line each."""
    at = dt.datetime(2026, 12, 7, 16, 5, 17, 56797, tzinfo=dt.UTC)
    rows = [{"source": "op", "url": "http://127.0.0.1/q?amount=200", "fetched_at": at,
             "status": 200, "content_type": "application/json; charset=utf-8",
             "headers": {"ETag": '"x"', "X-Note": "ü\n\"quoted\""}, "body": b'\x00{"n": 1}\xff',
             "content_hash": "ab" * 32, "run_id": 7, "licence": None},
            {"source": "op", "url": "http://127.0.0.1/q?amount=500", "status": 304,
             "fetched_at": at.astimezone(dt.timezone(dt.timedelta(hours=1))),
             "content_type": None, "headers": {}, "body": None, "run_id": 7}]
    journal = Journal(tmp_path)
    assert all(journal.append(dict(r)) for r in rows)
    lines = (tmp_path / journal.name).read_bytes().splitlines()
    assert [_decode(json.loads(line)) for line in lines] == rows
    journal.done(len(rows))
    assert (tmp_path / journal.name).read_bytes() == b""


async def test_a_killed_process_journal_is_archived_once(store: Store,
                                                         tmp_path: Path) -> None:
    """Responses a killed collector had fetched but not archived are in its journal; the
    next start archives those the archive lacks, once, and removes the journal."""
    from collector.spool import _encode

    tag = uuid.uuid4().hex[:8]
    run_id = await store.start_run(f"{tag}-op")
    now = dt.datetime.now(dt.UTC)
    rows = [{"source": f"{tag}-op", "url": f"http://127.0.0.1/q/{n}",
             "fetched_at": now + dt.timedelta(microseconds=n), "status": 200,
             "headers": {}, "body": b'{"n": %d}' % n, "run_id": run_id} for n in range(3)]
    assert await store.archive_raw_many(rows[:1]) != []  # archived before the kill
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = tmp_path / "spool"
    folder.mkdir()
    lines = [json.dumps(_encode(r)) for r in rows]
    (folder / f"journal-{gone.pid}-dead.jsonl").write_text(
        "\n".join(lines) + '\n{"source": "cut sho', encoding="utf-8")
    # A journal of a process still running is its own business.
    (folder / f"journal-{os.getppid()}-live.jsonl").write_text(lines[2] + "\n",
                                                               encoding="utf-8")
    spool = Spool(folder)
    spool.put(rows[2])  # spooled as well as journalled (a shutdown cut short): once all the same
    assert await spool.replay(store) == [run_id]
    assert await spool.replay(store) == []
    assert sorted(p.name for p in folder.iterdir()) == [f"journal-{os.getppid()}-live.jsonl"]
    got = await store.pool.fetch("SELECT url, payload FROM raw_responses WHERE run_id = $1 "
                                 "ORDER BY url", run_id)
    assert [(r["url"], r["payload"]) for r in got] == [(r["url"], r["body"]) for r in rows]
    await store.finish_run(run_id, status="ok", requests=3, quotes_stored=0,
                           quotes_quarantined=0, errors={})


async def test_a_three_second_outage_mid_collection_loses_no_quote(
        store: Store, server_url: str, database_url: str, tmp_path: Path) -> None:
    """The database goes away for 3 s while three operators are being collected: responses
    are spooled, batches held; after the run, recovery stores every quote once."""
    sandbox = Sandbox(Faults(latency_ms=250, bad_quote_rate=0.1, seed=5), operators_n=3)
    server = TestServer(sandbox.app(), host="127.0.0.1")
    await server.start_server()
    proxy = PgProxy(server_url)
    await proxy.start()
    victim = await connect(proxy.proxied(database_url), max_size=4, timeout=2)
    try:
        config, p = make_config(str(server.make_url("")).rstrip("/"), tmp_path)
        async with aiohttp.ClientSession() as session:
            collector = Collector(config, victim, session)
            await collector.run(f"{p}-ecb")
            sandbox.log.clear()
            names = [f"{p}-op-{i}" for i in range(3)]
            task = asyncio.create_task(collector.run_all(names))
            # Cut once some of the runs' quotes are stored (they are written as parsed).
            for _ in range(400):
                if await store.pool.fetchval(
                        "SELECT count(*) FROM quotes WHERE source LIKE $1", f"{p}-op-%"):
                    break
                await asyncio.sleep(0.02)
            await proxy.cut()
            await asyncio.sleep(3)
            await proxy.restore()
            reports = await asyncio.wait_for(task, 60)
            lost = {k for r in reports for k in r.errors} & {"spooled", "database"}
            assert lost, [r.line() for r in reports]  # the outage did hit the runs
            assert collector.needs_recovery
            recovered = await collector.recover_if_needed()
            assert recovered and not collector.needs_recovery
    finally:
        await victim.close()
        await proxy.close()
        await server.close()

    per_response = await records_per_response(store, p)
    assert len(per_response) == answered(sandbox) == 3 * len(CORRIDORS) * 2
    assert set(per_response.values()) == {1}
    # The spool is the database's own: never replayed into another one.
    assert collector.spool.folder.parent == tmp_path / "spool"
    assert collector.spool.folder.name.startswith(urlsplit(database_url).path[1:] + "-")
    assert collector.spool.pending() == [] and collector.archiver.spooled > 0
    # Nothing left to recover: a second recovery re-parses nothing.
    assert await store.runs_to_recover([s.name for s in config.sources]) == []


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def _write_config(path: Path, base_url: str, data_dir: Path, prefix: str) -> None:
    lines = ['[collection]', 'timeout_seconds = 5.0', 'backoff_base_seconds = 0.01', '',
             '[service]', f'data_dir = "{data_dir}"', 'import_rpw_on_empty = false', '']
    for a, b in CORRIDORS:
        lines += ['[[corridors]]', f'from = "{a}"', f'to = "{b}"', '']
    for s in sandbox_sources(base_url, 3, prefix):
        lines += ['[[sources]]'] + [f'{k} = {_toml(v)}' for k, v in s.items()
                                   if k != "options"]
        if "options" in s:
            lines += ['[sources.options]'] + [f'{k} = {_toml(v)}'
                                              for k, v in s["options"].items()]
        lines.append('')
    path.write_text("\n".join(lines), encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
async def test_collect_stopped_mid_run_loses_no_quote(store: Store, database_url: str,
                                                      tmp_path: Path, how: int) -> None:
    """`sendcost collect` stopped (SIGTERM) or killed (kill -9) mid-collection; the next
    start's recovery stores the rest. Stopped: every response the sandbox answered. Killed:
    every response archived (one answered in the last moments before the kill, not yet
    archived, is the one window left; it is counted and bounded)."""
    sandbox = Sandbox(Faults(latency_ms=100, bad_quote_rate=0.1, seed=9), operators_n=3)
    server = TestServer(sandbox.app(), host="127.0.0.1")
    await server.start_server()
    prefix = f"k{uuid.uuid4().hex[:8]}"
    cfg = tmp_path / "config.toml"
    _write_config(cfg, str(server.make_url("")).rstrip("/"), tmp_path / "data", prefix)
    env = {**os.environ, "DATABASE_URL": database_url, "SENDCOST_DATA_DIR": "",
           "XDG_RUNTIME_DIR": str(tmp_path)}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "sendcost", "collect", "--config",
                                 str(cfg)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            for _ in range(1200):  # until some quotes of the operators are stored
                if await store.pool.fetchval(
                        "SELECT count(*) FROM quotes WHERE source LIKE $1", f"{prefix}-op-%"):
                    break
                await asyncio.sleep(0.025)
            proc.send_signal(how)
            _, err = await asyncio.to_thread(proc.communicate, timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == (128 + signal.SIGTERM if how == signal.SIGTERM
                                   else -signal.SIGKILL), err.decode()
        archived = len(await records_per_response(store, prefix))
        assert 0 < archived < 3 * len(CORRIDORS) * 2  # stopped mid-collection
        # The next start: recovery first (a new process, as after a restart).
        config = load_config(cfg)
        async with aiohttp.ClientSession() as session:
            collector = Collector(config, store, session)
            recovered = await collector.recover()
        assert recovered
    finally:
        await server.close()
    per_response = await records_per_response(store, prefix)
    assert set(per_response.values()) == {1}, per_response
    in_flight = 3  # one request in flight per operator source (max_concurrency 1)
    if how == signal.SIGTERM:
        # What was waiting for the archive was archived before the process ended.
        assert answered(sandbox) - in_flight <= len(per_response) <= answered(sandbox)
    else:
        assert len(per_response) >= archived
    assert not await store.pool.fetchval(
        "SELECT count(*) FROM collection_runs WHERE source LIKE $1 AND status = 'running'",
        f"{prefix}-%")


async def test_which_runs_are_recovered(store: Store) -> None:
    """Store.runs_to_recover: runs that may have left quotes unstored, until a re-parse
    stored them; never one with nothing to recover; three failed re-parses, then a person."""
    tag = uuid.uuid4().hex[:8]
    now = dt.datetime.now(dt.UTC)

    async def run(status: str, message: str | None = None, errors: dict[str, int] | None = None,
                  *, reparse_of: int | None = None, archived: int | None = 200) -> int:
        run_id = await store.start_run(f"{tag}-op", reparse_of=reparse_of)
        await store.finish_run(run_id, status=status, requests=1, quotes_stored=0,
                               quotes_quarantined=0, errors=errors or {}, message=message)
        if archived is not None and reparse_of is None:
            await store.archive_raw_many([{"source": f"{tag}-op", "url": "http://x/q",
                                           "fetched_at": now, "status": archived,
                                           "body": b"{}", "run_id": run_id}])
        return run_id

    cancelled = await run("failed", "cancelled; what it fetched is archived")
    abandoned = await run("failed", "abandoned: process 7 on h ended")
    spooled = await run("partial", "last error: spooled: …", {"spooled": 3})
    write_lost = await run("failed", "StorageError: could not write 5 quotes")
    await run("ok")
    await run("partial", "last error: http_5xx", {"http_5xx": 1})
    await run("failed", "no request succeeded; last error: http_5xx", {"http_5xx": 1})
    await run("failed", "cancelled", archived=503)  # nothing usable archived
    await run("failed", "cancelled", archived=None)  # nothing archived at all
    recovered = await run("failed", "cancelled")
    await run("ok", reparse_of=recovered)
    retried = await run("failed", "cancelled")
    await run("failed", "StorageError: could not write", reparse_of=retried)
    await run("failed", "ParseError: …", reparse_of=retried)
    given_up = await run("failed", "cancelled")
    for _ in range(3):
        await run("failed", "KeyError: 'fee'", reparse_of=given_up)

    assert await store.runs_to_recover([f"{tag}-op"]) == [
        cancelled, abandoned, spooled, write_lost, retried]
    assert await store.runs_to_recover([f"{tag}-other"]) == []
    assert await store.runs_to_recover([f"{tag}-op"], [spooled]) == [spooled]
