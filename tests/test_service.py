"""The front door: the embedded default, `sendcost serve` and `sendcost db` as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from corridors.db import embedded_postgres

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres_running_in(pgdata: Path) -> bool:
    out = subprocess.run(["ps", "-eo", "args", "--cols", "1000"], capture_output=True,
                         text=True).stdout
    return any("postgres" in line and str(pgdata) in line for line in out.splitlines())


async def test_embedded_postgres_starts_serves_and_stops() -> None:
    with tempfile.TemporaryDirectory(prefix="sc-emb-", dir="/tmp") as tmp:
        pgdata = Path(tmp) / "pg"
        with embedded_postgres(Path(tmp)) as uri:
            assert _postgres_running_in(pgdata)
            conn = await asyncpg.connect(uri)
            assert await conn.fetchval("SELECT 40 + 2") == 42
            await conn.close()
        assert not _postgres_running_in(pgdata)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(extra)
    return env


def _write_config(tmp: Path, **service: object) -> Path:
    cfg = tmp / "config.toml"
    lines = ["[service]"] + [f"{k} = {json.dumps(v)}" for k, v in service.items()]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


async def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited"
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return await resp.json()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("sendcost serve did not become healthy")


@pytest.mark.parametrize("embedded", [False, True], ids=["external", "embedded"])
async def test_serve_answers_healthz_and_stops_on_sigterm(database_url: str,
                                                          embedded: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="sc-srv-", dir="/tmp") as tmp:
        cfg = _write_config(Path(tmp), import_rpw_on_empty=False)
        env = _env(SENDCOST_DATA_DIR=tmp, PYTHONFAULTHANDLER="1")
        if not embedded:
            env["DATABASE_URL"] = database_url
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sendcost", "serve", "--config", str(cfg), "--port", str(port)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            body = await _wait_healthy(port, proc)
            assert body["database"] == {"reachable": True, "embedded": embedded}
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                # Say where it hangs: faulthandler prints every thread's stack on SIGABRT.
                proc.send_signal(signal.SIGABRT)
                _, err = proc.communicate(timeout=10)
                raise AssertionError(f"sendcost serve did not stop on SIGTERM:\n{err}") from None
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        if embedded:
            assert not _postgres_running_in(Path(tmp) / "pg")


def test_db_status_shows_schema(fresh_database: str) -> None:
    out = subprocess.run([sys.executable, "-m", "sendcost", "db", "migrate"],
                         env=_env(DATABASE_URL=fresh_database), capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "sendcost", "db", "status", "--json"],
                         env=_env(DATABASE_URL=fresh_database), capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["embedded"] is False
    assert info["schema_version"] == info["latest_version"] >= 1
    assert "quotes" in info["tables"] and info["tables"]["countries"] > 200


def test_unreachable_database_exits_1_with_message() -> None:
    out = subprocess.run([sys.executable, "-m", "sendcost", "db", "status"],
                         env=_env(DATABASE_URL="postgresql://x@127.0.0.1:1/none"),
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1
    assert "sendcost: error: cannot reach the database at postgresql://x@127.0.0.1:1/none" \
        in out.stderr
    assert "Traceback" not in out.stderr


def test_serve_with_an_unset_source_variable_stops_before_starting(tmp_path: Path) -> None:
    """The config's error alone, before any database or session is opened."""
    bad = tmp_path / "config.toml"
    bad.write_text('[database]\nurl = "postgresql://x@127.0.0.1:1/none"\n[[sources]]\n'
                   'name = "wise"\nkind = "json_rates"\nurl = "http://127.0.0.1:9/rates"\n'
                   'headers = { Authorization = "Bearer ${SENDCOST_TEST_NO_SUCH_TOKEN}" }\n')
    out = subprocess.run([sys.executable, "-m", "sendcost", "serve", "--config", str(bad)],
                         env=_env(), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"sendcost: error: {bad.resolve()}: sources[wise].headers.Authorization: environment "
        "variable SENDCOST_TEST_NO_SUCH_TOKEN is not set (the header's value names it as "
        "${SENDCOST_TEST_NO_SUCH_TOKEN})")


def test_help_teaches() -> None:
    out = subprocess.run([sys.executable, "-m", "sendcost", "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0
    for word in ("serve", "db", "Quick start", "exit codes"):
        assert word in out.stdout


def test_embedded_server_left_by_a_killed_process_is_recovered() -> None:
    with tempfile.TemporaryDirectory(prefix="sc-kill-", dir="/tmp") as tmp:
        script = (
            "import os, signal, sys\n"
            "from pathlib import Path\n"
            "from corridors.db import embedded_postgres\n"
            "cm = embedded_postgres(Path(sys.argv[1]))\n"
            "cm.__enter__()\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n"
        )
        proc = subprocess.run([sys.executable, "-c", script, tmp], timeout=60)
        assert proc.returncode == -signal.SIGKILL
        pgdata = Path(tmp) / "pg"
        assert _postgres_running_in(pgdata)  # the orphan the killed process left
        with embedded_postgres(Path(tmp)) as uri:
            async def query() -> int:
                conn = await asyncpg.connect(uri)
                try:
                    return int(await conn.fetchval("SELECT 7"))
                finally:
                    await conn.close()

            assert asyncio.run(query()) == 7
        assert not _postgres_running_in(pgdata)


def test_port_in_use_is_a_clear_error(fresh_database: str) -> None:
    with socket.socket() as busy, tempfile.TemporaryDirectory(prefix="sc-port-",
                                                               dir="/tmp") as tmp:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = _write_config(Path(tmp), import_rpw_on_empty=False)
        out = subprocess.run(
            [sys.executable, "-m", "sendcost", "serve", "--config", str(cfg), "--port",
             str(port)], env=_env(DATABASE_URL=fresh_database, SENDCOST_DATA_DIR=tmp),
            capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "sendcost: error:" in out.stderr and "in use" in out.stderr
    assert "Traceback" not in out.stderr
