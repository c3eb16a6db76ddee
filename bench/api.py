"""Benchmark: GET /v1/compare for random corridors beside a bare aiohttp handler.

Both servers run in child processes on this machine, in the same run. The first phase is
maximum throughput from Debian's ``wrk`` (2 threads × 50 connections, a Lua script drawing
random corridors); the second is a fixed rate, as ``wrk2`` would give it: an aiohttp client
sends 500 requests/s and times each from its scheduled send (so no coordinated omission).

    .venv/bin/python bench/api.py [--database-url postgresql://postgres@127.0.0.1:5432/test]

The database named is only used to create (and drop) a throw-away database of its own, into
which the bundled RPW data is imported first. The API runs as ``sendcost serve`` runs it:
every request passes the whole pipeline (limits, rate-limit check, CORS, metrics); the rate
limit is set too high to refuse. Prints requests/s, p50/p99 and the ratios to two peers: a
bare handler sending a 40-byte answer (the goal's peer: ≥ 0.60 on repeated questions, ≥ 0.30
on amounts seldom asked, p99 < 20 ms at 500 req/s), and a bare handler sending, per
corridor, the very bytes sendcost answered (median 12 KB: what is left is sendcost's own
work, not the cost of sending its answer). The throughput phase alternates the servers for
BENCH_ROUNDS rounds (default 3) of BENCH_SECONDS each (default 6); the medians make the
ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from urllib.parse import urlsplit, urlunsplit

DURATION = int(os.environ.get("BENCH_SECONDS", "6"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
RATE = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_bare(port: int) -> None:
    from aiohttp import web

    body = json.dumps({"status": "ok", "service": "bare"}).encode()

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/bare", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_bare_same_bytes(port: int, bodies_file: str) -> None:
    """The second peer: a bare handler sending, for each corridor, the very bytes sendcost
    answered for it (read from ``bodies_file``, a JSON object "FROM-TO" → body). What any
    server pays to send a 12 KB answer is paid by both; what is left is sendcost's own."""
    from aiohttp import web

    with open(bodies_file, encoding="utf-8") as fh:
        bodies = {k: v.encode() for k, v in json.load(fh).items()}

    async def handler(request: web.Request) -> web.Response:
        q = request.query
        return web.Response(body=bodies[f"{q['from']}-{q['to']}"],
                            content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/compare", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_sendcost(port: int, url: str) -> None:
    from aiohttp import web

    from corridors.config import parse_config
    from corridors.db import DatabaseTarget
    from publish.middleware import HANDLER_ARGS
    from sendcost.wiring import create_app

    # The rate limit is on, as in service, but set so high that it never refuses: every
    # request pays for the check, none is answered 429.
    config = parse_config({"service": {"import_rpw_on_empty": False},
                           "api": {"rate_limit_per_minute": 1_000_000_000}})
    web.run_app(create_app(config, DatabaseTarget(url, embedded=False)), host="127.0.0.1",
                port=port, access_log=None, print=None, **HANDLER_ARGS)


def wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def corridor_paths(base: str) -> list[str]:
    with urllib.request.urlopen(f"{base}/v1/corridors.csv?limit=500", timeout=30) as resp:
        lines = resp.read().decode().splitlines()[1:]
    rng = random.Random(42)
    paths = []
    for line in lines:
        src, dst = line.split(",")[:2]
        for amount in (rng.choice([100, 200, 250, 300, 500, 1000]),):
            paths.append(f"/v1/compare?from={src}&to={dst}&amount={amount}&currency=USD")
    rng.shuffle(paths)
    return paths


def run_wrk(base: str, paths: list[str]) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        quoted = ",".join(json.dumps(p) for p in paths)
        fh.write("paths = {" + quoted + "}\n"
                 "math.randomseed(7)\n"
                 "request = function()\n"
                 "  return wrk.format('GET', paths[math.random(#paths)])\n"
                 "end\n"
                 "done = function(summary, latency, requests)\n"
                 "  io.write(string.format('P50 %d\\nP99 %d\\nERR %d\\n', "
                 "latency:percentile(50), latency:percentile(99), "
                 "summary.errors.status + summary.errors.connect + summary.errors.timeout))\n"
                 "end\n")
        script = fh.name
    out = subprocess.run(["wrk", "-t2", "-c50", f"-d{DURATION}s", "-s", script, base],
                         capture_output=True, text=True, check=True).stdout
    os.unlink(script)

    def field(pattern: str) -> str:
        found = re.search(pattern, out)
        if found is None:
            raise SystemExit(f"bench/api.py: wrk's output has no {pattern!r}:\n{out}")
        return found.group(1)

    rps = float(field(r"Requests/sec:\s+([\d.]+)"))
    p50 = int(field(r"P50 (\d+)")) / 1000
    p99 = int(field(r"P99 (\d+)")) / 1000
    errors = int(field(r"ERR (\d+)"))
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors}


async def fixed_rate(base: str, paths: list[str], rate: int, seconds: int) -> dict[str, float]:
    """Open-loop load at ``rate`` requests/s; latency measured from the scheduled send time."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def one(path: str, scheduled: float) -> None:
            nonlocal errors
            async with http.get(base + path) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - scheduled)

        start = time.perf_counter()
        tasks = []
        for i in range(rate * seconds):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(paths[i % len(paths)], scheduled)))
        await asyncio.gather(*tasks)
    q = statistics.quantiles(latencies, n=100)
    return {"p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "errors": errors}


def fixed_rate_process(base: str, paths: list[str], out: mp.Queue) -> None:
    out.put(asyncio.run(fixed_rate(base, paths, RATE, DURATION)))


async def rpw_database(server_url: str) -> str:
    """A new database next to ``server_url``'s, migrated and loaded with the bundled RPW."""
    import asyncpg

    from collector.rpw_import import import_rpw
    from corridors.reading.rpw import bundled_rpw_path
    from corridors.store import connect

    name = f"sendcost_bench_api_{os.getpid()}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    store = await connect(url)
    try:
        await store.migrate()
        await import_rpw(store, bundled_rpw_path())
    finally:
        await store.close()
    return url


async def drop_database(server_url: str, url: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(server_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)')
    await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get(
        "SENDCOST_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL server to create the throw-away database on")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2
    print("importing the bundled RPW data into a throw-away database …", flush=True)
    url = asyncio.run(rpw_database(args.database_url))
    try:
        return run(url)
    finally:
        asyncio.run(drop_database(args.database_url, url))


def run(url: str) -> int:
    ctx = mp.get_context("spawn")
    bare_port, app_port, same_port = free_port(), free_port(), free_port()
    servers = [ctx.Process(target=serve_bare, args=(bare_port,), daemon=True),
               ctx.Process(target=serve_sendcost, args=(app_port, url), daemon=True)]
    for p in servers:
        p.start()
    try:
        bare, app = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{app_port}"
        wait_up(bare + "/bare")
        wait_up(app + "/v1/openapi.json")
        paths = corridor_paths(app)
        # Warm the snapshot and the response cache as a running service would be, keeping
        # each corridor's answer for the same-bytes peer.
        answers = {}
        for path in paths:
            body = urllib.request.urlopen(app + path, timeout=30).read()
            asked = dict(part.split("=", 1) for part in path.split("?", 1)[1].split("&"))
            answers[f"{asked['from']}-{asked['to']}"] = body.decode()
        sizes = sorted(len(v.encode()) for v in answers.values())
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(answers, fh)
        same = ctx.Process(target=serve_bare_same_bytes, args=(same_port, fh.name),
                           daemon=True)
        same.start()
        servers.append(same)
        same_base = f"http://127.0.0.1:{same_port}"
        wait_up(same_base + paths[0])
        os.unlink(fh.name)
        print(f"{len(paths)} corridors (answers of {sizes[0]:,} to {sizes[-1]:,} bytes, median "
              f"{statistics.median(sizes):,.0f}); {ROUNDS} rounds of bare, same bytes, then "
              f"/v1/compare, {DURATION} s each; wrk -t2 -c50")
        rounds = []
        for i in range(ROUNDS):
            # Alternated, so that a slow spell of the machine weighs on all alike.
            b, s, c = run_wrk(bare, ["/bare"]), run_wrk(same_base, paths), run_wrk(app, paths)
            rounds.append((b, s, c))
            print(f"round {i + 1}: " + "   ".join(
                f"{name} {r['rps']:8.0f} req/s (p50 {r['p50_ms']:.2f} ms, p99 "
                f"{r['p99_ms']:.2f} ms, errors {r['errors']:.0f})"
                for name, r in (("bare", b), ("same bytes", s), ("/v1/compare", c))))
        b_rps = statistics.median(r[0]["rps"] for r in rounds)
        s_rps = statistics.median(r[1]["rps"] for r in rounds)
        c_rps = statistics.median(r[2]["rps"] for r in rounds)
        print(f"bare handler (a 40-byte answer)     : {b_rps:8.0f} req/s (median of {ROUNDS})")
        print(f"bare handler, the same bytes        : {s_rps:8.0f} req/s (median of {ROUNDS})")
        print(f"/v1/compare                         : {c_rps:8.0f} req/s (median of {ROUNDS})")
        per_round = ", ".join(f"{c['rps'] / b['rps']:.2f}" for b, _, c in rounds)
        print(f"ratio to bare                       : {c_rps / b_rps:.2f} (goal ≥ 0.60; per "
              f"round {per_round})")
        per_round = ", ".join(f"{c['rps'] / s['rps']:.2f}" for _, s, c in rounds)
        print(f"ratio to bare sending the same bytes: {c_rps / s_rps:.2f} (per round "
              f"{per_round}; what is left is sendcost's own work)")
        # The same questions with amounts seldom asked (as migrants type them), so that the
        # answer cache seldom has them: 47,000 distinct URLs per round, new to the server
        # (wrk draws them at random, so about a third of a round's requests ask one again).
        # A first pass of other amounts, not counted, stands for the service's
        # earlier hours (each corridor's price points made once per snapshot); then rounds
        # alternating with the same-bytes peer, and with the bare handler's figure above.
        def seldom(seed: int) -> list[str]:
            rng = random.Random(seed)
            return [p.replace(f"amount={p.split('amount=')[1].split('&')[0]}",
                              f"amount={rng.randint(10000, 99999) / 100:.2f}")
                    for p in paths for _ in range(200)]

        run_wrk(app, seldom(1))
        seldom_rounds = [(run_wrk(same_base, seldom(7 + i)), run_wrk(app, seldom(7 + i)))
                         for i in range(ROUNDS)]
        u_rps = statistics.median(u["rps"] for _, u in seldom_rounds)
        su_rps = statistics.median(su["rps"] for su, _ in seldom_rounds)
        u_p99 = statistics.median(u["p99_ms"] for _, u in seldom_rounds)
        errors = sum(u["errors"] for _, u in seldom_rounds)
        per_round = ", ".join(f"{u['rps']:.0f}" for _, u in seldom_rounds)
        print(f"/v1/compare, amounts seldom asked (mostly cache misses): {u_rps:8.0f} req/s "
              f"(median of {ROUNDS}: {per_round}), p99 {u_p99:.2f} ms, errors {errors:.0f}; / bare "
              f"{u_rps / b_rps:.2f} (goal ≥ 0.30); / the same bytes {u_rps / su_rps:.2f} "
              f"({su_rps:.0f} req/s)")
        results = {}
        for name, base, ps in (("bare", bare, ["/bare"]), ("compare", app, paths)):
            q: mp.Queue = ctx.Queue()
            loader = ctx.Process(target=fixed_rate_process, args=(base, ps, q))
            loader.start()
            results[name] = q.get(timeout=DURATION * 10)
            loader.join()
        for name, r in results.items():
            print(f"at {RATE} req/s {name:8}: p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
                  f"  errors {r['errors']}")
        print(f"p99 goal < 20 ms at {RATE} req/s: "
              f"{'met' if results['compare']['p99_ms'] < 20 else 'NOT met'}")
    finally:
        for p in servers:
            p.terminate()
            p.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
