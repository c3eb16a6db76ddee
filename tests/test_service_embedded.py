"""`sendcost serve` keeps its embedded PostgreSQL running: a killed postmaster is restarted
(with a log line saying why), /healthz says degraded meanwhile, one another command
restarted is used, and SIGTERM stops exactly the postmaster running then."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from corridors.db import pid_alive

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postmaster(pgdata: Path) -> int | None:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def _postgres_running_in(pgdata: Path) -> bool:
    out = subprocess.run(["ps", "-eo", "args", "--cols", "1000"], capture_output=True,
                         text=True).stdout
    return any("postgres" in line and str(pgdata) in line for line in out.splitlines())


async def _health(http: aiohttp.ClientSession, port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            return resp.status, await resp.json()
    except (aiohttp.ClientError, TimeoutError):
        return None


async def _until(http: aiohttp.ClientSession, port: int, proc: subprocess.Popen[str],
                 ok: bool, seconds: float = 90) -> list[dict[str, Any]]:
    """The /healthz bodies seen until its status is 200 (ok) or 503 (not ok)."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        got = await _health(http, port)
        if got is not None:
            seen.append(got[1])
            if got[0] == (200 if ok else 503):
                return seen
        await asyncio.sleep(0.1)
    raise AssertionError(f"/healthz never said {'ok' if ok else 'degraded'}: {seen[-3:]}")


async def test_serve_restarts_its_embedded_postgres_and_stops_the_one_running() -> None:
    with tempfile.TemporaryDirectory(prefix="sc-sup-", dir="/tmp") as tmp:
        pgdata = Path(tmp) / "pg"
        cfg = Path(tmp) / "config.toml"
        cfg.write_text("[service]\nimport_rpw_on_empty = false\n")
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(SENDCOST_DATA_DIR=tmp, PYTHONFAULTHANDLER="1")
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "sendcost", "serve", "--config", str(cfg), "--port",
             str(port)], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                await _until(http, port, proc, ok=True)
                first = _postmaster(pgdata)
                assert first is not None
                os.kill(first, signal.SIGKILL)  # PostgreSQL dies under the running service
                degraded = await _until(http, port, proc, ok=False, seconds=30)
                assert degraded[-1]["status"] == "degraded" and degraded[-1]["reasons"]
                await _until(http, port, proc, ok=True)
                second = _postmaster(pgdata)
                assert second is not None and second != first

                # Dead again, and another command starts it before (or after) serve does:
                # serve uses whichever runs, and stops it at the end.
                os.kill(second, signal.SIGKILL)
                for _ in range(100):
                    if not pid_alive(second):
                        break
                    await asyncio.sleep(0.05)
                other = await asyncio.to_thread(
                    subprocess.run, [sys.executable, "-m", "sendcost", "db", "status",
                                     "--config", str(cfg)],
                    env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
                assert other.returncode == 0, other.stderr
                await _until(http, port, proc, ok=True)
                third = _postmaster(pgdata)
                assert third is not None and third not in (first, second)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
            left = _postmaster(pgdata)
            if left is not None:  # never leave a server behind, whatever failed
                os.kill(left, signal.SIGKILL)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert f"the embedded PostgreSQL (pid {first}) stopped: " in err
        assert "restarting it" in err and "embedded PostgreSQL restarted (pid " in err
        assert f"embedded PostgreSQL stopped (pid {third})" in err
        assert left is None and not pid_alive(third)
        assert not _postgres_running_in(pgdata)


async def test_a_full_disk_is_said_by_healthz_and_by_import() -> None:
    """The embedded data folder on a small tmpfs, filled: /healthz says degraded with "no
    space left on device", `import rpw` ends with that message (a traceback before), and
    /healthz is ok again once there is space."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="sc-full-", dir="/tmp"))
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120m", "tmpfs", str(mount)],
                       check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        os.rmdir(mount)
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    pgdata = mount / "pg"
    cfg = mount / "config.toml"
    cfg.write_text("[service]\nimport_rpw_on_empty = false\n")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(SENDCOST_DATA_DIR=str(mount))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sendcost", "serve", "--config", str(cfg), "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    filler = mount / "filler"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            await _until(http, port, proc, ok=True)
            with filler.open("wb") as f:  # every byte left, but a few hundred kB
                free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
                f.write(b"\0" * max(0, free - 512 * 1024))
            body = (await _until(http, port, proc, ok=False, seconds=30))[-1]
            assert any(r.startswith("disk full: no space left on device (")
                       for r in body["reasons"]), body
            out = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "sendcost", "import", "rpw",
                                 "--bundled", "--config", str(cfg)],
                env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert out.returncode == 1, out.stderr
            assert "Traceback" not in out.stderr
            assert "sendcost: error: import rpw: disk full: no space left on device" \
                in out.stderr, out.stderr
            filler.unlink()
            await _until(http, port, proc, ok=True, seconds=120)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0 and "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        left = _postmaster(pgdata)
        if left is not None:
            os.kill(left, signal.SIGKILL)
            for _ in range(100):
                if not pid_alive(left):
                    break
                time.sleep(0.05)
        for _ in range(50):
            if subprocess.run(["umount", str(mount)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        os.rmdir(mount)


async def test_serve_adopts_the_postgres_another_command_restarted_and_stops_it(
        caplog: pytest.LogCaptureFixture) -> None:
    """Its postmaster killed, another command starts one in the same folder before serve's
    supervisor looks: serve uses that one, and its stop stops that one (before: "embedded
    PostgreSQL stopped" was logged and it kept running)."""
    import logging

    from corridors.db import EmbeddedServer
    from sendcost.wiring import Supervisor

    caplog.set_level(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="sc-adopt-", dir="/tmp") as tmp:
        pgdata = Path(tmp) / "pg"
        server = EmbeddedServer(Path(tmp))
        try:
            await asyncio.to_thread(server.start)
            first = server.pid
            assert first is not None and server.alive()
            os.kill(first, signal.SIGKILL)
            for _ in range(200):
                if not pid_alive(first):
                    break
                await asyncio.sleep(0.05)
            # Another process starts it (and ends without stopping it, as a command that
            # sees serve among the server's users does).
            other = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-c",
                "import sys; from pathlib import Path; from corridors.db import EmbeddedServer;"
                "s = EmbeddedServer(Path(sys.argv[1])); s.start(); print(s.pid)", tmp],
                cwd=ROOT, capture_output=True, text=True, timeout=120,
                env={**os.environ, "XDG_RUNTIME_DIR": tmp})
            assert other.returncode == 0, other.stderr
            second = int(other.stdout.split()[-1])
            assert second != first and pid_alive(second) and not server.alive()
            await Supervisor(server)._recover()
            assert server.pid == second and server.alive()
            assert (f"embedded PostgreSQL (pid {first}) was replaced by one another sendcost "
                    f"process started (pid {second})") in caplog.text
        finally:
            await asyncio.to_thread(server.stop)
        assert f"embedded PostgreSQL stopped (pid {second})" in caplog.text
        assert not pid_alive(second) and not _postgres_running_in(pgdata)


def test_why_the_embedded_postgres_stopped_is_read_from_its_log(tmp_path: Path) -> None:
    from corridors.db import EmbeddedServer

    server = EmbeddedServer(tmp_path)
    server.pgdata.mkdir()
    log = server.pgdata / "log"
    log.write_text("2026-12-07 LOG:  database system is ready to accept connections\n")
    assert server.why_down() == "its log says nothing of why (killed?)"
    with log.open("a") as f:
        f.write('2026-12-07 PANIC:  could not write to file "pg_wal/xlogtemp.9": No space '
                "left on device\n"
                "2026-12-07 FATAL:  terminating connection due to unexpected postmaster exit\n"
                "2026-12-07 FATAL:  the database system is in recovery mode\n")
    assert server.why_down() == ('no space left on device (2026-12-07 PANIC:  could not write '
                                 'to file "pg_wal/xlogtemp.9": No space left on device)')
