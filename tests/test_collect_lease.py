"""One collector per source at a time (collector/lease.py, corridors/leases.py): two
processes never collect one source at once; a skipped source says who has it; a killed
holder's lease is taken over; a run whose lease is lost stops."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from collector.run import Collector
from collector.sandbox import Faults, Sandbox, sources_config
from corridors import leases
from corridors.config import parse_config
from corridors.store import Store

ROOT = Path(__file__).resolve().parent.parent
CORRIDORS = [("USA", "MEX"), ("GBR", "IND"), ("FRA", "SEN")]


def _sources(base_url: str, prefix: str, operators_n: int = 2) -> list[dict[str, Any]]:
    sources = sources_config(base_url, operators_n=operators_n)
    for s in sources:
        s["name"] = s["name"].replace("sandbox", prefix)
        s["max_concurrency"] = 2
        s["requests_per_second"] = 1000.0
        if s["kind"] != "ecb_rates":
            s.setdefault("options", {})["reference_sources"] = [f"{prefix}-ecb"]
    return sources


def _toml(sources: list[dict[str, Any]]) -> str:
    lines = ["[collection]", "timeout_seconds = 30.0", "backoff_base_seconds = 0.01", ""]
    for a, b in CORRIDORS:
        lines += ["[[corridors]]", f'from = "{a}"', f'to = "{b}"', ""]
    for s in sources:
        lines.append("[[sources]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in s.items() if k != "options"]
        for k, v in s.get("options", {}).items():
            if isinstance(v, dict):
                inner = ", ".join(f"{kk} = {json.dumps(vv)}" for kk, vv in v.items())
                lines.append(f"options.{k} = {{ {inner} }}")
            else:
                lines.append(f"options.{k} = {json.dumps(v)}")
        lines.append("")
    return "\n".join(lines)


async def test_a_held_lease_names_its_holder_and_a_dead_holders_is_taken_over(
        store: Store) -> None:
    source = f"lease-{uuid.uuid4().hex[:8]}"
    mine = await leases.take(store, source, 60)
    assert isinstance(mine, leases.Lease)
    other = await leases.take(store, source, 60)
    assert isinstance(other, leases.Holder)
    assert other.holder == mine.holder and other.pid == os.getpid()
    assert await leases.renew(store, mine, run_id=42)
    held = await leases.holder(store, source)
    assert held is not None and held.run_id == 42
    assert f"run 42 of process {os.getpid()} on {socket.gethostname()}" in held.describe()
    await leases.release(store, mine)
    assert await leases.holder(store, source) is None

    # A holder on this host whose process is gone (killed: it never released) frees the
    # source at once; one on another host only when its lease expires.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    await store.pool.execute(
        "INSERT INTO source_leases (source, holder, host, pid, expires_at) "
        "VALUES ($1, $2, $3, $4, now() + interval '1 hour')",
        source, uuid.uuid4(), socket.gethostname(), gone.pid)
    again = await leases.take(store, source, 60)
    assert isinstance(again, leases.Lease)
    await leases.release(store, again)
    elsewhere = f"{source}-elsewhere"
    await store.pool.execute(
        "INSERT INTO source_leases (source, holder, host, pid, expires_at) "
        "VALUES ($1, $2, 'other-host', 1, now() + interval '1 hour')", elsewhere, uuid.uuid4())
    assert isinstance(await leases.take(store, elsewhere, 60), leases.Holder)
    await store.pool.execute("UPDATE source_leases SET expires_at = now() - interval '1 s' "
                             "WHERE source = $1", elsewhere)
    taken = await leases.take(store, elsewhere, 60)
    assert isinstance(taken, leases.Lease)
    assert elsewhere in {h.source for h in await leases.held(store)}
    await leases.release(store, taken)


async def test_a_source_held_elsewhere_is_skipped_saying_by_whom(store: Store,
                                                                 database_url: str) -> None:
    sandbox = Sandbox(Faults(), operators_n=1)
    server = TestServer(sandbox.app(), host="127.0.0.1")
    await server.start_server()
    prefix = f"t{uuid.uuid4().hex[:8]}"
    try:
        config = parse_config({
            "corridors": [{"from": a, "to": b} for a, b in CORRIDORS],
            "sources": _sources(str(server.make_url("")).rstrip("/"), prefix, 1)})
        name = f"{prefix}-op-0"
        await store.pool.execute(
            "INSERT INTO source_leases (source, holder, host, pid, run_id, expires_at) "
            "VALUES ($1, $2, 'collector-b', 4242, 77, now() + interval '1 hour')",
            name, uuid.uuid4())
        async with aiohttp.ClientSession() as session:
            report = await Collector(config, store, session).run(name)
        assert report.status == "skipped"
        assert "run 77 of process 4242 on collector-b holds its lease" in report.line()
        assert sandbox.requests == 0
        assert await store.pool.fetchval(
            "SELECT count(*) FROM collection_runs WHERE source = $1", name) == 0
        # `sendcost db status` says who collects what.
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "sendcost", "db", "status", "--json"],
            env={**env, "DATABASE_URL": database_url}, cwd=ROOT, capture_output=True,
            text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        collecting = {c["source"]: c for c in json.loads(out.stdout)["collecting"]}
        assert {k: v for k, v in collecting[name].items() if k != "until"} == {
            "source": name, "host": "collector-b", "pid": 4242, "run_id": 77}
    finally:
        await store.pool.execute("DELETE FROM source_leases WHERE source LIKE $1", f"{prefix}-%")
        await server.close()


async def test_a_run_whose_lease_is_taken_over_stops(store: Store) -> None:
    """Its lease expired (the database away too long) and another collector took it: the
    run stops at its next renewal, recorded failed with the reason."""
    sandbox = Sandbox(Faults(latency_ms=400), operators_n=1)
    server = TestServer(sandbox.app(), host="127.0.0.1")
    await server.start_server()
    prefix = f"t{uuid.uuid4().hex[:8]}"
    try:
        config = parse_config({
            "collection": {"timeout_seconds": 30.0},
            "corridors": [{"from": a, "to": b} for a, b in CORRIDORS],
            "sources": [{**s, "max_concurrency": 1}
                        for s in _sources(str(server.make_url("")).rstrip("/"), prefix, 1)]})
        name = f"{prefix}-op-0"
        async with aiohttp.ClientSession() as session:
            collector = Collector(config, store, session)
            collector.lease_seconds = 0.9
            task = asyncio.create_task(collector.run(name))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if await store.pool.fetchval(
                        "SELECT run_id FROM source_leases WHERE source = $1", name):
                    break
            await store.pool.execute(
                "UPDATE source_leases SET holder = $2, host = 'collector-b', pid = 4242 "
                "WHERE source = $1", name, uuid.uuid4())
            report = await asyncio.wait_for(task, 30)
        assert report.status == "failed"
        assert report.message and report.message.startswith(
            "stopped: its lease was taken over by another collector")
        row = await store.pool.fetchrow(
            "SELECT status, message FROM collection_runs WHERE id = $1", report.run_id)
        assert row["status"] == "failed" and row["message"] == report.message
        assert report.requests < 6  # not every corridor and amount was asked
    finally:
        await server.close()


async def test_two_collect_processes_store_every_price_once(store: Store, database_url: str,
                                                            tmp_path: Path) -> None:
    """Two `sendcost collect` at once, on the same sources: each source is collected by one
    of them (the other says which process has it), so every price is stored once."""
    sandbox = Sandbox(Faults(bad_quote_rate=0.2), operators_n=2)
    app = sandbox.app()
    gate = asyncio.Event()

    @web.middleware
    async def held(request: web.Request, handler: Any) -> web.StreamResponse:
        await gate.wait()  # until both processes are connected and about to collect
        return await handler(request)

    app.middlewares.append(held)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    prefix = f"t{uuid.uuid4().hex[:8]}"
    # No rate source: every source runs side by side from the start in both processes, so
    # each meets the other at every source (with a rate source first, one could finish a
    # source before the other, still at its rates, even asked for it: collected twice, in
    # turn, as it should be). Quotes without a rate are kept, marked reference_stale.
    sources = [{**s, "options": {k: v for k, v in s.get("options", {}).items()
                                 if k != "reference_sources"}}
               for s in _sources(str(server.make_url("")).rstrip("/"), prefix)
               if s["kind"] != "ecb_rates"]
    cfg = tmp_path / "config.toml"
    cfg.write_text(_toml(sources))
    procs = []
    try:
        for who in ("a", "b"):
            env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
            env.update(DATABASE_URL=database_url,
                       SENDCOST_DATA_DIR=str(tmp_path / who))
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "sendcost", "collect", "--config", str(cfg)],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        # The upstream answers once every source is leased and each process holds one or
        # has ended (it skipped them all): both have asked for every source by then.
        for _ in range(1200):
            holders = {r["pid"] for r in await store.pool.fetch(
                "SELECT pid FROM source_leases WHERE source LIKE $1", f"{prefix}-%")}
            leased = await store.pool.fetchval(
                "SELECT count(*) FROM source_leases WHERE source LIKE $1", f"{prefix}-%")
            if leased == len(sources) and all(p.pid in holders or p.poll() is not None
                                              for p in procs):
                break
            assert any(p.poll() is None for p in procs), [p.communicate() for p in procs]
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the two processes never met at the sources")
        gate.set()
        outs = [await asyncio.to_thread(p.communicate, timeout=120) for p in procs]
    finally:
        gate.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
        await server.close()
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, (out, err)
        assert "Traceback" not in err
    skipped = [line for out, _ in outs for line in out.splitlines() if " skipped (" in line]
    assert skipped, outs  # they did meet
    for line in skipped:
        # "run N of process P on HOST holds its lease", or "a run starting of ..." when
        # the holder had not yet written its run's row.
        assert "another collector has it: " in line and " holds its lease" in line
        assert f" of process {procs[0].pid} on " in line or f" of process {procs[1].pid} on " \
            in line
    runs = await store.pool.fetch(
        "SELECT id, source, status, requests, quotes_stored, quotes_quarantined "
        "FROM collection_runs WHERE source LIKE $1", f"{prefix}-%")
    # Each source collected once, by one process or the other.
    assert sorted(r["source"] for r in runs) == sorted(s["name"] for s in sources)
    assert {r["status"] for r in runs} == {"ok"}, runs
    ids = [r["id"] for r in runs]
    stored = await store.pool.fetchval(
        "SELECT count(*) FROM quotes WHERE run_id = ANY($1::bigint[])", ids)
    quarantined = await store.pool.fetchval(
        "SELECT count(*) FROM quarantined_quotes WHERE run_id = ANY($1::bigint[])", ids)
    assert stored == sum(r["quotes_stored"] for r in runs) > 0
    assert quarantined == sum(r["quotes_quarantined"] for r in runs) > 0
    assert await store.pool.fetchval(
        "SELECT count(*) FROM (SELECT service_id, amount_usd FROM quotes "
        "WHERE run_id = ANY($1::bigint[]) GROUP BY 1, 2 HAVING count(*) > 1) d", ids) == 0
    ops = [r for r in runs if "-op-" in r["source"]]
    assert [r["requests"] for r in ops] == [len(CORRIDORS) * 2] * 2  # 3 corridors, 2 amounts
    assert sandbox.requests == sum(r["requests"] for r in runs)  # nothing fetched twice
    assert await store.pool.fetchval(
        "SELECT count(*) FROM source_leases WHERE source LIKE $1", f"{prefix}-%") == 0
