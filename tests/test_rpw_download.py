"""`sendcost import rpw --download` against a World Bank file server on loopback.

The server is a real aiohttp server serving a workbook built by the test: it honours
``Range`` (or not), cuts a response short, or refuses the client as a bot filter does.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from rpw_real_format import new_sheet_rows, write_workbook

from collector.rpw_download import download_rpw
from corridors.errors import DownloadError, DownloadRefused

ROOT = Path(__file__).resolve().parent.parent
NAME = "rpw_dataset_2011_2025_q3.xlsx"


class Server:
    """The file server; ``mode`` picks its behaviour, ``requests`` records the Range asked."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.mode = "ok"
        self.requests: list[str | None] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.headers.get("Range"))
        if self.mode == "refuse":
            return web.Response(status=403, text="<html>Access denied</html>",
                                content_type="text/html")
        if self.mode == "challenge":
            return web.Response(text="<html>checking your browser…</html>",
                                content_type="text/html")
        start = 0
        rng = request.headers.get("Range")
        if rng and self.mode != "no-range":
            start = int(rng.removeprefix("bytes=").split("-")[0])
        status = 206 if start else 200
        resp = web.StreamResponse(status=status, headers={
            "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "Content-Length": str(len(self.body) - start),
            **({"Content-Range": f"bytes {start}-{len(self.body) - 1}/{len(self.body)}"}
               if start else {})})
        await resp.prepare(request)
        if self.mode == "drop":
            assert request.transport is not None
            request.transport.close()  # the line drops before the first byte of the body
            return resp
        if self.mode == "cut":
            self.mode = "ok"  # the next request is served whole
            await resp.write(self.body[start:start + (len(self.body) - start) // 2])
            assert request.transport is not None
            request.transport.close()  # the line drops mid-body
            return resp
        await resp.write(self.body[start:])
        await resp.write_eof()
        return resp


@pytest.fixture(scope="module")
def workbook_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = write_workbook(tmp_path_factory.mktemp("wb") / NAME, new_sheet_rows(3))
    return path.read_bytes()


@pytest.fixture
async def server(workbook_bytes: bytes) -> AsyncIterator[Server]:
    srv = Server(workbook_bytes)
    app = web.Application()
    app.router.add_get(f"/files/{NAME}", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    srv.url = f"http://127.0.0.1:{port}/files/{NAME}"
    yield srv
    await runner.cleanup()


def _progress() -> tuple[list[tuple[int, int]], Callable[[int, int], None]]:
    seen: list[tuple[int, int]] = []
    return seen, lambda done, total: seen.append((done, total))


async def test_download_with_progress_and_checksum(server: Server, tmp_path: Path,
                                                   workbook_bytes: bytes) -> None:
    seen, progress = _progress()
    digest = hashlib.sha256(workbook_bytes).hexdigest()
    path = await download_rpw(server.url, tmp_path, expected_sha256=digest.upper(),
                              progress=progress)
    assert path == tmp_path / NAME and path.read_bytes() == workbook_bytes
    assert seen[-1] == (len(workbook_bytes), len(workbook_bytes))
    assert not (tmp_path / f"{NAME}.part").exists()


async def test_an_interrupted_download_resumes_where_it_stopped(
        server: Server, tmp_path: Path, workbook_bytes: bytes) -> None:
    server.mode = "cut"
    with pytest.raises(DownloadError, match=r"bytes kept in .*\.part, run again to resume"):
        await download_rpw(server.url, tmp_path)
    kept = (tmp_path / f"{NAME}.part").stat().st_size
    assert 0 < kept < len(workbook_bytes)
    assert not (tmp_path / NAME).exists()
    path = await download_rpw(server.url, tmp_path)
    assert server.requests == [None, f"bytes={kept}-"]
    assert path.read_bytes() == workbook_bytes


async def test_offline_or_dropped_before_a_byte_keeps_no_empty_part_and_says_how_by_hand(
        server: Server, tmp_path: Path) -> None:
    server.mode = "drop"
    with pytest.raises(DownloadError) as err:
        await download_rpw(server.url, tmp_path)
    message = str(err.value)
    assert "download interrupted" in message and "nothing was kept" in message
    assert ("download the workbook by hand from https://remittanceprices.worldbank.org/"
            "data-download" in message and "`sendcost import rpw PATH`" in message)
    assert not (tmp_path / f"{NAME}.part").exists() and not (tmp_path / NAME).exists()
    # No server at all (offline): the same advice, and nothing left behind.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(DownloadError) as err:
        await download_rpw(f"http://127.0.0.1:{closed}/files/{NAME}", tmp_path)
    message = str(err.value)
    assert "ClientConnectorError" in message and "0 bytes kept" not in message
    assert "by hand from https://remittanceprices.worldbank.org/" in message
    assert not (tmp_path / f"{NAME}.part").exists() and not (tmp_path / NAME).exists()


async def test_a_server_ignoring_range_sends_the_whole_file_again(
        server: Server, tmp_path: Path, workbook_bytes: bytes) -> None:
    (tmp_path / f"{NAME}.part").write_bytes(b"PK\x03\x04 stale beginning")
    server.mode = "no-range"
    path = await download_rpw(server.url, tmp_path)
    assert server.requests == ["bytes=20-"]
    assert path.read_bytes() == workbook_bytes


async def test_a_wrong_checksum_keeps_nothing(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"SHA-256 .* is not the expected 0+ "):
        await download_rpw(server.url, tmp_path, expected_sha256="0" * 64)
    assert not (tmp_path / NAME).exists() and not (tmp_path / f"{NAME}.part").exists()


@pytest.mark.parametrize("mode", ["refuse", "challenge"])
async def test_a_refusal_says_how_to_download_by_hand(server: Server, tmp_path: Path,
                                                      mode: str) -> None:
    server.mode = mode
    with pytest.raises(DownloadRefused) as err:
        await download_rpw(server.url, tmp_path)
    message = str(err.value)
    assert "refused the download" in message
    assert "download the workbook by hand from https://remittanceprices.worldbank.org/" \
        in message and "sendcost import rpw PATH" in message
    assert not (tmp_path / NAME).exists()


async def test_cli_downloads_then_imports(server: Server, tmp_path: Path,
                                          fresh_database: str, workbook_bytes: bytes) -> None:
    # A database of its own: the quotes it imports must not change what the session's
    # shared store answers to the tests that run after it.
    config = tmp_path / "config.toml"
    config.write_text(f'[import]\nrpw_url = "{server.url}"\n')
    env = {**os.environ, "DATABASE_URL": fresh_database}

    async def run(*extra: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sendcost", "import", "rpw", "--download", "--config",
            str(config), *extra, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 240)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await run("--to", str(tmp_path / "dl"))
    assert code == 0, err
    assert (tmp_path / "dl" / NAME).read_bytes() == workbook_bytes
    assert "36 rows read, 36 used" in err and "0 rejected" in err
    assert "quotes stored:" in out

    server.mode = "refuse"
    code, out, err = await run("--to", str(tmp_path / "dl2"))
    assert code == 1
    assert "refused the download (HTTP 403 Forbidden)" in err and "by hand" in err
    assert "Traceback" not in err
